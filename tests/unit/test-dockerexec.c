/* test-dockerexec.c: the docker executor against the real engine: setup (image, network,
 * workspace volume, agent upload, attach, start), a step through the agent, and losing the
 * attach stream mid-step: after dockerexec_reattach() every output line arrives exactly once,
 * in order, and the exit follows; close removes container, volume and network. */
#include "harness.h"

#include "dockerexec.h"
#include "dockertest.h"
#include "runner/buf.h"

#include <stdlib.h>
#include <unistd.h>

#include "runner/xalloc.h"

struct run {
    struct dockertest *f;
    struct executor *x;
    int ready, exited, closed, written, reattached;
    int exit_code;
    struct buf out;
};

static void
on_ready(void *arg, int rc, const struct err *e)
{
    struct run *r = arg;

    if (rc < 0)
        test_fail(__FILE__, __LINE__, "setup: %s", e ? e->msg : "");
    r->ready = 1;
}

static int
count_lines(const struct buf *b)
{
    int n = 0;

    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

static void
on_event(void *arg, const struct agentconn_event *ev)
{
    struct run *r = arg;
    struct err e = {0};

    switch (ev->kind) {
    case AGENTCONN_FILE_WRITTEN:
        r->written = 1;
        break;
    case AGENTCONN_OUTPUT:
        buf_append(&r->out, ev->msg->data.p, ev->msg->data.len);
        /* Lose the stream once, mid-step, as a crashed host side would. */
        if (!r->reattached && count_lines(&r->out) >= 50) {
            r->reattached = 1;
            ASSERT_OK(dockerexec_reattach(r->x, &e));
        }
        break;
    case AGENTCONN_EXITED:
        r->exit_code = ev->msg->exit_code;
        r->exited = 1;
        break;
    case AGENTCONN_PROTO_ERROR:
    case AGENTCONN_ERROR:
        test_fail(__FILE__, __LINE__, "agent event %d: %s", (int)ev->kind,
                  ev->err ? ev->err->msg : ev->msg && ev->msg->text ? ev->msg->text : "");
    default:
        break;
    }
}

static void
on_closed(void *arg)
{
    ((struct run *)arg)->closed = 1;
}

static const struct executor_cbs cbs = {
    .on_ready = on_ready,
    .on_event = on_event,
    .on_closed = on_closed,
};

TEST(reattach_mid_step_delivers_every_line_once)
{
    struct dockertest f;
    struct run r = {.f = &f};
    struct err e = {0};
    static const char script[] =
        "i=1; while [ $i -le 300 ]; do echo \"line $i\"; i=$((i+1)); "
        "[ $((i % 20)) -eq 0 ] && sleep 0.05; done; exit 7\n";

    dockertest_setup(&f, "dockerexec");
    /* Objects carry this process's owner label; the fixture's guard removes them by it. */
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char *owner = xasprintf("%s=%s:%ld", DOCKEREXEC_LABEL_OWNER, host, (long)getpid());
    char *cmd = xasprintf(
        "docker ps -aq --filter label=%s | xargs -r docker rm -f -v >/dev/null 2>&1;"
        "docker volume ls -q --filter label=%s | xargs -r docker volume rm -f >/dev/null 2>&1;"
        "docker network ls -q --filter label=%s | xargs -r docker network rm >/dev/null 2>&1",
        owner, owner, owner);
    dockertest_guard_cmd(cmd);
    free(cmd);

    ASSERT_OK(executor_docker_new(&f.loop, f.d, RUNNER_AGENT_PATH, "test", &r.x, &e));
    r.x->cbs = &cbs;
    r.x->arg = &r;
    struct executor_job job = {.name = "reattach", .image = f.image};
    ASSERT_OK(executor_setup(r.x, &job, &e));
    dockertest_run_until(&f, &r.ready);
    ASSERT_STR_EQ(r.x->workspace, "/workspace");
    ASSERT(r.x->workspace_mount != NULL);

    ASSERT_OK(agentconn_write_file(r.x->conn, 1, "/var/run/act/workflow/s.sh", 0755, script,
                                   strlen(script), &e));
    dockertest_run_until(&f, &r.written);
    const char *argv[] = {"sh", "/var/run/act/workflow/s.sh"};
    const char *env[] = {"PATH=/bin"};
    struct agentconn_run run = {.step = 1, .argv = argv, .argc = 2, .env = env, .envc = 1};
    ASSERT_OK(agentconn_run(r.x->conn, &run, &e));
    dockertest_run_until(&f, &r.exited);

    ASSERT(r.reattached);
    ASSERT_EQ(r.exit_code, 7);
    struct buf want = BUF_INIT;
    for (int i = 1; i <= 300; i++)
        buf_printf(&want, "line %d\n", i);
    ASSERT_EQ(r.out.len, want.len);
    ASSERT(memcmp(r.out.data, want.data, want.len) == 0);
    buf_free(&want);
    buf_free(&r.out);

    executor_close(r.x);
    dockertest_run_until(&f, &r.closed);
    char *left = dockertest_sh("docker ps -aq --filter label=io.runnerd.runner=test "
                               "--filter label=io.runnerd.job=reattach | wc -l");
    free(owner);
    ASSERT_STR_EQ(left, "0\n");
    free(left);
    dockertest_teardown(&f);
}
