/* scm-checkout.c: a checkout (scm_checkout): what to build in dest, resolved in the mirror; dest's
 * objects linked (or copied) from the mirror, its refs, HEAD and config, and the files checked
 * out. Submodules are in scm-submodule.c. */
#include "scm-int.h"

#include "runner/xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Removes everything inside dir, keeping dir. Returns 0 or -errno. */
static int
rm_contents(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *p = scm_path_join(dir, de->d_name);
        rc = scm_rm_rf(p);
        free(p);
    }
    closedir(d);
    return rc;
}

/* 1 when dir has entries, 0 when empty or absent, -errno on error. */
static int
dir_has_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            rc = 1;
            break;
        }
    closedir(d);
    return rc;
}


enum ref_kind { REF_DEFAULT, REF_BRANCH, REF_TAG, REF_OTHER, REF_NAME, REF_SHA };

struct refent {
    char *name;
    git_oid id;
};

/* What to build in dest, found in the mirror. */
struct target {
    enum ref_kind kind;
    char *name;        /* branch or tag short name, the full other ref; or NULL */
    git_oid id;        /* the commit */
    bool branch;       /* HEAD is refs/heads/<name>; else detached */
    char *default_branch;
    struct refent *refs;
    size_t nrefs, caprefs;
};

static void
target_free(struct target *t)
{
    free(t->name);
    free(t->default_branch);
    for (size_t i = 0; i < t->nrefs; i++)
        free(t->refs[i].name);
    free(t->refs);
    memset(t, 0, sizeof *t);
}

/* Adds a ref for dest (names from the mirror are unique by construction). */
static void
target_ref(struct target *t, const char *name, const git_oid *id)
{
    if (t->nrefs == t->caprefs) {
        t->caprefs = t->caprefs ? 2 * t->caprefs : 64;
        t->refs = xreallocarray(t->refs, t->caprefs, sizeof *t->refs);
    }
    t->refs[t->nrefs].name = xstrdup(name);
    git_oid_cpy(&t->refs[t->nrefs].id, id);
    t->nrefs++;
}

/* Points dest's ref name at id, adding it when missing. */
static void
target_ref_set(struct target *t, const char *name, const git_oid *id)
{
    for (size_t i = 0; i < t->nrefs; i++)
        if (strcmp(t->refs[i].name, name) == 0) {
            git_oid_cpy(&t->refs[i].id, id);
            return;
        }
    target_ref(t, name, id);
}

/* Classifies ref (as actions/checkout's `ref` input). */
static enum ref_kind
ref_classify(const char *ref, const char *sha, char **name)
{
    *name = NULL;
    if (ref == NULL || *ref == '\0')
        return REF_DEFAULT;
    if (strncmp(ref, "refs/heads/", 11) == 0) {
        *name = xstrdup(ref + 11);
        return REF_BRANCH;
    }
    if (strncmp(ref, "refs/tags/", 10) == 0) {
        *name = xstrdup(ref + 10);
        return REF_TAG;
    }
    if (strncmp(ref, "refs/", 5) == 0) {
        *name = xstrdup(ref);
        return REF_OTHER;
    }
    if (sha == NULL && scm_is_hex(ref, 40, 40))
        return REF_SHA;
    *name = xstrdup(ref);
    return REF_NAME;
}

/* The full name of t's ref in the mirror (REF_NAME tries a branch, then a tag), or NULL. */
static char *
target_full_ref(git_repository *repo, const struct target *t)
{
    git_oid id;
    char *full = NULL;

    switch (t->kind) {
    case REF_BRANCH:
        return xasprintf("refs/heads/%s", t->name);
    case REF_TAG:
        return xasprintf("refs/tags/%s", t->name);
    case REF_OTHER:
        return xstrdup(t->name);
    case REF_NAME:
        full = xasprintf("refs/heads/%s", t->name);
        if (scm_ref_commit(repo, full, &id) == 0)
            return full;
        free(full);
        full = xasprintf("refs/tags/%s", t->name);
        if (scm_ref_commit(repo, full, &id) == 0)
            return full;
        free(full);
        git_error_clear();
        return NULL;
    default:
        return NULL;
    }
}

