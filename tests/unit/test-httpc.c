/* test-httpc.c: the libcurl-multi-on-libuv client against a real HTTP server on 127.0.0.1
 * (tests/servers/httpd.py, per test). Covers: GET/POST/PUT, response headers, error statuses
 * with bodies, the body cap, connect refused, the total timeout, streaming callbacks and their
 * abort, cancel mid-request, many concurrent requests, closing with requests in flight, the
 * redaction of credentials in verbose traces, header parsing and escaping, TLS with a CA and a
 * client certificate (and failing without either), and connect-only raw connections over plain
 * TCP (our own dup of the socket) and TLS (curl_easy_send/recv). Every test closes
 * the client and asserts uv_loop_close() == 0. */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "harness.h"
#include "httpc.h"
#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"

static pid_t server_pid;
static char base[64];

/* Starts tests/servers/httpd.py (with TLS when tls_dir is set) and reads its port. */
static void
server_start_opt(const char *tls_dir)
{
    int fds[2];
    char line[32] = {0};
    ssize_t n, got = 0;

    ASSERT(pipe(fds) == 0);
    server_pid = fork();
    ASSERT(server_pid >= 0);
    if (server_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (tls_dir)
            execlp("python3", "python3", RUNNERD_SERVERS_DIR "/httpd.py", "--tls", tls_dir,
                   (char *)NULL);
        else
            execlp("python3", "python3", RUNNERD_SERVERS_DIR "/httpd.py", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (got < (ssize_t)sizeof line - 1 && (n = read(fds[0], line + got, 1)) == 1) {
        if (line[got] == '\n')
            break;
        got++;
    }
    close(fds[0]);
    ASSERT(atoi(line) > 0);
    snprintf(base, sizeof base, "%s://127.0.0.1:%d", tls_dir ? "https" : "http", atoi(line));
}

static void
server_start(void)
{
    server_start_opt(NULL);
}

static void
server_stop(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
}

/* One request's outcome, copied out of the callback. */
struct outcome {
    int calls;
    int rc;
    long status;
    char msg[256];
    struct buf body;
    char xmethod[16];
    struct buf streamed;
    int chunks;
};

static void
on_done(const struct httpc_result *res, void *arg)
{
    struct outcome *o = arg;

    o->calls++;
    o->rc = res->rc;
    o->status = res->status;
    snprintf(o->msg, sizeof o->msg, "%s", res->err.msg);
    buf_append(&o->body, res->body, res->body_len);
    httpc_header_get(res->headers, "X-Method", o->xmethod, sizeof o->xmethod);
}

static void
outcome_free(struct outcome *o)
{
    buf_free(&o->body);
    buf_free(&o->streamed);
}

static int closed_calls;

static void
on_closed(void *arg)
{
    (void)arg;
    closed_calls++;
}

static void
finish_loop(uv_loop_t *loop, struct httpc *h)
{
    closed_calls = 0;
    httpc_close(h, on_closed, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed_calls, 1);
    ASSERT_EQ(uv_loop_close(loop), 0);
    server_stop();
}

static void
start(struct httpc *h, struct httpc_opts *o, struct outcome *out)
{
    struct err e = {0};

    if (o->timeout_ms == 0)
        o->timeout_ms = 10000;
    ASSERT_OK(httpc_request(h, o, on_done, out, NULL, &e));
}

TEST(get_post_put)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0}, b = {0}, c = {0}, d = {0};
    char url[128];

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/hello", base);
    start(h, &(struct httpc_opts){.url = url}, &a);
    snprintf(url, sizeof url, "%s/echo", base);
    start(h, &(struct httpc_opts){.url = url, .body = "abc", .body_len = 3}, &b);
    start(h, &(struct httpc_opts){.url = url, .method = "PUT", .body = "put-body", .body_len = 8},
          &c);
    start(h, &(struct httpc_opts){.url = url, .method = "POST"}, &d); /* Content-Length: 0 */
    ASSERT_EQ(httpc_active(h), 4);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.rc, 0);
    ASSERT_EQ(a.status, 200);
    ASSERT_STR_EQ(buf_str(&a.body), "hello world");
    ASSERT_STR_EQ(a.xmethod, "GET");
    ASSERT_EQ(b.status, 200);
    ASSERT_STR_EQ(buf_str(&b.body), "abc");
    ASSERT_STR_EQ(b.xmethod, "POST");
    ASSERT_EQ(c.status, 200);
    ASSERT_STR_EQ(buf_str(&c.body), "put-body");
    ASSERT_STR_EQ(c.xmethod, "PUT");
    ASSERT_EQ(d.status, 200);
    ASSERT_STR_EQ(buf_str(&d.body), "");
    ASSERT_EQ(httpc_active(h), 0);
    outcome_free(&a);
    outcome_free(&b);
    outcome_free(&c);
    outcome_free(&d);
    finish_loop(&loop, h);
}

