/* poller.h: one identity's polling for work (poller.c): Declare, then FetchTask while the
 * identity may take a task; a task fetched goes to task_start() (task.h). */
#ifndef RUNNERD_POLLER_H
#define RUNNERD_POLLER_H

#include "daemon.h"
#include "ident.h"

#include <stdbool.h>

int poller_start(struct ident *id);
/* A slot was freed (or the configuration changed): poll again soon if allowed. */
void poller_kick(struct ident *id);
/* A task released its GPUs: the GPU identities poll again if allowed. */
void poller_gpus_freed(struct daemon *d);
/* Stops polling (cancels the outstanding call). */
void poller_stop(struct ident *id);
/* True when the state database's filesystem has less than runnerd.min_free_disk free (*avail:
 * the bytes free, -1 when unknown). No task is taken then: its log would not fit. */
bool poller_disk_low(const struct daemon *d, long long *avail);

#endif
