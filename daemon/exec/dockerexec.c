/* dockerexec.c: the docker executor. The job runs in a container of the label's (or the job's)
 * image with runner-agent as its entrypoint, copied in through the archive API before start;
 * the host talks to the agent over the container's attach stream (doc/docker-engine.md §6b),
 * which is the only copy of its output: containers are created without a log driver. A job
 * with services or a dind sidecar gets its own labelled network (their names resolve on it);
 * any other job runs on the engine's default bridge. What the job created is removed at close,
 * also after errors.
 *
 * The parts: dockerexec-create.c (the setup: image, network, volumes, services, dind and the
 * job container with its options), dockerexec-upload.c (the agent and the workspace copied
 * in), dockerexec-close.c (the teardown), dockerexec-sweep.c (leftovers of dead owners). Here:
 * the job's lifecycle, the agent connection, archives during the job, adoption. */
#include "dockerexec-int.h"

#include "agentconn.h"
#include "docker.h"
#include "profile.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
on_hello_timer_closed(uv_handle_t *h)
{
    free(h);
}

/* The hello deadline is over (answered, failed or closing). The handle lives on its own until
 * libuv has closed it, so that the executor can be freed meanwhile. */
void
dockerexec_hello_stop(struct docker_exec *dx)
{
    if (dx->hello_timer == NULL)
        return;
    uv_close((uv_handle_t *)dx->hello_timer, on_hello_timer_closed);
    dx->hello_timer = NULL;
}

static void
report_ready(struct docker_exec *dx, int rc, const struct err *e)
{
    dockerexec_hello_stop(dx);
    if (dx->ready || dx->closing)
        return;
    if (rc == 0 && dx->svc_waiting) { /* the services come next */
        dx->agent_waiting = true;
        return;
    }
    dx->ready = rc == 0;
    log_trace("job container ready (rc %d)", rc);
    dx->x.cbs->on_ready(dx->x.arg, rc, e);
}

/* dockerexec-int.h */
void
dockerexec_ready(struct docker_exec *dx)
{
    report_ready(dx, 0, NULL);
}

void
dockerexec_services_ready(struct docker_exec *dx)
{
    if (dx->agent_waiting)
        report_ready(dx, 0, NULL);
}

void
dockerexec_fail(struct docker_exec *dx, const struct err *e)
{
    bool again = dx->failed;

    dx->failed = true; /* the setup's calls in flight may fail too: the first one is told */
    if (again) {
        dockerexec_hello_stop(dx);
        return;
    }
    report_ready(dx, e->code ? e->code : -EIO, e);
}

void
dockerexec_say(struct docker_exec *dx, const char *fmt, ...)
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

/* Every docker callback starts here: one call fewer in flight. True when the executor is
 * closing (the callback then only records what it created) and the close may go on. */
static bool
landed(struct docker_exec *dx)
{
    dx->pending--;
    return dx->closing;
}

/* Counts a started docker call (rc from the call). */
int
dockerexec_flying(struct docker_exec *dx, int rc)
{
    if (rc == 0)
        dx->pending++;
    return rc;
}

/* The common start of a docker callback: false when it must stop here (closing, which then
 * goes on; or the call failed, which fails the setup). */
