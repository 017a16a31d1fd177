/* jobrun.c: one job run on an executor (see jobrun.h). A state machine on the loop: set up
 * the executor, then for each step evaluate `if`, prepare env/script, write the script through
 * the agent, run it, turn its output into masked lines and commands, read its env files, and
 * finally evaluate job outputs, close the executor and report. */
#include "jobrun.h"
#include "jobrun-int.h"

#include "action.h"
#include "dockeropts.h"
#include "dockerexec.h"
#include "dockerstep.h"
#include "envfile.h"
#include "expr.h"
#include "profile.h"
#include "runner/buf.h"
#include "runner/clock.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "shell.h"
#include "stepenv.h"
#include "wfcmd.h"
#include "yeval.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int jr_minutes(const char *file, const struct ynode *n, const json_t *v, double *out,
                      struct err *e);

#define LINE_MAX_BYTES (64 * 1024) /* longer lines are split */
#define CANCEL_GRACE_MS 7500
/* How long past a step's timeout plus grace, or a stop's grace, the agent's answer is awaited
 * before the job gives up on it; and how long a forced stop waits at all. */
#define STOP_SLACK_MS 10000
#define FORCE_WAIT_MS 3000

/* What jr->watch is waiting for, in increasing precedence. */
enum jr_watch {
    WATCH_NONE,
    WATCH_TIMEOUT, /* the agent ends the running step at its timeout */
    WATCH_STOP,    /* the agent stops the running step after a cancel */
    WATCH_FORCE,   /* a forced stop: the job ends now, whatever the agent does */
};

static void watch_arm(struct jobrun *jr, enum jr_watch kind, uint64_t ms);

/* A JSON string of s, or "" when s is not valid UTF-8. */
static json_t *
jstring_or_empty(const char *s)
{
    json_t *v = json_string(s);

    return v ? v : json_string("");
}

static void finish_job(struct jobrun *jr);
static void stop_running_step(struct jobrun *jr, uint32_t grace);
static void hash_failed(struct jobrun *jr, const char *why);

#define HASH_STEP 0xfffff100u

/* ---------------------------------------------------------------- output */

void
jr_emit(struct jobrun *jr, int step, enum jobrun_kind kind, const char *text, size_t len)
{
    if (jr->in_post)
        step = -1; /* a pre or post stage's lines are the job's */
    /* One buffer per job run, reused for every line (this is the per-line hot path). */
    buf_reset(&jr->masked);
    mask_apply(jr->mask, text, len, &jr->masked);
    if (jr->sink->log)
        jr->sink->log(jr->sink_arg, jr, step, kind, buf_str(&jr->masked), jr->masked.len);
}

void __attribute__((format(printf, 4, 5)))
jr_emitf(struct jobrun *jr, int step, enum jobrun_kind kind, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n >= 0) {
        jr_emit(jr, step, kind, s, (size_t)n);
        free(s);
    }
}

/* Tells the sink a step started. The name is masked like every line: it may be built from a
 * secret (name: ${{ secrets.X }}), and a sink never sees unmasked text. */
static void
announce_step(struct jobrun *jr, const char *name)
{
    char *shown;

    if (jr->sink->step_started == NULL)
        return;
    shown = mask_str(jr->mask, name);
    jr->sink->step_started(jr->sink_arg, jr, (int)jr->cur, shown);
    free(shown);
}

static bool
unsecure_allowed(struct jobrun *jr)
{
    const char *v = json_string_value(json_object_get(jr->cur_env, "ACTIONS_ALLOW_UNSECURE_COMMANDS"));

    return v && strcmp(v, "true") == 0;
}

static void
add_path(struct jobrun *jr, const char *dir)
{
    size_t i;
    json_t *d;

    if (dir == NULL || *dir == '\0')
        return;
    json_array_foreach(jr->extra_path, i, d) {
        if (strcmp(json_string_value(d), dir) == 0) {
            json_array_remove(jr->extra_path, i);
            break;
        }
    }
    json_array_insert_new(jr->extra_path, 0, json_string(dir));
}

const char *
jr_cur_id(struct jobrun *jr)
{
    if (jr->in_post || jr->cur >= jr->wj->n_steps) /* a pre or post stage: its step's id */
        return jr->post_id ? jr->post_id : "post";
    if (jr->frame)
        return jr->frame->cur_id;
    return jr->wj->steps[jr->cur].eff_id;
}

const struct wf_step *
jr_step(struct jobrun *jr)
{
    return jr->frame ? &jr->frame->steps[jr->frame->cur] : &jr->wj->steps[jr->cur];
}

const char *
jr_file(struct jobrun *jr)
{
    return jr->frame ? jr->frame->act->file : jr->file;
}

/* One complete line of step output. */
static void
handle_line(struct jobrun *jr, int stream, const char *line, size_t len)
{
    int step = jr->in_post ? -1 : (int)jr->cur;
    enum jobrun_kind plain = stream == AGENTP_STDERR ? JOBRUN_ERR : JOBRUN_OUT;
    struct wfcmd c;

    switch (wfcmd_process(&jr->cmds, line, len, &c)) {
    case WFCMD_NONE:
    case WFCMD_IGNORED:
        jr_emit(jr, step, plain, line, len);
        return;
    case WFCMD_RESUMED:
        return;
    case WFCMD_RUN:
        break;
    }
    const char *name = wfcmd_prop(&c, "name");
    /* What is echoed is act_runner's choice, so that Gitea's log viewer shows what it shows
     * for act_runner: add-mask and stop-commands (and the line resuming them) leave no row;
     * the commands that change state (outputs, state, env, path, matchers, echo) are
     * written as they came, and Gitea hides the matcher lines itself. */
    if (strcmp(c.name, "set-output") == 0 || strcmp(c.name, "save-state") == 0 ||
        strcmp(c.name, "set-env") == 0 || strcmp(c.name, "add-path") == 0 ||
        strcmp(c.name, "echo") == 0 || strcmp(c.name, "add-matcher") == 0 ||
        strcmp(c.name, "remove-matcher") == 0)
        jr_emit(jr, step, JOBRUN_COMMAND, line, len);
    if (strcmp(c.name, "add-mask") == 0) {
        if (c.data[0]) {
            mask_add(jr->mask, c.data);
            json_array_append_new(jr->added_masks, jstring_or_empty(c.data));
        }
    } else if (strcmp(c.name, "set-output") == 0 && name) {
        json_object_set_new(jr->cur_outputs, name, jstring_or_empty(c.data));
    } else if (strcmp(c.name, "save-state") == 0 && name) {
        json_t *st = json_object_get(jr->state, jr_cur_id(jr));
        if (st == NULL) {
            st = json_object();
            json_object_set_new(jr->state, jr_cur_id(jr), st);
        }
        json_object_set_new(st, name, jstring_or_empty(c.data));
    } else if (strcmp(c.name, "set-env") == 0 || strcmp(c.name, "add-path") == 0) {
        if (!unsecure_allowed(jr)) {
            jr_emitf(jr, step, JOBRUN_ERROR,
                  "The `%s` command is disabled. Please upgrade to using Environment Files or "
                  "opt into unsafe commands by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` "
                  "environment variable to `true`.", c.name);
        } else if (strcmp(c.name, "add-path") == 0) {
            add_path(jr, c.data);
        } else if (name) {
            json_object_set_new(jr->job_env, name, jstring_or_empty(c.data));
        }
    } else if (strcmp(c.name, "group") == 0) {
        jr_emit(jr, step, JOBRUN_GROUP, c.data, strlen(c.data));
    } else if (strcmp(c.name, "endgroup") == 0) {
        jr_emit(jr, step, JOBRUN_ENDGROUP, "", 0);
    } else if (strcmp(c.name, "error") == 0 || strcmp(c.name, "warning") == 0 ||
               strcmp(c.name, "notice") == 0 || strcmp(c.name, "debug") == 0) {
        enum jobrun_kind k = c.name[0] == 'e'   ? JOBRUN_ERROR
                             : c.name[0] == 'w' ? JOBRUN_WARNING
                             : c.name[0] == 'n' ? JOBRUN_NOTICE
                                                : JOBRUN_DEBUG;
        const char *f = wfcmd_prop(&c, "file"), *l = wfcmd_prop(&c, "line");
        const char *title = wfcmd_prop(&c, "title");
        if (f)
            jr_emitf(jr, step, k, "%s%s%s: %s%s%s", f, l ? ":" : "", l ? l : "", title ? title : "",
                  title ? ": " : "", c.data);
        else
            jr_emitf(jr, step, k, "%s%s%s", title ? title : "", title ? ": " : "", c.data);
    } else if (strcmp(c.name, "stop-commands") == 0 || strcmp(c.name, "echo") == 0 ||
               strcmp(c.name, "add-matcher") == 0 || strcmp(c.name, "remove-matcher") == 0) {
        /* consumed */
    } else {
        jr_emit(jr, step, plain, line, len);
    }
    wfcmd_free(&c);
}

/* Hands one line of output on as rows of at most LINE_MAX_BYTES, cut where no secret is
 * split (mask_cut()): each row is masked on its own, so a secret across a cut would be
 * printed as two harmless-looking halves. */
static void
emit_line(struct jobrun *jr, int stream, const char *line, size_t len)
{
    while (len > LINE_MAX_BYTES) {
        size_t cut = mask_cut(jr->mask, line, len, LINE_MAX_BYTES);
        handle_line(jr, stream, line, cut);
        line += cut;
        len -= cut;
    }
    handle_line(jr, stream, line, len);
}

/* Splits a chunk of a stream into lines; a partial line waits for the rest. A line longer
 * than LINE_MAX_BYTES is cut into rows; the bytes after a cut that could belong to a secret
 * starting before it (the longest secret's length minus one) are waited for first, as the
 * masker does for split writes. */
static void
feed_output(struct jobrun *jr, int stream, const uint8_t *p, size_t n)
{
    struct buf *b = &jr->line[stream == AGENTP_STDERR ? 1 : 0];
    size_t maxlen = mask_maxlen(jr->mask), full = LINE_MAX_BYTES + (maxlen ? maxlen - 1 : 0);

    while (n > 0) {
        const uint8_t *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;

        if (b->len + take >= full) {
            size_t room = full - b->len, cut;
            buf_append(b, p, room);
            cut = mask_cut(jr->mask, b->data, b->len, LINE_MAX_BYTES);
            handle_line(jr, stream, b->data, cut);
            memmove(b->data, b->data + cut, b->len - cut);
            b->len -= cut;
            b->data[b->len] = '\0';
            p += room;
            n -= room;
            continue;
        }
        buf_append(b, p, take);
        if (nl == NULL)
            return;
        size_t l = b->len;
        if (l && b->data[l - 1] == '\r')
            l--;
        emit_line(jr, stream, buf_str(b), l);
        buf_reset(b);
        p += take + 1;
        n -= take + 1;
    }
}

