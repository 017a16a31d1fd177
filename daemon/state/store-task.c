/* store-task.c: the tasks table (store.h): saving, reading and listing tasks, deleting old
 * ones, scrubbing the secrets of ended ones and settling the WAL after a scrub. */
#include "store-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
store_task_put(struct store *s, const struct store_task *t, struct err *e)
{
    sqlite3_stmt *st;
    char what[64];
    int rc = db_stmt(s, ST_TASK_PUT, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, t->id);
    db_bind_str(st, 2, t->ident);
    db_bind_str(st, 3, t->state);
    sqlite3_bind_int(st, 4, t->result);
    db_bind_json(st, 5, t->task);
    db_bind_str(st, 6, t->job);
    db_bind_str(st, 7, t->repo);
    sqlite3_bind_int64(st, 8, t->created_ns);
    sqlite3_bind_int64(st, 9, t->started_ns);
    sqlite3_bind_int64(st, 10, t->stopped_ns);
    sqlite3_bind_int64(st, 11, t->log_acked);
    sqlite3_bind_int(st, 12, t->log_closed);
    sqlite3_bind_int(st, 13, t->final_sent);
    db_bind_json(st, 14, t->steps);
    db_bind_json(st, 15, t->outputs);
    db_bind_json(st, 16, t->sent_outputs);
    db_bind_json(st, 17, t->checkpoint);
    db_bind_json(st, 18, t->exec);
    db_bind_str(st, 19, t->reason);
    snprintf(what, sizeof what, "save task %" PRId64, t->id);
    return db_run(s, st, what, e);
}

int
store_task_update(struct store *s, const struct store_task *t, struct err *e)
{
    sqlite3_stmt *st;
    char what[64];
    int rc = db_stmt(s, ST_TASK_UPDATE, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, t->id);
    db_bind_str(st, 2, t->state);
    sqlite3_bind_int(st, 3, t->result);
    sqlite3_bind_int64(st, 4, t->started_ns);
    sqlite3_bind_int64(st, 5, t->stopped_ns);
    sqlite3_bind_int64(st, 6, t->log_acked);
    sqlite3_bind_int(st, 7, t->log_closed);
    sqlite3_bind_int(st, 8, t->final_sent);
    db_bind_json(st, 9, t->steps);
    db_bind_json(st, 10, t->outputs);
    db_bind_json(st, 11, t->sent_outputs);
    db_bind_json(st, 12, t->checkpoint);
    db_bind_json(st, 13, t->exec);
    db_bind_str(st, 14, t->reason);
    snprintf(what, sizeof what, "save task %" PRId64, t->id);
    rc = db_run(s, st, what, e);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, t->id);
    return rc;
}

/* Fills out from a row of TASK_COLS. */
static int
read_task(struct store *s, sqlite3_stmt *st, void *row, struct err *e)
{
    static const int json_cols[] = {4, 14, 15, 16, 17, 18};
    struct store_task *out = row;
    json_t **json_fields[] = {&out->task,         &out->steps,      &out->outputs,
                              &out->sent_outputs, &out->checkpoint, &out->exec};
    char what[64];
    int rc = 0;

    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(st, 0);
    out->ident = db_col_str(st, 1);
    out->state = db_col_str(st, 2);
    out->result = sqlite3_column_int(st, 3);
    out->job = db_col_str(st, 5);
    out->repo = db_col_str(st, 6);
    out->created_ns = sqlite3_column_int64(st, 7);
    out->started_ns = sqlite3_column_int64(st, 8);
    out->stopped_ns = sqlite3_column_int64(st, 9);
    out->log_rows = sqlite3_column_int64(st, 10);
    out->log_acked = sqlite3_column_int64(st, 11);
    out->log_closed = sqlite3_column_int(st, 12) != 0;
    out->final_sent = sqlite3_column_int(st, 13) != 0;
    out->reason = db_col_str(st, 19);
    snprintf(what, sizeof what, "task %" PRId64, out->id);
    for (size_t i = 0; i < sizeof json_cols / sizeof json_cols[0] && rc == 0; i++)
        rc = db_col_json(s, st, json_cols[i], what, json_fields[i], e);
    return rc;
}

static void
clear_task(void *row)
{
    store_task_clear(row);
}

int
store_task_get(struct store *s, int64_t id, struct store_task *out, struct err *e)
{
    sqlite3_stmt *st;
    int rc = db_stmt(s, ST_TASK_GET, &st, e);

    memset(out, 0, sizeof *out);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = db_read_one(s, st, "read task", read_task, out, e);
    if (rc == 0)
        rc = err_set(e, ERR_NOTFOUND, "%s: no task %" PRId64, s->path, id);
    if (rc < 0) {
        store_task_clear(out);
        return rc;
    }
    return 0;
}

int
store_task_list(struct store *s, const char *state, size_t limit, struct store_task **out,
                size_t *n, struct err *e)
{
    sqlite3_stmt *st;
    void *v = NULL;
    int rc = db_stmt(s, ST_TASK_LIST, &st, e);

    *out = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    db_bind_str(st, 1, state);
    sqlite3_bind_int64(st, 2, db_limit(limit));
    rc = db_read_all(s, st, "list tasks", sizeof **out, read_task, clear_task, &v, n, e);
    *out = v;
    return rc;
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
        rc = db_stmt(s, ids[i], &st, e);
        if (rc < 0)
            break;
        sqlite3_bind_int64(st, 1, before_ns);
        rc = db_run(s, st, "delete old tasks", e);
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
    rc = db_atomic_begin(s, e);
    if (rc < 0)
        return rc;
    rc = db_atomic_end(s, owned, task_gc(s, before_ns, &count, e), e);
    if (rc == 0 && deleted)
        *deleted = count;
    return rc;
}

int
store_task_scrub(struct store *s, int64_t id, struct err *e)
{
    sqlite3_stmt *st;
    char what[64];
    int rc = db_stmt(s, ST_TASK_SCRUB, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    snprintf(what, sizeof what, "scrub task %" PRId64, id);
    rc = db_run(s, st, what, e);
    if (rc < 0 || sqlite3_changes(s->db) == 0) {
        s->scrub_retry = true; /* store_settle() tries again, for every done task */
    } else {
        s->wal_scrub = true;
        s->scrub_gen++;
    }
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
        rc = db_stmt(s, ST_SCRUB_DONE, &st, e);
        if (rc == 0)
            rc = db_run(s, st, "scrub done tasks", e);
        if (rc == -EBUSY || rc == -ENOSPC)
            return 1;
        if (rc < 0)
            return rc;
        s->scrub_retry = false;
        s->wal_scrub = true;
        s->scrub_gen++;
    }
    if (s->ckpt != NULL) {
        /* The worker truncates it: the loop does not wait for the copy and the fsyncs. */
        if (store_ckpt_settle(s) == 1)
            return 1;
        s->wal_scrub = false;
        return 0;
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
