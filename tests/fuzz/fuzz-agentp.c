/* fuzz-agentp.c: libFuzzer target for the agent protocol decoder (proto/agentp.c) and the
 * host-side state machine (daemon/exec/agentconn.c). The first 4 input bytes seed the chunk sizes
 * (1..4096) in which the rest is fed, so frames split at arbitrary places. Every frame that
 * decodes is re-encoded and decoded again, and must round-trip to the same encoding. The same
 * bytes then go through an agentconn. Everything is freed, so LeakSanitizer catches leaks. */
#include "agentconn.h"
#include "agentp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t
next_chunk(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return 1 + (*state >> 16) % 4096;
}

/* Re-encodes a decoded message and checks it decodes to the same bytes again. */
static void
round_trip(const struct agentp_msg *m)
{
    struct agentp_buf a = {0}, b = {0};
    struct agentp_dec d;
    struct agentp_frame f;
    struct agentp_msg m2;

    if (agentp_encode(&a, m) < 0)
        abort(); /* whatever decoded must encode */
    agentp_dec_init(&d);
    if (agentp_dec_feed(&d, a.p, a.len) < 0 || agentp_dec_next(&d, &f) != 1 ||
        agentp_msg_decode(&f, &m2) < 0)
        abort();
    if (agentp_encode(&b, &m2) < 0 || a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
        abort();
    agentp_msg_free(&m2);
    agentp_dec_free(&d);
    agentp_buf_free(&a);
    agentp_buf_free(&b);
}

static int
sink_write(void *arg, const void *p, size_t n)
{
    (void)arg;
    (void)p;
    (void)n;
    return 0;
}

static void
sink_event(void *arg, const struct agentconn_event *ev)
{
    struct agentconn *c = *(struct agentconn **)arg;

    /* Exercise the sending side from inside a callback, as an owner would. */
    if (ev->kind == AGENTCONN_OUTPUT)
        agentconn_ack(c, ev->next, NULL);
    if (ev->kind == AGENTCONN_ERROR && ev->msg->code == 1)
        agentconn_resume(c, ev->offset, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct agentp_dec d;
    struct agentp_frame f;
    struct agentconn *c = NULL;
    uint32_t seed = 0, st;
    size_t pos = 0;
    int rc;

    if (size < 4)
        return 0;
    memcpy(&seed, data, 4);
    data += 4;
    size -= 4;
    agentp_dec_init(&d);
    st = seed;
    while (pos < size) {
        size_t k = next_chunk(&st);
        if (k > size - pos)
            k = size - pos;
        if (agentp_dec_feed(&d, data + pos, k) < 0)
            abort();
        pos += k;
        while ((rc = agentp_dec_next(&d, &f)) != 0) {
            struct agentp_msg m;
            if (rc < 0)
                continue;
            if (agentp_msg_decode(&f, &m) == 0)
                round_trip(&m);
            agentp_msg_free(&m);
        }
    }
    agentp_dec_free(&d);

    c = agentconn_new(&(struct agentconn_cbs){.write = sink_write, .on_event = sink_event}, &c);
    st = seed ^ 0x5a5a5a5au;
    for (pos = 0; pos < size;) {
        size_t k = next_chunk(&st);
        if (k > size - pos)
            k = size - pos;
        agentconn_feed(c, data + pos, k);
        pos += k;
    }
    agentconn_free(c);
    return 0;
}
