/* jobaction.h: the uses: steps of a job run, as the run core (jobrun.c) drives them: an
 * action step (actions/checkout, a remote or local action) is started, gets the agent events
 * meant for it, can be cancelled; pre stages run before the job's first step and post stages
 * after its last. Private to daemon/job; the action code goes on with the job only through
 * struct jr_core (jobrun-int.h). */
#ifndef JOBACTION_H
#define JOBACTION_H

#include "jobrun-int.h"

/* Starts the current uses: step (remote or local action, actions/checkout). */
void jr_action_start(struct jobrun *jr, json_t *ctx);
/* An agent event while an action step is being prepared (phase PH_ACTION). */
void jr_action_event(struct jobrun *jr, const struct agentconn_event *ev);
/* Asks what an action step is waiting for to stop (cancellation). */
void jr_action_cancel(struct jobrun *jr);
/* True while a fetch, a read or a copy is in flight: the executor must not close yet. */
bool jr_action_busy(struct jobrun *jr);
void jr_action_free(struct jobrun *jr);
/* Starts (or goes on looking for) the next pre stage; false once none is left to run. */
bool jr_pre_next(struct jobrun *jr);
/* Starts the next post stage; false when none is left. */
bool jr_post_next(struct jobrun *jr);
/* A pre or post stage's agent run ended (m: NULL when the agent refused it). */
void jr_post_exited(struct jobrun *jr, const struct agentp_msg *m);
/* A pre or post stage ended (ok: it succeeded): the job goes on. */
void jr_stage_end(struct jobrun *jr, bool ok);

#endif
