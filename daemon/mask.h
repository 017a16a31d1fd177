/* mask.h: secret masking of step output (workflow-semantics.md §11.3). Every byte of output
 * passes through a mask before a sink sees it. Streaming: a secret split across two chunks is
 * still hidden, because the tail that could start a secret is held back until the next chunk
 * or a flush. */
#ifndef MASK_H
#define MASK_H

#include "runner/buf.h"

#include <stddef.h>

#define MASK_TEXT "***"

struct mask;

/* Returns a new, empty mask; free with mask_free(). */
struct mask *mask_new(void);
void mask_free(struct mask *m);

/* Adds a value to hide. Empty values are ignored; a multi-line value also adds each of its
 * lines (without "\r"), so each line is hidden wherever it appears on its own. */
void mask_add(struct mask *m, const char *value);

/* Number of distinct values (for tests and diagnostics). */
size_t mask_count(const struct mask *m);

/* Masks p[0..n) and appends to out what is safe to emit; holds back a possible secret prefix. */
void mask_feed(struct mask *m, const char *p, size_t n, struct buf *out);

/* Appends what was held back, masked. */
void mask_flush(struct mask *m, struct buf *out);

/* mask_feed() + mask_flush() of a whole piece of text (such as a complete line). */
void mask_apply(struct mask *m, const char *p, size_t n, struct buf *out);

#endif
