/* cmd-checkout.c: `runnerctl checkout URL DEST`: a checkout through the runner's mirror cache
 * (scm.h), as a job's actions/checkout gets it. Progress goes to stderr, the commit checked
 * out to stdout. The token is read from an environment variable, never from the command line
 * (where ps would show it). */
#include "cmd.h"
#include "config.h"
#include "scm.h"

#include "runner/xalloc.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char checkout_usage[] =
    "URL DEST [--cache DIR] [--ref REF] [--sha SHA] [--token-env VAR] [--ca-file F] "
    "[--insecure] [--depth N] [--submodules] [--recursive] [--clean] [--persist-credentials]";

static void
on_progress(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s\n", line);
}

static int
checkout_exec(int argc, char **argv)
{
    enum { O_CACHE = 256, O_REF, O_SHA, O_TOKEN_ENV, O_CA_FILE, O_INSECURE, O_DEPTH, O_SUB,
           O_RECURSIVE, O_CLEAN, O_PERSIST };
    static const struct option longopts[] = {
        {"cache", required_argument, NULL, O_CACHE},
        {"ref", required_argument, NULL, O_REF},
        {"sha", required_argument, NULL, O_SHA},
        {"token-env", required_argument, NULL, O_TOKEN_ENV},
        {"ca-file", required_argument, NULL, O_CA_FILE},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"depth", required_argument, NULL, O_DEPTH},
        {"submodules", no_argument, NULL, O_SUB},
        {"recursive", no_argument, NULL, O_RECURSIVE},
        {"clean", no_argument, NULL, O_CLEAN},
        {"persist-credentials", no_argument, NULL, O_PERSIST},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct scm_checkout_req req = {0};
    struct err e = {0};
    const char *cache_opt = NULL, *token_env = NULL;
    char *cache = NULL, *sha = NULL, *end;
    long depth;
    int c, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_CACHE:
            cache_opt = optarg;
            break;
        case O_REF:
            req.ref = optarg;
            break;
        case O_SHA:
            req.sha = optarg;
            break;
        case O_TOKEN_ENV:
            token_env = optarg;
            break;
        case O_CA_FILE:
            req.remote.ca_file = optarg;
            break;
        case O_INSECURE:
            req.remote.insecure = true;
            break;
        case O_DEPTH:
            errno = 0;
            depth = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end != '\0' || depth < 0 || depth > INT_MAX)
                return cli_usage_error("checkout", checkout_usage,
                                       "--depth expects a number of commits (0: all), got '%s'",
                                       optarg);
            req.fetch_depth = (int)depth;
            break;
        case O_SUB:
            req.submodules = true;
            break;
        case O_RECURSIVE:
            req.submodules = req.recursive = true;
            break;
        case O_CLEAN:
            req.clean = true;
            break;
        case O_PERSIST:
            req.persist_credentials = true;
            break;
        case 'h':
            printf("usage: runnerctl checkout %s\n"
                   "  DIR defaults to $RUNNERD_CACHE_DIR, else $CACHE_DIRECTORY, else "
                   "$XDG_CACHE_HOME/runnerd, else ~/.cache/runnerd;\n"
                   "  the token is read from the environment variable VAR\n",
                   checkout_usage);
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("checkout", checkout_usage, "%s needs an argument",
                                   argv[optind - 1]);
        default:
            return cli_usage_error("checkout", checkout_usage, "unknown option '%s'",
                                   argv[optind - 1]);
        }
    }
    if (argc - optind < 2)
        return cli_usage_error("checkout", checkout_usage, "%s",
                               argc - optind == 0 ? "missing URL and DEST" : "missing DEST");
    if (argc - optind > 2)
        return cli_usage_error("checkout", checkout_usage, "unexpected argument '%s'",
                               argv[optind + 2]);
    if (req.sha != NULL &&
        (strlen(req.sha) != 40 || strspn(req.sha, "0123456789abcdefABCDEF") != 40))
        return cli_usage_error("checkout", checkout_usage,
                               "--sha expects a full commit id (40 hex digits), got '%s'",
                               req.sha);
    req.remote.url = argv[optind];
    req.dest = argv[optind + 1];
    if (token_env != NULL) {
        req.remote.token = getenv(token_env);
        if (req.remote.token == NULL || *req.remote.token == '\0')
            return cli_usage_error("checkout", checkout_usage,
                                   "--token-env %s: the variable is not set", token_env);
    }
    cache = cache_opt ? xstrdup(cache_opt) : config_cache_dir(NULL, false);
    req.cache_dir = cache;
    rc = scm_checkout(&req, on_progress, NULL, NULL, &sha, &e);
    if (rc < 0) {
        fprintf(stderr, "runnerctl checkout: %s\n", e.msg);
        free(cache);
        return CLI_EXIT_FAIL;
    }
    printf("%s\n", sha);
    free(sha);
    free(cache);
    return CLI_EXIT_OK;
}

const struct cli_cmd cli_cmd_checkout = {
    .name = "checkout",
    .usage = checkout_usage,
    .summary = "check out a repository through the runner's mirror cache",
    .exec = checkout_exec,
};
