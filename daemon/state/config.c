/* config.c: the act_runner-compatible configuration file (see config.h). */
#include "config.h"

#include "docker.h"
#include "dockeropts.h"
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
    c->runnerd.state_file = xstrdup(CONFIG_STATE_FILE_DEFAULT);
    c->runnerd.fetch_interval_max_s = 5;
    c->runnerd.log_format = xstrdup("text");
    c->runnerd.min_free_disk = 1ll << 30;
    c->runnerd.gpus_auto = true;
    c->runnerd.cache.enabled = true;
}


static void
profile_free(struct config_profile *p)
{
    free(p->name);
    free(p->image);
    xstrv_free(p->gpu_caps);
    xstrv_free(p->volumes);
    free(p->dind_image);
    xstrv_free(p->dind_args);
    xstrv_free(p->cap_add);
    xstrv_free(p->limits.cap_drop);
    xstrv_free(p->persistent_volumes);
}

const struct config_profile *
config_profile_find(const struct config *c, const char *name)
{
    for (size_t i = 0; name && i < c->runnerd.n_profiles; i++)
        if (strcmp(c->runnerd.profiles[i].name, name) == 0)
            return &c->runnerd.profiles[i];
    return NULL;
}

void
config_limits_resolve(const struct config *c, const struct config_profile *p,
                      long long host_memory, long long *memory, long long *nano_cpus,
                      long long *pids)
{
    struct config_limits l = {.memory_pct = 75, .pids = 4096, .has_memory = true,
                              .has_pids = true, .has_cpus = true};
    const struct config_limits *over[2] = {c ? &c->runnerd.limits : NULL, p ? &p->limits : NULL};

    for (int i = 0; i < 2; i++) {
        const struct config_limits *o = over[i];
        if (o == NULL)
            continue;
        if (o->has_memory) {
            l.memory = o->memory;
            l.memory_pct = o->memory_pct;
        }
        if (o->has_cpus)
            l.cpus = o->cpus;
        if (o->has_pids)
            l.pids = o->pids;
    }
    *memory = l.memory ? l.memory
                       : (l.memory_pct > 0 && host_memory > 0
                              ? (long long)((double)host_memory * l.memory_pct / 100.0) : 0);
    *nano_cpus = (long long)(l.cpus * 1e9);
    *pids = l.pids;
}

/* The default capability drop floor: what a job container drops unless runnerd.limits.cap_drop
 * or the label's cap_drop says otherwise. Raw sockets (packet forgery on the job network),
 * device nodes, the kernel's audit log: what build jobs do not need and an attacker uses
 * first. */
static const char *const config_default_cap_drop[] = {"NET_RAW", "MKNOD", "AUDIT_WRITE", NULL};

