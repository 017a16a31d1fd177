/* runlocal.c: the local scheduler and terminal sink (see runlocal.h). */
#include "runlocal.h"

#include "docker.h"
#include "dockerexec.h"
#include "httpc.h"
#include "jobrun.h"
#include "launch.h"
#include "mask.h"
#include "profile.h"
#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define RUNLOCAL_FORCE_MS 20000 /* a forced stop ends the process by then */

struct local_run {
    struct runlocal *rl;
    size_t plan, job, run;
    struct jobrun *jr;
    uint64_t started_ms;
    char *shown;            /* the run's name as the terminal shows it (masked, escaped) */
    int cur_step;
    int group_depth;        /* ::group:: nesting: lines inside are indented under the title */
    uint64_t step_started_ms;
    bool started, finished;
};

struct runlocal {
    const struct runlocal_opts *o;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t force_timer; /* after a forced stop: the process ends by then whatever happens */
    uv_prepare_t flush;     /* flushes the output before the loop waits */
    struct plan *const *plans;
    size_t n_plans;
    struct mask *mask;
    struct config_label *labels; /* o->labels as the launcher takes them */
    size_t n_labels;
    json_t *report;         /* {"jobs": [...]} */
    struct local_run **runs;
    size_t n_runs;
    int active, capacity;
    int interrupts;
    bool bad_input;
    struct httpc *http;
    struct docker *docker;
    int status;             /* exit status decided before any job ran (2: no Docker) */
    struct jobcache *cache; /* the actions/cache server while runs may start, or NULL */
    struct buf line;        /* on_log(): the line being written, reused */
};

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *
run_name(const struct local_run *lr)
{
    return lr->shown;
}

/* ---------------------------------------------------------------- terminal sink */

/* Every string from the workflow or from evaluating it (job and step names, runs-on labels,
 * error messages) is printed through shown(): masked, since a name can be built from a secret,
 * and with control characters escaped, since a name can hold ESC or CR that would otherwise
 * drive the terminal. Step output is masked by the job run and escaped in on_log(). */
static char *
shown(const struct runlocal *rl, const char *s)
{
    return mask_shown(rl->mask, s);
}

static const char *
col(const struct runlocal *rl, const char *code)
{
    return rl->o->color ? code : "";
}

static void
on_step_started(void *arg, struct jobrun *jr, int step, const char *name)
{
    struct local_run *lr = arg;
    FILE *f = lr->rl->o->out;

    char *t = shown(lr->rl, name);

    (void)jr;
    lr->cur_step = step;
    lr->group_depth = 0;
    lr->step_started_ms = now_ms();
    fprintf(f, "[%s] %s> %s%s\n", run_name(lr), col(lr->rl, "\033[1m"), t, col(lr->rl, "\033[0m"));
    free(t);
}

/* A line of step output as GitHub's log viewer shows it: a carriage return (`docker build`
 * progress, curl's meter) starts the line over, so only the text after the last one is shown
 * (CRs ending the line are a CRLF's, not an overwrite); tabs stay tabs. Every other control
 * character, ESC first, is shown as \xNN: the terminal is not the step's. A backslash is
 * shown as itself (paths, regular expressions). Without overwrite (annotations and the
 * runner's own messages, which can quote names) a CR is shown as \x0d: nothing is hidden. */
/* Bytes shown as \xNN: control characters but the tab, and DEL. */
static inline bool
escaped(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* The end of the run of bytes from i shown as they are: eight at a time while no byte of the
 * eight is below 0x20 or 0x7f (a tab stops the fast loop too; the byte loop lets it pass). */
static size_t
plain_run(const char *s, size_t i, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;

    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        /* A byte below 0x20 (or 0x80 and up, let through below), or a byte equal to 0x7f. */
        uint64_t low = (x - 0x20 * ones) & ~x & high;
        uint64_t del = ((x ^ 0x7f * ones) - ones) & ~(x ^ 0x7f * ones) & high;
        if (low | del)
            break;
    }
    while (i < n && !escaped((unsigned char)s[i]))
        i++;
    return i;
}

/* The text of a line as shown: *out points into s when nothing in it is escaped (the common
 * case: no copy), else at *copy (a new string the caller frees); *outlen is its length. */
