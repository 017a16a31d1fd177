/* dockerexec-create.c: the docker executor's setup: at once the image resolved (its env the
 * steps' base), the workspace and /var/run/act volumes and, for a job with services or a dind
 * sidecar, the job network; then the services, the dind sidecar, and the job container with
 * the workflow's volumes and options and the label's settings (profile.c) on top. */
#include "dockerexec-int.h"

#include "ctx.h"
#include "dind.h"
#include "docker.h"
#include "dockeropts.h"
#include "profile.h"
#include "services.h"
#include "runner/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void create_container(struct docker_exec *dx);

static void
on_created(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc == 0)
        dx->ctr_id = xstrdup(res->id);
    if (res->rc < 0 && dx->agent_bind && !dx->closing &&
        strstr(res->err.msg, "bind source path does not exist") != NULL) {
        /* The engine does not see runner-agent where we do (we run in a container of our
         * own): created again, with the agent copied in. */
        dockerexec_say(dx, "runner-agent is copied in (the engine cannot bind %s)",
                       dx->agent_bind);
        free(dx->agent_bind);
        dx->agent_bind = NULL;
        dx->pending--; /* this call landed */
        create_container(dx);
        return;
    }
    if (!dockerexec_proceed(dx, res))
        return;
    dockerexec_say(dx, "created container %.12s", dx->ctr_id);
    json_t *c = json_object();
    json_object_set_new(c, "id", json_string(dx->ctr_id));
    json_object_set_new(c, "network", json_string(dx->net_id ? dx->net_id : ""));
    json_object_set_new(dx->x.job_ctx, "container", c);
    dockerexec_created(dx);
}

static void start_dind(struct docker_exec *dx);
static const char *const *strv_of(json_t *arr, const char ***keep);

static void
svc_log(const char *line, void *arg)
{
    dockerexec_say(arg, "%s", line);
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
                         "VolumeOptions", "Labels", dockerexec_job_labels(dx));
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
        dockerexec_close(&dx->x);
        return;
    }
    if (rc < 0) {
        dockerexec_fail(dx, e); /* the job run closes us; services_stop() runs in the close */
        return;
    }
    if (dx->failed)
        return;
    json_t *ctx = services_context(dx->svc);
    json_object_set_new(dx->x.job_ctx, "services", ctx);
    if (dx->svc_waiting) { /* the job container is on its way already */
        dx->svc_waiting = false;
        dockerexec_services_ready(dx);
        return;
    }
    start_dind(dx);
}

/* The services' starts are answered: the job container's start, held until now, may come. On
 * one job network the two starts slow each other, and the services' settle (services.c) counts
 * from their start's answer, so theirs goes first; the job container's start then runs during
 * the settle. */
static void
on_services_started(void *arg)
{
    struct docker_exec *dx = arg;

    dx->svc_started = true;
    dockerexec_start(dx);
}

static void
on_dind(void *arg, int rc, const struct err *e)
{
    struct docker_exec *dx = arg;

    dx->pending--;
    dx->dind_waiting = false;
    if (dx->closing) {
        dockerexec_close(&dx->x);
        return;
    }
    if (rc < 0) {
        dockerexec_fail(dx, e);
        return;
    }
    dockerexec_say(dx, "the job's Docker daemon (dind sidecar) is ready at tcp://docker:2376");
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
    json_t *labels = dockerexec_job_labels(dx);
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
    dockerexec_say(dx, "starting the job's Docker daemon (dind sidecar from %s)",
                   o.image ? o.image : "?");
    dx->used_dind = true;
    if (dockerexec_flying(dx, dind_start(dx->d, &o, on_dind, dx, &dx->dind, &e)) < 0)
        dockerexec_fail(dx, &e);
    else
        dx->dind_waiting = true;
    free(args);
    json_decref(labels);
}

/* Starts the job's services on the job network, and the job container: at once, or after
 * them and the dind sidecar. */
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
            dockerexec_fail(dx, &e);
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
    json_t *labels = dockerexec_job_labels(dx);
    struct services_config cfg = {
        .d = dx->d,
        .job_name = dx->name,
        .network = dx->net_name,
        .labels = labels,
        .allow_pull = true,
        .validate_volume = check_volumes_cb,
        .mount_volume = mount_volume_cb,
        .log = svc_log,
        .on_started = on_services_started,
        .arg = dx,
        .limits = dx->profile,
    };
    if (dockerexec_flying(dx, services_start(dx->x.loop, &cfg, defs, n, on_services, dx,
                                             &dx->svc, &e)) < 0) {
        dockerexec_fail(dx, &e);
    } else if (!json_is_object(json_object_get(dx->profile, "dind"))) {
        /* Nothing of the job container waits for the services (a dind sidecar's settings
         * would): it is created and filled while they start, and started once their starts
         * are answered, while they get healthy (on_services_started()); the job is ready when
         * both are (dockerexec_services_ready()). */
        dx->svc_waiting = true;
        create_container(dx);
    }
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

