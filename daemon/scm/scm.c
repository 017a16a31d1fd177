/* scm.c: the libgit2 wrapper, and what its parts share. Local repository facts (scm_local_info),
 * and remote repositories through a mirror cache: checkouts (scm_checkout), action exports
 * (scm_fetch_action) and their thread-pool wrappers. On disk:
 *
 *     CACHE/mirrors/<sha256 of url>/        a bare repository, updated by incremental fetch
 *     CACHE/mirrors/<sha256 of url>.lock    flock()ed while a job reads or writes the mirror
 *     CACHE/actions/<sanitised url>/<sha>/  an action's files, without .git
 *
 * A checkout never clones into dest: it hard-links (or copies) the mirror's packs into
 * dest/.git/objects, writes the refs, and checks out from there, so dest/.git is
 * self-contained (no alternates into the cache) and a warm checkout costs one ref
 * negotiation plus the files. The mirror lock is held from opening the mirror until its
 * objects are in dest; the working tree is written without it.
 *
 * The parts: scm-mirror.c (fetching into the mirror, its lock and repair), scm-tls.c
 * (credentials, certificates), scm-checkout.c and scm-submodule.c (filling dest),
 * scm-action.c (action exports), scm-job.c (the thread-pool wrappers). Here: local repository
 * facts, and the helpers they share (files, URLs, a run's progress and cancellation). */
#include "scm-int.h"

#include "runner/xalloc.h"

#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    return err_set(e, -EIO, "%s: %s", what, scm_git_msg());
}

int
scm_local_info(const char *dir, struct scm_info *info, struct err *e)
{
    git_repository *repo = NULL;
    git_reference *head = NULL;
    git_remote *origin = NULL;
    int rc = 0, grc;

    memset(info, 0, sizeof *info);
    rc = scm_git_load(e);
    if (rc < 0)
        return rc;
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

/* ------------------------------------------------------------------------------------------
 * Shared helpers: init, files, URLs
 * ------------------------------------------------------------------------------------------ */

static pthread_once_t scm_once = PTHREAD_ONCE_INIT;

static void
on_scm_once(void)
{
    git_libgit2_init();
    /* As git itself, do not re-hash every object read: the packs were verified when they were
     * fetched (and zlib checks each object's stream). It is a fifth of a warm checkout. */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
}

/* libgit2 is loaded (scm-git.c) and initialised once per process and never shut down: its
 * global state lives until exit, and scm_local_info()'s init/shutdown pairs then only move the
 * count. Returns 0, or scm_git_load()'s error. */
int
scm_global_init(struct err *e)
{
    int rc = scm_git_load(e);

    if (rc < 0)
        return rc;
    pthread_once(&scm_once, on_scm_once);
    return 0;
}

double
scm_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libgit2's last error on this thread, as text. */
const char *
scm_git_msg(void)
{
    const git_error *ge = git_error_last();

    return ge && ge->message ? ge->message : "unknown error";
}

char *
scm_path_join(const char *a, const char *b)
{
    size_t n = strlen(a);

    return xasprintf("%s%s%s", a, n && a[n - 1] == '/' ? "" : "/", b);
}

/* mkdir -p. Returns 0 or -errno. */
int
scm_mkdir_p(const char *path, mode_t mode)
{
    char *p = xstrdup(path);
    int rc = 0;

    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *s = '/';
    }
    if (rc == 0 && mkdir(p, mode) < 0 && errno != EEXIST)
        rc = -errno;
    free(p);
    return rc;
}

static int
on_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int
on_chmod_dir(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if ((flag == FTW_D || flag == FTW_DNR) && (st->st_mode & 0700) != 0700)
        chmod(path, (st->st_mode & 07777) | 0700);
    return 0;
}

/* rm -rf path (symlinks are removed, never followed); directories a job made read-only are
 * made writable first. Returns 0 or -errno. */
int
scm_rm_rf(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
    if (nftw(path, on_rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0)
        return 0;
    if (errno != EACCES && errno != EPERM)
        return -(errno ? errno : EIO);
    nftw(path, on_chmod_dir, 16, FTW_PHYS);
    return nftw(path, on_rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 ? -(errno ? errno : EIO) : 0;
}

bool
scm_is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool
scm_is_hex(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);

    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

/* Splits url: *clean gets it without "user:password@" (new string); *origin gets
 * "scheme://host[:port]" in lower case for http(s) URLs, else NULL. */
void
scm_url_parse(const char *url, char **clean, char **origin)
{
    const char *sep = strstr(url, "://");
    const char *auth, *at, *host;
    size_t alen;

    *origin = NULL;
    if (sep == NULL || strchr(url, '/') < sep) {
        *clean = xstrdup(url);
        return;
    }
    auth = sep + 3;
    alen = strcspn(auth, "/?#");
    at = memrchr(auth, '@', alen);
    host = at ? at + 1 : auth;
    *clean = xasprintf("%.*s%s", (int)(auth - url), url, host);
    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
        *origin = xasprintf("%.*s%.*s", (int)(auth - url), url, (int)(auth + alen - host), host);
        for (char *p = *origin; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
}

/* The mirror's directory name: SHA-256 of the URL (without credentials), in hex. */
char *
scm_url_hash(const char *url)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char *hex;

    if (EVP_Digest(url, strlen(url), md, &n, EVP_sha256(), NULL) != 1)
        abort();
    hex = xmalloc(2 * n + 1);
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/* Replaces every occurrence of secret in e's message by ***. */
void
scm_err_scrub(struct err *e, const char *secret)
{
    char out[sizeof e->msg];
    size_t n, o = 0;
    const char *p, *hit;

    if (e == NULL || secret == NULL || *secret == '\0' || strstr(e->msg, secret) == NULL)
        return;
    n = strlen(secret);
    for (p = e->msg; (hit = strstr(p, secret)) != NULL; p = hit + n) {
        o += (size_t)snprintf(out + o, sizeof out - o, "%.*s***", (int)(hit - p), p);
        if (o >= sizeof out)
            break;
    }
    if (o < sizeof out)
        snprintf(out + o, sizeof out - o, "%s", p);
    memcpy(e->msg, out, sizeof out);
}


/* ------------------------------------------------------------------------------------------
 * A run: one remote being fetched, and what libgit2's callbacks need and find
 * ------------------------------------------------------------------------------------------ */

void
scm_run_init(struct run *r, const struct scm_remote *remote, const char *token,
             scm_progress_fn progress, void *arg, const volatile bool *cancel)
{
    memset(r, 0, sizeof *r);
    scm_url_parse(remote->url, &r->url, &r->origin);
    r->token = token && *token ? token : NULL;
    r->ca_file = remote->ca_file && *remote->ca_file ? remote->ca_file : NULL;
    r->insecure = remote->insecure;
    r->progress = progress;
    r->arg = arg;
    r->cancel = cancel;
}

void
scm_run_free(struct run *r)
{
    free(r->url);
    free(r->origin);
    r->url = r->origin = NULL;
}

/* One progress line, on the calling thread. */
void
scm_say(struct run *r, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (r->progress == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->progress(r->arg, line);
}

bool
scm_canceled(struct run *r)
{
    if (r->cancel != NULL && *r->cancel)
        r->canceled = true;
    return r->canceled;
}