void
jr_flush_output(struct jobrun *jr)
{
    for (int i = 0; i < 2; i++)
        if (jr->line[i].len) {
            emit_line(jr, i ? AGENTP_STDERR : AGENTP_STDOUT, jr->line[i].data, jr->line[i].len);
            buf_reset(&jr->line[i]);
        }
}

/* ---------------------------------------------------------------- contexts */

const char *
jr_job_status(struct jobrun *jr)
{
    /* In a composite action's main steps, success() and failure() are about that action's
     * own steps only (github.action_status), not the job's or an enclosing action's: one
     * called with if: always() after a failure runs its steps (GitHub's ADR 1438). */
    bool failed = jr->frame && !jr->in_post ? jr->frame->failed : jr->job_failed;

    return jr->cancelled ? "cancelled" : failed ? "failure" : "success";
}

/* Returns a new contexts object for the current point of the job. */
json_t *
jr_contexts(struct jobrun *jr, json_t *env)
{
    json_t *c = json_copy(jr->base), *job = json_object();
    json_t *gh = json_copy(json_object_get(jr->base, "github"));

    if (jr->x && json_is_object(jr->x->job_ctx))
        json_object_update(job, jr->x->job_ctx);
    json_object_set_new(job, "status", json_string(jr_job_status(jr)));
    json_object_set_new(c, "job", job);
    json_object_set(c, "steps", jr->frame ? jr->frame->steps_ctx : jr->steps);
    json_object_set(c, "runner", jr->runner);
    if (env) {
        json_object_set(c, "env", env);
    } else if (jr->frame) {
        /* Inside a composite action, `env` is what its steps' processes get: the job env with
         * the calling step's env: (and enclosing callers') over it, as in act and GitHub; also
         * for if:, with: and the action's outputs. */
        json_t *merged = json_copy(jr->job_env);
        json_object_update(merged, jr->frame->env);
        json_object_set_new(c, "env", merged);
    } else {
        json_object_set(c, "env", jr->job_env);
    }
    json_object_set_new(gh, "workspace", json_string(jr->x->workspace ? jr->x->workspace : ""));
    if (jr->phase != PH_SETUP && jr->cur < jr->wj->n_steps)
        json_object_set_new(gh, "action", json_string(jr_cur_id(jr)));
    if (jr->frame) {
        /* A composite action sees its own inputs and no secrets (§12.6). */
        json_object_set(c, "inputs", jr->frame->inputs);
        json_object_set_new(c, "secrets", json_object());
        json_object_set_new(gh, "action_path", json_string(jr->frame->action_path));
        json_object_set_new(gh, "action_status",
                            json_string(jr->frame->failed ? "failure" : "success"));
        if (jr->frame->action_repo)
            json_object_set_new(gh, "action_repository", json_string(jr->frame->action_repo));
        if (jr->frame->action_ref)
            json_object_set_new(gh, "action_ref", json_string(jr->frame->action_ref));
    }
    json_object_set_new(c, "github", gh);
    return c;
}

/* hashFiles(): evaluation is synchronous, hashing is not. A step that mentions hashFiles is
 * first evaluated in collect mode, which records every pattern list asked for; the agent then
 * hashes them where the workspace is (next to the steps), and the step is evaluated for real
 * with the results. */
int
jr_hash_files(void *arg, const char *const *patterns, size_t n, char **out, struct err *e)
{
    struct jobrun *jr = arg;
    json_t *key = json_array();
    char *k;

    *out = NULL;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(key, jstring_or_empty(patterns[i]));
    k = json_dumps(key, JSON_COMPACT);
    const char *hit = json_string_value(json_object_get(jr->hashes, k));
    if (hit) {
        *out = xstrdup(hit);
    } else if (jr->hash_collect) {
        json_array_append(jr->hash_todo, key);
        json_object_set_new(jr->hashes, k, json_null()); /* asked for once */
        *out = xstrdup("");
    } else {
        err_set(e, ERR_INVALID, "hashFiles(%s): its arguments changed between evaluations", k);
    }
    json_decref(key);
    free(k);
    return *out ? 0 : ERR_INVALID;
}

static bool
mentions_hashfiles(const char *s)
{
    return s && strcasestr(s, "hashfiles") != NULL;
}

static bool
node_mentions_hashfiles(const struct ynode *n)
{
    if (n == NULL)
        return false;
    if (n->kind == YNODE_SCALAR)
        return mentions_hashfiles(n->str);
    for (size_t i = 0; i < n->n; i++)
        if ((n->kind == YNODE_MAP && node_mentions_hashfiles(n->keys[i])) ||
            node_mentions_hashfiles(n->items[i]))
            return true;
    return false;
}

/* Evaluates every expression of step s in collect mode; results and errors are dropped. */
static void
collect_hashes(struct jobrun *jr, const struct wf_step *s, json_t *ctx)
{
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr), .hash_files = jr_hash_files,
                          .arg = jr};
    const struct wf_str *strs[] = {&s->name, &s->run, &s->shell, &s->working_directory, &s->uses};
    const struct ynode *nodes[] = {s->env, s->with, s->continue_on_error, s->timeout_minutes};
    struct err e = {0};
    bool ok;
    json_t *v;
    char *str;

    jr->hash_collect = true;
    (void)expr_eval_if(s->if_.v ? s->if_.v : "", "success()", &ee, &ok, &e);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (strs[i]->v && expr_interpolate(strs[i]->v, &ee, &str, &e) == 0)
            free(str);
    }
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        v = NULL;
        if (yeval_node(jr_file(jr), nodes[i], &ee, &v, &e) == 0)
            json_decref(v);
    }
    jr->hash_collect = false;
}

/* Runs the agent's hash mode for the next pattern list, or resumes the step when none is left. */
static void
hash_next(struct jobrun *jr)
{
    struct err e = {0};
    json_t *pats;

    if (json_array_size(jr->hash_todo) == 0) {
        jr->hash_ready = true;
        jr->phase = PH_STEPS;
        jr_next_step(jr);
        return;
    }
    pats = json_array_get(jr->hash_todo, 0);
    size_t n = json_array_size(pats);
    const char **argv = xcalloc(n + 3, sizeof *argv);
    argv[0] = jr->x->agent_cmd;
    argv[1] = "--hash-files";
    argv[2] = jr->x->workspace;
    for (size_t i = 0; i < n; i++)
        argv[3 + i] = json_string_value(json_array_get(pats, i));
    struct agentconn_run r = {.step = HASH_STEP, .argv = argv, .argc = n + 3};
    buf_reset(&jr->hash_out);
    jr->phase = PH_HASHING;
    if (agentconn_run(jr->x->conn, &r, &e) < 0)
        hash_failed(jr, e.msg);
    free(argv);
}

/* The hash of the first pending pattern list arrived (or failed). */
static void
hash_done(struct jobrun *jr, const struct agentp_msg *m)
{
    json_t *pats = json_array_get(jr->hash_todo, 0);
    char *k = json_dumps(pats, JSON_COMPACT);
    size_t l = jr->hash_out.len;

    while (l && (jr->hash_out.data[l - 1] == '\n' || jr->hash_out.data[l - 1] == '\r'))
        l--;
    if (m->exit_code != 0) {
        char *why = xasprintf("hashFiles(%s) failed (exit %d)", k, m->exit_code);
        free(k);
        hash_failed(jr, why);
        free(why);
        return;
    }
    json_object_set_new(jr->hashes, k, json_stringn(buf_str(&jr->hash_out), l));
    free(k);
    json_array_remove(jr->hash_todo, 0);
    hash_next(jr);
}

static void
set_step_result(struct jobrun *jr, const char *outcome, const char *conclusion)
{
    const struct wf_step *s = jr_step(jr);
    json_t *ent = json_object();

    json_object_set_new(ent, "outputs", jr->cur_outputs ? json_incref(jr->cur_outputs) : json_object());
    json_object_set_new(ent, "outcome", json_string(outcome));
    json_object_set_new(ent, "conclusion", json_string(conclusion));
    if (jr->frame) {
        /* A nested step of a composite action: only the composite sees it. */
        json_object_set_new(jr->frame->steps_ctx, s->eff_id, ent);
        if (strcmp(conclusion, "failure") == 0)
            jr->frame->failed = true;
        return;
    }
    json_object_set_new(jr->steps, s->eff_id, ent);
    json_t *li = json_object();
    json_object_set_new(li, "id", json_string(s->eff_id));
    char *shown = mask_str(jr->mask, jr->cur_name ? jr->cur_name : s->eff_id);
    json_object_set_new(li, "name", jstring_or_empty(shown)); /* reports show it: masked */
    free(shown);
    json_object_set_new(li, "outcome", json_string(outcome));
    json_object_set_new(li, "conclusion", json_string(conclusion));
    json_array_append_new(jr->step_list, li);
    if (strcmp(conclusion, "failure") == 0)
        jr->job_failed = true;
    if (jr->sink->step_finished)
        jr->sink->step_finished(jr->sink_arg, jr, (int)jr->cur, outcome, conclusion);
}

static void
clear_step(struct jobrun *jr)
{
    jr->step_serial++;
    json_decref(jr->cur_env);
    json_decref(jr->cur_outputs);
    jr->cur_env = jr->cur_outputs = NULL;
    free(jr->script_path);
    free(jr->script);
    free(jr->cwd);
    free(jr->cur_name);
    jr->script_path = jr->script = jr->cwd = jr->cur_name = NULL;
    shell_argv_free(jr->argv);
    jr->argv = NULL;
    if (jr->denvp) {
        for (char **p = jr->denvp; *p; p++)
            free(*p);
        free(jr->denvp);
        jr->denvp = NULL;
    }
    dockeropts_words_free(jr->dargs);
    jr->dargs = NULL;
    free(jr->dimage);
    jr->dimage = NULL;
    dockeropts_words_free(jr->dentryv);
    jr->dentryv = NULL;
    json_decref(jr->dlabels);
    jr->dlabels = NULL;
    json_object_clear(jr->hashes);
    json_array_clear(jr->hash_todo);
    jr->hash_ready = false;
    buf_reset(&jr->line[0]);
    buf_reset(&jr->line[1]);
}

