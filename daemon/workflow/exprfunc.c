/* exprfunc.c: the built-in functions of the expression language (contains, startsWith,
 * endsWith, format, join, toJSON with its JSON writer, fromJSON, hashFiles through the
 * environment's hook, and the status functions), called by the evaluator with their evaluated
 * arguments. case() is in expreval.c: it evaluates its arguments lazily. */
#include "exprint.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* JSON output (toJSON): two-space indentation, GitHub's number format                        */
/* ------------------------------------------------------------------------------------------ */

/* Appends a JSON string literal: the characters JSON escapes by name (from[i] becomes a
 * backslash and to[i]), other control characters \u00XX, every other byte as it is. */
static void
json_put_string(struct buf *b, const char *s, size_t len)
{
    static const char from[] = "\"\\\n\r\t\b\f", to[] = "\"\\nrtbf";

    buf_putc(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *named = c != '\0' ? strchr(from, c) : NULL;

        if (named != NULL) {
            buf_putc(b, '\\');
            buf_putc(b, to[named - from]);
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_putc(b, (char)c);
        }
    }
    buf_putc(b, '"');
}

/* Appends a newline and indentation. */
static void
json_newline(struct buf *b, int level)
{
    buf_putc(b, '\n');
    for (int i = 0; i < level; i++)
        buf_puts(b, "  ");
}

/* Appends v as indented JSON; fails (returns false) when the text grows past limit bytes. */
static bool
json_put(struct buf *b, const json_t *v, int level, size_t limit)
{
    char num[64];
    double d;
    size_t i;
    bool first = true;

    if (b->len > limit)
        return false;
    switch (expr_kind_of(v)) {
    case K_NULL:
        buf_puts(b, "null");
        break;
    case K_BOOL:
        buf_puts(b, json_is_true(v) ? "true" : "false");
        break;
    case K_NUM:
        if (json_is_integer(v)) {
            buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            break;
        }
        expr_number_get(v, &d);
        expr_number_format(d, num, sizeof num);
        if (isfinite(d))
            buf_puts(b, num);
        else
            json_put_string(b, num, strlen(num)); /* JSON has no NaN: "NaN" */
        break;
    case K_STR:
        json_put_string(b, json_string_value(v), json_string_length(v));
        break;
    case K_ARR:
        if (json_array_size(v) == 0) {
            buf_puts(b, "[]");
            break;
        }
        buf_putc(b, '[');
        for (i = 0; i < json_array_size(v); i++) {
            if (!first)
                buf_putc(b, ',');
            first = false;
            json_newline(b, level + 1);
            if (!json_put(b, json_array_get(v, i), level + 1, limit))
                return false;
        }
        json_newline(b, level);
        buf_putc(b, ']');
        break;
    default: {
        const char *k;
        json_t *m;

        if (json_object_size(v) == 0) {
            buf_puts(b, "{}");
            break;
        }
        buf_putc(b, '{');
        json_object_foreach((json_t *)(uintptr_t)v, k, m) {
            if (!first)
                buf_putc(b, ',');
            first = false;
            json_newline(b, level + 1);
            json_put_string(b, k, json_object_iter_key_len(json_object_key_to_iter(k)));
            buf_puts(b, ": ");
            if (!json_put(b, m, level + 1, limit))
                return false;
        }
        json_newline(b, level);
        buf_putc(b, '}');
        break;
    }
    }
    return b->len <= limit;
}

/* ------------------------------------------------------------------------------------------ */
/* Functions                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Returns a new string: v coerced to string and upper-cased, for the case-insensitive string
 * functions; *len receives its length. */
static char *
folded(const json_t *v, size_t *len)
{
    size_t slen;
    char *s = expr_to_strn(v, &slen);
    char *f = expr_fold(s, slen, len);

    free(s);
    return f;
}

/* contains(search, item): substring for primitives, loose membership for arrays. */
static bool
fn_contains(const json_t *search, const json_t *item)
{
    char *fs, *ft;
    size_t fslen, ftlen;
    bool found;

    if (expr_kind_of(search) == K_ARR) {
        for (size_t i = 0; i < json_array_size(search); i++)
            if (expr_loose_equals(json_array_get(search, i), item))
                return true;
        return false;
    }
    if (!expr_is_primitive(search))
        return false;
    fs = folded(search, &fslen);
    ft = folded(item, &ftlen);
    found = ftlen == 0 || (ftlen <= fslen && memmem(fs, fslen, ft, ftlen) != NULL);
    free(fs);
    free(ft);
    return found;
}

/* startsWith/endsWith: case-insensitive prefix or suffix test of two primitives. */
static bool
fn_affix(const json_t *str, const json_t *affix, bool end)
{
    char *fs, *ft;
    size_t fslen, ftlen;
    bool found = false;

    if (!expr_is_primitive(str) || !expr_is_primitive(affix))
        return false;
    fs = folded(str, &fslen);
    ft = folded(affix, &ftlen);
    if (ftlen <= fslen)
        found = memcmp(end ? fs + fslen - ftlen : fs, ft, ftlen) == 0;
    free(fs);
    free(ft);
    return found;
}

