/* task.c: one Gitea task in runnerd (see task.h). The task's workflow payload is planned and
 * run by the same engine as `runnerctl exec`; what the job says goes through this file's sink
 * into the state database first (log rows, step states, checkpoints, outputs), and the
 * reporter sends it from there. After a restart a task whose job container still runs is
 * resumed from its last checkpoint; one whose container is gone is finalized as failed. */
#include "task.h"

#include "docker.h"
#include "dockerexec.h"
#include "executor.h"
#include "gpu.h"
#include "jobrun.h"
#include "launch.h"
#include "mask.h"
#include "metrics.h"
#include "plan.h"
#include "rpc.h"
#include "runner/clock.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "wf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* The label value for metrics ("none" when empty). */
static const char *
daemon_metric_label(const char *label)
{
    return label && *label ? label : "none";
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
 * these bounds; the rows past them are lost, counted, and a row says how many (note_lost()). */
#define PEND_MAX_ROWS 20000
#define PEND_MAX_BYTES (8u << 20)
#define FLUSH_CHUNK 1000

/* One row of the task's log (already masked: the job run's lines are; add_rowf() masks).
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
static void __attribute__((format(printf, 3, 4)))
add_rowf(struct rtask *rt, int step, const char *fmt, ...)
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
static void
note_lost(struct rtask *rt)
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
    add_rowf(rt, step,
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
static int
flush(struct rtask *rt, struct err *e)
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
        note_lost(rt); /* written by the next flush */
    }
    return 0;
}

/* Flushes; a failure is logged when the spool starts failing, not at every retry. */
static void
flush_or_warn(struct rtask *rt)
{
    struct err e = {0};
    bool failing = rt->spool_failed;

    if (flush(rt, &e) < 0 && !failing)
        log_err("task %lld: saving state: %s (rows wait in memory, and are sent from there)",
                (long long)rt->tid, e.msg);
}

void
task_flush_all(struct daemon *d)
{
    struct err e = {0};

    for (struct rtask *rt = d->tasks; rt; rt = rt->next)
        flush_or_warn(rt);
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
        add_row(rt, step, text, len, keep);
        return;
    case JOBRUN_GROUP:
        pre = "::group::";
        break;
    case JOBRUN_ENDGROUP:
        add_row(rt, step, "::endgroup::", 12, keep);
        return;
    default:
        add_row(rt, step, text, len, keep);
        return;
    }
    line = xasprintf("%s%.*s", pre, (int)len, text);
    add_row(rt, step, line, strlen(line), keep);
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
                       daemon_metric_label(rt->label));
    if (!json_object_get(s, "log_index"))
        rec_set(s, "log_index", rt->rows);
    rt->dirty = true;
    flush_or_warn(rt);
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
    if (flush(rt, &e) < 0) {
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

static void finish(struct rtask *rt, int result, const char *why);

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
    flush_or_warn(rt);
}

static void
sink_job_finished(void *arg, struct jobrun *jr, enum plan_result result)
{
    struct rtask *rt = arg;

    take_outputs(rt);
    jobrun_free(jr);
    rt->jr = NULL;
    finish(rt, job_result(result), NULL);
}

static const struct jobrun_sink sink = {
    .step_started = sink_step_started,
    .log = sink_log,
    .step_finished = sink_step_finished,
    .checkpoint = sink_checkpoint,
    .closing = sink_closing,
    .job_finished = sink_job_finished,
};

/* ---------------------------------------------------------------- ending */

static void
unlink_task(struct rtask *rt)
{
    struct rtask **pp = &rt->d->tasks;

    while (*pp && *pp != rt)
        pp = &(*pp)->next;
    if (*pp)
        *pp = rt->next;
}

