/* test-plan.c: the planner — matrix expansion (include/exclude, limits, filters), stages from
 * needs, `-j` selection, job `if` with status functions over transitive needs, result
 * propagation, job outputs into `needs`, deferred fromJSON matrices, run names, runs-on forms,
 * strategy values; and the github/inputs contexts the planner is given. */
#include "harness.h"

#include "ctx.h"
#include "plan.h"
#include "wf.h"

static struct wf_workflow *
load(const char *yaml)
{
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};
    struct err e = {0};

    if (wf_parse("test.yml", yaml, strlen(yaml), &w, &d, &e) < 0)
        test_fail(__FILE__, __LINE__, "wf_parse: %s", e.msg);
    wf_diag_free(&d);
    return w;
}

static json_t *
expand(const char *matrix_json)
{
    json_error_t je;
    json_t *m = json_loads(matrix_json, 0, &je), *out = NULL;
    struct err e = {0};

    if (m == NULL)
        test_fail(__FILE__, __LINE__, "bad JSON in test: %s", je.text);
    if (plan_matrix_expand(m, &out, &e) < 0)
        test_fail(__FILE__, __LINE__, "expand: %s", e.msg);
    json_decref(m);
    return out;
}

static void
assert_json(json_t *got, const char *want_json)
{
    json_t *want = json_loads(want_json, 0, NULL);
    char *g = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (want == NULL || !json_equal(got, want))
        test_fail(__FILE__, __LINE__, "got %s\nwant %s", g, want_json);
    /* json_equal ignores array order only for objects; arrays compare in order. */
    free(g);
    json_decref(want);
}

static int
find_job(const struct plan *p, const char *id)
{
    for (size_t i = 0; i < p->n_jobs; i++)
        if (strcmp(p->jobs[i].wf->id, id) == 0)
            return (int)i;
    test_fail(__FILE__, __LINE__, "no job %s in plan", id);
}

TEST(matrix_product_in_key_order)
{
    json_t *c = expand("{\"os\": [\"a\", \"b\"], \"v\": [1, 2, 3]}");
    assert_json(c, "[{\"os\":\"a\",\"v\":1},{\"os\":\"a\",\"v\":2},{\"os\":\"a\",\"v\":3},"
                   "{\"os\":\"b\",\"v\":1},{\"os\":\"b\",\"v\":2},{\"os\":\"b\",\"v\":3}]");
    json_decref(c);
}

TEST(matrix_exclude_is_type_sensitive)
{
    json_t *c = expand("{\"v\": [4, 6], \"n\": [1, 2],"
                       " \"exclude\": [{\"v\": 4, \"n\": 2}, {\"v\": \"6\", \"n\": 1}]}");
    assert_json(c, "[{\"v\":4,\"n\":1},{\"v\":6,\"n\":1},{\"v\":6,\"n\":2}]");
    json_decref(c);
}

TEST(matrix_include_merges_or_appends)
{
    /* {npm: 2} matches v=4 combinations (merge); {v: 9} matches none (new combination);
     * {extra: x} shares no original key, so it is merged into every combination. */
    json_t *c = expand("{\"v\": [4, 6], \"include\": [{\"v\": 4, \"npm\": 2}, {\"v\": 9},"
                       " {\"extra\": \"x\"}]}");
    assert_json(c, "[{\"v\":4,\"npm\":2,\"extra\":\"x\"},{\"v\":6,\"extra\":\"x\"},{\"v\":9}]");
    json_decref(c);
}

TEST(matrix_include_does_not_match_on_added_keys)
{
    /* The second include entry's `npm` is not an original key, so it merges by `v` alone and
     * overwrites what the first include added. */
    json_t *c = expand("{\"v\": [4], \"include\": [{\"v\": 4, \"npm\": 2}, {\"v\": 4, \"npm\": 3}]}");
    assert_json(c, "[{\"v\":4,\"npm\":3}]");
    json_decref(c);
}

TEST(matrix_only_include_and_nested_lists)
{
    json_t *c = expand("{\"include\": [{\"a\": 1}, [{\"a\": 2}, {\"b\": 3}]]}");
    assert_json(c, "[{\"a\":1},{\"a\":2},{\"b\":3}]");
    json_decref(c);
}

