/* test-scm.c: remote repositories through the mirror cache, against real repositories made
 * with the git CLI and served over smart HTTP by tests/servers/gitserver.py (git-http-backend).
 * Covers: checkout of the default branch (HEAD on the branch, tracking origin, a clean `git
 * status`, a self-contained .git that works with the cache gone, modes and symlinks), an exact
 * sha (detached), a branch, tags (light and annotated), ref + sha, refs/pull/N/head (and one
 * that is gone), a commit only reachable by id (fetched by id) and one that does not exist
 * (exact message), bad refs; a sub-path dest, a non-empty dest refused and cleaned;
 * .gitattributes filters applied; submodules with relative URLs, one level and recursive; a
 * private repository with the token (persisted or not: checked in .git/config and by `git
 * fetch` with it; passed to same-host submodules), a wrong or missing token (clear message,
 * no token in it, dest left empty, a warm mirror no way around it); credentials in the URL
 * dropped; the mirror reused (no pack requested the second time, same directory) and updated
 * by a new push; four concurrent checkouts (two processes, two threads) on an empty cache; the
 * mirror's flock held elsewhere makes a checkout wait; damaged mirrors rebuilt (truncated
 * pack, deleted packs, garbage HEAD, garbage config, no objects); lfs refused, the
 * fetch-depth note; action exports (no .git, modes, symlinks, reuse, a full sha, the
 * short-sha refusal, an unknown ref, a tree holding .git refused, a private action's cached
 * export refused without the token); cancellation during a transfer; the async wrappers on a
 * real loop (progress on the loop thread, done once, cancellation, handles closed); TLS with a
 * CA file, with the wrong one, without one, and insecure; libgit2 loaded on first use only (not
 * mapped before), and a library that cannot be loaded as a clear error from every entry point. */
#include "harness.h"

#include "scm-git.h"
#include "scm.h"
#include "wswalk.h"

#include "runner/xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define TOKEN "s3cret-t0ken"
#define CACHE "cache"

/* ------------------------------------------------------------------------------------------
 * Fixtures: shell, repositories, the server, progress lines
 * ------------------------------------------------------------------------------------------ */

