/* dockertest.c: the shared Docker test fixture (see dockertest.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dockerexec.h"
#include "dockertest.h"
#include "harness.h"
#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"

struct res {
    int done;
    int rc;
    char msg[256];
    json_t *json;
};

static void
on_res(const struct docker_res *r, void *arg)
{
    struct res *t = arg;

    t->done = 1;
    t->rc = r->rc;
    snprintf(t->msg, sizeof t->msg, "%s", r->err.msg);
    if (r->json)
        t->json = json_incref(r->json);
}

/* Does nothing: its firing ends an iteration of the loop. */
static void
on_wake(uv_timer_t *t)
{
    (void)t;
}

void
dockertest_run_until(struct dockertest *f, const int *flag)
{
    /* A tick, so that the loop looks at the flag again: a flag set by a timer's callback (the
     * HTTP client's) comes before that iteration's poll, which would otherwise block for as
     * long as nothing else happens (a failed setup: seen hanging a case in CI). */
    uv_timer_t tick;

    uv_timer_init(&f->loop, &tick);
    uv_timer_start(&tick, on_wake, 50, 50);
    while (!*flag)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the tick's close */
}

char *
dockertest_sh(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    struct buf b = {0};
    char line[512];

    ASSERT(p != NULL);
    while (fgets(line, sizeof line, p))
        buf_puts(&b, line);
    ASSERT_EQ(pclose(p), 0);
    if (!b.data)
        return xstrdup("");
    return buf_steal(&b);
}

/* Runs cmd after this process ends, however it ends: the child waits for EOF on a pipe. */
void
dockertest_guard_cmd(const char *cmd)
{
    int fds[2];
    pid_t pid;

    ASSERT(pipe(fds) == 0);
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        char c;

        setsid();
        close(fds[1]);
        if (chdir("/") != 0)
            _exit(1);
        while (read(fds[0], &c, 1) > 0)
            ;
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    /* fds[1] stays open until we die */
}

static void
guard(const char *label)
{
    char *cmd = xasprintf(
        "docker ps -aq --filter label=%s | xargs -r docker rm -f -v >/dev/null 2>&1;"
        "docker network ls -q --filter label=%s | xargs -r docker network rm >/dev/null 2>&1;"
        "docker volume ls -q --filter label=%s | xargs -r docker volume rm -f >/dev/null 2>&1;"
        "docker image ls -q --filter label=%s | xargs -r docker rmi -f >/dev/null 2>&1",
        label, label, label, label);

    dockertest_guard_cmd(cmd);
    free(cmd);
}

