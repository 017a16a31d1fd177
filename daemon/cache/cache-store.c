/* cache-store.c: the cache's index (sqlite: tables cache_entries and cache_parts, in the state
 * database's file or one of its own) and its files under dir: parts/ID while an entry is
 * uploaded, blobs/ID once committed (doc/cache.md "Storage"). An entry becomes visible only
 * by the transaction that marks it committed, after its part was synced and renamed; whatever a
 * crash leaves half done (uncommitted rows, part files, blobs no row names) is removed when the
 * store opens. Queries are small and indexed, so they run on the loop like the state store's. */
#include "cache-int.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct cache_store {
    sqlite3 *db;
    char *dir;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS cache_entries (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  repo TEXT NOT NULL, ref TEXT NOT NULL, key TEXT NOT NULL, version TEXT NOT NULL,\n"
    "  size INTEGER NOT NULL DEFAULT 0,\n"
    "  committed INTEGER NOT NULL DEFAULT 0,\n"
    "  created INTEGER NOT NULL, used INTEGER NOT NULL,\n"
    "  lru INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX IF NOT EXISTS cache_entries_scope\n"
    "  ON cache_entries (repo, ref, version, key);\n"
    "CREATE INDEX IF NOT EXISTS cache_entries_used ON cache_entries (committed, used);\n"
    "CREATE INDEX IF NOT EXISTS cache_entries_lru ON cache_entries (lru);\n"
    "CREATE TABLE IF NOT EXISTS cache_parts (\n"
    "  entry INTEGER NOT NULL REFERENCES cache_entries (id) ON DELETE CASCADE,\n"
    "  start INTEGER NOT NULL, stop INTEGER NOT NULL,\n"
    "  PRIMARY KEY (entry, start));\n";

/* sqlite's error, as ours (doc/style.md §3). */
static int
db_err(struct cache_store *st, int rc, const char *what, struct err *e)
{
    return err_set(e, -EIO, "cache index: %s: %s (%d)", what, sqlite3_errmsg(st->db), rc);
}

/* Runs SQL without parameters or rows. */
static int
exec_sql(struct cache_store *st, const char *sql, const char *what, struct err *e)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : db_err(st, rc, what, e);
}

/* Prepares sql and binds its parameters from fmt: 'i' int64, 's' string. NULL on failure
 * (logged: the SQL is ours, so only a broken database gets here). */
static sqlite3_stmt *
prep(struct cache_store *st, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *s = NULL;
    va_list ap;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        log_err("cache index: %s", sqlite3_errmsg(st->db));
        return NULL;
    }
    va_start(ap, fmt);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 'i')
            sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t));
        else
            sqlite3_bind_text(s, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
    }
    va_end(ap);
    return s;
}

/* Runs a statement without rows. */
static int
run(struct cache_store *st, sqlite3_stmt *s, const char *what, struct err *e)
{
    int rc;

    if (s == NULL)
        return db_err(st, SQLITE_ERROR, what, e);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, rc, what, e);
}

char *
cache_store_part_path(const struct cache_store *st, int64_t id)
{
    return xasprintf("%s/parts/%" PRId64, st->dir, id);
}

char *
cache_store_blob_path(const struct cache_store *st, int64_t id)
{
    return xasprintf("%s/blobs/%" PRId64, st->dir, id);
}

/* Removes path (taken) if it exists; other failures are logged. */
static void
unlink_quiet(char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn("cache: remove %s: %s", path, strerror(errno));
    free(path);
}

/* Ids of the rows sql selects (first column). A new array. */
static int64_t *
select_ids(struct cache_store *st, sqlite3_stmt *s, size_t *n)
{
    int64_t *v = NULL;
    size_t cap = 0;

    *n = 0;
    if (s == NULL)
        return NULL;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            v = xreallocarray(v, cap, sizeof *v);
        }
        v[(*n)++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    (void)st;
    return v;
}

int
cache_store_drop_uncommitted(struct cache_store *st, struct err *e)
{
    size_t n;
    int64_t *ids = select_ids(st, prep(st, "SELECT id FROM cache_entries WHERE committed = 0", ""),
                              &n);
    int rc = exec_sql(st, "DELETE FROM cache_entries WHERE committed = 0", "drop reservations", e);

    for (size_t i = 0; rc == 0 && i < n; i++)
        unlink_quiet(cache_store_part_path(st, ids[i]));
    free(ids);
    return rc;
}

