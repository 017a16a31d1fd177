/* jobcache.c: the front ends' part of the actions/cache server (see jobcache.h). */
#include "jobcache.h"

#include "docker.h"
#include "runner/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct jobcache {
    struct cache_server *srv;  /* NULL: external */
    int lock_fd;               /* DIR.lock, held while the server runs (-1: none) */
    uint8_t key[CACHE_KEY_LEN];
    char *url_container, *url_host;
};

struct gw_req {
    jobcache_gateway_cb cb;
    void *arg;
};

/* The IPv4 address of interface ifname (a new string), or, with ifname NULL, ip itself when it
 * is an address of this host; NULL otherwise. */
static char *
local_ipv4(const char *ifname, const char *ip)
{
    struct ifaddrs *ifa = NULL;
    char *found = NULL;

    if (getifaddrs(&ifa) != 0)
        return NULL;
    for (struct ifaddrs *i = ifa; i && found == NULL; i = i->ifa_next) {
        char buf[INET_ADDRSTRLEN];
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
            continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)i->ifa_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf) == NULL)
            continue;
        if ((ifname && strcmp(i->ifa_name, ifname) == 0) || (ip && strcmp(buf, ip) == 0))
            found = xstrdup(buf);
    }
    freeifaddrs(ifa);
    return found;
}

/* The bridge's gateway from GET /networks/bridge. */
static void
on_bridge(const struct docker_res *res, void *arg)
{
    struct gw_req *rq = arg;
    struct err e = {0};
    char *ip = NULL;

    if (res->rc < 0) {
        err_set(&e, res->rc, "%s", res->err.msg);
        goto out;
    }
    json_t *cfgs = json_object_get(json_object_get(res->json, "IPAM"), "Config");
    size_t i;
    json_t *c;
    json_array_foreach(cfgs, i, c) {
        const char *gw = json_string_value(json_object_get(c, "Gateway"));
        if (gw && strchr(gw, '.') && (ip = local_ipv4(NULL, gw)) != NULL)
            break;
    }
    /* The default bridge often has no gateway in IPAM: it is its interface's address. */
    const char *ifn = json_string_value(json_object_get(json_object_get(res->json, "Options"),
                                                        "com.docker.network.bridge.name"));
    if (ip == NULL && ifn)
        ip = local_ipv4(ifn, NULL);
    if (ip == NULL || strcmp(ip, "0.0.0.0") == 0) {
        free(ip);
        ip = NULL;
        err_set(&e, ERR_NOTFOUND, "the engine's default bridge (%s) has no IPv4 address on this "
                "host", ifn ? ifn : "no interface named");
    }
out:
    rq->cb(rq->arg, ip, ip ? NULL : &e);
    free(rq);
}

int
jobcache_gateway(struct docker *d, jobcache_gateway_cb cb, void *arg, struct err *e)
{
    const char *host = docker_host(d);
    struct gw_req *rq;
    int rc;

    /* An engine elsewhere runs its containers on another machine: our addresses are not
     * theirs to reach. */
    if (host == NULL || strncmp(host, "unix://", 7) != 0)
        return err_set(e, -EHOSTUNREACH, "the Docker engine is not on this host (%s)",
                       host ? host : "?");
    rq = xcalloc(1, sizeof *rq);
    rq->cb = cb;
    rq->arg = arg;
    rc = docker_call(d, "inspect network bridge", "GET", "/networks/bridge", NULL, NULL, 0,
                     on_bridge, rq, e);
    if (rc < 0)
        free(rq);
    return rc;
}

/* Makes the directories above path (0700 where new): the key's and the blobs' parents may
 * not exist yet (a cache directory nothing has used). */
static void
mkdir_parents(const char *path)
{
    char *p = xstrdup(path);

    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        mkdir(p, 0700);
        *q = '/';
    }
    free(p);
}

int
jobcache_new(uv_loop_t *loop, const struct jobcache_opts *o, struct jobcache **out,
             struct err *e)
{
    struct jobcache *jc = xcalloc(1, sizeof *jc);
    char first[64], second[64], *lock = NULL;
    const char *listen[2];
    size_t n = 0;
    int rc;

