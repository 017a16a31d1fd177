/* scm-mirror.c: the mirror of a remote repository (CACHE/mirrors/, see scm.c): fetching into it
 * with progress lines, finding refs and commits in it, and its lock, check and repair (a mirror
 * that cannot be read is removed and cloned again, once). */
#include "scm-int.h"

#include "runner/xalloc.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* Classes of libgit2 errors that mean the mirror itself is damaged (as opposed to the network,
 * the server or authentication): such a mirror is removed and cloned again, once. */
static bool
corrupt_class(void)
{
    const git_error *ge = git_error_last();

    if (ge == NULL)
        return false;
    switch (ge->klass) {
    case GIT_ERROR_ODB:
    case GIT_ERROR_ZLIB:
    case GIT_ERROR_OBJECT:
    case GIT_ERROR_REPOSITORY:
    case GIT_ERROR_REFERENCE:
    case GIT_ERROR_CONFIG:
    case GIT_ERROR_INDEXER:
    case GIT_ERROR_TREE:
        return true;
    default:
        return false;
    }
}

/* Fails with libgit2's last error, noting whether it looks like a damaged mirror. */
int
scm_mirror_fail(struct run *r, struct err *e, const char *what)
{
    r->corrupt = corrupt_class();
    return err_set(e, -EIO, "%s: %s", what, scm_git_msg());
}

static int
on_transfer(const git_indexer_progress *st, void *payload)
{
    struct run *r = payload;
    unsigned int done, total;
    int phase, pct;
    double now;

    if (scm_canceled(r))
        return GIT_EUSER;
    if (st->total_objects == 0)
        return 0;
    if (st->received_objects < st->total_objects) {
        phase = 1;
        done = st->received_objects;
        total = st->total_objects;
    } else if (st->indexed_deltas < st->total_deltas) {
        phase = 2;
        done = st->indexed_deltas;
        total = st->total_deltas;
    } else {
        return 0; /* the summary follows the fetch */
    }
    pct = (int)((uint64_t)done * 100 / total);
    now = scm_now_s();
    /* At most one line a second or per 10 %, and always the first of a phase. */
    if (phase == r->last_phase && (pct == r->last_pct ||
                                   (pct < r->last_pct + 10 && now - r->last_time < 1.0)))
        return 0;
    r->last_phase = phase;
    r->last_pct = pct;
    r->last_time = now;
    if (phase == 1)
        scm_say(r, "Fetching %s: %d%% (%u/%u objects, %.1f MiB)", r->url, pct, done, total,
                (double)st->received_bytes / 1048576.0);
    else
        scm_say(r, "Fetching %s: resolving deltas %d%% (%u/%u)", r->url, pct, done, total);
    return 0;
}

static int
on_sideband(const char *str, int len, void *payload)
{
    (void)str;
    (void)len;
    return scm_canceled(payload) ? GIT_EUSER : 0;
}

/* Fetches refspecs (n of them) from r->url into the mirror. With prune, refs the remote no
 * longer has go (within those refspecs). Records the remote's default branch as HEAD. */
static int
mirror_fetch(struct run *r, git_repository *repo, char **specs, size_t n, bool prune,
             struct err *e)
{
    git_remote *remote = NULL;
    git_fetch_options fo;
    git_remote_create_options co;
    git_strarray arr = {.strings = specs, .count = n};
    git_buf head = {0};
    const git_indexer_progress *st;
    int rc = 0;