/* The setup's first calls are in flight at once: the image resolved, the volumes created and
 * (for a job that needs one) the network created. Each lands here; the last one goes on to the
 * services unless one failed. */
static void
setup_landed(struct docker_exec *dx)
{
    if (--dx->setup_calls > 0 || dx->failed)
        return;
    start_services(dx);
}

static void
on_volume(struct docker_exec *dx, int i, const struct docker_res *res)
{
    if (res->rc == 0)
        dx->vol_created[i] = true;
    if (!dockerexec_proceed(dx, res))
        return;
    setup_landed(dx);
}

static void
on_volume0(const struct docker_res *res, void *arg)
{
    on_volume(arg, 0, res);
}

static void
on_volume1(const struct docker_res *res, void *arg)
{
    on_volume(arg, 1, res);
}

static void
on_network(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    if (res->rc == 0)
        dx->net_id = xstrdup(res->id);
    if (!dockerexec_proceed(dx, res))
        return;
    setup_landed(dx);
}

/* The shared network's creation, one at a time in this process: the engine's CheckDuplicate
 * does not stop two creates of one name that run at once, and two networks of that name would
 * make every later create that names it fail as ambiguous. Jobs that set up while a create is
 * in flight wait for its answer (counted as their own call in flight, so none is freed before
 * it lands); a job after that asks again, answered at once with a conflict while it exists (so
 * a network removed by hand, e.g. by `docker network prune`, is made again). */
static struct {
    struct docker *d;         /* the engine of the create in flight */
    bool creating;
    struct docker_exec **wait;
    size_t nwait;
} shared_net;

static void
shared_net_landed(struct docker_exec *dx, const struct docker_res *res)
{
    if (!dockerexec_proceed(dx, res))
        return;
    setup_landed(dx);
}

/* The shared network is there: made now, or already (a conflict). */
static void
on_shared_network(const struct docker_res *res, void *arg)
{
    struct docker_res ok = *res;
    struct docker_exec **wait = shared_net.wait;
    size_t n = shared_net.nwait;

    (void)arg;
    if (res->rc == -EEXIST)
        ok.rc = 0;
    shared_net.creating = false;
    shared_net.d = NULL;
    shared_net.wait = NULL;
    shared_net.nwait = 0;
    for (size_t i = 0; i < n; i++)
        shared_net_landed(wait[i], &ok);
    free(wait);
}

/* Joins the shared network's create: 0 with a call in flight for dx, or <0 with e. */
static int
shared_net_join(struct docker_exec *dx, struct err *e)
{
    if (shared_net.creating && shared_net.d != dx->d)
        return err_set(e, -EBUSY, "the shared network %s is being made on another engine",
                       DOCKEREXEC_SHARED_NET);
    if (!shared_net.creating) {
        /* Only the role label: no sweep of a runner's or a job's objects removes it. */
        json_t *labels = json_pack("{s:s}", DOCKER_LABEL_ROLE, "shared-network");
        int rc = docker_network_create(dx->d, DOCKEREXEC_SHARED_NET, labels, true,
                                       on_shared_network, NULL, e);
        json_decref(labels);
        if (rc < 0)
            return rc;
        shared_net.creating = true;
        shared_net.d = dx->d;
    }
    shared_net.wait = xreallocarray(shared_net.wait, shared_net.nwait + 1, sizeof *shared_net.wait);
    shared_net.wait[shared_net.nwait++] = dx;
    return dockerexec_flying(dx, 0);
}

