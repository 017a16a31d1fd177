/* test-actbuild.c: a docker action's image built from its Dockerfile, against the real engine
 * (offline busybox image). Covers: a host directory built and tagged (labels on the image, the
 * output lines), a Dockerfile in a subdirectory built with that directory as the context, a
 * missing Dockerfile (and directory) named clearly, absolute and ".." paths refused before
 * anything runs, a context too large for the cap, a tar context as the engine's archive GET
 * returns it (prefixed by the directory's name, a hard link inside), tar contexts refused on
 * the pool (a malformed archive, cut down or taken as it is; a hard link whose target is not in
 * it; hard links copied past the cap), cancel right after start and cancel while a RUN step
 * runs (exactly one done with ERR_CANCELED, the engine's build container gone). Built images
 * carry the test label and are removed; nothing is left behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actbuild.h"
#include "dockertest.h"
#include "harness.h"
#include "runner/buf.h"
#include "runner/xalloc.h"
#include "tar.h"

struct build {
    int done;
    int rc;
    char msg[256];
    char id[80];
    struct buf log;
    struct actbuild *b;
    bool cancel_on_run;  /* cancel from progress once a RUN step's container runs */
    char running[16];    /* that container's short id */
};

static void
on_line(void *arg, const char *line)
{
    struct build *r = arg;

    ASSERT_EQ(r->done, 0);
    ASSERT(strchr(line, '\n') == NULL);
    buf_printf(&r->log, "%s\n", line);
    if (r->cancel_on_run && strncmp(line, " ---> Running in ", 17) == 0 && !r->running[0]) {
        snprintf(r->running, sizeof r->running, "%s", line + 17);
        actbuild_cancel(r->b);
        actbuild_cancel(r->b); /* twice is harmless */
    }
}

static void
on_done(void *arg, int rc, const struct err *e, const char *image_id)
{
    struct build *r = arg;

    r->done++;
    r->rc = rc;
    snprintf(r->msg, sizeof r->msg, "%s", rc < 0 ? e->msg : "");
    ASSERT((rc == 0) == (image_id != NULL));
    if (image_id)
        snprintf(r->id, sizeof r->id, "%s", image_id);
}

/* Starts req with the test labels; fails the test if it does not start. */
static void
start(struct dockertest *f, struct actbuild_req *req, struct build *r)
{
    struct err e = {0};
    json_t *l = dockertest_labels(f);

    req->labels = l;
    if (actbuild_start(&f->loop, f->d, req, on_line, on_done, r, &r->b, &e) < 0)
        test_fail(__FILE__, __LINE__, "actbuild_start: %s", e.msg);
    json_decref(l); /* only read during start */
}

/* Runs the loop until done, then a little longer: a second done would show. */
static void
finish(struct dockertest *f, struct build *r)
{
    dockertest_run_until(f, &r->done);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    ASSERT_EQ(r->done, 1);
}

static void
write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    ASSERT(fp != NULL);
    ASSERT(fputs(text, fp) >= 0);
    ASSERT_EQ(fclose(fp), 0);
}

struct res {
    int done;
    int rc;
    char msg[256];
    char id[80];
    json_t *json;
    struct buf body;
};

static void
on_res(const struct docker_res *res, void *arg)
{
    struct res *t = arg;

    t->done = 1;
    t->rc = res->rc;
    snprintf(t->msg, sizeof t->msg, "%s", res->err.msg);
    if (res->id)
        snprintf(t->id, sizeof t->id, "%s", res->id);
    if (res->json)
        t->json = json_incref(res->json);
    if (res->body_len)
        buf_append(&t->body, res->body, res->body_len);
}

static void
res_free(struct res *t)
{
    json_decref(t->json);
    buf_free(&t->body);
    memset(t, 0, sizeof *t);
}

