/* jobcache.h: what a front end (runnerd, runnerctl exec) does around its jobs for the
 * actions/cache server (cache.h): where job containers reach the host, the server started
 * there (or another host's server), and each job's token and variables. The job run itself
 * knows nothing of it: the variables reach its steps through launch_opts (launch.h), the
 * token its mask.
 *
 * Reachability: the server listens on 127.0.0.1 (jobs on the host) and on the engine's default
 * bridge's gateway, an address of this host every job network routes to (the shared isolated
 * bridge and a job's own network included: packets to the host's own address are delivered
 * locally, not forwarded between bridges). Never on 0.0.0.0. */
#ifndef JOBCACHE_H
#define JOBCACHE_H

#include "cache.h"
#include "runner/buf.h"
#include "runner/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct docker;
struct jobcache;

/* The engine's default bridge's gateway as a dotted IPv4 address (a new string), or NULL with
 * e filled (the engine is not on this host's unix socket, the bridge has no IPv4 address of
 * this host). */
typedef void (*jobcache_gateway_cb)(void *arg, char *ip, const struct err *e);
/* Asks the engine (GET /networks/bridge: IPAM's gateway, else the address of the bridge's
 * interface) and checks the address is this host's. Returns 0 (cb follows, once, from the
 * loop) or <0 with e filled. */
int jobcache_gateway(struct docker *d, jobcache_gateway_cb cb, void *arg, struct err *e);

struct jobcache_opts {
    const char *dir;          /* blobs (a local server) */
    const char *db_path;      /* its index */
    const char *key_file;     /* the signing key; made (0600) when missing and create_key */
    bool create_key;
    const char *external_url; /* another host's server, ending in "/"; NULL: our own */
    int64_t max_size, max_age; /* 0: the server's defaults */
    int port;                 /* 0: any free port */
    const char *gateway;      /* where job containers reach the host, or NULL: no container
                                 reaches the server (host jobs only) */
};

/* Loads the key and starts the server (unless external_url) on 127.0.0.1 and o->gateway.
 * Returns 0 and *out (close with jobcache_close()), or <0 with e filled. */
int jobcache_new(uv_loop_t *loop, const struct jobcache_opts *o, struct jobcache **out,
                 struct err *e);

/* The base URL jobs in containers (container) or on the host use, or NULL: none reaches it.
 * Borrowed. */
const char *jobcache_url(const struct jobcache *jc, bool container);

/* A job's token for claims c (expires and the rest filled by the caller) and its variables:
 * *env_container and *env_host (new objects, or NULL where no URL reaches the server), *token
 * (a new string: add it to the job's mask). runtime_token: ACTIONS_RUNTIME_TOKEN is the token
 * too (runnerctl exec; runnerd keeps Gitea's there). Returns 0 or <0 with e filled. */
int jobcache_job(struct jobcache *jc, const struct cache_claims *c, bool runtime_token,
                 json_t **env_container, json_t **env_host, char **token, struct err *e);

/* Appends the server's Prometheus lines (nothing for an external server). */
void jobcache_metrics(const struct jobcache *jc, struct buf *out);

/* Stops the server; done(arg) once its handles are closed (at once for NULL or an external
 * server). */
void jobcache_close(struct jobcache *jc, void (*done)(void *arg), void *arg);

#endif