/* The mirror's default branch (short name), or NULL. */
static char *
mirror_default_branch(git_repository *repo)
{
    git_reference *head = NULL;
    const char *target;
    char *name = NULL;

    if (git_reference_lookup(&head, repo, "HEAD") == 0 &&
        (target = git_reference_symbolic_target(head)) != NULL &&
        strncmp(target, "refs/heads/", 11) == 0)
        name = xstrdup(target + 11);
    git_reference_free(head);
    git_error_clear();
    return name;
}

/* Fetches what c needs into the mirror and resolves it into t (with the refs dest gets). */
static int
mirror_resolve_checkout(struct run *r, git_repository *repo, const struct co *c,
                        struct target *t, struct err *e)
{
    git_oid want, found;
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    char *full = NULL, hex[GIT_OID_HEXSZ + 1];
    bool have_sha = false, found_ref = false;
    int rc = 0, grc;

    t->kind = ref_classify(c->ref, c->sha, &t->name);
    if (t->kind != REF_DEFAULT && t->kind != REF_SHA) {
        full = t->kind == REF_OTHER ? xstrdup(t->name) : xasprintf("refs/heads/%s", t->name);
        if (!scm_ref_name_ok(full)) {
            rc = err_set(e, -EINVAL, "\"%.100s\" is not a valid ref name", c->ref);
            goto out;
        }
        free(full);
        full = NULL;
    }
    if (c->sha != NULL && *c->sha != '\0') {
        git_oid_fromstr(&want, c->sha);
        have_sha = true;
    } else if (t->kind == REF_SHA) {
        git_oid_fromstr(&want, c->ref);
        have_sha = true;
    }
    /* Always fetch, even when the commit is in the mirror already: the fetch is what checks
     * that this token may read this repository, and it costs one round trip when nothing is
     * new. (Serving a cached commit without asking would let any job read any repository
     * another job once fetched.) */
    if ((rc = scm_mirror_update(r, repo, t->kind == REF_OTHER ? t->name : NULL, e)) < 0)
        goto out;

    /* The ref. */
    if (t->kind == REF_DEFAULT && !have_sha) {
        t->name = mirror_default_branch(repo);
        if (t->name != NULL)
            t->kind = REF_BRANCH;
    }
    full = target_full_ref(repo, t);
    found_ref = full != NULL && scm_ref_commit(repo, full, &found) == 0;
    git_error_clear();
    if (t->kind == REF_NAME)
        t->kind = full && strncmp(full, "refs/tags/", 10) == 0 ? REF_TAG : REF_BRANCH;
    if (!have_sha && !found_ref) {
        if (t->kind == REF_DEFAULT)
            rc = err_set(e, ERR_NOTFOUND, "%s has no default branch (an empty repository?)",
                         r->url);
        else
            rc = err_set(e, ERR_NOTFOUND, "ref %s not found in %s", c->ref, r->url);
        goto out;
    }

    /* The commit. */
    if (have_sha) {
        git_oid_tostr(hex, sizeof hex, &want);
        if ((rc = scm_mirror_want_commit(r, repo, &want, hex, e)) < 0)
            goto out;
        git_oid_cpy(&t->id, &want);
    } else {
        git_oid_cpy(&t->id, &found);
    }
    t->branch = t->kind == REF_BRANCH;
    t->default_branch = mirror_default_branch(repo);

    /* dest's refs: origin's branches, the tags, the other ref asked for. */
    if (git_reference_iterator_new(&it, repo) < 0) {
        rc = scm_mirror_fail(r, e, "listing the mirror's refs");
        goto out;
    }
    while ((grc = git_reference_next(&ref, it)) == 0) {
        const char *name = git_reference_name(ref);
        const git_oid *id = git_reference_target(ref);

        if (id == NULL) {
            /* symbolic: skipped */
        } else if (strncmp(name, "refs/heads/", 11) == 0) {
            char *n = xasprintf("refs/remotes/origin/%s", name + 11);
            target_ref(t, n, id);
            free(n);
        } else if (strncmp(name, "refs/tags/", 10) == 0) {
            target_ref(t, name, id);
        } else if (t->kind == REF_OTHER && strcmp(name, t->name) == 0) {
            char *n = xasprintf("refs/remotes/%s", name + 5);
            target_ref(t, n, &t->id);
            free(n);
        }
        git_reference_free(ref);
        ref = NULL;
    }
    if (grc != GIT_ITEROVER) {
        rc = scm_mirror_fail(r, e, "listing the mirror's refs");
        goto out;
    }
    if (t->branch) { /* origin's branch is the commit checked out, as actions/checkout does */
        char *n = xasprintf("refs/remotes/origin/%s", t->name);
        target_ref_set(t, n, &t->id);
        free(n);
    }
out:
    git_reference_iterator_free(it);
    free(full);
    return rc;
}

