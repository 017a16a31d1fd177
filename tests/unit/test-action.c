/* test-action.c: `uses:` resolution and the action.yml model (doc/workflow-semantics.md §12.1,
 * §12.2, §12.5). Covers: docker://, ./path (also "./"), owner/repo[/path]@ref and
 * http(s)://host/... forms; the exact missing-ref error and other refusals (empty image, no ref,
 * empty owner or repo, credentials in a URL, '..' in the sub-path); default actions URL (unset,
 * bare host, trailing slashes), github_mirror (only in place of github.com), on_instance (host,
 * port, scheme, case, default port); cache_name. action.yml of each kind: node
 * (pre/post/pre-if/post-if, inputs with ${{ }} defaults kept verbatim, required forms), docker
 * (image, entrypoints, args with non-string scalars, env), composite (steps through the job-step
 * parser, eff_id, outputs with value); runs.using case-insensitive; errors with FILE:LINE:COL and
 * the uses string: bad using (act's message), missing runs/main/image/steps, composite step with
 * run and uses, bad step expression at its exact position, wrong types, YAML syntax, empty file;
 * unknown keys accepted. action_load: action.yml before action.yaml, action.yaml fallback,
 * Dockerfile synthesis, nothing there, unreadable action.yml. action_docker_tag. */
#include "harness.h"

#include "action.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* References                                                                                 */

/* Parses uses or fails the test. */
static struct action_ref
ref_ok(const char *uses, const struct action_sources *src)
{
    struct action_ref r;
    struct err e = {0};

    if (action_ref_parse(uses, src, &r, &e) < 0)
        test_fail(__FILE__, __LINE__, "action_ref_parse(%s): %s", uses, e.msg);
    return r;
}

/* Expects uses to be refused; returns the message (static buffer). */
static const char *
ref_bad(const char *uses, const struct action_sources *src)
{
    static struct err e;
    struct action_ref r;

    memset(&e, 0, sizeof e);
    ASSERT_EQ(action_ref_parse(uses, src, &r, &e), ERR_INVALID);
    ASSERT(r.uses == NULL && r.url == NULL && r.owner == NULL);
    return e.msg;
}

TEST(ref_docker_and_local)
{
    struct action_ref r = ref_ok("docker://alpine:3.20", NULL);

    ASSERT_EQ(r.kind, ACTION_REF_DOCKER);
    ASSERT_STR_EQ(r.uses, "docker://alpine:3.20");
    ASSERT_STR_EQ(r.image, "alpine:3.20");
    ASSERT(r.url == NULL && r.path == NULL && r.cache_name == NULL && !r.on_instance);
    action_ref_free(&r);
    ASSERT(r.uses == NULL);

    r = ref_ok("./.github/actions/build", NULL);
    ASSERT_EQ(r.kind, ACTION_REF_LOCAL);
    ASSERT_STR_EQ(r.path, "./.github/actions/build");
    ASSERT(r.url == NULL && r.owner == NULL && r.image == NULL);
    action_ref_free(&r);

    /* The workspace root itself: the common "uses: ./" of an action's own repository. */
    r = ref_ok("./", NULL);
    ASSERT_EQ(r.kind, ACTION_REF_LOCAL);
    ASSERT_STR_EQ(r.path, "./");
    action_ref_free(&r);

    ASSERT_STR_EQ(ref_bad("docker://", NULL), "uses 'docker://': expected an image after "
                                              "'docker://'");
    ASSERT_STR_CONTAINS(ref_bad("", NULL), "empty");
    action_ref_free(NULL);
}

TEST(ref_remote_default_github)
{
    struct action_ref r = ref_ok("actions/checkout@v4", NULL);

    ASSERT_EQ(r.kind, ACTION_REF_REMOTE);
    ASSERT_STR_EQ(r.owner, "actions");
    ASSERT_STR_EQ(r.repo, "checkout");
    ASSERT_STR_EQ(r.ref, "v4");
    ASSERT(r.path == NULL);
    ASSERT_STR_EQ(r.url, "https://github.com/actions/checkout");
    ASSERT(!r.on_instance);
    ASSERT_STR_EQ(r.cache_name, "actions-checkout@v4");
    action_ref_free(&r);

    /* Sub-paths, slashes trimmed; a ref may hold '/' and '@'. */
    r = ref_ok("octo/tools/lint/go@refs/heads/a@b", NULL);
    ASSERT_STR_EQ(r.owner, "octo");
    ASSERT_STR_EQ(r.repo, "tools");
    ASSERT_STR_EQ(r.path, "lint/go");
    ASSERT_STR_EQ(r.ref, "refs/heads/a@b");
    ASSERT_STR_EQ(r.url, "https://github.com/octo/tools");
    action_ref_free(&r);
    r = ref_ok("o/r/sub/@v1", NULL);
    ASSERT_STR_EQ(r.path, "sub");
    action_ref_free(&r);
    r = ref_ok("o/r/@v1", NULL);
    ASSERT(r.path == NULL);
    action_ref_free(&r);

    /* Empty default: github.com too. */
    struct action_sources src = {.default_actions_url = ""};
    r = ref_ok("o/r@v1", &src);
    ASSERT_STR_EQ(r.url, "https://github.com/o/r");
    action_ref_free(&r);
}

