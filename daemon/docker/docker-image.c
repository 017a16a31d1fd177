/* docker-image.c: images through the Engine API: inspect, remove, pull (with registry auth),
 * import, build (the classic builder's JSON stream), and resolving a reference against a pin
 * (an id, a repo digest or a tag, pulling when allowed). */
#include "docker-int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/xalloc.h"

/* A call on /images/<ref><suffix>, told as "<verb> image <ref>". */
static int
image_call(struct docker *d, const char *method, const char *ref, const char *suffix,
           const char *verb, docker_cb cb, void *arg, struct err *e)
{
    char *esc = docker_esc(ref), *path = xasprintf("/images/%s%s", esc, suffix);
    struct dcall *c = dcall_new(d, cb, arg, NULL, "%s image %s", verb, ref);
    struct dcall_opts o = {.method = method, .path = path};
    int rc = dcall_start(c, &o, e);

    free(esc);
    free(path);
    return rc;
}

int
docker_image_inspect(struct docker *d, const char *ref, docker_cb cb, void *arg, struct err *e)
{
    return image_call(d, "GET", ref, "/json", "inspect", cb, arg, e);
}

int
docker_image_remove(struct docker *d, const char *ref, bool force, docker_cb cb, void *arg,
                    struct err *e)
{
    return image_call(d, "DELETE", ref, force ? "?force=1" : "?force=0", "remove", cb, arg, e);
}

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void
docker_auth_copy(struct docker_auth *dst, const struct docker_auth *src)
{
    dst->username = dup_or_null(src->username);
    dst->password = dup_or_null(src->password);
    dst->serveraddress = dup_or_null(src->serveraddress);
    dst->identitytoken = dup_or_null(src->identitytoken);
}

void
docker_auth_free(struct docker_auth *a)
{
    free((char *)(uintptr_t)a->username);
    free((char *)(uintptr_t)a->password);
    free((char *)(uintptr_t)a->serveraddress);
    free((char *)(uintptr_t)a->identitytoken);
    memset(a, 0, sizeof *a);
}

/* base64url (RFC 4648 §5) with padding, as dockerd's base64.URLEncoding expects. */
static char *
b64url(const char *s)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s), o = 0;
    char *out = xmalloc((n + 2) / 3 * 4 + 1);
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);

        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Splits ref into repository and tag-or-digest (new strings). */
static void
split_ref(const char *ref, char **repo, char **tag)
{
    const char *at = strchr(ref, '@');
    const char *slash = strrchr(ref, '/');
    const char *colon;

    if (at != NULL) {
        *repo = xstrndup(ref, (size_t)(at - ref));
        *tag = xstrdup(at + 1);
        return;
    }
    colon = strrchr(ref, ':');
    if (colon != NULL && (slash == NULL || colon > slash)) {
        *repo = xstrndup(ref, (size_t)(colon - ref));
        *tag = xstrdup(colon + 1);
    } else {
        *repo = xstrdup(ref);
        *tag = xstrdup("latest");
    }
}

/* pull, import: each "status" goes to progress; import's {"status":"sha256:..."} is the new
 * image's id. */
static void
status_msg(struct dcall *c, json_t *msg)
{
    const char *st = json_string_value(json_object_get(msg, "status"));

    if (st == NULL)
        return;
    if (c->progress)
        c->progress(st, c->arg);
    if (c->state == NULL && strncmp(st, "sha256:", 7) == 0)
        c->state = xstrdup(st);
}

int
docker_image_pull(struct docker *d, const char *ref, const struct docker_auth *auth,
                  void (*progress)(const char *status, void *arg), docker_cb cb, void *arg,
                  struct err *e)
{
    char *repo, *tag, *erepo, *etag, *path, *hdr = NULL;
    const char *hdrs[2] = {NULL, NULL};
    struct dcall *c = dcall_new(d, cb, arg, NULL, "pull image %s", ref);
    int rc;

