/* mask.c: streaming replacement of secret values by "***" (see mask.h). Leftmost match wins,
 * longest value first at a position, as if the whole stream were masked at once.
 *
 * The values form a trie walked as an Aho-Corasick automaton, so each byte costs the same
 * however many values there are. The nodes up to two bytes deep have full transition rows (all
 * of depth 0 and 1, at most 257, and of depth 2 up to ROW_MAX rows in all), with an entry per
 * class of bytes (one per byte some value holds, one for all the others); deeper nodes have a
 * sorted list of children and a failure link. Text that ends no value goes from row to row at
 * one load a byte; with few enough values, a prefilter on the pairs of bytes they start with
 * skips the text where none can start. The trie grows as values are added; the links, rows
 * and pairs are (re)built on the first use after a change. What a job adds itself is capped
 * (mask_add_job()); past a cap the mask hides all text rather than let a value through. */
#include "mask.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ROW_NODE 0x80000000u /* in a row entry: a node follows, not a row */
#define ROW_MAX 2048         /* rows, of at most 1 KiB; depth 0 and 1 have at most 257 */
#define PAIRS_MAX 512        /* first byte pairs beyond which the prefilter is left off */

struct mask_node {
    uint32_t child;   /* first child and next sibling (0: none): the trie as it grows */
    uint32_t sibling;
    uint32_t fail;    /* the longest proper suffix of this node's text that is a trie node */
    uint32_t depth;   /* length of this node's text */
    uint32_t out;     /* length of the longest value that is a suffix of the text (0: none) */
    uint32_t kids;    /* built: first of this node's children in kid_byte[]/kid_to[] */
    uint16_t nkids;   /* built: how many */
    uint16_t row;     /* built: 1 + index of this node's transition row (0: none) */
    uint8_t byte;     /* the byte leading here from the parent */
    bool term;        /* a value ends here */
};

/* The automaton, behind a pointer so that the functions taking a const mask may build it. */
struct mask_ac {
    struct mask_node *node; /* node 0 is the root */
    uint32_t nnodes, cap;
    uint64_t gen;           /* changes with every value added */
    bool built;
    uint8_t *kid_byte;      /* children of every node, by node, sorted by byte */
    uint32_t *kid_to;
    uint8_t cls[256];       /* the class of each byte: one per byte some value holds, one
                             * for all the others */
    uint32_t ncls;
    uint32_t *rows;         /* ncls entries per row, by class: where the next row starts, or
                             * ROW_NODE and the next node when it ends a value or has no row */
    uint32_t *row_node;     /* the node of each row */
    uint8_t *pairs;         /* bit (b0 << 8 | b1): some value starts with b0 b1, or is b0
                             * (NULL when too many are set to help) */
    uint32_t pre_end;       /* with pairs: where the rows of depth 2 start, else 0 */
    size_t built_bytes;     /* what the arrays above hold (mask_size()) */
};

/* Where the walk over a text stands (see walk_next()). */
struct walk {
    uint32_t q;     /* state after text[..i) */
    size_t i;       /* next byte to read */
    size_t cs, cl;  /* the leftmost-longest match seen but not yet decided (cl 0: none) */
};

struct mask {
    struct mask_ac *ac;
    size_t n;         /* distinct values */
    size_t maxlen;
    struct buf hold;  /* bytes read but not yet decided; st has walked all of them */
    struct walk st;   /* relative to hold.data */
    uint64_t st_gen;  /* the automaton's generation st was walked with */
    size_t job_n;     /* values and bytes counted against the caps of mask_add_job() */
    size_t job_bytes;
    bool all;         /* a cap was passed: all text is hidden */
    bool all_fed;     /* with all: text was fed since the last flush */
};

static uint32_t
node_new(struct mask_ac *a, uint8_t byte, uint32_t depth)
{
    if (a->nnodes == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->node = xreallocarray(a->node, a->cap, sizeof *a->node);
    }
    memset(&a->node[a->nnodes], 0, sizeof *a->node);
    a->node[a->nnodes].byte = byte;
    a->node[a->nnodes].depth = depth;
    return a->nnodes++;
}

