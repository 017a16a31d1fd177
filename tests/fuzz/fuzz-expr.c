/* fuzz-expr.c: libFuzzer target for the expression module. The input is parsed and evaluated as
 * an expression, then (as a NUL-terminated string) checked and evaluated as a template, a YAML
 * scalar and an if: condition, against a small fixed context with every hook set. Everything
 * is freed, so LeakSanitizer catches leaks. */
#include "expr.h"

#include "runner/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ctx_json[] =
    "{\"github\": {\"event_name\": \"push\", \"ref\": \"refs/heads/main\", \"event\": "
    "{\"commits\": [{\"id\": \"a1\", \"author\": {\"name\": \"Mona\"}}, {\"id\": \"b2\"}]}},"
    " \"matrix\": {\"os\": \"linux\", \"node\": 18, \"list\": [1, \"two\", null, true, [3], "
    "{\"k\": \"v\"}], \"f\": 2.5},"
    " \"env\": {\"EMPTY\": \"\", \"JSON\": \"{\\\"a\\\": [1, 2, {\\\"b\\\": null}]}\"},"
    " \"steps\": {\"s1\": {\"outputs\": {\"Out\": \"x\"}, \"outcome\": \"success\"}}}";

/* hashFiles hook: a fixed digest, or an error for an empty first pattern. */
static int
hash_hook(void *arg, const char *const *patterns, size_t n, char **out, struct err *e)
{
    (void)arg;
    if (n == 0 || patterns[0][0] == '\0')
        return err_set(e, -ENOENT, "no pattern");
    *out = xstrdup("0123abcd");
    return 0;
}

/* Status hooks: success() true, the rest false. */
static bool
status_hook(void *arg, const char *fn)
{
    (void)arg;
    return strcmp(fn, "success") == 0;
}

/* Job-level status with job ids: true when there is an even number of them. */
static bool
status_jobs_hook(void *arg, const char *fn, const char *const *jobs, size_t n)
{
    (void)arg;
    (void)fn;
    (void)jobs;
    return n % 2 == 0;
}

/* One fuzz input: every entry point of expr.h on the same bytes. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *ctx;
    struct expr_env env = {0}, step = {0};
    struct expr *x = NULL;
    struct err e = {0};
    json_t *v = NULL;
    char *s, *str = NULL;
    size_t off = 0;
    bool b = false;

    if (ctx == NULL) {
        json_error_t jerr;

        ctx = json_loads(ctx_json, 0, &jerr);
        if (ctx == NULL)
            abort();
    }
    env.contexts = ctx;
    env.hash_files = hash_hook;
    env.status_fn = status_hook;
    env.status_jobs_fn = status_jobs_hook;
    step.contexts = ctx;
    step.job_status = "failure";

    /* As an expression, from a buffer that is not NUL-terminated. */
    if (expr_parse((const char *)data, size, &x, &e) == 0) {
        (void)expr_uses_status(x);
        if (expr_eval(x, &env, &v, &e) == 0) {
            s = expr_to_string(v);
            free(s);
            (void)expr_truthy(v);
            json_decref(v);
            v = NULL;
        }
        if (expr_eval(x, &step, &v, &e) == 0)
            json_decref(v);
        v = NULL;
        expr_free(x);
    }

    /* As a template. */
    s = xstrndup((const char *)data, size);
    if (expr_template_check(s, &off, &e) == 0) {
        if (expr_interpolate(s, &env, &str, &e) == 0)
            free(str);
        if (expr_eval_scalar(s, &env, &v, &e) == 0)
            json_decref(v);
    }
    (void)expr_eval_if(s, NULL, &step, &b, &e);
    (void)expr_eval_if(s, "always()", &env, &b, &e);
    free(s);
    return 0;
}
