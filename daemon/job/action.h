/* action.h: `uses:` references and action.yml (doc/workflow-semantics.md §12). Pure: parsing
 * and resolution only; fetching is scm.h's, running is jobrun's. */
#ifndef ACTION_H
#define ACTION_H

#include "runner/err.h"
#include "wf.h"
#include "yamldoc.h"

#include <stdbool.h>
#include <stddef.h>

enum action_ref_kind {
    ACTION_REF_DOCKER, /* docker://IMAGE */
    ACTION_REF_LOCAL,  /* ./path (relative to the workspace) */
    ACTION_REF_REMOTE, /* owner/repo[/path]@ref, or https://host/owner/repo[/path]@ref */
};

/* Where remote actions come from (§12.1, Gitea mode). */
struct action_sources {
    const char *default_actions_url; /* the task's gitea_default_actions_url (may be a bare
                                        host: https:// is added); NULL or "": github.com */
    const char *instance_url;        /* the Gitea instance (the token goes only there) or NULL */
    const char *github_mirror;       /* runner.github_mirror: replaces https://github.com */
};

struct action_ref {
    enum action_ref_kind kind;
    char *uses;      /* the reference as given (after interpolation) */
    char *image;     /* docker: the image */
    char *path;      /* local: the path as written ("./x"); remote: the sub-path or NULL */
    char *owner, *repo, *ref; /* remote */
    char *url;       /* remote: what to clone, https://host/owner/repo (no credentials) */
    bool on_instance; /* remote: url is on instance_url's host (send the task token) */
    char *cache_name; /* remote: uses with < > : " / \ | ? * replaced by - (§12.1), for
                         the in-container directory /var/run/act/actions/<cache_name> */
};

/* Parses and resolves uses. Errors: a remote reference without @ref gives the spec's "Expected
 * format {org}/{repo}[/path]@ref. Actual '<uses>' Input string was not in a correct format";
 * an empty docker image or local path is refused too. */
int action_ref_parse(const char *uses, const struct action_sources *src, struct action_ref *out,
                     struct err *e);
void action_ref_free(struct action_ref *r);

enum action_using {
    ACTION_NODE,      /* node12, node16, node20, node24 */
    ACTION_DOCKER,
    ACTION_COMPOSITE,
};

struct action_input {
    char *id;
    char *def;        /* default (may hold ${{ }}), or NULL */
    bool required;
};

struct action_output {
    char *id;
    char *value;      /* composite: the expression text; else NULL */
};

struct action {
    char *file;       /* the file read ("DIR/action.yml"), or "DIR/Dockerfile" when synthesised */
    char *name;       /* or NULL */
    enum action_using using;
    char *using_str;  /* as written, e.g. "node20" */
    struct action_input *inputs;
    size_t n_inputs;
    struct action_output *outputs;
    size_t n_outputs;
    /* node */
    char *main, *pre, *post;
    /* pre-if / post-if as written, or NULL: always() */
    char *pre_if, *post_if;
    /* docker: image is "Dockerfile"-like (a path relative to the action's directory) or
     * "docker://IMAGE"; entrypoints as written (shell words); args each a string (may hold
     * ${{ }}); env a map node of strings or NULL. */
    char *image;
    char *entrypoint, *pre_entrypoint, *post_entrypoint;
    char **args;      /* NULL-terminated, may be empty */
    struct ynode *env;
    /* composite */
    struct wf_step *steps;
    size_t n_steps;
    struct ynode *root; /* owns the nodes above */
    char *text;       /* the file as read (a running composite is saved with the job's state
                         and parsed again from it); NULL when synthesised */
    size_t text_len;
};

/* Reads DIR/action.yml, else DIR/action.yaml, else synthesises a docker action for
 * DIR/Dockerfile (§12.2). what names the action in messages (the uses string). Errors are
 * "FILE:LINE:COL: what: ..." (unknown runs.using gives the spec's message listing the allowed
 * values; a node action without runs.main, a docker action without runs.image, a composite
 * without runs.steps or with an invalid step, are errors); a directory with none of the three
 * files gives "what: no action.yml, action.yaml or Dockerfile in DIR". */
int action_load(const char *dir, const char *what, struct action **out, struct err *e);
/* action_load() of root/sub (sub NULL or "": root itself), every file resolved beneath root:
 * a symlink that leads out of root (an absolute target, a ".." past it, a sub-path that is a
 * link to elsewhere) is an error "what: a symbolic link in REL leads out of ROOT" (-EXDEV),
 * and nothing outside root is read. Links that stay inside root are followed. */
int action_load_beneath(const char *root, const char *sub, const char *what,
                        struct action **out, struct err *e);
/* Same from a buffer (file names the source in messages); for tests and fuzzing. */
int action_parse(const char *file, const char *data, size_t len, const char *what,
                 struct action **out, struct err *e);
void action_free(struct action *a);

/* True when url's scheme, host and port are instance's (case-insensitive, default ports filled
 * in, user info ignored); false when instance is NULL or empty. */
bool action_same_origin(const char *url, const char *instance);

/* The tag for a docker action built from a Dockerfile (§12.5): "act-<name>-dockeraction:latest"
 * with every non-alphanumeric as '-', lower-cased, leading '-' trimmed. New string. */
char *action_docker_tag(const char *name);

#endif
