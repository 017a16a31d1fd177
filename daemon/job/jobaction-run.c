/* jobaction-run.c: running an action once it is read (jobaction-int.h; doc/workflow-semantics.md
 * §12, §9.5): a node action's script through the agent (or in runnerd.node_image), a docker
 * action's container, a composite action's nested steps in a frame of their own; and the pre
 * and post stages (the post stages in reverse order, after the last step). */
#include "jobaction-int.h"

#include "dockeropts.h"
#include "expr.h"
#include "runner/xalloc.h"
#include "shell.h"
#include "stepenv.h"
#include "yeval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_input_env(json_t *env, json_t *inputs);
static void add_state_env(struct jobrun *jr, json_t *env, const char *id);
static void pre_stage(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with,
                      json_t *inputs);
static void docker_stage(struct jobrun *jr, json_t *p);

/* ---------------------------------------------------------------- running an action */

/* An input's name as the inputs context keys it: ASCII lower case. New string. */
static char *
lower_dup(const char *s)
{
    char *l = xstrdup(s);

    for (char *p = l; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    return l;
}

/* A remote action's owner/repo (GITHUB_ACTION_REPOSITORY, not the whole reference), or NULL.
 * New string. */
static char *
action_repo(const struct jr_action *a)
{
    return a->ref.kind == ACTION_REF_REMOTE ? xasprintf("%s/%s", a->ref.owner, a->ref.repo)
                                            : NULL;
}

/* The environment of a node action's stage in the job container: the step's, INPUT_*,
 * STATE_* and the action's GITHUB_ACTION_*. New object. */
static json_t *
node_env(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    struct jr_action *a = jr->act;
    char *repo = action_repo(a);
    struct stepenv_in in = {
        .base_env = jr->x->base_env, .job_env = jr->job_env,
        .container_env = jr->container_env, .github = json_object_get(ctx, "github"),
        .step_id = jr_cur_id(jr), .action_path = a->dir, .action_repository = repo,
        .action_ref = a->ref.kind == ACTION_REF_REMOTE ? a->ref.ref : NULL,
        .workspace = jr->x->workspace, .label = jr->label,
        .step_env = json_is_object(step_env) ? step_env : NULL,
        .with = json_is_object(with) ? with : NULL, .uses = true,
        .extra_path = jr->extra_path, .base_path = jr->x->base_path,
        .file_dir = jr->x->file_dir, .gitea = jr->gitea,
    };
    json_t *env = stepenv_build(&in);

    free(repo);
    add_input_env(env, inputs);
    add_state_env(jr, env, jr_cur_id(jr));
    return env;
}

/* The inputs context of the action: with values, then declared defaults (interpolated). */
static json_t *
action_inputs(struct jobrun *jr, json_t *ctx, json_t *with, struct err *e)
{
    struct action *act = jr->act->act;
    struct expr_env ee = jr_expr_env(jr, ctx);
    json_t *in = json_object();
    const char *k;
    json_t *v;

    json_object_foreach(with, k, v) {
        char *lk = lower_dup(k);
        json_object_set(in, lk, v);
        free(lk);
    }
    for (size_t i = 0; i < act->n_inputs; i++) {
        char *lk = lower_dup(act->inputs[i].id), *val = NULL;
        if (json_object_get(in, lk) == NULL && act->inputs[i].def) {
            if (expr_interpolate(act->inputs[i].def, &ee, &val, e) < 0) {
                err_prefix(e, "%s: inputs.%s.default: ", act->file, act->inputs[i].id);
                free(lk);
                json_decref(in);
                return NULL;
            }
            json_object_set_new(in, lk, json_string(val));
            free(val);
        }
        free(lk);
    }
    return in;
}

/* INPUT_* for every input (the with keys already are in the step env). */
static void
add_input_env(json_t *env, json_t *inputs)
{
    const char *k;
    json_t *v;

    json_object_foreach(inputs, k, v) {
        char *name = stepenv_input_name(k);
        if (json_object_get(env, name) == NULL && json_is_string(v))
            json_object_set(env, name, v);
        free(name);
    }
}

static void
add_state_env(struct jobrun *jr, json_t *env, const char *id)
{
    const char *k;
    json_t *v;

    json_object_foreach(json_object_get(jr->state, id), k, v) {
        char *name = xasprintf("STATE_%s", k);
        json_object_set(env, name, v);
        free(name);
    }
}

static char **
node_argv(const char *dir, const char *script)
{
    char **argv = xcalloc(3, sizeof *argv);

    argv[0] = xstrdup("node");
    argv[1] = xasprintf("%s/%s", dir, script);
    return argv;
}

/* A stage run as a container (docker_stage()): {step, id, name, image, entry, args, env,
 * with, extra}; args, step_env, with and extra are copied or borrowed. New object. */
static json_t *
docker_stage_desc(struct jobrun *jr, const char *name, const char *image, const char *entry,
                  char *const *args, json_t *step_env, json_t *with, json_t *extra)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:O, s:O, s:O}", "step",
                     (json_int_t)jr->cur, "id", jr_cur_id(jr), "name", name, "image", image,
                     "entry", entry, "args", jr_strv_json(args),
                     "env", step_env ? step_env : json_null(), "with", with ? with : json_null(),
                     "extra", extra ? extra : json_null());
}

