/* test-dockerexec-noimage.c: executor_setup() of a docker executor refuses a job without an
 * image and leaves no file descriptor behind (it used to open /dev/urandom before that check;
 * cppcheck's resourceLeak, found by the lint target). No Docker engine: nothing is called. */
#include "harness.h"

#include "docker.h"
#include "dockerexec.h"
#include "httpc.h"

#include <dirent.h>
#include <uv.h>

/* The number of entries in /proc/self/fd. */
static int
open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    ASSERT(d != NULL);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

TEST(setup_without_an_image_fails_and_keeps_no_descriptor)
{
    uv_loop_t loop;
    struct docker_config cfg = {.host = "unix:///nonexistent/docker.sock"};
    struct docker *d;
    struct executor *x;
    struct executor_job job = {.name = "noimage", .image = NULL};
    struct err e = {0};

    ASSERT_OK(uv_loop_init(&loop));
    struct httpc *h = httpc_new(&loop);
    ASSERT_OK(docker_new(h, &cfg, &d, &e));
    ASSERT_OK(executor_docker_new(&loop, d, "/bin/sh", "test", &x, &e));
    int before = open_fds();
    ASSERT(executor_setup(x, &job, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "needs an image");
    ASSERT_EQ(open_fds(), before);
    executor_close(x);
    docker_free(d);
    httpc_close(h, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_OK(uv_loop_close(&loop));
}
