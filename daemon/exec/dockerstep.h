/* dockerstep.h: one container run as a step (docker:// steps and docker actions,
 * doc/workflow-semantics.md §12.5): resolve the image, create (labelled), attach before start so no
 * output is missed, start, stream output, wait for the exit, remove. Nothing is left behind on
 * any path, cancellation included. */
#ifndef RUNNER_DOCKERSTEP_H
#define RUNNER_DOCKERSTEP_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "docker.h"
#include "runner/err.h"

struct dockerstep;

/* Everything is borrowed and only read during dockerstep_run(). */
struct dockerstep_opts {
    const char *image;             /* ref, name@sha256:..., or sha256:<id> (pinned,
                                      doc/docker-engine.md §6.4) */
    const char *expect_id;         /* may be NULL: the resolved image Id must equal it */
    bool allow_pull;
    const struct docker_auth *auth; /* may be NULL */
    const char *name;              /* container name; NULL = Docker picks one */
    const char *const *entrypoint; /* NULL-terminated; NULL = the image's; {"", NULL} = none */
    const char *const *cmd;        /* NULL-terminated; NULL = the image's */
    const char *const *env;        /* "K=V", NULL-terminated; may be NULL */
    const char *workdir;           /* may be NULL */
    const char *user;              /* may be NULL */
    const char *const *binds;      /* "src:dst[:opts]", NULL-terminated; may be NULL */
    const char *network;           /* NetworkMode ("container:<id>", a network, "host"); NULL */
    json_t *labels;                /* object string->string, may be NULL (role "step" added) */
    long kill_grace_ms;            /* cancel: SIGTERM, then SIGKILL after this; 0 = 10 s */
    const json_t *limits;          /* the job's label settings (profile.h's profile_job()):
                                      their memory, CPU and pids limits apply; NULL: none */
};

struct dockerstep_cbs {
    /* Optional: a progress line ("pulling ...", "created container <id>"). */
    void (*on_log)(const char *line, void *arg);
    /* Output as it comes: stream 1 = stdout, 2 = stderr. */
    void (*on_output)(int stream, const char *p, size_t n, void *arg);
    /* Exactly once, after the container has been removed (or was never created). rc: 0 = the
     * container ran (exit_code is its status), ERR_CANCELED = canceled (exit_code is the status
     * if it had started, e.g. 137 or 143, else -1), other <0 = failure with e. A failure to
     * remove the container is reported as rc <0 too. The dockerstep is freed right after. */
    void (*on_done)(int rc, long long exit_code, const struct err *e, void *arg);
};

/* Starts the step. Returns 0 and *out (valid until on_done returns; may be NULL), or <0 with
 * e set (no callback). loop must be the loop d runs on; d must outlive the step. */
int dockerstep_run(uv_loop_t *loop, struct docker *d, const struct dockerstep_opts *o,
                   const struct dockerstep_cbs *cbs, void *arg, struct dockerstep **out,
                   struct err *e);
/* Cancels: a running container gets SIGTERM, then SIGKILL after the grace; a container not
 * started yet is not started. on_done follows with ERR_CANCELED once it is removed. Safe to
 * call more than once, not after on_done. */
void dockerstep_cancel(struct dockerstep *s);

#endif
