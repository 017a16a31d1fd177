/* test-cache.c: daemon/cache/ in-process. Covers: HMAC-SHA256 against RFC 4231's vectors
 * (a key longer than a block included); base64url both ways (every length, bad characters,
 * non-canonical trailing bits); tokens: a round trip (the repo case-folded), a tampered payload
 * (ref and repo changed, signature kept), a signature of another key, an expired token (and one
 * a second before expiry), malformed tokens (no dot, empty parts, bad base64, JSON that is not
 * an object, no exp, no repo), mint refusing a NULL repo or ref; the key file (created 0600,
 * read back the same, a short or non-hex file refused, a world-readable one refused); the
 * download signature (changes with id, created and expiry); Content-Range and Range parsing
 * (good forms, overflow, signs, reversed, trailing garbage, suffix and open ranges, past the
 * end); cache_job_env(); the store: the scope order (own ref before the default branch,
 * exact before prefix, newest prefix, % and _ literal), a commit whose rename fails leaving the
 * row uncommitted, recovery on reopen, ids never reused; and the server on a real socket: a thread plays the client with
 * blocking sockets (a miss, a save in two chunks, a hit, a download, a 401) while the test's
 * loop runs the server (SIGPIPE is ignored then), then cache_server_metrics() counts what happened and
 * cache_server_close() leaves nothing on the loop. */
#include "harness.h"

#include "cache-int.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

