/* dockerexec-close.c: the docker executor's close, also after errors: calls in flight land
 * first; then the container, the volumes, the services and the network are removed, and what
 * else carries the job's label, before the executor is freed. */
#include "dockerexec-int.h"

#include "agentconn.h"
#include "dind.h"
#include "docker.h"
#include "services.h"
#include "runner/xalloc.h"

#include <stdlib.h>

static void
dx_free(struct docker_exec *dx)
{
    const struct executor_cbs *cbs = dx->x.cbs;
    void *arg = dx->x.arg;

    if (dx->x.conn)
        agentconn_free(dx->x.conn);
    free(dx->agent_path);
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

static void remove_network_now(struct docker_exec *dx);

static void sweep_job(struct docker_exec *dx);

static void
on_net_removed(const struct docker_res *res, void *arg)
{
    removal_warned(arg, res);
    sweep_job(arg);
}

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
on_services_stopped(int rc, const struct err *e, void *arg)
{
    struct docker_exec *dx = arg;

    if (rc < 0 && e)
        dockerexec_say(dx, "warning: %s", e->msg);
    dx->svc = NULL;
    remove_network_now(dx);
}

static void
remove_network(struct docker_exec *dx)
{
    if (dx->svc) {
        services_stop(dx->svc, on_services_stopped, dx);
        return;
    }
    remove_network_now(dx);
}

static void
on_job_swept(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc < 0)
        dockerexec_say(dx, "warning: %s", res->err.msg);
    dx_free(dx);
}

/* Last: an adopted job's service containers and anything else labelled with its name. */
static void
sweep_job(struct docker_exec *dx)
{
    struct err e = {0};
    char *label = xasprintf(DOCKER_LABEL_JOB "=%s", dx->name);
    int rc = dx->adopted || dx->used_dind || dx->job_vols
                 ? docker_sweep(dx->d, label, on_job_swept, dx, &e) : -1;

    free(label);
    if (rc < 0)
        dx_free(dx);
}

static void
remove_network_now(struct docker_exec *dx)
{
    struct err e = {0};

    if (dx->used_dind) { /* the sidecar is on the network: the sweep removes it first */
        sweep_job(dx);
        return;
    }
    if (dx->net_id == NULL ||
        docker_network_remove(dx->d, dx->net_id, on_net_removed, dx, &e) < 0)
        sweep_job(dx);
}

static void remove_volume(struct docker_exec *dx);

static void
on_vol_removed(const struct docker_res *res, void *arg)
{
    removal_warned(arg, res);
    remove_volume(arg);
}

/* Removes the created volumes one by one, then the network. */
static void
remove_volume(struct docker_exec *dx)
{
    struct err e = {0};

    for (int i = 0; i < 2; i++) {
        if (!dx->vol_created[i])
            continue;
        dx->vol_created[i] = false;
        if (docker_volume_remove(dx->d, dx->vols[i], true, on_vol_removed, dx, &e) == 0)
            return;
        dockerexec_say(dx, "warning: %s", e.msg);
    }
    remove_network(dx);
}

static void
on_ctr_removed(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (!removal_warned(dx, res))
        dockerexec_say(dx, "removed container %.12s", dx->ctr_id);
    remove_volume(dx);
}

void
dockerexec_close(struct executor *x)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    struct err e = {0};

    dx->closing = true;
    dockerexec_hello_stop(dx);
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
    if (dx->ctr_id == NULL ||
        docker_container_remove(dx->d, dx->ctr_id, true, true, on_ctr_removed, dx, &e) < 0)
        remove_volume(dx);
}
