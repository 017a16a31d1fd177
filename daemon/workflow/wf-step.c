/* wf-step.c: steps, of a job or of a composite action (wf_parse_steps()): their keys, run vs
 * uses and the forms of uses, ids and their duplicates. */
#include "wf-int.h"

#include "runner/xalloc.h"

#include <stdlib.h>
#include <string.h>

/* Classifies a step's uses and reports forms that are not valid for a step. */
static void
classify_uses(struct wctx *c, const char *path, const struct ynode *n, struct wf_step *s)
{
    const char *u = n->str;

    if (strncmp(u, "docker://", 9) == 0) {
        s->kind = WF_STEP_USES_DOCKER;
        if (u[9] == '\0')
            wf_problem(c, n->pos, "%s: expected an image after 'docker://'", path);
        return;
    }
    bool reusable = false;
    size_t ulen = strlen(u);
    if (strncmp(u, "./.github/workflows", 19) == 0 &&
        ((ulen > 4 && strcmp(u + ulen - 4, ".yml") == 0) ||
         (ulen > 5 && strcmp(u + ulen - 5, ".yaml") == 0)))
        reusable = true;
    if (strncmp(u, "./", 2) != 0 && strstr(u, ".github/workflows") &&
        (strstr(u, ".yml@") || strstr(u, ".yaml@")))
        reusable = true;
    if (reusable) {
        wf_problem(c, n->pos, "%s: a reusable workflow cannot be used as a step (use it as a job's "
                        "'uses')", path);
        s->kind = WF_STEP_USES;
        return;
    }
    if (strncmp(u, "./", 2) == 0) {
        s->kind = WF_STEP_USES_LOCAL;
        return;
    }
    s->kind = WF_STEP_USES;
    if (wf_has_expr(n))
        return; /* the Gitea fork interpolates uses; check the result at run time */
    const char *at = strrchr(u, '@');
    const char *slash = strchr(u, '/');
    if (at == NULL || slash == NULL || slash == u || slash > at || at[1] == '\0' ||
        slash + 1 == at) {
        char *v = wf_quote(n);
        wf_problem(c, n->pos,
                   "%s: unexpected value '%s' (expected 'owner/repo[/path]@ref', './path' or "
                   "'docker://image')",
                   path, v);
        free(v);
    }
}

/* Reads one step. */
static void
read_step(struct wctx *c, const char *path, struct ynode *n, struct wf_step *s)
{
    static const char *const keys[] = {"id", "name", "if", "run", "shell", "working-directory",
                                       "uses", "with", "env", "continue-on-error",
                                       "timeout-minutes", NULL};
    struct ynode *v;
    char *p;

    s->pos = n->pos;
    if (n->kind != YNODE_MAP) {
        if (ynode_is_null(n))
            wf_problem(c, n->pos, "%s: a step needs either 'run' or 'uses'", path);
        else
            wf_problem_type(c, path, n, "a mapping");
        return;
    }
    wf_check_keys(c, path, n, keys);
#define STEP_STR(key, field, expr)                                                                 \
    do {                                                                                           \
        p = wf_path(path, key);                                                                    \
        wf_get_str(c, p, ynode_get(n, key), expr, &s->field);                                      \
        free(p);                                                                                   \
    } while (0)
    STEP_STR("id", id, false);
    STEP_STR("name", name, true);
    STEP_STR("run", run, true);
    STEP_STR("shell", shell, true);
    STEP_STR("working-directory", working_directory, true);
    STEP_STR("uses", uses, true);
#undef STEP_STR
    if ((v = ynode_get(n, "if")) != NULL) {
        /* Inside a workflow job the if may call the status functions; in an action file (no
         * location) everything stays allowed. */
        const struct expr_parse_opts *saved =
            c->loc == &wf_loc_step ? wf_set_loc(c, &wf_loc_step_if) : c->loc;
        p = wf_path(path, "if");
        wf_read_if(c, p, v, &s->if_);
        wf_set_loc(c, saved);
        free(p);
    }
    if (s->id.v && !wf_has_expr(ynode_get(n, "id")) && !wf_valid_id(s->id.v, strlen(s->id.v))) {
        char *idq = ydoc_quote(s->id.v, strlen(s->id.v));
        wf_problem(c, s->id.pos,
                   "%s.id: the id '%s' is invalid; ids must start with a letter or '_' and contain "
                   "only letters, digits, '-' and '_'",
                   path, idq);
        free(idq);
    }
    if ((v = ynode_get(n, "with")) != NULL) {
        p = wf_path(path, "with");
        wf_check_scalar_map(c, p, v, false);
        if (v->kind == YNODE_MAP)
            s->with = v;
        free(p);
    }
    if ((v = ynode_get(n, "env")) != NULL) {
        p = wf_path(path, "env");
        wf_check_scalar_map(c, p, v, true);
        if (!ynode_is_null(v))
            s->env = v;
        free(p);
    }
    if ((v = ynode_get(n, "continue-on-error")) != NULL) {
        p = wf_path(path, "continue-on-error");
        wf_check_bool(c, p, v);
        s->continue_on_error = v;
        free(p);
    }
    if ((v = ynode_get(n, "timeout-minutes")) != NULL) {
        p = wf_path(path, "timeout-minutes");
        wf_check_minutes(c, p, v);
        s->timeout_minutes = v;
        free(p);
    }
    const struct ynode *run = ynode_get(n, "run"), *uses = ynode_get(n, "uses");
    if (run && ynode_is_null(run))
        run = NULL;
    if (uses && ynode_is_null(uses))
        uses = NULL;
    if (run && uses) {
        wf_problem(c, n->pos, "%s: a step cannot have both 'run' and 'uses'", path);
    } else if (run == NULL && uses == NULL) {
        wf_problem(c, n->pos, "%s: a step needs either 'run' or 'uses'", path);
    } else if (run) {
        s->kind = WF_STEP_RUN;
    } else if (uses->kind == YNODE_SCALAR) {
        p = wf_path(path, "uses");
        classify_uses(c, p, uses, s);
        free(p);
    }
}

