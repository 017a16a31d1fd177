/* test-httpd.c: the loopback status endpoint over real sockets. The server runs on the test's
 * loop on 127.0.0.1:0; a forked child plays the client with blocking sockets and asserts on
 * what it reads, while the parent runs the loop (the child's exit closes a notify pipe, which
 * closes the server). Covers: 200 from /healthz, /readyz and /metrics with the callbacks'
 * content (a query string ignored), 503 from /readyz and /healthz with their reasons, 404,
 * 405 with Allow (a request body read past, the connection kept), HEAD without a body,
 * keep-alive (HTTP/1.1, HTTP/1.0 on request, Connection: close), pipelined requests answered
 * in order, 400 on a malformed request, 431 past 8 KiB of head (8 KiB exactly still served),
 * 413 for a large body, the 64-connection limit, the idle timeout, httpd_close() with
 * connections open and from inside a callback, and the address checks: loopback forms
 * accepted, "0.0.0.0:9464" and "10.1.2.3:1" refused, bad hosts and ports, a port in use.
 * Every case closes the server and asserts uv_loop_close() == 0; LeakSanitizer checks the
 * rest. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "harness.h"
#include "httpd.h"
#include "metrics.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

/* ---- the server side (parent) ---------------------------------------------------------------- */

struct fixture {
    uv_loop_t loop;
    struct httpd *h;
    int port;
    struct metrics *m;
    uv_pipe_t notify;
    pid_t child;
    int closed;            /* httpd_close() done callbacks */
    int health_calls, ready_calls, metrics_calls;
    const char *unhealthy; /* non-NULL: /healthz fails with this text */
    const char *not_ready; /* non-NULL: /readyz fails with this text */
    bool close_in_ready;   /* the ready callback closes the server */
};

static void
on_closed(void *arg)
{
    struct fixture *fx = arg;

    fx->closed++;
}

static void
fx_close_server(struct fixture *fx)
{
    if (fx->h != NULL) {
        httpd_close(fx->h, on_closed, fx);
        fx->h = NULL;
    }
}

static bool
cb_healthy(void *arg, struct buf *why)
{
    struct fixture *fx = arg;

    fx->health_calls++;
    if (fx->unhealthy == NULL)
        return true;
    buf_puts(why, fx->unhealthy);
    return false;
}

static bool
cb_ready(void *arg, struct buf *why)
{
    struct fixture *fx = arg;

    fx->ready_calls++;
    if (fx->close_in_ready)
        fx_close_server(fx);
    if (fx->not_ready == NULL)
        return true;
    buf_puts(why, fx->not_ready);
    return false;
}

static void
cb_metrics(void *arg, struct buf *out)
{
    struct fixture *fx = arg;

    fx->metrics_calls++;
    metrics_render(fx->m, out);
}

static const struct httpd_cbs cbs = {
    .healthy = cb_healthy,
    .ready = cb_ready,
    .metrics = cb_metrics,
};

static void
fx_start(struct fixture *fx)
{
    struct err e = {0};
    struct metric_family *jobs;

    memset(fx, 0, sizeof *fx);
    ASSERT_EQ(uv_loop_init(&fx->loop), 0);
    fx->m = metrics_new();
    jobs = metrics_family(fx->m, "runnerd_jobs_total", "Jobs finished.", METRIC_COUNTER,
                          (const char *const[]){"label", "result", NULL}, NULL, 0);
    metric_add(jobs, 3, "ubuntu-latest", "success");
    ASSERT_OK(httpd_start(&fx->loop, "127.0.0.1:0", &cbs, fx, &fx->h, &e));
    ASSERT(fx->h != NULL);
    fx->port = httpd_port(fx->h);
    ASSERT(fx->port > 0);
}

static void
on_notify_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    static char byte[16];

    (void)hd;
    (void)suggested;
    *b = uv_buf_init(byte, sizeof byte);
}

/* A byte from the child asks for httpd_close(); EOF (the child exited) closes it too. */
static void
on_notify_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct fixture *fx = s->data;

    (void)b;
    if (nread > 0)
        fx_close_server(fx);
    if (nread < 0) {
        uv_close((uv_handle_t *)s, NULL);
        fx_close_server(fx);
    }
}

typedef void (*client_fn)(struct fixture *fx, int notify_fd);

/* Runs client(fx, notify_fd) in a child while the loop serves; returns once the child has
 * exited and the server is closed. Fails unless the child exited 0. */
