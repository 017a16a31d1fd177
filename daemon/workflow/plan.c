/* plan.c: stages, matrix expansion, job `if`, results and outputs (see plan.h). */
#include "plan.h"

#include "ctx.h"
#include "expr.h"
#include "mask.h"
#include "runner/buf.h"
#include "runner/xalloc.h"
#include "yeval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *
plan_result_name(enum plan_result r)
{
    switch (r) {
    case PLAN_SUCCESS:
        return "success";
    case PLAN_FAILURE:
        return "failure";
    case PLAN_CANCELLED:
        return "cancelled";
    case PLAN_SKIPPED:
        return "skipped";
    case PLAN_PENDING:
        break;
    }
    return "";
}

static int
at(struct err *e, const struct plan *p, struct ypos pos)
{
    return err_prefix(e, "%s:%d:%d: ", p->wf->file, pos.line, pos.col);
}

/* ---------------------------------------------------------------- matrix */

/* True when every key of entry that is also an original matrix key has an equal value in
 * combo (json_equal is type-sensitive: 4 is not "4"). */
static bool
keys_match(json_t *combo, json_t *entry, json_t *orig_keys)
{
    const char *k;
    json_t *v;

    json_object_foreach(entry, k, v) {
        if (orig_keys && !json_object_get(orig_keys, k))
            continue;
        json_t *cv = json_object_get(combo, k);
        if (cv == NULL) {
            if (orig_keys == NULL)
                return false;
            continue;
        }
        if (!json_equal(cv, v))
            return false;
    }
    return true;
}

/* Appends the entries of list to out, flattening nested lists (act flattens include). */
static int
flatten_entries(json_t *list, json_t *out, const char *what, struct err *e)
{
    size_t i;
    json_t *it;

    if (!json_is_array(list))
        return err_set(e, ERR_INVALID, "matrix %s must be a list of mappings", what);
    json_array_foreach(list, i, it) {
        if (json_is_array(it)) {
            int rc = flatten_entries(it, out, what, e);
            if (rc < 0)
                return rc;
        } else if (json_is_object(it)) {
            json_array_append(out, it);
        } else {
            return err_set(e, ERR_INVALID, "matrix %s entries must be mappings", what);
        }
    }
    return 0;
}

