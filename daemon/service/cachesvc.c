/* cachesvc.c: runnerd's actions/cache server (see cachesvc.h). */
#include "cachesvc.h"

#include "jobcache.h"
#include "mask.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_MARGIN_S 600 /* a token outlives the runner's job timeout by this much */

/* What runs once the server is up (cachesvc_start()'s then: one start per process). */
static void (*cachesvc_then)(void);

/* "<directory of the state database>/name" (a new string). */
static char *
beside_state(const struct daemon *d, const char *name)
{
    const char *st = d->cfg.runnerd.state_file;
    const char *slash = st ? strrchr(st, '/') : NULL;

    return slash ? xasprintf("%.*s/%s", (int)(slash - st), st, name) : xstrdup(name);
}

/* The port the server had last time (0: none), so that a job resumed after a restart, whose
 * variables are in its checkpoint, still reaches it. */
static int
last_port(const char *path)
{
    FILE *f = fopen(path, "r");
    int port = 0;

    if (f) {
        if (fscanf(f, "%d", &port) != 1 || port < 1 || port > 65535)
            port = 0;
        fclose(f);
    }
    return port;
}

static void
save_port(const char *path, int port)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0)
        log_warn("cache: cannot write %s; a restart may give the server another port", path);
    else
        f = NULL;
    if (f)
        fclose(f);
}

/* Starts the server (gateway: where job containers reach it, or NULL), logging where it
 * listens or why it could not start. */
static void
begin(struct daemon *d, const char *gateway)
{
    const struct config *c = &d->cfg;
    char *cdir = config_cache_dir(c, true);
    char *dir = c->runnerd.cache.dir ? xstrdup(c->runnerd.cache.dir)
                                     : xasprintf("%s/actions-cache", cdir);
    char *key = c->runnerd.cache.key_file ? xstrdup(c->runnerd.cache.key_file)
                                          : beside_state(d, "cache.key");
    char *port_file = beside_state(d, "cache.port");
    struct jobcache_opts o = {
        .dir = dir, .db_path = c->runnerd.state_file, .key_file = key,
        .create_key = c->runnerd.cache.external_url == NULL,
        .external_url = c->runnerd.cache.external_url, .max_size = c->runnerd.cache.max_size,
        .max_age = (int64_t)c->runnerd.cache.max_age_s, .gateway = gateway,
        .port = c->cache.port ? c->cache.port : last_port(port_file),
    };
    struct err e = {0};
    int rc = jobcache_new(d->loop, &o, &d->cache, &e);

    if (rc < 0 && o.port && !c->cache.port) { /* last time's port is taken now */
        o.port = 0;
        e = (struct err){0};
        rc = jobcache_new(d->loop, &o, &d->cache, &e);
    }
    if (rc < 0) {
        log_err("cache: %s; jobs run without an actions/cache server", e.msg);
    } else {
        const char *uc = jobcache_url(d->cache, true), *uh = jobcache_url(d->cache, false);
        int port = 0;
        if (o.external_url == NULL && sscanf(uh, "http://127.0.0.1:%d/", &port) == 1)
            save_port(port_file, port);
        log_info("cache: %s for jobs in containers, %s on the host", uc ? uc : "none", uh);
    }
    free(cdir);
    free(dir);
    free(key);
    free(port_file);
}

/* The engine said where job containers reach the host (ip NULL: they cannot). */
static void
on_gateway(void *arg, char *ip, const struct err *e)
{
    struct daemon *d = arg;

    if (ip == NULL)
        log_warn("cache: job containers cannot reach this host (%s); only host jobs get the "
                 "cache", e->msg);
    begin(d, ip);
    free(ip);
    cachesvc_then();
}

void
cachesvc_start(struct daemon *d, void (*then)(void))
{
    struct err e = {0};

    if (!d->cfg.cache.enabled || !d->cfg.runnerd.cache.enabled) {
        then();
        return;
    }
    if (d->docker_ready && d->cfg.runnerd.cache.external_url == NULL) {
        cachesvc_then = then;
        if (jobcache_gateway(d->docker, on_gateway, d, &e) == 0)
            return;
        on_gateway(d, NULL, &e);
        return;
    }
    begin(d, NULL);
    then();
}

void
cachesvc_task(struct daemon *d, int64_t tid, const json_t *github, struct mask *mask,
              json_t **env_container, json_t **env_host)
{
    const char *r1 = json_string_value(json_object_get(github, "repository"));
    const char *r2 = json_string_value(json_object_get(github, "ref"));
    char *repo = r1 ? xstrdup(r1) : NULL, *ref = r2 ? xstrdup(r2) : NULL;
    const char *def = json_string_value(json_object_get(
        json_object_get(json_object_get(github, "event"), "repository"), "default_branch"));
    char *def_ref = def && *def ? xasprintf("refs/heads/%s", def) : NULL;
    char *job = xasprintf("task-%lld", (long long)tid), *token = NULL;
    struct cache_claims c = {
        .repo = repo, .ref = ref, .default_ref = def_ref, .job = job,
        .expires = (int64_t)time(NULL) + (int64_t)d->cfg.runner.timeout_s + TOKEN_MARGIN_S,
    };
    struct err e = {0};

    *env_container = *env_host = NULL;
    if (d->cache &&
        jobcache_job(d->cache, &c, false, env_container, env_host, &token, &e) < 0)
        log_warn("task %lld: cache: %s; the job runs without it", (long long)tid, e.msg);
    if (token)
        mask_add(mask, token);
    free(token);
    free(job);
    free(def_ref);
    free(repo);
    free(ref);
}

void
cachesvc_stop(struct daemon *d)
{
    jobcache_close(d->cache, NULL, NULL);
    d->cache = NULL;
}
