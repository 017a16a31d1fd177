/* exprint.h: internals shared by the expression module's files (expr.c parses, expreval.c
 * evaluates, exprcase.c folds case). Not for other modules: they use expr.h. */
#ifndef EXPRINT_H
#define EXPRINT_H

#include "expr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GitHub's limits: nesting depth of the parse and length of one expression. */
#define EXPR_MAX_DEPTH 50
#define EXPR_MAX_LENGTH 21000
/* Our own bound on the height of the tree (comparison chains do not count towards GitHub's
 * depth, but they do towards our stack). */
#define EXPR_MAX_HEIGHT 256
/* Bytes that the intermediate strings of one evaluation may hold at once. GitHub allows 1 MiB
 * counting two bytes per UTF-16 code unit; we count two per UTF-8 byte. */
#define EXPR_MAX_MEMORY (1024 * 1024)

enum expr_node_kind {
    EXPR_N_NULL,
    EXPR_N_BOOL,
    EXPR_N_NUM,
    EXPR_N_STR,
    EXPR_N_CTX,   /* str: context name */
    EXPR_N_PROP,  /* kids[0].str: property name */
    EXPR_N_INDEX, /* kids[0][kids[1]] */
    EXPR_N_STAR,  /* kids[0].* or kids[0][*] */
    EXPR_N_NOT,
    EXPR_N_AND, /* n-ary */
    EXPR_N_OR,  /* n-ary */
    EXPR_N_EQ,
    EXPR_N_NE,
    EXPR_N_LT,
    EXPR_N_LE,
    EXPR_N_GT,
    EXPR_N_GE,
    EXPR_N_CALL, /* fn: enum expr_fn, kids: arguments */
};

enum expr_fn {
    EXPR_FN_CONTAINS,
    EXPR_FN_STARTSWITH,
    EXPR_FN_ENDSWITH,
    EXPR_FN_FORMAT,
    EXPR_FN_JOIN,
    EXPR_FN_TOJSON,
    EXPR_FN_FROMJSON,
    EXPR_FN_HASHFILES,
    EXPR_FN_CASE,
    EXPR_FN_SUCCESS,
    EXPR_FN_FAILURE,
    EXPR_FN_CANCELLED,
    EXPR_FN_ALWAYS,
};

struct expr_node {
    enum expr_node_kind kind;
    enum expr_fn fn;
    bool b;
    double num;
    char *str; /* EXPR_N_STR, EXPR_N_CTX, EXPR_N_PROP; NUL-terminated, may hold NULs */
    size_t slen;
    struct expr_node **kids;
    size_t nkids;
    size_t pos;    /* 1-based byte position in the source, for messages */
    size_t height; /* 1 for a leaf */
};

struct expr {
    struct expr_node *root; /* NULL: the empty expression (evaluates to null) */
    char *src;              /* NUL-terminated copy of the source */
    size_t len;
    bool uses_status;
};

/* Canonical (lower-case) name of a function. */
const char *expr_fn_name(enum expr_fn fn);

/* Evaluates one node tree (root may be NULL). */
int expr_eval_root(const struct expr *x, const struct expr_env *env, json_t **out, struct err *e);

/* --- Strings (exprcase.c) --- */

/* Simple Unicode upper-case mapping of one code point, as GitHub's case-insensitive comparisons
 * use it (except that dotless i keeps its case). */
uint32_t expr_upper(uint32_t cp);

/* Returns a new string: s[0..len) with every code point upper-cased (invalid UTF-8 bytes kept);
 * *outlen receives its length. */
char *expr_fold(const char *s, size_t len, size_t *outlen);

/* Compares two strings case-insensitively in UTF-16 code unit order: <0, 0 or >0. */
int expr_casecmp(const char *a, size_t alen, const char *b, size_t blen);

/* Parses a string as a number the way JavaScript's Number() does (whitespace around, decimal with
 * exponent, 0x/0o/0b, Infinity; "" is 0); returns NaN when it is not one. */
double expr_str_to_number(const char *s, size_t len);

/* Formats a finite or non-finite number as GitHub prints it into buf (at least 32 bytes). */
void expr_number_format(double d, char *buf, size_t size);

#endif
