/* profile.h: what a label's settings (config.h struct config_profile, doc/label-settings.md)
 * ask of a job container: resource limits, extra binds, GPUs by UUID, the engine's socket.
 *
 * profile_job() turns settings plus a job's grant into a JSON object that travels with the job
 * to the docker executor (executor_job.profile):
 *
 *   {"label": NAME, "memory": BYTES, "nano_cpus": N, "pids": N, "binds": [...],
 *    "gpus": [UUID...], "gpu_caps": [...], "socket": HOST_PATH, "socket_gid": GID,
 *    "dind": {"image": REF, "caps": BOOL, "args": [...]}}
 *
 * and profile_apply() adds it to a container create body, last, so that nothing a workflow's
 * `container.options` says can lift a limit or add a GPU. Every other container of the job
 * (services, `docker://` steps, the dind sidecar) gets the same limits, each on its own,
 * through profile_apply_limits(). */
#ifndef PROFILE_H
#define PROFILE_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>

/* The host's physical memory in bytes (0 if unknown). */
long long profile_host_memory(void);

/* A new job object (see above). p may be NULL (runnerd.limits and the defaults only); gpus is
 * the job's grant (NULL-terminated) or NULL; socket the engine's unix socket on the host (used
 * only when p says docker: socket); socket_gid its group (-1: unknown). */
json_t *profile_job(const struct config *c, const struct config_profile *p, long long host_memory,
                    char *const *gpus, const char *socket, int socket_gid);

/* Applies job (profile_job()'s object, may be NULL) to a create body: the limits of
 * profile_apply_limits(), and HostConfig Binds, DeviceRequests, GroupAdd;
 * and sets the environment it implies in env (an object: NVIDIA_VISIBLE_DEVICES,
 * NVIDIA_DRIVER_CAPABILITIES, DOCKER_HOST), which the caller adds to the container's Env and
 * the steps' base environment. A job without GPUs gets NVIDIA_VISIBLE_DEVICES=void so that a
 * host whose default runtime is nvidia's still gives it none. */
void profile_apply(json_t *body, const json_t *job, json_t *env);

/* Applies job's resource limits (profile_job()'s object; NULL: none) to host_config, a create
 * body's HostConfig object: Memory and MemorySwap (= Memory: no swap on top), NanoCpus,
 * PidsLimit, replacing what was there. Call it after anything a workflow controls (options)
 * has been merged, so that nothing lifts them. */
void profile_apply_limits(const json_t *job, json_t *host_config);

/* True when an engine error says it cannot provide the requested GPUs (docker-engine.md §3.2:
 * "could not select device driver ..."), so that the job fails with words an operator acts on. */
bool profile_gpu_refused(const char *engine_msg);

#endif