/* Hard-links src to dst, or copies it (another file system, or links refused). */
static int
link_or_copy(const char *src, const char *dst, struct err *e)
{
    char buf[65536];
    int in = -1, out = -1, rc = 0;
    ssize_t n;

    if (link(src, dst) == 0 || errno == EEXIST)
        return 0;
    if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP &&
        errno != EACCES)
        return err_set(e, -errno, "linking %s: %s", dst, strerror(errno));
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        rc = err_set(e, -errno, "%s: %s", src, strerror(errno));
        goto out;
    }
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (out < 0) {
        rc = err_set(e, -errno, "%s: %s", dst, strerror(errno));
        goto out;
    }
    while ((n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write(out, buf, (size_t)n) != n) {
            rc = err_set(e, -(errno ? errno : EIO), "copying %s: %s", dst, strerror(errno));
            goto out;
        }
    }
out:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0 && rc == 0)
        rc = err_set(e, -errno, "%s: %s", dst, strerror(errno));
    return rc;
}

/* Links (or copies) one directory's object files: packs (pack-*.pack, pack-*.idx) or loose
 * objects (38 hex digits). */
static int
copy_object_dir(const char *src, const char *dst, bool pack, struct err *e)
{
    DIR *d = opendir(src);
    struct dirent *de;
    int rc = 0;

    if (d == NULL)
        return errno == ENOENT ? 0 : err_set(e, -errno, "%s: %s", src, strerror(errno));
    if ((rc = scm_mkdir_p(dst, 0755)) < 0) {
        closedir(d);
        return err_set(e, rc, "%s: %s", dst, strerror(-rc));
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        bool want = pack ? strncmp(de->d_name, "pack-", 5) == 0 &&
                               ((n > 5 && strcmp(de->d_name + n - 5, ".pack") == 0) ||
                                (n > 4 && strcmp(de->d_name + n - 4, ".idx") == 0))
                         : scm_is_hex(de->d_name, 38, 38);
        if (!want)
            continue;
        char *s = scm_path_join(src, de->d_name), *t = scm_path_join(dst, de->d_name);
        rc = link_or_copy(s, t, e);
        free(s);
        free(t);
    }
    closedir(d);
    return rc;
}

/* Makes dest's object store hold everything the mirror has (no alternates). */
static int
copy_objects(const char *mirror_dir, const char *git_dir, struct err *e)
{
    char *src = scm_path_join(mirror_dir, "objects"), *dst = scm_path_join(git_dir, "objects");
    DIR *d = opendir(src);
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        rc = err_set(e, -errno, "%s: %s", src, strerror(errno));
        goto out;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        bool pack = strcmp(de->d_name, "pack") == 0;

        if (!pack && !scm_is_hex(de->d_name, 2, 2))
            continue;
        char *s = scm_path_join(src, de->d_name), *t = scm_path_join(dst, de->d_name);
        rc = copy_object_dir(s, t, pack, e);
        free(s);
        free(t);
    }
    closedir(d);
out:
    free(src);
    free(dst);
    return rc;
}

static int
refent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct refent *)a)->name, ((const struct refent *)b)->name);
}

/* Writes t's refs as dest's packed-refs (one file, however many tags the remote has). */
static int
write_packed_refs(const char *git_dir, struct target *t, struct err *e)
{
    char *path = scm_path_join(git_dir, "packed-refs"), hex[GIT_OID_HEXSZ + 1];
    FILE *f = fopen(path, "w");
    int rc = 0;

    if (f == NULL) {
        rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
        goto out;
    }
    qsort(t->refs, t->nrefs, sizeof *t->refs, refent_cmp);
    fputs("# pack-refs with: sorted \n", f);
    for (size_t i = 0; i < t->nrefs; i++)
        fprintf(f, "%s %s\n", git_oid_tostr(hex, sizeof hex, &t->refs[i].id), t->refs[i].name);
    if (ferror(f) | (fclose(f) != 0))
        rc = err_set(e, -EIO, "writing %s", path);
out:
    free(path);
    return rc;
}

