/* agentp.h: frames and messages of the runner-agent protocol (proto/agent-protocol.md).
 *
 * Encode and decode only, no I/O, libc only: runner-agent links this file, so nothing here
 * uses xmalloc or the project's err/log modules. Fallible functions return 0 (or a count) or
 * a negative errno; out of memory is -ENOMEM, never an abort. */
#ifndef AGENTP_H
#define AGENTP_H

#include <stddef.h>
#include <stdint.h>

/* Frame format version (byte 4 of every frame header). */
#define AGENTP_FRAME_VERSION 1
/* Protocol versions this code speaks (negotiated with HELLO). */
#define AGENTP_PROTO_MIN 1
#define AGENTP_PROTO_MAX 1

#define AGENTP_MAGIC0 0xE7
#define AGENTP_MAGIC1 0x52 /* 'R' */
#define AGENTP_MAGIC2 0x41 /* 'A' */
#define AGENTP_MAGIC3 0x1A

#define AGENTP_HDR_LEN 28
/* Hard limit on a frame's payload; larger headers are rejected (-EMSGSIZE). */
#define AGENTP_MAX_PAYLOAD (8u << 20)
/* Cap on each env-file content carried in EXITED. */
#define AGENTP_FILE_CAP (1u << 20)
/* Largest OUTPUT chunk the agent sends. */
#define AGENTP_CHUNK_MAX (64u << 10)

enum agentp_type {
    /* host -> agent */
    AGENTP_HELLO = 0x01,
    AGENTP_RUN = 0x02,
    AGENTP_CANCEL = 0x03,
    AGENTP_RESUME = 0x04,
    AGENTP_ACK = 0x05,
    AGENTP_WRITE_FILE = 0x06,
    AGENTP_SHUTDOWN = 0x07,
    /* agent -> host */
    AGENTP_HELLO_REPLY = 0x81,
    AGENTP_STARTED = 0x82,
    AGENTP_OUTPUT = 0x83,
    AGENTP_EXITED = 0x84,
    AGENTP_FILE_WRITTEN = 0x85,
    AGENTP_ERROR = 0x86,
    AGENTP_BYE = 0x87,
};

enum { AGENTP_STDOUT = 1, AGENTP_STDERR = 2 };

/* Order of the env files in EXITED (and bits of agentp_msg.truncated / .present). */
enum {
    AGENTP_FILE_ENV,     /* GITHUB_ENV */
    AGENTP_FILE_OUTPUT,  /* GITHUB_OUTPUT */
    AGENTP_FILE_STATE,   /* GITHUB_STATE */
    AGENTP_FILE_PATH,    /* GITHUB_PATH */
    AGENTP_FILE_SUMMARY, /* GITHUB_STEP_SUMMARY */
    AGENTP_NFILES
};

/* EXITED flags. */
#define AGENTP_EXIT_SIGNALED 0x1u  /* killed by .signal; .exit_code is -1 */
#define AGENTP_EXIT_TIMED_OUT 0x2u /* the step's timeout fired */
#define AGENTP_EXIT_CANCELLED 0x4u /* a CANCEL, SHUTDOWN or forwarded signal stopped it */

/* The env-var names of the five files, in AGENTP_FILE_* order. */
extern const char *const agentp_file_vars[AGENTP_NFILES];

/* A run of bytes inside a decoded message (not NUL-terminated). */
struct agentp_bytes {
    const uint8_t *p;
    size_t len;
};

/* One message. Which fields a type uses is listed in proto/agent-protocol.md §4; the others are 0.
 * After agentp_msg_decode() every pointer points into memory the message owns (free with
 * agentp_msg_free()); for agentp_encode() the caller's pointers are only read. */
