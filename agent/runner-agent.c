/* runner-agent.c: the static in-container agent (proto/agent-protocol.md).
 *
 * Reads host messages on stdin, writes journaled frames on stdout (or on the host's fast
 * channel, a unix socket given with --connect, while it is connected), diagnostics on stderr.
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
#include "agent.h"
#include "hashwalk.h"

static volatile sig_atomic_t sig_fd = -1;

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
        struct pollfd pf[6];
        int n = 0, i_in = -1, i_out = -1, i_chan = -1, i_step[2] = {-1, -1};
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
            pf[n++] = (struct pollfd){.fd = a->out_fd, .events = POLLOUT};
        }
        if (a->chan_fd >= 0) { /* the host never writes here: readable means closed */
            i_chan = n;
            pf[n++] = (struct pollfd){.fd = a->chan_fd, .events = POLLIN};
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
        if (i_chan >= 0 && pf[i_chan].revents && a->chan_fd >= 0) {
            ssize_t r = read(a->chan_fd, buf, sizeof(buf));
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                chan_drop(a, r == 0 ? "end of stream" : strerror(errno));
        } else if (i_out >= 0 && (pf[i_out].revents & (POLLERR | POLLHUP)) &&
                   !(pf[i_out].revents & POLLOUT)) {
            if (pf[i_out].fd == a->chan_fd)
                chan_drop(a, "hang-up");
            else
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
          "[--max-unacked BYTES] [--connect SOCKET]\n"
          "Speaks the runner-agent protocol on stdin/stdout (see proto/agent-protocol.md).\n"
          "With --connect, frames go to the unix socket SOCKET instead of stdout while it is\n"
          "connected (the fast channel); host messages still come on stdin.\n"
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
    const char *connect_path = NULL;
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
    a.out_fd = STDOUT_FILENO;
    a.chan_fd = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--journal") == 0 && i + 1 < argc) {
            a.journal_path = argv[++i];
        } else if (strcmp(argv[i], "--journal-compact") == 0 && i + 1 < argc) {
            if (!parse_size(argv[++i], &a.compact_at))
                goto bad;
        } else if (strcmp(argv[i], "--max-unacked") == 0 && i + 1 < argc) {
            if (!parse_size(argv[++i], &a.max_unacked))
                goto bad;
        } else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
            connect_path = argv[++i];
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
    /* The fast channel, before any host message is read and so before any step runs: the
     * host accepts one connection only, which must be ours. */
    if (connect_path != NULL) {
        rc = chan_connect(&a, connect_path);
        if (rc < 0)
            diag("fast channel %s: %s; sending on stdout", connect_path, strerror(-rc));
    }
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
    if (a.chan_fd >= 0)
        close(a.chan_fd);
    return rc;
bad:
    usage(stderr);
    return 2;
}

