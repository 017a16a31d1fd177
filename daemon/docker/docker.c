/* docker.c: the Docker client core: endpoint from DOCKER_HOST, version negotiation, the call
 * machinery (URL, headers, error classification, progress streams), container logs. Images and
 * pinned references are in docker-image.c. */
#include "docker-int.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/clock.h"
#include "runner/log.h"
#include "runner/xalloc.h"

#define PULL_LINE_MAX (1024u * 1024)

/* ---- endpoint ---------------------------------------------------------------------------- */

static const char *
env_or(const char *v, const char *name)
{
    const char *s;

    if (v != NULL)
        return v;
    s = getenv(name);
    return (s != NULL && s[0] != '\0') ? s : NULL;
}

int
docker_new(struct httpc *http, const struct docker_config *cfg, struct docker **out,
           struct err *e)
{
    struct docker_config none = {0};
    const char *host, *cert_path, *ver;
    bool tls;
    struct docker *d;

    if (cfg == NULL)
        cfg = &none;
    host = env_or(cfg->host, "DOCKER_HOST");
    if (host == NULL)
        host = "unix:///var/run/docker.sock";
    cert_path = env_or(cfg->cert_path, "DOCKER_CERT_PATH");
    tls = cfg->tls || cert_path != NULL || env_or(NULL, "DOCKER_TLS_VERIFY") != NULL;
    ver = env_or(cfg->api_version, "DOCKER_API_VERSION");

    d = xcalloc(1, sizeof *d);
    d->http = http;
    d->host = xstrdup(host);
    d->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 60000;
    if (strncmp(host, "unix://", 7) == 0) {
        if (host[7] != '/') {
            docker_free(d);
            return err_set(e, ERR_INVALID, "DOCKER_HOST %s: unix socket path must be absolute",
                           host);
        }
        d->unix_path = xstrdup(host + 7);
        d->base_url = xstrdup("http://localhost");
        d->host_header = xstrdup("localhost");
    } else if (strncmp(host, "tcp://", 6) == 0) {
        const char *hp = host + 6;
        size_t n = strcspn(hp, "/");

        if (n == 0) {
            docker_free(d);
            return err_set(e, ERR_INVALID, "DOCKER_HOST %s: no host", host);
        }
        d->host_header = xstrndup(hp, n);
        d->base_url = xasprintf("%s://%s", tls ? "https" : "http", d->host_header);
        if (tls) {
            char *dir = cert_path ? xstrdup(cert_path)
                                  : xasprintf("%s/.docker", getenv("HOME") ? getenv("HOME") : "");

            d->ca = xasprintf("%s/ca.pem", dir);
            d->cert = xasprintf("%s/cert.pem", dir);
            d->key = xasprintf("%s/key.pem", dir);
            free(dir);
        }
    } else {
        const char *colon = strstr(host, "://");
        int n = colon ? (int)(colon - host) : (int)strlen(host);

        docker_free(d);
        return err_set(e, ERR_INVALID,
                       "DOCKER_HOST %s: scheme \"%.*s\" is not supported (use unix:// or tcp://)",
                       host, n, host);
    }
    if (ver != NULL) {
        snprintf(d->api, sizeof d->api, "%s", ver);
        d->pinned = true;
    }
    *out = d;
    return 0;
}

void
docker_free(struct docker *d)
{
    if (d == NULL)
        return;
    free(d->host);
    free(d->unix_path);
    free(d->base_url);
    free(d->host_header);
    free(d->ca);
    free(d->cert);
    free(d->key);
    free(d);
}

const char *
docker_api_version(const struct docker *d)
{
    return d->api[0] ? d->api : NULL;
}

const char *
docker_host(const struct docker *d)
{
    return d->host;
}

char *
docker_esc(const char *s)
{
    return httpc_escape(s);
}

