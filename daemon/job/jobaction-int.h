/* jobaction-int.h: an action step while it is fetched, read and started; shared by
 * jobaction.c (its state, its end), jobaction-fetch.c (fetching and reading actions,
 * actions/checkout, building a docker action's image, pre stages' look) and jobaction-run.c
 * (running node, docker and composite actions, pre and post stages). Private to daemon/job. */
#ifndef JOBACTION_INT_H
#define JOBACTION_INT_H

#include "action.h"
#include "jobaction.h"
#include "runner/buf.h"

enum act_stage {
    ST_NONE,
    ST_FETCH,    /* scm: the action or the checkout */
    ST_PREP,     /* the agent makes (and for a checkout, empties) the destination */
    ST_PUT,      /* executor_put_dir() */
    ST_LOAD,     /* reading a fetched action's action.yml (off the loop) */
    ST_READ,     /* the agent prints a local action's action.yml */
    ST_CTX,      /* the job container sends a local docker action's files */
    ST_BUILD,    /* the engine builds a docker action's image from its Dockerfile */
};

struct jr_action {
    enum act_stage stage;
    bool checkout;
    char *uses;            /* interpolated */
    struct action_ref ref;
    struct action *act;
    char *dir;             /* the action's directory as the steps see it */
    char *host_dir;        /* remote: its directory on the host */
    char *sha;             /* resolved commit */
    char *image_id;        /* a docker action built from its Dockerfile: the image */
    char *ref_name;        /* checkout: the ref output */
    struct scm_job *scm;
    struct actbuild *build;
    char *tmp;             /* checkout: a directory on the host, removed afterwards */
    char *src, *dest;      /* the copy in ST_PREP/ST_PUT */
    bool clean;
    struct buf cap;        /* stdout of an agent run */
    bool cap_over;
    bool cancelled;        /* stop at the next point */
    bool pre;              /* fetched for its pre stage, before the job's first step */
};

/* ---------------------------------------------------------------- jobaction.c */

/* Where the action machinery's lines go: the step's log, or before the first step (pre
 * stages) the job's. */
int act_log_step(struct jobrun *jr);
/* A progress line of a fetch or an image build (scm.h's, actbuild.h's callback). */
void act_progress(void *arg, const char *line);
/* Removes a host directory off the loop; nothing waits for it. */
void act_remove_later(struct jobrun *jr, const char *path);
void act_free(struct jr_action *a);
/* A fetch or a copy landed after the job ended (the agent was lost): finish the close that
 * finish_job() left. True when that is what happened. */
bool act_landed_closing(struct jobrun *jr);
/* Ends the action step: the step's own result. For a pre stage's fetch, the job goes on
 * looking for pre stages; a failure there fails the job before any step runs (act's "Set up
 * job"). */
void act_end(struct jobrun *jr, bool ok);
void act_fail(struct jobrun *jr, const char *msg);
void __attribute__((format(printf, 2, 3))) act_failf(struct jobrun *jr, const char *fmt, ...);
/* A with value as a string: strings as they are, numbers and booleans as text; NULL when
 * absent, null or empty. New string. */
char *act_with_str(json_t *with, const char *key);
bool act_with_bool(json_t *with, const char *key, bool def);
/* A non-empty github context member, or NULL. */
const char *act_gh_str(json_t *ctx, const char *key);
bool act_is_checkout(const char *uses);

/* ---------------------------------------------------------------- jobaction-run.c */

/* The action is read, its files are where the steps run and its image (if built) is there:
 * runs its main stage, or its pre stage when fetched for it. */
void act_run(struct jobrun *jr);

#endif