TEST(ref_missing_ref_and_refusals)
{
    ASSERT_STR_EQ(ref_bad("actions/checkout", NULL),
                  "Expected format {org}/{repo}[/path]@ref. Actual 'actions/checkout' Input "
                  "string was not in a correct format");
    ASSERT_STR_EQ(ref_bad("o/r@", NULL), "Expected format {org}/{repo}[/path]@ref. Actual "
                                         "'o/r@' Input string was not in a correct format");
    ASSERT_STR_CONTAINS(ref_bad("checkout@v4", NULL), "Actual 'checkout@v4'");
    ASSERT_STR_CONTAINS(ref_bad("o//r@v4", NULL), "Expected format");
    ASSERT_STR_CONTAINS(ref_bad("/r@v4", NULL), "Expected format");
    ASSERT_STR_CONTAINS(ref_bad("o@x/r@v4", NULL), "Expected format");
    ASSERT_STR_CONTAINS(ref_bad(".", NULL), "Actual '.'");
    ASSERT_STR_EQ(ref_bad("../x/y@v1", NULL),
                  "uses '../x/y@v1': '.' and '..' are not an owner or repository");
    ASSERT_STR_CONTAINS(ref_bad("o/.@v1", NULL), "are not an owner or repository");
    ASSERT_STR_CONTAINS(ref_bad("https://h/o/..@v1", NULL), "are not an owner or repository");
    ASSERT_STR_EQ(ref_bad("o/r/a/../../x@v1", NULL),
                  "uses 'o/r/a/../../x@v1': the action path must not contain '..'");
    ASSERT_STR_CONTAINS(ref_bad("o/r/..@v1", NULL), "must not contain '..'");
    ASSERT_STR_CONTAINS(ref_bad("o/r@v1\nx", NULL), "Expected format");
    ASSERT_STR_CONTAINS(ref_bad("https://host/o/r", NULL),
                        "Actual 'https://host/o/r' Input string");
    ASSERT_STR_CONTAINS(ref_bad("https://host", NULL), "Expected format");
    ASSERT_STR_CONTAINS(ref_bad("https:///o/r@v1", NULL), "Expected format");
    /* Credentials: refused, and not echoed (they may be an interpolated secret). */
    const char *m = ref_bad("https://user:s3cret@host/o/r@v1", NULL);
    ASSERT_STR_CONTAINS(m, "credentials");
    ASSERT(strstr(m, "s3cret") == NULL);
    /* A dotted name is not a '..' component. */
    struct action_ref r = ref_ok("o/r/a..b/..c@v1", NULL);
    ASSERT_STR_EQ(r.path, "a..b/..c");
    action_ref_free(&r);
}

TEST(ref_full_urls_and_instance)
{
    struct action_sources src = {.default_actions_url = "https://github.com",
                                 .instance_url = "https://gitea.example.com/"};
    struct action_ref r = ref_ok("https://gitea.example.com/o/r/sub@v1", &src);

    ASSERT_EQ(r.kind, ACTION_REF_REMOTE);
    ASSERT_STR_EQ(r.url, "https://gitea.example.com/o/r");
    ASSERT_STR_EQ(r.owner, "o");
    ASSERT_STR_EQ(r.repo, "r");
    ASSERT_STR_EQ(r.path, "sub");
    ASSERT_STR_EQ(r.ref, "v1");
    ASSERT(r.on_instance);
    ASSERT_STR_EQ(r.cache_name, "https---gitea.example.com-o-r-sub@v1");
    action_ref_free(&r);

    /* Host case and the default port do not matter; scheme and other ports do. */
    r = ref_ok("https://GITEA.example.com:443/o/r@v1", &src);
    ASSERT(r.on_instance);
    action_ref_free(&r);
    r = ref_ok("http://gitea.example.com/o/r@v1", &src);
    ASSERT_STR_EQ(r.url, "http://gitea.example.com/o/r");
    ASSERT(!r.on_instance);
    action_ref_free(&r);
    r = ref_ok("https://gitea.example.com:8443/o/r@v1", &src);
    ASSERT(!r.on_instance);
    action_ref_free(&r);
    r = ref_ok("https://other.example.com/o/r@v1", &src);
    ASSERT_STR_EQ(r.url, "https://other.example.com/o/r");
    ASSERT(!r.on_instance);
    action_ref_free(&r);

    src.instance_url = "http://127.0.0.1:3000";
    r = ref_ok("http://127.0.0.1:3000/o/r@v1", &src);
    ASSERT_STR_EQ(r.url, "http://127.0.0.1:3000/o/r");
    ASSERT(r.on_instance);
    action_ref_free(&r);
    r = ref_ok("http://127.0.0.1:3001/o/r@v1", &src);
    ASSERT(!r.on_instance);
    action_ref_free(&r);

    /* A plain reference on github.com is never on the instance; NULL instance: never. */
    r = ref_ok("o/r@v1", &src);
    ASSERT(!r.on_instance);
    action_ref_free(&r);
    src.instance_url = NULL;
    r = ref_ok("https://gitea.example.com/o/r@v1", &src);
    ASSERT(!r.on_instance);
    action_ref_free(&r);
}

