/* config.c: the act_runner-compatible configuration file (see config.h). */
#include "config.h"

#include "runner/buf.h"
#include "runner/xalloc.h"
#include "yamldoc.h"

#include <ctype.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
config_defaults(struct config *c)
{
    const char *home = getenv("HOME") ? getenv("HOME") : "/root";

    memset(c, 0, sizeof *c);
    c->log_level = xstrdup("info");
    c->runner.file = xstrdup(".runner");
    c->runner.capacity = 1;
    c->runner.envs = json_object();
    c->runner.timeout_s = 3 * 3600;
    c->runner.fetch_timeout_s = 5;
    c->runner.fetch_interval_s = 2;
    c->cache.enabled = true;
    c->cache.dir = xasprintf("%s/.cache/actcache", home);
    c->container.workdir_parent = xstrdup("workspace");
    c->host.workdir_parent = xasprintf("%s/.cache/act", home);
    c->runnerd.state_file = xstrdup("/var/lib/runnerd/runnerd.db");
    c->runnerd.fetch_interval_max_s = 5;
    c->runnerd.log_format = xstrdup("text");
}

void
config_label_free(struct config_label *l)
{
    if (l == NULL)
        return;
    free(l->name);
    free(l->image);
    memset(l, 0, sizeof *l);
}

void
config_free(struct config *c)
{
    if (c == NULL)
        return;
    free(c->file);
    free(c->log_level);
    free(c->runner.file);
    json_decref(c->runner.envs);
    free(c->runner.env_file);
    for (size_t i = 0; i < c->runner.n_labels; i++)
        config_label_free(&c->runner.labels[i]);
    free(c->runner.labels);
    free(c->runner.github_mirror);
    free(c->cache.dir);
    free(c->cache.host);
    free(c->cache.external_server);
    free(c->container.network);
    free(c->container.options);
    free(c->container.workdir_parent);
    for (size_t i = 0; i < c->container.n_valid_volumes; i++)
        free(c->container.valid_volumes[i]);
    free(c->container.valid_volumes);
    free(c->container.docker_host);
    free(c->host.workdir_parent);
    free(c->runnerd.state_file);
    free(c->runnerd.log_format);
    free(c->runnerd.agent);
    memset(c, 0, sizeof *c);
}

int
config_duration(const char *s, double *seconds)
{
    double total = 0;
    const char *p = s;

    if (s == NULL || *s == '\0')
        return -EINVAL;
    if (strcmp(s, "0") == 0) {
        *seconds = 0;
        return 0;
    }
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        double unit;

        if (end == p || v < 0)
            return -EINVAL;
        p = end;
        if (strncmp(p, "ms", 2) == 0) {
            unit = 0.001;
            p += 2;
        } else if (*p == 'h') {
            unit = 3600;
            p++;
        } else if (*p == 'm') {
            unit = 60;
            p++;
        } else if (*p == 's') {
            unit = 1;
            p++;
        } else {
            return -EINVAL;
        }
        total += v * unit;
    }
    *seconds = total;
    return 0;
}