int
plan_matrix_expand(json_t *matrix, json_t **out, struct err *e)
{
    json_t *combos = json_array(), *incl = json_array(), *excl = json_array();
    json_t *orig = json_object(); /* original key -> list of values, in order */
    const char *k;
    json_t *v;
    size_t total = 1, i;
    int rc = 0;

    *out = NULL;
    if (matrix == NULL || json_is_null(matrix))
        goto single;
    if (!json_is_object(matrix)) {
        rc = err_set(e, ERR_INVALID, "strategy.matrix must be a mapping");
        goto out;
    }
    json_object_foreach(matrix, k, v) {
        if (strcmp(k, "include") == 0) {
            if ((rc = flatten_entries(v, incl, "include", e)) < 0)
                goto out;
        } else if (strcmp(k, "exclude") == 0) {
            if ((rc = flatten_entries(v, excl, "exclude", e)) < 0)
                goto out;
        } else if (!json_is_array(v)) {
            rc = err_set(e, ERR_INVALID, "matrix key '%s' must be a list of values", k);
            goto out;
        } else {
            size_t n = json_array_size(v);
            if (n == 0) {
                total = 0;
            } else if (total > PLAN_MAX_MATRIX || n > PLAN_MAX_MATRIX ||
                       total * n > PLAN_MAX_MATRIX * (size_t)PLAN_MAX_MATRIX) {
                total = PLAN_MAX_MATRIX * (size_t)PLAN_MAX_MATRIX;
            } else {
                total *= n;
            }
            json_object_set(orig, k, v);
        }
    }
    json_array_foreach(excl, i, v) {
        const char *xk;
        json_t *xv;

        json_object_foreach(v, xk, xv) {
            if (!json_object_get(orig, xk)) {
                rc = err_set(e, ERR_INVALID,
                             "matrix exclude key \"%s\" does not match any key within the matrix",
                             xk);
                goto out;
            }
        }
    }
    if (json_object_size(orig) > 0) {
        if (total > PLAN_MAX_MATRIX * 4) {
            rc = err_set(e, ERR_INVALID, "the matrix has %s%zu combinations; at most %d runs are "
                         "allowed", total >= PLAN_MAX_MATRIX * (size_t)PLAN_MAX_MATRIX ? "over " : "",
                         total, PLAN_MAX_MATRIX);
            goto out;
        }
        /* Cartesian product, keys in order, each key's values in order. */
        json_array_append_new(combos, json_object());
        json_object_foreach(orig, k, v) {
            json_t *next = json_array(), *c, *val;
            size_t ci, vi;

            json_array_foreach(combos, ci, c) {
                json_array_foreach(v, vi, val) {
                    json_t *n = json_copy(c);
                    json_object_set(n, k, val);
                    json_array_append_new(next, n);
                }
            }
            json_decref(combos);
            combos = next;
        }
        /* Exclude. */
        json_t *kept = json_array(), *c;
        json_array_foreach(combos, i, c) {
            bool drop = false;
            size_t xi;
            json_t *x;
            json_array_foreach(excl, xi, x) {
                if (keys_match(c, x, NULL)) {
                    drop = true;
                    break;
                }
            }
            if (!drop)
                json_array_append(kept, c);
        }
        json_decref(combos);
        combos = kept;
    }
    /* Include: merge into every combination whose original keys agree; else append. */
    {
        size_t n_base = json_array_size(combos), ii;
        json_t *entry;

        json_array_foreach(incl, ii, entry) {
            bool merged = false;

            for (size_t ci = 0; ci < n_base && json_object_size(orig) > 0; ci++) {
                json_t *c = json_array_get(combos, ci);
                if (keys_match(c, entry, orig)) {
                    json_object_update(c, entry);
                    merged = true;
                }
            }
            if (!merged)
                json_array_append_new(combos, json_copy(entry));
        }
    }
    if (json_array_size(combos) > PLAN_MAX_MATRIX) {
        rc = err_set(e, ERR_INVALID, "the matrix has %zu combinations; at most %d runs are allowed",
                     json_array_size(combos), PLAN_MAX_MATRIX);
        goto out;
    }
single:
    if (json_array_size(combos) == 0)
        json_array_append_new(combos, json_object());
    *out = combos;
    combos = NULL;
out:
    json_decref(combos);
    json_decref(incl);
    json_decref(excl);
    json_decref(orig);
    return rc;
}

/* ---------------------------------------------------------------- contexts */

static size_t
job_index_of(const struct plan *p, const struct wf_job *wj)
{
    for (size_t i = 0; i < p->n_jobs; i++)
        if (p->jobs[i].wf == wj)
            return i;
    return (size_t)-1;
}

/* Merged outputs of a job's runs (later runs win). */
static json_t *
job_outputs(const struct plan_job *j)
{
    json_t *o = json_object();

    for (size_t r = 0; r < j->n_runs; r++)
        if (j->runs[r].outputs)
            json_object_update(o, j->runs[r].outputs);
    return o;
}

static json_t *
needs_context(const struct plan *p, const struct plan_job *j)
{
    json_t *needs = p->ext_needs ? json_deep_copy(p->ext_needs) : json_object();

    for (size_t n = 0; n < j->n_needs; n++) {
        const struct plan_job *nj = &p->jobs[j->needs[n]];
        json_t *ent = json_object();

        json_object_set_new(ent, "result", json_string(plan_result_name(nj->result)));
        json_object_set_new(ent, "outputs", job_outputs(nj));
        json_object_set_new(needs, nj->wf->id, ent);
    }
    return needs;
}

/* github, inputs, vars, secrets, needs: what every job-level evaluation sees. */
static json_t *
base_contexts(const struct plan *p, const struct plan_job *j)
{
    json_t *c = json_object(), *gh = json_copy(p->github);

    json_object_set_new(gh, "job", json_string(j->wf->id));
    json_object_set_new(c, "github", gh);
    json_object_set(c, "inputs", p->inputs);
    json_object_set(c, "vars", p->vars);
    json_object_set(c, "secrets", p->secrets);
    json_object_set_new(c, "needs", needs_context(p, j));
    return c;
}

/* Evaluates an env mapping into dst (string values), with contexts ctxs. */
static int
eval_env(const struct plan *p, const struct ynode *env, json_t *ctxs, json_t *dst,
         struct err *e)
{
    struct expr_env ee = {.contexts = ctxs};
    json_t *v = NULL;
    const char *k;
    json_t *val;
    int rc;

