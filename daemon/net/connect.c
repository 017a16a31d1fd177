/* connect.c: Connect unary calls with JSON bodies over httpc (see connect.h;
 * doc/gitea-protocol.md §1). A call is one POST; its outcome is classified once here, so
 * callers see a decoded response, or a code, a one-line message and an rpc_errclass. */
#include "connect.h"

#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CONNECT_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define CONNECT_DEFAULT_TIMEOUT_MS 30000L
#define CONNECT_MAX_BODY (64u * 1024 * 1024) /* a task with a big context still fits */
#define CONNECT_SNIPPET 120                   /* bytes of a non-Connect error body we quote */

struct connect {
    struct httpc *http;
    char *base;
    char *uuid, *token;
    char *version;
    char *ca_file;
    bool insecure;
    long connect_timeout_ms, timeout_ms;
    bool verbose;
    struct connect_call *calls; /* in flight */
    size_t ncalls;
    bool freeing; /* connect_free() ran; the last completing call frees c */
};

struct connect_call {
    struct connect *c;
    struct httpc_req *req; /* NULL once httpc has completed it */
    const struct rpc_type *resp_type;
    char proc[48]; /* "FetchTask": the last element of the path, for messages */
    connect_done_fn done;
    void *arg;
    struct connect_call *prev, *next;
};

static void
dup_opt(char **dst, const char *s)
{
    free(*dst);
    *dst = s && *s ? xstrdup(s) : NULL;
}

/* Frees c itself; only once no call is in flight. */
static void
connect_destroy(struct connect *c)
{
    free(c->base);
    free(c->uuid);
    free(c->token);
    free(c->version);
    free(c->ca_file);
    free(c);
}

struct connect *
connect_new(struct httpc *http, const struct connect_opts *o)
{
    struct connect *c = xcalloc(1, sizeof *c);
    const char *inst = o->instance ? o->instance : "";
    size_t n = strlen(inst);

    while (n > 0 && inst[n - 1] == '/')
        n--;
    c->http = http;
    c->base = xasprintf("%.*s/api/actions", (int)n, inst);
    dup_opt(&c->uuid, o->uuid);
    dup_opt(&c->token, o->token);
    c->version = xstrdup(o->version && *o->version ? o->version : RUNNERD_VERSION);
    dup_opt(&c->ca_file, o->ca_file);
    c->insecure = o->insecure;
    c->connect_timeout_ms =
        o->connect_timeout_ms > 0 ? o->connect_timeout_ms : CONNECT_DEFAULT_CONNECT_TIMEOUT_MS;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : CONNECT_DEFAULT_TIMEOUT_MS;
    c->verbose = o->verbose;
    return c;
}

void
connect_free(struct connect *c)
{
    if (c == NULL || c->freeing)
        return;
    if (c->calls == NULL) {
        connect_destroy(c);
        return;
    }
    /* Each canceled call completes from the loop; the last one frees c (on_http_done). */
    c->freeing = true;
    for (struct connect_call *k = c->calls; k != NULL; k = k->next)
        if (k->req != NULL)
            httpc_cancel(k->req);
}

void
connect_set_identity(struct connect *c, const char *uuid, const char *token)
{
    dup_opt(&c->uuid, uuid);
    dup_opt(&c->token, token);
}

const char *
connect_base(const struct connect *c)
{
    return c->base;
}

size_t
connect_active(const struct connect *c)
{
    return c->ncalls;
}

void
connect_cancel(struct connect_call *call)
{
    if (call != NULL && call->req != NULL)
        httpc_cancel(call->req);
}

static void
call_unlink(struct connect_call *k)
{
    struct connect *c = k->c;

    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    c->ncalls--;
}

/* A server error: "Declare: HTTP 500 unknown: rpc error: code = Unauthenticated desc = ...".
 * The message is the server's text, escaped (it is untrusted and goes to logs). When the body
 * was not a Connect error (a proxy page, Go's "404 page not found"), its first line is quoted. */
