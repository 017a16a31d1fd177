/* dockeropts.c: docker run flags from `container.options` into create-body additions. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dockeropts.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

/* ---- word splitting ---------------------------------------------------------------------- */

static void
words_push(char ***w, size_t *n, size_t *cap, char *s)
{
    if (*n + 2 > *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *w = xreallocarray(*w, *cap, sizeof **w);
    }
    (*w)[(*n)++] = s;
    (*w)[*n] = NULL;
}

int
dockeropts_split(const char *s, const char *what, char ***out, size_t *n, struct err *e)
{
    char **w = NULL;
    size_t nw = 0, cap = 0;
    struct buf cur = {0};
    bool inword = false;
    int rc = 0;

    *out = NULL;
    *n = 0;
    words_push(&w, &nw, &cap, NULL);
    nw = 0;
    while (s && *s) {
        char c = *s;

        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (inword) {
                words_push(&w, &nw, &cap, xstrndup(cur.data ? cur.data : "", cur.len));
                cur.len = 0;
                inword = false;
            }
            s++;
        } else if (c == '\'') {
            const char *end = strchr(s + 1, '\'');

            if (!end) {
                rc = err_set(e, ERR_INVALID, "%s: unterminated single quote", what);
                goto out;
            }
            buf_append(&cur, s + 1, (size_t)(end - s - 1));
            inword = true;
            s = end + 1;
        } else if (c == '"') {
            s++;
            inword = true;
            for (;;) {
                if (!*s) {
                    rc = err_set(e, ERR_INVALID, "%s: unterminated double quote", what);
                    goto out;
                }
                if (*s == '"') {
                    s++;
                    break;
                }
                if (*s == '\\' && s[1] && strchr("\\\"$`\n", s[1])) {
                    if (s[1] != '\n')
                        buf_append(&cur, s + 1, 1);
                    s += 2;
                    continue;
                }
                buf_append(&cur, s, 1);
                s++;
            }
        } else if (c == '\\') {
            if (!s[1]) {
                rc = err_set(e, ERR_INVALID, "%s: trailing backslash", what);
                goto out;
            }
            if (s[1] != '\n') {
                buf_append(&cur, s + 1, 1);
                inword = true;
            }
            s += 2;
        } else {
            buf_append(&cur, s, 1);
            inword = true;
            s++;
        }
    }
    if (inword)
        words_push(&w, &nw, &cap, xstrndup(cur.data ? cur.data : "", cur.len));
    *out = w;
    *n = nw;
    w = NULL;
out:
    buf_free(&cur);
    dockeropts_words_free(w);
    return rc;
}

void
dockeropts_words_free(char **w)
{
    if (!w)
        return;
    for (char **p = w; *p; p++)
        free(*p);
    free(w);
}

/* ---- numbers ----------------------------------------------------------------------------- */

