/* wf-on.c: the workflow's `on:` triggers: event names, each event's configuration as
 * GitHub's schema defines it (push filters, workflow_dispatch and workflow_call inputs, outputs
 * and secrets, schedule), into w->events. */
#include "wf-int.h"

#include "runner/xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Declarations: workflow_dispatch and workflow_call inputs, outputs, secrets; schedule entries */

/* One key of a declaration and its check. */
struct key_check {
    const char *key;
    void (*check)(struct wctx *c, const char *path, const struct ynode *n);
};

/* What a declaration (one input, output, secret or schedule entry) may hold. */
struct decl {
    const char *const *keys;        /* allowed keys, in the order messages list them */
    const struct key_check *checks; /* the checks, in the order they run; {NULL} ends */
    const char *required;           /* a key that must be there, or NULL */
    bool null_ok;                   /* may be null (a string input, a secret) */
};

/* A string without expressions; a string that may hold them. */
static void
check_text(struct wctx *c, const char *path, const struct ynode *n)
{
    wf_get_str(c, path, n, false, NULL);
}

static void
check_expr_text(struct wctx *c, const char *path, const struct ynode *n)
{
    wf_get_str(c, path, n, true, NULL);
}

/* workflow_dispatch.inputs.<id>.type, workflow_call.inputs.<id>.type */
static void
check_dispatch_type(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const types[] = {"string", "boolean", "choice", "number", "environment",
                                        NULL};

    wf_check_enum(c, path, n, types);
}

static void
check_call_type(struct wctx *c, const char *path, const struct ynode *n)
{
    static const char *const types[] = {"boolean", "number", "string", NULL};

    wf_check_enum(c, path, n, types);
}

/* workflow_dispatch.inputs.<id>.options: a sequence of strings */
static void
check_choices(struct wctx *c, const char *path, const struct ynode *n)
{
    if (n->kind != YNODE_SEQ)
        wf_problem_type(c, path, n, "a sequence");
    else
        wf_check_str_or_seq(c, path, n, false);
}

/* workflow_call.outputs.<id>.value: may name the jobs context */
static void
check_output_value(struct wctx *c, const char *path, const struct ynode *n)
{
    const struct expr_parse_opts *saved = wf_set_loc(c, &wf_loc_wf_output);

    wf_get_str(c, path, n, true, NULL);
    wf_set_loc(c, saved);
}

static const char *const dispatch_input_keys[] = {"description", "required", "default", "type",
                                                  "options", NULL};
static const struct key_check dispatch_input_checks[] = {
    {"type", check_dispatch_type}, {"required", wf_check_bool}, {"description", check_text},
    {"default", check_text},       {"options", check_choices},  {NULL, NULL}};
static const struct decl dispatch_input = {dispatch_input_keys, dispatch_input_checks, NULL, true};

static const char *const call_input_keys[] = {"description", "required", "default", "type",
                                              NULL};
static const struct key_check call_input_checks[] = {
    {"type", check_call_type}, {"required", wf_check_bool}, {"description", check_text},
    {"default", check_expr_text}, {NULL, NULL}};
static const struct decl call_input = {call_input_keys, call_input_checks, NULL, false};

static const char *const call_output_keys[] = {"description", "value", NULL};
static const struct key_check call_output_checks[] = {
    {"value", check_output_value}, {"description", check_text}, {NULL, NULL}};
static const struct decl call_output = {call_output_keys, call_output_checks, "value", false};

static const char *const call_secret_keys[] = {"description", "required", NULL};
static const struct key_check call_secret_checks[] = {
    {"required", wf_check_bool}, {"description", check_text}, {NULL, NULL}};
static const struct decl call_secret = {call_secret_keys, call_secret_checks, NULL, true};

static const char *const schedule_keys[] = {"cron", "timezone", NULL};
static const struct key_check schedule_checks[] = {{"cron", check_text}, {NULL, NULL}};
static const struct decl schedule = {schedule_keys, schedule_checks, "cron", false};

