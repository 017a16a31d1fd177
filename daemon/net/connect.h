/* connect.h: the Gitea runner protocol client: Connect unary calls with JSON bodies over httpc
 * (doc/gitea-protocol.md §1). One client per runner identity; calls run on the loop and
 * complete through a callback, never from inside connect_call().
 *
 * Every call: POST base + path with Content-Type: application/json, Connect-Protocol-Version: 1,
 * Accept-Encoding (libcurl decodes gzip), User-Agent runnerd/VERSION, and, when the client has
 * an identity, x-runner-uuid / x-runner-token. Connect and total timeouts apply to each call.
 * A failed call is classified (rpc_error_class) from the status, the Connect code and the
 * message, so that "unregistered runner" inside a 500 is seen as unauthenticated. */
#ifndef CONNECT_H
#define CONNECT_H

#include "httpc.h"
#include "rpc.h"
#include "runner/err.h"

#include <stdbool.h>

struct connect_opts {
    const char *instance;     /* Gitea URL as entered; base = rtrim(instance,"/") + "/api/actions" */
    const char *uuid;         /* NULL/"" for Ping and Register */
    const char *token;
    const char *version;      /* runner version string (User-Agent, x-runner-version) */
    const char *ca_file;      /* TLS CA bundle or NULL */
    bool insecure;            /* skip TLS verification (runner.insecure) */
    long connect_timeout_ms;  /* default 10000 */
    long timeout_ms;          /* default total timeout per call: 30000 */
    bool verbose;             /* wire trace to the debug log (tokens redacted) */
};

/* The outcome of a call; borrowed, valid during the callback only. */
struct connect_result {
    int rc;                   /* 0; or ERR_TIMEOUT, ERR_CANCELED, ERR_PROTO (bad body),
                                 -ECONNREFUSED etc. (transport), -EREMOTEIO (server error) */
    struct err err;           /* "FetchTask: ..." when rc < 0 */
    enum rpc_errclass cls;    /* when rc < 0: RPC_ERR_UNAVAILABLE for transport failures and
                                 timeouts, else from rpc_error_class() */
    long status;              /* HTTP status, 0 if none */
    const struct rpc_error *rpc; /* the decoded error body for server errors, else NULL */
    void *resp;               /* rc == 0: the decoded response (struct of resp type), owned by
                                 the caller from here on: rpc_clear() + free() it */
};

typedef void (*connect_done_fn)(const struct connect_result *r, void *arg);

struct connect;
struct connect_call;

/* A new client on http (borrowed; must outlive it). Strings are copied. */
struct connect *connect_new(struct httpc *http, const struct connect_opts *o);
/* Cancels calls in flight (their callbacks run with ERR_CANCELED from the loop first, as
 * httpc does) and frees c once they have. */
void connect_free(struct connect *c);
/* Sets the identity (after Register). */
void connect_set_identity(struct connect *c, const char *uuid, const char *token);
/* The base URL ("http://host:port/api/actions"). */
const char *connect_base(const struct connect *c);

/* Calls path (RPC_PATH_*) with req (a struct of req_type), decoding the answer as resp_type.
 * timeout_ms 0 = the client's default. Returns 0 and, if out is non-NULL, a handle valid until
 * the callback returns; or <0 with e set and no callback. */
int connect_call(struct connect *c, const char *path, const struct rpc_type *req_type,
                 const void *req, const struct rpc_type *resp_type, long timeout_ms,
                 connect_done_fn done, void *arg, struct connect_call **out, struct err *e);
/* The callback runs later with ERR_CANCELED (unless it already ran). */
void connect_cancel(struct connect_call *call);
/* Calls in flight. */
size_t connect_active(const struct connect *c);

/* Blocking helper for command-line tools: runs one call on a private loop and returns its
 * result: 0 and *resp (caller frees with rpc_clear() + free()), or <0 with e set and, if cls
 * is non-NULL, the error class. */
int connect_call_sync(const struct connect_opts *o, const char *path,
                      const struct rpc_type *req_type, const void *req,
                      const struct rpc_type *resp_type, void **resp, enum rpc_errclass *cls,
                      struct err *e);

#endif
