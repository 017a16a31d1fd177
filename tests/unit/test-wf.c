/* test-wf.c: the workflow model and validator. Covers: every model field read from a full
 * workflow (tests/data/wf/full.yml) with positions; `on` as string, list and mapping; default
 * name from the file name; generated step ids ("0", "1", ...); step kinds; null and absent
 * values; wf_load (missing file, too large, directory); golden diagnostics: every
 * tests/data/wf-bad/NAME.yml is rejected with exactly the lines of NAME.err (a line ending in
 * '*' matches by prefix, for wording owned by the expression module); hostile inputs do not
 * crash; at most 1000 messages; wf_job_find. */
#include "harness.h"

#include "runner/xalloc.h"
#include "wf.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

/* Parses src as NAME or fails the test, printing the diagnostics. */
static struct wf_workflow *
parse_ok(const char *name, const char *src)
{
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};
    struct err e = {0};

    if (wf_parse(name, src, strlen(src), &w, &d, &e) < 0) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "  %s\n", d.msgs[i]);
        test_fail(__FILE__, __LINE__, "wf_parse failed: %s", e.msg);
    }
    ASSERT(d.n == 0);
    return w;
}

/* Parses src expecting rejection; returns the first message (static buffer). */
static const char *
parse_bad(const char *src)
{
    static struct err e;
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};

    memset(&e, 0, sizeof e);
    ASSERT_EQ(wf_parse("t.yml", src, strlen(src), &w, &d, &e), ERR_INVALID);
    ASSERT(w == NULL);
    ASSERT(d.n > 0);
    ASSERT(strncmp(d.msgs[0], e.msg, strlen(e.msg)) == 0); /* e.msg may be cut */
    wf_diag_free(&d);
    return e.msg;
}

/* Returns a node's scalar text or "". */
static const char *
sv(const struct ynode *n)
{
    return n && n->kind == YNODE_SCALAR ? n->str : "";
}