/* Checks one declaration (a mapping) against d. */
static void
check_decl(struct wctx *c, const char *path, const struct ynode *n, const struct decl *d)
{
    wf_check_keys(c, path, n, d->keys);
    for (const struct key_check *k = d->checks; k->key; k++) {
        const struct ynode *v = ynode_get(n, k->key);
        if (v == NULL) {
            if (d->required && strcmp(k->key, d->required) == 0)
                wf_problem(c, n->pos, "%s: missing required key '%s'", path, k->key);
            continue;
        }
        char *p = wf_path(path, k->key);
        k->check(c, p, v);
        free(p);
    }
}

/* Checks one entry id: declaration of a mapping (for wf_each_entry()). */
static void
check_decl_entry(struct wctx *c, const char *path, const struct ynode *k, const struct ynode *v,
                 const void *arg)
{
    const struct decl *d = arg;

    (void)k;
    if (v->kind == YNODE_MAP)
        check_decl(c, path, v, d);
    else if (!(d->null_ok && ynode_is_null(v)))
        wf_problem_type(c, path, v, "a mapping");
}

/* Checks a mapping id -> declaration. */
static void
check_id_map(struct wctx *c, const char *path, const struct ynode *n, const struct decl *d)
{
    if (n->kind != YNODE_MAP) {
        if (!ynode_is_null(n))
            wf_problem_type(c, path, n, "a mapping");
        return;
    }
    wf_each_entry(c, path, n, check_decl_entry, d);
}

/* The keys of an event's configuration that hold declarations. */
static const struct {
    const char *event, *key;
    const struct decl *decl;
} decl_keys[] = {
    {"workflow_dispatch", "inputs", &dispatch_input},
    {"workflow_call", "inputs", &call_input},
    {"workflow_call", "outputs", &call_output},
    {"workflow_call", "secrets", &call_secret},
};

/* ------------------------------------------------------------------------------------------ */
/* on:                                                                                        */

struct event_def {
    const char *name;
    const char *const *keys; /* allowed config keys */
};
static const char *const ev_push[] = {"branches", "branches-ignore", "tags", "tags-ignore",
                                      "paths", "paths-ignore", NULL};
static const char *const ev_pr[] = {"types", "branches", "branches-ignore", "paths",
                                    "paths-ignore", NULL};
static const char *const ev_types[] = {"types", NULL};
static const char *const ev_none[] = {NULL};
static const char *const ev_dispatch[] = {"inputs", NULL};
static const char *const ev_call[] = {"inputs", "outputs", "secrets", NULL};
static const char *const ev_run[] = {"workflows", "types", "branches", "branches-ignore", NULL};
static const char *const ev_merge[] = {"types", "branches", "branches-ignore", NULL};
static const char *const ev_image[] = {"types", "names", NULL};

/* Events whose configuration GitHub's schema defines. Other names are accepted with any
 * mapping, since Gitea adds events of its own. */
static const struct event_def events[] = {
    {"push", ev_push},
    {"pull_request", ev_pr},
    {"pull_request_target", ev_pr},
    {"workflow_dispatch", ev_dispatch},
    {"workflow_call", ev_call},
    {"workflow_run", ev_run},
    {"merge_group", ev_merge},
    {"image_version", ev_image},
    {"branch_protection_rule", ev_types},
    {"check_run", ev_types},
    {"check_suite", ev_types},
    {"discussion", ev_types},
    {"discussion_comment", ev_types},
    {"issue_comment", ev_types},
    {"issues", ev_types},
    {"label", ev_types},
    {"milestone", ev_types},
    {"project", ev_types},
    {"project_card", ev_types},
    {"project_column", ev_types},
    {"pull_request_comment", ev_types},
    {"pull_request_review", ev_types},
    {"pull_request_review_comment", ev_types},
    {"registry_package", ev_types},
    {"release", ev_types},
    {"repository_dispatch", ev_types},
    {"watch", ev_types},
    {"create", ev_none},
    {"delete", ev_none},
    {"deployment", ev_none},
    {"deployment_status", ev_none},
    {"fork", ev_none},
    {"gollum", ev_none},
    {"page_build", ev_none},
    {"public", ev_none},
    {"status", ev_none},
};

