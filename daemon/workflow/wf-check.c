/* wf-check.c: what every part of the workflow reader shares (wf-int.h): the problems found,
 * each with its file:line:col (also inside a scalar, for a bad ${{ }}), sorted at the end; the
 * contexts each location's expressions may name; and the checks of values by shape (strings,
 * maps of strings, numbers, booleans, enums, concurrency, permissions, defaults, ids). */
#include "wf-int.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
const struct expr_parse_opts wf_loc_wf = {.contexts = ctx_wf, .no_status = true,
                                              .no_hash_files = true};
const struct expr_parse_opts wf_loc_wf_env = {.contexts = ctx_wf_env, .no_status = true,
                                                  .no_hash_files = true};
const struct expr_parse_opts wf_loc_wf_output = {.contexts = ctx_wf_output,
                                                     .no_status = true, .no_hash_files = true};
/* A job's if: needs and the status functions. */
const struct expr_parse_opts wf_loc_job_if = {.contexts = ctx_needs, .no_hash_files = true};
/* strategy (the matrix is not known yet). */
const struct expr_parse_opts wf_loc_strategy = {.contexts = ctx_needs, .no_status = true,
                                                    .no_hash_files = true};
/* runs-on, name, concurrency, environment, container, services, timeouts, with. */
const struct expr_parse_opts wf_loc_job = {.contexts = ctx_job, .no_status = true,
                                               .no_hash_files = true};
const struct expr_parse_opts wf_loc_job_name = {.contexts = ctx_job_secrets,
                                                    .no_status = true, .no_hash_files = true};
const struct expr_parse_opts wf_loc_job_env = {.contexts = ctx_job_env, .no_status = true,
                                                   .no_hash_files = true};
const struct expr_parse_opts wf_loc_job_defaults = {.contexts = ctx_job_defaults,
                                                        .no_status = true,
                                                        .no_hash_files = true};
const struct expr_parse_opts wf_loc_creds = {.contexts = ctx_creds, .no_status = true,
                                                 .no_hash_files = true};
/* Job outputs, container and service env: evaluated on the runner, after the steps. */
const struct expr_parse_opts wf_loc_runner = {.contexts = ctx_runner, .no_status = true,
                                                  .no_hash_files = true};
const struct expr_parse_opts wf_loc_env_url = {.contexts = ctx_runner_no_secrets,
                                                   .no_status = true, .no_hash_files = true};
/* A step's keys, and its if (which alone may call the status functions). */
const struct expr_parse_opts wf_loc_step = {.contexts = ctx_runner, .no_status = true};
const struct expr_parse_opts wf_loc_step_if = {.contexts = ctx_runner};

/* Sets the location for the expressions checked next; returns the previous one. */
const struct expr_parse_opts *
wf_set_loc(struct wctx *c, const struct expr_parse_opts *loc)
{
    const struct expr_parse_opts *old = c->loc;

    c->loc = loc;
    return old;
}

/* ------------------------------------------------------------------------------------------ */
/* Diagnostics                                                                                */

/* Formats "file:line:col: message"; past WF_MAX_DIAGS problems are only counted. */
void
wf_problem(struct wctx *c, struct ypos pos, const char *fmt, ...)
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
char *
wf_quote(const struct ynode *n)
{
    if (n == NULL || n->kind != YNODE_SCALAR)
        return xstrdup("");
    return ydoc_quote(n->str, n->len);
}

/* Reports a mapping key that is not a string. */
void
wf_problem_key(struct wctx *c, const char *path, const struct ynode *k)
{
    wf_problem(c, k->pos, "%s: expected a string key, got %s", path, ynode_kind_name(k));
}

/* Calls fn(c, PATH.KEY, k, v, arg) for each entry k: v of mapping n whose key is a string
 * without an expression, in order; reports the other keys. */
void
wf_each_entry(struct wctx *c, const char *path, const struct ynode *n,
              void (*fn)(struct wctx *c, const char *path, const struct ynode *k,
                         const struct ynode *v, const void *arg),
              const void *arg)
{
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i];
        if (k->kind != YNODE_SCALAR) {
            wf_problem_key(c, path, k);
            continue;
        }
        if (wf_check_no_expr(c, path, k))
            continue;
        char *p = wf_path_key(path, k);
        fn(c, p, k, n->items[i], arg);
        free(p);
    }
}

