/* jobrun-int.h: the job run's state and the functions its parts share; private to daemon/job.
 * The parts, from the bottom up (each calls only those listed before it):
 *   jobrun-ctx.c        the step being run, contexts, expressions, hashFiles() answers
 *   jobrun-out.c        output: lines, the mask, workflow commands, file commands
 *   jobrun-step.c       step results (steps context, step list), clearing a step
 *   jobrun-frame.c      composite action frames
 *   jobrun-checkpoint.c the job's resumable state (checkpoint, restore)
 *   jobrun-container.c  container steps (docker:// steps, docker actions' containers)
 *   jobrun-hash.c       computing a step's hashFiles() through the agent
 *   jobaction*.c        uses: steps (jobaction.h)
 *   jobrun-setup.c      the job's own settings (container, services, timeout)
 *   jobrun.c            the run core: the step loop, events, cancellation, the job's end
 * The parts below the core go on with the job only through jr->core (struct jr_core). */
#ifndef JOBRUN_INT_H
#define JOBRUN_INT_H

#include "expr.h"
#include "jobrun.h"
#include "runner/buf.h"
#include "wfcmd.h"

#include <stdint.h>

struct jr_action;
struct action;
struct dockerstep;
struct jr_core;

/* A composite action's nested steps while they run (doc/workflow-semantics.md §12.6): its own steps
 * context, inputs and environment; the calling step's state is kept here meanwhile. Frames nest. */
struct jr_frame {
    struct jr_frame *up;
    struct action *act;       /* owns steps */
    const struct wf_step *steps;
    size_t n, cur;
    char *uses;               /* the calling step's uses, for messages */
    char *id;                 /* the calling step's id ("a", or "a.0" when nested) */
    char *cur_id;             /* the running nested step's id: "<id>.<its id>" */
    char *action_path, *action_repo, *action_ref;
    json_t *steps_ctx;        /* the composite's steps context */
    json_t *inputs;           /* its inputs context */
    json_t *env;              /* the calling step's env: (evaluated) */
    bool failed;              /* a nested step concluded failure */
    size_t pre_idx;           /* pre: the next nested step to look at */
    /* The calling step, put aside. */
    json_t *saved_outputs, *saved_env;
    char *saved_name;
};

enum phase {
    PH_SETUP,
    PH_STEPS,
    PH_WRITING,   /* waiting for FILE_WRITTEN of the step script */
    PH_RUNNING,   /* waiting for EXITED (or a docker step's end) */
    PH_DPREP,     /* docker step: emptying the file-command files */
    PH_DREAD,     /* docker step: reading the file-command files back through the agent */
    PH_HASHING,   /* computing the step's hashFiles() through the agent */
    PH_ACTION,    /* an action step is being fetched, read or staged (jobaction*.c) */
    PH_CLOSING,
    PH_DONE,
};