static char *vfmt(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *
vfmt(const char *fmt, va_list ap)
{
    char *s = NULL;

    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    return s;
}

static void sh_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sh_out_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs a shell command; fails the test unless it exits 0. */
static void
sh_at(int line, const char *fmt, ...)
{
    va_list ap;
    char *cmd;
    int st;

    va_start(ap, fmt);
    cmd = vfmt(fmt, ap);
    va_end(ap);
    st = system(cmd);
    if (st != 0)
        test_fail(__FILE__, line, "command failed (status %d): %s", st, cmd);
    free(cmd);
}

/* Runs a shell command and returns its stdout without the trailing newline. */
static char *
sh_out_at(int line, const char *fmt, ...)
{
    va_list ap;
    char *cmd, *out = xcalloc(1, 65536);
    size_t n = 0, r;
    FILE *p;
    int st;

    va_start(ap, fmt);
    cmd = vfmt(fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    if (p == NULL)
        test_fail(__FILE__, line, "popen %s", cmd);
    while (n < 65535 && (r = fread(out + n, 1, 65535 - n, p)) > 0)
        n += r;
    st = pclose(p);
    if (st != 0)
        test_fail(__FILE__, line, "command failed (status %d): %s", st, cmd);
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    free(cmd);
    return out;
}

#define SH(...) sh_at(__LINE__, __VA_ARGS__)
#define SH_OUT(...) sh_out_at(__LINE__, __VA_ARGS__)

#define GITENV                                                                                     \
    "set -e; export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t "       \
    "GIT_COMMITTER_EMAIL=t@example.com GIT_CONFIG_NOSYSTEM=1; "

/* srv/pub.git: main (2 commits: a, d/x executable, lnk -> a), feature (+1), tags v1 (light,
 * first commit) and v2 (annotated, main), refs/pull/1/head (a commit on no branch) and
 * refs/keep/x (another one; not fetched by the heads/tags refspecs). */
static void
repo_pub(void)
{
    SH(GITENV "mkdir -p srv w; git init -q --bare -b main srv/pub.git; "
              "git init -q -b main w/pub; cd w/pub; "
              "echo one > a; mkdir d; printf '#!/bin/sh\\necho x\\n' > d/x; chmod +x d/x; "
              "ln -s a lnk; git add .; git commit -qm one; git tag v1; "
              "echo two >> a; git commit -qam two; git tag -a v2 -m 'version 2'; "
              "git checkout -qb feature; echo f > f; git add f; git commit -qm feat; "
              "git checkout -q main; git checkout -q --detach; echo pr > pr; git add pr; "
              "git commit -qm pr; git push -q ../../srv/pub.git HEAD:refs/pull/1/head; "
              "echo keep > keep; git add keep; git commit -qm keep; "
              "git push -q ../../srv/pub.git HEAD:refs/keep/x; git checkout -q main; "
              "git push -q ../../srv/pub.git main feature v1 v2");
}

/* srv/deep.git; srv/lib.git with deep as a submodule (../deep.git); srv/super.git with lib as
 * a submodule (../lib.git). */
static void
repo_super(void)
{
    SH(GITENV "mkdir -p srv w; for r in deep lib super; do git init -q --bare -b main "
              "srv/$r.git; done; "
              "git init -q -b main w/deep; cd w/deep; echo deep > deep.txt; git add .; "
              "git commit -qm deep; git push -q ../../srv/deep.git main; D=$(git rev-parse HEAD); "
              "cd ..; git init -q -b main lib; cd lib; echo lib > lib.txt; "
              "printf '[submodule \"deep\"]\\n\\tpath = deep\\n\\turl = ../deep.git\\n' > "
              ".gitmodules; git add .; git update-index --add --cacheinfo 160000,$D,deep; "
              "git commit -qm lib; git push -q ../../srv/lib.git main; L=$(git rev-parse HEAD); "
              "cd ..; git init -q -b main super; cd super; echo super > super.txt; "
              "printf '[submodule \"lib\"]\\n\\tpath = sub/lib\\n\\turl = ../lib.git\\n' > "
              ".gitmodules; git add .; git update-index --add --cacheinfo 160000,$L,sub/lib; "
              "git commit -qm super; git push -q ../../srv/super.git main");
}

/* srv/priv.git (private) with a submodule srv/privlib.git (private too, ../privlib.git). */
static void
repo_priv(void)
{
    SH(GITENV "mkdir -p srv w; for r in priv privlib; do git init -q --bare -b main "
              "srv/$r.git; done; "
              "git init -q -b main w/privlib; cd w/privlib; echo pl > pl.txt; git add .; "
              "git commit -qm pl; git push -q ../../srv/privlib.git main; P=$(git rev-parse HEAD); "
              "cd ..; git init -q -b main priv; cd priv; echo secret > s.txt; "
              "printf '[submodule \"pl\"]\\n\\tpath = pl\\n\\turl = ../privlib.git\\n' > "
              ".gitmodules; git add .; git update-index --add --cacheinfo 160000,$P,pl; "
              "git commit -qm priv; git push -q ../../srv/priv.git main");
}

/* srv/big.git: 300 files of 16 KiB of random bytes (about 5 MiB that do not compress). */
static void
repo_big(void)
{
    SH(GITENV "mkdir -p srv w; git init -q --bare -b main srv/big.git; "
              "git init -q -b main w/big; cd w/big; for i in $(seq 300); do "
              "head -c 16384 /dev/urandom > f$i; done; git add .; git commit -qm big; "
              "git push -q ../../srv/big.git main");
}

struct srv {
    pid_t pid;
    int port;
    char url[128]; /* http(s)://127.0.0.1:PORT */
};

/* Starts tests/servers/gitserver.py on srv/ (priv and privlib private), logging to server.log. */
static void
srv_start(struct srv *s, const char *extra)
{
    char *cmd = xasprintf("exec python3 %s/tests/servers/gitserver.py --root srv --token %s "
                          "--private priv,privlib --port-file port --log server.log %s "
                          ">/dev/null 2>server.err",
                          RUNNERD_SOURCE_DIR, TOKEN, extra ? extra : "");
    char *txt = NULL;

    unlink("port");
    s->pid = fork();
    ASSERT(s->pid >= 0);
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    for (int i = 0; i < 1000 && (txt = test_read_file("port", NULL)) == NULL; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    if (txt == NULL)
        test_fail(__FILE__, __LINE__, "gitserver.py did not start (see server.err)");
    s->port = atoi(txt);
    free(txt);
    ASSERT(s->port > 0);
    snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d",
             extra && strstr(extra, "--tls") ? "https" : "http", s->port);
}

static void
srv_stop(struct srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

/* How many lines of server.log contain needle. */
static int
log_count(const char *needle)
{
    char *txt = test_read_file("server.log", NULL);
    int n = 0;

    for (const char *p = txt; p && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(txt);
    return n;
}

struct lines {
    pthread_mutex_t mu;
    char **v;
    size_t n;
    volatile bool cancel;
    const char *cancel_on; /* set cancel when a line contains this */
    bool on_loop_thread;   /* every line came on the main thread */
    pthread_t main;
};

static void
lines_init(struct lines *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->main = pthread_self();
    l->on_loop_thread = true;
}

static void
lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    pthread_mutex_destroy(&l->mu);
}

static void
on_line(void *arg, const char *line)
{
    struct lines *l = arg;

    pthread_mutex_lock(&l->mu);
    l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
    l->v[l->n++] = xstrdup(line);
    if (!pthread_equal(pthread_self(), l->main))
        l->on_loop_thread = false;
    if (l->cancel_on && strstr(line, l->cancel_on))
        l->cancel = true;
    pthread_mutex_unlock(&l->mu);
}

/* The first progress line containing needle, or NULL. */
static const char *
lines_find(struct lines *l, const char *needle)
{
    for (size_t i = 0; i < l->n; i++)
        if (strstr(l->v[i], needle))
            return l->v[i];
    return NULL;
}

static char *
url_of(const struct srv *s, const char *repo)
{
    return xasprintf("%s/%s.git", s->url, repo);
}

/* A checkout request of repo into dest with the cache in CACHE. */
static struct scm_checkout_req
req_of(const char *url, const char *dest)
{
    return (struct scm_checkout_req){
        .cache_dir = CACHE,
        .remote = {.url = url},
        .dest = dest,
    };
}

/* Checks out, failing the test on error; returns the sha (free it). */
static char *
checkout_ok(const struct scm_checkout_req *req, struct lines *l)
{
    struct err e = {0};
    char *sha = NULL;
    int rc = scm_checkout(req, l ? on_line : NULL, l, l ? &l->cancel : NULL, &sha, &e);

    if (rc < 0)
        test_fail(__FILE__, __LINE__, "scm_checkout %s: %d %s", req->remote.url, rc, e.msg);
    ASSERT(sha != NULL);
    ASSERT_EQ(strlen(sha), 40);
    return sha;
}

/* `git status --porcelain` is empty in dir. */
static void
assert_clean(const char *dir)
{
    char *st = SH_OUT("git -C %s status --porcelain --ignore-submodules=none", dir);

    if (*st != '\0')
        test_fail(__FILE__, __LINE__, "git status in %s is not clean:\n%s", dir, st);
    free(st);
}

static void
assert_str_file(const char *path, const char *want)
{
    char *got = test_read_file(path, NULL);

    ASSERT_STR_EQ(got, want);
    free(got);
}

static bool
exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

static bool
dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    bool empty = true;

    ASSERT(d != NULL);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = false;
    closedir(d);
    return empty;
}

/* The one mirror directory under CACHE/mirrors (fails unless there is exactly one). */
static char *
the_mirror(void)
{
    char *m = SH_OUT("cd " CACHE "/mirrors && ls -d */ | tr -d /");

    ASSERT(*m != '\0' && strchr(m, '\n') == NULL);
    char *p = xasprintf(CACHE "/mirrors/%s", m);
    free(m);
    return p;
}

/* ------------------------------------------------------------------------------------------
 * Checkout
 * ------------------------------------------------------------------------------------------ */

TEST(checkout_default_branch)
{
    struct srv s;
    struct lines l;
    char *url, *sha, *main_sha, *txt;

    repo_pub();
    srv_start(&s, NULL);
    lines_init(&l);
    url = url_of(&s, "pub");
    struct scm_checkout_req req = req_of(url, "ws");
    sha = checkout_ok(&req, &l);
    main_sha = SH_OUT("git -C srv/pub.git rev-parse main");
    ASSERT_STR_EQ(sha, main_sha);
    assert_clean("ws");
    txt = SH_OUT("git -C ws symbolic-ref HEAD");
    ASSERT_STR_EQ(txt, "refs/heads/main");
    free(txt);
    txt = SH_OUT("git -C ws rev-parse --abbrev-ref main@{upstream}");
    ASSERT_STR_EQ(txt, "origin/main");
    free(txt);
    txt = SH_OUT("git -C ws remote get-url origin");
    ASSERT_STR_EQ(txt, url);
    free(txt);
    txt = SH_OUT("git -C ws for-each-ref --format='%%(refname)' | sort | tr '\\n' ' '");
    ASSERT_STR_EQ(txt, "refs/heads/main refs/remotes/origin/HEAD refs/remotes/origin/feature "
                       "refs/remotes/origin/main refs/tags/v1 refs/tags/v2 ");
    free(txt);
    assert_str_file("ws/a", "one\ntwo\n");
    ASSERT(access("ws/d/x", X_OK) == 0);
    txt = SH_OUT("readlink ws/lnk");
    ASSERT_STR_EQ(txt, "a");
    free(txt);
    ASSERT(lines_find(&l, "Fetching ") != NULL);
    ASSERT(lines_find(&l, "Checking out ") != NULL);
    ASSERT(lines_find(&l, main_sha) != NULL);
    /* Self-contained: no alternates, and history and status survive the cache's removal. */
    ASSERT(!exists("ws/.git/objects/info/alternates"));
    SH("rm -rf " CACHE);
    txt = SH_OUT("git -C ws log --format=%%s | tr '\\n' ' '");
    ASSERT_STR_EQ(txt, "two one ");
    free(txt);
    SH("git -C ws fsck --no-progress --no-dangling 2>&1");
    assert_clean("ws");
    free(main_sha);
    free(sha);
    free(url);
    lines_free(&l);
    srv_stop(&s);
}

TEST(checkout_exact_sha_detached)
{
    struct srv s;
    char *url, *first, *sha, *txt;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    first = SH_OUT("git -C srv/pub.git rev-parse v1");
    struct scm_checkout_req req = req_of(url, "ws");
    req.sha = first;
    sha = checkout_ok(&req, NULL);
    ASSERT_STR_EQ(sha, first);
    txt = SH_OUT("git -C ws rev-parse HEAD");
    ASSERT_STR_EQ(txt, first);
    free(txt);
    SH("! git -C ws symbolic-ref -q HEAD");
    assert_str_file("ws/a", "one\n");
    assert_clean("ws");
    free(sha);
    free(first);
    free(url);
    srv_stop(&s);
}

TEST(checkout_branch_and_tags)
{
    struct srv s;
    char *url, *sha, *want, *txt;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");

    /* A branch by short name and by full name. */
    const char *branches[] = {"feature", "refs/heads/feature"};
    for (int i = 0; i < 2; i++) {
        char dest[16];

        snprintf(dest, sizeof dest, "b%d", i);
        struct scm_checkout_req req = req_of(url, dest);
        req.ref = branches[i];
        sha = checkout_ok(&req, NULL);
        want = SH_OUT("git -C srv/pub.git rev-parse feature");
        ASSERT_STR_EQ(sha, want);
        txt = SH_OUT("git -C %s symbolic-ref HEAD", dest);
        ASSERT_STR_EQ(txt, "refs/heads/feature");
        free(txt);
        txt = SH_OUT("git -C %s rev-parse --abbrev-ref feature@{upstream}", dest);
        ASSERT_STR_EQ(txt, "origin/feature");
        free(txt);
        assert_str_file("b0/f", "f\n");
        assert_clean(dest);
        free(want);
        free(sha);
    }

    /* An annotated tag (peeled), and a light one by full name: detached. */
    struct scm_checkout_req req = req_of(url, "t2");
    req.ref = "v2";
    sha = checkout_ok(&req, NULL);
    want = SH_OUT("git -C srv/pub.git rev-parse 'v2^{commit}'");
    ASSERT_STR_EQ(sha, want);
    SH("! git -C t2 symbolic-ref -q HEAD");
    txt = SH_OUT("git -C t2 describe --tags");
    ASSERT_STR_EQ(txt, "v2");
    free(txt);
    assert_clean("t2");
    free(want);
    free(sha);
    req = req_of(url, "t1");
    req.ref = "refs/tags/v1";
    sha = checkout_ok(&req, NULL);
    want = SH_OUT("git -C srv/pub.git rev-parse v1");
    ASSERT_STR_EQ(sha, want);
    assert_str_file("t1/a", "one\n");
    free(want);
    free(sha);

    /* A ref that does not exist. */
    struct err e = {0};
    req = req_of(url, "none");
    req.ref = "no-such-branch";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), ERR_NOTFOUND);
    txt = xasprintf("ref no-such-branch not found in %s", url);
    ASSERT_STR_EQ(e.msg, txt);
    free(txt);
    ASSERT(dir_empty("none"));
    free(url);
    srv_stop(&s);
}

