/* dind.c: the per-job Docker daemon sidecar (see dind.h).
 *
 * One engine call is in flight at a time, in this order: create the three volumes, create the
 * sidecar (once more after removing a stale one of the same name), copy the server and client
 * certificates into it (the archive API writes through its volume mounts although it is not
 * running), start it, then poll inspect on a timer until its health check reports healthy, it
 * exits, or the deadline passes; on an exit or a timeout the last log lines are read before
 * done is called. dind_free() only marks the object: whatever callback comes next closes the
 * timer, and the close callback frees. */
#include "dind.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "docker.h"
#include "profile.h"
#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "tar.h"

#define DIND_PORT "2376"
#define DIND_POLL_MS 500
#define DIND_LOG_TAIL 20
#define DIND_CERT_DAYS 30
#define SERVER_DIR "/certs/server"
#define CLIENT_DIR "/certs/client"

enum step {
    ST_VOL_SERVER,
    ST_VOL_CLIENT,
    ST_VOL_DATA,
    ST_CREATE,
    ST_REMOVE_STALE,
    ST_PUT_SERVER,
    ST_PUT_CLIENT,
    ST_START,
    ST_WAIT,
    ST_LOGS,
    ST_DONE,
};

struct dind {
    struct docker *d;
    uv_timer_t timer;
    enum step step;
    bool inflight;  /* an engine call's callback is still to come */
    bool freed;     /* dind_free() was called: report nothing, free when idle */
    bool closing;   /* the timer is being closed; freed in its close callback */
    bool recreated; /* a stale sidecar of the same name was removed once */

    char *job, *image, *name, *cid;
    char *vol_server, *vol_client, *vol_data;
    enum dind_priv priv;
    json_t *labels; /* the caller's plus role=dind */
    json_t *body;   /* the create body */
    long timeout_ms;
    uint64_t deadline;

    struct buf tar_server, tar_client; /* PEM files as tars; wiped once sent */

    /* the failure waiting for the log lines (ST_LOGS) */
    int fail_rc;
    char fail_msg[256];
    char *logs;
    char last_health[160];

    char *env[4];
    char *bind;
    struct dind_job out;

    dind_done_fn done;
    void *arg;
};

static void step_run(struct dind *x);

/* ---- names ------------------------------------------------------------------------------- */

/* "<job><suffix>" with the characters Docker refuses in names replaced by '-'. */
static char *
object_name(const char *job, const char *suffix)
{
    return docker_object_name(job, suffix);
}

/* ---- TLS material (OpenSSL) -------------------------------------------------------------- */

/* The TLS material is made on the loop: three P-256 keys and three signatures take well under
 * a millisecond of CPU, less than a thread hand-off would cost. */

/* Fills e with OpenSSL's first queued error and clears the queue. */
static int
ssl_fail(struct err *e, const char *what)
{
    unsigned long code = ERR_get_error();
    char why[160] = "unknown error";

    if (code != 0)
        ERR_error_string_n(code, why, sizeof why);
    ERR_clear_error();
    return err_set(e, -EIO, "dind TLS: %s: %s", what, why);
}

struct cert_ext {
    int nid;
    const char *value;
};

/* Returns a new certificate for key, named cn, signed by issuer_key (self-signed when issuer
 * is NULL), or NULL with e set. */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
          const struct cert_ext *ext, size_t next, struct err *e)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    X509_NAME *name;
    X509V3_CTX ctx;

    if (x == NULL || serial == NULL)
        goto fail;
    if (!X509_set_version(x, X509_VERSION_3) ||
        !BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)DIND_CERT_DAYS * 86400) ||
        !X509_set_pubkey(x, key))
        goto fail;
    name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"runnerd",
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name))
        goto fail;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    for (size_t i = 0; i < next; i++) {
        X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, ext[i].nid, ext[i].value);

        if (ex == NULL || !X509_add_ext(x, ex, -1)) {
            X509_EXTENSION_free(ex);
            goto fail;
        }
        X509_EXTENSION_free(ex);
    }
    if (!X509_sign(x, issuer_key, EVP_sha256()))
        goto fail;
    BN_free(serial);
    return x;
fail:
    ssl_fail(e, cn);
    BN_free(serial);
    X509_free(x);
    return NULL;
}

