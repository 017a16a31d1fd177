/* test-services.c: a job's service containers against the real Docker engine (offline busybox
 * image). Covers: two services on a job network, one with a health check from options that
 * turns healthy after a second (done only after healthy), the other without one; both
 * reachable by their service id as host name from a step container on the network; the
 * services context (ids, network, published ports); a health check that always fails, a
 * service that exits at once, a health wait that times out (each failing with a message
 * naming the service); bad options and volumes refused up front; stop during start; the job's
 * label limits on every service, over what its options say (create body and the container's
 * own cgroup); and services_stop leaving nothing behind (checked by label). */
#include <stdio.h>
#include <string.h>

#include "dockerstep.h"
#include "dockertest.h"
#include "harness.h"
#include "runner/buf.h"
#include "runner/xalloc.h"
#include "services.h"

struct st {
    int started, stopped;
    int start_rc, stop_rc;
    char msg[256];
    struct services *s;
    struct buf log;
    int stop_in_start_cb;
};

static void
on_log(const char *line, void *arg)
{
    struct st *t = arg;

    buf_printf(&t->log, "%s\n", line);
}

static void
on_stopped(int rc, const struct err *e, void *arg)
{
    struct st *t = arg;

    (void)e;
    t->stopped++;
    t->stop_rc = rc;
}

static void
on_started(struct services *s, int rc, const struct err *e, void *arg)
{
    struct st *t = arg;

    ASSERT(s == t->s);
    t->started++;
    t->start_rc = rc;
    snprintf(t->msg, sizeof t->msg, "%s", e ? e->msg : "");
    if (t->stop_in_start_cb)
        services_stop(s, on_stopped, t);
}

struct net {
    int done, rc;
    char id[128];
};

static void
on_net(const struct docker_res *res, void *arg)
{
    struct net *n = arg;

    n->done = 1;
    n->rc = res->rc;
    if (res->id)
        snprintf(n->id, sizeof n->id, "%s", res->id);
}

static void
net_create(struct dockertest *f, struct net *n)
{
    struct err e = {0};
    json_t *l = dockertest_labels(f);
    char *name = xasprintf("%s-net", f->label_val);

    ASSERT_OK(docker_network_create(f->d, name, l, false, on_net, n, &e));
    dockertest_run_until(f, &n->done);
    ASSERT_EQ(n->rc, 0);
    json_decref(l);
    free(name);
}

static void
net_remove(struct dockertest *f, struct net *n)
{
    struct net r = {0};
    struct err e = {0};

    ASSERT_OK(docker_network_remove(f->d, n->id, on_net, &r, &e));
    dockertest_run_until(f, &r.done);
    ASSERT_EQ(r.rc, 0);
}

static struct services_config
config(struct dockertest *f, struct net *n, json_t *labels, struct st *t)
{
    struct services_config c = {
        .d = f->d,
        .job_name = f->label_val,
        .network = n->id,
        .labels = labels,
        .poll_ms = 300,
        .health_timeout_ms = 60000,
        .log = on_log,
        .arg = t,
    };

    return c;
}

/* Starts defs and runs until started; returns the start rc. */
static int
start(struct dockertest *f, struct services_config *c, const struct services_def *defs,
      size_t n, struct st *t)
{
    struct err e = {0};

    if (services_start(&f->loop, c, defs, n, on_started, t, &t->s, &e) < 0)
        test_fail(__FILE__, __LINE__, "services_start: %s", e.msg);
    dockertest_run_until(f, &t->started);
    ASSERT_EQ(t->started, 1);
    return t->start_rc;
}

static void
stop(struct dockertest *f, struct st *t)
{
    services_stop(t->s, on_stopped, t);
    dockertest_run_until(f, &t->stopped);
    ASSERT_EQ(t->stopped, 1);
    ASSERT_EQ(t->stop_rc, 0);
    ASSERT_EQ(dockertest_count(f), 0);
    buf_free(&t->log);
}

struct probe {
    int done, rc;
    long long code;
    struct buf out;
};

static void
on_probe_out(int stream, const char *p, size_t n, void *arg)
{
    struct probe *pr = arg;

    (void)stream;
    buf_append(&pr->out, p, n);
}

