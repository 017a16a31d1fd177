/* globmatch.c: hashFiles() pattern matching (see globmatch.h). libc only. */
#include "globmatch.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* How deep the segment-wise match recurses before giving up (no match). */
#define MATCH_DEPTH_MAX 256

/* Copies s[0..len) as a C string into buf if it fits, else into new memory (*heap). */
static const char *
seg_copy(const char *s, size_t len, char *buf, char **heap)
{
    char *t = buf;

    *heap = NULL;
    if (len >= GLOBMATCH_SEG_INLINE) {
        t = malloc(len + 1);
        if (t == NULL)
            return NULL;
        *heap = t;
    }
    memcpy(t, s, len);
    t[len] = '\0';
    return t;
}

/* One pattern segment against one path segment: fnmatch(3) with no flags. 1, 0 or -ENOMEM. */
static int
seg_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    char pbuf[GLOBMATCH_SEG_INLINE], sbuf[GLOBMATCH_SEG_INLINE];
    char *pheap, *sheap = NULL;
    const char *p = seg_copy(pat, plen, pbuf, &pheap);
    const char *t = p ? seg_copy(s, slen, sbuf, &sheap) : NULL;
    int r = -ENOMEM;

    if (p != NULL && t != NULL)
        r = fnmatch(p, t, 0) == 0;
    free(pheap);
    free(sheap);
    return r;
}

/* Length of the segment at s, up to '/' or end (end: one past the last byte, or NULL for a
 * NUL-terminated string). */
static size_t
seg_len(const char *s, const char *end)
{
    const char *p = s;

    while ((end ? p < end : *p != '\0') && *p != '/')
        p++;
    return (size_t)(p - s);
}

/* The path after the segment of length sl at path. */
static const char *
seg_next(const char *path, size_t sl)
{
    return path[sl] == '/' ? path + sl + 1 : path + sl;
}

/* Segment-wise match of pattern [pat, pend) against path, `**` matching zero or more
 * segments. With below set, the pattern behaves as if a final "**" segment followed it. */
static int
match_from(const char *pat, const char *pend, const char *path, int depth, bool below)
{
    static const char globstar[] = "**";
    int r;

    if (depth > MATCH_DEPTH_MAX)
        return 0;
    while (pat < pend && *pat == '/')
        pat++;
    if (pat == pend) {
        if (below)
            return match_from(globstar, globstar + 2, path, depth, false);
        return *path == '\0';
    }
    size_t pl = seg_len(pat, pend);
    const char *pnext = pat + pl;

    if (pl == 2 && pat[0] == '*' && pat[1] == '*') {
        /* Zero segments, or consume one path segment and try again. */
        r = match_from(pnext, pend, path, depth + 1, below);
        if (r != 0)
            return r;
        if (*path == '\0')
            return 0;
        return match_from(pat, pend, seg_next(path, seg_len(path, NULL)), depth + 1, below);
    }
    if (*path == '\0')
        return 0;
    size_t sl = seg_len(path, NULL);
    r = seg_match(pat, pl, path, sl);
    if (r <= 0)
        return r;
    return match_from(pnext, pend, seg_next(path, sl), depth + 1, below);
}

/* One pattern [pat, pend) (no leading '!') against path. */
static int
match_range(const char *pat, const char *pend, const char *path)
{
    int r;

    while (pend - pat >= 2 && pat[0] == '.' && pat[1] == '/')
        pat += 2;
    r = match_from(pat, pend, path, 0, false);
    if (r != 0)
        return r;
    /* A pattern naming a directory matches everything below it (as @actions/glob does). */
    return match_from(pat, pend, path, 0, true);
}

int
globmatch_match(const char *pattern, const char *path)
{
    return match_range(pattern, pattern + strlen(pattern), path);
}

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int
globmatch_select(const char *const *patterns, size_t n, const char *path)
{
    int inc = 0;

    for (size_t i = 0; i < n; i++) {
        const char *p = patterns[i];

        while (*p != '\0') {
            const char *nl = strchr(p, '\n');
            const char *s = p, *e = nl ? nl : p + strlen(p);

            p = nl ? nl + 1 : e;
            while (s < e && is_blank(*s))
                s++;
            while (e > s && (is_blank(e[-1]) || e[-1] == '\r'))
                e--;
            if (s == e || *s == '#')
                continue;
            bool neg = false;
            while (s < e && *s == '!') {
                neg = !neg;
                s++;
            }
            int r = match_range(s, e, path);
            if (r < 0)
                return r;
            if (r > 0)
                inc = !neg;
        }
    }
    return inc;
}