TEST(matrix_empty_runs_once)
{
    json_t *c = expand("{\"v\": [1], \"exclude\": [{\"v\": 1}]}");
    assert_json(c, "[{}]");
    json_decref(c);
    struct err e = {0};
    json_t *out = NULL;
    ASSERT_OK(plan_matrix_expand(NULL, &out, &e));
    assert_json(out, "[{}]");
    json_decref(out);
}

TEST(matrix_errors)
{
    static const char *const bad[][2] = {
        {"{\"v\": [1], \"exclude\": [{\"w\": 1}]}",
         "matrix exclude key \"w\" does not match any key within the matrix"},
        {"{\"v\": 1}", "matrix key 'v' must be a list of values"},
        {"[1]", "strategy.matrix must be a mapping"},
        {"{\"v\": [1], \"include\": [1]}", "matrix include entries must be mappings"},
        {"{\"a\":[1,2,3,4,5,6,7,8,9,10],\"b\":[1,2,3,4,5,6,7,8,9,10],\"c\":[1,2,3]}",
         "the matrix has 300 combinations; at most 256 runs are allowed"},
        {"{\"a\":[1,2,3,4,5,6,7,8,9,10],\"b\":[1,2,3,4,5,6,7,8,9,10],"
         "\"c\":[1,2,3,4,5,6,7,8,9,10],\"d\":[1,2,3,4,5,6,7,8,9,10],"
         "\"e\":[1,2,3,4,5,6,7,8,9,10],\"f\":[1,2,3,4,5,6,7,8,9,10]}",
         "the matrix has over 65536 combinations; at most 256 runs are allowed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *m = json_loads(bad[i][0], 0, NULL), *out = NULL;
        struct err e = {0};

        ASSERT(m != NULL);
        ASSERT_EQ(plan_matrix_expand(m, &out, &e), ERR_INVALID);
        ASSERT(out == NULL);
        ASSERT_STR_EQ(e.msg, bad[i][1]);
        json_decref(m);
    }
}

static const char diamond[] =
    "on: push\n"
    "jobs:\n"
    "  d:\n"
    "    needs: [b, c]\n"
    "    runs-on: x\n"
    "    steps: [{run: echo}]\n"
    "  b:\n"
    "    needs: a\n"
    "    runs-on: x\n"
    "    steps: [{run: echo}]\n"
    "  a:\n"
    "    runs-on: x\n"
    "    steps: [{run: echo}]\n"
    "  c:\n"
    "    needs: a\n"
    "    if: failure()\n"
    "    runs-on: x\n"
    "    steps: [{run: echo}]\n"
    "  e:\n"
    "    runs-on: x\n"
    "    steps: [{run: echo}]\n";

TEST(stages_follow_needs)
{
    struct wf_workflow *w = load(diamond);
    struct plan *p = NULL;
    struct err e = {0};

    ASSERT_OK(plan_new(w, NULL, &p, &e));
    ASSERT_EQ(p->n_stages, 3);
    ASSERT_EQ(p->n_jobs, 5);
    /* Stage order, file order inside a stage. */
    const char *order[] = {"a", "e", "b", "c", "d"};
    const int stage[] = {0, 0, 1, 1, 2};
    for (size_t i = 0; i < 5; i++) {
        ASSERT_STR_EQ(p->jobs[i].wf->id, order[i]);
        ASSERT_EQ(p->jobs[i].stage, stage[i]);
    }
    ASSERT_EQ(p->jobs[4].n_needs, 2);
    plan_free(p);
    wf_free(w);
}

TEST(only_job_selects_transitive_needs)
{
    struct wf_workflow *w = load(diamond);
    struct plan *p = NULL;
    struct err e = {0};
    struct plan_opts o = {.only_job = "b"};

    ASSERT_OK(plan_new(w, &o, &p, &e));
    ASSERT_EQ(p->n_jobs, 2);
    ASSERT_STR_EQ(p->jobs[0].wf->id, "a");
    ASSERT_STR_EQ(p->jobs[1].wf->id, "b");
    plan_free(p);
    o.only_job = "nope";
    ASSERT_EQ(plan_new(w, &o, &p, &e), ERR_NOTFOUND);
    ASSERT_STR_EQ(e.msg, "test.yml: no job 'nope' in the workflow");
    wf_free(w);
}

/* Runs the plan's scheduler with fixed results per job id; returns the plan for inspection. */
static struct plan *
simulate(struct wf_workflow *w, const char *const results[][2], size_t n)
{
    struct plan *p = NULL;
    struct err e = {0};

    if (plan_new(w, NULL, &p, &e) < 0)
        test_fail(__FILE__, __LINE__, "plan_new: %s", e.msg);
    for (int guard = 0; !plan_done(p) && guard < 100; guard++) {
        for (size_t i = 0; i < p->n_jobs; i++) {
            bool run = false;

            if (!plan_job_ready(p, i))
                continue;
            (void)plan_job_start(p, i, &run, &e);
            if (!run)
                continue;
            enum plan_result r = PLAN_SUCCESS;
            for (size_t k = 0; k < n; k++)
                if (strcmp(results[k][0], p->jobs[i].wf->id) == 0)
                    r = strcmp(results[k][1], "failure") == 0 ? PLAN_FAILURE : PLAN_CANCELLED;
            for (size_t r2 = 0; r2 < p->jobs[i].n_runs; r2++)
                plan_run_finish(p, i, r2, r);
        }
    }
    ASSERT(plan_done(p));
    return p;
}

TEST(results_propagate_through_needs)
{
    struct wf_workflow *w = load(diamond);
    static const char *const res[][2] = {{"a", "failure"}};
    struct plan *p = simulate(w, res, 1);

    ASSERT_EQ(p->jobs[find_job(p, "a")].result, PLAN_FAILURE);
    ASSERT_EQ(p->jobs[find_job(p, "b")].result, PLAN_SKIPPED); /* implicit success() */
    ASSERT_EQ(p->jobs[find_job(p, "c")].result, PLAN_SUCCESS); /* if: failure() ran */
    ASSERT_EQ(p->jobs[find_job(p, "d")].result, PLAN_SKIPPED); /* b skipped: not success */
    ASSERT_EQ(p->jobs[find_job(p, "e")].result, PLAN_SUCCESS);
    plan_free(p);
    wf_free(w);
}

TEST(success_path_skips_failure_job)
{
    struct wf_workflow *w = load(diamond);
    struct plan *p = simulate(w, NULL, 0);

    ASSERT_EQ(p->jobs[find_job(p, "b")].result, PLAN_SUCCESS);
    ASSERT_EQ(p->jobs[find_job(p, "c")].result, PLAN_SKIPPED);
    /* d needs c, which was skipped: success() over the closure is false. */
    ASSERT_EQ(p->jobs[find_job(p, "d")].result, PLAN_SKIPPED);
    plan_free(p);
    wf_free(w);
}

TEST(job_if_status_functions_and_needs_context)
{
    static const char y[] =
        "on: push\n"
        "jobs:\n"
        "  a: {runs-on: x, steps: [{run: echo}]}\n"
        "  b: {needs: a, runs-on: x, steps: [{run: echo}]}\n"
        "  plain: {needs: b, if: \"needs.b.result == 'skipped'\", runs-on: x, steps: [{run: e}]}\n"
        "  always: {needs: b, if: \"${{ always() && needs.b.result == 'skipped' }}\", runs-on: x,"
        " steps: [{run: e}]}\n"
        "  transitive: {needs: b, if: failure(), runs-on: x, steps: [{run: e}]}\n";
    struct wf_workflow *w = load(y);
    static const char *const res[][2] = {{"a", "failure"}};
    struct plan *p = simulate(w, res, 1);

    /* No status function: implicit success() && ..., and b was skipped. */
    ASSERT_EQ(p->jobs[find_job(p, "plain")].result, PLAN_SKIPPED);
    ASSERT_EQ(p->jobs[find_job(p, "always")].result, PLAN_SUCCESS);
    /* failure() looks at the transitive closure: a failed, two levels up. */
    ASSERT_EQ(p->jobs[find_job(p, "transitive")].result, PLAN_SUCCESS);
    plan_free(p);
    wf_free(w);
}

TEST(cancelled_run_skips_unstarted_jobs)
{
    struct wf_workflow *w = load(
        "on: push\njobs:\n"
        "  a: {runs-on: x, steps: [{run: echo}]}\n"
        "  b: {needs: a, runs-on: x, steps: [{run: echo}]}\n"
        "  c: {needs: a, if: cancelled(), runs-on: x, steps: [{run: echo}]}\n");
    struct plan *p = NULL;
    struct err e = {0};
    bool run;

    ASSERT_OK(plan_new(w, NULL, &p, &e));
    ASSERT_OK(plan_job_start(p, 0, &run, &e));
    ASSERT(run);
    p->cancelled = true;
    plan_run_finish(p, 0, 0, PLAN_CANCELLED);
    ASSERT_EQ(p->jobs[0].result, PLAN_CANCELLED);
    ASSERT_OK(plan_job_start(p, 1, &run, &e));
    ASSERT(!run);
    ASSERT_EQ(p->jobs[1].result, PLAN_SKIPPED);
    ASSERT_OK(plan_job_start(p, 2, &run, &e));
    ASSERT(run);
    plan_free(p);
    wf_free(w);
}

TEST(outputs_flow_into_needs_and_deferred_matrix)
{
    struct wf_workflow *w = load(
        "on: push\njobs:\n"
        "  gen:\n"
        "    runs-on: x\n"
        "    outputs:\n"
        "      m: ${{ steps.s.outputs.m }}\n"
        "      fixed: hello-${{ github.job }}\n"
        "    steps: [{id: s, run: echo}]\n"
        "  use:\n"
        "    needs: gen\n"
        "    runs-on: ${{ matrix.os }}\n"
        "    strategy:\n"
        "      matrix: ${{ fromJSON(needs.gen.outputs.m) }}\n"
        "    steps: [{run: echo}]\n");
    struct plan *p = NULL;
    struct err e = {0};
    bool run;
    json_t *steps = json_loads("{\"s\": {\"outputs\": {\"m\": \"{\\\"os\\\": [\\\"l1\\\", \\\"l2\\\"]}\"},"
                               " \"outcome\": \"success\", \"conclusion\": \"success\"}}",
                               0, NULL);

    ASSERT(steps != NULL);
    ASSERT_OK(plan_new(w, NULL, &p, &e));
    ASSERT(!p->jobs[1].expanded);
    ASSERT_OK(plan_job_start(p, 0, &run, &e));
    ASSERT(run);
    ASSERT_OK(plan_run_outputs(p, 0, 0, steps, NULL, &e));
    plan_run_finish(p, 0, 0, PLAN_SUCCESS);
    assert_json(p->jobs[0].runs[0].outputs,
                "{\"m\": \"{\\\"os\\\": [\\\"l1\\\", \\\"l2\\\"]}\", \"fixed\": \"hello-gen\"}");
    ASSERT(plan_job_ready(p, 1));
    ASSERT_OK(plan_job_start(p, 1, &run, &e));
    ASSERT(run);
    ASSERT_EQ(p->jobs[1].n_runs, 2);
    ASSERT_STR_EQ(p->jobs[1].runs[0].name, "use (l1)");
    assert_json(p->jobs[1].runs[1].runs_on, "[\"l2\"]");

    json_t *ctx = NULL;
    ASSERT_OK(plan_run_contexts(p, 1, 0, &ctx, &e));
    ASSERT_STR_EQ(json_string_value(json_object_get(
                      json_object_get(json_object_get(ctx, "needs"), "gen"), "result")),
                  "success");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(ctx, "matrix"), "os")), "l1");
    json_decref(ctx);
    json_decref(steps);
    plan_free(p);
    wf_free(w);
}