/* Appends the PEM form of a certificate (key NULL) or of a private key (cert NULL) to b. */
static int
pem_append(struct buf *b, X509 *cert, EVP_PKEY *key, struct err *e)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    int ok;

    if (bio == NULL)
        return ssl_fail(e, "BIO_new");
    ok = cert ? PEM_write_bio_X509(bio, cert)
              : PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    if (!ok) {
        BIO_free(bio);
        return ssl_fail(e, "PEM encoding");
    }
    n = BIO_get_mem_data(bio, &p);
    buf_append(b, p, (size_t)n);
    OPENSSL_cleanse(p, (size_t)n);
    BIO_free(bio);
    return 0;
}

/* Adds ca.pem, cert.pem and key.pem to a tar in out (key mode: key_mode). */
static int
tls_tar(struct buf *out, X509 *ca, X509 *cert, EVP_PKEY *key, unsigned key_mode, struct err *e)
{
    struct buf ca_pem = BUF_INIT, cert_pem = BUF_INIT, key_pem = BUF_INIT;
    struct tar t;
    int rc;

    tar_init(&t);
    t.mtime = (long long)time(NULL);
    if ((rc = pem_append(&ca_pem, ca, NULL, e)) < 0 ||
        (rc = pem_append(&cert_pem, cert, NULL, e)) < 0 ||
        (rc = pem_append(&key_pem, NULL, key, e)) < 0)
        goto out;
    if ((rc = tar_add_file(&t, "ca.pem", 0644, ca_pem.data, ca_pem.len, e)) < 0 ||
        (rc = tar_add_file(&t, "cert.pem", 0644, cert_pem.data, cert_pem.len, e)) < 0 ||
        (rc = tar_add_file(&t, "key.pem", key_mode, key_pem.data, key_pem.len, e)) < 0)
        goto out;
    tar_finish(&t);
    buf_append(out, t.out.data, t.out.len);
out:
    if (key_pem.data)
        OPENSSL_cleanse(key_pem.data, key_pem.len);
    if (t.out.data)
        OPENSSL_cleanse(t.out.data, t.out.len);
    buf_free(&ca_pem);
    buf_free(&cert_pem);
    buf_free(&key_pem);
    tar_free(&t);
    return rc;
}

/* Makes a fresh CA, a server certificate (DNS:docker, DNS:<sidecar name>, DNS:localhost,
 * IP:127.0.0.1) and a client certificate (clientAuth), as the two tars to upload. The CA key
 * exists only in memory here and is dropped at the end. */
