/* jobrun-frame.c: composite actions while their nested steps run (jobrun-int.h): a
 * frame per composite, innermost first, with its own steps context, inputs and env; the
 * calling step is put aside meanwhile and comes back, with the composite's outputs, at its
 * end. */
#include "jobrun-int.h"

#include "action.h"
#include "runner/xalloc.h"

#include <stdlib.h>
#include <string.h>

static void
frame_free(struct jr_frame *f)
{
    action_free(f->act);
    free(f->uses);
    free(f->id);
    free(f->cur_id);
    free(f->action_path);
    free(f->action_repo);
    free(f->action_ref);
    json_decref(f->steps_ctx);
    json_decref(f->inputs);
    json_decref(f->env);
    json_decref(f->saved_outputs);
    json_decref(f->saved_env);
    free(f->saved_name);
    free(f);
}

/* Leaves the innermost composite: the calling step's state comes back. */
static struct jr_frame *
frame_pop(struct jobrun *jr)
{
    struct jr_frame *f = jr->frame;

    jr_clear_step(jr);
    jr->frame = f->up;
    jr->cur_outputs = f->saved_outputs;
    jr->cur_env = f->saved_env;
    jr->cur_name = f->saved_name;
    f->saved_outputs = f->saved_env = NULL;
    f->saved_name = NULL;
    return f;
}

void
jr_frames_unwind(struct jobrun *jr)
{
    while (jr->frame)
        frame_free(frame_pop(jr));
}

struct jr_frame *
jr_frame_push(struct jobrun *jr, struct action *act, const char *uses, const char *path,
              const char *repo, const char *ref, json_t *inputs)
{
    struct jr_frame *f = xcalloc(1, sizeof *f);

    f->act = act;
    f->steps = act->steps;
    f->n = act->n_steps;
    f->uses = xstrdup(uses);
    f->id = xstrdup(jr_cur_id(jr));
    f->cur_id = xstrdup(f->id);
    f->action_path = xstrdup(path ? path : "");
    f->action_repo = repo ? xstrdup(repo) : NULL;
    f->action_ref = ref ? xstrdup(ref) : NULL;
    f->steps_ctx = json_object();
    f->inputs = json_is_object(inputs) ? json_deep_copy(inputs) : json_object();
    f->env = json_object();
    f->up = jr->frame;
    jr->frame = f;
    return f;
}

int
jr_frame_depth(struct jobrun *jr)
{
    int n = 0;

    for (struct jr_frame *f = jr->frame; f; f = f->up)
        n++;
    return n;
}

void
jr_frame_enter(struct jobrun *jr, struct action *act, const char *uses, const char *path,
               const char *repo, const char *ref, json_t *inputs, json_t *env)
{
    json_t *saved_outputs = jr->cur_outputs, *saved_env = jr->cur_env;
    char *saved_name = jr->cur_name;
    struct jr_frame *f = jr_frame_push(jr, act, uses, path, repo, ref, inputs);
    const char *k;
    json_t *v;

    /* The calling step's env:, without INPUT_*: those come from the composite's own inputs. */
    json_object_foreach(env, k, v) {
        if (strncmp(k, "INPUT_", 6) != 0)
            json_object_set(f->env, k, v);
    }
    /* The calling step is put aside while its nested steps run. */
    f->saved_outputs = saved_outputs;
    f->saved_env = saved_env;
    f->saved_name = saved_name;
    jr->cur_outputs = jr->cur_env = NULL;
    jr->cur_name = NULL;
}

void
jr_frame_leave(struct jobrun *jr)
{
    frame_free(frame_pop(jr));
}

bool
jr_frame_end(struct jobrun *jr)
{
    struct jr_frame *f = jr->frame;
    json_t *ctx = jr_contexts(jr, NULL);
    struct expr_env ee = jr_expr_env(jr, ctx);
    json_t *outputs = json_object();
    bool ok = !f->failed;

    for (size_t i = 0; i < f->act->n_outputs; i++) {
        const struct action_output *o = &f->act->outputs[i];
        struct err e = {0};
        char *val = NULL;

        if (o->value == NULL)
            continue;
        if (expr_interpolate(o->value, &ee, &val, &e) < 0) {
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "%s: outputs.%s.value: %s", f->act->file,
                     o->id, e.msg);
            ok = false;
            continue;
        }
        json_object_set_new(outputs, o->id, json_string(val));
        free(val);
    }
    json_decref(ctx);
    frame_free(frame_pop(jr));
    json_object_update(jr->cur_outputs, outputs);
    json_decref(outputs);
    return ok;
}
