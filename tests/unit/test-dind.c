/* test-dind.c: the per-job dind sidecar against the real Docker engine, with the offline test
 * images `dind` (busybox + the host's engine) and `docker-cli` (tests/images/build.sh). Covers:
 * dind_privileges: privileged on an engine that refuses privileged containers (-EPERM, a plain
 * message naming the remedies; every object labelled, so the label sweep leaves nothing) or,
 * on an engine that allows them, a ready sidecar; the caps recipe: ready, then a client
 * container on the job network with dind_job()'s env and bind runs docker version/info (the
 * inner engine's vfs driver, not the host's), builds a FROM-scratch image and runs it; an image
 * without dockerd (busybox) and a dockerd that exits at once, each failing fast with the exit
 * and the sidecar's log lines; the TLS material (the client volume holds ca.pem, cert.pem and
 * key.pem only, no CA key, not the server key; the server key is 0600) and the inner engine
 * refusing clients without a certificate; a deadline passed before the first health check
 * (ERR_TIMEOUT); a stale sidecar of the same name replaced; the job's label limits on the
 * sidecar (memory without extra swap, CPUs, pids);
 * dind_free() while calls are in flight; bad options refused up front. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dind.h"
#include "dockertest.h"
#include "harness.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

struct run {
    int done, calls, rc;
    char msg[256];
};

static void
on_done(void *arg, int rc, const struct err *e)
{
    struct run *r = arg;

    r->done = 1;
    r->calls++;
    r->rc = rc;
    snprintf(r->msg, sizeof r->msg, "%s", e ? e->msg : "");
}

struct res {
    int done, rc;
    char msg[256];
};

static void
on_res(const struct docker_res *res, void *arg)
{
    struct res *t = arg;

    t->done = 1;
    t->rc = res->rc;
    snprintf(t->msg, sizeof t->msg, "%s", res->err.msg);
}

/* The last stdout line of tests/images/build.sh KIND: the image reference. */
static char *
test_image(const char *kind)
{
    char *cmd = xasprintf(RUNNERD_SOURCE_DIR "/tests/images/build.sh %s | tail -n1", kind);
    char *ref = dockertest_sh(cmd);

    free(cmd);
    ref[strcspn(ref, "\n")] = '\0';
    ASSERT(ref[0] != '\0');
    return ref;
}