static void
output_shown(const char *s, size_t n, bool overwrite, const char **out, size_t *outlen,
             char **copy)
{
    struct buf b = BUF_INIT;
    size_t i = 0;

    *copy = NULL;
    while (overwrite && n > 0 && s[n - 1] == '\r')
        n--;
    for (size_t k = n; overwrite && k-- > 0;) {
        if (s[k] == '\r') {
            s += k + 1;
            n -= k + 1;
            break;
        }
    }
    i = plain_run(s, 0, n);
    *out = s;
    *outlen = n;
    if (i == n)
        return;
    for (size_t from = 0;;) {
        buf_append(&b, s + from, i - from); /* the bytes shown as they are, in one copy */
        if (i == n)
            break;
        buf_printf(&b, "\\x%02x", (unsigned char)s[i]);
        from = ++i;
        i = plain_run(s, i, n);
    }
    *outlen = b.len;
    *out = *copy = buf_steal(&b);
}

static void
on_log(void *arg, struct jobrun *jr, int step, enum jobrun_kind kind, const char *text, size_t len)
{
    struct local_run *lr = arg;
    struct runlocal *rl = lr->rl;
    FILE *f = rl->o->out;
    const char *t;
    size_t tlen;
    char *copy;
    const char *pre = "  | ", *c = "";
    static const char pad[] = "                ";
    int depth = lr->group_depth > 8 ? 8 : lr->group_depth;

    (void)jr;
    (void)step;
    switch (kind) {
    case JOBRUN_ERR:
        pre = "  ! ";
        break;
    case JOBRUN_INFO:
        pre = "  * ";
        break;
    case JOBRUN_ERROR:
        pre = "  error: ";
        c = "\033[31m";
        break;
    case JOBRUN_WARNING:
        pre = "  warning: ";
        c = "\033[33m";
        break;
    case JOBRUN_NOTICE:
        pre = "  notice: ";
        c = "\033[36m";
        break;
    case JOBRUN_DEBUG:
        pre = "  debug: ";
        break;
    case JOBRUN_GROUP:
        pre = "  > ";
        c = "\033[1m";
        lr->group_depth++;
        break;
    case JOBRUN_ENDGROUP:
        if (lr->group_depth > 0)
            lr->group_depth--;
        return; /* the indentation ends; nothing to print */
    default:
        break;
    }
    output_shown(text, len, kind == JOBRUN_OUT || kind == JOBRUN_ERR || kind == JOBRUN_COMMAND,
                 &t, &tlen, &copy);
    /* "[run] " + indentation + colour + prefix, the text, the reset: put together and written
     * at once (a line of output is the hot path: no format to parse, one stdio call). */
    buf_reset(&rl->line);
    buf_putc(&rl->line, '[');
    buf_puts(&rl->line, run_name(lr));
    buf_append(&rl->line, "] ", 2);
    buf_append(&rl->line, pad, 2 * (size_t)depth);
    buf_puts(&rl->line, col(rl, c));
    buf_puts(&rl->line, pre);
    buf_append(&rl->line, t, tlen);
    if (*c)
        buf_puts(&rl->line, col(rl, "\033[0m"));
    buf_putc(&rl->line, '\n');
    fwrite(rl->line.data, 1, rl->line.len, f);
    free(copy);
}

static void
on_step_finished(void *arg, struct jobrun *jr, int step, const char *outcome,
                 const char *conclusion)
{
    struct local_run *lr = arg;
    FILE *f = lr->rl->o->out;

    (void)jr;
    if (strcmp(outcome, "skipped") == 0)
        return;
    (void)step;
    fprintf(f, "[%s] %s%s (%.1fs)\n", run_name(lr),
            strcmp(conclusion, "success") == 0 ? "  ok" : "  FAILED",
            strcmp(outcome, conclusion) != 0 ? " (continue-on-error)" : "",
            (double)(now_ms() - lr->step_started_ms) / 1000.0);
}

static void schedule(struct runlocal *rl);

