/* profile.c: a label's settings applied to a job container (see profile.h). */
#include "profile.h"

#include "dockeropts.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

long long
profile_host_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);

    return pages > 0 && size > 0 ? (long long)pages * size : 0;
}

static json_t *
strv_json(char *const *v)
{
    json_t *a = json_array();

    for (size_t i = 0; v && v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

json_t *
profile_job(const struct config *c, const struct config_profile *p, long long host_memory,
            char *const *gpus, const char *socket, int socket_gid)
{
    long long memory, nano, pids;
    json_t *j = json_object();

    config_limits_resolve(c, p, host_memory, &memory, &nano, &pids);
    if (p)
        json_object_set_new(j, "label", json_string(p->name));
    json_object_set_new(j, "memory", json_integer(memory));
    json_object_set_new(j, "nano_cpus", json_integer(nano));
    json_object_set_new(j, "pids", json_integer(pids));
    json_object_set_new(j, "binds", strv_json(p ? p->volumes : NULL));
    if (gpus && gpus[0]) {
        json_object_set_new(j, "gpus", strv_json(gpus));
        json_object_set_new(j, "gpu_caps", strv_json(p ? p->gpu_caps : NULL));
    }
    if (p && p->docker == CONFIG_DOCKER_SOCKET && socket) {
        json_object_set_new(j, "socket", json_string(socket));
        json_object_set_new(j, "socket_gid", json_integer(socket_gid));
    }
    json_object_set_new(j, "cap_add", strv_json(p ? p->cap_add : NULL));
    json_object_set_new(j, "persistent_volumes", strv_json(p ? p->persistent_volumes : NULL));
    {
        /* The floor, less what the label lets workflows add back. */
        const char *const *drop = config_cap_drop_resolve(c, p);
        json_t *a = json_array();
        for (size_t i = 0; drop[i]; i++) {
            bool added = false;
            for (size_t k = 0; p && p->cap_add && p->cap_add[k]; k++)
                added |= strcmp(p->cap_add[k], drop[i]) == 0 || strcmp(p->cap_add[k], "ALL") == 0;
            if (!added)
                json_array_append_new(a, json_string(drop[i]));
        }
        json_object_set_new(j, "cap_drop", a);
    }
    if (p && p->docker == CONFIG_DOCKER_DIND)
        json_object_set_new(j, "dind", json_pack("{s:s, s:b, s:o}", "image", p->dind_image,
                                                 "caps", p->dind_caps,
                                                 "args", strv_json(p->dind_args)));
    return j;
}

static json_t *
host_config(json_t *body)
{
    json_t *hc = json_object_get(body, "HostConfig");

    if (!json_is_object(hc)) {
        hc = json_object();
        json_object_set_new(body, "HostConfig", hc);
    }
    return hc;
}

static void
append_all(json_t *hc, const char *key, const json_t *items)
{
    json_t *a = json_object_get(hc, key);
    size_t i;
    json_t *v;

    if (!json_is_array(a)) {
        a = json_array();
        json_object_set_new(hc, key, a);
    }
    json_array_foreach(items, i, v)
        json_array_append(a, v);
}

static char *
join(const json_t *a, const char *only_from)
{
    struct buf b = BUF_INIT;
    size_t i;
    json_t *v;

    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL)
            continue;
        if (only_from) { /* only words of the list "a,b,c" */
            size_t n = strlen(s);
            const char *p = strstr(only_from, s);
            if (p == NULL || (p != only_from && p[-1] != ',') || (p[n] && p[n] != ','))
                continue;
        }
        if (b.len)
            buf_putc(&b, ',');
        buf_puts(&b, s);
    }
    return buf_steal(&b);
}

void
profile_apply_limits(const json_t *job, json_t *hc)
{
    long long v;

    if (job == NULL)
        return;
    if ((v = json_integer_value(json_object_get(job, "memory"))) > 0) {
        json_object_set_new(hc, "Memory", json_integer(v));
        json_object_set_new(hc, "MemorySwap", json_integer(v));
    }
    if ((v = json_integer_value(json_object_get(job, "nano_cpus"))) > 0)
        json_object_set_new(hc, "NanoCpus", json_integer(v));
    if ((v = json_integer_value(json_object_get(job, "pids"))) > 0)
        json_object_set_new(hc, "PidsLimit", json_integer(v));
}

void
profile_apply_caps(const json_t *job, json_t *hc)
{
    json_t *drop = json_object_get(job, "cap_drop"), *have = json_object_get(hc, "CapDrop");
    size_t i, k;
    json_t *v, *h;

    if (!json_is_array(drop))
        return;
    if (!json_is_array(have)) {
        have = json_array();
        json_object_set_new(hc, "CapDrop", have);
    }
    json_array_foreach(drop, i, v) {
        bool dup = false;
        json_array_foreach(have, k, h)
            dup |= json_equal(h, v);
        if (!dup)
            json_array_append(have, v);
    }
}