struct mask *
mask_new(void)
{
    struct mask *m = xcalloc(1, sizeof *m);

    m->ac = xcalloc(1, sizeof *m->ac);
    node_new(m->ac, 0, 0);
    return m;
}

static void
ac_unbuild(struct mask_ac *a)
{
    free(a->kid_byte);
    free(a->kid_to);
    free(a->rows);
    free(a->row_node);
    free(a->pairs);
    a->kid_byte = NULL;
    a->kid_to = NULL;
    a->rows = NULL;
    a->row_node = NULL;
    a->pairs = NULL;
    a->pre_end = 0;
    a->built_bytes = 0;
    a->built = false;
}

void
mask_free(struct mask *m)
{
    if (m == NULL)
        return;
    ac_unbuild(m->ac);
    free(m->ac->node);
    free(m->ac);
    buf_free(&m->hold);
    free(m);
}

size_t
mask_count(const struct mask *m)
{
    return m->n;
}

/* Adds s[0..len) to the trie; a value already there changes nothing. */
static void
add_one(struct mask *m, const char *s, size_t len)
{
    struct mask_ac *a = m->ac;
    uint32_t q = 0;

    if (len == 0)
        return;
    assert(len < ROW_NODE && a->nnodes < ROW_NODE - len);
    for (size_t k = 0; k < len; k++) {
        uint8_t c = (uint8_t)s[k];
        uint32_t t = a->node[q].child, prev = 0;
        while (t && a->node[t].byte != c) {
            prev = t;
            t = a->node[t].sibling;
        }
        if (t == 0) {
            t = node_new(a, c, (uint32_t)k + 1);
            if (prev)
                a->node[prev].sibling = t;
            else
                a->node[q].child = t;
            a->built = false;
            a->gen++;
        }
        q = t;
    }
    if (a->node[q].term)
        return;
    a->node[q].term = true;
    a->built = false;
    a->gen++;
    m->n++;
    if (len > m->maxlen)
        m->maxlen = len;
}

void
mask_add(struct mask *m, const char *value)
{
    size_t len = strlen(value);

    add_one(m, value, len);
    if (memchr(value, '\n', len) == NULL)
        return;
    for (const char *p = value; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l && p[l - 1] == '\r')
            l--;
        add_one(m, p, l);
        p = nl ? nl + 1 : p + strlen(p);
    }
}

/* True when s[0..len) is one of the values. */
static bool
has_value(const struct mask_ac *a, const char *s, size_t len)
{
    uint32_t q = 0;

    for (size_t k = 0; k < len; k++) {
        uint32_t t = a->node[q].child;
        while (t && a->node[t].byte != (uint8_t)s[k])
            t = a->node[t].sibling;
        if (t == 0)
            return false;
        q = t;
    }
    return a->node[q].term;
}

/* The caps count what mask_add() may add at most: the value and, for a multi-line value,
 * each of its lines again, so a value is weighed before it is added. */
bool
mask_add_job(struct mask *m, const char *value)
{
    size_t len = strlen(value), vals = 1, bytes = len;

    if (m->all)
        return false;
    if (len == 0 || has_value(m->ac, value, len))
        return true;
    if (memchr(value, '\n', len)) {
        for (const char *p = value; (p = strchr(p, '\n')) != NULL; p++)
            vals++;
        vals++;
        bytes += len;
    }
    if (vals > MASK_JOB_MAX_VALUES - m->job_n || bytes > MASK_JOB_MAX_BYTES - m->job_bytes) {
        mask_hide_all(m);
        return false;
    }
    m->job_n += vals;
    m->job_bytes += bytes;
    mask_add(m, value);
    return true;
}

/* What a stream held back is dropped: it is hidden like all the rest. */
void
mask_hide_all(struct mask *m)
{
    if (m->all)
        return;
    m->all = true;
    m->all_fed = m->hold.len > 0;
    m->hold.len = 0;
    if (m->hold.data)
        m->hold.data[0] = '\0';
    m->st = (struct walk){0};
}

bool
mask_hides_all(const struct mask *m)
{
    return m->all;
}

size_t
mask_size(const struct mask *m)
{
    const struct mask_ac *a = m->ac;

    return sizeof *m + sizeof *a + (size_t)a->cap * sizeof *a->node + a->built_bytes +
           m->hold.cap;
}

