/* test-dockerexec.c: the docker executor against the real engine: setup (image, workspace
 * volume, agent upload, attach, start), a step through the agent, and losing the attach stream
 * mid-step: after dockerexec_reattach() every output line arrives exactly once, in order, and
 * the exit follows; close removes container and volumes. What the engine is asked for: a job
 * without services creates no network of its own (its container is on the shared isolated
 * bridge, where two jobs cannot reach each other) and its container has no log driver, so a secret a step prints is in no file of the engine; a job
 * with a service gets a labelled network on which the service answers to its id, and the
 * network is gone after the close; a service that exits at once fails the setup (once, naming
 * it) while the job container comes up beside it, and the close leaves nothing. On this local
 * engine the agent is a read-only bind the job cannot overwrite, and the workflow and workspace
 * directories are writable (0777) with no archive call (the setup probe makes them). */
#include "harness.h"

#include "dockerexec.h"
#include "dockertest.h"
#include "runner/buf.h"

#include <stdbool.h>
#include <stdio.h>
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

/* ---------------------------------------------------------------- what the engine is asked */

struct job {
    struct dockertest *f;
    struct executor *x;
    int ready, exited, closed, written;
    int exit_code;
    struct buf out;
    bool may_fail;    /* the setup is expected to fail: its error is kept */
    int setup_rc;
    char setup_msg[512];
};

static void
job_ready(void *arg, int rc, const struct err *e)
{
    struct job *j = arg;

    if (rc < 0 && !j->may_fail)
        test_fail(__FILE__, __LINE__, "setup: %s", e ? e->msg : "");
    j->setup_rc = rc;
    snprintf(j->setup_msg, sizeof j->setup_msg, "%s", rc < 0 && e ? e->msg : "");
    j->ready++;
}