const char *const *
config_cap_drop_resolve(const struct config *c, const struct config_profile *p)
{
    if (p && p->limits.has_cap_drop)
        return (const char *const *)p->limits.cap_drop;
    if (c && c->runnerd.limits.has_cap_drop)
        return (const char *const *)c->runnerd.limits.cap_drop;
    return config_default_cap_drop;
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
    free(c->runnerd.cache_dir);
    free(c->runnerd.git_ca_file);
    free(c->runnerd.actions_url);
    free(c->runnerd.node_image);
    free(c->runnerd.log_format);
    free(c->runnerd.agent);
    free(c->runnerd.http);
    free(c->runnerd.cache.dir);
    free(c->runnerd.cache.external_url);
    free(c->runnerd.cache.key_file);
    xstrv_free(c->runnerd.gpus);
    xstrv_free(c->runnerd.limits.cap_drop);
    for (size_t i = 0; i < c->runnerd.n_profiles; i++)
        profile_free(&c->runnerd.profiles[i]);
    free(c->runnerd.profiles);
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


/* ---------------------------------------------------------------- runnerd.labels */

static void
strv_push(char ***v, const char *s)
{
    size_t n = 0;

    while (*v && (*v)[n])
        n++;
    *v = xreallocarray(*v, n + 2, sizeof **v);
    (*v)[n] = xstrdup(s);
    (*v)[n + 1] = NULL;
}

/* A list of strings into a NULL-terminated array (replacing *dst). */
static int
get_list(struct rd *r, const struct ynode *n, const char *key, char ***dst)
{
    xstrv_free(*dst);
    *dst = xcalloc(1, sizeof **dst);
    if (ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_SEQ)
        return at(r, n, key, "expected a list of strings");
    for (size_t i = 0; i < n->n; i++) {
        if (n->items[i]->kind != YNODE_SCALAR || ynode_is_null(n->items[i]))
            return at(r, n->items[i], key, "expected a string");
        strv_push(dst, n->items[i]->str);
    }
    return 0;
}

static int
get_size(struct rd *r, const struct ynode *n, const char *key, bool pct_ok, long long *bytes,
         double *pct)
{
    if (n->kind == YNODE_SCALAR && !ynode_is_null(n)) {
        size_t len = strlen(n->str);
        if (pct_ok && len > 1 && n->str[len - 1] == '%') {
            char *end;
            double v = strtod(n->str, &end);
            if (end == n->str + len - 1 && v > 0 && v <= 100) {
                *bytes = 0;
                *pct = v;
                return 0;
            }
        } else if (dockeropts_size(n->str, bytes) == 0 && *bytes > 0) {
            if (pct)
                *pct = 0;
            return 0;
        }
    }
    return at(r, n, key, pct_ok ? "expected a size such as 512m or 8g, or a percentage of the "
                                  "host's memory such as 50%"
                                : "expected a size such as 512m or 8g");
}

/* A list of capability names into *dst, normalised (upper case, no CAP_); ALL only when
 * all_ok. */
static int
get_caps(struct rd *r, const struct ynode *n, const char *key, bool all_ok, char ***dst)
{
    int rc = get_list(r, n, key, dst);

    for (size_t i = 0; rc == 0 && (*dst)[i]; i++) {
        char *cap = dockeropts_cap_name((*dst)[i]);
        if (cap == NULL || (!all_ok && strcmp(cap, "ALL") == 0)) {
            free(cap);
            return at(r, n->items[i], key, all_ok ? "expected capability names such as "
                                                    "NET_ADMIN or SYS_PTRACE, or ALL"
                                                  : "expected capability names such as NET_RAW");
        }
        free((*dst)[i]);
        (*dst)[i] = cap;
    }
    return rc;
}

/* memory, cpus, pids, cap_drop: shared by runnerd.limits and a label's settings. -ENOENT
 * otherwise. */
static int
limits_key(struct rd *r, const char *k, const struct ynode *v, const char *prefix,
           struct config_limits *l)
{
    char key[320];

    snprintf(key, sizeof key, "%.200s.%.100s", prefix, k);
    if (strcmp(k, "memory") == 0) {
        l->has_memory = true;
        return get_size(r, v, key, true, &l->memory, &l->memory_pct);
    }
    if (strcmp(k, "cpus") == 0) {
        char *end = NULL;
        double x = v->kind == YNODE_SCALAR && !ynode_is_null(v) ? strtod(v->str, &end) : -1;
        if (end == NULL || end == v->str || *end || x < 0 || x > 4096)
            return at(r, v, key, "expected a number of CPUs such as 2 or 0.5 (0: no limit)");
        l->has_cpus = true;
        l->cpus = x;
        return 0;
    }
    if (strcmp(k, "cap_drop") == 0) {
        l->has_cap_drop = true;
        return get_caps(r, v, key, true, &l->cap_drop);
    }
    if (strcmp(k, "pids") == 0) {
        int x;
        int rc = get_int(r, v, key, 16, 4194304, &x);
        if (rc == 0) {
            l->has_pids = true;
            l->pids = x;
        }
        return rc;
    }
    return -ENOENT;
}

/* An image reference: sha256:<id>, NAME[:TAG]@sha256:<digest>, or NAME[:TAG] (unpinned). */
static const char *
image_problem(const char *s)
{
    const char *at_ = strchr(s, '@');

    if (*s == '\0')
        return "expected an image reference";
    for (const char *p = s; *p; p++)
        if (isspace((unsigned char)*p) || (unsigned char)*p < 0x20)
            return "an image reference has no spaces";
    switch (docker_pin_of(s)) {
    case DOCKER_PIN_BAD_ID:
        return "an id pin is sha256: followed by 64 lowercase hex digits";
    case DOCKER_PIN_BAD_DIGEST:
        return "a digest pin is NAME@sha256: followed by 64 lowercase hex digits";
    default:
        return at_ == s ? "a digest pin is NAME@sha256: followed by 64 lowercase hex digits" : NULL;
    }
}

/* SOURCE:TARGET[:ro|rw], SOURCE an absolute path or a volume name, TARGET absolute. */
static const char *
bind_problem(const char *s)
{
    const char *c1 = strchr(s, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

    if (c1 == NULL || c1 == s || c1[1] != '/')
        return "expected SOURCE:TARGET[:ro] with an absolute TARGET";
    if (c2 && strcmp(c2, ":ro") != 0 && strcmp(c2, ":rw") != 0)
        return "expected SOURCE:TARGET[:ro|:rw]";
    if (s[0] != '/') {
        for (const char *p = s; p < c1; p++)
            if (!isalnum((unsigned char)*p) && !(p > s && strchr("_.-", *p)))
                return "SOURCE must be an absolute path or a volume name";
    }
    if (strstr(s, "/../") || strncmp(c1 + 1, "/..", 3) == 0)
        return "no .. in paths";
    return NULL;
}

static int
get_gpus(struct rd *r, const struct ynode *v, const char *key, int *dst)
{
    if (v->kind == YNODE_SCALAR && strcmp(v->str, "all") == 0) {
        *dst = -1;
        return 0;
    }
    if (v->kind == YNODE_SCALAR && !v->quoted && get_int(r, v, key, 0, 64, dst) == 0)
        return 0;
    return at(r, v, key, "expected a number of GPUs from 0 to 64, or all");
}

static int
profile_key(struct rd *r, struct config_profile *p, const char *k, const struct ynode *v)
{
    char key[200];
    int rc;

    snprintf(key, sizeof key, "runnerd.labels.%s.%s", p->name, k);
    if (strcmp(k, "image") == 0) {
        if (v->kind != YNODE_SCALAR || ynode_is_null(v))
            return at(r, v, key, "expected an image reference");
        const char *why = image_problem(v->str);
        if (why)
            return at(r, v, key, why);
        free(p->image);
        p->image = xstrdup(v->str);
        return 0;
    }
    if (strcmp(k, "docker") == 0) {
        if (v->kind == YNODE_SCALAR && strcmp(v->str, "none") == 0)
            p->docker = CONFIG_DOCKER_NONE;
        else if (v->kind == YNODE_SCALAR && strcmp(v->str, "socket") == 0)
            p->docker = CONFIG_DOCKER_SOCKET;
        else if (v->kind == YNODE_SCALAR && strcmp(v->str, "dind") == 0)
            p->docker = CONFIG_DOCKER_DIND;
        else
            return at(r, v, key, "expected none, socket or dind");
        return 0;
    }
    if (strcmp(k, "gpus") == 0) {
        p->gpus_line = v->pos.line;
        p->gpus_col = v->pos.col;
        return get_gpus(r, v, key, &p->gpus);
    }
    if (strcmp(k, "gpu_capabilities") == 0) {
        static const char *const known[] = {"gpu", "nvidia", "compute", "compat32", "graphics",
                                            "utility", "video", "display"};
        bool has_gpu = false;
        if ((rc = get_list(r, v, key, &p->gpu_caps)) < 0)
            return rc;
        for (size_t i = 0; p->gpu_caps[i]; i++) {
            bool ok = false;
            for (size_t j = 0; j < sizeof known / sizeof known[0]; j++)
                ok |= strcmp(p->gpu_caps[i], known[j]) == 0;
            if (!ok)
                return at(r, v->items[i], key, "expected gpu, nvidia, compute, compat32, "
                                                "graphics, utility, video or display");
            has_gpu |= strcmp(p->gpu_caps[i], "gpu") == 0;
        }
        if (!has_gpu)
            strv_push(&p->gpu_caps, "gpu"); /* as the docker CLI does */
        return 0;
    }
    if (strcmp(k, "volumes") == 0) {
        if ((rc = get_list(r, v, key, &p->volumes)) < 0)
            return rc;
        for (size_t i = 0; p->volumes[i]; i++) {
            const char *why = bind_problem(p->volumes[i]);
            if (why)
                return at(r, v->items[i], key, why);
        }
        return 0;
    }
    if (strcmp(k, "dind_image") == 0) {
        if (v->kind != YNODE_SCALAR || ynode_is_null(v))
            return at(r, v, key, "expected an image reference");
        const char *why = image_problem(v->str);
        if (why)
            return at(r, v, key, why);
        free(p->dind_image);
        p->dind_image = xstrdup(v->str);
        return 0;
    }
    if (strcmp(k, "dind_privileges") == 0) {
        if (v->kind == YNODE_SCALAR && strcmp(v->str, "privileged") == 0)
            p->dind_caps = false;
        else if (v->kind == YNODE_SCALAR && strcmp(v->str, "caps") == 0)
            p->dind_caps = true;
        else
            return at(r, v, key, "expected privileged or caps");
        return 0;
    }
    if (strcmp(k, "dind_args") == 0)
        return get_list(r, v, key, &p->dind_args);
    if (strcmp(k, "cap_add") == 0)
        return get_caps(r, v, key, true, &p->cap_add);
    if (strcmp(k, "persistent_volumes") == 0) {
        if ((rc = get_list(r, v, key, &p->persistent_volumes)) < 0)
            return rc;
        for (size_t i = 0; p->persistent_volumes[i]; i++) {
            const char *nm = p->persistent_volumes[i];
            bool ok = isalnum((unsigned char)nm[0]) && strlen(nm) <= 64;
            for (const char *q = nm; ok && *q; q++)
                ok = isalnum((unsigned char)*q) || strchr("_.-", *q);
            if (!ok)
                return at(r, v->items[i], key, "expected volume names ([A-Za-z0-9][A-Za-z0-9_.-]*, "
                                               "at most 64 characters)");
        }
        return 0;
    }
    if (strcmp(k, "allow_job_image") == 0)
        return get_bool(r, v, key, &p->allow_job_image);
    if (strcmp(k, "cache") == 0) {
        bool on = true;
        rc = get_bool(r, v, key, &on);
        p->no_cache = !on;
        return rc;
    }
    snprintf(key, sizeof key, "runnerd.labels.%s", p->name);
    return limits_key(r, k, v, key, &p->limits);
}

static int
read_profile(struct rd *r, struct config *c, const struct ynode *kn, const struct ynode *n)
{
    struct config_profile *p;
    struct config_label l;
    struct err le = {0};
    char sect[160];

    if (config_label_parse(kn->str, &l, &le) < 0 || l.exec != CONFIG_EXEC_HOST ||
        strchr(kn->str, ':'))
        return at(r, kn, "runnerd.labels", "expected a label name (no spaces, commas or colons)");
    config_label_free(&l); /* (a label given twice is a duplicate key: yamldoc refuses it) */
    snprintf(sect, sizeof sect, "runnerd.labels.%s", kn->str);
    if (n->kind != YNODE_MAP)
        return at(r, n, sect, "expected a mapping of settings (image, docker, gpus, memory, ...)");
    c->runnerd.profiles = xreallocarray(c->runnerd.profiles, c->runnerd.n_profiles + 1,
                                        sizeof *c->runnerd.profiles);
    p = &c->runnerd.profiles[c->runnerd.n_profiles++];
    memset(p, 0, sizeof *p);
    p->name = xstrdup(kn->str);
    p->line = kn->pos.line;
    p->col = kn->pos.col;
    for (size_t i = 0; i < n->n; i++) {
        int rc = profile_key(r, p, n->keys[i]->str, n->items[i]);
        if (rc == -ENOENT) {
            err_set(r->e, ERR_INVALID, "%s:%d:%d: %s: unknown key '%s' (expected image, "
                    "allow_job_image, docker, gpus, gpu_capabilities, memory, cpus, pids, "
                    "cap_add, cap_drop, volumes, persistent_volumes, dind_image, dind_privileges, "
                    "dind_args or cache)", r->file, n->keys[i]->pos.line,
                    n->keys[i]->pos.col, sect, n->keys[i]->str);
            return ERR_INVALID;
        }
        if (rc < 0)
            return rc;
    }
    if (p->gpu_caps == NULL) {
        strv_push(&p->gpu_caps, "gpu");
        strv_push(&p->gpu_caps, "compute");
        strv_push(&p->gpu_caps, "utility");
    }
    if (p->docker == CONFIG_DOCKER_DIND && p->dind_image == NULL)
        return at(r, kn, sect, "docker: dind needs dind_image (an image with dockerd)");
    if (p->docker != CONFIG_DOCKER_DIND && (p->dind_image || p->dind_args)) {
        for (size_t i = 0; i < n->n; i++)
            if (strncmp(n->keys[i]->str, "dind_", 5) == 0)
                return at(r, n->keys[i], sect, "dind_ settings need docker: dind");
    }
    return 0;
}

static int
runnerd_limits_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    return limits_key(r, k, v, "runnerd.limits", &c->runnerd.limits);
}

/* runnerd.cache.*: the actions/cache server. */
static int
runnerd_cache_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "enabled") == 0)
        return get_bool(r, v, "runnerd.cache.enabled", &c->runnerd.cache.enabled);
    if (strcmp(k, "dir") == 0)
        return get_str(r, v, "runnerd.cache.dir", &c->runnerd.cache.dir);
    if (strcmp(k, "key_file") == 0)
        return get_str(r, v, "runnerd.cache.key_file", &c->runnerd.cache.key_file);
    if (strcmp(k, "max_size") == 0)
        return get_size(r, v, "runnerd.cache.max_size", false, &c->runnerd.cache.max_size, NULL);
    if (strcmp(k, "max_age") == 0) {
        int rc = get_duration(r, v, "runnerd.cache.max_age", &c->runnerd.cache.max_age_s);
        if (rc == 0 && c->runnerd.cache.max_age_s < 1)
            return at(r, v, "runnerd.cache.max_age", "expected a duration of at least 1s, such "
                                                     "as 168h");
        return rc;
    }
    if (strcmp(k, "external_url") == 0) {
        int rc = get_str(r, v, "runnerd.cache.external_url", &c->runnerd.cache.external_url);
        char *u = c->runnerd.cache.external_url;
        if (rc < 0 || u == NULL)
            return rc;
        if ((strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) ||
            u[strcspn(u, "/") + 2] == '\0' || strpbrk(u, " \t\r\n?#"))
            return at(r, v, "runnerd.cache.external_url", "expected an http:// or https:// URL "
                                                          "such as http://cache.lan:8088/");
        if (u[strlen(u) - 1] != '/') { /* the toolkit joins paths to it as they are */
            c->runnerd.cache.external_url = xasprintf("%s/", u);
            free(u);
        }
        return 0;
    }
    return -ENOENT;
}

