/* cmd-register.c: `runnerctl register` — register this host with a Gitea instance as
 * act_runner does (doc/gitea-protocol.md §3.2, §3.3, §4.2): Ping until the server
 * answers, Register with the label names, and keep the returned identity (id, uuid, token) in
 * the state database, one per resource class ("cpu", or "gpu" with --gpu). `--import` takes
 * an act_runner `.runner` file instead (§4.1), without calling the server. The token is never
 * printed. */
#include "cmd.h"
#include "config.h"
#include "connect.h"
#include "store.h"

#include "runner/buf.h"
#include "runner/clock.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define REGISTER_PING_TIMEOUT_S 30.0
#define REGISTER_MAX_RUNNER_FILE (1024 * 1024)

static const char register_usage[] =
    "--instance URL --token TOKEN [--name NAME] --label NAME[:docker://IMAGE|:host]...\n"
    "       [--labels A,B,...] [--no-interactive] [--ephemeral] [--gpu] [--replace]\n"
    "       [-c CONFIG] [--state FILE] [--ping-timeout SECONDS] [-v]\n"
    "   or: runnerctl register --import RUNNER_FILE [--instance URL] [--gpu] [--replace]\n"
    "       [-c CONFIG] [--state FILE]\n"
    "  Labels in CONFIG (runner.labels) win over --label/--labels. The state database is\n"
    "  --state, else $RUNNERD_STATE, else runnerd.state_file of CONFIG, else\n"
    "  " CONFIG_STATE_FILE_DEFAULT ".";

struct reg {
    const char *instance, *token, *name;
    char **labels; /* full label strings, as given */
    size_t n_labels;
    bool label_flags; /* labels came from --label/--labels */
    bool no_interactive, ephemeral, gpu, replace, verbose;
    const char *config, *state, *import;
    double ping_timeout_s;
    /* owned copies of what prompts or defaults filled in */
    char *own_instance, *own_token, *own_name;
    char *db; /* the state database: cli_state_path() */
    struct config cfg;
    bool have_cfg;
};

static void
reg_free(struct reg *r)
{
    for (size_t i = 0; i < r->n_labels; i++)
        free(r->labels[i]);
    free(r->labels);
    if (r->own_token)
        memset(r->own_token, 0, strlen(r->own_token));
    free(r->own_instance);
    free(r->own_token);
    free(r->own_name);
    free(r->db);
    if (r->have_cfg)
        config_free(&r->cfg);
}

static void
add_label(struct reg *r, const char *s, size_t n)
{
    r->labels = xreallocarray(r->labels, r->n_labels + 1, sizeof *r->labels);
    r->labels[r->n_labels++] = xstrndup(s, n);
}

/* --labels a,b,c: trims spaces around each entry and skips empty ones. */
static void
add_label_list(struct reg *r, const char *list)
{
    const char *p = list;

    while (*p) {
        const char *end = strchr(p, ',');
        const char *e = end ? end : p + strlen(p);

        while (p < e && isspace((unsigned char)*p))
            p++;
        const char *q = e;
        while (q > p && isspace((unsigned char)q[-1]))
            q--;
        if (q > p)
            add_label(r, p, (size_t)(q - p));
        p = end ? end + 1 : e;
    }
}

/* The full string of a label read from the config: "name:host" or "name:docker://image". */
static char *
label_string(const struct config_label *l)
{
    if (l->exec == CONFIG_EXEC_DOCKER)
        return xasprintf("%s:docker://%s", l->name, l->image);
    return xasprintf("%s:host", l->name);
}

/* Validates every label; fills names (new strings) when non-NULL. Returns 0 or -1 (printed). */
static int
check_labels(char *const *labels, size_t n, char ***names, const char *where)
{
    if (names)
        *names = xcalloc(n ? n : 1, sizeof **names);
    for (size_t i = 0; i < n; i++) {
        struct config_label l;
        struct err e = {0};

        if (config_label_parse(labels[i], &l, &e) < 0) {
            fprintf(stderr, "runnerctl register: %s%sinvalid %s\n", where ? where : "",
                    where ? ": " : "", e.msg);
            return -1;
        }
        if (names)
            (*names)[i] = xstrdup(l.name);
        config_label_free(&l);
    }
    return 0;
}

