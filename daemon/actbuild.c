/* actbuild.c: a docker action's image from its Dockerfile (see actbuild.h). Stages: pack (a
 * uv_work_t: the directory walked into a tar, or the given tar cut down to the Dockerfile's
 * directory; the Dockerfile is looked for in the result) -> build (one Docker call) -> done.
 * Exactly one of the two is in flight at any time, so cancelling means stopping that one and
 * letting its completion report ERR_CANCELED. */
#include "actbuild.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fstree.h"
#include "runner/buf.h"
#include "runner/xalloc.h"
#include "tar.h"

struct actbuild {
    uv_work_t work;
    struct docker *d;
    char *dir;      /* for messages; the host directory unless from_tar */
    char *subdir;   /* the Dockerfile's directory, relative ("" for the root) */
    char *file;     /* the Dockerfile's name in subdir */
    char *path;     /* subdir/file: as the messages name it */
    char *tag;
    json_t *labels;
    size_t cap;
    bool from_tar;
    struct buf in;  /* from_tar: the caller's archive */
    struct tar ctx; /* the build context, made by the worker */
    int rc;         /* the worker's outcome */
    struct err err;
    struct httpc_req *req; /* the build call, while it is in flight */
    bool canceled;
    void (*progress)(void *arg, const char *line);
    actbuild_done_fn done;
    void *arg;
};

static void
actbuild_free(struct actbuild *b)
{
    free(b->dir);
    free(b->subdir);
    free(b->file);
    free(b->path);
    free(b->tag);
    json_decref(b->labels);
    buf_free(&b->in);
    tar_free(&b->ctx);
    free(b);
}

/* The one way out: done, then free. */
static void
finish(struct actbuild *b, int rc, const struct err *e, const char *id)
{
    struct err ce;

    if (b->canceled) {
        rc = err_set(&ce, ERR_CANCELED, "%s: image build canceled", b->dir);
        e = &ce;
        id = NULL;
    }
    b->done(b->arg, rc, rc < 0 ? e : NULL, rc < 0 ? NULL : id);
    actbuild_free(b);
}

/* "./docker//Dockerfile" -> "docker/Dockerfile"; NULL when absolute, empty or with "..". */
static char *
clean_dockerfile(const char *p)
{
    struct buf out = BUF_INIT;

    if (p[0] == '/')
        return NULL;
    while (*p) {
        size_t n = strcspn(p, "/");

        if (n == 2 && p[0] == '.' && p[1] == '.') {
            buf_free(&out);
            return NULL;
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (out.len > 0)
                buf_putc(&out, '/');
            buf_append(&out, p, n);
        }
        p += n;
        p += *p == '/';
    }
    if (out.len == 0)
        return NULL;
    return buf_steal(&out);
}

/* ---- packing (on the pool: touches only b's own copies) ---------------------------------- */

/* Whether the finished context holds the Dockerfile (a file, or a link the engine follows). */
static int
has_dockerfile(struct actbuild *b, struct err *e)
{
    struct tar_reader r;
    struct tar_entry ent;
    int rc;

    tar_reader_init(&r, b->ctx.out.data, b->ctx.out.len);
    while ((rc = tar_next(&r, &ent, e)) > 0)
        if (strcmp(ent.path, b->file) == 0 &&
            (ent.type == '0' || ent.type == '1' || ent.type == '2'))
            break;
    tar_reader_free(&r);
    if (rc < 0)
        return err_prefix(e, "%s: ", b->dir);
    if (rc == 0)
        return err_set(e, ERR_NOTFOUND, "%s: no Dockerfile at %s", b->dir, b->path);
    return 0;
}

/* "DIR: build context over 256 MiB" (in bytes for caps below a MiB). */
static int
over_cap(const char *dir, size_t cap, struct err *e)
{
    if (cap < (1u << 20))
        return err_set(e, -EFBIG, "%s: build context over %zu bytes", dir, cap);
    return err_set(e, -EFBIG, "%s: build context over %zu MiB", dir, cap >> 20);
}

