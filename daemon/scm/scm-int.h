/* scm-int.h: what the scm*.c files share (a run, the mirror, one checkout, the helpers); not
 * for other callers. scm.c describes the cache on disk. */
#ifndef SCM_INT_H
#define SCM_INT_H

#include "scm.h"

#include "scm-git.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A run: one remote being fetched, and what libgit2's callbacks need and find. */
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

/* A mirror held under its lock (scm-mirror.c). */
struct mirror {
    char *dir;
    int lock_fd;
    git_repository *repo;
    bool rebuilt; /* removed and cloned again during this run */
};

/* One checkout (the top level or a submodule; scm-checkout.c). */
struct co {
    const char *cache_dir;
    const char *ref, *sha, *dest;
    bool clean, submodules, recursive, persist;
    int level; /* submodule nesting */
};

/* scm.c: shared helpers. */

/* Returns owner/name from a remote URL (https://host/owner/name.git, git@host:owner/name),
 * a new string, or NULL. */
char *scm_repo_from_url(const char *url);
int scm_global_init(struct err *e);
double scm_now_s(void);
const char *scm_git_msg(void);
char *scm_path_join(const char *a, const char *b);
int scm_mkdir_p(const char *path, mode_t mode);
int scm_rm_rf(const char *path);
bool scm_is_dir(const char *path);
bool scm_is_hex(const char *s, size_t min, size_t max);
void scm_url_parse(const char *url, char **clean, char **origin);
char *scm_url_hash(const char *url);
void scm_err_scrub(struct err *e, const char *secret);
void scm_run_init(struct run *r, const struct scm_remote *remote, const char *token,
                  scm_progress_fn progress, void *arg, const volatile bool *cancel);
void scm_run_free(struct run *r);
void scm_say(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool scm_canceled(struct run *r);

/* scm-tls.c: credentials, certificates, and what a refused fetch means. */
void scm_auth_callbacks(git_remote_callbacks *cb, struct run *r);
int scm_fetch_fail(struct run *r, struct err *e);
int scm_remote_probe(struct run *r, struct err *e);

/* scm-mirror.c: fetching into the mirror and reading it. */
int scm_mirror_fail(struct run *r, struct err *e, const char *what);
int scm_mirror_update(struct run *r, git_repository *repo, const char *extra, struct err *e);
int scm_mirror_want_commit(struct run *r, git_repository *repo, const git_oid *id,
                           const char *hex, struct err *e);
bool scm_has_commit(git_repository *repo, const git_oid *id);
int scm_ref_commit(git_repository *repo, const char *name, git_oid *out);
bool scm_ref_name_ok(const char *name);
int scm_mirror_lock(struct run *r, const char *cache_dir, struct mirror *m, struct err *e);
void scm_mirror_unlock(struct mirror *m);
int scm_mirror_remove(struct run *r, struct mirror *m, const char *why, struct err *e);
int scm_mirror_open(struct run *r, struct mirror *m, struct err *e);

/* scm-checkout.c and scm-submodule.c. */
int scm_checkout_one(struct run *r, const struct co *c, char **sha_out, struct err *e);
int scm_checkout_submodules(struct run *r, git_repository *repo, const git_commit *commit,
                            const struct co *c, struct err *e);

#endif
