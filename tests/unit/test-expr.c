/* test-expr.c: our own tests of the expr module, on top of GitHub's vectors
 * (test-expr-conformance.c). Covers: coercion corners, number formatting, every function's edge
 * cases (format's brace rules, join, toJSON/fromJSON, contains/startsWith/endsWith with Unicode
 * case folding, case), filters and index access, parse errors and their messages, depth and
 * memory limits, templates (several ${{ }}, '}}' inside a string literal, unterminated ${{),
 * expr_eval_scalar typing, expr_eval_if with the implicit success(), status functions through
 * status_fn, status_jobs_fn and job_status, hashFiles through a callback, expr_parse_ex
 * restrictions, and the value helpers (truthiness, expr_to_string, non-finite numbers). */
#include "harness.h"

#include "expr.h"
#include "runner/xalloc.h"

#include <math.h>

/* Contexts used by the table tests. */
static const char *ctx_json =
    "{\"github\": {\"event_name\": \"push\", \"ref\": \"refs/heads/main\", \"run_id\": "
    "1234567890123, \"event\": {\"commits\": [{\"id\": \"a1\", \"author\": {\"name\": \"Mona\"}},"
    " {\"id\": \"b2\", \"author\": {\"name\": \"Hubot\"}}]}},"
    " \"matrix\": {\"os\": \"ubuntu-latest\", \"node\": 18, \"flags\": [\"x\", \"y\"]},"
    " \"steps\": {\"build\": {\"outputs\": {\"Version\": \"1.2.3\"}, \"outcome\": \"success\"}},"
    " \"env\": {\"EMPTY\": \"\", \"ZERO\": \"0\", \"JSON\": \"{\\\"a\\\": [1, 2]}\"},"
    " \"inputs\": {\"flag\": true, \"count\": 2.5}}";

/* Evaluates src against the table contexts; returns 0 and *out, or the error code. */
static int
eval_ctx(const char *src, const struct expr_env *base, json_t **out, struct err *e)
{
    json_error_t jerr;
    json_t *ctx = json_loads(ctx_json, 0, &jerr);
    struct expr_env env = {0};
    int rc;

    if (ctx == NULL)
        test_fail(__FILE__, __LINE__, "bad ctx_json: %s", jerr.text);
    if (base != NULL)
        env = *base;
    env.contexts = ctx;
    rc = expr_eval_str(src, &env, out, e);
    json_decref(ctx);
    return rc;
}

/* Evaluates src and returns its string form (a new string), failing the test on an error. */
static char *
eval_string(const char *src)
{
    json_t *v = NULL;
    struct err e = {0};
    char *s;

    if (eval_ctx(src, NULL, &v, &e) < 0)
        test_fail(__FILE__, __LINE__, "%s: %s", src, e.msg);
    s = expr_to_string(v);
    json_decref(v);
    return s;
}

/* A table row: expression and expected string form (or, with err set, part of the error). */
struct row {
    const char *src;
    const char *want;
    bool err;
};

/* Runs a table; reports every failing row before failing. */
static void
run_rows(const struct row *rows, size_t n)
{
    int failed = 0;

    for (size_t i = 0; i < n; i++) {
        json_t *v = NULL;
        struct err e = {0};
        int rc = eval_ctx(rows[i].src, NULL, &v, &e);

        if (rows[i].err) {
            if (rc >= 0) {
                char *s = expr_to_string(v);

                printf("FAIL %s: expected error \"%s\", got \"%s\"\n", rows[i].src, rows[i].want,
                       s);
                free(s);
                failed++;
            } else if (strstr(e.msg, rows[i].want) == NULL) {
                printf("FAIL %s: error \"%s\" lacks \"%s\"\n", rows[i].src, e.msg, rows[i].want);
                failed++;
            }
        } else if (rc < 0) {
            printf("FAIL %s: error %s\n", rows[i].src, e.msg);
            failed++;
        } else {
            char *s = expr_to_string(v);

            if (strcmp(s, rows[i].want) != 0) {
                printf("FAIL %s: got \"%s\", expected \"%s\"\n", rows[i].src, s, rows[i].want);
                failed++;
            }
            free(s);
        }
        json_decref(v);
    }
    fflush(stdout);
    ASSERT_EQ(failed, 0);
}

#define RUN(rows) run_rows(rows, sizeof rows / sizeof rows[0])

