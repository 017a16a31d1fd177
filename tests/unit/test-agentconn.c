/* test-agentconn.c: the host-side protocol state machine without an agent. Covers: events in
 * journal order with their offsets; replayed (duplicate) frames dropped; a reattach that
 * starts mid-frame, sees frames ahead of its RESUME and then the replay delivers every frame
 * once; a gap without RESUME reported once; agentconn_free() inside a callback; what the
 * sending functions put on the wire. */
#include "harness.h"

#include "agentconn.h"

#include <errno.h>

struct rec {
    struct agentconn *c;
    int kinds[64];
    uint64_t offs[64];
    int n, proto;
    int free_at; /* free the conn at this event index (-1: never) */
    struct agentp_buf sent;
};

static int
rec_write(void *arg, const void *p, size_t n)
{
    struct rec *r = arg;

    r->sent.p = realloc(r->sent.p, r->sent.len + n);
    memcpy(r->sent.p + r->sent.len, p, n);
    r->sent.len += n;
    return 0;
}

static void
rec_event(void *arg, const struct agentconn_event *ev)
{
    struct rec *r = arg;

    if (ev->kind == AGENTCONN_PROTO_ERROR) {
        r->proto++;
        return;
    }
    ASSERT(r->n < 64);
    r->kinds[r->n] = ev->kind;
    r->offs[r->n] = ev->offset;
    ASSERT(ev->next > ev->offset);
    if (r->n++ == r->free_at) {
        agentconn_free(r->c);
        r->c = NULL;
    }
}

static void
rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    r->free_at = -1;
    r->c = agentconn_new(&(struct agentconn_cbs){.write = rec_write, .on_event = rec_event}, r);
}

static void
rec_free(struct rec *r)
{
    agentconn_free(r->c);
    agentp_buf_free(&r->sent);
}

/* An agent stream: HELLO_REPLY, STARTED, OUTPUT x3, EXITED; starts[] gets frame offsets. */
static void
stream(struct agentp_buf *b, uint64_t *starts)
{
    struct agentp_msg ms[] = {
        {.type = AGENTP_HELLO_REPLY, .version = 1, .text = "a"},
        {.type = AGENTP_STARTED, .id = 1, .pid = 5},
        {.type = AGENTP_OUTPUT, .id = 1, .stream = 1, .data = {(const uint8_t *)"one", 3}},
        {.type = AGENTP_OUTPUT, .id = 1, .stream = 2, .data = {(const uint8_t *)"two", 3}},
        {.type = AGENTP_OUTPUT, .id = 1, .stream = 1, .data = {(const uint8_t *)"three", 5}},
        {.type = AGENTP_EXITED, .id = 1, .exit_code = 2},
    };

    for (int i = 0; i < 6; i++) {
        starts[i] = b->len;
        ms[i].offset = b->len;
        ASSERT_OK(agentp_encode(b, &ms[i]));
    }
    starts[6] = b->len;
}

static const int want_kinds[] = {AGENTCONN_HELLO, AGENTCONN_STARTED, AGENTCONN_OUTPUT,
                                 AGENTCONN_OUTPUT, AGENTCONN_OUTPUT, AGENTCONN_EXITED};

TEST(events_in_order_and_duplicates_dropped)
{
    struct agentp_buf b = {0};
    uint64_t at[7];
    struct rec r;

    stream(&b, at);
    rec_init(&r);
    ASSERT_OK(agentconn_feed(r.c, b.p, b.len));
    ASSERT_EQ(r.n, 6);
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ(r.kinds[i], want_kinds[i]);
        ASSERT_EQ(r.offs[i], at[i]);
    }
    ASSERT_EQ(agentconn_offset(r.c), b.len);
    /* The same frames again (a logs=1 replay, say): nothing new. */
    ASSERT_OK(agentconn_feed(r.c, b.p, b.len));
    ASSERT_EQ(r.n, 6);
    ASSERT_EQ(r.proto, 0);
    ASSERT_EQ(agentconn_pending(r.c), 0);
    rec_free(&r);
    agentp_buf_free(&b);
}

