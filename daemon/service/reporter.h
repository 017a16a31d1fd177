/* reporter.h: a task's reports to Gitea (reporter.c): UpdateLog and UpdateTask from the state
 * database, one call at a time. The task owns the reporter (embeds it) and the record and rows
 * it reports; the reporter talks back only through its ops. */
#ifndef RUNNERD_REPORTER_H
#define RUNNERD_REPORTER_H

#include "connect.h"
#include "mask.h"
#include "metrics.h"
#include "runner/err.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* What the reporter asks of, and tells, its task (arg: reporter.arg). */
struct reporter_ops {
    /* Writes the task's pending rows and record to the store. */
    int (*flush)(void *arg, struct err *e);
    /* The rows not in the store yet (*n of them), and whether the store takes rows at all:
     * while it does not (its disk is full) the reporter sends them from memory. */
    const struct store_row *(*pending)(void *arg, size_t *n, bool *store_fails);
    /* True once the job is over (or never ran): the final reports are due. */
    bool (*job_over)(void *arg);
    /* The reporter changed the record (an acknowledgement, a delivery): it needs writing. */
    void (*changed)(void *arg);
    /* The server says the task is final (cancelled, or failed as a zombie). */
    void (*server_final)(void *arg, int result);
    /* The server answered a state update while the job runs. */
    void (*server_answered)(void *arg);
    /* Everything was delivered (or given up): the task is done. */
    void (*reported)(void *arg);
};

struct reporter {
    /* Set by the task before reporter_start(). */
    uv_loop_t *loop;
    struct store *st;
    struct connect *conn;        /* NULL: the task's identity is gone, nothing can be sent */
    struct metric_family *sent;  /* rows acknowledged */
    const struct mask *mask;     /* the task's secrets: no output holding one is sent */
    int64_t tid;
    struct store_task *row;      /* the task's record: the reporter moves log_acked, log_closed,
                                    final_sent, sent_outputs and reason */
    const struct reporter_ops *ops;
    void *arg;
    /* The reporter's own. */
    uv_timer_t timer;
    bool timer_open;
    struct connect_call *call;
    bool state_dirty;            /* steps changed since the last UpdateTask */
    bool state_final;            /* the UpdateTask in flight carries the final result */
    int64_t last_state_ns;       /* when the server last answered an UpdateTask */
    bool log_turn_done;          /* an UpdateLog went since the last UpdateTask: the state's turn */
    int64_t log_sent_upto;       /* rows the UpdateLog in flight covers */
    bool log_final;              /* ... and it carries noMore */
    int errors;                  /* consecutive failed calls */
    double backoff_s;
    void (*stop_done)(void *arg);
};

/* Starts reporting (timer, first UpdateTask soon). */
void reporter_start(struct reporter *r);
/* A step started or ended, or the job did: the server should hear about it soon. */
void reporter_poke(struct reporter *r);
/* Stops the reporter's timer and call; done(arg) is called once both are gone. */
void reporter_stop(struct reporter *r, void (*done)(void *arg));

#endif
