/* agentp.c: frame and message encode/decode for the runner-agent protocol. libc only. */
#include "agentp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const agentp_file_vars[AGENTP_NFILES] = {
    "GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_PATH", "GITHUB_STEP_SUMMARY",
};

static const uint8_t magic[4] = {AGENTP_MAGIC0, AGENTP_MAGIC1, AGENTP_MAGIC2, AGENTP_MAGIC3};

/* The reflected CRC-32 table for polynomial 0xEDB88320. */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

/* Slicing by 8: slice[k][b] is the CRC of byte b followed by k zero bytes, so eight bytes
 * cost eight table loads and no dependency between them. Filled before main() runs (a
 * constructor), so threads only ever read it. */
static uint32_t crc_slice[8][256];

__attribute__((constructor)) static void
crc_slice_init(void)
{
    for (unsigned b = 0; b < 256; b++) {
        uint32_t c = crc_table[b];
        crc_slice[0][b] = c;
        for (int k = 1; k < 8; k++) {
            c = crc_table[c & 0xff] ^ (c >> 8);
            crc_slice[k][b] = c;
        }
    }
}

uint32_t
agentp_crc32(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;

    crc = ~crc;
    for (; n >= 8; n -= 8, b += 8) {
        uint32_t lo = crc ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                             (uint32_t)b[3] << 24);
        crc = crc_slice[7][lo & 0xff] ^ crc_slice[6][(lo >> 8) & 0xff] ^
              crc_slice[5][(lo >> 16) & 0xff] ^ crc_slice[4][lo >> 24] ^ crc_slice[3][b[4]] ^
              crc_slice[2][b[5]] ^ crc_slice[1][b[6]] ^ crc_slice[0][b[7]];
    }
    while (n-- > 0)
        crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

const char *
agentp_type_name(int type)
{
    switch (type) {
    case AGENTP_HELLO: return "HELLO";
    case AGENTP_RUN: return "RUN";
    case AGENTP_CANCEL: return "CANCEL";
    case AGENTP_RESUME: return "RESUME";
    case AGENTP_ACK: return "ACK";
    case AGENTP_WRITE_FILE: return "WRITE_FILE";
    case AGENTP_SHUTDOWN: return "SHUTDOWN";
    case AGENTP_HELLO_REPLY: return "HELLO_REPLY";
    case AGENTP_STARTED: return "STARTED";
    case AGENTP_OUTPUT: return "OUTPUT";
    case AGENTP_EXITED: return "EXITED";
    case AGENTP_FILE_WRITTEN: return "FILE_WRITTEN";
    case AGENTP_ERROR: return "ERROR";
    case AGENTP_BYE: return "BYE";
    default: return "?";
    }
}

/* ---------------------------------------------------------------- big-endian helpers */

static void
put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void
put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t
get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---------------------------------------------------------------- encoding */