void
mask_add_values(struct mask *m, json_t *obj)
{
    const char *k;
    json_t *v;

    json_object_foreach(obj, k, v) {
        if (json_is_string(v))
            mask_add(m, json_string_value(v));
    }
}

/* The child of node q by byte c (0: none), from the built lists. */
static inline uint32_t
kid(const struct mask_ac *a, const struct mask_node *nd, uint8_t c)
{
    const uint8_t *b = a->kid_byte + nd->kids;
    size_t lo = 0, hi = nd->nkids;

    if (hi <= 8) {
        for (size_t k = 0; k < hi; k++)
            if (b[k] == c)
                return a->kid_to[nd->kids + k];
        return 0;
    }
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nd->nkids && b[lo] == c ? a->kid_to[nd->kids + lo] : 0;
}

/* The node a row entry leads to. */
static inline uint32_t
row_target(const struct mask_ac *a, uint32_t e)
{
    return e & ROW_NODE ? e & ~ROW_NODE : a->row_node[e / a->ncls];
}

/* The state after reading c in state q: a row's entry, or a child, or the failure link's
 * transition. The links only go to shallower nodes and the root has a row, so the cost per
 * byte, amortised, is a constant. */
static inline uint32_t
go(const struct mask_ac *a, uint32_t q, uint8_t c)
{
    for (;;) {
        const struct mask_node *nd = &a->node[q];
        uint32_t t;
        if (nd->row)
            return row_target(a, a->rows[(size_t)(nd->row - 1) * a->ncls + a->cls[c]]);
        t = kid(a, nd, c);
        if (t)
            return t;
        q = nd->fail;
    }
}

/* go() from the children lists and links alone, while the rows are being built. */
static uint32_t
go_built(const struct mask_ac *a, uint32_t q, uint8_t c)
{
    for (;;) {
        uint32_t t = kid(a, &a->node[q], c);
        if (t || q == 0)
            return t;
        q = a->node[q].fail;
    }
}

static int
cmp_node_byte(const void *x, const void *y, void *arg)
{
    const struct mask_node *n = arg;
    return (int)n[*(const uint32_t *)x].byte - (int)n[*(const uint32_t *)y].byte;
}

/* The prefilter: the pairs of bytes some value starts with (a one-byte value: its byte then
 * any), when there are few enough that text rarely holds one. */
static void
build_pairs(struct mask_ac *a)
{
    const struct mask_node *n = a->node;
    uint32_t set = 0, rows1 = 1;

    a->pairs = xcalloc(65536 / 8, 1);
    for (uint32_t k = 0; k < n[0].nkids; k++) {
        uint32_t u = a->kid_to[n[0].kids + k];
        rows1++;
        if (n[u].term) {
            for (int c = 0; c < 256; c++)
                a->pairs[(n[u].byte << 8 | c) >> 3] |= (uint8_t)(1u << (c & 7));
            set += 256;
            continue;
        }
        for (uint32_t j = 0; j < n[u].nkids; j++) {
            unsigned x = (unsigned)n[u].byte << 8 | n[a->kid_to[n[u].kids + j]].byte;
            a->pairs[x >> 3] |= (uint8_t)(1u << (x & 7));
            set++;
        }
    }
    if (set > PAIRS_MAX) {
        free(a->pairs);
        a->pairs = NULL;
        return;
    }
    a->pre_end = rows1 * a->ncls;
}

/* Builds the children lists, the failure links and the match lengths breadth first, so that
 * whatever a node's link needs is already built; then the rows of the first nodes in that
 * order (all of depth 0 and 1, of depth 2 up to ROW_MAX rows), each from its failure link's
 * row and its own children. */
