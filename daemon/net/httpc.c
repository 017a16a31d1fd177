/* httpc.c: libcurl multi inside libuv (doc/style.md §6): one uv_poll_t per socket attached with
 * curl_multi_assign(), one timer for curl's timeout, completions drained after every
 * socket_action, and the easy handle removed and cleaned up before a request's callback. */
#include "httpc.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#define HTTPC_DEFAULT_MAX_BODY (16u * 1024 * 1024)
#define HTTPC_MAX_HEADERS (64u * 1024)
#define HTTPC_MAX_ERROR_BODY (64u * 1024)

struct httpc_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct httpc *h;
    struct httpc_sock *prev, *next;
};

struct httpc_req {
    struct httpc *h;
    CURL *easy;
    struct curl_slist *hdrs;
    char *method, *url;
    char *body;
    struct buf resp;
    struct buf resp_hdrs;
    size_t max_body;
    httpc_data_fn on_data;
    httpc_done_fn done;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
    bool canceled;
    bool overflow;
    bool connect_only;
    bool tls;
    int data_rc;
    struct err data_err;
    struct httpc_req *prev, *next;
};

struct httpc_conn {
    int fd;      /* our own dup of the socket (plain) or curl's socket (TLS) */
    CURL *easy;  /* TLS only: kept in the multi so curl_easy_send/recv find the connection */
    struct httpc *h; /* TLS only; NULL once the client has closed (the conn is then dead) */
    struct httpc_conn *prev, *next;
};

struct httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    uv_timer_t reap;
    struct httpc_req *reqs;
    struct httpc_sock *socks;
    size_t nreqs;
    struct httpc_conn *tls_conns;
    bool closing;
    bool closed_multi;
    int pending_closes;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void check_info(struct httpc *h);
static void finish(struct httpc_req *r, CURLcode cc);
static void maybe_free(struct httpc *h);

/* ---- sockets and timer ---------------------------------------------------------------- */

static void
on_sock_closed(uv_handle_t *hd)
{
    struct httpc_sock *s = hd->data;
    struct httpc *h = s->h;

    free(s);
    h->pending_closes--;
    if (h->closed_multi)
        maybe_free(h);
}

