/* executor.c: the executor interface and the host executor (runner-agent as a child process
 * in a per-job directory). */
#include "executor.h"

#include "ctx.h"
#include "fstree.h"
#include "hostexec.h"
#include "wswalk.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

int
executor_setup(struct executor *x, const struct executor_job *job, struct err *e)
{
    return x->ops->setup(x, job, e);
}

void
executor_close(struct executor *x)
{
    x->ops->close(x);
}

/* ---------------------------------------------------------------- executor_put_dir */

#define PUT_MAX (1024ull << 20) /* one upload into a container is held in memory */

struct put_dir {
    uv_work_t work;
    struct executor *x;
    char *src, *dest;
    bool container;
    struct tar tar;
    int rc;
    struct err err;
    executor_done_fn done;
    void *arg;
};

static void
put_dir_work(uv_work_t *w)
{
    struct put_dir *p = w->data;

    if (p->container) {
        /* Entries named from the container's root, unpacked at "/": the engine refuses a
         * relative symlink that climbs out of the directory an archive is unpacked into, and
         * a link is data here (an action's or a repository's, whatever it points at). */
        const char *d = p->dest;
        size_t n;
        while (*d == '/')
            d++;
        for (n = strlen(d); n > 0 && d[n - 1] == '/'; n--)
            ;
        char *prefix = p->dest[0] == '/' && n > 0 ? xstrndup(d, n) : xstrdup(".");
        tar_init(&p->tar);
        p->rc = fstree_tar(p->src, prefix, &p->tar, PUT_MAX, &p->err);
        free(prefix);
        tar_finish(&p->tar);
    } else {
        p->rc = fstree_copy(p->src, p->dest, &p->err);
    }
}

static void
put_dir_free(struct put_dir *p)
{
    tar_free(&p->tar);
    free(p->src);
    free(p->dest);
    free(p);
}

static void
put_dir_uploaded(void *arg, int rc, const struct err *e)
{
    struct put_dir *p = arg;

    p->done(p->arg, rc, e);
    put_dir_free(p);
}

static void
put_dir_after(uv_work_t *w, int status)
{
    struct put_dir *p = w->data;

    if (status < 0 && p->rc == 0)
        p->rc = err_set(&p->err, ERR_CANCELED, "the copy was cancelled");
    if (p->rc == 0 && p->container) {
        struct err e = {0};
        int rc = p->x->ops->put_archive(p->x, p->dest[0] == '/' ? "/" : p->dest,
                                        p->tar.out.data, p->tar.out.len,
                                        put_dir_uploaded, p, &e);
        tar_free(&p->tar);
        if (rc == 0)
            return;
        p->rc = rc;
        p->err = e;
    }
    p->done(p->arg, p->rc, &p->err);
    put_dir_free(p);
}

int
executor_put_dir(struct executor *x, const char *src, const char *dest, executor_done_fn done,
                 void *arg, struct err *e)
{
    struct put_dir *p;
    int rc;

    if (x->container && x->ops->put_archive == NULL)
        return err_set(e, -ENOTSUP, "this executor cannot receive files");
    p = xcalloc(1, sizeof *p);
    p->x = x;
    p->src = xstrdup(src);
    p->dest = xstrdup(dest);
    p->container = x->container;
    p->done = done;
    p->arg = arg;
    p->work.data = p;
    tar_init(&p->tar);
    if ((rc = uv_queue_work(x->loop, &p->work, put_dir_work, put_dir_after)) < 0) {
        put_dir_free(p);
        return err_set(e, rc, "cannot start the copy: %s", uv_strerror(rc));
    }
    return 0;
}

char *
executor_find_agent(const char *argv0)
{
    const char *env = getenv("RUNNERD_AGENT");
    char self[PATH_MAX];
    ssize_t n;

    (void)argv0;
    if (env && *env)
        return xstrdup(env);
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            const char *rel[] = {"agent/runner-agent", "../agent/runner-agent", "runner-agent",
                                 "../libexec/runnerd/runner-agent"};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                char *p = xasprintf("%s/%s", self, rel[i]);
                if (access(p, X_OK) == 0)
                    return p;
                free(p);
            }
        }
    }
    if (access("/usr/libexec/runnerd/runner-agent", X_OK) == 0)
        return xstrdup("/usr/libexec/runnerd/runner-agent");
    return NULL;
}

/* ---------------------------------------------------------------- host executor */

