/* store.h: runnerd's durable state in sqlite (WAL): runner identities, tasks with their steps,
 * outputs and resources, and the log spool (doc/architecture.md, "State").
 *
 * One struct store per process, used from the loop thread only. Every function runs its
 * statements synchronously; batch writes with store_begin()/store_commit() on the caller's
 * schedule. The database file and its -wal/-shm siblings are created with mode 0600 (they
 * hold runner tokens and task secrets). The schema is versioned with PRAGMA user_version and
 * migrated forward on open; a database from a newer runnerd is refused. */
#ifndef STORE_H
#define STORE_H

#include "runner/err.h"

#include <jansson.h>
#include <uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store;

/* Opens (creating if needed: parent directory 0700, file 0600) and migrates. ERR_INVALID
 * with a clear message when the file is not a runnerd database or is from a newer version. */
int store_open(const char *path, struct store **out, struct err *e);
void store_close(struct store *s);
const char *store_path(const struct store *s);
/* Frees the connection's page cache (sqlite reads the pages again when it needs them); runnerd
 * calls it when it trims its heap, once started and whenever its last task has ended. */
void store_release_memory(struct store *s);
/* Moves the WAL's checkpoints off the loop (runnerd, once its loop exists): the connection no
 * longer checkpoints inside its commits (sqlite's automatic checkpoint copies the WAL into the
 * database and fsyncs both, on the loop, every 1000 pages); a second connection, used only on
 * the loop's thread pool, checkpoints instead: once the WAL holds `pages` pages (0: 1000), when
 * idle (store_release_memory()) and for store_settle(). store_close() waits for a checkpoint
 * that runs. -ENOTSUP when sqlite is built without threads (nothing changes). */
int store_offload_checkpoints(struct store *s, uv_loop_t *loop, int pages, struct err *e);
/* What the checkpoints off the loop did (all 0 when they are not). */
struct store_ckpt_stats {
    uint64_t runs;     /* checkpoints run by the worker */
    uint64_t frames;   /* WAL frames they copied into the database, in all */
    uint64_t truncates; /* TRUNCATE checkpoints that succeeded */
    uint64_t busy;     /* ones a reader or the writer stood in the way of (asked again later) */
    uint64_t failed;   /* ones that failed otherwise */
    int max_pages;     /* the largest WAL seen after a commit, in pages */
    int pages;         /* the WAL's size after the last commit (0 after a TRUNCATE) */
};
void store_ckpt_stats(const struct store *s, struct store_ckpt_stats *out);
/* The schema version this build writes. */
int store_schema_version(void);

/* ---- the daemon lock: one runnerd per state database ----
 * runnerd takes it right after store_open() and holds it for its whole life: a POSIX write
 * lock (fcntl F_SETLK) on the pid file "<database>.pid" beside the database (symlinks in the
 * database's path resolved), which holds runnerd's pid in decimal and a newline. The kernel
 * drops the lock when the process ends, however it ends, so a pid file left by a crashed
 * runnerd is stale exactly when nobody holds its lock; the file is never removed (removing it
 * would let two runnerds lock two different files). A record lock rather than flock(2)
 * because its holder can be asked for (F_GETLK) without taking the lock: `runnerctl restart`
 * asks while a new runnerd may be starting, and must never make that one fail. */
/* The pid file of the database at path: a new string (free()). */
char *store_pidfile(const char *path);
/* Takes the daemon lock of s and writes our pid into its pid file. -EBUSY when another process
 * holds it: *holder (may be NULL) gets its pid as store_lock_holder() says, and e says which
 * runnerd uses the database.
 * Released by store_close() or the end of the process. Once per process: record locks are the
 * process's, so a second lock on the same file would not conflict, and closing it would drop
 * the first. */
int store_lock(struct store *s, pid_t *holder, struct err *e);
/* Which process holds the daemon lock of the database at path, without taking it: *pid is 0
 * when none does (no pid file, or a stale one), -1 when the holder's pid cannot be known here
 * (it runs in a pid namespace this process cannot see). Not for the process holding the daemon
 * lock: opening the pid file there would drop it (record locks are the process's). */
int store_lock_holder(const char *path, pid_t *pid, struct err *e);

/* Transactions (not nested; store_commit() on no open transaction is a no-op). */
int store_begin(struct store *s, struct err *e);
int store_commit(struct store *s, struct err *e);
void store_rollback(struct store *s);

/* ---- identities: one registered runner per resource class ("cpu", "gpu") ---- */
struct store_ident {
    char *cls;        /* "cpu" or "gpu": key */
    int64_t id;       /* the server's runner id */
    char *uuid, *token, *name, *instance; /* instance: URL as entered */
    json_t *labels;   /* array of full label strings ("name:docker://image", "name:host") */
    bool ephemeral;
    int64_t registered_ns; /* CLOCK_REALTIME */
};
/* Inserts or replaces the identity of id->cls. */
int store_ident_put(struct store *s, const struct store_ident *id, struct err *e);
/* All identities ordered by cls; *out is a new array (store_ident_free). */
int store_ident_list(struct store *s, struct store_ident **out, size_t *n, struct err *e);
/* One identity; ERR_NOTFOUND if none. *out filled (store_ident_clear). */
int store_ident_get(struct store *s, const char *cls, struct store_ident *out, struct err *e);
/* ERR_NOTFOUND if none. */
int store_ident_delete(struct store *s, const char *cls, struct err *e);
void store_ident_clear(struct store_ident *id);
void store_ident_free(struct store_ident *v, size_t n);

/* ---- tasks ---- */
/* state: "running" (the job runs or will be resumed), "finishing" (the job is over; final
 * logs/state still to deliver), "done" (everything acknowledged, or given up). */