/* Moves to the next step: of the innermost composite, or of the job. */
static void
next_index(struct jobrun *jr)
{
    if (jr->frame)
        jr->frame->cur++;
    else
        jr->cur++;
}

/* Ends the current step: outcome from ok, conclusion after continue-on-error. */
void
jr_end_step(struct jobrun *jr, bool ok)
{
    if (jr->in_post) {
        /* A docker action's pre or post stage (its container) ended: no step result. */
        clear_step(jr);
        jr_stage_end(jr, ok);
        return;
    }
    const struct wf_step *s = jr_step(jr);
    const char *outcome = ok ? "success" : "failure", *conclusion = outcome;

    if (!ok && s->continue_on_error) {
        json_t *ctx = jr_contexts(jr, jr->cur_env), *v = NULL;
        struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr),
                              .hash_files = jr_hash_files, .arg = jr};
        struct err e = {0};

        if (yeval_node(jr_file(jr), s->continue_on_error, &ee, &v, &e) == 0 && expr_truthy(v))
            conclusion = "success";
        else if (e.msg[0])
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "continue-on-error: %s", e.msg);
        json_decref(v);
        json_decref(ctx);
    }
    set_step_result(jr, outcome, conclusion);
    clear_step(jr);
    jr->phase = PH_STEPS;
    next_index(jr);
    if (jr->replaying) {
        jr->defer_next = true; /* after the replay: nothing new goes to the agent before */
        return;
    }
    jr_next_step(jr);
}

void
jr_fail_step(struct jobrun *jr, const char *msg)
{
    jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, msg, strlen(msg));
    jr_end_step(jr, false);
}

/* hashFiles() could not be computed: the step fails before it starts. */
static void
hash_failed(struct jobrun *jr, const char *why)
{
    const struct wf_step *s = jr_step(jr);

    if (jr->frame == NULL)
        announce_step(jr, s->name.v ? s->name.v : s->eff_id);
    jr->cur_outputs = json_object();
    jr->phase = PH_RUNNING;
    jr_fail_step(jr, why);
}

/* ---------------------------------------------------------------- steps */

/* Evaluates a string node; NULL when absent. */
int
jr_eval_str(struct jobrun *jr, const struct wf_str *s, json_t *ctx, char **out, struct err *e)
{
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr), .hash_files = jr_hash_files, .arg = jr};

    *out = NULL;
    if (s->v == NULL)
        return 0;
    if (expr_interpolate(s->v, &ee, out, e) < 0)
        return err_prefix(e, "%s:%d:%d: ", jr_file(jr), s->pos.line, s->pos.col);
    return 0;
}

char *
jr_display_name(struct jobrun *jr, const struct wf_step *s, json_t *ctx)
{
    char *name = NULL;
    struct err e = {0};

    if (s->name.v && jr_eval_str(jr, &s->name, ctx, &name, &e) == 0 && name && *name)
        return name;
    free(name);
    if (s->uses.v)
        return xasprintf("Run %s", s->uses.v);
    if (s->run.v) {
        size_t l = strcspn(s->run.v, "\n");
        return xasprintf("Run %.*s", (int)(l > 80 ? 80 : l), s->run.v);
    }
    return xstrdup(s->eff_id);
}

/* Prepares and starts the current run step (script first, RUN when it is written). */
static void
start_run_step(struct jobrun *jr, json_t *ctx)
{
    const struct wf_step *s = jr_step(jr);
    struct jr_frame *f = jr->frame;
    struct err e = {0};
    json_t *step_env = NULL, *ectx = NULL;
    char *run = NULL, *step_shell = NULL, *job_shell = NULL, *wd = NULL;
    struct shell_cmd sh = {0};
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr), .hash_files = jr_hash_files, .arg = jr};
    int rc;

    /* Step env (with the job env as `env`), then the rest sees env = job env + step env. */
    rc = yeval_node(jr_file(jr), s->env, &ee, &step_env, &e);
    if (rc < 0)
        goto fail;
    json_t *own = step_env;
    step_env = jr_step_env(jr, json_is_object(own) ? own : NULL, true);
    json_decref(own);
    struct stepenv_in in = {
        .base_env = jr->x->base_env,
        .job_env = jr->job_env, .container_env = jr->container_env,
        .github = json_object_get(ctx, "github"), .step_id = jr_cur_id(jr),
        .action_path = f ? f->action_path : NULL,
        .action_repository = f ? f->action_repo : NULL,
        .action_ref = f ? f->action_ref : NULL,
        .workspace = jr->x->workspace, .label = jr->label, .step_env = step_env,
        .extra_path = jr->extra_path, .base_path = jr->x->base_path,
        .file_dir = jr->x->file_dir, .gitea = jr->gitea,
    };
    jr->cur_env = stepenv_build(&in);
    ectx = jr_contexts(jr, jr->cur_env);
    if ((rc = jr_eval_str(jr, &s->run, ectx, &run, &e)) < 0)
        goto fail;
    if ((rc = jr_eval_str(jr, &s->shell, ectx, &step_shell, &e)) < 0)
        goto fail;
    /* The workflow's defaults.run are not an action's: a composite's steps use their own. */
    if (f == NULL && jr->wj->defaults_shell.v &&
        (rc = jr_eval_str(jr, &jr->wj->defaults_shell, ectx, &job_shell, &e)) < 0)
        goto fail;
    shell_resolve(step_shell, job_shell, f ? NULL : jr->plan->wf->defaults_shell.v,
                  jr->wj->container != NULL, jr->x->bash, &sh);
    const struct wf_str *wds = s->working_directory.v ? &s->working_directory
                               : f == NULL && jr->wj->defaults_working_directory.v
                                   ? &jr->wj->defaults_working_directory
                                   : NULL;
    if (wds && (rc = jr_eval_str(jr, wds, ectx, &wd, &e)) < 0)
        goto fail;
    if (wd == NULL && f == NULL && jr->plan->wf->defaults_working_directory.v)
        wd = xstrdup(jr->plan->wf->defaults_working_directory.v);
    if (wd == NULL || *wd == '\0')
        jr->cwd = xstrdup(jr->x->workspace);
    else if (wd[0] == '/')
        jr->cwd = xstrdup(wd);
    else
        jr->cwd = xasprintf("%s/%s", jr->x->workspace, wd);
    jr->timeout_ms = 0;
    if (s->timeout_minutes) {
        json_t *v = NULL;
        double d;
        struct expr_env te = {.contexts = ectx, .job_status = jr_job_status(jr),
                              .hash_files = jr_hash_files, .arg = jr};
        rc = yeval_node(jr_file(jr), s->timeout_minutes, &te, &v, &e);
        if (rc == 0)
            rc = jr_minutes(jr_file(jr), s->timeout_minutes, v, &d, &e);
        json_decref(v);
        if (rc < 0)
            goto fail;
        jr->timeout_ms = (uint32_t)fmin(d * 60000.0, 4e9);
    }
    jr->script_path = xasprintf("%s/%s%s%s", jr->x->file_dir, jr_cur_id(jr), *sh.ext ? "." : "",
                                sh.ext);
    jr->script = shell_script(&sh, run);
    rc = shell_argv(sh.tmpl, jr->script_path, &jr->argv, &e);
    if (rc < 0)
        goto fail;
    jr->phase = PH_WRITING;
    rc = agentconn_write_file(jr->x->conn, (uint32_t)jr->cur + 1, jr->script_path, 0755,
                              jr->script, strlen(jr->script), &e);
    if (rc < 0)
        goto fail;
    goto out;
fail:
    jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, e.msg, strlen(e.msg));
    jr->phase = PH_RUNNING; /* end_step resets */
    jr_end_step(jr, false);
out:
    shell_cmd_free(&sh);
    free(run);
    free(step_shell);
    free(job_shell);
    free(wd);
    json_decref(step_env);
    json_decref(ectx);
}

json_t *
jr_strv_json(char *const *v)
{
    json_t *a = json_array();

    for (size_t i = 0; v && v[i]; i++)
        json_array_append_new(a, jstring_or_empty(v[i]));
    return a;
}

static struct jr_frame *frame_push(struct jobrun *jr, struct action *act, const char *uses,
                                   const char *path, const char *repo, const char *ref,
                                   json_t *inputs);

/* The composite actions the current step runs in, outermost first: all a resumed job needs
 * to enter them again (the action.yml text is parsed again; it may no longer be readable). */
static json_t *
frames_json(struct jobrun *jr)
{
    json_t *a = json_array();

    for (struct jr_frame *f = jr->frame; f; f = f->up) {
        json_t *o = json_pack("{s:s%, s:s, s:s, s:s, s:s*, s:s*, s:I, s:b, s:O, s:O, "
                              "s:O, s:O, s:O*, s:s*}",
                              "text", f->act->text ? f->act->text : "",
                              f->act->text ? f->act->text_len : (size_t)0,
                              "file", f->act->file, "uses", f->uses,
                              "path", f->action_path, "repo", f->action_repo,
                              "ref", f->action_ref, "cur", (json_int_t)f->cur,
                              "failed", f->failed, "steps", f->steps_ctx,
                              "inputs", f->inputs, "env", f->env,
                              "saved_outputs", f->saved_outputs ? f->saved_outputs : json_null(),
                              "saved_env", f->saved_env, "saved_name", f->saved_name);
        if (o)
            json_array_insert_new(a, 0, o);
    }
    return a;
}

static char *
dup_member(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));

    return v ? xstrdup(v) : NULL;
}

