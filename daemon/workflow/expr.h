/* expr.h: the `${{ }}` expression language.
 * Values are jansson json_t. Numbers are JSON reals or integers; the non-finite numbers
 * (NaN, Infinity, -Infinity), which JSON cannot hold, are represented as described at
 * expr_number_new().
 *
 * Behaviour follows GitHub's own test vectors (shared/conformance/actions-expressions) where they
 * differ from act: separate equality and relational levels, NaN/Infinity literals, 0x/0o
 * numbers, "Unrecognized named-value" at parse time (expr_parse_ex), case(). Limits as on
 * GitHub: nesting depth 50, 21000 bytes per expression, about 1 MiB of intermediate strings per
 * evaluation ("The maximum allowed memory size was exceeded"). */
#ifndef EXPR_H
#define EXPR_H

#include "runner/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct expr; /* a parsed expression */

/* Where an expression is evaluated: contexts and hooks. All pointers are borrowed. */
struct expr_env {
    json_t *contexts; /* object: context name (lower case) -> value; NULL = none */
    /* Status functions. Step level: set job_status ("success", "failure", "cancelled").
     * Job level: set status_fn, which answers success()/failure()/cancelled() itself. */
    const char *job_status;
    bool (*status_fn)(void *arg, const char *fn /* lower case */);
    /* hashFiles(patterns...): NULL means hashFiles is an error here. Returns 0 and a new string
     * (lower-case hex, "" when nothing matched) in *out, or a negative code with e set. */
    int (*hash_files)(void *arg, const char *const *patterns, size_t n, char **out,
                      struct err *e);
    void *arg;
    /* Optional (may be NULL): job-level success()/failure() called with job ids, e.g.
     * success('build', 'test'). When NULL, the ids are ignored and status_fn answers. */
    bool (*status_jobs_fn)(void *arg, const char *fn /* lower case */, const char *const *jobs,
                           size_t n);
};

/* Parses src[0..len). Returns 0 and a new expression (free with expr_free()), or ERR_INVALID
 * with a message that names the offending token and its position in the expression. */
int expr_parse(const char *src, size_t len, struct expr **out, struct err *e);
void expr_free(struct expr *x);

/* What a location allows, for expr_parse_ex(). A zeroed struct allows everything. */
struct expr_parse_opts {
    /* Allowed context names (NULL-terminated, matched case-insensitively); NULL allows any.
     * Another name is a parse error "Unrecognized named-value: 'x'". */
    const char *const *contexts;
    bool no_status;      /* reject success(), failure(), cancelled(), always() */
    bool no_hash_files;  /* reject hashFiles() */
};

/* As expr_parse(), with the location's restrictions (opts may be NULL). */
int expr_parse_ex(const char *src, size_t len, const struct expr_parse_opts *opts,
                  struct expr **out, struct err *e);

/* True when the expression calls success(), failure(), cancelled() or always() anywhere. */
bool expr_uses_status(const struct expr *x);

/* Evaluates x. Returns 0 and a new value in *out, or a negative code with e set. A context name
 * missing from env->contexts evaluates to null (expr_parse_ex() rejects unknown names). */
int expr_eval(const struct expr *x, const struct expr_env *env, json_t **out, struct err *e);

/* Parses src and evaluates it. */
int expr_eval_str(const char *src, const struct expr_env *env, json_t **out, struct err *e);

/* --- Templates: strings with zero or more ${{ }} --- */

/* Checks every ${{ }} in s parses. On error returns ERR_INVALID, e names the problem, and
 * *offset (if non-NULL) is the byte offset in s of the ${{ that failed. The closing }} is looked
 * for outside '...' literals; a ${{ without one is an error ("not closed"). */
int expr_template_check(const char *s, size_t *offset, struct err *e);

/* As expr_template_check(), with the location's restrictions (opts may be NULL). */
int expr_template_check_ex(const char *s, const struct expr_parse_opts *opts, size_t *offset,
                           struct err *e);

/* True when s contains a ${{ (so it is a template rather than plain text). */
bool expr_template_has(const char *s);

/* Interpolates s: literal text plus the string form of each ${{ }}. Returns 0 and a new string. */
int expr_interpolate(const char *s, const struct expr_env *env, char **out, struct err *e);

/* Evaluates a YAML scalar's text: when s is exactly one ${{ expr }} (surrounding whitespace
 * allowed) the value keeps its type; otherwise as expr_interpolate() (a string). */
int expr_eval_scalar(const char *s, const struct expr_env *env, json_t **out, struct err *e);

/* Evaluates an `if:` condition (with or without ${{ }}; empty means the default). Unless the
 * expression uses a status function, it is evaluated as `<implicit> && (expr)`, where implicit
 * is "success()" for jobs and steps, "always()" for post stages. */
int expr_eval_if(const char *cond, const char *implicit, const struct expr_env *env, bool *out,
                 struct err *e);

/* --- Values --- */

/* Truthiness (doc/workflow-semantics.md §5.5). */
bool expr_truthy(const json_t *v);

/* Returns a new string: the value coerced to string as GitHub prints it (§5.5). */
char *expr_to_string(const json_t *v);

/* Returns a new number value. Finite numbers are JSON reals (integral values may be given as
 * JSON integers too); NaN and the infinities are a one-member object {"$number": "NaN"} etc.,
 * which every function here treats as that number. */
json_t *expr_number_new(double d);

/* True when v is a number (including the non-finite form); *d receives it. */
bool expr_number_get(const json_t *v, double *d);

#endif
