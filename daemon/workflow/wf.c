/* wf.c: workflow files into struct wf_workflow, with validation (see wf.h).
 *
 * The YAML tree is walked once. Every problem is recorded with its position and the walk goes
 * on, so one run reports everything; the messages are sorted into file order at the end.
 * Keys follow GitHub's workflow schema (spec §2); expressions are syntax-checked with the
 * expression module; needs are checked for unknown jobs and cycles once all jobs are known. */
#include "wf.h"

#include "dockeropts.h"
#include "expr.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds on work for hostile files: problems kept, and expression errors whose exact ${{
 * position is looked up in the source (the rest get their scalar's position). */
#define WF_MAX_DIAGS 1000
#define WF_MAX_EXPR_POS 50

struct diag_item {
    struct ypos pos;
    size_t seq; /* emission order, to keep the sort stable */
    char *msg;
};

struct wctx {
    const char *file;
    const char *src; /* the file's bytes, for positions inside scalars */
    size_t srclen;
    size_t *lines; /* byte offset of each line start, built on first use */
    size_t nlines;
    struct diag_item *items;
    size_t n, cap;
    size_t dropped;   /* problems past WF_MAX_DIAGS */
    size_t expr_pos_; /* expression positions looked up so far */
    /* What expressions at the current location may name (contexts, status functions,
     * hashFiles); NULL allows everything (action files, which have their own rules). */
    const struct expr_parse_opts *loc;
};

/* ------------------------------------------------------------------------------------------ */
/* Which contexts each location may name                                                      */

/* GitHub's reader refuses an expression naming a context that does not exist yet where it is
 * evaluated (secrets in a job's concurrency, env in a job's if, steps in runs-on...), with
 * "Unrecognized named-value". These are its lists, per key. Deliberate differences, all
 * evaluated by act and so accepted by Gitea: a step's if may name secrets, a job's env may name
 * env (the workflow's env), and a job's name and runs-on may name secrets (the engine masks
 * them wherever they are shown). */
static const char *const ctx_wf[] = {"github", "inputs", "vars", NULL};
static const char *const ctx_wf_env[] = {"github", "inputs", "vars", "secrets", NULL};
static const char *const ctx_wf_output[] = {"github", "inputs", "vars", "jobs", NULL};
static const char *const ctx_needs[] = {"github", "inputs", "vars", "needs", NULL};
static const char *const ctx_job[] = {"github", "inputs", "vars", "needs", "strategy", "matrix",
                                      NULL};
static const char *const ctx_job_secrets[] = {"github", "inputs", "vars", "needs", "strategy",
                                              "matrix", "secrets", NULL};
static const char *const ctx_job_env[] = {"github", "inputs", "vars", "needs", "strategy",
                                          "matrix", "secrets", "env", NULL};
static const char *const ctx_job_defaults[] = {"github", "inputs", "vars", "needs", "strategy",
                                               "matrix", "env", NULL};
static const char *const ctx_creds[] = {"github", "inputs", "vars", "secrets", "env", NULL};
static const char *const ctx_runner[] = {"github", "inputs", "vars", "needs", "strategy",
                                         "matrix", "secrets", "steps", "job", "runner", "env",
                                         NULL};
static const char *const ctx_runner_no_secrets[] = {"github", "inputs", "vars", "needs",
                                                    "strategy", "matrix", "steps", "job",
                                                    "runner", "env", NULL};

/* Workflow-level keys: run-name, concurrency, workflow_call input defaults. */
static const struct expr_parse_opts loc_wf = {.contexts = ctx_wf, .no_status = true,
                                              .no_hash_files = true};
static const struct expr_parse_opts loc_wf_env = {.contexts = ctx_wf_env, .no_status = true,
                                                  .no_hash_files = true};
static const struct expr_parse_opts loc_wf_output = {.contexts = ctx_wf_output,
                                                     .no_status = true, .no_hash_files = true};
/* A job's if: needs and the status functions. */
static const struct expr_parse_opts loc_job_if = {.contexts = ctx_needs, .no_hash_files = true};
/* strategy (the matrix is not known yet). */
static const struct expr_parse_opts loc_strategy = {.contexts = ctx_needs, .no_status = true,
                                                    .no_hash_files = true};
/* runs-on, name, concurrency, environment, container, services, timeouts, with. */
static const struct expr_parse_opts loc_job = {.contexts = ctx_job, .no_status = true,
                                               .no_hash_files = true};
static const struct expr_parse_opts loc_job_name = {.contexts = ctx_job_secrets,
                                                    .no_status = true, .no_hash_files = true};
static const struct expr_parse_opts loc_job_env = {.contexts = ctx_job_env, .no_status = true,
                                                   .no_hash_files = true};
static const struct expr_parse_opts loc_job_defaults = {.contexts = ctx_job_defaults,
                                                        .no_status = true,
                                                        .no_hash_files = true};
static const struct expr_parse_opts loc_creds = {.contexts = ctx_creds, .no_status = true,
                                                 .no_hash_files = true};
/* Job outputs, container and service env: evaluated on the runner, after the steps. */
static const struct expr_parse_opts loc_runner = {.contexts = ctx_runner, .no_status = true,
                                                  .no_hash_files = true};
static const struct expr_parse_opts loc_env_url = {.contexts = ctx_runner_no_secrets,
                                                   .no_status = true, .no_hash_files = true};
/* A step's keys, and its if (which alone may call the status functions). */
static const struct expr_parse_opts loc_step = {.contexts = ctx_runner, .no_status = true};
static const struct expr_parse_opts loc_step_if = {.contexts = ctx_runner};

/* Sets the location for the expressions checked next; returns the previous one. */
static const struct expr_parse_opts *
set_loc(struct wctx *c, const struct expr_parse_opts *loc)
{
    const struct expr_parse_opts *old = c->loc;

    c->loc = loc;
    return old;
}

/* ------------------------------------------------------------------------------------------ */
/* Diagnostics                                                                                */

/* Records a problem at pos. */
static void diag(struct wctx *c, struct ypos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats "file:line:col: message"; past WF_MAX_DIAGS problems are only counted. */
static void
diag(struct wctx *c, struct ypos pos, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    char *text;
    va_list ap;

    if (c->n >= WF_MAX_DIAGS) {
        c->dropped++;
        return;
    }
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0) {
        va_end(ap);
        abort();
    }
    va_end(ap);
    buf_printf(&b, "%s:%d:%d: %s", c->file, pos.line, pos.col, text);
    free(text);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->items = xreallocarray(c->items, c->cap, sizeof *c->items);
    }
    c->items[c->n].pos = pos;
    c->items[c->n].seq = c->n;
    c->items[c->n].msg = buf_steal(&b);
    c->n++;
}

/* Orders diagnostics by position, then by emission. */
static int
diag_cmp(const void *a, const void *b)
{
    const struct diag_item *x = a, *y = b;

    if (x->pos.line != y->pos.line)
        return x->pos.line < y->pos.line ? -1 : 1;
    if (x->pos.col != y->pos.col)
        return x->pos.col < y->pos.col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Frees the messages and leaves d empty, ready for reuse. */
void
wf_diag_free(struct wf_diag *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->n = 0;
}

/* Returns a new quoted-for-messages copy of a scalar's text. */
static char *
q(const struct ynode *n)
{
    if (n == NULL || n->kind != YNODE_SCALAR)
        return xstrdup("");
    return ydoc_quote(n->str, n->len);
}

/* Reports that n has the wrong type. */
static void
diag_type(struct wctx *c, const char *path, const struct ynode *n, const char *expected)
{
    diag(c, n->pos, "%s: expected %s, got %s", path, expected, ynode_kind_name(n));
}

/* ------------------------------------------------------------------------------------------ */
/* Positions inside scalars                                                                   */

/* Returns the byte offset in the source of a 1-based position, or SIZE_MAX. */
static size_t
src_offset(struct wctx *c, struct ypos pos)
{
    if (c->src == NULL || pos.line < 1 || pos.col < 1)
        return SIZE_MAX;
    if (c->lines == NULL) {
        size_t cap = 64;
        c->lines = xreallocarray(NULL, cap, sizeof *c->lines);
        c->lines[c->nlines++] = 0;
        for (size_t i = 0; i < c->srclen; i++) {
            /* libyaml counts \r\n, \r and \n as line breaks. */
            bool br = c->src[i] == '\n' ||
                      (c->src[i] == '\r' && (i + 1 >= c->srclen || c->src[i + 1] != '\n'));
            if (!br)
                continue;
            if (c->nlines == cap) {
                cap *= 2;
                c->lines = xreallocarray(c->lines, cap, sizeof *c->lines);
            }
            c->lines[c->nlines++] = i + 1;
        }
    }
    if ((size_t)pos.line > c->nlines)
        return SIZE_MAX;
    size_t off = c->lines[pos.line - 1];
    /* Columns count characters: step over col - 1 UTF-8 sequences. */
    for (int k = 1; k < pos.col; k++) {
        if (off >= c->srclen)
            return SIZE_MAX;
        off++;
        while (off < c->srclen && ((unsigned char)c->src[off] & 0xc0) == 0x80)
            off++;
    }
    return off;
}

/* Returns the position of the ${{ at byte offset in scalar n's value, found by matching the
 * same occurrence of "${{" in the scalar's source text; the scalar's own position when the
 * source cannot be matched (escapes, unusual encodings). */
static struct ypos
expr_pos(struct wctx *c, const struct ynode *n, size_t offset)
{
    size_t k = 0, start, end;
    const char *p = n->str;

    if (c->expr_pos_++ >= WF_MAX_EXPR_POS)
        return n->pos;
    while ((p = strstr(p, "${{")) != NULL && (size_t)(p - n->str) < offset) {
        k++;
        p += 3;
    }
    start = src_offset(c, n->pos);
    end = src_offset(c, n->end);
    if (start == SIZE_MAX || end == SIZE_MAX || end > c->srclen || start >= end)
        return n->pos;
    for (size_t i = start; i + 3 <= end; i++) {
        if (memcmp(c->src + i, "${{", 3) != 0)
            continue;
        if (k-- > 0)
            continue;
        /* Found it: compute line and column from the line table. */
        size_t lo = 0, hi = c->nlines;
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (c->lines[mid] <= i)
                lo = mid;
            else
                hi = mid;
        }
        struct ypos r = {.line = (int)lo + 1, .col = 1};
        for (size_t j = c->lines[lo]; j < i; j++)
            if (((unsigned char)c->src[j] & 0xc0) != 0x80)
                r.col++;
        return r;
    }
    return n->pos;
}