char *
docker_label_filter(const char *label)
{
    json_t *f = json_object();
    json_t *a = json_array();
    char *js, *esc;

    json_array_append_new(a, json_string(label));
    json_object_set_new(f, "label", a);
    js = json_dumps(f, JSON_COMPACT);
    json_decref(f);
    esc = httpc_escape(js);
    free(js);
    return esc;
}

/* ---- the call machinery ------------------------------------------------------------------ */

struct dcall *
dcall_new(struct docker *d, docker_cb cb, void *arg, dcall_post_fn post, const char *fmt, ...)
{
    struct dcall *c = xcalloc(1, sizeof *c);
    va_list ap;
    char *what = NULL;

    va_start(ap, fmt);
    if (vasprintf(&what, fmt, ap) < 0)
        abort();
    va_end(ap);
    c->d = d;
    c->cb = cb;
    c->arg = arg;
    c->post = post;
    c->what = what;
    return c;
}

static void
dcall_free(struct dcall *c)
{
    free(c->what);
    buf_free(&c->line);
    buf_free(&c->text);
    free(c->stream_error);
    free(c->state);
    free(c);
}

/* Maps an HTTP error status to our code. */
static int
status_code(long status)
{
    switch (status) {
    case 400:
        return ERR_INVALID;
    case 401:
        return -EACCES;
    case 403:
        return -EBUSY;
    case 404:
        return ERR_NOTFOUND;
    case 409:
        return -EEXIST;
    default:
        return -EIO;
    }
}

/* The daemon's message: JSON "message", else the text body (trimmed, one line). */
static void
error_message(const char *body, size_t len, char *out, size_t outsz)
{
    json_error_t je;
    json_t *j = len ? json_loadb(body, len, 0, &je) : NULL;
    const char *m = NULL;

    if (j != NULL && json_is_object(j))
        m = json_string_value(json_object_get(j, "message"));
    if (m != NULL) {
        snprintf(out, outsz, "%s", m);
    } else {
        size_t n = len;

        while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r' || body[n - 1] == ' '))
            n--;
        if (n >= outsz)
            n = outsz - 1;
        memcpy(out, body, n);
        out[n] = '\0';
        for (char *p = out; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
    }
    json_decref(j);
}

/* Gives progress one line of a build's output, cut in place (p[n] is restored after). */
static void
text_line(struct dcall *c, char *p, size_t n)
{
    char keep;

    while (n > 0 && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return;
    keep = p[n];
    p[n] = '\0';
    c->progress(p, c->arg);
    p[n] = keep;
}

/* Appends more of a build's "stream" text and hands each complete line to progress: a line may
 * come in several messages, and one message may hold several lines. The rest waits for its
 * newline, or for the end of the stream (more NULL), or goes out as is once it is absurdly long.
 * Only the new text is searched: what waits holds no newline, so a long line that arrives in many
 * small messages (a RUN step's progress bar) costs no more than its length. */
void
dcall_text_lines(struct dcall *c, const char *more)
{
    size_t from = c->text.len, start = 0, n;
    char *p, *nl;

    if (more != NULL)
        buf_puts(&c->text, more);
    p = c->text.data;
    n = c->text.len;
    if (n == 0)
        return;
    while ((nl = memchr(p + from, '\n', n - from)) != NULL) {
        text_line(c, p + start, (size_t)(nl - p) - start);
        start = from = (size_t)(nl - p) + 1;
    }
    if (start < n && (more == NULL || n - start >= PULL_LINE_MAX)) {
        text_line(c, p + start, n - start);
        start = n;
    }
    if (start > 0) {
        memmove(p, p + start, n - start);
        c->text.len = n - start;
        p[c->text.len] = '\0';
    }
}

/* Scans one line of a JSON progress stream: the first error fails the call; each message
 * without one goes to c->on_msg. */
static void
stream_line(struct dcall *c, const char *p, size_t n)
{
    json_error_t je;
    json_t *j;

    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
        n--;
    if (n == 0)
        return;
    j = json_loadb(p, n, 0, &je);
    if (j == NULL) {
        if (c->stream_error == NULL)
            c->stream_error =
                xasprintf("unparsable progress line: %.*s", (int)(n > 200 ? 200 : n), p);
        return;
    }
    json_t *err = json_object_get(j, "error");
    json_t *detail = json_object_get(json_object_get(j, "errorDetail"), "message");
    if ((err != NULL || detail != NULL) && c->stream_error == NULL) {
        const char *m = json_string_value(detail) ? json_string_value(detail)
                                                  : json_string_value(err);
        c->stream_error = xstrdup(m ? m : "error in progress stream");
    }
    if (err == NULL && detail == NULL)
        c->on_msg(c, j);
    json_decref(j);
}

static int
on_stream_data(const char *p, size_t n, void *arg, struct err *e)
{
    struct dcall *c = arg;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            stream_line(c, buf_str(&c->line), c->line.len);
            buf_reset(&c->line);
        } else {
            if (c->line.len >= PULL_LINE_MAX)
                return err_set(e, ERR_PROTO, "%s: progress line longer than %u bytes", c->what,
                               PULL_LINE_MAX);
            buf_putc(&c->line, p[i]);
        }
    }
    return 0;
}

