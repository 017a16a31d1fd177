/* runnerd.c: the daemon's main (see daemon.h): configuration, the state database, the runner
 * identities and their pollers, recovery of the tasks a previous run left, signals and
 * shutdown.
 *
 *   SIGTERM, SIGINT  stop polling; drain (running jobs get runner.shutdown_timeout, then are
 *                    cancelled and reported) or, with `runnerd: {shutdown: detach}`, persist
 *                    everything and exit at once leaving the jobs running for the next start.
 *                    A second signal forces: jobs are stopped now.
 *   SIGUSR2          detach now and exit with RUNNERD_EXIT_RESTART (an upgrade: systemd
 *                    starts the new binary, which reattaches to the running jobs); during a
 *                    drain too, which then ends with the jobs left running, never stopped.
 *                    `runnerctl restart` sends it.
 *   SIGHUP           reload the configuration if it validates.
 *
 * The pid file "<state database>.pid" holds our pid, under a lock held for our whole life
 * (store.h, "the daemon lock"): a second runnerd on the same database is refused (exit status
 * 2), and `runnerctl restart` finds us through it. */
#include "daemon.h"

#include "cachesvc.h"
#include "docker.h"
#include "dockerexec.h"
#include "executor.h"
#include "gpu.h"
#include "httpd.h"
#include "ident.h"
#include "jobcache.h"
#include "metrics.h"
#include "notify.h"
#include "poller.h"
#include "profile.h"
#include "httpc.h"
#include "rpc.h"
#include "runner/clock.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "task.h"

#include <getopt.h>
#include <libgen.h>
#include <malloc.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_MS 250
#define GC_EVERY_MS (3600u * 1000u)
#define KEEP_DONE_S (7 * 24 * 3600)
#define REPORT_GRACE_S 60 /* after the jobs, time left to deliver their final reports */

static struct daemon D;

static void
usage(FILE *f)
{
    fprintf(f, "usage: runnerd [-c CONFIG] [--state FILE] [--log-level LEVEL] [--version]\n"
               "\n"
               "Runs Gitea Actions jobs for the runners registered with `runnerctl register`.\n"
               "  -c, --config FILE   act_runner-style config.yaml (runner.*, container.*, runnerd.*)\n"
               "      --state FILE    the state database (default: runnerd.state_file)\n"
               "      --log-level L   trace, debug, info, warn, error\n");
}

static struct ident *
daemon_ident(struct daemon *d, const char *cls)
{
    for (size_t i = 0; i < d->n_idents; i++)
        if (strcmp(d->idents[i].si.cls, cls) == 0)
            return &d->idents[i];
    return NULL;
}

static int
level_of(const char *s)
{
    if (s == NULL)
        return LOG_PRIO_INFO;
    if (strcmp(s, "trace") == 0 || strcmp(s, "debug") == 0)
        return LOG_PRIO_DEBUG;
    if (strcmp(s, "warn") == 0)
        return LOG_PRIO_WARNING;
    if (strcmp(s, "error") == 0 || strcmp(s, "fatal") == 0)
        return LOG_PRIO_ERR;
    return LOG_PRIO_INFO;
}

/* ---------------------------------------------------------------- identities */

/* Applies runnerd.labels to an identity's labels and computes what it needs to poll. */
static void
daemon_apply_profiles(struct daemon *d, struct ident *id)
{
    id->gpus_needed = 0;
    for (size_t k = 0; k < id->n_labels; k++) {
        struct config_label *l = &id->labels[k];
        const struct config_profile *p = config_profile_find(&d->cfg, l->name);
        if (p == NULL)
            continue;
        /* The settings say how the label runs: docker, with their image if they name one. */
        l->exec = CONFIG_EXEC_DOCKER;
        if (p->image) {
            free(l->image);
            l->image = xstrdup(p->image);
        }
        int want = p->gpus < 0 ? (int)gpu_pool_size(d->gpus) : p->gpus;
        if (want > id->gpus_needed)
            id->gpus_needed = want;
    }
}

