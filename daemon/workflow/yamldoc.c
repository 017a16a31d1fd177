/* yamldoc.c: libyaml events into a tree of positioned nodes (see yamldoc.h).
 *
 * The parser is recursive over libyaml's event stream, bounded by YDOC_MAX_DEPTH. Anchors are
 * remembered per document once their node is complete (so an alias can never refer to a node
 * that contains it), and each alias becomes a deep copy, charged against a per-stream budget
 * of nodes and bytes: a "billion laughs" document ends in an error, not in an OOM. */
#include "yamldoc.h"

#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct anchor {
    char *name;
    const struct ynode *node; /* borrowed from the document being built */
    int height;
};

struct yparser {
    yaml_parser_t y;
    const char *file;
    struct anchor *anchors;
    size_t nanchors, capanchors;
    size_t *slots; /* open-addressing hash: anchors index + 1, 0 = empty; size nslots */
    size_t nslots;
    size_t alias_nodes, alias_bytes;
    struct err *e;
};

static int parse_node(struct yparser *p, yaml_event_t *ev, int depth, struct ynode **out);

/* Converts a libyaml mark (0-based) to a position (1-based). */
static struct ypos
mark_pos(yaml_mark_t m)
{
    struct ypos pos = {
        .line = m.line >= INT32_MAX ? INT32_MAX : (int)m.line + 1,
        .col = m.column >= INT32_MAX ? INT32_MAX : (int)m.column + 1,
    };
    return pos;
}

/* Cuts first (at a UTF-8 boundary), then escapes, so the result stays short. */
char *
ydoc_quote(const char *s, size_t len)
{
    size_t n = len;
    bool cut = false;

    if (n > 60) {
        n = 60;
        /* Do not split a UTF-8 sequence. */
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
        cut = true;
    }
    char *esc = log_escape(s, n);
    if (!cut)
        return esc;
    char *r = xasprintf("%s...", esc);
    free(esc);
    return r;
}

/* Records libyaml's current error in p->e. */
static int
parser_error(struct yparser *p)
{
    const yaml_parser_t *y = &p->y;
    const char *problem = y->problem ? y->problem : "invalid YAML";
    yaml_mark_t m = y->problem_mark;

    if (y->error == YAML_MEMORY_ERROR) {
        log_err("yaml: out of memory");
        abort();
    }
    if (y->error == YAML_READER_ERROR)
        m = y->mark;
    struct ypos pos = mark_pos(m);
    if (y->context)
        return err_set(p->e, ERR_INVALID, "%s:%d:%d: %s %s", p->file, pos.line, pos.col,
                       problem, y->context);
    return err_set(p->e, ERR_INVALID, "%s:%d:%d: %s", p->file, pos.line, pos.col, problem);
}

/* Fetches the next event into ev. */
static int
next_event(struct yparser *p, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&p->y, ev))
        return parser_error(p);
    return 0;
}

/* Frees a tree; keys and items may be NULL in a tree that failed half-built. */
void
ynode_free(struct ynode *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            ynode_free(n->keys[i]);
        if (n->items)
            ynode_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->str);
    free(n);
}

/* Returns the height of a tree (a scalar is 0). Bounded by the parser's depth limits. */
static int
node_height(const struct ynode *n)
{
    int h = 0;

    for (size_t i = 0; i < n->n; i++) {
        int c = node_height(n->items[i]);
        if (n->keys) {
            int k = node_height(n->keys[i]);
            if (k > c)
                c = k;
        }
        if (c + 1 > h)
            h = c + 1;
    }
    return h;
}

