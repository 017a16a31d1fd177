/* mask.c: streaming replacement of secret values by "***" (see mask.h). Leftmost match wins,
 * longest value first at a position. */
#include "mask.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mask_value {
    char *s;
    size_t len;
};

struct mask {
    struct mask_value *v; /* sorted by length, longest first */
    size_t n, cap;
    size_t maxlen;
    uint8_t first[256];   /* 1 when some value starts with that byte */
    struct buf hold;      /* bytes held back from the last feed */
};

struct mask *
mask_new(void)
{
    return xcalloc(1, sizeof(struct mask));
}

void
mask_free(struct mask *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].s);
    free(m->v);
    buf_free(&m->hold);
    free(m);
}

size_t
mask_count(const struct mask *m)
{
    return m->n;
}

static void
add_one(struct mask *m, const char *s, size_t len)
{
    size_t at;

    if (len == 0)
        return;
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].len == len && memcmp(m->v[i].s, s, len) == 0)
            return;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->v = xreallocarray(m->v, m->cap, sizeof *m->v);
    }
    for (at = 0; at < m->n && m->v[at].len >= len; at++)
        ;
    memmove(m->v + at + 1, m->v + at, (m->n - at) * sizeof *m->v);
    m->v[at].s = xstrndup(s, len);
    m->v[at].len = len;
    m->n++;
    m->first[(unsigned char)s[0]] = 1;
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

/* Length of the longest value matching at w[i..n), or 0. */
static size_t
match_at(const struct mask *m, const char *w, size_t i, size_t n)
{
    if (!m->first[(unsigned char)w[i]])
        return 0;
    for (size_t k = 0; k < m->n; k++) {
        const struct mask_value *v = &m->v[k];
        if (v->len <= n - i && memcmp(w + i, v->s, v->len) == 0)
            return v->len;
    }
    return 0;
}

/* Scans w[0..n), emitting up to the safe point (or everything when final). Returns the index
 * of the first byte not emitted. */
static size_t
scan(const struct mask *m, const char *w, size_t n, bool final, struct buf *out)
{
    size_t safe = final || n < m->maxlen ? (final ? n : 0) : n - (m->maxlen - 1);
    size_t i = 0, run = 0;

    if (m->n == 0) {
        buf_append(out, w, n);
        return n;
    }
    while (i < n) {
        size_t l = match_at(m, w, i, n);
        if (l) {
            buf_append(out, w + run, i - run);
            buf_puts(out, MASK_TEXT);
            i += l;
            run = i;
            continue;
        }
        if (i >= safe)
            break;
        i++;
    }
    buf_append(out, w + run, i - run);
    return i;
}

void
mask_feed(struct mask *m, const char *p, size_t n, struct buf *out)
{
    size_t done;

    if (m->n == 0 && m->hold.len == 0) {
        buf_append(out, p, n);
        return;
    }
    if (m->hold.len == 0) {
        done = scan(m, p, n, false, out);
        if (done < n)
            buf_append(&m->hold, p + done, n - done);
        return;
    }
    buf_append(&m->hold, p, n);
    struct buf w = m->hold;
    m->hold = (struct buf)BUF_INIT;
    done = scan(m, w.data, w.len, false, out);
    if (done < w.len)
        buf_append(&m->hold, w.data + done, w.len - done);
    buf_free(&w);
}

void
mask_flush(struct mask *m, struct buf *out)
{
    if (m->hold.len == 0)
        return;
    struct buf w = m->hold;
    m->hold = (struct buf)BUF_INIT;
    scan(m, w.data, w.len, true, out);
    buf_free(&w);
}

void
mask_apply(struct mask *m, const char *p, size_t n, struct buf *out)
{
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
    for (size_t i = 0; i < n && m->n; i++)
        if (match_at(m, p, i, n))
            return true;
    return false;
}

char *
mask_str(const struct mask *m, const char *s)
{
    struct buf out = BUF_INIT;

    if (s == NULL)
        return NULL;
    scan(m, s, strlen(s), true, &out);
    return buf_steal(&out);
}

char *
mask_shown(const struct mask *m, const char *s)
{
    struct buf out = BUF_INIT;
    char *t;

    scan(m, s ? s : "", s ? strlen(s) : 0, true, &out);
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
        scan(m, json_string_value(v), json_string_length(v), true, &out);
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
    size_t i = 0;

    if (n <= limit)
        return n;
    /* The same leftmost-longest walk as scan(): a cut where it stands is a cut between two
     * of its steps, so each piece's own walk finds the same values. */
    while (i < limit) {
        size_t l = m->n ? match_at(m, p, i, n) : 0;
        if (l == 0) {
            i++;
            continue;
        }
        if (i + l > limit)
            return i > 0 ? i : l;
        i += l;
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
