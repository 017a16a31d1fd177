/* runner-agent.c: the static in-container agent (proto/agent-protocol.md).
 *
 * Reads host messages on stdin, writes journaled frames on stdout, diagnostics on stderr.
 * One poll(2) loop: stdin, stdout (when there is something to send), the running step's
 * stdout/stderr pipes, and a self-pipe fed by the signal handler. As PID 1 (or a child
 * subreaper on a host) it reaps every orphan and forwards SIGTERM/SIGINT to the running step.
 *
 * Every outgoing frame is appended to the journal file first and sent from there, so a RESUME
 * can replay any range the host has not acknowledged. libc and proto/agentp.c only.
 *
 * `runner-agent --hash-files ROOT [--follow-symbolic-links] PATTERN...` is a separate one-shot
 * mode: hashFiles() computed inside the container exactly as the host's daemon/job/hashfiles.c does
 * (lib/globmatch.c for the patterns, lib/sha256.c for the digests); no journal, no
 * protocol. */
#include "agentp.h"
#include "hashwalk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RUNNERD_VERSION
#define RUNNERD_VERSION "0"
#endif

#define AGENT_NAME "runner-agent " RUNNERD_VERSION
#define IO_CHUNK AGENTP_CHUNK_MAX
#define PEND_MAX (4u << 20)       /* frames waiting for the journal before backpressure */
#define STOP_FLUSH_NS 5000000000LL /* how long to try to send the last frames on exit */

extern char **environ;

struct step {
    bool active;
    uint32_t id;
    pid_t pid;
    int fd[2]; /* read ends: [0] stdout, [1] stderr; -1 once closed */
    bool reaped;
    int status;
    int64_t deadline;     /* timeout, ns monotonic; 0 = none */
    int64_t kill_at;      /* when to send SIGKILL; 0 = not scheduled */
    uint32_t grace_ms;    /* grace after the timeout */
    bool term_sent;
    bool timed_out, cancelled;
    char *files[AGENTP_NFILES]; /* env-file paths from the RUN env, NULL if unset */
};

struct agent {
    const char *journal_path;
    uint64_t compact_at;  /* compact when this many acked bytes lead the file */
    uint64_t max_unacked; /* stop reading step output past this much unacked journal */
    int sig_rd, sig_wr;
    struct agentp_dec dec;
    struct agentp_buf tmp; /* one encoded frame */
    /* The journal: file holds offsets [j_base, j_written), pend holds [j_written, j_end). */
    int jfd;
    uint64_t j_base, j_written, j_end;
    struct agentp_buf pend;
    /* Sending: bytes [.., sent) went to stdout; frame_end is the end of the frame being sent. */
    uint64_t sent, frame_end, acked;
    int64_t resume_to; /* -1, or where to continue after the current frame */
    bool out_broken, in_eof, hello_done;
    bool stopping, bye_sent;
    uint32_t stop_grace;
    int64_t stop_deadline;
    struct step step;
};

static volatile sig_atomic_t sig_fd = -1;
static uint8_t iobuf[IO_CHUNK];

