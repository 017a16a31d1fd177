/* httpc.h: asynchronous HTTP client: one libcurl multi handle driven by a libuv loop
 * (doc/style.md §6).
 *
 * Every request runs on the loop; nothing blocks. Completion is reported once per request
 * through its done callback, always from the loop (never from inside httpc_request() or
 * httpc_cancel()). The easy handle is already removed and cleaned up when the callback runs. */
#ifndef RUNNER_HTTPC_H
#define RUNNER_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "runner/err.h"

struct httpc;
struct httpc_req;
struct httpc_conn;

/* The outcome of one request; borrowed, valid only during the done callback. */
struct httpc_result {
    int rc;            /* 0, -ECONNREFUSED, ERR_TIMEOUT, ERR_CANCELED, -EFBIG (body cap), -EIO... */
    struct err err;    /* message when rc < 0: "GET http://...: <reason>" */
    long status;       /* HTTP status, 0 if none was received */
    const char *body;  /* NUL-terminated; "" when streamed or empty (error bodies are kept) */
    size_t body_len;
    const char *headers; /* raw header block of the final response (NUL-terminated) */
    /* Connect-only requests: the connection, now owned by the callee (free with
     * httpc_conn_free()); NULL otherwise or on failure. */
    struct httpc_conn *conn;
};

/* Streaming body callback for 2xx/1xx responses: return 0 to go on, or a negative code (set
 * e) to abort the transfer; that code and message are then reported by the done callback.
 * Non-2xx bodies are always buffered (capped) so the error message reaches done. */
typedef int (*httpc_data_fn)(const char *p, size_t n, void *arg, struct err *e);
typedef void (*httpc_done_fn)(const struct httpc_result *res, void *arg);

struct httpc_opts {
    const char *method;             /* default "GET" (or "POST" when body is set) */
    const char *url;                /* required */
    const char *const *headers;     /* NULL-terminated "Name: value" lines, copied */
    const void *body;               /* copied; NULL = no body */
    size_t body_len;
    bool send_empty_body;           /* POST/PUT with Content-Length: 0 */
    const char *unix_socket;        /* CURLOPT_UNIX_SOCKET_PATH */
    const char *ca_file;            /* TLS: CURLOPT_CAINFO */
    const char *cert_file;          /* TLS client cert */
    const char *key_file;           /* TLS client key */
    bool tls_insecure;              /* only when explicitly configured */
    long connect_timeout_ms;        /* default 10000 */
    long timeout_ms;                /* total; 0 = none (streams) */
    long low_speed_limit;           /* bytes/s; 0 = off */
    long low_speed_time;            /* seconds */
    size_t max_body;                /* cap for buffered bodies; default 16 MiB */
    httpc_data_fn on_data;          /* if set, 2xx bodies are streamed, not buffered */
    bool connect_only;              /* CURLOPT_CONNECT_ONLY: result carries a raw conn */
    bool accept_compressed;         /* Accept-Encoding: what libcurl can decode (gzip...);
                                       bodies (and max_body) are the decoded bytes */
    bool verbose;                   /* wire trace via log_debug (credentials redacted) */
};

/* Returns a new client on loop; close with httpc_close(). */
struct httpc *httpc_new(uv_loop_t *loop);

/* Starts closing: every request in flight completes with ERR_CANCELED (from the loop), then all
 * handles close and h is freed; cb (may be NULL) runs last. Raw conns still open stay valid to
 * free (TLS ones go dead: send/recv return -EPIPE); stop polling them first. */
void httpc_close(struct httpc *h, void (*cb)(void *arg), void *arg);

/* Starts a request. On success returns 0 and (if out is non-NULL) a handle borrowed until the
 * done callback returns (for httpc_cancel()). On failure returns <0 and done is never called. */
int httpc_request(struct httpc *h, const struct httpc_opts *o, httpc_done_fn done, void *arg,
                  struct httpc_req **out, struct err *e);

/* Cancels a request in flight: done runs later from the loop with ERR_CANCELED (unless it had
 * already completed in the same loop iteration). Do not call after done has run. */
void httpc_cancel(struct httpc_req *r);

/* The loop h runs on. */
uv_loop_t *httpc_loop(const struct httpc *h);

/* Number of requests in flight. */
size_t httpc_active(const struct httpc *h);

/* ---- raw connections from connect_only requests ---- */

/* The socket to poll for readability/writability. */
int httpc_conn_fd(const struct httpc_conn *c);
/* Non-blocking send/recv: return bytes (>0), 0 on EOF (recv only), -EAGAIN, or -errno/-EIO. */
long httpc_conn_send(struct httpc_conn *c, const void *p, size_t n);
long httpc_conn_recv(struct httpc_conn *c, void *p, size_t n);
/* Half-closes the sending side where possible (plain sockets); returns 0 or -errno. */
int httpc_conn_shutdown_write(struct httpc_conn *c);
/* Closes the connection and frees c (NULL is fine). Stop polling the fd before calling. */
void httpc_conn_free(struct httpc_conn *c);

/* Returns a header's value from a raw header block into out (trimmed); 0 or ERR_NOTFOUND. */
int httpc_header_get(const char *headers, const char *name, char *out, size_t outsz);

/* Percent-encodes s for a URL query or path segment; returns a new string (free()). */
char *httpc_escape(const char *s);

#endif
