/* dockerexec.c: the docker executor. The job runs in a container of the label's (or the job's)
 * image with runner-agent as its entrypoint, copied in through the archive API before start;
 * the host talks to the agent over the container's attach stream (docker-engine.md §6b). Each
 * job gets its own labelled network; the container and network are removed at close, also
 * after errors. */
#include "dockerexec.h"

#include "ctx.h"
#include "dind.h"
#include "docker.h"
#include "dockeropts.h"
#include "fstree.h"
#include "profile.h"
#include "services.h"
#include "httpc.h"
#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "tar.h"
#include "wswalk.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define AGENT_DIR "/.runner"
#define WORKSPACE "/workspace"
#define FILE_DIR "/var/run/act/workflow"
#define PROBE_STEP 0xfffff002u
#define MAX_UPLOAD (512ull << 20) /* workspace copies past this should use --bind */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* From the container's start until the agent's HELLO_REPLY and the setup probe's exit: an
 * agent that never starts (an image or options that keep it from running) fails the job. */
#define HELLO_TIMEOUT_MS 30000

struct docker_exec {
    struct executor x;        /* first */
    struct docker *d;
    char *agent_path, *runner_name;
    char *name, *image, *image_id, *source, *net_name;
    char *net_id, *ctr_id;
    /* Per-job volumes: [0] the workspace (unless bound), [1] /var/run/act (scripts and file
     * commands), both shared with step containers. */
    char *vols[2];
    bool vol_created[2];
    int vol_next;
    char *options;            /* container.options */
    json_t *volumes;          /* container.volumes (evaluated), or NULL */
    bool job_vols;            /* named volumes of the workflow exist: teardown sweeps them */
    json_t *services;         /* evaluated services map, or NULL */
    struct services *svc;     /* running services */
    bool reattaching;         /* a new attach stream replaces a lost one */
    bool adopted;             /* a running job container found again (executor_docker_adopt) */
    uint64_t resume_from;
    bool svc_stopping;
    json_t *env;
    json_t *profile;          /* the label's settings for this job, or NULL */
    struct dind *dind;        /* the docker: dind sidecar */
    bool dind_waiting;        /* ... still starting (a call in flight) */
    bool used_dind;           /* teardown sweeps the job's objects (the sidecar first) */
    bool bind, ready, closing, teardown;
    bool starting;            /* the start call is in flight: its answer says more than the
                                 stream's end (a refused start ends the stream first) */
    bool att_ended;           /* ... and the stream ended meanwhile */
    struct err att_err;
    struct docker_attach *att;
    uv_timer_t *hello_timer;  /* the agent's deadline to answer (HELLO_TIMEOUT_MS), or NULL */
    /* The upload, built off the loop. */
    uv_work_t work;
    struct tar tar;
    int tar_rc;
    struct err tar_err;
    int pending;              /* docker calls in flight during close */
};

static void
on_hello_timer_closed(uv_handle_t *h)
{
    free(h);
}

/* The hello deadline is over (answered, failed or closing). The handle lives on its own until
 * libuv has closed it, so that the executor can be freed meanwhile. */
static void
hello_timer_stop(struct docker_exec *dx)
{
    if (dx->hello_timer == NULL)
        return;
    uv_close((uv_handle_t *)dx->hello_timer, on_hello_timer_closed);
    dx->hello_timer = NULL;
}

static void
report_ready(struct docker_exec *dx, int rc, const struct err *e)
{
    hello_timer_stop(dx);
    if (dx->ready || dx->closing)
        return;
    dx->ready = rc == 0;
    dx->x.cbs->on_ready(dx->x.arg, rc, e);
}

static void
fail(struct docker_exec *dx, const struct err *e)
{
    report_ready(dx, e->code ? e->code : -EIO, e);
}