/* ---------------------------------------------------------------- small helpers */

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One diagnostic line on stderr (never the protocol stream). */
static void
diag(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    fputs("runner-agent: ", stderr);
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* mkdir -p; the last component too. */
static int
mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* mkdir -p of path's parent directory. */
static int
mkdir_parent(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    char *slash;
    size_t n = strlen(path);

    if (n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    slash = strrchr(tmp, '/');
    if (slash == NULL || slash == tmp)
        return 0;
    *slash = '\0';
    return mkdir_p(tmp, mode);
}

static int
write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---------------------------------------------------------------- journal and sending */

static int
pend_append(struct agent *a, const uint8_t *p, size_t n)
{
    if (a->pend.len + n > a->pend.cap) {
        size_t cap = a->pend.cap ? a->pend.cap : 65536;
        uint8_t *nb;
        while (cap < a->pend.len + n)
            cap *= 2;
        nb = realloc(a->pend.p, cap);
        if (nb == NULL)
            return -ENOMEM;
        a->pend.p = nb;
        a->pend.cap = cap;
    }
    memcpy(a->pend.p + a->pend.len, p, n);
    a->pend.len += n;
    return 0;
}

/* Moves pending frames into the journal file; stops quietly on a write error (ENOSPC...)
 * and retries on the next loop turn. */
static void
journal_flush(struct agent *a)
{
    size_t done = 0;
    static bool warned;

    while (done < a->pend.len) {
        ssize_t w = pwrite(a->jfd, a->pend.p + done, a->pend.len - done,
                           (off_t)(a->j_written - a->j_base));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (!warned)
                diag("journal %s: %s (will retry)", a->journal_path,
                     w < 0 ? strerror(errno) : "short write");
            warned = true;
            break;
        }
        warned = false;
        done += (size_t)w;
        a->j_written += (uint64_t)w;
    }
    if (done > 0) {
        memmove(a->pend.p, a->pend.p + done, a->pend.len - done);
        a->pend.len -= done;
    }
}

/* Journals one message; it is sent from the journal by pump_out(). */
static void
emit(struct agent *a, struct agentp_msg *m)
{
    int rc;

    m->offset = a->j_end;
    a->tmp.len = 0;
    rc = agentp_encode(&a->tmp, m);
    if (rc == 0)
        rc = pend_append(a, a->tmp.p, a->tmp.len);
    if (rc < 0) {
        diag("cannot queue %s: %s", agentp_type_name(m->type), strerror(-rc));
        return;
    }
    a->j_end += a->tmp.len;
    journal_flush(a);
}

static void
emit_error(struct agent *a, uint32_t id, int ref_type, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
emit_error(struct agent *a, uint32_t id, int ref_type, int code, const char *fmt, ...)
{
    struct agentp_msg m = {.type = AGENTP_ERROR, .id = id, .ref_type = (uint32_t)ref_type,
                           .code = (uint32_t)code};
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    m.text = text;
    emit(a, &m);
}

/* Writes journaled bytes to stdout as far as it takes them without blocking. A pending
 * RESUME takes effect at a frame boundary, so the host never sees a frame cut short. */
static void
pump_out(struct agent *a)
{
    while (!a->out_broken) {
        uint8_t h[AGENTP_HDR_LEN];
        uint32_t plen;
        uint64_t off, end;
        size_t n;
        ssize_t r, w;

        if (a->sent == a->frame_end && a->resume_to >= 0) {
            a->sent = a->frame_end = (uint64_t)a->resume_to;
            a->resume_to = -1;
        }
        if (a->sent >= a->j_written)
            return;
        if (a->sent == a->frame_end) {
            r = pread(a->jfd, h, sizeof(h), (off_t)(a->sent - a->j_base));
            if (r != (ssize_t)sizeof(h) || agentp_hdr_parse(h, &plen, &off) < 0 ||
                off != a->sent) {
                diag("journal corrupt at offset %llu", (unsigned long long)a->sent);
                a->out_broken = true;
                return;
            }
            a->frame_end = a->sent + AGENTP_HDR_LEN + plen;
        }
        end = a->frame_end < a->j_written ? a->frame_end : a->j_written;
        n = end - a->sent > sizeof(iobuf) ? sizeof(iobuf) : (size_t)(end - a->sent);
        r = pread(a->jfd, iobuf, n, (off_t)(a->sent - a->j_base));
        if (r <= 0) {
            diag("journal read: %s", r < 0 ? strerror(errno) : "short");
            a->out_broken = true;
            return;
        }
        w = write(STDOUT_FILENO, iobuf, (size_t)r);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                diag("stdout: %s", strerror(errno));
                a->out_broken = true;
            }
            return;
        }
        a->sent += (uint64_t)w;
    }
}

/* Drops the acknowledged head of the journal once it is large enough: the unacked tail is
 * copied to the start of the file, which is then truncated. */
static void
maybe_compact(struct agent *a)
{
    uint64_t drop = a->acked;
    uint64_t keep, pos = 0;

    /* Keep whatever is still to be sent (pump_out reads from a->sent onward). */
    if (a->sent < drop)
        drop = a->sent;
    if (a->resume_to >= 0 && (uint64_t)a->resume_to < drop)
        drop = (uint64_t)a->resume_to;
    if (drop <= a->j_base || drop - a->j_base < a->compact_at)
        return;
    keep = a->j_written - drop;
    /* Copying the kept tail costs its size: do it only when at least as much is dropped, so
     * the copying stays proportional to the output (not quadratic in a long step's output). */
    if (keep > drop - a->j_base)
        return;
    while (pos < keep) {
        size_t n = keep - pos > sizeof(iobuf) ? sizeof(iobuf) : (size_t)(keep - pos);
        ssize_t r = pread(a->jfd, iobuf, n, (off_t)(drop - a->j_base + pos));
        if (r <= 0 || pwrite(a->jfd, iobuf, (size_t)r, (off_t)pos) != r) {
            diag("journal compaction failed: %s", strerror(errno));
            return;
        }
        pos += (uint64_t)r;
    }
    if (ftruncate(a->jfd, (off_t)keep) < 0)
        diag("journal truncate: %s", strerror(errno));
    a->j_base = drop;
}