/* Reads "{N}" at fmt[i] (fmt[i] == '{'): the index and the position after the '}'. Returns false
 * when it is not a valid placeholder (format specifiers such as "{0:x}" are not supported). The
 * first '}' closes it, so "{0}}" is a placeholder followed by a lone '}', which is invalid. */
static bool
format_placeholder(const char *fmt, size_t len, size_t i, size_t *index, size_t *next)
{
    size_t k = i + 1, v = 0;
    bool digits = false;

    while (k < len && fmt[k] >= '0' && fmt[k] <= '9') {
        if (v < 100000)
            v = v * 10 + (size_t)(fmt[k] - '0');
        digits = true;
        k++;
    }
    if (!digits || k >= len || fmt[k] != '}')
        return false;
    *index = v;
    *next = k + 1;
    return true;
}

/* A format string's fault, by its offset: the string itself is not quoted, since it may be
 * (or be built from) a secret, and a message cut short at its size limit would print a piece
 * of one that the masker cannot recognize. */
static int
format_invalid(struct evalst *st, size_t at)
{
    return err_set(st->e, ERR_INVALID, "The format string is invalid at offset %zu: a '{' or '}' "
                   "that is not part of a placeholder {N} (write {{ or }} for one)", at);
}

/* format(fmt, args...) */
static int
fn_format(struct evalst *st, const struct val *args, size_t nargs, struct val *out)
{
    struct buf b = BUF_INIT;
    size_t flen, i = 0, limit = expr_room(st);
    char *fmt = expr_to_strn(args[0].j, &flen);
    int rc = 0;

    while (i < flen) {
        char c = fmt[i];
        size_t index, next;

        if (c == '{' && i + 1 < flen && fmt[i + 1] == '{') {
            buf_putc(&b, '{');
            i += 2;
        } else if (c == '}' && i + 1 < flen && fmt[i + 1] == '}') {
            buf_putc(&b, '}');
            i += 2;
        } else if (c == '{') {
            char *s;
            size_t slen;

            if (!format_placeholder(fmt, flen, i, &index, &next)) {
                rc = format_invalid(st, i);
                goto out;
            }
            if (index >= nargs - 1) {
                rc = err_set(st->e, ERR_INVALID,
                             "The format string references more arguments than were supplied "
                             "(placeholder {%zu} at offset %zu, %zu argument%s)",
                             index, i, nargs - 1, nargs == 2 ? "" : "s");
                goto out;
            }
            s = expr_to_strn(args[index + 1].j, &slen);
            buf_append(&b, s, slen);
            free(s);
            i = next;
        } else if (c == '}') {
            rc = format_invalid(st, i);
            goto out;
        } else {
            buf_putc(&b, c);
            i++;
        }
        if (b.len > limit) {
            rc = err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
            goto out;
        }
    }
    expr_val_set(out, expr_jstr(b.data ? b.data : "", b.len));
    rc = expr_charge(st, out, b.len);
    if (rc < 0)
        expr_val_drop(st, out);
out:
    buf_free(&b);
    free(fmt);
    return rc;
}

/* join(array, sep = ',') */
static int
fn_join(struct evalst *st, const struct val *args, size_t nargs, struct val *out)
{
    struct buf b = BUF_INIT;
    const json_t *a = args[0].j;
    char *sep = NULL, *s;
    size_t seplen = 1, slen, limit = expr_room(st);
    int rc = 0;

    if (expr_kind_of(a) == K_ARR) {
        if (nargs > 1 && expr_is_primitive(args[1].j))
            sep = expr_to_strn(args[1].j, &seplen);
        else
            sep = xstrdup(",");
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (i > 0)
                buf_append(&b, sep, seplen);
            s = expr_to_strn(json_array_get(a, i), &slen);
            buf_append(&b, s, slen);
            free(s);
            if (b.len > limit) {
                rc = err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
                goto out;
            }
        }
    } else if (expr_is_primitive(a)) {
        s = expr_to_strn(a, &slen);
        buf_append(&b, s, slen);
        free(s);
    }
    expr_val_set(out, expr_jstr(b.data ? b.data : "", b.len));
    rc = expr_charge(st, out, b.len);
    if (rc < 0)
        expr_val_drop(st, out);
out:
    free(sep);
    buf_free(&b);
    return rc;
}

/* toJSON(value) */
static int
fn_tojson(struct evalst *st, const struct val *args, struct val *out)
{
    struct buf b = BUF_INIT;
    int rc;

    if (!json_put(&b, args[0].j, 0, expr_room(st))) {
        buf_free(&b);
        return err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
    }
    expr_val_set(out, expr_jstr(b.data ? b.data : "", b.len));
    rc = expr_charge(st, out, b.len);
    if (rc < 0)
        expr_val_drop(st, out);
    buf_free(&b);
    return rc;
}

