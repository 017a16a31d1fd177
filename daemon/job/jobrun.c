/* jobrun.c: one job run on an executor (see jobrun.h), the run core. A state machine on the
 * loop: set up the executor, then for each step evaluate `if`, prepare env/script, write the
 * script through the agent, run it, read its env files, and finally evaluate job outputs,
 * close the executor and report. Output, contexts, step results, composite frames,
 * checkpoints, container steps, hashFiles() and the job's settings are the other jobrun-*.c
 * (jobrun-int.h), uses: steps jobaction*.c (jobaction.h); they go on with the job through
 * struct jr_core. */
#include "jobrun.h"
#include "jobaction.h"
#include "jobrun-int.h"

#include "expr.h"
#include "runner/buf.h"
#include "runner/clock.h"
#include "runner/xalloc.h"
#include "shell.h"
#include "stepenv.h"
#include "wfcmd.h"
#include "yeval.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANCEL_GRACE_MS 7500
/* How long past a step's timeout plus grace, or a stop's grace, the agent's answer is awaited
 * before the job gives up on it; and how long a forced stop waits at all. */
#define STOP_SLACK_MS 10000
#define FORCE_WAIT_MS 3000

/* What jr->watch is waiting for, in increasing precedence. */
enum jr_watch {
    WATCH_NONE,
    WATCH_TIMEOUT, /* the agent ends the running step at its timeout */
    WATCH_STOP,    /* the agent stops the running step after a cancel */
    WATCH_FORCE,   /* a forced stop: the job ends now, whatever the agent does */
};

static void watch_arm(struct jobrun *jr, enum jr_watch kind, uint64_t ms);

static void finish_job(struct jobrun *jr);
static void stop_running_step(struct jobrun *jr, uint32_t grace);
static void end_step(struct jobrun *jr, bool ok);
static void next_step(struct jobrun *jr);
static void run_script(struct jobrun *jr);

static const struct jr_core core_ops = {
    .end_step = end_step,
    .next_step = next_step,
    .run_script = run_script,
};

/* ---------------------------------------------------------------- steps */

/* Ends the current step: outcome from ok, conclusion after continue-on-error. */
static void
end_step(struct jobrun *jr, bool ok)
{
    if (jr->in_post) {
        /* A docker action's pre or post stage (its container) ended: no step result. */
        jr_clear_step(jr);
        jr_stage_end(jr, ok);
        return;
    }
    jr_step_record(jr, ok);
    if (jr->replaying) {
        jr->defer_next = true; /* after the replay: nothing new goes to the agent before */
        return;
    }
    next_step(jr);
}

