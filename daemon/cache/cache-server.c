/* cache-server.c: the cache server's life (cache.h): opening the store, listening on any number
 * of addresses with one port, the eviction timer, metrics, and the two-phase close. */
#include "cache-int.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define GIB (1024LL * 1024 * 1024)

/* Parses "IP:PORT", "[IPv6]:PORT" or a bare IP (port: default_port) into ss. */
static int
parse_listen(const char *addr, int default_port, struct sockaddr_storage *ss, struct err *e)
{
    char host[64];
    const char *port = NULL, *end;
    size_t hlen;
    long pnum = default_port;

    memset(ss, 0, sizeof *ss);
    if (addr == NULL || *addr == '\0')
        return err_set(e, ERR_INVALID, "empty address: expected IP:PORT, e.g. 172.17.0.1:8088");
    if (addr[0] == '[') {
        end = strchr(addr, ']');
        if (end == NULL || (end[1] != ':' && end[1] != '\0'))
            return err_set(e, ERR_INVALID, "\"%.80s\": expected [IPv6]:PORT", addr);
        hlen = (size_t)(end - addr - 1);
        port = end[1] == ':' ? end + 2 : NULL;
        addr++;
    } else {
        end = strchr(addr, ':');
        hlen = end ? (size_t)(end - addr) : strlen(addr);
        port = end ? end + 1 : NULL;
        if (end != NULL && strchr(end + 1, ':') != NULL)
            return err_set(e, ERR_INVALID, "\"%.80s\": an IPv6 address needs brackets", addr);
    }
    if (hlen == 0 || hlen >= sizeof host)
        return err_set(e, ERR_INVALID, "\"%.80s\": expected IP:PORT", addr);
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    if (port != NULL) {
        char *pend;

        pnum = strtol(port, &pend, 10);
        if (*port == '\0' || *pend != '\0' || pnum < 0 || pnum > 65535 || strlen(port) > 5)
            return err_set(e, ERR_INVALID, "\"%.80s\": bad port: expected 0 to 65535", addr);
    }
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)pnum);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)ss)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)pnum);
        return 0;
    }
    return err_set(e, ERR_INVALID, "\"%.80s\": expected an IP address (names are not resolved)",
                   addr);
}

void
cache_server_unref(struct cache_server *s)
{
    void (*done)(void *);
    void *arg;

    if (--s->open_handles > 0 || !s->closing)
        return;
    done = s->done;
    arg = s->done_arg;
    cache_store_free(s->st);
    free(s);
    if (done != NULL)
        done(arg);
}

/* The eviction timer is closed. */
static void
on_timer_closed(uv_handle_t *h)
{
    cache_server_unref(h->data);
}

/* The listeners and connections' handles are closed (zombies may still wait for their
 * writes, each holding its own reference). */
static void
on_http_closed(void *arg)
{
    cache_server_unref(arg);
}

/* Listens on addr; every address gets the server's port once it has one. */
static int
listen_on(struct cache_server *s, const char *addr, struct err *e)
{
    struct sockaddr_storage ss;
    int rc;

    rc = parse_listen(addr, s->http.port, &ss, e);
    if (rc < 0)
        return rc;
    if (s->http.port > 0) {
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)s->http.port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)s->http.port);
    }
    rc = httpsrv_listen(&s->http, (struct sockaddr *)&ss, addr, e);
    if (rc < 0)
        return err_prefix(e, "cache: ");
    return 0;
}

int
cache_server_listen(struct cache_server *s, const char *ip, struct err *e)
{
    return listen_on(s, ip, e);
}

int
cache_server_port(const struct cache_server *s)
{
    return s->http.port;
}

/* Eviction every CACHE_EVICT_MS, for caps that time alone passes (age, reservations). */
static void
on_evict_timer(uv_timer_t *t)
{
    cache_server_evict(t->data);
}

void
cache_server_evict(struct cache_server *s)
{
    struct err e = {0};
    int64_t n = 0;

    if (cache_store_evict(s->st, s->max_size, s->max_age, s->reserve_ttl, (int64_t)time(NULL), &n,
                          &e) < 0)
        log_err("cache: eviction: %s", e.msg);
    if (n > 0)
        log_info("cache: evicted %" PRId64 " entries", n);
    s->evictions += (uint64_t)n;
}

int
cache_server_start(uv_loop_t *loop, const struct cache_server_opts *o, struct cache_server **out,
                   struct err *e)
{
    struct cache_server *s;
    struct statvfs vfs;
    struct sigaction old_pipe;
    int rc;

