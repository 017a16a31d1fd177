/* gpu.h: the host's GPUs and who holds them (issue 5; doc/docker-engine.md §3.5, §3.6).
 *
 * The inventory is detected (`nvidia-smi -L`, else /proc/driver/nvidia/gpus/<bus>/information)
 * or given in the configuration (runnerd.gpus), by UUID. The pool hands each GPU job its own
 * GPUs: a grant is written to the state database (table gpus) before the job's container is
 * created, so a restarted runnerd never hands out a GPU that a still-running job holds, and it
 * is released when the job is over. Everything runs on the loop thread. */
#ifndef GPU_H
#define GPU_H

#include "runner/err.h"

#include <stddef.h>
#include <stdint.h>

struct store;
struct gpu_pool;

/* Parses `nvidia-smi -L` output: appends each "GPU n: model (UUID: GPU-...)" line's UUID (MIG
 * lines are not GPUs of their own and are skipped). Returns the number found. */
size_t gpu_parse_smi(const char *text, char ***uuids, size_t *n);
/* Parses one /proc/driver/nvidia/gpus/<bus>/information file: its "GPU UUID:" value (new
 * string) or NULL. */
char *gpu_parse_proc(const char *text);

/* Detects the host's GPUs: nvidia-smi (smi: the program, NULL: "nvidia-smi" on PATH), else
 * proc_dir (NULL: /proc/driver/nvidia/gpus). Never fails: no GPU is an empty list. *how says
 * where they came from ("nvidia-smi", "/proc/driver/nvidia/gpus", or "none found"). */
void gpu_detect(const char *smi, const char *proc_dir, char ***uuids, size_t *n, const char **how);

/* A pool over uuids (copied) backed by store st (borrowed). Grants recorded in the store for
 * GPUs of the inventory are taken as held. */
int gpu_pool_new(struct store *st, char *const *uuids, size_t n, struct gpu_pool **out,
                 struct err *e);
void gpu_pool_free(struct gpu_pool *p);
size_t gpu_pool_size(const struct gpu_pool *p);
size_t gpu_pool_free_count(const struct gpu_pool *p);
/* The i-th GPU's UUID and the task holding it (0: free). */
const char *gpu_pool_uuid(const struct gpu_pool *p, size_t i, int64_t *task);

/* Grants task count GPUs (-1: all of them), all or nothing, persisted first. Returns 0 and a
 * new NULL-terminated list of UUIDs in *granted (free with xstrv_free()), or -EBUSY when
 * not enough are free, or a store error. A task that already holds GPUs gets the same ones
 * back (a resumed job). */
int gpu_pool_take(struct gpu_pool *p, int64_t task, int count, char ***granted, struct err *e);
/* Releases what task holds (nothing held: 0). Returns how many were released, or < 0. */
int gpu_pool_release(struct gpu_pool *p, int64_t task, struct err *e);

#endif
