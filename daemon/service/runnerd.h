/* runnerd.h: the daemon's parts and what they share (doc/architecture.md, "Sinks"):
 *
 *   runnerd.c  main: configuration, state, identities, signals, shutdown, recovery
 *   poller.c   per identity: Declare, then FetchTask while a slot is free, with backoff
 *   task.c     one Gitea task: the workflow payload run by the engine, its log rows and
 *              step states spooled to the state database first (the sink), resume after a
 *              restart, finalizing a task whose container is gone
 *   reporter.c per task: UpdateLog / UpdateTask from the spool, acknowledgements, outputs,
 *              cancellation from the server, the final reports
 *   notify.c   systemd's notify protocol (READY, STATUS, STOPPING, WATCHDOG)
 *
 * Everything runs on one libuv loop. */
#ifndef RUNNERD_H
#define RUNNERD_H

#include "config.h"
#include "connect.h"
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

struct rtask;
struct daemon;
struct docker;

/* A runner identity (one per resource class) and its poller. */
struct ident {
    struct daemon *d;
    struct store_ident si;
    struct config_label *labels; /* parsed si.labels */
    size_t n_labels;
    struct connect *conn;
    struct connect_call *call;   /* the outstanding Declare or FetchTask */
    uv_timer_t timer;
    bool declared;
    int64_t tasks_version;
    double backoff_s;            /* current wait between polls */
    int unauth;                  /* consecutive "unregistered runner" answers */
    int slots;                   /* tasks this identity may run at once */
    int running;                 /* its tasks whose job still runs */
    int gpus_needed;             /* free GPUs needed before polling (the most a label asks) */
    bool parked;                 /* GPU identity on a host without GPUs: never polls */
    bool disk_low;               /* the last poll was held back for low disk space */
    bool closing;
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
    bool docker_ready;
    char *agent_path;
    char *owner;                 /* docker owner label value: "runnerd:<host>:<state file>" */
    char hostname[256];
    struct ident *idents;
    size_t n_idents;
    struct rtask *tasks;         /* live tasks (list) */
    int capacity;
    bool stopping, draining, forced, detach;
    int exit_code;
    uv_signal_t sig[5];
    uv_timer_t shutdown_timer, flush_timer, gc_timer;
    bool flush_armed;
};

/* One task: its job, its spool and its reporter. */
struct rtask {
    struct rtask *next;
    struct daemon *d;
    struct ident *id;
    int64_t tid;
    struct store_task row;       /* the persisted record, kept in step with the store */
    struct rpc_task *t;          /* the task as fetched */
    struct wf_workflow *wf;
    struct plan *plan;
    struct jobrun *jr;           /* the job run while the job runs */
    struct mask *mask;
    char *label;                 /* the runs-on label chosen */
    bool debug;                  /* secret ACTIONS_STEP_DEBUG is "true" */
    /* Spool: rows not in the store yet. */
    struct store_row *pend;
    size_t npend, cappend;
    size_t pend_bytes;           /* their contents' size */
    bool spool_failed;           /* the last write to the store failed (its disk is full):
                                    pending rows are bounded, and the reporter sends them */
    int64_t lost;                /* rows dropped past those bounds, not said yet */
    int lost_step;               /* the step of the first of them */
    bool cp_unsaved;             /* the last checkpoint is only in memory (a full disk) */
    int64_t rows;                /* rows produced, stored or pending (= next index) */
    int64_t skip;                /* rows to drop: produced again by a resumed job */
    bool dirty;                  /* row needs writing */
    bool job_over;               /* the job finished (or never ran) */
    bool freeing;
    bool holds_slot;             /* counted in id->running until the final report */
    bool counted_running;        /* in runnerd_jobs_running */
    bool state_final;            /* the UpdateTask in flight carries the final result */
    /* Reporter. */
    uv_timer_t rtimer;
    bool rtimer_open;
    struct connect_call *call;
    bool state_dirty;            /* steps changed since the last UpdateTask */
    int64_t last_state_ns;       /* when the server last answered an UpdateTask */
    bool log_turn_done;          /* an UpdateLog went since the last UpdateTask: the state's turn */
    int64_t log_sent_upto;       /* rows the UpdateLog in flight covers */
    bool log_final;              /* ... and it carries noMore */
    int errors;                  /* consecutive failed calls */
    double backoff_s;
    bool cancel_seen;
    void (*stop_done)(struct rtask *rt);
};

/* ---- runnerd.c: labels ---- */
/* Applies runnerd.labels to an identity's labels and computes what it needs to poll. */
void daemon_apply_profiles(struct daemon *d, struct ident *id);
/* True when identity id may take one more task now (a slot, and GPUs for a GPU identity). */
bool daemon_can_take(const struct ident *id);
/* True when the state database's filesystem has less than runnerd.min_free_disk free (*avail:
 * the bytes free, -1 when unknown). No task is taken then: its log would not fit. */
bool daemon_disk_low(const struct daemon *d, long long *avail);
/* A task released its GPUs: GPU identities may poll again. */
void daemon_gpus_freed(struct daemon *d);

/* The label value for metrics ("none" when empty). */
const char *daemon_metric_label(const char *label);

/* ---- poller.c ---- */
int poller_start(struct ident *id);
/* A slot was freed (or the configuration changed): poll again soon if allowed. */
void poller_kick(struct ident *id);
/* Stops polling (cancels the outstanding call). */
void poller_stop(struct ident *id);

/* ---- task.c ---- */
/* Takes a task just fetched (t is taken: rpc_clear()ed and freed by the task). */
void task_start(struct ident *id, struct rpc_task *t);
/* At start: reconciles one task the store says was running or finishing. */
void task_recover(struct daemon *d, struct store_task *row);
/* Number of live tasks, and those whose job still runs. */
size_t task_count(const struct daemon *d);
size_t task_running(const struct daemon *d);
/* Cancels every running job (forced: stop now). */
void task_cancel_all(struct daemon *d, bool forced);
/* Writes one task's pending rows and record to the store. */
int task_flush(struct rtask *rt, struct err *e);
/* The reporter delivered everything (or gave up): the task is done and freed. */
void task_reported(struct rtask *rt);
/* The server says the task is final (cancelled, or failed as a zombie): stop the job. */
void task_server_final(struct rtask *rt, int result);
/* The server answered a state update (a resumed job may start its next step now). */
void task_server_answered(struct rtask *rt);
/* Writes what is pending of every task to the store now. */
void task_flush_all(struct daemon *d);
/* The job names (docker job label values) of live tasks, to keep in a sweep. */
json_t *task_live_jobs(const struct daemon *d);
/* Tells the daemon a task ended (called by task.c; runnerd.c decides about exiting). */
void daemon_task_gone(struct daemon *d);
/* The identity of class cls, or NULL. */
struct ident *daemon_ident(struct daemon *d, const char *cls);

/* ---- reporter.c: what task.c and reporter.c share ---- */
struct rtask_report;
/* Starts reporting for task rt (timer, first UpdateTask soon). */
void reporter_start(struct rtask *rt);
/* Something changed that the server should hear about soon (a step started or ended). */
void reporter_poke(struct rtask *rt);
/* Stops the reporter's timer and call; reporter_closed() is called by task.c after. */
void reporter_stop(struct rtask *rt, void (*done)(struct rtask *rt));

/* ---- notify.c ---- */
void notify_init(uv_loop_t *loop);
void notify_send(const char *state);   /* "READY=1", "STOPPING=1", ... */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_close(void);


#endif