static void
ac_build(struct mask_ac *a)
{
    struct mask_node *n = a->node;
    uint32_t *queue, head = 0, tail = 0, nk = 0, nrows = 0;

    ac_unbuild(a);
    a->kid_byte = xmalloc(a->nnodes);
    a->kid_to = xreallocarray(NULL, a->nnodes, sizeof *a->kid_to);
    queue = xreallocarray(NULL, a->nnodes, sizeof *queue);
    queue[tail++] = 0;
    n[0].fail = 0;
    n[0].out = 0;
    while (head < tail) {
        uint32_t u = queue[head++];
        uint32_t first = nk;

        n[u].kids = nk;
        for (uint32_t t = n[u].child; t; t = n[t].sibling)
            a->kid_to[nk++] = t;
        qsort_r(a->kid_to + first, nk - first, sizeof *a->kid_to, cmp_node_byte, n);
        n[u].nkids = (uint16_t)(nk - first);
        for (uint32_t k = first; k < nk; k++)
            a->kid_byte[k] = n[a->kid_to[k]].byte;
        for (uint32_t k = first; k < nk; k++) {
            uint32_t v = a->kid_to[k];
            n[v].fail = u == 0 ? 0 : go_built(a, n[u].fail, n[v].byte);
            n[v].out = n[v].term ? n[v].depth : n[n[v].fail].out;
            queue[tail++] = v;
        }
        n[u].row = 0;
        if (n[u].depth <= 1 || (n[u].depth == 2 && nrows < ROW_MAX))
            n[u].row = (uint16_t)++nrows;
    }
    /* Bytes no value holds all behave alike: one class (the first free one) for them. */
    {
        bool seen[256] = {false};
        uint32_t other;
        for (uint32_t v = 1; v < a->nnodes; v++)
            seen[n[v].byte] = true;
        a->ncls = 0;
        for (int c = 0; c < 256; c++)
            if (seen[c])
                a->cls[c] = (uint8_t)a->ncls++;
        other = a->ncls < 256 ? a->ncls++ : 0;
        for (int c = 0; c < 256; c++)
            if (!seen[c])
                a->cls[c] = (uint8_t)other;
    }
    a->rows = xreallocarray(NULL, (size_t)nrows * a->ncls, sizeof *a->rows);
    a->row_node = xreallocarray(NULL, nrows, sizeof *a->row_node);
    for (uint32_t r = 0; r < nrows; r++) {
        uint32_t u = queue[r], *row = a->rows + (size_t)r * a->ncls;
        a->row_node[r] = u;
        if (u == 0)
            memset(row, 0, a->ncls * sizeof *row); /* row 0 is the root's */
        else
            memcpy(row, a->rows + (size_t)(n[n[u].fail].row - 1) * a->ncls,
                   a->ncls * sizeof *row);
        for (uint32_t k = n[u].kids; k < n[u].kids + n[u].nkids; k++) {
            uint32_t v = a->kid_to[k];
            row[a->cls[n[v].byte]] =
                n[v].row && n[v].out == 0 ? (n[v].row - 1u) * a->ncls : ROW_NODE | v;
        }
    }
    build_pairs(a);
    free(queue);
    a->built_bytes = (size_t)a->nnodes * (sizeof *a->kid_byte + sizeof *a->kid_to) +
                     (size_t)nrows * (a->ncls * sizeof *a->rows + sizeof *a->row_node) +
                     (a->pairs ? 65536 / 8 : 0);
    a->built = true;
}

static const struct mask_ac *
ac_ready(const struct mask *m)
{
    if (!m->ac->built)
        ac_build(m->ac);
    return m->ac;
}

/* The first position p >= i where a value may start: w[p] w[p + 1] is a pair some value
 * starts with, or p is the last byte and one starts with it; n when there is none. No value
 * nor a prefix of one longer than a byte starts before it, so the walk may go on from the
 * root there. Each pair is tested on its own, without waiting for the one before. */
static inline size_t
prefilter(const struct mask_ac *a, const uint8_t *w, size_t i, size_t n)
{
    const uint8_t *pairs = a->pairs;

    for (; i + 1 < n; i++) {
        unsigned x = (unsigned)w[i] << 8 | w[i + 1];
        if (pairs[x >> 3] & (1u << (x & 7)))
            return i;
    }
    return i < n && a->rows[a->cls[w[i]]] != 0 ? i : n;
}

/* Reads text[st->i..n) until the next match is decided: the leftmost one, the longest at its
 * start. A match seen is decided once no text to come could yield one starting at or before
 * it, i.e. once it starts before the text the state stands for; when final, text[n..) is
 * empty and what was seen is decided at the end. Returns true with the match at [*s, *s + *l)
 * and the walk restarted after it (bytes read past it are read again); false when the text
 * ran out first. */