/* Empties or creates dest. */
static int
dest_prepare(const char *dest, bool clean, struct err *e)
{
    int rc = dir_has_entries(dest);

    if (rc < 0)
        return err_set(e, rc, "%s: %s", dest, strerror(-rc));
    if (rc > 0 && !clean)
        return err_set(e, -EEXIST, "%s is not empty (clean it first)", dest);
    if (rc > 0 && (rc = rm_contents(dest)) < 0)
        return err_set(e, rc, "cleaning %s: %s", dest, strerror(-rc));
    if ((rc = scm_mkdir_p(dest, 0755)) < 0)
        return err_set(e, rc, "%s: %s", dest, strerror(-rc));
    return 0;
}

/* http.<origin>/.extraheader = AUTHORIZATION: basic base64(x-access-token:TOKEN), as
 * actions/checkout persists it. */
static int
persist_token(git_config *cfg, const struct run *r, struct err *e)
{
    char *plain = xasprintf("x-access-token:%s", r->token);
    size_t n = strlen(plain);
    unsigned char *b64 = xmalloc(4 * ((n + 2) / 3) + 1);
    char *key = xasprintf("http.%s/.extraheader", r->origin), *val;
    int rc = 0;

    EVP_EncodeBlock(b64, (const unsigned char *)plain, (int)n);
    val = xasprintf("AUTHORIZATION: basic %s", (const char *)b64);
    if (git_config_set_string(cfg, key, val) < 0)
        rc = err_set(e, -EIO, "setting %s: %s", key, scm_git_msg());
    explicit_bzero(plain, n);
    explicit_bzero(val, strlen(val));
    free(plain);
    free(b64);
    free(val);
    free(key);
    return rc;
}

static int
on_checkout_notify(git_checkout_notify_t why, const char *path, const git_diff_file *baseline,
                   const git_diff_file *target, const git_diff_file *workdir, void *payload)
{
    (void)why;
    (void)path;
    (void)baseline;
    (void)target;
    (void)workdir;
    return scm_canceled(payload) ? GIT_EUSER : 0;
}

static void
on_checkout_progress(const char *path, size_t done, size_t total, void *payload)
{
    struct run *r = payload;
    int pct = total ? (int)(done * 100 / total) : 100;
    double now = scm_now_s();

    (void)path;
    if (total == 0 || pct == r->last_pct || (pct < r->last_pct + 10 && now - r->last_time < 1.0))
        return;
    r->last_pct = pct;
    r->last_time = now;
    scm_say(r, "Checking out files: %d%% (%zu/%zu)", pct, done, total);
}

static int
on_tree_entry(const char *root, const git_tree_entry *te, void *payload)
{
    (void)root;
    if (strcmp(git_tree_entry_name(te), ".gitattributes") == 0) {
        *(bool *)payload = true;
        return -1; /* found: stop the walk */
    }
    return 0;
}

/* Whether checking out commit could run a filter (end-of-line conversion, ident, a driver): a
 * .gitattributes anywhere in its tree, an attributes file from the config, the user, the
 * system or a template (info/attributes), or core.autocrlf=true. When none can, filters are
 * turned off: the same files, without libgit2's realpath() and attribute-file lookups for
 * every file (half of a warm checkout's time). */
static bool
needs_filters(git_repository *repo, const git_commit *commit)
{
    git_config *cfg = NULL;
    git_tree *tree = NULL;
    git_buf buf = {0};
    const char *home = getenv("HOME"), *xdg = getenv("XDG_CONFIG_HOME");
    bool found = false;
    int v = 0;

    char *info = xasprintf("%sinfo/attributes", git_repository_path(repo));

    found = access("/etc/gitattributes", F_OK) == 0 || access(info, F_OK) == 0;
    free(info);
    if (found)
        return true;
    if (xdg && *xdg) {
        char *p = xasprintf("%s/git/attributes", xdg);
        found = access(p, F_OK) == 0;
        free(p);
    } else if (home && *home) {
        char *p = xasprintf("%s/.config/git/attributes", home);
        found = access(p, F_OK) == 0;
        free(p);
    }
    if (!found && git_repository_config(&cfg, repo) == 0) {
        found = git_config_get_string_buf(&buf, cfg, "core.attributesfile") == 0 ||
                (git_config_get_bool(&v, cfg, "core.autocrlf") == 0 && v);
        git_config_free(cfg);
    }
    if (!found && git_commit_tree(&tree, commit) == 0)
        git_tree_walk(tree, GIT_TREEWALK_PRE, on_tree_entry, &found);
    git_tree_free(tree);
    git_buf_dispose(&buf);
    git_error_clear();
    return found;
}

