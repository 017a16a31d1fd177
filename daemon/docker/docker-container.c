/* docker-container.c: containers, archives, networks, volumes and the label sweep. */
#include "docker-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/xalloc.h"

/* ---- create bodies ----------------------------------------------------------------------- */

static json_t *
strv_json(const char *const *v)
{
    json_t *a = json_array();

    for (; v && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

json_t *
docker_labels_new(const char *runner, const char *job)
{
    json_t *l = json_object();

    json_object_set_new(l, DOCKER_LABEL_MANAGED, json_string("1"));
    if (runner)
        json_object_set_new(l, DOCKER_LABEL_RUNNER, json_string(runner));
    if (job)
        json_object_set_new(l, DOCKER_LABEL_JOB, json_string(job));
    return l;
}

json_t *
docker_container_spec_json(const struct docker_container_spec *s)
{
    json_t *j = json_object(), *hc = json_object();

    if (s->image)
        json_object_set_new(j, "Image", json_string(s->image));
    if (s->entrypoint)
        json_object_set_new(j, "Entrypoint", strv_json(s->entrypoint));
    if (s->cmd)
        json_object_set_new(j, "Cmd", strv_json(s->cmd));
    if (s->env)
        json_object_set_new(j, "Env", strv_json(s->env));
    if (s->workdir)
        json_object_set_new(j, "WorkingDir", json_string(s->workdir));
    if (s->user)
        json_object_set_new(j, "User", json_string(s->user));
    if (s->labels)
        json_object_set(j, "Labels", s->labels);
    json_object_set_new(j, "Tty", json_false());
    json_object_set_new(j, "OpenStdin", json_boolean(s->open_stdin));
    json_object_set_new(j, "StdinOnce", json_boolean(s->open_stdin && s->stdin_once));
    json_object_set_new(j, "AttachStdin", json_boolean(s->open_stdin));
    json_object_set_new(j, "AttachStdout", json_boolean(s->attach_output));
    json_object_set_new(j, "AttachStderr", json_boolean(s->attach_output));
    if (s->binds)
        json_object_set_new(hc, "Binds", strv_json(s->binds));
    if (s->network_mode)
        json_object_set_new(hc, "NetworkMode", json_string(s->network_mode));
    if (s->init)
        json_object_set_new(hc, "Init", json_true());
    if (s->memory > 0)
        json_object_set_new(hc, "Memory", json_integer(s->memory));
    if (s->nano_cpus > 0)
        json_object_set_new(hc, "NanoCpus", json_integer(s->nano_cpus));
    if (s->pids_limit != 0)
        json_object_set_new(hc, "PidsLimit", json_integer(s->pids_limit));
    if (s->device_requests)
        json_object_set(hc, "DeviceRequests", s->device_requests);
    if (s->privileged)
        json_object_set_new(hc, "Privileged", json_true());
    if (s->log_none)
        json_object_set_new(hc, "LogConfig",
                            json_pack("{s:s, s:{}}", "Type", "none", "Config"));
    json_object_set_new(hc, "AutoRemove", json_false());
    json_object_set_new(j, "HostConfig", hc);
    if (s->network_mode && s->network_alias) {
        json_t *ep = json_object(), *eps = json_object(), *nc = json_object();
        const char *al[2] = {s->network_alias, NULL};

        json_object_set_new(ep, "Aliases", strv_json(al));
        json_object_set_new(eps, s->network_mode, ep);
        json_object_set_new(nc, "EndpointsConfig", eps);
        json_object_set_new(j, "NetworkingConfig", nc);
    }
    return j;
}

/* ---- simple calls ------------------------------------------------------------------------ */

/* Starts a call whose path is built from fmt; the object name goes in what. */
static int
simple(struct docker *d, struct dcall *c, const char *method, const char *path, json_t *body,
       long timeout_ms, struct err *e)
{
    char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct dcall_opts o = {.method = method, .path = path, .body = js,
                           .len = js ? strlen(js) : 0, .timeout_ms = timeout_ms};
    int rc;

    (void)d;
    rc = dcall_start(c, &o, e);
    free(js);
    return rc;
}

static void
post_id(struct dcall *c, struct docker_res *res)
{
    json_t *id = json_object_get(res->json, "Id");

    if (!json_is_string(id))
        res->rc = err_set(&res->err, ERR_PROTO, "%s: reply has no Id", c->what);
    else
        res->id = json_string_value(id);
}

int
docker_container_create(struct docker *d, const char *name, json_t *body, docker_cb cb,
                        void *arg, struct err *e)
{
    char *path, *en = name ? docker_esc(name) : NULL;
    const char *img = json_string_value(json_object_get(body, "Image"));
    struct dcall *c = dcall_new(d, cb, arg, post_id, "create container %s (image %s)",
                                name ? name : "(unnamed)", img ? img : "?");
    int rc;

    path = name ? xasprintf("/containers/create?name=%s", en) : xstrdup("/containers/create");
    rc = simple(d, c, "POST", path, body, 0, e);
    free(path);
    free(en);
    return rc;
}

/* Builds "/containers/<esc id><suffix>". */
static char *
cpath(const char *id, const char *suffix)
{
    char *esc = docker_esc(id);
    char *p = xasprintf("/containers/%s%s", esc, suffix);

    free(esc);
    return p;
}

int
docker_container_start(struct docker *d, const char *id, docker_cb cb, void *arg, struct err *e)
{
    char *p = cpath(id, "/start");
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "start container %s", id), "POST", p, NULL,
                    0, e);

    free(p);
    return rc;
}

