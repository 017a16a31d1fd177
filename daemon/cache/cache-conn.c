/* cache-conn.c: the cache server's HTTP/1.1 connections, on libuv and libhttp-parser (as
 * daemon/net/httpd.c, which stays the status endpoint's): keep-alive, one request at a time,
 * bodies streamed. An upload's body is never held whole: the parser is fed at most one buffer's
 * worth, the body bytes it yields are copied to wbuf and written to the part file on the thread
 * pool, and parsing resumes only when that write is done, while the next bytes are read into
 * rbuf (so the socket, the parser and the disk move in step; a slow disk slows the client).
 * Downloads are read from the blob in CACHE_DL_BUF pieces, each written to the socket before
 * the next is read. Limits: CACHE_MAX_HEAD of head (431), CACHE_MAX_CONNS connections,
 * CACHE_IDLE_MS without progress either way. */
#include "cache-int.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static void conn_process(struct cache_conn *c);
static void conn_read_toggle(struct cache_conn *c);

struct conn_write {
    uv_write_t req;
    struct cache_conn *c;
    char *data;
    bool stream_after; /* the head of a download: its body follows */
    bool interim;      /* a 100 Continue: the request goes on */
};

/* ------------------------------------------------------------------------------------------
 * Teardown
 * ------------------------------------------------------------------------------------------ */

/* Forgets the request just answered (closing its files) before the next one. */
static void
request_reset(struct cache_conn *c)
{
    buf_reset(&c->url);
    buf_reset(&c->hfield);
    buf_reset(&c->hvalue);
    buf_free(&c->body);
    free(c->auth);
    free(c->content_range);
    free(c->range);
    free(c->host);
    free(c->expect);
    c->auth = c->content_range = c->range = c->host = c->expect = NULL;
    c->hvalue_last = false;
    c->in_head = true;
    c->head_len = 0;
    c->body_mode = CACHE_BODY_JSON;
    c->body_too_big = false;
    c->early = false;
    c->request_done = c->handled = false;
    if (c->up_fd >= 0)
        close(c->up_fd);
    c->up_fd = -1;
    c->up_id = 0;
    c->wlen = 0;
    c->up_overflow = false;
    if (c->dl_fd >= 0)
        close(c->dl_fd);
    c->dl_fd = -1;
    c->dl_active = false;
    c->close_after = false;
}

/* Frees c once its handles are closed and no file operation is in flight. */
static void
maybe_free(struct cache_conn *c)
{
    struct cache_server *s = c->s;

    if (c->open_handles > 0 || c->fs_busy)
        return;
    if (c->zombie) {
        if (c->prev)
            c->prev->next = c->next;
        else
            s->zombies = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    request_reset(c);
    buf_free(&c->url);
    buf_free(&c->hfield);
    buf_free(&c->hvalue);
    free(c->dl_buf);
    free(c);
    cache_server_unref(s);
}

/* One of c's two handles (socket, timer) is closed. */
static void
on_handle_closed(uv_handle_t *h)
{
    struct cache_conn *c = h->data;

    c->open_handles--;
    maybe_free(c);
}

/* Unlinks c and closes its handles; c is freed once they and any file operation are done, so
 * this is safe from c's own callbacks. */
void
cache_conn_close(struct cache_conn *c)
{
    struct cache_server *s = c->s;

    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->lingering)
        s->n_conns--;
    if (c->fs_busy && c->body_mode == CACHE_BODY_UPLOAD && c->up_id != 0) {
        /* Its write still lands in the part file: until it has, the range stays taken
         * (cache_api_upload_overlaps()), so no retry or commit races it. */
        c->zombie = true;
        c->next = s->zombies;
        if (s->zombies)
            s->zombies->prev = c;
        s->zombies = c;
    } else {
        c->up_id = 0;
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

/* Nothing moved for CACHE_IDLE_MS (or the linger is over): the connection goes. */
static void
on_idle(uv_timer_t *t)
{
    struct cache_conn *c = t->data;

    log_debug("cache: closing a connection without progress for %d s", CACHE_IDLE_MS / 1000);
    cache_conn_close(c);
}

/* Bytes moved: the idle timer starts over. */
static void
progress(struct cache_conn *c)
{
    if (!c->closing)
        uv_timer_start(&c->idle, on_idle, c->lingering ? CACHE_LINGER_MS : CACHE_IDLE_MS, 0);
}

/* The FIN after a closing response is out (or failed). */
static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct cache_conn *c = req->handle->data;

    if (status < 0 && !c->closing)
        cache_conn_close(c);
}

/* After a response that ends the connection: FIN behind it, then input is read and dropped
 * until the client closes, for CACHE_LINGER_MS at most (closing with unread input would send a
 * reset that can destroy the response before the client read it). */
static void
conn_linger(struct cache_conn *c)
{
    c->lingering = true;
    c->s->n_conns--;
    c->roff = c->rlen = 0;
    c->up_id = 0;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        cache_conn_close(c);
        return;
    }
    uv_timer_start(&c->idle, on_idle, CACHE_LINGER_MS, 0);
    conn_read_toggle(c);
}