TEST(ref_default_url_and_mirror)
{
    /* DEFAULT_ACTIONS_URL = self: plain references come from the instance, with the token. */
    struct action_sources src = {.default_actions_url = "https://gitea.example.com/",
                                 .instance_url = "https://gitea.example.com",
                                 .github_mirror = "https://mirror.example.org"};
    struct action_ref r = ref_ok("actions/checkout@v4", &src);

    ASSERT_STR_EQ(r.url, "https://gitea.example.com/actions/checkout");
    ASSERT(r.on_instance);
    action_ref_free(&r);

    /* A bare host gets https://. */
    src.default_actions_url = "gitea.example.com";
    r = ref_ok("actions/checkout@v4", &src);
    ASSERT_STR_EQ(r.url, "https://gitea.example.com/actions/checkout");
    ASSERT(r.on_instance);
    action_ref_free(&r);

    /* github.com with a mirror: the mirror (trailing slash trimmed), not on the instance. */
    src.default_actions_url = "https://github.com/";
    src.github_mirror = "https://mirror.example.org/";
    r = ref_ok("actions/checkout@v4", &src);
    ASSERT_STR_EQ(r.url, "https://mirror.example.org/actions/checkout");
    ASSERT(!r.on_instance);
    action_ref_free(&r);
    src.default_actions_url = NULL;
    r = ref_ok("actions/checkout@v4", &src);
    ASSERT_STR_EQ(r.url, "https://mirror.example.org/actions/checkout");
    action_ref_free(&r);

    /* A mirror that is the instance gets the token. */
    src.github_mirror = "gitea.example.com";
    r = ref_ok("actions/checkout@v4", &src);
    ASSERT_STR_EQ(r.url, "https://gitea.example.com/actions/checkout");
    ASSERT(r.on_instance);
    action_ref_free(&r);

    /* An empty mirror is no mirror. */
    src.github_mirror = "";
    r = ref_ok("actions/checkout@v4", &src);
    ASSERT_STR_EQ(r.url, "https://github.com/actions/checkout");
    action_ref_free(&r);

    /* Full URLs ignore both the default and the mirror. */
    src.github_mirror = "https://mirror.example.org";
    r = ref_ok("https://github.com/o/r@v1", &src);
    ASSERT_STR_EQ(r.url, "https://github.com/o/r");
    action_ref_free(&r);
}

TEST(ref_cache_name)
{
    struct action_ref r = ref_ok("o/r/a<b>c|d\\e?f*g\"h:i@v1", NULL);

    ASSERT_STR_EQ(r.path, "a<b>c|d\\e?f*g\"h:i");
    ASSERT_STR_EQ(r.cache_name, "o-r-a-b-c-d-e-f-g-h-i@v1");
    action_ref_free(&r);
    r = ref_ok("http://host:3000/o/r@v1", NULL);
    ASSERT_STR_EQ(r.cache_name, "http---host-3000-o-r@v1");
    action_ref_free(&r);
}

/* ------------------------------------------------------------------------------------------ */
/* action.yml                                                                                 */

/* Parses src as "a/action.yml" for "o/r@v1" or fails the test. */
static struct action *
parse_ok(const char *src)
{
    struct action *a = NULL;
    struct err e = {0};

    if (action_parse("a/action.yml", src, strlen(src), "o/r@v1", &a, &e) < 0)
        test_fail(__FILE__, __LINE__, "action_parse: %s", e.msg);
    ASSERT(a != NULL);
    return a;
}

/* Expects src to be refused; returns the message (static buffer). */
static const char *
parse_bad(const char *src)
{
    static struct err e;
    struct action *a = (struct action *)1;

    memset(&e, 0, sizeof e);
    ASSERT_EQ(action_parse("a/action.yml", src, strlen(src), "o/r@v1", &a, &e), ERR_INVALID);
    ASSERT(a == NULL);
    /* NULL e is allowed too. */
    ASSERT_EQ(action_parse("a/action.yml", src, strlen(src), "o/r@v1", &a, NULL), ERR_INVALID);
    return e.msg;
}