TEST(coercion)
{
    static const struct row rows[] = {
        {"null == ''", "true", false},
        {"null == false", "true", false},
        {"null < 1", "true", false},
        {"null <= null", "true", false},
        {"null < null", "false", false},
        {"'0x10' == 16", "true", false},
        {"'0b101' == 5", "true", false},
        {"'1e3' == 1000", "true", false},
        {"' 12 ' == 12", "true", false},
        {"'12abc' == 12", "false", false},
        {"'-0x10' == -16", "false", false},
        {"'1.' == 1", "true", false},
        {"'.' == 0", "false", false},
        {"'Infinity' > 1e308", "true", false},
        {"'abc' == 'ABC'", "true", false},
        {"'abc' < 'ABD'", "true", false},
        {"'a' < 'ab'", "true", false},
        {"true == 'true'", "false", false},
        {"true == '1'", "true", false},
        {"matrix.flags == matrix.flags", "true", false},
        {"matrix.flags == fromJSON('[\"x\",\"y\"]')", "false", false},
        {"matrix.flags >= matrix.flags", "true", false},
        {"matrix.flags > matrix.flags", "false", false},
        {"matrix.node == '18'", "true", false},
        {"matrix.node == 18.0", "true", false},
        {"env.ZERO == 0", "true", false},
        {"env.EMPTY == 0", "true", false},
        {"!env.EMPTY", "true", false},
        {"!env.ZERO", "false", false},
        {"!fromJSON('{}')", "false", false},
        {"!NaN", "true", false},
        {"false || null", "", false},
        {"0 || 'x'", "x", false},
        {"'' && 'x'", "", false},
        {"'a' && 'b' || 'c'", "b", false},
        {"false && 'b' || 'c'", "c", false},
        {"inputs.flag && 'yes' || 'no'", "yes", false},
    };
    RUN(rows);
}

TEST(number_format)
{
    static const struct row rows[] = {
        {"1", "1", false},
        {"-1.5", "-1.5", false},
        {"0.1", "0.1", false},
        {"1e15", "1E+15", false},
        {"123456789012345", "123456789012345", false},
        {"1234567890123456", "1.23456789012346E+15", false},
        {"1e20", "1E+20", false},
        {"1e-4", "0.0001", false},
        {"1e-5", "1E-05", false},
        /* act (and so act_runner) and GitHub's runner both format with 15 significant
         * digits and an exponent below 1e-4: 1E-06, not the JavaScript evaluator's
         * 0.000001. */
        {"0.000001", "1E-06", false},
        {"format('{0}', 0.000001)", "1E-06", false},
        {"0.84551240822557006", "0.84551240822557", false},
        {"0.1 == 0.10000000000000001", "true", false},
        {"1/3", "Unexpected symbol", true},
        {"0x7fffffffffffffff", "9.22337203685478E+18", false},
        {"-0", "0", false},
        {"+5", "5", false},
        {"NaN", "NaN", false},
        {"-Infinity", "-Infinity", false},
        {"inputs.count", "2.5", false},
        {"github.run_id", "1234567890123", false},
        {"1.", "1", false},
        {"0o17", "15", false},
        {"0b11", "3", false},
        {"1e", "Unexpected symbol: '1e'", true},
        {"0x", "Unexpected symbol: '0x'", true},
        {"1.2.3", "Unexpected symbol: '1.2.3'", true},
        {"--1", "Unexpected symbol: '--1'", true},
    };
    RUN(rows);
}

TEST(access_and_filters)
{
    static const struct row rows[] = {
        {"github.EVENT_NAME", "push", false},
        {"GITHUB.event_name", "push", false},
        {"github['event_name']", "push", false},
        {"github.nope", "", false},
        {"github.nope.deeper", "", false},
        {"github.event_name.length", "", false},
        {"steps.build.outputs.version", "1.2.3", false},
        {"steps['build'].outputs['VERSION']", "1.2.3", false},
        {"github.event.commits[1].id", "b2", false},
        {"github.event.commits[1.9].id", "b2", false},
        {"github.event.commits['1'].id", "b2", false},
        {"github.event.commits[2]", "", false},
        {"github.event.commits[-1]", "", false},
        {"join(github.event.commits.*.id)", "a1,b2", false},
        {"join(github.event.commits.*.author.name, ' & ')", "Mona & Hubot", false},
        {"join(github.event.commits[*].id, '')", "a1b2", false},
        {"toJSON(github.event.commits.*.nope)", "[]", false},
        {"toJSON(matrix.*)", "[\n  \"ubuntu-latest\",\n  18,\n  [\n    \"x\",\n    \"y\"\n  ]\n]",
         false},
        {"toJSON(matrix.os.*)", "[]", false},
        {"contains(github.event.commits.*.id, 'B2')", "true", false},
        {"nosuch.context", "", false},
        {"fromJSON(env.JSON).a[1]", "2", false},
        {"toJSON(fromJSON(env.JSON).a.*)", "[\n  1,\n  2\n]", false},
        {"matrix['flags'][0]", "x", false},
    };
    RUN(rows);
}

