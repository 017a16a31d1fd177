/* cache-int.h: what the files of daemon/cache/ share (doc/style.md §1): the limits, the
 * signing helpers (cache-token.c), the range parsers (cache-range.c), the index and blob store
 * (cache-store.c) and the server's state (cache-server.c, cache-conn.c). doc/cache.md describes
 * the protocol, the scope rule, the token format and the storage these implement. */
#ifndef CACHE_INT_H
#define CACHE_INT_H

#include "cache.h"

#include "httpsrv.h"

#include "runner/buf.h"

#include <http_parser.h>
#include <sqlite3.h>
#include <stddef.h>

/* Limits (doc/cache.md "Limits"). */
#define CACHE_MAX_KEY 512              /* bytes of one key, as GitHub's service */
#define CACHE_MAX_KEYS 10              /* keys in one lookup: the key and 9 restore keys */
#define CACHE_MAX_VERSION 512          /* bytes of a version (the toolkit sends 64 hex) */
#define CACHE_MAX_TOKEN 4096           /* bytes of a bearer token */
#define CACHE_MAX_CHUNK (64LL << 20)   /* bytes of one PATCH (the toolkit sends 32 MiB) */
#define CACHE_MAX_HEAD 16384           /* request line and headers */
#define CACHE_MAX_JSON 65536           /* a JSON request body (reserve, commit) */
#define CACHE_MAX_CONNS 256            /* connections served at once */
#define CACHE_IDLE_MS 30000            /* without a byte read or written: closed */
#define CACHE_LINGER_MS 2000           /* draining input after a response that closes */
#define CACHE_URL_TTL 3600             /* seconds a download URL stays valid at most */
#define CACHE_EVICT_MS (5 * 60 * 1000) /* the eviction timer */
#define CACHE_MAX_ENTRIES 100000       /* committed entries (each a file): LRU past it */
#define CACHE_MAX_RESERVED 64          /* uncommitted reservations of one repository */

/* ---- cache-token.c ---- */

/* HMAC-SHA256 of msg under key (RFC 2104, on lib/sha256). */
void cache_hmac(const uint8_t *key, size_t key_len, const void *msg, size_t len, uint8_t out[32]);
/* base64url without padding of p; a new string. */
char *cache_b64url(const void *p, size_t n);
/* Decodes base64url without padding; a new buffer in *out (NUL-terminated for convenience),
 * its length in *n. Returns 0 or -EINVAL for any other character or a bad length. */
int cache_b64url_decode(const char *s, size_t len, uint8_t **out, size_t *n);
/* The signature of the download URL of entry id (created at created) valid until expires:
 * base64url(HMAC(key, "download\n" id "\n" created "\n" expires)); a new string. */
char *cache_download_sig(const uint8_t key[CACHE_KEY_LEN], int64_t id, int64_t created,
                         int64_t expires);
/* Constant-time comparison of two strings of len bytes. */
bool cache_ct_equal(const char *a, const char *b, size_t len);

/* ---- cache-range.c ---- */

/* Parses an upload's Content-Range: "bytes START-END/" then "*" or TOTAL; END (inclusive)
 * >= START, numbers of at most 15 digits. 0, or -EINVAL. */
int cache_parse_content_range(const char *s, int64_t *start, int64_t *end);
/* Parses a download's Range against a blob of size bytes: one range "bytes=A-B", "bytes=A-" or
 * "bytes=-N". Returns 1 with [*start, *end] (inclusive) to send as 206; 0 to send the whole
 * blob as 200 (a header we do not understand or several ranges: RFC 9110 lets us ignore it);
 * -ERANGE when the range cannot be satisfied (416). */
int cache_parse_range(const char *s, int64_t size, int64_t *start, int64_t *end);

/* ---- cache-store.c ---- */

struct cache_store;

struct cache_entry {
    int64_t id;
    char *repo, *ref, *key, *version;
    int64_t size; /* committed: bytes; reserved: the size announced (0: unknown) */
    bool committed;
    int64_t created, used;
};

struct cache_range {
    int64_t start, end; /* inclusive */
};

/* Opens (creating) the index in db_path and the blob folders under dir, then recovers: every
 * uncommitted entry and part file is removed, committed entries whose blob is missing are
 * dropped and blobs no entry names are deleted. */
