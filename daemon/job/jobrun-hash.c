/* jobrun-hash.c: hashFiles() for a step (jobrun-int.h). Evaluation is synchronous, hashing is
 * not: a step that mentions hashFiles is first evaluated in collect mode, which records every
 * pattern list asked for (jr_hash_files()); the agent then hashes them where the workspace is
 * (next to the steps), and the step is evaluated for real with the results. */
#include "jobrun-int.h"

#include "runner/xalloc.h"
#include "yeval.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void hash_failed(struct jobrun *jr, const char *why);

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

bool
jr_hash_collect(struct jobrun *jr, const struct wf_step *s, json_t *ctx)
{
    struct expr_env ee = jr_expr_env(jr, ctx);
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
    if (json_array_size(jr->hash_todo) > 0)
        return true;
    jr->hash_ready = true;
    return false;
}

void
jr_hash_next(struct jobrun *jr)
{
    struct err e = {0};
    json_t *pats;

    if (json_array_size(jr->hash_todo) == 0) {
        jr->hash_ready = true;
        jr->phase = PH_STEPS;
        jr->core->next_step(jr);
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
    jr_hash_next(jr);
}

/* hashFiles() could not be computed: the step fails before it starts. */
static void
hash_failed(struct jobrun *jr, const char *why)
{
    const struct wf_step *s = jr_step(jr);

    if (jr->frame == NULL)
        jr_announce_step(jr, s->name.v ? s->name.v : s->eff_id);
    jr->cur_outputs = json_object();
    jr->phase = PH_RUNNING;
    jr_fail_step(jr, why);
}

bool
jr_step_mentions_hashfiles(const struct wf_step *s)
{
    return mentions_hashfiles(s->if_.v) || mentions_hashfiles(s->name.v) ||
           mentions_hashfiles(s->run.v) || mentions_hashfiles(s->working_directory.v) ||
           mentions_hashfiles(s->shell.v) || mentions_hashfiles(s->uses.v) ||
           node_mentions_hashfiles(s->env) || node_mentions_hashfiles(s->with) ||
           node_mentions_hashfiles(s->continue_on_error) ||
           node_mentions_hashfiles(s->timeout_minutes);
}

void
jr_hash_event(struct jobrun *jr, const struct agentconn_event *ev)
{
    const struct agentp_msg *m = ev->msg;
    struct err e = {0};

    if (m->id != HASH_STEP)
        return;
    switch (ev->kind) {
    case AGENTCONN_OUTPUT:
        if (m->stream == AGENTP_STDOUT && jr->hash_out.len < 4096)
            buf_append(&jr->hash_out, m->data.p, m->data.len);
        else
            jr_emit(jr, (int)jr->cur, JOBRUN_ERROR, (const char *)m->data.p, m->data.len);
        break;
    case AGENTCONN_EXITED:
        hash_done(jr, m);
        break;
    case AGENTCONN_ERROR:
        err_set(&e, -EIO, "hashFiles: %s", m->text ? m->text : "");
        hash_failed(jr, e.msg);
        break;
    default:
        break;
    }
}
