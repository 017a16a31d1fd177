/* fstree.h: whole directory trees on the host (no ignore rules, symlinks never followed):
 * walking, copying, removing, and packing into a tar for an upload into a container. Blocking:
 * workers and CLI paths only. */
#ifndef FSTREE_H
#define FSTREE_H

#include "runner/buf.h"
#include "runner/err.h"
#include "tar.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#define FSTREE_MAX_DEPTH 128

/* An entry of a walk below root, parents first; rel is '/'-separated and relative to root,
 * abs the full path, st from lstat(). Return 0 to go on or <0 (with e set) to stop. */
typedef int (*fstree_fn)(const char *rel, const char *abs, const struct stat *st, void *arg,
                         struct err *e);

/* Copies root's entries into dst (created when missing): directories, regular files with
 * their modes, symlinks as symlinks; other kinds are skipped. */
int fstree_copy(const char *root, const char *dst, struct err *e);

/* The fstree_fn that fstree_copy() walks with; arg is the destination directory. */
int fstree_copy_entry(const char *rel, const char *abs, const struct stat *st, void *arg,
                      struct err *e);

/* Removes path and everything below it; a missing path is not an error. */
int fstree_remove(const char *path, struct err *e);

/* Opens rel (relative, '/'-separated) beneath the directory root with open(2)'s flags (O_CLOEXEC
 * is added). Symlinks below root are followed only while they stay below it: one with an
 * absolute target or a ".." past root is refused (without openat2, every symlink is). root
 * itself is followed. Returns the fd, or -errno with e ("a symbolic link in REL leads out of
 * ROOT" is -EXDEV; a link that loops, or any link without openat2, -ELOOP; a missing file
 * -ENOENT or -ENOTDIR). */
int fstree_open_beneath(const char *root, const char *rel, int flags, struct err *e);

/* Set by tests: fstree_open_beneath() takes the path of kernels without openat2. */
extern bool fstree_no_openat2;

/* Appends the regular file rel beneath root (as fstree_open_beneath() resolves it) to b: at
 * most max bytes, else ERR_INVALID "ROOT/REL: the WHAT is too large (limit N bytes)". */
int fstree_read_beneath(const char *root, const char *rel, struct buf *b, size_t max,
                        const char *what, struct err *e);

/* Adds root's entries to t under prefix (relative, e.g. "." or "sub/dir"; no entries are
 * added for the prefix's own directories). Fails with -EFBIG once the archive passes cap. */
int fstree_tar(const char *root, const char *prefix, struct tar *t, size_t cap, struct err *e);

/* fstree_tar() of the directory rel beneath root (found as fstree_open_beneath() finds it):
 * nothing outside root is read, whatever links lie on the way. */
int fstree_tar_beneath(const char *root, const char *rel, const char *prefix, struct tar *t,
                       size_t cap, struct err *e);

#endif
