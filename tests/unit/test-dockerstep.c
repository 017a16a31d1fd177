/* test-dockerstep.c: a container run as a step against the real Docker engine (offline
 * busybox image). Covers: stdout and stderr delivered exactly and separately, exit codes 0
 * and 5, env and workdir honoured, a bind mount visible, an entrypoint override, the image
 * pinned by Id, cancel of `sleep 60` (SIGTERM ignored by PID 1, SIGKILL after the grace: a
 * killed status and the container removed), cancel before the container exists, a missing
 * image with its exact message; the job's label limits (memory, CPUs, pids) in the step
 * container's own cgroup; nothing is left behind (checked by label). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dockerstep.h"
#include "dockertest.h"
#include "harness.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

struct run {
    int done;
    int rc;
    long long exit_code;
    char msg[256];
    struct buf out, err, log;
    struct dockerstep *step;
    int cancel_on_output; /* cancel once output arrives */
};

static void
on_log(const char *line, void *arg)
{
    struct run *r = arg;

    buf_printf(&r->log, "%s\n", line);
}

static void
on_output(int stream, const char *p, size_t n, void *arg)
{
    struct run *r = arg;

    ASSERT(stream == 1 || stream == 2);
    buf_append(stream == 2 ? &r->err : &r->out, p, n);
    if (r->cancel_on_output)
        dockerstep_cancel(r->step);
}

static void
on_done(int rc, long long exit_code, const struct err *e, void *arg)
{
    struct run *r = arg;

    r->done++;
    r->rc = rc;
    r->exit_code = exit_code;
    snprintf(r->msg, sizeof r->msg, "%s", e ? e->msg : "");
}

static const struct dockerstep_cbs cbs = {
    .on_log = on_log, .on_output = on_output, .on_done = on_done};

static void
run_free(struct run *r)
{
    buf_free(&r->out);
    buf_free(&r->err);
    buf_free(&r->log);
}

/* Runs o to completion. */
static void
run(struct dockertest *f, struct dockerstep_opts *o, struct run *r)
{
    struct err e = {0};
    json_t *l = dockertest_labels(f);

    o->labels = l;
    if (dockerstep_run(&f->loop, f->d, o, &cbs, r, &r->step, &e) < 0)
        test_fail(__FILE__, __LINE__, "dockerstep_run: %s", e.msg);
    json_decref(l);
    dockertest_run_until(f, &r->done);
    ASSERT_EQ(r->done, 1);
}

TEST(output_and_exit_codes)
{
    struct dockertest f;
    const char *cmd0[] = {"sh", "-c", "echo out1; echo err1 >&2; printf 'out2'; exit 0", NULL};
    const char *cmd5[] = {"sh", "-c", "echo five; exit 5", NULL};
    struct run r = {0}, r5 = {0};
    struct dockerstep_opts o = {0};

    dockertest_setup(&f, "step-out");
    o.image = f.image;
    o.cmd = cmd0;
    run(&f, &o, &r);
    ASSERT_EQ(r.rc, 0);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_STR_EQ(buf_str(&r.out), "out1\nout2");
    ASSERT_STR_EQ(buf_str(&r.err), "err1\n");
    ASSERT_STR_CONTAINS(buf_str(&r.log), "created container ");
    ASSERT_STR_CONTAINS(buf_str(&r.log), "removed container ");
    ASSERT_EQ(dockertest_count(&f), 0);
    o.cmd = cmd5;
    run(&f, &o, &r5);
    ASSERT_EQ(r5.rc, 0);
    ASSERT_EQ(r5.exit_code, 5);
    ASSERT_STR_EQ(buf_str(&r5.out), "five\n");
    ASSERT_STR_EQ(buf_str(&r5.err), "");
    run_free(&r);
    run_free(&r5);
    dockertest_teardown(&f);
}

