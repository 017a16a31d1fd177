/* wswalk.h: walking a repository for the workspace copy: every directory and regular file
 * below root, except what the repository's .gitignore rules ignore (act copies the same way);
 * .git itself is kept. Symlinks and special files are reported as such. Blocking: workers only. */
#ifndef WSWALK_H
#define WSWALK_H

#include "runner/err.h"

#include <sys/stat.h>

#define WSWALK_MAX_DEPTH 64

/* Called for each entry, parents first. rel is relative to root ('/'-separated), abs the full
 * path. Return 0 to go on, or a negative code (with e set) to stop the walk with it. */
typedef int (*wswalk_fn)(const char *rel, const char *abs, const struct stat *st, void *arg,
                         struct err *e);

int wswalk(const char *root, wswalk_fn fn, void *arg, struct err *e);

/* Copies root's tree (as wswalk() sees it) into dst, which must exist: directories, regular
 * files with their modes, and symlinks as symlinks. */
int wswalk_copy(const char *root, const char *dst, struct err *e);

#endif