static void
say(struct docker_exec *dx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(struct docker_exec *dx, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (dx->x.cbs->on_log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dx->x.cbs->on_log(dx->x.arg, line);
}

static void dx_close(struct executor *x);

/* Every docker callback starts here: one call fewer in flight. True when the executor is
 * closing (the callback then only records what it created) and the close may go on. */
static bool
landed(struct docker_exec *dx)
{
    dx->pending--;
    return dx->closing;
}

/* Counts a started docker call (rc from the call). */
static int
flying(struct docker_exec *dx, int rc)
{
    if (rc == 0)
        dx->pending++;
    return rc;
}

/* The common start of a docker callback: false when it must stop here (closing, which then
 * goes on; or the call failed, which fails the setup). */
static bool
proceed(struct docker_exec *dx, const struct docker_res *res)
{
    if (landed(dx)) {
        dx_close(&dx->x);
        return false;
    }
    if (res->rc < 0) {
        fail(dx, &res->err);
        return false;
    }
    return true;
}

static char *owner_override; /* runnerd: a durable owner instead of host:pid */

void
dockerexec_set_owner(const char *owner)
{
    free(owner_override);
    owner_override = owner ? xstrdup(owner) : NULL;
}

/* Returns a new labels object for what this job creates. */
static json_t *
job_labels(const struct docker_exec *dx)
{
    json_t *l = docker_labels_new(dx->runner_name, dx->name);
    char host[256] = "";

    if (owner_override) {
        json_object_set_new(l, DOCKEREXEC_LABEL_OWNER, json_string(owner_override));
        return l;
    }
    gethostname(host, sizeof host - 1);
    char *owner = xasprintf("%s:%ld", host, (long)getpid());
    json_object_set_new(l, DOCKEREXEC_LABEL_OWNER, json_string(owner));
    free(owner);
    return l;
}

/* ---------------------------------------------------------------- agent stream */

static int
att_write(void *arg, const void *p, size_t n)
{
    struct docker_exec *dx = arg;

    return dx->att ? docker_attach_write(dx->att, p, n) : -EPIPE;
}

static void
on_agent_event(void *arg, const struct agentconn_event *ev)
{
    struct docker_exec *dx = arg;
    struct err e = {0};

    if (dx->closing)
        return;
    if (!dx->ready) {
        switch (ev->kind) {
        case AGENTCONN_HELLO: {
            /* Is there a bash? (decides the default shell, as GitHub falls back to sh) And a
             * node, for node actions? Exit status bit 0: no bash, bit 1: no node. */
            static const char probe[] =
                "s=0; command -v bash >/dev/null 2>&1 || s=1; "
                "command -v node >/dev/null 2>&1 || s=$((s + 2)); exit $s";
            const char *argv[] = {"/bin/sh", "-c", probe};
            char *path = xasprintf("PATH=%s", dx->x.base_path ? dx->x.base_path : DEFAULT_PATH);
            const char *env[] = {path}; /* the PATH the steps get */
            struct agentconn_run r = {.step = PROBE_STEP, .argv = argv, .argc = 3, .env = env,
                                      .envc = 1};
            int rc = agentconn_run(dx->x.conn, &r, &e);
            free(path);
            if (rc < 0)
                fail(dx, &e);
            return;
        }
        case AGENTCONN_EXITED:
            if (ev->msg->id == PROBE_STEP) {
                dx->x.bash = (ev->msg->exit_code & 1) == 0;
                dx->x.node = (ev->msg->exit_code & 2) == 0 && ev->msg->exit_code < 4;
                report_ready(dx, 0, NULL);
            }
            return;
        case AGENTCONN_ERROR:
            if (ev->msg->id == PROBE_STEP) { /* no /bin/sh: no bash either */
                dx->x.bash = dx->x.node = false;
                report_ready(dx, 0, NULL);
                return;
            }
            err_set(&e, ERR_PROTO, "the agent refused setup: %s", ev->msg->text ? ev->msg->text : "");
            fail(dx, &e);
            return;
        case AGENTCONN_PROTO_ERROR:
        case AGENTCONN_BYE:
            err_set(&e, ERR_PROTO, "the agent failed during setup");
            fail(dx, &e);
            return;
        default:
            return;
        }
    }
    dx->x.cbs->on_event(dx->x.arg, ev);
}

static void
on_att_ready(struct docker_attach *a, void *arg);
static void
on_att_output(struct docker_attach *a, int stream, const char *p, size_t n, void *arg)
{
    struct docker_exec *dx = arg;

    (void)a;
    if (stream == 1 && dx->x.conn) {
        agentconn_feed(dx->x.conn, p, n);
    } else if (stream == 2) {
        char *t = xstrndup(p, n);
        size_t l = strlen(t);
        while (l && t[l - 1] == '\n')
            t[--l] = '\0';
        if (*t)
            say(dx, "agent: %s", t);
        free(t);
    }
}

static void
on_att_end(struct docker_attach *a, int rc, const struct err *e, void *arg)
{
    struct docker_exec *dx = arg;
    struct err ee = {0};

    (void)a;
    if (dx->closing)
        return;
    if (!dx->ready) {
        err_set(&ee, rc ? rc : -EPIPE, "the job container's stream ended during setup%s%s",
                e ? ": " : "", e ? e->msg : "");
        if (dx->starting) { /* wait for the start's own answer */
            dx->att_ended = true;
            dx->att_err = ee;
            return;
        }
        fail(dx, &ee);
        return;
    }
    if (a != dx->att)
        return; /* an old stream, replaced by dockerexec_reattach() */
    /* The agent is gone: tell the job run as a protocol event. */
    err_set(&ee, ERR_PROTO, "the job container's stream ended%s%s", e ? ": " : "", e ? e->msg : "");
    struct agentconn_event ev = {.kind = AGENTCONN_PROTO_ERROR, .err = &ee};
    dx->x.cbs->on_event(dx->x.arg, &ev);
}

static const struct docker_attach_cbs att_cbs = {
    .on_ready = on_att_ready,
    .on_output = on_att_output,
    .on_end = on_att_end,
};

static void
on_started(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;
    struct err e = {0};

    dx->starting = false;
    if (res->rc < 0 && !dx->closing && profile_gpu_refused(res->err.msg) &&
        json_array_size(json_object_get(dx->profile, "gpus")) > 0) {
        landed(dx);
        const char *why = strstr(res->err.msg, "could not select");
        log_warn("job %s: the engine refused its GPUs: %s", dx->name, res->err.msg);
        err_set(&e, -ENODEV, "the Docker engine cannot provide the GPUs this job was given: "
                "install the NVIDIA container toolkit on this host and restart dockerd (%s)",
                why ? why : res->err.msg);
        fail(dx, &e);
        return;
    }
    if (!proceed(dx, res))
        return;
    if (dx->att_ended) {
        fail(dx, &dx->att_err);
        return;
    }
    say(dx, "started container %.12s", dx->ctr_id);
    if (agentconn_hello(dx->x.conn, &e) < 0)
        fail(dx, &e);
}

/* The agent did not answer in time: whatever holds it (an entrypoint or image that never runs
 * it, a container paused before it could answer), the job fails rather than wait. */
static void
on_hello_timeout(uv_timer_t *t)
{
    struct docker_exec *dx = t->data;
    struct err e = {0};

    err_set(&e, -ETIMEDOUT, "the agent in the job container did not answer within %d s of the "
            "container's start: the image or container.options keep it from running",
            HELLO_TIMEOUT_MS / 1000);
    fail(dx, &e);
}

static void
on_att_ready(struct docker_attach *a, void *arg)
{
    struct docker_exec *dx = arg;
    struct err e = {0};

    (void)a;
    if (dx->closing)
        return;
    if (dx->adopted && !dx->ready) {
        /* Not a job log line: the resumed job's lines must be exactly those it printed. */
        log_info("reattached to container %.12s", dx->ctr_id);
        report_ready(dx, 0, NULL);
        return;
    }
    if (dx->reattaching) {
        /* A new stream to a running agent: ask for everything after what we have. */
        dx->reattaching = false;
        if (agentconn_resume(dx->x.conn, dx->resume_from, &e) < 0) {
            struct agentconn_event ev = {.kind = AGENTCONN_PROTO_ERROR, .err = &e};
            dx->x.cbs->on_event(dx->x.arg, &ev);
        } else {
            say(dx, "reattached to container %.12s at offset %llu", dx->ctr_id,
                (unsigned long long)dx->resume_from);
        }
        return;
    }
    if (flying(dx, docker_container_start(dx->d, dx->ctr_id, on_started, dx, &e)) < 0) {
        fail(dx, &e);
        return;
    }
    dx->starting = true;
    dx->hello_timer = xmalloc(sizeof *dx->hello_timer);
    uv_timer_init(dx->x.loop, dx->hello_timer);
    dx->hello_timer->data = dx;
    uv_timer_start(dx->hello_timer, on_hello_timeout, HELLO_TIMEOUT_MS, 0);
}

/* ---------------------------------------------------------------- upload */

static void
on_uploaded(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;
    struct err e = {0};

    tar_free(&dx->tar);
    if (!proceed(dx, res))
        return;
    struct agentconn_cbs cb = {.write = att_write, .on_event = on_agent_event};
    dx->x.conn = agentconn_new(&cb, dx);
    if (docker_attach(dx->d, dx->ctr_id, &att_cbs, dx, &dx->att, &e) < 0)
        fail(dx, &e);
}

/* Reads a file into memory (worker thread). */
static int
slurp(const char *path, char **data, size_t *len, struct err *e)
{
    struct buf b = BUF_INIT;
    int rc = buf_read_file(&b, path, MAX_UPLOAD, "file to copy into the workspace (use --bind)", e);

    *len = b.len;
    *data = buf_steal(&b);
    return rc;
}

/* Adds one workspace entry to the upload (worker thread, through wswalk). Symlinks go in as
 * symlinks, whatever they point at (relative, absolute, dangling, out of the workspace): a link
 * is data in the container, and the host never follows one while copying. A regular file is
 * read through its directory without following a link that replaced it since the walk. */
static int
add_entry(const char *rel, const char *abs, const struct stat *st, void *arg, struct err *e)
{
    struct docker_exec *dx = arg;
    char *path = xasprintf("." WORKSPACE "/%s", rel);
    int rc = 0;

    /* Each entry keeps its file's mtime: zip and wheel builds refuse the 1970 of a 0. */
    dx->tar.mtime = st->st_mtime > 0 ? (long long)st->st_mtime : (long long)time(NULL);
    if (S_ISDIR(st->st_mode)) {
        rc = tar_add_dir(&dx->tar, path, st->st_mode & 07777, e);
    } else if (S_ISREG(st->st_mode)) {
        struct buf b = BUF_INIT;
        rc = fstree_read_beneath(dx->source, rel, &b, MAX_UPLOAD,
                                 "file to copy into the workspace (use --bind)", e);
        if (rc == 0)
            rc = tar_add_file(&dx->tar, path, st->st_mode & 07777, b.data, b.len, e);
        buf_free(&b);
    } else if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(abs, target, sizeof target - 1);
        if (n < 0) {
            rc = err_set(e, -errno, "%s: %s", abs, strerror(errno));
        } else {
            target[n] = '\0';
            rc = tar_add_symlink(&dx->tar, path, target, e);
        }
    }
    /* Sockets, fifos and devices are not copied: they have no content to carry. */
    if (rc == 0 && dx->tar.out.len > MAX_UPLOAD)
        rc = err_set(e, -EFBIG, "the repository is over %llu MiB: use --bind", MAX_UPLOAD >> 20);
    free(path);
    return rc;
}

static void
build_work(uv_work_t *w)
{
    struct docker_exec *dx = w->data;
    char *agent = NULL;
    size_t alen = 0;

    tar_init(&dx->tar);
    dx->tar_rc = slurp(dx->agent_path, &agent, &alen, &dx->tar_err);
    if (dx->tar_rc == 0)
        dx->tar_rc = tar_add_dir(&dx->tar, "." AGENT_DIR, 0755, &dx->tar_err);
    if (dx->tar_rc == 0)
        dx->tar_rc = tar_add_file(&dx->tar, "." AGENT_DIR "/agent", 0755, agent, alen,
                                  &dx->tar_err);
    free(agent);
    if (dx->tar_rc == 0)
        dx->tar_rc = tar_add_dir(&dx->tar, "./var/run/act/workflow", 0777, &dx->tar_err);
    /* A bound workspace is the user's own directory: an entry for it would be unpacked over
     * the bind (its mode, owner and times). Only the volume gets one. */
    if (dx->tar_rc == 0 && !(dx->bind && dx->source))
        dx->tar_rc = tar_add_dir(&dx->tar, "." WORKSPACE, 0777, &dx->tar_err);
    if (dx->tar_rc == 0 && dx->source && !dx->bind)
        dx->tar_rc = wswalk(dx->source, add_entry, dx, &dx->tar_err);
    tar_finish(&dx->tar);
}

static void
build_after(uv_work_t *w, int status)
{
    struct docker_exec *dx = w->data;
    struct err e = {0};

    dx->pending--;
    if (dx->closing || status == UV_ECANCELED) {
        tar_free(&dx->tar);
        if (dx->closing)
            dx_close(&dx->x); /* finish the close that waited for the worker */
        return;
    }
    if (dx->tar_rc < 0) {
        tar_free(&dx->tar);
        fail(dx, &dx->tar_err);
        return;
    }
    if (flying(dx, docker_archive_put(dx->d, dx->ctr_id, "/", dx->tar.out.data, dx->tar.out.len,
                                      on_uploaded, dx, &e)) < 0) {
        tar_free(&dx->tar);
        fail(dx, &e);
    }
}

/* ---------------------------------------------------------------- create */

static void
on_created(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc == 0)
        dx->ctr_id = xstrdup(res->id);
    if (!proceed(dx, res))
        return;
    say(dx, "created container %.12s", dx->ctr_id);
    json_t *c = json_object();
    json_object_set_new(c, "id", json_string(dx->ctr_id));
    json_object_set_new(c, "network", json_string(dx->net_id ? dx->net_id : ""));
    json_object_set_new(dx->x.job_ctx, "container", c);
    dx->work.data = dx;
    dx->pending++;
    if (uv_queue_work(dx->x.loop, &dx->work, build_work, build_after) != 0) {
        struct err e = {0};
        dx->pending--;
        err_set(&e, -EIO, "cannot queue the upload");
        fail(dx, &e);
    }
}

