/* ctx.c: contexts for expressions, as JSON objects (doc/workflow-semantics.md §6). */
#include "ctx.h"

#include "runner/xalloc.h"

#include <string.h>
#include <strings.h>

/* Returns the string at a dotted path in obj, or NULL. */
static const char *
jstr(json_t *obj, const char *path)
{
    char *dup = xstrdup(path), *save = NULL;
    json_t *cur = obj;
    const char *res = NULL;

    for (char *tok = strtok_r(dup, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur = json_is_object(cur) ? json_object_get(cur, tok) : NULL;
    if (json_is_string(cur))
        res = json_string_value(cur);
    free(dup);
    return res;
}

static bool
starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* The ref act derives from the event (run_context.go getGithubContext). */
static char *
derive_ref(const char *ev_name, json_t *ev, const char *default_branch)
{
    const char *r = NULL;

    if (strcmp(ev_name, "pull_request_target") == 0) {
        r = jstr(ev, "pull_request.base.ref");
        if (r)
            return xasprintf("refs/heads/%s", r);
    } else if (starts(ev_name, "pull_request")) {
        json_t *num = json_object_get(ev, "number");
        if (json_is_integer(num))
            return xasprintf("refs/pull/%lld/merge", (long long)json_integer_value(num));
    } else if (starts(ev_name, "deployment")) {
        r = jstr(ev, "deployment.ref");
    } else if (strcmp(ev_name, "release") == 0) {
        r = jstr(ev, "release.tag_name");
        if (r)
            return xasprintf("refs/tags/%s", r);
    } else if (strcmp(ev_name, "push") == 0 || strcmp(ev_name, "create") == 0 ||
               strcmp(ev_name, "workflow_dispatch") == 0) {
        r = jstr(ev, "ref");
    } else {
        r = jstr(ev, "repository.default_branch");
        if (r)
            return xasprintf("refs/heads/%s", r);
    }
    if (r && *r)
        return xstrdup(r);
    return xasprintf("refs/heads/%s", default_branch);
}

static const char *
derive_sha(const char *ev_name, json_t *ev)
{
    if (strcmp(ev_name, "pull_request_target") == 0)
        return jstr(ev, "pull_request.base.sha");
    if (starts(ev_name, "deployment"))
        return jstr(ev, "deployment.sha");
    if (strcmp(ev_name, "push") == 0 || strcmp(ev_name, "create") == 0 ||
        strcmp(ev_name, "workflow_dispatch") == 0) {
        if (!json_is_true(json_object_get(ev, "deleted")))
            return jstr(ev, "after");
    }
    return NULL;
}

static const char *
or_default(const char *v, const char *def)
{
    return v && *v ? v : def;
}

json_t *
ctx_github_new(const struct wf_workflow *w, const struct ctx_github_opts *o)
{
    static const struct ctx_github_opts none;
    json_t *g = json_object(), *ev;
    const char *ev_name, *repo, *sha, *server, *slash;
    char *ref, *api = NULL, *graphql = NULL;

    if (o == NULL)
        o = &none;
    ev_name = or_default(o->event_name, "push");
    ev = o->event ? json_incref(o->event) : json_object();
    repo = or_default(o->repository, "nektos/act");
    ref = o->ref && *o->ref ? xstrdup(o->ref)
                            : derive_ref(ev_name, ev, or_default(o->default_branch, "master"));
    sha = o->sha && *o->sha ? o->sha : derive_sha(ev_name, ev);
    server = or_default(o->server_url, "https://github.com");
    if (strcmp(server, "https://github.com") == 0) {
        api = xstrdup("https://api.github.com");
        graphql = xstrdup("https://api.github.com/graphql");
    } else {
        api = xasprintf("%s/api/v3", server);
        graphql = xasprintf("%s/api/graphql", server);
    }

    json_object_set_new(g, "event", ev);
    json_object_set_new(g, "event_path", json_string("/var/run/act/workflow/event.json"));
    json_object_set_new(g, "event_name", json_string(ev_name));
    json_object_set_new(g, "workflow", json_string(w && w->name.v ? w->name.v : ""));
    json_object_set_new(g, "run_id", json_string(or_default(o->run_id, "1")));
    json_object_set_new(g, "run_number", json_string(or_default(o->run_number, "1")));
    json_object_set_new(g, "run_attempt", json_string(or_default(o->run_attempt, "1")));
    json_object_set_new(g, "retention_days", json_string("0"));
    json_object_set_new(g, "actor", json_string(or_default(o->actor, "nektos/act")));
    json_object_set_new(g, "repository", json_string(repo));
    slash = strchr(repo, '/');
    json_object_set_new(g, "repository_owner",
                        json_stringn(repo, slash ? (size_t)(slash - repo) : strlen(repo)));
    json_object_set_new(g, "sha", json_string(sha ? sha : ""));
    json_object_set_new(g, "ref", json_string(ref));
    if (starts(ref, "refs/tags/")) {
        json_object_set_new(g, "ref_type", json_string("tag"));
        json_object_set_new(g, "ref_name", json_string(ref + strlen("refs/tags/")));
    } else if (starts(ref, "refs/heads/")) {
        json_object_set_new(g, "ref_type", json_string("branch"));
        json_object_set_new(g, "ref_name", json_string(ref + strlen("refs/heads/")));
    } else if (starts(ref, "refs/pull/")) {
        json_object_set_new(g, "ref_type", json_string(""));
        json_object_set_new(g, "ref_name", json_string(ref + strlen("refs/pull/")));
    } else {
        json_object_set_new(g, "ref_type", json_string(""));
        json_object_set_new(g, "ref_name", json_string(ref));
    }
    if (starts(ev_name, "pull_request")) {
        json_object_set_new(g, "base_ref", json_string(or_default(jstr(ev, "pull_request.base.ref"), "")));
        json_object_set_new(g, "head_ref", json_string(or_default(jstr(ev, "pull_request.head.ref"), "")));
    } else {
        json_object_set_new(g, "base_ref", json_string(""));
        json_object_set_new(g, "head_ref", json_string(""));
    }
    json_object_set_new(g, "token", json_string(or_default(o->token, "")));
    json_object_set_new(g, "workspace", json_string(or_default(o->workspace, "")));
    json_object_set_new(g, "action", json_string(""));
    json_object_set_new(g, "action_path", json_string(""));
    json_object_set_new(g, "action_ref", json_string(""));
    json_object_set_new(g, "action_repository", json_string(""));
    json_object_set_new(g, "job", json_string(""));
    json_object_set_new(g, "job_name", json_string(""));
    json_object_set_new(g, "runner_perflog", json_string("/dev/null"));
    json_object_set_new(g, "runner_tracking_id", json_string(""));
    json_object_set_new(g, "server_url", json_string(server));
    json_object_set_new(g, "api_url", json_string(api));
    json_object_set_new(g, "graphql_url", json_string(graphql));
    free(ref);
    free(api);
    free(graphql);
    return g;
}

json_t *
ctx_inputs_new(const struct wf_workflow *w, const char *event_name, json_t *event)
{
    json_t *inputs = json_object();
    json_t *given = json_object_get(event, "inputs");

    if (w == NULL || event_name == NULL)
        return inputs;
    for (size_t i = 0; i < w->n_events; i++) {
        const struct wf_event *ev = &w->events[i];
        const struct ynode *decl;

        if (strcmp(ev->name, event_name) != 0 ||
            (strcmp(event_name, "workflow_dispatch") != 0 &&
             strcmp(event_name, "workflow_call") != 0))
            continue;
        decl = ev->config ? ynode_get(ev->config, "inputs") : NULL;
        if (decl == NULL || decl->kind != YNODE_MAP)
            continue;
        for (size_t j = 0; j < decl->n; j++) {
            const char *id = decl->keys[j]->str;
            const struct ynode *spec = decl->items[j];
            const struct ynode *type = spec->kind == YNODE_MAP ? ynode_get(spec, "type") : NULL;
            const struct ynode *def = spec->kind == YNODE_MAP ? ynode_get(spec, "default") : NULL;
            json_t *v = json_object_get(given, id);

            if (type && type->kind == YNODE_SCALAR && strcmp(type->str, "boolean") == 0) {
                /* act compares the text with "true"; a JSON true is taken as true too. */
                bool t = v ? (json_is_true(v) || (json_is_string(v) &&
                                                   strcmp(json_string_value(v), "true") == 0))
                           : (def && def->kind == YNODE_SCALAR && strcmp(def->str, "true") == 0);
                v = json_boolean(t);
            } else {
                v = v ? json_incref(v) : def ? ynode_to_json(def) : json_string("");
            }
            json_object_set_new(inputs, id, v);
        }
    }
    return inputs;
}

const char *
ctx_arch_name(const char *m)
{
    if (m == NULL)
        return "X64";
    if (strcmp(m, "x86_64") == 0 || strcmp(m, "amd64") == 0)
        return "X64";
    if (strcmp(m, "386") == 0 || strcmp(m, "i386") == 0 || strcmp(m, "i686") == 0)
        return "X86";
    if (strcmp(m, "aarch64") == 0 || strcmp(m, "arm64") == 0)
        return "ARM64";
    if (starts(m, "arm"))
        return "ARM";
    return m;
}

json_t *
ctx_runner_new(const char *name, const char *arch, const char *temp, const char *tool_cache)
{
    json_t *r = json_object();

    json_object_set_new(r, "os", json_string("Linux"));
    json_object_set_new(r, "arch", json_string(ctx_arch_name(arch)));
    json_object_set_new(r, "name", json_string(or_default(name, "runnerd")));
    json_object_set_new(r, "environment", json_string("self-hosted"));
    json_object_set_new(r, "temp", json_string(or_default(temp, "/tmp")));
    json_object_set_new(r, "tool_cache", json_string(or_default(tool_cache, "/opt/hostedtoolcache")));
    return r;
}

json_t *
ctx_strategy_new(bool fail_fast, int max_parallel, int job_index, int job_total)
{
    json_t *s = json_object();

    json_object_set_new(s, "fail-fast", json_boolean(fail_fast));
    json_object_set_new(s, "max-parallel", json_integer(max_parallel));
    json_object_set_new(s, "job-index", json_integer(job_index));
    json_object_set_new(s, "job-total", json_integer(job_total));
    return s;
}
