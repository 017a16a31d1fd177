/* docker.h: asynchronous Docker Engine API client on httpc (doc/docker-engine.md).
 *
 * Every call returns 0 when started (its callback then runs exactly once, from the loop) or a
 * negative code with e filled (the callback is never called). Errors in callbacks name the call
 * and the object ("remove container 4f2a...: 409 You cannot remove a running container ...").
 * Codes: 404 -> ERR_NOTFOUND, 409 -> -EEXIST (conflict), 403 -> -EBUSY (network in use),
 * 400 -> ERR_INVALID, 401 -> -EACCES, 5xx and others -> -EIO; transport codes come from httpc
 * (-ECONNREFUSED, ERR_TIMEOUT, ERR_CANCELED, -EFBIG). */
#ifndef RUNNER_DOCKER_H
#define RUNNER_DOCKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "httpc.h"
#include "runner/err.h"

/* Labels on every object the runner creates (doc/docker-engine.md §5). */
#define DOCKER_LABEL_MANAGED "io.runnerd.managed"
#define DOCKER_LABEL_RUNNER "io.runnerd.runner"
#define DOCKER_LABEL_JOB "io.runnerd.job"
#define DOCKER_LABEL_ROLE "io.runnerd.role"

/* Our newest API version; the client uses min(this, server's). */
#define DOCKER_API_MAX "1.41"

struct docker;

/* The result of a call; borrowed, valid only during the callback. */
struct docker_res {
    int rc;
    struct err err;
    long status;         /* HTTP status (0 if none) */
    json_t *json;        /* parsed JSON reply when there is one (inspect, list, version) */
    const char *body;    /* raw reply body (archive GET: the tar) */
    size_t body_len;
    const char *id;      /* create/import/resolve: the new or resolved Id */
    long long exit_code; /* wait: StatusCode */
    int removed;         /* sweep: number of objects removed */
};
typedef void (*docker_cb)(const struct docker_res *res, void *arg);

/* Where the daemon is; NULL fields come from the environment (DOCKER_HOST, DOCKER_CERT_PATH,
 * DOCKER_TLS_VERIFY, DOCKER_API_VERSION), then defaults (unix:///var/run/docker.sock). */
struct docker_config {
    const char *host;        /* unix:///path or tcp://host:port */
    const char *cert_path;   /* dir with ca.pem, cert.pem, key.pem: TLS on */
    bool tls;                /* TLS on for tcp:// even without cert_path (CA from cert_path) */
    const char *api_version; /* pin, e.g. "1.41": no negotiation */
    long timeout_ms;         /* total timeout for ordinary calls; default 60000 */
};

/* Creates a client using http (borrowed; must outlive it). No I/O yet: call docker_connect().
 * Returns 0 and *out (free with docker_free()), or <0 (bad DOCKER_HOST etc.). */
int docker_new(struct httpc *http, const struct docker_config *cfg, struct docker **out,
               struct err *e);
/* Frees d; calls still in flight must have completed (or be canceled) first. NULL is fine. */
void docker_free(struct docker *d);

/* GET /_ping then, unless the ping's Api-Version is taken as it is (not pinned, not above
 * DOCKER_API_MAX), /v<ver>/version for the engine's minimum: negotiates the API version.
 * res->json = the version object, or NULL when there was no /version call. */
int docker_connect(struct docker *d, docker_cb cb, void *arg, struct err *e);
/* The negotiated version ("1.41"); NULL before docker_connect() succeeded (unless pinned). */
const char *docker_api_version(const struct docker *d);
/* The endpoint as configured, e.g. "unix:///var/run/docker.sock". */
const char *docker_host(const struct docker *d);

/* Any call: path is after the version prefix ("/containers/json?all=1"); body copied (NULL =
 * none); content_type NULL = application/json when body is set. what names the call for
 * errors. JSON replies are parsed into res->json. */
int docker_call(struct docker *d, const char *what, const char *method, const char *path,
                const char *content_type, const void *body, size_t len, docker_cb cb, void *arg,
                struct err *e);