TEST(reattach_mid_frame_then_replay)
{
    struct agentp_buf b = {0};
    uint64_t at[7];
    struct rec r;
    struct agentp_dec d;
    struct agentp_frame f;
    struct agentp_msg m;

    stream(&b, at);
    rec_init(&r);
    /* The old connection had frames 0..2; the new one resumes from frame 3. */
    ASSERT_OK(agentconn_resume(r.c, at[3], NULL));
    /* What arrives first: the tail of frame 3 (mid-frame), frames 4 and 5 (live, ahead). */
    ASSERT_OK(agentconn_feed(r.c, b.p + at[3] + 5, b.len - at[3] - 5));
    ASSERT_EQ(r.n, 0);
    /* Then the replay from frame 3. */
    ASSERT_OK(agentconn_feed(r.c, b.p + at[3], b.len - at[3]));
    ASSERT_EQ(r.n, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(r.kinds[i], want_kinds[3 + i]);
        ASSERT_EQ(r.offs[i], at[3 + i]);
    }
    ASSERT_EQ(r.proto, 0);
    /* On the wire: one RESUME from at[3]. */
    agentp_dec_init(&d);
    ASSERT_OK(agentp_dec_feed(&d, r.sent.p, r.sent.len));
    ASSERT_EQ(agentp_dec_next(&d, &f), 1);
    ASSERT_OK(agentp_msg_decode(&f, &m));
    ASSERT_EQ(m.type, AGENTP_RESUME);
    ASSERT_EQ(m.pos, at[3]);
    agentp_msg_free(&m);
    ASSERT_EQ(agentp_dec_next(&d, &f), 0);
    agentp_dec_free(&d);
    rec_free(&r);
    agentp_buf_free(&b);
}

TEST(gap_reported_once)
{
    struct agentp_buf b = {0};
    uint64_t at[7];
    struct rec r;

    stream(&b, at);
    rec_init(&r);
    ASSERT_OK(agentconn_feed(r.c, b.p, at[2]));
    ASSERT_OK(agentconn_feed(r.c, b.p + at[3], b.len - at[3])); /* frame 2 lost */
    ASSERT_EQ(r.n, 2);
    ASSERT_EQ(r.proto, 1);
    ASSERT_EQ(agentconn_offset(r.c), at[2]);
    rec_free(&r);
    agentp_buf_free(&b);
}

TEST(free_inside_callback)
{
    struct agentp_buf b = {0};
    uint64_t at[7];
    struct rec r;

    stream(&b, at);
    rec_init(&r);
    r.free_at = 2;
    ASSERT_OK(agentconn_feed(r.c, b.p, b.len));
    ASSERT_EQ(r.n, 3);
    ASSERT(r.c == NULL);
    rec_free(&r);
    agentp_buf_free(&b);
}

TEST(sending_functions)
{
    struct rec r;
    struct agentp_dec d;
    struct agentp_frame f;
    struct agentp_msg m;
    const char *argv[] = {"sh", "-c", "x", NULL};
    const char *env[] = {"A=1", NULL};
    struct agentconn_run run = {.step = 7, .argv = argv, .argc = 3, .env = env, .envc = 1,
                                .cwd = "/w", .timeout_ms = 10, .grace_ms = 20};
    struct err e;
    static const int types[] = {AGENTP_HELLO, AGENTP_RUN, AGENTP_CANCEL, AGENTP_ACK,
                                AGENTP_WRITE_FILE, AGENTP_SHUTDOWN};
    int i = 0;

    rec_init(&r);
    ASSERT_OK(agentconn_hello(r.c, &e));
    ASSERT_OK(agentconn_run(r.c, &run, &e));
    ASSERT_OK(agentconn_cancel(r.c, 7, 30, &e));
    ASSERT_OK(agentconn_ack(r.c, 99, &e));
    ASSERT_OK(agentconn_write_file(r.c, 3, "/s", 0755, "ab", 2, &e));
    ASSERT_OK(agentconn_shutdown(r.c, 40, &e));
    run.argc = 0;
    ASSERT_EQ(agentconn_run(r.c, &run, &e), -EINVAL);
    agentp_dec_init(&d);
    ASSERT_OK(agentp_dec_feed(&d, r.sent.p, r.sent.len));
    while (agentp_dec_next(&d, &f) == 1) {
        ASSERT(i < 6);
        ASSERT_OK(agentp_msg_decode(&f, &m));
        ASSERT_EQ(m.type, types[i]);
        if (m.type == AGENTP_RUN) {
            ASSERT_EQ(m.id, 7);
            ASSERT_EQ(m.argc, 3);
            ASSERT_STR_EQ(m.argv[2], "x");
            ASSERT_EQ(m.envc, 1);
            ASSERT_STR_EQ(m.env[0], "A=1");
            ASSERT_STR_EQ(m.cwd, "/w");
            ASSERT_STR_EQ(m.dir, "");
            ASSERT_EQ(m.timeout_ms, 10);
            ASSERT_EQ(m.grace_ms, 20);
        }
        if (m.type == AGENTP_HELLO) {
            ASSERT_EQ(m.version_min, AGENTP_PROTO_MIN);
            ASSERT_EQ(m.version_max, AGENTP_PROTO_MAX);
        }
        if (m.type == AGENTP_WRITE_FILE) {
            ASSERT_EQ(m.mode, 0755);
            ASSERT_EQ(m.data.len, 2);
        }
        agentp_msg_free(&m);
        i++;
    }
    ASSERT_EQ(i, 6);
    agentp_dec_free(&d);
    rec_free(&r);
}
