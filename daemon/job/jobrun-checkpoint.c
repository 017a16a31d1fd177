/* jobrun-checkpoint.c: the job's resumable state (jobrun-int.h): the record handed to the
 * sink before each step runs (where the job is, what it has learnt, the composite frames it
 * is in), and putting a job back where such a record says it was (jobrun_resume()). */
#include "jobrun-int.h"

#include "action.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The composite actions the current step runs in, outermost first: all a resumed job needs
 * to enter them again (the action.yml text is parsed again; it may no longer be readable). */
static json_t *
frames_json(struct jobrun *jr)
{
    json_t *a = json_array();

    for (struct jr_frame *f = jr->frame; f; f = f->up) {
        json_t *o = json_pack("{s:s%, s:s, s:s, s:s, s:s*, s:s*, s:I, s:b, s:O, s:O, "
                              "s:O, s:O, s:O*, s:s*}",
                              "text", f->act->text ? f->act->text : "",
                              f->act->text ? f->act->text_len : (size_t)0,
                              "file", f->act->file, "uses", f->uses,
                              "path", f->action_path, "repo", f->action_repo,
                              "ref", f->action_ref, "cur", (json_int_t)f->cur,
                              "failed", f->failed, "steps", f->steps_ctx,
                              "inputs", f->inputs, "env", f->env,
                              "saved_outputs", f->saved_outputs ? f->saved_outputs : json_null(),
                              "saved_env", f->saved_env, "saved_name", f->saved_name);
        if (o)
            json_array_insert_new(a, 0, o);
    }
    return a;
}

static char *
dup_member(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));

    return v ? xstrdup(v) : NULL;
}

/* Enters again the composite actions a checkpoint was taken in (see frames_json()). */
static int
frames_restore(struct jobrun *jr, const json_t *frames, struct err *e)
{
    size_t i;
    json_t *o;

    json_array_foreach(frames, i, o) {
        const char *text = json_string_value(json_object_get(o, "text"));
        const char *file = json_string_value(json_object_get(o, "file"));
        const char *uses = json_string_value(json_object_get(o, "uses"));
        struct action *act = NULL;
        json_int_t cur = json_integer_value(json_object_get(o, "cur"));

        if (text == NULL || file == NULL || uses == NULL)
            return err_set(e, ERR_INVALID, "the job's checkpoint has a broken composite frame");
        if (action_parse(file, text, json_string_length(json_object_get(o, "text")), uses, &act,
                         e) < 0)
            return err_prefix(e, "resuming inside %s: ", uses);
        if (act->using != ACTION_COMPOSITE || cur < 0 || (size_t)cur >= act->n_steps) {
            action_free(act);
            return err_set(e, ERR_INVALID, "the job's checkpoint does not fit %s", file);
        }
        struct jr_frame *f = jr_frame_push(jr, act, uses,
                                           json_string_value(json_object_get(o, "path")),
                                           json_string_value(json_object_get(o, "repo")),
                                           json_string_value(json_object_get(o, "ref")),
                                           json_object_get(o, "inputs"));
        f->cur = (size_t)cur;
        f->cur_id = xasprintf("%s.%s", f->id, act->steps[cur].eff_id);
        f->failed = json_is_true(json_object_get(o, "failed"));
        json_object_update(f->steps_ctx, json_object_get(o, "steps"));
        json_object_update(f->env, json_object_get(o, "env"));
        f->saved_outputs = json_is_object(json_object_get(o, "saved_outputs"))
                               ? json_deep_copy(json_object_get(o, "saved_outputs"))
                               : json_object();
        f->saved_env = json_is_object(json_object_get(o, "saved_env"))
                           ? json_deep_copy(json_object_get(o, "saved_env"))
                           : json_object();
        f->saved_name = dup_member(o, "saved_name");
    }
    return 0;
}