static void
start_run_step(struct jobrun *jr, json_t *ctx)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_frame *f = jr->frame;
    struct err e = {0};
    json_t *step_env = NULL, *ectx = NULL;
    char *run = NULL, *step_shell = NULL, *job_shell = NULL, *wd = NULL;
    struct shell_cmd sh = {0};
    struct expr_env ee = jr_expr_env(jr, ctx);
    int rc;

    /* Step env (with the job env as `env`), then the rest sees env = job env + step env. */
    rc = yeval_node(jr_file(jr), s->env, &ee, &step_env, &e);
    if (rc < 0)
        goto fail;
    json_t *own = step_env;
    step_env = jr_step_env(jr, json_is_object(own) ? own : NULL, true);
    json_decref(own);
    struct stepenv_in in = {
        .base_env = jr->x->base_env,
        .job_env = jr->job_env, .container_env = jr->container_env,
        .github = json_object_get(ctx, "github"), .step_id = jr_cur_id(jr),
        .action_path = f ? f->action_path : NULL,
        .action_repository = f ? f->action_repo : NULL,
        .action_ref = f ? f->action_ref : NULL,
        .workspace = jr->x->workspace, .label = jr->label, .step_env = step_env,
        .extra_path = jr->extra_path, .base_path = jr->x->base_path,
        .file_dir = jr->x->file_dir, .gitea = jr->gitea,
    };
    jr->cur_env = stepenv_build(&in);
    ectx = jr_contexts(jr, jr->cur_env);
    if ((rc = jr_eval_str(jr, &s->run, ectx, &run, &e)) < 0)
        goto fail;
    if ((rc = jr_eval_str(jr, &s->shell, ectx, &step_shell, &e)) < 0)
        goto fail;
    /* The workflow's defaults.run are not an action's: a composite's steps use their own. */
    if (f == NULL && jr->wj->defaults_shell.v &&
        (rc = jr_eval_str(jr, &jr->wj->defaults_shell, ectx, &job_shell, &e)) < 0)
        goto fail;
    shell_resolve(step_shell, job_shell, f ? NULL : jr->plan->wf->defaults_shell.v,
                  jr->wj->container != NULL, jr->x->bash, &sh);
    const struct wf_str *wds = s->working_directory.v ? &s->working_directory
                               : f == NULL && jr->wj->defaults_working_directory.v
                                   ? &jr->wj->defaults_working_directory
                                   : NULL;
    if (wds && (rc = jr_eval_str(jr, wds, ectx, &wd, &e)) < 0)
        goto fail;
    if (wd == NULL && f == NULL && jr->plan->wf->defaults_working_directory.v)
        wd = xstrdup(jr->plan->wf->defaults_working_directory.v);
    if (wd == NULL || *wd == '\0')
        jr->cwd = xstrdup(jr->x->workspace);
    else if (wd[0] == '/')
        jr->cwd = xstrdup(wd);
    else
        jr->cwd = xasprintf("%s/%s", jr->x->workspace, wd);
    jr->timeout_ms = 0;
    if (s->timeout_minutes) {
        json_t *v = NULL;
        double d;
        struct expr_env te = jr_expr_env(jr, ectx);
        rc = yeval_node(jr_file(jr), s->timeout_minutes, &te, &v, &e);
        if (rc == 0)
            rc = jr_minutes(jr_file(jr), s->timeout_minutes, v, &d, &e);
        json_decref(v);
        if (rc < 0)
            goto fail;
        jr->timeout_ms = (uint32_t)fmin(d * 60000.0, 4e9);
    }
    jr->script_path = xasprintf("%s/%s%s%s", jr->x->file_dir, jr_cur_id(jr), *sh.ext ? "." : "",
                                sh.ext);
    jr->script = shell_script(&sh, run);
    rc = shell_argv(sh.tmpl, jr->script_path, &jr->argv, &e);
    if (rc < 0)
        goto fail;
    jr->phase = PH_WRITING;
    rc = agentconn_write_file(jr->x->conn, (uint32_t)jr->cur + 1, jr->script_path, 0755,
                              jr->script, strlen(jr->script), &e);
    if (rc < 0)
        goto fail;
    goto out;
fail:
    jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, e.msg, strlen(e.msg));
    jr->phase = PH_RUNNING; /* end_step resets */
    end_step(jr, false);
out:
    shell_cmd_free(&sh);
    free(run);
    free(step_shell);
    free(job_shell);
    free(wd);
    json_decref(step_env);
    json_decref(ectx);
}

/* The script is in place: run it. */
static void
run_script(struct jobrun *jr)
{
    size_t argc = 0;
    struct err e = {0};

    while (jr->argv[argc])
        argc++;
    jr->phase = PH_RUNNING;
    int rc = jr_checkpoint(jr, "run", &e);
    if (rc == 0)
        rc = jr_agent_run(jr, (uint32_t)jr->cur + 1, jr->argv, argc, jr->cur_env, jr->cwd,
                          jr->timeout_ms, CANCEL_GRACE_MS, &e);
    if (rc == 0 && jr->timeout_ms > 0)
        watch_arm(jr, WATCH_TIMEOUT, (uint64_t)jr->timeout_ms + CANCEL_GRACE_MS + STOP_SLACK_MS);
    if (rc < 0)
        jr_fail_step(jr, e.msg);
}

/* ---------------------------------------------------------------- the step loop */

