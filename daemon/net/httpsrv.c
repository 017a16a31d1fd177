/* httpsrv.c: the HTTP/1.1 server plumbing shared by the status endpoint and the cache server
 * (see httpsrv.h): listeners, connections with their read buffer, parser, idle timer and
 * lingering close, writes, and the response head. */
#include "httpsrv.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct httpsrv_write {
    uv_write_t req;
    struct httpsrv_conn *c;
    char *data;
    bool take;
    unsigned tag;
};

/* ------------------------------------------------------------------------------------------
 * Teardown
 * ------------------------------------------------------------------------------------------ */

/* Runs done once the last handle has closed; srv may be freed by it. */
static void
maybe_done(struct httpsrv *srv)
{
    if (!srv->closing || srv->open_handles > 0)
        return;
    if (srv->done != NULL)
        srv->done(srv->done_arg);
}

static void
on_conn_handle_closed(uv_handle_t *hd)
{
    struct httpsrv_conn *c = hd->data;
    struct httpsrv *srv = c->srv;

    if (--c->open_handles == 0) {
        free(c->rbuf);
        c->rbuf = NULL;
        buf_free(&c->url);
        srv->hooks->conn_closed(c);
    }
    srv->open_handles--;
    maybe_done(srv);
}

void
httpsrv_conn_close(struct httpsrv_conn *c)
{
    struct httpsrv *srv = c->srv;

    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->lingering)
        srv->n_conns--;
    if (srv->hooks->conn_closing != NULL)
        srv->hooks->conn_closing(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
}

static void
on_listener_closed(uv_handle_t *hd)
{
    struct httpsrv_listener *l = hd->data;
    struct httpsrv *srv = l->srv;

    free(l);
    srv->open_handles--;
    maybe_done(srv);
}

void
httpsrv_close(struct httpsrv *srv, void (*done)(void *arg), void *arg)
{
    assert(!srv->closing);
    srv->closing = true;
    srv->done = done;
    srv->done_arg = arg;
    while (srv->conns != NULL)
        httpsrv_conn_close(srv->conns);
    while (srv->listeners != NULL) {
        struct httpsrv_listener *l = srv->listeners;

        srv->listeners = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    }
    /* Nothing open (no listener ever): done now, as the last close callback would. */
    maybe_done(srv);
}

/* Nothing happened for idle_ms (or the linger is over): the connection goes. */
static void
on_idle(uv_timer_t *t)
{
    struct httpsrv_conn *c = t->data;

    log_debug("%s: closing an idle connection", c->srv->lim->name);
    httpsrv_conn_close(c);
}

void
httpsrv_conn_touch(struct httpsrv_conn *c)
{
    const struct httpsrv_limits *lim = c->srv->lim;

    if (!c->closing)
        uv_timer_start(&c->idle, on_idle, c->lingering ? lim->linger_ms : lim->idle_ms, 0);
}

/* The FIN after a closing response is out (or failed). */
static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct httpsrv_conn *c = req->handle->data;

    if (status < 0 && !c->closing)
        httpsrv_conn_close(c);
}

void
httpsrv_conn_linger(struct httpsrv_conn *c)
{
    c->lingering = true;
    c->srv->n_conns--; /* on its way out: no longer counts against the limit */
    c->roff = c->rlen = 0;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        httpsrv_conn_close(c);
        return;
    }
    httpsrv_conn_touch(c);
    httpsrv_conn_reads(c);
}

