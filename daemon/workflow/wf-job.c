/* wf-job.c: jobs: their keys, runs-on, needs (and the graph of needs: unknown jobs, cycles),
 * container and services (with the docker options that no label allows), strategy and
 * matrix; and wf_check_caps(), the capabilities a workflow's containers add. */
#include "wf-int.h"

#include "dockeropts.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Checks literal docker run options now (what no label setting allows: --privileged,
 * --security-opt, --network, --entrypoint in a job container, limits switched off, bad
 * capability names, host-path volumes), so that a hostile workflow is refused before
 * anything runs. Which capabilities may be added depends on the label, and flags the runner
 * does not support are refused when the job starts (GitHub's reader accepts them). */
static void
check_options(struct wctx *c, const char *path, const struct ynode *n, bool is_service)
{
    struct dockeropts o;
    struct err e = {0};
    const char *why;

    if (n->kind != YNODE_SCALAR || wf_has_expr(n) || ynode_is_null(n) || strlen(n->str) != n->len)
        return;
    if (dockeropts_parse(n->str, path, DOCKEROPTS_SKIP_UNKNOWN | (is_service ? 0 : DOCKEROPTS_JOB),
                         &o, &e) < 0) {
        wf_problem(c, n->pos, "%s", e.msg);
    } else {
        for (size_t i = 0; i < o.nvolumes; i++)
            if ((why = dockeropts_volume_problem(o.volumes[i])) != NULL)
                wf_problem(c, n->pos, "%s: -v %s: %s", path, o.volumes[i], why);
    }
    dockeropts_free(&o);
}

/* Checks a container (job container: string or mapping) or a service (mapping). */
static void
check_container(struct wctx *c, const char *path, const struct ynode *n, bool is_service)
{
    static const char *const keys[] = {"image", "env", "ports", "volumes", "options",
                                       "credentials", NULL};
    static const char *const service_keys[] = {"image", "env", "ports", "volumes", "options",
                                               "credentials", "entrypoint", "command", NULL};
    static const char *const cred_keys[] = {"username", "password", NULL};
    const struct ynode *v;

    if (n->kind == YNODE_SCALAR) {
        if (ynode_is_null(n) || n->len == 0)
            wf_problem(c, n->pos, "%s: expected an image name, got an empty value", path);
        else
            wf_check_template(c, path, n);
        return;
    }
    if (n->kind != YNODE_MAP) {
        wf_problem_type(c, path, n, "an image name or a mapping");
        return;
    }
    wf_check_keys(c, path, n, is_service ? service_keys : keys);
    if (is_service) {
        static const char *const strs[] = {"entrypoint", "command", NULL};
        for (size_t i = 0; strs[i]; i++) {
            if ((v = ynode_get(n, strs[i])) != NULL) {
                char *ps = wf_path(path, strs[i]);
                wf_get_str(c, ps, v, true, NULL);
                free(ps);
            }
        }
    }
    char *p = wf_path(path, "image");
    if ((v = ynode_get(n, "image")) != NULL) {
        if (v->kind == YNODE_SCALAR && (ynode_is_null(v) || v->len == 0))
            wf_problem(c, v->pos, "%s: expected an image name, got an empty value", p);
        else
            wf_get_str(c, p, v, true, NULL);
    } else {
        /* Without an image there is nothing to run the job (or service) in; refuse it here
         * rather than fail at the job's start with a Docker error. */
        wf_problem(c, n->pos, "%s: missing required key 'image'", path);
    }
    free(p);
    if ((v = ynode_get(n, "env")) != NULL) {
        const struct expr_parse_opts *saved = wf_set_loc(c, c->loc ? &wf_loc_runner : NULL);
        p = wf_path(path, "env");
        wf_check_scalar_map(c, p, v, true);
        wf_set_loc(c, saved);
        free(p);
    }
    if ((v = ynode_get(n, "ports")) != NULL) {
        p = wf_path(path, "ports");
        if (v->kind != YNODE_SEQ && !ynode_is_null(v))
            wf_problem_type(c, p, v, "a sequence");
        else if (v->kind == YNODE_SEQ)
            wf_check_str_or_seq(c, p, v, true);
        free(p);
    }
    if ((v = ynode_get(n, "volumes")) != NULL) {
        p = wf_path(path, "volumes");
        if (v->kind != YNODE_SEQ && !ynode_is_null(v))
            wf_problem_type(c, p, v, "a sequence");
        else if (v->kind == YNODE_SEQ)
            wf_check_str_or_seq(c, p, v, true);
        for (size_t i = 0; v->kind == YNODE_SEQ && i < v->n; i++) {
            const struct ynode *it = v->items[i];
            const char *why;
            if (it->kind == YNODE_SCALAR && !wf_has_expr(it) &&
                (why = dockeropts_volume_problem(it->str)) != NULL)
                wf_problem(c, it->pos, "%s[%zu]: volume '%s': %s", p, i, it->str, why);
        }
        free(p);
    }
    if ((v = ynode_get(n, "options")) != NULL) {
        p = wf_path(path, "options");
        wf_get_str(c, p, v, true, NULL);
        check_options(c, p, v, is_service);
        free(p);
    }
    if ((v = ynode_get(n, "credentials")) != NULL) {
        const struct expr_parse_opts *saved = wf_set_loc(c, c->loc ? &wf_loc_creds : NULL);
        p = wf_path(path, "credentials");
        if (v->kind == YNODE_MAP) {
            wf_check_keys(c, p, v, cred_keys);
            wf_check_scalar_map(c, p, v, false);
        } else if (!wf_has_expr(v)) {
            wf_problem_type(c, p, v, "a mapping");
        } else {
            wf_check_template(c, p, v);
        }
        wf_set_loc(c, saved);
        free(p);
    }
}

/* Checks one of a job's services (for wf_each_entry()). */
static void
check_service(struct wctx *c, const char *path, const struct ynode *k, const struct ynode *v,
              const void *arg)
{
    (void)k;
    (void)arg;
    check_container(c, path, v, true);
}

/* Checks a runs-on group name as GitHub does: a plain name, or one prefix naming where the
 * group is defined ('organization/', 'enterprise/' or their short forms) and a non-empty name.
 * Any other slash is a mistake that would never match a runner. */
static void
check_runner_group(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const prefixes[] = {"org", "organization", "ent", "enterprise", NULL};
    const char *slash;
    bool known = false;

    if (n->kind != YNODE_SCALAR || ynode_is_null(n) || wf_has_expr(n) || strlen(n->str) != n->len)
        return;
    slash = strchr(n->str, '/');
    if (slash == NULL)
        return;
    for (size_t i = 0; prefixes[i] && !known; i++)
        known = strlen(prefixes[i]) == (size_t)(slash - n->str) &&
                strncmp(n->str, prefixes[i], (size_t)(slash - n->str)) == 0;
    char *gq = wf_quote(n);
    if (!known || strchr(slash + 1, '/') != NULL)
        wf_problem(c, n->pos,
                   "%s: invalid runner group name '%s'; use the prefix 'organization/' or "
                   "'enterprise/' to target a single runner group",
                   path, gq);
    else if (slash[1] == '\0')
        wf_problem(c, n->pos,
                   "%s: invalid runner group name '%s'; the name after the prefix is empty", path,
                   gq);
    free(gq);
}

/* Checks runs-on: a string, a sequence of strings or {group, labels}. */
static void
check_runs_on(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const keys[] = {"group", "labels", NULL};

    if (n->kind == YNODE_SCALAR && ynode_is_null(n)) {
        wf_problem(c, n->pos, "%s: expected a label, a sequence of labels or {group, labels}",
                   path);
        return;
    }
    if (n->kind != YNODE_MAP) {
        wf_check_str_or_seq(c, path, n, true);
        return;
    }
    wf_check_keys(c, path, n, keys);
    const struct ynode *g = ynode_get(n, "group"), *l = ynode_get(n, "labels");
    if (g) {
        char *p = wf_path(path, "group");
        wf_get_str(c, p, g, true, NULL);
        check_runner_group(c, p, g);
        free(p);
    }
    if (l) {
        char *p = wf_path(path, "labels");
        wf_check_str_or_seq(c, p, l, true);
        free(p);
    }
}

/* Checks strategy and fills the job's matrix/fail-fast/max-parallel nodes. */
static void
read_strategy(struct wctx *c, const char *path, struct ynode *n, struct wf_job *j)
{
    static const char *const keys[] = {"matrix", "fail-fast", "max-parallel", NULL};

    if (n->kind == YNODE_SCALAR && wf_has_expr(n)) {
        wf_check_template(c, path, n);
        j->strategy = n;
        return;
    }
    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            wf_problem_type(c, path, n, "a mapping");
        return;
    }
    j->strategy = n;
    wf_check_keys(c, path, n, keys);
    struct ynode *m = ynode_get(n, "matrix");
    struct ynode *ff = ynode_get(n, "fail-fast"), *mp = ynode_get(n, "max-parallel");
    char *p = wf_path(path, "matrix");
    if (m && m->kind == YNODE_SCALAR && wf_has_expr(m)) {
        wf_check_template(c, p, m);
        j->matrix = m;
    } else if (m && m->kind == YNODE_MAP) {
        j->matrix = m;
        for (size_t i = 0; i < m->n; i++) {
            const struct ynode *k = m->keys[i], *v = m->items[i];
            if (k->kind != YNODE_SCALAR) {
                wf_problem_key(c, p, k);
                continue;
            }
            char *pk = wf_path_key(p, k);
            if (wf_is_insert(k->str)) {
                wf_check_tree(c, pk, v);
            } else if (wf_has_expr(k)) {
                /* A key from an expression (`${{ needs.prep.outputs.key }}: [..]`): act and
                 * Gitea evaluate matrix keys like values, when the matrix is expanded. */
                wf_check_template(c, p, k);
                if (v->kind == YNODE_SEQ || wf_has_expr(v))
                    wf_check_tree(c, pk, v);
                else
                    wf_problem_type(c, pk, v, "a sequence");
            } else if (strcmp(k->str, "include") == 0 || strcmp(k->str, "exclude") == 0) {
                if (v->kind == YNODE_SEQ) {
                    for (size_t e = 0; e < v->n; e++) {
                        const struct ynode *it = v->items[e];
                        char *pe = xasprintf("%s[%zu]", pk, e);
                        if (it->kind == YNODE_MAP || wf_has_expr(it))
                            wf_check_tree(c, pe, it);
                        else
                            wf_problem_type(c, pe, it, "a mapping");
                        free(pe);
                    }
                } else if (wf_has_expr(v)) {
                    wf_check_template(c, pk, v);
                } else {
                    wf_problem_type(c, pk, v, "a sequence of mappings");
                }
            } else if (v->kind == YNODE_SEQ && v->n == 0) {
                /* No values: no combinations, so the job would silently not run. */
                char *kq = wf_quote(k);
                wf_problem(c, v->pos, "%s: the matrix vector '%s' does not contain any values",
                           pk, kq);
                free(kq);
            } else if (v->kind == YNODE_SEQ || wf_has_expr(v)) {
                wf_check_tree(c, pk, v);
            } else {
                wf_problem_type(c, pk, v, "a sequence");
            }
            free(pk);
        }
    } else if (m && !ynode_is_null(m)) {
        wf_problem_type(c, p, m, "a mapping");
    }
    free(p);
    if (ff) {
        p = wf_path(path, "fail-fast");
        wf_check_bool(c, p, ff);
        j->fail_fast = ff;
        free(p);
    }
    if (mp) {
        p = wf_path(path, "max-parallel");
        wf_check_number(c, p, mp);
        j->max_parallel = mp;
        free(p);
    }
}