struct jobrun {
    uv_loop_t *loop;
    const struct jr_core *core; /* the run core's continuations */
    struct plan *plan;
    size_t job, run;
    const struct wf_job *wj;
    const char *file;
    struct executor *x;
    struct executor_job xjob;
    struct mask *mask;
    const struct jobrun_sink *sink;
    void *sink_arg;
    json_t *base;        /* job-level contexts (github, inputs, vars, secrets, needs, ...) */
    json_t *runner;
    json_t *job_env;     /* env every step starts from; GITHUB_ENV updates land here */
    json_t *config_env;  /* --env / config values over the job env, or NULL */
    json_t *container_env;
    json_t *steps;       /* steps context */
    json_t *step_list;   /* for reports */
    json_t *extra_path;  /* newest first */
    json_t *state;       /* step id -> {NAME: value} */
    char *label;
    bool gitea;
    enum phase phase;
    size_t cur;          /* current step */
    bool job_failed, cancelled, forced, timed_out;
    double timeout_minutes;
    /* The running step. */
    json_t *cur_env;     /* its environment */
    json_t *cur_outputs;
    char *script_path, *script, *cwd;
    char *cur_name;      /* display name */
    char **argv;
    uint32_t timeout_ms;
    struct buf line[2];  /* partial lines of stdout, stderr */
    struct wfcmd_state cmds;
    enum plan_result result;
    uv_timer_t timer;
    /* The host's own deadline on the agent, which a wedged, paused or lying job container
     * never answers: a step past its timeout, a stop past its grace, a forced stop. */
    uv_timer_t watch;
    int watch_kind;      /* enum jr_watch in jobrun.c; 0: none */
    uint64_t step_serial; /* bumped as each step ends: which step a deadline is about */
    uint64_t watch_serial;
    int handles;         /* open handles + executor, for the two-phase close */
    uint64_t acked;      /* journal offset acknowledged to the agent */
    char *options;       /* container.options, evaluated */
    json_t *container_volumes; /* container.volumes, evaluated, or NULL */
    json_t *services;    /* services, evaluated */
    /* A container step (jobrun-container.c). */
    struct dockerstep *dstep; /* running */
    char **denvp, **dargs, *dimage; /* kept until its files are emptied and it starts */
    char **dentryv;
    json_t *dlabels;
    int dprep_left;
    json_t *hashes;      /* this step's hashFiles() results: JSON of the patterns -> hex */
    json_t *hash_todo;   /* pattern lists still to compute (array of arrays) */
    bool hash_collect;   /* evaluating only to learn which hashFiles() a step needs */
    bool hash_ready;     /* the current step's hashes are computed */
    struct buf hash_out;
    struct buf masked;   /* jr_emit()'s output line */
    bool dok;             /* the docker step's own outcome */
    bool durable;
    json_t *added_masks;  /* values added with ::add-mask:: (for checkpoints) */
    bool mask_cap_warned; /* the warning that a cap of ::add-mask:: was passed was written */
    int64_t started_ns;   /* when the job started (CLOCK_REALTIME), for its timeout */
    /* Resuming: replaying the agent's journal from a checkpoint until the HELLO we sent
     * after the RESUME comes back; nothing new is sent to the agent meanwhile. */
    json_t *resume_cp;
    bool replaying, replay_started, defer_next, dispatching;
    /* Held (jobrun_opts.hold): no new step starts until jobrun_release(); what was to start
     * meanwhile waits here. */
    bool held, held_next, held_run;
    /* Actions (jobaction*.c). */
    char *cache_dir;        /* git mirrors and fetched actions (jobrun_opts, copied) */
    char *git_ca_file;
    bool git_insecure;
    char *actions_url, *github_mirror, *node_image;
    struct jr_action *act;  /* the action step in progress, or NULL */
    json_t *posts;          /* post stages still to run: [{step, name, argv, env, cwd, if}] */
    bool in_post;           /* a pre or post stage runs (its output goes to the job's log) */
    char *post_id;          /* the running pre or post stage's step id (GITHUB_STATE) */
    struct jr_frame *frame; /* the innermost composite action running, or NULL */
    /* Pre stages (§9.5): before the first main stage, for remote actions that have one. */
    bool pre_done;          /* all pre stages ran (or there were none) */
    bool pre_failed;        /* a pre stage failed: no main stage runs */
    size_t pre_idx;         /* the next job step whose pre stage is to be looked at */
    json_t *fetched;        /* uses -> {dir, sha, copied}: remote actions fetched for this job */
};

/* ---------------------------------------------------------------- jobrun.c: the core */

/* How the parts below the core go on with the job (jobrun.c fills it in): they never call
 * jobrun.c, which calls them. */
struct jr_core {
    /* The current step ended (ok: its outcome); the job goes on. */
    void (*end_step)(struct jobrun *jr, bool ok);
    /* Goes on with the next step (or the pre or post stages, or the job's end). */
    void (*next_step)(struct jobrun *jr);
    /* Runs jr->argv with jr->cur_env in jr->cwd as the current step (after a checkpoint). */
    void (*run_script)(struct jobrun *jr);
};

/* The ids of agent runs and written files: the current step's are its index + 1; these are
 * the machinery's own. */
#define DFILE_ID 0x80000000u    /* + 0..4: a container step's file-command files */
#define HASH_STEP 0xfffff100u   /* the agent runs of hashFiles() */
#define JR_ACT_STEP 0xfffff200u /* agent runs of the action machinery */