/* ---- images ---- */

struct docker_auth {
    const char *username, *password, *serveraddress; /* or: */
    const char *identitytoken;
};

/* Fills dst with new copies of src's strings (NULL stays NULL), for docker_auth_free(). */
void docker_auth_copy(struct docker_auth *dst, const struct docker_auth *src);
/* Frees the strings of a docker_auth whose strings are owned (docker_auth_copy()) and clears it. */
void docker_auth_free(struct docker_auth *a);

/* GET /images/{ref}/json. res->json = the image (Id, RepoDigests, Config.Env/User, ...). */
int docker_image_inspect(struct docker *d, const char *ref, docker_cb cb, void *arg,
                         struct err *e);
/* Pulls ref (name, name:tag, name@sha256:...). auth may be NULL. Errors reported inside the
 * progress stream (error/errorDetail) fail the call. progress (may be NULL) gets each status. */
int docker_image_pull(struct docker *d, const char *ref, const struct docker_auth *auth,
                      void (*progress)(const char *status, void *arg), docker_cb cb, void *arg,
                      struct err *e);
/* Imports a rootfs tar as repo:tag (changes: NULL-terminated Dockerfile lines like
 * "ENV PATH=/bin", may be NULL). res->id = the new image Id. */
int docker_image_import(struct docker *d, const void *tar, size_t len, const char *repo,
                        const char *tag, const char *const *changes, docker_cb cb, void *arg,
                        struct err *e);
/* POST /build: builds the tar build context (copied) into an image tagged tag (may be NULL).
 * dockerfile: the Dockerfile's path inside the context (NULL: "Dockerfile"). labels: JSON
 * object of image labels (borrowed) or NULL. Classic builder (no BuildKit), rm=1, forcerm=1,
 * pull=0: base images present locally are used as they are, but the engine still looks a
 * missing one up in its registry (offline: fails with the engine's message). No total timeout.
 * progress (may be NULL) gets each line of the build's output ("Step 1/3 : FROM ...", RUN
 * output), without its newline (one over 1 MiB in parts); empty lines are skipped. An error in
 * the stream (error/errorDetail) fails the call with the engine's message ("build image TAG: The
 * command '/bin/sh -c exit 3' returned a non-zero code: 3"); so do HTTP errors ("... 400
 * dockerfile parse error line 2: unknown instruction: BOGUS"). res->id = the built image's Id
 * ("sha256:<64 hex>"), from the engine's aux message; a build without one fails (ERR_PROTO). */
int docker_image_build(struct docker *d, const void *tar, size_t len, const char *tag,
                       const char *dockerfile, json_t *labels,
                       void (*progress)(const char *line, void *arg), docker_cb cb, void *arg,
                       struct err *e);
/* docker_image_build() that also sets *req (when req is non-NULL) to the HTTP request,
 * borrowed until cb has returned: httpc_cancel(*req) closes the connection, which makes the
 * engine stop the build and remove its intermediate container; cb then gets ERR_CANCELED. */
int docker_image_build_req(struct docker *d, const void *tar, size_t len, const char *tag,
                           const char *dockerfile, json_t *labels,
                           void (*progress)(const char *line, void *arg), docker_cb cb,
                           void *arg, struct httpc_req **req, struct err *e);
/* DELETE /images/{ref}?force=... */
int docker_image_remove(struct docker *d, const char *ref, bool force, docker_cb cb, void *arg,
                        struct err *e);

/* Resolves a pinned reference to a local image and verifies it; res->id = the Id to pass to
 * container create, res->json = the image inspect object.
 *   sha256:<64 hex>          the image Id must equal it (ids are never pulled)
 *   name@sha256:<digest>     the digest must be in RepoDigests; else pulled when allow_pull,
 *                            else refused
 *   name[:tag]               resolved as is (pulled if missing and allow_pull); log res->id
 * expect_id (may be NULL): additionally the resolved Id must equal it. Never uses another image. */