    git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
    scm_auth_callbacks(&fo.callbacks, r);
    fo.callbacks.transfer_progress = on_transfer;
    fo.callbacks.sideband_progress = on_sideband;
    fo.prune = prune ? GIT_FETCH_PRUNE : GIT_FETCH_NO_PRUNE;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fo.update_fetchhead = 0;
    fo.proxy_opts.type = GIT_PROXY_AUTO;
    r->last_phase = 0;
    r->last_pct = -1;
    r->corrupt = false;
    if (scm_canceled(r))
        return err_set(e, -ECANCELED, "fetching %s: canceled", r->url);
    /* No url.<base>.insteadOf rewriting: the mirror is keyed by the URL asked for (and
     * libgit2 1.5 leaks pcre2 match data on every config entry such a lookup does not match). */
    git_remote_create_options_init(&co, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    co.repository = repo;
    co.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    if (git_remote_create_with_opts(&remote, r->url, &co) < 0) {
        rc = scm_mirror_fail(r, e, r->url);
        goto out;
    }
    if (git_remote_fetch(remote, &arr, &fo, NULL) < 0) {
        rc = scm_fetch_fail(r, e);
        goto out;
    }
    st = git_remote_stats(remote);
    if (st->received_objects > 0)
        scm_say(r, "Fetched %s: %u objects, %.1f MiB", r->url, st->received_objects,
                (double)st->received_bytes / 1048576.0);
    else
        scm_say(r, "Fetched %s: up to date", r->url);
    if (git_remote_default_branch(&head, remote) == 0 && head.ptr)
        git_repository_set_head(repo, head.ptr); /* best effort: HEAD names the default */
    git_error_clear();
out:
    git_buf_dispose(&head);
    git_remote_free(remote);
    return rc;
}

/* Fetches branches and tags, and extra (a ref outside those, or NULL). */
int
scm_mirror_update(struct run *r, git_repository *repo, const char *extra, struct err *e)
{
    char *specs[3] = {xstrdup("+refs/heads/*:refs/heads/*"), xstrdup("+refs/tags/*:refs/tags/*"),
                      extra ? xasprintf("+%s:%s", extra, extra) : NULL};
    int rc = mirror_fetch(r, repo, specs, extra ? 3 : 2, true, e);

    for (size_t i = 0; i < 3; i++)
        free(specs[i]);
    return rc;
}

/* Fetches one commit by id (servers allowing it: uploadpack.allowAnySHA1InWant and the like),
 * kept under refs/runnerd/ so the mirror holds on to it. */
static int
mirror_fetch_sha(struct run *r, git_repository *repo, const char *hex, struct err *e)
{
    char *spec = xasprintf("+%s:refs/runnerd/%s", hex, hex);
    int rc;

    scm_say(r, "Commit %s is on no branch or tag of %s; fetching it by id", hex, r->url);
    rc = mirror_fetch(r, repo, &spec, 1, false, e);
    free(spec);
    return rc;
}

bool
scm_has_commit(git_repository *repo, const git_oid *id)
{
    git_commit *c = NULL;
    bool ok = git_commit_lookup(&c, repo, id) == 0;

    git_commit_free(c);
    git_error_clear();
    return ok;
}

/* Resolves name to the commit it points at (peeling tags). Returns 0, or GIT_ENOTFOUND. */
int
scm_ref_commit(git_repository *repo, const char *name, git_oid *out)
{
    git_reference *ref = NULL;
    git_object *obj = NULL;
    int rc = git_reference_lookup(&ref, repo, name);

    if (rc == 0)
        rc = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT);
    if (rc == 0)
        git_oid_cpy(out, git_object_id(obj));
    git_object_free(obj);
    git_reference_free(ref);
    return rc;
}

/* Whether name is a valid full ref name (so that it can go into a refspec). */
bool
scm_ref_name_ok(const char *name)
{
    int valid = 0;

    return git_reference_name_is_valid(&valid, name) == 0 && valid &&
           strpbrk(name, "*:") == NULL;
}

/* Makes sure the mirror holds commit id (hex, its text): one that no branch or tag fetched
 * brought is fetched by id. Only a cancellation or refused authentication during that fetch is
 * its error; otherwise a commit still missing is ERR_NOTFOUND. */
int
scm_mirror_want_commit(struct run *r, git_repository *repo, const git_oid *id, const char *hex,
                       struct err *e)
{
    struct err ignored = {0};
    int rc;

    if (scm_has_commit(repo, id))
        return 0;
    rc = mirror_fetch_sha(r, repo, hex, &ignored);
    if (rc < 0 && (scm_canceled(r) || r->auth_failed || r->auth_missing)) {
        *e = ignored;
        return rc;
    }
    r->corrupt = false;
    if (!scm_has_commit(repo, id))
        return err_set(e, ERR_NOTFOUND, "commit %s not found in %s", hex, r->url);
    return 0;
}


/* Takes the mirror's lock (flock on DIR.lock, so threads and processes exclude each other),
 * polling `cancel` while another job holds it. */