static void
next_step(struct jobrun *jr)
{
    if (jr->held && jr->phase == PH_STEPS) {
        jr->held_next = true; /* jobrun_release() goes on */
        return;
    }
    if (jr->phase == PH_STEPS && !jr->pre_done && jr_pre_next(jr))
        return; /* a pre stage runs (or its action is fetched) */
    for (;;) {
        if (jr->phase != PH_STEPS)
            return;
        struct jr_frame *f = jr->frame;
        if (f && f->cur >= f->n) {
            bool ok = jr_frame_end(jr);
            jr->phase = PH_RUNNING;
            end_step(jr, ok);
            return;
        }
        if (f == NULL && jr->cur >= jr->wj->n_steps)
            break;
        const struct wf_step *s = jr_step(jr);
        json_t *ctx;

        if (f) {
            free(f->cur_id);
            f->cur_id = xasprintf("%s.%s", f->id, s->eff_id);
        }
        ctx = jr_contexts(jr, NULL);
        if (!jr->hash_ready && !jr->forced && !jr->pre_failed &&
            jr_step_mentions_hashfiles(s)) {
            bool todo = jr_hash_collect(jr, s, ctx);
            json_decref(ctx);
            if (todo) {
                jr_hash_next(jr);
                return;
            }
            continue;
        }
        struct expr_env ee = jr_expr_env(jr, ctx);
        struct err e = {0};
        bool ok = false;

        jr->cur_outputs = json_object();
        jr->cur_name = jr_display_name(jr, s, ctx);
        if (jr->forced || jr->pre_failed) {
            ok = false;
        } else if (expr_eval_if(s->if_.v ? s->if_.v : "", "success()", &ee, &ok, &e) < 0) {
            if (f == NULL)
                jr_announce_step(jr, jr->cur_name);
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "%s:%d:%d: error in if-expression: %s",
                     jr_file(jr), s->if_.pos.line, s->if_.pos.col, e.msg);
            json_decref(ctx);
            jr->phase = PH_RUNNING;
            end_step(jr, false);
            return;
        }
        if (!ok) {
            jr_set_step_result(jr, "skipped", "skipped");
            jr_clear_step(jr);
            json_decref(ctx);
            jr_next_index(jr);
            continue;
        }
        if (f)
            jr_emitf(jr, (int)jr->cur, JOBRUN_INFO, "%s", jr->cur_name);
        else
            jr_announce_step(jr, jr->cur_name);
        if (s->kind == WF_STEP_RUN)
            start_run_step(jr, ctx);
        else if (s->kind == WF_STEP_USES_DOCKER)
            jr_docker_step(jr, ctx);
        else
            jr_action_start(jr, ctx);
        json_decref(ctx);
        return;
    }
    if (jr->phase == PH_STEPS && !jr_post_next(jr))
        finish_job(jr);
}

/* ---------------------------------------------------------------- events */

static void
on_exited(struct jobrun *jr, const struct agentp_msg *m)
{
    bool ok = m->exit_code == 0 && !(m->flags & AGENTP_EXIT_SIGNALED);

    jr_flush_output(jr);
    jr_apply_files(jr, m, &ok);
    if (m->flags & AGENTP_EXIT_TIMED_OUT && jr->timeout_ms < 60000)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "The step timed out after %.1f seconds.",
              jr->timeout_ms / 1000.0);
    else if (m->flags & AGENTP_EXIT_TIMED_OUT)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "The step timed out after %u minute%s.",
              jr->timeout_ms / 60000, jr->timeout_ms / 60000 == 1 ? "" : "s");
    else if (m->flags & AGENTP_EXIT_CANCELLED)
        jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, "The step was cancelled.", 23);
    else if (m->flags & AGENTP_EXIT_SIGNALED)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "Process was killed by signal %u.", m->signal);
    else if (m->exit_code != 0)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "Process completed with exit code %d.",
              m->exit_code);
    end_step(jr, ok);
}

static void on_event(void *arg, const struct agentconn_event *ev);