/* Inspects ref: the image's Id, or "" when there is none. */
static char *
image_id(struct dockertest *f, const char *ref)
{
    struct res t = {0};
    struct err e = {0};
    char *id;

    ASSERT_OK(docker_image_inspect(f->d, ref, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    if (t.rc == ERR_NOTFOUND) {
        res_free(&t);
        return xstrdup("");
    }
    ASSERT_EQ(t.rc, 0);
    id = xstrdup(json_string_value(json_object_get(t.json, "Id")));
    ASSERT_STR_EQ(json_string_value(json_object_get(
                      json_object_get(json_object_get(t.json, "Config"), "Labels"),
                      DOCKERTEST_LABEL_KEY)),
                  f->label_val);
    res_free(&t);
    return id;
}

static void
remove_image(struct dockertest *f, const char *ref)
{
    struct res t = {0};
    struct err e = {0};

    ASSERT_OK(docker_image_remove(f->d, ref, true, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    res_free(&t);
}

/* DIR/act: a Dockerfile at the top and another in docker/, each COPYing a file beside it. */
static char *
make_action(struct dockertest *f)
{
    char *dir = xasprintf("%s/act", test_tmpdir()), *p, *text;

    ASSERT_EQ(mkdir(dir, 0755), 0);
    p = xasprintf("%s/docker", dir);
    ASSERT_EQ(mkdir(p, 0755), 0);
    free(p);
    text = xasprintf("FROM %s\nCOPY entrypoint.sh /entrypoint.sh\nRUN test -x /entrypoint.sh\n",
                     f->image);
    p = xasprintf("%s/Dockerfile", dir);
    write_file(p, text);
    free(p);
    free(text);
    p = xasprintf("%s/entrypoint.sh", dir);
    write_file(p, "#!/bin/sh\necho hi\n");
    ASSERT_EQ(chmod(p, 0755), 0);
    free(p);
    text = xasprintf("FROM %s\nCOPY inner.txt /inner.txt\n", f->image);
    p = xasprintf("%s/docker/Dockerfile", dir);
    write_file(p, text);
    free(p);
    free(text);
    p = xasprintf("%s/docker/inner.txt", dir);
    write_file(p, "inner\n");
    free(p);
    return dir;
}

TEST(builds_a_directory)
{
    struct dockertest f;
    struct build r = {0};
    char *dir, tag[96], *id;

    dockertest_setup(&f, "actbuild-dir");
    dir = make_action(&f);
    snprintf(tag, sizeof tag, "runnerd-test/actbuild-%d:latest", (int)getpid());
    start(&f, &(struct actbuild_req){.dir = dir, .tag = tag}, &r);
    finish(&f, &r);
    if (r.rc < 0)
        test_fail(__FILE__, __LINE__, "build: %s\n%s", r.msg, buf_str(&r.log));
    ASSERT_EQ(strlen(r.id), 71);
    ASSERT(strncmp(r.id, "sha256:", 7) == 0);
    ASSERT(strncmp(buf_str(&r.log), "Step 1/", 7) == 0);
    ASSERT_STR_CONTAINS(buf_str(&r.log), " : COPY entrypoint.sh /entrypoint.sh\n");
    id = image_id(&f, tag);
    ASSERT_STR_EQ(id, r.id);
    free(id);
    remove_image(&f, r.id);
    buf_free(&r.log);

    /* runs.image: ./docker//Dockerfile: the context is docker/, which COPY reads from */
    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = dir, .dockerfile = "./docker//Dockerfile"}, &r);
    finish(&f, &r);
    if (r.rc < 0)
        test_fail(__FILE__, __LINE__, "build: %s\n%s", r.msg, buf_str(&r.log));
    ASSERT_STR_CONTAINS(buf_str(&r.log), " : COPY inner.txt /inner.txt\n");
    id = image_id(&f, r.id);
    ASSERT_STR_EQ(id, r.id);
    free(id);
    remove_image(&f, r.id);
    buf_free(&r.log);
    free(dir);
    dockertest_teardown(&f);
}

TEST(missing_dockerfile_and_bad_paths)
{
    struct dockertest f;
    struct build r = {0};
    struct err e = {0};
    char *dir, want[512];
    const char *bad[] = {"../Dockerfile", "docker/../../Dockerfile", "/etc/Dockerfile", ".",
                         ""};

    dockertest_setup(&f, "actbuild-missing");
    dir = make_action(&f);

    start(&f, &(struct actbuild_req){.dir = dir, .dockerfile = "Dockerfile.release"}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_NOTFOUND);
    snprintf(want, sizeof want, "%s: no Dockerfile at Dockerfile.release", dir);
    ASSERT_STR_EQ(r.msg, want);
    ASSERT_STR_EQ(buf_str(&r.log), "");

    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = dir, .dockerfile = "nodir/Dockerfile"}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_NOTFOUND);
    snprintf(want, sizeof want, "%s: no Dockerfile at nodir/Dockerfile", dir);
    ASSERT_STR_EQ(r.msg, want);

    /* a directory where the Dockerfile should be */
    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = dir, .dockerfile = "docker"}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_NOTFOUND);
    snprintf(want, sizeof want, "%s: no Dockerfile at docker", dir);
    ASSERT_STR_EQ(r.msg, want);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct actbuild *b = NULL;

        ASSERT_EQ(actbuild_start(&f.loop, f.d,
                                 &(struct actbuild_req){.dir = dir, .dockerfile = bad[i]},
                                 on_line, on_done, &r, &b, &e),
                  ERR_INVALID);
        snprintf(want, sizeof want,
                 "%s: Dockerfile path \"%s\" must be relative and stay inside the action's "
                 "directory (no \"..\")",
                 dir, bad[i]);
        ASSERT_STR_EQ(e.msg, want);
        ASSERT(b == NULL);
    }

    /* over the cap */
    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = dir, .cap = 1024}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, -EFBIG);
    snprintf(want, sizeof want, "%s: build context over 1024 bytes", dir);
    ASSERT_STR_EQ(r.msg, want);
    ASSERT_EQ(actbuild_start(&f.loop, f.d,
                             &(struct actbuild_req){.dir = "/in/ctr", .tar = "x",
                                                    .tar_len = 2u << 20, .cap = 1u << 20},
                             on_line, on_done, &r, NULL, &e),
              -EFBIG);
    ASSERT_STR_EQ(e.msg, "/in/ctr: build context over 1 MiB");
    free(dir);
    dockertest_teardown(&f);
}

