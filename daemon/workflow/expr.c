/* expr.c: the `${{ }}` expression language: lexer and recursive-descent parser.
 * Templates are in exprtpl.c, evaluation in expreval.c (exprint.h has the map).
 *
 * The grammar follows GitHub's own parser (shared/conformance/actions-expressions), lowest
 * precedence first:
 *
 *     expression := or
 *     or         := and ('||' and)*            n-ary node
 *     and        := equality ('&&' equality)*  n-ary node
 *     equality   := compare (('==' | '!=') compare)*          left-associative
 *     compare    := unary (('<' | '<=' | '>' | '>=') unary)*  left-associative
 *     unary      := '!' unary | postfix
 *     postfix    := primary ('.' name | '.' '*' | '[' expression ']' | '[' '*' ']')*
 *                   (only after a context name, a function call or a parenthesis)
 *     primary    := literal | name | name '(' args ')' | '(' expression ')'
 *
 * Depth is counted as GitHub counts it (each sub-expression, each '!', each ||/&& chain, each
 * postfix operator) and limited to 50, which also bounds our recursion. */
#include "exprint.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------------------------ */
/* Lexer                                                                                      */
/* ------------------------------------------------------------------------------------------ */

enum tok_type {
    T_EOF,
    T_LPAREN,
    T_RPAREN,
    T_LBRACKET,
    T_RBRACKET,
    T_COMMA,
    T_DOT,
    T_BANG,
    T_NE,
    T_EQ,
    T_GT,
    T_GE,
    T_LT,
    T_LE,
    T_AND,
    T_OR,
    T_STAR,
    T_NUMBER,
    T_STRING,
    T_IDENT,
    T_TRUE,
    T_FALSE,
    T_NULL,
};

struct token {
    enum tok_type type;
    size_t start; /* byte offset of the lexeme */
    size_t len;
    double num;
    char *str; /* T_STRING: the value, quotes removed and '' collapsed */
    size_t slen;
};

struct lexer {
    const char *src;
    size_t len;
    size_t off;
    struct token *toks;
    size_t ntoks, cap;
};

static const struct {
    const char *name; /* lower case */
    const char *display;
    enum expr_fn fn;
    size_t min, max;
} fn_table[] = {
    {"contains", "contains", EXPR_FN_CONTAINS, 2, 2},
    {"startswith", "startsWith", EXPR_FN_STARTSWITH, 2, 2},
    {"endswith", "endsWith", EXPR_FN_ENDSWITH, 2, 2},
    {"format", "format", EXPR_FN_FORMAT, 1, 255},
    {"join", "join", EXPR_FN_JOIN, 1, 2},
    {"tojson", "toJSON", EXPR_FN_TOJSON, 1, 1},
    {"fromjson", "fromJSON", EXPR_FN_FROMJSON, 1, 1},
    {"hashfiles", "hashFiles", EXPR_FN_HASHFILES, 1, 255},
    {"case", "case", EXPR_FN_CASE, 3, 255},
    {"success", "success", EXPR_FN_SUCCESS, 0, 255},
    {"failure", "failure", EXPR_FN_FAILURE, 0, 255},
    {"cancelled", "cancelled", EXPR_FN_CANCELLED, 0, 0},
    {"always", "always", EXPR_FN_ALWAYS, 0, 0},
};

/* Returns the canonical lower-case name of fn. */
const char *
expr_fn_name(enum expr_fn fn)
{
    for (size_t i = 0; i < sizeof fn_table / sizeof fn_table[0]; i++)
        if (fn_table[i].fn == fn)
            return fn_table[i].name;
    return "?";
}

/* True for the characters that end a number or a name (GitHub's "boundary" set). */
static bool
lex_is_boundary(char c)
{
    switch (c) {
    case '(':
    case '[':
    case ')':
    case ']':
    case ',':
    case '.':
    case '!':
    case '>':
    case '<':
    case '=':
    case '&':
    case '|':
    case ' ':
    case '\t':
    case '\n':
    case '\r':
    case '\v':
    case '\f':
        return true;
    default:
        return false;
    }
}

