/* store.c: runnerd's durable state in sqlite (see store.h): the connection. One connection in
 * WAL mode, every statement prepared once and cached (the SQL of every statement is here);
 * multi-statement writes are atomic whether or not the caller has a transaction open (a
 * savepoint inside one, an IMMEDIATE transaction outside). Here: the helpers the other store
 * files use (store-int.h), open, close and transactions. The schema and its migrations are in
 * store-schema.c, the daemon lock in store-lock.c, the rows in store-ident.c, store-task.c,
 * store-log.c and store-gpu.c. */
#include "store-int.h"

#include "runner/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------
 * Cached statements
 * ------------------------------------------------------------------------------------------ */

#define IDENT_COLS "cls, id, uuid, token, name, instance, labels, ephemeral, registered_ns"
#define TASK_COLS                                                                                  \
    "id, ident, state, result, task, job, repo, created_ns, started_ns, stopped_ns, log_rows, "    \
    "log_acked, log_closed, final_sent, steps, outputs, sent_outputs, checkpoint, exec, reason"
#define DONE_BEFORE "SELECT id FROM tasks WHERE state = 'done' AND stopped_ns < ?1"

/* n copies of a row's placeholders, for ST_LOG_INSERT_MANY (STORE_LOG_INSERT_MANY rows). */
#define ROWS2(r) r ", " r
#define ROWS4(r) ROWS2(r) ", " ROWS2(r)
#define ROWS8(r) ROWS4(r) ", " ROWS4(r)
#define ROWS16(r) ROWS8(r) ", " ROWS8(r)
_Static_assert(STORE_LOG_INSERT_MANY == 16, "ST_LOG_INSERT_MANY holds ROWS16");

static const char *const sql_text[ST_COUNT] = {
    [ST_IDENT_PUT] = "INSERT OR REPLACE INTO identities (" IDENT_COLS ") "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_IDENT_GET] = "SELECT " IDENT_COLS " FROM identities WHERE cls = ?1",
    [ST_IDENT_LIST] = "SELECT " IDENT_COLS " FROM identities ORDER BY cls",
    [ST_IDENT_DELETE] = "DELETE FROM identities WHERE cls = ?1",
    /* An upsert, not INSERT OR REPLACE: REPLACE deletes the old row first, and the foreign key
     * would take the task's log rows with it. log_rows belongs to store_log_append(), and
     * log_acked never goes down. */
    [ST_TASK_PUT] = "INSERT INTO tasks (id, ident, state, result, task, job, repo, created_ns, "
                    "started_ns, stopped_ns, log_acked, log_closed, final_sent, steps, outputs, "
                    "sent_outputs, checkpoint, exec, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                    "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) "
                    "ON CONFLICT (id) DO UPDATE SET ident = excluded.ident, "
                    "state = excluded.state, result = excluded.result, task = excluded.task, "
                    "job = excluded.job, repo = excluded.repo, created_ns = excluded.created_ns, "
                    "started_ns = excluded.started_ns, stopped_ns = excluded.stopped_ns, "
                    "log_acked = max(log_acked, excluded.log_acked), "
                    "log_closed = excluded.log_closed, final_sent = excluded.final_sent, "
                    "steps = excluded.steps, outputs = excluded.outputs, "
                    "sent_outputs = excluded.sent_outputs, checkpoint = excluded.checkpoint, "
                    "exec = excluded.exec, reason = excluded.reason",
    [ST_TASK_UPDATE] = "UPDATE tasks SET state = ?2, result = ?3, started_ns = ?4, "
                       "stopped_ns = ?5, log_acked = max(log_acked, ?6), log_closed = ?7, "
                       "final_sent = ?8, steps = ?9, outputs = ?10, sent_outputs = ?11, "
                       "checkpoint = ?12, exec = ?13, reason = ?14 WHERE id = ?1",
    [ST_TASK_GET] = "SELECT " TASK_COLS " FROM tasks WHERE id = ?1",
    [ST_TASK_LIST] = "SELECT " TASK_COLS " FROM tasks WHERE ?1 IS NULL OR state = ?1 "
                     "ORDER BY id DESC LIMIT ?2",
    [ST_GC_ROWS] = "DELETE FROM log_rows WHERE task_id IN (" DONE_BEFORE ")",
    [ST_GC_GPUS] = "DELETE FROM gpus WHERE task_id IN (" DONE_BEFORE ")",
    [ST_GC_TASKS] = "DELETE FROM tasks WHERE state = 'done' AND stopped_ns < ?1",
    [ST_LOG_NEXT] = "SELECT log_rows FROM tasks WHERE id = ?1",
    [ST_LOG_INSERT] = "INSERT INTO log_rows (task_id, idx, time_ns, content) "
                      "VALUES (?1, ?2, ?3, ?4)",
    [ST_LOG_INSERT_MANY] = "INSERT INTO log_rows (task_id, idx, time_ns, content) VALUES "
                           ROWS16("(?, ?, ?, ?)"),
    [ST_LOG_SET_ROWS] = "UPDATE tasks SET log_rows = ?2 WHERE id = ?1",
    [ST_LOG_READ] = "SELECT time_ns, content FROM log_rows WHERE task_id = ?1 AND idx >= ?2 "
                    "ORDER BY idx LIMIT ?3",
    [ST_LOG_ACK] = "UPDATE tasks SET log_acked = ?2 WHERE id = ?1 AND log_acked <= ?2",
    [ST_LOG_ACKED] = "SELECT log_acked FROM tasks WHERE id = ?1",
    [ST_GPU_TAKE] = "INSERT INTO gpus (uuid, task_id) VALUES (?1, ?2) "
                    "ON CONFLICT (uuid) DO NOTHING",
    [ST_GPU_OWNER] = "SELECT task_id FROM gpus WHERE uuid = ?1",
    [ST_GPU_RELEASE] = "DELETE FROM gpus WHERE task_id = ?1",
    [ST_GPU_HELD] = "SELECT uuid, task_id FROM gpus ORDER BY uuid",
    [ST_TASK_SCRUB] = "UPDATE tasks SET task = " SCRUB_TASK " WHERE id = ?1 AND state = 'done' "
                      "AND task IS NOT NULL",
    [ST_SCRUB_DONE] = "UPDATE tasks SET task = " SCRUB_TASK " WHERE state = 'done' AND task IS NOT "
                      "NULL AND (NOT json_valid(task) OR json_type(task, '$.secrets') IS NOT NULL "
                      "OR json_type(task, '$.context.token') IS NOT NULL "
                      "OR json_type(task, '$.context.gitea_runtime_token') IS NOT NULL "
                      "OR json_type(task, '$.context.runtime_token') IS NOT NULL)",
};

