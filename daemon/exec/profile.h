/* profile.h: what a label's settings (config.h struct config_profile, doc/label-settings.md)
 * ask of a job container: resource limits, extra binds, GPUs by UUID, the engine's socket.
 *
 * profile_job() turns settings plus a job's grant into a JSON object that travels with the job
 * to the docker executor (executor_job.profile):
 *
 *   {"label": NAME, "memory": BYTES, "nano_cpus": N, "pids": N, "binds": [...],
 *    "gpus": [UUID...], "gpu_caps": [...], "socket": HOST_PATH, "socket_gid": GID,
 *    "dind": {"image": REF, "caps": BOOL, "args": [...]},
 *    "cap_add": [CAP...], "cap_drop": [CAP...], "persistent_volumes": [NAME...]}
 *
 * cap_add lists what a workflow's --cap-add may name (the label's cap_add; empty by default),
 * cap_drop the floor every workflow container drops (config_cap_drop_resolve(), less cap_add).
 *
 * and profile_apply() adds it to a container create body, last, so that nothing a workflow's
 * `container.options` says can lift a limit or add a GPU. Every other container of the job
 * (services, `docker://` steps, the dind sidecar) gets the same limits, each on its own,
 * through profile_apply_limits(). */
#ifndef PROFILE_H
#define PROFILE_H

#include "config.h"
#include "dockeropts.h"
#include "wf.h"

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

/* Adds job's capability drop floor ("cap_drop") to host_config's CapDrop. Call it for every
 * container whose image or options a workflow chooses (the job container, services, docker://
 * steps), after the options. */
void profile_apply_caps(const json_t *job, json_t *host_config);

/* Checks that every capability parsed options o add is in job's "cap_add" (job NULL: none
 * may be added). Returns 0 or ERR_INVALID naming the capability, prefixed with what. */
int profile_check_caps(const json_t *job, const struct dockeropts *o, const char *what,
                       struct err *e);

/* Checks a workflow's own docker run options (container.options with DOCKEROPTS_JOB, or a
 * service's) against what no label allows (dockeropts_parse(), host-path -v) and the
 * capabilities job's label lets it add ("cap_add"; job NULL: none). Returns 0 or ERR_INVALID
 * with e starting with what. */
int profile_check_options(const json_t *job, const char *options, const char *what,
                          unsigned flags, struct err *e);

/* Refuses a workflow's container.image (job_image, evaluated; NULL: none) that differs from the
 * image label p pins, unless p says allow_job_image. The message starts with
 * "FILE:LINE:COL: container.image:" (the position of wj's container image). Returns 0 or
 * ERR_INVALID. */
int profile_check_image(const struct config_profile *p, const char *job_image, const char *file,
                        const struct wf_job *wj, struct err *e);

/* True when an engine error says it cannot provide the requested GPUs (doc/docker-engine.md §3.2:
 * "could not select device driver ..."), so that the job fails with words an operator acts on. */
bool profile_gpu_refused(const char *engine_msg);

#endif