int
profile_check_caps(const json_t *job, const struct dockeropts *o, const char *what,
                   struct err *e)
{
    json_t *allowed = json_object_get(job, "cap_add");
    char **caps = xcalloc(json_array_size(allowed) + 1, sizeof *caps);
    size_t i;
    json_t *v;
    int rc;

    json_array_foreach(allowed, i, v)
        caps[i] = xstrdup(json_string_value(v) ? json_string_value(v) : "");
    rc = dockeropts_check_caps(o, caps, what, e);
    xstrv_free(caps);
    return rc;
}

int
profile_check_options(const json_t *job, const char *options, const char *what,
                      unsigned flags, struct err *e)
{
    struct dockeropts o;
    int rc = dockeropts_parse(options, what, flags, &o, e);

    if (rc == 0)
        rc = profile_check_caps(job, &o, what, e);
    for (size_t k = 0; rc == 0 && k < o.nvolumes; k++) {
        const char *why = dockeropts_volume_problem(o.volumes[k]);
        if (why)
            rc = err_set(e, ERR_INVALID, "%s: -v %s: %s", what, o.volumes[k], why);
    }
    dockeropts_free(&o);
    return rc;
}

int
profile_check_image(const struct config_profile *p, const char *job_image, const char *file,
                    const struct wf_job *wj, struct err *e)
{
    const struct ynode *c = wj ? wj->container : NULL;
    const struct ynode *n = c && c->kind == YNODE_MAP ? ynode_get(c, "image") : c;

    if (p == NULL || p->image == NULL || job_image == NULL || p->allow_job_image ||
        strcmp(job_image, p->image) == 0)
        return 0;
    return err_set(e, ERR_INVALID, "%s:%d:%d: container.image: label %s runs only its pinned "
                   "image (allow_job_image: false): %s is not %s", file ? file : "workflow",
                   n ? n->pos.line : 0, n ? n->pos.col : 0, p->name, job_image, p->image);
}

void
profile_apply(json_t *body, const json_t *job, json_t *env)
{
    json_t *hc = host_config(body);
    json_t *gpus = json_object_get(job, "gpus");
    long long v;

    if (job == NULL) {
        json_object_set_new(env, "NVIDIA_VISIBLE_DEVICES", json_string("void"));
        return;
    }
    profile_apply_limits(job, hc);
    profile_apply_caps(job, hc);
    append_all(hc, "Binds", json_object_get(job, "binds"));
    if (json_array_size(gpus) > 0) {
        /* doc/docker-engine.md §3.1/§3.2: by UUID, Count 0, the nvidia driver, never privileged. */
        json_t *req = json_pack("{s:s, s:i, s:O, s:[O], s:{}}", "Driver", "nvidia", "Count", 0,
                                "DeviceIDs", gpus, "Capabilities",
                                json_object_get(job, "gpu_caps"), "Options");
        json_object_set_new(hc, "DeviceRequests", json_pack("[o]", req));
        char *ids = join(gpus, NULL);
        char *caps = join(json_object_get(job, "gpu_caps"),
                          "compute,compat32,graphics,utility,video,display");
        json_object_set_new(env, "NVIDIA_VISIBLE_DEVICES", json_string(ids));
        json_object_set_new(env, "NVIDIA_DRIVER_CAPABILITIES", json_string(*caps ? caps : "utility"));
        free(ids);
        free(caps);
    } else {
        json_object_del(hc, "DeviceRequests");
        json_object_set_new(env, "NVIDIA_VISIBLE_DEVICES", json_string("void"));
    }
    const char *sock = json_string_value(json_object_get(job, "socket"));
    if (sock) {
        char *bind = xasprintf("%s:/var/run/docker.sock", sock);
        json_t *one = json_pack("[s]", bind);
        append_all(hc, "Binds", one);
        json_decref(one);
        free(bind);
        json_object_set_new(env, "DOCKER_HOST", json_string("unix:///var/run/docker.sock"));
        v = json_integer_value(json_object_get(job, "socket_gid"));
        if (json_is_integer(json_object_get(job, "socket_gid")) && v >= 0) {
            char gid[32];
            snprintf(gid, sizeof gid, "%lld", v);
            json_t *g = json_pack("[s]", gid);
            append_all(hc, "GroupAdd", g);
            json_decref(g);
        }
    }
}

bool
profile_gpu_refused(const char *msg)
{
    return msg && (strstr(msg, "could not select device driver") != NULL ||
                   strstr(msg, "nvidia-container-cli") != NULL);
}