/* Deletes files in dir/sub that are not named by a committed entry (all of them for parts). */
static void
sweep_dir(struct cache_store *st, const char *sub, bool keep_committed)
{
    char *path = xasprintf("%s/%s", st->dir, sub);
    DIR *d = opendir(path);
    struct dirent *de;

    if (d == NULL) {
        free(path);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char *end;
        long long id;
        bool keep = false;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        id = strtoll(de->d_name, &end, 10);
        if (keep_committed && *end == '\0' && end != de->d_name) {
            sqlite3_stmt *s = prep(st, "SELECT 1 FROM cache_entries WHERE id = ? AND committed",
                                   "i", (int64_t)id);

            keep = s != NULL && sqlite3_step(s) == SQLITE_ROW;
            sqlite3_finalize(s);
        }
        if (!keep) {
            log_notice("cache: removing orphan %s/%s", sub, de->d_name);
            unlink_quiet(xasprintf("%s/%s", path, de->d_name));
        }
    }
    closedir(d);
    free(path);
}

/* Committed rows whose blob is gone (deleted by hand, a lost disk) are dropped. */
static int
drop_missing(struct cache_store *st, struct err *e)
{
    size_t n;
    int64_t *ids = select_ids(st, prep(st, "SELECT id FROM cache_entries WHERE committed", ""), &n);
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *p = cache_store_blob_path(st, ids[i]);
        struct stat sb;

        if (stat(p, &sb) != 0) {
            log_warn("cache: entry %" PRId64 " has no blob; dropped", ids[i]);
            rc = run(st, prep(st, "DELETE FROM cache_entries WHERE id = ?", "i", ids[i]),
                     "drop entry", e);
        }
        free(p);
    }
    free(ids);
    return rc;
}

static int
mkdir_0700(const char *path, struct err *e)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return err_set(e, -errno, "%s: %s", path, strerror(errno));
    return 0;
}