int docker_image_resolve(struct docker *d, const char *ref, const char *expect_id,
                         bool allow_pull, const struct docker_auth *auth, docker_cb cb,
                         void *arg, struct err *e);

/* ---- containers ---- */

/* Helper for the create body; NULL/0 fields are omitted. */
struct docker_container_spec {
    const char *image;
    const char *const *entrypoint; /* NULL-terminated; {"" , NULL} resets */
    const char *const *cmd;
    const char *const *env;        /* "K=V" */
    const char *workdir;
    const char *user;
    json_t *labels;                /* borrowed object string->string */
    bool open_stdin;               /* OpenStdin + AttachStdin */
    bool stdin_once;               /* StdinOnce: the first attach closing stdin ends it (EOF) */
    bool attach_output;            /* AttachStdout + AttachStderr */
    const char *const *binds;      /* "src:dst[:opts]" */
    const char *network_mode;
    const char *network_alias;     /* with network_mode a user network: its alias */
    bool init;
    long long memory;              /* bytes */
    long long nano_cpus;
    long long pids_limit;
    json_t *device_requests;       /* borrowed array (GPUs) */
    bool privileged;
    /* HostConfig.LogConfig {"Type": "none"}: the engine keeps no copy of the output (no
     * json-file under its containers dir, no `docker logs`); for output read through attach. */
    bool log_none;
};
/* Returns a new create body (json_decref it). Tty is false, AutoRemove false. */
json_t *docker_container_spec_json(const struct docker_container_spec *s);
/* Returns a new labels object {managed: "1", runner, job} (runner/job may be NULL). */
/* What an image reference pins (doc/docker-engine.md §6.4): an image id "sha256:<64 hex>", a
 * manifest digest "NAME@sha256:<64 hex>", or nothing (a tag); the BAD kinds look like a pin but
 * are malformed. */
enum docker_pin {
    DOCKER_PIN_TAG,
    DOCKER_PIN_ID,
    DOCKER_PIN_DIGEST,
    DOCKER_PIN_BAD_ID,
    DOCKER_PIN_BAD_DIGEST,
};
enum docker_pin docker_pin_of(const char *ref);

/* "<a><b>" with the characters Docker refuses in names replaced by '-' (a new string). */
char *docker_object_name(const char *a, const char *b);
json_t *docker_labels_new(const char *runner, const char *job);

/* POST /containers/create[?name=]; body borrowed. res->id = container Id. */
int docker_container_create(struct docker *d, const char *name, json_t *body, docker_cb cb,
                            void *arg, struct err *e);
int docker_container_start(struct docker *d, const char *id, docker_cb cb, void *arg,
                           struct err *e);
/* condition: "next-exit", "not-running" or "removed" (NULL = not-running); no total timeout.
 * res->exit_code = StatusCode. */
int docker_container_wait(struct docker *d, const char *id, const char *condition, docker_cb cb,
                          void *arg, struct err *e);
int docker_container_kill(struct docker *d, const char *id, const char *signal, docker_cb cb,
                          void *arg, struct err *e);
int docker_container_stop(struct docker *d, const char *id, int timeout_s, docker_cb cb,
                          void *arg, struct err *e);
/* DELETE ?force=1&v=1 when force/volumes. A 404 is reported as ERR_NOTFOUND. */
int docker_container_remove(struct docker *d, const char *id, bool force, bool volumes,
                            docker_cb cb, void *arg, struct err *e);
int docker_container_inspect(struct docker *d, const char *id, docker_cb cb, void *arg,
                             struct err *e);
/* GET /containers/json?all=1&filters={"label":[label]}; label "k" or "k=v" (NULL = all). */
int docker_container_list(struct docker *d, const char *label, docker_cb cb, void *arg,
                          struct err *e);
/* PUT /containers/{id}/archive?path=dir with a tar body (copied). */
int docker_archive_put(struct docker *d, const char *id, const char *dir, const void *tar,
                       size_t len, docker_cb cb, void *arg, struct err *e);