static void create_container(struct docker_exec *dx);
static void start_dind(struct docker_exec *dx);
static const char *const *strv_of(json_t *arr, const char ***keep);

static void
svc_log(const char *line, void *arg)
{
    say(arg, "%s", line);
}

/* Jobs run untrusted code: named volumes are fine, host paths are not (a bind of / or of the
 * Docker socket would hand over the host). Allowed host paths are a per-label setting. */
static int
check_volumes(const char *const *vols, size_t n, const char *what, struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = vols[i], *why = dockeropts_volume_problem(v);
        if (why)
            return err_set(e, -EPERM, "%s: volume '%s': %s", what, v, why);
    }
    return 0;
}

/* A workflow's named volume NAME:/path[:ro|:rw] (container.volumes, services.*.volumes, -v in
 * options) as a HostConfig.Mounts entry. Named volumes belong to the job: "<job>-NAME",
 * labelled like everything the job creates (Docker creates it at first use with those labels)
 * and removed with it, so that no job reads or poisons another's; unless the label lists NAME
 * in persistent_volumes: then "runnerd-<label>-NAME", kept for the label's next jobs. */
static int
volume_mount(struct docker_exec *dx, const char *v, json_t **out, struct err *e)
{
    const char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    char *name = c1 ? xstrndup(v, (size_t)(c1 - v)) : xstrdup(v);
    char *target = c2 ? xstrndup(c1 + 1, (size_t)(c2 - c1 - 1)) : xstrdup(c1 ? c1 + 1 : "");
    const char *label = json_string_value(json_object_get(dx->profile, "label"));
    json_t *keep = json_object_get(dx->profile, "persistent_volumes"), *labels, *x;
    bool persistent = false;
    size_t i;
    int rc = 0;

    *out = NULL;
    json_array_foreach(keep, i, x)
        persistent |= json_is_string(x) && strcmp(json_string_value(x), name) == 0;
    if (dockeropts_volume_problem(v) != NULL || !isalnum((unsigned char)name[0])) {
        rc = err_set(e, -EPERM, "volume '%s': %s", v,
                     dockeropts_volume_problem(v) ? dockeropts_volume_problem(v)
                                                  : "expected NAME:/path");
        goto out;
    }
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.-", *p)) {
            rc = err_set(e, ERR_INVALID, "volume '%s': a volume name is [A-Za-z0-9][A-Za-z0-9_.-]*",
                         v);
            goto out;
        }
    if (target[0] != '/' || (c2 && strcmp(c2, ":ro") != 0 && strcmp(c2, ":rw") != 0)) {
        rc = err_set(e, ERR_INVALID, "volume '%s': expected NAME:/path[:ro|:rw]", v);
        goto out;
    }
    if (persistent && label) {
        char *src = xasprintf("runnerd-%s-%s", label, name);
        for (char *p = src; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
                *p = '-';
        labels = json_pack("{s:s}", DOCKEREXEC_LABEL_PERSISTENT, label);
        *out = json_pack("{s:s, s:s, s:s, s:b, s:{s:o}}", "Type", "volume", "Source", src,
                         "Target", target, "ReadOnly", c2 && strcmp(c2, ":ro") == 0,
                         "VolumeOptions", "Labels", labels);
        free(src);
    } else {
        char *src = xasprintf("%s-%s", dx->name, name);
        *out = json_pack("{s:s, s:s, s:s, s:b, s:{s:o}}", "Type", "volume", "Source", src,
                         "Target", target, "ReadOnly", c2 && strcmp(c2, ":ro") == 0,
                         "VolumeOptions", "Labels", job_labels(dx));
        dx->job_vols = true;
        free(src);
    }
out:
    free(name);
    free(target);
    return rc;
}

static int
mount_volume_cb(const char *vol, void *arg, json_t **mount, struct err *e)
{
    return volume_mount(arg, vol, mount, e);
}

