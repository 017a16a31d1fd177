/* store-int.h: what the files of the state store share (store.h is the API): the connection
 * (struct store), the ids of its cached statements, and the sqlite helpers of store.c. Private
 * to daemon/state/store*.c. */
#ifndef STORE_INT_H
#define STORE_INT_H

#include "store.h"

#include <sqlite3.h>

/* What of a task message only a task that can still run or resume needs: its secrets and the
 * tokens in its context (a message that is not JSON is dropped whole). */
#define SCRUB_TASK                                                                                 \
    "CASE WHEN json_valid(task) THEN json_remove(task, '$.secrets', '$.context.token', "          \
    "'$.context.gitea_runtime_token', '$.context.runtime_token') END"

/* The cached statements: their SQL is sql_text[] in store.c. */
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
    ST_LOG_INSERT_MANY, /* STORE_LOG_INSERT_MANY rows in one statement */
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

struct store {
    sqlite3 *db;
    char *path;
    int lock_fd;                /* the pid file while store_lock() holds it, else -1 */
    sqlite3_stmt *st[ST_COUNT]; /* prepared on first use, finalized by store_close() */
    bool wal_scrub;             /* the -wal file may hold scrubbed secrets: truncate it */
    bool scrub_retry;           /* a scrub failed (a full disk): scrub every done task again */
    bool settle_failing;        /* the last store_settle() failed (reported once) */
    uint64_t scrub_gen;         /* counts scrubs (store_ckpt_settle()) */
    struct ckpt *ckpt;          /* checkpoints off the loop (store-ckpt.c), or NULL */
};

/* ---- store.c: errors and helpers (each described where store.c defines it) ---- */

int db_err(struct store *s, int rc, const char *what, struct err *e);
int db_stmt(struct store *s, int id, sqlite3_stmt **out, struct err *e);
void db_stmt_done(sqlite3_stmt *st);
int db_run(struct store *s, sqlite3_stmt *st, const char *what, struct err *e);
int db_next_row(struct store *s, sqlite3_stmt *st, const char *what, struct err *e);
int db_exec(struct store *s, const char *sql, const char *what, struct err *e);
void db_bind_str(sqlite3_stmt *st, int i, const char *v);
void db_bind_json(sqlite3_stmt *st, int i, const json_t *v);
char *db_col_str(sqlite3_stmt *st, int i);
int db_col_json(struct store *s, sqlite3_stmt *st, int i, const char *what, json_t **out,
                struct err *e);
int64_t db_limit(size_t n);
/* Reads the row a statement is on into out (a struct store_ident, a struct store_task...). */
typedef int (*db_read_fn)(struct store *s, sqlite3_stmt *st, void *out, struct err *e);
/* Frees what a db_read_fn filled in. */
typedef void (*db_clear_fn)(void *row);
int db_read_one(struct store *s, sqlite3_stmt *st, const char *what, db_read_fn read, void *out,
                struct err *e);
int db_read_all(struct store *s, sqlite3_stmt *st, const char *what, size_t size,
                db_read_fn read, db_clear_fn clear, void **out, size_t *n, struct err *e);
int db_atomic_begin(struct store *s, struct err *e);
int db_atomic_end(struct store *s, bool owned, int rc, struct err *e);

/* ---- store-schema.c ---- */

/* Brings the schema to the version this build writes, one migration per transaction. */
int db_migrate(struct store *s, struct err *e);

/* ---- store-ckpt.c ---- */

struct ckpt;
/* Ends the checkpoints off the loop (store_close()): waits for a running one. */
void store_ckpt_free(struct ckpt *ck);
/* Asks for a TRUNCATE checkpoint when the WAL holds pages (store_release_memory()). */
void store_ckpt_idle(struct store *s);
/* store_settle()'s truncation when checkpoints are off the loop: 0 done, 1 asked for. */
int store_ckpt_settle(struct store *s);

/* ---- store-lock.c ---- */

/* Drops the daemon lock if s holds it (store_close()). */
void db_unlock(struct store *s);

#endif