TEST(checkout_ref_and_sha)
{
    struct srv s;
    char *url, *sha, *first, *txt;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    first = SH_OUT("git -C srv/pub.git rev-parse v1");
    struct scm_checkout_req req = req_of(url, "ws");
    req.ref = "refs/heads/main";
    req.sha = first;
    sha = checkout_ok(&req, NULL);
    ASSERT_STR_EQ(sha, first);
    txt = SH_OUT("git -C ws symbolic-ref HEAD");
    ASSERT_STR_EQ(txt, "refs/heads/main");
    free(txt);
    txt = SH_OUT("git -C ws rev-parse main origin/main");
    char *both = xasprintf("%s\n%s", first, first);
    ASSERT_STR_EQ(txt, both);
    free(both);
    free(txt);
    assert_str_file("ws/a", "one\n");
    assert_clean("ws");
    free(sha);
    free(first);
    free(url);
    srv_stop(&s);
}

TEST(checkout_pull_ref_and_sha_by_id)
{
    struct srv s;
    struct lines l;
    struct err e = {0};
    char *url, *sha, *want, *txt;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");

    struct scm_checkout_req req = req_of(url, "pr");
    req.ref = "refs/pull/1/head";
    sha = checkout_ok(&req, NULL);
    want = SH_OUT("git -C srv/pub.git rev-parse refs/pull/1/head");
    ASSERT_STR_EQ(sha, want);
    txt = SH_OUT("git -C pr rev-parse refs/remotes/pull/1/head");
    ASSERT_STR_EQ(txt, want);
    free(txt);
    assert_str_file("pr/pr", "pr\n");
    assert_clean("pr");
    free(want);
    free(sha);

    /* A commit only under refs/keep/: not fetched by the refspecs, so fetched by id. */
    lines_init(&l);
    want = SH_OUT("git -C srv/pub.git rev-parse refs/keep/x");
    req = req_of(url, "keep");
    req.sha = want;
    sha = checkout_ok(&req, &l);
    ASSERT_STR_EQ(sha, want);
    ASSERT(lines_find(&l, "fetching it by id") != NULL);
    assert_str_file("keep/keep", "keep\n");
    assert_clean("keep");
    free(sha);
    free(want);

    /* A commit that is nowhere. */
    req = req_of(url, "nowhere");
    req.sha = "0123456789abcdef0123456789abcdef01234567";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), ERR_NOTFOUND);
    txt = xasprintf("commit 0123456789abcdef0123456789abcdef01234567 not found in %s", url);
    ASSERT_STR_EQ(e.msg, txt);
    free(txt);
    ASSERT(dir_empty("nowhere"));

    /* A pull ref that is gone: not found alone; with its commit, the commit is checked out. */
    req = req_of(url, "gone");
    req.ref = "refs/pull/99/head";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), ERR_NOTFOUND);
    txt = xasprintf("ref refs/pull/99/head not found in %s", url);
    ASSERT_STR_EQ(e.msg, txt);
    free(txt);
    want = SH_OUT("git -C srv/pub.git rev-parse main");
    req.sha = want;
    sha = checkout_ok(&req, NULL);
    ASSERT_STR_EQ(sha, want);
    assert_clean("gone");
    free(sha);
    free(want);

    /* Not a ref name; not a full sha. */
    req = req_of(url, "bad");
    req.ref = "refs/x:refs/heads/main";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EINVAL);
    ASSERT_STR_CONTAINS(e.msg, "not a valid ref name");
    req.ref = "a..b";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EINVAL);
    req.ref = NULL;
    req.sha = "0123456";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EINVAL);
    ASSERT_STR_CONTAINS(e.msg, "not a full commit id");
    lines_free(&l);
    free(url);
    srv_stop(&s);
}