    *out = NULL;
    /* A client gone in the middle of a response must cost its connection, not the process: a
     * write to a socket already shut may raise SIGPIPE (libuv writes with writev()). Only a
     * default disposition is changed, as hostexec_start() does. */
    if (sigaction(SIGPIPE, NULL, &old_pipe) == 0 && old_pipe.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    if (o->n_listen < 1 || o->dir == NULL || o->db_path == NULL || o->key == NULL)
        return err_set(e, ERR_INVALID, "cache: a dir, a database, a key and an address needed");
    s = xcalloc(1, sizeof *s);
    s->loop = loop;
    memcpy(s->key, o->key, CACHE_KEY_LEN);
    s->max_age = o->max_age > 0 ? o->max_age : 7 * 24 * 3600;
    s->reserve_ttl = o->reserve_ttl > 0 ? o->reserve_ttl : 3600;
    rc = cache_store_open(o->db_path, o->dir, &s->st, e);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->max_size = o->max_size;
    if (s->max_size <= 0) {
        s->max_size = 10 * GIB;
        if (statvfs(o->dir, &vfs) == 0 &&
            (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize / 10 < s->max_size)
            s->max_size = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize / 10;
    }
    uv_timer_init(loop, &s->evict_timer);
    s->evict_timer.data = s;
    httpsrv_init(&s->http, loop, &cache_conn_limits, &cache_conn_hooks, s);
    s->open_handles = 2; /* the timer and http */
    for (size_t i = 0; i < o->n_listen; i++) {
        rc = listen_on(s, o->listen[i], e);
        if (rc < 0) {
            cache_server_close(s, NULL, NULL);
            return rc;
        }
    }
    cache_server_evict(s);
    uv_timer_start(&s->evict_timer, on_evict_timer, CACHE_EVICT_MS, CACHE_EVICT_MS);
    log_notice("cache: %s, cap %" PRId64 " MiB, entries unused for %" PRId64 " s evicted", o->dir,
               s->max_size >> 20, s->max_age);
    *out = s;
    return 0;
}

void
cache_server_metrics(const struct cache_server *s, struct buf *out)
{
    static const char *const reasons[CACHE_REJ_N] = {
        [CACHE_REJ_AUTH] = "auth",
        [CACHE_REJ_RANGE] = "range",
        [CACHE_REJ_SIZE] = "size",
        [CACHE_REJ_CONFLICT] = "conflict",
        [CACHE_REJ_INCOMPLETE] = "incomplete",
        [CACHE_REJ_IO] = "io",
    };
    int64_t bytes = 0, entries = 0;

    cache_store_stats(s->st, &bytes, &entries);
    buf_printf(out,
               "# HELP runnerd_cache_hits_total Cache lookups that found an entry.\n"
               "# TYPE runnerd_cache_hits_total counter\n"
               "runnerd_cache_hits_total %" PRIu64 "\n",
               s->hits);
    buf_printf(out,
               "# HELP runnerd_cache_misses_total Cache lookups that found nothing.\n"
               "# TYPE runnerd_cache_misses_total counter\n"
               "runnerd_cache_misses_total %" PRIu64 "\n",
               s->misses);
    buf_printf(out,
               "# HELP runnerd_cache_bytes Bytes of committed cache entries.\n"
               "# TYPE runnerd_cache_bytes gauge\n"
               "runnerd_cache_bytes %" PRId64 "\n",
               bytes);
    buf_printf(out,
               "# HELP runnerd_cache_entries Committed cache entries.\n"
               "# TYPE runnerd_cache_entries gauge\n"
               "runnerd_cache_entries %" PRId64 "\n",
               entries);
    buf_printf(out,
               "# HELP runnerd_cache_evictions_total Cache entries evicted.\n"
               "# TYPE runnerd_cache_evictions_total counter\n"
               "runnerd_cache_evictions_total %" PRIu64 "\n",
               s->evictions);
    buf_puts(out, "# HELP runnerd_cache_uploads_rejected_total Cache writes refused, by reason.\n"
                  "# TYPE runnerd_cache_uploads_rejected_total counter\n");
    for (int i = 0; i < CACHE_REJ_N; i++)
        buf_printf(out, "runnerd_cache_uploads_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
                   reasons[i], s->rejected[i]);
}

void
cache_server_close(struct cache_server *s, void (*done)(void *arg), void *arg)
{
    struct err e = {0};

    assert(!s->closing);
    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    httpsrv_close(&s->http, on_http_closed, s);
    /* In-flight uploads are dropped: their reservations and parts go now, as after a crash. */
    if (cache_store_drop_uncommitted(s->st, &e) < 0)
        log_warn("cache: %s", e.msg);
    uv_close((uv_handle_t *)&s->evict_timer, on_timer_closed);
}