/* Adds the job container's volumes (container.volumes and -v in its options): named ones as
 * volume_mount() says, anonymous ones (/path) as Volumes, removed with the container. */
static int
add_job_volumes(struct docker_exec *dx, json_t *body, const char *const *vols, size_t n,
                struct err *e)
{
    json_t *hc = json_object_get(body, "HostConfig"), *ms = json_object_get(hc, "Mounts");

    if (!json_is_array(ms)) {
        ms = json_array();
        json_object_set_new(hc, "Mounts", ms);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = NULL;
        if (strchr(vols[i], ':') == NULL && vols[i][0] == '/') {
            json_t *anon = json_object_get(body, "Volumes");
            if (!json_is_object(anon)) {
                anon = json_object();
                json_object_set_new(body, "Volumes", anon);
            }
            json_object_set_new(anon, vols[i], json_object());
            continue;
        }
        if (volume_mount(dx, vols[i], &m, e) < 0)
            return -1;
        json_array_append_new(ms, m);
    }
    return 0;
}

static int
check_volumes_cb(const char *vol, void *arg, struct err *e)
{
    (void)arg;
    return check_volumes(&vol, 1, "services", e);
}

static const char *const *
strv_of(json_t *arr, const char ***keep)
{
    size_t i, n = json_array_size(arr);
    json_t *v;

    if (!json_is_array(arr))
        return NULL;
    *keep = xcalloc(n + 1, sizeof **keep);
    json_array_foreach(arr, i, v) {
        (*keep)[i] = json_is_string(v) ? json_string_value(v) : "";
    }
    return *keep;
}

static void
on_services(struct services *s, int rc, const struct err *e, void *arg)
{
    struct docker_exec *dx = arg;

    (void)s;
    dx->pending--;
    if (dx->closing) {
        dx_close(&dx->x);
        return;
    }
    if (rc < 0) {
        fail(dx, e); /* the job run closes us; services_stop() runs in the close */
        return;
    }
    json_t *ctx = services_context(dx->svc);
    json_object_set_new(dx->x.job_ctx, "services", ctx);
    start_dind(dx);
}

static void
on_dind(void *arg, int rc, const struct err *e)
{
    struct docker_exec *dx = arg;

    dx->pending--;
    dx->dind_waiting = false;
    if (dx->closing) {
        dx_close(&dx->x);
        return;
    }
    if (rc < 0) {
        fail(dx, e);
        return;
    }
    say(dx, "the job's Docker daemon (dind sidecar) is ready at tcp://docker:2376");
    create_container(dx);
}

/* docker: dind: the job's own Docker daemon on the job network before the job container. */
static void
start_dind(struct docker_exec *dx)
{
    json_t *dj = json_object_get(dx->profile, "dind");
    struct err e = {0};

    if (!json_is_object(dj)) {
        create_container(dx);
        return;
    }
    json_t *labels = job_labels(dx);
    json_object_set_new(labels, DOCKER_LABEL_ROLE, json_string("dind"));
    const char **args = NULL;
    struct dind_opts o = {
        .job = dx->name,
        .image = json_string_value(json_object_get(dj, "image")),
        .network = dx->net_name,
        .labels = labels,
        .priv = json_is_true(json_object_get(dj, "caps")) ? DIND_PRIV_CAPS : DIND_PRIV_PRIVILEGED,
        .args = strv_of(json_object_get(dj, "args"), &args),
        .limits = dx->profile,
    };
    say(dx, "starting the job's Docker daemon (dind sidecar from %s)", o.image ? o.image : "?");
    dx->used_dind = true;
    if (flying(dx, dind_start(dx->d, &o, on_dind, dx, &dx->dind, &e)) < 0)
        fail(dx, &e);
    else
        dx->dind_waiting = true;
    free(args);
    json_decref(labels);
}

/* Starts the job's services on the job network, then the job container. */
static void
start_services(struct docker_exec *dx)
{
    struct err e = {0};
    size_t n = json_object_size(dx->services), i = 0;
    struct services_def *defs;
    const char ***keeps;
    const char *id;
    json_t *sv;

    if (n == 0) {
        start_dind(dx);
        return;
    }
    defs = xcalloc(n, sizeof *defs);
    keeps = xcalloc(n * 2, sizeof *keeps);
    char ***words = xcalloc(n * 2, sizeof *words);
    json_object_foreach(dx->services, id, sv) {
        json_t *cred = json_object_get(sv, "credentials");
        /* entrypoint: and command: (strings, shell-word split) replace the image's. */
        const char *ep = json_string_value(json_object_get(sv, "entrypoint"));
        const char *cmd = json_string_value(json_object_get(sv, "command"));
        size_t nw;
        char *what = xasprintf("services.%s.entrypoint", id);
        if (ep && *ep && dockeropts_split(ep, what, &words[2 * i], &nw, &e) == 0)
            defs[i].entrypoint = (const char *const *)words[2 * i];
        free(what);
        what = xasprintf("services.%s.command", id);
        if (cmd && *cmd && dockeropts_split(cmd, what, &words[2 * i + 1], &nw, &e) == 0)
            defs[i].cmd = (const char *const *)words[2 * i + 1];
        free(what);
        if (e.code) {
            fail(dx, &e);
            goto out;
        }
        defs[i].id = id;
        defs[i].image = json_string_value(json_object_get(sv, "image"));
        defs[i].env = json_object_get(sv, "env");
        defs[i].ports = strv_of(json_object_get(sv, "ports"), &keeps[2 * i]);
        defs[i].volumes = strv_of(json_object_get(sv, "volumes"), &keeps[2 * i + 1]);
        defs[i].options = json_string_value(json_object_get(sv, "options"));
        defs[i].username = json_string_value(json_object_get(cred, "username"));
        defs[i].password = json_string_value(json_object_get(cred, "password"));
        i++;
    }
    json_t *labels = job_labels(dx);
    struct services_config cfg = {
        .d = dx->d,
        .job_name = dx->name,
        .network = dx->net_name,
        .labels = labels,
        .allow_pull = true,
        .validate_volume = check_volumes_cb,
        .mount_volume = mount_volume_cb,
        .log = svc_log,
        .arg = dx,
        .limits = dx->profile,
    };
    if (flying(dx, services_start(dx->x.loop, &cfg, defs, n, on_services, dx, &dx->svc, &e)) < 0)
        fail(dx, &e);
    json_decref(labels);
out:
    for (size_t k = 0; k < 2 * n; k++) {
        free(keeps[k]);
        dockeropts_words_free(words[k]);
    }
    free(words);
    free(keeps);
    free(defs);
}

static void create_volumes(struct docker_exec *dx);

static void
on_volume(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc == 0)
        dx->vol_created[dx->vol_next] = true;
    if (!proceed(dx, res))
        return;
    dx->vol_next++;
    create_volumes(dx);
}

/* Creates the job's volumes one after the other, then starts the services. */
static void
create_volumes(struct docker_exec *dx)
{
    struct err e = {0};

    while (dx->vol_next < 2 && dx->vols[dx->vol_next] == NULL)
        dx->vol_next++;
    if (dx->vol_next == 2) {
        start_services(dx);
        return;
    }
    json_t *labels = job_labels(dx);
    if (flying(dx, docker_volume_create(dx->d, dx->vols[dx->vol_next], labels, on_volume, dx,
                                        &e)) < 0)
        fail(dx, &e);
    json_decref(labels);
}