void
httpsrv_conn_next(struct httpsrv_conn *c)
{
    c->writing = false;
    c->request_done = false;
    c->in_head = true;
    c->head_len = 0;
    buf_reset(&c->url);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    httpsrv_conn_touch(c);
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------ */

/* The reason phrase of the statuses the servers send. */
static const char *
reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 416:
        return "Range Not Satisfiable";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

void
httpsrv_head(const struct httpsrv_conn *c, struct buf *out, int status, const char *ctype,
             int64_t len, const char *extra, bool close_after)
{
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    /* IMF-fixdate, spelled out here so that no locale can change it. */
    gmtime_r(&now, &tm);
    buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", status,
               reason_phrase(status), days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
               tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (ctype != NULL)
        buf_printf(out, "Content-Type: %s\r\n", ctype);
    if (len >= 0)
        buf_printf(out, "Content-Length: %" PRId64 "\r\n", len);
    buf_puts(out, "Cache-Control: no-store\r\n");
    if (extra != NULL)
        buf_puts(out, extra);
    if (close_after)
        buf_puts(out, "Connection: close\r\n");
    else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        buf_puts(out, "Connection: keep-alive\r\n");
    buf_puts(out, "\r\n");
}

static void
on_write(uv_write_t *req, int status)
{
    struct httpsrv_write *w = (struct httpsrv_write *)req;
    struct httpsrv_conn *c = w->c;
    unsigned tag = w->tag;

    if (w->take)
        free(w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        httpsrv_conn_close(c);
        return;
    }
    if (c->srv->hooks->written != NULL)
        c->srv->hooks->written(c, tag);
}

void
httpsrv_conn_write(struct httpsrv_conn *c, char *data, size_t len, bool take, unsigned tag)
{
    struct httpsrv_write *w = xcalloc(1, sizeof *w);
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc;

    w->c = c;
    w->data = data;
    w->take = take;
    w->tag = tag;
    c->writing = true;
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        log_debug("%s: write: %s", c->srv->lim->name, uv_strerror(rc));
        if (take)
            free(data);
        free(w);
        httpsrv_conn_close(c);
    }
}

/* ------------------------------------------------------------------------------------------
 * Input
 * ------------------------------------------------------------------------------------------ */

/* A piece of the request's target: collected before the user's callback runs. */
static int
on_url(http_parser *p, const char *at, size_t len)
{
    struct httpsrv_conn *c = p->data;

    buf_append(&c->url, at, len);
    if (c->srv->hooks->parser.on_url != NULL)
        return c->srv->hooks->parser.on_url(p, at, len);
    return 0;
}

/* The end of a request's head: noted before the user's callback runs. */
static int
on_headers_complete(http_parser *p)
{
    struct httpsrv_conn *c = p->data;

    c->in_head = false;
    if (c->srv->hooks->parser.on_headers_complete != NULL)
        return c->srv->hooks->parser.on_headers_complete(p);
    return 0;
}

/* The end of a request: one at a time, the rest waits in rbuf. */
static int
on_message_complete(http_parser *p)
{
    struct httpsrv_conn *c = p->data;

    c->request_done = true;
    http_parser_pause(p, 1);
    if (c->srv->hooks->parser.on_message_complete != NULL)
        return c->srv->hooks->parser.on_message_complete(p);
    return 0;
}

int
httpsrv_conn_parse(struct httpsrv_conn *c)
{
    size_t max_head = c->srv->lim->max_head;
    size_t n = c->rlen, done;
    enum http_errno herr;

    /* The head is fed at most up to its limit, so a head too large is caught whether or not it
     * ends in the same read. */
    if (c->in_head && n > max_head - c->head_len)
        n = max_head - c->head_len;
    done = http_parser_execute(&c->parser, &c->srv->settings, c->rbuf + c->roff, n);
    herr = HTTP_PARSER_ERRNO(&c->parser);
    if (c->in_head)
        c->head_len += done;
    c->roff += done;
    c->rlen -= done;
    if (herr == HPE_PAUSED)
        return HTTPSRV_PAUSED;
    if (herr != HPE_OK) {
        /* A callback that stopped the parser (HPE_CB_*) has its reason in the user's state. */
        if (herr > HPE_CB_chunk_complete)
            log_debug("%s: bad request: %s", c->srv->lim->name, http_errno_description(herr));
        return 400;
    }
    if (c->in_head && c->head_len >= max_head)
        return 431;
    if (done != n)
        return 400; /* an upgrade or CONNECT the parser hands over: not ours to serve */
    return 0;
}

/* Reads go to the free end of rbuf, moved to its start first. */
static void
on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    struct httpsrv_conn *c = hd->data;

    (void)suggested;
    if (c->roff > 0 && c->rlen > 0)
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen);
    c->roff = 0;
    *b = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->srv->lim->read_buf - c->rlen));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct httpsrv_conn *c = s->data;

    (void)b;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("%s: read: %s", c->srv->lim->name, uv_strerror((int)nread));
        httpsrv_conn_close(c);
        return;
    }
    if (c->lingering)
        return; /* dropped: the alloc callback reuses the buffer from its start */
    c->rlen += (size_t)nread;
    c->srv->hooks->input(c);
}

