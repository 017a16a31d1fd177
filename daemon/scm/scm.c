/* scm.c: the libgit2 wrapper. Local repository facts (scm_local_info), and remote repositories
 * through a mirror cache: checkouts (scm_checkout), action exports (scm_fetch_action) and
 * their thread-pool wrappers. On disk:
 *
 *     CACHE/mirrors/<sha256 of url>/        a bare repository, updated by incremental fetch
 *     CACHE/mirrors/<sha256 of url>.lock    flock()ed while a job reads or writes the mirror
 *     CACHE/actions/<sanitised url>/<sha>/  an action's files, without .git
 *
 * A checkout never clones into dest: it hard-links (or copies) the mirror's packs into
 * dest/.git/objects, writes the refs, and checks out from there, so dest/.git is
 * self-contained (no alternates into the cache) and a warm checkout costs one ref
 * negotiation plus the files. The mirror lock is held from opening the mirror until its
 * objects are in dest; the working tree is written without it. */
#include "scm.h"

#include "runner/xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <git2.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
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

/* ------------------------------------------------------------------------------------------
 * Shared helpers: init, files, URLs
 * ------------------------------------------------------------------------------------------ */

#define SCM_MAX_SUBMODULE_DEPTH 8
#define SCM_MAX_QUEUED_LINES 1000

static pthread_once_t scm_once = PTHREAD_ONCE_INIT;

static void
on_scm_once(void)
{
    git_libgit2_init();
    /* As git itself, do not re-hash every object read: the packs were verified when they were
     * fetched (and zlib checks each object's stream). It is a fifth of a warm checkout. */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
}

/* libgit2 is initialised once per process and never shut down: its global state lives until
 * exit, and scm_local_info()'s init/shutdown pairs then only move the count. */
static void
scm_global_init(void)
{
    pthread_once(&scm_once, on_scm_once);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libgit2's last error on this thread, as text. */
static const char *
git_msg(void)
{
    const git_error *ge = git_error_last();

    return ge && ge->message ? ge->message : "unknown error";
}

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

static char *
path_join(const char *a, const char *b)
{
    size_t n = strlen(a);

    return xasprintf("%s%s%s", a, n && a[n - 1] == '/' ? "" : "/", b);
}

/* mkdir -p. Returns 0 or -errno. */
static int
mkdir_p(const char *path, mode_t mode)
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
static int
rm_rf(const char *path)
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
        char *p = path_join(dir, de->d_name);
        rc = rm_rf(p);
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

static bool
is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool
is_hex(const char *s, size_t min, size_t max)
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
static void
url_parse(const char *url, char **clean, char **origin)
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
static char *
url_hash(const char *url)
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
        char *h = url_hash(url), *t = xasprintf("%.120s-%.16s", s, h);

        free(h);
        free(s);
        s = t;
    }
    return s;
}

/* Replaces every occurrence of secret in e's message by ***. */
static void
err_scrub(struct err *e, const char *secret)
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

struct run {
    char *url;          /* without credentials */
    char *origin;       /* "scheme://host[:port]" of url, or NULL (local paths) */
    const char *token;  /* borrowed; NULL when none is sent to this remote */
    const char *ca_file;
    bool insecure;
    scm_progress_fn progress;
    void *arg;
    const volatile bool *cancel;
    /* Set by the callbacks during one fetch. */
    int auth_calls;
    bool auth_failed, auth_missing, cert_failed, canceled;
    char cert_why[160];
    int last_phase, last_pct;
    double last_time;
    /* The last error came from a damaged mirror. */
    bool corrupt;
};

static void
run_init(struct run *r, const struct scm_remote *remote, const char *token,
         scm_progress_fn progress, void *arg, const volatile bool *cancel)
{
    memset(r, 0, sizeof *r);
    url_parse(remote->url, &r->url, &r->origin);
    r->token = token && *token ? token : NULL;
    r->ca_file = remote->ca_file && *remote->ca_file ? remote->ca_file : NULL;
    r->insecure = remote->insecure;
    r->progress = progress;
    r->arg = arg;
    r->cancel = cancel;
}

static void
run_free(struct run *r)
{
    free(r->url);
    free(r->origin);
    r->url = r->origin = NULL;
}

