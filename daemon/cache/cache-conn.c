/* cache-conn.c: the cache server's HTTP/1.1 connections, on the shared server plumbing
 * (daemon/net/httpsrv.h: listeners, the connection cap, the read buffer and parser, idle and
 * lingering close): keep-alive, one request at a time, bodies streamed. An upload's body is
 * never held whole: the parser is fed at most one buffer's worth, the body bytes it yields are
 * copied to wbuf and written to the part file on the thread pool, and parsing resumes only when
 * that write is done, while the next bytes are read into the read buffer (so the socket, the
 * parser and the disk move in step; a slow disk slows the client). Downloads are read from the
 * blob in CACHE_DL_BUF pieces, each written to the socket before the next is read. Limits:
 * CACHE_MAX_HEAD of head (431), CACHE_MAX_CONNS connections, CACHE_IDLE_MS without progress
 * either way. */
#include "cache-int.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void conn_process(struct cache_conn *c);

/* The tags of our writes (httpsrv_conn_write()). */
enum {
    WRITE_STREAM_AFTER = 1, /* the head of a download, or a piece of it: its body follows */
    WRITE_INTERIM = 2,      /* a 100 Continue: the request goes on */
};

/* ------------------------------------------------------------------------------------------
 * Teardown
 * ------------------------------------------------------------------------------------------ */

/* Forgets the request just answered (closing its files) before the next one. */
static void
request_reset(struct cache_conn *c)
{
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
    c->body_mode = CACHE_BODY_JSON;
    c->body_too_big = false;
    c->early = false;
    c->handled = false;
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

    if (c->http.open_handles > 0 || c->fs_busy)
        return;
    if (c->zombie) {
        if (c->zprev)
            c->zprev->znext = c->znext;
        else
            s->zombies = c->znext;
        if (c->znext)
            c->znext->zprev = c->zprev;
    }
    request_reset(c);
    buf_free(&c->hfield);
    buf_free(&c->hvalue);
    free(c->dl_buf);
    free(c);
    cache_server_unref(s);
}

/* A connection is accepted: fresh state, and one more reference on the server. */
static struct httpsrv_conn *
on_conn_new(struct httpsrv *srv)
{
    struct cache_conn *c = xcalloc(1, sizeof *c);

    c->s = srv->arg;
    c->up_fd = c->dl_fd = c->fsync_fd = -1;
    c->s->open_handles++;
    return &c->http;
}

/* c is unlinked and its handles closing. An upload whose write still lands in the part file
 * keeps its range taken (cache_api_upload_overlaps()) until it has, so no retry or commit
 * races it. */
static void
on_conn_closing(struct httpsrv_conn *hc)
{
    struct cache_conn *c = cache_conn_of(hc);
    struct cache_server *s = c->s;

    if (c->fs_busy && c->body_mode == CACHE_BODY_UPLOAD && c->up_id != 0) {
        c->zombie = true;
        c->znext = s->zombies;
        if (s->zombies)
            s->zombies->zprev = c;
        s->zombies = c;
    } else {
        c->up_id = 0;
    }
}

/* c's handles are closed: freed now, or when its file operation is done. */
static void
on_conn_closed(struct httpsrv_conn *hc)
{
    maybe_free(cache_conn_of(hc));
}

void
cache_conn_close(struct cache_conn *c)
{
    httpsrv_conn_close(&c->http);
}

/* The response is out: the next request, or the end. */
static void
request_end(struct cache_conn *c)
{
    bool close_after = c->close_after || c->s->closing;

    c->http.writing = false;
    request_reset(c);
    if (close_after) {
        httpsrv_conn_linger(&c->http);
        return;
    }
    httpsrv_conn_next(&c->http);
    conn_process(c);
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------ */

static void dl_next(struct cache_conn *c);

/* A write is done: the next piece of a download, or the end of the response. */
static void
on_written(struct httpsrv_conn *hc, unsigned tag)
{
    struct cache_conn *c = cache_conn_of(hc);

    httpsrv_conn_touch(hc);
    if (tag & WRITE_INTERIM) {
        hc->writing = false;
        conn_process(c);
        return;
    }
    if ((tag & WRITE_STREAM_AFTER) && c->dl_left > 0) {
        dl_next(c);
        return;
    }
    request_end(c);
}

/* Writes data to the socket: taken, unless it is c->dl_buf (which lives as long as c; a
 * download reads the next piece into it only after this write completed). */
static void
conn_write(struct cache_conn *c, char *data, size_t len, unsigned tag)
{
    httpsrv_conn_write(&c->http, data, len, data != c->dl_buf, tag);
}

/* The head of a response; close_after decided here from the request and the server. */
static void
head(struct cache_conn *c, struct buf *out, int status, const char *ctype, const char *extra,
     int64_t len)
{
    if (!c->http.request_done || !http_should_keep_alive(&c->http.parser) || c->s->closing)
        c->close_after = true;
    httpsrv_head(&c->http, out, status, ctype, status != 204 ? len : -1, extra, c->close_after);
}

void
cache_conn_respond(struct cache_conn *c, int status, const char *ctype, const char *extra,
                   const char *body, size_t len)
{
    struct buf out = BUF_INIT;
    size_t n;

    if (c->http.closing)
        return;
    head(c, &out, status, ctype, extra, (int64_t)len);
    if (c->http.parser.method != HTTP_HEAD && status != 204 && len > 0)
        buf_append(&out, body, len);
    n = out.len;
    conn_write(c, buf_steal(&out), n, 0);
}

/* c's file operation is over: true to go on; false when c is closing (then freed, if the
 * operation was all it still waited for). */
static bool
fs_over(struct cache_conn *c)
{
    uv_fs_req_cleanup(&c->fs);
    c->fs_busy = false;
    if (!c->http.closing)
        return true;
    maybe_free(c);
    return false;
}

/* A piece of a download was read: it is written before the next is read. */
static void
on_dl_read(uv_fs_t *req)
{
    struct cache_conn *c = req->data;
    ssize_t n = req->result;

    if (!fs_over(c))
        return;
    if (n <= 0) {
        /* The blob is shorter than its entry says (or unreadable): the client sees a short
         * body against Content-Length, which the toolkit reports as an incomplete download. */
        log_warn("cache: download read: %s", n < 0 ? uv_strerror((int)n) : "unexpected end");
        cache_conn_close(c);
        return;
    }
    c->dl_off += n;
    c->dl_left -= n;
    /* The next read waits for this write. */
    conn_write(c, c->dl_buf, (size_t)n, WRITE_STREAM_AFTER);
}

/* Reads the next piece of the download; on_written sends it and comes back here. */
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
    c->http.writing = true;
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
    c->dl_left = c->http.parser.method == HTTP_HEAD ? 0 : len;
    c->dl_active = true;
    head(c, &out, status, "application/octet-stream", extra, len);
    n = out.len;
    conn_write(c, buf_steal(&out), n, WRITE_STREAM_AFTER);
}