static void
on_dcall_done(const struct httpc_result *hr, void *arg)
{
    struct dcall *c = arg;
    struct docker_res res;

    memset(&res, 0, sizeof res);
    log_trace("docker %s: %ld in %.1f ms", c->what, hr->status,
              (double)(clock_now_ns() - c->t0) / 1e6);
    res.status = hr->status;
    res.body = hr->body;
    res.body_len = hr->body_len;
    if (hr->rc < 0) {
        res.rc = err_set(&res.err, hr->rc, "%s: %s", c->what, hr->err.msg);
    } else if (hr->status >= 400 || hr->status < 200) {
        char msg[200];

        error_message(hr->body, hr->body_len, msg, sizeof msg);
        res.rc = err_set(&res.err, status_code(hr->status), "%s: %ld %s", c->what, hr->status,
                         msg);
    } else {
        if (c->line.len > 0) {
            stream_line(c, buf_str(&c->line), c->line.len);
            buf_reset(&c->line);
        }
        if (c->text.len > 0)
            dcall_text_lines(c, NULL);
        if (c->stream_error != NULL) {
            res.rc = err_set(&res.err, -EIO, "%s: %s", c->what, c->stream_error);
        } else if (hr->body_len > 0 && (hr->body[0] == '{' || hr->body[0] == '[')) {
            json_error_t je;

            res.json = json_loadb(hr->body, hr->body_len, 0, &je);
            if (res.json == NULL)
                res.rc = err_set(&res.err, ERR_PROTO, "%s: bad JSON reply: %s", c->what, je.text);
        }
        if (res.rc == 0 && c->post != NULL)
            c->post(c, &res);
    }
    c->cb(&res, c->arg);
    json_decref(res.json);
    dcall_free(c);
}

int
dcall_start(struct dcall *c, const struct dcall_opts *o, struct err *e)
{
    struct docker *d = c->d;
    struct httpc_opts ho = {0};
    const char *hdrs[8];
    char *url, *ctype = NULL;
    int n = 0, rc;

    if (o->raw_path)
        url = xasprintf("%s%s", d->base_url, o->raw_path);
    else if (d->api[0] == '\0') {
        rc = err_set(e, -ENOTCONN, "%s: not connected (call docker_connect first)", c->what);
        dcall_free(c);
        return rc;
    } else
        url = xasprintf("%s/v%s%s", d->base_url, d->api, o->path);
    if (o->body != NULL) {
        ctype = xasprintf("Content-Type: %s",
                          o->content_type ? o->content_type : "application/json");
        hdrs[n++] = ctype;
    }
    for (const char *const *h = o->extra_headers; h && *h && n < 7; h++)
        hdrs[n++] = *h;
    hdrs[n] = NULL;
    ho.method = o->method;
    ho.url = url;
    ho.headers = hdrs;
    ho.body = o->body;
    ho.body_len = o->len;
    ho.send_empty_body = o->body == NULL && o->method && strcmp(o->method, "POST") == 0;
    ho.unix_socket = d->unix_path;
    ho.ca_file = d->ca;
    ho.cert_file = d->cert;
    ho.key_file = d->key;
    ho.timeout_ms = o->timeout_ms < 0 ? 0 : o->timeout_ms ? o->timeout_ms : d->timeout_ms;
    ho.max_body = o->max_body;
    if (o->stream_lines) {
        assert(c->on_msg != NULL);
        ho.on_data = on_stream_data;
    }
    if (log_trace_on) {
        c->t0 = clock_now_ns();
        log_trace("docker %s: sent", c->what);
    }
    rc = httpc_request(d->http, &ho, on_dcall_done, c, o->req, e);
    free(url);
    free(ctype);
    if (rc < 0) {
        err_prefix(e, "%s: ", c->what);
        dcall_free(c);
    }
    return rc;
}

