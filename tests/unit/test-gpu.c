/* test-gpu.c: GPU inventory parsing and detection (nvidia-smi output, /proc/driver/nvidia), and
 * exclusive allocation backed by a real state database: all-or-nothing grants, no GPU granted
 * twice, release, a resumed task getting its GPUs back, and grants surviving a "crash" (a new
 * pool over the same file). */
#include "harness.h"

#include "gpu.h"
#include "runner/xalloc.h"
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <sys/stat.h>

#define A "GPU-5e0d1a2b-0000-1111-2222-333344445555"
#define B "GPU-6f1e2b3c-0000-1111-2222-333344445555"
#define C "GPU-7a2f3c4d-0000-1111-2222-333344445555"

static void
write_file(const char *path, const char *s, int mode)
{
    FILE *f = fopen(path, "w");

    ASSERT(f != NULL);
    fputs(s, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static size_t
count(char **v)
{
    size_t n = 0;

    while (v && v[n])
        n++;
    return n;
}

TEST(parse_smi)
{
    char **v = NULL;
    size_t n = 0;
    const char *out = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: " A ")\n"
                      "  MIG 3g.20gb     Device  0: (UUID: MIG-1111)\n"
                      "GPU 1: Tesla T4 (UUID: " B ")\n"
                      "GPU 2: broken line without uuid\n"
                      "GPU 3: dup (UUID: " A ")\n";

    ASSERT_EQ(gpu_parse_smi(out, &v, &n), 3);
    ASSERT_EQ(n, 2); /* the MIG line and the duplicate are not GPUs of their own */
    ASSERT_STR_EQ(v[0], A);
    ASSERT_STR_EQ(v[1], B);
    ASSERT(v[2] == NULL);
    xstrv_free(v);
    v = NULL;
    n = 0;
    ASSERT_EQ(gpu_parse_smi("", &v, &n), 0);
    ASSERT_EQ(gpu_parse_smi("No devices were found\n", &v, &n), 0);
    ASSERT(v == NULL);
}

TEST(parse_proc)
{
    char *u = gpu_parse_proc("Model: \t\t Tesla T4\nIRQ:   44\nGPU UUID: \t " B "\nVideo BIOS: ??\n");

    ASSERT_STR_EQ(u, B);
    free(u);
    ASSERT(gpu_parse_proc("Model: X\n") == NULL);
    ASSERT(gpu_parse_proc("GPU UUID: nonsense\n") == NULL);
}

TEST(detect_smi_then_proc_then_none)
{
    char **v = NULL;
    size_t n = 0;
    const char *how = NULL;
    char smi[512], proc[512];

    snprintf(smi, sizeof smi, "%s/nvidia-smi", test_tmpdir());
    write_file(smi, "#!/bin/sh\n[ \"$1\" = -L ] || exit 9\necho 'GPU 0: T4 (UUID: " C ")'\n", 0755);
    gpu_detect(smi, "/nonexistent", &v, &n, &how);
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(v[0], C);
    ASSERT_STR_EQ(how, "nvidia-smi");
    xstrv_free(v);

    /* nvidia-smi fails: /proc/driver/nvidia/gpus/<bus>/information */
    snprintf(proc, sizeof proc, "%s/gpus", test_tmpdir());
    ASSERT_OK(mkdir(proc, 0755));
    ASSERT_OK(mkdir("gpus/0000:3b:00.0", 0755));
    ASSERT_OK(mkdir("gpus/0000:af:00.0", 0755));
    write_file("gpus/0000:3b:00.0/information", "Model: T4\nGPU UUID: " A "\n", 0644);
    write_file("gpus/0000:af:00.0/information", "Model: T4\nGPU UUID: " B "\n", 0644);
    gpu_detect("/bin/false", proc, &v, &n, &how);
    ASSERT_EQ(n, 2);
    ASSERT((strcmp(v[0], A) == 0 && strcmp(v[1], B) == 0) || (strcmp(v[0], B) == 0 && strcmp(v[1], A) == 0));
    ASSERT_STR_EQ(how, "/proc/driver/nvidia/gpus");
    xstrv_free(v);

    gpu_detect("/nonexistent/nvidia-smi", "/nonexistent", &v, &n, &how);
    ASSERT_EQ(n, 0);
    ASSERT(v == NULL);
    ASSERT_STR_EQ(how, "none found");
}

static struct store *
open_db(void)
{
    struct store *s = NULL;
    struct err e = {0};

    if (store_open("state.db", &s, &e) < 0)
        test_fail(__FILE__, __LINE__, "store_open: %s", e.msg);
    return s;
}

TEST(exclusive_grants)
{
    struct store *s = open_db();
    struct gpu_pool *p = NULL;
    struct err e = {0};
    char *inv[] = {A, B, C};
    char **g1 = NULL, **g2 = NULL, **g3 = NULL, **g4 = NULL;

    ASSERT_OK(gpu_pool_new(s, inv, 3, &p, &e));
    ASSERT_EQ(gpu_pool_size(p), 3);
    ASSERT_EQ(gpu_pool_free_count(p), 3);
    ASSERT_OK(gpu_pool_take(p, 101, 2, &g1, &e));
    ASSERT_EQ(count(g1), 2);
    ASSERT_OK(gpu_pool_take(p, 102, 1, &g2, &e));
    ASSERT_EQ(count(g2), 1);
    /* no GPU is in two grants */
    for (size_t i = 0; g1[i]; i++)
        ASSERT(strcmp(g1[i], g2[0]) != 0);
    ASSERT_EQ(gpu_pool_free_count(p), 0);
    /* not enough: all or nothing, and nothing changes */
    ASSERT_EQ(gpu_pool_take(p, 103, 1, &g3, &e), -EBUSY);
    ASSERT_STR_CONTAINS(e.msg, "0 of 3 are free");
    ASSERT(g3 == NULL);
    /* a resumed task gets the same GPUs back */
    ASSERT_OK(gpu_pool_take(p, 101, 2, &g3, &e));
    ASSERT_EQ(count(g3), 2);
    ASSERT_STR_EQ(g3[0], g1[0]);
    ASSERT_STR_EQ(g3[1], g1[1]);
    xstrv_free(g3);
    g3 = NULL;
    /* release frees exactly that task's */
    ASSERT_EQ(gpu_pool_release(p, 101, &e), 2);
    ASSERT_EQ(gpu_pool_free_count(p), 2);
    ASSERT_EQ(gpu_pool_release(p, 101, &e), 0);
    ASSERT_EQ(gpu_pool_take(p, 104, 3, &g3, &e), -EBUSY);
    ASSERT_EQ(gpu_pool_free_count(p), 2); /* the failed grant took nothing */
    ASSERT_OK(gpu_pool_take(p, 104, 2, &g3, &e));
    /* all: every GPU of the host, only when all are free */
    ASSERT_EQ(gpu_pool_take(p, 105, -1, &g4, &e), -EBUSY);
    ASSERT_EQ(gpu_pool_take(p, 106, 4, &g4, &e), -EBUSY);
    ASSERT_STR_CONTAINS(e.msg, "this host has 3");
    ASSERT_EQ(gpu_pool_take(p, 0, 1, &g4, &e), -EINVAL);
    xstrv_free(g1);
    xstrv_free(g2);
    xstrv_free(g3);
    ASSERT_EQ(gpu_pool_release(p, 102, &e), 1);
    ASSERT_EQ(gpu_pool_release(p, 104, &e), 2);
    ASSERT_OK(gpu_pool_take(p, 105, -1, &g4, &e));
    ASSERT_EQ(count(g4), 3);
    xstrv_free(g4);
    gpu_pool_free(p);
    store_close(s);
}

TEST(grants_survive_a_restart)
{
    struct store *s = open_db();
    struct gpu_pool *p = NULL;
    struct err e = {0};
    char *inv[] = {A, B};
    char **g = NULL, **g2 = NULL;
    int64_t holder = 0;

    ASSERT_OK(gpu_pool_new(s, inv, 2, &p, &e));
    ASSERT_OK(gpu_pool_take(p, 7, 1, &g, &e));
    gpu_pool_free(p); /* the daemon dies: no release */
    store_close(s);

    s = open_db();
    ASSERT_OK(gpu_pool_new(s, inv, 2, &p, &e));
    ASSERT_EQ(gpu_pool_free_count(p), 1);
    for (size_t i = 0; i < 2; i++)
        if (strcmp(gpu_pool_uuid(p, i, &holder), g[0]) == 0)
            ASSERT_EQ(holder, 7);
    ASSERT_OK(gpu_pool_take(p, 8, 1, &g2, &e));
    ASSERT(strcmp(g2[0], g[0]) != 0); /* never the one task 7 still holds */
    char **g3 = NULL;
    ASSERT_EQ(gpu_pool_take(p, 9, 1, &g3, &e), -EBUSY);
    ASSERT_EQ(gpu_pool_release(p, 7, &e), 1);
    gpu_pool_free(p);
    store_close(s);

    /* a GPU that left the inventory: its stale grant does not count */
    s = open_db();
    char *inv2[] = {C};
    ASSERT_OK(gpu_pool_new(s, inv2, 1, &p, &e));
    ASSERT_EQ(gpu_pool_free_count(p), 1);
    gpu_pool_free(p);
    store_close(s);
    xstrv_free(g);
    xstrv_free(g2);
}

TEST(many_tasks_contend)
{
    struct store *s = open_db();
    struct gpu_pool *p = NULL;
    struct err e = {0};
    char *inv[] = {A, B, C};
    int holders[3] = {0};

    ASSERT_OK(gpu_pool_new(s, inv, 3, &p, &e));
    /* 200 rounds of tasks taking and releasing: at any time each GPU has at most one holder and
     * the store agrees with the pool. */
    for (int round = 0; round < 200; round++) {
        int64_t task = 1000 + round;
        char **g = NULL;
        int rc = gpu_pool_take(p, task, 1 + round % 2, &g, &e);
        if (rc == -EBUSY) {
            /* release the oldest holder */
            for (int i = 0; i < 3; i++)
                if (holders[i]) {
                    ASSERT(gpu_pool_release(p, holders[i], &e) >= 1);
                    int64_t gone = holders[i];
                    for (int k = 0; k < 3; k++)
                        if (holders[k] == gone)
                            holders[k] = 0;
                    break;
                }
            continue;
        }
        ASSERT_OK(rc);
        for (size_t k = 0; g[k]; k++) {
            for (int i = 0; i < 3; i++)
                if (strcmp(gpu_pool_uuid(p, (size_t)i, NULL), g[k]) == 0) {
                    ASSERT_EQ(holders[i], 0);
                    holders[i] = (int)task;
                }
        }
        xstrv_free(g);
        json_t *held = NULL;
        ASSERT_OK(store_gpu_held(s, &held, &e));
        int busy = 0;
        for (int i = 0; i < 3; i++)
            busy += holders[i] != 0;
        ASSERT_EQ(json_object_size(held), busy);
        json_decref(held);
    }
    gpu_pool_free(p);
    store_close(s);
}

/* Another process (an older runnerd on the same state file, say) took a GPU after this pool
 * was loaded: the grant that runs into it fails, and what it took before is given back, in
 * the pool and in the store. */
TEST(failed_grant_rolls_back)
{
    struct store *s = open_db();
    struct gpu_pool *p = NULL;
    struct err e = {0};
    char *inv[] = {A, B};
    char **g = NULL;
    sqlite3 *db = NULL;

    ASSERT_OK(gpu_pool_new(s, inv, 2, &p, &e));
    ASSERT_EQ(sqlite3_open("state.db", &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ASSERT_EQ(sqlite3_exec(db, "INSERT INTO gpus (uuid, task_id) VALUES ('" B "', 99)", NULL, NULL,
                           NULL), SQLITE_OK);
    ASSERT(gpu_pool_take(p, 5, 2, &g, &e) < 0);
    ASSERT(g == NULL);
    ASSERT_STR_CONTAINS(e.msg, "busy");
    ASSERT_EQ(gpu_pool_free_count(p), 2);
    json_t *held = NULL;
    ASSERT_OK(store_gpu_held(s, &held, &e));
    ASSERT_EQ(json_object_size(held), 1);
    ASSERT_EQ(json_integer_value(json_object_get(held, B)), 99);
    json_decref(held);
    sqlite3_close(db);
    gpu_pool_free(p);
    store_close(s);
}