/* Queues the current action's post stage (desc: a docker_stage_desc() when it has "image",
 * else an agent run for run_stage()), under its post-if. */
static void
add_post(struct jobrun *jr, json_t *desc)
{
    const char *cond = jr->act->act->post_if;

    json_object_set_new(desc, "if", json_string(cond ? cond : "always()"));
    json_array_append_new(jr->posts, desc);
}

/* A node action's stage (script) as a container of runnerd.node_image, for a job image
 * without node: {step, id, name, image, entry, args, env, with, extra} for docker_stage() or
 * the main stage. New object. */
static json_t *
node_container(struct jobrun *jr, const char *name, json_t *step_env, json_t *with,
               json_t *inputs, const char *script)
{
    struct jr_action *a = jr->act;
    json_t *extra = json_object();

    add_input_env(extra, inputs);
    add_state_env(jr, extra, jr_cur_id(jr));
    json_object_set_new(extra, "GITHUB_ACTION_PATH", json_string(a->dir ? a->dir : ""));
    if (a->ref.kind == ACTION_REF_REMOTE) {
        char *repo = action_repo(a);
        json_object_set_new(extra, "GITHUB_ACTION_REPOSITORY", json_string(repo));
        json_object_set_new(extra, "GITHUB_ACTION_REF", json_string(a->ref.ref));
        free(repo);
    }
    char *args[] = {xasprintf("%s/%s", a->dir, script), NULL};
    json_t *p = docker_stage_desc(jr, name, jr->node_image, "node", args, step_env, with, extra);
    free(args[0]);
    json_decref(extra);
    return p;
}

/* False (the step failed) when node actions cannot run here: the job image has no node and
 * no runnerd.node_image is configured. */
static bool
node_available(struct jobrun *jr)
{
    if (!jr->x->container || jr->x->node || jr->node_image)
        return true;
    act_failf(jr, "uses: %s: the job image has no node for this %s action; use an image with "
                  "node, or set runnerd.node_image", jr->act->uses, jr->act->act->using_str);
    return false;
}

static bool
node_in_container(struct jobrun *jr)
{
    return jr->x->container && !jr->x->node && jr->node_image;
}