/* Deep copy charged against *nodes and *bytes; returns NULL once either runs out. */
static struct ynode *
copy_bounded(const struct ynode *n, size_t *nodes, size_t *bytes)
{
    struct ynode *c;

    if (*nodes == 0 || *bytes < n->len)
        return NULL;
    (*nodes)--;
    *bytes -= n->len;
    c = xcalloc(1, sizeof *c);
    c->kind = n->kind;
    c->pos = n->pos;
    c->end = n->end;
    c->quoted = n->quoted;
    if (n->str) {
        c->str = xmalloc(n->len + 1);
        memcpy(c->str, n->str, n->len + 1);
        c->len = n->len;
    }
    if (n->n > 0) {
        c->items = xcalloc(n->n, sizeof *c->items);
        if (n->keys)
            c->keys = xcalloc(n->n, sizeof *c->keys);
    }
    for (size_t i = 0; i < n->n; i++) {
        /* Count the slot first so a failure frees exactly what was copied. */
        c->n = i + 1;
        if (n->keys) {
            c->keys[i] = copy_bounded(n->keys[i], nodes, bytes);
            if (c->keys[i] == NULL)
                goto fail;
        }
        c->items[i] = copy_bounded(n->items[i], nodes, bytes);
        if (c->items[i] == NULL)
            goto fail;
    }
    return c;
fail:
    ynode_free(c);
    return NULL;
}

/* An unbounded copy: the tree is already in memory, so it cannot blow up. */
struct ynode *
ynode_copy(const struct ynode *n)
{
    size_t nodes = SIZE_MAX, bytes = SIZE_MAX;

    if (n == NULL)
        return NULL;
    return copy_bounded(n, &nodes, &bytes);
}

/* Returns the FNV-1a hash of a NUL-terminated name. */
static size_t
name_hash(const char *name)
{
    uint64_t h = 1469598103934665603u;

    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return (size_t)h;
}

/* Returns the slot for name: the one holding it, or the empty one where it would go. A
 * document may hold very many anchors, so lookups must not be linear. */
static size_t *
anchor_slot(struct yparser *p, const char *name)
{
    size_t mask = p->nslots - 1, i = name_hash(name) & mask;

    while (p->slots[i] != 0 && strcmp(p->anchors[p->slots[i] - 1].name, name) != 0)
        i = (i + 1) & mask;
    return &p->slots[i];
}

/* Returns the anchor called name, or NULL. */
static const struct anchor *
anchor_find(struct yparser *p, const char *name)
{
    if (p->nslots == 0)
        return NULL;
    size_t *slot = anchor_slot(p, name);
    return *slot ? &p->anchors[*slot - 1] : NULL;
}

/* Remembers node under the event's anchor name (a later definition wins). */
static void
anchor_add(struct yparser *p, const yaml_char_t *name, const struct ynode *node)
{
    if (name == NULL)
        return;
    if (p->nslots == 0 || (p->nanchors + 1) * 2 > p->nslots) {
        size_t n = p->nslots ? p->nslots * 2 : 16;
        free(p->slots);
        p->slots = xcalloc(n, sizeof *p->slots);
        p->nslots = n;
        for (size_t i = 0; i < p->nanchors; i++)
            *anchor_slot(p, p->anchors[i].name) = i + 1;
    }
    size_t *slot = anchor_slot(p, (const char *)name);
    if (*slot != 0) {
        p->anchors[*slot - 1].node = node;
        p->anchors[*slot - 1].height = node_height(node);
        return;
    }
    if (p->nanchors == p->capanchors) {
        p->capanchors = p->capanchors ? p->capanchors * 2 : 8;
        p->anchors = xreallocarray(p->anchors, p->capanchors, sizeof *p->anchors);
    }
    p->anchors[p->nanchors].name = xstrdup((const char *)name);
    p->anchors[p->nanchors].node = node;
    p->anchors[p->nanchors].height = node_height(node);
    p->nanchors++;
    *slot = p->nanchors;
}

/* Forgets every anchor (they are scoped to one document). */
static void
anchors_clear(struct yparser *p)
{
    for (size_t i = 0; i < p->nanchors; i++)
        free(p->anchors[i].name);
    p->nanchors = 0;
    if (p->slots)
        memset(p->slots, 0, p->nslots * sizeof *p->slots);
}

/* A scalar key and its index in the mapping, for finding duplicates by sorting. */
struct key_ref {
    const struct ynode *k;
    size_t index;
};

