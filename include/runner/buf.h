/* buf.h: a growable byte buffer, always NUL-terminated. */
#ifndef RUNNER_BUF_H
#define RUNNER_BUF_H

#include "runner/err.h"

#include <stddef.h>

struct buf {
    char *data; /* NULL until the first append; then NUL-terminated */
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the contents as a string ("" when empty) the caller frees; b is reset. */
char *buf_steal(struct buf *b);
/* Returns the contents as a string borrowed from b ("" when empty). */
const char *buf_str(const struct buf *b);
void buf_reset(struct buf *b);
/* Appends the contents of the regular file at path to b. Returns 0, or -errno, or
 * ERR_INVALID for something that is not a regular file or holds more than max bytes; e then
 * reads "path: ..." (what names the file in the size message, e.g. "workflow file"). */
int buf_read_file(struct buf *b, const char *path, size_t max, const char *what, struct err *e);
/* The same for a file already open as fd (not closed); name is the path for messages. */
int buf_read_fd(struct buf *b, int fd, const char *name, size_t max, const char *what,
                struct err *e);
void buf_free(struct buf *b);

#endif
