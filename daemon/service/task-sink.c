/* task-sink.c: what a task's job run tells the task (see task-int.h): the sink's callbacks
 * (steps started and finished, log lines, checkpoints, the job's closing and end), the step
 * records and outputs in the task's record, and the spool: log rows wait in memory until they
 * are written to the state database, from where the reporter sends them (reporter.h). While
 * the store fails (a full disk) pending rows are bounded, and the rows lost are counted and
 * said. The task's life (start, finish, recovery) is in task.c. */
#include "task-int.h"

#include "mask.h"
#include "metrics.h"
#include "plan.h"
#include "rpc.h"
#include "runner/clock.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- step records */

/* row.steps holds one object per workflow step:
 * {id, result (enum rpc_result), started_ns, stopped_ns, log_index, log_length}. */
static json_t *
step_rec(struct rtask *rt, int i)
{
    return i < 0 ? NULL : json_array_get(rt->row.steps, (size_t)i);
}

static json_int_t
rec_get(const json_t *s, const char *k)
{
    return json_integer_value(json_object_get(s, k));
}

static void
rec_set(json_t *s, const char *k, json_int_t v)
{
    json_object_set_new(s, k, json_integer(v));
}

static json_t *
steps_new(size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:I}", "id", (json_int_t)i));
    return a;
}

void
task_steps_fit(struct rtask *rt, size_t n)
{
    if (rt->row.steps == NULL || json_array_size(rt->row.steps) != n) {
        json_decref(rt->row.steps);
        rt->row.steps = steps_new(n);
    }
}

void
task_steps_end(struct rtask *rt, int result)
{
    size_t i;
    json_t *s;

    json_array_foreach(rt->row.steps, i, s) {
        if (rec_get(s, "result"))
            continue;
        rec_set(s, "result", result == RPC_RESULT_SKIPPED ? RPC_RESULT_SKIPPED
                                                          : RPC_RESULT_CANCELLED);
        if (rec_get(s, "started_ns") && !rec_get(s, "stopped_ns"))
            rec_set(s, "stopped_ns", clock_now_ns());
        if (!json_object_get(s, "log_index"))
            rec_set(s, "log_index", rt->rows);
    }
}

void
task_steps_lost(struct rtask *rt)
{
    size_t i;
    json_t *s;

    json_array_foreach(rt->row.steps, i, s) {
        if (rec_get(s, "started_ns") && !rec_get(s, "result")) {
            rec_set(s, "result", RPC_RESULT_FAILURE);
            rec_set(s, "stopped_ns", clock_now_ns());
        }
    }
}
static int
result_of(const char *conclusion)
{
    if (strcmp(conclusion, "success") == 0)
        return RPC_RESULT_SUCCESS;
    if (strcmp(conclusion, "skipped") == 0)
        return RPC_RESULT_SKIPPED;
    if (strcmp(conclusion, "cancelled") == 0)
        return RPC_RESULT_CANCELLED;
    return RPC_RESULT_FAILURE;
}

/* ---------------------------------------------------------------- spool */

/* While the state database takes no rows (its disk is full), a job's rows wait in memory up to
 * these bounds; the rows past them are lost, counted, and a row says how many
 * (task_note_lost()). */
#define PEND_MAX_ROWS 20000
#define PEND_MAX_BYTES (8u << 20)
#define FLUSH_CHUNK 1000
/* Rows of step output that start a flush at once, without waiting for the flush timer: at a
 * fast step's pace (100 MB/s is a million rows a second) the timer's 250 ms would hold
 * hundreds of thousands of rows in memory and write them in one long stall of the loop. */
#define FLUSH_ROWS 4096

/* One row of the task's log (already masked: the job run's lines are; task_rowf() masks).
 * keep: the runner's own row, kept even when the spool is full (there are few of them). */
