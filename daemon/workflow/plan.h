/* plan.h: turning a workflow into job runs (doc/workflow-semantics.md §3, §4, §5.8, §9.2):
 * stages from the needs graph, matrix expansion, job `if` with status functions over the
 * transitive needs, result propagation and job outputs. Also the scheduler's bookkeeping:
 * the executor asks which jobs are ready, starts them, and reports each run's result. */
#ifndef PLAN_H
#define PLAN_H

#include "runner/err.h"
#include "wf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* GitHub's limit on the runs one matrix may produce. */
#define PLAN_MAX_MATRIX 256

enum plan_result {
    PLAN_PENDING = 0, /* not finished (or not run for an unsupported platform) */
    PLAN_SUCCESS,
    PLAN_FAILURE,
    PLAN_CANCELLED,
    PLAN_SKIPPED,
};

/* "success", "failure", "cancelled", "skipped", or "" for PLAN_PENDING. */
const char *plan_result_name(enum plan_result r);

/* One matrix combination of a job. */
struct plan_run {
    char *name;             /* display name: job name, plus " (v1, v2)" for a matrix of >1 */
    json_t *matrix;         /* the combination (object; {} without a matrix) */
    json_t *strategy;       /* the strategy context */
    json_t *runs_on;        /* array of label strings */
    enum plan_result result;
    bool finished;          /* reported through plan_run_finish() (or the job was skipped) */
    json_t *outputs;        /* job outputs this run produced (object) */
};

enum plan_state {
    PLAN_JOB_WAITING,  /* needs not finished */
    PLAN_JOB_RUNNING,  /* started: its runs are being executed */
    PLAN_JOB_DONE,
};

struct plan_job {
    const struct wf_job *wf;  /* borrowed from the workflow */
    int stage;                /* 0-based */
    size_t *needs;            /* indexes into plan.jobs of the direct needs */
    size_t n_needs;
    bool expanded;            /* false while the matrix waits for needs outputs */
    struct plan_run *runs;
    size_t n_runs;
    bool fail_fast;
    int max_parallel;
    enum plan_state state;
    enum plan_result result;
    size_t n_finished;        /* runs reported through plan_run_finish() */
};

struct plan {
    const struct wf_workflow *wf; /* borrowed; must outlive the plan */
    char *event_name;
    json_t *github, *vars, *secrets, *inputs;
    json_t *ext_needs;            /* needs resolved by the server (Gitea), or NULL */
    struct plan_job *jobs;        /* ordered by stage, then file order */
    size_t n_jobs;
    int n_stages;
    bool cancelled;               /* the whole run was cancelled */
};

struct plan_opts {
    const char *event_name;  /* default: "push" */
    json_t *github;          /* the github context (borrowed); default: ctx_github_new() */
    json_t *vars, *secrets, *inputs; /* borrowed; default {} */
    const char *only_job;    /* plan only this job and its transitive needs (act -j) */
    json_t *matrix_filter;   /* object key -> array of allowed values as text (act --matrix) */
    /* Needs the server already resolved (Gitea's Task.needs): {job id: {result, outputs}}, with
     * result "success"/"failure"/"cancelled"/"skipped". They join every job's `needs`
     * context and its status functions. Borrowed; NULL = none. */
    json_t *ext_needs;
};

/* Plans w. Returns 0 and a new plan (free with plan_free()), or a negative code with e set
 * (file:line:col where the workflow is at fault). Matrices that do not depend on `needs` are
 * expanded here; the others when their job starts. */
int plan_new(const struct wf_workflow *w, const struct plan_opts *o, struct plan **out,
             struct err *e);
void plan_free(struct plan *p);

/* Expands an evaluated matrix (object, or null for none) into combinations as act's
 * GetMatrixes does. Returns 0 and a new array of objects, or ERR_INVALID with e set. */
int plan_matrix_expand(json_t *matrix, json_t **out, struct err *e);

/* True when job i is waiting and every job it needs is done. */
bool plan_job_ready(const struct plan *p, size_t i);

/* Starts ready job i: expands a deferred matrix and evaluates the job's `if`. On return *run
 * says whether its runs should be executed; when false the job is done (skipped). An error
 * (bad matrix, error in the `if`) marks the job done with failure and is returned. */
int plan_job_start(struct plan *p, size_t i, bool *run, struct err *e);

/* Returns a new object with the job-level contexts for run r of job i: github (with job set),
 * inputs, vars, secrets, needs, strategy, matrix, env (workflow env then job env). */
int plan_run_contexts(const struct plan *p, size_t i, size_t r, json_t **out, struct err *e);

/* As plan_run_contexts(), with the members of github_extra (an object, or NULL) added to the
 * github context before the env is evaluated (github.workspace, known once the job runs). */
int plan_run_contexts_ex(const struct plan *p, size_t i, size_t r, json_t *github_extra,
                         json_t **out, struct err *e);

/* Evaluates job i's `outputs` for run r with the steps context of its finished steps
 * (borrowed) and stores them on the run. github_extra as for plan_run_contexts_ex() (the
 * workspace: outputs may name github.workspace). */
int plan_run_outputs(struct plan *p, size_t i, size_t r, json_t *steps, json_t *github_extra,
                     struct err *e);

/* Records run r of job i as finished; when every run is, the job is done: failure if any run
 * failed, else cancelled if any was, else success. */
void plan_run_finish(struct plan *p, size_t i, size_t r, enum plan_result res);

/* True when every job is done. */
bool plan_done(const struct plan *p);

/* Writes a human-readable plan (stages, jobs, matrix runs, runs-on, needs, if). */
void plan_print(const struct plan *p, FILE *f);

/* Returns the plan as JSON (for --plan --json and tests). */
json_t *plan_to_json(const struct plan *p);

#endif