static void
server_error(struct connect_result *res, const char *proc, const struct httpc_result *h,
             const struct rpc_error *er)
{
    const char *text = er->message;
    size_t len = strlen(text);
    char *esc;

    if (!er->connect && h->body_len > 0) {
        const char *nl = memchr(h->body, '\n', h->body_len);

        text = h->body;
        len = nl ? (size_t)(nl - h->body) : h->body_len;
        while (len > 0 && (text[len - 1] == '\r' || text[len - 1] == ' '))
            len--;
        if (len > CONNECT_SNIPPET)
            len = CONNECT_SNIPPET;
    }
    esc = log_escape(text, len);
    if (*esc)
        err_set(&res->err, -EREMOTEIO, "%s: HTTP %ld %s: %s", proc, h->status, er->code, esc);
    else
        err_set(&res->err, -EREMOTEIO, "%s: HTTP %ld %s", proc, h->status, er->code);
    free(esc);
    res->rc = -EREMOTEIO;
    res->cls = rpc_error_class((int)h->status, er->code, er->message);
}

/* httpc's completion: classify, decode, hand the result to the caller, and free the call (and
 * the client, when connect_free() is waiting for this last call). */
static void
on_http_done(const struct httpc_result *h, void *arg)
{
    struct connect_call *k = arg;
    struct connect *c = k->c;
    struct connect_result res;
    struct rpc_error er = {0};
    bool had_error_body = false;
    bool was_freeing;

    memset(&res, 0, sizeof res);
    res.status = h->status;
    k->req = NULL;
    call_unlink(k);
    if (h->rc < 0) {
        /* no usable answer: refused, reset, timed out, canceled, too big */
        res.rc = h->rc;
        err_set(&res.err, h->rc, "%s: %s", k->proc, h->err.msg);
        res.cls = RPC_ERR_UNAVAILABLE;
    } else if (h->status != 200) {
        rpc_error_decode((int)h->status, h->body, h->body_len, &er);
        had_error_body = true;
        server_error(&res, k->proc, h, &er);
        res.rpc = &er;
    } else {
        void *msg = xcalloc(1, rpc_type_size(k->resp_type));
        struct err de = {0};

        if (rpc_decode_body(k->resp_type, h->body, h->body_len, msg, &de) < 0) {
            free(msg);
            res.rc = err_set(&res.err, ERR_PROTO, "%s: bad response: %s", k->proc, de.msg);
            res.cls = rpc_error_class((int)h->status, NULL, NULL);
        } else {
            res.resp = msg;
        }
    }
    if (res.rc < 0)
        log_debug("connect: %s failed: %s (%s)", k->proc, res.err.msg,
                  rpc_errclass_name(res.cls));
    /* done may free c (connect_free() with nothing else in flight): do not touch c after it
     * unless connect_free() had already run, in which case it cannot run again. */
    was_freeing = c->freeing;
    k->done(&res, k->arg);
    if (had_error_body)
        rpc_error_clear(&er);
    free(k);
    if (was_freeing && c->calls == NULL)
        connect_destroy(c);
}