static const uint8_t key1[CACHE_KEY_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                            12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                            23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t key2[CACHE_KEY_LEN] = {9};

static void
hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

TEST(hmac_rfc4231)
{
    uint8_t k[131], mac[32];
    char got[65];

    memset(k, 0x0b, 20);
    cache_hmac(k, 20, "Hi There", 8, mac);
    hex(mac, 32, got);
    ASSERT_STR_EQ(got, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    cache_hmac((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, mac);
    hex(mac, 32, got);
    ASSERT_STR_EQ(got, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(k, 0xaa, sizeof k);
    cache_hmac(k, sizeof k, "Test Using Larger Than Block-Size Key - Hash Key First", 54, mac);
    hex(mac, 32, got);
    ASSERT_STR_EQ(got, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(base64url)
{
    uint8_t in[40], *out;
    size_t n;

    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 37 + 200);
    for (size_t len = 0; len <= sizeof in; len++) {
        char *s = cache_b64url(in, len);

        ASSERT(strchr(s, '=') == NULL && strchr(s, '+') == NULL && strchr(s, '/') == NULL);
        ASSERT_OK(cache_b64url_decode(s, strlen(s), &out, &n));
        ASSERT_EQ(n, len);
        ASSERT(memcmp(out, in, len) == 0);
        free(out);
        free(s);
    }
    ASSERT_EQ(cache_b64url_decode("ab+d", 4, &out, &n), -EINVAL);
    ASSERT_EQ(cache_b64url_decode("ab=", 3, &out, &n), -EINVAL);
    ASSERT_EQ(cache_b64url_decode("abcde", 5, &out, &n), -EINVAL);
    /* "QR" decodes to one byte only if its trailing bits are zero: "QQ" is canonical. */
    ASSERT_EQ(cache_b64url_decode("QR", 2, &out, &n), -EINVAL);
    ASSERT_OK(cache_b64url_decode("QQ", 2, &out, &n));
    ASSERT(n == 1 && out[0] == 'A');
    free(out);
}

static char *
mint(const uint8_t *key, const char *repo, const char *ref, const char *def, int64_t exp)
{
    struct cache_claims c = {.repo = xstrdup(repo),
                             .ref = xstrdup(ref),
                             .default_ref = def ? xstrdup(def) : NULL,
                             .job = xstrdup("42"),
                             .expires = exp};
    char *tok = NULL;

    ASSERT_OK(cache_token_mint(key, &c, &tok));
    cache_claims_free(&c);
    return tok;
}

TEST(token_round_trip)
{
    char *tok = mint(key1, "Owner/Repo", "refs/pull/7/merge", "refs/heads/main", 2000);
    struct cache_claims c = {0};

    ASSERT_OK(cache_token_verify(key1, tok, 1999, &c));
    ASSERT_STR_EQ(c.repo, "owner/repo");
    ASSERT_STR_EQ(c.ref, "refs/pull/7/merge");
    ASSERT_STR_EQ(c.default_ref, "refs/heads/main");
    ASSERT_STR_EQ(c.job, "42");
    ASSERT_EQ(c.expires, 2000);
    cache_claims_free(&c);
    cache_claims_free(NULL);
    free(tok);
}

/* tok with its payload's JSON replaced by json (the signature kept). */
static char *
with_payload(const char *tok, const char *json)
{
    char *p = cache_b64url(json, strlen(json));
    char *out = xasprintf("%s%s", p, tok + strcspn(tok, "."));

    free(p);
    return out;
}

TEST(token_tampered)
{
    char *tok = mint(key1, "o/a", "refs/heads/main", NULL, 2000);
    struct cache_claims c = {0};
    char *t1 = with_payload(tok, "{\"default_ref\":\"\",\"exp\":2000,\"job\":\"42\","
                                 "\"ref\":\"refs/heads/x\",\"repo\":\"o/a\"}");
    char *t2 = with_payload(tok, "{\"default_ref\":\"\",\"exp\":2000,\"job\":\"42\","
                                 "\"ref\":\"refs/heads/main\",\"repo\":\"o/b\"}");
    char *t3 = with_payload(tok, "{\"default_ref\":\"\",\"exp\":9999,\"job\":\"42\","
                                 "\"ref\":\"refs/heads/main\",\"repo\":\"o/a\"}");

    ASSERT_EQ(cache_token_verify(key1, t1, 1000, &c), -EACCES);
    ASSERT_EQ(cache_token_verify(key1, t2, 1000, &c), -EACCES);
    ASSERT_EQ(cache_token_verify(key1, t3, 1000, &c), -EACCES);
    /* One bit of the signature. */
    tok[strlen(tok) - 2] = tok[strlen(tok) - 2] == 'A' ? 'B' : 'A';
    ASSERT_EQ(cache_token_verify(key1, tok, 1000, &c), -EACCES);
    ASSERT(c.repo == NULL);
    free(t1);
    free(t2);
    free(t3);
    free(tok);
}

TEST(token_wrong_key_and_expiry)
{
    char *tok = mint(key1, "o/a", "refs/heads/main", NULL, 2000);
    struct cache_claims c = {0};

    ASSERT_EQ(cache_token_verify(key2, tok, 1000, &c), -EACCES);
    ASSERT_EQ(cache_token_verify(key1, tok, 2000, &c), -ETIMEDOUT);
    ASSERT_EQ(cache_token_verify(key1, tok, 5000, &c), -ETIMEDOUT);
    ASSERT_OK(cache_token_verify(key1, tok, 1999, &c));
    cache_claims_free(&c);
    free(tok);
}

/* A token whose payload is json, correctly signed with key1. */
static char *
signed_payload(const char *json)
{
    char *p = cache_b64url(json, strlen(json)), *s, *out;
    uint8_t mac[32];

    cache_hmac(key1, CACHE_KEY_LEN, p, strlen(p), mac);
    s = cache_b64url(mac, sizeof mac);
    out = xasprintf("%s.%s", p, s);
    free(p);
    free(s);
    return out;
}

TEST(token_malformed)
{
    static const char *const bad_json[] = {
        "[1,2]",
        "{\"repo\":\"o/a\",\"ref\":\"r\"}",
        "{\"repo\":\"o/a\",\"exp\":9999}",
        "{\"ref\":\"r\",\"exp\":9999}",
        "{\"repo\":\"\",\"ref\":\"r\",\"exp\":9999}",
        "{\"repo\":\"o/a\",\"ref\":\"r\",\"exp\":\"9999\"}",
        "not json",
        "{\"repo\":\"o/a\",\"repo\":\"o/b\",\"ref\":\"r\",\"exp\":9999}",
    };
    struct cache_claims c = {0};
    struct cache_claims none = {.repo = NULL, .ref = (char *)"r"};
    char *big = xmalloc(CACHE_MAX_TOKEN + 2), *tok = NULL;

    ASSERT(cache_token_verify(key1, "", 0, &c) < 0);
    ASSERT(cache_token_verify(key1, "nodot", 0, &c) < 0);
    ASSERT(cache_token_verify(key1, ".", 0, &c) < 0);
    ASSERT(cache_token_verify(key1, "a.b.c", 0, &c) < 0);
    ASSERT(cache_token_verify(key1, NULL, 0, &c) < 0);
    memset(big, 'a', CACHE_MAX_TOKEN + 1);
    big[CACHE_MAX_TOKEN + 1] = '\0';
    big[10] = '.';
    ASSERT(cache_token_verify(key1, big, 0, &c) < 0);
    free(big);
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        char *t = signed_payload(bad_json[i]);

        if (cache_token_verify(key1, t, 0, &c) != -EINVAL)
            test_fail(__FILE__, __LINE__, "payload %s accepted", bad_json[i]);
        free(t);
    }
    {
        char *t = signed_payload("{\"repo\":\"o/a\",\"ref\":\"r\",\"exp\":9999}");

        ASSERT_OK(cache_token_verify(key1, t, 0, &c)); /* the control */
        ASSERT(c.default_ref == NULL && c.job == NULL);
        cache_claims_free(&c);
        free(t);
    }
    ASSERT_EQ(cache_token_mint(key1, &none, &tok), -EINVAL);
    none.repo = (char *)"o/a";
    none.ref = NULL;
    ASSERT_EQ(cache_token_mint(key1, &none, &tok), -EINVAL);
    ASSERT(tok == NULL);
}

TEST(key_file)
{
    uint8_t k[CACHE_KEY_LEN], k2[CACHE_KEY_LEN];
    struct err e = {0};
    struct stat st;
    FILE *f;

    ASSERT(cache_key_load("k", false, k, &e) < 0);
    ASSERT_OK(cache_key_load("k", true, k, &e));
    ASSERT_OK(stat("k", &st));
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(st.st_size, 65);
    ASSERT_OK(cache_key_load("k", true, k2, &e));
    ASSERT(memcmp(k, k2, sizeof k) == 0);
    f = fopen("short", "w");
    fputs("abcd\n", f);
    fclose(f);
    chmod("short", 0600);
    ASSERT_EQ(cache_key_load("short", false, k, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "64 hex digits");
    f = fopen("nothex", "w");
    for (int i = 0; i < 64; i++)
        fputc('g', f);
    fclose(f);
    chmod("nothex", 0600);
    ASSERT_EQ(cache_key_load("nothex", false, k, &e), ERR_INVALID);
    chmod("k", 0644);
    ASSERT_EQ(cache_key_load("k", false, k, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "readable by every user");
}

TEST(download_sig)
{
    char *a = cache_download_sig(key1, 1, 100, 500);
    char *b = cache_download_sig(key1, 2, 100, 500);
    char *c = cache_download_sig(key1, 1, 101, 500);
    char *d = cache_download_sig(key1, 1, 100, 501);
    char *e = cache_download_sig(key2, 1, 100, 500);
    char *a2 = cache_download_sig(key1, 1, 100, 500);

    ASSERT_STR_EQ(a, a2);
    ASSERT(strcmp(a, b) != 0 && strcmp(a, c) != 0 && strcmp(a, d) != 0 && strcmp(a, e) != 0);
    ASSERT(cache_ct_equal(a, a2, strlen(a)) && !cache_ct_equal(a, b, strlen(a)));
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    free(a2);
}

TEST(content_range)
{
    static const char *const bad[] = {
        NULL,
        "",
        "bytes",
        "bytes 0-9",
        "bytes 0-9/",
        "bytes -1-9/*",
        "bytes 9-0/*",
        "bytes 0-9/5",
        "bytes 0-9/*x",
        "bytes 0-1000000000000000/*",
        "bytes 0x1-9/*",
        "Bytes 0-9/*",
        "bytes  0-9/*",
        "bytes 0 -9/*",
        "bytes 0-+9/*",
        "bytes=0-9/*",
        "bytes 0-9/-1",
    };
    int64_t a = -1, b = -1;

    ASSERT_OK(cache_parse_content_range("bytes 0-9/*", &a, &b));
    ASSERT(a == 0 && b == 9);
    ASSERT_OK(cache_parse_content_range("bytes 33554432-67108863/*", &a, &b));
    ASSERT(a == 33554432 && b == 67108863);
    ASSERT_OK(cache_parse_content_range("bytes 5-5/10", &a, &b));
    ASSERT(a == 5 && b == 5);
    ASSERT_OK(cache_parse_content_range("bytes 0-999999999999999/*", &a, &b));
    ASSERT_EQ(b, 999999999999999LL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = b = -7;
        if (cache_parse_content_range(bad[i], &a, &b) != -EINVAL)
            test_fail(__FILE__, __LINE__, "\"%s\" accepted", bad[i] ? bad[i] : "(null)");
        ASSERT(a == -7 && b == -7);
    }
}

TEST(range)
{
    int64_t a = -1, b = -1;

    ASSERT_EQ(cache_parse_range("bytes=0-9", 100, &a, &b), 1);
    ASSERT(a == 0 && b == 9);
    ASSERT_EQ(cache_parse_range("bytes=90-200", 100, &a, &b), 1);
    ASSERT(a == 90 && b == 99);
    ASSERT_EQ(cache_parse_range("bytes=10-", 100, &a, &b), 1);
    ASSERT(a == 10 && b == 99);
    ASSERT_EQ(cache_parse_range("bytes=-10", 100, &a, &b), 1);
    ASSERT(a == 90 && b == 99);
    ASSERT_EQ(cache_parse_range("bytes=-1000", 100, &a, &b), 1);
    ASSERT(a == 0 && b == 99);
    ASSERT_EQ(cache_parse_range("bytes=100-", 100, &a, &b), -ERANGE);
    ASSERT_EQ(cache_parse_range("bytes=-0", 100, &a, &b), -ERANGE);
    ASSERT_EQ(cache_parse_range("bytes=0-", 0, &a, &b), -ERANGE);
    /* Not understood, or several ranges: the whole blob. */
    ASSERT_EQ(cache_parse_range(NULL, 100, &a, &b), 0);
    ASSERT_EQ(cache_parse_range("items=0-9", 100, &a, &b), 0);
    ASSERT_EQ(cache_parse_range("bytes=9-0", 100, &a, &b), 0);
    ASSERT_EQ(cache_parse_range("bytes=0-9,20-29", 100, &a, &b), 0);
    ASSERT_EQ(cache_parse_range("bytes=0-9x", 100, &a, &b), 0);
    ASSERT_EQ(cache_parse_range("bytes=99999999999999999999-", 100, &a, &b), 0);
    ASSERT_EQ(cache_parse_range("bytes=--5", 100, &a, &b), 0);
}

TEST(job_env)
{
    json_t *j = cache_job_env("http://172.17.0.1:8088", "a.b", true);
    char *t;

    ASSERT_STR_EQ(json_string_value(json_object_get(j, "ACTIONS_CACHE_URL")),
                  "http://172.17.0.1:8088/a.b/");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "ACTIONS_RUNTIME_TOKEN")), "a.b");
    json_decref(j);
    /* runnerd: Gitea's runtime token is left alone */
    j = cache_job_env("http://h:1/", "a.b", false);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "ACTIONS_CACHE_URL")), "http://h:1/a.b/");
    ASSERT(json_object_get(j, "ACTIONS_RUNTIME_TOKEN") == NULL);
    json_decref(j);
    t = cache_url_token("http://h:1/a.b/");
    ASSERT_STR_EQ(t, "a.b");
    free(t);
    ASSERT(cache_url_token("http://h:1/") == NULL);
    ASSERT(cache_url_token("http://h.example:1/") == NULL);
    ASSERT(cache_url_token("http://h:1/a.b") == NULL);
    ASSERT(cache_url_token(NULL) == NULL);
}