TEST(full_workflow)
{
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};
    struct err e = {0};

    if (wf_load(RUNNERD_SOURCE_DIR "/tests/data/wf/full.yml", &w, &d, &e) < 0) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "  %s\n", d.msgs[i]);
        test_fail(__FILE__, __LINE__, "wf_load: %s", e.msg);
    }
    ASSERT_STR_CONTAINS(w->file, "tests/data/wf/full.yml");
    ASSERT_STR_EQ(w->name.v, "Full");
    ASSERT_EQ(w->name.pos.line, 1);
    ASSERT_EQ(w->name.pos.col, 7);
    ASSERT_STR_EQ(w->run_name.v, "Deploy by ${{ github.actor }}");
    ASSERT_EQ(w->n_events, 4);
    ASSERT_STR_EQ(w->events[0].name, "push");
    ASSERT_EQ(w->events[0].pos.line, 5);
    ASSERT_EQ(w->events[0].config->kind, YNODE_MAP);
    ASSERT_EQ(ynode_get(w->events[0].config, "branches")->n, 2);
    ASSERT_STR_EQ(w->events[1].name, "pull_request");
    ASSERT_STR_EQ(w->events[2].name, "workflow_dispatch");
    ASSERT_STR_EQ(w->events[3].name, "schedule");
    ASSERT_EQ(w->events[3].config->kind, YNODE_SEQ);
    ASSERT_EQ(w->on->kind, YNODE_MAP);
    ASSERT_STR_EQ(sv(ynode_get(w->env, "GLOBAL")), "1");
    ASSERT_STR_EQ(sv(ynode_get(w->env, "FROM_EXPR")), "${{ github.ref }}");
    ASSERT_STR_EQ(w->defaults_shell.v, "bash");
    ASSERT_STR_EQ(w->defaults_working_directory.v, "src");
    ASSERT_STR_EQ(sv(w->permissions), "read-all");
    ASSERT_STR_EQ(sv(ynode_get(w->concurrency, "group")), "ci-${{ github.ref }}");
    ASSERT(w->root != NULL);
    ASSERT_EQ(w->n_jobs, 3);

    const struct wf_job *b = &w->jobs[0];
    ASSERT_STR_EQ(b->id, "build");
    ASSERT_EQ(b->pos.line, 30);
    ASSERT_EQ(b->pos.col, 3);
    ASSERT_STR_EQ(b->name.v, "Build ${{ matrix.os }}");
    ASSERT_EQ(b->runs_on->kind, YNODE_SEQ);
    ASSERT_STR_EQ(sv(b->runs_on->items[1]), "linux");
    ASSERT_STR_EQ(b->if_.v, "github.event_name == 'push'");
    ASSERT_EQ(b->if_.pos.line, 33);
    ASSERT_EQ(b->n_needs, 0);
    ASSERT_STR_EQ(sv(ynode_get(b->env, "JOB")), "yes");
    ASSERT_STR_EQ(b->defaults_shell.v, "sh");
    ASSERT_STR_EQ(b->defaults_working_directory.v, "${{ matrix.os }}");
    ASSERT_STR_EQ(sv(ynode_get(b->container, "image")), "node:20");
    ASSERT_EQ(ynode_get(b->container, "ports")->n, 2);
    ASSERT_STR_EQ(sv(ynode_get(ynode_get(b->container, "credentials"), "username")),
                  "${{ github.actor }}");
    ASSERT_STR_EQ(sv(ynode_get(ynode_get(b->services, "db"), "image")), "postgres:16");
    ASSERT_STR_EQ(sv(ynode_get(b->outputs, "sha")), "${{ steps.meta.outputs.sha }}");
    ASSERT_STR_EQ(sv(b->timeout_minutes), "30");
    ASSERT_STR_EQ(sv(b->continue_on_error), "${{ matrix.experimental }}");
    ASSERT_EQ(b->strategy->kind, YNODE_MAP);
    ASSERT_EQ(b->matrix->kind, YNODE_MAP);
    ASSERT_EQ(ynode_get(b->matrix, "os")->n, 2);
    ASSERT_EQ(ynode_get(b->matrix, "include")->n, 1);
    ASSERT_STR_EQ(sv(b->fail_fast), "false");
    ASSERT_STR_EQ(sv(b->max_parallel), "2");
    ASSERT_STR_EQ(sv(ynode_get(b->environment, "name")), "prod");
    ASSERT_STR_EQ(sv(ynode_get(b->permissions, "contents")), "read");
    ASSERT_STR_EQ(sv(b->concurrency), "build-${{ github.ref }}");
    ASSERT(b->uses.v == NULL);

    ASSERT_EQ(b->n_steps, 5);
    const struct wf_step *s = b->steps;
    ASSERT_EQ(s[0].kind, WF_STEP_USES);
    ASSERT_STR_EQ(s[0].uses.v, "actions/checkout@v4");
    ASSERT_STR_EQ(s[0].eff_id, "0");
    ASSERT(s[0].id.v == NULL);
    ASSERT_STR_EQ(sv(ynode_get(s[0].with, "fetch-depth")), "0");
    ASSERT_EQ(s[0].pos.line, 78);
    ASSERT_EQ(s[0].pos.col, 9);
    ASSERT_EQ(s[1].kind, WF_STEP_RUN);
    ASSERT_EQ(s[1].index, 1);
    ASSERT_STR_EQ(s[1].id.v, "meta");
    ASSERT_STR_EQ(s[1].eff_id, "meta");
    ASSERT_STR_EQ(s[1].name.v, "Meta");
    ASSERT_STR_EQ(s[1].run.v, "echo \"sha=${{ github.sha }}\" >> \"$GITHUB_OUTPUT\"\n");
    ASSERT_EQ(s[1].run.pos.line, 83);
    ASSERT_STR_EQ(s[1].shell.v, "bash");
    ASSERT_STR_EQ(s[1].working_directory.v, "./sub");
    ASSERT_STR_EQ(sv(ynode_get(s[1].env, "STEP")), "1");
    ASSERT_STR_EQ(sv(s[1].continue_on_error), "true");
    ASSERT_STR_EQ(sv(s[1].timeout_minutes), "5");
    ASSERT_STR_EQ(s[1].if_.v, "${{ success() }}");
    ASSERT_EQ(s[2].kind, WF_STEP_USES_LOCAL);
    ASSERT_STR_EQ(s[2].eff_id, "2");
    ASSERT_EQ(s[3].kind, WF_STEP_USES_DOCKER);
    ASSERT_STR_EQ(sv(ynode_get(s[3].with, "args")), "echo hi");
    ASSERT_EQ(s[4].kind, WF_STEP_RUN);
    ASSERT_STR_EQ(s[4].eff_id, "4");
    ASSERT(s[4].with == NULL && s[4].env == NULL && s[4].if_.v == NULL);

    const struct wf_job *t = wf_job_find(w, "test");
    ASSERT(t == &w->jobs[1]);
    ASSERT_EQ(t->n_needs, 1);
    ASSERT_STR_EQ(t->needs[0].id, "build");
    ASSERT_EQ(t->needs[0].pos.line, 98);
    ASSERT_EQ(t->runs_on->kind, YNODE_MAP);
    ASSERT_STR_EQ(sv(ynode_get(t->runs_on, "group")), "linux-group");
    ASSERT(t->strategy == NULL && t->matrix == NULL && t->container == NULL);

    const struct wf_job *dp = wf_job_find(w, "deploy");
    ASSERT_EQ(dp->n_needs, 2);
    ASSERT_STR_EQ(dp->needs[1].id, "test");
    ASSERT_STR_EQ(sv(dp->container), "alpine:3");
    ASSERT(wf_job_find(w, "nope") == NULL);
    ASSERT(wf_job_find(NULL, "x") == NULL);
    wf_free(w);
    wf_free(NULL);
    wf_diag_free(&d);
}