static void
job_event(void *arg, const struct agentconn_event *ev)
{
    struct job *j = arg;

    switch (ev->kind) {
    case AGENTCONN_FILE_WRITTEN:
        j->written = 1;
        break;
    case AGENTCONN_OUTPUT:
        buf_append(&j->out, ev->msg->data.p, ev->msg->data.len);
        break;
    case AGENTCONN_EXITED:
        j->exit_code = ev->msg->exit_code;
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

static void
job_closed(void *arg)
{
    ((struct job *)arg)->closed = 1;
}

static const struct executor_cbs job_cbs = {
    .on_ready = job_ready,
    .on_event = job_event,
    .on_closed = job_closed,
};

/* Removes what this process's executors created when the test process ends. */
static void
guard_owner(void)
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

/* Runs script in the job container through the agent; returns its exit code, output in j->out. */
static int
job_run(struct job *j, const char *script)
{
    struct err e = {0};

    j->written = j->exited = 0;
    buf_reset(&j->out);
    ASSERT_OK(agentconn_write_file(j->x->conn, 1, "/var/run/act/workflow/s.sh", 0755, script,
                                   strlen(script), &e));
    dockertest_run_until(j->f, &j->written);
    const char *argv[] = {"sh", "/var/run/act/workflow/s.sh"};
    const char *env[] = {"PATH=/bin"};
    struct agentconn_run run = {.step = 1, .argv = argv, .argc = 2, .env = env, .envc = 1};
    ASSERT_OK(agentconn_run(j->x->conn, &run, &e));
    dockertest_run_until(j->f, &j->exited);
    return j->exit_code;
}

/* `docker inspect -f FORMAT ID`, its output without the newline (new string). */
static char *
inspect(const char *id, const char *format)
{
    char *cmd = xasprintf("docker inspect -f '%s' %s 2>&1 || true", format, id);
    char *out = dockertest_sh(cmd);
    size_t n = strlen(out);

    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    free(cmd);
    return out;
}

/* The number of networks carrying the job label of container id. */
static int
job_networks(const char *job)
{
    char *cmd = xasprintf("docker network ls -q --filter label=io.runnerd.job=%s | wc -l", job);
    char *out = dockertest_sh(cmd);
    int n = atoi(out);

    free(cmd);
    free(out);
    return n;
}

static void
on_tick(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop for ms milliseconds. */
static void
run_for(struct dockertest *f, unsigned ms)
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

TEST(job_without_services_has_no_network_and_no_log_file)
{
    struct dockertest f;
    struct job j = {.f = &f};
    struct err e = {0};
    static const char secret[] = "dx-s3cr3t-9fQ2wLx7";

    dockertest_setup(&f, "dockerexec-bridge");
    guard_owner();
    ASSERT_OK(executor_docker_new(&f.loop, f.d, RUNNER_AGENT_PATH, "test", &j.x, &e));
    j.x->cbs = &job_cbs;
    j.x->arg = &j;
    struct executor_job job = {.name = "bridge", .image = f.image};
    ASSERT_OK(executor_setup(j.x, &job, &e));
    dockertest_run_until(&f, &j.ready);
    ASSERT_STR_EQ(j.x->network, "runnerd-isolated");
    const char *cid = json_string_value(
        json_object_get(json_object_get(j.x->job_ctx, "container"), "id"));
    ASSERT(cid != NULL);
    char *id = xstrdup(cid);

    /* The shared isolated bridge; no network of the job's own. */
    char *mode = inspect(id, "{{.HostConfig.NetworkMode}}");
    ASSERT_STR_EQ(mode, "runnerd-isolated");
    char *nets = inspect(id, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}");
    ASSERT_STR_EQ(nets, "runnerd-isolated ");
    char *icc = dockertest_sh("docker network inspect -f "
                              "'{{index .Options \"com.docker.network.bridge.enable_icc\"}}' "
                              "runnerd-isolated");
    ASSERT_STR_EQ(icc, "false\n");
    free(icc);
    char *job_label = inspect(id, "{{index .Config.Labels \"io.runnerd.job\"}}");
    ASSERT(job_label[0] != '\0');
    ASSERT_EQ(job_networks(job_label), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j.x->job_ctx, "container"),
                                                    "network")), "");

    /* No log driver: the step's output reaches us through attach and nowhere else. */
    char *script = xasprintf("echo 'the token is %s'\n", secret);
    ASSERT_EQ(job_run(&j, script), 0);
    ASSERT_STR_CONTAINS(buf_str(&j.out), secret);
    char *driver = inspect(id, "{{.HostConfig.LogConfig.Type}}");
    ASSERT_STR_EQ(driver, "none");
    char *path = inspect(id, "{{.LogPath}}");
    ASSERT_STR_EQ(path, "");
    /* Where the engine's files are readable (root on this host), none holds the secret. */
    char *root = inspect(id, "{{.ResolvConfPath}}"); /* <root>/containers/<id>/resolv.conf */
    char *slash = strstr(root, "/containers/");
    if (slash && access(root, R_OK) == 0) {
        slash[strlen("/containers")] = '\0';
        char *cmd = xasprintf("grep -rlF '%s' '%s' 2>/dev/null | wc -l", secret, root);
        char *hits = dockertest_sh(cmd);
        ASSERT_STR_EQ(hits, "0\n");
        free(hits);
        free(cmd);
    }
    free(root);
    free(path);
    free(driver);
    free(script);

    executor_close(j.x);
    dockertest_run_until(&f, &j.closed);
    char *gone = inspect(id, "{{.Id}}");
    ASSERT_STR_CONTAINS(gone, "No such");
    ASSERT_EQ(job_networks(job_label), 0);
    free(gone);
    free(job_label);
    free(nets);
    free(mode);
    free(id);
    buf_free(&j.out);
    dockertest_teardown(&f);
}

/* The attack: a job listens on a port and another job, on the same runner at the same time,
 * connects to it by address. On the shared bridge inter-container traffic is off, so the
 * second job gets nothing; the host (the positive control) does reach the listener. Both jobs
 * start at once, so the shared network is also made only once (two of the same name would
 * make every later job's create fail as ambiguous). */