    split_ref(ref, &repo, &tag);
    erepo = docker_esc(repo);
    etag = docker_esc(tag);
    path = xasprintf("/images/create?fromImage=%s&tag=%s", erepo, etag);
    if (auth != NULL) {
        json_t *j = json_object();
        char *js, *b;

        if (auth->identitytoken)
            json_object_set_new(j, "identitytoken", json_string(auth->identitytoken));
        if (auth->username)
            json_object_set_new(j, "username", json_string(auth->username));
        if (auth->password)
            json_object_set_new(j, "password", json_string(auth->password));
        if (auth->serveraddress)
            json_object_set_new(j, "serveraddress", json_string(auth->serveraddress));
        js = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        b = b64url(js);
        memset(js, 0, strlen(js));
        free(js);
        hdr = xasprintf("X-Registry-Auth: %s", b);
        free(b);
        hdrs[0] = hdr;
    }
    c->progress = progress;
    c->on_msg = status_msg;
    struct dcall_opts o = {.method = "POST", .path = path, .extra_headers = hdrs,
                           .timeout_ms = -1, .stream_lines = true};
    rc = dcall_start(c, &o, e);
    if (hdr)
        memset(hdr, 0, strlen(hdr));
    free(hdr);
    free(repo);
    free(tag);
    free(erepo);
    free(etag);
    free(path);
    return rc;
}

/* import, build: the new image's id, which the stream's messages left in c->state. */
static void
post_image_id(struct dcall *c, struct docker_res *res)
{
    res->id = c->state;
    if (res->id == NULL)
        res->rc = err_set(&res->err, ERR_PROTO, "%s: no image id in the reply", c->what);
}

int
docker_image_import(struct docker *d, const void *tar, size_t len, const char *repo,
                    const char *tag, const char *const *changes, docker_cb cb, void *arg,
                    struct err *e)
{
    struct buf path = BUF_INIT;
    char *er = docker_esc(repo), *et = docker_esc(tag ? tag : "latest");
    struct dcall *c = dcall_new(d, cb, arg, post_image_id, "import image %s:%s", repo,
                                tag ? tag : "latest");
    int rc;

    buf_printf(&path, "/images/create?fromSrc=-&repo=%s&tag=%s", er, et);
    for (const char *const *ch = changes; ch && *ch; ch++) {
        char *ec = docker_esc(*ch);

        buf_printf(&path, "&changes=%s", ec);
        free(ec);
    }
    struct dcall_opts o = {.method = "POST", .path = buf_str(&path),
                           .content_type = "application/x-tar", .body = tar, .len = len,
                           .timeout_ms = 600000, .stream_lines = true};
    c->on_msg = status_msg; /* keeps the id in c->state, freed with c (see dcall_free) */
    rc = dcall_start(c, &o, e);
    free(er);
    free(et);
    buf_free(&path);
    return rc;
}

/* build: {"stream": text} is the output, {"aux": {"ID": "sha256:..."}} the built image (the
 * last one counts: it is sent once, for the final stage). */
static void
build_msg(struct dcall *c, json_t *msg)
{
    const char *text = json_string_value(json_object_get(msg, "stream"));
    const char *id = json_string_value(json_object_get(json_object_get(msg, "aux"), "ID"));

    if (id != NULL && strncmp(id, "sha256:", 7) == 0) {
        free(c->state);
        c->state = xstrdup(id);
    }
    if (text != NULL && c->progress != NULL)
        dcall_text_lines(c, text);
}

int
docker_image_build_req(struct docker *d, const void *tar, size_t len, const char *tag,
                       const char *dockerfile, json_t *labels,
                       void (*progress)(const char *line, void *arg), docker_cb cb, void *arg,
                       struct httpc_req **req, struct err *e)
{
    struct buf path = BUF_INIT;
    struct dcall *c = tag ? dcall_new(d, cb, arg, post_image_id, "build image %s", tag)
                          : dcall_new(d, cb, arg, post_image_id, "build image");
    char *v = docker_esc(dockerfile ? dockerfile : "Dockerfile");
    int rc;

    /* version=1 is the classic builder, whose output is this JSON stream (BuildKit talks its
     * own session protocol). pull=0 only stops refreshing base images that are present; the
     * engine still looks a missing one up in its registry, which fails offline with its
     * message. */
    buf_printf(&path, "/build?version=1&rm=1&forcerm=1&pull=0&dockerfile=%s", v);
    free(v);
    if (tag != NULL) {
        v = docker_esc(tag);
        buf_printf(&path, "&t=%s", v);
        free(v);
    }
    if (json_is_object(labels) && json_object_size(labels) > 0) {
        char *js = json_dumps(labels, JSON_COMPACT);

        v = docker_esc(js);
        buf_printf(&path, "&labels=%s", v);
        free(v);
        free(js);
    }
    c->progress = progress;
    c->on_msg = build_msg;
    /* no total timeout, as for pulls: a build takes as long as its RUN steps */
    struct dcall_opts o = {.method = "POST", .path = buf_str(&path),
                           .content_type = "application/x-tar", .body = tar, .len = len,
                           .timeout_ms = -1, .stream_lines = true, .req = req};
    rc = dcall_start(c, &o, e);
    buf_free(&path);
    return rc;
}