int
connect_call(struct connect *c, const char *path, const struct rpc_type *req_type,
             const void *req, const struct rpc_type *resp_type, long timeout_ms,
             connect_done_fn done, void *arg, struct connect_call **out, struct err *e)
{
    const char *slash = strrchr(path, '/');
    const char *proc = slash ? slash + 1 : path;
    char *url = NULL, *body = NULL, *ua = NULL, *ver = NULL, *uuid = NULL, *tok = NULL;
    const char *hdrs[8];
    size_t nh = 0;
    struct connect_call *k;
    int rc;

    if (c->freeing)
        return err_set(e, -ESHUTDOWN, "%s: the client is closing", proc);
    k = xcalloc(1, sizeof *k);
    k->c = c;
    k->resp_type = resp_type;
    k->done = done;
    k->arg = arg;
    snprintf(k->proc, sizeof k->proc, "%s", proc);

    url = xasprintf("%s%s", c->base, path);
    body = req ? rpc_encode_body(req_type, req) : NULL;
    if (body == NULL || *body == '\0') {
        /* Connect's JSON codec refuses an empty payload: an empty message is "{}". */
        free(body);
        body = xstrdup("{}");
    }
    ua = xasprintf("User-Agent: runnerd/%s", c->version);
    ver = xasprintf("x-runner-version: %s", c->version);
    hdrs[nh++] = "Content-Type: application/json";
    hdrs[nh++] = "Connect-Protocol-Version: 1";
    hdrs[nh++] = ua;
    hdrs[nh++] = ver;
    if (c->uuid) {
        uuid = xasprintf("x-runner-uuid: %s", c->uuid);
        hdrs[nh++] = uuid;
    }
    if (c->token) {
        tok = xasprintf("x-runner-token: %s", c->token);
        hdrs[nh++] = tok;
    }
    hdrs[nh] = NULL;

    struct httpc_opts ho = {
        .method = "POST",
        .url = url,
        .headers = hdrs,
        .body = body,
        .body_len = strlen(body),
        .ca_file = c->ca_file,
        .tls_insecure = c->insecure,
        .connect_timeout_ms = c->connect_timeout_ms,
        .timeout_ms = timeout_ms > 0 ? timeout_ms : c->timeout_ms,
        .max_body = CONNECT_MAX_BODY,
        .accept_compressed = true,
        .verbose = c->verbose,
    };
    /* link first: httpc never completes from inside httpc_request() */
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    c->ncalls++;
    rc = httpc_request(c->http, &ho, on_http_done, k, &k->req, e);
    if (rc < 0) {
        err_prefix(e, "%s: ", proc);
        call_unlink(k);
        free(k);
    } else if (out) {
        *out = k;
    }
    if (tok) {
        /* the header line held the secret: do not leave it in freed heap memory */
        memset(tok, 0, strlen(tok));
        free(tok);
    }
    free(uuid);
    free(ver);
    free(ua);
    free(body);
    free(url);
    return rc;
}

/* ---- blocking helper ------------------------------------------------------------------- */

struct sync_state {
    bool done;
    int rc;
    struct err err;
    enum rpc_errclass cls;
    void *resp;
};

static void
on_sync_done(const struct connect_result *r, void *arg)
{
    struct sync_state *st = arg;

    st->done = true;
    st->rc = r->rc;
    st->err = r->err;
    st->cls = r->cls;
    st->resp = r->resp;
}

int
connect_call_sync(const struct connect_opts *o, const char *path,
                  const struct rpc_type *req_type, const void *req,
                  const struct rpc_type *resp_type, void **resp, enum rpc_errclass *cls,
                  struct err *e)
{
    uv_loop_t loop;
    struct httpc *http;
    struct connect *c;
    struct sync_state st = {0};
    int rc;

    *resp = NULL;
    rc = uv_loop_init(&loop);
    if (rc < 0)
        return err_set(e, rc, "uv_loop_init: %s", uv_strerror(rc));
    http = httpc_new(&loop);
    c = connect_new(http, o);
    rc = connect_call(c, path, req_type, req, resp_type, 0, on_sync_done, &st, NULL, e);
    if (rc == 0) {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (!st.done) {
            /* cannot happen: the loop only ends once every request has completed */
            st.rc = err_set(&st.err, -EIO, "%s: the call never completed", path);
            st.cls = RPC_ERR_OTHER;
        }
        rc = st.rc;
        if (rc < 0) {
            if (e)
                *e = st.err;
            if (cls)
                *cls = st.cls;
        } else {
            *resp = st.resp;
        }
    } else if (cls) {
        *cls = RPC_ERR_OTHER;
    }
    connect_free(c);
    httpc_close(http, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        abort(); /* a handle was left open: a bug in httpc */
    return rc;
}