/* GET /containers/{id}/archive?path=p: res->body = the tar (capped at 64 MiB). */
int docker_archive_get(struct docker *d, const char *id, const char *path, docker_cb cb,
                       void *arg, struct err *e);

/* ---- networks, volumes, sweep ---- */

/* CheckDuplicate (a name in use: -EEXIST), bridge driver; labels borrowed (may be NULL);
 * isolated: no traffic between the network's containers (enable_icc false). res->id = the
 * network's Id. */
int docker_network_create(struct docker *d, const char *name, json_t *labels, bool isolated,
                          docker_cb cb, void *arg, struct err *e);
int docker_network_remove(struct docker *d, const char *id, docker_cb cb, void *arg,
                          struct err *e);
/* aliases: NULL-terminated, may be NULL. */
int docker_network_connect(struct docker *d, const char *net, const char *container,
                           const char *const *aliases, docker_cb cb, void *arg, struct err *e);
int docker_volume_create(struct docker *d, const char *name, json_t *labels, docker_cb cb,
                         void *arg, struct err *e);
int docker_volume_remove(struct docker *d, const char *name, bool force, docker_cb cb,
                         void *arg, struct err *e);
/* Removes every container (force, v), then network, then volume carrying label ("k=v").
 * res->removed counts them; res->rc is the first failure (the sweep goes on past failures). */
int docker_sweep(struct docker *d, const char *label, docker_cb cb, void *arg, struct err *e);

/* ---- attach: a raw duplex stream to a container's stdio ---- */

struct docker_attach;

struct docker_attach_cbs {
    /* The 101 header arrived: the stream is live (start the container now). */
    void (*on_ready)(struct docker_attach *a, void *arg);
    /* De-multiplexed output: stream 1 = stdout, 2 = stderr. */
    void (*on_output)(struct docker_attach *a, int stream, const char *p, size_t n, void *arg);
    /* The stream ended: rc 0 = EOF, else an error (e.g. ERR_PROTO on a bad frame). Called once,
     * and nothing else is called afterwards; the owner still calls docker_attach_close(). */
    void (*on_end)(struct docker_attach *a, int rc, const struct err *e, void *arg);
};

/* POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1 as a hijacked connection
 * (connect-only easy handle, request and 101 header handled here, socket polled on the loop).
 * *out is valid until docker_attach_close(). */
int docker_attach(struct docker *d, const char *id, const struct docker_attach_cbs *cbs,
                  void *arg, struct docker_attach **out, struct err *e);
/* Queues bytes for the container's stdin (copied; sent when the socket is writable). Returns 0,
 * or -ENOBUFS past 16 MiB queued, or -EPIPE after the end or close_stdin. */
int docker_attach_write(struct docker_attach *a, const void *p, size_t n);
/* Half-closes stdin once the queue is sent (plain sockets; ignored over TLS). The container
 * sees EOF only if it was created with StdinOnce (spec: otherwise stdin stays open). */
void docker_attach_close_stdin(struct docker_attach *a);
/* Bytes still queued for stdin. */
size_t docker_attach_pending(const struct docker_attach *a);
/* Closes the stream and frees a (asynchronously; safe inside its callbacks); no callback runs
 * after this. NULL is fine. */
void docker_attach_close(struct docker_attach *a);

/* ---- added for dind.c: the client's loop and container logs ---- */

/* The loop d's calls run on (its httpc's). */
uv_loop_t *docker_loop(const struct docker *d);
/* GET /containers/{id}/logs?stdout=1&stderr=1&tail=<tail> of a container created without a
 * TTY: res->body / res->body_len = stdout and stderr de-multiplexed, in the engine's order
 * (the raw body if it is not multiplexed); capped at 1 MiB. tail <= 0: all lines. */
int docker_container_logs(struct docker *d, const char *id, int tail, docker_cb cb, void *arg,
                          struct err *e);

#endif