static void
on_job_finished(void *arg, struct jobrun *jr, enum plan_result res)
{
    struct local_run *lr = arg;
    struct runlocal *rl = lr->rl;
    struct plan *p = rl->plans[lr->plan];
    const struct plan_run *pr = &p->jobs[lr->job].runs[lr->run];
    json_t *ent = json_object();

    fprintf(rl->o->out, "[%s] job %s (%.1fs)\n", run_name(lr), plan_result_name(res),
            (double)(now_ms() - lr->started_ms) / 1000.0);
    plan_run_finish(p, lr->job, lr->run, res);
    json_object_set_new(ent, "id", json_string(p->jobs[lr->job].wf->id));
    json_object_set_new(ent, "name", json_string(pr->name));
    json_object_set(ent, "matrix", pr->matrix);
    json_object_set_new(ent, "result", json_string(plan_result_name(res)));
    json_object_set(ent, "outputs", pr->outputs);
    json_object_set(ent, "steps", jobrun_step_list(jr));
    json_array_append_new(json_object_get(rl->report, "jobs"), ent);
    jobrun_free(jr);
    lr->jr = NULL;
    lr->finished = true;
    rl->active--;
    schedule(rl);
}

static const struct jobrun_sink terminal_sink = {
    .step_started = on_step_started,
    .log = on_log,
    .step_finished = on_step_finished,
    .job_finished = on_job_finished,
};

/* ---------------------------------------------------------------- scheduling */

/* Adds a run that never started to the report (pr NULL: a job whose runs were never
 * expanded, under its id): --report lists every job of the run, skipped ones too. */
static void
report_unrun(struct runlocal *rl, struct plan *p, size_t ji, const struct plan_run *pr,
             const char *result)
{
    json_t *ent = json_object();

    json_object_set_new(ent, "id", json_string(p->jobs[ji].wf->id));
    json_object_set_new(ent, "name", json_string(pr ? pr->name : p->jobs[ji].wf->id));
    json_object_set_new(ent, "matrix", pr && pr->matrix ? json_incref(pr->matrix) : json_object());
    json_object_set_new(ent, "result", json_string(result));
    json_object_set_new(ent, "outputs", json_object());
    json_object_set_new(ent, "steps", json_array());
    json_array_append_new(json_object_get(rl->report, "jobs"), ent);
}

/* report_unrun() for each run of job ji, or once for the job when it has none. */
static void
report_job_unrun(struct runlocal *rl, struct plan *p, size_t ji, const char *result)
{
    const struct plan_job *j = &p->jobs[ji];

    if (j->n_runs == 0)
        report_unrun(rl, p, ji, NULL, result);
    for (size_t ri = 0; ri < j->n_runs; ri++)
        report_unrun(rl, p, ji, &j->runs[ri], result);
}

/* runnerctl exec grants no GPUs (that is runnerd's inventory): a label whose settings ask for
 * them gets a note, and the job none. */
static int
no_gpus(void *arg, const struct config_profile *p, char ***gpus, char **why)
{
    struct local_run *lr = arg;
    char *l = shown(lr->rl, p->name);

    (void)why;
    *gpus = NULL;
    fprintf(lr->rl->o->out, "[%s] note: runnerctl exec grants no GPUs (label %s asks for "
            "them; runnerd does)\n", lr->shown, l);
    free(l);
    return 0;
}

/* The cache's variables for run name (none without a server): a token of its own, added to
 * the mask before the run can print it. */
static void
run_cache(struct runlocal *rl, const char *name, json_t **env_c, json_t **env_h)
{
    const struct runlocal_opts *o = rl->o;
    char *job = xasprintf("runnerctl-%ld-%s", (long)getpid(), name), *token = NULL;
    char *repo = o->cache_repo ? xstrdup(o->cache_repo) : NULL;
    char *ref = o->cache_ref ? xstrdup(o->cache_ref) : NULL;
    char *def = o->cache_default_ref ? xstrdup(o->cache_default_ref) : NULL;
    struct cache_claims c = {
        .repo = repo, .ref = ref, .default_ref = def, .job = job,
        .expires = (int64_t)time(NULL) + (int64_t)o->cache_ttl_s,
    };
    struct err e = {0};

    if (rl->cache && jobcache_job(rl->cache, &c, true, env_c, env_h, &token, &e) < 0)
        fprintf(stderr, "runnerctl exec: cache: %s; this job runs without it\n", e.msg);
    if (token)
        mask_add(rl->mask, token);
    free(token);
    free(job);
    free(repo);
    free(ref);
    free(def);
}

