/* services.c: service containers for a job. All services go through resolve -> create ->
 * start in parallel; once all are started, a uv_timer polls inspect (SETTLE_MS after the
 * start, then at growing intervals) for each service not yet ready (running without a health
 * check, or Health.Status healthy). Every Docker call in flight is counted in pending; stop
 * waits for it to reach zero before removing, so nothing created can escape the removal. */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dockeropts.h"
#include "logline.h"
#include "profile.h"
#include "runner/xalloc.h"
#include "services.h"

struct svc {
    struct services *s;
    char *id, *image, *name, *cid;
    json_t *body;
    struct docker_auth auth;
    bool has_auth;
    bool ready;
    json_t *ports; /* {"5432": "49153"} from the last inspect */
};

enum phase { PH_STARTING, PH_WAITING, PH_DONE, PH_STOPPING, PH_REMOVING };

struct services {
    uv_loop_t *loop;
    struct docker *d;
    uv_timer_t timer;
    struct svc *v;
    size_t n;
    char *network;
    bool allow_pull;
    long timeout_ms, poll_ms;
    long next_ms;        /* the next poll's delay: from POLL_NEXT_MS, doubling up to poll_ms */
    uint64_t deadline;
    void (*log)(const char *line, void *arg);
    void (*on_started)(void *arg);
    void *log_arg;
    enum phase phase;
    int pending;
    size_t started;
    int rc; /* first start failure */
    struct err err;
    int stop_rc;
    struct err stop_err;
    bool start_reported, closing;
    services_start_cb start_cb;
    void *start_arg;
    services_stop_cb stop_cb;
    void *stop_arg;
};

static void check(struct services *s);

/* The health polls: the first SETTLE_MS after the start, then after 50 ms, doubling up to
 * poll_ms. A service without a health check is ready when it still runs at a poll: SETTLE_MS
 * gives one that exits at once (a bad command, a missing file) the time to be seen exited. */
#define SETTLE_MS 300
#define POLL_NEXT_MS 50

/* A progress line for the caller (cfg->log). */
#define slog(s, ...) logline((s)->log, (s)->log_arg, __VA_ARGS__)

static void
sfail(struct services *s, int rc, const struct err *e, const char *sid)
{
    if (s->rc < 0)
        return;
    s->rc = rc;
    if (e && e->msg[0])
        s->err = *e;
    else
        err_set(&s->err, rc, "failed (%d)", rc);
    if (sid)
        err_prefix(&s->err, "service '%s': ", sid);
    s->err.code = rc;
}

/* A docker callback of service v: one call fewer in flight; false when the call failed (the
 * service's failure is recorded). */
static bool
landed(struct svc *v, const struct docker_res *res)
{
    v->s->pending--;
    if (res->rc < 0) {
        sfail(v->s, res->rc, &res->err, v->id);
        return false;
    }
    return true;
}

/* Counts a docker call started for service v, or records its failure (rc < 0, e); returns rc. */
static int
flying(struct svc *v, int rc, const struct err *e)
{
    if (rc < 0)
        sfail(v->s, e->code, e, v->id);
    else
        v->s->pending++;
    return rc;
}

/* ---- building the create bodies ---------------------------------------------------------- */

static char *
container_name(const char *job, const char *id)
{
    char *suffix = xasprintf("-%s", id), *n = docker_object_name(job, suffix);

    free(suffix);
    return n;
}

/* Adds one "ip:host:container[/proto]" entry to ExposedPorts and PortBindings. */
static int
add_port(json_t *body, json_t *hc, const char *sid, const char *p, struct err *e)
{
    char *dup = xstrdup(p), *parts[3] = {0}, *key = NULL, *cport;
    const char *proto = "tcp";
    size_t np = 0;
    int rc = 0;
    json_t *pb, *binding;

    for (char *tok = dup, *c;; tok = c + 1) {
        c = strchr(tok, ':');
        if (np == 3) {
            np = 4; /* too many parts */
            break;
        }
        parts[np++] = tok;
        if (!c)
            break;
        *c = '\0';
    }
    cport = parts[np > 3 ? 2 : np - 1];
    {
        char *slash = strchr(cport, '/');

        if (slash) {
            *slash = '\0';
            proto = slash + 1;
        }
    }
    if (np > 3 || !*cport || strspn(cport, "0123456789-") != strlen(cport) ||
        (strcmp(proto, "tcp") && strcmp(proto, "udp") && strcmp(proto, "sctp")) ||
        (np >= 2 && strspn(parts[np - 2], "0123456789-") != strlen(parts[np - 2]))) {
        rc = err_set(e, ERR_INVALID, "services.%s.ports: invalid port '%s'", sid, p);
        goto out;
    }
    key = xasprintf("%s/%s", cport, proto);
    json_object_set_new(json_object_get(body, "ExposedPorts"), key, json_object());
    pb = json_object_get(hc, "PortBindings");
    binding = json_object_get(pb, key);
    if (!binding) {
        binding = json_array();
        json_object_set_new(pb, key, binding);
    }
    json_array_append_new(binding, json_pack("{s:s,s:s}", "HostIp", np == 3 ? parts[0] : "",
                                             "HostPort", np >= 2 ? parts[np - 2] : ""));
out:
    free(key);
    free(dup);
    return rc;
}