/* fromJSON(string) */
static int
fn_fromjson(struct evalst *st, const struct val *args, struct val *out)
{
    const json_t *s = args[0].j;
    json_error_t jerr;
    json_t *v;
    int rc;

    if (expr_kind_of(s) != K_STR)
        return err_set(st->e, ERR_INVALID, "Cannot parse non-string type as JSON");
    if (json_string_length(s) > expr_room(st))
        return err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
    v = json_loadb(json_string_value(s), json_string_length(s),
                   JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
    if (v == NULL) {
        if (json_string_length(s) == 0)
            return err_set(st->e, ERR_INVALID, "Invalid JSON: empty string");
        /* jansson's text quotes the input near the fault ("invalid token near 'hunt'"): cut
         * off, since the value may be a secret and a piece of one escapes the masker. */
        char *near = strstr(jerr.text, " near ");
        if (near)
            *near = '\0';
        return err_set(st->e, ERR_INVALID, "Invalid JSON: %s at line %d, column %d", jerr.text,
                       jerr.line, jerr.column);
    }
    expr_val_set(out, v);
    rc = expr_charge(st, out, json_string_length(s));
    if (rc < 0)
        expr_val_drop(st, out);
    return rc;
}

/* hashFiles(patterns...) through the environment's hook. */
static int
fn_hashfiles(struct evalst *st, const struct val *args, size_t nargs, struct val *out)
{
    const char **pats = NULL;
    char *hash = NULL;
    size_t len;
    int rc;

    if (st->env == NULL || st->env->hash_files == NULL)
        return err_set(st->e, ERR_INVALID, "hashFiles() is not available here");
    err_clear(st->e);
    pats = xcalloc(nargs, sizeof *pats);
    for (size_t i = 0; i < nargs; i++)
        pats[i] = expr_to_strn(args[i].j, &len);
    rc = st->env->hash_files(st->env->arg, pats, nargs, &hash, st->e);
    if (rc >= 0) {
        expr_val_set(out, expr_jstr(hash ? hash : "", hash ? strlen(hash) : 0));
        rc = 0;
    } else if (st->e != NULL && st->e->msg[0] == '\0') {
        err_set(st->e, rc, "hashFiles() failed");
    }
    for (size_t i = 0; i < nargs; i++)
        free((char *)(uintptr_t)pats[i]);
    free(pats);
    free(hash);
    return rc;
}

/* success(), failure(), cancelled(), always(). */
static int
fn_status(struct evalst *st, const struct expr_node *n, const struct val *args, size_t nargs,
          struct val *out)
{
    const struct expr_env *env = st->env;
    const char *name = expr_fn_name(n->fn);
    bool res;

    if (n->fn == EXPR_FN_ALWAYS) {
        res = true;
    } else if (nargs > 0 && env != NULL && env->status_jobs_fn != NULL) {
        const char **jobs = xcalloc(nargs, sizeof *jobs);
        size_t len;

        for (size_t i = 0; i < nargs; i++)
            jobs[i] = expr_to_strn(args[i].j, &len);
        res = env->status_jobs_fn(env->arg, name, jobs, nargs);
        for (size_t i = 0; i < nargs; i++)
            free((char *)(uintptr_t)jobs[i]);
        free(jobs);
    } else if (env != NULL && env->status_fn != NULL) {
        res = env->status_fn(env->arg, name);
    } else if (env != NULL && env->job_status != NULL) {
        res = strcmp(env->job_status, name) == 0;
    } else {
        res = n->fn == EXPR_FN_SUCCESS;
    }
    expr_val_set(out, json_boolean(res));
    return 0;
}

/* Calls the function n names with its evaluated arguments; see exprint.h. */
int
expr_fn_call(struct evalst *st, const struct expr_node *n, const struct val *args, size_t nargs,
             struct val *out)
{
    int rc = 0;

    switch (n->fn) {
    case EXPR_FN_CONTAINS:
        expr_val_set(out, json_boolean(fn_contains(args[0].j, args[1].j)));
        break;
    case EXPR_FN_STARTSWITH:
    case EXPR_FN_ENDSWITH:
        expr_val_set(out, json_boolean(fn_affix(args[0].j, args[1].j, n->fn == EXPR_FN_ENDSWITH)));
        break;
    case EXPR_FN_FORMAT:
        rc = fn_format(st, args, nargs, out);
        break;
    case EXPR_FN_JOIN:
        rc = fn_join(st, args, nargs, out);
        break;
    case EXPR_FN_TOJSON:
        rc = fn_tojson(st, args, out);
        break;
    case EXPR_FN_FROMJSON:
        rc = fn_fromjson(st, args, out);
        break;
    case EXPR_FN_HASHFILES:
        rc = fn_hashfiles(st, args, nargs, out);
        break;
    default:
        rc = fn_status(st, n, args, nargs, out);
        break;
    }
    return rc;
}
