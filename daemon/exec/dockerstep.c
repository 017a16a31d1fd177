/* dockerstep.c: a container run as a step. States: resolve -> create -> attach -> start -> wait
 * (+ the attach stream ending) -> remove -> on_done. Every Docker call in flight is counted, so
 * the object is freed only once nothing can call back into it. The wait is issued after start
 * with condition not-running, which returns at once for a container that already exited. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dockerstep.h"
#include "logline.h"
#include "profile.h"
#include "runner/xalloc.h"

struct dockerstep {
    uv_loop_t *loop;
    struct docker *d;
    uv_timer_t timer; /* SIGKILL after the grace */
    json_t *body;     /* create body (Image filled in after resolve) */
    char *name, *image, *expect_id;
    struct docker_auth auth;
    bool has_auth;
    bool allow_pull;
    long grace_ms;
    char *id; /* container Id once created */
    struct docker_attach *att;
    int pending;   /* Docker calls in flight */
    bool canceled; /* dockerstep_cancel() was called */
    bool starting, started, waited, att_ended;
    bool tearing, closing;
    int rc;
    struct err err;
    long long exit_code;
    struct dockerstep_cbs cbs;
    void *arg;
};

static void teardown(struct dockerstep *s);

/* A progress line for the caller (cbs.on_log). */
#define logf_(s, ...) logline((s)->cbs.on_log, (s)->arg, __VA_ARGS__)

/* Records the first failure. */
static void
fail(struct dockerstep *s, int rc, const struct err *e)
{
    if (s->rc < 0)
        return;
    s->rc = rc;
    if (e && e->msg[0])
        s->err = *e;
    else
        err_set(&s->err, rc, "docker step failed (%d)", rc);
    s->err.code = rc;
}

/* A docker callback's start: one call fewer in flight; false when the call failed (the step
 * then fails and is torn down). */
static bool
landed(struct dockerstep *s, const struct docker_res *res)
{
    s->pending--;
    if (res->rc < 0) {
        fail(s, res->rc, &res->err);
        teardown(s);
        return false;
    }
    return true;
}

/* Counts a started docker call (rc from the call); one that did not start fails the step and
 * tears it down. Returns rc. */
static int
flying(struct dockerstep *s, int rc, const struct err *e)
{
    if (rc < 0) {
        fail(s, e->code, e);
        teardown(s);
    } else {
        s->pending++;
    }
    return rc;
}

static void
free_step(struct dockerstep *s)
{
    json_decref(s->body);
    free(s->name);
    free(s->image);
    free(s->expect_id);
    docker_auth_free(&s->auth);
    free(s->id);
    free(s);
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct dockerstep *s = h->data;
    struct dockerstep_cbs cbs = s->cbs;
    void *arg = s->arg;
    int rc = s->rc;
    long long code = s->exit_code;
    struct err e = s->err;

    if (rc == 0 && s->canceled) {
        rc = ERR_CANCELED;
        err_set(&e, ERR_CANCELED, "docker step canceled");
    }
    free_step(s);
    cbs.on_done(rc, code, &e, arg);
}

