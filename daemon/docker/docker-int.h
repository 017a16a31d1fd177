/* docker-int.h: what the docker*.c modules share; not for other callers. */
#ifndef RUNNER_DOCKER_INT_H
#define RUNNER_DOCKER_INT_H

#include "docker.h"
#include "runner/buf.h"

struct docker {
    struct httpc *http;
    char *host;        /* as configured */
    char *unix_path;   /* unix:// endpoint, else NULL */
    char *base_url;    /* http://localhost or http(s)://host:port */
    char *host_header; /* Host: value for hand-written requests */
    char *ca, *cert, *key;
    char api[16];      /* "" until negotiated or pinned */
    bool pinned;
    long timeout_ms;
};

struct dcall;
/* Interprets a successful (2xx) reply; may fill res fields; returns 0 or sets res->rc. */
typedef void (*dcall_post_fn)(struct dcall *c, struct docker_res *res);

struct dcall {
    struct docker *d;
    char *what;
    docker_cb cb;
    void *arg;
    dcall_post_fn post;
    /* for streamed replies (pull, build) */
    struct buf line;
    char *stream_error;
    void (*progress)(const char *status, void *arg);
    /* Each JSON message of the stream without an error (required with stream_lines): status
     * lines for pull and import, output text and the image id for build. */
    void (*on_msg)(struct dcall *c, json_t *msg);
    struct buf text; /* build: "stream" text not yet ending in a newline */
    /* free-form state for multi-step operations */
    void *state;
    int64_t t0; /* CLOCK_REALTIME ns at the start, for log_trace() */
};

struct dcall_opts {
    const char *method;
    const char *path;         /* after the version prefix; NULL with raw_path */
    const char *raw_path;     /* unversioned path (/_ping) */
    const char *content_type;
    const void *body;
    size_t len;
    const char *const *extra_headers;
    long timeout_ms;          /* -1 = none; 0 = d->timeout_ms */
    size_t max_body;
    bool stream_lines;        /* JSON-lines progress stream (pull, import, build): c->on_msg */
    struct httpc_req **req;   /* if set: the request, for httpc_cancel(); valid until the
                                 call's callback has returned */
};

/* Starts a call; c is owned (freed after its callback). Returns 0 or <0 (c freed). */
int dcall_start(struct dcall *c, const struct dcall_opts *o, struct err *e);
struct dcall *dcall_new(struct docker *d, docker_cb cb, void *arg, dcall_post_fn post,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Appends more of a build's "stream" text (NULL: the stream ended) and hands each complete line
 * to c->progress. */
void dcall_text_lines(struct dcall *c, const char *more);
/* Path segment escaping for ids and names. */
char *docker_esc(const char *s);
/* Percent-encoded filters={"label":[label]}; new string. */
char *docker_label_filter(const char *label);

#endif