/* ------------------------------------------------------------------------------------------ */
/* Expressions                                                                                */

/* True when s contains a template expression. */
static bool
has_expr(const struct ynode *n)
{
    return n && n->kind == YNODE_SCALAR && memmem(n->str, n->len, "${{", 3) != NULL;
}

/* True when s is exactly "${{ insert }}" (whitespace allowed around insert). */
static bool
is_insert(const char *s)
{
    if (strncmp(s, "${{", 3) != 0)
        return false;
    s += 3;
    while (isspace((unsigned char)*s))
        s++;
    if (strncmp(s, "insert", 6) != 0)
        return false;
    s += 6;
    while (isspace((unsigned char)*s))
        s++;
    return strcmp(s, "}}") == 0;
}

/* True when s embeds ${{ insert }} among other text. */
static bool
embeds_insert(const char *s)
{
    for (const char *p = strstr(s, "${{"); p; p = strstr(p + 3, "${{")) {
        const char *t = p + 3;
        while (isspace((unsigned char)*t))
            t++;
        if (strncmp(t, "insert", 6) != 0)
            continue;
        t += 6;
        while (isspace((unsigned char)*t))
            t++;
        if (strncmp(t, "}}", 2) == 0)
            return true;
    }
    return false;
}

/* Checks a scalar where expressions are allowed: every ${{ }} must parse. */
static void
check_template(struct wctx *c, const char *path, const struct ynode *n)
{
    struct err e = {0};
    size_t off = 0;

    if (!has_expr(n))
        return;
    if (strlen(n->str) != n->len) {
        diag(c, n->pos, "%s: a NUL character is not allowed in a string", path);
        return;
    }
    if (embeds_insert(n->str)) {
        diag(c, n->pos,
             "%s: the 'insert' directive is only allowed as a whole mapping key "
             "('${{ insert }}:'), not inside a string",
             path);
        return;
    }
    if (expr_template_check_ex(n->str, c->loc, &off, &e) < 0) {
        if (off > n->len)
            off = 0;
        diag(c, expr_pos(c, n, off), "%s: invalid expression: %s", path, e.msg);
    }
}

/* Reports an expression in a scalar where none is allowed. Returns true if one was found. */
static bool
check_no_expr(struct wctx *c, const char *path, const struct ynode *n)
{
    if (!has_expr(n))
        return false;
    diag(c, n->pos, "%s: expressions are not allowed here", path);
    return true;
}

/* Checks an `if:` value: an expression with or without ${{ }}. */
static void
check_if(struct wctx *c, const char *path, const struct ynode *n)
{
    struct expr *x = NULL;
    struct err e = {0};

    if (n->kind != YNODE_SCALAR) {
        diag_type(c, path, n, "a string (an expression)");
        return;
    }
    if (ynode_is_null(n))
        return;
    if (has_expr(n)) {
        check_template(c, path, n);
        return;
    }
    if (strlen(n->str) != n->len) {
        diag(c, n->pos, "%s: a NUL character is not allowed in a string", path);
        return;
    }
    if (expr_parse_ex(n->str, n->len, c->loc, &x, &e) < 0)
        diag(c, n->pos, "%s: invalid expression: %s", path, e.msg);
    expr_free(x);
}

/* ------------------------------------------------------------------------------------------ */
/* Shapes                                                                                     */

/* Reports keys of map not in allowed (NULL-terminated), non-string keys and expression keys. */
static void
check_keys(struct wctx *c, const char *path, const struct ynode *map, const char *const *allowed)
{
    for (size_t i = 0; i < map->n; i++) {
        const struct ynode *k = map->keys[i];
        bool ok = false;

        if (k->kind != YNODE_SCALAR) {
            diag(c, k->pos, "%s: expected a string key, got %s", path, ynode_kind_name(k));
            continue;
        }
        if (check_no_expr(c, path, k))
            continue;
        if (!k->quoted && strcmp(k->str, "<<") == 0) {
            diag(c, k->pos, "%s%sYAML merge keys ('<<') are not supported; repeat the keys or "
                            "use an alias for the whole value", path, path[0] ? ": " : "");
            continue;
        }
        for (size_t j = 0; allowed[j] && !ok; j++)
            ok = strcmp(k->str, allowed[j]) == 0 && strlen(allowed[j]) == k->len;
        if (ok)
            continue;
        struct buf list = BUF_INIT;
        for (size_t j = 0; allowed[j]; j++)
            buf_printf(&list, "%s%s", j ? ", " : "", allowed[j]);
        char *kq = q(k);
        const char *sep = path[0] ? ": " : "";
        if (allowed[0])
            diag(c, k->pos, "%s%sunknown key '%s' (expected one of: %s)", path, sep, kq,
                 buf_str(&list));
        else
            diag(c, k->pos, "%s%sunknown key '%s' (no keys are allowed here)", path, sep, kq);
        free(kq);
        buf_free(&list);
    }
}

/* Returns a new path: base + "." + key. */
static char *
sub(const char *base, const char *key)
{
    return base[0] ? xasprintf("%s.%s", base, key) : xstrdup(key);
}

/* Returns a new path: base + "." + the key node's text (quoted for messages). */
static char *
subk(const char *base, const struct ynode *k)
{
    char *kq = q(k);
    char *r = sub(base, kq);
    free(kq);
    return r;
}

/* Checks a scalar string value (expressions allowed per allow_expr); fills out if non-NULL.
 * Null counts as absent. */
static void
get_str(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr,
        struct wf_str *out)
{
    if (n == NULL)
        return;
    if (n->kind != YNODE_SCALAR) {
        diag_type(c, path, n, "a string");
        return;
    }
    if (strlen(n->str) != n->len) {
        diag(c, n->pos, "%s: a NUL character is not allowed in a string", path);
        return;
    }
    if (allow_expr)
        check_template(c, path, n);
    else
        check_no_expr(c, path, n);
    if (out && !ynode_is_null(n)) {
        out->v = xstrdup(n->str);
        out->pos = n->pos;
    }
}

/* Checks a string-keyed mapping of scalars (env, with, outputs, ...); with allow_whole, the
 * whole value may also be one "${{ }}" scalar. */
static void
check_scalar_map(struct wctx *c, const char *path, const struct ynode *n, bool allow_whole)
{
    if (n->kind == YNODE_SCALAR && allow_whole && has_expr(n)) {
        check_template(c, path, n);
        return;
    }
    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            diag_type(c, path, n, "a mapping");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        if (k->kind != YNODE_SCALAR) {
            diag(c, k->pos, "%s: expected a string key, got %s", path, ynode_kind_name(k));
            continue;
        }
        char *p = subk(path, k);
        if (!is_insert(k->str))
            check_no_expr(c, path, k);
        if (v->kind != YNODE_SCALAR && !is_insert(k->str))
            diag_type(c, p, v, "a string");
        else if (v->kind == YNODE_SCALAR)
            check_template(c, p, v);
        free(p);
    }
}

/* Checks a scalar that must be a number, or an expression. */
static void
check_number(struct wctx *c, const char *path, const struct ynode *n)
{
    char *end;

    if (n->kind != YNODE_SCALAR) {
        diag_type(c, path, n, "a number");
        return;
    }
    if (has_expr(n)) {
        check_template(c, path, n);
        return;
    }
    if (ynode_is_null(n))
        return;
    errno = 0;
    (void)strtod(n->str, &end);
    if (n->len == 0 || *end != '\0' || isspace((unsigned char)n->str[0])) {
        char *v = q(n);
        diag(c, n->pos, "%s: expected a number, got '%s'", path, v);
        free(v);
    }
}

const char *
wf_minutes_problem(const char *text, double *minutes)
{
    char *end;
    double d;

    if (text == NULL || *text == '\0' || isspace((unsigned char)*text))
        return "expected a positive number of minutes";
    errno = 0;
    d = strtod(text, &end);
    while (isspace((unsigned char)*end))
        end++;
    if (*end != '\0' || errno || !isfinite(d))
        return "expected a positive number of minutes";
    if (!(d > 0))
        return "expected a positive number of minutes (0 and negative values are not limits)";
    if (d > WF_MAX_TIMEOUT_MINUTES)
        return "at most " WF_STR(WF_MAX_TIMEOUT_MINUTES) " minutes (30 days)";
    if (minutes)
        *minutes = d;
    return NULL;
}

/* Checks timeout-minutes: a literal must be a positive number of sane size now; an expression
 * is checked when it is evaluated (jobrun), where its value is known. */
static void
check_minutes(struct wctx *c, const char *path, const struct ynode *n)
{
    const char *why;

    check_number(c, path, n);
    if (n->kind != YNODE_SCALAR || has_expr(n) || ynode_is_null(n) || n->len == 0)
        return;
    char *end;
    (void)strtod(n->str, &end);
    if (*end != '\0' || isspace((unsigned char)n->str[0]))
        return; /* not a number: check_number said so */
    if ((why = wf_minutes_problem(n->str, NULL)) != NULL) {
        char *v = q(n);
        diag(c, n->pos, "%s: %s, got '%s'", path, why, v);
        free(v);
    }
}

/* Checks a scalar that must be a boolean, or an expression. */
static void
check_bool(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const ok[] = {"true", "True", "TRUE", "false", "False", "FALSE", NULL};

    if (n->kind != YNODE_SCALAR) {
        diag_type(c, path, n, "a boolean");
        return;
    }
    if (has_expr(n)) {
        check_template(c, path, n);
        return;
    }
    if (ynode_is_null(n))
        return;
    for (size_t i = 0; ok[i]; i++)
        if (strcmp(n->str, ok[i]) == 0)
            return;
    char *v = q(n);
    diag(c, n->pos, "%s: expected a boolean (true or false), got '%s'", path, v);
    free(v);
}

