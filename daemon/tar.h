/* tar.h: builds a ustar archive in memory (files and directories), for uploads into containers.
 * Names longer than the ustar fields use a PAX extended header ("path"). */
#ifndef RUNNER_TAR_H
#define RUNNER_TAR_H

#include <stddef.h>

#include "runner/buf.h"
#include "runner/err.h"

struct tar {
    struct buf out;
    long long mtime; /* applied to every entry; default 0 */
    int uid, gid;    /* default 0 */
    int finished;
};

/* Initializes an empty archive; release with tar_free(). */
void tar_init(struct tar *t);
/* Adds a regular file; path is relative ("dir/f"), mode e.g. 0755. Returns 0 or -EINVAL. */
int tar_add_file(struct tar *t, const char *path, unsigned mode, const void *data, size_t len,
                 struct err *e);
/* Adds a directory entry (a trailing '/' is added). */
int tar_add_dir(struct tar *t, const char *path, unsigned mode, struct err *e);
/* Adds a symbolic link path -> target (a PAX linkpath when target is over 100 bytes). */
int tar_add_symlink(struct tar *t, const char *path, const char *target, struct err *e);
/* Appends the two zero blocks; the archive is then t->out.data / t->out.len (still owned by t). */
void tar_finish(struct tar *t);
void tar_free(struct tar *t);

#endif