int cache_store_open(const char *db_path, const char *dir, struct cache_store **out, struct err *e);
void cache_store_free(struct cache_store *st);
/* Removes every uncommitted entry and its part (recovery, and at close). */
int cache_store_drop_uncommitted(struct cache_store *st, struct err *e);
/* The paths of entry id's part file and blob; new strings. */
char *cache_store_part_path(const struct cache_store *st, int64_t id);
char *cache_store_blob_path(const struct cache_store *st, int64_t id);
/* The scope rule (doc/cache.md): for each scope in order, for each key in order, an exact
 * match then the newest prefix match, among committed entries of repo with version. 0 and *out
 * filled (free with cache_entry_clear()), ERR_NOTFOUND, or <0. */
int cache_store_lookup(struct cache_store *st, const char *repo, const char *const *scopes,
                       size_t n_scopes, char *const *keys, size_t n_keys, const char *version,
                       struct cache_entry *out, struct err *e);
/* The committed entries of repo with key exactly, in the given scopes, newest first, at most
 * max: a new array in *out (free each with cache_entry_clear(), then the array). */
int cache_store_list(struct cache_store *st, const char *repo, const char *const *scopes,
                     size_t n_scopes, const char *key, size_t max, struct cache_entry **out,
                     size_t *n, struct err *e);
/* Entry id, committed or not. 0, ERR_NOTFOUND or <0. */
int cache_store_get(struct cache_store *st, int64_t id, struct cache_entry *out, struct err *e);
void cache_entry_clear(struct cache_entry *en);
/* Reserves (repo, ref, key, version) and creates its empty part file. -EEXIST when that entry
 * is committed already, -EBUSY while another reservation of it lives, -EMFILE when repo has
 * CACHE_MAX_RESERVED reservations already. */
int cache_store_reserve(struct cache_store *st, const char *repo, const char *ref, const char *key,
                        const char *version, int64_t size, int64_t now, int64_t *id, struct err *e);
/* The ranges uploaded for id, sorted by start; a new array in *out (free()). */
int cache_store_parts(struct cache_store *st, int64_t id, struct cache_range **out, size_t *n,
                      struct err *e);
/* Records an uploaded range of id (replacing one with the same start). */
int cache_store_add_part(struct cache_store *st, int64_t id, int64_t start, int64_t end,
                         struct err *e);
/* Bytes uploaded to entries not committed yet. */
int cache_store_pending_bytes(struct cache_store *st, int64_t *out, struct err *e);
/* Moves id's part (complete, size bytes, already synced) to its blob name and marks the entry
 * committed, in one transaction; on failure the part stays where it was. */
int cache_store_commit(struct cache_store *st, int64_t id, int64_t size, int64_t now,
                       struct err *e);
/* Marks id used at now (LRU). */
void cache_store_touch(struct cache_store *st, int64_t id, int64_t now);
/* Eviction: reservations older than reserve_ttl, entries unused for max_age, then the least
 * recently used until committed bytes <= max_size and entries <= CACHE_MAX_ENTRIES. *n counts the committed entries removed. */
int cache_store_evict(struct cache_store *st, int64_t max_size, int64_t max_age,
                      int64_t reserve_ttl, int64_t now, int64_t *n, struct err *e);
/* Committed bytes and entries. */
int cache_store_stats(struct cache_store *st, int64_t *bytes, int64_t *entries);

/* ---- the server (cache-server.c), its connections (cache-conn.c), the API (cache-api.c) ---- */

enum cache_reject {
    CACHE_REJ_AUTH,       /* no token, a bad or expired one, or another scope's entry */
    CACHE_REJ_RANGE,      /* a Content-Range that cannot be, or overlaps an upload */
    CACHE_REJ_SIZE,       /* over the size cap, a chunk too large, a length that does not match */
    CACHE_REJ_CONFLICT,   /* the entry exists or is being uploaded */
    CACHE_REJ_INCOMPLETE, /* a commit whose ranges do not cover its size */
    CACHE_REJ_IO,         /* the disk or the index failed */
    CACHE_REJ_N
};

