/* test-store.c: the state database on real sqlite files in the case's temp dir: file and
 * directory modes (0600 database, -wal, -shm; 0700 parent); identities put/get/list/replace/
 * delete; the task row round trip (every field, NULL and non-NULL JSON), list by state with a
 * limit, newest first; the log spool (in order across appends, gaps and overlaps refused,
 * log_rows moved atomically with the rows, inside a caller's transaction and rolled back); ack
 * monotonicity; persistence across reopen; gc; GPU holds; a garbage file, a foreign sqlite
 * database and a newer schema refused; a locked database reported; 10k rows in one transaction;
 * the daemon lock: the pid file beside the database holds the holder's pid, another process
 * sees that holder and cannot take the lock, and a pid file left behind is not a holder; a done
 * task scrubbed of its secrets and tokens, none of them left in the raw bytes of the database,
 * -wal or -shm (secure_delete, the WAL truncated), the truncation never waiting for a reader,
 * an unreadable task message dropped, and done tasks of an older database scrubbed by the
 * migration while running ones keep their secrets; a task not stored as done yet keeps them
 * until it is; the page cache handed back by store_release_memory(), the store working on;
 * checkpoints off the loop (a VFS counting writes to the database file by thread: none from the
 * loop's thread over 100k rows, the WAL started again after them, emptied when idle and for
 * settle, store_close() while one runs), kill -9 mid-spool losing no committed row, and schema 3
 * (log_rows with a rowid) migrated from a version 2 database. */
#include "harness.h"

#include "store.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DB "state/runnerd.db"

/* Opens DB, failing the test on error. */
static struct store *
open_db(const char *path)
{
    struct store *s = NULL;
    struct err e = {0};
    int rc = store_open(path, &s, &e);

    if (rc < 0)
        test_fail(__FILE__, __LINE__, "store_open %s: %d %s", path, rc, e.msg);
    ASSERT(s != NULL);
    return s;
}

/* Runs SQL on its own connection, as another process would. */
static void
raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        test_fail(__FILE__, __LINE__, "%s: %s", sql, msg);
    sqlite3_close(db);
}

/* Returns the first column of the first row of a query, as an integer. */
static int64_t
raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v;

    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void
write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");

    ASSERT(f != NULL);
    fputs(s, f);
    fclose(f);
}

static int
file_mode(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        test_fail(__FILE__, __LINE__, "stat %s failed", path);
    return (int)(st.st_mode & 07777);
}

static void
put_task(struct store *s, int64_t id, char *state, int64_t stopped_ns)
{
    struct store_task t = {
        .id = id,
        .ident = "cpu",
        .state = state,
        .job = "build",
        .repo = "owner/repo",
        .created_ns = id * 1000,
        .stopped_ns = stopped_ns,
    };
    struct err e = {0};

    if (store_task_put(s, &t, &e) < 0)
        test_fail(__FILE__, __LINE__, "put task %jd: %s", (intmax_t)id, e.msg);
}

/* Appends n rows "<prefix> <index>" at the task's current end. */
static void
append(struct store *s, int64_t task, int64_t first, size_t n, const char *prefix)
{
    struct store_row *rows = calloc(n, sizeof *rows);
    struct err e = {0};
    int rc;

    ASSERT(rows != NULL);
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s %jd", prefix, (intmax_t)(first + (int64_t)i));
        rows[i].time_ns = 1700000000000000000LL + first + (int64_t)i;
        rows[i].content = strdup(buf);
    }
    rc = store_log_append(s, task, first, rows, n, &e);
    for (size_t i = 0; i < n; i++)
        free(rows[i].content);
    free(rows);
    if (rc < 0)
        test_fail(__FILE__, __LINE__, "append %jd+%zu: %s", (intmax_t)first, n, e.msg);
}

static int64_t
log_rows_of(struct store *s, int64_t id)
{
    struct store_task t;
    struct err e = {0};
    int64_t n;

    ASSERT_OK(store_task_get(s, id, &t, &e));
    n = t.log_rows;
    store_task_clear(&t);
    return n;
}

static size_t
count_rows(struct store *s, int64_t task)
{
    struct store_row *rows;
    size_t n;
    struct err e = {0};

    ASSERT_OK(store_log_read(s, task, 0, 0, &rows, &n, &e));
    store_rows_free(rows, n);
    return n;
}