/* ---- the store: sqlite and files under the test's directory ---------------------------------- */

/* Reserves and commits (repo, ref, key) with one byte; returns its id. */
static int64_t
store_save(struct cache_store *st, const char *ref, const char *key, int64_t now)
{
    struct err e = {0};
    int64_t id = 0;
    char *part;
    FILE *f;

    ASSERT_OK(cache_store_reserve(st, "o/r", ref, key, "v", 0, now, &id, &e));
    part = cache_store_part_path(st, id);
    f = fopen(part, "w");
    fputc('x', f);
    fclose(f);
    free(part);
    ASSERT_OK(cache_store_add_part(st, id, 0, 0, &e));
    ASSERT_OK(cache_store_commit(st, id, 1, now, &e));
    return id;
}

/* The key found for keys in scopes, or "" on a miss. */
static char *
store_find(struct cache_store *st, const char *const *scopes, size_t n_scopes, const char *keys)
{
    char *copy = xstrdup(keys), *v[10], *save = NULL, *k;
    size_t n = 0;
    struct cache_entry en = {0};
    struct err e = {0};
    int rc;

    for (k = strtok_r(copy, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save))
        v[n++] = k;
    rc = cache_store_lookup(st, "o/r", scopes, n_scopes, v, n, "v", &en, &e);
    free(copy);
    if (rc == ERR_NOTFOUND)
        return xstrdup("");
    ASSERT_OK(rc);
    copy = xasprintf("%s@%s", en.key, en.ref);
    cache_entry_clear(&en);
    return copy;
}