int
docker_image_build(struct docker *d, const void *tar, size_t len, const char *tag,
                   const char *dockerfile, json_t *labels,
                   void (*progress)(const char *line, void *arg), docker_cb cb, void *arg,
                   struct err *e)
{
    return docker_image_build_req(d, tar, len, tag, dockerfile, labels, progress, cb, arg, NULL,
                                  e);
}

/* ---- pinned references ------------------------------------------------------------------- */

enum pin_kind { PIN_ID, PIN_DIGEST, PIN_TAG };

struct resolve {
    struct docker *d;
    char *ref;
    char *expect_id;
    enum pin_kind kind;
    bool allow_pull;
    bool pulled;
    struct docker_auth auth;
    bool has_auth;
    docker_cb cb;
    void *arg;
};

static void
resolve_free(struct resolve *r)
{
    free(r->ref);
    free(r->expect_id);
    docker_auth_free(&r->auth);
    free(r);
}

static void
resolve_fail(struct resolve *r, int code, const char *msg)
{
    struct docker_res res;

    memset(&res, 0, sizeof res);
    res.rc = err_set(&res.err, code, "%s", msg);
    r->cb(&res, r->arg);
    resolve_free(r);
}

static bool
is_hex64(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

enum docker_pin
docker_pin_of(const char *ref)
{
    const char *at = strchr(ref, '@');

    if (strncmp(ref, "sha256:", 7) == 0)
        return is_hex64(ref + 7) ? DOCKER_PIN_ID : DOCKER_PIN_BAD_ID;
    if (at != NULL)
        return strncmp(at + 1, "sha256:", 7) == 0 && is_hex64(at + 8) ? DOCKER_PIN_DIGEST
                                                                       : DOCKER_PIN_BAD_DIGEST;
    return DOCKER_PIN_TAG;
}

/* Docker shows docker.io images by their familiar name (busybox@..., not
 * docker.io/library/busybox@...); compare in that form. */
static const char *
familiar(const char *ref)
{
    if (strncmp(ref, "docker.io/library/", 18) == 0)
        return ref + 18;
    if (strncmp(ref, "index.docker.io/library/", 24) == 0)
        return ref + 24;
    if (strncmp(ref, "docker.io/", 10) == 0)
        return ref + 10;
    return ref;
}

static bool
has_repo_digest(json_t *img, const char *ref)
{
    json_t *rd = json_object_get(img, "RepoDigests");
    size_t i;
    json_t *v;

    if (!json_is_array(rd))
        return false;
    json_array_foreach(rd, i, v) {
        const char *s = json_string_value(v);

        if (s && strcmp(familiar(s), familiar(ref)) == 0)
            return true;
    }
    return false;
}

static void resolve_inspect(struct resolve *r);

static void
on_resolve_pull(const struct docker_res *res, void *arg)
{
    struct resolve *r = arg;

    if (res->rc < 0) {
        char msg[768];
        const char *why = res->err.msg;
        size_t n = strlen("pull image ") + strlen(r->ref) + 2;

        /* the pull's own prefix repeats the reference: keep the message short */
        if (strncmp(why, "pull image ", 11) == 0 && strlen(why) >= n &&
            strncmp(why + 11, r->ref, strlen(r->ref)) == 0)
            why += n;
        snprintf(msg, sizeof msg, "image %s: pull failed: %s", r->ref, why);
        resolve_fail(r, res->rc, msg);
        return;
    }
    r->pulled = true;
    resolve_inspect(r);
}

static void
resolve_pull(struct resolve *r, const char *why)
{
    struct err e;
    char msg[768];

    if (!r->allow_pull || r->pulled) {
        snprintf(msg, sizeof msg, "%s%s", why,
                 r->pulled ? " (even after a pull)" : " and pulling is not allowed");
        resolve_fail(r, ERR_NOTFOUND, msg);
        return;
    }
    if (docker_image_pull(r->d, r->ref, r->has_auth ? &r->auth : NULL, NULL, on_resolve_pull, r,
                          &e) < 0)
        resolve_fail(r, e.code, e.msg);
}

static void
on_resolve_inspect(const struct docker_res *res, void *arg)
{
    struct resolve *r = arg;
    char msg[768];
    const char *id;

    if (res->rc == ERR_NOTFOUND) {
        if (r->kind == PIN_ID) {
            snprintf(msg, sizeof msg,
                     "image %s: no local image has this id (an id pin cannot be pulled)",
                     r->ref);
            resolve_fail(r, ERR_NOTFOUND, msg);
        } else if (r->kind == PIN_DIGEST) {
            snprintf(msg, sizeof msg, "image %s: no local image has this repo digest", r->ref);
            resolve_pull(r, msg);
        } else {
            snprintf(msg, sizeof msg, "image %s: not found locally", r->ref);
            resolve_pull(r, msg);
        }
        return;
    }
    if (res->rc < 0) {
        resolve_fail(r, res->rc, res->err.msg);
        return;
    }
    id = json_string_value(json_object_get(res->json, "Id"));
    if (id == NULL) {
        snprintf(msg, sizeof msg, "image %s: inspect reply has no Id", r->ref);
        resolve_fail(r, ERR_PROTO, msg);
        return;
    }
    if (r->kind == PIN_ID && strcmp(id, r->ref) != 0) {
        snprintf(msg, sizeof msg, "image %s: pinned id does not match the local image %s; refusing",
                 r->ref, id);
        resolve_fail(r, -EPERM, msg);
        return;
    }
    if (r->kind == PIN_DIGEST && !has_repo_digest(res->json, r->ref)) {
        snprintf(msg, sizeof msg,
                 "image %s: the local image %s does not carry this repo digest; refusing",
                 r->ref, id);
        resolve_fail(r, -EPERM, msg);
        return;
    }
    if (r->expect_id != NULL && strcmp(id, r->expect_id) != 0) {
        snprintf(msg, sizeof msg, "image %s resolves to %s, but %s is pinned; refusing", r->ref,
                 id, r->expect_id);
        resolve_fail(r, -EPERM, msg);
        return;
    }
    struct docker_res out = *res;

    out.id = id;
    r->cb(&out, r->arg);
    resolve_free(r);
}

static void
resolve_inspect(struct resolve *r)
{
    struct err e;

    if (docker_image_inspect(r->d, r->ref, on_resolve_inspect, r, &e) < 0)
        resolve_fail(r, e.code, e.msg);
}

int
docker_image_resolve(struct docker *d, const char *ref, const char *expect_id, bool allow_pull,
                     const struct docker_auth *auth, docker_cb cb, void *arg, struct err *e)
{
    struct resolve *r;
    enum pin_kind kind;
    struct err ie;

    if (ref == NULL || ref[0] == '\0')
        return err_set(e, ERR_INVALID, "image reference is empty");
    switch (docker_pin_of(ref)) {
    case DOCKER_PIN_BAD_ID:
        return err_set(e, ERR_INVALID,
                       "image %s: an id pin must be sha256: followed by 64 lowercase hex digits",
                       ref);
    case DOCKER_PIN_BAD_DIGEST:
        return err_set(e, ERR_INVALID,
                       "image %s: a digest pin must be NAME@sha256: followed by 64 hex digits", ref);
    case DOCKER_PIN_ID:
        kind = PIN_ID;
        break;
    case DOCKER_PIN_DIGEST:
        kind = PIN_DIGEST;
        break;
    default:
        kind = PIN_TAG;
        break;
    }
    if (expect_id != NULL && (strncmp(expect_id, "sha256:", 7) != 0 || !is_hex64(expect_id + 7)))
        return err_set(e, ERR_INVALID, "image %s: expected id %s is not sha256:<64 hex>", ref,
                       expect_id);
    r = xcalloc(1, sizeof *r);
    r->d = d;
    r->ref = xstrdup(ref);
    r->expect_id = expect_id ? xstrdup(expect_id) : NULL;
    r->kind = kind;
    r->allow_pull = allow_pull && kind != PIN_ID;
    r->cb = cb;
    r->arg = arg;
    if (auth != NULL) {
        docker_auth_copy(&r->auth, auth);
        r->has_auth = true;
    }
    if (docker_image_inspect(d, ref, on_resolve_inspect, r, &ie) < 0) {
        resolve_free(r);
        if (e)
            *e = ie;
        return ie.code;
    }
    return 0;
}
