/* test-expr-conformance.c: runs every case of GitHub's expression test vectors (every .json
 * file of shared/conformance/actions-expressions) against the expr module: the expression is
 * parsed with the case's context names as the allowed named values, evaluated against its
 * contexts, and the result kind and value compared (numbers numerically). Error cases must fail
 * at the right stage: "lexing"/"parsing" in expr_parse_ex(), "evaluation" in expr_eval().
 *
 * Deliberate deviations, matched by file, group and expression. Keep this list minimal.
 *
 *   | file | group | expr | reason |
 *   |------|-------|------|--------|
 *   | (none) | | | |
 */
#include "harness.h"

#include "expr.h"
#include "runner/xalloc.h"

#include <dirent.h>
#include <math.h>

static const struct {
    const char *file, *group, *expr;
} deviations[] = {
    {NULL, NULL, NULL},
};

/* True when the case is a listed deviation. */
static bool
is_deviation(const char *file, const char *group, const char *expr)
{
    for (size_t i = 0; deviations[i].file != NULL; i++)
        if (strcmp(deviations[i].file, file) == 0 && strcmp(deviations[i].group, group) == 0 &&
            strcmp(deviations[i].expr, expr) == 0)
            return true;
    return false;
}

/* The vector's kind name for a value. */
static const char *
kind_name(const json_t *v)
{
    if (expr_number_get(v, NULL))
        return "Number";
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "Object";
    case JSON_ARRAY:
        return "Array";
    case JSON_STRING:
        return "String";
    case JSON_TRUE:
    case JSON_FALSE:
        return "Boolean";
    default:
        return "Null";
    }
}

/* Deep equality with numbers compared numerically. */
static bool
same_value(const json_t *got, const json_t *want)
{
    double a, b;
    const char *k;
    json_t *v;

    if (expr_number_get(want, &b))
        return expr_number_get(got, &a) && (a == b || (isnan(a) && isnan(b)));
    if (json_typeof(got) != json_typeof(want))
        return false;
    switch (json_typeof(want)) {
    case JSON_STRING:
        return json_string_length(got) == json_string_length(want) &&
               memcmp(json_string_value(got), json_string_value(want),
                      json_string_length(want)) == 0;
    case JSON_ARRAY:
        if (json_array_size(got) != json_array_size(want))
            return false;
        for (size_t i = 0; i < json_array_size(want); i++)
            if (!same_value(json_array_get(got, i), json_array_get(want, i)))
                return false;
        return true;
    case JSON_OBJECT:
        if (json_object_size(got) != json_object_size(want))
            return false;
        json_object_foreach((json_t *)(uintptr_t)want, k, v) {
            json_t *g = json_object_get(got, k);

            if (g == NULL || !same_value(g, v))
                return false;
        }
        return true;
    default:
        return true;
    }
}

struct tally {
    int run, passed, failed, deviated;
};

/* Runs one case; returns NULL when it passed, else a new description of the failure. */
static char *
run_case(const json_t *c)
{
    const char *src = json_string_value(json_object_get(c, "expr"));
    json_t *contexts = json_object_get(c, "contexts");
    json_t *result = json_object_get(c, "result");
    json_t *errcase = json_object_get(c, "err");
    const char **names = NULL;
    struct expr_parse_opts opts = {0};
    struct expr_env env = {0};
    struct expr *x = NULL;
    json_t *got = NULL;
    struct err e = {0};
    char *why = NULL, *dump = NULL;
    const char *k;
    json_t *v;
    size_t n = 0;
    int rc;

    names = calloc(json_object_size(contexts) + 1, sizeof *names);
    json_object_foreach(contexts, k, v) names[n++] = k;
    opts.contexts = names;
    env.contexts = contexts;

    rc = expr_parse_ex(src, strlen(src), &opts, &x, &e);
    if (rc < 0) {
        const char *kind = errcase ? json_string_value(json_object_get(errcase, "kind")) : NULL;

        if (kind == NULL || (strcmp(kind, "parsing") != 0 && strcmp(kind, "lexing") != 0))
            why = xasprintf("parse failed: %s", e.msg);
        goto out;
    }
    rc = expr_eval(x, &env, &got, &e);
    if (errcase != NULL) {
        const char *kind = json_string_value(json_object_get(errcase, "kind"));

        if (strcmp(kind, "evaluation") != 0)
            why = xasprintf("expected a %s error, but parsing succeeded", kind);
        else if (rc >= 0)
            why = xasprintf("expected an evaluation error, got a %s", kind_name(got));
        goto out;
    }
    if (rc < 0) {
        why = xasprintf("evaluation failed: %s", e.msg);
        goto out;
    }
    {
        const char *want_kind = json_string_value(json_object_get(result, "kind"));
        json_t *want = json_object_get(result, "value");

        dump = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        if (strcmp(want_kind, kind_name(got)) != 0 || !same_value(got, want))
            why = xasprintf("got %s %s", kind_name(got), dump ? dump : "?");
    }
out:
    free(dump);
    json_decref(got);
    expr_free(x);
    free(names);
    return why;
}

/* Runs every case of one file. */
static void
run_file(const char *dir, const char *file, struct tally *t)
{
    char *path = xasprintf("%s/%s", dir, file);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    const char *group;
    json_t *cases;

    if (root == NULL)
        test_fail(__FILE__, __LINE__, "%s: %s", path, jerr.text);
    json_object_foreach(root, group, cases) {
        for (size_t i = 0; i < json_array_size(cases); i++) {
            json_t *c = json_array_get(cases, i);
            const char *src = json_string_value(json_object_get(c, "expr"));
            char *why = run_case(c);

            t->run++;
            if (why == NULL) {
                t->passed++;
            } else if (is_deviation(file, group, src)) {
                t->deviated++;
                printf("deviation %s [%s] %s: %s\n", file, group, src, why);
            } else {
                t->failed++;
                printf("FAIL %s [%s] %s\n     %s\n", file, group, src, why);
            }
            free(why);
        }
    }
    json_decref(root);
    free(path);
}

/* Compares directory entries by name. */
static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(conformance_all)
{
    const char *dir = RUNNERD_SHARED_DIR "/conformance/actions-expressions";
    struct tally t = {0};
    char **files = NULL;
    size_t nfiles = 0;
    struct dirent *de;
    DIR *d = opendir(dir);

    if (d == NULL)
        test_fail(__FILE__, __LINE__, "cannot open %s", dir);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);

        if (n > 5 && strcmp(de->d_name + n - 5, ".json") == 0) {
            files = realloc(files, (nfiles + 1) * sizeof *files);
            files[nfiles++] = strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(files, nfiles, sizeof *files, cmp_names);
    for (size_t i = 0; i < nfiles; i++) {
        run_file(dir, files[i], &t);
        free(files[i]);
    }
    free(files);
    printf("expression conformance: %d cases from %zu files: %d passed, %d failed, %d deviations\n",
           t.run, nfiles, t.passed, t.failed, t.deviated);
    fflush(stdout);
    ASSERT(nfiles > 0);
    ASSERT(t.run > 0);
    ASSERT_EQ(t.failed, 0);
}
