/* exprint.h: internals shared by the expression module's files. Not for other modules: they
 * use expr.h. Calls go one way, from the top down:
 *
 *     exprtpl.c   templates: find, check and evaluate the ${{ }} in a string
 *     expreval.c  evaluation of a parsed tree (and expr_eval_str, which parses first)
 *     exprfunc.c  the built-in functions, on evaluated arguments
 *     expr.c      lexer and parser
 *     exprval.c   values: kinds, coercions, comparisons, the evaluation's memory budget
 *     exprstr.c   text: case folding, string to number, number to string
 *
 * (expr.c uses only exprstr.c; exprval.c only exprstr.c.) */
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

/* --- Values (exprval.c) --- */

/* The kind of a value; a NULL pointer is null, the non-finite number objects are numbers. */
enum kind { K_NULL, K_BOOL, K_NUM, K_STR, K_ARR, K_OBJ };

/* A value during evaluation. */
struct val {
    json_t *j;     /* owned reference, never NULL */
    bool filtered; /* an array made by '*', whose later accesses apply to each element */
    size_t cost;   /* memory charged for it (released when it is dropped) */
};

/* One evaluation: where it runs, and the memory its live values hold. */
struct evalst {
    const struct expr_env *env;
    const struct expr *x;
    size_t mem; /* bytes charged for values alive now */
    struct err *e;
};

json_t *expr_jchk(json_t *v);
json_t *expr_jstr(const char *s, size_t len);
enum kind expr_kind_of(const json_t *v);
bool expr_is_primitive(const json_t *v);
double expr_to_number(const json_t *v);
char *expr_to_strn(const json_t *v, size_t *len);
json_t *expr_object_get_ci(const json_t *obj, const char *key, size_t klen);
bool expr_loose_equals(const json_t *lv, const json_t *rv);
bool expr_loose_order(const json_t *lv, const json_t *rv, bool greater);
void expr_val_drop(struct evalst *st, struct val *v);
int expr_charge(struct evalst *st, struct val *v, size_t bytes);
size_t expr_room(const struct evalst *st);
void expr_val_set(struct val *out, json_t *j);

/* --- Functions (exprfunc.c) --- */

/* Calls n's function (any but case()) with its nargs evaluated arguments; sets *out. Returns 0
 * or a negative code with st->e set. */
int expr_fn_call(struct evalst *st, const struct expr_node *n, const struct val *args,
                 size_t nargs, struct val *out);

/* --- Strings (exprstr.c) --- */

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
