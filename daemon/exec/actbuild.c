/* actbuild.c: a docker action's image from its Dockerfile (see actbuild.h). Stages: pack (a
 * uv_work_t: the directory walked into a tar, or the given tar cut down to the Dockerfile's
 * directory; the Dockerfile is looked for in the result) -> build (one Docker call) -> done.
 * Exactly one of the two is in flight at any time, so cancelling means stopping that one and
 * letting its completion report ERR_CANCELED. */
#include "actbuild.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fstree.h"
#include "runner/buf.h"
#include "runner/xalloc.h"
#include "tar.h"

struct actbuild {
    uv_work_t work;
    struct docker *d;
    char *dir;        /* for messages; the host directory unless from_tar */
    char *root;       /* not from_tar: nothing outside it is read (req->root, else dir) */
    const char *rel;  /* dir relative to root, in dir ("" when dir is root) */
    char *path;       /* the Dockerfile, cleaned ("docker/Dockerfile"): as the messages name it */
    const char *file; /* its name, in path; what comes before it is the context's directory */
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
    free(b->root);
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

/* The length of the Dockerfile's directory at the start of b->path (0: the root). */
static size_t
subdir_len(const struct actbuild *b)
{
    return b->file == b->path ? 0 : (size_t)(b->file - b->path) - 1;
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

/* "a/b" of two relative paths, either of which may be "" (n: b's length). New string. */
static char *
rel_join(const char *a, const char *b, size_t n)
{
    if (*a == '\0')
        return xstrndup(b, n);
    if (n == 0)
        return xstrdup(a);
    return xasprintf("%s/%.*s", a, (int)n, b);
}

/* The host directory: a missing Dockerfile (or directory) is named as such, not as a walk
 * failure. The Dockerfile and the context are found beneath root (fstree_open_beneath()): a
 * symlink in the action ("docker -> /etc", "Dockerfile -> /home/...") never makes the host pack
 * or read its own files; links inside the context go into it as links. */
static int
pack_dir(struct actbuild *b, struct err *e)
{
    size_t sub = subdir_len(b);
    char *df = rel_join(b->rel, b->path, strlen(b->path));
    char *ctx = rel_join(b->rel, b->path, sub);
    int rc = 0, fd;

    fd = fstree_open_beneath(b->root, df, O_PATH, e);
    if (fd == -ENOENT || fd == -ENOTDIR)
        rc = err_set(e, ERR_NOTFOUND, "%s: no Dockerfile at %s", b->dir, b->path);
    else if (fd < 0)
        rc = err_prefix(e, "%s: ", b->dir);
    else
        close(fd);
    if (rc == 0) {
        rc = fstree_tar_beneath(b->root, ctx, ".", &b->ctx, b->cap, e);
        if (rc == -EFBIG)
            rc = over_cap(b->dir, b->cap, e);
        else if (rc < 0)
            err_prefix(e, "%s: build context: ", b->dir);
    }
    free(df);
    free(ctx);
    return rc;
}

/* The archive's regular files by name, made at the first hard link: one pass over the archive
 * however many links there are (a node_modules can hold thousands). */
struct file_ref {
    char *path;
    const char *data; /* in the archive */
    size_t len;
};

struct file_index {
    struct file_ref *v;
    size_t n;
    bool built;
};

/* By name; the first of a name in the archive first. */
static int
file_ref_cmp(const void *a, const void *b)
{
    const struct file_ref *x = a, *y = b;
    int c = strcmp(x->path, y->path);

    if (c != 0)
        return c;
    return x->data < y->data ? -1 : x->data > y->data;
}

static void
file_index_build(struct file_index *ix, const struct buf *in)
{
    struct tar_reader r;
    struct tar_entry ent;
    struct err ignored;
    size_t cap = 0;

    tar_reader_init(&r, in->data, in->len);
    while (tar_next(&r, &ent, &ignored) > 0) {
        if (ent.type != '0')
            continue;
        if (ix->n == cap) {
            cap = cap ? 2 * cap : 64;
            ix->v = xreallocarray(ix->v, cap, sizeof *ix->v);
        }
        ix->v[ix->n++] = (struct file_ref){.path = xstrdup(ent.path), .data = ent.data,
                                           .len = ent.len};
    }
    tar_reader_free(&r);
    if (ix->n > 1)
        qsort(ix->v, ix->n, sizeof *ix->v, file_ref_cmp);
    ix->built = true;
}

static void
file_index_free(struct file_index *ix)
{
    for (size_t i = 0; i < ix->n; i++)
        free(ix->v[i].path);
    free(ix->v);
}

/* A hard link's target: a regular file of the archive, named as the link names it (entry names
 * come without a leading "./", link targets as stored); NULL when there is none. */
static const struct file_ref *
find_file(struct file_index *ix, const struct buf *in, const char *name)
{
    size_t lo = 0, hi;

    while (strncmp(name, "./", 2) == 0)
        name += 2;
    if (!ix->built)
        file_index_build(ix, in);
    for (hi = ix->n; lo < hi;) {
        size_t mid = lo + (hi - lo) / 2;

        if (strcmp(ix->v[mid].path, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ix->n && strcmp(ix->v[lo].path, name) == 0 ? &ix->v[lo] : NULL;
}

/* One entry of the Dockerfile's directory, renamed relative to it. Hard links become copies of
 * their target, which may lie outside it; devices and fifos have no place in a build context. */
static int
copy_entry(struct actbuild *b, struct file_index *ix, const char *rel,
           const struct tar_entry *ent, struct err *e)
{
    const struct file_ref *target;

    switch (ent->type) {
    case '5':
        return tar_add_dir(&b->ctx, rel, ent->mode, e);
    case '0':
        return tar_add_file(&b->ctx, rel, ent->mode, ent->data, ent->len, e);
    case '2':
        return tar_add_symlink(&b->ctx, rel, ent->link, e);
    case '1':
        target = find_file(ix, &b->in, ent->link);
        if (target == NULL)
            return err_set(e, ERR_PROTO, "hard link %s: no file %s in the archive", rel,
                           ent->link);
        return tar_add_file(&b->ctx, rel, ent->mode, target->data, target->len, e);
    default:
        return 0;
    }
}

/* The caller's archive cut down to the Dockerfile's directory: the engine takes the context's
 * root as that directory. */
static int
pack_tar(struct actbuild *b, struct err *e)
{
    struct tar_reader r;
    struct tar_entry ent;
    struct file_index ix = {0};
    size_t pre = subdir_len(b);
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
        if (strncmp(ent.path, b->path, pre) != 0 || ent.path[pre] != '/')
            continue;
        rc = copy_entry(b, &ix, ent.path + pre + 1, &ent, e);
        if (rc == 0 && b->ctx.out.len > b->cap)
            rc = over_cap(b->dir, b->cap, e);
        if (rc < 0)
            break;
    }
    tar_reader_free(&r);
    file_index_free(&ix);
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
    size_t rn = req->root ? strlen(req->root) : 0;
    while (rn > 1 && req->root[rn - 1] == '/')
        rn--;
    if (req->tar == NULL && req->root != NULL &&
        (strncmp(req->dir, req->root, rn) != 0 || (req->dir[rn] != '\0' && req->dir[rn] != '/'))) {
        free(path);
        return err_set(e, ERR_INVALID, "%s: not below the action's root %s", req->dir,
                       req->root);
    }
    b = xcalloc(1, sizeof *b);
    b->d = d;
    b->dir = xstrdup(req->dir);
    b->root = req->root && req->tar == NULL ? xstrndup(req->root, rn) : xstrdup(req->dir);
    b->rel = b->dir + (req->root && req->tar == NULL ? rn : strlen(b->dir));
    while (*b->rel == '/')
        b->rel++;
    b->path = path;
    slash = strrchr(path, '/');
    b->file = slash ? slash + 1 : path;
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