/* True when s[0..len) is a legal name: a letter or '_', then letters, digits, '_' and '-'. */
static bool
lex_is_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Appends a token and returns it. */
static struct token *
lex_add(struct lexer *lx, enum tok_type type, size_t start)
{
    struct token *t;

    if (lx->ntoks == lx->cap) {
        lx->cap = lx->cap ? lx->cap * 2 : 16;
        lx->toks = xreallocarray(lx->toks, lx->cap, sizeof *lx->toks);
    }
    t = &lx->toks[lx->ntoks++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->start = start;
    t->len = lx->off - start;
    return t;
}

/* The type of the last token so far (T_EOF when none). */
static enum tok_type
lex_prev(const struct lexer *lx)
{
    return lx->ntoks ? lx->toks[lx->ntoks - 1].type : T_EOF;
}

/* Fails with GitHub's "Unexpected symbol" message for src[start..start+len). */
static int
lex_error(const struct lexer *lx, size_t start, size_t len, struct err *e)
{
    return err_set(e, ERR_INVALID,
                   "Unexpected symbol: '%.*s'. Located at position %zu within expression: %.*s",
                   (int)(len > 80 ? 80 : len), lx->src + start, start + 1, (int)lx->len, lx->src);
}

/* Reads a number: everything up to a boundary other than '.', converted like Number(). */
static int
lex_number(struct lexer *lx, size_t start, struct err *e)
{
    struct token *t;
    double d;

    while (lx->off < lx->len && (!lex_is_boundary(lx->src[lx->off]) || lx->src[lx->off] == '.'))
        lx->off++;
    d = expr_str_to_number(lx->src + start, lx->off - start);
    /* An empty lexeme cannot happen (we consumed at least the first character). */
    if (isnan(d))
        return lex_error(lx, start, lx->off - start, e);
    t = lex_add(lx, T_NUMBER, start);
    t->num = d;
    return 0;
}

/* Reads a '...' string ('' is a quote); lx->off is past the opening quote. */
static int
lex_string(struct lexer *lx, size_t start, struct err *e)
{
    struct buf b = BUF_INIT;
    struct token *t;

    for (;;) {
        if (lx->off >= lx->len) {
            buf_free(&b);
            return lex_error(lx, start, lx->len - start, e);
        }
        if (lx->src[lx->off] == '\'') {
            if (lx->off + 1 < lx->len && lx->src[lx->off + 1] == '\'') {
                buf_putc(&b, '\'');
                lx->off += 2;
                continue;
            }
            lx->off++;
            break;
        }
        buf_putc(&b, lx->src[lx->off++]);
    }
    t = lex_add(lx, T_STRING, start);
    t->slen = b.len;
    t->str = buf_steal(&b);
    return 0;
}

/* Reads a name or keyword, up to a boundary. */
static int
lex_name(struct lexer *lx, size_t start, struct err *e)
{
    enum tok_type type = T_IDENT;
    const char *s = lx->src + start;
    size_t n;
    double num = 0;

    while (lx->off < lx->len && !lex_is_boundary(lx->src[lx->off]))
        lx->off++;
    n = lx->off - start;
    if (lex_prev(lx) != T_DOT) {
        /* Keywords are case-sensitive, and after a '.' they are property names. */
        if (n == 4 && memcmp(s, "true", 4) == 0)
            type = T_TRUE;
        else if (n == 5 && memcmp(s, "false", 5) == 0)
            type = T_FALSE;
        else if (n == 4 && memcmp(s, "null", 4) == 0)
            type = T_NULL;
        else if (n == 3 && memcmp(s, "NaN", 3) == 0) {
            type = T_NUMBER;
            num = NAN;
        } else if (n == 8 && memcmp(s, "Infinity", 8) == 0) {
            type = T_NUMBER;
            num = INFINITY;
        }
    }
    if (!lex_is_name(s, n))
        return lex_error(lx, start, n, e);
    lex_add(lx, type, start)->num = num;
    return 0;
}

/* Splits src into tokens, ending with T_EOF. */
static int
lex_all(struct lexer *lx, struct err *e)
{
    int rc = 0;

    while (rc == 0 && lx->off < lx->len) {
        size_t start = lx->off;
        char c = lx->src[lx->off++];
        char n = lx->off < lx->len ? lx->src[lx->off] : '\0';
        enum tok_type prev;

        switch (c) {
        case '(':
            lex_add(lx, T_LPAREN, start);
            break;
        case ')':
            lex_add(lx, T_RPAREN, start);
            break;
        case '[':
            lex_add(lx, T_LBRACKET, start);
            break;
        case ']':
            lex_add(lx, T_RBRACKET, start);
            break;
        case ',':
            lex_add(lx, T_COMMA, start);
            break;
        case '*':
            lex_add(lx, T_STAR, start);
            break;
        case '.':
            prev = lex_prev(lx);
            if (prev == T_IDENT || prev == T_RBRACKET || prev == T_RPAREN || prev == T_STAR)
                lex_add(lx, T_DOT, start);
            else
                rc = lex_number(lx, start, e);
            break;
        case '-':
        case '+':
            rc = lex_number(lx, start, e);
            break;
        case '!':
            if (n == '=')
                lx->off++;
            lex_add(lx, n == '=' ? T_NE : T_BANG, start);
            break;
        case '<':
            if (n == '=')
                lx->off++;
            lex_add(lx, n == '=' ? T_LE : T_LT, start);
            break;
        case '>':
            if (n == '=')
                lx->off++;
            lex_add(lx, n == '=' ? T_GE : T_GT, start);
            break;
        case '=':
        case '&':
        case '|':
            if (n != c) {
                /* A lone '=', '&' or '|': read on to a boundary and report the lot. */
                while (lx->off < lx->len && !lex_is_boundary(lx->src[lx->off]))
                    lx->off++;
                rc = lex_error(lx, start, lx->off - start, e);
                break;
            }
            lx->off++;
            lex_add(lx, c == '=' ? T_EQ : c == '&' ? T_AND : T_OR, start);
            break;
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            break;
        case '\'':
            rc = lex_string(lx, start, e);
            break;
        default:
            if (c >= '0' && c <= '9')
                rc = lex_number(lx, start, e);
            else
                rc = lex_name(lx, start, e);
            break;
        }
    }
    if (rc == 0)
        lex_add(lx, T_EOF, lx->len);
    return rc;
}

/* Frees the tokens (and their string values). */
static void
lex_free(struct lexer *lx)
{
    for (size_t i = 0; i < lx->ntoks; i++)
        free(lx->toks[i].str);
    free(lx->toks);
    lx->toks = NULL;
    lx->ntoks = lx->cap = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parser                                                                                     */
/* ------------------------------------------------------------------------------------------ */

struct parser {
    const char *src;
    size_t len;
    struct token *toks;
    size_t pos; /* index of the next token */
    int depth;
    const struct expr_parse_opts *opts;
    bool uses_status;
    struct err *e;
};

static struct expr_node *parse_expression(struct parser *p);

/* Frees a node tree. */
static void
node_free(struct expr_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->str);
    free(n);
}

/* Returns a new node at a token's position. */
static struct expr_node *
node_new(enum expr_node_kind kind, const struct token *t)
{
    struct expr_node *n = xcalloc(1, sizeof *n);

    n->kind = kind;
    n->pos = t->start + 1;
    n->height = 1;
    return n;
}

/* Adds a child (ownership moves to n) and checks the tree height. Returns 0 or an error. */
static int
node_add(struct parser *p, struct expr_node *n, struct expr_node *kid)
{
    n->kids = xreallocarray(n->kids, n->nkids + 1, sizeof *n->kids);
    n->kids[n->nkids++] = kid;
    if (kid->height + 1 > n->height)
        n->height = kid->height + 1;
    if (n->height > EXPR_MAX_HEIGHT)
        return err_set(p->e, ERR_INVALID, "Exceeded max expression depth %d (nesting of %d)",
                       EXPR_MAX_DEPTH, EXPR_MAX_HEIGHT);
    return 0;
}

/* The next token, not consumed. */
static const struct token *
peek(const struct parser *p)
{
    return &p->toks[p->pos];
}

/* The last consumed token (the first token when none was consumed). */
static const struct token *
previous(const struct parser *p)
{
    return &p->toks[p->pos ? p->pos - 1 : 0];
}

/* Consumes the next token when it has the given type. */
static bool
match(struct parser *p, enum tok_type type)
{
    if (peek(p)->type != type || type == T_EOF)
        return false;
    p->pos++;
    return true;
}

/* Fails: "Unexpected symbol" at token t, or "Unexpected end of expression" at EOF. */
static struct expr_node *
parse_unexpected(struct parser *p, const struct token *t)
{
    if (t->type == T_EOF) {
        const struct token *prev = previous(p);

        err_set(p->e, ERR_INVALID,
                "Unexpected end of expression: '%.*s'. Located at position %zu within "
                "expression: %.*s",
                (int)(prev->len > 80 ? 80 : prev->len), p->src + prev->start, prev->start + 1,
                (int)p->len, p->src);
        return NULL;
    }
    err_set(p->e, ERR_INVALID,
            "Unexpected symbol: '%.*s'. Located at position %zu within expression: %.*s",
            (int)(t->len > 80 ? 80 : t->len), p->src + t->start, t->start + 1, (int)p->len,
            p->src);
    return NULL;
}

/* Enters one level of nesting; fails past GitHub's maximum depth. */
static bool
depth_enter(struct parser *p)
{
    if (++p->depth > EXPR_MAX_DEPTH) {
        err_set(p->e, ERR_INVALID, "Exceeded max expression depth %d", EXPR_MAX_DEPTH);
        return false;
    }
    return true;
}

/* Checks a context name against the allowed list. */
static bool
parse_context_allowed(const struct parser *p, const struct token *t)
{
    if (p->opts == NULL || p->opts->contexts == NULL)
        return true;
    for (const char *const *c = p->opts->contexts; *c; c++)
        if (strlen(*c) == t->len && strncasecmp(*c, p->src + t->start, t->len) == 0)
            return true;
    return false;
}

/* Resolves a function call's name and checks its arity. */
static int
parse_check_call(struct parser *p, const struct token *name, struct expr_node *call)
{
    const char *s = p->src + name->start;
    int n = (int)(name->len > 80 ? 80 : name->len);
    size_t i;

    for (i = 0; i < sizeof fn_table / sizeof fn_table[0]; i++)
        if (strlen(fn_table[i].name) == name->len &&
            strncasecmp(fn_table[i].name, s, name->len) == 0)
            break;
    if (i == sizeof fn_table / sizeof fn_table[0])
        return err_set(p->e, ERR_INVALID,
                       "Unrecognized function: '%.*s'. Located at position %zu within "
                       "expression: %.*s",
                       n, s, name->start + 1, (int)p->len, p->src);
    call->fn = fn_table[i].fn;
    switch (call->fn) {
    case EXPR_FN_SUCCESS:
    case EXPR_FN_FAILURE:
    case EXPR_FN_CANCELLED:
    case EXPR_FN_ALWAYS:
        p->uses_status = true;
        if (p->opts && p->opts->no_status)
            return err_set(p->e, ERR_INVALID,
                           "Function '%s' is not allowed here. Located at position %zu within "
                           "expression: %.*s",
                           fn_table[i].display, name->start + 1, (int)p->len, p->src);
        break;
    case EXPR_FN_HASHFILES:
        if (p->opts && p->opts->no_hash_files)
            return err_set(p->e, ERR_INVALID,
                           "Function 'hashFiles' is not allowed here. Located at position %zu "
                           "within expression: %.*s",
                           name->start + 1, (int)p->len, p->src);
        break;
    default:
        break;
    }
    if (call->nkids < fn_table[i].min)
        return err_set(p->e, ERR_INVALID,
                       "Too few parameters supplied: '%.*s'. Located at position %zu within "
                       "expression: %.*s",
                       n, s, name->start + 1, (int)p->len, p->src);
    if (call->nkids > fn_table[i].max)
        return err_set(p->e, ERR_INVALID,
                       "Too many parameters supplied: '%.*s'. Located at position %zu within "
                       "expression: %.*s",
                       n, s, name->start + 1, (int)p->len, p->src);
    if (call->fn == EXPR_FN_CASE && call->nkids % 2 == 0)
        return err_set(p->e, ERR_INVALID,
                       "Even number of parameters supplied, requires an odd number of "
                       "parameters: '%.*s'. Located at position %zu within expression: %.*s",
                       n, s, name->start + 1, (int)p->len, p->src);
    return 0;
}

/* primary := literal | '(' expression ')' ; *postfix says whether '.'/'[' may follow. */
static struct expr_node *
parse_primary(struct parser *p, bool *postfix)
{
    const struct token *t = peek(p);
    struct expr_node *n = NULL;

    *postfix = false;
    switch (t->type) {
    case T_FALSE:
    case T_TRUE:
        n = node_new(EXPR_N_BOOL, t);
        n->b = t->type == T_TRUE;
        p->pos++;
        return n;
    case T_NULL:
        p->pos++;
        return node_new(EXPR_N_NULL, t);
    case T_NUMBER:
        n = node_new(EXPR_N_NUM, t);
        n->num = t->num;
        p->pos++;
        return n;
    case T_STRING:
        n = node_new(EXPR_N_STR, t);
        n->str = xmalloc(t->slen + 1);
        memcpy(n->str, t->str, t->slen + 1);
        n->slen = t->slen;
        p->pos++;
        return n;
    case T_LPAREN:
        p->pos++;
        n = parse_expression(p);
        if (n == NULL)
            return NULL;
        if (peek(p)->type != T_RPAREN) {
            node_free(n);
            return parse_unexpected(p, peek(p));
        }
        p->pos++;
        *postfix = true;
        return n;
    default:
        return parse_unexpected(p, t);
    }
}

/* A context name, a function call, or a primary. */
static struct expr_node *
parse_call(struct parser *p, bool *postfix)
{
    const struct token *name = peek(p);
    struct expr_node *n;

    if (name->type != T_IDENT)
        return parse_primary(p, postfix);
    p->pos++;
    *postfix = true;
    if (!match(p, T_LPAREN)) {
        if (!parse_context_allowed(p, name)) {
            err_set(p->e, ERR_INVALID,
                    "Unrecognized named-value: '%.*s'. Located at position %zu within "
                    "expression: %.*s",
                    (int)(name->len > 80 ? 80 : name->len), p->src + name->start,
                    name->start + 1, (int)p->len, p->src);
            return NULL;
        }
        n = node_new(EXPR_N_CTX, name);
        n->str = xstrndup(p->src + name->start, name->len);
        n->slen = name->len;
        return n;
    }
    n = node_new(EXPR_N_CALL, name);
    while (!match(p, T_RPAREN)) {
        struct expr_node *arg = parse_expression(p);

        if (arg == NULL || node_add(p, n, arg) < 0)
            goto fail;
        if (peek(p)->type != T_RPAREN && !match(p, T_COMMA)) {
            parse_unexpected(p, peek(p));
            goto fail;
        }
    }
    if (parse_check_call(p, name, n) < 0)
        goto fail;
    return n;
fail:
    node_free(n);
    return NULL;
}

/* postfix := call ('.' name | '.*' | '[' expression ']' | '[*]')* */
static struct expr_node *
parse_postfix(struct parser *p)
{
    bool postfix;
    struct expr_node *n = parse_call(p, &postfix);
    int entered = 0;

    if (n == NULL || !postfix)
        return n;
    for (;;) {
        const struct token *t = peek(p);
        struct expr_node *op;

        if (t->type == T_LBRACKET) {
            p->pos++;
            if (match(p, T_STAR)) {
                op = node_new(EXPR_N_STAR, t);
            } else {
                struct expr_node *idx = parse_expression(p);

                if (idx == NULL)
                    goto fail;
                int rc1, rc2;

                op = node_new(EXPR_N_INDEX, t);
                rc1 = node_add(p, op, n);
                rc2 = node_add(p, op, idx);
                n = op; /* op owns both now */
                op = NULL;
                if (rc1 < 0 || rc2 < 0)
                    goto fail;
            }
            if (op != NULL) {
                int rc = node_add(p, op, n);

                n = op;
                if (rc < 0)
                    goto fail;
            }
            if (!match(p, T_RBRACKET)) {
                parse_unexpected(p, peek(p));
                goto fail;
            }
            entered++;
            if (!depth_enter(p))
                goto fail;
        } else if (t->type == T_DOT) {
            const struct token *name;
            int rc;

            p->pos++;
            entered++;
            if (!depth_enter(p))
                goto fail;
            name = peek(p);
            if (name->type == T_IDENT) {
                p->pos++;
                op = node_new(EXPR_N_PROP, t);
                op->str = xstrndup(p->src + name->start, name->len);
                op->slen = name->len;
            } else if (name->type == T_STAR) {
                p->pos++;
                op = node_new(EXPR_N_STAR, t);
            } else {
                parse_unexpected(p, name);
                goto fail;
            }
            rc = node_add(p, op, n);
            n = op;
            if (rc < 0)
                goto fail;
        } else {
            break;
        }
    }
    p->depth -= entered;
    return n;
fail:
    p->depth -= entered;
    node_free(n);
    return NULL;
}

/* unary := '!' unary | postfix */
static struct expr_node *
parse_unary(struct parser *p)
{
    const struct token *t = peek(p);
    struct expr_node *n, *kid;

    if (t->type != T_BANG)
        return parse_postfix(p);
    p->pos++;
    if (!depth_enter(p))
        return NULL;
    kid = parse_unary(p);
    p->depth--;
    if (kid == NULL)
        return NULL;
    n = node_new(EXPR_N_NOT, t);
    if (node_add(p, n, kid) < 0) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* Maps a comparison token to its node kind; returns false for other tokens. */
static bool
cmp_kind(enum tok_type t, bool equality, enum expr_node_kind *kind)
{
    switch (t) {
    case T_EQ:
        *kind = EXPR_N_EQ;
        return equality;
    case T_NE:
        *kind = EXPR_N_NE;
        return equality;
    case T_LT:
        *kind = EXPR_N_LT;
        return !equality;
    case T_LE:
        *kind = EXPR_N_LE;
        return !equality;
    case T_GT:
        *kind = EXPR_N_GT;
        return !equality;
    case T_GE:
        *kind = EXPR_N_GE;
        return !equality;
    default:
        return false;
    }
}

/* compare := unary (op unary)* ; equality := compare (op compare)*, both left-associative. */
static struct expr_node *
parse_binary(struct parser *p, bool equality)
{
    struct expr_node *left = equality ? parse_binary(p, false) : parse_unary(p);
    enum expr_node_kind kind;

    while (left != NULL && cmp_kind(peek(p)->type, equality, &kind)) {
        const struct token *op = peek(p);
        struct expr_node *right, *n;

        p->pos++;
        right = equality ? parse_binary(p, false) : parse_unary(p);
        if (right == NULL) {
            node_free(left);
            return NULL;
        }
        int rc1, rc2;

        n = node_new(kind, op);
        rc1 = node_add(p, n, left);
        rc2 = node_add(p, n, right);
        if (rc1 < 0 || rc2 < 0) {
            node_free(n);
            return NULL;
        }
        left = n;
    }
    return left;
}

/* and := equality ('&&' equality)* ; or := and ('||' and)* (n-ary nodes). */
static struct expr_node *
parse_logical(struct parser *p, bool is_or)
{
    enum tok_type op = is_or ? T_OR : T_AND;
    struct expr_node *first = is_or ? parse_logical(p, false) : parse_binary(p, true);
    struct expr_node *n;

    if (first == NULL || peek(p)->type != op)
        return first;
    if (!depth_enter(p)) {
        node_free(first);
        return NULL;
    }
    n = node_new(is_or ? EXPR_N_OR : EXPR_N_AND, peek(p));
    if (node_add(p, n, first) < 0)
        goto fail;
    while (match(p, op)) {
        struct expr_node *kid = is_or ? parse_logical(p, false) : parse_binary(p, true);

        if (kid == NULL || node_add(p, n, kid) < 0)
            goto fail;
    }
    p->depth--;
    return n;
fail:
    p->depth--;
    node_free(n);
    return NULL;
}

/* expression := or (one level of depth) */
static struct expr_node *
parse_expression(struct parser *p)
{
    struct expr_node *n;

    if (!depth_enter(p))
        return NULL;
    n = parse_logical(p, true);
    p->depth--;
    return n;
}

/* Parses src with the location's restrictions; see expr.h. */
int
expr_parse_ex(const char *src, size_t len, const struct expr_parse_opts *opts, struct expr **out,
              struct err *e)
{
    struct lexer lx = {.src = src, .len = len};
    struct parser p = {.src = src, .len = len, .opts = opts, .e = e};
    struct expr *x = NULL;
    struct expr_node *root = NULL;
    int rc;

    *out = NULL;
    if (len > EXPR_MAX_LENGTH) {
        rc = err_set(e, ERR_INVALID, "Exceeded max expression length %d", EXPR_MAX_LENGTH);
        goto out;
    }
    rc = lex_all(&lx, e);
    if (rc < 0)
        goto out;
    p.toks = lx.toks;
    if (lx.toks[0].type != T_EOF) {
        root = parse_expression(&p);
        if (root == NULL) {
            rc = ERR_INVALID;
            goto out;
        }
        if (peek(&p)->type != T_EOF) {
            parse_unexpected(&p, peek(&p));
            rc = ERR_INVALID;
            goto out;
        }
    }
    x = xcalloc(1, sizeof *x);
    x->root = root;
    root = NULL;
    x->src = xstrndup(src, len);
    x->len = len;
    x->uses_status = p.uses_status;
    *out = x;
out:
    node_free(root);
    lex_free(&lx);
    return rc;
}

/* Parses src[0..len); see expr.h. */
int
expr_parse(const char *src, size_t len, struct expr **out, struct err *e)
{
    return expr_parse_ex(src, len, NULL, out, e);
}

/* Frees a parsed expression (NULL is fine). */
void
expr_free(struct expr *x)
{
    if (x == NULL)
        return;
    node_free(x->root);
    free(x->src);
    free(x);
}

/* True when the expression calls a status function. */
bool
expr_uses_status(const struct expr *x)
{
    return x != NULL && x->uses_status;
}