static void
start_run(struct runlocal *rl, size_t pi, size_t ji, size_t ri)
{
    struct plan *p = rl->plans[pi];
    const struct plan_run *pr = &p->jobs[ji].runs[ri];
    struct local_run *lr = xcalloc(1, sizeof *lr);
    char *name = NULL, *why = NULL;

    lr->rl = rl;
    lr->plan = pi;
    lr->job = ji;
    lr->run = ri;
    lr->cur_step = -1;
    lr->started_ms = now_ms();
    lr->shown = shown(rl, pr->name);
    rl->runs = xreallocarray(rl->runs, rl->n_runs + 1, sizeof *rl->runs);
    rl->runs[rl->n_runs++] = lr;
    fprintf(rl->o->out, "[%s] job started\n", lr->shown);

    name = xasprintf("%s-%zu", p->jobs[ji].wf->id, ri + 1);
    json_t *cache_c = NULL, *cache_h = NULL;
    run_cache(rl, name, &cache_c, &cache_h);
    /* The label's settings from -c (limits, binds, docker socket or dind); without -c the
     * default limits and capability floor, so that no workflow option lifts them here either. */
    struct launch_opts lo = {
        .mode = LAUNCH_CONTAINER_FIRST,
        .loop = &rl->loop,
        .labels = rl->labels,
        .n_labels = rl->n_labels,
        .cfg = rl->o->cfg,
        .host_memory = profile_host_memory(),
        .docker = rl->docker,
        .agent_path = rl->o->agent_path,
        .runner_name = "runnerctl",
        .job = {
            .plan = p,
            .job = ji,
            .run = ri,
            .xjob = {.name = name, .source = rl->o->workdir, .bind = rl->o->bind},
            .mask = rl->mask,
            .config_env = rl->o->config_env,
            .container_options = rl->o->container_options,
            .cache_dir = rl->o->cache_dir,
            .git_ca_file = rl->o->git_ca_file,
            .actions_url = rl->o->actions_url,
            .node_image = rl->o->node_image,
            .github_mirror = rl->o->github_mirror,
            .sink = &terminal_sink,
            .sink_arg = lr,
        },
        .grant_gpus = no_gpus,
        .arg = lr,
        .cache_env_container = cache_c,
        .cache_env_host = cache_h,
    };
    int rc = launch_start(&lo, &lr->jr, &why);
    free(name);
    json_decref(cache_c);
    json_decref(cache_h);
    if (rc == 0) {
        rl->active++;
        lr->started = true;
        return;
    }
    char *m = shown(rl, why);
    fprintf(rl->o->out, "[%s] error: %s\n", lr->shown, m);
    free(m);
    free(why);
    plan_run_finish(p, ji, ri, PLAN_FAILURE);
    lr->finished = true;
    report_unrun(rl, p, ji, pr, "failure");
}

/* Number of runs of job ji currently running. */
static int
running_of(struct runlocal *rl, size_t pi, size_t ji)
{
    int n = 0;

    for (size_t i = 0; i < rl->n_runs; i++)
        if (rl->runs[i]->plan == pi && rl->runs[i]->job == ji && rl->runs[i]->started &&
            !rl->runs[i]->finished)
            n++;
    return n;
}

static bool
run_launched(struct runlocal *rl, size_t pi, size_t ji, size_t ri)
{
    for (size_t i = 0; i < rl->n_runs; i++)
        if (rl->runs[i]->plan == pi && rl->runs[i]->job == ji && rl->runs[i]->run == ri)
            return true;
    return false;
}

static void
schedule(struct runlocal *rl)
{
    bool progress = true;

    while (progress) {
        progress = false;
        for (size_t pi = 0; pi < rl->n_plans; pi++) {
            struct plan *p = rl->plans[pi];

            if (rl->interrupts > 0)
                p->cancelled = true;
            for (size_t ji = 0; ji < p->n_jobs; ji++) {
                struct plan_job *j = &p->jobs[ji];
                struct err e = {0};
                bool run = false;

                if (plan_job_ready(p, ji)) {
                    char *id = shown(rl, j->wf->id), *m = NULL;
                    if (plan_job_start(p, ji, &run, &e) < 0) {
                        fprintf(rl->o->out, "[%s] error: %s\n", id, m = shown(rl, e.msg));
                        report_job_unrun(rl, p, ji, "failure");
                    } else if (!run) {
                        fprintf(rl->o->out, "[%s] job skipped\n", id);
                        report_job_unrun(rl, p, ji, "skipped");
                    }
                    free(id);
                    free(m);
                    progress = true;
                }
                if (j->state != PLAN_JOB_RUNNING)
                    continue;
                for (size_t ri = 0; ri < j->n_runs; ri++) {
                    if (run_launched(rl, pi, ji, ri))
                        continue;
                    if (rl->active >= rl->capacity || running_of(rl, pi, ji) >= j->max_parallel)
                        break;
                    if (p->cancelled) {
                        if (!j->runs[ri].finished)
                            report_unrun(rl, p, ji, &j->runs[ri], "cancelled");
                        plan_run_finish(p, ji, ri, PLAN_CANCELLED);
                        progress = true;
                        continue;
                    }
                    start_run(rl, pi, ji, ri);
                    progress = true;
                }
            }
        }
    }
    if (rl->active == 0) {
        uv_signal_stop(&rl->sigint);
        uv_signal_stop(&rl->sigterm);
        jobcache_close(rl->cache, NULL, NULL); /* no run starts after this */
        rl->cache = NULL;
    }
}