/* ---------------------------------------------------------------- steps */

static void
step_kill(struct step *s, int sig)
{
    if (kill(-s->pid, sig) < 0 && errno == ESRCH && !s->reaped)
        kill(s->pid, sig);
}

/* TERM now and KILL after grace_ms (grace 0: KILL at once). A second stop request can only
 * bring the KILL forward. */
static void
step_stop(struct step *s, uint32_t grace_ms)
{
    int64_t t = now_ns();

    if (grace_ms == 0) {
        step_kill(s, SIGKILL);
        s->term_sent = true;
        s->kill_at = 0;
        return;
    }
    if (!s->term_sent) {
        step_kill(s, SIGTERM);
        s->term_sent = true;
        s->kill_at = t + (int64_t)grace_ms * 1000000LL;
    } else if (s->kill_at != 0 && t + (int64_t)grace_ms * 1000000LL < s->kill_at) {
        s->kill_at = t + (int64_t)grace_ms * 1000000LL;
    }
}

static const char *
env_lookup(char *const *env, size_t n, const char *name)
{
    size_t k = strlen(name);

    for (size_t i = n; i-- > 0;)
        if (strncmp(env[i], name, k) == 0 && env[i][k] == '=')
            return env[i] + k + 1;
    return NULL;
}

/* Closes every descriptor from lo up. Ours are all O_CLOEXEC already; this also drops what
 * the agent itself inherited without it (a host parent's descriptors), so that a step holds
 * nothing but its stdin, stdout and stderr: no way to write into the agent's stream. */
static void
close_from(int lo)
{
    long max = sysconf(_SC_OPEN_MAX);

#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lo, ~0u, 0u) == 0)
        return;
#endif
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = lo; fd < max; fd++)
        close(fd);
}

/* Returns the step's env with HOME and PATH added from the agent's own environment where the
 * step's names neither: Docker gives a container's first process HOME from its user's passwd
 * entry and PATH from the image or its default, and `docker run` passes both on. Without them
 * `git config --global` fails and bash keeps an unexported PATH of its own. In the child. */
static char **
child_env(const struct agentp_msg *m)
{
    static const char *const names[] = {"HOME", "PATH"};
    static const char *const fallback[] = {
        "/", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    char **env = calloc(m->envc + 3, sizeof(*env));
    size_t n = m->envc;

    if (env == NULL)
        return m->env;
    memcpy(env, m->env, m->envc * sizeof(*env));
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        if (env_lookup(m->env, m->envc, names[i]) != NULL)
            continue;
        if (v == NULL || v[0] == '\0')
            v = fallback[i];
        size_t len = strlen(names[i]) + strlen(v) + 2;
        if ((env[n] = malloc(len)) == NULL)
            return m->env;
        snprintf(env[n++], len, "%s=%s", names[i], v);
    }
    env[n] = NULL;
    return env;
}

/* In the child: never returns. */
static void
child_exec(const struct agentp_msg *m, int out_fd, int err_fd, pid_t parent)
{
    char msg[600];
    int null_fd, code;
    struct sigaction sa;

    setsid();
    /* On a host the agent can die without taking the step along: the kernel kills the
     * leader then. (In a container the agent is PID 1 and its death ends everything.) */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
        _exit(126);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0 && null_fd != STDIN_FILENO) {
        dup2(null_fd, STDIN_FILENO);
        close(null_fd);
    }
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    close_from(STDERR_FILENO + 1);
    if (m->cwd[0] != '\0' && chdir(m->cwd) < 0) {
        snprintf(msg, sizeof(msg), "runner-agent: chdir %s: %s\n", m->cwd, strerror(errno));
        write_all(STDERR_FILENO, msg, strlen(msg));
        _exit(126);
    }
    environ = child_env(m); /* execvp searches the step's own PATH */
    execvp(m->argv[0], m->argv);
    code = errno == ENOENT || errno == ENOTDIR ? 127 : 126;
    snprintf(msg, sizeof(msg), "runner-agent: %s: %s\n", m->argv[0], strerror(errno));
    write_all(STDERR_FILENO, msg, strlen(msg));
    _exit(code);
}

