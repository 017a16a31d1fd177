/* config.h: runnerd's configuration, in act_runner's config.yaml format (spec
 * doc/gitea-protocol.md §4.3) so that existing files work as they are. config_defaults()
 * fills every field; config_load() reads a file over them; unknown keys and bad values are
 * file:line:col errors. After loading, the struct is read-only (doc/style.md §8). */
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

/* Resource limits of a docker job container (0 / unset: the default applies). */
struct config_limits {
    long long memory;            /* bytes; 0: see memory_pct */
    double memory_pct;           /* percent of the host's memory (when memory is 0), 0: unset */
    double cpus;                 /* CPUs; 0: no limit */
    long long pids;              /* 0: unset */
    char **cap_drop;             /* capabilities every job container drops (NULL-terminated,
                                    upper case, no CAP_), when has_cap_drop */
    bool has_memory, has_cpus, has_pids, has_cap_drop;
};

enum config_docker_mode {
    CONFIG_DOCKER_NONE,          /* no engine access from the job */
    CONFIG_DOCKER_SOCKET,        /* the host engine's socket bound in (trusted code only) */
    CONFIG_DOCKER_DIND,          /* a per-job dockerd sidecar */
};

/* runnerd.labels.NAME: how a label's jobs run (doc/label-settings.md). */
struct config_profile {
    char *name;
    int line, col;               /* where the label's settings start */
    char *image;                 /* the pinned image reference (NULL: the registration's) */
    enum config_docker_mode docker;
    int gpus;                    /* GPUs per job: 0 none, -1 all */
    int gpus_line, gpus_col;
    char **gpu_caps;             /* NULL-terminated; always has "gpu" */
    struct config_limits limits;
    char **volumes;              /* extra binds SOURCE:TARGET[:ro|rw], NULL-terminated */
    char *dind_image;
    bool dind_caps;              /* dind_privileges: caps (else privileged) */
    char **dind_args;            /* NULL-terminated */
    char **cap_add;              /* capabilities a workflow may add (--cap-add), NULL-terminated,
                                    upper case without CAP_ ("ALL": any); NULL: none */
    bool allow_job_image;        /* a workflow's container.image may replace the pinned image */
    char **persistent_volumes;   /* named volumes of workflows kept across this label's jobs
                                    (NULL-terminated; NULL: none, every one is per job) */
    bool no_cache;               /* cache: false: its jobs get no actions/cache server */
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
        char *cache_dir;         /* git mirrors and actions, or NULL: $CACHE_DIRECTORY (systemd),
                                    else "cache" beside the state database */
        char *git_ca_file;       /* CA bundle for git over HTTPS, or NULL: the system's */
        char *actions_url;       /* where owner/repo@ref actions come from when the task does
                                    not say (runnerctl exec), or NULL: https://github.com */
        char *node_image;        /* node actions in a job image without node run in a
                                    container of this image, or NULL: they fail saying so */
        bool detach;             /* on SIGTERM: leave running jobs for the next start */
        double fetch_interval_max_s; /* idle/error backoff ceiling (default 5 s) */
        char *log_format;        /* "text" (journald priority prefixes) or "json" */
        char *agent;             /* runner-agent path, or NULL: next to the binary */
        char *http;              /* loopback status endpoint HOST:PORT, or NULL: off */
        long long min_free_disk; /* bytes; /readyz is false below it */
        bool gpus_auto;          /* inventory by detection (default) */
        char **gpus;             /* else exactly these UUIDs (NULL-terminated, may be empty) */
        int gpus_line, gpus_col;
        bool force_gpu_labels;   /* declare GPU labels even without GPUs */
        struct config_limits limits; /* defaults of every docker job */
        struct config_profile *profiles;
        size_t n_profiles;
        /* runnerd.cache: the actions/cache server jobs use (README.md, "Cache"). */
        struct {
            bool enabled;        /* default true (and act_runner's cache.enabled) */
            char *dir;           /* blobs, or NULL: "actions-cache" under config_cache_dir() */
            long long max_size;  /* bytes, 0: the server's default */
            double max_age_s;    /* unused entries live this long, 0: the server's default */
            char *external_url;  /* another host's server (ends in "/"), or NULL: our own */
            char *key_file;      /* the signing key, or NULL: cache.key beside the state
                                    database (made when missing); needed with external_url */
        } cache;
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

/* The settings of label name, or NULL. */
const struct config_profile *config_profile_find(const struct config *c, const char *name);

/* A label's effective limits: the label's own over runnerd.limits over the defaults (memory
 * 75 % of host_memory, pids 4096, no CPU limit). Memory in bytes (0: none), nano-CPUs. c and p
 * may be NULL (the defaults: runnerctl exec without -c). */
void config_limits_resolve(const struct config *c, const struct config_profile *p,
                           long long host_memory, long long *memory, long long *nano_cpus,
                           long long *pids);

/* A label's capability drop floor (the label's cap_drop over runnerd.limits.cap_drop over the
 * default: NET_RAW, MKNOD, AUDIT_WRITE); c and p may be NULL. Borrowed, NULL-terminated. */
const char *const *config_cap_drop_resolve(const struct config *c, const struct config_profile *p);

/* The state database when nothing names one (runnerd.state_file's default). */
#define CONFIG_STATE_FILE_DEFAULT "/var/lib/runnerd/runnerd.db"

/* The state database, by the one rule runnerd and every runnerctl command follow (a new
 * string): override (their --state) when not NULL, else $RUNNERD_STATE when set and not empty,
 * else runnerd.state_file of c (its default when the file does not set it), else
 * CONFIG_STATE_FILE_DEFAULT. c may be NULL (no -c CONFIG). */
char *config_state_path(const struct config *c, const char *override);

/* Where git mirrors and fetched actions live (a new string): runnerd.cache_dir, else
 * $RUNNERD_CACHE_DIR, else systemd's $CACHE_DIRECTORY (the first of its list); then for the
 * daemon "cache" beside the state database, for the CLI $XDG_CACHE_HOME/runnerd, else
 * ~/.cache/runnerd. c may be NULL. */
char *config_cache_dir(const struct config *c, bool daemon);

/* Parses a Go duration ("3h", "1m30s", "500ms", "0s") into seconds. Returns 0 or -EINVAL. */
int config_duration(const char *s, double *seconds);

#endif