TEST(two_jobs_without_services_cannot_reach_each_other)
{
    struct dockertest f;
    struct job a = {.f = &f}, b = {.f = &f};
    struct err e = {0};

    dockertest_setup(&f, "dockerexec-icc");
    guard_owner();
    ASSERT_OK(executor_docker_new(&f.loop, f.d, RUNNER_AGENT_PATH, "test", &a.x, &e));
    ASSERT_OK(executor_docker_new(&f.loop, f.d, RUNNER_AGENT_PATH, "test", &b.x, &e));
    a.x->cbs = b.x->cbs = &job_cbs;
    a.x->arg = &a;
    b.x->arg = &b;
    struct executor_job ja = {.name = "icc-a", .image = f.image};
    struct executor_job jb = {.name = "icc-b", .image = f.image};
    ASSERT_OK(executor_setup(a.x, &ja, &e));
    ASSERT_OK(executor_setup(b.x, &jb, &e));
    dockertest_run_until(&f, &a.ready);
    dockertest_run_until(&f, &b.ready);
    char *count = dockertest_sh("docker network ls -q --filter name=^runnerd-isolated$ | wc -l");
    ASSERT_STR_EQ(count, "1\n");
    char *ida = xstrdup(json_string_value(
        json_object_get(json_object_get(a.x->job_ctx, "container"), "id")));
    char *ip = inspect(ida, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    ASSERT(ip[0] != '\0');

    /* Job a serves a page on port 8080 (httpd goes to the background on its own). */
    ASSERT_EQ(job_run(&a, "mkdir -p /tmp/www && echo job-a-secret-page > /tmp/www/index.html && "
                          "httpd -p 8080 -h /tmp/www && sleep 1 && "
                          "wget -q -O - http://127.0.0.1:8080/ && echo a-serves\n"), 0);
    ASSERT_STR_CONTAINS(buf_str(&a.out), "a-serves");
    /* The control: the host reaches it. */
    char *cmd = xasprintf("curl -s -m 5 http://%s:8080/ 2>&1 || true", ip);
    char *host = dockertest_sh(cmd);
    ASSERT_STR_CONTAINS(host, "job-a-secret-page");
    /* The attack: job b does not. */
    char *script = xasprintf("if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s 8080 | "
                             "grep -q job-a-secret-page; then echo b-reached-a; "
                             "else echo b-refused; fi\n", ip);
    ASSERT_EQ(job_run(&b, script), 0);
    ASSERT_STR_CONTAINS(buf_str(&b.out), "b-refused");
    ASSERT(strstr(buf_str(&b.out), "job-a-secret-page") == NULL);

    executor_close(a.x);
    executor_close(b.x);
    dockertest_run_until(&f, &a.closed);
    dockertest_run_until(&f, &b.closed);
    free(script);
    free(host);
    free(cmd);
    free(ip);
    free(ida);
    free(count);
    buf_free(&a.out);
    buf_free(&b.out);
    dockertest_teardown(&f);
}

TEST(job_with_a_service_gets_its_network_and_the_service_answers_to_its_id)
{
    struct dockertest f;
    struct job j = {.f = &f};
    struct err e = {0};

    dockertest_setup(&f, "dockerexec-svc");
    guard_owner();
    ASSERT_OK(executor_docker_new(&f.loop, f.d, RUNNER_AGENT_PATH, "test", &j.x, &e));
    j.x->cbs = &job_cbs;
    j.x->arg = &j;
    json_t *services = json_pack("{s:{s:s, s:s}}", "web", "image", f.image, "command",
                                 "httpd -f -p 8080 -h /etc");
    struct executor_job job = {.name = "svc", .image = f.image, .services = services};
    ASSERT_OK(executor_setup(j.x, &job, &e));
    dockertest_run_until(&f, &j.ready);
    json_t *c = json_object_get(j.x->job_ctx, "container");
    char *id = xstrdup(json_string_value(json_object_get(c, "id")));
    const char *net = json_string_value(json_object_get(c, "network"));
    ASSERT(net != NULL && net[0] != '\0');
    ASSERT(j.x->network != NULL);

    char *job_label = inspect(id, "{{index .Config.Labels \"io.runnerd.job\"}}");
    ASSERT_EQ(job_networks(job_label), 1);
    char *mode = inspect(id, "{{.HostConfig.NetworkMode}}");
    ASSERT_STR_EQ(mode, j.x->network);
    char *driver = inspect(id, "{{.HostConfig.LogConfig.Type}}");
    ASSERT_STR_EQ(driver, "none");
    const char *sid = json_string_value(json_object_get(
        json_object_get(json_object_get(j.x->job_ctx, "services"), "web"), "id"));
    ASSERT(sid != NULL);
    char *sdriver = inspect(sid, "{{.HostConfig.LogConfig.Type}}");
    ASSERT_STR_EQ(sdriver, "none");

    /* The service by its id, from the job container. */
    ASSERT_EQ(job_run(&j, "wget -q -O - http://web:8080/hostname "
                          ">/dev/null && echo web-answered\n"), 0);
    ASSERT_STR_CONTAINS(buf_str(&j.out), "web-answered");

    executor_close(j.x);
    dockertest_run_until(&f, &j.closed);
    /* The network goes without holding up the close: give it a few seconds. */
    for (int i = 0; i < 100 && job_networks(job_label) > 0; i++)
        run_for(&f, 100);
    ASSERT_EQ(job_networks(job_label), 0);
    json_decref(services);
    free(sdriver);
    free(driver);
    free(mode);
    free(job_label);
    free(id);
    buf_free(&j.out);
    dockertest_teardown(&f);
}

/* The number of containers and networks this process's executors left. */
static int
owner_objects(void)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char *cmd = xasprintf("{ docker ps -aq --filter label=%s=%s:%ld; docker network ls -q "
                          "--filter label=%s=%s:%ld; } | wc -l",
                          DOCKEREXEC_LABEL_OWNER, host, (long)getpid(),
                          DOCKEREXEC_LABEL_OWNER, host, (long)getpid());
    char *out = dockertest_sh(cmd);
    int n = atoi(out);

    free(cmd);
    free(out);
    return n;
}

