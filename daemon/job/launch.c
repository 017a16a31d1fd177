/* launch.c: one job launcher for runnerd and runnerctl exec (see launch.h): label, executor,
 * profile, runner context, job run; and the one construction of a job's mask. */
#include "launch.h"

#include "ctx.h"
#include "docker.h"
#include "dockerexec.h"
#include "executor.h"
#include "mask.h"
#include "profile.h"
#include "runner/xalloc.h"

#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>

const struct config_label *
launch_pick_label(const struct config_label *labels, size_t n, const json_t *runs_on)
{
    size_t i;
    json_t *v;

    json_array_foreach(runs_on, i, v) {
        const char *name = json_string_value(v);
        for (size_t k = 0; name && k < n; k++)
            if (strcmp(labels[k].name, name) == 0)
                return &labels[k];
    }
    return NULL;
}

/* The job's profile (profile.h) from the settings p of its label: limits, binds, the engine's
 * socket or a dind sidecar, and its GPUs when the front end grants them. */
static int
make_profile(const struct launch_opts *lo, const struct config_label *lb,
             const struct config_profile *p, json_t **out, char **why)
{
    const char *host = lo->docker ? docker_host(lo->docker) : NULL;
    const char *sock = host && strncmp(host, "unix://", 7) == 0 ? host + 7 : NULL;
    char **gpus = NULL;
    int gid = -1;
    struct stat st;

    if (p && p->docker == CONFIG_DOCKER_SOCKET) {
        if (sock == NULL && lo->mode == LAUNCH_BY_LABEL) {
            *why = xasprintf("label %s has docker: socket, but the engine is not on a unix socket "
                             "(%s)", lb->name, host ? host : "?");
            return -1;
        }
        if (sock && stat(sock, &st) == 0)
            gid = (int)st.st_gid;
    }
    if (p && p->gpus != 0 && lo->grant_gpus && lo->grant_gpus(lo->arg, p, &gpus, why) < 0)
        return -1;
    *out = profile_job(lo->cfg, p, lo->host_memory, gpus, sock, gid);
    xstrv_free(gpus);
    return 0;
}

/* The error of a job that none of the runner's labels runs. */
static char *
no_label(const struct launch_opts *lo, const json_t *runs_on)
{
    char *ro = json_dumps(runs_on, JSON_COMPACT), *why;
    struct err e = {0};

    if (lo->mode == LAUNCH_BY_LABEL) {
        why = xasprintf("none of the job's runs-on labels %s is a label of this runner",
                        ro ? ro : "");
    } else {
        err_set(&e, ERR_INVALID, "no executor for runs-on %s (use -l LABEL=host)", ro);
        why = xstrdup(e.msg);
    }
    free(ro);
    return why;
}

/* Fills the launcher's part of lo->job and starts or resumes (cp) the job run on x (taken; its
 * steps run in a container when in_container). */
static int
run(const struct launch_opts *lo, struct executor *x, bool in_container, const char *label,
    const char *image, const json_t *profile, const json_t *cp, struct jobrun **out, char **why)
{
    struct jobrun_opts o = lo->job;
    const struct config_profile *pf = lo->cfg ? config_profile_find(lo->cfg, label) : NULL;
    json_t *cache_env = in_container ? lo->cache_env_container : lo->cache_env_host;
    json_t *env = NULL;
    struct err e = {0};
    struct utsname un;
    int rc;

    if (cache_env && !(pf && pf->no_cache)) {
        env = lo->job.config_env ? json_deep_copy(lo->job.config_env) : json_object();
        json_object_update(env, cache_env);
        o.config_env = env;
    }
    uname(&un);
    o.exec = x;
    o.xjob.image = image;
    o.xjob.profile = profile;
    o.label = label;
    o.runner = ctx_runner_new(lo->runner_name, un.machine, NULL, NULL);
    o.durable = lo->job.durable && x->container;
    o.hold = cp != NULL;
    rc = cp ? jobrun_resume(lo->loop, &o, cp, out, &e) : jobrun_start(lo->loop, &o, out, &e);
    json_decref(o.runner);
    json_decref(env);
    if (rc < 0)
        *why = xstrdup(e.msg);
    return rc;
}

int
launch_start(const struct launch_opts *lo, struct jobrun **out, char **why)
{
    const struct plan *p = lo->job.plan;
    size_t ji = lo->job.job, ri = lo->job.run;
    const json_t *runs_on = p->jobs[ji].runs[ri].runs_on;
    const struct config_label *lb = launch_pick_label(lo->labels, lo->n_labels, runs_on);
    const struct config_profile *pf = NULL;
    bool docker_label = lb && lb->exec == CONFIG_EXEC_DOCKER;
    struct executor *x = NULL;
    struct err e = {0};
    char *image = NULL;
    json_t *profile = NULL;
    int rc = -1;

    *out = NULL;
    if (lb == NULL && lo->mode == LAUNCH_BY_LABEL) {
        *why = no_label(lo, runs_on);
        return -1;
    }
    if (lo->chosen)
        lo->chosen(lo->arg, lb);
    if (docker_label && lo->docker == NULL && lo->mode == LAUNCH_BY_LABEL) {
        *why = xstrdup("the Docker engine is not reachable; this runner cannot run docker jobs now");
        return -1;
    }
    if (lo->cfg)
        pf = config_profile_find(lo->cfg, lb ? lb->name : NULL);
    if (docker_label || lo->mode == LAUNCH_CONTAINER_FIRST) {
        if (jobrun_container_image(p, ji, ri, &image, &e) < 0)
            goto fail;
        /* A label that pins an image runs only that image, unless it allows the job's own. */
        if (lo->cfg && profile_check_image(pf, image, p->wf->file, p->jobs[ji].wf, &e) < 0)
            goto fail;
        if (image == NULL && docker_label)
            image = xstrdup(lb->image);
    }
    if (image || docker_label) {
        if (make_profile(lo, lb, pf, &profile, why) < 0)
            goto out;
        if (executor_docker_new(lo->loop, lo->docker, lo->agent_path, lo->runner_name, &x,
                                &e) < 0)
            goto fail;
    } else if (lb == NULL) {
        *why = no_label(lo, runs_on);
        goto out;
    } else if (executor_host_new(lo->loop, lo->agent_path, NULL, NULL, NULL, &x, &e) < 0) {
        goto fail;
    }
    rc = run(lo, x, image || docker_label, lb ? lb->name : NULL, image, profile, NULL, out, why);
    goto out;
fail:
    *why = xstrdup(e.msg);
out:
    free(image);
    json_decref(profile);
    return rc;
}

int
launch_resume(const struct launch_opts *lo, struct executor *x, const json_t *cp,
              struct jobrun **out, char **why)
{
    return run(lo, x, x->container, lo->job.label, NULL, NULL, cp, out, why);
}
