/* cmd-status.c: `runnerctl status`, `tasks` and `logs`: show what the state database runnerd
 * keeps (store.h) holds: the registered runners, recent tasks and their spooled log rows.
 * These commands only read: a missing database is reported, never created. Runner tokens and
 * task payloads (which carry secrets) are never printed. */
#include "cmd.h"
#include "config.h"
#include "rpc.h"
#include "store.h"

#include "runner/clock.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define STATE_HELP                                                                                 \
    "  FILE defaults to $RUNNERD_STATE, else runnerd.state_file of CONFIG, else "                 \
    CONFIG_STATE_FILE_DEFAULT

static const char status_usage[] = "[-c CONFIG] [--state FILE] [--json]";
static const char tasks_usage[] =
    "[-c CONFIG] [--state FILE] [--json] [-n N] [--only running|finishing|done]";
static const char logs_usage[] = "[-c CONFIG] [--state FILE] [-t] TASK";

/* ------------------------------------------------------------------------------------------
 * Shared: options, opening the database, formatting
 * ------------------------------------------------------------------------------------------ */

/* The options of status, tasks and logs; each command takes those in its own tables. */
struct opts {
    const char *config, *state, *only;
    bool json, stamps;
    unsigned long limit;
};

static int
help(const char *cmd, const char *usage)
{
    printf("usage: runnerctl %s %s\n%s\n", cmd, usage, STATE_HELP);
    return CLI_EXIT_OK;
}

/* Parses the options that optstring and longopts allow into o. Returns -1 to go on, else the
 * exit code to return (--help, or bad usage: printed). */
static int
parse_opts(const char *cmd, const char *usage, const char *optstring,
           const struct option *longopts, int argc, char **argv, struct opts *o)
{
    char *end;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 'S':
            o->state = optarg;
            break;
        case 'J':
            o->json = true;
            break;
        case 't':
            o->stamps = true;
            break;
        case 'o':
            if (strcmp(optarg, "running") != 0 && strcmp(optarg, "finishing") != 0 &&
                strcmp(optarg, "done") != 0)
                return cli_usage_error(cmd, usage,
                                       "--only expects running, finishing or done, got '%s'",
                                       optarg);
            o->only = optarg;
            break;
        case 'n':
            errno = 0;
            o->limit = strtoul(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-')
                return cli_usage_error(cmd, usage, "-n expects a number (0: all), got '%s'",
                                       optarg);
            break;
        case 'h':
            return help(cmd, usage);
        default:
            return cli_bad_option(cmd, usage, c, argv);
        }
    }
    return -1;
}