/* The fsync of a commit's part is done: its continuation runs. */
static void
on_fsync(uv_fs_t *req)
{
    struct cache_conn *c = req->data;
    int st = (int)req->result;

    close(c->fsync_fd);
    c->fsync_fd = -1;
    if (!fs_over(c))
        return;
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

    if (!fs_over(c))
        return;
    httpsrv_conn_touch(&c->http);
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

/* The parser's callbacks: the headers are collected (the URL by the core), the body goes to
 * wbuf (an upload) or c->body (JSON, bounded). */
static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    struct cache_conn *c = cache_conn_of(p->data);

    if (c->hvalue_last)
        header_done(c);
    c->hvalue_last = false;
    buf_append(&c->hfield, at, len);
    return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    struct cache_conn *c = cache_conn_of(p->data);

    c->hvalue_last = true;
    buf_append(&c->hvalue, at, len);
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    struct cache_conn *c = cache_conn_of(p->data);

    if (c->hvalue_last)
        header_done(c);
    cache_api_head(c);
    if (c->early) {
        http_parser_pause(p, 1);
    } else if (c->expect != NULL && strcasecmp(c->expect, "100-continue") == 0 &&
               p->http_major == 1 && p->http_minor >= 1) {
        /* curl asks before a large body; the toolkit does not. Parsing waits for this write. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        conn_write(c, xstrdup(cont), sizeof cont - 1, WRITE_INTERIM);
    }
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct cache_conn *c = cache_conn_of(p->data);

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

/* Refuses the request being read and ends the connection after the answer. */
static void
refuse(struct cache_conn *c, int status, int reason, const char *msg)
{
    c->close_after = true;
    c->http.request_done = false; /* head() then says Connection: close */
    cache_api_error(c, status, reason, "%s", msg);
}

/* Feeds buffered input to the parser while nothing else is in flight: the upload's bytes are
 * flushed, a complete request answered, a bad one refused. */
static void
conn_process(struct cache_conn *c)
{
    struct httpsrv_conn *hc = &c->http;

    while (!hc->closing && !hc->writing && !hc->lingering && !c->fs_busy) {
        int rc;

        if (c->wlen > 0) {
            up_flush(c);
            continue;
        }
        if (hc->request_done) {
            if (c->handled)
                break;
            c->handled = true;
            cache_api_handle(c);
            continue;
        }
        if (hc->rlen == 0)
            break;
        rc = httpsrv_conn_parse(hc);
        if (c->early)
            refuse(c, c->early_status, (int)c->early_reason, c->early_msg);
        else if (rc == HTTPSRV_PAUSED && hc->request_done)
            continue;
        else if (c->body_too_big)
            refuse(c, 413, CACHE_REJ_SIZE, "request body too large");
        else if (c->up_overflow)
            refuse(c, 400, CACHE_REJ_SIZE, "the body is longer than its Content-Range says");
        else if (rc == 431)
            refuse(c, 431, -1, "request header fields too large");
        else if (rc != 0)
            refuse(c, 400, -1, "bad request");
    }
    httpsrv_conn_reads(hc);
}

/* Input: bytes moved, so the idle timer starts over; parsed at once unless something is in
 * flight (then it waits in the read buffer, which reads fill while it has room: the next chunk
 * arrives while one is written to disk, a full buffer is the backpressure). */
static void
on_input(struct httpsrv_conn *hc)
{
    httpsrv_conn_touch(hc);
    conn_process(cache_conn_of(hc));
}

const struct httpsrv_limits cache_conn_limits = {
    .name = "cache",
    .max_head = CACHE_MAX_HEAD,
    .max_conns = CACHE_MAX_CONNS,
    .backlog = 128,
    .idle_ms = CACHE_IDLE_MS,
    .linger_ms = CACHE_LINGER_MS,
    .read_buf = CACHE_READ_BUF,
    .read_ahead = true,
};

const struct httpsrv_hooks cache_conn_hooks = {
    .parser =
        {
            .on_header_field = on_header_field,
            .on_header_value = on_header_value,
            .on_headers_complete = on_headers_complete,
            .on_body = on_body,
        },
    .conn_new = on_conn_new,
    .input = on_input,
    .written = on_written,
    .conn_closing = on_conn_closing,
    .conn_closed = on_conn_closed,
};
