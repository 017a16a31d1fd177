/* test-connect.c: the Connect client against the Gitea double (tests/servers/, started per
 * test on 127.0.0.1). Covers: the base URL, a Ping round trip (gzipped by the double), an empty
 * request sent as "{}", Register with a minted token and a bad one, Declare with the identity,
 * FetchTask without a task (tasksVersion > 0) and with an enqueued one (payload and context
 * decoded), UpdateLog and UpdateTask round trips, and the error paths: a wrong runner token
 * (HTTP 500 "unregistered runner" seen as unauthenticated), an injected 503, a dropped
 * connection, a delay past the call's timeout, Declare on Gitea 1.20 (plain 404: not found), a
 * port nobody listens on, cancelling a call, connect_free() with calls in flight and from
 * inside a callback, the blocking connect_call_sync(), and the redaction of x-runner-token in
 * verbose traces. Every test closes the client and asserts uv_loop_close() == 0. */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "connect.h"
#include "harness.h"
#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"

static pid_t double_pid;
static char instance[64];

/* ---- the Gitea double ------------------------------------------------------------------ */

static void
double_start_version(const char *version)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    char *port = NULL;

    unlink("port");
    double_pid = fork();
    ASSERT(double_pid >= 0);
    if (double_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);

        dup2(devnull, 1);
        execlp("python3", "python3", RUNNERD_SERVERS_DIR "/gitea-double/gitea_double.py",
               "--port", "0", "--port-file", "port", "--gitea-version", version, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000 && (port = test_read_file("port", NULL)) == NULL; i++) {
        ASSERT(waitpid(double_pid, NULL, WNOHANG) == 0); /* still running */
        nanosleep(&ts, NULL);
    }
    ASSERT(port != NULL);
    ASSERT(atoi(port) > 0);
    snprintf(instance, sizeof instance, "http://127.0.0.1:%d", atoi(port));
    free(port);
}

static void
double_start(void)
{
    double_start_version("1.24");
}

static void
double_stop(void)
{
    if (double_pid > 0) {
        kill(double_pid, SIGKILL);
        waitpid(double_pid, NULL, 0);
        double_pid = 0;
    }
}

struct admin_out {
    int rc;
    long status;
    struct buf body;
};

static void
on_admin_done(const struct httpc_result *res, void *arg)
{
    struct admin_out *o = arg;

    o->rc = res->rc;
    o->status = res->status;
    buf_append(&o->body, res->body, res->body_len);
}