static void
on_network(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;
    struct err e = {0};

    if (res->rc == 0)
        dx->net_id = xstrdup(res->id);
    if (!proceed(dx, res))
        return;
    (void)e;
    /* The workspace and /var/run/act are volumes, so that step containers (docker:// steps,
     * docker actions) see the same files as the job container. */
    if (!dx->bind)
        dx->vols[0] = xasprintf("%s-workspace", dx->name);
    dx->vols[1] = xasprintf("%s-act", dx->name);
    create_volumes(dx);
}

static void
create_container(struct docker_exec *dx)
{
    struct err e = {0};
    json_t *labels = NULL, *body = NULL;
    char **env = NULL;
    size_t n = 0;

    labels = job_labels(dx);
    json_object_set_new(labels, DOCKER_LABEL_ROLE, json_string("job"));
    /* The container's own env: the runner's four, LANG, and the job's container env. */
    env = xcalloc(json_object_size(dx->env) + 6, sizeof *env);
    env[n++] = xstrdup("RUNNER_TOOL_CACHE=/opt/hostedtoolcache");
    env[n++] = xstrdup("RUNNER_OS=Linux");
    env[n++] = xstrdup("RUNNER_TEMP=/tmp");
    env[n++] = xstrdup("LANG=C.UTF-8");
    {
        const char *k;
        json_t *v;
        json_object_foreach(dx->env, k, v) {
            if (json_is_string(v))
                env[n++] = xasprintf("%s=%s", k, json_string_value(v));
        }
    }
    env[n] = NULL;
    char *bind = dx->bind && dx->source ? xasprintf("%s:" WORKSPACE, dx->source)
                                        : xasprintf("%s:" WORKSPACE, dx->vols[0]);
    char *act = xasprintf("%s:/var/run/act", dx->vols[1]);
    dx->x.workspace_mount = xstrdup(bind);
    dx->x.act_mount = xstrdup(act);
    dx->x.network = xstrdup(dx->net_name);
    const char *binds[] = {bind, act, NULL};
    const char *entry[] = {AGENT_DIR "/agent", "--journal", AGENT_DIR "/journal", NULL};
    struct docker_container_spec spec = {
        .image = dx->image_id,
        .entrypoint = entry,
        .env = (const char *const *)env,
        .workdir = WORKSPACE,
        .labels = labels,
        .open_stdin = true,
        .attach_output = true,
        .binds = binds,
        .network_mode = dx->net_name,
        .pids_limit = 4096,
    };
    body = docker_container_spec_json(&spec);
    if (dx->options && *dx->options) {
        struct dockeropts o = {0};
        if (dockeropts_parse(dx->options, "container.options", 0, &o, &e) < 0 ||
            check_volumes((const char *const *)o.volumes, o.nvolumes, "container.options", &e) < 0 ||
            add_job_volumes(dx, body, (const char *const *)o.volumes, o.nvolumes, &e) < 0) {
            if (o.nvolumes && e.code)
                err_prefix(&e, "container.options: ");
            dockeropts_free(&o);
            fail(dx, &e);
            goto out;
        }
        dockeropts_merge(body, &o);
        dockeropts_free(&o);
        /* Steps get exactly the env the agent is given: -e values join their base env. */
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(body, "Env"), i, v) {
            const char *kv = json_string_value(v), *eq = kv ? strchr(kv, '=') : NULL;
            if (eq) {
                char *k = xstrndup(kv, (size_t)(eq - kv));
                json_object_set_new(dx->x.base_env, k, json_string(eq + 1));
                free(k);
            }
        }
    }
    if (json_array_size(dx->volumes) > 0) {
        size_t nv = json_array_size(dx->volumes), i;
        const char **vs = xcalloc(nv + 1, sizeof *vs);
        json_t *v;
        json_array_foreach(dx->volumes, i, v)
            vs[i] = json_is_string(v) ? json_string_value(v) : "";
        int vrc = check_volumes(vs, nv, "container.volumes", &e);
        if (vrc == 0 && add_job_volumes(dx, body, vs, nv, &e) < 0) {
            err_prefix(&e, "container.volumes: ");
            vrc = -1;
        }
        free(vs);
        if (vrc < 0) {
            fail(dx, &e);
            goto out;
        }
    }
    /* The label's settings go last: no workflow option lifts a limit or adds a GPU. */
    if (dx->profile) {
        json_t *penv = json_object(), *cenv = json_object_get(body, "Env");
        const char *k;
        json_t *v;
        profile_apply(body, dx->profile, penv);
        if (dx->dind) {
            const struct dind_job *dj = dind_job(dx->dind);
            for (size_t i = 0; dj->env && dj->env[i]; i++) {
                const char *eq = strchr(dj->env[i], '=');
                if (eq) {
                    char *dk = xstrndup(dj->env[i], (size_t)(eq - dj->env[i]));
                    json_object_set_new(penv, dk, json_string(eq + 1));
                    free(dk);
                }
            }
            json_t *hc = json_object_get(body, "HostConfig"), *b = json_object_get(hc, "Binds");
            if (json_is_array(b) && dj->bind)
                json_array_append_new(b, json_string(dj->bind));
        }
        if (!json_is_array(cenv)) {
            cenv = json_array();
            json_object_set_new(body, "Env", cenv);
        }
        json_object_foreach(penv, k, v) {
            char *kv = xasprintf("%s=%s", k, json_string_value(v));
            json_array_append_new(cenv, json_string(kv));
            free(kv);
            json_object_set(dx->x.base_env, k, v);
        }
        json_decref(penv);
    }
    if (flying(dx, docker_container_create(dx->d, dx->name, body, on_created, dx, &e)) < 0)
        fail(dx, &e);
out:
    free(bind);
    free(act);
    for (size_t i = 0; i < n; i++)
        free(env[i]);
    free(env);
    json_decref(body);
    json_decref(labels);
}

static void
on_resolved(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;
    struct err e = {0};

    if (!proceed(dx, res))
        return;
    dx->image_id = xstrdup(res->id);
    say(dx, "image %s is %.19s", dx->image, dx->image_id);
    /* PATH from the image config. */
    json_t *cenv = json_object_get(json_object_get(res->json, "Config"), "Env");
    size_t i;
    json_t *v;
    json_array_foreach(cenv, i, v) {
        const char *s = json_string_value(v), *eq = s ? strchr(s, '=') : NULL;
        if (eq == NULL)
            continue;
        char *k = xstrndup(s, (size_t)(eq - s));
        json_object_set_new(dx->x.base_env, k, json_string(eq + 1));
        free(k);
        if (strncmp(s, "PATH=", 5) == 0) {
            free(dx->x.base_path);
            dx->x.base_path = xstrdup(s + 5);
        }
    }
    /* An image without ENV PATH (any `docker import`) gets Docker's default PATH in its
     * container; steps get it too, exported, or programs started by programs find nothing. */
    if (!json_is_string(json_object_get(dx->x.base_env, "PATH")))
        json_object_set_new(dx->x.base_env, "PATH", json_string(DEFAULT_PATH));
    /* What the container is created with (below) is part of every step's env too. */
    json_object_set_new(dx->x.base_env, "RUNNER_TOOL_CACHE", json_string("/opt/hostedtoolcache"));
    json_object_set_new(dx->x.base_env, "RUNNER_OS", json_string("Linux"));
    json_object_set_new(dx->x.base_env, "RUNNER_ARCH", json_string(ctx_arch_name(
        json_string_value(json_object_get(res->json, "Architecture")))));
    json_object_set_new(dx->x.base_env, "RUNNER_TEMP", json_string("/tmp"));
    json_object_set_new(dx->x.base_env, "LANG", json_string("C.UTF-8"));
    json_object_update(dx->x.base_env, dx->env);
    json_t *labels = job_labels(dx);
    if (flying(dx, docker_network_create(dx->d, dx->net_name, labels, on_network, dx, &e)) < 0)
        fail(dx, &e);
    json_decref(labels);
}

