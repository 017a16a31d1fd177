/* jobaction.c: the uses: steps of a job run (workflow-semantics.md §12, §9.5):
 * actions/checkout natively with libgit2 (scm.h) through the runner's mirror cache, remote
 * actions fetched into the action cache, local actions read where the steps run, node and
 * docker actions, and the post stages of node actions (reverse order, after the last step).
 *
 * Files reach the steps with executor_put_dir(): an upload into the job container, or a copy
 * on the host. Everything slow (fetching, checking out, packing) runs off the loop. */
#include "action.h"
#include "actbuild.h"
#include "dockeropts.h"
#include "expr.h"
#include "fstree.h"
#include "jobrun-int.h"
#include "runner/xalloc.h"
#include "scm.h"
#include "shell.h"
#include "stepenv.h"
#include "yeval.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CAPTURE_MAX (1u << 20) /* an action.yml read back through the agent */

enum act_stage {
    ST_NONE,
    ST_FETCH,    /* scm: the action or the checkout */
    ST_PREP,     /* the agent makes (and for a checkout, empties) the destination */
    ST_PUT,      /* executor_put_dir() */
    ST_LOAD,     /* reading a fetched action's action.yml (off the loop) */
    ST_READ,     /* the agent prints a local action's action.yml */
    ST_CTX,      /* the job container sends a local docker action's files */
    ST_BUILD,    /* the engine builds a docker action's image from its Dockerfile */
};

struct jr_action {
    enum act_stage stage;
    bool checkout;
    char *uses;            /* interpolated */
    struct action_ref ref;
    struct action *act;
    char *dir;             /* the action's directory as the steps see it */
    char *host_dir;        /* remote: its directory on the host */
    char *sha;             /* resolved commit */
    char *image_id;        /* a docker action built from its Dockerfile: the image */
    char *ref_name;        /* checkout: the ref output */
    struct scm_job *scm;
    struct actbuild *build;
    char *tmp;             /* checkout: a directory on the host, removed afterwards */
    char *src, *dest;      /* the copy in ST_PREP/ST_PUT */
    bool clean;
    struct buf cap;        /* stdout of an agent run */
    bool cap_over;
    bool cancelled;        /* stop at the next point */
    bool pre;              /* fetched for its pre stage, before the job's first step */
};

static void action_ready(struct jobrun *jr);
static void add_input_env(json_t *env, json_t *inputs);
static void add_state_env(struct jobrun *jr, json_t *env, const char *id);
static void pre_stage(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with,
                      json_t *inputs);
static void docker_stage(struct jobrun *jr, json_t *p);
static void dockerfile_start(struct jobrun *jr);

/* Where the action machinery's lines go: the step's log, or before the first step (pre
 * stages) the job's. */
static int
log_step(struct jobrun *jr)
{
    return jr->act && jr->act->pre ? -1 : (int)jr->cur;
}

/* ---------------------------------------------------------------- helpers */

static void
remove_work(uv_work_t *w)
{
    struct err e = {0};

    fstree_remove(w->data, &e);
}

