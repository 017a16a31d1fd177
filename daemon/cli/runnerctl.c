/* runnerctl.c: the command-line front end: `runnerctl COMMAND [ARGS]`. */
#include "cmd.h"

#include "runner/log.h"

#include <stdio.h>
#include <string.h>

static void
usage(FILE *f)
{
    fprintf(f, "usage: runnerctl COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; cli_cmds[i]; i++)
        fprintf(f, "  %-10s %s\n", cli_cmds[i]->name, cli_cmds[i]->summary);
    fprintf(f, "\n`runnerctl help COMMAND` shows a command's arguments.\n");
}

int
main(int argc, char **argv)
{
    const struct cli_cmd *c;

    log_init(LOG_PRIO_NOTICE, false);
    log_trace_init();
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("runnerctl %s\n", RUNNERD_VERSION);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        if (argc > 2 && (c = cli_cmd_find(argv[2])) != NULL) {
            printf("usage: runnerctl %s %s\n", c->name, c->usage);
            return CLI_EXIT_OK;
        }
        usage(stdout);
        return CLI_EXIT_OK;
    }
    c = cli_cmd_find(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "runnerctl: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    int rc = c->exec(argc - 1, argv + 1);
    log_trace("process exit");
    return rc;
}