TEST(node_action)
{
    struct action *a = parse_ok("name: Hello\n"
                                "author: me\n"
                                "description: says hello\n"
                                "branding: {icon: box, color: blue}\n"
                                "x-unknown-top-level: [1, 2]\n"
                                "inputs:\n"
                                "  who:\n"
                                "    description: whom\n"
                                "    required: true\n"
                                "    default: ${{ github.actor }}\n"
                                "  quiet:\n"
                                "    required: 'false'\n"
                                "    default: 0\n"
                                "    deprecationMessage: old\n"
                                "  bare:\n"
                                "  empty:\n"
                                "    default: ''\n"
                                "outputs:\n"
                                "  greeting:\n"
                                "    description: the greeting\n"
                                "    value: ignored for node\n"
                                "runs:\n"
                                "  using: Node20\n"
                                "  main: dist/index.js\n"
                                "  pre: dist/setup.js\n"
                                "  pre-if: runner.os == 'Linux'\n"
                                "  post: dist/cleanup.js\n"
                                "  post-if: ${{ success() }}\n");

    ASSERT_STR_EQ(a->file, "a/action.yml");
    ASSERT_STR_EQ(a->name, "Hello");
    ASSERT_EQ(a->using, ACTION_NODE);
    ASSERT_STR_EQ(a->using_str, "Node20");
    ASSERT_STR_EQ(a->main, "dist/index.js");
    ASSERT_STR_EQ(a->pre, "dist/setup.js");
    ASSERT_STR_EQ(a->pre_if, "runner.os == 'Linux'");
    ASSERT_STR_EQ(a->post, "dist/cleanup.js");
    ASSERT_STR_EQ(a->post_if, "${{ success() }}");
    ASSERT_EQ(a->n_inputs, 4);
    ASSERT_STR_EQ(a->inputs[0].id, "who");
    ASSERT_STR_EQ(a->inputs[0].def, "${{ github.actor }}");
    ASSERT(a->inputs[0].required);
    ASSERT_STR_EQ(a->inputs[1].id, "quiet");
    ASSERT_STR_EQ(a->inputs[1].def, "0");
    ASSERT(!a->inputs[1].required);
    ASSERT_STR_EQ(a->inputs[2].id, "bare");
    ASSERT(a->inputs[2].def == NULL && !a->inputs[2].required);
    ASSERT_STR_EQ(a->inputs[3].def, "");
    ASSERT_EQ(a->n_outputs, 1);
    ASSERT_STR_EQ(a->outputs[0].id, "greeting");
    ASSERT(a->outputs[0].value == NULL);
    ASSERT(a->image == NULL && a->steps == NULL && a->n_steps == 0 && a->env == NULL);
    ASSERT(a->args != NULL && a->args[0] == NULL);
    ASSERT(a->root != NULL);
    action_free(a);
    action_free(NULL);

    /* Every node version, case-insensitively; no pre/post: NULL. */
    const char *const versions[] = {"node12", "NODE16", "node20", "nOdE24"};
    for (size_t i = 0; i < 4; i++) {
        char *src = xasprintf("runs:\n  using: %s\n  main: m.js\n", versions[i]);
        a = parse_ok(src);
        ASSERT_EQ(a->using, ACTION_NODE);
        ASSERT_STR_EQ(a->using_str, versions[i]);
        ASSERT(a->pre == NULL && a->post == NULL && a->pre_if == NULL && a->post_if == NULL);
        ASSERT(a->name == NULL);
        action_free(a);
        free(src);
    }
}