/* Points dest's HEAD at t (a local branch tracking origin's, or detached), persists the token
 * when asked, and checks the files out. */
static int
dest_finish(struct run *r, git_repository *repo, const struct co *c, const struct target *t,
            struct err *e)
{
    git_checkout_options cko;
    git_commit *commit = NULL;
    git_reference *br = NULL, *sym = NULL;
    git_config *cfg = NULL;
    char hex[GIT_OID_HEXSZ + 1], *key = NULL, *val = NULL;
    int rc = 0;

    git_oid_tostr(hex, sizeof hex, &t->id);
    if (git_commit_lookup(&commit, repo, &t->id) < 0 || git_repository_config(&cfg, repo) < 0) {
        rc = err_set(e, -EIO, "%s: %s", c->dest, scm_git_msg());
        goto out;
    }
    if (t->branch) {
        key = xasprintf("refs/heads/%s", t->name);
        if (git_branch_create(&br, repo, t->name, commit, 1) < 0 ||
            git_repository_set_head(repo, key) < 0) {
            rc = err_set(e, -EIO, "%s: branch %s: %s", c->dest, t->name, scm_git_msg());
            goto out;
        }
        free(key);
        key = xasprintf("branch.%s.remote", t->name);
        git_config_set_string(cfg, key, "origin");
        free(key);
        key = xasprintf("branch.%s.merge", t->name);
        val = xasprintf("refs/heads/%s", t->name);
        git_config_set_string(cfg, key, val);
    } else if (git_repository_set_head_detached(repo, &t->id) < 0) {
        rc = err_set(e, -EIO, "%s: %s", c->dest, scm_git_msg());
        goto out;
    }
    if (t->default_branch) {
        free(val);
        val = xasprintf("refs/remotes/origin/%s", t->default_branch);
        git_reference_symbolic_create(&sym, repo, "refs/remotes/origin/HEAD", val, 1, NULL);
    }
    git_error_clear();
    if (c->persist && r->token && r->origin && (rc = persist_token(cfg, r, e)) < 0)
        goto out;
    if (t->branch)
        scm_say(r, "Checking out %s (branch %s)", hex, t->name);
    else
        scm_say(r, "Checking out %s", hex);
    git_checkout_options_init(&cko, GIT_CHECKOUT_OPTIONS_VERSION);
    cko.checkout_strategy = GIT_CHECKOUT_FORCE;
    cko.disable_filters = !needs_filters(repo, commit);
    cko.progress_cb = on_checkout_progress;
    cko.progress_payload = r;
    cko.notify_flags = GIT_CHECKOUT_NOTIFY_UPDATED;
    cko.notify_cb = on_checkout_notify;
    cko.notify_payload = r;
    r->last_pct = -1;
    r->last_time = scm_now_s();
    if (git_checkout_head(repo, &cko) < 0) {
        rc = err_set(e, -EIO, "checking out %s in %s: %s", hex, c->dest, scm_git_msg());
        goto out;
    }
    if (c->submodules)
        rc = scm_checkout_submodules(r, repo, commit, c, e);
out:
    free(key);
    free(val);
    git_reference_free(sym);
    git_reference_free(br);
    git_config_free(cfg);
    git_commit_free(commit);
    return rc;
}

/* One checkout: dest gets a repository whose objects come from the mirror, then HEAD and the
 * files. On failure dest is left empty. */
