/* wf.c: workflow files into struct wf_workflow, with validation (see wf.h): the document and
 * its top-level keys, then wf_parse(), wf_parse_steps(), wf_load() and wf_free().
 *
 * The YAML tree is walked once. Every problem is recorded with its position and the walk goes
 * on, so one run reports everything; the messages are sorted into file order at the end.
 * Keys follow GitHub's workflow schema (doc/workflow-semantics.md §2); expressions are
 * syntax-checked with the expression module; needs are checked for unknown jobs and cycles once all
 * jobs are known. The parts: wf-on.c (on:), wf-job.c (jobs), wf-step.c (steps), wf-check.c (what
 * they share). */
#include "wf-int.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Workflow                                                                                   */

/* Reads the top-level mapping into w. */
static void
read_workflow(struct wctx *c, struct wf_workflow *w, struct ynode *root)
{
    static const char *const keys[] = {"name", "run-name", "description", "on", "env",
                                       "defaults", "permissions", "concurrency", "jobs", NULL};
    struct ynode *v;

    wf_check_keys(c, "workflow", root, keys);
    wf_get_str(c, "name", ynode_get(root, "name"), false, &w->name);
    wf_set_loc(c, &wf_loc_wf);
    wf_get_str(c, "run-name", ynode_get(root, "run-name"), true, &w->run_name);
    wf_get_str(c, "description", ynode_get(root, "description"), false, NULL);
    if ((v = ynode_get(root, "on")) != NULL)
        wf_read_on(c, w, v);
    if ((v = ynode_get(root, "env")) != NULL) {
        wf_set_loc(c, &wf_loc_wf_env);
        wf_check_scalar_map(c, "env", v, true);
        wf_set_loc(c, &wf_loc_wf);
        if (!ynode_is_null(v))
            w->env = v;
    }
    if ((v = ynode_get(root, "defaults")) != NULL)
        wf_read_defaults(c, "defaults", v, false, &w->defaults_shell,
                         &w->defaults_working_directory);
    if ((v = ynode_get(root, "permissions")) != NULL) {
        wf_check_permissions(c, "permissions", v);
        w->permissions = v;
    }
    if ((v = ynode_get(root, "concurrency")) != NULL) {
        wf_check_concurrency(c, "concurrency", v);
        w->concurrency = v;
    }
    wf_set_loc(c, NULL);
    v = ynode_get(root, "jobs");
    if (v == NULL) {
        wf_problem(c, root->pos, "missing required key 'jobs'");
        return;
    }
    if (v->kind != YNODE_MAP) {
        if (!wf_check_no_expr(c, "jobs", v))
            wf_problem_type(c, "jobs", v, "a mapping of job ids to jobs");
        return;
    }
    if (v->n == 0)
        wf_problem(c, v->pos, "jobs: expected at least one job");
    w->jobs = xcalloc(v->n ? v->n : 1, sizeof *w->jobs);
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *k = v->keys[i];
        if (k->kind != YNODE_SCALAR) {
            wf_problem(c, k->pos, "jobs: expected a job id, got %s", ynode_kind_name(k));
            continue;
        }
        if (wf_check_no_expr(c, "jobs", k))
            continue;
        char *kq = wf_quote(k);
        if (k->len >= 2 && k->str[0] == '_' && k->str[1] == '_')
            wf_problem(c, k->pos,
                       "jobs: the job id '%s' is invalid; ids starting with '__' are reserved", kq);
        else if (!wf_valid_id(k->str, k->len))
            wf_problem(c, k->pos,
                       "jobs: the job id '%s' is invalid; ids must start with a letter or '_' and "
                       "contain only letters, digits, '-' and '_'",
                       kq);
        free(kq);
        wf_read_job(c, k, v->items[i], &w->jobs[w->n_jobs++]);
    }
    wf_check_job_id_case(c, v);
    wf_check_needs(c, w);
}

/* Returns a new string: the last path component of file. */
static char *
base_name(const char *file)
{
    const char *s = strrchr(file, '/');

    return xstrdup(s ? s + 1 : file);
}

/* YAML errors end the parse (one message); model problems are all collected. */
int
wf_parse(const char *file, const char *data, size_t len, struct wf_workflow **out,
         struct wf_diag *diag_out, struct err *e)
{
    struct wctx c = {.file = file ? file : "<workflow>", .src = data, .srclen = len};
    struct wf_workflow *w = NULL;
    struct ynode **docs = NULL, *root = NULL;
    size_t ndocs = 0;
    struct err ye = {0};
    int rc;

