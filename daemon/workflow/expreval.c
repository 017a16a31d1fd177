/* expreval.c: evaluation of parsed expressions over jansson values: contexts, property and
 * index access with filters, the operators with GitHub's coercions (exprval.c), case() and the
 * calls of the other functions (exprfunc.c). */
#include "exprint.h"

#include "runner/xalloc.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int eval_node(struct evalst *st, const struct expr_node *n, struct val *out);

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
    if (expr_is_primitive(v)) {
        ix->str = expr_to_strn(v, &ix->slen);
        ix->has_str = true;
    }
    d = expr_to_number(v);
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

    switch (expr_kind_of(item)) {
    case K_OBJ:
        if (ix->star) {
            json_object_foreach((json_t *)(uintptr_t)item, k, m)
                json_array_append(result, m);
        } else if (ix->has_str) {
            m = expr_object_get_ci(item, ix->str, ix->slen);
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
        r = expr_jchk(json_array());
        for (i = 0; i < json_array_size(o); i++)
            filtered_apply(r, json_array_get(o, i), ix);
        expr_val_set(out, r);
        out->filtered = true;
        return;
    }
    switch (expr_kind_of(o)) {
    case K_ARR:
        if (ix->star) {
            expr_val_set(out, json_copy((json_t *)(uintptr_t)o));
            out->filtered = true;
            return;
        }
        if (ix->has_int && ix->i < json_array_size(o)) {
            expr_val_set(out, json_incref(json_array_get(o, ix->i)));
            return;
        }
        break;
    case K_OBJ:
        if (ix->star) {
            r = expr_jchk(json_array());
            json_object_foreach((json_t *)(uintptr_t)o, k, m)
                json_array_append(r, m);
            expr_val_set(out, r);
            out->filtered = true;
            return;
        }
        if (ix->has_str) {
            m = expr_object_get_ci(o, ix->str, ix->slen);
            if (m != NULL) {
                expr_val_set(out, json_incref(m));
                return;
            }
        }
        break;
    default:
        if (ix->star) {
            expr_val_set(out, json_array());
            out->filtered = true;
            return;
        }
        break;
    }
    expr_val_set(out, json_null());
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
        v = expr_object_get_ci(st->env->contexts, n->str, n->slen);
    expr_val_set(out, v ? json_incref(v) : json_null());
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
        rc = expr_charge(st, out, json_array_size(out->j) * 8);
    if (rc < 0)
        expr_val_drop(st, out);
out:
    if (obj.j)
        expr_val_drop(st, &obj);
    if (index.j)
        expr_val_drop(st, &index);
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
        expr_val_drop(st, out);
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
        expr_val_drop(st, &l);
        return rc;
    }
    switch (n->kind) {
    case EXPR_N_EQ:
        res = expr_loose_equals(l.j, r.j);
        break;
    case EXPR_N_NE:
        res = !expr_loose_equals(l.j, r.j);
        break;
    case EXPR_N_LT:
        res = expr_loose_order(l.j, r.j, false);
        break;
    case EXPR_N_LE:
        res = expr_loose_equals(l.j, r.j) || expr_loose_order(l.j, r.j, false);
        break;
    case EXPR_N_GT:
        res = expr_loose_order(l.j, r.j, true);
        break;
    case EXPR_N_GE:
        res = expr_loose_equals(l.j, r.j) || expr_loose_order(l.j, r.j, true);
        break;
    default:
        break;
    }
    expr_val_drop(st, &l);
    expr_val_drop(st, &r);
    expr_val_set(out, json_boolean(res));
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
        if (expr_kind_of(pred.j) != K_BOOL) {
            expr_val_drop(st, &pred);
            return err_set(st->e, ERR_INVALID, "case predicate must evaluate to a boolean value");
        }
        hit = json_is_true(pred.j);
        expr_val_drop(st, &pred);
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
    rc = expr_fn_call(st, n, args, n->nkids, out);
out:
    for (size_t i = 0; i < done; i++)
        expr_val_drop(st, &args[i]);
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
        expr_val_set(out, json_null());
        return 0;
    case EXPR_N_BOOL:
        expr_val_set(out, json_boolean(n->b));
        return 0;
    case EXPR_N_NUM:
        expr_val_set(out, expr_number_new(n->num));
        return 0;
    case EXPR_N_STR:
        expr_val_set(out, expr_jstr(n->str, n->slen));
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
        expr_val_set(out, json_boolean(!expr_truthy(v.j)));
        expr_val_drop(st, &v);
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

/* Evaluates a parsed expression; see expr.h. */
int
expr_eval(const struct expr *x, const struct expr_env *env, json_t **out, struct err *e)
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


/* Parses and evaluates a NUL-terminated expression. */
int
expr_eval_str(const char *src, const struct expr_env *env, json_t **out, struct err *e)
{
    struct expr *x = NULL;
    int rc;

    *out = NULL;
    rc = expr_parse(src, strlen(src), &x, e);
    if (rc < 0)
        return rc;
    rc = expr_eval(x, env, out, e);
    expr_free(x);
    return rc;
}
