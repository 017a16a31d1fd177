/* launch.h: starting one job run the same way for every front end (runnerd's tasks, runnerctl
 * exec's runs): the runs-on label picked from the runner's labels, the executor it names (host,
 * or docker with the job's container image checked against the image the label pins), the
 * label's settings made the job's profile, the runner context, then jobrun_start(). Also the
 * job's mask, built the same way for every front end. What only one front end does (runnerd's
 * task record and GPU pool, runnerctl's terminal) stays in it, behind launch_opts' callbacks. */
#ifndef LAUNCH_H
#define LAUNCH_H

#include "config.h"
#include "jobrun.h"

#include <jansson.h>
#include <uv.h>

struct docker;

/* How the label and the job's own container choose the executor. The two front ends have
 * always differed here, and each keeps its way. */
enum launch_mode {
    /* runnerd: the label decides. A job none of whose runs-on labels is the runner's fails; on
     * a host label it runs on the host (its container: is not even evaluated); on a docker
     * label it needs the engine now (launch_opts.docker), runs in its container: image, else
     * the label's, and a label with docker: socket needs an engine on a unix socket. */
    LAUNCH_BY_LABEL,
    /* runnerctl exec: the job's container: wins. A job with one runs in Docker whatever its
     * label, or with no label of the runner's; without one, a docker label's image, a host
     * label the host; no label at all fails. The image is checked against the pin of the label
     * picked whenever launch_opts.cfg is given. docker: socket on an engine that is not on a
     * unix socket gives the job no socket. */
    LAUNCH_CONTAINER_FIRST,
};

struct launch_opts {
    enum launch_mode mode;
    uv_loop_t *loop;
    const struct config_label *labels; /* the runner's labels (borrowed) */
    size_t n_labels;
    const struct config *cfg;   /* label settings (runnerd.labels) and limits, or NULL: none
                                   (the default limits and capability floor) */
    long long host_memory;      /* bytes, for percentage limits (profile_host_memory()) */
    struct docker *docker;      /* the engine, or NULL: not reachable */
    const char *agent_path;     /* runner-agent */
    const char *runner_name;    /* runner.name, and the owner of the job's Docker objects */
    /* The front end's part of the job run: plan, job, run, xjob.name (and source, bind), mask
     * (mask_for_job()), config_env, container_options, gitea, durable (taken only when the
     * executor is a container), the uses: settings, the sink. launch_resume() also takes its
     * label. The launcher sets exec, xjob.image, xjob.profile, label, runner and hold. */
    struct jobrun_opts job;
    /* Optional: the label is chosen (lb NULL: none of the runner's, the job's container runs
     * it), before anything else is evaluated or set up. */
    void (*chosen)(void *arg, const struct config_label *lb);
    /* Optional: the settings p of the label chosen ask for GPUs (p->gpus) for a docker job:
     * grant them in *gpus (a new NULL-terminated list, or NULL: none), or return <0 with *why
     * (a new string). Without it the job gets none. */
    int (*grant_gpus)(void *arg, const struct config_profile *p, char ***gpus, char **why);
    void *arg;
    /* Optional: the actions/cache server's variables (jobcache.h) over job.config_env, for a
     * job in a container and for one on the host (borrowed; NULL: none there). A label whose
     * settings say cache: false gets neither. */
    json_t *cache_env_container, *cache_env_host;
};


/* The first of runs_on (an array of strings) that is a name in labels[0..n), or NULL. */
const struct config_label *launch_pick_label(const struct config_label *labels, size_t n,
                                             const json_t *runs_on);

/* Picks the label, makes the executor and the profile, and starts the job run (job_finished
 * follows, always). Returns 0, or <0 with *why (a new string: the label that does not fit, the
 * image a label refuses as FILE:LINE:COL: ..., an engine that is not reachable) and nothing
 * started. */
int launch_start(const struct launch_opts *lo, struct jobrun **out, char **why);

/* Resumes the job from checkpoint cp on x, an executor found again (taken), with lo->job.label
 * as the label. Returns as launch_start(). */
int launch_resume(const struct launch_opts *lo, struct executor *x, const json_t *cp,
                  struct jobrun **out, char **why);

#endif