/* A forced stop did not end the jobs in time (Docker itself does not answer): leave now. The
 * job containers left behind are removed by the next runnerctl exec, as for a killed one. */
static void
leave_forced(struct runlocal *rl)
{
    int left = 0;

    for (size_t i = 0; i < rl->n_runs; i++)
        left += rl->runs[i]->started && !rl->runs[i]->finished;
    fprintf(rl->o->out, "forced: %d job(s) did not stop in time; leaving them for the next run "
            "to remove\n", left);
    fflush(rl->o->out);
    fflush(stderr);
    _exit(1);
}

static void
on_force_timer(uv_timer_t *t)
{
    leave_forced(t->data);
}

static void
on_signal(uv_signal_t *s, int signum)
{
    struct runlocal *rl = s->data;

    rl->interrupts++;
    fprintf(rl->o->out, "%s: %s\n", signum == SIGINT ? "interrupt" : "terminate",
            rl->interrupts == 1 ? "cancelling (again to force)"
            : rl->interrupts == 2 ? "forcing (again to leave at once)" : "leaving at once");
    if (rl->interrupts > 2)
        leave_forced(rl);
    if (rl->interrupts == 2) {
        /* The jobs give up on their agents within seconds and remove their containers; this
         * bounds the rest (a Docker engine that does not answer). */
        uv_timer_start(&rl->force_timer, on_force_timer, RUNLOCAL_FORCE_MS, 0);
        uv_unref((uv_handle_t *)&rl->force_timer);
    }
    for (size_t i = 0; i < rl->n_plans; i++)
        rl->plans[i]->cancelled = true;
    for (size_t i = 0; i < rl->n_runs; i++)
        if (rl->runs[i]->jr && !rl->runs[i]->finished) {
            jobrun_cancel(rl->runs[i]->jr);
            if (rl->interrupts > 1)
                jobrun_cancel(rl->runs[i]->jr);
        }
}

/* Adds label name, run as how ("host" or "docker://IMAGE"), to rl->labels. A label with any
 * other value stays (as host) only so that no run of it is also said to have no executor:
 * labels_ok() refuses it, and nothing runs. */
static void
add_label(struct runlocal *rl, const char *name, const char *how)
{
    struct config_label *l;

    rl->labels = xreallocarray(rl->labels, rl->n_labels + 1, sizeof *rl->labels);
    l = &rl->labels[rl->n_labels++];
    l->name = xstrdup(name);
    l->exec = strncmp(how, "docker://", 9) == 0 ? CONFIG_EXEC_DOCKER : CONFIG_EXEC_HOST;
    l->image = l->exec == CONFIG_EXEC_DOCKER ? xstrdup(how + 9) : NULL;
}

/* Takes o->labels into rl->labels and checks every already-expanded run has an executor
 * before anything runs; *docker is set when some run needs the Docker engine. */