static int
add_volume(const struct services_config *cfg, json_t *body, json_t *hc, const char *sid,
           const char *vol, struct err *e)
{
    int rc;

    if (cfg->validate_volume) {
        rc = cfg->validate_volume(vol, cfg->arg, e);
        if (rc < 0) {
            err_prefix(e, "services.%s.volumes: ", sid);
            return rc;
        }
    }
    if (!*vol)
        return err_set(e, ERR_INVALID, "services.%s.volumes: empty volume", sid);
    if (strchr(vol, ':') && cfg->mount_volume) {
        json_t *m = NULL, *ms = json_object_get(hc, "Mounts");

        rc = cfg->mount_volume(vol, cfg->arg, &m, e);
        if (rc < 0) {
            err_prefix(e, "services.%s.volumes: ", sid);
            return rc;
        }
        if (!json_is_array(ms)) {
            ms = json_array();
            json_object_set_new(hc, "Mounts", ms);
        }
        json_array_append_new(ms, m);
        return 0;
    }
    if (strchr(vol, ':')) {
        json_t *b = json_object_get(hc, "Binds");

        if (!b) {
            b = json_array();
            json_object_set_new(hc, "Binds", b);
        }
        json_array_append_new(b, json_string(vol));
    } else {
        json_t *v = json_object_get(body, "Volumes");

        if (!v) {
            v = json_object();
            json_object_set_new(body, "Volumes", v);
        }
        json_object_set_new(v, vol, json_object());
    }
    return 0;
}

static const char *
registry_of(const char *image, char *buf, size_t len)
{
    const char *slash = strchr(image, '/');
    size_t n;

    if (!slash)
        return NULL;
    n = (size_t)(slash - image);
    if (!memchr(image, '.', n) && !memchr(image, ':', n) &&
        !(n == 9 && strncmp(image, "localhost", 9) == 0))
        return NULL;
    snprintf(buf, len, "%.*s", (int)n, image);
    return buf;
}

static int
build(struct services *s, const struct services_config *cfg, const struct services_def *def,
      struct svc *v, struct err *e)
{
    struct dockeropts o = {0};
    struct docker_container_spec spec = {0};
    char **env = NULL, *what = xasprintf("services.%s.options", def->id);
    size_t nenv = 0;
    json_t *labels = NULL, *hc, *val;
    const char *k;
    char reg[256];
    int rc;

