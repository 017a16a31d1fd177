/* cmd-cache.c: `runnerctl cache serve` runs the actions/cache server alone (a fleet's shared
 * cache host: every runner mints tokens with the same key file), and `runnerctl cache token`
 * prints a token for it (tests, operators). doc/cache.md has both. */
#include "cache.h"
#include "cmd.h"
#include "dockeropts.h"

#include "runner/log.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static const char cache_usage[] =
    "serve --listen IP:PORT [--listen IP...] --dir DIR --key-file F [--db PATH] [--max-size N]"
    " [--max-age SECONDS] [--reserve-ttl SECONDS] [-v]\n"
    "       runnerctl cache token --key-file F --repo OWNER/NAME --ref REF [--default-ref REF]"
    " [--job ID] [--ttl SECONDS]";

#define MAX_LISTEN 16

/* A positive number of bytes, in the forms runnerd.cache.max_size takes ("512m", "10g", "10GiB":
 * dockeropts_size()), or -1. */
static int64_t
parse_size(const char *s)
{
    long long v;

    return dockeropts_size(s, &v) == 0 && v > 0 ? (int64_t)v : -1;
}

/* A positive number of seconds (digits only), or -1. */
static int64_t
parse_seconds(const char *s)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    return errno == 0 && *end == '\0' && v > 0 ? (int64_t)v : -1;
}

struct serve {
    uv_signal_t sigint, sigterm;
    struct cache_server *srv;
};

/* The server is closed: the signal handles go and the loop ends. */
static void
on_closed(void *arg)
{
    struct serve *sv = arg;

    uv_close((uv_handle_t *)&sv->sigint, NULL);
    uv_close((uv_handle_t *)&sv->sigterm, NULL);
}

/* SIGINT or SIGTERM: the server closes (uploads in flight are dropped). */
static void
on_signal(uv_signal_t *h, int signum)
{
    struct serve *sv = h->data;

    log_notice("cache: signal %d: stopping", signum);
    uv_signal_stop(&sv->sigint);
    uv_signal_stop(&sv->sigterm);
    if (sv->srv != NULL) {
        struct cache_server *srv = sv->srv;

        sv->srv = NULL;
        cache_server_close(srv, on_closed, sv);
    }
}