void
httpsrv_conn_reads(struct httpsrv_conn *c)
{
    const struct httpsrv_limits *lim = c->srv->lim;
    bool want = !c->closing && (c->lingering || (lim->read_ahead ? c->rlen < lim->read_buf
                                                                 : !c->writing && c->rlen == 0));

    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);

        if (rc < 0) {
            log_debug("%s: read start: %s", lim->name, uv_strerror(rc));
            httpsrv_conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* ------------------------------------------------------------------------------------------
 * Listeners
 * ------------------------------------------------------------------------------------------ */

/* A client connects to one of the listeners: it is served, or closed at once past the cap. */
static void
on_connection(uv_stream_t *server, int status)
{
    struct httpsrv_listener *l = server->data;
    struct httpsrv *srv = l->srv;
    const struct httpsrv_limits *lim = srv->lim;
    struct httpsrv_conn *c;
    int rc;

    if (status < 0) {
        log_warn("%s: accept: %s", lim->name, uv_strerror(status));
        return;
    }
    if (srv->closing)
        return;
    c = srv->hooks->conn_new(srv);
    c->srv = srv;
    c->in_head = true;
    c->rbuf = xmalloc(lim->read_buf);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->idle);
    c->tcp.data = c->idle.data = c;
    c->open_handles = 2;
    srv->open_handles += 2;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        log_warn("%s: accept: %s", lim->name, uv_strerror(rc));
        httpsrv_conn_close(c);
        return;
    }
    if (srv->n_conns > lim->max_conns) {
        log_warn("%s: %d connections open already; refusing one", lim->name, lim->max_conns);
        httpsrv_conn_close(c);
        return;
    }
    httpsrv_conn_touch(c);
    httpsrv_conn_reads(c);
}

void
httpsrv_init(struct httpsrv *srv, uv_loop_t *loop, const struct httpsrv_limits *lim,
             const struct httpsrv_hooks *hooks, void *arg)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->lim = lim;
    srv->hooks = hooks;
    srv->arg = arg;
    srv->settings = hooks->parser;
    srv->settings.on_url = on_url;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_message_complete = on_message_complete;
}

/* The port in a sockaddr_in or sockaddr_in6. */
static int
sa_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

int
httpsrv_listen(struct httpsrv *srv, const struct sockaddr *sa, const char *addr, struct err *e)
{
    struct sockaddr_storage ss, have;
    socklen_t slen;
    struct httpsrv_listener *l;
    uv_os_fd_t owned;
    int fd, one = 1, rc;

    assert(sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
    slen = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, sa, slen);
    if (sa_port(&ss) == 0 && srv->port > 0) {
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)srv->port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)srv->port);
    }
    for (l = srv->listeners; l != NULL; l = l->next) {
        int hlen = sizeof have;

        if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&have, &hlen) == 0 &&
            (socklen_t)hlen == slen && memcmp(&have, &ss, slen) == 0)
            return 0; /* listening there already */
    }
    /* Bind and listen ourselves, so that every failure is reported here and leaves no handle
     * to close behind. */
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(e, -errno, "listen on %s: socket: %s", addr, strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, srv->lim->backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &slen) != 0) {
        rc = err_set(e, -errno, "listen on %s: %s", addr, strerror(errno));
        close(fd);
        return rc;
    }
    l = xcalloc(1, sizeof *l);
    l->srv = srv;
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    srv->open_handles++;
    rc = uv_tcp_open(&l->tcp, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, srv->lim->backlog, on_connection);
    if (rc < 0) {
        /* Not expected once bind and listen worked; l goes with the handle's close. */
        err_set(e, rc, "listen on %s: %s", addr, uv_strerror(rc));
        if (uv_fileno((uv_handle_t *)&l->tcp, &owned) != 0)
            close(fd); /* uv_tcp_open() failed: the handle does not own it */
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return rc;
    }
    l->next = srv->listeners;
    srv->listeners = l;
    if (srv->port == 0)
        srv->port = sa_port(&ss);
    log_notice("%s: listening on %s port=%d", srv->lim->name, addr, srv->port);
    return 0;
}