/* Reports the job with keys[index] as a repeat of keys[first] (for wf_each_dup()). */
static void
job_id_dup(struct wctx *c, const void *keys, size_t index, size_t first)
{
    const struct ynode *k = ((struct ynode *const *)keys)[index];
    const struct ynode *o = ((struct ynode *const *)keys)[first];
    char *kq = wf_quote(k), *oq = wf_quote(o);

    wf_problem(c, k->pos,
               "jobs: the job id '%s' is already defined as '%s' at line %d, column %d (job "
               "ids are case-insensitive)",
               kq, oq, o->pos.line, o->pos.col);
    free(kq);
    free(oq);
}

/* Job ids are case-insensitive (needs: and the needs/jobs contexts match them so), so `build`
 * and `BUILD` would name one job twice; GitHub's reader refuses it at the second key. */
void
wf_check_job_id_case(struct wctx *c, const struct ynode *jobs)
{
    struct id_ref *refs = xcalloc(jobs->n ? jobs->n : 1, sizeof *refs);
    size_t nr = 0;

    for (size_t i = 0; i < jobs->n; i++) {
        const struct ynode *k = jobs->keys[i];
        if (k->kind == YNODE_SCALAR && strlen(k->str) == k->len) {
            refs[nr].id = k->str;
            refs[nr].index = i;
            nr++;
        }
    }
    wf_each_dup(c, refs, nr, true, job_id_dup, jobs->keys);
    free(refs);
}

