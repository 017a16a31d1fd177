/* store-ckpt.c: the WAL's checkpoints off the loop (store_offload_checkpoints(), store.h).
 *
 * sqlite's automatic checkpoint runs inside the commit that takes the WAL past 1000 pages: it
 * copies the WAL into the database and fsyncs both, on the loop, while a fast step's rows wait
 * (bench/spool: gdb put much of the loop's time there). Here the loop's connection has no automatic
 * checkpoint; its wal hook (called after each commit with the WAL's size in pages) queues a
 * checkpoint on the libuv thread pool instead, run by a second connection that only the worker
 * touches (opened in the worker on first use, closed by store_close() once no worker runs).
 * At most one runs at a time; what is asked for meanwhile runs right after it.
 *
 * - past N pages (1000 unless the caller says): PASSIVE, which never takes the writer's lock
 *   (the loop goes on committing while it copies);
 * - past 4 N (the PASSIVE ones fell behind a writer that never pauses): RESTART, which takes
 *   the writer's lock for the rest of the copy, so that the next commit starts the WAL again
 *   from its beginning; the loop's writes wait for it (their busy timeout) that once;
 * - when idle (store_release_memory()) and after a scrub (store_settle()): TRUNCATE, which
 *   leaves the -wal file empty.
 *
 * Durability is sqlite's: a checkpoint on another connection is the same protocol as the
 * automatic one (the WAL synced before the database is written, the database synced before the
 * WAL may be reused), and a crash at any point leaves every committed transaction in the WAL or
 * the database. Both connections use synchronous = NORMAL. */
#include "store-int.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A PASSIVE checkpoint once the WAL holds this many pages (sqlite's own automatic threshold)
 * unless the caller says, and a RESTART once it holds CKPT_CAP times as many. */
#define CKPT_PAGES 1000
#define CKPT_CAP 4
/* The -wal file is cut back to this size when the WAL starts again from its beginning
 * (PRAGMA journal_size_limit), so one burst does not leave it big for good. */
#define CKPT_WAL_LIMIT (16 << 20)
/* How long the worker waits for the writer's lock or a reader (RESTART, TRUNCATE) before it
 * gives up for now (SQLITE_BUSY: asked again at the next commit or idle time): short, because
 * a RESTART holds the writer's lock, and the loop's writes with it, while it waits. */
#define CKPT_BUSY_MS 100
/* No checkpoint asked for. */
#define CKPT_NONE (-1)

struct ckpt {
    struct store *s;   /* NULL once store_close() let go while on_done() was still due */
    uv_loop_t *loop;
    uv_work_t work;
    int pages_at, cap_at; /* PASSIVE and RESTART thresholds, in pages */
    char *path;        /* the database, for the worker's connection */
    /* Set on the loop before the work is queued; read by the worker. */
    int mode;          /* SQLITE_CHECKPOINT_* */
    uint64_t gen;      /* s->scrub_gen when it was queued (0: inside a transaction) */
    /* Set by the worker; read on the loop in on_done(). */
    int rc, log, done; /* sqlite3_wal_checkpoint_v2()'s result and frame counts */
    bool opened;       /* the worker's connection is open */
    char msg[256];     /* sqlite's message when rc is not SQLITE_OK */
    /* The loop's own. */
    bool queued;       /* queued or running: on_done() is due */
    int want;          /* the mode asked for while one was queued, or CKPT_NONE */
    int pages;         /* the WAL's size in pages at the last commit */
    uint64_t trunc_gen; /* gen of the last TRUNCATE that succeeded */
    bool warned;       /* a failure was logged (once while they last) */
    struct store_ckpt_stats stats;
    /* Shared between the worker and store_close(). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running;      /* on_work() has not returned yet */
    sqlite3 *db;       /* the worker's connection (its pointer under mu, for sqlite3_interrupt) */
};