/* Opens the database at path, refusing to create it. Returns a CLI exit code. */
static int
open_path(const char *path, struct store **out)
{
    struct stat st;
    struct err e = {0};

    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            fprintf(stderr,
                    "runnerctl: %s: no state database (register first: runnerctl register "
                    "--instance URL --token TOKEN)\n",
                    path);
        else
            fprintf(stderr, "runnerctl: %s: %s\n", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    if (store_open(path, out, &e) < 0) {
        fprintf(stderr, "runnerctl: %s\n", e.msg);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* Opens the database o names (cli_state_path()), refusing to create it. Returns a CLI exit
 * code. */
static int
open_state(const char *cmd, const struct opts *o, struct store **out)
{
    char *path = cli_state_path(cmd, o->config, o->state);
    int rc;

    *out = NULL;
    if (path == NULL)
        return CLI_EXIT_USAGE;
    rc = open_path(path, out);
    free(path);
    return rc;
}

/* RFC 3339 UTC ("2024-05-01T10:00:00Z", with millis ".123Z"); "-" when ns is 0 (unset). */
static const char *
fmt_time(int64_t ns, bool millis, char *buf, size_t size)
{
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    size_t n;

    if (ns == 0 || gmtime_r(&secs, &tm) == NULL)
        return "-";
    n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    if (millis)
        snprintf(buf + n, size - n, ".%03dZ", (int)(ns % 1000000000 / 1000000));
    else
        snprintf(buf + n, size - n, "Z");
    return buf;
}

/* "12s", "5m07s", "2h03m"; "-" when negative (unknown). */
static const char *
fmt_duration(int64_t ns, char *buf, size_t size)
{
    int64_t s = ns / 1000000000;

    if (ns < 0)
        return "-";
    if (s < 60)
        snprintf(buf, size, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else
        snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
    return buf;
}

/* How long the task ran (or has been running); -1 if it never started. */
static int64_t
task_duration(const struct store_task *t, int64_t now)
{
    int64_t end = t->stopped_ns;

    if (t->started_ns == 0)
        return -1;
    if (end == 0) {
        if (t->state != NULL && strcmp(t->state, "done") == 0)
            return -1;
        end = now;
    }
    return end > t->started_ns ? end - t->started_ns : 0;
}

/* The result's name, or NULL while there is none. */
static const char *
result_name(int result)
{
    switch (result) {
    case RPC_RESULT_UNSPECIFIED:
        return NULL;
    case RPC_RESULT_SUCCESS:
        return "success";
    case RPC_RESULT_FAILURE:
        return "failure";
    case RPC_RESULT_CANCELLED:
        return "cancelled";
    case RPC_RESULT_SKIPPED:
        return "skipped";
    default:
        return "unknown";
    }
}

static json_t *
json_str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *
json_time(int64_t ns)
{
    char buf[64];

    return ns != 0 ? json_string(fmt_time(ns, true, buf, sizeof buf)) : json_null();
}

/* A task for --json: display fields only, never the payload (it carries secrets). */
static json_t *
task_json(const struct store_task *t, int64_t now)
{
    int64_t d = task_duration(t, now);

    return json_pack("{sI so so so so so so so so so sI sI sb sb so}", "id", (json_int_t)t->id,
                     "ident", json_str_or_null(t->ident), "state", json_str_or_null(t->state),
                     "result", json_str_or_null(result_name(t->result)), "job",
                     json_str_or_null(t->job), "repo", json_str_or_null(t->repo), "created",
                     json_time(t->created_ns), "started", json_time(t->started_ns), "stopped",
                     json_time(t->stopped_ns), "duration_s",
                     d < 0 ? json_null() : json_real((double)d / 1e9), "log_rows",
                     (json_int_t)t->log_rows, "log_acked", (json_int_t)t->log_acked,
                     "log_closed", t->log_closed, "final_sent", t->final_sent, "reason",
                     json_str_or_null(t->reason));
}

static void
print_json(json_t *doc)
{
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    putchar('\n');
}

/* ------------------------------------------------------------------------------------------
 * Aligned tables
 * ------------------------------------------------------------------------------------------ */

struct table {
    size_t ncols, nrows;
    char **cells; /* nrows * ncols, owned */
};

/* A copy of untrusted text (job names, reasons) safe for one table cell: control characters
 * become \x.., so that no one forges lines or breaks the columns. NULL becomes "-". */
static char *
cell_text(const char *s)
{
    size_t n = 0;
    char *out, *p;

    if (s == NULL || *s == '\0')
        return xstrdup("-");
    for (const char *q = s; *q; q++)
        n += ((unsigned char)*q < 0x20 || *q == 0x7f) ? 4 : 1;
    out = p = xmalloc(n + 1);
    for (const char *q = s; *q; q++) {
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            p += sprintf(p, "\\x%02x", (unsigned char)*q);
        else
            *p++ = *q;
    }
    *p = '\0';
    return out;
}

/* Adds a row of t->ncols cells (const char *, NULL for "-"). */
static void
table_add(struct table *t, ...)
{
    va_list ap;

    t->cells = xreallocarray(t->cells, (t->nrows + 1) * t->ncols, sizeof *t->cells);
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = cell_text(va_arg(ap, const char *));
    va_end(ap);
    t->nrows++;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t
text_width(const char *s)
{
    size_t w = 0;

    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

/* Prints the rows with each column padded to its widest cell, two spaces apart. */
static void
table_print(const struct table *t, const char *indent)
{
    size_t *width = xcalloc(t->ncols, sizeof *width);

    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = text_width(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        fputs(indent, stdout);
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            if (c + 1 == t->ncols) {
                fputs(cell, stdout);
                break;
            }
            printf("%s%*s", cell, (int)(width[c] - text_width(cell) + 2), "");
        }
        putchar('\n');
    }
    free(width);
}

static void
table_free(struct table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

/* Adds one row per task: ID STATE JOB REPO STARTED DURATION, or with `full` ID STATE RESULT
 * JOB REPO STARTED DURATION LOGS (spooled/acknowledged) REASON. */
static void
task_rows(struct table *t, const struct store_task *v, size_t n, bool full, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        char id[32], buf[64], dbuf[32], logs[64];
        const char *started = fmt_time(v[i].started_ns, false, buf, sizeof buf);
        const char *dur = fmt_duration(task_duration(&v[i], now), dbuf, sizeof dbuf);

        snprintf(id, sizeof id, "%" PRId64, v[i].id);
        if (!full) {
            table_add(t, id, v[i].state, v[i].job, v[i].repo, started, dur);
            continue;
        }
        snprintf(logs, sizeof logs, "%" PRId64 "/%" PRId64, v[i].log_rows, v[i].log_acked);
        table_add(t, id, v[i].state, result_name(v[i].result), v[i].job, v[i].repo, started, dur,
                  logs, v[i].reason);
    }
}

/* ------------------------------------------------------------------------------------------
 * runnerctl status
 * ------------------------------------------------------------------------------------------ */

/* The labels array as "a,b,c" (new string). */
static char *
join_labels(const json_t *labels)
{
    size_t i;
    json_t *v;
    char *out = xstrdup("");

    json_array_foreach(labels, i, v) {
        const char *s = json_string_value(v);
        char *next;

        if (s == NULL)
            continue;
        next = xasprintf("%s%s%s", out, *out ? "," : "", s);
        free(out);
        out = next;
    }
    return out;
}

static void
status_print(const char *path, const struct store_ident *ids, size_t n_ids,
             const struct store_task *running, size_t n_running, const struct store_task *fin,
             size_t n_fin, int64_t now)
{
    struct table t = {.ncols = 6};

    printf("state: %s\n", path);
    if (n_ids == 0) {
        printf("runners: none (register first: runnerctl register --instance URL --token "
               "TOKEN)\n");
    } else {
        printf("runners:\n");
        table_add(&t, "CLASS", "NAME", "ID", "UUID", "INSTANCE", "LABELS");
        for (size_t i = 0; i < n_ids; i++) {
            char id[32], *labels = join_labels(ids[i].labels), *name = NULL;

            if (ids[i].ephemeral)
                name = xasprintf("%s (ephemeral)", ids[i].name ? ids[i].name : "-");
            snprintf(id, sizeof id, "%" PRId64, ids[i].id);
            table_add(&t, ids[i].cls, name ? name : ids[i].name, id, ids[i].uuid,
                      ids[i].instance, labels);
            free(labels);
            free(name);
        }
        table_print(&t, "  ");
        table_free(&t);
    }
    printf("tasks: %zu running, %zu finishing\n", n_running, n_fin);
    if (n_running + n_fin == 0)
        return;
    table_add(&t, "ID", "STATE", "JOB", "REPO", "STARTED", "DURATION");
    task_rows(&t, running, n_running, false, now);
    task_rows(&t, fin, n_fin, false, now);
    table_print(&t, "  ");
    table_free(&t);
}

static json_t *
status_json(struct store *s, const struct store_ident *ids, size_t n_ids,
            const struct store_task *running, size_t n_running, const struct store_task *fin,
            size_t n_fin, int64_t now)
{
    json_t *idents = json_array(), *tasks = json_array();

    for (size_t i = 0; i < n_ids; i++) {
        /* Every field but the token. */
        json_array_append_new(
            idents,
            json_pack("{so sI so so so sO sb so}", "cls", json_str_or_null(ids[i].cls), "id",
                      (json_int_t)ids[i].id, "name", json_str_or_null(ids[i].name), "uuid",
                      json_str_or_null(ids[i].uuid), "instance",
                      json_str_or_null(ids[i].instance), "labels",
                      ids[i].labels ? ids[i].labels : json_null(), "ephemeral",
                      ids[i].ephemeral, "registered", json_time(ids[i].registered_ns)));
    }
    for (size_t i = 0; i < n_running; i++)
        json_array_append_new(tasks, task_json(&running[i], now));
    for (size_t i = 0; i < n_fin; i++)
        json_array_append_new(tasks, task_json(&fin[i], now));
    return json_pack("{ss so sI sI so}", "database", store_path(s), "identities", idents,
                     "running", (json_int_t)n_running, "finishing", (json_int_t)n_fin, "tasks",
                     tasks);
}

static int
status_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {0};
    struct store *s = NULL;
    struct store_ident *ids = NULL;
    struct store_task *running = NULL, *fin = NULL;
    size_t n_ids = 0, n_running = 0, n_fin = 0;
    struct err e = {0};
    int rc;

    rc = parse_opts("status", status_usage, ":c:h", longopts, argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (optind < argc)
        return cli_usage_error("status", status_usage, "unexpected argument '%s'", argv[optind]);
    rc = open_state("status", &o, &s);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (store_ident_list(s, &ids, &n_ids, &e) < 0 ||
        store_task_list(s, "running", 0, &running, &n_running, &e) < 0 ||
        store_task_list(s, "finishing", 0, &fin, &n_fin, &e) < 0) {
        fprintf(stderr, "runnerctl: %s\n", e.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (o.json) {
        json_t *doc = status_json(s, ids, n_ids, running, n_running, fin, n_fin, clock_now_ns());
        print_json(doc);
        json_decref(doc);
    } else {
        status_print(store_path(s), ids, n_ids, running, n_running, fin, n_fin, clock_now_ns());
    }
out:
    store_ident_free(ids, n_ids);
    store_task_free(running, n_running);
    store_task_free(fin, n_fin);
    store_close(s);
    return rc;
}

const struct cli_cmd cli_cmd_status = {
    .name = "status",
    .usage = status_usage,
    .summary = "show the registered runners and running tasks",
    .exec = status_main,
};

/* ------------------------------------------------------------------------------------------
 * runnerctl tasks
 * ------------------------------------------------------------------------------------------ */

static int
tasks_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'J'},
        {"only", required_argument, NULL, 'o'},
        {"limit", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {.limit = 20};
    struct store *s = NULL;
    struct store_task *v = NULL;
    size_t n = 0;
    struct err e = {0};
    int64_t now = clock_now_ns();
    int rc;

    rc = parse_opts("tasks", tasks_usage, ":c:n:h", longopts, argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (optind < argc)
        return cli_usage_error("tasks", tasks_usage, "unexpected argument '%s'", argv[optind]);
    rc = open_state("tasks", &o, &s);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (store_task_list(s, o.only, o.limit, &v, &n, &e) < 0) {
        fprintf(stderr, "runnerctl: %s\n", e.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (o.json) {
        json_t *tasks = json_array(), *doc;

        for (size_t i = 0; i < n; i++)
            json_array_append_new(tasks, task_json(&v[i], now));
        doc = json_pack("{ss so}", "database", store_path(s), "tasks", tasks);
        print_json(doc);
        json_decref(doc);
    } else if (n == 0) {
        printf("no %s%stasks in %s\n", o.only ? o.only : "", o.only ? " " : "", store_path(s));
    } else {
        struct table t = {.ncols = 9};

        table_add(&t, "ID", "STATE", "RESULT", "JOB", "REPO", "STARTED", "DURATION", "LOGS",
                  "REASON");
        task_rows(&t, v, n, true, now);
        table_print(&t, "");
        table_free(&t);
    }
out:
    store_task_free(v, n);
    store_close(s);
    return rc;
}

const struct cli_cmd cli_cmd_tasks = {
    .name = "tasks",
    .usage = tasks_usage,
    .summary = "list recent tasks, newest first",
    .exec = tasks_main,
};

/* ------------------------------------------------------------------------------------------
 * runnerctl logs
 * ------------------------------------------------------------------------------------------ */

static int
logs_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 'S'},
        {"timestamps", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum { BATCH = 1000 };
    struct opts o = {0};
    struct store *s = NULL;
    struct store_task task;
    struct store_row *rows = NULL;
    size_t n = 0;
    struct err e = {0};
    long long id;
    char *end;
    int rc;

    rc = parse_opts("logs", logs_usage, ":c:th", longopts, argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (optind >= argc)
        return cli_usage_error("logs", logs_usage, "missing TASK");
    if (optind + 1 < argc)
        return cli_usage_error("logs", logs_usage, "unexpected argument '%s'", argv[optind + 1]);
    errno = 0;
    id = strtoll(argv[optind], &end, 10);
    if (errno != 0 || end == argv[optind] || *end != '\0' || id <= 0)
        return cli_usage_error("logs", logs_usage, "TASK must be a task id, got '%s'",
                               argv[optind]);
    rc = open_state("logs", &o, &s);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = store_task_get(s, id, &task, &e);
    if (rc == ERR_NOTFOUND) {
        fprintf(stderr, "runnerctl: no task %lld in %s\n", id, store_path(s));
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    store_task_clear(&task);
    /* In batches, so that a long log never sits in memory whole. */
    for (int64_t from = 0; rc >= 0;) {
        rc = store_log_read(s, id, from, BATCH, &rows, &n, &e);
        if (rc < 0)
            break;
        for (size_t i = 0; i < n; i++) {
            char buf[64];

            if (o.stamps)
                printf("%s ", fmt_time(rows[i].time_ns, true, buf, sizeof buf));
            puts(rows[i].content);
        }
        store_rows_free(rows, n);
        if (n < BATCH)
            break;
        from += (int64_t)n;
    }
    if (rc < 0) {
        fprintf(stderr, "runnerctl: %s\n", e.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    store_close(s);
    return rc;
}

const struct cli_cmd cli_cmd_logs = {
    .name = "logs",
    .usage = logs_usage,
    .summary = "print a task's spooled log rows",
    .exec = logs_main,
};
