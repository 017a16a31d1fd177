/* docker-attach.c: the hijacked attach stream (doc/docker-engine.md §6b). A connect-only request
 * gives a raw connection; we write the HTTP request ourselves, read the "101 UPGRADED" header, then
 * poll the socket on the loop: stdin bytes go out as the socket takes them, and stdout/stderr
 * arrive in 8-byte-framed chunks (stdcopy) that are parsed with a persistent buffer. */
#include "docker-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/xalloc.h"

#define ATTACH_HEADER_MAX (16u * 1024)
#define ATTACH_FRAME_MAX (16u * 1024 * 1024)
#define ATTACH_STDIN_MAX (16u * 1024 * 1024)

enum attach_state { A_CONNECTING, A_HEADER, A_STREAM, A_ENDED };

struct docker_attach {
    struct docker *d;
    char *id;
    struct docker_attach_cbs cbs;
    void *arg;
    enum attach_state state;
    struct httpc_req *req; /* while connecting */
    struct httpc_conn *conn;
    uv_poll_t poll;
    bool poll_init, poll_closed;
    int poll_events;
    struct buf out; /* the request, then stdin bytes */
    size_t out_off;
    size_t req_len;
    struct buf in; /* header bytes, then partial frames */
    bool close_stdin, stdin_shut;
    bool closing;
    int in_cb;
};

static void
attach_free(struct docker_attach *a)
{
    httpc_conn_free(a->conn);
    buf_free(&a->out);
    buf_free(&a->in);
    free(a->id);
    free(a);
}

static void
attach_try_free(struct docker_attach *a)
{
    if (!a->closing || a->in_cb > 0 || a->req != NULL)
        return;
    if (a->poll_init && !a->poll_closed)
        return;
    attach_free(a);
}

/* Ends the stream once: stops polling, reports to the owner. */
static void
attach_end(struct docker_attach *a, int rc, const struct err *e)
{
    if (a->state == A_ENDED)
        return;
    a->state = A_ENDED;
    if (a->poll_init && !a->closing)
        uv_poll_stop(&a->poll);
    if (a->closing || a->cbs.on_end == NULL)
        return;
    a->in_cb++;
    a->cbs.on_end(a, rc, e, a->arg);
    a->in_cb--;
}