TEST(store_scope_order)
{
    const char *const pr[] = {"refs/pull/1/merge", "refs/heads/main"};
    const char *const main_only[] = {"refs/heads/main"};
    struct cache_store *st = NULL;
    struct err e = {0};

    ASSERT_OK(cache_store_open("index.db", "c", &st, &e));
    store_save(st, "refs/heads/main", "deps-abc", 100);
    store_save(st, "refs/heads/main", "deps-abd", 101);
    store_save(st, "refs/pull/1/merge", "deps-xyz", 102);
    const struct {
        const char *const *scopes;
        size_t n;
        const char *keys, *want;
    } finds[] = {
        /* The PR's own scope first, even for a prefix against an exact match in main. */
        {pr, 2, "deps-abc,deps-", "deps-xyz@refs/pull/1/merge"},
        /* Within a scope: the first key's exact match before its prefix matches. */
        {main_only, 1, "deps-abc,deps-", "deps-abc@refs/heads/main"},
        /* A prefix: the newest. */
        {main_only, 1, "deps-ab", "deps-abd@refs/heads/main"},
        /* Nothing in the PR scope: the default branch's. */
        {pr, 2, "deps-abc", "deps-abc@refs/heads/main"},
        /* main never sees the PR's; % and _ are not wildcards. */
        {main_only, 1, "deps-x", ""},
        {main_only, 1, "deps-%,deps-ab_", ""},
    };
    for (size_t i = 0; i < sizeof finds / sizeof finds[0]; i++) {
        char *got = store_find(st, finds[i].scopes, finds[i].n, finds[i].keys);
        ASSERT_STR_EQ(got, finds[i].want);
        free(got);
    }
    cache_store_free(st);
}