static void
post_wait(struct dcall *c, struct docker_res *res)
{
    json_t *sc = json_object_get(res->json, "StatusCode");
    const char *msg = json_string_value(json_object_get(json_object_get(res->json, "Error"),
                                                        "Message"));

    if (!json_is_integer(sc)) {
        res->rc = err_set(&res->err, ERR_PROTO, "%s: reply has no StatusCode", c->what);
        return;
    }
    res->exit_code = json_integer_value(sc);
    if (msg != NULL && msg[0] != '\0')
        res->rc = err_set(&res->err, -EIO, "%s: %s", c->what, msg);
}

int
docker_container_wait(struct docker *d, const char *id, const char *condition, docker_cb cb,
                      void *arg, struct err *e)
{
    char *suffix = xasprintf("/wait?condition=%s", condition ? condition : "not-running");
    char *p = cpath(id, suffix);
    int rc = simple(d, dcall_new(d, cb, arg, post_wait, "wait for container %s", id), "POST", p,
                    NULL, -1, e);

    free(suffix);
    free(p);
    return rc;
}

int
docker_container_kill(struct docker *d, const char *id, const char *signal, docker_cb cb,
                      void *arg, struct err *e)
{
    char *es = docker_esc(signal ? signal : "SIGKILL");
    char *suffix = xasprintf("/kill?signal=%s", es);
    char *p = cpath(id, suffix);
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "kill container %s", id), "POST", p, NULL, 0,
                    e);

    free(es);
    free(suffix);
    free(p);
    return rc;
}

int
docker_container_stop(struct docker *d, const char *id, int timeout_s, docker_cb cb, void *arg,
                      struct err *e)
{
    char *suffix = xasprintf("/stop?t=%d", timeout_s);
    char *p = cpath(id, suffix);
    /* the daemon waits up to timeout_s before SIGKILL: allow for it */
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "stop container %s", id), "POST", p, NULL,
                    d->timeout_ms + (long)timeout_s * 1000, e);

    free(suffix);
    free(p);
    return rc;
}

int
docker_container_remove(struct docker *d, const char *id, bool force, bool volumes,
                        docker_cb cb, void *arg, struct err *e)
{
    char *suffix = xasprintf("?force=%d&v=%d", force ? 1 : 0, volumes ? 1 : 0);
    char *p = cpath(id, suffix);
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "remove container %s", id), "DELETE", p,
                    NULL, 0, e);

    free(suffix);
    free(p);
    return rc;
}

int
docker_container_inspect(struct docker *d, const char *id, docker_cb cb, void *arg,
                         struct err *e)
{
    char *p = cpath(id, "/json");
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "inspect container %s", id), "GET", p, NULL,
                    0, e);

    free(p);
    return rc;
}

static char *
list_path(const char *base, const char *label)
{
    char *f, *p;

    if (label == NULL)
        return xstrdup(base);
    f = docker_label_filter(label);
    p = xasprintf("%s%sfilters=%s", base, strchr(base, '?') ? "&" : "?", f);
    free(f);
    return p;
}

int
docker_container_list(struct docker *d, const char *label, docker_cb cb, void *arg,
                      struct err *e)
{
    char *p = list_path("/containers/json?all=1", label);
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "list containers %s", label ? label : ""),
                    "GET", p, NULL, 0, e);

    free(p);
    return rc;
}

