/* fstree.c: whole directory trees (see fstree.h). */
#include "fstree.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* lstat()ed symlink abs: its target into target[PATH_MAX]. */
static int
read_link(const char *abs, char *target, struct err *e)
{
    ssize_t n = readlink(abs, target, PATH_MAX - 1);

    if (n < 0)
        return err_set(e, -errno, "%s: %s", abs, strerror(errno));
    target[n] = '\0';
    return 0;
}

/* The walk's callback with the entry's directory (dfd) and its name in it, so that files are
 * opened where the walk found them and never through a path a symlink could redirect. */
typedef int (*walk_at_fn)(int dfd, const char *name, const char *rel, const char *abs,
                          const struct stat *st, void *arg, struct err *e);

/* Walks the directory open as dfd (taken over and closed): entries by fstatat() without
 * following, subdirectories opened with O_NOFOLLOW beneath their parent. */
static int
walk_dir(int dfd, const char *abs, const char *rel, int depth, walk_at_fn fn, void *arg,
         struct err *e)
{
    DIR *d;
    struct dirent *de;
    int rc = 0;

    if (depth > FSTREE_MAX_DEPTH) {
        close(dfd);
        return err_set(e, -ELOOP, "%s: directories nested deeper than %d", abs,
                       FSTREE_MAX_DEPTH);
    }
    d = fdopendir(dfd);
    if (d == NULL) {
        rc = err_set(e, -errno, "%s: cannot open the directory: %s", abs, strerror(errno));
        close(dfd);
        return rc;
    }
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *a = xasprintf("%s/%s", abs, de->d_name);
        char *r = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = err_set(e, -errno, "%s: %s", a, strerror(errno));
        if (rc == 0)
            rc = fn(dirfd(d), de->d_name, r, a, &st, arg, e);
        if (rc == 0 && S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = sub < 0 ? err_set(e, -errno, "%s: cannot open the directory: %s", a,
                                   strerror(errno))
                         : walk_dir(sub, a, r, depth + 1, fn, arg, e);
        }
        free(a);
        free(r);
    }
    if (rc == 0 && errno != 0)
        rc = err_set(e, -errno, "%s: cannot read the directory: %s", abs, strerror(errno));
    closedir(d);
    return rc;
}

/* fstree_walk()'s callback, called from the walk that knows directories. */
struct walk_path {
    fstree_fn fn;
    void *arg;
};

static int
walk_path_entry(int dfd, const char *name, const char *rel, const char *abs,
                const struct stat *st, void *arg, struct err *e)
{
    struct walk_path *w = arg;

    (void)dfd;
    (void)name;
    return w->fn(rel, abs, st, w->arg, e);
}

/* The directory root (followed when it is itself a link: the caller named it). */
static int
open_root(const char *root, struct err *e)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return err_set(e, -errno, "%s: cannot open the directory: %s", root, strerror(errno));
    return fd;
}

/* Calls fn for each entry below root, parents first (symlinks are not followed). */
static int
fstree_walk(const char *root, fstree_fn fn, void *arg, struct err *e)
{
    struct walk_path w = {.fn = fn, .arg = arg};
    int fd = open_root(root, e);

    return fd < 0 ? fd : walk_dir(fd, root, "", 0, walk_path_entry, &w, e);
}

/* ---- beneath a directory ---- */

bool fstree_no_openat2;

/* Without openat2: rel one component at a time from dfd, every symlink refused (-ELOOP) and
 * ".." too (-EXDEV). */
