/* services.h: a job's service containers (doc/workflow-semantics.md §2.2, §14.3, §14.4):
 * images resolved, containers created on the job network (alias = the service id) and
 * started in parallel, then every service with a health check (from options or the image)
 * waited for until `healthy`; services_stop() removes them all. */
#ifndef RUNNER_SERVICES_H
#define RUNNER_SERVICES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "docker.h"
#include "runner/err.h"

struct services;

/* One `services.<id>` entry, already interpolated. Borrowed; read only in services_start(). */
struct services_def {
    const char *id;              /* the service id: network alias and context key */
    const char *image;
    json_t *env;                 /* object name -> string (numbers/bools converted); may be NULL */
    const char *const *ports;    /* "5432", "8080:80", "127.0.0.1:8080:80", ".../udp"; NULL-term. */
    const char *const *volumes;  /* "src:dst[:opts]" or "/path"; NULL-terminated; may be NULL */
    const char *options;         /* docker run flags (dockeropts); may be NULL */
    const char *const *cmd;      /* Cmd override, NULL-terminated; NULL = the image's */
    const char *const *entrypoint; /* Entrypoint override, NULL-terminated; NULL = the image's */
    const char *username;        /* registry credentials, both or neither; may be NULL */
    const char *password;
};

struct services_config {
    struct docker *d;        /* borrowed; must outlive the services */
    const char *job_name;    /* container names are "<job_name>-<id>"; NULL: Docker names them */
    const char *network;     /* the job network (Id or name) the services join */
    json_t *labels;          /* borrowed, copied; role "service" is added */
    bool allow_pull;
    bool allow_privileged;   /* --privileged in options */
    long health_timeout_ms;  /* overall bound on the health wait; 0 = 5 minutes */
    long poll_ms;            /* the longest health poll interval (the first polls come sooner);
                                0 = 1000 */
    const json_t *limits;    /* the job's label settings (profile.h's profile_job()): their
                                memory, CPU and pids limits apply to every service, after its
                                options; NULL: none */
    /* Checks one volume (from `volumes` or -v in options); return <0 with e set to refuse it.
     * NULL: all volumes are accepted. */
    int (*validate_volume)(const char *volume, void *arg, struct err *e);
    /* Turns a named volume (NAME:/path[:ro|rw], from `volumes` or -v) into a HostConfig.Mounts
     * entry in *mount (the runner's name and labels for it), or returns <0 with e set to refuse
     * it. NULL: named volumes are binds as written. */
    int (*mount_volume)(const char *volume, void *arg, json_t **mount, struct err *e);
    void (*log)(const char *line, void *arg); /* progress lines; may be NULL */
    /* Every service's start was answered (their health wait begins); may be NULL. */
    void (*on_started)(void *arg);
    void *arg;                                /* for validate_volume, log and on_started */
};

/* Called once when every service is ready (rc 0), or on the first failure (rc <0, e names
 * the service: "service 'db' is unhealthy: ..."), or ERR_CANCELED when services_stop() came
 * first. The services stay valid: call services_stop() in any case. */
typedef void (*services_start_cb)(struct services *s, int rc, const struct err *e, void *arg);
/* Called once when services_stop() has removed everything; s is freed by then. rc is the first
 * removal failure (0 if none). */
typedef void (*services_stop_cb)(int rc, const struct err *e, void *arg);

/* Starts n services (n may be 0: done is called from the loop with 0). Returns 0 and *out, or
 * <0 with e set (bad options, refused volume, bad port; nothing created, no callback).
 * loop must be d's loop. */
int services_start(uv_loop_t *loop, const struct services_config *cfg,
                   const struct services_def *defs, size_t n, services_start_cb done, void *arg,
                   struct services **out, struct err *e);
/* Removes every service container (force, with anonymous volumes), after waiting for calls in
 * flight, then frees s and calls done. Call exactly once, any time after services_start(). */
void services_stop(struct services *s, services_stop_cb done, void *arg);
/* The `job.services` context: a new object {id: {"id": container Id, "network": network,
 * "ports": {"5432": "49153", "53/udp": "49154"}}} (json_decref it). Ports come from the last
 * inspect (filled once the services are ready). */
json_t *services_context(const struct services *s);

#endif
