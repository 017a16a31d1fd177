/* ident.h: a registered runner identity (one per resource class) and its poller's state
 * (poller.h polls with it; a task runs under it and counts in its slots). */
#ifndef RUNNERD_IDENT_H
#define RUNNERD_IDENT_H

#include "config.h"
#include "connect.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct daemon;

struct ident {
    struct daemon *d;
    struct store_ident si;
    struct config_label *labels; /* parsed si.labels */
    size_t n_labels;
    struct connect *conn;
    struct connect_call *call;   /* the outstanding Declare or FetchTask */
    uv_timer_t timer;
    bool declared;
    int64_t tasks_version;
    double backoff_s;            /* current wait between polls */
    int unauth;                  /* consecutive "unregistered runner" answers */
    int slots;                   /* tasks this identity may run at once */
    int running;                 /* its tasks whose job still runs */
    int gpus_needed;             /* free GPUs needed before polling (the most a label asks) */
    bool parked;                 /* GPU identity on a host without GPUs: never polls */
    bool disk_low;               /* the last poll was held back for low disk space */
    bool closing;
};

#endif