int
docker_archive_put(struct docker *d, const char *id, const char *dir, const void *tar,
                   size_t len, docker_cb cb, void *arg, struct err *e)
{
    char *ed = docker_esc(dir);
    char *suffix = xasprintf("/archive?path=%s", ed);
    char *p = cpath(id, suffix);
    struct dcall *c = dcall_new(d, cb, arg, NULL, "copy archive into container %s:%s", id, dir);
    struct dcall_opts o = {.method = "PUT", .path = p, .content_type = "application/x-tar",
                           .body = tar, .len = len, .timeout_ms = 600000};
    int rc = dcall_start(c, &o, e);

    free(ed);
    free(suffix);
    free(p);
    return rc;
}

int
docker_archive_get(struct docker *d, const char *id, const char *path, docker_cb cb, void *arg,
                   struct err *e)
{
    char *ep = docker_esc(path);
    char *suffix = xasprintf("/archive?path=%s", ep);
    char *p = cpath(id, suffix);
    struct dcall *c = dcall_new(d, cb, arg, NULL, "copy %s out of container %s", path, id);
    struct dcall_opts o = {.method = "GET", .path = p, .timeout_ms = 600000,
                           .max_body = 64u * 1024 * 1024};
    int rc = dcall_start(c, &o, e);

    free(ep);
    free(suffix);
    free(p);
    return rc;
}

/* ---- networks and volumes ---------------------------------------------------------------- */

int
docker_network_create(struct docker *d, const char *name, json_t *labels, bool isolated,
                      docker_cb cb, void *arg, struct err *e)
{
    json_t *b = json_object();
    int rc;

    json_object_set_new(b, "Name", json_string(name));
    json_object_set_new(b, "CheckDuplicate", json_true());
    json_object_set_new(b, "Driver", json_string("bridge"));
    if (isolated)
        json_object_set_new(b, "Options", json_pack("{s:s}", "com.docker.network.bridge.enable_icc",
                                                    "false"));
    if (labels)
        json_object_set(b, "Labels", labels);
    rc = simple(d, dcall_new(d, cb, arg, post_id, "create network %s", name), "POST",
                "/networks/create", b, 0, e);
    json_decref(b);
    return rc;
}

int
docker_network_remove(struct docker *d, const char *id, docker_cb cb, void *arg, struct err *e)
{
    char *esc = docker_esc(id), *p = xasprintf("/networks/%s", esc);
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "remove network %s", id), "DELETE", p, NULL,
                    0, e);

    free(esc);
    free(p);
    return rc;
}

int
docker_network_connect(struct docker *d, const char *net, const char *container,
                       const char *const *aliases, docker_cb cb, void *arg, struct err *e)
{
    char *esc = docker_esc(net), *p = xasprintf("/networks/%s/connect", esc);
    json_t *b = json_object(), *ep = json_object();
    int rc;

    json_object_set_new(b, "Container", json_string(container));
    if (aliases)
        json_object_set_new(ep, "Aliases", strv_json(aliases));
    json_object_set_new(b, "EndpointConfig", ep);
    rc = simple(d, dcall_new(d, cb, arg, NULL, "connect container %s to network %s", container,
                             net),
                "POST", p, b, 0, e);
    json_decref(b);
    free(esc);
    free(p);
    return rc;
}

int
docker_volume_create(struct docker *d, const char *name, json_t *labels, docker_cb cb,
                     void *arg, struct err *e)
{
    json_t *b = json_object();
    int rc;

    json_object_set_new(b, "Name", json_string(name));
    json_object_set_new(b, "Driver", json_string("local"));
    if (labels)
        json_object_set(b, "Labels", labels);
    rc = simple(d, dcall_new(d, cb, arg, NULL, "create volume %s", name), "POST",
                "/volumes/create", b, 0, e);
    json_decref(b);
    return rc;
}

int
docker_volume_remove(struct docker *d, const char *name, bool force, docker_cb cb, void *arg,
                     struct err *e)
{
    char *esc = docker_esc(name), *p = xasprintf("/volumes/%s?force=%d", esc, force ? 1 : 0);
    int rc = simple(d, dcall_new(d, cb, arg, NULL, "remove volume %s", name), "DELETE", p, NULL,
                    0, e);

    free(esc);
    free(p);
    return rc;
}

/* ---- sweep: containers, then networks, then volumes -------------------------------------- */