TEST(error_status_keeps_body)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0};
    char url[128];

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/status?code=404", base);
    start(h, &(struct httpc_opts){.url = url}, &a);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.rc, 0);
    ASSERT_EQ(a.status, 404);
    ASSERT_STR_EQ(buf_str(&a.body), "{\"message\":\"status 404\"}");
    outcome_free(&a);
    finish_loop(&loop, h);
}

TEST(body_cap)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0}, b = {0};
    char url[128];

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/big?n=100000", base);
    start(h, &(struct httpc_opts){.url = url, .max_body = 1000}, &a);
    snprintf(url, sizeof url, "%s/big?n=1000", base);
    start(h, &(struct httpc_opts){.url = url, .max_body = 1000}, &b);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.rc, -EFBIG);
    ASSERT_STR_CONTAINS(a.msg, "response body exceeds 1000 bytes");
    ASSERT_STR_CONTAINS(a.msg, "/big?n=100000");
    ASSERT_EQ(b.rc, 0);
    ASSERT_EQ(b.body.len, 1000);
    outcome_free(&a);
    outcome_free(&b);
    finish_loop(&loop, h);
}

TEST(connect_refused)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0};
    char url[128];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* a port that was just free: bind, read it, close (nobody listens) */
    ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    start(h, &(struct httpc_opts){.url = url}, &a);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.rc, -ECONNREFUSED);
    ASSERT_STR_CONTAINS(a.msg, "cannot connect");
    ASSERT_EQ(a.status, 0);
    outcome_free(&a);
    finish_loop(&loop, h);
}

TEST(total_timeout)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0};
    char url[128];
    uint64_t t0;

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/hang", base);
    t0 = uv_hrtime();
    start(h, &(struct httpc_opts){.url = url, .timeout_ms = 300}, &a);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.rc, ERR_TIMEOUT);
    ASSERT_STR_CONTAINS(a.msg, "timed out");
    ASSERT((uv_hrtime() - t0) / 1000000 < 5000);
    outcome_free(&a);
    finish_loop(&loop, h);
}

static int
on_stream(const char *p, size_t n, void *arg, struct err *e)
{
    struct outcome *o = arg;

    (void)e;
    o->chunks++;
    buf_append(&o->streamed, p, n);
    return 0;
}

static int
on_stream_abort(const char *p, size_t n, void *arg, struct err *e)
{
    struct outcome *o = arg;

    buf_append(&o->streamed, p, n);
    if (strstr(buf_str(&o->streamed), "chunk-1\n"))
        return err_set(e, ERR_PROTO, "seen enough");
    return 0;
}

TEST(streaming)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0}, b = {0};
    char url[128];

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/stream?n=5", base);
    start(h, &(struct httpc_opts){.url = url, .on_data = on_stream, .timeout_ms = -0}, &a);
    start(h, &(struct httpc_opts){.url = url, .on_data = on_stream_abort}, &b);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.rc, 0);
    ASSERT_EQ(a.status, 200);
    ASSERT_STR_EQ(buf_str(&a.streamed), "chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n");
    ASSERT(a.chunks >= 2); /* delivered as it came, not at the end */
    ASSERT_STR_EQ(buf_str(&a.body), "");
    ASSERT_EQ(b.calls, 1);
    ASSERT_EQ(b.rc, ERR_PROTO);
    ASSERT_STR_EQ(b.msg, "seen enough");
    outcome_free(&a);
    outcome_free(&b);
    finish_loop(&loop, h);
}

struct cancel_ctx {
    uv_timer_t timer;
    struct httpc_req *req;
};

static void
on_cancel_timer(uv_timer_t *t)
{
    struct cancel_ctx *c = t->data;

    httpc_cancel(c->req);
    uv_close((uv_handle_t *)t, NULL);
}

TEST(cancel_mid_request)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0};
    struct cancel_ctx c;
    char url[128];
    struct err e;

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/hang", base);
    ASSERT_OK(httpc_request(h, &(struct httpc_opts){.url = url}, on_done, &a, &c.req, &e));
    uv_timer_init(&loop, &c.timer);
    c.timer.data = &c;
    uv_timer_start(&c.timer, on_cancel_timer, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.rc, ERR_CANCELED);
    ASSERT_STR_CONTAINS(a.msg, "canceled");
    outcome_free(&a);
    finish_loop(&loop, h);
}