static void
fx_run_client(struct fixture *fx, client_fn client)
{
    int fds[2], status = 0;

    ASSERT_EQ(pipe(fds), 0);
    fflush(NULL);
    fx->child = fork();
    ASSERT(fx->child >= 0);
    if (fx->child == 0) {
        /* Hold none of the server's sockets: only the notify pipe's write end. */
        for (int fd = 3; fd < 1024; fd++)
            if (fd != fds[1])
                close(fd);
        client(fx, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    ASSERT_EQ(uv_pipe_init(&fx->loop, &fx->notify, 0), 0);
    ASSERT_EQ(uv_pipe_open(&fx->notify, fds[0]), 0);
    fx->notify.data = fx;
    ASSERT_EQ(uv_read_start((uv_stream_t *)&fx->notify, on_notify_alloc, on_notify_read), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(waitpid(fx->child, &status, 0), fx->child);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        test_fail(__FILE__, __LINE__, "client child failed (status 0x%x)", (unsigned)status);
}

static void
fx_finish(struct fixture *fx)
{
    ASSERT(fx->h == NULL);
    ASSERT_EQ(fx->closed, 1);
    metrics_free(fx->m);
    ASSERT_EQ(uv_loop_close(&fx->loop), 0);
}

/* ---- the client side (child): blocking sockets ----------------------------------------------- */

struct cli {
    int fd;
    char buf[64 * 1024];
    size_t len; /* received, not consumed yet */
};

struct resp {
    int status;
    char head[8192]; /* status line and headers, CRLFs kept, NUL-terminated */
    char body[32 * 1024];
    size_t body_len;
};

static void
cli_open(struct cli *c, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 30}; /* a safety net against hanging, not a timing check */

    c->len = 0;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(c->fd >= 0);
    ASSERT_EQ(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    ASSERT_EQ(connect(c->fd, (struct sockaddr *)&sin, sizeof sin), 0);
}

static void
cli_close(struct cli *c)
{
    close(c->fd);
    c->fd = -1;
}

static void
cli_send_n(struct cli *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

        if (w < 0)
            test_fail(__FILE__, __LINE__, "send: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

static void
cli_send(struct cli *c, const char *s)
{
    cli_send_n(c, s, strlen(s));
}

/* Reads more into c->buf; returns the count, 0 on EOF, -errno on error. */
static ssize_t
cli_fill(struct cli *c)
{
    ssize_t r;

    ASSERT(c->len < sizeof c->buf);
    do
        r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    c->len += (size_t)r;
    return r;
}

static void
cli_consume(struct cli *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads one response; for a HEAD request (head_req) no body is read, whatever Content-Length
 * says, so a body sent anyway shows up as garbage before the next response. */
static void
cli_read(struct cli *c, struct resp *r, bool head_req)
{
    char *end, *cl;
    size_t hlen, clen;

    memset(r, 0, sizeof *r);
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        ssize_t n = cli_fill(c);

        if (n <= 0)
            test_fail(__FILE__, __LINE__, "connection ended before a response head (%zd): %.*s",
                      n, (int)c->len, c->buf);
    }
    hlen = (size_t)(end - c->buf) + 4;
    ASSERT(hlen < sizeof r->head);
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    cli_consume(c, hlen);
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
        test_fail(__FILE__, __LINE__, "not a status line: %s", r->head);
    cl = strstr(r->head, "\r\nContent-Length: ");
    ASSERT(cl != NULL);
    clen = strtoul(cl + 18, NULL, 10);
    ASSERT(strstr(r->head, "\r\nCache-Control: no-store\r\n") != NULL);
    if (head_req)
        return;
    ASSERT(clen < sizeof r->body);
    while (c->len < clen)
        if (cli_fill(c) <= 0)
            test_fail(__FILE__, __LINE__, "connection ended inside a body");
    memcpy(r->body, c->buf, clen);
    r->body[clen] = '\0';
    r->body_len = clen;
    cli_consume(c, clen);
}

/* Asserts the server closed the connection: EOF (or a reset) with nothing more to read. */
static void
cli_expect_eof(struct cli *c)
{
    ssize_t n = cli_fill(c);

    if (n != 0 && n != -ECONNRESET)
        test_fail(__FILE__, __LINE__, "expected the connection closed, got %zd: %.*s", n,
                  (int)c->len, c->buf);
    ASSERT_EQ(c->len, 0);
}

/* Sends one request and reads its response. */
static void
cli_get(struct cli *c, const char *method, const char *path, struct resp *r)
{
    char req[512];

    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    cli_send(c, req);
    cli_read(c, r, strcmp(method, "HEAD") == 0);
}

/* The exposition the parent's metrics callback renders (the child has a copy of the registry). */
static char *
expected_metrics(struct fixture *fx)
{
    struct buf b = BUF_INIT;

    metrics_render(fx->m, &b);
    return buf_steal(&b);
}

/* ---- 200s ------------------------------------------------------------------------------------ */

static void
client_paths(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;
    char *want = expected_metrics(fx), clen[64];

    (void)notify_fd;
    cli_open(&c, fx->port);
    cli_get(&c, "GET", "/healthz", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ok\n");
    ASSERT_STR_CONTAINS(r.head, "HTTP/1.1 200 OK\r\n");
    ASSERT_STR_CONTAINS(r.head, "\r\nContent-Length: 3\r\n");
    ASSERT_STR_CONTAINS(r.head, "\r\nContent-Type: text/plain; charset=utf-8\r\n");
    ASSERT(strstr(r.head, "Connection: close") == NULL);

    cli_get(&c, "GET", "/readyz", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ready\n");

    cli_get(&c, "GET", "/metrics", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, want);
    ASSERT_STR_CONTAINS(r.body,
                        "runnerd_jobs_total{label=\"ubuntu-latest\",result=\"success\"} 3\n");
    ASSERT_STR_CONTAINS(r.head,
                        "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
    snprintf(clen, sizeof clen, "\r\nContent-Length: %zu\r\n", strlen(want));
    ASSERT_STR_CONTAINS(r.head, clen);

    cli_get(&c, "GET", "/healthz?verbose=1", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ok\n");
    cli_close(&c);
    free(want);
}

TEST(paths_ok)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_paths);
    ASSERT_EQ(fx.health_calls, 2);
    ASSERT_EQ(fx.ready_calls, 1);
    ASSERT_EQ(fx.metrics_calls, 1);
    fx_finish(&fx);
}

/* ---- 503s ------------------------------------------------------------------------------------ */

static void
client_not_ready(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;

    (void)notify_fd;
    cli_open(&c, fx->port);
    cli_get(&c, "GET", "/readyz", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_CONTAINS(r.head, "HTTP/1.1 503 Service Unavailable\r\n");
    /* One reason per line; the missing final newline is added. */
    ASSERT_STR_EQ(r.body, "no free slot\nlow disk space: 1.2 GiB free in /var/lib/runnerd\n");
    cli_get(&c, "GET", "/healthz", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(r.body, "unhealthy\n"); /* the callback gave no reason */
    cli_get(&c, "HEAD", "/readyz", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_CONTAINS(r.head, "\r\nContent-Length: 62\r\n");
    cli_get(&c, "GET", "/metrics", &r); /* still served */
    ASSERT_EQ(r.status, 200);
    cli_close(&c);
}

TEST(not_ready_and_unhealthy)
{
    struct fixture fx;

    fx_start(&fx);
    fx.not_ready = "no free slot\nlow disk space: 1.2 GiB free in /var/lib/runnerd";
    fx.unhealthy = "";
    fx_run_client(&fx, client_not_ready);
    ASSERT_EQ(fx.ready_calls, 2);
    ASSERT_EQ(fx.health_calls, 1);
    fx_finish(&fx);
}

/* ---- 404, 405 -------------------------------------------------------------------------------- */

static void
client_404_405(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;

    (void)notify_fd;
    cli_open(&c, fx->port);
    cli_get(&c, "GET", "/nope", &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_CONTAINS(r.head, "HTTP/1.1 404 Not Found\r\n");
    ASSERT_STR_EQ(r.body, "not found\n");
    cli_get(&c, "GET", "/", &r);
    ASSERT_EQ(r.status, 404);
    cli_get(&c, "GET", "/metrics/", &r);
    ASSERT_EQ(r.status, 404);
    cli_get(&c, "POST", "/nope", &r);
    ASSERT_EQ(r.status, 404);

    /* A POST with a body: 405, the body is read past and the connection stays usable. */
    cli_send(&c, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 405);
    ASSERT_STR_CONTAINS(r.head, "HTTP/1.1 405 Method Not Allowed\r\n");
    ASSERT_STR_CONTAINS(r.head, "\r\nAllow: GET, HEAD\r\n");
    ASSERT_STR_EQ(r.body, "method not allowed\n");
    cli_get(&c, "DELETE", "/healthz", &r);
    ASSERT_EQ(r.status, 405);
    ASSERT_STR_CONTAINS(r.head, "\r\nAllow: GET, HEAD\r\n");
    cli_get(&c, "GET", "/healthz", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ok\n");
    cli_close(&c);
}

TEST(not_found_and_method_not_allowed)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_404_405);
    ASSERT_EQ(fx.health_calls, 1); /* the DELETE did not reach the callback */
    ASSERT_EQ(fx.metrics_calls, 0);
    fx_finish(&fx);
}

/* ---- HEAD ------------------------------------------------------------------------------------ */

static void
client_head(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;
    char *want = expected_metrics(fx), clen[64];

    (void)notify_fd;
    cli_open(&c, fx->port);
    cli_get(&c, "HEAD", "/metrics", &r);
    ASSERT_EQ(r.status, 200);
    snprintf(clen, sizeof clen, "\r\nContent-Length: %zu\r\n", strlen(want));
    ASSERT_STR_CONTAINS(r.head, clen); /* what a GET would get */
    ASSERT_STR_CONTAINS(r.head, "version=0.0.4");
    cli_get(&c, "HEAD", "/nope", &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_CONTAINS(r.head, "\r\nContent-Length: 10\r\n");
    /* Had a body followed either head, this would not start with a status line. */
    cli_get(&c, "GET", "/healthz", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ok\n");
    ASSERT_EQ(c.len, 0);
    cli_close(&c);
    free(want);
}

TEST(head_has_no_body)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_head);
    ASSERT_EQ(fx.metrics_calls, 1);
    fx_finish(&fx);
}

/* ---- keep-alive and pipelining --------------------------------------------------------------- */

static void
client_keep_alive(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;

    (void)notify_fd;
    /* HTTP/1.1: two requests, one connection. */
    cli_open(&c, fx->port);
    cli_get(&c, "GET", "/healthz", &r);
    ASSERT_EQ(r.status, 200);
    cli_get(&c, "GET", "/readyz", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ready\n");
    /* Connection: close is honoured. */
    cli_send(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.head, "\r\nConnection: close\r\n");
    cli_expect_eof(&c);
    cli_close(&c);

    /* HTTP/1.0 closes by default... */
    cli_open(&c, fx->port);
    cli_send(&c, "GET /healthz HTTP/1.0\r\n\r\n");
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.head, "\r\nConnection: close\r\n");
    cli_expect_eof(&c);
    cli_close(&c);

    /* ...and keeps the connection when asked. */
    cli_open(&c, fx->port);
    cli_send(&c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.head, "\r\nConnection: keep-alive\r\n");
    cli_send(&c, "GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cli_read(&c, &r, false);
    ASSERT_STR_EQ(r.body, "ready\n");
    cli_close(&c);
}

TEST(keep_alive)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_keep_alive);
    ASSERT_EQ(fx.health_calls, 4);
    ASSERT_EQ(fx.ready_calls, 2);
    fx_finish(&fx);
}

static void
client_pipelined(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;
    char *want = expected_metrics(fx);

    (void)notify_fd;
    cli_open(&c, fx->port);
    /* A pair in one write. */
    cli_send(&c, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ready\n");
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ok\n");
    /* Four, with a HEAD and a 404 among them, the last one closing. */
    cli_send(&c, "GET /metrics HTTP/1.1\r\n\r\n"
                 "HEAD /metrics HTTP/1.1\r\n\r\n"
                 "GET /x HTTP/1.1\r\n\r\n"
                 "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    cli_read(&c, &r, false);
    ASSERT_STR_EQ(r.body, want);
    cli_read(&c, &r, true);
    ASSERT_EQ(r.status, 200);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 404);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ok\n");
    cli_expect_eof(&c);
    cli_close(&c);
    free(want);
}

TEST(pipelined)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_pipelined);
    ASSERT_EQ(fx.metrics_calls, 2);
    ASSERT_EQ(fx.health_calls, 2);
    fx_finish(&fx);
}

/* ---- refused requests ------------------------------------------------------------------------ */

static void
expect_closing(int port, const char *req, size_t len, int status, const char *body)
{
    struct cli c;
    struct resp r;

    cli_open(&c, port);
    cli_send_n(&c, req, len);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, status);
    ASSERT_STR_EQ(r.body, body);
    ASSERT_STR_CONTAINS(r.head, "\r\nConnection: close\r\n");
    cli_expect_eof(&c);
    cli_close(&c);
}

static void
client_bad_requests(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;
    const char *body = "POST /metrics HTTP/1.1\r\nContent-Length: 9000\r\n\r\n";
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
        "GET /healthz HTTP/9.9.9\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "CONNECT 127.0.0.1:80 HTTP/1.1\r\n\r\n",
    };
    char *big;

    (void)notify_fd;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_closing(fx->port, bad[i], strlen(bad[i]), 400, "bad request\n");

    /* An upgrade is ignored (answered, then the connection closes). */
    expect_closing(fx->port,
                   "GET /healthz HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                   66, 200, "ok\n");

    /* After a good request on the same connection: answered first, then 400. */
    cli_open(&c, fx->port);
    cli_send(&c, "GET /healthz HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n");
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 400);
    cli_expect_eof(&c);
    cli_close(&c);

    /* A body over 8 KiB: 413. */
    big = xmalloc(strlen(body) + 9000);
    memcpy(big, body, strlen(body));
    memset(big + strlen(body), 'x', 9000);
    expect_closing(fx->port, big, strlen(body) + 9000, 413, "request body too large\n");
    free(big);
}

TEST(bad_request)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_bad_requests);
    ASSERT_EQ(fx.health_calls, 2);
    ASSERT_EQ(fx.metrics_calls, 0);
    fx_finish(&fx);
}

/* Builds a GET /healthz whose head (through the blank line) is exactly n bytes. */
static char *
head_of_size(size_t n)
{
    const char *pre = "GET /healthz HTTP/1.1\r\nX-Pad: ";
    char *s = xmalloc(n + 1);
    size_t pad = n - strlen(pre) - 4;

    memcpy(s, pre, strlen(pre));
    memset(s + strlen(pre), 'p', pad);
    memcpy(s + strlen(pre) + pad, "\r\n\r\n", 5);
    ASSERT_EQ(strlen(s), n);
    return s;
}

static void
client_oversize(struct fixture *fx, int notify_fd)
{
    struct cli c;
    struct resp r;
    char *req;

    (void)notify_fd;
    /* 8192 bytes of head is still fine, twice on one connection. */
    req = head_of_size(8192);
    cli_open(&c, fx->port);
    cli_send(&c, req);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "ok\n");
    cli_send(&c, req);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    cli_close(&c);
    free(req);

    /* One byte more: 431, whether it comes whole or after a request on the connection. */
    req = head_of_size(8193);
    expect_closing(fx->port, req, strlen(req), 431, "request header fields too large\n");
    cli_open(&c, fx->port);
    cli_send(&c, "GET /readyz HTTP/1.1\r\n\r\n");
    cli_send(&c, req);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 200);
    cli_read(&c, &r, false);
    ASSERT_EQ(r.status, 431);
    cli_expect_eof(&c);
    cli_close(&c);
    free(req);

    /* Far more, with no end of head at all. */
    req = xmalloc(40000);
    memcpy(req, "GET /healthz HTTP/1.1\r\nX-Pad: ", 30);
    memset(req + 30, 'p', 40000 - 30);
    expect_closing(fx->port, req, 40000, 431, "request header fields too large\n");
    free(req);
}

TEST(oversize_head)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_oversize);
    ASSERT_EQ(fx.health_calls, 2);
    ASSERT_EQ(fx.ready_calls, 1);
    fx_finish(&fx);
}

