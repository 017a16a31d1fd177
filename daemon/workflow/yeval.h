/* yeval.h: evaluate a YAML node whose scalars may hold ${{ }} into a JSON value, with the
 * node rules of doc/workflow-semantics.md §4.1: a scalar that is exactly one ${{ }} keeps its type,
 * keys may be expressions, a `${{ insert }}` key merges a mapping in, and a sequence item that
 * evaluates to a sequence is spliced into its parent. */
#ifndef YEVAL_H
#define YEVAL_H

#include "expr.h"
#include "runner/err.h"
#include "yamldoc.h"

#include <jansson.h>

/* Returns 0 and a new value in *out, or a negative code with e set to "file:line:col: ..."
 * (file may be NULL). A NULL node gives JSON null. */
int yeval_node(const char *file, const struct ynode *n, const struct expr_env *env, json_t **out,
               struct err *e);

/* Evaluates a scalar as a string (interpolating ${{ }}); a NULL node gives NULL in *out. */
int yeval_string(const char *file, const struct ynode *n, const struct expr_env *env, char **out,
                 struct err *e);

/* True when any expression under n mentions the context name ctx (case-insensitive word). */
bool yeval_mentions(const struct ynode *n, const char *ctx);

#endif
