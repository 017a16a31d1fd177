/* cmd.h: runnerctl's command table (doc/style.md §1). */
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

/* Every command, NULL-terminated. */
extern const struct cli_cmd *const cli_cmds[];

/* Returns the command called name, or NULL. */
const struct cli_cmd *cli_cmd_find(const char *name);

/* Exit codes: 0 success, 1 a job or operation failed, 2 bad usage or bad input. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

#endif