TEST(functions)
{
    static const struct row rows[] = {
        {"contains('Hello World', 'WORLD')", "true", false},
        {"contains(matrix.flags, 'X')", "true", false},
        {"contains(matrix.flags, 'z')", "false", false},
        {"contains(matrix, 'os')", "false", false},
        {"contains(12345, 234)", "true", false},
        {"contains('ÄBC', 'äb')", "true", false},
        {"startsWith(github.ref, 'REFS/heads/')", "true", false},
        {"startsWith('', '')", "true", false},
        {"startsWith('a', 'ab')", "false", false},
        {"startsWith(matrix, 'O')", "false", false},
        {"endsWith(github.ref, '/MAIN')", "true", false},
        {"endsWith('ǅ', 'ǆ')", "true", false},
        {"endsWith('x', matrix.flags)", "false", false},
        {"format('{0} {1} {0}', 'a', 'b')", "a b a", false},
        {"format('{{{0}}}', 'x')", "{x}", false},
        {"format('{00}', 'x')", "x", false},
        {"format('{1}', 'x')", "references more arguments", true},
        {"format('{99999999999999999999}', 'x')", "references more arguments", true},
        {"format('{}', 'x')", "format string is invalid", true},
        {"format('{a}', 'x')", "format string is invalid", true},
        {"format('{0:x}', 'x')", "format string is invalid", true},
        {"format('{0}}}', 'x')", "x}", false},
        {"format('{0}}', 'x')", "format string is invalid", true},
        {"format('a}b')", "format string is invalid", true},
        {"format('{0}', null, true, 1.5)", "", false},
        {"format('{2}', null, true, 1.5)", "1.5", false},
        {"format(1.5)", "1.5", false},
        {"join(matrix.flags)", "x,y", false},
        {"join(matrix.flags, '')", "xy", false},
        {"join(matrix.flags, 0)", "x0y", false},
        {"join('abc', '-')", "abc", false},
        {"join(matrix)", "", false},
        {"join(fromJSON('[[1], {}, null, 2.50]'), ';')", "Array;Object;;2.5", false},
        {"toJSON('a\"b\\c\n\t\x01')", "\"a\\\"b\\\\c\\n\\t\\u0001\"", false},
        {"toJSON(inputs)", "{\n  \"flag\": true,\n  \"count\": 2.5\n}", false},
        {"toJSON(fromJSON('[1.0, 1e21, -0, 0.1]'))", "[\n  1,\n  1E+21,\n  0,\n  0.1\n]", false},
        {"toJSON(Infinity)", "\"Infinity\"", false},
        {"toJSON(fromJSON('\"\\u00e9\"'))", "\"\xc3\xa9\"", false},
        {"fromJSON('  [1]  ')[0]", "1", false},
        {"fromJSON('{\"a\":1}').A", "1", false},
        {"fromJSON('[1,')", "Invalid JSON", true},
        {"fromJSON('')", "Invalid JSON", true},
        {"fromJSON(null)", "non-string", true},
        {"fromJSON(matrix)", "non-string", true},
        {"fromJSON('1e999')", "Invalid JSON", true},
        {"fromJSON('true') == true", "true", false},
        {"case(matrix.node > 16, 'new', 'old')", "new", false},
        {"case(false, 'a', matrix.node == 18, 'b', 'c')", "b", false},
        {"case(false, fromJSON('x'), 'ok')", "ok", false},
        {"case('true', 'a', 'b')", "case predicate must evaluate to a boolean value", true},
        {"case(true, 'a')", "Too few parameters", true},
        {"case(true, 'a', true, 'b')", "Even number of parameters", true},
        {"always()", "true", false},
        {"success()", "true", false},
        {"failure()", "false", false},
        {"cancelled()", "false", false},
        {"ALWAYS()", "true", false},
        {"toJson(1)", "1", false},
        {"FROMJSON('1')", "1", false},
        {"hashFiles('**/x')", "hashFiles() is not available here", true},
        {"always(1)", "Too many parameters supplied: 'always'", true},
        {"contains('a')", "Too few parameters supplied: 'contains'", true},
        {"nope()", "Unrecognized function: 'nope'", true},
        {"format()", "Too few parameters supplied: 'format'", true},
    };
    RUN(rows);
}

TEST(unicode_case)
{
    static const struct row rows[] = {
        {"'ς' == 'Σ'", "true", false},
        {"'straße' == 'STRASSE'", "false", false},
        {"'ı' == 'I'", "false", false},
        {"'i' == 'I'", "true", false},
        {"'Ω' == 'ω'", "true", false},
        {"'ａ' == 'Ａ'", "true", false},
        {"'𐐨' == '𐐀'", "true", false},
        {"'\xef\xbf\xbd' > '𐐀'", "true", false},
        {"'z' < '\xc3\xa9'", "true", false},
    };
    RUN(rows);
}

/* Expects expr_parse() to fail with a message containing want. */
static void
expect_parse_error(const char *src, const char *want)
{
    struct expr *x = NULL;
    struct err e = {0};
    int rc = expr_parse(src, strlen(src), &x, &e);

    if (rc >= 0) {
        expr_free(x);
        test_fail(__FILE__, __LINE__, "%s: parsed, expected \"%s\"", src, want);
    }
    ASSERT_EQ(rc, ERR_INVALID);
    ASSERT(x == NULL);
    if (strstr(e.msg, want) == NULL)
        test_fail(__FILE__, __LINE__, "%s: \"%s\" lacks \"%s\"", src, e.msg, want);
}