TEST(store_commit_is_atomic)
{
    struct cache_store *st = NULL;
    struct cache_entry en = {0};
    struct err e = {0};
    int64_t id = 0;
    char *part, *blob;

    ASSERT_OK(cache_store_open("index.db", "c", &st, &e));
    ASSERT_OK(cache_store_reserve(st, "o/r", "refs/heads/main", "k", "v", 0, 100, &id, &e));
    part = cache_store_part_path(st, id);
    blob = cache_store_blob_path(st, id);
    ASSERT_OK(access(part, F_OK));
    /* The rename fails (the part is gone): the row must stay uncommitted. */
    ASSERT_OK(unlink(part));
    ASSERT(cache_store_commit(st, id, 0, 100, &e) < 0);
    ASSERT_OK(cache_store_get(st, id, &en, &e));
    ASSERT(!en.committed);
    cache_entry_clear(&en);
    ASSERT(access(blob, F_OK) != 0);
    /* Reopening drops the reservation: recovery. */
    cache_store_free(st);
    ASSERT_OK(cache_store_open("index.db", "c", &st, &e));
    ASSERT_EQ(cache_store_get(st, id, &en, &e), ERR_NOTFOUND);
    /* A committed entry survives a reopen, its blob in place, and its id is never reused. */
    id = store_save(st, "refs/heads/main", "k", 100);
    cache_store_free(st);
    ASSERT_OK(cache_store_open("index.db", "c", &st, &e));
    ASSERT_OK(cache_store_get(st, id, &en, &e));
    ASSERT(en.committed && en.size == 1);
    cache_entry_clear(&en);
    free(blob);
    blob = cache_store_blob_path(st, id);
    ASSERT_OK(access(blob, F_OK));
    ASSERT(store_save(st, "refs/heads/main", "k2", 100) > id);
    free(part);
    free(blob);
    cache_store_free(st);
}

