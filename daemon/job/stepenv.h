/* stepenv.h: a step's environment (doc/workflow-semantics.md §7): job env, container env, the
 * runner's GITHUB_* variables (which override user values), step env, INPUT_* from `with`,
 * the file-command variables, and PATH with GITHUB_PATH entries prepended. */
#ifndef STEPENV_H
#define STEPENV_H

#include <jansson.h>
#include <stdbool.h>

struct stepenv_in {
    json_t *base_env;      /* where steps run: the image's env, RUNNER_*, LANG (lowest) */
    json_t *job_env;       /* workflow env < job env < config env, plus GITHUB_ENV updates */
    json_t *container_env; /* the job's container.env, or NULL */
    json_t *github;        /* the github context */
    const char *step_id;   /* GITHUB_ACTION */
    const char *action_path, *action_repository, *action_ref; /* may be NULL */
    const char *workspace; /* GITHUB_WORKSPACE */
    const char *label;     /* the runs-on label used, for ImageOS (may be NULL) */
    json_t *step_env;      /* the step's evaluated env (object) or NULL */
    json_t *with;          /* the step's evaluated with (object) or NULL */
    bool uses;             /* a uses: step (inherited INPUT_* are dropped) */
    json_t *extra_path;    /* array of directories, newest first, or NULL */
    const char *base_path; /* the image's PATH; NULL: the usual default */
    const char *file_dir;  /* where the file-command files live, e.g. /var/run/act/workflow */
    bool gitea;            /* add GITEA_ACTIONS=true */
};

/* Returns a new object NAME -> value (all strings). */
json_t *stepenv_build(const struct stepenv_in *in);

/* Returns a new string: INPUT_ + key upper-cased with every char outside A-Z 0-9 - as '_'. */
char *stepenv_input_name(const char *key);

/* Returns the ImageOS value for a label (ubuntu-latest -> ubuntu20, ubuntu-22.04 -> ubuntu22). */
char *stepenv_image_os(const char *label);

/* Returns a new NULL-terminated array of "NAME=value" strings (free each and the array). */
char **stepenv_to_envp(json_t *env);

#endif