static void
remove_after(uv_work_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

/* Removes a host directory off the loop; nothing waits for it. */
static void
remove_later(struct jobrun *jr, const char *path)
{
    uv_work_t *w = xcalloc(1, sizeof *w);

    w->data = xstrdup(path);
    if (uv_queue_work(jr->loop, w, remove_work, remove_after) < 0)
        remove_after(w, 0);
}

static void
act_free(struct jr_action *a)
{
    if (a == NULL)
        return;
    free(a->uses);
    action_ref_free(&a->ref);
    action_free(a->act);
    free(a->dir);
    free(a->host_dir);
    free(a->sha);
    free(a->image_id);
    free(a->ref_name);
    free(a->tmp);
    free(a->src);
    free(a->dest);
    buf_free(&a->cap);
    free(a);
}

void
jr_action_free(struct jobrun *jr)
{
    act_free(jr->act); /* never busy here: finish_job() waits for it */
    jr->act = NULL;
}

bool
jr_action_busy(struct jobrun *jr)
{
    return jr->act && (jr->act->scm || jr->act->build || jr->act->stage == ST_PUT ||
                       jr->act->stage == ST_LOAD || jr->act->stage == ST_CTX);
}

/* A fetch or a copy landed after the job ended (the agent was lost): finish the close that
 * finish_job() left. True when that is what happened. */
static bool
landed_closing(struct jobrun *jr)
{
    if (jr->phase != PH_CLOSING)
        return false;
    if (jr->act && jr->act->tmp)
        remove_later(jr, jr->act->tmp);
    act_free(jr->act);
    jr->act = NULL;
    executor_close(jr->x);
    return true;
}

/* Ends the action step: the step's own result. For a pre stage's fetch, the job goes on
 * looking for pre stages; a failure there fails the job before any step runs (act's "Set up
 * job"). */
static void
act_end(struct jobrun *jr, bool ok)
{
    bool pre = jr->act && jr->act->pre;

    if (jr->act && jr->act->tmp)
        remove_later(jr, jr->act->tmp);
    act_free(jr->act);
    jr->act = NULL;
    if (pre) {
        if (!ok)
            jr->job_failed = jr->pre_failed = true;
        jr->phase = PH_STEPS;
        jr_next_step(jr);
        return;
    }
    jr->phase = PH_RUNNING;
    jr_end_step(jr, ok);
}

static void
act_fail(struct jobrun *jr, const char *msg)
{
    jr_emit(jr, log_step(jr), JOBRUN_ERROR, msg, strlen(msg));
    act_end(jr, false);
}

static void __attribute__((format(printf, 2, 3)))
act_failf(struct jobrun *jr, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    act_fail(jr, msg);
}

/* A with value as a string: strings as they are, numbers and booleans as text; NULL when
 * absent, null or empty. */
static char *
with_str(json_t *with, const char *key)
{
    json_t *v = json_object_get(with, key);
    char *s = v ? expr_to_string(v) : NULL;

    if (s && *s == '\0') {
        free(s);
        s = NULL;
    }
    return s;
}

static bool
with_bool(json_t *with, const char *key, bool def)
{
    char *s = with_str(with, key);
    bool v = def;

    if (s)
        v = strcasecmp(s, "true") == 0;
    free(s);
    return v;
}

static const char *
gh_str(json_t *ctx, const char *key)
{
    const char *s = json_string_value(json_object_get(json_object_get(ctx, "github"), key));

    return s && *s ? s : NULL;
}

static void
scm_progress(void *arg, const char *line)
{
    struct jobrun *jr = arg;

    jr_emit(jr, log_step(jr), JOBRUN_INFO, line, strlen(line));
}

/* Runs a small shell command through the agent as part of the action step. */
static int
agent_sh(struct jobrun *jr, const char *script, const char *a1, const char *a2, struct err *e)
{
    const char *argv[] = {"/bin/sh", "-c", script, a1, a2};
    const char *path = json_string_value(json_object_get(jr->x->base_env, "PATH"));
    char *penv = xasprintf("PATH=%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
    const char *env[] = {penv};
    struct agentconn_run r = {.step = JR_ACT_STEP, .argv = argv, .argc = a2 ? 5 : a1 ? 4 : 3,
                              .env = env, .envc = 1, .cwd = jr->x->workspace,
                              .dir = jr->x->file_dir};
    int rc;

    buf_reset(&jr->act->cap);
    jr->act->cap_over = false;
    rc = agentconn_run(jr->x->conn, &r, e);
    free(penv);
    return rc;
}

/* ---------------------------------------------------------------- copying files in */

static void
put_done(void *arg, int rc, const struct err *e)
{
    struct jobrun *jr = arg;
    struct jr_action *a = jr->act;

    a->stage = ST_NONE;
    if (landed_closing(jr))
        return;
    if (rc < 0) {
        act_failf(jr, "uses: %s: copying files to %s failed: %s", a->uses, a->dest,
                  e ? e->msg : "");
        return;
    }
    if (a->cancelled) {
        act_fail(jr, "The step was cancelled.");
        return;
    }
    if (a->checkout) {
        json_object_set_new(jr->cur_outputs, "commit", json_string(a->sha ? a->sha : ""));
        json_object_set_new(jr->cur_outputs, "ref", json_string(a->ref_name ? a->ref_name : ""));
        jr_emitf(jr, log_step(jr), JOBRUN_INFO, "Checked out %s into %s", a->sha ? a->sha : "",
                 a->dest);
        act_end(jr, true);
        return;
    }
    /* Once in the job, a fetched action's files serve its later uses (only when all came). */
    json_object_set_new(json_object_get(jr->fetched, a->uses), "copied", json_true());
    action_ready(jr);
}

/* Makes dest where the steps run (emptied first when clean), then copies src (host) into it. */
static void
prep_and_put(struct jobrun *jr, const char *src, const char *dest, bool clean)
{
    static const char script[] =
        "mkdir -p \"$0\" || exit 1; "
        "if [ \"$1\" = true ]; then cd \"$0\" && rm -rf ./* ./.[!.]* ./..?* || exit 1; fi; exit 0";
    struct jr_action *a = jr->act;
    struct err e = {0};
    char *s = xstrdup(src), *d = xstrdup(dest); /* either may be a->src or a->dest */

    free(a->src);
    free(a->dest);
    a->src = s;
    a->dest = d;
    a->clean = clean;
    a->stage = ST_PREP;
    if (agent_sh(jr, script, a->dest, clean ? "true" : "false", &e) < 0)
        act_failf(jr, "uses: %s: %s", a->uses, e.msg);
}

static void
prep_exited(struct jobrun *jr, const struct agentp_msg *m)
{
    struct jr_action *a = jr->act;
    struct err e = {0};

    if (a->cancelled) {
        act_fail(jr, "The step was cancelled.");
        return;
    }
    if (m->exit_code != 0) {
        act_failf(jr, "uses: %s: cannot %s %s where the steps run (exit %d)", a->uses,
                  a->clean ? "empty" : "make", a->dest, m->exit_code);
        return;
    }
    a->stage = ST_PUT;
    if (executor_put_dir(jr->x, a->src, a->dest, put_done, jr, &e) < 0)
        act_failf(jr, "uses: %s: %s", a->uses, e.msg);
}

/* A checkout or an action fetch landed: true when the step is over (or the job is closing). */
static bool
scm_landed(struct jobrun *jr, int rc, const struct err *e)
{
    struct jr_action *a = jr->act;

    a->scm = NULL;
    if (landed_closing(jr))
        return true;
    if (rc == -ECANCELED || rc == ERR_CANCELED) {
        act_fail(jr, "The step was cancelled.");
        return true;
    }
    if (rc < 0) {
        act_failf(jr, "%s%s: %s", a->checkout ? "" : "uses: ", a->uses,
                  e ? e->msg : "fetching failed");
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------- actions/checkout */

static bool
is_checkout(const char *uses)
{
    return strncasecmp(uses, "actions/checkout@", 17) == 0;
}

static void
checked_out(void *arg, int rc, const struct err *e, const char *dir, const char *sha)
{
    struct jobrun *jr = arg;
    struct jr_action *a = jr->act;

    (void)dir;
    if (scm_landed(jr, rc, e))
        return;
    a->sha = xstrdup(sha ? sha : "");
    char *tree = xasprintf("%s/tree", a->tmp);
    prep_and_put(jr, tree, a->dest, a->clean);
    free(tree);
}

static void
checkout_start(struct jobrun *jr, json_t *ctx)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = jr->act;
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr),
                          .hash_files = jr_hash_files, .arg = jr};
    json_t *with = NULL;
    struct err e = {0};
    char *repository = NULL, *ref = NULL, *token = NULL, *path = NULL, *depth = NULL;
    char *submodules = NULL, *url = NULL, *base = NULL;
    const char *self = gh_str(ctx, "repository"), *server = gh_str(ctx, "server_url");

    if (yeval_node(jr_file(jr), s->with, &ee, &with, &e) < 0) {
        act_fail(jr, e.msg);
        return;
    }
    repository = with_str(with, "repository");
    ref = with_str(with, "ref");
    bool same_repo = repository == NULL || (self && strcmp(repository, self) == 0);
    /* runnerctl exec: the workspace already is the local repository (act's shortcut). */
    if (!jr->gitea && jr->xjob.source && same_repo &&
        (ref == NULL || (gh_str(ctx, "ref") && strcmp(ref, gh_str(ctx, "ref")) == 0))) {
        jr_emitf(jr, log_step(jr), JOBRUN_INFO,
                 "%s: the workspace already holds the local repository", a->uses);
        act_end(jr, true);
        goto out;
    }
    if (jr->cache_dir == NULL) {
        act_failf(jr, "%s: no cache directory for git mirrors is configured", a->uses);
        goto out;
    }
    if (repository == NULL && self == NULL) {
        act_failf(jr, "%s: no repository: set with.repository (github.repository is empty)",
                  a->uses);
        goto out;
    }
    if (repository && strstr(repository, "://")) {
        url = xstrdup(repository);
    } else {
        if (server == NULL) {
            act_failf(jr, "%s: github.server_url is empty: cannot tell where %s lives", a->uses,
                      repository ? repository : self);
            goto out;
        }
        size_t l = strlen(server);
        while (l && server[l - 1] == '/')
            l--;
        url = xasprintf("%.*s/%s", (int)l, server, repository ? repository : self);
    }
    token = with_str(with, "token");
    if (token == NULL && gh_str(ctx, "token"))
        token = xstrdup(gh_str(ctx, "token"));
    if (token && !action_same_origin(url, server)) {
        free(token); /* the task's token goes to its own instance only */
        token = NULL;
    }
    if (token)
        mask_add(jr->mask, token);
    path = with_str(with, "path");
    if (path && (path[0] == '/' || strstr(path, ".."))) {
        act_failf(jr, "%s: with.path must be a relative path inside the workspace, not '%s'",
                  a->uses, path);
        goto out;
    }
    a->dest = path ? xasprintf("%s/%s", jr->x->workspace, path) : xstrdup(jr->x->workspace);
    a->clean = with_bool(with, "clean", true);
    depth = with_str(with, "fetch-depth");
    submodules = with_str(with, "submodules");
    const char *sha = NULL;
    if (same_repo && ref == NULL) {
        sha = gh_str(ctx, "sha");
        if (sha && strspn(sha, "0") == strlen(sha))
            sha = NULL; /* no commit (a double's or an event's placeholder): the ref's head */
        if (gh_str(ctx, "ref"))
            ref = xstrdup(gh_str(ctx, "ref"));
    }
    a->ref_name = ref ? xstrdup(ref) : NULL;
    base = xasprintf("%s/tmp", jr->cache_dir);
    if ((mkdir(jr->cache_dir, 0700) < 0 && errno != EEXIST) ||
        (mkdir(base, 0700) < 0 && errno != EEXIST)) {
        act_failf(jr, "%s: cannot make %s: %s", a->uses, base, strerror(errno));
        goto out;
    }
    a->tmp = xasprintf("%s/checkout-XXXXXX", base);
    if (mkdtemp(a->tmp) == NULL) {
        free(a->tmp);
        a->tmp = NULL;
        act_failf(jr, "%s: cannot make a directory under %s: %s", a->uses, base,
                  strerror(errno));
        goto out;
    }
    char *tree = xasprintf("%s/tree", a->tmp);
    struct scm_checkout_req req = {
        .cache_dir = jr->cache_dir,
        .remote = {.url = url, .token = token, .ca_file = jr->git_ca_file,
                   .insecure = jr->git_insecure && action_same_origin(url, server)},
        .ref = ref, .sha = sha, .dest = tree,
        .fetch_depth = depth ? atoi(depth) : 1,
        .submodules = submodules && (strcasecmp(submodules, "true") == 0 ||
                                     strcasecmp(submodules, "recursive") == 0),
        .recursive = submodules && strcasecmp(submodules, "recursive") == 0,
        .lfs = with_bool(with, "lfs", false),
        .persist_credentials = with_bool(with, "persist-credentials", true),
    };
    jr_emitf(jr, log_step(jr), JOBRUN_INFO, "Checking out %s%s%s", url, ref ? " at " : "",
             ref ? ref : "");
    a->stage = ST_FETCH;
    if (scm_checkout_start(jr->loop, &req, scm_progress, checked_out, jr, &a->scm, &e) < 0)
        act_failf(jr, "%s: %s", a->uses, e.msg);
    free(tree);
out:
    json_decref(with);
    free(repository);
    free(ref);
    free(token);
    free(path);
    free(depth);
    free(submodules);
    free(url);
    free(base);
}

/* ---------------------------------------------------------------- remote and local actions */

/* Reading a fetched action's action.yml (a file on the host: off the loop), beneath the
 * exported repository root: a symlink in the action never makes the host read its own files. */
struct load_work {
    uv_work_t w;
    struct jobrun *jr;
    char *root, *sub, *what; /* sub: the reference's sub-path or NULL */
    struct action *act;
    int rc;
    struct err e;
};

static void
load_work(uv_work_t *w)
{
    struct load_work *l = w->data;

    l->rc = action_load_beneath(l->root, l->sub, l->what, &l->act, &l->e);
}

static void
load_after(uv_work_t *w, int status)
{
    struct load_work *l = w->data;
    struct jobrun *jr = l->jr;
    struct jr_action *a = jr->act;

    a->stage = ST_NONE;
    if (status < 0 && l->rc == 0)
        l->rc = err_set(&l->e, ERR_CANCELED, "reading the action was cancelled");
    if (!landed_closing(jr)) {
        if (l->rc < 0) {
            act_fail(jr, l->e.msg);
        } else {
            a->act = l->act;
            l->act = NULL;
            json_t *seen = json_object_get(jr->fetched, a->uses);
            const char *sub = a->ref.path && *a->ref.path ? a->ref.path : NULL;
            if (jr->x->container && a->act->using != ACTION_DOCKER) {
                /* The action's files go where the steps run (§12.4): node scripts, and the
                 * scripts a composite's steps call through github.action_path. The whole
                 * repository goes: an action in a sub-path may use files beside it. */
                char *root = xasprintf("/var/run/act/actions/%s", a->ref.cache_name);
                a->dir = sub ? xasprintf("%s/%s", root, sub) : xstrdup(root);
                if (!json_is_true(json_object_get(seen, "copied"))) {
                    prep_and_put(jr, json_string_value(json_object_get(seen, "dir")), root,
                                 true);
                } else {
                    action_ready(jr);
                }
                free(root);
            } else {
                a->dir = xstrdup(a->host_dir);
                action_ready(jr);
            }
        }
    }
    action_free(l->act);
    free(l->root);
    free(l->sub);
    free(l->what);
    free(l);
}

static void
fetched(void *arg, int rc, const struct err *e, const char *dir, const char *sha)
{
    struct jobrun *jr = arg;
    struct jr_action *a = jr->act;
    struct load_work *l;
    int qrc;

    if (scm_landed(jr, rc, e))
        return;
    a->sha = xstrdup(sha ? sha : "");
    a->host_dir = a->ref.path && *a->ref.path ? xasprintf("%s/%s", dir, a->ref.path)
                                              : xstrdup(dir);
    /* The main stage uses what the pre stage's look fetched: one commit per reference. */
    if (json_object_get(jr->fetched, a->uses) == NULL)
        json_object_set_new(jr->fetched, a->uses, json_pack("{s:s, s:s}", "dir", dir,
                                                            "sha", a->sha));
    l = xcalloc(1, sizeof *l);
    l->jr = jr;
    l->root = xstrdup(dir);
    l->sub = a->ref.path && *a->ref.path ? xstrdup(a->ref.path) : NULL;
    l->what = xstrdup(a->uses);
    l->w.data = l;
    a->stage = ST_LOAD;
    if ((qrc = uv_queue_work(jr->loop, &l->w, load_work, load_after)) < 0) {
        a->stage = ST_NONE;
        free(l->root);
        free(l->sub);
        free(l->what);
        free(l);
        act_failf(jr, "uses: %s: cannot read the action: %s", a->uses, uv_strerror(qrc));
    }
}

static void
read_exited(struct jobrun *jr, const struct agentp_msg *m)
{
    struct jr_action *a = jr->act;
    struct err e = {0};

    if (a->cancelled) {
        act_fail(jr, "The step was cancelled.");
        return;
    }
    if (m->exit_code == 4) {
        act_failf(jr, "uses: %s: %s does not exist where the steps run (check the repository "
                      "out first)", a->uses, a->dir);
        return;
    }
    if (m->exit_code != 0 || a->cap_over) {
        act_failf(jr, "uses: %s: no action.yml, action.yaml or Dockerfile in %s%s", a->uses,
                  a->dir, a->cap_over ? " (action.yml is over 1 MiB)" : "");
        return;
    }
    const char *data = buf_str(&a->cap);
    size_t nl = strcspn(data, "\n");
    char *name = xstrndup(data, nl);
    char *file = xasprintf("%s/%s", a->dir, name);
    const char *body = data[nl] ? data + nl + 1 : "";
    int rc;
    if (strcmp(name, "Dockerfile") == 0) {
        static const char synth[] = "runs:\n  using: docker\n  image: Dockerfile\n";
        rc = action_parse(file, synth, strlen(synth), a->uses, &a->act, &e);
    } else {
        rc = action_parse(file, body, a->cap.len - (size_t)(body - data), a->uses, &a->act, &e);
    }
    free(name);
    free(file);
    if (rc < 0) {
        act_fail(jr, e.msg);
        return;
    }
    action_ready(jr);
}

static void
local_start(struct jobrun *jr)
{
    static const char script[] =
        "cd \"$0\" 2>/dev/null || exit 4; "
        "for f in action.yml action.yaml; do "
        "if [ -f \"$f\" ]; then echo \"$f\"; exec cat \"$f\"; fi; done; "
        "if [ -f Dockerfile ]; then echo Dockerfile; exit 0; fi; exit 3";
    struct jr_action *a = jr->act;
    const char *p = a->ref.path;
    struct err e = {0};

    while (p[0] == '.' && p[1] == '/')
        p += 2;
    a->dir = *p && strcmp(p, ".") != 0 ? xasprintf("%s/%s", jr->x->workspace, p)
                                       : xstrdup(jr->x->workspace);
    a->stage = ST_READ;
    if (agent_sh(jr, script, a->dir, NULL, &e) < 0)
        act_failf(jr, "uses: %s: %s", a->uses, e.msg);
}

void
jr_action_start(struct jobrun *jr, json_t *ctx)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = xcalloc(1, sizeof *a);
    struct err e = {0};
    char *uses = NULL;

    a->cap = (struct buf)BUF_INIT;
    a->pre = !jr->pre_done; /* jr_pre_next() looking at the job's actions */
    jr->act = a;
    jr->phase = PH_ACTION;
    if (jr_eval_str(jr, &s->uses, ctx, &uses, &e) < 0) {
        act_fail(jr, e.msg);
        return;
    }
    a->uses = uses;
    if (s->kind == WF_STEP_USES && is_checkout(uses)) {
        a->checkout = true;
        checkout_start(jr, ctx);
        return;
    }
    const char *dflt = gh_str(ctx, "gitea_default_actions_url");
    struct action_sources src = {
        .default_actions_url = dflt ? dflt : jr->actions_url,
        .instance_url = jr->gitea ? gh_str(ctx, "server_url") : NULL,
        .github_mirror = jr->github_mirror,
    };
    if (action_ref_parse(uses, &src, &a->ref, &e) < 0) {
        act_fail(jr, e.msg);
        return;
    }
    if (a->ref.kind == ACTION_REF_LOCAL) {
        local_start(jr);
        return;
    }
    if (a->ref.kind != ACTION_REF_REMOTE) {
        act_failf(jr, "uses: %s: not an action reference", uses);
        return;
    }
    if (jr->cache_dir == NULL) {
        act_failf(jr, "uses: %s: no cache directory for actions is configured", uses);
        return;
    }
    json_t *seen = json_object_get(jr->fetched, uses);
    if (seen) {
        jr_emitf(jr, log_step(jr), JOBRUN_INFO, "Action %s is %s", uses,
                 json_string_value(json_object_get(seen, "sha")));
        char *dir = xstrdup(json_string_value(json_object_get(seen, "dir")));
        char *sha = xstrdup(json_string_value(json_object_get(seen, "sha")));
        fetched(jr, 0, NULL, dir, sha);
        free(dir);
        free(sha);
        return;
    }
    const char *token = a->ref.on_instance ? gh_str(ctx, "token") : NULL;
    struct scm_remote remote = {.url = a->ref.url, .token = token,
                                .ca_file = jr->git_ca_file,
                                .insecure = a->ref.on_instance && jr->git_insecure};
    jr_emitf(jr, log_step(jr), JOBRUN_INFO, "Fetching action %s from %s", uses, a->ref.url);
    a->stage = ST_FETCH;
    if (scm_fetch_action_start(jr->loop, jr->cache_dir, &remote, a->ref.ref, scm_progress,
                               fetched, jr, &a->scm, &e) < 0)
        act_failf(jr, "uses: %s: %s", uses, e.msg);
}

