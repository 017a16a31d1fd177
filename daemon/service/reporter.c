/* reporter.c: a task's reports to Gitea, sent from the state database (spec §3.6, §3.7, §4.6).
 *
 * One call at a time per task, UpdateLog before UpdateTask. Log rows go from the first row the
 * server has not acknowledged, at most BATCH_ROWS at once, within a second of being written;
 * the server's ackIndex is stored and the rows before it are never sent again. UpdateTask
 * carries every step's state; it is sent when a step starts or ends and at least every
 * STATE_EVERY_S seconds while the job runs (the server's zombie keep-alive). A final result in
 * a reply while the job runs cancels the job. When the job is over: the last rows with noMore,
 * then the final state with the outputs until the server has acknowledged all of them, and
 * only then is the task done. Failed calls are retried with a growing delay (up to
 * BACKOFF_MAX_S); nothing is lost while Gitea is away. */
#include "runnerd.h"

#include "mask.h"
#include "rpc.h"
#include "runner/clock.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define TICK_MS 1000           /* log latency and the state heartbeat's resolution */
#define STATE_EVERY_MS 1000     /* state (and so cancel) latency while the job runs */
#define POKE_MS 50             /* coalesce step transitions */
#define BATCH_ROWS 1000
#define BACKOFF_MAX_S 5.0
#define GIVE_UP_ERRORS 60      /* non-transient failures in a row before a finished task is dropped */
#define OUTPUT_KEY_MAX 255
#define OUTPUT_VALUE_MAX (1024 * 1024)

static void tick(struct rtask *rt);

/* The index after the last row there is to send: the stored rows, and while the store takes no
 * rows (its disk is full) the ones waiting in memory after them, so that the log, the row that
 * says rows were lost and the end of the job still reach Gitea. */
static int64_t
rows_end(const struct rtask *rt)
{
    return rt->row.log_rows + (rt->spool_failed ? (int64_t)rt->npend : 0);
}

/* Is an UpdateTask due while the job runs: a step changed, or the last one is STATE_EVERY_MS
 * old (the server's keep-alive, each step's growing log length, and the only way a cancel is
 * learnt)? */
static bool
state_due(const struct rtask *rt)
{
    /* The slack: a timer armed for STATE_EVERY_MS may fire a little early by the wall clock
     * (the loop's time is cached), and missing it would double the interval. */
    return rt->state_dirty ||
           clock_now_ns() - rt->last_state_ns >= (int64_t)(STATE_EVERY_MS - 100) * 1000000;
}

static void
on_timer(uv_timer_t *t)
{
    tick(t->data);
}

static void
arm(struct rtask *rt, uint64_t ms)
{
    if (!rt->rtimer_open || rt->stop_done)
        return;
    if (uv_is_active((uv_handle_t *)&rt->rtimer) && uv_timer_get_due_in(&rt->rtimer) <= ms)
        return;
    uv_timer_start(&rt->rtimer, on_timer, ms, 0);
}

void
reporter_start(struct rtask *rt)
{
    uv_timer_init(rt->d->loop, &rt->rtimer);
    rt->rtimer.data = rt;
    rt->rtimer_open = true;
    rt->state_dirty = true;
    rt->backoff_s = 0;
    arm(rt, 0);
}

void
reporter_poke(struct rtask *rt)
{
    if (rt->call == NULL)
        arm(rt, POKE_MS);
}

static void
on_rtimer_closed(uv_handle_t *h)
{
    struct rtask *rt = h->data;

    rt->rtimer_open = false;
    rt->stop_done(rt);
}

void
reporter_stop(struct rtask *rt, void (*done)(struct rtask *rt))
{
    rt->stop_done = done;
    if (rt->call) {
        connect_cancel(rt->call); /* its callback comes back here */
        return;
    }
    if (!rt->rtimer_open) {
        done(rt);
        return;
    }
    uv_timer_stop(&rt->rtimer);
    uv_close((uv_handle_t *)&rt->rtimer, on_rtimer_closed);
}

static struct rpc_time
ts(int64_t ns)
{
    struct rpc_time t = {0};

    if (ns > 0) {
        t.sec = ns / 1000000000;
        t.nsec = (int32_t)(ns % 1000000000);
        t.set = true;
    }
    return t;
}

