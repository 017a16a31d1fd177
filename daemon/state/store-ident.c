/* store-ident.c: the identities table: one registered runner per resource class (store.h). */
#include "store-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
store_ident_put(struct store *s, const struct store_ident *id, struct err *e)
{
    sqlite3_stmt *st;
    int rc = db_stmt(s, ST_IDENT_PUT, &st, e);

    if (rc < 0)
        return rc;
    db_bind_str(st, 1, id->cls);
    sqlite3_bind_int64(st, 2, id->id);
    db_bind_str(st, 3, id->uuid);
    db_bind_str(st, 4, id->token);
    db_bind_str(st, 5, id->name);
    db_bind_str(st, 6, id->instance);
    db_bind_json(st, 7, id->labels);
    sqlite3_bind_int(st, 8, id->ephemeral);
    sqlite3_bind_int64(st, 9, id->registered_ns);
    return db_run(s, st, "save identity", e);
}

/* Fills out from a row of IDENT_COLS. */
static int
read_ident(struct store *s, sqlite3_stmt *st, void *row, struct err *e)
{
    struct store_ident *out = row;
    char what[64];

    memset(out, 0, sizeof *out);
    out->cls = db_col_str(st, 0);
    out->id = sqlite3_column_int64(st, 1);
    out->uuid = db_col_str(st, 2);
    out->token = db_col_str(st, 3);
    out->name = db_col_str(st, 4);
    out->instance = db_col_str(st, 5);
    out->ephemeral = sqlite3_column_int(st, 7) != 0;
    out->registered_ns = sqlite3_column_int64(st, 8);
    snprintf(what, sizeof what, "identity %s", out->cls ? out->cls : "?");
    return db_col_json(s, st, 6, what, &out->labels, e);
}

static void
clear_ident(void *row)
{
    store_ident_clear(row);
}

int
store_ident_get(struct store *s, const char *cls, struct store_ident *out, struct err *e)
{
    sqlite3_stmt *st;
    int rc = db_stmt(s, ST_IDENT_GET, &st, e);

    memset(out, 0, sizeof *out);
    if (rc < 0)
        return rc;
    db_bind_str(st, 1, cls);
    rc = db_read_one(s, st, "read identity", read_ident, out, e);
    if (rc == 0)
        rc = err_set(e, ERR_NOTFOUND, "%s: no identity '%s'", s->path, cls);
    if (rc < 0) {
        store_ident_clear(out);
        return rc;
    }
    return 0;
}

int
store_ident_list(struct store *s, struct store_ident **out, size_t *n, struct err *e)
{
    sqlite3_stmt *st;
    void *v = NULL;
    int rc = db_stmt(s, ST_IDENT_LIST, &st, e);

    *out = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    rc = db_read_all(s, st, "list identities", sizeof **out, read_ident, clear_ident, &v, n, e);
    *out = v;
    return rc;
}

int
store_ident_delete(struct store *s, const char *cls, struct err *e)
{
    sqlite3_stmt *st;
    int rc = db_stmt(s, ST_IDENT_DELETE, &st, e);

    if (rc < 0)
        return rc;
    db_bind_str(st, 1, cls);
    rc = db_run(s, st, "delete identity", e);
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
