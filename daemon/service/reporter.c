/* reporter.c: a task's reports to Gitea, sent from the state database (doc/gitea-protocol.md §3.6,
 * §3.7, §4.6).
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
#include "reporter.h"

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

static void tick(struct reporter *r);

static bool
job_over(const struct reporter *r)
{
    return r->ops->job_over(r->arg);
}

/* The rows not in the store yet (*n), and whether the store fails to take them. */
static const struct store_row *
pending(const struct reporter *r, size_t *n, bool *store_fails)
{
    return r->ops->pending(r->arg, n, store_fails);
}

/* The index after the last row there is to send: the stored rows, and while the store takes no
 * rows (its disk is full) the ones waiting in memory after them, so that the log, the row that
 * says rows were lost and the end of the job still reach Gitea. */
static int64_t
rows_end(const struct reporter *r)
{
    size_t npend;
    bool fails;

    pending(r, &npend, &fails);
    return r->row->log_rows + (fails ? (int64_t)npend : 0);
}

/* Is an UpdateTask due while the job runs: a step changed, or the last one is STATE_EVERY_MS
 * old (the server's keep-alive, each step's growing log length, and the only way a cancel is
 * learnt)? */
static bool
state_due(const struct reporter *r)
{
    /* The slack: a timer armed for STATE_EVERY_MS may fire a little early by the wall clock
     * (the loop's time is cached), and missing it would double the interval. */
    return r->state_dirty ||
           clock_now_ns() - r->last_state_ns >= (int64_t)(STATE_EVERY_MS - 100) * 1000000;
}

static void
on_timer(uv_timer_t *t)
{
    tick(t->data);
}

static void
arm(struct reporter *r, uint64_t ms)
{
    if (!r->timer_open || r->stop_done)
        return;
    if (uv_is_active((uv_handle_t *)&r->timer) && uv_timer_get_due_in(&r->timer) <= ms)
        return;
    uv_timer_start(&r->timer, on_timer, ms, 0);
}

void
reporter_start(struct reporter *r)
{
    uv_timer_init(r->loop, &r->timer);
    r->timer.data = r;
    r->timer_open = true;
    r->state_dirty = true;
    r->backoff_s = 0;
    arm(r, 0);
}

void
reporter_poke(struct reporter *r)
{
    r->state_dirty = true;
    if (r->call == NULL)
        arm(r, POKE_MS);
}

static void
on_rtimer_closed(uv_handle_t *h)
{
    struct reporter *r = h->data;

    r->timer_open = false;
    r->stop_done(r->arg);
}

