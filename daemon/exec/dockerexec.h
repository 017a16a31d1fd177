/* dockerexec.h: the docker executor (see dockerexec.c). */
#ifndef DOCKEREXEC_H
#define DOCKEREXEC_H

#include "executor.h"

struct docker;

/* A docker executor on client d (borrowed, must outlive it): the job container runs the image
 * given to executor_setup(), with agent_path copied in as its entrypoint. Objects are labelled
 * with runner_name and the job's name. */
int executor_docker_new(uv_loop_t *loop, struct docker *d, const char *agent_path,
                        const char *runner_name, struct executor **out, struct err *e);

/* An executor for a job container that already runs (found again after runnerd restarted):
 * desc is what executor_describe() said of it. executor_setup() attaches to the container
 * (its job argument is ignored) and reports ready; the job run then resumes the agent from
 * the offset it persisted. Closing removes the container, its volumes and network, and
 * everything else labelled with the job's name (service containers). */
int executor_docker_adopt(uv_loop_t *loop, struct docker *d, const char *runner_name,
                          const json_t *desc, struct executor **out, struct err *e);

/* Labels objects with this owner instead of "<hostname>:<pid>" (runnerd: a durable name, so
 * that a restarted daemon finds its jobs and runnerctl's orphan sweep leaves them alone).
 * NULL restores the default. */
void dockerexec_set_owner(const char *owner);

/* The directory (0700, this user's) under which each docker job gets a directory for its
 * agent's fast channel (doc/docker-engine.md §6c): runnerd's run directory; NULL restores the
 * default, $XDG_RUNTIME_DIR/runnerd or /tmp/runnerd-UID. */
void dockerexec_set_run_dir(const char *dir);

/* Replaces the attach stream of a running job with a new one and resumes the agent's output
 * where the old stream's delivered events ended (as after a lost connection or a restart of the
 * host side). Events go on to the same callbacks. */
int dockerexec_reattach(struct executor *x, struct err *e);

/* Removes the containers, networks and volumes of owner (dockerexec_set_owner()) whose job
 * label is not a key of keep (an object; NULL = none kept): a restarted runnerd's leftovers. */
int dockerexec_sweep_owner(struct docker *d, const char *owner, const json_t *keep,
                           void (*done)(int removed, void *arg), void *arg, struct err *e);

/* Returns new labels for a step container of job executor x (a docker executor). */
json_t *dockerexec_step_labels(const struct executor *x);

/* The label naming the process that created an object: "<hostname>:<pid>". */
#define DOCKEREXEC_LABEL_OWNER "io.runnerd.owner"
/* On a label's persistent named volume (runnerd.labels.X.persistent_volumes): the label. Such
 * volumes carry no job label, so no job's teardown or sweep removes them. */
#define DOCKEREXEC_LABEL_PERSISTENT "io.runnerd.persistent"

/* Removes containers, networks and volumes whose owner (label above) ran on this host and is
 * no longer alive: what a killed runnerctl left behind. Calls done(removed, arg) when finished;
 * errors are logged, not fatal. */
int dockerexec_sweep_orphans(struct docker *d, void (*done)(int removed, void *arg), void *arg,
                             struct err *e);

#endif