TEST(close_with_requests_in_flight)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0}, b = {0};
    char url[128];
    struct err e;

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/hang", base);
    start(h, &(struct httpc_opts){.url = url}, &a);
    start(h, &(struct httpc_opts){.url = url}, &b);
    /* let them connect first */
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_NOWAIT);
    closed_calls = 0;
    httpc_close(h, on_closed, NULL);
    ASSERT(httpc_request(h, &(struct httpc_opts){.url = url}, on_done, &a, NULL, &e) ==
           -ESHUTDOWN);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed_calls, 1);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.rc, ERR_CANCELED);
    ASSERT_EQ(b.calls, 1);
    ASSERT_EQ(b.rc, ERR_CANCELED);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    outcome_free(&a);
    outcome_free(&b);
    server_stop();
}

TEST(many_concurrent)
{
    enum { N = 60 };
    uv_loop_t loop;
    struct httpc *h;
    struct outcome *o = xcalloc(N, sizeof *o);
    char url[128];

    server_start();
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    for (int i = 0; i < N; i++) {
        if (i % 2)
            snprintf(url, sizeof url, "%s/slow?ms=100", base);
        else
            snprintf(url, sizeof url, "%s/big?n=%d", base, 1000 + i);
        start(h, &(struct httpc_opts){.url = url}, &o[i]);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(o[i].calls, 1);
        if (o[i].rc != 0)
            test_fail(__FILE__, __LINE__, "request %d: %s", i, o[i].msg);
        ASSERT_EQ(o[i].status, 200);
        if (i % 2)
            ASSERT_STR_EQ(buf_str(&o[i].body), "slow");
        else
            ASSERT_EQ(o[i].body.len, 1000 + i);
        outcome_free(&o[i]);
    }
    free(o);
    finish_loop(&loop, h);
}

TEST(verbose_trace_redacts_credentials)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0};
    char url[128];
    const char *hdrs[] = {"Authorization: Bearer SECRET-TOKEN-123",
                          "X-Registry-Auth: SECRET-REG-456", NULL};
    int saved = dup(2);
    int fd = open("trace.log", O_CREAT | O_WRONLY | O_TRUNC, 0600);
    char *trace;

    server_start();
    log_init(LOG_PRIO_DEBUG, false);
    dup2(fd, 2);
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/headers", base);
    start(h, &(struct httpc_opts){.url = url, .headers = hdrs, .verbose = true}, &a);
    uv_run(&loop, UV_RUN_DEFAULT);
    fflush(stderr);
    dup2(saved, 2);
    close(fd);
    close(saved);
    ASSERT_EQ(a.rc, 0);
    /* the server did get the header ... */
    ASSERT_STR_CONTAINS(buf_str(&a.body), "SECRET-TOKEN-123");
    /* ... but the trace shows only its name */
    trace = test_read_file("trace.log", NULL);
    ASSERT(trace != NULL);
    ASSERT_STR_CONTAINS(trace, "GET /headers");
    ASSERT_STR_CONTAINS(trace, "Authorization: <redacted>");
    ASSERT(strstr(trace, "SECRET-TOKEN-123") == NULL);
    ASSERT(strstr(trace, "SECRET-REG-456") == NULL);
    free(trace);
    outcome_free(&a);
    finish_loop(&loop, h);
}

TEST(header_get_and_escape)
{
    const char *hdrs = "HTTP/1.1 200 OK\r\nApi-Version:  1.41 \r\nContent-Type: text/plain\r\n\r\n";
    char v[16];
    char *s;

    ASSERT_OK(httpc_header_get(hdrs, "api-version", v, sizeof v));
    ASSERT_STR_EQ(v, "1.41");
    ASSERT_EQ(httpc_header_get(hdrs, "Api", v, sizeof v), ERR_NOTFOUND);
    ASSERT_EQ(httpc_header_get(hdrs, "X-None", v, sizeof v), ERR_NOTFOUND);
    s = httpc_escape("{\"label\":[\"a=b c/d@e\"]}");
    ASSERT_STR_EQ(s, "%7B%22label%22%3A%5B%22a%3Db%20c%2Fd%40e%22%5D%7D");
    free(s);
}

/* ---- raw connections and TLS ---------------------------------------------------------------- */

static uv_loop_t *raw_loop;

struct raw {
    struct httpc_conn *conn;
    int rc;
    char msg[256];
    int calls;
    uv_poll_t poll;
    struct buf in;
    size_t sent;
    const char *req;
    bool eof;
};

static void
on_raw_poll(uv_poll_t *p, int status, int events)
{
    struct raw *r = p->data;
    char chunk[4096];

    ASSERT(status == 0);
    if (events & UV_WRITABLE) {
        long n = httpc_conn_send(r->conn, r->req + r->sent, strlen(r->req) - r->sent);

        if (n > 0)
            r->sent += (size_t)n;
        else
            ASSERT_EQ(n, -EAGAIN);
        if (r->sent == strlen(r->req))
            uv_poll_start(p, UV_READABLE, on_raw_poll);
    }
    if (events & UV_READABLE) {
        for (;;) {
            long n = httpc_conn_recv(r->conn, chunk, sizeof chunk);

            if (n == -EAGAIN)
                break;
            if (n <= 0) {
                r->eof = true;
                uv_poll_stop(p);
                uv_close((uv_handle_t *)p, NULL);
                break;
            }
            buf_append(&r->in, chunk, (size_t)n);
        }
    }
}

