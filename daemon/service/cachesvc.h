/* cachesvc.h: runnerd's actions/cache server (jobcache.h): started before any task runs or
 * resumes, listening where every job reaches it, on the port it had before a restart when it
 * can (a resumed job keeps the URL its checkpoint holds); each task's token and variables. */
#ifndef RUNNERD_CACHESVC_H
#define RUNNERD_CACHESVC_H

#include "daemon.h"

#include <jansson.h>

struct rtask;

/* Starts the server per runnerd.cache (nothing when it is off), asking the engine where job
 * containers reach the host when d->docker_ready; then(). A failure is logged and jobs run
 * without a cache. */
void cachesvc_start(struct daemon *d, void (*then)(void));

/* The task's variables for a job in a container and on the host (new, or NULL: no cache),
 * its token minted for the task's repository and ref and added to mask. */
void cachesvc_task(struct daemon *d, int64_t tid, const json_t *github, struct mask *mask,
                   json_t **env_container, json_t **env_host);

/* Stops the server (its handles close on the loop). */
void cachesvc_stop(struct daemon *d);

#endif