static void
sock_destroy(struct httpc_sock *s)
{
    struct httpc *h = s->h;

    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    h->pending_closes++;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void
on_poll(uv_poll_t *p, int status, int events)
{
    struct httpc_sock *s = p->data;
    struct httpc *h = s->h;
    int flags = 0;
    int running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_info(h);
}

static int
on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct httpc *h = userp;
    struct httpc_sock *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_destroy(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(h->multi, fd, s);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void
on_timer(uv_timer_t *t)
{
    struct httpc *h = t->data;
    int running;

    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_info(h);
}

static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct httpc *h = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, timeout_ms == 0 ? 1 : (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- completion ------------------------------------------------------------------------ */

static void
req_unlink(struct httpc_req *r)
{
    struct httpc *h = r->h;

    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    h->nreqs--;
}

static void
req_free(struct httpc_req *r)
{
    curl_slist_free_all(r->hdrs);
    free(r->method);
    free(r->url);
    free(r->body);
    buf_free(&r->resp);
    buf_free(&r->resp_hdrs);
    free(r);
}

/* Maps a transfer's outcome to our code and a one-line message. */
static int
classify(struct httpc_req *r, CURLcode cc, struct err *e)
{
    const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc);

    if (r->canceled)
        return err_set(e, ERR_CANCELED, "%s %s: canceled", r->method, r->url);
    if (r->data_rc < 0)
        return err_set(e, r->data_rc, "%s", r->data_err.msg);
    if (r->overflow)
        return err_set(e, -EFBIG, "%s %s: response body exceeds %zu bytes", r->method, r->url,
                       r->max_body);
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return err_set(e, ERR_TIMEOUT, "%s %s: timed out: %s", r->method, r->url, why);
    case CURLE_COULDNT_CONNECT:
        return err_set(e, -ECONNREFUSED, "%s %s: cannot connect: %s", r->method, r->url, why);
    case CURLE_COULDNT_RESOLVE_HOST:
        return err_set(e, -EHOSTUNREACH, "%s %s: %s", r->method, r->url, why);
    case CURLE_ABORTED_BY_CALLBACK:
        return err_set(e, ERR_CANCELED, "%s %s: canceled", r->method, r->url);
    default:
        return err_set(e, -EIO, "%s %s: %s", r->method, r->url, why);
    }
}

/* Completes r: copies out the result, removes and cleans up the easy handle, then calls done. */
static void
finish(struct httpc_req *r, CURLcode cc)
{
    struct httpc *h = r->h;
    struct httpc_result res;
    long status = 0;

    memset(&res, 0, sizeof res);
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    res.status = status;
    res.rc = classify(r, cc, &res.err);
    req_unlink(r);
    if (r->connect_only && res.rc == 0) {
        curl_socket_t fd = CURL_SOCKET_BAD;
        struct httpc_conn *c = xcalloc(1, sizeof *c);

        curl_easy_getinfo(r->easy, CURLINFO_ACTIVESOCKET, &fd);
        if (fd == CURL_SOCKET_BAD) {
            res.rc = err_set(&res.err, -EIO, "%s: no active socket after connect", r->url);
            free(c);
            c = NULL;
        } else if (r->tls) {
            c->h = h;
            /* TLS state lives in curl: keep the handle in the multi (removing a connect-only
             * handle closes its connection) and go through curl_easy_send/recv. */
            c->fd = fd;
            c->easy = r->easy;
            r->easy = NULL;
            c->next = h->tls_conns;
            if (h->tls_conns)
                h->tls_conns->prev = c;
            h->tls_conns = c;
        } else {
            /* Plain socket: keep our own descriptor, let curl close its one. */
            c->fd = dup(fd);
            if (c->fd < 0) {
                res.rc = err_set(&res.err, -errno, "%s: dup: %s", r->url, strerror(errno));
                free(c);
                c = NULL;
            }
        }
        res.conn = c;
    }
    if (r->easy != NULL) {
        curl_multi_remove_handle(h->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    if (r->resp.data == NULL)
        buf_puts(&r->resp, "");
    if (r->resp_hdrs.data == NULL)
        buf_puts(&r->resp_hdrs, "");
    res.body = r->resp.data;
    res.body_len = r->resp.len;
    res.headers = r->resp_hdrs.data;
    r->done(&res, r->arg);
    req_free(r);
}

static void
check_info(struct httpc *h)
{
    CURLMsg *m;
    int left;

    while (!h->closed_multi && (m = curl_multi_info_read(h->multi, &left)) != NULL) {
        struct httpc_req *r;
        char *priv = NULL;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        r = (struct httpc_req *)(void *)priv;
        if (r == NULL || r->easy == NULL)
            continue;
        finish(r, m->data.result);
    }
}

static void
on_handle_closed(uv_handle_t *hd)
{
    struct httpc *h = hd->data;

    h->pending_closes--;
    maybe_free(h);
}

static void
maybe_free(struct httpc *h)
{
    if (h->pending_closes == 0) {
        void (*cb)(void *) = h->close_cb;
        void *arg = h->close_arg;

        free(h);
        if (cb)
            cb(arg);
    }
}


/* Runs from the loop: completes canceled requests and carries out a pending close. */
static void
on_reap(uv_timer_t *t)
{
    struct httpc *h = t->data;
    struct httpc_req *r;

    for (;;) {
        for (r = h->reqs; r != NULL; r = r->next)
            if (r->canceled || h->closing)
                break;
        if (r == NULL)
            break;
        r->canceled = true;
        finish(r, CURLE_ABORTED_BY_CALLBACK);
    }
    if (!h->closing || h->closed_multi)
        return;
    h->closed_multi = true;
    /* TLS conns still open lose their connection; their owners free them later */
    while (h->tls_conns != NULL) {
        struct httpc_conn *c = h->tls_conns;

        h->tls_conns = c->next;
        curl_multi_remove_handle(h->multi, c->easy);
        c->h = NULL;
        c->prev = c->next = NULL;
    }
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->socks != NULL)
        sock_destroy(h->socks);
    uv_timer_stop(&h->timer);
    h->pending_closes++;
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    /* Whichever close callback runs last frees h (maybe_free). */
    h->pending_closes++;
    uv_close((uv_handle_t *)&h->reap, on_handle_closed);
}

/* ---- public API ------------------------------------------------------------------------ */

struct httpc *
httpc_new(uv_loop_t *loop)
{
    static bool global_done;
    struct httpc *h = xcalloc(1, sizeof *h);

    if (!global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = true;
    }
    h->loop = loop;
    h->multi = curl_multi_init();
    if (h->multi == NULL)
        abort();
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(loop, &h->reap);
    h->reap.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

void
httpc_close(struct httpc *h, void (*cb)(void *arg), void *arg)
{
    if (h == NULL || h->closing)
        return;
    h->closing = true;
    h->close_cb = cb;
    h->close_arg = arg;
    uv_timer_start(&h->reap, on_reap, 0, 0);
}

uv_loop_t *
httpc_loop(const struct httpc *h)
{
    return h->loop;
}

size_t
httpc_active(const struct httpc *h)
{
    return h->nreqs;
}

void
httpc_cancel(struct httpc_req *r)
{
    if (r == NULL || r->canceled)
        return;
    r->canceled = true;
    if (!uv_is_closing((uv_handle_t *)&r->h->reap))
        uv_timer_start(&r->h->reap, on_reap, 0, 0);
}

static size_t
on_write(char *p, size_t size, size_t nmemb, void *userp)
{
    struct httpc_req *r = userp;
    size_t n = size * nmemb;
    long status = 0;

    if (r->canceled)
        return 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (r->on_data != NULL && status < 300) {
        int rc = r->on_data(p, n, r->arg, &r->data_err);

        if (rc < 0) {
            r->data_rc = rc;
            if (r->data_err.msg[0] == '\0')
                err_set(&r->data_err, rc, "%s %s: aborted by the data callback", r->method,
                        r->url);
            return 0;
        }
        return n;
    }
    {
        size_t cap = r->on_data != NULL ? HTTPC_MAX_ERROR_BODY : r->max_body;

        if (r->resp.len + n > cap) {
            r->overflow = true;
            r->max_body = cap;
            return 0;
        }
    }
    buf_append(&r->resp, p, n);
    return n;
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *userp)
{
    struct httpc_req *r = userp;
    size_t n = size * nmemb;

    /* A new status line (after 100 Continue, redirects) starts a new block. */
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
        buf_reset(&r->resp_hdrs);
    if (r->resp_hdrs.len + n > HTTPC_MAX_HEADERS) {
        r->overflow = true;
        r->max_body = HTTPC_MAX_HEADERS;
        return 0;
    }
    buf_append(&r->resp_hdrs, p, n);
    return n;
}

/* Wire trace for debugging; the values of credential headers never reach the log. */
static int
on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *userp)
{
    struct buf line = BUF_INIT;

    (void)easy;
    (void)userp;
    if (type != CURLINFO_TEXT && type != CURLINFO_HEADER_IN && type != CURLINFO_HEADER_OUT)
        return 0;
    for (size_t i = 0; i < size;) {
        size_t j = i;

        while (j < size && data[j] != '\n')
            j++;
        size_t len = j - i;
        const char *l = data + i;
        static const char *const secret[] = {"authorization:", "proxy-authorization:",
                                             "x-registry-auth:", "cookie:",
                                             "x-runner-token:", NULL};
        bool redact = false;

        for (int k = 0; secret[k]; k++)
            if (len >= strlen(secret[k]) && strncasecmp(l, secret[k], strlen(secret[k])) == 0)
                redact = true;
        buf_reset(&line);
        if (redact) {
            const char *colon = memchr(l, ':', len);

            buf_append(&line, l, (size_t)(colon - l));
            buf_puts(&line, ": <redacted>");
        } else {
            buf_append(&line, l, len);
        }
        if (len > 0) {
            char *esc = log_escape(line.data, line.len);

            const char *dir = type == CURLINFO_HEADER_OUT  ? ">"
                              : type == CURLINFO_HEADER_IN ? "<"
                                                           : "*";

            log_debug("curl %s %s", dir, esc);
            free(esc);
        }
        i = j + 1;
    }
    buf_free(&line);
    return 0;
}

int
httpc_request(struct httpc *h, const struct httpc_opts *o, httpc_done_fn done, void *arg,
              struct httpc_req **out, struct err *e)
{
    struct httpc_req *r;
    const char *method;
    CURLMcode mc;

    if (h->closing)
        return err_set(e, -ESHUTDOWN, "http client is closing");
    if (o->url == NULL)
        return err_set(e, -EINVAL, "no URL");
    method = o->method ? o->method : (o->body || o->send_empty_body) ? "POST" : "GET";
    r = xcalloc(1, sizeof *r);
    r->h = h;
    r->method = xstrdup(method);
    r->url = xstrdup(o->url);
    r->max_body = o->max_body ? o->max_body : HTTPC_DEFAULT_MAX_BODY;
    r->on_data = o->on_data;
    r->done = done;
    r->arg = arg;
    r->connect_only = o->connect_only;
    r->tls = strncasecmp(o->url, "https:", 6) == 0;
    r->easy = curl_easy_init();
    if (r->easy == NULL)
        abort();

    CURL *c = r->easy;
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L);
    if (o->timeout_ms > 0)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (o->low_speed_limit > 0 && o->low_speed_time > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o->low_speed_time);
    }
    if (o->unix_socket)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, o->unix_socket);
    if (o->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    if (o->cert_file)
        curl_easy_setopt(c, CURLOPT_SSLCERT, o->cert_file);
    if (o->key_file)
        curl_easy_setopt(c, CURLOPT_SSLKEY, o->key_file);
    if (o->tls_insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (o->verbose) {
        curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, on_debug);
        curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
    }
    if (o->connect_only) {
        curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        if (o->accept_compressed)
            curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* all built-in encodings */
        if (o->body != NULL || o->send_empty_body) {
            r->body = xmalloc(o->body_len + 1);
            if (o->body_len)
                memcpy(r->body, o->body, o->body_len);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
        }
        if (strcmp(method, "GET") == 0)
            curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        else if (strcmp(method, "HEAD") == 0)
            curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (strcmp(method, "POST") != 0 || r->body == NULL)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
        if (strcmp(method, "POST") == 0 && r->body == NULL) {
            /* A body-less POST must still say Content-Length: 0. */
            r->body = xstrdup("");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
        }
        for (const char *const *hp = o->headers; hp && *hp; hp++)
            r->hdrs = curl_slist_append(r->hdrs, *hp);
        /* Large uploads: skip the 100-continue round trip. */
        r->hdrs = curl_slist_append(r->hdrs, "Expect:");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->hdrs);
    }

    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    h->nreqs++;
    mc = curl_multi_add_handle(h->multi, c);
    if (mc != CURLM_OK) {
        req_unlink(r);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        int rc = err_set(e, -EIO, "%s %s: %s", method, o->url, curl_multi_strerror(mc));
        req_free(r);
        return rc;
    }
    if (out)
        *out = r;
    return 0;
}

