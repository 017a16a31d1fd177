/* scm-action.c: action exports (scm_fetch_action): an action's ref resolved in the mirror and its
 * tree written without .git into CACHE/actions/<sanitised url>/<sha>/. */
#include "scm-int.h"

#include "runner/xalloc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The action cache's directory name for url: < > : " / \ | ? * and control characters become
 * '-' (as act names its cache), a leading '.' too; long names end in a hash instead. */
static char *
url_sanitise(const char *url)
{
    char *s = xstrdup(url);
    size_t n = strlen(s);

    for (char *p = s; *p; p++)
        if (strchr("<>:\"/\\|?*", *p) || (unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '-';
    if (s[0] == '.')
        s[0] = '-';
    if (n > 150) {
        char *h = scm_url_hash(url), *t = xasprintf("%.120s-%.16s", s, h);

        free(h);
        free(s);
        s = t;
    }
    return s;
}

#define SHORT_SHA_FMT                                                                              \
    "Unable to resolve action `%s@%s`, the provided ref `%s` is the shortened version of a "      \
    "commit SHA, which is not supported. Please use the full commit SHA `%s` instead"

/* The spec's refusal of a short sha. `uses` is approximated by url@ref; when that does not fit
 * a message, by owner/name@ref. */
static int
short_sha_error(const char *url, const char *ref, const char *full, struct err *e)
{
    char *name = NULL;
    int rc;

    if ((size_t)snprintf(NULL, 0, SHORT_SHA_FMT, url, ref, ref, full) >= sizeof e->msg &&
        (name = scm_repo_from_url(url)) != NULL)
        url = name;
    rc = err_set(e, ERR_INVALID, SHORT_SHA_FMT, url, ref, ref, full);
    free(name);
    return rc;
}

/* Fetches and resolves an action's ref (a full sha, refs/..., a tag, a branch) to a commit. */
static int
mirror_resolve_action(struct run *r, git_repository *repo, const char *ref, git_oid *out,
                      struct err *e)
{
    size_t n = strlen(ref);
    git_object *obj = NULL;
    git_oid prefix;
    char hex[GIT_OID_HEXSZ + 1], *full = NULL;
    int rc;

    r->corrupt = false;
    if (scm_is_hex(ref, 40, 40)) {
        git_oid_fromstr(out, ref);
        git_oid_tostr(hex, sizeof hex, out);
        if (scm_has_commit(repo, out))
            return scm_remote_probe(r, e); /* a commit never changes: no fetch */
        if ((rc = scm_mirror_update(r, repo, NULL, e)) < 0)
            return rc;
        return scm_mirror_want_commit(r, repo, out, hex, e);
    }
    full = strncmp(ref, "refs/", 5) == 0 ? xstrdup(ref) : xasprintf("refs/tags/%s", ref);
    rc = scm_ref_name_ok(full);
    free(full);
    if (!rc)
        return err_set(e, -EINVAL, "Unable to resolve action `%s@%.100s`: not a valid ref name",
                       r->url, ref);
    bool other = strncmp(ref, "refs/", 5) == 0 && strncmp(ref, "refs/heads/", 11) != 0 &&
                 strncmp(ref, "refs/tags/", 10) != 0;
    if ((rc = scm_mirror_update(r, repo, other ? ref : NULL, e)) < 0)
        return rc;
    if (strncmp(ref, "refs/", 5) == 0) {
        if (scm_ref_commit(repo, ref, out) == 0)
            return 0;
    } else {
        /* As git's rev-parse: a tag before a branch of the same name. */
        full = xasprintf("refs/tags/%s", ref);
        rc = scm_ref_commit(repo, full, out);
        free(full);
        if (rc == 0)
            return 0;
        full = xasprintf("refs/heads/%s", ref);
        rc = scm_ref_commit(repo, full, out);
        free(full);
        if (rc == 0)
            return 0;
    }
    git_error_clear();
    if (scm_is_hex(ref, 7, 39) && git_oid_fromstrn(&prefix, ref, n) == 0 &&
        git_object_lookup_prefix(&obj, repo, &prefix, n, GIT_OBJECT_COMMIT) == 0) {
        git_oid_tostr(hex, sizeof hex, git_object_id(obj));
        git_object_free(obj);
        return short_sha_error(r->url, ref, hex, e);
    }
    git_error_clear();
    return err_set(e, ERR_NOTFOUND, "Unable to resolve action `%s@%s`: no branch, tag or commit "
                   "`%s` in %s", r->url, ref, ref, r->url);
}

static bool
safe_name(const char *name)
{
    return *name && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           strcasecmp(name, ".git") != 0 && strchr(name, '/') == NULL;
}

/* Writes one blob at path: a file with its mode, or a symbolic link. */
static int
export_blob(struct run *r, git_repository *repo, const git_tree_entry *te, const char *path,
            git_filemode_t mode, struct err *e)
{
    git_blob *b = NULL;
    const char *data;
    size_t size, off = 0;
    int fd = -1, rc = 0;

    if (git_blob_lookup(&b, repo, git_tree_entry_id(te)) < 0)
        return scm_mirror_fail(r, e, path);
    data = git_blob_rawcontent(b);
    size = (size_t)git_blob_rawsize(b);
    if (mode == GIT_FILEMODE_LINK) {
        char *target = xstrndup(data, size);

        if (size == 0 || strlen(target) != size)
            rc = err_set(e, -EINVAL, "%s: a bad symbolic link", path);
        else if (symlink(target, path) < 0)
            rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
        free(target);
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
              mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644);
    if (fd < 0) {
        rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
        goto out;
    }
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = err_set(e, -(errno ? errno : EIO), "%s: %s", path, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
out:
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
    git_blob_free(b);
    return rc;
}

/* Writes tree's entries into dir (which exists): files with their modes, symbolic links as
 * links, submodules as empty directories. Names that could escape dir are refused. */
static int
export_tree(struct run *r, git_repository *repo, const git_tree *tree, const char *dir,
            struct err *e)
{
    size_t n = git_tree_entrycount(tree);
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        const git_tree_entry *te = git_tree_entry_byindex(tree, i);
        const char *name = git_tree_entry_name(te);
        git_filemode_t mode = git_tree_entry_filemode(te);
        git_tree *sub = NULL;
        char *path;

        if (!safe_name(name))
            return err_set(e, -EINVAL, "refusing the file name \"%s\" in %s", name, r->url);
        path = scm_path_join(dir, name);
        switch (mode) {
        case GIT_FILEMODE_TREE:
            if (mkdir(path, 0755) < 0)
                rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
            else if (git_tree_lookup(&sub, repo, git_tree_entry_id(te)) < 0)
                rc = scm_mirror_fail(r, e, path);
            else
                rc = export_tree(r, repo, sub, path, e);
            git_tree_free(sub);
            break;
        case GIT_FILEMODE_BLOB:
        case GIT_FILEMODE_BLOB_EXECUTABLE:
        case GIT_FILEMODE_LINK:
            rc = export_blob(r, repo, te, path, mode, e);
            break;
        case GIT_FILEMODE_COMMIT:
            if (mkdir(path, 0755) < 0)
                rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
            break;
        default:
            break;
        }
        free(path);
    }
    return rc;
}

/* Exports commit id's tree into dir (base/<sha>) through a temporary directory in base. */
static int
export_action(struct run *r, git_repository *repo, const git_oid *id, const char *base,
              const char *dir, struct err *e)
{
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    char hex[GIT_OID_HEXSZ + 1], *tmp = NULL;
    int rc;

    git_oid_tostr(hex, sizeof hex, id);
    if ((rc = scm_mkdir_p(base, 0755)) < 0)
        return err_set(e, rc, "%s: %s", base, strerror(-rc));
    tmp = xasprintf("%s/.tmp-%s-XXXXXX", base, hex);
    if (mkdtemp(tmp) == NULL) {
        rc = err_set(e, -errno, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    chmod(tmp, 0755);
    if (git_commit_lookup(&commit, repo, id) < 0 || git_commit_tree(&tree, commit) < 0) {
        rc = scm_mirror_fail(r, e, hex);
        goto out;
    }
    if ((rc = export_tree(r, repo, tree, tmp, e)) < 0)
        goto out;
    if (rename(tmp, dir) < 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            rc = err_set(e, -errno, "%s: %s", dir, strerror(errno));
        goto out; /* else another export won: use it */
    }
    scm_say(r, "Exported %s at %s into %s", r->url, hex, dir);
out:
    scm_rm_rf(tmp); /* gone after a successful rename */
    free(tmp);
    git_tree_free(tree);
    git_commit_free(commit);
    return rc;
}

int
scm_fetch_action(const char *cache_dir, const struct scm_remote *remote, const char *ref,
                 scm_progress_fn progress, void *arg, const volatile bool *cancel,
                 char **dir_out, char **sha_out, struct err *e)
{
    struct err le = {0};
    struct run r;
    struct mirror m = {.lock_fd = -1};
    git_oid id;
    char hex[GIT_OID_HEXSZ + 1], why[sizeof le.msg], *san = NULL, *base = NULL, *dir = NULL;
    int rc = 0;

    if (dir_out)
        *dir_out = NULL;
    if (sha_out)
        *sha_out = NULL;
    if (cache_dir == NULL || *cache_dir == '\0' || remote == NULL || remote->url == NULL ||
        *remote->url == '\0' || ref == NULL || *ref == '\0')
        return err_set(e, -EINVAL, "an action needs a URL, a ref and a cache directory");
    rc = scm_global_init(e);
    if (rc < 0)
        return rc;
    scm_run_init(&r, remote, remote->token, progress, arg, cancel);
    san = url_sanitise(r.url);
    base = xasprintf("%s/actions/%s", cache_dir, san);
    if (scm_is_hex(ref, 40, 40)) { /* an export of a full sha is final: no lock, no fetch */
        for (size_t i = 0; i < 40; i++)
            hex[i] = (char)((ref[i] >= 'A' && ref[i] <= 'F') ? ref[i] - 'A' + 'a' : ref[i]);
        hex[40] = '\0';
        dir = scm_path_join(base, hex);
        if (scm_is_dir(dir)) {
            if ((rc = scm_remote_probe(&r, &le)) == 0)
                scm_say(&r, "Using %s at %s from the action cache", r.url, hex);
            goto done;
        }
        free(dir);
        dir = NULL;
    }
    if ((rc = scm_mirror_lock(&r, cache_dir, &m, &le)) < 0)
        goto done;
    for (;;) {
        rc = scm_mirror_open(&r, &m, &le);
        if (rc == 0)
            rc = mirror_resolve_action(&r, m.repo, ref, &id, &le);
        if (rc == 0) {
            git_oid_tostr(hex, sizeof hex, &id);
            free(dir);
            dir = scm_path_join(base, hex);
            if (scm_is_dir(dir))
                scm_say(&r, "Using %s at %s from the action cache", r.url, hex);
            else
                rc = export_action(&r, m.repo, &id, base, dir, &le);
        }
        if (rc == 0 || !r.corrupt || m.rebuilt || scm_canceled(&r))
            break;
        snprintf(why, sizeof why, "%s", le.msg);
        if ((rc = scm_mirror_remove(&r, &m, why, &le)) < 0)
            break;
    }
done:
    scm_mirror_unlock(&m);
    if (rc < 0 && rc != -ECANCELED && scm_canceled(&r))
        rc = err_set(&le, -ECANCELED, "%s: canceled", r.url);
    if (rc == 0) {
        if (dir_out) {
            *dir_out = dir;
            dir = NULL;
        }
        if (sha_out)
            *sha_out = xstrdup(hex);
    } else {
        scm_err_scrub(&le, r.token);
        if (e)
            *e = le;
    }
    free(dir);
    free(base);
    free(san);
    scm_run_free(&r);
    return rc;
}