/* ---------------------------------------------------------------- running an action */

/* An input's name as the inputs context keys it: ASCII lower case. New string. */
static char *
lower_dup(const char *s)
{
    char *l = xstrdup(s);

    for (char *p = l; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    return l;
}

/* A remote action's owner/repo (GITHUB_ACTION_REPOSITORY, not the whole reference), or NULL.
 * New string. */
static char *
action_repo(const struct jr_action *a)
{
    return a->ref.kind == ACTION_REF_REMOTE ? xasprintf("%s/%s", a->ref.owner, a->ref.repo)
                                            : NULL;
}

/* The environment of a node action's stage in the job container: the step's, INPUT_*,
 * STATE_* and the action's GITHUB_ACTION_*. New object. */
static json_t *
node_env(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    struct jr_action *a = jr->act;
    char *repo = action_repo(a);
    struct stepenv_in in = {
        .base_env = jr->x->base_env, .job_env = jr->job_env,
        .container_env = jr->container_env, .github = json_object_get(ctx, "github"),
        .step_id = jr_cur_id(jr), .action_path = a->dir, .action_repository = repo,
        .action_ref = a->ref.kind == ACTION_REF_REMOTE ? a->ref.ref : NULL,
        .workspace = jr->x->workspace, .label = jr->label,
        .step_env = json_is_object(step_env) ? step_env : NULL,
        .with = json_is_object(with) ? with : NULL, .uses = true,
        .extra_path = jr->extra_path, .base_path = jr->x->base_path,
        .file_dir = jr->x->file_dir, .gitea = jr->gitea,
    };
    json_t *env = stepenv_build(&in);

    free(repo);
    add_input_env(env, inputs);
    add_state_env(jr, env, jr_cur_id(jr));
    return env;
}

/* The inputs context of the action: with values, then declared defaults (interpolated). */
static json_t *
action_inputs(struct jobrun *jr, json_t *ctx, json_t *with, struct err *e)
{
    struct action *act = jr->act->act;
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr),
                          .hash_files = jr_hash_files, .arg = jr};
    json_t *in = json_object();
    const char *k;
    json_t *v;

    json_object_foreach(with, k, v) {
        char *lk = lower_dup(k);
        json_object_set(in, lk, v);
        free(lk);
    }
    for (size_t i = 0; i < act->n_inputs; i++) {
        char *lk = lower_dup(act->inputs[i].id), *val = NULL;
        if (json_object_get(in, lk) == NULL && act->inputs[i].def) {
            if (expr_interpolate(act->inputs[i].def, &ee, &val, e) < 0) {
                err_prefix(e, "%s: inputs.%s.default: ", act->file, act->inputs[i].id);
                free(lk);
                json_decref(in);
                return NULL;
            }
            json_object_set_new(in, lk, json_string(val));
            free(val);
        }
        free(lk);
    }
    return in;
}