/* Reads needs: a job id or a sequence of them. */
static void
read_needs(struct wctx *c, const char *path, const struct ynode *n, struct wf_job *j)
{
    const struct ynode *const *list = &n;
    size_t count = 1;

    if (n->kind == YNODE_SEQ) {
        list = (const struct ynode *const *)n->items;
        count = n->n;
    } else if (n->kind != YNODE_SCALAR || ynode_is_null(n)) {
        wf_problem_type(c, path, n, "a job id or a sequence of job ids");
        return;
    }
    j->needs = xcalloc(count ? count : 1, sizeof *j->needs);
    for (size_t i = 0; i < count; i++) {
        const struct ynode *it = list[i];
        char *p = n->kind == YNODE_SEQ ? xasprintf("%s[%zu]", path, i) : xstrdup(path);
        if (it->kind != YNODE_SCALAR || ynode_is_null(it))
            wf_problem_type(c, p, it, "a job id");
        else if (!wf_check_no_expr(c, p, it)) {
            j->needs[j->n_needs].id = xstrdup(it->str);
            j->needs[j->n_needs].pos = it->pos;
            j->n_needs++;
        }
        free(p);
    }
}

/* Reads one job. */
void
wf_read_job(struct wctx *c, const struct ynode *key, struct ynode *n, struct wf_job *j)
{
    static const char *const keys[] = {
        "name", "runs-on", "needs", "if", "env", "defaults", "container", "services", "steps",
        "outputs", "timeout-minutes", "continue-on-error", "strategy", "environment",
        "permissions", "concurrency", "cancel-timeout-minutes", "uses", "with", "secrets",
        "snapshot", NULL};
    static const char *const env_keys[] = {"name", "url", "deployment", NULL};
    char *path = wf_path_key("jobs", key);
    struct ynode *v;
    char *p;

    j->id = xstrdup(key->str);
    j->pos = key->pos;
    if (n->kind != YNODE_MAP) {
        wf_problem_type(c, path, n, "a mapping");
        goto out;
    }
    wf_check_keys(c, path, n, keys);
    const struct expr_parse_opts *saved = wf_set_loc(c, &wf_loc_job_name);
    p = wf_path(path, "name");
    wf_get_str(c, p, ynode_get(n, "name"), true, &j->name);
    free(p);
    wf_set_loc(c, &wf_loc_job);
    if ((v = ynode_get(n, "if")) != NULL) {
        p = wf_path(path, "if");
        wf_set_loc(c, &wf_loc_job_if);
        wf_read_if(c, p, v, &j->if_);
        wf_set_loc(c, &wf_loc_job);
        free(p);
    }
    if ((v = ynode_get(n, "uses")) != NULL) {
        p = wf_path(path, "uses");
        wf_get_str(c, p, v, false, &j->uses);
        wf_problem(c, v->pos, "%s: reusable workflows (jobs with uses) are not supported yet", p);
        free(p);
    }
    if ((v = ynode_get(n, "runs-on")) != NULL) {
        p = wf_path(path, "runs-on");
        wf_set_loc(c, &wf_loc_job_name);
        check_runs_on(c, p, v);
        wf_set_loc(c, &wf_loc_job);
        j->runs_on = v;
        free(p);
    } else if (j->uses.v == NULL && ynode_get(n, "uses") == NULL) {
        wf_problem(c, n->pos, "%s: missing required key 'runs-on'", path);
    }
    if ((v = ynode_get(n, "needs")) != NULL) {
        p = wf_path(path, "needs");
        read_needs(c, p, v, j);
        free(p);
    }
    if ((v = ynode_get(n, "env")) != NULL) {
        p = wf_path(path, "env");
        wf_set_loc(c, &wf_loc_job_env);
        wf_check_scalar_map(c, p, v, true);
        wf_set_loc(c, &wf_loc_job);
        if (!ynode_is_null(v))
            j->env = v;
        free(p);
    }
    if ((v = ynode_get(n, "defaults")) != NULL) {
        p = wf_path(path, "defaults");
        wf_set_loc(c, &wf_loc_job_defaults);
        wf_read_defaults(c, p, v, true, &j->defaults_shell, &j->defaults_working_directory);
        wf_set_loc(c, &wf_loc_job);
        free(p);
    }
    if ((v = ynode_get(n, "container")) != NULL) {
        p = wf_path(path, "container");
        check_container(c, p, v, false);
        j->container = v;
        free(p);
    }
    if ((v = ynode_get(n, "services")) != NULL) {
        p = wf_path(path, "services");
        if (v->kind == YNODE_MAP) {
            wf_each_entry(c, p, v, check_service, NULL);
            j->services = v;
        } else if (!ynode_is_null(v)) {
            wf_problem_type(c, p, v, "a mapping");
        }
        free(p);
    }
    if ((v = ynode_get(n, "steps")) != NULL) {
        p = wf_path(path, "steps");
        wf_set_loc(c, &wf_loc_step);
        wf_read_steps(c, p, v, &j->steps, &j->n_steps);
        wf_set_loc(c, &wf_loc_job);
        free(p);
    }
    if ((v = ynode_get(n, "outputs")) != NULL) {
        p = wf_path(path, "outputs");
        wf_set_loc(c, &wf_loc_runner);
        wf_check_scalar_map(c, p, v, false);
        wf_set_loc(c, &wf_loc_job);
        if (v->kind == YNODE_MAP)
            j->outputs = v;
        free(p);
    }
    if ((v = ynode_get(n, "timeout-minutes")) != NULL) {
        p = wf_path(path, "timeout-minutes");
        wf_check_minutes(c, p, v);
        j->timeout_minutes = v;
        free(p);
    }
    if ((v = ynode_get(n, "cancel-timeout-minutes")) != NULL) {
        p = wf_path(path, "cancel-timeout-minutes");
        wf_check_number(c, p, v);
        free(p);
    }
    if ((v = ynode_get(n, "continue-on-error")) != NULL) {
        p = wf_path(path, "continue-on-error");
        wf_check_bool(c, p, v);
        j->continue_on_error = v;
        free(p);
    }
    if ((v = ynode_get(n, "strategy")) != NULL) {
        p = wf_path(path, "strategy");
        wf_set_loc(c, &wf_loc_strategy);
        read_strategy(c, p, v, j);
        wf_set_loc(c, &wf_loc_job);
        free(p);
    }
    if ((v = ynode_get(n, "environment")) != NULL) {
        p = wf_path(path, "environment");
        if (v->kind == YNODE_MAP) {
            const struct ynode *url = ynode_get(v, "url"), *name = ynode_get(v, "name");
            wf_check_keys(c, p, v, env_keys);
            if (name) {
                char *pn = wf_path(p, "name");
                wf_check_tree(c, pn, name);
                free(pn);
            }
            if (url) {
                char *pu = wf_path(p, "url");
                wf_set_loc(c, &wf_loc_env_url);
                wf_check_tree(c, pu, url);
                wf_set_loc(c, &wf_loc_job);
                free(pu);
            }
            /* deployment: a boolean, no expressions */
            const struct ynode *dep = ynode_get(v, "deployment");
            if (dep) {
                char *pd = wf_path(p, "deployment");
                wf_check_tree(c, pd, dep);
                free(pd);
            }
        } else if (v->kind == YNODE_SCALAR) {
            wf_check_template(c, p, v);
        } else {
            wf_problem_type(c, p, v, "a string or a mapping");
        }
        j->environment = v;
        free(p);
    }
    if ((v = ynode_get(n, "permissions")) != NULL) {
        p = wf_path(path, "permissions");
        wf_check_permissions(c, p, v);
        j->permissions = v;
        free(p);
    }
    if ((v = ynode_get(n, "concurrency")) != NULL) {
        p = wf_path(path, "concurrency");
        wf_check_concurrency(c, p, v);
        j->concurrency = v;
        free(p);
    }
    if ((v = ynode_get(n, "with")) != NULL) {
        p = wf_path(path, "with");
        wf_check_scalar_map(c, p, v, true);
        free(p);
    }
    if ((v = ynode_get(n, "secrets")) != NULL) {
        p = wf_path(path, "secrets");
        wf_set_loc(c, &wf_loc_job_env);
        if (v->kind == YNODE_SCALAR && strcmp(v->str, "inherit") != 0) {
            char *vq = wf_quote(v);
            wf_problem(c, v->pos, "%s: unexpected value '%s' (expected 'inherit' or a mapping)", p,
                       vq);
            free(vq);
        } else if (v->kind != YNODE_SCALAR) {
            wf_check_scalar_map(c, p, v, false);
        }
        free(p);
    }
    wf_set_loc(c, &wf_loc_job);
    if ((v = ynode_get(n, "snapshot")) != NULL) {
        p = wf_path(path, "snapshot");
        wf_check_tree(c, p, v);
        free(p);
    }
    wf_set_loc(c, saved);
out:
    free(path);
}