    if (env == NULL)
        return 0;
    rc = yeval_node(p->wf->file, env, &ee, &v, e);
    if (rc < 0)
        return rc;
    if (!json_is_object(v)) {
        json_decref(v);
        err_set(e, ERR_INVALID, "env must be a mapping");
        return at(e, p, env->pos);
    }
    json_object_foreach(v, k, val) {
        if (json_is_string(val)) {
            json_object_set(dst, k, val);
        } else {
            char *s = expr_to_string(val);
            json_t *js = json_string(s);

            json_object_set_new(dst, k, js ? js : json_string(""));
            free(s);
        }
    }
    json_decref(v);
    return 0;
}

int
plan_run_contexts(const struct plan *p, size_t i, size_t r, json_t **out, struct err *e)
{
    return plan_run_contexts_ex(p, i, r, NULL, out, e);
}

/* As plan_run_contexts(), with github_extra's members set in `github` before the env is
 * evaluated: the front end knows some of them (the workspace) only once the job's executor
 * exists, and job env such as `${{ github.workspace }}/build` must see them. */
int
plan_run_contexts_ex(const struct plan *p, size_t i, size_t r, json_t *github_extra,
                     json_t **out, struct err *e)
{
    const struct plan_job *j = &p->jobs[i];
    json_t *c = base_contexts(p, j), *env = json_object(), *job = json_object();
    int rc;

    *out = NULL;
    if (json_is_object(github_extra))
        json_object_update(json_object_get(c, "github"), github_extra);
    json_object_set_new(job, "status", json_string(p->cancelled ? "cancelled" : "success"));
    json_object_set_new(c, "job", job);
    if (r < j->n_runs) {
        json_object_set(c, "strategy", j->runs[r].strategy);
        json_object_set(c, "matrix", j->runs[r].matrix);
    } else {
        json_object_set_new(c, "strategy", json_object());
        json_object_set_new(c, "matrix", json_object());
    }
    json_object_set(c, "env", env);
    rc = eval_env(p, p->wf->env, c, env, e);
    if (rc == 0)
        rc = eval_env(p, j->wf->env, c, env, e);
    json_decref(env);
    if (rc < 0) {
        json_decref(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------- runs */

static void
runs_free(struct plan_job *j)
{
    for (size_t r = 0; r < j->n_runs; r++) {
        free(j->runs[r].name);
        json_decref(j->runs[r].matrix);
        json_decref(j->runs[r].strategy);
        json_decref(j->runs[r].runs_on);
        json_decref(j->runs[r].outputs);
    }
    free(j->runs);
    j->runs = NULL;
    j->n_runs = 0;
}

/* Text of a matrix value for run names and filters. */
static char *
value_text(json_t *v)
{
    if (json_is_object(v) || json_is_array(v))
        return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    return expr_to_string(v);
}

/* True when combo passes the --matrix filter (keys the combo lacks do not filter it). */
static bool
filter_keeps(json_t *filter, json_t *combo)
{
    const char *k;
    json_t *allowed;

    json_object_foreach(filter, k, allowed) {
        json_t *v = json_object_get(combo, k), *a;
        size_t i;
        bool ok = false;

        if (v == NULL)
            continue;
        char *t = value_text(v);
        json_array_foreach(allowed, i, a) {
            if (json_is_string(a) && strcmp(json_string_value(a), t) == 0)
                ok = true;
        }
        free(t);
        if (!ok)
            return false;
    }
    return true;
}

/* Reads runs-on (string, list, or {group, labels}) as an array of label strings. */
static int
runs_on_labels(const struct plan *p, const struct plan_job *j, json_t *ctxs, json_t **out,
               struct err *e)
{
    struct expr_env ee = {.contexts = ctxs};
    json_t *v = NULL, *labels = json_array(), *src, *it;
    size_t i;
    int rc;

    *out = NULL;
    if (j->wf->runs_on == NULL) {
        *out = labels;
        return 0;
    }
    rc = yeval_node(p->wf->file, j->wf->runs_on, &ee, &v, e);
    if (rc < 0)
        goto out;
    src = json_is_object(v) ? json_object_get(v, "labels") : v;
    if (json_is_string(src)) {
        json_array_append(labels, src);
    } else if (json_is_array(src)) {
        json_array_foreach(src, i, it) {
            if (!json_is_string(it)) {
                rc = err_set(e, ERR_INVALID, "runs-on: labels must be strings");
                goto bad;
            }
            json_array_append(labels, it);
        }
    } else if (!(json_is_object(v) && src == NULL)) {
        rc = err_set(e, ERR_INVALID, "runs-on: expected a label, a list of labels, or "
                     "a mapping with 'group' and 'labels'");
        goto bad;
    }
    *out = labels;
    labels = NULL;
    goto out;
bad:
    at(e, p, j->wf->runs_on->pos);
out:
    json_decref(v);
    json_decref(labels);
    return rc;
}

/* Evaluates a scalar strategy setting; NULL node leaves *out untouched. */
static int
strategy_value(const struct plan *p, const struct ynode *n, json_t *ctxs, json_t **out,
               struct err *e)
{
    struct expr_env ee = {.contexts = ctxs};

    if (n == NULL)
        return 0;
    return yeval_node(p->wf->file, n, &ee, out, e);
}

/* Expands job i's matrix into runs (names, strategy, runs-on). */
static int
job_expand(struct plan *p, size_t i, const struct plan_opts *o, struct err *e)
{
    struct plan_job *j = &p->jobs[i];
    const struct wf_job *wj = j->wf;
    json_t *ctxs = base_contexts(p, j), *matrix = NULL, *combos = NULL, *ff = NULL, *mp = NULL;
    json_t *kept = NULL, *c;
    struct expr_env ee = {.contexts = ctxs};
    size_t ci;
    int rc;
    double d;

    rc = yeval_node(p->wf->file, wj->matrix, &ee, &matrix, e);
    if (rc < 0)
        goto out;
    rc = plan_matrix_expand(matrix, &combos, e);
    if (rc < 0) {
        at(e, p, wj->matrix ? wj->matrix->pos : wj->pos);
        goto out;
    }
    kept = json_array();
    json_array_foreach(combos, ci, c) {
        if (o == NULL || o->matrix_filter == NULL || filter_keeps(o->matrix_filter, c))
            json_array_append(kept, c);
    }
    rc = strategy_value(p, wj->fail_fast, ctxs, &ff, e);
    if (rc == 0)
        rc = strategy_value(p, wj->max_parallel, ctxs, &mp, e);
    if (rc < 0)
        goto out;
    j->fail_fast = ff ? expr_truthy(ff) : true;
    j->max_parallel = (int)json_array_size(kept);
    if (mp && expr_number_get(mp, &d)) {
        if (d < 1 || d > 1e6) {
            rc = err_set(e, ERR_INVALID, "strategy.max-parallel must be a positive number");
            at(e, p, wj->max_parallel->pos);
            goto out;
        }
        j->max_parallel = (int)d;
    } else if (mp) {
        rc = err_set(e, ERR_INVALID, "strategy.max-parallel must be a number");
        at(e, p, wj->max_parallel->pos);
        goto out;
    }

    runs_free(j);
    j->n_runs = json_array_size(kept);
    j->runs = xcalloc(j->n_runs ? j->n_runs : 1, sizeof *j->runs);
    json_array_foreach(kept, ci, c) {
        struct plan_run *run = &j->runs[ci];
        json_t *rctx = NULL;
        const char *base = wj->name.v ? wj->name.v : wj->id;

        run->matrix = json_incref(c);
        run->strategy = ctx_strategy_new(j->fail_fast, j->max_parallel, (int)ci, (int)j->n_runs);
        run->outputs = json_object();
        rc = plan_run_contexts(p, i, ci, &rctx, e);
        if (rc < 0)
            goto out;
        rc = runs_on_labels(p, j, rctx, &run->runs_on, e);
        if (rc == 0 && strstr(base, "${{")) {
            struct expr_env re = {.contexts = rctx};
            rc = expr_interpolate(base, &re, &run->name, e);
            if (rc < 0)
                at(e, p, wj->name.pos);
        } else if (rc == 0 && j->n_runs > 1 && json_object_size(c) > 0) {
            /* Gitea's naming: the values ordered by key, in parentheses. */
            struct buf b = BUF_INIT;
            const char **keys = xcalloc(json_object_size(c), sizeof *keys);
            size_t nk = 0;
            const char *k;
            json_t *v;

            json_object_foreach(c, k, v) {
                keys[nk++] = k;
            }
            for (size_t a = 1; a < nk; a++)
                for (size_t z = a; z > 0 && strcmp(keys[z - 1], keys[z]) > 0; z--) {
                    const char *t = keys[z];
                    keys[z] = keys[z - 1];
                    keys[z - 1] = t;
                }
            buf_printf(&b, "%s (", base);
            for (size_t a = 0; a < nk; a++) {
                char *t = value_text(json_object_get(c, keys[a]));
                buf_printf(&b, "%s%s", a ? ", " : "", t);
                free(t);
            }
            buf_putc(&b, ')');
            free(keys);
            run->name = buf_steal(&b);
        } else if (rc == 0) {
            run->name = xstrdup(base);
        }
        json_decref(rctx);
        if (rc < 0)
            goto out;
    }
    j->expanded = true;
out:
    json_decref(ctxs);
    json_decref(matrix);
    json_decref(combos);
    json_decref(kept);
    json_decref(ff);
    json_decref(mp);
    return rc;
}

/* ---------------------------------------------------------------- plan */

static void
select_with_needs(const struct wf_workflow *w, size_t wi, bool *sel)
{
    if (sel[wi])
        return;
    sel[wi] = true;
    for (size_t n = 0; n < w->jobs[wi].n_needs; n++) {
        const struct wf_job *nj = wf_job_find(w, w->jobs[wi].needs[n].id);
        if (nj)
            select_with_needs(w, (size_t)(nj - w->jobs), sel);
    }
}

int
plan_new(const struct wf_workflow *w, const struct plan_opts *o, struct plan **out,
         struct err *e)
{
    static const struct plan_opts none;
    struct plan *p = xcalloc(1, sizeof *p);
    size_t nw = w->n_jobs;
    bool *sel = xcalloc(nw ? nw : 1, sizeof *sel);
    int *stage = xcalloc(nw ? nw : 1, sizeof *stage);
    size_t placed = 0, n_sel = 0;
    int rc = 0;

    *out = NULL;
    if (o == NULL)
        o = &none;
    p->wf = w;
    p->event_name = xstrdup(o->event_name ? o->event_name : "push");
    if (o->github) {
        p->github = json_incref(o->github);
    } else {
        struct ctx_github_opts go = {.event_name = p->event_name};
        p->github = ctx_github_new(w, &go);
    }
    p->vars = o->vars ? json_incref(o->vars) : json_object();
    p->secrets = o->secrets ? json_incref(o->secrets) : json_object();
    p->inputs = o->inputs ? json_incref(o->inputs) : json_object();
    p->ext_needs = o->ext_needs ? json_incref(o->ext_needs) : NULL;

    if (o->only_job) {
        const struct wf_job *oj = wf_job_find(w, o->only_job);
        if (oj == NULL) {
            rc = err_set(e, ERR_NOTFOUND, "%s: no job '%s' in the workflow", w->file, o->only_job);
            goto out;
        }
        select_with_needs(w, (size_t)(oj - w->jobs), sel);
    } else {
        for (size_t i = 0; i < nw; i++)
            sel[i] = true;
    }
    for (size_t i = 0; i < nw; i++) {
        stage[i] = -1;
        n_sel += sel[i];
    }
    /* Stages: a job goes in the first round after all its needs are placed. */
    for (int round = 0; placed < n_sel; round++) {
        size_t before = placed;

        for (size_t i = 0; i < nw; i++) {
            bool ok = sel[i] && stage[i] < 0;

            for (size_t n = 0; ok && n < w->jobs[i].n_needs; n++) {
                const struct wf_job *nj = wf_job_find(w, w->jobs[i].needs[n].id);
                size_t ni = nj ? (size_t)(nj - w->jobs) : 0;
                ok = nj && stage[ni] >= 0 && stage[ni] < round;
            }
            if (ok) {
                stage[i] = round;
                placed++;
            }
        }
        if (placed == before) {
            rc = err_set(e, ERR_INVALID, "%s: unable to build dependency graph for %s",
                         w->file, w->name.v ? w->name.v : w->file);
            goto out;
        }
        p->n_stages = round + 1;
    }
    p->jobs = xcalloc(n_sel ? n_sel : 1, sizeof *p->jobs);
    for (int s = 0; s < p->n_stages; s++)
        for (size_t i = 0; i < nw; i++)
            if (sel[i] && stage[i] == s) {
                struct plan_job *j = &p->jobs[p->n_jobs++];
                j->wf = &w->jobs[i];
                j->stage = s;
                j->fail_fast = true;
            }
    for (size_t i = 0; i < p->n_jobs; i++) {
        struct plan_job *j = &p->jobs[i];

        j->needs = xcalloc(j->wf->n_needs ? j->wf->n_needs : 1, sizeof *j->needs);
        for (size_t n = 0; n < j->wf->n_needs; n++)
            j->needs[j->n_needs++] = job_index_of(p, wf_job_find(w, j->wf->needs[n].id));
    }
    /* Matrices that read `needs` wait until their job starts. */
    for (size_t i = 0; i < p->n_jobs; i++) {
        if (yeval_mentions(p->jobs[i].wf->strategy, "needs"))
            continue;
        rc = job_expand(p, i, o, e);
        if (rc < 0)
            goto out;
    }
    *out = p;
    p = NULL;
out:
    free(sel);
    free(stage);
    plan_free(p);
    return rc;
}

void
plan_free(struct plan *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_jobs; i++) {
        runs_free(&p->jobs[i]);
        free(p->jobs[i].needs);
    }
    free(p->jobs);
    free(p->event_name);
    json_decref(p->github);
    json_decref(p->vars);
    json_decref(p->secrets);
    json_decref(p->inputs);
    json_decref(p->ext_needs);
    free(p);
}

/* ---------------------------------------------------------------- scheduling */

bool
plan_job_ready(const struct plan *p, size_t i)
{
    const struct plan_job *j = &p->jobs[i];

    if (j->state != PLAN_JOB_WAITING)
        return false;
    for (size_t n = 0; n < j->n_needs; n++)
        if (p->jobs[j->needs[n]].state != PLAN_JOB_DONE)
            return false;
    return true;
}

/* Job-level status functions: success()/failure() look at the transitive needs. */
struct status_arg {
    const struct plan *p;
    size_t job;
};

static void
closure_results(const struct plan *p, size_t i, bool *seen, bool *all_ok, bool *any_fail)
{
    const struct plan_job *j = &p->jobs[i];

    for (size_t n = 0; n < j->n_needs; n++) {
        size_t ni = j->needs[n];
        if (seen[ni])
            continue;
        seen[ni] = true;
        if (p->jobs[ni].result != PLAN_SUCCESS)
            *all_ok = false;
        if (p->jobs[ni].result == PLAN_FAILURE)
            *any_fail = true;
        closure_results(p, ni, seen, all_ok, any_fail);
    }
}

static bool
job_status(void *arg, const char *fn)
{
    struct status_arg *sa = arg;
    bool *seen, all_ok = true, any_fail = false;

    if (strcmp(fn, "always") == 0)
        return true;
    if (strcmp(fn, "cancelled") == 0)
        return sa->p->cancelled;
    seen = xcalloc(sa->p->n_jobs, sizeof *seen);
    closure_results(sa->p, sa->job, seen, &all_ok, &any_fail);
    free(seen);
    {
        const char *k;
        json_t *v;
        json_object_foreach(sa->p->ext_needs, k, v) {
            const char *r = json_string_value(json_object_get(v, "result"));
            if (r == NULL || strcmp(r, "success") != 0)
                all_ok = false;
            if (r && strcmp(r, "failure") == 0)
                any_fail = true;
        }
    }
    if (strcmp(fn, "success") == 0)
        return all_ok && !sa->p->cancelled;
    if (strcmp(fn, "failure") == 0)
        return any_fail;
    return false;
}

static void
job_done(struct plan_job *j, enum plan_result r)
{
    j->state = PLAN_JOB_DONE;
    j->result = r;
    for (size_t k = 0; k < j->n_runs; k++)
        if (!j->runs[k].finished) {
            j->runs[k].result = r;
            j->runs[k].finished = true;
        }
    j->n_finished = j->n_runs;
}

int
plan_job_start(struct plan *p, size_t i, bool *run, struct err *e)
{
    struct plan_job *j = &p->jobs[i];
    struct status_arg sa = {.p = p, .job = i};
    json_t *ctxs = NULL;
    bool ok = false;
    int rc;

    *run = false;
    if (!plan_job_ready(p, i))
        return err_set(e, -EINVAL, "job '%s' is not ready", j->wf->id);
    ctxs = base_contexts(p, j);
    {
        struct expr_env ee = {.contexts = ctxs, .status_fn = job_status, .arg = &sa};
        rc = expr_eval_if(j->wf->if_.v ? j->wf->if_.v : "", "success()", &ee, &ok, e);
    }
    json_decref(ctxs);
    if (rc < 0) {
        err_prefix(e, "%s:%d:%d: job '%s': error in if-expression: ", p->wf->file,
                   j->wf->if_.pos.line, j->wf->if_.pos.col, j->wf->id);
        job_done(j, PLAN_FAILURE);
        return rc;
    }
    if (!ok) {
        job_done(j, PLAN_SKIPPED);
        return 0;
    }
    if (!j->expanded) {
        rc = job_expand(p, i, NULL, e);
        if (rc < 0) {
            job_done(j, PLAN_FAILURE);
            return rc;
        }
    }
    j->state = PLAN_JOB_RUNNING;
    *run = true;
    return 0;
}

int
plan_run_outputs(struct plan *p, size_t i, size_t r, json_t *steps, json_t *github_extra,
                 struct err *e)
{
    struct plan_job *j = &p->jobs[i];
    const struct ynode *outs = j->wf->outputs;
    json_t *ctxs = NULL;
    int rc = 0;

    if (outs == NULL || outs->kind != YNODE_MAP || r >= j->n_runs)
        return 0;
    rc = plan_run_contexts_ex(p, i, r, github_extra, &ctxs, e);
    if (rc < 0)
        return rc;
    json_object_set(ctxs, "steps", steps);
    for (size_t k = 0; k < outs->n; k++) {
        char *v = NULL;
        struct expr_env ee = {.contexts = ctxs};

        rc = yeval_string(p->wf->file, outs->items[k], &ee, &v, e);
        if (rc < 0)
            break;
        json_object_set_new(j->runs[r].outputs, outs->keys[k]->str, json_string(v ? v : ""));
        free(v);
    }
    json_decref(ctxs);
    return rc;
}

void
plan_run_finish(struct plan *p, size_t i, size_t r, enum plan_result res)
{
    struct plan_job *j = &p->jobs[i];
    bool fail = false, cancel = false, pending = false;

    if (r >= j->n_runs || j->state != PLAN_JOB_RUNNING || j->runs[r].finished)
        return;
    j->runs[r].finished = true;
    j->runs[r].result = res;
    j->n_finished++;
    if (j->n_finished < j->n_runs)
        return;
    for (size_t k = 0; k < j->n_runs; k++) {
        fail |= j->runs[k].result == PLAN_FAILURE;
        cancel |= j->runs[k].result == PLAN_CANCELLED;
        pending |= j->runs[k].result == PLAN_PENDING;
    }
    j->state = PLAN_JOB_DONE;
    j->result = fail ? PLAN_FAILURE : cancel ? PLAN_CANCELLED : pending ? PLAN_PENDING : PLAN_SUCCESS;
}

bool
plan_done(const struct plan *p)
{
    for (size_t i = 0; i < p->n_jobs; i++)
        if (p->jobs[i].state != PLAN_JOB_DONE)
            return false;
    return true;
}

/* ---------------------------------------------------------------- output */

static char *
labels_text(json_t *labels)
{
    struct buf b = BUF_INIT;
    size_t i;
    json_t *l;

    json_array_foreach(labels, i, l) {
        buf_printf(&b, "%s%s", i ? ", " : "", json_string_value(l));
    }
    return buf_steal(&b);
}

static void
print_plain(const struct plan *p, FILE *f)
{
    fprintf(f, "workflow \"%s\" (%s), event %s: %zu job%s in %d stage%s\n",
            p->wf->name.v ? p->wf->name.v : "", p->wf->file, p->event_name, p->n_jobs,
            p->n_jobs == 1 ? "" : "s", p->n_stages, p->n_stages == 1 ? "" : "s");
    for (int s = 0; s < p->n_stages; s++) {
        fprintf(f, "stage %d\n", s + 1);
        for (size_t i = 0; i < p->n_jobs; i++) {
            const struct plan_job *j = &p->jobs[i];

            if (j->stage != s)
                continue;
            fprintf(f, "  job %s", j->wf->id);
            if (j->n_needs) {
                fprintf(f, "  needs:");
                for (size_t n = 0; n < j->n_needs; n++)
                    fprintf(f, "%s %s", n ? "," : "", p->jobs[j->needs[n]].wf->id);
            }
            if (j->wf->if_.v)
                fprintf(f, "  if: %s", j->wf->if_.v);
            fputc('\n', f);
            if (!j->expanded) {
                fprintf(f, "    (matrix expanded when its needs finish)\n");
                continue;
            }
            if (j->n_runs > 1)
                fprintf(f, "    %zu runs, max-parallel %d, fail-fast %s\n", j->n_runs,
                        j->max_parallel, j->fail_fast ? "true" : "false");
            for (size_t r = 0; r < j->n_runs; r++) {
                const struct plan_run *run = &j->runs[r];
                char *labels = labels_text(run->runs_on);

                fprintf(f, "    run %s  runs-on: %s", run->name, *labels ? labels : "(none)");
                if (json_object_size(run->matrix) > 0) {
                    char *m = json_dumps(run->matrix, JSON_COMPACT);
                    fprintf(f, "  matrix: %s", m);
                    free(m);
                }
                fputc('\n', f);
                free(labels);
            }
        }
    }
}

/* The plan is printed as its text, then masked line by line with the secrets it was given
 * (a run name or a runs-on label can be built from one) and with control characters escaped
 * (a name can hold ESC or CR). */
void
plan_print(const struct plan *p, FILE *f)
{
    struct mask *m = mask_for_job(p->secrets, NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&text, &len);

    if (mf == NULL) {
        mask_free(m);
        return;
    }
    print_plain(p, mf);
    fclose(mf);
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line)), *shown;
        if (nl)
            *nl = '\0';
        shown = mask_shown(m, line);
        fprintf(f, "%s\n", shown);
        free(shown);
        line = nl ? nl + 1 : text + len;
    }
    free(text);
    mask_free(m);
}