/* ---- the server on a socket ------------------------------------------------------------------ */

struct client {
    int port;
    char *token;
    int statuses[8];
    char body[4096];
    uv_async_t done;
};

/* One request on a new connection; returns the status, the body into c->body. */
static int
http(struct client *c, const char *method, const char *path, const char *extra, const char *body,
     size_t blen)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    char head[2048], resp[8192];
    size_t got = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
    const char *p;

    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    snprintf(head, sizeof head,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s"
             "Content-Length: %zu\r\n\r\n",
             method, path, c->port, extra ? extra : "", blen);
    if (write(fd, head, strlen(head)) < 0 || (blen > 0 && write(fd, body, blen) < 0)) {
        close(fd);
        return -1;
    }
    while (got < sizeof resp - 1 && (n = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)n;
    resp[got] = '\0';
    close(fd);
    sscanf(resp, "HTTP/1.1 %d", &status);
    p = strstr(resp, "\r\n\r\n");
    snprintf(c->body, sizeof c->body, "%s", p ? p + 4 : "");
    return status;
}

static void
client_main(void *arg)
{
    struct client *c = arg;
    char auth[1024], loc[1024], *l, *e;
    int id = 0;

    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", c->token);
    c->statuses[0] = http(c, "GET", "/_apis/artifactcache/cache?keys=k&version=v", auth, NULL, 0);
    c->statuses[1] = http(c, "POST", "/_apis/artifactcache/caches", auth,
                          "{\"key\":\"k\",\"version\":\"v\"}", 25);
    sscanf(c->body, "{\"cacheId\":%d}", &id);
    {
        char extra[1200], path[64];

        snprintf(path, sizeof path, "/_apis/artifactcache/caches/%d", id);
        snprintf(extra, sizeof extra, "%sContent-Range: bytes 5-9/*\r\n", auth);
        c->statuses[2] = http(c, "PATCH", path, extra, "world", 5);
        snprintf(extra, sizeof extra, "%sContent-Range: bytes 0-4/*\r\n", auth);
        c->statuses[3] = http(c, "PATCH", path, extra, "hello", 5);
        c->statuses[4] = http(c, "POST", path, auth, "{\"size\":10}", 11);
    }
    c->statuses[5] = http(c, "GET", "/_apis/artifactcache/cache?keys=k&version=v", auth, NULL, 0);
    l = strstr(c->body, "\"archiveLocation\":\"");
    loc[0] = '\0';
    if (l != NULL && (l = strstr(l, "/_apis/")) != NULL && (e = strchr(l, '"')) != NULL)
        snprintf(loc, sizeof loc, "%.*s", (int)(e - l), l);
    c->statuses[6] = http(c, "GET", loc, NULL, NULL, 0);
    if (strcmp(c->body, "helloworld") != 0)
        c->statuses[6] = -2;
    c->statuses[7] = http(c, "GET", "/_apis/artifactcache/cache?keys=k&version=v", NULL, NULL, 0);
    uv_async_send(&c->done);
}

struct fixture {
    struct cache_server *srv;
    int closed;
};

static void
on_server_closed(void *arg)
{
    ((struct fixture *)arg)->closed++;
}

static void
on_client_done(uv_async_t *a)
{
    struct fixture *fx = a->data;

    uv_close((uv_handle_t *)a, NULL);
    (void)fx;
    uv_stop(a->loop);
}

