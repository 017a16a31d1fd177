/* expreval.c: evaluation of parsed expressions over jansson values: property and index access,
 * filters, operators with GitHub's coercions, and the built-in functions. */
#include "exprint.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Values                                                                                     */
/* ------------------------------------------------------------------------------------------ */

enum kind { K_NULL, K_BOOL, K_NUM, K_STR, K_ARR, K_OBJ };

/* Aborts on a NULL from jansson, which only happens when memory runs out. */
static json_t *
jchk(json_t *v)
{
    if (v == NULL) {
        fputs("expr: out of memory\n", stderr);
        abort();
    }
    return v;
}

/* Returns a new string value holding s[0..len) (any bytes). */
static json_t *
jstr(const char *s, size_t len)
{
    return jchk(json_stringn_nocheck(s, len));
}

/* When v is the one-member object standing for NaN or an infinity, sets *d and returns true. */
static bool
nonfinite_get(const json_t *v, double *d)
{
    const json_t *s;
    const char *t;

    if (!json_is_object(v) || json_object_size(v) != 1)
        return false;
    s = json_object_get(v, "$number");
    if (!json_is_string(s))
        return false;
    t = json_string_value(s);
    if (strcmp(t, "NaN") == 0)
        *d = NAN;
    else if (strcmp(t, "Infinity") == 0)
        *d = INFINITY;
    else if (strcmp(t, "-Infinity") == 0)
        *d = -INFINITY;
    else
        return false;
    return true;
}

/* True when v is a number (including the non-finite form); *d receives it. */
bool
expr_number_get(const json_t *v, double *d)
{
    double tmp;

    if (d == NULL)
        d = &tmp;
    if (json_is_integer(v)) {
        *d = (double)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        *d = json_real_value(v);
        return true;
    }
    return nonfinite_get(v, d);
}

/* Returns a new number value; see expr.h. */
json_t *
expr_number_new(double d)
{
    const char *name;

    if (isfinite(d))
        return jchk(json_real(d));
    name = isnan(d) ? "NaN" : d < 0 ? "-Infinity" : "Infinity";
    return jchk(json_pack("{s:s}", "$number", name));
}

/* The kind of a value (a NULL pointer is null). */
static enum kind
kind_of(const json_t *v)
{
    double d;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return nonfinite_get(v, &d) ? K_NUM : K_OBJ;
    case JSON_ARRAY:
        return K_ARR;
    case JSON_STRING:
        return K_STR;
    case JSON_INTEGER:
    case JSON_REAL:
        return K_NUM;
    case JSON_TRUE:
    case JSON_FALSE:
        return K_BOOL;
    default:
        return K_NULL;
    }
}

/* True for null, booleans, numbers and strings. */
static bool
is_primitive(const json_t *v)
{
    enum kind k = kind_of(v);

    return k != K_ARR && k != K_OBJ;
}

/* Truthiness (§5.5). */
bool
expr_truthy(const json_t *v)
{
    double d;

    if (v == NULL)
        return false;
    switch (kind_of(v)) {
    case K_NULL:
        return false;
    case K_BOOL:
        return json_is_true(v);
    case K_NUM:
        expr_number_get(v, &d);
        return !(d == 0 || isnan(d));
    case K_STR:
        return json_string_length(v) > 0;
    default:
        return true;
    }
}

/* Number coercion: null 0, booleans 0/1, strings like Number(), arrays and objects NaN. */
static double
to_number(const json_t *v)
{
    double d = NAN;

    switch (kind_of(v)) {
    case K_NULL:
        return 0;
    case K_BOOL:
        return json_is_true(v) ? 1 : 0;
    case K_NUM:
        expr_number_get(v, &d);
        return d;
    case K_STR:
        return expr_str_to_number(json_string_value(v), json_string_length(v));
    default:
        return NAN;
    }
}