/* Checks a string or a sequence of strings (expressions allowed per allow_expr). */
static void
check_str_or_seq(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr)
{
    if (n->kind == YNODE_SCALAR) {
        get_str(c, path, n, allow_expr, NULL);
        return;
    }
    if (n->kind != YNODE_SEQ) {
        diag_type(c, path, n, "a string or a sequence of strings");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        char *p = xasprintf("%s[%zu]", path, i);
        get_str(c, p, n->items[i], allow_expr, NULL);
        free(p);
    }
}

/* Checks every scalar inside n (keys and values) as a template. */
static void
check_tree(struct wctx *c, const char *path, const struct ynode *n)
{
    if (n->kind == YNODE_SCALAR) {
        check_template(c, path, n);
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        char *p;
        if (n->kind == YNODE_MAP) {
            const struct ynode *k = n->keys[i];
            if (k->kind == YNODE_SCALAR && !is_insert(k->str))
                check_no_expr(c, path, k);
            else if (k->kind != YNODE_SCALAR)
                diag(c, k->pos, "%s: expected a string key, got %s", path, ynode_kind_name(k));
            p = subk(path, k);
        } else {
            p = xasprintf("%s[%zu]", path, i);
        }
        check_tree(c, p, n->items[i]);
        free(p);
    }
}

static void check_enum(struct wctx *c, const char *path, const struct ynode *n,
                       const char *const *allowed);

/* Checks concurrency: a string (the group) or {group, cancel-in-progress, queue}. */
static void
check_concurrency(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"group", "cancel-in-progress", "queue", NULL};
    static const char *const queue[] = {"single", "max", NULL};

    if (n->kind == YNODE_SCALAR) {
        check_template(c, path, n);
        return;
    }
    if (n->kind != YNODE_MAP) {
        diag_type(c, path, n, "a string or a mapping");
        return;
    }
    check_keys(c, path, n, keys);
    const struct ynode *g = ynode_get(n, "group"), *cip = ynode_get(n, "cancel-in-progress");
    if (g) {
        char *p = sub(path, "group");
        get_str(c, p, g, true, NULL);
        free(p);
    } else {
        diag(c, n->pos, "%s: missing required key 'group'", path);
    }
    if (ynode_get(n, "queue")) {
        char *p = sub(path, "queue");
        check_enum(c, p, ynode_get(n, "queue"), queue);
        free(p);
    }
    if (cip) {
        char *p = sub(path, "cancel-in-progress");
        check_bool(c, p, cip);
        free(p);
    }
}

/* Checks permissions as GitHub's reader does: read-all or write-all, or a mapping of known
 * scopes to read, write or none (id-token has no read level, models no write level). A typo
 * such as `contents: wirte` must fail here rather than run the job with a token it did not
 * ask for. The empty mapping {} (no permissions at all) is allowed. */
static void
check_permissions(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const all[] = {"read-all", "write-all", NULL};
    static const char *const scopes[] = {
        "actions", "attestations", "checks", "contents", "deployments", "discussions",
        "id-token", "issues", "models", "packages", "pages", "pull-requests",
        "repository-projects", "security-events", "statuses", NULL};
    static const char *const levels[] = {"read", "write", "none", NULL};
    static const char *const write_none[] = {"write", "none", NULL};
    static const char *const read_none[] = {"read", "none", NULL};

    if (n->kind == YNODE_SCALAR) {
        if (!ynode_is_null(n) && !check_no_expr(c, path, n))
            check_enum(c, path, n, all);
        return;
    }
    if (n->kind != YNODE_MAP) {
        diag_type(c, path, n, "a string or a mapping");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        if (k->kind != YNODE_SCALAR) {
            diag(c, k->pos, "%s: expected a string key, got %s", path, ynode_kind_name(k));
            continue;
        }
        if (check_no_expr(c, path, k))
            continue;
        char *p = subk(path, k);
        check_enum(c, path, k, scopes);
        if (!check_no_expr(c, p, v)) {
            if (strcmp(k->str, "id-token") == 0)
                check_enum(c, p, v, write_none);
            else if (strcmp(k->str, "models") == 0)
                check_enum(c, p, v, read_none);
            else
                check_enum(c, p, v, levels);
        }
        free(p);
    }
}

/* Checks defaults: {run: {shell, working-directory}} and reads the two strings. */
static void
read_defaults(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr,
              struct wf_str *shell, struct wf_str *wd)
{
    static const char *const keys[] = {"run", NULL};
    static const char *const run_keys[] = {"shell", "working-directory", NULL};

    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            diag_type(c, path, n, "a mapping");
        return;
    }
    check_keys(c, path, n, keys);
    const struct ynode *run = ynode_get(n, "run");
    if (run == NULL)
        return;
    char *p = sub(path, "run");
    if (run->kind != YNODE_MAP) {
        if (!ynode_is_null(run))
            diag_type(c, p, run, "a mapping");
        free(p);
        return;
    }
    check_keys(c, p, run, run_keys);
    char *ps = sub(p, "shell"), *pw = sub(p, "working-directory");
    get_str(c, ps, ynode_get(run, "shell"), allow_expr, shell);
    get_str(c, pw, ynode_get(run, "working-directory"), allow_expr, wd);
    free(ps);
    free(pw);
    free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* on:                                                                                        */

struct event_def {
    const char *name;
    const char *const *keys; /* allowed config keys */
};

static const char *const ev_push[] = {"branches", "branches-ignore", "tags", "tags-ignore",
                                      "paths", "paths-ignore", NULL};
static const char *const ev_pr[] = {"types", "branches", "branches-ignore", "paths",
                                    "paths-ignore", NULL};
static const char *const ev_types[] = {"types", NULL};
static const char *const ev_none[] = {NULL};
static const char *const ev_dispatch[] = {"inputs", NULL};
static const char *const ev_call[] = {"inputs", "outputs", "secrets", NULL};
static const char *const ev_run[] = {"workflows", "types", "branches", "branches-ignore", NULL};
static const char *const ev_merge[] = {"types", "branches", "branches-ignore", NULL};
static const char *const ev_image[] = {"types", "names", NULL};

/* Events whose configuration GitHub's schema defines. Other names are accepted with any
 * mapping, since Gitea adds events of its own. */
static const struct event_def events[] = {
    {"push", ev_push},
    {"pull_request", ev_pr},
    {"pull_request_target", ev_pr},
    {"workflow_dispatch", ev_dispatch},
    {"workflow_call", ev_call},
    {"workflow_run", ev_run},
    {"merge_group", ev_merge},
    {"image_version", ev_image},
    {"branch_protection_rule", ev_types},
    {"check_run", ev_types},
    {"check_suite", ev_types},
    {"discussion", ev_types},
    {"discussion_comment", ev_types},
    {"issue_comment", ev_types},
    {"issues", ev_types},
    {"label", ev_types},
    {"milestone", ev_types},
    {"project", ev_types},
    {"project_card", ev_types},
    {"project_column", ev_types},
    {"pull_request_comment", ev_types},
    {"pull_request_review", ev_types},
    {"pull_request_review_comment", ev_types},
    {"registry_package", ev_types},
    {"release", ev_types},
    {"repository_dispatch", ev_types},
    {"watch", ev_types},
    {"create", ev_none},
    {"delete", ev_none},
    {"deployment", ev_none},
    {"deployment_status", ev_none},
    {"fork", ev_none},
    {"gollum", ev_none},
    {"page_build", ev_none},
    {"public", ev_none},
    {"status", ev_none},
};

/* Checks that n's text is one of allowed. */
static void
check_enum(struct wctx *c, const char *path, const struct ynode *n, const char *const *allowed)
{
    if (n->kind != YNODE_SCALAR) {
        diag_type(c, path, n, "a string");
        return;
    }
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(n->str, allowed[i]) == 0)
            return;
    struct buf list = BUF_INIT;
    for (size_t i = 0; allowed[i]; i++)
        buf_printf(&list, "%s%s", i ? ", " : "", allowed[i]);
    char *v = q(n);
    diag(c, n->pos, "%s: unexpected value '%s' (expected one of: %s)", path, v, buf_str(&list));
    free(v);
    buf_free(&list);
}

/* Checks a mapping id -> mapping (or null), calling fn for each mapping entry. */
static void
check_id_map(struct wctx *c, const char *path, const struct ynode *n, bool null_ok,
             void (*fn)(struct wctx *, const char *, const struct ynode *))
{
    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            diag_type(c, path, n, "a mapping");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        if (k->kind != YNODE_SCALAR) {
            diag(c, k->pos, "%s: expected a string key, got %s", path, ynode_kind_name(k));
            continue;
        }
        if (check_no_expr(c, path, k))
            continue;
        char *p = subk(path, k);
        if (v->kind == YNODE_MAP)
            fn(c, p, v);
        else if (!(null_ok && ynode_is_null(v)))
            diag_type(c, p, v, "a mapping");
        free(p);
    }
}

/* workflow_dispatch.inputs.<id> */
static void
check_dispatch_input(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"description", "required", "default", "type", "options",
                                       NULL};
    static const char *const types[] = {"string", "boolean", "choice", "number", "environment",
                                        NULL};
    const struct ynode *v;

    check_keys(c, path, n, keys);
    if ((v = ynode_get(n, "type")) != NULL) {
        char *p = sub(path, "type");
        check_enum(c, p, v, types);
        free(p);
    }
    if ((v = ynode_get(n, "required")) != NULL) {
        char *p = sub(path, "required");
        check_bool(c, p, v);
        free(p);
    }
    if ((v = ynode_get(n, "description")) != NULL) {
        char *p = sub(path, "description");
        get_str(c, p, v, false, NULL);
        free(p);
    }
    if ((v = ynode_get(n, "default")) != NULL) {
        char *p = sub(path, "default");
        get_str(c, p, v, false, NULL);
        free(p);
    }
    if ((v = ynode_get(n, "options")) != NULL) {
        char *p = sub(path, "options");
        if (v->kind != YNODE_SEQ)
            diag_type(c, p, v, "a sequence");
        else
            check_str_or_seq(c, p, v, false);
        free(p);
    }
}

