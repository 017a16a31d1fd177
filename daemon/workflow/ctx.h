/* ctx.h: the expression contexts as JSON (doc/workflow-semantics.md §6). Built as plain jansson
 * objects so that a Gitea task's context can be used as-is in place of ctx_github_new(). */
#ifndef CTX_H
#define CTX_H

#include "wf.h"

#include <jansson.h>
#include <stdbool.h>

/* What the front end knows about the run (local mode). Every field may be NULL. */
struct ctx_github_opts {
    const char *event_name;  /* default "push" */
    json_t *event;           /* the event payload (borrowed); default {} */
    const char *actor;       /* default "nektos/act", as act */
    const char *repository;  /* owner/name; default "nektos/act" */
    const char *sha;         /* default: event-derived, else "" */
    const char *ref;         /* default: event-derived, else "refs/heads/<default branch>" */
    const char *default_branch; /* default "master", as act */
    const char *workspace;   /* the job's workspace path */
    const char *server_url;  /* default https://github.com */
    const char *token;
    const char *run_id, *run_number, *run_attempt; /* default "1" */
};

/* Returns a new `github` context for workflow w (local-mode derivation of ref, sha, ref_name,
 * ref_type, head_ref, base_ref from the event as act does). */
json_t *ctx_github_new(const struct wf_workflow *w, const struct ctx_github_opts *o);

/* Returns a new `inputs` context: for workflow_dispatch/workflow_call, each declared input from
 * event.inputs or its default (booleans become true when the text is "true"). */
json_t *ctx_inputs_new(const struct wf_workflow *w, const char *event_name, json_t *event);

/* Returns a new `runner` context. arch is the engine's or host's (x86_64/amd64 -> X64, ...). */
json_t *ctx_runner_new(const char *name, const char *arch, const char *temp,
                       const char *tool_cache);

/* Maps a machine/Docker architecture name to the runner.arch spelling (X64, X86, ARM64, ARM). */
const char *ctx_arch_name(const char *machine);

/* Returns a new `strategy` context. */
json_t *ctx_strategy_new(bool fail_fast, int max_parallel, int job_index, int job_total);

#endif
