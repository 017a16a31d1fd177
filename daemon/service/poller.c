/* poller.c: one identity's conversation with Gitea about work (doc/gitea-protocol.md §3.4, §3.5,
 * §4.5).
 *
 * Declare first (labels by name and the version; a server without Declare is told apart and
 * tolerated), then FetchTask with tasksVersion, one call outstanding, only while the identity
 * has a free slot and the daemon is not stopping. After an answer without a task the next
 * poll waits fetch_interval, growing by half each idle poll up to fetch_interval_max; errors
 * back off the same way; every wait is jittered down by up to 20% so that many runners do not poll
 * in step. A task resets the wait and the tasksVersion (more jobs may be waiting). A server that
 * no longer knows the runner ends the daemon with RUNNERD_EXIT_UNREGISTERED. */
#include "poller.h"

#include "gpu.h"
#include "rpc.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "task.h"

#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define UNAUTH_LIMIT 3

static void poll_now(struct ident *id);

/* True when identity id may take one more task now (a slot, and GPUs for a GPU identity). */
static bool
can_take(const struct ident *id)
{
    if (id->parked || id->running >= id->slots)
        return false;
    if (id->gpus_needed > 0 && gpu_pool_free_count(id->d->gpus) < (size_t)id->gpus_needed)
        return false;
    return true;
}

bool
poller_disk_low(const struct daemon *d, long long *avail)
{
    struct statvfs vfs;
    char *dir = xstrdup(store_path(d->st)), *slash = strrchr(dir, '/');
    bool low = false;

    *avail = -1;
    if (slash)
        *slash = '\0';
    if (statvfs(slash ? (*dir ? dir : "/") : ".", &vfs) == 0) {
        *avail = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
        low = *avail < d->cfg.runnerd.min_free_disk;
    }
    free(dir);
    return low;
}

static void
on_timer(uv_timer_t *t)
{
    struct ident *id = t->data;

    if (!id->declared)
        poller_start(id);
    else
        poll_now(id);
}

/* 80-100% of s: spreads runners out without ever waiting longer than the interval asked. */
static double
jitter(double s)
{
    return s * (0.8 + 0.2 * ((double)(rand() % 1000) / 1000.0));
}

static void
wait_then(struct ident *id, double s)
{
    if (id->closing || id->d->stopping)
        return;
    uv_timer_start(&id->timer, on_timer, (uint64_t)(jitter(s) * 1000.0), 0);
}

static void
grow(struct ident *id)
{
    const struct config *c = &id->d->cfg;
    double lo = c->runner.fetch_interval_s > 0 ? c->runner.fetch_interval_s : 2.0;
    double hi = c->runnerd.fetch_interval_max_s > lo ? c->runnerd.fetch_interval_max_s : lo;

    id->backoff_s = id->backoff_s <= 0 ? lo : id->backoff_s * 1.5;
    if (id->backoff_s > hi)
        id->backoff_s = hi;
}

static void
poll_error(struct ident *id, const struct connect_result *r)
{
    metric_add(id->d->m.poll_errors, 1, id->si.cls,
               r->rc == ERR_TIMEOUT ? "timeout" : rpc_errclass_name(r->cls));
}

static void
unregistered(struct ident *id, const struct connect_result *r)
{
    log_err("Gitea at %s does not know runner %s (%s) any more: %s. It was probably deleted "
            "there; register it again with `runnerctl register`. Exiting.",
            id->si.instance, id->si.name, id->si.uuid, r->err.msg);
    id->d->exit_code = RUNNERD_EXIT_UNREGISTERED;
    uv_stop(id->d->loop);
}

static void
on_declared(const struct connect_result *r, void *arg)
{
    struct ident *id = arg;

    id->call = NULL;
    if (r->rc == ERR_CANCELED)
        return;
    if (r->rc < 0) {
        if (r->cls == RPC_ERR_UNAUTHENTICATED) {
            unregistered(id, r);
            return;
        }
        if (r->cls == RPC_ERR_NOT_FOUND) {
            log_warn("%s: this Gitea has no Declare (older than 1.21): the labels it knows are "
                     "those given at registration", id->si.name);
            id->declared = true;
            poll_now(id);
            return;
        }
        poll_error(id, r);
        log_warn("%s: Declare failed: %s; retrying", id->si.name, r->err.msg);
        grow(id);
        wait_then(id, id->backoff_s);
        return;
    }
    struct rpc_declare_response *resp = r->resp;
    log_info("%s: declared to %s as runner %lld with %zu label(s)", id->si.name, id->si.instance,
             resp->runner ? (long long)resp->runner->id : 0LL,
             resp->runner ? resp->runner->labels.n : (size_t)0);
    rpc_clear(&rpc_declare_response_type, resp);
    free(resp);
    id->declared = true;
    id->backoff_s = 0;
    poll_now(id);
}