static void
ident_labels(struct daemon *d, struct ident *id)
{
    struct err e = {0};
    size_t i;
    json_t *v;

    for (size_t k = 0; k < id->n_labels; k++)
        config_label_free(&id->labels[k]);
    free(id->labels);
    id->labels = NULL;
    id->n_labels = 0;
    if (strcmp(id->si.cls, "cpu") == 0 && d->cfg.runner.n_labels > 0) {
        /* act_runner: runner.labels in the configuration win over the registration's. */
        id->labels = xcalloc(d->cfg.runner.n_labels, sizeof *id->labels);
        for (size_t k = 0; k < d->cfg.runner.n_labels; k++) {
            const struct config_label *l = &d->cfg.runner.labels[k];
            id->labels[k].name = xstrdup(l->name);
            id->labels[k].exec = l->exec;
            id->labels[k].image = l->image ? xstrdup(l->image) : NULL;
        }
        id->n_labels = d->cfg.runner.n_labels;
        daemon_apply_profiles(d, id);
        return;
    }
    id->labels = xcalloc(json_array_size(id->si.labels) + 1, sizeof *id->labels);
    json_array_foreach(id->si.labels, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL || config_label_parse(s, &id->labels[id->n_labels], &e) < 0) {
            log_warn("%s: ignoring label '%s': %s", id->si.name, s ? s : "?", e.msg);
            continue;
        }
        id->n_labels++;
    }
    daemon_apply_profiles(d, id);
}

/* ---------------------------------------------------------------- status endpoint */

static bool needs_docker(const struct daemon *d);

static void
metrics_setup(struct daemon *d)
{
    static const char *const label[] = {"label", NULL};
    static const char *const label_result[] = {"label", "result", NULL};
    static const char *const cls_kind[] = {"class", "kind", NULL};
    static const char *const gpu[] = {"gpu", NULL};
    static const char *const cls[] = {"class", NULL};
    static const double step_buckets[] = {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 10800};

    d->metrics = metrics_new();
    d->m.jobs = metrics_family(d->metrics, "runnerd_jobs_total", "Jobs finished, by label and result.",
                               METRIC_COUNTER, label_result, NULL, 0);
    d->m.running = metrics_family(d->metrics, "runnerd_jobs_running", "Jobs running now, by label.",
                                  METRIC_GAUGE, label, NULL, 0);
    d->m.poll_errors = metrics_family(d->metrics, "runnerd_poll_errors_total",
                                      "Failed Declare and FetchTask calls, by runner class and kind.",
                                      METRIC_COUNTER, cls_kind, NULL, 0);
    d->m.spooled = metrics_family(d->metrics, "runnerd_log_rows_spooled_total",
                                  "Log rows written to the state database.", METRIC_COUNTER, NULL,
                                  NULL, 0);
    d->m.sent = metrics_family(d->metrics, "runnerd_log_rows_sent_total",
                               "Log rows acknowledged by Gitea.", METRIC_COUNTER, NULL, NULL, 0);
    d->m.lost = metrics_family(d->metrics, "runnerd_log_rows_lost_total",
                               "Log rows dropped because the state database could not store them "
                               "(a full disk).", METRIC_COUNTER, NULL, NULL, 0);
    d->m.step_seconds = metrics_family(d->metrics, "runnerd_step_duration_seconds",
                                       "Step durations, by label.", METRIC_HISTOGRAM, label,
                                       step_buckets, sizeof step_buckets / sizeof step_buckets[0]);
    d->m.gpu_allocated = metrics_family(d->metrics, "runnerd_gpu_allocated",
                                        "1 while a job holds the GPU.", METRIC_GAUGE, gpu, NULL, 0);
    d->m.gpu_grants = metrics_family(d->metrics, "runnerd_gpu_allocations_total",
                                     "Grants of the GPU to jobs.", METRIC_COUNTER, gpu, NULL, 0);
    d->m.slots_free = metrics_family(d->metrics, "runnerd_slots_free",
                                     "Jobs each runner identity may still take.", METRIC_GAUGE, cls,
                                     NULL, 0);
    for (size_t i = 0; i < gpu_pool_size(d->gpus); i++) {
        const char *u = gpu_pool_uuid(d->gpus, i, NULL);
        metric_touch(d->m.gpu_allocated, u);
        metric_touch(d->m.gpu_grants, u);
    }
}

static void
on_metrics(void *arg, struct buf *out)
{
    struct daemon *d = arg;

    for (size_t i = 0; i < gpu_pool_size(d->gpus); i++) {
        int64_t task = 0;
        const char *u = gpu_pool_uuid(d->gpus, i, &task);
        metric_set(d->m.gpu_allocated, task ? 1 : 0, u);
    }
    for (size_t i = 0; i < d->n_idents; i++) {
        const struct ident *id = &d->idents[i];
        int free_slots = id->parked ? 0 : id->slots - id->running;
        metric_set(d->m.slots_free, free_slots > 0 ? free_slots : 0, id->si.cls);
    }
    metrics_render(d->metrics, out);
    jobcache_metrics(d->cache, out);
}