/* POSTs body to the double's /_admin/<what> on a private loop; returns the JSON answer. */
static json_t *
admin(const char *what, const char *body)
{
    uv_loop_t loop;
    struct httpc *h;
    struct admin_out o = {0};
    struct err e = {0};
    char url[128];
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    json_t *j;

    snprintf(url, sizeof url, "%s/_admin/%s", instance, what);
    ASSERT_EQ(uv_loop_init(&loop), 0);
    h = httpc_new(&loop);
    ASSERT_OK(httpc_request(h,
                            &(struct httpc_opts){.url = url, .method = "POST", .headers = hdrs,
                                                 .body = body, .body_len = strlen(body),
                                                 .timeout_ms = 10000},
                            on_admin_done, &o, NULL, &e));
    uv_run(&loop, UV_RUN_DEFAULT);
    httpc_close(h, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(o.status, 200);
    j = json_loads(buf_str(&o.body), 0, NULL);
    ASSERT(j != NULL);
    buf_free(&o.body);
    return j;
}

/* Mints a registration token; returns a new string. */
static char *
mint_token(void)
{
    json_t *j = admin("token", "{}");
    char *t = xstrdup(json_string_value(json_object_get(j, "token")));

    json_decref(j);
    ASSERT_EQ(strlen(t), 40);
    return t;
}

static void
fault(const char *proc, const char *kind, const char *extra)
{
    char body[256];

    snprintf(body, sizeof body, "{\"procedure\":\"%s\",\"kind\":\"%s\"%s%s}", proc, kind,
             extra ? "," : "", extra ? extra : "");
    json_decref(admin("fault", body));
}

/* The double's view of its only runner (a new reference). */
static json_t *
state_runner(void)
{
    json_t *st = admin("state", "{}");
    json_t *runners = json_object_get(st, "runners");
    json_t *r;

    ASSERT_EQ(json_array_size(runners), 1);
    r = json_incref(json_array_get(runners, 0));
    json_decref(st);
    return r;
}

/* ---- calls ----------------------------------------------------------------------------- */

struct outcome {
    int calls;
    int rc;
    char msg[256];
    enum rpc_errclass cls;
    long status;
    bool has_rpc;
    char code[32];
    void *resp;
    struct connect **free_me; /* connect_free(*free_me) from inside the callback, once */
};

static void
on_done(const struct connect_result *r, void *arg)
{
    struct outcome *o = arg;

    o->calls++;
    o->rc = r->rc;
    snprintf(o->msg, sizeof o->msg, "%s", r->err.msg);
    o->cls = r->cls;
    o->status = r->status;
    o->has_rpc = r->rpc != NULL;
    if (r->rpc)
        snprintf(o->code, sizeof o->code, "%s", r->rpc->code);
    o->resp = r->resp;
    if (r->rc == 0)
        ASSERT(r->resp != NULL);
    else
        ASSERT(r->resp == NULL);
    if (o->free_me && *o->free_me) {
        connect_free(*o->free_me);
        *o->free_me = NULL;
    }
}

struct fixture {
    uv_loop_t loop;
    struct httpc *http;
    struct connect *c;
};

static void
fixture_init(struct fixture *f, const struct connect_opts *o)
{
    ASSERT_EQ(uv_loop_init(&f->loop), 0);
    f->http = httpc_new(&f->loop);
    f->c = connect_new(f->http, o);
}

static int closed_calls;

static void
on_closed(void *arg)
{
    (void)arg;
    closed_calls++;
}

/* Frees the client (if still ours), closes httpc and the loop, stops the double. */
static void
fixture_done(struct fixture *f)
{
    connect_free(f->c);
    f->c = NULL;
    closed_calls = 0;
    httpc_close(f->http, on_closed, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed_calls, 1);
    ASSERT_EQ(uv_loop_close(&f->loop), 0);
    double_stop();
}

/* Runs one call to completion on f's loop. */
static void
call(struct fixture *f, const char *path, const struct rpc_type *qt, const void *q,
     const struct rpc_type *rt, long timeout_ms, struct outcome *o)
{
    struct err e = {0};
    int before = o->calls;

    ASSERT_OK(connect_call(f->c, path, qt, q, rt, timeout_ms, on_done, o, NULL, &e));
    ASSERT_EQ(o->calls, before); /* never from inside connect_call() */
    ASSERT_EQ(connect_active(f->c), 1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(o->calls, before + 1);
    ASSERT_EQ(connect_active(f->c), 0);
}

static struct connect_opts
opts(void)
{
    return (struct connect_opts){.instance = instance, .version = "9.9.9-test"};
}

/* Registers a runner called name with labels; fills uuid/token (new strings). */
static void
register_runner(const char *name, const char *label, char **uuid, char **token, int64_t *id)
{
    char *tok = mint_token();
    char *labels[] = {(char *)(uintptr_t)label};
    struct rpc_register_request q = {.name = (char *)(uintptr_t)name, .token = tok,
                                     .version = "9.9.9-test",
                                     .labels = {.v = labels, .n = 1},
                                     .agent_labels = {.v = labels, .n = 1}};
    struct connect_opts o = opts();
    struct rpc_register_response *r = NULL;
    struct err e = {0};
    enum rpc_errclass cls = RPC_ERR_OTHER;

    ASSERT_OK(connect_call_sync(&o, RPC_PATH_REGISTER, &rpc_register_request_type, &q,
                                &rpc_register_response_type, (void **)&r, &cls, &e));
    ASSERT(r != NULL && r->runner != NULL);
    ASSERT(r->runner->id > 0);
    ASSERT_EQ(strlen(r->runner->uuid), 36);
    ASSERT_EQ(strlen(r->runner->token), 40);
    *uuid = xstrdup(r->runner->uuid);
    *token = xstrdup(r->runner->token);
    if (id)
        *id = r->runner->id;
    rpc_clear(&rpc_register_response_type, r);
    free(r);
    free(tok);
}

/* A fixture whose client has a registered identity with label "x". */
static void
fixture_registered(struct fixture *f, char **token_out)
{
    char *uuid, *token;
    struct connect_opts o = opts();

    register_runner("r1", "x", &uuid, &token, NULL);
    o.uuid = uuid;
    o.token = token;
    fixture_init(f, &o);
    free(uuid);
    if (token_out)
        *token_out = token;
    else
        free(token);
}

/* ---- tests ----------------------------------------------------------------------------- */

TEST(base_url)
{
    uv_loop_t loop;
    struct httpc *h;
    struct connect *c;

    ASSERT_EQ(uv_loop_init(&loop), 0);
    h = httpc_new(&loop);
    c = connect_new(h, &(struct connect_opts){.instance = "https://example.com/gitea//"});
    ASSERT_STR_EQ(connect_base(c), "https://example.com/gitea/api/actions");
    connect_free(c);
    c = connect_new(h, &(struct connect_opts){.instance = "http://h:3000"});
    ASSERT_STR_EQ(connect_base(c), "http://h:3000/api/actions");
    ASSERT_EQ(connect_active(c), 0);
    connect_free(c);
    connect_free(NULL);
    httpc_close(h, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST(ping_round_trip)
{
    struct fixture f;
    struct outcome o = {0}, o2 = {0};
    struct rpc_ping_request q = {.data = "n1"};
    struct rpc_ping_response *r;
    struct connect_opts co;
    char inst[80];

    double_start();
    /* trailing slashes are stripped */
    snprintf(inst, sizeof inst, "%s//", instance);
    co = opts();
    co.instance = inst;
    fixture_init(&f, &co);
    call(&f, RPC_PATH_PING, &rpc_ping_request_type, &q, &rpc_ping_response_type, 0, &o);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(o.status, 200);
    r = o.resp;
    ASSERT_STR_EQ(r->data, "Hello, n1!");
    rpc_clear(&rpc_ping_response_type, r);
    free(r);
    /* no request message at all: the body is "{}" (the double refuses an empty one) */
    call(&f, RPC_PATH_PING, &rpc_ping_request_type, NULL, &rpc_ping_response_type, 0, &o2);
    ASSERT_EQ(o2.rc, 0);
    r = o2.resp;
    ASSERT_STR_EQ(r->data, "Hello, !");
    rpc_clear(&rpc_ping_response_type, r);
    free(r);
    fixture_done(&f);
}

TEST(register_and_declare)
{
    struct fixture f;
    struct outcome o = {0};
    char *uuid, *token;
    int64_t id;
    json_t *runner;
    char *labels[] = {"gpu", "x"};
    struct rpc_declare_request q = {.version = "9.9.10", .labels = {.v = labels, .n = 2}};
    struct rpc_declare_response *r;
    struct connect_opts co;

    double_start();
    register_runner("r1", "x", &uuid, &token, &id);
    runner = state_runner();
    ASSERT_STR_EQ(json_string_value(json_object_get(runner, "name")), "r1");
    ASSERT_STR_EQ(json_string_value(json_object_get(runner, "uuid")), uuid);
    ASSERT_STR_EQ(json_string_value(json_object_get(runner, "version")), "9.9.9-test");
    ASSERT_EQ(json_array_size(json_object_get(runner, "labels")), 1);
    ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(runner, "labels"), 0)), "x");
    json_decref(runner);

    co = opts();
    fixture_init(&f, &co);
    connect_set_identity(f.c, uuid, token); /* identity set after Register */
    call(&f, RPC_PATH_DECLARE, &rpc_declare_request_type, &q, &rpc_declare_response_type, 0, &o);
    ASSERT_EQ(o.rc, 0);
    r = o.resp;
    ASSERT(r->runner != NULL);
    ASSERT_EQ(r->runner->id, id);
    ASSERT_STR_EQ(r->runner->uuid, uuid);
    ASSERT_EQ(r->runner->labels.n, 2);
    ASSERT_STR_EQ(r->runner->labels.v[0], "gpu");
    ASSERT_STR_EQ(r->runner->version, "9.9.10");
    rpc_clear(&rpc_declare_response_type, r);
    free(r);
    runner = state_runner();
    ASSERT_EQ(json_array_size(json_object_get(runner, "labels")), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(runner, "version")), "9.9.10");
    json_decref(runner);
    free(uuid);
    free(token);
    fixture_done(&f);
}