static bool
walk_next(const struct mask_ac *a, struct walk *st, const char *text, size_t n, bool final,
          size_t *s, size_t *l)
{
    const struct mask_node *nd = a->node;
    const uint32_t *rows = a->rows;
    const uint8_t *cls = a->cls, *w = (const uint8_t *)text;
    uint32_t q = st->q;
    size_t i = st->i, cs = st->cs, cl = st->cl;

    while (i < n) {
        if (cl == 0 && nd[q].row) {
            /* The hot path: from row to row, one load a byte, until a node that ends a
             * value or has no row of its own; at the root or one byte deep, the prefilter
             * skips to where a value may start (but never twice from the same place). */
            uint32_t r = (nd[q].row - 1u) * a->ncls, e;
            size_t from = 0;
            for (;;) {
                if (r < a->pre_end && i - (r != 0) >= from) {
                    size_t p = prefilter(a, w, i - (r != 0), n);
                    if (p == n) {
                        q = 0;
                        i = n;
                        goto out;
                    }
                    i = p;
                    r = 0;
                    from = p + 1;
                }
                e = rows[r + cls[w[i++]]];
                if (e & ROW_NODE)
                    break;
                r = e;
                if (i == n) {
                    q = a->row_node[r / a->ncls];
                    goto out;
                }
            }
            q = e & ~ROW_NODE;
        } else {
            q = go(a, q, w[i++]);
        }
        if (nd[q].out) {
            size_t at = i - nd[q].out;
            if (cl == 0 || at <= cs) {
                cs = at;
                cl = nd[q].out;
            }
        }
        if (cl && i - nd[q].depth > cs)
            goto found;
    }
out:
    if (final && cl)
        goto found;
    st->q = q;
    st->i = i;
    st->cs = cs;
    st->cl = cl;
    return false;
found:
    *s = cs;
    *l = cl;
    *st = (struct walk){.i = cs + cl};
    return true;
}

/* Masks text[0..n) from where st stands, appending what is decided to out; when final,
 * everything is. Returns the index of the first byte not decided (the state of st stands for
 * text[that..n)). */
static size_t
scan(const struct mask_ac *a, struct walk *st, const char *text, size_t n, bool final,
     struct buf *out)
{
    size_t pos = 0, s, l, keep;

    while (walk_next(a, st, text, n, final, &s, &l)) {
        buf_append(out, text + pos, s - pos);
        buf_puts(out, MASK_TEXT);
        pos = s + l;
    }
    keep = final ? n : n - a->node[st->q].depth;
    buf_append(out, text + pos, keep - pos);
    return keep;
}

/* Masks a whole text at once, without touching a stream's state. */
static void
scan_all(const struct mask *m, const char *p, size_t n, struct buf *out)
{
    struct walk st = {0};

    if (m->all) {
        if (n > 0)
            buf_puts(out, MASK_TEXT);
        return;
    }
    if (m->n == 0) {
        buf_append(out, p, n);
        return;
    }
    scan(ac_ready(m), &st, p, n, true, out);
}

/* Moves the walk back by keep bytes, the text before them being gone. */
static void
walk_drop(struct walk *st, size_t keep)
{
    st->i -= keep;
    st->cs -= st->cl ? keep : 0;
}

/* Makes the automaton current; values added since the hold was read mean reading it again. */
static const struct mask_ac *
stream_ready(struct mask *m)
{
    const struct mask_ac *a = ac_ready(m);

    if (m->st_gen != a->gen) {
        m->st = (struct walk){0};
        m->st_gen = a->gen;
    }
    return a;
}

void
mask_feed(struct mask *m, const char *p, size_t n, struct buf *out)
{
    const struct mask_ac *a;
    size_t keep;

    if (m->all) {
        m->all_fed |= n > 0;
        return;
    }
    if (m->n == 0 && m->hold.len == 0) {
        buf_append(out, p, n);
        return;
    }
    a = stream_ready(m);
    if (m->hold.len == 0) {
        keep = scan(a, &m->st, p, n, false, out);
        buf_append(&m->hold, p + keep, n - keep);
        walk_drop(&m->st, keep);
        return;
    }
    buf_append(&m->hold, p, n);
    keep = scan(a, &m->st, m->hold.data, m->hold.len, false, out);
    memmove(m->hold.data, m->hold.data + keep, m->hold.len - keep);
    m->hold.len -= keep;
    m->hold.data[m->hold.len] = '\0';
    walk_drop(&m->st, keep);
}