/* INPUT_* for every input (the with keys already are in the step env). */
static void
add_input_env(json_t *env, json_t *inputs)
{
    const char *k;
    json_t *v;

    json_object_foreach(inputs, k, v) {
        char *name = stepenv_input_name(k);
        if (json_object_get(env, name) == NULL && json_is_string(v))
            json_object_set(env, name, v);
        free(name);
    }
}

static void
add_state_env(struct jobrun *jr, json_t *env, const char *id)
{
    const char *k;
    json_t *v;

    json_object_foreach(json_object_get(jr->state, id), k, v) {
        char *name = xasprintf("STATE_%s", k);
        json_object_set(env, name, v);
        free(name);
    }
}

static char **
node_argv(const char *dir, const char *script)
{
    char **argv = xcalloc(3, sizeof *argv);

    argv[0] = xstrdup("node");
    argv[1] = xasprintf("%s/%s", dir, script);
    return argv;
}

/* A stage run as a container (docker_stage()): {step, id, name, image, entry, args, env,
 * with, extra}; args, step_env, with and extra are copied or borrowed. New object. */
static json_t *
docker_stage_desc(struct jobrun *jr, const char *name, const char *image, const char *entry,
                  char *const *args, json_t *step_env, json_t *with, json_t *extra)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:O, s:O, s:O}", "step",
                     (json_int_t)jr->cur, "id", jr_cur_id(jr), "name", name, "image", image,
                     "entry", entry, "args", jr_strv_json(args),
                     "env", step_env ? step_env : json_null(), "with", with ? with : json_null(),
                     "extra", extra ? extra : json_null());
}