static int
runnerd_key(struct rd *r, struct config *c, const char *k, const struct ynode *v)
{
    if (strcmp(k, "cache") == 0) {
        int rc = read_map(r, c, v, "runnerd.cache", runnerd_cache_key);
        if (rc == 0 && c->runnerd.cache.external_url && c->runnerd.cache.key_file == NULL)
            return at(r, v, "runnerd.cache", "external_url needs key_file: the key the server "
                                             "there verifies tokens with");
        return rc;
    }
    if (strcmp(k, "labels") == 0) {
        if (ynode_is_null(v))
            return 0;
        if (v->kind != YNODE_MAP)
            return at(r, v, "runnerd.labels", "expected a mapping of label names to settings");
        for (size_t i = 0; i < v->n; i++) {
            int rc = read_profile(r, c, v->keys[i], v->items[i]);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (strcmp(k, "limits") == 0)
        return read_map(r, c, v, "runnerd.limits", runnerd_limits_key);
    if (strcmp(k, "http") == 0) {
        int rc = get_str(r, v, "runnerd.http", &c->runnerd.http);
        if (rc == 0 && c->runnerd.http && strchr(c->runnerd.http, ':') == NULL)
            return at(r, v, "runnerd.http", "expected HOST:PORT on loopback, such as 127.0.0.1:9464");
        return rc;
    }
    if (strcmp(k, "min_free_disk") == 0)
        return get_size(r, v, "runnerd.min_free_disk", false, &c->runnerd.min_free_disk, NULL);
    if (strcmp(k, "force_gpu_labels") == 0)
        return get_bool(r, v, "runnerd.force_gpu_labels", &c->runnerd.force_gpu_labels);
    if (strcmp(k, "gpus") == 0) {
        c->runnerd.gpus_line = v->pos.line;
        c->runnerd.gpus_col = v->pos.col;
        if (v->kind == YNODE_SCALAR && strcmp(v->str, "auto") == 0) {
            c->runnerd.gpus_auto = true;
            return 0;
        }
        if (v->kind != YNODE_SEQ)
            return at(r, v, "runnerd.gpus", "expected auto or a list of GPU UUIDs");
        int rc = get_list(r, v, "runnerd.gpus", &c->runnerd.gpus);
        if (rc < 0)
            return rc;
        for (size_t i = 0; c->runnerd.gpus[i]; i++) {
            const char *g = c->runnerd.gpus[i];
            if (*g == '\0' || strpbrk(g, " \t,:") != NULL)
                return at(r, v->items[i], "runnerd.gpus", "expected a GPU UUID such as GPU-8f6a...");
            for (size_t j = 0; j < i; j++)
                if (strcmp(c->runnerd.gpus[j], g) == 0)
                    return at(r, v->items[i], "runnerd.gpus", "this GPU is listed twice");
        }
        c->runnerd.gpus_auto = false;
        return 0;
    }
    if (strcmp(k, "state_file") == 0)
        return get_str(r, v, "runnerd.state_file", &c->runnerd.state_file);
    if (strcmp(k, "cache_dir") == 0)
        return get_str(r, v, "runnerd.cache_dir", &c->runnerd.cache_dir);
    if (strcmp(k, "git_ca_file") == 0)
        return get_str(r, v, "runnerd.git_ca_file", &c->runnerd.git_ca_file);
    if (strcmp(k, "actions_url") == 0)
        return get_str(r, v, "runnerd.actions_url", &c->runnerd.actions_url);
    if (strcmp(k, "node_image") == 0)
        return get_str(r, v, "runnerd.node_image", &c->runnerd.node_image);
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

char *
config_state_path(const struct config *c, const char *override)
{
    const char *v = getenv("RUNNERD_STATE");

    if (override)
        return xstrdup(override);
    if (v && *v)
        return xstrdup(v);
    if (c && c->runnerd.state_file && *c->runnerd.state_file)
        return xstrdup(c->runnerd.state_file);
    return xstrdup(CONFIG_STATE_FILE_DEFAULT);
}

char *
config_cache_dir(const struct config *c, bool daemon)
{
    const char *v;

    if (c && c->runnerd.cache_dir && *c->runnerd.cache_dir)
        return xstrdup(c->runnerd.cache_dir);
    if ((v = getenv("RUNNERD_CACHE_DIR")) && *v)
        return xstrdup(v);
    if ((v = getenv("CACHE_DIRECTORY")) && *v) /* systemd's CacheDirectory= (a list) */
        return xstrndup(v, strcspn(v, ":"));
    if (daemon) {
        const char *st = c ? c->runnerd.state_file : NULL;
        const char *slash = st ? strrchr(st, '/') : NULL;
        if (slash)
            return xasprintf("%.*s/cache", (int)(slash - st), st);
        return xstrdup("cache");
    }
    if ((v = getenv("XDG_CACHE_HOME")) && *v)
        return xasprintf("%s/runnerd", v);
    if ((v = getenv("HOME")) && *v)
        return xasprintf("%s/.cache/runnerd", v);
    return xstrdup(".runnerd-cache");
}