TEST(on_forms_and_defaults)
{
    struct wf_workflow *w = parse_ok("dir/ci.yml", "on: push\njobs:\n  a:\n    runs-on: x\n"
                                                   "    steps:\n      - run: echo\n");

    ASSERT_STR_EQ(w->name.v, "ci.yml");
    ASSERT_EQ(w->n_events, 1);
    ASSERT_STR_EQ(w->events[0].name, "push");
    ASSERT(w->events[0].config == NULL);
    ASSERT(w->env == NULL);
    ASSERT_EQ(w->jobs[0].n_steps, 1);
    wf_free(w);

    w = parse_ok("ci.yml", "on: [push, workflow_dispatch]\njobs:\n  a:\n    runs-on: x\n"
                           "    steps: []\n");
    ASSERT_EQ(w->n_events, 2);
    ASSERT_STR_EQ(w->events[1].name, "workflow_dispatch");
    ASSERT_EQ(w->jobs[0].n_steps, 0);
    wf_free(w);

    /* YAML 1.1 booleans stay strings: `on` is a key, not true. */
    w = parse_ok("ci.yml", "on:\n  push:\n  workflow_dispatch: {}\n  gitea_only_event:\n"
                           "    anything: [goes]\njobs:\n  a:\n    runs-on: x\n    steps: []\n");
    ASSERT_EQ(w->n_events, 3);
    ASSERT(w->events[0].config == NULL);
    ASSERT(w->events[1].config != NULL);
    ASSERT_STR_EQ(w->events[2].name, "gitea_only_event");
    wf_free(w);

    /* workflow_call inputs without `type:` are accepted (act and Gitea read them as strings);
     * a wrong type is still refused. */
    w = parse_ok("ci.yml", "on:\n  workflow_call:\n    inputs:\n      name:\n"
                           "        required: false\n        default: x\n      bare: {}\n"
                           "jobs:\n  a:\n    runs-on: x\n    steps: []\n");
    ASSERT_EQ(w->n_events, 1);
    wf_free(w);
    ASSERT_STR_EQ(parse_bad("on:\n  workflow_call:\n    inputs:\n      n:\n        type: date\n"
                            "jobs:\n  a:\n    runs-on: x\n    steps: []\n"),
                  "t.yml:5:15: on.workflow_call.inputs.n.type: unexpected value 'date' (expected "
                  "one of: boolean, number, string)");
    /* A matrix key may be an expression (evaluated when the matrix is expanded); a broken
     * one is reported at its ${{. */
    w = parse_ok("ci.yml", "on: push\njobs:\n  p:\n    runs-on: x\n    steps: []\n  a:\n"
                           "    needs: p\n    runs-on: x\n    strategy:\n      matrix:\n"
                           "        ${{ needs.p.outputs.k }}: [1, 2]\n        os: [l]\n"
                           "    steps: []\n");
    wf_free(w);
    ASSERT_STR_CONTAINS(parse_bad("on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n"
                                  "      matrix:\n        ${{ needs. }}: [1]\n    steps: []\n"),
                        "t.yml:7:9: jobs.a.strategy.matrix: invalid expression: ");
    ASSERT_STR_EQ(parse_bad("on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n"
                            "      matrix:\n        ${{ github.sha }}: 1\n    steps: []\n"),
                  "t.yml:7:28: jobs.a.strategy.matrix.${{ github.sha }}: expected a sequence, "
                  "got a string");
    /* A workflow_dispatch input with no settings at all is a string input (GitHub). */
    w = parse_ok("ci.yml", "on:\n  workflow_dispatch:\n    inputs:\n      plain:\n"
                           "      level:\n        type: choice\n        options: [a, b]\n"
                           "jobs:\n  a:\n    runs-on: x\n    steps: []\n");
    wf_free(w);
    /* Permissions: the empty mapping and every known scope and level are fine. */
    w = parse_ok("ci.yml", "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: x\n"
                           "    permissions:\n      contents: read\n      id-token: write\n"
                           "      pull-requests: none\n      models: read\n    steps: []\n");
    wf_free(w);

    /* No `on` is tolerated (act: the workflow matches no event). */
    w = parse_ok("ci.yml", "jobs:\n  a:\n    runs-on: x\n    steps: []\n");
    ASSERT_EQ(w->n_events, 0);
    ASSERT(w->on == NULL);
    wf_free(w);
}

