/* cache-range.c: the two byte-range headers the cache reads: an upload's Content-Range and a
 * download's Range (doc/cache.md "Protocol"). Strict: digits only, at most 15 of them (no
 * overflow: 10^15 bytes is far past any cap), no signs or spaces where none belong. */
#include "cache-int.h"

#include <string.h>

/* Reads 1 to 15 digits at *s into *v and advances *s. 0, or -EINVAL. */
static int
number(const char **s, int64_t *v)
{
    const char *p = *s;
    int64_t n = 0;

    while (*p >= '0' && *p <= '9' && p - *s < 15)
        n = n * 10 + (*p++ - '0');
    if (p == *s || (*p >= '0' && *p <= '9'))
        return -EINVAL;
    *v = n;
    *s = p;
    return 0;
}

int
cache_parse_content_range(const char *s, int64_t *start, int64_t *end)
{
    int64_t a, b, total;

    if (s == NULL || strncmp(s, "bytes ", 6) != 0)
        return -EINVAL;
    s += 6;
    if (number(&s, &a) < 0 || *s++ != '-' || number(&s, &b) < 0 || *s++ != '/')
        return -EINVAL;
    if (strcmp(s, "*") != 0) {
        if (number(&s, &total) < 0 || *s != '\0' || b >= total)
            return -EINVAL;
    }
    if (b < a)
        return -EINVAL;
    *start = a;
    *end = b;
    return 0;
}

int
cache_parse_range(const char *s, int64_t size, int64_t *start, int64_t *end)
{
    int64_t a, b;

    if (s == NULL || strncmp(s, "bytes=", 6) != 0)
        return 0;
    s += 6;
    if (strchr(s, ',') != NULL)
        return 0; /* several ranges: the whole blob instead */
    if (*s == '-') {
        s++;
        if (number(&s, &b) < 0 || *s != '\0')
            return 0;
        if (b == 0 || size == 0)
            return -ERANGE;
        *start = b >= size ? 0 : size - b;
        *end = size - 1;
        return 1;
    }
    if (number(&s, &a) < 0 || *s++ != '-')
        return 0;
    if (*s == '\0') {
        b = size - 1;
    } else if (number(&s, &b) < 0 || *s != '\0' || b < a) {
        return 0;
    }
    if (a >= size)
        return -ERANGE;
    *start = a;
    *end = b >= size ? size - 1 : b;
    return 1;
}