/* Orders scalar keys by text, then by document order (for qsort). */
static int
key_ref_cmp(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    size_t n = x->k->len < y->k->len ? x->k->len : y->k->len;
    int c = memcmp(x->k->str, y->k->str, n);

    if (c != 0)
        return c;
    if (x->k->len != y->k->len)
        return x->k->len < y->k->len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Reports the first duplicate scalar key of a finished mapping (by the later key's order). */
static int
check_duplicates(struct yparser *p, const struct ynode *map)
{
    struct key_ref *refs;
    size_t n = 0, best = SIZE_MAX, first = 0;
    int rc = 0;

    if (map->n < 2)
        return 0;
    refs = xcalloc(map->n, sizeof *refs);
    for (size_t i = 0; i < map->n; i++) {
        if (map->keys[i]->kind == YNODE_SCALAR) {
            refs[n].k = map->keys[i];
            refs[n].index = i;
            n++;
        }
    }
    qsort(refs, n, sizeof *refs, key_ref_cmp);
    for (size_t i = 1; i < n; i++) {
        const struct ynode *a = refs[i - 1].k, *b = refs[i].k;
        if (a->len == b->len && memcmp(a->str, b->str, a->len) == 0 && refs[i].index < best)
            best = refs[i].index;
    }
    if (best != SIZE_MAX) {
        /* Find the earliest key with the same text for the "first defined" position. */
        const struct ynode *dup = map->keys[best];
        for (size_t i = 0; i < best; i++) {
            const struct ynode *k = map->keys[i];
            if (k->kind == YNODE_SCALAR && k->len == dup->len &&
                memcmp(k->str, dup->str, k->len) == 0) {
                first = i;
                break;
            }
        }
        char *q = ydoc_quote(dup->str, dup->len);
        rc = err_set(p->e, ERR_INVALID,
                     "%s:%d:%d: duplicate key '%s' (first defined at line %d, column %d)",
                     p->file, dup->pos.line, dup->pos.col, q, map->keys[first]->pos.line,
                     map->keys[first]->pos.col);
        free(q);
    }
    free(refs);
    return rc;
}

/* Appends child to a sequence or (with key) a mapping under construction. */
static void
node_push(struct ynode *n, size_t *cap, struct ynode *key, struct ynode *item)
{
    if (n->n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        n->items = xreallocarray(n->items, *cap, sizeof *n->items);
        if (n->kind == YNODE_MAP)
            n->keys = xreallocarray(n->keys, *cap, sizeof *n->keys);
    }
    if (n->kind == YNODE_MAP)
        n->keys[n->n] = key;
    n->items[n->n] = item;
    n->n++;
}

/* True for tags that force a scalar to be a string. */
static bool
tag_is_str(const yaml_char_t *tag)
{
    return tag && strcmp((const char *)tag, "tag:yaml.org,2002:str") == 0;
}

/* Builds the node for a scalar event. */
static struct ynode *
scalar_node(const yaml_event_t *ev)
{
    struct ynode *n = xcalloc(1, sizeof *n);

    n->kind = YNODE_SCALAR;
    n->pos = mark_pos(ev->start_mark);
    n->end = mark_pos(ev->end_mark);
    n->len = ev->data.scalar.length;
    n->str = xmalloc(n->len + 1);
    if (n->len)
        memcpy(n->str, ev->data.scalar.value, n->len);
    n->str[n->len] = '\0';
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || tag_is_str(ev->data.scalar.tag);
    return n;
}

/* Expands an alias event into a bounded copy of its anchor's node. */
static int
alias_node(struct yparser *p, const yaml_event_t *ev, int depth, struct ynode **out)
{
    const char *name = (const char *)ev->data.alias.anchor;
    struct ypos pos = mark_pos(ev->start_mark);
    const struct anchor *a = anchor_find(p, name);

    if (a == NULL) {
        char *q = ydoc_quote(name, strlen(name));
        int rc = err_set(p->e, ERR_INVALID, "%s:%d:%d: unknown anchor '%s'", p->file, pos.line,
                         pos.col, q);
        free(q);
        return rc;
    }
    if (depth + a->height > YDOC_MAX_DEPTH)
        return err_set(p->e, ERR_INVALID,
                       "%s:%d:%d: alias nested too deeply (more than %d levels)", p->file,
                       pos.line, pos.col, YDOC_MAX_DEPTH);
    size_t nodes = YDOC_MAX_ALIAS_NODES - p->alias_nodes;
    size_t bytes = YDOC_MAX_ALIAS_BYTES - p->alias_bytes;
    size_t nodes0 = nodes, bytes0 = bytes;
    struct ynode *c = copy_bounded(a->node, &nodes, &bytes);
    if (c == NULL)
        return err_set(p->e, ERR_INVALID,
                       "%s:%d:%d: aliases expand to too much data (limit %d nodes, %u bytes)",
                       p->file, pos.line, pos.col, YDOC_MAX_ALIAS_NODES, YDOC_MAX_ALIAS_BYTES);
    p->alias_nodes += nodes0 - nodes;
    p->alias_bytes += bytes0 - bytes;
    *out = c;
    return 0;
}

/* Builds a sequence or mapping from its start event up to the matching end event. */
static int
collection_node(struct yparser *p, yaml_event_t *start, int depth, struct ynode **out)
{
    bool is_map = start->type == YAML_MAPPING_START_EVENT;
    struct ynode *n = xcalloc(1, sizeof *n);
    struct ynode *key = NULL, *item = NULL;
    size_t cap = 0;
    yaml_event_t ev;
    int rc = 0;

    n->kind = is_map ? YNODE_MAP : YNODE_SEQ;
    n->pos = mark_pos(start->start_mark);
    n->end = n->pos;
    if (depth >= YDOC_MAX_DEPTH) {
        rc = err_set(p->e, ERR_INVALID, "%s:%d:%d: nested too deeply (more than %d levels)",
                     p->file, n->pos.line, n->pos.col, YDOC_MAX_DEPTH);
        goto out;
    }
    for (;;) {
        rc = next_event(p, &ev);
        if (rc < 0)
            goto out;
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            n->end = mark_pos(ev.end_mark);
            yaml_event_delete(&ev);
            break;
        }
        rc = parse_node(p, &ev, depth + 1, is_map ? &key : &item);
        yaml_event_delete(&ev);
        if (rc < 0)
            goto out;
        if (is_map) {
            rc = next_event(p, &ev);
            if (rc < 0)
                goto out;
            rc = parse_node(p, &ev, depth + 1, &item);
            yaml_event_delete(&ev);
            if (rc < 0)
                goto out;
        }
        node_push(n, &cap, key, item);
        key = item = NULL;
    }
    if (is_map)
        rc = check_duplicates(p, n);
    if (rc == 0) {
        const yaml_char_t *anchor =
            is_map ? start->data.mapping_start.anchor : start->data.sequence_start.anchor;
        anchor_add(p, anchor, n);
        *out = n;
        n = NULL;
    }
out:
    ynode_free(key);
    ynode_free(item);
    ynode_free(n);
    return rc;
}

/* True when s (a scalar's text) is a valid value of the YAML core schema type `type` (the last
 * part of a tag:yaml.org,2002: tag): what an explicit !!bool, !!int, !!float or !!null needs. */
static bool
core_value_ok(const char *type, const char *s, size_t len)
{
    static const char *const bools[] = {"true", "True", "TRUE", "false", "False", "FALSE", NULL};
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const specials[] = {".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN", NULL};
    const char *const *words = strcmp(type, "bool") == 0 ? bools
                               : strcmp(type, "null") == 0 ? nulls
                                                           : NULL;
    size_t i = 0, digits = 0;

    if (strlen(s) != len)
        return false;
    if (words) {
        for (size_t k = 0; words[k]; k++)
            if (strcmp(s, words[k]) == 0)
                return true;
        return false;
    }
    if (strcmp(type, "int") == 0) {
        if (strncmp(s, "0x", 2) == 0)
            return len > 2 && strspn(s + 2, "0123456789abcdefABCDEF") == len - 2;
        if (strncmp(s, "0o", 2) == 0)
            return len > 2 && strspn(s + 2, "01234567") == len - 2;
        if (s[0] == '-' || s[0] == '+')
            i++;
        return len > i && strspn(s + i, "0123456789") == len - i;
    }
    /* float */
    if (s[0] == '-' || s[0] == '+')
        i++;
    for (size_t k = 0; specials[k]; k++)
        if (strcmp(s + i, specials[k]) == 0)
            return k < 3 || i == 0; /* no sign before .nan */
    digits = strspn(s + i, "0123456789");
    i += digits;
    if (s[i] == '.') {
        size_t frac = strspn(s + i + 1, "0123456789");
        i += 1 + frac;
        digits += frac;
    }
    if (digits == 0)
        return false;
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '-' || s[i] == '+')
            i++;
        size_t exp = strspn(s + i, "0123456789");
        if (exp == 0)
            return false;
        i += exp;
    }
    return i == len;
}

