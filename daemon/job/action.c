/* action.c: `uses:` references and action.yml files (see action.h).
 *
 * References follow act (Gitea fork): docker://, ./path, http(s)://host/owner/repo[/path]@ref
 * and owner/repo[/path]@ref, the last cloned from the default actions URL
 * (doc/workflow-semantics.md §12.1). An action.yml is read into struct action with the keys of
 * §12.2; unknown keys are ignored as GitHub and act ignore them, while known keys of the wrong type
 * are errors, each at its position. A composite's steps go through wf_parse_steps(), the job steps'
 * own parser. */
#include "action.h"

#include "fstree.h"
#include "runner/buf.h"
#include "runner/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* References                                                                                 */

#define GITHUB_URL "https://github.com"

/* Fills r's remote fields from s when it matches act's pattern
 * ^([^/@]+)/([^/@]+)(/([^@]*))?(@(.*))?$ with a non-empty ref (Go's '.' excludes '\n'). The
 * sub-path loses its leading and trailing slashes and is NULL when empty. */
static bool
match_remote(const char *s, struct action_ref *r)
{
    size_t ol = strcspn(s, "/@");
    const char *repo, *p, *path = NULL, *ref;
    size_t rl, pl = 0;

    if (ol == 0 || s[ol] != '/')
        return false;
    repo = s + ol + 1;
    rl = strcspn(repo, "/@");
    if (rl == 0)
        return false;
    p = repo + rl;
    if (*p == '/') {
        path = p + 1;
        pl = strcspn(path, "@");
        p = path + pl;
    }
    if (*p != '@')
        return false;
    ref = p + 1;
    if (*ref == '\0' || strchr(ref, '\n') != NULL)
        return false;
    while (pl > 0 && path[0] == '/') {
        path++;
        pl--;
    }
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    r->owner = xstrndup(s, ol);
    r->repo = xstrndup(repo, rl);
    r->path = pl > 0 ? xstrndup(path, pl) : NULL;
    r->ref = xstrdup(ref);
    return true;
}

/* True when a '/'-separated path has a ".." component. */
static bool
has_dotdot(const char *path)
{
    for (const char *p = path; p != NULL; p = strchr(p, '/')) {
        if (*p == '/')
            p++;
        if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
            return true;
    }
    return false;
}

/* Returns a new base URL from s: https:// added when s names no scheme (a bare host), trailing
 * slashes removed. */
static char *
base_url(const char *s)
{
    const char *sep = strstr(s, "://");
    char *r = sep ? xstrdup(s) : xasprintf("https://%s", s);
    size_t keep = (size_t)(strstr(r, "://") - r) + 3, n = strlen(r);

    while (n > keep && r[n - 1] == '/')
        r[--n] = '\0';
    return r;
}

/* Returns a new "scheme://host:port" for an absolute URL, lower-cased, without user info and
 * with the scheme's default port filled in; NULL when u has no scheme or host. */
