/* gpu.c: GPU inventory and exclusive allocation (see gpu.h). */
#include "gpu.h"

#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

struct gpu_slot {
    char *uuid;
    int64_t task; /* 0: free */
};

struct gpu_pool {
    struct store *st;
    struct gpu_slot *v;
    size_t n;
};

static void
push(char ***v, size_t *n, const char *s, size_t len)
{
    for (size_t i = 0; i < *n; i++)
        if (strlen((*v)[i]) == len && memcmp((*v)[i], s, len) == 0)
            return; /* listed twice: once is enough */
    *v = xreallocarray(*v, *n + 2, sizeof **v);
    (*v)[(*n)++] = xstrndup(s, len);
    (*v)[*n] = NULL;
}

/* The UUID token at p: GPU-/MIG- followed by hex digits and dashes. */
static size_t
uuid_len(const char *p)
{
    size_t i = 4;

    if (strncmp(p, "GPU-", 4) != 0)
        return 0;
    while (p[i] && (strchr("0123456789abcdefABCDEF-", p[i]) != NULL))
        i++;
    return i > 4 ? i : 0;
}

size_t
gpu_parse_smi(const char *text, char ***uuids, size_t *n)
{
    size_t found = 0;
    const char *line = text;

    while (line && *line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        /* "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5e0d...)"; MIG lines start with spaces. */
        if (len > 4 && strncmp(line, "GPU ", 4) == 0) {
            const char *u = memmem(line, len, "(UUID: ", 7);
            if (u) {
                size_t ul = uuid_len(u + 7);
                if (ul) {
                    push(uuids, n, u + 7, ul);
                    found++;
                }
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return found;
}

char *
gpu_parse_proc(const char *text)
{
    const char *k = strstr(text, "GPU UUID:");

    if (k == NULL)
        return NULL;
    k += strlen("GPU UUID:");
    while (*k == ' ' || *k == '\t')
        k++;
    size_t ul = uuid_len(k);
    return ul ? xstrndup(k, ul) : NULL;
}

static int
run_smi(const char *smi, struct buf *out)
{
    char cmd[600];
    FILE *f;
    char chunk[4096];
    size_t got;

    snprintf(cmd, sizeof cmd, "'%s' -L 2>/dev/null", smi);
    if (strchr(smi, '\'') || (f = popen(cmd, "r")) == NULL)
        return -1;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && out->len < (1u << 20))
        buf_append(out, chunk, got);
    int st = pclose(f);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

void
gpu_detect(const char *smi, const char *proc_dir, char ***uuids, size_t *n, const char **how)
{
    struct buf out = BUF_INIT;

    *uuids = NULL;
    *n = 0;
    if (run_smi(smi ? smi : "nvidia-smi", &out) == 0 &&
        gpu_parse_smi(buf_str(&out), uuids, n) > 0) {
        buf_free(&out);
        *how = "nvidia-smi";
        return;
    }
    buf_free(&out);
    proc_dir = proc_dir ? proc_dir : "/proc/driver/nvidia/gpus";
    DIR *dir = opendir(proc_dir);
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char *path = xasprintf("%s/%s/information", proc_dir, de->d_name);
        struct buf b = BUF_INIT;
        if (buf_read_file(&b, path, 1u << 16, "GPU information", NULL) == 0) {
            char *u = gpu_parse_proc(buf_str(&b));
            if (u)
                push(uuids, n, u, strlen(u));
            free(u);
        }
        buf_free(&b);
        free(path);
    }
    if (dir)
        closedir(dir);
    *how = *n ? "/proc/driver/nvidia/gpus" : "none found";
}

int
gpu_pool_new(struct store *st, char *const *uuids, size_t n, struct gpu_pool **out,
             struct err *e)
{
    struct gpu_pool *p = xcalloc(1, sizeof *p);
    json_t *held = NULL;

    p->st = st;
    p->v = xcalloc(n ? n : 1, sizeof *p->v);
    for (size_t i = 0; i < n; i++)
        p->v[p->n++].uuid = xstrdup(uuids[i]);
    if (st && store_gpu_held(st, &held, e) < 0) {
        gpu_pool_free(p);
        return e ? e->code : -EIO;
    }
    for (size_t i = 0; i < p->n; i++) {
        json_t *t = json_object_get(held, p->v[i].uuid);
        if (json_is_integer(t))
            p->v[i].task = json_integer_value(t);
    }
    json_decref(held);
    *out = p;
    return 0;
}

void
gpu_pool_free(struct gpu_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].uuid);
    free(p->v);
    free(p);
}

size_t
gpu_pool_size(const struct gpu_pool *p)
{
    return p ? p->n : 0;
}

size_t
gpu_pool_free_count(const struct gpu_pool *p)
{
    size_t k = 0;

    for (size_t i = 0; p && i < p->n; i++)
        k += p->v[i].task == 0;
    return k;
}

const char *
gpu_pool_uuid(const struct gpu_pool *p, size_t i, int64_t *task)
{
    if (p == NULL || i >= p->n)
        return NULL;
    if (task)
        *task = p->v[i].task;
    return p->v[i].uuid;
}

static char **
held_by(const struct gpu_pool *p, int64_t task, size_t *k)
{
    char **v = xcalloc(p->n + 1, sizeof *v);

    *k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].task == task)
            v[(*k)++] = xstrdup(p->v[i].uuid);
    return v;
}

int
gpu_pool_take(struct gpu_pool *p, int64_t task, int count, char ***granted, struct err *e)
{
    size_t k, want = count < 0 ? p->n : (size_t)count;
    char **v;

    *granted = NULL;
    if (task <= 0)
        return err_set(e, -EINVAL, "GPU grant: no task");
    v = held_by(p, task, &k);
    if (k > 0) { /* a resumed job keeps what it had */
        *granted = v;
        return 0;
    }
    free(v);
    if (want == 0 || want > p->n)
        return err_set(e, -EBUSY, "the job wants %zu GPU(s) and this host has %zu", want, p->n);
    if (gpu_pool_free_count(p) < want)
        return err_set(e, -EBUSY, "the job wants %zu GPU(s) and %zu of %zu are free", want,
                       gpu_pool_free_count(p), p->n);
    /* Persist first: a crash after this leaves a record, never a GPU handed out twice. */
    size_t got = 0;
    for (size_t i = 0; i < p->n && got < want; i++) {
        if (p->v[i].task != 0)
            continue;
        if (p->st && store_gpu_take(p->st, p->v[i].uuid, task, e) < 0) {
            int rc = e ? e->code : -EIO;
            struct err e2 = {0};
            if (p->st)
                store_gpu_release(p->st, task, &e2);
            for (size_t j = 0; j < p->n; j++)
                if (p->v[j].task == task)
                    p->v[j].task = 0;
            return rc;
        }
        p->v[i].task = task;
        got++;
    }
    *granted = held_by(p, task, &k);
    return 0;
}

int
gpu_pool_release(struct gpu_pool *p, int64_t task, struct err *e)
{
    int k = 0;

    if (p == NULL)
        return 0;
    for (size_t i = 0; i < p->n; i++)
        k += p->v[i].task == task;
    if (p->st && store_gpu_release(p->st, task, e) < 0)
        return e ? e->code : -EIO;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].task == task)
            p->v[i].task = 0;
    return k;
}