static void
add_row(struct rtask *rt, int step, const char *text, size_t len, bool keep)
{
    json_t *s = step_rec(rt, step);

    if (rt->skip > 0) { /* the resumed job says again what the store already holds */
        rt->rows++;
        rt->skip--;
        return;
    }
    if (!keep && rt->spool_failed &&
        (rt->npend >= PEND_MAX_ROWS || rt->pend_bytes >= PEND_MAX_BYTES)) {
        if (rt->lost++ == 0)
            rt->lost_step = step;
        return; /* not a row: no index, not in the step's length */
    }
    rt->rows++;
    if (rt->npend == rt->cappend) {
        rt->cappend = rt->cappend ? rt->cappend * 2 : 64;
        rt->pend = xreallocarray(rt->pend, rt->cappend, sizeof *rt->pend);
    }
    rt->pend[rt->npend].time_ns = clock_now_ns();
    rt->pend[rt->npend].content = xstrndup(text, len);
    rt->pend_bytes += len;
    rt->npend++;
    if (s) {
        if (!json_object_get(s, "log_index"))
            rec_set(s, "log_index", rt->rows - 1);
        rec_set(s, "log_length", rec_get(s, "log_length") + 1);
    }
    rt->dirty = true;
}

/* One row of the runner's own (set up, errors, the result). Masked: it may quote what the
 * workflow made of a secret (a job name, a runs-on label, an error about either). */
void
task_rowf(struct rtask *rt, int step, const char *fmt, ...)
{
    char *line = NULL, *safe;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    safe = mask_str(rt->mask, line);
    add_row(rt, step, safe, strlen(safe), true);
    free(safe);
    free(line);
}

/* Rows were lost while the spool was full: one row says how many, where the loss began (in the
 * step that lost them), so that the log the user reads is not silently short. */
void
task_note_lost(struct rtask *rt)
{
    int64_t n = rt->lost;

    if (n == 0)
        return;
    rt->lost = 0;
    metric_add(rt->d->m.lost, (double)n);
    log_warn("task %lld: %lld log row(s) lost: the state database could not take them",
             (long long)rt->tid, (long long)n);
    /* A step's rows are one run of indexes: once a later step has started, the row goes to the
     * step open now (the last one with a log), never back to the one that lost the rows. */
    int step = rt->lost_step;
    size_t i;
    json_t *s;
    json_array_foreach(rt->row.steps, i, s)
        if ((int)i > step && json_object_get(s, "log_index"))
            step = (int)i;
    task_rowf(rt, step,
              "::warning::%lld log row(s) of this job were lost: the runner's state database "
              "could not store them (its disk is full)", (long long)n);
}

/* Writes up to n pending rows and the task record in one transaction; the rows written leave
 * the pending list. */
static int
flush_some(struct rtask *rt, size_t n, struct err *e)
{
    struct store *st = rt->d->st;
    int64_t before = rt->row.log_rows;
    int rc = store_begin(st, e);

    if (rc == 0 && n)
        rc = store_log_append(st, rt->tid, rt->row.log_rows, rt->pend, n, e);
    if (rc == 0) {
        rt->row.log_rows += (int64_t)n;
        rc = store_task_update(st, &rt->row, e); /* the payload was written once, at start */
    }
    if (rc == 0)
        rc = store_commit(st, e);
    if (rc < 0) {
        store_rollback(st);
        rt->row.log_rows = before; /* the rows stay pending for the next try */
        return rc;
    }
    metric_add(rt->d->m.spooled, (double)n);
    for (size_t i = 0; i < n; i++) {
        rt->pend_bytes -= strlen(rt->pend[i].content);
        free(rt->pend[i].content);
    }
    if (n > 0 && n < rt->npend) /* pend is NULL until the first row */
        memmove(rt->pend, rt->pend + n, (rt->npend - n) * sizeof *rt->pend);
    rt->npend -= n;
    return 0;
}

/* Writes pending rows and the task record: all in one transaction, or once the store has
 * failed (a full disk), FLUSH_CHUNK rows a transaction, so that whatever room there is (as
 * space returns) takes rows, and a backlog bigger than the room does not block them all. */
int
task_flush(struct rtask *rt, struct err *e)
{
    int rc = 0;

    if (rt->npend == 0 && !rt->dirty)
        return 0;
    bool reclaimed = false;
    do {
        size_t n = rt->spool_failed && rt->npend > FLUSH_CHUNK ? FLUSH_CHUNK : rt->npend;
        rc = flush_some(rt, n, e);
        if (rc == -ENOSPC && !reclaimed) {
            /* The WAL may hold the room: once a flush, fold it into the database and retry. */
            reclaimed = true;
            if (store_reclaim(rt->d->st) == 0)
                rc = flush_some(rt, n, e);
        }
    } while (rc == 0 && rt->npend > 0);
    if (rc < 0) {
        rt->spool_failed = true;
        return rc;
    }
    rt->dirty = false;
    rt->cp_unsaved = false;
    if (rt->spool_failed) {
        rt->spool_failed = false;
        log_info("task %lld: the state database takes its rows again", (long long)rt->tid);
        task_note_lost(rt); /* written by the next flush */
    }
    return 0;
}