/* Refuses explicit tags other than the core schema's (str, bool, int, float, null, seq, map),
 * and a core scalar tag on a value that is not of its type: GitHub's reader does, and a tag
 * such as !!timestamp or !custom would otherwise be dropped without a word. */
static int
check_tag(struct yparser *p, const yaml_event_t *ev)
{
    static const char prefix[] = "tag:yaml.org,2002:";
    const char *tag = (const char *)(ev->type == YAML_SCALAR_EVENT ? ev->data.scalar.tag
                                     : ev->type == YAML_MAPPING_START_EVENT
                                         ? ev->data.mapping_start.tag
                                         : ev->data.sequence_start.tag);
    struct ypos pos = mark_pos(ev->start_mark);
    const char *type;
    int rc;

    if (tag == NULL || strcmp(tag, "!") == 0)
        return 0;
    type = strncmp(tag, prefix, sizeof prefix - 1) == 0 ? tag + sizeof prefix - 1 : NULL;
    if (type && ev->type == YAML_SCALAR_EVENT) {
        if (strcmp(type, "str") == 0)
            return 0;
        if (strcmp(type, "bool") == 0 || strcmp(type, "int") == 0 ||
            strcmp(type, "float") == 0 || strcmp(type, "null") == 0) {
            const char *v = (const char *)ev->data.scalar.value;
            size_t len = ev->data.scalar.length;
            if (core_value_ok(type, v, len))
                return 0;
            char *vq = ydoc_quote(v, len > 80 ? 80 : len);
            rc = err_set(p->e, ERR_INVALID, "%s:%d:%d: the value '%s' is not valid for the tag "
                                            "'%s'", p->file, pos.line, pos.col, vq, tag);
            free(vq);
            return rc;
        }
    } else if (type && ev->type == YAML_MAPPING_START_EVENT && strcmp(type, "map") == 0) {
        return 0;
    } else if (type && ev->type == YAML_SEQUENCE_START_EVENT && strcmp(type, "seq") == 0) {
        return 0;
    }
    char *tq = ydoc_quote(tag, strlen(tag) > 80 ? 80 : strlen(tag));
    rc = err_set(p->e, ERR_INVALID,
                 "%s:%d:%d: unexpected tag '%s' (only !!str, !!bool, !!int, !!float, !!null, "
                 "!!seq and !!map are supported)",
                 p->file, pos.line, pos.col, tq);
    free(tq);
    return rc;
}