static void
step_clear(struct step *s)
{
    for (int i = 0; i < 2; i++)
        if (s->fd[i] >= 0)
            close(s->fd[i]);
    for (int i = 0; i < AGENTP_NFILES; i++)
        free(s->files[i]);
    memset(s, 0, sizeof(*s));
    s->fd[0] = s->fd[1] = -1;
}

/* Creates the env files empty (0666), then forks the step in its own session. */
static void
step_start(struct agent *a, const struct agentp_msg *m)
{
    struct step *s = &a->step;
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    struct agentp_msg started = {.type = AGENTP_STARTED, .id = m->id};
    pid_t pid, self;
    int rc;

    step_clear(s);
    if (m->dir[0] != '\0' && (rc = mkdir_p(m->dir, 0777)) < 0) {
        emit_error(a, m->id, AGENTP_RUN, -rc, "mkdir %s: %s", m->dir, strerror(-rc));
        return;
    }
    for (int i = 0; i < AGENTP_NFILES; i++) {
        const char *path = env_lookup(m->env, m->envc, agentp_file_vars[i]);
        int fd;
        if (path == NULL || path[0] == '\0')
            continue;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0666);
        if (fd < 0 || fchmod(fd, 0666) < 0) {
            rc = errno;
            if (fd >= 0)
                close(fd);
            emit_error(a, m->id, AGENTP_RUN, rc, "%s %s: %s", agentp_file_vars[i], path,
                       strerror(rc));
            step_clear(s);
            return;
        }
        close(fd);
        s->files[i] = strdup(path);
    }
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        rc = errno;
        goto fail;
    }
    self = getpid();
    pid = fork();
    if (pid < 0) {
        rc = errno;
        goto fail;
    }
    if (pid == 0)
        child_exec(m, out[1], err[1], self);
    /* Also set the group from here so that a kill before the child ran setsid() works. */
    setpgid(pid, pid);
    close(out[1]);
    close(err[1]);
    set_nonblock(out[0]);
    set_nonblock(err[0]);
    s->active = true;
    s->id = m->id;
    s->pid = pid;
    s->fd[0] = out[0];
    s->fd[1] = err[0];
    s->grace_ms = m->grace_ms;
    s->deadline = m->timeout_ms ? now_ns() + (int64_t)m->timeout_ms * 1000000LL : 0;
    started.pid = (uint32_t)pid;
    emit(a, &started);
    return;
fail:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    emit_error(a, m->id, AGENTP_RUN, rc, "cannot start step: %s", strerror(rc));
    step_clear(s);
}

/* Reads one chunk of a step pipe into an OUTPUT frame. Returns bytes read, 0 at EOF (the fd
 * is then closed), -1 when nothing is there now. */
static ssize_t
step_read(struct agent *a, int which)
{
    struct step *s = &a->step;
    struct agentp_msg m = {.type = AGENTP_OUTPUT, .id = s->id};
    ssize_t r;

    do
        r = read(s->fd[which], iobuf, sizeof(iobuf));
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -1;
    if (r <= 0) {
        close(s->fd[which]);
        s->fd[which] = -1;
        return 0;
    }
    m.stream = which == 0 ? AGENTP_STDOUT : AGENTP_STDERR;
    m.time_ns = (uint64_t)now_ns();
    m.data.p = iobuf;
    m.data.len = (size_t)r;
    emit(a, &m);
    return r;
}

/* Reads an env file back, at most AGENTP_FILE_CAP bytes. Returns 1 if read, 0 if absent. */
static int
read_env_file(const char *path, struct agentp_bytes *out, bool *truncated)
{
    struct stat st;
    uint8_t *buf;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    *truncated = false;
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (buf = malloc(AGENTP_FILE_CAP + 1)) == NULL) {
        close(fd);
        return 0;
    }
    while (len < AGENTP_FILE_CAP + 1) {
        ssize_t r = read(fd, buf + len, AGENTP_FILE_CAP + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len > AGENTP_FILE_CAP) {
        len = AGENTP_FILE_CAP;
        *truncated = true;
    }
    out->p = buf;
    out->len = len;
    return 1;
}