static bool
on_ready(void *arg, struct buf *why)
{
    struct daemon *d = arg;
    bool any_slot = false;
    long long avail;

    if (d->stopping)
        buf_puts(why, "shutting down\n");
    for (size_t i = 0; i < d->n_idents; i++) {
        const struct ident *id = &d->idents[i];
        if (id->parked)
            continue;
        if (id->running >= id->slots) {
            buf_printf(why, "%s: no free slot (%d of %d running)\n", id->si.name, id->running,
                       id->slots);
            continue;
        }
        if (id->gpus_needed > 0 && gpu_pool_free_count(d->gpus) < (size_t)id->gpus_needed) {
            buf_printf(why, "%s: no free GPU (%zu of %zu free, %d needed)\n", id->si.name,
                       gpu_pool_free_count(d->gpus), gpu_pool_size(d->gpus), id->gpus_needed);
            continue;
        }
        any_slot = true;
    }
    if (!any_slot && d->n_idents > 0 && why->len == 0)
        buf_puts(why, "no runner identity takes jobs\n");
    if (poller_disk_low(d, &avail))
        buf_printf(why, "low disk space for the state database: %lld MiB free, %lld MiB "
                   "needed\n", avail >> 20, d->cfg.runnerd.min_free_disk >> 20);
    if (needs_docker(d) && !d->docker_ready)
        buf_puts(why, "the Docker engine is not reachable\n");
    return any_slot && why->len == 0;
}

static const struct httpd_cbs http_cbs = {
    .ready = on_ready,
    .metrics = on_metrics,
};

static struct ident *
ident_of_label(struct daemon *d, const char *name)
{
    for (size_t i = 0; i < d->n_idents; i++)
        for (size_t k = 0; k < d->idents[i].n_labels; k++)
            if (strcmp(d->idents[i].labels[k].name, name) == 0)
                return &d->idents[i];
    return NULL;
}

static int check_profiles(struct daemon *d, struct err *e);

/* The inventory, then runnerd.labels checked against the identities and the host: every
 * mistake is FILE:LINE:COL and stops runnerd (exit status 2). */
static int
setup_labels(struct daemon *d, struct err *e)
{
    const struct config *c = &d->cfg;
    char **uuids = NULL;
    size_t n = 0;

    d->host_memory = profile_host_memory();
    if (c->runnerd.gpus_auto) {
        gpu_detect(getenv("RUNNERD_NVIDIA_SMI"), getenv("RUNNERD_NVIDIA_PROC"), &uuids, &n,
                   &d->gpus_how);
    } else {
        d->gpus_how = "runnerd.gpus";
        for (; c->runnerd.gpus && c->runnerd.gpus[n]; n++)
            ;
        uuids = c->runnerd.gpus;
    }
    int rc = gpu_pool_new(d->st, uuids, n, &d->gpus, e);
    if (c->runnerd.gpus_auto)
        xstrv_free(uuids);
    if (rc < 0)
        return rc;
    if (n)
        log_info("GPUs (%s): %zu, %zu free", d->gpus_how, n, gpu_pool_free_count(d->gpus));
    /* Again, now that `gpus: all` has a number behind it. */
    for (size_t i = 0; i < d->n_idents; i++)
        daemon_apply_profiles(d, &d->idents[i]);
    if ((rc = check_profiles(d, e)) < 0)
        return rc;
    for (size_t i = 0; i < d->n_idents; i++) {
        struct ident *id = &d->idents[i];
        if (strcmp(id->si.cls, "gpu") != 0 || n > 0)
            continue;
        if (c->runnerd.force_gpu_labels) {
            log_warn("%s: no GPU found (%s); declaring its labels anyway (force_gpu_labels)",
                     id->si.name, d->gpus_how);
            id->gpus_needed = 0;
        } else {
            id->parked = true;
            log_warn("%s: no GPU found (%s): the GPU runner's labels are not declared and it "
                     "takes no jobs", id->si.name, d->gpus_how);
        }
    }
    return 0;
}

/* runnerd.labels against the identities (their labels already applied) and the inventory, at
 * start and on SIGHUP. */
