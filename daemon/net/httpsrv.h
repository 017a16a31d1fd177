/* httpsrv.h: the plumbing the daemon's two HTTP/1.1 servers share (the status endpoint,
 * daemon/net/httpd.c, and the actions/cache server, daemon/cache/cache-conn.c): listeners on
 * one or more addresses with one port, accepted connections under a cap, a read buffer driving
 * libhttp-parser with a cap on the request head, the idle timer, the response head, writes, and
 * the close: a lingering one after a response that ends the connection, an immediate one
 * otherwise. What a request means, how its body is read and what is answered stay with the user.
 *
 * A user's connection embeds a struct httpsrv_conn and is allocated and freed by the user
 * (hooks conn_new and conn_closed), so it may outlive its handles (the cache's write still on
 * the thread pool). One request at a time: the parser pauses when a request is complete
 * (request_done); the user answers, then calls httpsrv_conn_next() or httpsrv_conn_linger(). */
#ifndef HTTPSRV_H
#define HTTPSRV_H

#include "runner/buf.h"
#include "runner/err.h"

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* What a server allows; borrowed, must outlive the server. */
struct httpsrv_limits {
    const char *name;   /* log prefix: "httpd", "cache" */
    size_t max_head;    /* bytes of request line and headers; more: 431 */
    int max_conns;      /* served at once; more are accepted and closed at once (one lingering
                           after its last response no longer counts) */
    int backlog;        /* listen(2) */
    unsigned idle_ms;   /* the idle timer (httpsrv_conn_touch()) */
    unsigned linger_ms; /* draining input after a response that closes */
    size_t read_buf;    /* bytes of a connection's read buffer */
    /* true: read while the buffer has room; false: only while no response is being written
     * and nothing is buffered (a pipelined request waits in the kernel). */
    bool read_ahead;
};

struct httpsrv;
struct httpsrv_conn;

/* The user's part; borrowed, must outlive the server. Every hook runs on the loop. */
struct httpsrv_hooks {
    /* The parser's callbacks (p->data is the struct httpsrv_conn). Three are wrapped: the
     * core appends the URL to c->url, notes the end of the head, and at the end of a request
     * sets request_done and pauses the parser, each before calling the user's (if any). */
    http_parser_settings parser;
    /* A new connection: a zeroed user struct embedding a struct httpsrv_conn (which the core
     * then fills); freed by the user in conn_closed. */
    struct httpsrv_conn *(*conn_new)(struct httpsrv *srv);
    /* Input was added to the read buffer: parse it (httpsrv_conn_parse()), then
     * httpsrv_conn_reads(). Not called while lingering. */
    void (*input)(struct httpsrv_conn *c);
    /* Optional: a write of httpsrv_conn_write() is out; tag is the one given to it. Not called
     * when the write failed (the connection is closed then) or the connection is closing. */
    void (*written)(struct httpsrv_conn *c, unsigned tag);
    /* Optional: c has just been unlinked from the server's list, its handles are closing. */
    void (*conn_closing)(struct httpsrv_conn *c);
    /* c's handles are closed: the user frees c, now or once its own work is done. */
    void (*conn_closed)(struct httpsrv_conn *c);
};

struct httpsrv_listener {
    uv_tcp_t tcp;
    struct httpsrv *srv;
    struct httpsrv_listener *next;
};