/* The leader has been reaped: take what is left in the pipes (the leader's writes are all
 * there now), read the env files, report EXITED. Background processes that still hold the
 * pipes lose them. */
static void
step_finish(struct agent *a)
{
    struct step *s = &a->step;
    struct agentp_msg m = {.type = AGENTP_EXITED, .id = s->id};

    /* Bounded, so that a background process writing without end cannot hold us here. */
    for (int i = 0; i < 2; i++)
        for (int n = 0; n < 256 && s->fd[i] >= 0 && step_read(a, i) > 0; n++)
            ;
    if (WIFSIGNALED(s->status)) {
        m.exit_code = -1;
        m.signal = (uint32_t)WTERMSIG(s->status);
        m.flags |= AGENTP_EXIT_SIGNALED;
    } else {
        m.exit_code = WEXITSTATUS(s->status);
    }
    if (s->timed_out)
        m.flags |= AGENTP_EXIT_TIMED_OUT;
    if (s->cancelled)
        m.flags |= AGENTP_EXIT_CANCELLED;
    for (int i = 0; i < AGENTP_NFILES; i++) {
        bool cut;
        if (s->files[i] != NULL && read_env_file(s->files[i], &m.files[i], &cut)) {
            m.present |= 1u << i;
            if (cut)
                m.truncated |= 1u << i;
        }
    }
    /* A stopped step leaves nothing behind in its group. */
    if (s->term_sent)
        kill(-s->pid, SIGKILL);
    emit(a, &m);
    for (int i = 0; i < AGENTP_NFILES; i++)
        free((void *)(uintptr_t)m.files[i].p);
    step_clear(s);
}

/* Reaps every exited child: the step leader, and orphans re-parented to us. */
static void
reap(struct agent *a)
{
    int st;
    pid_t pid;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (a->step.active && pid == a->step.pid && !a->step.reaped) {
            a->step.reaped = true;
            a->step.status = st;
        }
    }
}

/* ---------------------------------------------------------------- host messages */

static void
begin_stop(struct agent *a, uint32_t grace_ms)
{
    if (!a->stopping) {
        a->stopping = true;
        a->stop_grace = grace_ms;
    }
    if (a->step.active) {
        a->step.cancelled = true;
        step_stop(&a->step, grace_ms);
    }
}

static void
do_write_file(struct agent *a, const struct agentp_msg *m)
{
    struct agentp_msg ok = {.type = AGENTP_FILE_WRITTEN, .id = m->id};
    int fd, rc;

    if (m->path[0] == '\0') {
        emit_error(a, m->id, AGENTP_WRITE_FILE, EINVAL, "empty path");
        return;
    }
    rc = mkdir_parent(m->path, 0755);
    if (rc < 0) {
        emit_error(a, m->id, AGENTP_WRITE_FILE, -rc, "mkdir for %s: %s", m->path,
                   strerror(-rc));
        return;
    }
    fd = open(m->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)(m->mode & 07777));
    if (fd < 0) {
        rc = errno;
        emit_error(a, m->id, AGENTP_WRITE_FILE, rc, "%s: %s", m->path, strerror(rc));
        return;
    }
    rc = write_all(fd, m->data.p, m->data.len);
    if (rc == 0 && fchmod(fd, (mode_t)(m->mode & 07777)) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        emit_error(a, m->id, AGENTP_WRITE_FILE, -rc, "%s: %s", m->path, strerror(-rc));
        return;
    }
    emit(a, &ok);
}

/* Checks that pos is a frame start the journal still holds (or its end). */
static bool
resume_pos_ok(struct agent *a, uint64_t pos)
{
    uint8_t h[AGENTP_HDR_LEN];
    uint32_t plen;
    uint64_t off;

    if (pos < a->j_base || pos > a->j_end)
        return false;
    if (pos >= a->j_written)
        return true; /* still queued for the file; frame starts are checked when sent */
    return pread(a->jfd, h, sizeof(h), (off_t)(pos - a->j_base)) == (ssize_t)sizeof(h) &&
           agentp_hdr_parse(h, &plen, &off) == 0 && off == pos;
}