struct agentp_msg {
    int type;                 /* enum agentp_type */
    uint64_t offset;          /* frame header: journal offset (agent->host), else 0 */
    uint32_t id;              /* step id, or request id (WRITE_FILE, FILE_WRITTEN, ERROR) */
    uint32_t version_min;     /* HELLO */
    uint32_t version_max;     /* HELLO */
    uint32_t version;         /* HELLO_REPLY: the negotiated version */
    uint32_t pid;             /* HELLO_REPLY (agent), STARTED (step leader) */
    uint32_t timeout_ms;      /* RUN: 0 = none */
    uint32_t grace_ms;        /* RUN (timeout), CANCEL, SHUTDOWN: TERM->KILL delay, 0 = KILL */
    uint32_t mode;            /* WRITE_FILE: permission bits */
    uint32_t stream;          /* OUTPUT: AGENTP_STDOUT / AGENTP_STDERR */
    uint64_t time_ns;         /* OUTPUT: agent CLOCK_MONOTONIC when read */
    uint64_t pos;             /* RESUME, ACK: journal offset; HELLO_REPLY: journal start */
    uint64_t journal_end;     /* HELLO_REPLY */
    int32_t exit_code;        /* EXITED: 0..255, or -1 when signalled */
    uint32_t signal;          /* EXITED */
    uint32_t flags;           /* EXITED: AGENTP_EXIT_* */
    uint32_t truncated;       /* EXITED: bit i = file i was cut at AGENTP_FILE_CAP */
    uint32_t present;         /* EXITED: bit i = file i existed and was read */
    uint32_t code;            /* ERROR: a positive errno value */
    uint32_t ref_type;        /* ERROR: type of the message it answers, 0 = framing */
    const char *text;         /* HELLO, HELLO_REPLY: peer name; ERROR: message */
    const char *cwd;          /* RUN: working directory ("" = agent's) */
    const char *dir;          /* RUN: directory to create for the env files ("" = none) */
    const char *path;         /* WRITE_FILE */
    char **argv;              /* RUN: argc strings + NULL */
    size_t argc;
    char **env;               /* RUN: envc "K=V" strings + NULL */
    size_t envc;
    struct agentp_bytes data; /* OUTPUT, WRITE_FILE */
    struct agentp_bytes files[AGENTP_NFILES]; /* EXITED */
    void *mem;                /* private: storage of a decoded message */
};

/* A growable output buffer (plain malloc). */
struct agentp_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
};

void agentp_buf_free(struct agentp_buf *b);

/* Appends one encoded frame for m (header with m->type and m->offset, then the payload) to
 * out. Returns 0, -EINVAL (unknown type, NULL string, payload over AGENTP_MAX_PAYLOAD) or
 * -ENOMEM; on failure out is unchanged. */
int agentp_encode(struct agentp_buf *out, const struct agentp_msg *m);

/* A frame as the decoder returns it; payload is borrowed from the decoder and valid until
 * the next agentp_dec_feed() or agentp_dec_next(). */
struct agentp_frame {
    int type;
    unsigned flags;
    uint64_t offset;
    const uint8_t *payload;
    size_t len;
};

/* Incremental frame decoder: feed arbitrary chunks, take whole frames out. */
struct agentp_dec {
    uint8_t *buf;
    size_t start, len, cap; /* buffered bytes are buf[start .. start+len) */
    size_t discard;         /* payload bytes of a rejected frame still to skip */
    size_t skipped;         /* bytes skipped by the last error (for messages) */
    uint64_t garbage;       /* total bytes skipped so far */
};

void agentp_dec_init(struct agentp_dec *d);
void agentp_dec_free(struct agentp_dec *d);
/* Buffers n bytes. Returns 0 or -ENOMEM. */
int agentp_dec_feed(struct agentp_dec *d, const void *p, size_t n);
/* Takes the next frame out. Returns 1 (frame in *f), 0 (need more bytes), or an error after
 * which the decoder has already moved on, so the caller may call again:
 *   -EBADMSG          bytes skipped looking for a frame (garbage, bad header or payload CRC);
 *                     d->skipped says how many;
 *   -EMSGSIZE         a header announced more than AGENTP_MAX_PAYLOAD; its payload is skipped;
 *   -EPROTONOSUPPORT  a frame of an unknown frame version; skipped whole. */
int agentp_dec_next(struct agentp_dec *d, struct agentp_frame *f);
/* Bytes buffered that do not yet form a frame: nonzero at end of stream = truncated. */
size_t agentp_dec_pending(const struct agentp_dec *d);

/* Decodes f's payload into m (fills m->type and m->offset from f too). Returns 0, -ENOMSG
 * (unknown type), -EPROTO (malformed payload) or -ENOMEM. Trailing bytes after the fields a
 * version knows are ignored (fields are only ever appended). Free m with agentp_msg_free(),
 * also after a failure. */
int agentp_msg_decode(const struct agentp_frame *f, struct agentp_msg *m);
void agentp_msg_free(struct agentp_msg *m);

/* "RUN", "OUTPUT", ...; "?" for an unknown type. */
const char *agentp_type_name(int type);

/* CRC-32 (IEEE 802.3, as zlib's crc32()) of n bytes, continuing from crc (start with 0). */
uint32_t agentp_crc32(uint32_t crc, const void *p, size_t n);

/* Reads the header at p (AGENTP_HDR_LEN bytes): 0 and the frame's payload length and offset
 * when magic, version and header CRC are right, else -EBADMSG. */
int agentp_hdr_parse(const uint8_t *p, uint32_t *len, uint64_t *offset);

#endif