/* Enters again the composite actions a checkpoint was taken in (see frames_json()). */
static int
frames_restore(struct jobrun *jr, const json_t *frames, struct err *e)
{
    size_t i;
    json_t *o;

    json_array_foreach(frames, i, o) {
        const char *text = json_string_value(json_object_get(o, "text"));
        const char *file = json_string_value(json_object_get(o, "file"));
        const char *uses = json_string_value(json_object_get(o, "uses"));
        struct action *act = NULL;
        json_int_t cur = json_integer_value(json_object_get(o, "cur"));

        if (text == NULL || file == NULL || uses == NULL)
            return err_set(e, ERR_INVALID, "the job's checkpoint has a broken composite frame");
        if (action_parse(file, text, json_string_length(json_object_get(o, "text")), uses, &act,
                         e) < 0)
            return err_prefix(e, "resuming inside %s: ", uses);
        if (act->using != ACTION_COMPOSITE || cur < 0 || (size_t)cur >= act->n_steps) {
            action_free(act);
            return err_set(e, ERR_INVALID, "the job's checkpoint does not fit %s", file);
        }
        struct jr_frame *f = frame_push(jr, act, uses, json_string_value(json_object_get(o, "path")),
                                        json_string_value(json_object_get(o, "repo")),
                                        json_string_value(json_object_get(o, "ref")),
                                        json_object_get(o, "inputs"));
        f->cur = (size_t)cur;
        f->cur_id = xasprintf("%s.%s", f->id, act->steps[cur].eff_id);
        f->failed = json_is_true(json_object_get(o, "failed"));
        json_object_update(f->steps_ctx, json_object_get(o, "steps"));
        json_object_update(f->env, json_object_get(o, "env"));
        f->saved_outputs = json_is_object(json_object_get(o, "saved_outputs"))
                               ? json_deep_copy(json_object_get(o, "saved_outputs"))
                               : json_object();
        f->saved_env = json_is_object(json_object_get(o, "saved_env"))
                           ? json_deep_copy(json_object_get(o, "saved_env"))
                           : json_object();
        f->saved_name = dup_member(o, "saved_name");
    }
    return 0;
}

/* Tells the sink where the job is, before the current step runs (kind "run" or "docker").
 * Returns 0, or <0 with e set when the sink could not store it. */
static int
checkpoint(struct jobrun *jr, const char *kind, struct err *e)
{
    json_t *cp;
    int rc;

    if (jr->sink->checkpoint == NULL || jr->in_post)
        return 0; /* pre and post stages are not resumed */
    cp = json_pack("{s:i, s:s, s:I, s:I, s:I, s:O, s:O, s:O, s:O, s:O, s:O, s:b, s:b, s:b, "
                   "s:s*, s:O*, s:o, s:s*, s:s*, s:I, s:s*, s:o*}",
                   "v", 1, "kind", kind, "cur", (json_int_t)jr->cur,
                   "offset", (json_int_t)(jr->x->conn ? agentconn_offset(jr->x->conn) : 0),
                   "started_ns", (json_int_t)jr->started_ns,
                   "steps", jr->steps, "step_list", jr->step_list, "job_env", jr->job_env,
                   "extra_path", jr->extra_path, "state", jr->state, "masks", jr->added_masks,
                   "job_failed", jr->job_failed, "cancelled", jr->cancelled,
                   "timed_out", jr->timed_out, "cur_name", jr->cur_name,
                   "cur_env", jr->cur_env, "argv", jr_strv_json(jr->argv),
                   "cwd", jr->cwd, "script_path", jr->script_path,
                   "timeout_ms", (json_int_t)jr->timeout_ms, "stop_token", jr->cmds.stop_token,
                   "exec", executor_describe(jr->x));
    if (cp == NULL)
        return err_set(e, -ENOMEM, "checkpoint: cannot build the record");
    /* Post stages still to run: a resumed job runs them at its end. */
    json_object_set(cp, "posts", jr->posts);
    if (jr->frame)
        json_object_set_new(cp, "frames", frames_json(jr));
    rc = jr->sink->checkpoint(jr->sink_arg, jr, cp);
    if (rc < 0) {
        err_set(e, rc, "the runner could not save the job's state; not starting the step");
    } else if (jr->durable && jr->x->conn) {
        /* Everything before the checkpoint is stored: the agent may drop it. */
        uint64_t off = agentconn_offset(jr->x->conn);
        struct err ae = {0};
        if (off > jr->acked && agentconn_ack(jr->x->conn, off, &ae) == 0)
            jr->acked = off;
    }
    json_decref(cp);
    return rc;
}

/* The script is in place: run it. */
void
jr_run_script(struct jobrun *jr)
{
    char **envp = stepenv_to_envp(jr->cur_env);
    size_t envc = 0, argc = 0;
    struct err e = {0};

    while (envp[envc])
        envc++;
    while (jr->argv[argc])
        argc++;
    struct agentconn_run r = {
        .step = (uint32_t)jr->cur + 1,
        .argv = (const char *const *)jr->argv,
        .argc = argc,
        .env = (const char *const *)envp,
        .envc = envc,
        .cwd = jr->cwd,
        .dir = jr->x->file_dir,
        .timeout_ms = jr->timeout_ms,
        .grace_ms = CANCEL_GRACE_MS,
    };
    jr->phase = PH_RUNNING;
    int rc = checkpoint(jr, "run", &e);
    if (rc == 0)
        rc = agentconn_run(jr->x->conn, &r, &e);
    if (rc == 0 && jr->timeout_ms > 0)
        watch_arm(jr, WATCH_TIMEOUT, (uint64_t)jr->timeout_ms + CANCEL_GRACE_MS + STOP_SLACK_MS);
    for (size_t i = 0; i < envc; i++)
        free(envp[i]);
    free(envp);
    if (rc < 0)
        jr_fail_step(jr, e.msg);
}

/* ---------------------------------------------------------------- docker:// steps */

static void
dstep_output(int stream, const char *p, size_t n, void *arg)
{
    struct jobrun *jr = arg;

    if (jr->phase == PH_RUNNING)
        feed_output(jr, stream == 2 ? AGENTP_STDERR : AGENTP_STDOUT, (const uint8_t *)p, n);
}

static void
dstep_log(const char *line, void *arg)
{
    struct jobrun *jr = arg;

    jr_emit(jr, (int)jr->cur, JOBRUN_INFO, line, strlen(line));
}

#define DFILE_ID 0x80000000u

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
        jr_end_step(jr, jr->dok);
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
        jr_end_step(jr, false);
    } else if (rc < 0) {
        jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, e ? e->msg : "docker step failed",
             strlen(e ? e->msg : "docker step failed"));
        jr_end_step(jr, false);
    } else {
        if (code != 0)
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "Process completed with exit code %lld.", code);
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
    struct err e = {0};

    jr->phase = PH_RUNNING;
    if (checkpoint(jr, "docker", &e) < 0 ||
        dockerstep_run(jr->loop, jr->x->docker, &jr->dopts, &cbs, jr, &jr->dstep, &e) < 0)
        jr_fail_step(jr, e.msg);
}

/* Runs `uses: docker://IMAGE` in a container of its own on the job network, with the
 * workspace mounted; with.entrypoint and with.args as docker does. */
static void
start_docker_step(struct jobrun *jr, json_t *ctx)
{
    const struct wf_step *s = jr_step(jr);
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr),
                          .hash_files = jr_hash_files, .arg = jr};
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
        /* docker:// steps: with.entrypoint is one word (§12.5) */
        entryv = xcalloc(2, sizeof *entryv);
        entryv[0] = xstrdup(entry);
    } else if (entry && *entry &&
               dockeropts_split(entry, "entrypoint", &entryv, &nentry, &e) < 0) {
        goto fail;
    }
    jr->dentryv = entryv;
    jr->dbinds[0] = jr->x->workspace_mount;
    jr->dbinds[1] = jr->x->act_mount;
    jr->dbinds[2] = NULL;
    jr->dopts = (struct dockerstep_opts){
        .image = jr->dimage,
        .allow_pull = true,
        .entrypoint = entryv ? (const char *const *)entryv : NULL,
        .cmd = jr->dargs ? (const char *const *)jr->dargs : NULL,
        .env = (const char *const *)jr->denvp,
        .workdir = jr->x->workspace,
        .binds = jr->dbinds,
        .network = jr->x->network,
        .labels = jr->dlabels,
        .limits = jr->x->limits,
    };
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
    jr_end_step(jr, false);
}

/* ---------------------------------------------------------------- composite actions */

json_t *
jr_step_env(struct jobrun *jr, json_t *own, bool with_inputs)
{
    json_t *env = json_object();

    if (jr->frame) {
        json_object_update(env, jr->frame->env);
        if (with_inputs) {
            const char *k;
            json_t *v;
            json_object_foreach(jr->frame->inputs, k, v) {
                char *name = stepenv_input_name(k);
                if (json_is_string(v))
                    json_object_set(env, name, v);
                free(name);
            }
        }
    }
    if (json_is_object(own))
        json_object_update(env, own);
    return env;
}

static void
frame_free(struct jr_frame *f)
{
    action_free(f->act);
    free(f->uses);
    free(f->id);
    free(f->cur_id);
    free(f->action_path);
    free(f->action_repo);
    free(f->action_ref);
    json_decref(f->steps_ctx);
    json_decref(f->inputs);
    json_decref(f->env);
    json_decref(f->saved_outputs);
    json_decref(f->saved_env);
    free(f->saved_name);
    free(f);
}

/* Leaves the innermost composite: the calling step's state comes back. */
static struct jr_frame *
frame_pop(struct jobrun *jr)
{
    struct jr_frame *f = jr->frame;

    clear_step(jr);
    jr->frame = f->up;
    jr->cur_outputs = f->saved_outputs;
    jr->cur_env = f->saved_env;
    jr->cur_name = f->saved_name;
    f->saved_outputs = f->saved_env = NULL;
    f->saved_name = NULL;
    return f;
}

/* The job ends inside composite actions (the agent was lost): back to the job step. */
static void
frames_unwind(struct jobrun *jr)
{
    while (jr->frame)
        frame_free(frame_pop(jr));
}

/* A new innermost frame for act (taken), the current step's composite: its id is the step's
 * (job steps "a", nested "a.0"); empty steps context and env, a copy of inputs. */
static struct jr_frame *
frame_push(struct jobrun *jr, struct action *act, const char *uses, const char *path,
           const char *repo, const char *ref, json_t *inputs)
{
    struct jr_frame *f = xcalloc(1, sizeof *f);

    f->act = act;
    f->steps = act->steps;
    f->n = act->n_steps;
    f->uses = xstrdup(uses);
    f->id = xstrdup(jr_cur_id(jr));
    f->cur_id = xstrdup(f->id);
    f->action_path = xstrdup(path ? path : "");
    f->action_repo = repo ? xstrdup(repo) : NULL;
    f->action_ref = ref ? xstrdup(ref) : NULL;
    f->steps_ctx = json_object();
    f->inputs = json_is_object(inputs) ? json_deep_copy(inputs) : json_object();
    f->env = json_object();
    f->up = jr->frame;
    jr->frame = f;
    return f;
}

int
jr_frame_depth(struct jobrun *jr)
{
    int n = 0;

    for (struct jr_frame *f = jr->frame; f; f = f->up)
        n++;
    return n;
}