static void
handle_msg(struct agent *a, const struct agentp_msg *m)
{
    switch (m->type) {
    case AGENTP_HELLO: {
        struct agentp_msg r = {.type = AGENTP_HELLO_REPLY, .pid = (uint32_t)getpid(),
                               .pos = a->j_base, .journal_end = a->j_end, .text = AGENT_NAME};
        uint32_t hi = m->version_max < AGENTP_PROTO_MAX ? m->version_max : AGENTP_PROTO_MAX;
        if (hi < AGENTP_PROTO_MIN || hi < m->version_min) {
            emit_error(a, 0, AGENTP_HELLO, EPROTONOSUPPORT,
                       "no common protocol version: host %u..%u, agent %u..%u",
                       m->version_min, m->version_max, AGENTP_PROTO_MIN, AGENTP_PROTO_MAX);
            return;
        }
        r.version = hi;
        a->hello_done = true;
        emit(a, &r);
        return;
    }
    case AGENTP_RUN:
        if (!a->hello_done)
            emit_error(a, m->id, m->type, EPROTO, "RUN before HELLO");
        else if (a->stopping)
            emit_error(a, m->id, m->type, ESHUTDOWN, "agent is shutting down");
        else if (a->step.active)
            emit_error(a, m->id, m->type, EBUSY, "step %u is still running", a->step.id);
        else
            step_start(a, m);
        return;
    case AGENTP_CANCEL:
        if (!a->step.active || a->step.id != m->id) {
            emit_error(a, m->id, m->type, ESRCH, "step %u is not running", m->id);
            return;
        }
        a->step.cancelled = true;
        step_stop(&a->step, m->grace_ms);
        return;
    case AGENTP_RESUME:
        if (!resume_pos_ok(a, m->pos)) {
            emit_error(a, 0, m->type, ERANGE,
                       "cannot resume from %llu: journal holds %llu..%llu",
                       (unsigned long long)m->pos, (unsigned long long)a->j_base,
                       (unsigned long long)a->j_end);
            return;
        }
        a->resume_to = (int64_t)m->pos;
        a->out_broken = false;
        return;
    case AGENTP_ACK:
        if (m->pos > a->acked)
            a->acked = m->pos < a->j_end ? m->pos : a->j_end;
        maybe_compact(a);
        return;
    case AGENTP_WRITE_FILE:
        if (!a->hello_done)
            emit_error(a, m->id, m->type, EPROTO, "WRITE_FILE before HELLO");
        else
            do_write_file(a, m);
        return;
    case AGENTP_SHUTDOWN:
        begin_stop(a, m->grace_ms);
        return;
    default:
        emit_error(a, m->id, m->type, EPROTO, "%s is not a host message",
                   agentp_type_name(m->type));
        return;
    }
}

/* Decodes and handles every whole frame buffered from stdin. */
static void
handle_input(struct agent *a)
{
    struct agentp_frame f;
    struct agentp_msg m;
    int rc;

    while ((rc = agentp_dec_next(&a->dec, &f)) != 0) {
        if (rc < 0) {
            emit_error(a, 0, 0, -rc, "bad frame from host: %s (%zu bytes skipped)",
                       strerror(-rc), a->dec.skipped);
            continue;
        }
        rc = agentp_msg_decode(&f, &m);
        if (rc == -ENOMSG)
            emit_error(a, 0, f.type, ENOMSG, "unknown message type 0x%02x", (unsigned)f.type);
        else if (rc < 0)
            emit_error(a, 0, f.type, -rc, "malformed %s: %s", agentp_type_name(f.type),
                       strerror(-rc));
        else
            handle_msg(a, &m);
        agentp_msg_free(&m);
    }
}

/* ---------------------------------------------------------------- main loop */

static void
on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;

    if (sig_fd >= 0)
        (void)!write(sig_fd, &b, 1);
    errno = saved;
}

static int
setup_signals(struct agent *a)
{
    int p[2];
    struct sigaction sa;
    static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};

    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    a->sig_rd = p[0];
    a->sig_wr = p[1];
    sig_fd = p[1];
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

static void
handle_signals(struct agent *a)
{
    unsigned char b[64];
    ssize_t r;

    while ((r = read(a->sig_rd, b, sizeof(b))) > 0) {
        for (ssize_t i = 0; i < r; i++) {
            if (b[i] == SIGCHLD)
                continue; /* reap() runs on every turn */
            if (a->step.active)
                step_kill(&a->step, b[i]);
            if (b[i] == SIGTERM || b[i] == SIGINT) {
                diag("signal %d: stopping", b[i]);
                if (a->step.active)
                    a->step.cancelled = true;
                if (!a->stopping) {
                    a->stopping = true;
                    a->stop_grace = 10000;
                }
            }
        }
    }
}