TEST(run_names_runs_on_and_strategy)
{
    struct wf_workflow *w = load(
        "on: push\n"
        "env: {WF: w}\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: [self-hosted, '${{ matrix.os }}']\n"
        "    env: {J: '${{ env.WF }}-${{ matrix.v }}'}\n"
        "    strategy:\n"
        "      fail-fast: false\n"
        "      max-parallel: 2\n"
        "      matrix: {v: [4, 6], os: [l]}\n"
        "    steps: [{run: echo}]\n"
        "  named:\n"
        "    name: 'Test on ${{ matrix.os }}'\n"
        "    runs-on: {group: g, labels: [a, b]}\n"
        "    strategy: {matrix: {os: [x, y]}}\n"
        "    steps: [{run: echo}]\n"
        "  single:\n"
        "    runs-on: one\n"
        "    strategy: {matrix: {os: [x]}}\n"
        "    steps: [{run: echo}]\n");
    struct plan *p = NULL;
    struct err e = {0};
    json_t *ctx = NULL;

    ASSERT_OK(plan_new(w, NULL, &p, &e));
    const struct plan_job *b = &p->jobs[find_job(p, "build")];
    ASSERT_EQ(b->n_runs, 2);
    ASSERT_STR_EQ(b->runs[0].name, "build (l, 4)");
    ASSERT_STR_EQ(b->runs[1].name, "build (l, 6)");
    assert_json(b->runs[0].runs_on, "[\"self-hosted\", \"l\"]");
    ASSERT(!b->fail_fast);
    ASSERT_EQ(b->max_parallel, 2);
    assert_json(b->runs[1].strategy,
                "{\"fail-fast\": false, \"max-parallel\": 2, \"job-index\": 1, \"job-total\": 2}");
    ASSERT_OK(plan_run_contexts(p, (size_t)find_job(p, "build"), 1, &ctx, &e));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(ctx, "env"), "J")), "w-6");
    json_decref(ctx);

    const struct plan_job *n = &p->jobs[find_job(p, "named")];
    ASSERT_STR_EQ(n->runs[0].name, "Test on x");
    ASSERT_STR_EQ(n->runs[1].name, "Test on y");
    assert_json(n->runs[0].runs_on, "[\"a\", \"b\"]");
    /* One combination: no suffix. */
    ASSERT_STR_EQ(p->jobs[find_job(p, "single")].runs[0].name, "single");
    plan_free(p);
    wf_free(w);
}