TEST(env_workdir_bind_entrypoint)
{
    struct dockertest f;
    const char *env[] = {"GREETING=hello world", "INPUT_WHO=step", NULL};
    const char *ep[] = {"/bin/sh", "-c", NULL};
    const char *cmd[] = {"echo \"$GREETING $INPUT_WHO\"; pwd; cat /mnt/in/file.txt; "
                         "echo written > /mnt/in/out.txt; id -u",
                         NULL};
    char *bind = xasprintf("%s:/mnt/in", test_tmpdir());
    const char *binds[] = {bind, NULL};
    char *path = xasprintf("%s/file.txt", test_tmpdir());
    char *out_path = xasprintf("%s/out.txt", test_tmpdir());
    FILE *fp = fopen(path, "w");
    struct run r = {0};
    struct dockerstep_opts o = {0};
    char *got;
    size_t len;

    ASSERT(fp != NULL);
    fputs("from the host\n", fp);
    fclose(fp);
    ASSERT_OK(chmod(test_tmpdir(), 0777));
    dockertest_setup(&f, "step-env");
    o.image = f.image;
    o.entrypoint = ep;
    o.cmd = cmd;
    o.env = env;
    o.workdir = "/work/dir";
    o.binds = binds;
    o.network = "none";
    run(&f, &o, &r);
    ASSERT_EQ(r.rc, 0);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_STR_EQ(buf_str(&r.out), "hello world step\n/work/dir\nfrom the host\n0\n");
    got = test_read_file(out_path, &len);
    ASSERT(got != NULL);
    ASSERT_STR_EQ(got, "written\n");
    free(got);
    ASSERT_OK(unlink(out_path)); /* written by root in the container; the dir is 0777 */
    run_free(&r);
    free(bind);
    free(path);
    free(out_path);
    dockertest_teardown(&f);
}

TEST(pinned_image_id)
{
    struct dockertest f;
    const char *cmd[] = {"true", NULL};
    struct run r = {0}, bad = {0};
    struct dockerstep_opts o = {0};
    char *id;

    dockertest_setup(&f, "step-pin");
    id = dockertest_sh("docker image inspect -f '{{.Id}}' runnerd-test/busybox:latest");
    id[strcspn(id, "\n")] = '\0';
    o.image = id;
    o.cmd = cmd;
    run(&f, &o, &r);
    ASSERT_EQ(r.rc, 0);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_STR_CONTAINS(buf_str(&r.log), id);
    /* an expected Id that does not match refuses to run anything */
    o.image = f.image;
    o.expect_id = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    run(&f, &o, &bad);
    ASSERT(bad.rc < 0);
    ASSERT_EQ(bad.exit_code, -1);
    ASSERT(bad.msg[0] != '\0');
    run_free(&r);
    run_free(&bad);
    free(id);
    dockertest_teardown(&f);
}

/* A shell command printing the container's own limits as "mem=BYTES pids=N cpu=QUOTA/PERIOD",
 * from cgroup v2 or v1 files. */
#define CGROUP_LIMITS                                                                              \
    "c=/sys/fs/cgroup; if [ -f $c/memory.max ]; then echo mem=$(cat $c/memory.max) "             \
    "pids=$(cat $c/pids.max) cpu=$(tr ' ' / < $c/cpu.max); else "                                \
    "echo mem=$(cat $c/memory/memory.limit_in_bytes) pids=$(cat $c/pids/pids.max) "              \
    "cpu=$(cat $c/cpu/cpu.cfs_quota_us)/$(cat $c/cpu/cpu.cfs_period_us); fi"

TEST(label_limits)
{
    struct dockertest f;
    const char *cmd[] = {"sh", "-c", CGROUP_LIMITS, NULL};
    struct run r = {0}, none = {0};
    struct dockerstep_opts o = {0};
    json_t *limits = json_pack("{s:I, s:I, s:I, s:[s]}", "memory", (json_int_t)(64 << 20),
                               "nano_cpus", (json_int_t)500000000, "pids", (json_int_t)123,
                               "binds", "/etc:/host-etc"); /* binds are the job container's */

    dockertest_setup(&f, "step-limits");
    o.image = f.image;
    o.cmd = cmd;
    o.limits = limits;
    run(&f, &o, &r);
    ASSERT_EQ(r.rc, 0);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_STR_EQ(buf_str(&r.out), "mem=67108864 pids=123 cpu=50000/100000\n");
    /* without settings the engine's defaults: no limit */
    o.limits = NULL;
    run(&f, &o, &none);
    ASSERT_EQ(none.rc, 0);
    ASSERT(strstr(buf_str(&none.out), "mem=67108864") == NULL);
    ASSERT(strstr(buf_str(&none.out), "pids=123") == NULL);
    run_free(&r);
    run_free(&none);
    json_decref(limits);
    dockertest_teardown(&f);
}