    *out = NULL;
    if (ydoc_parse_all(c.file, data, len, &docs, &ndocs, &ye) < 0) {
        struct ypos none = {0, 0};
        /* The message already carries file:line:col; keep it as is. */
        c.items = xcalloc(1, sizeof *c.items);
        c.cap = 1;
        c.items[0].pos = none;
        c.items[0].msg = xstrdup(ye.msg);
        c.n = 1;
        goto done;
    }
    if (ndocs > 0)
        root = docs[0];
    for (size_t i = 1; i < ndocs; i++)
        ynode_free(docs[i]);
    free(docs);
    w = xcalloc(1, sizeof *w);
    w->file = xstrdup(c.file);
    w->root = root;
    if (root == NULL || ynode_is_null(root)) {
        struct ypos p1 = {1, 1};
        wf_problem(&c, p1, "the workflow file is empty");
        goto done;
    }
    if (ndocs > 1) {
        struct ypos p1 = {1, 1};
        wf_problem(&c, p1, "expected one YAML document, found %zu", ndocs);
    }
    if (root->kind != YNODE_MAP) {
        wf_problem_type(&c, "workflow", root, "a mapping");
        goto done;
    }
    read_workflow(&c, w, root);
    if (w->name.v == NULL)
        w->name.v = base_name(c.file);
done:
    rc = wf_problems_end(&c, diag_out, e);
    if (rc < 0) {
        wf_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* A composite action's steps go through wf_read_steps() like a job's, so both get the same keys
 * and checks; only the message path differs. */
int
wf_parse_steps(const char *file, const char *data, size_t len, const char *path,
               struct ynode *seq, struct wf_step **steps, size_t *n, struct wf_diag *diag_out,
               struct err *e)
{
    struct wctx c = {.file = file ? file : "<workflow>", .src = data, .srclen = len};
    struct wf_step *s = NULL;
    size_t ns = 0;
    int rc;

    *steps = NULL;
    *n = 0;
    if (seq == NULL)
        return 0;
    wf_read_steps(&c, path ? path : "steps", seq, &s, &ns);
    rc = wf_problems_end(&c, diag_out, e);
    if (rc < 0) {
        wf_steps_free(s, ns);
        return rc;
    }
    *steps = s;
    *n = ns;
    return 0;
}

/* Reads at most WF_MAX_FILE_SIZE bytes, also when the file grows while being read. */
int
wf_load(const char *path, struct wf_workflow **out, struct wf_diag *diag_out, struct err *e)
{
    struct buf data = BUF_INIT;
    int rc;

    *out = NULL;
    rc = buf_read_file(&data, path, WF_MAX_FILE_SIZE, "workflow file", e);
    if (rc == 0)
        rc = wf_parse(path, buf_str(&data), data.len, out, diag_out, e);
    buf_free(&data);
    return rc;
}

/* Frees the strings the model owns, then the tree that owns every node. */
void
wf_free(struct wf_workflow *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n_jobs; i++) {
        struct wf_job *j = &w->jobs[i];
        free(j->id);
        free(j->name.v);
        free(j->if_.v);
        free(j->defaults_shell.v);
        free(j->defaults_working_directory.v);
        free(j->uses.v);
        for (size_t k = 0; k < j->n_needs; k++)
            free(j->needs[k].id);
        free(j->needs);
        wf_steps_free(j->steps, j->n_steps);
    }
    free(w->jobs);
    for (size_t i = 0; i < w->n_events; i++)
        free(w->events[i].name);
    free(w->events);
    free(w->name.v);
    free(w->run_name.v);
    free(w->defaults_shell.v);
    free(w->defaults_working_directory.v);
    free(w->file);
    ynode_free(w->root);
    free(w);
}

/* Linear: workflows have few jobs, and callers look up rarely. */
const struct wf_job *
wf_job_find(const struct wf_workflow *w, const char *id)
{
    if (w == NULL || id == NULL)
        return NULL;
    for (size_t i = 0; i < w->n_jobs; i++)
        if (strcmp(w->jobs[i].id, id) == 0)
            return &w->jobs[i];
    return NULL;
}