/* ------------------------------------------------------------------------------------------ */
/* needs graph                                                                                */

struct job_ref {
    const char *id;
    size_t index;
};

/* Orders job ids by text (for qsort and bsearch). */
static int
job_ref_cmp(const void *a, const void *b)
{
    const struct job_ref *x = a, *y = b;

    return strcmp(x->id, y->id);
}

/* Returns the index of the job with that id via the sorted refs, or SIZE_MAX. */
static size_t
job_index(const struct job_ref *refs, size_t n, const char *id)
{
    struct job_ref key = {.id = id};
    const struct job_ref *r = bsearch(&key, refs, n, sizeof *refs, job_ref_cmp);

    return r ? r->index : SIZE_MAX;
}

/* Reports needs naming unknown jobs and every cycle (once per back edge found). */
void
wf_check_needs(struct wctx *c, const struct wf_workflow *w)
{
    size_t n = w->n_jobs;
    struct job_ref *refs = xcalloc(n ? n : 1, sizeof *refs);
    int *color = xcalloc(n ? n : 1, sizeof *color); /* 0 new, 1 on the stack, 2 done */
    size_t *stack = xcalloc(n ? n : 1, sizeof *stack);
    size_t *next = xcalloc(n ? n : 1, sizeof *next); /* next need to visit, per job */
    size_t *edge_base = xcalloc(n ? n : 1, sizeof *edge_base); /* first edge index per job */
    size_t nedges = 0;
    bool *edge_done;

    for (size_t i = 0; i < n; i++) {
        edge_base[i] = nedges;
        nedges += w->jobs[i].n_needs;
    }
    edge_done = xcalloc(nedges ? nedges : 1, sizeof *edge_done);

    for (size_t i = 0; i < n; i++) {
        refs[i].id = w->jobs[i].id;
        refs[i].index = i;
    }
    qsort(refs, n, sizeof *refs, job_ref_cmp);
    for (size_t i = 0; i < n; i++) {
        const struct wf_job *j = &w->jobs[i];
        for (size_t k = 0; k < j->n_needs; k++) {
            if (job_index(refs, n, j->needs[k].id) != SIZE_MAX)
                continue;
            char *a = ydoc_quote(j->id, strlen(j->id));
            char *b = ydoc_quote(j->needs[k].id, strlen(j->needs[k].id));
            wf_problem(c, j->needs[k].pos, "jobs.%s.needs: job '%s' depends on unknown job '%s'", a,
                       a, b);
            free(a);
            free(b);
        }
    }
    /* Iterative depth-first search, so a long chain of jobs cannot exhaust the C stack. */
    for (size_t root = 0; root < n; root++) {
        size_t sp = 0;
        if (color[root] != 0)
            continue;
        stack[sp++] = root;
        color[root] = 1;
        next[root] = 0;
        while (sp > 0) {
            size_t cur = stack[sp - 1];
            const struct wf_job *j = &w->jobs[cur];
            if (next[cur] >= j->n_needs) {
                color[cur] = 2;
                sp--;
                continue;
            }
            size_t to = job_index(refs, n, j->needs[next[cur]++].id);
            if (to == SIZE_MAX || color[to] == 2)
                continue;
            if (color[to] == 0) {
                color[to] = 1;
                next[to] = 0;
                stack[sp++] = to;
                continue;
            }
            /* A back edge cur -> to: the cycle is the stack from `to` up to cur. Like GitHub,
             * report every edge of it (once), each naming the cycle from that edge's job. */
            size_t from = sp - 1;
            while (stack[from] != to)
                from--;
            size_t m = sp - from;
            for (size_t e = 0; e < m; e++) {
                size_t job = stack[from + e];
                size_t need = next[job] - 1;
                if (edge_done[edge_base[job] + need])
                    continue;
                edge_done[edge_base[job] + need] = true;
                if (c->n >= WF_MAX_DIAGS) {
                    c->dropped++; /* do not spend time formatting what is dropped */
                    continue;
                }
                struct buf b = BUF_INIT;
                for (size_t k = 0; k <= m; k++) {
                    const char *id = w->jobs[stack[from + (e + k) % m]].id;
                    char *idq = ydoc_quote(id, strlen(id));
                    buf_printf(&b, "%s'%s'", k ? " -> " : "", idq);
                    free(idq);
                }
                char *jq = ydoc_quote(w->jobs[job].id, strlen(w->jobs[job].id));
                wf_problem(c, w->jobs[job].needs[need].pos,
                           "jobs.%s.needs: job %s forms a cycle", jq, buf_str(&b));
                free(jq);
                buf_free(&b);
            }
        }
    }
    free(edge_done);
    free(edge_base);
    free(next);
    free(stack);
    free(color);
    free(refs);
}

