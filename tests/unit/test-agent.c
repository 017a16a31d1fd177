/* test-agent.c: the real runner-agent binary, spawned through hostexec on a uv loop and driven
 * through agentconn. Covers: HELLO; stdout/stderr bytes exact and in order per stream (also
 * binary and large output); exit codes 0, 3, 127 (missing command), 126 (bad cwd) and death
 * by signal; env files created empty (0666, stale content truncated) and read back, with the
 * cap and its flag; working directory and the exact environment; timeout and CANCEL (TERM to
 * the process group, KILL after the grace) with the group's children gone; an orphaned
 * grandchild reaped; WRITE_FILE; RESUME after dropping the connection mid-step (every byte
 * once); a host that stops reading; the journal bounded after ACKs; malformed, unknown and
 * refused host messages answered with ERROR; SIGTERM forwarded to the step. The fast channel
 * (--connect, a unix socket we listen on): the unacked-journal limit still holds a step back
 * until the host acks, and the agent goes back to stdout when the host closes the socket.
 * Each test closes every handle and asserts uv_loop_close() == 0. */
#include "harness.h"

#include "agentconn.h"
#include "hostexec.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#ifndef RUNNER_AGENT_PATH
#error "RUNNER_AGENT_PATH must name the built runner-agent"
#endif

#define NSTEPS 8

struct tstep {
    bool started, exited, errored;
    uint32_t pid;
    struct buf out, err;
    int32_t exit_code;
    uint32_t signal, flags, truncated, present;
    struct buf files[AGENTP_NFILES];
    int outputs;
};

struct tctx {
    uv_loop_t loop;
    struct hostexec *hx;
    struct agentconn *conn;
    struct tstep steps[NSTEPS];
    int hello, bye, errors, proto_errors, written;
    uint32_t err_code, err_ref, err_id;
    char err_text[256];
    bool agent_exited;
    int64_t exit_status;
    int exit_signal;
    bool autoack;
    /* scenario hooks */
    int cancel_step;     /* CANCEL this step at its first output (-1: off) */
    uint32_t cancel_grace;
    int detach_step;     /* drop the connection at this step's first output (-1: off) */
    uint64_t detach_at;
    bool detached;
    uv_timer_t timer;
    bool closed;
};

static void on_event(void *arg, const struct agentconn_event *ev);

/* agentconn's write goes to hostexec; its arg must be the hostexec, ours is the test ctx. */
static int
conn_write(void *arg, const void *data, size_t len)
{
    struct tctx *t = arg;

    return hostexec_write(t->hx, data, len);
}

static void
make_conn(struct tctx *t)
{
    t->conn = agentconn_new(&(struct agentconn_cbs){.write = conn_write, .on_event = on_event},
                            t);
    hostexec_attach(t->hx, t->conn);
}

static void
on_reattach(uv_timer_t *tm)
{
    struct tctx *t = tm->data;

    make_conn(t);
    ASSERT_OK(agentconn_resume(t->conn, t->detach_at, NULL));
}

static void
on_event(void *arg, const struct agentconn_event *ev)
{
    struct tctx *t = arg;
    const struct agentp_msg *m = ev->msg;
    struct tstep *s = m ? &t->steps[m->id % NSTEPS] : NULL;

    switch (ev->kind) {
    case AGENTCONN_HELLO:
        ASSERT_EQ(m->version, 1);
        ASSERT_EQ(m->pid, hostexec_pid(t->hx));
        ASSERT_STR_CONTAINS(m->text, "runner-agent");
        t->hello++;
        break;
    case AGENTCONN_STARTED:
        ASSERT(!s->started);
        s->started = true;
        s->pid = m->pid;
        break;
    case AGENTCONN_OUTPUT:
        ASSERT(s->started && !s->exited);
        buf_append(m->stream == AGENTP_STDOUT ? &s->out : &s->err, m->data.p, m->data.len);
        s->outputs++;
        if ((int)m->id == t->cancel_step && s->outputs == 1)
            ASSERT_OK(agentconn_cancel(t->conn, m->id, t->cancel_grace, NULL));
        if ((int)m->id == t->detach_step && !t->detached) {
            /* Lose the stream: drop the connection object (freed after this callback
             * returns), discard what arrives meanwhile, reconnect a little later. */
            t->detached = true;
            t->detach_at = agentconn_offset(t->conn);
            hostexec_attach(t->hx, NULL);
            agentconn_free(t->conn);
            t->conn = NULL;
            uv_timer_start(&t->timer, on_reattach, 150, 0);
            return;
        }
        break;
    case AGENTCONN_EXITED:
        ASSERT(s->started && !s->exited);
        s->exited = true;
        s->exit_code = m->exit_code;
        s->signal = m->signal;
        s->flags = m->flags;
        s->truncated = m->truncated;
        s->present = m->present;
        for (int i = 0; i < AGENTP_NFILES; i++)
            buf_append(&s->files[i], m->files[i].p, m->files[i].len);
        break;
    case AGENTCONN_FILE_WRITTEN:
        t->written++;
        break;
    case AGENTCONN_ERROR:
        t->errors++;
        t->err_code = m->code;
        t->err_ref = m->ref_type;
        t->err_id = m->id;
        snprintf(t->err_text, sizeof(t->err_text), "%s", m->text);
        if (m->ref_type == AGENTP_RUN)
            t->steps[m->id % NSTEPS].errored = true;
        break;
    case AGENTCONN_BYE:
        t->bye++;
        break;
    case AGENTCONN_PROTO_ERROR:
        t->proto_errors++;
        fprintf(stderr, "proto error: %s\n", ev->err->msg);
        break;
    }
    if (t->autoack && t->conn != NULL)
        ASSERT_OK(agentconn_ack(t->conn, ev->next, NULL));
}