/* ---- connection limits ----------------------------------------------------------------------- */

static void
client_too_many(struct fixture *fx, int notify_fd)
{
    static struct cli conns[66];
    struct resp r;
    ssize_t n;

    (void)notify_fd;
    for (int i = 0; i < 64; i++) {
        cli_open(&conns[i], fx->port);
        cli_get(&conns[i], "GET", "/healthz", &r);
        ASSERT_EQ(r.status, 200);
    }
    /* The 65th is accepted and closed at once: no response. */
    cli_open(&conns[64], fx->port);
    send(conns[64].fd, "GET /healthz HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL);
    n = cli_fill(&conns[64]);
    ASSERT(n == 0 || n == -ECONNRESET || n == -EPIPE);
    ASSERT_EQ(conns[64].len, 0);
    cli_close(&conns[64]);
    /* One leaves (the server has closed it when we see EOF); a newcomer is served. */
    cli_send(&conns[0], "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    cli_read(&conns[0], &r, false);
    ASSERT_EQ(r.status, 200);
    cli_expect_eof(&conns[0]);
    cli_close(&conns[0]);
    cli_open(&conns[65], fx->port);
    cli_get(&conns[65], "GET", "/readyz", &r);
    ASSERT_EQ(r.status, 200);
    for (int i = 1; i < 64; i++)
        cli_close(&conns[i]);
    cli_close(&conns[65]);
}

TEST(connection_limit)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_too_many);
    ASSERT_EQ(fx.health_calls, 65);
    ASSERT_EQ(fx.ready_calls, 1);
    fx_finish(&fx);
}