static int
dx_setup(struct executor *x, const struct executor_job *job, struct err *e)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    char rnd[9];
    FILE *f;
    unsigned char b[4] = {0};

    if (job->image == NULL)
        return err_set(e, ERR_INVALID, "the docker executor needs an image");
    f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(b, 1, sizeof b, f) != sizeof b)
            memset(b, 0, sizeof b);
        fclose(f);
    }
    snprintf(rnd, sizeof rnd, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
    dx->name = xasprintf("runnerd-%s-%s", job->name, rnd);
    for (char *p = dx->name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            *p = '-';
    dx->net_name = xasprintf("%s-net", dx->name);
    dx->image = xstrdup(job->image);
    dx->env = job->env ? json_incref(job->env) : json_object();
    dx->options = job->options ? xstrdup(job->options) : NULL;
    dx->volumes = job->volumes ? json_deep_copy(job->volumes) : NULL;
    dx->services = job->services ? json_incref(job->services) : NULL;
    dx->profile = job->profile ? json_deep_copy(job->profile) : NULL;
    dx->bind = job->bind;
    if (job->source) {
        dx->source = realpath(job->source, NULL);
        if (dx->source == NULL)
            return err_set(e, -errno, "%s: %s", job->source, strerror(errno));
    }
    if (x->workspace == NULL) /* set by executor_docker_new() */
        x->workspace = xstrdup(WORKSPACE);
    x->file_dir = xstrdup(FILE_DIR);
    x->base_path = xstrdup(DEFAULT_PATH);
    x->agent_cmd = xstrdup(AGENT_DIR "/agent");
    x->base_env = json_object();
    x->job_ctx = json_object();
    x->docker = dx->d;
    x->limits = dx->profile;
    x->container = true;
    return flying(dx, docker_image_resolve(dx->d, dx->image, NULL, true, NULL, on_resolved, dx, e));
}

/* ---------------------------------------------------------------- close */

static void
dx_free(struct docker_exec *dx)
{
    const struct executor_cbs *cbs = dx->x.cbs;
    void *arg = dx->x.arg;

    if (dx->x.conn)
        agentconn_free(dx->x.conn);
    free(dx->agent_path);
    free(dx->runner_name);
    free(dx->name);
    free(dx->image);
    free(dx->image_id);
    free(dx->source);
    free(dx->net_name);
    free(dx->net_id);
    free(dx->ctr_id);
    free(dx->vols[0]);
    free(dx->vols[1]);
    free(dx->x.act_mount);
    free(dx->options);
    json_decref(dx->volumes);
    json_decref(dx->services);
    json_decref(dx->profile);
    dind_free(dx->dind);
    json_decref(dx->x.job_ctx);
    free(dx->x.workspace_mount);
    free(dx->x.network);
    json_decref(dx->env);
    free(dx->x.workspace);
    free(dx->x.file_dir);
    free(dx->x.base_path);
    free(dx->x.agent_cmd);
    json_decref(dx->x.base_env);
    free(dx);
    if (cbs && cbs->on_closed)
        cbs->on_closed(arg);
}

static void remove_network_now(struct docker_exec *dx);

static void sweep_job(struct docker_exec *dx);

static void
on_net_removed(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc < 0 && res->rc != ERR_NOTFOUND)
        say(dx, "warning: %s", res->err.msg);
    sweep_job(dx);
}

static void
on_services_stopped_early(int rc, const struct err *e, void *arg)
{
    struct docker_exec *dx = arg;

    if (rc < 0 && e && rc != ERR_CANCELED)
        say(dx, "warning: %s", e->msg);
    dx->pending--;
    dx_close(&dx->x);
}

static void
on_services_stopped(int rc, const struct err *e, void *arg)
{
    struct docker_exec *dx = arg;

    if (rc < 0 && e)
        say(dx, "warning: %s", e->msg);
    dx->svc = NULL;
    remove_network_now(dx);
}

static void
remove_network(struct docker_exec *dx)
{
    if (dx->svc) {
        services_stop(dx->svc, on_services_stopped, dx);
        return;
    }
    remove_network_now(dx);
}

static void
on_job_swept(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc < 0)
        say(dx, "warning: %s", res->err.msg);
    dx_free(dx);
}

/* Last: an adopted job's service containers and anything else labelled with its name. */
static void
sweep_job(struct docker_exec *dx)
{
    struct err e = {0};
    char *label = xasprintf(DOCKER_LABEL_JOB "=%s", dx->name);
    int rc = dx->adopted || dx->used_dind || dx->job_vols
                 ? docker_sweep(dx->d, label, on_job_swept, dx, &e) : -1;

    free(label);
    if (rc < 0)
        dx_free(dx);
}

static void
remove_network_now(struct docker_exec *dx)
{
    struct err e = {0};

    if (dx->used_dind) { /* the sidecar is on the network: the sweep removes it first */
        sweep_job(dx);
        return;
    }
    if (dx->net_id == NULL ||
        docker_network_remove(dx->d, dx->net_id, on_net_removed, dx, &e) < 0)
        sweep_job(dx);
}

static void remove_volume(struct docker_exec *dx);

static void
on_vol_removed(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc < 0 && res->rc != ERR_NOTFOUND)
        say(dx, "warning: %s", res->err.msg);
    remove_volume(dx);
}

/* Removes the created volumes one by one, then the network. */
static void
remove_volume(struct docker_exec *dx)
{
    struct err e = {0};

    for (int i = 0; i < 2; i++) {
        if (!dx->vol_created[i])
            continue;
        dx->vol_created[i] = false;
        if (docker_volume_remove(dx->d, dx->vols[i], true, on_vol_removed, dx, &e) == 0)
            return;
        say(dx, "warning: %s", e.msg);
    }
    remove_network(dx);
}

static void
on_ctr_removed(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc < 0 && res->rc != ERR_NOTFOUND)
        say(dx, "warning: %s", res->err.msg);
    else
        say(dx, "removed container %.12s", dx->ctr_id);
    remove_volume(dx);
}

static void
dx_close(struct executor *x)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    struct err e = {0};

    dx->closing = true;
    hello_timer_stop(dx);
    if (dx->svc && !dx->ready && !dx->svc_stopping) {
        /* Services may be waiting for health checks: stop them now rather than wait. */
        dx->svc_stopping = true;
        dx->pending++;
        services_stop(dx->svc, on_services_stopped_early, dx);
        dx->svc = NULL;
    }
    if (dx->dind_waiting) { /* stop waiting for the sidecar: the teardown removes it */
        dind_free(dx->dind);
        dx->dind = NULL;
        dx->dind_waiting = false;
        dx->pending--;
    }
    if (dx->pending > 0 || dx->teardown)
        return; /* calls in flight land first and call us again */
    dx->teardown = true;
    if (dx->att) {
        docker_attach_close(dx->att);
        dx->att = NULL;
    }
    if (dx->ctr_id == NULL ||
        docker_container_remove(dx->d, dx->ctr_id, true, true, on_ctr_removed, dx, &e) < 0)
        remove_volume(dx);
}

