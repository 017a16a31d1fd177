/* hashfiles.h: the hashFiles() function's work (doc/workflow-semantics.md §5.7): glob patterns
 * relative to a workspace, SHA-256 of each matching regular file, then SHA-256 over the
 * concatenated raw digests, as lower-case hex; "" when nothing matched. Blocking (reads files):
 * call from a CLI path or a worker, never from the event loop. */
#ifndef HASHFILES_H
#define HASHFILES_H

#include "runner/err.h"

#include <stdbool.h>
#include <stddef.h>

/* Limits (files hashed, directory depth walked) are HASHFILES_MAX_FILES and
 * HASHFILES_MAX_DEPTH in globmatch.h, shared with the agent's hash mode. */
#include "globmatch.h"

/* Patterns are @actions/glob style: one per argument, `*`, `?`, `[...]` within a path segment,
 * `**` for any number of segments, a leading `!` excludes (the last matching pattern wins), a
 * leading `#` is a comment. A first pattern `--follow-symbolic-links` follows symlinked
 * directories; any other `--` option is an error. Files are hashed in path byte order. Symlinks
 * leading outside the workspace are ignored. Returns 0 and a new string in *out. */
int hashfiles_compute(const char *workspace, const char *const *patterns, size_t n, char **out,
                      struct err *e);

/* True when path (relative, '/'-separated) matches pattern (relative, no leading '!'). */
bool hashfiles_match(const char *pattern, const char *path);

#endif