int
docker_call(struct docker *d, const char *what, const char *method, const char *path,
            const char *content_type, const void *body, size_t len, docker_cb cb, void *arg,
            struct err *e)
{
    struct dcall *c = dcall_new(d, cb, arg, NULL, "%s", what);
    struct dcall_opts o = {.method = method, .path = path, .content_type = content_type,
                           .body = body, .len = len};

    return dcall_start(c, &o, e);
}

/* ---- version negotiation ----------------------------------------------------------------- */

struct connect_state {
    struct docker *d;
    docker_cb cb;
    void *arg;
};

/* Compares "1.41" and "1.9" numerically per component. */
static int
version_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        char *ea, *eb;
        long x = strtol(a, &ea, 10), y = strtol(b, &eb, 10);

        if (ea == a && eb == b)
            break; /* not a number: stop rather than spin */
        a = ea;
        b = eb;

        if (x != y)
            return x < y ? -1 : 1;
        if (*a == '.')
            a++;
        if (*b == '.')
            b++;
        if (!*a && !*b)
            break;
    }
    return 0;
}

static void
on_version(const struct docker_res *res, void *arg)
{
    struct connect_state *s = arg;
    struct docker_res out = *res;
    const char *min = NULL;

    if (res->rc == 0 && res->json != NULL)
        min = json_string_value(json_object_get(res->json, "MinAPIVersion"));
    if (res->rc == 0 && min != NULL && version_cmp(s->d->api, min) < 0)
        out.rc = err_set(&out.err, -ENOTSUP,
                         "docker %s: API version %s is older than the server's minimum %s",
                         s->d->host, s->d->api, min);
    if (out.rc < 0 && !s->d->pinned)
        s->d->api[0] = '\0';
    s->cb(&out, s->arg);
    free(s);
}

static void
on_ping(const struct docker_res *res, void *arg)
{
    struct connect_state *s = arg;
    struct docker *d = s->d;
    struct err e;

    if (res->rc < 0) {
        struct docker_res out = *res;

        err_prefix(&out.err, "docker %s unreachable: ", d->host);
        s->cb(&out, s->arg);
        free(s);
        return;
    }
    if (!d->pinned) {
        /* the Api-Version header was captured by on_ping_post into d->api */
        bool own = d->api[0] != '\0';
        if (!own)
            snprintf(d->api, sizeof d->api, "1.24");
        if (version_cmp(d->api, DOCKER_API_MAX) > 0) {
            snprintf(d->api, sizeof d->api, "%s", DOCKER_API_MAX);
            own = false;
        }
        if (own) {
            /* The engine's own version, which its minimum cannot exceed: /version (about 8
             * ms, the engine asks containerd) has nothing to add. */
            struct docker_res out = {0};
            s->cb(&out, s->arg);
            free(s);
            return;
        }
    }
    struct dcall *c = dcall_new(d, on_version, s, NULL, "docker %s: version", d->host);
    struct dcall_opts o = {.method = "GET", .path = "/version"};

    if (dcall_start(c, &o, &e) < 0) {
        struct docker_res out = {.rc = e.code, .err = e};

        s->cb(&out, s->arg);
        free(s);
    }
}