static void say(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One progress line, on the calling thread. */
static void
say(struct run *r, const char *fmt, ...)
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

static bool
is_canceled(struct run *r)
{
    if (r->cancel != NULL && *r->cancel)
        r->canceled = true;
    return r->canceled;
}

/* Fails with libgit2's last error, noting whether it looks like a damaged mirror. */
static int
mirror_fail(struct run *r, struct err *e, const char *what)
{
    r->corrupt = corrupt_class();
    return err_set(e, -EIO, "%s: %s", what, git_msg());
}

static int
on_transfer(const git_indexer_progress *st, void *payload)
{
    struct run *r = payload;
    unsigned int done, total;
    int phase, pct;
    double now;

    if (is_canceled(r))
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
    now = now_s();
    /* At most one line a second or per 10 %, and always the first of a phase. */
    if (phase == r->last_phase && (pct == r->last_pct ||
                                   (pct < r->last_pct + 10 && now - r->last_time < 1.0)))
        return 0;
    r->last_phase = phase;
    r->last_pct = pct;
    r->last_time = now;
    if (phase == 1)
        say(r, "Fetching %s: %d%% (%u/%u objects, %.1f MiB)", r->url, pct, done, total,
            (double)st->received_bytes / 1048576.0);
    else
        say(r, "Fetching %s: resolving deltas %d%% (%u/%u)", r->url, pct, done, total);
    return 0;
}

static int
on_sideband(const char *str, int len, void *payload)
{
    (void)str;
    (void)len;
    return is_canceled(payload) ? GIT_EUSER : 0;
}

/* The token goes as basic auth, user x-access-token, only to the URL's own origin, once per
 * fetch: a second request for credentials means the server refused it. */
static int
on_credentials(git_credential **out, const char *url, const char *user, unsigned int allowed,
               void *payload)
{
    struct run *r = payload;
    char *clean = NULL, *origin = NULL;
    bool ours;

    (void)user;
    if (is_canceled(r))
        return GIT_EUSER;
    url_parse(url, &clean, &origin);
    ours = origin && r->origin && strcmp(origin, r->origin) == 0;
    free(clean);
    free(origin);
    if (r->token == NULL || !ours || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT)) {
        r->auth_missing = true;
        git_error_set_str(GIT_ERROR_HTTP, "authentication required");
        return GIT_EAUTH;
    }
    if (r->auth_calls++ > 0) {
        r->auth_failed = true;
        git_error_set_str(GIT_ERROR_HTTP, "authentication failed");
        return GIT_EAUTH;
    }
    return git_credential_userpass_plaintext_new(out, "x-access-token", r->token);
}

/* Verifies a server certificate (DER) for host against the CA certificates in ca_file.
 * Returns 0 when trusted, else -1 with the reason in why. */
static int
cert_verify(const void *der, size_t len, const char *host, const char *ca_file, char *why,
            size_t whylen)
{
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)len);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rc = -1;

    if (cert == NULL || store == NULL || ctx == NULL) {
        snprintf(why, whylen, "unreadable certificate");
        goto out;
    }
    if (X509_STORE_load_file(store, ca_file) != 1) {
        snprintf(why, whylen, "cannot read CA file %s", ca_file);
        goto out;
    }
    if (X509_STORE_CTX_init(ctx, store, cert, NULL) != 1) {
        snprintf(why, whylen, "certificate check failed");
        goto out;
    }
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1)
        X509_VERIFY_PARAM_set1_host(vp, host, 0);
    if (X509_verify_cert(ctx) == 1)
        rc = 0;
    else
        snprintf(why, whylen, "%s (CA file %s)",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)), ca_file);
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(cert);
    return rc;
}

/* TLS: libgit2 verifies against the system's store; a certificate it refused is accepted when
 * `insecure`, or when it verifies against ca_file. The CA file is per request, so jobs with
 * different files do not change each other's trust (GIT_OPT_SET_SSL_CERT_LOCATIONS would). */
static int
on_certificate(git_cert *cert, int valid, const char *host, void *payload)
{
    struct run *r = payload;

    if (valid || r->insecure)
        return 0;
    if (r->ca_file != NULL && cert->cert_type == GIT_CERT_X509) {
        const git_cert_x509 *x = (const git_cert_x509 *)cert;

        if (cert_verify(x->data, x->len, host, r->ca_file, r->cert_why, sizeof r->cert_why) == 0)
            return 0;
    } else {
        snprintf(r->cert_why, sizeof r->cert_why, "not trusted by the system's CA store");
    }
    r->cert_failed = true;
    git_error_set_str(GIT_ERROR_SSL, "certificate not trusted");
    return GIT_ECERTIFICATE;
}