/* Adds "file:line:col: path: message" for the capabilities literal options n adds that are
 * not in allowed. */
static void
caps_of(const struct wf_workflow *w, const struct ynode *n, const char *path,
        char *const *allowed, struct wf_diag *diag)
{
    struct dockeropts o;
    struct err e = {0};

    if (n == NULL || n->kind != YNODE_SCALAR || wf_has_expr(n) || ynode_is_null(n))
        return;
    if (dockeropts_parse(n->str, path, DOCKEROPTS_SKIP_UNKNOWN, &o, &e) == 0 &&
        dockeropts_check_caps(&o, allowed, path, &e) < 0) {
        diag->msgs = xreallocarray(diag->msgs, diag->n + 1, sizeof *diag->msgs);
        diag->msgs[diag->n++] = xasprintf("%s:%d:%d: %s", w->file, n->pos.line, n->pos.col,
                                          e.msg);
    }
    dockeropts_free(&o);
}

int
wf_check_caps(const struct wf_workflow *w, char *const *allowed, struct wf_diag *diag,
              struct err *e)
{
    size_t before = diag->n;

    for (size_t i = 0; i < w->n_jobs; i++) {
        const struct wf_job *j = &w->jobs[i];
        const struct ynode *sv = j->services;
        char *p;

        if (j->container && j->container->kind == YNODE_MAP) {
            p = xasprintf("jobs.%s.container.options", j->id);
            caps_of(w, ynode_get(j->container, "options"), p, allowed, diag);
            free(p);
        }
        for (size_t k = 0; sv && sv->kind == YNODE_MAP && k < sv->n; k++) {
            if (sv->items[k]->kind != YNODE_MAP)
                continue;
            p = xasprintf("jobs.%s.services.%s.options", j->id, sv->keys[k]->str);
            caps_of(w, ynode_get(sv->items[k], "options"), p, allowed, diag);
            free(p);
        }
    }
    if (diag->n == before)
        return 0;
    return err_set(e, ERR_INVALID, "%s", diag->msgs[before]);
}
