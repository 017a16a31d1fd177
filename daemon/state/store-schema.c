/* store-schema.c: the state database's schema, as migrations from version to version
 * (PRAGMA user_version), and bringing a database up to the version this build writes. */
#include "store-int.h"

#include <stdio.h>

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
    /* 3: log_rows as a rowid table with an index on (task_id, idx): rows are appended at the
     * end of the table, which sqlite splits cheaply, while the WITHOUT ROWID table rebalanced
     * whole rows at every split (bench/spool). Rows of tasks that are gone are not kept. */
    "CREATE TABLE log_rows_v3 (\n"
    "    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,\n"
    "    idx INTEGER NOT NULL,\n"
    "    time_ns INTEGER NOT NULL,\n"
    "    content TEXT NOT NULL\n"
    ");\n"
    "INSERT INTO log_rows_v3 (task_id, idx, time_ns, content)\n"
    "    SELECT task_id, idx, time_ns, content FROM log_rows\n"
    "    WHERE task_id IN (SELECT id FROM tasks) ORDER BY task_id, idx;\n"
    "DROP TABLE log_rows;\n"
    "ALTER TABLE log_rows_v3 RENAME TO log_rows;\n"
    "CREATE UNIQUE INDEX log_rows_task ON log_rows (task_id, idx);\n",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

int
store_schema_version(void)
{
    return SCHEMA_VERSION;
}

/* Runs a query of one integer (sql) into *out: PRAGMA user_version, or the count of tables
 * (a non-runnerd database has tables but version 0). what names it for the message. */
static int
query_int(struct store *s, const char *sql, const char *what, int *out, struct err *e)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = 0;
    } else {
        rc = db_err(s, rc, what, e);
    }
    sqlite3_finalize(st);
    return rc;
}

static int
user_version(struct store *s, int *out, struct err *e)
{
    return query_int(s, "PRAGMA user_version", "read schema version", out, e);
}

/* Runs migrations[v] in a transaction of its own; *v is the version it found, then the new one. */
static int
migrate_one(struct store *s, int *v, struct err *e)
{
    char sql[64];
    int tables = 0;
    int rc = db_exec(s, "BEGIN IMMEDIATE", "begin migration", e);

    if (rc < 0)
        return rc;
    /* Read again under the write lock: another process may have migrated meanwhile. */
    rc = user_version(s, v, e);
    if (rc < 0 || *v >= SCHEMA_VERSION)
        goto out;
    if (*v == 0) {
        rc = query_int(s, "SELECT count(*) FROM sqlite_master", "read schema", &tables, e);
        if (rc < 0)
            goto out;
        if (tables > 0) {
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
    rc = db_exec(s, sql, "set schema version", e);
    if (rc == 0)
        rc = db_exec(s, "COMMIT", "commit migration", e);
    if (rc == 0)
        (*v)++;
out:
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Brings the schema to SCHEMA_VERSION, one migration per transaction. */
int
db_migrate(struct store *s, struct err *e)
{
    int v = 0, rc = user_version(s, &v, e);

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