static void
client_idle(struct fixture *fx, int notify_fd)
{
    struct cli quiet, used, partial;
    struct resp r;

    (void)notify_fd;
    cli_open(&quiet, fx->port);
    cli_open(&used, fx->port);
    cli_open(&partial, fx->port);
    cli_get(&used, "GET", "/healthz", &r);
    ASSERT_EQ(r.status, 200);
    cli_send(&partial, "GET /healthz HTTP/1.1\r\nHost:");
    /* Each blocks until the server gives up on it (10 s); none gets a response. */
    cli_expect_eof(&quiet);
    cli_expect_eof(&used);
    cli_expect_eof(&partial);
    cli_close(&quiet);
    cli_close(&used);
    cli_close(&partial);
}

TEST(idle_timeout)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_idle);
    ASSERT_EQ(fx.health_calls, 1);
    fx_finish(&fx);
}

/* ---- closing --------------------------------------------------------------------------------- */

static void
client_close_with_conns(struct fixture *fx, int notify_fd)
{
    struct cli partial, quiet, used;
    struct resp r;

    cli_open(&partial, fx->port);
    cli_send(&partial, "GET /heal");
    cli_open(&quiet, fx->port);
    cli_open(&used, fx->port);
    cli_get(&used, "GET", "/metrics", &r); /* all three are accepted by now */
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(write(notify_fd, "x", 1), 1); /* parent: httpd_close() */
    cli_expect_eof(&partial);
    cli_expect_eof(&quiet);
    cli_expect_eof(&used);
    cli_close(&partial);
    cli_close(&quiet);
    cli_close(&used);
}