static json_t *
strv_json(char *const *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, v[i] ? json_string(v[i]) : json_null());
    return a;
}

/* What a restarted host side needs to find and clean up this job again. */
static json_t *
dx_describe(struct executor *x)
{
    struct docker_exec *dx = (struct docker_exec *)x;

    if (dx->ctr_id == NULL)
        return NULL;
    return json_pack("{s:s, s:s, s:s*, s:s*, s:s*, s:o, s:[b,b], s:s, s:s, s:s, s:s, s:O, "
                     "s:s*, s:s*, s:s*, s:b, s:b, s:O*, s:O*}",
                     "executor", "docker", "name", dx->name, "container", dx->ctr_id,
                     "network_name", dx->net_name, "network", dx->net_id,
                     "volumes", strv_json(dx->vols, 2),
                     "volumes_created", dx->vol_created[0], dx->vol_created[1],
                     "workspace", x->workspace, "file_dir", x->file_dir,
                     "base_path", x->base_path, "agent_cmd", x->agent_cmd,
                     "base_env", x->base_env, "workspace_mount", x->workspace_mount,
                     "act_mount", x->act_mount, "image", dx->image_id, "bash", x->bash,
                     "node", x->node,
                     "job_ctx", x->job_ctx, "profile", dx->profile);
}

/* Adopted: the container exists and runs; attach to it. */
static int
dx_adopt_setup(struct executor *x, const struct executor_job *job, struct err *e)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    struct agentconn_cbs cb = {.write = att_write, .on_event = on_agent_event};

    (void)job;
    x->conn = agentconn_new(&cb, dx);
    return docker_attach(dx->d, dx->ctr_id, &att_cbs, dx, &dx->att, e);
}

/* ---------------------------------------------------------------- uploads during the job */

struct put_req {
    struct docker_exec *dx;
    executor_done_fn done;
    void *arg;
};

static void
on_put(const struct docker_res *res, void *arg)
{
    struct put_req *p = arg;
    struct docker_exec *dx = p->dx;
    bool closing = landed(dx);

    p->done(p->arg, res->rc, &res->err);
    free(p);
    if (closing)
        dx_close(&dx->x);
}

static int
dx_put_archive(struct executor *x, const char *dest, const void *tar, size_t len,
               executor_done_fn done, void *arg, struct err *e)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    struct put_req *p;

    if (dx->closing || dx->ctr_id == NULL)
        return err_set(e, -ECANCELED, "the job container is gone");
    p = xcalloc(1, sizeof *p);
    *p = (struct put_req){.dx = dx, .done = done, .arg = arg};
    if (flying(dx, docker_archive_put(dx->d, dx->ctr_id, dest, tar, len, on_put, p, e)) < 0) {
        free(p);
        return e->code ? e->code : -EIO;
    }
    return 0;
}

struct get_req {
    struct docker_exec *dx;
    executor_tar_fn done;
    void *arg;
};

static void
on_get(const struct docker_res *res, void *arg)
{
    struct get_req *g = arg;
    struct docker_exec *dx = g->dx;
    bool closing = landed(dx);

    g->done(g->arg, res->rc, &res->err, res->body, res->body_len);
    free(g);
    if (closing)
        dx_close(&dx->x);
}

static int
dx_get_archive(struct executor *x, const char *path, executor_tar_fn done, void *arg,
               struct err *e)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    struct get_req *g;

    if (dx->closing || dx->ctr_id == NULL)
        return err_set(e, -ECANCELED, "the job container is gone");
    g = xcalloc(1, sizeof *g);
    *g = (struct get_req){.dx = dx, .done = done, .arg = arg};
    if (flying(dx, docker_archive_get(dx->d, dx->ctr_id, path, on_get, g, e)) < 0) {
        free(g);
        return e->code ? e->code : -EIO;
    }
    return 0;
}

static const struct executor_ops docker_ops = {
    .name = "docker",
    .setup = dx_setup,
    .close = dx_close,
    .describe = dx_describe,
    .put_archive = dx_put_archive,
    .get_archive = dx_get_archive,
};

static const struct executor_ops docker_adopt_ops = {
    .name = "docker",
    .setup = dx_adopt_setup,
    .close = dx_close,
    .describe = dx_describe,
    .put_archive = dx_put_archive,
    .get_archive = dx_get_archive,
};

static char *
jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));

    return v ? xstrdup(v) : NULL;
}

int
executor_docker_adopt(uv_loop_t *loop, struct docker *d, const char *runner_name,
                      const json_t *desc, struct executor **out, struct err *e)
{
    struct docker_exec *dx;
    const char *ctr = json_string_value(json_object_get(desc, "container"));
    const char *name = json_string_value(json_object_get(desc, "name"));

    if (ctr == NULL || name == NULL ||
        !json_is_string(json_object_get(desc, "workspace")) ||
        !json_is_string(json_object_get(desc, "file_dir")))
        return err_set(e, ERR_INVALID, "the job's executor record is incomplete");
    dx = xcalloc(1, sizeof *dx);
    dx->x.ops = &docker_adopt_ops;
    dx->x.loop = loop;
    dx->d = d;
    dx->adopted = true;
    dx->runner_name = xstrdup(runner_name ? runner_name : "runnerd");
    dx->name = xstrdup(name);
    dx->ctr_id = xstrdup(ctr);
    dx->net_name = jstr(desc, "network_name");
    dx->net_id = jstr(desc, "network");
    dx->image_id = jstr(desc, "image");
    json_t *vols = json_object_get(desc, "volumes"), *vc = json_object_get(desc, "volumes_created");
    for (int i = 0; i < 2; i++) {
        const char *v = json_string_value(json_array_get(vols, (size_t)i));
        dx->vols[i] = v ? xstrdup(v) : NULL;
        dx->vol_created[i] = v && json_is_true(json_array_get(vc, (size_t)i));
    }
    dx->env = json_object();
    dx->x.workspace = jstr(desc, "workspace");
    dx->x.file_dir = jstr(desc, "file_dir");
    dx->x.base_path = jstr(desc, "base_path");
    if (dx->x.base_path == NULL)
        dx->x.base_path = xstrdup(DEFAULT_PATH);
    dx->x.agent_cmd = jstr(desc, "agent_cmd");
    if (dx->x.agent_cmd == NULL)
        dx->x.agent_cmd = xstrdup(AGENT_DIR "/agent");
    json_t *be = json_object_get(desc, "base_env");
    dx->x.base_env = json_is_object(be) ? json_deep_copy(be) : json_object();
    dx->x.workspace_mount = jstr(desc, "workspace_mount");
    dx->x.act_mount = jstr(desc, "act_mount");
    dx->x.network = dx->net_name ? xstrdup(dx->net_name) : NULL;
    json_t *jc = json_object_get(desc, "job_ctx");
    dx->x.job_ctx = json_is_object(jc) ? json_deep_copy(jc) : json_object();
    dx->x.bash = json_is_true(json_object_get(desc, "bash"));
    /* An older description has no "node": as before, node actions run in the job image. */
    dx->x.node = !json_is_false(json_object_get(desc, "node"));
    dx->x.docker = d;
    json_t *pf = json_object_get(desc, "profile"); /* its limits, for step containers */
    dx->profile = json_is_object(pf) ? json_deep_copy(pf) : NULL;
    dx->x.limits = dx->profile;
    dx->x.container = true;
    *out = &dx->x;
    return 0;
}

