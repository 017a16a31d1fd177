/* jobrun-setup.c: the job's own settings (jobrun-int.h), evaluated before its executor is set
 * up: the job-level contexts and env, the job container's env, options and volumes (options
 * checked against the label's policy), services, and timeout-minutes; and the job container's
 * image for the front ends (jobrun_container_image()). */
#include "jobrun-int.h"

#include "dockeropts.h"
#include "profile.h"
#include "runner/xalloc.h"
#include "yeval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A step or job without a limit is not what the workflow asked for. */
int
jr_minutes(const char *file, const struct ynode *n, const json_t *v, double *out, struct err *e)
{
    char num[64];
    const char *text = json_string_value(v), *why;

    if (json_is_number(v)) {
        snprintf(num, sizeof num, "%.17g", json_number_value(v));
        text = num;
    }
    why = wf_minutes_problem(text, out);
    if (why == NULL)
        return 0;
    char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    err_set(e, ERR_INVALID, "%s:%d:%d: timeout-minutes: %s, got %s", file, n->pos.line,
            n->pos.col, why, got ? got : "null");
    free(got);
    return ERR_INVALID;
}

/* Checks a workflow's evaluated docker run options against the label's policy
 * (profile_check_options()); the message names n's file:line:col. */
static int
jr_check_options(struct jobrun *jr, const struct ynode *n, const char *options,
                 const char *what, unsigned flags, struct err *e)
{
    int rc = profile_check_options(jr->xjob.profile, options, what, flags, e);

    if (rc < 0 && n)
        err_prefix(e, "%s:%d:%d: ", jr->file, n->pos.line, n->pos.col);
    return rc;
}

/* For plan_run_contexts_ex() and plan_run_outputs(). */
json_t *
jr_github_extra(const struct jobrun *jr)
{
    if (jr->x == NULL || jr->x->workspace == NULL)
        return NULL;
    return json_pack("{s:s}", "workspace", jr->x->workspace);
}

/* Sets the job env from jr->base: workflow env < job env < config env, plus ACT. */
static void
set_job_env(struct jobrun *jr)
{
    json_t *env = json_object_get(jr->base, "env");

    json_decref(jr->job_env);
    jr->job_env = env ? json_copy(env) : json_object();
    if (jr->config_env)
        json_object_update(jr->job_env, jr->config_env);
    if (!json_object_get(jr->job_env, "ACT"))
        json_object_set_new(jr->job_env, "ACT", json_string("true"));
}

/* Workflow and job env see a complete github context (`${{ github.workspace }}/build` is the
 * workspace's build directory, not "/build"), as act's and GitHub's do. */
int
jr_complete_job_contexts(struct jobrun *jr, struct err *e)
{
    json_t *extra = jr_github_extra(jr), *base = NULL;
    int rc;

    if (extra == NULL)
        extra = json_pack("{s:s}", "workspace", "");
    rc = plan_run_contexts_ex(jr->plan, jr->job, jr->run, extra, &base, e);
    json_decref(extra);
    if (rc < 0)
        return rc;
    json_decref(jr->base);
    jr->base = base;
    set_job_env(jr);
    return 0;
}

int
jr_setup(struct jobrun *jr, const struct jobrun_opts *o, struct err *e)
{
    int rc;

    /* A container executor knows its workspace before setup (and a resumed job's executor
     * knows it from its description): the job container's env, volumes and options may name
     * github.workspace. */
    json_t *extra = jr_github_extra(jr);
    rc = plan_run_contexts_ex(o->plan, o->job, o->run, extra, &jr->base, e);
    json_decref(extra);
    if (rc < 0)
        return rc;
    jr->config_env = o->config_env ? json_incref(o->config_env) : NULL;
    set_job_env(jr);
    /* The job container's env. */
    const struct ynode *c = jr->wj->container;
    if (c && c->kind == YNODE_MAP && ynode_get(c, "env")) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, ynode_get(c, "env"), &ee, &jr->container_env, e);
        if (rc < 0)
            return rc;
        if (!json_is_object(jr->container_env)) {
            json_decref(jr->container_env);
            jr->container_env = NULL;
        }
    }
    jr->xjob.env = jr->container_env;
    if (c && c->kind == YNODE_MAP && ynode_get(c, "options")) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_string(jr->file, ynode_get(c, "options"), &ee, &jr->options, e);
        if (rc == 0 && jr->xjob.image)
            rc = jr_check_options(jr, ynode_get(c, "options"), jr->options, "container.options",
                                  DOCKEROPTS_JOB, e);
        if (rc < 0)
            return rc;
    }
    if (o->container_options && *o->container_options) {
        /* The runner's options first, so the job's own (later) win where they overlap. */
        char *both = xasprintf("%s %s", o->container_options, jr->options ? jr->options : "");
        free(jr->options);
        jr->options = both;
    }
    jr->xjob.options = jr->options;
    if (c && c->kind == YNODE_MAP && ynode_get(c, "volumes")) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, ynode_get(c, "volumes"), &ee, &jr->container_volumes, e);
        if (rc < 0)
            return rc;
        jr->xjob.volumes = json_is_array(jr->container_volumes) ? jr->container_volumes : NULL;
    }
    if (jr->wj->services) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, jr->wj->services, &ee, &jr->services, e);
        const char *sid;
        json_t *sv;
        json_object_foreach(json_is_object(jr->services) ? jr->services : NULL, sid, sv) {
            const char *so = json_string_value(json_object_get(sv, "options"));
            const struct ynode *sn = ynode_get(jr->wj->services, sid);
            char *what = xasprintf("services.%s.options", sid);
            if (rc == 0 && so && *so)
                rc = jr_check_options(jr, sn && sn->kind == YNODE_MAP ? ynode_get(sn, "options")
                                                                     : jr->wj->services,
                                      so, what, 0, e);
            free(what);
        }
        if (rc < 0)
            return rc;
        jr->xjob.services = jr->services;
    }
    /* Job timeout. */
    if (jr->wj->timeout_minutes) {
        json_t *v = NULL;
        double d = 0;
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, jr->wj->timeout_minutes, &ee, &v, e);
        if (rc == 0)
            rc = jr_minutes(jr->file, jr->wj->timeout_minutes, v, &d, e);
        json_decref(v);
        if (rc < 0)
            return rc;
        jr->timeout_minutes = d;
    }
    return 0;
}

int
jobrun_container_image(const struct plan *p, size_t job, size_t run, char **out, struct err *e)
{
    const struct ynode *c = p->jobs[job].wf->container;
    const struct ynode *img;
    json_t *ctx = NULL;
    int rc;

    *out = NULL;
    if (c == NULL)
        return 0;
    img = c->kind == YNODE_MAP ? ynode_get(c, "image") : c;
    if (img == NULL)
        return 0;
    rc = plan_run_contexts(p, job, run, &ctx, e);
    if (rc < 0)
        return rc;
    struct expr_env ee = {.contexts = ctx};
    rc = yeval_string(p->wf->file, img, &ee, out, e);
    json_decref(ctx);
    if (rc == 0 && *out && **out == '\0') {
        free(*out);
        *out = NULL;
    }
    return rc;
}