static void
on_raw_done(const struct httpc_result *res, void *arg)
{
    struct raw *r = arg;

    r->calls++;
    r->rc = res->rc;
    snprintf(r->msg, sizeof r->msg, "%s", res->err.msg);
    r->conn = res->conn;
    if (r->conn == NULL)
        return;
    ASSERT(httpc_conn_fd(r->conn) >= 0);
    ASSERT_OK(uv_poll_init_socket(raw_loop, &r->poll, httpc_conn_fd(r->conn)));
    r->poll.data = r;
    uv_poll_start(&r->poll, UV_READABLE | UV_WRITABLE, on_raw_poll);
}

/* Makes a CA, a server certificate for 127.0.0.1 and a client certificate in the test dir. */
static void
make_certs(void)
{
    const char *script =
        "set -e; exec >certs.log 2>&1;"
        "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
        "openssl req -x509 $K -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=runnerd-test-ca;"
        "printf 'subjectAltName=IP:127.0.0.1\\n' >san.ext;"
        "openssl req $K -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1;"
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial"
        " -out server.pem -days 2 -extfile san.ext;"
        "openssl req $K -keyout key.pem -out client.csr -subj /CN=runnerd-client;"
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial"
        " -out cert.pem -days 2";

    ASSERT_EQ(system(script), 0);
}

TEST(tls_with_client_certificate)
{
    uv_loop_t loop;
    struct httpc *h;
    struct outcome a = {0}, b = {0}, c = {0};
    char url[128], ca[512], cert[512], key[512];

    make_certs();
    snprintf(ca, sizeof ca, "%s/ca.pem", test_tmpdir());
    snprintf(cert, sizeof cert, "%s/cert.pem", test_tmpdir());
    snprintf(key, sizeof key, "%s/key.pem", test_tmpdir());
    server_start_opt(test_tmpdir());
    uv_loop_init(&loop);
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/hello", base);
    start(h, &(struct httpc_opts){.url = url, .ca_file = ca, .cert_file = cert, .key_file = key},
          &a);
    /* no CA: the self-made server certificate is not trusted */
    start(h, &(struct httpc_opts){.url = url, .cert_file = cert, .key_file = key}, &b);
    /* no client certificate: the server refuses the handshake */
    start(h, &(struct httpc_opts){.url = url, .ca_file = ca}, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.rc, 0);
    ASSERT_EQ(a.status, 200);
    ASSERT_STR_EQ(buf_str(&a.body), "hello world");
    ASSERT(b.rc < 0);
    ASSERT_STR_CONTAINS(b.msg, "certificate");
    ASSERT(c.rc < 0);
    outcome_free(&a);
    outcome_free(&b);
    outcome_free(&c);
    finish_loop(&loop, h);
}

/* A connect-only request yields a raw connection; we speak HTTP over it by hand. */
static void
raw_round_trip(bool tls)
{
    uv_loop_t loop;
    struct httpc *h;
    struct raw r = {0};
    char url[128], ca[512], cert[512], key[512];
    struct err e;

    if (tls)
        make_certs();
    snprintf(ca, sizeof ca, "%s/ca.pem", test_tmpdir());
    snprintf(cert, sizeof cert, "%s/cert.pem", test_tmpdir());
    snprintf(key, sizeof key, "%s/key.pem", test_tmpdir());
    server_start_opt(tls ? test_tmpdir() : NULL);
    uv_loop_init(&loop);
    raw_loop = &loop;
    h = httpc_new(&loop);
    snprintf(url, sizeof url, "%s/", base);
    r.req = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ASSERT_OK(httpc_request(h,
                            &(struct httpc_opts){.url = url, .connect_only = true,
                                                 .ca_file = tls ? ca : NULL,
                                                 .cert_file = tls ? cert : NULL,
                                                 .key_file = tls ? key : NULL},
                            on_raw_done, &r, NULL, &e));
    while (r.calls == 0 || (r.conn != NULL && !r.eof))
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(r.rc, 0);
    ASSERT(r.conn != NULL);
    ASSERT_STR_CONTAINS(buf_str(&r.in), "HTTP/1.1 200 OK");
    ASSERT_STR_CONTAINS(buf_str(&r.in), "\r\n\r\nhello world");
    uv_run(&loop, UV_RUN_NOWAIT); /* the poll's close callback */
    httpc_conn_free(r.conn);
    buf_free(&r.in);
    finish_loop(&loop, h);
}

TEST(connect_only_plain)
{
    raw_round_trip(false);
}

TEST(connect_only_tls)
{
    raw_round_trip(true);
}