static void
node_main(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = jr->act;

    if (!node_available(jr))
        return;
    if (node_in_container(jr)) {
        const char *name = jr->cur_name ? jr->cur_name : s->eff_id;
        json_t *m = node_container(jr, name, step_env, with, inputs, a->act->main);
        if (a->act->post)
            add_post(jr, node_container(jr, name, step_env, with, inputs, a->act->post));
        char **args = xcalloc(2, sizeof *args);
        args[0] = xstrdup(json_string_value(json_array_get(json_object_get(m, "args"), 0)));
        act_free(jr->act);
        jr->act = NULL;
        jr_container_step(jr, ctx, jr->node_image, "node", args, step_env, with,
                          json_object_get(m, "extra"));
        json_decref(m);
        return;
    }
    json_decref(jr->cur_env);
    jr->cur_env = node_env(jr, ctx, step_env, with, inputs);
    if (a->act->post)
        add_post(jr, json_pack("{s:s, s:s, s:O, s:s, s:s, s:s}", "id", jr_cur_id(jr),
                               "name", jr->cur_name ? jr->cur_name : s->eff_id,
                               "env", jr->cur_env, "cwd", jr->x->workspace, "dir", a->dir,
                               "script", a->act->post));
    shell_argv_free(jr->argv);
    jr->argv = node_argv(a->dir, a->act->main);
    free(jr->cwd);
    jr->cwd = xstrdup(jr->x->workspace);
    jr->timeout_ms = 0;
    act_free(jr->act); /* from here on it is an ordinary running step */
    jr->act = NULL;
    jr->phase = PH_RUNNING;
    jr->core->run_script(jr);
}

/* A docker action's container, for any of its stages (§12.5). */
struct docker_run {
    char *image;
    char **args;      /* with.args (shell words), else runs.args (interpolated), or NULL */
    json_t *extra;    /* runs.env, INPUT_*, STATE_*, GITHUB_ACTION_PATH */
};

static void
docker_run_free(struct docker_run *d)
{
    free(d->image);
    dockeropts_words_free(d->args);
    json_decref(d->extra);
}

/* Fills d for the action jr->act (its image built already when from a Dockerfile); on error
 * the step (or the pre stage's look) fails. */
static int
docker_prepare(struct jobrun *jr, json_t *ctx, json_t *with, json_t *inputs,
               struct docker_run *d)
{
    struct jr_action *a = jr->act;
    struct action *act = a->act;
    json_t *ictx = json_copy(ctx);
    struct expr_env ee = jr_expr_env(jr, ictx);
    struct err e = {0};
    size_t nargs = 0;
    int rc = -1;

    *d = (struct docker_run){.extra = json_object()};
    json_object_set(ictx, "inputs", inputs);
    d->image = xstrdup(a->image_id ? a->image_id : act->image + strlen("docker://"));
    char *wargs = act_with_str(with, "args");
    if (wargs) {
        rc = dockeropts_split(wargs, "with.args", &d->args, &nargs, &e);
        free(wargs);
        if (rc < 0) {
            act_fail(jr, e.msg);
            goto out;
        }
    } else if (act->args && act->args[0]) {
        size_t n = 0;
        while (act->args[n])
            n++;
        d->args = xcalloc(n + 1, sizeof *d->args);
        for (size_t i = 0; i < n; i++)
            if (expr_interpolate(act->args[i], &ee, &d->args[i], &e) < 0) {
                d->args[i] = NULL;
                act_failf(jr, "%s: runs.args: %s", act->file, e.msg);
                goto out;
            }
    }
    if (act->env) {
        json_t *env = NULL;
        if (yeval_node(act->file, act->env, &ee, &env, &e) < 0) {
            act_fail(jr, e.msg);
            goto out;
        }
        if (json_is_object(env))
            json_object_update(d->extra, env);
        json_decref(env);
    }
    add_input_env(d->extra, inputs);
    add_state_env(jr, d->extra, jr_cur_id(jr));
    json_object_set_new(d->extra, "GITHUB_ACTION_PATH", json_string(a->dir ? a->dir : ""));
    rc = 0;
out:
    json_decref(ictx);
    return rc;
}

