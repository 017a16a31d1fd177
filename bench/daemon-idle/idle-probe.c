/* idle-probe.c: the smallest process runnerd could be, for bench/daemon-idle/run. It links
 * only libc, libuv, jansson, sqlite and (mode "tls") OpenSSL, does what an idle daemon without
 * libcurl and libgit2 would do (a libuv loop with a timer, a sqlite database in WAL mode, a
 * JSON request body built and parsed every poll) and waits for SIGTERM. The benchmark reads its
 * /proc/PID/smaps like runnerd's: the difference is what libcurl, libgit2 and runnerd's own code
 * cost.
 *
 *     bench-idle-probe core|tls|tls-lazy DBFILE
 *
 * "tls" also makes what an HTTP client would keep for HTTPS to Gitea: OpenSSL initialised and
 * one client SSL_CTX with the system's CA store (SSL_CTX_set_default_verify_paths(): the whole
 * bundle file is read, as libcurl does). "tls-lazy" gives the context only the hashed CA
 * directory (/etc/ssl/certs), from which OpenSSL reads a CA when a handshake needs it. It prints
 * "ready" once set up. */
#include <jansson.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

static sqlite3 *db;
static SSL_CTX *tls;

/* A poll's worth of work: a JSON body encoded and decoded, one row read. */
static void
on_tick(uv_timer_t *t)
{
    json_t *req = json_pack("{s:s, s:i}", "tasksVersion", "0", "n", 1);
    char *body = json_dumps(req, JSON_COMPACT);
    json_t *back = json_loads(body, 0, NULL);
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL) == SQLITE_OK)
        (void)sqlite3_step(st);
    sqlite3_finalize(st);
    json_decref(back);
    free(body);
    json_decref(req);
    (void)t;
}

/* SIGTERM: stop the loop. */
static void
on_term(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_stop(s->loop);
}

/* Closes what is left after uv_stop(). */
static void
on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int
main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    uv_timer_t timer;
    uv_signal_t term;

    if (argc != 3 || (strcmp(argv[1], "core") != 0 && strcmp(argv[1], "tls") != 0 &&
                      strcmp(argv[1], "tls-lazy") != 0)) {
        fprintf(stderr, "usage: bench-idle-probe core|tls|tls-lazy DBFILE\n");
        return 2;
    }
    if (sqlite3_open(argv[2], &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(x)", NULL, NULL,
                     NULL) != SQLITE_OK) {
        fprintf(stderr, "bench-idle-probe: %s: %s\n", argv[2], sqlite3_errmsg(db));
        return 1;
    }
    if (strcmp(argv[1], "core") != 0) {
        bool lazy = strcmp(argv[1], "tls-lazy") == 0;

        tls = SSL_CTX_new(TLS_client_method());
        if (tls == NULL || (lazy ? SSL_CTX_load_verify_dir(tls, "/etc/ssl/certs")
                                 : SSL_CTX_set_default_verify_paths(tls)) != 1) {
            fprintf(stderr, "bench-idle-probe: OpenSSL client context failed\n");
            return 1;
        }
    }
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_tick, 0, 2000);
    uv_signal_init(loop, &term);
    uv_signal_start(&term, on_term, SIGTERM);
    printf("ready\n");
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_walk(loop, on_walk_close, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    SSL_CTX_free(tls);
    sqlite3_close(db);
    return 0;
}