/* After a call: the next tick, later after failures. */
static void
next(struct rtask *rt, bool ok)
{
    if (rt->stop_done) {
        reporter_stop(rt, rt->stop_done);
        return;
    }
    if (ok) {
        rt->errors = 0;
        rt->backoff_s = 0;
        /* More to do right away when the job is over or rows are waiting. */
        bool more = rt->row.log_acked < rows_end(rt) || rt->state_dirty ||
                    (rt->job_over && !rt->row.final_sent);
        if (!rt->job_over && rt->state_dirty) {
            arm(rt, POKE_MS); /* a step changed while a call was out */
            return;
        }
        if (!rt->job_over && rt->log_turn_done && state_due(rt)) {
            arm(rt, 0); /* the state's turn after a log call */
            return;
        }
        arm(rt, more && (rt->job_over || rows_end(rt) - rt->row.log_acked >= BATCH_ROWS)
                    ? 0 : TICK_MS);
        return;
    }
    rt->errors++;
    rt->backoff_s = rt->backoff_s <= 0 ? 1.0 : rt->backoff_s * 1.6;
    if (rt->backoff_s > BACKOFF_MAX_S)
        rt->backoff_s = BACKOFF_MAX_S;
    double jitter = 0.8 + 0.4 * ((double)(rand() % 1000) / 1000.0);
    arm(rt, (uint64_t)(rt->backoff_s * jitter * 1000.0));
}

/* Did a failed call say something that will not change by retrying? */
static bool
hopeless(struct rtask *rt, const struct connect_result *r)
{
    if (r->cls == RPC_ERR_UNAVAILABLE || r->rc == ERR_TIMEOUT)
        return false;
    return rt->errors + 1 >= GIVE_UP_ERRORS;
}

/* ---------------------------------------------------------------- UpdateLog */

static void
on_log(const struct connect_result *r, void *arg)
{
    struct rtask *rt = arg;
    struct rpc_update_log_response *resp = r->resp;
    struct err e = {0};
    bool final = rt->log_final;
    int64_t upto = rt->log_sent_upto;

    rt->call = NULL;
    if (r->rc < 0) {
        if (r->rc == ERR_CANCELED) {
            next(rt, false);
            return;
        }
        if (r->rpc && r->rpc->message && strstr(r->rpc->message, "has been archived")) {
            /* Someone (the server's zombie cleanup, an earlier noMore) closed the log. */
            log_warn("task %lld: the server's log is already archived; %lld rows not delivered",
                     (long long)rt->tid, (long long)(rt->row.log_rows - rt->row.log_acked));
            rt->row.log_acked = rows_end(rt);
            rt->row.log_closed = true;
            rt->dirty = true;
            next(rt, true);
            return;
        }
        log_warn("task %lld: %s", (long long)rt->tid, r->err.msg);
        if (rt->job_over && hopeless(rt, r)) {
            log_err("task %lld: giving up delivering its log", (long long)rt->tid);
            rt->row.log_closed = true;
            rt->row.log_acked = rows_end(rt);
            rt->dirty = true;
        }
        next(rt, false);
        return;
    }
    int64_t ack = resp->ack_index;
    rpc_clear(&rpc_update_log_response_type, resp);
    free(resp);
    if (ack < rt->row.log_acked)
        log_warn("task %lld: the server now holds %lld log rows, fewer than the %lld it "
                 "acknowledged: submitted logs are lost; sending them again",
                 (long long)rt->tid, (long long)ack, (long long)rt->row.log_acked);
    if (ack > rt->row.log_rows + (int64_t)rt->npend)
        ack = rt->row.log_rows + (int64_t)rt->npend;
    if (ack > rt->row.log_acked)
        metric_add(rt->d->m.sent, (double)(ack - rt->row.log_acked));
    rt->row.log_acked = ack; /* the store keeps the rows; ack only moves where we send from */
    /* The stored ack never passes the stored rows: rows sent from memory are stored (and the
     * ack with them) by the flush that takes them. */
    int64_t stored_ack = ack < rt->row.log_rows ? ack : rt->row.log_rows;
    if (store_log_ack(rt->d->st, rt->tid, stored_ack, &e) < 0 && e.code != -ERANGE &&
        !rt->spool_failed)
        log_warn("task %lld: %s", (long long)rt->tid, e.msg);
    if (final && ack >= upto)
        rt->row.log_closed = true;
    rt->dirty = true;
    next(rt, true);
}