json_t *
plan_to_json(const struct plan *p)
{
    json_t *root = json_object(), *jobs = json_array();

    json_object_set_new(root, "workflow", json_string(p->wf->name.v ? p->wf->name.v : ""));
    json_object_set_new(root, "file", json_string(p->wf->file));
    json_object_set_new(root, "event", json_string(p->event_name));
    json_object_set_new(root, "stages", json_integer(p->n_stages));
    for (size_t i = 0; i < p->n_jobs; i++) {
        const struct plan_job *j = &p->jobs[i];
        json_t *jo = json_object(), *needs = json_array(), *runs = json_array();

        json_object_set_new(jo, "id", json_string(j->wf->id));
        json_object_set_new(jo, "stage", json_integer(j->stage + 1));
        for (size_t n = 0; n < j->n_needs; n++)
            json_array_append_new(needs, json_string(p->jobs[j->needs[n]].wf->id));
        json_object_set_new(jo, "needs", needs);
        if (j->wf->if_.v)
            json_object_set_new(jo, "if", json_string(j->wf->if_.v));
        json_object_set_new(jo, "expanded", json_boolean(j->expanded));
        json_object_set_new(jo, "fail-fast", json_boolean(j->fail_fast));
        json_object_set_new(jo, "max-parallel", json_integer(j->max_parallel));
        json_object_set_new(jo, "result", json_string(plan_result_name(j->result)));
        for (size_t r = 0; r < j->n_runs; r++) {
            json_t *ro = json_object();
            json_object_set_new(ro, "name", json_string(j->runs[r].name));
            json_object_set(ro, "matrix", j->runs[r].matrix);
            json_object_set(ro, "runs-on", j->runs[r].runs_on);
            json_array_append_new(runs, ro);
        }
        json_object_set_new(jo, "runs", runs);
        json_array_append_new(jobs, jo);
    }
    json_object_set_new(root, "jobs", jobs);
    /* Masked like the printed plan: names and labels can be built from secrets. */
    struct mask *m = mask_for_job(p->secrets, NULL);
    json_t *masked = mask_json(m, root);
    mask_free(m);
    json_decref(root);
    return masked;
}
