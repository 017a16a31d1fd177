/* dockertest.h: shared fixture for unit tests against the real Docker engine: a loop, httpc,
 * a connected docker client, the offline busybox test image, a unique test label and a guard
 * process that removes everything carrying it (containers, networks, volumes, images) when the
 * test process ends, however it ends. */
#ifndef DOCKERTEST_H
#define DOCKERTEST_H

#include <jansson.h>
#include <uv.h>

#include "docker.h"

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

#endif