/* Flushes; a failure is logged when the spool starts failing, not at every retry. */
void
task_flush_or_warn(struct rtask *rt)
{
    struct err e = {0};
    bool failing = rt->spool_failed;

    if (task_flush(rt, &e) < 0 && !failing)
        log_err("task %lld: saving state: %s (rows wait in memory, and are sent from there)",
                (long long)rt->tid, e.msg);
}

void
task_flush_all(struct daemon *d)
{
    struct err e = {0};

    for (struct rtask *rt = d->tasks; rt; rt = rt->next)
        task_flush_or_warn(rt);
    if (store_settle(d->st, &e) < 0)
        log_warn("%s", e.msg);
}

/* ---------------------------------------------------------------- the sink */

static void
sink_step_started(void *arg, struct jobrun *jr, int step, const char *name)
{
    struct rtask *rt = arg;
    json_t *s = step_rec(rt, step);

    (void)jr;
    (void)name;
    if (s == NULL)
        return;
    if (!rec_get(s, "started_ns")) /* a resumed job may announce a step again */
        rec_set(s, "started_ns", clock_now_ns());
    /* Its log starts here: the state that says it runs may reach Gitea before its first row,
     * and an index of 0 would put the whole log before it under the step. */
    if (!json_object_get(s, "log_index"))
        rec_set(s, "log_index", rt->rows);
    rt->dirty = true;
    reporter_poke(&rt->rep);
}

/* add_row() for a line of the job's, then the flush of a full batch (FLUSH_ROWS). */
static void
spool_row(struct rtask *rt, int step, const char *text, size_t len, bool keep)
{
    add_row(rt, step, text, len, keep);
    if (rt->npend >= FLUSH_ROWS && !rt->spool_failed)
        task_flush_or_warn(rt);
}

static void
sink_log(void *arg, struct jobrun *jr, int step, enum jobrun_kind kind, const char *text,
         size_t len)
{
    struct rtask *rt = arg;
    const char *pre = NULL;
    char *line;
    /* The runner's own rows (setup, teardown, its messages) are few: kept when the spool is
     * full; only what the steps print can be lost. */
    bool keep = step < 0 || kind == JOBRUN_INFO;

    (void)jr;
    switch (kind) {
    case JOBRUN_ERROR:
        pre = "::error::";
        break;
    case JOBRUN_WARNING:
        pre = "::warning::";
        break;
    case JOBRUN_NOTICE:
        pre = "::notice::";
        break;
    case JOBRUN_DEBUG: /* as act_runner: the message alone, and only when debugging */
        if (!rt->debug)
            return;
        spool_row(rt, step, text, len, keep);
        return;
    case JOBRUN_GROUP:
        pre = "::group::";
        break;
    case JOBRUN_ENDGROUP:
        spool_row(rt, step, "::endgroup::", 12, keep);
        return;
    default:
        spool_row(rt, step, text, len, keep);
        return;
    }
    line = xasprintf("%s%.*s", pre, (int)len, text);
    spool_row(rt, step, line, strlen(line), keep);
    free(line);
}

static void
sink_step_finished(void *arg, struct jobrun *jr, int step, const char *outcome,
                   const char *conclusion)
{
    struct rtask *rt = arg;
    json_t *s = step_rec(rt, step);

    (void)jr;
    (void)outcome;
    if (s == NULL)
        return;
    rec_set(s, "result", result_of(conclusion));
    if (!rec_get(s, "stopped_ns"))
        rec_set(s, "stopped_ns", clock_now_ns());
    if (rec_get(s, "started_ns") && rec_get(s, "stopped_ns") >= rec_get(s, "started_ns"))
        metric_observe(rt->d->m.step_seconds,
                       (double)(rec_get(s, "stopped_ns") - rec_get(s, "started_ns")) / 1e9,
                       task_metric_label(rt->label));
    if (!json_object_get(s, "log_index"))
        rec_set(s, "log_index", rt->rows);
    rt->dirty = true;
    task_flush_or_warn(rt);
    reporter_poke(&rt->rep);
}

