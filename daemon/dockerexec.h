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

/* Replaces the attach stream of a running job with a new one and resumes the agent's output
 * where the old stream's delivered events ended (as after a lost connection or a restart of the
 * host side). Events go on to the same callbacks. */
int dockerexec_reattach(struct executor *x, struct err *e);

/* Returns new labels for a step container of job executor x (a docker executor). */
json_t *dockerexec_step_labels(const struct executor *x);

/* The label naming the process that created an object: "<hostname>:<pid>". */
#define DOCKEREXEC_LABEL_OWNER "io.runnerd.owner"

/* Removes containers, networks and volumes whose owner (label above) ran on this host and is
 * no longer alive: what a killed runnerctl left behind. Calls done(removed, arg) when finished;
 * errors are logged, not fatal. */
int dockerexec_sweep_orphans(struct docker *d, void (*done)(int removed, void *arg), void *arg,
                             struct err *e);

#endif
