/* wswalk.c: the workspace walk and copy (see wswalk.h). */
#include "wswalk.h"

#include "fstree.h"
#include "scm-git.h"

#include "runner/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

    rc = scm_git_load(e);
    if (rc < 0)
        return rc;
    git_libgit2_init();
    if (git_repository_open_ext(&repo, root, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0)
        repo = NULL; /* not a repository: everything is copied */
    rc = walk(repo, root, "", 0, fn, arg, e);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return rc;
}

int
wswalk_copy(const char *root, const char *dst, struct err *e)
{
    return wswalk(root, fstree_copy_entry, (void *)(uintptr_t)dst, e);
}
