/* test-reporter.c: the reporter (daemon/service/reporter.c) on its own, as a library: no
 * runnerd.c, no task.c. A fake task gives it a record in a real state database and answers its
 * ops; a small HTTP server (a forked child on 127.0.0.1) plays Gitea's UpdateLog and UpdateTask,
 * acknowledging every row it is sent and writing each request to requests.log. Covers: a
 * finished task's stored rows sent in order with noMore, then the final state, then the task
 * told it is reported (ackIndex stored); and a cancel from the server while the job runs
 * reaching the task (server_final, server_answered) before the final state goes out; a dead
 * peer (the connection closed before or in the middle of the answer, or never answered):
 * retried, every row delivered once acknowledged, in order. */
#include "harness.h"

#include "connect.h"
#include "httpc.h"
#include "metrics.h"
#include "reporter.h"
#include "rpc.h"
#include "runner/xalloc.h"
#include "store.h"

#include <netinet/in.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TID 7

/* ---- the server ------------------------------------------------------------------------ */

static pid_t server_pid;
static char instance[64];

/* Reads one request from fd: its procedure (the path's last part) and body (new strings). */
static bool
read_request(int fd, char **proc, char **body)
{
    size_t cap = 1 << 16, n = 0, need = 0;
    char *buf = xmalloc(cap + 1), *end = NULL;

    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k <= 0) {
            free(buf);
            return false;
        }
        n += (size_t)k;
        buf[n] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            need = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
        }
        if (end && n >= need)
            break;
    }
    char *sp = strchr(buf, ' '), *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
    char *slash = sp2 ? memrchr(sp + 1, '/', (size_t)(sp2 - sp - 1)) : NULL;
    *proc = slash ? xstrndup(slash + 1, (size_t)(sp2 - slash - 1)) : xstrdup("?");
    *body = xstrdup(end + 4);
    free(buf);
    return true;
}

/* A dead peer, for the first UpdateLog calls: it closes the connection without a byte of
 * answer, then closes it in the middle of the answer's headers, then never answers (the
 * connection stays open); each such call is logged as "UpdateLog-dead". */
enum { DEAD_CALLS = 3 };

/* The child: one request a connection; UpdateLog acknowledges every row it carries (after
 * `dead` calls answered as a dead peer would), UpdateTask answers task_answer. */
static void __attribute__((noreturn))
serve(int lfd, const char *task_answer, int dead)
{
    int killed = 0;

    for (;;) {
        int c = accept(lfd, NULL, NULL);
        char *proc, *body, *answer;
        if (c < 0)
            _exit(1);
        if (!read_request(c, &proc, &body)) {
            close(c);
            continue;
        }
        bool die = strcmp(proc, "UpdateLog") == 0 && killed < dead;
        FILE *f = fopen("requests.log", "a");
        fprintf(f, "%s%s %s\n", proc, die ? "-dead" : "", body);
        fclose(f);
        if (die) {
            static const char half[] = "HTTP/1.1 200 OK\r\nContent-Type: appl";
            if (killed % 3 == 1 && write(c, half, sizeof half - 1) < 0)
                _exit(1);
            if (killed % 3 != 2)
                close(c); /* the hung one's fd stays open until the child is killed */
            killed++;
            free(proc);
            free(body);
            continue;
        }
        if (strcmp(proc, "UpdateLog") == 0) {
            json_t *j = json_loads(body, 0, NULL);
            json_int_t index = json_integer_value(json_object_get(j, "index"));
            if (json_is_string(json_object_get(j, "index")))
                index = strtoll(json_string_value(json_object_get(j, "index")), NULL, 10);
            answer = xasprintf("{\"ackIndex\":\"%lld\"}",
                               (long long)index + (long long)json_array_size(json_object_get(j, "rows")));
            json_decref(j);
        } else {
            answer = xstrdup(task_answer);
        }
        char *resp = xasprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                               strlen(answer), answer);
        ssize_t w = write(c, resp, strlen(resp));
        (void)w;
        close(c);
        free(resp);
        free(answer);
        free(proc);
        free(body);
    }
}

