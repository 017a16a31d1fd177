/* cmd.h: runnerctl's command table (doc/style.md §1) and what its commands share: usage
 * errors and finding the state database. */
#ifndef CMD_H
#define CMD_H

struct cli_cmd {
    const char *name;
    const char *usage;   /* one line: arguments after the command name */
    const char *summary; /* one line for `runnerctl help` */
    int (*exec)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
};

extern const struct cli_cmd cli_cmd_exec;
extern const struct cli_cmd cli_cmd_register;
extern const struct cli_cmd cli_cmd_status;
extern const struct cli_cmd cli_cmd_tasks;
extern const struct cli_cmd cli_cmd_logs;
extern const struct cli_cmd cli_cmd_restart;
extern const struct cli_cmd cli_cmd_checkout;
extern const struct cli_cmd cli_cmd_cache;

/* Every command, NULL-terminated. */
extern const struct cli_cmd *const cli_cmds[];

/* Returns the command called name, or NULL. */
const struct cli_cmd *cli_cmd_find(const char *name);

/* Exit codes: 0 success, 1 a job or operation failed, 2 bad usage or bad input. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* Prints "runnerctl CMD: MESSAGE" and "usage: runnerctl CMD USAGE" on stderr; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports a getopt failure (opterr off, the optstring starting with ':'): "option NAME needs a
 * value" or "unknown option NAME", NAME without any "=VALUE", then the usage. Returns
 * CLI_EXIT_USAGE. */
int cli_bad_option(const char *cmd, const char *usage, int c, char **argv);

/* The monotonic clock in seconds, for deadlines. */
double cli_mono_s(void);

/* The state database (a new string), found as runnerd finds it (config_state_path(), config.h):
 * state_opt, else $RUNNERD_STATE, else runnerd.state_file of the file config_path (when not
 * NULL), else the default. NULL when that file does not load ("runnerctl CMD: ..." printed). */
char *cli_state_path(const char *cmd, const char *config_path, const char *state_opt);

#endif