TEST(register_bad_token)
{
    struct fixture f;
    struct outcome o = {0};
    struct rpc_register_request q = {.name = "r1", .token = "not-a-token-abcdef"};
    struct connect_opts co;

    double_start();
    co = opts();
    fixture_init(&f, &co);
    call(&f, RPC_PATH_REGISTER, &rpc_register_request_type, &q, &rpc_register_response_type, 0,
         &o);
    ASSERT_EQ(o.rc, -EREMOTEIO);
    ASSERT_EQ(o.status, 500);
    ASSERT_STR_EQ(o.msg, "Register: HTTP 500 unknown: runner registration token not found");
    ASSERT_EQ(o.cls, RPC_ERR_OTHER);
    ASSERT(o.has_rpc);
    ASSERT_STR_EQ(o.code, "unknown");
    ASSERT(strstr(o.msg, "not-a-token-abcdef") == NULL);
    fixture_done(&f);
}

TEST(fetch_task_none)
{
    struct fixture f;
    struct outcome o = {0};
    struct rpc_fetch_task_request q = {0}; /* encodes as {} */
    struct rpc_fetch_task_response *r;
    json_t *st, *runner;

    double_start();
    fixture_registered(&f, NULL);
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 0, &o);
    ASSERT_EQ(o.rc, 0);
    r = o.resp;
    ASSERT(r->task == NULL);
    ASSERT(r->tasks_version > 0);
    rpc_clear(&rpc_fetch_task_response_type, r);
    free(r);
    st = admin("state", "{}");
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(st, "calls"), "FetchTask")), 1);
    json_decref(st);
    /* the authenticated call marked the runner online */
    runner = state_runner();
    ASSERT(json_number_value(json_object_get(runner, "lastOnline")) > 0);
    json_decref(runner);
    fixture_done(&f);
}