TEST(a_service_that_exits_fails_the_setup_and_the_close_leaves_nothing)
{
    struct dockertest f;
    struct job j = {.f = &f, .may_fail = true};
    struct err e = {0};

    dockertest_setup(&f, "dockerexec-svcfail");
    guard_owner();
    ASSERT_OK(executor_docker_new(&f.loop, f.d, RUNNER_AGENT_PATH, "test", &j.x, &e));
    j.x->cbs = &job_cbs;
    j.x->arg = &j;
    json_t *services = json_pack("{s:{s:s, s:s}}", "quit", "image", f.image, "command",
                                 "sh -c 'exit 3'");
    struct executor_job job = {.name = "svcfail", .image = f.image, .services = services};
    ASSERT_OK(executor_setup(j.x, &job, &e));
    dockertest_run_until(&f, &j.ready);
    ASSERT(j.setup_rc < 0);
    ASSERT_STR_CONTAINS(j.setup_msg, "service 'quit'");
    ASSERT_STR_CONTAINS(j.setup_msg, "exited with code 3");

    executor_close(j.x);
    dockertest_run_until(&f, &j.closed);
    ASSERT_EQ(j.ready, 1); /* told once */
    for (int i = 0; i < 100 && owner_objects() > 0; i++)
        run_for(&f, 100);
    ASSERT_EQ(owner_objects(), 0);
    json_decref(services);
    dockertest_teardown(&f);
}

/* Runs one job with container.options opts: the agent is a read-only bind of the host's
 * runner-agent (no copy in the container), the workflow and workspace directories are there
 * with mode 0777 (made by the setup probe), and the job's attempt to overwrite the agent
 * fails. */
static void
agent_bound_job(const char *name, const char *opts)
{
    struct dockertest f;
    struct job j = {.f = &f};
    struct err e = {0};

    dockertest_setup(&f, name);
    guard_owner();
    ASSERT_OK(executor_docker_new(&f.loop, f.d, RUNNER_AGENT_PATH, "test", &j.x, &e));
    j.x->cbs = &job_cbs;
    j.x->arg = &j;
    struct executor_job job = {.name = name, .image = f.image, .options = opts};
    ASSERT_OK(executor_setup(j.x, &job, &e));
    dockertest_run_until(&f, &j.ready);
    char *id = xstrdup(json_string_value(
        json_object_get(json_object_get(j.x->job_ctx, "container"), "id")));
    char *m = inspect(id, "{{range .Mounts}}{{if eq .Destination \"/.runner/agent\"}}"
                          "{{.Type}} {{.RW}}{{end}}{{end}}");
    ASSERT_STR_EQ(m, "bind false");
    ASSERT_EQ(job_run(&j, "ls -ld /var/run/act/workflow /workspace | cut -c1-10\n"
                          "touch /workspace/f /var/run/act/workflow/f && echo writable\n"
                          "{ echo x > /.runner/agent; } 2>/dev/null && echo overwritten\n"
                          "exit 0\n"), 0);
    ASSERT_STR_EQ(buf_str(&j.out), "drwxrwxrwx\ndrwxrwxrwx\nwritable\n");
    executor_close(j.x);
    dockertest_run_until(&f, &j.closed);
    free(m);
    free(id);
    buf_free(&j.out);
    dockertest_teardown(&f);
}

TEST(agent_bound_read_only_and_directories_made_without_an_archive)
{
    agent_bound_job("dockerexec-agentbind", NULL);
}
