/* jobrun-out.c: what a job run prints (jobrun-int.h): every line through the mask into the
 * sink, a step's output cut into lines and rows, the workflow commands in it (wfcmd.h), the
 * file commands an agent run reported (GITHUB_ENV, _OUTPUT, _STATE, _PATH), and running a
 * command through the agent with the step's environment. */
#include "jobrun-int.h"

#include "envfile.h"
#include "runner/xalloc.h"
#include "stepenv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES (64 * 1024) /* longer lines are split */

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
void
jr_announce_step(struct jobrun *jr, const char *name)
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
    const char *v =
        json_string_value(json_object_get(jr->cur_env, "ACTIONS_ALLOW_UNSECURE_COMMANDS"));

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
/* Says once, past a cap of ::add-mask:: (mask_add_job()), that the job's output is hidden
 * from now on. The text goes to the sink as it is: the mask would hide it too, and it holds
 * nothing but numbers of ours. */
static void
warn_mask_cap(struct jobrun *jr, int step)
{
    char text[256];
    int n;

    if (jr->mask_cap_warned)
        return;
    jr->mask_cap_warned = true;
    n = snprintf(text, sizeof text,
                 "::add-mask:: was given more than %d values or %d KiB in this job: so that "
                 "no value is shown in clear, the rest of the job's output is hidden (***)",
                 MASK_JOB_MAX_VALUES, MASK_JOB_MAX_BYTES / 1024);
    if (jr->sink->log && n > 0)
        jr->sink->log(jr->sink_arg, jr, step, JOBRUN_WARNING, text, (size_t)n);
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
        /* A value the mask already holds is not kept again: the checkpoint's list stays
         * within the caps however often a step repeats it. */
        size_t had = mask_count(jr->mask);
        if (c.data[0] && mask_add_job(jr->mask, c.data)) {
            if (mask_count(jr->mask) != had)
                json_array_append_new(jr->added_masks, jr_jstring(c.data));
        } else if (c.data[0]) {
            warn_mask_cap(jr, step);
        }
    } else if (strcmp(c.name, "set-output") == 0 && name) {
        json_object_set_new(jr->cur_outputs, name, jr_jstring(c.data));
    } else if (strcmp(c.name, "save-state") == 0 && name) {
        json_t *st = json_object_get(jr->state, jr_cur_id(jr));
        if (st == NULL) {
            st = json_object();
            json_object_set_new(jr->state, jr_cur_id(jr), st);
        }
        json_object_set_new(st, name, jr_jstring(c.data));
    } else if (strcmp(c.name, "set-env") == 0 || strcmp(c.name, "add-path") == 0) {
        if (!unsecure_allowed(jr)) {
            jr_emitf(jr, step, JOBRUN_ERROR,
                  "The `%s` command is disabled. Please upgrade to using Environment Files or "
                  "opt into unsafe commands by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` "
                  "environment variable to `true`.", c.name);
        } else if (strcmp(c.name, "add-path") == 0) {
            add_path(jr, c.data);
        } else if (name) {
            json_object_set_new(jr->job_env, name, jr_jstring(c.data));
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
void
jr_feed_output(struct jobrun *jr, int stream, const uint8_t *p, size_t n)
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

int
jr_agent_run(struct jobrun *jr, uint32_t step, char *const *argv, size_t argc, json_t *env,
             const char *cwd, uint32_t timeout_ms, uint32_t grace_ms, struct err *e)
{
    char **envp = stepenv_to_envp(env);
    size_t envc = 0;
    int rc;

    while (envp[envc])
        envc++;
    struct agentconn_run r = {
        .step = step,
        .argv = (const char *const *)argv,
        .argc = argc,
        .env = (const char *const *)envp,
        .envc = envc,
        .cwd = cwd,
        .dir = jr->x->file_dir,
        .timeout_ms = timeout_ms,
        .grace_ms = grace_ms,
    };
    rc = agentconn_run(jr->x->conn, &r, e);
    for (size_t i = 0; i < envc; i++)
        free(envp[i]);
    free(envp);
    return rc;
}
