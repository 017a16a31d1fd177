/* agent.h: what the agent's files share (agent/runner-agent.c: the main loop and host messages;
 * agent/agent-io.c: diagnostics, the journal and sending; agent/agent-step.c: the running step).
 * The agent is its own static program (libc and proto/agentp.c only), so these names are not
 * prefixed: nothing else links them. */
#ifndef AGENT_H
#define AGENT_H

#include "agentp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


#ifndef RUNNERD_VERSION
#define RUNNERD_VERSION "0"
#endif

#define AGENT_NAME "runner-agent " RUNNERD_VERSION
#define IO_CHUNK AGENTP_CHUNK_MAX
#define PEND_MAX (4u << 20)       /* frames waiting for the journal before backpressure */
#define STOP_FLUSH_NS 5000000000LL /* how long to try to send the last frames on exit */

extern char **environ;

struct step {
    bool active;
    uint32_t id;
    pid_t pid;
    int fd[2]; /* read ends: [0] stdout, [1] stderr; -1 once closed */
    bool reaped;
    int status;
    int64_t deadline;     /* timeout, ns monotonic; 0 = none */
    int64_t kill_at;      /* when to send SIGKILL; 0 = not scheduled */
    uint32_t grace_ms;    /* grace after the timeout */
    bool term_sent;
    bool timed_out, cancelled;
    char *files[AGENTP_NFILES]; /* env-file paths from the RUN env, NULL if unset */
};

struct agent {
    const char *journal_path;
    uint64_t compact_at;  /* compact when this many acked bytes lead the file */
    uint64_t max_unacked; /* stop reading step output past this much unacked journal */
    int sig_rd, sig_wr;
    struct agentp_dec dec;
    struct agentp_buf tmp; /* one encoded frame */
    /* The journal: file holds offsets [j_base, j_written), pend holds [j_written, j_end). */
    int jfd;
    uint64_t j_base, j_written, j_end;
    struct agentp_buf pend;
    /* Sending: bytes [.., sent) went to out_fd; frame_end is the end of the frame being sent.
     * out_fd is chan_fd (the fast channel, proto/agent-protocol.md §1) while it works, else
     * stdout; chan_fd is -1 when there is none. */
    int out_fd, chan_fd;
    uint64_t sent, frame_end, acked;
    int64_t resume_to; /* -1, or where to continue after the current frame */
    bool out_broken, in_eof, hello_done;
    bool stopping, bye_sent;
    uint32_t stop_grace;
    int64_t stop_deadline;
    struct step step;
};

/* One I/O chunk, shared by the sender and the step's pipes (one thread, never both at once). */
extern uint8_t iobuf[IO_CHUNK];

void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t now_ns(void);
void set_nonblock(int fd);
int mkdir_p(const char *path, mode_t mode);
int mkdir_parent(const char *path, mode_t mode);
int write_all(int fd, const void *p, size_t n);
void journal_flush(struct agent *a);
void emit(struct agent *a, struct agentp_msg *m);
void emit_error(struct agent *a, uint32_t id, int ref_type, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void pump_out(struct agent *a);
int chan_connect(struct agent *a, const char *path);
void chan_drop(struct agent *a, const char *why);
void maybe_compact(struct agent *a);
void step_kill(struct step *s, int sig);
void step_stop(struct step *s, uint32_t grace_ms);
void step_clear(struct step *s);
void step_start(struct agent *a, const struct agentp_msg *m);
ssize_t step_read(struct agent *a, int which);
void step_finish(struct agent *a);
void reap(struct agent *a);

#endif