    v->s = s;
    v->id = xstrdup(def->id);
    v->image = xstrdup(def->image);
    v->name = cfg->job_name ? container_name(cfg->job_name, def->id) : NULL;
    v->ports = json_object();
    rc = dockeropts_parse(def->options, what,
                          cfg->allow_privileged ? DOCKEROPTS_ALLOW_PRIVILEGED : 0, &o, e);
    if (rc == 0)
        rc = profile_check_caps(cfg->limits, &o, what, e);
    if (rc < 0)
        goto out;
    env = xcalloc(json_object_size(def->env) + 1, sizeof *env);
    json_object_foreach(def->env, k, val) {
        if (json_is_string(val))
            env[nenv++] = xasprintf("%s=%s", k, json_string_value(val));
        else if (json_is_integer(val))
            env[nenv++] = xasprintf("%s=%lld", k, (long long)json_integer_value(val));
        else if (json_is_real(val))
            env[nenv++] = xasprintf("%s=%g", k, json_real_value(val));
        else if (json_is_boolean(val))
            env[nenv++] = xasprintf("%s=%s", k, json_is_true(val) ? "true" : "false");
        else if (json_is_null(val))
            env[nenv++] = xasprintf("%s=", k);
        else {
            rc = err_set(e, ERR_INVALID, "services.%s.env.%s: expected a string", def->id, k);
            goto out;
        }
    }
    labels = cfg->labels ? json_deep_copy(cfg->labels) : json_object();
    json_object_set_new(labels, DOCKER_LABEL_ROLE, json_string("service"));
    spec.image = def->image;
    spec.cmd = def->cmd;
    spec.entrypoint = def->entrypoint;
    spec.env = (const char *const *)env;
    spec.labels = labels;
    spec.network_mode = cfg->network;
    spec.network_alias = def->id;
    /* Nothing reads a service's output (a failed health check's text comes from inspect's
     * State.Health.Log): no unmasked copy of it on the engine's disk. */
    spec.log_none = true;
    v->body = docker_container_spec_json(&spec);
    hc = json_object_get(v->body, "HostConfig");
    json_object_set_new(v->body, "ExposedPorts", json_object());
    json_object_set_new(hc, "PortBindings", json_object());
    for (size_t i = 0; def->ports && def->ports[i]; i++) {
        rc = add_port(v->body, hc, def->id, def->ports[i], e);
        if (rc < 0)
            goto out;
    }
    for (size_t i = 0; def->volumes && def->volumes[i]; i++) {
        rc = add_volume(cfg, v->body, hc, def->id, def->volumes[i], e);
        if (rc < 0)
            goto out;
    }
    for (size_t i = 0; i < o.nvolumes; i++) {
        rc = add_volume(cfg, v->body, hc, def->id, o.volumes[i], e);
        if (rc < 0)
            goto out;
    }
    dockeropts_merge(v->body, &o);
    /* After the options, so that no service lifts the label's limits. */
    profile_apply_limits(cfg->limits, json_object_get(v->body, "HostConfig"));
    profile_apply_caps(cfg->limits, json_object_get(v->body, "HostConfig"));
    if (def->username && def->password) {
        v->has_auth = true;
        v->auth.username = xstrdup(def->username);
        v->auth.password = xstrdup(def->password);
        if (registry_of(def->image, reg, sizeof reg))
            v->auth.serveraddress = xstrdup(reg);
    }
out:
    dockeropts_free(&o);
    if (env)
        for (size_t i = 0; i < nenv; i++)
            free(env[i]);
    free(env);
    json_decref(labels);
    free(what);
    return rc;
}

static void
svc_free(struct svc *v)
{
    free(v->id);
    free(v->image);
    free(v->name);
    free(v->cid);
    json_decref(v->body);
    json_decref(v->ports);
    docker_auth_free(&v->auth);
}

static void
services_free(struct services *s)
{
    for (size_t i = 0; i < s->n; i++)
        svc_free(&s->v[i]);
    free(s->v);
    free(s->network);
    free(s);
}

/* ---- health polling ---------------------------------------------------------------------- */

static void
read_ports(struct svc *v, json_t *ins)
{
    json_t *ports = json_object_get(json_object_get(ins, "NetworkSettings"), "Ports");
    const char *k;
    json_t *bind;

    json_object_foreach(ports, k, bind) {
        json_t *hp = json_object_get(json_array_get(bind, 0), "HostPort");
        size_t kl = strlen(k);
        char *key;

        if (!json_is_string(hp))
            continue;
        key = kl > 4 && strcmp(k + kl - 4, "/tcp") == 0 ? xstrndup(k, kl - 4) : xstrdup(k);
        json_object_set_new(v->ports, key, json_string(json_string_value(hp)));
        free(key);
    }
}

static void
on_inspect(const struct docker_res *res, void *arg)
{
    struct svc *v = arg;
    struct services *s = v->s;
    json_t *state, *health;
    const char *status, *hs;
    struct err e = {0};

    if (!landed(v, res))
        goto out;
    if (s->phase != PH_WAITING)
        goto out;
    state = json_object_get(res->json, "State");
    status = json_string_value(json_object_get(state, "Status"));
    health = json_object_get(state, "Health");
    hs = json_string_value(json_object_get(health, "Status"));
    read_ports(v, res->json);
    if (!status || strcmp(status, "exited") == 0 || strcmp(status, "dead") == 0) {
        err_set(&e, -EIO, "the container exited with code %lld before it was ready",
                (long long)json_integer_value(json_object_get(state, "ExitCode")));
        sfail(s, -EIO, &e, v->id);
    } else if (!hs) {
        if (strcmp(status, "running") == 0) {
            v->ready = true;
            slog(s, "service '%s' is running (no health check)", v->id);
        }
    } else if (strcmp(hs, "healthy") == 0) {
        v->ready = true;
        slog(s, "service '%s' is healthy", v->id);
    } else if (strcmp(hs, "unhealthy") == 0) {
        json_t *logs = json_object_get(health, "Log");
        const char *out = json_string_value(
            json_object_get(json_array_get(logs, json_array_size(logs) - 1), "Output"));
        char last[128] = "";

        if (out) {
            snprintf(last, sizeof last, "%s", out);
            for (char *p = last; *p; p++)
                if ((unsigned char)*p < 0x20)
                    *p = ' ';
        }
        err_set(&e, -EIO, "the container is unhealthy%s%s", last[0] ? ": " : "", last);
        sfail(s, -EIO, &e, v->id);
    }
out:
    check(s);
}

