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

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "runner/xalloc.h"

TEST(reattach_mid_step_delivers_every_line_once)
{
    struct dockertest f;
    struct dockertest_job j = {0};
    static const char script[] =
        "i=1; while [ $i -le 300 ]; do echo \"line $i\"; i=$((i+1)); "
        "[ $((i % 20)) -eq 0 ] && sleep 0.05; done; exit 7\n";
    struct buf want = BUF_INIT;

    for (int i = 1; i <= 300; i++) {
        buf_printf(&want, "line %d\n", i);
        /* Lose the stream once, mid-step, once 50 lines arrived. */
        if (i == 50)
            j.reattach_at = want.len;
    }
    dockertest_setup(&f, "dockerexec");
    /* Objects carry this process's owner label; the guard removes them by it. */
    dockertest_guard_owner();
    struct executor_job job = {.name = "reattach", .image = f.image};
    dockertest_job_setup(&f, &j, RUNNER_AGENT_PATH, &job);
    dockertest_run_until(&f, &j.ready);
    ASSERT_STR_EQ(j.x->workspace, "/workspace");
    ASSERT(j.x->workspace_mount != NULL);

    ASSERT_EQ(dockertest_job_run(&j, script), 7);
    ASSERT(j.reattached);
    ASSERT_EQ(j.out.len, want.len);
    ASSERT(memcmp(j.out.data, want.data, want.len) == 0);
    buf_free(&want);

    dockertest_job_end(&j);
    char *left = dockertest_sh("docker ps -aq --filter label=io.runnerd.runner=test "
                               "--filter label=io.runnerd.job=reattach | wc -l");
    ASSERT_STR_EQ(left, "0\n");
    free(left);
    dockertest_teardown(&f);
}

/* ---------------------------------------------------------------- what the engine is asked */

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

