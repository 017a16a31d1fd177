/* scm.h: git through libgit2: facts about a local repository, and remote repositories through
 * a mirror cache (checkouts, action exports). */
#ifndef SCM_H
#define SCM_H

#include "runner/err.h"

#include <stdbool.h>
#include <uv.h>

struct scm_info {
    char *sha;        /* HEAD commit, 40 hex digits; NULL when unborn */
    char *ref;        /* e.g. refs/heads/main; NULL when detached */
    char *repository; /* owner/name from the origin remote's URL; NULL when unknown */
};

/* Reads dir's repository (searching upwards). Returns 0 and fills info (free with
 * scm_info_free()), or ERR_NOTFOUND when dir is not in a git repository. Blocking: call from
 * a CLI path or a worker, never from the event loop. */
int scm_local_info(const char *dir, struct scm_info *info, struct err *e);
void scm_info_free(struct scm_info *info);

/* ------------------------------------------------------------------ remote repositories
 *
 * A bare mirror per repository URL lives under CACHE/mirrors/ (one directory per URL, named
 * from a hash of the URL without credentials); it is updated by incremental fetch and guarded
 * by a lock file (flock), so concurrent jobs and processes on the same repository are safe. A
 * mirror that cannot be opened or read is detected, removed and cloned again (once).
 *
 * Authentication: `token`, when set, is sent as HTTP basic auth (user "x-access-token",
 * password token), only to the URL's own origin (scheme, host and port). TLS is verified
 * against the system's CA store, and a certificate it refuses is accepted when it verifies
 * against ca_file (per request: jobs do not change each other's trust); `insecure` turns
 * verification off. Credentials inside the URL are dropped, and url.<base>.insteadOf is not
 * applied (the mirror is keyed by the URL asked for).
 *
 * Nothing cached is handed out without asking the server first: every checkout fetches (one
 * round trip when nothing is new) and a cached action export is reused only after the
 * server accepted this request's credentials, so a job cannot read a private repository
 * another job fetched.
 *
 * Errors: -EACCES authentication refused or missing ("authentication to URL failed (check the
 * token)"), -EPERM certificate not trusted, ERR_NOTFOUND no such ref or commit ("commit SHA
 * not found in URL"), ERR_INVALID a shortened sha for an action, -EINVAL a bad ref, sha or
 * file name, -EEXIST dest not empty, -ENOTSUP lfs, -ECANCELED canceled, else -EIO with
 * libgit2's message. Messages in e never contain the token. */

struct scm_remote {
    const char *url;       /* https://host/owner/repo[.git], http://..., file:// or a path */
    const char *token;     /* or NULL */
    const char *ca_file;   /* or NULL */
    bool insecure;
};

/* What a checkout asks for (the inputs of actions/checkout). */
struct scm_checkout_req {
    const char *cache_dir;  /* CACHE: holds mirrors/ (created when missing) */
    struct scm_remote remote;
    const char *ref;        /* branch, tag, refs/..., or NULL: the remote's HEAD */
    const char *sha;        /* exact commit to check out, or NULL: ref's commit. Given both,
                             * sha wins and ref names the branch HEAD points at (when it is a
                             * branch); else HEAD is detached */
    const char *dest;       /* directory to fill (created; must be empty or absent unless
                             * clean) with the working tree and a .git whose origin is url */
    int fetch_depth;        /* 0: all history; N: at most N (full history when the linked
                             * libgit2 cannot fetch shallow; a progress line says so) */
    bool clean;             /* dest may hold files: remove everything first */
    bool submodules;        /* check out submodules (relative URLs resolved against url; the
                             * token goes along to submodules on the same origin) */
    bool recursive;         /* submodules of submodules too (implies submodules) */
    bool lfs;               /* not supported: a clear error */
    bool persist_credentials; /* keep the token in dest/.git/config as actions/checkout does
                               * (http.<url>.extraheader AUTHORIZATION: basic ...) */
};

/* A line of progress: "Fetching https://host/o/r: 45% (1234/2700 objects)" and the like. */
typedef void (*scm_progress_fn)(void *arg, const char *line);

/* Blocking checkout (call from a worker or a CLI path, never from the event loop). progress
 * may be NULL; it is called on the calling thread. On success *sha_out (may be NULL) gets the
 * checked-out commit (new string). `cancel`, when not NULL, is polled: once it reads true the
 * transfer stops and -ECANCELED is returned. */
int scm_checkout(const struct scm_checkout_req *req, scm_progress_fn progress, void *arg,
                 const volatile bool *cancel, char **sha_out, struct err *e);

/* An action's files: the tree of url at ref (branch, tag or full 40-hex sha; a shortened sha
 * is refused with the doc/workflow-semantics.md §12.1 message) exported without .git into
 * CACHE/actions/<sanitised url>/<sha>/, fetched through the same mirror cache. An existing
 * export is reused (exports are made in a temporary directory and renamed into place).
 * *dir_out and *sha_out (new strings) are the directory and the resolved commit. */
int scm_fetch_action(const char *cache_dir, const struct scm_remote *remote, const char *ref,
                     scm_progress_fn progress, void *arg, const volatile bool *cancel,
                     char **dir_out, char **sha_out, struct err *e);

/* The same two, off the event loop: the work runs on libuv's thread pool with its own copies of
 * every string and its own libgit2 objects; progress lines and the end are delivered on the loop.
 * done gets rc (0 or negative), the error, and for a checkout the commit (dir NULL), for an
 * action the directory and the commit. Strings passed to done are borrowed for the call. */
struct scm_job;
typedef void (*scm_done_fn)(void *arg, int rc, const struct err *e, const char *dir,
                            const char *sha);
int scm_checkout_start(uv_loop_t *loop, const struct scm_checkout_req *req,
                       scm_progress_fn progress, scm_done_fn done, void *arg,
                       struct scm_job **out, struct err *e);
int scm_fetch_action_start(uv_loop_t *loop, const char *cache_dir,
                           const struct scm_remote *remote, const char *ref,
                           scm_progress_fn progress, scm_done_fn done, void *arg,
                           struct scm_job **out, struct err *e);
/* Asks a running job to stop; done still follows (with -ECANCELED unless it had finished).
 * The job (*out of the start functions) is valid until done is called, and freed after it;
 * never cancel it from done or later. */
void scm_job_cancel(struct scm_job *j);

#endif