int
cache_store_open(const char *db_path, const char *dir, struct cache_store **out, struct err *e)
{
    struct cache_store *st = xcalloc(1, sizeof *st);
    char *p = NULL;
    int rc;

    *out = NULL;
    st->dir = xstrdup(dir);
    rc = mkdir_0700(dir, e);
    if (rc == 0) {
        p = xasprintf("%s/parts", dir);
        rc = mkdir_0700(p, e);
        free(p);
    }
    if (rc == 0) {
        p = xasprintf("%s/blobs", dir);
        rc = mkdir_0700(p, e);
        free(p);
    }
    if (rc < 0)
        goto out;
    rc = sqlite3_open_v2(db_path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = err_set(e, -EIO, "%s: cannot open the cache index: %s", db_path,
                     st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(st->db, 5000);
    rc = exec_sql(st, "PRAGMA journal_mode = WAL", "enable WAL", e);
    if (rc == 0)
        rc = exec_sql(st, "PRAGMA foreign_keys = ON", "enable foreign keys", e);
    if (rc == 0)
        rc = exec_sql(st, schema, "create tables", e);
    if (rc == 0)
        rc = cache_store_drop_uncommitted(st, e);
    if (rc == 0)
        rc = drop_missing(st, e);
    if (rc < 0) {
        err_prefix(e, "%s: ", db_path);
        goto out;
    }
    sweep_dir(st, "parts", false);
    sweep_dir(st, "blobs", true);
    *out = st;
    return 0;
out:
    cache_store_free(st);
    return rc;
}

void
cache_store_free(struct cache_store *st)
{
    if (st == NULL)
        return;
    sqlite3_close(st->db);
    free(st->dir);
    free(st);
}

/* Column i as a new string ("" for NULL). */
static char *
col_str(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    return xstrdup(t ? (const char *)t : "");
}

#define ENTRY_COLS "id, repo, ref, key, version, size, committed, created, used"

/* The ENTRY_COLS of the current row into en. */
static void
read_entry(sqlite3_stmt *s, struct cache_entry *en)
{
    en->id = sqlite3_column_int64(s, 0);
    en->repo = col_str(s, 1);
    en->ref = col_str(s, 2);
    en->key = col_str(s, 3);
    en->version = col_str(s, 4);
    en->size = sqlite3_column_int64(s, 5);
    en->committed = sqlite3_column_int(s, 6) != 0;
    en->created = sqlite3_column_int64(s, 7);
    en->used = sqlite3_column_int64(s, 8);
}

void
cache_entry_clear(struct cache_entry *en)
{
    free(en->repo);
    free(en->ref);
    free(en->key);
    free(en->version);
    memset(en, 0, sizeof *en);
}

/* One row of s into out: 0, ERR_NOTFOUND, or <0. */
static int
one_entry(struct cache_store *st, sqlite3_stmt *s, struct cache_entry *out, struct err *e)
{
    int rc;

    if (s == NULL)
        return db_err(st, SQLITE_ERROR, "read entry", e);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_entry(s, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = ERR_NOTFOUND;
    } else {
        rc = db_err(st, rc, "read entry", e);
    }
    sqlite3_finalize(s);
    return rc;
}

int
cache_store_lookup(struct cache_store *st, const char *repo, const char *const *scopes,
                   size_t n_scopes, char *const *keys, size_t n_keys, const char *version,
                   struct cache_entry *out, struct err *e)
{
    /* A prefix is compared with substr(), not LIKE: keys may hold % and _. */
    static const char exact[] = "SELECT " ENTRY_COLS " FROM cache_entries WHERE committed AND "
                                "repo = ? AND ref = ? AND version = ? AND key = ? "
                                "ORDER BY created DESC, id DESC LIMIT 1";
    static const char prefix[] = "SELECT " ENTRY_COLS " FROM cache_entries WHERE committed AND "
                                 "repo = ? AND ref = ? AND version = ? AND "
                                 "substr(key, 1, length(?4)) = ?4 "
                                 "ORDER BY created DESC, id DESC LIMIT 1";

    for (size_t i = 0; i < n_scopes; i++) {
        for (size_t k = 0; k < n_keys; k++) {
            int rc = one_entry(st, prep(st, exact, "ssss", repo, scopes[i], version, keys[k]), out,
                               e);

            if (rc != ERR_NOTFOUND)
                return rc;
            rc = one_entry(st, prep(st, prefix, "ssss", repo, scopes[i], version, keys[k]), out, e);
            if (rc != ERR_NOTFOUND)
                return rc;
        }
    }
    return ERR_NOTFOUND;
}

int
cache_store_list(struct cache_store *st, const char *repo, const char *const *scopes,
                 size_t n_scopes, const char *key, size_t max, struct cache_entry **out, size_t *n,
                 struct err *e)
{
    struct cache_entry *v = xcalloc(max ? max : 1, sizeof *v);
    int rc = SQLITE_DONE;

    *n = 0;
    for (size_t i = 0; i < n_scopes && *n < max; i++) {
        sqlite3_stmt *s = prep(st,
                               "SELECT " ENTRY_COLS " FROM cache_entries WHERE committed AND "
                               "repo = ? AND ref = ? AND key = ? ORDER BY created DESC, id DESC",
                               "sss", repo, scopes[i], key);

        if (s == NULL) {
            rc = SQLITE_ERROR;
            break;
        }
        while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
            read_entry(s, &v[(*n)++]);
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            break;
        rc = SQLITE_DONE;
    }
    *out = v;
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_err(st, rc, "list entries", e);
}

int
cache_store_get(struct cache_store *st, int64_t id, struct cache_entry *out, struct err *e)
{
    return one_entry(st, prep(st, "SELECT " ENTRY_COLS " FROM cache_entries WHERE id = ?", "i", id),
                     out, e);
}

int
cache_store_reserve(struct cache_store *st, const char *repo, const char *ref, const char *key,
                    const char *version, int64_t size, int64_t now, int64_t *id, struct err *e)
{
    struct cache_entry en = {0};
    char *part = NULL;
    int rc, fd;

    rc = exec_sql(st, "BEGIN IMMEDIATE", "begin", e);
    if (rc < 0)
        return rc;
    rc = one_entry(st,
                   prep(st,
                        "SELECT " ENTRY_COLS " FROM cache_entries WHERE repo = ? AND ref = ? "
                        "AND version = ? AND key = ? ORDER BY committed DESC LIMIT 1",
                        "ssss", repo, ref, version, key),
                   &en, e);
    if (rc == 0) {
        rc = en.committed ? err_set(e, -EEXIST, "an entry with this key and version exists")
                          : err_set(e, -EBUSY, "another job is uploading this key and version");
        cache_entry_clear(&en);
        goto out;
    }
    if (rc != ERR_NOTFOUND)
        goto out;
    {
        sqlite3_stmt *s = prep(st,
                               "SELECT count(*) FROM cache_entries WHERE repo = ? AND NOT committed",
                               "s", repo);

        rc = s != NULL && sqlite3_step(s) == SQLITE_ROW &&
                     sqlite3_column_int64(s, 0) >= CACHE_MAX_RESERVED
                 ? err_set(e, -EMFILE, "%d uploads of this repository are in progress already",
                           CACHE_MAX_RESERVED)
                 : 0;
        sqlite3_finalize(s);
        if (rc < 0)
            goto out;
    }
    rc = run(st,
             prep(st,
                  "INSERT INTO cache_entries (repo, ref, key, version, size, created, used) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)",
                  "ssssiii", repo, ref, key, version, size, now, now),
             "reserve", e);
    if (rc < 0)
        goto out;
    *id = sqlite3_last_insert_rowid(st->db);
    part = cache_store_part_path(st, *id);
    fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = err_set(e, -errno, "%s: %s", part, strerror(errno));
        goto out;
    }
    close(fd);
    rc = exec_sql(st, "COMMIT", "commit reservation", e);
out:
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc < 0 && part != NULL)
        unlink(part);
    free(part);
    return rc;
}