TEST(fetch_update_log_update_task)
{
    struct fixture f;
    struct outcome o1 = {0}, o2 = {0}, o3 = {0};
    struct rpc_fetch_task_request q = {0};
    struct rpc_fetch_task_response *r;
    struct rpc_update_log_response *lr;
    struct rpc_update_task_response *tr;
    int64_t task_id;
    json_t *st, *task, *ctx;
    char *payload;

    double_start();
    fixture_registered(&f, NULL);
    json_decref(admin("enqueue", "{\"runsOn\":[\"x\"],\"job\":\"build\",\"repo\":\"acme/app\","
                                 "\"steps\":[{\"name\":\"s1\",\"run\":\"echo hi\"}],"
                                 "\"secrets\":{\"S1\":\"v1\"}}"));
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 0, &o1);
    ASSERT_EQ(o1.rc, 0);
    r = o1.resp;
    ASSERT(r->task != NULL);
    task_id = r->task->id;
    ASSERT(task_id > 0);
    ASSERT(r->task->workflow_payload.set);
    payload = xstrndup((const char *)r->task->workflow_payload.p, r->task->workflow_payload.len);
    ASSERT_STR_CONTAINS(payload, "echo hi");
    ASSERT_STR_CONTAINS(payload, "build");
    free(payload);
    ctx = r->task->context;
    ASSERT(json_is_object(ctx));
    ASSERT_STR_EQ(json_string_value(json_object_get(ctx, "repository")), "acme/app");
    {
        const char *s1 = NULL;

        for (size_t i = 0; i < r->task->secrets.n; i++)
            if (strcmp(r->task->secrets.v[i].key, "S1") == 0)
                s1 = r->task->secrets.v[i].value;
        ASSERT_STR_EQ(s1, "v1");
    }
    rpc_clear(&rpc_fetch_task_response_type, r);
    free(r);

    struct rpc_log_row rows[] = {
        {.time = {.sec = 1700000000, .set = true}, .content = "line one"},
        {.time = {.sec = 1700000001, .set = true}, .content = "line two"},
    };
    struct rpc_update_log_request lq = {.task_id = task_id, .index = 0, .rows = rows,
                                        .n_rows = 2};
    call(&f, RPC_PATH_UPDATE_LOG, &rpc_update_log_request_type, &lq,
         &rpc_update_log_response_type, 0, &o2);
    ASSERT_EQ(o2.rc, 0);
    lr = o2.resp;
    ASSERT_EQ(lr->ack_index, 2);
    rpc_clear(&rpc_update_log_response_type, lr);
    free(lr);

    struct rpc_step_state steps[] = {{.id = 0, .result = RPC_RESULT_SUCCESS,
                                      .started_at = {.sec = 1700000000, .set = true},
                                      .stopped_at = {.sec = 1700000002, .set = true},
                                      .log_index = 0, .log_length = 2}};
    struct rpc_task_state ts = {.id = task_id, .result = RPC_RESULT_SUCCESS,
                                .started_at = {.sec = 1700000000, .set = true},
                                .stopped_at = {.sec = 1700000002, .set = true},
                                .steps = steps, .n_steps = 1};
    struct rpc_pair outs[] = {{.key = "out1", .value = "val1"}};
    struct rpc_update_task_request tq = {.state = &ts, .outputs = {.v = outs, .n = 1}};
    call(&f, RPC_PATH_UPDATE_TASK, &rpc_update_task_request_type, &tq,
         &rpc_update_task_response_type, 0, &o3);
    ASSERT_EQ(o3.rc, 0);
    tr = o3.resp;
    ASSERT(tr->state != NULL);
    ASSERT_EQ(tr->state->id, task_id);
    ASSERT_EQ(tr->state->result, RPC_RESULT_SUCCESS);
    ASSERT_EQ(tr->sent_outputs.n, 1);
    ASSERT_STR_EQ(tr->sent_outputs.v[0], "out1");
    rpc_clear(&rpc_update_task_response_type, tr);
    free(tr);

    st = admin("state", "{}");
    task = json_array_get(json_object_get(st, "tasks"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(task, "status")), "success");
    ASSERT_EQ(json_integer_value(json_object_get(task, "logLength")), 2);
    ASSERT_STR_EQ(json_string_value(
                      json_object_get(json_array_get(json_object_get(task, "logRows"), 1),
                                      "content")),
                  "line two");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(task, "outputs"), "out1")),
                  "val1");
    json_decref(st);
    fixture_done(&f);
}