static void
check_timers(struct agent *a)
{
    struct step *s = &a->step;
    int64_t t = now_ns();

    if (!s->active || s->reaped)
        return;
    if (s->deadline != 0 && t >= s->deadline) {
        s->deadline = 0;
        s->timed_out = true;
        step_stop(s, s->grace_ms);
    }
    if (s->kill_at != 0 && t >= s->kill_at) {
        s->kill_at = 0;
        step_kill(s, SIGKILL);
    }
}

static int
poll_timeout(struct agent *a)
{
    int64_t next = -1, t = now_ns();
    struct step *s = &a->step;

    if (s->active && !s->reaped) {
        if (s->deadline != 0)
            next = s->deadline;
        if (s->kill_at != 0 && (next < 0 || s->kill_at < next))
            next = s->kill_at;
    }
    if (a->stopping && !s->active && (next < 0 || a->stop_deadline < next))
        next = a->stop_deadline;
    if (a->pend.len > 0 && (next < 0 || t + 100000000LL < next))
        next = t + 100000000LL;
    if (next < 0)
        return -1;
    if (next <= t)
        return 0;
    return (int)((next - t) / 1000000LL) + 1;
}

static bool
output_paused(const struct agent *a)
{
    return a->pend.len > PEND_MAX || a->j_end - a->acked > a->max_unacked;
}

static int
run(struct agent *a)
{
    for (;;) {
        struct pollfd pf[5];
        int n = 0, i_in = -1, i_out = -1, i_step[2] = {-1, -1};
        uint8_t buf[65536];

        journal_flush(a);
        pump_out(a);
        if (a->step.active && a->step.reaped)
            step_finish(a);
        if (a->stopping && !a->step.active) {
            if (!a->bye_sent) {
                struct agentp_msg bye = {.type = AGENTP_BYE};
                emit(a, &bye);
                a->bye_sent = true;
                a->stop_deadline = now_ns() + STOP_FLUSH_NS;
                continue;
            }
            if (a->out_broken || (a->sent == a->j_end && a->pend.len == 0) ||
                now_ns() >= a->stop_deadline)
                return 0;
        }
        pf[n] = (struct pollfd){.fd = a->sig_rd, .events = POLLIN};
        n++;
        if (!a->in_eof) {
            i_in = n;
            pf[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        }
        if (!a->out_broken && a->sent < a->j_written) {
            i_out = n;
            pf[n++] = (struct pollfd){.fd = STDOUT_FILENO, .events = POLLOUT};
        }
        if (a->step.active && !output_paused(a)) {
            for (int k = 0; k < 2; k++) {
                if (a->step.fd[k] < 0)
                    continue;
                i_step[k] = n;
                pf[n++] = (struct pollfd){.fd = a->step.fd[k], .events = POLLIN};
            }
        }
        if (poll(pf, (nfds_t)n, poll_timeout(a)) < 0 && errno != EINTR) {
            diag("poll: %s", strerror(errno));
            return 1;
        }
        handle_signals(a);
        reap(a);
        if (i_in >= 0 && pf[i_in].revents) {
            ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
                a->in_eof = true;
                if (!a->stopping)
                    begin_stop(a, 5000);
            } else if (r > 0) {
                if (agentp_dec_feed(&a->dec, buf, (size_t)r) < 0)
                    emit_error(a, 0, 0, ENOMEM, "out of memory reading host input");
                handle_input(a);
            }
        }
        if (i_out >= 0 && (pf[i_out].revents & (POLLERR | POLLHUP)) &&
            !(pf[i_out].revents & POLLOUT)) {
            a->out_broken = true;
        }
        for (int k = 0; k < 2; k++)
            if (i_step[k] >= 0 && pf[i_step[k]].revents && a->step.fd[k] >= 0)
                step_read(a, k);
        check_timers(a);
    }
}

/* ---------------------------------------------------------------- --hash-files */

/* argv: ROOT [--follow-symbolic-links] PATTERN... Prints the digest (or an empty line), 0;
 * on error one line on stderr, 2. */
