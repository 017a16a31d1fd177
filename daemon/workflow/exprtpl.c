/* exprtpl.c: templates, strings with zero or more ${{ }}: finding each expression (the "}}"
 * outside '...' literals, GitHub's white space trimmed), checking that they parse (expr.c), and
 * evaluating them (expreval.c) into a string, a typed scalar or an `if:` condition. */
#include "exprint.h"

#include "runner/buf.h"

#include <stdlib.h>
#include <string.h>


/* One ${{ }} found by template_next(). */
struct tpl_part {
    size_t open;   /* offset of "${{" */
    size_t start;  /* first byte of the expression */
    size_t end;    /* one past its last byte (the first '}' of "}}") */
    size_t close;  /* one past "}}" */
};

/* Byte length of the white space character that starts at s[i] (0 when there is none): ASCII
 * white space and the Unicode space separators (no-break space, en/em spaces, ideographic space,
 * line and paragraph separators...), UTF-8 encoded. GitHub trims these around an expression. */
static size_t
tpl_space_at(const char *s, size_t i, size_t end)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t left = end - i;

    if (left == 0)
        return 0;
    if (strchr(" \t\r\n\v\f", u[0]) != NULL && u[0] != '\0')
        return 1;
    if (left >= 2 && u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0))
        return 2; /* U+0085, U+00A0 */
    if (left >= 3 && u[0] == 0xe1 && u[1] == 0x9a && u[2] == 0x80)
        return 3; /* U+1680 */
    if (left >= 3 && u[0] == 0xe2 && u[1] == 0x80 &&
        (u[2] <= 0x8a || u[2] == 0xa8 || u[2] == 0xa9 || u[2] == 0xaf))
        return 3; /* U+2000..U+200A, U+2028, U+2029, U+202F */
    if (left >= 3 && u[0] == 0xe2 && u[1] == 0x81 && u[2] == 0x9f)
        return 3; /* U+205F */
    if (left >= 3 && u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x80)
        return 3; /* U+3000 */
    return 0;
}

/* Narrows [*start, *end) of s to the text without white space (tpl_space_at()) around it. */
static void
tpl_trim(const char *s, size_t *start, size_t *end)
{
    size_t n;

    while (*start < *end && (n = tpl_space_at(s, *start, *end)) > 0)
        *start += n;
    while (*end > *start) {
        size_t k = 0;
        for (n = 1; n <= 3 && n <= *end - *start && k == 0; n++)
            if (tpl_space_at(s, *end - n, *end) == n)
                k = n;
        if (k == 0)
            break;
        *end -= k;
    }
}

/* Finds the next ${{ }} at or after off, skipping '...' literals when looking for the "}}".
 * Returns 1 when found, 0 when there is none, ERR_INVALID when one is not closed. */
static int
template_next(const char *s, size_t off, struct tpl_part *part, struct err *e)
{
    const char *open = strstr(s + off, "${{");
    bool quoted = false;
    size_t i;

    if (open == NULL)
        return 0;
    part->open = (size_t)(open - s);
    part->start = part->open + 3;
    for (i = part->start; s[i]; i++) {
        if (s[i] == '\'')
            quoted = !quoted;
        else if (!quoted && s[i] == '}' && s[i + 1] == '}')
            break;
    }
    if (s[i] == '\0')
        return err_set(e, ERR_INVALID,
                       "The expression is not closed: '${{' at offset %zu has no matching '}}'",
                       part->open);
    part->end = i;
    part->close = i + 2;
    tpl_trim(s, &part->start, &part->end);
    return 1;
}

/* True when s contains a ${{. */
bool
expr_template_has(const char *s)
{
    return s != NULL && strstr(s, "${{") != NULL;
}

/* Checks every ${{ }} of s parses, with restrictions; see expr.h. */
int
expr_template_check_ex(const char *s, const struct expr_parse_opts *opts, size_t *offset,
                       struct err *e)
{
    struct tpl_part part = {0};
    size_t off = 0;
    int rc;

    /* GitHub turns a string with ${{ }} into one expression (a format() of the text and the
     * expressions), so the whole string counts towards the expression length limit. */
    if (expr_template_has(s) && strlen(s) > EXPR_MAX_LENGTH) {
        if (offset != NULL)
            *offset = 0;
        return err_set(e, ERR_INVALID,
                       "Exceeded max expression length %d: a string with ${{ }} counts as one "
                       "expression (%zu bytes)",
                       EXPR_MAX_LENGTH, strlen(s));
    }
    while ((rc = template_next(s, off, &part, e)) > 0) {
        struct expr *x = NULL;

        /* The expression language reads "" as null, but GitHub's workflow reader refuses an
         * empty ${{ }}: it is almost always a mistake (a forgotten context name). */
        if (part.start == part.end) {
            rc = err_set(e, ERR_INVALID, "an expression was expected inside ${{ }}");
            break;
        }
        /* part is the text without the blanks around it, as GitHub parses it, so that
         * messages show the expression and positions within it as the user counts them. */
        rc = expr_parse_ex(s + part.start, part.end - part.start, opts, &x, e);
        expr_free(x);
        if (rc < 0)
            break;
        off = part.close;
    }
    if (rc < 0 && offset != NULL)
        *offset = part.open;
    return rc < 0 ? rc : 0;
}

/* Checks every ${{ }} of s parses; see expr.h. */
int
expr_template_check(const char *s, size_t *offset, struct err *e)
{
    return expr_template_check_ex(s, NULL, offset, e);
}

