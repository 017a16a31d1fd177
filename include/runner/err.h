/* err.h: a code for the program, a message for the human (doc/style.md §3). */
#ifndef RUNNER_ERR_H
#define RUNNER_ERR_H

#include <errno.h>

/* Error codes callers must tell apart; everything else is a negative errno. */
enum {
    ERR_NOTFOUND = -10001,
    ERR_TIMEOUT = -10002,
    ERR_CANCELED = -10003,
    ERR_PROTO = -10004,
    ERR_INVALID = -10005, /* bad input (workflow, expression, config) */
};

struct err {
    int code;
    char msg[256]; /* one line, no newline */
};

/* Fills e (if non-NULL) and returns code: `return err_set(e, -EIO, "...")`. */
int err_set(struct err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends context to e->msg (if e is non-NULL) and returns e->code. */
int err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears e (if non-NULL). */
void err_clear(struct err *e);

#endif