TEST(checkout_subpath_dest_and_clean)
{
    struct srv s;
    struct err e = {0};
    char *url, *sha, *txt;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    struct scm_checkout_req req = req_of(url, "ws/deep/er/src");
    sha = checkout_ok(&req, NULL);
    assert_clean("ws/deep/er/src");
    txt = SH_OUT("git -C ws/deep/er/src rev-parse --show-toplevel");
    ASSERT_STR_CONTAINS(txt, "/ws/deep/er/src");
    free(txt);
    free(sha);

    /* Not empty: refused, nothing touched; with clean: emptied first. */
    SH("mkdir -p busy/sub && echo mine > busy/keep && echo x > busy/sub/y");
    req = req_of(url, "busy");
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EEXIST);
    ASSERT_STR_CONTAINS(e.msg, "busy is not empty");
    assert_str_file("busy/keep", "mine\n");
    req.clean = true;
    sha = checkout_ok(&req, NULL);
    ASSERT(!exists("busy/keep"));
    ASSERT(!exists("busy/sub"));
    assert_str_file("busy/a", "one\ntwo\n");
    assert_clean("busy");
    free(sha);
    /* clean again over a checkout (read-only pack files inside .git) */
    req.ref = "feature";
    sha = checkout_ok(&req, NULL);
    assert_str_file("busy/f", "f\n");
    assert_clean("busy");
    free(sha);
    free(url);
    srv_stop(&s);
}

TEST(checkout_submodules)
{
    struct srv s;
    struct lines l;
    char *url, *sha, *txt;

    repo_super();
    srv_start(&s, NULL);
    lines_init(&l);
    url = url_of(&s, "super");

    /* Without: the gitlink's directory stays empty. */
    struct scm_checkout_req req = req_of(url, "none");
    sha = checkout_ok(&req, NULL);
    ASSERT(dir_empty("none/sub/lib"));
    assert_clean("none");
    free(sha);

    /* One level. */
    req = req_of(url, "one");
    req.submodules = true;
    sha = checkout_ok(&req, &l);
    assert_str_file("one/super.txt", "super\n");
    assert_str_file("one/sub/lib/lib.txt", "lib\n");
    ASSERT(dir_empty("one/sub/lib/deep"));
    txt = SH_OUT("git -C one submodule status | cut -c1");
    ASSERT_STR_EQ(txt, " ");
    free(txt);
    txt = SH_OUT("git -C one config submodule.lib.url");
    char *lib_url = url_of(&s, "lib");
    ASSERT_STR_EQ(txt, lib_url);
    free(txt);
    txt = SH_OUT("git -C one/sub/lib remote get-url origin");
    ASSERT_STR_EQ(txt, lib_url);
    free(txt);
    free(lib_url);
    ASSERT(lines_find(&l, "Submodule sub/lib") != NULL);
    assert_clean("one");
    free(sha);

    /* Recursive. */
    req = req_of(url, "all");
    req.submodules = req.recursive = true;
    sha = checkout_ok(&req, NULL);
    assert_str_file("all/sub/lib/deep/deep.txt", "deep\n");
    txt = SH_OUT("git -C all submodule status --recursive | cut -c1 | tr -d '\\n'");
    ASSERT_STR_EQ(txt, "  ");
    free(txt);
    assert_clean("all");
    assert_clean("all/sub/lib");
    free(sha);
    free(url);
    lines_free(&l);
    srv_stop(&s);
}

TEST(checkout_private_token)
{
    struct srv s;
    char *url, *sha, *txt;

    repo_priv();
    srv_start(&s, NULL);
    url = url_of(&s, "priv");

    /* Not persisted: no trace of the token in dest. */
    struct scm_checkout_req req = req_of(url, "ws");
    req.remote.token = TOKEN;
    req.submodules = true;
    sha = checkout_ok(&req, NULL);
    assert_str_file("ws/s.txt", "secret\n");
    assert_str_file("ws/pl/pl.txt", "pl\n"); /* the token went to the submodule too */
    assert_clean("ws");
    SH("! grep -r -q -e '" TOKEN "' -e extraheader ws");
    ASSERT(log_count("GET /priv.git/info/refs?service=git-upload-pack 401") >= 1);
    ASSERT(log_count("GET /priv.git/info/refs?service=git-upload-pack 200") >= 1);
    ASSERT(log_count("POST /privlib.git/git-upload-pack 200") >= 1);
    free(sha);

    /* Persisted as actions/checkout does; git itself can fetch with it. */
    req = req_of(url, "kept");
    req.remote.token = TOKEN;
    req.persist_credentials = true;
    sha = checkout_ok(&req, NULL);
    txt = SH_OUT("git -C kept config --get-regexp 'http\\..*\\.extraheader'");
    char *want = xasprintf("http.%s/.extraheader AUTHORIZATION: basic %s", s.url,
                           "eC1hY2Nlc3MtdG9rZW46czNjcmV0LXQwa2Vu");
    ASSERT_STR_EQ(txt, want);
    free(want);
    free(txt);
    SH("git -C kept -c credential.helper= fetch -q origin </dev/null");
    SH("! git -C ws -c credential.helper= -c core.askPass=false fetch -q origin </dev/null "
       "2>/dev/null");
    free(sha);
    free(url);
    srv_stop(&s);
}

TEST(checkout_wrong_or_missing_token)
{
    struct srv s;
    struct err e = {0};
    char *url, *want;

    repo_priv();
    srv_start(&s, NULL);
    url = url_of(&s, "priv");
    struct scm_checkout_req req = req_of(url, "ws");
    req.remote.token = "wrong-token-123";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EACCES);
    want = xasprintf("authentication to %s failed (check the token)", url);
    ASSERT_STR_EQ(e.msg, want);
    free(want);
    ASSERT(strstr(e.msg, "wrong-token-123") == NULL);
    ASSERT(dir_empty("ws"));

    req.remote.token = NULL;
    memset(&e, 0, sizeof e);
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EACCES);
    want = xasprintf("authentication to %s required: no token given", url);
    ASSERT_STR_EQ(e.msg, want);
    free(want);

    /* A warm mirror does not let a job without the right token read it. */
    req.remote.token = TOKEN;
    char *sha = checkout_ok(&req, NULL);
    req = req_of(url, "ws2");
    req.sha = sha;
    req.remote.token = "wrong-token-123";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EACCES);
    ASSERT(dir_empty("ws2"));
    free(sha);
    free(url);
    srv_stop(&s);
}