TEST(values_and_expressions)
{
    struct wf_workflow *w = parse_ok(
        "t.yml", "on: push\n"
                 "env: ${{ fromJSON('{}') }}\n"
                 "jobs:\n"
                 "  a:\n"
                 "    runs-on: ${{ matrix.os }}\n"
                 "    if: ${{ always() }}\n"
                 "    strategy:\n"
                 "      matrix: ${{ fromJSON(needs.x.outputs.m) }}\n"
                 "    env:\n"
                 "      ${{ insert }}: ${{ fromJSON('{}') }}\n"
                 "    steps:\n"
                 "      - run: echo ${{ 'a' }} ${{ github.sha }}\n"
                 "        if: success() && github.ref == 'refs/heads/main'\n"
                 "        name:\n"
                 "        timeout-minutes: ${{ 3 }}\n"
                 "        continue-on-error: ${{ true }}\n"
                 "        env: ${{ fromJSON('{}') }}\n"
                 "      - if: true\n"
                 "        uses: ${{ vars.ACTION }}\n"
                 "  b:\n"
                 "    runs-on: x\n"
                 "    if: \"\"\n"
                 "    steps:\n"
                 "      - run: x\n"
                 "        if: null\n");

    ASSERT_EQ(w->env->kind, YNODE_SCALAR);
    ASSERT_EQ(w->jobs[0].matrix->kind, YNODE_SCALAR);
    ASSERT(w->jobs[0].steps[0].name.v == NULL);
    ASSERT_EQ(w->jobs[0].steps[1].kind, WF_STEP_USES);
    ASSERT(w->jobs[1].if_.v == NULL || w->jobs[1].if_.v[0] == '\0');
    ASSERT(w->jobs[1].steps[0].if_.v == NULL);
    wf_free(w);
}

