/* config.h: runnerd's configuration, in act_runner's config.yaml format (spec
 * gitea-runner-protocol.md §4.3) so that existing files work as they are. config_defaults()
 * fills every field; config_load() reads a file over them; unknown keys and bad values are
 * file:line:col errors. After loading, the struct is read-only (STYLE.md §8). */
#ifndef CONFIG_H
#define CONFIG_H

#include "runner/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum config_exec {
    CONFIG_EXEC_HOST,
    CONFIG_EXEC_DOCKER,
};

/* A label as act_runner writes it: name[:schema[:arg]] (schema host or docker). */
struct config_label {
    char *name;
    enum config_exec exec;
    char *image;      /* docker: the image (the arg without its leading //) */
};

struct config {
    char *file;                  /* where it was read from, or NULL for defaults */
    char *log_level;             /* trace, debug, info, warn, error, fatal */
    struct {
        char *file;              /* the registration file */
        int capacity;
        json_t *envs;            /* object NAME -> value */
        char *env_file;
        double timeout_s, shutdown_timeout_s, fetch_timeout_s, fetch_interval_s;
        bool insecure;
        struct config_label *labels;
        size_t n_labels;
        char *github_mirror;
    } runner;
    struct {
        bool enabled;
        char *dir, *host, *external_server;
        int port;
    } cache;
    struct {
        char *network;
        bool privileged;
        char *options;
        char *workdir_parent;
        char **valid_volumes;
        size_t n_valid_volumes;
        char *docker_host;
        bool force_pull, force_rebuild, require_docker;
        double docker_timeout_s;
    } container;
    struct {
        char *workdir_parent;
    } host;
    /* runnerd's own settings (not in act_runner's file). */
    struct {
        char *state_file;        /* the state database */
        bool detach;             /* on SIGTERM: leave running jobs for the next start */
        double fetch_interval_max_s; /* idle/error backoff ceiling (default 5 s) */
        char *log_format;        /* "text" (journald priority prefixes) or "json" */
        char *agent;             /* runner-agent path, or NULL: next to the binary */
    } runnerd;
};

/* Fills every field with its default (act_runner's code defaults). */
void config_defaults(struct config *c);

/* Reads path over the defaults already in c. Returns 0, or ERR_INVALID/-errno with
 * "path:line:col: ..." in e (c then holds what was read so far; free it). */
int config_load(const char *path, struct config *c, struct err *e);

void config_free(struct config *c);

/* Parses one label. Returns 0 and fills out (free with config_label_free()), or ERR_INVALID. */
int config_label_parse(const char *s, struct config_label *out, struct err *e);
void config_label_free(struct config_label *l);

/* Parses a Go duration ("3h", "1m30s", "500ms", "0s") into seconds. Returns 0 or -EINVAL. */
int config_duration(const char *s, double *seconds);

#endif