int
dockeropts_duration(const char *s, long long *ns)
{
    static const struct {
        const char *u;
        double mul;
    } units[] = {{"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
                 {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    double total = 0;

    if (!s || !*s)
        return ERR_INVALID;
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return 0;
    }
    while (*s) {
        char *end;
        double v;
        size_t best = 0, bi = 0;

        if (!isdigit((unsigned char)*s) && *s != '.')
            return ERR_INVALID;
        v = strtod(s, &end);
        if (end == s)
            return ERR_INVALID;
        s = end;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t l = strlen(units[i].u);

            if (strncmp(s, units[i].u, l) == 0 && l > best) {
                best = l;
                bi = i;
            }
        }
        if (!best)
            return ERR_INVALID;
        total += v * units[bi].mul;
        s += best;
    }
    if (!(total < 9.2e18))
        return ERR_INVALID;
    *ns = (long long)llround(total);
    return 0;
}

int
dockeropts_size(const char *s, long long *bytes)
{
    char *end;
    double v, mul = 1;

    if (!s || !isdigit((unsigned char)*s))
        return ERR_INVALID;
    v = strtod(s, &end);
    s = end;
    if (*s == ' ')
        s++;
    switch (tolower((unsigned char)*s)) {
    case 'k': mul = 1024.0; s++; break;
    case 'm': mul = 1024.0 * 1024; s++; break;
    case 'g': mul = 1024.0 * 1024 * 1024; s++; break;
    case 't': mul = 1024.0 * 1024 * 1024 * 1024; s++; break;
    case 'p': mul = 1024.0 * 1024 * 1024 * 1024 * 1024; s++; break;
    default: break;
    }
    if (mul > 1 && tolower((unsigned char)*s) == 'i')
        s++;
    if (tolower((unsigned char)*s) == 'b')
        s++;
    if (*s || !(v * mul < 9.2e18))
        return ERR_INVALID;
    *bytes = (long long)(v * mul);
    return 0;
}

/* ---- the flag table ---------------------------------------------------------------------- */

enum opt_kind {
    O_HEALTH_CMD, O_HEALTH_INTERVAL, O_HEALTH_TIMEOUT, O_HEALTH_RETRIES, O_HEALTH_START,
    O_NO_HEALTH, O_ENV, O_ENTRYPOINT, O_USER, O_WORKDIR, O_HOSTNAME, O_CPUS, O_MEMORY,
    O_MEMORY_SWAP, O_PIDS, O_TMPFS, O_SHM, O_ADD_HOST, O_CAP_ADD, O_CAP_DROP, O_PRIVILEGED,
    O_VOLUME, O_NETWORK, O_LABEL, O_INIT, O_SECURITY_OPT,
};

struct opt {
    const char *lng;
    char shrt;
    bool boolean;
    enum opt_kind kind;
};

static const struct opt opts[] = {
    {.lng = "health-cmd", .kind = O_HEALTH_CMD},
    {.lng = "health-interval", .kind = O_HEALTH_INTERVAL},
    {.lng = "health-timeout", .kind = O_HEALTH_TIMEOUT},
    {.lng = "health-retries", .kind = O_HEALTH_RETRIES},
    {.lng = "health-start-period", .kind = O_HEALTH_START},
    {.lng = "no-healthcheck", .boolean = true, .kind = O_NO_HEALTH},
    {.lng = "env", .shrt = 'e', .kind = O_ENV},
    {.lng = "entrypoint", .kind = O_ENTRYPOINT},
    {.lng = "user", .shrt = 'u', .kind = O_USER},
    {.lng = "workdir", .shrt = 'w', .kind = O_WORKDIR},
    {.lng = "hostname", .shrt = 'h', .kind = O_HOSTNAME},
    {.lng = "cpus", .kind = O_CPUS},
    {.lng = "memory", .shrt = 'm', .kind = O_MEMORY},
    {.lng = "memory-swap", .kind = O_MEMORY_SWAP},
    {.lng = "pids-limit", .kind = O_PIDS},
    {.lng = "tmpfs", .kind = O_TMPFS},
    {.lng = "shm-size", .kind = O_SHM},
    {.lng = "add-host", .kind = O_ADD_HOST},
    {.lng = "cap-add", .kind = O_CAP_ADD},
    {.lng = "cap-drop", .kind = O_CAP_DROP},
    {.lng = "privileged", .boolean = true, .kind = O_PRIVILEGED},
    {.lng = "volume", .shrt = 'v', .kind = O_VOLUME},
    {.lng = "network", .kind = O_NETWORK},
    {.lng = "net", .kind = O_NETWORK},
    {.lng = "label", .shrt = 'l', .kind = O_LABEL},
    {.lng = "init", .boolean = true, .kind = O_INIT},
    {.lng = "security-opt", .kind = O_SECURITY_OPT},
};

/* The kernel's capabilities (capability.h), without CAP_. */
static const char *const cap_names[] = {
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
};

char *
dockeropts_cap_name(const char *s)
{
    char *n;

    if (s == NULL)
        return NULL;
    if (strncasecmp(s, "CAP_", 4) == 0)
        s += 4;
    n = xstrdup(s);
    for (char *p = n; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    if (strcmp(n, "ALL") == 0)
        return n;
    for (size_t i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++)
        if (strcmp(n, cap_names[i]) == 0)
            return n;
    free(n);
    return NULL;
}

const char *
dockeropts_volume_problem(const char *v)
{
    if (v == NULL || *v == '\0')
        return "empty volume";
    if (strchr(v, ':') == NULL)
        return v[0] == '/' ? NULL : "an anonymous volume needs an absolute container path";
    if (v[0] == '/' || v[0] == '.' || v[0] == '~')
        return "host paths are not allowed for jobs (named volumes are)";
    return NULL;
}

static json_t *
sub(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (!v) {
        v = json_object();
        json_object_set_new(o, key, v);
    }
    return v;
}

static json_t *
arr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (!v) {
        v = json_array();
        json_object_set_new(o, key, v);
    }
    return v;
}

static int
parse_ll(const char *v, long long *out)
{
    char *end;
    long long x;

    errno = 0;
    x = strtoll(v, &end, 10);
    if (!*v || *end || errno)
        return ERR_INVALID;
    *out = x;
    return 0;
}

/* Applies one flag with its value (NULL for booleans). flag is the spelling used. */
static int
apply(struct dockeropts *o, const struct opt *op, const char *flag, const char *v,
      const char *what, unsigned flags, struct err *e)
{
    json_t *hc = NULL;
    long long x = 0;
    const char *dkey = NULL;

    switch (op->kind) {
    case O_HEALTH_CMD:
        json_object_set_new(sub(o->body, "Healthcheck"), "Test",
                            json_pack("[ss]", "CMD-SHELL", v));
        return 0;
    case O_HEALTH_INTERVAL: dkey = "Interval"; break;
    case O_HEALTH_TIMEOUT: dkey = "Timeout"; break;
    case O_HEALTH_START: dkey = "StartPeriod"; break;
    case O_HEALTH_RETRIES:
        if (parse_ll(v, &x) < 0 || x < 0 || x > INT_MAX)
            return err_set(e, ERR_INVALID, "%s: %s: invalid number '%s'", what, flag, v);
        json_object_set_new(sub(o->body, "Healthcheck"), "Retries", json_integer(x));
        return 0;
    case O_NO_HEALTH:
        json_object_set_new(sub(o->body, "Healthcheck"), "Test", json_pack("[s]", "NONE"));
        return 0;
    case O_ENV:
        if (!strchr(v, '=') || v[0] == '=')
            return err_set(e, ERR_INVALID, "%s: %s: expected NAME=VALUE, got '%s'", what, flag,
                           v);
        json_array_append_new(arr(o->body, "Env"), json_string(v));
        return 0;
    case O_ENTRYPOINT:
        if (flags & DOCKEROPTS_JOB)
            return err_set(e, ERR_INVALID, "%s: option '%s' is not allowed in a job container: "
                           "the runner's agent is its entrypoint (use a step's run: instead)",
                           what, flag);
        json_object_set_new(o->body, "Entrypoint", json_pack("[s]", v));
        return 0;
    case O_USER: json_object_set_new(o->body, "User", json_string(v)); return 0;
    case O_WORKDIR:
        if (flags & DOCKEROPTS_JOB)
            return err_set(e, ERR_INVALID, "%s: option '%s' is not allowed in a job container: "
                           "steps run in the workspace or their working-directory (use "
                           "defaults.run.working-directory)", what, flag);
        if (v[0] != '/')
            return err_set(e, ERR_INVALID, "%s: %s: the working directory '%s' is not absolute",
                           what, flag, v);
        json_object_set_new(o->body, "WorkingDir", json_string(v));
        return 0;
    case O_HOSTNAME: json_object_set_new(o->body, "Hostname", json_string(v)); return 0;
    case O_LABEL: {
        const char *eq = strchr(v, '=');
        char *k = eq ? xstrndup(v, (size_t)(eq - v)) : xstrdup(v);
        int rc = 0;

        if (!*k)
            rc = err_set(e, ERR_INVALID, "%s: %s: empty label name", what, flag);
        else if (strncmp(k, "io.runnerd.", 11) == 0)
            rc = err_set(e, ERR_INVALID, "%s: %s: label '%s' is reserved for the runner", what,
                         flag, k);
        else
            json_object_set_new(sub(o->body, "Labels"), k, json_string(eq ? eq + 1 : ""));
        free(k);
        return rc;
    }
    case O_VOLUME:
        if (!*v)
            return err_set(e, ERR_INVALID, "%s: %s: empty volume", what, flag);
        o->volumes = xreallocarray(o->volumes, o->nvolumes + 2, sizeof *o->volumes);
        o->volumes[o->nvolumes++] = xstrdup(v);
        o->volumes[o->nvolumes] = NULL;
        return 0;
    case O_SECURITY_OPT:
        return err_set(e, ERR_INVALID, "%s: option '%s' is not allowed: the runner sets the "
                       "container's confinement (seccomp, AppArmor, no-new-privileges)", what, flag);
    case O_NETWORK:
        return err_set(e, ERR_INVALID,
                       "%s: option '%s' is not allowed: the runner manages the job network", what,
                       flag);
    case O_PRIVILEGED:
        if (!(flags & DOCKEROPTS_ALLOW_PRIVILEGED))
            return err_set(e, ERR_INVALID,
                           "%s: option '--privileged' is not allowed by the runner configuration",
                           what);
        o->privileged = true;
        json_object_set_new(sub(o->body, "HostConfig"), "Privileged", json_true());
        return 0;
    default: break;
    }

    if (dkey) {
        if (dockeropts_duration(v, &x) < 0)
            return err_set(e, ERR_INVALID, "%s: %s: invalid duration '%s'", what, flag, v);
        json_object_set_new(sub(o->body, "Healthcheck"), dkey, json_integer(x));
        return 0;
    }

    hc = sub(o->body, "HostConfig");
    switch (op->kind) {
    case O_CPUS: {
        char *end;
        double c = strtod(v, &end);

        if (!*v || *end || !(c > 0) || c > 1e6)
            return err_set(e, ERR_INVALID, "%s: %s: invalid number of CPUs '%s'", what, flag, v);
        json_object_set_new(hc, "NanoCpus", json_integer((long long)llround(c * 1e9)));
        return 0;
    }
    case O_MEMORY:
    case O_SHM:
        if (dockeropts_size(v, &x) < 0)
            return err_set(e, ERR_INVALID, "%s: %s: invalid size '%s'", what, flag, v);
        json_object_set_new(hc, op->kind == O_MEMORY ? "Memory" : "ShmSize", json_integer(x));
        return 0;
    case O_MEMORY_SWAP:
        if (strcmp(v, "-1") == 0)
            x = -1;
        else if (dockeropts_size(v, &x) < 0)
            return err_set(e, ERR_INVALID, "%s: %s: invalid size '%s'", what, flag, v);
        json_object_set_new(hc, "MemorySwap", json_integer(x));
        return 0;
    case O_PIDS:
        if (parse_ll(v, &x) < 0)
            return err_set(e, ERR_INVALID, "%s: %s: invalid number '%s'", what, flag, v);
        if (x <= 0)
            return err_set(e, ERR_INVALID, "%s: %s: expected a positive number of processes, got "
                           "'%s' (a job cannot switch the runner's limit off)", what, flag, v);
        json_object_set_new(hc, "PidsLimit", json_integer(x));
        return 0;
    case O_TMPFS: {
        const char *colon = strchr(v, ':');
        char *path = colon ? xstrndup(v, (size_t)(colon - v)) : xstrdup(v);
        int rc = 0;

        if (path[0] != '/')
            rc = err_set(e, ERR_INVALID, "%s: %s: the path '%s' is not absolute", what, flag,
                         path);
        else
            json_object_set_new(sub(hc, "Tmpfs"), path, json_string(colon ? colon + 1 : ""));
        free(path);
        return rc;
    }
    case O_ADD_HOST: {
        const char *colon = strchr(v, ':');

        if (!colon || colon == v || !colon[1])
            return err_set(e, ERR_INVALID, "%s: %s: expected HOST:IP, got '%s'", what, flag, v);
        json_array_append_new(arr(hc, "ExtraHosts"), json_string(v));
        return 0;
    }
    case O_CAP_ADD:
    case O_CAP_DROP: {
        char *cap = dockeropts_cap_name(v);

        if (!*v)
            return err_set(e, ERR_INVALID, "%s: %s: empty capability", what, flag);
        if (cap == NULL)
            return err_set(e, ERR_INVALID, "%s: %s: '%s' is not a capability name (such as "
                           "NET_ADMIN or ALL)", what, flag, v);
        json_array_append_new(arr(hc, op->kind == O_CAP_ADD ? "CapAdd" : "CapDrop"),
                              json_string(cap));
        free(cap);
        return 0;
    }
    case O_INIT: json_object_set_new(hc, "Init", json_true()); return 0;
    default: break;
    }
    return err_set(e, ERR_INVALID, "%s: unsupported option '%s'", what, flag);
}

int
dockeropts_parse(const char *s, const char *what, unsigned flags, struct dockeropts *o,
                 struct err *e)
{
    char **w = NULL;
    size_t n = 0;
    int rc;

    memset(o, 0, sizeof *o);
    rc = dockeropts_split(s, what, &w, &n, e);
    if (rc < 0)
        goto out;
    o->body = json_object();
    o->volumes = xcalloc(1, sizeof *o->volumes);
    for (size_t i = 0; i < n; i++) {
        const char *a = w[i], *val = NULL;
        const struct opt *op = NULL;
        char *flag = NULL;

        if (a[0] != '-' || !a[1]) {
            rc = err_set(e, ERR_INVALID, "%s: unexpected argument '%s' (only options are allowed)",
                         what, a);
            goto out;
        }
        if (a[1] == '-') {
            const char *eq = strchr(a, '=');

            flag = eq ? xstrndup(a, (size_t)(eq - a)) : xstrdup(a);
            if (eq)
                val = eq + 1;
            for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
                if (strcmp(flag + 2, opts[k].lng) == 0)
                    op = &opts[k];
        } else {
            flag = xasprintf("-%c", a[1]);
            for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
                if (opts[k].shrt && opts[k].shrt == a[1])
                    op = &opts[k];
            if (a[2])
                val = a[2] == '=' ? a + 3 : a + 2;
        }
        if (!op && (flags & DOCKEROPTS_SKIP_UNKNOWN)) {
            /* Its value, when it has one, is the next word that is not an option. */
            if (a[1] == '-' && !val && i + 1 < n && w[i + 1][0] != '-')
                i++;
            free(flag);
            continue;
        }
        if (!op) {
            rc = err_set(e, ERR_INVALID, "%s: unsupported option '%s'", what, flag);
            free(flag);
            goto out;
        }
        if (op->boolean) {
            if (val && strcmp(val, "true") != 0) {
                if (strcmp(val, "false") == 0) {
                    free(flag);
                    continue;
                }
                rc = err_set(e, ERR_INVALID, "%s: %s: expected true or false, got '%s'", what,
                             flag, val);
                free(flag);
                goto out;
            }
        } else if (!val) {
            if (i + 1 >= n) {
                rc = err_set(e, ERR_INVALID, "%s: option '%s' needs a value", what, flag);
                free(flag);
                goto out;
            }
            val = w[++i];
        }
        if ((flags & DOCKEROPTS_SKIP_UNKNOWN) && op->kind != O_PRIVILEGED &&
            op->kind != O_SECURITY_OPT && op->kind != O_NETWORK && op->kind != O_ENTRYPOINT &&
            op->kind != O_PIDS && op->kind != O_CAP_ADD && op->kind != O_VOLUME &&
            !(op->kind == O_WORKDIR && (flags & DOCKEROPTS_JOB))) {
            free(flag);
            continue;
        }
        rc = apply(o, op, flag, val, what, flags, e);
        free(flag);
        if (rc < 0)
            goto out;
    }
out:
    dockeropts_words_free(w);
    if (rc < 0) {
        dockeropts_free(o);
        o->body = json_object();
        o->volumes = xcalloc(1, sizeof *o->volumes);
    }
    return rc;
}

int
dockeropts_check_caps(const struct dockeropts *o, char *const *allowed, const char *what,
                      struct err *e)
{
    json_t *add = json_object_get(json_object_get(o->body, "HostConfig"), "CapAdd");
    bool all = false;
    size_t i;
    json_t *v;

    for (size_t k = 0; allowed && allowed[k]; k++)
        all |= strcmp(allowed[k], "ALL") == 0;
    json_array_foreach(add, i, v) {
        const char *cap = json_string_value(v);
        bool ok = all;

        for (size_t k = 0; !ok && allowed && allowed[k]; k++)
            ok = strcmp(allowed[k], cap) == 0;
        if (!ok)
            return err_set(e, ERR_INVALID, "%s: --cap-add %s is not allowed: the runner's label "
                           "does not list it in cap_add", what, cap);
    }
    return 0;
}

void
dockeropts_free(struct dockeropts *o)
{
    if (!o)
        return;
    json_decref(o->body);
    dockeropts_words_free(o->volumes);
    memset(o, 0, sizeof *o);
}

/* Merges src's keys into dst: arrays under append_keys are appended, objects merged one level
 * (existing keys kept when keep_existing), the rest replaced. */
static void
merge_obj(json_t *dst, json_t *src, bool keep_existing)
{
    const char *k;
    json_t *v;

    json_object_foreach(src, k, v) {
        json_t *cur = json_object_get(dst, k);

        if (json_is_array(v) && json_is_array(cur) && strcmp(k, "Entrypoint") != 0 &&
            strcmp(k, "Test") != 0) {
            json_array_extend(cur, v);
        } else if (json_is_object(v) && json_is_object(cur)) {
            bool keep = strcmp(k, "Labels") == 0;
            const char *k2;
            json_t *v2;

            if (strcmp(k, "HostConfig") == 0) {
                merge_obj(cur, v, false);
                continue;
            }
            json_object_foreach(v, k2, v2) {
                if (keep && json_object_get(cur, k2))
                    continue;
                json_object_set_new(cur, k2, json_deep_copy(v2));
            }
        } else if (!(keep_existing && cur)) {
            json_object_set_new(dst, k, json_deep_copy(v));
        }
    }
}

void
dockeropts_merge(json_t *body, const struct dockeropts *o)
{
    if (!body || !o || !o->body)
        return;
    merge_obj(body, o->body, false);
}