TEST(create_modes)
{
    struct store *s;
    struct err e = {0};
    mode_t old;

    umask(022); /* would give 0644 files and 0755 directories */
    s = open_db("state/sub/runnerd.db");
    old = umask(022);
    ASSERT_EQ(old, 022); /* restored after the open */
    put_task(s, 1, "running", 0); /* a write: -wal and -shm exist now */
    ASSERT_EQ(file_mode("state"), 0700);
    ASSERT_EQ(file_mode("state/sub"), 0700);
    ASSERT_EQ(file_mode("state/sub/runnerd.db"), 0600);
    ASSERT_EQ(file_mode("state/sub/runnerd.db-wal"), 0600);
    ASSERT_EQ(file_mode("state/sub/runnerd.db-shm"), 0600);
    ASSERT_STR_EQ(store_path(s), "state/sub/runnerd.db");
    ASSERT_EQ(store_commit(s, &e), 0); /* no transaction: a no-op */
    store_close(s);
    store_close(NULL);
    ASSERT_EQ(raw_int("state/sub/runnerd.db", "PRAGMA user_version"), store_schema_version());
    ASSERT(store_schema_version() >= 1);
    {
        sqlite3 *db;
        sqlite3_stmt *st;
        ASSERT_EQ(sqlite3_open("state/sub/runnerd.db", &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_STR_EQ((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}

TEST(identities)
{
    struct store *s = open_db(DB);
    struct store_ident cpu = {
        .cls = "cpu",
        .id = 7,
        .uuid = "0d3f-uuid",
        .token = "s3cret-token",
        .name = "host-1",
        .instance = "https://git.example.com/",
        .labels = json_pack("[ss]", "ubuntu-latest:docker://node:20", "linux:host"),
        .ephemeral = false,
        .registered_ns = 1700000000123456789LL,
    };
    struct store_ident gpu = {.cls = "gpu", .id = 8, .uuid = "u2", .token = "t2",
                              .name = "host-1-gpu", .instance = "https://g/", .ephemeral = true};
    struct store_ident got, *list;
    size_t n;
    struct err e = {0};

    ASSERT_EQ(store_ident_get(s, "cpu", &got, &e), ERR_NOTFOUND);
    ASSERT_STR_CONTAINS(e.msg, "no identity 'cpu'");
    ASSERT_OK(store_ident_put(s, &gpu, &e));
    ASSERT_OK(store_ident_put(s, &cpu, &e));

    ASSERT_OK(store_ident_get(s, "cpu", &got, &e));
    ASSERT_STR_EQ(got.cls, "cpu");
    ASSERT_EQ(got.id, 7);
    ASSERT_STR_EQ(got.uuid, "0d3f-uuid");
    ASSERT_STR_EQ(got.token, "s3cret-token");
    ASSERT_STR_EQ(got.name, "host-1");
    ASSERT_STR_EQ(got.instance, "https://git.example.com/");
    ASSERT(json_equal(got.labels, cpu.labels));
    ASSERT(!got.ephemeral);
    ASSERT_EQ(got.registered_ns, 1700000000123456789LL);
    store_ident_clear(&got);
    ASSERT(got.cls == NULL && got.labels == NULL);

    ASSERT_OK(store_ident_get(s, "gpu", &got, &e));
    ASSERT(got.labels == NULL);
    ASSERT(got.ephemeral);
    store_ident_clear(&got);

    ASSERT_OK(store_ident_list(s, &list, &n, &e));
    ASSERT_EQ(n, 2);
    ASSERT_STR_EQ(list[0].cls, "cpu");
    ASSERT_STR_EQ(list[1].cls, "gpu");
    ASSERT_STR_EQ(list[1].name, "host-1-gpu");
    store_ident_free(list, n);

    /* Replace: same class, new registration. */
    json_decref(cpu.labels);
    cpu.labels = json_pack("[s]", "only:host");
    cpu.token = "new-token";
    cpu.id = 9;
    ASSERT_OK(store_ident_put(s, &cpu, &e));
    ASSERT_OK(store_ident_get(s, "cpu", &got, &e));
    ASSERT_EQ(got.id, 9);
    ASSERT_STR_EQ(got.token, "new-token");
    ASSERT_EQ(json_array_size(got.labels), 1);
    ASSERT_STR_EQ(json_string_value(json_array_get(got.labels, 0)), "only:host");
    store_ident_clear(&got);
    json_decref(cpu.labels);

    ASSERT_OK(store_ident_delete(s, "gpu", &e));
    ASSERT_EQ(store_ident_get(s, "gpu", &got, &e), ERR_NOTFOUND);
    ASSERT_EQ(store_ident_delete(s, "gpu", &e), ERR_NOTFOUND);
    ASSERT_OK(store_ident_list(s, &list, &n, &e));
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(list[0].cls, "cpu");
    store_ident_free(list, n);
    store_ident_free(NULL, 0);
    store_close(s);
}

TEST(task_roundtrip)
{
    struct store *s = open_db(DB);
    struct store_task t = {
        .id = 42,
        .ident = "gpu",
        .state = "finishing",
        .result = 2,
        .task = json_pack("{sI s{ss}s{ss}}", "id", (json_int_t)42, "context", "job", "build",
                          "secrets", "TOKEN", "hunter2"),
        .job = "build (linux)",
        .repo = "owner/repo",
        .created_ns = 1,
        .started_ns = 2,
        .stopped_ns = 3,
        .log_rows = 77, /* ignored by put */
        .log_acked = 4,
        .log_closed = true,
        .final_sent = true,
        .steps = json_pack("[{sisi}]", "id", 0, "result", 1),
        .outputs = json_pack("{ss}", "out", "v\n\"x\""),
        .sent_outputs = json_pack("[s]", "out"),
        .checkpoint = json_pack("{sisb}", "step", 3, "post", 1),
        .exec = json_pack("{ssss}", "container", "c1", "network", "n1"),
        .reason = "the agent died",
    };
    struct store_task got;
    struct err e = {0};

    ASSERT_EQ(store_task_get(s, 42, &got, &e), ERR_NOTFOUND);
    ASSERT_STR_CONTAINS(e.msg, "no task 42");
    ASSERT_OK(store_task_put(s, &t, &e));
    ASSERT_OK(store_task_get(s, 42, &got, &e));
    ASSERT_EQ(got.id, 42);
    ASSERT_STR_EQ(got.ident, "gpu");
    ASSERT_STR_EQ(got.state, "finishing");
    ASSERT_EQ(got.result, 2);
    ASSERT(json_equal(got.task, t.task));
    ASSERT_STR_EQ(got.job, "build (linux)");
    ASSERT_STR_EQ(got.repo, "owner/repo");
    ASSERT_EQ(got.created_ns, 1);
    ASSERT_EQ(got.started_ns, 2);
    ASSERT_EQ(got.stopped_ns, 3);
    ASSERT_EQ(got.log_rows, 0);
    ASSERT_EQ(got.log_acked, 4);
    ASSERT(got.log_closed);
    ASSERT(got.final_sent);
    ASSERT(json_equal(got.steps, t.steps));
    ASSERT(json_equal(got.outputs, t.outputs));
    ASSERT(json_equal(got.sent_outputs, t.sent_outputs));
    ASSERT(json_equal(got.checkpoint, t.checkpoint));
    ASSERT(json_equal(got.exec, t.exec));
    ASSERT_STR_EQ(got.reason, "the agent died");
    store_task_clear(&got);

    /* Stored compactly. */
    {
        sqlite3 *db;
        sqlite3_stmt *st;
        ASSERT_EQ(sqlite3_open(DB, &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT exec FROM tasks WHERE id = 42", -1, &st, NULL),
                  SQLITE_OK);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_STR_EQ((const char *)sqlite3_column_text(st, 0),
                      "{\"container\":\"c1\",\"network\":\"n1\"}");
        sqlite3_finalize(st);
        sqlite3_close(db);
    }

    /* Replace with NULLs everywhere they are allowed; log_acked does not go down. */
    struct store_task bare = {.id = 42, .state = "done", .log_acked = 1};
    ASSERT_OK(store_task_put(s, &bare, &e));
    ASSERT_OK(store_task_get(s, 42, &got, &e));
    ASSERT_STR_EQ(got.state, "done");
    ASSERT(got.ident == NULL && got.job == NULL && got.repo == NULL && got.reason == NULL);
    ASSERT(got.task == NULL && got.steps == NULL && got.outputs == NULL);
    ASSERT(got.sent_outputs == NULL && got.checkpoint == NULL && got.exec == NULL);
    ASSERT_EQ(got.result, 0);
    ASSERT_EQ(got.log_acked, 4);
    ASSERT(!got.log_closed && !got.final_sent);
    store_task_clear(&got);

    /* A state outside the three is refused by the schema. */
    bare.state = "bogus";
    ASSERT_EQ(store_task_put(s, &bare, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, DB);
    ASSERT_STR_CONTAINS(e.msg, "CHECK constraint failed");

    /* Bad JSON in a column is an error naming the task and column, not a crash. */
    raw_exec(DB, "UPDATE tasks SET steps = '[{bad' WHERE id = 42");
    ASSERT_EQ(store_task_get(s, 42, &got, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "task 42: column steps: bad JSON");
    ASSERT(got.state == NULL);

    json_decref(t.task);
    json_decref(t.steps);
    json_decref(t.outputs);
    json_decref(t.sent_outputs);
    json_decref(t.checkpoint);
    json_decref(t.exec);
    store_close(s);
}

TEST(task_list)
{
    struct store *s = open_db(DB);
    struct store_task *v;
    size_t n;
    struct err e = {0};

    /* Inserted out of order: the list orders by id. */
    put_task(s, 3, "running", 0);
    put_task(s, 1, "done", 10);
    put_task(s, 5, "running", 0);
    put_task(s, 2, "finishing", 0);
    put_task(s, 4, "running", 0);
    put_task(s, 6, "done", 20);

    ASSERT_OK(store_task_list(s, NULL, 0, &v, &n, &e));
    ASSERT_EQ(n, 6);
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(v[i].id, 6 - (int64_t)i);
    ASSERT_STR_EQ(v[0].job, "build");
    store_task_free(v, n);

    ASSERT_OK(store_task_list(s, "running", 2, &v, &n, &e));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(v[0].id, 5);
    ASSERT_EQ(v[1].id, 4);
    ASSERT_STR_EQ(v[1].state, "running");
    store_task_free(v, n);

    ASSERT_OK(store_task_list(s, "running", 0, &v, &n, &e));
    ASSERT_EQ(n, 3);
    ASSERT_EQ(v[2].id, 3);
    store_task_free(v, n);

    ASSERT_OK(store_task_list(s, "done", 10, &v, &n, &e));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(v[0].id, 6);
    ASSERT_EQ(v[1].id, 1);
    store_task_free(v, n);

    ASSERT_OK(store_task_list(s, "nothing", 0, &v, &n, &e));
    ASSERT_EQ(n, 0);
    ASSERT(v == NULL);
    store_task_free(NULL, 0);
    store_close(s);
}

TEST(log_spool)
{
    struct store *s = open_db(DB);
    struct store_row *rows;
    struct store_row one = {.time_ns = 5, .content = "x"};
    size_t n;
    struct err e = {0};

    put_task(s, 1, "running", 0);
    put_task(s, 2, "running", 0);
    append(s, 1, 0, 3, "a");
    append(s, 2, 0, 1, "other");
    append(s, 1, 3, 2, "b");
    append(s, 1, 5, 0, "none"); /* nothing to add: fine */
    ASSERT_EQ(log_rows_of(s, 1), 5);
    ASSERT_EQ(log_rows_of(s, 2), 1);

    ASSERT_OK(store_log_read(s, 1, 0, 0, &rows, &n, &e));
    ASSERT_EQ(n, 5);
    ASSERT_STR_EQ(rows[0].content, "a 0");
    ASSERT_STR_EQ(rows[2].content, "a 2");
    ASSERT_STR_EQ(rows[3].content, "b 3");
    ASSERT_STR_EQ(rows[4].content, "b 4");
    ASSERT_EQ(rows[4].time_ns, 1700000000000000004LL);
    store_rows_free(rows, n);

    ASSERT_OK(store_log_read(s, 1, 2, 2, &rows, &n, &e));
    ASSERT_EQ(n, 2);
    ASSERT_STR_EQ(rows[0].content, "a 2");
    ASSERT_STR_EQ(rows[1].content, "b 3");
    store_rows_free(rows, n);

    ASSERT_OK(store_log_read(s, 1, 5, 10, &rows, &n, &e));
    ASSERT_EQ(n, 0);
    store_rows_free(rows, n);
    ASSERT_OK(store_log_read(s, 99, 0, 0, &rows, &n, &e));
    ASSERT_EQ(n, 0);
    store_rows_free(rows, n);

    /* Gap and overlap: refused, naming both numbers; nothing changes. */
    ASSERT_EQ(store_log_append(s, 1, 7, &one, 1, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "task 1: log rows from 7 would leave a gap: 5 rows are spooled");
    ASSERT_EQ(store_log_append(s, 1, 4, &one, 1, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "from 4 would leave an overlap: 5 rows");
    ASSERT_EQ(store_log_append(s, 99, 0, &one, 1, &e), ERR_NOTFOUND);
    ASSERT_STR_CONTAINS(e.msg, "no task 99");
    ASSERT_EQ(log_rows_of(s, 1), 5);
    ASSERT_EQ(count_rows(s, 1), 5);

    /* A row failing half-way (a stray row at index 6, as if written behind our back) undoes
     * the rows before it and the log_rows update. */
    raw_exec(DB, "INSERT INTO log_rows (task_id, idx, time_ns, content) VALUES (1, 6, 0, 'x')");
    {
        struct store_row three[3] = {{1, "r5"}, {2, "r6"}, {3, "r7"}};
        ASSERT(store_log_append(s, 1, 5, three, 3, &e) < 0);
        ASSERT_STR_CONTAINS(e.msg, "UNIQUE constraint failed");
        ASSERT_STR_CONTAINS(e.msg, DB);
    }
    ASSERT_EQ(log_rows_of(s, 1), 5);
    ASSERT_OK(store_log_read(s, 1, 5, 0, &rows, &n, &e));
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(rows[0].content, "x"); /* only the stray row; r5 was rolled back */
    store_rows_free(rows, n);
    store_close(s);
}

TEST(append_in_transaction)
{
    struct store *s = open_db(DB);
    struct store_row one = {.time_ns = 5, .content = "x"};
    struct store_task t;
    struct err e = {0};

    put_task(s, 1, "running", 0);
    ASSERT_OK(store_begin(s, &e));
    append(s, 1, 0, 3, "a");
    /* Visible inside the transaction, not yet to another connection. */
    ASSERT_EQ(log_rows_of(s, 1), 3);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM log_rows"), 0);
    ASSERT_OK(store_commit(s, &e));
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM log_rows"), 3);
    ASSERT_EQ(raw_int(DB, "SELECT log_rows FROM tasks WHERE id = 1"), 3);

    ASSERT_OK(store_begin(s, &e));
    append(s, 1, 3, 2, "b");
    ASSERT_EQ(log_rows_of(s, 1), 5);
    store_rollback(s);
    ASSERT_EQ(log_rows_of(s, 1), 3);
    ASSERT_EQ(count_rows(s, 1), 3);
    store_rollback(s); /* none open: nothing happens */

    /* A refused append inside a transaction keeps the caller's other work. */
    ASSERT_OK(store_begin(s, &e));
    put_task(s, 2, "running", 0);
    append(s, 1, 3, 1, "c");
    ASSERT_EQ(store_log_append(s, 1, 9, &one, 1, &e), ERR_INVALID);
    ASSERT_OK(store_commit(s, &e));
    ASSERT_OK(store_task_get(s, 2, &t, &e));
    store_task_clear(&t);
    ASSERT_EQ(log_rows_of(s, 1), 4);
    ASSERT_EQ(count_rows(s, 1), 4);
    store_close(s);
}

TEST(ack_monotonic)
{
    struct store *s = open_db(DB);
    struct store_task t;
    struct err e = {0};

    put_task(s, 1, "running", 0);
    append(s, 1, 0, 6, "r");
    ASSERT_OK(store_log_ack(s, 1, 3, &e));
    ASSERT_OK(store_task_get(s, 1, &t, &e));
    ASSERT_EQ(t.log_acked, 3);
    store_task_clear(&t);
    ASSERT_OK(store_log_ack(s, 1, 5, &e));
    ASSERT_OK(store_log_ack(s, 1, 5, &e)); /* the same again: fine */
    ASSERT_EQ(store_log_ack(s, 1, 2, &e), -ERANGE);
    ASSERT_STR_CONTAINS(e.msg, "task 1: log ack 2 is below the stored ack 5");
    ASSERT_OK(store_task_get(s, 1, &t, &e));
    ASSERT_EQ(t.log_acked, 5);
    store_task_clear(&t);
    ASSERT_EQ(store_log_ack(s, 77, 1, &e), ERR_NOTFOUND);
    /* Rows stay spooled after the ack (gc removes them with the task). */
    ASSERT_EQ(count_rows(s, 1), 6);
    /* A put with an older log_acked does not move it back. */
    put_task(s, 1, "finishing", 0);
    ASSERT_OK(store_task_get(s, 1, &t, &e));
    ASSERT_EQ(t.log_acked, 5);
    ASSERT_EQ(t.log_rows, 6);
    ASSERT_STR_EQ(t.state, "finishing");
    store_task_clear(&t);
    store_close(s);
}

/* store_task_update(): the running task's changing parts, never its payload or identity. */
TEST(task_update)
{
    struct store *s = open_db(DB);
    struct store_task t = {0}, u = {0};
    struct err e = {0};

    t.id = 9;
    t.ident = "cpu";
    t.state = "running";
    t.task = json_pack("{s:I, s:s}", "id", (json_int_t)9, "workflowPayload", "cGF5bG9hZA==");
    t.job = "build";
    t.repo = "acme/app";
    t.created_ns = 111;
    ASSERT_OK(store_task_put(s, &t, &e));
    append(s, 9, 0, 3, "r");
    json_decref(t.task);

    /* Everything but the identity changes; the update's own identity fields are ignored. */
    u.id = 9;
    u.ident = "gpu";
    u.job = "other";
    u.state = "finishing";
    u.result = 2;
    u.started_ns = 5;
    u.stopped_ns = 6;
    u.log_acked = 2;
    u.log_closed = true;
    u.steps = json_pack("[{s:i}]", "id", 0);
    u.outputs = json_pack("{s:s}", "k", "v");
    u.reason = "why";
    ASSERT_OK(store_task_update(s, &u, &e));
    u.log_acked = 1; /* a lower ack does not move it back */
    ASSERT_OK(store_task_update(s, &u, &e));
    ASSERT_OK(store_task_get(s, 9, &t, &e));
    ASSERT_STR_EQ(t.ident, "cpu");
    ASSERT_STR_EQ(t.job, "build");
    ASSERT_EQ(t.created_ns, 111);
    ASSERT_STR_EQ(json_string_value(json_object_get(t.task, "workflowPayload")), "cGF5bG9hZA==");
    ASSERT_STR_EQ(t.state, "finishing");
    ASSERT_EQ(t.result, 2);
    ASSERT_EQ(t.stopped_ns, 6);
    ASSERT_EQ(t.log_acked, 2);
    ASSERT_EQ(t.log_rows, 3);
    ASSERT(t.log_closed);
    ASSERT(json_equal(t.steps, u.steps));
    ASSERT_STR_EQ(t.reason, "why");
    store_task_clear(&t);
    u.id = 10;
    ASSERT_EQ(store_task_update(s, &u, &e), ERR_NOTFOUND);
    json_decref(u.steps);
    json_decref(u.outputs);
    store_close(s);
}

TEST(reopen_persists)
{
    struct store *s = open_db(DB);
    struct store_ident id = {.cls = "cpu", .id = 1, .uuid = "u", .token = "t", .name = "n",
                             .instance = "i", .labels = json_pack("[s]", "l:host")};
    struct store_ident gid;
    struct store_task t;
    struct store_row *rows;
    size_t n;
    json_t *held;
    struct err e = {0};

    ASSERT_OK(store_ident_put(s, &id, &e));
    json_decref(id.labels);
    put_task(s, 10, "running", 0);
    append(s, 10, 0, 4, "line");
    ASSERT_OK(store_log_ack(s, 10, 2, &e));
    ASSERT_OK(store_gpu_take(s, "GPU-1", 10, &e));
    store_close(s);

    s = open_db(DB);
    ASSERT_OK(store_ident_get(s, "cpu", &gid, &e));
    ASSERT_STR_EQ(gid.token, "t");
    ASSERT_STR_EQ(json_string_value(json_array_get(gid.labels, 0)), "l:host");
    store_ident_clear(&gid);
    ASSERT_OK(store_task_get(s, 10, &t, &e));
    ASSERT_STR_EQ(t.state, "running");
    ASSERT_EQ(t.log_rows, 4);
    ASSERT_EQ(t.log_acked, 2);
    ASSERT_EQ(t.created_ns, 10000);
    store_task_clear(&t);
    ASSERT_OK(store_log_read(s, 10, 0, 0, &rows, &n, &e));
    ASSERT_EQ(n, 4);
    ASSERT_STR_EQ(rows[3].content, "line 3");
    store_rows_free(rows, n);
    ASSERT_OK(store_gpu_held(s, &held, &e));
    ASSERT_EQ(json_integer_value(json_object_get(held, "GPU-1")), 10);
    json_decref(held);
    /* And appending continues where it stopped. */
    append(s, 10, 4, 1, "line");
    ASSERT_EQ(log_rows_of(s, 10), 5);
    store_close(s);
}

TEST(gc)
{
    struct store *s = open_db(DB);
    struct store_task t;
    json_t *held;
    int deleted = -1;
    struct err e = {0};

    put_task(s, 1, "done", 100);
    put_task(s, 2, "done", 300);
    put_task(s, 3, "running", 0);
    put_task(s, 4, "finishing", 50);
    append(s, 1, 0, 3, "one");
    append(s, 2, 0, 2, "two");
    append(s, 3, 0, 1, "three");
    ASSERT_OK(store_gpu_take(s, "GPU-A", 1, &e));
    ASSERT_OK(store_gpu_take(s, "GPU-B", 3, &e));

    ASSERT_OK(store_task_gc(s, 200, &deleted, &e));
    ASSERT_EQ(deleted, 1);
    ASSERT_EQ(store_task_get(s, 1, &t, &e), ERR_NOTFOUND);
    ASSERT_EQ(count_rows(s, 1), 0);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM log_rows WHERE task_id = 1"), 0);
    ASSERT_EQ(count_rows(s, 2), 2);
    ASSERT_EQ(count_rows(s, 3), 1);
    for (int64_t id = 2; id <= 4; id++) {
        ASSERT_OK(store_task_get(s, id, &t, &e));
        store_task_clear(&t);
    }
    ASSERT_OK(store_gpu_held(s, &held, &e));
    ASSERT_EQ(json_object_size(held), 1);
    ASSERT_EQ(json_integer_value(json_object_get(held, "GPU-B")), 3);
    json_decref(held);

    ASSERT_OK(store_task_gc(s, 200, &deleted, &e));
    ASSERT_EQ(deleted, 0);
    ASSERT_OK(store_task_gc(s, 1000, NULL, &e));
    ASSERT_EQ(store_task_get(s, 2, &t, &e), ERR_NOTFOUND);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM tasks"), 2);
    store_close(s);
}

TEST(gpus)
{
    struct store *s = open_db(DB);
    json_t *held;
    struct err e = {0};

    ASSERT_OK(store_gpu_held(s, &held, &e));
    ASSERT_EQ(json_object_size(held), 0);
    json_decref(held);
    ASSERT_OK(store_gpu_take(s, "GPU-A", 1, &e));
    ASSERT_OK(store_gpu_take(s, "GPU-A", 1, &e)); /* already ours */
    ASSERT_EQ(store_gpu_take(s, "GPU-A", 2, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "GPU GPU-A is busy (held by task 1)");
    ASSERT_OK(store_gpu_take(s, "GPU-B", 2, &e));
    ASSERT_OK(store_gpu_take(s, "GPU-C", 1, &e));
    ASSERT_OK(store_gpu_held(s, &held, &e));
    ASSERT_EQ(json_object_size(held), 3);
    ASSERT_EQ(json_integer_value(json_object_get(held, "GPU-A")), 1);
    ASSERT_EQ(json_integer_value(json_object_get(held, "GPU-B")), 2);
    json_decref(held);

    ASSERT_OK(store_gpu_release(s, 1, &e));
    ASSERT_OK(store_gpu_held(s, &held, &e));
    ASSERT_EQ(json_object_size(held), 1);
    ASSERT(json_object_get(held, "GPU-A") == NULL);
    json_decref(held);
    ASSERT_OK(store_gpu_take(s, "GPU-A", 2, &e));
    ASSERT_OK(store_gpu_release(s, 2, &e));
    ASSERT_OK(store_gpu_release(s, 2, &e));
    ASSERT_OK(store_gpu_held(s, &held, &e));
    ASSERT_EQ(json_object_size(held), 0);
    json_decref(held);
    store_close(s);
}

TEST(not_a_database)
{
    struct store *s = NULL;
    struct err e = {0};
    char *after;
    static const char garbage[] = "this is not a database, just some text that is long enough "
                                  "to be mistaken for a header by nobody\n"
                                  "0123456789abcdef0123456789abcdef0123456789abcdef\n";

    write_file("junk.db", garbage);
    ASSERT_EQ(store_open("junk.db", &s, &e), ERR_INVALID);
    ASSERT(s == NULL);
    ASSERT_STR_CONTAINS(e.msg, "junk.db: not a runnerd database");
    after = test_read_file("junk.db", NULL);
    ASSERT_STR_EQ(after, garbage); /* left alone */
    free(after);

    /* A sqlite database of something else. */
    raw_exec("other.db", "CREATE TABLE people (name TEXT)");
    ASSERT_EQ(store_open("other.db", &s, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "other.db: not a runnerd database");
    ASSERT_EQ(raw_int("other.db", "SELECT count(*) FROM sqlite_master"), 1);

    /* A directory where the file should be. */
    ASSERT_EQ(mkdir("dir.db", 0700), 0);
    ASSERT(store_open("dir.db", &s, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "dir.db");
    ASSERT(s == NULL);
}

TEST(newer_schema_refused)
{
    struct store *s = open_db(DB);
    struct err e = {0};
    char want[128];

    store_close(s);
    raw_exec(DB, "PRAGMA user_version = 999");
    s = NULL;
    ASSERT_EQ(store_open(DB, &s, &e), ERR_INVALID);
    ASSERT(s == NULL);
    snprintf(want, sizeof want, DB ": database schema version 999 is newer than this runnerd (%d)",
             store_schema_version());
    ASSERT_STR_EQ(e.msg, want);
    ASSERT_EQ(raw_int(DB, "PRAGMA user_version"), 999);
}

TEST(locked_database_reported)
{
    struct store *s = open_db(DB);
    struct store_row one = {.time_ns = 1, .content = "x"};
    sqlite3 *other;
    struct err e = {0};
    int rc;

    put_task(s, 1, "running", 0);
    ASSERT_EQ(sqlite3_open(DB, &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    rc = store_log_append(s, 1, 0, &one, 1, &e); /* waits for the busy timeout, then fails */
    ASSERT_EQ(rc, -EBUSY);
    ASSERT_STR_CONTAINS(e.msg, DB);
    ASSERT_STR_CONTAINS(e.msg, "database is locked");
    /* Reads still work under WAL while another connection writes. */
    ASSERT_EQ(log_rows_of(s, 1), 0);
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    append(s, 1, 0, 1, "after");
    ASSERT_EQ(log_rows_of(s, 1), 1);
    store_close(s);
}

/* In a child process: what the daemon lock of DB looks like from outside. Exit status 0 when
 * the holder is want, the pid file says so, and (if try_lock) taking the lock fails naming it;
 * when want is 0, the child takes the lock itself (if try_lock) and exits holding it: the end
 * of the process drops it, as a crash would. */
static int
lock_from_child(pid_t want, bool try_lock)
{
    pid_t child = fork(), h = -2;
    int st;

    ASSERT(child >= 0);
    if (child == 0) {
        struct store *c = NULL;
        struct err ce = {0};
        char text[128], *file = store_pidfile(DB), *got;
        size_t len;

        if (store_lock_holder(DB, &h, &ce) < 0 || h != want) {
            fprintf(stderr, "child: holder %ld, want %ld: %s\n", (long)h, (long)want, ce.msg);
            _exit(1);
        }
        snprintf(text, sizeof text, "%ld\n", (long)want);
        if (want != 0 && ((got = test_read_file(file, &len)) == NULL || strcmp(got, text) != 0))
            _exit(2);
        if (!try_lock)
            _exit(0);
        if (store_open(DB, &c, &ce) < 0)
            _exit(3);
        if (want != 0) {
            snprintf(text, sizeof text, "another runnerd (pid %ld) uses this state database",
                     (long)want);
            if (store_lock(c, &h, &ce) != -EBUSY || h != want || strstr(ce.msg, text) == NULL ||
                strstr(ce.msg, DB) == NULL) {
                fprintf(stderr, "child: lock: holder %ld: %s\n", (long)h, ce.msg);
                _exit(4);
            }
        } else if (store_lock(c, &h, &ce) != 0) {
            _exit(5);
        }
        _exit(0); /* without store_close() */
    }
    ASSERT_EQ(waitpid(child, &st, 0), child);
    ASSERT(WIFEXITED(st));
    return WEXITSTATUS(st);
}

TEST(daemon_lock)
{
    struct store *s = open_db(DB);
    struct err e = {0};
    pid_t holder = 123;
    char *file = store_pidfile(DB), *text, mine[32];
    size_t len;

    ASSERT_STR_CONTAINS(file, "/state/runnerd.db.pid"); /* beside the database, path resolved */
    ASSERT(file[0] == '/');
    /* no pid file yet: nobody holds it */
    ASSERT_OK(store_lock_holder(DB, &holder, &e));
    ASSERT_EQ(holder, 0);
    ASSERT_OK(store_lock(s, &holder, &e));
    ASSERT_EQ(holder, 0);
    /* another process sees us in the lock and the file, and is refused the lock (we must not
     * open the pid file ourselves while we hold it) */
    ASSERT_EQ(lock_from_child(getpid(), true), 0);
    ASSERT_EQ(lock_from_child(getpid(), true), 0); /* and the refusal took nothing from us */
    /* closing the store drops it: free again, though the file still names us */
    store_close(s);
    ASSERT_EQ(lock_from_child(0, false), 0);
    snprintf(mine, sizeof mine, "%ld\n", (long)getpid());
    text = test_read_file(file, &len);
    ASSERT_STR_EQ(text, mine);
    free(text);
    /* a runnerd that ends without cleaning up (a crash) leaves a stale file, not a holder */
    ASSERT_EQ(lock_from_child(0, true), 0);
    text = test_read_file(file, &len);
    ASSERT(text != NULL && strcmp(text, mine) != 0); /* the child wrote its pid */
    free(text);
    ASSERT_EQ(lock_from_child(0, false), 0);
    s = open_db(DB);
    ASSERT_OK(store_lock(s, &holder, &e));
    ASSERT_EQ(lock_from_child(getpid(), false), 0);
    store_close(s);
    free(file);
}

/* An idle runnerd hands sqlite's page cache back (store_release_memory()); the rows are read
 * again from the file afterwards. */
TEST(release_memory)
{
    struct store *s = open_db(DB);
    struct store_row *rows;
    size_t n;
    struct err e = {0};
    sqlite3_int64 full, released;

    put_task(s, 1, "running", 0);
    ASSERT_OK(store_begin(s, &e));
    append(s, 1, 0, 5000, "a row long enough to fill a few pages of the cache");
    ASSERT_OK(store_commit(s, &e));
    ASSERT_OK(store_log_read(s, 1, 0, 0, &rows, &n, &e));
    ASSERT_EQ(n, 5000);
    store_rows_free(rows, n);
    full = sqlite3_memory_used();
    store_release_memory(s);
    released = sqlite3_memory_used();
    ASSERT(released + 100 * 1024 < full);
    ASSERT_OK(store_log_read(s, 1, 4990, 0, &rows, &n, &e));
    ASSERT_EQ(n, 10);
    ASSERT_STR_EQ(rows[9].content, "a row long enough to fill a few pages of the cache 4999");
    store_rows_free(rows, n);
    store_release_memory(NULL);
    store_close(s);
}

TEST(ten_thousand_rows)
{
    struct store *s = open_db(DB);
    struct store_row *rows;
    size_t n;
    struct err e = {0};

    put_task(s, 1, "running", 0);
    put_task(s, 2, "running", 0);
    ASSERT_OK(store_begin(s, &e));
    for (int i = 0; i < 100; i++)
        append(s, 1, i * 100, 100, "row");
    append(s, 2, 0, 10000, "big");
    ASSERT_OK(store_commit(s, &e));
    ASSERT_EQ(log_rows_of(s, 1), 10000);
    ASSERT_EQ(log_rows_of(s, 2), 10000);
    ASSERT_OK(store_log_read(s, 1, 0, 0, &rows, &n, &e));
    ASSERT_EQ(n, 10000);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "row %zu", i);
        ASSERT_STR_EQ(rows[i].content, want);
    }
    store_rows_free(rows, n);
    ASSERT_OK(store_log_read(s, 2, 9990, 0, &rows, &n, &e));
    ASSERT_EQ(n, 10);
    ASSERT_STR_EQ(rows[9].content, "big 9999");
    store_rows_free(rows, n);
    store_close(s);
}

/* Appends of every size from 1 to 3 * STORE_LOG_INSERT_MANY + 1 rows (whole statements of
 * many rows, and the rest one by one): every row once, in order, with its time; a stray row in
 * the middle of a many-row statement fails the append and undoes all of it. */
TEST(append_many_rows_at_once)
{
    struct store *s = open_db(DB);
    struct store_row *rows;
    size_t n, total = 0;
    struct err e = {0};

    put_task(s, 1, "running", 0);
    for (size_t k = 1; k <= 3 * STORE_LOG_INSERT_MANY + 1; k++) {
        append(s, 1, (int64_t)total, k, "m");
        total += k;
    }
    ASSERT_EQ(log_rows_of(s, 1), (int64_t)total);
    ASSERT_OK(store_log_read(s, 1, 0, 0, &rows, &n, &e));
    ASSERT_EQ(n, total);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "m %zu", i);
        ASSERT_STR_EQ(rows[i].content, want);
        ASSERT_EQ(rows[i].time_ns, 1700000000000000000LL + (int64_t)i);
    }
    store_rows_free(rows, n);
    raw_exec(DB, "INSERT INTO log_rows (task_id, idx, time_ns, content) VALUES (1, 1234567, 0, 'x')");
    raw_exec(DB, "UPDATE tasks SET log_rows = 1234560 WHERE id = 1");
    {
        struct store_row many[2 * STORE_LOG_INSERT_MANY];
        for (size_t i = 0; i < 2 * STORE_LOG_INSERT_MANY; i++)
            many[i] = (struct store_row){(int64_t)i, "y"};
        ASSERT(store_log_append(s, 1, 1234560, many, 2 * STORE_LOG_INSERT_MANY, &e) < 0);
        ASSERT_STR_CONTAINS(e.msg, "UNIQUE constraint failed");
    }
    ASSERT_EQ(log_rows_of(s, 1), 1234560);
    ASSERT_OK(store_log_read(s, 1, 1234560, 0, &rows, &n, &e));
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(rows[0].content, "x");
    store_rows_free(rows, n);
    store_close(s);
}

/* ---- scrubbing ended tasks (issue 13, item 12) ---- */

#define SECRET "s3cr3t-unit-7f2c9a"
#define TOKEN "task-token-0b1e55"
#define RTOKEN "runtime-token-77aa01"

/* Whether the bytes of the database, its -wal and its -shm contain needle. */
static bool
raw_has(const char *path, const char *needle)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    size_t nl = strlen(needle);

    for (size_t i = 0; i < 3; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        FILE *f = fopen(p, "rb");
        if (f == NULL)
            continue;
        char *data = NULL;
        size_t len = 0, cap = 0, got;
        for (;;) {
            if (len + 65536 > cap) {
                cap = cap ? cap * 2 : 1 << 20;
                data = realloc(data, cap);
                ASSERT(data != NULL);
            }
            got = fread(data + len, 1, 65536, f);
            if (got == 0)
                break;
            len += got;
        }
        fclose(f);
        bool found = false;
        for (size_t k = 0; !found && len >= nl && k <= len - nl; k++)
            found = memcmp(data + k, needle, nl) == 0;
        free(data);
        if (found)
            return true;
    }
    return false;
}

/* A task message as Gitea sends it: secrets, and tokens in the context; padded past a page so
 * that it lives in overflow pages too. */
static json_t *
task_msg(void)
{
    char pad[6000];

    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s}}", "id", "7",
                     "workflowPayload", pad, "context", "repository", "acme/app", "token", TOKEN,
                     "gitea_runtime_token", RTOKEN, "pad", pad, "secrets", "MY_SECRET", SECRET,
                     "GITEA_TOKEN", TOKEN);
}

TEST(scrub_done_task)
{
    struct store *s = open_db(DB);
    struct store_task t = {.id = 7, .ident = "cpu", .state = "running", .job = "build"};
    struct store_task got;
    struct err e = {0};

    t.task = task_msg();
    t.checkpoint = json_pack("{s:{s:s}}", "cur_env", "MY_SECRET", SECRET);
    ASSERT_OK(store_task_put(s, &t, &e));
    put_task(s, 8, "running", 0);
    /* Checkpoints come and go while the job runs. */
    for (int i = 0; i < 20; i++)
        ASSERT_OK(store_task_update(s, &t, &e));
    ASSERT(raw_has(DB, SECRET) && raw_has(DB, TOKEN) && raw_has(DB, RTOKEN));
    /* The job ends (the checkpoint goes), then the task is done and scrubbed. */
    json_decref(t.checkpoint);
    t.checkpoint = NULL;
    t.state = "done";
    ASSERT_OK(store_task_update(s, &t, &e));
    ASSERT_OK(store_task_scrub(s, 7, &e));
    ASSERT_OK(store_task_scrub(s, 99, &e)); /* unknown: nothing to do */
    ASSERT_EQ(store_settle(s, &e), 0);
    ASSERT(!raw_has(DB, SECRET));
    ASSERT(!raw_has(DB, TOKEN));
    ASSERT(!raw_has(DB, RTOKEN));
    ASSERT_OK(store_task_get(s, 7, &got, &e));
    ASSERT(json_object_get(got.task, "secrets") == NULL);
    json_t *ctx = json_object_get(got.task, "context");
    ASSERT(json_object_get(ctx, "token") == NULL);
    ASSERT(json_object_get(ctx, "gitea_runtime_token") == NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(ctx, "repository")), "acme/app");
    ASSERT_STR_EQ(json_string_value(json_object_get(got.task, "id")), "7");
    store_task_clear(&got);
    /* Nothing left to settle. */
    ASSERT_EQ(store_settle(s, &e), 0);
    json_decref(t.task);
    store_close(s);
    ASSERT(!raw_has(DB, SECRET));
}

TEST(scrub_unreadable_task)
{
    struct store *s = open_db(DB);
    struct store_task got;
    struct err e = {0};

    put_task(s, 3, "done", 1);
    store_close(s);
    raw_exec(DB, "UPDATE tasks SET task = '{broken " SECRET "' WHERE id = 3");
    s = open_db(DB);
    ASSERT_OK(store_task_scrub(s, 3, &e));
    ASSERT_EQ(store_settle(s, &e), 0);
    ASSERT_OK(store_task_get(s, 3, &got, &e));
    ASSERT(got.task == NULL);
    store_task_clear(&got);
    store_close(s);
    ASSERT(!raw_has(DB, SECRET));
}

TEST(settle_never_waits_for_a_reader)
{
    struct store *s = open_db(DB);
    struct store_task t = {.id = 5, .ident = "cpu", .state = "done", .job = "build"};
    sqlite3 *reader = NULL;
    sqlite3_stmt *st = NULL;
    struct err e = {0};

    t.task = task_msg();
    ASSERT_OK(store_task_put(s, &t, &e));
    ASSERT_EQ(sqlite3_open(DB, &reader), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(reader, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(reader, "SELECT count(*) FROM tasks", -1, &st, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW); /* holds a read snapshot of the WAL */
    ASSERT_OK(store_task_scrub(s, 5, &e));
    ASSERT_EQ(store_settle(s, &e), 1);
    sqlite3_finalize(st);
    sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(reader);
    ASSERT_EQ(store_settle(s, &e), 0);
    ASSERT(!raw_has(DB, SECRET) && !raw_has(DB, TOKEN));
    json_decref(t.task);
    store_close(s);
}

TEST(migration_scrubs_done_tasks)
{
    struct store *s = open_db(DB);
    struct store_task t = {.id = 1, .ident = "cpu", .state = "done", .job = "build"};
    struct store_task got;
    struct err e = {0};

    t.task = task_msg();
    ASSERT_OK(store_task_put(s, &t, &e));
    t.id = 2;
    t.state = "running";
    ASSERT_OK(store_task_put(s, &t, &e));
    json_decref(t.task);
    store_close(s);
    /* As a runnerd from before the scrub left it. */
    raw_exec(DB, "PRAGMA user_version = 1");
    s = open_db(DB);
    ASSERT_EQ(raw_int(DB, "PRAGMA user_version"), store_schema_version());
    ASSERT_OK(store_task_get(s, 1, &got, &e));
    ASSERT(json_object_get(got.task, "secrets") == NULL);
    ASSERT(json_object_get(json_object_get(got.task, "context"), "token") == NULL);
    store_task_clear(&got);
    /* A task that may still resume keeps what it needs. */
    ASSERT_OK(store_task_get(s, 2, &got, &e));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(got.task, "secrets"),
                                                    "MY_SECRET")),
                  SECRET);
    store_task_clear(&got);
    store_close(s);
}

TEST(scrub_waits_for_done)
{
    struct store *s = open_db(DB);
    struct store_task t = {.id = 4, .ident = "cpu", .state = "finishing", .job = "build"};
    struct store_task got;
    struct err e = {0};

    t.task = task_msg();
    ASSERT_OK(store_task_put(s, &t, &e));
    /* Its "done" could not be written (say, a full disk): it may still be recovered, and keeps
     * what it needs. */
    ASSERT_OK(store_task_scrub(s, 4, &e));
    ASSERT_OK(store_task_get(s, 4, &got, &e));
    ASSERT(json_object_get(got.task, "secrets") != NULL);
    store_task_clear(&got);
    /* Once it is written, the next settle scrubs it. */
    t.state = "done";
    ASSERT_OK(store_task_update(s, &t, &e));
    ASSERT_EQ(store_settle(s, &e), 0);
    ASSERT_OK(store_task_get(s, 4, &got, &e));
    ASSERT(json_object_get(got.task, "secrets") == NULL);
    store_task_clear(&got);
    ASSERT(!raw_has(DB, SECRET) && !raw_has(DB, TOKEN) && !raw_has(DB, RTOKEN));
    json_decref(t.task);
    store_close(s);
}

/* ---- checkpoints off the loop (store_offload_checkpoints()) ---- */

/* A VFS over sqlite's default one that counts writes to main database files by thread: in WAL
 * mode only a checkpoint writes the database file, so a write from the loop's thread is a
 * checkpoint on the loop. Registered as the default, so the store's connections use it. */
static sqlite3_vfs *base_vfs;
static pthread_t loop_thread;
static _Atomic long db_writes_loop, db_writes_worker;

struct shim_file {
    sqlite3_file base;     /* pMethods: shim_io (or NULL when the open failed) */
    bool main_db;
    sqlite3_file real[];   /* the default VFS's file, base_vfs->szOsFile bytes */
};

static sqlite3_io_methods shim_io;

static int
shim_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    struct shim_file *sf = (struct shim_file *)f;

    if (sf->main_db) {
        if (pthread_equal(pthread_self(), loop_thread))
            db_writes_loop++;
        else
            db_writes_worker++;
    }
    return sf->real->pMethods->xWrite(sf->real, buf, n, off);
}

/* Every other method passes through to the real file. */
#define SHIM_PASS(name, ret, params, args)                                                         \
    static ret shim_##name params                                                                  \
    {                                                                                              \
        struct shim_file *sf = (struct shim_file *)f;                                              \
        return sf->real->pMethods->x##name args;                                                   \
    }
SHIM_PASS(Close, int, (sqlite3_file * f), (sf->real))
SHIM_PASS(Read, int, (sqlite3_file * f, void *b, int n, sqlite3_int64 o), (sf->real, b, n, o))
SHIM_PASS(Truncate, int, (sqlite3_file * f, sqlite3_int64 size), (sf->real, size))
SHIM_PASS(Sync, int, (sqlite3_file * f, int flags), (sf->real, flags))
SHIM_PASS(FileSize, int, (sqlite3_file * f, sqlite3_int64 *size), (sf->real, size))
SHIM_PASS(Lock, int, (sqlite3_file * f, int l), (sf->real, l))
SHIM_PASS(Unlock, int, (sqlite3_file * f, int l), (sf->real, l))
SHIM_PASS(CheckReservedLock, int, (sqlite3_file * f, int *out), (sf->real, out))
SHIM_PASS(FileControl, int, (sqlite3_file * f, int op, void *arg), (sf->real, op, arg))
SHIM_PASS(SectorSize, int, (sqlite3_file * f), (sf->real))
SHIM_PASS(DeviceCharacteristics, int, (sqlite3_file * f), (sf->real))
SHIM_PASS(ShmMap, int, (sqlite3_file * f, int pg, int sz, int ext, void volatile **pp),
          (sf->real, pg, sz, ext, pp))
SHIM_PASS(ShmLock, int, (sqlite3_file * f, int off, int n, int flags), (sf->real, off, n, flags))
SHIM_PASS(ShmUnmap, int, (sqlite3_file * f, int del), (sf->real, del))
SHIM_PASS(Fetch, int, (sqlite3_file * f, sqlite3_int64 o, int n, void **pp), (sf->real, o, n, pp))
SHIM_PASS(Unfetch, int, (sqlite3_file * f, sqlite3_int64 o, void *p), (sf->real, o, p))

static void
shim_barrier(sqlite3_file *f)
{
    struct shim_file *sf = (struct shim_file *)f;

    sf->real->pMethods->xShmBarrier(sf->real);
}

static int
shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    struct shim_file *sf = (struct shim_file *)f;
    int rc;

    (void)vfs;
    sf->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
    rc = base_vfs->xOpen(base_vfs, name, sf->real, flags, out_flags);
    sf->base.pMethods = rc == SQLITE_OK && sf->real->pMethods ? &shim_io : NULL;
    return rc;
}

/* Makes the shim the default VFS (once per process: each case is a process of its own). */
static void
shim_install(void)
{
    static sqlite3_vfs vfs;

    base_vfs = sqlite3_vfs_find(NULL);
    ASSERT(base_vfs != NULL && base_vfs->iVersion >= 3);
    vfs = *base_vfs;
    vfs.szOsFile = (int)sizeof(struct shim_file) + base_vfs->szOsFile;
    vfs.zName = "test-shim";
    vfs.xOpen = shim_open;
    shim_io = (sqlite3_io_methods){
        .iVersion = 3, .xClose = shim_Close, .xRead = shim_Read, .xWrite = shim_write,
        .xTruncate = shim_Truncate, .xSync = shim_Sync, .xFileSize = shim_FileSize,
        .xLock = shim_Lock, .xUnlock = shim_Unlock,
        .xCheckReservedLock = shim_CheckReservedLock, .xFileControl = shim_FileControl,
        .xSectorSize = shim_SectorSize, .xDeviceCharacteristics = shim_DeviceCharacteristics,
        .xShmMap = shim_ShmMap, .xShmLock = shim_ShmLock, .xShmBarrier = shim_barrier,
        .xShmUnmap = shim_ShmUnmap, .xFetch = shim_Fetch, .xUnfetch = shim_Unfetch,
    };
    loop_thread = pthread_self();
    ASSERT_EQ(sqlite3_vfs_register(&vfs, 1), SQLITE_OK);
}

/* Size of a file, 0 when it does not exist. */
static int64_t
file_size(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* Appends n rows "r <index>" to task from first on, the way runnerd's sink does: batches of
 * `batch` rows in a transaction of their own, the loop run between two batches. */
static void
spool(struct store *s, uv_loop_t *loop, int64_t task, int64_t first, size_t n, size_t batch,
      int64_t *max_wal)
{
    struct store_row *rows = calloc(batch, sizeof *rows);
    struct err e = {0};

    ASSERT(rows != NULL);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < batch ? n - done : batch;
        int64_t at = first + (int64_t)done;

        for (size_t i = 0; i < k; i++) {
            char buf[160];
            snprintf(buf, sizeof buf, "r %jd the quick brown fox jumps over the lazy dog "
                     "0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklm",
                     (intmax_t)(at + (int64_t)i));
            rows[i].time_ns = at + (int64_t)i;
            rows[i].content = strdup(buf);
        }
        ASSERT_OK(store_begin(s, &e));
        if (store_log_append(s, task, at, rows, k, &e) < 0)
            test_fail(__FILE__, __LINE__, "append at %jd: %s", (intmax_t)at, e.msg);
        ASSERT_OK(store_commit(s, &e));
        for (size_t i = 0; i < k; i++)
            free(rows[i].content);
        done += k;
        uv_run(loop, UV_RUN_NOWAIT);
        if (max_wal != NULL && file_size(DB "-wal") > *max_wal)
            *max_wal = file_size(DB "-wal");
    }
    free(rows);
}

TEST(checkpoints_run_off_the_loop_and_the_wal_starts_again)
{
    uv_loop_t loop;
    struct store *s;
    struct store_ckpt_stats cs;
    struct err e = {0};
    int64_t max_wal = 0;

    shim_install();
    uv_loop_init(&loop);
    s = open_db(DB);
    put_task(s, 1, "running", 0);
    ASSERT_OK(store_offload_checkpoints(s, &loop, 64, &e));
    db_writes_loop = db_writes_worker = 0;
    /* 100k rows of 100 bytes: about 3,500 pages through the WAL. */
    spool(s, &loop, 1, 0, 100000, 1024, &max_wal);
    uv_run(&loop, UV_RUN_DEFAULT); /* the last checkpoint */
    store_ckpt_stats(s, &cs);
    fprintf(stderr, "checkpoints %ju (busy %ju, failed %ju), %ju frames; WAL at most %d pages, "
            "-wal at most %jd bytes; database writes: %ld on the loop, %ld in the worker\n",
            (uintmax_t)cs.runs, (uintmax_t)cs.busy, (uintmax_t)cs.failed, (uintmax_t)cs.frames,
            cs.max_pages, (intmax_t)max_wal, (long)db_writes_loop, (long)db_writes_worker);
    /* The loop's thread never wrote the database file: no checkpoint ran on it. */
    ASSERT_EQ(db_writes_loop, 0);
    ASSERT(db_writes_worker > 0);
    ASSERT(cs.runs > 0 && cs.frames > 0);
    ASSERT_EQ(cs.failed, 0);
    /* The checkpoints caught up: the next commit starts the WAL again from its beginning, so
     * it does not grow from one burst to the next. (How far it grows during a burst depends on
     * how fast the disk syncs against how fast this loop writes: printed above, not asserted.)*/
    spool(s, &loop, 1, 100000, 10, 10, NULL);
    store_ckpt_stats(s, &cs);
    ASSERT(cs.pages < 64);
    ASSERT_EQ(count_rows(s, 1), 100010);
    /* Idle: the worker empties the -wal file. */
    store_release_memory(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    store_ckpt_stats(s, &cs);
    ASSERT(cs.truncates >= 1);
    ASSERT_EQ(file_size(DB "-wal"), 0);
    ASSERT_EQ(db_writes_loop, 0);
    store_close(s);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM log_rows WHERE task_id = 1"), 100010);
}

TEST(close_waits_for_a_running_checkpoint)
{
    uv_loop_t loop;
    struct store *s;
    struct err e = {0};

    uv_loop_init(&loop);
    s = open_db(DB);
    put_task(s, 1, "running", 0);
    ASSERT_OK(store_offload_checkpoints(s, &loop, 16, &e));
    spool(s, &loop, 1, 0, 20000, 4096, NULL);
    /* A checkpoint is queued or running, its completion not yet seen by the loop: the store
     * closes anyway, and the loop's later run frees what the worker used. */
    store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM log_rows WHERE task_id = 1"), 20000);
    ASSERT_EQ(raw_int(DB, "SELECT log_rows FROM tasks WHERE id = 1"), 20000);
}

/* The child of kill9_mid_spool_loses_nothing: spools to task 1 until it is killed, writing the
 * count of rows committed after each commit to fd. */
static void __attribute__((noreturn))
spool_until_killed(int fd)
{
    uv_loop_t loop;
    struct store *s = NULL;
    struct err e = {0};

    uv_loop_init(&loop);
    if (store_open(DB, &s, &e) < 0 || store_offload_checkpoints(s, &loop, 32, &e) < 0)
        _exit(3);
    for (int64_t at = 0;; at += 500) {
        spool(s, &loop, 1, at, 500, 500, NULL);
        int64_t n = at + 500;
        if (write(fd, &n, sizeof n) != (ssize_t)sizeof n)
            _exit(4);
    }
}

TEST(kill9_mid_spool_loses_nothing)
{
    /* Killed at three points, each while checkpoints run in the worker (every 32 pages). */
    static const int64_t kill_after[] = {3000, 20000, 45000};

    for (size_t k = 0; k < sizeof kill_after / sizeof kill_after[0]; k++) {
        struct store *s = open_db(DB);
        struct store_row *rows;
        struct err e = {0};
        int64_t n = 0, got = 0, spooled;
        size_t nrows;
        int p[2], st;
        pid_t child;

        put_task(s, 1, "running", 0);
        store_close(s);
        ASSERT_EQ(pipe(p), 0);
        child = fork();
        ASSERT(child >= 0);
        if (child == 0) {
            close(p[0]);
            spool_until_killed(p[1]);
        }
        close(p[1]);
        while (got < kill_after[k] && read(p[0], &n, sizeof n) == (ssize_t)sizeof n)
            got = n;
        ASSERT_EQ(got, kill_after[k]);
        ASSERT_EQ(kill(child, SIGKILL), 0);
        ASSERT_EQ(waitpid(child, &st, 0), child);
        ASSERT(WIFSIGNALED(st));
        while (read(p[0], &n, sizeof n) == (ssize_t)sizeof n)
            got = n; /* commits said before the kill landed */
        close(p[0]);
        /* Every row whose commit was said is there, in order, and the count matches. */
        ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM pragma_integrity_check "
                              "WHERE integrity_check != 'ok'"), 0);
        s = open_db(DB);
        spooled = log_rows_of(s, 1);
        ASSERT(spooled >= got);
        ASSERT_OK(store_log_read(s, 1, 0, 0, &rows, &nrows, &e));
        ASSERT_EQ(nrows, spooled);
        for (size_t i = 0; i < nrows; i++) {
            char want[32];
            snprintf(want, sizeof want, "r %zu ", i);
            if (strncmp(rows[i].content, want, strlen(want)) != 0)
                test_fail(__FILE__, __LINE__, "row %zu: %s", i, rows[i].content);
        }
        store_rows_free(rows, nrows);
        fprintf(stderr, "killed after %jd rows committed: %jd spooled\n", (intmax_t)got,
                (intmax_t)spooled);
        store_close(s);
        unlink(DB);
        unlink(DB "-wal");
        unlink(DB "-shm");
    }
}

TEST(settle_truncates_through_the_worker)
{
    uv_loop_t loop;
    struct store *s;
    struct store_task t = {.id = 3, .ident = "cpu", .state = "done", .job = "build"};
    struct err e = {0};
    int rc;

    uv_loop_init(&loop);
    s = open_db(DB);
    ASSERT_OK(store_offload_checkpoints(s, &loop, 0, &e));
    t.task = task_msg();
    ASSERT_OK(store_task_put(s, &t, &e));
    ASSERT(raw_has(DB, SECRET));
    ASSERT_OK(store_task_scrub(s, 3, &e));
    /* The truncation is asked of the worker: settled once it has run. */
    ASSERT_EQ(store_settle(s, &e), 1);
    do {
        uv_run(&loop, UV_RUN_DEFAULT);
    } while ((rc = store_settle(s, &e)) == 1);
    ASSERT_EQ(rc, 0);
    ASSERT(!raw_has(DB, SECRET) && !raw_has(DB, TOKEN) && !raw_has(DB, RTOKEN));
    ASSERT_EQ(file_size(DB "-wal"), 0);
    json_decref(t.task);
    store_close(s);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* ---- schema version 3: log_rows as a rowid table ---- */

/* The tables of schema version 2, as runnerds before version 3 wrote them. */
#define SCHEMA_V2                                                                                  \
    "CREATE TABLE identities (cls TEXT PRIMARY KEY NOT NULL, id INTEGER NOT NULL, uuid TEXT, "     \
    "token TEXT, name TEXT, instance TEXT, labels TEXT, ephemeral INTEGER NOT NULL DEFAULT 0, "   \
    "registered_ns INTEGER NOT NULL DEFAULT 0);"                                                   \
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY NOT NULL, ident TEXT, state TEXT NOT NULL CHECK "  \
    "(state IN ('running', 'finishing', 'done')), result INTEGER NOT NULL DEFAULT 0, task TEXT, "  \
    "job TEXT, repo TEXT, created_ns INTEGER NOT NULL DEFAULT 0, started_ns INTEGER NOT NULL "     \
    "DEFAULT 0, stopped_ns INTEGER NOT NULL DEFAULT 0, log_rows INTEGER NOT NULL DEFAULT 0, "      \
    "log_acked INTEGER NOT NULL DEFAULT 0, log_closed INTEGER NOT NULL DEFAULT 0, final_sent "     \
    "INTEGER NOT NULL DEFAULT 0, steps TEXT, outputs TEXT, sent_outputs TEXT, checkpoint TEXT, "   \
    "exec TEXT, reason TEXT);"                                                                     \
    "CREATE INDEX tasks_state ON tasks (state, id);"                                               \
    "CREATE TABLE log_rows (task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE, "    \
    "idx INTEGER NOT NULL, time_ns INTEGER NOT NULL, content TEXT NOT NULL, "                      \
    "PRIMARY KEY (task_id, idx)) WITHOUT ROWID;"                                                   \
    "CREATE TABLE gpus (uuid TEXT PRIMARY KEY NOT NULL, task_id INTEGER NOT NULL);"                \
    "CREATE INDEX gpus_task ON gpus (task_id);"                                                    \
    "PRAGMA user_version = 2;"

TEST(migration_3_log_rows_with_rowid)
{
    struct store *s;
    struct store_row *rows;
    size_t n;
    struct err e = {0};

    /* A database of version 2 with rows of two tasks, and rows of a task that is gone (as a
     * connection without foreign keys could leave them). */
    ASSERT_EQ(mkdir("state", 0700), 0);
    raw_exec(DB, "PRAGMA journal_mode = WAL;" SCHEMA_V2
                 "INSERT INTO tasks (id, state, log_rows, log_acked) VALUES (1, 'running', 3, 1),"
                 " (2, 'done', 2, 2);"
                 "INSERT INTO log_rows VALUES (1, 0, 10, 'one 0'), (1, 1, 11, 'one 1'), "
                 "(1, 2, 12, 'one 2'), (2, 1, 21, 'two 1'), (2, 0, 20, 'two 0'), "
                 "(9, 0, 90, 'gone 0');");
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM sqlite_master WHERE name = 'log_rows' AND "
                          "sql LIKE '%WITHOUT ROWID%'"), 1);
    s = open_db(DB);
    ASSERT_EQ(store_schema_version(), 3);
    ASSERT_EQ(raw_int(DB, "PRAGMA user_version"), 3);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM sqlite_master WHERE name = 'log_rows' AND "
                          "sql LIKE '%WITHOUT ROWID%'"), 0);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM sqlite_master WHERE name = 'log_rows_task'"), 1);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM log_rows WHERE task_id = 9"), 0);
    ASSERT_OK(store_log_read(s, 1, 0, 0, &rows, &n, &e));
    ASSERT_EQ(n, 3);
    ASSERT_STR_EQ(rows[0].content, "one 0");
    ASSERT_STR_EQ(rows[2].content, "one 2");
    ASSERT_EQ(rows[2].time_ns, 12);
    store_rows_free(rows, n);
    ASSERT_OK(store_log_read(s, 2, 1, 0, &rows, &n, &e));
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(rows[0].content, "two 1");
    store_rows_free(rows, n);
    /* The spool goes on where it was; the index still refuses a row twice. */
    append(s, 1, 3, 2, "more");
    ASSERT_EQ(count_rows(s, 1), 5);
    ASSERT(store_log_append(s, 1, 4, &(struct store_row){.content = "x"}, 1, &e) == ERR_INVALID);
    store_close(s);
    ASSERT_EQ(raw_int(DB, "SELECT count(*) FROM pragma_index_list('log_rows') WHERE \"unique\""),
              1);
}