/* ---------------------------------------------------------------- jobrun-ctx.c */

/* A JSON string of s, or "" when s is not valid UTF-8. */
json_t *jr_jstring(const char *s);
/* The step being run: a job step, or a composite action's nested step. */
const struct wf_step *jr_step(struct jobrun *jr);
/* The file the current step comes from (the workflow, or an action.yml). */
const char *jr_file(struct jobrun *jr);
const char *jr_cur_id(struct jobrun *jr);
const char *jr_job_status(struct jobrun *jr);
/* A new contexts object for the current point of the job (env: the `env` context, or NULL). */
json_t *jr_contexts(struct jobrun *jr, json_t *env);
/* What expressions of the current step are evaluated with: ctx, the job status, and the
 * hashFiles() answers (in collect mode, the patterns asked for are recorded: jobrun-hash.c). */
struct expr_env jr_expr_env(struct jobrun *jr, json_t *ctx);
int jr_eval_str(struct jobrun *jr, const struct wf_str *s, json_t *ctx, char **out,
                struct err *e);
char *jr_display_name(struct jobrun *jr, const struct wf_step *s, json_t *ctx);
/* The env: object a step starts from: in a composite, the calling step's env (plus the
 * composite's INPUT_* when with_inputs), then the step's own (evaluated, borrowed, may be
 * NULL). New object. */
json_t *jr_step_env(struct jobrun *jr, json_t *own, bool with_inputs);
/* A JSON array of the strings of v (NULL-terminated; NULL: empty). */
json_t *jr_strv_json(char *const *v);
/* The strings of a JSON array (non-strings: ""), NULL-terminated. New vector. */
char **jr_json_strv(const json_t *a);

/* ---------------------------------------------------------------- jobrun-out.c */

void jr_emit(struct jobrun *jr, int step, enum jobrun_kind kind, const char *text, size_t len);
void __attribute__((format(printf, 4, 5)))
jr_emitf(struct jobrun *jr, int step, enum jobrun_kind kind, const char *fmt, ...);
/* Tells the sink the current step started (its name masked). */
void jr_announce_step(struct jobrun *jr, const char *name);
/* A chunk of the running step's stdout or stderr (AGENTP_STDOUT/ERR). */
void jr_feed_output(struct jobrun *jr, int stream, const uint8_t *p, size_t n);
void jr_flush_output(struct jobrun *jr);
/* Applies the file commands (GITHUB_ENV, _OUTPUT, _STATE, _PATH) an agent run reported; *ok
 * turns false when one cannot be read. */
void jr_apply_files(struct jobrun *jr, const struct agentp_msg *m, bool *ok);
/* Runs argv (argc words) through the agent as agent run `step`, with env (an object) in cwd,
 * the run's files in jr->x->file_dir; timeout_ms and grace_ms as struct agentconn_run's. */
int jr_agent_run(struct jobrun *jr, uint32_t step, char *const *argv, size_t argc, json_t *env,
                 const char *cwd, uint32_t timeout_ms, uint32_t grace_ms, struct err *e);

/* ---------------------------------------------------------------- jobrun-step.c */

/* Records the current step's result (outcome, conclusion) in the steps context, or the
 * composite's, and for a job step in the step list and to the sink. */
void jr_set_step_result(struct jobrun *jr, const char *outcome, const char *conclusion);
/* Drops the env, outputs and argv of what ran (a step, or a pre or post stage). */
void jr_clear_run(struct jobrun *jr);
/* Drops what the current step held (env, outputs, script, a container step's settings). */
void jr_clear_step(struct jobrun *jr);
/* Moves to the next step: of the innermost composite, or of the job. */
void jr_next_index(struct jobrun *jr);
/* Ends the current step in the steps context (its conclusion after continue-on-error), and
 * moves on to the next index; the caller goes on with the job. */
void jr_step_record(struct jobrun *jr, bool ok);
/* Prints msg as an error of the current step, which ends as failed (jr->core->end_step). */
void jr_fail_step(struct jobrun *jr, const char *msg);

/* ---------------------------------------------------------------- jobrun-frame.c */