/* Builds the node that starts with ev (which the caller deletes). */
static int
parse_node(struct yparser *p, yaml_event_t *ev, int depth, struct ynode **out)
{
    struct ypos pos = mark_pos(ev->start_mark);

    *out = NULL;
    if (ev->type == YAML_SCALAR_EVENT || ev->type == YAML_SEQUENCE_START_EVENT ||
        ev->type == YAML_MAPPING_START_EVENT) {
        int rc = check_tag(p, ev);
        if (rc < 0)
            return rc;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        *out = scalar_node(ev);
        anchor_add(p, ev->data.scalar.anchor, *out);
        return 0;
    case YAML_ALIAS_EVENT:
        return alias_node(p, ev, depth, out);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        return collection_node(p, ev, depth, out);
    default:
        return err_set(p->e, ERR_INVALID, "%s:%d:%d: unexpected YAML event", p->file, pos.line,
                       pos.col);
    }
}

/* Drops the event *ev holds (when *have) and reads the next; *have tells whether it holds one. */
static int
advance(struct yparser *p, yaml_event_t *ev, bool *have)
{
    int rc;

    if (*have)
        yaml_event_delete(ev);
    rc = next_event(p, ev);
    *have = rc >= 0;
    return rc;
}

/* Drives libyaml: STREAM-START, then per document DOCUMENT-START, a node, DOCUMENT-END. */
int
ydoc_parse_all(const char *file, const char *data, size_t len, struct ynode ***docs,
               size_t *ndocs, struct err *e)
{
    struct yparser p = {.file = file ? file : "<input>", .e = e};
    struct ynode **list = NULL, *root = NULL;
    size_t n = 0, cap = 0;
    yaml_event_t ev;
    bool have_ev = false;
    int rc;

    *docs = NULL;
    *ndocs = 0;
    if (!yaml_parser_initialize(&p.y)) {
        log_err("yaml: out of memory");
        abort();
    }
    yaml_parser_set_input_string(&p.y, (const unsigned char *)data, len);
    rc = advance(&p, &ev, &have_ev); /* STREAM-START */
    if (rc < 0)
        goto out;
    for (;;) {
        rc = advance(&p, &ev, &have_ev);
        if (rc < 0)
            goto out;
        if (ev.type == YAML_STREAM_END_EVENT)
            break;
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            rc = err_set(e, ERR_INVALID, "%s: unexpected YAML event", p.file);
            goto out;
        }
        rc = advance(&p, &ev, &have_ev);
        if (rc < 0)
            goto out;
        rc = parse_node(&p, &ev, 0, &root);
        if (rc < 0)
            goto out;
        rc = advance(&p, &ev, &have_ev); /* DOCUMENT-END */
        if (rc < 0)
            goto out;
        anchors_clear(&p);
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            list = xreallocarray(list, cap, sizeof *list);
        }
        list[n++] = root;
        root = NULL;
    }
    *docs = list;
    *ndocs = n;
    list = NULL;
    n = 0;