static void
on_probe_done(int rc, long long code, const struct err *e, void *arg)
{
    struct probe *pr = arg;

    (void)e;
    pr->done = 1;
    pr->rc = rc;
    pr->code = code;
}

TEST(two_services_healthy_and_reachable)
{
    struct dockertest f;
    struct net n = {0};
    struct st t = {0};
    json_t *labels, *ctx;
    const char *db_cmd[] = {"sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 600", NULL};
    const char *cache_cmd[] = {"sh", "-c", "exec sleep 600", NULL};
    const char *ports[] = {"80", "9999/udp", "127.0.0.1::81", NULL};
    json_t *env = json_pack("{s:s,s:i}", "POSTGRES_USER", "ci", "PORT", 5432);
    struct services_def defs[2] = {
        {.id = "db", .options = "--health-cmd \"test -f /tmp/ready\" --health-interval 1s "
                                "--health-retries 10",
         .cmd = db_cmd, .env = env},
        {.id = "cache", .cmd = cache_cmd, .ports = ports},
    };
    struct services_config c;
    const char *probe_cmd[] = {"sh", "-c", "ping -c1 -W3 db >/dev/null && echo db-ok; "
                               "ping -c1 -W3 cache >/dev/null && echo cache-ok; "
                               "nslookup db >/dev/null 2>&1 && echo dns-ok", NULL};
    struct dockerstep_opts po = {0};
    struct dockerstep_cbs pcbs = {.on_output = on_probe_out, .on_done = on_probe_done};
    struct probe pr = {0};
    struct err e = {0};
    const char *hp;
    char *ins;

    dockertest_setup(&f, "svc-two");
    net_create(&f, &n);
    labels = dockertest_labels(&f);
    c = config(&f, &n, labels, &t);
    defs[0].image = defs[1].image = f.image;
    ASSERT_EQ(start(&f, &c, defs, 2, &t), 0);
    ASSERT_STR_CONTAINS(buf_str(&t.log), "service 'db': resolving image ");
    ASSERT_STR_CONTAINS(buf_str(&t.log), "service 'db': created container ");
    ASSERT_STR_CONTAINS(buf_str(&t.log), "waiting for service 'db'");
    ASSERT_STR_CONTAINS(buf_str(&t.log), "service 'db' is healthy");
    ASSERT_STR_CONTAINS(buf_str(&t.log), "service 'cache' is running (no health check)");
    /* done came after healthy: the file exists now */
    ctx = services_context(t.s);
    ASSERT_EQ(json_object_size(ctx), 2);
    {
        json_t *db = json_object_get(ctx, "db"), *cache = json_object_get(ctx, "cache");
        char *cmd;
        char *out;

        ASSERT_EQ(strlen(json_string_value(json_object_get(db, "id"))), 64);
        ASSERT_STR_EQ(json_string_value(json_object_get(db, "network")), n.id);
        ASSERT_EQ(json_object_size(json_object_get(db, "ports")), 0);
        hp = json_string_value(json_object_get(json_object_get(cache, "ports"), "80"));
        ASSERT(hp != NULL);
        ASSERT(atoi(hp) > 0);
        ASSERT(json_string_value(json_object_get(json_object_get(cache, "ports"), "9999/udp")));
        ASSERT(json_string_value(json_object_get(json_object_get(cache, "ports"), "81")));
        cmd = xasprintf("docker exec %s test -f /tmp/ready && echo yes",
                        json_string_value(json_object_get(db, "id")));
        out = dockertest_sh(cmd);
        ASSERT_STR_EQ(out, "yes\n");
        free(out);
        free(cmd);
        /* name, env, alias and labels as requested */
        cmd = xasprintf("docker inspect -f '{{.Name}} {{index .Config.Labels \"io.runnerd.role\"}} "
                        "{{range .Config.Env}}{{.}} {{end}}{{range $k, $v := "
                        ".NetworkSettings.Networks}}{{$v.Aliases}}{{end}}' %s",
                        json_string_value(json_object_get(db, "id")));
        ins = dockertest_sh(cmd);
        free(cmd);
        cmd = xasprintf("/%s-db service POSTGRES_USER=ci PORT=5432", f.label_val);
        ASSERT_STR_CONTAINS(ins, cmd);
        ASSERT_STR_CONTAINS(ins, "db");
        free(cmd);
        free(ins);
    }
    json_decref(ctx);
    /* reachable by service id from a container on the same network */
    po.image = f.image;
    po.cmd = probe_cmd;
    po.network = n.id;
    po.labels = labels;
    ASSERT_OK(dockerstep_run(&f.loop, f.d, &po, &pcbs, &pr, NULL, &e));
    dockertest_run_until(&f, &pr.done);
    ASSERT_EQ(pr.rc, 0);
    ASSERT_STR_EQ(buf_str(&pr.out), "db-ok\ncache-ok\ndns-ok\n");
    buf_free(&pr.out);
    stop(&f, &t);
    net_remove(&f, &n);
    json_decref(labels);
    json_decref(env);
    dockertest_teardown(&f);
}

