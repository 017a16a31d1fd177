/* test-docker.c: the Docker client against the real engine (DOCKER_HOST or the default
 * socket), with the offline test images from tests/images/build.sh. Covers: DOCKER_HOST
 * parsing, ping + version negotiation, unreachable daemon, image inspect, import, pinned
 * references (id pin accepted, wrong id / wrong expected id / missing image / absent digest
 * refused with exact messages), LogConfig none in a create body, container
 * create/start/wait/remove with labels, attach before
 * start with stdout and stderr separated and the exit code, the duplex attach (stdin round trip
 * through cat), archive PUT then GET (including a long name), error classification (404, 409),
 * networks (create, duplicate, connect, remove) and volumes, the label sweep, the Debian image
 * (bash), and pull-by-digest from a real registry on loopback (Debian's docker-registry with
 * htpasswd auth: refused without pulling, failing without credentials, a digest the registry
 * lacks, pulled and verified with base64url X-Registry-Auth), and image builds from a context tar
 * (tag, labels, output lines split and joined as the engine streams them, the Id; a RUN that
 * fails, a parse error, a missing base image; a Dockerfile in a subdirectory; an output line
 * over 1 MiB handed on in two parts). Each test
 * labels what it creates with a unique value; a guard process removes leftovers with the docker
 * CLI even when the test dies. */
#include <fcntl.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "docker.h"
#include "harness.h"
#include "dockertest.h"
#include "runner/buf.h"
#include "runner/xalloc.h"
#include "tar.h"

#define TEST_LABEL_KEY "io.runnerd.test"

struct fx {
    uv_loop_t loop;
    struct httpc *http;
    struct docker *d;
    char label_val[96];
    char label[160]; /* key=value for filters */
    char image[128]; /* runnerd-test/busybox:<hash> */
};

/* A call's outcome copied out of its callback. */
struct tres {
    int done;
    int rc;
    long status;
    char msg[256];
    char id[160];
    long long exit_code;
    int removed;
    json_t *json;
    struct buf body;
};

static void
on_res(const struct docker_res *res, void *arg)
{
    struct tres *t = arg;

    t->done++;
    t->rc = res->rc;
    t->status = res->status;
    snprintf(t->msg, sizeof t->msg, "%s", res->err.msg);
    if (res->id)
        snprintf(t->id, sizeof t->id, "%s", res->id);
    t->exit_code = res->exit_code;
    t->removed = res->removed;
    if (res->json)
        t->json = json_incref(res->json);
    if (res->body_len)
        buf_append(&t->body, res->body, res->body_len);
}

static void
tres_free(struct tres *t)
{
    json_decref(t->json);
    buf_free(&t->body);
    memset(t, 0, sizeof *t);
}

static void
wait_for(struct fx *f, struct tres *t)
{
    while (!t->done)
        uv_run(&f->loop, UV_RUN_ONCE);
    ASSERT_EQ(t->done, 1);
}

/* Runs a shell command, returns its last output line (new string). */
static char *
sh_last_line(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    char line[512], last[512] = "";

    ASSERT(p != NULL);
    while (fgets(line, sizeof line, p))
        snprintf(last, sizeof last, "%s", line);
    ASSERT_EQ(pclose(p), 0);
    last[strcspn(last, "\n")] = '\0';
    return xstrdup(last);
}


/* Removes everything labelled label_val after this process ends, however it ends. */
static void
guard(const char *label)
{
    char *script = xasprintf(
        "docker ps -aq --filter label=%s | xargs -r docker rm -f -v >/dev/null 2>&1;"
        "docker network ls -q --filter label=%s | xargs -r docker network rm >/dev/null 2>&1;"
        "docker volume ls -q --filter label=%s | xargs -r docker volume rm -f >/dev/null 2>&1;"
        "docker image ls -q --filter label=%s | xargs -r docker rmi -f >/dev/null 2>&1",
        label, label, label, label);

    dockertest_guard_cmd(script);
    free(script);
}

static void
setup(struct fx *f, const char *name)
{
    struct tres t = {0};
    struct err e = {0};
    char *img;

    memset(f, 0, sizeof *f);
    snprintf(f->label_val, sizeof f->label_val, "%s-%d", name, (int)getpid());
    snprintf(f->label, sizeof f->label, "%s=%s", TEST_LABEL_KEY, f->label_val);
    guard(f->label);
    img = sh_last_line(RUNNERD_SOURCE_DIR "/tests/images/build.sh busybox");
    snprintf(f->image, sizeof f->image, "%s", img);
    free(img);
    uv_loop_init(&f->loop);
    f->http = httpc_new(&f->loop);
    ASSERT_OK(docker_new(f->http, NULL, &f->d, &e));
    ASSERT_OK(docker_connect(f->d, on_res, &t, &e));
    wait_for(f, &t);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "the Docker engine is required for these tests: %s",
                  t.msg);
    tres_free(&t);
}

static void
teardown(struct fx *f)
{
    struct tres t = {0};
    struct err e;

    /* the sweep also asserts that the test left nothing behind */
    ASSERT_OK(docker_sweep(f->d, f->label, on_res, &t, &e));
    wait_for(f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    docker_free(f->d);
    httpc_close(f->http, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&f->loop), 0);
}

static json_t *
labels(struct fx *f)
{
    json_t *l = docker_labels_new("test-runner", "42");

    json_object_set_new(l, TEST_LABEL_KEY, json_string(f->label_val));
    return l;
}

/* Creates a container from argv; returns its id (new string). */
static char *
create_img(struct fx *f, const char *image, const char *const *cmd, bool open_stdin)
{
    struct tres t = {0};
    struct err e;
    json_t *l = labels(f);
    struct docker_container_spec s = {.image = image, .cmd = cmd, .labels = l,
                                      .open_stdin = open_stdin, .stdin_once = open_stdin,
                                      .attach_output = true,
                                      .init = true, .workdir = "/workspace"};
    json_t *body = docker_container_spec_json(&s);
    char *id;

    ASSERT_OK(docker_container_create(f->d, NULL, body, on_res, &t, &e));
    wait_for(f, &t);
    json_decref(body);
    json_decref(l);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "create: %s", t.msg);
    ASSERT_EQ(strlen(t.id), 64);
    id = xstrdup(t.id);
    tres_free(&t);
    return id;
}