static int
open_components(int dfd, const char *rel, int flags)
{
    char *copy = xstrdup(rel), *save = NULL, *c, *next;
    int cur = dup(dfd), rc = 0;

    if (cur < 0) {
        free(copy);
        return -errno;
    }
    for (c = strtok_r(copy, "/", &save); c != NULL; c = next) {
        struct stat st;
        next = strtok_r(NULL, "/", &save);
        if (strcmp(c, ".") == 0 && next != NULL)
            continue;
        if (strcmp(c, "..") == 0) {
            rc = -EXDEV;
            break;
        }
        if (fstatat(cur, c, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = -errno;
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            rc = -ELOOP;
            break;
        }
        int fd = openat(cur, c, next ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
                                     : flags | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            break;
        }
        close(cur);
        cur = fd;
        if (next == NULL)
            break;
    }
    free(copy);
    if (rc < 0) {
        close(cur);
        return rc;
    }
    return cur;
}

/* rel beneath dfd: openat2's RESOLVE_BENEATH follows symlinks only while they stay below dfd
 * (an absolute target or a ".." past it is EXDEV); kernels without it (or a seccomp filter
 * that hides it) get open_components(). Returns the fd or -errno. */
static int
open_beneath(int dfd, const char *rel, int flags)
{
#ifdef SYS_openat2
    if (fstree_no_openat2)
        return open_components(dfd, rel, flags);
    struct open_how how = {
        .flags = (unsigned long long)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dfd, rel, &how, sizeof how);

    if (fd >= 0)
        return (int)fd;
    if (errno != ENOSYS && errno != EPERM)
        return errno == EAGAIN ? open_components(dfd, rel, flags) : -errno;
#endif
    return open_components(dfd, rel, flags);
}

int
fstree_open_beneath(const char *root, const char *rel, int flags, struct err *e)
{
    int dfd = open_root(root, e), fd;

    if (dfd < 0)
        return dfd;
    fd = open_beneath(dfd, *rel ? rel : ".", flags);
    close(dfd);
    if (fd == -EXDEV)
        return err_set(e, -EXDEV, "a symbolic link in %s leads out of %s", rel, root);
    if (fd == -ELOOP)
        return err_set(e, -ELOOP, "a symbolic link in %s cannot be followed (a loop, or a "
                       "kernel without openat2)", rel);
    if (fd < 0)
        return err_set(e, fd, "%s/%s: %s", root, rel, strerror(-fd));
    return fd;
}

int
fstree_read_beneath(const char *root, const char *rel, struct buf *b, size_t max,
                    const char *what, struct err *e)
{
    int fd = fstree_open_beneath(root, rel, O_RDONLY, e), rc;

    if (fd < 0)
        return fd;
    char *name = xasprintf("%s/%s", root, rel);
    rc = buf_read_fd(b, fd, name, max, what, e);
    free(name);
    close(fd);
    return rc;
}

static int
copy_file(const char *src, const char *dst, mode_t mode, struct err *e)
{
    char b[65536];
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
    ssize_t n;

    if (in < 0)
        return err_set(e, -errno, "%s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
    if (out < 0) {
        rc = err_set(e, -errno, "%s: %s", dst, strerror(errno));
        goto out;
    }
    while ((n = read(in, b, sizeof b)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = err_set(e, -errno, "%s: %s", src, strerror(errno));
            goto out;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, b + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                rc = err_set(e, -errno, "%s: %s", dst, strerror(errno));
                goto out;
            }
            off += w;
        }
    }
    if (fchmod(out, mode & 07777) < 0)
        rc = err_set(e, -errno, "%s: %s", dst, strerror(errno));
out:
    if (out >= 0 && close(out) < 0 && rc == 0)
        rc = err_set(e, -errno, "%s: %s", dst, strerror(errno));
    close(in);
    return rc;
}

int
fstree_copy_entry(const char *rel, const char *abs, const struct stat *st, void *arg,
                  struct err *e)
{
    const char *dst = arg;
    char *to = xasprintf("%s/%s", dst, rel);
    int rc = 0;

    if (S_ISDIR(st->st_mode)) {
        if (mkdir(to, (st->st_mode & 07777) | 0700) < 0 && errno != EEXIST)
            rc = err_set(e, -errno, "%s: %s", to, strerror(errno));
    } else if (S_ISREG(st->st_mode)) {
        rc = copy_file(abs, to, st->st_mode, e);
    } else if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        rc = read_link(abs, target, e);
        if (rc == 0) {
            unlink(to);
            if (symlink(target, to) < 0)
                rc = err_set(e, -errno, "%s: %s", to, strerror(errno));
        }
    }
    free(to);
    return rc;
}