static int
sink_checkpoint(void *arg, struct jobrun *jr, json_t *cp)
{
    struct rtask *rt = arg;
    struct err e = {0};
    json_t *x;

    (void)jr;
    json_object_set_new(cp, "rows", json_integer(rt->rows));
    json_decref(rt->row.checkpoint);
    rt->row.checkpoint = json_deep_copy(cp);
    json_object_del(rt->row.checkpoint, "exec");
    if ((x = json_object_get(cp, "exec")) && json_is_object(x)) {
        json_decref(rt->row.exec);
        rt->row.exec = json_deep_copy(x);
    }
    rt->dirty = true;
    if (task_flush(rt, &e) < 0) {
        /* The rows may be what does not fit (a full disk): the record alone is small, and
         * with it the job can still resume; the rows stay pending. */
        struct err e2 = {0};
        int64_t acked = rt->row.log_acked; /* may count rows sent from memory */
        if (acked > rt->row.log_rows)
            rt->row.log_acked = rt->row.log_rows;
        int rc2 = store_task_update(rt->d->st, &rt->row, &e2);
        rt->row.log_acked = acked;
        if (rc2 == 0)
            return 0;
        if (rc2 == -ENOSPC) {
            /* Not even that fits. Failing the step would make the job's result a lie about its
             * steps: it goes on, and the checkpoint is written with the rows once there is
             * room; until then a runnerd that stops cannot resume the job from here. */
            if (!rt->cp_unsaved)
                log_warn("task %lld: checkpoint: %s: the job goes on, but cannot be resumed "
                         "from this step if runnerd stops before the disk has room",
                         (long long)rt->tid, e2.msg);
            rt->cp_unsaved = true;
            return 0;
        }
        log_err("task %lld: checkpoint: %s", (long long)rt->tid, e.msg);
        return e.code ? e.code : -EIO;
    }
    return 0;
}

/* The RPC result of a job run's result. */
static int
job_result(enum plan_result result)
{
    return result == PLAN_SUCCESS     ? RPC_RESULT_SUCCESS
           : result == PLAN_CANCELLED ? RPC_RESULT_CANCELLED
           : result == PLAN_SKIPPED   ? RPC_RESULT_SKIPPED
                                      : RPC_RESULT_FAILURE;
}

/* Copies the job's outputs (once the job run computed them) into the task record. */
static void
take_outputs(struct rtask *rt)
{
    json_t *outs = NULL;

    if (rt->plan && rt->plan->n_jobs && rt->plan->jobs[0].runs)
        outs = rt->plan->jobs[0].runs[0].outputs;
    if (json_is_object(outs) && json_object_size(outs)) {
        json_decref(rt->row.outputs);
        rt->row.outputs = json_deep_copy(outs);
    }
}

/* Every step is over and the container is about to be torn down: the result and outputs go
 * to the store now, with the job's last rows, so that a runnerd killed during the teardown
 * finishes the report with them after a restart (task_recover) instead of failing a job whose
 * steps all ran. The state stays "running" (the checkpoint and exec still name what to tear
 * down); a nonzero result on a running task means "teardown began". */
static void
sink_closing(void *arg, struct jobrun *jr, enum plan_result result)
{
    struct rtask *rt = arg;

    (void)jr;
    take_outputs(rt);
    rt->row.result = job_result(result);
    rt->dirty = true;
    task_flush_or_warn(rt);
}

static void
sink_job_finished(void *arg, struct jobrun *jr, enum plan_result result)
{
    struct rtask *rt = arg;

    take_outputs(rt);
    jobrun_free(jr);
    rt->jr = NULL;
    task_finish(rt, job_result(result), NULL);
}

const struct jobrun_sink task_sink = {
    .step_started = sink_step_started,
    .log = sink_log,
    .step_finished = sink_step_finished,
    .checkpoint = sink_checkpoint,
    .closing = sink_closing,
    .job_finished = sink_job_finished,
};
