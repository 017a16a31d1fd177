/* cmd-exec.c: `runnerctl exec` — read workflows and plan them (and, with the executor, run
 * them) locally, as act does: the same engine runnerd uses, no Gitea needed. */
#include "cmd.h"
#include "config.h"
#include "ctx.h"
#include "launch.h"
#include "plan.h"
#include "runlocal.h"
#include "executor.h"
#include "jobcache.h"
#include "mask.h"
#include "scm.h"
#include "wf.h"

#include "runner/xalloc.h"

#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct exec_opts {
    bool plan, json;
    const char *event_name; /* NULL: push if the workflow has it, else its first event */
    const char *event_path;
    const char *job;
    json_t *matrix_filter, *vars, *secrets, *inputs, *labels, *env;
    const char *workdir, *report, *config;
    bool bind, no_cache;
    char **paths;
    size_t n_paths;
};

static const char exec_usage[] =
    "[--plan [--json]] [-E EVENT] [--event-path FILE] [-j JOB] [--matrix KEY:VALUE]...\n"
    "       [-l LABEL=host|LABEL=docker://IMAGE]... [-s NAME[=VALUE]]... [--var NAME=VALUE]...\n"
    "       [--env NAME=VALUE]... [--input NAME=VALUE]... [-C DIR] [--bind] [--report FILE]\n"
    "       [-c CONFIG] [--no-cache]\n"
    "       [PATH...]\n"
    "  PATH is a workflow file or a directory of *.yml/*.yaml files\n"
    "  (default .gitea/workflows, then .github/workflows)";

/* Splits "k<sep>v" into obj[k] = v. */
static int
put_pair(json_t *obj, const char *arg, char sep, const char *opt)
{
    const char *eq = strchr(arg, sep);

    if (eq == NULL || eq == arg) {
        fprintf(stderr, "runnerctl exec: %s expects NAME%cVALUE, got '%s'\n", opt, sep, arg);
        return -1;
    }
    char *k = xstrndup(arg, (size_t)(eq - arg));
    json_object_set_new(obj, k, json_string(eq + 1));
    free(k);
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the workflow files at path (a file, or a directory of .yml/.yaml files) to o->paths. */
static int
collect(struct exec_opts *o, const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    size_t first = o->n_paths;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "runnerctl exec: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        o->paths = xreallocarray(o->paths, o->n_paths + 1, sizeof *o->paths);
        o->paths[o->n_paths++] = xstrdup(path);
        return 0;
    }
    d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "runnerctl exec: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if ((n > 4 && strcmp(de->d_name + n - 4, ".yml") == 0) ||
            (n > 5 && strcmp(de->d_name + n - 5, ".yaml") == 0)) {
            o->paths = xreallocarray(o->paths, o->n_paths + 1, sizeof *o->paths);
            o->paths[o->n_paths++] = xasprintf("%s/%s", path, de->d_name);
        }
    }
    closedir(d);
    qsort(o->paths + first, o->n_paths - first, sizeof *o->paths, cmp_str);
    if (o->n_paths == first) {
        fprintf(stderr, "runnerctl exec: %s: no *.yml or *.yaml workflow files\n", path);
        return -1;
    }
    return 0;
}

static bool
has_event(const struct wf_workflow *w, const char *name)
{
    for (size_t i = 0; i < w->n_events; i++)
        if (strcmp(w->events[i].name, name) == 0)
            return true;
    return false;
}

/* Plans one loaded workflow and prints the plan. Returns a CLI exit code. */
static int
plan_one(const struct exec_opts *o, const struct wf_workflow *w, json_t *event,
         const struct scm_info *scm, json_t *json_out, struct plan **keep)
{
    const char *ev_name = o->event_name;
    struct plan *p = NULL;
    struct err e = {0};
    json_t *github = NULL, *inputs = NULL;
    int rc;

    if (ev_name == NULL)
        ev_name = has_event(w, "push") || w->n_events == 0 ? "push" : w->events[0].name;
    else if (!has_event(w, ev_name)) {
        fprintf(stderr, "%s: not triggered by '%s'; skipped\n", w->file, ev_name);
        return -1;
    }
    struct ctx_github_opts go = {
        .event_name = ev_name,
        .event = event,
        .sha = scm->sha,
        .ref = scm->ref,
        .repository = scm->repository,
    };
    github = ctx_github_new(w, &go);
    inputs = ctx_inputs_new(w, ev_name, event);
    struct plan_opts po = {
        .event_name = ev_name,
        .github = github,
        .vars = o->vars,
        .secrets = o->secrets,
        .inputs = inputs,
        .only_job = o->job,
        .matrix_filter = o->matrix_filter,
    };
    rc = plan_new(w, &po, &p, &e);
    json_decref(github);
    json_decref(inputs);
    if (rc < 0) {
        /* The message may quote a value built from a secret given with -s (a job name, a
         * runs-on label): masked and escaped like everything runnerctl exec prints. */
        struct mask *m = mask_for_job(o->secrets, NULL);
        char *msg = mask_shown(m, e.msg);
        fprintf(stderr, "%s\n", msg);
        free(msg);
        mask_free(m);
        return CLI_EXIT_USAGE;
    }
    if (keep) {
        *keep = p;
        return CLI_EXIT_OK;
    }
    if (o->json)
        json_array_append_new(json_out, plan_to_json(p));
    else
        plan_print(p, stdout);
    plan_free(p);
    return CLI_EXIT_OK;
}