/* A fetched action's links never make the host pack its own files: a Dockerfile directory
 * that is a link out of the repository, a Dockerfile that is one, or an action directory below
 * a root it does not lie in, are refused before anything is built. */
TEST(links_out_of_the_action_refused)
{
    struct dockertest f;
    struct build r = {0};
    struct err e = {0};
    char *dir, *cmd, want[1024];

    dockertest_setup(&f, "actbuild-links");
    dir = make_action(&f);
    cmd = xasprintf("mkdir -p %s/host && printf 'FROM scratch\n' > %s/host/Dockerfile && "
                    "ln -s %s/host %s/out && mkdir %s/df && "
                    "ln -s %s/host/Dockerfile %s/df/Dockerfile",
                    test_tmpdir(), test_tmpdir(), test_tmpdir(), dir, dir, test_tmpdir(), dir);
    ASSERT_EQ(system(cmd), 0);
    free(cmd);

    start(&f, &(struct actbuild_req){.dir = dir, .dockerfile = "out/Dockerfile"}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, -EXDEV);
    snprintf(want, sizeof want, "%s: a symbolic link in out/Dockerfile leads out of %s", dir,
             dir);
    ASSERT_STR_EQ(r.msg, want);
    ASSERT_STR_EQ(buf_str(&r.log), "");

    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = dir, .dockerfile = "df/Dockerfile"}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, -EXDEV);

    /* an action in a sub-path: bounded by the repository's root, not its own directory */
    char *sub = xasprintf("%s/docker", dir);
    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = sub, .root = dir}, &r);
    finish(&f, &r);
    if (r.rc < 0)
        test_fail(__FILE__, __LINE__, "build: %s\n%s", r.msg, buf_str(&r.log));
    remove_image(&f, r.id);
    buf_free(&r.log);
    ASSERT_EQ(actbuild_start(&f.loop, f.d, &(struct actbuild_req){.dir = "/etc", .root = dir},
                             on_line, on_done, &r, NULL, &e),
              ERR_INVALID);
    snprintf(want, sizeof want, "/etc: not below the action's root %s", dir);
    ASSERT_STR_EQ(e.msg, want);
    free(sub);
    free(dir);
    dockertest_teardown(&f);
}

/* The engine's archive of /x/act in a container: entries "act/...", one of entrypoint.sh and
 * entry2.sh a hard link to the other (which one depends on the directory's order). */