/* Queues the current action's post stage (desc: a docker_stage_desc() when it has "image",
 * else an agent run for run_stage()), under its post-if. */
static void
add_post(struct jobrun *jr, json_t *desc)
{
    const char *cond = jr->act->act->post_if;

    json_object_set_new(desc, "if", json_string(cond ? cond : "always()"));
    json_array_append_new(jr->posts, desc);
}

/* A node action's stage (script) as a container of runnerd.node_image, for a job image
 * without node: {step, id, name, image, entry, args, env, with, extra} for docker_stage() or
 * the main stage. New object. */
static json_t *
node_container(struct jobrun *jr, const char *name, json_t *step_env, json_t *with,
               json_t *inputs, const char *script)
{
    struct jr_action *a = jr->act;
    json_t *extra = json_object();

    add_input_env(extra, inputs);
    add_state_env(jr, extra, jr_cur_id(jr));
    json_object_set_new(extra, "GITHUB_ACTION_PATH", json_string(a->dir ? a->dir : ""));
    if (a->ref.kind == ACTION_REF_REMOTE) {
        char *repo = action_repo(a);
        json_object_set_new(extra, "GITHUB_ACTION_REPOSITORY", json_string(repo));
        json_object_set_new(extra, "GITHUB_ACTION_REF", json_string(a->ref.ref));
        free(repo);
    }
    char *args[] = {xasprintf("%s/%s", a->dir, script), NULL};
    json_t *p = docker_stage_desc(jr, name, jr->node_image, "node", args, step_env, with, extra);
    free(args[0]);
    json_decref(extra);
    return p;
}

/* False (the step failed) when node actions cannot run here: the job image has no node and
 * no runnerd.node_image is configured. */
static bool
node_available(struct jobrun *jr)
{
    if (!jr->x->container || jr->x->node || jr->node_image)
        return true;
    act_failf(jr, "uses: %s: the job image has no node for this %s action; use an image with "
                  "node, or set runnerd.node_image", jr->act->uses, jr->act->act->using_str);
    return false;
}

static bool
node_in_container(struct jobrun *jr)
{
    return jr->x->container && !jr->x->node && jr->node_image;
}

static void
node_main(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = jr->act;

    if (!node_available(jr))
        return;
    if (node_in_container(jr)) {
        const char *name = jr->cur_name ? jr->cur_name : s->eff_id;
        json_t *m = node_container(jr, name, step_env, with, inputs, a->act->main);
        if (a->act->post)
            add_post(jr, node_container(jr, name, step_env, with, inputs, a->act->post));
        char **args = xcalloc(2, sizeof *args);
        args[0] = xstrdup(json_string_value(json_array_get(json_object_get(m, "args"), 0)));
        act_free(jr->act);
        jr->act = NULL;
        jr_container_step(jr, ctx, jr->node_image, "node", args, step_env, with,
                          json_object_get(m, "extra"));
        json_decref(m);
        return;
    }
    json_decref(jr->cur_env);
    jr->cur_env = node_env(jr, ctx, step_env, with, inputs);
    if (a->act->post)
        add_post(jr, json_pack("{s:s, s:s, s:O, s:s, s:s, s:s}", "id", jr_cur_id(jr),
                               "name", jr->cur_name ? jr->cur_name : s->eff_id,
                               "env", jr->cur_env, "cwd", jr->x->workspace, "dir", a->dir,
                               "script", a->act->post));
    shell_argv_free(jr->argv);
    jr->argv = node_argv(a->dir, a->act->main);
    free(jr->cwd);
    jr->cwd = xstrdup(jr->x->workspace);
    jr->timeout_ms = 0;
    act_free(jr->act); /* from here on it is an ordinary running step */
    jr->act = NULL;
    jr->phase = PH_RUNNING;
    jr_run_script(jr);
}

/* ---------------------------------------------------------------- docker actions */

static void
build_progress(void *arg, const char *line)
{
    struct jobrun *jr = arg;

    jr_emit(jr, log_step(jr), JOBRUN_INFO, line, strlen(line));
}

static void
built(void *arg, int rc, const struct err *e, const char *image_id)
{
    struct jobrun *jr = arg;
    struct jr_action *a = jr->act;

    a->build = NULL;
    a->stage = ST_NONE;
    if (landed_closing(jr))
        return;
    if (rc == ERR_CANCELED || a->cancelled) {
        act_fail(jr, "The step was cancelled.");
        return;
    }
    if (rc < 0) {
        act_failf(jr, "uses: %s: %s", a->uses, e ? e->msg : "the image build failed");
        return;
    }
    a->image_id = xstrdup(image_id);
    jr_emitf(jr, log_step(jr), JOBRUN_INFO, "Built %s", image_id);
    action_ready(jr);
}

/* Builds the image from the action's files: a directory on the host, or (tar) what the job
 * container sent of a local action's directory. The container runs the built image's id, never
 * the tag: another job may tag the same name meanwhile. */
static void
build_image(struct jobrun *jr, const void *tar, size_t len)
{
    struct jr_action *a = jr->act;
    const char *name = a->act->name && *a->act->name ? a->act->name
                       : a->ref.repo                  ? a->ref.repo
                                                      : "action";
    char *tag = action_docker_tag(name), *dockerfile;
    json_t *labels = json_pack("{s:s}", "io.runnerd.action", a->uses);
    struct err e = {0};

    if (tar) {
        const char *base = strrchr(a->dir, '/');
        dockerfile = xasprintf("%s/%s", base ? base + 1 : a->dir, a->act->image);
    } else {
        dockerfile = xstrdup(a->act->image);
    }
    /* A fetched action's files are read beneath its repository's root (one of its links may
     * point anywhere on the host). */
    const char *root = json_string_value(json_object_get(json_object_get(jr->fetched, a->uses),
                                                         "dir"));
    struct actbuild_req req = {.dir = tar ? a->dir : a->host_dir, .root = tar ? NULL : root,
                               .tar = tar, .tar_len = len, .dockerfile = dockerfile, .tag = tag,
                               .labels = labels};
    jr_emitf(jr, log_step(jr), JOBRUN_INFO, "Building %s from %s", tag, a->act->image);
    a->stage = ST_BUILD;
    if (actbuild_start(jr->loop, jr->x->docker, &req, build_progress, built, jr, &a->build,
                       &e) < 0) {
        a->stage = ST_NONE;
        a->build = NULL;
        act_failf(jr, "uses: %s: %s", a->uses, e.msg);
    }
    free(tag);
    free(dockerfile);
    json_decref(labels);
}

