/* cmd.c: the table of runnerctl commands. */
#include "cmd.h"

#include <stddef.h>
#include <string.h>

const struct cli_cmd *const cli_cmds[] = {
    &cli_cmd_exec,
    &cli_cmd_register,
    &cli_cmd_status,
    &cli_cmd_tasks,
    &cli_cmd_logs,
    &cli_cmd_restart,
    &cli_cmd_checkout,
    NULL,
};

const struct cli_cmd *
cli_cmd_find(const char *name)
{
    for (size_t i = 0; cli_cmds[i]; i++)
        if (strcmp(cli_cmds[i]->name, name) == 0)
            return cli_cmds[i];
    return NULL;
}
