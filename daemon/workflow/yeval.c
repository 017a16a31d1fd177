/* yeval.c: YAML node evaluation with expressions (see yeval.h). */
#include "yeval.h"

#include "runner/xalloc.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool
has_expr(const char *s)
{
    const char *open = strstr(s, "${{");

    return open != NULL && strstr(open + 3, "}}") != NULL;
}

/* True when s (trimmed) is `${{ insert }}`. */
static bool
is_insert(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    if (strncmp(s, "${{", 3) != 0)
        return false;
    s += 3;
    while (isspace((unsigned char)*s))
        s++;
    if (strncasecmp(s, "insert", 6) != 0)
        return false;
    s += 6;
    while (isspace((unsigned char)*s))
        s++;
    if (strncmp(s, "}}", 2) != 0)
        return false;
    s += 2;
    while (isspace((unsigned char)*s))
        s++;
    return *s == '\0';
}

static int
at(struct err *e, const char *file, const struct ynode *n)
{
    return err_prefix(e, "%s:%d:%d: ", file ? file : "<input>", n->pos.line, n->pos.col);
}

static int
eval_scalar(const char *file, const struct ynode *n, const struct expr_env *env, json_t **out,
            struct err *e)
{
    int rc;

    if (!has_expr(n->str)) {
        *out = ynode_to_json(n);
        return 0;
    }
    rc = expr_eval_scalar(n->str, env, out, e);
    if (rc < 0)
        return at(e, file, n);
    return 0;
}

int
yeval_node(const char *file, const struct ynode *n, const struct expr_env *env, json_t **out,
           struct err *e)
{
    json_t *res = NULL, *v = NULL;
    int rc = 0;

    if (n == NULL) {
        *out = json_null();
        return 0;
    }
    switch (n->kind) {
    case YNODE_SCALAR:
        return eval_scalar(file, n, env, out, e);
    case YNODE_SEQ:
        res = json_array();
        for (size_t i = 0; i < n->n; i++) {
            const struct ynode *it = n->items[i];

            rc = yeval_node(file, it, env, &v, e);
            if (rc < 0)
                goto out;
            if (it->kind == YNODE_SCALAR && json_is_array(v) && has_expr(it->str))
                json_array_extend(res, v); /* a list item that evaluates to a list splices */
            else
                json_array_append(res, v);
            json_decref(v);
            v = NULL;
        }
        break;
    case YNODE_MAP:
        res = json_object();
        for (size_t i = 0; i < n->n; i++) {
            const struct ynode *k = n->keys[i];
            char *key = NULL;

            rc = yeval_node(file, n->items[i], env, &v, e);
            if (rc < 0)
                goto out;
            if (k->kind == YNODE_SCALAR && is_insert(k->str)) {
                if (!json_is_object(v)) {
                    rc = err_set(e, ERR_INVALID, "${{ insert }} needs a mapping value");
                    at(e, file, k);
                    goto out;
                }
                json_object_update(res, v);
            } else if (k->kind != YNODE_SCALAR) {
                rc = err_set(e, ERR_INVALID, "expected a scalar key");
                at(e, file, k);
                goto out;
            } else if (has_expr(k->str)) {
                rc = expr_interpolate(k->str, env, &key, e);
                if (rc < 0) {
                    at(e, file, k);
                    goto out;
                }
                json_object_set(res, key, v);
                free(key);
            } else {
                json_object_set(res, k->str, v);
            }
            json_decref(v);
            v = NULL;
        }
        break;
    }
    *out = res;
    res = NULL;
out:
    json_decref(v);
    json_decref(res);
    return rc;
}

int
yeval_string(const char *file, const struct ynode *n, const struct expr_env *env, char **out,
             struct err *e)
{
    *out = NULL;
    if (n == NULL)
        return 0;
    if (n->kind != YNODE_SCALAR) {
        err_set(e, ERR_INVALID, "expected a string");
        return at(e, file, n);
    }
    if (!has_expr(n->str)) {
        *out = xstrdup(n->str);
        return 0;
    }
    if (expr_interpolate(n->str, env, out, e) < 0)
        return at(e, file, n);
    return 0;
}

/* True when the word ctx occurs in s inside a ${{ }} (not preceded by an identifier char or '.'). */
static bool
text_mentions(const char *s, const char *ctx)
{
    size_t len = strlen(ctx);

    for (const char *o = strstr(s, "${{"); o; o = strstr(o + 3, "${{")) {
        const char *end = strstr(o + 3, "}}");

        if (end == NULL)
            return false;
        for (const char *p = o + 3; p + len <= end; p++) {
            if (strncasecmp(p, ctx, len) != 0)
                continue;
            char before = p[-1], after = p[len];
            bool word_before = isalnum((unsigned char)before) || before == '_' ||
                               before == '-' || before == '.';
            bool word_after = isalnum((unsigned char)after) || after == '_' || after == '-';
            if (!word_before && !word_after)
                return true;
        }
    }
    return false;
}

bool
yeval_mentions(const struct ynode *n, const char *ctx)
{
    if (n == NULL)
        return false;
    if (n->kind == YNODE_SCALAR)
        return text_mentions(n->str, ctx);
    for (size_t i = 0; i < n->n; i++) {
        if (n->kind == YNODE_MAP && yeval_mentions(n->keys[i], ctx))
            return true;
        if (yeval_mentions(n->items[i], ctx))
            return true;
    }
    return false;
}