int
config_label_parse(const char *s, struct config_label *out, struct err *e)
{
    const char *c1 = strchr(s, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    size_t nlen = c1 ? (size_t)(c1 - s) : strlen(s);

    memset(out, 0, sizeof *out);
    if (nlen == 0)
        return err_set(e, ERR_INVALID, "label '%s': the name is empty", s);
    for (size_t i = 0; i < nlen; i++)
        if (isspace((unsigned char)s[i]) || s[i] == ',')
            return err_set(e, ERR_INVALID, "label '%s': the name has a space or comma", s);
    char *schema = c1 ? (c2 ? xstrndup(c1 + 1, (size_t)(c2 - c1 - 1)) : xstrdup(c1 + 1))
                      : xstrdup("host");
    if (strcmp(schema, "host") == 0) {
        out->exec = CONFIG_EXEC_HOST;
    } else if (strcmp(schema, "docker") == 0) {
        const char *arg = c2 ? c2 + 1 : "";
        if (strncmp(arg, "//", 2) == 0)
            arg += 2;
        if (*arg == '\0') {
            free(schema);
            return err_set(e, ERR_INVALID, "label '%s': docker needs an image "
                           "(name:docker://IMAGE)", s);
        }
        out->exec = CONFIG_EXEC_DOCKER;
        out->image = xstrdup(arg);
    } else {
        err_set(e, ERR_INVALID, "label '%s': unknown schema '%s' (expected host or docker)", s,
                schema);
        free(schema);
        return ERR_INVALID;
    }
    free(schema);
    out->name = xstrndup(s, nlen);
    return 0;
}

/* ---------------------------------------------------------------- reading */

struct rd {
    const char *file;
    struct err *e;
};

/* "file:line:col: key: what" (or without the key when it is NULL). */
static int
at(struct rd *r, const struct ynode *n, const char *key, const char *what)
{
    return err_set(r->e, ERR_INVALID, "%s:%d:%d: %s%s%s", r->file, n->pos.line, n->pos.col,
                   key ? key : "", key ? ": " : "", what);
}

static int
get_str(struct rd *r, const struct ynode *n, const char *key, char **dst)
{
    if (n->kind != YNODE_SCALAR)
        return at(r, n, key, "expected a string");
    free(*dst);
    *dst = ynode_is_null(n) ? NULL : xstrdup(n->str);
    return 0;
}

static int
get_bool(struct rd *r, const struct ynode *n, const char *key, bool *dst)
{
    if (n->kind == YNODE_SCALAR && !n->quoted && strcmp(n->str, "true") == 0)
        *dst = true;
    else if (n->kind == YNODE_SCALAR && !n->quoted && strcmp(n->str, "false") == 0)
        *dst = false;
    else
        return at(r, n, key, "expected true or false");
    return 0;
}

static int
get_int(struct rd *r, const struct ynode *n, const char *key, int lo, int hi, int *dst)
{
    char *end;
    long v;

    if (n->kind != YNODE_SCALAR)
        return at(r, n, key, "expected a number");
    errno = 0;
    v = strtol(n->str, &end, 10);
    if (errno || *end || end == n->str || v < lo || v > hi) {
        char what[96];
        snprintf(what, sizeof what, "expected a whole number from %d to %d", lo, hi);
        return at(r, n, key, what);
    }
    *dst = (int)v;
    return 0;
}

static int
get_duration(struct rd *r, const struct ynode *n, const char *key, double *dst)
{
    if (n->kind != YNODE_SCALAR || config_duration(n->str, dst) < 0)
        return at(r, n, key, "expected a duration such as 30s, 5m or 3h");
    return 0;
}

static int
get_strv(struct rd *r, const struct ynode *n, const char *key, char ***dst, size_t *count)
{
    if (ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_SEQ)
        return at(r, n, key, "expected a list of strings");
    for (size_t i = 0; i < n->n; i++) {
        if (n->items[i]->kind != YNODE_SCALAR)
            return at(r, n->items[i], key, "expected a string");
        *dst = xreallocarray(*dst, *count + 1, sizeof **dst);
        (*dst)[(*count)++] = xstrdup(n->items[i]->str);
    }
    return 0;
}

/* Reads map n's keys with fn; a key fn does not know is an error listing `known`. */
typedef int (*key_fn)(struct rd *r, struct config *c, const char *key, const struct ynode *v);

static int
read_map(struct rd *r, struct config *c, const struct ynode *n, const char *section, key_fn fn)
{
    if (ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_MAP)
        return at(r, n, section, "expected a mapping");
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i]->str;
        int rc = fn(r, c, k, n->items[i]);

        if (rc == -ENOENT) {
            err_set(r->e, ERR_INVALID, "%s:%d:%d: %s: unknown key '%s'", r->file,
                    n->keys[i]->pos.line, n->keys[i]->pos.col, section, k);
            return ERR_INVALID;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int
runner_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "file") == 0)
        return get_str(r, v, "runner.file", &c->runner.file);
    if (strcmp(k, "capacity") == 0)
        return get_int(r, v, "runner.capacity", 1, 1024, &c->runner.capacity);
    if (strcmp(k, "env_file") == 0)
        return get_str(r, v, "runner.env_file", &c->runner.env_file);
    if (strcmp(k, "timeout") == 0)
        return get_duration(r, v, "runner.timeout", &c->runner.timeout_s);
    if (strcmp(k, "shutdown_timeout") == 0)
        return get_duration(r, v, "runner.shutdown_timeout", &c->runner.shutdown_timeout_s);
    if (strcmp(k, "fetch_timeout") == 0)
        return get_duration(r, v, "runner.fetch_timeout", &c->runner.fetch_timeout_s);
    if (strcmp(k, "fetch_interval") == 0)
        return get_duration(r, v, "runner.fetch_interval", &c->runner.fetch_interval_s);
    if (strcmp(k, "insecure") == 0)
        return get_bool(r, v, "runner.insecure", &c->runner.insecure);
    if (strcmp(k, "github_mirror") == 0)
        return get_str(r, v, "runner.github_mirror", &c->runner.github_mirror);
    if (strcmp(k, "envs") == 0) {
        if (ynode_is_null(v))
            return 0;
        if (v->kind != YNODE_MAP)
            return at(r, v, "runner.envs", "expected a mapping of names to values");
        for (size_t i = 0; i < v->n; i++) {
            if (v->items[i]->kind != YNODE_SCALAR)
                return at(r, v->items[i], "runner.envs", "expected a string value");
            json_object_set_new(c->runner.envs, v->keys[i]->str, json_string(v->items[i]->str));
        }
        return 0;
    }
    if (strcmp(k, "labels") == 0) {
        if (ynode_is_null(v))
            return 0;
        if (v->kind != YNODE_SEQ)
            return at(r, v, "runner.labels", "expected a list of labels");
        for (size_t i = 0; i < v->n; i++) {
            struct config_label l;
            struct err le = {0};

            if (v->items[i]->kind != YNODE_SCALAR)
                return at(r, v->items[i], "runner.labels", "expected a string");
            if (config_label_parse(v->items[i]->str, &l, &le) < 0)
                return at(r, v->items[i], NULL, le.msg);
            c->runner.labels = xreallocarray(c->runner.labels, c->runner.n_labels + 1,
                                             sizeof *c->runner.labels);
            c->runner.labels[c->runner.n_labels++] = l;
        }
        return 0;
    }
    /* Keys of newer act_runner versions, accepted so their files load. */
    if (strcmp(k, "fetch_interval_max") == 0 || strcmp(k, "log_report_interval") == 0 ||
        strcmp(k, "log_report_max_latency") == 0 || strcmp(k, "state_report_interval") == 0) {
        double ignored;
        return get_duration(r, v, k, &ignored);
    }
    if (strcmp(k, "log_report_batch_size") == 0) {
        int ignored;
        return get_int(r, v, k, 1, 1000000, &ignored);
    }
    return -ENOENT;
}

