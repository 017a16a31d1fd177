/* wf-int.h: internals shared by the workflow reader's files. Not for other modules: they use
 * wf.h. Calls go one way: wf.c (the document) reads on: with wf-on.c and jobs with wf-job.c,
 * which reads steps with wf-step.c; all of them use wf-check.c. */
#ifndef WF_INT_H
#define WF_INT_H

#include "expr.h"
#include "wf.h"
#include "yamldoc.h"

#include <stdbool.h>
#include <stddef.h>

/* Bounds on work for hostile files: problems kept, and expression errors whose exact ${{
 * position is looked up in the source (the rest get their scalar's position). */
#define WF_MAX_DIAGS 1000
#define WF_MAX_EXPR_POS 50

struct diag_item {
    struct ypos pos;
    size_t seq; /* emission order, to keep the sort stable */
    char *msg;
};

/* One read of a workflow (or of a composite action's steps). */
struct wctx {
    const char *file;
    const char *src; /* the file's bytes, for positions inside scalars */
    size_t srclen;
    size_t *lines; /* byte offset of each line start, built on first use */
    size_t nlines;
    struct diag_item *items;
    size_t n, cap;
    size_t dropped;   /* problems past WF_MAX_DIAGS */
    size_t expr_pos_; /* expression positions looked up so far */
    /* What expressions at the current location may name (contexts, status functions,
     * hashFiles); NULL allows everything (action files, which have their own rules). */
    const struct expr_parse_opts *loc;
};

/* --- Locations (wf-check.c): what the expressions of each key may name --- */

extern const struct expr_parse_opts wf_loc_wf, wf_loc_wf_env, wf_loc_wf_output, wf_loc_job_if,
    wf_loc_strategy, wf_loc_job, wf_loc_job_name, wf_loc_job_env, wf_loc_job_defaults,
    wf_loc_creds, wf_loc_runner, wf_loc_env_url, wf_loc_step, wf_loc_step_if;

/* Sets the location for the expressions checked next; returns the previous one. */
const struct expr_parse_opts *wf_set_loc(struct wctx *c, const struct expr_parse_opts *loc);

/* --- Problems (wf-check.c) --- */

