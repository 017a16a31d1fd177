/* runlocal.h: running planned workflows locally (runnerctl exec): the scheduler over the
 * plans, executors chosen by label, the terminal sink, the JSON report, and Ctrl-C. */
#ifndef RUNLOCAL_H
#define RUNLOCAL_H

#include "config.h"
#include "jobcache.h"
#include "plan.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

struct runlocal_opts {
    json_t *labels;          /* label -> "host" or "docker://IMAGE" (borrowed) */
    json_t *config_env;      /* --env (borrowed) */
    json_t *secrets;         /* masked values (borrowed) */
    const char *workdir;     /* the repository: copied into (or bound as) the workspace */
    bool bind;
    const char *report_path; /* NULL: no report */
    const char *agent_path;  /* runner-agent */
    int capacity;            /* runs at once (0: number of CPUs) */
    const char *container_options; /* docker run flags for every job container (config) */
    const struct config *cfg; /* -c: runnerd.labels settings and limits (borrowed), or NULL */
    const char *cache_dir;   /* git mirrors and fetched actions */
    const char *git_ca_file, *actions_url, *github_mirror, *node_image; /* or NULL */
    FILE *out;               /* live output */
    bool color;
    /* The actions/cache server the runs use (jobcache.h), or NULL: none (--no-cache). Its
     * gateway is found here; each run gets a token for repository cache_repo (owner/name)
     * at cache_ref, reading cache_default_ref too (NULL: none), valid cache_ttl_s. */
    const struct jobcache_opts *cache;
    const char *cache_repo, *cache_ref, *cache_default_ref;
    double cache_ttl_s;
};

/* Runs every job of plans[0..n). Returns the exit status: 0 all jobs succeeded or were
 * skipped, 1 a job failed or was cancelled, 2 bad input found before anything ran. */
int runlocal_run(struct plan *const *plans, size_t n, const struct runlocal_opts *o);

#endif