int
cache_store_parts(struct cache_store *st, int64_t id, struct cache_range **out, size_t *n,
                  struct err *e)
{
    sqlite3_stmt *s = prep(st, "SELECT start, stop FROM cache_parts WHERE entry = ? ORDER BY start",
                           "i", id);
    struct cache_range *v = NULL;
    size_t cap = 0;
    int rc;

    *n = 0;
    *out = NULL;
    if (s == NULL)
        return db_err(st, SQLITE_ERROR, "read parts", e);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            v = xreallocarray(v, cap, sizeof *v);
        }
        v[*n].start = sqlite3_column_int64(s, 0);
        v[*n].end = sqlite3_column_int64(s, 1);
        (*n)++;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(v);
        *n = 0;
        return db_err(st, rc, "read parts", e);
    }
    *out = v;
    return 0;
}

int
cache_store_add_part(struct cache_store *st, int64_t id, int64_t start, int64_t end, struct err *e)
{
    return run(st,
               prep(st, "INSERT OR REPLACE INTO cache_parts (entry, start, stop) VALUES (?, ?, ?)",
                    "iii", id, start, end),
               "record part", e);
}

int
cache_store_pending_bytes(struct cache_store *st, int64_t *out, struct err *e)
{
    sqlite3_stmt *s = prep(st, "SELECT coalesce(sum(stop - start + 1), 0) FROM cache_parts", "");
    int rc;

    if (s == NULL)
        return db_err(st, SQLITE_ERROR, "sum parts", e);
    rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : db_err(st, rc, "sum parts", e);
}

int
cache_store_commit(struct cache_store *st, int64_t id, int64_t size, int64_t now, struct err *e)
{
    char *part = cache_store_part_path(st, id), *blob = cache_store_blob_path(st, id);
    bool renamed = false;
    int rc = exec_sql(st, "BEGIN IMMEDIATE", "begin", e);

    if (rc < 0)
        goto out;
    rc = run(st,
             prep(st,
                  "UPDATE cache_entries SET committed = 1, size = ?, created = ?, used = ?, "
                  "lru = (SELECT coalesce(max(lru), 0) + 1 FROM cache_entries) "
                  "WHERE id = ? AND committed = 0",
                  "iiii", size, now, now, id),
             "commit entry", e);
    if (rc == 0 && sqlite3_changes(st->db) != 1)
        rc = err_set(e, ERR_NOTFOUND, "entry %" PRId64 " is not reserved", id);
    if (rc == 0)
        rc = run(st, prep(st, "DELETE FROM cache_parts WHERE entry = ?", "i", id), "drop parts", e);
    if (rc < 0)
        goto out;
    /* The rename inside the transaction: a crash before COMMIT leaves a blob no committed row
     * names (removed at the next open), never a committed row without its blob. */
    if (rename(part, blob) != 0) {
        rc = err_set(e, -errno, "rename %s: %s", part, strerror(errno));
        goto out;
    }
    renamed = true;
    rc = exec_sql(st, "COMMIT", "commit", e);
out:
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc < 0 && renamed && rename(blob, part) != 0)
        log_warn("cache: rename %s back: %s", blob, strerror(errno));
    free(part);
    free(blob);
    return rc;
}