int
fstree_copy(const char *root, const char *dst, struct err *e)
{
    if (mkdir(dst, 0755) < 0 && errno != EEXIST)
        return err_set(e, -errno, "%s: %s", dst, strerror(errno));
    return fstree_walk(root, fstree_copy_entry, (void *)(uintptr_t)dst, e);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int
fstree_remove(const char *path, struct err *e)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : err_set(e, -errno, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return unlink(path) < 0 ? err_set(e, -errno, "%s: %s", path, strerror(errno)) : 0;
    if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return err_set(e, -errno, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

struct tar_ctx {
    struct tar *t;
    const char *prefix;
    size_t cap;
};

/* One entry of the packed tree, read through its directory: a file swapped for a symlink
 * after the walk saw it is refused (O_NOFOLLOW), never followed. */
static int
tar_entry(int dfd, const char *name, const char *rel, const char *abs, const struct stat *st,
          void *arg, struct err *e)
{
    struct tar_ctx *c = arg;
    char *path = xasprintf("%s/%s", c->prefix, rel);
    int rc = 0;

    /* Each entry keeps its file's mtime (a checkout's is its checkout time): zip and wheel
     * builds refuse the 1970 that an archive's default 0 gives. */
    c->t->mtime = st->st_mtime > 0 ? (long long)st->st_mtime : (long long)time(NULL);
    if (S_ISDIR(st->st_mode)) {
        rc = tar_add_dir(c->t, path, st->st_mode & 07777, e);
    } else if (S_ISREG(st->st_mode)) {
        struct buf b = BUF_INIT;
        if ((unsigned long long)st->st_size > c->cap - c->t->out.len) {
            free(path);
            return err_set(e, -EFBIG, "%s: over %zu MiB to upload", c->prefix, c->cap >> 20);
        }
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            rc = err_set(e, -errno, "%s: %s", abs, strerror(errno));
        if (rc == 0)
            rc = buf_read_fd(&b, fd, abs, c->cap, "file to upload", e);
        if (fd >= 0)
            close(fd);
        if (rc == 0)
            rc = tar_add_file(c->t, path, st->st_mode & 07777, b.data, b.len, e);
        buf_free(&b);
    } else if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(dfd, name, target, sizeof target - 1);
        if (n < 0) {
            rc = err_set(e, -errno, "%s: %s", abs, strerror(errno));
        } else {
            target[n] = '\0';
            rc = tar_add_symlink(c->t, path, target, e);
        }
    }
    if (rc == 0 && c->t->out.len > c->cap)
        rc = err_set(e, -EFBIG, "%s: over %zu MiB to upload", c->prefix, c->cap >> 20);
    free(path);
    return rc;
}

int
fstree_tar(const char *root, const char *prefix, struct tar *t, size_t cap, struct err *e)
{
    struct tar_ctx c = {.t = t, .prefix = prefix, .cap = cap};
    int fd = open_root(root, e);

    return fd < 0 ? fd : walk_dir(fd, root, "", 0, tar_entry, &c, e);
}

int
fstree_tar_beneath(const char *root, const char *rel, const char *prefix, struct tar *t,
                   size_t cap, struct err *e)
{
    struct tar_ctx c = {.t = t, .prefix = prefix, .cap = cap};
    int fd = fstree_open_beneath(root, rel, O_RDONLY | O_DIRECTORY, e);
    char *abs = xasprintf("%s/%s", root, rel);
    int rc = fd < 0 ? fd : walk_dir(fd, abs, "", 0, tar_entry, &c, e);

    free(abs);
    return rc;
}