static char *
url_origin(const char *u)
{
    const char *sep = strstr(u, "://"), *auth, *end, *at, *port = NULL;
    char *r;

    if (sep == NULL || sep == u)
        return NULL;
    auth = sep + 3;
    end = auth + strcspn(auth, "/?#");
    at = memchr(auth, '@', (size_t)(end - auth));
    if (at != NULL)
        auth = at + 1;
    if (auth == end)
        return NULL;
    /* The port follows the last ':' outside an IPv6 literal. */
    for (const char *p = end; p > auth; p--) {
        if (p[-1] == ']')
            break;
        if (p[-1] == ':') {
            port = p - 1;
            break;
        }
    }
    size_t sl = (size_t)(sep - u);
    const char *hend = port ? port : end;
    const char *dport = NULL;
    if (sl == 5 && strncasecmp(u, "https", 5) == 0)
        dport = "443";
    else if (sl == 4 && strncasecmp(u, "http", 4) == 0)
        dport = "80";
    if (port != NULL && port + 1 == end)
        port = NULL; /* "host:" has the default port */
    if (port != NULL)
        r = xasprintf("%.*s://%.*s:%.*s", (int)sl, u, (int)(hend - auth), auth,
                      (int)(end - port - 1), port + 1);
    else
        r = xasprintf("%.*s://%.*s:%s", (int)sl, u, (int)(hend - auth), auth,
                      dport ? dport : "");
    for (char *p = r; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return r;
}

bool
action_same_origin(const char *url, const char *instance)
{
    char *base, *a, *b;
    bool same;

    if (instance == NULL || instance[0] == '\0')
        return false;
    base = base_url(instance);
    a = url_origin(url);
    b = url_origin(base);
    same = a != NULL && b != NULL && strcmp(a, b) == 0;
    free(a);
    free(b);
    free(base);
    return same;
}

/* Returns a new string: uses with each of < > : " / \ | ? * replaced by '-'. */
static char *
cache_name(const char *uses)
{
    char *r = xstrdup(uses);

    for (char *p = r; *p; p++)
        if (strchr("<>:\"/\\|?*", *p) != NULL)
            *p = '-';
    return r;
}

/* Returns a new string: the base URL plain references are cloned from (§12.1, Gitea mode). */
static char *
default_base(const struct action_sources *src)
{
    const char *d = src ? src->default_actions_url : NULL;
    char *base = base_url(d && d[0] ? d : GITHUB_URL);

    if (strcasecmp(base, GITHUB_URL) == 0 && src && src->github_mirror &&
        src->github_mirror[0]) {
        free(base);
        base = base_url(src->github_mirror);
    }
    return base;
}

/* act's error for a reference it cannot parse (doc/workflow-semantics.md §12.1, exact text). */
static int
bad_format(struct err *e, const char *uses)
{
    return err_set(e, ERR_INVALID,
                   "Expected format {org}/{repo}[/path]@ref. Actual '%s' Input string was not in "
                   "a correct format",
                   uses);
}

/* Resolution as act_runner does it; URLs are built here so the token decision (on_instance)
 * and the clone use the same string. */
int
action_ref_parse(const char *uses, const struct action_sources *src, struct action_ref *out,
                 struct err *e)
{
    struct action_ref r = {0};
    char *base = NULL;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (uses == NULL || uses[0] == '\0')
        return err_set(e, ERR_INVALID, "uses: expected an action reference, got an empty string");
    r.uses = xstrdup(uses);
    if (strncmp(uses, "docker://", 9) == 0) {
        r.kind = ACTION_REF_DOCKER;
        if (uses[9] == '\0') {
            rc = err_set(e, ERR_INVALID, "uses '%s': expected an image after 'docker://'", uses);
            goto out;
        }
        r.image = xstrdup(uses + 9);
        goto done;
    }
    if (strncmp(uses, "./", 2) == 0) {
        r.kind = ACTION_REF_LOCAL;
        r.path = xstrdup(uses);
        goto done;
    }
    r.kind = ACTION_REF_REMOTE;
    if (strncmp(uses, "https://", 8) == 0 || strncmp(uses, "http://", 7) == 0) {
        const char *host = strstr(uses, "://") + 3;
        const char *slash = strchr(host, '/');

        if (slash == NULL || slash == host || !match_remote(slash + 1, &r)) {
            rc = bad_format(e, uses);
            goto out;
        }
        if (memchr(host, '@', (size_t)(slash - host)) != NULL) {
            /* Not echoed: the user info may be an interpolated secret. */
            rc = err_set(e, ERR_INVALID,
                         "uses: credentials in an action URL are not supported (the task "
                         "token is sent to the Gitea instance itself)");
            goto out;
        }
        base = xstrndup(uses, (size_t)(slash - uses));
    } else {
        if (!match_remote(uses, &r)) {
            rc = bad_format(e, uses);
            goto out;
        }
        base = default_base(src);
    }
    if (strcmp(r.owner, ".") == 0 || strcmp(r.owner, "..") == 0 || strcmp(r.repo, ".") == 0 ||
        strcmp(r.repo, "..") == 0) {
        rc = err_set(e, ERR_INVALID, "uses '%s': '.' and '..' are not an owner or repository",
                     uses);
        goto out;
    }
    if (r.path != NULL && has_dotdot(r.path)) {
        rc = err_set(e, ERR_INVALID, "uses '%s': the action path must not contain '..'", uses);
        goto out;
    }
    r.url = xasprintf("%s/%s/%s", base, r.owner, r.repo);
    r.on_instance = action_same_origin(r.url, src ? src->instance_url : NULL);
    r.cache_name = cache_name(uses);
done:
    *out = r;
    memset(&r, 0, sizeof r);
out:
    free(base);
    action_ref_free(&r);
    return rc;
}

/* Frees the strings and leaves r zeroed; r itself is the caller's. */
void
action_ref_free(struct action_ref *r)
{
    if (r == NULL)
        return;
    free(r->uses);
    free(r->image);
    free(r->path);
    free(r->owner);
    free(r->repo);
    free(r->ref);
    free(r->url);
    free(r->cache_name);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------------------------ */
/* action.yml                                                                                 */

struct actx {
    const char *file;
    const char *what;
    struct err *e; /* never NULL inside the parser */
};

static int fail(struct actx *c, struct ypos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets "FILE:LINE:COL: what: message" and returns ERR_INVALID. */
static int
fail(struct actx *c, struct ypos pos, const char *fmt, ...)
{
    char *text;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0) {
        va_end(ap);
        abort();
    }
    va_end(ap);
    rc = err_set(c->e, ERR_INVALID, "%s:%d:%d: %s: %s", c->file, pos.line, pos.col, c->what,
                 text);
    free(text);
    return rc;
}

/* Rewrites a callee's "FILE:LINE:COL: message" (or "FILE: message") in e as
 * "FILE:LINE:COL: what: message"; returns e's code. */
static int
insert_what(struct err *e, const char *file, const char *what)
{
    size_t fl = strlen(file), at = 0;
    const char *m = e->msg;
    char *text;

    if (strncmp(m, file, fl) == 0 && m[fl] == ':') {
        size_t i = fl + 1, d1 = strspn(m + i, "0123456789");
        if (d1 > 0 && m[i + d1] == ':') {
            size_t j = i + d1 + 1, d2 = strspn(m + j, "0123456789");
            if (d2 > 0 && m[j + d2] == ':' && m[j + d2 + 1] == ' ')
                at = j + d2 + 2;
        }
        if (at == 0 && m[fl + 1] == ' ')
            at = fl + 2;
    }
    text = xstrdup(m);
    err_set(e, e->code, "%.*s%s: %s", (int)at, text, what, text + at);
    free(text);
    return e->code;
}

/* Reads a string value: any scalar, in its text (numbers and booleans as written, the way
 * act's YAML decoder fills a string); null leaves *out NULL. */
static int
scalar_str(struct actx *c, const char *path, const struct ynode *n, char **out)
{
    if (n == NULL || ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_SCALAR)
        return fail(c, n->pos, "%s: expected a string, got %s", path, ynode_kind_name(n));
    if (strlen(n->str) != n->len)
        return fail(c, n->pos, "%s: a NUL character is not allowed in a string", path);
    *out = xstrdup(n->str);
    return 0;
}

/* Reads the string under key in map (see scalar_str). */
static int
field_str(struct actx *c, const char *base, const struct ynode *map, const char *key,
          char **out)
{
    char *path = xasprintf("%s.%s", base, key);
    int rc = scalar_str(c, path, ynode_get(map, key), out);

    free(path);
    return rc;
}

/* Reads a boolean the way act's YAML decoder does (YAML 1.1 words too; quoted ones as well,
 * since published actions often write required: 'true'). */
static int
read_bool(struct actx *c, const char *path, const struct ynode *n, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "y", NULL};
    static const char *const no[] = {"false", "no", "off", "n", NULL};

    *out = false;
    if (n == NULL || ynode_is_null(n))
        return 0;
    if (n->kind == YNODE_SCALAR) {
        for (size_t i = 0; yes[i]; i++)
            if (strcasecmp(n->str, yes[i]) == 0) {
                *out = true;
                return 0;
            }
        for (size_t i = 0; no[i]; i++)
            if (strcasecmp(n->str, no[i]) == 0)
                return 0;
    }
    char *v = n->kind == YNODE_SCALAR ? ydoc_quote(n->str, n->len) : xstrdup(ynode_kind_name(n));
    int rc = fail(c, n->pos, "%s: expected a boolean, got '%s'", path, v);
    free(v);
    return rc;
}

/* Returns a new message path: base + "." + the key's text (quoted for messages). */
static char *
key_path(const char *base, const struct ynode *k)
{
    char *kq = ydoc_quote(k->str, k->len);
    char *r = xasprintf("%s.%s", base, kq);

    free(kq);
    return r;
}

/* Checks that a map key is a string usable as an id; returns its text. */
static int
map_key(struct actx *c, const char *path, const struct ynode *k)
{
    if (k->kind != YNODE_SCALAR || ynode_is_null(k))
        return fail(c, k->pos, "%s: expected a string key, got %s", path, ynode_kind_name(k));
    if (strlen(k->str) != k->len)
        return fail(c, k->pos, "%s: a NUL character is not allowed in a key", path);
    return 0;
}

/* inputs: id -> {description, required, default} (or null). Other keys (deprecationMessage,
 * ...) are ignored as GitHub does. */
static int
read_inputs(struct actx *c, const struct ynode *n, struct action *a)
{
    int rc;

    if (n == NULL || ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_MAP)
        return fail(c, n->pos, "inputs: expected a mapping, got %s", ynode_kind_name(n));
    a->inputs = xcalloc(n->n ? n->n : 1, sizeof *a->inputs);
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        struct action_input *in = &a->inputs[a->n_inputs];

        if ((rc = map_key(c, "inputs", k)) < 0)
            return rc;
        in->id = xstrdup(k->str);
        a->n_inputs++;
        char *path = key_path("inputs", k);
        if (v->kind != YNODE_MAP && !ynode_is_null(v))
            rc = fail(c, v->pos, "%s: expected a mapping, got %s", path, ynode_kind_name(v));
        else if ((rc = field_str(c, path, v, "default", &in->def)) >= 0) {
            char *rp = xasprintf("%s.required", path);
            rc = read_bool(c, rp, ynode_get(v, "required"), &in->required);
            free(rp);
        }
        free(path);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* outputs: id -> {description, value}; value is kept for composite actions only (others'
 * outputs come from the action's own commands). */
static int
read_outputs(struct actx *c, const struct ynode *n, struct action *a)
{
    int rc;

    if (n == NULL || ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_MAP)
        return fail(c, n->pos, "outputs: expected a mapping, got %s", ynode_kind_name(n));
    a->outputs = xcalloc(n->n ? n->n : 1, sizeof *a->outputs);
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];
        struct action_output *o = &a->outputs[a->n_outputs];

        if ((rc = map_key(c, "outputs", k)) < 0)
            return rc;
        o->id = xstrdup(k->str);
        a->n_outputs++;
        char *path = key_path("outputs", k);
        if (v->kind != YNODE_MAP && !ynode_is_null(v))
            rc = fail(c, v->pos, "%s: expected a mapping, got %s", path, ynode_kind_name(v));
        else if (a->using == ACTION_COMPOSITE)
            rc = field_str(c, path, v, "value", &o->value);
        free(path);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* runs.args: a sequence of strings (null: none). Always leaves a NULL-terminated array. */
static int
read_args(struct actx *c, const struct ynode *n, struct action *a)
{
    size_t count = n && n->kind == YNODE_SEQ ? n->n : 0;
    int rc;

    a->args = xcalloc(count + 1, sizeof *a->args);
    if (n == NULL || ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_SEQ)
        return fail(c, n->pos, "runs.args: expected a sequence, got %s", ynode_kind_name(n));
    for (size_t i = 0; i < count; i++) {
        char *path = xasprintf("runs.args[%zu]", i);
        rc = scalar_str(c, path, n->items[i], &a->args[i]);
        free(path);
        if (rc < 0)
            return rc;
        if (a->args[i] == NULL)
            a->args[i] = xstrdup(""); /* null item: an empty string, as act decodes it */
    }
    return 0;
}

/* runs.env: a mapping of strings (null: none); the node stays in the tree. */
static int
read_env(struct actx *c, struct ynode *n, struct action *a)
{
    int rc;

    if (n == NULL || ynode_is_null(n))
        return 0;
    if (n->kind != YNODE_MAP)
        return fail(c, n->pos, "runs.env: expected a mapping, got %s", ynode_kind_name(n));
    for (size_t i = 0; i < n->n; i++) {
        const struct ynode *k = n->keys[i], *v = n->items[i];

        if ((rc = map_key(c, "runs.env", k)) < 0)
            return rc;
        if (v->kind != YNODE_SCALAR) {
            char *path = key_path("runs.env", k);
            rc = fail(c, v->pos, "%s: expected a string, got %s", path, ynode_kind_name(v));
            free(path);
            return rc;
        }
    }
    a->env = n;
    return 0;
}

/* runs.using: case-insensitive; act's message (with its lower-casing) for anything else. */
static int
read_using(struct actx *c, const struct ynode *runs, struct action *a)
{
    static const struct {
        const char *name;
        enum action_using using;
    } kinds[] = {
        {"composite", ACTION_COMPOSITE}, {"docker", ACTION_DOCKER}, {"node12", ACTION_NODE},
        {"node16", ACTION_NODE},         {"node20", ACTION_NODE},   {"node24", ACTION_NODE},
    };
    const struct ynode *n = ynode_get(runs, "using");
    struct ypos pos = n ? n->pos : runs->pos;
    char *low;
    int rc;

    if ((rc = scalar_str(c, "runs.using", n, &a->using_str)) < 0)
        return rc;
    for (size_t i = 0; a->using_str && i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcasecmp(a->using_str, kinds[i].name) == 0) {
            a->using = kinds[i].using;
            return 0;
        }
    }
    low = xstrdup(a->using_str ? a->using_str : "");
    for (char *p = low; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    rc = fail(c, pos,
              "The runs.using key in action.yml must be one of: [composite docker node12 node16 "
              "node20 node24], got %s",
              low);
    free(low);
    return rc;
}

/* runs: every known key is read whatever `using` says (act decodes them all), and the keys the
 * kind needs must be there. */
static int
read_runs(struct actx *c, const char *data, size_t len, struct ynode *runs, struct action *a)
{
    const struct {
        const char *key;
        char **field;
    } strs[] = {
        {"main", &a->main},
        {"pre", &a->pre},
        {"post", &a->post},
        {"pre-if", &a->pre_if},
        {"post-if", &a->post_if},
        {"image", &a->image},
        {"entrypoint", &a->entrypoint},
        {"pre-entrypoint", &a->pre_entrypoint},
        {"post-entrypoint", &a->post_entrypoint},
    };
    int rc;

    if ((rc = read_using(c, runs, a)) < 0)
        return rc;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if ((rc = field_str(c, "runs", runs, strs[i].key, strs[i].field)) < 0)
            return rc;
    if ((rc = read_args(c, ynode_get(runs, "args"), a)) < 0)
        return rc;
    if ((rc = read_env(c, ynode_get(runs, "env"), a)) < 0)
        return rc;
    switch (a->using) {
    case ACTION_NODE:
        if (a->main == NULL)
            return fail(c, runs->pos, "runs.main is required for a %s action", a->using_str);
        break;
    case ACTION_DOCKER:
        if (a->image == NULL)
            return fail(c, runs->pos, "runs.image is required for a docker action");
        break;
    case ACTION_COMPOSITE: {
        struct ynode *steps = ynode_get(runs, "steps");
        if (steps == NULL || ynode_is_null(steps))
            return fail(c, runs->pos, "missing steps in composite action");
        rc = wf_parse_steps(c->file, data, len, "runs.steps", steps, &a->steps, &a->n_steps,
                            NULL, c->e);
        if (rc < 0)
            return insert_what(c->e, c->file, c->what);
        break;
    }
    }
    return 0;
}

/* Reads the whole model; a->root already owns the tree. */
static int
read_action(struct actx *c, const char *data, size_t len, struct action *a)
{
    struct ynode *root = a->root, *runs, *name;
    struct ypos p1 = {1, 1};
    int rc;

    if (root == NULL || ynode_is_null(root))
        return fail(c, root ? root->pos : p1, "the action file is empty");
    if (root->kind != YNODE_MAP)
        return fail(c, root->pos, "expected a mapping, got %s", ynode_kind_name(root));
    /* Informational: a name of another type is ignored, not an error. */
    name = ynode_get(root, "name");
    if (name && name->kind == YNODE_SCALAR && !ynode_is_null(name) &&
        strlen(name->str) == name->len)
        a->name = xstrdup(name->str);
    runs = ynode_get(root, "runs");
    if (runs == NULL || ynode_is_null(runs))
        return fail(c, runs ? runs->pos : root->pos, "runs is required");
    if (runs->kind != YNODE_MAP)
        return fail(c, runs->pos, "runs: expected a mapping, got %s", ynode_kind_name(runs));
    if ((rc = read_runs(c, data, len, runs, a)) < 0)
        return rc;
    if ((rc = read_inputs(c, ynode_get(root, "inputs"), a)) < 0)
        return rc;
    return read_outputs(c, ynode_get(root, "outputs"), a);
}

/* YAML errors carry the callee's position; what goes in after it. */
int
action_parse(const char *file, const char *data, size_t len, const char *what,
             struct action **out, struct err *e)
{
    struct err le = {0};
    struct actx c = {.file = file ? file : "action.yml", .what = what ? what : "action", .e = &le};
    struct action *a = xcalloc(1, sizeof *a);
    int rc;

    *out = NULL;
    a->file = xstrdup(c.file);
    a->text = xmalloc(len + 1);
    memcpy(a->text, data, len);
    a->text[len] = '\0';
    a->text_len = len;
    rc = ydoc_parse(c.file, data, len, &a->root, &le);
    if (rc < 0)
        rc = insert_what(&le, c.file, c.what);
    else
        rc = read_action(&c, data, len, a);
    if (rc < 0) {
        if (e != NULL)
            *e = le;
        action_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Returns a new "dir/name", without doubling a trailing slash of dir. */
static char *
join(const char *dir, const char *name)
{
    size_t n = strlen(dir);

    if (n > 0 && dir[n - 1] == '/')
        return xasprintf("%s%s", dir, name);
    return xasprintf("%s/%s", dir, name);
}

/* act's order: action.yml, action.yaml, then a bare Dockerfile (§12.2). A file that exists but
 * cannot be read is an error, not a reason to try the next name. Every name is resolved
 * beneath root (fstree_open_beneath()): the action's files are the workflow author's, and a
 * symlink among them (action.yml -> /etc/..., or a sub-path that is a link to a host
 * directory) must never make the host read one of its own files. Links that stay inside root
 * are followed, as an ordinary read of the file in GitHub's runner or act would. */
int
action_load_beneath(const char *root, const char *sub, const char *what, struct action **out,
                    struct err *e)
{
    static const char *const names[] = {"action.yml", "action.yaml"};
    char *dir = sub && *sub ? join(root, sub) : xstrdup(root), *rel, *path;
    struct stat st;
    int rc, fd;

    *out = NULL;
    if (what == NULL)
        what = "action";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct buf data = BUF_INIT;

        rel = sub && *sub ? join(sub, names[i]) : xstrdup(names[i]);
        path = join(dir, names[i]);
        rc = fstree_read_beneath(root, rel, &data, WF_MAX_FILE_SIZE, "action file", e);
        free(rel);
        if (rc == -ENOENT || rc == -ENOTDIR) {
            free(path);
            continue;
        }
        if (rc == 0)
            rc = action_parse(path, buf_str(&data), data.len, what, out, e);
        else
            err_prefix(e, "%s: ", what);
        buf_free(&data);
        free(path);
        free(dir);
        return rc;
    }
    rel = sub && *sub ? join(sub, "Dockerfile") : xstrdup("Dockerfile");
    fd = fstree_open_beneath(root, rel, O_PATH, e);
    free(rel);
    if (fd < 0 && fd != -ENOENT && fd != -ENOTDIR) {
        free(dir);
        return err_prefix(e, "%s: ", what);
    }
    rc = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (fd >= 0)
        close(fd);
    if (rc) {
        struct action *a = xcalloc(1, sizeof *a);
        a->file = join(dir, "Dockerfile");
        a->using = ACTION_DOCKER;
        a->using_str = xstrdup("docker");
        a->image = xstrdup("Dockerfile");
        a->args = xcalloc(1, sizeof *a->args);
        *out = a;
        free(dir);
        return 0;
    }
    rc = err_set(e, ERR_NOTFOUND, "%s: no action.yml, action.yaml or Dockerfile in %s", what,
                 dir);
    free(dir);
    return rc;
}

int
action_load(const char *dir, const char *what, struct action **out, struct err *e)
{
    return action_load_beneath(dir, NULL, what, out, e);
}

void
action_free(struct action *a)
{
    if (a == NULL)
        return;
    free(a->file);
    free(a->text);
    free(a->name);
    free(a->using_str);
    for (size_t i = 0; i < a->n_inputs; i++) {
        free(a->inputs[i].id);
        free(a->inputs[i].def);
    }
    free(a->inputs);
    for (size_t i = 0; i < a->n_outputs; i++) {
        free(a->outputs[i].id);
        free(a->outputs[i].value);
    }
    free(a->outputs);
    free(a->main);
    free(a->pre);
    free(a->post);
    free(a->pre_if);
    free(a->post_if);
    free(a->image);
    free(a->entrypoint);
    free(a->pre_entrypoint);
    free(a->post_entrypoint);
    xstrv_free(a->args);
    wf_steps_free(a->steps, a->n_steps); /* before the tree their nodes live in */
    ynode_free(a->root);
    free(a);
}

/* ------------------------------------------------------------------------------------------ */
/* Docker tag                                                                                 */

/* Returns the length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t
utf8_len(const unsigned char *s)
{
    size_t n;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* act: [^a-zA-Z0-9] -> '-' per character (Go regexp works on runes; an invalid byte is one
 * rune), then "-dockeraction:latest", leading '-' trimmed, "act-" prefixed, lower-cased. */
char *
action_docker_tag(const char *name)
{
    struct buf b = BUF_INIT;
    const unsigned char *s = (const unsigned char *)(name ? name : "");
    const char *body;
    char *r;

    while (*s) {
        size_t n = utf8_len(s);
        if (n == 0)
            n = 1;
        bool alnum = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                     (*s >= '0' && *s <= '9');
        buf_putc(&b, alnum ? (char)tolower(*s) : '-');
        s += n;
    }
    buf_puts(&b, "-dockeraction:latest");
    body = buf_str(&b);
    while (*body == '-')
        body++;
    r = xasprintf("act-%s", body);
    buf_free(&b);
    return r;
}