static void
server_start_dead(const char *task_answer, int dead)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);

    ASSERT(lfd >= 0);
    ASSERT_EQ(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(lfd, 16), 0);
    ASSERT_EQ(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    snprintf(instance, sizeof instance, "http://127.0.0.1:%d", ntohs(a.sin_port));
    server_pid = fork();
    ASSERT(server_pid >= 0);
    if (server_pid == 0)
        serve(lfd, task_answer, dead);
    close(lfd);
}

static void
server_start(const char *task_answer)
{
    server_start_dead(task_answer, 0);
}

static void
server_stop(void)
{
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
}

/* The requests the server saw, in order: an array of [procedure, body]. */
static json_t *
requests(void)
{
    char *log = test_read_file("requests.log", NULL), *save = NULL;
    json_t *v = json_array();

    ASSERT(log != NULL);
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        ASSERT(sp != NULL);
        *sp = '\0';
        json_t *body = json_loads(sp + 1, 0, NULL);
        ASSERT(body != NULL);
        json_array_append_new(v, json_pack("[s, o]", line, body));
    }
    free(log);
    return v;
}

/* ---- the fake task --------------------------------------------------------------------- */

struct fake {
    uv_loop_t loop;
    struct httpc *http;
    struct connect *conn;
    struct store *st;
    struct metrics *metrics;
    struct store_task row;
    struct reporter rep;
    bool job_over;
    int changed, answered, reported, final_result;
    bool stopped;
};

static int
fake_flush(void *arg, struct err *e)
{
    struct fake *f = arg;

    return store_task_update(f->st, &f->row, e);
}

static const struct store_row *
fake_pending(void *arg, size_t *n, bool *store_fails)
{
    (void)arg;
    *n = 0;
    *store_fails = false;
    return NULL;
}

static bool
fake_job_over(void *arg)
{
    return ((struct fake *)arg)->job_over;
}

static void
fake_changed(void *arg)
{
    ((struct fake *)arg)->changed++;
}

/* As task.c: the server's final result cancels the job, which then ends as cancelled. */
static void
fake_server_final(void *arg, int result)
{
    struct fake *f = arg;

    f->final_result = result;
    f->job_over = true;
    f->row.result = result;
    reporter_poke(&f->rep);
}

static void
fake_server_answered(void *arg)
{
    ((struct fake *)arg)->answered++;
}

static void
fake_stopped(void *arg)
{
    struct fake *f = arg;

    f->stopped = true;
    connect_free(f->conn);
    httpc_close(f->http, NULL, NULL);
}

static void
fake_reported(void *arg)
{
    struct fake *f = arg;

    f->reported++;
    reporter_stop(&f->rep, fake_stopped);
}

static const struct reporter_ops fake_ops = {
    .flush = fake_flush,
    .pending = fake_pending,
    .job_over = fake_job_over,
    .changed = fake_changed,
    .server_final = fake_server_final,
    .server_answered = fake_server_answered,
    .reported = fake_reported,
};