/* The replay is over (our HELLO came back): go on from where the job is now. */
static void
replay_done(struct jobrun *jr)
{
    const char *kind = json_string_value(json_object_get(jr->resume_cp, "kind"));

    jr->replaying = false;
    if (jr->defer_next) {
        jr->defer_next = false;
        next_step(jr);
    } else if (jr->phase == PH_RUNNING && kind && strcmp(kind, "docker") == 0) {
        jr_fail_step(jr, "runnerd restarted while this docker:// step ran; its container could "
                      "not be followed again, so its outcome is unknown");
    } else if (jr->phase == PH_RUNNING && !jr->replay_started && jr->held) {
        jr->held_run = true; /* not before the server has said whether it is cancelled */
    } else if (jr->phase == PH_RUNNING && !jr->replay_started) {
        /* The RUN never reached the agent: the step has not run at all. Run it now. */
        run_script(jr);
    }
    if (jr->cancelled && jr->phase == PH_RUNNING)
        stop_running_step(jr, CANCEL_GRACE_MS);
}

static void
replay_event(struct jobrun *jr, const struct agentconn_event *ev)
{
    const struct agentp_msg *m = ev->msg;

    switch (ev->kind) {
    case AGENTCONN_HELLO:
        replay_done(jr);
        return;
    case AGENTCONN_STARTED:
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1)
            jr->replay_started = true;
        return;
    case AGENTCONN_OUTPUT:
    case AGENTCONN_EXITED:
        /* Only the step the checkpoint was taken for: older frames (hashFiles runs, scripts
         * written) belong to work that is redone or already done. */
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1) {
            if (ev->kind == AGENTCONN_EXITED)
                jr->replay_started = true;
            jr->dispatching = true; /* process it as usual (a step's end waits for us) */
            on_event(jr, ev);
            jr->dispatching = false;
        }
        return;
    case AGENTCONN_ERROR:
        if (m->ref_type == AGENTP_RESUME) {
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR,
                  "the job's output could not be resumed after runnerd restarted: %s",
                  m->text ? m->text : "");
            jr->replaying = false;
            jr->job_failed = true;
            if (jr->phase == PH_RUNNING) {
                jr_set_step_result(jr, "failure", "failure");
                jr_clear_step(jr);
            }
            finish_job(jr);
        }
        return;
    case AGENTCONN_PROTO_ERROR:
    case AGENTCONN_BYE:
        jr->replaying = false;
        on_event(jr, ev);
        return;
    default:
        return;
    }
}

static void
on_event(void *arg, const struct agentconn_event *ev)
{
    struct jobrun *jr = arg;
    const struct agentp_msg *m = ev->msg;
    struct err e = {0};

    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    if (jr->replaying && !jr->dispatching) {
        replay_event(jr, ev);
        return;
    }
    /* Nothing here is persisted beyond the sink, which has it once the callback returns: let
     * the agent drop its journal up to here now and then (and at every step's end). A durable
     * job run acks at checkpoints only (see checkpoint()). */
    if (!jr->durable && (ev->kind == AGENTCONN_EXITED || ev->next - jr->acked >= (1u << 20))) {
        struct err ae = {0};
        if (agentconn_ack(jr->x->conn, ev->next, &ae) == 0)
            jr->acked = ev->next;
    }
    /* What an action step, hashFiles() or a container step's files wait for is theirs. */
    bool about_run = ev->kind == AGENTCONN_OUTPUT || ev->kind == AGENTCONN_EXITED ||
                     ev->kind == AGENTCONN_ERROR || ev->kind == AGENTCONN_FILE_WRITTEN;
    if (about_run && jr->phase == PH_ACTION) {
        jr_action_event(jr, ev);
        return;
    }
    if (about_run && jr->phase == PH_HASHING) {
        jr_hash_event(jr, ev);
        return;
    }
    if (about_run && (jr->phase == PH_DPREP || jr->phase == PH_DREAD)) {
        jr_container_event(jr, ev);
        return;
    }
    if (jr->in_post && jr->phase == PH_RUNNING && m->id == jr->cur + 1 &&
        (ev->kind == AGENTCONN_EXITED || ev->kind == AGENTCONN_ERROR)) {
        jr_post_exited(jr, ev->kind == AGENTCONN_EXITED ? m : NULL);
        return;
    }
    switch (ev->kind) {
    case AGENTCONN_OUTPUT:
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1)
            jr_feed_output(jr, (int)m->stream, m->data.p, m->data.len);
        break;
    case AGENTCONN_FILE_WRITTEN:
        if (jr->phase == PH_WRITING && m->id == jr->cur + 1)
            run_script(jr);
        break;
    case AGENTCONN_EXITED:
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1)
            on_exited(jr, m);
        break;
    case AGENTCONN_ERROR:
        if ((jr->phase == PH_WRITING || jr->phase == PH_RUNNING) && m->id == jr->cur + 1) {
            err_set(&e, -EIO, "the agent refused the step: %s", m->text ? m->text : "");
            jr_fail_step(jr, e.msg);
        }
        break;
    case AGENTCONN_PROTO_ERROR:
    case AGENTCONN_BYE:
        jr_emitf(jr, jr->phase != PH_STEPS && jr->phase != PH_SETUP ? (int)jr->cur : -1,
              JOBRUN_ERROR, "lost the agent: %s",
              ev->kind == AGENTCONN_BYE ? "it exited" : ev->err ? ev->err->msg : "protocol error");
        jr->job_failed = true;
        jr_frames_unwind(jr);
        if (jr->phase != PH_STEPS && jr->phase != PH_SETUP) {
            jr_set_step_result(jr, "failure", "failure");
            jr_clear_step(jr);
        }
        finish_job(jr);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- job */