static void
free_strv(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* "a, b, c" */
static char *
join(char *const *v, size_t n)
{
    struct buf b = BUF_INIT;

    buf_puts(&b, "");
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", v[i]);
    return buf_steal(&b);
}


static bool
is_http_url(const char *s)
{
    return (strncmp(s, "http://", 7) == 0 && s[7]) || (strncmp(s, "https://", 8) == 0 && s[8]);
}

/* ---- interactive prompts ----------------------------------------------------------------- */

/* Asks on stderr and reads one line from stdin (echo off when secret). Returns a new string
 * (def, or "" when the answer is empty and there is no default), or NULL at end of input. */
static char *
prompt(const char *question, const char *def, bool secret)
{
    struct termios old, quiet;
    bool restore = false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    if (def && *def)
        fprintf(stderr, "%s [%s]: ", question, def);
    else
        fprintf(stderr, "%s: ", question);
    fflush(stderr);
    if (secret && tcgetattr(0, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(0, TCSANOW, &quiet) == 0; /* keep typed-ahead input */
    }
    n = getline(&line, &cap, stdin);
    if (restore) {
        tcsetattr(0, TCSANOW, &old);
        fprintf(stderr, "\n");
    }
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    if (n == 0 && def) {
        free(line);
        return xstrdup(def);
    }
    return line;
}

/* Fills what is missing, by asking (interactive) or by naming it (exit 2). */
static int
complete(struct reg *r, const char *hostname)
{
    bool interactive = !r->no_interactive && isatty(0);

    if (!interactive) {
        struct buf miss = BUF_INIT;

        if (!r->instance || !*r->instance)
            buf_printf(&miss, "%s--instance", miss.len ? ", " : "");
        if (!r->token || !*r->token)
            buf_printf(&miss, "%s--token", miss.len ? ", " : "");
        if (r->n_labels == 0)
            buf_printf(&miss, "%s--label (or runner.labels in -c CONFIG)", miss.len ? ", " : "");
        if (miss.len) {
            int rc =
                cli_usage_error("register", register_usage, "missing %s", buf_str(&miss));

            buf_free(&miss);
            return rc;
        }
    }
    while (!r->instance || !*r->instance) {
        free(r->own_instance);
        r->own_instance = prompt("Gitea instance URL (e.g. https://gitea.example.com)", NULL,
                                 false);
        if (!r->own_instance)
            return cli_usage_error("register", register_usage, "%s", "missing --instance");
        r->instance = r->own_instance;
    }
    while (!r->token || !*r->token) {
        free(r->own_token);
        r->own_token = prompt("Runner registration token", NULL, true);
        if (!r->own_token)
            return cli_usage_error("register", register_usage, "%s", "missing --token");
        r->token = r->own_token;
    }
    if (interactive && (!r->name || !*r->name)) {
        r->own_name = prompt("Runner name", hostname, false);
        if (!r->own_name)
            return cli_usage_error("register", register_usage, "%s", "missing --name");
        r->name = r->own_name;
    }
    while (r->n_labels == 0) {
        char *ans = prompt("Runner labels, comma-separated (e.g. linux:host,"
                           "ubuntu-latest:docker://node:20-bookworm)",
                           NULL, false);

        if (!ans)
            return cli_usage_error("register", register_usage, "%s", "missing --label");
        add_label_list(r, ans);
        free(ans);
        r->label_flags = true;
        if (check_labels(r->labels, r->n_labels, NULL, NULL) < 0) {
            for (size_t i = 0; i < r->n_labels; i++)
                free(r->labels[i]);
            r->n_labels = 0;
        }
    }
    return 0;
}

/* ---- the state database ------------------------------------------------------------------ */

/* Opens the database and refuses to overwrite an identity of the class without --replace.
 * Returns 0, or an exit code (printed). */
static int
open_state(const struct reg *r, const char *cls, struct store **out, int64_t *replaced_id)
{
    struct store *s = NULL;
    struct store_ident old = {0};
    struct err e = {0};
    int rc;

    *replaced_id = 0;
    if (store_open(r->db, &s, &e) < 0) {
        fprintf(stderr, "runnerctl register: %s\n", e.msg);
        return CLI_EXIT_FAIL;
    }
    rc = store_ident_get(s, cls, &old, &e);
    if (rc == 0) {
        if (!r->replace) {
            fprintf(stderr,
                    "runnerctl register: a %s runner is already registered in %s: %s (id %" PRId64
                    ", uuid %s) at %s; pass --replace to register a new one\n",
                    cls, r->db, old.name ? old.name : "?", old.id,
                    old.uuid ? old.uuid : "?", old.instance ? old.instance : "?");
            store_ident_clear(&old);
            store_close(s);
            return CLI_EXIT_FAIL;
        }
        *replaced_id = old.id;
        store_ident_clear(&old);
    } else if (rc != ERR_NOTFOUND) {
        fprintf(stderr, "runnerctl register: %s\n", e.msg);
        store_close(s);
        return CLI_EXIT_FAIL;
    }
    *out = s;
    return 0;
}

/* Saves the identity; returns 0 or an exit code (printed). */
static int
save_ident(struct store *s, const struct store_ident *id, const char *what)
{
    struct err e = {0};

    if (store_ident_put(s, id, &e) < 0) {
        fprintf(stderr, "runnerctl register: %s, but saving it failed: %s\n", what, e.msg);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* ---- register with the server ------------------------------------------------------------ */

/* Pings until the server answers (every second, up to r->ping_timeout_s). Returns 0 or an
 * exit code (printed). */
static int
ping(const struct reg *r, const struct connect_opts *base)
{
    double deadline = cli_mono_s() + r->ping_timeout_s;
    struct rpc_ping_request q = {.data = (char *)(uintptr_t)r->name};
    bool warned = false;

    for (;;) {
        struct connect_opts o = *base;
        struct rpc_ping_response *resp = NULL;
        enum rpc_errclass cls = RPC_ERR_OTHER;
        struct err e = {0};
        double left = deadline - cli_mono_s();
        long ms = left > 10.0 ? 10000 : left > 1.0 ? (long)(left * 1000) : 1000;

        o.connect_timeout_ms = ms;
        o.timeout_ms = ms;
        if (connect_call_sync(&o, RPC_PATH_PING, &rpc_ping_request_type, &q,
                              &rpc_ping_response_type, (void **)&resp, &cls, &e) == 0) {
            log_debug("register: ping: %s", resp->data ? resp->data : "");
            rpc_clear(&rpc_ping_response_type, resp);
            free(resp);
            return 0;
        }
        if (cls != RPC_ERR_UNAVAILABLE) {
            fprintf(stderr, "runnerctl register: cannot ping %s: %s%s\n", r->instance, e.msg,
                    cls == RPC_ERR_NOT_FOUND
                        ? " (is the URL right, and are Gitea Actions enabled there?)"
                        : "");
            return CLI_EXIT_FAIL;
        }
        if (cli_mono_s() + 1.0 > deadline) {
            fprintf(stderr, "runnerctl register: giving up after %.0f s: cannot reach %s: %s\n",
                    r->ping_timeout_s, r->instance, e.msg);
            return CLI_EXIT_FAIL;
        }
        if (!warned) {
            fprintf(stderr,
                    "runnerctl register: cannot reach %s (%s); retrying every second for up to "
                    "%.0f s\n",
                    r->instance, e.msg, r->ping_timeout_s);
            warned = true;
        }
        sleep(1);
    }
}

static int
do_register(struct reg *r, const char *cls)
{
    struct store *s = NULL;
    char **names = NULL;
    struct rpc_register_response *resp = NULL;
    struct err e = {0};
    enum rpc_errclass ecls = RPC_ERR_OTHER;
    int64_t replaced = 0;
    json_t *labels = NULL;
    char *list = NULL;
    int rc;

    if (!is_http_url(r->instance)) {
        rc = cli_usage_error("register", register_usage,
                             "--instance must be an http:// or https:// URL, got '%s'",
                             r->instance);
        goto out;
    }
    if (check_labels(r->labels, r->n_labels, &names, NULL) < 0) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    rc = open_state(r, cls, &s, &replaced);
    if (rc != 0)
        goto out;

    struct connect_opts co = {
        .instance = r->instance,
        .version = RUNNERD_VERSION,
        .insecure = r->have_cfg && r->cfg.runner.insecure,
        .verbose = r->verbose,
    };
    rc = ping(r, &co);
    if (rc != 0)
        goto out;

    struct rpc_register_request q = {
        .name = (char *)(uintptr_t)r->name,
        .token = (char *)(uintptr_t)r->token,
        .version = RUNNERD_VERSION,
        .labels = {.v = names, .n = r->n_labels},
        .agent_labels = {.v = names, .n = r->n_labels}, /* read by Gitea 1.19-1.21 */
        .ephemeral = r->ephemeral,
    };
    if (connect_call_sync(&co, RPC_PATH_REGISTER, &rpc_register_request_type, &q,
                          &rpc_register_response_type, (void **)&resp, &ecls, &e) < 0) {
        fprintf(stderr, "runnerctl register: registration failed: %s\n", e.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    const struct rpc_runner *run = resp->runner;
    if (run == NULL || run->uuid == NULL || run->token == NULL || run->id <= 0) {
        fprintf(stderr, "runnerctl register: registration failed: the server's answer has no "
                        "runner id, uuid or token\n");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (r->ephemeral && !run->ephemeral)
        fprintf(stderr, "runnerctl register: warning: the server did not confirm --ephemeral "
                        "(it needs Gitea 1.24 or later); this runner is not ephemeral\n");

    labels = json_array();
    for (size_t i = 0; i < r->n_labels; i++)
        json_array_append_new(labels, json_string(r->labels[i]));
    struct store_ident id = {
        .cls = (char *)(uintptr_t)cls,
        .id = run->id,
        .uuid = run->uuid,
        .token = run->token,
        .name = run->name && *run->name ? run->name : (char *)(uintptr_t)r->name,
        .instance = (char *)(uintptr_t)r->instance,
        .labels = labels,
        .ephemeral = run->ephemeral,
        .registered_ns = clock_now_ns(),
    };
    char what[160];
    snprintf(what, sizeof what, "registered runner id %" PRId64 " with the server", run->id);
    rc = save_ident(s, &id, what);
    if (rc != 0)
        goto out;
    list = join(names, r->n_labels);
    printf("registered runner %s (id %" PRId64 ", uuid %s) with labels %s\n", id.name, run->id,
           run->uuid, list);
    if (strcmp(cls, "cpu") != 0)
        printf("stored as the %s identity in %s\n", cls, r->db);
    else
        printf("stored in %s\n", r->db);
    if (replaced)
        printf("note: this replaced runner id %" PRId64 " in the state database; remove that one "
               "in Gitea if it is no longer used\n",
               replaced);
out:
    free(list);
    json_decref(labels);
    if (resp) {
        rpc_clear(&rpc_register_response_type, resp);
        free(resp);
    }
    free_strv(names, r->n_labels);
    if (s)
        store_close(s);
    return rc;
}

/* ---- --import: an act_runner .runner file ------------------------------------------------ */

static bool
is_uuid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    if (strlen(s) != sizeof shape - 1)
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* A required non-empty string member; prints "FILE: ..." and returns NULL when bad. */
static const char *
get_str(const json_t *j, const char *file, const char *key)
{
    const json_t *v = json_object_get(j, key);

    if (v == NULL || json_is_null(v)) {
        fprintf(stderr, "runnerctl register: %s: field \"%s\" is missing\n", file, key);
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        fprintf(stderr, "runnerctl register: %s: field \"%s\" must be a non-empty string\n", file,
                key);
        return NULL;
    }
    return json_string_value(v);
}

static int
do_import(struct reg *r, const char *cls)
{
    struct buf b = BUF_INIT;
    struct err e = {0};
    json_t *j = NULL, *labels = NULL;
    json_error_t je;
    struct store *s = NULL;
    int64_t replaced = 0, rid = 0;
    const char *uuid, *name, *token, *address;
    char **full = NULL, **names = NULL;
    size_t n = 0;
    char *list = NULL;
    bool ephemeral = false;
    int rc = CLI_EXIT_USAGE;

    if (buf_read_file(&b, r->import, REGISTER_MAX_RUNNER_FILE, "runner file", &e) < 0) {
        fprintf(stderr, "runnerctl register: %s\n", e.msg);
        goto out;
    }
    j = json_loadb(b.data ? b.data : "", b.len, 0, &je);
    if (j == NULL) {
        fprintf(stderr, "runnerctl register: %s:%d:%d: not valid JSON: %s\n", r->import, je.line,
                je.column, je.text);
        goto out;
    }
    if (!json_is_object(j)) {
        fprintf(stderr, "runnerctl register: %s: expected a JSON object (an act_runner .runner "
                        "file)\n",
                r->import);
        goto out;
    }
    /* id: a JSON number in act_runner's file; a decimal string is taken too */
    const json_t *jid = json_object_get(j, "id");
    if (json_is_integer(jid)) {
        rid = json_integer_value(jid);
    } else if (json_is_string(jid)) {
        char *end = NULL;
        long long v = strtoll(json_string_value(jid), &end, 10);

        rid = end && *end == '\0' && end != json_string_value(jid) ? (int64_t)v : 0;
    } else if (jid == NULL) {
        fprintf(stderr, "runnerctl register: %s: field \"id\" is missing\n", r->import);
        goto out;
    }
    if (rid <= 0) {
        fprintf(stderr, "runnerctl register: %s: field \"id\" must be a positive integer\n",
                r->import);
        goto out;
    }
    if (!(uuid = get_str(j, r->import, "uuid")) || !(name = get_str(j, r->import, "name")) ||
        !(token = get_str(j, r->import, "token")))
        goto out;
    if (!is_uuid(uuid)) {
        fprintf(stderr, "runnerctl register: %s: field \"uuid\" is not a UUID: '%s'\n", r->import,
                uuid);
        goto out;
    }
    if (r->instance && *r->instance) {
        address = r->instance;
    } else if (!(address = get_str(j, r->import, "address"))) {
        goto out;
    }
    if (!is_http_url(address)) {
        fprintf(stderr,
                "runnerctl register: %s: field \"address\" must be an http:// or https:// URL, "
                "got '%s'\n",
                r->import, address);
        goto out;
    }
    const json_t *jl = json_object_get(j, "labels");
    if (jl != NULL && !json_is_null(jl) && !json_is_array(jl)) {
        fprintf(stderr, "runnerctl register: %s: field \"labels\" must be an array of strings\n",
                r->import);
        goto out;
    }
    n = json_array_size(jl);
    full = xcalloc(n ? n : 1, sizeof *full);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(jl, i);

        if (!json_is_string(v)) {
            fprintf(stderr, "runnerctl register: %s: field \"labels\"[%zu] must be a string\n",
                    r->import, i);
            goto out;
        }
        full[i] = xstrdup(json_string_value(v));
    }
    {
        char where[512];

        snprintf(where, sizeof where, "%s: field \"labels\"", r->import);
        if (check_labels(full, n, &names, where) < 0)
            goto out;
    }
    if (n == 0 && !(r->have_cfg && r->cfg.runner.n_labels > 0)) {
        fprintf(stderr, "runnerctl register: %s: field \"labels\" is missing or empty (and no "
                        "-c CONFIG with runner.labels)\n",
                r->import);
        goto out;
    }
    const json_t *je2 = json_object_get(j, "ephemeral");
    if (je2 != NULL && !json_is_null(je2)) {
        if (!json_is_boolean(je2)) {
            fprintf(stderr, "runnerctl register: %s: field \"ephemeral\" must be true or false\n",
                    r->import);
            goto out;
        }
        ephemeral = json_is_true(je2);
    }

    rc = open_state(r, cls, &s, &replaced);
    if (rc != 0)
        goto out;
    labels = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(labels, json_string(full[i]));
    struct store_ident id = {
        .cls = (char *)(uintptr_t)cls,
        .id = rid,
        .uuid = (char *)(uintptr_t)uuid,
        .token = (char *)(uintptr_t)token,
        .name = (char *)(uintptr_t)name,
        .instance = (char *)(uintptr_t)address,
        .labels = labels,
        .ephemeral = ephemeral,
        .registered_ns = clock_now_ns(),
    };
    rc = save_ident(s, &id, "read the runner file");
    if (rc != 0)
        goto out;
    list = join(names, n);
    printf("imported runner %s (id %" PRId64 ", uuid %s) from %s with labels %s\n", name, rid,
           uuid, r->import, n ? list : "(none)");
    printf("stored%s%s in %s\n", strcmp(cls, "cpu") ? " as the identity of class " : "",
           strcmp(cls, "cpu") ? cls : "", r->db);
    if (r->have_cfg && r->cfg.runner.n_labels > 0) {
        char **cl = xcalloc(r->cfg.runner.n_labels, sizeof *cl);
        char *clist;

        for (size_t i = 0; i < r->cfg.runner.n_labels; i++)
            cl[i] = r->cfg.runner.labels[i].name;
        clist = join(cl, r->cfg.runner.n_labels);
        printf("note: runner.labels in %s (%s) take precedence over these labels when runnerd "
               "starts\n",
               r->config, clist);
        free(clist);
        free(cl);
    }
    if (replaced)
        printf("note: this replaced runner id %" PRId64 " in the state database\n", replaced);
out:
    free(list);
    free_strv(full, n);
    free_strv(names, n);
    json_decref(labels);
    json_decref(j);
    if (b.data)
        memset(b.data, 0, b.len); /* it held the token */
    buf_free(&b);
    if (s)
        store_close(s);
    return rc;
}

/* ---- the command ------------------------------------------------------------------------- */

enum {
    OPT_INSTANCE = 256,
    OPT_TOKEN,
    OPT_NAME,
    OPT_LABEL,
    OPT_LABELS,
    OPT_NO_INTERACTIVE,
    OPT_EPHEMERAL,
    OPT_GPU,
    OPT_REPLACE,
    OPT_STATE,
    OPT_IMPORT,
    OPT_PING_TIMEOUT,
};

static int
run_register(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"instance", required_argument, NULL, OPT_INSTANCE},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"name", required_argument, NULL, OPT_NAME},
        {"label", required_argument, NULL, OPT_LABEL},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"no-interactive", no_argument, NULL, OPT_NO_INTERACTIVE},
        {"ephemeral", no_argument, NULL, OPT_EPHEMERAL},
        {"gpu", no_argument, NULL, OPT_GPU},
        {"replace", no_argument, NULL, OPT_REPLACE},
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, OPT_STATE},
        {"import", required_argument, NULL, OPT_IMPORT},
        {"ping-timeout", required_argument, NULL, OPT_PING_TIMEOUT},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct reg r = {.ping_timeout_s = REGISTER_PING_TIMEOUT_S};
    char hostname[256] = "";
    const char *cls;
    int c, rc = CLI_EXIT_USAGE;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:vh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_INSTANCE:
            r.instance = optarg;
            break;
        case OPT_TOKEN:
            r.token = optarg;
            break;
        case OPT_NAME:
            r.name = optarg;
            break;
        case OPT_LABEL:
            add_label(&r, optarg, strlen(optarg));
            r.label_flags = true;
            break;
        case OPT_LABELS:
            add_label_list(&r, optarg);
            r.label_flags = true;
            break;
        case OPT_NO_INTERACTIVE:
            r.no_interactive = true;
            break;
        case OPT_EPHEMERAL:
            r.ephemeral = true;
            break;
        case OPT_GPU:
            r.gpu = true;
            break;
        case OPT_REPLACE:
            r.replace = true;
            break;
        case 'c':
            r.config = optarg;
            break;
        case OPT_STATE:
            r.state = optarg;
            break;
        case OPT_IMPORT:
            r.import = optarg;
            break;
        case OPT_PING_TIMEOUT: {
            char *end = NULL;

            r.ping_timeout_s = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || r.ping_timeout_s < 0 ||
                r.ping_timeout_s > 86400) {
                rc = cli_usage_error("register", register_usage,
                                     "--ping-timeout expects seconds (0 to 86400), got '%s'",
                                     optarg);
                goto out;
            }
            break;
        }
        case 'v':
            r.verbose = true;
            break;
        case 'h':
            printf("usage: runnerctl register %s\n", register_usage);
            rc = CLI_EXIT_OK;
            goto out;
        case ':':
            rc = cli_usage_error("register", register_usage, "%s needs an argument",
                                 argv[optind - 1]);
            goto out;
        default:
            rc = cli_usage_error("register", register_usage, "unknown option '%s'",
                                 argv[optind - 1]);
            goto out;
        }
    }
    if (optind < argc) {
        rc = cli_usage_error("register", register_usage, "unexpected argument '%s'",
                             argv[optind]);
        goto out;
    }
    if (r.verbose)
        log_init(LOG_PRIO_DEBUG, false);
    cls = r.gpu ? "gpu" : "cpu";

    if (r.config) {
        struct err e = {0};

        config_defaults(&r.cfg);
        r.have_cfg = true;
        if (config_load(r.config, &r.cfg, &e) < 0) {
            fprintf(stderr, "runnerctl register: %s\n", e.msg);
            goto out;
        }
    }
    r.db = config_state_path(r.have_cfg ? &r.cfg : NULL, r.state);

    if (r.import) {
        if (r.token || r.name || r.label_flags || r.ephemeral) {
            rc = cli_usage_error("register", register_usage, "%s",
                                 "--import takes the name, token, labels and ephemeral flag "
                                 "from the runner file; drop --token, --name, --label(s) and "
                                 "--ephemeral (use runner.labels in -c CONFIG for labels)");
            goto out;
        }
        rc = do_import(&r, cls);
        goto out;
    }

    /* act_runner: labels from the config file win over the command line */
    if (r.have_cfg && r.cfg.runner.n_labels > 0) {
        if (r.label_flags)
            fprintf(stderr, "runnerctl register: warning: using runner.labels from %s; "
                            "--label/--labels are ignored\n",
                    r.config);
        for (size_t i = 0; i < r.n_labels; i++)
            free(r.labels[i]);
        r.n_labels = 0;
        for (size_t i = 0; i < r.cfg.runner.n_labels; i++) {
            char *s = label_string(&r.cfg.runner.labels[i]);

            add_label(&r, s, strlen(s));
            free(s);
        }
    }
    if (check_labels(r.labels, r.n_labels, NULL, NULL) < 0)
        goto out; /* exit 2, naming the label */
    if (gethostname(hostname, sizeof hostname - 1) != 0 || !*hostname)
        snprintf(hostname, sizeof hostname, "runnerd");
    rc = complete(&r, hostname);
    if (rc != 0)
        goto out;
    if (!r.name || !*r.name)
        r.name = hostname;
    rc = do_register(&r, cls);
out:
    reg_free(&r);
    return rc;
}

const struct cli_cmd cli_cmd_register = {
    .name = "register",
    .usage = register_usage,
    .summary = "register this host with a Gitea instance",
    .exec = run_register,
};
