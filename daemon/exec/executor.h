/* executor.h: where a job's steps run. Executors differ only in how they start the agent and
 * reach it (doc/architecture.md): `host` runs runner-agent as a child process in a per-job
 * directory; `docker` runs it as the entrypoint of the job container. Either way the job run
 * talks to the agent through x->conn once on_ready reported success. */
#ifndef EXECUTOR_H
#define EXECUTOR_H

#include "agentconn.h"
#include "runner/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

struct executor;

struct executor_cbs {
    /* Setup finished: rc 0 and x->conn ready, or an error (then close the executor). */
    void (*on_ready)(void *arg, int rc, const struct err *e);
    /* An agent event (after on_ready). */
    void (*on_event)(void *arg, const struct agentconn_event *ev);
    /* A line about setting up or tearing down the job (pulling, creating, removing...). */
    void (*on_log)(void *arg, const char *line);
    /* executor_close() finished; the executor is freed. */
    void (*on_closed)(void *arg);
};

/* What a job asks of its executor. Strings are borrowed for the setup call. */
struct executor_job {
    const char *name;         /* unique per job run: container and directory names */
    const char *image;        /* docker: image reference; host: ignored */
    json_t *env;              /* extra environment of the job container/agent (object) */
    const char *options;      /* docker: container.options (docker run flags) or NULL */
    json_t *volumes;          /* docker: container.volumes, evaluated (array of strings) or NULL */
    json_t *services;         /* docker: evaluated services map {id: {image, env, ports, volumes,
                                 options, credentials}} or NULL */
    const char *source;       /* directory copied into the workspace (NULL: empty workspace) */
    bool bind;                /* use source itself as the workspace (no copy) */
    const json_t *profile;    /* docker: the label's settings for this job (profile.h's
                                 profile_job()), or NULL: none */
};

typedef void (*executor_done_fn)(void *arg, int rc, const struct err *e);
typedef void (*executor_tar_fn)(void *arg, int rc, const struct err *e, const void *tar,
                                size_t len);

struct executor_ops {
    const char *name;
    int (*setup)(struct executor *x, const struct executor_job *job, struct err *e);
    void (*close)(struct executor *x);
    /* Optional: a new JSON description from which the executor can be found again after a
     * restart of the host side (NULL: not resumable, or not set up yet). */
    json_t *(*describe)(struct executor *x);
    /* Optional (container executors): extracts a tar (copied) into the directory dest, which
     * exists where the steps run; done follows on the loop. */
    int (*put_archive)(struct executor *x, const char *dest, const void *tar, size_t len,
                       executor_done_fn done, void *arg, struct err *e);
    /* Optional (container executors): a tar of path where the steps run (its entries under
     * path's base name); done follows on the loop with the tar, borrowed for the call. */
    int (*get_archive)(struct executor *x, const char *path, executor_tar_fn done, void *arg,
                       struct err *e);
};

struct executor {
    const struct executor_ops *ops;
    uv_loop_t *loop;
    struct agentconn *conn;   /* set once ready */
    char *workspace;          /* the workspace path as steps see it */
    char *file_dir;           /* directory for scripts and file-command files */
    char *base_path;          /* PATH steps start from */
    char *agent_cmd;          /* the agent binary as steps see it (for --hash-files) */
    json_t *base_env;         /* the environment a step starts from (lowest precedence) */
    char *workspace_mount;    /* docker: "SOURCE:/workspace" for step containers; else NULL */
    char *act_mount;          /* docker: "VOLUME:/var/run/act" (file commands); else NULL */
    char *network;            /* docker: the job network's name; else NULL */
    struct docker *docker;    /* docker: the client, for step containers; else NULL */
    const json_t *limits;     /* docker: the label's settings (profile.h) whose limits step
                                 containers get too (dockerstep_opts.limits); else NULL */
    json_t *job_ctx;          /* the `job` context's container/services parts, or NULL */
    bool bash;                /* bash exists where steps run */
    bool node;                /* node exists where steps run (the host: assumed) */
    bool container;           /* steps run in a container */
    const struct executor_cbs *cbs;
    void *arg;
};

/* Starts setting up job on x; on_ready follows (never from inside this call). */
int executor_setup(struct executor *x, const struct executor_job *job, struct err *e);
/* Copies the host directory src into dest, a directory as the steps see it that already exists
 * (make it with a step command first): an upload into the job container, or a copy on the host.
 * Runs off the loop; done follows on it (never from inside this call), unless this returns <0.
 * The executor must not be closed before done. */
int executor_put_dir(struct executor *x, const char *src, const char *dest,
                     executor_done_fn done, void *arg, struct err *e);

/* executor_ops.describe, or NULL when the executor has none. */
json_t *executor_describe(struct executor *x);
/* Stops the agent, removes what the job created, then on_closed. x is gone after that. */
void executor_close(struct executor *x);

/* A host executor: the agent at agent_path runs as a child in a new directory under tmp_root,
 * which holds the workspace and the step files and is removed at close. */
int executor_host_new(uv_loop_t *loop, const char *agent_path, const char *tmp_root,
                      const struct executor_cbs *cbs, void *arg, struct executor **out,
                      struct err *e);

/* Finds runner-agent: $RUNNERD_AGENT, beside/below the running binary's build tree, or the
 * installed path. Returns a new string or NULL. */
char *executor_find_agent(const char *argv0);

#endif