bool
dockerexec_proceed(struct docker_exec *dx, const struct docker_res *res)
{
    if (landed(dx)) {
        dockerexec_close(&dx->x);
        return false;
    }
    if (res->rc < 0) {
        dockerexec_fail(dx, &res->err);
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
json_t *
dockerexec_job_labels(const struct docker_exec *dx)
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

    return dx->att && !dx->att_dead ? docker_attach_write(dx->att, p, n) : -EPIPE;
}

static void
on_agent_event(void *arg, const struct agentconn_event *ev)
{
    struct docker_exec *dx = arg;
    struct err e = {0};

    if (dx->closing)
        return;
    if (ev->kind != AGENTCONN_OUTPUT)
        log_trace("agent event %d (step %#x)", (int)ev->kind, ev->msg ? ev->msg->id : 0);
    if (!dx->ready) {
        switch (ev->kind) {
        case AGENTCONN_HELLO: {
            /* Is there a bash? (decides the default shell, as GitHub falls back to sh) And a
             * node, for node actions? Exit status bit 0: no bash, bit 1: no node; bit 2: the
             * directories the upload would have made (dirs_by_probe) could not be made. */
            static const char probe[] =
                "command -v bash >/dev/null 2>&1 || s=$((s + 1)); "
                "command -v node >/dev/null 2>&1 || s=$((s + 2)); exit $s";
            bool dirs = dx->dirs_by_probe;
            char *script = xasprintf(
                "s=0; %s%s%s%s", dirs ? "{ mkdir -p " FILE_DIR " && chmod 0777 " FILE_DIR : "",
                dirs && !(dx->bind && dx->source) ? " " WORKSPACE : "",
                dirs ? "; } >/dev/null 2>&1 || s=4; " : "", probe);
            const char *argv[] = {"/bin/sh", "-c", script};
            char *path = xasprintf("PATH=%s", dx->x.base_path ? dx->x.base_path : DEFAULT_PATH);
            const char *env[] = {path}; /* the PATH the steps get */
            struct agentconn_run r = {.step = PROBE_STEP, .argv = argv, .argc = 3, .env = env,
                                      .envc = 1};
            int rc = agentconn_run(dx->x.conn, &r, &e);
            free(path);
            free(script);
            if (rc < 0)
                dockerexec_fail(dx, &e);
            return;
        }
        case AGENTCONN_EXITED:
            if (ev->msg->id == PROBE_STEP) {
                dx->x.bash = (ev->msg->exit_code & 1) == 0;
                dx->x.node = (ev->msg->exit_code & 2) == 0 && ev->msg->exit_code < 8;
                if (dx->dirs_by_probe && (ev->msg->exit_code & 4 || ev->msg->exit_code >= 8))
                    dockerexec_upload_late(dx);
                else
                    report_ready(dx, 0, NULL);
            }
            return;
        case AGENTCONN_ERROR:
            if (ev->msg->id == PROBE_STEP) { /* no /bin/sh: no bash either */
                dx->x.bash = dx->x.node = false;
                if (dx->dirs_by_probe)
                    dockerexec_upload_late(dx);
                else
                    report_ready(dx, 0, NULL);
                return;
            }
            err_set(&e, ERR_PROTO, "the agent refused setup: %s", ev->msg->text ? ev->msg->text : "");
            dockerexec_fail(dx, &e);
            return;
        case AGENTCONN_PROTO_ERROR:
        case AGENTCONN_BYE:
            err_set(&e, ERR_PROTO, "the agent failed during setup");
            dockerexec_fail(dx, &e);
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
        if (dockerexec_fast_attach_output(dx, n))
            agentconn_feed(dx->x.conn, p, n);
    } else if (stream == 2) {
        char *t = xstrndup(p, n);
        size_t l = strlen(t);
        while (l && t[l - 1] == '\n')
            t[--l] = '\0';
        if (*t)
            dockerexec_say(dx, "agent: %s", t);
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
        dockerexec_fail(dx, &ee);
        return;
    }
    if (a != dx->att)
        return; /* an old stream, replaced by dockerexec_reattach() */
    dx->att_dead = true;
    /* The agent's last frames may still be on their way over the fast channel: its end (the
     * agent's exit) tells the job run. */
    if (dx->chan == DOCKEREXEC_CHAN_FAST)
        return;
    if (dx->lost_told)
        return;
    dx->lost_told = true;
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

/* Connects to the agent in the job container: a new agent connection over a new attach stream
 * (after the upload, when adopted, and when reattaching). */
int
dockerexec_attach(struct docker_exec *dx, struct err *e)
{
    struct agentconn_cbs cb = {.write = att_write, .on_event = on_agent_event};

    dx->x.conn = agentconn_new(&cb, dx);
    return docker_attach(dx->d, dx->ctr_id, &att_cbs, dx, &dx->att, e);
}

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
        dockerexec_fail(dx, &e);
        return;
    }
    if (!dockerexec_proceed(dx, res))
        return;
    if (dx->att_ended) {
        dockerexec_fail(dx, &dx->att_err);
        return;
    }
    dockerexec_say(dx, "started container %.12s", dx->ctr_id);
    if (agentconn_hello(dx->x.conn, &e) < 0)
        dockerexec_fail(dx, &e);
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
    dockerexec_fail(dx, &e);
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
            dockerexec_say(dx, "reattached to container %.12s at offset %llu", dx->ctr_id,
                           (unsigned long long)dx->resume_from);
        }
        return;
    }
    dx->att_up = true;
    log_trace("attach stream up");
    dockerexec_start(dx);
}

void
dockerexec_created(struct docker_exec *dx)
{
    struct err e = {0};

    if (dockerexec_attach(dx, &e) < 0) {
        dockerexec_fail(dx, &e);
        return;
    }
    dockerexec_upload_put(dx);
}

void
dockerexec_start(struct docker_exec *dx)
{
    struct err e = {0};

    if (!dx->uploaded || !dx->att_up || dx->starting || dx->closing || dx->failed ||
        (dx->svc_waiting && !dx->svc_started))
        return;
    if (dockerexec_flying(dx, docker_container_start(dx->d, dx->ctr_id, on_started, dx, &e)) < 0) {
        dockerexec_fail(dx, &e);
        return;
    }
    dx->starting = true;
    dx->hello_timer = xmalloc(sizeof *dx->hello_timer);
    uv_timer_init(dx->x.loop, dx->hello_timer);
    dx->hello_timer->data = dx;
    uv_timer_start(dx->hello_timer, on_hello_timeout, HELLO_TIMEOUT_MS, 0);
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
    (void)job;
    return dockerexec_attach((struct docker_exec *)x, e);
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
        dockerexec_close(&dx->x);
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
    if (dockerexec_flying(dx, docker_archive_put(dx->d, dx->ctr_id, dest, tar, len, on_put, p,
                                                 e)) < 0) {
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
        dockerexec_close(&dx->x);
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
    if (dockerexec_flying(dx, docker_archive_get(dx->d, dx->ctr_id, path, on_get, g, e)) < 0) {
        free(g);
        return e->code ? e->code : -EIO;
    }
    return 0;
}

static const struct executor_ops docker_ops = {
    .name = "docker",
    .setup = dockerexec_setup,
    .close = dockerexec_close,
    .describe = dx_describe,
    .put_archive = dx_put_archive,
    .get_archive = dx_get_archive,
};

static const struct executor_ops docker_adopt_ops = {
    .name = "docker",
    .setup = dx_adopt_setup,
    .close = dockerexec_close,
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
    dx->x.network = xstrdup(DOCKEREXEC_NET(dx));
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

json_t *
dockerexec_step_labels(const struct executor *x)
{
    json_t *l = dockerexec_job_labels((const struct docker_exec *)x);

    json_object_set_new(l, DOCKER_LABEL_ROLE, json_string("step"));
    return l;
}

int
dockerexec_reattach(struct executor *x, struct err *e)
{
    struct docker_exec *dx = (struct docker_exec *)x;

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
    /* The new stream is the attach stream: the agent goes back to stdout when its channel
     * closes, and the RESUME says where from. */
    dockerexec_fast_close(dx);
    dx->att_dead = dx->lost_told = false;
    dx->reattaching = true;
    return dockerexec_attach(dx, e);
}