static int
send_log(struct rtask *rt)
{
    struct store_row *rows = NULL;
    size_t n = 0;
    struct err e = {0};
    int rc;

    if (rt->row.log_acked < rt->row.log_rows) {
        rc = store_log_read(rt->d->st, rt->tid, rt->row.log_acked, BATCH_ROWS, &rows, &n, &e);
        if (rc < 0) {
            log_err("task %lld: reading the spool: %s", (long long)rt->tid, e.msg);
            return rc;
        }
    }
    /* Then the rows waiting in memory, from the first one not sent. */
    int64_t from = rt->row.log_acked + (int64_t)n - rt->row.log_rows;
    size_t nmem = 0;
    if (from >= 0 && rt->spool_failed && (size_t)from < rt->npend && n < BATCH_ROWS) {
        nmem = rt->npend - (size_t)from;
        if (nmem > BATCH_ROWS - n)
            nmem = BATCH_ROWS - n;
    }
    struct rpc_update_log_request req = {.task_id = rt->tid, .index = rt->row.log_acked};
    req.rows = xcalloc(n + nmem ? n + nmem : 1, sizeof *req.rows);
    for (size_t i = 0; i < n; i++) {
        req.rows[i].time = ts(rows[i].time_ns);
        req.rows[i].content = rows[i].content;
    }
    for (size_t i = 0; i < nmem; i++) {
        req.rows[n + i].time = ts(rt->pend[(size_t)from + i].time_ns);
        req.rows[n + i].content = rt->pend[(size_t)from + i].content;
    }
    n += nmem;
    req.n_rows = n;
    int64_t upto = rt->row.log_acked + (int64_t)n;
    req.no_more = rt->job_over && upto >= rows_end(rt) && n > 0;
    rt->log_sent_upto = upto;
    rt->log_final = req.no_more;
    rc = connect_call(rt->id->conn, RPC_PATH_UPDATE_LOG, &rpc_update_log_request_type, &req,
                      &rpc_update_log_response_type, 0, on_log, rt, &rt->call, &e);
    free(req.rows);
    store_rows_free(rows, n - nmem);
    if (rc < 0)
        log_err("task %lld: UpdateLog: %s", (long long)rt->tid, e.msg);
    return rc;
}

/* ---------------------------------------------------------------- UpdateTask */

static bool
was_sent(const struct rtask *rt, const char *key)
{
    size_t i;
    json_t *v;

    json_array_foreach(rt->row.sent_outputs, i, v) {
        if (json_string_value(v) && strcmp(json_string_value(v), key) == 0)
            return true;
    }
    return false;
}

/* Outputs Gitea would drop (key over 255 bytes, value over 1 MiB) count as delivered. */
static bool
sendable(const char *k, const json_t *v)
{
    return strlen(k) <= OUTPUT_KEY_MAX && json_is_string(v) &&
           json_string_length(v) <= OUTPUT_VALUE_MAX;
}

/* An output that holds a secret is never sent. The job run already dropped it with a warning
 * in the job's log; this guards outputs stored by anything else (a record from an older
 * runnerd): they count as delivered. */
static bool
secret_free(const struct rtask *rt, const json_t *v)
{
    return !json_is_string(v) || rt->mask == NULL ||
           !mask_hits(rt->mask, json_string_value(v), json_string_length(v));
}

static bool
outputs_done(const struct rtask *rt)
{
    const char *k;
    json_t *v;

    json_object_foreach(rt->row.outputs, k, v) {
        if (sendable(k, v) && secret_free(rt, v) && !was_sent(rt, k))
            return false;
    }
    return true;
}

static void
on_state(const struct connect_result *r, void *arg)
{
    struct rtask *rt = arg;
    struct rpc_update_task_response *resp = r->resp;
    bool final = rt->state_final; /* what was sent, not what is true now */

    rt->call = NULL;
    if (r->rc < 0) {
        if (r->rc != ERR_CANCELED)
            log_warn("task %lld: %s", (long long)rt->tid, r->err.msg);
        if (r->rc != ERR_CANCELED && final && hopeless(rt, r)) {
            log_err("task %lld: giving up delivering its final state", (long long)rt->tid);
            rt->row.final_sent = true;
            free(rt->row.reason);
            rt->row.reason = xasprintf("the final state could not be delivered: %s", r->err.msg);
            rt->dirty = true;
            task_reported(rt);
            return;
        }
        rt->state_dirty = true;
        next(rt, false);
        return;
    }
    if (rt->row.sent_outputs == NULL)
        rt->row.sent_outputs = json_array();
    for (size_t i = 0; i < resp->sent_outputs.n; i++)
        if (!was_sent(rt, resp->sent_outputs.v[i]))
            json_array_append_new(rt->row.sent_outputs, json_string(resp->sent_outputs.v[i]));
    int server_result = resp->state ? resp->state->result : 0;
    rpc_clear(&rpc_update_task_response_type, resp);
    free(resp);
    rt->last_state_ns = clock_now_ns();
    rt->dirty = true;
    if (!final && server_result != RPC_RESULT_UNSPECIFIED)
        task_server_final(rt, server_result);
    if (!final)
        task_server_answered(rt);
    if (final && outputs_done(rt)) {
        rt->row.final_sent = true;
        task_reported(rt);
        return;
    }
    next(rt, true);
}