TEST(matrix_filter_keeps_matching_runs)
{
    struct wf_workflow *w = load("on: push\njobs:\n  t:\n    runs-on: x\n"
                                 "    strategy: {matrix: {v: [1, 2, 3]}}\n"
                                 "    steps: [{run: echo}]\n");
    json_t *filter = json_loads("{\"v\": [\"2\", \"3\"]}", 0, NULL);
    struct plan_opts o = {.matrix_filter = filter};
    struct plan *p = NULL;
    struct err e = {0};

    ASSERT_OK(plan_new(w, &o, &p, &e));
    ASSERT_EQ(p->jobs[0].n_runs, 2);
    assert_json(p->jobs[0].runs[0].matrix, "{\"v\": 2}");
    plan_free(p);
    json_decref(filter);
    wf_free(w);
}

TEST(bad_matrix_reports_position)
{
    struct wf_workflow *w = load("on: push\njobs:\n  t:\n    runs-on: x\n"
                                 "    strategy:\n      matrix:\n        v: [1]\n"
                                 "        exclude: [{w: 1}]\n"
                                 "    steps: [{run: echo}]\n");
    struct plan *p = NULL;
    struct err e = {0};

    ASSERT_EQ(plan_new(w, NULL, &p, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "test.yml:7:9: matrix exclude key \"w\" does not match any key "
                         "within the matrix");
    wf_free(w);
}

TEST(github_context_from_event)
{
    json_t *ev = json_loads("{\"ref\": \"refs/tags/v1.2\", \"after\": \"abc\"}", 0, NULL);
    struct ctx_github_opts o = {.event_name = "push", .event = ev, .repository = "o/r"};
    json_t *g = ctx_github_new(NULL, &o);

    ASSERT_STR_EQ(json_string_value(json_object_get(g, "ref")), "refs/tags/v1.2");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "ref_type")), "tag");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "ref_name")), "v1.2");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "sha")), "abc");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "repository_owner")), "o");
    json_decref(g);
    json_decref(ev);

    ev = json_loads("{\"number\": 7, \"pull_request\": {\"base\": {\"ref\": \"main\"},"
                    " \"head\": {\"ref\": \"topic\"}}}", 0, NULL);
    o.event_name = "pull_request";
    o.event = ev;
    g = ctx_github_new(NULL, &o);
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "ref")), "refs/pull/7/merge");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "ref_name")), "7/merge");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "base_ref")), "main");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "head_ref")), "topic");
    json_decref(g);
    json_decref(ev);

    g = ctx_github_new(NULL, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "ref")), "refs/heads/master");
    ASSERT_STR_EQ(json_string_value(json_object_get(g, "api_url")), "https://api.github.com");
    json_decref(g);
}

