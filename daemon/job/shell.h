/* shell.h: how a `run:` step becomes a script and an argv (doc/workflow-semantics.md §8). */
#ifndef SHELL_H
#define SHELL_H

#include "runner/err.h"

#include <stdbool.h>
#include <stddef.h>

struct shell_cmd {
    char *tmpl;       /* command template with {0}, e.g. "bash --noprofile --norc -e -o pipefail {0}" */
    const char *ext;  /* script extension without the dot, "" for none */
    const char *before, *after; /* lines wrapped around the script */
};

/* Resolves the shell for a step: the first non-empty of step, job default, workflow default;
 * else `sh` when the job has a container of its own or bash_available is false, and
 * "unspecified" (bash -e {0}) otherwise. Fills out (free with shell_cmd_free()). */
void shell_resolve(const char *step_shell, const char *job_default, const char *wf_default,
                   bool job_container, bool bash_available, struct shell_cmd *out);
void shell_cmd_free(struct shell_cmd *c);

/* Returns a new string: the script file's content for run text. */
char *shell_script(const struct shell_cmd *c, const char *run);

/* Splits the template with POSIX shell-word rules (quotes and backslashes honoured), replacing
 * the first {0} with script_path. Returns 0 and a new NULL-terminated argv (free with
 * shell_argv_free()), or ERR_INVALID (unterminated quote, empty command). */
int shell_argv(const char *tmpl, const char *script_path, char ***argv, struct err *e);
void shell_argv_free(char **argv);

#endif
