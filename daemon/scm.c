/* scm.c: libgit2 wrapper (local repository facts for now). */
#include "scm.h"

#include "runner/xalloc.h"

#include <git2.h>
#include <stdlib.h>
#include <string.h>

char *
scm_repo_from_url(const char *url)
{
    const char *p, *end, *slash;
    size_t len;

    if (url == NULL || *url == '\0')
        return NULL;
    p = strstr(url, "://");
    if (p) {
        p = strchr(p + 3, '/'); /* past the host */
        if (p == NULL)
            return NULL;
        p++;
    } else if ((p = strchr(url, ':')) != NULL) {
        p++; /* scp-like git@host:owner/name */
    } else {
        return NULL;
    }
    len = strlen(p);
    while (len && p[len - 1] == '/')
        len--;
    if (len > 4 && strncmp(p + len - 4, ".git", 4) == 0)
        len -= 4;
    end = p + len;
    /* Keep the last two path segments: owner/name. */
    slash = NULL;
    for (const char *q = end; q > p; q--)
        if (q[-1] == '/') {
            if (slash == NULL) {
                slash = q - 1;
            } else {
                p = q;
                break;
            }
        }
    if (slash == NULL || slash == p || slash + 1 >= end)
        return NULL;
    return xstrndup(p, (size_t)(end - p));
}

static int
git_fail(struct err *e, const char *what)
{
    const git_error *ge = git_error_last();

    return err_set(e, -EIO, "%s: %s", what, ge && ge->message ? ge->message : "unknown error");
}

int
scm_local_info(const char *dir, struct scm_info *info, struct err *e)
{
    git_repository *repo = NULL;
    git_reference *head = NULL;
    git_remote *origin = NULL;
    int rc = 0, grc;

    memset(info, 0, sizeof *info);
    git_libgit2_init();
    grc = git_repository_open_ext(&repo, dir, 0, NULL);
    if (grc == GIT_ENOTFOUND) {
        rc = err_set(e, ERR_NOTFOUND, "%s: not in a git repository", dir);
        goto out;
    } else if (grc < 0) {
        rc = git_fail(e, dir);
        goto out;
    }
    grc = git_repository_head(&head, repo);
    if (grc == 0) {
        const git_oid *oid = git_reference_target(head);
        char hex[GIT_OID_HEXSZ + 1];

        if (oid) {
            git_oid_tostr(hex, sizeof hex, oid);
            info->sha = xstrdup(hex);
        }
        if (git_reference_is_branch(head))
            info->ref = xstrdup(git_reference_name(head));
    } else if (grc == GIT_EUNBORNBRANCH) {
        git_reference *sym = NULL;
        if (git_reference_lookup(&sym, repo, "HEAD") == 0 && git_reference_symbolic_target(sym))
            info->ref = xstrdup(git_reference_symbolic_target(sym));
        git_reference_free(sym);
    }
    if (git_remote_lookup(&origin, repo, "origin") == 0)
        info->repository = scm_repo_from_url(git_remote_url(origin));
out:
    git_remote_free(origin);
    git_reference_free(head);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return rc;
}

void
scm_info_free(struct scm_info *info)
{
    if (info == NULL)
        return;
    free(info->sha);
    free(info->ref);
    free(info->repository);
    memset(info, 0, sizeof *info);
}