static int
hash_files_main(int argc, char **argv)
{
    char hex[HASHWALK_HEX_SIZE], msg[512];
    int rc;

    if (argc < 1) {
        snprintf(msg, sizeof(msg),
                 "usage: runner-agent --hash-files ROOT [--follow-symbolic-links] PATTERN...");
        rc = -1;
    } else {
        rc = hashwalk_compute(argv[0], (const char *const *)(argv + 1), (size_t)(argc - 1), hex,
                              msg, sizeof(msg));
    }
    if (rc == 0 && (printf("%s\n", hex) < 0 || fflush(stdout) != 0)) {
        snprintf(msg, sizeof(msg), "hashFiles: stdout: %s", strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        /* One line, whatever the paths or patterns in it hold. */
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
        fprintf(stderr, "%s\n", msg);
        return 2;
    }
    return 0;
}

static void
usage(FILE *f)
{
    fputs("usage: runner-agent [--journal PATH] [--keep-journal] [--journal-compact BYTES] "
          "[--max-unacked BYTES]\n"
          "Speaks the runner-agent protocol on stdin/stdout (see proto/agent-protocol.md).\n"
          "The journal path defaults to $RUNNER_AGENT_JOURNAL, then /.runner/journal; it is\n"
          "unlinked once open unless --keep-journal (for tests and debugging).\n"
          "   or: runner-agent --hash-files ROOT [--follow-symbolic-links] PATTERN...\n"
          "Prints hashFiles(PATTERN...) over ROOT (an empty line when nothing matches).\n",
          f);
}

static bool
parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

int
main(int argc, char **argv)
{
    struct agent a;
    bool keep_journal = false;
    int rc;

    if (argc > 1 && strcmp(argv[1], "--hash-files") == 0)
        return hash_files_main(argc - 2, argv + 2);
    memset(&a, 0, sizeof(a));
    a.journal_path = getenv("RUNNER_AGENT_JOURNAL");
    if (a.journal_path == NULL || a.journal_path[0] == '\0')
        a.journal_path = "/.runner/journal";
    a.compact_at = 1u << 20;
    a.max_unacked = 256u << 20;
    a.resume_to = -1;
    a.step.fd[0] = a.step.fd[1] = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--journal") == 0 && i + 1 < argc) {
            a.journal_path = argv[++i];
        } else if (strcmp(argv[i], "--journal-compact") == 0 && i + 1 < argc) {
            if (!parse_size(argv[++i], &a.compact_at))
                goto bad;
        } else if (strcmp(argv[i], "--max-unacked") == 0 && i + 1 < argc) {
            if (!parse_size(argv[++i], &a.max_unacked))
                goto bad;
        } else if (strcmp(argv[i], "--keep-journal") == 0) {
            keep_journal = true;
        } else if (strcmp(argv[i], "--version") == 0) {
            puts(AGENT_NAME);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            goto bad;
        }
    }
    /* Steps run as the agent's user (root in a job container): without this they could open
     * /proc/1/fd/1 and write forged frames into the stream, or reach the journal through
     * /proc/1/fd. Not dumpable, /proc/PID/fd needs CAP_SYS_PTRACE, which job containers do
     * not get. Only an execve of the agent resets it; steps are its children, never it. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        diag("cannot make the agent non-dumpable: %s", strerror(errno));
    if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        diag("cannot become a subreaper: %s", strerror(errno));
    rc = mkdir_parent(a.journal_path, 0755);
    a.jfd = open(a.journal_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (a.jfd < 0) {
        diag("journal %s: %s", a.journal_path, strerror(rc < 0 ? -rc : errno));
        return 1;
    }
    /* The journal is only ever used through a.jfd: without a name, a step cannot rewrite
     * frames in it before they are sent. */
    if (!keep_journal && unlink(a.journal_path) < 0)
        diag("journal %s: cannot unlink: %s", a.journal_path, strerror(errno));
    rc = setup_signals(&a);
    if (rc < 0) {
        diag("signals: %s", strerror(-rc));
        return 1;
    }
    set_nonblock(STDIN_FILENO);
    set_nonblock(STDOUT_FILENO);
    agentp_dec_init(&a.dec);
    rc = run(&a);
    if (a.step.active) {
        step_kill(&a.step, SIGKILL);
        step_clear(&a.step);
    }
    agentp_dec_free(&a.dec);
    agentp_buf_free(&a.tmp);
    agentp_buf_free(&a.pend);
    close(a.jfd);
    return rc;
bad:
    usage(stderr);
    return 2;
}