TEST(server_metrics)
{
    uv_loop_t loop;
    struct fixture fx = {0};
    struct client c = {0};
    const char *listen[] = {"127.0.0.1:0"};
    struct cache_server_opts o = {.dir = "blobs",
                                  .db_path = "index.db",
                                  .key = key1,
                                  .listen = listen,
                                  .n_listen = 1};
    struct err e = {0};
    struct buf m = BUF_INIT;
    uv_thread_t th;

    ASSERT_OK(uv_loop_init(&loop));
    if (cache_server_start(&loop, &o, &fx.srv, &e) < 0)
        test_fail(__FILE__, __LINE__, "start: %s", e.msg);
    c.port = cache_server_port(fx.srv);
    ASSERT(c.port > 0);
    {
        struct sigaction sa;

        ASSERT_OK(sigaction(SIGPIPE, NULL, &sa));
        ASSERT(sa.sa_handler == SIG_IGN); /* a vanished client cannot kill the process */
    }
    ASSERT_OK(cache_server_listen(fx.srv, "127.0.0.1", &e)); /* the same address: no-op */
    ASSERT(cache_server_listen(fx.srv, "not-an-ip", &e) == ERR_INVALID);
    c.token = mint(key1, "o/r", "refs/heads/main", NULL, (int64_t)time(NULL) + 600);
    uv_async_init(&loop, &c.done, on_client_done);
    c.done.data = &fx;
    ASSERT_OK(uv_thread_create(&th, client_main, &c));
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_thread_join(&th);
    ASSERT_EQ(c.statuses[0], 204);
    ASSERT_EQ(c.statuses[1], 200);
    ASSERT_EQ(c.statuses[2], 204);
    ASSERT_EQ(c.statuses[3], 204);
    ASSERT_EQ(c.statuses[4], 204);
    ASSERT_EQ(c.statuses[5], 200);
    ASSERT_EQ(c.statuses[6], 200);
    ASSERT_EQ(c.statuses[7], 401);
    cache_server_metrics(fx.srv, &m);
    ASSERT_STR_CONTAINS(buf_str(&m), "runnerd_cache_hits_total 1\n");
    ASSERT_STR_CONTAINS(buf_str(&m), "runnerd_cache_misses_total 1\n");
    ASSERT_STR_CONTAINS(buf_str(&m), "runnerd_cache_bytes 10\n");
    ASSERT_STR_CONTAINS(buf_str(&m), "runnerd_cache_entries 1\n");
    ASSERT_STR_CONTAINS(buf_str(&m), "runnerd_cache_evictions_total 0\n");
    ASSERT_STR_CONTAINS(buf_str(&m), "runnerd_cache_uploads_rejected_total{reason=\"auth\"} 1\n");
    ASSERT_STR_CONTAINS(buf_str(&m), "runnerd_cache_uploads_rejected_total{reason=\"range\"} 0\n");
    buf_free(&m);
    cache_server_close(fx.srv, on_server_closed, &fx);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(fx.closed, 1);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    free(c.token);
}

TEST(server_start_errors)
{
    uv_loop_t loop;
    struct cache_server *srv = NULL;
    const char *bad[] = {"127.0.0.1:99999"};
    const char *none[] = {"127.0.0.1:0"};
    struct cache_server_opts o = {.dir = "blobs",
                                  .db_path = "index.db",
                                  .key = key1,
                                  .listen = bad,
                                  .n_listen = 1};
    struct err e = {0};
    FILE *f;

    ASSERT_OK(uv_loop_init(&loop));
    ASSERT_EQ(cache_server_start(&loop, &o, &srv, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "bad port");
    ASSERT(srv == NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* A database file that is not one. */
    f = fopen("junk.db", "w");
    fputs("this is not an sqlite database, not at all, nothing like one................", f);
    fclose(f);
    o.listen = none;
    o.db_path = "junk.db";
    ASSERT(cache_server_start(&loop, &o, &srv, &e) < 0);
    ASSERT(srv == NULL);
    ASSERT_STR_CONTAINS(e.msg, "junk.db");
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}