static bool
labels_ok(struct runlocal *rl, bool *docker)
{
    bool ok = true;
    const char *k;
    json_t *v;

    json_object_foreach(rl->o->labels, k, v) {
        const char *how = json_string_value(v);
        if (how)
            add_label(rl, k, how);
        if (how && strncmp(how, "docker://", 9) == 0)
            *docker = true;
        else if (how == NULL || strcmp(how, "host") != 0) {
            char *sk = shown(rl, k), *sh = shown(rl, how);
            fprintf(stderr, "label %s: expected host or docker://IMAGE, got '%s'\n", sk, sh);
            free(sk);
            free(sh);
            ok = false;
        }
    }

    for (size_t pi = 0; pi < rl->n_plans; pi++) {
        struct plan *p = rl->plans[pi];
        for (size_t ji = 0; ji < p->n_jobs; ji++) {
            for (size_t ri = 0; ri < p->jobs[ji].n_runs; ri++) {
                const struct plan_run *pr = &p->jobs[ji].runs[ri];
                char *image = NULL;
                struct err e = {0};

                if (jobrun_container_image(p, ji, ri, &image, &e) == 0 && image) {
                    free(image);
                    *docker = true;
                    continue;
                }
                if (launch_pick_label(rl->labels, rl->n_labels, pr->runs_on) == NULL) {
                    char *labels = json_dumps(pr->runs_on, JSON_COMPACT);
                    char *sl = shown(rl, labels), *sf = shown(rl, p->wf->file);
                    char *sj = shown(rl, p->jobs[ji].wf->id);
                    fprintf(stderr, "%s: job '%s': no executor for runs-on %s; map a label with "
                            "-l LABEL=host or -l LABEL=docker://IMAGE\n", sf, sj, sl);
                    free(labels);
                    free(sl);
                    free(sf);
                    free(sj);
                    ok = false;
                }
            }
        }
    }
    return ok;
}

/* The sweep runs beside the jobs (it removes only objects of owners whose process is gone, never
 * this one's); the loop ends only after it. */
static void
on_swept(int removed, void *arg)
{
    struct runlocal *rl = arg;

    log_trace("orphans swept");
    if (removed > 0)
        fprintf(rl->o->out, "removed %d object%s left by an earlier run that was killed\n",
                removed, removed == 1 ? "" : "s");
}

static void
sweep_start(struct runlocal *rl)
{
    struct err e = {0};

    if (dockerexec_sweep_orphans(rl->docker, on_swept, rl, &e) < 0)
        fprintf(stderr, "runnerctl exec: sweep: %s\n", e.msg);
}

/* Starts the actions/cache server on 127.0.0.1 and gateway (NULL: host jobs only). Without
 * it, jobs run without a cache, as GitHub's do when its cache service is down. */
static void
cache_start(struct runlocal *rl, const char *gateway)
{
    struct jobcache_opts co;
    struct err e = {0};

    if (rl->o->cache == NULL)
        return;
    co = *rl->o->cache;
    co.gateway = gateway;
    if (jobcache_new(&rl->loop, &co, &rl->cache, &e) < 0) {
        fprintf(stderr, "runnerctl exec: cache: %s; jobs run without it\n", e.msg);
        return;
    }
    fprintf(rl->o->out, "cache server: %s (jobs in containers), %s (on the host)\n",
            jobcache_url(rl->cache, true) ? jobcache_url(rl->cache, true) : "none",
            jobcache_url(rl->cache, false));
}

/* The engine said where job containers reach the host (ip NULL: they cannot); the runs
 * start. */
static void
on_gateway(void *arg, char *ip, const struct err *ge)
{
    struct runlocal *rl = arg;

    if (ip == NULL)
        fprintf(stderr, "runnerctl exec: cache: job containers cannot reach this host: %s\n",
                ge->msg);
    cache_start(rl, ip);
    log_trace("cache server started");
    free(ip);
    schedule(rl);
}

static void
on_docker(const struct docker_res *res, void *arg)
{
    struct runlocal *rl = arg;
    struct err e = {0};

    if (res->rc < 0) {
        fprintf(stderr, "runnerctl exec: cannot use Docker: %s\n", res->err.msg);
        rl->status = 2;
        uv_signal_stop(&rl->sigint);
        uv_signal_stop(&rl->sigterm);
        return;
    }
    /* The leftovers of killed runs are swept while the cache server and the runs start. */
    sweep_start(rl);
    if (rl->o->cache) {
        if (jobcache_gateway(rl->docker, on_gateway, rl, &e) == 0)
            return;
        on_gateway(rl, NULL, &e);
        return;
    }
    schedule(rl);
}

/* Before the loop blocks: what this iteration printed goes out in one write, so output is live
 * even through a pipe without a write per line. */
static void
on_prepare(uv_prepare_t *p)
{
    struct runlocal *rl = p->data;

    fflush(rl->o->out);
}