struct cache_server {
    uv_loop_t *loop;
    struct cache_store *st;
    uint8_t key[CACHE_KEY_LEN];
    int64_t max_size, max_age, reserve_ttl;
    struct httpsrv http;        /* listeners and open connections (cache_conn's http) */
    struct cache_conn *zombies; /* closing ones whose chunk write is still on the thread pool */
    uv_timer_t evict_timer;
    int open_handles; /* evict_timer, http until closed, every cache_conn not freed */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
    uint64_t hits, misses, evictions, rejected[CACHE_REJ_N];
};

enum cache_body { CACHE_BODY_JSON, CACHE_BODY_UPLOAD };

#define CACHE_READ_BUF (64 * 1024)
#define CACHE_DL_BUF (256 * 1024)

struct cache_conn {
    struct httpsrv_conn http; /* socket, idle timer, read buffer, parser */
    uv_fs_t fs;               /* the one file operation in flight (fs_busy) */
    struct cache_server *s;
    /* The request being read. */
    struct buf hfield, hvalue; /* the URL is in http.url */
    bool hvalue_last;          /* the parser's last header callback was a value */
    char *auth, *content_range, *range, *host, *expect;
    enum cache_body body_mode;
    struct buf body; /* CACHE_BODY_JSON, at most CACHE_MAX_JSON */
    bool body_too_big;
    bool early; /* refused at its head: early_status, then the connection closes */
    int early_status;
    enum cache_reject early_reason;
    char early_msg[200];
    bool handled; /* the complete request (http.request_done) has been given to the API */
    /* An upload (PATCH): body bytes go to up_fd at up_off through wbuf. */
    int up_fd;
    int64_t up_id, up_start, up_end, up_off;
    char wbuf[CACHE_READ_BUF];
    size_t wlen;
    bool up_overflow;
    /* A commit waiting for its fsync. */
    int64_t commit_id, commit_size;
    int fsync_fd;
    void (*fsync_done)(struct cache_conn *c, int status);
    /* A download being sent: dl_left bytes of dl_fd from dl_off. */
    int dl_fd;
    int64_t dl_off, dl_left;
    char *dl_buf;
    bool dl_active;
    bool close_after; /* the response in flight ends the connection */
    bool fs_busy, zombie;
    struct cache_conn *zprev, *znext; /* in s->zombies */
};

/* The cache connection around the core's one. */
static inline struct cache_conn *
cache_conn_of(struct httpsrv_conn *hc)
{
    return (struct cache_conn *)((char *)hc - offsetof(struct cache_conn, http));
}

/* cache-server.c: one handle or connection of s is gone; the last one ends a closing server. */
void cache_server_unref(struct cache_server *s);

/* cache-conn.c */
/* The limits and hooks of the server's http (httpsrv.h). */
extern const struct httpsrv_limits cache_conn_limits;
extern const struct httpsrv_hooks cache_conn_hooks;
void cache_conn_close(struct cache_conn *c);
/* Sends a response with a body of len bytes (a JSON document or text) and extra header lines
 * (each ending in CRLF, or NULL); HEAD gets the headers only. The connection then reads the
 * next request, or closes when it must. */
void cache_conn_respond(struct cache_conn *c, int status, const char *ctype, const char *extra,
                        const char *body, size_t len);
/* Sends the head of a download (status 200 or 206, extra headers) then len bytes of fd from
 * off; takes fd. */
void cache_conn_send_file(struct cache_conn *c, int status, const char *extra, int fd, int64_t off,
                          int64_t len);
/* Runs fsync on fd on the thread pool, then done(c, status). */
void cache_conn_fsync(struct cache_conn *c, int fd, void (*done)(struct cache_conn *c, int st));

/* cache-api.c */
/* At the end of a request's head: decides how its body is read (an upload is checked here and
 * refused early, before its body arrives). */
void cache_api_head(struct cache_conn *c);
/* At the end of a request (an upload's bytes all written): answers it. */
void cache_api_handle(struct cache_conn *c);
/* A JSON error response {"message": ...} and the counter of reason (or none with -1). */
void cache_api_error(struct cache_conn *c, int status, int reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The connections uploading to entry id, other than c, whose range meets [start, end]. */
bool cache_api_upload_overlaps(struct cache_server *s, const struct cache_conn *c, int64_t id,
                               int64_t start, int64_t end);

#endif
