/* agent-io.c: the agent's diagnostics and small helpers, and its journal: every outgoing frame
 * is appended to the journal file first and sent to stdout from there, so a RESUME can replay any
 * range the host has not acknowledged (proto/agent-protocol.md). */
#include "agent.h"

uint8_t iobuf[IO_CHUNK];

/* ---------------------------------------------------------------- small helpers */

/* One diagnostic line on stderr (never the protocol stream). */
void
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

int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* mkdir -p; the last component too. */
int
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
int
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

int
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
void
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
void
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

void
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

/* Writes journaled bytes to the host (the fast channel, else stdout) as far as it takes them
 * without blocking. A pending RESUME takes effect at a frame boundary, so the host never sees
 * a frame cut short. */
void
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
        w = write(a->out_fd, iobuf, (size_t)r);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (a->out_fd == a->chan_fd) {
                chan_drop(a, strerror(errno));
                continue;
            }
            diag("stdout: %s", strerror(errno));
            a->out_broken = true;
            return;
        }
        a->sent += (uint64_t)w;
    }
}

/* ---------------------------------------------------------------- the fast channel */

/* Connects to the host's fast channel at path (a unix socket the host listens on; its listener
 * takes this one connection only): from now on frames go there instead of stdout. Returns 0,
 * or a negative errno (the agent then stays on stdout). */
int
chan_connect(struct agent *a, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    int fd, sz = 4 << 20;

    if (n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, n + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1)) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    /* A larger buffer than the default lets one write move a whole chunk; the kernel caps it
     * at net.core.wmem_max. */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    set_nonblock(fd);
    a->chan_fd = a->out_fd = fd;
    return 0;
}

/* The fast channel is gone (the host closed it: it exited, or it reattaches over stdin/stdout):
 * frames go to stdout again, continuing where they were; the host's RESUME over stdin says
 * where to go on from (proto/agent-protocol.md §5). */
void
chan_drop(struct agent *a, const char *why)
{
    if (a->chan_fd < 0)
        return;
    diag("fast channel closed (%s); sending on stdout", why);
    close(a->chan_fd);
    a->chan_fd = -1;
    a->out_fd = STDOUT_FILENO;
}

/* Drops the acknowledged head of the journal once it is large enough: the unacked tail is
 * copied to the start of the file, which is then truncated. */
void
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