static void
maybe_done(struct jobrun *jr)
{
    if (jr->handles > 0)
        return;
    jr->phase = PH_DONE;
    if (jr->sink->job_finished)
        jr->sink->job_finished(jr->sink_arg, jr, jr->result);
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct jobrun *jr = h->data;

    jr->handles--;
    maybe_done(jr);
}

static void
on_exec_closed(void *arg)
{
    struct jobrun *jr = arg;

    jr->x = NULL;
    jr->handles--;
    maybe_done(jr);
}

static void
on_exec_log(void *arg, const char *line)
{
    struct jobrun *jr = arg;

    jr_emit(jr, -1, JOBRUN_INFO, line, strlen(line));
}

/* Drops each job output whose value holds a secret (or an ::add-mask:: value), with a
 * warning that names the output but not its value, as GitHub does: masking it instead would
 * still tell the server and later jobs where a secret is. Every front end (runnerd's
 * UpdateTask, its spool, runnerctl's report, the needs of later jobs) reads the outputs the
 * plan holds, so none of them sees it. */
static void
drop_secret_outputs(struct jobrun *jr)
{
    const struct plan_job *j = &jr->plan->jobs[jr->job];
    json_t *outs = jr->run < j->n_runs ? j->runs[jr->run].outputs : NULL, *v;
    const char *k;
    void *tmp;

    json_object_foreach_safe(outs, tmp, k, v) {
        if (!json_is_string(v) || !mask_hits(jr->mask, json_string_value(v), json_string_length(v)))
            continue;
        jr_emitf(jr, -1, JOBRUN_WARNING, "Skip output '%s' since it may contain secret.", k);
        json_object_del(outs, k);
    }
}

static void
finish_job(struct jobrun *jr)
{
    struct err e = {0};

    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    jr->phase = PH_CLOSING;
    json_t *extra = jr_github_extra(jr);
    if (plan_run_outputs(jr->plan, jr->job, jr->run, jr->steps, extra, &e) < 0)
        jr_emitf(jr, -1, JOBRUN_ERROR, "job outputs: %s", e.msg);
    json_decref(extra);
    drop_secret_outputs(jr);
    jr->result = jr->cancelled && !jr->timed_out ? PLAN_CANCELLED
                 : jr->job_failed || jr->timed_out ? PLAN_FAILURE
                                                   : PLAN_SUCCESS;
    if (jr->sink->closing)
        jr->sink->closing(jr->sink_arg, jr, jr->result);
    uv_timer_stop(&jr->timer);
    uv_close((uv_handle_t *)&jr->timer, on_timer_closed);
    uv_timer_stop(&jr->watch);
    uv_close((uv_handle_t *)&jr->watch, on_timer_closed);
    if (jr_action_busy(jr)) {
        jr_action_cancel(jr); /* the executor closes once it has landed (jr_action_landed) */
        return;
    }
    executor_close(jr->x);
}

