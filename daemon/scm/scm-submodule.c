/* scm-submodule.c: a checkout's submodules: .gitmodules read, each URL resolved against the
 * superproject's, each checked out through the same mirror cache at its gitlink's commit. */
#include "scm-int.h"

#include "runner/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define SCM_MAX_SUBMODULE_DEPTH 8

/* One entry of .gitmodules. */
struct subm {
    char *name, *path, *url;
};

static void
subms_free(struct subm *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].path);
        free(v[i].url);
    }
    free(v);
}

/* Reads dest/.gitmodules (none: no entries). libgit2's submodule API is not used: in 1.5 its
 * config regex lookups leak pcre2 match data. */
static int
read_gitmodules(const char *dest, struct subm **out, size_t *nout, struct err *e)
{
    char *file = scm_path_join(dest, ".gitmodules");
    git_config *cfg = NULL;
    git_config_iterator *it = NULL;
    git_config_entry *ent;
    struct subm *v = NULL;
    size_t n = 0;
    int rc = 0, grc;

    *out = NULL;
    *nout = 0;
    if (access(file, F_OK) != 0)
        goto out;
    if (git_config_open_ondisk(&cfg, file) < 0 || git_config_iterator_new(&it, cfg) < 0) {
        rc = err_set(e, -EIO, "%s: %s", file, scm_git_msg());
        goto out;
    }
    while ((grc = git_config_next(&ent, it)) == 0) {
        const char *dot = strrchr(ent->name, '.');
        size_t i, len;

        if (strncmp(ent->name, "submodule.", 10) != 0 || dot == NULL ||
            dot <= ent->name + 10 || ent->value == NULL)
            continue;
        len = (size_t)(dot - (ent->name + 10));
        for (i = 0; i < n; i++)
            if (strlen(v[i].name) == len && strncmp(v[i].name, ent->name + 10, len) == 0)
                break;
        if (i == n) {
            v = xreallocarray(v, n + 1, sizeof *v);
            memset(&v[n], 0, sizeof *v);
            v[n++].name = xstrndup(ent->name + 10, len);
        }
        if (strcmp(dot + 1, "path") == 0) {
            free(v[i].path);
            v[i].path = xstrdup(ent->value);
        } else if (strcmp(dot + 1, "url") == 0) {
            free(v[i].url);
            v[i].url = xstrdup(ent->value);
        }
    }
    if (grc != GIT_ITEROVER)
        rc = err_set(e, -EIO, "%s: %s", file, scm_git_msg());
out:
    git_config_iterator_free(it);
    git_config_free(cfg);
    free(file);
    if (rc < 0) {
        subms_free(v, n);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

/* Resolves a submodule URL against the superproject's, as git does: ./ and ../ prefixes are
 * relative to base (each ../ drops one path segment; never the scheme and host). */
static char *
url_resolve(const char *base, const char *rel)
{
    const char *p = rel, *sep = strstr(base, "://");
    size_t keep = sep ? (size_t)(sep - base) + 3 : 0, n;
    char *b, *res;

    if (strncmp(rel, "./", 2) != 0 && strncmp(rel, "../", 3) != 0)
        return xstrdup(rel);
    b = xstrdup(base);
    n = strlen(b);
    while (n > keep && b[n - 1] == '/')
        b[--n] = '\0';
    for (;;) {
        if (strncmp(p, "./", 2) == 0) {
            p += 2;
        } else if (strncmp(p, "../", 3) == 0) {
            char *slash = strrchr(b + keep, '/');

            p += 3;
            if (slash != NULL)
                *slash = '\0';
            else if (keep == 0 && strchr(b, ':') != NULL) /* scp-like host:path */
                strchr(b, ':')[1] = '\0';
        } else {
            break;
        }
    }
    n = strlen(b);
    res = xasprintf("%s%s%s", b, n && (b[n - 1] == '/' || b[n - 1] == ':') ? "" : "/", p);
    free(b);
    return res;
}

/* A submodule path stays inside the superproject. */
static bool
safe_subpath(const char *p)
{
    if (*p == '\0' || *p == '/')
        return false;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");

        if ((n == 2 && strncmp(s, "..", 2) == 0) || (n == 4 && strncasecmp(s, ".git", 4) == 0))
            return false;
        s += n;
        while (*s == '/')
            s++;
    }
    return true;
}

/* Checks out one submodule: its URL resolved against the superproject's origin, its commit
 * the gitlink in tree, through the same mirror cache. The token goes along only when the
 * submodule lives on the superproject's host. */
static int
checkout_submodule(struct run *r, git_config *cfg, const git_tree *tree, const struct co *c,
                   const struct subm *sm, struct err *e)
{
    git_tree_entry *te = NULL;
    struct scm_remote remote = {0};
    struct run sr = {0};
    struct co sc;
    char hex[GIT_OID_HEXSZ + 1], *key = NULL, *dest = NULL, *url = NULL;
    int rc = 0;

    if (sm->path == NULL || sm->url == NULL ||
        git_tree_entry_bypath(&te, tree, sm->path) < 0 ||
        git_tree_entry_filemode(te) != GIT_FILEMODE_COMMIT) {
        git_error_clear();
        scm_say(r, "Submodule %s: no path, URL or commit recorded; skipped", sm->name);
        goto out;
    }
    if (!safe_subpath(sm->path)) {
        rc = err_set(e, -EINVAL, "submodule %s: refusing the path %s", sm->name, sm->path);
        goto out;
    }
    url = url_resolve(r->url, sm->url);
    remote.url = url;
    remote.ca_file = r->ca_file;
    remote.insecure = r->insecure;
    scm_run_init(&sr, &remote, NULL, r->progress, r->arg, r->cancel);
    if (sr.origin && r->origin && strcmp(sr.origin, r->origin) == 0)
        sr.token = r->token;
    key = xasprintf("submodule.%s.url", sm->name);
    if (git_config_set_string(cfg, key, sr.url) < 0) {
        rc = err_set(e, -EIO, "submodule %s: %s", sm->path, scm_git_msg());
        goto out;
    }
    free(key);
    key = xasprintf("submodule.%s.active", sm->name);
    git_config_set_bool(cfg, key, 1);
    git_oid_tostr(hex, sizeof hex, git_tree_entry_id(te));
    dest = scm_path_join(c->dest, sm->path);
    scm_say(r, "Submodule %s: %s at %s", sm->path, sr.url, hex);
    sc = (struct co){
        .cache_dir = c->cache_dir,
        .sha = hex,
        .dest = dest,
        .submodules = c->recursive,
        .recursive = c->recursive,
        .persist = c->persist,
        .level = c->level + 1,
    };
    rc = scm_checkout_one(&sr, &sc, NULL, e);
    if (rc < 0 && rc != -ECANCELED)
        err_prefix(e, "submodule %s: ", sm->path);
out:
    scm_run_free(&sr);
    free(url);
    free(dest);
    free(key);
    git_tree_entry_free(te);
    return rc;
}

/* Checks out the submodules of the commit checked out in c->dest. */
int
scm_checkout_submodules(struct run *r, git_repository *repo, const git_commit *commit,
                        const struct co *c, struct err *e)
{
    struct subm *v = NULL;
    size_t n = 0;
    git_config *cfg = NULL;
    git_tree *tree = NULL;
    int rc;

    if ((rc = read_gitmodules(c->dest, &v, &n, e)) < 0 || n == 0)
        goto out;
    if (c->level >= SCM_MAX_SUBMODULE_DEPTH) {
        rc = err_set(e, -ELOOP, "submodules nested more than %d levels deep",
                     SCM_MAX_SUBMODULE_DEPTH);
        goto out;
    }
    if (git_repository_config(&cfg, repo) < 0 || git_commit_tree(&tree, commit) < 0) {
        rc = err_set(e, -EIO, "%s: submodules: %s", c->dest, scm_git_msg());
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = checkout_submodule(r, cfg, tree, c, &v[i], e);
out:
    git_tree_free(tree);
    git_config_free(cfg);
    subms_free(v, n);
    return rc;
}
