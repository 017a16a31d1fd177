/* test-dockerexec-fast.c: the docker executor's fast channel (dockerexec-fast.c) against the real
 * engine. Over the channel every byte of a step's output arrives once, in order, and the run
 * directory holds nothing once the agent is connected; a step that tries to connect to the
 * socket as the agent did gets ENOENT, cannot create anything in the mounted directory and
 * cannot write into the agent's descriptors (so it cannot speak for the agent), and the stream
 * goes on unharmed. RUNNERD_AGENT_CHANNEL=attach carries the same output over the attach
 * stream. A stream lost mid-step on the fast channel is reattached over the attach stream with
 * every line once. When the agent cannot reach the socket (the engine sees other paths than runnerd:
 * here runnerd's run directory is on a tmpfs of its own mount namespace), the output comes
 * over the attach stream, with lines saying so. A timeout and a cancel still end steps; a host
 * that stops reading does not stop the step (the agent journals instead of blocking on the
 * socket), and everything arrives once the host reads again. */
#include "harness.h"

#include "dockerexec.h"
#include "dockertest.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

#include <dirent.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

/* Sets up f for the test called name, with a private run directory for the executor;
 * returns the directory (new string; fast_teardown() frees it). */
static char *
fast_setup(struct dockertest *f, const char *name)
{
    char *d = xstrdup("/tmp/test-fast-XXXXXX");

    dockertest_setup(f, name);
    dockertest_guard_owner();
    ASSERT(mkdtemp(d) != NULL);
    dockerexec_set_run_dir(d);
    return d;
}

/* Removes the run directory (if empty) and tears f down. */
static void
fast_teardown(struct dockertest *f, char *run)
{
    rmdir(run);
    free(run);
    dockerexec_set_run_dir(NULL);
    dockertest_teardown(f);
}

static int
dir_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int n = 0;

    ASSERT(d != NULL);
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* 20,000 numbered lines (about 1 MB) on stdout only, so that their order is the step's: the
 * output of the integrity checks. */
static const char lines_script[] =
    "i=1; while [ $i -le 20000 ]; do echo \"line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; "
    "i=$((i+1)); done; exit 3\n";

static void
check_lines(const struct buf *out)
{
    struct buf want = BUF_INIT;

    for (int i = 1; i <= 20000; i++)
        buf_printf(&want, "line %d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", i);
    ASSERT_EQ(out->len, want.len);
    ASSERT(memcmp(out->data, want.data, want.len) == 0);
    buf_free(&want);
}

/* Runs lines_script as a step: it exits 3 and its every line arrives once, in order. */
static void
run_lines(struct dockertest_job *j)
{
    ASSERT_EQ(dockertest_job_run(j, lines_script), 3);
    check_lines(&j->out);
}

TEST(fast_channel_carries_every_line_and_admits_no_second_peer)
{
    struct dockertest f;
    struct dockertest_job j = {0};
    char *run = NULL;

    run = fast_setup(&f, "fastchan");
    dockertest_job_start(&f, &j, RUNNER_AGENT_PATH, "fast");
    ASSERT_STR_CONTAINS(buf_str(&j.log), "over a unix socket (the fast channel)");
    /* Connected: the socket and its directory are gone from the host. */
    ASSERT_EQ(dir_entries(run), 0);

    run_lines(&j);

    /* A step plays the agent: connects to the socket the agent used (with the agent's own
     * code), tries to put a socket of its own there, and to write into the agent's
     * descriptors (its stdout, the channel). */
    ASSERT_EQ(dockertest_job_run(&j, "/.runner/agent --connect /run/runnerd-agent/agent.sock "
                          "--journal /tmp/j2 </dev/null >/dev/null 2>/tmp/err; "
                          "grep -c 'No such file or directory' /tmp/err; "
                          "echo entries=$(ls -A /run/runnerd-agent | wc -l); "
                          "touch /run/runnerd-agent/agent.sock 2>/dev/null || echo no-create; "
                          "n=0; for d in /proc/1/fd/*; do "
                          "  { printf '\\347RA\\032forged' > $d; } 2>/dev/null && n=$((n+1)); "
                          "done; echo forged=$n; exit 0\n"),
              0);
    ASSERT_STR_EQ(buf_str(&j.out), "1\nentries=0\nno-create\nforged=0\n");
    /* The stream is unharmed: the next step's output is whole. */
    run_lines(&j);
    dockertest_job_end(&j);
    ASSERT_EQ(dir_entries(run), 0);
    fast_teardown(&f, run);
}

/* A stream lost mid-step while the agent is on the fast channel: the host closes the channel
 * and attaches again; the agent goes on over stdout from where the host's RESUME says, and
 * every line arrives once, in order (as after a restart of runnerd). */
TEST(reattach_from_the_fast_channel_delivers_every_line_once)
{
    struct dockertest f;
    struct dockertest_job j = {0};
    char *run = NULL;

    run = fast_setup(&f, "fastreattach");
    dockertest_job_start(&f, &j, RUNNER_AGENT_PATH, "fastreattach");
    ASSERT_STR_CONTAINS(buf_str(&j.log), "(the fast channel)");
    j.reattach_at = 300000;
    run_lines(&j);
    ASSERT(j.reattached);
    ASSERT_STR_CONTAINS(buf_str(&j.log), "reattached to container");
    /* And the next step too, over the attach stream now. */
    run_lines(&j);
    dockertest_job_end(&j);
    fast_teardown(&f, run);
}