TEST(parse_errors)
{
    expect_parse_error("a ==", "Unexpected end of expression: '=='. Located at position 3");
    expect_parse_error("a = b", "Unexpected symbol: '='. Located at position 3");
    expect_parse_error("\"x\"", "Unexpected symbol: '\"x\"'");
    expect_parse_error("'unterminated",
                       "Unexpected symbol: ''unterminated'. Located at position 1");
    expect_parse_error("(a", "Unexpected end of expression: 'a'");
    expect_parse_error("a)", "Unexpected symbol: ')'. Located at position 2");
    expect_parse_error("a[", "Unexpected end of expression");
    expect_parse_error("a[1", "Unexpected end of expression");
    expect_parse_error("a.", "Unexpected end of expression");
    expect_parse_error("a.(b)", "Unexpected symbol: '('");
    expect_parse_error("'a'[0]", "Unexpected symbol: '['");
    expect_parse_error("1.foo", "Unexpected symbol: '1.foo'");
    expect_parse_error("f(1,", "Unexpected end of expression: ','");
    expect_parse_error("f(1)", "Unrecognized function: 'f'. Located at position 1");
    expect_parse_error("format(1,", "Unexpected end of expression");
    expect_parse_error("format(1 2)", "Unexpected symbol: '2'");
    expect_parse_error("a.b$c", "Unexpected symbol: 'b$c'");
    expect_parse_error("a b", "Unexpected symbol: 'b'. Located at position 3");
    expect_parse_error("!", "Unexpected end of expression: '!'");
    expect_parse_error("&&", "Unexpected symbol: '&&'");
    expect_parse_error("\xff", "Unexpected symbol");

    /* Empty and blank expressions are null. */
    {
        json_t *v = NULL;
        struct err e = {0};

        ASSERT_OK(expr_eval_str("   ", NULL, &v, &e));
        ASSERT(json_is_null(v));
        json_decref(v);
    }
}

/* Builds "<prefix>x<suffix>" with n copies of prefix and suffix. */
static char *
nest(const char *prefix, const char *core, const char *suffix, int n)
{
    size_t plen = strlen(prefix), slen = strlen(suffix), clen = strlen(core);
    char *s = xmalloc((plen + slen) * (size_t)n + clen + 1), *p = s;

    for (int i = 0; i < n; i++, p += plen)
        memcpy(p, prefix, plen);
    memcpy(p, core, clen);
    p += clen;
    for (int i = 0; i < n; i++, p += slen)
        memcpy(p, suffix, slen);
    *p = '\0';
    return s;
}

TEST(depth_limits)
{
    static const struct {
        const char *prefix, *core, *suffix;
    } shapes[] = {
        {"(", "1", ")"},      {"!", "true", ""},          {"format('{0}', ", "1", ")"},
        {"[", "1", "]"},      {"a[", "1", "]"},           {"(1 < ", "1", ")"},
        {"((", "1", "))"},    {"toJSON(", "1", ")"},      {"a.b || (", "1", ")"},
    };

    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        for (int n = 100; n <= 100000; n *= 10) {
            char *s = nest(shapes[i].prefix, shapes[i].core, shapes[i].suffix, n);
            struct expr *x = NULL;
            struct err e = {0};
            int rc = expr_parse(s, strlen(s), &x, &e);

            ASSERT(rc < 0);
            ASSERT(strstr(e.msg, "Exceeded max expression") != NULL ||
                   strstr(e.msg, "Unexpected symbol") != NULL);
            free(s);
        }
    }
    /* Long comparison chains (which GitHub does not count as depth) stay bounded too. */
    {
        char *s = nest("1 < ", "1", "", 5000);
        struct expr *x = NULL;
        struct err e = {0};

        ASSERT(expr_parse(s, strlen(s), &x, &e) < 0);
        ASSERT_STR_CONTAINS(e.msg, "Exceeded max expression");
        free(s);
        s = nest("1 == ", "1", "", 200);
        ASSERT_OK(expr_parse(s, strlen(s), &x, &e));
        expr_free(x);
        free(s);
    }
    /* Within the limit. */
    {
        char *s = nest("(", "1", ")", 49);
        json_t *v = NULL;
        struct err e = {0};

        ASSERT_OK(expr_eval_str(s, NULL, &v, &e));
        ASSERT(json_is_number(v));
        json_decref(v);
        free(s);
    }
    /* Too long. */
    {
        char *s = nest(" ", "1", "", 21001);
        struct expr *x = NULL;
        struct err e = {0};

        ASSERT(expr_parse(s, strlen(s), &x, &e) < 0);
        ASSERT_STR_CONTAINS(e.msg, "Exceeded max expression length");
        free(s);
    }
}