/* The steps being read, for step_id_dup(). */
struct steps_of {
    const struct wf_step *steps;
    const char *path;
};

/* Reports the step at index as a repeat of the id of the step at first. */
static void
step_id_dup(struct wctx *c, const void *arg, size_t index, size_t first)
{
    const struct steps_of *so = arg;
    const struct wf_step *s = &so->steps[index];
    char *idq = ydoc_quote(s->id.v, strlen(s->id.v));

    wf_problem(c, s->id.pos, "%s[%zu].id: the step id '%s' is already used by %s[%zu]", so->path,
               index, idq, so->path, first);
    free(idq);
}

/* Reads steps into a new array (*out, *nout) and reports duplicate step ids; generates eff_id
 * for steps without one. Shared by job steps and composite actions' runs.steps. */
void
wf_read_steps(struct wctx *c, const char *path, struct ynode *n, struct wf_step **out,
              size_t *nout)
{
    struct wf_step *steps;

    if (n->kind != YNODE_SEQ) {
        if (!ynode_is_null(n))
            wf_problem_type(c, path, n, "a sequence");
        return;
    }
    steps = xcalloc(n->n ? n->n : 1, sizeof *steps);
    *out = steps;
    *nout = n->n;
    for (size_t i = 0; i < n->n; i++) {
        struct wf_step *s = &steps[i];
        char *p = xasprintf("%s[%zu]", path, i);
        s->index = (int)i;
        read_step(c, p, n->items[i], s);
        free(p);
        s->eff_id = s->id.v ? xstrdup(s->id.v) : xasprintf("%zu", i);
    }
    struct id_ref *refs = xcalloc(n->n ? n->n : 1, sizeof *refs);
    size_t nr = 0;
    for (size_t i = 0; i < n->n; i++) {
        if (steps[i].id.v) {
            refs[nr].id = steps[i].id.v;
            refs[nr].index = i;
            nr++;
        }
    }
    struct steps_of so = {steps, path};
    wf_each_dup(c, refs, nr, false, step_id_dup, &so);
    free(refs);
}

/* Frees the strings of each step, then the array; the nodes stay with their tree. */
void
wf_steps_free(struct wf_step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct wf_step *s = &steps[i];
        free(s->id.v);
        free(s->eff_id);
        free(s->name.v);
        free(s->if_.v);
        free(s->run.v);
        free(s->shell.v);
        free(s->working_directory.v);
        free(s->uses.v);
    }
    free(steps);
}