/* The host directory: a missing Dockerfile (or directory) is named as such, not as a walk
 * failure. */
static int
pack_dir(struct actbuild *b, struct err *e)
{
    char *df = xasprintf("%s/%s", b->dir, b->path);
    char *root = b->subdir[0] ? xasprintf("%s/%s", b->dir, b->subdir) : xstrdup(b->dir);
    struct stat st;
    int rc = 0;

    if (lstat(df, &st) < 0)
        rc = errno == ENOENT || errno == ENOTDIR
                 ? err_set(e, ERR_NOTFOUND, "%s: no Dockerfile at %s", b->dir, b->path)
                 : err_set(e, -errno, "%s: %s: %s", b->dir, b->path, strerror(errno));
    if (rc == 0) {
        rc = fstree_tar(root, ".", &b->ctx, b->cap, e);
        if (rc == -EFBIG)
            rc = over_cap(b->dir, b->cap, e);
        else if (rc < 0)
            err_prefix(e, "%s: build context: ", b->dir);
    }
    free(df);
    free(root);
    return rc;
}

/* A hard link's target: an earlier regular file of the archive. */
static const struct tar_entry *
find_file(const struct buf *in, const char *name, struct tar_entry *ent, struct err *e)
{
    struct tar_reader r;
    struct tar_entry cur;
    bool found = false;

    tar_reader_init(&r, in->data, in->len);
    while (!found && tar_next(&r, &cur, e) > 0) {
        if (cur.type == '0' && strcmp(cur.path, name) == 0) {
            *ent = cur; /* data points into the archive, which outlives r */
            ent->path = ent->link = "";
            found = true;
        }
    }
    tar_reader_free(&r);
    return found ? ent : NULL;
}

/* One entry of subdir, renamed relative to it. Hard links become copies of their target,
 * which may lie outside subdir; devices and fifos have no place in a build context. */
static int
copy_entry(struct actbuild *b, const char *rel, const struct tar_entry *ent, struct err *e)
{
    struct tar_entry target;
    char *tname;

    switch (ent->type) {
    case '5':
        return tar_add_dir(&b->ctx, rel, ent->mode, e);
    case '0':
        return tar_add_file(&b->ctx, rel, ent->mode, ent->data, ent->len, e);
    case '2':
        return tar_add_symlink(&b->ctx, rel, ent->link, e);
    case '1':
        tname = xstrdup(ent->link);
        while (strncmp(tname, "./", 2) == 0)
            memmove(tname, tname + 2, strlen(tname + 2) + 1);
        if (find_file(&b->in, tname, &target, e) == NULL) {
            free(tname);
            return err_set(e, ERR_PROTO, "%s: hard link %s: no file %s in the archive",
                           b->dir, rel, ent->link);
        }
        free(tname);
        return tar_add_file(&b->ctx, rel, ent->mode, target.data, target.len, e);
    default:
        return 0;
    }
}

/* The caller's archive cut down to subdir: the engine takes the context's root as the
 * Dockerfile's directory. */
static int
pack_tar(struct actbuild *b, struct err *e)
{
    struct tar_reader r;
    struct tar_entry ent;
    size_t pre = strlen(b->subdir);
    int rc;

    if (pre == 0) {
        /* already rooted right: the engine reads the archive as it is */
        b->ctx.out = b->in;
        b->ctx.finished = 1;
        memset(&b->in, 0, sizeof b->in);
        return 0;
    }
    tar_reader_init(&r, b->in.data, b->in.len);
    while ((rc = tar_next(&r, &ent, e)) > 0) {
        if (strncmp(ent.path, b->subdir, pre) != 0 || ent.path[pre] != '/')
            continue;
        rc = copy_entry(b, ent.path + pre + 1, &ent, e);
        if (rc == 0 && b->ctx.out.len > b->cap)
            rc = over_cap(b->dir, b->cap, e);
        if (rc < 0)
            break;
    }
    tar_reader_free(&r);
    if (rc < 0 && rc != -EFBIG)
        err_prefix(e, "%s: build context: ", b->dir);
    return rc;
}

