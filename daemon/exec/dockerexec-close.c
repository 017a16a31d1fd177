/* dockerexec-close.c: the docker executor's close, also after errors: calls in flight land
 * first; then the job container and the services are removed at once, then the volumes (the
 * network meanwhile, without waiting for it) and what else carries the job's label, before
 * the executor is freed. */
#include "dockerexec-int.h"

#include "agentconn.h"
#include "dind.h"
#include "docker.h"
#include "services.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <stdlib.h>

static void
dx_free(struct docker_exec *dx)
{
    const struct executor_cbs *cbs = dx->x.cbs;
    void *arg = dx->x.arg;

    if (dx->x.conn)
        agentconn_free(dx->x.conn);
    tar_free(&dx->tar); /* built but never copied in: the setup failed first */
    free(dx->agent_path);
    free(dx->agent_bind);
    free(dx->runner_name);
    free(dx->name);
    free(dx->image);
    free(dx->image_id);
    free(dx->source);
    free(dx->net_name);
    free(dx->net_id);
    free(dx->ctr_id);
    free(dx->vols[0]);
    free(dx->vols[1]);
    free(dx->x.act_mount);
    free(dx->options);
    json_decref(dx->volumes);
    json_decref(dx->services);
    json_decref(dx->profile);
    dind_free(dx->dind);
    json_decref(dx->x.job_ctx);
    free(dx->x.workspace_mount);
    free(dx->x.network);
    json_decref(dx->env);
    free(dx->x.workspace);
    free(dx->x.file_dir);
    free(dx->x.base_path);
    free(dx->x.agent_cmd);
    json_decref(dx->x.base_env);
    free(dx);
    if (cbs && cbs->on_closed)
        cbs->on_closed(arg);
}

/* Warns of a removal that failed, unless the object was gone already; true when it warned. */
static bool
removal_warned(struct docker_exec *dx, const struct docker_res *res)
{
    if (res->rc < 0 && res->rc != ERR_NOTFOUND) {
        dockerexec_say(dx, "warning: %s", res->err.msg);
        return true;
    }
    return false;
}

static void sweep_job(struct docker_exec *dx);

static void
on_services_stopped_early(int rc, const struct err *e, void *arg)
{
    struct docker_exec *dx = arg;

    if (rc < 0 && e && rc != ERR_CANCELED)
        dockerexec_say(dx, "warning: %s", e->msg);
    dx->pending--;
    dockerexec_close(&dx->x);
}

static void
on_job_swept(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc < 0)
        dockerexec_say(dx, "warning: %s", res->err.msg);
    log_trace("executor closed");
    dx_free(dx);
}

/* Last: an adopted job's service containers and network, a dind job's sidecar and network, and
 * anything else labelled with the job's name. */
static void
sweep_job(struct docker_exec *dx)
{
    struct err e = {0};
    char *label = xasprintf(DOCKER_LABEL_JOB "=%s", dx->name);
    int rc = dx->adopted || dx->used_dind || dx->job_vols
                 ? docker_sweep(dx->d, label, on_job_swept, dx, &e) : -1;

    free(label);
    if (rc < 0) {
        log_trace("executor closed");
        dx_free(dx);
    }
}

struct net_removal {
    char *id, *job;
};

static void
on_net_removed(const struct docker_res *res, void *arg)
{
    struct net_removal *nr = arg;

    if (res->rc < 0 && res->rc != ERR_NOTFOUND)
        log_warn("job %s: %s (the sweep of its labelled objects removes it later)", nr->job,
                 res->err.msg);
    free(nr->id);
    free(nr->job);
    free(nr);
}

/* The job network, once nothing of the job is on it, is removed off the job's critical path:
 * the executor reports closed without waiting for it (the engine takes a good part of a second
 * to remove a bridge). The call needs only the client, which outlives the loop's last request;
 * if the process dies first, the network's labels bring it to a sweep. An adopted or dind job
 * leaves its network to sweep_job(), which removes what is on it first. */
static void
remove_network_detached(struct docker_exec *dx)
{
    struct err e = {0};
    struct net_removal *nr;

    if (dx->net_id == NULL || dx->adopted || dx->used_dind)
        return;
    nr = xcalloc(1, sizeof *nr);
    nr->id = dx->net_id;
    nr->job = xstrdup(dx->name);
    dx->net_id = NULL;
    if (docker_network_remove(dx->d, nr->id, on_net_removed, nr, &e) < 0) {
        dockerexec_say(dx, "warning: %s", e.msg);
        free(nr->id);
        free(nr->job);
        free(nr);
    }
}

static void
on_vol_removed(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    removal_warned(dx, res);
    if (--dx->pending == 0)
        sweep_job(dx);
}

/* Once the containers are gone: the network (detached) and the volumes (at once), then the
 * sweep. */
static void
remove_rest(struct docker_exec *dx)
{
    struct err e = {0};

    remove_network_detached(dx);
    dx->pending = 1; /* held while the removals start */
    for (int i = 0; i < 2; i++) {
        if (!dx->vol_created[i])
            continue;
        dx->vol_created[i] = false;
        if (docker_volume_remove(dx->d, dx->vols[i], true, on_vol_removed, dx, &e) == 0)
            dx->pending++;
        else
            dockerexec_say(dx, "warning: %s", e.msg);
    }
    if (--dx->pending == 0)
        sweep_job(dx);
}

/* The job container and the services are removed at once; the last one to go calls
 * remove_rest(). */
static void
container_gone(struct docker_exec *dx)
{
    if (--dx->pending == 0)
        remove_rest(dx);
}

static void
on_services_stopped(int rc, const struct err *e, void *arg)
{
    struct docker_exec *dx = arg;

    if (rc < 0 && e)
        dockerexec_say(dx, "warning: %s", e->msg);
    container_gone(dx);
}

static void
on_ctr_removed(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (!removal_warned(dx, res))
        dockerexec_say(dx, "removed container %.12s", dx->ctr_id);
    container_gone(dx);
}

void
dockerexec_close(struct executor *x)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    struct err e = {0};

    log_trace("executor close%s", dx->closing ? " (again)" : "");
    dx->closing = true;
    dockerexec_hello_stop(dx);
    dockerexec_fast_close(dx);
    if (dx->svc && !dx->ready && !dx->svc_stopping) {
        /* Services may be waiting for health checks: stop them now rather than wait. */
        dx->svc_stopping = true;
        dx->pending++;
        services_stop(dx->svc, on_services_stopped_early, dx);
        dx->svc = NULL;
    }
    if (dx->dind_waiting) { /* stop waiting for the sidecar: the teardown removes it */
        dind_free(dx->dind);
        dx->dind = NULL;
        dx->dind_waiting = false;
        dx->pending--;
    }
    if (dx->pending > 0 || dx->teardown)
        return; /* calls in flight land first and call us again */
    dx->teardown = true;
    if (dx->att) {
        docker_attach_close(dx->att);
        dx->att = NULL;
    }
    dx->pending = 1; /* held while the removals start; pending counts them from here on */
    if (dx->ctr_id != NULL) {
        if (docker_container_remove(dx->d, dx->ctr_id, true, true, on_ctr_removed, dx, &e) == 0)
            dx->pending++;
        else
            dockerexec_say(dx, "warning: %s", e.msg);
    }
    if (dx->svc) {
        dx->pending++;
        services_stop(dx->svc, on_services_stopped, dx);
        dx->svc = NULL;
    }
    container_gone(dx);
}