/* Parses and evaluates src[0..len). */
static int
eval_slice(const char *src, size_t len, const struct expr_env *env, json_t **out, bool *status,
           struct err *e)
{
    struct expr *x = NULL;
    int rc = expr_parse(src, len, &x, e);

    if (rc < 0)
        return rc;
    if (status)
        *status = *status || x->uses_status;
    rc = expr_eval(x, env, out, e);
    expr_free(x);
    return rc;
}

/* Interpolates s into b; *status is set when an expression uses a status function. */
static int
template_render(const char *s, const struct expr_env *env, struct buf *b, bool *status,
                struct err *e)
{
    struct tpl_part part;
    size_t off = 0;
    int rc;

    while ((rc = template_next(s, off, &part, e)) > 0) {
        json_t *v = NULL;
        char *str;

        buf_append(b, s + off, part.open - off);
        rc = eval_slice(s + part.start, part.end - part.start, env, &v, status, e);
        if (rc < 0)
            return rc;
        str = expr_to_string(v);
        buf_puts(b, str);
        free(str);
        json_decref(v);
        off = part.close;
    }
    if (rc < 0)
        return rc;
    buf_puts(b, s + off);
    return 0;
}

/* Interpolates s; see expr.h. */
int
expr_interpolate(const char *s, const struct expr_env *env, char **out, struct err *e)
{
    struct buf b = BUF_INIT;
    int rc = template_render(s, env, &b, NULL, e);

    *out = NULL;
    if (rc < 0) {
        buf_free(&b);
        return rc;
    }
    *out = buf_steal(&b);
    return 0;
}

/* True for YAML/ASCII white space. */
static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* When s is exactly one ${{ }} (white space around allowed), sets *start and *end to the expression
 * inside and returns true. */
static bool
template_single(const char *s, size_t *start, size_t *end)
{
    struct tpl_part part;
    size_t i = 0;

    while (is_space(s[i]))
        i++;
    if (strncmp(s + i, "${{", 3) != 0)
        return false;
    if (template_next(s, i, &part, NULL) <= 0 || part.open != i)
        return false;
    for (i = part.close; s[i]; i++)
        if (!is_space(s[i]))
            return false;
    *start = part.start;
    *end = part.end;
    return true;
}

/* Evaluates a YAML scalar's text; see expr.h. */
int
expr_eval_scalar(const char *s, const struct expr_env *env, json_t **out, struct err *e)
{
    size_t start, end;
    char *str = NULL;
    int rc;

    *out = NULL;
    if (template_single(s, &start, &end))
        return eval_slice(s + start, end - start, env, out, NULL, e);
    rc = expr_interpolate(s, env, &str, e);
    if (rc < 0)
        return rc;
    *out = json_string_nocheck(str);
    free(str);
    if (*out == NULL) /* only out of memory */
        abort();
    return 0;
}

/* Evaluates the implicit status check ("success()" by default). */
static int
eval_implicit(const char *implicit, const struct expr_env *env, bool *out, struct err *e)
{
    json_t *v = NULL;
    int rc = eval_slice(implicit, strlen(implicit), env, &v, NULL, e);

    if (rc < 0)
        return rc;
    *out = expr_truthy(v);
    json_decref(v);
    return 0;
}

/* Evaluates an `if:` condition; see expr.h. */
int
expr_eval_if(const char *cond, const char *implicit, const struct expr_env *env, bool *out,
             struct err *e)
{
    struct expr *x = NULL;
    struct buf b = BUF_INIT;
    json_t *v = NULL;
    size_t start = 0, end = 0, i = 0;
    bool ok = false;
    int rc = 0;

    *out = false;
    if (implicit == NULL || *implicit == '\0')
        implicit = "success()";
    if (cond != NULL)
        while (is_space(cond[i]))
            i++;
    if (cond == NULL || cond[i] == '\0')
        return eval_implicit(implicit, env, out, e);

    if (template_single(cond, &start, &end) || !expr_template_has(cond)) {
        if (!expr_template_has(cond)) {
            start = 0;
            end = strlen(cond);
        }
        rc = expr_parse(cond + start, end - start, &x, e);
        if (rc < 0)
            goto out;
        if (!x->uses_status) {
            rc = eval_implicit(implicit, env, &ok, e);
            if (rc < 0 || !ok)
                goto out;
        }
        rc = expr_eval(x, env, &v, e);
        if (rc < 0)
            goto out;
        *out = expr_truthy(v);
        goto out;
    }

    /* Text mixed with ${{ }}: the result is a string, as on GitHub (a classic pitfall). */
    {
        bool status = false;
        struct tpl_part part;
        size_t off = 0;

        /* Decide on the implicit check before evaluating anything. */
        while ((rc = template_next(cond, off, &part, e)) > 0) {
            rc = expr_parse(cond + part.start, part.end - part.start, &x, e);
            if (rc < 0)
                goto out;
            status = status || x->uses_status;
            expr_free(x);
            x = NULL;
            off = part.close;
        }
        if (rc < 0)
            goto out;
        if (!status) {
            rc = eval_implicit(implicit, env, &ok, e);
            if (rc < 0 || !ok)
                goto out;
        }
        rc = template_render(cond, env, &b, NULL, e);
        if (rc < 0)
            goto out;
        *out = b.len > 0;
    }
out:
    json_decref(v);
    expr_free(x);
    buf_free(&b);
    return rc;
}