static int
check_profiles(struct daemon *d, struct err *e)
{
    const struct config *c = &d->cfg;
    const char *file = c->file ? c->file : "(defaults)";
    size_t n = gpu_pool_size(d->gpus);

    for (size_t i = 0; i < c->runnerd.n_profiles; i++) {
        const struct config_profile *p = &c->runnerd.profiles[i];
        struct ident *id = ident_of_label(d, p->name);
        long long mem, nano, pids;

        if (id == NULL) {
            log_warn("%s:%d:%d: runnerd.labels.%s: no registered runner has this label; its "
                     "settings are unused", file, p->line, p->col, p->name);
            continue;
        }
        if (p->gpus != 0 && strcmp(id->si.cls, "gpu") != 0)
            return err_set(e, ERR_INVALID, "%s:%d:%d: runnerd.labels.%s.gpus: this label belongs "
                           "to the CPU runner; GPU labels are registered with `runnerctl register "
                           "--gpu --label %s`", file, p->gpus_line, p->gpus_col, p->name, p->name);
        if (p->gpus > 0 && n > 0 && (size_t)p->gpus > n)
            return err_set(e, ERR_INVALID, "%s:%d:%d: runnerd.labels.%s.gpus: %d GPU(s) per job, "
                           "but this host has %zu (%s)", file, p->gpus_line, p->gpus_col, p->name,
                           p->gpus, n, d->gpus_how);
        config_limits_resolve(c, p, d->host_memory, &mem, &nano, &pids);
        if (mem > 0 && mem < (6ll << 20))
            return err_set(e, ERR_INVALID, "%s:%d:%d: runnerd.labels.%s.memory: %lld bytes is "
                           "below the engine's minimum of 6 MiB", file, p->line, p->col, p->name,
                           mem);
        if (p->image && strstr(p->image, "sha256:") == NULL)
            log_warn("%s:%d:%d: runnerd.labels.%s.image: %s is not pinned (NAME@sha256:DIGEST or "
                     "sha256:ID): jobs get whatever it points to", file, p->line, p->col,
                     p->name, p->image);
        if (p->docker == CONFIG_DOCKER_SOCKET)
            log_warn("runnerd.labels.%s: docker: socket gives this label's jobs the host's Docker "
                     "engine (root on this host): only for trusted code", p->name);
    }
    if (c->runnerd.http && httpd_check_addr(c->runnerd.http, e) < 0)
        return err_prefix(e, "%s: runnerd.http", file);
    return 0;
}

static bool
needs_docker(const struct daemon *d)
{
    for (size_t i = 0; i < d->n_idents; i++)
        for (size_t k = 0; k < d->idents[i].n_labels; k++)
            if (d->idents[i].labels[k].exec == CONFIG_EXEC_DOCKER)
                return true;
    return d->cfg.container.require_docker;
}

static int
load_identities(struct daemon *d, struct err *e)
{
    struct store_ident *v = NULL;
    size_t n = 0;

    if (store_ident_list(d->st, &v, &n, e) < 0)
        return -1;
    if (n == 0) {
        store_ident_free(v, n);
        return err_set(e, ERR_NOTFOUND, "%s: no runner is registered here; run `runnerctl "
                                        "register --instance URL --token TOKEN --label ...` first",
                       store_path(d->st));
    }
    d->idents = xcalloc(n, sizeof *d->idents);
    for (size_t i = 0; i < n; i++) {
        struct ident *id = &d->idents[i];
        id->d = d;
        id->si = v[i];
        ident_labels(d, id);
        id->slots = d->capacity;
        struct connect_opts co = {
            .instance = id->si.instance, .uuid = id->si.uuid, .token = id->si.token,
            .version = RUNNERD_VERSION, .insecure = d->cfg.runner.insecure,
            .verbose = log_level >= LOG_PRIO_DEBUG,
        };
        id->conn = connect_new(d->http, &co);
        uv_timer_init(d->loop, &id->timer);
        id->timer.data = id;
    }
    free(v); /* the entries were moved */
    d->n_idents = n;
    return 0;
}

static void
free_idents(void)
{
    for (size_t i = 0; i < D.n_idents; i++) {
        struct ident *id = &D.idents[i];
        for (size_t k = 0; k < id->n_labels; k++)
            config_label_free(&id->labels[k]);
        free(id->labels);
        store_ident_clear(&id->si);
    }
    free(D.idents);
    D.idents = NULL;
    D.n_idents = 0;
}

/* ---------------------------------------------------------------- shutdown */

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void
close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

/* Leaves now: everything is in the store; running jobs stay where they are. */
static void __attribute__((noreturn))
leave_now(int code, const char *why)
{
    task_flush_all(&D);
    log_notice("%s", why);
    notify_send("STOPPING=1");
    store_close(D.st);
    fflush(NULL);
    _exit(code);
}

static void
all_done(void)
{
    uv_stop(D.loop);
}

