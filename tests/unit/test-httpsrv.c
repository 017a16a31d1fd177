/* test-httpsrv.c: the server plumbing both HTTP servers share (daemon/net/httpsrv.c), through
 * a small user of its own that answers every request with its URL, on real sockets: a thread
 * plays the client with blocking sockets while the test's loop runs the server. Covers:
 * listeners on two addresses sharing the first one's port (the kernel's pick), listening twice
 * on one address as a no-op, a port in use refused with its address in the message; pipelined
 * requests answered in order on one connection, keep-alive then an HTTP/1.0 request closing
 * it (Connection: close, then FIN); the connection cap (one past it is closed unanswered) and
 * a lingering connection no longer counting against it; a head over max_head refused with 431;
 * hooks called once per connection (conn_new, conn_closing, conn_closed); a user keeping its
 * connection past conn_closed (as the cache does while a write is on the thread pool) while
 * httpsrv_close()'s done runs; httpsrv_close() with no listener. Every case asserts
 * uv_loop_close() == 0; LeakSanitizer checks the rest. */
#include "harness.h"

#include "httpsrv.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

/* ---- the user: answers 200 with the URL as the body ---------------------------------------- */

struct tconn {
    struct httpsrv_conn http;
    struct tserver *t;
    struct tconn *kept_next;
};

struct tserver {
    struct httpsrv srv;
    int accepted, closing, closed, done;
    bool keep; /* conn_closed keeps the connection on kept instead of freeing it */
    struct tconn *kept;
};

static struct tconn *
tconn_of(struct httpsrv_conn *hc)
{
    return (struct tconn *)((char *)hc - offsetof(struct tconn, http));
}

static void on_input(struct httpsrv_conn *hc);

static struct httpsrv_conn *
on_conn_new(struct httpsrv *srv)
{
    struct tconn *c = xcalloc(1, sizeof *c);

    c->t = srv->arg;
    c->t->accepted++;
    return &c->http;
}

static void
on_conn_closing(struct httpsrv_conn *hc)
{
    tconn_of(hc)->t->closing++;
}

static void
on_conn_closed(struct httpsrv_conn *hc)
{
    struct tconn *c = tconn_of(hc);

    c->t->closed++;
    if (c->t->keep) {
        c->kept_next = c->t->kept;
        c->t->kept = c;
        return;
    }
    free(c);
}

/* Tag 1: the response closes the connection. */
static void
on_written(struct httpsrv_conn *hc, unsigned close_after)
{
    if (close_after) {
        hc->writing = false;
        httpsrv_conn_linger(hc);
        return;
    }
    httpsrv_conn_next(hc);
    on_input(hc);
}

static void
respond(struct httpsrv_conn *hc, int status, const char *body, bool close_after)
{
    struct buf out = BUF_INIT;
    size_t len;

    httpsrv_head(hc, &out, status, "text/plain", (int64_t)strlen(body), NULL, close_after);
    buf_puts(&out, body);
    len = out.len;
    httpsrv_conn_write(hc, buf_steal(&out), len, true, close_after);
}

static void
on_input(struct httpsrv_conn *hc)
{
    while (!hc->closing && !hc->writing && !hc->lingering && hc->rlen > 0) {
        int rc = httpsrv_conn_parse(hc);

        if (rc == HTTPSRV_PAUSED && hc->request_done)
            respond(hc, 200, buf_str(&hc->url), !http_should_keep_alive(&hc->parser));
        else if (rc != 0)
            respond(hc, rc, "refused", true);
    }
    httpsrv_conn_reads(hc);
}

static const struct httpsrv_limits limits = {
    .name = "test",
    .max_head = 64,
    .max_conns = 1,
    .backlog = 8,
    .idle_ms = 60000,
    .linger_ms = 60000,
    .read_buf = 256,
    .read_ahead = false,
};

static const struct httpsrv_hooks hooks = {
    .conn_new = on_conn_new,
    .input = on_input,
    .written = on_written,
    .conn_closing = on_conn_closing,
    .conn_closed = on_conn_closed,
};

static void
on_done(void *arg)
{
    ((struct tserver *)arg)->done++;
}

/* ---- the client (a thread) --------------------------------------------------------------- */

struct client {
    int port;
    uv_async_t finished;
    /* What it saw. */
    char pipelined[1024]; /* both answers on connection A, up to its EOF */
    int a_eof;
    int b_first_ok, c_bytes, d_ok;
    char b_refused[512];
    int b_eof;
};

static int
client_connect(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 20};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void
send_all(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;

    while (off < len) {
        ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);

        if (n <= 0)
            return;
        off += (size_t)n;
    }
}

