/* task.c: one Gitea task in runnerd (see task.h): its life. The task's workflow payload is
 * planned and run by the same engine as `runnerctl exec` (launch.h); what the job says goes
 * through the task's sink (task-sink.c) into the state database first (log rows, step states,
 * checkpoints, outputs), and the reporter sends it from there. Here: starting the task,
 * launching its job, finishing it, the reporter's end, cancelling, scrubbing its secrets. After
 * a restart a task whose job container still runs is resumed from its last checkpoint; one
 * whose container is gone is finalized as failed. */
#include "task-int.h"

#include "cache.h"
#include "cachesvc.h"
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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    task_flush_or_warn(rt);
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
void
task_finish(struct rtask *rt, int result, const char *why)
{
    char *safe = NULL;

    if (rt->job_over)
        return;
    rt->job_over = true;
    if (why) /* the reason reaches the log, the server and runnerd's own log: masked */
        why = safe = mask_str(rt->mask, why);
    /* A resumed job that ends before saying again all it had said (its resume failed, or it
     * took another way): the stored rows stand, and these last ones are new. */
    rt->skip = 0;
    task_note_lost(rt);
    if (why) {
        task_rowf(rt, -1, "::error::%s", why);
        free(rt->row.reason);
        rt->row.reason = xstrdup(why);
    }
    task_rowf(rt, -1, "%s", result == RPC_RESULT_SUCCESS     ? "🏁  Job succeeded"
                            : result == RPC_RESULT_CANCELLED ? "🏁  Job was cancelled"
                            : result == RPC_RESULT_SKIPPED   ? "🏁  Job was skipped"
                                                             : "🏁  Job failed");
    /* Steps that never ended: cancelled (skipped when the job was). */
    task_steps_end(rt, result);
    release_gpus(rt);
    if (rt->counted_running) {
        metric_add(rt->d->m.running, -1, task_metric_label(rt->label));
        rt->counted_running = false;
    }
    metric_add(rt->d->m.jobs, 1, task_metric_label(rt->label),
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
    task_flush_or_warn(rt);
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

/* The environment runnerd gives every job (act_runner's, doc/gitea-protocol.md §4.6), then
 * runner.envs. */
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
    json_object_set_new(env, "ACTIONS_RUNTIME_TOKEN",
                        json_string(*rtok ? rtok : ctx_str(rt, "token")));
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
            task_rowf(rt, -1, "::error::%s", diag.msgs[i]);
        wf_diag_free(&diag);
        *why = xasprintf("the task's workflow is not valid: %s", e.msg);
        return rc;
    }
    wf_diag_free(&diag);
    if (rt->wf->n_jobs != 1) {
        *why = xasprintf("the task's workflow has %zu jobs; a task runs exactly one",
                         rt->wf->n_jobs);
        return -EINVAL;
    }
    task_steps_fit(rt, rt->wf->jobs[0].n_steps);
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
    task_rowf(rt, -1, "workflow prepared");
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
    task_rowf(rt, -1, "GPU(s) for this job: %s", list ? list : "");
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
    json_t *cache_c = NULL, *cache_h = NULL;
    /* The cache token a resumed job's checkpoint holds in its URL (its steps keep their
     * variables) stays masked; a new one goes to a job started now. */
    char *old = cache_url_token(
        json_string_value(json_object_get(json_object_get(cp, "job_env"), "ACTIONS_CACHE_URL")));
    if (old)
        mask_add(rt->mask, old);
    else
        cachesvc_task(d, rt->tid, rt->t->context, rt->mask, &cache_c, &cache_h);
    free(old);
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
            .sink = &task_sink, .sink_arg = rt, .cache_dir = cache,
            .git_ca_file = d->cfg.runnerd.git_ca_file, .git_insecure = d->cfg.runner.insecure,
            .actions_url = d->cfg.runnerd.actions_url,
            .github_mirror = d->cfg.runner.github_mirror, .node_image = d->cfg.runnerd.node_image,
        },
        .chosen = label_chosen, .grant_gpus = grant_gpus, .arg = rt,
        .cache_env_container = cache_c, .cache_env_host = cache_h,
    };
    rc = x ? launch_resume(&lo, x, cp, &rt->jr, why) : launch_start(&lo, &rt->jr, why);
    if (rc == 0 && !rt->counted_running) {
        metric_add(d->m.running, 1, task_metric_label(rt->label));
        rt->counted_running = true;
    }
    json_decref(env);
    json_decref(cache_c);
    json_decref(cache_h);
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

    task_rowf(rt, -1,
              "%s(version:%s) received task %lld of job %s, be triggered by event: %s",
              rt->id ? rt->id->si.name : "runnerd", RUNNERD_VERSION, (long long)rt->tid,
              ctx_str(rt, "job"), ctx_str(rt, "event_name"));
    if (plan_task(rt, &run, &why) < 0)
        goto fail;
    if (!run) {
        task_rowf(rt, -1, "the job's if: condition is false: skipping it");
        task_finish(rt, RPC_RESULT_SKIPPED, NULL);
        return;
    }
    if (run_job(rt, NULL, NULL, &why) < 0)
        goto fail;
    task_flush_or_warn(rt);
    return;
fail:
    task_finish(rt, RPC_RESULT_FAILURE, why ? why : "the job could not be started");
    free(why);
}

/* ---------------------------------------------------------------- reporting */

static int
report_flush(void *arg, struct err *e)
{
    return task_flush(arg, e);
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
    task_steps_lost(rt); /* a step that was running when the job was lost failed */
    task_finish(rt, RPC_RESULT_FAILURE, why);
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
    task_finish(rt, rt->row.result, NULL);
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
    if (executor_docker_adopt(d->loop, d->docker, rt->id ? rt->id->si.name : "runnerd",
                              rt->row.exec, &x, &e) < 0) {
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
        gone(rt, d->docker_ready
                     ? e.msg
                     : "runnerd restarted and Docker is not reachable: the job cannot go on");
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