TEST(wrong_token_is_unauthenticated)
{
    struct fixture f;
    struct outcome o = {0};
    char *uuid, *token;
    struct connect_opts co = {0};
    struct rpc_fetch_task_request q = {0};

    double_start();
    register_runner("r1", "x", &uuid, &token, NULL);
    co = opts();
    co.uuid = uuid;
    co.token = "0000000000000000000000000000000000000bad";
    fixture_init(&f, &co);
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 0, &o);
    ASSERT_EQ(o.rc, -EREMOTEIO);
    ASSERT_EQ(o.status, 500);
    ASSERT_EQ(o.cls, RPC_ERR_UNAUTHENTICATED);
    ASSERT_STR_EQ(o.msg, "FetchTask: HTTP 500 unknown: rpc error: code = Unauthenticated desc = "
                         "unregistered runner");
    ASSERT(strstr(o.msg, "0000bad") == NULL);
    free(uuid);
    free(token);
    fixture_done(&f);
}

TEST(fault_status_503_is_unavailable)
{
    struct fixture f;
    struct outcome o = {0}, o2 = {0};
    struct rpc_fetch_task_request q = {0};

    double_start();
    fixture_registered(&f, NULL);
    fault("FetchTask", "status", "\"status\":503");
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 0, &o);
    ASSERT_EQ(o.rc, -EREMOTEIO);
    ASSERT_EQ(o.status, 503);
    ASSERT_EQ(o.cls, RPC_ERR_UNAVAILABLE);
    ASSERT_STR_EQ(o.code, "unavailable");
    ASSERT_STR_EQ(o.msg, "FetchTask: HTTP 503 unavailable: injected fault");
    /* the fault was one-shot: the next call works */
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 0, &o2);
    ASSERT_EQ(o2.rc, 0);
    rpc_clear(&rpc_fetch_task_response_type, o2.resp);
    free(o2.resp);
    fixture_done(&f);
}

