/* test-wf-conformance.c: GitHub's workflow-reader vectors (shared/conformance/workflow-parser).
 * Covers: every *.yml file is read at run time; the workflow (document 2) must be accepted when
 * the expected output (last document) has no "errors", and rejected otherwise, with our first
 * error at the line:col of GitHub's first "(Line: N, Col: M)". Workflows with a job-level
 * `uses:` (reusable workflows) must be rejected with our "not supported yet" error instead.
 *
 * An options document may list `skip:` implementations (C#, Go, TypeScript): those are GitHub's
 * own parsers that do not implement a check. We are none of them, so skip lists are ignored
 * unless they name "C" or "runnerd".
 *
 * Deliberate differences (keep this table minimal):
 *
 * | file                  | we do                  | why                                      |
 * |-----------------------|------------------------|------------------------------------------|
 * | background-steps.yml  | reject (unknown keys)  | needs experimental-features             |
 * |                       |                        | allowBackgroundSteps (background: true,  |
 * |                       |                        | wait/wait-all/cancel steps), which act   |
 * |                       |                        | and Gitea do not have and we cannot run. |
 */
#include "harness.h"

#include "runner/xalloc.h"
#include "wf.h"
#include "yamldoc.h"

#include <dirent.h>
#include <stdbool.h>

struct deviation {
    const char *file;
    bool we_accept; /* what we do instead of the expected outcome */
};

static const struct deviation deviations[] = {
    {.file = "background-steps.yml", .we_accept = false},
};

/* Splits data at "---" lines into documents; returns a new array of new strings. The
 * workflow document is taken as text, not re-emitted, so its line numbers stay its own. */
static char **
split_docs(const char *data, size_t *n)
{
    const char *p = data, *start = data;
    char **docs = NULL;

    *n = 0;
    for (;;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        bool sep = len >= 3 && strncmp(p, "---", 3) == 0 &&
                   (len == 3 || p[3] == ' ' || p[3] == '\r' || p[3] == '\t');
        if (sep || eol == NULL) {
            const char *end = sep ? p : p + len;
            docs = xreallocarray(docs, *n + 1, sizeof *docs);
            docs[(*n)++] = xstrndup(start, (size_t)(end - start));
            start = eol ? eol + 1 : p + len;
        }
        if (eol == NULL)
            break;
        p = eol + 1;
    }
    return docs;
}

/* True when the options document skips implementation "C"/"runnerd". */
static bool
skipped_for_us(const struct ynode *opts)
{
    const struct ynode *skip = ynode_get(opts, "skip");

    if (skip == NULL || skip->kind != YNODE_SEQ)
        return false;
    for (size_t i = 0; i < skip->n; i++)
        if (skip->items[i]->kind == YNODE_SCALAR &&
            (strcmp(skip->items[i]->str, "C") == 0 || strcmp(skip->items[i]->str, "runnerd") == 0))
            return true;
    return false;
}

/* True when some job of the workflow has a `uses:` key. */
static bool
has_job_uses(const struct ynode *wf)
{
    const struct ynode *jobs = ynode_get(wf, "jobs");

    if (jobs == NULL || jobs->kind != YNODE_MAP)
        return false;
    for (size_t i = 0; i < jobs->n; i++)
        if (ynode_get(jobs->items[i], "uses"))
            return true;
    return false;
}

/* Parses "(Line: N, Col: M)" out of a message. */
static bool
parse_line_col(const char *msg, int *line, int *col)
{
    const char *p = strstr(msg, "(Line: ");

    return p && sscanf(p, "(Line: %d, Col: %d)", line, col) == 2;
}

/* Parses "file:N:M: ..." out of one of our messages. */
static bool
our_line_col(const char *msg, int *line, int *col)
{
    const char *p = strchr(msg, ':');

    return p && sscanf(p, ":%d:%d:", line, col) == 2;
}

