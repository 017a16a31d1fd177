/* test-launch.c: the one job launcher (launch.h) both front ends use, driven with the host
 * executor and the real runner-agent: the job's mask (mask_for_job()) hides a secret in what the
 * sink gets (a step's output and its name) and the token given to mask; the runner context
 * names the runner; and the errors of a label that does not fit, of an image a label refuses
 * and of an engine that is not there are those runnerd (LAUNCH_BY_LABEL) and runnerctl exec
 * (LAUNCH_CONTAINER_FIRST) have always given. */
#include "harness.h"

#include "config.h"
#include "httpc.h"
#include "docker.h"
#include "launch.h"
#include "mask.h"
#include "plan.h"
#include "runner/buf.h"
#include "wf.h"

#ifndef RUNNER_AGENT_PATH
#error "RUNNER_AGENT_PATH must name the built runner-agent"
#endif

#define SECRET "s3cr3t-Value"
#define TOKEN "tok-9f8e7d6c"

/* What the sink heard. */
struct heard {
    struct buf names; /* step names, one a line */
    struct buf log;   /* every line */
    bool finished;
    enum plan_result result;
    int chosen;
    char *label;
};

static void
on_step_started(void *arg, struct jobrun *jr, int step, const char *name)
{
    struct heard *h = arg;

    (void)jr;
    (void)step;
    buf_printf(&h->names, "%s\n", name);
}

static void
on_log(void *arg, struct jobrun *jr, int step, enum jobrun_kind kind, const char *text,
       size_t len)
{
    struct heard *h = arg;

    (void)jr;
    (void)step;
    (void)kind;
    buf_printf(&h->log, "%.*s\n", (int)len, text);
}

static void
on_step_finished(void *arg, struct jobrun *jr, int step, const char *outcome,
                 const char *conclusion)
{
    (void)arg;
    (void)jr;
    (void)step;
    (void)outcome;
    (void)conclusion;
}

static void
on_job_finished(void *arg, struct jobrun *jr, enum plan_result result)
{
    struct heard *h = arg;

    h->finished = true;
    h->result = result;
    jobrun_free(jr);
}

static const struct jobrun_sink sink = {
    .step_started = on_step_started,
    .log = on_log,
    .step_finished = on_step_finished,
    .job_finished = on_job_finished,
};

static void
on_chosen(void *arg, const struct config_label *lb)
{
    struct heard *h = arg;

    h->chosen++;
    free(h->label);
    h->label = lb ? strdup(lb->name) : NULL;
}

/* The plan of a one-job workflow, its job started. */
static struct plan *
plan_of(const char *yaml, struct wf_workflow **w)
{
    struct wf_diag d = {0};
    struct err e = {0};
    struct plan *p = NULL;
    json_t *secrets = json_pack("{s:s}", "S", SECRET);
    bool run = false;

    if (wf_parse("w.yml", yaml, strlen(yaml), w, &d, &e) < 0)
        test_fail(__FILE__, __LINE__, "wf_parse: %s", e.msg);
    wf_diag_free(&d);
    struct plan_opts po = {.event_name = "push", .secrets = secrets};
    if (plan_new(*w, &po, &p, &e) < 0 || plan_job_start(p, 0, &run, &e) < 0)
        test_fail(__FILE__, __LINE__, "plan: %s", e.msg);
    ASSERT(run);
    json_decref(secrets);
    return p;
}

static void
load_config(const char *yaml, struct config *c)
{
    FILE *f = fopen("config.yaml", "w");
    struct err e = {0};

    ASSERT(f != NULL);
    fputs(yaml, f);
    fclose(f);
    config_defaults(c);
    if (config_load("config.yaml", c, &e) < 0)
        test_fail(__FILE__, __LINE__, "config: %s", e.msg);
}

static const char masked_wf[] =
    "on: push\n"
    "jobs:\n"
    "  a:\n"
    "    runs-on: [nowhere, self]\n"
    "    steps:\n"
    "      - name: greet ${{ secrets.S }}\n"
    "        run: |\n"
    "          echo \"secret=" SECRET " token=" TOKEN " runner=${{ runner.name }}\"\n";

/* One launch: its loop, plan and mask, what the sink heard, and the launcher's options (no
 * settings and no engine: set lo.cfg and lo.docker for them). */
struct fix {
    uv_loop_t loop;
    struct wf_workflow *w;
    struct plan *p;
    struct mask *mask;
    struct heard h;
    struct launch_opts lo;
};