void
jr_frame_enter(struct jobrun *jr, struct action *act, const char *uses, const char *path,
               const char *repo, const char *ref, json_t *inputs, json_t *env)
{
    json_t *saved_outputs = jr->cur_outputs, *saved_env = jr->cur_env;
    char *saved_name = jr->cur_name;
    struct jr_frame *f = frame_push(jr, act, uses, path, repo, ref, inputs);
    const char *k;
    json_t *v;

    /* The calling step's env:, without INPUT_*: those come from the composite's own inputs. */
    json_object_foreach(env, k, v) {
        if (strncmp(k, "INPUT_", 6) != 0)
            json_object_set(f->env, k, v);
    }
    /* The calling step is put aside while its nested steps run. */
    f->saved_outputs = saved_outputs;
    f->saved_env = saved_env;
    f->saved_name = saved_name;
    jr->cur_outputs = jr->cur_env = NULL;
    jr->cur_name = NULL;
    jr->phase = PH_STEPS;
    jr_next_step(jr);
}

void
jr_frame_leave(struct jobrun *jr)
{
    frame_free(frame_pop(jr));
}

/* The composite's nested steps are done: its outputs, then the calling step's end. */
static void
frame_end(struct jobrun *jr)
{
    struct jr_frame *f = jr->frame;
    json_t *ctx = jr_contexts(jr, NULL);
    struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr),
                          .hash_files = jr_hash_files, .arg = jr};
    json_t *outputs = json_object();
    bool ok = !f->failed;

    for (size_t i = 0; i < f->act->n_outputs; i++) {
        const struct action_output *o = &f->act->outputs[i];
        struct err e = {0};
        char *val = NULL;

        if (o->value == NULL)
            continue;
        if (expr_interpolate(o->value, &ee, &val, &e) < 0) {
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "%s: outputs.%s.value: %s", f->act->file,
                     o->id, e.msg);
            ok = false;
            continue;
        }
        json_object_set_new(outputs, o->id, json_string(val));
        free(val);
    }
    json_decref(ctx);
    frame_free(frame_pop(jr));
    json_object_update(jr->cur_outputs, outputs);
    json_decref(outputs);
    jr->phase = PH_RUNNING;
    jr_end_step(jr, ok);
}

/* ---------------------------------------------------------------- the step loop */

static bool
step_mentions_hashfiles(const struct wf_step *s)
{
    return mentions_hashfiles(s->if_.v) || mentions_hashfiles(s->name.v) ||
           mentions_hashfiles(s->run.v) || mentions_hashfiles(s->working_directory.v) ||
           mentions_hashfiles(s->shell.v) || mentions_hashfiles(s->uses.v) ||
           node_mentions_hashfiles(s->env) || node_mentions_hashfiles(s->with) ||
           node_mentions_hashfiles(s->continue_on_error) ||
           node_mentions_hashfiles(s->timeout_minutes);
}

void
jr_next_step(struct jobrun *jr)
{
    if (jr->held && jr->phase == PH_STEPS) {
        jr->held_next = true; /* jobrun_release() goes on */
        return;
    }
    if (jr->phase == PH_STEPS && !jr->pre_done && jr_pre_next(jr))
        return; /* a pre stage runs (or its action is fetched) */
    for (;;) {
        if (jr->phase != PH_STEPS)
            return;
        struct jr_frame *f = jr->frame;
        if (f && f->cur >= f->n) {
            frame_end(jr);
            return;
        }
        if (f == NULL && jr->cur >= jr->wj->n_steps)
            break;
        const struct wf_step *s = jr_step(jr);
        json_t *ctx;

        if (f) {
            free(f->cur_id);
            f->cur_id = xasprintf("%s.%s", f->id, s->eff_id);
        }
        ctx = jr_contexts(jr, NULL);
        if (!jr->hash_ready && !jr->forced && !jr->pre_failed && step_mentions_hashfiles(s)) {
            collect_hashes(jr, s, ctx);
            json_decref(ctx);
            if (json_array_size(jr->hash_todo) > 0) {
                hash_next(jr);
                return;
            }
            jr->hash_ready = true;
            continue;
        }
        struct expr_env ee = {.contexts = ctx, .job_status = jr_job_status(jr), .hash_files = jr_hash_files, .arg = jr};
        struct err e = {0};
        bool ok = false;

        jr->cur_outputs = json_object();
        jr->cur_name = jr_display_name(jr, s, ctx);
        if (jr->forced || jr->pre_failed) {
            ok = false;
        } else if (expr_eval_if(s->if_.v ? s->if_.v : "", "success()", &ee, &ok, &e) < 0) {
            if (f == NULL)
                announce_step(jr, jr->cur_name);
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "%s:%d:%d: error in if-expression: %s",
                     jr_file(jr), s->if_.pos.line, s->if_.pos.col, e.msg);
            json_decref(ctx);
            jr->phase = PH_RUNNING;
            jr_end_step(jr, false);
            return;
        }
        if (!ok) {
            set_step_result(jr, "skipped", "skipped");
            clear_step(jr);
            json_decref(ctx);
            next_index(jr);
            continue;
        }
        if (f)
            jr_emitf(jr, (int)jr->cur, JOBRUN_INFO, "%s", jr->cur_name);
        else
            announce_step(jr, jr->cur_name);
        if (s->kind == WF_STEP_RUN)
            start_run_step(jr, ctx);
        else if (s->kind == WF_STEP_USES_DOCKER)
            start_docker_step(jr, ctx);
        else
            jr_action_start(jr, ctx);
        json_decref(ctx);
        return;
    }
    if (jr->phase == PH_STEPS && !jr_post_next(jr))
        finish_job(jr);
}

/* ---------------------------------------------------------------- events */

void
jr_apply_files(struct jobrun *jr, const struct agentp_msg *m, bool *ok)
{
    static const char *const names[] = {"GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE"};
    struct err e = {0};
    int step = jr->in_post ? -1 : (int)jr->cur;

    for (int f = AGENTP_FILE_ENV; f <= AGENTP_FILE_STATE; f++) {
        json_t *kv = NULL;
        const char *k;
        json_t *v;

        if (!(m->present & (1u << f)) || m->files[f].len == 0)
            continue;
        if (m->truncated & (1u << f))
            jr_emitf(jr, step, JOBRUN_WARNING, "%s was cut at %u bytes", names[f],
                  AGENTP_FILE_CAP);
        if (envfile_parse(names[f], (const char *)m->files[f].p, m->files[f].len, &kv, &e) < 0) {
            jr_emit(jr, step, JOBRUN_ERROR, e.msg, strlen(e.msg));
            *ok = false;
            continue;
        }
        json_t *dst = f == AGENTP_FILE_ENV      ? jr->job_env
                      : f == AGENTP_FILE_OUTPUT ? jr->cur_outputs
                                                : NULL;
        if (f == AGENTP_FILE_STATE) {
            dst = json_object_get(jr->state, jr_cur_id(jr));
            if (dst == NULL) {
                dst = json_object();
                json_object_set_new(jr->state, jr_cur_id(jr), dst);
            }
        }
        json_object_foreach(kv, k, v) {
            json_object_set(dst, k, v);
        }
        json_decref(kv);
    }
    if ((m->present & (1u << AGENTP_FILE_PATH)) && m->files[AGENTP_FILE_PATH].len) {
        char *paths = xstrndup((const char *)m->files[AGENTP_FILE_PATH].p,
                               m->files[AGENTP_FILE_PATH].len);
        char *save = NULL;
        for (char *l = strtok_r(paths, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            size_t n = strlen(l);
            if (n && l[n - 1] == '\r')
                l[n - 1] = '\0';
            add_path(jr, l);
        }
        free(paths);
    }
}

static void
on_exited(struct jobrun *jr, const struct agentp_msg *m)
{
    bool ok = m->exit_code == 0 && !(m->flags & AGENTP_EXIT_SIGNALED);

    jr_flush_output(jr);
    jr_apply_files(jr, m, &ok);
    if (m->flags & AGENTP_EXIT_TIMED_OUT && jr->timeout_ms < 60000)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "The step timed out after %.1f seconds.",
              jr->timeout_ms / 1000.0);
    else if (m->flags & AGENTP_EXIT_TIMED_OUT)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "The step timed out after %u minute%s.",
              jr->timeout_ms / 60000, jr->timeout_ms / 60000 == 1 ? "" : "s");
    else if (m->flags & AGENTP_EXIT_CANCELLED)
        jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, "The step was cancelled.", 23);
    else if (m->flags & AGENTP_EXIT_SIGNALED)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "Process was killed by signal %u.", m->signal);
    else if (m->exit_code != 0)
        jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "Process completed with exit code %d.",
              m->exit_code);
    jr_end_step(jr, ok);
}

static void on_event(void *arg, const struct agentconn_event *ev);

/* The replay is over (our HELLO came back): go on from where the job is now. */
static void
replay_done(struct jobrun *jr)
{
    const char *kind = json_string_value(json_object_get(jr->resume_cp, "kind"));

    jr->replaying = false;
    if (jr->defer_next) {
        jr->defer_next = false;
        jr_next_step(jr);
    } else if (jr->phase == PH_RUNNING && kind && strcmp(kind, "docker") == 0) {
        jr_fail_step(jr, "runnerd restarted while this docker:// step ran; its container could "
                      "not be followed again, so its outcome is unknown");
    } else if (jr->phase == PH_RUNNING && !jr->replay_started && jr->held) {
        jr->held_run = true; /* not before the server has said whether it is cancelled */
    } else if (jr->phase == PH_RUNNING && !jr->replay_started) {
        /* The RUN never reached the agent: the step has not run at all. Run it now. */
        jr_run_script(jr);
    }
    if (jr->cancelled && jr->phase == PH_RUNNING)
        stop_running_step(jr, CANCEL_GRACE_MS);
}