TEST(close_with_connections_open)
{
    struct fixture fx;

    fx_start(&fx);
    fx_run_client(&fx, client_close_with_conns);
    ASSERT_EQ(fx.metrics_calls, 1);
    fx_finish(&fx);
}

static void
client_close_in_callback(struct fixture *fx, int notify_fd)
{
    struct cli c;

    (void)notify_fd;
    cli_open(&c, fx->port);
    cli_send(&c, "GET /readyz HTTP/1.1\r\n\r\n");
    cli_expect_eof(&c); /* closed with the server, no response */
    cli_close(&c);
}

TEST(close_from_callback)
{
    struct fixture fx;

    fx_start(&fx);
    fx.close_in_ready = true;
    fx_run_client(&fx, client_close_in_callback);
    ASSERT_EQ(fx.ready_calls, 1);
    fx_finish(&fx);
}

/* ---- addresses ------------------------------------------------------------------------------- */

static void
expect_bad_addr(const char *addr, const char *msg)
{
    struct err e = {0};

    ASSERT_EQ(httpd_check_addr(addr, &e), ERR_INVALID);
    ASSERT_EQ(e.code, ERR_INVALID);
    ASSERT_STR_EQ(e.msg, msg);
}

TEST(addresses)
{
    const char *good[] = {"127.0.0.1:9464", "127.1.2.3:1",    "127.255.255.255:65535",
                          "[::1]:9464",     "localhost:9464", "LocalHost:0",
                          "127.0.0.1:0",    "[0:0:0:0:0:0:0:1]:80"};
    struct err e = {0};

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (httpd_check_addr(good[i], &e) != 0)
            test_fail(__FILE__, __LINE__, "%s refused: %s", good[i], e.msg);
    }
    ASSERT_EQ(httpd_check_addr("127.0.0.1:9464", NULL), 0);
    ASSERT_EQ(httpd_check_addr("0.0.0.0:9464", NULL), ERR_INVALID);

    expect_bad_addr("0.0.0.0:9464",
                    "\"0.0.0.0:9464\": 0.0.0.0 is not a loopback address; the status endpoint "
                    "has no authentication, so it only listens on 127.0.0.0/8, [::1] or "
                    "localhost");
    expect_bad_addr("10.1.2.3:1",
                    "\"10.1.2.3:1\": 10.1.2.3 is not a loopback address; the status endpoint "
                    "has no authentication, so it only listens on 127.0.0.0/8, [::1] or "
                    "localhost");
    expect_bad_addr("[::]:9464", "\"[::]:9464\": :: is not a loopback address; the status "
                                 "endpoint has no authentication, so it only listens on "
                                 "127.0.0.0/8, [::1] or localhost");
    expect_bad_addr("127.0.0.1:65536",
                    "\"127.0.0.1:65536\": bad port \"65536\": expected 0 to 65535");
    expect_bad_addr("127.0.0.1:-1", "\"127.0.0.1:-1\": bad port \"-1\": expected 0 to 65535");
    expect_bad_addr("127.0.0.1:", "\"127.0.0.1:\": bad port \"\": expected 0 to 65535");
    expect_bad_addr("127.0.0.1:http",
                    "\"127.0.0.1:http\": bad port \"http\": expected 0 to 65535");
    expect_bad_addr("127.0.0.1:1000000",
                    "\"127.0.0.1:1000000\": bad port \"1000000\": expected 0 to 65535");
    expect_bad_addr("127.0.0.1", "\"127.0.0.1\": no port: expected HOST:PORT, e.g. "
                                 "127.0.0.1:9464");
    expect_bad_addr("::1:9464",
                    "\"::1:9464\": an IPv6 address needs brackets, e.g. [::1]:9464");
    expect_bad_addr("[::1]9464", "\"[::1]9464\": expected [IPv6]:PORT, e.g. [::1]:9464");
    expect_bad_addr("example.com:80",
                    "\"example.com:80\": bad host \"example.com\": expected an address in "
                    "127.0.0.0/8, [::1] or localhost (names are not resolved)");
    expect_bad_addr("127.1:80", "\"127.1:80\": bad host \"127.1\": expected an address in "
                                "127.0.0.0/8, [::1] or localhost (names are not resolved)");
    expect_bad_addr("[127.0.0.1]:80",
                    "\"[127.0.0.1]:80\": bad host \"127.0.0.1\": expected an address in "
                    "127.0.0.0/8, [::1] or localhost (names are not resolved)");
    expect_bad_addr("", "empty address: expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464");
    expect_bad_addr(NULL,
                    "empty address: expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464");
}