static int
cache_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "enabled") == 0)
        return get_bool(r, v, "cache.enabled", &c->cache.enabled);
    if (strcmp(k, "dir") == 0)
        return get_str(r, v, "cache.dir", &c->cache.dir);
    if (strcmp(k, "host") == 0)
        return get_str(r, v, "cache.host", &c->cache.host);
    if (strcmp(k, "port") == 0)
        return get_int(r, v, "cache.port", 0, 65535, &c->cache.port);
    if (strcmp(k, "external_server") == 0)
        return get_str(r, v, "cache.external_server", &c->cache.external_server);
    return -ENOENT;
}

static int
container_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "network") == 0 || strcmp(k, "network_mode") == 0) {
        int rc = get_str(r, v, "container.network", &c->container.network);
        if (rc == 0 && c->container.network && strcmp(c->container.network, "bridge") == 0 &&
            strcmp(k, "network_mode") == 0) {
            free(c->container.network); /* the deprecated bridge means a network per job */
            c->container.network = NULL;
        }
        return rc;
    }
    if (strcmp(k, "privileged") == 0)
        return get_bool(r, v, "container.privileged", &c->container.privileged);
    if (strcmp(k, "options") == 0)
        return get_str(r, v, "container.options", &c->container.options);
    if (strcmp(k, "workdir_parent") == 0)
        return get_str(r, v, "container.workdir_parent", &c->container.workdir_parent);
    if (strcmp(k, "valid_volumes") == 0)
        return get_strv(r, v, "container.valid_volumes", &c->container.valid_volumes,
                        &c->container.n_valid_volumes);
    if (strcmp(k, "docker_host") == 0)
        return get_str(r, v, "container.docker_host", &c->container.docker_host);
    if (strcmp(k, "force_pull") == 0)
        return get_bool(r, v, "container.force_pull", &c->container.force_pull);
    if (strcmp(k, "force_rebuild") == 0)
        return get_bool(r, v, "container.force_rebuild", &c->container.force_rebuild);
    if (strcmp(k, "require_docker") == 0)
        return get_bool(r, v, "container.require_docker", &c->container.require_docker);
    if (strcmp(k, "docker_timeout") == 0)
        return get_duration(r, v, "container.docker_timeout", &c->container.docker_timeout_s);
    return -ENOENT;
}

