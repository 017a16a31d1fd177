/* agentconn.c: the host end of the runner-agent protocol, as a pure state machine. */
#include "agentconn.h"

#include "runner/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agentconn {
    struct agentconn_cbs cbs;
    void *arg;
    struct agentp_dec dec;
    struct agentp_buf out;
    uint64_t next;   /* the offset of the next frame we deliver */
    bool resuming;   /* a RESUME is outstanding: frames past next are expected, not lost */
    bool gap_seen;   /* a gap was reported; report once until a RESUME */
    int in_feed;     /* feed depth, for agentconn_free() inside a callback */
    bool dead;
};

struct agentconn *
agentconn_new(const struct agentconn_cbs *cbs, void *arg)
{
    struct agentconn *c = xcalloc(1, sizeof(*c));

    c->cbs = *cbs;
    c->arg = arg;
    agentp_dec_init(&c->dec);
    return c;
}

static void
destroy(struct agentconn *c)
{
    agentp_dec_free(&c->dec);
    agentp_buf_free(&c->out);
    free(c);
}

void
agentconn_free(struct agentconn *c)
{
    if (c == NULL)
        return;
    if (c->in_feed > 0) {
        c->dead = true;
        return;
    }
    destroy(c);
}

uint64_t
agentconn_offset(const struct agentconn *c)
{
    return c->next;
}

size_t
agentconn_pending(const struct agentconn *c)
{
    return agentp_dec_pending(&c->dec);
}