/* A task in the store with the rows given (n of them) and one step. */
static void
fake_init(struct fake *f, const char *const *rows, size_t n, bool job_over)
{
    struct err e = {0};
    /* A call times out after 2 s (a dead peer that never answers). */
    struct connect_opts co = {.instance = instance, .uuid = "uuid", .token = "token",
                              .version = "test", .timeout_ms = 2000};
    struct store_row *v = xcalloc(n + 1, sizeof *v);

    ASSERT_EQ(uv_loop_init(&f->loop), 0);
    f->http = httpc_new(&f->loop);
    f->conn = connect_new(f->http, &co);
    ASSERT_OK(store_open("state.db", &f->st, &e));
    f->metrics = metrics_new();
    f->row = (struct store_task){
        .id = TID, .ident = xstrdup("cpu"), .state = xstrdup(job_over ? "finishing" : "running"),
        .result = job_over ? RPC_RESULT_SUCCESS : 0, .task = json_object(),
        .job = xstrdup("build"), .repo = xstrdup("o/r"), .started_ns = 1000000000,
        .stopped_ns = job_over ? 2000000000 : 0,
        .steps = json_pack("[{s:i, s:i, s:i, s:I}]", "id", 0, "log_index", 0, "log_length",
                           (int)n, "result", (json_int_t)(job_over ? RPC_RESULT_SUCCESS : 0)),
    };
    ASSERT_OK(store_task_put(f->st, &f->row, &e));
    for (size_t i = 0; i < n; i++)
        v[i] = (struct store_row){.time_ns = 1000000000 + (int64_t)i, .content = (char *)(uintptr_t)rows[i]};
    if (n)
        ASSERT_OK(store_log_append(f->st, TID, 0, v, n, &e));
    free(v);
    f->row.log_rows = (int64_t)n;
    f->job_over = job_over;
    f->rep = (struct reporter){
        .loop = &f->loop, .st = f->st, .conn = f->conn,
        .sent = metrics_family(f->metrics, "rows_sent_total", "Rows.", METRIC_COUNTER, NULL,
                               NULL, 0),
        .tid = TID, .row = &f->row, .ops = &fake_ops, .arg = f,
    };
}

/* Runs the reporter until it has stopped; closes everything. */
static void
fake_run(struct fake *f)
{
    reporter_start(&f->rep);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT(f->stopped);
    ASSERT_EQ(uv_loop_close(&f->loop), 0);
}

static void
fake_done(struct fake *f)
{
    store_task_clear(&f->row);
    store_close(f->st);
    metrics_free(f->metrics);
}

/* ---- the tests ------------------------------------------------------------------------- */

/* A finished task (as recovered in state "finishing"): its stored rows in order with noMore,
 * then the final state; once that is answered the task is reported, and the ack is stored. */
TEST(finished_task_rows_then_final_state)
{
    static const char *const rows[] = {"one", "two", "three"};
    struct fake f = {0};
    struct store_task got = {0};
    struct err e = {0};

    server_start("{}");
    fake_init(&f, rows, 3, true);
    fake_run(&f);
    server_stop();

    json_t *req = requests();
    ASSERT_EQ(json_array_size(req), 2);
    ASSERT_STR_EQ(json_string_value(json_array_get(json_array_get(req, 0), 0)), "UpdateLog");
    json_t *log = json_array_get(json_array_get(req, 0), 1);
    json_t *sent = json_object_get(log, "rows");
    ASSERT_EQ(json_array_size(sent), 3);
    for (size_t i = 0; i < 3; i++)
        ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(sent, i), "content")),
                      rows[i]);
    ASSERT(json_is_true(json_object_get(log, "noMore")));
    ASSERT_STR_EQ(json_string_value(json_array_get(json_array_get(req, 1), 0)), "UpdateTask");
    json_t *state = json_object_get(json_array_get(json_array_get(req, 1), 1), "state");
    ASSERT_STR_EQ(json_string_value(json_object_get(state, "result")), "RESULT_SUCCESS");
    json_decref(req);

    ASSERT_EQ(f.reported, 1);
    ASSERT(f.row.final_sent);
    ASSERT(f.row.log_closed);
    ASSERT_EQ(f.row.log_acked, 3);
    ASSERT(f.changed > 0);
    ASSERT_EQ(f.answered, 0); /* only a running job's states are "answered" */
    ASSERT_OK(store_task_get(f.st, TID, &got, &e));
    ASSERT_EQ(got.log_acked, 3);
    store_task_clear(&got);
    fake_done(&f);
}

