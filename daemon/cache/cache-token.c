/* cache-token.c: the cache's tokens and signed download URLs (doc/cache.md "Tokens"): HMAC-SHA256
 * over lib/sha256, base64url, minting and verifying, the key file, and the variables a job
 * gets. */
#include "cache-int.h"

#include "sha256.h"

#include "runner/xalloc.h"

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* RFC 2104 with SHA-256: H((K ^ opad) || H((K ^ ipad) || msg)). */
void
cache_hmac(const uint8_t *key, size_t key_len, const void *msg, size_t len, uint8_t out[32])
{
    uint8_t k[SHA256_BLOCK_LEN] = {0}, pad[SHA256_BLOCK_LEN], inner[SHA256_DIGEST_LEN];
    struct sha256 c;

    if (key_len > SHA256_BLOCK_LEN) {
        sha256_init(&c);
        sha256_update(&c, key, key_len);
        sha256_final(&c, k);
    } else {
        memcpy(k, key, key_len);
    }
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x36;
    sha256_init(&c);
    sha256_update(&c, pad, sizeof pad);
    sha256_update(&c, msg, len);
    sha256_final(&c, inner);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x5c;
    sha256_init(&c);
    sha256_update(&c, pad, sizeof pad);
    sha256_update(&c, inner, sizeof inner);
    sha256_final(&c, out);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *
cache_b64url(const void *p, size_t n)
{
    const uint8_t *s = p;
    char *out = xmalloc(n / 3 * 4 + 5), *o = out;
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];

        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;

        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;

        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

static int
b64val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

int
cache_b64url_decode(const char *s, size_t len, uint8_t **out, size_t *n)
{
    uint8_t *o;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (len % 4 == 1)
        return -EINVAL;
    o = xmalloc(len / 4 * 3 + 4);
    for (size_t i = 0; i < len; i++) {
        int v = b64val(s[i]);

        if (v < 0) {
            free(o);
            return -EINVAL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    /* The bits left over must be zero: one encoding per byte string. */
    if ((acc & ((1u << bits) - 1)) != 0) {
        free(o);
        return -EINVAL;
    }
    o[k] = '\0';
    *out = o;
    *n = k;
    return 0;
}

bool
cache_ct_equal(const char *a, const char *b, size_t len)
{
    unsigned char d = 0;

    for (size_t i = 0; i < len; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

char *
cache_download_sig(const uint8_t key[CACHE_KEY_LEN], int64_t id, int64_t created, int64_t expires)
{
    char msg[128];
    uint8_t mac[32];
    int n = snprintf(msg, sizeof msg, "download\n%" PRId64 "\n%" PRId64 "\n%" PRId64, id, created,
                     expires);

    cache_hmac(key, CACHE_KEY_LEN, msg, (size_t)n, mac);
    return cache_b64url(mac, sizeof mac);
}

/* ------------------------------------------------------------------------------------------
 * Tokens: base64url(JSON claims) "." base64url(HMAC-SHA256(key, the first part))
 * ------------------------------------------------------------------------------------------ */

int
cache_token_mint(const uint8_t key[CACHE_KEY_LEN], const struct cache_claims *c, char **out)
{
    json_t *j;
    char *repo, *json, *payload;
    uint8_t mac[32];
    char *sig;

    if (c->repo == NULL || c->ref == NULL || *c->repo == '\0' || *c->ref == '\0')
        return -EINVAL;
    repo = xstrdup(c->repo);
    for (char *p = repo; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "repo", repo, "ref", c->ref, "default_ref",
                  c->default_ref ? c->default_ref : "", "job", c->job ? c->job : "", "exp",
                  (json_int_t)c->expires);
    free(repo);
    if (j == NULL)
        return -EINVAL; /* a string that is not UTF-8 */
    json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (json == NULL)
        return -ENOMEM;
    payload = cache_b64url(json, strlen(json));
    free(json);
    cache_hmac(key, CACHE_KEY_LEN, payload, strlen(payload), mac);
    sig = cache_b64url(mac, sizeof mac);
    *out = xasprintf("%s.%s", payload, sig);
    free(payload);
    free(sig);
    return 0;
}

/* A string claim: a new copy, or NULL when missing or not a string. */
static char *
claim_str(json_t *j, const char *name)
{
    const char *s = json_string_value(json_object_get(j, name));

    return s ? xstrdup(s) : NULL;
}

int
cache_token_verify(const uint8_t key[CACHE_KEY_LEN], const char *tok, int64_t now,
                   struct cache_claims *out)
{
    const char *dot;
    size_t plen, slen;
    uint8_t mac[32], *json = NULL;
    size_t jlen;
    char *want;
    json_t *j;
    json_error_t jerr;
    struct cache_claims c = {0};
    bool ok;

    if (tok == NULL || strlen(tok) > CACHE_MAX_TOKEN || (dot = strchr(tok, '.')) == NULL)
        return -EINVAL;
    plen = (size_t)(dot - tok);
    slen = strlen(dot + 1);
    cache_hmac(key, CACHE_KEY_LEN, tok, plen, mac);
    want = cache_b64url(mac, sizeof mac);
    ok = slen == strlen(want) && cache_ct_equal(want, dot + 1, slen);
    free(want);
    if (!ok)
        return -EACCES;
    if (cache_b64url_decode(tok, plen, &json, &jlen) < 0)
        return -EINVAL;
    j = json_loadb((const char *)json, jlen, JSON_REJECT_DUPLICATES, &jerr);
    free(json);
    if (!json_is_object(j) || !json_is_integer(json_object_get(j, "exp"))) {
        json_decref(j);
        return -EINVAL;
    }
    c.repo = claim_str(j, "repo");
    c.ref = claim_str(j, "ref");
    c.default_ref = claim_str(j, "default_ref");
    c.job = claim_str(j, "job");
    c.expires = json_integer_value(json_object_get(j, "exp"));
    json_decref(j);
    if (c.repo == NULL || c.ref == NULL || *c.repo == '\0' || *c.ref == '\0') {
        cache_claims_free(&c);
        return -EINVAL;
    }
    if (c.expires <= now) {
        cache_claims_free(&c);
        return -ETIMEDOUT;
    }
    *out = c;
    return 0;
}

void
cache_claims_free(struct cache_claims *c)
{
    if (c == NULL)
        return;
    free(c->repo);
    free(c->ref);
    free(c->default_ref);
    free(c->job);
    c->repo = c->ref = c->default_ref = c->job = NULL;
}

/* ------------------------------------------------------------------------------------------
 * The key file
 * ------------------------------------------------------------------------------------------ */

/* A new random key, written to path (0600, never over an existing file). */
static int
key_create(const char *path, uint8_t key[CACHE_KEY_LEN], struct err *e)
{
    char hex[2 * CACHE_KEY_LEN + 2];
    int fd, rc = 0;

    if (getrandom(key, CACHE_KEY_LEN, 0) != CACHE_KEY_LEN)
        return err_set(e, -EIO, "%s: getrandom: %s", path, strerror(errno));
    for (size_t i = 0; i < CACHE_KEY_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    hex[2 * CACHE_KEY_LEN] = '\n';
    hex[2 * CACHE_KEY_LEN + 1] = '\0';
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(e, -errno, "%s: create cache key: %s", path, strerror(errno));
    if (write(fd, hex, sizeof hex - 1) != (ssize_t)(sizeof hex - 1) || fsync(fd) != 0)
        rc = err_set(e, -errno, "%s: write cache key: %s", path, strerror(errno));
    close(fd);
    if (rc < 0)
        unlink(path);
    return rc;
}

int
cache_key_load(const char *path, bool create, uint8_t key[CACHE_KEY_LEN], struct err *e)
{
    struct buf b = BUF_INIT;
    struct stat st;
    const char *s;
    int rc;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT && create)
            return key_create(path, key, e);
        return err_set(e, -errno, "%s: cache key: %s", path, strerror(errno));
    }
    if ((st.st_mode & 0007) != 0)
        return err_set(e, ERR_INVALID,
                       "%s: the cache key file is readable by every user (mode %03o): "
                       "expected mode 0600 or 0640",
                       path, (unsigned)(st.st_mode & 0777));
    rc = buf_read_file(&b, path, 256, "cache key file", e);
    if (rc < 0)
        goto out;
    s = buf_str(&b);
    if (!(b.len == 2 * CACHE_KEY_LEN || (b.len == 2 * CACHE_KEY_LEN + 1 && s[b.len - 1] == '\n')) ||
        strspn(s, "0123456789abcdefABCDEF") != 2 * CACHE_KEY_LEN) {
        rc = err_set(e, ERR_INVALID, "%s: expected %d hex digits and a newline (a cache key)", path,
                     2 * CACHE_KEY_LEN);
        goto out;
    }
    for (size_t i = 0; i < CACHE_KEY_LEN; i++) {
        char h[3] = {s[2 * i], s[2 * i + 1], '\0'};

        key[i] = (uint8_t)strtoul(h, NULL, 16);
    }
out:
    buf_free(&b);
    return rc;
}

json_t *
cache_job_env(const char *base_url, const char *token, bool runtime_token)
{
    size_t n = strlen(base_url);
    char *url = xasprintf("%s%s%s/", base_url, n > 0 && base_url[n - 1] == '/' ? "" : "/", token);
    json_t *j = json_pack("{s:s}", "ACTIONS_CACHE_URL", url);

    if (runtime_token)
        json_object_set_new(j, "ACTIONS_RUNTIME_TOKEN", json_string(token));
    free(url);
    return j;
}

char *
cache_url_token(const char *url)
{
    size_t n = url ? strlen(url) : 0;
    size_t end, start;

    if (n < 2 || url[n - 1] != '/')
        return NULL;
    end = n - 1;
    start = end;
    while (start > 0 && url[start - 1] != '/')
        start--;
    /* a token has a '.' between its claims and its signature; a bare host:port does not */
    if (start == end || start < 2 || url[start - 2] == '/' ||
        memchr(url + start, '.', end - start) == NULL)
        return NULL;
    return xstrndup(url + start, end - start);
}
