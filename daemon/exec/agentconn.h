/* agentconn.h: the host end of the runner-agent protocol (proto/agent-protocol.md).
 *
 * A pure state machine, transport-agnostic and without libuv: the owner supplies a write
 * function for bytes to the agent and feeds the bytes the agent sent (already stripped of
 * Docker's stdcopy framing) to agentconn_feed(), which calls back with events in journal
 * order. Each agent frame is delivered exactly once: frames before the expected offset
 * (replays) are dropped, and frames after it are dropped while a RESUME is outstanding.
 *
 * Reattaching after a lost stream: make a new agentconn on the new stream, then call
 * agentconn_resume() with the offset persisted (agentconn_offset() of the old one). After
 * persisting what an event carried, call agentconn_ack() with ev->next so that the agent can
 * drop its journal before it. The agent stops reading step output when too much is unacked. */
#ifndef AGENTCONN_H
#define AGENTCONN_H

#include "agentp.h"
#include "runner/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum agentconn_kind {
    AGENTCONN_HELLO,        /* msg: version, pid, pos (journal start), journal_end, text */
    AGENTCONN_STARTED,      /* msg: id (step), pid */
    AGENTCONN_OUTPUT,       /* msg: id, stream, time_ns, data */
    AGENTCONN_EXITED,       /* msg: id, exit_code, signal, flags, files[], present, truncated */
    AGENTCONN_FILE_WRITTEN, /* msg: id (request) */
    AGENTCONN_ERROR,        /* the agent refused something; msg: id, code, ref_type, text */
    AGENTCONN_BYE,          /* the agent is exiting after SHUTDOWN (or a signal / stdin EOF) */
    AGENTCONN_PROTO_ERROR,  /* our side: bad bytes from the agent; msg NULL, see err */
};

struct agentconn_event {
    enum agentconn_kind kind;
    uint64_t offset;              /* the frame's journal offset */
    uint64_t next;                /* offset just past it: what to ack once this is persisted */
    const struct agentp_msg *msg; /* borrowed for the callback's duration */
    const struct err *err;        /* AGENTCONN_PROTO_ERROR only */
};

struct agentconn_cbs {
    /* Sends bytes to the agent (they are borrowed for the call). Returns 0 or a negative
     * errno, which the sending function returns. Required. */
    int (*write)(void *arg, const void *data, size_t len);
    /* One event. May call any agentconn function, including agentconn_free(). */
    void (*on_event)(void *arg, const struct agentconn_event *ev);
};

struct agentconn;

/* Returns a new connection expecting the agent's journal from offset 0; free with
 * agentconn_free(). */
struct agentconn *agentconn_new(const struct agentconn_cbs *cbs, void *arg);
/* Frees c; safe inside its own callback (then freed when agentconn_feed() returns). */
void agentconn_free(struct agentconn *c);

/* Feeds bytes from the agent, calling on_event for every complete frame. Returns 0, or
 * -ENOMEM. Bad frames become AGENTCONN_PROTO_ERROR events and decoding goes on. */
int agentconn_feed(struct agentconn *c, const void *data, size_t len);
/* Offset just past the last frame delivered: persist this for a later resume. */
uint64_t agentconn_offset(const struct agentconn *c);
/* Bytes buffered that do not form a whole frame yet (nonzero at EOF: truncated stream). */
size_t agentconn_pending(const struct agentconn *c);

/* Asks for protocol versions AGENTP_PROTO_MIN..MAX; the reply is an AGENTCONN_HELLO event. */
int agentconn_hello(struct agentconn *c, struct err *e);

struct agentconn_run {
    uint32_t step;            /* the host's step id, echoed in every event of the step */
    const char *const *argv;  /* argc strings */
    size_t argc;
    const char *const *env;   /* envc "K=V" strings: the step's whole environment, including
                                 GITHUB_ENV etc. naming the files to create and read back */
    size_t envc;
    const char *cwd;          /* NULL or "": the agent's own */
    const char *dir;          /* NULL or "": directory to create for the env files */
    uint32_t timeout_ms;      /* 0: none */
    uint32_t grace_ms;        /* after the timeout: TERM, then KILL after grace_ms (0: KILL) */
};

/* Starts a step (AGENTCONN_STARTED, OUTPUT..., EXITED; or ERROR with msg->id == step). */
int agentconn_run(struct agentconn *c, const struct agentconn_run *r, struct err *e);
/* Stops a step: TERM to its process group, KILL after grace_ms (0: KILL at once). */
int agentconn_cancel(struct agentconn *c, uint32_t step, uint32_t grace_ms, struct err *e);
/* Asks the agent to replay its journal from offset `from`; events before it are not repeated,
 * and until the replay arrives frames past it are dropped. */
int agentconn_resume(struct agentconn *c, uint64_t from, struct err *e);
/* Tells the agent everything before `upto` is stored durably. */
int agentconn_ack(struct agentconn *c, uint64_t upto, struct err *e);
/* Writes a file in the agent's filesystem (AGENTCONN_FILE_WRITTEN or ERROR with msg->id ==
 * id). Parent directories are created. */
int agentconn_write_file(struct agentconn *c, uint32_t id, const char *path, uint32_t mode,
                         const void *data, size_t len, struct err *e);
/* Stops any running step (grace as for cancel), then the agent sends BYE and exits. */
int agentconn_shutdown(struct agentconn *c, uint32_t grace_ms, struct err *e);

#endif