static int
send_state(struct rtask *rt)
{
    struct err e = {0};
    size_t n = json_array_size(rt->row.steps), i;
    struct rpc_task_state st = {.id = rt->tid, .started_at = ts(rt->row.started_ns)};
    struct rpc_update_task_request req = {.state = &st};
    json_t *s;
    int rc;

    st.steps = xcalloc(n ? n : 1, sizeof *st.steps);
    json_array_foreach(rt->row.steps, i, s) {
        struct rpc_step_state *ss = &st.steps[i];
        ss->id = (int64_t)i;
        ss->result = (int)json_integer_value(json_object_get(s, "result"));
        ss->started_at = ts(json_integer_value(json_object_get(s, "started_ns")));
        ss->stopped_at = ts(json_integer_value(json_object_get(s, "stopped_ns")));
        ss->log_index = json_integer_value(json_object_get(s, "log_index"));
        ss->log_length = json_integer_value(json_object_get(s, "log_length"));
    }
    st.n_steps = n;
    if (rt->job_over) {
        st.result = rt->row.result;
        st.stopped_at = ts(rt->row.stopped_ns ? rt->row.stopped_ns : clock_now_ns());
        const char *k;
        json_t *v;
        req.outputs.v = xcalloc(json_object_size(rt->row.outputs) + 1, sizeof *req.outputs.v);
        json_object_foreach(rt->row.outputs, k, v) {
            if (!sendable(k, v)) {
                log_warn("task %lld: output '%.40s' is too large for Gitea; not sent",
                         (long long)rt->tid, k);
                continue;
            }
            if (!secret_free(rt, v)) {
                log_warn("task %lld: output '%.40s' may contain a secret; not sent",
                         (long long)rt->tid, k);
                continue;
            }
            if (was_sent(rt, k))
                continue;
            req.outputs.v[req.outputs.n].key = (char *)(uintptr_t)k;
            req.outputs.v[req.outputs.n].value = (char *)(uintptr_t)json_string_value(v);
            req.outputs.n++;
        }
    }
    rt->state_dirty = false;
    rt->state_final = rt->job_over;
    rc = connect_call(rt->id->conn, RPC_PATH_UPDATE_TASK, &rpc_update_task_request_type, &req,
                      &rpc_update_task_response_type, 0, on_state, rt, &rt->call, &e);
    free(st.steps);
    free(req.outputs.v);
    if (rc < 0) {
        rt->state_dirty = true;
        log_err("task %lld: UpdateTask: %s", (long long)rt->tid, e.msg);
    }
    return rc;
}

/* ---------------------------------------------------------------- the tick */

static void
tick(struct rtask *rt)
{
    struct err e = {0};

    if (rt->call || rt->stop_done || rt->freeing)
        return;
    if (rt->id == NULL || rt->id->conn == NULL) {
        log_err("task %lld: its runner identity is gone; nothing can be reported",
                (long long)rt->tid);
        if (rt->job_over) {
            rt->row.final_sent = true;
            task_reported(rt);
        }
        return;
    }
    bool failing = rt->spool_failed; /* said once, when it starts */
    if (task_flush(rt, &e) < 0 && !failing)
        log_err("task %lld: saving state: %s", (long long)rt->tid, e.msg);
    int rc = 0;
    bool rows = rt->row.log_acked < rows_end(rt);
    /* While the job runs, rows never starve the state: a step that started or ended goes
     * before the rows (Gitea places a row under the step its index falls in, and before the
     * first step is running everything is "Set up job"), and after a log call a due state goes
     * first. Once the job is over, every row goes before the final state. */
    bool state_turn = !rt->job_over && state_due(rt) &&
                      (rt->state_dirty || rt->log_turn_done || !rows);
    if (state_turn) {
        rt->log_turn_done = false;
        rc = send_state(rt);
    } else if (rows) {
        rt->log_turn_done = true;
        rc = send_log(rt);
    } else if (rt->job_over && !rt->row.log_closed) {
        /* Every row went out before the job ended; the server archives only with a new row,
         * and leaving the log in its database is harmless (spec §3.7). */
        rt->row.log_closed = true;
        rt->dirty = true;
        rc = send_state(rt);
    } else if (rt->job_over)
        rc = send_state(rt);
    else {
        /* Nothing waits: wake for the next state, or the next rows' second. */
        int64_t left_ms = STATE_EVERY_MS - (clock_now_ns() - rt->last_state_ns) / 1000000;
        arm(rt, left_ms > 0 && left_ms < TICK_MS ? (uint64_t)left_ms : TICK_MS);
    }
    if (rc < 0)
        next(rt, false);
}
