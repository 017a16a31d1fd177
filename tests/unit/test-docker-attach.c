/* test-docker-attach.c: the attach stream against hostile, odd peers (tests/servers/fake-dockerd.py
 * on a unix socket; no Docker needed): frames split into single bytes, an unknown frame type, a
 * truncated frame, an oversized frame header, a daemon error frame, a non-HTTP reply, a 1 MiB
 * stdin round trip through an echoing peer (partial writes and EAGAIN), and closing the stream
 * from inside its own output callback. Every case ends with uv_loop_close() == 0. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "docker.h"
#include "harness.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

static pid_t fake_pid;

struct fx {
    uv_loop_t loop;
    struct httpc *http;
    struct docker *d;
};

static void
setup(struct fx *f)
{
    int fds[2];
    char line[16] = {0}, host[300], sock[256];
    struct err e;

    snprintf(sock, sizeof sock, "%s/fake.sock", test_tmpdir());
    ASSERT(pipe(fds) == 0);
    fake_pid = fork();
    ASSERT(fake_pid >= 0);
    if (fake_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", RUNNERD_SERVERS_DIR "/fake-dockerd.py", sock,
               (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    for (size_t n = 0; n < sizeof line - 1 && read(fds[0], line + n, 1) == 1; n++)
        if (line[n] == '\n')
            break;
    close(fds[0]);
    ASSERT_STR_CONTAINS(line, "ready");
    snprintf(host, sizeof host, "unix://%s", sock);
    uv_loop_init(&f->loop);
    f->http = httpc_new(&f->loop);
    ASSERT_OK(docker_new(f->http, &(struct docker_config){.host = host, .api_version = "1.41"},
                         &f->d, &e));
}

static void
teardown(struct fx *f)
{
    docker_free(f->d);
    httpc_close(f->http, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&f->loop), 0);
    kill(fake_pid, SIGKILL);
    waitpid(fake_pid, NULL, 0);
}

struct st {
    bool ready, ended;
    int end_rc, outputs, ends;
    char msg[256];
    struct buf out, err;
    bool close_in_output;
    struct docker_attach *a;
};

static void
on_ready(struct docker_attach *a, void *arg)
{
    struct st *s = arg;

    (void)a;
    s->ready = true;
}

static void
on_output(struct docker_attach *a, int stream, const char *p, size_t n, void *arg)
{
    struct st *s = arg;

    s->outputs++;
    buf_append(stream == 2 ? &s->err : &s->out, p, n);
    if (s->close_in_output) {
        docker_attach_close(a);
        s->a = NULL;
    }
}

static void
on_end(struct docker_attach *a, int rc, const struct err *e, void *arg)
{
    struct st *s = arg;

    (void)a;
    s->ended = true;
    s->ends++;
    s->end_rc = rc;
    if (e)
        snprintf(s->msg, sizeof s->msg, "%s", e->msg);
}

static const struct docker_attach_cbs cbs = {
    .on_ready = on_ready, .on_output = on_output, .on_end = on_end};

/* Attaches to "container" mode and runs until the stream ends. */
static void
run_mode(struct fx *f, const char *mode, struct st *s)
{
    struct err e;

    ASSERT_OK(docker_attach(f->d, mode, &cbs, s, &s->a, &e));
    while (!s->ended)
        uv_run(&f->loop, UV_RUN_ONCE);
    ASSERT_EQ(s->ends, 1);
    docker_attach_close(s->a);
}

static void
st_free(struct st *s)
{
    buf_free(&s->out);
    buf_free(&s->err);
}

TEST(split_frames)
{
    struct fx f;
    struct st s = {0};

    setup(&f);
    run_mode(&f, "split", &s);
    ASSERT(s.ready);
    ASSERT_EQ(s.end_rc, 0);
    ASSERT_STR_EQ(buf_str(&s.out), "hello world\n");
    ASSERT_STR_EQ(buf_str(&s.err), "warn");
    ASSERT_EQ(s.outputs, 3);
    st_free(&s);
    teardown(&f);
}

TEST(bad_peers)
{
    static const struct {
        const char *mode;
        int rc;
        const char *msg;
    } cases[] = {
        {"badtype", ERR_PROTO, "attach container badtype: bad stream frame type 7"},
        {"trunc", ERR_PROTO, "attach container trunc: stream ended inside a frame"},
        {"huge", ERR_PROTO, "attach container huge: stream frame too large"},
        {"syserr", -EIO, "attach container syserr: daemon error: boom"},
        {"garbage", ERR_PROTO, "attach container garbage: bad status line"},
    };
    struct fx f;

    setup(&f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct st s = {0};

        run_mode(&f, cases[i].mode, &s);
        ASSERT_EQ(s.end_rc, cases[i].rc);
        ASSERT_STR_EQ(s.msg, cases[i].msg);
        if (strcmp(cases[i].mode, "badtype") == 0)
            ASSERT_STR_EQ(buf_str(&s.out), "ok\n"); /* frames before the bad one arrive */
        st_free(&s);
    }
    teardown(&f);
}

TEST(stdin_round_trip_1mib)
{
    enum { N = 1024 * 1024 };
    struct fx f;
    struct st s = {0};
    struct err e;
    char *data = xmalloc(N);

    for (size_t i = 0; i < N; i++)
        data[i] = (char)('a' + i % 26);
    setup(&f);
    ASSERT_OK(docker_attach(f.d, "echo", &cbs, &s, &s.a, &e));
    ASSERT_OK(docker_attach_write(s.a, data, N / 2));
    ASSERT_OK(docker_attach_write(s.a, data + N / 2, N - N / 2));
    docker_attach_close_stdin(s.a);
    while (!s.ended)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT_EQ(s.end_rc, 0);
    ASSERT_EQ(s.out.len, N);
    ASSERT(memcmp(s.out.data, data, N) == 0);
    ASSERT_EQ(docker_attach_pending(s.a), 0);
    ASSERT_EQ(docker_attach_write(s.a, "x", 1), -EPIPE);
    docker_attach_close(s.a);
    free(data);
    st_free(&s);
    teardown(&f);
}

TEST(close_inside_output_callback)
{
    struct fx f;
    struct st s = {0};
    struct err e;

    setup(&f);
    s.close_in_output = true;
    ASSERT_OK(docker_attach(f.d, "split", &cbs, &s, &s.a, &e));
    while (s.a != NULL && !s.ended)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT_EQ(s.outputs, 1);
    ASSERT_EQ(s.ends, 0); /* nothing after close */
    ASSERT_STR_EQ(buf_str(&s.out), "hello ");
    st_free(&s);
    teardown(&f);
}

TEST(close_while_connecting)
{
    struct fx f;
    struct st s = {0};
    struct err e;

    setup(&f);
    ASSERT_OK(docker_attach(f.d, "split", &cbs, &s, &s.a, &e));
    docker_attach_close(s.a);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    ASSERT_EQ(s.outputs, 0);
    ASSERT_EQ(s.ends, 0);
    teardown(&f);
}