TEST(forced_attach_carries_the_same_output)
{
    struct dockertest f;
    struct dockertest_job j = {0};
    char *run = NULL;

    run = fast_setup(&f, "fastattach");
    setenv("RUNNERD_AGENT_CHANNEL", "attach", 1);
    dockertest_job_start(&f, &j, RUNNER_AGENT_PATH, "attach");
    ASSERT_STR_CONTAINS(buf_str(&j.log),
                        "over the attach stream (RUNNERD_AGENT_CHANNEL=attach)");
    ASSERT(strstr(buf_str(&j.log), "fast channel)") == NULL);
    ASSERT_EQ(dir_entries(run), 0); /* nothing was made */
    run_lines(&j);
    dockertest_job_end(&j);
    unsetenv("RUNNERD_AGENT_CHANNEL");
    fast_teardown(&f, run);
}

TEST(agent_that_cannot_connect_falls_back_to_attach)
{
    struct dockertest f;
    struct dockertest_job j = {0};
    char *run = NULL, *cmd;

    run = fast_setup(&f, "fastfallback");
    /* Our run directory is a tmpfs only this process sees: the engine binds the directory
     * beneath it (empty; it makes the job's directory there), as an engine that sees other
     * paths than runnerd would. */
    ASSERT_OK(unshare(CLONE_NEWNS));
    ASSERT_OK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    ASSERT_OK(mount("none", run, "tmpfs", 0, "mode=0700"));
    dockertest_job_start(&f, &j, RUNNER_AGENT_PATH, "fallback");
    run_lines(&j);
    ASSERT_STR_CONTAINS(buf_str(&j.log), "the agent did not connect to the fast channel");
    ASSERT_STR_CONTAINS(buf_str(&j.log), "fast channel /run/runnerd-agent/agent.sock: No such "
                                         "file or directory; sending on stdout");
    dockertest_job_end(&j);
    ASSERT_EQ(dir_entries(run), 0); /* its socket and directory, removed */
    ASSERT_OK(umount(run));
    cmd = xasprintf("rm -rf %s", run); /* what the engine made beneath */
    free(dockertest_sh(cmd));
    free(cmd);
    fast_teardown(&f, run);
}

TEST(timeout_cancel_and_a_host_that_stops_reading)
{
    struct dockertest f;
    struct dockertest_job j = {0};
    struct err e = {0};
    char *run = NULL;

    run = fast_setup(&f, "fastctl");
    dockertest_job_start(&f, &j, RUNNER_AGENT_PATH, "fastctl");
    ASSERT_STR_CONTAINS(buf_str(&j.log), "(the fast channel)");

    dockertest_job_step(&j, "echo started; sleep 60\n", 300);
    dockertest_run_until(&f, &j.exited);
    ASSERT(j.flags & AGENTP_EXIT_TIMED_OUT);
    ASSERT_STR_EQ(buf_str(&j.out), "started\n");

    dockertest_job_step(&j, "echo started; sleep 60\n", 0);
    while (j.out.len == 0)
        dockertest_run_for(&f, 20);
    ASSERT_OK(agentconn_cancel(j.x->conn, 1, 0, &e));
    dockertest_run_until(&f, &j.exited);
    ASSERT(j.flags & AGENTP_EXIT_CANCELLED);

    /* The host does not read (its loop does not run) while the step prints 45 MB, far more
     * than the socket holds (its buffer is at most net.core.wmem_max, 4 MiB here): the step still ends (seen with docker exec), and every
     * line arrives once the host reads again. */
    const char *id = json_string_value(
        json_object_get(json_object_get(j.x->job_ctx, "container"), "id"));
    ASSERT(id != NULL);
    char *check = xasprintf("i=0; while [ $i -lt 600 ]; do "
                            "docker exec %s test -e /tmp/done && { echo done; exit; }; "
                            "sleep 0.1; i=$((i+1)); done; echo stuck", id);
    dockertest_job_step(&j,
                        "seq 1 1000000 | sed 's/$/ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/'; "
                        "touch /tmp/done; exit 3\n", 0);
    while (j.out.len == 0) /* the step runs (our RUN went out) */
        dockertest_run_for(&f, 1);
    char *seen = dockertest_sh(check);
    ASSERT_STR_EQ(seen, "done\n");
    free(seen);
    free(check);
    dockertest_run_until(&f, &j.exited);
    ASSERT_EQ(j.exit_code, 3);
    struct buf want = BUF_INIT;
    for (int i = 1; i <= 1000000; i++)
        buf_printf(&want, "%d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", i);
    ASSERT_EQ(j.out.len, want.len);
    ASSERT(memcmp(j.out.data, want.data, want.len) == 0);
    buf_free(&want);
    dockertest_job_end(&j);
    fast_teardown(&f, run);
}