out:
    if (have_ev)
        yaml_event_delete(&ev);
    ynode_free(root);
    for (size_t i = 0; i < n; i++)
        ynode_free(list[i]);
    free(list);
    anchors_clear(&p);
    free(p.anchors);
    free(p.slots);
    yaml_parser_delete(&p.y);
    return rc;
}

/* Parses the whole stream (so later syntax errors still fail) and keeps the first document. */
int
ydoc_parse(const char *file, const char *data, size_t len, struct ynode **out, struct err *e)
{
    struct ynode **docs = NULL;
    size_t n = 0;
    int rc = ydoc_parse_all(file, data, len, &docs, &n, e);

    *out = NULL;
    if (rc < 0)
        return rc;
    if (n > 0)
        *out = docs[0];
    for (size_t i = 1; i < n; i++)
        ynode_free(docs[i]);
    free(docs);
    return 0;
}

/* Linear scan: maps in workflows are small, and duplicates were rejected at parse time. */
struct ynode *
ynode_get(const struct ynode *map, const char *key)
{
    size_t klen;

    if (map == NULL || map->kind != YNODE_MAP || key == NULL)
        return NULL;
    klen = strlen(key);
    for (size_t i = 0; i < map->n; i++) {
        const struct ynode *k = map->keys[i];
        if (k->kind == YNODE_SCALAR && k->len == klen && memcmp(k->str, key, klen) == 0)
            return map->items[i];
    }
    return NULL;
}