static void
on_ready(void *arg, int rc, const struct err *e)
{
    struct jobrun *jr = arg;

    if (rc < 0) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "setting up the job failed: %s", e ? e->msg : "");
        jr->job_failed = true;
        finish_job(jr);
        return;
    }
    if (jr->resume_cp) {
        /* Ask for the journal from the checkpoint, then a HELLO that marks its end. */
        struct err re = {0};
        uint64_t off = (uint64_t)json_integer_value(json_object_get(jr->resume_cp, "offset"));
        jr->replaying = true;
        if (agentconn_resume(jr->x->conn, off, &re) < 0 || agentconn_hello(jr->x->conn, &re) < 0) {
            jr->replaying = false;
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "resuming the job failed: %s", re.msg);
            jr->job_failed = true;
            jr_set_step_result(jr, "failure", "failure");
            jr_clear_step(jr);
            finish_job(jr);
        }
        return;
    }
    if (jr->cancelled) {
        finish_job(jr);
        return;
    }
    struct err ce = {0};
    if (jr_complete_job_contexts(jr, &ce) < 0) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "evaluating the job's env failed: %s", ce.msg);
        jr->job_failed = true;
        finish_job(jr);
        return;
    }
    jr->phase = PH_STEPS;
    next_step(jr);
}

static const struct executor_cbs exec_cbs = {
    .on_ready = on_ready,
    .on_event = on_event,
    .on_log = on_exec_log,
    .on_closed = on_exec_closed,
};

/* The job stops waiting for the agent: it is wedged, paused or lying (a forged frame can hold
 * the stream), and nothing it says from now on is believed. The running step ends as failed,
 * the rest of the job is skipped, and the teardown removes the container whatever runs in it. */
static void
give_up(struct jobrun *jr, const char *why)
{
    bool in_step = jr->phase != PH_STEPS && jr->phase != PH_SETUP;

    jr_emitf(jr, in_step ? (int)jr->cur : -1, JOBRUN_ERROR, "%s", why);
    jr->job_failed = true;
    jr->forced = true;
    jr_frames_unwind(jr);
    if (in_step) {
        jr_set_step_result(jr, "failure", "failure");
        jr_clear_step(jr);
    }
    finish_job(jr);
}

/* The deadline passed: give up unless what it was about is over (the step it watched has
 * ended, or the job has). */
static void
on_watch(uv_timer_t *t)
{
    struct jobrun *jr = t->data;
    enum jr_watch kind = (enum jr_watch)jr->watch_kind;
    char why[200];

    jr->watch_kind = WATCH_NONE;
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    if (kind != WATCH_FORCE && (jr->step_serial != jr->watch_serial || jr->phase == PH_STEPS))
        return;
    if (kind == WATCH_FORCE)
        snprintf(why, sizeof why, "The job was stopped by force; its container is removed "
                 "whatever runs in it.");
    else if (kind == WATCH_STOP)
        snprintf(why, sizeof why, "The step did not stop within %d s of its cancellation: the "
                 "job container does not answer; giving up on it.",
                 (CANCEL_GRACE_MS + STOP_SLACK_MS) / 1000);
    else
        snprintf(why, sizeof why, "The step did not end within %d s past its timeout: the job "
                 "container does not answer; giving up on it.",
                 (CANCEL_GRACE_MS + STOP_SLACK_MS) / 1000);
    give_up(jr, why);
}

/* Starts the host's own deadline on what the agent is to do (never replacing a deadline of a
 * higher kind): the job never waits on the agent's stream without one once it has asked for a
 * step to end. */
static void
watch_arm(struct jobrun *jr, enum jr_watch kind, uint64_t ms)
{
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE || uv_is_closing((uv_handle_t *)&jr->watch))
        return;
    if (jr->watch_kind > (int)kind && uv_is_active((uv_handle_t *)&jr->watch) &&
        (jr->watch_kind == WATCH_FORCE || jr->watch_serial == jr->step_serial))
        return; /* a stronger deadline on this step (a stale one is replaced) */
    jr->watch_kind = kind;
    jr->watch_serial = jr->step_serial;
    uv_timer_start(&jr->watch, on_watch, ms, 0);
}