TEST(fault_drop_is_transport_error)
{
    struct fixture f;
    struct outcome o = {0};
    struct rpc_fetch_task_request q = {0};

    double_start();
    fixture_registered(&f, NULL);
    fault("FetchTask", "drop", NULL);
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 0, &o);
    ASSERT(o.rc < 0);
    ASSERT(o.rc != -EREMOTEIO && o.rc != ERR_PROTO);
    ASSERT_EQ(o.status, 0);
    ASSERT_EQ(o.cls, RPC_ERR_UNAVAILABLE);
    ASSERT(!o.has_rpc);
    ASSERT_STR_CONTAINS(o.msg, "FetchTask: POST ");
    fixture_done(&f);
}

TEST(delay_past_timeout)
{
    struct fixture f;
    struct outcome o = {0};
    struct rpc_fetch_task_request q = {0};

    double_start();
    fixture_registered(&f, NULL);
    fault("FetchTask", "delay", "\"delayMs\":3000");
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 300, &o);
    ASSERT_EQ(o.rc, ERR_TIMEOUT);
    ASSERT_EQ(o.cls, RPC_ERR_UNAVAILABLE);
    ASSERT_STR_CONTAINS(o.msg, "FetchTask: ");
    ASSERT_STR_CONTAINS(o.msg, "timed out");
    fixture_done(&f);
}

TEST(client_default_timeout)
{
    struct fixture f;
    struct outcome o = {0};
    struct connect_opts co;

    double_start();
    co = opts();
    co.timeout_ms = 300;
    fixture_init(&f, &co);
    fault("Ping", "delay", "\"delayMs\":3000");
    call(&f, RPC_PATH_PING, &rpc_ping_request_type, NULL, &rpc_ping_response_type, 0, &o);
    ASSERT_EQ(o.rc, ERR_TIMEOUT);
    ASSERT_EQ(o.cls, RPC_ERR_UNAVAILABLE);
    fixture_done(&f);
}

TEST(declare_on_gitea_1_20_is_not_found)
{
    struct fixture f;
    struct outcome o = {0};
    struct connect_opts co;
    struct rpc_declare_request q = {.version = "1"};

    double_start_version("1.20");
    co = opts();
    co.uuid = "a1b2c3d4-0000-4000-8000-0123456789ab";
    co.token = "3f1c9e0a5b7d2c4e6f8091a2b3c4d5e6f7a8b9c0";
    fixture_init(&f, &co);
    call(&f, RPC_PATH_DECLARE, &rpc_declare_request_type, &q, &rpc_declare_response_type, 0, &o);
    ASSERT_EQ(o.rc, -EREMOTEIO);
    ASSERT_EQ(o.status, 404);
    ASSERT_EQ(o.cls, RPC_ERR_NOT_FOUND);
    ASSERT_STR_EQ(o.code, "unimplemented");
    ASSERT_STR_EQ(o.msg, "Declare: HTTP 404 unimplemented: 404 page not found");
    fixture_done(&f);
}

TEST(not_listening_is_unavailable)
{
    struct fixture f;
    struct outcome o = {0};
    struct connect_opts co;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* a port that was just free: bound, never listened on, closed */
    ASSERT(fd >= 0);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    snprintf(instance, sizeof instance, "http://127.0.0.1:%d", ntohs(sa.sin_port));
    co = opts();
    fixture_init(&f, &co);
    call(&f, RPC_PATH_PING, &rpc_ping_request_type, NULL, &rpc_ping_response_type, 0, &o);
    ASSERT_EQ(o.rc, -ECONNREFUSED);
    ASSERT_EQ(o.status, 0);
    ASSERT_EQ(o.cls, RPC_ERR_UNAVAILABLE);
    ASSERT_STR_CONTAINS(o.msg, "Ping: POST http://127.0.0.1:");
    fixture_done(&f);
}