TEST(checkout_url_credentials_dropped)
{
    struct srv s;
    char *url, *sha, *txt;

    repo_pub();
    srv_start(&s, NULL);
    url = xasprintf("http://someone:hunter2@127.0.0.1:%d/pub.git", s.port);
    struct scm_checkout_req req = req_of(url, "ws");
    sha = checkout_ok(&req, NULL);
    txt = SH_OUT("git -C ws remote get-url origin");
    char *want = url_of(&s, "pub");
    ASSERT_STR_EQ(txt, want);
    SH("! grep -r -q hunter2 ws " CACHE);
    free(want);
    free(txt);
    free(sha);
    free(url);
    srv_stop(&s);
}

TEST(mirror_reused_and_updated)
{
    struct srv s;
    struct stat st1, st2;
    char *url, *sha, *mirror, *pack_dir, *want;
    int posts;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    struct scm_checkout_req req = req_of(url, "ws1");
    sha = checkout_ok(&req, NULL);
    free(sha);
    posts = log_count("POST /pub.git/git-upload-pack");
    ASSERT(posts >= 1);
    mirror = the_mirror();
    ASSERT_EQ(strlen(mirror), strlen(CACHE "/mirrors/") + 64);
    pack_dir = xasprintf("%s/objects/pack", mirror);
    ASSERT_EQ(stat(mirror, &st1), 0);
    char *packs1 = SH_OUT("ls %s", pack_dir);

    /* Nothing new: refs negotiated, no pack requested, same mirror, same packs. */
    req = req_of(url, "ws2");
    sha = checkout_ok(&req, NULL);
    ASSERT_EQ(log_count("POST /pub.git/git-upload-pack"), posts);
    ASSERT(log_count("GET /pub.git/info/refs") >= 2);
    ASSERT_EQ(stat(mirror, &st2), 0);
    ASSERT_EQ(st1.st_ino, st2.st_ino);
    char *packs2 = SH_OUT("ls %s", pack_dir);
    ASSERT_STR_EQ(packs2, packs1);
    assert_clean("ws2");
    free(sha);

    /* A new commit: fetched incrementally. */
    SH(GITENV "cd w/pub && echo three >> a && git commit -qam three && "
              "git push -q ../../srv/pub.git main");
    want = SH_OUT("git -C srv/pub.git rev-parse main");
    req = req_of(url, "ws3");
    sha = checkout_ok(&req, NULL);
    ASSERT_STR_EQ(sha, want);
    ASSERT(log_count("POST /pub.git/git-upload-pack") > posts);
    assert_str_file("ws3/a", "one\ntwo\nthree\n");
    assert_clean("ws3");
    char *packs3 = SH_OUT("ls %s | wc -l", pack_dir);
    ASSERT_STR_EQ(packs3, "4"); /* two packs (the clone's, the increment's), each .pack+.idx */
    free(packs1);
    free(packs2);
    free(packs3);
    free(sha);
    free(want);
    free(pack_dir);
    free(mirror);
    free(url);
    srv_stop(&s);
}

struct par {
    const char *url, *dest;
    int rc;
    char *sha;
    struct err e;
};

static void *
par_run(void *arg)
{
    struct par *p = arg;
    struct scm_checkout_req req = req_of(p->url, p->dest);

    p->rc = scm_checkout(&req, NULL, NULL, NULL, &p->sha, &p->e);
    return NULL;
}