static void
stop_running_step(struct jobrun *jr, uint32_t grace)
{
    struct err e = {0};

    if (jr->phase == PH_ACTION)
        jr_action_cancel(jr);
    else if (jr->phase == PH_RUNNING && jr_container_cancel(jr))
        ; /* a container step: its container is stopped */
    else if (jr->phase == PH_RUNNING && jr->x && jr->x->conn)
        agentconn_cancel(jr->x->conn, (uint32_t)jr->cur + 1, grace, &e);
    if (jr->phase != PH_STEPS && jr->phase != PH_SETUP)
        watch_arm(jr, WATCH_STOP, (uint64_t)grace + STOP_SLACK_MS);
}

static void
on_job_timeout(uv_timer_t *t)
{
    struct jobrun *jr = t->data;

    jr_emitf(jr, -1, JOBRUN_ERROR,
             "The job has exceeded the maximum execution time of %g minute%s.",
             jr->timeout_minutes, jr->timeout_minutes == 1 ? "" : "s");
    jr->timed_out = true;
    jr->cancelled = true;
    stop_running_step(jr, CANCEL_GRACE_MS);
}

void
jobrun_cancel(struct jobrun *jr)
{
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    if (jr->phase == PH_SETUP && !jr->replaying) {
        /* Nothing ran yet: no step to wait for (the container may still be being created,
         * or its agent never answers). The teardown cancels the setup. */
        jr->cancelled = true;
        jr_emit(jr, -1, JOBRUN_ERROR, "The job was cancelled before it started.", 41);
        finish_job(jr);
        return;
    }
    if (jr->cancelled) {
        jr->forced = true;
        stop_running_step(jr, 0);
        watch_arm(jr, WATCH_FORCE, FORCE_WAIT_MS);
        return;
    }
    jr->cancelled = true;
    if (jr->held_run || jr->held_next) {
        /* A resumed job waiting to start a step: it goes on now, as cancelled. */
        jobrun_release(jr);
        return;
    }
    jr->held = false; /* the cancellation is known: nothing more to ask the server */
    if (jr->in_post)
        return; /* post stages run to their end on a graceful cancel */
    if (jr->phase == PH_RUNNING || jr->phase == PH_WRITING || jr->phase == PH_ACTION) {
        /* The running step goes on only if its own `if` still holds once cancelled. */
        const struct wf_step *s = jr_step(jr);
        json_t *ctx = jr_contexts(jr, jr->cur_env);
        struct expr_env ee = {.contexts = ctx, .job_status = "cancelled"};
        bool ok = false;
        struct err e = {0};

        if (expr_eval_if(s->if_.v ? s->if_.v : "", "success()", &ee, &ok, &e) < 0 || !ok)
            stop_running_step(jr, CANCEL_GRACE_MS);
        json_decref(ctx);
    }
}

void
jobrun_release(struct jobrun *jr)
{
    if (!jr->held)
        return;
    jr->held = false;
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE || jr->replaying)
        return; /* the replay's end goes on by itself */
    if (jr->held_run) {
        jr->held_run = false;
        if (jr->cancelled) {
            jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, "The step was cancelled.", 23);
            end_step(jr, false);
        } else {
            run_script(jr);
        }
    } else if (jr->held_next) {
        jr->held_next = false;
        next_step(jr);
    }
}

static int start_common(uv_loop_t *loop, const struct jobrun_opts *o, const json_t *cp,
                        struct jobrun **out, struct err *e);

int
jobrun_start(uv_loop_t *loop, const struct jobrun_opts *o, struct jobrun **out, struct err *e)
{
    return start_common(loop, o, NULL, out, e);
}

int
jobrun_resume(uv_loop_t *loop, const struct jobrun_opts *o, const json_t *cp,
              struct jobrun **out, struct err *e)
{
    return start_common(loop, o, cp, out, e);
}

static int
start_common(uv_loop_t *loop, const struct jobrun_opts *o, const json_t *cp,
             struct jobrun **out, struct err *e)
{
    struct jobrun *jr = xcalloc(1, sizeof *jr);
    int rc;

