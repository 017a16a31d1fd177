/* jobrun-step.c: a step's result (jobrun-int.h): its outcome and conclusion (after
 * continue-on-error) in the steps context, the step list and the sink, and what a step held
 * dropped once it is over. */
#include "jobrun-int.h"

#include "runner/xalloc.h"
#include "shell.h"
#include "yeval.h"

#include <stdlib.h>
#include <string.h>

void
jr_set_step_result(struct jobrun *jr, const char *outcome, const char *conclusion)
{
    const struct wf_step *s = jr_step(jr);
    json_t *ent = json_object();

    json_object_set_new(ent, "outputs",
                        jr->cur_outputs ? json_incref(jr->cur_outputs) : json_object());
    json_object_set_new(ent, "outcome", json_string(outcome));
    json_object_set_new(ent, "conclusion", json_string(conclusion));
    if (jr->frame) {
        /* A nested step of a composite action: only the composite sees it. */
        json_object_set_new(jr->frame->steps_ctx, s->eff_id, ent);
        if (strcmp(conclusion, "failure") == 0)
            jr->frame->failed = true;
        return;
    }
    json_object_set_new(jr->steps, s->eff_id, ent);
    json_t *li = json_object();
    json_object_set_new(li, "id", json_string(s->eff_id));
    char *shown = mask_str(jr->mask, jr->cur_name ? jr->cur_name : s->eff_id);
    json_object_set_new(li, "name", jr_jstring(shown)); /* reports show it: masked */
    free(shown);
    json_object_set_new(li, "outcome", json_string(outcome));
    json_object_set_new(li, "conclusion", json_string(conclusion));
    json_array_append_new(jr->step_list, li);
    if (strcmp(conclusion, "failure") == 0)
        jr->job_failed = true;
    if (jr->sink->step_finished)
        jr->sink->step_finished(jr->sink_arg, jr, (int)jr->cur, outcome, conclusion);
}

void
jr_clear_run(struct jobrun *jr)
{
    json_decref(jr->cur_env);
    json_decref(jr->cur_outputs);
    jr->cur_env = jr->cur_outputs = NULL;
    shell_argv_free(jr->argv);
    jr->argv = NULL;
}

void
jr_clear_step(struct jobrun *jr)
{
    jr->step_serial++;
    jr_clear_run(jr);
    free(jr->script_path);
    free(jr->script);
    free(jr->cwd);
    free(jr->cur_name);
    jr->script_path = jr->script = jr->cwd = jr->cur_name = NULL;
    xstrv_free(jr->denvp);
    jr->denvp = NULL;
    xstrv_free(jr->dargs);
    jr->dargs = NULL;
    free(jr->dimage);
    jr->dimage = NULL;
    xstrv_free(jr->dentryv);
    jr->dentryv = NULL;
    json_decref(jr->dlabels);
    jr->dlabels = NULL;
    json_object_clear(jr->hashes);
    json_array_clear(jr->hash_todo);
    jr->hash_ready = false;
    buf_reset(&jr->line[0]);
    buf_reset(&jr->line[1]);
}

void
jr_next_index(struct jobrun *jr)
{
    if (jr->frame)
        jr->frame->cur++;
    else
        jr->cur++;
}

void
jr_step_record(struct jobrun *jr, bool ok)
{
    const struct wf_step *s = jr_step(jr);
    const char *outcome = ok ? "success" : "failure", *conclusion = outcome;

    if (!ok && s->continue_on_error) {
        json_t *ctx = jr_contexts(jr, jr->cur_env), *v = NULL;
        struct expr_env ee = jr_expr_env(jr, ctx);
        struct err e = {0};

        if (yeval_node(jr_file(jr), s->continue_on_error, &ee, &v, &e) == 0 && expr_truthy(v))
            conclusion = "success";
        else if (e.msg[0])
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "continue-on-error: %s", e.msg);
        json_decref(v);
        json_decref(ctx);
    }
    jr_set_step_result(jr, outcome, conclusion);
    jr_clear_step(jr);
    jr->phase = PH_STEPS;
    jr_next_index(jr);
}

void
jr_fail_step(struct jobrun *jr, const char *msg)
{
    jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, msg, strlen(msg));
    jr->core->end_step(jr, false);
}