static void
on_poll(uv_timer_t *t)
{
    struct services *s = t->data;
    struct err e = {0};

    if (s->phase != PH_WAITING)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct svc *v = &s->v[i];

        if (v->ready)
            continue;
        if (flying(v, docker_container_inspect(s->d, v->cid, on_inspect, v, &e), &e) < 0)
            break;
    }
    check(s);
}

/* ---- start ------------------------------------------------------------------------------- */

static void
on_started(const struct docker_res *res, void *arg)
{
    struct svc *v = arg;
    struct services *s = v->s;

    if (landed(v, res)) {
        s->started++;
        slog(s, "service '%s': started container %.12s", v->id, v->cid);
    }
    check(s);
}

static void
on_created(const struct docker_res *res, void *arg)
{
    struct svc *v = arg;
    struct services *s = v->s;
    struct err e = {0};

    if (landed(v, res)) {
        v->cid = xstrdup(res->id);
        slog(s, "service '%s': created container %.12s%s%s", v->id, v->cid,
             v->name ? " " : "", v->name ? v->name : "");
        if (s->phase == PH_STARTING && s->rc == 0)
            flying(v, docker_container_start(s->d, v->cid, on_started, v, &e), &e);
    }
    check(s);
}

static void
on_resolved(const struct docker_res *res, void *arg)
{
    struct svc *v = arg;
    struct services *s = v->s;
    struct err e = {0};

    if (landed(v, res) && s->phase == PH_STARTING && s->rc == 0) {
        slog(s, "service '%s': image %s is %s", v->id, v->image, res->id);
        json_object_set_new(v->body, "Image", json_string(res->id));
        flying(v, docker_container_create(s->d, v->name, v->body, on_created, v, &e), &e);
    }
    check(s);
}

static void
report_start(struct services *s)
{
    struct err e = s->err;
    int rc = s->rc;

    s->start_reported = true;
    if (s->phase == PH_STOPPING && rc == 0) {
        rc = ERR_CANCELED;
        err_set(&e, rc, "services: canceled");
    }
    if (s->phase != PH_STOPPING && s->phase != PH_REMOVING)
        s->phase = PH_DONE;
    uv_timer_stop(&s->timer);
    s->start_cb(s, rc, &e, s->start_arg);
}

/* ---- stop -------------------------------------------------------------------------------- */

static void
on_closed(uv_handle_t *h)
{
    struct services *s = h->data;
    services_stop_cb cb = s->stop_cb;
    void *arg = s->stop_arg;
    int rc = s->stop_rc;
    struct err e = s->stop_err;

    services_free(s);
    cb(rc, &e, arg);
}

static void
on_removed(const struct docker_res *res, void *arg)
{
    struct svc *v = arg;
    struct services *s = v->s;

    s->pending--;
    if (res->rc < 0 && res->rc != ERR_NOTFOUND && s->stop_rc == 0) {
        s->stop_rc = res->rc;
        s->stop_err = res->err;
        err_prefix(&s->stop_err, "service '%s': ", v->id);
    } else if (res->rc == 0) {
        slog(s, "service '%s': removed container %.12s", v->id, v->cid);
    }
    check(s);
}

static void
start_removal(struct services *s)
{
    struct err e = {0};

    s->phase = PH_REMOVING;
    for (size_t i = 0; i < s->n; i++) {
        struct svc *v = &s->v[i];

        if (!v->cid)
            continue;
        if (docker_container_remove(s->d, v->cid, true, true, on_removed, v, &e) < 0) {
            if (s->stop_rc == 0) {
                s->stop_rc = e.code;
                s->stop_err = e;
            }
        } else {
            s->pending++;
        }
    }
}