/* Reports that n has the wrong type. */
void
wf_problem_type(struct wctx *c, const char *path, const struct ynode *n, const char *expected)
{
    wf_problem(c, n->pos, "%s: expected %s, got %s", path, expected, ynode_kind_name(n));
}

/* Ends a parse: frees the line table, sorts the problems into file order and hands them to
 * diag_out (or frees them). Returns 0 when there were none, else ERR_INVALID with e set to the
 * first. */
int
wf_problems_end(struct wctx *c, struct wf_diag *diag_out, struct err *e)
{
    int rc;

    free(c->lines);
    c->lines = NULL;
    if (c->dropped > 0) {
        struct ypos last = {INT32_MAX, INT32_MAX};
        c->n--; /* make room: the summary goes last after sorting */
        free(c->items[c->n].msg);
        c->dropped++;
        wf_problem(c, last, "too many problems; %zu more not shown", c->dropped);
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
bool
wf_has_expr(const struct ynode *n)
{
    return n && n->kind == YNODE_SCALAR && memmem(n->str, n->len, "${{", 3) != NULL;
}

/* When s starts with "${{ insert }}" (white space allowed around insert), returns the text
 * after it; else NULL. */
static const char *
insert_at(const char *s)
{
    if (strncmp(s, "${{", 3) != 0)
        return NULL;
    s += 3;
    while (isspace((unsigned char)*s))
        s++;
    if (strncmp(s, "insert", 6) != 0)
        return NULL;
    s += 6;
    while (isspace((unsigned char)*s))
        s++;
    return strncmp(s, "}}", 2) == 0 ? s + 2 : NULL;
}

/* True when s is exactly "${{ insert }}" (whitespace allowed around insert). */
bool
wf_is_insert(const char *s)
{
    const char *end = insert_at(s);

    return end != NULL && *end == '\0';
}

/* True when s embeds ${{ insert }} among other text. */
static bool
embeds_insert(const char *s)
{
    for (const char *p = strstr(s, "${{"); p; p = strstr(p + 3, "${{"))
        if (insert_at(p) != NULL)
            return true;
    return false;
}

/* Checks a scalar where expressions are allowed: every ${{ }} must parse. */
void
wf_check_template(struct wctx *c, const char *path, const struct ynode *n)
{
    struct err e = {0};
    size_t off = 0;

    if (!wf_has_expr(n))
        return;
    if (strlen(n->str) != n->len) {
        wf_problem(c, n->pos, "%s: a NUL character is not allowed in a string", path);
        return;
    }
    if (embeds_insert(n->str)) {
        wf_problem(c, n->pos,
                   "%s: the 'insert' directive is only allowed as a whole mapping key "
                   "('${{ insert }}:'), not inside a string",
                   path);
        return;
    }
    if (expr_template_check_ex(n->str, c->loc, &off, &e) < 0) {
        if (off > n->len)
            off = 0;
        wf_problem(c, expr_pos(c, n, off), "%s: invalid expression: %s", path, e.msg);
    }
}

/* Reports an expression in a scalar where none is allowed. Returns true if one was found. */
bool
wf_check_no_expr(struct wctx *c, const char *path, const struct ynode *n)
{
    if (!wf_has_expr(n))
        return false;
    wf_problem(c, n->pos, "%s: expressions are not allowed here", path);
    return true;
}

/* Checks an `if:` value: an expression with or without ${{ }}. */
static void
check_if(struct wctx *c, const char *path, const struct ynode *n)
{
    struct expr *x = NULL;
    struct err e = {0};

    if (n->kind != YNODE_SCALAR) {
        wf_problem_type(c, path, n, "a string (an expression)");
        return;
    }
    if (ynode_is_null(n))
        return;
    if (wf_has_expr(n)) {
        wf_check_template(c, path, n);
        return;
    }
    if (strlen(n->str) != n->len) {
        wf_problem(c, n->pos, "%s: a NUL character is not allowed in a string", path);
        return;
    }
    if (expr_parse_ex(n->str, n->len, c->loc, &x, &e) < 0)
        wf_problem(c, n->pos, "%s: invalid expression: %s", path, e.msg);
    expr_free(x);
}

/* Checks an `if:` value and keeps its text in *out (unless it is null or not a scalar). */
void
wf_read_if(struct wctx *c, const char *path, const struct ynode *n, struct wf_str *out)
{
    check_if(c, path, n);
    if (n->kind == YNODE_SCALAR && !ynode_is_null(n)) {
        out->v = xstrdup(n->str);
        out->pos = n->pos;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Shapes                                                                                     */

/* Reports keys of map not in allowed (NULL-terminated), non-string keys and expression keys. */
void
wf_check_keys(struct wctx *c, const char *path, const struct ynode *map, const char *const *allowed)
{
    for (size_t i = 0; i < map->n; i++) {
        const struct ynode *k = map->keys[i];
        bool ok = false;

        if (k->kind != YNODE_SCALAR) {
            wf_problem_key(c, path, k);
            continue;
        }
        if (wf_check_no_expr(c, path, k))
            continue;
        if (!k->quoted && strcmp(k->str, "<<") == 0) {
            wf_problem(c, k->pos,
                       "%s%sYAML merge keys ('<<') are not supported; repeat the keys or use an "
                       "alias for the whole value",
                       path, path[0] ? ": " : "");
            continue;
        }
        for (size_t j = 0; allowed[j] && !ok; j++)
            ok = strcmp(k->str, allowed[j]) == 0 && strlen(allowed[j]) == k->len;
        if (ok)
            continue;
        struct buf list = BUF_INIT;
        for (size_t j = 0; allowed[j]; j++)
            buf_printf(&list, "%s%s", j ? ", " : "", allowed[j]);
        char *kq = wf_quote(k);
        const char *sep = path[0] ? ": " : "";
        if (allowed[0])
            wf_problem(c, k->pos, "%s%sunknown key '%s' (expected one of: %s)", path, sep, kq,
                       buf_str(&list));
        else
            wf_problem(c, k->pos, "%s%sunknown key '%s' (no keys are allowed here)", path, sep, kq);
        free(kq);
        buf_free(&list);
    }
}

/* Returns a new path: base + "." + key. */
char *
wf_path(const char *base, const char *key)
{
    return base[0] ? xasprintf("%s.%s", base, key) : xstrdup(key);
}

/* Returns a new path: base + "." + the key node's text (quoted for messages). */
char *
wf_path_key(const char *base, const struct ynode *k)
{
    char *kq = wf_quote(k);
    char *r = wf_path(base, kq);
    free(kq);
    return r;
}

/* Checks a scalar string value (expressions allowed per allow_expr); fills out if non-NULL.
 * Null counts as absent. */
void
wf_get_str(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr,
           struct wf_str *out)
{
    if (n == NULL)
        return;
    if (n->kind != YNODE_SCALAR) {
        wf_problem_type(c, path, n, "a string");
        return;
    }
    if (strlen(n->str) != n->len) {
        wf_problem(c, n->pos, "%s: a NUL character is not allowed in a string", path);
        return;
    }
    if (allow_expr)
        wf_check_template(c, path, n);
    else
        wf_check_no_expr(c, path, n);
    if (out && !ynode_is_null(n)) {
        out->v = xstrdup(n->str);
        out->pos = n->pos;
    }
}

/* Checks a string-keyed mapping of scalars (env, with, outputs, ...); with allow_whole, the
 * whole value may also be one "${{ }}" scalar. */
void
wf_check_scalar_map(struct wctx *c, const char *path, const struct ynode *n, bool allow_whole)
{
    if (n->kind == YNODE_SCALAR && allow_whole && wf_has_expr(n)) {
        wf_check_template(c, path, n);
        return;
    }
    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            wf_problem_type(c, path, n, "a mapping");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        if (k->kind != YNODE_SCALAR) {
            wf_problem_key(c, path, k);
            continue;
        }
        char *p = wf_path_key(path, k);
        if (!wf_is_insert(k->str))
            wf_check_no_expr(c, path, k);
        if (v->kind != YNODE_SCALAR && !wf_is_insert(k->str))
            wf_problem_type(c, p, v, "a string");
        else if (v->kind == YNODE_SCALAR)
            wf_check_template(c, p, v);
        free(p);
    }
}

/* Begins the check of a typed scalar: reports n when it is not a scalar (expected names the
 * type) and checks it when it holds an expression. Returns true when n is a literal, not null,
 * whose text the caller checks. */
static bool
typed_literal(struct wctx *c, const char *path, const struct ynode *n, const char *expected)
{
    if (n->kind != YNODE_SCALAR) {
        wf_problem_type(c, path, n, expected);
        return false;
    }
    if (wf_has_expr(n)) {
        wf_check_template(c, path, n);
        return false;
    }
    return !ynode_is_null(n);
}

/* Checks a scalar that must be a number, or an expression. */
void
wf_check_number(struct wctx *c, const char *path, const struct ynode *n)
{
    char *end;

    if (!typed_literal(c, path, n, "a number"))
        return;
    errno = 0;
    (void)strtod(n->str, &end);
    if (n->len == 0 || *end != '\0' || isspace((unsigned char)n->str[0])) {
        char *v = wf_quote(n);
        wf_problem(c, n->pos, "%s: expected a number, got '%s'", path, v);
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
void
wf_check_minutes(struct wctx *c, const char *path, const struct ynode *n)
{
    const char *why;

    wf_check_number(c, path, n);
    if (n->kind != YNODE_SCALAR || wf_has_expr(n) || ynode_is_null(n) || n->len == 0)
        return;
    char *end;
    (void)strtod(n->str, &end);
    if (*end != '\0' || isspace((unsigned char)n->str[0]))
        return; /* not a number: check_number said so */
    if ((why = wf_minutes_problem(n->str, NULL)) != NULL) {
        char *v = wf_quote(n);
        wf_problem(c, n->pos, "%s: %s, got '%s'", path, why, v);
        free(v);
    }
}

/* Checks a scalar that must be a boolean, or an expression. */
void
wf_check_bool(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const ok[] = {"true", "True", "TRUE", "false", "False", "FALSE", NULL};

    if (!typed_literal(c, path, n, "a boolean"))
        return;
    for (size_t i = 0; ok[i]; i++)
        if (strcmp(n->str, ok[i]) == 0)
            return;
    char *v = wf_quote(n);
    wf_problem(c, n->pos, "%s: expected a boolean (true or false), got '%s'", path, v);
    free(v);
}

/* Checks a string or a sequence of strings (expressions allowed per allow_expr). */
void
wf_check_str_or_seq(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr)
{
    if (n->kind == YNODE_SCALAR) {
        wf_get_str(c, path, n, allow_expr, NULL);
        return;
    }
    if (n->kind != YNODE_SEQ) {
        wf_problem_type(c, path, n, "a string or a sequence of strings");
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        char *p = xasprintf("%s[%zu]", path, i);
        wf_get_str(c, p, n->items[i], allow_expr, NULL);
        free(p);
    }
}

/* Checks every scalar inside n (keys and values) as a template. */
void
wf_check_tree(struct wctx *c, const char *path, const struct ynode *n)
{
    if (n->kind == YNODE_SCALAR) {
        wf_check_template(c, path, n);
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        char *p;
        if (n->kind == YNODE_MAP) {
            const struct ynode *k = n->keys[i];
            if (k->kind == YNODE_SCALAR && !wf_is_insert(k->str))
                wf_check_no_expr(c, path, k);
            else if (k->kind != YNODE_SCALAR)
                wf_problem_key(c, path, k);
            p = wf_path_key(path, k);
        } else {
            p = xasprintf("%s[%zu]", path, i);
        }
        wf_check_tree(c, p, n->items[i]);
        free(p);
    }
}

/* Checks that n's text is one of allowed. */
void
wf_check_enum(struct wctx *c, const char *path, const struct ynode *n, const char *const *allowed)
{
    if (n->kind != YNODE_SCALAR) {
        wf_problem_type(c, path, n, "a string");
        return;
    }
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(n->str, allowed[i]) == 0)
            return;
    struct buf list = BUF_INIT;
    for (size_t i = 0; allowed[i]; i++)
        buf_printf(&list, "%s%s", i ? ", " : "", allowed[i]);
    char *v = wf_quote(n);
    wf_problem(c, n->pos, "%s: unexpected value '%s' (expected one of: %s)", path, v,
               buf_str(&list));
    free(v);
    buf_free(&list);
}

/* Checks concurrency: a string (the group) or {group, cancel-in-progress, queue}. */
void
wf_check_concurrency(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"group", "cancel-in-progress", "queue", NULL};
    static const char *const queue[] = {"single", "max", NULL};

    if (n->kind == YNODE_SCALAR) {
        wf_check_template(c, path, n);
        return;
    }
    if (n->kind != YNODE_MAP) {
        wf_problem_type(c, path, n, "a string or a mapping");
        return;
    }
    wf_check_keys(c, path, n, keys);
    const struct ynode *g = ynode_get(n, "group"), *cip = ynode_get(n, "cancel-in-progress");
    if (g) {
        char *p = wf_path(path, "group");
        wf_get_str(c, p, g, true, NULL);
        free(p);
    } else {
        wf_problem(c, n->pos, "%s: missing required key 'group'", path);
    }
    if (ynode_get(n, "queue")) {
        char *p = wf_path(path, "queue");
        wf_check_enum(c, p, ynode_get(n, "queue"), queue);
        free(p);
    }
    if (cip) {
        char *p = wf_path(path, "cancel-in-progress");
        wf_check_bool(c, p, cip);
        free(p);
    }
}

/* One scope of a permissions mapping: k must be a known scope (reported at parent, the
 * mapping's path) and v one of its levels. */
static void
check_permission(struct wctx *c, const char *path, const struct ynode *k, const struct ynode *v,
                 const void *parent)
{
    static const char *const scopes[] = {
        "actions", "attestations", "checks", "contents", "deployments", "discussions",
        "id-token", "issues", "models", "packages", "pages", "pull-requests",
        "repository-projects", "security-events", "statuses", NULL};
    static const char *const levels[] = {"read", "write", "none", NULL};
    static const char *const write_none[] = {"write", "none", NULL};
    static const char *const read_none[] = {"read", "none", NULL};

    wf_check_enum(c, parent, k, scopes);
    if (!wf_check_no_expr(c, path, v)) {
        if (strcmp(k->str, "id-token") == 0)
            wf_check_enum(c, path, v, write_none);
        else if (strcmp(k->str, "models") == 0)
            wf_check_enum(c, path, v, read_none);
        else
            wf_check_enum(c, path, v, levels);
    }
}

/* Checks permissions as GitHub's reader does: read-all or write-all, or a mapping of known
 * scopes to read, write or none (id-token has no read level, models no write level). A typo
 * such as `contents: wirte` must fail here rather than run the job with a token it did not
 * ask for. The empty mapping {} (no permissions at all) is allowed. */
void
wf_check_permissions(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const all[] = {"read-all", "write-all", NULL};

    if (n->kind == YNODE_SCALAR) {
        if (!ynode_is_null(n) && !wf_check_no_expr(c, path, n))
            wf_check_enum(c, path, n, all);
        return;
    }
    if (n->kind != YNODE_MAP) {
        wf_problem_type(c, path, n, "a string or a mapping");
        return;
    }
    wf_each_entry(c, path, n, check_permission, path);
}

/* Checks defaults: {run: {shell, working-directory}} and reads the two strings. */
void
wf_read_defaults(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr,
                 struct wf_str *shell, struct wf_str *wd)
{
    static const char *const keys[] = {"run", NULL};
    static const char *const run_keys[] = {"shell", "working-directory", NULL};

    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            wf_problem_type(c, path, n, "a mapping");
        return;
    }
    wf_check_keys(c, path, n, keys);
    const struct ynode *run = ynode_get(n, "run");
    if (run == NULL)
        return;
    char *p = wf_path(path, "run");
    if (run->kind != YNODE_MAP) {
        if (!ynode_is_null(run))
            wf_problem_type(c, p, run, "a mapping");
        free(p);
        return;
    }
    wf_check_keys(c, p, run, run_keys);
    char *ps = wf_path(p, "shell"), *pw = wf_path(p, "working-directory");
    wf_get_str(c, ps, ynode_get(run, "shell"), allow_expr, shell);
    wf_get_str(c, pw, ynode_get(run, "working-directory"), allow_expr, wd);
    free(ps);
    free(pw);
    free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Ids                                                                                        */

/* True when id matches ^[A-Za-z_][A-Za-z0-9_-]*$. */
bool
wf_valid_id(const char *s, size_t len)
{
    if (len == 0 || strlen(s) != len || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Orders ids by text, then by index (for qsort). */
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

/* Sorting keeps this linear-ish for hostile files with many ids. */
void
wf_each_dup(struct wctx *c, struct id_ref *refs, size_t nr, bool nocase,
            void (*dup)(struct wctx *c, const void *arg, size_t index, size_t first),
            const void *arg)
{
    int (*cmp)(const char *, const char *) = nocase ? strcasecmp : strcmp;

    qsort(refs, nr, sizeof *refs, nocase ? id_ref_casecmp : id_ref_cmp);
    for (size_t i = 1; i < nr; i++) {
        if (cmp(refs[i - 1].id, refs[i].id) != 0)
            continue;
        size_t first = i - 1;
        while (first > 0 && cmp(refs[first - 1].id, refs[i].id) == 0)
            first--;
        dup(c, arg, refs[i].index, refs[first].index);
    }
}
