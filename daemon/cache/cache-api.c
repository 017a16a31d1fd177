/* cache-api.c: the `_apis/artifactcache/` requests (doc/cache.md "Protocol"): lookup, reserve,
 * upload, commit and download, each authorized by the bearer token's claims (reads in the
 * token's ref then its default branch, writes only in its ref) or, for a download, by the
 * signature in its URL. Errors are JSON {"message": "..."}: the toolkit shows that message. */
#include "cache-int.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PREFIX "/_apis/artifactcache/"

/* Wall-clock seconds: token expiry, entry times. */
static int64_t
now_s(void)
{
    return (int64_t)time(NULL);
}

void
cache_api_error(struct cache_conn *c, int status, int reason, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    json_t *j;
    char *body;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (reason >= 0 && reason < CACHE_REJ_N)
        c->s->rejected[reason]++;
    {
        /* The path only: a download URL's query is a capability, and the log is no place for
         * it; escaped, since a client chose it. */
        const char *url = buf_str(&c->http.url);
        size_t n = strcspn(url, "?");
        char *path = log_escape(url, n < 120 ? n : 120), *m = log_escape(msg, strlen(msg));

        log_info("cache: %s %s: %d %s", http_method_str((enum http_method)c->http.parser.method),
                 path, status, m);
        free(path);
        free(m);
    }
    j = json_pack("{s:s}", "message", msg);
    body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    cache_conn_respond(c, status, "application/json", NULL, body ? body : "{}",
                       strlen(body ? body : "{}"));
    free(body);
}