/* Hands the heap's free pages back to the kernel: a job run frees most of what it allocated,
 * but glibc keeps free pages inside the heap mapped, so an idle runnerd would stay as big as
 * its busiest moment (bench/daemon-idle, bench/concurrency). sqlite's page cache goes first:
 * nothing reads the database while runnerd is idle. */
static void
trim_heap(void)
{
    store_release_memory(D.st);
    malloc_trim(0);
}

/* A task ended (daemon_hooks.task_gone). */
static void
daemon_task_gone(struct daemon *d)
{
    notify_status("%zu job(s) running", task_running(d));
    if (task_count(d) == 0)
        trim_heap();
    if (d->stopping && task_count(d) == 0)
        all_done();
}

static void
on_grace_over(uv_timer_t *t)
{
    (void)t;
    if (task_running(&D) > 0 && D.forced) {
        /* A forced stop ends runnerd in bounded time whatever its jobs do: what did not stop
         * is finished by the next start (reattached, or failed when its container is gone). */
        char msg[160];
        snprintf(msg, sizeof msg, "forced stop: %zu job(s) did not stop in time; leaving them "
                                  "to the next start", task_running(&D));
        leave_now(RUNNERD_EXIT_FAIL, msg);
    }
    if (task_running(&D) > 0) {
        log_notice("shutdown: the grace period is over; cancelling %zu job(s)", task_running(&D));
        task_cancel_all(&D, false);
        uv_timer_start(&D.shutdown_timer, on_grace_over, REPORT_GRACE_S * 1000, 0);
        return;
    }
    leave_now(RUNNERD_EXIT_OK, "shutdown: final reports not delivered in time; they stay in the "
                               "state database for the next start");
}

static void
begin_stop(bool detach, int code)
{
    if (D.stopping && !D.forced && detach && code == RUNNERD_EXIT_RESTART) {
        /* SIGUSR2 (runnerctl restart) while draining: leave the jobs running rather than
         * force them to stop, which is what a second SIGTERM does. */
        char msg[160];
        snprintf(msg, sizeof msg, "detached while shutting down: %zu job(s) keep running and "
                                  "are reattached at the next start", task_running(&D));
        leave_now(code, msg);
    }
    if (D.stopping) {
        if (!D.forced) {
            D.forced = true;
            log_notice("second signal: stopping every job now");
            task_cancel_all(&D, true);
            uv_timer_start(&D.shutdown_timer, on_grace_over, 10000, 0);
        } else {
            leave_now(RUNNERD_EXIT_FAIL, "third signal: leaving at once");
        }
        return;
    }
    D.stopping = true;
    for (size_t i = 0; i < D.n_idents; i++)
        poller_stop(&D.idents[i]);
    if (detach) {
        char msg[128];
        snprintf(msg, sizeof msg, "detached: %zu job(s) keep running and are reattached at the "
                                  "next start", task_running(&D));
        leave_now(code, msg);
    }
    notify_send("STOPPING=1");
    log_notice("shutting down: %zu job(s) running, grace %gs", task_running(&D),
               D.cfg.runner.shutdown_timeout_s);
    if (task_count(&D) == 0) {
        all_done();
        return;
    }
    double g = D.cfg.runner.shutdown_timeout_s;
    uv_timer_start(&D.shutdown_timer, on_grace_over, g > 0 ? (uint64_t)(g * 1000) : 0, 0);
}

static void
reload(void)
{
    struct config c;
    struct err e = {0};

    config_defaults(&c);
    if (D.config_path && config_load(D.config_path, &c, &e) < 0) {
        log_err("SIGHUP: keeping the current configuration: %s", e.msg);
        config_free(&c);
        return;
    }
    /* What running tasks borrow stays valid: they copy what they keep. */
    free(c.runnerd.state_file);
    c.runnerd.state_file = xstrdup(D.cfg.runnerd.state_file);
    struct config old = D.cfg;
    D.cfg = c;
    for (size_t i = 0; i < D.n_idents; i++)
        ident_labels(&D, &D.idents[i]);
    if (check_profiles(&D, &e) < 0) {
        log_err("SIGHUP: keeping the current configuration: %s", e.msg);
        D.cfg = old;
        for (size_t i = 0; i < D.n_idents; i++)
            ident_labels(&D, &D.idents[i]);
        config_free(&c);
        return;
    }
    config_free(&old);
    D.capacity = c.runner.capacity > 0 ? c.runner.capacity : 1;
    log_level = level_of(c.log_level);
    log_set_json(c.runnerd.log_format && strcmp(c.runnerd.log_format, "json") == 0);
    for (size_t i = 0; i < D.n_idents; i++) {
        ident_labels(&D, &D.idents[i]);
        D.idents[i].slots = D.capacity;
        poller_kick(&D.idents[i]);
    }
    log_notice("configuration reloaded from %s", D.config_path ? D.config_path : "defaults");
}