/* The response is out: the next request, or the end. */
static void
request_end(struct cache_conn *c)
{
    bool close_after = c->close_after || c->s->closing;

    c->writing = false;
    request_reset(c);
    if (close_after) {
        conn_linger(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    progress(c);
    conn_process(c);
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------ */

/* The reason phrase of the statuses we send. */
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

static void dl_next(struct cache_conn *c);

/* A write is done: the next piece of a download, or the end of the response. */
static void
on_write(uv_write_t *req, int status)
{
    struct conn_write *w = (struct conn_write *)req;
    struct cache_conn *c = w->c;
    bool stream_after = w->stream_after, interim = w->interim;

    if (w->data != c->dl_buf)
        free(w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        cache_conn_close(c);
        return;
    }
    progress(c);
    if (interim) {
        c->writing = false;
        conn_process(c);
        return;
    }
    if (stream_after && c->dl_left > 0) {
        dl_next(c);
        return;
    }
    request_end(c);
}

/* Writes data to the socket: taken, unless it is c->dl_buf (which lives as long as c; a
 * download reads the next piece into it only after this write completed). */
static void
conn_write(struct cache_conn *c, char *data, size_t len, bool stream_after, bool interim)
{
    struct conn_write *w = xcalloc(1, sizeof *w);
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc;

    w->c = c;
    w->data = data;
    w->stream_after = stream_after;
    w->interim = interim;
    c->writing = true;
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        if (data != c->dl_buf)
            free(data);
        free(w);
        cache_conn_close(c);
    }
}

/* The head of a response; close_after decided here from the request and the server. */
static void
head(struct cache_conn *c, struct buf *out, int status, const char *ctype, const char *extra,
     int64_t len)
{
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (!c->request_done || !http_should_keep_alive(&c->parser) || c->s->closing)
        c->close_after = true;
    gmtime_r(&now, &tm);
    buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", status,
               reason_phrase(status), days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
               tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (ctype != NULL)
        buf_printf(out, "Content-Type: %s\r\n", ctype);
    if (status != 204)
        buf_printf(out, "Content-Length: %" PRId64 "\r\n", len);
    buf_puts(out, "Cache-Control: no-store\r\n");
    if (extra != NULL)
        buf_puts(out, extra);
    if (c->close_after)
        buf_puts(out, "Connection: close\r\n");
    else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        buf_puts(out, "Connection: keep-alive\r\n");
    buf_puts(out, "\r\n");
}

void
cache_conn_respond(struct cache_conn *c, int status, const char *ctype, const char *extra,
                   const char *body, size_t len)
{
    struct buf out = BUF_INIT;
    size_t n;

    if (c->closing)
        return;
    head(c, &out, status, ctype, extra, (int64_t)len);
    if (c->parser.method != HTTP_HEAD && status != 204 && len > 0)
        buf_append(&out, body, len);
    n = out.len;
    conn_write(c, buf_steal(&out), n, false, false);
}

/* A piece of a download was read: it is written before the next is read. */
static void
on_dl_read(uv_fs_t *req)
{
    struct cache_conn *c = req->data;
    ssize_t n = req->result;

    uv_fs_req_cleanup(req);
    c->fs_busy = false;
    if (c->closing) {
        maybe_free(c);
        return;
    }
    if (n <= 0) {
        /* The blob is shorter than its entry says (or unreadable): the client sees a short
         * body against Content-Length, which the toolkit reports as an incomplete download. */
        log_warn("cache: download read: %s", n < 0 ? uv_strerror((int)n) : "unexpected end");
        cache_conn_close(c);
        return;
    }
    c->dl_off += n;
    c->dl_left -= n;
    conn_write(c, c->dl_buf, (size_t)n, true, false); /* the next read waits for this write */
}

/* Reads the next piece of the download; on_write sends it and comes back here. */
static void
dl_next(struct cache_conn *c)
{
    size_t n = c->dl_left < CACHE_DL_BUF ? (size_t)c->dl_left : CACHE_DL_BUF;
    uv_buf_t b;
    int rc;

    if (c->dl_buf == NULL)
        c->dl_buf = xmalloc(CACHE_DL_BUF);
    b = uv_buf_init(c->dl_buf, (unsigned)n);
    c->fs.data = c;
    c->writing = true;
    rc = uv_fs_read(c->s->loop, &c->fs, c->dl_fd, &b, 1, c->dl_off, on_dl_read);
    if (rc < 0) {
        log_warn("cache: download read: %s", uv_strerror(rc));
        cache_conn_close(c);
        return;
    }
    c->fs_busy = true;
}

void
cache_conn_send_file(struct cache_conn *c, int status, const char *extra, int fd, int64_t off,
                     int64_t len)
{
    struct buf out = BUF_INIT;
    size_t n;

    if (c->dl_fd >= 0)
        close(c->dl_fd);
    c->dl_fd = fd;
    c->dl_off = off;
    c->dl_left = c->parser.method == HTTP_HEAD ? 0 : len;
    c->dl_active = true;
    head(c, &out, status, "application/octet-stream", extra, len);
    n = out.len;
    conn_write(c, buf_steal(&out), n, true, false);
}

/* The fsync of a commit's part is done: its continuation runs. */
static void
on_fsync(uv_fs_t *req)
{
    struct cache_conn *c = req->data;
    int st = (int)req->result;

    uv_fs_req_cleanup(req);
    c->fs_busy = false;
    close(c->fsync_fd);
    c->fsync_fd = -1;
    if (c->closing) {
        maybe_free(c);
        return;
    }
    c->fsync_done(c, st);
}

void
cache_conn_fsync(struct cache_conn *c, int fd, void (*done)(struct cache_conn *c, int st))
{
    int rc;

    c->fsync_done = done;
    c->fsync_fd = fd;
    c->fs.data = c;
    rc = uv_fs_fsync(c->s->loop, &c->fs, fd, on_fsync);
    if (rc < 0) {
        close(fd);
        c->fsync_fd = -1;
        done(c, rc);
        return;
    }
    c->fs_busy = true;
}

/* ------------------------------------------------------------------------------------------
 * Uploads: wbuf to the part file
 * ------------------------------------------------------------------------------------------ */

/* wbuf is in the part file: parsing resumes. */
static void
on_up_write(uv_fs_t *req)
{
    struct cache_conn *c = req->data;
    ssize_t n = req->result;

    uv_fs_req_cleanup(req);
    c->fs_busy = false;
    if (c->closing) {
        maybe_free(c);
        return;
    }
    progress(c);
    if (n < 0 || (size_t)n != c->wlen) {
        c->wlen = 0;
        cache_api_error(c, 500, CACHE_REJ_IO, "writing the chunk failed: %s",
                        n < 0 ? uv_strerror((int)n) : "short write");
        c->close_after = true;
        return;
    }
    c->up_off += n;
    c->wlen = 0;
    conn_process(c);
}

/* Writes wbuf (an upload's body bytes) at its offset in the part file, on the thread pool. */
static void
up_flush(struct cache_conn *c)
{
    uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)c->wlen);
    int rc;

    c->fs.data = c;
    rc = uv_fs_write(c->s->loop, &c->fs, c->up_fd, &b, 1, c->up_off, on_up_write);
    if (rc < 0) {
        c->wlen = 0;
        cache_api_error(c, 500, CACHE_REJ_IO, "writing the chunk failed: %s", uv_strerror(rc));
        return;
    }
    c->fs_busy = true;
}