/* The worker: opens its connection on first use, then runs the checkpoint it was given. */
static void
on_work(uv_work_t *req)
{
    struct ckpt *ck = req->data;
    sqlite3 *db = NULL;
    int rc = SQLITE_OK;

    pthread_mutex_lock(&ck->mu);
    db = ck->db;
    pthread_mutex_unlock(&ck->mu);
    if (db == NULL) {
        rc = sqlite3_open_v2(ck->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_extended_result_codes(db, 1);
            sqlite3_busy_timeout(db, CKPT_BUSY_MS);
            rc = sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
        }
        if (rc != SQLITE_OK) {
            snprintf(ck->msg, sizeof ck->msg, "open a second connection: %s",
                     db ? sqlite3_errmsg(db) : "out of memory");
            sqlite3_close(db);
            db = NULL;
        }
        pthread_mutex_lock(&ck->mu);
        ck->db = db;
        pthread_mutex_unlock(&ck->mu);
    }
    ck->opened = db != NULL;
    ck->log = ck->done = -1;
    if (db != NULL) {
        rc = sqlite3_wal_checkpoint_v2(db, NULL, ck->mode, &ck->log, &ck->done);
        if (rc != SQLITE_OK)
            snprintf(ck->msg, sizeof ck->msg, "%s", sqlite3_errmsg(db));
    }
    ck->rc = rc;
    pthread_mutex_lock(&ck->mu);
    ck->running = false;
    pthread_cond_signal(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
}

static void on_done(uv_work_t *req, int status);

/* Queues a checkpoint of mode, or notes it for when the one queued is done (the stronger of the
 * two modes: PASSIVE < FULL < RESTART < TRUNCATE). */
static void
ckpt_ask(struct ckpt *ck, int mode)
{
    struct store *s = ck->s;

    if (ck->queued) {
        if (mode > ck->want)
            ck->want = mode;
        return;
    }
    ck->mode = mode;
    ck->gen = sqlite3_get_autocommit(s->db) ? s->scrub_gen : 0;
    ck->queued = true;
    pthread_mutex_lock(&ck->mu);
    ck->running = true;
    pthread_mutex_unlock(&ck->mu);
    if (uv_queue_work(ck->loop, &ck->work, on_work, on_done) != 0) {
        ck->queued = false; /* not queued: on_work() will not run */
        pthread_mutex_lock(&ck->mu);
        ck->running = false;
        pthread_mutex_unlock(&ck->mu);
    }
}

/* On the loop once the worker is done: counts, reports a failure, and runs what was asked for
 * meanwhile. A worker that cannot open its connection puts the checkpoints back on the loop's
 * connection (sqlite's automatic ones), so that the WAL stays bounded. */
static void
on_done(uv_work_t *req, int status)
{
    struct ckpt *ck = req->data;
    int want = ck->want;

    (void)status;
    ck->queued = false;
    ck->want = CKPT_NONE;
    if (ck->s == NULL) { /* store_close() ran meanwhile and closed the connection */
        free(ck->path);
        pthread_mutex_destroy(&ck->mu);
        pthread_cond_destroy(&ck->cv);
        free(ck);
        return;
    }
    if (!ck->opened) {
        log_err("%s: checkpoints stay on the event loop: %s", ck->s->path, ck->msg);
        sqlite3_wal_autocheckpoint(ck->s->db, CKPT_PAGES);
        ck->s->ckpt = NULL;
        store_ckpt_free(ck);
        return;
    }
    ck->stats.runs++;
    if (ck->rc == SQLITE_OK) {
        ck->stats.frames += ck->done > 0 ? (uint64_t)ck->done : 0;
        if (ck->mode == SQLITE_CHECKPOINT_TRUNCATE) {
            ck->stats.truncates++;
            ck->trunc_gen = ck->gen;
            ck->pages = 0;
        }
        ck->warned = false;
    } else if ((ck->rc & 0xff) == SQLITE_BUSY || (ck->rc & 0xff) == SQLITE_LOCKED) {
        ck->stats.busy++; /* a reader or the writer stood in the way: asked again later */
    } else {
        ck->stats.failed++;
        if (!ck->warned)
            log_warn("%s: checkpoint the WAL: %s", ck->s->path, ck->msg);
        ck->warned = true;
        return; /* the next commit asks again */
    }
    if (want != CKPT_NONE)
        ckpt_ask(ck, want);
}

/* The wal hook of the loop's connection: called after each commit with the WAL's size. */
static int
on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct ckpt *ck = arg;

    (void)db;
    (void)name;
    ck->pages = pages;
    if (pages > ck->stats.max_pages)
        ck->stats.max_pages = pages;
    if (pages >= ck->cap_at)
        ckpt_ask(ck, SQLITE_CHECKPOINT_RESTART);
    else if (pages >= ck->pages_at)
        ckpt_ask(ck, SQLITE_CHECKPOINT_PASSIVE);
    return SQLITE_OK;
}

