/* jobrun-int.h: the job run's state, shared by jobrun.c (steps, events, the job) and
 * jobaction.c (uses: steps: checkout, actions, post stages). Not for other modules. */
#ifndef JOBRUN_INT_H
#define JOBRUN_INT_H

#include "dockerstep.h"
#include "jobrun.h"
#include "runner/buf.h"
#include "wfcmd.h"

#include <stdint.h>

struct jr_action;
struct action;

/* A composite action's nested steps while they run (§12.6): its own steps context, inputs and
 * environment; the calling step's state is kept here meanwhile. Frames nest. */
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
    PH_ACTION,    /* an action step is being fetched, read or staged (jobaction.c) */
    PH_CLOSING,
    PH_DONE,
};

struct jobrun {
    uv_loop_t *loop;
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
    struct dockerstep *dstep; /* a running docker:// step */
    struct dockerstep_opts dopts; /* the docker step waiting for its files to be emptied */
    char **denvp, **dargs, *dimage;
    char **dentryv;
    const char *dbinds[3];
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
    int64_t started_ns;   /* when the job started (CLOCK_REALTIME), for its timeout */
    /* Resuming: replaying the agent's journal from a checkpoint until the HELLO we sent
     * after the RESUME comes back; nothing new is sent to the agent meanwhile. */
    json_t *resume_cp;
    bool replaying, replay_started, defer_next, dispatching;
    /* Held (jobrun_opts.hold): no new step starts until jobrun_release(); what was to start
     * meanwhile waits here. */
    bool held, held_next, held_run;
    /* Actions (jobaction.c). */
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


/* Shared helpers (jobrun.c). */
/* The step being run: a job step, or a composite action's nested step. */
const struct wf_step *jr_step(struct jobrun *jr);
/* The file the current step comes from (the workflow, or an action.yml). */
const char *jr_file(struct jobrun *jr);
/* The env: object a step starts from: in a composite, the calling step's env (plus the
 * composite's INPUT_* when with_inputs), then the step's own (evaluated, borrowed, may be
 * NULL). New object. */
json_t *jr_step_env(struct jobrun *jr, json_t *own, bool with_inputs);
#define JR_COMPOSITE_MAX_DEPTH 10 /* GitHub's limit on composite actions in composites */
/* How many composite actions the current step is inside. */
int jr_frame_depth(struct jobrun *jr);
/* Enters a composite action for the current step (takes act): its nested steps run next, or
 * before the job's first step, their pre stages are looked for (jr_pre_next()). */
void jr_frame_enter(struct jobrun *jr, struct action *act, const char *uses, const char *path,
                    const char *repo, const char *ref, json_t *inputs, json_t *env);
/* Leaves a composite action entered for its pre stages. */
void jr_frame_leave(struct jobrun *jr);
void jr_emit(struct jobrun *jr, int step, enum jobrun_kind kind, const char *text, size_t len);
void __attribute__((format(printf, 4, 5)))
jr_emitf(struct jobrun *jr, int step, enum jobrun_kind kind, const char *fmt, ...);
const char *jr_cur_id(struct jobrun *jr);
void jr_flush_output(struct jobrun *jr);
const char *jr_job_status(struct jobrun *jr);
/* A new contexts object for the current point of the job (env: the `env` context, or NULL). */
json_t *jr_contexts(struct jobrun *jr, json_t *env);
int jr_hash_files(void *arg, const char *const *patterns, size_t n, char **out, struct err *e);
void jr_end_step(struct jobrun *jr, bool ok);
void jr_fail_step(struct jobrun *jr, const char *msg);
int jr_eval_str(struct jobrun *jr, const struct wf_str *s, json_t *ctx, char **out,
                struct err *e);
char *jr_display_name(struct jobrun *jr, const struct wf_step *s, json_t *ctx);
/* A JSON array of the strings of v (NULL-terminated; NULL: empty). */
json_t *jr_strv_json(char *const *v);
/* Applies the file commands (GITHUB_ENV, _OUTPUT, _STATE, _PATH) an agent run reported; *ok
 * turns false when one cannot be read. */
void jr_apply_files(struct jobrun *jr, const struct agentp_msg *m, bool *ok);
/* Goes on with the next step (or the post stages, or the job's end). */
void jr_next_step(struct jobrun *jr);
/* Runs jr->argv with jr->cur_env in jr->cwd as the current step (after a checkpoint). */
void jr_run_script(struct jobrun *jr);
/* Starts a container step for the current step: image, entrypoint (shell words, or NULL),
 * args (taken, or NULL), the step's env and with (borrowed), extra env (borrowed, or NULL). */
void jr_container_step(struct jobrun *jr, json_t *ctx, const char *image, const char *entry,
                       char **args, json_t *step_env, json_t *with, json_t *extra_env);

/* jobaction.c */
/* Starts the current uses: step (remote or local action, actions/checkout). */
void jr_action_start(struct jobrun *jr, json_t *ctx);
/* An agent event while an action step is being prepared (phase PH_ACTION). */
void jr_action_event(struct jobrun *jr, const struct agentconn_event *ev);
/* Asks what an action step is waiting for to stop (cancellation). */
void jr_action_cancel(struct jobrun *jr);
/* Starts the next post stage; false when none is left. */
bool jr_post_next(struct jobrun *jr);
/* Starts (or goes on looking for) the next pre stage; false once none is left to run. */
bool jr_pre_next(struct jobrun *jr);
/* A post stage's agent run ended. */
void jr_post_exited(struct jobrun *jr, const struct agentp_msg *m);
/* A pre or post stage ended (ok: it succeeded): the job goes on. */
void jr_stage_end(struct jobrun *jr, bool ok);
void jr_action_free(struct jobrun *jr);
/* True while a fetch, a read or a copy is in flight: the executor must not close yet. */
bool jr_action_busy(struct jobrun *jr);

#define JR_ACT_STEP 0xfffff200u  /* agent runs of the action machinery */

#endif