/* Checks one event's configuration. */
static void
check_event_config(struct wctx *c, const char *path, const char *name, const struct ynode *n)
{
    const struct event_def *def = NULL;

    if (strcmp(name, "schedule") == 0) {
        if (n->kind != YNODE_SEQ) {
            wf_problem_type(c, path, n, "a sequence of {cron: ...}");
            return;
        }
        for (size_t i = 0; i < n->n; i++) {
            const struct ynode *it = n->items[i];
            char *p = xasprintf("%s[%zu]", path, i);
            if (it->kind != YNODE_MAP)
                wf_problem_type(c, p, it, "a mapping");
            else
                check_decl(c, p, it, &schedule);
            free(p);
        }
        return;
    }
    if (ynode_is_null(n))
        return;
    if (n->kind != YNODE_MAP) {
        wf_problem_type(c, path, n, "a mapping");
        return;
    }
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (strcmp(events[i].name, name) == 0)
            def = &events[i];
    if (def == NULL) {
        wf_check_tree(c, path, n);
        return;
    }
    wf_check_keys(c, path, n, def->keys);
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        bool known = false;
        if (k->kind != YNODE_SCALAR)
            continue;
        for (size_t d = 0; def->keys[d] && !known; d++)
            known = strcmp(k->str, def->keys[d]) == 0;
        if (!known)
            continue; /* reported by wf_check_keys() */
        char *p = wf_path_key(path, k);
        size_t d = 0, nd = sizeof decl_keys / sizeof decl_keys[0];
        while (d < nd && (strcmp(decl_keys[d].key, k->str) != 0 ||
                          strcmp(decl_keys[d].event, name) != 0))
            d++;
        if (d < nd)
            check_id_map(c, p, v, decl_keys[d].decl);
        else if (!ynode_is_null(v))
            wf_check_str_or_seq(c, p, v, false);
        free(p);
    }
}

/* Adds an event to the workflow. */
static void
add_event(struct wf_workflow *w, const struct ynode *name, struct ynode *config)
{
    size_t n = w->n_events;

    if ((n & (n - 1)) == 0) /* 0, 1, 2, 4, ...: grow by doubling */
        w->events = xreallocarray(w->events, n ? n * 2 : 1, sizeof *w->events);
    w->events[w->n_events].name = xstrdup(name->str);
    w->events[w->n_events].pos = name->pos;
    w->events[w->n_events].config = config;
    w->n_events++;
}

/* Reads `on`: a string, a sequence of strings or a mapping event -> config. */
void
wf_read_on(struct wctx *c, struct wf_workflow *w, struct ynode *n)
{
    w->on = n;
    if (n->kind == YNODE_SCALAR) {
        if (ynode_is_null(n))
            wf_problem(c, n->pos, "on: expected an event name, a sequence or a mapping of events");
        else if (!wf_check_no_expr(c, "on", n))
            add_event(w, n, NULL);
        return;
    }
    if (n->kind == YNODE_SEQ) {
        for (size_t i = 0; i < n->n; i++) {
            const struct ynode *it = n->items[i];
            char *p = xasprintf("on[%zu]", i);
            if (it->kind != YNODE_SCALAR || ynode_is_null(it))
                wf_problem_type(c, p, it, "an event name");
            else if (!wf_check_no_expr(c, p, it))
                add_event(w, it, NULL);
            free(p);
        }
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i];
        struct ynode *v = n->items[i];
        if (k->kind != YNODE_SCALAR) {
            wf_problem(c, k->pos, "on: expected an event name, got %s", ynode_kind_name(k));
            continue;
        }
        if (wf_check_no_expr(c, "on", k))
            continue;
        char *p = wf_path_key("on", k);
        check_event_config(c, p, k->str, v);
        free(p);
        add_event(w, k, ynode_is_null(v) ? NULL : v);
    }
}
