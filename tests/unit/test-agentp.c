/* test-agentp.c: the agent protocol's frames and messages (proto/agentp.c).
 * Covers: a round trip of every message type with every field; one stream of frames fed
 * split at every byte position and one byte at a time; truncated input (pending bytes, no
 * frame); oversized, wrong-version, bad-CRC and garbage input rejected with the right code;
 * resynchronisation on the next frame after garbage; malformed payloads; unknown types. */
#include "harness.h"

#include "agentp.h"

#include <errno.h>

static const uint8_t blob[] = {0, 1, 2, 0xE7, 'R', 'A', 0x1A, 0xff, '\n'};

/* One message of each type, with distinct values in every field it carries. */
static int
sample(int i, struct agentp_msg *m)
{
    static char *argv[] = {"sh", "-c", "echo hi", NULL};
    static char *env[] = {"A=1", "GITHUB_OUTPUT=/tmp/o", NULL};

    memset(m, 0, sizeof(*m));
    m->offset = (uint64_t)i * 1000 + 7;
    switch (i) {
    case 0: m->type = AGENTP_HELLO; m->version_min = 1; m->version_max = 3; m->text = "host x";
        break;
    case 1: m->type = AGENTP_RUN; m->id = 42; m->timeout_ms = 1234; m->grace_ms = 55;
        m->cwd = "/work"; m->dir = "/var/run/act"; m->argv = argv; m->argc = 3; m->env = env;
        m->envc = 2; break;
    case 2: m->type = AGENTP_CANCEL; m->id = 9; m->grace_ms = 77; break;
    case 3: m->type = AGENTP_RESUME; m->pos = 0x123456789aULL; break;
    case 4: m->type = AGENTP_ACK; m->pos = 99; break;
    case 5: m->type = AGENTP_WRITE_FILE; m->id = 5; m->mode = 0755; m->path = "/x/y.sh";
        m->data.p = blob; m->data.len = sizeof(blob); break;
    case 6: m->type = AGENTP_SHUTDOWN; m->grace_ms = 3000; break;
    case 7: m->type = AGENTP_HELLO_REPLY; m->version = 1; m->pid = 4321; m->pos = 10;
        m->journal_end = 20; m->text = "agent y"; break;
    case 8: m->type = AGENTP_STARTED; m->id = 42; m->pid = 777; break;
    case 9: m->type = AGENTP_OUTPUT; m->id = 42; m->stream = AGENTP_STDERR;
        m->time_ns = 0xfedcba9876543210ULL; m->data.p = blob; m->data.len = sizeof(blob); break;
    case 10: m->type = AGENTP_EXITED; m->id = 42; m->exit_code = -1; m->signal = 15;
        m->flags = AGENTP_EXIT_SIGNALED | AGENTP_EXIT_TIMED_OUT; m->truncated = 2;
        m->present = 0x1f;
        for (int k = 0; k < AGENTP_NFILES; k++) {
            m->files[k].p = blob + k;
            m->files[k].len = sizeof(blob) - (size_t)k;
        }
        break;
    case 11: m->type = AGENTP_FILE_WRITTEN; m->id = 5; break;
    case 12: m->type = AGENTP_ERROR; m->id = 3; m->code = EBUSY; m->ref_type = AGENTP_RUN;
        m->text = "busy"; break;
    case 13: m->type = AGENTP_BYE; break;
    default: return 0;
    }
    return 1;
}