static void
on_ping_done(const struct httpc_result *hr, void *arg)
{
    struct connect_state *s = arg;
    struct docker_res res;
    char v[16];

    memset(&res, 0, sizeof res);
    res.status = hr->status;
    if (hr->rc < 0)
        res.rc = err_set(&res.err, hr->rc, "%s", hr->err.msg);
    else if (hr->status != 200)
        res.rc = err_set(&res.err, -EIO, "/_ping: HTTP %ld", hr->status);
    else if (!s->d->pinned && httpc_header_get(hr->headers, "Api-Version", v, sizeof v) == 0)
        snprintf(s->d->api, sizeof s->d->api, "%s", v);
    on_ping(&res, s);
}

int
docker_connect(struct docker *d, docker_cb cb, void *arg, struct err *e)
{
    struct connect_state *s = xcalloc(1, sizeof *s);
    struct httpc_opts ho = {0};
    char *url = xasprintf("%s/_ping", d->base_url);
    int rc;

    s->d = d;
    s->cb = cb;
    s->arg = arg;
    if (!d->pinned)
        d->api[0] = '\0';
    ho.url = url;
    ho.unix_socket = d->unix_path;
    ho.ca_file = d->ca;
    ho.cert_file = d->cert;
    ho.key_file = d->key;
    ho.timeout_ms = d->timeout_ms;
    ho.max_body = 4096;
    rc = httpc_request(d->http, &ho, on_ping_done, s, NULL, e);
    free(url);
    if (rc < 0)
        free(s);
    return rc;
}

/* ---- added for dind.c: the client's loop and container logs ------------------------------ */

uv_loop_t *
docker_loop(const struct docker *d)
{
    return httpc_loop(d->http);
}

/* Replaces a multiplexed logs body with its payloads (kept in c->state, freed with c). */
static void
post_logs(struct dcall *c, struct docker_res *res)
{
    const unsigned char *p = (const unsigned char *)res->body;
    size_t n = res->body_len, off = 0;
    struct buf out = BUF_INIT;

    while (off < n) {
        size_t len;

        if (n - off < 8 || p[off] > 2 || p[off + 1] || p[off + 2] || p[off + 3]) {
            buf_free(&out);
            return; /* not multiplexed (a TTY container): keep the raw body */
        }
        len = (size_t)p[off + 4] << 24 | (size_t)p[off + 5] << 16 | (size_t)p[off + 6] << 8 |
              p[off + 7];
        if (len > n - off - 8) {
            buf_free(&out);
            return;
        }
        buf_append(&out, p + off + 8, len);
        off += 8 + len;
    }
    res->body_len = out.len;
    c->state = buf_steal(&out);
    res->body = c->state;
}

int
docker_container_logs(struct docker *d, const char *id, int tail, docker_cb cb, void *arg,
                      struct err *e)
{
    char *esc = docker_esc(id), *path, ntail[24];
    struct dcall *c = dcall_new(d, cb, arg, post_logs, "logs of container %s", id);
    int rc;

    if (tail > 0)
        snprintf(ntail, sizeof ntail, "%d", tail);
    else
        snprintf(ntail, sizeof ntail, "all");
    path = xasprintf("/containers/%s/logs?stdout=1&stderr=1&tail=%s", esc, ntail);
    struct dcall_opts o = {.method = "GET", .path = path, .max_body = 1024u * 1024};
    rc = dcall_start(c, &o, e);
    free(esc);
    free(path);
    return rc;
}

char *
docker_object_name(const char *a, const char *b)
{
    char *n = xasprintf("%s%s", a, b);

    for (char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
            *p = '-';
    if (!isalnum((unsigned char)n[0]))
        n[0] = 'x';
    return n;
}