/* Translates a failed fetch: cancellation, authentication and TLS first, in our words. */
static int
fetch_fail(struct run *r, struct err *e)
{
    if (is_canceled(r))
        return err_set(e, -ECANCELED, "fetching %s: canceled", r->url);
    if (r->auth_failed)
        return err_set(e, -EACCES, "authentication to %s failed (check the token)", r->url);
    if (r->auth_missing)
        return err_set(e, -EACCES, "authentication to %s required: %s", r->url,
                       r->token ? "the token is only sent to its own host"
                                : "no token given");
    if (r->cert_failed)
        return err_set(e, -EPERM, "TLS certificate of %s not trusted: %s", r->url, r->cert_why);
    return mirror_fail(r, e, r->url);
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
    fo.callbacks.credentials = on_credentials;
    fo.callbacks.certificate_check = on_certificate;
    fo.callbacks.transfer_progress = on_transfer;
    fo.callbacks.sideband_progress = on_sideband;
    fo.callbacks.payload = r;
    fo.prune = prune ? GIT_FETCH_PRUNE : GIT_FETCH_NO_PRUNE;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fo.update_fetchhead = 0;
    fo.proxy_opts.type = GIT_PROXY_AUTO;
    r->auth_calls = 0;
    r->auth_failed = r->auth_missing = r->cert_failed = false;
    r->last_phase = 0;
    r->last_pct = -1;
    r->corrupt = false;
    if (is_canceled(r))
        return err_set(e, -ECANCELED, "fetching %s: canceled", r->url);
    /* No url.<base>.insteadOf rewriting: the mirror is keyed by the URL asked for (and
     * libgit2 1.5 leaks pcre2 match data on every config entry such a lookup does not match). */
    git_remote_create_options_init(&co, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    co.repository = repo;
    co.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    if (git_remote_create_with_opts(&remote, r->url, &co) < 0) {
        rc = mirror_fail(r, e, r->url);
        goto out;
    }
    if (git_remote_fetch(remote, &arr, &fo, NULL) < 0) {
        rc = fetch_fail(r, e);
        goto out;
    }
    st = git_remote_stats(remote);
    if (st->received_objects > 0)
        say(r, "Fetched %s: %u objects, %.1f MiB", r->url, st->received_objects,
            (double)st->received_bytes / 1048576.0);
    else
        say(r, "Fetched %s: up to date", r->url);
    if (git_remote_default_branch(&head, remote) == 0 && head.ptr)
        git_repository_set_head(repo, head.ptr); /* best effort: HEAD names the default */
    git_error_clear();
out:
    git_buf_dispose(&head);
    git_remote_free(remote);
    return rc;
}

/* Connects to r->url and lists its refs, fetching nothing: the check that this token may read
 * the repository, before anything cached from it is handed out. */
static int
remote_probe(struct run *r, struct err *e)
{
    git_remote *remote = NULL;
    git_remote_callbacks cb;
    git_proxy_options po;
    const git_remote_head **heads = NULL;
    size_t n = 0;
    int rc = 0;

    git_remote_init_callbacks(&cb, GIT_REMOTE_CALLBACKS_VERSION);
    git_proxy_options_init(&po, GIT_PROXY_OPTIONS_VERSION);
    cb.credentials = on_credentials;
    cb.certificate_check = on_certificate;
    cb.payload = r;
    po.type = GIT_PROXY_AUTO;
    r->auth_calls = 0;
    r->auth_failed = r->auth_missing = r->cert_failed = false;
    if (is_canceled(r))
        return err_set(e, -ECANCELED, "%s: canceled", r->url);
    if (git_remote_create_detached(&remote, r->url) < 0 ||
        git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, &po, NULL) < 0 ||
        git_remote_ls(&heads, &n, remote) < 0)
        rc = fetch_fail(r, e);
    r->corrupt = false; /* nothing local was read */
    if (remote)
        git_remote_disconnect(remote);
    git_remote_free(remote);
    return rc;
}

/* Fetches branches and tags, and extra (a ref outside those, or NULL). */
static int
mirror_update(struct run *r, git_repository *repo, const char *extra, struct err *e)
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

    say(r, "Commit %s is on no branch or tag of %s; fetching it by id", hex, r->url);
    rc = mirror_fetch(r, repo, &spec, 1, false, e);
    free(spec);
    return rc;
}

static bool
has_commit(git_repository *repo, const git_oid *id)
{
    git_commit *c = NULL;
    bool ok = git_commit_lookup(&c, repo, id) == 0;

    git_commit_free(c);
    git_error_clear();
    return ok;
}

/* Resolves name to the commit it points at (peeling tags). Returns 0, or GIT_ENOTFOUND. */
static int
ref_commit(git_repository *repo, const char *name, git_oid *out)
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

/* ------------------------------------------------------------------------------------------
 * The mirror: lock, open (repairing), check
 * ------------------------------------------------------------------------------------------ */

struct mirror {
    char *dir;
    int lock_fd;
    git_repository *repo;
    bool rebuilt; /* removed and cloned again during this run */
};

/* Takes the mirror's lock (flock on DIR.lock, so threads and processes exclude each other),
 * polling `cancel` while another job holds it. */
