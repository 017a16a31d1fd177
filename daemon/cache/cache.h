/* cache.h: the actions/cache server (issue 17). The contract between the server
 * (daemon/cache/) and its users (runnerd, runnerctl exec, runnerctl cache serve).
 *
 * The server speaks the `_apis/artifactcache/` protocol that @actions/cache's legacy client
 * uses (doc/cache.md has the protocol as we understand it and what we answer): look up by
 * keys + version, reserve, chunked upload with Content-Range, commit with a size check,
 * download with Range. Blobs live under dir; the index is in an sqlite database (the state
 * database's file, its own tables); a crash mid-upload leaves no visible entry.
 *
 * Every request carries "Authorization: Bearer TOKEN", a token made by cache_token_mint()
 * with the key the server verifies with (a runner's own, or a key a fleet shares). A token
 * binds a repository and a ref: a job reads entries of its repository from its own ref first,
 * then the repository's default branch; it writes only under its own ref. No token, a bad
 * signature or an expired token: 401.
 *
 * Layer: cache links base and net (and sqlite, libuv, http-parser); runnerd (service) and
 * runnerctl (cli) link it. The job run knows nothing of it: the front end passes the
 * variables cache_job_env() gives through the job's config_env, and the token into its mask. */
#ifndef CACHE_H
#define CACHE_H

#include "runner/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define CACHE_KEY_LEN 32 /* bytes of the HMAC-SHA256 key */

/* What a token grants. Strings are borrowed by mint, new (free with cache_claims_free())
 * from verify. */
struct cache_claims {
    char *repo;           /* "owner/name" (case-folded by mint) */
    char *ref;            /* the job's ref: "refs/heads/main", "refs/pull/7/merge", ... */
    char *default_ref;    /* the repository's default branch as a ref, "refs/heads/main";
                             NULL or "": none (reads only ref) */
    char *job;            /* an id for logs and metrics (task id, or runnerctl's run id) */
    int64_t expires;      /* unix seconds */
};

/* A new token for c, signed with key: base64url(JSON claims) "." base64url(HMAC-SHA256).
 * Returns 0 or <0 (-ENOMEM, -EINVAL for a NULL repo or ref). */
int cache_token_mint(const uint8_t key[CACHE_KEY_LEN], const struct cache_claims *c,
                     char **out);
/* 0 and *out filled when tok is well formed, its signature is key's and it has not expired
 * at now; else <0 and *out untouched. Compares signatures in constant time. */
int cache_token_verify(const uint8_t key[CACHE_KEY_LEN], const char *tok, int64_t now,
                       struct cache_claims *out);
void cache_claims_free(struct cache_claims *c);

/* Loads the key in path (CACHE_KEY_LEN bytes as 64 hex digits and a newline), creating it
 * (mode 0600, random) when create and it does not exist. A fleet shares one such file. */
int cache_key_load(const char *path, bool create, uint8_t key[CACHE_KEY_LEN], struct err *e);

struct cache_server_opts {
    const char *dir;        /* blobs (created 0700 when missing) */
    const char *db_path;    /* sqlite database for the index (the state database's file) */
    const uint8_t *key;     /* CACHE_KEY_LEN bytes, copied */
    int64_t max_size;       /* bytes; 0: min(10 GiB, 10 % of dir's filesystem) */
    int64_t max_age;        /* seconds since last use before eviction; 0: 7 days */
    int64_t reserve_ttl;    /* seconds a reserved, never committed entry lives; 0: 1 hour */
    /* Where to listen: "IP:PORT" strings; every address gets the same port (the first's, or
     * one the kernel picks for the first when its port is 0). n_listen >= 1. */
    const char *const *listen;
    size_t n_listen;
};

struct cache_server;

/* Opens the index (recovering from a crash: half uploads removed), starts listening. Sets
 * SIGPIPE to SIG_IGN if it still has its default disposition (a client that vanishes must not
 * end the process). */
int cache_server_start(uv_loop_t *loop, const struct cache_server_opts *o,
                       struct cache_server **out, struct err *e);
/* Listens on one more address (IP or "IP:PORT" with the server's port) while running; 0 or
 * -errno. Listening twice on one address is 0. */
int cache_server_listen(struct cache_server *s, const char *ip, struct err *e);
int cache_server_port(const struct cache_server *s);
/* Appends Prometheus lines: runnerd_cache_hits_total, runnerd_cache_misses_total,
 * runnerd_cache_bytes (stored, committed), runnerd_cache_entries,
 * runnerd_cache_evictions_total, runnerd_cache_uploads_rejected_total{reason=...}. */
struct buf;
void cache_server_metrics(const struct cache_server *s, struct buf *out);
/* Runs eviction now (also run on a timer and after every commit). */
void cache_server_evict(struct cache_server *s);
/* Stops listening, drops connections and in-flight uploads (their parts deleted), closes the
 * index; done(arg) when every handle is closed. */
void cache_server_close(struct cache_server *s, void (*done)(void *arg), void *arg);

/* The variables a job's steps get, as a new JSON object of strings:
 * ACTIONS_CACHE_URL=base_url/token/ (the server takes the token from the path, so the bearer
 * the toolkit sends, ACTIONS_RUNTIME_TOKEN, may stay Gitea's own, which the artifact actions
 * need); with runtime_token (no Gitea: runnerctl exec), also ACTIONS_RUNTIME_TOKEN=token. */
struct json_t;
struct json_t *cache_job_env(const char *base_url, const char *token, bool runtime_token);
/* The token in a URL cache_job_env() made (its last path segment), a new string, or NULL. */
char *cache_url_token(const char *url);

#endif