static void attach_fail(struct docker_attach *a, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
attach_fail(struct docker_attach *a, int code, const char *fmt, ...)
{
    struct err e;
    va_list ap;

    e.code = code;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    for (char *q = e.msg; *q; q++)
        if ((unsigned char)*q < 0x20)
            *q = ' ';
    attach_end(a, code, &e);
}

static void on_attach_poll(uv_poll_t *p, int status, int events);

static void
update_poll(struct docker_attach *a)
{
    int ev = 0;

    if (!a->poll_init || a->closing || a->state == A_ENDED)
        return;
    ev = UV_READABLE;
    size_t limit = a->state == A_HEADER ? a->req_len : a->out.len;
    if (a->out_off < limit)
        ev |= UV_WRITABLE;
    if (ev != a->poll_events) {
        uv_poll_start(&a->poll, ev, on_attach_poll);
        a->poll_events = ev;
    }
}

/* Sends what the socket takes; during the header phase only the request itself. */
static int
flush_out(struct docker_attach *a)
{
    size_t limit = a->state == A_HEADER ? a->req_len : a->out.len;

    while (a->out_off < limit) {
        long n = httpc_conn_send(a->conn, a->out.data + a->out_off, limit - a->out_off);

        if (n == -EAGAIN)
            break;
        if (n < 0) {
            attach_fail(a, n == -EPIPE || n == -ECONNRESET ? -EPIPE : (int)n,
                        "attach container %s: write: %s", a->id, strerror((int)-n));
            return -1;
        }
        a->out_off += (size_t)n;
    }
    if (a->state == A_STREAM && a->out_off == a->out.len) {
        buf_reset(&a->out);
        a->out_off = 0;
        if (a->close_stdin && !a->stdin_shut) {
            a->stdin_shut = true;
            httpc_conn_shutdown_write(a->conn);
        }
    }
    return 0;
}

/* Parses complete frames from a->in and delivers them. */
static void
parse_frames(struct docker_attach *a)
{
    size_t off = 0;
    const unsigned char *p = (const unsigned char *)a->in.data;

    while (a->state == A_STREAM && !a->closing && a->in.len - off >= 8) {
        unsigned type = p[off];
        size_t len = (size_t)p[off + 4] << 24 | (size_t)p[off + 5] << 16 |
                     (size_t)p[off + 6] << 8 | (size_t)p[off + 7];

        if (type > 3 || p[off + 1] || p[off + 2] || p[off + 3]) {
            char t[16];

            snprintf(t, sizeof t, "%u", type);
            attach_fail(a, ERR_PROTO, "attach container %s: bad stream frame type %s", a->id, t);
            return;
        }
        if (len > ATTACH_FRAME_MAX) {
            attach_fail(a, ERR_PROTO, "attach container %s: stream frame too large%s", a->id, "");
            return;
        }
        if (a->in.len - off - 8 < len)
            break;
        off += 8;
        if (type == 3) {
            char msg[200];
            size_t n = len < sizeof msg - 1 ? len : sizeof msg - 1;

            memcpy(msg, a->in.data + off, n);
            msg[n] = '\0';
            attach_fail(a, -EIO, "attach container %s: daemon error: %s", a->id, msg);
            return;
        }
        if (a->cbs.on_output != NULL && len > 0) {
            a->in_cb++;
            a->cbs.on_output(a, type == 2 ? 2 : 1, a->in.data + off, len, a->arg);
            a->in_cb--;
        }
        off += len;
    }
    if (off > 0) {
        memmove(a->in.data, a->in.data + off, a->in.len - off);
        a->in.len -= off;
        a->in.data[a->in.len] = '\0';
    }
}

/* Parses the response header; on 101/200 switches to the stream. */
static void
parse_header(struct docker_attach *a)
{
    char *end = strstr(buf_str(&a->in), "\r\n\r\n");
    int status = 0;

    if (end == NULL) {
        if (a->in.len > ATTACH_HEADER_MAX)
            attach_fail(a, ERR_PROTO, "attach container %s: response header too long%s", a->id, "");
        return;
    }
    if (sscanf(a->in.data, "HTTP/%*d.%*d %d", &status) != 1) {
        attach_fail(a, ERR_PROTO, "attach container %s: bad status line%s", a->id, "");
        return;
    }
    size_t hlen = (size_t)(end - a->in.data) + 4;
    if (status != 101 && status != 200) {
        char detail[200];
        const char *body = a->in.data + hlen;
        size_t n = strlen(body);
        json_error_t je;
        json_t *j = json_loads(body, 0, &je);
        const char *m = json_string_value(json_object_get(j, "message"));
        int code = status == 404 ? ERR_NOTFOUND : status == 409 ? -EEXIST : -EIO;

        if (m)
            snprintf(detail, sizeof detail, "%d %s", status, m);
        else {
            while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r'))
                n--;
            snprintf(detail, sizeof detail, "%d %.*s", status, (int)(n > 150 ? 150 : n), body);
        }
        json_decref(j);
        attach_fail(a, code, "attach container %s: %s", a->id, detail);
        return;
    }
    memmove(a->in.data, a->in.data + hlen, a->in.len - hlen);
    a->in.len -= hlen;
    a->in.data[a->in.len] = '\0';
    a->state = A_STREAM;
    /* the request is sent; keep only stdin bytes queued after it */
    if (a->out_off >= a->req_len) {
        memmove(a->out.data, a->out.data + a->req_len, a->out.len - a->req_len);
        a->out.len -= a->req_len;
        a->out.data[a->out.len] = '\0';
        a->out_off -= a->req_len;
    }
    if (a->cbs.on_ready != NULL) {
        a->in_cb++;
        a->cbs.on_ready(a, a->arg);
        a->in_cb--;
    }
    parse_frames(a);
}

static void
on_attach_poll(uv_poll_t *p, int status, int events)
{
    struct docker_attach *a = p->data;
    char chunk[65536];

    if (a->closing || a->state == A_ENDED)
        return;
    if (status < 0) {
        attach_fail(a, -EIO, "attach container %s: poll: %s", a->id, uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && flush_out(a) < 0)
        return;
    if (events & UV_READABLE) {
        for (int i = 0; i < 16 && !a->closing && a->state != A_ENDED; i++) {
            long n = httpc_conn_recv(a->conn, chunk, sizeof chunk);

            if (n == -EAGAIN)
                break;
            if (n < 0) {
                attach_fail(a, (int)n, "attach container %s: read: %s", a->id, strerror((int)-n));
                return;
            }
            if (n == 0) {
                if (a->state == A_HEADER)
                    attach_fail(a, ERR_PROTO,
                                "attach container %s: connection closed before the response",
                                a->id);
                else if (a->in.len > 0)
                    attach_fail(a, ERR_PROTO, "attach container %s: stream ended inside a frame",
                                a->id);
                else
                    attach_end(a, 0, NULL);
                return;
            }
            buf_append(&a->in, chunk, (size_t)n);
            if (a->state == A_HEADER)
                parse_header(a);
            else
                parse_frames(a);
        }
    }
    if (!a->closing && a->state != A_ENDED && a->state == A_STREAM && a->out_off < a->out.len)
        flush_out(a);
    update_poll(a);
}

static void
on_attach_connected(const struct httpc_result *res, void *arg)
{
    struct docker_attach *a = arg;

    a->req = NULL;
    if (a->closing) {
        httpc_conn_free(res->conn);
        attach_try_free(a);
        return;
    }
    if (res->rc < 0) {
        a->in_cb++;
        attach_fail(a, res->rc, "attach container %s: %s", a->id, res->err.msg);
        a->in_cb--;
        attach_try_free(a);
        return;
    }
    a->conn = res->conn;
    a->state = A_HEADER;
    if (uv_poll_init_socket(httpc_loop(a->d->http), &a->poll, httpc_conn_fd(a->conn)) != 0) {
        a->in_cb++;
        attach_fail(a, -EIO, "attach container %s: cannot poll the socket%s", a->id, "");
        a->in_cb--;
        attach_try_free(a);
        return;
    }
    a->poll.data = a;
    a->poll_init = true;
    a->poll_events = 0;
    update_poll(a);
}

int
docker_attach(struct docker *d, const char *id, const struct docker_attach_cbs *cbs, void *arg,
              struct docker_attach **out, struct err *e)
{
    struct docker_attach *a;
    struct httpc_opts ho = {0};
    char *eid, *url;
    int rc;

    if (d->api[0] == '\0')
        return err_set(e, -ENOTCONN, "attach container %s: not connected", id);
    a = xcalloc(1, sizeof *a);
    a->d = d;
    a->id = xstrdup(id);
    a->cbs = *cbs;
    a->arg = arg;
    eid = docker_esc(id);
    buf_printf(&a->out,
               "POST /v%s/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
               "Host: %s\r\nUser-Agent: runnerd\r\nContent-Length: 0\r\n"
               "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
               d->api, eid, d->host_header);
    free(eid);
    a->req_len = a->out.len;
    url = xasprintf("%s/", d->base_url);
    ho.url = url;
    ho.connect_only = true;
    ho.unix_socket = d->unix_path;
    ho.ca_file = d->ca;
    ho.cert_file = d->cert;
    ho.key_file = d->key;
    rc = httpc_request(d->http, &ho, on_attach_connected, a, &a->req, e);
    free(url);
    if (rc < 0) {
        err_prefix(e, "attach container %s: ", id);
        attach_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int
docker_attach_write(struct docker_attach *a, const void *p, size_t n)
{
    if (a->state == A_ENDED || a->closing || a->close_stdin)
        return -EPIPE;
    if (a->out.len - a->out_off + n > ATTACH_STDIN_MAX)
        return -ENOBUFS;
    buf_append(&a->out, p, n);
    update_poll(a);
    return 0;
}

void
docker_attach_close_stdin(struct docker_attach *a)
{
    a->close_stdin = true;
    if (a->state == A_STREAM && a->out_off == a->out.len && !a->stdin_shut) {
        a->stdin_shut = true;
        httpc_conn_shutdown_write(a->conn);
    }
}

size_t
docker_attach_pending(const struct docker_attach *a)
{
    size_t base = a->state == A_STREAM ? 0 : a->req_len;

    return a->out.len > base + a->out_off ? a->out.len - base - a->out_off : 0;
}

static void
on_attach_poll_closed(uv_handle_t *h)
{
    struct docker_attach *a = h->data;

    a->poll_closed = true;
    attach_try_free(a);
}

void
docker_attach_close(struct docker_attach *a)
{
    if (a == NULL || a->closing)
        return;
    a->closing = true;
    if (a->req != NULL) {
        httpc_cancel(a->req);
        return;
    }
    if (a->poll_init) {
        uv_poll_stop(&a->poll);
        uv_close((uv_handle_t *)&a->poll, on_attach_poll_closed);
        return;
    }
    attach_try_free(a);
}
