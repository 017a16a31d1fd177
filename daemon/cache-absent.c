/* cache-absent.c: stands in for the actions/cache server (cache/cache.h) while its
 * implementation is not in daemon/cache/ (daemon/CMakeLists.txt builds this file only then).
 * Every call fails saying so, and the front ends run their jobs without a cache. Remove it
 * once daemon/cache/ is built. */
#include "cache.h"

#include <errno.h>
#include <stddef.h>

#define ABSENT "the actions/cache server is not built into this program"

int
cache_token_mint(const uint8_t key[CACHE_KEY_LEN], const struct cache_claims *c, char **out)
{
    (void)key;
    (void)c;
    *out = NULL;
    return -ENOSYS;
}

int
cache_token_verify(const uint8_t key[CACHE_KEY_LEN], const char *tok, int64_t now,
                   struct cache_claims *out)
{
    (void)key;
    (void)tok;
    (void)now;
    (void)out;
    return -ENOSYS;
}

void
cache_claims_free(struct cache_claims *c)
{
    (void)c;
}

int
cache_key_load(const char *path, bool create, uint8_t key[CACHE_KEY_LEN], struct err *e)
{
    (void)path;
    (void)create;
    (void)key;
    return err_set(e, -ENOSYS, ABSENT);
}

int
cache_server_start(uv_loop_t *loop, const struct cache_server_opts *o, struct cache_server **out,
                   struct err *e)
{
    (void)loop;
    (void)o;
    *out = NULL;
    return err_set(e, -ENOSYS, ABSENT);
}

int
cache_server_listen(struct cache_server *s, const char *ip, struct err *e)
{
    (void)s;
    (void)ip;
    return err_set(e, -ENOSYS, ABSENT);
}

int
cache_server_port(const struct cache_server *s)
{
    (void)s;
    return 0;
}

void
cache_server_metrics(const struct cache_server *s, struct buf *out)
{
    (void)s;
    (void)out;
}

void
cache_server_evict(struct cache_server *s)
{
    (void)s;
}

void
cache_server_close(struct cache_server *s, void (*done)(void *arg), void *arg)
{
    (void)s;
    if (done)
        done(arg);
}

struct json_t *
cache_job_env(const char *base_url, const char *token)
{
    (void)base_url;
    (void)token;
    return NULL;
}