static void
archive_from_container(struct dockertest *f, struct buf *out)
{
    const char *cmd[] = {"ln", "/x/act/entrypoint.sh", "/x/act/entry2.sh", NULL};
    json_t *l = dockertest_labels(f);
    struct docker_container_spec s = {.image = f->image, .cmd = cmd, .labels = l};
    json_t *body = docker_container_spec_json(&s);
    struct res t = {0};
    struct err e = {0};
    struct tar tar;
    char *df = xasprintf("FROM %s\nCOPY entrypoint.sh entry2.sh /\nRUN test -x /entry2.sh\n",
                         f->image);
    char *id;

    ASSERT_OK(docker_container_create(f->d, NULL, body, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    id = xstrdup(t.id);
    res_free(&t);
    tar_init(&tar);
    ASSERT_OK(tar_add_dir(&tar, "x/act", 0755, &e));
    ASSERT_OK(tar_add_file(&tar, "x/act/Dockerfile", 0644, df, strlen(df), &e));
    ASSERT_OK(tar_add_file(&tar, "x/act/entrypoint.sh", 0755, "#!/bin/sh\n", 10, &e));
    ASSERT_OK(tar_add_file(&tar, "x/other.txt", 0644, "other\n", 6, &e));
    tar_finish(&tar);
    ASSERT_OK(docker_archive_put(f->d, id, "/", tar.out.data, tar.out.len, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    res_free(&t);
    ASSERT_OK(docker_container_start(f->d, id, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    res_free(&t);
    ASSERT_OK(docker_container_wait(f->d, id, "not-running", on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    res_free(&t);
    ASSERT_OK(docker_archive_get(f->d, id, "/x/act", on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    buf_append(out, t.body.data, t.body.len);
    res_free(&t);
    ASSERT_OK(docker_container_remove(f->d, id, true, true, on_res, &t, &e));
    dockertest_run_until(f, &t.done);
    ASSERT_EQ(t.rc, 0);
    res_free(&t);
    tar_free(&tar);
    json_decref(body);
    json_decref(l);
    free(df);
    free(id);
}

TEST(builds_a_tar_from_a_container)
{
    struct dockertest f;
    struct build r = {0};
    struct buf ar = BUF_INIT;
    char *id;

    dockertest_setup(&f, "actbuild-tar");
    archive_from_container(&f, &ar);
    {
        /* the premise: what the engine sends is prefixed and holds the hard link */
        struct tar_reader rd;
        struct tar_entry ent;
        struct err e = {0};
        bool hard = false;

        tar_reader_init(&rd, ar.data, ar.len);
        while (tar_next(&rd, &ent, &e) > 0) {
            ASSERT(strncmp(ent.path, "act", 3) == 0);
            hard = hard || (ent.type == '1' && strncmp(ent.path, "act/entry", 9) == 0);
        }
        tar_reader_free(&rd);
        ASSERT(hard);
    }
    start(&f,
          &(struct actbuild_req){.dir = "/x/act", .tar = ar.data, .tar_len = ar.len,
                                 .dockerfile = "act/Dockerfile"},
          &r);
    buf_free(&ar); /* copied by start */
    finish(&f, &r);
    if (r.rc < 0)
        test_fail(__FILE__, __LINE__, "build: %s\n%s", r.msg, buf_str(&r.log));
    ASSERT_STR_CONTAINS(buf_str(&r.log), " : COPY entrypoint.sh entry2.sh /\n");
    id = image_id(&f, r.id);
    ASSERT_STR_EQ(id, r.id);
    free(id);
    remove_image(&f, r.id);
    buf_free(&r.log);

    /* a Dockerfile the archive lacks */
    archive_from_container(&f, &ar);
    memset(&r, 0, sizeof r);
    start(&f,
          &(struct actbuild_req){.dir = "/x/act", .tar = ar.data, .tar_len = ar.len,
                                 .dockerfile = "act/Dockerfile.dev"},
          &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_NOTFOUND);
    ASSERT_STR_EQ(r.msg, "/x/act: no Dockerfile at act/Dockerfile.dev");

    /* at the archive's root there is only the directory */
    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = "/x/act", .tar = ar.data, .tar_len = ar.len}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_NOTFOUND);
    ASSERT_STR_EQ(r.msg, "/x/act: no Dockerfile at Dockerfile");
    buf_free(&ar);
    dockertest_teardown(&f);
}

/* Builds req (a tar context) and expects it refused before the engine is asked: rc and msg. */
static void
refused(struct dockertest *f, struct actbuild_req *req, int rc, const char *msg)
{
    struct build r = {0};

    start(f, req, &r);
    finish(f, &r);
    ASSERT_EQ(r.rc, rc);
    ASSERT_STR_EQ(r.msg, msg);
    ASSERT_STR_EQ(buf_str(&r.log), "");
}

TEST(tar_contexts_refused)
{
    struct dockertest f;
    char junk[2048], *cmd, *tar;
    size_t n;

    dockertest_setup(&f, "actbuild-tar-bad");
    memset(junk, 'j', sizeof junk);
    /* a malformed archive, cut down to the Dockerfile's directory or read as it is */
    refused(&f,
            &(struct actbuild_req){.dir = "/x/act", .tar = junk, .tar_len = sizeof junk,
                                   .dockerfile = "act/Dockerfile"},
            ERR_PROTO, "/x/act: build context: tar: bad header checksum at byte 0");
    refused(&f, &(struct actbuild_req){.dir = "/x/act", .tar = junk, .tar_len = sizeof junk},
            ERR_PROTO, "/x/act: tar: bad header checksum at byte 0");

    /* a hard link whose target was taken out of the archive */
    cmd = xasprintf("cd %s && mkdir -p src/act && printf 'FROM x\\n' > src/act/Dockerfile && "
                    "printf 'a\\n' > src/act/a && ln src/act/a src/act/b && "
                    "tar -C src --format=gnu --sort=name -b 1 -cf nolink.tar act && "
                    "tar --delete -f nolink.tar act/a && "
                    "head -c 4096 /dev/zero > src/act/a && ln src/act/a src/act/c && "
                    "ln src/act/a src/act/d && "
                    "tar -C src --format=gnu --sort=name -b 1 -cf links.tar ./act",
                    test_tmpdir());
    ASSERT_EQ(system(cmd), 0);
    free(cmd);
    tar = test_read_file("nolink.tar", &n);
    ASSERT(tar != NULL);
    refused(&f,
            &(struct actbuild_req){.dir = "/x/act", .tar = tar, .tar_len = n,
                                   .dockerfile = "act/Dockerfile"},
            ERR_PROTO, "/x/act: build context: hard link b: no file act/a in the archive");
    free(tar);

    /* under the cap as sent, over it once three links to a 4 KiB file are copies ("./act/a"
     * names the target) */
    tar = test_read_file("links.tar", &n);
    ASSERT(tar != NULL);
    ASSERT(n < 9000);
    refused(&f,
            &(struct actbuild_req){.dir = "/x/act", .tar = tar, .tar_len = n,
                                   .dockerfile = "act/Dockerfile", .cap = 9000},
            -EFBIG, "/x/act: build context over 9000 bytes");
    free(tar);
    dockertest_teardown(&f);
}

TEST(cancel_right_after_start)
{
    struct dockertest f;
    struct build r = {0};
    char *dir, want[512];

    dockertest_setup(&f, "actbuild-cancel");
    dir = make_action(&f);
    start(&f, &(struct actbuild_req){.dir = dir}, &r);
    actbuild_cancel(r.b);
    ASSERT_EQ(r.done, 0); /* never from inside cancel */
    actbuild_cancel(r.b);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_CANCELED);
    snprintf(want, sizeof want, "%s: image build canceled", dir);
    ASSERT_STR_EQ(r.msg, want);
    buf_free(&r.log);

    /* from a tar: the same */
    memset(&r, 0, sizeof r);
    start(&f, &(struct actbuild_req){.dir = "/x", .tar = "", .tar_len = 0}, &r);
    actbuild_cancel(r.b);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_CANCELED);
    ASSERT_STR_EQ(r.msg, "/x: image build canceled");
    free(dir);
    dockertest_teardown(&f);
}

TEST(cancel_while_a_step_runs)
{
    struct dockertest f;
    struct build r = {0};
    struct res t = {0};
    struct err e = {0};
    char *dir, *p, *text, want[512];

    dockertest_setup(&f, "actbuild-cancel-run");
    dir = xasprintf("%s/slow", test_tmpdir());
    ASSERT_EQ(mkdir(dir, 0755), 0);
    text = xasprintf("FROM %s\nRUN echo started; sleep 60\n", f.image);
    p = xasprintf("%s/Dockerfile", dir);
    write_file(p, text);
    free(p);
    free(text);
    r.cancel_on_run = true;
    start(&f, &(struct actbuild_req){.dir = dir, .tag = "runnerd-test/never:1"}, &r);
    finish(&f, &r);
    ASSERT_EQ(r.rc, ERR_CANCELED);
    snprintf(want, sizeof want, "%s: image build canceled", dir);
    ASSERT_STR_EQ(r.msg, want);
    ASSERT(r.running[0] != '\0');

    /* the engine stops the step and removes its container once the connection is gone */
    for (int i = 0; i < 100; i++) {
        p = xasprintf("docker ps -aq --no-trunc --filter id=%s", r.running);
        text = dockertest_sh(p);
        free(p);
        bool gone = text[0] == '\0';
        free(text);
        if (gone)
            break;
        ASSERT(i < 99);
        usleep(100 * 1000);
    }
    ASSERT_OK(docker_image_inspect(f.d, "runnerd-test/never:1", on_res, &t, &e));
    dockertest_run_until(&f, &t.done);
    ASSERT_EQ(t.rc, ERR_NOTFOUND);
    res_free(&t);
    buf_free(&r.log);
    free(dir);
    dockertest_teardown(&f);
}