TEST(job_without_services_has_no_network_and_no_log_file)
{
    struct dockertest f;
    struct dockertest_job j = {0};
    static const char secret[] = "dx-s3cr3t-9fQ2wLx7";

    dockertest_setup(&f, "dockerexec-bridge");
    dockertest_guard_owner();
    struct executor_job job = {.name = "bridge", .image = f.image};
    dockertest_job_setup(&f, &j, RUNNER_AGENT_PATH, &job);
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
    ASSERT_EQ(dockertest_job_run(&j, script), 0);
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

    dockertest_job_end(&j);
    char *gone = inspect(id, "{{.Id}}");
    ASSERT_STR_CONTAINS(gone, "No such");
    ASSERT_EQ(job_networks(job_label), 0);
    free(gone);
    free(job_label);
    free(nets);
    free(mode);
    free(id);
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
    struct dockertest_job a = {0}, b = {0};

    dockertest_setup(&f, "dockerexec-icc");
    dockertest_guard_owner();
    struct executor_job ja = {.name = "icc-a", .image = f.image};
    struct executor_job jb = {.name = "icc-b", .image = f.image};
    dockertest_job_setup(&f, &a, RUNNER_AGENT_PATH, &ja);
    dockertest_job_setup(&f, &b, RUNNER_AGENT_PATH, &jb);
    dockertest_run_until(&f, &a.ready);
    dockertest_run_until(&f, &b.ready);
    char *count = dockertest_sh("docker network ls -q --filter name=^runnerd-isolated$ | wc -l");
    ASSERT_STR_EQ(count, "1\n");
    char *ida = xstrdup(json_string_value(
        json_object_get(json_object_get(a.x->job_ctx, "container"), "id")));
    char *ip = inspect(ida, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    ASSERT(ip[0] != '\0');

    /* Job a serves a page on port 8080 (httpd goes to the background on its own). */
    ASSERT_EQ(dockertest_job_run(&a, "mkdir -p /tmp/www && "
                                     "echo job-a-secret-page > /tmp/www/index.html && "
                                     "httpd -p 8080 -h /tmp/www && sleep 1 && "
                                     "wget -q -O - http://127.0.0.1:8080/ && echo a-serves\n"),
              0);
    ASSERT_STR_CONTAINS(buf_str(&a.out), "a-serves");
    /* The control: the host reaches it. */
    char *cmd = xasprintf("curl -s -m 5 http://%s:8080/ 2>&1 || true", ip);
    char *host = dockertest_sh(cmd);
    ASSERT_STR_CONTAINS(host, "job-a-secret-page");
    /* The attack: job b does not. */
    char *script = xasprintf("if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s 8080 | "
                             "grep -q job-a-secret-page; then echo b-reached-a; "
                             "else echo b-refused; fi\n", ip);
    ASSERT_EQ(dockertest_job_run(&b, script), 0);
    ASSERT_STR_CONTAINS(buf_str(&b.out), "b-refused");
    ASSERT(strstr(buf_str(&b.out), "job-a-secret-page") == NULL);

    dockertest_job_end(&a);
    dockertest_job_end(&b);
    free(script);
    free(host);
    free(cmd);
    free(ip);
    free(ida);
    free(count);
    dockertest_teardown(&f);
}

TEST(job_with_a_service_gets_its_network_and_the_service_answers_to_its_id)
{
    struct dockertest f;
    struct dockertest_job j = {0};

    dockertest_setup(&f, "dockerexec-svc");
    dockertest_guard_owner();
    json_t *services = json_pack("{s:{s:s, s:s}}", "web", "image", f.image, "command",
                                 "httpd -f -p 8080 -h /etc");
    struct executor_job job = {.name = "svc", .image = f.image, .services = services};
    dockertest_job_setup(&f, &j, RUNNER_AGENT_PATH, &job);
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
    ASSERT_EQ(dockertest_job_run(&j, "wget -q -O - http://web:8080/hostname "
                                     ">/dev/null && echo web-answered\n"), 0);
    ASSERT_STR_CONTAINS(buf_str(&j.out), "web-answered");

    dockertest_job_end(&j);
    /* The network goes without holding up the close: give it a few seconds. */
    for (int i = 0; i < 100 && job_networks(job_label) > 0; i++)
        dockertest_run_for(&f, 100);
    ASSERT_EQ(job_networks(job_label), 0);
    json_decref(services);
    free(sdriver);
    free(driver);
    free(mode);
    free(job_label);
    free(id);
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
    struct dockertest_job j = {.may_fail = true};

    dockertest_setup(&f, "dockerexec-svcfail");
    dockertest_guard_owner();
    json_t *services = json_pack("{s:{s:s, s:s}}", "quit", "image", f.image, "command",
                                 "sh -c 'exit 3'");
    struct executor_job job = {.name = "svcfail", .image = f.image, .services = services};
    dockertest_job_setup(&f, &j, RUNNER_AGENT_PATH, &job);
    dockertest_run_until(&f, &j.ready);
    ASSERT(j.setup_rc < 0);
    ASSERT_STR_CONTAINS(j.setup_msg, "service 'quit'");
    ASSERT_STR_CONTAINS(j.setup_msg, "exited with code 3");

    dockertest_job_end(&j);
    ASSERT_EQ(j.ready, 1); /* told once */
    for (int i = 0; i < 100 && owner_objects() > 0; i++)
        dockertest_run_for(&f, 100);
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
    struct dockertest_job j = {0};

    dockertest_setup(&f, name);
    dockertest_guard_owner();
    struct executor_job job = {.name = name, .image = f.image, .options = opts};
    dockertest_job_setup(&f, &j, RUNNER_AGENT_PATH, &job);
    dockertest_run_until(&f, &j.ready);
    char *id = xstrdup(json_string_value(
        json_object_get(json_object_get(j.x->job_ctx, "container"), "id")));
    char *m = inspect(id, "{{range .Mounts}}{{if eq .Destination \"/.runner/agent\"}}"
                          "{{.Type}} {{.RW}}{{end}}{{end}}");
    ASSERT_STR_EQ(m, "bind false");
    ASSERT_EQ(dockertest_job_run(&j, "ls -ld /var/run/act/workflow /workspace | cut -c1-10\n"
                                     "touch /workspace/f /var/run/act/workflow/f && echo writable\n"
                                     "{ echo x > /.runner/agent; } 2>/dev/null && echo overwritten\n"
                                     "exit 0\n"),
              0);
    ASSERT_STR_EQ(buf_str(&j.out), "drwxrwxrwx\ndrwxrwxrwx\nwritable\n");
    dockertest_job_end(&j);
    free(m);
    free(id);
    dockertest_teardown(&f);
}

TEST(agent_bound_read_only_and_directories_made_without_an_archive)
{
    agent_bound_job("dockerexec-agentbind", NULL);
}