enum sweep_phase { SWEEP_CONTAINERS, SWEEP_NETWORKS, SWEEP_VOLUMES, SWEEP_DONE };

struct sweep {
    struct docker *d;
    char *label;
    enum sweep_phase phase;
    char **ids;
    size_t nids, next;
    bool listed;
    int removed;
    int rc;
    struct err err;
    docker_cb cb;
    void *arg;
};

static void sweep_step(struct sweep *s);

static void
sweep_note(struct sweep *s, const struct docker_res *res)
{
    if (res->rc < 0 && res->rc != ERR_NOTFOUND && s->rc == 0) {
        s->rc = res->rc;
        s->err = res->err;
    }
}

static void
sweep_clear_ids(struct sweep *s)
{
    for (size_t i = 0; i < s->nids; i++)
        free(s->ids[i]);
    free(s->ids);
    s->ids = NULL;
    s->nids = s->next = 0;
}

static void
on_sweep_removed(const struct docker_res *res, void *arg)
{
    struct sweep *s = arg;

    sweep_note(s, res);
    if (res->rc == 0)
        s->removed++;
    sweep_step(s);
}

static void
on_sweep_list(const struct docker_res *res, void *arg)
{
    struct sweep *s = arg;
    json_t *arr = res->json, *v;
    size_t i;

    sweep_note(s, res);
    s->listed = true;
    if (s->phase == SWEEP_VOLUMES && json_is_object(arr))
        arr = json_object_get(arr, "Volumes");
    if (res->rc == 0 && json_is_array(arr)) {
        s->ids = xcalloc(json_array_size(arr) + 1, sizeof *s->ids);
        json_array_foreach(arr, i, v) {
            const char *id = json_string_value(
                json_object_get(v, s->phase == SWEEP_VOLUMES ? "Name" : "Id"));

            if (id)
                s->ids[s->nids++] = xstrdup(id);
        }
    }
    sweep_step(s);
}

/* Removes the next listed object, or lists the next kind, or finishes. */
static void
sweep_step(struct sweep *s)
{
    static const char *const base[] = {"/containers/json?all=1", "/networks", "/volumes"};
    static const char *const what[] = {"containers", "networks", "volumes"};
    struct err e;
    int rc;

    for (;;) {
        if (s->phase == SWEEP_DONE) {
            struct docker_res res;

            memset(&res, 0, sizeof res);
            res.rc = s->rc;
            res.err = s->err;
            res.removed = s->removed;
            s->cb(&res, s->arg);
            sweep_clear_ids(s);
            free(s->label);
            free(s);
            return;
        }
        if (!s->listed) {
            char *p = list_path(base[s->phase], s->label);
            struct dcall *c = dcall_new(s->d, on_sweep_list, s, NULL, "sweep: list %s %s",
                                        what[s->phase], s->label);
            struct dcall_opts o = {.method = "GET", .path = p};

            rc = dcall_start(c, &o, &e);
            free(p);
            if (rc == 0)
                return;
            struct docker_res fail = {.rc = rc, .err = e};
            sweep_note(s, &fail);
            s->phase++;
            continue;
        }
        if (s->next < s->nids) {
            const char *id = s->ids[s->next++];

            if (s->phase == SWEEP_CONTAINERS)
                rc = docker_container_remove(s->d, id, true, true, on_sweep_removed, s, &e);
            else if (s->phase == SWEEP_NETWORKS)
                rc = docker_network_remove(s->d, id, on_sweep_removed, s, &e);
            else
                rc = docker_volume_remove(s->d, id, true, on_sweep_removed, s, &e);
            if (rc == 0)
                return;
            struct docker_res fail = {.rc = rc, .err = e};
            sweep_note(s, &fail);
            continue;
        }
        sweep_clear_ids(s);
        s->listed = false;
        s->phase++;
    }
}

int
docker_sweep(struct docker *d, const char *label, docker_cb cb, void *arg, struct err *e)
{
    struct sweep *s;

    if (label == NULL || label[0] == '\0')
        return err_set(e, ERR_INVALID, "sweep: a label filter is required");
    if (d->api[0] == '\0')
        return err_set(e, -ENOTCONN, "sweep %s: not connected", label);
    s = xcalloc(1, sizeof *s);
    s->d = d;
    s->label = xstrdup(label);
    s->cb = cb;
    s->arg = arg;
    sweep_step(s);
    return 0;
}