int
scm_mirror_lock(struct run *r, const char *cache_dir, struct mirror *m, struct err *e)
{
    char *base = scm_path_join(cache_dir, "mirrors"), *hash = scm_url_hash(r->url), *lock = NULL;
    bool waited = false;
    int rc;

    memset(m, 0, sizeof *m);
    m->lock_fd = -1;
    m->dir = scm_path_join(base, hash);
    if ((rc = scm_mkdir_p(base, 0755)) < 0) {
        rc = err_set(e, rc, "%s: %s", base, strerror(-rc));
        goto out;
    }
    lock = xasprintf("%s.lock", m->dir);
    m->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m->lock_fd < 0) {
        rc = err_set(e, -errno, "%s: %s", lock, strerror(errno));
        goto out;
    }
    while (flock(m->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            rc = err_set(e, -errno, "%s: %s", lock, strerror(errno));
            goto out;
        }
        if (scm_canceled(r)) {
            rc = err_set(e, -ECANCELED, "%s: canceled", r->url);
            goto out;
        }
        if (!waited)
            scm_say(r, "Waiting for another job using the mirror of %s", r->url);
        waited = true;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
out:
    free(lock);
    free(hash);
    free(base);
    return rc;
}

void
scm_mirror_unlock(struct mirror *m)
{
    git_repository_free(m->repo);
    m->repo = NULL;
    if (m->lock_fd >= 0)
        close(m->lock_fd); /* releases the flock */
    m->lock_fd = -1;
    free(m->dir);
    m->dir = NULL;
}

/* Cheap checks that the mirror can be read: HEAD parses, every ref's object exists (which
 * opens, and so verifies, the packs holding them) and every branch tip reads as a commit. */
static int
mirror_check(git_repository *repo, char *why, size_t n)
{
    git_reference *head = NULL, *ref = NULL;
    git_reference_iterator *it = NULL;
    git_odb *odb = NULL;
    int rc = -1, grc;

    if (git_reference_lookup(&head, repo, "HEAD") < 0) {
        snprintf(why, n, "HEAD: %s", scm_git_msg());
        goto out;
    }
    if (git_repository_odb(&odb, repo) < 0 || git_reference_iterator_new(&it, repo) < 0) {
        snprintf(why, n, "%s", scm_git_msg());
        goto out;
    }
    while ((grc = git_reference_next(&ref, it)) == 0) {
        const git_oid *id = git_reference_target(ref);
        git_commit *c = NULL;

        if (id && !git_odb_exists(odb, id)) {
            snprintf(why, n, "%s points to a missing object", git_reference_name(ref));
            goto out;
        }
        if (id && strncmp(git_reference_name(ref), "refs/heads/", 11) == 0) {
            if (git_commit_lookup(&c, repo, id) < 0) {
                snprintf(why, n, "%s: %s", git_reference_name(ref), scm_git_msg());
                goto out;
            }
            git_commit_free(c);
        }
        git_reference_free(ref);
        ref = NULL;
    }
    if (grc != GIT_ITEROVER) {
        snprintf(why, n, "%s", scm_git_msg());
        goto out;
    }
    rc = 0;
out:
    git_reference_free(ref);
    git_reference_iterator_free(it);
    git_odb_free(odb);
    git_reference_free(head);
    return rc;
}

/* Removes the mirror (under its lock) so that the next open clones it again. */
int
scm_mirror_remove(struct run *r, struct mirror *m, const char *why, struct err *e)
{
    int rc;

    scm_say(r, "The mirror of %s is damaged (%s); cloning it again", r->url, why);
    git_repository_free(m->repo);
    m->repo = NULL;
    m->rebuilt = true;
    if ((rc = scm_rm_rf(m->dir)) < 0)
        return err_set(e, rc, "removing %s: %s", m->dir, strerror(-rc));
    return 0;
}

/* Opens the mirror, or creates it empty (the fetch that follows fills it). A mirror that does
 * not open or fails mirror_check() is removed first. */
int
scm_mirror_open(struct run *r, struct mirror *m, struct err *e)
{
    char why[200];
    git_config *cfg = NULL;
    int rc;

    if (scm_is_dir(m->dir)) {
        if (git_repository_open_bare(&m->repo, m->dir) < 0)
            snprintf(why, sizeof why, "%s", scm_git_msg());
        else if (mirror_check(m->repo, why, sizeof why) == 0)
            return 0;
        if ((rc = scm_mirror_remove(r, m, why, e)) < 0)
            return rc;
    } else if (!m->rebuilt) {
        scm_say(r, "Creating the mirror of %s", r->url);
    }
    if (git_repository_init(&m->repo, m->dir, 1) < 0)
        return err_set(e, -EIO, "creating the mirror %s: %s", m->dir, scm_git_msg());
    if (git_repository_config(&cfg, m->repo) == 0) {
        git_config_set_string(cfg, "runnerd.url", r->url); /* for people looking at the cache */
        git_config_free(cfg);
    }
    git_error_clear();
    return 0;
}