/* A server; embedded in its user's, started with httpsrv_init(), ended with httpsrv_close(). */
struct httpsrv {
    uv_loop_t *loop;
    const struct httpsrv_limits *lim;
    const struct httpsrv_hooks *hooks;
    void *arg;                     /* the user's, for the hooks */
    http_parser_settings settings; /* the user's, two of them wrapped */
    int port;                      /* the port of the first listener (0: none yet) */
    struct httpsrv_listener *listeners;
    struct httpsrv_conn *conns; /* open connections, not the closing ones */
    int n_conns;                /* of those, the ones not lingering: what max_conns counts */
    int open_handles;           /* listeners and connections' handles not closed yet */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

struct httpsrv_conn {
    uv_tcp_t tcp;
    uv_timer_t idle;
    uv_shutdown_t shutdown;
    struct httpsrv *srv;
    http_parser parser; /* parser.data is the connection */
    char *rbuf;
    size_t roff, rlen; /* input not parsed yet: rbuf[roff, roff + rlen) */
    bool in_head;      /* the current request's head is not complete yet */
    size_t head_len;   /* bytes of that head parsed so far */
    struct buf url;    /* the request's target as sent (bounded by max_head) */
    bool request_done; /* the request is complete; the parser is paused */
    /* A response is in flight: set by httpsrv_conn_write(), cleared by the user when its
     * response (which may be several writes) is over. */
    bool writing;
    bool reading, closing;
    bool lingering;   /* the last response is out: input is read and dropped */
    int open_handles; /* tcp + idle, until their close callbacks ran */
    struct httpsrv_conn *prev, *next;
};

/* httpsrv_conn_parse(): the parser paused (a request is complete, or a callback paused it). */
#define HTTPSRV_PAUSED 1

/* Starts srv with no listener yet. lim, hooks and arg are borrowed. */
void httpsrv_init(struct httpsrv *srv, uv_loop_t *loop, const struct httpsrv_limits *lim,
                  const struct httpsrv_hooks *hooks, void *arg);
/* Listens on sa (a sockaddr_in or sockaddr_in6; its port 0: srv's port, or any free one for
 * the first listener, which sets srv->port); addr names it in messages. Listening twice on one
 * address is 0. On failure -errno and e says "listen on ADDR: ..."; a libuv failure after a
 * successful bind and listen leaves a handle closing on the loop (httpsrv_close() waits for
 * it). */
int httpsrv_listen(struct httpsrv *srv, const struct sockaddr *sa, const char *addr, struct err *e);
/* Closes the listeners and every connection (responses in flight are dropped); done(arg)
 * once their handles are closed (done may be NULL; connections their users keep alive after
 * conn_closed are theirs to wait for). Call it once; srv may be freed in done. */
void httpsrv_close(struct httpsrv *srv, void (*done)(void *arg), void *arg);

/* Feeds the buffered input to the parser, the head at most up to max_head. Returns 0 when it
 * took all of it, HTTPSRV_PAUSED, or a status to refuse the request with: 400 (a parse error,
 * a callback that stopped the parser, an upgrade) or 431 (the head is too long). */
int httpsrv_conn_parse(struct httpsrv_conn *c);
/* Starts or stops reading as c's state asks (lim->read_ahead); after any change to it. */
void httpsrv_conn_reads(struct httpsrv_conn *c);
/* Restarts the idle timer (linger_ms while lingering, else idle_ms). */
void httpsrv_conn_touch(struct httpsrv_conn *c);
/* The response is out and the connection stays: the next request starts (parser and url
 * reset, idle timer restarted, writing cleared). The caller then parses what is buffered. */
void httpsrv_conn_next(struct httpsrv_conn *c);
/* The response that ends the connection is out: FIN behind it, then input is read and
 * dropped until the client closes, for linger_ms at most (closing at once with unread input
 * would send a reset that can destroy the response before the client has read it). */
void httpsrv_conn_linger(struct httpsrv_conn *c);
/* Unlinks c and closes its handles; the hook conn_closed runs once they are closed, so this
 * is safe from any of c's callbacks. Pending writes complete with UV_ECANCELED. */
void httpsrv_conn_close(struct httpsrv_conn *c);
/* Writes len bytes of data to c's socket and sets c->writing; hooks->written(c, tag) once
 * they are out. take: data is the caller's heap memory, freed when the write is over (also
 * on failure); else it is borrowed until then. A failure closes c. */
void httpsrv_conn_write(struct httpsrv_conn *c, char *data, size_t len, bool take, unsigned tag);
/* Appends a response head to out: status line, Date, Content-Type (ctype unless NULL),
 * Content-Length (len unless < 0), Cache-Control: no-store, extra (header lines ending in
 * CRLF, or NULL), Connection (close when close_after; keep-alive to an HTTP/1.0 request), and
 * the empty line. */
void httpsrv_head(const struct httpsrv_conn *c, struct buf *out, int status, const char *ctype,
                  int64_t len, const char *extra, bool close_after);

#endif
