/* httpd.c: the loopback status endpoint (see httpd.h), a user of the shared server plumbing
 * (httpsrv.h): one listener, connections of 16 KiB read buffers. Requests are handled one at
 * a time per connection: the parser pauses at the end of each request, reading stops, and the
 * rest of the input (a pipelined request) waits in the read buffer until the response has
 * been written. That keeps responses in order and bounds what a client can make us buffer. */
#include "httpd.h"

#include "httpsrv.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <arpa/inet.h>
#include <assert.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define HTTPD_MAX_BODY 8192 /* we serve GET only; anything bigger is refused */

struct httpd_conn {
    struct httpsrv_conn http;
    struct httpd *h;
    size_t body_len;
    bool body_too_big;
};

struct httpd {
    struct httpsrv srv;
    const struct httpd_cbs *cbs;
    void *arg;
    void (*done)(void *arg);
    void *done_arg;
};

/* The user's connection around the core's. */
static struct httpd_conn *
conn_of(struct httpsrv_conn *hc)
{
    return (struct httpd_conn *)((char *)hc - offsetof(struct httpd_conn, http));
}

static void conn_process(struct httpd_conn *c);

/* ------------------------------------------------------------------------------------------
 * Addresses
 * ------------------------------------------------------------------------------------------ */

/* Parses "HOST:PORT" with a loopback HOST into ss; ERR_INVALID with a message otherwise. */
static int
parse_addr(const char *addr, struct sockaddr_storage *ss, struct err *e)
{
    char host[64];
    const char *port, *end;
    size_t hlen;
    unsigned long pnum = 0;
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof *ss);
    if (addr == NULL || *addr == '\0')
        return err_set(e, ERR_INVALID,
                       "empty address: expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464");
    if (addr[0] == '[') {
        end = strchr(addr, ']');
        if (end == NULL || end[1] != ':')
            return err_set(e, ERR_INVALID, "\"%.80s\": expected [IPv6]:PORT, e.g. [::1]:9464",
                           addr);
        hlen = (size_t)(end - addr - 1);
        if (hlen >= sizeof host)
            return err_set(e, ERR_INVALID, "\"%.80s\": host too long", addr);
        memcpy(host, addr + 1, hlen);
        port = end + 2;
    } else {
        end = strrchr(addr, ':');
        if (end == NULL)
            return err_set(e, ERR_INVALID,
                           "\"%.80s\": no port: expected HOST:PORT, e.g. 127.0.0.1:9464", addr);
        hlen = (size_t)(end - addr);
        if (memchr(addr, ':', hlen) != NULL)
            return err_set(e, ERR_INVALID,
                           "\"%.80s\": an IPv6 address needs brackets, e.g. [::1]:9464", addr);
        if (hlen >= sizeof host)
            return err_set(e, ERR_INVALID, "\"%.80s\": host too long", addr);
        memcpy(host, addr, hlen);
        port = end + 1;
    }
    host[hlen] = '\0';

    if (*port == '\0' || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) ||
        (pnum = strtoul(port, NULL, 10)) > 65535)
        return err_set(e, ERR_INVALID, "\"%.80s\": bad port \"%.16s\": expected 0 to 65535",
                       addr, port);

    if (addr[0] != '[' && strcasecmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (addr[0] != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
            goto not_loopback;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pnum);
        return 0;
    }
    if (addr[0] == '[' && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
            goto not_loopback;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pnum);
        return 0;
    }
    return err_set(e, ERR_INVALID,
                   "\"%.80s\": bad host \"%s\": expected an address in 127.0.0.0/8, [::1] or "
                   "localhost (names are not resolved)",
                   addr, host);
not_loopback:
    return err_set(e, ERR_INVALID,
                   "\"%.80s\": %s is not a loopback address; the status endpoint has no "
                   "authentication, so it only listens on 127.0.0.0/8, [::1] or localhost",
                   addr, host);
}

int
httpd_check_addr(const char *addr, struct err *e)
{
    struct sockaddr_storage ss;

    return parse_addr(addr, &ss, e);
}