/* Returns a new string: v coerced to string; *len receives its length (it may hold NULs). */
static char *
to_string(const json_t *v, size_t *len)
{
    char num[64];
    const char *s;
    double d;

    switch (kind_of(v)) {
    case K_NULL:
        s = "";
        break;
    case K_BOOL:
        s = json_is_true(v) ? "true" : "false";
        break;
    case K_NUM:
        if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        } else {
            expr_number_get(v, &d);
            expr_number_format(d, num, sizeof num);
        }
        s = num;
        break;
    case K_STR: {
        char *copy;

        *len = json_string_length(v);
        copy = xmalloc(*len + 1);
        memcpy(copy, json_string_value(v), *len + 1);
        return copy;
    }
    case K_ARR:
        s = "Array";
        break;
    default:
        s = "Object";
        break;
    }
    *len = strlen(s);
    return xstrdup(s);
}

/* Returns a new string: the value coerced to string as GitHub prints it. */
char *
expr_to_string(const json_t *v)
{
    size_t len;

    return to_string(v, &len);
}

/* Looks a member up, exactly first and then case-insensitively. Borrowed; NULL when absent. */
static json_t *
object_get_ci(const json_t *obj, const char *key, size_t klen)
{
    const char *k;
    json_t *v;

    v = json_object_getn(obj, key, klen);
    if (v != NULL)
        return v;
    json_object_foreach((json_t *)(uintptr_t)obj, k, v) {
        size_t n = json_object_iter_key_len(json_object_key_to_iter(k));

        if (expr_casecmp(k, n, key, klen) == 0)
            return v;
    }
    return NULL;
}

/* One side of a comparison after coercion. */
struct operand {
    enum kind k;
    double n; /* when k is K_NUM */
    const json_t *j;
};

/* Makes an operand of v, uncoerced. */
static struct operand
operand_of(const json_t *v)
{
    struct operand o = {.k = kind_of(v), .n = NAN, .j = v};

    if (o.k == K_NUM)
        expr_number_get(v, &o.n);
    return o;
}

/* Turns an operand into a number. */
static void
operand_to_number(struct operand *o)
{
    o->n = to_number(o->j);
    o->k = K_NUM;
}

/* Coerces both sides as GitHub does before comparing (JavaScript's abstract equality, except
 * that arrays and objects never convert): when the kinds differ, a null or boolean becomes a
 * number, and a string facing a number becomes one. */
static void
coerce_pair(struct operand *l, struct operand *r)
{
    for (;;) {
        if (l->k == r->k)
            return;
        if (l->k == K_NUM && r->k == K_STR) {
            operand_to_number(r);
            return;
        }
        if (l->k == K_STR && r->k == K_NUM) {
            operand_to_number(l);
            return;
        }
        if (l->k == K_NULL || l->k == K_BOOL) {
            operand_to_number(l);
            continue;
        }
        if (r->k == K_NULL || r->k == K_BOOL) {
            operand_to_number(r);
            continue;
        }
        return;
    }
}

/* Loose equality (==). */
static bool
loose_equals(const json_t *lv, const json_t *rv)
{
    struct operand l = operand_of(lv), r = operand_of(rv);

    coerce_pair(&l, &r);
    if (l.k != r.k)
        return false;
    switch (l.k) {
    case K_NULL:
        return true;
    case K_NUM:
        return !isnan(l.n) && !isnan(r.n) && l.n == r.n;
    case K_STR:
        return expr_casecmp(json_string_value(lv), json_string_length(lv), json_string_value(rv),
                            json_string_length(rv)) == 0;
    case K_BOOL:
        return json_is_true(lv) == json_is_true(rv);
    default:
        return lv == rv; /* arrays and objects: the same instance */
    }
}