/* Reads into out until it holds want complete responses (heads ending in an empty line, bodies
 * counted by Content-Length; want 0: until EOF), EOF (*eof set), an error or a full out;
 * returns the bytes read. */
static size_t
read_responses(int fd, char *out, size_t cap, int want, int *eof)
{
    size_t len = 0;

    out[0] = '\0';
    for (;;) {
        const char *p = out;
        int complete = 0;
        ssize_t n;

        while (complete < want) {
            const char *end = strstr(p, "\r\n\r\n");
            const char *cl = strstr(p, "Content-Length: ");
            long body;

            if (end == NULL || cl == NULL || cl > end)
                break;
            body = strtol(cl + 16, NULL, 10);
            if ((size_t)(end + 4 + body - out) > len)
                break;
            p = end + 4 + body;
            complete++;
        }
        if (complete == want && want > 0)
            return len;
        if (len + 1 >= cap)
            return len;
        n = recv(fd, out + len, cap - 1 - len, 0);
        if (n <= 0) {
            if (n == 0 && eof != NULL)
                *eof = 1;
            return len;
        }
        len += (size_t)n;
        out[len] = '\0';
    }
}

static void
client_main(void *arg)
{
    struct client *cl = arg;
    char buf[1024];
    int a, b, c, d, eof = 0;

    /* A: two requests in one write, the second HTTP/1.0 without keep-alive. */
    a = client_connect(cl->port);
    send_all(a, "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.0\r\n\r\n");
    read_responses(a, cl->pipelined, sizeof cl->pipelined, 0, &cl->a_eof);
    close(a);
    /* B: served and kept open; C, past the cap, is closed without an answer. */
    b = client_connect(cl->port);
    send_all(b, "GET /b HTTP/1.1\r\n\r\n");
    read_responses(b, buf, sizeof buf, 1, NULL);
    cl->b_first_ok = strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(buf, "\r\n\r\n/b");
    c = client_connect(cl->port);
    if (c >= 0) {
        ssize_t n = recv(c, buf, sizeof buf, 0);

        cl->c_bytes = n > 0 ? (int)n : 0;
        close(c);
    }
    /* B: a head over 64 bytes is refused, then FIN: B lingers, open on our side. */
    send_all(b, "GET /b HTTP/1.1\r\nX-Long: 0123456789012345678901234567890123456789\r\n\r\n");
    read_responses(b, cl->b_refused, sizeof cl->b_refused, 0, &cl->b_eof);
    /* D: served while B lingers (it no longer counts against the cap). */
    d = client_connect(cl->port);
    send_all(d, "GET /d HTTP/1.1\r\n\r\n");
    read_responses(d, buf, sizeof buf, 1, &eof);
    cl->d_ok = strstr(buf, "HTTP/1.1 200 OK\r\n") == buf && strstr(buf, "\r\n\r\n/d") != NULL;
    close(d);
    close(b);
    uv_async_send(&cl->finished);
}

static void
on_finished(uv_async_t *a)
{
    struct tserver *t = a->data;

    uv_close((uv_handle_t *)a, NULL);
    httpsrv_close(&t->srv, on_done, t);
}

/* Runs the client against t, listening on 127.0.0.1, until the server is closed. */
static void
run_client(uv_loop_t *loop, struct tserver *t, struct client *cl)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct err e = {0};
    uv_thread_t th;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    httpsrv_init(&t->srv, loop, &limits, &hooks, t);
    if (httpsrv_listen(&t->srv, (struct sockaddr *)&sin, "127.0.0.1:0", &e) < 0)
        test_fail(__FILE__, __LINE__, "listen: %s", e.msg);
    cl->port = t->srv.port;
    ASSERT(cl->port > 0);
    ASSERT_OK(uv_async_init(loop, &cl->finished, on_finished));
    cl->finished.data = t;
    ASSERT_OK(uv_thread_create(&th, client_main, cl));
    uv_run(loop, UV_RUN_DEFAULT);
    uv_thread_join(&th);
}

/* ---- cases ------------------------------------------------------------------------------- */