void
reporter_stop(struct reporter *r, void (*done)(void *arg))
{
    r->stop_done = done;
    if (r->call) {
        connect_cancel(r->call); /* its callback comes back here */
        return;
    }
    if (!r->timer_open) {
        done(r->arg);
        return;
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_rtimer_closed);
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
next(struct reporter *r, bool ok)
{
    if (r->stop_done) {
        reporter_stop(r, r->stop_done);
        return;
    }
    if (ok) {
        r->errors = 0;
        r->backoff_s = 0;
        /* More to do right away when the job is over or rows are waiting. */
        bool more = r->row->log_acked < rows_end(r) || r->state_dirty ||
                    (job_over(r) && !r->row->final_sent);
        if (!job_over(r) && r->state_dirty) {
            arm(r, POKE_MS); /* a step changed while a call was out */
            return;
        }
        if (!job_over(r) && r->log_turn_done && state_due(r)) {
            arm(r, 0); /* the state's turn after a log call */
            return;
        }
        arm(r, more && (job_over(r) || rows_end(r) - r->row->log_acked >= BATCH_ROWS)
                    ? 0 : TICK_MS);
        return;
    }
    r->errors++;
    r->backoff_s = r->backoff_s <= 0 ? 1.0 : r->backoff_s * 1.6;
    if (r->backoff_s > BACKOFF_MAX_S)
        r->backoff_s = BACKOFF_MAX_S;
    double jitter = 0.8 + 0.4 * ((double)(rand() % 1000) / 1000.0);
    arm(r, (uint64_t)(r->backoff_s * jitter * 1000.0));
}

/* Did a failed call say something that will not change by retrying? */
static bool
hopeless(struct reporter *r, const struct connect_result *res)
{
    if (res->cls == RPC_ERR_UNAVAILABLE || res->rc == ERR_TIMEOUT)
        return false;
    return r->errors + 1 >= GIVE_UP_ERRORS;
}

/* ---------------------------------------------------------------- UpdateLog */

static void
on_log(const struct connect_result *res, void *arg)
{
    struct reporter *r = arg;
    struct rpc_update_log_response *resp = res->resp;
    struct err e = {0};
    bool final = r->log_final;
    int64_t upto = r->log_sent_upto;
    size_t npend;
    bool fails;

    r->call = NULL;
    if (res->rc < 0) {
        if (res->rc == ERR_CANCELED) {
            next(r, false);
            return;
        }
        if (res->rpc && res->rpc->message && strstr(res->rpc->message, "has been archived")) {
            /* Someone (the server's zombie cleanup, an earlier noMore) closed the log. */
            log_warn("task %lld: the server's log is already archived; %lld rows not delivered",
                     (long long)r->tid, (long long)(r->row->log_rows - r->row->log_acked));
            r->row->log_acked = rows_end(r);
            r->row->log_closed = true;
            r->ops->changed(r->arg);
            next(r, true);
            return;
        }
        log_warn("task %lld: %s", (long long)r->tid, res->err.msg);
        if (job_over(r) && hopeless(r, res)) {
            log_err("task %lld: giving up delivering its log", (long long)r->tid);
            r->row->log_closed = true;
            r->row->log_acked = rows_end(r);
            r->ops->changed(r->arg);
        }
        next(r, false);
        return;
    }
    pending(r, &npend, &fails);
    int64_t ack = resp->ack_index;
    rpc_clear(&rpc_update_log_response_type, resp);
    free(resp);
    if (ack < r->row->log_acked)
        log_warn("task %lld: the server now holds %lld log rows, fewer than the %lld it "
                 "acknowledged: submitted logs are lost; sending them again",
                 (long long)r->tid, (long long)ack, (long long)r->row->log_acked);
    if (ack > r->row->log_rows + (int64_t)npend)
        ack = r->row->log_rows + (int64_t)npend;
    if (ack > r->row->log_acked)
        metric_add(r->sent, (double)(ack - r->row->log_acked));
    r->row->log_acked = ack; /* the store keeps the rows; ack only moves where we send from */
    /* The stored ack never passes the stored rows: rows sent from memory are stored (and the
     * ack with them) by the flush that takes them. */
    int64_t stored_ack = ack < r->row->log_rows ? ack : r->row->log_rows;
    if (store_log_ack(r->st, r->tid, stored_ack, &e) < 0 && e.code != -ERANGE &&
        !fails)
        log_warn("task %lld: %s", (long long)r->tid, e.msg);
    if (final && ack >= upto)
        r->row->log_closed = true;
    r->ops->changed(r->arg);
    next(r, true);
}

static int
send_log(struct reporter *r)
{
    struct store_row *rows = NULL;
    size_t n = 0;
    struct err e = {0};
    size_t npend;
    bool fails;
    const struct store_row *pend = pending(r, &npend, &fails);
    int rc;

    if (r->row->log_acked < r->row->log_rows) {
        rc = store_log_read(r->st, r->tid, r->row->log_acked, BATCH_ROWS, &rows, &n, &e);
        if (rc < 0) {
            log_err("task %lld: reading the spool: %s", (long long)r->tid, e.msg);
            return rc;
        }
    }
    /* Then the rows waiting in memory, from the first one not sent. */
    int64_t from = r->row->log_acked + (int64_t)n - r->row->log_rows;
    size_t nmem = 0;
    if (from >= 0 && fails && (size_t)from < npend && n < BATCH_ROWS) {
        nmem = npend - (size_t)from;
        if (nmem > BATCH_ROWS - n)
            nmem = BATCH_ROWS - n;
    }
    struct rpc_update_log_request req = {.task_id = r->tid, .index = r->row->log_acked};
    req.rows = xcalloc(n + nmem ? n + nmem : 1, sizeof *req.rows);
    for (size_t i = 0; i < n; i++) {
        req.rows[i].time = ts(rows[i].time_ns);
        req.rows[i].content = rows[i].content;
    }
    for (size_t i = 0; i < nmem; i++) {
        req.rows[n + i].time = ts(pend[(size_t)from + i].time_ns);
        req.rows[n + i].content = pend[(size_t)from + i].content;
    }
    n += nmem;
    req.n_rows = n;
    int64_t upto = r->row->log_acked + (int64_t)n;
    req.no_more = job_over(r) && upto >= rows_end(r) && n > 0;
    r->log_sent_upto = upto;
    r->log_final = req.no_more;
    rc = connect_call(r->conn, RPC_PATH_UPDATE_LOG, &rpc_update_log_request_type, &req,
                      &rpc_update_log_response_type, 0, on_log, r, &r->call, &e);
    free(req.rows);
    store_rows_free(rows, n - nmem);
    if (rc < 0)
        log_err("task %lld: UpdateLog: %s", (long long)r->tid, e.msg);
    return rc;
}

/* ---------------------------------------------------------------- UpdateTask */

static bool
was_sent(const struct reporter *r, const char *key)
{
    size_t i;
    json_t *v;

    json_array_foreach(r->row->sent_outputs, i, v) {
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
secret_free(const struct reporter *r, const json_t *v)
{
    return !json_is_string(v) || r->mask == NULL ||
           !mask_hits(r->mask, json_string_value(v), json_string_length(v));
}

static bool
outputs_done(const struct reporter *r)
{
    const char *k;
    json_t *v;

    json_object_foreach(r->row->outputs, k, v) {
        if (sendable(k, v) && secret_free(r, v) && !was_sent(r, k))
            return false;
    }
    return true;
}

static void
on_state(const struct connect_result *res, void *arg)
{
    struct reporter *r = arg;
    struct rpc_update_task_response *resp = res->resp;
    bool final = r->state_final; /* what was sent, not what is true now */

    r->call = NULL;
    if (res->rc < 0) {
        if (res->rc != ERR_CANCELED)
            log_warn("task %lld: %s", (long long)r->tid, res->err.msg);
        if (res->rc != ERR_CANCELED && final && hopeless(r, res)) {
            log_err("task %lld: giving up delivering its final state", (long long)r->tid);
            r->row->final_sent = true;
            free(r->row->reason);
            r->row->reason = xasprintf("the final state could not be delivered: %s", res->err.msg);
            r->ops->changed(r->arg);
            r->ops->reported(r->arg);
            return;
        }
        r->state_dirty = true;
        next(r, false);
        return;
    }
    if (r->row->sent_outputs == NULL)
        r->row->sent_outputs = json_array();
    for (size_t i = 0; i < resp->sent_outputs.n; i++)
        if (!was_sent(r, resp->sent_outputs.v[i]))
            json_array_append_new(r->row->sent_outputs, json_string(resp->sent_outputs.v[i]));
    int server_result = resp->state ? resp->state->result : 0;
    rpc_clear(&rpc_update_task_response_type, resp);
    free(resp);
    r->last_state_ns = clock_now_ns();
    r->ops->changed(r->arg);
    if (!final && server_result != RPC_RESULT_UNSPECIFIED)
        r->ops->server_final(r->arg, server_result);
    if (!final)
        r->ops->server_answered(r->arg);
    if (final && outputs_done(r)) {
        r->row->final_sent = true;
        r->ops->reported(r->arg);
        return;
    }
    next(r, true);
}

static int
send_state(struct reporter *r)
{
    struct err e = {0};
    size_t n = json_array_size(r->row->steps), i;
    struct rpc_task_state st = {.id = r->tid, .started_at = ts(r->row->started_ns)};
    struct rpc_update_task_request req = {.state = &st};
    json_t *s;
    int rc;

    st.steps = xcalloc(n ? n : 1, sizeof *st.steps);
    json_array_foreach(r->row->steps, i, s) {
        struct rpc_step_state *ss = &st.steps[i];
        ss->id = (int64_t)i;
        ss->result = (int)json_integer_value(json_object_get(s, "result"));
        ss->started_at = ts(json_integer_value(json_object_get(s, "started_ns")));
        ss->stopped_at = ts(json_integer_value(json_object_get(s, "stopped_ns")));
        ss->log_index = json_integer_value(json_object_get(s, "log_index"));
        ss->log_length = json_integer_value(json_object_get(s, "log_length"));
    }
    st.n_steps = n;
    if (job_over(r)) {
        st.result = r->row->result;
        st.stopped_at = ts(r->row->stopped_ns ? r->row->stopped_ns : clock_now_ns());
        const char *k;
        json_t *v;
        req.outputs.v = xcalloc(json_object_size(r->row->outputs) + 1, sizeof *req.outputs.v);
        json_object_foreach(r->row->outputs, k, v) {
            if (!sendable(k, v)) {
                log_warn("task %lld: output '%.40s' is too large for Gitea; not sent",
                         (long long)r->tid, k);
                continue;
            }
            if (!secret_free(r, v)) {
                log_warn("task %lld: output '%.40s' may contain a secret; not sent",
                         (long long)r->tid, k);
                continue;
            }
            if (was_sent(r, k))
                continue;
            req.outputs.v[req.outputs.n].key = (char *)(uintptr_t)k;
            req.outputs.v[req.outputs.n].value = (char *)(uintptr_t)json_string_value(v);
            req.outputs.n++;
        }
    }
    r->state_dirty = false;
    r->state_final = job_over(r);
    rc = connect_call(r->conn, RPC_PATH_UPDATE_TASK, &rpc_update_task_request_type, &req,
                      &rpc_update_task_response_type, 0, on_state, r, &r->call, &e);
    free(st.steps);
    free(req.outputs.v);
    if (rc < 0) {
        r->state_dirty = true;
        log_err("task %lld: UpdateTask: %s", (long long)r->tid, e.msg);
    }
    return rc;
}

/* ---------------------------------------------------------------- the tick */

static void
tick(struct reporter *r)
{
    struct err e = {0};

    if (r->call || r->stop_done)
        return;
    if (r->conn == NULL) {
        log_err("task %lld: its runner identity is gone; nothing can be reported",
                (long long)r->tid);
        if (job_over(r)) {
            r->row->final_sent = true;
            r->ops->reported(r->arg);
        }
        return;
    }
    size_t npend;
    bool failing; /* said once, when it starts */
    pending(r, &npend, &failing);
    if (r->ops->flush(r->arg, &e) < 0 && !failing)
        log_err("task %lld: saving state: %s", (long long)r->tid, e.msg);
    int rc = 0;
    bool rows = r->row->log_acked < rows_end(r);
    /* While the job runs, rows never starve the state: a step that started or ended goes
     * before the rows (Gitea places a row under the step its index falls in, and before the
     * first step is running everything is "Set up job"), and after a log call a due state goes
     * first. Once the job is over, every row goes before the final state. */
    bool state_turn = !job_over(r) && state_due(r) &&
                      (r->state_dirty || r->log_turn_done || !rows);
    if (state_turn) {
        r->log_turn_done = false;
        rc = send_state(r);
    } else if (rows) {
        r->log_turn_done = true;
        rc = send_log(r);
    } else if (job_over(r) && !r->row->log_closed) {
        /* Every row went out before the job ended; the server archives only with a new row,
         * and leaving the log in its database is harmless (doc/gitea-protocol.md §3.7). */
        r->row->log_closed = true;
        r->ops->changed(r->arg);
        rc = send_state(r);
    } else if (job_over(r))
        rc = send_state(r);
    else {
        /* Nothing waits: wake for the next state, or the next rows' second. */
        int64_t left_ms = STATE_EVERY_MS - (clock_now_ns() - r->last_state_ns) / 1000000;
        arm(r, left_ms > 0 && left_ms < TICK_MS ? (uint64_t)left_ms : TICK_MS);
    }
    if (rc < 0)
        next(r, false);
}