static void
got_context(void *arg, int rc, const struct err *e, const void *tar, size_t len)
{
    struct jobrun *jr = arg;
    struct jr_action *a = jr->act;

    a->stage = ST_NONE;
    if (landed_closing(jr))
        return;
    if (a->cancelled) {
        act_fail(jr, "The step was cancelled.");
        return;
    }
    if (rc < 0) {
        act_failf(jr, "uses: %s: cannot read %s from the job container: %s", a->uses, a->dir,
                  e ? e->msg : "");
        return;
    }
    build_image(jr, tar, len);
}

/* A docker action whose runs.image is a Dockerfile: its image is built first. */
static void
dockerfile_start(struct jobrun *jr)
{
    struct jr_action *a = jr->act;
    struct err e = {0};

    if (jr->x->docker == NULL) {
        act_failf(jr, "uses: %s: docker actions need a job in a container (map the label to "
                      "docker://IMAGE)", a->uses);
        return;
    }
    if (a->host_dir) {
        build_image(jr, NULL, 0);
        return;
    }
    if (jr->x->ops->get_archive == NULL) {
        act_failf(jr, "uses: %s: this executor cannot send the action's files", a->uses);
        return;
    }
    a->stage = ST_CTX;
    if (jr->x->ops->get_archive(jr->x, a->dir, got_context, jr, &e) < 0) {
        a->stage = ST_NONE;
        act_failf(jr, "uses: %s: %s", a->uses, e.msg);
    }
}

/* A docker action's container, for any of its stages (§12.5). */
struct docker_run {
    char *image;
    char **args;      /* with.args (shell words), else runs.args (interpolated), or NULL */
    json_t *extra;    /* runs.env, INPUT_*, STATE_*, GITHUB_ACTION_PATH */
};

static void
docker_run_free(struct docker_run *d)
{
    free(d->image);
    dockeropts_words_free(d->args);
    json_decref(d->extra);
}

/* Fills d for the action jr->act (its image built already when from a Dockerfile); on error
 * the step (or the pre stage's look) fails. */
static int
docker_prepare(struct jobrun *jr, json_t *ctx, json_t *with, json_t *inputs,
               struct docker_run *d)
{
    struct jr_action *a = jr->act;
    struct action *act = a->act;
    json_t *ictx = json_copy(ctx);
    struct expr_env ee = {.contexts = ictx, .job_status = jr_job_status(jr),
                          .hash_files = jr_hash_files, .arg = jr};
    struct err e = {0};
    size_t nargs = 0;
    int rc = -1;

    *d = (struct docker_run){.extra = json_object()};
    json_object_set(ictx, "inputs", inputs);
    d->image = xstrdup(a->image_id ? a->image_id : act->image + strlen("docker://"));
    char *wargs = with_str(with, "args");
    if (wargs) {
        rc = dockeropts_split(wargs, "with.args", &d->args, &nargs, &e);
        free(wargs);
        if (rc < 0) {
            act_fail(jr, e.msg);
            goto out;
        }
    } else if (act->args && act->args[0]) {
        size_t n = 0;
        while (act->args[n])
            n++;
        d->args = xcalloc(n + 1, sizeof *d->args);
        for (size_t i = 0; i < n; i++)
            if (expr_interpolate(act->args[i], &ee, &d->args[i], &e) < 0) {
                d->args[i] = NULL;
                act_failf(jr, "%s: runs.args: %s", act->file, e.msg);
                goto out;
            }
    }
    if (act->env) {
        json_t *env = NULL;
        if (yeval_node(act->file, act->env, &ee, &env, &e) < 0) {
            act_fail(jr, e.msg);
            goto out;
        }
        if (json_is_object(env))
            json_object_update(d->extra, env);
        json_decref(env);
    }
    add_input_env(d->extra, inputs);
    add_state_env(jr, d->extra, jr_cur_id(jr));
    json_object_set_new(d->extra, "GITHUB_ACTION_PATH", json_string(a->dir ? a->dir : ""));
    rc = 0;
out:
    json_decref(ictx);
    return rc;
}

static void
docker_main(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    struct jr_action *a = jr->act;
    struct action *act = a->act;
    struct docker_run d;
    char *entry;

    if (docker_prepare(jr, ctx, with, inputs, &d) < 0) {
        docker_run_free(&d);
        return;
    }
    entry = with_str(with, "entrypoint");
    if (entry == NULL && act->entrypoint)
        entry = xstrdup(act->entrypoint);
    if (act->post_entrypoint) /* the same container with runs.post-entrypoint (§9.5) */
        add_post(jr, docker_stage_desc(jr, jr->cur_name ? jr->cur_name : jr_cur_id(jr),
                                       d.image, act->post_entrypoint, d.args, step_env, with,
                                       d.extra));
    act_free(jr->act);
    jr->act = NULL;
    jr_container_step(jr, ctx, d.image, entry, d.args, step_env, with, d.extra);
    d.args = NULL; /* taken */
    docker_run_free(&d);
    free(entry);
}

/* A composite action: its nested steps run in a frame of their own (§12.6), with the declared
 * inputs only. */
static void
composite_main(struct jobrun *jr, json_t *step_env, json_t *inputs)
{
    struct jr_action *a = jr->act;
    struct action *act = a->act;

    if (jr_frame_depth(jr) >= JR_COMPOSITE_MAX_DEPTH) {
        act_failf(jr, "uses: %s: composite actions nest deeper than %d levels", a->uses,
                  JR_COMPOSITE_MAX_DEPTH);
        return;
    }
    json_t *declared = json_object();
    char *repo = action_repo(a);
    char *uses = xstrdup(a->uses), *dir = xstrdup(a->dir ? a->dir : "");
    char *ref = a->ref.kind == ACTION_REF_REMOTE ? xstrdup(a->ref.ref) : NULL;

    for (size_t i = 0; i < act->n_inputs; i++) {
        char *lk = lower_dup(act->inputs[i].id);
        json_t *v = json_object_get(inputs, lk);
        json_object_set_new(declared, lk, v ? json_incref(v) : json_string(""));
        free(lk);
    }
    a->act = NULL;
    if (a->tmp)
        remove_later(jr, a->tmp);
    act_free(jr->act);
    jr->act = NULL;
    jr_frame_enter(jr, act, uses, dir, repo, ref, declared, step_env);
    json_decref(declared);
    free(repo);
    free(uses);
    free(dir);
    free(ref);
}

