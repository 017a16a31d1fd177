/* globmatch.h: the hashFiles() pattern rules (doc/workflow-semantics.md §5.7), shared by the host
 * (daemon/hashfiles.c) and the static in-container agent (agent/runner-agent.c, --hash-files).
 * libc only; allocates nothing except for path or pattern segments longer than
 * GLOBMATCH_SEG_INLINE bytes (plain malloc; failure is reported, never fatal).
 *
 * Pattern: relative, '/'-separated; `*`, `?`, `[...]` within one segment (fnmatch(3) with no
 * flags: `*` also matches a leading '.', a backslash quotes the next character), `**` as a whole
 * segment for zero or more segments, leading "./" ignored, and a pattern that names a directory
 * also matches everything below it. */
#ifndef GLOBMATCH_H
#define GLOBMATCH_H

#include <stddef.h>

/* Limits of a hashFiles() walk: regular files seen and directory depth. Past them it fails. */
#define HASHFILES_MAX_FILES 100000
#define HASHFILES_MAX_DEPTH 64

/* Segments up to this long are matched from stack buffers. */
#define GLOBMATCH_SEG_INLINE 256

/* 1 when path matches pattern (one pattern, no leading '!'), 0 when not, -ENOMEM when a long
 * segment could not be copied. */
int globmatch_match(const char *pattern, const char *path);

/* The include decision for one file over hashFiles() arguments patterns[0..n) (options already
 * removed): each argument is one or more '\n'-separated lines; each line is trimmed of blanks
 * (and a trailing '\r'), empty lines and lines starting with '#' are skipped, each leading '!'
 * toggles exclusion, and the last line whose pattern matches decides.
 * 1 include, 0 exclude, -ENOMEM as above. */
int globmatch_select(const char *const *patterns, size_t n, const char *path);

#endif