static char *
create(struct fx *f, const char *const *cmd, bool open_stdin)
{
    return create_img(f, f->image, cmd, open_stdin);
}

static void
remove_container(struct fx *f, const char *id)
{
    struct tres t = {0};
    struct err e;

    ASSERT_OK(docker_container_remove(f->d, id, true, true, on_res, &t, &e));
    wait_for(f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
}

/* ---- connecting -------------------------------------------------------------------------- */

/* log_none asks the engine for no log driver (the output only through attach); without it the
 * body leaves the engine's default. No engine needed. */
TEST(spec_log_none_is_log_config_none)
{
    struct docker_container_spec s = {.image = "img", .log_none = true};
    json_t *body = docker_container_spec_json(&s);
    json_t *lc = json_object_get(json_object_get(body, "HostConfig"), "LogConfig");

    ASSERT_STR_EQ(json_string_value(json_object_get(lc, "Type")), "none");
    json_decref(body);
    s.log_none = false;
    body = docker_container_spec_json(&s);
    ASSERT(json_object_get(json_object_get(body, "HostConfig"), "LogConfig") == NULL);
    json_decref(body);
}

TEST(docker_host_parsing)
{
    struct docker *d = NULL;
    struct err e = {0};

    ASSERT_EQ(docker_new(NULL, &(struct docker_config){.host = "ssh://me@host"}, &d, &e),
              ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "DOCKER_HOST ssh://me@host: scheme \"ssh\" is not supported "
                         "(use unix:// or tcp://)");
    ASSERT_EQ(docker_new(NULL, &(struct docker_config){.host = "unix://relative.sock"}, &d, &e),
              ERR_INVALID);
    ASSERT_OK(docker_new(NULL, &(struct docker_config){.host = "tcp://10.0.0.1:2376",
                                                       .cert_path = "/certs"},
                         &d, &e));
    ASSERT_STR_EQ(docker_host(d), "tcp://10.0.0.1:2376");
    ASSERT(docker_api_version(d) == NULL);
    docker_free(d);
    ASSERT_OK(docker_new(NULL, &(struct docker_config){.host = "unix:///x.sock",
                                                       .api_version = "1.40"},
                         &d, &e));
    ASSERT_STR_EQ(docker_api_version(d), "1.40");
    docker_free(d);
}

TEST(ping_and_version)
{
    struct fx f;
    struct tres t = {0};
    struct err e;

    setup(&f, "ping");
    ASSERT_STR_EQ(docker_api_version(f.d), "1.41");
    ASSERT_OK(docker_connect(f.d, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    /* The engine's own version from the ping needs no /version call (no object); a newer
     * engine's, capped at DOCKER_API_MAX, is checked against its minimum. */
    char *own = sh_last_line("docker version -f '{{.Server.APIVersion}}'");
    if (strcmp(own, DOCKER_API_MAX) == 0)
        ASSERT(t.json == NULL);
    else
        ASSERT(json_string_value(json_object_get(t.json, "MinAPIVersion")) != NULL);
    free(own);
    tres_free(&t);
    /* A pinned version is checked against the engine's minimum: /version answers. */
    struct docker *pinned;
    ASSERT_OK(docker_new(f.http, &(struct docker_config){.api_version = "1.40"}, &pinned, &e));
    ASSERT_OK(docker_connect(pinned, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT(json_string_value(json_object_get(t.json, "ApiVersion")) != NULL);
    ASSERT(json_string_value(json_object_get(t.json, "Version")) != NULL);
    tres_free(&t);
    docker_free(pinned);
    teardown(&f);
}

TEST(unreachable_daemon)
{
    uv_loop_t loop;
    struct httpc *h;
    struct docker *d;
    struct tres t = {0};
    struct err e;

    uv_loop_init(&loop);
    h = httpc_new(&loop);
    ASSERT_OK(docker_new(h, &(struct docker_config){.host = "unix:///nonexistent/docker.sock"},
                         &d, &e));
    ASSERT_OK(docker_connect(d, on_res, &t, &e));
    while (!t.done)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT(t.rc < 0);
    ASSERT_STR_CONTAINS(t.msg, "docker unix:///nonexistent/docker.sock unreachable: ");
    ASSERT(docker_api_version(d) == NULL);
    /* calls need a negotiated version */
    ASSERT_EQ(docker_image_inspect(d, "x", on_res, &t, &e), -ENOTCONN);
    tres_free(&t);
    docker_free(d);
    httpc_close(h, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* ---- images and pins --------------------------------------------------------------------- */

static char *
image_id(struct fx *f)
{
    struct tres t = {0};
    struct err e;
    char *id;

    ASSERT_OK(docker_image_inspect(f->d, f->image, on_res, &t, &e));
    wait_for(f, &t);
    ASSERT_EQ(t.rc, 0);
    id = xstrdup(json_string_value(json_object_get(t.json, "Id")));
    tres_free(&t);
    return id;
}

TEST(image_inspect)
{
    struct fx f;
    struct tres t = {0};
    struct err e;
    json_t *env;
    bool path = false;
    size_t i;
    json_t *v;

    setup(&f, "inspect");
    ASSERT_OK(docker_image_inspect(f.d, f.image, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(strlen(json_string_value(json_object_get(t.json, "Id"))), 71);
    ASSERT_STR_EQ(json_string_value(json_object_get(t.json, "Architecture")), "amd64");
    ASSERT(json_is_array(json_object_get(t.json, "RepoDigests")));
    env = json_object_get(json_object_get(t.json, "Config"), "Env");
    json_array_foreach(env, i, v) {
        if (strcmp(json_string_value(v), "PATH=/bin") == 0)
            path = true;
    }
    ASSERT(path);
    tres_free(&t);

    ASSERT_OK(docker_image_inspect(f.d, "runnerd-test/no-such-image:1", on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    ASSERT_STR_EQ(t.msg, "inspect image runnerd-test/no-such-image:1: 404 no such image: "
                         "runnerd-test/no-such-image:1: No such image: "
                         "runnerd-test/no-such-image:1");
    tres_free(&t);
    teardown(&f);
}

TEST(pinned_references)
{
    struct fx f;
    struct tres t = {0};
    struct err e;
    char *id, want[512];
    const char *wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    char digest_ref[256];

    setup(&f, "pins");
    id = image_id(&f);

    /* an id pin equal to the image's Id */
    ASSERT_OK(docker_image_resolve(f.d, id, NULL, false, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_STR_EQ(t.id, id);
    tres_free(&t);

    /* a tag resolves to its Id (for the caller's log) */
    ASSERT_OK(docker_image_resolve(f.d, f.image, NULL, false, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_STR_EQ(t.id, id);
    tres_free(&t);

    /* a tag plus the expected id */
    ASSERT_OK(docker_image_resolve(f.d, f.image, id, false, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);

    /* a wrong id pin */
    ASSERT_OK(docker_image_resolve(f.d, wrong, NULL, true, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    snprintf(want, sizeof want,
             "image %s: no local image has this id (an id pin cannot be pulled)", wrong);
    ASSERT_STR_EQ(t.msg, want);
    tres_free(&t);

    /* the tag moved: the image behind it is not the pinned one */
    ASSERT_OK(docker_image_resolve(f.d, f.image, wrong, false, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, -EPERM);
    snprintf(want, sizeof want, "image %s resolves to %s, but %s is pinned; refusing", f.image,
             id, wrong);
    ASSERT_STR_EQ(t.msg, want);
    tres_free(&t);

    /* a missing image, no pulling */
    ASSERT_OK(docker_image_resolve(f.d, "runnerd-test/nope:1", NULL, false, NULL, on_res, &t,
                                   &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    ASSERT_STR_EQ(t.msg, "image runnerd-test/nope:1: not found locally and pulling is not allowed");
    tres_free(&t);

    /* a digest pin: locally imported images have no repo digest; the Id is not a digest */
    snprintf(digest_ref, sizeof digest_ref, "runnerd-test/busybox@%s", id);
    ASSERT_OK(docker_image_resolve(f.d, digest_ref, NULL, false, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    snprintf(want, sizeof want,
             "image %s: no local image has this repo digest and pulling is not allowed",
             digest_ref);
    ASSERT_STR_EQ(t.msg, want);
    tres_free(&t);

    /* pulling is tried when allowed; no registry listens on 127.0.0.1:9 */
    ASSERT_OK(docker_image_resolve(f.d, "127.0.0.1:9/runnerd/none:1", NULL, true,
                                   &(struct docker_auth){.username = "u", .password = "p",
                                                         .serveraddress = "127.0.0.1:9"},
                                   on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT(t.rc < 0);
    ASSERT_STR_CONTAINS(t.msg, "image 127.0.0.1:9/runnerd/none:1: pull failed: 500 ");
    tres_free(&t);

    /* malformed pins are refused before any call */
    ASSERT_EQ(docker_image_resolve(f.d, "sha256:abc", NULL, false, NULL, on_res, &t, &e),
              ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "an id pin must be sha256: followed by 64 lowercase hex digits");
    free(id);
    teardown(&f);
}

TEST(image_import_and_remove)
{
    struct fx f;
    struct tres t = {0};
    struct err e;
    struct tar tar;
    const char *changes[] = {"ENV FOO=bar", "CMD [\"/x\"]", NULL};
    char tag[64], ref[128];

    setup(&f, "import");
    tar_init(&tar);
    ASSERT_OK(tar_add_dir(&tar, "etc", 0755, &e));
    ASSERT_OK(tar_add_file(&tar, "etc/hello", 0644, "hi\n", 3, &e));
    tar_finish(&tar);
    snprintf(tag, sizeof tag, "import-%d", (int)getpid());
    ASSERT_OK(docker_image_import(f.d, tar.out.data, tar.out.len, "runnerd-test/imported", tag,
                                  changes, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(strlen(t.id), 71);
    tres_free(&t);
    snprintf(ref, sizeof ref, "runnerd-test/imported:%s", tag);
    ASSERT_OK(docker_image_inspect(f.d, ref, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_STR_EQ(json_string_value(json_array_get(
                      json_object_get(json_object_get(t.json, "Config"), "Env"), 0)),
                  "FOO=bar");
    tres_free(&t);
    ASSERT_OK(docker_image_remove(f.d, ref, true, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);

    /* a bad tar is a clean error */
    ASSERT_OK(docker_image_import(f.d, "not a tar", 9, "runnerd-test/imported", tag, NULL,
                                  on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT(t.rc < 0);
    ASSERT_STR_CONTAINS(t.msg, "import image runnerd-test/imported:");
    tres_free(&t);
    tar_free(&tar);
    teardown(&f);
}

/* ---- image builds ------------------------------------------------------------------------ */

/* A build context: the files name, data, name, data, ..., NULL (a finished tar; tar_free it). */
static void
context_tar(struct tar *t, ...)
{
    struct err e = {0};
    va_list ap;
    const char *name;

    tar_init(t);
    va_start(ap, t);
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *data = va_arg(ap, const char *);

        if (strchr(name, '/') != NULL) {
            char *dir = xstrndup(name, (size_t)(strrchr(name, '/') - name));

            ASSERT_OK(tar_add_dir(t, dir, 0755, &e));
            free(dir);
        }
        ASSERT_OK(tar_add_file(t, name, 0644, data, strlen(data), &e));
    }
    va_end(ap);
    tar_finish(t);
}

/* The build's output lines, one per line (progress shares the callback's arg). */
static struct buf build_log;

static void
on_build_line(const char *line, void *arg)
{
    (void)arg;
    ASSERT(strchr(line, '\n') == NULL && line[0] != '\0');
    buf_printf(&build_log, "%s\n", line);
}

static void
remove_image(struct fx *f, const char *ref)
{
    struct tres t = {0};
    struct err e;

    ASSERT_OK(docker_image_remove(f->d, ref, true, on_res, &t, &e));
    wait_for(f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    ASSERT_OK(docker_image_inspect(f->d, ref, on_res, &t, &e));
    wait_for(f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    tres_free(&t);
}

TEST(image_build_from_context)
{
    struct fx f;
    struct tres t = {0};
    struct err e;
    struct tar tar;
    json_t *l, *cfg;
    char *dockerfile, tag[96], *id, *want;

    setup(&f, "build");
    l = labels(&f);
    snprintf(tag, sizeof tag, "runnerd-test/built:%d", (int)getpid());
    /* "part" and "ial" arrive in separate messages, the newline in a third. The RUN names this
     * run's label value, so that no cached layer (another run's, on the same engine) skips it
     * and its output. */
    dockerfile = xasprintf("FROM %s\nCOPY hello.txt /hello.txt\n"
                           "RUN echo -n part; echo -n ial; echo; echo two; test -f /hello.txt"
                           " # %s\n"
                           "LABEL io.runnerd.test.from=dockerfile\n",
                           f.image, f.label_val);
    context_tar(&tar, "Dockerfile", dockerfile, "hello.txt", "hello\n", NULL);
    ASSERT_OK(docker_image_build(f.d, tar.out.data, tar.out.len, tag, NULL, l, on_build_line,
                                 on_res, &t, &e));
    tar_free(&tar); /* the call has its own copy */
    wait_for(&f, &t);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "build: %s\n%s", t.msg, buf_str(&build_log));
    ASSERT_EQ(strlen(t.id), 71);
    ASSERT(strncmp(t.id, "sha256:", 7) == 0);
    id = xstrdup(t.id);
    tres_free(&t);
    /* each label is a step of its own: the step count depends on them */
    ASSERT(strncmp(buf_str(&build_log), "Step 1/", 7) == 0);
    want = xasprintf(" : FROM %s\n", f.image);
    ASSERT_STR_CONTAINS(buf_str(&build_log), want);
    free(want);
    ASSERT_STR_CONTAINS(buf_str(&build_log), "\nStep 2/");
    ASSERT_STR_CONTAINS(buf_str(&build_log), " : COPY hello.txt /hello.txt\n");
    ASSERT_STR_CONTAINS(buf_str(&build_log), "\npartial\ntwo\n");
    want = xasprintf("\nSuccessfully built %.12s\nSuccessfully tagged %s\n", id + 7, tag);
    ASSERT_STR_CONTAINS(buf_str(&build_log), want);
    free(want);

    ASSERT_OK(docker_image_inspect(f.d, tag, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(t.json, "Id")), id);
    ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(t.json, "RepoTags"), 0)), tag);
    cfg = json_object_get(json_object_get(t.json, "Config"), "Labels");
    ASSERT_STR_EQ(json_string_value(json_object_get(cfg, TEST_LABEL_KEY)), f.label_val);
    ASSERT_STR_EQ(json_string_value(json_object_get(cfg, DOCKER_LABEL_MANAGED)), "1");
    ASSERT_STR_EQ(json_string_value(json_object_get(cfg, "io.runnerd.test.from")), "dockerfile");
    tres_free(&t);
    remove_image(&f, id);
    free(id);
    free(dockerfile);
    buf_free(&build_log);
    json_decref(l);
    teardown(&f);
}

/* Builds the Dockerfile text alone; the outcome in *t. */
static void
build_one(struct fx *f, const char *dockerfile, const char *tag, json_t *l, struct tres *t)
{
    struct tar tar;
    struct err e;

    context_tar(&tar, "Dockerfile", dockerfile, NULL);
    ASSERT_OK(docker_image_build(f->d, tar.out.data, tar.out.len, tag, NULL, l, NULL, on_res, t,
                                 &e));
    tar_free(&tar);
    wait_for(f, t);
}

TEST(image_build_failures)
{
    struct fx f;
    struct tres t = {0};
    json_t *l;
    char tag[96], *df, *want;

    setup(&f, "build-fail");
    l = labels(&f);
    snprintf(tag, sizeof tag, "runnerd-test/build-fail:%d", (int)getpid());

    /* a RUN that fails: the engine's words from the stream, no image */
    df = xasprintf("FROM %s\nRUN echo about to fail; exit 3\nLABEL x=y\n", f.image);
    build_one(&f, df, tag, l, &t);
    ASSERT_EQ(t.rc, -EIO);
    want = xasprintf("build image %s: The command '/bin/sh -c echo about to fail; exit 3' "
                     "returned a non-zero code: 3",
                     tag);
    ASSERT_STR_EQ(t.msg, want);
    ASSERT(t.id[0] == '\0');
    free(want);
    free(df);
    tres_free(&t);

    /* a parse error: refused before anything runs, as a 400 */
    df = xasprintf("FROM %s\nBOGUS x\n", f.image);
    build_one(&f, df, tag, l, &t);
    ASSERT_EQ(t.rc, ERR_INVALID);
    want = xasprintf("build image %s: 400 dockerfile parse error line 2: unknown instruction: "
                     "BOGUS",
                     tag);
    ASSERT_STR_EQ(t.msg, want);
    free(want);
    free(df);
    tres_free(&t);

    /* a base image this engine does not have: never pulled from here, so offline the engine's
     * registry lookup fails (its message depends on the network) */
    build_one(&f, "FROM runnerd-test/no-such-image:1\n", NULL, l, &t);
    ASSERT(t.rc < 0);
    ASSERT(strncmp(t.msg, "build image: ", 13) == 0);
    tres_free(&t);

    /* nothing was tagged */
    ASSERT_OK(docker_image_inspect(f.d, tag, on_res, &t, &(struct err){0}));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    tres_free(&t);
    json_decref(l);
    teardown(&f);
}

TEST(image_build_dockerfile_in_subdir)
{
    struct fx f;
    struct tres t = {0};
    struct err e;
    struct tar tar;
    json_t *l;
    char *df, *id;

    setup(&f, "build-sub");
    l = labels(&f);
    /* the context stays the archive's root: COPY names files there */
    df = xasprintf("FROM %s\nCOPY top.txt /top.txt\n", f.image);
    context_tar(&tar, "sub/Dockerfile", df, "top.txt", "top\n", NULL);
    ASSERT_OK(docker_image_build(f.d, tar.out.data, tar.out.len, NULL, "sub/Dockerfile", l,
                                 on_build_line, on_res, &t, &e));
    wait_for(&f, &t);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "build: %s\n%s", t.msg, buf_str(&build_log));
    ASSERT_EQ(strlen(t.id), 71);
    ASSERT_STR_CONTAINS(buf_str(&build_log), " : COPY top.txt /top.txt\n");
    id = xstrdup(t.id);
    tres_free(&t);
    remove_image(&f, id);

    /* the default name is not there */
    ASSERT_OK(docker_image_build(f.d, tar.out.data, tar.out.len, NULL, NULL, l, NULL, on_res, &t,
                                 &e));
    wait_for(&f, &t);
    ASSERT(t.rc < 0);
    ASSERT_STR_EQ(t.msg, "build image: 500 Cannot locate specified Dockerfile: Dockerfile");
    tres_free(&t);
    tar_free(&tar);
    free(id);
    free(df);
    buf_free(&build_log);
    json_decref(l);
    teardown(&f);
}

/* One line of build output per call: the 'x' lines' count and lengths, the others in build_log. */
static size_t x_lines, x_first, x_total;

static void
on_x_line(const char *line, void *arg)
{
    size_t n = strspn(line, "x");

    (void)arg;
    ASSERT(strchr(line, '\n') == NULL && line[0] != '\0');
    if (n > 0 && line[n] == '\0') {
        x_first = x_lines++ == 0 ? n : x_first;
        x_total += n;
    } else {
        buf_printf(&build_log, "%s\n", line);
    }
}

TEST(image_build_long_output_line)
{
    struct fx f;
    struct tres t = {0};
    struct err e;
    struct tar tar;
    json_t *l;
    char *df;

    setup(&f, "build-long");
    l = labels(&f);
    /* 1100000 bytes without a newline, in many messages: the first MiB goes out as a line of
     * its own once it is pending, the rest with its newline */
    df = xasprintf("FROM %s\nRUN head -c 1100000 /dev/zero | tr '\\0' x; echo; echo after\n",
                   f.image);
    context_tar(&tar, "Dockerfile", df, NULL);
    ASSERT_OK(docker_image_build(f.d, tar.out.data, tar.out.len, NULL, NULL, l, on_x_line,
                                 on_res, &t, &e));
    tar_free(&tar);
    wait_for(&f, &t);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "build: %s\n%s", t.msg, buf_str(&build_log));
    ASSERT_EQ(x_lines, 2);
    ASSERT(x_first >= 1024 * 1024);
    ASSERT_EQ(x_total, 1100000);
    ASSERT_STR_CONTAINS(buf_str(&build_log), "\nafter\n");
    remove_image(&f, t.id);
    tres_free(&t);
    free(df);
    buf_free(&build_log);
    json_decref(l);
    teardown(&f);
}

/* ---- attach ------------------------------------------------------------------------------ */

struct att {
    struct fx *f;
    const char *id;
    bool ready, ended, started;
    int end_rc;
    char end_msg[256];
    struct buf out, err;
    const char *expect_echo; /* duplex: close stdin once stdout has this */
    struct tres start;
};

static void
on_att_ready(struct docker_attach *a, void *arg)
{
    struct att *s = arg;
    struct err e;

    (void)a;
    s->ready = true;
    ASSERT_OK(docker_container_start(s->f->d, s->id, on_res, &s->start, &e));
}

static void
on_att_output(struct docker_attach *a, int stream, const char *p, size_t n, void *arg)
{
    struct att *s = arg;

    buf_append(stream == 2 ? &s->err : &s->out, p, n);
    if (s->expect_echo && strcmp(buf_str(&s->out), s->expect_echo) == 0)
        docker_attach_close_stdin(a);
}

static void
on_att_end(struct docker_attach *a, int rc, const struct err *e, void *arg)
{
    struct att *s = arg;

    (void)a;
    s->ended = true;
    s->end_rc = rc;
    if (e)
        snprintf(s->end_msg, sizeof s->end_msg, "%s", e->msg);
}

static const struct docker_attach_cbs att_cbs = {
    .on_ready = on_att_ready,
    .on_output = on_att_output,
    .on_end = on_att_end,
};

TEST(attach_output_and_exit_code)
{
    struct fx f;
    const char *cmd[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    struct att s = {0};
    struct tres w = {0}, t = {0};
    struct docker_attach *a;
    struct err e;
    char *id, *img;

    setup(&f, "attach");
    id = create(&f, cmd, false);
    img = image_id(&f);
    /* the container runs exactly the image we resolved */
    ASSERT_OK(docker_container_inspect(f.d, id, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_STR_EQ(json_string_value(json_object_get(t.json, "Image")), img);
    ASSERT_STR_EQ(json_string_value(json_object_get(
                      json_object_get(json_object_get(t.json, "Config"), "Labels"),
                      DOCKER_LABEL_MANAGED)),
                  "1");
    tres_free(&t);
    /* wait (next-exit) before start so a fast exit is not missed */
    ASSERT_OK(docker_container_wait(f.d, id, "next-exit", on_res, &w, &e));
    s.f = &f;
    s.id = id;
    ASSERT_OK(docker_attach(f.d, id, &att_cbs, &s, &a, &e));
    while (!s.ended || !w.done)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT(s.ready);
    ASSERT_EQ(s.start.rc, 0);
    ASSERT_EQ(s.end_rc, 0);
    ASSERT_STR_EQ(buf_str(&s.out), "out\n");
    ASSERT_STR_EQ(buf_str(&s.err), "err\n");
    ASSERT_EQ(w.rc, 0);
    ASSERT_EQ(w.exit_code, 3);
    docker_attach_close(a);
    tres_free(&w);
    tres_free(&s.start);
    buf_free(&s.out);
    buf_free(&s.err);
    remove_container(&f, id);
    free(id);
    free(img);
    teardown(&f);
}

TEST(attach_duplex_round_trip)
{
    struct fx f;
    const char *cmd[] = {"cat", NULL};
    struct att s = {0};
    struct tres w = {0};
    struct docker_attach *a;
    struct err e;
    char *id;

    setup(&f, "duplex");
    id = create(&f, cmd, true);
    ASSERT_OK(docker_container_wait(f.d, id, "next-exit", on_res, &w, &e));
    s.f = &f;
    s.id = id;
    s.expect_echo = "ping\nsecond line\n";
    ASSERT_OK(docker_attach(f.d, id, &att_cbs, &s, &a, &e));
    /* queued before the stream is up: sent only after the 101 header */
    ASSERT_OK(docker_attach_write(a, "ping\n", 5));
    while (!s.ready)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT_OK(docker_attach_write(a, "second line\n", 12));
    while (!s.ended || !w.done)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT_EQ(s.start.rc, 0);
    ASSERT_EQ(s.end_rc, 0);
    ASSERT_STR_EQ(buf_str(&s.out), "ping\nsecond line\n");
    ASSERT_STR_EQ(buf_str(&s.err), "");
    ASSERT_EQ(w.exit_code, 0); /* cat saw EOF on stdin after close_stdin */
    ASSERT_EQ(docker_attach_write(a, "late", 4), -EPIPE);
    docker_attach_close(a);
    tres_free(&w);
    tres_free(&s.start);
    buf_free(&s.out);
    buf_free(&s.err);
    remove_container(&f, id);
    free(id);
    teardown(&f);
}

TEST(attach_missing_container)
{
    struct fx f;
    struct att s = {0};
    struct docker_attach *a;
    struct err e;

    setup(&f, "attach404");
    s.f = &f;
    s.id = "runnerd-no-such-container";
    ASSERT_OK(docker_attach(f.d, s.id, &att_cbs, &s, &a, &e));
    while (!s.ended)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT(!s.ready);
    ASSERT_EQ(s.end_rc, ERR_NOTFOUND);
    ASSERT_STR_EQ(s.end_msg, "attach container runnerd-no-such-container: 404 No such container: "
                             "runnerd-no-such-container");
    docker_attach_close(a);
    teardown(&f);
}

/* ---- archive, errors --------------------------------------------------------------------- */

/* Finds a regular file in a tar: by name suffix (ustar name or prefix/name), or the first one
 * when suffix is NULL (a GET of one file; Go writes long names as PAX headers). */
static const char *
tar_find(const char *tar, size_t len, const char *suffix, size_t *out_len)
{
    size_t off = 0;

    while (off + 512 <= len && tar[off] != '\0') {
        char name[300];
        const char *h = tar + off;
        size_t size = strtoul(h + 124, NULL, 8);

        if (h[345])
            snprintf(name, sizeof name, "%.155s/%.100s", h + 345, h);
        else
            snprintf(name, sizeof name, "%.100s", h);
        size_t nl = strlen(name), sl = suffix ? strlen(suffix) : 0;
        bool match = suffix == NULL || (nl >= sl && strcmp(name + nl - sl, suffix) == 0);

        if (h[156] == '0' && match) {
            *out_len = size;
            return h + 512;
        }
        off += 512 + (size + 511) / 512 * 512;
    }
    return NULL;
}

TEST(archive_put_and_get)
{
    struct fx f;
    const char *cmd[] = {"true", NULL};
    struct tres t = {0};
    struct tar tar;
    struct err e;
    char *id, longdir[200], longpath[400];
    const char *data;
    size_t n = 0;

    setup(&f, "archive");
    id = create(&f, cmd, false);
    memset(longdir, 'd', 120);
    longdir[120] = '\0';
    snprintf(longpath, sizeof longpath, "%s/%s", longdir,
             "a-file-name-that-is-long-enough-to-need-more-than-the-ustar-name-field-on-its-own-"
             "and-then-some-more.txt");
    tar_init(&tar);
    ASSERT_OK(tar_add_dir(&tar, ".runner", 0755, &e));
    ASSERT_OK(tar_add_file(&tar, ".runner/hello.txt", 0644, "hello archive\n", 14, &e));
    ASSERT_OK(tar_add_file(&tar, ".runner/run.sh", 0755, "#!/bin/sh\necho hi\n", 18, &e));
    ASSERT_OK(tar_add_dir(&tar, longdir, 0755, &e));
    ASSERT_OK(tar_add_file(&tar, longpath, 0600, "long\n", 5, &e));
    tar_finish(&tar);
    ASSERT_OK(docker_archive_put(f.d, id, "/", tar.out.data, tar.out.len, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(t.status, 200);
    tres_free(&t);

    ASSERT_OK(docker_archive_get(f.d, id, "/.runner/hello.txt", on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    data = tar_find(t.body.data, t.body.len, "hello.txt", &n);
    ASSERT(data != NULL);
    ASSERT_EQ(n, 14);
    ASSERT(memcmp(data, "hello archive\n", 14) == 0);
    tres_free(&t);

    {
        char *p = xasprintf("/%s", longpath);

        ASSERT_OK(docker_archive_get(f.d, id, p, on_res, &t, &e));
        free(p);
    }
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    data = tar_find(t.body.data, t.body.len, NULL, &n);
    ASSERT(data != NULL);
    ASSERT_EQ(n, 5);
    ASSERT(memcmp(data, "long\n", 5) == 0);
    tres_free(&t);

    /* mode preserved: GET the script and look at its header */
    ASSERT_OK(docker_archive_get(f.d, id, "/.runner/run.sh", on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(strtoul(t.body.data + 100, NULL, 8) & 0777, 0755);
    tres_free(&t);

    /* into a missing directory: 404 with the daemon's words */
    ASSERT_OK(docker_archive_put(f.d, id, "/nonexist", tar.out.data, tar.out.len, on_res, &t,
                                 &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    ASSERT_STR_CONTAINS(t.msg, "copy archive into container ");
    ASSERT_STR_CONTAINS(t.msg, ":/nonexist: 404 Could not find the file /nonexist in container");
    tres_free(&t);
    tar_free(&tar);
    remove_container(&f, id);
    free(id);
    teardown(&f);
}

TEST(error_classification)
{
    struct fx f;
    const char *cmd[] = {"sleep", "60", NULL};
    struct tres t = {0};
    struct err e;
    char *id;

    setup(&f, "errors");
    ASSERT_OK(docker_container_inspect(f.d, "runnerd-no-such", on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    ASSERT_STR_EQ(t.msg, "inspect container runnerd-no-such: 404 No such container: "
                         "runnerd-no-such");
    tres_free(&t);

    id = create(&f, cmd, false);
    ASSERT_OK(docker_container_start(f.d, id, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(t.status, 204);
    tres_free(&t);
    /* already running: 304 is fine */
    ASSERT_OK(docker_container_start(f.d, id, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(t.status, 304);
    tres_free(&t);
    /* remove without force while running: 409 */
    ASSERT_OK(docker_container_remove(f.d, id, false, false, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, -EEXIST);
    ASSERT_STR_CONTAINS(t.msg, "remove container ");
    ASSERT_STR_CONTAINS(t.msg, ": 409 You cannot remove a running container");
    tres_free(&t);
    ASSERT_OK(docker_container_kill(f.d, id, "SIGKILL", on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    ASSERT_OK(docker_container_wait(f.d, id, "not-running", on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(t.exit_code, 137);
    tres_free(&t);
    /* stop on a stopped container: 304, not an error */
    ASSERT_OK(docker_container_stop(f.d, id, 1, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(t.status, 304);
    tres_free(&t);
    ASSERT_OK(docker_container_kill(f.d, id, "SIGKILL", on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, -EEXIST);
    ASSERT_STR_CONTAINS(t.msg, ": 409 Cannot kill container: ");
    tres_free(&t);
    remove_container(&f, id);
    ASSERT_OK(docker_container_remove(f.d, id, true, true, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    tres_free(&t);
    free(id);
    teardown(&f);
}

/* ---- networks, volumes, sweep ------------------------------------------------------------ */

TEST(network_create_connect_remove)
{
    struct fx f;
    const char *cmd[] = {"true", NULL};
    const char *aliases[] = {"build", NULL};
    struct tres t = {0};
    struct err e;
    json_t *l;
    char name[128], *netid, *cid, want[512];

    setup(&f, "network");
    l = labels(&f);
    snprintf(name, sizeof name, "runnerd-test-net-%d", (int)getpid());
    ASSERT_OK(docker_network_create(f.d, name, l, false, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    netid = xstrdup(t.id);
    tres_free(&t);
    ASSERT_OK(docker_network_create(f.d, name, l, false, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, -EEXIST);
    snprintf(want, sizeof want, "create network %s: 409 network with name %s already exists",
             name, name);
    ASSERT_STR_EQ(t.msg, want);
    tres_free(&t);
    cid = create(&f, cmd, false);
    ASSERT_OK(docker_network_connect(f.d, netid, cid, aliases, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    remove_container(&f, cid);
    ASSERT_OK(docker_network_remove(f.d, netid, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    ASSERT_OK(docker_network_remove(f.d, netid, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    tres_free(&t);
    json_decref(l);
    free(netid);
    free(cid);
    teardown(&f);
}

TEST(sweep_removes_labelled_leftovers)
{
    struct fx f;
    const char *cmd[] = {"sleep", "60", NULL};
    struct tres t = {0};
    struct err e;
    json_t *l;
    char name[128], *c1, *c2;

    setup(&f, "sweep");
    l = labels(&f);
    c1 = create(&f, cmd, false);
    c2 = create(&f, cmd, false);
    ASSERT_OK(docker_container_start(f.d, c1, on_res, &t, &e)); /* a running one too */
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    snprintf(name, sizeof name, "runnerd-test-sweep-%d", (int)getpid());
    ASSERT_OK(docker_network_create(f.d, name, l, false, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    ASSERT_OK(docker_volume_create(f.d, name, l, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);

    ASSERT_OK(docker_container_list(f.d, f.label, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(json_array_size(t.json), 2);
    tres_free(&t);

    ASSERT_OK(docker_sweep(f.d, f.label, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_EQ(t.removed, 4);
    tres_free(&t);

    ASSERT_OK(docker_container_list(f.d, f.label, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(json_array_size(t.json), 0);
    tres_free(&t);
    ASSERT_OK(docker_call(f.d, "list volumes", "GET", "/volumes", NULL, NULL, 0, on_res, &t, &e));
    wait_for(&f, &t);
    {
        json_t *vols = json_object_get(t.json, "Volumes");
        size_t i;
        json_t *v;

        json_array_foreach(vols, i, v)
            ASSERT(strcmp(json_string_value(json_object_get(v, "Name")), name) != 0);
    }
    tres_free(&t);
    json_decref(l);
    free(c1);
    free(c2);
    teardown(&f);
}

TEST(debian_image_has_bash)
{
    struct fx f;
    const char *cmd[] = {"bash", "-c", "echo \"bash ${BASH_VERSINFO[0]}\"; cat /etc/os-release | "
                                       "grep -c '^ID=debian'", NULL};
    struct att s = {0};
    struct tres w = {0};
    struct docker_attach *a;
    struct err e;
    char *id, *deb;

    setup(&f, "debian");
    deb = sh_last_line(RUNNERD_SOURCE_DIR "/tests/images/build.sh debian");
    ASSERT_STR_CONTAINS(deb, "runnerd-test/debian:");
    id = create_img(&f, deb, cmd, false);
    ASSERT_OK(docker_container_wait(f.d, id, "next-exit", on_res, &w, &e));
    s.f = &f;
    s.id = id;
    ASSERT_OK(docker_attach(f.d, id, &att_cbs, &s, &a, &e));
    while (!s.ended || !w.done)
        uv_run(&f.loop, UV_RUN_ONCE);
    ASSERT_EQ(s.end_rc, 0);
    ASSERT_STR_EQ(buf_str(&s.out), "bash 5\n1\n");
    ASSERT_EQ(w.exit_code, 0);
    docker_attach_close(a);
    tres_free(&w);
    tres_free(&s.start);
    buf_free(&s.out);
    buf_free(&s.err);
    remove_container(&f, id);
    free(id);
    free(deb);
    teardown(&f);
}

/* ---- a real registry on loopback (Debian's docker-registry, htpasswd auth) ---------------- */

static int
free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int pull_statuses;
static struct buf pull_log;

static void
on_pull_progress(const char *status, void *arg)
{
    (void)arg;
    pull_statuses++;
    buf_printf(&pull_log, "%s\n", status);
}

TEST(registry_pull_by_digest_with_auth)
{
    struct fx f;
    struct tres t = {0};
    struct err e;
    char *id, *digest_ref, *cmd, want[512], repo[128], wrong[256];
    const char *dir = test_tmpdir();
    int port = free_port();
    pid_t reg;
    struct docker_auth auth = {.username = "tester", .password = "s3cret"};
    char server[64];

    setup(&f, "registry");
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    auth.serveraddress = server;
    snprintf(repo, sizeof repo, "%s/runnerd/bb-%d", server, (int)getpid());
    /* untag whatever this test pushed or pulled, however it ends */
    cmd = xasprintf("docker image ls -q --digests --format '{{.Repository}}@{{.Digest}}' %s |"
                    " xargs -r docker rmi >/dev/null 2>&1; docker rmi %s:t >/dev/null 2>&1",
                    repo, repo);
    dockertest_guard_cmd(cmd);
    free(cmd);

    cmd = xasprintf("python3 -W ignore -c \"import crypt; print('tester:' + crypt.crypt("
                    "'s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))\" > %s/htpasswd && "
                    "printf 'version: 0.1\\nlog:\\n  level: error\\nstorage:\\n  filesystem:\\n"
                    "    rootdirectory: %s/data\\nhttp:\\n  addr: %s\\nauth:\\n  htpasswd:\\n"
                    "    realm: runnerd-test\\n    path: %s/htpasswd\\n' > %s/registry.yml",
                    dir, dir, server, dir, dir);
    ASSERT_EQ(system(cmd), 0);
    free(cmd);
    reg = fork();
    ASSERT(reg >= 0);
    if (reg == 0) {
        char *cfg = xasprintf("%s/registry.yml", dir);

        int log = open("registry.log", O_CREAT | O_WRONLY | O_TRUNC, 0600);

        dup2(log, 1);
        dup2(log, 2);
        execlp("docker-registry", "docker-registry", "serve", cfg, (char *)NULL);
        _exit(127);
    }
    /* push the busybox image with the CLI (its own config dir), then forget the tag */
    cmd = xasprintf("export DOCKER_CONFIG=%s/dc; for i in $(seq 50); do "
                    "echo s3cret | docker login -u tester --password-stdin %s >/dev/null 2>&1 "
                    "&& break; sleep 0.1; done; docker tag %s %s:t && docker push %s:t >/dev/null "
                    "&& docker image inspect --format '{{index .RepoDigests 0}}' %s:t > digest "
                    "&& docker rmi %s:t >/dev/null",
                    dir, server, f.image, repo, repo, repo, repo);
    ASSERT_EQ(system(cmd), 0);
    free(cmd);
    digest_ref = test_read_file("digest", NULL);
    ASSERT(digest_ref != NULL);
    digest_ref[strcspn(digest_ref, "\n")] = '\0';
    ASSERT_STR_CONTAINS(digest_ref, "@sha256:");
    id = image_id(&f);

    /* not local, no pulling: refused */
    ASSERT_OK(docker_image_resolve(f.d, digest_ref, NULL, false, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    snprintf(want, sizeof want,
             "image %s: no local image has this repo digest and pulling is not allowed",
             digest_ref);
    ASSERT_STR_EQ(t.msg, want);
    tres_free(&t);

    /* pulling without credentials fails (the daemon's message, "... no basic auth credentials",
     * is longer than struct err keeps after the reference) */
    ASSERT_OK(docker_image_resolve(f.d, digest_ref, NULL, true, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, -EIO);
    snprintf(want, sizeof want, "image %s: pull failed: 500 Get \"http://%s/v2/", digest_ref,
             server);
    ASSERT_STR_CONTAINS(t.msg, want);
    tres_free(&t);

    /* a digest the registry does not have */
    snprintf(wrong, sizeof wrong, "%s@sha256:%064d", repo, 1);
    ASSERT_OK(docker_image_resolve(f.d, wrong, NULL, true, &auth, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT(t.rc < 0);
    ASSERT_STR_CONTAINS(t.msg, ": pull failed: ");
    tres_free(&t);

    /* with credentials (base64url X-Registry-Auth): pulled, verified, same image */
    ASSERT_OK(docker_image_resolve(f.d, digest_ref, NULL, true, &auth, on_res, &t, &e));
    wait_for(&f, &t);
    if (t.rc < 0)
        test_fail(__FILE__, __LINE__, "resolve with auth: %s", t.msg);
    ASSERT_STR_EQ(t.id, id);
    ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(t.json, "RepoDigests"), 0)),
                  digest_ref);
    tres_free(&t);

    /* a plain pull reports progress lines */
    pull_statuses = 0;
    buf_reset(&pull_log);
    ASSERT_OK(docker_image_pull(f.d, digest_ref, &auth, on_pull_progress, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT(pull_statuses >= 2);
    ASSERT_STR_CONTAINS(buf_str(&pull_log), "Digest: sha256:");
    ASSERT_STR_CONTAINS(buf_str(&pull_log), "Status: ");
    buf_free(&pull_log);
    tres_free(&t);

    /* now local: accepted without pulling */
    ASSERT_OK(docker_image_resolve(f.d, digest_ref, NULL, false, NULL, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    ASSERT_STR_EQ(t.id, id);
    tres_free(&t);

    ASSERT_OK(docker_image_remove(f.d, digest_ref, false, on_res, &t, &e));
    wait_for(&f, &t);
    ASSERT_EQ(t.rc, 0);
    tres_free(&t);
    kill(reg, SIGKILL);
    waitpid(reg, NULL, 0);
    free(id);
    free(digest_ref);
    teardown(&f);
}