    *out = NULL;
    jc->lock_fd = -1;
    if (o->create_key)
        mkdir_parents(o->key_file);
    if (o->external_url == NULL)
        mkdir_parents(o->dir);
    rc = cache_key_load(o->key_file, o->create_key, jc->key, e);
    if (rc < 0) {
        err_prefix(e, "cache key %s: ", o->key_file);
        goto fail;
    }
    if (o->external_url) {
        jc->url_container = xstrdup(o->external_url);
        jc->url_host = xstrdup(o->external_url);
        *out = jc;
        return 0;
    }
    /* One server per blob directory: a server starting clears what another one's uploads
     * have half done, and blobs its own index does not name. */
    lock = xasprintf("%s.lock", o->dir);
    jc->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (jc->lock_fd < 0) {
        rc = err_set(e, -errno, "%s: %s", lock, strerror(errno));
        goto fail;
    }
    if (flock(jc->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = err_set(e, errno == EWOULDBLOCK ? -EBUSY : -errno,
                     "%s is in use by another runnerd or runnerctl exec (%s is locked)", o->dir,
                     lock);
        goto fail;
    }
    snprintf(first, sizeof first, "127.0.0.1:%d", o->port);
    listen[n++] = first;
    if (o->gateway) {
        snprintf(second, sizeof second, "%s:%d", o->gateway, o->port);
        listen[n++] = second;
    }
    struct cache_server_opts so = {
        .dir = o->dir, .db_path = o->db_path, .key = jc->key, .max_size = o->max_size,
        .max_age = o->max_age, .listen = listen, .n_listen = n,
    };
    rc = cache_server_start(loop, &so, &jc->srv, e);
    if (rc < 0)
        goto fail;
    int port = cache_server_port(jc->srv);
    jc->url_host = xasprintf("http://127.0.0.1:%d/", port);
    if (o->gateway)
        jc->url_container = xasprintf("http://%s:%d/", o->gateway, port);
    free(lock);
    *out = jc;
    return 0;
fail:
    if (jc->lock_fd >= 0)
        close(jc->lock_fd);
    free(lock);
    memset(jc->key, 0, sizeof jc->key);
    free(jc);
    return rc;
}

const char *
jobcache_url(const struct jobcache *jc, bool container)
{
    return jc == NULL ? NULL : container ? jc->url_container : jc->url_host;
}

int
jobcache_job(struct jobcache *jc, const struct cache_claims *c, bool runtime_token,
             json_t **env_container, json_t **env_host, char **token, struct err *e)
{
    int rc;

    *env_container = *env_host = NULL;
    *token = NULL;
    rc = cache_token_mint(jc->key, c, token);
    if (rc < 0)
        return err_set(e, rc, "cache token for %s %s: %s", c->repo ? c->repo : "(no repository)",
                       c->ref ? c->ref : "(no ref)", strerror(-rc));
    if (jc->url_container)
        *env_container = (json_t *)cache_job_env(jc->url_container, *token, runtime_token);
    if (jc->url_host)
        *env_host = (json_t *)cache_job_env(jc->url_host, *token, runtime_token);
    return 0;
}

void
jobcache_metrics(const struct jobcache *jc, struct buf *out)
{
    if (jc && jc->srv)
        cache_server_metrics(jc->srv, out);
}

struct close_req {
    struct jobcache *jc;
    void (*done)(void *arg);
    void *arg;
};

static void
on_server_closed(void *arg)
{
    struct close_req *cr = arg;

    if (cr->jc->lock_fd >= 0)
        close(cr->jc->lock_fd);
    free(cr->jc->url_container);
    free(cr->jc->url_host);
    memset(cr->jc->key, 0, sizeof cr->jc->key);
    free(cr->jc);
    if (cr->done)
        cr->done(cr->arg);
    free(cr);
}

void
jobcache_close(struct jobcache *jc, void (*done)(void *arg), void *arg)
{
    struct close_req *cr;

    if (jc == NULL) {
        if (done)
            done(arg);
        return;
    }
    cr = xcalloc(1, sizeof *cr);
    cr->jc = jc;
    cr->done = done;
    cr->arg = arg;
    if (jc->srv)
        cache_server_close(jc->srv, on_server_closed, cr);
    else
        on_server_closed(cr);
}