TEST(label_limits_over_options)
{
    struct dockertest f;
    struct net n = {0};
    struct st t = {0};
    json_t *labels, *ctx;
    const char *cmd[] = {"sh", "-c", "exec sleep 600", NULL};
    struct services_def defs[2] = {
        {.id = "greedy", .cmd = cmd,
         .options = "--memory 2g --memory-swap 4g --pids-limit 5000 --cpus 2"},
        {.id = "plain", .cmd = cmd},
    };
    struct services_config c;
    json_t *limits = json_pack("{s:I, s:I, s:I}", "memory", (json_int_t)(80 << 20), "nano_cpus",
                               (json_int_t)250000000, "pids", (json_int_t)222);

    dockertest_setup(&f, "svc-limits");
    net_create(&f, &n);
    labels = dockertest_labels(&f);
    c = config(&f, &n, labels, &t);
    c.limits = limits;
    defs[0].image = defs[1].image = f.image;
    ASSERT_EQ(start(&f, &c, defs, 2, &t), 0);
    ctx = services_context(t.s);
    for (size_t i = 0; i < 2; i++) {
        const char *id = json_string_value(json_object_get(json_object_get(ctx, defs[i].id), "id"));
        char *cmdline, *out;

        ASSERT(id != NULL);
        cmdline = xasprintf("docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} "
                            "{{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}' %s", id);
        out = dockertest_sh(cmdline);
        ASSERT_STR_EQ(out, "83886080 83886080 250000000 222\n");
        free(out);
        free(cmdline);
        cmdline = xasprintf("docker exec %s sh -c 'c=/sys/fs/cgroup; if [ -f $c/memory.max ]; "
                            "then cat $c/memory.max $c/pids.max; else cat "
                            "$c/memory/memory.limit_in_bytes $c/pids/pids.max; fi'", id);
        out = dockertest_sh(cmdline);
        ASSERT_STR_EQ(out, "83886080\n222\n");
        free(out);
        free(cmdline);
    }
    json_decref(ctx);
    stop(&f, &t);
    net_remove(&f, &n);
    json_decref(labels);
    json_decref(limits);
    dockertest_teardown(&f);
}

TEST(unhealthy_fails_naming_the_service)
{
    struct dockertest f;
    struct net n = {0};
    struct st t = {0};
    json_t *labels;
    const char *cmd[] = {"sh", "-c", "exec sleep 600", NULL};
    struct services_def defs[2] = {
        {.id = "ok", .cmd = cmd},
        {.id = "bad", .cmd = cmd,
         .options = "--health-cmd 'echo not ready; exit 1' --health-interval 500ms "
                    "--health-retries 1"},
    };
    struct services_config c;

    dockertest_setup(&f, "svc-unhealthy");
    net_create(&f, &n);
    labels = dockertest_labels(&f);
    c = config(&f, &n, labels, &t);
    defs[0].image = defs[1].image = f.image;
    ASSERT_EQ(start(&f, &c, defs, 2, &t), -EIO);
    ASSERT_STR_EQ(t.msg, "service 'bad': the container is unhealthy: not ready ");
    stop(&f, &t);
    net_remove(&f, &n);
    json_decref(labels);
    dockertest_teardown(&f);
}