int
scm_checkout_one(struct run *r, const struct co *c, char **sha_out, struct err *e)
{
    struct mirror m = {.lock_fd = -1};
    struct target t = {0};
    git_repository *repo = NULL;
    git_repository_init_options io;
    git_config *cfg = NULL;
    char *git_dir = NULL, hex[GIT_OID_HEXSZ + 1], why[sizeof e->msg];
    bool prepared = false;
    int rc;

    if ((rc = dest_prepare(c->dest, c->clean, e)) < 0)
        goto out;
    prepared = true;
    git_repository_init_options_init(&io, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    io.flags = GIT_REPOSITORY_INIT_MKPATH;
    /* origin by hand: io.origin_url would go through git_remote_create() and its insteadOf
     * lookup (see mirror_fetch()). */
    if (git_repository_init_ext(&repo, c->dest, &io) < 0 ||
        git_repository_config(&cfg, repo) < 0 ||
        git_config_set_string(cfg, "remote.origin.url", r->url) < 0 ||
        git_config_set_string(cfg, "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*") <
            0) {
        rc = err_set(e, -EIO, "%s: %s", c->dest, scm_git_msg());
        goto out;
    }
    git_config_free(cfg);
    cfg = NULL;
    git_repository_free(repo);
    repo = NULL;
    git_dir = scm_path_join(c->dest, ".git");

    if ((rc = scm_mirror_lock(r, c->cache_dir, &m, e)) < 0)
        goto out;
    for (;;) {
        rc = scm_mirror_open(r, &m, e);
        if (rc == 0)
            rc = mirror_resolve_checkout(r, m.repo, c, &t, e);
        if (rc == 0 || !r->corrupt || m.rebuilt || scm_canceled(r))
            break;
        target_free(&t);
        snprintf(why, sizeof why, "%s", e->msg);
        if ((rc = scm_mirror_remove(r, &m, why, e)) < 0)
            break;
    }
    if (rc < 0)
        goto out;
    if ((rc = copy_objects(m.dir, git_dir, e)) < 0 || (rc = write_packed_refs(git_dir, &t, e)) < 0)
        goto out;
    scm_mirror_unlock(&m);

    if (git_repository_open(&repo, c->dest) < 0) {
        rc = err_set(e, -EIO, "%s: %s", c->dest, scm_git_msg());
        goto out;
    }
    if ((rc = dest_finish(r, repo, c, &t, e)) < 0)
        goto out;
    if (sha_out)
        *sha_out = xstrdup(git_oid_tostr(hex, sizeof hex, &t.id));
out:
    scm_mirror_unlock(&m);
    git_config_free(cfg);
    git_repository_free(repo);
    target_free(&t);
    free(git_dir);
    if (rc < 0 && rc != -ECANCELED && scm_canceled(r))
        rc = err_set(e, -ECANCELED, "%s: canceled", r->url);
    if (rc < 0 && prepared)
        rm_contents(c->dest);
    return rc;
}

int
scm_checkout(const struct scm_checkout_req *req, scm_progress_fn progress, void *arg,
             const volatile bool *cancel, char **sha_out, struct err *e)
{
    struct err le = {0};
    struct run r;
    struct co c;
    int rc;

    if (sha_out)
        *sha_out = NULL;
    if (req->cache_dir == NULL || *req->cache_dir == '\0' || req->dest == NULL ||
        *req->dest == '\0' || req->remote.url == NULL || *req->remote.url == '\0')
        return err_set(e, -EINVAL, "checkout needs a URL, a destination and a cache directory");
    if (req->lfs)
        return err_set(e, -ENOTSUP, "lfs: Git LFS is not supported by this runner");
    if (req->sha && *req->sha && !scm_is_hex(req->sha, 40, 40))
        return err_set(e, -EINVAL, "sha \"%.64s\" is not a full commit id (40 hex digits)",
                       req->sha);
    rc = scm_global_init(e);
    if (rc < 0)
        return rc;
    scm_run_init(&r, &req->remote, req->remote.token, progress, arg, cancel);
    if (req->fetch_depth > 0)
#if LIBGIT2_VER_MAJOR > 1 || (LIBGIT2_VER_MAJOR == 1 && LIBGIT2_VER_MINOR >= 7)
        scm_say(&r, "fetch-depth %d: the mirror cache keeps the full history; checking out from it",
                req->fetch_depth);
#else
        scm_say(&r, "fetch-depth %d: libgit2 %s cannot fetch shallow; fetching the full history",
                req->fetch_depth, LIBGIT2_VERSION);
#endif
    c = (struct co){
        .cache_dir = req->cache_dir,
        .ref = req->ref,
        .sha = req->sha && *req->sha ? req->sha : NULL,
        .dest = req->dest,
        .clean = req->clean,
        .submodules = req->submodules || req->recursive,
        .recursive = req->recursive,
        .persist = req->persist_credentials,
    };
    rc = scm_checkout_one(&r, &c, sha_out, &le);
    scm_err_scrub(&le, r.token);
    if (rc < 0 && e)
        *e = le;
    scm_run_free(&r);
    return rc;
}