/* While the job runs the server says the task is cancelled: the task hears it (and that the
 * state was answered), ends the job, and the final state says cancelled. */
TEST(server_cancel_reaches_the_task)
{
    struct fake f = {0};

    server_start("{\"state\":{\"id\":\"7\",\"result\":\"RESULT_CANCELLED\"}}");
    fake_init(&f, NULL, 0, false);
    fake_run(&f);
    server_stop();

    json_t *req = requests();
    ASSERT_EQ(json_array_size(req), 2);
    for (size_t i = 0; i < 2; i++)
        ASSERT_STR_EQ(json_string_value(json_array_get(json_array_get(req, i), 0)), "UpdateTask");
    json_t *first = json_object_get(json_array_get(json_array_get(req, 0), 1), "state");
    json_t *last = json_object_get(json_array_get(json_array_get(req, 1), 1), "state");
    ASSERT(json_object_get(first, "result") == NULL ||
           strcmp(json_string_value(json_object_get(first, "result")), "RESULT_UNSPECIFIED") == 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(last, "result")), "RESULT_CANCELLED");
    json_decref(req);

    ASSERT_EQ(f.final_result, RPC_RESULT_CANCELLED);
    ASSERT_EQ(f.answered, 1);
    ASSERT_EQ(f.reported, 1);
    ASSERT(f.row.final_sent);
    fake_done(&f);
}

/* Gitea dies under the reporter: UpdateLog's connection is closed without an answer, then in
 * the middle of the answer, then the call is never answered. The reporter retries each time;
 * the call that is answered carries every row from the first, in order, with noMore; the
 * ack is stored; then the final state goes out. No row is lost or sent out of order. */
TEST(dead_peer_retried_no_row_lost)
{
    static const char *const rows[] = {"one", "two", "three", "four"};
    struct fake f = {0};
    struct store_task got = {0};
    struct err e = {0};
    size_t dead = 0, logs = 0;

    server_start_dead("{}", DEAD_CALLS);
    fake_init(&f, rows, 4, true);
    fake_run(&f);
    server_stop();

    json_t *req = requests(), *it;
    size_t i;
    json_array_foreach(req, i, it) {
        const char *proc = json_string_value(json_array_get(it, 0));
        json_t *body = json_array_get(it, 1);
        if (strcmp(proc, "UpdateLog-dead") == 0) {
            ASSERT_EQ(logs, 0); /* every dead call came before the one answered */
            dead++;
        }
        if (strcmp(proc, "UpdateLog") != 0 && strcmp(proc, "UpdateLog-dead") != 0)
            continue;
        /* Each try sends the same rows from the first one not acknowledged: index 0. */
        json_t *index = json_object_get(body, "index");
        ASSERT(index == NULL || json_integer_value(index) == 0 ||
               (json_is_string(index) && strcmp(json_string_value(index), "0") == 0));
        json_t *sent = json_object_get(body, "rows");
        ASSERT_EQ(json_array_size(sent), 4);
        for (size_t k = 0; k < 4; k++)
            ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(sent, k), "content")),
                          rows[k]);
        ASSERT(json_is_true(json_object_get(body, "noMore")));
        if (strcmp(proc, "UpdateLog") == 0)
            logs++;
    }
    ASSERT_EQ(dead, DEAD_CALLS);
    ASSERT_EQ(logs, 1);
    it = json_array_get(req, json_array_size(req) - 1);
    ASSERT_STR_EQ(json_string_value(json_array_get(it, 0)), "UpdateTask");
    json_decref(req);

    ASSERT_EQ(f.reported, 1);
    ASSERT(f.row.final_sent);
    ASSERT(f.row.log_closed);
    ASSERT_EQ(f.row.log_acked, 4);
    ASSERT_OK(store_task_get(f.st, TID, &got, &e));
    ASSERT_EQ(got.log_acked, 4);
    store_task_clear(&got);
    fake_done(&f);
}
