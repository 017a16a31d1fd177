/* jobaction.c: an action step's own state (jobaction-int.h): freeing it, ending the step it
 * is, and the small helpers the fetching (jobaction-fetch.c) and running (jobaction-run.c)
 * share. The uses: steps as a whole are described in jobaction-fetch.c. */
#include "jobaction-int.h"

#include "expr.h"
#include "fstree.h"
#include "runner/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
act_log_step(struct jobrun *jr)
{
    return jr->act && jr->act->pre ? -1 : (int)jr->cur;
}

static void
remove_work(uv_work_t *w)
{
    struct err e = {0};

    fstree_remove(w->data, &e);
}

static void
remove_after(uv_work_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

void
act_remove_later(struct jobrun *jr, const char *path)
{
    uv_work_t *w = xcalloc(1, sizeof *w);

    w->data = xstrdup(path);
    if (uv_queue_work(jr->loop, w, remove_work, remove_after) < 0)
        remove_after(w, 0);
}

void
act_free(struct jr_action *a)
{
    if (a == NULL)
        return;
    free(a->uses);
    action_ref_free(&a->ref);
    action_free(a->act);
    free(a->dir);
    free(a->host_dir);
    free(a->sha);
    free(a->image_id);
    free(a->ref_name);
    free(a->tmp);
    free(a->src);
    free(a->dest);
    buf_free(&a->cap);
    free(a);
}

void
jr_action_free(struct jobrun *jr)
{
    act_free(jr->act); /* never busy here: finish_job() waits for it */
    jr->act = NULL;
}

bool
jr_action_busy(struct jobrun *jr)
{
    return jr->act && (jr->act->scm || jr->act->build || jr->act->stage == ST_PUT ||
                       jr->act->stage == ST_LOAD || jr->act->stage == ST_CTX);
}

bool
act_landed_closing(struct jobrun *jr)
{
    if (jr->phase != PH_CLOSING)
        return false;
    if (jr->act && jr->act->tmp)
        act_remove_later(jr, jr->act->tmp);
    act_free(jr->act);
    jr->act = NULL;
    executor_close(jr->x);
    return true;
}

void
act_end(struct jobrun *jr, bool ok)
{
    bool pre = jr->act && jr->act->pre;

    if (jr->act && jr->act->tmp)
        act_remove_later(jr, jr->act->tmp);
    act_free(jr->act);
    jr->act = NULL;
    if (pre) {
        if (!ok)
            jr->job_failed = jr->pre_failed = true;
        jr->phase = PH_STEPS;
        jr->core->next_step(jr);
        return;
    }
    jr->phase = PH_RUNNING;
    jr->core->end_step(jr, ok);
}

void
act_fail(struct jobrun *jr, const char *msg)
{
    jr_emit(jr, act_log_step(jr), JOBRUN_ERROR, msg, strlen(msg));
    act_end(jr, false);
}

void
act_failf(struct jobrun *jr, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    act_fail(jr, msg);
}

char *
act_with_str(json_t *with, const char *key)
{
    json_t *v = json_object_get(with, key);
    char *s = v ? expr_to_string(v) : NULL;

    if (s && *s == '\0') {
        free(s);
        s = NULL;
    }
    return s;
}

bool
act_with_bool(json_t *with, const char *key, bool def)
{
    char *s = act_with_str(with, key);
    bool v = def;

    if (s)
        v = strcasecmp(s, "true") == 0;
    free(s);
    return v;
}

const char *
act_gh_str(json_t *ctx, const char *key)
{
    const char *s = json_string_value(json_object_get(json_object_get(ctx, "github"), key));

    return s && *s ? s : NULL;
}

void
act_progress(void *arg, const char *line)
{
    struct jobrun *jr = arg;

    jr_emit(jr, act_log_step(jr), JOBRUN_INFO, line, strlen(line));
}

bool
act_is_checkout(const char *uses)
{
    return strncasecmp(uses, "actions/checkout@", 17) == 0;
}