    *out = NULL;
    jr->loop = loop;
    jr->plan = o->plan;
    jr->job = o->job;
    jr->run = o->run;
    jr->wj = o->plan->jobs[o->job].wf;
    jr->file = o->plan->wf->file;
    jr->x = o->exec;
    jr->xjob = o->xjob;
    jr->mask = o->mask;
    jr->sink = o->sink;
    jr->sink_arg = o->sink_arg;
    jr->gitea = o->gitea;
    jr->cache_dir = o->cache_dir ? xstrdup(o->cache_dir) : NULL;
    jr->git_ca_file = o->git_ca_file ? xstrdup(o->git_ca_file) : NULL;
    jr->git_insecure = o->git_insecure;
    jr->actions_url = o->actions_url ? xstrdup(o->actions_url) : NULL;
    jr->github_mirror = o->github_mirror ? xstrdup(o->github_mirror) : NULL;
    jr->node_image = o->node_image ? xstrdup(o->node_image) : NULL;
    jr->posts = json_array();
    jr->label = o->label ? xstrdup(o->label) : NULL;
    jr->runner = o->runner ? json_incref(o->runner) : json_object();
    jr->steps = json_object();
    jr->fetched = json_object();
    jr->step_list = json_array();
    jr->extra_path = json_array();
    jr->state = json_object();
    jr->hashes = json_object();
    jr->hash_todo = json_array();
    jr->added_masks = json_array();
    jr->durable = o->durable;
    jr->held = o->hold && cp != NULL;
    jr->started_ns = clock_now_ns();
    jr->phase = PH_SETUP;
    uv_timer_init(loop, &jr->timer);
    jr->timer.data = jr;
    uv_timer_init(loop, &jr->watch);
    jr->watch.data = jr;
    jr->handles = 3; /* the two timers and the executor */
    jr->core = &core_ops;
    jr->x->cbs = &exec_cbs;
    jr->x->arg = jr;

    /* A container executor knows its workspace before setup (and a resumed job's executor
     * knows it from its description): the job container's env, volumes and options may name
     * github.workspace. */
    if ((rc = jr_setup(jr, o, e)) < 0)
        goto fail;
    if (cp && (rc = jr_restore(jr, cp, e)) < 0) {
        jr->phase = PH_SETUP;
        goto fail;
    }
    if (jr->timeout_minutes > 0) {
        /* A resumed job keeps the deadline it started with. */
        double left = jr->timeout_minutes * 60000.0 -
                      (double)(clock_now_ns() - jr->started_ns) / 1e6;
        uv_timer_start(&jr->timer, on_job_timeout, left > 1 ? (uint64_t)left : 1, 0);
    }
    rc = executor_setup(jr->x, &jr->xjob, e);
    if (rc < 0)
        goto fail;
    *out = jr;
    return 0;
fail:
    /* Report through the normal path so the executor and timer close properly. */
    jr_emitf(jr, -1, JOBRUN_ERROR, "%s", e->msg);
    jr->job_failed = true;
    finish_job(jr);
    *out = jr;
    return 0;
}

json_t *
jobrun_step_list(const struct jobrun *jr)
{
    return jr->step_list;
}

void
jobrun_free(struct jobrun *jr)
{
    if (jr == NULL)
        return;
    jr_frames_unwind(jr);
    jr_clear_step(jr);
    buf_free(&jr->line[0]);
    buf_free(&jr->line[1]);
    wfcmd_state_free(&jr->cmds);
    json_decref(jr->base);
    json_decref(jr->runner);
    json_decref(jr->job_env);
    json_decref(jr->config_env);
    json_decref(jr->container_env);
    json_decref(jr->services);
    free(jr->options);
    json_decref(jr->container_volumes);
    json_decref(jr->steps);
    json_decref(jr->step_list);
    json_decref(jr->extra_path);
    json_decref(jr->state);
    json_decref(jr->hashes);
    json_decref(jr->hash_todo);
    buf_free(&jr->hash_out);
    buf_free(&jr->masked);
    json_decref(jr->added_masks);
    json_decref(jr->resume_cp);
    jr_action_free(jr);
    json_decref(jr->posts);
    json_decref(jr->fetched);
    free(jr->post_id);
    free(jr->cache_dir);
    free(jr->git_ca_file);
    free(jr->actions_url);
    free(jr->github_mirror);
    free(jr->node_image);
    free(jr->label);
    free(jr);
}
