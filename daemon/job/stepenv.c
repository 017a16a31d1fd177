/* stepenv.c: step environment construction (see stepenv.h). */
#include "stepenv.h"

#include "expr.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

char *
stepenv_input_name(const char *key)
{
    char *s = xasprintf("INPUT_%s", key);

    for (char *p = s + 6; *p; p++) {
        unsigned char c = (unsigned char)toupper((unsigned char)*p);
        *p = (char)((isupper(c) || isdigit(c) || c == '-') && c < 0x80 ? c : '_');
    }
    return s;
}

char *
stepenv_image_os(const char *label)
{
    if (label == NULL)
        return xstrdup("");
    if (strcmp(label, "ubuntu-latest") == 0)
        return xstrdup("ubuntu20");
    struct buf b = BUF_INIT;
    bool dash_removed = false;
    for (const char *p = label; *p && *p != '.'; p++) {
        if (*p == '-' && !dash_removed) {
            dash_removed = true;
            continue;
        }
        buf_putc(&b, *p);
    }
    return buf_steal(&b);
}

static void
set_str(json_t *env, const char *k, const char *v)
{
    json_t *s = json_string(v ? v : "");

    json_object_set_new(env, k, s ? s : json_string(""));
}

/* Copies every member of src into env as strings. */
static void
merge(json_t *env, json_t *src)
{
    const char *k;
    json_t *v;

    if (!json_is_object(src))
        return;
    json_object_foreach(src, k, v) {
        if (json_is_string(v)) {
            json_object_set(env, k, v);
        } else {
            char *s = expr_to_string(v);
            set_str(env, k, s);
            free(s);
        }
    }
}

static const char *
gh(json_t *github, const char *k)
{
    const char *v = json_string_value(json_object_get(github, k));

    return v ? v : "";
}

json_t *
stepenv_build(const struct stepenv_in *in)
{
    json_t *env = json_object();
    static const char *const from_github[][2] = {
        {"GITHUB_WORKFLOW", "workflow"},       {"GITHUB_RUN_ATTEMPT", "run_attempt"},
        {"GITHUB_RUN_ID", "run_id"},           {"GITHUB_RUN_NUMBER", "run_number"},
        {"GITHUB_ACTOR", "actor"},             {"GITHUB_REPOSITORY", "repository"},
        {"GITHUB_EVENT_NAME", "event_name"},   {"GITHUB_EVENT_PATH", "event_path"},
        {"GITHUB_SHA", "sha"},                 {"GITHUB_REF", "ref"},
        {"GITHUB_REF_NAME", "ref_name"},       {"GITHUB_REF_TYPE", "ref_type"},
        {"GITHUB_JOB", "job"},                 {"GITHUB_REPOSITORY_OWNER", "repository_owner"},
        {"GITHUB_RETENTION_DAYS", "retention_days"}, {"RUNNER_PERFLOG", "runner_perflog"},
        {"RUNNER_TRACKING_ID", "runner_tracking_id"}, {"GITHUB_BASE_REF", "base_ref"},
        {"GITHUB_HEAD_REF", "head_ref"},       {"GITHUB_SERVER_URL", "server_url"},
        {"GITHUB_API_URL", "api_url"},         {"GITHUB_GRAPHQL_URL", "graphql_url"},
    };
    static const char *const files[][2] = {
        {"GITHUB_OUTPUT", "outputcmd.txt"}, {"GITHUB_STATE", "statecmd.txt"},
        {"GITHUB_PATH", "pathcmd.txt"},     {"GITHUB_ENV", "envs.txt"},
        {"GITHUB_STEP_SUMMARY", "SUMMARY.md"},
    };

    /* 0-2: the base (image) env, job env (with ACT=true) and the job container's env. */
    merge(env, in->base_env);
    merge(env, in->job_env);
    if (!json_object_get(env, "ACT"))
        set_str(env, "ACT", "true");
    merge(env, in->container_env);
    /* 3: the runner's variables override user values. */
    set_str(env, "CI", "true");
    set_str(env, "GITHUB_ACTIONS", "true");
    if (in->gitea)
        set_str(env, "GITEA_ACTIONS", "true");
    for (size_t i = 0; i < sizeof from_github / sizeof from_github[0]; i++)
        set_str(env, from_github[i][0], gh(in->github, from_github[i][1]));
    set_str(env, "GITHUB_ACTION", in->step_id);
    set_str(env, "GITHUB_ACTION_PATH", in->action_path);
    set_str(env, "GITHUB_ACTION_REPOSITORY", in->action_repository);
    set_str(env, "GITHUB_ACTION_REF", in->action_ref);
    set_str(env, "GITHUB_WORKSPACE", in->workspace);
    char *image_os = stepenv_image_os(in->label);
    set_str(env, "ImageOS", image_os);
    free(image_os);
    /* 4: a uses: step inherits no INPUT_ values. */
    if (in->uses) {
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(env, tmp, k, v) {
            if (strstr(k, "INPUT_"))
                json_object_del(env, k);
        }
    }
    /* 5: step env, then INPUT_* from with. */
    merge(env, in->step_env);
    if (in->uses && json_is_object(in->with)) {
        const char *k;
        json_t *v;
        json_object_foreach(in->with, k, v) {
            char *name = stepenv_input_name(k);
            json_t *one = json_object();
            json_object_set(one, name, v);
            merge(env, one);
            json_decref(one);
            free(name);
        }
    }
    /* 7: file commands and PATH. */
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = xasprintf("%s/%s", in->file_dir ? in->file_dir : "/var/run/act/workflow",
                            files[i][1]);
        set_str(env, files[i][0], p);
        free(p);
    }
    if (json_array_size(in->extra_path) > 0) {
        struct buf b = BUF_INIT;
        const char *base = json_string_value(json_object_get(env, "PATH"));
        size_t i;
        json_t *d;

        if (base == NULL)
            base = in->base_path ? in->base_path : DEFAULT_PATH;
        json_array_foreach(in->extra_path, i, d) {
            buf_printf(&b, "%s:", json_string_value(d) ? json_string_value(d) : "");
        }
        buf_puts(&b, base);
        set_str(env, "PATH", buf_str(&b));
        buf_free(&b);
    }
    return env;
}

char **
stepenv_to_envp(json_t *env)
{
    char **envp = xcalloc(json_object_size(env) + 1, sizeof *envp);
    size_t n = 0;
    const char *k;
    json_t *v;

    json_object_foreach(env, k, v) {
        envp[n++] = xasprintf("%s=%s", k, json_string_value(v) ? json_string_value(v) : "");
    }
    envp[n] = NULL;
    return envp;
}