TEST(concurrent_checkouts)
{
    struct srv s;
    struct par th[2] = {0};
    pthread_t tid[2];
    pid_t kids[2];
    char *url, *want;

    repo_big();
    srv_start(&s, NULL);
    url = url_of(&s, "big");
    want = SH_OUT("git -C srv/big.git rev-parse main");
    /* Two processes and two threads, on an empty cache. */
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        ASSERT(kids[i] >= 0);
        if (kids[i] == 0) {
            struct par p = {.url = url, .dest = i ? "p1" : "p0"};

            par_run(&p);
            if (p.rc < 0)
                fprintf(stderr, "child %d: %s\n", i, p.e.msg);
            int ok = p.rc == 0 && strcmp(p.sha, want) == 0;
            free(p.sha);
            free(want);
            free(url);
            exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < 2; i++) {
        th[i].url = url;
        th[i].dest = i ? "t1" : "t0";
        ASSERT_EQ(pthread_create(&tid[i], NULL, par_run, &th[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        int st = 0;

        ASSERT_EQ(pthread_join(tid[i], NULL), 0);
        if (th[i].rc < 0)
            test_fail(__FILE__, __LINE__, "thread %d: %s", i, th[i].e.msg);
        ASSERT_STR_EQ(th[i].sha, want);
        free(th[i].sha);
        ASSERT_EQ(waitpid(kids[i], &st, 0), kids[i]);
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    const char *dests[] = {"p0", "p1", "t0", "t1"};
    for (int i = 0; i < 4; i++) {
        char path[32];

        assert_clean(dests[i]);
        snprintf(path, sizeof path, "%s/f300", dests[i]);
        ASSERT(exists(path));
    }
    free(the_mirror()); /* exactly one mirror */
    free(want);
    free(url);
    srv_stop(&s);
}

struct waiter {
    const char *url;
    struct lines *l;
    volatile bool done;
    int rc;
};

static void *
waiter_run(void *arg)
{
    struct waiter *w = arg;
    struct scm_checkout_req req = req_of(w->url, "waited");
    struct err e = {0};

    w->rc = scm_checkout(&req, on_line, w->l, NULL, NULL, &e);
    w->done = true;
    return NULL;
}

TEST(mirror_lock_excludes)
{
    struct srv s;
    struct lines l;
    struct waiter w = {0};
    pthread_t tid;
    char *url, *sha, *mirror, *lock;
    int fd;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    struct scm_checkout_req req = req_of(url, "ws");
    sha = checkout_ok(&req, NULL);
    free(sha);
    mirror = the_mirror();
    lock = xasprintf("%s.lock", mirror);
    /* Hold the lock as another process would (its own open file description). */
    fd = open(lock, O_RDWR);
    ASSERT(fd >= 0);
    ASSERT_EQ(flock(fd, LOCK_EX), 0);
    lines_init(&l);
    w.url = url;
    w.l = &l;
    ASSERT_EQ(pthread_create(&tid, NULL, waiter_run, &w), 0);
    for (int i = 0; i < 500 && !lines_find(&l, "Waiting for another job"); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    pthread_mutex_lock(&l.mu);
    ASSERT(lines_find(&l, "Waiting for another job") != NULL);
    ASSERT(lines_find(&l, "Fetch") == NULL);
    pthread_mutex_unlock(&l.mu);
    ASSERT(!w.done);
    close(fd); /* releases it */
    ASSERT_EQ(pthread_join(tid, NULL), 0);
    ASSERT_OK(w.rc);
    assert_clean("waited");
    free(lock);
    free(mirror);
    lines_free(&l);
    free(url);
    srv_stop(&s);
}

/* Damages the mirror with cmd (run in its directory), then checks a checkout rebuilds it. */
static void
corrupt_and_check(const char *url, const char *cmd, const char *dest)
{
    struct lines l;
    char *mirror = the_mirror(), *sha, *want;

    SH("cd %s && %s", mirror, cmd);
    lines_init(&l);
    struct scm_checkout_req req = req_of(url, dest);
    sha = checkout_ok(&req, &l);
    want = SH_OUT("git -C srv/pub.git rev-parse main");
    ASSERT_STR_EQ(sha, want);
    if (lines_find(&l, "is damaged") == NULL)
        test_fail(__FILE__, __LINE__, "no repair after: %s", cmd);
    assert_clean(dest);
    SH("git -C %s fsck --no-progress --no-dangling", mirror);
    free(want);
    free(sha);
    free(mirror);
    lines_free(&l);
}

TEST(corrupt_mirror_rebuilt)
{
    struct srv s;
    char *url, *sha;
    int posts;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    struct scm_checkout_req req = req_of(url, "ws");
    sha = checkout_ok(&req, NULL);
    free(sha);
    posts = log_count("POST /pub.git/git-upload-pack");
    corrupt_and_check(url, "for p in objects/pack/*.pack; do chmod u+w $p; "
                           "truncate -s 100 $p; done", "c1");
    ASSERT(log_count("POST /pub.git/git-upload-pack") > posts); /* cloned again */
    corrupt_and_check(url, "rm -rf objects/pack", "c2");
    corrupt_and_check(url, "echo garbage > HEAD", "c3");
    corrupt_and_check(url, "printf '[core\\n\\x01garbage' > config", "c4");
    corrupt_and_check(url, "rm -rf objects refs", "c5");
    free(url);
    srv_stop(&s);
}

TEST(checkout_applies_attributes)
{
    struct srv s;
    char *url, *sha, *txt;

    /* eol=crlf from .gitattributes: the filters must run (they are skipped without one). */
    SH(GITENV "mkdir -p srv w; git init -q --bare -b main srv/attrs.git; "
              "git init -q -b main w/attrs; cd w/attrs; printf '*.txt eol=crlf\\n' > "
              ".gitattributes; mkdir sub; printf 'a\\nb\\n' > sub/x.txt; printf 'a\\nb\\n' > y.md; "
              "git add . 2>/dev/null; git commit -qm attrs; git push -q ../../srv/attrs.git main");
    srv_start(&s, NULL);
    url = url_of(&s, "attrs");
    struct scm_checkout_req req = req_of(url, "ws");
    sha = checkout_ok(&req, NULL);
    assert_str_file("ws/sub/x.txt", "a\r\nb\r\n");
    assert_str_file("ws/y.md", "a\nb\n");
    assert_clean("ws");
    txt = SH_OUT("git -C ws diff --stat HEAD");
    ASSERT_STR_EQ(txt, "");
    free(txt);
    free(sha);
    free(url);
    srv_stop(&s);
}

TEST(lfs_refused_and_depth_note)
{
    struct srv s;
    struct lines l;
    struct err e = {0};
    char *url, *sha;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    struct scm_checkout_req req = req_of(url, "ws");
    req.lfs = true;
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -ENOTSUP);
    ASSERT_STR_EQ(e.msg, "lfs: Git LFS is not supported by this runner");
    ASSERT(!exists("ws"));

    lines_init(&l);
    req.lfs = false;
    req.fetch_depth = 1;
    sha = checkout_ok(&req, &l);
    ASSERT(lines_find(&l, "fetch-depth 1: ") != NULL);
    free(sha);
    lines_free(&l);
    free(url);
    srv_stop(&s);
}

/* Whether this process maps libgit2 (/proc/self/maps). */
static bool
libgit2_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    bool found = false;

    ASSERT(f != NULL);
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "/libgit2.so") != NULL;
    fclose(f);
    return found;
}

/* Nothing links libgit2: the first call that needs git loads it. */
TEST(libgit2_loaded_on_first_use)
{
    struct scm_info info = {0};
    struct err e = {0};

    SH(GITENV "git init -q -b main w");
    ASSERT(!libgit2_mapped());
    ASSERT_EQ(scm_local_info("w", &info, &e), 0);
    ASSERT(libgit2_mapped());
    ASSERT_STR_EQ(info.ref, "refs/heads/main");
    scm_info_free(&info);
}

/* The walk's callback: counts entries. */
static int
count_entry(const char *rel, const char *abs, const struct stat *st, void *arg, struct err *e)
{
    (void)rel, (void)abs, (void)st, (void)e;
    (*(int *)arg)++;
    return 0;
}

/* A libgit2 that cannot be loaded is an error naming it, from every entry point, every time;
 * nothing crashes and no destination is made. */
TEST(libgit2_missing_is_an_error)
{
    struct scm_info info = {0};
    struct err e = {0};
    struct scm_remote remote = {.url = "http://127.0.0.1:9/o/r.git"};
    struct scm_checkout_req req = req_of("http://127.0.0.1:9/o/r.git", "ws");
    char *dir = NULL, *sha = NULL;
    int n = 0;

    scm_git_use("libgit2-missing.so.0");
    SH("mkdir -p tree && touch tree/a");
    for (int round = 0; round < 2; round++) {
        ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, &sha, &e), -ELIBACC);
        ASSERT_STR_CONTAINS(e.msg, "git is unavailable: libgit2 (libgit2-missing.so.0) could not "
                                   "be loaded: libgit2-missing.so.0: cannot open shared object");
        ASSERT(sha == NULL);
        ASSERT(!exists("ws"));
        e = (struct err){0};
        ASSERT_EQ(scm_fetch_action(CACHE, &remote, "main", NULL, NULL, NULL, &dir, &sha, &e),
                  -ELIBACC);
        ASSERT_STR_CONTAINS(e.msg, "libgit2 (libgit2-missing.so.0) could not be loaded");
        ASSERT(dir == NULL && sha == NULL);
        e = (struct err){0};
        ASSERT_EQ(scm_local_info(".", &info, &e), -ELIBACC);
        ASSERT_STR_CONTAINS(e.msg, "libgit2 (libgit2-missing.so.0) could not be loaded");
        e = (struct err){0};
        ASSERT_EQ(wswalk("tree", count_entry, &n, &e), -ELIBACC);
        ASSERT_STR_CONTAINS(e.msg, "libgit2 (libgit2-missing.so.0) could not be loaded");
        ASSERT_EQ(n, 0);
    }
    ASSERT(!libgit2_mapped());
}

