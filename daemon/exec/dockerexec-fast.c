/* dockerexec-fast.c: the docker executor's fast channel for the agent's output
 * (doc/docker-engine.md §6c, proto/agent-protocol.md §1). With a local engine (a unix socket)
 * the host listens on a unix socket in a fresh directory of its own, bind-mounted read-only
 * into the job container at DOCKEREXEC_FAST_DIR; the agent connects to it as it starts, before
 * it reads any host message (so before any step runs), and then writes its frames there
 * instead of to stdout. The host accepts exactly one connection, then closes its listener and
 * removes the socket and the directory, so nothing in the container can connect later or
 * speak for the agent. Host messages still go over the attach stream, which stays open (the
 * agent's stderr, stdin's EOF); reattaching (a lost stream, a restarted runnerd) uses the
 * attach stream only. Anything else falls back to the attach stream with a line saying why: a
 * remote engine, RUNNERD_AGENT_CHANNEL=attach, no private run directory, or an agent that
 * could not connect (a user namespace, SELinux, an engine that sees other paths): its first
 * bytes then arrive on the attach stream. */
#include "dockerexec-int.h"

#include "agentconn.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_CHUNK (256u << 10)
#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)NULL)->sun_path)

/* The channel's handles live on their own (freed in the last close callback), so that the
 * executor can be freed before libuv has closed them. */
struct dockerexec_fast {
    struct docker_exec *dx; /* NULL once the executor let go */
    uv_pipe_t listener, conn;
    bool listening, connected; /* the handle is open */
    int open;                  /* handles not yet closed by libuv */
    char *dir, *path;          /* removed once connected, or at close */
    char buf[READ_CHUNK];
};

static char *run_dir_override;

/* dockerexec.h */
void
dockerexec_set_run_dir(const char *dir)
{
    free(run_dir_override);
    run_dir_override = dir ? xstrdup(dir) : NULL;
}

/* Returns a new string: where the per-job directories go. */
static char *
run_dir(void)
{
    const char *x = getenv("XDG_RUNTIME_DIR");

    if (run_dir_override)
        return xstrdup(run_dir_override);
    if (x && x[0] == '/')
        return xasprintf("%s/runnerd", x);
    return xasprintf("/tmp/runnerd-%ld", (long)geteuid());
}

/* The run directory exists, is ours and no one else's (0700): others on the host cannot reach
 * the sockets in it, nor put something in our way. 0, or <0 with e. */
static int
run_dir_check(const char *dir, struct err *e)
{
    struct stat st;

    if (dir[0] != '/') /* the engine reads a bind's source as an absolute path */
        return err_set(e, -EINVAL, "%s: not an absolute path", dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_set(e, -errno, "%s: %s", dir, strerror(errno));
    if (lstat(dir, &st) < 0)
        return err_set(e, -errno, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0)
        return err_set(e, -EPERM, "%s is not a directory of this user's alone (mode 0700)", dir);
    /* The bind is "SRC:DST:ro"; a socket's path has a short limit (and libuv may truncate a
     * longer one rather than refuse it). */
    if (strchr(dir, ':') || strchr(dir, ',') ||
        strlen(dir) + sizeof("/jXXXXXX/" DOCKEREXEC_FAST_SOCK) > SUN_PATH_MAX)
        return err_set(e, -ENAMETOOLONG,
                       "%s: the path is too long for a socket or holds ':' or ','", dir);
    return 0;
}

/* Is the engine on this host, reached through a unix socket? */
static bool
engine_local(const struct docker_exec *dx)
{
    const char *h = docker_host(dx->d);

    return h && strncmp(h, "unix://", 7) == 0;
}

/* One of the channel's handles is closed; the last one frees it. */
static void
on_handle_closed(uv_handle_t *h)
{
    struct dockerexec_fast *f = h->data;

    if (--f->open == 0) {
        free(f->dir);
        free(f->path);
        free(f);
    }
}

/* Removes the socket and its directory (the container keeps its mount of the directory, now
 * empty and deleted: nothing can be made in it). */
static void
remove_files(struct dockerexec_fast *f)
{
    if (f->path && unlink(f->path) < 0 && errno != ENOENT)
        log_warn("fast channel: %s: %s", f->path, strerror(errno));
    if (f->dir && rmdir(f->dir) < 0 && errno != ENOENT)
        log_warn("fast channel: %s: %s", f->dir, strerror(errno));
    free(f->path);
    free(f->dir);
    f->path = f->dir = NULL;
}

/* No more connections: the listener closed, the socket and directory removed. */
static void
stop_listening(struct dockerexec_fast *f)
{
    if (f->listening) {
        f->listening = false;
        uv_close((uv_handle_t *)&f->listener, on_handle_closed);
    }
    remove_files(f);
}

/* The channel ended while the job runs: the agent is gone (it closes it only by exiting). */
static void
lost(struct docker_exec *dx, const char *why)
{
    struct err e = {0};

    if (dx->closing || dx->lost_told)
        return;
    dx->lost_told = true;
    err_set(&e, ERR_PROTO, "the agent's channel ended: %s", why);
    if (!dx->ready) {
        dockerexec_fail(dx, &e);
        return;
    }
    struct agentconn_event ev = {.kind = AGENTCONN_PROTO_ERROR, .err = &e};
    dx->x.cbs->on_event(dx->x.arg, &ev);
}

/* Reads go to the channel's own buffer (one read at a time). */
static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct dockerexec_fast *f = h->data;

    (void)hint;
    *b = uv_buf_init(f->buf, sizeof f->buf);
}