/* Runs one vector; returns true when it behaves as expected. */
static bool
run_case(const char *dir, const char *name, int *accepted, int *rejected)
{
    char *path = xasprintf("%s/%s", dir, name);
    size_t len = 0;
    char *data = test_read_file(path, &len);
    struct ynode **docs = NULL;
    size_t ndocs = 0;
    struct err e = {0};
    bool ok = false;
    char *wftext = NULL, **texts = NULL;
    size_t ntexts = 0;
    json_t *expected = NULL;
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};
    const struct deviation *dev = NULL;

    if (data == NULL) {
        printf("MISMATCH %s: cannot read\n", name);
        goto out;
    }
    /* The whole file is a YAML stream, but a vector's workflow may be invalid YAML on purpose
     * (a duplicate key), so each document is parsed on its own. */
    if (ydoc_parse_all(name, data, len, &docs, &ndocs, &e) < 0) {
        for (size_t i = 0; i < ndocs; i++)
            ynode_free(docs[i]);
        free(docs);
        docs = NULL;
        texts = split_docs(data, &ntexts);
        ndocs = ntexts;
        docs = xcalloc(ndocs, sizeof *docs);
        for (size_t i = 0; i < ndocs; i++)
            (void)ydoc_parse(name, texts[i], strlen(texts[i]), &docs[i], NULL);
    } else {
        texts = split_docs(data, &ntexts);
    }
    if (ndocs < 3 || ntexts != ndocs || docs[0] == NULL || docs[ndocs - 1] == NULL) {
        printf("MISMATCH %s: vector does not split into documents (%zu/%zu)\n", name, ndocs,
               ntexts);
        goto out;
    }
    if (skipped_for_us(docs[0])) {
        ok = true;
        goto out;
    }
    wftext = xstrdup(texts[1]);
    expected = ynode_to_json(docs[ndocs - 1]);
    for (size_t i = 0; i < sizeof deviations / sizeof deviations[0]; i++)
        if (strcmp(deviations[i].file, name) == 0)
            dev = &deviations[i];

    json_t *errors = json_object_get(expected, "errors");
    bool want_reject = json_is_array(errors) && json_array_size(errors) > 0;
    bool reusable = docs[1] && has_job_uses(docs[1]);
    int rc = wf_parse(name, wftext, strlen(wftext), &w, &d, &e);
    bool rejected_ = rc < 0;

    if (rejected_)
        (*rejected)++;
    else
        (*accepted)++;
    if (dev) {
        ok = rejected_ == !dev->we_accept;
        printf("DEVIATION %s: we %s (expected %s)%s%s\n", name, rejected_ ? "reject" : "accept",
               want_reject ? "reject" : "accept", rejected_ ? ": " : "", rejected_ ? e.msg : "");
        goto out;
    }
    if (reusable) {
        ok = rejected_ && strstr(e.msg, "reusable workflows") != NULL;
        for (size_t i = 0; i < d.n && !ok; i++)
            ok = rejected_ && strstr(d.msgs[i], "reusable workflows") != NULL;
        if (!ok)
            printf("MISMATCH %s: reusable workflow not rejected as unsupported: %s\n", name,
                   rejected_ ? e.msg : "(accepted)");
        goto out;
    }
    if (!want_reject) {
        ok = !rejected_;
        if (!ok) {
            printf("MISMATCH %s: expected accept, got:\n", name);
            for (size_t i = 0; i < d.n; i++)
                printf("    %s\n", d.msgs[i]);
        }
        goto out;
    }
    if (!rejected_) {
        printf("MISMATCH %s: expected reject, accepted\n", name);
        goto out;
    }
    const char *first = json_string_value(json_object_get(json_array_get(errors, 0), "Message"));
    int el = 0, ec = 0, ol = 0, oc = 0;
    if (first == NULL || !parse_line_col(first, &el, &ec) || !our_line_col(e.msg, &ol, &oc)) {
        printf("MISMATCH %s: cannot compare positions: %s / %s\n", name, first ? first : "?",
               e.msg);
        goto out;
    }
    ok = el == ol && ec == oc;
    if (!ok) {
        printf("MISMATCH %s: first error at %d:%d, expected %d:%d\n  ours:     %s\n"
               "  expected: %s\n",
               name, ol, oc, el, ec, e.msg, first);
    }
    /* Informational: how many of GitHub's errors we also report at the same position. */
    size_t found = 0;
    for (size_t i = 0; i < json_array_size(errors); i++) {
        const char *m = json_string_value(json_object_get(json_array_get(errors, i), "Message"));
        if (m == NULL || !parse_line_col(m, &el, &ec))
            continue;
        for (size_t k = 0; k < d.n; k++)
            if (our_line_col(d.msgs[k], &ol, &oc) && ol == el && oc == ec) {
                found++;
                break;
            }
    }
    if (found < json_array_size(errors))
        printf("NOTE %s: %zu of %zu expected error positions reported\n", name, found,
               json_array_size(errors));
out:
    wf_diag_free(&d);
    wf_free(w);
    json_decref(expected);
    free(wftext);
    for (size_t i = 0; i < ntexts; i++)
        free(texts[i]);
    free(texts);
    for (size_t i = 0; i < ndocs; i++)
        ynode_free(docs[i]);
    free(docs);
    free(data);
    free(path);
    return ok;
}

/* Compares a name for qsort. */
static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(conformance_workflow_parser)
{
    const char *dir = RUNNERD_SHARED_DIR "/conformance/workflow-parser";
    DIR *dh = opendir(dir);
    char **names = NULL;
    size_t n = 0;
    int failures = 0, accepted = 0, rejected = 0;
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
        if (!run_case(dir, names[i], &accepted, &rejected))
            failures++;
        free(names[i]);
    }
    free(names);
    printf("conformance: %zu files, %d accepted, %d rejected, %d mismatches\n", n, accepted,
           rejected, failures);
    fflush(stdout);
    ASSERT(n > 0);
    ASSERT_EQ(failures, 0);
}
