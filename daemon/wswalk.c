/* wswalk.c: the workspace walk and copy (see wswalk.h). */
#include "wswalk.h"

#include "runner/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
walk(git_repository *repo, const char *abs, const char *rel, int depth, wswalk_fn fn, void *arg,
     struct err *e)
{
    DIR *dir;
    struct dirent *de;
    int rc = 0;

    if (depth > WSWALK_MAX_DEPTH)
        return err_set(e, -ELOOP, "%s: directories nested deeper than %d", abs, WSWALK_MAX_DEPTH);
    dir = opendir(abs);
    if (dir == NULL)
        return err_set(e, -errno, "%s: %s", abs, strerror(errno));
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        struct stat st;
        int ignored = 0;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *ca = xasprintf("%s/%s", abs, de->d_name);
        char *cr = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        if (repo && strcmp(cr, ".git") != 0 && git_ignore_path_is_ignored(&ignored, repo, cr) < 0)
            ignored = 0;
        if (!ignored && lstat(ca, &st) == 0) {
            rc = fn(cr, ca, &st, arg, e);
            if (rc == 0 && S_ISDIR(st.st_mode))
                rc = walk(repo, ca, cr, depth + 1, fn, arg, e);
        }
        free(ca);
        free(cr);
    }
    closedir(dir);
    return rc;
}

int
wswalk(const char *root, wswalk_fn fn, void *arg, struct err *e)
{
    git_repository *repo = NULL;
    int rc;

    git_libgit2_init();
    if (git_repository_open_ext(&repo, root, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0)
        repo = NULL; /* not a repository: everything is copied */
    rc = walk(repo, root, "", 0, fn, arg, e);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return rc;
}

/* Copies one regular file. */
static int
copy_file(const char *from, const char *to, mode_t mode, struct err *e)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
    ssize_t r;

    if (in < 0)
        return err_set(e, -errno, "%s: %s", from, strerror(errno));
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
    if (out < 0) {
        rc = err_set(e, -errno, "%s: %s", to, strerror(errno));
        goto out;
    }
    while ((r = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0) {
                rc = err_set(e, -errno, "%s: %s", to, strerror(errno));
                goto out;
            }
            off += w;
        }
    }
    if (r < 0)
        rc = err_set(e, -errno, "%s: %s", from, strerror(errno));
out:
    close(in);
    if (out >= 0)
        close(out);
    return rc;
}

static int
copy_entry(const char *rel, const char *abs, const struct stat *st, void *arg, struct err *e)
{
    const char *dst = arg;
    char *to = xasprintf("%s/%s", dst, rel);
    int rc = 0;

    if (S_ISDIR(st->st_mode)) {
        if (mkdir(to, (st->st_mode & 07777) | 0700) != 0 && errno != EEXIST)
            rc = err_set(e, -errno, "%s: %s", to, strerror(errno));
    } else if (S_ISREG(st->st_mode)) {
        rc = copy_file(abs, to, st->st_mode, e);
    } else if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(abs, target, sizeof target - 1);
        if (n >= 0) {
            target[n] = '\0';
            if (symlink(target, to) != 0 && errno != EEXIST)
                rc = err_set(e, -errno, "%s: %s", to, strerror(errno));
        }
    }
    free(to);
    return rc;
}

int
wswalk_copy(const char *root, const char *dst, struct err *e)
{
    return wswalk(root, copy_entry, (void *)(uintptr_t)dst, e);
}