/* The action is read (and its files are where the steps run): run its main stage. */
static void
action_ready(struct jobrun *jr)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = jr->act;
    json_t *ctx = jr_contexts(jr, NULL), *step_env = NULL, *with = NULL, *inputs = NULL;
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr),
                          .hash_files = jr_hash_files, .arg = jr};
    struct err e = {0};

    a->stage = ST_NONE;
    if (a->cancelled) {
        act_fail(jr, "The step was cancelled.");
        goto out;
    }
    if (a->act->using == ACTION_DOCKER && strncmp(a->act->image, "docker://", 9) != 0 &&
        a->image_id == NULL && (!a->pre || a->act->pre_entrypoint)) {
        dockerfile_start(jr); /* back here once the image is built */
        goto out;
    }
    if (yeval_node(jr_file(jr), s->env, &ee, &step_env, &e) < 0) {
        act_fail(jr, e.msg);
        goto out;
    }
    if (json_is_object(step_env)) {
        /* with: (and what the action evaluates for this step) sees the step's own env: in
         * `env`, as in act and GitHub: `with: {x: ${{ env.X }}}` next to `env: {X: ..}`. */
        json_t *envc = json_copy(json_object_get(ctx, "env"));
        if (!json_is_object(envc)) {
            json_decref(envc);
            envc = json_object();
        }
        json_object_update(envc, step_env);
        json_object_set_new(ctx, "env", envc);
    }
    if (yeval_node(jr_file(jr), s->with, &ee, &with, &e) < 0 ||
        (inputs = action_inputs(jr, ctx, with, &e)) == NULL) {
        act_fail(jr, e.msg);
        goto out;
    }
    json_t *own = step_env;
    step_env = jr_step_env(jr, json_is_object(own) ? own : NULL, false);
    json_decref(own);
    if (a->pre) {
        pre_stage(jr, ctx, step_env, with, inputs);
        goto out;
    }
    switch (a->act->using) {
    case ACTION_NODE:
        node_main(jr, ctx, step_env, with, inputs);
        break;
    case ACTION_DOCKER:
        docker_main(jr, ctx, step_env, with, inputs);
        break;
    case ACTION_COMPOSITE:
        composite_main(jr, step_env, inputs);
        break;
    }
out:
    json_decref(ctx);
    json_decref(step_env);
    json_decref(with);
    json_decref(inputs);
}

/* ---------------------------------------------------------------- events, cancel */

void
jr_action_event(struct jobrun *jr, const struct agentconn_event *ev)
{
    const struct agentp_msg *m = ev->msg;
    struct jr_action *a = jr->act;

    if (a == NULL || m->id != JR_ACT_STEP)
        return;
    switch (ev->kind) {
    case AGENTCONN_OUTPUT:
        if (m->stream == AGENTP_STDOUT && a->stage == ST_READ) {
            if (a->cap.len + m->data.len > CAPTURE_MAX)
                a->cap_over = true;
            else
                buf_append(&a->cap, m->data.p, m->data.len);
        } else if (m->stream == AGENTP_STDERR) {
            jr_emit(jr, log_step(jr), JOBRUN_ERR, (const char *)m->data.p, m->data.len);
        }
        break;
    case AGENTCONN_EXITED:
        if (a->stage == ST_PREP)
            prep_exited(jr, m);
        else if (a->stage == ST_READ)
            read_exited(jr, m);
        break;
    case AGENTCONN_ERROR:
        act_failf(jr, "uses: %s: the agent refused a command: %s", a->uses,
                  m->text ? m->text : "");
        break;
    default:
        break;
    }
}

void
jr_action_cancel(struct jobrun *jr)
{
    struct jr_action *a = jr->act;
    struct err e = {0};

    if (a == NULL)
        return;
    a->cancelled = true;
    if (a->scm)
        scm_job_cancel(a->scm);
    else if (a->build)
        actbuild_cancel(a->build);
    else if ((a->stage == ST_PREP || a->stage == ST_READ) && jr->x && jr->x->conn)
        agentconn_cancel(jr->x->conn, JR_ACT_STEP, 0, &e);
    /* ST_PUT: the copy finishes, then the step ends as cancelled (put_done). */
}

/* ---------------------------------------------------------------- pre and post stages */

/* Runs a docker action's pre or post stage: {step, id, name, image, entry, args, env, with,
 * extra}, as its step's container with the stage's entrypoint; it ends in jr_stage_end(). */
static void
docker_stage(struct jobrun *jr, json_t *p)
{
    json_t *args = json_object_get(p, "args"), *v;
    char **argv = xcalloc(json_array_size(args) + 1, sizeof *argv);
    size_t i;

    json_array_foreach(args, i, v)
        argv[i] = xstrdup(json_string_value(v) ? json_string_value(v) : "");
    free(jr->post_id);
    jr->post_id = xstrdup(json_string_value(json_object_get(p, "id")));
    jr->cur = (size_t)json_integer_value(json_object_get(p, "step"));
    jr->in_post = true;
    jr_emitf(jr, -1, JOBRUN_INFO, "%s", json_string_value(json_object_get(p, "name")));
    json_decref(jr->cur_outputs);
    jr->cur_outputs = json_object();
    json_t *ctx = jr_contexts(jr, NULL);
    jr->phase = PH_RUNNING;
    jr_container_step(jr, ctx, json_string_value(json_object_get(p, "image")),
                      json_string_value(json_object_get(p, "entry")), argv,
                      json_object_get(p, "env"), json_object_get(p, "with"),
                      json_object_get(p, "extra"));
    json_decref(ctx);
}

/* Runs a pre or post stage: {id, name, env, cwd, dir, script}; its output goes to the job's
 * log. True when it runs; false (the job marked failed) when the agent refused it. */
static bool
run_stage(struct jobrun *jr, json_t *p)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    struct err e = {0};

    free(jr->post_id);
    jr->post_id = xstrdup(json_string_value(json_object_get(p, "id")));
    jr_emitf(jr, -1, JOBRUN_INFO, "%s", name);
    json_decref(jr->cur_env);
    jr->cur_env = json_deep_copy(json_object_get(p, "env"));
    add_state_env(jr, jr->cur_env, jr->post_id);
    shell_argv_free(jr->argv);
    jr->argv = node_argv(json_string_value(json_object_get(p, "dir")),
                         json_string_value(json_object_get(p, "script")));
    char **envp = stepenv_to_envp(jr->cur_env);
    size_t envc = 0;
    while (envp[envc])
        envc++;
    struct agentconn_run r = {
        .step = (uint32_t)jr->cur + 1, .argv = (const char *const *)jr->argv, .argc = 2,
        .env = (const char *const *)envp, .envc = envc,
        .cwd = json_string_value(json_object_get(p, "cwd")), .dir = jr->x->file_dir,
    };
    jr->in_post = true;
    jr->phase = PH_RUNNING;
    int rc = agentconn_run(jr->x->conn, &r, &e);
    for (size_t i = 0; i < envc; i++)
        free(envp[i]);
    free(envp);
    if (rc == 0)
        return true;
    jr_emitf(jr, -1, JOBRUN_ERROR, "%s: %s", name, e.msg);
    jr->job_failed = true;
    jr->in_post = false;
    jr->phase = PH_STEPS;
    return false;
}

