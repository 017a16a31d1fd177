/* jobrun-container.c: container steps (jobrun-int.h): `uses: docker://IMAGE`, and the
 * containers of docker actions (and of node actions run in runnerd.node_image), each a
 * container of its own on the job network with the workspace mounted (dockerstep.h). The
 * file-command files it writes are emptied before it starts and read back through the agent
 * after it ends. The run core knows nothing of Docker: it starts these steps and passes their
 * agent events here. */
#include "jobrun-int.h"

#include "dockeropts.h"
#include "dockerexec.h"
#include "dockerstep.h"
#include "runner/xalloc.h"
#include "stepenv.h"
#include "yeval.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void
dstep_output(int stream, const char *p, size_t n, void *arg)
{
    struct jobrun *jr = arg;

    if (jr->phase == PH_RUNNING)
        jr_feed_output(jr, stream == 2 ? AGENTP_STDERR : AGENTP_STDOUT, (const uint8_t *)p, n);
}

static void
dstep_log(const char *line, void *arg)
{
    struct jobrun *jr = arg;

    jr_emit(jr, (int)jr->cur, JOBRUN_INFO, line, strlen(line));
}

/* Reads the file-command files a docker step wrote (in the shared /var/run/act volume) back
 * through the agent: copies are made by a small RUN whose own env files name the copies. */
static void
read_docker_files(struct jobrun *jr)
{
    static const char script[] =
        "for f in envs.txt outputcmd.txt statecmd.txt pathcmd.txt SUMMARY.md; do "
        "cp -f \"$0/$f\" \"$0/read/$f\" 2>/dev/null; done; exit 0";
    char *dir = xasprintf("%s/read", jr->x->file_dir);
    char *vars[5];
    static const char *const names[][2] = {
        {"GITHUB_ENV", "envs.txt"},     {"GITHUB_OUTPUT", "outputcmd.txt"},
        {"GITHUB_STATE", "statecmd.txt"}, {"GITHUB_PATH", "pathcmd.txt"},
        {"GITHUB_STEP_SUMMARY", "SUMMARY.md"}};
    struct err e = {0};

    for (int i = 0; i < 5; i++)
        vars[i] = xasprintf("%s=%s/%s", names[i][0], dir, names[i][1]);
    const char *argv[] = {"/bin/sh", "-c", script, jr->x->file_dir};
    const char *env[] = {vars[0], vars[1], vars[2], vars[3], vars[4], "PATH=/usr/bin:/bin"};
    struct agentconn_run r = {.step = (uint32_t)jr->cur + 1, .argv = argv, .argc = 4,
                              .env = env, .envc = 6, .dir = dir};
    jr->phase = PH_DREAD;
    if (agentconn_run(jr->x->conn, &r, &e) < 0) {
        jr_emitf(jr, (int)jr->cur, JOBRUN_WARNING, "file commands of this step were not read: %s",
              e.msg);
        jr->core->end_step(jr, jr->dok);
    }
    for (int i = 0; i < 5; i++)
        free(vars[i]);
    free(dir);
}

static void
dstep_done(int rc, long long code, const struct err *e, void *arg)
{
    struct jobrun *jr = arg;

    jr->dstep = NULL;
    if (jr->phase != PH_RUNNING)
        return;
    jr_flush_output(jr);
    if (rc == ERR_CANCELED) {
        jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, "The step was cancelled.", 23);
        jr->core->end_step(jr, false);
    } else if (rc < 0) {
        jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, e ? e->msg : "docker step failed",
             strlen(e ? e->msg : "docker step failed"));
        jr->core->end_step(jr, false);
    } else {
        if (code != 0)
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "Process completed with exit code %lld.",
                     code);
        jr->dok = code == 0;
        read_docker_files(jr);
    }
}

/* The files are empty: start the step's container. */
static void
launch_docker_step(struct jobrun *jr)
{
    struct dockerstep_cbs cbs = {.on_log = dstep_log, .on_output = dstep_output,
                                 .on_done = dstep_done};
    const char *binds[] = {jr->x->workspace_mount, jr->x->act_mount, NULL};
    struct dockerstep_opts o = {
        .image = jr->dimage,
        .allow_pull = true,
        .entrypoint = jr->dentryv ? (const char *const *)jr->dentryv : NULL,
        .cmd = jr->dargs ? (const char *const *)jr->dargs : NULL,
        .env = (const char *const *)jr->denvp,
        .workdir = jr->x->workspace,
        .binds = binds,
        .network = jr->x->network,
        .labels = jr->dlabels,
        .limits = jr->x->limits,
    };
    struct err e = {0};

    jr->phase = PH_RUNNING;
    if (jr_checkpoint(jr, "docker", &e) < 0 ||
        dockerstep_run(jr->loop, jr->x->docker, &o, &cbs, jr, &jr->dstep, &e) < 0)
        jr_fail_step(jr, e.msg);
}