static void
create_container(struct docker_exec *dx)
{
    struct err e = {0};
    json_t *labels = NULL, *body = NULL;
    char **env = NULL;
    size_t n = 0;

    labels = dockerexec_job_labels(dx);
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
    free(dx->x.workspace_mount); /* made again when the agent's bind was refused */
    free(dx->x.act_mount);
    free(dx->x.network);
    dx->x.workspace_mount = xstrdup(bind);
    dx->x.act_mount = xstrdup(act);
    /* Step containers go where the job's container is. */
    dx->x.network = xstrdup(DOCKEREXEC_NET(dx));
    /* The fast channel's directory, when the agent may use one (dockerexec-fast.c). */
    char *fast = dx->fast || dockerexec_fast_listen(dx) ? dockerexec_fast_bind(dx) : NULL;
    const char *binds[] = {bind, act, fast, NULL};
    const char *entry[] = {AGENT_DIR "/agent", "--journal", JOURNAL,
                           fast ? "--connect" : NULL, DOCKEREXEC_FAST_DIR "/" DOCKEREXEC_FAST_SOCK,
                           NULL};
    struct docker_container_spec spec = {
        .image = dx->image_id,
        .entrypoint = entry,
        .env = (const char *const *)env,
        .workdir = WORKSPACE,
        .labels = labels,
        .open_stdin = true,
        .attach_output = true,
        .binds = binds,
        .network_mode = DOCKEREXEC_NET(dx),
        .pids_limit = 4096,
        .log_none = true, /* the agent's output comes through attach; no copy on the disk */
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
            dockerexec_fail(dx, &e);
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
            dockerexec_fail(dx, &e);
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
    if (dx->agent_bind) { /* a mount, not a bind: a missing path is refused (on_created()) */
        json_t *hc = json_object_get(body, "HostConfig"), *mounts = json_object_get(hc, "Mounts");
        if (!json_is_array(mounts)) {
            mounts = json_array();
            json_object_set_new(hc, "Mounts", mounts);
        }
        json_array_append_new(mounts, json_pack("{s:s, s:s, s:s, s:b}", "Type", "bind", "Source",
                                                dx->agent_bind, "Target", AGENT_DIR "/agent",
                                                "ReadOnly", 1));
    }
    if (dockerexec_flying(dx, docker_container_create(dx->d, dx->name, body, on_created, dx,
                                                      &e)) < 0)
        dockerexec_fail(dx, &e);
out:
    free(bind);
    free(act);
    free(fast);
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

    if (!dockerexec_proceed(dx, res))
        return;
    dx->image_id = xstrdup(res->id);
    {
        const char *u = json_string_value(
            json_object_get(json_object_get(res->json, "Config"), "User"));
        const char *o = dx->options ? dx->options : "";
        dx->as_root = (u == NULL || *u == '\0' || strcmp(u, "0") == 0 ||
                       strcmp(u, "root") == 0 || strncmp(u, "0:", 2) == 0 ||
                       strncmp(u, "root:", 5) == 0) &&
                      strstr(o, "--user") == NULL && strstr(o, "-u") == NULL;
    }
    dockerexec_say(dx, "image %s is %.19s", dx->image, dx->image_id);
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
    setup_landed(dx);
}

/* Does the job need a network of its own? Only for names: services are reached by their id
 * and the dind sidecar as "docker", from the job container and from step containers
 * (container.options cannot name a network). Any other job runs on the shared isolated bridge
 * (DOCKEREXEC_SHARED_NET): no network to create and remove (most of a job's start and end
 * otherwise), and still no traffic between jobs, as on networks of their own; the engine's
 * default bridge would let jobs reach each other's ports unless dockerd runs with "icc":
 * false (doc/docker-engine.md §4.2 for the sidecar). */
static bool
needs_network(const struct docker_exec *dx)
{
    return json_object_size(dx->services) > 0 ||
           json_is_object(json_object_get(dx->profile, "dind"));
}

/* Starts the setup's first calls at once (setup_landed() joins them): the image, the volumes
 * and the network; and the upload's building. On a refused call the ones in flight land first
 * (the close waits for them). */
static int
setup_start(struct docker_exec *dx, struct err *e)
{
    json_t *labels = dockerexec_job_labels(dx);
    int rc;

    /* The workspace and /var/run/act are volumes, so that step containers (docker:// steps,
     * docker actions) see the same files as the job container. */
    if (!dx->bind)
        dx->vols[0] = xasprintf("%s-workspace", dx->name);
    dx->vols[1] = xasprintf("%s-act", dx->name);
    dx->setup_calls = 1; /* held until every call is started */
    dockerexec_agent_bind(dx);
    rc = dockerexec_upload_build(dx, e); /* not a setup call: the container's creation waits */
    if (rc == 0)
        rc = dockerexec_flying(dx, docker_image_resolve(dx->d, dx->image, NULL, true, NULL,
                                                        on_resolved, dx, e));
    dx->setup_calls += rc == 0;
    for (int i = 0; rc == 0 && i < 2; i++) {
        if (dx->vols[i] == NULL)
            continue;
        rc = dockerexec_flying(dx, docker_volume_create(dx->d, dx->vols[i], labels,
                                                        i == 0 ? on_volume0 : on_volume1, dx, e));
        dx->setup_calls += rc == 0;
    }
    if (rc == 0 && dx->net_name) {
        rc = dockerexec_flying(dx, docker_network_create(dx->d, dx->net_name, labels, false,
                                                         on_network, dx, e));
        dx->setup_calls += rc == 0;
    } else if (rc == 0) {
        rc = shared_net_join(dx, e);
        dx->setup_calls += rc == 0;
    }
    json_decref(labels);
    if (rc < 0) {
        dx->failed = true; /* the calls in flight land and stop; the caller closes us */
        dx->setup_calls--;
        return rc;
    }
    dx->setup_calls--; /* the image's call at least is in flight */
    return 0;
}

int
dockerexec_setup(struct executor *x, const struct executor_job *job, struct err *e)
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
    dx->services = job->services ? json_incref(job->services) : NULL;
    dx->profile = job->profile ? json_deep_copy(job->profile) : NULL;
    dx->net_name = needs_network(dx) ? xasprintf("%s-net", dx->name) : NULL;
    dx->image = xstrdup(job->image);
    dx->env = job->env ? json_incref(job->env) : json_object();
    dx->options = job->options ? xstrdup(job->options) : NULL;
    dx->volumes = job->volumes ? json_deep_copy(job->volumes) : NULL;
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
    return setup_start(dx, e);
}
