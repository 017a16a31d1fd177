/* scm-tls.c: who may fetch: the token sent as basic auth to the URL's own origin only, server
 * certificates checked against the system's store or the request's CA file, a failed fetch
 * told in those terms, and the probe that a token may read a repository before anything cached
 * from it is handed out. */
#include "scm-int.h"

#include "runner/xalloc.h"

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The token goes as basic auth, user x-access-token, only to the URL's own origin, once per
 * fetch: a second request for credentials means the server refused it. */
static int
on_credentials(git_credential **out, const char *url, const char *user, unsigned int allowed,
               void *payload)
{
    struct run *r = payload;
    char *clean = NULL, *origin = NULL;
    bool ours;

    (void)user;
    if (scm_canceled(r))
        return GIT_EUSER;
    scm_url_parse(url, &clean, &origin);
    ours = origin && r->origin && strcmp(origin, r->origin) == 0;
    free(clean);
    free(origin);
    if (r->token == NULL || !ours || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT)) {
        r->auth_missing = true;
        git_error_set_str(GIT_ERROR_HTTP, "authentication required");
        return GIT_EAUTH;
    }
    if (r->auth_calls++ > 0) {
        r->auth_failed = true;
        git_error_set_str(GIT_ERROR_HTTP, "authentication failed");
        return GIT_EAUTH;
    }
    return git_credential_userpass_plaintext_new(out, "x-access-token", r->token);
}

/* Verifies a server certificate (DER) for host against the CA certificates in ca_file.
 * Returns 0 when trusted, else -1 with the reason in why. */
static int
cert_verify(const void *der, size_t len, const char *host, const char *ca_file, char *why,
            size_t whylen)
{
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)len);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rc = -1;

    if (cert == NULL || store == NULL || ctx == NULL) {
        snprintf(why, whylen, "unreadable certificate");
        goto out;
    }
    if (X509_STORE_load_file(store, ca_file) != 1) {
        snprintf(why, whylen, "cannot read CA file %s", ca_file);
        goto out;
    }
    if (X509_STORE_CTX_init(ctx, store, cert, NULL) != 1) {
        snprintf(why, whylen, "certificate check failed");
        goto out;
    }
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1)
        X509_VERIFY_PARAM_set1_host(vp, host, 0);
    if (X509_verify_cert(ctx) == 1)
        rc = 0;
    else
        snprintf(why, whylen, "%s (CA file %s)",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)), ca_file);
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(cert);
    return rc;
}

/* TLS: libgit2 verifies against the system's store; a certificate it refused is accepted when
 * `insecure`, or when it verifies against ca_file. The CA file is per request, so jobs with
 * different files do not change each other's trust (GIT_OPT_SET_SSL_CERT_LOCATIONS would). */
static int
on_certificate(git_cert *cert, int valid, const char *host, void *payload)
{
    struct run *r = payload;

    if (valid || r->insecure)
        return 0;
    if (r->ca_file != NULL && cert->cert_type == GIT_CERT_X509) {
        const git_cert_x509 *x = (const git_cert_x509 *)cert;

        if (cert_verify(x->data, x->len, host, r->ca_file, r->cert_why, sizeof r->cert_why) == 0)
            return 0;
    } else {
        snprintf(r->cert_why, sizeof r->cert_why, "not trusted by the system's CA store");
    }
    r->cert_failed = true;
    git_error_set_str(GIT_ERROR_SSL, "certificate not trusted");
    return GIT_ECERTIFICATE;
}

/* Sends cb's requests for credentials and certificate checks to r, and forgets what they found
 * in an earlier fetch of r. */
void
scm_auth_callbacks(git_remote_callbacks *cb, struct run *r)
{
    cb->credentials = on_credentials;
    cb->certificate_check = on_certificate;
    cb->payload = r;
    r->auth_calls = 0;
    r->auth_failed = r->auth_missing = r->cert_failed = false;
}

/* Translates a failed fetch: cancellation, authentication and TLS first, in our words. */
int
scm_fetch_fail(struct run *r, struct err *e)
{
    if (scm_canceled(r))
        return err_set(e, -ECANCELED, "fetching %s: canceled", r->url);
    if (r->auth_failed)
        return err_set(e, -EACCES, "authentication to %s failed (check the token)", r->url);
    if (r->auth_missing)
        return err_set(e, -EACCES, "authentication to %s required: %s", r->url,
                       r->token ? "the token is only sent to its own host"
                                : "no token given");
    if (r->cert_failed)
        return err_set(e, -EPERM, "TLS certificate of %s not trusted: %s", r->url, r->cert_why);
    return scm_mirror_fail(r, e, r->url);
}

/* Connects to r->url and lists its refs, fetching nothing: the check that this token may read
 * the repository, before anything cached from it is handed out. */
int
scm_remote_probe(struct run *r, struct err *e)
{
    git_remote *remote = NULL;
    git_remote_callbacks cb;
    git_proxy_options po;
    const git_remote_head **heads = NULL;
    size_t n = 0;
    int rc = 0;

    git_remote_init_callbacks(&cb, GIT_REMOTE_CALLBACKS_VERSION);
    git_proxy_options_init(&po, GIT_PROXY_OPTIONS_VERSION);
    scm_auth_callbacks(&cb, r);
    po.type = GIT_PROXY_AUTO;
    if (scm_canceled(r))
        return err_set(e, -ECANCELED, "%s: canceled", r->url);
    if (git_remote_create_detached(&remote, r->url) < 0 ||
        git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, &po, NULL) < 0 ||
        git_remote_ls(&heads, &n, remote) < 0)
        rc = scm_fetch_fail(r, e);
    r->corrupt = false; /* nothing local was read */
    if (remote)
        git_remote_disconnect(remote);
    git_remote_free(remote);
    return rc;
}
