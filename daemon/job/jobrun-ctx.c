/* jobrun-ctx.c: what a job run knows of where it is (jobrun-int.h): the step being run and
 * its file and id, the contexts expressions see, evaluating a step's strings, the answers to
 * hashFiles() (computed beforehand by jobrun-hash.c), and a step's env: object. */
#include "jobrun-int.h"

#include "action.h"
#include "expr.h"
#include "runner/xalloc.h"
#include "stepenv.h"

#include <stdlib.h>
#include <string.h>

json_t *
jr_jstring(const char *s)
{
    json_t *v = json_string(s);

    return v ? v : json_string("");
}

const char *
jr_cur_id(struct jobrun *jr)
{
    if (jr->in_post || jr->cur >= jr->wj->n_steps) /* a pre or post stage: its step's id */
        return jr->post_id ? jr->post_id : "post";
    if (jr->frame)
        return jr->frame->cur_id;
    return jr->wj->steps[jr->cur].eff_id;
}

const struct wf_step *
jr_step(struct jobrun *jr)
{
    return jr->frame ? &jr->frame->steps[jr->frame->cur] : &jr->wj->steps[jr->cur];
}

const char *
jr_file(struct jobrun *jr)
{
    return jr->frame ? jr->frame->act->file : jr->file;
}

const char *
jr_job_status(struct jobrun *jr)
{
    /* In a composite action's main steps, success() and failure() are about that action's
     * own steps only (github.action_status), not the job's or an enclosing action's: one
     * called with if: always() after a failure runs its steps (GitHub's ADR 1438). */
    bool failed = jr->frame && !jr->in_post ? jr->frame->failed : jr->job_failed;

    return jr->cancelled ? "cancelled" : failed ? "failure" : "success";
}

/* Returns a new contexts object for the current point of the job. */
json_t *
jr_contexts(struct jobrun *jr, json_t *env)
{
    json_t *c = json_copy(jr->base), *job = json_object();
    json_t *gh = json_copy(json_object_get(jr->base, "github"));

    if (jr->x && json_is_object(jr->x->job_ctx))
        json_object_update(job, jr->x->job_ctx);
    json_object_set_new(job, "status", json_string(jr_job_status(jr)));
    json_object_set_new(c, "job", job);
    json_object_set(c, "steps", jr->frame ? jr->frame->steps_ctx : jr->steps);
    json_object_set(c, "runner", jr->runner);
    if (env) {
        json_object_set(c, "env", env);
    } else if (jr->frame) {
        /* Inside a composite action, `env` is what its steps' processes get: the job env with
         * the calling step's env: (and enclosing callers') over it, as in act and GitHub; also
         * for if:, with: and the action's outputs. */
        json_t *merged = json_copy(jr->job_env);
        json_object_update(merged, jr->frame->env);
        json_object_set_new(c, "env", merged);
    } else {
        json_object_set(c, "env", jr->job_env);
    }
    json_object_set_new(gh, "workspace", json_string(jr->x->workspace ? jr->x->workspace : ""));
    if (jr->phase != PH_SETUP && jr->cur < jr->wj->n_steps)
        json_object_set_new(gh, "action", json_string(jr_cur_id(jr)));
    if (jr->frame) {
        /* A composite action sees its own inputs and no secrets
         * (doc/workflow-semantics.md §12.6). */
        json_object_set(c, "inputs", jr->frame->inputs);
        json_object_set_new(c, "secrets", json_object());
        json_object_set_new(gh, "action_path", json_string(jr->frame->action_path));
        json_object_set_new(gh, "action_status",
                            json_string(jr->frame->failed ? "failure" : "success"));
        if (jr->frame->action_repo)
            json_object_set_new(gh, "action_repository", json_string(jr->frame->action_repo));
        if (jr->frame->action_ref)
            json_object_set_new(gh, "action_ref", json_string(jr->frame->action_ref));
    }
    json_object_set_new(c, "github", gh);
    return c;
}

/* hashFiles(): evaluation is synchronous, hashing is not. A step that mentions hashFiles is
 * first evaluated in collect mode, which records every pattern list asked for; the agent then
 * hashes them where the workspace is (next to the steps), and the step is evaluated for real
 * with the results. */
static int
jr_hash_files(void *arg, const char *const *patterns, size_t n, char **out, struct err *e)
{
    struct jobrun *jr = arg;
    json_t *key = json_array();
    char *k;

    *out = NULL;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(key, jr_jstring(patterns[i]));
    k = json_dumps(key, JSON_COMPACT);
    const char *hit = json_string_value(json_object_get(jr->hashes, k));
    if (hit) {
        *out = xstrdup(hit);
    } else if (jr->hash_collect) {
        json_array_append(jr->hash_todo, key);
        json_object_set_new(jr->hashes, k, json_null()); /* asked for once */
        *out = xstrdup("");
    } else {
        err_set(e, ERR_INVALID, "hashFiles(%s): its arguments changed between evaluations", k);
    }
    json_decref(key);
    free(k);
    return *out ? 0 : ERR_INVALID;
}

struct expr_env
jr_expr_env(struct jobrun *jr, json_t *ctx)
{
    return (struct expr_env){.contexts = ctx, .job_status = jr_job_status(jr),
                             .hash_files = jr_hash_files, .arg = jr};
}

/* Evaluates a string node; NULL when absent. */
int
jr_eval_str(struct jobrun *jr, const struct wf_str *s, json_t *ctx, char **out, struct err *e)
{
    struct expr_env ee = jr_expr_env(jr, ctx);

    *out = NULL;
    if (s->v == NULL)
        return 0;
    if (expr_interpolate(s->v, &ee, out, e) < 0)
        return err_prefix(e, "%s:%d:%d: ", jr_file(jr), s->pos.line, s->pos.col);
    return 0;
}

char *
jr_display_name(struct jobrun *jr, const struct wf_step *s, json_t *ctx)
{
    char *name = NULL;
    struct err e = {0};

    if (s->name.v && jr_eval_str(jr, &s->name, ctx, &name, &e) == 0 && name && *name)
        return name;
    free(name);
    if (s->uses.v)
        return xasprintf("Run %s", s->uses.v);
    if (s->run.v) {
        size_t l = strcspn(s->run.v, "\n");
        return xasprintf("Run %.*s", (int)(l > 80 ? 80 : l), s->run.v);
    }
    return xstrdup(s->eff_id);
}

/* Prepares and starts the current run step (script first, RUN when it is written). */
json_t *
jr_strv_json(char *const *v)
{
    json_t *a = json_array();

    for (size_t i = 0; v && v[i]; i++)
        json_array_append_new(a, jr_jstring(v[i]));
    return a;
}

char **
jr_json_strv(const json_t *a)
{
    size_t n = json_array_size(a), i;
    char **v = xcalloc(n + 1, sizeof *v);

    for (i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        v[i] = xstrdup(s ? s : "");
    }
    return v;
}

json_t *
jr_step_env(struct jobrun *jr, json_t *own, bool with_inputs)
{
    json_t *env = json_object();

    if (jr->frame) {
        json_object_update(env, jr->frame->env);
        if (with_inputs) {
            const char *k;
            json_t *v;
            json_object_foreach(jr->frame->inputs, k, v) {
                char *name = stepenv_input_name(k);
                if (json_is_string(v))
                    json_object_set(env, name, v);
                free(name);
            }
        }
    }
    if (json_is_object(own))
        json_object_update(env, own);
    return env;
}