/* Records an early refusal of the request whose head was just read. */
static void early(struct cache_conn *c, int status, enum cache_reject reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void
early(struct cache_conn *c, int status, enum cache_reject reason, const char *fmt, ...)
{
    va_list ap;

    c->early = true;
    c->early_status = status;
    c->early_reason = reason;
    va_start(ap, fmt);
    vsnprintf(c->early_msg, sizeof c->early_msg, fmt, ap);
    va_end(ap);
}

/* Answers with j (taken); 500 when it could not be built. */
static void
respond_json(struct cache_conn *c, int status, json_t *j)
{
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    if (body == NULL) {
        cache_api_error(c, 500, -1, "the answer cannot be encoded as JSON");
        return;
    }
    cache_conn_respond(c, status, "application/json", NULL, body, strlen(body));
    free(body);
}

/* ------------------------------------------------------------------------------------------
 * Requests: path, query, token
 * ------------------------------------------------------------------------------------------ */

struct req {
    char *path;  /* after PREFIX, undecoded */
    char *query; /* undecoded, or NULL */
    char *token; /* the first path segment before PREFIX ("/TOKEN/_apis/..."), or NULL */
};

/* Frees what req_parse() filled. */
static void
req_free(struct req *r)
{
    free(r->path);
    free(r->query);
    free(r->token);
}

/* Splits the URL; false (and 404/400 answered) when it is not ours. */
static bool
req_parse(struct cache_conn *c, struct req *r)
{
    struct http_parser_url u;
    const char *url = buf_str(&c->http.url);
    const char *p;
    size_t plen;

    memset(r, 0, sizeof *r);
    http_parser_url_init(&u);
    if (c->http.url.len == 0 || http_parser_parse_url(url, c->http.url.len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return false;
    p = url + u.field_data[UF_PATH].off;
    plen = u.field_data[UF_PATH].len;
    /* "/TOKEN/_apis/artifactcache/...": the job's ACTIONS_CACHE_URL carries its token, so
     * that ACTIONS_RUNTIME_TOKEN (sent as the bearer) stays Gitea's, for artifacts. */
    if (plen > 1 && p[0] == '/' &&
        (plen < strlen(PREFIX) || memcmp(p, PREFIX, strlen(PREFIX)) != 0)) {
        const char *slash = memchr(p + 1, '/', plen - 1);
        size_t seg = slash ? (size_t)(slash - p - 1) : 0;

        if (seg == 0 || seg > 4096)
            return false;
        r->token = xstrndup(p + 1, seg);
        plen -= seg + 1;
        p += seg + 1;
    }
    if (plen < strlen(PREFIX) || memcmp(p, PREFIX, strlen(PREFIX)) != 0) {
        free(r->token);
        r->token = NULL;
        return false;
    }
    r->path = xstrndup(p + strlen(PREFIX), plen - strlen(PREFIX));
    if (u.field_set & (1 << UF_QUERY))
        r->query = xstrndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    return true;
}

/* The value of one hex digit, or -1. */
static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The value of name in query, %-decoded; a new string, or NULL when absent or badly encoded
 * (a NUL byte included). */
static char *
query_get(const char *query, const char *name)
{
    size_t nlen = strlen(name);

    for (const char *p = query; p != NULL && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *out, *o;

        if (len <= nlen || strncmp(p, name, nlen) != 0 || p[nlen] != '=')
            continue;
        out = o = xmalloc(len + 1);
        for (size_t i = nlen + 1; i < len; i++) {
            if (p[i] == '%') {
                int hi = i + 2 < len ? hexval(p[i + 1]) : -1;
                int lo = hi >= 0 ? hexval(p[i + 2]) : -1;

                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                    free(out);
                    return NULL;
                }
                *o++ = (char)(hi << 4 | lo);
                i += 2;
            } else {
                *o++ = p[i];
            }
        }
        *o = '\0';
        return out;
    }
    return NULL;
}

/* The token's claims into *cl; false when it is missing, bad or expired. The token in the
 * URL's path (r->token) wins: the bearer is then Gitea's runtime token, not ours. */
static bool
authorize(struct cache_conn *c, const struct req *r, struct cache_claims *cl, const char **why)
{
    const char *a = c->auth;
    int rc;

    if (r->token != NULL) {
        rc = cache_token_verify(c->s->key, r->token, now_s(), cl);
        if (rc == -ETIMEDOUT)
            *why = "the token in the URL has expired";
        else if (rc < 0)
            *why = "the token in the URL is not valid here";
        return rc == 0;
    }
    if (a == NULL || *a == '\0') {
        *why = "no bearer token (Authorization: Bearer TOKEN)";
        return false;
    }
    if (strncasecmp(a, "Bearer ", 7) != 0) {
        *why = "expected Authorization: Bearer TOKEN";
        return false;
    }
    a += 7;
    while (*a == ' ')
        a++;
    rc = cache_token_verify(c->s->key, a, now_s(), cl);
    if (rc == -ETIMEDOUT)
        *why = "the token has expired";
    else if (rc < 0)
        *why = "the token is not valid here";
    return rc == 0;
}

/* A positive decimal id of at most 15 digits, else -1. */
static int64_t
parse_id(const char *s)
{
    int64_t v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 15 || strspn(s, "0123456789") != n || s[0] == '0')
        return -1;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* Entry id reserved (not committed) under the token's own repo and ref. Returns 0 and *en,
 * or a status with msg filled. */
static int
own_reservation(struct cache_conn *c, const struct cache_claims *cl, int64_t id,
                struct cache_entry *en, const char **msg, enum cache_reject *reason)
{
    struct err e = {0};
    int rc = cache_store_get(c->s->st, id, en, &e);

    *reason = CACHE_REJ_AUTH;
    if (rc == ERR_NOTFOUND) {
        *msg = "no such cache reservation";
        return 404;
    }
    if (rc < 0) {
        log_err("%s", e.msg);
        *reason = CACHE_REJ_IO;
        *msg = "the cache index failed";
        return 500;
    }
    if (strcmp(en->repo, cl->repo) != 0 || strcmp(en->ref, cl->ref) != 0) {
        /* Another scope's: as if it did not exist, so ids reveal nothing. */
        cache_entry_clear(en);
        *msg = "no such cache reservation";
        return 404;
    }
    if (en->committed) {
        cache_entry_clear(en);
        *reason = CACHE_REJ_CONFLICT;
        *msg = "the entry is committed already";
        return 409;
    }
    return 0;
}

/* Whether o, another connection than c, uploads to (or commits) id across [start, end]. */
static bool
overlaps(const struct cache_conn *o, const struct cache_conn *c, int64_t id, int64_t start,
         int64_t end)
{
    if (o == c)
        return false;
    return o->commit_id == id || (o->up_id == id && o->body_mode == CACHE_BODY_UPLOAD &&
                                  !(end < o->up_start || start > o->up_end));
}

bool
cache_api_upload_overlaps(struct cache_server *s, const struct cache_conn *c, int64_t id,
                          int64_t start, int64_t end)
{
    for (struct httpsrv_conn *hc = s->http.conns; hc != NULL; hc = hc->next)
        if (overlaps(cache_conn_of(hc), c, id, start, end))
            return true;
    for (const struct cache_conn *o = s->zombies; o != NULL; o = o->znext)
        if (overlaps(o, c, id, start, end))
            return true;
    return false;
}

/* ------------------------------------------------------------------------------------------
 * PATCH caches/ID: checked at its head, so a refused chunk is never read
 * ------------------------------------------------------------------------------------------ */

/* Checks a chunk of entry id before its body: token, owner, range, caps, overlaps; then opens
 * the part file for the body to be written to, or refuses early. */
static void
upload_head(struct cache_conn *c, const struct req *r, int64_t id)
{
    struct cache_server *s = c->s;
    struct cache_claims cl = {0};
    struct cache_entry en = {0};
    struct cache_range *parts = NULL;
    size_t n = 0;
    int64_t start, end, len, pending = 0;
    const char *why;
    enum cache_reject reason;
    struct err e = {0};
    char *path;
    int status;

    if (!authorize(c, r, &cl, &why)) {
        early(c, 401, CACHE_REJ_AUTH, "%s", why);
        return;
    }
    if (id < 0) {
        early(c, 400, CACHE_REJ_RANGE, "expected a cache id after caches/");
        goto out;
    }
    status = own_reservation(c, &cl, id, &en, &why, &reason);
    if (status != 0) {
        early(c, status, reason, "%s", why);
        goto out;
    }
    if (cache_parse_content_range(c->content_range, &start, &end) < 0) {
        early(c, 400, CACHE_REJ_RANGE,
              "expected Content-Range: bytes START-END/* (inclusive, END >= START)");
        goto out;
    }
    len = end - start + 1;
    if (len > CACHE_MAX_CHUNK) {
        early(c, 413, CACHE_REJ_SIZE, "a chunk is %lld MiB at most", CACHE_MAX_CHUNK >> 20);
        goto out;
    }
    if (end >= s->max_size || (en.size > 0 && end >= en.size)) {
        early(c, 413, CACHE_REJ_SIZE, "the range ends past the %s (%" PRId64 " bytes)",
              en.size > 0 && en.size < s->max_size ? "size reserved" : "cache's size cap",
              en.size > 0 && en.size < s->max_size ? en.size : s->max_size);
        goto out;
    }
    if (!(c->http.parser.flags & F_CHUNKED) && c->http.parser.content_length != ULLONG_MAX &&
        (int64_t)c->http.parser.content_length != len) {
        early(c, 400, CACHE_REJ_SIZE,
              "Content-Length %" PRIu64 " but the range has %" PRId64 " bytes",
              (uint64_t)c->http.parser.content_length, len);
        goto out;
    }
    if (cache_store_parts(s->st, id, &parts, &n, &e) < 0 ||
        cache_store_pending_bytes(s->st, &pending, &e) < 0) {
        log_err("%s", e.msg);
        early(c, 500, CACHE_REJ_IO, "the cache index failed");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        bool same = parts[i].start == start && parts[i].end == end;

        if (!same && !(end < parts[i].start || start > parts[i].end)) {
            early(c, 400, CACHE_REJ_RANGE,
                  "bytes %" PRId64 "-%" PRId64 " overlap bytes %" PRId64 "-%" PRId64
                  " uploaded already",
                  start, end, parts[i].start, parts[i].end);
            goto out;
        }
        if (same)
            pending -= len; /* a retry replaces it */
    }
    if (cache_api_upload_overlaps(s, c, id, start, end)) {
        early(c, 409, CACHE_REJ_RANGE, "another request is uploading or committing these bytes");
        goto out;
    }
    if (pending + len > s->max_size) {
        early(c, 413, CACHE_REJ_SIZE, "uploads in progress would pass the cache's size cap");
        goto out;
    }
    path = cache_store_part_path(s->st, id);
    c->up_fd = open(path, O_WRONLY | O_CLOEXEC);
    if (c->up_fd < 0) {
        log_err("cache: %s: %s", path, strerror(errno));
        free(path);
        early(c, 500, CACHE_REJ_IO, "the part file cannot be opened");
        goto out;
    }
    free(path);
    c->body_mode = CACHE_BODY_UPLOAD;
    c->up_id = id;
    c->up_start = c->up_off = start;
    c->up_end = end;
out:
    free(parts);
    cache_entry_clear(&en);
    cache_claims_free(&cl);
}

/* A chunk's body is written: records its range when it was complete. */
static void
upload_done(struct cache_conn *c)
{
    struct err e = {0};
    int64_t id = c->up_id;

    c->up_id = 0; /* no longer in flight */
    if (c->up_off != c->up_end + 1) {
        cache_api_error(c, 400, CACHE_REJ_SIZE,
                        "the body has %" PRId64 " bytes but the range %" PRId64 "-%" PRId64
                        " has %" PRId64,
                        c->up_off - c->up_start, c->up_start, c->up_end,
                        c->up_end - c->up_start + 1);
        return;
    }
    if (cache_store_add_part(c->s->st, id, c->up_start, c->up_end, &e) < 0) {
        /* The reservation expired meanwhile (its row is gone). */
        log_info("cache: %s", e.msg);
        cache_api_error(c, 404, CACHE_REJ_AUTH, "no such cache reservation");
        return;
    }
    cache_conn_respond(c, 204, NULL, NULL, NULL, 0);
}

void
cache_api_head(struct cache_conn *c)
{
    struct req r;

    c->body_mode = CACHE_BODY_JSON;
    if (c->http.parser.method != HTTP_PATCH || !req_parse(c, &r))
        return;
    if (strncmp(r.path, "caches/", 7) == 0)
        upload_head(c, &r, parse_id(r.path + 7));
    req_free(&r);
}

/* ------------------------------------------------------------------------------------------
 * GET cache?keys=K1,K2&version=V
 * ------------------------------------------------------------------------------------------ */

/* The URL the client reached us by: its Host header when it looks like a host (and port),
 * else the address of the socket it connected to. */
static char *
base_url(struct cache_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[64] = "127.0.0.1";
    int port = c->s->http.port;

    if (c->host != NULL && *c->host != '\0' && strlen(c->host) <= 255 &&
        strspn(c->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
            strlen(c->host))
        return xasprintf("http://%s", c->host);
    if (uv_tcp_getsockname(&c->http.tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            char a[INET6_ADDRSTRLEN];

            uv_ip6_name(s6, a, sizeof a);
            snprintf(ip, sizeof ip, "[%s]", a);
            port = ntohs(s6->sin6_port);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

            uv_ip4_name(s4, ip, sizeof ip);
            port = ntohs(s4->sin_port);
        }
    }
    return xasprintf("http://%s:%d", ip, port);
}

/* Finds an entry by the scope rule (doc/cache.md §2) and answers its signed download URL. */
static void
lookup(struct cache_conn *c, const struct req *r, const struct cache_claims *cl)
{
    struct cache_server *s = c->s;
    char *keys_s = query_get(r->query, "keys"), *version = query_get(r->query, "version");
    char *keys[CACHE_MAX_KEYS];
    const char *scopes[2];
    size_t n_keys = 0, n_scopes = 0;
    struct cache_entry en = {0};
    struct err e = {0};
    int rc;

    if (keys_s == NULL || version == NULL || *keys_s == '\0' || *version == '\0') {
        cache_api_error(c, 400, -1, "expected ?keys=KEY[,RESTORE-KEY...]&version=VERSION");
        goto out;
    }
    if (strlen(version) > CACHE_MAX_VERSION) {
        cache_api_error(c, 400, -1, "the version is %d bytes at most", CACHE_MAX_VERSION);
        goto out;
    }
    for (char *p = keys_s, *comma;; p = comma + 1) {
        comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (*p == '\0' || strlen(p) > CACHE_MAX_KEY || n_keys == CACHE_MAX_KEYS) {
            cache_api_error(c, 400, -1,
                            "expected 1 to %d keys of 1 to %d bytes, separated by commas",
                            CACHE_MAX_KEYS, CACHE_MAX_KEY);
            goto out;
        }
        keys[n_keys++] = p;
        if (comma == NULL)
            break;
    }
    scopes[n_scopes++] = cl->ref;
    if (cl->default_ref != NULL && *cl->default_ref != '\0' &&
        strcmp(cl->default_ref, cl->ref) != 0)
        scopes[n_scopes++] = cl->default_ref;
    rc = cache_store_lookup(s->st, cl->repo, scopes, n_scopes, keys, n_keys, version, &en, &e);
    if (rc == ERR_NOTFOUND) {
        s->misses++;
        cache_conn_respond(c, 204, NULL, NULL, NULL, 0);
    } else if (rc < 0) {
        log_err("%s", e.msg);
        cache_api_error(c, 500, -1, "the cache index failed");
    } else {
        int64_t exp = now_s() + CACHE_URL_TTL;
        char *sig, *base = base_url(c), *loc, created[32];
        struct tm tm;
        time_t t = (time_t)en.created;

        if (cl->expires < exp)
            exp = cl->expires;
        sig = cache_download_sig(s->key, en.id, en.created, exp);
        loc = xasprintf("%s" PREFIX "artifacts/%" PRId64 "?exp=%" PRId64 "&sig=%s", base, en.id,
                        exp, sig);
        gmtime_r(&t, &tm);
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
        s->hits++;
        cache_store_touch(s->st, en.id, now_s());
        respond_json(c, 200,
                     json_pack("{s:s, s:s, s:s, s:s, s:s}", "result", "hit", "cacheKey", en.key,
                               "scope", en.ref, "creationTime", created, "archiveLocation", loc));
        free(sig);
        free(base);
        free(loc);
        cache_entry_clear(&en);
    }
out:
    free(keys_s);
    free(version);
}

/* GET caches?key=K: the toolkit lists the entries of its primary key after a miss, in debug
 * mode, to say which versions exist. The token's scopes only; at most 100. */
static void
list(struct cache_conn *c, const struct req *r, const struct cache_claims *cl)
{
    char *key = query_get(r->query, "key");
    const char *scopes[2];
    size_t n_scopes = 0, n = 0;
    struct cache_entry *v = NULL;
    struct err e = {0};
    json_t *arr;

    if (key == NULL || *key == '\0' || strlen(key) > CACHE_MAX_KEY) {
        cache_api_error(c, 400, -1, "expected ?key=KEY (1 to %d bytes)", CACHE_MAX_KEY);
        free(key);
        return;
    }
    scopes[n_scopes++] = cl->ref;
    if (cl->default_ref != NULL && *cl->default_ref != '\0' &&
        strcmp(cl->default_ref, cl->ref) != 0)
        scopes[n_scopes++] = cl->default_ref;
    if (cache_store_list(c->s->st, cl->repo, scopes, n_scopes, key, 100, &v, &n, &e) < 0) {
        log_err("%s", e.msg);
        cache_api_error(c, 500, -1, "the cache index failed");
    } else {
        arr = json_array();
        for (size_t i = 0; i < n; i++) {
            char created[32];
            time_t t = (time_t)v[i].created;
            struct tm tm;

            gmtime_r(&t, &tm);
            strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "cacheKey", v[i].key,
                                                 "scope", v[i].ref, "cacheVersion", v[i].version,
                                                 "creationTime", created));
        }
        respond_json(c, 200,
                     json_pack("{s:I, s:o}", "totalCount", (json_int_t)n, "artifactCaches", arr));
    }
    for (size_t i = 0; i < n; i++)
        cache_entry_clear(&v[i]);
    free(v);
    free(key);
}

/* ------------------------------------------------------------------------------------------
 * POST caches {key, version, cacheSize}, POST caches/ID {size}
 * ------------------------------------------------------------------------------------------ */

/* The request's JSON object, or NULL (400 answered). */
static json_t *
body_json(struct cache_conn *c)
{
    json_error_t jerr;
    json_t *j = json_loadb(buf_str(&c->body), c->body.len, JSON_REJECT_DUPLICATES, &jerr);

    if (!json_is_object(j)) {
        json_decref(j);
        cache_api_error(c, 400, -1, "expected a JSON object: %s", j ? "not an object" : jerr.text);
        return NULL;
    }
    return j;
}

/* Reserves a key and version under the token's own ref. */
static void
reserve(struct cache_conn *c, const struct cache_claims *cl)
{
    struct cache_server *s = c->s;
    json_t *j = body_json(c), *jsize;
    const char *key, *version;
    int64_t size = 0, id = 0;
    struct err e = {0};
    int rc;

    if (j == NULL)
        return;
    key = json_string_value(json_object_get(j, "key"));
    version = json_string_value(json_object_get(j, "version"));
    jsize = json_object_get(j, "cacheSize");
    if (key == NULL || *key == '\0' || strlen(key) > CACHE_MAX_KEY || strchr(key, ',') ||
        strlen(key) != json_string_length(json_object_get(j, "key"))) {
        cache_api_error(c, 400, -1, "expected \"key\": 1 to %d bytes without commas",
                        CACHE_MAX_KEY);
        goto out;
    }
    if (version == NULL || *version == '\0' || strlen(version) > CACHE_MAX_VERSION ||
        strlen(version) != json_string_length(json_object_get(j, "version"))) {
        cache_api_error(c, 400, -1, "expected \"version\": 1 to %d bytes", CACHE_MAX_VERSION);
        goto out;
    }
    if (jsize != NULL && !json_is_null(jsize)) {
        if (!json_is_integer(jsize) || json_integer_value(jsize) < 0) {
            cache_api_error(c, 400, CACHE_REJ_SIZE, "expected \"cacheSize\": bytes, >= 0");
            goto out;
        }
        size = json_integer_value(jsize);
        if (size > s->max_size) {
            cache_api_error(c, 400, CACHE_REJ_SIZE,
                            "Cache size of %" PRId64 " bytes is over this cache's cap of %" PRId64
                            " bytes",
                            size, s->max_size);
            goto out;
        }
    }
    rc = cache_store_reserve(s->st, cl->repo, cl->ref, key, version, size, now_s(), &id, &e);
    if (rc == -EBUSY) {
        /* The reservation in the way may have expired since the last eviction. */
        cache_server_evict(s);
        rc = cache_store_reserve(s->st, cl->repo, cl->ref, key, version, size, now_s(), &id, &e);
    }
    if (rc == -EMFILE) {
        cache_api_error(c, 429, CACHE_REJ_CONFLICT, "%s", e.msg);
    } else if (rc == -EEXIST || rc == -EBUSY) {
        cache_api_error(c, 409, CACHE_REJ_CONFLICT, "%s", e.msg);
    } else if (rc < 0) {
        log_err("%s", e.msg);
        cache_api_error(c, 500, CACHE_REJ_IO, "the cache index failed");
    } else {
        log_info("cache: reserved %" PRId64 " for %s %s (job %s)", id, cl->repo, cl->ref,
                 cl->job ? cl->job : "");
        respond_json(c, 200, json_pack("{s:I}", "cacheId", (json_int_t)id));
    }
out:
    json_decref(j);
}

/* The part is on disk: the commit's transaction, eviction, then the answer. */
static void
on_commit_synced(struct cache_conn *c, int status)
{
    struct cache_server *s = c->s;
    struct err e = {0};
    int64_t id = c->commit_id, size = c->commit_size;
    int rc;

    c->commit_id = 0;
    if (status < 0) {
        log_err("cache: fsync of entry %" PRId64 ": %s", id, uv_strerror(status));
        cache_api_error(c, 500, CACHE_REJ_IO, "the upload could not be synced to disk");
        return;
    }
    rc = cache_store_commit(s->st, id, size, now_s(), &e);
    if (rc == ERR_NOTFOUND) {
        cache_api_error(c, 404, CACHE_REJ_AUTH, "no such cache reservation (it expired)");
        return;
    }
    if (rc < 0) {
        log_err("cache: commit %" PRId64 ": %s", id, e.msg);
        cache_api_error(c, 500, CACHE_REJ_IO, "the commit failed");
        return;
    }
    log_info("cache: committed %" PRId64 " (%" PRId64 " bytes)", id, size);
    /* Before the answer: when the client hears of its commit, the cap holds again. */
    cache_server_evict(s);
    cache_conn_respond(c, 204, NULL, NULL, NULL, 0);
}

/* Checks that the chunks of id cover {size} exactly, then syncs the part (thread pool). */
static void
commit(struct cache_conn *c, const struct cache_claims *cl, int64_t id)
{
    struct cache_server *s = c->s;
    struct cache_entry en = {0};
    struct cache_range *parts = NULL;
    size_t n = 0;
    json_t *j = NULL, *jsize;
    int64_t size, cursor = 0;
    enum cache_reject reason;
    const char *why;
    struct err e = {0};
    char *path = NULL;
    struct stat sb;
    int status, fd;

    status = id < 0 ? 400 : own_reservation(c, cl, id, &en, &why, &reason);
    if (status != 0) {
        cache_api_error(c, status, id < 0 ? -1 : (int)reason, "%s",
                        id < 0 ? "expected a cache id after caches/" : why);
        return;
    }
    j = body_json(c);
    if (j == NULL)
        goto out;
    jsize = json_object_get(j, "size");
    if (!json_is_integer(jsize) || json_integer_value(jsize) < 0) {
        cache_api_error(c, 400, CACHE_REJ_SIZE, "expected {\"size\": bytes}");
        goto out;
    }
    size = json_integer_value(jsize);
    if (size > s->max_size || (en.size > 0 && size != en.size)) {
        cache_api_error(c, 400, CACHE_REJ_SIZE,
                        "size %" PRId64 " is over the cap or not the "
                        "size reserved",
                        size);
        goto out;
    }
    if (cache_api_upload_overlaps(s, c, id, 0, INT64_MAX)) {
        cache_api_error(c, 409, CACHE_REJ_CONFLICT, "chunks of this entry are still uploading");
        goto out;
    }
    if (cache_store_parts(s->st, id, &parts, &n, &e) < 0) {
        log_err("%s", e.msg);
        cache_api_error(c, 500, CACHE_REJ_IO, "the cache index failed");
        goto out;
    }
    for (size_t i = 0; i < n && parts[i].start == cursor; i++)
        cursor = parts[i].end + 1;
    if (cursor != size || (n > 0 && parts[n - 1].end + 1 != size)) {
        cache_api_error(c, 400, CACHE_REJ_INCOMPLETE,
                        "the chunks uploaded do not cover bytes 0-%" PRId64 " exactly (%zu chunks, "
                        "contiguous up to %" PRId64 ")",
                        size - 1, n, cursor);
        goto out;
    }
    path = cache_store_part_path(s->st, id);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || (sb.st_size > size && ftruncate(fd, size) != 0)) {
        log_err("cache: %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        cache_api_error(c, 500, CACHE_REJ_IO, "the part file cannot be read");
        goto out;
    }
    c->commit_id = id;
    c->commit_size = size;
    cache_conn_fsync(c, fd, on_commit_synced);
out:
    free(path);
    free(parts);
    json_decref(j);
    cache_entry_clear(&en);
}

/* ------------------------------------------------------------------------------------------
 * GET/HEAD artifacts/ID?exp=E&sig=S
 * ------------------------------------------------------------------------------------------ */

/* Serves a blob (whole, or one range) to whoever holds its signed URL. */
static void
download(struct cache_conn *c, const struct req *r, int64_t id)
{
    struct cache_server *s = c->s;
    char *exp_s = query_get(r->query, "exp"), *sig = query_get(r->query, "sig"), *want = NULL;
    char *path = NULL, extra[160];
    struct cache_entry en = {0};
    struct err e = {0};
    int64_t exp, start = 0, end = 0;
    struct stat sb;
    int rc, fd = -1;

    exp = exp_s ? parse_id(exp_s) : -1;
    if (id < 0 || exp < 0 || sig == NULL) {
        cache_api_error(c, 401, CACHE_REJ_AUTH, "a download URL needs its exp and sig");
        goto out;
    }
    if (exp < now_s()) {
        cache_api_error(c, 401, CACHE_REJ_AUTH, "the download URL has expired");
        goto out;
    }
    rc = cache_store_get(s->st, id, &en, &e);
    if (rc == 0 && en.committed) {
        want = cache_download_sig(s->key, id, en.created, exp);
        rc = strlen(sig) == strlen(want) && cache_ct_equal(sig, want, strlen(want)) ? 0 : -1;
    } else {
        rc = -1;
    }
    if (rc < 0) {
        cache_api_error(c, 404, CACHE_REJ_AUTH, "no such cache entry");
        goto out;
    }
    path = cache_store_blob_path(s->st, id);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size != en.size) {
        log_err("cache: %s: %s", path, fd < 0 ? strerror(errno) : "not the committed size");
        cache_api_error(c, 500, CACHE_REJ_IO, "the blob cannot be read");
        goto out;
    }
    cache_store_touch(s->st, id, now_s());
    rc = cache_parse_range(c->range, en.size, &start, &end);
    if (rc == -ERANGE) {
        snprintf(extra, sizeof extra, "Content-Range: bytes */%" PRId64 "\r\n", en.size);
        cache_conn_respond(c, 416, "application/json", extra, "{}", 2);
    } else if (rc == 1) {
        snprintf(extra, sizeof extra,
                 "Accept-Ranges: bytes\r\nContent-Range: bytes %" PRId64 "-%" PRId64 "/%" PRId64
                 "\r\n",
                 start, end, en.size);
        cache_conn_send_file(c, 206, extra, fd, start, end - start + 1);
        fd = -1;
    } else {
        cache_conn_send_file(c, 200, "Accept-Ranges: bytes\r\n", fd, 0, en.size);
        fd = -1;
    }
out:
    if (fd >= 0)
        close(fd);
    free(path);
    free(want);
    free(exp_s);
    free(sig);
    cache_entry_clear(&en);
}