static void
free_task(struct rtask *rt)
{
    struct daemon *d = rt->d;

    unlink_task(rt);
    for (size_t i = 0; i < rt->npend; i++)
        free(rt->pend[i].content);
    free(rt->pend);
    store_task_clear(&rt->row);
    if (rt->t) {
        rpc_clear(&rpc_task_type, rt->t);
        free(rt->t);
    }
    plan_free(rt->plan);
    wf_free(rt->wf);
    mask_free(rt->mask);
    free(rt->label);
    free(rt);
    d->hooks.task_gone(d);
}

static void
after_reporter(void *arg)
{
    free_task(arg);
}

/* The outputs a done task keeps (for `runnerctl tasks`) with its secrets masked: Gitea has
 * them already, and the stored copy outlives the task's secrets. */
static void
mask_outputs(struct rtask *rt)
{
    struct buf b = {0};
    const char *k;
    json_t *v;

    json_object_foreach(rt->row.outputs, k, v) {
        if (!json_is_string(v))
            continue;
        buf_reset(&b);
        mask_apply(rt->mask, json_string_value(v), json_string_length(v), &b);
        json_string_setn(v, b.len ? buf_str(&b) : "", b.len);
    }
    buf_free(&b);
}

/* A task that can no longer run or resume: its secrets and tokens leave the store, and the WAL
 * that still holds them is truncated (now, or by the next flush tick if a reader is in the
 * way). */
static void
scrub(struct daemon *d, int64_t tid)
{
    struct err e = {0};

    if (store_task_scrub(d->st, tid, &e) < 0 || store_settle(d->st, &e) < 0)
        log_err("task %lld: removing its secrets from the state database: %s", (long long)tid,
                e.msg);
}

/* The reporter delivered everything (or gave up): the task is done and freed. */
static void
task_reported(void *arg)
{
    struct rtask *rt = arg;

    if (rt->freeing)
        return;
    rt->freeing = true;
    /* The slot is free once the server has heard the end too (as act_runner's workers): the
     * server never sees more than `capacity` tasks of this runner running. */
    if (rt->holds_slot && rt->id && rt->id->running > 0)
        rt->id->running--;
    rt->holds_slot = false;
    if (rt->id)
        rt->d->hooks.slot_freed(rt->id);
    free(rt->row.state);
    rt->row.state = xstrdup("done");
    rt->dirty = true;
    mask_outputs(rt);
    flush_or_warn(rt);
    scrub(rt->d, rt->tid);
    log_info("task %lld: done (%s)", (long long)rt->tid,
             rpc_result_name(rt->row.result) ? rpc_result_name(rt->row.result) : "?");
    reporter_stop(&rt->rep, after_reporter);
}

/* The job's container is gone: its GPUs go back to the pool (and GPU runners may poll). */
static void
release_gpus(struct rtask *rt)
{
    struct err e = {0};
    int n = gpu_pool_release(rt->d->gpus, rt->tid, &e);

    if (n < 0) {
        log_err("task %lld: releasing its GPUs: %s", (long long)rt->tid, e.msg);
    } else if (n > 0) {
        log_info("task %lld: released %d GPU(s)", (long long)rt->tid, n);
        rt->d->hooks.gpus_freed(rt->d);
    }
}