/* The actions/cache server of a local run (README.md, "Cache"): on unless --no-cache or the
 * configuration turns it off; blobs, index and key under the CLI's cache directory unless
 * runnerd.cache says otherwise. Tokens are for the local repository (its origin's owner/name,
 * else local/DIRNAME). Fills *co (its strings new, in paths) and *repo; false: no cache. */
static bool
cache_opts(const struct exec_opts *o, const struct config *cfg, const char *cache_dir,
           const struct scm_info *scm, struct jobcache_opts *co, char **repo, char *paths[3])
{
    const char *dir = cfg->runnerd.cache.dir;

    if (o->no_cache || !cfg->cache.enabled || !cfg->runnerd.cache.enabled)
        return false;
    co->dir = paths[0] = dir ? xstrdup(dir) : xasprintf("%s/actions-cache", cache_dir);
    co->db_path = paths[1] = xasprintf("%s/actions-cache.db", cache_dir);
    co->key_file = paths[2] = cfg->runnerd.cache.key_file
                                  ? xstrdup(cfg->runnerd.cache.key_file)
                                  : xasprintf("%s/actions-cache.key", cache_dir);
    co->create_key = cfg->runnerd.cache.key_file == NULL || cfg->runnerd.cache.external_url == NULL;
    co->external_url = cfg->runnerd.cache.external_url;
    co->max_size = cfg->runnerd.cache.max_size;
    co->max_age = (int64_t)cfg->runnerd.cache.max_age_s;
    co->port = cfg->cache.port;
    if (scm->repository) {
        *repo = xstrdup(scm->repository);
    } else {
        char *abs = realpath(o->workdir, NULL);
        const char *base = abs ? strrchr(abs, '/') : NULL;
        *repo = xasprintf("local/%s", base && base[1] ? base + 1 : "workspace");
        free(abs);
    }
    return true;
}