static void
docker_main(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    struct jr_action *a = jr->act;
    struct action *act = a->act;
    struct docker_run d;
    char *entry;

    if (docker_prepare(jr, ctx, with, inputs, &d) < 0) {
        docker_run_free(&d);
        return;
    }
    entry = act_with_str(with, "entrypoint");
    if (entry == NULL && act->entrypoint)
        entry = xstrdup(act->entrypoint);
    if (act->post_entrypoint) /* the same container with runs.post-entrypoint (§9.5) */
        add_post(jr, docker_stage_desc(jr, jr->cur_name ? jr->cur_name : jr_cur_id(jr),
                                       d.image, act->post_entrypoint, d.args, step_env, with,
                                       d.extra));
    act_free(jr->act);
    jr->act = NULL;
    jr_container_step(jr, ctx, d.image, entry, d.args, step_env, with, d.extra);
    d.args = NULL; /* taken */
    docker_run_free(&d);
    free(entry);
}

/* A composite action: its nested steps run in a frame of their own (§12.6), with the declared
 * inputs only. */
static void
composite_main(struct jobrun *jr, json_t *step_env, json_t *inputs)
{
    struct jr_action *a = jr->act;
    struct action *act = a->act;

    if (jr_frame_depth(jr) >= JR_COMPOSITE_MAX_DEPTH) {
        act_failf(jr, "uses: %s: composite actions nest deeper than %d levels", a->uses,
                  JR_COMPOSITE_MAX_DEPTH);
        return;
    }
    json_t *declared = json_object();
    char *repo = action_repo(a);
    char *uses = xstrdup(a->uses), *dir = xstrdup(a->dir ? a->dir : "");
    char *ref = a->ref.kind == ACTION_REF_REMOTE ? xstrdup(a->ref.ref) : NULL;

    for (size_t i = 0; i < act->n_inputs; i++) {
        char *lk = lower_dup(act->inputs[i].id);
        json_t *v = json_object_get(inputs, lk);
        json_object_set_new(declared, lk, v ? json_incref(v) : json_string(""));
        free(lk);
    }
    a->act = NULL;
    if (a->tmp)
        act_remove_later(jr, a->tmp);
    act_free(jr->act);
    jr->act = NULL;
    jr_frame_enter(jr, act, uses, dir, repo, ref, declared, step_env);
    json_decref(declared);
    free(repo);
    free(uses);
    free(dir);
    free(ref);
    jr->phase = PH_STEPS;
    jr->core->next_step(jr);
}

void
act_run(struct jobrun *jr)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = jr->act;
    json_t *ctx = jr_contexts(jr, NULL), *step_env = NULL, *with = NULL, *inputs = NULL;
    struct expr_env ee = jr_expr_env(jr, ctx);
    struct err e = {0};

    if (yeval_node(jr_file(jr), s->env, &ee, &step_env, &e) < 0) {
        act_fail(jr, e.msg);
        goto out;
    }
    if (json_is_object(step_env)) {
        /* with: (and what the action evaluates for this step) sees the step's own env: in
         * `env`, as in act and GitHub: `with: {x: ${{ env.X }}}` next to `env: {X: ..}`. */
        json_t *envc = json_copy(json_object_get(ctx, "env"));
        if (!json_is_object(envc)) {
            json_decref(envc);
            envc = json_object();
        }
        json_object_update(envc, step_env);
        json_object_set_new(ctx, "env", envc);
    }
    if (yeval_node(jr_file(jr), s->with, &ee, &with, &e) < 0 ||
        (inputs = action_inputs(jr, ctx, with, &e)) == NULL) {
        act_fail(jr, e.msg);
        goto out;
    }
    json_t *own = step_env;
    step_env = jr_step_env(jr, json_is_object(own) ? own : NULL, false);
    json_decref(own);
    if (a->pre) {
        pre_stage(jr, ctx, step_env, with, inputs);
        goto out;
    }
    switch (a->act->using) {
    case ACTION_NODE:
        node_main(jr, ctx, step_env, with, inputs);
        break;
    case ACTION_DOCKER:
        docker_main(jr, ctx, step_env, with, inputs);
        break;
    case ACTION_COMPOSITE:
        composite_main(jr, step_env, inputs);
        break;
    }
