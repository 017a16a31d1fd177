/* mask.h: secret masking of step output (doc/workflow-semantics.md §11.3). Every byte of output
 * passes through a mask before a sink sees it. Each value found is replaced by MASK_TEXT: the
 * leftmost one first, the longest of those starting there. Streaming: a secret split across
 * chunks is still hidden, because the tail that could still be part of one is held back until
 * the next chunk or a flush; how the stream is cut never changes the result. The cost per byte
 * does not grow with the number of values; the matcher takes about 40 bytes of memory per
 * byte of the values. */
#ifndef MASK_H
#define MASK_H

#include "runner/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define MASK_TEXT "***"

struct mask;

/* Returns a new, empty mask; free with mask_free(). */
struct mask *mask_new(void);
void mask_free(struct mask *m);

/* Adds a value to hide. Empty values are ignored; a multi-line value also adds each of its
 * lines (without "\r"), so each line is hidden wherever it appears on its own. */
void mask_add(struct mask *m, const char *value);

/* What a job may add with ::add-mask:: (mask_add_job()): the values it adds, and their bytes.
 * Each byte of a value costs about 40 bytes of matcher, and each value added between two
 * lines of output a rebuild of the matcher, so a step printing millions of ::add-mask:: lines
 * would otherwise take memory and time without bound. The values a job starts with (its
 * secrets and tokens, mask_add()) do not count. */
#define MASK_JOB_MAX_VALUES 2048
#define MASK_JOB_MAX_BYTES (128 * 1024)

/* Adds a value a job asked to hide (::add-mask::), within the caps above. A value already
 * there costs nothing. Returns true when the value is hidden from now on; false when it would
 * pass a cap: it is not added, and since a value that is not masked would be shown in clear,
 * the mask then hides all text (mask_hides_all()) for the rest of its life. */
bool mask_add_job(struct mask *m, const char *value);

/* Makes the mask hide all text from now on: every non-empty text masked becomes MASK_TEXT and
 * mask_hits() is true for it (a resumed job whose mask had passed a cap). */
void mask_hide_all(struct mask *m);

/* True once the mask hides all text (a cap was passed). */
bool mask_hides_all(const struct mask *m);

/* Bytes of memory the mask holds (its matcher, built or not, and what a stream holds back);
 * for tests and diagnostics. */
size_t mask_size(const struct mask *m);

/* Adds every string member of obj (an object such as the secrets context; NULL: none). */
void mask_add_values(struct mask *m, json_t *obj);

/* The one way a job's mask is built, for every front end (runnerd's task, runnerctl exec, the
 * plan's output): every string member of secrets (NULL: none) and each of the NULL-terminated
 * tokens (NULL: none), e.g. a task's token and runtime token. */
struct mask *mask_for_job(json_t *secrets, const char *const *tokens);

/* Number of distinct values (for tests and diagnostics). */
size_t mask_count(const struct mask *m);

/* Masks p[0..n) and appends to out what is safe to emit; holds back a possible secret prefix. */
void mask_feed(struct mask *m, const char *p, size_t n, struct buf *out);

/* Appends what was held back, masked. */
void mask_flush(struct mask *m, struct buf *out);

/* mask_feed() + mask_flush() of a whole piece of text (such as a complete line). */
void mask_apply(struct mask *m, const char *p, size_t n, struct buf *out);

/* The following never touch what mask_feed() holds back, so they may be used on a mask that
 * is in the middle of a stream, and on a const one. Like every use after mask_add(), they may
 * (re)build the matcher inside the mask, so a mask belongs to one thread at a time
 * (doc/style.md §4). */

/* Length of the longest value (0: none). A text cut into pieces must keep this many bytes
 * minus one beyond a cut in view to know whether a value spans it (mask_cut()). */
size_t mask_maxlen(const struct mask *m);

/* True when p[0..n) contains a value, i.e. masking would change it. */
bool mask_hits(const struct mask *m, const char *p, size_t n);

/* Returns s masked as a new string (NULL stays NULL). */
char *mask_str(const struct mask *m, const char *s);

/* Returns s masked, then with control characters (and backslash) escaped as \xNN, as a new
 * string: a name or a message fit for one line of a terminal (NULL: ""). */
char *mask_shown(const struct mask *m, const char *s);

/* Returns a deep copy of v in which every string and every object key is masked. */
json_t *mask_json(const struct mask *m, json_t *v);

/* Where to cut p[0..n) so that its first piece is at most limit bytes (when n > limit) and
 * no value is split between the pieces: the greatest such cut at or before limit, the end of
 * a value longer than limit that starts the text, or n when n <= limit. Masking the pieces
 * one by one then gives what masking the whole would. p must hold at least
 * limit + mask_maxlen() - 1 bytes when there are more to come. */
size_t mask_cut(const struct mask *m, const char *p, size_t n, size_t limit);

#endif