/* ------------------------------------------------------------------------------------------
 * Teardown
 * ------------------------------------------------------------------------------------------ */

/* The core's handles are closed: h is freed and done runs. */
static void
on_srv_closed(void *arg)
{
    struct httpd *h = arg;
    void (*done)(void *) = h->done;
    void *done_arg = h->done_arg;

    free(h);
    if (done)
        done(done_arg);
}

void
httpd_close(struct httpd *h, void (*done)(void *arg), void *arg)
{
    h->done = done;
    h->done_arg = arg;
    httpsrv_close(&h->srv, on_srv_closed, h);
}

/* A connection is accepted: ours, zeroed, around the core's. */
static struct httpsrv_conn *
on_conn_new(struct httpsrv *srv)
{
    struct httpd_conn *c = xcalloc(1, sizeof *c);

    c->h = srv->arg;
    return &c->http;
}

/* The core is done with a connection: so are we. */
static void
on_conn_closed(struct httpsrv_conn *hc)
{
    free(conn_of(hc));
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------ */

/* A response is out: the connection ends (tag 1) or reads the next request. */
static void
on_written(struct httpsrv_conn *hc, unsigned close_after)
{
    struct httpd_conn *c = conn_of(hc);

    if (close_after) {
        hc->writing = false;
        httpsrv_conn_linger(hc);
        return;
    }
    c->body_len = 0;
    httpsrv_conn_next(hc);
    conn_process(c);
}

/* Writes one response; with close_after, the connection closes once it is written. head_only sends
 * the headers of the response a GET would get, without its body. */
static void
conn_respond(struct httpd_conn *c, int status, const char *ctype, const struct buf *body,
             bool head_only, bool close_after)
{
    struct buf out = BUF_INIT;
    size_t len;

    httpsrv_head(&c->http, &out, status, ctype, (int64_t)body->len,
                 status == 405 ? "Allow: GET, HEAD\r\n" : NULL, close_after);
    if (!head_only && body->len > 0)
        buf_append(&out, body->data, body->len);
    len = out.len;
    httpsrv_conn_write(&c->http, buf_steal(&out), len, true, close_after);
}

/* Responds with a short text body. */
static void
conn_respond_text(struct httpd_conn *c, int status, const char *text, bool head_only,
                  bool close_after)
{
    struct buf body = BUF_INIT;

    buf_puts(&body, text);
    conn_respond(c, status, "text/plain; charset=utf-8", &body, head_only, close_after);
    buf_free(&body);
}

/* Ends why with a newline, or fills it with fallback when the callback said nothing. */
static void
reasons_finish(struct buf *why, const char *fallback)
{
    if (why->len == 0)
        buf_puts(why, fallback);
    else if (why->data[why->len - 1] != '\n')
        buf_putc(why, '\n');
}

/* Answers the request the parser has just completed. */
static void
conn_handle(struct httpd_conn *c)
{
    struct httpd *h = c->h;
    const struct httpd_cbs *cbs = h->cbs;
    struct http_parser_url u;
    enum http_method method = (enum http_method)c->http.parser.method;
    bool head = method == HTTP_HEAD;
    bool keep = http_should_keep_alive(&c->http.parser) && !c->http.parser.upgrade;
    const char *url = buf_str(&c->http.url);
    char path[64] = "";
    struct buf body = BUF_INIT;
    const char *ctype = "text/plain; charset=utf-8";
    int status = 200;

    http_parser_url_init(&u);
    if (c->http.url.len == 0 || http_parser_parse_url(url, c->http.url.len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        conn_respond_text(c, 400, "bad request\n", false, true);
        return;
    }
    if (u.field_data[UF_PATH].len < sizeof path) {
        memcpy(path, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        path[u.field_data[UF_PATH].len] = '\0';
    }
    log_debug("httpd: %s %s", http_method_str(method), path);
    if (strcmp(path, "/healthz") != 0 && strcmp(path, "/readyz") != 0 &&
        strcmp(path, "/metrics") != 0) {
        conn_respond_text(c, 404, "not found\n", head, !keep);
        return;
    }
    if (method != HTTP_GET && method != HTTP_HEAD) {
        conn_respond_text(c, 405, "method not allowed\n", head, !keep);
        return;
    }
    /* The callbacks may close the server (and so c): check before touching c again. */
    if (strcmp(path, "/healthz") == 0) {
        if (cbs->healthy != NULL && !cbs->healthy(h->arg, &body)) {
            status = 503;
            reasons_finish(&body, "unhealthy\n");
        } else {
            buf_reset(&body);
            buf_puts(&body, "ok\n");
        }
    } else if (strcmp(path, "/readyz") == 0) {
        if (cbs->ready != NULL && !cbs->ready(h->arg, &body)) {
            status = 503;
            reasons_finish(&body, "not ready\n");
        } else {
            buf_reset(&body);
            buf_puts(&body, "ready\n");
        }
    } else {
        ctype = "text/plain; version=0.0.4; charset=utf-8";
        if (cbs->metrics != NULL)
            cbs->metrics(h->arg, &body);
    }
    if (!c->http.closing)
        conn_respond(c, status, ctype, &body, head, !keep);
    buf_free(&body);
}

/* ------------------------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------------------------ */

/* A request body is counted and dropped; past HTTPD_MAX_BODY the parser stops (413). */
static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct httpd_conn *c = conn_of(p->data);

    (void)at;
    c->body_len += len;
    if (c->body_len > HTTPD_MAX_BODY) {
        c->body_too_big = true;
        return 1; /* stops the parser with HPE_CB_body */
    }
    return 0;
}

/* Feeds buffered input to the parser until a request is complete, input runs out, or the
 * request is refused. */
static void
conn_process(struct httpd_conn *c)
{
    struct httpsrv_conn *hc = &c->http;

    while (!hc->closing && !hc->writing && !hc->lingering && hc->rlen > 0) {
        int rc = httpsrv_conn_parse(hc);

        if (rc == HTTPSRV_PAUSED && hc->request_done)
            conn_handle(c);
        else if (c->body_too_big)
            conn_respond_text(c, 413, "request body too large\n", false, true);
        else if (rc == 431)
            conn_respond_text(c, 431, "request header fields too large\n", false, true);
        else if (rc != 0)
            conn_respond_text(c, 400, "bad request\n", false, true);
    }
    httpsrv_conn_reads(hc);
}

/* Input arrived while idle (reads stop while a request is answered). */
static void
on_input(struct httpsrv_conn *hc)
{
    conn_process(conn_of(hc));
}

/* ------------------------------------------------------------------------------------------
 * Listener
 * ------------------------------------------------------------------------------------------ */

static const struct httpsrv_limits httpd_limits = {
    .name = "httpd",
    .max_head = 8192, /* request line + headers */
    .max_conns = 64,
    .backlog = 64,
    .idle_ms = 10000,
    .linger_ms = 2000,
    .read_buf = 16 * 1024,
    .read_ahead = false,
};

static const struct httpsrv_hooks httpd_hooks = {
    .parser = {.on_body = on_body},
    .conn_new = on_conn_new,
    .input = on_input,
    .written = on_written,
    .conn_closed = on_conn_closed,
};

int
httpd_start(uv_loop_t *loop, const char *addr, const struct httpd_cbs *cbs, void *arg,
            struct httpd **out, struct err *e)
{
    struct sockaddr_storage ss;
    struct httpd *h;
    int rc;

    *out = NULL;
    rc = parse_addr(addr, &ss, e);
    if (rc < 0)
        return rc;
    h = xcalloc(1, sizeof *h);
    h->cbs = cbs;
    h->arg = arg;
    httpsrv_init(&h->srv, loop, &httpd_limits, &httpd_hooks, h);
    rc = httpsrv_listen(&h->srv, (struct sockaddr *)&ss, addr, e);
    if (rc < 0) {
        /* h goes once a listener handle that libuv failed to start has closed. */
        httpd_close(h, NULL, NULL);
        return rc;
    }
    *out = h;
    return 0;
}

int
httpd_port(const struct httpd *h)
{
    return h->srv.port;
}