TEST(cancel_sleep)
{
    struct dockertest f;
    const char *cmd[] = {"sh", "-c", "echo started; exec sleep 60", NULL};
    struct run r = {.cancel_on_output = 1};
    struct dockerstep_opts o = {0};
    uint64_t t0;

    dockertest_setup(&f, "step-cancel");
    o.image = f.image;
    o.cmd = cmd;
    o.kill_grace_ms = 300;
    t0 = uv_hrtime();
    run(&f, &o, &r);
    ASSERT_EQ(r.rc, ERR_CANCELED);
    /* sleep as PID 1 ignores SIGTERM: SIGKILL after the grace */
    ASSERT_EQ(r.exit_code, 137);
    ASSERT_STR_EQ(buf_str(&r.out), "started\n");
    ASSERT_STR_EQ(r.msg, "docker step canceled");
    ASSERT_STR_CONTAINS(buf_str(&r.log), "SIGKILL");
    ASSERT(uv_hrtime() - t0 < 30ULL * 1000000000ULL);
    ASSERT_EQ(dockertest_count(&f), 0);
    run_free(&r);
    dockertest_teardown(&f);
}

TEST(cancel_sigterm_handled)
{
    struct dockertest f;
    const char *cmd[] = {"sh", "-c", "trap 'echo bye; exit 143' TERM; echo started; "
                         "while :; do sleep 0.1; done", NULL};
    struct run r = {.cancel_on_output = 1};
    struct dockerstep_opts o = {0};

    dockertest_setup(&f, "step-term");
    o.image = f.image;
    o.cmd = cmd;
    o.kill_grace_ms = 20000;
    run(&f, &o, &r);
    ASSERT_EQ(r.rc, ERR_CANCELED);
    ASSERT_EQ(r.exit_code, 143);
    ASSERT_STR_EQ(buf_str(&r.out), "started\nbye\n");
    ASSERT_EQ(dockertest_count(&f), 0);
    run_free(&r);
    dockertest_teardown(&f);
}

TEST(cancel_before_start)
{
    struct dockertest f;
    const char *cmd[] = {"sh", "-c", "echo should not run", NULL};
    struct run r = {0};
    struct dockerstep_opts o = {0};
    struct err e = {0};
    json_t *l;

    dockertest_setup(&f, "step-early");
    l = dockertest_labels(&f);
    o.image = f.image;
    o.cmd = cmd;
    o.labels = l;
    ASSERT_OK(dockerstep_run(&f.loop, f.d, &o, &cbs, &r, &r.step, &e));
    json_decref(l);
    dockerstep_cancel(r.step);
    dockerstep_cancel(r.step);
    dockertest_run_until(&f, &r.done);
    ASSERT_EQ(r.done, 1);
    ASSERT_EQ(r.rc, ERR_CANCELED);
    ASSERT_EQ(r.exit_code, -1);
    ASSERT_STR_EQ(buf_str(&r.out), "");
    ASSERT_EQ(dockertest_count(&f), 0);
    run_free(&r);
    dockertest_teardown(&f);
}

TEST(missing_image_and_bad_input)
{
    struct dockertest f;
    const char *cmd[] = {"true", NULL};
    struct run r = {0}, r2 = {0};
    struct dockerstep_opts o = {0};
    struct err e = {0};

    dockertest_setup(&f, "step-missing");
    o.image = "runnerd-test/nope:1";
    o.cmd = cmd;
    run(&f, &o, &r);
    ASSERT_EQ(r.rc, ERR_NOTFOUND);
    ASSERT_EQ(r.exit_code, -1);
    ASSERT_STR_EQ(r.msg, "image runnerd-test/nope:1: not found locally and pulling is not allowed");
    ASSERT_STR_EQ(buf_str(&r.out), "");
    /* a start failure (missing executable) removes the created container */
    {
        const char *bad[] = {"/no/such/binary", NULL};

        o.image = f.image;
        o.cmd = bad;
        run(&f, &o, &r2);
        ASSERT(r2.rc < 0);
        ASSERT_STR_CONTAINS(r2.msg, "/no/such/binary");
    }
    o.image = "";
    ASSERT_EQ(dockerstep_run(&f.loop, f.d, &o, &cbs, &r, NULL, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "docker step: no image");
    ASSERT_EQ(dockertest_count(&f), 0);
    run_free(&r);
    run_free(&r2);
    dockertest_teardown(&f);
}