TEST(memory_limit)
{
    json_t *v = NULL;
    struct err e = {0};
    const char *fmt40 = "format('{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}', ";
    char *s = nest(fmt40, "'0123456789'", ")", 6);

    ASSERT(expr_eval_str(s, NULL, &v, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "maximum allowed memory");
    free(s);
    s = nest(fmt40, "'0123456789'", ")", 3); /* 80 kB: fine */
    ASSERT_OK(expr_eval_str(s, NULL, &v, &e));
    ASSERT_EQ(json_string_length(v), 80000);
    json_decref(v);
    free(s);
}

TEST(templates)
{
    json_error_t jerr;
    json_t *ctx = json_loads(ctx_json, 0, &jerr);
    struct expr_env env = {.contexts = ctx};
    struct err e = {0};
    char *s = NULL;
    size_t off = 99;

    ASSERT_OK(expr_interpolate("plain text", &env, &s, &e));
    ASSERT_STR_EQ(s, "plain text");
    free(s);
    ASSERT_OK(expr_interpolate("${{ matrix.os }}/${{ matrix.node }}-${{ github.nope }}!", &env, &s,
                               &e));
    ASSERT_STR_EQ(s, "ubuntu-latest/18-!");
    free(s);
    ASSERT_OK(expr_interpolate("a ${{ '}}' }} b ${{ format('{{0}}}}', 1) }} c", &env, &s, &e));
    ASSERT_STR_EQ(s, "a }} b {0}} c");
    free(s);
    ASSERT_OK(expr_interpolate("${{ 'it''s }}' }}", &env, &s, &e));
    ASSERT_STR_EQ(s, "it's }}");
    free(s);
    ASSERT_OK(expr_interpolate("${{ '${{ x }}' }}", &env, &s, &e));
    ASSERT_STR_EQ(s, "${{ x }}");
    free(s);
    ASSERT_OK(expr_interpolate("${{}}${{ }}", &env, &s, &e));
    ASSERT_STR_EQ(s, "");
    free(s);
    ASSERT_OK(expr_interpolate("}} ${ {{ $", &env, &s, &e));
    ASSERT_STR_EQ(s, "}} ${ {{ $");
    free(s);
    ASSERT_OK(expr_interpolate("${{ toJSON(matrix.flags) }}", &env, &s, &e));
    ASSERT_STR_EQ(s, "[\n  \"x\",\n  \"y\"\n]");
    free(s);

    ASSERT(expr_interpolate("x ${{ matrix.os", &env, &s, &e) == ERR_INVALID);
    ASSERT(s == NULL);
    ASSERT_STR_CONTAINS(e.msg, "not closed");
    ASSERT(expr_interpolate("x ${{ '}} ", &env, &s, &e) == ERR_INVALID);
    ASSERT(expr_interpolate("${{ 1 }} ${{ fromJSON('x') }}", &env, &s, &e) == ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "Invalid JSON");

    ASSERT_OK(expr_template_check("no expressions", &off, &e));
    ASSERT_OK(expr_template_check("${{ a.b }} and ${{ c == 'd' }}", &off, &e));
    ASSERT(expr_template_check("ok ${{ a }} bad ${{ a == }}", &off, &e) == ERR_INVALID);
    ASSERT_EQ(off, 16);
    ASSERT_STR_CONTAINS(e.msg, "Unexpected end of expression");
    ASSERT(expr_template_check("ok ${{ a }} ${{ nope() }}", &off, &e) == ERR_INVALID);
    ASSERT_EQ(off, 12);
    ASSERT_STR_CONTAINS(e.msg, "Unrecognized function: 'nope'");
    ASSERT(expr_template_check("text ${{ a", &off, &e) == ERR_INVALID);
    ASSERT_EQ(off, 5);
    ASSERT(expr_template_check("text ${{ a", NULL, &e) == ERR_INVALID);
    ASSERT(expr_template_has("a ${{ b }}"));
    ASSERT(!expr_template_has("a $ {{ b }}"));
    ASSERT(!expr_template_has(NULL));

    {
        static const char *const allowed[] = {"github", "matrix", NULL};
        struct expr_parse_opts opts = {.contexts = allowed, .no_status = true,
                                       .no_hash_files = true};

        ASSERT_OK(expr_template_check_ex("${{ GitHub.sha }} ${{ matrix.x }}", &opts, &off, &e));
        ASSERT(expr_template_check_ex("${{ github.sha }} ${{ secrets.x }}", &opts, &off, &e) ==
               ERR_INVALID);
        ASSERT_EQ(off, 18);
        ASSERT_STR_CONTAINS(e.msg, "Unrecognized named-value: 'secrets'");
        ASSERT(expr_template_check_ex("${{ success() }}", &opts, &off, &e) == ERR_INVALID);
        ASSERT_STR_CONTAINS(e.msg, "success");
        ASSERT(expr_template_check_ex("${{ hashFiles('x') }}", &opts, &off, &e) == ERR_INVALID);
        ASSERT_STR_CONTAINS(e.msg, "hashFiles");
    }
    json_decref(ctx);
}

TEST(eval_scalar)
{
    json_error_t jerr;
    json_t *ctx = json_loads(ctx_json, 0, &jerr);
    struct expr_env env = {.contexts = ctx};
    struct err e = {0};
    json_t *v = NULL;

    ASSERT_OK(expr_eval_scalar("  ${{ matrix.flags }}\n", &env, &v, &e));
    ASSERT(json_is_array(v));
    ASSERT_EQ(json_array_size(v), 2);
    json_decref(v);
    ASSERT_OK(expr_eval_scalar("${{ matrix.node }}", &env, &v, &e));
    ASSERT(json_is_number(v));
    json_decref(v);
    ASSERT_OK(expr_eval_scalar("${{ inputs.flag }}", &env, &v, &e));
    ASSERT(json_is_true(v));
    json_decref(v);
    ASSERT_OK(expr_eval_scalar("${{ matrix.node }} ", &env, &v, &e));
    ASSERT(json_is_number(v));
    json_decref(v);
    ASSERT_OK(expr_eval_scalar("v${{ matrix.node }}", &env, &v, &e));
    ASSERT_STR_EQ(json_string_value(v), "v18");
    json_decref(v);
    ASSERT_OK(expr_eval_scalar("${{ 1 }}${{ 2 }}", &env, &v, &e));
    ASSERT_STR_EQ(json_string_value(v), "12");
    json_decref(v);
    ASSERT_OK(expr_eval_scalar("plain", &env, &v, &e));
    ASSERT_STR_EQ(json_string_value(v), "plain");
    json_decref(v);
    ASSERT_OK(expr_eval_scalar("${{ '}}' }}", &env, &v, &e));
    ASSERT_STR_EQ(json_string_value(v), "}}");
    json_decref(v);
    ASSERT(expr_eval_scalar("${{ matrix.node", &env, &v, &e) == ERR_INVALID);
    ASSERT(v == NULL);
    json_decref(ctx);
}

/* Status hook for the tests: arg points at the job status word. */
static bool
status_hook(void *arg, const char *fn)
{
    return strcmp(fn, (const char *)arg) == 0;
}

/* Job-level hook with ids: true for success('a', ...) only when every id starts with 'a'. */
static bool
status_jobs_hook(void *arg, const char *fn, const char *const *jobs, size_t n)
{
    (void)arg;
    if (strcmp(fn, "success") != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (jobs[i][0] != 'a')
            return false;
    return true;
}

/* Evaluates an if: condition, failing the test on an error. */
static bool
eval_if(const char *cond, const char *implicit, const struct expr_env *env)
{
    struct err e = {0};
    bool out = true;

    if (expr_eval_if(cond, implicit, env, &out, &e) < 0)
        test_fail(__FILE__, __LINE__, "if: %s: %s", cond ? cond : "(null)", e.msg);
    return out;
}

TEST(eval_if)
{
    json_error_t jerr;
    json_t *ctx = json_loads(ctx_json, 0, &jerr);
    struct expr_env ok = {.contexts = ctx, .job_status = "success"};
    struct expr_env failed = {.contexts = ctx, .job_status = "failure"};
    struct expr_env cancelled = {.contexts = ctx, .job_status = "cancelled"};
    struct expr_env job_failed = {.contexts = ctx, .status_fn = status_hook, .arg = "failure"};
    struct expr_env jobs = {.contexts = ctx, .status_fn = status_hook, .arg = "success",
                            .status_jobs_fn = status_jobs_hook};
    struct err e = {0};
    bool out;

    /* Default and implicit success(). */
    ASSERT(eval_if(NULL, NULL, &ok));
    ASSERT(eval_if("", NULL, &ok));
    ASSERT(eval_if("  ", NULL, &ok));
    ASSERT(!eval_if("", NULL, &failed));
    ASSERT(eval_if("true", NULL, &ok));
    ASSERT(!eval_if("true", NULL, &failed));
    ASSERT(!eval_if("false", NULL, &ok));
    ASSERT(eval_if("github.event_name == 'push'", NULL, &ok));
    ASSERT(eval_if("${{ github.event_name == 'push' }}", NULL, &ok));
    ASSERT(!eval_if("${{ github.event_name == 'push' }}", NULL, &failed));
    ASSERT(!eval_if("github.event_name == 'pull_request'", NULL, &ok));

    /* A status function anywhere disables the implicit check. */
    ASSERT(eval_if("always()", NULL, &failed));
    ASSERT(eval_if("failure()", NULL, &failed));
    ASSERT(!eval_if("failure()", NULL, &ok));
    ASSERT(eval_if("cancelled()", NULL, &cancelled));
    ASSERT(!eval_if("success()", NULL, &cancelled));
    ASSERT(eval_if("failure() || github.event_name == 'push'", NULL, &ok));
    ASSERT(eval_if("${{ always() && matrix.node == 18 }}", NULL, &failed));
    ASSERT(eval_if("!cancelled()", NULL, &failed));

    /* Post stages: implicit always(). */
    ASSERT(eval_if("true", "always()", &failed));
    ASSERT(eval_if("", "always()", &failed));
    ASSERT(!eval_if("false", "always()", &ok));

    /* Job level through status_fn. */
    ASSERT(!eval_if("true", NULL, &job_failed));
    ASSERT(eval_if("failure()", NULL, &job_failed));
    ASSERT(!eval_if("success()", NULL, &job_failed));
    ASSERT(eval_if("success('a1', 'a2')", NULL, &jobs));
    ASSERT(!eval_if("success('a1', 'b')", NULL, &jobs));
    ASSERT(eval_if("success()", NULL, &jobs));

    /* Text around ${{ }} makes a non-empty string: always true (GitHub's pitfall). */
    ASSERT(eval_if("${{ false }} == true", NULL, &ok));
    ASSERT(!eval_if("${{ false }} == true", NULL, &failed));
    ASSERT(eval_if("${{ false }} ${{ always() }}", NULL, &failed));

    /* The implicit check short-circuits: a failing expression is not evaluated. */
    ASSERT(!eval_if("fromJSON('bad')", NULL, &failed));

    /* Errors. */
    out = true;
    ASSERT(expr_eval_if("fromJSON('bad')", NULL, &ok, &out, &e) == ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "Invalid JSON");
    ASSERT(expr_eval_if("a ==", NULL, &ok, &out, &e) == ERR_INVALID);
    ASSERT(expr_eval_if("${{ a", NULL, &ok, &out, &e) == ERR_INVALID);
    ASSERT(!out);
    json_decref(ctx);
}

TEST(status_without_env)
{
    json_t *v = NULL;
    struct err e = {0};
    bool out = false;

    ASSERT_OK(expr_eval_str("success() && !failure() && !cancelled() && always()", NULL, &v, &e));
    ASSERT(json_is_true(v));
    json_decref(v);
    ASSERT_OK(expr_eval_if("true", NULL, NULL, &out, &e));
    ASSERT(out);
}

/* hashFiles hook: joins the patterns, or fails for "fail". */
static int
hash_hook(void *arg, const char *const *patterns, size_t n, char **out, struct err *e)
{
    struct buf_like {
        char s[256];
    } b = {{0}};

    ASSERT(strcmp((const char *)arg, "cookie") == 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(patterns[i], "fail") == 0)
            return err_set(e, -EIO, "cannot read fail");
        strncat(b.s, patterns[i], sizeof b.s - strlen(b.s) - 2);
        strcat(b.s, ";");
    }
    *out = xstrdup(b.s);
    return 0;
}

TEST(hash_files)
{
    struct expr_env env = {.hash_files = hash_hook, .arg = "cookie"};
    json_t *v = NULL;
    struct err e = {0};

    ASSERT_OK(expr_eval_str("hashFiles('**/*.c', 'x', 1)", &env, &v, &e));
    ASSERT_STR_EQ(json_string_value(v), "**/*.c;x;1;");
    json_decref(v);
    ASSERT_OK(expr_eval_str("hashfiles('a') != ''", &env, &v, &e));
    ASSERT(json_is_true(v));
    json_decref(v);
    ASSERT(expr_eval_str("hashFiles('a', 'fail')", &env, &v, &e) == -EIO);
    ASSERT_STR_CONTAINS(e.msg, "cannot read fail");
    ASSERT(v == NULL);
    ASSERT(expr_eval_str("hashFiles()", &env, &v, &e) == ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "Too few parameters");
}

TEST(values)
{
    json_t *v;
    char *s;
    double d = 0;

    v = expr_number_new(NAN);
    ASSERT(expr_number_get(v, &d) && isnan(d));
    ASSERT(!expr_truthy(v));
    s = expr_to_string(v);
    ASSERT_STR_EQ(s, "NaN");
    free(s);
    json_decref(v);
    v = expr_number_new(-INFINITY);
    ASSERT(expr_number_get(v, &d) && isinf(d) && d < 0);
    ASSERT(expr_truthy(v));
    s = expr_to_string(v);
    ASSERT_STR_EQ(s, "-Infinity");
    free(s);
    json_decref(v);
    v = expr_number_new(2.5);
    ASSERT(json_is_real(v));
    json_decref(v);
    v = json_pack("{s:s}", "$number", "other");
    ASSERT(!expr_number_get(v, &d));
    ASSERT(expr_truthy(v));
    s = expr_to_string(v);
    ASSERT_STR_EQ(s, "Object");
    free(s);
    json_decref(v);
    ASSERT(!expr_truthy(NULL));
    ASSERT(!expr_truthy(json_false()));
    ASSERT(expr_truthy(json_true()));
    v = json_integer(0);
    ASSERT(!expr_truthy(v));
    json_decref(v);
    v = json_string("");
    ASSERT(!expr_truthy(v));
    json_decref(v);
    v = json_array();
    ASSERT(expr_truthy(v));
    s = expr_to_string(v);
    ASSERT_STR_EQ(s, "Array");
    free(s);
    json_decref(v);
    s = expr_to_string(json_null());
    ASSERT_STR_EQ(s, "");
    free(s);

    /* Non-finite numbers given in contexts act as numbers. */
    {
        json_t *ctx = json_pack("{s:{s:o}}", "c", "n", expr_number_new(INFINITY));
        struct expr_env env = {.contexts = ctx};
        struct err e = {0};

        ASSERT_OK(expr_eval_str("c.n == Infinity && c.n > 1e308", &env, &v, &e));
        ASSERT(json_is_true(v));
        json_decref(v);
        json_decref(ctx);
    }
    s = eval_string("format('{0}', fromJSON('[1]')[0])");
    ASSERT_STR_EQ(s, "1");
    free(s);
}

TEST(parse_reuse)
{
    /* One parse, many evaluations against different contexts. */
    struct expr *x = NULL;
    struct err e = {0};
    const char *src = "matrix.n > 1 && format('n={0}', matrix.n) || 'small'";

    ASSERT_OK(expr_parse(src, strlen(src), &x, &e));
    ASSERT(!expr_uses_status(x));
    for (int i = 0; i < 4; i++) {
        json_t *ctx = json_pack("{s:{s:i}}", "matrix", "n", i);
        struct expr_env env = {.contexts = ctx};
        json_t *v = NULL;

        ASSERT_OK(expr_eval(x, &env, &v, &e));
        if (i > 1) {
            char want[16];

            snprintf(want, sizeof want, "n=%d", i);
            ASSERT_STR_EQ(json_string_value(v), want);
        } else {
            ASSERT_STR_EQ(json_string_value(v), "small");
        }
        json_decref(v);
        json_decref(ctx);
    }
    expr_free(x);
    expr_free(NULL);
    /* Parse only a prefix of a buffer. */
    ASSERT_OK(expr_parse("1 == 1 garbage", 6, &x, &e));
    ASSERT(!expr_uses_status(x));
    expr_free(x);
    ASSERT_OK(expr_parse("x || failure()", 14, &x, &e));
    ASSERT(expr_uses_status(x));
    expr_free(x);
}

/* An evaluation error never quotes the value it was about: that value may be a secret, and the
 * piece of it a message would quote (jansson's "near 'hunter'", a format string cut at 200
 * bytes) is not the whole secret the masker looks for. */
TEST(errors_do_not_quote_values)
{
    json_t *ctx = json_pack("{s:{s:s, s:s}}", "secrets", "S", "hunter2secretXYZ", "F",
                            "{hunter2secretXYZ");
    struct expr_env env = {.contexts = ctx};
    json_t *v = NULL;
    struct err e = {0};
    char *s = NULL;

    ASSERT(expr_eval_str("fromJSON(secrets.S)", &env, &v, &e) == ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "Invalid JSON");
    ASSERT_STR_CONTAINS(e.msg, "line 1");
    ASSERT(strstr(e.msg, "hunter") == NULL && strstr(e.msg, "near") == NULL);
    ASSERT(expr_eval_str("fromJSON(format('[1, {0}]', secrets.S))", &env, &v, &e) == ERR_INVALID);
    ASSERT(strstr(e.msg, "hunter") == NULL);
    ASSERT(expr_eval_str("format(secrets.F, 1)", &env, &v, &e) == ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "format string is invalid at offset 0");
    ASSERT(strstr(e.msg, "hunter") == NULL);
    ASSERT(expr_interpolate("${{ format(format('{0}{1}', secrets.S, '{5}')) }}", &env, &s, &e) ==
           ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "more arguments than were supplied");
    ASSERT_STR_CONTAINS(e.msg, "placeholder {5} at offset 16");
    ASSERT(strstr(e.msg, "hunter") == NULL);
    ASSERT(s == NULL);
    json_decref(ctx);
}

/* Unicode white space around an expression (a no-break space pasted from a web page) is trimmed
 * as GitHub trims it, in checks and evaluation alike; inside the expression it stays an error. */
TEST(unicode_space_around_expression)
{
    json_t *ctx = json_pack("{s:{s:s}}", "secrets", "API_TOKEN", "tok");
    struct expr_env env = {.contexts = ctx};
    struct err e = {0};
    char *s = NULL;
    json_t *v = NULL;

    ASSERT_OK(expr_template_check("${{ secrets.API_TOKEN\xc2\xa0 }}", NULL, &e));
    ASSERT_OK(expr_template_check("${{\xe3\x80\x80secrets.API_TOKEN\xe2\x80\x89}}", NULL, &e));
    ASSERT_OK(expr_interpolate("t=${{ secrets.API_TOKEN\xc2\xa0 }}.", &env, &s, &e));
    ASSERT_STR_EQ(s, "t=tok.");
    free(s);
    ASSERT_OK(expr_eval_scalar("${{\xc2\xa0secrets.API_TOKEN }}", &env, &v, &e));
    ASSERT_STR_EQ(json_string_value(v), "tok");
    json_decref(v);
    ASSERT(expr_template_check("${{ \xc2\xa0 }}", NULL, &e) < 0);
    ASSERT(expr_template_check("${{ secrets.\xc2\xa0X }}", NULL, &e) < 0);
    json_decref(ctx);
}