static void
on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    switch (signum) {
    case SIGHUP:
        reload();
        break;
    case SIGUSR2:
        begin_stop(true, RUNNERD_EXIT_RESTART);
        break;
    default:
        begin_stop(D.detach, RUNNERD_EXIT_OK);
        break;
    }
}

/* ---------------------------------------------------------------- start */

static void
on_flush(uv_timer_t *t)
{
    (void)t;
    task_flush_all(&D);
}

static void
on_gc(uv_timer_t *t)
{
    struct err e = {0};
    int n = 0;

    (void)t;
    if (store_task_gc(D.st, clock_now_ns() - (int64_t)KEEP_DONE_S * 1000000000, &n, &e) < 0)
        log_warn("state cleanup: %s", e.msg);
    else if (n)
        log_info("state cleanup: forgot %d old task(s)", n);
}

static void
start_polling(void)
{
    for (size_t i = 0; i < D.n_idents; i++) {
        struct ident *id = &D.idents[i];
        log_info("%s: runner %s (%s) at %s, %zu label(s), %d slot(s)", id->si.cls, id->si.name,
                 id->si.uuid, id->si.instance, id->n_labels, id->slots);
        poller_start(id);
    }
    notify_send("READY=1");
    notify_status("polling; %zu job(s) running", task_running(&D));
    trim_heap(); /* what start-up parsed and recovered is freed by now */
}

