/* exprval.c: the values of the expression language: kinds, truthiness, number and string
 * coercion, GitHub's loose comparisons, and the memory an evaluation may hold. Shared by the
 * evaluator (expreval.c) and the functions (exprfunc.c) through exprint.h. */
#include "exprint.h"

#include "runner/xalloc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Aborts on a NULL from jansson, which only happens when memory runs out. */
json_t *
expr_jchk(json_t *v)
{
    if (v == NULL) {
        fputs("expr: out of memory\n", stderr);
        abort();
    }
    return v;
}

/* Returns a new string value holding s[0..len) (any bytes). */
json_t *
expr_jstr(const char *s, size_t len)
{
    return expr_jchk(json_stringn_nocheck(s, len));
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
        return expr_jchk(json_real(d));
    name = isnan(d) ? "NaN" : d < 0 ? "-Infinity" : "Infinity";
    return expr_jchk(json_pack("{s:s}", "$number", name));
}

/* The kind of a value (a NULL pointer is null). */
enum kind
expr_kind_of(const json_t *v)
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
bool
expr_is_primitive(const json_t *v)
{
    enum kind k = expr_kind_of(v);

    return k != K_ARR && k != K_OBJ;
}

/* Truthiness (doc/workflow-semantics.md §5.5). */
bool
expr_truthy(const json_t *v)
{
    double d;

    if (v == NULL)
        return false;
    switch (expr_kind_of(v)) {
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
double
expr_to_number(const json_t *v)
{
    double d = NAN;

    switch (expr_kind_of(v)) {
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
char *
expr_to_strn(const json_t *v, size_t *len)
{
    char num[64];
    const char *s;
    double d;

    switch (expr_kind_of(v)) {
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

    return expr_to_strn(v, &len);
}

/* Looks a member up, exactly first and then case-insensitively. Borrowed; NULL when absent. */
json_t *
expr_object_get_ci(const json_t *obj, const char *key, size_t klen)
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
    struct operand o = {.k = expr_kind_of(v), .n = NAN, .j = v};

    if (o.k == K_NUM)
        expr_number_get(v, &o.n);
    return o;
}

/* Turns an operand into a number. */
static void
operand_to_number(struct operand *o)
{
    o->n = expr_to_number(o->j);
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
bool
expr_loose_equals(const json_t *lv, const json_t *rv)
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
bool
expr_loose_order(const json_t *lv, const json_t *rv, bool greater)
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


/* Releases a value and its memory charge. */
void
expr_val_drop(struct evalst *st, struct val *v)
{
    json_decref(v->j);
    st->mem -= v->cost;
    v->j = NULL;
    v->cost = 0;
}

/* Charges memory for a new value of about `bytes` bytes of text; fails past the limit. */
int
expr_charge(struct evalst *st, struct val *v, size_t bytes)
{
    size_t amount = bytes * 2; /* GitHub counts UTF-16 code units of two bytes */

    if (st->mem + amount > EXPR_MAX_MEMORY)
        return err_set(st->e, ERR_INVALID, "The maximum allowed memory size was exceeded");
    st->mem += amount;
    v->cost += amount;
    return 0;
}

/* Bytes still allowed for new text. */
size_t
expr_room(const struct evalst *st)
{
    return st->mem >= EXPR_MAX_MEMORY ? 0 : (EXPR_MAX_MEMORY - st->mem) / 2;
}

/* Sets *out to a value (takes ownership of j). */
void
expr_val_set(struct val *out, json_t *j)
{
    out->j = expr_jchk(j);
    out->filtered = false;
    out->cost = 0;
}