#define JR_COMPOSITE_MAX_DEPTH 10 /* GitHub's limit on composite actions in composites */
/* How many composite actions the current step is inside. */
int jr_frame_depth(struct jobrun *jr);
/* A new innermost frame for act (taken), the current step's composite: its id is the step's
 * (job steps "a", nested "a.0"); empty steps context and env, a copy of inputs. */
struct jr_frame *jr_frame_push(struct jobrun *jr, struct action *act, const char *uses,
                               const char *path, const char *repo, const char *ref,
                               json_t *inputs);
/* Enters a composite action for the current step (takes act): its nested steps run next (the
 * caller goes on with jr->core->next_step), or before the job's first step, their pre stages
 * are looked for (jr_pre_next()). */
void jr_frame_enter(struct jobrun *jr, struct action *act, const char *uses, const char *path,
                    const char *repo, const char *ref, json_t *inputs, json_t *env);
/* Leaves a composite action entered for its pre stages. */
void jr_frame_leave(struct jobrun *jr);
/* The composite's nested steps are done: its outputs go to the calling step, which is back as
 * the current step. Returns whether the composite succeeded. */
bool jr_frame_end(struct jobrun *jr);
/* The job ends inside composite actions (the agent was lost): back to the job step. */
void jr_frames_unwind(struct jobrun *jr);

/* ---------------------------------------------------------------- jobrun-checkpoint.c */

/* Tells the sink where the job is, before the current step runs (kind "run" or "docker").
 * Returns 0, or <0 with e set when the sink could not store it. */
int jr_checkpoint(struct jobrun *jr, const char *kind, struct err *e);
/* Puts the job where checkpoint cp says it was. */
int jr_restore(struct jobrun *jr, const json_t *cp, struct err *e);

/* ---------------------------------------------------------------- jobrun-container.c */

/* Runs `uses: docker://IMAGE` as the current step. */
void jr_docker_step(struct jobrun *jr, json_t *ctx);
/* Starts a container step for the current step: image, entrypoint (shell words, or NULL),
 * args (taken, or NULL), the step's env and with (borrowed), extra env (borrowed, or NULL). */
void jr_container_step(struct jobrun *jr, json_t *ctx, const char *image, const char *entry,
                       char **args, json_t *step_env, json_t *with, json_t *extra_env);
/* An agent event while a container step's files are emptied or read (PH_DPREP, PH_DREAD). */
void jr_container_event(struct jobrun *jr, const struct agentconn_event *ev);
/* Stops the running container step; false when there is none. */
bool jr_container_cancel(struct jobrun *jr);

/* ---------------------------------------------------------------- jobrun-hash.c */

/* Whether step s needs hashFiles() results before it is evaluated. */
bool jr_step_mentions_hashfiles(const struct wf_step *s);
/* Evaluates every expression of step s (with ctx) in collect mode, results and errors
 * dropped, to learn which hashFiles() it asks for: true when some are to be computed
 * (jr_hash_next()); false when none are (the step's hashes are ready). */
bool jr_hash_collect(struct jobrun *jr, const struct wf_step *s, json_t *ctx);
/* Runs the agent's hash mode for the next pattern list, or goes on with the job (the step is
 * evaluated again) when none is left. */
void jr_hash_next(struct jobrun *jr);
/* An agent event while hashFiles() is computed (PH_HASHING). */
void jr_hash_event(struct jobrun *jr, const struct agentconn_event *ev);

/* ---------------------------------------------------------------- jobrun-setup.c */

/* A timeout-minutes value (evaluated v of node n) into *out, or ERR_INVALID naming
 * file:line:col when it is not a positive number of sane size. */
int jr_minutes(const char *file, const struct ynode *n, const json_t *v, double *out,
               struct err *e);
/* The github members the front end knows only through the executor (the workspace); NULL
 * while unknown. New object. */
json_t *jr_github_extra(const struct jobrun *jr);
/* Evaluates the job's container (env, options, volumes), services and timeout into jr and
 * jr->xjob (o: the runner's container options). */
int jr_setup(struct jobrun *jr, const struct jobrun_opts *o, struct err *e);
/* Evaluates the job-level contexts again now that the executor says where the workspace is. */
int jr_complete_job_contexts(struct jobrun *jr, struct err *e);

#endif