int
store_offload_checkpoints(struct store *s, uv_loop_t *loop, int pages, struct err *e)
{
    struct ckpt *ck;
    char sql[64];
    int rc;

    if (s->ckpt != NULL)
        return 0;
    /* A build without threads cannot have a connection in another thread. */
    if (!sqlite3_threadsafe())
        return err_set(e, -ENOTSUP, "%s: sqlite is built without threads: checkpoints stay on "
                       "the event loop", s->path);
    snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %d", CKPT_WAL_LIMIT);
    rc = db_exec(s, sql, "limit the WAL", e);
    if (rc < 0)
        return rc;
    ck = xcalloc(1, sizeof *ck);
    ck->s = s;
    ck->loop = loop;
    ck->pages_at = pages > 0 ? pages : CKPT_PAGES;
    ck->cap_at = ck->pages_at * CKPT_CAP;
    ck->path = xstrdup(s->path);
    ck->work.data = ck;
    ck->want = CKPT_NONE;
    pthread_mutex_init(&ck->mu, NULL);
    pthread_cond_init(&ck->cv, NULL);
    s->ckpt = ck;
    /* Replaces sqlite's own hook, which is its automatic checkpoint. */
    sqlite3_wal_hook(s->db, on_wal, ck);
    return 0;
}

/* Waits for a running worker (interrupting its checkpoint: an unfinished one loses nothing),
 * closes its connection, and frees ck, or leaves that to on_done() when it is still due. */
void
store_ckpt_free(struct ckpt *ck)
{
    if (ck == NULL)
        return;
    if (ck->s != NULL)
        log_info("%s: %ju WAL checkpoints off the loop (%ju busy, %ju failed), %ju frames copied, "
                 "the WAL at most %d pages", ck->s->path, (uintmax_t)ck->stats.runs,
                 (uintmax_t)ck->stats.busy, (uintmax_t)ck->stats.failed,
                 (uintmax_t)ck->stats.frames, ck->stats.max_pages);
    pthread_mutex_lock(&ck->mu);
    if (ck->running && ck->db != NULL)
        sqlite3_interrupt(ck->db);
    while (ck->running)
        pthread_cond_wait(&ck->cv, &ck->mu);
    pthread_mutex_unlock(&ck->mu);
    sqlite3_close(ck->db); /* no worker runs: no other thread has it */
    ck->db = NULL;
    if (ck->queued) {
        ck->s = NULL; /* on_done() frees it */
        return;
    }
    free(ck->path);
    pthread_mutex_destroy(&ck->mu);
    pthread_cond_destroy(&ck->cv);
    free(ck);
}

/* Asks the worker for a TRUNCATE when the WAL holds pages (store_release_memory(): idle). */
void
store_ckpt_idle(struct store *s)
{
    struct ckpt *ck = s->ckpt;

    if (ck != NULL && ck->pages > 0 && sqlite3_get_autocommit(s->db))
        ckpt_ask(ck, SQLITE_CHECKPOINT_TRUNCATE);
}

/* store_settle()'s truncation through the worker: 0 once a TRUNCATE queued after the last scrub
 * has succeeded, else 1 (one is asked for). */
int
store_ckpt_settle(struct store *s)
{
    struct ckpt *ck = s->ckpt;

    if (ck->trunc_gen >= s->scrub_gen)
        return 0;
    ckpt_ask(ck, SQLITE_CHECKPOINT_TRUNCATE);
    return 1;
}

void
store_ckpt_stats(const struct store *s, struct store_ckpt_stats *out)
{
    memset(out, 0, sizeof *out);
    if (s->ckpt != NULL) {
        *out = s->ckpt->stats;
        out->pages = s->ckpt->pages;
    }
}