out:
    json_decref(ctx);
    json_decref(step_env);
    json_decref(with);
    json_decref(inputs);
}

/* ---------------------------------------------------------------- pre and post stages */

/* Runs a docker action's pre or post stage: {step, id, name, image, entry, args, env, with,
 * extra}, as its step's container with the stage's entrypoint; it ends in jr_stage_end(). */
static void
docker_stage(struct jobrun *jr, json_t *p)
{
    json_t *args = json_object_get(p, "args"), *v;
    char **argv = xcalloc(json_array_size(args) + 1, sizeof *argv);
    size_t i;

    json_array_foreach(args, i, v)
        argv[i] = xstrdup(json_string_value(v) ? json_string_value(v) : "");
    free(jr->post_id);
    jr->post_id = xstrdup(json_string_value(json_object_get(p, "id")));
    jr->cur = (size_t)json_integer_value(json_object_get(p, "step"));
    jr->in_post = true;
    jr_emitf(jr, -1, JOBRUN_INFO, "%s", json_string_value(json_object_get(p, "name")));
    json_decref(jr->cur_outputs);
    jr->cur_outputs = json_object();
    json_t *ctx = jr_contexts(jr, NULL);
    jr->phase = PH_RUNNING;
    jr_container_step(jr, ctx, json_string_value(json_object_get(p, "image")),
                      json_string_value(json_object_get(p, "entry")), argv,
                      json_object_get(p, "env"), json_object_get(p, "with"),
                      json_object_get(p, "extra"));
    json_decref(ctx);
}

/* Runs a pre or post stage: {id, name, env, cwd, dir, script}; its output goes to the job's
 * log. True when it runs; false (the job marked failed) when the agent refused it. */
static bool
run_stage(struct jobrun *jr, json_t *p)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    struct err e = {0};

    free(jr->post_id);
    jr->post_id = xstrdup(json_string_value(json_object_get(p, "id")));
    jr_emitf(jr, -1, JOBRUN_INFO, "%s", name);
    json_decref(jr->cur_env);
    jr->cur_env = json_deep_copy(json_object_get(p, "env"));
    add_state_env(jr, jr->cur_env, jr->post_id);
    shell_argv_free(jr->argv);
    jr->argv = node_argv(json_string_value(json_object_get(p, "dir")),
                         json_string_value(json_object_get(p, "script")));
    jr->in_post = true;
    jr->phase = PH_RUNNING;
    if (jr_agent_run(jr, (uint32_t)jr->cur + 1, jr->argv, 2, jr->cur_env,
                     json_string_value(json_object_get(p, "cwd")), 0, 0, &e) == 0)
        return true;
    jr_emitf(jr, -1, JOBRUN_ERROR, "%s: %s", name, e.msg);
    jr->job_failed = true;
    jr->in_post = false;
    jr->phase = PH_STEPS;
    return false;
}

bool
jr_post_next(struct jobrun *jr)
{
    while (!jr->forced && json_array_size(jr->posts) > 0) {
        size_t last = json_array_size(jr->posts) - 1;
        json_t *p = json_incref(json_array_get(jr->posts, last));
        const char *cond = json_string_value(json_object_get(p, "if"));
        const char *name = json_string_value(json_object_get(p, "name"));
        json_t *ctx;
        struct err e = {0};
        bool ok = false;

        json_array_remove(jr->posts, last);
        jr->cur = jr->wj->n_steps;
        free(jr->post_id);
        jr->post_id = xstrdup(json_string_value(json_object_get(p, "id")));
        ctx = jr_contexts(jr, NULL);
        struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr)};
        if (expr_eval_if(cond, "always()", &ee, &ok, &e) < 0) {
            jr_emitf(jr, -1, JOBRUN_ERROR, "Post %s: error in post-if: %s", name, e.msg);
            jr->job_failed = true;
        }
        json_decref(ctx);
        if (!ok) {
            json_decref(p);
            continue;
        }
        char *title = xasprintf("Post %s", name);
        json_object_set_new(p, "name", json_string(title));
        free(title);
        if (json_object_get(p, "image")) { /* a docker action's, or node in node_image */
            docker_stage(jr, p);
            json_decref(p);
            return true;
        }
        bool started = run_stage(jr, p);
        json_decref(p);
        if (started)
            return true;
    }
    return false;
}