static void
check_bytes(struct agentp_bytes a, struct agentp_bytes b)
{
    ASSERT_EQ(a.len, b.len);
    ASSERT(a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Field-by-field comparison of a decoded message with the original. */
static void
check_same(const struct agentp_msg *a, const struct agentp_msg *b)
{
    ASSERT_EQ(a->type, b->type);
    ASSERT_EQ(a->offset, b->offset);
    ASSERT_EQ(a->id, b->id);
    ASSERT_EQ(a->version_min, b->version_min);
    ASSERT_EQ(a->version_max, b->version_max);
    ASSERT_EQ(a->version, b->version);
    ASSERT_EQ(a->pid, b->pid);
    ASSERT_EQ(a->timeout_ms, b->timeout_ms);
    ASSERT_EQ(a->grace_ms, b->grace_ms);
    ASSERT_EQ(a->mode, b->mode);
    ASSERT_EQ(a->stream, b->stream);
    ASSERT(a->time_ns == b->time_ns);
    ASSERT(a->pos == b->pos);
    ASSERT(a->journal_end == b->journal_end);
    ASSERT_EQ(a->exit_code, b->exit_code);
    ASSERT_EQ(a->signal, b->signal);
    ASSERT_EQ(a->flags, b->flags);
    ASSERT_EQ(a->truncated, b->truncated);
    ASSERT_EQ(a->present, b->present);
    ASSERT_EQ(a->code, b->code);
    ASSERT_EQ(a->ref_type, b->ref_type);
    ASSERT_STR_EQ(a->text ? a->text : "", b->text ? b->text : "");
    ASSERT_STR_EQ(a->cwd ? a->cwd : "", b->cwd ? b->cwd : "");
    ASSERT_STR_EQ(a->dir ? a->dir : "", b->dir ? b->dir : "");
    ASSERT_STR_EQ(a->path ? a->path : "", b->path ? b->path : "");
    ASSERT_EQ(a->argc, b->argc);
    for (size_t i = 0; i < a->argc; i++)
        ASSERT_STR_EQ(a->argv[i], b->argv[i]);
    ASSERT_EQ(a->envc, b->envc);
    for (size_t i = 0; i < a->envc; i++)
        ASSERT_STR_EQ(a->env[i], b->env[i]);
    if (a->argv)
        ASSERT(a->argv[a->argc] == NULL);
    check_bytes(a->data, b->data);
    for (int k = 0; k < AGENTP_NFILES; k++)
        check_bytes(a->files[k], b->files[k]);
}

/* All sample messages encoded back to back. */
static void
encode_all(struct agentp_buf *out, int *count)
{
    struct agentp_msg m;
    int i;

    for (i = 0; sample(i, &m); i++)
        ASSERT_OK(agentp_encode(out, &m));
    *count = i;
}

/* Feeds [p, p+n) in chunks (size chunk, or split once at `split` when chunk == 0) and checks
 * that exactly the sample messages come out, in order, with no error. */
static void
decode_check(const uint8_t *p, size_t n, size_t chunk, size_t split)
{
    struct agentp_dec d;
    struct agentp_frame f;
    struct agentp_msg got, want;
    int idx = 0, rc;
    size_t pos = 0;

    agentp_dec_init(&d);
    while (pos < n) {
        size_t k = chunk ? chunk : (pos < split ? split - pos : n - pos);
        if (k > n - pos)
            k = n - pos;
        ASSERT_OK(agentp_dec_feed(&d, p + pos, k));
        pos += k;
        while ((rc = agentp_dec_next(&d, &f)) == 1) {
            ASSERT(sample(idx, &want));
            ASSERT_OK(agentp_msg_decode(&f, &got));
            check_same(&got, &want);
            agentp_msg_free(&got);
            idx++;
        }
        ASSERT_EQ(rc, 0);
    }
    ASSERT(!sample(idx, &want));
    ASSERT_EQ(agentp_dec_pending(&d), 0);
    agentp_dec_free(&d);
}

TEST(round_trip_every_message)
{
    struct agentp_buf b = {0};
    int n;

    encode_all(&b, &n);
    ASSERT_EQ(n, 14);
    decode_check(b.p, b.len, b.len, 0);
    agentp_buf_free(&b);
}

TEST(split_at_every_byte)
{
    struct agentp_buf b = {0};
    int n;

    encode_all(&b, &n);
    for (size_t split = 1; split < b.len; split++)
        decode_check(b.p, b.len, 0, split);
    decode_check(b.p, b.len, 1, 0);
    decode_check(b.p, b.len, 7, 0);
    agentp_buf_free(&b);
}

TEST(frame_header_layout)
{
    struct agentp_buf b = {0};
    struct agentp_msg m = {.type = AGENTP_ACK, .pos = 1, .offset = 0x0102030405060708ULL};
    uint32_t len;
    uint64_t off;

    ASSERT_OK(agentp_encode(&b, &m));
    ASSERT_EQ(b.len, AGENTP_HDR_LEN + 8);
    ASSERT_EQ(b.p[0], 0xE7);
    ASSERT_EQ(b.p[1], 'R');
    ASSERT_EQ(b.p[2], 'A');
    ASSERT_EQ(b.p[3], 0x1A);
    ASSERT_EQ(b.p[4], 1);
    ASSERT_EQ(b.p[5], AGENTP_ACK);
    ASSERT_EQ(b.p[11], 8);
    ASSERT_EQ(b.p[12], 1);
    ASSERT_EQ(b.p[19], 8);
    ASSERT_OK(agentp_hdr_parse(b.p, &len, &off));
    ASSERT_EQ(len, 8);
    ASSERT(off == 0x0102030405060708ULL);
    /* The CRC is zlib's: crc32("123456789") = 0xcbf43926. */
    ASSERT(agentp_crc32(0, "123456789", 9) == 0xcbf43926u);
    agentp_buf_free(&b);
}

/* The CRC bit by bit, as its definition reads (reflected, polynomial 0xedb88320). */
static uint32_t
crc_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n-- > 0) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
    }
    return ~crc;
}

