/* dockerexec-sweep.c: leftovers: the containers, networks and volumes of owners that ran on
 * this host and are gone (dockerexec_sweep_orphans), or of a restarted runnerd's old jobs
 * (dockerexec_sweep_owner). */
#include "dockerexec-int.h"

#include "docker.h"
#include "httpc.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- orphans */

struct sweep {
    struct docker *d;
    void (*done)(int removed, void *arg);
    void *arg;
    json_t *owners;   /* owner -> true: dead owners on this host; or, with `owner`, the
                         job label values to remove */
    char *owner;      /* dockerexec_sweep_owner(): only this owner's objects */
    json_t *keep;     /* ... except these jobs */
    int stage;        /* 0 containers, 1 networks, 2 volumes, 3 removing */
    size_t next;
    int removed;
};

static void sweep_next(struct sweep *sw);

/* Records owner if it ran on this host and its process is gone. */
static void
note_owner(struct sweep *sw, json_t *labels)
{
    const char *owner = json_string_value(json_object_get(labels, DOCKEREXEC_LABEL_OWNER));
    char host[256] = "";
    const char *colon;

    if (owner == NULL || (colon = strrchr(owner, ':')) == NULL)
        return;
    gethostname(host, sizeof host - 1);
    if (strlen(host) != (size_t)(colon - owner) || strncmp(owner, host, strlen(host)) != 0)
        return;
    char *end = NULL;
    long pid = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0')
        return; /* not a process id: a durable owner (runnerd) that cleans up itself */
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH))
        json_object_set_new(sw->owners, owner, json_true());
}

static void
on_swept(const struct docker_res *res, void *arg)
{
    struct sweep *sw = arg;

    if (res->rc < 0)
        log_warn("sweeping orphans: %s", res->err.msg);
    sw->removed += res->removed;
    sweep_next(sw);
}

static void
on_listed(const struct docker_res *res, void *arg)
{
    struct sweep *sw = arg;
    json_t *list = res->json, *it;
    size_t i;

    if (res->rc < 0)
        log_warn("listing leftovers: %s", res->err.msg);
    if (json_is_object(list))
        list = json_object_get(list, "Volumes");
    json_array_foreach(list, i, it) {
        json_t *labels = json_object_get(it, "Labels");
        if (sw->owner == NULL) {
            note_owner(sw, labels);
            continue;
        }
        const char *o = json_string_value(json_object_get(labels, DOCKEREXEC_LABEL_OWNER));
        const char *job = json_string_value(json_object_get(labels, DOCKER_LABEL_JOB));
        if (o && job && strcmp(o, sw->owner) == 0 && !json_object_get(sw->keep, job))
            json_object_set_new(sw->owners, job, json_true());
    }
    sw->stage++;
    sweep_next(sw);
}

static void
sweep_next(struct sweep *sw)
{
    struct err e = {0};
    char *filter = httpc_escape("{\"label\":[\"" DOCKEREXEC_LABEL_OWNER "\"]}");
    char *path = NULL;
    int rc = 0;

    switch (sw->stage) {
    case 0:
        rc = docker_container_list(sw->d, DOCKEREXEC_LABEL_OWNER, on_listed, sw, &e);
        break;
    case 1:
        path = xasprintf("/networks?filters=%s", filter);
        rc = docker_call(sw->d, "list networks", "GET", path, NULL, NULL, 0, on_listed, sw, &e);
        break;
    case 2:
        path = xasprintf("/volumes?filters=%s", filter);
        rc = docker_call(sw->d, "list volumes", "GET", path, NULL, NULL, 0, on_listed, sw, &e);
        break;
    default: {
        void *iter = json_object_iter(sw->owners);
        size_t n = 0;
        while (iter && n < sw->next) {
            iter = json_object_iter_next(sw->owners, iter);
            n++;
        }
        if (iter == NULL) {
            free(filter);
            sw->done(sw->removed, sw->arg);
            json_decref(sw->owners);
            json_decref(sw->keep);
            free(sw->owner);
            free(sw);
            return;
        }
        sw->next++;
        path = xasprintf("%s=%s", sw->owner ? DOCKER_LABEL_JOB : DOCKEREXEC_LABEL_OWNER,
                         json_object_iter_key(iter));
        rc = docker_sweep(sw->d, path, on_swept, sw, &e);
        break;
    }
    }
    free(filter);
    free(path);
    if (rc < 0) {
        log_warn("sweeping orphans: %s", e.msg);
        sw->stage = 3;
        sw->next = (size_t)-1 / 2;
        sweep_next(sw);
    }
}

/* Starts a sweep: of dead owners on this host (owner NULL), or of owner's jobs not in keep. */
static int
sweep_start(struct docker *d, const char *owner, const json_t *keep,
            void (*done)(int removed, void *arg), void *arg)
{
    struct sweep *sw = xcalloc(1, sizeof *sw);

    sw->d = d;
    sw->done = done;
    sw->arg = arg;
    sw->owners = json_object();
    if (owner != NULL) {
        sw->owner = xstrdup(owner);
        sw->keep = keep ? json_deep_copy(keep) : json_object();
    }
    sweep_next(sw);
    return 0;
}

int
dockerexec_sweep_orphans(struct docker *d, void (*done)(int removed, void *arg), void *arg,
                         struct err *e)
{
    (void)e;
    return sweep_start(d, NULL, NULL, done, arg);
}

int
dockerexec_sweep_owner(struct docker *d, const char *owner, const json_t *keep,
                       void (*done)(int removed, void *arg), void *arg, struct err *e)
{
    (void)e;
    return sweep_start(d, owner, keep, done, arg);
}