TEST(docker_action)
{
    struct action *a = parse_ok("name: Lint\n"
                                "inputs:\n"
                                "  level: {default: warn}\n"
                                "runs:\n"
                                "  using: docker\n"
                                "  image: docker://alpine:3.20\n"
                                "  entrypoint: /bin/sh -c\n"
                                "  pre-entrypoint: /setup.sh\n"
                                "  post-entrypoint: /cleanup.sh\n"
                                "  post-if: always()\n"
                                "  args:\n"
                                "    - --level\n"
                                "    - ${{ inputs.level }}\n"
                                "    - 3\n"
                                "    - true\n"
                                "    -\n"
                                "  env:\n"
                                "    MODE: strict\n"
                                "    N: 3\n");

    ASSERT_EQ(a->using, ACTION_DOCKER);
    ASSERT_STR_EQ(a->using_str, "docker");
    ASSERT_STR_EQ(a->image, "docker://alpine:3.20");
    ASSERT_STR_EQ(a->entrypoint, "/bin/sh -c");
    ASSERT_STR_EQ(a->pre_entrypoint, "/setup.sh");
    ASSERT_STR_EQ(a->post_entrypoint, "/cleanup.sh");
    ASSERT_STR_EQ(a->post_if, "always()");
    ASSERT(a->pre_if == NULL && a->main == NULL);
    ASSERT_STR_EQ(a->args[0], "--level");
    ASSERT_STR_EQ(a->args[1], "${{ inputs.level }}");
    ASSERT_STR_EQ(a->args[2], "3");
    ASSERT_STR_EQ(a->args[3], "true");
    ASSERT_STR_EQ(a->args[4], "");
    ASSERT(a->args[5] == NULL);
    ASSERT(a->env != NULL && a->env->kind == YNODE_MAP && a->env->n == 2);
    ASSERT_STR_EQ(ynode_get(a->env, "MODE")->str, "strict");
    ASSERT_STR_EQ(ynode_get(a->env, "N")->str, "3");
    ASSERT_STR_EQ(a->inputs[0].def, "warn");
    action_free(a);

    a = parse_ok("runs: {using: DOCKER, image: Dockerfile}\n");
    ASSERT_EQ(a->using, ACTION_DOCKER);
    ASSERT_STR_EQ(a->image, "Dockerfile");
    ASSERT(a->args != NULL && a->args[0] == NULL);
    ASSERT(a->env == NULL && a->entrypoint == NULL);
    action_free(a);
}

TEST(composite_action)
{
    struct action *a = parse_ok("name: Compose\n"
                                "inputs:\n"
                                "  greeting: {default: 'Hi ${{ github.actor }}'}\n"
                                "outputs:\n"
                                "  said:\n"
                                "    description: what was said\n"
                                "    value: ${{ steps.say.outputs.text }}\n"
                                "  answer:\n"
                                "    value: 42\n"
                                "  none:\n"
                                "runs:\n"
                                "  using: Composite\n"
                                "  steps:\n"
                                "    - id: say\n"
                                "      run: echo \"text=${{ inputs.greeting }}\" >> $OUT\n"
                                "      shell: bash\n"
                                "      env: {A: '1'}\n"
                                "    - uses: actions/cache@v4\n"
                                "      with: {path: x, key: k}\n"
                                "      if: ${{ always() }}\n"
                                "    - uses: ./local\n"
                                "      continue-on-error: true\n");

    ASSERT_EQ(a->using, ACTION_COMPOSITE);
    ASSERT_STR_EQ(a->using_str, "Composite");
    ASSERT_STR_EQ(a->inputs[0].def, "Hi ${{ github.actor }}");
    ASSERT_EQ(a->n_outputs, 3);
    ASSERT_STR_EQ(a->outputs[0].id, "said");
    ASSERT_STR_EQ(a->outputs[0].value, "${{ steps.say.outputs.text }}");
    ASSERT_STR_EQ(a->outputs[1].value, "42");
    ASSERT(a->outputs[2].value == NULL);
    ASSERT_EQ(a->n_steps, 3);
    const struct wf_step *s = a->steps;
    ASSERT_EQ(s[0].kind, WF_STEP_RUN);
    ASSERT_STR_EQ(s[0].eff_id, "say");
    ASSERT_STR_EQ(s[0].run.v, "echo \"text=${{ inputs.greeting }}\" >> $OUT");
    ASSERT_EQ(s[0].run.pos.line, 15);
    ASSERT_STR_EQ(s[0].shell.v, "bash");
    ASSERT_STR_EQ(ynode_get(s[0].env, "A")->str, "1");
    ASSERT_EQ(s[1].kind, WF_STEP_USES);
    ASSERT_STR_EQ(s[1].eff_id, "1");
    ASSERT_EQ(s[1].index, 1);
    ASSERT_STR_EQ(s[1].uses.v, "actions/cache@v4");
    ASSERT_STR_EQ(ynode_get(s[1].with, "key")->str, "k");
    ASSERT_STR_EQ(s[1].if_.v, "${{ always() }}");
    ASSERT_EQ(s[2].kind, WF_STEP_USES_LOCAL);
    ASSERT_STR_EQ(s[2].eff_id, "2");
    ASSERT_STR_EQ(s[2].continue_on_error->str, "true");
    action_free(a);

    /* An empty list is steps (none), not missing steps. */
    a = parse_ok("runs: {using: composite, steps: []}\n");
    ASSERT_EQ(a->n_steps, 0);
    action_free(a);
}