TEST(inputs_context_from_dispatch)
{
    struct wf_workflow *w = load(
        "on:\n  workflow_dispatch:\n    inputs:\n"
        "      debug: {type: boolean, default: true}\n"
        "      level: {default: warn}\n"
        "      flag: {type: boolean}\n"
        "jobs:\n  a: {runs-on: x, steps: [{run: echo}]}\n");
    json_t *ev = json_loads("{\"inputs\": {\"flag\": \"true\", \"level\": \"info\"}}", 0, NULL);
    json_t *in = ctx_inputs_new(w, "workflow_dispatch", ev);

    ASSERT(json_is_true(json_object_get(in, "debug")));
    ASSERT(json_is_true(json_object_get(in, "flag")));
    ASSERT_STR_EQ(json_string_value(json_object_get(in, "level")), "info");
    json_decref(in);
    in = ctx_inputs_new(w, "push", ev);
    ASSERT_EQ(json_object_size(in), 0);
    json_decref(in);
    json_decref(ev);
    wf_free(w);
}

/* Gitea resolves needs itself (Task.needs): they join the needs context and the job's
 * success()/failure(). */
TEST(server_resolved_needs)
{
    static const char *yaml = "on: push\n"
                              "jobs:\n"
                              "  deploy:\n"
                              "    runs-on: x\n"
                              "    if: success()\n"
                              "    steps:\n"
                              "      - run: echo ${{ needs.build.outputs.v }}\n"
                              "  notify:\n"
                              "    runs-on: x\n"
                              "    if: failure()\n"
                              "    steps:\n"
                              "      - run: echo\n";
    struct wf_workflow *w = load(yaml);
    struct err e = {0};
    bool run = true;

    for (int failed = 0; failed < 2; failed++) {
        json_t *needs = json_pack("{s:{s:s, s:{s:s}}}", "build", "result",
                                  failed ? "failure" : "success", "outputs", "v", "7");
        struct plan_opts o = {.ext_needs = needs};
        struct plan *p = NULL;
        json_t *ctx = NULL;

        ASSERT_OK(plan_new(w, &o, &p, &e));
        json_decref(needs);
        ASSERT_OK(plan_job_start(p, 0, &run, &e));
        ASSERT_EQ(run, !failed); /* deploy: success() */
        ASSERT_OK(plan_job_start(p, 1, &run, &e));
        ASSERT_EQ(run, failed); /* notify: failure() */
        ASSERT_OK(plan_run_contexts(p, 0, 0, &ctx, &e));
        ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(json_object_get(
                          json_object_get(ctx, "needs"), "build"), "outputs"), "v")),
                      "7");
        json_decref(ctx);
        plan_free(p);
    }
    wf_free(w);
}