void
cache_store_touch(struct cache_store *st, int64_t id, int64_t now)
{
    struct err e = {0};

    if (run(st,
            prep(st,
                 "UPDATE cache_entries SET used = ?, "
                 "lru = (SELECT coalesce(max(lru), 0) + 1 FROM cache_entries) WHERE id = ?",
                 "ii", now, id),
            "touch", &e) < 0)
        log_warn("%s", e.msg);
}

/* Deletes the rows of ids and their files. */
static int
delete_ids(struct cache_store *st, const int64_t *ids, size_t n, bool committed, struct err *e)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = run(st, prep(st, "DELETE FROM cache_entries WHERE id = ?", "i", ids[i]),
                 "delete entry", e);
        if (rc == 0)
            unlink_quiet(committed ? cache_store_blob_path(st, ids[i])
                                   : cache_store_part_path(st, ids[i]));
    }
    return rc;
}

int
cache_store_evict(struct cache_store *st, int64_t max_size, int64_t max_age, int64_t reserve_ttl,
                  int64_t now, int64_t *n, struct err *e)
{
    size_t k;
    int64_t *ids, bytes = 0, entries = 0;
    int rc;

    *n = 0;
    ids = select_ids(st,
                     prep(st, "SELECT id FROM cache_entries WHERE NOT committed AND created < ?",
                          "i", now - reserve_ttl),
                     &k);
    rc = delete_ids(st, ids, k, false, e);
    free(ids);
    if (rc < 0)
        return rc;
    ids = select_ids(st,
                     prep(st, "SELECT id FROM cache_entries WHERE committed AND used < ?", "i",
                          now - max_age),
                     &k);
    rc = delete_ids(st, ids, k, true, e);
    free(ids);
    *n += (int64_t)k;
    if (rc < 0)
        return rc;
    rc = cache_store_stats(st, &bytes, &entries);
    if (rc < 0)
        return db_err(st, SQLITE_ERROR, "stats", e);
    if (bytes <= max_size && entries <= CACHE_MAX_ENTRIES)
        return 0;
    /* Least recently used first, until what is left fits (bytes and, since each entry is a
     * file, the number of entries). */
    {
        sqlite3_stmt *s = prep(st,
                               "SELECT id, size FROM cache_entries WHERE committed "
                               "ORDER BY lru, id",
                               "");
        int64_t *v = NULL;
        size_t cap = 0;

        k = 0;
        while (s != NULL && (bytes > max_size || entries > CACHE_MAX_ENTRIES) &&
               sqlite3_step(s) == SQLITE_ROW) {
            if (k == cap) {
                cap = cap ? 2 * cap : 16;
                v = xreallocarray(v, cap, sizeof *v);
            }
            v[k++] = sqlite3_column_int64(s, 0);
            bytes -= sqlite3_column_int64(s, 1);
            entries--;
        }
        sqlite3_finalize(s);
        rc = delete_ids(st, v, k, true, e);
        free(v);
        *n += (int64_t)k;
    }
    return rc;
}

int
cache_store_stats(struct cache_store *st, int64_t *bytes, int64_t *entries)
{
    sqlite3_stmt *s = prep(st,
                           "SELECT coalesce(sum(size), 0), count(*) FROM cache_entries "
                           "WHERE committed",
                           "");
    int rc;

    *bytes = *entries = 0;
    if (s == NULL)
        return -EIO;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *bytes = sqlite3_column_int64(s, 0);
        *entries = sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -EIO;
}