TEST(parse_errors)
{
    ASSERT_STR_EQ(parse_bad("name: x\nruns:\n  using: node99\n  main: a.js\n"),
                  "a/action.yml:3:10: o/r@v1: The runs.using key in action.yml must be one of: "
                  "[composite docker node12 node16 node20 node24], got node99");
    /* act lower-cases the value it quotes. */
    ASSERT_STR_EQ(parse_bad("runs:\n  using: Python3\n"),
                  "a/action.yml:2:10: o/r@v1: The runs.using key in action.yml must be one of: "
                  "[composite docker node12 node16 node20 node24], got python3");
    ASSERT_STR_EQ(parse_bad("runs:\n  main: a.js\n"),
                  "a/action.yml:2:3: o/r@v1: The runs.using key in action.yml must be one of: "
                  "[composite docker node12 node16 node20 node24], got ");
    ASSERT_STR_EQ(parse_bad("runs:\n  using: [node20]\n"),
                  "a/action.yml:2:10: o/r@v1: runs.using: expected a string, got a sequence");
    ASSERT_STR_EQ(parse_bad("runs:\n  using: node20\n"),
                  "a/action.yml:2:3: o/r@v1: runs.main is required for a node20 action");
    ASSERT_STR_EQ(parse_bad("runs:\n  using: docker\n  args: [a]\n"),
                  "a/action.yml:2:3: o/r@v1: runs.image is required for a docker action");
    ASSERT_STR_EQ(parse_bad("name: x\nruns:\n  using: composite\n"),
                  "a/action.yml:3:3: o/r@v1: missing steps in composite action");
    ASSERT_STR_EQ(parse_bad("runs:\n  using: composite\n  steps:\n"),
                  "a/action.yml:2:3: o/r@v1: missing steps in composite action");
    ASSERT_STR_EQ(parse_bad("runs:\n  using: composite\n  steps:\n    - run: echo\n"
                            "      uses: actions/checkout@v4\n"),
                  "a/action.yml:4:7: o/r@v1: runs.steps[0]: a step cannot have both 'run' and "
                  "'uses'");
    ASSERT_STR_EQ(parse_bad("runs:\n  using: composite\n  steps:\n    - run: echo\n"
                            "    - name: nothing\n"),
                  "a/action.yml:5:7: o/r@v1: runs.steps[1]: a step needs either 'run' or "
                  "'uses'");
    ASSERT_STR_CONTAINS(parse_bad("runs:\n  using: composite\n  steps:\n    - id: a\n"
                                  "      run: x\n    - id: a\n      run: y\n"),
                        "a/action.yml:6:11: o/r@v1: runs.steps[1].id: the step id 'a' is "
                        "already used by runs.steps[0]");
    ASSERT_STR_CONTAINS(parse_bad("runs:\n  using: composite\n  steps:\n    - run: x\n"
                                  "      bogus: 1\n"),
                        "a/action.yml:5:7: o/r@v1: runs.steps[0]: unknown key 'bogus'");
    /* The bad ${{ is found at its exact column inside the scalar. */
    ASSERT_STR_CONTAINS(parse_bad("runs:\n  using: composite\n  steps:\n"
                                  "    - run: echo ok ${{ a == }}\n"),
                        "a/action.yml:4:20: o/r@v1: runs.steps[0].run: invalid expression");
    ASSERT_STR_EQ(parse_bad("runs:\n  using: composite\n  steps: {a: b}\n"),
                  "a/action.yml:3:10: o/r@v1: runs.steps: expected a sequence, got a mapping");
    ASSERT_STR_EQ(parse_bad("name: x\n"), "a/action.yml:1:1: o/r@v1: runs is required");
    ASSERT_STR_EQ(parse_bad("runs: node20\n"),
                  "a/action.yml:1:7: o/r@v1: runs: expected a mapping, got a string");
    ASSERT_STR_EQ(parse_bad(""), "a/action.yml:1:1: o/r@v1: the action file is empty");
    ASSERT_STR_EQ(parse_bad("- a\n- b\n"),
                  "a/action.yml:1:1: o/r@v1: expected a mapping, got a sequence");
    /* YAML errors keep the parser's position, with what after it. */
    ASSERT_STR_CONTAINS(parse_bad("runs:\n  using: [node20\n"), "a/action.yml:");
    ASSERT_STR_CONTAINS(parse_bad("runs:\n  using: [node20\n"), ": o/r@v1: ");
    ASSERT_STR_EQ(parse_bad("runs: {using: node20, main: a}\nruns: {}\n"),
                  "a/action.yml:2:1: o/r@v1: duplicate key 'runs' (first defined at line 1, "
                  "column 1)");
    /* Types of known keys. */
    ASSERT_STR_EQ(parse_bad("runs: {using: node20, main: {a: b}}\n"),
                  "a/action.yml:1:29: o/r@v1: runs.main: expected a string, got a mapping");
    ASSERT_STR_EQ(parse_bad("runs: {using: docker, image: x, args: a b}\n"),
                  "a/action.yml:1:39: o/r@v1: runs.args: expected a sequence, got a string");
    ASSERT_STR_EQ(parse_bad("runs: {using: docker, image: x, args: [[a]]}\n"),
                  "a/action.yml:1:40: o/r@v1: runs.args[0]: expected a string, got a sequence");
    ASSERT_STR_EQ(parse_bad("runs: {using: docker, image: x, env: [A]}\n"),
                  "a/action.yml:1:38: o/r@v1: runs.env: expected a mapping, got a sequence");
    ASSERT_STR_EQ(parse_bad("runs: {using: docker, image: x, env: {A: {b: c}}}\n"),
                  "a/action.yml:1:42: o/r@v1: runs.env.A: expected a string, got a mapping");
    ASSERT_STR_EQ(parse_bad("inputs: [a]\nruns: {using: node20, main: a}\n"),
                  "a/action.yml:1:9: o/r@v1: inputs: expected a mapping, got a sequence");
    ASSERT_STR_EQ(parse_bad("inputs:\n  x: 1\nruns: {using: node20, main: a}\n"),
                  "a/action.yml:2:6: o/r@v1: inputs.x: expected a mapping, got a string");
    ASSERT_STR_EQ(parse_bad("inputs:\n  x:\n    default: {a: 1}\nruns: {using: node20, main: a}\n"),
                  "a/action.yml:3:14: o/r@v1: inputs.x.default: expected a string, got a "
                  "mapping");
    ASSERT_STR_EQ(parse_bad("inputs:\n  x: {required: maybe}\nruns: {using: node20, main: a}\n"),
                  "a/action.yml:2:17: o/r@v1: inputs.x.required: expected a boolean, got "
                  "'maybe'");
    ASSERT_STR_EQ(parse_bad("outputs:\n  o:\n    value: {a: 1}\n"
                            "runs: {using: composite, steps: []}\n"),
                  "a/action.yml:3:12: o/r@v1: outputs.o.value: expected a string, got a "
                  "mapping");
    ASSERT_STR_EQ(parse_bad("outputs: x\nruns: {using: node20, main: a}\n"),
                  "a/action.yml:1:10: o/r@v1: outputs: expected a mapping, got a string");
}