/* The table-driven CRC (eight bytes at a time, then one by one) equals the definition at every
 * length and alignment, and when a buffer is fed in two parts. */
TEST(crc32_matches_the_definition)
{
    uint8_t data[300];
    uint32_t x = 12345;

    for (size_t i = 0; i < sizeof data; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; off + n <= sizeof data; n += n < 40 ? 1 : 37) {
            uint32_t want = crc_bitwise(0, data + off, n);
            ASSERT(agentp_crc32(0, data + off, n) == want);
            ASSERT(agentp_crc32(agentp_crc32(0, data + off, n / 3), data + off + n / 3,
                                n - n / 3) == want);
        }
}

TEST(truncated_frame_is_pending)
{
    struct agentp_buf b = {0};
    struct agentp_msg m;
    struct agentp_dec d;
    struct agentp_frame f;

    sample(9, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    for (size_t cut = 1; cut < b.len; cut++) {
        agentp_dec_init(&d);
        ASSERT_OK(agentp_dec_feed(&d, b.p, cut));
        ASSERT_EQ(agentp_dec_next(&d, &f), 0);
        ASSERT_EQ(agentp_dec_pending(&d), cut);
        agentp_dec_free(&d);
    }
    agentp_buf_free(&b);
}

/* Counts frames and errors of each kind in a whole input. */
static void
scan(const uint8_t *p, size_t n, int *frames, int *badmsg, int *toobig, int *badver)
{
    struct agentp_dec d;
    struct agentp_frame f;
    int rc;

    *frames = *badmsg = *toobig = *badver = 0;
    agentp_dec_init(&d);
    ASSERT_OK(agentp_dec_feed(&d, p, n));
    while ((rc = agentp_dec_next(&d, &f)) != 0) {
        if (rc == 1)
            (*frames)++;
        else if (rc == -EBADMSG)
            (*badmsg)++;
        else if (rc == -EMSGSIZE)
            (*toobig)++;
        else if (rc == -EPROTONOSUPPORT)
            (*badver)++;
        else
            ASSERT(!"unexpected code");
    }
    agentp_dec_free(&d);
}

/* Rewrites a frame's header CRC after editing its header. */
static void
reseal(uint8_t *h)
{
    uint32_t c = agentp_crc32(0, h, 24);

    h[24] = (uint8_t)(c >> 24);
    h[25] = (uint8_t)(c >> 16);
    h[26] = (uint8_t)(c >> 8);
    h[27] = (uint8_t)c;
}

TEST(garbage_then_resync)
{
    struct agentp_buf b = {0};
    struct agentp_msg m;
    int fr, bad, big, ver;
    static const char junk[] = "hello \xE7R garbage \xE7RA\x1A not a header at all.........";

    memcpy(b.p = malloc(sizeof(junk)), junk, sizeof(junk));
    b.len = b.cap = sizeof(junk);
    sample(2, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    sample(9, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    scan(b.p, b.len, &fr, &bad, &big, &ver);
    ASSERT_EQ(fr, 2);
    ASSERT(bad >= 1);
    ASSERT_EQ(big + ver, 0);
    agentp_buf_free(&b);
}

TEST(bad_crc_oversized_and_version)
{
    struct agentp_buf b = {0};
    struct agentp_msg m;
    int fr, bad, big, ver;
    size_t first;

    /* 1: payload CRC broken; then a good frame. */
    sample(9, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    b.p[AGENTP_HDR_LEN + 3] ^= 1;
    sample(2, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    scan(b.p, b.len, &fr, &bad, &big, &ver);
    ASSERT_EQ(fr, 1);
    ASSERT(bad >= 1);
    /* 2: header CRC broken. */
    b.len = 0;
    sample(9, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    b.p[10] ^= 0x40;
    first = b.len;
    sample(2, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    scan(b.p, b.len, &fr, &bad, &big, &ver);
    ASSERT_EQ(fr, 1);
    ASSERT(bad >= 1);
    /* 3: a sealed header announcing 16 MiB: -EMSGSIZE, its payload is skipped, next frame
     * comes out after the announced bytes. */
    b.len = 0;
    sample(13, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    b.p[8] = 0x01; /* length 16 MiB */
    reseal(b.p);
    scan(b.p, b.len, &fr, &bad, &big, &ver);
    ASSERT_EQ(fr, 0);
    ASSERT_EQ(big, 1);
    /* 4: an unknown frame version with a sealed header is skipped whole. */
    b.len = 0;
    sample(8, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    b.p[4] = 2;
    reseal(b.p);
    sample(2, &m);
    ASSERT_OK(agentp_encode(&b, &m));
    scan(b.p, b.len, &fr, &bad, &big, &ver);
    ASSERT_EQ(fr, 1);
    ASSERT_EQ(ver, 1);
    ASSERT_EQ(bad, 0);
    (void)first;
    agentp_buf_free(&b);
}

TEST(oversized_payload_is_discarded_while_fed)
{
    struct agentp_buf b = {0};
    struct agentp_msg m = {.type = AGENTP_BYE};
    struct agentp_dec d;
    struct agentp_frame f;
    static uint8_t zeros[65536];
    size_t total = 0;

    ASSERT_OK(agentp_encode(&b, &m));
    b.p[8] = 0x01; /* 16 MiB announced */
    reseal(b.p);
    agentp_dec_init(&d);
    ASSERT_OK(agentp_dec_feed(&d, b.p, b.len));
    ASSERT_EQ(agentp_dec_next(&d, &f), -EMSGSIZE);
    while (total < (16u << 20)) {
        ASSERT_OK(agentp_dec_feed(&d, zeros, sizeof(zeros)));
        ASSERT_EQ(agentp_dec_next(&d, &f), 0);
        ASSERT(d.cap <= 65536 * 2);
        total += sizeof(zeros);
    }
    b.len = 0;
    ASSERT_OK(agentp_encode(&b, &m));
    ASSERT_OK(agentp_dec_feed(&d, b.p, b.len));
    ASSERT_EQ(agentp_dec_next(&d, &f), 1);
    ASSERT_EQ(f.type, AGENTP_BYE);
    agentp_dec_free(&d);
    agentp_buf_free(&b);
}

/* Re-seals a frame's payload CRC and header after editing its payload in place. */
static void
reseal_payload(uint8_t *h, size_t plen)
{
    uint32_t c = agentp_crc32(0, h + AGENTP_HDR_LEN, plen);

    h[8] = (uint8_t)(plen >> 24);
    h[9] = (uint8_t)(plen >> 16);
    h[10] = (uint8_t)(plen >> 8);
    h[11] = (uint8_t)plen;
    h[20] = (uint8_t)(c >> 24);
    h[21] = (uint8_t)(c >> 16);
    h[22] = (uint8_t)(c >> 8);
    h[23] = (uint8_t)c;
    reseal(h);
}

TEST(malformed_payloads)
{
    struct agentp_buf b = {0};
    struct agentp_msg m;
    struct agentp_dec d;
    struct agentp_frame f;
    size_t full;

    /* Every truncation of every message's payload is -EPROTO (or decodes: BYE/empty). */
    for (int i = 0; sample(i, &m); i++) {
        b.len = 0;
        ASSERT_OK(agentp_encode(&b, &m));
        full = b.len - AGENTP_HDR_LEN;
        for (size_t cut = 0; cut < full; cut++) {
            struct agentp_msg got;
            reseal_payload(b.p, cut);
            agentp_dec_init(&d);
            ASSERT_OK(agentp_dec_feed(&d, b.p, AGENTP_HDR_LEN + cut));
            ASSERT_EQ(agentp_dec_next(&d, &f), 1);
            ASSERT_EQ(agentp_msg_decode(&f, &got), -EPROTO);
            agentp_msg_free(&got);
            agentp_dec_free(&d);
        }
    }
    /* A NUL inside a string, and a string without its NUL. */
    sample(5, &m);
    m.path = "ab";
    b.len = 0;
    ASSERT_OK(agentp_encode(&b, &m));
    {
        struct agentp_msg got;
        uint8_t *s = b.p + AGENTP_HDR_LEN + 12; /* id, mode, len(4) then "ab\0" */
        s[0] = 0;
        reseal_payload(b.p, b.len - AGENTP_HDR_LEN);
        agentp_dec_init(&d);
        ASSERT_OK(agentp_dec_feed(&d, b.p, b.len));
        ASSERT_EQ(agentp_dec_next(&d, &f), 1);
        ASSERT_EQ(agentp_msg_decode(&f, &got), -EPROTO);
        agentp_msg_free(&got);
        agentp_dec_free(&d);
        s[0] = 'a';
        s[2] = 'x';
        reseal_payload(b.p, b.len - AGENTP_HDR_LEN);
        agentp_dec_init(&d);
        ASSERT_OK(agentp_dec_feed(&d, b.p, b.len));
        ASSERT_EQ(agentp_dec_next(&d, &f), 1);
        ASSERT_EQ(agentp_msg_decode(&f, &got), -EPROTO);
        agentp_msg_free(&got);
        agentp_dec_free(&d);
    }
    /* A RUN claiming 2^32-1 argv entries does not allocate them. */
    sample(1, &m);
    b.len = 0;
    ASSERT_OK(agentp_encode(&b, &m));
    {
        struct agentp_msg got;
        /* id, timeout, grace, cwd (4+5+1), dir (4+12+1): argc follows. */
        uint8_t *c = b.p + AGENTP_HDR_LEN + 12 + 10 + 17;
        ASSERT_EQ(c[3], 3);
        c[0] = c[1] = c[2] = c[3] = 0xff;
        reseal_payload(b.p, b.len - AGENTP_HDR_LEN);
        agentp_dec_init(&d);
        ASSERT_OK(agentp_dec_feed(&d, b.p, b.len));
        ASSERT_EQ(agentp_dec_next(&d, &f), 1);
        ASSERT_EQ(agentp_msg_decode(&f, &got), -EPROTO);
        agentp_msg_free(&got);
        agentp_dec_free(&d);
    }
    agentp_buf_free(&b);
}

TEST(unknown_type_and_trailing_fields)
{
    struct agentp_buf b = {0};
    struct agentp_msg m = {.type = AGENTP_CANCEL, .id = 1, .grace_ms = 2}, got;
    struct agentp_dec d;
    struct agentp_frame f;
    size_t plen;

    ASSERT_EQ(agentp_encode(&b, &(struct agentp_msg){.type = 0x55}), -EINVAL);
    ASSERT_EQ(b.len, 0);
    ASSERT_OK(agentp_encode(&b, &m));
    /* Appended bytes (a newer version's fields) are ignored. */
    b.p = realloc(b.p, b.len + 4);
    memcpy(b.p + b.len, "\1\2\3\4", 4);
    b.len += 4;
    plen = b.len - AGENTP_HDR_LEN;
    reseal_payload(b.p, plen);
    agentp_dec_init(&d);
    ASSERT_OK(agentp_dec_feed(&d, b.p, b.len));
    ASSERT_EQ(agentp_dec_next(&d, &f), 1);
    ASSERT_OK(agentp_msg_decode(&f, &got));
    ASSERT_EQ(got.id, 1);
    ASSERT_EQ(got.grace_ms, 2);
    agentp_msg_free(&got);
    /* An unknown type decodes to -ENOMSG. */
    b.p[5] = 0x42;
    reseal(b.p);
    ASSERT_OK(agentp_dec_feed(&d, b.p, b.len));
    ASSERT_EQ(agentp_dec_next(&d, &f), 1);
    ASSERT_EQ(agentp_msg_decode(&f, &got), -ENOMSG);
    agentp_msg_free(&got);
    ASSERT_STR_EQ(agentp_type_name(0x42), "?");
    ASSERT_STR_EQ(agentp_type_name(AGENTP_EXITED), "EXITED");
    agentp_dec_free(&d);
    agentp_buf_free(&b);
}