/* The pre stage of the action just read (jr->act, pre set): node actions' runs.pre when
 * pre-if holds (§9.5). The job then goes on looking. */
static void
pre_stage(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = jr->act;
    struct action *act = a->act;
    struct err e = {0};
    bool ok = false;

    if (act->using == ACTION_COMPOSITE) {
        /* A remote composite: the pre stages of its own steps' actions (§9.5). */
        composite_main(jr, step_env, inputs);
        return;
    }
    bool docker = act->using == ACTION_DOCKER && act->pre_entrypoint;
    if (!docker && (act->using != ACTION_NODE || act->pre == NULL)) {
        act_end(jr, true);
        return;
    }
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr)};
    if (expr_eval_if(act->pre_if ? act->pre_if : "always()", "success()", &ee, &ok, &e) < 0) {
        act_failf(jr, "uses: %s: error in pre-if: %s", a->uses, e.msg);
        return;
    }
    if (!ok) {
        act_end(jr, true);
        return;
    }
    if (!docker && !node_available(jr))
        return;
    char *name = jr_display_name(jr, s, ctx), *title = xasprintf("Pre %s", name);
    free(name);
    json_t *stage = NULL;
    if (docker) {
        struct docker_run d;
        if (docker_prepare(jr, ctx, with, inputs, &d) == 0)
            stage = docker_stage_desc(jr, title, d.image, act->pre_entrypoint, d.args,
                                      step_env, with, d.extra);
        docker_run_free(&d);
        if (stage == NULL) {
            free(title);
            return; /* the step (here: the pre stages' look) failed */
        }
    } else if (node_in_container(jr)) {
        stage = node_container(jr, title, step_env, with, inputs, act->pre);
    }
    if (stage) {
        free(title);
        act_free(jr->act);
        jr->act = NULL;
        docker_stage(jr, stage);
        json_decref(stage);
        return;
    }
    json_t *env = node_env(jr, ctx, step_env, with, inputs);
    json_t *p = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}", "id", jr_cur_id(jr), "name", title,
                          "env", env, "cwd", jr->x->workspace, "dir", a->dir,
                          "script", act->pre);
    free(title);
    act_free(jr->act);
    jr->act = NULL;
    if (!run_stage(jr, p)) {
        jr->pre_failed = true;
        jr->core->next_step(jr);
    }
    json_decref(p);
}
void
jr_stage_end(struct jobrun *jr, bool ok)
{
    if (!ok)
        jr->job_failed = true;
    if (!jr->pre_done && !ok)
        jr->pre_failed = true; /* no main stage runs; post stages and cleanup still do */
    jr_clear_run(jr);
    jr->in_post = false;
    if (jr->pre_done)
        jr->cur = jr->wj->n_steps; /* a docker post stage ran as its step */
    jr->phase = PH_STEPS;
    jr->core->next_step(jr);
}

void
jr_post_exited(struct jobrun *jr, const struct agentp_msg *m)
{
    const char *stage = jr->pre_done ? "Post" : "Pre";
    bool ok = true;

    jr_flush_output(jr);
    if (m)
        jr_apply_files(jr, m, &ok); /* a pre stage's state is its main stage's STATE_* */
    if (m == NULL) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "the agent refused the %s stage", stage);
        ok = false;
    } else if (m->exit_code != 0 || (m->flags & AGENTP_EXIT_SIGNALED)) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "%s stage completed with exit code %d.", stage,
                 m->exit_code);
        ok = false;
    }
    jr_stage_end(jr, ok);
}