/* ------------------------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------------------------ */

/* One complete header: the ones the API reads are kept (the last of each wins, except that a
 * repeated Authorization or Content-Range makes the request bad: refused by the API as
 * missing). */
static void
header_done(struct cache_conn *c)
{
    const char *f = buf_str(&c->hfield);
    char **slot = NULL;

    if (strcasecmp(f, "authorization") == 0)
        slot = &c->auth;
    else if (strcasecmp(f, "content-range") == 0)
        slot = &c->content_range;
    else if (strcasecmp(f, "range") == 0)
        slot = &c->range;
    else if (strcasecmp(f, "host") == 0)
        slot = &c->host;
    else if (strcasecmp(f, "expect") == 0)
        slot = &c->expect;
    if (slot != NULL) {
        if (*slot != NULL && (slot == &c->auth || slot == &c->content_range)) {
            free(*slot);
            *slot = xstrdup(""); /* twice: ambiguous */
        } else {
            free(*slot);
            *slot = xstrdup(buf_str(&c->hvalue));
        }
    }
    buf_reset(&c->hfield);
    buf_reset(&c->hvalue);
}

/* The parser's callbacks: the request line and headers are collected, the body goes to
 * wbuf (an upload) or c->body (JSON, bounded). */
static int
on_url(http_parser *p, const char *at, size_t len)
{
    struct cache_conn *c = p->data;

    buf_append(&c->url, at, len);
    return 0;
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    struct cache_conn *c = p->data;

    if (c->hvalue_last)
        header_done(c);
    c->hvalue_last = false;
    buf_append(&c->hfield, at, len);
    return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    struct cache_conn *c = p->data;

    c->hvalue_last = true;
    buf_append(&c->hvalue, at, len);
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    struct cache_conn *c = p->data;

    if (c->hvalue_last)
        header_done(c);
    c->in_head = false;
    cache_api_head(c);
    if (c->early) {
        http_parser_pause(p, 1);
    } else if (c->expect != NULL && strcasecmp(c->expect, "100-continue") == 0 &&
               p->http_major == 1 && p->http_minor >= 1) {
        /* curl asks before a large body; the toolkit does not. Parsing waits for this write. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        conn_write(c, xstrdup(cont), sizeof cont - 1, false, true);
    }
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct cache_conn *c = p->data;

    if (c->body_mode == CACHE_BODY_UPLOAD) {
        /* At most one rbuf is fed while wbuf is empty: this always fits. */
        assert(c->wlen + len <= sizeof c->wbuf);
        if ((int64_t)(c->up_off + (int64_t)c->wlen + (int64_t)len) > c->up_end + 1) {
            c->up_overflow = true;
            return 1;
        }
        memcpy(c->wbuf + c->wlen, at, len);
        c->wlen += len;
        return 0;
    }
    if (c->body.len + len > CACHE_MAX_JSON) {
        c->body_too_big = true;
        return 1;
    }
    buf_append(&c->body, at, len);
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    struct cache_conn *c = p->data;

    c->request_done = true;
    http_parser_pause(p, 1); /* one request at a time: the rest waits in rbuf */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Refuses the request being read and ends the connection after the answer. */
static void
refuse(struct cache_conn *c, int status, int reason, const char *msg)
{
    c->close_after = true;
    c->request_done = false; /* head() then says Connection: close */
    cache_api_error(c, status, reason, "%s", msg);
}

/* Feeds buffered input to the parser while nothing else is in flight: the upload's bytes are
 * flushed, a complete request answered, a bad one refused. */
static void
conn_process(struct cache_conn *c)
{
    while (!c->closing && !c->writing && !c->lingering && !c->fs_busy) {
        size_t n = c->rlen, done;
        enum http_errno herr;

        if (c->wlen > 0) {
            up_flush(c);
            continue;
        }
        if (c->request_done) {
            if (c->handled)
                break;
            c->handled = true;
            cache_api_handle(c);
            continue;
        }
        if (n == 0)
            break;
        if (c->in_head && n > CACHE_MAX_HEAD - c->head_len)
            n = CACHE_MAX_HEAD - c->head_len;
        done = http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->roff, n);
        herr = HTTP_PARSER_ERRNO(&c->parser);
        if (c->in_head)
            c->head_len += done;
        c->roff += done;
        c->rlen -= done;
        if (c->early) {
            refuse(c, c->early_status, (int)c->early_reason, c->early_msg);
        } else if (herr == HPE_PAUSED && c->request_done) {
            continue;
        } else if (c->body_too_big) {
            refuse(c, 413, CACHE_REJ_SIZE, "request body too large");
        } else if (c->up_overflow) {
            refuse(c, 400, CACHE_REJ_SIZE, "the body is longer than its Content-Range says");
        } else if (herr != HPE_OK) {
            log_debug("cache: bad request: %s", http_errno_description(herr));
            refuse(c, 400, -1, "bad request");
        } else if (c->in_head && c->head_len >= CACHE_MAX_HEAD) {
            refuse(c, 431, -1, "request header fields too large");
        } else if (done != n) {
            refuse(c, 400, -1, "bad request");
        }
    }
    conn_read_toggle(c);
}

