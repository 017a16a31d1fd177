/* store-log.c: the log spool (store.h): a task's log rows, appended in order, read back in
 * batches, and how far the server has acknowledged them. */
#include "store-int.h"

#include "runner/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* The body of store_log_append(), inside an atomic section. */
static int
log_append(struct store *s, int64_t task, int64_t first, const struct store_row *rows, size_t n,
           struct err *e)
{
    sqlite3_stmt *st;
    int64_t next;
    int rc = db_stmt(s, ST_LOG_NEXT, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    rc = db_next_row(s, st, "read task", e);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        db_stmt_done(st);
        return err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, task);
    }
    next = sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    if (first != next)
        return err_set(e, ERR_INVALID,
                       "%s: task %" PRId64 ": log rows from %" PRId64 " would leave %s: %" PRId64
                       " rows are spooled",
                       s->path, task, first, first > next ? "a gap" : "an overlap", next);
    size_t i = 0;
    /* Most rows go STORE_LOG_INSERT_MANY at a time, the rest one by one. */
    rc = n >= STORE_LOG_INSERT_MANY ? db_stmt(s, ST_LOG_INSERT_MANY, &st, e) : 0;
    for (; i + STORE_LOG_INSERT_MANY <= n && rc == 0; i += STORE_LOG_INSERT_MANY) {
        for (int k = 0; k < STORE_LOG_INSERT_MANY; k++) {
            const struct store_row *r = &rows[i + (size_t)k];
            sqlite3_bind_int64(st, 4 * k + 1, task);
            sqlite3_bind_int64(st, 4 * k + 2, first + (int64_t)i + k);
            sqlite3_bind_int64(st, 4 * k + 3, r->time_ns);
            db_bind_str(st, 4 * k + 4, r->content ? r->content : "");
        }
        rc = db_run(s, st, "append log rows", e);
    }
    if (rc == 0)
        rc = db_stmt(s, ST_LOG_INSERT, &st, e);
    for (; i < n && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, task);
        sqlite3_bind_int64(st, 2, first + (int64_t)i);
        sqlite3_bind_int64(st, 3, rows[i].time_ns);
        db_bind_str(st, 4, rows[i].content ? rows[i].content : "");
        rc = db_run(s, st, "append log row", e);
    }
    if (rc == 0)
        rc = db_stmt(s, ST_LOG_SET_ROWS, &st, e);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int64(st, 2, first + (int64_t)n);
    return db_run(s, st, "update log rows", e);
}

int
store_log_append(struct store *s, int64_t task, int64_t first, const struct store_row *rows,
                 size_t n, struct err *e)
{
    bool owned = sqlite3_get_autocommit(s->db);
    int rc = db_atomic_begin(s, e);

    if (rc < 0)
        return rc;
    return db_atomic_end(s, owned, log_append(s, task, first, rows, n, e), e);
}

int
store_log_read(struct store *s, int64_t task, int64_t from, size_t max, struct store_row **out,
               size_t *n, struct err *e)
{
    sqlite3_stmt *st;
    struct store_row *v = NULL;
    size_t len = 0, cap = 0;
    int rc = db_stmt(s, ST_LOG_READ, &st, e);

    *out = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, db_limit(max));
    while ((rc = db_next_row(s, st, "read log rows", e)) == 1) {
        if (len == cap) {
            cap = cap ? cap * 2 : 64;
            v = xreallocarray(v, cap, sizeof *v);
        }
        v[len].time_ns = sqlite3_column_int64(st, 0);
        v[len].content = db_col_str(st, 1);
        len++;
    }
    db_stmt_done(st);
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
    int rc = db_stmt(s, ST_LOG_ACK, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int64(st, 2, ack);
    rc = db_run(s, st, "record log ack", e);
    if (rc < 0 || sqlite3_changes(s->db) > 0)
        return rc;
    /* Nothing changed: no such task, or the ack went backwards. */
    rc = db_stmt(s, ST_LOG_ACKED, &st, e);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    rc = db_next_row(s, st, "read log ack", e);
    if (rc < 0)
        return rc;
    stored = rc ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    if (rc == 0)
        return err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, task);
    return err_set(e, -ERANGE,
                   "%s: task %" PRId64 ": log ack %" PRId64 " is below the stored ack %" PRId64
                   " (submitted logs are lost)",
                   s->path, task, ack, stored);
}