int
poller_start(struct ident *id)
{
    struct err e = {0};
    struct rpc_declare_request req = {.version = (char *)"runnerd-" RUNNERD_VERSION};

    if (id->closing || id->d->stopping || id->call || id->parked)
        return 0;
    req.labels.v = xcalloc(id->n_labels + 1, sizeof *req.labels.v);
    for (size_t i = 0; i < id->n_labels; i++)
        req.labels.v[i] = id->labels[i].name;
    req.labels.n = id->n_labels;
    int rc = connect_call(id->conn, RPC_PATH_DECLARE, &rpc_declare_request_type, &req,
                          &rpc_declare_response_type, 0, on_declared, id, &id->call, &e);
    free(req.labels.v);
    if (rc < 0) {
        log_err("%s: Declare: %s", id->si.name, e.msg);
        grow(id);
        wait_then(id, id->backoff_s);
    }
    return 0;
}

static void
on_fetched(const struct connect_result *r, void *arg)
{
    struct ident *id = arg;
    struct rpc_fetch_task_response *resp = r->resp;

    id->call = NULL;
    if (r->rc == ERR_CANCELED)
        return;
    if (r->rc < 0) {
        if (r->cls == RPC_ERR_UNAUTHENTICATED && ++id->unauth >= UNAUTH_LIMIT) {
            unregistered(id, r);
            return;
        }
        poll_error(id, r);
        if (r->rc == ERR_TIMEOUT)
            log_debug("%s: FetchTask timed out", id->si.name);
        else
            log_warn("%s: FetchTask failed: %s", id->si.name, r->err.msg);
        grow(id);
        wait_then(id, id->backoff_s);
        return;
    }
    id->unauth = 0;
    if (resp->task) {
        struct rpc_task *t = resp->task;
        resp->task = NULL;
        id->tasks_version = 0; /* more jobs may be waiting: search again next time */
        id->backoff_s = 0;
        rpc_clear(&rpc_fetch_task_response_type, resp);
        free(resp);
        task_start(id, t);
        /* Right away if another slot is free; else when a task ends (poller_kick). */
        wait_then(id, 0);
        return;
    }
    if (resp->tasks_version > id->tasks_version)
        id->tasks_version = resp->tasks_version;
    rpc_clear(&rpc_fetch_task_response_type, resp);
    free(resp);
    grow(id);
    wait_then(id, id->backoff_s);
}

/* No task is fetched while the state database's filesystem is under runnerd.min_free_disk:
 * its log rows would have nowhere to go. Looks again after fetch_interval_max; says so when
 * it starts and when it ends. */
static bool
disk_held(struct ident *id)
{
    const struct config *c = &id->d->cfg;
    long long avail;

    if (poller_disk_low(id->d, &avail)) {
        if (!id->disk_low)
            log_warn("%s: not taking tasks: the state database's disk has %lld KiB free, "
                     "runnerd.min_free_disk is %lld KiB", id->si.name, avail >> 10,
                     c->runnerd.min_free_disk >> 10);
        id->disk_low = true;
        wait_then(id, c->runnerd.fetch_interval_max_s > 0 ? c->runnerd.fetch_interval_max_s : 5.0);
        return true;
    }
    if (id->disk_low)
        log_info("%s: the state database's disk has room again (%lld KiB free): taking tasks",
                 id->si.name, avail >> 10);
    id->disk_low = false;
    return false;
}

static void
poll_now(struct ident *id)
{
    struct err e = {0};
    const struct config *c = &id->d->cfg;

    if (id->closing || id->d->stopping || id->call || !id->declared)
        return;
    if (!can_take(id))
        return; /* poller_kick() when a slot (or a GPU) frees */
    if (disk_held(id))
        return;
    struct rpc_fetch_task_request req = {.tasks_version = id->tasks_version};
    long to = c->runner.fetch_timeout_s > 0 ? (long)(c->runner.fetch_timeout_s * 1000.0) : 5000;
    if (connect_call(id->conn, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &req,
                     &rpc_fetch_task_response_type, to, on_fetched, id, &id->call, &e) < 0) {
        log_err("%s: FetchTask: %s", id->si.name, e.msg);
        grow(id);
        wait_then(id, id->backoff_s);
    }
}

void
poller_kick(struct ident *id)
{
    if (id->closing || id->d->stopping || id->call || !id->declared)
        return;
    if (!can_take(id))
        return;
    /* Keep the spacing of fetch_interval after a task: restart the wait at its start. */
    uv_timer_stop(&id->timer);
    id->backoff_s = 0;
    wait_then(id, 0);
}

void
poller_gpus_freed(struct daemon *d)
{
    for (size_t i = 0; i < d->n_idents; i++)
        if (d->idents[i].gpus_needed > 0)
            poller_kick(&d->idents[i]);
}

void
poller_stop(struct ident *id)
{
    id->closing = true;
    if (id->timer.data)
        uv_timer_stop(&id->timer);
    if (id->call)
        connect_cancel(id->call);
}