TEST(exiting_service_fails)
{
    struct dockertest f;
    struct net n = {0};
    struct st t = {0};
    json_t *labels;
    const char *cmd[] = {"sh", "-c", "exit 3", NULL};
    struct services_def defs[1] = {{.id = "quit", .cmd = cmd}};
    struct services_config c;

    dockertest_setup(&f, "svc-exit");
    net_create(&f, &n);
    labels = dockertest_labels(&f);
    c = config(&f, &n, labels, &t);
    c.poll_ms = 1000;
    defs[0].image = f.image;
    ASSERT_EQ(start(&f, &c, defs, 1, &t), -EIO);
    ASSERT_STR_EQ(t.msg, "service 'quit': the container exited with code 3 before it was ready");
    stop(&f, &t);
    net_remove(&f, &n);
    json_decref(labels);
    dockertest_teardown(&f);
}

TEST(health_timeout)
{
    struct dockertest f;
    struct net n = {0};
    struct st t = {0};
    json_t *labels;
    const char *cmd[] = {"sh", "-c", "exec sleep 600", NULL};
    struct services_def defs[1] = {
        {.id = "slow", .cmd = cmd, .options = "--health-cmd true --health-interval 10m"}};
    struct services_config c;

    dockertest_setup(&f, "svc-timeout");
    net_create(&f, &n);
    labels = dockertest_labels(&f);
    c = config(&f, &n, labels, &t);
    c.health_timeout_ms = 1500;
    defs[0].image = f.image;
    ASSERT_EQ(start(&f, &c, defs, 1, &t), ERR_TIMEOUT);
    ASSERT_STR_EQ(t.msg, "service 'slow': not healthy after 1 s");
    stop(&f, &t);
    net_remove(&f, &n);
    json_decref(labels);
    dockertest_teardown(&f);
}

TEST(missing_image_and_stop_during_start)
{
    struct dockertest f;
    struct net n = {0};
    struct st t = {0}, t2 = {0}, t3 = {.stop_in_start_cb = 1};
    json_t *labels;
    const char *cmd[] = {"sh", "-c", "exec sleep 600", NULL};
    struct services_def defs[2] = {{.id = "ok", .cmd = cmd},
                                   {.id = "gone", .image = "runnerd-test/nope:1"}};
    struct services_config c;
    struct err e = {0};

    dockertest_setup(&f, "svc-missing");
    net_create(&f, &n);
    labels = dockertest_labels(&f);
    c = config(&f, &n, labels, &t);
    defs[0].image = f.image;
    ASSERT_EQ(start(&f, &c, defs, 2, &t), ERR_NOTFOUND);
    ASSERT_STR_EQ(t.msg, "service 'gone': image runnerd-test/nope:1: not found locally and "
                         "pulling is not allowed");
    stop(&f, &t);
    /* stop right after start: the start callback says canceled, nothing is left */
    c.arg = &t2;
    ASSERT_OK(services_start(&f.loop, &c, defs, 1, on_started, &t2, &t2.s, &e));
    services_stop(t2.s, on_stopped, &t2);
    dockertest_run_until(&f, &t2.stopped);
    ASSERT_EQ(t2.started, 1);
    ASSERT_EQ(t2.start_rc, ERR_CANCELED);
    ASSERT_EQ(t2.stop_rc, 0);
    ASSERT_EQ(dockertest_count(&f), 0);
    buf_free(&t2.log);
    /* no services: done from the loop, and stop from inside the callback */
    c.arg = &t3;
    ASSERT_OK(services_start(&f.loop, &c, defs, 0, on_started, &t3, &t3.s, &e));
    ASSERT_EQ(t3.started, 0);
    dockertest_run_until(&f, &t3.stopped);
    ASSERT_EQ(t3.start_rc, 0);
    buf_free(&t3.log);
    net_remove(&f, &n);
    json_decref(labels);
    dockertest_teardown(&f);
}