TEST(cancel_during_transfer)
{
    struct srv s;
    struct lines l;
    struct err e = {0};
    char *url;

    repo_big();
    srv_start(&s, NULL);
    url = url_of(&s, "big");
    lines_init(&l);
    l.cancel_on = "Fetching "; /* the first transfer line: more follow */
    struct scm_checkout_req req = req_of(url, "ws");
    ASSERT_EQ(scm_checkout(&req, on_line, &l, &l.cancel, NULL, &e), -ECANCELED);
    ASSERT_STR_CONTAINS(e.msg, "canceled");
    ASSERT(lines_find(&l, "Fetched ") == NULL); /* the transfer was cut short */
    ASSERT(lines_find(&l, "Checking out") == NULL);
    ASSERT(dir_empty("ws"));

    /* The mirror is still usable afterwards. */
    char *sha = checkout_ok(&req, NULL);
    assert_clean("ws");
    free(sha);
    lines_free(&l);
    free(url);
    srv_stop(&s);
}

/* ------------------------------------------------------------------------------------------
 * Actions
 * ------------------------------------------------------------------------------------------ */

TEST(action_export)
{
    struct srv s;
    struct lines l;
    struct err e = {0};
    struct stat st1, st2;
    char *url, *dir = NULL, *sha = NULL, *want, *txt;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    struct scm_remote remote = {.url = url};
    lines_init(&l);

    ASSERT_OK(scm_fetch_action(CACHE, &remote, "v2", on_line, &l, NULL, &dir, &sha, &e));
    want = SH_OUT("git -C srv/pub.git rev-parse 'v2^{commit}'");
    ASSERT_STR_EQ(sha, want);
    txt = xasprintf(CACHE "/actions/http---127.0.0.1-%d-pub.git/%s", s.port, want);
    ASSERT_STR_EQ(dir, txt);
    free(txt);
    txt = SH_OUT("cd %s && find . | sort | tr '\\n' ' '", dir);
    ASSERT_STR_EQ(txt, ". ./a ./d ./d/x ./lnk ");
    free(txt);
    txt = SH_OUT("cat %s/a", dir);
    ASSERT_STR_EQ(txt, "one\ntwo");
    free(txt);
    txt = SH_OUT("stat -c %%a %s/d/x %s/a | tr '\\n' ' '", dir, dir);
    ASSERT_STR_EQ(txt, "755 644 ");
    free(txt);
    txt = SH_OUT("readlink %s/lnk", dir);
    ASSERT_STR_EQ(txt, "a");
    free(txt);
    ASSERT_EQ(stat(dir, &st1), 0);
    ASSERT(lines_find(&l, "Exported ") != NULL);

    /* Reused: by tag again, and by the full sha. */
    char *dir2 = NULL, *sha2 = NULL;
    ASSERT_OK(scm_fetch_action(CACHE, &remote, "v2", on_line, &l, NULL, &dir2, &sha2, &e));
    ASSERT_STR_EQ(dir2, dir);
    ASSERT_EQ(stat(dir2, &st2), 0);
    ASSERT_EQ(st1.st_ino, st2.st_ino);
    ASSERT(lines_find(&l, "from the action cache") != NULL);
    free(dir2);
    free(sha2);
    int gets = log_count("GET /pub.git/info/refs");
    ASSERT_OK(scm_fetch_action(CACHE, &remote, want, NULL, NULL, NULL, &dir2, &sha2, &e));
    ASSERT_STR_EQ(dir2, dir);
    ASSERT_STR_EQ(sha2, want);
    ASSERT_EQ(log_count("GET /pub.git/info/refs"), gets + 1); /* the access check only */
    ASSERT_EQ(log_count("POST /pub.git/git-upload-pack"), 1);
    free(dir2);
    free(sha2);

    /* A branch; a short sha refused with the spec's message; an unknown ref. */
    ASSERT_OK(scm_fetch_action(CACHE, &remote, "feature", NULL, NULL, NULL, &dir2, &sha2, &e));
    txt = xasprintf("%s/f", dir2);
    assert_str_file(txt, "f\n");
    free(txt);
    free(dir2);
    free(sha2);
    char *main_sha = SH_OUT("git -C srv/pub.git rev-parse main");
    char short_sha[8];
    snprintf(short_sha, sizeof short_sha, "%.7s", main_sha);
    ASSERT_EQ(scm_fetch_action(CACHE, &remote, short_sha, NULL, NULL, NULL, &dir2, &sha2, &e),
              ERR_INVALID);
    txt = xasprintf("Unable to resolve action `%s@%s`, the provided ref `%s` is the shortened "
                    "version of a commit SHA, which is not supported. Please use the full "
                    "commit SHA `%s` instead",
                    url, short_sha, short_sha, main_sha);
    ASSERT_STR_EQ(e.msg, txt);
    ASSERT(dir2 == NULL && sha2 == NULL);
    free(txt);
    ASSERT_EQ(scm_fetch_action(CACHE, &remote, "nope", NULL, NULL, NULL, &dir2, &sha2, &e),
              ERR_NOTFOUND);
    ASSERT_STR_CONTAINS(e.msg, "no branch, tag or commit `nope`");
    /* No temporary directories left behind. */
    txt = SH_OUT("ls -A " CACHE "/actions/*/ | grep -c tmp || true");
    ASSERT_STR_EQ(txt, "0");
    free(txt);
    free(main_sha);
    free(want);
    free(dir);
    free(sha);
    free(url);
    lines_free(&l);
    srv_stop(&s);
}

TEST(action_refuses_dot_git)
{
    struct srv s;
    struct err e = {0};
    char *url, *dir = NULL, *sha = NULL, *txt;

    /* A tree with a .git directory, as git mktree allows and a hostile server could send. */
    SH(GITENV "mkdir -p srv; git init -q --bare -b main srv/evil.git; cd srv/evil.git; "
              "B=$(echo evil | git hash-object -w --stdin); "
              "T1=$(printf '100644 blob %%s\\tconfig\\n' $B | git mktree); "
              "T2=$(printf '040000 tree %%s\\t.git\\n100644 blob %%s\\tok\\n' $T1 $B | "
              "git mktree); git update-ref refs/heads/main $(git commit-tree $T2 -m evil)");
    srv_start(&s, NULL);
    url = url_of(&s, "evil");
    struct scm_remote remote = {.url = url};
    ASSERT_EQ(scm_fetch_action(CACHE, &remote, "main", NULL, NULL, NULL, &dir, &sha, &e),
              -EINVAL);
    ASSERT_STR_CONTAINS(e.msg, "refusing the file name \".git\"");
    ASSERT(dir == NULL);
    txt = SH_OUT("find " CACHE "/actions -mindepth 2 | wc -l");
    ASSERT_STR_EQ(txt, "0"); /* the temporary export is gone too */
    free(txt);
    free(url);
    srv_stop(&s);
}