void
dockertest_setup(struct dockertest *f, const char *name)
{
    struct res t = {0};
    struct err e = {0};
    char *img;

    memset(f, 0, sizeof *f);
    snprintf(f->label_val, sizeof f->label_val, "%s-%d", name, (int)getpid());
    snprintf(f->label, sizeof f->label, "%s=%s", DOCKERTEST_LABEL_KEY, f->label_val);
    guard(f->label);
    img = dockertest_sh(RUNNERD_SOURCE_DIR "/tests/images/build.sh busybox | tail -n1");
    img[strcspn(img, "\n")] = '\0';
    snprintf(f->image, sizeof f->image, "%s", img);
    free(img);
    ASSERT_EQ(uv_loop_init(&f->loop), 0);
    f->http = httpc_new(&f->loop);
    ASSERT_OK(docker_new(f->http, NULL, &f->d, &e));
    ASSERT_OK(docker_connect(f->d, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "the Docker engine is required for these tests: %s",
                  t.msg);
    json_decref(t.json);
}

int
dockertest_count(struct dockertest *f)
{
    struct res t = {0};
    struct err e = {0};
    int n;

    ASSERT_OK(docker_container_list(f->d, f->label, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    n = (int)json_array_size(t.json);
    json_decref(t.json);
    return n;
}

void
dockertest_teardown(struct dockertest *f)
{
    struct res r = {0};
    struct err e = {0};

    ASSERT_EQ(dockertest_count(f), 0);
    ASSERT_OK(docker_sweep(f->d, f->label, on_res, &r, &e));
    dockertest_run_until(f, &r.done);
    ASSERT_EQ(r.rc, 0);
    json_decref(r.json);
    docker_free(f->d);
    httpc_close(f->http, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&f->loop), 0);
}

json_t *
dockertest_labels(struct dockertest *f)
{
    json_t *l = docker_labels_new("test-runner", f->label_val);

    json_object_set_new(l, DOCKERTEST_LABEL_KEY, json_string(f->label_val));
    return l;
}

/* dockertest_run_for()'s timer: sets the flag it carries. */
static void
on_tick(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

void
dockertest_run_for(struct dockertest *f, unsigned ms)
{
    uv_timer_t t;
    int done = 0;

    uv_timer_init(&f->loop, &t);
    t.data = &done;
    uv_timer_start(&t, on_tick, ms, 0);
    dockertest_run_until(f, &done);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* ------------------------------------------------------------- a job on the docker executor */

void
dockertest_guard_owner(void)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char *owner = xasprintf("%s=%s:%ld", DOCKEREXEC_LABEL_OWNER, host, (long)getpid());
    char *cmd = xasprintf(
        "docker ps -aq --filter label=%s | xargs -r docker rm -f -v >/dev/null 2>&1;"
        "docker network ls -q --filter label=%s | xargs -r docker network rm >/dev/null 2>&1;"
        "docker volume ls -q --filter label=%s | xargs -r docker volume rm -f >/dev/null 2>&1",
        owner, owner, owner);

    dockertest_guard_cmd(cmd);
    free(cmd);
    free(owner);
}

/* The setup's end: a failure fails the test unless j->may_fail; counted, so once is checked. */
static void
job_ready(void *arg, int rc, const struct err *e)
{
    struct dockertest_job *j = arg;

    if (rc < 0 && !j->may_fail)
        test_fail(__FILE__, __LINE__, "setup: %s", e ? e->msg : "");
    j->setup_rc = rc;
    snprintf(j->setup_msg, sizeof j->setup_msg, "%s", rc < 0 && e ? e->msg : "");
    j->ready++;
}

/* The agent's events: output collected (reattaching once past j->reattach_at), the exit kept,
 * an error fails the test. */
static void
job_event(void *arg, const struct agentconn_event *ev)
{
    struct dockertest_job *j = arg;

    switch (ev->kind) {
    case AGENTCONN_FILE_WRITTEN:
        j->written = 1;
        break;
    case AGENTCONN_OUTPUT:
        buf_append(&j->out, ev->msg->data.p, ev->msg->data.len);
        /* Lose the stream once, mid-step, as a crashed host side would. */
        if (j->reattach_at > 0 && !j->reattached && j->out.len >= j->reattach_at) {
            struct err e = {0};
            j->reattached = 1;
            ASSERT_OK(dockerexec_reattach(j->x, &e));
        }
        break;
    case AGENTCONN_EXITED:
        j->exit_code = ev->msg->exit_code;
        j->flags = ev->msg->flags;
        j->exited = 1;
        break;
    case AGENTCONN_PROTO_ERROR:
    case AGENTCONN_ERROR:
        test_fail(__FILE__, __LINE__, "agent event %d: %s", (int)ev->kind,
                  ev->err ? ev->err->msg : ev->msg && ev->msg->text ? ev->msg->text : "");
    default:
        break;
    }
}

/* The executor's lines about the job, kept in j->log. */
static void
job_log(void *arg, const char *line)
{
    struct dockertest_job *j = arg;

    buf_printf(&j->log, "%s\n", line);
    /* Also as it comes, so that a case that hangs shows how far its job got. */
    log_trace_msg("executor: %s", line);
}

/* executor_close() finished. */
static void
job_closed(void *arg)
{
    ((struct dockertest_job *)arg)->closed = 1;
}

static const struct executor_cbs job_cbs = {
    .on_ready = job_ready,
    .on_event = job_event,
    .on_log = job_log,
    .on_closed = job_closed,
};

void
dockertest_job_setup(struct dockertest *f, struct dockertest_job *j, const char *agent,
                     const struct executor_job *job)
{
    struct err e = {0};

    j->f = f;
    if (!log_trace_on) { /* every phase on stderr (ctest shows it only when a case fails) */
        setenv("RUNNERD_TRACE", "1", 0);
        log_trace_init();
    }
    ASSERT_OK(executor_docker_new(&f->loop, f->d, agent, "test", &j->x, &e));
    j->x->cbs = &job_cbs;
    j->x->arg = j;
    ASSERT_OK(executor_setup(j->x, job, &e));
}

void
dockertest_job_start(struct dockertest *f, struct dockertest_job *j, const char *agent,
                     const char *name)
{
    struct executor_job job = {.name = name, .image = f->image};

    dockertest_job_setup(f, j, agent, &job);
    dockertest_run_until(f, &j->ready);
}

void
dockertest_job_step(struct dockertest_job *j, const char *script, uint32_t timeout_ms)
{
    struct err e = {0};

    j->written = j->exited = 0;
    j->flags = 0;
    buf_reset(&j->out);
    ASSERT_OK(agentconn_write_file(j->x->conn, 1, "/var/run/act/workflow/s.sh", 0755, script,
                                   strlen(script), &e));
    dockertest_run_until(j->f, &j->written);
    const char *argv[] = {"sh", "/var/run/act/workflow/s.sh"};
    const char *env[] = {"PATH=/bin"};
    struct agentconn_run run =
        {.step = 1, .argv = argv, .argc = 2, .env = env, .envc = 1, .timeout_ms = timeout_ms};
    ASSERT_OK(agentconn_run(j->x->conn, &run, &e));
}

int
dockertest_job_run(struct dockertest_job *j, const char *script)
{
    dockertest_job_step(j, script, 0);
    dockertest_run_until(j->f, &j->exited);
    return j->exit_code;
}

void
dockertest_job_end(struct dockertest_job *j)
{
    executor_close(j->x);
    dockertest_run_until(j->f, &j->closed);
    buf_free(&j->out);
    buf_free(&j->log);
}