TEST(bad_definitions_refused_up_front)
{
    struct dockertest f;
    struct st t = {0};
    struct net n = {.id = "none"};
    struct services_def d1 = {.id = "db", .image = "x", .options = "--foo"};
    struct services_def d2 = {.id = "db", .image = "x", .options = "--network host"};
    const char *badports[] = {"80:abc", NULL};
    const char *badports2[] = {"1.2.3.4:1:2:3", NULL};
    const char *badports3[] = {"80/xyz", NULL};
    struct services_def d7 = {.id = "web", .image = "x", .ports = badports2};
    struct services_def d8 = {.id = "web", .image = "x", .ports = badports3};
    struct services_def d3 = {.id = "web", .image = "x", .ports = badports};
    struct services_def d4[2] = {{.id = "a", .image = "x"}, {.id = "a", .image = "x"}};
    struct services_def d5 = {.id = "noimg"};
    json_t *env = json_pack("{s:[]}", "A");
    struct services_def d6 = {.id = "e", .image = "x", .env = env};
    struct services_config c;
    struct services *s = NULL;
    struct err e = {0};

    dockertest_setup(&f, "svc-bad");
    c = config(&f, &n, NULL, &t);
    ASSERT_EQ(services_start(&f.loop, &c, &d1, 1, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.db.options: unsupported option '--foo'");
    ASSERT(s == NULL);
    ASSERT_EQ(services_start(&f.loop, &c, &d2, 1, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.db.options: option '--network' is not allowed: the runner "
                         "manages the job network");
    ASSERT_EQ(services_start(&f.loop, &c, &d3, 1, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.web.ports: invalid port '80:abc'");
    ASSERT_EQ(services_start(&f.loop, &c, &d7, 1, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.web.ports: invalid port '1.2.3.4:1:2:3'");
    ASSERT_EQ(services_start(&f.loop, &c, &d8, 1, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.web.ports: invalid port '80/xyz'");
    ASSERT_EQ(services_start(&f.loop, &c, d4, 2, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.a: duplicate service id");
    ASSERT_EQ(services_start(&f.loop, &c, &d5, 1, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.noimg: no image");
    ASSERT_EQ(services_start(&f.loop, &c, &d6, 1, on_started, &t, &s, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.e.env.A: expected a string");
    ASSERT_EQ(t.started, 0);
    json_decref(env);
    dockertest_teardown(&f);
}

static int
refuse_host_paths(const char *vol, void *arg, struct err *e)
{
    (void)arg;
    if (vol[0] == '/' && strchr(vol, ':'))
        return err_set(e, -EPERM, "volume '%s' is not in valid_volumes", vol);
    return 0;
}

TEST(volumes_validated_and_mounted)
{
    struct dockertest f;
    struct net n = {0};
    struct st t = {0};
    json_t *labels, *ctx;
    const char *cmd[] = {"sh", "-c", "exec sleep 600", NULL};
    const char *vols[] = {"/anon", NULL};
    const char *badvols[] = {"/etc:/host-etc", NULL};
    struct services_def ok = {.id = "v", .cmd = cmd, .volumes = vols,
                              .options = "-v /anon2 -e X=1"};
    struct services_def bad = {.id = "v", .cmd = cmd, .options = "-v /etc:/x"};
    struct services_def bad2 = {.id = "v", .cmd = cmd, .volumes = badvols};
    struct services_config c;
    struct services *s = NULL;
    struct err e = {0};
    char *cmdl, *out;

    dockertest_setup(&f, "svc-vol");
    net_create(&f, &n);
    labels = dockertest_labels(&f);
    c = config(&f, &n, labels, &t);
    c.validate_volume = refuse_host_paths;
    ok.image = bad.image = bad2.image = f.image;
    ASSERT_EQ(services_start(&f.loop, &c, &bad, 1, on_started, &t, &s, &e), -EPERM);
    ASSERT_STR_EQ(e.msg, "services.v.volumes: volume '/etc:/x' is not in valid_volumes");
    ASSERT_EQ(services_start(&f.loop, &c, &bad2, 1, on_started, &t, &s, &e), -EPERM);
    ASSERT_STR_EQ(e.msg, "services.v.volumes: volume '/etc:/host-etc' is not in valid_volumes");
    ASSERT_EQ(start(&f, &c, &ok, 1, &t), 0);
    ctx = services_context(t.s);
    cmdl = xasprintf("docker inspect -f '{{range .Mounts}}{{.Destination}} {{end}}' %s",
                     json_string_value(json_object_get(json_object_get(ctx, "v"), "id")));
    out = dockertest_sh(cmdl);
    ASSERT_STR_CONTAINS(out, "/anon ");
    ASSERT_STR_CONTAINS(out, "/anon2 ");
    free(out);
    free(cmdl);
    json_decref(ctx);
    stop(&f, &t);
    net_remove(&f, &n);
    json_decref(labels);
    dockertest_teardown(&f);
}
