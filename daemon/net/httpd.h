/* httpd.h: runnerd's loopback status endpoint (issue 5): GET /healthz, /readyz and /metrics
 * over HTTP/1.1 on the daemon's libuv loop, requests parsed by Debian's libhttp-parser.
 * Off unless configured (runnerd.http). Only loopback addresses are accepted: this endpoint
 * has no authentication.
 *
 *   /healthz  200 "ok\n" while the loop answers (and cbs->healthy, when set, says so; else 503
 *             with its reason)
 *   /readyz   200 "ready\n", or 503 with one reason per line (no free slot, no free GPU, low
 *             disk space...) from cbs->ready
 *   /metrics  200, Content-Type "text/plain; version=0.0.4; charset=utf-8", cbs->metrics
 *   else      404 (any method); GET and HEAD only on the three paths, else 405 with
 *             Allow: GET, HEAD. The query string is ignored.
 *
 * Every response has Content-Length and Cache-Control: no-store; HEAD gets the headers a GET
 * would. Keep-alive is honoured (HTTP/1.1 by default, HTTP/1.0 on request), pipelined requests
 * are answered in order, one at a time. A request that cannot be parsed gets 400, a request
 * head (request line and headers) over 8 KiB gets 431, a body over 8 KiB gets 413; each then
 * closes the connection. A connection is closed after 10 s without a complete request (idle),
 * and at most 64 are served at once: more are accepted and closed at once (one closing after
 * its last response no longer counts). */
#ifndef HTTPD_H
#define HTTPD_H

#include "runner/buf.h"
#include "runner/err.h"

#include <stdbool.h>
#include <uv.h>

struct httpd;

struct httpd_cbs {
    /* Optional: false and reason lines appended to why when unhealthy. */
    bool (*healthy)(void *arg, struct buf *why);
    /* true when ready; else false and one reason per line appended to why. NULL: always ready. */
    bool (*ready)(void *arg, struct buf *why);
    /* Appends the metrics exposition to out. NULL: an empty body. */
    void (*metrics)(void *arg, struct buf *out);
};

/* Checks an address "HOST:PORT" ("127.0.0.1:9464", "[::1]:9464", "localhost:9464"): 0, or
 * ERR_INVALID with a message saying what is wrong (not loopback, bad port...). HOST is an IPv4
 * address in 127.0.0.0/8, [::1], or "localhost" (taken as 127.0.0.1, not looked up); PORT is
 * 0 to 65535 (0: any free port). */
int httpd_check_addr(const char *addr, struct err *e);

/* Listens on addr (checked as by httpd_check_addr()). cbs and arg are borrowed and must
 * outlive the server; the callbacks run on the loop and may call httpd_close(). On success *out
 * is a new server to close with httpd_close(); on failure (ERR_INVALID, or -errno from bind or
 * listen, e.g. -EADDRINUSE) *out is NULL and there is nothing to close (only a libuv failure
 * after a successful bind and listen leaves a handle closing on the loop). */
int httpd_start(uv_loop_t *loop, const char *addr, const struct httpd_cbs *cbs, void *arg,
                struct httpd **out, struct err *e);
/* The port actually bound (addr may say port 0). */
int httpd_port(const struct httpd *h);
/* Closes the listener and every connection (responses in flight are dropped); done(arg) once
 * all handles are closed (done may be NULL). h is freed then. Call it once. */
void httpd_close(struct httpd *h, void (*done)(void *arg), void *arg);

#endif
