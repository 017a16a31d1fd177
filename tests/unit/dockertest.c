/* dockertest.c: the shared Docker test fixture (see dockertest.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dockertest.h"
#include "harness.h"
#include "runner/buf.h"
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

void
dockertest_run_until(struct dockertest *f, const int *flag)
{
    while (!*flag)
        uv_run(&f->loop, UV_RUN_ONCE);
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
