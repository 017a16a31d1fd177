/* dind.h: the per-job Docker daemon sidecar of a label in `dind` mode (issue 5;
 * doc/docker-engine.md §4.2). For job J on its network N:
 *
 *   - per-job TLS material made with OpenSSL (a fresh CA, a server certificate for the DNS
 *     name "docker" (and localhost/127.0.0.1), a client certificate), never written to the
 *     host's disk: put into two labelled volumes with the archive API: "<J>-dind-certs"
 *     (server side: ca.pem, cert.pem, key.pem; only the sidecar mounts it) and
 *     "<J>-dind-client" (ca.pem, cert.pem, key.pem of the client; the job mounts it read-only
 *     at /certs/client);
 *   - a labelled storage volume "<J>-dind-data" at /var/lib/docker;
 *   - the sidecar container "<J>-dind" from the dind image on N with network alias "docker",
 *     running dockerd on tcp://0.0.0.0:2376 with --tlsverify and the server certificates (and
 *     on its unix socket), plus extra arguments from the label settings;
 *   - readiness: the sidecar reports healthy (a Docker healthcheck in the sidecar that asks the
 *     inner daemon for its version) within ready_timeout_s, else an error that includes the
 *     sidecar's last log lines.
 *
 * Every object carries the labels given (the job's labels), so the executor's teardown (which
 * removes every container, network and volume labelled with the job) removes them too;
 * dind_free() never calls the engine.
 *
 * An engine that refuses the privileges the sidecar needs (create or start fails: privileged
 * containers not permitted, "unable to apply caps", "operation not permitted") fails the start
 * with -EPERM (DIND_ERR_PERM) and a message that says so in plain words and names the label's
 * remedy ("the Docker engine refused the privileges the dind sidecar needs (unable to apply
 * caps: operation not permitted); it cannot run docker: dind with dind_privileges: privileged;
 * use docker: socket, dind_privileges: caps, or give dockerd full capabilities").
 *
 * The sidecar runs the image's entry point with Cmd ["dockerd", "--host=unix:///var/run/
 * docker.sock", "--host=tcp://0.0.0.0:2376", "--tlsverify", "--tlscacert=/certs/server/ca.pem",
 * "--tlscert=...", "--tlskey=...", args...] and DOCKER_TLS_CERTDIR="" (docker:dind's entry
 * point then runs that dockerd as given and makes no certificates of its own). The image needs
 * the docker CLI for the health check. */
#ifndef DIND_H
#define DIND_H

#include "runner/err.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>

struct docker;
struct dind;

/* The code of a refused privilege (see above). */
#define DIND_ERR_PERM (-EPERM)

enum dind_priv {
    DIND_PRIV_PRIVILEGED, /* HostConfig.Privileged (what docker:dind documents) */
    DIND_PRIV_CAPS,       /* doc/docker-engine.md §4.2's non-privileged recipe (all capabilities but
                             SYS_RESOURCE, unconfined seccomp/apparmor/systempaths, device
                             cgroup rule, /sys/fs/cgroup bound rw): about as strong as
                             privileged; for engines whose own bounding set is reduced */
};

struct dind_opts {
    const char *job;            /* the job's name: object names start with it */
    const char *image;          /* the dind image (an id or reference present locally) */
    const char *network;        /* the job network: the sidecar joins it with alias "docker" */
    const json_t *labels;       /* labels for every object (copied) */
    enum dind_priv priv;
    const char *const *args;    /* extra dockerd arguments (NULL-terminated) or NULL */
    double ready_timeout_s;     /* 0: 60 s */
    const json_t *limits;       /* the job's label settings (profile.h's profile_job()): their
                                   memory, CPU and pids limits apply to the sidecar; NULL: none */
};

/* What the job container needs once the sidecar is ready. */
struct dind_job {
    const char *const *env;     /* DOCKER_HOST=tcp://docker:2376, DOCKER_TLS_VERIFY=1,
                                   DOCKER_CERT_PATH=/certs/client (NULL-terminated) */
    const char *bind;           /* "<J>-dind-client:/certs/client:ro" */
};

/* done(arg, 0, NULL) when the sidecar is ready, or done(arg, rc, e) with the reason: -EPERM
 * (refused privileges), ERR_TIMEOUT (not healthy in time), -EIO (the sidecar exited or did
 * not start: e names the exit code and ends with its last log lines), or an engine call's own
 * code. Called at most once, never from inside dind_start(). */
typedef void (*dind_done_fn)(void *arg, int rc, const struct err *e);

/* Starts the sidecar of o->job on d's loop (o is copied). Returns 0 and *out (free with
 * dind_free(), also after done), or <0 with e set (bad options, or the first engine call
 * could not be issued): then nothing was created and done is never called. */
int dind_start(struct docker *d, const struct dind_opts *o, dind_done_fn done, void *arg,
               struct dind **out, struct err *e);
/* Valid after a successful done, until dind_free(). */
const struct dind_job *dind_job(const struct dind *x);
/* The sidecar's last log lines (up to 20; control characters escaped; newline-separated) when
 * done reported an exit, a failed start or a timeout, for the job log; NULL otherwise.
 * Borrowed, valid until dind_free(). */
const char *dind_logs(const struct dind *x);
/* Stops waiting (no done call after this) and frees x. Engine calls in flight finish on their
 * own; objects are left to the job's teardown. */
void dind_free(struct dind *x);

#endif
