/* httpd.c: the loopback status endpoint (see httpd.h). One uv_tcp_t listener; each connection
 * embeds its socket, an idle timer and an http_parser. Requests are handled one at a time per
 * connection: the parser pauses at the end of each request, reading stops, and the rest of the
 * input (a pipelined request) waits in the read buffer until the response has been written.
 * That keeps responses in order and bounds what a client can make us buffer. */
#include "httpd.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <arpa/inet.h>
#include <assert.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTPD_MAX_HEAD 8192       /* request line + headers */
#define HTTPD_MAX_BODY 8192       /* we serve GET only; anything bigger is refused */
#define HTTPD_MAX_CONNS 64
#define HTTPD_IDLE_MS 10000
#define HTTPD_LINGER_MS 2000      /* draining input after a response that closes */
#define HTTPD_READ_BUF (16 * 1024)

struct httpd_conn {
    uv_tcp_t tcp;
    uv_timer_t idle;
    uv_shutdown_t shutdown;
    struct httpd *h;
    http_parser parser;
    char rbuf[HTTPD_READ_BUF];
    size_t roff, rlen;  /* input not parsed yet: rbuf[roff, roff + rlen) */
    bool in_head;       /* the current request's head is not complete yet */
    size_t head_len;    /* bytes of that head parsed so far */
    size_t body_len;
    bool body_too_big;
    bool request_done;  /* on_message_complete ran; the parser is paused */
    struct buf url;
    bool reading, writing, closing;
    bool lingering;     /* the last response is out: input is read and dropped */
    int open_handles;   /* tcp + idle, until their close callbacks ran */
    struct httpd_conn *prev, *next;
};

struct httpd {
    uv_loop_t *loop;
    uv_tcp_t listener;
    const struct httpd_cbs *cbs;
    void *arg;
    int port;
    struct httpd_conn *conns; /* open connections, not the closing ones */
    int n_conns;              /* of those, the ones not lingering: what the limit counts */
    int open_handles;         /* listener + every connection's handles not closed yet */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

struct httpd_write {
    uv_write_t req;
    struct httpd_conn *c;
    char *data;
    bool close_after;
};

static void conn_process(struct httpd_conn *c);
static void conn_read_toggle(struct httpd_conn *c);

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

/* Frees h and runs done once the last handle has closed. */
static void
maybe_done(struct httpd *h)
{
    void (*done)(void *);
    void *arg;

    if (!h->closing || h->open_handles > 0)
        return;
    done = h->done;
    arg = h->done_arg;
    free(h);
    if (done)
        done(arg);
}

static void
on_conn_handle_closed(uv_handle_t *hd)
{
    struct httpd_conn *c = hd->data;
    struct httpd *h = c->h;

    if (--c->open_handles == 0) {
        buf_free(&c->url);
        free(c);
    }
    h->open_handles--;
    maybe_done(h);
}

/* Unlinks c and closes its handles; c is freed by the last close callback, so this is safe
 * from any of c's own callbacks. Pending writes complete with UV_ECANCELED. */
static void
conn_close(struct httpd_conn *c)
{
    struct httpd *h = c->h;

    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->lingering)
        h->n_conns--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
}

static void
on_listener_closed(uv_handle_t *hd)
{
    struct httpd *h = hd->data;

    h->open_handles--;
    maybe_done(h);
}

void
httpd_close(struct httpd *h, void (*done)(void *arg), void *arg)
{
    assert(!h->closing);
    h->closing = true;
    h->done = done;
    h->done_arg = arg;
    while (h->conns != NULL)
        conn_close(h->conns);
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------ */

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static void
on_idle(uv_timer_t *t)
{
    struct httpd_conn *c = t->data;

    log_debug("httpd: closing idle connection");
    conn_close(c);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct httpd_conn *c = req->handle->data;

    if (status < 0 && !c->closing)
        conn_close(c);
}

/* After a response that ends the connection: send FIN behind it, then read and drop what the
 * client still sends until it closes too, for HTTPD_LINGER_MS at most. Closing right away with
 * unread input would make the kernel send a reset, which can destroy the response before the
 * client has read it (a 400 or 431 sent while the request is still arriving). */
static void
conn_linger(struct httpd_conn *c)
{
    int rc;

    c->lingering = true;
    c->h->n_conns--; /* on its way out: no longer counts against the limit */
    c->roff = c->rlen = 0;
    rc = uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->idle, on_idle, HTTPD_LINGER_MS, 0);
    conn_read_toggle(c);
}