/* ------------------------------------------------------------------------------------------ */
/* action_load                                                                                */

/* Writes text to path. */
static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ASSERT(f != NULL);
    ASSERT_EQ(fputs(text, f) >= 0, 1);
    ASSERT_EQ(fclose(f), 0);
}

TEST(load_order_and_fallbacks)
{
    struct action *a = NULL;
    struct err e = {0};

    ASSERT_EQ(mkdir("act", 0755), 0);
    /* Nothing there. */
    ASSERT_EQ(action_load("act", "./act", &a, &e), ERR_NOTFOUND);
    ASSERT(a == NULL);
    ASSERT_STR_EQ(e.msg, "./act: no action.yml, action.yaml or Dockerfile in act");
    ASSERT_EQ(action_load("missing-dir", "o/r@v1", &a, &e), ERR_NOTFOUND);
    ASSERT_STR_EQ(e.msg, "o/r@v1: no action.yml, action.yaml or Dockerfile in missing-dir");

    /* A Dockerfile alone: a synthesised docker action. */
    write_file("act/Dockerfile", "FROM alpine\n");
    ASSERT_OK(action_load("act/", "./act", &a, &e));
    ASSERT_STR_EQ(a->file, "act/Dockerfile");
    ASSERT(a->name == NULL && a->root == NULL);
    ASSERT_EQ(a->using, ACTION_DOCKER);
    ASSERT_STR_EQ(a->using_str, "docker");
    ASSERT_STR_EQ(a->image, "Dockerfile");
    ASSERT(a->args != NULL && a->args[0] == NULL);
    ASSERT(a->n_inputs == 0 && a->n_outputs == 0 && a->env == NULL);
    action_free(a);

    /* action.yaml beats the Dockerfile. */
    write_file("act/action.yaml", "name: from-yaml\nruns: {using: node20, main: y.js}\n");
    ASSERT_OK(action_load("act", "./act", &a, &e));
    ASSERT_STR_EQ(a->file, "act/action.yaml");
    ASSERT_STR_EQ(a->name, "from-yaml");
    action_free(a);

    /* action.yml beats action.yaml. */
    write_file("act/action.yml", "name: from-yml\nruns: {using: node20, main: m.js}\n");
    ASSERT_OK(action_load("act", "./act", &a, &e));
    ASSERT_STR_EQ(a->file, "act/action.yml");
    ASSERT_STR_EQ(a->name, "from-yml");
    ASSERT_STR_EQ(a->main, "m.js");
    action_free(a);

    /* Its errors name the file and the action. */
    write_file("act/action.yml", "runs:\n  using: perl\n");
    ASSERT_EQ(action_load("act", "./act", &a, &e), ERR_INVALID);
    ASSERT(a == NULL);
    ASSERT_STR_EQ(e.msg, "act/action.yml:2:10: ./act: The runs.using key in action.yml must be "
                         "one of: [composite docker node12 node16 node20 node24], got perl");

    /* An action.yml that cannot be read is an error, not a reason to fall back. */
    ASSERT_EQ(unlink("act/action.yml"), 0);
    ASSERT_EQ(mkdir("act/action.yml", 0755), 0);
    ASSERT_EQ(action_load("act", "./act", &a, &e), ERR_INVALID);
    ASSERT(a == NULL);
    ASSERT_STR_EQ(e.msg, "./act: act/action.yml: not a regular file");
}