static int
mirror_lock(struct run *r, const char *cache_dir, struct mirror *m, struct err *e)
{
    char *base = path_join(cache_dir, "mirrors"), *hash = url_hash(r->url), *lock = NULL;
    bool waited = false;
    int rc;

    memset(m, 0, sizeof *m);
    m->lock_fd = -1;
    m->dir = path_join(base, hash);
    if ((rc = mkdir_p(base, 0755)) < 0) {
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
        if (is_canceled(r)) {
            rc = err_set(e, -ECANCELED, "%s: canceled", r->url);
            goto out;
        }
        if (!waited)
            say(r, "Waiting for another job using the mirror of %s", r->url);
        waited = true;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
out:
    free(lock);
    free(hash);
    free(base);
    return rc;
}

static void
mirror_unlock(struct mirror *m)
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
        snprintf(why, n, "HEAD: %s", git_msg());
        goto out;
    }
    if (git_repository_odb(&odb, repo) < 0 || git_reference_iterator_new(&it, repo) < 0) {
        snprintf(why, n, "%s", git_msg());
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
                snprintf(why, n, "%s: %s", git_reference_name(ref), git_msg());
                goto out;
            }
            git_commit_free(c);
        }
        git_reference_free(ref);
        ref = NULL;
    }
    if (grc != GIT_ITEROVER) {
        snprintf(why, n, "%s", git_msg());
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
static int
mirror_remove(struct run *r, struct mirror *m, const char *why, struct err *e)
{
    int rc;

    say(r, "The mirror of %s is damaged (%s); cloning it again", r->url, why);
    git_repository_free(m->repo);
    m->repo = NULL;
    m->rebuilt = true;
    if ((rc = rm_rf(m->dir)) < 0)
        return err_set(e, rc, "removing %s: %s", m->dir, strerror(-rc));
    return 0;
}

/* Opens the mirror, or creates it empty (the fetch that follows fills it). A mirror that does
 * not open or fails mirror_check() is removed first. */
static int
mirror_open(struct run *r, struct mirror *m, struct err *e)
{
    char why[200];
    git_config *cfg = NULL;
    int rc;

    if (is_dir(m->dir)) {
        if (git_repository_open_bare(&m->repo, m->dir) < 0)
            snprintf(why, sizeof why, "%s", git_msg());
        else if (mirror_check(m->repo, why, sizeof why) == 0)
            return 0;
        if ((rc = mirror_remove(r, m, why, e)) < 0)
            return rc;
    } else if (!m->rebuilt) {
        say(r, "Creating the mirror of %s", r->url);
    }
    if (git_repository_init(&m->repo, m->dir, 1) < 0)
        return err_set(e, -EIO, "creating the mirror %s: %s", m->dir, git_msg());
    if (git_repository_config(&cfg, m->repo) == 0) {
        git_config_set_string(cfg, "runnerd.url", r->url); /* for people looking at the cache */
        git_config_free(cfg);
    }
    git_error_clear();
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Checkout: resolving in the mirror, filling dest
 * ------------------------------------------------------------------------------------------ */

/* One checkout (the top level or a submodule). */
struct co {
    const char *cache_dir;
    const char *ref, *sha, *dest;
    bool clean, submodules, recursive, persist;
    int level; /* submodule nesting */
};

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

/* Whether name is a valid full ref name (so that it can go into a refspec). */
static bool
ref_name_ok(const char *name)
{
    int valid = 0;

    return git_reference_name_is_valid(&valid, name) == 0 && valid &&
           strpbrk(name, "*:") == NULL;
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
    if (sha == NULL && is_hex(ref, 40, 40))
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
        if (ref_commit(repo, full, &id) == 0)
            return full;
        free(full);
        full = xasprintf("refs/tags/%s", t->name);
        if (ref_commit(repo, full, &id) == 0)
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
        if (!ref_name_ok(full)) {
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
    if ((rc = mirror_update(r, repo, t->kind == REF_OTHER ? t->name : NULL, e)) < 0)
        goto out;

    /* The ref. */
    if (t->kind == REF_DEFAULT && !have_sha) {
        t->name = mirror_default_branch(repo);
        if (t->name != NULL)
            t->kind = REF_BRANCH;
    }
    full = target_full_ref(repo, t);
    found_ref = full != NULL && ref_commit(repo, full, &found) == 0;
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
        if (!has_commit(repo, &want)) {
            struct err ignored = {0};

            rc = mirror_fetch_sha(r, repo, hex, &ignored);
            if (rc < 0 && (is_canceled(r) || r->auth_failed || r->auth_missing)) {
                *e = ignored;
                goto out;
            }
            r->corrupt = false;
            if (!has_commit(repo, &want)) {
                rc = err_set(e, ERR_NOTFOUND, "commit %s not found in %s", hex, r->url);
                goto out;
            }
            rc = 0;
        }
        git_oid_cpy(&t->id, &want);
    } else {
        git_oid_cpy(&t->id, &found);
    }
    t->branch = t->kind == REF_BRANCH;
    t->default_branch = mirror_default_branch(repo);

    /* dest's refs: origin's branches, the tags, the other ref asked for. */
    if (git_reference_iterator_new(&it, repo) < 0) {
        rc = mirror_fail(r, e, "listing the mirror's refs");
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
        rc = mirror_fail(r, e, "listing the mirror's refs");
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
    if ((rc = mkdir_p(dst, 0755)) < 0) {
        closedir(d);
        return err_set(e, rc, "%s: %s", dst, strerror(-rc));
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        bool want = pack ? strncmp(de->d_name, "pack-", 5) == 0 &&
                               ((n > 5 && strcmp(de->d_name + n - 5, ".pack") == 0) ||
                                (n > 4 && strcmp(de->d_name + n - 4, ".idx") == 0))
                         : is_hex(de->d_name, 38, 38);
        if (!want)
            continue;
        char *s = path_join(src, de->d_name), *t = path_join(dst, de->d_name);
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
    char *src = path_join(mirror_dir, "objects"), *dst = path_join(git_dir, "objects");
    DIR *d = opendir(src);
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        rc = err_set(e, -errno, "%s: %s", src, strerror(errno));
        goto out;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        bool pack = strcmp(de->d_name, "pack") == 0;

        if (!pack && !is_hex(de->d_name, 2, 2))
            continue;
        char *s = path_join(src, de->d_name), *t = path_join(dst, de->d_name);
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
    char *path = path_join(git_dir, "packed-refs"), hex[GIT_OID_HEXSZ + 1];
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
    if ((rc = mkdir_p(dest, 0755)) < 0)
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
        rc = err_set(e, -EIO, "setting %s: %s", key, git_msg());
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
    return is_canceled(payload) ? GIT_EUSER : 0;
}

static void
on_checkout_progress(const char *path, size_t done, size_t total, void *payload)
{
    struct run *r = payload;
    int pct = total ? (int)(done * 100 / total) : 100;
    double now = now_s();

    (void)path;
    if (total == 0 || pct == r->last_pct || (pct < r->last_pct + 10 && now - r->last_time < 1.0))
        return;
    r->last_pct = pct;
    r->last_time = now;
    say(r, "Checking out files: %d%% (%zu/%zu)", pct, done, total);
}


static int checkout_one(struct run *r, const struct co *c, char **sha_out, struct err *e);

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
    char *file = path_join(dest, ".gitmodules");
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
        rc = err_set(e, -EIO, "%s: %s", file, git_msg());
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
        rc = err_set(e, -EIO, "%s: %s", file, git_msg());
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
        say(r, "Submodule %s: no path, URL or commit recorded; skipped", sm->name);
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
    run_init(&sr, &remote, NULL, r->progress, r->arg, r->cancel);
    if (sr.origin && r->origin && strcmp(sr.origin, r->origin) == 0)
        sr.token = r->token;
    key = xasprintf("submodule.%s.url", sm->name);
    if (git_config_set_string(cfg, key, sr.url) < 0) {
        rc = err_set(e, -EIO, "submodule %s: %s", sm->path, git_msg());
        goto out;
    }
    free(key);
    key = xasprintf("submodule.%s.active", sm->name);
    git_config_set_bool(cfg, key, 1);
    git_oid_tostr(hex, sizeof hex, git_tree_entry_id(te));
    dest = path_join(c->dest, sm->path);
    say(r, "Submodule %s: %s at %s", sm->path, sr.url, hex);
    sc = (struct co){
        .cache_dir = c->cache_dir,
        .sha = hex,
        .dest = dest,
        .submodules = c->recursive,
        .recursive = c->recursive,
        .persist = c->persist,
        .level = c->level + 1,
    };
    rc = checkout_one(&sr, &sc, NULL, e);
    if (rc < 0 && rc != -ECANCELED)
        err_prefix(e, "submodule %s: ", sm->path);
out:
    run_free(&sr);
    free(url);
    free(dest);
    free(key);
    git_tree_entry_free(te);
    return rc;
}

/* Checks out the submodules of the commit checked out in c->dest. */
static int
checkout_submodules(struct run *r, git_repository *repo, const git_commit *commit,
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
        rc = err_set(e, -EIO, "%s: submodules: %s", c->dest, git_msg());
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
        rc = err_set(e, -EIO, "%s: %s", c->dest, git_msg());
        goto out;
    }
    if (t->branch) {
        key = xasprintf("refs/heads/%s", t->name);
        if (git_branch_create(&br, repo, t->name, commit, 1) < 0 ||
            git_repository_set_head(repo, key) < 0) {
            rc = err_set(e, -EIO, "%s: branch %s: %s", c->dest, t->name, git_msg());
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
        rc = err_set(e, -EIO, "%s: %s", c->dest, git_msg());
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
        say(r, "Checking out %s (branch %s)", hex, t->name);
    else
        say(r, "Checking out %s", hex);
    git_checkout_options_init(&cko, GIT_CHECKOUT_OPTIONS_VERSION);
    cko.checkout_strategy = GIT_CHECKOUT_FORCE;
    cko.disable_filters = !needs_filters(repo, commit);
    cko.progress_cb = on_checkout_progress;
    cko.progress_payload = r;
    cko.notify_flags = GIT_CHECKOUT_NOTIFY_UPDATED;
    cko.notify_cb = on_checkout_notify;
    cko.notify_payload = r;
    r->last_pct = -1;
    r->last_time = now_s();
    if (git_checkout_head(repo, &cko) < 0) {
        rc = err_set(e, -EIO, "checking out %s in %s: %s", hex, c->dest, git_msg());
        goto out;
    }
    if (c->submodules)
        rc = checkout_submodules(r, repo, commit, c, e);
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
static int
checkout_one(struct run *r, const struct co *c, char **sha_out, struct err *e)
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
        rc = err_set(e, -EIO, "%s: %s", c->dest, git_msg());
        goto out;
    }
    git_config_free(cfg);
    cfg = NULL;
    git_repository_free(repo);
    repo = NULL;
    git_dir = path_join(c->dest, ".git");

    if ((rc = mirror_lock(r, c->cache_dir, &m, e)) < 0)
        goto out;
    for (;;) {
        rc = mirror_open(r, &m, e);
        if (rc == 0)
            rc = mirror_resolve_checkout(r, m.repo, c, &t, e);
        if (rc == 0 || !r->corrupt || m.rebuilt || is_canceled(r))
            break;
        target_free(&t);
        snprintf(why, sizeof why, "%s", e->msg);
        if ((rc = mirror_remove(r, &m, why, e)) < 0)
            break;
    }
    if (rc < 0)
        goto out;
    if ((rc = copy_objects(m.dir, git_dir, e)) < 0 || (rc = write_packed_refs(git_dir, &t, e)) < 0)
        goto out;
    mirror_unlock(&m);

    if (git_repository_open(&repo, c->dest) < 0) {
        rc = err_set(e, -EIO, "%s: %s", c->dest, git_msg());
        goto out;
    }
    if ((rc = dest_finish(r, repo, c, &t, e)) < 0)
        goto out;
    if (sha_out)
        *sha_out = xstrdup(git_oid_tostr(hex, sizeof hex, &t.id));
out:
    mirror_unlock(&m);
    git_config_free(cfg);
    git_repository_free(repo);
    target_free(&t);
    free(git_dir);
    if (rc < 0 && rc != -ECANCELED && is_canceled(r))
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
    if (req->sha && *req->sha && !is_hex(req->sha, 40, 40))
        return err_set(e, -EINVAL, "sha \"%.64s\" is not a full commit id (40 hex digits)",
                       req->sha);
    scm_global_init();
    run_init(&r, &req->remote, req->remote.token, progress, arg, cancel);
    if (req->fetch_depth > 0)
#if LIBGIT2_VER_MAJOR > 1 || (LIBGIT2_VER_MAJOR == 1 && LIBGIT2_VER_MINOR >= 7)
        say(&r, "fetch-depth %d: the mirror cache keeps the full history; checking out from it",
            req->fetch_depth);
#else
        say(&r, "fetch-depth %d: libgit2 %s cannot fetch shallow; fetching the full history",
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
    rc = checkout_one(&r, &c, sha_out, &le);
    err_scrub(&le, r.token);
    if (rc < 0 && e)
        *e = le;
    run_free(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Actions: resolve a ref in the mirror, export its tree
 * ------------------------------------------------------------------------------------------ */

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
    if (is_hex(ref, 40, 40)) {
        git_oid_fromstr(out, ref);
        git_oid_tostr(hex, sizeof hex, out);
        if (has_commit(repo, out))
            return remote_probe(r, e); /* a commit never changes: no fetch */
        if ((rc = mirror_update(r, repo, NULL, e)) < 0)
            return rc;
        if (!has_commit(repo, out)) {
            struct err ignored = {0};

            rc = mirror_fetch_sha(r, repo, hex, &ignored);
            if (rc < 0 && (is_canceled(r) || r->auth_failed || r->auth_missing)) {
                *e = ignored;
                return rc;
            }
            r->corrupt = false;
            if (!has_commit(repo, out))
                return err_set(e, ERR_NOTFOUND, "commit %s not found in %s", hex, r->url);
        }
        return 0;
    }
    full = strncmp(ref, "refs/", 5) == 0 ? xstrdup(ref) : xasprintf("refs/tags/%s", ref);
    rc = ref_name_ok(full);
    free(full);
    if (!rc)
        return err_set(e, -EINVAL, "Unable to resolve action `%s@%.100s`: not a valid ref name",
                       r->url, ref);
    bool other = strncmp(ref, "refs/", 5) == 0 && strncmp(ref, "refs/heads/", 11) != 0 &&
                 strncmp(ref, "refs/tags/", 10) != 0;
    if ((rc = mirror_update(r, repo, other ? ref : NULL, e)) < 0)
        return rc;
    if (strncmp(ref, "refs/", 5) == 0) {
        if (ref_commit(repo, ref, out) == 0)
            return 0;
    } else {
        /* As git's rev-parse: a tag before a branch of the same name. */
        full = xasprintf("refs/tags/%s", ref);
        rc = ref_commit(repo, full, out);
        free(full);
        if (rc == 0)
            return 0;
        full = xasprintf("refs/heads/%s", ref);
        rc = ref_commit(repo, full, out);
        free(full);
        if (rc == 0)
            return 0;
    }
    git_error_clear();
    if (is_hex(ref, 7, 39) && git_oid_fromstrn(&prefix, ref, n) == 0 &&
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
        return mirror_fail(r, e, path);
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
        path = path_join(dir, name);
        switch (mode) {
        case GIT_FILEMODE_TREE:
            if (mkdir(path, 0755) < 0)
                rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
            else if (git_tree_lookup(&sub, repo, git_tree_entry_id(te)) < 0)
                rc = mirror_fail(r, e, path);
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
    if ((rc = mkdir_p(base, 0755)) < 0)
        return err_set(e, rc, "%s: %s", base, strerror(-rc));
    tmp = xasprintf("%s/.tmp-%s-XXXXXX", base, hex);
    if (mkdtemp(tmp) == NULL) {
        rc = err_set(e, -errno, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    chmod(tmp, 0755);
    if (git_commit_lookup(&commit, repo, id) < 0 || git_commit_tree(&tree, commit) < 0) {
        rc = mirror_fail(r, e, hex);
        goto out;
    }
    if ((rc = export_tree(r, repo, tree, tmp, e)) < 0)
        goto out;
    if (rename(tmp, dir) < 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            rc = err_set(e, -errno, "%s: %s", dir, strerror(errno));
        goto out; /* else another export won: use it */
    }
    say(r, "Exported %s at %s into %s", r->url, hex, dir);
out:
    rm_rf(tmp); /* gone after a successful rename */
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
    scm_global_init();
    run_init(&r, remote, remote->token, progress, arg, cancel);
    san = url_sanitise(r.url);
    base = xasprintf("%s/actions/%s", cache_dir, san);
    if (is_hex(ref, 40, 40)) { /* an export of a full sha is final: no lock, no fetch */
        for (size_t i = 0; i < 40; i++)
            hex[i] = (char)((ref[i] >= 'A' && ref[i] <= 'F') ? ref[i] - 'A' + 'a' : ref[i]);
        hex[40] = '\0';
        dir = path_join(base, hex);
        if (is_dir(dir)) {
            if ((rc = remote_probe(&r, &le)) == 0)
                say(&r, "Using %s at %s from the action cache", r.url, hex);
            goto done;
        }
        free(dir);
        dir = NULL;
    }
    if ((rc = mirror_lock(&r, cache_dir, &m, &le)) < 0)
        goto done;
    for (;;) {
        rc = mirror_open(&r, &m, &le);
        if (rc == 0)
            rc = mirror_resolve_action(&r, m.repo, ref, &id, &le);
        if (rc == 0) {
            git_oid_tostr(hex, sizeof hex, &id);
            free(dir);
            dir = path_join(base, hex);
            if (is_dir(dir))
                say(&r, "Using %s at %s from the action cache", r.url, hex);
            else
                rc = export_action(&r, m.repo, &id, base, dir, &le);
        }
        if (rc == 0 || !r.corrupt || m.rebuilt || is_canceled(&r))
            break;
        snprintf(why, sizeof why, "%s", le.msg);
        if ((rc = mirror_remove(&r, &m, why, &le)) < 0)
            break;
    }
done:
    mirror_unlock(&m);
    if (rc < 0 && rc != -ECANCELED && is_canceled(&r))
        rc = err_set(&le, -ECANCELED, "%s: canceled", r.url);
    if (rc == 0) {
        if (dir_out) {
            *dir_out = dir;
            dir = NULL;
        }
        if (sha_out)
            *sha_out = xstrdup(hex);
    } else {
        err_scrub(&le, r.token);
        if (e)
            *e = le;
    }
    free(dir);
    free(base);
    free(san);
    run_free(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Off the loop: jobs on libuv's thread pool
 * ------------------------------------------------------------------------------------------ */

struct scm_job {
    uv_work_t work;   /* ->data: the job */
    uv_async_t async; /* progress lines from the worker; ->data: the job */
    bool action;
    /* Owned copies of the inputs; req's strings point at them. */
    struct scm_checkout_req req;
    char *cache_dir, *url, *token, *ca_file, *ref, *sha, *dest;
    volatile bool cancel; /* set on the loop, read by the worker */
    /* Written by the worker only. */
    int rc;
    struct err err;
    char *out_dir, *out_sha;
    /* Progress lines waiting for the loop. */
    pthread_mutex_t mu;
    char **lines;
    size_t nlines, caplines;
    unsigned int dropped;
    scm_progress_fn progress;
    scm_done_fn done;
    void *arg;
};

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void
job_free(struct scm_job *j)
{
    for (size_t i = 0; i < j->nlines; i++)
        free(j->lines[i]);
    free(j->lines);
    pthread_mutex_destroy(&j->mu);
    free(j->cache_dir);
    free(j->url);
    if (j->token)
        explicit_bzero(j->token, strlen(j->token));
    free(j->token);
    free(j->ca_file);
    free(j->ref);
    free(j->sha);
    free(j->dest);
    free(j->out_dir);
    free(j->out_sha);
    free(j);
}

static void
on_job_closed(uv_handle_t *h)
{
    job_free(h->data);
}

/* Worker thread: queue the line for the loop. */
static void
on_job_progress(void *arg, const char *line)
{
    struct scm_job *j = arg;

    pthread_mutex_lock(&j->mu);
    if (j->nlines >= SCM_MAX_QUEUED_LINES) {
        j->dropped++;
    } else {
        if (j->nlines == j->caplines) {
            j->caplines = j->caplines ? 2 * j->caplines : 16;
            j->lines = xreallocarray(j->lines, j->caplines, sizeof *j->lines);
        }
        j->lines[j->nlines++] = xstrdup(line);
    }
    pthread_mutex_unlock(&j->mu);
    uv_async_send(&j->async);
}

/* Loop: hand the queued lines to the caller. */
static void
job_deliver(struct scm_job *j)
{
    char **lines;
    size_t n;
    unsigned int dropped;

    pthread_mutex_lock(&j->mu);
    lines = j->lines;
    n = j->nlines;
    dropped = j->dropped;
    j->lines = NULL;
    j->nlines = j->caplines = 0;
    j->dropped = 0;
    pthread_mutex_unlock(&j->mu);
    for (size_t i = 0; i < n; i++) {
        if (j->progress)
            j->progress(j->arg, lines[i]);
        free(lines[i]);
    }
    free(lines);
    if (dropped && j->progress) {
        char line[64];

        snprintf(line, sizeof line, "(%u progress lines dropped)", dropped);
        j->progress(j->arg, line);
    }
}

static void
on_job_async(uv_async_t *h)
{
    job_deliver(h->data);
}

static void
on_job_work(uv_work_t *w)
{
    struct scm_job *j = w->data;

    if (j->action)
        j->rc = scm_fetch_action(j->cache_dir, &j->req.remote, j->ref, on_job_progress, j,
                                 &j->cancel, &j->out_dir, &j->out_sha, &j->err);
    else
        j->rc = scm_checkout(&j->req, on_job_progress, j, &j->cancel, &j->out_sha, &j->err);
}

static void
on_job_after(uv_work_t *w, int status)
{
    struct scm_job *j = w->data;

    if (status == UV_ECANCELED) {
        char *clean = NULL, *origin = NULL;

        url_parse(j->url, &clean, &origin);
        j->rc = err_set(&j->err, -ECANCELED, "%s: canceled", clean);
        free(clean);
        free(origin);
    }
    job_deliver(j);
    j->done(j->arg, j->rc, &j->err, j->out_dir, j->out_sha);
    uv_close((uv_handle_t *)&j->async, on_job_closed);
}

/* A job with copies of the remote's strings, its async handle ready. */
static struct scm_job *
job_new(uv_loop_t *loop, const struct scm_remote *remote, scm_progress_fn progress,
        scm_done_fn done, void *arg, int *rc_out, struct err *e)
{
    struct scm_job *j = xcalloc(1, sizeof *j);
    int rc;

    pthread_mutex_init(&j->mu, NULL);
    j->url = dup_or_null(remote->url);
    j->token = dup_or_null(remote->token);
    j->ca_file = dup_or_null(remote->ca_file);
    j->req.remote.url = j->url;
    j->req.remote.token = j->token;
    j->req.remote.ca_file = j->ca_file;
    j->req.remote.insecure = remote->insecure;
    j->progress = progress;
    j->done = done;
    j->arg = arg;
    j->work.data = j;
    j->async.data = j;
    if ((rc = uv_async_init(loop, &j->async, on_job_async)) < 0) {
        *rc_out = err_set(e, rc, "uv_async_init: %s", uv_strerror(rc));
        job_free(j);
        return NULL;
    }
    return j;
}

static int
job_queue(uv_loop_t *loop, struct scm_job *j, struct scm_job **out, struct err *e)
{
    int rc = uv_queue_work(loop, &j->work, on_job_work, on_job_after);

    if (rc < 0) {
        err_set(e, rc, "uv_queue_work: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&j->async, on_job_closed);
        if (out)
            *out = NULL;
        return rc;
    }
    if (out)
        *out = j;
    return 0;
}

int
scm_checkout_start(uv_loop_t *loop, const struct scm_checkout_req *req,
                   scm_progress_fn progress, scm_done_fn done, void *arg, struct scm_job **out,
                   struct err *e)
{
    int rc = 0;
    struct scm_job *j = job_new(loop, &req->remote, progress, done, arg, &rc, e);

    if (j == NULL)
        return rc;
    j->cache_dir = dup_or_null(req->cache_dir);
    j->ref = dup_or_null(req->ref);
    j->sha = dup_or_null(req->sha);
    j->dest = dup_or_null(req->dest);
    j->req.cache_dir = j->cache_dir;
    j->req.ref = j->ref;
    j->req.sha = j->sha;
    j->req.dest = j->dest;
    j->req.fetch_depth = req->fetch_depth;
    j->req.clean = req->clean;
    j->req.submodules = req->submodules;
    j->req.recursive = req->recursive;
    j->req.lfs = req->lfs;
    j->req.persist_credentials = req->persist_credentials;
    return job_queue(loop, j, out, e);
}

int
scm_fetch_action_start(uv_loop_t *loop, const char *cache_dir, const struct scm_remote *remote,
                       const char *ref, scm_progress_fn progress, scm_done_fn done, void *arg,
                       struct scm_job **out, struct err *e)
{
    int rc = 0;
    struct scm_job *j = job_new(loop, remote, progress, done, arg, &rc, e);

    if (j == NULL)
        return rc;
    j->action = true;
    j->cache_dir = dup_or_null(cache_dir);
    j->ref = dup_or_null(ref);
    return job_queue(loop, j, out, e);
}

void
scm_job_cancel(struct scm_job *j)
{
    if (j == NULL)
        return;
    j->cancel = true;
    uv_cancel((uv_req_t *)&j->work); /* not started yet: after_work gets UV_ECANCELED */
}