TEST(hostile_inputs)
{
    /* None of these may crash; all are rejected. */
    static const char *const bad[] = {
        "",
        "\n\n# nothing\n",
        "null\n",
        "just a string\n",
        "[1, 2]\n",
        "? [a, b]\n: c\n",
        "on: push\njobs:\n  ? [a]\n  : {}\n",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - ? {x: y}\n        : z\n",
        "on: push\njobs: [a]\n",
        "on: push\njobs:\n  a: 5\n",
        "on: {push: {branches: {x: y}}}\njobs: {a: {runs-on: x, steps: [5, [1], null]}}\n",
        "on: push\njobs:\n  a:\n    runs-on: x\n    needs: [a, a]\n    steps: []\n",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: \"${{\"\n",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: \"a\\0b ${{ x }}\"\n",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: \"\\x24{{ 1 + }}\"\n",
        "--- a\n--- b\n",
        "\xef\xbb\xbfon: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: \"${{ ( }}\"}]\n",
        "\xff\xfe\x00\x00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct wf_workflow *w = NULL;
        struct wf_diag d = {0};
        struct err e = {0};
        size_t len = strlen(bad[i]);
        if (i == sizeof bad / sizeof bad[0] - 1)
            len = 4;
        int rc = wf_parse("t.yml", bad[i], len, &w, &d, &e);
        if (rc != ERR_INVALID)
            test_fail(__FILE__, __LINE__, "case %zu: rc %d", i, rc);
        ASSERT(w == NULL);
        ASSERT(d.n > 0);
        ASSERT_STR_CONTAINS(e.msg, "t.yml:");
        wf_diag_free(&d);
    }
    /* Without a diag, e still gets the first problem. */
    struct wf_workflow *w = NULL;
    struct err e = {0};
    ASSERT_EQ(wf_parse("t.yml", "[]", 2, &w, NULL, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "t.yml:1:1: workflow: expected a mapping, got a sequence");
}

/* Container policy at load: what no label setting allows is refused with file:line:col;
 * flags the runner does not support are left to job start (GitHub's reader accepts them). */
TEST(container_policy_at_load)
{
#define JOB "on: push\njobs:\n  a:\n    runs-on: x\n    container:\n      image: i\n"
    ASSERT_STR_EQ(parse_bad(JOB "      options: --cpus 1 --entrypoint /bin/sh\n    steps: [{run: a}]\n"),
                  "t.yml:7:16: jobs.a.container.options: option '--entrypoint' is not allowed in "
                  "a job container: the runner's agent is its entrypoint (use a step's run: "
                  "instead)");
    ASSERT_STR_CONTAINS(parse_bad(JOB "      options: --security-opt seccomp=unconfined\n"
                                  "    steps: [{run: a}]\n"),
                        "t.yml:7:16: jobs.a.container.options: option '--security-opt' is not allowed");
    ASSERT_STR_CONTAINS(parse_bad(JOB "      options: --privileged\n    steps: [{run: a}]\n"),
                        "t.yml:7:16: jobs.a.container.options: option '--privileged' is not allowed");
    ASSERT_STR_CONTAINS(parse_bad(JOB "      options: --pids-limit=-1\n    steps: [{run: a}]\n"),
                        "t.yml:7:16: jobs.a.container.options: --pids-limit: expected a positive");
    ASSERT_STR_CONTAINS(parse_bad(JOB "      options: --cap-add NOT_A_CAP\n    steps: [{run: a}]\n"),
                        "t.yml:7:16: jobs.a.container.options: --cap-add: 'NOT_A_CAP' is not a "
                        "capability name");
    ASSERT_STR_CONTAINS(parse_bad(JOB "      options: -v /etc:/x\n    steps: [{run: a}]\n"),
                        "t.yml:7:16: jobs.a.container.options: -v /etc:/x: host paths are not allowed");
    ASSERT_STR_CONTAINS(parse_bad(JOB "      volumes: [data:/d, '~/x:/y']\n    steps: [{run: a}]\n"),
                        "t.yml:7:26: jobs.a.container.volumes[1]: volume '~/x:/y': host paths");
    /* services may set an entrypoint (they have no agent); not a security option */
    ASSERT_STR_CONTAINS(parse_bad("on: push\njobs:\n  a:\n    runs-on: x\n    services:\n"
                                  "      db:\n        image: i\n        options: --entrypoint /x "
                                  "--security-opt=no-new-privileges:false\n    steps: [{run: a}]\n"),
                        "t.yml:8:18: jobs.a.services.db.options: option '--security-opt'");
    struct wf_workflow *w = parse_ok("t.yml", JOB "      options: --cap-add SYS_ADMIN --blkio-weight 10 "
                                     "-v cache:/c -v /anon --pids-limit 50\n"
                                     "    steps: [{run: a}]\n");
    /* which capabilities: the runner's labels say (wf_check_caps) */
    struct wf_diag d = {0};
    struct err e = {0};
    char *none[] = {NULL}, *admin[] = {"NET_ADMIN", "SYS_ADMIN", NULL}, *all[] = {"ALL", NULL};
    ASSERT_OK(wf_check_caps(w, admin, &d, &e));
    ASSERT_OK(wf_check_caps(w, all, &d, &e));
    ASSERT_EQ(wf_check_caps(w, none, &d, &e), ERR_INVALID);
    ASSERT_EQ(d.n, 1);
    ASSERT_STR_CONTAINS(d.msgs[0], "t.yml:7:16: jobs.a.container.options: --cap-add SYS_ADMIN is "
                        "not allowed");
    wf_diag_free(&d);
    wf_free(w);
    w = parse_ok("t.yml", JOB "      options: --entrypoint=${{ matrix.e }}\n    steps: [{run: a}]\n");
    wf_free(w);
#undef JOB
}

/* timeout-minutes: a literal is a positive number of at most 30 days, checked at load. */
TEST(timeout_minutes_at_load)
{
#define TJOB "on: push\njobs:\n  a:\n    runs-on: x\n    timeout-minutes: %s\n" \
             "    steps:\n      - run: a\n        timeout-minutes: %s\n"
    char src[512];
    double d = 0;

    snprintf(src, sizeof src, TJOB, "-1", "5");
    ASSERT_STR_EQ(parse_bad(src), "t.yml:5:22: jobs.a.timeout-minutes: expected a positive number "
                  "of minutes (0 and negative values are not limits), got '-1'");
    snprintf(src, sizeof src, TJOB, "10", "1e9");
    ASSERT_STR_EQ(parse_bad(src), "t.yml:8:26: jobs.a.steps[0].timeout-minutes: at most 43200 "
                  "minutes (30 days), got '1e9'");
    snprintf(src, sizeof src, TJOB, "0", "1");
    ASSERT_STR_CONTAINS(parse_bad(src), "t.yml:5:22: jobs.a.timeout-minutes: expected a positive");
    snprintf(src, sizeof src, TJOB, "0.5", "${{ 'abc' }}");
    wf_free(parse_ok("t.yml", src));
    ASSERT(wf_minutes_problem("abc", &d) != NULL);
    ASSERT(wf_minutes_problem("nan", &d) != NULL);
    ASSERT(wf_minutes_problem("inf", &d) != NULL);
    ASSERT(wf_minutes_problem("", &d) != NULL);
    ASSERT(wf_minutes_problem(NULL, &d) != NULL);
    ASSERT(wf_minutes_problem("43201", &d) != NULL);
    ASSERT(wf_minutes_problem("43200", &d) == NULL && d == 43200);
    ASSERT(wf_minutes_problem("0.02", &d) == NULL && d > 0.019 && d < 0.021);
#undef TJOB
}

TEST(messages)
{
    ASSERT_STR_EQ(parse_bad(""), "t.yml:1:1: the workflow file is empty");
    ASSERT_STR_EQ(parse_bad("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n"
                            "      - run: a\n      - run: b\n      - name: c\n"),
                  "t.yml:8:9: jobs.a.steps[2]: a step needs either 'run' or 'uses'");
    ASSERT_STR_EQ(parse_bad("on: push\njobs:\n  a:\n    runs-on: x\n    needs: b\n    steps: []\n"
                            "  b:\n    runs-on: x\n    needs: [a]\n    steps: []\n"),
                  "t.yml:5:12: jobs.a.needs: job 'a' -> 'b' -> 'a' forms a cycle");
    /* The ${{ of a bad expression, even after other text on a continuation line. */
    const char *m = parse_bad("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n"
                              "      - run: >\n          one\n          two ${{ ] }}\n");
    ASSERT_STR_CONTAINS(m, "t.yml:8:15: jobs.a.steps[0].run: invalid expression: ");
    /* Single-quoted with an escaped quote before the expression. */
    m = parse_bad("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n"
                  "      - run: 'it''s ${{ ] }}'\n");
    ASSERT_STR_CONTAINS(m, "t.yml:6:21: jobs.a.steps[0].run: invalid expression: ");
}

TEST(load_errors)
{
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};
    struct err e = {0};

    ASSERT(wf_load("does-not-exist.yml", &w, &d, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "does-not-exist.yml: No such file");
    ASSERT(w == NULL);
    ASSERT(wf_load(".", &w, &d, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "not a regular file");

    /* Over the 4 MiB cap. */
    int fd = open("big.yml", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT(fd >= 0);
    ASSERT_OK(ftruncate(fd, (5 << 20)));
    close(fd);
    ASSERT_EQ(wf_load("big.yml", &w, &d, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "big.yml: the workflow file is too large");
    ASSERT_EQ(d.n, 0);

    /* wf_load names the file as given. */
    FILE *f = fopen("bad.yml", "w");
    ASSERT(f != NULL);
    fputs("on: push\n", f);
    fclose(f);
    ASSERT_EQ(wf_load("bad.yml", &w, &d, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "bad.yml:1:1: missing required key 'jobs'");
    ASSERT_EQ(d.n, 1);
    wf_diag_free(&d);
    ASSERT_EQ(d.n, 0);
}

/* Splits text into lines (a new array of new strings). */
static char **
split_lines(const char *text, size_t *n)
{
    char **lines = NULL;
    const char *p = text;

    *n = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        lines = xreallocarray(lines, *n + 1, sizeof *lines);
        lines[(*n)++] = xstrndup(p, len);
        p += len + (eol != NULL);
    }
    return lines;
}

/* True when msg matches a golden line (a trailing '*' matches any rest). */
static bool
golden_match(const char *msg, const char *want)
{
    size_t n = strlen(want);

    if (n > 0 && want[n - 1] == '*')
        return strncmp(msg, want, n - 1) == 0;
    return strcmp(msg, want) == 0;
}

/* Compares a name for qsort. */
static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(golden_errors)
{
    const char *dir = RUNNERD_SOURCE_DIR "/tests/data/wf-bad";
    DIR *dh = opendir(dir);
    char **names = NULL;
    size_t n = 0;
    int failures = 0;
    struct dirent *de;

    ASSERT(dh != NULL);
    while ((de = readdir(dh)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".yml") == 0) {
            names = xreallocarray(names, n + 1, sizeof *names);
            names[n++] = xstrdup(de->d_name);
        }
    }
    closedir(dh);
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n; i++) {
        char *yml = xasprintf("%s/%s", dir, names[i]);
        char *errp = xasprintf("%s/%.*s.err", dir, (int)strlen(names[i]) - 4, names[i]);
        size_t len = 0, nwant = 0;
        char *src = test_read_file(yml, &len);
        char *want_text = test_read_file(errp, NULL);
        struct wf_workflow *w = NULL;
        struct wf_diag d = {0};
        struct err e = {0};
        bool ok = src && want_text;

        if (ok) {
            char **want = split_lines(want_text, &nwant);
            int rc = wf_parse(names[i], src, len, &w, &d, &e);
            ok = rc == ERR_INVALID && w == NULL && d.n == nwant && nwant > 0 &&
                 strncmp(e.msg, d.msgs[0], strlen(e.msg)) == 0; /* e.msg may be cut */
            for (size_t k = 0; ok && k < nwant; k++)
                ok = golden_match(d.msgs[k], want[k]);
            if (!ok) {
                printf("GOLDEN MISMATCH %s (rc %d)\n  expected:\n", names[i], rc);
                for (size_t k = 0; k < nwant; k++)
                    printf("    %s\n", want[k]);
                printf("  got:\n");
                for (size_t k = 0; k < d.n; k++)
                    printf("    %s\n", d.msgs[k]);
            }
            for (size_t k = 0; k < nwant; k++)
                free(want[k]);
            free(want);
        } else {
            printf("GOLDEN MISSING %s: need both .yml and .err\n", names[i]);
        }
        failures += !ok;
        wf_diag_free(&d);
        wf_free(w);
        free(src);
        free(want_text);
        free(errp);
        free(yml);
        free(names[i]);
    }
    free(names);
    printf("golden: %zu cases, %d failed\n", n, failures);
    fflush(stdout);
    ASSERT(n >= 15);
    ASSERT_EQ(failures, 0);
}

TEST(too_many_problems)
{
    char *src = xstrdup("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n");
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};
    struct err e = {0};

    for (int i = 0; i < 1500; i++) {
        char *more = xasprintf("%s      - name: n%d\n", src, i);
        free(src);
        src = more;
    }
    ASSERT_EQ(wf_parse("t.yml", src, strlen(src), &w, &d, &e), ERR_INVALID);
    ASSERT_EQ(d.n, 1000);
    ASSERT_STR_EQ(d.msgs[0], "t.yml:6:9: jobs.a.steps[0]: a step needs either 'run' or 'uses'");
    ASSERT_STR_EQ(d.msgs[999], "t.yml: too many problems; 501 more not shown");
    wf_diag_free(&d);
    free(src);
}

TEST(aliases_in_workflow)
{
    struct wf_workflow *w = parse_ok("t.yml", "on: push\n"
                                              "jobs:\n"
                                              "  a:\n"
                                              "    runs-on: &os ubuntu-latest\n"
                                              "    steps: &steps\n"
                                              "      - id: hello\n"
                                              "        run: echo hi\n"
                                              "  b:\n"
                                              "    runs-on: *os\n"
                                              "    steps: *steps\n");

    ASSERT_STR_EQ(sv(w->jobs[1].runs_on), "ubuntu-latest");
    ASSERT_EQ(w->jobs[1].n_steps, 1);
    ASSERT_STR_EQ(w->jobs[1].steps[0].eff_id, "hello");
    ASSERT_STR_EQ(w->jobs[1].steps[0].run.v, "echo hi");
    /* Positions of aliased nodes are where the anchor's node was written. */
    ASSERT_EQ(w->jobs[1].steps[0].pos.line, 6);
    wf_free(w);
}

/* Every context GitHub allows at a location stays allowed there (the per-location check must not
 * refuse more than GitHub does), and a step's if may name secrets, as on Gitea. */
TEST(contexts_allowed_per_location)
{
    struct wf_workflow *w = parse_ok(
        "t.yml",
        "run-name: ${{ github.actor }} ${{ inputs.x }} ${{ vars.v }}\n"
        "on: push\n"
        "env:\n"
        "  T: ${{ secrets.t }} ${{ vars.v }} ${{ github.sha }}\n"
        "concurrency: ${{ github.ref }}-${{ vars.v }}\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-latest\n"
        "    outputs:\n"
        "      o: ${{ steps.s.outputs.o }}\n"
        "    steps: [{id: s, run: echo}]\n"
        "  b:\n"
        "    needs: a\n"
        "    if: ${{ failure() || needs.a.outputs.o == 'x' || always() }}\n"
        "    name: b ${{ matrix.os }} ${{ strategy.job-index }} ${{ needs.a.result }}"
        " ${{ secrets.n }}\n"
        "    runs-on: ${{ matrix.os }}\n"
        "    concurrency: ${{ needs.a.outputs.o }}-${{ matrix.os }}\n"
        "    timeout-minutes: ${{ fromJSON(needs.a.outputs.o) }}\n"
        "    strategy:\n"
        "      matrix:\n"
        "        os: ${{ fromJSON(needs.a.outputs.o) }}\n"
        "    env:\n"
        "      E: ${{ secrets.e }} ${{ matrix.os }}\n"
        "    defaults:\n"
        "      run:\n"
        "        working-directory: ${{ env.E }}\n"
        "    environment:\n"
        "      name: ${{ matrix.os }}\n"
        "      url: ${{ steps.s.outputs.url }} ${{ runner.os }}\n"
        "    container:\n"
        "      image: ${{ matrix.os }}\n"
        "      env:\n"
        "        C: ${{ secrets.c }} ${{ env.E }} ${{ runner.temp }}\n"
        "      credentials:\n"
        "        username: ${{ env.E }}\n"
        "        password: ${{ secrets.p }}\n"
        "    outputs:\n"
        "      r: ${{ steps.s.outputs.r }} ${{ job.status }} ${{ runner.os }} ${{ env.E }}\n"
        "    steps:\n"
        "      - id: s\n"
        "        name: ${{ secrets.n }} ${{ steps.x.outcome }} ${{ job.status }}\n"
        "        if: ${{ failure() && secrets.s != '' && hashFiles('a') != '' && env.E }}\n"
        "        run: echo ${{ hashFiles('**/x') }} ${{ runner.os }} ${{ inputs.i }}\n"
        "        env:\n"
        "          S: ${{ secrets.s }} ${{ needs.a.outputs.o }} ${{ strategy.fail-fast }}\n"
        "        timeout-minutes: ${{ fromJSON(env.T) }}\n"
        "        continue-on-error: ${{ steps.x.outcome == 'failure' }}\n");

    ASSERT_EQ(w->n_jobs, 2);
    wf_free(w);
}

/* The core schema's explicit tags stay accepted (GitHub's reader accepts them too). */
TEST(core_yaml_tags_accepted)
{
    struct wf_workflow *w = parse_ok("t.yml", "on: !!str push\n"
                                              "jobs: !!map\n"
                                              "  a:\n"
                                              "    runs-on: !!str 5\n"
                                              "    timeout-minutes: !!int 10\n"
                                              "    continue-on-error: !!bool true\n"
                                              "    env: {A: !!float -1.5e3, B: !!null ~, C: !!int 0x1F}\n"
                                              "    steps: !!seq\n"
                                              "      - run: echo hi\n");

    ASSERT_STR_EQ(sv(w->jobs[0].runs_on), "5");
    wf_free(w);
}

/* A no-break space after an expression (invisible in the web UI) is accepted, as GitHub does. */
TEST(unicode_space_in_expression_accepted)
{
    struct wf_workflow *w = parse_ok("t.yml", "on: push\n"
                                              "jobs:\n"
                                              "  a:\n"
                                              "    runs-on: linux\n"
                                              "    steps:\n"
                                              "      - uses: ./x\n"
                                              "        with:\n"
                                              "          token: ${{ secrets.API_TOKEN\xc2\xa0 }}\n"
                                              "      - run: echo ${{\xe2\x80\x83github.sha }}\n");

    ASSERT_EQ(w->jobs[0].n_steps, 2);
    wf_free(w);
}

/* A string with ${{ }} is one expression for GitHub, so it may not exceed the expression length
 * limit (21000); a longer script without expressions is plain text and stays accepted. */
TEST(template_length_limit)
{
    char *body = xmalloc(21100);
    memset(body, '#', 21099);
    body[21099] = '\0';
    char *bad = xasprintf("on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n"
                          "      - run: |\n          echo ${{ github.sha }}\n          %s\n",
                          body);
    char *plain = xasprintf("on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n"
                            "      - run: |\n          echo plain\n          %s\n",
                            body);
    char *near = xasprintf("on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n"
                           "      - run: |\n          echo ${{ github.sha }}\n          %s\n",
                           body + 1200);
    const char *msg = parse_bad(bad);

    ASSERT_STR_CONTAINS(msg, "t.yml:7:16: jobs.a.steps[0].run: invalid expression: Exceeded max "
                             "expression length 21000");
    wf_free(parse_ok("t.yml", plain));
    wf_free(parse_ok("t.yml", near));
    free(near);
    free(plain);
    free(bad);
    free(body);
}