/* ---- raw connections ------------------------------------------------------------------- */

int
httpc_conn_fd(const struct httpc_conn *c)
{
    return c->fd;
}

long
httpc_conn_send(struct httpc_conn *c, const void *p, size_t n)
{
    if (c->easy != NULL && c->h == NULL)
        return -EPIPE;
    if (c->easy != NULL) {
        size_t sent = 0;
        CURLcode cc = curl_easy_send(c->easy, p, n, &sent);

        if (cc == CURLE_AGAIN)
            return -EAGAIN;
        if (cc != CURLE_OK)
            return -EIO;
        return (long)sent;
    }
    for (;;) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

        if (w >= 0)
            return (long)w;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

long
httpc_conn_recv(struct httpc_conn *c, void *p, size_t n)
{
    if (c->easy != NULL && c->h == NULL)
        return -EPIPE;
    if (c->easy != NULL) {
        size_t got = 0;
        CURLcode cc = curl_easy_recv(c->easy, p, n, &got);

        if (cc == CURLE_AGAIN)
            return -EAGAIN;
        if (cc != CURLE_OK)
            return -EIO;
        return (long)got;
    }
    for (;;) {
        ssize_t r = recv(c->fd, p, n, 0);

        if (r >= 0)
            return (long)r;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

int
httpc_conn_shutdown_write(struct httpc_conn *c)
{
    if (c->easy != NULL)
        return -ENOTSUP; /* a TLS close_notify would end both directions for dockerd */
    return shutdown(c->fd, SHUT_WR) == 0 ? 0 : -errno;
}

void
httpc_conn_free(struct httpc_conn *c)
{
    if (c == NULL)
        return;
    if (c->easy != NULL) {
        if (c->h != NULL) {
            curl_multi_remove_handle(c->h->multi, c->easy);
            if (c->prev)
                c->prev->next = c->next;
            else
                c->h->tls_conns = c->next;
            if (c->next)
                c->next->prev = c->prev;
        }
        curl_easy_cleanup(c->easy);
    } else {
        close(c->fd);
    }
    free(c);
}

int
httpc_header_get(const char *headers, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = headers;

    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);

        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            const char *end = p + len;

            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
            if (outsz > 0) {
                size_t n = (size_t)(end - v) < outsz - 1 ? (size_t)(end - v) : outsz - 1;

                memcpy(out, v, n);
                out[n] = '\0';
            }
            return 0;
        }
        p = eol ? eol + 1 : NULL;
    }
    return ERR_NOTFOUND;
}

char *
httpc_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    struct buf b = BUF_INIT;

    buf_puts(&b, "");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            buf_putc(&b, (char)*p);
        } else {
            buf_putc(&b, '%');
            buf_putc(&b, hex[*p >> 4]);
            buf_putc(&b, hex[*p & 15]);
        }
    }
    return buf_steal(&b);
}