/* Runs cmd (stdout and stderr); returns its output, and its exit status in *status. */
static char *
sh_status(const char *cmd, int *status)
{
    char *full = xasprintf("%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    struct buf b = BUF_INIT;
    char line[512];
    int st;

    ASSERT(p != NULL);
    while (fgets(line, sizeof line, p))
        buf_puts(&b, line);
    st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
    free(full);
    return buf_steal(&b);
}

/* A labelled job network named after the test; returns its name. */
static char *
net_create(struct dockertest *f)
{
    struct res t = {0};
    struct err e = {0};
    json_t *l = dockertest_labels(f);
    char *name = xasprintf("%s-net", f->label_val);

    ASSERT_OK(docker_network_create(f->d, name, l, false, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "network: %s", t.msg);
    json_decref(l);
    return name;
}

/* Removes everything the test label marks (as the executor's teardown does by job label). */
static void
sweep(struct dockertest *f)
{
    struct res t = {0};
    struct err e = {0};

    ASSERT_OK(docker_sweep(f->d, f->label, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "sweep: %s", t.msg);
}

static int
count_lines(const char *cmd)
{
    int st, n = 0;
    char *out = sh_status(cmd, &st);

    ASSERT_EQ(st, 0);
    for (char *p = out; *p; p++)
        n += *p == '\n';
    free(out);
    return n;
}

/* Objects of each kind carrying the test label. */
static void
count_objects(struct dockertest *f, int *containers, int *volumes, int *networks)
{
    char *c = xasprintf("docker ps -aq --filter label=%s", f->label);
    char *v = xasprintf("docker volume ls -q --filter label=%s", f->label);
    char *n = xasprintf("docker network ls -q --filter label=%s", f->label);

    *containers = count_lines(c);
    *volumes = count_lines(v);
    *networks = count_lines(n);
    free(c);
    free(v);
    free(n);
}

/* Starts a sidecar for the test's job with the label limits given (may be NULL) and runs the
 * loop until done. */
static struct dind *
start_limited(struct dockertest *f, struct run *r, const char *image, const char *net,
              enum dind_priv priv, const char *const *args, const json_t *limits)
{
    json_t *labels = dockertest_labels(f);
    struct dind_opts o = {
        .job = f->label_val,
        .image = image,
        .network = net,
        .labels = labels,
        .priv = priv,
        .args = args,
        .ready_timeout_s = 60,
        .limits = limits,
    };
    struct dind *x = NULL;
    struct err e = {0};

    ASSERT_OK(dind_start(f->d, &o, on_done, r, &x, &e));
    json_decref(labels);
    ASSERT(x != NULL);
    ASSERT_EQ(r->calls, 0); /* never from inside dind_start() */
    dockertest_run_until(f, &r->done);
    ASSERT_EQ(r->calls, 1);
    return x;
}

/* Starts a sidecar without limits (see start_limited()). */
static struct dind *
start(struct dockertest *f, struct run *r, const char *image, const char *net,
      enum dind_priv priv, const char *const *args)
{
    return start_limited(f, r, image, net, priv, args, NULL);
}

/* Fails the test with the start's message and the sidecar's logs. */
static void
require_ready(struct run *r, struct dind *x)
{
    if (r->rc != 0)
        test_fail(__FILE__, __LINE__, "dind start: %d %s\nlogs:\n%s", r->rc, r->msg,
                  dind_logs(x) ? dind_logs(x) : "(none)");
}

/* `docker run` of the docker-cli image on the job network with extra docker-run flags, running
 * script (written to the test's directory and bound in). Returns the output. */
static char *
client_run(struct dockertest *f, const char *net, const char *flags, const char *script,
           int *status)
{
    char *path = xasprintf("%s/client.sh", test_tmpdir());
    FILE *fp = fopen(path, "w");
    char *img = test_image("docker-cli");
    char *cmd, *out;

    ASSERT(fp != NULL);
    fputs(script, fp);
    fclose(fp);
    cmd = xasprintf("docker run --rm --label %s --network %s %s -v %s:/client.sh:ro %s "
                    "sh /client.sh",
                    f->label, net, flags, path, img);
    out = sh_status(cmd, status);
    free(cmd);
    free(img);
    free(path);
    return out;
}

/* The docker-run flags that give a container dind_job()'s env and bind. */
static char *
job_flags(const struct dind_job *j)
{
    struct buf b = BUF_INIT;

    for (const char *const *v = j->env; *v; v++)
        buf_printf(&b, "-e %s ", *v);
    buf_printf(&b, "-v %s", j->bind);
    return buf_steal(&b);
}

/* Whether this engine starts privileged containers at all. */
static int
engine_allows_privileged(struct dockertest *f)
{
    char *cmd = xasprintf("docker run --rm --label %s --privileged %s true", f->label, f->image);
    int st;
    char *out = sh_status(cmd, &st);

    free(cmd);
    free(out);
    return st == 0;
}

TEST(privileged_refused_with_plain_message)
{
    struct dockertest f;
    struct run r = {0};
    char *img, *net;
    struct dind *x;
    int c, v, n, allowed;

    dockertest_setup(&f, "dind-priv");
    img = test_image("dind");
    net = net_create(&f);
    allowed = engine_allows_privileged(&f);
    x = start(&f, &r, img, net, DIND_PRIV_PRIVILEGED, NULL);
    if (allowed) {
        /* an engine with full capabilities runs the documented recipe */
        require_ready(&r, x);
        ASSERT(dind_job(x) != NULL);
    } else {
        ASSERT_EQ(r.rc, DIND_ERR_PERM);
        ASSERT_STR_CONTAINS(r.msg, "the Docker engine refused the privileges the dind sidecar "
                                   "needs (unable to apply caps: operation not permitted)");
        ASSERT_STR_CONTAINS(r.msg, "cannot run docker: dind with dind_privileges: privileged");
        ASSERT_STR_CONTAINS(r.msg, "use docker: socket, dind_privileges: caps,");
        ASSERT_STR_CONTAINS(r.msg, "give dockerd full capabilities");
        ASSERT(strchr(r.msg, '\n') == NULL);
        ASSERT(dind_job(x) == NULL);
    }
    /* the sidecar, three volumes and the network: all labelled */
    count_objects(&f, &c, &v, &n);
    ASSERT_EQ(c, 1);
    ASSERT_EQ(v, 3);
    ASSERT_EQ(n, 1);
    dind_free(x);
    sweep(&f);
    count_objects(&f, &c, &v, &n);
    ASSERT_EQ(c + v + n, 0);
    free(img);
    free(net);
    dockertest_teardown(&f);
}

TEST(label_limits_on_the_sidecar)
{
    struct dockertest f;
    struct run r = {0};
    char *img, *net, *cmd, *out;
    struct dind *x;
    json_t *limits = json_pack("{s:I, s:I, s:I}", "memory", (json_int_t)(1ll << 30), "nano_cpus",
                               (json_int_t)1500000000, "pids", (json_int_t)2048);
    int st;

    dockertest_setup(&f, "dind-limits");
    img = test_image("dind");
    net = net_create(&f);
    /* Created whether or not this engine then refuses to start it privileged. */
    x = start_limited(&f, &r, img, net, DIND_PRIV_PRIVILEGED, NULL, limits);
    ASSERT(r.rc == 0 || r.rc == DIND_ERR_PERM);
    cmd = xasprintf("docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} "
                    "{{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} "
                    "{{.HostConfig.Privileged}}' %s-dind", f.label_val);
    out = sh_status(cmd, &st);
    ASSERT_EQ(st, 0);
    ASSERT_STR_EQ(out, "1073741824 1073741824 1500000000 2048 true\n");
    dind_free(x);
    sweep(&f);
    free(out);
    free(cmd);
    free(img);
    free(net);
    json_decref(limits);
    dockertest_teardown(&f);
}

TEST(caps_sidecar_builds_and_runs_inside)
{
    struct dockertest f;
    struct run r = {0};
    char *img, *net, *flags, *out, *want_bind;
    struct dind *x;
    const struct dind_job *j;
    int st;

    dockertest_setup(&f, "dind-caps");
    img = test_image("dind");
    net = net_create(&f);
    x = start(&f, &r, img, net, DIND_PRIV_CAPS, NULL);
    require_ready(&r, x);
    j = dind_job(x);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(j->env[0], "DOCKER_HOST=tcp://docker:2376");
    ASSERT_STR_EQ(j->env[1], "DOCKER_TLS_VERIFY=1");
    ASSERT_STR_EQ(j->env[2], "DOCKER_CERT_PATH=/certs/client");
    ASSERT(j->env[3] == NULL);
    want_bind = xasprintf("%s-dind-client:/certs/client:ro", f.label_val);
    ASSERT_STR_EQ(j->bind, want_bind);

    flags = job_flags(j);
    out = client_run(&f, net, flags,
                     "set -e\n"
                     "docker version --format 'server={{.Server.Version}}'\n"
                     "docker info --format 'driver={{.Driver}} images={{.Images}}'\n"
                     "mkdir /tmp/ctx && cp /bin/busybox /tmp/ctx/\n"
                     "printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n"
                     "ENTRYPOINT [\"/bin/busybox\"]\\n' >/tmp/ctx/Dockerfile\n"
                     "docker build -q -t inner/hello:1 /tmp/ctx >/dev/null\n"
                     "docker run --rm inner/hello:1 echo hello from the inner engine\n"
                     "docker images --format 'image={{.Repository}}:{{.Tag}}'\n",
                     &st);
    if (st != 0)
        test_fail(__FILE__, __LINE__, "client exited %d:\n%s", st, out);
    ASSERT_STR_CONTAINS(out, "server=20.");
    /* the inner engine's own store (the host's uses fuse-overlayfs), empty at first */
    ASSERT_STR_CONTAINS(out, "driver=vfs images=0\n");
    ASSERT_STR_CONTAINS(out, "hello from the inner engine\n");
    ASSERT_STR_CONTAINS(out, "image=inner/hello:1\n");
    /* the image was built inside the sidecar, not on the host */
    free(out);
    out = sh_status("docker image inspect inner/hello:1", &st);
    ASSERT(st != 0);

    dind_free(x);
    sweep(&f);
    free(out);
    free(flags);
    free(want_bind);
    free(img);
    free(net);
    dockertest_teardown(&f);
}

TEST(tls_material_and_clients_without_certificates_refused)
{
    struct dockertest f;
    struct run r = {0};
    char *img, *net, *cmd, *out;
    struct dind *x;
    int st;

    dockertest_setup(&f, "dind-tls");
    img = test_image("dind");
    net = net_create(&f);
    x = start(&f, &r, img, net, DIND_PRIV_CAPS, NULL);
    require_ready(&r, x);

    /* both volumes, seen from a throwaway container */
    cmd = xasprintf("docker run --rm --label %s -v %s-dind-client:/c:ro -v %s-dind-certs:/s:ro "
                    "%s sh -c 'cd /c && ls -A; echo --; cd /s && ls -A; echo --; "
                    "stat -c \"%%a %%n\" /c/key.pem /s/key.pem; "
                    "cmp -s /c/key.pem /s/key.pem && echo SAME-KEY; "
                    "cmp -s /c/ca.pem /s/ca.pem && echo SAME-CA; "
                    "grep -l \"PRIVATE KEY\" /c/* /s/*; "
                    "grep -c \"BEGIN CERTIFICATE\" /c/ca.pem /c/cert.pem'",
                    f.label, f.label_val, f.label_val, f.image);
    out = sh_status(cmd, &st);
    if (st != 0)
        test_fail(__FILE__, __LINE__, "inspecting the volumes: %d\n%s", st, out);
    ASSERT_STR_EQ(out, "ca.pem\ncert.pem\nkey.pem\n--\n"
                       "ca.pem\ncert.pem\nkey.pem\n--\n"
                       "644 /c/key.pem\n600 /s/key.pem\n"
                       "SAME-CA\n"
                       "/c/key.pem\n/s/key.pem\n"
                       "/c/ca.pem:1\n/c/cert.pem:1\n");
    free(out);
    free(cmd);

    /* plain HTTP, TLS without a client certificate, then the real certificates */
    cmd = xasprintf("-v %s-dind-client:/certs-ro:ro", f.label_val);
    out = client_run(&f, net, cmd,
                     "docker -H tcp://docker:2376 version >/tmp/o 2>&1 && echo PLAIN-OK; "
                     "grep -o 'HTTP request to an HTTPS server' /tmp/o\n"
                     "docker -H tcp://docker:2376 --tlsverify --tlscacert /certs-ro/ca.pem "
                     "version >/tmp/o 2>&1 && echo NOCERT-OK; "
                     "grep -o 'bad certificate\\|certificate required' /tmp/o | head -n1\n"
                     "DOCKER_CERT_PATH=/certs-ro docker -H tcp://docker:2376 --tlsverify "
                     "version --format 'with-cert={{.Server.Os}}'\n",
                     &st);
    if (st != 0)
        test_fail(__FILE__, __LINE__, "client exited %d:\n%s", st, out);
    ASSERT(strstr(out, "PLAIN-OK") == NULL);
    ASSERT(strstr(out, "NOCERT-OK") == NULL);
    ASSERT_STR_CONTAINS(out, "HTTP request to an HTTPS server\n");
    ASSERT(strstr(out, "bad certificate\n") || strstr(out, "certificate required\n"));
    ASSERT_STR_CONTAINS(out, "with-cert=linux\n");

    dind_free(x);
    sweep(&f);
    free(out);
    free(cmd);
    free(img);
    free(net);
    dockertest_teardown(&f);
}

TEST(image_without_dockerd_fails_fast)
{
    struct dockertest f;
    struct run r = {0};
    char *net;
    struct dind *x;

    dockertest_setup(&f, "dind-nodockerd");
    net = net_create(&f);
    /* a stale sidecar of an earlier attempt holds the name: it is replaced */
    char *cmd = xasprintf("docker create --label %s --name %s-dind %s true >/dev/null",
                          f.label, f.label_val, f.image);
    free(dockertest_sh(cmd));
    free(cmd);
    x = start(&f, &r, f.image, net, DIND_PRIV_CAPS, NULL);
    ASSERT_EQ(r.rc, -EIO);
    ASSERT_STR_CONTAINS(r.msg, "the dind sidecar");
    ASSERT_STR_CONTAINS(r.msg, "did not start (image runnerd-test/busybox:");
    ASSERT_STR_CONTAINS(r.msg, "exec: \"dockerd\": executable file not found in $PATH;");
    ASSERT_STR_CONTAINS(r.msg, "it wrote no log lines");
    ASSERT(dind_logs(x) == NULL);
    ASSERT(dind_job(x) == NULL);
    dind_free(x);
    sweep(&f);
    free(net);
    dockertest_teardown(&f);
}

TEST(dockerd_exiting_at_once_reports_exit_and_logs)
{
    struct dockertest f;
    struct run r = {0};
    char *img, *net;
    struct dind *x;
    const char *const args[] = {"--no-such-flag", NULL};

    dockertest_setup(&f, "dind-exit");
    img = test_image("dind");
    net = net_create(&f);
    x = start(&f, &r, img, net, DIND_PRIV_CAPS, args);
    ASSERT_EQ(r.rc, -EIO);
    ASSERT_STR_CONTAINS(r.msg, "-dind exited with code 1 before it was ready; last log lines: ");
    ASSERT_STR_CONTAINS(r.msg, "unknown flag: --no-such-flag");
    ASSERT(strchr(r.msg, '\n') == NULL);
    ASSERT(dind_logs(x) != NULL);
    ASSERT_STR_CONTAINS(dind_logs(x), "unknown flag: --no-such-flag\n");
    dind_free(x);
    sweep(&f);
    free(img);
    free(net);
    dockertest_teardown(&f);
}

TEST(not_healthy_in_time_times_out)
{
    struct dockertest f;
    struct run r = {0};
    char *img, *net;
    json_t *labels;
    struct dind *x = NULL;
    struct err e = {0};

    dockertest_setup(&f, "dind-timeout");
    img = test_image("dind");
    net = net_create(&f);
    labels = dockertest_labels(&f);
    /* the first health check runs a second after the start: too late for this deadline */
    struct dind_opts o = {.job = f.label_val, .image = img, .network = net, .labels = labels,
                          .priv = DIND_PRIV_CAPS, .ready_timeout_s = 0.4};
    ASSERT_OK(dind_start(f.d, &o, on_done, &r, &x, &e));
    json_decref(labels);
    dockertest_run_until(&f, &r.done);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(r.rc, ERR_TIMEOUT);
    ASSERT_STR_CONTAINS(r.msg, "-dind is not ready after 0.4 s");
    ASSERT(dind_job(x) == NULL);
    dind_free(x);
    sweep(&f);
    free(img);
    free(net);
    dockertest_teardown(&f);
}

TEST(free_while_starting_reports_nothing)
{
    struct dockertest f;
    struct run r = {0};
    char *net;
    json_t *labels;
    struct dind *x = NULL;
    struct err e = {0};

    dockertest_setup(&f, "dind-free");
    net = net_create(&f);
    labels = dockertest_labels(&f);
    struct dind_opts o = {.job = f.label_val, .image = f.image, .network = net,
                          .labels = labels, .priv = DIND_PRIV_CAPS};
    ASSERT_OK(dind_start(f.d, &o, on_done, &r, &x, &e));
    json_decref(labels);
    dind_free(x); /* the first volume's create is in flight */
    sweep(&f);    /* its reply arrives meanwhile; the object goes away then */
    ASSERT_EQ(r.calls, 0);

    /* bad options: refused up front, nothing created, no callback */
    struct dind_opts bad = {.job = f.label_val, .image = "", .network = net};
    x = (struct dind *)&e;
    ASSERT_EQ(dind_start(f.d, &bad, on_done, &r, &x, &e), ERR_INVALID);
    ASSERT(x == NULL);
    ASSERT_STR_CONTAINS(e.msg, "no image");
    ASSERT_EQ(r.calls, 0);
    free(net);
    dockertest_teardown(&f);
}