static void
replay_event(struct jobrun *jr, const struct agentconn_event *ev)
{
    const struct agentp_msg *m = ev->msg;

    switch (ev->kind) {
    case AGENTCONN_HELLO:
        replay_done(jr);
        return;
    case AGENTCONN_STARTED:
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1)
            jr->replay_started = true;
        return;
    case AGENTCONN_OUTPUT:
    case AGENTCONN_EXITED:
        /* Only the step the checkpoint was taken for: older frames (hashFiles runs, scripts
         * written) belong to work that is redone or already done. */
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1) {
            if (ev->kind == AGENTCONN_EXITED)
                jr->replay_started = true;
            jr->dispatching = true; /* process it as usual (a step's end waits for us) */
            on_event(jr, ev);
            jr->dispatching = false;
        }
        return;
    case AGENTCONN_ERROR:
        if (m->ref_type == AGENTP_RESUME) {
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR,
                  "the job's output could not be resumed after runnerd restarted: %s",
                  m->text ? m->text : "");
            jr->replaying = false;
            jr->job_failed = true;
            if (jr->phase == PH_RUNNING) {
                set_step_result(jr, "failure", "failure");
                clear_step(jr);
            }
            finish_job(jr);
        }
        return;
    case AGENTCONN_PROTO_ERROR:
    case AGENTCONN_BYE:
        jr->replaying = false;
        on_event(jr, ev);
        return;
    default:
        return;
    }
}

static void
on_event(void *arg, const struct agentconn_event *ev)
{
    struct jobrun *jr = arg;
    const struct agentp_msg *m = ev->msg;
    struct err e = {0};

    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    if (jr->replaying && !jr->dispatching) {
        replay_event(jr, ev);
        return;
    }
    /* Nothing here is persisted beyond the sink, which has it once the callback returns: let
     * the agent drop its journal up to here now and then (and at every step's end). A durable
     * job run acks at checkpoints only (see checkpoint()). */
    if (!jr->durable && (ev->kind == AGENTCONN_EXITED || ev->next - jr->acked >= (1u << 20))) {
        struct err ae = {0};
        if (agentconn_ack(jr->x->conn, ev->next, &ae) == 0)
            jr->acked = ev->next;
    }
    if (jr->phase == PH_ACTION &&
        (ev->kind == AGENTCONN_OUTPUT || ev->kind == AGENTCONN_EXITED ||
         ev->kind == AGENTCONN_ERROR || ev->kind == AGENTCONN_FILE_WRITTEN)) {
        jr_action_event(jr, ev);
        return;
    }
    if (jr->in_post && jr->phase == PH_RUNNING && m->id == jr->cur + 1 &&
        (ev->kind == AGENTCONN_EXITED || ev->kind == AGENTCONN_ERROR)) {
        jr_post_exited(jr, ev->kind == AGENTCONN_EXITED ? m : NULL);
        return;
    }
    switch (ev->kind) {
    case AGENTCONN_OUTPUT:
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1)
            feed_output(jr, (int)m->stream, m->data.p, m->data.len);
        else if (jr->phase == PH_HASHING && m->id == HASH_STEP && m->stream == AGENTP_STDOUT &&
                 jr->hash_out.len < 4096)
            buf_append(&jr->hash_out, m->data.p, m->data.len);
        else if (jr->phase == PH_HASHING && m->id == HASH_STEP)
            jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, (const char *)m->data.p, m->data.len);
        break;
    case AGENTCONN_FILE_WRITTEN:
        if (jr->phase == PH_WRITING && m->id == jr->cur + 1)
            jr_run_script(jr);
        else if (jr->phase == PH_DPREP && m->id >= DFILE_ID && --jr->dprep_left == 0)
            launch_docker_step(jr);
        break;
    case AGENTCONN_EXITED:
        if (jr->phase == PH_RUNNING && m->id == jr->cur + 1) {
            on_exited(jr, m);
        } else if (jr->phase == PH_HASHING && m->id == HASH_STEP) {
            hash_done(jr, m);
        } else if (jr->phase == PH_DREAD && m->id == jr->cur + 1) {
            bool ok = jr->dok;
            if (m->exit_code != 0)
                jr_emit(jr, (int)jr->cur, JOBRUN_WARNING,
                     "file commands not read: the job image needs /bin/sh and cp", 59);
            else
                jr_apply_files(jr, m, &ok);
            jr_end_step(jr, ok);
        }
        break;
    case AGENTCONN_ERROR:
        if (jr->phase == PH_HASHING && m->id == HASH_STEP) {
            err_set(&e, -EIO, "hashFiles: %s", m->text ? m->text : "");
            hash_failed(jr, e.msg);
        } else if (jr->phase == PH_DREAD && m->id == jr->cur + 1) {
            jr_emitf(jr, (int)jr->cur, JOBRUN_WARNING, "file commands not read: %s",
                  m->text ? m->text : "");
            jr_end_step(jr, jr->dok);
        } else if (jr->phase == PH_DPREP && m->id >= DFILE_ID) {
            err_set(&e, -EIO, "preparing the step's files: %s", m->text ? m->text : "");
            jr->phase = PH_RUNNING;
            jr_fail_step(jr, e.msg);
        } else if ((jr->phase == PH_WRITING || jr->phase == PH_RUNNING) && m->id == jr->cur + 1) {
            err_set(&e, -EIO, "the agent refused the step: %s", m->text ? m->text : "");
            jr_fail_step(jr, e.msg);
        }
        break;
    case AGENTCONN_PROTO_ERROR:
    case AGENTCONN_BYE:
        jr_emitf(jr, jr->phase != PH_STEPS && jr->phase != PH_SETUP ? (int)jr->cur : -1,
              JOBRUN_ERROR, "lost the agent: %s",
              ev->kind == AGENTCONN_BYE ? "it exited" : ev->err ? ev->err->msg : "protocol error");
        jr->job_failed = true;
        frames_unwind(jr);
        if (jr->phase != PH_STEPS && jr->phase != PH_SETUP) {
            set_step_result(jr, "failure", "failure");
            clear_step(jr);
        }
        finish_job(jr);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- job */

static void
maybe_done(struct jobrun *jr)
{
    if (jr->handles > 0)
        return;
    jr->phase = PH_DONE;
    if (jr->sink->job_finished)
        jr->sink->job_finished(jr->sink_arg, jr, jr->result);
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct jobrun *jr = h->data;

    jr->handles--;
    maybe_done(jr);
}

static void
on_exec_closed(void *arg)
{
    struct jobrun *jr = arg;

    jr->x = NULL;
    jr->handles--;
    maybe_done(jr);
}

static void
on_exec_log(void *arg, const char *line)
{
    struct jobrun *jr = arg;

    jr_emit(jr, -1, JOBRUN_INFO, line, strlen(line));
}

/* Drops each job output whose value holds a secret (or an ::add-mask:: value), with a
 * warning that names the output but not its value, as GitHub does: masking it instead would
 * still tell the server and later jobs where a secret is. Every front end (runnerd's
 * UpdateTask, its spool, runnerctl's report, the needs of later jobs) reads the outputs the
 * plan holds, so none of them sees it. */
static void
drop_secret_outputs(struct jobrun *jr)
{
    const struct plan_job *j = &jr->plan->jobs[jr->job];
    json_t *outs = jr->run < j->n_runs ? j->runs[jr->run].outputs : NULL, *v;
    const char *k;
    void *tmp;

    json_object_foreach_safe(outs, tmp, k, v) {
        if (!json_is_string(v) || !mask_hits(jr->mask, json_string_value(v), json_string_length(v)))
            continue;
        jr_emitf(jr, -1, JOBRUN_WARNING, "Skip output '%s' since it may contain secret.", k);
        json_object_del(outs, k);
    }
}

/* Returns a new object: the github members the front end knows only through the executor
 * (the workspace), for plan_run_contexts_ex() and plan_run_outputs(); NULL while unknown. */
static json_t *
github_extra(const struct jobrun *jr)
{
    if (jr->x == NULL || jr->x->workspace == NULL)
        return NULL;
    return json_pack("{s:s}", "workspace", jr->x->workspace);
}

static void
finish_job(struct jobrun *jr)
{
    struct err e = {0};

    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    jr->phase = PH_CLOSING;
    json_t *extra = github_extra(jr);
    if (plan_run_outputs(jr->plan, jr->job, jr->run, jr->steps, extra, &e) < 0)
        jr_emitf(jr, -1, JOBRUN_ERROR, "job outputs: %s", e.msg);
    json_decref(extra);
    drop_secret_outputs(jr);
    jr->result = jr->cancelled && !jr->timed_out ? PLAN_CANCELLED
                 : jr->job_failed || jr->timed_out ? PLAN_FAILURE
                                                   : PLAN_SUCCESS;
    if (jr->sink->closing)
        jr->sink->closing(jr->sink_arg, jr, jr->result);
    uv_timer_stop(&jr->timer);
    uv_close((uv_handle_t *)&jr->timer, on_timer_closed);
    uv_timer_stop(&jr->watch);
    uv_close((uv_handle_t *)&jr->watch, on_timer_closed);
    if (jr_action_busy(jr)) {
        jr_action_cancel(jr); /* the executor closes once it has landed (jr_action_landed) */
        return;
    }
    executor_close(jr->x);
}

/* Sets the job env from jr->base: workflow env < job env < config env, plus ACT. */
static void
set_job_env(struct jobrun *jr)
{
    json_t *env = json_object_get(jr->base, "env");

    json_decref(jr->job_env);
    jr->job_env = env ? json_copy(env) : json_object();
    if (jr->config_env)
        json_object_update(jr->job_env, jr->config_env);
    if (!json_object_get(jr->job_env, "ACT"))
        json_object_set_new(jr->job_env, "ACT", json_string("true"));
}

/* Evaluates the job-level contexts again now that the executor says where the workspace is,
 * so that workflow and job env see a complete github context (`${{ github.workspace }}/build`
 * is the workspace's build directory, not "/build"), as act's and GitHub's do. */
static int
complete_job_contexts(struct jobrun *jr, struct err *e)
{
    json_t *extra = github_extra(jr), *base = NULL;
    int rc;

    if (extra == NULL)
        extra = json_pack("{s:s}", "workspace", "");
    rc = plan_run_contexts_ex(jr->plan, jr->job, jr->run, extra, &base, e);
    json_decref(extra);
    if (rc < 0)
        return rc;
    json_decref(jr->base);
    jr->base = base;
    set_job_env(jr);
    return 0;
}

