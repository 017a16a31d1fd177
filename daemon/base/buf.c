/* buf.c: growable byte buffer. */
#include "runner/buf.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
buf_grow(struct buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;

    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
    buf_grow(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
buf_puts(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void
buf_putc(struct buf *b, char c)
{
    buf_append(b, &c, 1);
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    buf_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *
buf_steal(struct buf *b)
{
    char *s = b->data ? b->data : xstrdup("");

    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

const char *
buf_str(const struct buf *b)
{
    return b->data ? b->data : "";
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int
buf_read_fd(struct buf *b, int fd, const char *name, size_t max, const char *what, struct err *e)
{
    struct stat st;
    size_t start = b->len;
    int rc = 0;

    if (fstat(fd, &st) < 0)
        return err_set(e, -errno, "%s: %s", name, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(e, ERR_INVALID, "%s: not a regular file", name);
    for (;;) {
        char chunk[65536];
        ssize_t r = read(fd, chunk, sizeof chunk);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = err_set(e, -errno, "%s: %s", name, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        if (b->len - start + (size_t)r > max) {
            rc = err_set(e, ERR_INVALID, "%s: the %s is too large (limit %zu bytes)", name, what,
                         max);
            break;
        }
        buf_append(b, chunk, (size_t)r);
    }
    if (rc < 0) {
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
    }
    return rc;
}

int
buf_read_file(struct buf *b, const char *path, size_t max, const char *what, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0)
        return err_set(e, -errno, "%s: %s", path, strerror(errno));
    rc = buf_read_fd(b, fd, path, max, what, e);
    close(fd);
    return rc;
}