/* ------------------------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------------------------ */

void
cache_api_handle(struct cache_conn *c)
{
    enum http_method m = (enum http_method)c->http.parser.method;
    struct cache_claims cl = {0};
    const char *why;
    struct req r;

    if (c->body_mode == CACHE_BODY_UPLOAD) {
        upload_done(c);
        return;
    }
    if (!req_parse(c, &r)) {
        cache_api_error(c, 404, -1, "not found: the cache answers under " PREFIX);
        return;
    }
    if (strncmp(r.path, "artifacts/", 10) == 0) {
        if (m == HTTP_GET || m == HTTP_HEAD)
            download(c, &r, parse_id(r.path + 10));
        else
            cache_api_error(c, 405, -1, "artifacts/ID: GET or HEAD");
        goto out;
    }
    if (strcmp(r.path, "cache") != 0 && strcmp(r.path, "caches") != 0 &&
        strncmp(r.path, "caches/", 7) != 0) {
        cache_api_error(c, 404, -1, "not found");
        goto out;
    }
    if (!authorize(c, &r, &cl, &why)) {
        cache_api_error(c, 401, CACHE_REJ_AUTH, "%s", why);
        goto out;
    }
    if (strcmp(r.path, "cache") == 0 && (m == HTTP_GET || m == HTTP_HEAD))
        lookup(c, &r, &cl);
    else if (strcmp(r.path, "caches") == 0 && m == HTTP_POST)
        reserve(c, &cl);
    else if (strcmp(r.path, "caches") == 0 && (m == HTTP_GET || m == HTTP_HEAD))
        list(c, &r, &cl);
    else if (strncmp(r.path, "caches/", 7) == 0 && m == HTTP_POST)
        commit(c, &cl, parse_id(r.path + 7));
    else
        cache_api_error(c, 405, -1, "method not allowed here");
out:
    cache_claims_free(&cl);
    req_free(&r);
}
