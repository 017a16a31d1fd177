/* task-int.h: what task.c (the task's life) and task-sink.c (what its job run says, spooled to
 * the state database) share; not for other callers (they use task.h). */
#ifndef RUNNERD_TASK_INT_H
#define RUNNERD_TASK_INT_H

#include "jobrun.h"
#include "task.h"

#include <stdbool.h>
#include <stddef.h>

/* task-sink.c: the sink a task's job run reports to (sink_arg: the task). */
extern const struct jobrun_sink task_sink;

/* task-sink.c, the step records (row.steps). Makes row.steps n fresh records unless it already
 * holds n (a recovered task keeps its own). */
void task_steps_fit(struct rtask *rt, size_t n);
/* At the job's end, the steps that never ended: cancelled (skipped when the job was). */
void task_steps_end(struct rtask *rt, int result);
/* The job was lost: a step that was running failed. */
void task_steps_lost(struct rtask *rt);

/* task-sink.c, the spool. One row of the runner's own (set up, errors, the result) in step
 * (-1: none), masked, and kept even when the spool is full. */
void task_rowf(struct rtask *rt, int step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Rows were lost while the spool was full: one row says how many. */
void task_note_lost(struct rtask *rt);
/* Writes pending rows and the task record to the store. */
int task_flush(struct rtask *rt, struct err *e);
/* The same; a failure is logged when the spool starts failing, not at every retry. */
void task_flush_or_warn(struct rtask *rt);

/* task.c: the job is over (or never ran): records the result (why: the reason, or NULL); the
 * reporter delivers it. */
void task_finish(struct rtask *rt, int result, const char *why);

/* The label value for metrics ("none" when empty). */
static inline const char *
task_metric_label(const char *label)
{
    return label && *label ? label : "none";
}

#endif