int
executor_docker_new(uv_loop_t *loop, struct docker *d, const char *agent_path,
                    const char *runner_name, struct executor **out, struct err *e)
{
    struct docker_exec *dx;

    if (agent_path == NULL || access(agent_path, R_OK) != 0)
        return err_set(e, -ENOENT, "runner-agent not found%s%s (set RUNNERD_AGENT)",
                       agent_path ? " at " : "", agent_path ? agent_path : "");
    dx = xcalloc(1, sizeof *dx);
    dx->x.ops = &docker_ops;
    dx->x.loop = loop;
    /* Known before setup, so that the job container's env, volumes and options (evaluated
     * before it is created) can name github.workspace. */
    dx->x.workspace = xstrdup(WORKSPACE);
    dx->d = d;
    dx->agent_path = xstrdup(agent_path);
    dx->runner_name = xstrdup(runner_name ? runner_name : "runnerctl");
    *out = &dx->x;
    return 0;
}

/* ---------------------------------------------------------------- orphans */

struct sweep {
    struct docker *d;
    void (*done)(int removed, void *arg);
    void *arg;
    json_t *owners;   /* owner -> true: dead owners on this host; or, with `owner`, the
                         job label values to remove */
    char *owner;      /* dockerexec_sweep_owner(): only this owner's objects */
    json_t *keep;     /* ... except these jobs */
    int stage;        /* 0 containers, 1 networks, 2 volumes, 3 removing */
    size_t next;
    int removed;
};

static void sweep_next(struct sweep *sw);

/* Records owner if it ran on this host and its process is gone. */
static void
note_owner(struct sweep *sw, json_t *labels)
{
    const char *owner = json_string_value(json_object_get(labels, DOCKEREXEC_LABEL_OWNER));
    char host[256] = "";
    const char *colon;

    if (owner == NULL || (colon = strrchr(owner, ':')) == NULL)
        return;
    gethostname(host, sizeof host - 1);
    if (strlen(host) != (size_t)(colon - owner) || strncmp(owner, host, strlen(host)) != 0)
        return;
    char *end = NULL;
    long pid = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0')
        return; /* not a process id: a durable owner (runnerd) that cleans up itself */
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH))
        json_object_set_new(sw->owners, owner, json_true());
}

static void
on_swept(const struct docker_res *res, void *arg)
{
    struct sweep *sw = arg;

    if (res->rc < 0)
        log_warn("sweeping orphans: %s", res->err.msg);
    sw->removed += res->removed;
    sweep_next(sw);
}

static void
on_listed(const struct docker_res *res, void *arg)
{
    struct sweep *sw = arg;
    json_t *list = res->json, *it;
    size_t i;

    if (res->rc < 0)
        log_warn("listing leftovers: %s", res->err.msg);
    if (json_is_object(list))
        list = json_object_get(list, "Volumes");
    json_array_foreach(list, i, it) {
        json_t *labels = json_object_get(it, "Labels");
        if (sw->owner == NULL) {
            note_owner(sw, labels);
            continue;
        }
        const char *o = json_string_value(json_object_get(labels, DOCKEREXEC_LABEL_OWNER));
        const char *job = json_string_value(json_object_get(labels, DOCKER_LABEL_JOB));
        if (o && job && strcmp(o, sw->owner) == 0 && !json_object_get(sw->keep, job))
            json_object_set_new(sw->owners, job, json_true());
    }
    sw->stage++;
    sweep_next(sw);
}

static void
sweep_next(struct sweep *sw)
{
    struct err e = {0};
    char *filter = httpc_escape("{\"label\":[\"" DOCKEREXEC_LABEL_OWNER "\"]}");
    char *path = NULL;
    int rc = 0;

    switch (sw->stage) {
    case 0:
        rc = docker_container_list(sw->d, DOCKEREXEC_LABEL_OWNER, on_listed, sw, &e);
        break;
    case 1:
        path = xasprintf("/networks?filters=%s", filter);
        rc = docker_call(sw->d, "list networks", "GET", path, NULL, NULL, 0, on_listed, sw, &e);
        break;
    case 2:
        path = xasprintf("/volumes?filters=%s", filter);
        rc = docker_call(sw->d, "list volumes", "GET", path, NULL, NULL, 0, on_listed, sw, &e);
        break;
    default: {
        void *iter = json_object_iter(sw->owners);
        size_t n = 0;
        while (iter && n < sw->next) {
            iter = json_object_iter_next(sw->owners, iter);
            n++;
        }
        if (iter == NULL) {
            free(filter);
            sw->done(sw->removed, sw->arg);
            json_decref(sw->owners);
            json_decref(sw->keep);
            free(sw->owner);
            free(sw);
            return;
        }
        sw->next++;
        path = xasprintf("%s=%s", sw->owner ? DOCKER_LABEL_JOB : DOCKEREXEC_LABEL_OWNER,
                         json_object_iter_key(iter));
        rc = docker_sweep(sw->d, path, on_swept, sw, &e);
        break;
    }
    }
    free(filter);
    free(path);
    if (rc < 0) {
        log_warn("sweeping orphans: %s", e.msg);
        sw->stage = 3;
        sw->next = (size_t)-1 / 2;
        sweep_next(sw);
    }
}

int
dockerexec_sweep_orphans(struct docker *d, void (*done)(int removed, void *arg), void *arg,
                         struct err *e)
{
    struct sweep *sw = xcalloc(1, sizeof *sw);

    (void)e;
    sw->d = d;
    sw->done = done;
    sw->arg = arg;
    sw->owners = json_object();
    sweep_next(sw);
    return 0;
}

int
dockerexec_sweep_owner(struct docker *d, const char *owner, const json_t *keep,
                       void (*done)(int removed, void *arg), void *arg, struct err *e)
{
    struct sweep *sw = xcalloc(1, sizeof *sw);

    (void)e;
    sw->d = d;
    sw->done = done;
    sw->arg = arg;
    sw->owners = json_object();
    sw->owner = xstrdup(owner);
    sw->keep = keep ? json_deep_copy(keep) : json_object();
    sweep_next(sw);
    return 0;
}

json_t *
dockerexec_step_labels(const struct executor *x)
{
    json_t *l = job_labels((const struct docker_exec *)x);

    json_object_set_new(l, DOCKER_LABEL_ROLE, json_string("step"));
    return l;
}

int
dockerexec_reattach(struct executor *x, struct err *e)
{
    struct docker_exec *dx = (struct docker_exec *)x;
    struct agentconn_cbs cb = {.write = att_write, .on_event = on_agent_event};

    if (!dx->ready || dx->closing || dx->ctr_id == NULL)
        return err_set(e, -EINVAL, "nothing to reattach to");
    /* What the job run has seen ends at the old connection's offset; the agent replays the
     * rest from its journal, so nothing is lost and nothing repeats. */
    dx->resume_from = agentconn_offset(x->conn);
    if (dx->att) {
        docker_attach_close(dx->att);
        dx->att = NULL;
    }
    agentconn_free(x->conn);
    x->conn = agentconn_new(&cb, dx);
    dx->reattaching = true;
    return docker_attach(dx->d, dx->ctr_id, &att_cbs, dx, &dx->att, e);
}
