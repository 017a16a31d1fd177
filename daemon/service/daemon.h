/* daemon.h: what the daemon owns (doc/architecture.md, "Sinks"): its configuration, state
 * database, HTTP client, Docker engine, GPU inventory, metrics, identities and live tasks. The
 * service's files, from the top down (each calls only the ones below it; what goes up goes
 * through the hooks here and the reporter's ops):
 *
 *   runnerd.c  main: configuration, state, identities, signals, shutdown, recovery
 *   poller.c   per identity: Declare, then FetchTask while a slot is free, with backoff
 *              (ident.h, poller.h)
 *   task.c     one Gitea task: the workflow payload launched through the engine, resume
 *              after a restart, finalizing a task whose container is gone (task.h)
 *   task-sink.c  what the job run says to the task: log rows and step states spooled to the
 *              state database first (task-int.h)
 *   reporter.c per task: UpdateLog / UpdateTask from the spool, acknowledgements, outputs,
 *              cancellation from the server, the final reports (reporter.h)
 *   notify.c   systemd's notify protocol (READY, STATUS, STOPPING, WATCHDOG) (notify.h)
 *
 * Everything runs on one libuv loop. */
#ifndef RUNNERD_DAEMON_H
#define RUNNERD_DAEMON_H

#include "config.h"
#include "metrics.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Exit statuses. */
enum {
    RUNNERD_EXIT_OK = 0,
    RUNNERD_EXIT_FAIL = 1,
    RUNNERD_EXIT_CONFIG = 2,
    RUNNERD_EXIT_RESTART = 75,      /* detached for a restart: start again (EX_TEMPFAIL) */
    RUNNERD_EXIT_UNREGISTERED = 78, /* Gitea does not know this runner: do not restart */
};

struct daemon;
struct docker;
struct gpu_pool;
struct httpc;
struct httpd;
struct ident;
struct jobcache;
struct mask;
struct rtask;

/* What the tasks tell the layers above them (set by runnerd.c). */
struct daemon_hooks {
    /* A task gave its identity's slot back: poll again soon if allowed. */
    void (*slot_freed)(struct ident *id);
    /* A task released its GPUs: GPU identities may poll again. */
    void (*gpus_freed)(struct daemon *d);
    /* A task ended and was freed (runnerd.c decides about exiting). */
    void (*task_gone)(struct daemon *d);
};

struct daemon {
    uv_loop_t *loop;
    struct config cfg;
    char *config_path;           /* NULL: defaults */
    struct store *st;
    struct httpc *http;
    struct docker *docker;       /* NULL until connected (only when a label needs it) */
    struct gpu_pool *gpus;       /* the GPU inventory and its grants */
    const char *gpus_how;        /* where the inventory came from */
    long long host_memory;       /* bytes, for percentage limits */
    struct metrics *metrics;     /* /metrics (always kept; served when runnerd.http is set) */
    struct {
        struct metric_family *jobs, *running, *poll_errors, *spooled, *sent, *lost,
            *step_seconds, *gpu_allocated, *gpu_grants, *slots_free;
    } m;
    struct httpd *httpd;
    struct jobcache *cache;      /* the actions/cache server, or NULL (cachesvc.h) */
    bool docker_ready;
    char *agent_path;
    char *owner;                 /* docker owner label value: "runnerd:<host>:<state file>" */
    char hostname[256];
    struct ident *idents;
    size_t n_idents;
    struct rtask *tasks;         /* live tasks (list) */
    struct daemon_hooks hooks;
    int capacity;
    bool stopping, forced, detach;
    int exit_code;
    uv_signal_t sig[5];
    uv_timer_t shutdown_timer, flush_timer, gc_timer;
};

#endif