static void
fix_init(struct fix *f, enum launch_mode m, const char *wf, struct mask *mask,
         const struct config_label *labels, size_t n)
{
    memset(f, 0, sizeof *f);
    uv_loop_init(&f->loop);
    f->p = plan_of(wf, &f->w);
    f->mask = mask;
    f->lo = (struct launch_opts){
        .mode = m,
        .loop = &f->loop,
        .labels = labels,
        .n_labels = n,
        .agent_path = RUNNER_AGENT_PATH,
        .runner_name = "tester",
        .job = {.plan = f->p, .xjob = {.name = "launch-1"}, .mask = mask, .sink = &sink,
                .sink_arg = &f->h},
        .chosen = on_chosen,
        .arg = &f->h,
    };
}

static void
fix_free(struct fix *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&f->loop), 0);
    buf_free(&f->h.names);
    buf_free(&f->h.log);
    free(f->h.label);
    mask_free(f->mask);
    plan_free(f->p);
    wf_free(f->w);
}

/* Runs masked_wf to its end with the launcher in mode m on a host label. */
static void
run_masked(enum launch_mode m)
{
    json_t *secrets = json_pack("{s:s, s:s}", "S", SECRET, "EMPTY", "");
    const char *tokens[] = {TOKEN, "", NULL};
    struct config_label labels[] = {{.name = (char *)"other", .exec = CONFIG_EXEC_HOST},
                                    {.name = (char *)"self", .exec = CONFIG_EXEC_HOST}};
    struct fix f;
    struct jobrun *jr = NULL;
    char *why = NULL;

    fix_init(&f, m, masked_wf, mask_for_job(secrets, tokens), labels, 2);
    ASSERT_EQ(mask_count(f.mask), 2);
    if (launch_start(&f.lo, &jr, &why) < 0)
        test_fail(__FILE__, __LINE__, "launch_start: %s", why);
    ASSERT(jr != NULL);
    ASSERT_EQ(f.h.chosen, 1);
    ASSERT_STR_EQ(f.h.label, "self");
    while (!f.h.finished)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT_EQ(f.h.result, PLAN_SUCCESS);
    ASSERT_STR_CONTAINS(buf_str(&f.h.names), "greet ***\n");
    ASSERT_STR_CONTAINS(buf_str(&f.h.log), "secret=*** token=*** runner=tester\n");
    ASSERT(strstr(buf_str(&f.h.names), SECRET) == NULL);
    ASSERT(strstr(buf_str(&f.h.log), SECRET) == NULL);
    ASSERT(strstr(buf_str(&f.h.log), TOKEN) == NULL);
    fix_free(&f);
    json_decref(secrets);
}

/* runnerd's way: the secret in the step's name and output, and the task token, are masked. */
TEST(by_label_masks_secret_and_token)
{
    run_masked(LAUNCH_BY_LABEL);
}

/* runnerctl exec's way: the same. */
TEST(container_first_masks_secret_and_token)
{
    run_masked(LAUNCH_CONTAINER_FIRST);
}

/* mask_for_job(): secrets' string members and the tokens; empty values and others hide nothing. */
TEST(mask_from_secrets_and_tokens)
{
    json_t *secrets = json_pack("{s:s, s:s, s:i}", "A", "alpha-1", "B", "", "N", 42);
    const char *tokens[] = {"tok-a", "", "alpha-1", NULL};
    struct mask *m = mask_for_job(secrets, tokens);
    char *s = mask_str(m, "alpha-1 tok-a 42");

    ASSERT_EQ(mask_count(m), 2);
    ASSERT_STR_EQ(s, "*** *** 42");
    free(s);
    mask_free(m);
    m = mask_for_job(NULL, NULL);
    ASSERT_EQ(mask_count(m), 0);
    mask_free(m);
    json_decref(secrets);
}

/* Starts wf with the launcher in mode m and returns its error (a new string); *chosen: how
 * many times a label was said to be chosen. */
