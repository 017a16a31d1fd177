/* store-gpu.c: the gpus table (store.h): which task holds which GPU, so that a restarted
 * runnerd hands no GPU out twice. */
#include "store-int.h"

#include <assert.h>
#include <inttypes.h>

/* The body of store_gpu_take(), inside an atomic section. */
static int
gpu_take(struct store *s, const char *gpu, int64_t task, struct err *e)
{
    sqlite3_stmt *st;
    int64_t holder;
    int rc = db_stmt(s, ST_GPU_TAKE, &st, e);

    if (rc < 0)
        return rc;
    db_bind_str(st, 1, gpu);
    sqlite3_bind_int64(st, 2, task);
    rc = db_run(s, st, "take GPU", e);
    if (rc < 0 || sqlite3_changes(s->db) > 0)
        return rc;
    rc = db_stmt(s, ST_GPU_OWNER, &st, e);
    if (rc < 0)
        return rc;
    db_bind_str(st, 1, gpu);
    rc = db_next_row(s, st, "read GPU", e);
    if (rc < 0)
        return rc;
    assert(rc == 1); /* the insert was ignored, inside this transaction: the row exists */
    holder = sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    if (holder == task)
        return 0;
    return err_set(e, ERR_INVALID, "%s: GPU %s is busy (held by task %" PRId64 ")", s->path, gpu,
                   holder);
}

int
store_gpu_take(struct store *s, const char *gpu, int64_t task, struct err *e)
{
    bool owned = sqlite3_get_autocommit(s->db);
    int rc = db_atomic_begin(s, e);

    if (rc < 0)
        return rc;
    return db_atomic_end(s, owned, gpu_take(s, gpu, task, e), e);
}

int
store_gpu_release(struct store *s, int64_t task, struct err *e)
{
    sqlite3_stmt *st;
    int rc = db_stmt(s, ST_GPU_RELEASE, &st, e);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, task);
    return db_run(s, st, "release GPUs", e);
}

int
store_gpu_held(struct store *s, json_t **out, struct err *e)
{
    sqlite3_stmt *st;
    json_t *held;
    int rc = db_stmt(s, ST_GPU_HELD, &st, e);

    *out = NULL;
    if (rc < 0)
        return rc;
    held = json_object();
    while ((rc = db_next_row(s, st, "list GPUs", e)) == 1)
        json_object_set_new(held, (const char *)sqlite3_column_text(st, 0),
                            json_integer(sqlite3_column_int64(st, 1)));
    db_stmt_done(st);
    if (rc < 0) {
        json_decref(held);
        return rc;
    }
    *out = held;
    return 0;
}