struct store_task {
    int64_t id;             /* Gitea task id: key */
    char *ident;            /* identity class that fetched it */
    char *state;
    int result;             /* enum rpc_result; 0 while the job runs, set (state still
                               "running") once its steps are over and teardown begins */
    json_t *task;           /* the Task message as received (Connect JSON, with secrets) */
    char *job;              /* display: job name */
    char *repo;             /* display: owner/repo */
    int64_t created_ns, started_ns, stopped_ns; /* CLOCK_REALTIME; 0 = unset */
    int64_t log_rows;       /* rows spooled so far = index of the next row */
    int64_t log_acked;      /* the server's ackIndex */
    bool log_closed;        /* the noMore upload was acknowledged */
    bool final_sent;        /* the final UpdateTask was acknowledged */
    json_t *steps;          /* array of StepState JSON objects (rpc_step_state_type form) */
    json_t *outputs;        /* object: job outputs (NULL = none yet) */
    json_t *sent_outputs;   /* array of keys the server acknowledged (NULL = none) */
    json_t *checkpoint;     /* the job run's last checkpoint (NULL = none) */
    json_t *exec;           /* executor description: container, network, volumes (NULL) */
    char *reason;           /* why runnerd failed the task itself, or NULL */
};
/* Inserts or replaces the whole row (the log spool is untouched): t->log_rows is ignored (only
 * store_log_append() moves it), and log_acked keeps the larger of the stored and given value. */
int store_task_put(struct store *s, const struct store_task *t, struct err *e);
/* Saves what changes while a task runs (state, result, times, log_acked as above, flags,
 * steps, outputs, checkpoint, exec, reason) without writing its identity and payload again
 * (ident, task, job, repo, created_ns stay). ERR_NOTFOUND if the task was never put. */
int store_task_update(struct store *s, const struct store_task *t, struct err *e);
/* ERR_NOTFOUND if absent. *out filled (store_task_clear). */
int store_task_get(struct store *s, int64_t id, struct store_task *out, struct err *e);
/* Tasks whose state is `state` (NULL: all), newest (highest id) first, at most limit (0: no
 * limit). */
int store_task_list(struct store *s, const char *state, size_t limit, struct store_task **out,
                    size_t *n, struct err *e);
void store_task_clear(struct store_task *t);
void store_task_free(struct store_task *v, size_t n);
/* Deletes "done" tasks stopped before before_ns, with their log rows; *deleted (may be NULL)
 * gets how many. */
int store_task_gc(struct store *s, int64_t before_ns, int *deleted, struct err *e);

/* A task that can no longer run or resume (it is done) needs its secrets no more: removes the
 * task message's `secrets` and its context's tokens (`token`, `gitea_runtime_token`) from the
 * stored row. The connection zeroes what it deletes (PRAGMA secure_delete), and the WAL still
 * holds older copies of the pages until store_settle() truncates it. Only a row stored as
 * "done" is scrubbed (one that may still resume keeps its secrets): when the row is not done
 * yet (its state could not be written) or the scrub fails, store_settle() scrubs every done
 * task later. 0 also when the task is unknown. */
int store_task_scrub(struct store *s, int64_t id, struct err *e);
/* After a scrub: checkpoints the WAL into the database and truncates the -wal file to zero
 * bytes, so that no old frame keeps a scrubbed secret; after a scrub that failed (a full
 * disk), scrubs every done task first. Never waits: returns 1 while a reader, an open
 * transaction or a full disk stands in the way (call it again later), 0 when done or nothing
 * was scrubbed, <0 on another error (reported once while it lasts). */
int store_settle(struct store *s, struct err *e);

/* When a write failed for want of space: moves the WAL's pages into the database and truncates
 * the -wal file, which frees the space of every older copy of a page the WAL held (it only
 * shrinks on its own after 1000 pages). 0 when done, 1 when it could not be done now. */
int store_reclaim(struct store *s);

/* ---- log spool ---- */
struct store_row {
    int64_t time_ns;   /* CLOCK_REALTIME */
    char *content;     /* one line, no newline */
};
/* Rows store_log_append() writes with one statement (the rest one by one): one step, reset
 * and binding pass for this many rows, not one a row (bench/spool). ROWS16 in store.c. */
#define STORE_LOG_INSERT_MANY 16
/* Appends rows with indexes first..first+n-1 (first must equal the task's log_rows) and sets
 * the task's log_rows to first+n, atomically. ERR_INVALID on a gap or overlap, ERR_NOTFOUND
 * for an unknown task. */
int store_log_append(struct store *s, int64_t task, int64_t first, const struct store_row *rows,
                     size_t n, struct err *e);
/* Reads up to max rows (0: no limit) from index `from` on, in order; *out new (store_rows_free).
 * An unknown task has no rows. */
int store_log_read(struct store *s, int64_t task, int64_t from, size_t max,
                   struct store_row **out, size_t *n, struct err *e);
void store_rows_free(struct store_row *v, size_t n);
/* Records the server's ackIndex (never decreasing: a lower value is ignored and reported
 * as -ERANGE so that the caller can log "submitted logs are lost"). ERR_NOTFOUND for an
 * unknown task. */
int store_log_ack(struct store *s, int64_t task, int64_t ack, struct err *e);

/* ---- GPUs held by tasks (issue 5) ---- */
/* Records that task holds gpu (a UUID); ERR_INVALID ("busy") if another task holds it, 0 if
 * task already does. */
int store_gpu_take(struct store *s, const char *gpu, int64_t task, struct err *e);
/* Frees every GPU task holds. */
int store_gpu_release(struct store *s, int64_t task, struct err *e);
/* Object {gpu uuid: task id} of GPUs held. */
int store_gpu_held(struct store *s, json_t **out, struct err *e);

#endif