/* Records a problem at pos: "file:line:col: message". */
void wf_problem(struct wctx *c, struct ypos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports that n has the wrong type: "path: expected EXPECTED, got KIND". */
void wf_problem_type(struct wctx *c, const char *path, const struct ynode *n,
                     const char *expected);

/* Reports a mapping key k that is not a string: "path: expected a string key, got KIND". */
void wf_problem_key(struct wctx *c, const char *path, const struct ynode *k);

/* Calls fn(c, PATH.KEY, k, v, arg) for each entry k: v of mapping n whose key is a string
 * without an expression, in order; reports the other keys (wf_problem_key(), or an expression
 * where none is allowed). */
void wf_each_entry(struct wctx *c, const char *path, const struct ynode *n,
                   void (*fn)(struct wctx *c, const char *path, const struct ynode *k,
                              const struct ynode *v, const void *arg),
                   const void *arg);

/* Ends a read: sorts the problems into file order and hands them to diag_out (or frees them).
 * Returns 0 when there were none, else ERR_INVALID with e set to the first. */
int wf_problems_end(struct wctx *c, struct wf_diag *diag_out, struct err *e);

/* Returns a new quoted-for-messages copy of a scalar's text ("" for other nodes). */
char *wf_quote(const struct ynode *n);

/* Returns a new path: base + "." + key, or base + "." + the key node's quoted text. */
char *wf_path(const char *base, const char *key);
char *wf_path_key(const char *base, const struct ynode *k);

/* --- Expressions (wf-check.c) --- */

/* True when n is a scalar holding a ${{; when s is exactly "${{ insert }}". */
bool wf_has_expr(const struct ynode *n);
bool wf_is_insert(const char *s);

/* Checks a scalar where expressions are allowed: every ${{ }} must parse at the location. */
void wf_check_template(struct wctx *c, const char *path, const struct ynode *n);

/* Reports an expression where none is allowed; returns true if there was one. */
bool wf_check_no_expr(struct wctx *c, const char *path, const struct ynode *n);

/* Checks an `if:` value (an expression with or without ${{ }}) and keeps its text in *out
 * unless it is null or not a scalar. */
void wf_read_if(struct wctx *c, const char *path, const struct ynode *n, struct wf_str *out);

/* --- Shapes (wf-check.c) --- */

/* Reports keys of map not in allowed (NULL-terminated), non-string keys and expression keys. */
void wf_check_keys(struct wctx *c, const char *path, const struct ynode *map,
                   const char *const *allowed);

/* Checks a scalar string (expressions per allow_expr); fills out when non-NULL and not null. */
void wf_get_str(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr,
                struct wf_str *out);

/* Checks a mapping of strings (env, with, outputs...); with allow_whole it may also be one
 * "${{ }}" scalar. */
void wf_check_scalar_map(struct wctx *c, const char *path, const struct ynode *n,
                         bool allow_whole);

/* Check a number, a timeout in minutes, a boolean (each or an expression), a string or a
 * sequence of strings, every scalar of a tree as a template, one of allowed values. */
void wf_check_number(struct wctx *c, const char *path, const struct ynode *n);
void wf_check_minutes(struct wctx *c, const char *path, const struct ynode *n);
void wf_check_bool(struct wctx *c, const char *path, const struct ynode *n);
void wf_check_str_or_seq(struct wctx *c, const char *path, const struct ynode *n,
                         bool allow_expr);
void wf_check_tree(struct wctx *c, const char *path, const struct ynode *n);
void wf_check_enum(struct wctx *c, const char *path, const struct ynode *n,
                   const char *const *allowed);

/* concurrency and permissions (workflow or job level). */
void wf_check_concurrency(struct wctx *c, const char *path, const struct ynode *n);
void wf_check_permissions(struct wctx *c, const char *path, const struct ynode *n);

/* Checks defaults: {run: {shell, working-directory}} and reads the two strings. */
void wf_read_defaults(struct wctx *c, const char *path, const struct ynode *n, bool allow_expr,
                      struct wf_str *shell, struct wf_str *wd);

/* --- Ids (wf-check.c) --- */

/* True when id matches ^[A-Za-z_][A-Za-z0-9_-]*$. */
bool wf_valid_id(const char *s, size_t len);

/* An id and the index of what it names, for finding repeated ids by sorting. */
struct id_ref {
    const char *id;
    size_t index;
};

/* Sorts refs[0..nr) by id (ignoring case with nocase), then by index, and calls dup() for each
 * ref whose id an earlier one has already, with its index and that of the first one. */
void wf_each_dup(struct wctx *c, struct id_ref *refs, size_t nr, bool nocase,
                 void (*dup)(struct wctx *c, const void *arg, size_t index, size_t first),
                 const void *arg);

/* --- The parts --- */

/* wf-on.c: reads `on`: a string, a sequence of strings or a mapping event -> config. */
void wf_read_on(struct wctx *c, struct wf_workflow *w, struct ynode *n);

/* wf-job.c: reads one job; reports job ids that differ only in case; reports needs naming
 * unknown jobs and every cycle (once all jobs are read). */
void wf_read_job(struct wctx *c, const struct ynode *key, struct ynode *n, struct wf_job *j);
void wf_check_job_id_case(struct wctx *c, const struct ynode *jobs);
void wf_check_needs(struct wctx *c, const struct wf_workflow *w);

/* wf-step.c: reads steps into a new array (*out, *nout), reports duplicate step ids and sets
 * eff_id; for job steps and composite actions' runs.steps alike. */
void wf_read_steps(struct wctx *c, const char *path, struct ynode *n, struct wf_step **out,
                   size_t *nout);

#endif
