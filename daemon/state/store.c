/* store.c: runnerd's durable state in sqlite (see store.h). One connection in WAL mode, every
 * statement prepared once and cached; multi-statement writes are atomic whether or not the
 * caller has a transaction open (a savepoint inside one, an IMMEDIATE transaction outside). */
#include "store.h"

#include "runner/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------
 * Schema
 * ------------------------------------------------------------------------------------------ */

/* What of a task message only a task that can still run or resume needs: its secrets and the
 * tokens in its context (a message that is not JSON is dropped whole). */
#define SCRUB_TASK                                                                                 \
    "CASE WHEN json_valid(task) THEN json_remove(task, '$.secrets', '$.context.token', "          \
    "'$.context.gitea_runtime_token', '$.context.runtime_token') END"

/* migrations[i] takes the schema from version i to i+1; PRAGMA user_version holds the version.
 * Never edit a released migration: append a new one. JSON columns hold compact JSON text, NULL
 * when the field is unset; times are CLOCK_REALTIME nanoseconds, 0 when unset. */
static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE TABLE identities (\n"
    "    cls TEXT PRIMARY KEY NOT NULL,\n"
    "    id INTEGER NOT NULL,\n"
    "    uuid TEXT,\n"
    "    token TEXT,\n"
    "    name TEXT,\n"
    "    instance TEXT,\n"
    "    labels TEXT,\n"
    "    ephemeral INTEGER NOT NULL DEFAULT 0,\n"
    "    registered_ns INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE TABLE tasks (\n"
    "    id INTEGER PRIMARY KEY NOT NULL,\n"
    "    ident TEXT,\n"
    "    state TEXT NOT NULL CHECK (state IN ('running', 'finishing', 'done')),\n"
    "    result INTEGER NOT NULL DEFAULT 0,\n"
    "    task TEXT,\n"
    "    job TEXT,\n"
    "    repo TEXT,\n"
    "    created_ns INTEGER NOT NULL DEFAULT 0,\n"
    "    started_ns INTEGER NOT NULL DEFAULT 0,\n"
    "    stopped_ns INTEGER NOT NULL DEFAULT 0,\n"
    "    log_rows INTEGER NOT NULL DEFAULT 0,\n"
    "    log_acked INTEGER NOT NULL DEFAULT 0,\n"
    "    log_closed INTEGER NOT NULL DEFAULT 0,\n"
    "    final_sent INTEGER NOT NULL DEFAULT 0,\n"
    "    steps TEXT,\n"
    "    outputs TEXT,\n"
    "    sent_outputs TEXT,\n"
    "    checkpoint TEXT,\n"
    "    exec TEXT,\n"
    "    reason TEXT\n"
    ");\n"
    "CREATE INDEX tasks_state ON tasks (state, id);\n"
    "CREATE TABLE log_rows (\n"
    "    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,\n"
    "    idx INTEGER NOT NULL,\n"
    "    time_ns INTEGER NOT NULL,\n"
    "    content TEXT NOT NULL,\n"
    "    PRIMARY KEY (task_id, idx)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE gpus (\n"
    "    uuid TEXT PRIMARY KEY NOT NULL,\n"
    "    task_id INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX gpus_task ON gpus (task_id);\n",
    /* 2: tasks that ended before runnerd scrubbed ended tasks lose their secrets and tokens
     * (store_task_scrub()). */
    "UPDATE tasks SET task = " SCRUB_TASK " WHERE state = 'done' AND task IS NOT NULL;\n",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

int
store_schema_version(void)
{
    return SCHEMA_VERSION;
}

/* ------------------------------------------------------------------------------------------
 * Cached statements
 * ------------------------------------------------------------------------------------------ */

enum {
    ST_IDENT_PUT,
    ST_IDENT_GET,
    ST_IDENT_LIST,
    ST_IDENT_DELETE,
    ST_TASK_PUT,
    ST_TASK_UPDATE,
    ST_TASK_GET,
    ST_TASK_LIST,
    ST_GC_ROWS,
    ST_GC_GPUS,
    ST_GC_TASKS,
    ST_LOG_NEXT,
    ST_LOG_INSERT,
    ST_LOG_SET_ROWS,
    ST_LOG_READ,
    ST_LOG_ACK,
    ST_LOG_ACKED,
    ST_GPU_TAKE,
    ST_GPU_OWNER,
    ST_GPU_RELEASE,
    ST_GPU_HELD,
    ST_TASK_SCRUB,
    ST_SCRUB_DONE,
    ST_COUNT
};

#define IDENT_COLS "cls, id, uuid, token, name, instance, labels, ephemeral, registered_ns"
#define TASK_COLS                                                                                  \
    "id, ident, state, result, task, job, repo, created_ns, started_ns, stopped_ns, log_rows, "    \
    "log_acked, log_closed, final_sent, steps, outputs, sent_outputs, checkpoint, exec, reason"
#define DONE_BEFORE "SELECT id FROM tasks WHERE state = 'done' AND stopped_ns < ?1"

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

struct store {
    sqlite3 *db;
    char *path;
    int lock_fd;                /* the pid file while store_lock() holds it, else -1 */
    sqlite3_stmt *st[ST_COUNT]; /* prepared on first use, finalized by store_close() */
    bool wal_scrub;             /* the -wal file may hold scrubbed secrets: truncate it */
    bool scrub_retry;           /* a scrub failed (a full disk): scrub every done task again */
    bool settle_failing;        /* the last store_settle() failed (reported once) */
};

/* The daemon lock is held (store_lock()). A record lock belongs to the process, and closing any
 * descriptor of its file drops it: the holder must never open the pid file again. */
static bool lock_held;

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
static int
db_err(struct store *s, int rc, const char *what, struct err *e)
{
    return err_set(e, code_of(rc), "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* Sets *out to the cached statement id (reset, no bindings), preparing it on first use. */
static int
stmt(struct store *s, int id, sqlite3_stmt **out, struct err *e)
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
static void
stmt_done(sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Steps a statement that returns no row; resets it. */
static int
run(struct store *s, sqlite3_stmt *st, const char *what, struct err *e)
{
    int rc = sqlite3_step(st);
    int ret = 0;

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = db_err(s, rc, what, e);
    stmt_done(st);
    return ret;
}

/* Steps a query: 1 with a row, 0 when done, or a reported error (the statement is then reset). */
static int
next_row(struct store *s, sqlite3_stmt *st, const char *what, struct err *e)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    rc = db_err(s, rc, what, e);
    stmt_done(st);
    return rc;
}

/* Runs SQL text without results (pragmas, transaction control, migrations). */
static int
exec_sql(struct store *s, const char *sql, const char *what, struct err *e)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : db_err(s, rc, what, e);
}

/* Bind helpers: a NULL string or JSON value is SQL NULL. Binding only fails on a bug (a bad
 * index) or out of memory, which the step then reports. */
static void
bind_str(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static void
bind_json(sqlite3_stmt *st, int i, const json_t *v)
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
static char *
col_str(sqlite3_stmt *st, int i)
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
static int
col_json(struct store *s, sqlite3_stmt *st, int i, const char *what, json_t **out,
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

/* Starts an atomic section: a savepoint inside the caller's transaction, else an IMMEDIATE
 * transaction of its own (taking the write lock up front, so a read-then-write section cannot
 * fail half-way with SQLITE_BUSY). */
static int
atomic_begin(struct store *s, struct err *e)
{
    if (sqlite3_get_autocommit(s->db))
        return exec_sql(s, "BEGIN IMMEDIATE", "begin", e);
    return exec_sql(s, "SAVEPOINT store_atomic", "savepoint", e);
}

/* Ends an atomic section begun with owned = sqlite3_get_autocommit() before atomic_begin():
 * commits (or releases) when rc >= 0, else undoes it. Returns rc or the commit's error. */
static int
atomic_end(struct store *s, bool owned, int rc, struct err *e)
{
    if (rc >= 0) {
        rc = exec_sql(s, owned ? "COMMIT" : "RELEASE store_atomic", "commit", e);
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
 * Open, migrate, close
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

/* Reads PRAGMA user_version. */
static int
user_version(struct store *s, int *out, struct err *e)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = 0;
    } else {
        rc = db_err(s, rc, "read schema version", e);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Whether the database has any table (a non-runnerd database has tables but version 0). */
static int
has_tables(struct store *s, bool *out, struct err *e)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0) > 0;
        rc = 0;
    } else {
        rc = db_err(s, rc, "read schema", e);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs migrations[v] in a transaction of its own; *v is the version it found, then the new one. */
static int
migrate_one(struct store *s, int *v, struct err *e)
{
    char sql[64];
    bool tables = false;
    int rc = exec_sql(s, "BEGIN IMMEDIATE", "begin migration", e);

    if (rc < 0)
        return rc;
    /* Read again under the write lock: another process may have migrated meanwhile. */
    rc = user_version(s, v, e);
    if (rc < 0 || *v >= SCHEMA_VERSION)
        goto out;
    if (*v == 0) {
        rc = has_tables(s, &tables, e);
        if (rc < 0)
            goto out;
        if (tables) {
            rc = err_set(e, ERR_INVALID,
                         "%s: not a runnerd database (it has tables but no schema version)",
                         s->path);
            goto out;
        }
    }
    rc = sqlite3_exec(s->db, migrations[*v], NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(sql, sizeof sql, "migration to schema version %d", *v + 1);
        rc = db_err(s, rc, sql, e);
        goto out;
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", *v + 1);
    rc = exec_sql(s, sql, "set schema version", e);
    if (rc == 0)
        rc = exec_sql(s, "COMMIT", "commit migration", e);
    if (rc == 0)
        (*v)++;
out:
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Brings the schema to SCHEMA_VERSION, one migration per transaction. */
static int
migrate(struct store *s, struct err *e)
{
    int v, rc = user_version(s, &v, e);

    while (rc == 0) {
        if (v > SCHEMA_VERSION)
            return err_set(e, ERR_INVALID,
                           "%s: database schema version %d is newer than this runnerd (%d)",
                           s->path, v, SCHEMA_VERSION);
        if (v == SCHEMA_VERSION)
            return 0;
        rc = migrate_one(s, &v, e);
    }
    return rc;
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
    rc = exec_sql(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; "
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
            rc = migrate(s, e);
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
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db); /* rolls back a transaction left open */
    if (s->lock_fd >= 0) {
        close(s->lock_fd); /* drops the daemon lock */
        lock_held = false;
    }
    free(s->path);
    free(s);
}

const char *
store_path(const struct store *s)
{
    return s->path;
}

/* ------------------------------------------------------------------------------------------
 * The daemon lock (see store.h)
 * ------------------------------------------------------------------------------------------ */

char *
store_pidfile(const char *path)
{
    char *abs = realpath(path, NULL);
    char *p = xasprintf("%s.pid", abs ? abs : path);

    free(abs);
    return p;
}

/* The pid of the process holding a lock on fd's file, or 0. The lock asked about is a read
 * lock, so that a file open read-only can be asked; runnerd's write lock conflicts with it. */
static int
pidfile_holder(int fd, const char *file, pid_t *pid, struct err *e)
{
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};

    *pid = 0;
    if (fcntl(fd, F_GETLK, &fl) < 0)
        return err_set(e, -errno, "%s: %s", file, strerror(errno));
    if (fl.l_type == F_UNLCK)
        return 0;
    /* 0: the holder lives in a pid namespace we cannot see into; the pid in the file is the
     * holder's own view, which would name another process here. */
    *pid = fl.l_pid > 0 ? fl.l_pid : -1;
    return 0;
}

int
store_lock(struct store *s, pid_t *holder, struct err *e)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    char *file = store_pidfile(s->path), buf[32];
    int fd, rc = 0, len;
    pid_t other = 0;

    assert(!lock_held && "store_lock: once per process");
    if (holder)
        *holder = 0;
    fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        rc = err_set(e, -errno, "%s: %s", file, strerror(errno));
        goto out;
    }
    if (fcntl(fd, F_SETLK, &fl) < 0) {
        if (errno != EACCES && errno != EAGAIN) {
            rc = err_set(e, -errno, "%s: lock: %s", file, strerror(errno));
            goto out;
        }
        rc = pidfile_holder(fd, file, &other, e);
        if (rc < 0)
            goto out;
        if (holder)
            *holder = other;
        if (other > 0)
            rc = err_set(e, -EBUSY, "%s: another runnerd (pid %ld) uses this state database; "
                         "stop it, or restart it with `runnerctl restart`", s->path, (long)other);
        else
            rc = err_set(e, -EBUSY, "%s: another runnerd uses this state database (it holds "
                         "%s); stop it first", s->path, file);
        goto out;
    }
    len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        rc = err_set(e, -errno, "%s: write: %s", file, strerror(errno));
        goto out;
    }
    s->lock_fd = fd;
    lock_held = true;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    free(file);
    return rc;
}

int
store_lock_holder(const char *path, pid_t *pid, struct err *e)
{
    char *file = NULL;
    int fd, rc = 0;

    assert(!lock_held && "store_lock_holder: would drop this process's own daemon lock");
    *pid = 0;
    file = store_pidfile(path);
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            rc = err_set(e, -errno, "%s: %s", file, strerror(errno));
    } else {
        rc = pidfile_holder(fd, file, pid, e);
        close(fd);
    }
    free(file);
    return rc;
}

int
store_begin(struct store *s, struct err *e)
{
    assert(sqlite3_get_autocommit(s->db) && "store_begin: transactions do not nest");
    return exec_sql(s, "BEGIN IMMEDIATE", "begin", e);
}

int
store_commit(struct store *s, struct err *e)
{
    int rc;

    if (sqlite3_get_autocommit(s->db))
        return 0;
    rc = exec_sql(s, "COMMIT", "commit", e);
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

/* ------------------------------------------------------------------------------------------
 * Identities
 * ------------------------------------------------------------------------------------------ */

int
store_ident_put(struct store *s, const struct store_ident *id, struct err *e)
{
    sqlite3_stmt *st;
    int rc = stmt(s, ST_IDENT_PUT, &st, e);

    if (rc < 0)
        return rc;
    bind_str(st, 1, id->cls);
    sqlite3_bind_int64(st, 2, id->id);
    bind_str(st, 3, id->uuid);
    bind_str(st, 4, id->token);
    bind_str(st, 5, id->name);
    bind_str(st, 6, id->instance);
    bind_json(st, 7, id->labels);
    sqlite3_bind_int(st, 8, id->ephemeral);
    sqlite3_bind_int64(st, 9, id->registered_ns);
    return run(s, st, "save identity", e);
}

/* Fills out from a row of IDENT_COLS. */
static int
read_ident(struct store *s, sqlite3_stmt *st, struct store_ident *out, struct err *e)
{
    char what[64];

    memset(out, 0, sizeof *out);
    out->cls = col_str(st, 0);
    out->id = sqlite3_column_int64(st, 1);
    out->uuid = col_str(st, 2);
    out->token = col_str(st, 3);
    out->name = col_str(st, 4);
    out->instance = col_str(st, 5);
    out->ephemeral = sqlite3_column_int(st, 7) != 0;
    out->registered_ns = sqlite3_column_int64(st, 8);
    snprintf(what, sizeof what, "identity %s", out->cls ? out->cls : "?");
    return col_json(s, st, 6, what, &out->labels, e);
}

int
store_ident_get(struct store *s, const char *cls, struct store_ident *out, struct err *e)
{
    sqlite3_stmt *st;
    int rc = stmt(s, ST_IDENT_GET, &st, e);

    memset(out, 0, sizeof *out);
    if (rc < 0)
        return rc;
    bind_str(st, 1, cls);
    rc = next_row(s, st, "read identity", e);
    if (rc < 0)
        return rc;
    if (rc == 0)
        rc = err_set(e, ERR_NOTFOUND, "%s: no identity '%s'", s->path, cls);
    else
        rc = read_ident(s, st, out, e);
    stmt_done(st);
    if (rc < 0)
        store_ident_clear(out);
    return rc;
}

int
store_ident_list(struct store *s, struct store_ident **out, size_t *n, struct err *e)
{
    sqlite3_stmt *st;
    struct store_ident *v = NULL;
    size_t len = 0;
    int rc = stmt(s, ST_IDENT_LIST, &st, e);

    *out = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    while ((rc = next_row(s, st, "list identities", e)) == 1) {
        v = xreallocarray(v, len + 1, sizeof *v);
        rc = read_ident(s, st, &v[len++], e);
        if (rc < 0)
            break;
    }
    stmt_done(st);
    if (rc < 0) {
        store_ident_free(v, len);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

int
store_ident_delete(struct store *s, const char *cls, struct err *e)
{
    sqlite3_stmt *st;
    int rc = stmt(s, ST_IDENT_DELETE, &st, e);

    if (rc < 0)
        return rc;
    bind_str(st, 1, cls);
    rc = run(s, st, "delete identity", e);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        rc = err_set(e, ERR_NOTFOUND, "%s: no identity '%s'", s->path, cls);
    return rc;
}

void
store_ident_clear(struct store_ident *id)
{
    if (id == NULL)
        return;
    free(id->cls);
    free(id->uuid);
    free(id->token);
    free(id->name);
    free(id->instance);
    json_decref(id->labels);
    memset(id, 0, sizeof *id);
}

void
store_ident_free(struct store_ident *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        store_ident_clear(&v[i]);
    free(v);
}

/* ------------------------------------------------------------------------------------------
 * Tasks
 * ------------------------------------------------------------------------------------------ */

int
store_task_put(struct store *s, const struct store_task *t, struct err *e)
{
    sqlite3_stmt *st;
    char what[64];
    int rc = stmt(s, ST_TASK_PUT, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, t->id);
    bind_str(st, 2, t->ident);
    bind_str(st, 3, t->state);
    sqlite3_bind_int(st, 4, t->result);
    bind_json(st, 5, t->task);
    bind_str(st, 6, t->job);
    bind_str(st, 7, t->repo);
    sqlite3_bind_int64(st, 8, t->created_ns);
    sqlite3_bind_int64(st, 9, t->started_ns);
    sqlite3_bind_int64(st, 10, t->stopped_ns);
    sqlite3_bind_int64(st, 11, t->log_acked);
    sqlite3_bind_int(st, 12, t->log_closed);
    sqlite3_bind_int(st, 13, t->final_sent);
    bind_json(st, 14, t->steps);
    bind_json(st, 15, t->outputs);
    bind_json(st, 16, t->sent_outputs);
    bind_json(st, 17, t->checkpoint);
    bind_json(st, 18, t->exec);
    bind_str(st, 19, t->reason);
    snprintf(what, sizeof what, "save task %" PRId64, t->id);
    return run(s, st, what, e);
}

int
store_task_update(struct store *s, const struct store_task *t, struct err *e)
{
    sqlite3_stmt *st;
    char what[64];
    int rc = stmt(s, ST_TASK_UPDATE, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, t->id);
    bind_str(st, 2, t->state);
    sqlite3_bind_int(st, 3, t->result);
    sqlite3_bind_int64(st, 4, t->started_ns);
    sqlite3_bind_int64(st, 5, t->stopped_ns);
    sqlite3_bind_int64(st, 6, t->log_acked);
    sqlite3_bind_int(st, 7, t->log_closed);
    sqlite3_bind_int(st, 8, t->final_sent);
    bind_json(st, 9, t->steps);
    bind_json(st, 10, t->outputs);
    bind_json(st, 11, t->sent_outputs);
    bind_json(st, 12, t->checkpoint);
    bind_json(st, 13, t->exec);
    bind_str(st, 14, t->reason);
    snprintf(what, sizeof what, "save task %" PRId64, t->id);
    rc = run(s, st, what, e);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, t->id);
    return rc;
}

/* Fills out from a row of TASK_COLS. */
static int
read_task(struct store *s, sqlite3_stmt *st, struct store_task *out, struct err *e)
{
    static const int json_cols[] = {4, 14, 15, 16, 17, 18};
    json_t **json_fields[] = {&out->task,         &out->steps,      &out->outputs,
                              &out->sent_outputs, &out->checkpoint, &out->exec};
    char what[64];
    int rc = 0;

    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(st, 0);
    out->ident = col_str(st, 1);
    out->state = col_str(st, 2);
    out->result = sqlite3_column_int(st, 3);
    out->job = col_str(st, 5);
    out->repo = col_str(st, 6);
    out->created_ns = sqlite3_column_int64(st, 7);
    out->started_ns = sqlite3_column_int64(st, 8);
    out->stopped_ns = sqlite3_column_int64(st, 9);
    out->log_rows = sqlite3_column_int64(st, 10);
    out->log_acked = sqlite3_column_int64(st, 11);
    out->log_closed = sqlite3_column_int(st, 12) != 0;
    out->final_sent = sqlite3_column_int(st, 13) != 0;
    out->reason = col_str(st, 19);
    snprintf(what, sizeof what, "task %" PRId64, out->id);
    for (size_t i = 0; i < sizeof json_cols / sizeof json_cols[0] && rc == 0; i++)
        rc = col_json(s, st, json_cols[i], what, json_fields[i], e);
    return rc;
}

int
store_task_get(struct store *s, int64_t id, struct store_task *out, struct err *e)
{
    sqlite3_stmt *st;
    int rc = stmt(s, ST_TASK_GET, &st, e);

    memset(out, 0, sizeof *out);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = next_row(s, st, "read task", e);
    if (rc < 0)
        return rc;
    if (rc == 0)
        rc = err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, id);
    else
        rc = read_task(s, st, out, e);
    stmt_done(st);
    if (rc < 0)
        store_task_clear(out);
    return rc;
}

/* SQLite's LIMIT for a count where 0 means no limit. */
static int64_t
sql_limit(size_t n)
{
    return n == 0 || n > (size_t)INT64_MAX ? -1 : (int64_t)n;
}

int
store_task_list(struct store *s, const char *state, size_t limit, struct store_task **out,
                size_t *n, struct err *e)
{
    sqlite3_stmt *st;
    struct store_task *v = NULL;
    size_t len = 0;
    int rc = stmt(s, ST_TASK_LIST, &st, e);

    *out = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    bind_str(st, 1, state);
    sqlite3_bind_int64(st, 2, sql_limit(limit));
    while ((rc = next_row(s, st, "list tasks", e)) == 1) {
        v = xreallocarray(v, len + 1, sizeof *v);
        rc = read_task(s, st, &v[len++], e);
        if (rc < 0)
            break;
    }
    stmt_done(st);
    if (rc < 0) {
        store_task_free(v, len);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

void
store_task_clear(struct store_task *t)
{
    if (t == NULL)
        return;
    free(t->ident);
    free(t->state);
    json_decref(t->task);
    free(t->job);
    free(t->repo);
    json_decref(t->steps);
    json_decref(t->outputs);
    json_decref(t->sent_outputs);
    json_decref(t->checkpoint);
    json_decref(t->exec);
    free(t->reason);
    memset(t, 0, sizeof *t);
}

void
store_task_free(struct store_task *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        store_task_clear(&v[i]);
    free(v);
}

/* The body of store_task_gc(), inside an atomic section. */
static int
task_gc(struct store *s, int64_t before_ns, int *deleted, struct err *e)
{
    static const int ids[] = {ST_GC_ROWS, ST_GC_GPUS, ST_GC_TASKS};
    sqlite3_stmt *st;
    int rc = 0;

    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && rc == 0; i++) {
        rc = stmt(s, ids[i], &st, e);
        if (rc < 0)
            break;
        sqlite3_bind_int64(st, 1, before_ns);
        rc = run(s, st, "delete old tasks", e);
    }
    if (rc == 0)
        *deleted = sqlite3_changes(s->db); /* of the last statement: the tasks */
    return rc;
}

int
store_task_gc(struct store *s, int64_t before_ns, int *deleted, struct err *e)
{
    bool owned = sqlite3_get_autocommit(s->db);
    int rc, count = 0;

    if (deleted)
        *deleted = 0;
    rc = atomic_begin(s, e);
    if (rc < 0)
        return rc;
    rc = atomic_end(s, owned, task_gc(s, before_ns, &count, e), e);
    if (rc == 0 && deleted)
        *deleted = count;
    return rc;
}

int
store_task_scrub(struct store *s, int64_t id, struct err *e)
{
    sqlite3_stmt *st;
    char what[64];
    int rc = stmt(s, ST_TASK_SCRUB, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    snprintf(what, sizeof what, "scrub task %" PRId64, id);
    rc = run(s, st, what, e);
    if (rc < 0 || sqlite3_changes(s->db) == 0)
        s->scrub_retry = true; /* store_settle() tries again, for every done task */
    else
        s->wal_scrub = true;
    return rc;
}

/* The body of store_settle(): SQLITE_BUSY/LOCKED (a reader, a writer elsewhere) and a full disk
 * are 1 (later); other failures are reported. */
static int
settle(struct store *s, struct err *e)
{
    sqlite3_stmt *st;
    int rc;

    if (s->scrub_retry) {
        rc = stmt(s, ST_SCRUB_DONE, &st, e);
        if (rc == 0)
            rc = run(s, st, "scrub done tasks", e);
        if (rc == -EBUSY || rc == -ENOSPC)
            return 1;
        if (rc < 0)
            return rc;
        s->scrub_retry = false;
        s->wal_scrub = true;
    }
    /* Never wait for a reader (runnerctl) on the loop: try again later instead. */
    sqlite3_busy_timeout(s->db, 0);
    rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_busy_timeout(s->db, 5000);
    if (rc != SQLITE_OK) {
        rc = db_err(s, rc, "checkpoint the WAL", e);
        return rc == -EBUSY || rc == -ENOSPC ? 1 : rc;
    }
    s->wal_scrub = false;
    return 0;
}

int
store_reclaim(struct store *s)
{
    int rc;

    if (!sqlite3_get_autocommit(s->db))
        return 1;
    sqlite3_busy_timeout(s->db, 0);
    rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_busy_timeout(s->db, 5000);
    if (rc != SQLITE_OK)
        return 1;
    s->wal_scrub = false; /* the same checkpoint */
    return 0;
}

int
store_settle(struct store *s, struct err *e)
{
    int rc;

    if (!s->wal_scrub && !s->scrub_retry)
        return 0;
    if (!sqlite3_get_autocommit(s->db))
        return 1; /* a transaction is open: later */
    rc = settle(s, e);
    if (rc < 0 && s->settle_failing)
        return 1; /* said already */
    s->settle_failing = rc < 0;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Log spool
 * ------------------------------------------------------------------------------------------ */

/* The body of store_log_append(), inside an atomic section. */
static int
log_append(struct store *s, int64_t task, int64_t first, const struct store_row *rows, size_t n,
           struct err *e)
{
    sqlite3_stmt *st;
    int64_t next;
    int rc = stmt(s, ST_LOG_NEXT, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    rc = next_row(s, st, "read task", e);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        stmt_done(st);
        return err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, task);
    }
    next = sqlite3_column_int64(st, 0);
    stmt_done(st);
    if (first != next)
        return err_set(e, ERR_INVALID,
                       "%s: task %" PRId64 ": log rows from %" PRId64 " would leave %s: %" PRId64
                       " rows are spooled",
                       s->path, task, first, first > next ? "a gap" : "an overlap", next);
    rc = stmt(s, ST_LOG_INSERT, &st, e);
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, task);
        sqlite3_bind_int64(st, 2, first + (int64_t)i);
        sqlite3_bind_int64(st, 3, rows[i].time_ns);
        bind_str(st, 4, rows[i].content ? rows[i].content : "");
        rc = run(s, st, "append log row", e);
    }
    if (rc == 0)
        rc = stmt(s, ST_LOG_SET_ROWS, &st, e);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int64(st, 2, first + (int64_t)n);
    return run(s, st, "update log rows", e);
}

int
store_log_append(struct store *s, int64_t task, int64_t first, const struct store_row *rows,
                 size_t n, struct err *e)
{
    bool owned = sqlite3_get_autocommit(s->db);
    int rc = atomic_begin(s, e);

    if (rc < 0)
        return rc;
    return atomic_end(s, owned, log_append(s, task, first, rows, n, e), e);
}

int
store_log_read(struct store *s, int64_t task, int64_t from, size_t max, struct store_row **out,
               size_t *n, struct err *e)
{
    sqlite3_stmt *st;
    struct store_row *v = NULL;
    size_t len = 0, cap = 0;
    int rc = stmt(s, ST_LOG_READ, &st, e);

    *out = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, sql_limit(max));
    while ((rc = next_row(s, st, "read log rows", e)) == 1) {
        if (len == cap) {
            cap = cap ? cap * 2 : 64;
            v = xreallocarray(v, cap, sizeof *v);
        }
        v[len].time_ns = sqlite3_column_int64(st, 0);
        v[len].content = col_str(st, 1);
        len++;
    }
    stmt_done(st);
    if (rc < 0) {
        store_rows_free(v, len);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

void
store_rows_free(struct store_row *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i].content);
    free(v);
}

int
store_log_ack(struct store *s, int64_t task, int64_t ack, struct err *e)
{
    sqlite3_stmt *st;
    int64_t stored;
    int rc = stmt(s, ST_LOG_ACK, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int64(st, 2, ack);
    rc = run(s, st, "record log ack", e);
    if (rc < 0 || sqlite3_changes(s->db) > 0)
        return rc;
    /* Nothing changed: no such task, or the ack went backwards. */
    rc = stmt(s, ST_LOG_ACKED, &st, e);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    rc = next_row(s, st, "read log ack", e);
    if (rc < 0)
        return rc;
    stored = rc ? sqlite3_column_int64(st, 0) : 0;
    stmt_done(st);
    if (rc == 0)
        return err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, task);
    return err_set(e, -ERANGE,
                   "%s: task %" PRId64 ": log ack %" PRId64 " is below the stored ack %" PRId64
                   " (submitted logs are lost)",
                   s->path, task, ack, stored);
}

/* ------------------------------------------------------------------------------------------
 * GPUs
 * ------------------------------------------------------------------------------------------ */

/* The body of store_gpu_take(), inside an atomic section. */
static int
gpu_take(struct store *s, const char *gpu, int64_t task, struct err *e)
{
    sqlite3_stmt *st;
    int64_t holder;
    int rc = stmt(s, ST_GPU_TAKE, &st, e);

    if (rc < 0)
        return rc;
    bind_str(st, 1, gpu);
    sqlite3_bind_int64(st, 2, task);
    rc = run(s, st, "take GPU", e);
    if (rc < 0 || sqlite3_changes(s->db) > 0)
        return rc;
    rc = stmt(s, ST_GPU_OWNER, &st, e);
    if (rc < 0)
        return rc;
    bind_str(st, 1, gpu);
    rc = next_row(s, st, "read GPU", e);
    if (rc < 0)
        return rc;
    assert(rc == 1); /* the insert was ignored, inside this transaction: the row exists */
    holder = sqlite3_column_int64(st, 0);
    stmt_done(st);
    if (holder == task)
        return 0;
    return err_set(e, ERR_INVALID, "%s: GPU %s is busy (held by task %" PRId64 ")", s->path, gpu,
                   holder);
}

int
store_gpu_take(struct store *s, const char *gpu, int64_t task, struct err *e)
{
    bool owned = sqlite3_get_autocommit(s->db);
    int rc = atomic_begin(s, e);

    if (rc < 0)
        return rc;
    return atomic_end(s, owned, gpu_take(s, gpu, task, e), e);
}

int
store_gpu_release(struct store *s, int64_t task, struct err *e)
{
    sqlite3_stmt *st;
    int rc = stmt(s, ST_GPU_RELEASE, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    return run(s, st, "release GPUs", e);
}

int
store_gpu_held(struct store *s, json_t **out, struct err *e)
{
    sqlite3_stmt *st;
    json_t *held;
    int rc = stmt(s, ST_GPU_HELD, &st, e);

    *out = NULL;
    if (rc < 0)
        return rc;
    held = json_object();
    while ((rc = next_row(s, st, "list GPUs", e)) == 1)
        json_object_set_new(held, (const char *)sqlite3_column_text(st, 0),
                            json_integer(sqlite3_column_int64(st, 1)));
    stmt_done(st);
    if (rc < 0) {
        json_decref(held);
        return rc;
    }
    *out = held;
    return 0;
}
