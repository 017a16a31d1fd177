/* scm-job.c: scm_checkout() and scm_fetch_action() off the event loop: a job on libuv's thread
 * pool with its own copies of the inputs, progress lines queued for the loop. */
#include "scm-int.h"

#include "runner/xalloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCM_MAX_QUEUED_LINES 1000

struct scm_job {
    uv_work_t work;   /* ->data: the job */
    uv_async_t async; /* progress lines from the worker; ->data: the job */
    bool action;
    /* Owned copies of the inputs; req's strings point at them. */
    struct scm_checkout_req req;
    char *cache_dir, *url, *token, *ca_file, *ref, *sha, *dest;
    volatile bool cancel; /* set on the loop, read by the worker */
    /* Written by the worker only. */
    int rc;
    struct err err;
    char *out_dir, *out_sha;
    /* Progress lines waiting for the loop. */
    pthread_mutex_t mu;
    char **lines;
    size_t nlines, caplines;
    unsigned int dropped;
    scm_progress_fn progress;
    scm_done_fn done;
    void *arg;
};

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void
job_free(struct scm_job *j)
{
    for (size_t i = 0; i < j->nlines; i++)
        free(j->lines[i]);
    free(j->lines);
    pthread_mutex_destroy(&j->mu);
    free(j->cache_dir);
    free(j->url);
    if (j->token)
        explicit_bzero(j->token, strlen(j->token));
    free(j->token);
    free(j->ca_file);
    free(j->ref);
    free(j->sha);
    free(j->dest);
    free(j->out_dir);
    free(j->out_sha);
    free(j);
}

static void
on_job_closed(uv_handle_t *h)
{
    job_free(h->data);
}

/* Worker thread: queue the line for the loop. */
static void
on_job_progress(void *arg, const char *line)
{
    struct scm_job *j = arg;

    pthread_mutex_lock(&j->mu);
    if (j->nlines >= SCM_MAX_QUEUED_LINES) {
        j->dropped++;
    } else {
        if (j->nlines == j->caplines) {
            j->caplines = j->caplines ? 2 * j->caplines : 16;
            j->lines = xreallocarray(j->lines, j->caplines, sizeof *j->lines);
        }
        j->lines[j->nlines++] = xstrdup(line);
    }
    pthread_mutex_unlock(&j->mu);
    uv_async_send(&j->async);
}

/* Loop: hand the queued lines to the caller. */
static void
job_deliver(struct scm_job *j)
{
    char **lines;
    size_t n;
    unsigned int dropped;

    pthread_mutex_lock(&j->mu);
    lines = j->lines;
    n = j->nlines;
    dropped = j->dropped;
    j->lines = NULL;
    j->nlines = j->caplines = 0;
    j->dropped = 0;
    pthread_mutex_unlock(&j->mu);
    for (size_t i = 0; i < n; i++) {
        if (j->progress)
            j->progress(j->arg, lines[i]);
        free(lines[i]);
    }
    free(lines);
    if (dropped && j->progress) {
        char line[64];

        snprintf(line, sizeof line, "(%u progress lines dropped)", dropped);
        j->progress(j->arg, line);
    }
}

static void
on_job_async(uv_async_t *h)
{
    job_deliver(h->data);
}

static void
on_job_work(uv_work_t *w)
{
    struct scm_job *j = w->data;

    if (j->action)
        j->rc = scm_fetch_action(j->cache_dir, &j->req.remote, j->ref, on_job_progress, j,
                                 &j->cancel, &j->out_dir, &j->out_sha, &j->err);
    else
        j->rc = scm_checkout(&j->req, on_job_progress, j, &j->cancel, &j->out_sha, &j->err);
}

static void
on_job_after(uv_work_t *w, int status)
{
    struct scm_job *j = w->data;

    if (status == UV_ECANCELED) {
        char *clean = NULL, *origin = NULL;

        scm_url_parse(j->url, &clean, &origin);
        j->rc = err_set(&j->err, -ECANCELED, "%s: canceled", clean);
        free(clean);
        free(origin);
    }
    job_deliver(j);
    j->done(j->arg, j->rc, &j->err, j->out_dir, j->out_sha);
    uv_close((uv_handle_t *)&j->async, on_job_closed);
}

/* A job with copies of the remote's strings, its async handle ready. */
static struct scm_job *
job_new(uv_loop_t *loop, const struct scm_remote *remote, scm_progress_fn progress,
        scm_done_fn done, void *arg, int *rc_out, struct err *e)
{
    struct scm_job *j = xcalloc(1, sizeof *j);
    int rc;

    pthread_mutex_init(&j->mu, NULL);
    j->url = dup_or_null(remote->url);
    j->token = dup_or_null(remote->token);
    j->ca_file = dup_or_null(remote->ca_file);
    j->req.remote.url = j->url;
    j->req.remote.token = j->token;
    j->req.remote.ca_file = j->ca_file;
    j->req.remote.insecure = remote->insecure;
    j->progress = progress;
    j->done = done;
    j->arg = arg;
    j->work.data = j;
    j->async.data = j;
    if ((rc = uv_async_init(loop, &j->async, on_job_async)) < 0) {
        *rc_out = err_set(e, rc, "uv_async_init: %s", uv_strerror(rc));
        job_free(j);
        return NULL;
    }
    return j;
}

static int
job_queue(uv_loop_t *loop, struct scm_job *j, struct scm_job **out, struct err *e)
{
    int rc = uv_queue_work(loop, &j->work, on_job_work, on_job_after);

    if (rc < 0) {
        err_set(e, rc, "uv_queue_work: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&j->async, on_job_closed);
        if (out)
            *out = NULL;
        return rc;
    }
    if (out)
        *out = j;
    return 0;
}

int
scm_checkout_start(uv_loop_t *loop, const struct scm_checkout_req *req,
                   scm_progress_fn progress, scm_done_fn done, void *arg, struct scm_job **out,
                   struct err *e)
{
    int rc = 0;
    struct scm_job *j = job_new(loop, &req->remote, progress, done, arg, &rc, e);

    if (j == NULL)
        return rc;
    j->cache_dir = dup_or_null(req->cache_dir);
    j->ref = dup_or_null(req->ref);
    j->sha = dup_or_null(req->sha);
    j->dest = dup_or_null(req->dest);
    j->req.cache_dir = j->cache_dir;
    j->req.ref = j->ref;
    j->req.sha = j->sha;
    j->req.dest = j->dest;
    j->req.fetch_depth = req->fetch_depth;
    j->req.clean = req->clean;
    j->req.submodules = req->submodules;
    j->req.recursive = req->recursive;
    j->req.lfs = req->lfs;
    j->req.persist_credentials = req->persist_credentials;
    return job_queue(loop, j, out, e);
}

int
scm_fetch_action_start(uv_loop_t *loop, const char *cache_dir, const struct scm_remote *remote,
                       const char *ref, scm_progress_fn progress, scm_done_fn done, void *arg,
                       struct scm_job **out, struct err *e)
{
    int rc = 0;
    struct scm_job *j = job_new(loop, remote, progress, done, arg, &rc, e);

    if (j == NULL)
        return rc;
    j->action = true;
    j->cache_dir = dup_or_null(cache_dir);
    j->ref = dup_or_null(ref);
    return job_queue(loop, j, out, e);
}

void
scm_job_cancel(struct scm_job *j)
{
    if (j == NULL)
        return;
    j->cancel = true;
    uv_cancel((uv_req_t *)&j->work); /* not started yet: after_work gets UV_ECANCELED */
}