static void
on_ready(void *arg, int rc, const struct err *e)
{
    struct jobrun *jr = arg;

    if (rc < 0) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "setting up the job failed: %s", e ? e->msg : "");
        jr->job_failed = true;
        finish_job(jr);
        return;
    }
    if (jr->resume_cp) {
        /* Ask for the journal from the checkpoint, then a HELLO that marks its end. */
        struct err re = {0};
        uint64_t off = (uint64_t)json_integer_value(json_object_get(jr->resume_cp, "offset"));
        jr->replaying = true;
        if (agentconn_resume(jr->x->conn, off, &re) < 0 || agentconn_hello(jr->x->conn, &re) < 0) {
            jr->replaying = false;
            jr_emitf(jr, (int)jr->cur, JOBRUN_ERROR, "resuming the job failed: %s", re.msg);
            jr->job_failed = true;
            set_step_result(jr, "failure", "failure");
            clear_step(jr);
            finish_job(jr);
        }
        return;
    }
    if (jr->cancelled) {
        finish_job(jr);
        return;
    }
    struct err ce = {0};
    if (complete_job_contexts(jr, &ce) < 0) {
        jr_emitf(jr, -1, JOBRUN_ERROR, "evaluating the job's env failed: %s", ce.msg);
        jr->job_failed = true;
        finish_job(jr);
        return;
    }
    jr->phase = PH_STEPS;
    jr_next_step(jr);
}

static const struct executor_cbs exec_cbs = {
    .on_ready = on_ready,
    .on_event = on_event,
    .on_log = on_exec_log,
    .on_closed = on_exec_closed,
};

/* The job stops waiting for the agent: it is wedged, paused or lying (a forged frame can hold
 * the stream), and nothing it says from now on is believed. The running step ends as failed,
 * the rest of the job is skipped, and the teardown removes the container whatever runs in it. */
static void
give_up(struct jobrun *jr, const char *why)
{
    bool in_step = jr->phase != PH_STEPS && jr->phase != PH_SETUP;

    jr_emitf(jr, in_step ? (int)jr->cur : -1, JOBRUN_ERROR, "%s", why);
    jr->job_failed = true;
    jr->forced = true;
    frames_unwind(jr);
    if (in_step) {
        set_step_result(jr, "failure", "failure");
        clear_step(jr);
    }
    finish_job(jr);
}

/* The deadline passed: give up unless what it was about is over (the step it watched has
 * ended, or the job has). */
static void
on_watch(uv_timer_t *t)
{
    struct jobrun *jr = t->data;
    enum jr_watch kind = (enum jr_watch)jr->watch_kind;
    char why[200];

    jr->watch_kind = WATCH_NONE;
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    if (kind != WATCH_FORCE && (jr->step_serial != jr->watch_serial || jr->phase == PH_STEPS))
        return;
    if (kind == WATCH_FORCE)
        snprintf(why, sizeof why, "The job was stopped by force; its container is removed "
                 "whatever runs in it.");
    else if (kind == WATCH_STOP)
        snprintf(why, sizeof why, "The step did not stop within %d s of its cancellation: the "
                 "job container does not answer; giving up on it.",
                 (CANCEL_GRACE_MS + STOP_SLACK_MS) / 1000);
    else
        snprintf(why, sizeof why, "The step did not end within %d s past its timeout: the job "
                 "container does not answer; giving up on it.",
                 (CANCEL_GRACE_MS + STOP_SLACK_MS) / 1000);
    give_up(jr, why);
}

/* Starts the host's own deadline on what the agent is to do (never replacing a deadline of a
 * higher kind): the job never waits on the agent's stream without one once it has asked for a
 * step to end. */
static void
watch_arm(struct jobrun *jr, enum jr_watch kind, uint64_t ms)
{
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE || uv_is_closing((uv_handle_t *)&jr->watch))
        return;
    if (jr->watch_kind > (int)kind && uv_is_active((uv_handle_t *)&jr->watch) &&
        (jr->watch_kind == WATCH_FORCE || jr->watch_serial == jr->step_serial))
        return; /* a stronger deadline on this step (a stale one is replaced) */
    jr->watch_kind = kind;
    jr->watch_serial = jr->step_serial;
    uv_timer_start(&jr->watch, on_watch, ms, 0);
}

static void
stop_running_step(struct jobrun *jr, uint32_t grace)
{
    struct err e = {0};

    if (jr->phase == PH_ACTION)
        jr_action_cancel(jr);
    else if (jr->phase == PH_RUNNING && jr->dstep)
        dockerstep_cancel(jr->dstep);
    else if (jr->phase == PH_RUNNING && jr->x && jr->x->conn)
        agentconn_cancel(jr->x->conn, (uint32_t)jr->cur + 1, grace, &e);
    if (jr->phase != PH_STEPS && jr->phase != PH_SETUP)
        watch_arm(jr, WATCH_STOP, (uint64_t)grace + STOP_SLACK_MS);
}

static void
on_job_timeout(uv_timer_t *t)
{
    struct jobrun *jr = t->data;

    jr_emitf(jr, -1, JOBRUN_ERROR, "The job has exceeded the maximum execution time of %g minute%s.",
          jr->timeout_minutes, jr->timeout_minutes == 1 ? "" : "s");
    jr->timed_out = true;
    jr->cancelled = true;
    stop_running_step(jr, CANCEL_GRACE_MS);
}

void
jobrun_cancel(struct jobrun *jr)
{
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE)
        return;
    if (jr->phase == PH_SETUP && !jr->replaying) {
        /* Nothing ran yet: no step to wait for (the container may still be being created,
         * or its agent never answers). The teardown cancels the setup. */
        jr->cancelled = true;
        jr_emit(jr, -1, JOBRUN_ERROR, "The job was cancelled before it started.", 41);
        finish_job(jr);
        return;
    }
    if (jr->cancelled) {
        jr->forced = true;
        stop_running_step(jr, 0);
        watch_arm(jr, WATCH_FORCE, FORCE_WAIT_MS);
        return;
    }
    jr->cancelled = true;
    if (jr->held_run || jr->held_next) {
        /* A resumed job waiting to start a step: it goes on now, as cancelled. */
        jobrun_release(jr);
        return;
    }
    jr->held = false; /* the cancellation is known: nothing more to ask the server */
    if (jr->in_post)
        return; /* post stages run to their end on a graceful cancel */
    if (jr->phase == PH_RUNNING || jr->phase == PH_WRITING || jr->phase == PH_ACTION) {
        /* The running step goes on only if its own `if` still holds once cancelled. */
        const struct wf_step *s = jr_step(jr);
        json_t *ctx = jr_contexts(jr, jr->cur_env);
        struct expr_env ee = {.contexts = ctx, .job_status = "cancelled"};
        bool ok = false;
        struct err e = {0};

        if (expr_eval_if(s->if_.v ? s->if_.v : "", "success()", &ee, &ok, &e) < 0 || !ok)
            stop_running_step(jr, CANCEL_GRACE_MS);
        json_decref(ctx);
    }
}

void
jobrun_release(struct jobrun *jr)
{
    if (!jr->held)
        return;
    jr->held = false;
    if (jr->phase == PH_CLOSING || jr->phase == PH_DONE || jr->replaying)
        return; /* the replay's end goes on by itself */
    if (jr->held_run) {
        jr->held_run = false;
        if (jr->cancelled) {
            jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, "The step was cancelled.", 23);
            jr_end_step(jr, false);
        } else {
            jr_run_script(jr);
        }
    } else if (jr->held_next) {
        jr->held_next = false;
        jr_next_step(jr);
    }
}

int
jobrun_container_image(const struct plan *p, size_t job, size_t run, char **out, struct err *e)
{
    const struct ynode *c = p->jobs[job].wf->container;
    const struct ynode *img;
    json_t *ctx = NULL;
    int rc;

    *out = NULL;
    if (c == NULL)
        return 0;
    img = c->kind == YNODE_MAP ? ynode_get(c, "image") : c;
    if (img == NULL)
        return 0;
    rc = plan_run_contexts(p, job, run, &ctx, e);
    if (rc < 0)
        return rc;
    struct expr_env ee = {.contexts = ctx};
    rc = yeval_string(p->wf->file, img, &ee, out, e);
    json_decref(ctx);
    if (rc == 0 && *out && **out == '\0') {
        free(*out);
        *out = NULL;
    }
    return rc;
}


static char **
json_to_strv(const json_t *a)
{
    size_t n = json_array_size(a), i;
    char **v = xcalloc(n + 1, sizeof *v);

    for (i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        v[i] = xstrdup(s ? s : "");
    }
    return v;
}

/* Puts the job where checkpoint cp says it was. */
static int
restore(struct jobrun *jr, const json_t *cp, struct err *e)
{
    json_int_t cur = json_integer_value(json_object_get(cp, "cur"));
    const char *kind = json_string_value(json_object_get(cp, "kind"));
    const char *s;
    json_t *v;
    size_t i;

    if (json_integer_value(json_object_get(cp, "v")) != 1 || kind == NULL || cur < 0 ||
        (size_t)cur >= jr->wj->n_steps)
        return err_set(e, ERR_INVALID, "the job's checkpoint is not one this runner can resume");
#define TAKE(field, key)                                                                       \
    do {                                                                                       \
        json_t *x_ = json_object_get(cp, key);                                                 \
        if (x_) {                                                                              \
            json_decref(jr->field);                                                            \
            jr->field = json_deep_copy(x_);                                                    \
        }                                                                                      \
    } while (0)
    TAKE(steps, "steps");
    TAKE(step_list, "step_list");
    TAKE(job_env, "job_env");
    TAKE(extra_path, "extra_path");
    TAKE(state, "state");
    TAKE(added_masks, "masks");
    TAKE(posts, "posts");
#undef TAKE
    json_array_foreach(jr->added_masks, i, v) {
        if (json_string_value(v))
            mask_add(jr->mask, json_string_value(v));
    }
    jr->cur = (size_t)cur;
    jr->job_failed = json_is_true(json_object_get(cp, "job_failed"));
    jr->cancelled = json_is_true(json_object_get(cp, "cancelled"));
    jr->timed_out = json_is_true(json_object_get(cp, "timed_out"));
    jr->started_ns = json_integer_value(json_object_get(cp, "started_ns"));
    if ((s = json_string_value(json_object_get(cp, "cur_name"))))
        jr->cur_name = xstrdup(s);
    if ((v = json_object_get(cp, "cur_env")) && json_is_object(v))
        jr->cur_env = json_deep_copy(v);
    else
        jr->cur_env = json_object();
    jr->cur_outputs = json_object();
    jr->argv = json_to_strv(json_object_get(cp, "argv"));
    if ((s = json_string_value(json_object_get(cp, "cwd"))))
        jr->cwd = xstrdup(s);
    if ((s = json_string_value(json_object_get(cp, "script_path"))))
        jr->script_path = xstrdup(s);
    jr->timeout_ms = (uint32_t)json_integer_value(json_object_get(cp, "timeout_ms"));
    if ((s = json_string_value(json_object_get(cp, "stop_token"))))
        jr->cmds.stop_token = xstrdup(s);
    jr->resume_cp = json_deep_copy(cp);
    if (json_is_array(json_object_get(cp, "frames")) &&
        frames_restore(jr, json_object_get(cp, "frames"), e) < 0)
        return -1;
    jr->pre_done = true; /* pre stages run before any checkpoint */
    jr->phase = PH_RUNNING;
    if (strcmp(kind, "run") != 0 && strcmp(kind, "docker") != 0)
        return err_set(e, ERR_INVALID, "the job's checkpoint has an unknown kind '%s'", kind);
    if (strcmp(kind, "run") == 0 && jr->argv[0] == NULL)
        return err_set(e, ERR_INVALID, "the job's checkpoint has no command");
    return 0;
}