TEST(requests_cap_and_linger)
{
    uv_loop_t loop;
    struct tserver t = {0};
    struct client cl = {0};
    const char *second;

    ASSERT_OK(uv_loop_init(&loop));
    run_client(&loop, &t, &cl);
    /* Pipelined: answered in order, the second closing the connection. */
    ASSERT(strncmp(cl.pipelined, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ASSERT_STR_CONTAINS(cl.pipelined, "Content-Length: 6\r\nCache-Control: no-store\r\n\r\n/first");
    second = strstr(cl.pipelined, "/firstHTTP/1.1 200 OK\r\n");
    ASSERT(second != NULL);
    ASSERT_STR_CONTAINS(second, "Connection: close\r\n\r\n/second");
    ASSERT(strstr(cl.pipelined, "/second") + 7 == cl.pipelined + strlen(cl.pipelined));
    ASSERT_EQ(cl.a_eof, 1);
    /* The cap: C got nothing; B's long head: 431 and FIN; D served while B lingered. */
    ASSERT(cl.b_first_ok);
    ASSERT_EQ(cl.c_bytes, 0);
    ASSERT(strncmp(cl.b_refused, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);
    ASSERT_STR_CONTAINS(cl.b_refused, "Connection: close\r\n");
    ASSERT_EQ(cl.b_eof, 1);
    ASSERT(cl.d_ok);
    /* A, B, C, D: each hook once per connection. */
    ASSERT_EQ(t.accepted, 4);
    ASSERT_EQ(t.closing, 4);
    ASSERT_EQ(t.closed, 4);
    ASSERT_EQ(t.done, 1);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST(connection_kept_past_its_handles)
{
    uv_loop_t loop;
    struct tserver t = {.keep = true};
    struct client cl = {0};
    int kept = 0;

    ASSERT_OK(uv_loop_init(&loop));
    run_client(&loop, &t, &cl);
    ASSERT(cl.d_ok);
    ASSERT_EQ(t.done, 1);
    /* The server is done, its users' connections are still theirs: closed, buffer gone. */
    while (t.kept != NULL) {
        struct tconn *c = t.kept;

        ASSERT(c->http.closing);
        ASSERT(c->http.rbuf == NULL);
        ASSERT_EQ(c->http.open_handles, 0);
        t.kept = c->kept_next;
        free(c);
        kept++;
    }
    ASSERT_EQ(kept, 4);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST(listeners)
{
    uv_loop_t loop;
    struct tserver t = {0};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct sockaddr_in other = {.sin_family = AF_INET};
    struct httpsrv_listener *l;
    struct err e = {0};
    int n = 0, port, rc;

    ASSERT_OK(uv_loop_init(&loop));
    /* No listener: done at once. */
    httpsrv_init(&t.srv, &loop, &limits, &hooks, &t);
    httpsrv_close(&t.srv, on_done, &t);
    ASSERT_EQ(t.done, 1);

    t.done = 0;
    httpsrv_init(&t.srv, &loop, &limits, &hooks, &t);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_OK(httpsrv_listen(&t.srv, (struct sockaddr *)&sin, "127.0.0.1:0", &e));
    port = t.srv.port;
    ASSERT(port > 0);
    /* The same address again (port 0: the server's): nothing new. */
    ASSERT_OK(httpsrv_listen(&t.srv, (struct sockaddr *)&sin, "127.0.0.1:0", &e));
    /* Another address: the same port. */
    rc = httpsrv_listen(&t.srv, (struct sockaddr *)&sin6, "[::1]:0", &e);
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
        other.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1); /* 127.0.0.2: no IPv6 here */
        ASSERT_OK(httpsrv_listen(&t.srv, (struct sockaddr *)&other, "127.0.0.2:0", &e));
    } else {
        ASSERT_OK(rc);
    }
    ASSERT_EQ(t.srv.port, port);
    for (l = t.srv.listeners; l != NULL; l = l->next) {
        struct sockaddr_storage ss;
        int len = sizeof ss;

        ASSERT_OK(uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len));
        ASSERT_EQ(ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                : ((struct sockaddr_in6 *)&ss)->sin6_port),
                  port);
        n++;
    }
    ASSERT_EQ(n, 2);
    httpsrv_close(&t.srv, on_done, &t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(t.done, 1);

    /* A port in use: refused, the address in the message, nothing left on the loop. */
    {
        struct tserver t2 = {0};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        socklen_t slen = sizeof sin;

        sin.sin_port = 0;
        ASSERT_OK(bind(fd, (struct sockaddr *)&sin, sizeof sin));
        ASSERT_OK(listen(fd, 1));
        ASSERT_OK(getsockname(fd, (struct sockaddr *)&sin, &slen));
        httpsrv_init(&t2.srv, &loop, &limits, &hooks, &t2);
        ASSERT_EQ(httpsrv_listen(&t2.srv, (struct sockaddr *)&sin, "127.0.0.1:busy", &e),
                  -EADDRINUSE);
        ASSERT_STR_CONTAINS(e.msg, "listen on 127.0.0.1:busy: ");
        ASSERT(t2.srv.listeners == NULL);
        httpsrv_close(&t2.srv, on_done, &t2);
        ASSERT_EQ(t2.done, 1);
        close(fd);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}
