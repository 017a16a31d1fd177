/* wf.h: the workflow model. A workflow file parsed into typed structs; every field keeps its
 * source position. Values that are evaluated later (env, with, matrix, runs-on, container, ...)
 * stay YAML nodes, owned by the workflow. */
#ifndef WF_H
#define WF_H

#include "runner/err.h"
#include "yamldoc.h"

#include <stdbool.h>
#include <stddef.h>

/* A string field and where it was written; v == NULL when the key is absent. */
struct wf_str {
    char *v;
    struct ypos pos;
};

/* Diagnostics: every problem found, in file order, each "file:line:col: message". */
struct wf_diag {
    char **msgs;
    size_t n;
};
void wf_diag_free(struct wf_diag *d);

enum wf_step_kind {
    WF_STEP_RUN,
    WF_STEP_USES,        /* a remote action owner/repo[/path]@ref */
    WF_STEP_USES_LOCAL,  /* ./path */
    WF_STEP_USES_DOCKER, /* docker://image */
};

struct wf_step {
    struct ypos pos;
    int index;            /* 0-based position in the job's steps */
    enum wf_step_kind kind;
    struct wf_str id;     /* as written; NULL when absent */
    char *eff_id;         /* the id used in the steps context: id, or when absent the step's
                           * zero-based index as a string ("0", "1", ...) as act does */
    struct wf_str name, if_, run, shell, working_directory, uses;
    struct ynode *with;              /* map or NULL */
    struct ynode *env;               /* map, a "${{ }}" scalar, or NULL */
    struct ynode *continue_on_error; /* scalar or NULL */
    struct ynode *timeout_minutes;   /* scalar or NULL */
};

struct wf_need {
    char *id;
    struct ypos pos;
};

struct wf_job {
    char *id;
    struct ypos pos;                 /* of the job's key */
    struct wf_str name, if_;
    struct ynode *runs_on;           /* scalar, seq, or {group, labels}; NULL when absent */
    struct wf_need *needs;
    size_t n_needs;
    struct ynode *env;               /* map, "${{ }}" scalar, or NULL */
    struct wf_str defaults_shell, defaults_working_directory;
    struct ynode *container;         /* scalar (image) or map; NULL when absent */
    struct ynode *services;          /* map id -> container-shaped map; NULL when absent */
    struct ynode *outputs;           /* map name -> string; NULL when absent */
    struct ynode *timeout_minutes;   /* scalar or NULL */
    struct ynode *continue_on_error; /* scalar or NULL */
    struct ynode *strategy;          /* the whole strategy node or NULL */
    struct ynode *matrix;            /* strategy.matrix (map or "${{ }}" scalar) or NULL */
    struct ynode *fail_fast;         /* strategy.fail-fast scalar or NULL (default true) */
    struct ynode *max_parallel;      /* strategy.max-parallel scalar or NULL */
    struct ynode *environment, *permissions, *concurrency; /* accepted, not used */
    struct wf_str uses;              /* reusable workflow call (rejected by the loader for now) */
    struct wf_step *steps;
    size_t n_steps;
};

struct wf_event {
    char *name;
    struct ypos pos;
    struct ynode *config; /* the event's mapping (types, branches, inputs, ...) or NULL */
};

struct wf_workflow {
    char *file;                      /* the name used in messages (as given to wf_parse) */
    struct wf_str name, run_name;    /* name.v defaults to the file's base name */
    struct wf_event *events;
    size_t n_events;
    struct ynode *on;                /* the raw `on` node */
    struct ynode *env;               /* map or NULL */
    struct wf_str defaults_shell, defaults_working_directory;
    struct ynode *permissions, *concurrency;
    struct wf_job *jobs;             /* in file order */
    size_t n_jobs;
    struct ynode *root;              /* owns every node above */
};

/* Largest workflow file wf_load() reads. */
#define WF_MAX_FILE_SIZE (4u << 20)

/* Parses and validates a workflow. file names the workflow in messages.
 * Returns 0 and a new workflow in *out (free with wf_free()), or ERR_INVALID with every
 * problem in diag (caller frees with wf_diag_free()) and e set to the first one. Messages are
 * appended to diag (start from `struct wf_diag d = {0}`; diag may be NULL), sorted by position,
 * at most 1000 (then one "too many problems" line); e->msg may be cut at 255 bytes. Checks:
 * unknown keys, wrong types, step run/uses, duplicate step ids, job id syntax, needs naming
 * a missing job, needs cycles (naming the cycle), malformed expressions. Never crashes. */
int wf_parse(const char *file, const char *data, size_t len, struct wf_workflow **out,
             struct wf_diag *diag, struct err *e);

/* Reads path and calls wf_parse() with path as the file name. */
int wf_load(const char *path, struct wf_workflow **out, struct wf_diag *diag, struct err *e);

void wf_free(struct wf_workflow *w);

/* Checks the capabilities that w's literal container.options and services.*.options add
 * (--cap-add) against allowed (NULL-terminated upper-case names without CAP_, "ALL": any;
 * NULL: none may be added): the runner's check before any job of w runs, once it knows what
 * its labels allow (options that are expressions are checked when the job starts). Returns 0,
 * or ERR_INVALID with one "file:line:col: jobs.ID.container.options: --cap-add X is not
 * allowed ..." per refusal appended to diag and e set to the first. */
int wf_check_caps(const struct wf_workflow *w, char *const *allowed, struct wf_diag *diag,
                  struct err *e);

/* The largest timeout-minutes (job or step) accepted: 30 days. */
#define WF_MAX_TIMEOUT_MINUTES 43200
#define WF_STR_(x) #x
#define WF_STR(x) WF_STR_(x)

/* Why text (a timeout-minutes value, literal or evaluated) is not a positive number of minutes
 * of at most WF_MAX_TIMEOUT_MINUTES ("expected a positive number of minutes", ...), or NULL
 * with *minutes set (minutes may be NULL). */
const char *wf_minutes_problem(const char *text, double *minutes);

/* Parses a sequence of steps with exactly the keys and checks of a job's steps (run vs uses,
 * uses forms, ids and duplicates, expressions, types); eff_id defaults to the index. For
 * composite actions' runs.steps. file names the source in messages and data/len are its bytes
 * (for the position of a bad ${{ }}; data may be NULL); path prefixes each message
 * ("runs.steps" gives "file:3:7: runs.steps[0]: ..."). seq may be NULL or a YAML null (no
 * steps), else it must be a sequence. Returns 0 and a new array in *steps and *n (free with
 * wf_steps_free()), or ERR_INVALID with diag and e filled as wf_parse() does and *steps = NULL,
 * *n = 0. The steps' node fields (with, env, continue_on_error, timeout_minutes) are borrowed
 * from seq: seq's tree must outlive them. */
int wf_parse_steps(const char *file, const char *data, size_t len, const char *path,
                   struct ynode *seq, struct wf_step **steps, size_t *n, struct wf_diag *diag,
                   struct err *e);

/* Frees steps from wf_parse_steps() (their strings and the array, not the borrowed nodes).
 * NULL is fine. */
void wf_steps_free(struct wf_step *steps, size_t n);

/* Returns the job with that id (exact), or NULL. Borrowed. */
const struct wf_job *wf_job_find(const struct wf_workflow *w, const char *id);

#endif