static void
on_agent_exit(struct hostexec *hx, int64_t status, int term_signal, void *arg)
{
    struct tctx *t = arg;

    (void)hx;
    t->agent_exited = true;
    t->exit_status = status;
    t->exit_signal = term_signal;
}

/* Runs the loop until cond holds; fails if the loop runs dry first. */
#define SPIN(t, cond)                                                                              \
    do {                                                                                           \
        while (!(cond)) {                                                                          \
            if (uv_run(&(t)->loop, UV_RUN_ONCE) == 0 && !(cond))                                   \
                test_fail(__FILE__, __LINE__, "loop idle before: %s", #cond);                      \
        }                                                                                          \
    } while (0)

/* Starts the agent (journal in the test's directory) and says HELLO. extra: more args. */
static void
start(struct tctx *t, const char *const *extra)
{
    const char *args[16] = {"--journal", "journal", "--keep-journal"};
    size_t n = 3;
    struct err e;
    struct hostexec_opts o = {.agent_path = RUNNER_AGENT_PATH, .args = args,
                              .on_exit = on_agent_exit, .arg = t};

    memset(t, 0, sizeof(*t));
    t->cancel_step = t->detach_step = -1;
    while (extra != NULL && *extra != NULL && n < 15)
        args[n++] = *extra++;
    ASSERT_OK(uv_loop_init(&t->loop));
    uv_timer_init(&t->loop, &t->timer);
    t->timer.data = t;
    if (hostexec_start(&t->loop, &o, &t->hx, &e) < 0)
        test_fail(__FILE__, __LINE__, "%s", e.msg);
    make_conn(t);
    ASSERT_OK(agentconn_hello(t->conn, NULL));
    SPIN(t, t->hello == 1);
}

static void
on_hx_closed(void *arg)
{
    ((struct tctx *)arg)->closed = true;
}

/* Shuts the agent down cleanly, closes everything, checks the loop is empty. */
static void
finish(struct tctx *t)
{
    if (!t->agent_exited) {
        ASSERT_OK(agentconn_shutdown(t->conn, 0, NULL));
        SPIN(t, t->agent_exited);
        ASSERT_EQ(t->bye, 1);
        ASSERT_EQ(t->exit_status, 0);
        ASSERT_EQ(t->exit_signal, 0);
    }
    hostexec_close(t->hx, on_hx_closed, t);
    uv_close((uv_handle_t *)&t->timer, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    ASSERT(t->closed);
    agentconn_free(t->conn);
    ASSERT_EQ(uv_loop_close(&t->loop), 0);
    for (int i = 0; i < NSTEPS; i++) {
        buf_free(&t->steps[i].out);
        buf_free(&t->steps[i].err);
        for (int k = 0; k < AGENTP_NFILES; k++)
            buf_free(&t->steps[i].files[k]);
    }
}

static const char *base_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};

static size_t
count(const char *const *v)
{
    size_t n = 0;

    while (v != NULL && v[n] != NULL)
        n++;
    return n;
}

/* Sends RUN and waits for the step's EXITED (or an ERROR refusing it). */
static struct tstep *
run_full(struct tctx *t, uint32_t id, const char *const *argv, const char *const *env,
         const char *cwd, uint32_t timeout_ms, uint32_t grace_ms)
{
    struct agentconn_run r = {.step = id, .argv = argv, .argc = count(argv),
                              .env = env ? env : base_env, .envc = count(env ? env : base_env),
                              .cwd = cwd, .timeout_ms = timeout_ms, .grace_ms = grace_ms};
    struct tstep *s = &t->steps[id % NSTEPS];

    ASSERT_OK(agentconn_run(t->conn, &r, NULL));
    SPIN(t, s->exited || s->errored);
    return s;
}

static struct tstep *
run_sh(struct tctx *t, uint32_t id, const char *script)
{
    const char *argv[] = {"sh", "-c", script, NULL};

    return run_full(t, id, argv, NULL, NULL, 0, 0);
}

/* The step's stdout as a string (binary-safe comparisons use .len). */
static const char *
out(const struct tstep *s)
{
    return buf_str(&s->out);
}

TEST(hello_and_clean_shutdown)
{
    struct tctx t;

    start(&t, NULL);
    ASSERT_EQ(t.errors, 0);
    finish(&t);
}

TEST(output_exact_per_stream)
{
    struct tctx t;
    struct tstep *s;
    struct buf want = BUF_INIT;

    start(&t, NULL);
    s = run_sh(&t, 1, "printf 'a\\nb'; printf 'E1\\n' >&2; printf 'c\\000d'; printf 'E2' >&2");
    ASSERT(s->exited);
    ASSERT_EQ(s->exit_code, 0);
    ASSERT_EQ(s->flags, 0);
    ASSERT_EQ(s->out.len, 6);
    ASSERT(memcmp(s->out.data, "a\nbc\0d", 6) == 0);
    ASSERT_STR_EQ(buf_str(&s->err), "E1\nE2");
    /* Large output: every byte, in order. */
    s = run_sh(&t, 2, "i=1; while [ $i -le 30000 ]; do echo \"line $i\"; i=$((i+1)); done; "
                      "echo done >&2");
    for (int i = 1; i <= 30000; i++)
        buf_printf(&want, "line %d\n", i);
    ASSERT_EQ(s->out.len, want.len);
    ASSERT(memcmp(s->out.data, want.data, want.len) == 0);
    ASSERT_STR_EQ(buf_str(&s->err), "done\n");
    ASSERT(s->outputs > 1);
    buf_free(&want);
    finish(&t);
}

TEST(exit_codes)
{
    struct tctx t;
    struct tstep *s;
    const char *missing[] = {"/nonexistent/cmd", NULL};
    const char *nopath[] = {"no-such-command-runnerd", "x", NULL};
    const char *pwd[] = {"pwd", NULL};

    start(&t, NULL);
    s = run_sh(&t, 1, "exit 0");
    ASSERT_EQ(s->exit_code, 0);
    s = run_sh(&t, 2, "exit 3");
    ASSERT_EQ(s->exit_code, 3);
    ASSERT_EQ(s->flags, 0);
    s = run_full(&t, 3, missing, NULL, NULL, 0, 0);
    ASSERT_EQ(s->exit_code, 127);
    ASSERT_STR_EQ(buf_str(&s->err), "runner-agent: /nonexistent/cmd: No such file or directory\n");
    s = run_full(&t, 4, nopath, NULL, NULL, 0, 0);
    ASSERT_EQ(s->exit_code, 127);
    s = run_sh(&t, 5, "kill -TERM $$");
    ASSERT_EQ(s->exit_code, -1);
    ASSERT_EQ(s->signal, SIGTERM);
    ASSERT_EQ(s->flags, AGENTP_EXIT_SIGNALED);
    s = run_full(&t, 6, pwd, NULL, "/nonexistent-dir", 0, 0);
    ASSERT_EQ(s->exit_code, 126);
    ASSERT_STR_EQ(buf_str(&s->err),
                  "runner-agent: chdir /nonexistent-dir: No such file or directory\n");
    s = run_sh(&t, 7, "sh -c 'exit 255'");
    ASSERT_EQ(s->exit_code, 255);
    ASSERT_EQ(t.errors, 0);
    finish(&t);
}

TEST(env_files_created_and_read_back)
{
    struct tctx t;
    struct tstep *s;
    char *env[8];
    const char *argv[] = {"sh", "-c",
                          "[ -s \"$GITHUB_OUTPUT\" ] && echo stale; "
                          "echo 'x=1' >> \"$GITHUB_OUTPUT\"; printf 'A=b\\n' > \"$GITHUB_ENV\"; "
                          "echo /opt/bin >> \"$GITHUB_PATH\"; echo '# sum' >> "
                          "\"$GITHUB_STEP_SUMMARY\"; echo ok",
                          NULL};
    const char *dir;
    struct stat st;
    FILE *f;

    start(&t, NULL);
    dir = test_tmpdir();
    env[0] = xasprintf("GITHUB_ENV=%s/wf/envs.txt", dir);
    env[1] = xasprintf("GITHUB_OUTPUT=%s/wf/outputcmd.txt", dir);
    env[2] = xasprintf("GITHUB_STATE=%s/wf/statecmd.txt", dir);
    env[3] = xasprintf("GITHUB_PATH=%s/wf/pathcmd.txt", dir);
    env[4] = xasprintf("GITHUB_STEP_SUMMARY=%s/wf/SUMMARY.md", dir);
    env[5] = xstrdup(base_env[0]);
    env[6] = NULL;
    ASSERT_EQ(mkdir("wf", 0755), 0);
    f = fopen("wf/outputcmd.txt", "w");
    fputs("stale=1\n", f);
    fclose(f);
    {
        struct agentconn_run r = {.step = 1, .argv = argv, .argc = 3,
                                  .env = (const char *const *)env, .envc = 6,
                                  .dir = "wf"};
        ASSERT_OK(agentconn_run(t.conn, &r, NULL));
        s = &t.steps[1];
        SPIN(&t, s->exited || s->errored);
    }
    ASSERT(s->exited);
    ASSERT_EQ(s->exit_code, 0);
    ASSERT_STR_EQ(out(s), "ok\n");
    ASSERT_EQ(s->present, 0x1f);
    ASSERT_EQ(s->truncated, 0);
    ASSERT_STR_EQ(buf_str(&s->files[AGENTP_FILE_ENV]), "A=b\n");
    ASSERT_STR_EQ(buf_str(&s->files[AGENTP_FILE_OUTPUT]), "x=1\n");
    ASSERT_EQ(s->files[AGENTP_FILE_STATE].len, 0);
    ASSERT_STR_EQ(buf_str(&s->files[AGENTP_FILE_PATH]), "/opt/bin\n");
    ASSERT_STR_EQ(buf_str(&s->files[AGENTP_FILE_SUMMARY]), "# sum\n");
    ASSERT_EQ(stat("wf/statecmd.txt", &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0666);
    /* Over the cap: cut at 1 MiB, flagged; a file the step deleted is absent. */
    {
        const char *big[] = {"sh", "-c",
                             "head -c 1048586 /dev/zero | tr '\\0' s > \"$GITHUB_STATE\"; "
                             "rm \"$GITHUB_PATH\"",
                             NULL};
        struct agentconn_run r = {.step = 2, .argv = big, .argc = 3,
                                  .env = (const char *const *)env, .envc = 6};
        ASSERT_OK(agentconn_run(t.conn, &r, NULL));
        s = &t.steps[2];
        SPIN(&t, s->exited || s->errored);
    }
    ASSERT_EQ(s->exit_code, 0);
    ASSERT_EQ(s->truncated, 1u << AGENTP_FILE_STATE);
    ASSERT_EQ(s->present, 0x1f & ~(1u << AGENTP_FILE_PATH));
    ASSERT_EQ(s->files[AGENTP_FILE_STATE].len, AGENTP_FILE_CAP);
    ASSERT_EQ(s->files[AGENTP_FILE_STATE].data[AGENTP_FILE_CAP - 1], 's');
    ASSERT_EQ(s->files[AGENTP_FILE_OUTPUT].len, 0);
    for (int i = 0; env[i]; i++)
        free(env[i]);
    finish(&t);
}

TEST(cwd_and_exact_env)
{
    struct tctx t;
    struct tstep *s;
    const char *env[] = {"PATH=/usr/bin:/bin", "FOO=bar baz", "HOME=/nowhere", NULL};
    const char *argv_env[] = {"env", NULL};
    const char *argv_pwd[] = {"pwd", NULL};
    char *want;
    char real[4096];

    start(&t, NULL);
    ASSERT_EQ(mkdir("sub", 0755), 0);
    s = run_full(&t, 1, argv_env, env, NULL, 0, 0);
    ASSERT_STR_EQ(out(s), "PATH=/usr/bin:/bin\nFOO=bar baz\nHOME=/nowhere\n");
    s = run_full(&t, 2, argv_pwd, env, "sub", 0, 0);
    ASSERT(realpath("sub", real) != NULL);
    want = xasprintf("%s\n", real);
    ASSERT_STR_EQ(out(s), want);
    free(want);
    finish(&t);
}

/* A step whose env names no HOME or PATH gets the agent's own (in a container: what Docker
 * gave its first process, HOME from the user's passwd entry and PATH from the image or
 * Docker's default), exported, as `docker run` passes them on; one that names them keeps its
 * own (above). */
TEST(home_and_path_from_the_agent_when_the_step_has_none)
{
    struct tctx t;
    struct tstep *s;
    const char *env[] = {"FOO=1", NULL};
    const char *argv[] = {"/usr/bin/env", NULL};
    char *want;

    ASSERT_OK(setenv("HOME", "/agent-home", 1));
    ASSERT_OK(setenv("PATH", "/usr/bin:/bin", 1));
    start(&t, NULL);
    s = run_full(&t, 1, argv, env, NULL, 0, 0);
    want = xasprintf("FOO=1\nHOME=/agent-home\nPATH=/usr/bin:/bin\n");
    ASSERT_STR_EQ(out(s), want);
    free(want);
    finish(&t);
}

/* A step holds its stdin, stdout and stderr and nothing else, even when the agent itself
 * inherited a descriptor without O_CLOEXEC (here fd 57, open across the agent's start): no
 * step can reach the agent's stream or journal through an inherited descriptor. */
TEST(step_inherits_no_descriptor)
{
    struct tctx t;
    struct tstep *s;
    int fd = open("/dev/null", O_RDONLY);

    ASSERT(fd >= 0);
    ASSERT_EQ(dup2(fd, 57), 57);
    close(fd);
    start(&t, NULL);
    close(57);
    s = run_sh(&t, 1, "cd /proc/self/fd && for f in *; do echo \"$f\"; done");
    ASSERT_EQ(s->exit_code, 0);
    /* sh's own: 0, 1, 2, and at most the directory it reads and a script descriptor. */
    ASSERT_STR_CONTAINS(out(s), "0\n1\n2\n");
    ASSERT(strstr(out(s), "57") == NULL);
    finish(&t);
}

/* A step that waits until pid is gone (killed and reaped): exit 0, or 1 after ~20 s. */
static struct tstep *
wait_gone(struct tctx *t, uint32_t id, const char *pid)
{
    char *script = xasprintf("i=0; while kill -0 %s 2>/dev/null; do i=$((i+1)); "
                             "[ $i -gt 400 ] && exit 1; sleep 0.05; done; exit 0",
                             pid);
    struct tstep *s = run_sh(t, id, script);

    free(script);
    return s;
}

TEST(timeout_kills_the_process_group)
{
    struct tctx t;
    struct tstep *s;
    const char *argv[] = {"sh", "-c", "sleep 100 & echo $!; wait", NULL};
    char pid[32];

    start(&t, NULL);
    s = run_full(&t, 1, argv, NULL, NULL, 1000, 5000);
    ASSERT(s->exited);
    ASSERT_EQ(s->flags, AGENTP_EXIT_SIGNALED | AGENTP_EXIT_TIMED_OUT);
    ASSERT_EQ(s->signal, SIGTERM);
    ASSERT(s->out.len > 1 && s->out.len < sizeof(pid));
    memcpy(pid, s->out.data, s->out.len - 1);
    pid[s->out.len - 1] = '\0';
    s = wait_gone(&t, 2, pid);
    ASSERT_EQ(s->exit_code, 0);
    finish(&t);
}

TEST(cancel_term_then_kill)
{
    struct tctx t;
    struct tstep *s;
    const char *term_ok[] = {"sh", "-c", "echo ready; sleep 100", NULL};
    const char *term_ignored[] = {"sh", "-c", "trap '' TERM; echo ready; "
                                              "while :; do sleep 0.05; done", NULL};

    start(&t, NULL);
    t.cancel_step = 1;
    t.cancel_grace = 10000;
    s = run_full(&t, 1, term_ok, NULL, NULL, 0, 0);
    ASSERT_STR_EQ(out(s), "ready\n");
    ASSERT_EQ(s->flags, AGENTP_EXIT_SIGNALED | AGENTP_EXIT_CANCELLED);
    ASSERT_EQ(s->signal, SIGTERM);
    t.cancel_step = 2;
    t.cancel_grace = 200;
    s = run_full(&t, 2, term_ignored, NULL, NULL, 0, 0);
    ASSERT_EQ(s->flags, AGENTP_EXIT_SIGNALED | AGENTP_EXIT_CANCELLED);
    ASSERT_EQ(s->signal, SIGKILL);
    /* Cancelling a step that is not running is refused. */
    ASSERT_OK(agentconn_cancel(t.conn, 77, 0, NULL));
    SPIN(&t, t.errors == 1);
    ASSERT_EQ(t.err_code, ESRCH);
    ASSERT_EQ(t.err_ref, AGENTP_CANCEL);
    finish(&t);
}

TEST(orphan_is_reaped)
{
    struct tctx t;
    struct tstep *s;
    char pid[32];

    start(&t, NULL);
    s = run_sh(&t, 1, "sleep 0.3 >/dev/null 2>&1 & echo $!");
    ASSERT_EQ(s->exit_code, 0);
    ASSERT(s->out.len > 1 && s->out.len < sizeof(pid));
    memcpy(pid, s->out.data, s->out.len - 1);
    pid[s->out.len - 1] = '\0';
    /* kill -0 succeeds on a zombie: this ends only once the agent has reaped it. */
    s = wait_gone(&t, 2, pid);
    ASSERT_EQ(s->exit_code, 0);
    finish(&t);
}

TEST(write_file_then_run_it)
{
    struct tctx t;
    struct tstep *s;
    static const char script[] = "#!/bin/sh\necho \"from script $1\"\n";
    const char *argv[] = {"scripts/deep/a.sh", "arg", NULL};
    struct stat st;

    start(&t, NULL);
    ASSERT_OK(agentconn_write_file(t.conn, 9, "scripts/deep/a.sh", 0750, script,
                                   sizeof(script) - 1, NULL));
    SPIN(&t, t.written == 1);
    ASSERT_EQ(stat("scripts/deep/a.sh", &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0750);
    ASSERT_EQ(st.st_size, sizeof(script) - 1);
    s = run_full(&t, 1, argv, NULL, NULL, 0, 0);
    ASSERT_STR_EQ(out(s), "from script arg\n");
    ASSERT_OK(agentconn_write_file(t.conn, 10, "/proc/nope/x", 0644, "", 0, NULL));
    SPIN(&t, t.errors == 1);
    ASSERT_EQ(t.err_ref, AGENTP_WRITE_FILE);
    ASSERT_EQ(t.err_id, 10);
    finish(&t);
}

TEST(resume_after_dropping_the_connection)
{
    struct tctx t;
    struct tstep *s;
    struct buf want = BUF_INIT;

    start(&t, NULL);
    t.detach_step = 1;
    s = run_sh(&t, 1, "i=1; while [ $i -le 300 ]; do echo \"line $i\"; echo \"err $i\" >&2; "
                      "i=$((i+1)); [ $((i % 20)) -eq 0 ] && sleep 0.02; done; exit 4");
    ASSERT(t.detached);
    ASSERT_EQ(s->exit_code, 4);
    for (int i = 1; i <= 300; i++)
        buf_printf(&want, "line %d\n", i);
    ASSERT_STR_EQ(out(s), buf_str(&want));
    buf_reset(&want);
    for (int i = 1; i <= 300; i++)
        buf_printf(&want, "err %d\n", i);
    ASSERT_STR_EQ(buf_str(&s->err), buf_str(&want));
    ASSERT_EQ(t.proto_errors, 0);
    ASSERT_EQ(t.errors, 0);
    /* The stream goes on normally afterwards. */
    s = run_sh(&t, 2, "echo after");
    ASSERT_STR_EQ(out(s), "after\n");
    buf_free(&want);
    finish(&t);
}

TEST(resume_out_of_range_is_refused)
{
    struct tctx t;
    struct tstep *s;

    start(&t, NULL);
    /* Offset 3 is no frame start: the agent refuses, and the refusal reaches the owner even
     * though agentconn waits for a replay from 3. */
    ASSERT_OK(agentconn_resume(t.conn, 3, NULL));
    SPIN(&t, t.errors == 1);
    ASSERT_EQ(t.err_code, ERANGE);
    ASSERT_EQ(t.err_ref, AGENTP_RESUME);
    ASSERT_STR_CONTAINS(t.err_text, "cannot resume from 3");
    /* Resuming from the start replays HELLO_REPLY and the ERROR in order. */
    ASSERT_OK(agentconn_resume(t.conn, 0, NULL));
    SPIN(&t, t.hello == 2 && t.errors == 2);
    s = run_sh(&t, 1, "echo fine");
    ASSERT_STR_EQ(out(s), "fine\n");
    finish(&t);
}

TEST(host_stops_reading)
{
    struct tctx t;
    struct tstep *s;
    struct agentconn_run r;
    const char *argv[] = {"sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' y; echo end >&2",
                          NULL};

    start(&t, NULL);
    hostexec_read_stop(t.hx);
    r = (struct agentconn_run){.step = 1, .argv = argv, .argc = 3, .env = base_env, .envc = 1};
    ASSERT_OK(agentconn_run(t.conn, &r, NULL));
    /* Let the agent run the step with nobody reading: a follow-up step only starts once the
     * first has exited, so the ERROR for it proves the agent kept going. */
    s = &t.steps[1];
    {
        /* Wait until the journal holds the whole output (file grows past 3 MB). */
        struct stat st;
        int tries = 0;
        while (stat("journal", &st) == 0 && st.st_size < 3000000 && tries++ < 2000)
            usleep(10000);
        ASSERT(st.st_size >= 3000000);
    }
    ASSERT_OK(hostexec_read_start(t.hx));
    SPIN(&t, s->exited);
    ASSERT_EQ(s->out.len, 3000000);
    ASSERT_EQ(s->out.data[2999999], 'y');
    ASSERT_STR_EQ(buf_str(&s->err), "end\n");
    finish(&t);
}

TEST(journal_bounded_after_acks)
{
    struct tctx t;
    struct tstep *s;
    const char *extra[] = {"--journal-compact", "65536", NULL};
    struct stat st;
    uint8_t h[AGENTP_HDR_LEN];
    uint32_t len;
    uint64_t off;
    FILE *f;

    start(&t, extra);
    t.autoack = true;
    s = run_sh(&t, 1, "head -c 3000000 /dev/zero | tr '\\0' x");
    ASSERT_EQ(s->out.len, 3000000);
    /* The ACK for EXITED went out before this RUN; EXITED of step 2 proves it was handled. */
    s = run_sh(&t, 2, "true");
    ASSERT_EQ(s->exit_code, 0);
    ASSERT_EQ(stat("journal", &st), 0);
    ASSERT(st.st_size < 65536 + 4096);
    f = fopen("journal", "rb");
    ASSERT(f != NULL);
    ASSERT_EQ(fread(h, 1, sizeof(h), f), sizeof(h));
    fclose(f);
    ASSERT_OK(agentp_hdr_parse(h, &len, &off));
    /* Everything up to within one compaction step of step 1's end was dropped. */
    ASSERT(off > 3000000 - 65536);
    ASSERT(off < 3000000 + 65536);
    finish(&t);
}

/* Writes raw bytes to the agent's stdin. */
static void
raw(struct tctx *t, const void *p, size_t n)
{
    ASSERT_OK(hostexec_write(t->hx, p, n));
}

TEST(bad_host_input_gets_error)
{
    struct tctx t;
    struct tstep *s;
    struct agentp_buf b = {0};
    struct agentp_msg m = {.type = AGENTP_CANCEL, .id = 1};
    const char *argv[] = {"sleep", "100", NULL};
    struct agentconn_run r = {.step = 3, .argv = argv, .argc = 2, .env = base_env, .envc = 1};

    start(&t, NULL);
    raw(&t, "this is not a frame\n", 20);
    SPIN(&t, t.errors == 1);
    ASSERT_EQ(t.err_code, EBADMSG);
    ASSERT_EQ(t.err_ref, 0);
    /* A sealed frame with a truncated payload: malformed. */
    ASSERT_OK(agentp_encode(&b, &m));
    b.p[11] = 3; /* payload length 3, then fix both CRCs */
    {
        uint32_t c = agentp_crc32(0, b.p + AGENTP_HDR_LEN, 3);
        b.p[20] = (uint8_t)(c >> 24), b.p[21] = (uint8_t)(c >> 16);
        b.p[22] = (uint8_t)(c >> 8), b.p[23] = (uint8_t)c;
        c = agentp_crc32(0, b.p, 24);
        b.p[24] = (uint8_t)(c >> 24), b.p[25] = (uint8_t)(c >> 16);
        b.p[26] = (uint8_t)(c >> 8), b.p[27] = (uint8_t)c;
    }
    raw(&t, b.p, AGENTP_HDR_LEN + 3);
    SPIN(&t, t.errors == 2);
    ASSERT_EQ(t.err_code, EPROTO);
    ASSERT_EQ(t.err_ref, AGENTP_CANCEL);
    /* An unknown type, and an agent->host type sent to the agent. */
    b.p[5] = 0x3f;
    {
        uint32_t c = agentp_crc32(0, b.p, 24);
        b.p[24] = (uint8_t)(c >> 24), b.p[25] = (uint8_t)(c >> 16);
        b.p[26] = (uint8_t)(c >> 8), b.p[27] = (uint8_t)c;
    }
    raw(&t, b.p, AGENTP_HDR_LEN + 3);
    SPIN(&t, t.errors == 3);
    ASSERT_EQ(t.err_code, ENOMSG);
    b.len = 0;
    m = (struct agentp_msg){.type = AGENTP_BYE};
    ASSERT_OK(agentp_encode(&b, &m));
    raw(&t, b.p, b.len);
    SPIN(&t, t.errors == 4);
    ASSERT_EQ(t.err_code, EPROTO);
    ASSERT_EQ(t.err_ref, AGENTP_BYE);
    /* A second RUN while one runs is refused; the first is unharmed. */
    ASSERT_OK(agentconn_run(t.conn, &r, NULL));
    SPIN(&t, t.steps[3].started);
    r.step = 4;
    ASSERT_OK(agentconn_run(t.conn, &r, NULL));
    SPIN(&t, t.errors == 5);
    ASSERT_EQ(t.err_code, EBUSY);
    ASSERT_EQ(t.err_id, 4);
    ASSERT_OK(agentconn_cancel(t.conn, 3, 0, NULL));
    SPIN(&t, t.steps[3].exited);
    ASSERT_EQ(t.steps[3].signal, SIGKILL);
    s = run_sh(&t, 5, "echo alive");
    ASSERT_STR_EQ(out(s), "alive\n");
    /* A frame written one byte at a time is still one message. */
    {
        const char *argv2[] = {"echo", "split", NULL};
        m = (struct agentp_msg){.type = AGENTP_RUN, .id = 6, .argv = (char **)(uintptr_t)argv2,
                                .argc = 2, .env = (char **)(uintptr_t)base_env, .envc = 1};
        b.len = 0;
        ASSERT_OK(agentp_encode(&b, &m));
        for (size_t i = 0; i < b.len; i++) {
            raw(&t, b.p + i, 1);
            uv_run(&t.loop, UV_RUN_NOWAIT);
        }
        SPIN(&t, t.steps[6].exited);
        ASSERT_STR_EQ(out(&t.steps[6]), "split\n");
    }
    ASSERT_EQ(t.proto_errors, 0);
    agentp_buf_free(&b);
    finish(&t);
}

TEST(sigterm_is_forwarded)
{
    struct tctx t;
    const char *argv[] = {"sh", "-c", "echo up; sleep 100", NULL};
    struct agentconn_run r = {.step = 1, .argv = argv, .argc = 3, .env = base_env, .envc = 1};

    start(&t, NULL);
    ASSERT_OK(agentconn_run(t.conn, &r, NULL));
    SPIN(&t, t.steps[1].outputs == 1);
    ASSERT_EQ(kill(hostexec_pid(t.hx), SIGTERM), 0);
    SPIN(&t, t.agent_exited);
    ASSERT(t.steps[1].exited);
    ASSERT_EQ(t.steps[1].signal, SIGTERM);
    ASSERT_EQ(t.steps[1].flags, AGENTP_EXIT_SIGNALED | AGENTP_EXIT_CANCELLED);
    ASSERT_EQ(t.bye, 1);
    ASSERT_EQ(t.exit_status, 0);
    finish(&t);
}

/* 'Z' for a zombie, 0 once the process is gone, else its state letter. */
static char
proc_state(const char *pid)
{
    char path[64], line[512], *p;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    p = fgets(line, sizeof(line), f);
    fclose(f);
    if (p == NULL || (p = strrchr(line, ')')) == NULL)
        return 0;
    return p[2];
}

TEST(close_kills_agent_and_step)
{
    struct tctx t;
    const char *argv[] = {"sleep", "100", NULL};
    struct agentconn_run r = {.step = 1, .argv = argv, .argc = 2, .env = base_env, .envc = 1};
    char pid[32];
    int tries = 0;
    char st;

    start(&t, NULL);
    ASSERT_OK(agentconn_run(t.conn, &r, NULL));
    SPIN(&t, t.steps[1].started);
    snprintf(pid, sizeof(pid), "%u", t.steps[1].pid);
    ASSERT(proc_state(pid) != 0);
    /* No SHUTDOWN: hostexec_close kills the agent; the kernel then kills its step. */
    hostexec_close(t.hx, on_hx_closed, &t);
    uv_close((uv_handle_t *)&t.timer, NULL);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ASSERT(t.closed);
    while ((st = proc_state(pid)) != 0 && st != 'Z' && tries++ < 500)
        usleep(10000);
    ASSERT(st == 0 || st == 'Z');
    agentconn_free(t.conn);
    ASSERT_EQ(uv_loop_close(&t.loop), 0);
}

/* ---------------------------------------------------------------- the fast channel */

/* The host end of --connect: a unix socket we listen on; what arrives on the one connection
 * accepted is fed to t->conn, as the docker executor does (dockerexec-fast.c). */
struct fast {
    struct tctx *t;
    uv_pipe_t listener, conn;
    bool accepted, conn_closed;
    char buf[65536];
};

static void
fast_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct fast *f = h->data;

    (void)hint;
    *b = uv_buf_init(f->buf, sizeof(f->buf));
}

static void
fast_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct fast *f = s->data;

    (void)b;
    if (n > 0 && f->t->conn != NULL)
        ASSERT_OK(agentconn_feed(f->t->conn, f->buf, (size_t)n));
    else if (n < 0)
        uv_read_stop(s);
}

static void
fast_connection(uv_stream_t *s, int status)
{
    struct fast *f = s->data;

    ASSERT_OK(status);
    ASSERT(!f->accepted);
    uv_pipe_init(&f->t->loop, &f->conn, 0);
    f->conn.data = f;
    ASSERT_OK(uv_accept(s, (uv_stream_t *)&f->conn));
    ASSERT_OK(uv_read_start((uv_stream_t *)&f->conn, fast_alloc, fast_read));
    f->accepted = true;
}

/* start() with the agent connecting to a socket f listens on; more args in extra. */
static void
start_fast(struct tctx *t, struct fast *f, const char *const *extra)
{
    char cwd[512], *path;
    const char *args[16] = {"--journal", "journal", "--keep-journal", "--connect", NULL};
    size_t n = 5;
    struct err e;
    struct hostexec_opts o = {.agent_path = RUNNER_AGENT_PATH, .args = args,
                              .on_exit = on_agent_exit, .arg = t};

    memset(t, 0, sizeof(*t));
    memset(f, 0, sizeof(*f));
    f->t = t;
    t->cancel_step = t->detach_step = -1;
    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    path = xasprintf("%s/fast.sock", cwd);
    args[4] = path;
    while (extra != NULL && *extra != NULL && n < 15)
        args[n++] = *extra++;
    ASSERT_OK(uv_loop_init(&t->loop));
    uv_timer_init(&t->loop, &t->timer);
    t->timer.data = t;
    uv_pipe_init(&t->loop, &f->listener, 0);
    f->listener.data = f;
    ASSERT_OK(uv_pipe_bind(&f->listener, path));
    ASSERT_OK(uv_listen((uv_stream_t *)&f->listener, 1, fast_connection));
    if (hostexec_start(&t->loop, &o, &t->hx, &e) < 0)
        test_fail(__FILE__, __LINE__, "%s", e.msg);
    free(path);
    make_conn(t);
    ASSERT_OK(agentconn_hello(t->conn, NULL));
    SPIN(t, t->hello == 1);
    ASSERT(f->accepted); /* the reply came over the socket: nothing else feeds it */
}

static void
fast_close(struct fast *f)
{
    uv_close((uv_handle_t *)&f->listener, NULL);
    if (f->accepted && !f->conn_closed) {
        f->conn_closed = true;
        uv_close((uv_handle_t *)&f->conn, NULL);
    }
}

static void
on_tick(uv_timer_t *tm)
{
    *(bool *)tm->data = true;
}

/* Runs t's loop for about ms milliseconds. */
static void
spin_for(struct tctx *t, unsigned ms)
{
    uv_timer_t tm;
    bool done = false;

    uv_timer_init(&t->loop, &tm);
    tm.data = &done;
    uv_timer_start(&tm, on_tick, ms, 0);
    SPIN(t, done);
    uv_close((uv_handle_t *)&tm, NULL);
    uv_run(&t->loop, UV_RUN_NOWAIT);
}

/* Over the fast channel: the unacked-journal limit still holds a step back until the host
 * acks (with no ACK the output stops near --max-unacked and the step does not end; after ACKs
 * every byte arrives); when the host closes the channel, the agent goes on over stdout. */
TEST(fast_channel_backpressure_then_stdout)
{
    struct tctx t;
    struct fast f;
    struct tstep *s;
    struct agentconn_run r;
    const char *extra[] = {"--max-unacked", "200000", NULL};
    const char *argv[] = {"sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' z; touch done", NULL};

    start_fast(&t, &f, extra);
    r = (struct agentconn_run){.step = 1, .argv = argv, .argc = 3, .env = base_env, .envc = 1};
    ASSERT_OK(agentconn_run(t.conn, &r, NULL));
    s = &t.steps[1];
    SPIN(&t, s->out.len >= 200000);
    spin_for(&t, 300);
    /* Held back: at most the limit and one read of the pipe past it. */
    ASSERT(!s->exited);
    ASSERT(s->out.len <= 200000 + 65536 + 256);
    ASSERT(access("done", F_OK) != 0);
    ASSERT_OK(agentconn_ack(t.conn, agentconn_offset(t.conn), NULL));
    t.autoack = true;
    SPIN(&t, s->exited);
    ASSERT_EQ(s->out.len, 3000000);
    ASSERT_EQ(s->out.data[2999999], 'z');
    ASSERT_EQ(access("done", F_OK), 0);

    /* The host closes the channel: the next step's frames come on stdout (hostexec feeds
     * t.conn from there), in order after the last ones. */
    f.conn_closed = true;
    uv_close((uv_handle_t *)&f.conn, NULL);
    s = run_sh(&t, 2, "echo over stdout");
    ASSERT_STR_EQ(out(s), "over stdout\n");
    ASSERT_EQ(t.proto_errors, 0);
    fast_close(&f);
    finish(&t);
}