/* workflow_call.inputs.<id> */
static void
check_call_input(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"description", "required", "default", "type", NULL};
    static const char *const types[] = {"boolean", "number", "string", NULL};
    const struct ynode *v;

    check_keys(c, path, n, keys);
    if ((v = ynode_get(n, "type")) != NULL) {
        char *p = sub(path, "type");
        check_enum(c, p, v, types);
        free(p);
    }
    if ((v = ynode_get(n, "required")) != NULL) {
        char *p = sub(path, "required");
        check_bool(c, p, v);
        free(p);
    }
    if ((v = ynode_get(n, "description")) != NULL) {
        char *p = sub(path, "description");
        get_str(c, p, v, false, NULL);
        free(p);
    }
    if ((v = ynode_get(n, "default")) != NULL) {
        char *p = sub(path, "default");
        get_str(c, p, v, true, NULL);
        free(p);
    }
}

/* workflow_call.outputs.<id> */
static void
check_call_output(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"description", "value", NULL};
    const struct ynode *v;

    check_keys(c, path, n, keys);
    if ((v = ynode_get(n, "value")) != NULL) {
        const struct expr_parse_opts *saved = set_loc(c, &loc_wf_output);
        char *p = sub(path, "value");
        get_str(c, p, v, true, NULL);
        set_loc(c, saved);
        free(p);
    } else {
        diag(c, n->pos, "%s: missing required key 'value'", path);
    }
    if ((v = ynode_get(n, "description")) != NULL) {
        char *p = sub(path, "description");
        get_str(c, p, v, false, NULL);
        free(p);
    }
}

/* workflow_call.secrets.<id> */
static void
check_call_secret(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"description", "required", NULL};
    const struct ynode *v;

    check_keys(c, path, n, keys);
    if ((v = ynode_get(n, "required")) != NULL) {
        char *p = sub(path, "required");
        check_bool(c, p, v);
        free(p);
    }
    if ((v = ynode_get(n, "description")) != NULL) {
        char *p = sub(path, "description");
        get_str(c, p, v, false, NULL);
        free(p);
    }
}

/* Checks one event's configuration. */
static void
check_event_config(struct wctx *c, const char *path, const char *name, const struct ynode *n)
{
    const struct event_def *def = NULL;

    if (strcmp(name, "schedule") == 0) {
        static const char *const keys[] = {"cron", "timezone", NULL};
        if (n->kind != YNODE_SEQ) {
            diag_type(c, path, n, "a sequence of {cron: ...}");
            return;
        }
        for (size_t i = 0; i < n->n; i++) {
            const struct ynode *it = n->items[i];
            char *p = xasprintf("%s[%zu]", path, i);
            if (it->kind != YNODE_MAP) {
                diag_type(c, p, it, "a mapping");
            } else {
                check_keys(c, p, it, keys);
                const struct ynode *cron = ynode_get(it, "cron");
                char *pc = sub(p, "cron");
                if (cron == NULL)
                    diag(c, it->pos, "%s: missing required key 'cron'", p);
                else
                    get_str(c, pc, cron, false, NULL);
                free(pc);
            }
            free(p);
        }
        return;
    }
    if (ynode_is_null(n))
        return;
    if (n->kind != YNODE_MAP) {
        diag_type(c, path, n, "a mapping");
        return;
    }
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (strcmp(events[i].name, name) == 0)
            def = &events[i];
    if (def == NULL) {
        check_tree(c, path, n);
        return;
    }
    check_keys(c, path, n, def->keys);
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        bool known = false;
        if (k->kind != YNODE_SCALAR)
            continue;
        for (size_t d = 0; def->keys[d] && !known; d++)
            known = strcmp(k->str, def->keys[d]) == 0;
        if (!known)
            continue; /* reported by check_keys() */
        char *p = subk(path, k);
        if (strcmp(k->str, "inputs") == 0 && strcmp(name, "workflow_dispatch") == 0)
            check_id_map(c, p, v, true, check_dispatch_input); /* null: a string input */
        else if (strcmp(k->str, "inputs") == 0 && strcmp(name, "workflow_call") == 0)
            check_id_map(c, p, v, false, check_call_input);
        else if (strcmp(k->str, "outputs") == 0 && strcmp(name, "workflow_call") == 0)
            check_id_map(c, p, v, false, check_call_output);
        else if (strcmp(k->str, "secrets") == 0 && strcmp(name, "workflow_call") == 0)
            check_id_map(c, p, v, true, check_call_secret);
        else if (!ynode_is_null(v))
            check_str_or_seq(c, p, v, false);
        free(p);
    }
}

/* Adds an event to the workflow. */
static void
add_event(struct wf_workflow *w, const struct ynode *name, struct ynode *config)
{
    size_t n = w->n_events;

    if ((n & (n - 1)) == 0) /* 0, 1, 2, 4, ...: grow by doubling */
        w->events = xreallocarray(w->events, n ? n * 2 : 1, sizeof *w->events);
    w->events[w->n_events].name = xstrdup(name->str);
    w->events[w->n_events].pos = name->pos;
    w->events[w->n_events].config = config;
    w->n_events++;
}