void
mask_flush(struct mask *m, struct buf *out)
{
    if (m->all) {
        if (m->all_fed)
            buf_puts(out, MASK_TEXT);
        m->all_fed = false;
        return;
    }
    if (m->hold.len == 0)
        return;
    scan(stream_ready(m), &m->st, m->hold.data, m->hold.len, true, out);
    m->st = (struct walk){0};
    m->hold.len = 0;
    m->hold.data[0] = '\0';
}

void
mask_apply(struct mask *m, const char *p, size_t n, struct buf *out)
{
    if (m->hold.len == 0) {
        scan_all(m, p, n, out); /* the per-line path: no copy into the hold */
        return;
    }
    mask_feed(m, p, n, out);
    mask_flush(m, out);
}

size_t
mask_maxlen(const struct mask *m)
{
    return m->maxlen;
}

bool
mask_hits(const struct mask *m, const char *p, size_t n)
{
    const struct mask_ac *a;
    uint32_t q = 0;

    if (m->all)
        return n > 0;
    if (m->n == 0)
        return false;
    a = ac_ready(m);
    for (size_t i = 0; i < n; i++) {
        q = go(a, q, (uint8_t)p[i]);
        if (a->node[q].out)
            return true;
    }
    return false;
}

char *
mask_str(const struct mask *m, const char *s)
{
    struct buf out = BUF_INIT;

    if (s == NULL)
        return NULL;
    scan_all(m, s, strlen(s), &out);
    return buf_steal(&out);
}

char *
mask_shown(const struct mask *m, const char *s)
{
    struct buf out = BUF_INIT;
    char *t;

    scan_all(m, s ? s : "", s ? strlen(s) : 0, &out);
    t = log_escape(out.data ? out.data : "", out.len);
    buf_free(&out);
    return t;
}

json_t *
mask_json(const struct mask *m, json_t *v)
{
    json_t *r, *it;
    const char *k;
    size_t i;

    if (json_is_string(v)) {
        struct buf out = BUF_INIT;
        scan_all(m, json_string_value(v), json_string_length(v), &out);
        r = json_stringn(out.data ? out.data : "", out.len);
        buf_free(&out);
        return r ? r : json_string("");
    }
    if (json_is_array(v)) {
        r = json_array();
        json_array_foreach(v, i, it)
            json_array_append_new(r, mask_json(m, it));
        return r;
    }
    if (json_is_object(v)) {
        r = json_object();
        json_object_foreach(v, k, it) {
            char *mk = mask_str(m, k);
            json_object_set_new(r, mk, mask_json(m, it));
            free(mk);
        }
        return r;
    }
    return v ? json_deep_copy(v) : NULL;
}

size_t
mask_cut(const struct mask *m, const char *p, size_t n, size_t limit)
{
    const struct mask_ac *a;
    struct walk st = {0};
    size_t s, l;

    if (n <= limit)
        return n;
    if (m->n == 0 || m->all)
        return limit;
    a = ac_ready(m);
    /* The same leftmost-longest walk as masking: a cut where it stands is a cut between two
     * of its steps, so each piece's own walk finds the same values. A value starting before
     * the limit ends within maxlen - 1 bytes after it, so the walk reads no further. */
    if (n > limit + m->maxlen - 1)
        n = limit + m->maxlen - 1;
    while (walk_next(a, &st, p, n, true, &s, &l)) {
        if (s >= limit)
            break;
        if (s + l > limit)
            return s > 0 ? s : l;
    }
    return limit;
}

struct mask *
mask_for_job(json_t *secrets, const char *const *tokens)
{
    struct mask *m = mask_new();

    mask_add_values(m, secrets);
    for (size_t i = 0; tokens && tokens[i]; i++)
        mask_add(m, tokens[i]);
    return m;
}