/* The printed and JSON plans are masked with the secrets the plan was given (a run name or a
 * runs-on label can be built from one), and control characters in names are escaped. */
TEST(print_masks_secrets_and_escapes)
{
    struct wf_workflow *w = load("on: push\n"
                                 "jobs:\n"
                                 "  a:\n"
                                 "    name: \"n ${{ secrets.S }} \\e[2J\\a\\r!\"\n"
                                 "    runs-on: [x, \"l-${{ secrets.S }}\"]\n"
                                 "    steps: [{run: echo}]\n");
    json_t *secrets = json_pack("{s:s}", "S", "hunter2");
    struct plan_opts o = {.secrets = secrets};
    struct plan *p = NULL;
    struct err e = {0};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    ASSERT_OK(plan_new(w, &o, &p, &e));
    plan_print(p, f);
    fclose(f);
    ASSERT(strstr(text, "hunter2") == NULL);
    ASSERT_STR_CONTAINS(text, "run n *** \\x1b[2J\\x07\\x0d!  runs-on: x, l-***\n");
    ASSERT(strchr(text, '\033') == NULL && strchr(text, '\r') == NULL);
    json_t *j = plan_to_json(p);
    char *dump = json_dumps(j, JSON_COMPACT);
    ASSERT(strstr(dump, "hunter2") == NULL);
    ASSERT_STR_CONTAINS(dump, "\"runs-on\":[\"x\",\"l-***\"]");
    ASSERT_STR_CONTAINS(dump, "\"name\":\"n *** ");
    free(dump);
    json_decref(j);
    free(text);
    plan_free(p);
    json_decref(secrets);
    wf_free(w);
}