struct host_exec {
    struct executor x;            /* first: the executor is the host_exec */
    char *agent_path;
    char *dir;                    /* the per-job directory, removed at close */
    char *copy_from;              /* source to copy into the workspace once the agent is up */
    char *tmp_root;               /* where the per-job directory is made */
    struct hostexec *hx;
    bool ready, closing, removed_dir, copying;
    uv_work_t rm_work, copy_work;
    int copy_rc;
    struct err copy_err;
};

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
rm_work_cb(uv_work_t *w)
{
    struct host_exec *h = w->data;

    nftw(h->dir, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void
host_free(struct host_exec *h)
{
    const struct executor_cbs *cbs = h->x.cbs;
    void *arg = h->x.arg;

    if (h->x.conn)
        agentconn_free(h->x.conn);
    free(h->agent_path);
    free(h->dir);
    free(h->copy_from);
    free(h->tmp_root);
    free(h->x.workspace);
    free(h->x.file_dir);
    free(h->x.base_path);
    free(h->x.agent_cmd);
    json_decref(h->x.base_env);
    free(h);
    if (cbs->on_closed)
        cbs->on_closed(arg);
}

static void
rm_after_cb(uv_work_t *w, int status)
{
    (void)status;
    host_free(w->data);
}

static void
host_closed(void *arg)
{
    struct host_exec *h = arg;

    h->hx = NULL;
    if (h->dir) {
        h->rm_work.data = h;
        if (uv_queue_work(h->x.loop, &h->rm_work, rm_work_cb, rm_after_cb) == 0)
            return;
    }
    host_free(h);
}

static void
host_report_ready(struct host_exec *h, int rc, const struct err *e)
{
    if (h->ready || h->closing)
        return;
    h->ready = rc == 0;
    h->x.cbs->on_ready(h->x.arg, rc, e);
}

static void host_close(struct executor *x);

static void
copy_work_cb(uv_work_t *w)
{
    struct host_exec *h = w->data;

    h->copy_rc = wswalk_copy(h->copy_from, h->x.workspace, &h->copy_err);
}

static void
copy_after_cb(uv_work_t *w, int status)
{
    struct host_exec *h = w->data;

    (void)status;
    h->copying = false;
    if (h->closing) {
        h->closing = false;
        host_close(&h->x); /* the close waited for the copy */
        return;
    }
    if (h->copy_rc < 0)
        host_report_ready(h, h->copy_rc, &h->copy_err);
    else
        host_report_ready(h, 0, NULL);
}

static void
host_on_event(void *arg, const struct agentconn_event *ev)
{
    struct host_exec *h = arg;
    struct err e = {0};

    if (h->closing && ev->kind != AGENTCONN_BYE)
        return;
    if (!h->ready) {
        switch (ev->kind) {
        case AGENTCONN_HELLO:
            if (h->copy_from) {
                /* The workspace copy runs on a worker; ready when it is done. */
                h->copy_work.data = h;
                h->copying = true;
                if (uv_queue_work(h->x.loop, &h->copy_work, copy_work_cb, copy_after_cb) != 0) {
                    h->copying = false;
                    err_set(&e, -EIO, "cannot queue the workspace copy");
                    host_report_ready(h, e.code, &e);
                }
                return;
            }
            host_report_ready(h, 0, NULL);
            return;
        case AGENTCONN_ERROR:
        case AGENTCONN_PROTO_ERROR:
        case AGENTCONN_BYE:
            err_set(&e, ERR_PROTO, "the agent failed during setup%s%s",
                    ev->msg && ev->msg->text ? ": " : "", ev->msg && ev->msg->text ? ev->msg->text : "");
            host_report_ready(h, e.code, &e);
            return;
        default:
            return;
        }
    }
    h->x.cbs->on_event(h->x.arg, ev);
}

static void
host_on_exit(struct hostexec *hx, int64_t status, int sig, void *arg)
{
    struct host_exec *h = arg;
    struct err e = {0};

    (void)hx;
    if (!h->ready) {
        err_set(&e, -EIO, "the agent exited during setup (status %lld, signal %d)",
                (long long)status, sig);
        host_report_ready(h, e.code, &e);
    }
}

static int
host_setup(struct executor *x, const struct executor_job *job, struct err *e)
{
    struct host_exec *h = (struct host_exec *)x;
    const char *root = h->tmp_root;
    char *journal = NULL;
    int rc;

    h->dir = xasprintf("%s/runnerd-%s-XXXXXX", root, job->name);
    for (char *p = h->dir + strlen(root) + 1; *p; p++)
        if (*p == '/' || *p == ' ')
            *p = '_';
    if (mkdtemp(h->dir) == NULL) {
        rc = err_set(e, -errno, "creating a job directory under %s: %s", root, strerror(errno));
        free(h->dir);
        h->dir = NULL;
        return rc;
    }
    x->file_dir = xasprintf("%s/workflow", h->dir);
    journal = xasprintf("%s/journal", h->dir);
    if (mkdir(x->file_dir, 0755) != 0)
        return err_set(e, -errno, "%s: %s", x->file_dir, strerror(errno));
    if (job->bind && job->source) {
        x->workspace = realpath(job->source, NULL);
        if (x->workspace == NULL) {
            rc = err_set(e, -errno, "%s: %s", job->source, strerror(errno));
            free(journal);
            return rc;
        }
    } else {
        x->workspace = xasprintf("%s/workspace", h->dir);
        if (mkdir(x->workspace, 0755) != 0) {
            free(journal);
            return err_set(e, -errno, "%s: %s", x->workspace, strerror(errno));
        }
        if (job->source)
            h->copy_from = realpath(job->source, NULL);
    }
    x->base_path = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    x->agent_cmd = xstrdup(h->agent_path);
    /* Only a few of our own variables reach steps: a runner's environment may hold secrets. */
    static const char *const keep[] = {"HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TERM",
                                       "SHELL", "TMPDIR", "PATH"};
    x->base_env = json_object();
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (getenv(keep[i]))
            json_object_set_new(x->base_env, keep[i], json_string(getenv(keep[i])));
    json_object_set_new(x->base_env, "RUNNER_OS", json_string("Linux"));
    struct utsname un;
    if (uname(&un) == 0)
        json_object_set_new(x->base_env, "RUNNER_ARCH", json_string(ctx_arch_name(un.machine)));
    json_object_set_new(x->base_env, "RUNNER_TEMP", json_string(h->dir));
    json_object_set_new(x->base_env, "RUNNER_TOOL_CACHE", json_string(h->dir));
    x->bash = access("/bin/bash", X_OK) == 0 || access("/usr/bin/bash", X_OK) == 0;
    x->node = true; /* found on PATH or not, as the host's own steps would */

    const char *args[] = {"--journal", journal, NULL};
    struct hostexec_opts o = {
        .agent_path = h->agent_path,
        .args = args,
        .cwd = x->workspace,
        .on_exit = host_on_exit,
        .arg = h,
    };
    rc = hostexec_start(x->loop, &o, &h->hx, e);
    free(journal);
    return rc;
}

/* agentconn callbacks take one arg; the host executor is it, so writes need a shim. */
static int
host_write(void *arg, const void *data, size_t len)
{
    struct host_exec *h = arg;

    return h->hx ? hostexec_write(h->hx, data, len) : -EPIPE;
}

static int
host_setup_all(struct executor *x, const struct executor_job *job, struct err *e)
{
    struct host_exec *h = (struct host_exec *)x;
    int rc = host_setup(x, job, e);

    if (rc < 0)
        return rc;
    struct agentconn_cbs cb = {.write = host_write, .on_event = host_on_event};
    x->conn = agentconn_new(&cb, h);
    hostexec_attach(h->hx, x->conn);
    return agentconn_hello(x->conn, e);
}

static void
host_close(struct executor *x)
{
    struct host_exec *h = (struct host_exec *)x;

    if (h->closing)
        return;
    h->closing = true;
    if (h->copying)
        return; /* copy_after_cb closes */
    if (h->hx) {
        hostexec_attach(h->hx, NULL);
        hostexec_close(h->hx, host_closed, h);
    } else {
        host_closed(h);
    }
}

static const struct executor_ops host_ops = {
    .name = "host",
    .setup = host_setup_all,
    .close = host_close,
};

int
executor_host_new(uv_loop_t *loop, const char *agent_path, const char *tmp_root,
                  const struct executor_cbs *cbs, void *arg, struct executor **out,
                  struct err *e)
{
    struct host_exec *h;

    if (agent_path == NULL || access(agent_path, X_OK) != 0)
        return err_set(e, -ENOENT, "runner-agent not found%s%s (set RUNNERD_AGENT)",
                       agent_path ? " at " : "", agent_path ? agent_path : "");
    h = xcalloc(1, sizeof *h);
    h->x.ops = &host_ops;
    h->x.loop = loop;
    h->x.cbs = cbs;
    h->x.arg = arg;
    h->agent_path = xstrdup(agent_path);
    if (tmp_root == NULL || *tmp_root == '\0')
        tmp_root = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    h->tmp_root = xstrdup(tmp_root);
    *out = &h->x;
    return 0;
}

json_t *
executor_describe(struct executor *x)
{
    return x && x->ops->describe ? x->ops->describe(x) : NULL;
}