TEST(start_refusals)
{
    uv_loop_t loop;
    struct httpd *h = NULL, *h2 = NULL;
    struct fixture fx = {0};
    struct err e = {0};
    char addr[64];

    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(httpd_start(&loop, "0.0.0.0:9464", &cbs, NULL, &h, &e), ERR_INVALID);
    ASSERT(h == NULL);
    ASSERT_STR_CONTAINS(e.msg, "0.0.0.0 is not a loopback address");
    ASSERT_EQ(httpd_start(&loop, "10.1.2.3:1", &cbs, NULL, &h, &e), ERR_INVALID);
    ASSERT_EQ(httpd_start(&loop, "127.0.0.1:99999", &cbs, NULL, &h, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "bad port");

    /* A port in use. */
    ASSERT_OK(httpd_start(&loop, "localhost:0", &cbs, NULL, &h, &e));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", httpd_port(h));
    ASSERT_EQ(httpd_start(&loop, addr, &cbs, NULL, &h2, &e), -EADDRINUSE);
    ASSERT(h2 == NULL);
    ASSERT_STR_CONTAINS(e.msg, addr);
    ASSERT_STR_CONTAINS(e.msg, "Address already in use");
    httpd_close(h, on_closed, &fx);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(fx.closed, 1);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST(ipv6_loopback)
{
    uv_loop_t loop;
    struct httpd *h = NULL;
    struct err e = {0};
    struct fixture fx = {0};
    int rc;

    ASSERT_EQ(uv_loop_init(&loop), 0);
    rc = httpd_start(&loop, "[::1]:0", &cbs, NULL, &h, &e);
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
        fprintf(stderr, "SKIP: no IPv6 loopback here: %s\n", e.msg);
        ASSERT_EQ(uv_loop_close(&loop), 0);
        return;
    }
    ASSERT_OK(rc);
    ASSERT(httpd_port(h) > 0);
    httpd_close(h, on_closed, &fx);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(fx.closed, 1);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}