static void
recover(void)
{
    struct store_task *v = NULL;
    size_t n = 0;
    struct err e = {0};

    for (int pass = 0; pass < 2; pass++) {
        const char *state = pass == 0 ? "finishing" : "running";
        if (store_task_list(D.st, state, 0, &v, &n, &e) < 0) {
            log_err("recovery: %s", e.msg);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            task_recover(&D, daemon_ident(&D, v[i].ident ? v[i].ident : "cpu"), &v[i]);
        store_task_free(v, n);
        v = NULL;
        n = 0;
    }
}

static void
on_swept(int removed, void *arg)
{
    (void)arg;
    if (removed)
        log_info("removed %d leftover container(s), network(s) and volume(s)", removed);
    recover();
    start_polling();
}

/* Keeps the objects of tasks that may be resumed; removes everything else we own. */
static void
sweep_then_start(void)
{
    struct store_task *v = NULL;
    size_t n = 0;
    struct err e = {0};
    json_t *keep = json_object();

    if (store_task_list(D.st, "running", 0, &v, &n, &e) == 0) {
        for (size_t i = 0; i < n; i++) {
            const char *name = json_string_value(json_object_get(v[i].exec, "name"));
            if (name)
                json_object_set_new(keep, name, json_true());
        }
        store_task_free(v, n);
    }
    if (dockerexec_sweep_owner(D.docker, D.owner, keep, on_swept, NULL, &e) < 0)
        on_swept(0, NULL);
    json_decref(keep);
}

/* Tasks resume and new ones are taken (once the cache server is up). */
static void
recover_then_poll(void)
{
    recover();
    start_polling();
}

static void
on_docker(const struct docker_res *res, void *arg)
{
    (void)arg;
    if (res->rc < 0) {
        log_err("Docker: %s; docker labels cannot run jobs until runnerd is restarted with "
                "the engine reachable", res->err.msg);
        cachesvc_start(&D, recover_then_poll);
        return;
    }
    D.docker_ready = true;
    log_info("Docker engine connected");
    cachesvc_start(&D, sweep_then_start);
}

/* GnuTLS initialises itself as soon as it is loaded (0.86 MB of RSS and 120 kB of heap at idle,
 * bench/daemon-idle), although runnerd never calls it: Debian's libcurl maps it only for librtmp
 * and libldap, and every transfer is http or https over OpenSSL (CURLOPT_PROTOCOLS_STR in
 * httpc.c). GNUTLS_NO_IMPLICIT_INIT=1 skips that, but only if it is in the environment before
 * the library is loaded: runnerd sets it and executes itself once (same pid, so systemd and
 * the pid file see one process), then removes it again, so nothing runnerd starts inherits it.
 * Not when the operator set it; if the exec fails, runnerd goes on as it is. */
static void
skip_gnutls_init(char **argv)
{
    static const char marker[] = "RUNNERD_SKIPPED_GNUTLS_INIT";

    if (getenv(marker) != NULL) {
        unsetenv(marker);
        unsetenv("GNUTLS_NO_IMPLICIT_INIT");
        return;
    }
    if (getenv("GNUTLS_NO_IMPLICIT_INIT") != NULL)
        return;
    setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 1);
    setenv(marker, "1", 1);
    execv("/proc/self/exe", argv);
    unsetenv(marker);
    unsetenv("GNUTLS_NO_IMPLICIT_INIT");
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 'S'},
        {"log-level", required_argument, NULL, 'L'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *state = NULL, *level = NULL;
    struct err e = {0};
    int c;

    skip_gnutls_init(argv);
    log_init(LOG_PRIO_INFO, getenv("JOURNAL_STREAM") != NULL || getenv("INVOCATION_ID") != NULL);
    log_trace_init();
    config_defaults(&D.cfg);
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            D.config_path = optarg;
            break;
        case 'S':
            state = optarg;
            break;
        case 'L':
            level = optarg;
            break;
        case 'V':
            printf("runnerd %s\n", RUNNERD_VERSION);
            config_free(&D.cfg);
            return 0;
        case 'h':
            usage(stdout);
            config_free(&D.cfg);
            return 0;
        default:
            usage(stderr);
            config_free(&D.cfg);
            return RUNNERD_EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        usage(stderr);
        config_free(&D.cfg);
        return RUNNERD_EXIT_CONFIG;
    }
    if (D.config_path && config_load(D.config_path, &D.cfg, &e) < 0) {
        fprintf(stderr, "runnerd: %s\n", e.msg);
        config_free(&D.cfg);
        return RUNNERD_EXIT_CONFIG;
    }
    /* --state, else $RUNNERD_STATE, else runnerd.state_file: the rule runnerctl follows too. */
    char *state_path = config_state_path(&D.cfg, state);
    free(D.cfg.runnerd.state_file);
    D.cfg.runnerd.state_file = state_path;
    log_level = level_of(level ? level : D.cfg.log_level);
    /* runnerd.log_format: json gives one JSON object a line from here on. */
    log_set_json(D.cfg.runnerd.log_format && strcmp(D.cfg.runnerd.log_format, "json") == 0);
    D.detach = D.cfg.runnerd.detach;
    D.capacity = D.cfg.runner.capacity > 0 ? D.cfg.runner.capacity : 1;
    /* libuv's thread pool (checkouts, action fetches, uploads, hashing) is sized once, at its
     * first use: a slot per job plus a few (doc/style.md §5), unless the operator set it. */
    if (getenv("UV_THREADPOOL_SIZE") == NULL) {
        char n[16];
        snprintf(n, sizeof n, "%d", D.capacity + 4 > 128 ? 128 : D.capacity + 4);
        setenv("UV_THREADPOOL_SIZE", n, 0);
    }
    /* glibc raises its mmap and trim thresholds after big buffers are freed (a job's upload,
     * its log batches), up to 32 MiB: each thread pool thread's arena then keeps megabytes it
     * no longer uses, which malloc_trim() does not reach. Fixed thresholds hand big buffers
     * back at free(): after 16 concurrent jobs, peak RSS 42 MB -> 21-25 MB, and 42 MB -> 17 MB
     * once idle with trim_heap() (bench/concurrency). Not when the operator tunes malloc. */
    if (getenv("GLIBC_TUNABLES") == NULL) {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    }
    srand((unsigned)(getpid() ^ (unsigned)clock_now_ns()));
    if (store_open(D.cfg.runnerd.state_file, &D.st, &e) < 0) {
        fprintf(stderr, "runnerd: %s\n", e.msg);
        config_free(&D.cfg);
        return RUNNERD_EXIT_CONFIG;
    }
    /* One runnerd per state database: held until we exit (store.h, "the daemon lock"). */
    if (store_lock(D.st, NULL, &e) < 0) {
        fprintf(stderr, "runnerd: %s\n", e.msg);
        store_close(D.st);
        config_free(&D.cfg);
        return RUNNERD_EXIT_CONFIG;
    }
    D.loop = uv_default_loop();
    if (store_offload_checkpoints(D.st, D.loop, 0, &e) < 0)
        log_warn("%s", e.msg); /* they stay on the loop */
    D.hooks = (struct daemon_hooks){.slot_freed = poller_kick, .gpus_freed = poller_gpus_freed,
                                    .task_gone = daemon_task_gone};
    D.http = httpc_new(D.loop);
    if (load_identities(&D, &e) < 0) {
        fprintf(stderr, "runnerd: %s\n", e.msg);
        httpc_close(D.http, NULL, NULL);
        uv_run(D.loop, UV_RUN_DEFAULT);
        store_close(D.st);
        config_free(&D.cfg);
        return RUNNERD_EXIT_CONFIG;
    }
    if (setup_labels(&D, &e) < 0) {
        fprintf(stderr, "runnerd: %s\n", e.msg);
        for (size_t i = 0; i < D.n_idents; i++)
            connect_free(D.idents[i].conn);
        httpc_close(D.http, NULL, NULL);
        uv_walk(D.loop, close_walk, NULL);
        uv_run(D.loop, UV_RUN_DEFAULT);
        free_idents();
        gpu_pool_free(D.gpus);
        store_close(D.st);
        config_free(&D.cfg);
        return RUNNERD_EXIT_CONFIG;
    }
    metrics_setup(&D);
    if (D.cfg.runnerd.http && httpd_start(D.loop, D.cfg.runnerd.http, &http_cbs, &D, &D.httpd, &e) < 0)
        log_err("status endpoint %s: %s; going on without it", D.cfg.runnerd.http, e.msg);
    else if (D.httpd)
        log_info("status endpoint on http://%s (/healthz, /readyz, /metrics)", D.cfg.runnerd.http);
    D.agent_path = D.cfg.runnerd.agent ? xstrdup(D.cfg.runnerd.agent) : executor_find_agent(argv[0]);
    gethostname(D.hostname, sizeof D.hostname - 1);
    {
        char *abs = realpath(D.cfg.runnerd.state_file, NULL);
        D.owner = xasprintf("runnerd@%s:%s", D.hostname, abs ? abs : D.cfg.runnerd.state_file);
        free(abs);
    }
    dockerexec_set_owner(D.owner);
    {
        /* The agents' fast channels (doc/docker-engine.md §6c): beside the state database. */
        char *dir = xstrdup(D.cfg.runnerd.state_file), *abs = realpath(dirname(dir), NULL);
        char *run = xasprintf("%s/run", abs ? abs : dir);
        dockerexec_set_run_dir(run);
        free(run);
        free(abs);
        free(dir);
    }
    signal(SIGPIPE, SIG_IGN);
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        uv_signal_init(D.loop, &D.sig[i]);
        uv_signal_start(&D.sig[i], on_signal, sigs[i]);
    }
    uv_timer_init(D.loop, &D.shutdown_timer);
    uv_timer_init(D.loop, &D.flush_timer);
    uv_timer_start(&D.flush_timer, on_flush, FLUSH_MS, FLUSH_MS);
    uv_timer_init(D.loop, &D.gc_timer);
    uv_timer_start(&D.gc_timer, on_gc, 1000, GC_EVERY_MS);
    notify_init(D.loop);
    log_notice("runnerd %s starting: state %s, capacity %d", RUNNERD_VERSION,
               store_path(D.st), D.capacity);

    if (needs_docker(&D)) {
        if (docker_new(D.http, NULL, &D.docker, &e) < 0 ||
            docker_connect(D.docker, on_docker, NULL, &e) < 0) {
            log_err("Docker: %s", e.msg);
            cachesvc_start(&D, recover_then_poll);
        }
    } else {
        cachesvc_start(&D, recover_then_poll);
    }

    uv_run(D.loop, UV_RUN_DEFAULT);

    /* Stopped: all tasks are gone (drain), or the runner was unregistered. */
    task_flush_all(&D);
    if (D.exit_code == RUNNERD_EXIT_UNREGISTERED || task_count(&D) > 0)
        leave_now(D.exit_code ? D.exit_code : RUNNERD_EXIT_FAIL, "exiting");
    for (size_t i = 0; i < D.n_idents; i++) {
        poller_stop(&D.idents[i]);
        connect_free(D.idents[i].conn);
    }
    notify_close();
    cachesvc_stop(&D);
    if (D.httpd)
        httpd_close(D.httpd, NULL, NULL);
    D.httpd = NULL;
    httpc_close(D.http, NULL, NULL);
    uv_walk(D.loop, close_walk, NULL);
    uv_run(D.loop, UV_RUN_DEFAULT);
    docker_free(D.docker);
    uv_loop_close(D.loop);
    free_idents();
    gpu_pool_free(D.gpus);
    metrics_free(D.metrics);
    dockerexec_set_owner(NULL);
    dockerexec_set_run_dir(NULL);
    free(D.owner);
    free(D.agent_path);
    store_close(D.st);
    config_free(&D.cfg);
    log_notice("runnerd stopped");
    return D.exit_code;
}