static void
on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int
runlocal_run(struct plan *const *plans, size_t n, const struct runlocal_opts *o)
{
    struct runlocal rl = {.o = o, .plans = plans, .n_plans = n};
    int status = 0;

    bool need_docker = false;

    log_trace("runlocal: plans made");
    rl.capacity = o->capacity > 0 ? o->capacity : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (rl.capacity < 1)
        rl.capacity = 1;
    rl.mask = mask_for_job(o->secrets, NULL);
    if (!labels_ok(&rl, &need_docker)) {
        status = 2;
        goto out;
    }
    rl.report = json_pack("{s:[]}", "jobs");
    uv_loop_init(&rl.loop);
    uv_signal_init(&rl.loop, &rl.sigint);
    uv_signal_init(&rl.loop, &rl.sigterm);
    rl.sigint.data = rl.sigterm.data = &rl;
    uv_signal_start(&rl.sigint, on_signal, SIGINT);
    uv_signal_start(&rl.sigterm, on_signal, SIGTERM);
    uv_timer_init(&rl.loop, &rl.force_timer);
    rl.force_timer.data = &rl;
    uv_prepare_init(&rl.loop, &rl.flush);
    rl.flush.data = &rl;
    uv_prepare_start(&rl.flush, on_prepare);
    uv_unref((uv_handle_t *)&rl.flush);
    if (need_docker) {
        struct err e = {0};
        rl.http = httpc_new(&rl.loop);
        if (docker_new(rl.http, NULL, &rl.docker, &e) < 0 ||
            docker_connect(rl.docker, on_docker, &rl, &e) < 0) {
            fprintf(stderr, "runnerctl exec: Docker: %s\n", e.msg);
            rl.status = 2;
            uv_signal_stop(&rl.sigint);
            uv_signal_stop(&rl.sigterm);
        }
    } else {
        cache_start(&rl, NULL);
        schedule(&rl);
    }
    uv_run(&rl.loop, UV_RUN_DEFAULT);
    log_trace("runlocal: loop done");
    docker_free(rl.docker);
    if (rl.http)
        httpc_close(rl.http, NULL, NULL);
    uv_run(&rl.loop, UV_RUN_DEFAULT);
    uv_walk(&rl.loop, on_walk_close, NULL);
    uv_run(&rl.loop, UV_RUN_DEFAULT);
    uv_loop_close(&rl.loop);

    if (rl.status == 2)
        goto out;
    /* Summary and exit status. */
    fprintf(o->out, "\n%-40s %s\n", "JOB", "RESULT");
    for (size_t pi = 0; pi < n; pi++) {
        struct plan *p = plans[pi];
        for (size_t ji = 0; ji < p->n_jobs; ji++) {
            struct plan_job *j = &p->jobs[ji];
            for (size_t ri = 0; ri < j->n_runs; ri++) {
                enum plan_result r = j->runs[ri].result;
                char *name = shown(&rl, j->runs[ri].name);
                fprintf(o->out, "%-40s %s\n", name,
                        j->state != PLAN_JOB_DONE ? "not run" : *plan_result_name(r) ? plan_result_name(r) : "not run");
                free(name);
                if (r == PLAN_FAILURE || r == PLAN_CANCELLED || j->state != PLAN_JOB_DONE)
                    status = 1;
            }
            if (j->n_runs == 0 && j->result == PLAN_FAILURE)
                status = 1;
        }
    }
    if (o->report_path) {
        /* Names and outputs in the report come from the workflow: masked like the terminal. */
        json_t *masked = mask_json(rl.mask, rl.report);
        int wrc = json_dump_file(masked, o->report_path, JSON_INDENT(2));
        json_decref(masked);
        if (wrc != 0) {
            fprintf(stderr, "runnerctl exec: cannot write the report to %s\n", o->report_path);
            status = status ? status : 1;
        }
    }
out:
    if (rl.status)
        status = rl.status;
    for (size_t i = 0; i < rl.n_runs; i++) {
        free(rl.runs[i]->shown);
        free(rl.runs[i]);
    }
    free(rl.runs);
    json_decref(rl.report);
    for (size_t i = 0; i < rl.n_labels; i++)
        config_label_free(&rl.labels[i]);
    free(rl.labels);
    mask_free(rl.mask);
    buf_free(&rl.line);
    return status;
}