TEST(cancel_in_flight)
{
    struct fixture f;
    struct outcome o = {0};
    struct connect_call *k = NULL;
    struct err e = {0};
    struct connect_opts co;

    double_start();
    co = opts();
    fixture_init(&f, &co);
    fault("Ping", "delay", "\"delayMs\":5000");
    ASSERT_OK(connect_call(f.c, RPC_PATH_PING, &rpc_ping_request_type, NULL,
                           &rpc_ping_response_type, 0, on_done, &o, &k, &e));
    ASSERT(k != NULL);
    /* let the request reach the server first */
    uv_run(&f.loop, UV_RUN_NOWAIT);
    ASSERT_EQ(o.calls, 0);
    connect_cancel(k);
    ASSERT_EQ(o.calls, 0); /* from the loop, not from connect_cancel() */
    uv_run(&f.loop, UV_RUN_DEFAULT);
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.rc, ERR_CANCELED);
    ASSERT_EQ(o.cls, RPC_ERR_UNAVAILABLE);
    ASSERT_EQ(connect_active(f.c), 0);
    fixture_done(&f);
}

TEST(free_with_calls_in_flight)
{
    struct fixture f;
    struct outcome a = {0}, b = {0};
    struct err e = {0};
    struct connect_opts co;

    double_start();
    co = opts();
    fixture_init(&f, &co);
    fault("Ping", "delay", "\"delayMs\":5000,\"count\":2");
    ASSERT_OK(connect_call(f.c, RPC_PATH_PING, &rpc_ping_request_type, NULL,
                           &rpc_ping_response_type, 0, on_done, &a, NULL, &e));
    ASSERT_OK(connect_call(f.c, RPC_PATH_PING, &rpc_ping_request_type, NULL,
                           &rpc_ping_response_type, 0, on_done, &b, NULL, &e));
    ASSERT_EQ(connect_active(f.c), 2);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    connect_free(f.c);
    f.c = NULL;
    ASSERT_EQ(a.calls + b.calls, 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(b.calls, 1);
    ASSERT_EQ(a.rc, ERR_CANCELED);
    ASSERT_EQ(b.rc, ERR_CANCELED);
    fixture_done(&f);
}

TEST(free_from_callback)
{
    struct fixture f;
    struct outcome a = {0}, b = {0};
    struct err e = {0};
    struct connect_opts co;
    struct connect *shared;

    double_start();
    co = opts();
    fixture_init(&f, &co);
    /* one call is answered at once, the other waits; whichever completes first frees the
     * client from its callback, which cancels the other one */
    fault("Ping", "delay", "\"delayMs\":0");
    fault("Ping", "delay", "\"delayMs\":5000");
    shared = f.c;
    a.free_me = b.free_me = &shared;
    ASSERT_OK(connect_call(f.c, RPC_PATH_PING, &rpc_ping_request_type, NULL,
                           &rpc_ping_response_type, 0, on_done, &a, NULL, &e));
    ASSERT_OK(connect_call(f.c, RPC_PATH_PING, &rpc_ping_request_type, NULL,
                           &rpc_ping_response_type, 0, on_done, &b, NULL, &e));
    f.c = NULL;
    uv_run(&f.loop, UV_RUN_DEFAULT);
    ASSERT(shared == NULL);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(b.calls, 1);
    ASSERT((a.rc == 0 && b.rc == ERR_CANCELED) || (b.rc == 0 && a.rc == ERR_CANCELED));
    rpc_clear(&rpc_ping_response_type, a.rc == 0 ? a.resp : b.resp);
    free(a.rc == 0 ? a.resp : b.resp);
    fixture_done(&f);
}

TEST(call_sync)
{
    struct connect_opts co;
    struct rpc_ping_request q = {.data = "sync"};
    struct rpc_ping_response *r = NULL;
    struct err e = {0};
    enum rpc_errclass cls = RPC_ERR_OTHER;

    double_start();
    co = opts();
    ASSERT_OK(connect_call_sync(&co, RPC_PATH_PING, &rpc_ping_request_type, &q,
                                &rpc_ping_response_type, (void **)&r, &cls, &e));
    ASSERT(r != NULL);
    ASSERT_STR_EQ(r->data, "Hello, sync!");
    rpc_clear(&rpc_ping_response_type, r);
    free(r);
    /* a failing call: the class and message come back, no response */
    fault("Ping", "status", "\"status\":503");
    r = (void *)&co; /* must be reset */
    ASSERT_EQ(connect_call_sync(&co, RPC_PATH_PING, &rpc_ping_request_type, &q,
                                &rpc_ping_response_type, (void **)&r, &cls, &e),
              -EREMOTEIO);
    ASSERT(r == NULL);
    ASSERT_EQ(cls, RPC_ERR_UNAVAILABLE);
    ASSERT_STR_EQ(e.msg, "Ping: HTTP 503 unavailable: injected fault");
    double_stop();
    /* and nobody listening any more */
    ASSERT(connect_call_sync(&co, RPC_PATH_PING, &rpc_ping_request_type, &q,
                             &rpc_ping_response_type, (void **)&r, &cls, &e) < 0);
    ASSERT_EQ(cls, RPC_ERR_UNAVAILABLE);
    ASSERT(r == NULL);
}

TEST(verbose_trace_redacts_token)
{
    struct fixture f;
    struct outcome o = {0}, o2 = {0};
    char *token;
    struct rpc_fetch_task_request q = {0};
    int saved = dup(2);
    int fd = open("trace.log", O_CREAT | O_WRONLY | O_TRUNC, 0600);
    char *trace;
    char *uuid;
    struct connect_opts co;

    double_start();
    register_runner("r1", "x", &uuid, &token, NULL);
    co = opts();
    co.uuid = uuid;
    co.token = token;
    co.verbose = true;
    log_init(LOG_PRIO_DEBUG, false);
    dup2(fd, 2);
    fixture_init(&f, &co);
    call(&f, RPC_PATH_FETCH_TASK, &rpc_fetch_task_request_type, &q,
         &rpc_fetch_task_response_type, 0, &o);
    call(&f, RPC_PATH_PING, &rpc_ping_request_type, NULL, &rpc_ping_response_type, 0, &o2);
    fflush(stderr);
    dup2(saved, 2);
    close(fd);
    close(saved);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(o2.rc, 0);
    trace = test_read_file("trace.log", NULL);
    ASSERT(trace != NULL);
    ASSERT_STR_CONTAINS(trace, "POST /api/actions/runner.v1.RunnerService/FetchTask");
    ASSERT_STR_CONTAINS(trace, "x-runner-token: <redacted>");
    ASSERT_STR_CONTAINS(trace, uuid);
    ASSERT_STR_CONTAINS(trace, "User-Agent: runnerd/9.9.9-test");
    ASSERT_STR_CONTAINS(trace, "x-runner-version: 9.9.9-test");
    ASSERT_STR_CONTAINS(trace, "Connect-Protocol-Version: 1");
    ASSERT_STR_CONTAINS(trace, "Content-Type: application/json");
    ASSERT_STR_CONTAINS(trace, "Accept-Encoding: ");
    /* the double gzips every Ping answer when asked to: it was decoded */
    ASSERT_STR_CONTAINS(trace, "Content-Encoding: gzip");
    ASSERT(strstr(trace, token) == NULL);
    free(trace);
    rpc_clear(&rpc_fetch_task_response_type, o.resp);
    free(o.resp);
    rpc_clear(&rpc_ping_response_type, o2.resp);
    free(o2.resp);
    free(uuid);
    free(token);
    fixture_done(&f);
}

TEST(call_on_closing_http_fails_at_once)
{
    uv_loop_t loop;
    struct httpc *h;
    struct connect *c;
    struct outcome o = {0};
    struct err e = {0};

    ASSERT_EQ(uv_loop_init(&loop), 0);
    h = httpc_new(&loop);
    c = connect_new(h, &(struct connect_opts){.instance = "http://127.0.0.1:1"});
    httpc_close(h, NULL, NULL);
    ASSERT(connect_call(c, RPC_PATH_PING, &rpc_ping_request_type, NULL, &rpc_ping_response_type,
                        0, on_done, &o, NULL, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "Ping: ");
    ASSERT_EQ(connect_active(c), 0);
    connect_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(o.calls, 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}