TEST(action_private_needs_token_even_when_cached)
{
    struct srv s;
    struct err e = {0};
    char *url, *dir = NULL, *sha = NULL, *dir2 = NULL, *sha2 = NULL;

    repo_priv();
    srv_start(&s, NULL);
    url = url_of(&s, "priv");
    struct scm_remote remote = {.url = url, .token = TOKEN};
    ASSERT_OK(scm_fetch_action(CACHE, &remote, "main", NULL, NULL, NULL, &dir, &sha, &e));
    remote.token = NULL;
    ASSERT_EQ(scm_fetch_action(CACHE, &remote, sha, NULL, NULL, NULL, &dir2, &sha2, &e),
              -EACCES);
    ASSERT_STR_CONTAINS(e.msg, "no token given");
    ASSERT(dir2 == NULL);
    free(dir);
    free(sha);
    free(url);
    srv_stop(&s);
}

/* ------------------------------------------------------------------------------------------
 * The async wrappers on a loop
 * ------------------------------------------------------------------------------------------ */

struct done_rec {
    int calls, rc;
    char msg[256];
    char *dir, *sha;
    struct lines *l;
    struct scm_job *cancel_me; /* canceled from the first progress line */
};

static void
on_done(void *arg, int rc, const struct err *e, const char *dir, const char *sha)
{
    struct done_rec *d = arg;

    ASSERT(pthread_equal(pthread_self(), d->l->main));
    d->calls++;
    d->rc = rc;
    snprintf(d->msg, sizeof d->msg, "%s", e ? e->msg : "");
    d->dir = dir ? xstrdup(dir) : NULL;
    d->sha = sha ? xstrdup(sha) : NULL;
}

static void
on_async_line(void *arg, const char *line)
{
    struct done_rec *d = arg;

    on_line(d->l, line);
}

TEST(async_checkout_and_action)
{
    struct srv s;
    struct lines l;
    struct done_rec d1 = {0}, d2 = {0};
    struct err e = {0};
    struct scm_job *j1 = NULL, *j2 = NULL;
    uv_loop_t loop;
    char *url, *want;

    repo_pub();
    srv_start(&s, NULL);
    url = url_of(&s, "pub");
    lines_init(&l);
    d1.l = d2.l = &l;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    struct scm_checkout_req req = req_of(url, "ws");
    req.ref = "feature";
    ASSERT_OK(scm_checkout_start(&loop, &req, on_async_line, on_done, &d1, &j1, &e));
    ASSERT(j1 != NULL);
    req.ref = "overwritten: the job has its own copies";
    req.dest = "elsewhere";
    struct scm_remote remote = {.url = url};
    ASSERT_OK(scm_fetch_action_start(&loop, CACHE, &remote, "v1", NULL, on_done, &d2, &j2, &e));
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(d1.calls, 1);
    ASSERT_EQ(d2.calls, 1);
    if (d1.rc < 0)
        test_fail(__FILE__, __LINE__, "checkout: %s", d1.msg);
    want = SH_OUT("git -C srv/pub.git rev-parse feature");
    ASSERT_STR_EQ(d1.sha, want);
    ASSERT(d1.dir == NULL);
    free(want);
    assert_str_file("ws/f", "f\n");
    assert_clean("ws");
    ASSERT(!exists("elsewhere"));
    ASSERT_OK(d2.rc);
    want = SH_OUT("git -C srv/pub.git rev-parse v1");
    ASSERT_STR_EQ(d2.sha, want);
    ASSERT_STR_CONTAINS(d2.dir, want);
    free(want);
    /* Progress came, on the loop's thread. */
    ASSERT(l.n > 0);
    ASSERT(lines_find(&l, "Checking out") != NULL);
    ASSERT(l.on_loop_thread);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    free(d1.sha);
    free(d2.sha);
    free(d2.dir);
    lines_free(&l);
    free(url);
    srv_stop(&s);
}

TEST(async_cancel)
{
    struct srv s;
    struct lines l;
    struct done_rec d = {0};
    struct err e = {0};
    struct scm_job *j = NULL;
    uv_loop_t loop;
    char *url;

    repo_big();
    srv_start(&s, NULL);
    url = url_of(&s, "big");
    lines_init(&l);
    d.l = &l;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    struct scm_checkout_req req = req_of(url, "ws");
    ASSERT_OK(scm_checkout_start(&loop, &req, on_async_line, on_done, &d, &j, &e));
    scm_job_cancel(j);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(d.calls, 1);
    ASSERT_EQ(d.rc, -ECANCELED);
    ASSERT_STR_CONTAINS(d.msg, "canceled");
    ASSERT(d.sha == NULL);
    ASSERT(!exists("ws/f1"));
    ASSERT_EQ(uv_loop_close(&loop), 0);
    lines_free(&l);
    free(url);
    srv_stop(&s);
}

/* ------------------------------------------------------------------------------------------
 * TLS
 * ------------------------------------------------------------------------------------------ */

TEST(tls_ca_file_and_insecure)
{
    struct srv s;
    struct err e = {0};
    char *url, *sha;

    repo_pub();
    SH("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
       "-subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE "
       "-addext keyUsage=critical,keyCertSign >/dev/null 2>&1 && "
       "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost "
       ">/dev/null 2>&1 && "
       "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' "
       "> ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
       "-out srv.pem -days 2 -extfile ext >/dev/null 2>&1 && "
       "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 "
       "-subj /CN=other >/dev/null 2>&1");
    srv_start(&s, "--tls srv.pem srv.key");
    url = url_of(&s, "pub");
    struct scm_checkout_req req = req_of(url, "ws");

    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EPERM);
    ASSERT_STR_CONTAINS(e.msg, "TLS certificate of");
    ASSERT_STR_CONTAINS(e.msg, "not trusted");
    req.remote.ca_file = "other.pem";
    ASSERT_EQ(scm_checkout(&req, NULL, NULL, NULL, NULL, &e), -EPERM);
    ASSERT_STR_CONTAINS(e.msg, "other.pem");

    req.remote.ca_file = "ca.pem";
    sha = checkout_ok(&req, NULL);
    assert_clean("ws");
    free(sha);

    req = req_of(url, "ws2");
    req.remote.insecure = true;
    sha = checkout_ok(&req, NULL);
    assert_clean("ws2");
    free(sha);
    free(url);
    srv_stop(&s);
}