static int
tls_make(struct dind *x, struct err *e)
{
    EVP_PKEY *ca_key = NULL, *srv_key = NULL, *cli_key = NULL;
    X509 *ca = NULL, *srv = NULL, *cli = NULL;
    char *san = xasprintf("DNS:docker,DNS:%s,DNS:localhost,IP:127.0.0.1", x->name);
    const struct cert_ext ca_ext[] = {
        {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
    };
    const struct cert_ext srv_ext[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_alt_name, san},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    const struct cert_ext cli_ext[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "clientAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    char *ca_cn = xasprintf("%s dind CA", x->job);
    char *cli_cn = xasprintf("%s dind client", x->job);
    int rc = 0;

    if ((ca_key = EVP_EC_gen("P-256")) == NULL || (srv_key = EVP_EC_gen("P-256")) == NULL ||
        (cli_key = EVP_EC_gen("P-256")) == NULL) {
        rc = ssl_fail(e, "EC key generation");
        goto out;
    }
    if ((ca = make_cert(ca_key, ca_cn, NULL, ca_key, ca_ext, 3, e)) == NULL ||
        (srv = make_cert(srv_key, "docker", ca, ca_key, srv_ext, 6, e)) == NULL ||
        (cli = make_cert(cli_key, cli_cn, ca, ca_key, cli_ext, 5, e)) == NULL) {
        rc = e ? e->code : -EIO;
        goto out;
    }
    /* The server key is for the sidecar's root only; the client key must be readable by
     * whatever user the job runs as (the volume is mounted into this job alone). */
    if ((rc = tls_tar(&x->tar_server, ca, srv, srv_key, 0600, e)) < 0 ||
        (rc = tls_tar(&x->tar_client, ca, cli, cli_key, 0644, e)) < 0)
        goto out;
out:
    X509_free(ca);
    X509_free(srv);
    X509_free(cli);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(cli_key);
    free(san);
    free(ca_cn);
    free(cli_cn);
    return rc;
}

static void
wipe(struct buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->len);
    buf_free(b);
}

/* ---- the create body --------------------------------------------------------------------- */

static json_t *
strv(const char *const *v)
{
    json_t *a = json_array();

    for (; v && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static json_t *
build_body(struct dind *x, const struct dind_opts *o)
{
    static const char *const env[] = {"DOCKER_TLS_CERTDIR=", NULL};
    struct docker_container_spec spec = {0};
    char *binds[5];
    size_t nargs = 0;
    const char **cmd;
    json_t *body, *hc, *hck;

    for (const char *const *a = o->args; a && *a; a++)
        nargs++;
    cmd = xcalloc(8 + nargs, sizeof *cmd);
    cmd[0] = "dockerd";
    cmd[1] = "--host=unix:///var/run/docker.sock";
    cmd[2] = "--host=tcp://0.0.0.0:" DIND_PORT;
    cmd[3] = "--tlsverify";
    cmd[4] = "--tlscacert=" SERVER_DIR "/ca.pem";
    cmd[5] = "--tlscert=" SERVER_DIR "/cert.pem";
    cmd[6] = "--tlskey=" SERVER_DIR "/key.pem";
    for (size_t i = 0; i < nargs; i++)
        cmd[7 + i] = o->args[i];
    binds[0] = xasprintf("%s:" SERVER_DIR, x->vol_server);
    binds[1] = xasprintf("%s:" CLIENT_DIR, x->vol_client);
    binds[2] = xasprintf("%s:/var/lib/docker", x->vol_data);
    /* doc/docker-engine.md §4.2's recipe: the inner engine manages cgroups itself (the host's are
     * v1 here). */
    binds[3] = o->priv == DIND_PRIV_CAPS ? xstrdup("/sys/fs/cgroup:/sys/fs/cgroup:rw") : NULL;
    binds[4] = NULL;

    spec.image = o->image;
    spec.cmd = cmd;
    spec.env = env;
    spec.labels = x->labels;
    spec.binds = (const char *const *)binds;
    spec.network_mode = o->network;
    spec.network_alias = "docker";
    /* The engine's own log driver stays: the sidecar's output is dockerd's log, no step's, and
     * a failed start reads its last lines back with `GET /logs` (ST_LOGS). */
    spec.privileged = o->priv == DIND_PRIV_PRIVILEGED;
    body = docker_container_spec_json(&spec);
    hc = json_object_get(body, "HostConfig");
    if (o->priv == DIND_PRIV_CAPS) {
        static const char *const add[] = {"ALL", NULL};
        static const char *const drop[] = {"SYS_RESOURCE", NULL};
        static const char *const sec[] = {"seccomp=unconfined", "apparmor=unconfined", NULL};
        static const char *const rules[] = {"a *:* rwm", NULL};

        json_object_set_new(hc, "CapAdd", strv(add));
        json_object_set_new(hc, "CapDrop", strv(drop));
        json_object_set_new(hc, "SecurityOpt", strv(sec));
        json_object_set_new(hc, "DeviceCgroupRules", strv(rules));
        /* the CLI's "--security-opt systempaths=unconfined": the engine's API refuses that
         * option ("invalid --security-opt 2") and takes empty path lists instead */
        json_object_set_new(hc, "MaskedPaths", json_array());
        json_object_set_new(hc, "ReadonlyPaths", json_array());
    }
    /* The label's limits hold for the sidecar as for the job container (and for what the
     * inner engine runs wherever its cgroups nest under the sidecar's). */
    profile_apply_limits(o->limits, hc);
    /* Healthy once the inner engine answers on its socket. The start period spans the whole
     * ready timeout, so failures while dockerd starts never turn it "unhealthy". */
    hck = json_object();
    json_object_set_new(hck, "Test",
                        json_pack("[s,s,s,s]", "CMD", "docker",
                                  "--host=unix:///var/run/docker.sock", "version"));
    json_object_set_new(hck, "Interval", json_integer(1000000000LL));
    json_object_set_new(hck, "Timeout", json_integer(10000000000LL));
    json_object_set_new(hck, "StartPeriod", json_integer((json_int_t)x->timeout_ms * 1000000));
    json_object_set_new(hck, "Retries", json_integer(3));
    json_object_set_new(body, "Healthcheck", hck);
    json_object_set_new(body, "Hostname", json_string("docker"));
    for (int i = 0; binds[i]; i++)
        free(binds[i]);
    free(cmd);
    return body;
}

/* ---- finishing --------------------------------------------------------------------------- */

static void
on_closed(uv_handle_t *h)
{
    struct dind *x = h->data;

    free(x->job);
    free(x->image);
    free(x->name);
    free(x->cid);
    free(x->vol_server);
    free(x->vol_client);
    free(x->vol_data);
    json_decref(x->labels);
    json_decref(x->body);
    wipe(&x->tar_server);
    wipe(&x->tar_client);
    free(x->logs);
    for (int i = 0; i < 3; i++)
        free(x->env[i]);
    free(x->bind);
    free(x);
}

/* After dind_free(): free once nothing is in flight. Returns true when x is going away. */
static bool
reap(struct dind *x)
{
    if (!x->freed)
        return false;
    if (!x->inflight && !x->closing) {
        x->closing = true;
        uv_timer_stop(&x->timer);
        uv_close((uv_handle_t *)&x->timer, on_closed);
    }
    return true;
}

/* Reports the result once; the caller returns right after (done may call dind_free()). */
static void
finish(struct dind *x, int rc, const struct err *e)
{
    x->step = ST_DONE;
    uv_timer_stop(&x->timer);
    wipe(&x->tar_server);
    wipe(&x->tar_client);
    if (rc == 0)
        log_notice("job=%s dind sidecar %s is ready", x->job, x->name);
    else
        log_warn("job=%s dind: %s", x->job, e->msg);
    x->done(x->arg, rc, rc == 0 ? NULL : e);
}

/* The engine's own words in a docker.c message "<what>: <status> <message>", without the
 * runtime's wrappers ("failed to create shim task: OCI runtime create failed: ...: unknown"). */
static void
engine_words(const char *msg, char *out, size_t outsz)
{
    static const char *const wrappers[] = {
        "failed to create shim task: ", "OCI runtime create failed: ", "runc create failed: ",
        "unable to start container process: ", "container_linux.go:", NULL};
    const char *p = msg, *s;
    size_t n;

    /* skip "<what>: <3 digits> " */
    for (s = strstr(msg, ": "); s != NULL; s = strstr(s + 1, ": "))
        if (isdigit((unsigned char)s[2]) && isdigit((unsigned char)s[3]) &&
            isdigit((unsigned char)s[4]) && s[5] == ' ') {
            p = s + 6;
            break;
        }
    for (bool again = true; again;) {
        again = false;
        for (int i = 0; wrappers[i]; i++)
            if (strncmp(p, wrappers[i], strlen(wrappers[i])) == 0) {
                p += strlen(wrappers[i]);
                again = true;
            }
    }
    n = strlen(p);
    if (n > 9 && strcmp(p + n - 9, ": unknown") == 0)
        n -= 9;
    snprintf(out, outsz, "%.*s", (int)n, p);
}

static bool
is_refusal(const char *msg)
{
    return strcasestr(msg, "privileged") != NULL || strcasestr(msg, "apply caps") != NULL ||
           strcasestr(msg, "operation not permitted") != NULL;
}

/* A create or start refused for the privileges: -EPERM with the label's remedies. */
static void
fail_refused(struct dind *x, const struct err *ce)
{
    struct err e;
    char words[200];
    const char *mode = x->priv == DIND_PRIV_CAPS ? "caps" : "privileged";
    const char *alt = x->priv == DIND_PRIV_CAPS ? "" : ", dind_privileges: caps,";
    int fixed, room;

    log_warn("job=%s dind sidecar %s: the engine refused its privileges: %s", x->job, x->name,
             ce->msg);
    engine_words(ce->msg, words, sizeof words);
    /* keep the remedy whole: shorten the engine's words if the line would not fit */
    fixed = snprintf(NULL, 0,
                     "the Docker engine refused the privileges the dind sidecar needs (); it "
                     "cannot run docker: dind with dind_privileges: %s; use docker: socket%s or "
                     "give dockerd full capabilities",
                     mode, alt);
    room = (int)sizeof e.msg - 1 - fixed;
    if (room < 4)
        room = 4;
    if ((int)strlen(words) > room)
        snprintf(words + room - 3, 4, "...");
    err_set(&e, DIND_ERR_PERM,
            "the Docker engine refused the privileges the dind sidecar needs (%s); it cannot "
            "run docker: dind with dind_privileges: %s; use docker: socket%s or give dockerd "
            "full capabilities",
            words, mode, alt);
    finish(x, DIND_ERR_PERM, &e);
}

/* Reads the last log lines, then fails with rc and msg followed by them. */
static void
fail_with_logs(struct dind *x, int rc, const char *msg)
{
    x->fail_rc = rc;
    snprintf(x->fail_msg, sizeof x->fail_msg, "%s", msg);
    x->step = ST_LOGS;
    step_run(x);
}

/* Appends as much of the end of tail as fits to the failure message. */
static void
fail_logged(struct dind *x)
{
    struct err e;
    size_t used = strlen(x->fail_msg), room;
    const char *t = x->logs ? x->logs : "";
    struct buf oneline = BUF_INIT;

    /* the last lines, joined on one line; the end matters most */
    for (const char *p = t; *p; p++) {
        if (*p != '\n')
            buf_putc(&oneline, *p);
        else if (p[1] != '\0')
            buf_puts(&oneline, " | ");
    }
    room = sizeof e.msg - 1 - used;
    if (oneline.len == 0)
        err_set(&e, x->fail_rc, "%s; it wrote no log lines", x->fail_msg);
    else if (oneline.len + 20 <= room)
        err_set(&e, x->fail_rc, "%s; last log lines: %s", x->fail_msg, buf_str(&oneline));
    else if (room > 24)
        err_set(&e, x->fail_rc, "%s; last log lines: ...%s", x->fail_msg,
                buf_str(&oneline) + oneline.len - (room - 22));
    else
        err_set(&e, x->fail_rc, "%s", x->fail_msg);
    buf_free(&oneline);
    finish(x, x->fail_rc, &e);
}

/* ---- polling ----------------------------------------------------------------------------- */

static void on_res(const struct docker_res *res, void *arg);

static void
on_tick(uv_timer_t *t)
{
    struct dind *x = t->data;

    if (x->freed || x->step != ST_WAIT)
        return;
    step_run(x);
}

/* The health check's last output, on one line. */
static void
note_health(struct dind *x, json_t *health)
{
    json_t *log = json_object_get(health, "Log");
    json_t *last = json_array_get(log, json_array_size(log) ? json_array_size(log) - 1 : 0);
    const char *out = json_string_value(json_object_get(last, "Output"));
    size_t n;

    if (out == NULL)
        return;
    snprintf(x->last_health, sizeof x->last_health, "%s", out);
    for (char *p = x->last_health; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    n = strlen(x->last_health);
    while (n > 0 && x->last_health[n - 1] == ' ')
        x->last_health[--n] = '\0';
}

static void
ready(struct dind *x)
{
    x->env[0] = xstrdup("DOCKER_HOST=tcp://docker:" DIND_PORT);
    x->env[1] = xstrdup("DOCKER_TLS_VERIFY=1");
    x->env[2] = xstrdup("DOCKER_CERT_PATH=" CLIENT_DIR);
    x->env[3] = NULL;
    x->bind = xasprintf("%s:" CLIENT_DIR ":ro", x->vol_client);
    x->out.env = (const char *const *)x->env;
    x->out.bind = x->bind;
    finish(x, 0, NULL);
}

static void
inspected(struct dind *x, json_t *ins)
{
    json_t *state = json_object_get(ins, "State");
    json_t *health = json_object_get(state, "Health");
    const char *status = json_string_value(json_object_get(state, "Status"));
    const char *hs = json_string_value(json_object_get(health, "Status"));
    char msg[256];

    note_health(x, health);
    if (status == NULL || strcmp(status, "exited") == 0 || strcmp(status, "dead") == 0) {
        snprintf(msg, sizeof msg, "the dind sidecar %s exited with code %lld before it was ready",
                 x->name, (long long)json_integer_value(json_object_get(state, "ExitCode")));
        fail_with_logs(x, -EIO, msg);
        return;
    }
    if (hs != NULL && strcmp(hs, "healthy") == 0) {
        ready(x);
        return;
    }
    if (hs == NULL) {
        snprintf(msg, sizeof msg, "the dind sidecar %s has no health check (image %s)", x->name,
                 x->image);
        fail_with_logs(x, ERR_PROTO, msg);
        return;
    }
    if (strcmp(hs, "unhealthy") == 0 || uv_now(docker_loop(x->d)) >= x->deadline) {
        snprintf(msg, sizeof msg, "the dind sidecar %s is not ready after %g s%s%s%s", x->name,
                 (double)x->timeout_ms / 1000, x->last_health[0] ? " (health check: " : "",
                 x->last_health, x->last_health[0] ? ")" : "");
        fail_with_logs(x, ERR_TIMEOUT, msg);
        return;
    }
    uv_timer_start(&x->timer, on_tick, DIND_POLL_MS, 0);
}

/* Keeps the last lines of the log text, escaped. */
static void
keep_logs(struct dind *x, const char *p, size_t n)
{
    size_t start, lines = 0;
    struct buf b = BUF_INIT;

    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    start = n;
    while (start > 0 && lines < DIND_LOG_TAIL) {
        start--;
        if (p[start] == '\n' && ++lines == DIND_LOG_TAIL) {
            start++;
            break;
        }
    }
    /* escape each line separately so the newlines between them stay */
    for (size_t i = start; i < n;) {
        size_t j = i;
        char *esc;

        while (j < n && p[j] != '\n')
            j++;
        esc = log_escape(p + i, j - i > 0 && p[j - 1] == '\r' ? j - i - 1 : j - i);
        buf_printf(&b, "%s\n", esc);
        free(esc);
        i = j + 1;
    }
    free(x->logs);
    x->logs = b.len ? buf_steal(&b) : NULL;
    buf_free(&b);
}

/* ---- the steps --------------------------------------------------------------------------- */

/* Issues the current step's engine call. Returns 0 (its callback will come) or <0 with e. */
static int
issue(struct dind *x, struct err *e)
{
    int rc;

    switch (x->step) {
    case ST_VOL_SERVER:
        rc = docker_volume_create(x->d, x->vol_server, x->labels, on_res, x, e);
        break;
    case ST_VOL_CLIENT:
        rc = docker_volume_create(x->d, x->vol_client, x->labels, on_res, x, e);
        break;
    case ST_VOL_DATA:
        rc = docker_volume_create(x->d, x->vol_data, x->labels, on_res, x, e);
        break;
    case ST_CREATE:
        rc = docker_container_create(x->d, x->name, x->body, on_res, x, e);
        break;
    case ST_REMOVE_STALE:
        rc = docker_container_remove(x->d, x->name, true, true, on_res, x, e);
        break;
    case ST_PUT_SERVER:
        rc = docker_archive_put(x->d, x->cid, SERVER_DIR, x->tar_server.data, x->tar_server.len,
                                on_res, x, e);
        wipe(&x->tar_server); /* the call holds its own copy */
        break;
    case ST_PUT_CLIENT:
        rc = docker_archive_put(x->d, x->cid, CLIENT_DIR, x->tar_client.data, x->tar_client.len,
                                on_res, x, e);
        wipe(&x->tar_client);
        break;
    case ST_START:
        /* by name: the runtime's messages are long, and the error line has room for them */
        rc = docker_container_start(x->d, x->name, on_res, x, e);
        break;
    case ST_WAIT:
        rc = docker_container_inspect(x->d, x->cid, on_res, x, e);
        break;
    case ST_LOGS:
        rc = docker_container_logs(x->d, x->cid ? x->cid : x->name, DIND_LOG_TAIL, on_res, x, e);
        break;
    case ST_DONE:
    default:
        return 0;
    }
    if (rc < 0)
        err_prefix(e, "dind sidecar %s: ", x->name);
    else
        x->inflight = true;
    return rc;
}

/* Issues the current step's call from a loop callback; a refused call ends the start. */
static void
step_run(struct dind *x)
{
    struct err e = {0};
    int rc = issue(x, &e);

    if (rc == 0)
        return;
    if (x->step == ST_LOGS)
        fail_logged(x); /* the failure waiting for the lines, without them */
    else
        finish(x, rc, &e);
}

/* One engine call came back: move on to the next step. */
static void
on_res(const struct docker_res *res, void *arg)
{
    struct dind *x = arg;
    struct err e;
    char words[200], msg[256];

    x->inflight = false;
    if (reap(x))
        return;
    if (res->rc < 0 && x->step != ST_LOGS) {
        if (x->step == ST_CREATE && res->rc == -EEXIST && !x->recreated) {
            /* a sidecar of the same name from an earlier attempt: replace it */
            x->recreated = true;
            log_info("job=%s dind: removing a stale sidecar %s", x->job, x->name);
            x->step = ST_REMOVE_STALE;
            step_run(x);
            return;
        }
        if ((x->step == ST_CREATE || x->step == ST_START) && is_refusal(res->err.msg)) {
            fail_refused(x, &res->err);
            return;
        }
        if (x->step == ST_START) {
            engine_words(res->err.msg, words, sizeof words);
            snprintf(msg, sizeof msg, "the dind sidecar %s did not start (image %s): %s",
                     x->name, x->image, words);
            fail_with_logs(x, -EIO, msg);
            return;
        }
        e = res->err;
        err_prefix(&e, "dind sidecar %s: ", x->name);
        finish(x, res->rc, &e);
        return;
    }
    switch (x->step) {
    case ST_VOL_SERVER:
        x->step = ST_VOL_CLIENT;
        break;
    case ST_VOL_CLIENT:
        x->step = ST_VOL_DATA;
        break;
    case ST_VOL_DATA:
    case ST_REMOVE_STALE:
        x->step = ST_CREATE;
        break;
    case ST_CREATE:
        x->cid = xstrdup(res->id);
        x->step = ST_PUT_SERVER;
        break;
    case ST_PUT_SERVER:
        x->step = ST_PUT_CLIENT;
        break;
    case ST_PUT_CLIENT:
        x->step = ST_START;
        break;
    case ST_START:
        log_info("job=%s dind: started sidecar %s (%.12s), waiting for its engine", x->job,
                 x->name, x->cid);
        x->deadline = uv_now(docker_loop(x->d)) + (uint64_t)x->timeout_ms;
        x->step = ST_WAIT;
        uv_timer_start(&x->timer, on_tick, DIND_POLL_MS, 0);
        return;
    case ST_WAIT:
        inspected(x, res->json);
        return;
    case ST_LOGS:
        if (res->rc == 0)
            keep_logs(x, res->body ? res->body : "", res->body_len);
        fail_logged(x);
        return;
    case ST_DONE:
    default:
        return;
    }
    step_run(x);
}

/* ---- the contract ------------------------------------------------------------------------ */

int
dind_start(struct docker *d, const struct dind_opts *o, dind_done_fn done, void *arg,
           struct dind **out, struct err *e)
{
    struct dind *x;
    int rc;

    *out = NULL;
    if (o->job == NULL || o->job[0] == '\0')
        return err_set(e, ERR_INVALID, "dind: no job name");
    if (o->image == NULL || o->image[0] == '\0')
        return err_set(e, ERR_INVALID, "dind: no image");
    if (o->network == NULL || o->network[0] == '\0')
        return err_set(e, ERR_INVALID, "dind: no job network");
    x = xcalloc(1, sizeof *x);
    x->d = d;
    x->job = xstrdup(o->job);
    x->image = xstrdup(o->image);
    x->name = object_name(o->job, "-dind");
    x->vol_server = object_name(o->job, "-dind-certs");
    x->vol_client = object_name(o->job, "-dind-client");
    x->vol_data = object_name(o->job, "-dind-data");
    x->priv = o->priv;
    x->timeout_ms = o->ready_timeout_s > 0 ? (long)(o->ready_timeout_s * 1000) : 60000;
    x->labels = o->labels ? json_deep_copy(o->labels) : json_object();
    json_object_set_new(x->labels, DOCKER_LABEL_ROLE, json_string("dind"));
    x->done = done;
    x->arg = arg;
    x->body = build_body(x, o);
    uv_timer_init(docker_loop(d), &x->timer);
    x->timer.data = x;
    rc = tls_make(x, e);
    if (rc == 0) {
        x->step = ST_VOL_SERVER;
        rc = issue(x, e);
    }
    if (rc < 0) {
        x->freed = true;
        reap(x);
        return rc;
    }
    log_info("job=%s dind: starting sidecar %s from %s (%s)", x->job, x->name, x->image,
             x->priv == DIND_PRIV_CAPS ? "caps" : "privileged");
    *out = x;
    return 0;
}

const struct dind_job *
dind_job(const struct dind *x)
{
    return x->out.env ? &x->out : NULL;
}

const char *
dind_logs(const struct dind *x)
{
    return x->logs;
}

void
dind_free(struct dind *x)
{
    if (x == NULL || x->freed)
        return;
    x->freed = true;
    reap(x);
}