/* A fetched action's files are the workflow author's: an action.yml (or a sub-path, or a
 * Dockerfile) that is a symlink out of the repository is refused and the host file is never
 * read; a link that stays inside is followed. */
TEST(load_beneath_refuses_links_out)
{
    struct action *a = NULL;
    struct err e = {0};
    char want[512];

    ASSERT_EQ(system("mkdir -p host/sub repo/in repo/df && "
                     "printf 'name: host\nruns: {using: node20, main: x.js}\n' > host/action.yml && "
                     "cp host/action.yml host/sub/action.yml && printf 'FROM x\n' > host/Dockerfile && "
                     "ln -s \"$PWD/host/action.yml\" repo/action.yml && "
                     "ln -s \"$PWD/host/sub\" repo/sub && ln -s ../../host/sub repo/in/up && "
                     "printf 'name: real\nruns: {using: node20, main: r.js}\n' > repo/in/real.yml && "
                     "ln -s real.yml repo/in/action.yml && "
                     "ln -s \"$PWD/host/Dockerfile\" repo/df/Dockerfile"),
              0);
    ASSERT_EQ(action_load_beneath("repo", NULL, "o/r@v1", &a, &e), -EXDEV);
    ASSERT(a == NULL);
    ASSERT_STR_EQ(e.msg, "o/r@v1: a symbolic link in action.yml leads out of repo");
    ASSERT_EQ(action_load_beneath("repo", "sub", "o/r/sub@v1", &a, &e), -EXDEV);
    ASSERT_STR_EQ(e.msg, "o/r/sub@v1: a symbolic link in sub/action.yml leads out of repo");
    ASSERT_EQ(action_load_beneath("repo", "in/up", "o/r/in/up@v1", &a, &e), -EXDEV);
    ASSERT_EQ(action_load_beneath("repo", "df", "o/r/df@v1", &a, &e), -EXDEV);
    ASSERT_STR_EQ(e.msg, "o/r/df@v1: a symbolic link in df/Dockerfile leads out of repo");
    ASSERT(a == NULL);

    /* inside the repository: followed */
    ASSERT_OK(action_load_beneath("repo", "in", "o/r/in@v1", &a, &e));
    ASSERT_STR_EQ(a->file, "repo/in/action.yml");
    ASSERT_STR_EQ(a->name, "real");
    action_free(a);
    ASSERT_EQ(action_load_beneath("repo", "none", "o/r/none@v1", &a, &e), ERR_NOTFOUND);
    snprintf(want, sizeof want, "o/r/none@v1: no action.yml, action.yaml or Dockerfile in %s",
             "repo/none");
    ASSERT_STR_EQ(e.msg, want);
}

/* ------------------------------------------------------------------------------------------ */
/* Docker tag                                                                                 */

/* Checks one tag. */
static void
check_tag(const char *name, const char *want)
{
    char *t = action_docker_tag(name);

    ASSERT_STR_EQ(t, want);
    free(t);
}

TEST(docker_tag)
{
    check_tag("My Action", "act-my-action-dockeraction:latest");
    check_tag("o/r@v1", "act-o-r-v1-dockeraction:latest");
    check_tag("--lead", "act-lead-dockeraction:latest");
    check_tag("_x", "act-x-dockeraction:latest");
    check_tag("ABC123", "act-abc123-dockeraction:latest");
    check_tag("", "act-dockeraction:latest");
    check_tag(NULL, "act-dockeraction:latest");
    /* One '-' per character, not per byte; an invalid byte counts as one. */
    check_tag("h\xc3\xa9llo", "act-h-llo-dockeraction:latest");
    check_tag("a\xe2\x82\xac\xf0\x9f\x98\x80z", "act-a--z-dockeraction:latest");
    check_tag("a\xff\xc3z", "act-a--z-dockeraction:latest");
}
