/* task.h: one Gitea task in runnerd (task.c; what its job says, and the spool, in
 * task-sink.c): its job, its spool of log rows and step states in the state database, and its
 * reporter (reporter.h). The tasks tell the layers above them through the daemon's hooks
 * (daemon.h). */
#ifndef RUNNERD_TASK_H
#define RUNNERD_TASK_H

#include "daemon.h"
#include "ident.h"
#include "reporter.h"
#include "rpc.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

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
    bool cancel_seen;
    struct reporter rep;         /* its reports to Gitea */
};

/* Takes a task just fetched (t is taken: rpc_clear()ed and freed by the task). */
void task_start(struct ident *id, struct rpc_task *t);
/* At start: reconciles one task the store says was running or finishing; id: the identity
 * the record names (NULL when it is gone). */
void task_recover(struct daemon *d, struct ident *id, struct store_task *row);
/* Number of live tasks, and those whose job still runs. */
size_t task_count(const struct daemon *d);
size_t task_running(const struct daemon *d);
/* Cancels every running job (forced: stop now). */
void task_cancel_all(struct daemon *d, bool forced);
/* Writes what is pending of every task to the store now. */
void task_flush_all(struct daemon *d);

#endif