static void
close_all(struct services *s)
{
    s->closing = true;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

/* Moves things on after every callback. A user callback is always the last thing done. */
static void
check(struct services *s)
{
    if (s->pending > 0 || s->closing)
        return;
    switch (s->phase) {
    case PH_STARTING:
        if (s->rc < 0) {
            report_start(s);
            return;
        }
        if (s->started == s->n) {
            s->phase = PH_WAITING;
            for (size_t i = 0; i < s->n; i++)
                slog(s, "waiting for service '%s'", s->v[i].id);
            s->deadline = uv_now(s->loop) + (uint64_t)s->timeout_ms;
            s->next_ms = POLL_NEXT_MS;
            uv_timer_start(&s->timer, on_poll, SETTLE_MS, 0);
            if (s->on_started)
                s->on_started(s->log_arg);
        }
        return;
    case PH_WAITING: {
        bool all = true;

        if (s->rc < 0) {
            report_start(s);
            return;
        }
        for (size_t i = 0; i < s->n; i++)
            all = all && s->v[i].ready;
        if (all) {
            report_start(s);
            return;
        }
        if (uv_now(s->loop) >= s->deadline) {
            struct err e = {0};

            for (size_t i = 0; i < s->n; i++)
                if (!s->v[i].ready) {
                    err_set(&e, ERR_TIMEOUT, "not healthy after %ld s", s->timeout_ms / 1000);
                    sfail(s, ERR_TIMEOUT, &e, s->v[i].id);
                    break;
                }
            report_start(s);
            return;
        }
        uv_timer_start(&s->timer, on_poll, (uint64_t)(s->next_ms < s->poll_ms ? s->next_ms
                                                                               : s->poll_ms), 0);
        s->next_ms *= 2;
        return;
    }
    case PH_DONE: return;
    case PH_STOPPING:
        if (!s->start_reported)
            report_start(s); /* s stays valid: only services_stop() frees it, once */
        start_removal(s);
        if (s->pending == 0)
            close_all(s);
        return;
    case PH_REMOVING:
        close_all(s);
        return;
    }
}

static void
on_kick(uv_timer_t *t)
{
    struct services *s = t->data;

    check(s);
}

int
services_start(uv_loop_t *loop, const struct services_config *cfg,
               const struct services_def *defs, size_t n, services_start_cb done, void *arg,
               struct services **out, struct err *e)
{
    struct services *s = xcalloc(1, sizeof *s);
    int rc = 0;

    *out = NULL;
    s->loop = loop;
    s->d = cfg->d;
    s->network = cfg->network ? xstrdup(cfg->network) : NULL;
    s->allow_pull = cfg->allow_pull;
    s->timeout_ms = cfg->health_timeout_ms > 0 ? cfg->health_timeout_ms : 5 * 60 * 1000;
    s->poll_ms = cfg->poll_ms > 0 ? cfg->poll_ms : 1000;
    s->log = cfg->log;
    s->on_started = cfg->on_started;
    s->log_arg = cfg->arg;
    s->start_cb = done;
    s->start_arg = arg;
    s->v = xcalloc(n ? n : 1, sizeof *s->v);
    for (size_t i = 0; i < n; i++) {
        if (!defs[i].id || !*defs[i].id || !defs[i].image || !*defs[i].image) {
            s->n = i;
            rc = err_set(e, ERR_INVALID, "services.%s: no image",
                         defs[i].id ? defs[i].id : "?");
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(defs[i].id, defs[j].id) == 0) {
                s->n = i;
                rc = err_set(e, ERR_INVALID, "services.%s: duplicate service id", defs[i].id);
                goto fail;
            }
        rc = build(s, cfg, &defs[i], &s->v[i], e);
        s->n = i + 1;
        if (rc < 0)
            goto fail;
    }
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    for (size_t i = 0; i < n; i++) {
        struct svc *v = &s->v[i];
        struct err ce = {0};

        slog(s, "service '%s': resolving image %s", v->id, v->image);
        if (docker_image_resolve(s->d, v->image, NULL, s->allow_pull,
                                 v->has_auth ? &v->auth : NULL, on_resolved, v, &ce) < 0)
            sfail(s, ce.code, &ce, v->id);
        else
            s->pending++;
    }
    if (s->pending == 0) /* nothing started (n == 0, or every call refused): report from loop */
        uv_timer_start(&s->timer, on_kick, 0, 0);
    *out = s;
    return 0;
fail:
    services_free(s);
    return rc;
}

void
services_stop(struct services *s, services_stop_cb done, void *arg)
{
    s->stop_cb = done;
    s->stop_arg = arg;
    s->phase = PH_STOPPING;
    uv_timer_stop(&s->timer);
    if (s->pending == 0)
        uv_timer_start(&s->timer, on_kick, 0, 0); /* never call done from inside stop */
}

json_t *
services_context(const struct services *s)
{
    json_t *ctx = json_object();

    for (size_t i = 0; i < s->n; i++) {
        const struct svc *v = &s->v[i];

        json_object_set_new(ctx, v->id,
                            json_pack("{s:s?,s:s?,s:O}", "id", v->cid, "network", s->network,
                                      "ports", v->ports));
    }
    return ctx;
}
