/* agent-step.c: the agent's running step: starting it in its own process group with its
 * environment and env files, reading its stdout/stderr pipes into OUTPUT frames, stopping it
 * (SIGTERM, then SIGKILL after the grace), reaping it and every orphan, and its END frame. */
#include "agent.h"

/* ---------------------------------------------------------------- steps */

void
step_kill(struct step *s, int sig)
{
    if (kill(-s->pid, sig) < 0 && errno == ESRCH && !s->reaped)
        kill(s->pid, sig);
}

/* TERM now and KILL after grace_ms (grace 0: KILL at once). A second stop request can only
 * bring the KILL forward. */
void
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

void
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
void
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
ssize_t
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
void
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
void
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