static void
proto_error(struct agentconn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reports a problem on our side of the stream as an event. */
static void
proto_error(struct agentconn *c, int code, const char *fmt, ...)
{
    struct err e = {.code = code};
    struct agentconn_event ev = {.kind = AGENTCONN_PROTO_ERROR, .offset = c->next,
                                 .next = c->next, .err = &e};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    c->cbs.on_event(c->arg, &ev);
}

static void
deliver(struct agentconn *c, const struct agentp_frame *f)
{
    struct agentp_msg m = {0};
    struct agentconn_event ev = {.offset = f->offset,
                                 .next = f->offset + AGENTP_HDR_LEN + f->len, .msg = &m};
    int rc;

    if (f->offset > c->next && c->resuming && f->type == AGENTP_ERROR &&
        agentp_msg_decode(f, &m) == 0 && m.ref_type == AGENTP_RESUME) {
        /* The agent refused our RESUME: no replay is coming, so tell the owner now. The
         * frame is not consumed: a later successful resume replays it in order. */
        ev.kind = AGENTCONN_ERROR;
        c->resuming = false;
        c->gap_seen = true;
        c->cbs.on_event(c->arg, &ev);
        agentp_msg_free(&m);
        return;
    }
    agentp_msg_free(&m);
    if (f->offset != c->next) {
        if (f->offset > c->next && !c->resuming && !c->gap_seen) {
            c->gap_seen = true;
            proto_error(c, ERR_PROTO, "agent stream gap: expected offset %llu, got %llu",
                        (unsigned long long)c->next, (unsigned long long)f->offset);
        }
        return; /* a replayed frame we have, or one past a gap */
    }
    c->resuming = false;
    c->gap_seen = false;
    c->next = ev.next;
    rc = agentp_msg_decode(f, &m);
    if (rc < 0) {
        agentp_msg_free(&m);
        proto_error(c, ERR_PROTO, "bad %s frame at offset %llu: %s", agentp_type_name(f->type),
                    (unsigned long long)f->offset, strerror(-rc));
        return;
    }
    switch (m.type) {
    case AGENTP_HELLO_REPLY: ev.kind = AGENTCONN_HELLO; break;
    case AGENTP_STARTED: ev.kind = AGENTCONN_STARTED; break;
    case AGENTP_OUTPUT: ev.kind = AGENTCONN_OUTPUT; break;
    case AGENTP_EXITED: ev.kind = AGENTCONN_EXITED; break;
    case AGENTP_FILE_WRITTEN: ev.kind = AGENTCONN_FILE_WRITTEN; break;
    case AGENTP_ERROR: ev.kind = AGENTCONN_ERROR; break;
    case AGENTP_BYE: ev.kind = AGENTCONN_BYE; break;
    default:
        agentp_msg_free(&m);
        proto_error(c, ERR_PROTO, "unexpected %s frame from the agent",
                    agentp_type_name(f->type));
        return;
    }
    c->cbs.on_event(c->arg, &ev);
    agentp_msg_free(&m);
}

int
agentconn_feed(struct agentconn *c, const void *data, size_t len)
{
    struct agentp_frame f;
    int rc = agentp_dec_feed(&c->dec, data, len);

    if (rc < 0)
        return rc;
    c->in_feed++;
    while (!c->dead && (rc = agentp_dec_next(&c->dec, &f)) != 0) {
        if (rc > 0)
            deliver(c, &f);
        else if (!c->resuming) /* garbage while resyncing after a reattach is expected */
            proto_error(c, ERR_PROTO, "bad bytes from the agent: %s (%zu skipped)",
                        strerror(-rc), c->dec.skipped);
    }
    c->in_feed--;
    if (c->dead && c->in_feed == 0)
        destroy(c);
    return 0;
}

/* Encodes m and hands it to the write callback. */
static int
send_msg(struct agentconn *c, const struct agentp_msg *m, struct err *e)
{
    int rc;

    c->out.len = 0;
    rc = agentp_encode(&c->out, m);
    if (rc == -ENOMEM)
        abort(); /* doc/style.md §3: out of memory ends the process */
    if (rc < 0)
        return err_set(e, rc, "cannot encode %s: invalid or too large", agentp_type_name(m->type));
    rc = c->cbs.write(c->arg, c->out.p, c->out.len);
    if (rc < 0)
        return err_set(e, rc, "sending %s to the agent: %s", agentp_type_name(m->type),
                       strerror(-rc));
    return 0;
}

int
agentconn_hello(struct agentconn *c, struct err *e)
{
    struct agentp_msg m = {.type = AGENTP_HELLO, .version_min = AGENTP_PROTO_MIN,
                           .version_max = AGENTP_PROTO_MAX, .text = "runnerd " RUNNERD_VERSION};

    return send_msg(c, &m, e);
}

int
agentconn_run(struct agentconn *c, const struct agentconn_run *r, struct err *e)
{
    struct agentp_msg m = {.type = AGENTP_RUN, .id = r->step, .timeout_ms = r->timeout_ms,
                           .grace_ms = r->grace_ms, .cwd = r->cwd ? r->cwd : "",
                           .dir = r->dir ? r->dir : "", .argc = r->argc, .envc = r->envc};

    if (r->argc == 0)
        return err_set(e, -EINVAL, "step %u: empty argv", r->step);
    /* The encoder only reads the strings; agentp_msg has no const arrays. */
    memcpy(&m.argv, &r->argv, sizeof(m.argv));
    memcpy(&m.env, &r->env, sizeof(m.env));
    return send_msg(c, &m, e);
}

int
agentconn_cancel(struct agentconn *c, uint32_t step, uint32_t grace_ms, struct err *e)
{
    struct agentp_msg m = {.type = AGENTP_CANCEL, .id = step, .grace_ms = grace_ms};

    return send_msg(c, &m, e);
}

int
agentconn_resume(struct agentconn *c, uint64_t from, struct err *e)
{
    struct agentp_msg m = {.type = AGENTP_RESUME, .pos = from};

    c->next = from;
    c->resuming = true;
    c->gap_seen = false;
    return send_msg(c, &m, e);
}

int
agentconn_ack(struct agentconn *c, uint64_t upto, struct err *e)
{
    struct agentp_msg m = {.type = AGENTP_ACK, .pos = upto};

    return send_msg(c, &m, e);
}

int
agentconn_write_file(struct agentconn *c, uint32_t id, const char *path, uint32_t mode,
                     const void *data, size_t len, struct err *e)
{
    struct agentp_msg m = {.type = AGENTP_WRITE_FILE, .id = id, .mode = mode, .path = path};

    m.data.p = data;
    m.data.len = len;
    return send_msg(c, &m, e);
}

int
agentconn_shutdown(struct agentconn *c, uint32_t grace_ms, struct err *e)
{
    struct agentp_msg m = {.type = AGENTP_SHUTDOWN, .grace_ms = grace_ms};

    return send_msg(c, &m, e);
}