/* The job is over (or never ran): record the result; the reporter delivers it. */
static void
finish(struct rtask *rt, int result, const char *why)
{
    size_t i;
    json_t *s;
    char *safe = NULL;

    if (rt->job_over)
        return;
    rt->job_over = true;
    if (why) /* the reason reaches the log, the server and runnerd's own log: masked */
        why = safe = mask_str(rt->mask, why);
    /* A resumed job that ends before saying again all it had said (its resume failed, or it
     * took another way): the stored rows stand, and these last ones are new. */
    rt->skip = 0;
    note_lost(rt);
    if (why) {
        add_rowf(rt, -1, "::error::%s", why);
        free(rt->row.reason);
        rt->row.reason = xstrdup(why);
    }
    add_rowf(rt, -1, "%s", result == RPC_RESULT_SUCCESS     ? "🏁  Job succeeded"
                           : result == RPC_RESULT_CANCELLED ? "🏁  Job was cancelled"
                           : result == RPC_RESULT_SKIPPED   ? "🏁  Job was skipped"
                                                            : "🏁  Job failed");
    /* Steps that never ended: cancelled (skipped when the job was). */
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
    release_gpus(rt);
    if (rt->counted_running) {
        metric_add(rt->d->m.running, -1, daemon_metric_label(rt->label));
        rt->counted_running = false;
    }
    metric_add(rt->d->m.jobs, 1, daemon_metric_label(rt->label),
               result == RPC_RESULT_SUCCESS     ? "success"
               : result == RPC_RESULT_CANCELLED ? "cancelled"
               : result == RPC_RESULT_SKIPPED   ? "skipped"
                                                : "failure");
    rt->row.result = result;
    rt->row.stopped_ns = clock_now_ns();
    free(rt->row.state);
    rt->row.state = xstrdup("finishing");
    json_decref(rt->row.checkpoint);
    rt->row.checkpoint = NULL;
    json_decref(rt->row.exec);
    rt->row.exec = NULL;
    rt->dirty = true;
    flush_or_warn(rt);
    log_info("task %lld: job finished: %s%s%s", (long long)rt->tid,
             rpc_result_name(result) ? rpc_result_name(result) : "?", why ? ": " : "",
             why ? why : "");
    free(safe);
    reporter_poke(&rt->rep);
}

/* ---------------------------------------------------------------- setting up the job */

static json_t *
map_json(const struct rpc_map *m)
{
    json_t *o = json_object();

    for (size_t i = 0; i < m->n; i++) {
        json_t *v = json_string(m->v[i].value ? m->v[i].value : "");
        json_object_set_new(o, m->v[i].key, v ? v : json_string(""));
    }
    return o;
}

static const char *
ctx_str(const struct rtask *rt, const char *k)
{
    const char *v = rt->t && rt->t->context ? json_string_value(json_object_get(rt->t->context, k))
                                            : NULL;
    return v ? v : "";
}

static const char *
secret(const struct rtask *rt, const char *k)
{
    for (size_t i = 0; rt->t && i < rt->t->secrets.n; i++)
        if (strcmp(rt->t->secrets.v[i].key, k) == 0)
            return rt->t->secrets.v[i].value;
    return NULL;
}

/* The environment runnerd gives every job (act_runner's, spec §4.6), then runner.envs. */
static json_t *
job_env(struct rtask *rt)
{
    struct daemon *d = rt->d;
    json_t *env = json_object();
    const char *inst = rt->id ? rt->id->si.instance : "";
    size_t il = strlen(inst);
    const char *rtok = ctx_str(rt, "gitea_runtime_token");

    while (il && inst[il - 1] == '/')
        il--;
    char *rurl = xasprintf("%.*s/api/actions_pipeline/", (int)il, inst);
    char *res = xasprintf("%.*s", (int)il, inst);
    json_object_set_new(env, "ACTIONS_RUNTIME_URL", json_string(rurl));
    json_object_set_new(env, "ACTIONS_RESULTS_URL", json_string(res));
    json_object_set_new(env, "ACTIONS_RUNTIME_TOKEN", json_string(*rtok ? rtok : ctx_str(rt, "token")));
    json_object_set_new(env, "GITEA_ACTIONS", json_string("true"));
    json_object_set_new(env, "GITEA_ACTIONS_RUNNER_VERSION", json_string(RUNNERD_VERSION));
    free(rurl);
    free(res);
    if (json_is_object(d->cfg.runner.envs))
        json_object_update(env, d->cfg.runner.envs);
    return env;
}

/* The first of the job's runs-on labels that is one of the identity's, or NULL. */
static const struct config_label *
pick_label(struct rtask *rt, json_t *runs_on)
{
    return launch_pick_label(rt->id ? rt->id->labels : NULL, rt->id ? rt->id->n_labels : 0,
                             runs_on);
}

