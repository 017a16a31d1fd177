/* wfcmd.h: workflow commands in step output (doc/workflow-semantics.md §11):
 * `::name k=v,k=v::data` and the legacy `##[name k=v;k=v]data`, with %-unescaping, and the
 * stop-commands state. Names are matched case-insensitively, as GitHub does. */
#ifndef WFCMD_H
#define WFCMD_H

#include <stdbool.h>
#include <stddef.h>

#define WFCMD_MAX_PROPS 16

struct wfcmd {
    char *name;                      /* lower-cased */
    char *keys[WFCMD_MAX_PROPS];     /* property names as written */
    char *values[WFCMD_MAX_PROPS];   /* unescaped */
    size_t n_props;
    char *data;                      /* unescaped */
};

/* Parses one output line (without its newline). Returns true and fills cmd (free with
 * wfcmd_free()) when the line is a workflow command; false (cmd untouched) otherwise. */
bool wfcmd_parse(const char *line, size_t len, struct wfcmd *cmd);
void wfcmd_free(struct wfcmd *cmd);

/* Returns a property's value or NULL. */
const char *wfcmd_prop(const struct wfcmd *cmd, const char *key);

/* stop-commands: while a token is set, command lines are not executed until `::TOKEN::`. */
struct wfcmd_state {
    char *stop_token; /* NULL when commands are on */
};

enum wfcmd_verdict {
    WFCMD_NONE,      /* not a command: plain output */
    WFCMD_RUN,       /* a command to act on (cmd filled) */
    WFCMD_IGNORED,   /* a command line while commands are stopped: print it as output */
    WFCMD_RESUMED,   /* the line that turned commands back on (consumed) */
};

/* Classifies a line under st. For WFCMD_RUN the caller owns cmd; a `stop-commands` command
 * is applied to st here and still returned as WFCMD_RUN (so the caller can log it). */
enum wfcmd_verdict wfcmd_process(struct wfcmd_state *st, const char *line, size_t len,
                                 struct wfcmd *cmd);
void wfcmd_state_free(struct wfcmd_state *st);

#endif
