/* fstree.c: whole directory trees (see fstree.h). */
#include "fstree.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

static int
walk_dir(const char *abs, const char *rel, int depth, fstree_fn fn, void *arg, struct err *e)
{
    DIR *d;
    struct dirent *de;
    int rc = 0;

    if (depth > FSTREE_MAX_DEPTH)
        return err_set(e, -ELOOP, "%s: directories nested deeper than %d", abs,
                       FSTREE_MAX_DEPTH);
    d = opendir(abs);
    if (d == NULL)
        return err_set(e, -errno, "%s: cannot open the directory: %s", abs, strerror(errno));
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *a = xasprintf("%s/%s", abs, de->d_name);
        char *r = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        if (lstat(a, &st) < 0)
            rc = err_set(e, -errno, "%s: %s", a, strerror(errno));
        if (rc == 0)
            rc = fn(r, a, &st, arg, e);
        if (rc == 0 && S_ISDIR(st.st_mode))
            rc = walk_dir(a, r, depth + 1, fn, arg, e);
        free(a);
        free(r);
    }
    if (rc == 0 && errno != 0)
        rc = err_set(e, -errno, "%s: cannot read the directory: %s", abs, strerror(errno));
    closedir(d);
    return rc;
}

int
fstree_walk(const char *root, fstree_fn fn, void *arg, struct err *e)
{
    return walk_dir(root, "", 0, fn, arg, e);
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

static int
tar_entry(const char *rel, const char *abs, const struct stat *st, void *arg, struct err *e)
{
    struct tar_ctx *c = arg;
    char *path = xasprintf("%s/%s", c->prefix, rel);
    int rc = 0;

    if (S_ISDIR(st->st_mode)) {
        rc = tar_add_dir(c->t, path, st->st_mode & 07777, e);
    } else if (S_ISREG(st->st_mode)) {
        struct buf b = BUF_INIT;
        if ((unsigned long long)st->st_size > c->cap - c->t->out.len) {
            free(path);
            return err_set(e, -EFBIG, "%s: over %zu MiB to upload", c->prefix, c->cap >> 20);
        }
        rc = buf_read_file(&b, abs, c->cap, "file to upload", e);
        if (rc == 0)
            rc = tar_add_file(c->t, path, st->st_mode & 07777, b.data, b.len, e);
        buf_free(&b);
    } else if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        rc = read_link(abs, target, e);
        if (rc == 0)
            rc = tar_add_symlink(c->t, path, target, e);
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

    return fstree_walk(root, tar_entry, &c, e);
}