/* Only plain scalars can be null; '~' and "" quoted are strings. */
bool
ynode_is_null(const struct ynode *n)
{
    if (n == NULL || n->kind != YNODE_SCALAR || n->quoted)
        return false;
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

const char *
ynode_kind_name(const struct ynode *n)
{
    if (n->kind == YNODE_MAP)
        return "a mapping";
    if (n->kind == YNODE_SEQ)
        return "a sequence";
    if (ynode_is_null(n))
        return "null";
    return "a string";
}

/* Returns how many leading characters of s are digits in base (8, 10 or 16). */
static size_t
span_digits(const char *s, int base)
{
    size_t i = 0;

    for (;; i++) {
        char c = s[i];
        bool ok = (c >= '0' && c <= '9' && c - '0' < base) ||
                  (base == 16 && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (!ok)
            return i;
    }
}

/* Returns a JSON integer for a core-schema integer, a real when it does not fit. */
static json_t *
int_json(const char *s, int base)
{
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, base);

    if (errno == ERANGE) {
        if (base == 10)
            return json_real(strtod(s, NULL));
        /* Large hex/octal: sum as a double. */
        double d = 0;
        for (const char *q = s; *q; q++) {
            int dv = *q <= '9' ? *q - '0' : (*q | 0x20) - 'a' + 10;
            d = d * base + dv;
        }
        return json_real(d);
    }
    return json_integer((json_int_t)v);
}

/* Returns the non-finite number form expr.h documents: {"$number": "NaN"} and so on. */
static json_t *
nonfinite_json(const char *what)
{
    json_t *o = json_object();

    json_object_set_new(o, "$number", json_string(what));
    return o;
}

/* Resolves a plain scalar with the YAML 1.2 core schema; NULL when it is a string. */
static json_t *
core_scalar(const char *s, size_t len)
{
    const char *p = s;
    bool neg = false;

    if (strlen(s) != len)
        return NULL; /* an embedded NUL: a string */
    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0)
        return json_null();
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
        return json_true();
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
        return json_false();
    if (strncmp(s, "0x", 2) == 0 && len > 2 && span_digits(s + 2, 16) == len - 2)
        return int_json(s + 2, 16);
    if (strncmp(s, "0o", 2) == 0 && len > 2 && span_digits(s + 2, 8) == len - 2)
        return int_json(s + 2, 8);
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0)
        return nonfinite_json(neg ? "-Infinity" : "Infinity");
    if (p == s && (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0))
        return nonfinite_json("NaN");
    size_t ip = span_digits(p, 10);
    if (ip > 0 && p[ip] == '\0')
        return int_json(s, 10);
    /* Float: (\.[0-9]+ | [0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    const char *q = p + ip;
    size_t fp = 0;
    if (*q == '.') {
        fp = span_digits(q + 1, 10);
        q += 1 + fp;
    }
    if (ip == 0 && fp == 0)
        return NULL;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        size_t ep = span_digits(q, 10);
        if (ep == 0)
            return NULL;
        q += ep;
    }
    if (*q != '\0')
        return NULL;
    double d = strtod(s, NULL);
    if (!isfinite(d))
        return nonfinite_json(d < 0 ? "-Infinity" : "Infinity");
    return json_real(d);
}

/* Returns a JSON string for s[0..len), even if it is not valid UTF-8. */
static json_t *
string_json(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);

    return j ? j : json_stringn_nocheck(s, len);
}

/* Plain scalars go through the core schema; everything else is a string. */
json_t *
ynode_to_json(const struct ynode *n)
{
    json_t *j;

    if (n == NULL)
        return json_null();
    switch (n->kind) {
    case YNODE_SCALAR:
        if (!n->quoted) {
            j = core_scalar(n->str, n->len);
            if (j)
                return j;
        }
        return string_json(n->str, n->len);
    case YNODE_SEQ:
        j = json_array();
        for (size_t i = 0; i < n->n; i++)
            json_array_append_new(j, ynode_to_json(n->items[i]));
        return j;
    case YNODE_MAP:
        j = json_object();
        for (size_t i = 0; i < n->n; i++) {
            const struct ynode *k = n->keys[i];
            json_t *v = ynode_to_json(n->items[i]);
            if (k->kind == YNODE_SCALAR) {
                json_object_setn_new_nocheck(j, k->str, k->len, v);
            } else {
                /* A complex key: use its JSON text as the key. */
                json_t *kj = ynode_to_json(k);
                char *ks = json_dumps(kj, JSON_COMPACT | JSON_ENCODE_ANY);
                json_object_set_new_nocheck(j, ks ? ks : "", v);
                free(ks);
                json_decref(kj);
            }
        }
        return j;
    }
    return json_null();
}
