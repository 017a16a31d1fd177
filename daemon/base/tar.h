/* tar.h: builds a ustar archive in memory (files and directories), for uploads into containers.
 * Names longer than the ustar fields use a PAX extended header ("path"). Also reads archives
 * in memory (ustar, PAX and GNU long names), such as the engine's archive GET replies. */
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

/* ---- reading ---- */

/* One entry of an archive being read; borrowed from the archive and the reader until the next
 * tar_next(). */
struct tar_entry {
    const char *path; /* full name (ustar prefix, PAX path or GNU long name applied) without a
                         leading "./" or a trailing '/'; the archive's root ("./") is "" */
    const char *link; /* symlink or hard link target; "" for other types */
    char type;        /* '0' regular file (also for '\0' and '7'), '1' hard link, '2' symlink,
                         '5' directory, others as stored */
    unsigned mode;    /* permission bits */
    const char *data; /* regular files: the contents (len bytes) */
    size_t len;
};

struct tar_reader {
    const char *p;
    size_t len, off;
    struct buf path, link; /* names from PAX or GNU headers, and the current entry's */
};

/* Reads the archive at p (borrowed, must outlive r); release with tar_reader_free(). */
void tar_reader_init(struct tar_reader *r, const void *p, size_t len);
/* Returns 1 and the next entry in *ent, 0 at the end of the archive, or ERR_PROTO with e for a
 * malformed one (bad checksum, truncated entry). PAX global headers are skipped. */
int tar_next(struct tar_reader *r, struct tar_entry *ent, struct err *e);
void tar_reader_free(struct tar_reader *r);

#endif