static void
on_write(uv_write_t *req, int status)
{
    struct httpd_write *w = (struct httpd_write *)req;
    struct httpd_conn *c = w->c;
    bool close_after = w->close_after;

    free(w->data);
    free(w);
    if (c->closing)
        return;
    c->writing = false;
    if (status < 0 || c->h->closing) {
        conn_close(c);
        return;
    }
    if (close_after) {
        conn_linger(c);
        return;
    }
    /* The connection is idle again: the next request starts now. */
    uv_timer_start(&c->idle, on_idle, HTTPD_IDLE_MS, 0);
    c->request_done = false;
    c->in_head = true;
    c->head_len = 0;
    c->body_len = 0;
    buf_reset(&c->url);
    http_parser_pause(&c->parser, 0);
    conn_process(c);
}

/* Writes one response; with close_after, the connection closes once it is written. head_only sends
 * the headers of the response a GET would get, without its body. */
static void
conn_respond(struct httpd_conn *c, int status, const char *ctype, const struct buf *body,
             bool head_only, bool close_after)
{
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct httpd_write *w;
    struct buf out = BUF_INIT;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    uv_buf_t b;
    size_t len;
    int rc;

    /* IMF-fixdate, spelled out here so that no locale can change it. */
    gmtime_r(&now, &tm);
    snprintf(date, sizeof date, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    buf_printf(&out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason_phrase(status), date);
    buf_printf(&out, "Content-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n",
               ctype, body->len);
    if (status == 405)
        buf_puts(&out, "Allow: GET, HEAD\r\n");
    if (close_after)
        buf_puts(&out, "Connection: close\r\n");
    else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        buf_puts(&out, "Connection: keep-alive\r\n");
    buf_puts(&out, "\r\n");
    if (!head_only && body->len > 0)
        buf_append(&out, body->data, body->len);

    w = xcalloc(1, sizeof *w);
    w->c = c;
    w->close_after = close_after;
    len = out.len;
    w->data = buf_steal(&out);
    b = uv_buf_init(w->data, (unsigned)len);
    c->writing = true;
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        log_debug("httpd: write: %s", uv_strerror(rc));
        free(w->data);
        free(w);
        c->writing = false;
        conn_close(c);
    }
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
    enum http_method method = (enum http_method)c->parser.method;
    bool head = method == HTTP_HEAD;
    bool keep = http_should_keep_alive(&c->parser) && !c->parser.upgrade;
    const char *url = buf_str(&c->url);
    char path[64] = "";
    struct buf body = BUF_INIT;
    const char *ctype = "text/plain; charset=utf-8";
    int status = 200;

    http_parser_url_init(&u);
    if (c->url.len == 0 || http_parser_parse_url(url, c->url.len, 0, &u) != 0 ||
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
    if (!c->closing)
        conn_respond(c, status, ctype, &body, head, !keep);
    buf_free(&body);
}

/* ------------------------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------------------------ */

static int
on_url(http_parser *p, const char *at, size_t len)
{
    struct httpd_conn *c = p->data;

    buf_append(&c->url, at, len);
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    struct httpd_conn *c = p->data;

    c->in_head = false;
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct httpd_conn *c = p->data;

    (void)at;
    c->body_len += len;
    if (c->body_len > HTTPD_MAX_BODY) {
        c->body_too_big = true;
        return 1; /* stops the parser with HPE_CB_body */
    }
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    struct httpd_conn *c = p->data;

    c->request_done = true;
    http_parser_pause(p, 1); /* one request at a time: the rest waits in rbuf */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void
on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    struct httpd_conn *c = hd->data;

    (void)suggested;
    if (c->roff > 0 && c->rlen > 0)
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen);
    c->roff = 0;
    *b = uv_buf_init(c->rbuf + c->rlen, (unsigned)(sizeof c->rbuf - c->rlen));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct httpd_conn *c = s->data;

    (void)b;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        /* EOF or an error; we only read between requests, so nothing is left to answer. */
        if (nread != UV_EOF)
            log_debug("httpd: read: %s", uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (c->lingering)
        return; /* dropped: the alloc callback reuses the buffer from its start */
    c->rlen += (size_t)nread;
    conn_process(c);
}

/* Reads only while idle with nothing buffered: that is the backpressure. */
static void
conn_read_toggle(struct httpd_conn *c)
{
    bool want = !c->closing && !c->writing && c->rlen == 0;

    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);

        if (rc < 0) {
            log_debug("httpd: read start: %s", uv_strerror(rc));
            conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Feeds buffered input to the parser until a request is complete, input runs out, or the
 * request is refused. The head is fed at most up to its limit, so a head too large is caught
 * whether or not it ends in the same read. */
static void
conn_process(struct httpd_conn *c)
{
    while (!c->closing && !c->writing && !c->lingering && c->rlen > 0) {
        size_t n = c->rlen, done;
        enum http_errno herr;

        if (c->in_head && n > HTTPD_MAX_HEAD - c->head_len)
            n = HTTPD_MAX_HEAD - c->head_len;
        done = http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->roff, n);
        herr = HTTP_PARSER_ERRNO(&c->parser);
        if (c->in_head)
            c->head_len += done;
        c->roff += done;
        c->rlen -= done;
        if (herr == HPE_PAUSED && c->request_done) {
            conn_handle(c);
        } else if (c->body_too_big) {
            conn_respond_text(c, 413, "request body too large\n", false, true);
        } else if (herr != HPE_OK) {
            log_debug("httpd: bad request: %s", http_errno_description(herr));
            conn_respond_text(c, 400, "bad request\n", false, true);
        } else if (c->in_head && c->head_len >= HTTPD_MAX_HEAD) {
            conn_respond_text(c, 431, "request header fields too large\n", false, true);
        } else if (done != n) {
            /* An upgrade or CONNECT the parser hands over: not ours to serve. */
            conn_respond_text(c, 400, "bad request\n", false, true);
        }
    }
    conn_read_toggle(c);
}

/* ------------------------------------------------------------------------------------------
 * Listener
 * ------------------------------------------------------------------------------------------ */

static void
on_connection(uv_stream_t *server, int status)
{
    struct httpd *h = server->data;
    struct httpd_conn *c;
    int rc;

    if (status < 0) {
        log_warn("httpd: accept: %s", uv_strerror(status));
        return;
    }
    if (h->closing)
        return;
    c = xcalloc(1, sizeof *c);
    c->h = h;
    c->in_head = true;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->idle);
    c->tcp.data = c;
    c->idle.data = c;
    c->open_handles = 2;
    h->open_handles += 2;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        log_warn("httpd: accept: %s", uv_strerror(rc));
        conn_close(c);
        return;
    }
    if (h->n_conns > HTTPD_MAX_CONNS) {
        log_warn("httpd: %d connections open already; refusing one", HTTPD_MAX_CONNS);
        conn_close(c);
        return;
    }
    uv_timer_start(&c->idle, on_idle, HTTPD_IDLE_MS, 0);
    conn_read_toggle(c);
}