static char *
launch_error(enum launch_mode m, const char *wf, const struct config_label *labels, size_t n,
             const struct config *cfg, struct docker *docker, int *chosen)
{
    struct fix f;
    struct jobrun *jr = NULL;
    char *why = NULL;

    fix_init(&f, m, wf, mask_for_job(NULL, NULL), labels, n);
    f.lo.cfg = cfg;
    f.lo.docker = docker;
    if (launch_start(&f.lo, &jr, &why) == 0)
        test_fail(__FILE__, __LINE__, "the job started");
    ASSERT(why != NULL);
    ASSERT(jr == NULL);
    ASSERT(!f.h.finished);
    ASSERT_EQ(f.h.log.len, 0);
    *chosen = f.h.chosen;
    fix_free(&f);
    return why;
}

/* A job none of whose runs-on labels is the runner's: runnerd's words, said before any label
 * is chosen; runnerctl exec's (a job without a container). */
TEST(label_mismatch_errors)
{
    static const char wf[] = "on: push\njobs:\n  a:\n    runs-on: [nowhere, '${{ secrets.S }}']\n"
                             "    steps:\n      - run: true\n";
    struct config_label labels[] = {{.name = (char *)"self", .exec = CONFIG_EXEC_HOST}};
    int chosen = -1;
    char *why = launch_error(LAUNCH_BY_LABEL, wf, labels, 1, NULL, NULL, &chosen);

    ASSERT_STR_EQ(why, "none of the job's runs-on labels [\"nowhere\",\"" SECRET "\"] is a label "
                       "of this runner");
    ASSERT_EQ(chosen, 0);
    free(why);
    why = launch_error(LAUNCH_CONTAINER_FIRST, wf, labels, 1, NULL, NULL, &chosen);
    ASSERT_STR_EQ(why, "no executor for runs-on [\"nowhere\",\"" SECRET "\"] (use -l LABEL=host)");
    ASSERT_EQ(chosen, 1);
    free(why);
}

/* A label that pins an image refuses the job's own, naming where it is written: the same error
 * from both front ends. runnerd checks it on a docker label (the engine is there); runnerctl
 * exec whatever the label. */
TEST(pinned_image_refused)
{
    static const char wf[] = "on: push\njobs:\n  a:\n    runs-on: pinned\n"
                             "    container:\n      image: evil:1\n"
                             "    steps:\n      - run: true\n";
    static const char want[] = "w.yml:6:14: container.image: label pinned runs only its pinned "
                               "image (allow_job_image: false): evil:1 is not alpine:3";
    struct config c;
    struct config_label docker_label = {.name = (char *)"pinned", .exec = CONFIG_EXEC_DOCKER,
                                        .image = (char *)"alpine:3"};
    struct config_label host_label = {.name = (char *)"pinned", .exec = CONFIG_EXEC_HOST};
    struct err e = {0};
    uv_loop_t loop;
    struct httpc *http;
    struct docker *docker = NULL;
    struct docker_config dc = {.host = "unix:///nonexistent/docker.sock"};
    int chosen = 0;

    load_config("runnerd:\n  labels:\n    pinned:\n      image: alpine:3\n", &c);
    uv_loop_init(&loop);
    http = httpc_new(&loop);
    ASSERT_OK(docker_new(http, &dc, &docker, &e));
    char *why = launch_error(LAUNCH_BY_LABEL, wf, &docker_label, 1, &c, docker, &chosen);
    ASSERT_STR_EQ(why, want);
    free(why);
    why = launch_error(LAUNCH_CONTAINER_FIRST, wf, &docker_label, 1, &c, docker, &chosen);
    ASSERT_STR_EQ(why, want);
    free(why);
    why = launch_error(LAUNCH_CONTAINER_FIRST, wf, &host_label, 1, &c, NULL, &chosen);
    ASSERT_STR_EQ(why, want);
    free(why);
    docker_free(docker);
    httpc_close(http, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    config_free(&c);
}

/* runnerd: a docker label needs the engine now; nothing of the job is evaluated before. */
TEST(by_label_docker_needs_the_engine)
{
    static const char wf[] = "on: push\njobs:\n  a:\n    runs-on: d\n"
                             "    container: ${{ fromJSON('bad json') }}\n"
                             "    steps:\n      - run: true\n";
    struct config_label d = {.name = (char *)"d", .exec = CONFIG_EXEC_DOCKER,
                             .image = (char *)"alpine:3"};
    int chosen = 0;
    char *why = launch_error(LAUNCH_BY_LABEL, wf, &d, 1, NULL, NULL, &chosen);

    ASSERT_STR_EQ(why, "the Docker engine is not reachable; this runner cannot run docker jobs "
                       "now");
    ASSERT_EQ(chosen, 1);
    free(why);
}