/* Reads `on`: a string, a sequence of strings or a mapping event -> config. */
static void
read_on(struct wctx *c, struct wf_workflow *w, struct ynode *n)
{
    w->on = n;
    if (n->kind == YNODE_SCALAR) {
        if (ynode_is_null(n))
            diag(c, n->pos, "on: expected an event name, a sequence or a mapping of events");
        else if (!check_no_expr(c, "on", n))
            add_event(w, n, NULL);
        return;
    }
    if (n->kind == YNODE_SEQ) {
        for (size_t i = 0; i < n->n; i++) {
            const struct ynode *it = n->items[i];
            char *p = xasprintf("on[%zu]", i);
            if (it->kind != YNODE_SCALAR || ynode_is_null(it))
                diag_type(c, p, it, "an event name");
            else if (!check_no_expr(c, p, it))
                add_event(w, it, NULL);
            free(p);
        }
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i];
        struct ynode *v = n->items[i];
        if (k->kind != YNODE_SCALAR) {
            diag(c, k->pos, "on: expected an event name, got %s", ynode_kind_name(k));
            continue;
        }
        if (check_no_expr(c, "on", k))
            continue;
        char *p = subk("on", k);
        check_event_config(c, p, k->str, v);
        free(p);
        add_event(w, k, ynode_is_null(v) ? NULL : v);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Jobs and steps                                                                             */

/* True when id matches ^[A-Za-z_][A-Za-z0-9_-]*$. */
static bool
valid_id(const char *s, size_t len)
{
    if (len == 0 || strlen(s) != len || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Checks literal docker run options now (what no label setting allows: --privileged, --security-opt, --network, --entrypoint in a job container, limits switched
 * off, bad capability names, host-path volumes), so that a hostile workflow is refused before
 * anything runs. Which capabilities may be added depends on the label, and flags the runner
 * does not support are refused when the job starts (GitHub's reader accepts them). */
static void
check_options(struct wctx *c, const char *path, const struct ynode *n, bool is_service)
{
    struct dockeropts o;
    struct err e = {0};
    const char *why;

    if (n->kind != YNODE_SCALAR || has_expr(n) || ynode_is_null(n) || strlen(n->str) != n->len)
        return;
    if (dockeropts_parse(n->str, path, DOCKEROPTS_SKIP_UNKNOWN | (is_service ? 0 : DOCKEROPTS_JOB),
                         &o, &e) < 0) {
        diag(c, n->pos, "%s", e.msg);
    } else {
        for (size_t i = 0; i < o.nvolumes; i++)
            if ((why = dockeropts_volume_problem(o.volumes[i])) != NULL)
                diag(c, n->pos, "%s: -v %s: %s", path, o.volumes[i], why);
    }
    dockeropts_free(&o);
}

/* Checks a container (job container: string or mapping) or a service (mapping). */
static void
check_container(struct wctx *c, const char *path, const struct ynode *n, bool is_service)
{
    static const char *const keys[] = {"image", "env", "ports", "volumes", "options",
                                       "credentials", NULL};
    static const char *const service_keys[] = {"image", "env", "ports", "volumes", "options",
                                               "credentials", "entrypoint", "command", NULL};
    static const char *const cred_keys[] = {"username", "password", NULL};
    const struct ynode *v;

    if (n->kind == YNODE_SCALAR) {
        if (ynode_is_null(n) || n->len == 0)
            diag(c, n->pos, "%s: expected an image name, got an empty value", path);
        else
            check_template(c, path, n);
        return;
    }
    if (n->kind != YNODE_MAP) {
        diag_type(c, path, n, "an image name or a mapping");
        return;
    }
    check_keys(c, path, n, is_service ? service_keys : keys);
    if (is_service) {
        static const char *const strs[] = {"entrypoint", "command", NULL};
        for (size_t i = 0; strs[i]; i++) {
            if ((v = ynode_get(n, strs[i])) != NULL) {
                char *ps = sub(path, strs[i]);
                get_str(c, ps, v, true, NULL);
                free(ps);
            }
        }
    }
    char *p = sub(path, "image");
    if ((v = ynode_get(n, "image")) != NULL) {
        if (v->kind == YNODE_SCALAR && (ynode_is_null(v) || v->len == 0))
            diag(c, v->pos, "%s: expected an image name, got an empty value", p);
        else
            get_str(c, p, v, true, NULL);
    } else {
        /* Without an image there is nothing to run the job (or service) in; refuse it here
         * rather than fail at the job's start with a Docker error. */
        diag(c, n->pos, "%s: missing required key 'image'", path);
    }
    free(p);
    if ((v = ynode_get(n, "env")) != NULL) {
        const struct expr_parse_opts *saved = set_loc(c, c->loc ? &loc_runner : NULL);
        p = sub(path, "env");
        check_scalar_map(c, p, v, true);
        set_loc(c, saved);
        free(p);
    }
    if ((v = ynode_get(n, "ports")) != NULL) {
        p = sub(path, "ports");
        if (v->kind != YNODE_SEQ && !ynode_is_null(v))
            diag_type(c, p, v, "a sequence");
        else if (v->kind == YNODE_SEQ)
            check_str_or_seq(c, p, v, true);
        free(p);
    }
    if ((v = ynode_get(n, "volumes")) != NULL) {
        p = sub(path, "volumes");
        if (v->kind != YNODE_SEQ && !ynode_is_null(v))
            diag_type(c, p, v, "a sequence");
        else if (v->kind == YNODE_SEQ)
            check_str_or_seq(c, p, v, true);
        for (size_t i = 0; v->kind == YNODE_SEQ && i < v->n; i++) {
            const struct ynode *it = v->items[i];
            const char *why;
            if (it->kind == YNODE_SCALAR && !has_expr(it) &&
                (why = dockeropts_volume_problem(it->str)) != NULL)
                diag(c, it->pos, "%s[%zu]: volume '%s': %s", p, i, it->str, why);
        }
        free(p);
    }
    if ((v = ynode_get(n, "options")) != NULL) {
        p = sub(path, "options");
        get_str(c, p, v, true, NULL);
        check_options(c, p, v, is_service);
        free(p);
    }
    if ((v = ynode_get(n, "credentials")) != NULL) {
        const struct expr_parse_opts *saved = set_loc(c, c->loc ? &loc_creds : NULL);
        p = sub(path, "credentials");
        if (v->kind == YNODE_MAP) {
            check_keys(c, p, v, cred_keys);
            check_scalar_map(c, p, v, false);
        } else if (!has_expr(v)) {
            diag_type(c, p, v, "a mapping");
        } else {
            check_template(c, p, v);
        }
        set_loc(c, saved);
        free(p);
    }
}

/* Checks a runs-on group name as GitHub does: a plain name, or one prefix naming where the
 * group is defined ('organization/', 'enterprise/' or their short forms) and a non-empty name.
 * Any other slash is a mistake that would never match a runner. */
static void
check_runner_group(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const prefixes[] = {"org", "organization", "ent", "enterprise", NULL};
    const char *slash;
    bool known = false;

    if (n->kind != YNODE_SCALAR || ynode_is_null(n) || has_expr(n) || strlen(n->str) != n->len)
        return;
    slash = strchr(n->str, '/');
    if (slash == NULL)
        return;
    for (size_t i = 0; prefixes[i] && !known; i++)
        known = strlen(prefixes[i]) == (size_t)(slash - n->str) &&
                strncmp(n->str, prefixes[i], (size_t)(slash - n->str)) == 0;
    char *gq = q(n);
    if (!known || strchr(slash + 1, '/') != NULL)
        diag(c, n->pos,
             "%s: invalid runner group name '%s'; use the prefix 'organization/' or "
             "'enterprise/' to target a single runner group",
             path, gq);
    else if (slash[1] == '\0')
        diag(c, n->pos, "%s: invalid runner group name '%s'; the name after the prefix is empty",
             path, gq);
    free(gq);
}

/* Checks runs-on: a string, a sequence of strings or {group, labels}. */
static void
check_runs_on(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"group", "labels", NULL};

    if (n->kind == YNODE_SCALAR && ynode_is_null(n)) {
        diag(c, n->pos, "%s: expected a label, a sequence of labels or {group, labels}", path);
        return;
    }
    if (n->kind != YNODE_MAP) {
        check_str_or_seq(c, path, n, true);
        return;
    }
    check_keys(c, path, n, keys);
    const struct ynode *g = ynode_get(n, "group"), *l = ynode_get(n, "labels");
    if (g) {
        char *p = sub(path, "group");
        get_str(c, p, g, true, NULL);
        check_runner_group(c, p, g);
        free(p);
    }
    if (l) {
        char *p = sub(path, "labels");
        check_str_or_seq(c, p, l, true);
        free(p);
    }
}

/* Checks strategy and fills the job's matrix/fail-fast/max-parallel nodes. */
static void
read_strategy(struct wctx *c, const char *path, struct ynode *n, struct wf_job *j)
{
    static const char *const keys[] = {"matrix", "fail-fast", "max-parallel", NULL};

    if (n->kind == YNODE_SCALAR && has_expr(n)) {
        check_template(c, path, n);
        j->strategy = n;
        return;
    }
    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            diag_type(c, path, n, "a mapping");
        return;
    }
    j->strategy = n;
    check_keys(c, path, n, keys);
    struct ynode *m = ynode_get(n, "matrix");
    struct ynode *ff = ynode_get(n, "fail-fast"), *mp = ynode_get(n, "max-parallel");
    char *p = sub(path, "matrix");
    if (m && m->kind == YNODE_SCALAR && has_expr(m)) {
        check_template(c, p, m);
        j->matrix = m;
    } else if (m && m->kind == YNODE_MAP) {
        j->matrix = m;
        for (size_t i = 0; i < m->n; i++) {
            const struct ynode *k = m->keys[i], *v = m->items[i];
            if (k->kind != YNODE_SCALAR) {
                diag(c, k->pos, "%s: expected a string key, got %s", p, ynode_kind_name(k));
                continue;
            }
            char *pk = subk(p, k);
            if (is_insert(k->str)) {
                check_tree(c, pk, v);
            } else if (has_expr(k)) {
                /* A key from an expression (`${{ needs.prep.outputs.key }}: [..]`): act and
                 * Gitea evaluate matrix keys like values, when the matrix is expanded. */
                check_template(c, p, k);
                if (v->kind == YNODE_SEQ || has_expr(v))
                    check_tree(c, pk, v);
                else
                    diag_type(c, pk, v, "a sequence");
            } else if (strcmp(k->str, "include") == 0 || strcmp(k->str, "exclude") == 0) {
                if (v->kind == YNODE_SEQ) {
                    for (size_t e = 0; e < v->n; e++) {
                        const struct ynode *it = v->items[e];
                        char *pe = xasprintf("%s[%zu]", pk, e);
                        if (it->kind == YNODE_MAP || has_expr(it))
                            check_tree(c, pe, it);
                        else
                            diag_type(c, pe, it, "a mapping");
                        free(pe);
                    }
                } else if (has_expr(v)) {
                    check_template(c, pk, v);
                } else {
                    diag_type(c, pk, v, "a sequence of mappings");
                }
            } else if (v->kind == YNODE_SEQ && v->n == 0) {
                /* No values: no combinations, so the job would silently not run. */
                char *kq = q(k);
                diag(c, v->pos, "%s: the matrix vector '%s' does not contain any values", pk, kq);
                free(kq);
            } else if (v->kind == YNODE_SEQ || has_expr(v)) {
                check_tree(c, pk, v);
            } else {
                diag_type(c, pk, v, "a sequence");
            }
            free(pk);
        }
    } else if (m && !ynode_is_null(m)) {
        diag_type(c, p, m, "a mapping");
    }
    free(p);
    if (ff) {
        p = sub(path, "fail-fast");
        check_bool(c, p, ff);
        j->fail_fast = ff;
        free(p);
    }
    if (mp) {
        p = sub(path, "max-parallel");
        check_number(c, p, mp);
        j->max_parallel = mp;
        free(p);
    }
}

/* Classifies a step's uses and reports forms that are not valid for a step. */
static void
classify_uses(struct wctx *c, const char *path, const struct ynode *n, struct wf_step *s)
{
    const char *u = n->str;

    if (strncmp(u, "docker://", 9) == 0) {
        s->kind = WF_STEP_USES_DOCKER;
        if (u[9] == '\0')
            diag(c, n->pos, "%s: expected an image after 'docker://'", path);
        return;
    }
    bool reusable = false;
    size_t ulen = strlen(u);
    if (strncmp(u, "./.github/workflows", 19) == 0 &&
        ((ulen > 4 && strcmp(u + ulen - 4, ".yml") == 0) ||
         (ulen > 5 && strcmp(u + ulen - 5, ".yaml") == 0)))
        reusable = true;
    if (strncmp(u, "./", 2) != 0 && strstr(u, ".github/workflows") &&
        (strstr(u, ".yml@") || strstr(u, ".yaml@")))
        reusable = true;
    if (reusable) {
        diag(c, n->pos, "%s: a reusable workflow cannot be used as a step (use it as a job's "
                        "'uses')", path);
        s->kind = WF_STEP_USES;
        return;
    }
    if (strncmp(u, "./", 2) == 0) {
        s->kind = WF_STEP_USES_LOCAL;
        return;
    }
    s->kind = WF_STEP_USES;
    if (has_expr(n))
        return; /* the Gitea fork interpolates uses; check the result at run time */
    const char *at = strrchr(u, '@');
    const char *slash = strchr(u, '/');
    if (at == NULL || slash == NULL || slash == u || slash > at || at[1] == '\0' ||
        slash + 1 == at) {
        char *v = q(n);
        diag(c, n->pos,
             "%s: unexpected value '%s' (expected 'owner/repo[/path]@ref', './path' or "
             "'docker://image')",
             path, v);
        free(v);
    }
}

/* Reads one step. */
static void
read_step(struct wctx *c, const char *path, struct ynode *n, struct wf_step *s)
{
    static const char *const keys[] = {"id", "name", "if", "run", "shell", "working-directory",
                                       "uses", "with", "env", "continue-on-error",
                                       "timeout-minutes", NULL};
    struct ynode *v;
    char *p;

    s->pos = n->pos;
    if (n->kind != YNODE_MAP) {
        if (ynode_is_null(n))
            diag(c, n->pos, "%s: a step needs either 'run' or 'uses'", path);
        else
            diag_type(c, path, n, "a mapping");
        return;
    }
    check_keys(c, path, n, keys);
#define STEP_STR(key, field, expr)                                                                 \
    do {                                                                                           \
        p = sub(path, key);                                                                        \
        get_str(c, p, ynode_get(n, key), expr, &s->field);                                         \
        free(p);                                                                                   \
    } while (0)
    STEP_STR("id", id, false);
    STEP_STR("name", name, true);
    STEP_STR("run", run, true);
    STEP_STR("shell", shell, true);
    STEP_STR("working-directory", working_directory, true);
    STEP_STR("uses", uses, true);
#undef STEP_STR
    if ((v = ynode_get(n, "if")) != NULL) {
        /* Inside a workflow job the if may call the status functions; in an action file (no
         * location) everything stays allowed. */
        const struct expr_parse_opts *saved = c->loc == &loc_step ? set_loc(c, &loc_step_if)
                                                                  : c->loc;
        p = sub(path, "if");
        check_if(c, p, v);
        set_loc(c, saved);
        if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
            s->if_.v = xstrdup(v->str);
            s->if_.pos = v->pos;
        }
        free(p);
    }
    if (s->id.v && !has_expr(ynode_get(n, "id")) && !valid_id(s->id.v, strlen(s->id.v))) {
        char *idq = ydoc_quote(s->id.v, strlen(s->id.v));
        diag(c, s->id.pos,
             "%s.id: the id '%s' is invalid; ids must start with a letter or '_' and contain "
             "only letters, digits, '-' and '_'",
             path, idq);
        free(idq);
    }
    if ((v = ynode_get(n, "with")) != NULL) {
        p = sub(path, "with");
        check_scalar_map(c, p, v, false);
        if (v->kind == YNODE_MAP)
            s->with = v;
        free(p);
    }
    if ((v = ynode_get(n, "env")) != NULL) {
        p = sub(path, "env");
        check_scalar_map(c, p, v, true);
        if (!ynode_is_null(v))
            s->env = v;
        free(p);
    }
    if ((v = ynode_get(n, "continue-on-error")) != NULL) {
        p = sub(path, "continue-on-error");
        check_bool(c, p, v);
        s->continue_on_error = v;
        free(p);
    }
    if ((v = ynode_get(n, "timeout-minutes")) != NULL) {
        p = sub(path, "timeout-minutes");
        check_minutes(c, p, v);
        s->timeout_minutes = v;
        free(p);
    }
    const struct ynode *run = ynode_get(n, "run"), *uses = ynode_get(n, "uses");
    if (run && ynode_is_null(run))
        run = NULL;
    if (uses && ynode_is_null(uses))
        uses = NULL;
    if (run && uses) {
        diag(c, n->pos, "%s: a step cannot have both 'run' and 'uses'", path);
    } else if (run == NULL && uses == NULL) {
        diag(c, n->pos, "%s: a step needs either 'run' or 'uses'", path);
    } else if (run) {
        s->kind = WF_STEP_RUN;
    } else if (uses->kind == YNODE_SCALAR) {
        p = sub(path, "uses");
        classify_uses(c, p, uses, s);
        free(p);
    }
}

/* Key/index pair for finding duplicate ids by sorting. */
struct id_ref {
    const char *id;
    size_t index;
};

/* Orders step ids by text, then by step index (for qsort). */
static int
id_ref_cmp(const void *a, const void *b)
{
    const struct id_ref *x = a, *y = b;
    int r = strcmp(x->id, y->id);

    if (r != 0)
        return r;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Orders ids ignoring case, then by index (for qsort). */
static int
id_ref_casecmp(const void *a, const void *b)
{
    const struct id_ref *x = a, *y = b;
    int r = strcasecmp(x->id, y->id);

    if (r != 0)
        return r;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Reports job ids that differ from an earlier one only in case. Job ids are case-insensitive
 * (needs: and the needs/jobs contexts match them so), so `build` and `BUILD` would name one
 * job twice; GitHub's reader refuses it at the second key. Sorting keeps this linear-ish for
 * hostile files with many jobs. */
static void
check_job_id_case(struct wctx *c, const struct ynode *jobs)
{
    struct id_ref *refs = xcalloc(jobs->n ? jobs->n : 1, sizeof *refs);
    size_t nr = 0;

    for (size_t i = 0; i < jobs->n; i++) {
        const struct ynode *k = jobs->keys[i];
        if (k->kind == YNODE_SCALAR && strlen(k->str) == k->len) {
            refs[nr].id = k->str;
            refs[nr].index = i;
            nr++;
        }
    }
    qsort(refs, nr, sizeof *refs, id_ref_casecmp);
    for (size_t i = 1; i < nr; i++) {
        if (strcasecmp(refs[i - 1].id, refs[i].id) != 0)
            continue;
        size_t first = i - 1;
        while (first > 0 && strcasecmp(refs[first - 1].id, refs[i].id) == 0)
            first--;
        const struct ynode *k = jobs->keys[refs[i].index];
        const struct ynode *o = jobs->keys[refs[first].index];
        char *kq = q(k), *oq = q(o);
        diag(c, k->pos,
             "jobs: the job id '%s' is already defined as '%s' at line %d, column %d (job ids "
             "are case-insensitive)",
             kq, oq, o->pos.line, o->pos.col);
        free(kq);
        free(oq);
    }
    free(refs);
}

/* Reads steps into a new array (*out, *nout) and reports duplicate step ids; generates eff_id
 * for steps without one. Shared by job steps and composite actions' runs.steps. */
static void
read_steps(struct wctx *c, const char *path, struct ynode *n, struct wf_step **out,
           size_t *nout)
{
    struct wf_step *steps;

    if (n->kind != YNODE_SEQ) {
        if (!ynode_is_null(n))
            diag_type(c, path, n, "a sequence");
        return;
    }
    steps = xcalloc(n->n ? n->n : 1, sizeof *steps);
    *out = steps;
    *nout = n->n;
    for (size_t i = 0; i < n->n; i++) {
        struct wf_step *s = &steps[i];
        char *p = xasprintf("%s[%zu]", path, i);
        s->index = (int)i;
        read_step(c, p, n->items[i], s);
        free(p);
        s->eff_id = s->id.v ? xstrdup(s->id.v) : xasprintf("%zu", i);
    }
    struct id_ref *refs = xcalloc(n->n ? n->n : 1, sizeof *refs);
    size_t nr = 0;
    for (size_t i = 0; i < n->n; i++) {
        if (steps[i].id.v) {
            refs[nr].id = steps[i].id.v;
            refs[nr].index = i;
            nr++;
        }
    }
    qsort(refs, nr, sizeof *refs, id_ref_cmp);
    for (size_t i = 1; i < nr; i++) {
        if (strcmp(refs[i - 1].id, refs[i].id) != 0)
            continue;
        size_t first = i - 1;
        while (first > 0 && strcmp(refs[first - 1].id, refs[i].id) == 0)
            first--;
        const struct wf_step *s = &steps[refs[i].index];
        char *idq = ydoc_quote(s->id.v, strlen(s->id.v));
        diag(c, s->id.pos, "%s[%zu].id: the step id '%s' is already used by %s[%zu]", path,
             refs[i].index, idq, path, refs[first].index);
        free(idq);
    }
    free(refs);
}

/* Reads needs: a job id or a sequence of them. */
static void
read_needs(struct wctx *c, const char *path, const struct ynode *n, struct wf_job *j)
{
    const struct ynode *const *list = &n;
    size_t count = 1;

    if (n->kind == YNODE_SEQ) {
        list = (const struct ynode *const *)n->items;
        count = n->n;
    } else if (n->kind != YNODE_SCALAR || ynode_is_null(n)) {
        diag_type(c, path, n, "a job id or a sequence of job ids");
        return;
    }
    j->needs = xcalloc(count ? count : 1, sizeof *j->needs);
    for (size_t i = 0; i < count; i++) {
        const struct ynode *it = list[i];
        char *p = n->kind == YNODE_SEQ ? xasprintf("%s[%zu]", path, i) : xstrdup(path);
        if (it->kind != YNODE_SCALAR || ynode_is_null(it))
            diag_type(c, p, it, "a job id");
        else if (!check_no_expr(c, p, it)) {
            j->needs[j->n_needs].id = xstrdup(it->str);
            j->needs[j->n_needs].pos = it->pos;
            j->n_needs++;
        }
        free(p);
    }
}

/* Reads one job. */
static void
read_job(struct wctx *c, const struct ynode *key, struct ynode *n, struct wf_job *j)
{
    static const char *const keys[] = {
        "name", "runs-on", "needs", "if", "env", "defaults", "container", "services", "steps",
        "outputs", "timeout-minutes", "continue-on-error", "strategy", "environment",
        "permissions", "concurrency", "cancel-timeout-minutes", "uses", "with", "secrets",
        "snapshot", NULL};
    static const char *const env_keys[] = {"name", "url", "deployment", NULL};
    char *path = subk("jobs", key);
    struct ynode *v;
    char *p;

    j->id = xstrdup(key->str);
    j->pos = key->pos;
    if (n->kind != YNODE_MAP) {
        diag_type(c, path, n, "a mapping");
        goto out;
    }
    check_keys(c, path, n, keys);
    const struct expr_parse_opts *saved = set_loc(c, &loc_job_name);
    p = sub(path, "name");
    get_str(c, p, ynode_get(n, "name"), true, &j->name);
    free(p);
    set_loc(c, &loc_job);
    if ((v = ynode_get(n, "if")) != NULL) {
        p = sub(path, "if");
        set_loc(c, &loc_job_if);
        check_if(c, p, v);
        set_loc(c, &loc_job);
        if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
            j->if_.v = xstrdup(v->str);
            j->if_.pos = v->pos;
        }
        free(p);
    }
    if ((v = ynode_get(n, "uses")) != NULL) {
        p = sub(path, "uses");
        get_str(c, p, v, false, &j->uses);
        diag(c, v->pos, "%s: reusable workflows (jobs with uses) are not supported yet", p);
        free(p);
    }
    if ((v = ynode_get(n, "runs-on")) != NULL) {
        p = sub(path, "runs-on");
        set_loc(c, &loc_job_name);
        check_runs_on(c, p, v);
        set_loc(c, &loc_job);
        j->runs_on = v;
        free(p);
    } else if (j->uses.v == NULL && ynode_get(n, "uses") == NULL) {
        diag(c, n->pos, "%s: missing required key 'runs-on'", path);
    }
    if ((v = ynode_get(n, "needs")) != NULL) {
        p = sub(path, "needs");
        read_needs(c, p, v, j);
        free(p);
    }
    if ((v = ynode_get(n, "env")) != NULL) {
        p = sub(path, "env");
        set_loc(c, &loc_job_env);
        check_scalar_map(c, p, v, true);
        set_loc(c, &loc_job);
        if (!ynode_is_null(v))
            j->env = v;
        free(p);
    }
    if ((v = ynode_get(n, "defaults")) != NULL) {
        p = sub(path, "defaults");
        set_loc(c, &loc_job_defaults);
        read_defaults(c, p, v, true, &j->defaults_shell, &j->defaults_working_directory);
        set_loc(c, &loc_job);
        free(p);
    }
    if ((v = ynode_get(n, "container")) != NULL) {
        p = sub(path, "container");
        check_container(c, p, v, false);
        j->container = v;
        free(p);
    }
    if ((v = ynode_get(n, "services")) != NULL) {
        p = sub(path, "services");
        if (v->kind == YNODE_MAP) {
            for (size_t i = 0; i < v->n; i++) {
                const struct ynode *k = v->keys[i];
                if (k->kind != YNODE_SCALAR) {
                    diag(c, k->pos, "%s: expected a string key, got %s", p, ynode_kind_name(k));
                    continue;
                }
                if (check_no_expr(c, p, k))
                    continue;
                char *ps = subk(p, k);
                check_container(c, ps, v->items[i], true);
                free(ps);
            }
            j->services = v;
        } else if (!ynode_is_null(v)) {
            diag_type(c, p, v, "a mapping");
        }
        free(p);
    }
    if ((v = ynode_get(n, "steps")) != NULL) {
        p = sub(path, "steps");
        set_loc(c, &loc_step);
        read_steps(c, p, v, &j->steps, &j->n_steps);
        set_loc(c, &loc_job);
        free(p);
    }
    if ((v = ynode_get(n, "outputs")) != NULL) {
        p = sub(path, "outputs");
        set_loc(c, &loc_runner);
        check_scalar_map(c, p, v, false);
        set_loc(c, &loc_job);
        if (v->kind == YNODE_MAP)
            j->outputs = v;
        free(p);
    }
    if ((v = ynode_get(n, "timeout-minutes")) != NULL) {
        p = sub(path, "timeout-minutes");
        check_minutes(c, p, v);
        j->timeout_minutes = v;
        free(p);
    }
    if ((v = ynode_get(n, "cancel-timeout-minutes")) != NULL) {
        p = sub(path, "cancel-timeout-minutes");
        check_number(c, p, v);
        free(p);
    }
    if ((v = ynode_get(n, "continue-on-error")) != NULL) {
        p = sub(path, "continue-on-error");
        check_bool(c, p, v);
        j->continue_on_error = v;
        free(p);
    }
    if ((v = ynode_get(n, "strategy")) != NULL) {
        p = sub(path, "strategy");
        set_loc(c, &loc_strategy);
        read_strategy(c, p, v, j);
        set_loc(c, &loc_job);
        free(p);
    }
    if ((v = ynode_get(n, "environment")) != NULL) {
        p = sub(path, "environment");
        if (v->kind == YNODE_MAP) {
            const struct ynode *url = ynode_get(v, "url"), *name = ynode_get(v, "name");
            check_keys(c, p, v, env_keys);
            if (name) {
                char *pn = sub(p, "name");
                check_tree(c, pn, name);
                free(pn);
            }
            if (url) {
                char *pu = sub(p, "url");
                set_loc(c, &loc_env_url);
                check_tree(c, pu, url);
                set_loc(c, &loc_job);
                free(pu);
            }
            /* deployment: a boolean, no expressions */
            const struct ynode *dep = ynode_get(v, "deployment");
            if (dep) {
                char *pd = sub(p, "deployment");
                check_tree(c, pd, dep);
                free(pd);
            }
        } else if (v->kind == YNODE_SCALAR) {
            check_template(c, p, v);
        } else {
            diag_type(c, p, v, "a string or a mapping");
        }
        j->environment = v;
        free(p);
    }
    if ((v = ynode_get(n, "permissions")) != NULL) {
        p = sub(path, "permissions");
        check_permissions(c, p, v);
        j->permissions = v;
        free(p);
    }
    if ((v = ynode_get(n, "concurrency")) != NULL) {
        p = sub(path, "concurrency");
        check_concurrency(c, p, v);
        j->concurrency = v;
        free(p);
    }
    if ((v = ynode_get(n, "with")) != NULL) {
        p = sub(path, "with");
        check_scalar_map(c, p, v, true);
        free(p);
    }
    if ((v = ynode_get(n, "secrets")) != NULL) {
        p = sub(path, "secrets");
        set_loc(c, &loc_job_env);
        if (v->kind == YNODE_SCALAR && strcmp(v->str, "inherit") != 0) {
            char *vq = q(v);
            diag(c, v->pos, "%s: unexpected value '%s' (expected 'inherit' or a mapping)", p,
                 vq);
            free(vq);
        } else if (v->kind != YNODE_SCALAR) {
            check_scalar_map(c, p, v, false);
        }
        free(p);
    }
    set_loc(c, &loc_job);
    if ((v = ynode_get(n, "snapshot")) != NULL) {
        p = sub(path, "snapshot");
        check_tree(c, p, v);
        free(p);
    }
    set_loc(c, saved);
out:
    free(path);
}

/* ------------------------------------------------------------------------------------------ */
/* needs graph                                                                                */

struct job_ref {
    const char *id;
    size_t index;
};

/* Orders job ids by text (for qsort and bsearch). */
static int
job_ref_cmp(const void *a, const void *b)
{
    const struct job_ref *x = a, *y = b;

    return strcmp(x->id, y->id);
}

/* Returns the index of the job with that id via the sorted refs, or SIZE_MAX. */
static size_t
job_index(const struct job_ref *refs, size_t n, const char *id)
{
    struct job_ref key = {.id = id};
    const struct job_ref *r = bsearch(&key, refs, n, sizeof *refs, job_ref_cmp);

    return r ? r->index : SIZE_MAX;
}

/* Reports needs naming unknown jobs and every cycle (once per back edge found). */
static void
check_needs(struct wctx *c, const struct wf_workflow *w)
{
    size_t n = w->n_jobs;
    struct job_ref *refs = xcalloc(n ? n : 1, sizeof *refs);
    int *color = xcalloc(n ? n : 1, sizeof *color); /* 0 new, 1 on the stack, 2 done */
    size_t *stack = xcalloc(n ? n : 1, sizeof *stack);
    size_t *next = xcalloc(n ? n : 1, sizeof *next); /* next need to visit, per job */
    size_t *edge_base = xcalloc(n ? n : 1, sizeof *edge_base); /* first edge index per job */
    size_t nedges = 0;
    bool *edge_done;

    for (size_t i = 0; i < n; i++) {
        edge_base[i] = nedges;
        nedges += w->jobs[i].n_needs;
    }
    edge_done = xcalloc(nedges ? nedges : 1, sizeof *edge_done);

    for (size_t i = 0; i < n; i++) {
        refs[i].id = w->jobs[i].id;
        refs[i].index = i;
    }
    qsort(refs, n, sizeof *refs, job_ref_cmp);
    for (size_t i = 0; i < n; i++) {
        const struct wf_job *j = &w->jobs[i];
        for (size_t k = 0; k < j->n_needs; k++) {
            if (job_index(refs, n, j->needs[k].id) != SIZE_MAX)
                continue;
            char *a = ydoc_quote(j->id, strlen(j->id));
            char *b = ydoc_quote(j->needs[k].id, strlen(j->needs[k].id));
            diag(c, j->needs[k].pos, "jobs.%s.needs: job '%s' depends on unknown job '%s'", a,
                 a, b);
            free(a);
            free(b);
        }
    }
    /* Iterative depth-first search, so a long chain of jobs cannot exhaust the C stack. */
    for (size_t root = 0; root < n; root++) {
        size_t sp = 0;
        if (color[root] != 0)
            continue;
        stack[sp++] = root;
        color[root] = 1;
        next[root] = 0;
        while (sp > 0) {
            size_t cur = stack[sp - 1];
            const struct wf_job *j = &w->jobs[cur];
            if (next[cur] >= j->n_needs) {
                color[cur] = 2;
                sp--;
                continue;
            }
            size_t to = job_index(refs, n, j->needs[next[cur]++].id);
            if (to == SIZE_MAX || color[to] == 2)
                continue;
            if (color[to] == 0) {
                color[to] = 1;
                next[to] = 0;
                stack[sp++] = to;
                continue;
            }
            /* A back edge cur -> to: the cycle is the stack from `to` up to cur. Like GitHub,
             * report every edge of it (once), each naming the cycle from that edge's job. */
            size_t from = sp - 1;
            while (stack[from] != to)
                from--;
            size_t m = sp - from;
            for (size_t e = 0; e < m; e++) {
                size_t job = stack[from + e];
                size_t need = next[job] - 1;
                if (edge_done[edge_base[job] + need])
                    continue;
                edge_done[edge_base[job] + need] = true;
                if (c->n >= WF_MAX_DIAGS) {
                    c->dropped++; /* do not spend time formatting what is dropped */
                    continue;
                }
                struct buf b = BUF_INIT;
                for (size_t k = 0; k <= m; k++) {
                    const char *id = w->jobs[stack[from + (e + k) % m]].id;
                    char *idq = ydoc_quote(id, strlen(id));
                    buf_printf(&b, "%s'%s'", k ? " -> " : "", idq);
                    free(idq);
                }
                char *jq = ydoc_quote(w->jobs[job].id, strlen(w->jobs[job].id));
                diag(c, w->jobs[job].needs[need].pos, "jobs.%s.needs: job %s forms a cycle", jq,
                     buf_str(&b));
                free(jq);
                buf_free(&b);
            }
        }
    }
    free(edge_done);
    free(edge_base);
    free(next);
    free(stack);
    free(color);
    free(refs);
}

/* ------------------------------------------------------------------------------------------ */
/* Workflow                                                                                   */

/* Reads the top-level mapping into w. */
static void
read_workflow(struct wctx *c, struct wf_workflow *w, struct ynode *root)
{
    static const char *const keys[] = {"name", "run-name", "description", "on", "env",
                                       "defaults", "permissions", "concurrency", "jobs", NULL};
    struct ynode *v;

    check_keys(c, "workflow", root, keys);
    get_str(c, "name", ynode_get(root, "name"), false, &w->name);
    set_loc(c, &loc_wf);
    get_str(c, "run-name", ynode_get(root, "run-name"), true, &w->run_name);
    get_str(c, "description", ynode_get(root, "description"), false, NULL);
    if ((v = ynode_get(root, "on")) != NULL)
        read_on(c, w, v);
    if ((v = ynode_get(root, "env")) != NULL) {
        set_loc(c, &loc_wf_env);
        check_scalar_map(c, "env", v, true);
        set_loc(c, &loc_wf);
        if (!ynode_is_null(v))
            w->env = v;
    }
    if ((v = ynode_get(root, "defaults")) != NULL)
        read_defaults(c, "defaults", v, false, &w->defaults_shell,
                      &w->defaults_working_directory);
    if ((v = ynode_get(root, "permissions")) != NULL) {
        check_permissions(c, "permissions", v);
        w->permissions = v;
    }
    if ((v = ynode_get(root, "concurrency")) != NULL) {
        check_concurrency(c, "concurrency", v);
        w->concurrency = v;
    }
    set_loc(c, NULL);
    v = ynode_get(root, "jobs");
    if (v == NULL) {
        diag(c, root->pos, "missing required key 'jobs'");
        return;
    }
    if (v->kind != YNODE_MAP) {
        if (!check_no_expr(c, "jobs", v))
            diag_type(c, "jobs", v, "a mapping of job ids to jobs");
        return;
    }
    if (v->n == 0)
        diag(c, v->pos, "jobs: expected at least one job");
    w->jobs = xcalloc(v->n ? v->n : 1, sizeof *w->jobs);
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *k = v->keys[i];
        if (k->kind != YNODE_SCALAR) {
            diag(c, k->pos, "jobs: expected a job id, got %s", ynode_kind_name(k));
            continue;
        }
        if (check_no_expr(c, "jobs", k))
            continue;
        char *kq = q(k);
        if (k->len >= 2 && k->str[0] == '_' && k->str[1] == '_')
            diag(c, k->pos, "jobs: the job id '%s' is invalid; ids starting with '__' are reserved",
                 kq);
        else if (!valid_id(k->str, k->len))
            diag(c, k->pos,
                 "jobs: the job id '%s' is invalid; ids must start with a letter or '_' and "
                 "contain only letters, digits, '-' and '_'",
                 kq);
        free(kq);
        read_job(c, k, v->items[i], &w->jobs[w->n_jobs++]);
    }
    check_job_id_case(c, v);
    check_needs(c, w);
}

/* Returns a new string: the last path component of file. */
static char *
base_name(const char *file)
{
    const char *s = strrchr(file, '/');

    return xstrdup(s ? s + 1 : file);
}

/* Ends a parse: frees the line table, sorts the problems into file order and hands them to
 * diag_out (or frees them). Returns 0 when there were none, else ERR_INVALID with e set to the
 * first. */
static int
diag_finish(struct wctx *c, struct wf_diag *diag_out, struct err *e)
{
    int rc;

    free(c->lines);
    c->lines = NULL;
    if (c->dropped > 0) {
        struct ypos last = {INT32_MAX, INT32_MAX};
        c->n--; /* make room: the summary goes last after sorting */
        free(c->items[c->n].msg);
        c->dropped++;
        diag(c, last, "too many problems; %zu more not shown", c->dropped);
        /* Strip the synthetic position from the text. */
        char *m = c->items[c->n - 1].msg;
        c->items[c->n - 1].msg = xasprintf("%s: too many problems; %zu more not shown", c->file,
                                           c->dropped);
        free(m);
    }
    if (c->n == 0) {
        free(c->items);
        c->items = NULL;
        return 0;
    }
    qsort(c->items, c->n, sizeof *c->items, diag_cmp);
    rc = err_set(e, ERR_INVALID, "%s", c->items[0].msg);
    if (diag_out) {
        diag_out->msgs = xreallocarray(diag_out->msgs, diag_out->n + c->n, sizeof(char *));
        for (size_t i = 0; i < c->n; i++)
            diag_out->msgs[diag_out->n++] = c->items[i].msg;
    } else {
        for (size_t i = 0; i < c->n; i++)
            free(c->items[i].msg);
    }
    free(c->items);
    c->items = NULL;
    c->n = 0;
    return rc;
}

/* YAML errors end the parse (one message); model problems are all collected. */
int
wf_parse(const char *file, const char *data, size_t len, struct wf_workflow **out,
         struct wf_diag *diag_out, struct err *e)
{
    struct wctx c = {.file = file ? file : "<workflow>", .src = data, .srclen = len};
    struct wf_workflow *w = NULL;
    struct ynode **docs = NULL, *root = NULL;
    size_t ndocs = 0;
    struct err ye = {0};
    int rc;

    *out = NULL;
    if (ydoc_parse_all(c.file, data, len, &docs, &ndocs, &ye) < 0) {
        struct ypos none = {0, 0};
        /* The message already carries file:line:col; keep it as is. */
        c.items = xcalloc(1, sizeof *c.items);
        c.cap = 1;
        c.items[0].pos = none;
        c.items[0].msg = xstrdup(ye.msg);
        c.n = 1;
        goto done;
    }
    if (ndocs > 0)
        root = docs[0];
    for (size_t i = 1; i < ndocs; i++)
        ynode_free(docs[i]);
    free(docs);
    w = xcalloc(1, sizeof *w);
    w->file = xstrdup(c.file);
    w->root = root;
    if (root == NULL || ynode_is_null(root)) {
        struct ypos p1 = {1, 1};
        diag(&c, p1, "the workflow file is empty");
        goto done;
    }
    if (ndocs > 1) {
        struct ypos p1 = {1, 1};
        diag(&c, p1, "expected one YAML document, found %zu", ndocs);
    }
    if (root->kind != YNODE_MAP) {
        diag_type(&c, "workflow", root, "a mapping");
        goto done;
    }
    read_workflow(&c, w, root);
    if (w->name.v == NULL)
        w->name.v = base_name(c.file);
done:
    rc = diag_finish(&c, diag_out, e);
    if (rc < 0) {
        wf_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* A composite action's steps go through read_steps() like a job's, so both get the same keys
 * and checks; only the message path differs. */
int
wf_parse_steps(const char *file, const char *data, size_t len, const char *path,
               struct ynode *seq, struct wf_step **steps, size_t *n, struct wf_diag *diag_out,
               struct err *e)
{
    struct wctx c = {.file = file ? file : "<workflow>", .src = data, .srclen = len};
    struct wf_step *s = NULL;
    size_t ns = 0;
    int rc;

    *steps = NULL;
    *n = 0;
    if (seq == NULL)
        return 0;
    read_steps(&c, path ? path : "steps", seq, &s, &ns);
    rc = diag_finish(&c, diag_out, e);
    if (rc < 0) {
        wf_steps_free(s, ns);
        return rc;
    }
    *steps = s;
    *n = ns;
    return 0;
}

/* Reads at most WF_MAX_FILE_SIZE bytes, also when the file grows while being read. */
int
wf_load(const char *path, struct wf_workflow **out, struct wf_diag *diag_out, struct err *e)
{
    struct buf data = BUF_INIT;
    int rc;

    *out = NULL;
    rc = buf_read_file(&data, path, WF_MAX_FILE_SIZE, "workflow file", e);
    if (rc == 0)
        rc = wf_parse(path, buf_str(&data), data.len, out, diag_out, e);
    buf_free(&data);
    return rc;
}

/* Frees the strings of each step, then the array; the nodes stay with their tree. */
void
wf_steps_free(struct wf_step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct wf_step *s = &steps[i];
        free(s->id.v);
        free(s->eff_id);
        free(s->name.v);
        free(s->if_.v);
        free(s->run.v);
        free(s->shell.v);
        free(s->working_directory.v);
        free(s->uses.v);
    }
    free(steps);
}

/* Frees the strings the model owns, then the tree that owns every node. */
void
wf_free(struct wf_workflow *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n_jobs; i++) {
        struct wf_job *j = &w->jobs[i];
        free(j->id);
        free(j->name.v);
        free(j->if_.v);
        free(j->defaults_shell.v);
        free(j->defaults_working_directory.v);
        free(j->uses.v);
        for (size_t k = 0; k < j->n_needs; k++)
            free(j->needs[k].id);
        free(j->needs);
        wf_steps_free(j->steps, j->n_steps);
    }
    free(w->jobs);
    for (size_t i = 0; i < w->n_events; i++)
        free(w->events[i].name);
    free(w->events);
    free(w->name.v);
    free(w->run_name.v);
    free(w->defaults_shell.v);
    free(w->defaults_working_directory.v);
    free(w->file);
    ynode_free(w->root);
    free(w);
}

/* Linear: workflows have few jobs, and callers look up rarely. */
const struct wf_job *
wf_job_find(const struct wf_workflow *w, const char *id)
{
    if (w == NULL || id == NULL)
        return NULL;
    for (size_t i = 0; i < w->n_jobs; i++)
        if (strcmp(w->jobs[i].id, id) == 0)
            return &w->jobs[i];
    return NULL;
}

/* Adds "file:line:col: path: message" for the capabilities literal options n adds that are
 * not in allowed. */
static void
caps_of(const struct wf_workflow *w, const struct ynode *n, const char *path,
        char *const *allowed, struct wf_diag *diag)
{
    struct dockeropts o;
    struct err e = {0};

    if (n == NULL || n->kind != YNODE_SCALAR || has_expr(n) || ynode_is_null(n))
        return;
    if (dockeropts_parse(n->str, path, DOCKEROPTS_SKIP_UNKNOWN, &o, &e) == 0 &&
        dockeropts_check_caps(&o, allowed, path, &e) < 0) {
        diag->msgs = xreallocarray(diag->msgs, diag->n + 1, sizeof *diag->msgs);
        diag->msgs[diag->n++] = xasprintf("%s:%d:%d: %s", w->file, n->pos.line, n->pos.col,
                                          e.msg);
    }
    dockeropts_free(&o);
}

int
wf_check_caps(const struct wf_workflow *w, char *const *allowed, struct wf_diag *diag,
              struct err *e)
{
    size_t before = diag->n;

    for (size_t i = 0; i < w->n_jobs; i++) {
        const struct wf_job *j = &w->jobs[i];
        const struct ynode *sv = j->services;
        char *p;

        if (j->container && j->container->kind == YNODE_MAP) {
            p = xasprintf("jobs.%s.container.options", j->id);
            caps_of(w, ynode_get(j->container, "options"), p, allowed, diag);
            free(p);
        }
        for (size_t k = 0; sv && sv->kind == YNODE_MAP && k < sv->n; k++) {
            if (sv->items[k]->kind != YNODE_MAP)
                continue;
            p = xasprintf("jobs.%s.services.%s.options", j->id, sv->keys[k]->str);
            caps_of(w, ynode_get(sv->items[k], "options"), p, allowed, diag);
            free(p);
        }
    }
    if (diag->n == before)
        return 0;
    return err_set(e, ERR_INVALID, "%s", diag->msgs[before]);
}
