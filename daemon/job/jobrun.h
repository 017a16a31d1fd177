/* jobrun.h: one job run (one matrix instance) on an executor: step `if`s, environments,
 * scripts, output through workflow commands and the mask into a sink, env files, outputs,
 * continue-on-error, timeouts, cancellation, job outputs and the result
 * (doc/workflow-semantics.md §7-§11). The engine never knows which front end drives it: the sink
 * is runnerctl's terminal/report or runnerd's spool. Every byte a sink sees is masked. */
#ifndef JOBRUN_H
#define JOBRUN_H

#include "executor.h"
#include "mask.h"
#include "plan.h"

#include <jansson.h>
#include <uv.h>

enum jobrun_kind {
    JOBRUN_OUT,      /* step stdout line */
    JOBRUN_ERR,      /* step stderr line */
    JOBRUN_INFO,     /* the runner's own message */
    JOBRUN_ERROR,    /* ::error / a runner error */
    JOBRUN_WARNING,  /* ::warning */
    JOBRUN_NOTICE,   /* ::notice */
    JOBRUN_DEBUG,    /* ::debug */
    JOBRUN_GROUP,    /* ::group::title */
    JOBRUN_ENDGROUP, /* ::endgroup:: */
    JOBRUN_COMMAND,  /* another workflow command, echoed */
};

struct jobrun;

/* What a job says. step is the step index, or -1 for the job's setup and teardown. */
struct jobrun_sink {
    void (*step_started)(void *arg, struct jobrun *jr, int step, const char *name);
    void (*log)(void *arg, struct jobrun *jr, int step, enum jobrun_kind kind, const char *text,
                size_t len);
    void (*step_finished)(void *arg, struct jobrun *jr, int step, const char *outcome,
                          const char *conclusion);
    /* Optional (runnerd): persist cp (a JSON object, borrowed) durably before the step it
     * describes runs; return 0, or <0 to fail that step (state could not be saved). With
     * jobrun_opts.durable, the agent drops its journal only up to the last checkpoint, so a
     * restarted host side can resume from there with jobrun_resume(). The sink may add its own
     * members to cp (e.g. how many log rows it holds) before storing it. */
    int (*checkpoint)(void *arg, struct jobrun *jr, json_t *cp);
    /* Optional (runnerd): the job's result and outputs are known (read them with jobrun_*()
     * and the plan) and the executor is about to be closed. Called once, before the teardown
     * that job_finished follows, so that the sink can record the result durably first. */
    void (*closing)(void *arg, struct jobrun *jr, enum plan_result result);
    /* The job is over and the executor closed: read results with jobrun_*(), then free. */
    void (*job_finished)(void *arg, struct jobrun *jr, enum plan_result result);
};

struct jobrun_opts {
    struct plan *plan;          /* borrowed; plan_job_start() already said to run */
    size_t job, run;
    struct executor *exec;      /* taken: set up and closed by the job run */
    struct executor_job xjob;   /* what to ask of the executor (strings borrowed until setup) */
    struct mask *mask;          /* borrowed; secrets already added; add-mask adds to it */
    json_t *config_env;         /* --env values (object) or NULL */
    json_t *runner;             /* the runner context (object) or NULL */
    const char *label;          /* the runs-on label chosen (ImageOS) */
    const char *container_options; /* the runner's own options for job containers, or NULL */
    bool gitea;
    bool durable;               /* ack the agent's journal only up to checkpoints */
    bool hold;                  /* resuming: start no new step before jobrun_release() (the
                                   server may have cancelled the job while no one ran it) */
    /* uses: steps. NULL cache_dir: actions/checkout and remote actions fail clearly. */
    const char *cache_dir;      /* git mirrors and fetched actions */
    const char *git_ca_file;    /* CA bundle for git over HTTPS, or NULL: the system's */
    bool git_insecure;          /* runner.insecure: no TLS verification for the instance */
    const char *actions_url;    /* when github.gitea_default_actions_url is empty, or NULL */
    const char *github_mirror;  /* runner.github_mirror, or NULL */
    const char *node_image;     /* runnerd.node_image: node actions when the job image has no
                                   node, or NULL */
    const struct jobrun_sink *sink;
    void *sink_arg;
};

/* Starts the job. Returns 0 (job_finished follows, always) or a negative code with e set and
 * nothing started (the executor is closed). */
int jobrun_start(uv_loop_t *loop, const struct jobrun_opts *o, struct jobrun **out,
                 struct err *e);

/* Resumes a job from checkpoint cp (what the sink's checkpoint callback stored) on o->exec, an
 * executor found again (executor_docker_adopt). The agent replays its journal from the
 * checkpoint: the step that was running goes on where it was (it is not run again; if it had
 * not started yet it starts now) and every line it printed is produced again in the same
 * order, so the sink can skip the ones it already holds. A docker:// step that was running
 * cannot be followed again and fails with a message that says why. Otherwise as
 * jobrun_start(). */
int jobrun_resume(uv_loop_t *loop, const struct jobrun_opts *o, const json_t *cp,
                  struct jobrun **out, struct err *e);

/* First call: graceful cancel (the running step stops unless its `if` asks for
 * always()/cancelled(); later steps see cancelled()). Second call: stop everything now. */
void jobrun_cancel(struct jobrun *jr);
/* Lets a job resumed with jobrun_opts.hold start its next step: the server was asked since,
 * and any cancellation it knew of has been passed to jobrun_cancel(). Idempotent. */
void jobrun_release(struct jobrun *jr);

/* After job_finished: [{id, name, outcome, conclusion}] in step order, borrowed. */
json_t *jobrun_step_list(const struct jobrun *jr);
void jobrun_free(struct jobrun *jr);

/* Returns the job's container image (container: string or container.image, evaluated) as a
 * new string in *out, or NULL when the job has no container. */
int jobrun_container_image(const struct plan *p, size_t job, size_t run, char **out,
                           struct err *e);

#endif
