/* hostexec.c: runner-agent as a host child process over three libuv pipes. */
#include "hostexec.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct hostexec {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    struct agentconn *conn;
    void (*on_exit)(struct hostexec *hx, int64_t status, int term_signal, void *arg);
    void (*on_stderr)(struct hostexec *hx, const char *data, size_t len, void *arg);
    void *arg;
    int pid;
    bool exited;
    bool reading;
    bool closing;
    int pending; /* handles not yet closed */
    void (*done)(void *arg);
    void *done_arg;
};

struct write_req {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
};

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = xmalloc(65536);
    buf->len = 65536;
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct hostexec *hx = h->data;

    if (--hx->pending > 0)
        return;
    if (hx->done != NULL)
        hx->done(hx->done_arg);
    free(hx);
}

static void
close_handle(struct hostexec *hx, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        hx->pending++;
        uv_close(h, on_handle_closed);
    }
}

static void
on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    struct hostexec *hx = p->data;

    hx->exited = true;
    hx->pid = 0;
    if (hx->closing) {
        /* hostexec_close() already counted this handle in pending. */
        uv_close((uv_handle_t *)&hx->proc, on_handle_closed);
        return;
    }
    if (hx->on_exit != NULL)
        hx->on_exit(hx, status, term_signal, hx->arg);
}

static void
on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct hostexec *hx = s->data;

    if (n > 0 && hx->conn != NULL && !hx->closing) {
        if (agentconn_feed(hx->conn, buf->base, (size_t)n) < 0)
            abort(); /* only -ENOMEM */
    } else if (n < 0) {
        uv_read_stop(s);
        hx->reading = false;
    }
    free(buf->base);
}

static void
on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct hostexec *hx = s->data;

    if (n > 0 && !hx->closing) {
        if (hx->on_stderr != NULL) {
            hx->on_stderr(hx, buf->base, (size_t)n, hx->arg);
        } else {
            size_t len = (size_t)n;
            char *esc;
            while (len > 0 && buf->base[len - 1] == '\n')
                len--;
            esc = log_escape(buf->base, len);
            log_notice("agent pid=%d: %s", hx->pid, esc);
            free(esc);
        }
    } else if (n < 0) {
        uv_read_stop(s);
    }
    free(buf->base);
}

int
hostexec_start(uv_loop_t *loop, const struct hostexec_opts *o, struct hostexec **out,
               struct err *e)
{
    struct hostexec *hx = xcalloc(1, sizeof(*hx));
    uv_process_options_t po;
    uv_stdio_container_t stdio[3];
    struct sigaction old_pipe;
    size_t nargs = 0;
    char **argv;
    int rc;

    /* A write to an agent that has exited must be EPIPE, not the end of this process. Only
     * the default disposition is replaced; a handler the program installed stays. */
    if (sigaction(SIGPIPE, NULL, &old_pipe) == 0 && old_pipe.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    hx->loop = loop;
    hx->on_exit = o->on_exit;
    hx->on_stderr = o->on_stderr;
    hx->arg = o->arg;
    while (o->args != NULL && o->args[nargs] != NULL)
        nargs++;
    argv = xcalloc(nargs + 2, sizeof(*argv));
    /* uv_process_options_t takes char **; libuv only reads them. */
    memcpy(&argv[0], &o->agent_path, sizeof(char *));
    if (nargs > 0)
        memcpy(&argv[1], o->args, nargs * sizeof(char *));
    uv_pipe_init(loop, &hx->in, 0);
    uv_pipe_init(loop, &hx->out, 0);
    uv_pipe_init(loop, &hx->err, 0);
    hx->proc.data = hx->in.data = hx->out.data = hx->err.data = hx;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&hx->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&hx->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&hx->err;
    memset(&po, 0, sizeof(po));
    po.file = o->agent_path;
    po.args = argv;
    memcpy(&po.env, &o->env, sizeof(po.env));
    po.cwd = o->cwd;
    po.stdio = stdio;
    po.stdio_count = 3;
    po.exit_cb = on_exit_cb;
    rc = uv_spawn(loop, &hx->proc, &po);
    free(argv);
    if (rc < 0) {
        err_set(e, rc, "cannot start %s: %s", o->agent_path, uv_strerror(rc));
        /* The process handle is initialised even on failure; close everything. */
        hx->closing = true;
        hx->exited = true;
        close_handle(hx, (uv_handle_t *)&hx->proc);
        close_handle(hx, (uv_handle_t *)&hx->in);
        close_handle(hx, (uv_handle_t *)&hx->out);
        close_handle(hx, (uv_handle_t *)&hx->err);
        return rc;
    }
    hx->pid = hx->proc.pid;
    uv_read_start((uv_stream_t *)&hx->out, on_alloc, on_out_read);
    uv_read_start((uv_stream_t *)&hx->err, on_alloc, on_err_read);
    hx->reading = true;
    *out = hx;
    return 0;
}

void
hostexec_attach(struct hostexec *hx, struct agentconn *c)
{
    hx->conn = c;
}

static void
on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;

    (void)status; /* a dead agent shows up as an exit, not here */
    free(w);
}

int
hostexec_write(void *arg, const void *data, size_t len)
{
    struct hostexec *hx = arg;
    struct write_req *w;
    int rc;

    if (hx->closing || uv_is_closing((uv_handle_t *)&hx->in))
        return -EPIPE;
    w = xmalloc(sizeof(*w) + len);
    memcpy(w->data, data, len);
    w->buf = uv_buf_init(w->data, (unsigned)len);
    rc = uv_write(&w->req, (uv_stream_t *)&hx->in, &w->buf, 1, on_written);
    if (rc < 0) {
        free(w);
        return rc;
    }
    return 0;
}

void
hostexec_read_stop(struct hostexec *hx)
{
    if (hx->reading)
        uv_read_stop((uv_stream_t *)&hx->out);
    hx->reading = false;
}

int
hostexec_read_start(struct hostexec *hx)
{
    int rc;

    if (hx->reading || hx->closing)
        return 0;
    rc = uv_read_start((uv_stream_t *)&hx->out, on_alloc, on_out_read);
    if (rc == 0)
        hx->reading = true;
    return rc;
}

int
hostexec_pid(const struct hostexec *hx)
{
    return hx->exited ? 0 : hx->pid;
}

void
hostexec_close(struct hostexec *hx, void (*done)(void *arg), void *arg)
{
    hx->closing = true;
    hx->conn = NULL;
    hx->done = done;
    hx->done_arg = arg;
    close_handle(hx, (uv_handle_t *)&hx->in);
    close_handle(hx, (uv_handle_t *)&hx->out);
    close_handle(hx, (uv_handle_t *)&hx->err);
    if (hx->exited) {
        close_handle(hx, (uv_handle_t *)&hx->proc);
    } else {
        /* The process handle closes in on_exit_cb, once the agent is reaped. */
        hx->pending++;
        uv_process_kill(&hx->proc, SIGKILL);
    }
}
