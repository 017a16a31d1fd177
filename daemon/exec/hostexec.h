/* hostexec.h: runner-agent as a child process on the host, over pipes (the host-label
 * executor's transport, and how the tests drive the real agent without Docker).
 *
 * hostexec owns the process and its three pipes on the caller's loop; the protocol is an
 * agentconn the owner attaches: bytes from the agent's stdout go to the attached agentconn
 * (or nowhere while none is attached, like a lost Docker attach stream), and the agentconn's
 * write callback is hostexec_write(). The agent's stderr is diagnostics.
 * A write to an agent that has exited must fail with EPIPE instead of killing the process:
 * hostexec_start() sets SIGPIPE to SIG_IGN if it still has its default disposition. */
#ifndef HOSTEXEC_H
#define HOSTEXEC_H

#include "agentconn.h"
#include "runner/err.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct hostexec;

struct hostexec_opts {
    const char *agent_path;       /* the runner-agent binary */
    const char *const *args;      /* extra arguments, NULL-terminated; NULL for none */
    const char *const *env;       /* the agent's environment, NULL-terminated; NULL: ours */
    const char *cwd;              /* NULL: ours */
    /* The agent exited (not called once hostexec_close() has begun). */
    void (*on_exit)(struct hostexec *hx, int64_t status, int term_signal, void *arg);
    /* A chunk of the agent's stderr; NULL: logged at NOTICE, escaped. */
    void (*on_stderr)(struct hostexec *hx, const char *data, size_t len, void *arg);
    void *arg;
};

/* Spawns the agent. On success *out is a new hostexec; release with hostexec_close(). */
int hostexec_start(uv_loop_t *loop, const struct hostexec_opts *o, struct hostexec **out,
                   struct err *e);
/* Routes the agent's output to c (borrowed; NULL: drop it). Safe inside c's callbacks. */
void hostexec_attach(struct hostexec *hx, struct agentconn *c);
/* Queues bytes for the agent's stdin (copied). Returns 0 or a negative errno (-EPIPE once
 * the agent's stdin is closed). Signature fits agentconn_cbs.write with arg = hx. */
int hostexec_write(void *hx, const void *data, size_t len);
/* Stops / restarts reading the agent's stdout (its pipe then fills; the agent journals on). */
void hostexec_read_stop(struct hostexec *hx);
int hostexec_read_start(struct hostexec *hx);
/* The agent's pid; 0 once it has exited. */
int hostexec_pid(const struct hostexec *hx);
/* Kills the agent if it still runs (SIGKILL), closes every handle and frees hx in the last
 * close callback, then calls done(arg) (may be NULL). hx is invalid once this returns. */
void hostexec_close(struct hostexec *hx, void (*done)(void *arg), void *arg);

#endif