void
agentp_buf_free(struct agentp_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int
buf_reserve(struct agentp_buf *b, size_t more)
{
    size_t need, cap;
    uint8_t *p;

    if (more > SIZE_MAX - b->len)
        return -ENOMEM;
    need = b->len + more;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Payload writer: first pass measures (w->out == NULL), second pass fills. */
struct writer {
    uint8_t *out;
    size_t len;
    int bad;
};

static void
w_bytes(struct writer *w, const void *p, size_t n)
{
    if (w->out != NULL && n > 0)
        memcpy(w->out + w->len, p, n);
    w->len += n;
}

static void
w_u32(struct writer *w, uint32_t v)
{
    uint8_t b[4];

    put32(b, v);
    w_bytes(w, b, 4);
}

static void
w_u64(struct writer *w, uint64_t v)
{
    uint8_t b[8];

    put64(b, v);
    w_bytes(w, b, 8);
}

static void
w_blob(struct writer *w, const struct agentp_bytes *b)
{
    if (b->len > AGENTP_MAX_PAYLOAD || (b->len > 0 && b->p == NULL)) {
        w->bad = 1;
        return;
    }
    w_u32(w, (uint32_t)b->len);
    w_bytes(w, b->p, b->len);
}

static void
w_str(struct writer *w, const char *s)
{
    size_t n;

    if (s == NULL) {
        w->bad = 1;
        return;
    }
    n = strlen(s);
    if (n > AGENTP_MAX_PAYLOAD) {
        w->bad = 1;
        return;
    }
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n + 1);
}

static void
w_strv(struct writer *w, char *const *v, size_t n)
{
    if (n > AGENTP_MAX_PAYLOAD || (n > 0 && v == NULL)) {
        w->bad = 1;
        return;
    }
    w_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        w_str(w, v[i]);
}

static const char *
opt(const char *s)
{
    return s ? s : "";
}

/* Writes m's payload fields (proto/agent-protocol.md §4). Returns -EINVAL for an unknown type. */
static int
write_payload(struct writer *w, const struct agentp_msg *m)
{
    switch (m->type) {
    case AGENTP_HELLO:
        w_u32(w, m->version_min);
        w_u32(w, m->version_max);
        w_str(w, opt(m->text));
        break;
    case AGENTP_RUN:
        w_u32(w, m->id);
        w_u32(w, m->timeout_ms);
        w_u32(w, m->grace_ms);
        w_str(w, opt(m->cwd));
        w_str(w, opt(m->dir));
        w_strv(w, m->argv, m->argc);
        w_strv(w, m->env, m->envc);
        break;
    case AGENTP_CANCEL:
        w_u32(w, m->id);
        w_u32(w, m->grace_ms);
        break;
    case AGENTP_RESUME:
    case AGENTP_ACK:
        w_u64(w, m->pos);
        break;
    case AGENTP_WRITE_FILE:
        w_u32(w, m->id);
        w_u32(w, m->mode);
        w_str(w, m->path);
        w_blob(w, &m->data);
        break;
    case AGENTP_SHUTDOWN:
        w_u32(w, m->grace_ms);
        break;
    case AGENTP_HELLO_REPLY:
        w_u32(w, m->version);
        w_u32(w, m->pid);
        w_u64(w, m->pos);
        w_u64(w, m->journal_end);
        w_str(w, opt(m->text));
        break;
    case AGENTP_STARTED:
        w_u32(w, m->id);
        w_u32(w, m->pid);
        break;
    case AGENTP_OUTPUT:
        w_u32(w, m->id);
        w_u32(w, m->stream);
        w_u64(w, m->time_ns);
        w_blob(w, &m->data);
        break;
    case AGENTP_EXITED:
        w_u32(w, m->id);
        w_u32(w, (uint32_t)m->exit_code);
        w_u32(w, m->signal);
        w_u32(w, m->flags);
        w_u32(w, m->truncated);
        w_u32(w, m->present);
        for (int i = 0; i < AGENTP_NFILES; i++)
            w_blob(w, &m->files[i]);
        break;
    case AGENTP_FILE_WRITTEN:
        w_u32(w, m->id);
        break;
    case AGENTP_ERROR:
        w_u32(w, m->id);
        w_u32(w, m->code);
        w_u32(w, m->ref_type);
        w_str(w, opt(m->text));
        break;
    case AGENTP_BYE:
        break;
    default:
        return -EINVAL;
    }
    return w->bad ? -EINVAL : 0;
}

int
agentp_encode(struct agentp_buf *out, const struct agentp_msg *m)
{
    struct writer w = {NULL, 0, 0};
    uint8_t *h;
    int rc = write_payload(&w, m);

    if (rc < 0)
        return rc;
    if (w.len > AGENTP_MAX_PAYLOAD)
        return -EINVAL;
    rc = buf_reserve(out, AGENTP_HDR_LEN + w.len);
    if (rc < 0)
        return rc;
    h = out->p + out->len;
    w.out = h + AGENTP_HDR_LEN;
    w.len = 0;
    write_payload(&w, m);
    memcpy(h, magic, 4);
    h[4] = AGENTP_FRAME_VERSION;
    h[5] = (uint8_t)m->type;
    h[6] = h[7] = 0;
    put32(h + 8, (uint32_t)w.len);
    put64(h + 12, m->offset);
    put32(h + 20, agentp_crc32(0, w.out, w.len));
    put32(h + 24, agentp_crc32(0, h, 24));
    out->len += AGENTP_HDR_LEN + w.len;
    return 0;
}

/* ---------------------------------------------------------------- frame decoder */

void
agentp_dec_init(struct agentp_dec *d)
{
    memset(d, 0, sizeof(*d));
}

void
agentp_dec_free(struct agentp_dec *d)
{
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

int
agentp_dec_feed(struct agentp_dec *d, const void *p, size_t n)
{
    const uint8_t *b = p;

    /* Bytes of a rejected frame's payload are dropped as they come, so an oversized frame
     * costs no memory. */
    if (d->discard > 0 && d->len == 0) {
        size_t k = n < d->discard ? n : d->discard;
        d->discard -= k;
        b += k;
        n -= k;
    }
    if (n == 0)
        return 0;
    if (d->start > 0) {
        if (d->len > 0)
            memmove(d->buf, d->buf + d->start, d->len);
        d->start = 0;
    }
    if (n > SIZE_MAX - d->len)
        return -ENOMEM;
    if (d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap : 4096;
        uint8_t *nb;
        while (cap < d->len + n)
            cap = cap > SIZE_MAX / 2 ? d->len + n : cap * 2;
        nb = realloc(d->buf, cap);
        if (nb == NULL)
            return -ENOMEM;
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, b, n);
    d->len += n;
    return 0;
}

size_t
agentp_dec_pending(const struct agentp_dec *d)
{
    return d->len;
}

static void
consume(struct agentp_dec *d, size_t n)
{
    d->start += n;
    d->len -= n;
    if (d->len == 0)
        d->start = 0;
}

/* Index of the first position where a frame could start (a whole magic, or a magic prefix
 * running to the end of the buffer), searching from index from. */
static size_t
find_magic(const struct agentp_dec *d, size_t from)
{
    const uint8_t *b = d->buf + d->start;

    for (size_t i = from; i < d->len; i++) {
        size_t k = 0;
        if (b[i] != magic[0])
            continue;
        while (k < 4 && i + k < d->len && b[i + k] == magic[k])
            k++;
        if (k == 4 || i + k == d->len)
            return i;
    }
    return d->len;
}

/* Skips n bytes (at least 1 for a bad frame) plus any garbage up to the next candidate. */
static int
skip_bad(struct agentp_dec *d, size_t n)
{
    size_t i = find_magic(d, n);

    consume(d, i);
    d->skipped = i;
    d->garbage += i;
    return -EBADMSG;
}

int
agentp_hdr_parse(const uint8_t *h, uint32_t *len, uint64_t *offset)
{
    if (memcmp(h, magic, 4) != 0 || get32(h + 24) != agentp_crc32(0, h, 24))
        return -EBADMSG;
    *len = get32(h + 8);
    *offset = get64(h + 12);
    return 0;
}

int
agentp_dec_next(struct agentp_dec *d, struct agentp_frame *f)
{
    const uint8_t *h;
    uint32_t plen;
    uint64_t off;
    size_t i;

    d->skipped = 0;
    if (d->discard > 0) {
        size_t k = d->len < d->discard ? d->len : d->discard;
        consume(d, k);
        d->discard -= k;
        if (d->discard > 0)
            return 0;
    }
    if (d->len == 0)
        return 0;
    i = find_magic(d, 0);
    if (i > 0) {
        consume(d, i);
        d->skipped = i;
        d->garbage += i;
        return -EBADMSG;
    }
    if (d->len < AGENTP_HDR_LEN)
        return 0;
    h = d->buf + d->start;
    if (agentp_hdr_parse(h, &plen, &off) < 0)
        return skip_bad(d, 1);
    if (plen > AGENTP_MAX_PAYLOAD || h[4] != AGENTP_FRAME_VERSION) {
        /* The header is intact (its CRC matched): skip the whole frame. */
        int rc = plen > AGENTP_MAX_PAYLOAD ? -EMSGSIZE : -EPROTONOSUPPORT;
        consume(d, AGENTP_HDR_LEN);
        d->discard = plen;
        d->skipped = AGENTP_HDR_LEN;
        return rc;
    }
    if (d->len < AGENTP_HDR_LEN + (size_t)plen)
        return 0;
    if (get32(h + 20) != agentp_crc32(0, h + AGENTP_HDR_LEN, plen))
        return skip_bad(d, 1);
    f->type = h[5];
    f->flags = (unsigned)h[6] << 8 | h[7];
    f->offset = off;
    f->payload = h + AGENTP_HDR_LEN;
    f->len = plen;
    consume(d, AGENTP_HDR_LEN + (size_t)plen);
    return 1;
}

/* ---------------------------------------------------------------- message decoding */

struct reader {
    uint8_t *p;
    size_t len, pos;
    int bad;
};

static uint32_t
r_u32(struct reader *r)
{
    uint32_t v;

    if (r->bad || r->len - r->pos < 4) {
        r->bad = 1;
        return 0;
    }
    v = get32(r->p + r->pos);
    r->pos += 4;
    return v;
}

static uint64_t
r_u64(struct reader *r)
{
    uint64_t v;

    if (r->bad || r->len - r->pos < 8) {
        r->bad = 1;
        return 0;
    }
    v = get64(r->p + r->pos);
    r->pos += 8;
    return v;
}

static void
r_blob(struct reader *r, struct agentp_bytes *b)
{
    uint32_t n = r_u32(r);

    if (r->bad || r->len - r->pos < n) {
        r->bad = 1;
        b->p = NULL;
        b->len = 0;
        return;
    }
    b->p = r->p + r->pos;
    b->len = n;
    r->pos += n;
}

/* A string: length, bytes, NUL; no NUL inside. Points into the reader's own copy. */
static const char *
r_str(struct reader *r)
{
    uint32_t n = r_u32(r);
    const char *s;

    if (r->bad || r->len - r->pos < (size_t)n + 1 || r->p[r->pos + n] != 0 ||
        memchr(r->p + r->pos, 0, n) != NULL) {
        r->bad = 1;
        return "";
    }
    s = (const char *)r->p + r->pos;
    r->pos += (size_t)n + 1;
    return s;
}

static int
r_strv(struct reader *r, char ***out, size_t *count)
{
    uint32_t n = r_u32(r);
    char **v;

    /* Each string takes at least 5 bytes, which bounds n before allocating. */
    if (r->bad || n > (r->len - r->pos) / 5) {
        r->bad = 1;
        n = 0;
    }
    v = calloc((size_t)n + 1, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    *out = v;
    *count = n;
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        const char *s = r_str(r);
        memcpy(&v[i], &s, sizeof(s)); /* into our own copy: writable memory */
    }
    return 0;
}

void
agentp_msg_free(struct agentp_msg *m)
{
    if (m == NULL)
        return;
    free(m->mem);
    free(m->argv);
    free(m->env);
    memset(m, 0, sizeof(*m));
}

int
agentp_msg_decode(const struct agentp_frame *f, struct agentp_msg *m)
{
    struct reader r = {NULL, f->len, 0, 0};
    int rc = 0;

    memset(m, 0, sizeof(*m));
    m->type = f->type;
    m->offset = f->offset;
    if (strcmp(agentp_type_name(f->type), "?") == 0)
        return -ENOMSG;
    r.p = malloc(f->len + 1);
    if (r.p == NULL)
        return -ENOMEM;
    if (f->len > 0)
        memcpy(r.p, f->payload, f->len);
    m->mem = r.p;
    m->text = m->cwd = m->dir = m->path = "";
    switch (f->type) {
    case AGENTP_HELLO:
        m->version_min = r_u32(&r);
        m->version_max = r_u32(&r);
        m->text = r_str(&r);
        break;
    case AGENTP_RUN:
        m->id = r_u32(&r);
        m->timeout_ms = r_u32(&r);
        m->grace_ms = r_u32(&r);
        m->cwd = r_str(&r);
        m->dir = r_str(&r);
        rc = r_strv(&r, &m->argv, &m->argc);
        if (rc == 0)
            rc = r_strv(&r, &m->env, &m->envc);
        if (rc == 0 && m->argc == 0)
            r.bad = 1;
        break;
    case AGENTP_CANCEL:
        m->id = r_u32(&r);
        m->grace_ms = r_u32(&r);
        break;
    case AGENTP_RESUME:
    case AGENTP_ACK:
        m->pos = r_u64(&r);
        break;
    case AGENTP_WRITE_FILE:
        m->id = r_u32(&r);
        m->mode = r_u32(&r);
        m->path = r_str(&r);
        r_blob(&r, &m->data);
        break;
    case AGENTP_SHUTDOWN:
        m->grace_ms = r_u32(&r);
        break;
    case AGENTP_HELLO_REPLY:
        m->version = r_u32(&r);
        m->pid = r_u32(&r);
        m->pos = r_u64(&r);
        m->journal_end = r_u64(&r);
        m->text = r_str(&r);
        break;
    case AGENTP_STARTED:
        m->id = r_u32(&r);
        m->pid = r_u32(&r);
        break;
    case AGENTP_OUTPUT:
        m->id = r_u32(&r);
        m->stream = r_u32(&r);
        m->time_ns = r_u64(&r);
        r_blob(&r, &m->data);
        if (m->stream != AGENTP_STDOUT && m->stream != AGENTP_STDERR)
            r.bad = 1;
        break;
    case AGENTP_EXITED:
        m->id = r_u32(&r);
        m->exit_code = (int32_t)r_u32(&r);
        m->signal = r_u32(&r);
        m->flags = r_u32(&r);
        m->truncated = r_u32(&r);
        m->present = r_u32(&r);
        for (int i = 0; i < AGENTP_NFILES; i++)
            r_blob(&r, &m->files[i]);
        break;
    case AGENTP_FILE_WRITTEN:
        m->id = r_u32(&r);
        break;
    case AGENTP_ERROR:
        m->id = r_u32(&r);
        m->code = r_u32(&r);
        m->ref_type = r_u32(&r);
        m->text = r_str(&r);
        break;
    case AGENTP_BYE:
        break;
    default:
        break;
    }
    if (rc == 0 && r.bad)
        rc = -EPROTO;
    return rc;
}
