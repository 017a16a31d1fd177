/* scm.h: what the engine needs to know of a local git repository (libgit2). */
#ifndef SCM_H
#define SCM_H

#include "runner/err.h"

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

/* Returns owner/name from a remote URL (https://host/owner/name.git, git@host:owner/name),
 * a new string, or NULL. */
char *scm_repo_from_url(const char *url);

#endif