/* Ordering: returns true when l > r (greater) or l < r (!greater). */
static bool
loose_order(const json_t *lv, const json_t *rv, bool greater)
{
    struct operand l = operand_of(lv), r = operand_of(rv);
    int c;

    coerce_pair(&l, &r);
    if (l.k != r.k)
        return false;
    switch (l.k) {
    case K_NUM:
        if (isnan(l.n) || isnan(r.n))
            return false;
        return greater ? l.n > r.n : l.n < r.n;
    case K_STR:
        c = expr_casecmp(json_string_value(lv), json_string_length(lv), json_string_value(rv),
                         json_string_length(rv));
        return greater ? c > 0 : c < 0;
    case K_BOOL:
        return greater ? (json_is_true(lv) && !json_is_true(rv))
                       : (!json_is_true(lv) && json_is_true(rv));
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* JSON output (toJSON): two-space indentation, GitHub's number format                        */
/* ------------------------------------------------------------------------------------------ */

/* Appends a JSON string literal. */
static void
json_put_string(struct buf *b, const char *s, size_t len)
{
    buf_putc(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        switch (c) {
        case '"':
            buf_puts(b, "\\\"");
            break;
        case '\\':
            buf_puts(b, "\\\\");
            break;
        case '\n':
            buf_puts(b, "\\n");
            break;
        case '\r':
            buf_puts(b, "\\r");
            break;
        case '\t':
            buf_puts(b, "\\t");
            break;
        case '\b':
            buf_puts(b, "\\b");
            break;
        case '\f':
            buf_puts(b, "\\f");
            break;
        default:
            if (c < 0x20)
                buf_printf(b, "\\u%04x", c);
            else
                buf_putc(b, (char)c);
            break;
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
    switch (kind_of(v)) {
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
/* Evaluation                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* A value during evaluation. */
struct val {
    json_t *j;     /* owned reference, never NULL */
    bool filtered; /* an array made by '*', whose later accesses apply to each element */
    size_t cost;   /* memory charged for it (released when it is dropped) */
};

struct evalst {
    const struct expr_env *env;
    const struct expr *x;
    size_t mem; /* bytes charged for values alive now */
    struct err *e;
};

static int eval_node(struct evalst *st, const struct expr_node *n, struct val *out);

/* Releases a value and its memory charge. */
static void
val_drop(struct evalst *st, struct val *v)
{
    json_decref(v->j);
    st->mem -= v->cost;
    v->j = NULL;
    v->cost = 0;
}

/* Charges memory for a new value of about `bytes` bytes of text; fails past the limit. */
static int
charge(struct evalst *st, struct val *v, size_t bytes)
{
    size_t amount = bytes * 2; /* GitHub counts UTF-16 code units of two bytes */

    if (st->mem + amount > EXPR_MAX_MEMORY)
        return err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
    st->mem += amount;
    v->cost += amount;
    return 0;
}

/* Bytes still allowed for new text. */
static size_t
room(const struct evalst *st)
{
    return st->mem >= EXPR_MAX_MEMORY ? 0 : (EXPR_MAX_MEMORY - st->mem) / 2;
}

/* Sets *out to a value (takes ownership of j). */
static void
val_set(struct val *out, json_t *j)
{
    out->j = jchk(j);
    out->filtered = false;
    out->cost = 0;
}

/* Index access helper: the string key and array index an index value stands for. */
struct idx {
    bool star;
    bool has_str;
    char *str;
    size_t slen;
    bool has_int;
    size_t i;
};

/* Computes the key and index for an index value (GitHub: primitives give a string key; any
 * value that converts to a finite non-negative number gives an index, floored). */
static void
idx_init(struct idx *ix, const json_t *v)
{
    double d;

    memset(ix, 0, sizeof *ix);
    if (is_primitive(v)) {
        ix->str = to_string(v, &ix->slen);
        ix->has_str = true;
    }
    d = to_number(v);
    if (isfinite(d) && d >= 0) {
        d = floor(d);
        ix->has_int = true;
        ix->i = d >= (double)SIZE_MAX ? SIZE_MAX : (size_t)d;
    }
}

/* Appends the values an access selects from one element of a filtered array. */
static void
filtered_apply(json_t *result, const json_t *item, const struct idx *ix)
{
    size_t i;
    const char *k;
    json_t *m;

    switch (kind_of(item)) {
    case K_OBJ:
        if (ix->star) {
            json_object_foreach((json_t *)(uintptr_t)item, k, m)
                json_array_append(result, m);
        } else if (ix->has_str) {
            m = object_get_ci(item, ix->str, ix->slen);
            if (m != NULL)
                json_array_append(result, m);
        }
        break;
    case K_ARR:
        if (ix->star) {
            for (i = 0; i < json_array_size(item); i++)
                json_array_append(result, json_array_get(item, i));
        } else if (ix->has_int && ix->i < json_array_size(item)) {
            json_array_append(result, json_array_get(item, ix->i));
        }
        break;
    default:
        break;
    }
}

/* Applies an access (star, key or index) to obj and sets *out. */
static void
access_apply(const struct val *obj, const struct idx *ix, struct val *out)
{
    const json_t *o = obj->j;
    json_t *r;
    size_t i;
    const char *k;
    json_t *m;

    if (obj->filtered) {
        r = jchk(json_array());
        for (i = 0; i < json_array_size(o); i++)
            filtered_apply(r, json_array_get(o, i), ix);
        val_set(out, r);
        out->filtered = true;
        return;
    }
    switch (kind_of(o)) {
    case K_ARR:
        if (ix->star) {
            val_set(out, json_copy((json_t *)(uintptr_t)o));
            out->filtered = true;
            return;
        }
        if (ix->has_int && ix->i < json_array_size(o)) {
            val_set(out, json_incref(json_array_get(o, ix->i)));
            return;
        }
        break;
    case K_OBJ:
        if (ix->star) {
            r = jchk(json_array());
            json_object_foreach((json_t *)(uintptr_t)o, k, m)
                json_array_append(r, m);
            val_set(out, r);
            out->filtered = true;
            return;
        }
        if (ix->has_str) {
            m = object_get_ci(o, ix->str, ix->slen);
            if (m != NULL) {
                val_set(out, json_incref(m));
                return;
            }
        }
        break;
    default:
        if (ix->star) {
            val_set(out, json_array());
            out->filtered = true;
            return;
        }
        break;
    }
    val_set(out, json_null());
}

/* Evaluates n's child i into out. */
static int
eval_kid(struct evalst *st, const struct expr_node *n, size_t i, struct val *out)
{
    return eval_node(st, n->kids[i], out);
}

/* Evaluates a context name. */
static void
eval_context(struct evalst *st, const struct expr_node *n, struct val *out)
{
    json_t *v = NULL;

    if (st->env != NULL && json_is_object(st->env->contexts))
        v = object_get_ci(st->env->contexts, n->str, n->slen);
    val_set(out, v ? json_incref(v) : json_null());
}

/* Evaluates '.name', '.*', '[*]' and '[expr]'. */
static int
eval_access(struct evalst *st, const struct expr_node *n, struct val *out)
{
    struct val obj = {0}, index = {0};
    struct idx ix;
    int rc;

    memset(&ix, 0, sizeof ix);
    if (n->kind == EXPR_N_STAR) {
        ix.star = true;
    } else if (n->kind == EXPR_N_PROP) {
        ix.has_str = true;
        ix.str = xmalloc(n->slen + 1);
        memcpy(ix.str, n->str, n->slen + 1);
        ix.slen = n->slen;
    } else {
        rc = eval_kid(st, n, 1, &index);
        if (rc < 0)
            goto out;
        idx_init(&ix, index.j);
    }
    rc = eval_kid(st, n, 0, &obj);
    if (rc < 0)
        goto out;
    access_apply(&obj, &ix, out);
    if (out->filtered)
        rc = charge(st, out, json_array_size(out->j) * 8);
    if (rc < 0)
        val_drop(st, out);
out:
    if (obj.j)
        val_drop(st, &obj);
    if (index.j)
        val_drop(st, &index);
    free(ix.str);
    return rc;
}

/* Evaluates && and ||: the first operand that decides, else the last. */
static int
eval_logical(struct evalst *st, const struct expr_node *n, struct val *out)
{
    bool is_and = n->kind == EXPR_N_AND;

    for (size_t i = 0; i < n->nkids; i++) {
        int rc = eval_kid(st, n, i, out);

        if (rc < 0)
            return rc;
        if (i + 1 == n->nkids || expr_truthy(out->j) != is_and)
            return 0;
        val_drop(st, out);
    }
    return 0; /* not reached: a logical node has at least two operands */
}

/* Evaluates the comparison operators. */
static int
eval_compare(struct evalst *st, const struct expr_node *n, struct val *out)
{
    struct val l = {0}, r = {0};
    bool res = false;
    int rc;

    rc = eval_kid(st, n, 0, &l);
    if (rc < 0)
        return rc;
    rc = eval_kid(st, n, 1, &r);
    if (rc < 0) {
        val_drop(st, &l);
        return rc;
    }
    switch (n->kind) {
    case EXPR_N_EQ:
        res = loose_equals(l.j, r.j);
        break;
    case EXPR_N_NE:
        res = !loose_equals(l.j, r.j);
        break;
    case EXPR_N_LT:
        res = loose_order(l.j, r.j, false);
        break;
    case EXPR_N_LE:
        res = loose_equals(l.j, r.j) || loose_order(l.j, r.j, false);
        break;
    case EXPR_N_GT:
        res = loose_order(l.j, r.j, true);
        break;
    case EXPR_N_GE:
        res = loose_equals(l.j, r.j) || loose_order(l.j, r.j, true);
        break;
    default:
        break;
    }
    val_drop(st, &l);
    val_drop(st, &r);
    val_set(out, json_boolean(res));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Functions                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* contains(search, item): substring for primitives, loose membership for arrays. */
static bool
fn_contains(const json_t *search, const json_t *item)
{
    char *s, *t, *fs, *ft;
    size_t slen, tlen, fslen, ftlen;
    bool found;

    if (kind_of(search) == K_ARR) {
        for (size_t i = 0; i < json_array_size(search); i++)
            if (loose_equals(json_array_get(search, i), item))
                return true;
        return false;
    }
    if (!is_primitive(search))
        return false;
    s = to_string(search, &slen);
    t = to_string(item, &tlen);
    fs = expr_fold(s, slen, &fslen);
    ft = expr_fold(t, tlen, &ftlen);
    found = ftlen == 0 || (ftlen <= fslen && memmem(fs, fslen, ft, ftlen) != NULL);
    free(s);
    free(t);
    free(fs);
    free(ft);
    return found;
}

/* startsWith/endsWith: case-insensitive prefix or suffix test of two primitives. */
static bool
fn_affix(const json_t *str, const json_t *affix, bool end)
{
    char *s, *t, *fs, *ft;
    size_t slen, tlen, fslen, ftlen;
    bool found = false;

    if (!is_primitive(str) || !is_primitive(affix))
        return false;
    s = to_string(str, &slen);
    t = to_string(affix, &tlen);
    fs = expr_fold(s, slen, &fslen);
    ft = expr_fold(t, tlen, &ftlen);
    if (ftlen <= fslen)
        found = memcmp(end ? fs + fslen - ftlen : fs, ft, ftlen) == 0;
    free(s);
    free(t);
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
    size_t flen, i = 0, limit = room(st);
    char *fmt = to_string(args[0].j, &flen);
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
            s = to_string(args[index + 1].j, &slen);
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
    val_set(out, jstr(b.data ? b.data : "", b.len));
    rc = charge(st, out, b.len);
    if (rc < 0)
        val_drop(st, out);
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
    size_t seplen = 1, slen, limit = room(st);
    int rc = 0;

    if (kind_of(a) == K_ARR) {
        if (nargs > 1 && is_primitive(args[1].j))
            sep = to_string(args[1].j, &seplen);
        else
            sep = xstrdup(",");
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (i > 0)
                buf_append(&b, sep, seplen);
            s = to_string(json_array_get(a, i), &slen);
            buf_append(&b, s, slen);
            free(s);
            if (b.len > limit) {
                rc = err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
                goto out;
            }
        }
    } else if (is_primitive(a)) {
        s = to_string(a, &slen);
        buf_append(&b, s, slen);
        free(s);
    }
    val_set(out, jstr(b.data ? b.data : "", b.len));
    rc = charge(st, out, b.len);
    if (rc < 0)
        val_drop(st, out);
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

    if (!json_put(&b, args[0].j, 0, room(st))) {
        buf_free(&b);
        return err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
    }
    val_set(out, jstr(b.data ? b.data : "", b.len));
    rc = charge(st, out, b.len);
    if (rc < 0)
        val_drop(st, out);
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

    if (kind_of(s) != K_STR)
        return err_set(st->e, ERR_INVALID, "Cannot parse non-string type as JSON");
    if (json_string_length(s) > room(st))
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
    val_set(out, v);
    rc = charge(st, out, json_string_length(s));
    if (rc < 0)
        val_drop(st, out);
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
        pats[i] = to_string(args[i].j, &len);
    rc = st->env->hash_files(st->env->arg, pats, nargs, &hash, st->e);
    if (rc >= 0) {
        val_set(out, jstr(hash ? hash : "", hash ? strlen(hash) : 0));
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
            jobs[i] = to_string(args[i].j, &len);
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
    val_set(out, json_boolean(res));
    return 0;
}

/* case(pred1, value1, ..., default): lazily evaluated. */
static int
fn_case(struct evalst *st, const struct expr_node *n, struct val *out)
{
    size_t i;

    for (i = 0; i + 1 < n->nkids; i += 2) {
        struct val pred = {0};
        bool hit;
        int rc = eval_kid(st, n, i, &pred);

        if (rc < 0)
            return rc;
        if (kind_of(pred.j) != K_BOOL) {
            val_drop(st, &pred);
            return err_set(st->e, ERR_INVALID, "case predicate must evaluate to a boolean value");
        }
        hit = json_is_true(pred.j);
        val_drop(st, &pred);
        if (hit)
            return eval_kid(st, n, i + 1, out);
    }
    return eval_kid(st, n, i, out);
}

/* Evaluates a function call. */
static int
eval_call(struct evalst *st, const struct expr_node *n, struct val *out)
{
    struct val *args;
    size_t done = 0;
    int rc = 0;

    if (n->fn == EXPR_FN_CASE)
        return fn_case(st, n, out);
    args = xcalloc(n->nkids ? n->nkids : 1, sizeof *args);
    for (; done < n->nkids; done++) {
        rc = eval_kid(st, n, done, &args[done]);
        if (rc < 0)
            goto out;
    }
    switch (n->fn) {
    case EXPR_FN_CONTAINS:
        val_set(out, json_boolean(fn_contains(args[0].j, args[1].j)));
        break;
    case EXPR_FN_STARTSWITH:
    case EXPR_FN_ENDSWITH:
        val_set(out, json_boolean(fn_affix(args[0].j, args[1].j, n->fn == EXPR_FN_ENDSWITH)));
        break;
    case EXPR_FN_FORMAT:
        rc = fn_format(st, args, n->nkids, out);
        break;
    case EXPR_FN_JOIN:
        rc = fn_join(st, args, n->nkids, out);
        break;
    case EXPR_FN_TOJSON:
        rc = fn_tojson(st, args, out);
        break;
    case EXPR_FN_FROMJSON:
        rc = fn_fromjson(st, args, out);
        break;
    case EXPR_FN_HASHFILES:
        rc = fn_hashfiles(st, args, n->nkids, out);
        break;
    default:
        rc = fn_status(st, n, args, n->nkids, out);
        break;
    }
out:
    for (size_t i = 0; i < done; i++)
        val_drop(st, &args[i]);
    free(args);
    return rc;
}

/* Evaluates one node into out (a new reference). */
static int
eval_node(struct evalst *st, const struct expr_node *n, struct val *out)
{
    struct val v = {0};
    int rc;

    memset(out, 0, sizeof *out);
    switch (n->kind) {
    case EXPR_N_NULL:
        val_set(out, json_null());
        return 0;
    case EXPR_N_BOOL:
        val_set(out, json_boolean(n->b));
        return 0;
    case EXPR_N_NUM:
        val_set(out, expr_number_new(n->num));
        return 0;
    case EXPR_N_STR:
        val_set(out, jstr(n->str, n->slen));
        return 0;
    case EXPR_N_CTX:
        eval_context(st, n, out);
        return 0;
    case EXPR_N_PROP:
    case EXPR_N_INDEX:
    case EXPR_N_STAR:
        return eval_access(st, n, out);
    case EXPR_N_NOT:
        rc = eval_kid(st, n, 0, &v);
        if (rc < 0)
            return rc;
        val_set(out, json_boolean(!expr_truthy(v.j)));
        val_drop(st, &v);
        return 0;
    case EXPR_N_AND:
    case EXPR_N_OR:
        return eval_logical(st, n, out);
    case EXPR_N_CALL:
        return eval_call(st, n, out);
    default:
        return eval_compare(st, n, out);
    }
}

/* Evaluates a parsed expression; see exprint.h. */
int
expr_eval_root(const struct expr *x, const struct expr_env *env, json_t **out, struct err *e)
{
    struct evalst st = {.env = env, .x = x, .e = e};
    struct val v = {0};
    int rc;

    *out = NULL;
    if (x == NULL || x->root == NULL) {
        *out = json_null();
        return 0;
    }
    rc = eval_node(&st, x->root, &v);
    if (rc < 0)
        return rc;
    *out = v.j;
    return 0;
}