/* `runnerctl cache serve`: the server on its own loop until a signal. */
static int
serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"dir", required_argument, NULL, 'd'},
        {"key-file", required_argument, NULL, 'k'},
        {"db", required_argument, NULL, 'D'},
        {"max-size", required_argument, NULL, 's'},
        {"max-age", required_argument, NULL, 'a'},
        {"reserve-ttl", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen[MAX_LISTEN], *dir = NULL, *key_file = NULL, *db = NULL;
    struct cache_server_opts o = {0};
    uint8_t key[CACHE_KEY_LEN];
    struct serve sv = {0};
    struct err e = {0};
    char *db_owned = NULL;
    uv_loop_t loop;
    size_t n_listen = 0;
    int c, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":l:d:k:D:s:a:t:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (n_listen == MAX_LISTEN)
                return cli_usage_error("cache", cache_usage, "at most %d --listen", MAX_LISTEN);
            listen[n_listen++] = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'k':
            key_file = optarg;
            break;
        case 'D':
            db = optarg;
            break;
        case 's':
        case 'a':
        case 't': {
            int64_t v = c == 's' ? parse_size(optarg) : parse_seconds(optarg);

            if (v <= 0)
                return cli_usage_error("cache", cache_usage,
                                       "--%s expects a positive number%s, got '%s'",
                                       c == 's'   ? "max-size"
                                       : c == 'a' ? "max-age"
                                                  : "reserve-ttl",
                                       c == 's' ? " of bytes (512m, 10g)" : " of seconds", optarg);
            if (c == 's')
                o.max_size = v;
            else if (c == 'a')
                o.max_age = v;
            else
                o.reserve_ttl = v;
            break;
        }
        case 'v':
            log_init(LOG_PRIO_DEBUG, false);
            break;
        case 'h':
            printf("usage: runnerctl cache %s\n", cache_usage);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("cache", cache_usage, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error("cache", cache_usage, "unexpected argument '%s'", argv[optind]);
    if (n_listen == 0 || dir == NULL || key_file == NULL)
        return cli_usage_error("cache", cache_usage, "serve needs --listen, --dir and --key-file");
    if (cache_key_load(key_file, true, key, &e) < 0) {
        fprintf(stderr, "runnerctl cache: %s\n", e.msg);
        return CLI_EXIT_FAIL;
    }
    if (db == NULL)
        db = db_owned = xasprintf("%s/index.db", dir);
    o.dir = dir;
    o.db_path = db;
    o.key = key;
    o.listen = listen;
    o.n_listen = n_listen;
    uv_loop_init(&loop);
    rc = cache_server_start(&loop, &o, &sv.srv, &e);
    if (rc < 0) {
        fprintf(stderr, "runnerctl cache: %s\n", e.msg);
        uv_run(&loop, UV_RUN_DEFAULT); /* closes what the failed start left */
        uv_loop_close(&loop);
        free(db_owned);
        return CLI_EXIT_FAIL;
    }
    uv_signal_init(&loop, &sv.sigint);
    uv_signal_init(&loop, &sv.sigterm);
    sv.sigint.data = sv.sigterm.data = &sv;
    uv_signal_start(&sv.sigint, on_signal, SIGINT);
    uv_signal_start(&sv.sigterm, on_signal, SIGTERM);
    printf("listening port=%d\n", cache_server_port(sv.srv));
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(db_owned);
    return CLI_EXIT_OK;
}

/* `runnerctl cache token`: prints a token the server with this key accepts. */
static int
token(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"key-file", required_argument, NULL, 'k'}, {"repo", required_argument, NULL, 'r'},
        {"ref", required_argument, NULL, 'R'},      {"default-ref", required_argument, NULL, 'd'},
        {"job", required_argument, NULL, 'j'},      {"ttl", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    struct cache_claims cl = {0};
    const char *key_file = NULL;
    uint8_t key[CACHE_KEY_LEN];
    struct err e = {0};
    int64_t ttl = 3600;
    char *tok = NULL;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:r:R:d:j:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            key_file = optarg;
            break;
        case 'r':
            cl.repo = optarg;
            break;
        case 'R':
            cl.ref = optarg;
            break;
        case 'd':
            cl.default_ref = optarg;
            break;
        case 'j':
            cl.job = optarg;
            break;
        case 't':
            ttl = parse_seconds(optarg);
            if (ttl <= 0 || ttl > 366LL * 24 * 3600)
                return cli_usage_error("cache", cache_usage,
                                       "--ttl expects seconds (1 to a year), got '%s'", optarg);
            break;
        case 'h':
            printf("usage: runnerctl cache %s\n", cache_usage);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("cache", cache_usage, c, argv);
        }
    }
    if (key_file == NULL || cl.repo == NULL || cl.ref == NULL || *cl.repo == '\0' ||
        *cl.ref == '\0')
        return cli_usage_error("cache", cache_usage, "token needs --key-file, --repo and --ref");
    if (cache_key_load(key_file, false, key, &e) < 0) {
        fprintf(stderr, "runnerctl cache: %s\n", e.msg);
        return CLI_EXIT_FAIL;
    }
    cl.expires = (int64_t)time(NULL) + ttl;
    if (cache_token_mint(key, &cl, &tok) < 0) {
        fprintf(stderr, "runnerctl cache: cannot make a token of these claims (not UTF-8?)\n");
        return CLI_EXIT_USAGE;
    }
    printf("%s\n", tok);
    free(tok);
    return CLI_EXIT_OK;
}

/* The subcommands. */
static int
cache_exec(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("cache", cache_usage, "expected serve or token");
    if (strcmp(argv[1], "serve") == 0)
        return serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return token(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: runnerctl cache %s\n", cache_usage);
        return CLI_EXIT_OK;
    }
    return cli_usage_error("cache", cache_usage, "unknown subcommand '%s'", argv[1]);
}

const struct cli_cmd cli_cmd_cache = {
    .name = "cache",
    .usage = cache_usage,
    .summary = "run the actions/cache server alone, or print a token for it",
    .exec = cache_exec,
};