/* Reads go to the free end of rbuf, moved to its start first. */
static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct cache_conn *c = h->data;

    (void)suggested;
    if (c->roff > 0 && c->rlen > 0)
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen);
    c->roff = 0;
    *b = uv_buf_init(c->rbuf + c->rlen, (unsigned)(sizeof c->rbuf - c->rlen));
}

/* Input: parsed at once unless something is in flight (then it waits in rbuf). */
static void
on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct cache_conn *c = st->data;

    (void)b;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("cache: read: %s", uv_strerror((int)nread));
        cache_conn_close(c);
        return;
    }
    if (c->lingering)
        return;
    c->rlen += (size_t)nread;
    progress(c);
    conn_process(c);
}

/* Reads while rbuf has room (also while a chunk is written to disk: the next one arrives
 * meanwhile); a full rbuf stops reading, which is the backpressure. */
static void
conn_read_toggle(struct cache_conn *c)
{
    bool want = !c->closing && (c->lingering || c->rlen < sizeof c->rbuf);

    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);

        if (rc < 0) {
            cache_conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

void
cache_conn_accept(struct cache_server *s, uv_stream_t *server)
{
    struct cache_conn *c = xcalloc(1, sizeof *c);
    int rc;

    c->s = s;
    c->up_fd = c->dl_fd = c->fsync_fd = -1;
    c->in_head = true;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->idle);
    c->tcp.data = c->idle.data = c;
    c->open_handles = 2;
    s->open_handles++;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        log_warn("cache: accept: %s", uv_strerror(rc));
        cache_conn_close(c);
        return;
    }
    if (s->n_conns > CACHE_MAX_CONNS) {
        log_warn("cache: %d connections open already; refusing one", CACHE_MAX_CONNS);
        cache_conn_close(c);
        return;
    }
    progress(c);
    conn_read_toggle(c);
}
