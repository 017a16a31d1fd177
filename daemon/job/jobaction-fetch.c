/* jobaction-fetch.c: the uses: steps of a job run (doc/workflow-semantics.md §12, §9.5):
 * actions/checkout natively with libgit2 (scm.h) through the runner's mirror cache, remote
 * actions fetched into the action cache, local actions read where the steps run, node and
 * docker actions, and the post stages of node actions (reverse order, after the last step).
 *
 * Files reach the steps with executor_put_dir(): an upload into the job container, or a copy
 * on the host. Everything slow (fetching, checking out, packing) runs off the loop.
 *
 * This file fetches and reads the action (and builds a docker action's image) and hands it
 * to jobaction-run.c; jobaction.c holds the action step's state. */
#include "jobaction-int.h"

#include "actbuild.h"
#include "expr.h"
#include "runner/xalloc.h"
#include "scm.h"
#include "yeval.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CAPTURE_MAX (1u << 20) /* an action.yml read back through the agent */

static void action_ready(struct jobrun *jr);
static void dockerfile_start(struct jobrun *jr);

/* True (and the step ended as cancelled) when the step was cancelled while it waited. */
static bool
stopped(struct jobrun *jr)
{
    if (!jr->act->cancelled)
        return false;
    act_fail(jr, "The step was cancelled.");
    return true;
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
    if (act_landed_closing(jr))
        return;
    if (rc < 0) {
        act_failf(jr, "uses: %s: copying files to %s failed: %s", a->uses, a->dest,
                  e ? e->msg : "");
        return;
    }
    if (stopped(jr))
        return;
    if (a->checkout) {
        json_object_set_new(jr->cur_outputs, "commit", json_string(a->sha ? a->sha : ""));
        json_object_set_new(jr->cur_outputs, "ref", json_string(a->ref_name ? a->ref_name : ""));
        jr_emitf(jr, act_log_step(jr), JOBRUN_INFO, "Checked out %s into %s", a->sha ? a->sha : "",
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

    if (stopped(jr))
        return;
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
    if (act_landed_closing(jr))
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
    struct expr_env ee = jr_expr_env(jr, ctx);
    json_t *with = NULL;
    struct err e = {0};
    char *repository = NULL, *ref = NULL, *token = NULL, *path = NULL, *depth = NULL;
    char *submodules = NULL, *url = NULL, *base = NULL;
    const char *self = act_gh_str(ctx, "repository"), *server = act_gh_str(ctx, "server_url");

    if (yeval_node(jr_file(jr), s->with, &ee, &with, &e) < 0) {
        act_fail(jr, e.msg);
        return;
    }
    repository = act_with_str(with, "repository");
    ref = act_with_str(with, "ref");
    bool same_repo = repository == NULL || (self && strcmp(repository, self) == 0);
    /* runnerctl exec: the workspace already is the local repository (act's shortcut). */
    if (!jr->gitea && jr->xjob.source && same_repo &&
        (ref == NULL || (act_gh_str(ctx, "ref") && strcmp(ref, act_gh_str(ctx, "ref")) == 0))) {
        jr_emitf(jr, act_log_step(jr), JOBRUN_INFO,
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
    token = act_with_str(with, "token");
    if (token == NULL && act_gh_str(ctx, "token"))
        token = xstrdup(act_gh_str(ctx, "token"));
    if (token && !action_same_origin(url, server)) {
        free(token); /* the task's token goes to its own instance only */
        token = NULL;
    }
    if (token)
        mask_add(jr->mask, token);
    path = act_with_str(with, "path");
    if (path && (path[0] == '/' || strstr(path, ".."))) {
        act_failf(jr, "%s: with.path must be a relative path inside the workspace, not '%s'",
                  a->uses, path);
        goto out;
    }
    a->dest = path ? xasprintf("%s/%s", jr->x->workspace, path) : xstrdup(jr->x->workspace);
    a->clean = act_with_bool(with, "clean", true);
    depth = act_with_str(with, "fetch-depth");
    submodules = act_with_str(with, "submodules");
    const char *sha = NULL;
    if (same_repo && ref == NULL) {
        sha = act_gh_str(ctx, "sha");
        if (sha && strspn(sha, "0") == strlen(sha))
            sha = NULL; /* no commit (a double's or an event's placeholder): the ref's head */
        if (act_gh_str(ctx, "ref"))
            ref = xstrdup(act_gh_str(ctx, "ref"));
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
        .lfs = act_with_bool(with, "lfs", false),
        .persist_credentials = act_with_bool(with, "persist-credentials", true),
    };
    jr_emitf(jr, act_log_step(jr), JOBRUN_INFO, "Checking out %s%s%s", url, ref ? " at " : "",
             ref ? ref : "");
    a->stage = ST_FETCH;
    if (scm_checkout_start(jr->loop, &req, act_progress, checked_out, jr, &a->scm, &e) < 0)
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
    if (!act_landed_closing(jr)) {
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

    if (stopped(jr))
        return;
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
    if (s->kind == WF_STEP_USES && act_is_checkout(uses)) {
        a->checkout = true;
        checkout_start(jr, ctx);
        return;
    }
    const char *dflt = act_gh_str(ctx, "gitea_default_actions_url");
    struct action_sources src = {
        .default_actions_url = dflt ? dflt : jr->actions_url,
        .instance_url = jr->gitea ? act_gh_str(ctx, "server_url") : NULL,
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
        jr_emitf(jr, act_log_step(jr), JOBRUN_INFO, "Action %s is %s", uses,
                 json_string_value(json_object_get(seen, "sha")));
        char *dir = xstrdup(json_string_value(json_object_get(seen, "dir")));
        char *sha = xstrdup(json_string_value(json_object_get(seen, "sha")));
        fetched(jr, 0, NULL, dir, sha);
        free(dir);
        free(sha);
        return;
    }
    const char *token = a->ref.on_instance ? act_gh_str(ctx, "token") : NULL;
    struct scm_remote remote = {.url = a->ref.url, .token = token,
                                .ca_file = jr->git_ca_file,
                                .insecure = a->ref.on_instance && jr->git_insecure};
    jr_emitf(jr, act_log_step(jr), JOBRUN_INFO, "Fetching action %s from %s", uses, a->ref.url);
    a->stage = ST_FETCH;
    if (scm_fetch_action_start(jr->loop, jr->cache_dir, &remote, a->ref.ref, act_progress,
                               fetched, jr, &a->scm, &e) < 0)
        act_failf(jr, "uses: %s: %s", uses, e.msg);
}

/* ---------------------------------------------------------------- docker actions */

static void
built(void *arg, int rc, const struct err *e, const char *image_id)
{
    struct jobrun *jr = arg;
    struct jr_action *a = jr->act;

    a->build = NULL;
    a->stage = ST_NONE;
    if (act_landed_closing(jr))
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
    jr_emitf(jr, act_log_step(jr), JOBRUN_INFO, "Built %s", image_id);
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
    jr_emitf(jr, act_log_step(jr), JOBRUN_INFO, "Building %s from %s", tag, a->act->image);
    a->stage = ST_BUILD;
    if (actbuild_start(jr->loop, jr->x->docker, &req, act_progress, built, jr, &a->build,
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
    if (act_landed_closing(jr))
        return;
    if (stopped(jr))
        return;
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

/* The action is read (and its files are where the steps run): a docker action's image is
 * built first when it has to be, then its stage runs (jobaction-run.c). */
static void
action_ready(struct jobrun *jr)
{
    struct jr_action *a = jr->act;

    a->stage = ST_NONE;
    if (stopped(jr))
        return;
    if (a->act->using == ACTION_DOCKER && strncmp(a->act->image, "docker://", 9) != 0 &&
        a->image_id == NULL && (!a->pre || a->act->pre_entrypoint)) {
        dockerfile_start(jr); /* back here once the image is built */
        return;
    }
    act_run(jr);
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
            jr_emit(jr, act_log_step(jr), JOBRUN_ERR, (const char *)m->data.p, m->data.len);
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

/* ---------------------------------------------------------------- pre stages: the look */

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
            act_is_checkout(s->uses.v) || jr->cache_dir == NULL)
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