bool
jr_post_next(struct jobrun *jr)
{
    while (!jr->forced && json_array_size(jr->posts) > 0) {
        size_t last = json_array_size(jr->posts) - 1;
        json_t *p = json_incref(json_array_get(jr->posts, last));
        const char *cond = json_string_value(json_object_get(p, "if"));
        const char *name = json_string_value(json_object_get(p, "name"));
        json_t *ctx;
        struct err e = {0};
        bool ok = false;

        json_array_remove(jr->posts, last);
        jr->cur = jr->wj->n_steps;
        free(jr->post_id);
        jr->post_id = xstrdup(json_string_value(json_object_get(p, "id")));
        ctx = jr_contexts(jr, NULL);
        struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr)};
        if (expr_eval_if(cond, "always()", &ee, &ok, &e) < 0) {
            jr_emitf(jr, -1, JOBRUN_ERROR, "Post %s: error in post-if: %s", name, e.msg);
            jr->job_failed = true;
        }
        json_decref(ctx);
        if (!ok) {
            json_decref(p);
            continue;
        }
        char *title = xasprintf("Post %s", name);
        json_object_set_new(p, "name", json_string(title));
        free(title);
        if (json_object_get(p, "image")) { /* a docker action's, or node in node_image */
            docker_stage(jr, p);
            json_decref(p);
            return true;
        }
        bool started = run_stage(jr, p);
        json_decref(p);
        if (started)
            return true;
    }
    return false;
}

/* The pre stage of the action just read (jr->act, pre set): node actions' runs.pre when
 * pre-if holds (§9.5). The job then goes on looking. */
static void
pre_stage(struct jobrun *jr, json_t *ctx, json_t *step_env, json_t *with, json_t *inputs)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_action *a = jr->act;
    struct action *act = a->act;
    struct err e = {0};
    bool ok = false;

    if (act->using == ACTION_COMPOSITE) {
        /* A remote composite: the pre stages of its own steps' actions (§9.5). */
        composite_main(jr, step_env, inputs);
        return;
    }
    bool docker = act->using == ACTION_DOCKER && act->pre_entrypoint;
    if (!docker && (act->using != ACTION_NODE || act->pre == NULL)) {
        act_end(jr, true);
        return;
    }
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr)};
    if (expr_eval_if(act->pre_if ? act->pre_if : "always()", "success()", &ee, &ok, &e) < 0) {
        act_failf(jr, "uses: %s: error in pre-if: %s", a->uses, e.msg);
        return;
    }
    if (!ok) {
        act_end(jr, true);
        return;
    }
    if (!docker && !node_available(jr))
        return;
    char *name = jr_display_name(jr, s, ctx), *title = xasprintf("Pre %s", name);
    free(name);
    json_t *stage = NULL;
    if (docker) {
        struct docker_run d;
        if (docker_prepare(jr, ctx, with, inputs, &d) == 0)
            stage = docker_stage_desc(jr, title, d.image, act->pre_entrypoint, d.args,
                                      step_env, with, d.extra);
        docker_run_free(&d);
        if (stage == NULL) {
            free(title);
            return; /* the step (here: the pre stages' look) failed */
        }
    } else if (node_in_container(jr)) {
        stage = node_container(jr, title, step_env, with, inputs, act->pre);
    }
    if (stage) {
        free(title);
        act_free(jr->act);
        jr->act = NULL;
        docker_stage(jr, stage);
        json_decref(stage);
        return;
    }
    json_t *env = node_env(jr, ctx, step_env, with, inputs);
    json_t *p = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}", "id", jr_cur_id(jr), "name", title,
                          "env", env, "cwd", jr->x->workspace, "dir", a->dir,
                          "script", act->pre);
    free(title);
    act_free(jr->act);
    jr->act = NULL;
    if (!run_stage(jr, p)) {
        jr->pre_failed = true;
        jr_next_step(jr);
    }
    json_decref(p);
}

/* Pre stages run before the first step, in step order (§9.5): each remote action of the job
 * (a literal reference: one with ${{ }} is only known when its step runs) is fetched and read
 * now; runs.pre of a node action (runs.pre-entrypoint of a docker one) runs when its pre-if
 * holds, and a remote composite is entered (a frame with its inputs) to do the same for its
 * own steps. Local actions have none. The fetched commit is the one the main stage uses. */
bool
jr_pre_next(struct jobrun *jr)
{
    for (;;) {
        struct jr_frame *f = jr->frame; /* a remote composite entered for its pre stages */
        const struct wf_step *steps = f ? f->steps : jr->wj->steps;
        size_t n = f ? f->n : jr->wj->n_steps, *idx = f ? &f->pre_idx : &jr->pre_idx;

        if (jr->pre_failed || jr->cancelled || *idx >= n) {
            if (f == NULL)
                break;
            jr_frame_leave(jr);
            continue;
        }
        const struct wf_step *s = &steps[(*idx)++];
        struct action_ref ref = {0};
        struct err e = {0};

        if (s->kind != WF_STEP_USES || s->uses.v == NULL || strstr(s->uses.v, "${{") ||
            is_checkout(s->uses.v) || jr->cache_dir == NULL)
            continue;
        if (action_ref_parse(s->uses.v, &(struct action_sources){0}, &ref, &e) < 0 ||
            ref.kind != ACTION_REF_REMOTE) {
            action_ref_free(&ref);
            continue; /* the main stage says what is wrong */
        }
        action_ref_free(&ref);
        if (f) {
            f->cur = *idx - 1;
            free(f->cur_id);
            f->cur_id = xasprintf("%s.%s", f->id, s->eff_id);
        } else {
            jr->cur = *idx - 1;
        }
        json_t *ctx = jr_contexts(jr, NULL);
        jr_action_start(jr, ctx);
        json_decref(ctx);
        return true;
    }
    jr->pre_done = true;
    jr->cur = 0;
    return false;
}

void
jr_stage_end(struct jobrun *jr, bool ok)
{
    if (!ok)
        jr->job_failed = true;
    if (!jr->pre_done && !ok)
        jr->pre_failed = true; /* no main stage runs; post stages and cleanup still do */
    json_decref(jr->cur_env);
    jr->cur_env = NULL;
    json_decref(jr->cur_outputs);
    jr->cur_outputs = NULL;
    shell_argv_free(jr->argv);
    jr->argv = NULL;
    jr->in_post = false;
    if (jr->pre_done)
        jr->cur = jr->wj->n_steps; /* a docker post stage ran as its step */
    jr->phase = PH_STEPS;
    jr_next_step(jr);
}

void
jr_post_exited(struct jobrun *jr, const struct agentp_msg *m)
{
    const char *stage = jr->pre_done ? "Post" : "Pre";
    bool ok = true;

    jr_flush_output(jr);
    if (m)
        jr_apply_files(jr, m, &ok); /* a pre stage's state is its main stage's STATE_* */
    if (m == NULL) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "the agent refused the %s stage", stage);
        ok = false;
    } else if (m->exit_code != 0 || (m->flags & AGENTP_EXIT_SIGNALED)) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "%s stage completed with exit code %d.", stage,
                 m->exit_code);
        ok = false;
    }
    jr_stage_end(jr, ok);
}