/* The agent's frames, to its connection as the attach stream's would go. */
static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct dockerexec_fast *f = s->data;
    struct docker_exec *dx = f->dx;

    (void)b;
    if (dx == NULL || n == 0)
        return;
    if (n < 0) {
        uv_read_stop(s);
        lost(dx, n == UV_EOF ? "end of stream" : uv_strerror((int)n));
        return;
    }
    if (dx->x.conn && !dx->closing)
        agentconn_feed(dx->x.conn, f->buf, (size_t)n);
}

/* The agent connected: accept it, and nobody after it. */
static void
on_connection(uv_stream_t *s, int status)
{
    struct dockerexec_fast *f = s->data;
    struct docker_exec *dx = f->dx;
    int rc;

    if (dx == NULL || !f->listening || dx->chan != DOCKEREXEC_CHAN_WAITING)
        return;
    if (status < 0) {
        log_warn("job %s: fast channel: %s", dx->name, uv_strerror(status));
        return;
    }
    uv_pipe_init(dx->x.loop, &f->conn, 0);
    f->conn.data = f;
    f->open++;
    f->connected = true;
    rc = uv_accept(s, (uv_stream_t *)&f->conn);
    /* One connection, the first: the agent's, made before anything else in the container ran.
     * Nobody can connect after it. */
    stop_listening(f);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&f->conn, on_alloc, on_read);
    if (rc < 0) {
        dockerexec_say(dx, "fast channel: %s", uv_strerror(rc));
        lost(dx, uv_strerror(rc));
        return;
    }
    dx->chan = DOCKEREXEC_CHAN_FAST;
    log_trace("fast channel: the agent connected");
    dockerexec_say(dx, "the agent's output comes over a unix socket (the fast channel)");
}

/* Why not: NULL if the fast channel may be tried, else a reason (static). */
static const char *
why_not(const struct docker_exec *dx)
{
    const char *c = getenv("RUNNERD_AGENT_CHANNEL");

    if (c && strcmp(c, "attach") == 0)
        return "RUNNERD_AGENT_CHANNEL=attach";
    if (!engine_local(dx))
        return "the Docker engine is not on a local unix socket";
    return NULL;
}

/* dockerexec-int.h. runner-agent as a read-only bind rather than in the upload: the copy is
 * most of the archive's bytes and the engine unpacks it into the container's layer before the
 * start (about 50 ms of a job's start, bench/README.md job-start). The bind cannot be written
 * (a read-only mount; remounting it needs CAP_SYS_ADMIN, which no job container gets unless
 * it is privileged, and a privileged container owns the host anyway). The bind is a mount of
 * type bind, which the engine refuses at the create when the path is missing on its host (the
 * host side in a container of its own): the container is then created again with the copy
 * (dockerexec-create.c). A path the bind syntax cannot carry (':' or ',') keeps the copy. */
void
dockerexec_agent_bind(struct docker_exec *dx)
{
    char *real;

    if (why_not(dx) != NULL || dx->agent_path == NULL)
        return;
    real = realpath(dx->agent_path, NULL);
    if (real == NULL || strchr(real, ':') || strchr(real, ',')) {
        free(real);
        return;
    }
    dx->agent_bind = real;
}