/* Gitea sends its ROOT_URL with the trailing slash (`http://host:3000/`); GitHub, act and
 * every action joining paths to github.server_url expect none. */
static void
strip_url_slashes(json_t *github)
{
    static const char *const keys[] = {"server_url", "api_url", "graphql_url"};

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = json_string_value(json_object_get(github, keys[i]));
        size_t l = v ? strlen(v) : 0;
        if (l == 0 || v[l - 1] != '/')
            continue;
        while (l > 0 && v[l - 1] == '/')
            l--;
        json_object_set_new(github, keys[i], json_stringn(v, l));
    }
}

/* Plans the task's one job. Returns 0, or <0 with why (a new string) for the log. */
static int
plan_task(struct rtask *rt, bool *run, char **why)
{
    struct err e = {0};
    struct wf_diag diag = {0};
    const char *file = *ctx_str(rt, "workflow") ? ctx_str(rt, "workflow") : "workflow";
    int rc;

    *run = false;
    if (!rt->t->workflow_payload.set || rt->t->workflow_payload.len == 0) {
        *why = xstrdup("the task has no workflow payload");
        return -EINVAL;
    }
    rc = wf_parse(file, (const char *)rt->t->workflow_payload.p, rt->t->workflow_payload.len,
                  &rt->wf, &diag, &e);
    if (rc < 0) {
        for (size_t i = 0; i < diag.n; i++)
            add_rowf(rt, -1, "::error::%s", diag.msgs[i]);
        wf_diag_free(&diag);
        *why = xasprintf("the task's workflow is not valid: %s", e.msg);
        return rc;
    }
    wf_diag_free(&diag);
    if (rt->wf->n_jobs != 1) {
        *why = xasprintf("the task's workflow has %zu jobs; a task runs exactly one", rt->wf->n_jobs);
        return -EINVAL;
    }
    if (rt->row.steps == NULL || json_array_size(rt->row.steps) != rt->wf->jobs[0].n_steps) {
        json_decref(rt->row.steps);
        rt->row.steps = steps_new(rt->wf->jobs[0].n_steps);
    }
    json_t *github = rt->t->context ? json_deep_copy(rt->t->context) : json_object();
    strip_url_slashes(github);
    json_t *vars = map_json(&rt->t->vars), *secrets = map_json(&rt->t->secrets);
    json_t *needs = json_object();
    for (size_t i = 0; i < rt->t->n_needs; i++) {
        const struct rpc_need *n = &rt->t->needs[i];
        const char *rn = rpc_result_name(n->value.result);
        char res[32] = "";
        if (rn && strncmp(rn, "RESULT_", 7) == 0) {
            snprintf(res, sizeof res, "%s", rn + 7);
            for (char *p = res; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        }
        json_object_set_new(needs, n->key, json_pack("{s:s, s:o}", "result", res,
                                                     "outputs", map_json(&n->value.outputs)));
    }
    const char *ev = json_string_value(json_object_get(github, "event_name"));
    struct plan_opts po = {.event_name = ev && *ev ? ev : "push", .github = github, .vars = vars,
                           .secrets = secrets, .ext_needs = needs};
    rc = plan_new(rt->wf, &po, &rt->plan, &e);
    if (rc == 0)
        rc = plan_job_start(rt->plan, 0, run, &e);
    json_decref(github);
    json_decref(vars);
    json_decref(secrets);
    json_decref(needs);
    if (rc < 0) {
        *why = xstrdup(e.msg);
        return rc;
    }
    return 0;
}

/* The label chosen: the task records it (runnerd's metrics name it) and says so. */
static void
label_chosen(void *arg, const struct config_label *lb)
{
    struct rtask *rt = arg;

    rt->label = xstrdup(lb->name);
    add_rowf(rt, -1, "workflow prepared");
}

/* The GPUs the label's settings p ask for, granted from runnerd's pool (persisted before
 * anything is created). */
static int
grant_gpus(void *arg, const struct config_profile *p, char ***gpus, char **why)
{
    struct rtask *rt = arg;
    struct daemon *d = rt->d;
    struct err e = {0};
    char *list = NULL;

    if (gpu_pool_take(d->gpus, rt->tid, p->gpus, gpus, &e) < 0) {
        *why = xasprintf("label %s: no GPU for this job: %s", p->name, e.msg);
        return -1;
    }
    for (size_t i = 0; (*gpus)[i]; i++)
        metric_add(d->m.gpu_grants, 1, (*gpus)[i]);
    for (size_t i = 0; (*gpus)[i]; i++) {
        char *n = xasprintf("%s%s%s", list ? list : "", list ? ", " : "", (*gpus)[i]);
        free(list);
        list = n;
    }
    add_rowf(rt, -1, "GPU(s) for this job: %s", list ? list : "");
    log_info("task %lld: GPU(s) %s", (long long)rt->tid, list ? list : "");
    free(list);
    return 0;
}

/* Starts the job (x NULL: on the executor of the label the launcher picks) or resumes it on
 * executor x (taken) from checkpoint cp. */
static int
run_job(struct rtask *rt, struct executor *x, const json_t *cp, char **why)
{
    struct daemon *d = rt->d;
    json_t *env = job_env(rt);
    char name[64];
    int rc;

    snprintf(name, sizeof name, "task-%lld", (long long)rt->tid);
    char *cache = config_cache_dir(&d->cfg, true);
    struct launch_opts lo = {
        .mode = LAUNCH_BY_LABEL, .loop = d->loop,
        .labels = rt->id ? rt->id->labels : NULL, .n_labels = rt->id ? rt->id->n_labels : 0,
        .cfg = &d->cfg, .host_memory = d->host_memory,
        .docker = d->docker_ready ? d->docker : NULL, .agent_path = d->agent_path,
        .runner_name = rt->id ? rt->id->si.name : "runnerd",
        .job = {
            .plan = rt->plan, .job = 0, .run = 0, .xjob = {.name = name},
            .mask = rt->mask, .config_env = env, .label = rt->label,
            .container_options = d->cfg.container.options, .gitea = true, .durable = true,
            .sink = &sink, .sink_arg = rt, .cache_dir = cache,
            .git_ca_file = d->cfg.runnerd.git_ca_file, .git_insecure = d->cfg.runner.insecure,
            .actions_url = d->cfg.runnerd.actions_url,
            .github_mirror = d->cfg.runner.github_mirror, .node_image = d->cfg.runnerd.node_image,
        },
        .chosen = label_chosen, .grant_gpus = grant_gpus, .arg = rt,
    };
    rc = x ? launch_resume(&lo, x, cp, &rt->jr, why) : launch_start(&lo, &rt->jr, why);
    if (rc == 0 && !rt->counted_running) {
        metric_add(d->m.running, 1, daemon_metric_label(rt->label));
        rt->counted_running = true;
    }
    json_decref(env);
    free(cache);
    return rc;
}

/* The task's mask: its secrets, its token and its runtime token. */
static struct mask *
task_mask(struct rtask *rt)
{
    json_t *secrets = map_json(&rt->t->secrets);
    const char *tokens[] = {ctx_str(rt, "token"), ctx_str(rt, "gitea_runtime_token"), NULL};
    struct mask *m = mask_for_job(secrets, tokens);

    json_decref(secrets);
    return m;
}

static struct rtask *
task_new(struct daemon *d, struct ident *id, struct rpc_task *t)
{
    struct rtask *rt = xcalloc(1, sizeof *rt);

    rt->d = d;
    rt->id = id;
    rt->t = t;
    rt->tid = t->id;
    rt->mask = task_mask(rt);
    const char *dbg = secret(rt, "ACTIONS_STEP_DEBUG");
    rt->debug = dbg && strcmp(dbg, "true") == 0;
    rt->next = d->tasks;
    d->tasks = rt;
    return rt;
}

/* Sets the job up and starts it; on any failure the task finishes as failed with the reason. */
static void
begin(struct rtask *rt)
{
    char *why = NULL;
    bool run = false;

    add_rowf(rt, -1, "%s(version:%s) received task %lld of job %s, be triggered by event: %s",
             rt->id ? rt->id->si.name : "runnerd", RUNNERD_VERSION, (long long)rt->tid,
             ctx_str(rt, "job"), ctx_str(rt, "event_name"));
    if (plan_task(rt, &run, &why) < 0)
        goto fail;
    if (!run) {
        add_rowf(rt, -1, "the job's if: condition is false: skipping it");
        finish(rt, RPC_RESULT_SKIPPED, NULL);
        return;
    }
    if (run_job(rt, NULL, NULL, &why) < 0)
        goto fail;
    flush_or_warn(rt);
    return;
fail:
    finish(rt, RPC_RESULT_FAILURE, why ? why : "the job could not be started");
    free(why);
}

/* ---------------------------------------------------------------- reporting */

static int
report_flush(void *arg, struct err *e)
{
    return flush(arg, e);
}

static const struct store_row *
report_pending(void *arg, size_t *n, bool *store_fails)
{
    struct rtask *rt = arg;

    *n = rt->npend;
    *store_fails = rt->spool_failed;
    return rt->pend;
}

static bool
report_job_over(void *arg)
{
    return ((struct rtask *)arg)->job_over;
}

static void
report_changed(void *arg)
{
    ((struct rtask *)arg)->dirty = true;
}

static void task_server_final(void *arg, int result);
static void task_server_answered(void *arg);

static const struct reporter_ops report_ops = {
    .flush = report_flush,
    .pending = report_pending,
    .job_over = report_job_over,
    .changed = report_changed,
    .server_final = task_server_final,
    .server_answered = task_server_answered,
    .reported = task_reported,
};

/* Starts the task's reporter on its record (timer, first UpdateTask soon). */
static void
start_reporting(struct rtask *rt)
{
    rt->rep = (struct reporter){
        .loop = rt->d->loop, .st = rt->d->st, .conn = rt->id ? rt->id->conn : NULL,
        .sent = rt->d->m.sent, .mask = rt->mask, .tid = rt->tid, .row = &rt->row,
        .ops = &report_ops, .arg = rt,
    };
    reporter_start(&rt->rep);
}

void
task_start(struct ident *id, struct rpc_task *t)
{
    struct daemon *d = id->d;
    struct err e = {0};

    for (struct rtask *o = d->tasks; o; o = o->next)
        if (o->tid == t->id) {
            log_warn("task %lld is already running here; ignoring it", (long long)t->id);
            rpc_clear(&rpc_task_type, t);
            free(t);
            return;
        }
    struct rtask *rt = task_new(d, id, t);
    rt->row.id = t->id;
    rt->row.ident = xstrdup(id->si.cls);
    rt->row.state = xstrdup("running");
    rt->row.task = rpc_encode(&rpc_task_type, t);
    rt->row.job = xstrdup(*ctx_str(rt, "job") ? ctx_str(rt, "job") : "?");
    rt->row.repo = xstrdup(ctx_str(rt, "repository"));
    rt->row.created_ns = rt->row.started_ns = clock_now_ns();
    rt->row.steps = json_array();
    id->running++;
    rt->holds_slot = true;
    log_info("task %lld: job %s of %s (run %s)", (long long)rt->tid, rt->row.job, rt->row.repo,
             ctx_str(rt, "run_id"));
    /* The task exists durably before anything runs. */
    if (store_task_put(d->st, &rt->row, &e) < 0)
        log_err("task %lld: saving it: %s", (long long)rt->tid, e.msg);
    start_reporting(rt);
    begin(rt);
}

/* ---------------------------------------------------------------- recovery */

static void
on_job_swept(const struct docker_res *res, void *arg)
{
    (void)arg;
    if (res->rc < 0)
        log_warn("removing a lost job's leftovers: %s", res->err.msg);
}

/* Removes whatever is left of the job's containers, networks and volumes (by its job label). */
static void
sweep_job(struct rtask *rt)
{
    const char *name = json_string_value(json_object_get(rt->row.exec, "name"));
    struct err e = {0};

    if (name && rt->d->docker_ready) {
        char *label = xasprintf(DOCKER_LABEL_JOB "=%s", name);
        if (docker_sweep(rt->d->docker, label, on_job_swept, NULL, &e) < 0)
            log_warn("removing a lost job's leftovers: %s", e.msg);
        free(label);
    }
}

static void
gone(struct rtask *rt, const char *why)
{

    char *m = mask_str(rt->mask, why);
    log_warn("task %lld: %s", (long long)rt->tid, m);
    free(m);
    sweep_job(rt);
    /* A step that was running when the job was lost failed. */
    size_t i;
    json_t *s;
    json_array_foreach(rt->row.steps, i, s) {
        if (rec_get(s, "started_ns") && !rec_get(s, "result")) {
            rec_set(s, "result", RPC_RESULT_FAILURE);
            rec_set(s, "stopped_ns", clock_now_ns());
        }
    }
    finish(rt, RPC_RESULT_FAILURE, why);
}

/* runnerd stopped after the job's result was recorded, while its container was being torn
 * down: what is left of it is removed, and the task finishes with the recorded result. */
static void
torn_down(struct rtask *rt)
{
    log_info("task %lld: runnerd stopped during the job's teardown; finishing it as %s",
             (long long)rt->tid,
             rpc_result_name(rt->row.result) ? rpc_result_name(rt->row.result) : "?");
    sweep_job(rt);
    finish(rt, rt->row.result, NULL);
}

static void
resume(struct rtask *rt)
{
    struct daemon *d = rt->d;
    struct err e = {0};
    struct executor *x = NULL;
    char *why = NULL;
    bool run = false;
    json_t *cp = rt->row.checkpoint;

    if (plan_task(rt, &run, &why) < 0 || !run) {
        gone(rt, why ? why : "the job could not be planned again after a restart");
        free(why);
        return;
    }
    const struct config_label *lb = pick_label(rt, rt->plan->jobs[0].runs[0].runs_on);
    rt->label = xstrdup(lb ? lb->name : "");
    if (executor_docker_adopt(d->loop, d->docker, rt->id ? rt->id->si.name : "runnerd", rt->row.exec,
                              &x, &e) < 0) {
        gone(rt, e.msg);
        return;
    }
    rt->rows = json_integer_value(json_object_get(cp, "rows"));
    int64_t skip = rt->row.log_rows - rt->rows;
    if (skip < 0)
        skip = 0;
    if (rt->rows > rt->row.log_rows)
        rt->rows = rt->row.log_rows;
    log_info("task %lld: resuming at step %lld (%lld log rows to skip)", (long long)rt->tid,
             (long long)json_integer_value(json_object_get(cp, "cur")), (long long)skip);
    if (run_job(rt, x, cp, &why) < 0) {
        gone(rt, why ? why : "resuming failed");
        free(why);
        return;
    }
    /* What the replay says again (it starts once the agent is reached, never inside
     * run_job()) is already stored; what run_job() said (a checkpoint it could not take up)
     * is new. */
    if (!rt->job_over)
        rt->skip = skip;
}

static void
on_inspected(const struct docker_res *res, void *arg)
{
    struct rtask *rt = arg;
    json_t *state = json_object_get(res->json, "State");

    if (res->rc == ERR_NOTFOUND) {
        gone(rt, "runnerd restarted and the job's container is gone: the job cannot go on");
    } else if (res->rc < 0) {
        char *why = xasprintf("runnerd restarted and could not inspect the job's container: %s",
                              res->err.msg);
        gone(rt, why);
        free(why);
    } else if (!json_is_true(json_object_get(state, "Running"))) {
        gone(rt, "runnerd restarted and the job's container has stopped: the job cannot go on");
    } else {
        resume(rt);
    }
}

void
task_recover(struct daemon *d, struct ident *id, struct store_task *row)
{
    struct rpc_task *t = xcalloc(1, sizeof *t);
    struct err e = {0};

    if (row->task == NULL || rpc_decode(&rpc_task_type, row->task, t, &e) < 0) {
        log_err("task %lld: its stored record cannot be read (%s); marking it done",
                (long long)row->id, e.msg);
        free(t);
        free(row->state);
        row->state = xstrdup("done");
        if (store_task_put(d->st, row, &e) < 0)
            log_err("task %lld: %s", (long long)row->id, e.msg);
        scrub(d, row->id);
        return;
    }
    struct rtask *rt = task_new(d, id, t);
    rt->row = *row; /* taken */
    memset(row, 0, sizeof *row);
    rt->rows = rt->row.log_rows;
    if (strcmp(rt->row.state, "finishing") == 0) {
        rt->job_over = true;
        log_info("task %lld: delivering its final reports", (long long)rt->tid);
        start_reporting(rt);
        return;
    }
    if (id) {
        id->running++;
        rt->holds_slot = true;
    }
    start_reporting(rt);
    if (rt->row.result != 0) {
        torn_down(rt);
        return;
    }
    if (rt->row.checkpoint == NULL || rt->row.exec == NULL) {
        gone(rt, rt->row.checkpoint == NULL
                     ? "runnerd stopped before the job's first step started: the job cannot go on"
                     : "the job ran where runnerd cannot follow it after a restart (host label)");
        return;
    }
    const char *ctr = json_string_value(json_object_get(rt->row.exec, "container"));
    if (!d->docker_ready || ctr == NULL ||
        docker_container_inspect(d->docker, ctr, on_inspected, rt, &e) < 0) {
        gone(rt, d->docker_ready ? e.msg : "runnerd restarted and Docker is not reachable: the job cannot go on");
        return;
    }
}

/* ---------------------------------------------------------------- the daemon's view */

size_t
task_count(const struct daemon *d)
{
    size_t n = 0;

    for (const struct rtask *rt = d->tasks; rt; rt = rt->next)
        n++;
    return n;
}

size_t
task_running(const struct daemon *d)
{
    size_t n = 0;

    for (const struct rtask *rt = d->tasks; rt; rt = rt->next)
        n += !rt->job_over;
    return n;
}

void
task_cancel_all(struct daemon *d, bool forced)
{
    for (struct rtask *rt = d->tasks; rt; rt = rt->next) {
        if (rt->jr == NULL)
            continue;
        jobrun_cancel(rt->jr);
        if (forced)
            jobrun_cancel(rt->jr);
    }
}

/* The server answered a state update (a resumed job may start its next step now). */
static void
task_server_answered(void *arg)
{
    struct rtask *rt = arg;

    /* A resumed job waits for this before its next step: a cancel the server took while no
     * runnerd ran the job has reached jobrun_cancel() (task_server_final) by now. */
    if (rt->jr)
        jobrun_release(rt->jr);
}

/* The server says the task is final (cancelled, or failed as a zombie): stop the job. */
static void
task_server_final(void *arg, int result)
{
    struct rtask *rt = arg;

    if (rt->cancel_seen)
        return;
    rt->cancel_seen = true;
    log_info("task %lld: the server says it is %s: cancelling the job", (long long)rt->tid,
             rpc_result_name(result) ? rpc_result_name(result) : "final");
    if (rt->jr)
        jobrun_cancel(rt->jr);
}
