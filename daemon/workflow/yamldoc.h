/* yamldoc.h: a YAML document as a tree of nodes that keep their source position (libyaml).
 * Plain scalars are not resolved here: `on`, `yes`, `no` stay strings; ynode_to_json() applies
 * the YAML 1.2 core schema (null, true/false, numbers) to plain scalars only. */
#ifndef YAMLDOC_H
#define YAMLDOC_H

#include "runner/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct ypos {
    int line; /* 1-based */
    int col;  /* 1-based */
};

enum ynode_kind {
    YNODE_SCALAR,
    YNODE_SEQ,
    YNODE_MAP,
};

/* Limits: nesting deeper than YDOC_MAX_DEPTH, or alias expansion beyond YDOC_MAX_ALIAS_NODES
 * nodes or YDOC_MAX_ALIAS_BYTES bytes of scalar text (per stream), is an error. */
#define YDOC_MAX_DEPTH 64
#define YDOC_MAX_ALIAS_NODES 100000
#define YDOC_MAX_ALIAS_BYTES (16u << 20)

struct ynode {
    enum ynode_kind kind;
    struct ypos pos;
    struct ypos end; /* just past the node's text (libyaml's end mark, 1-based) */
    /* Scalars: the text (NUL-terminated; len excludes the NUL) and whether it was quoted or a
     * block scalar (then it is always a string, never null/bool/number). */
    char *str;
    size_t len;
    bool quoted;
    /* Sequences: items[0..n). Maps: keys[i] -> items[i], in document order. */
    struct ynode **keys;
    struct ynode **items;
    size_t n;
};

/* Parses every document in data. Returns 0 and a new array of *ndocs roots (free each with
 * ynode_free(), then free() the array), or a negative code with "file:line:col: ..." in e.
 * Aliases are expanded (bounded, so an alias bomb is an error, not an OOM). */
int ydoc_parse_all(const char *file, const char *data, size_t len, struct ynode ***docs,
                   size_t *ndocs, struct err *e);

/* Like ydoc_parse_all() for the first document only; an empty stream gives *out = NULL. */
int ydoc_parse(const char *file, const char *data, size_t len, struct ynode **out, struct err *e);

void ynode_free(struct ynode *n);

/* Returns the value of key in a map (exact match), or NULL. Borrowed from map. */
struct ynode *ynode_get(const struct ynode *map, const char *key);

/* True for a plain scalar that the core schema reads as null ("", "~", "null", "Null", "NULL"). */
bool ynode_is_null(const struct ynode *n);

/* The name of a node's type for messages: "a mapping", "a sequence", "null", "a string". */
const char *ynode_kind_name(const struct ynode *n);

/* Returns a new JSON value for the node (core schema for plain scalars). */
json_t *ynode_to_json(const struct ynode *n);

/* Returns a new deep copy. */
struct ynode *ynode_copy(const struct ynode *n);

/* Returns a new string for messages: s[0..len) cut to about 60 characters (adding "..."), with
 * control characters and invalid UTF-8 escaped as \xNN. Free with free(). */
char *ydoc_quote(const char *s, size_t len);

#endif
