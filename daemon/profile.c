/* profile.c: a label's settings applied to a job container (see profile.h). */
#include "profile.h"

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
    append_all(hc, "Binds", json_object_get(job, "binds"));
    if (json_array_size(gpus) > 0) {
        /* docker-engine.md §3.1/§3.2: by UUID, Count 0, the nvidia driver, never privileged. */
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