int
jr_checkpoint(struct jobrun *jr, const char *kind, struct err *e)
{
    json_t *cp;
    int rc;

    if (jr->sink->checkpoint == NULL || jr->in_post)
        return 0; /* pre and post stages are not resumed */
    cp = json_pack("{s:i, s:s, s:I, s:I, s:I, s:O, s:O, s:O, s:O, s:O, s:O, s:b, s:b, s:b, "
                   "s:s*, s:O*, s:o, s:s*, s:s*, s:I, s:s*, s:o*}",
                   "v", 1, "kind", kind, "cur", (json_int_t)jr->cur,
                   "offset", (json_int_t)(jr->x->conn ? agentconn_offset(jr->x->conn) : 0),
                   "started_ns", (json_int_t)jr->started_ns,
                   "steps", jr->steps, "step_list", jr->step_list, "job_env", jr->job_env,
                   "extra_path", jr->extra_path, "state", jr->state, "masks", jr->added_masks,
                   "job_failed", jr->job_failed, "cancelled", jr->cancelled,
                   "timed_out", jr->timed_out, "cur_name", jr->cur_name,
                   "cur_env", jr->cur_env, "argv", jr_strv_json(jr->argv),
                   "cwd", jr->cwd, "script_path", jr->script_path,
                   "timeout_ms", (json_int_t)jr->timeout_ms, "stop_token", jr->cmds.stop_token,
                   "exec", executor_describe(jr->x));
    if (cp == NULL)
        return err_set(e, -ENOMEM, "checkpoint: cannot build the record");
    if (mask_hides_all(jr->mask))
        json_object_set_new(cp, "masks_all", json_true());
    /* Post stages still to run: a resumed job runs them at its end. */
    json_object_set(cp, "posts", jr->posts);
    if (jr->frame)
        json_object_set_new(cp, "frames", frames_json(jr));
    rc = jr->sink->checkpoint(jr->sink_arg, jr, cp);
    if (rc < 0) {
        err_set(e, rc, "the runner could not save the job's state; not starting the step");
    } else if (jr->durable && jr->x->conn) {
        /* Everything before the checkpoint is stored: the agent may drop it. */
        uint64_t off = agentconn_offset(jr->x->conn);
        struct err ae = {0};
        if (off > jr->acked && agentconn_ack(jr->x->conn, off, &ae) == 0)
            jr->acked = off;
    }
    json_decref(cp);
    return rc;
}

int
jr_restore(struct jobrun *jr, const json_t *cp, struct err *e)
{
    json_int_t cur = json_integer_value(json_object_get(cp, "cur"));
    const char *kind = json_string_value(json_object_get(cp, "kind"));
    const char *s;
    json_t *v;
    size_t i;

    if (json_integer_value(json_object_get(cp, "v")) != 1 || kind == NULL || cur < 0 ||
        (size_t)cur >= jr->wj->n_steps)
        return err_set(e, ERR_INVALID, "the job's checkpoint is not one this runner can resume");
#define TAKE(field, key)                                                                       \
    do {                                                                                       \
        json_t *x_ = json_object_get(cp, key);                                                 \
        if (x_) {                                                                              \
            json_decref(jr->field);                                                            \
            jr->field = json_deep_copy(x_);                                                    \
        }                                                                                      \
    } while (0)
    TAKE(steps, "steps");
    TAKE(step_list, "step_list");
    TAKE(job_env, "job_env");
    TAKE(extra_path, "extra_path");
    TAKE(state, "state");
    TAKE(added_masks, "masks");
    TAKE(posts, "posts");
#undef TAKE
    json_array_foreach(jr->added_masks, i, v) {
        if (json_string_value(v))
            mask_add_job(jr->mask, json_string_value(v));
    }
    if (json_is_true(json_object_get(cp, "masks_all"))) {
        mask_hide_all(jr->mask);
        jr->mask_cap_warned = true;
    }
    jr->cur = (size_t)cur;
    jr->job_failed = json_is_true(json_object_get(cp, "job_failed"));
    jr->cancelled = json_is_true(json_object_get(cp, "cancelled"));
    jr->timed_out = json_is_true(json_object_get(cp, "timed_out"));
    jr->started_ns = json_integer_value(json_object_get(cp, "started_ns"));
    if ((s = json_string_value(json_object_get(cp, "cur_name"))))
        jr->cur_name = xstrdup(s);
    if ((v = json_object_get(cp, "cur_env")) && json_is_object(v))
        jr->cur_env = json_deep_copy(v);
    else
        jr->cur_env = json_object();
    jr->cur_outputs = json_object();
    jr->argv = jr_json_strv(json_object_get(cp, "argv"));
    if ((s = json_string_value(json_object_get(cp, "cwd"))))
        jr->cwd = xstrdup(s);
    if ((s = json_string_value(json_object_get(cp, "script_path"))))
        jr->script_path = xstrdup(s);
    jr->timeout_ms = (uint32_t)json_integer_value(json_object_get(cp, "timeout_ms"));
    if ((s = json_string_value(json_object_get(cp, "stop_token"))))
        jr->cmds.stop_token = xstrdup(s);
    jr->resume_cp = json_deep_copy(cp);
    if (json_is_array(json_object_get(cp, "frames")) &&
        frames_restore(jr, json_object_get(cp, "frames"), e) < 0)
        return -1;
    jr->pre_done = true; /* pre stages run before any checkpoint */
    jr->phase = PH_RUNNING;
    if (strcmp(kind, "run") != 0 && strcmp(kind, "docker") != 0)
        return err_set(e, ERR_INVALID, "the job's checkpoint has an unknown kind '%s'", kind);
    if (strcmp(kind, "run") == 0 && jr->argv[0] == NULL)
        return err_set(e, ERR_INVALID, "the job's checkpoint has no command");
    return 0;
}

