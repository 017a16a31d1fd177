/* cmd.c: the table of runnerctl commands, and what they share: reporting bad usage and finding
 * the state database. */
#include "cmd.h"
#include "config.h"

#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const struct cli_cmd *const cli_cmds[] = {
    &cli_cmd_exec,
    &cli_cmd_register,
    &cli_cmd_status,
    &cli_cmd_tasks,
    &cli_cmd_logs,
    &cli_cmd_restart,
    &cli_cmd_checkout,
    &cli_cmd_cache,
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

int
cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "runnerctl %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: runnerctl %s %s\n", cmd, usage);
    return CLI_EXIT_USAGE;
}

int
cli_bad_option(const char *cmd, const char *usage, int c, char **argv)
{
    const char *arg = argv[optind - 1];
    char name[64];

    if (strncmp(arg, "--", 2) == 0)
        snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
    else
        snprintf(name, sizeof name, "-%c", optopt ? optopt : '?');
    if (c == ':')
        return cli_usage_error(cmd, usage, "option %s needs a value", name);
    return cli_usage_error(cmd, usage, "unknown option %s", name);
}

char *
cli_state_path(const char *cmd, const char *config_path, const char *state_opt)
{
    struct config cfg;
    struct err e = {0};
    char *path;

    config_defaults(&cfg);
    if (config_path && config_load(config_path, &cfg, &e) < 0) {
        fprintf(stderr, "runnerctl %s: %s\n", cmd, e.msg);
        config_free(&cfg);
        return NULL;
    }
    path = config_state_path(&cfg, state_opt);
    config_free(&cfg);
    return path;
}

double
cli_mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