static void
maybe_finish(struct dockerstep *s)
{
    if (!s->tearing || s->pending > 0 || s->closing)
        return;
    s->closing = true;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void
on_removed(const struct docker_res *res, void *arg)
{
    struct dockerstep *s = arg;

    s->pending--;
    if (res->rc < 0 && res->rc != ERR_NOTFOUND)
        fail(s, res->rc, &res->err);
    else
        logf_(s, "removed container %.12s", s->id);
    maybe_finish(s);
}

/* Closes the stream and removes the container (if any); on_done follows. */
static void
teardown(struct dockerstep *s)
{
    struct err e = {0};

    if (s->tearing)
        return;
    s->tearing = true;
    uv_timer_stop(&s->timer);
    if (s->att) {
        docker_attach_close(s->att);
        s->att = NULL;
    }
    if (s->id) /* (flying()'s teardown returns at once: s->tearing) */
        flying(s, docker_container_remove(s->d, s->id, true, true, on_removed, s, &e), &e);
    maybe_finish(s);
}

static void
maybe_done_running(struct dockerstep *s)
{
    if (s->waited && s->att_ended)
        teardown(s);
}

static void
on_killed(const struct docker_res *res, void *arg)
{
    struct dockerstep *s = arg;

    (void)res; /* 409 (not running any more) and the like are fine: the wait ends it */
    s->pending--;
    maybe_finish(s);
}

static void
send_kill(struct dockerstep *s, const char *sig)
{
    struct err e;

    if (!s->id || s->tearing)
        return;
    if (docker_container_kill(s->d, s->id, sig, on_killed, s, &e) == 0)
        s->pending++;
}

static void
on_grace(uv_timer_t *t)
{
    struct dockerstep *s = t->data;

    logf_(s, "container %.12s did not stop after SIGTERM: SIGKILL", s->id);
    send_kill(s, "SIGKILL");
}

static void
kill_running(struct dockerstep *s)
{
    send_kill(s, "SIGTERM");
    uv_timer_start(&s->timer, on_grace, (uint64_t)s->grace_ms, 0);
}

static void
on_waited(const struct docker_res *res, void *arg)
{
    struct dockerstep *s = arg;

    s->pending--;
    s->waited = true;
    if (res->rc < 0) {
        fail(s, res->rc, &res->err);
        teardown(s);
    } else {
        s->exit_code = res->exit_code;
        uv_timer_stop(&s->timer);
        maybe_done_running(s);
    }
    maybe_finish(s);
}

static void
on_started(const struct docker_res *res, void *arg)
{
    struct dockerstep *s = arg;
    struct err e = {0};

    s->starting = false;
    if (!landed(s, res))
        return;
    s->started = true;
    if (s->tearing) {
        maybe_finish(s);
        return;
    }
    if (flying(s, docker_container_wait(s->d, s->id, "not-running", on_waited, s, &e), &e) < 0)
        return;
    if (s->canceled)
        kill_running(s);
}

static void
on_att_ready(struct docker_attach *a, void *arg)
{
    struct dockerstep *s = arg;
    struct err e = {0};

    (void)a;
    if (s->canceled) {
        teardown(s);
        return;
    }
    if (flying(s, docker_container_start(s->d, s->id, on_started, s, &e), &e) < 0)
        return;
    s->starting = true;
}

static void
on_att_output(struct docker_attach *a, int stream, const char *p, size_t n, void *arg)
{
    struct dockerstep *s = arg;

    (void)a;
    if (s->cbs.on_output && !s->tearing)
        s->cbs.on_output(stream, p, n, s->arg);
}

static void
on_att_end(struct docker_attach *a, int rc, const struct err *e, void *arg)
{
    struct dockerstep *s = arg;

    (void)a;
    s->att_ended = true;
    if (rc < 0 && !s->canceled) {
        fail(s, rc, e);
        teardown(s);
        return;
    }
    if (s->starting)
        return; /* on_started decides: a fast exit, or the start failed */
    if (!s->started) {
        /* the stream ended before we started the container: nothing will run */
        if (!s->canceled) {
            struct err pe;

            err_set(&pe, ERR_PROTO, "container %.12s: the attach stream ended before start",
                    s->id);
            fail(s, ERR_PROTO, &pe);
        }
        teardown(s);
        return;
    }
    maybe_done_running(s);
}

static const struct docker_attach_cbs att_cbs = {
    .on_ready = on_att_ready,
    .on_output = on_att_output,
    .on_end = on_att_end,
};

static void
on_created(const struct docker_res *res, void *arg)
{
    struct dockerstep *s = arg;
    struct err e = {0};

    if (!landed(s, res))
        return;
    s->id = xstrdup(res->id);
    logf_(s, "created container %.12s", s->id);
    if (s->canceled) {
        teardown(s);
        return;
    }
    if (docker_attach(s->d, s->id, &att_cbs, s, &s->att, &e) < 0) {
        s->att = NULL;
        fail(s, e.code, &e);
        teardown(s);
    }
}

static void
on_resolved(const struct docker_res *res, void *arg)
{
    struct dockerstep *s = arg;
    struct err e = {0};

    if (!landed(s, res))
        return;
    if (s->canceled) {
        teardown(s);
        return;
    }
    logf_(s, "image %s: %s", s->image, res->id);
    json_object_set_new(s->body, "Image", json_string(res->id));
    flying(s, docker_container_create(s->d, s->name, s->body, on_created, s, &e), &e);
}

static char *
dupn(const char *p)
{
    return p ? xstrdup(p) : NULL;
}

int
dockerstep_run(uv_loop_t *loop, struct docker *d, const struct dockerstep_opts *o,
               const struct dockerstep_cbs *cbs, void *arg, struct dockerstep **out,
               struct err *e)
{
    struct dockerstep *s;
    json_t *labels;
    struct docker_container_spec spec = {0};
    int rc;

    if (out)
        *out = NULL;
    if (!o->image || !*o->image)
        return err_set(e, ERR_INVALID, "docker step: no image");
    if (!cbs || !cbs->on_done)
        return err_set(e, -EINVAL, "docker step: no on_done callback");
    s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->d = d;
    s->cbs = *cbs;
    s->arg = arg;
    s->grace_ms = o->kill_grace_ms > 0 ? o->kill_grace_ms : 10000;
    s->exit_code = -1;
    s->name = dupn(o->name);
    s->image = xstrdup(o->image);
    s->expect_id = dupn(o->expect_id);
    s->allow_pull = o->allow_pull;
    if (o->auth) {
        s->has_auth = true;
        docker_auth_copy(&s->auth, o->auth);
    }
    labels = o->labels ? json_deep_copy(o->labels) : json_object();
    json_object_set_new(labels, DOCKER_LABEL_ROLE, json_string("step"));
    spec.image = o->image;
    spec.entrypoint = o->entrypoint;
    spec.cmd = o->cmd;
    spec.env = o->env;
    spec.workdir = o->workdir;
    spec.user = o->user;
    spec.labels = labels;
    spec.attach_output = true;
    spec.binds = o->binds;
    spec.network_mode = o->network;
    spec.log_none = true; /* its output comes through attach, masked; none on the engine's disk */
    s->body = docker_container_spec_json(&spec);
    profile_apply_limits(o->limits, json_object_get(s->body, "HostConfig"));
    profile_apply_caps(o->limits, json_object_get(s->body, "HostConfig"));
    json_decref(labels);

    rc = docker_image_resolve(d, s->image, s->expect_id, s->allow_pull,
                              s->has_auth ? &s->auth : NULL, on_resolved, s, e);
    if (rc < 0) {
        free_step(s);
        return rc;
    }
    s->pending++;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    if (out)
        *out = s;
    return 0;
}

void
dockerstep_cancel(struct dockerstep *s)
{
    if (!s || s->canceled || s->tearing)
        return;
    s->canceled = true;
    if (s->started && !s->waited)
        kill_running(s);
    /* otherwise the next callback sees the flag and tears down */
}