static int start_common(uv_loop_t *loop, const struct jobrun_opts *o, const json_t *cp,
                        struct jobrun **out, struct err *e);

/* A timeout-minutes value (evaluated v of node n) into *out, or ERR_INVALID naming
 * file:line:col when it is not a positive number of sane size (a step or job without a limit
 * is not what the workflow asked for). */
static int
jr_minutes(const char *file, const struct ynode *n, const json_t *v, double *out, struct err *e)
{
    char num[64];
    const char *text = json_string_value(v), *why;

    if (json_is_number(v)) {
        snprintf(num, sizeof num, "%.17g", json_number_value(v));
        text = num;
    }
    why = wf_minutes_problem(text, out);
    if (why == NULL)
        return 0;
    char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    err_set(e, ERR_INVALID, "%s:%d:%d: timeout-minutes: %s, got %s", file, n->pos.line,
            n->pos.col, why, got ? got : "null");
    free(got);
    return ERR_INVALID;
}

/* Checks a workflow's evaluated docker run options against the label's policy
 * (profile_check_options()); the message names n's file:line:col. */
static int
jr_check_options(struct jobrun *jr, const struct ynode *n, const char *options,
                 const char *what, unsigned flags, struct err *e)
{
    int rc = profile_check_options(jr->xjob.profile, options, what, flags, e);

    if (rc < 0 && n)
        err_prefix(e, "%s:%d:%d: ", jr->file, n->pos.line, n->pos.col);
    return rc;
}

int
jobrun_start(uv_loop_t *loop, const struct jobrun_opts *o, struct jobrun **out, struct err *e)
{
    return start_common(loop, o, NULL, out, e);
}

int
jobrun_resume(uv_loop_t *loop, const struct jobrun_opts *o, const json_t *cp,
              struct jobrun **out, struct err *e)
{
    return start_common(loop, o, cp, out, e);
}

static int
start_common(uv_loop_t *loop, const struct jobrun_opts *o, const json_t *cp,
             struct jobrun **out, struct err *e)
{
    struct jobrun *jr = xcalloc(1, sizeof *jr);
    int rc;

    *out = NULL;
    jr->loop = loop;
    jr->plan = o->plan;
    jr->job = o->job;
    jr->run = o->run;
    jr->wj = o->plan->jobs[o->job].wf;
    jr->file = o->plan->wf->file;
    jr->x = o->exec;
    jr->xjob = o->xjob;
    jr->mask = o->mask;
    jr->sink = o->sink;
    jr->sink_arg = o->sink_arg;
    jr->gitea = o->gitea;
    jr->cache_dir = o->cache_dir ? xstrdup(o->cache_dir) : NULL;
    jr->git_ca_file = o->git_ca_file ? xstrdup(o->git_ca_file) : NULL;
    jr->git_insecure = o->git_insecure;
    jr->actions_url = o->actions_url ? xstrdup(o->actions_url) : NULL;
    jr->github_mirror = o->github_mirror ? xstrdup(o->github_mirror) : NULL;
    jr->node_image = o->node_image ? xstrdup(o->node_image) : NULL;
    jr->posts = json_array();
    jr->label = o->label ? xstrdup(o->label) : NULL;
    jr->runner = o->runner ? json_incref(o->runner) : json_object();
    jr->steps = json_object();
    jr->fetched = json_object();
    jr->step_list = json_array();
    jr->extra_path = json_array();
    jr->state = json_object();
    jr->hashes = json_object();
    jr->hash_todo = json_array();
    jr->added_masks = json_array();
    jr->durable = o->durable;
    jr->held = o->hold && cp != NULL;
    jr->started_ns = clock_now_ns();
    jr->phase = PH_SETUP;
    uv_timer_init(loop, &jr->timer);
    jr->timer.data = jr;
    uv_timer_init(loop, &jr->watch);
    jr->watch.data = jr;
    jr->handles = 3; /* the two timers and the executor */
    jr->x->cbs = &exec_cbs;
    jr->x->arg = jr;

    /* A container executor knows its workspace before setup (and a resumed job's executor
     * knows it from its description): the job container's env, volumes and options may name
     * github.workspace. */
    json_t *extra = github_extra(jr);
    rc = plan_run_contexts_ex(o->plan, o->job, o->run, extra, &jr->base, e);
    json_decref(extra);
    if (rc < 0)
        goto fail;
    jr->config_env = o->config_env ? json_incref(o->config_env) : NULL;
    set_job_env(jr);
    /* The job container's env. */
    const struct ynode *c = jr->wj->container;
    if (c && c->kind == YNODE_MAP && ynode_get(c, "env")) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, ynode_get(c, "env"), &ee, &jr->container_env, e);
        if (rc < 0)
            goto fail;
        if (!json_is_object(jr->container_env)) {
            json_decref(jr->container_env);
            jr->container_env = NULL;
        }
    }
    jr->xjob.env = jr->container_env;
    if (c && c->kind == YNODE_MAP && ynode_get(c, "options")) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_string(jr->file, ynode_get(c, "options"), &ee, &jr->options, e);
        if (rc == 0 && jr->xjob.image)
            rc = jr_check_options(jr, ynode_get(c, "options"), jr->options, "container.options",
                                  DOCKEROPTS_JOB, e);
        if (rc < 0)
            goto fail;
    }
    if (o->container_options && *o->container_options) {
        /* The runner's options first, so the job's own (later) win where they overlap. */
        char *both = xasprintf("%s %s", o->container_options, jr->options ? jr->options : "");
        free(jr->options);
        jr->options = both;
    }
    jr->xjob.options = jr->options;
    if (c && c->kind == YNODE_MAP && ynode_get(c, "volumes")) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, ynode_get(c, "volumes"), &ee, &jr->container_volumes, e);
        if (rc < 0)
            goto fail;
        jr->xjob.volumes = json_is_array(jr->container_volumes) ? jr->container_volumes : NULL;
    }
    if (jr->wj->services) {
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, jr->wj->services, &ee, &jr->services, e);
        const char *sid;
        json_t *sv;
        json_object_foreach(json_is_object(jr->services) ? jr->services : NULL, sid, sv) {
            const char *so = json_string_value(json_object_get(sv, "options"));
            const struct ynode *sn = ynode_get(jr->wj->services, sid);
            char *what = xasprintf("services.%s.options", sid);
            if (rc == 0 && so && *so)
                rc = jr_check_options(jr, sn && sn->kind == YNODE_MAP ? ynode_get(sn, "options")
                                                                     : jr->wj->services,
                                      so, what, 0, e);
            free(what);
        }
        if (rc < 0)
            goto fail;
        jr->xjob.services = jr->services;
    }
    /* Job timeout. */
    if (jr->wj->timeout_minutes) {
        json_t *v = NULL;
        double d = 0;
        struct expr_env ee = {.contexts = jr->base};
        rc = yeval_node(jr->file, jr->wj->timeout_minutes, &ee, &v, e);
        if (rc == 0)
            rc = jr_minutes(jr->file, jr->wj->timeout_minutes, v, &d, e);
        json_decref(v);
        if (rc < 0)
            goto fail;
        jr->timeout_minutes = d;
    }
    if (cp && (rc = restore(jr, cp, e)) < 0) {
        jr->phase = PH_SETUP;
        goto fail;
    }
    if (jr->timeout_minutes > 0) {
        /* A resumed job keeps the deadline it started with. */
        double left = jr->timeout_minutes * 60000.0 - (double)(clock_now_ns() - jr->started_ns) / 1e6;
        uv_timer_start(&jr->timer, on_job_timeout, left > 1 ? (uint64_t)left : 1, 0);
    }
    rc = executor_setup(jr->x, &jr->xjob, e);
    if (rc < 0)
        goto fail;
    *out = jr;
    return 0;
fail:
    /* Report through the normal path so the executor and timer close properly. */
    jr_emitf(jr, -1, JOBRUN_ERROR, "%s", e->msg);
    jr->job_failed = true;
    finish_job(jr);
    *out = jr;
    return 0;
}

json_t *
jobrun_steps(const struct jobrun *jr)
{
    return jr->steps;
}

json_t *
jobrun_step_list(const struct jobrun *jr)
{
    return jr->step_list;
}

size_t
jobrun_job(const struct jobrun *jr)
{
    return jr->job;
}

size_t
jobrun_run(const struct jobrun *jr)
{
    return jr->run;
}

void
jobrun_free(struct jobrun *jr)
{
    if (jr == NULL)
        return;
    frames_unwind(jr);
    clear_step(jr);
    buf_free(&jr->line[0]);
    buf_free(&jr->line[1]);
    wfcmd_state_free(&jr->cmds);
    json_decref(jr->base);
    json_decref(jr->runner);
    json_decref(jr->job_env);
    json_decref(jr->config_env);
    json_decref(jr->container_env);
    json_decref(jr->services);
    free(jr->options);
    json_decref(jr->container_volumes);
    json_decref(jr->steps);
    json_decref(jr->step_list);
    json_decref(jr->extra_path);
    json_decref(jr->state);
    json_decref(jr->hashes);
    json_decref(jr->hash_todo);
    buf_free(&jr->hash_out);
    buf_free(&jr->masked);
    json_decref(jr->added_masks);
    json_decref(jr->resume_cp);
    jr_action_free(jr);
    json_decref(jr->posts);
    json_decref(jr->fetched);
    free(jr->post_id);
    free(jr->cache_dir);
    free(jr->git_ca_file);
    free(jr->actions_url);
    free(jr->github_mirror);
    free(jr->node_image);
    free(jr->label);
    free(jr);
}
