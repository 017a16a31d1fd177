/* dockertest.h: shared fixture for unit tests against the real Docker engine: a loop, httpc,
 * a connected docker client, the offline busybox test image, a unique test label and a guard
 * process that removes everything carrying it (containers, networks, volumes, images) when the
 * test process ends, however it ends. Also a job on the docker executor driven through its agent
 * (struct dockertest_job: setup, steps, close) for the executor's tests. */
#ifndef DOCKERTEST_H
#define DOCKERTEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "docker.h"
#include "executor.h"
#include "runner/buf.h"

#define DOCKERTEST_LABEL_KEY "io.runnerd.test"

struct dockertest {
    uv_loop_t loop;
    struct httpc *http;
    struct docker *d;
    char label_val[96];
    char label[160]; /* key=value, for filters */
    char image[128]; /* runnerd-test/busybox:<hash> */
};

/* Sets up f for the test called name (fails the test without a Docker engine). */
void dockertest_setup(struct dockertest *f, const char *name);
/* Sweeps the label (asserting nothing was left), frees, asserts uv_loop_close() == 0. */
void dockertest_teardown(struct dockertest *f);
/* Returns new labels {managed, runner, job, test label}. */
json_t *dockertest_labels(struct dockertest *f);
/* Number of containers carrying the test label (all states). */
int dockertest_count(struct dockertest *f);
/* Runs the loop until *flag is non-zero. */
void dockertest_run_until(struct dockertest *f, const int *flag);
/* Runs a shell command and returns its stdout (new string, trailing newline kept). */
char *dockertest_sh(const char *cmd);
/* Runs the shell command cmd after this process ends, however it ends (a failed assertion's
 * _exit or the harness's SIGKILL): a child waits for EOF on a pipe. */
void dockertest_guard_cmd(const char *cmd);
/* Runs the loop for ms milliseconds. */
void dockertest_run_for(struct dockertest *f, unsigned ms);

/* A job on the docker executor, driven through its agent: what the executor's callbacks
 * report. Zero it (setting may_fail or reattach_at as wanted) before dockertest_job_setup(). */
struct dockertest_job {
    struct dockertest *f;
    struct executor *x;
    int ready; /* how many times on_ready was called */
    int exited, closed, written;
    int exit_code;
    uint32_t flags;     /* the last EXITED's flags */
    size_t reattach_at; /* dockerexec_reattach() once this many output bytes arrived (0: no) */
    int reattached;
    bool may_fail; /* the setup is expected to fail: its error is kept, not a failure */
    int setup_rc;
    char setup_msg[512];
    struct buf out; /* the current step's output */
    struct buf log; /* the executor's on_log lines, each ending in a newline */
};

/* Removes what this process's docker executors create (by their owner label) when the test
 * process ends, however it ends. */
void dockertest_guard_owner(void);
/* Creates j's docker executor (agent: the runner-agent binary) and starts the setup of job;
 * j->ready says when it finished. */
void dockertest_job_setup(struct dockertest *f, struct dockertest_job *j, const char *agent,
                          const struct executor_job *job);
/* dockertest_job_setup() with an image-only job called name, then runs until it is ready. */
void dockertest_job_start(struct dockertest *f, struct dockertest_job *j, const char *agent,
                          const char *name);
/* Starts script as step 1 (timeout_ms 0: none); j->out is emptied first. */
void dockertest_job_step(struct dockertest_job *j, const char *script, uint32_t timeout_ms);
/* Runs script as step 1 to its end; returns its exit code, its output in j->out. */
int dockertest_job_run(struct dockertest_job *j, const char *script);
/* Closes the executor, runs until it is closed, frees j's buffers. */
void dockertest_job_end(struct dockertest_job *j);

#endif