/* `uses: docker://IMAGE`: with.entrypoint and with.args as docker does. */
void
jr_docker_step(struct jobrun *jr, json_t *ctx)
{
    const struct wf_step *s = jr_step(jr);
    struct expr_env ee = jr_expr_env(jr, ctx);
    json_t *step_env = NULL, *with = NULL;
    char **args = NULL, *image = NULL;
    size_t nargs = 0;
    struct err e = {0};

    if ((yeval_node(jr_file(jr), s->env, &ee, &step_env, &e)) < 0 ||
        (yeval_node(jr_file(jr), s->with, &ee, &with, &e)) < 0 ||
        (jr_eval_str(jr, &s->uses, ctx, &image, &e)) < 0) {
        jr->phase = PH_RUNNING;
        jr_fail_step(jr, e.msg);
        goto out;
    }
    json_t *own = step_env;
    step_env = jr_step_env(jr, json_is_object(own) ? own : NULL, false);
    json_decref(own);
    const char *argstr = json_string_value(json_object_get(with, "args"));
    if (argstr && *argstr && dockeropts_split(argstr, "with.args", &args, &nargs, &e) < 0) {
        jr->phase = PH_RUNNING;
        jr_fail_step(jr, e.msg);
        goto out;
    }
    jr_container_step(jr, ctx, image + strlen("docker://"),
                      json_string_value(json_object_get(with, "entrypoint")), args, step_env,
                      with, NULL);
out:
    json_decref(step_env);
    json_decref(with);
    free(image);
}

void
jr_container_step(struct jobrun *jr, json_t *ctx, const char *image, const char *entry,
                  char **args, json_t *step_env, json_t *with, json_t *extra_env)
{
    const struct wf_step *s = jr_step(jr);
    struct err e = {0};
    int rc;

    if (jr->x->docker == NULL || jr->x->workspace_mount == NULL) {
        err_set(&e, -ENOTSUP, "uses: %s: container steps need a job in a container "
                "(map the label to docker://IMAGE)", s->uses.v);
        goto fail;
    }
    struct stepenv_in in = {
        .base_env = NULL, .job_env = jr->job_env, .container_env = jr->container_env,
        .github = json_object_get(ctx, "github"), .step_id = jr_cur_id(jr),
        .workspace = jr->x->workspace, .label = jr->label,
        .step_env = json_is_object(step_env) ? step_env : NULL,
        .with = json_is_object(with) ? with : NULL, .uses = true,
        .extra_path = NULL, .file_dir = jr->x->file_dir, .gitea = jr->gitea,
    };
    json_decref(jr->cur_env);
    jr->cur_env = stepenv_build(&in);
    if (json_is_object(extra_env))
        json_object_update(jr->cur_env, extra_env);
    json_object_del(jr->cur_env, "PATH"); /* the step image's own PATH applies */
    /* Kept until the container starts: first the file-command files are emptied. */
    jr->denvp = stepenv_to_envp(jr->cur_env);
    jr->dargs = args;
    args = NULL;
    jr->dimage = xstrdup(image);
    jr->dlabels = dockerexec_step_labels(jr->x);
    char **entryv = NULL;
    size_t nentry = 0;
    if (entry && *entry && s->kind == WF_STEP_USES_DOCKER) {
        /* docker:// steps: with.entrypoint is one word (doc/workflow-semantics.md §12.5) */
        entryv = xcalloc(2, sizeof *entryv);
        entryv[0] = xstrdup(entry);
    } else if (entry && *entry &&
               dockeropts_split(entry, "entrypoint", &entryv, &nentry, &e) < 0) {
        goto fail;
    }
    jr->dentryv = entryv;
    static const char *const files[] = {"envs.txt", "outputcmd.txt", "statecmd.txt",
                                        "pathcmd.txt", "SUMMARY.md"};
    jr->phase = PH_DPREP;
    jr->dprep_left = 5;
    for (uint32_t i = 0; i < 5; i++) {
        char *path = xasprintf("%s/%s", jr->x->file_dir, files[i]);
        rc = agentconn_write_file(jr->x->conn, DFILE_ID + i, path, 0666, "", 0, &e);
        free(path);
        if (rc < 0)
            goto fail;
    }
    return;
fail:
    dockeropts_words_free(args);
    jr->phase = PH_RUNNING;
    jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, e.msg, strlen(e.msg));
    jr->core->end_step(jr, false);
}

void
jr_container_event(struct jobrun *jr, const struct agentconn_event *ev)
{
    const struct agentp_msg *m = ev->msg;
    struct err e = {0};

    switch (ev->kind) {
    case AGENTCONN_FILE_WRITTEN:
        if (jr->phase == PH_DPREP && m->id >= DFILE_ID && --jr->dprep_left == 0)
            launch_docker_step(jr);
        break;
    case AGENTCONN_EXITED:
        if (jr->phase == PH_DREAD && m->id == jr->cur + 1) {
            bool ok = jr->dok;
            if (m->exit_code != 0)
                jr_emit(jr, (int)jr->cur, JOBRUN_WARNING,
                     "file commands not read: the job image needs /bin/sh and cp", 59);
            else
                jr_apply_files(jr, m, &ok);
            jr->core->end_step(jr, ok);
        }
        break;
    case AGENTCONN_ERROR:
        if (jr->phase == PH_DREAD && m->id == jr->cur + 1) {
            jr_emitf(jr, (int)jr->cur, JOBRUN_WARNING, "file commands not read: %s",
                  m->text ? m->text : "");
            jr->core->end_step(jr, jr->dok);
        } else if (jr->phase == PH_DPREP && m->id >= DFILE_ID) {
            err_set(&e, -EIO, "preparing the step's files: %s", m->text ? m->text : "");
            jr->phase = PH_RUNNING;
            jr_fail_step(jr, e.msg);
        }
        break;
    default:
        break;
    }
}

bool
jr_container_cancel(struct jobrun *jr)
{
    if (jr->dstep == NULL)
        return false;
    dockerstep_cancel(jr->dstep);
    return true;
}