/* ------------------------------------------------------------------------------------------
 * Errors and helpers
 * ------------------------------------------------------------------------------------------ */

/* Our code for a sqlite result code. */
static int
code_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CONSTRAINT:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_MISMATCH:
        return ERR_INVALID;
    default:
        return -EIO;
    }
}

/* Reports the connection's last error ("PATH: WHAT: sqlite message"); returns the code. Call it
 * before anything else touches the connection: a rollback would replace the message. */
int
db_err(struct store *s, int rc, const char *what, struct err *e)
{
    return err_set(e, code_of(rc), "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* Sets *out to the cached statement id (reset, no bindings), preparing it on first use. */
int
db_stmt(struct store *s, int id, sqlite3_stmt **out, struct err *e)
{
    int rc;

    *out = NULL;
    if (s->st[id] == NULL) {
        rc = sqlite3_prepare_v3(s->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &s->st[id],
                                NULL);
        if (rc != SQLITE_OK) {
            rc = db_err(s, rc, "prepare", e);
            sqlite3_finalize(s->st[id]);
            s->st[id] = NULL;
            return rc;
        }
    }
    *out = s->st[id];
    return 0;
}

/* Ends the use of a cached statement, so that it holds no read transaction open. */
void
db_stmt_done(sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Steps a statement that returns no row; resets it. */
int
db_run(struct store *s, sqlite3_stmt *st, const char *what, struct err *e)
{
    int rc = sqlite3_step(st);
    int ret = 0;

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = db_err(s, rc, what, e);
    db_stmt_done(st);
    return ret;
}

/* Steps a query: 1 with a row, 0 when done, or a reported error (the statement is then reset). */
int
db_next_row(struct store *s, sqlite3_stmt *st, const char *what, struct err *e)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    rc = db_err(s, rc, what, e);
    db_stmt_done(st);
    return rc;
}

/* Runs SQL text without results (pragmas, transaction control, migrations). */
int
db_exec(struct store *s, const char *sql, const char *what, struct err *e)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : db_err(s, rc, what, e);
}

/* Bind helpers: a NULL string or JSON value is SQL NULL. Binding only fails on a bug (a bad
 * index) or out of memory, which the step then reports. */
void
db_bind_str(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

void
db_bind_json(sqlite3_stmt *st, int i, const json_t *v)
{
    char *text;

    if (v == NULL) {
        sqlite3_bind_null(st, i);
        return;
    }
    text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        abort(); /* only out of memory: every json_t jansson builds can be encoded */
    sqlite3_bind_text(st, i, text, -1, free);
}

/* Returns a new copy of a text column, NULL for SQL NULL. */
char *
db_col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *t;

    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    t = sqlite3_column_text(st, i);
    if (t == NULL)
        abort(); /* out of memory */
    return xstrdup((const char *)t);
}

/* Parses a JSON column into *out (NULL for SQL NULL). what names the row for the message. */
int
db_col_json(struct store *s, sqlite3_stmt *st, int i, const char *what, json_t **out,
            struct err *e)
{
    json_error_t je;
    const char *t;

    *out = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    t = (const char *)sqlite3_column_text(st, i);
    if (t == NULL)
        abort();
    *out = json_loads(t, JSON_DECODE_ANY, &je);
    if (*out == NULL)
        return err_set(e, ERR_INVALID, "%s: %s: column %s: bad JSON at %d:%d: %s", s->path, what,
                       sqlite3_column_name(st, i), je.line, je.column, je.text);
    return 0;
}

/* SQLite's LIMIT for a count where 0 means no limit. */
int64_t
db_limit(size_t n)
{
    return n == 0 || n > (size_t)INT64_MAX ? -1 : (int64_t)n;
}

/* Reads the row of st (bound, not yet stepped) into out with read: 1, or 0 when there is no
 * row, or a reported error (out may then hold part of the row: the caller clears it). Ends the
 * use of st. */
int
db_read_one(struct store *s, sqlite3_stmt *st, const char *what, db_read_fn read, void *out,
            struct err *e)
{
    int rc = db_next_row(s, st, what, e);

    if (rc < 0)
        return rc;
    if (rc == 1 && (rc = read(s, st, out, e)) == 0)
        rc = 1;
    db_stmt_done(st);
    return rc;
}

/* Reads every row of st (bound, not yet stepped) with read into a new array of elements of size
 * bytes: *out (NULL when there is none) and *n, left alone on failure (what was read is
 * cleared and freed). Ends the use of st. */
int
db_read_all(struct store *s, sqlite3_stmt *st, const char *what, size_t size, db_read_fn read,
            db_clear_fn clear, void **out, size_t *n, struct err *e)
{
    char *v = NULL;
    size_t len = 0;
    int rc;

    while ((rc = db_next_row(s, st, what, e)) == 1) {
        v = xreallocarray(v, len + 1, size);
        rc = read(s, st, v + len++ * size, e);
        if (rc < 0)
            break;
    }
    db_stmt_done(st);
    if (rc < 0) {
        for (size_t i = 0; i < len; i++)
            clear(v + i * size);
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

/* Starts an atomic section: a savepoint inside the caller's transaction, else an IMMEDIATE
 * transaction of its own (taking the write lock up front, so a read-then-write section cannot
 * fail half-way with SQLITE_BUSY). */
int
db_atomic_begin(struct store *s, struct err *e)
{
    if (sqlite3_get_autocommit(s->db))
        return db_exec(s, "BEGIN IMMEDIATE", "begin", e);
    return db_exec(s, "SAVEPOINT store_atomic", "savepoint", e);
}

/* Ends an atomic section begun with owned = sqlite3_get_autocommit() before db_atomic_begin():
 * commits (or releases) when rc >= 0, else undoes it. Returns rc or the commit's error. */
int
db_atomic_end(struct store *s, bool owned, int rc, struct err *e)
{
    if (rc >= 0) {
        rc = db_exec(s, owned ? "COMMIT" : "RELEASE store_atomic", "commit", e);
        if (rc == 0)
            return 0;
    }
    if (owned) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    } else if (!sqlite3_get_autocommit(s->db)) {
        /* Some errors (SQLITE_FULL, IOERR, BUSY, NOMEM) already rolled back the caller's whole
         * transaction; otherwise undo only our part and keep theirs open. */
        sqlite3_exec(s->db, "ROLLBACK TO store_atomic; RELEASE store_atomic", NULL, NULL, NULL);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Open, close, transactions
 * ------------------------------------------------------------------------------------------ */

/* Creates dir and its missing parents with mode 0700. */
static int
make_dirs(const char *dir, struct err *e)
{
    struct stat sb;
    char *tmp;
    int rc = 0;

    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return err_set(e, -ENOTDIR, "%s: not a directory", dir);
        return 0;
    }
    if (errno != ENOENT)
        return err_set(e, -errno, "%s: %s", dir, strerror(errno));
    tmp = xstrdup(dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            rc = err_set(e, -errno, "%s: %s", tmp, strerror(errno));
            goto out;
        }
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        rc = err_set(e, -errno, "%s: %s", tmp, strerror(errno));
out:
    free(tmp);
    return rc;
}

/* Creates the database file (0600) unless it exists, so that sqlite never creates it with the
 * process umask: the file holds runner tokens and task secrets. */
static int
create_file(const char *path, struct err *e)
{
    char *dir = xstrdup(path), *slash = strrchr(dir, '/');
    int fd, rc = 0;

    if (slash != NULL && slash != dir) {
        *slash = '\0';
        rc = make_dirs(dir, e);
    }
    free(dir);
    if (rc < 0)
        return rc;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(e, -errno, "%s: %s", path, strerror(errno));
    close(fd);
    return 0;
}

/* Sets the connection up: WAL, foreign keys, busy timeout. Also the first read of the file, so
 * a file that is not a database fails here. */
static int
configure(struct store *s, struct err *e)
{
    sqlite3_stmt *st = NULL;
    int rc;

    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            rc = err_set(e, ERR_INVALID, "%s: not a runnerd database: %s", s->path,
                         sqlite3_errmsg(s->db));
        else
            rc = db_err(s, rc, "enable WAL", e);
        goto out;
    }
    if (sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        rc = err_set(e, -EIO, "%s: cannot use WAL mode (journal mode is %s)", s->path,
                     (const char *)sqlite3_column_text(st, 0));
        goto out;
    }
    /* secure_delete: the bytes of deleted and overwritten rows (a scrubbed task's secrets, its
     * old checkpoints) are zeroed in the pages, not left in free space. */
    rc = db_exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; "
                  "PRAGMA secure_delete = ON", "configure", e);
out:
    sqlite3_finalize(st);
    return rc;
}

int
store_open(const char *path, struct store **out, struct err *e)
{
    struct store *s = xcalloc(1, sizeof *s);
    mode_t old_mask;
    int rc;

    *out = NULL;
    s->lock_fd = -1;
    s->path = xstrdup(path);
    rc = create_file(path, e);
    if (rc < 0)
        goto out;
    /* No bulk page-cache allocation per connection (about 160 kB resident at once in an idle
     * runnerd, bench/daemon-idle): pages are allocated as they are read. Global, so set
     * before sqlite's first initialisation; later calls fail harmlessly. */
    static bool pcache_set;
    if (!pcache_set) {
        pcache_set = true;
        sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
    }
    /* sqlite gives -wal and -shm the database file's mode; the umask makes sure of it. It is
     * process-wide, so only the open and the first writes run under it. */
    old_mask = umask(077);
    rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        if (s->db == NULL)
            rc = err_set(e, -ENOMEM, "%s: out of memory", path);
        else
            rc = db_err(s, rc, "open", e);
    } else {
        rc = configure(s, e);
        if (rc == 0)
            rc = db_migrate(s, e);
    }
    umask(old_mask);
    if (rc < 0)
        goto out;
    *out = s;
    s = NULL;
out:
    store_close(s);
    return rc;
}

void
store_close(struct store *s)
{
    if (s == NULL)
        return;
    store_ckpt_free(s->ckpt); /* first: it waits for a checkpoint that runs */
    s->ckpt = NULL;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db); /* rolls back a transaction left open */
    db_unlock(s);
    free(s->path);
    free(s);
}

void
store_release_memory(struct store *s)
{
    if (s == NULL)
        return;
    sqlite3_db_release_memory(s->db);
    store_ckpt_idle(s); /* idle: the -wal file is emptied off the loop */
}

const char *
store_path(const struct store *s)
{
    return s->path;
}

int
store_begin(struct store *s, struct err *e)
{
    assert(sqlite3_get_autocommit(s->db) && "store_begin: transactions do not nest");
    return db_exec(s, "BEGIN IMMEDIATE", "begin", e);
}

int
store_commit(struct store *s, struct err *e)
{
    int rc;

    if (sqlite3_get_autocommit(s->db))
        return 0;
    rc = db_exec(s, "COMMIT", "commit", e);
    if (rc < 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

void
store_rollback(struct store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}