/* Before the job container is created: listens on a new socket in a new directory, or says
 * why not (dockerexec-int.h). */
bool
dockerexec_fast_listen(struct docker_exec *dx)
{
    struct dockerexec_fast *f = NULL;
    const char *c = getenv("RUNNERD_AGENT_CHANNEL"), *why = why_not(dx);
    char *dir = NULL;
    struct err e = {0};
    int rc;

    dx->chan = DOCKEREXEC_CHAN_ATTACH;
    if (c && *c && strcmp(c, "attach") != 0 && strcmp(c, "auto") != 0)
        log_warn("RUNNERD_AGENT_CHANNEL=%s: expected attach or auto; using auto", c);
    if (why) {
        dockerexec_say(dx, "the agent's output comes over the attach stream (%s)", why);
        return false;
    }
    dir = run_dir();
    if (run_dir_check(dir, &e) < 0)
        goto fail;
    f = xcalloc(1, sizeof *f);
    f->dir = xasprintf("%s/jXXXXXX", dir);
    if (mkdtemp(f->dir) == NULL) {
        err_set(&e, -errno, "%s: %s", f->dir, strerror(errno));
        free(f->dir);
        f->dir = NULL;
        goto fail;
    }
    f->path = xasprintf("%s/" DOCKEREXEC_FAST_SOCK, f->dir);
    /* The run directory above is private; inside the container, the agent may run as another
     * user (container.options --user, a user namespace): it may pass and connect. */
    uv_pipe_init(dx->x.loop, &f->listener, 0);
    f->listener.data = f;
    f->open++;
    f->listening = true;
    rc = chmod(f->dir, 0711) < 0 ? -errno : 0;
    if (rc == 0)
        rc = uv_pipe_bind(&f->listener, f->path);
    if (rc == 0)
        rc = chmod(f->path, 0666) < 0 ? -errno : 0;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&f->listener, 1, on_connection);
    if (rc < 0) {
        err_set(&e, rc, "%s: %s", f->path, uv_strerror(rc));
        goto fail;
    }
    f->dx = dx;
    dx->fast = f;
    dx->chan = DOCKEREXEC_CHAN_WAITING;
    free(dir);
    return true;
fail:
    dockerexec_say(dx, "the agent's output comes over the attach stream (no fast channel: %s)",
                   e.msg);
    if (f) {
        stop_listening(f);
        if (f->open == 0)
            free(f);
    }
    free(dir);
    return false;
}

/* The bind of the channel's directory for the job container (a new string), or NULL. */
char *
dockerexec_fast_bind(const struct docker_exec *dx)
{
    if (dx->fast == NULL || dx->fast->dir == NULL)
        return NULL;
    return xasprintf("%s:" DOCKEREXEC_FAST_DIR ":ro", dx->fast->dir);
}

/* The agent's stdout on the attach stream: feed it (true) or not (dockerexec-int.h). */
bool
dockerexec_fast_attach_output(struct docker_exec *dx, size_t n)
{
    switch (dx->chan) {
    case DOCKEREXEC_CHAN_WAITING:
        /* The agent writes on stdout: it could not connect, and its stderr says why. */
        dockerexec_say(dx, "the agent did not connect to the fast channel; its output comes "
                           "over the attach stream");
        dockerexec_fast_close(dx);
        return true;
    case DOCKEREXEC_CHAN_FAST:
        /* Not the agent's frames (they come over the channel): nothing else should write
         * there. Dropped, so that nothing is believed twice or out of order. */
        if (!dx->fast_stray)
            log_warn("job %s: %zu bytes on the job container's stdout dropped (the agent uses "
                     "the fast channel)", dx->name, n);
        dx->fast_stray = true;
        return false;
    default:
        return true;
    }
}

/* Closes the channel and removes its files (dockerexec-int.h). */
void
dockerexec_fast_close(struct docker_exec *dx)
{
    struct dockerexec_fast *f = dx->fast;

    dx->chan = DOCKEREXEC_CHAN_ATTACH;
    if (f == NULL)
        return;
    dx->fast = NULL;
    f->dx = NULL;
    stop_listening(f);
    if (f->connected) {
        f->connected = false;
        uv_close((uv_handle_t *)&f->conn, on_handle_closed);
    }
    if (f->open == 0)
        free(f);
}