static void
pack_work(uv_work_t *w)
{
    struct actbuild *b = w->data;

    b->rc = b->from_tar ? pack_tar(b, &b->err) : pack_dir(b, &b->err);
    if (b->rc == 0) {
        tar_finish(&b->ctx);
        b->rc = has_dockerfile(b, &b->err);
    }
}

/* ---- building (on the loop) -------------------------------------------------------------- */

static void
on_output(const char *line, void *arg)
{
    struct actbuild *b = arg;

    if (b->progress != NULL && !b->canceled)
        b->progress(b->arg, line);
}

static void
on_built(const struct docker_res *res, void *arg)
{
    struct actbuild *b = arg;
    struct err e = res->err;

    b->req = NULL;
    if (res->rc < 0)
        err_prefix(&e, "%s: ", b->dir);
    finish(b, res->rc, &e, res->id);
}

static void
pack_after(uv_work_t *w, int status)
{
    struct actbuild *b = w->data;
    struct err e = {0};
    int rc;

    if (status == UV_ECANCELED)
        b->canceled = true;
    if (b->canceled || b->rc < 0) {
        finish(b, b->rc < 0 ? b->rc : ERR_CANCELED, &b->err, NULL);
        return;
    }
    rc = docker_image_build_req(b->d, b->ctx.out.data, b->ctx.out.len, b->tag, b->file,
                                b->labels, b->progress ? on_output : NULL, on_built, b, &b->req,
                                &e);
    tar_free(&b->ctx); /* the request has its own copy */
    if (rc < 0) {
        err_prefix(&e, "%s: ", b->dir);
        finish(b, rc, &e, NULL);
    }
}

int
actbuild_start(uv_loop_t *loop, struct docker *d, const struct actbuild_req *req,
               void (*progress)(void *arg, const char *line), actbuild_done_fn done, void *arg,
               struct actbuild **out, struct err *e)
{
    const char *df = req->dockerfile ? req->dockerfile : "Dockerfile";
    size_t cap = req->cap ? req->cap : ACTBUILD_CAP_DEFAULT;
    char *path = clean_dockerfile(df), *slash;
    struct actbuild *b;
    int rc;

    assert(req->dir != NULL && done != NULL);
    if (path == NULL)
        return err_set(e, ERR_INVALID,
                       "%s: Dockerfile path \"%s\" must be relative and stay inside the "
                       "action's directory (no \"..\")",
                       req->dir, df);
    if (req->tar != NULL && req->tar_len > cap) {
        free(path);
        return over_cap(req->dir, cap, e);
    }
    b = xcalloc(1, sizeof *b);
    b->d = d;
    b->dir = xstrdup(req->dir);
    b->path = path;
    slash = strrchr(path, '/');
    b->subdir = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup("");
    b->file = xstrdup(slash ? slash + 1 : path);
    b->tag = req->tag ? xstrdup(req->tag) : NULL;
    b->labels = req->labels ? json_deep_copy(req->labels) : NULL;
    b->cap = cap;
    b->from_tar = req->tar != NULL;
    if (b->from_tar)
        buf_append(&b->in, req->tar, req->tar_len);
    tar_init(&b->ctx);
    b->progress = progress;
    b->done = done;
    b->arg = arg;
    b->work.data = b;
    rc = uv_queue_work(loop, &b->work, pack_work, pack_after);
    if (rc < 0) {
        err_set(e, rc, "%s: cannot start packing the build context: %s", req->dir,
                uv_strerror(rc));
        actbuild_free(b);
        return rc;
    }
    if (out != NULL)
        *out = b;
    return 0;
}

void
actbuild_cancel(struct actbuild *b)
{
    if (b == NULL || b->canceled)
        return;
    b->canceled = true;
    if (b->req != NULL)
        httpc_cancel(b->req);
    else
        uv_cancel((uv_req_t *)&b->work); /* fails harmlessly once the work has begun */
}