static int
host_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "workdir_parent") == 0)
        return get_str(r, v, "host.workdir_parent", &c->host.workdir_parent);
    return -ENOENT;
}

static int
log_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    static const char *const levels[] = {"trace", "debug", "info", "warn", "error", "fatal"};

    if (strcmp(k, "level") != 0)
        return -ENOENT;
    int rc = get_str(r, v, "log.level", &c->log_level);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (c->log_level && strcmp(c->log_level, levels[i]) == 0)
            return 0;
    return at(r, v, "log.level", "expected trace, debug, info, warn, error or fatal");
}

static int
runnerd_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "state_file") == 0)
        return get_str(r, v, "runnerd.state_file", &c->runnerd.state_file);
    if (strcmp(k, "agent") == 0)
        return get_str(r, v, "runnerd.agent", &c->runnerd.agent);
    if (strcmp(k, "fetch_interval_max") == 0)
        return get_duration(r, v, "runnerd.fetch_interval_max", &c->runnerd.fetch_interval_max_s);
    if (strcmp(k, "shutdown") == 0) {
        if (v->kind != YNODE_SCALAR || (strcmp(v->str, "drain") != 0 && strcmp(v->str, "detach") != 0))
            return at(r, v, "runnerd.shutdown", "expected drain or detach");
        c->runnerd.detach = strcmp(v->str, "detach") == 0;
        return 0;
    }
    if (strcmp(k, "log_format") == 0) {
        if (v->kind != YNODE_SCALAR || (strcmp(v->str, "text") != 0 && strcmp(v->str, "json") != 0))
            return at(r, v, "runnerd.log_format", "expected text or json");
        return get_str(r, v, "runnerd.log_format", &c->runnerd.log_format);
    }
    return -ENOENT;
}

static int
top_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "runnerd") == 0)
        return read_map(r, c, v, "runnerd", runnerd_key);
    if (strcmp(k, "runner") == 0)
        return read_map(r, c, v, "runner", runner_key);
    if (strcmp(k, "cache") == 0)
        return read_map(r, c, v, "cache", cache_key);
    if (strcmp(k, "container") == 0)
        return read_map(r, c, v, "container", container_key);
    if (strcmp(k, "host") == 0)
        return read_map(r, c, v, "host", host_key);
    if (strcmp(k, "log") == 0)
        return read_map(r, c, v, "log", log_key);
    return -ENOENT;
}

int
config_load(const char *path, struct config *c, struct err *e)
{
    struct buf data = BUF_INIT;
    struct ynode *root = NULL;
    int rc;

    rc = buf_read_file(&data, path, 1u << 20, "configuration file", e);
    if (rc < 0) {
        buf_free(&data);
        return rc;
    }
    free(c->file);
    c->file = xstrdup(path);
    rc = ydoc_parse(path, buf_str(&data), data.len, &root, e);
    buf_free(&data);
    if (rc < 0)
        return rc;
    struct rd r = {.file = path, .e = e};
    rc = root ? read_map(&r, c, root, "the configuration", top_key) : 0;
    ynode_free(root);
    return rc;
}