static int
exec_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"plan", no_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'J'},
        {"event", required_argument, NULL, 'e'},
        {"eventpath", required_argument, NULL, 'P'},
        {"event-path", required_argument, NULL, 'P'},
        {"label", required_argument, NULL, 'l'},
        {"env", required_argument, NULL, 'n'},
        {"workdir", required_argument, NULL, 'C'},
        {"bind", no_argument, NULL, 'b'},
        {"report", required_argument, NULL, 'r'},
        {"config", required_argument, NULL, 'c'},
        {"job", required_argument, NULL, 'j'},
        {"matrix", required_argument, NULL, 'm'},
        {"var", required_argument, NULL, 'v'},
        {"secret", required_argument, NULL, 's'},
        {"input", required_argument, NULL, 'i'},
        {"workflows", required_argument, NULL, 'W'},
        {"no-cache", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct exec_opts o = {
        .matrix_filter = json_object(),
        .vars = json_object(),
        .secrets = json_object(),
        .inputs = json_object(),
        .labels = json_object(),
        .env = json_object(),
    };
    struct scm_info scm = {0};
    struct plan **plans = NULL;
    size_t n_plans = 0;
    struct wf_workflow **wfs = NULL;
    size_t n_wfs = 0;
    json_t *event = NULL, *json_out = json_array();
    int c, rc = CLI_EXIT_OK, planned = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "e:E:j:s:W:l:C:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            o.plan = true;
            break;
        case 'J':
            o.json = true;
            break;
        case 'e':
        case 'E':
            o.event_name = optarg;
            break;
        case 'P':
            o.event_path = optarg;
            break;
        case 'l':
            if (put_pair(o.labels, optarg, '=', "--label") < 0)
                rc = CLI_EXIT_USAGE;
            break;
        case 'n':
            if (put_pair(o.env, optarg, '=', "--env") < 0)
                rc = CLI_EXIT_USAGE;
            break;
        case 'C':
            o.workdir = optarg;
            break;
        case 'b':
            o.bind = true;
            break;
        case 'N':
            o.no_cache = true;
            break;
        case 'r':
            o.report = optarg;
            break;
        case 'c':
            o.config = optarg;
            break;
        case 'j':
            o.job = optarg;
            break;
        case 'm': {
            json_t *tmp = json_object(), *list;
            if (put_pair(tmp, optarg, ':', "--matrix") < 0) {
                json_decref(tmp);
                rc = CLI_EXIT_USAGE;
                goto out;
            }
            const char *k;
            json_t *v;
            json_object_foreach(tmp, k, v) {
                list = json_object_get(o.matrix_filter, k);
                if (list == NULL) {
                    list = json_array();
                    json_object_set_new(o.matrix_filter, k, list);
                }
                json_array_append(list, v);
            }
            json_decref(tmp);
            break;
        }
        case 'v':
            if (put_pair(o.vars, optarg, '=', "--var") < 0)
                rc = CLI_EXIT_USAGE;
            break;
        case 's':
            if (strchr(optarg, '=') == NULL) {
                /* -s NAME: the value comes from the environment. */
                const char *v = getenv(optarg);
                if (v == NULL) {
                    fprintf(stderr, "runnerctl exec: secret %s: not set in the environment\n",
                            optarg);
                    rc = CLI_EXIT_USAGE;
                } else {
                    json_object_set_new(o.secrets, optarg, json_string(v));
                }
            } else if (put_pair(o.secrets, optarg, '=', "--secret") < 0) {
                rc = CLI_EXIT_USAGE;
            }
            break;
        case 'i':
            if (put_pair(o.inputs, optarg, '=', "--input") < 0)
                rc = CLI_EXIT_USAGE;
            break;
        case 'W':
            if (collect(&o, optarg) < 0)
                rc = CLI_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: runnerctl exec %s\n", exec_usage);
            goto out;
        default:
            fprintf(stderr, "usage: runnerctl exec %s\n", exec_usage);
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        if (rc != CLI_EXIT_OK)
            goto out;
    }
    for (int i = optind; i < argc; i++)
        if (collect(&o, argv[i]) < 0) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    if (o.workdir == NULL)
        o.workdir = ".";
    if (o.n_paths == 0) {
        char *d1 = xasprintf("%s/.gitea/workflows", o.workdir);
        char *d2 = xasprintf("%s/.github/workflows", o.workdir);
        struct stat st;
        int r = collect(&o, stat(d1, &st) == 0 ? d1 : d2);
        free(d1);
        free(d2);
        if (r < 0) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if (o.event_path) {
        json_error_t je;
        event = json_load_file(o.event_path, 0, &je);
        if (event == NULL || !json_is_object(event)) {
            fprintf(stderr, "%s:%d:%d: %s\n", o.event_path, je.line, je.column,
                    event ? "expected a JSON object" : je.text);
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    } else {
        event = json_object();
    }
    if (json_object_size(o.inputs) > 0)
        json_object_set(event, "inputs", o.inputs);
    scm_local_info(o.workdir, &scm, NULL); /* not a repository: act's defaults */

    for (size_t i = 0; i < o.n_paths; i++) {
        struct wf_workflow *w = NULL;
        struct wf_diag diag = {0};
        struct err e = {0};

        if (wf_load(o.paths[i], &w, &diag, &e) < 0) {
            if (diag.n == 0)
                fprintf(stderr, "%s\n", e.msg);
            for (size_t d = 0; d < diag.n; d++)
                fprintf(stderr, "%s\n", diag.msgs[d]);
            wf_diag_free(&diag);
            rc = CLI_EXIT_USAGE;
            continue;
        }
        wf_diag_free(&diag);
        struct plan *kept = NULL;
        int r = plan_one(&o, w, event, &scm, json_out, o.plan ? NULL : &kept);
        if (r > 0)
            rc = r;
        else if (r == 0)
            planned++;
        if (kept) {
            plans = xreallocarray(plans, n_plans + 1, sizeof *plans);
            plans[n_plans++] = kept;
            wfs = xreallocarray(wfs, n_wfs + 1, sizeof *wfs);
            wfs[n_wfs++] = w;
        } else {
            wf_free(w);
        }
    }
    if (rc == CLI_EXIT_OK && planned == 0) {
        fprintf(stderr, "runnerctl exec: no workflow is triggered by '%s'\n",
                o.event_name ? o.event_name : "push");
        rc = CLI_EXIT_FAIL;
    }
    if (!o.plan && rc == CLI_EXIT_OK && n_plans > 0) {
        struct config cfg;
        struct err ce = {0};

        config_defaults(&cfg);
        cfg.runner.capacity = 0; /* without a file: one run per CPU */
        if (o.config && config_load(o.config, &cfg, &ce) < 0) {
            fprintf(stderr, "%s\n", ce.msg);
            config_free(&cfg);
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        /* Capabilities no label of this configuration lets a workflow add are refused before
         * any job runs (the exact label's list is checked again when each job starts). */
        char **caps = xcalloc(1, sizeof *caps);
        size_t ncaps = 0;
        for (size_t i = 0; i < cfg.runnerd.n_profiles; i++)
            for (size_t k = 0; cfg.runnerd.profiles[i].cap_add && cfg.runnerd.profiles[i].cap_add[k]; k++) {
                caps = xreallocarray(caps, ncaps + 2, sizeof *caps);
                caps[ncaps++] = xstrdup(cfg.runnerd.profiles[i].cap_add[k]);
                caps[ncaps] = NULL;
            }
        for (size_t i = 0; i < n_wfs; i++) {
            struct wf_diag diag = {0};
            if (wf_check_caps(wfs[i], caps, &diag, &ce) < 0) {
                for (size_t d = 0; d < diag.n; d++)
                    fprintf(stderr, "%s\n", diag.msgs[d]);
                rc = CLI_EXIT_USAGE;
            }
            wf_diag_free(&diag);
        }
        xstrv_free(caps);
        if (rc != CLI_EXIT_OK) {
            config_free(&cfg);
            goto out;
        }
        /* The file's labels and envs, under what the command line says. */
        for (size_t i = 0; i < cfg.runner.n_labels; i++) {
            const struct config_label *l = &cfg.runner.labels[i];
            if (json_object_get(o.labels, l->name))
                continue;
            if (l->exec == CONFIG_EXEC_HOST) {
                json_object_set_new(o.labels, l->name, json_string("host"));
            } else {
                char *how = xasprintf("docker://%s", l->image);
                json_object_set_new(o.labels, l->name, json_string(how));
                free(how);
            }
        }
        /* Labels with settings (runnerd.labels) and an image run in docker with it. */
        for (size_t i = 0; i < cfg.runnerd.n_profiles; i++) {
            const struct config_profile *pf = &cfg.runnerd.profiles[i];
            if (pf->image == NULL || json_object_get(o.labels, pf->name))
                continue;
            char *how = xasprintf("docker://%s", pf->image);
            json_object_set_new(o.labels, pf->name, json_string(how));
            free(how);
        }
        json_t *env = json_copy(cfg.runner.envs);
        json_object_update(env, o.env);
        char *agent = executor_find_agent(argv[0]);
        char *cache = config_cache_dir(o.config ? &cfg : NULL, false);
        struct jobcache_opts co = {0};
        char *repo = NULL, *cache_paths[3] = {NULL, NULL, NULL};
        bool cache_on = cache_opts(&o, &cfg, cache, &scm, &co, &repo, cache_paths);
        struct runlocal_opts ro = {
            .cache_dir = cache,
            .git_ca_file = cfg.runnerd.git_ca_file,
            .actions_url = cfg.runnerd.actions_url,
            .node_image = cfg.runnerd.node_image,
            .github_mirror = cfg.runner.github_mirror,
            .labels = o.labels,
            .config_env = env,
            .capacity = cfg.runner.capacity,
            .container_options = cfg.container.options,
            .cfg = o.config ? &cfg : NULL,
            .secrets = o.secrets,
            .workdir = o.workdir,
            .bind = o.bind,
            .report_path = o.report,
            .agent_path = agent,
            .out = stdout,
            .color = isatty(STDOUT_FILENO),
            .cache = cache_on ? &co : NULL,
            .cache_repo = repo,
            .cache_ref = scm.ref ? scm.ref : "refs/heads/main",
            .cache_ttl_s = cfg.runner.timeout_s + 600,
        };
        if (isatty(STDOUT_FILENO))
            setvbuf(stdout, NULL, _IOLBF, 0); /* else fully buffered: one write per 4 KiB */
        rc = runlocal_run(plans, n_plans, &ro);
        for (int i = 0; i < 3; i++)
            free(cache_paths[i]);
        free(repo);
        free(agent);
        free(cache);
        json_decref(env);
        config_free(&cfg);
    }
    if (o.json && planned > 0) {
        char *s = json_dumps(json_out, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    }
out:
    for (size_t i = 0; i < n_plans; i++)
        plan_free(plans[i]);
    free(plans);
    for (size_t i = 0; i < n_wfs; i++)
        wf_free(wfs[i]);
    free(wfs);
    json_decref(o.labels);
    json_decref(o.env);
    for (size_t i = 0; i < o.n_paths; i++)
        free(o.paths[i]);
    free(o.paths);
    scm_info_free(&scm);
    json_decref(event);
    json_decref(json_out);
    json_decref(o.matrix_filter);
    json_decref(o.vars);
    json_decref(o.secrets);
    json_decref(o.inputs);
    return rc;
}

const struct cli_cmd cli_cmd_exec = {
    .name = "exec",
    .usage = exec_usage,
    .summary = "plan or run workflows locally, with the same engine as runnerd",
    .exec = exec_main,
};