int
httpd_start(uv_loop_t *loop, const char *addr, const struct httpd_cbs *cbs, void *arg,
            struct httpd **out, struct err *e)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    struct httpd *h;
    uv_os_fd_t owned;
    int fd, one = 1, rc;

    *out = NULL;
    rc = parse_addr(addr, &ss, e);
    if (rc < 0)
        return rc;
    slen = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    /* Bind and listen ourselves, so that every failure is reported here and leaves no handle
     * to close behind. */
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(e, -errno, "listen on %s: socket: %s", addr, strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, HTTPD_MAX_CONNS) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &slen) != 0) {
        rc = err_set(e, -errno, "listen on %s: %s", addr, strerror(errno));
        close(fd);
        return rc;
    }

    h = xcalloc(1, sizeof *h);
    h->loop = loop;
    h->cbs = cbs;
    h->arg = arg;
    h->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                            : ((struct sockaddr_in6 *)&ss)->sin6_port);
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->open_handles = 1;
    rc = uv_tcp_open(&h->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, HTTPD_MAX_CONNS, on_connection);
    if (rc < 0) {
        /* Not expected once bind and listen worked; h goes with the handle's close. */
        err_set(e, rc, "listen on %s: %s", addr, uv_strerror(rc));
        if (uv_fileno((uv_handle_t *)&h->listener, &owned) != 0)
            close(fd); /* uv_tcp_open() failed: the handle does not own it */
        httpd_close(h, NULL, NULL);
        return rc;
    }
    log_notice("httpd: listening on %s port=%d", addr, h->port);
    *out = h;
    return 0;
}

int
httpd_port(const struct httpd *h)
{
    return h->port;
}
