/* test-rpc.c: the Gitea runner protocol's Connect JSON codec (proto/rpc.c).
 * Covers: every message encoded and decoded back to an equal struct, with the exact JSON of
 * the encoding checked for a few; every example body of doc/gitea-protocol.md §5 (the seed corpus
 * of fuzz-rpc) decoded with its fields asserted; int64 edge values as strings and numbers;
 * timestamps with and without nanos and offsets; base64 alphabets and padding; enums by
 * name and number; unknown members, snake_case names and null; malformed bodies rejected
 * with a message that names the field; Connect error bodies and their classification. */
#include "harness.h"

#include "rpc.h"
#include "runner/xalloc.h"

#include <stddef.h>
#include <stdint.h>

/* ============================================================================== helpers */

static char *
seed(const char *name)
{
    char path[512];
    char *s;

    snprintf(path, sizeof path, "%s/tests/fuzz/seed-rpc/%s.json", RUNNERD_SOURCE_DIR, name);
    s = test_read_file(path, NULL);
    if (!s)
        test_fail(__FILE__, __LINE__, "cannot read %s", path);
    return s;
}

static void
decode_ok(const struct rpc_type *t, const char *body, void *msg)
{
    struct err e = {0};

    if (rpc_decode_body(t, body, strlen(body), msg, &e) < 0)
        test_fail(__FILE__, __LINE__, "decoding %s failed: %s\n  body: %s", rpc_type_name(t),
                  e.msg, body);
}

static void
decode_seed(const struct rpc_type *t, const char *name, void *msg)
{
    char *s = seed(name);

    decode_ok(t, s, msg);
    free(s);
}

/* Decoding body must fail with exactly this message. */
static void
expect_error(const struct rpc_type *t, const char *body, const char *msg)
{
    _Alignas(max_align_t) char buf[512];
    struct err e = {0};
    int rc;

    memset(buf, 0xAA, sizeof buf); /* the decoder must clear it whatever happens */
    rc = rpc_decode_body(t, body, strlen(body), buf, &e);
    if (rc != ERR_PROTO)
        test_fail(__FILE__, __LINE__, "%s: rc %d for %s", rpc_type_name(t), rc, body);
    ASSERT_STR_EQ(e.msg, msg);
}

/* Encodes msg, checks the JSON equals expect (if non-NULL), decodes it back and checks the
 * result equals msg. */
static void
round_trip(const struct rpc_type *t, const void *msg, const char *expect)
{
    _Alignas(max_align_t) char copy[512];
    struct err e = {0};
    char *body = rpc_encode_body(t, msg);

    if (expect) {
        json_t *a = json_loads(body, 0, NULL), *b = json_loads(expect, 0, NULL);
        ASSERT(b != NULL);
        if (!json_equal(a, b))
            test_fail(__FILE__, __LINE__, "%s encoded as\n  %s\nexpected\n  %s", rpc_type_name(t),
                      body, expect);
        json_decref(a);
        json_decref(b);
    }
    if (rpc_decode_body(t, body, strlen(body), copy, &e) < 0)
        test_fail(__FILE__, __LINE__, "decoding %s failed: %s", body, e.msg);
    if (!rpc_equal(t, msg, copy))
        test_fail(__FILE__, __LINE__, "%s did not round-trip: %s", rpc_type_name(t), body);
    rpc_clear(t, copy);
    free(body);
}

static struct rpc_strv
strv(const char *a, const char *b)
{
    struct rpc_strv v = {.v = xcalloc(2, sizeof(char *)), .n = 0};

    if (a)
        v.v[v.n++] = xstrdup(a);
    if (b)
        v.v[v.n++] = xstrdup(b);
    return v;
}

static struct rpc_map
map1(const char *k, const char *v)
{
    struct rpc_map m = {.v = xcalloc(1, sizeof(struct rpc_pair)), .n = 1};

    m.v[0].key = xstrdup(k);
    m.v[0].value = xstrdup(v);
    return m;
}

static struct rpc_time
tm(int64_t sec, int32_t nsec)
{
    return (struct rpc_time){.sec = sec, .nsec = nsec, .set = true};
}

static const char *
map_get(const struct rpc_map *m, const char *k)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].key, k) == 0)
            return m->v[i].value;
    return NULL;
}

/* 2025-06-01T12:00:00Z */
#define T0 INT64_C(1748779200)

/* ========================================================================== round trips */

TEST(round_trip_ping)
{
    struct rpc_ping_request rq = {.data = xstrdup("build-01")};
    struct rpc_ping_response rs = {.data = xstrdup("Hello, build-01!")};

    round_trip(&rpc_ping_request_type, &rq, "{\"data\":\"build-01\"}");
    round_trip(&rpc_ping_response_type, &rs, "{\"data\":\"Hello, build-01!\"}");
    rpc_clear(&rpc_ping_request_type, &rq);
    rpc_clear(&rpc_ping_response_type, &rs);
    /* All defaults: {} (an empty body is not valid for Connect JSON). */
    round_trip(&rpc_ping_request_type, &rq, "{}");
}

TEST(round_trip_register)
{
    struct rpc_register_request rq = {
        .name = xstrdup("build-01"),
        .token = xstrdup("tok"),
        .agent_labels = strv("a", "b"),
        .custom_labels = strv("c", NULL),
        .version = xstrdup("v1"),
        .labels = strv("ubuntu-latest", "gpu"),
        .ephemeral = true,
    };
    struct rpc_register_response rs = {.runner = xcalloc(1, sizeof(struct rpc_runner))};

    round_trip(&rpc_register_request_type, &rq,
               "{\"name\":\"build-01\",\"token\":\"tok\",\"agentLabels\":[\"a\",\"b\"],"
               "\"customLabels\":[\"c\"],\"version\":\"v1\","
               "\"labels\":[\"ubuntu-latest\",\"gpu\"],\"ephemeral\":true}");
    rs.runner->id = 7;
    rs.runner->uuid = xstrdup("a1b2c3d4-0000-4000-8000-0123456789ab");
    rs.runner->token = xstrdup("3f1c");
    rs.runner->name = xstrdup("build-01");
    rs.runner->status = RPC_RUNNER_STATUS_ACTIVE;
    rs.runner->agent_labels = strv("x", NULL);
    rs.runner->custom_labels = strv("y", NULL);
    rs.runner->version = xstrdup("v2");
    rs.runner->labels = strv("l", NULL);
    rs.runner->ephemeral = true;
    round_trip(&rpc_register_response_type, &rs,
               "{\"runner\":{\"id\":\"7\",\"uuid\":\"a1b2c3d4-0000-4000-8000-0123456789ab\","
               "\"token\":\"3f1c\",\"name\":\"build-01\",\"status\":\"RUNNER_STATUS_ACTIVE\","
               "\"agentLabels\":[\"x\"],\"customLabels\":[\"y\"],\"version\":\"v2\","
               "\"labels\":[\"l\"],\"ephemeral\":true}}");
    round_trip(&rpc_runner_type, rs.runner, NULL);
    rpc_clear(&rpc_register_request_type, &rq);
    rpc_clear(&rpc_register_response_type, &rs);
    /* Absent runner vs present but empty. */
    round_trip(&rpc_register_response_type, &rs, "{}");
    rs.runner = xcalloc(1, sizeof(struct rpc_runner));
    round_trip(&rpc_register_response_type, &rs, "{\"runner\":{}}");
    rpc_clear(&rpc_register_response_type, &rs);
}

TEST(round_trip_declare)
{
    struct rpc_declare_request rq = {.version = xstrdup("v0.1.0"), .labels = strv("a", "b")};
    struct rpc_declare_response rs = {.runner = xcalloc(1, sizeof(struct rpc_runner))};

    round_trip(&rpc_declare_request_type, &rq,
               "{\"version\":\"v0.1.0\",\"labels\":[\"a\",\"b\"]}");
    rs.runner->id = 9;
    rs.runner->labels = strv("a", NULL);
    round_trip(&rpc_declare_response_type, &rs, "{\"runner\":{\"id\":\"9\",\"labels\":[\"a\"]}}");
    rpc_clear(&rpc_declare_request_type, &rq);
    rpc_clear(&rpc_declare_response_type, &rs);
}

TEST(round_trip_fetch_task)
{
    struct rpc_fetch_task_request rq = {.tasks_version = 41};
    struct rpc_fetch_task_response rs = {.task = xcalloc(1, sizeof(struct rpc_task)),
                                         .tasks_version = 42};
    struct rpc_task *t = rs.task;
    static const uint8_t payload[] = {'o', 'n', ':', 0, 0xff, '\n'};

    round_trip(&rpc_fetch_task_request_type, &rq, "{\"tasksVersion\":\"41\"}");
    t->id = 1234;
    t->workflow_payload.p = xmalloc(sizeof payload);
    memcpy(t->workflow_payload.p, payload, sizeof payload);
    t->workflow_payload.len = sizeof payload;
    t->workflow_payload.set = true;
    t->context = json_pack("{s:s, s:{s:[i, f, n, b]}}", "actor", "alice", "event", "x", 1, 2.5,
                           true);
    t->secrets = map1("DEPLOY_KEY", "s3cr3t");
    t->machine = xstrdup("m");
    t->needs = xcalloc(2, sizeof *t->needs);
    t->n_needs = 2;
    t->needs[0].key = xstrdup("lint");
    t->needs[0].value.outputs = map1("ok", "yes");
    t->needs[0].value.result = RPC_RESULT_SUCCESS;
    t->needs[1].key = xstrdup("test");
    t->needs[1].value.result = RPC_RESULT_SKIPPED;
    t->vars = map1("REGISTRY", "registry.example.com");
    round_trip(&rpc_fetch_task_response_type, &rs,
               "{\"task\":{\"id\":\"1234\",\"workflowPayload\":\"b246AP8K\","
               "\"context\":{\"actor\":\"alice\",\"event\":{\"x\":[1,2.5,null,true]}},"
               "\"secrets\":{\"DEPLOY_KEY\":\"s3cr3t\"},\"machine\":\"m\","
               "\"needs\":{\"lint\":{\"outputs\":{\"ok\":\"yes\"},\"result\":\"RESULT_SUCCESS\"},"
               "\"test\":{\"result\":\"RESULT_SKIPPED\"}},"
               "\"vars\":{\"REGISTRY\":\"registry.example.com\"}},\"tasksVersion\":\"42\"}");
    round_trip(&rpc_task_type, t, NULL);
    round_trip(&rpc_task_need_type, &t->needs[0].value, NULL);
    /* A present but empty payload and an empty context stay present. */
    free(t->workflow_payload.p);
    t->workflow_payload = (struct rpc_bytes){.set = true};
    json_decref(t->context);
    t->context = json_object();
    round_trip(&rpc_task_type, t, NULL);
    rpc_clear(&rpc_fetch_task_response_type, &rs);
    round_trip(&rpc_fetch_task_response_type, &rs, "{}");
}

TEST(round_trip_update_task)
{
    struct rpc_update_task_request rq = {.state = xcalloc(1, sizeof(struct rpc_task_state))};
    struct rpc_update_task_response rs = {.state = xcalloc(1, sizeof(struct rpc_task_state)),
                                          .sent_outputs = strv("artifact", "b")};
    struct rpc_task_state *s = rq.state;

    s->id = 1234;
    s->result = RPC_RESULT_FAILURE;
    s->started_at = tm(T0, 120000000);
    s->stopped_at = tm(T0 + 70, 500000000);
    s->steps = xcalloc(2, sizeof *s->steps);
    s->n_steps = 2;
    s->steps[0] = (struct rpc_step_state){.id = 0, .result = RPC_RESULT_SUCCESS,
                                          .started_at = tm(T0 + 3, 0),
                                          .stopped_at = tm(T0 + 5, 0), .log_index = 3,
                                          .log_length = 2};
    s->steps[1] = (struct rpc_step_state){.id = 1, .result = RPC_RESULT_CANCELLED,
                                          .started_at = tm(T0 + 5, 1),
                                          .stopped_at = tm(T0 + 69, 1000),
                                          .log_index = 5, .log_length = 40};
    rq.outputs = map1("artifact", "app.tar.gz");
    round_trip(&rpc_update_task_request_type, &rq,
               "{\"state\":{\"id\":\"1234\",\"result\":\"RESULT_FAILURE\","
               "\"startedAt\":\"2025-06-01T12:00:00.120Z\","
               "\"stoppedAt\":\"2025-06-01T12:01:10.500Z\",\"steps\":["
               "{\"result\":\"RESULT_SUCCESS\",\"startedAt\":\"2025-06-01T12:00:03Z\","
               "\"stoppedAt\":\"2025-06-01T12:00:05Z\",\"logIndex\":\"3\",\"logLength\":\"2\"},"
               "{\"id\":\"1\",\"result\":\"RESULT_CANCELLED\","
               "\"startedAt\":\"2025-06-01T12:00:05.000000001Z\","
               "\"stoppedAt\":\"2025-06-01T12:01:09.000001Z\",\"logIndex\":\"5\","
               "\"logLength\":\"40\"}]},\"outputs\":{\"artifact\":\"app.tar.gz\"}}");
    round_trip(&rpc_task_state_type, s, NULL);
    round_trip(&rpc_step_state_type, &s->steps[1], NULL);
    rs.state->id = 1234;
    rs.state->result = RPC_RESULT_SUCCESS;
    round_trip(&rpc_update_task_response_type, &rs,
               "{\"state\":{\"id\":\"1234\",\"result\":\"RESULT_SUCCESS\"},"
               "\"sentOutputs\":[\"artifact\",\"b\"]}");
    rpc_clear(&rpc_update_task_request_type, &rq);
    rpc_clear(&rpc_update_task_response_type, &rs);
}

TEST(round_trip_update_log)
{
    struct rpc_update_log_request rq = {.task_id = 1234, .index = 45, .no_more = true};
    struct rpc_update_log_response rs = {.ack_index = 46};

    rq.rows = xcalloc(2, sizeof *rq.rows);
    rq.n_rows = 2;
    rq.rows[0] = (struct rpc_log_row){.time = tm(T0 + 70, 500000000),
                                      .content = xstrdup("\xF0\x9F\x8F\x81  Job succeeded")};
    rq.rows[1] = (struct rpc_log_row){.time = tm(T0, 0), .content = xstrdup("")};
    round_trip(&rpc_update_log_request_type, &rq,
               "{\"taskId\":\"1234\",\"index\":\"45\",\"rows\":["
               "{\"time\":\"2025-06-01T12:01:10.500Z\",\"content\":\"\xF0\x9F\x8F\x81  Job "
               "succeeded\"},{\"time\":\"2025-06-01T12:00:00Z\"}],\"noMore\":true}");
    round_trip(&rpc_log_row_type, &rq.rows[0], NULL);
    round_trip(&rpc_update_log_response_type, &rs, "{\"ackIndex\":\"46\"}");
    rpc_clear(&rpc_update_log_request_type, &rq);
}

/* Log content from a container may be any bytes; proto3 strings must be UTF-8. */
TEST(invalid_utf8_replaced)
{
    struct rpc_log_row r = {.content = xstrdup("a\xff" "b\xC3(\xE2\x82")};
    char *body = rpc_encode_body(&rpc_log_row_type, &r);

    ASSERT_STR_EQ(body, "{\"content\":\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD(\xEF\xBF\xBD\xEF\xBF\xBD\"}");
    free(body);
    rpc_clear(&rpc_log_row_type, &r);
}

/* ====================================================== doc/gitea-protocol.md §5 bodies */

TEST(spec_ping)
{
    struct rpc_ping_request rq;
    struct rpc_ping_response rs;

    decode_seed(&rpc_ping_request_type, "ping-req", &rq);
    ASSERT_STR_EQ(rq.data, "build-01");
    decode_seed(&rpc_ping_response_type, "ping-resp", &rs);
    ASSERT_STR_EQ(rs.data, "Hello, build-01!");
    rpc_clear(&rpc_ping_request_type, &rq);
    rpc_clear(&rpc_ping_response_type, &rs);
}

TEST(spec_register)
{
    struct rpc_register_request rq;
    struct rpc_register_response rs;

    decode_seed(&rpc_register_request_type, "register-req", &rq);
    ASSERT_STR_EQ(rq.name, "build-01");
    ASSERT_STR_EQ(rq.token, "Q7vX2kPzL9mN4bR8tW1yC6dF3hJ5sA0gE2uI7oKp");
    ASSERT_STR_EQ(rq.version, "v0.2.12");
    ASSERT_EQ(rq.agent_labels.n, 2);
    ASSERT_STR_EQ(rq.agent_labels.v[1], "macos-arm64");
    ASSERT_EQ(rq.labels.n, 2);
    ASSERT_STR_EQ(rq.labels.v[0], "ubuntu-latest");
    ASSERT_EQ(rq.custom_labels.n, 0);
    ASSERT(!rq.ephemeral);
    round_trip(&rpc_register_request_type, &rq, NULL);
    decode_seed(&rpc_register_response_type, "register-resp", &rs);
    ASSERT(rs.runner != NULL);
    ASSERT_EQ(rs.runner->id, 7);
    ASSERT_STR_EQ(rs.runner->uuid, "a1b2c3d4-0000-4000-8000-0123456789ab");
    ASSERT_STR_EQ(rs.runner->token, "3f1c9e0a5b7d2c4e6f8091a2b3c4d5e6f7a8b9c0");
    ASSERT_STR_EQ(rs.runner->name, "build-01");
    ASSERT_STR_EQ(rs.runner->version, "v0.2.12");
    ASSERT_EQ(rs.runner->labels.n, 2);
    ASSERT_STR_EQ(rs.runner->labels.v[1], "macos-arm64");
    ASSERT(!rs.runner->ephemeral);
    ASSERT_EQ(rs.runner->status, RPC_RUNNER_STATUS_UNSPECIFIED);
    rpc_clear(&rpc_register_request_type, &rq);
    rpc_clear(&rpc_register_response_type, &rs);
}

TEST(spec_declare)
{
    struct rpc_declare_request rq;
    struct rpc_declare_response rs;

    decode_seed(&rpc_declare_request_type, "declare-req", &rq);
    ASSERT_STR_EQ(rq.version, "v0.2.12");
    ASSERT_EQ(rq.labels.n, 2);
    decode_seed(&rpc_declare_response_type, "declare-resp", &rs);
    ASSERT_EQ(rs.runner->id, 7);
    ASSERT(rs.runner->token == NULL); /* Declare never returns the token */
    ASSERT_STR_EQ(rs.runner->name, "build-01");
    ASSERT_STR_EQ(rs.runner->labels.v[0], "ubuntu-latest");
    rpc_clear(&rpc_declare_request_type, &rq);
    rpc_clear(&rpc_declare_response_type, &rs);
}

TEST(spec_fetch_task)
{
    struct rpc_fetch_task_request rq;
    struct rpc_fetch_task_response rs;
    struct rpc_task *t;
    json_t *ev;

    decode_seed(&rpc_fetch_task_request_type, "fetch-req", &rq);
    ASSERT_EQ(rq.tasks_version, 0);
    decode_seed(&rpc_fetch_task_response_type, "fetch-resp-empty", &rs);
    ASSERT(rs.task == NULL);
    ASSERT_EQ(rs.tasks_version, 41);
    rpc_clear(&rpc_fetch_task_response_type, &rs);

    decode_seed(&rpc_fetch_task_response_type, "fetch-resp-task", &rs);
    ASSERT_EQ(rs.tasks_version, 42);
    t = rs.task;
    ASSERT(t != NULL);
    ASSERT_EQ(t->id, 1234);
    ASSERT(t->workflow_payload.set);
    ASSERT_EQ(t->workflow_payload.len, 511);
    ASSERT(memcmp(t->workflow_payload.p, "name: CI\n\"on\":\n    push:\n", 24) == 0);
    ASSERT(memcmp(t->workflow_payload.p + 511 - 45,
                  "artifact: ${{ steps.build.outputs.artifact }}\n", 45) == 0 ||
           memcmp(t->workflow_payload.p + 511 - 46,
                  "artifact: ${{ steps.build.outputs.artifact }}\n", 46) == 0);
    ASSERT(json_is_object(t->context));
    ASSERT_STR_EQ(json_string_value(json_object_get(t->context, "actor")), "alice");
    ASSERT_STR_EQ(json_string_value(json_object_get(t->context, "run_number")), "57");
    ASSERT(json_is_false(json_object_get(t->context, "ref_protected")));
    ev = json_object_get(t->context, "event");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(ev, "repository"),
                                                    "full_name")),
                  "acme/app");
    ASSERT_EQ(t->secrets.n, 3);
    ASSERT_STR_EQ(map_get(&t->secrets, "DEPLOY_KEY"), "s3cr3t");
    ASSERT_STR_EQ(map_get(&t->secrets, "GITHUB_TOKEN"), "5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2");
    ASSERT_EQ(t->n_needs, 1);
    ASSERT_STR_EQ(t->needs[0].key, "lint");
    ASSERT_EQ(t->needs[0].value.result, RPC_RESULT_SUCCESS);
    ASSERT_STR_EQ(map_get(&t->needs[0].value.outputs, "ok"), "yes");
    ASSERT_EQ(t->vars.n, 1);
    ASSERT_STR_EQ(map_get(&t->vars, "REGISTRY"), "registry.example.com");
    ASSERT(t->machine == NULL);
    round_trip(&rpc_fetch_task_response_type, &rs, NULL);
    rpc_clear(&rpc_fetch_task_response_type, &rs);
}

TEST(spec_update_log)
{
    struct rpc_update_log_request rq;
    struct rpc_update_log_response rs;

    decode_seed(&rpc_update_log_request_type, "updatelog-req-1", &rq);
    ASSERT_EQ(rq.task_id, 1234);
    ASSERT_EQ(rq.index, 0);
    ASSERT(!rq.no_more);
    ASSERT_EQ(rq.n_rows, 3);
    ASSERT_EQ(rq.rows[0].time.sec, T0);
    ASSERT_EQ(rq.rows[0].time.nsec, 120000000);
    ASSERT_EQ(rq.rows[2].time.sec, T0 + 1);
    ASSERT_EQ(rq.rows[2].time.nsec, 10000000);
    ASSERT_STR_EQ(rq.rows[1].content, "workflow prepared");
    ASSERT_STR_CONTAINS(rq.rows[2].content, "\xF0\x9F\x9A\x80  Start image=");
    round_trip(&rpc_update_log_request_type, &rq, NULL);
    rpc_clear(&rpc_update_log_request_type, &rq);

    decode_seed(&rpc_update_log_request_type, "updatelog-req-2", &rq);
    ASSERT_EQ(rq.index, 2);
    ASSERT_EQ(rq.n_rows, 3);
    ASSERT_STR_EQ(rq.rows[2].content, "HEAD is now at 9f2e4b7");
    rpc_clear(&rpc_update_log_request_type, &rq);

    decode_seed(&rpc_update_log_request_type, "updatelog-req-final", &rq);
    ASSERT_EQ(rq.index, 45);
    ASSERT(rq.no_more);
    ASSERT_EQ(rq.n_rows, 1);
    ASSERT_EQ(rq.rows[0].time.sec, T0 + 70);
    ASSERT_EQ(rq.rows[0].time.nsec, 500000000);
    rpc_clear(&rpc_update_log_request_type, &rq);

    decode_seed(&rpc_update_log_response_type, "updatelog-resp-1", &rs);
    ASSERT_EQ(rs.ack_index, 3);
    decode_seed(&rpc_update_log_response_type, "updatelog-resp-2", &rs);
    ASSERT_EQ(rs.ack_index, 5);
    decode_seed(&rpc_update_log_response_type, "updatelog-resp-final", &rs);
    ASSERT_EQ(rs.ack_index, 46);
    /* ackIndex 0 is omitted: {} */
    decode_ok(&rpc_update_log_response_type, "{}", &rs);
    ASSERT_EQ(rs.ack_index, 0);
}

TEST(spec_update_task)
{
    struct rpc_update_task_request rq;
    struct rpc_update_task_response rs;

    decode_seed(&rpc_update_task_request_type, "updatetask-req-1", &rq);
    ASSERT_EQ(rq.state->id, 1234);
    ASSERT_EQ(rq.state->result, RPC_RESULT_UNSPECIFIED);
    ASSERT(rq.state->started_at.set);
    ASSERT(!rq.state->stopped_at.set);
    ASSERT_EQ(rq.state->n_steps, 2);
    ASSERT_EQ(rq.state->steps[0].id, 0);
    ASSERT_EQ(rq.state->steps[0].started_at.sec, T0 + 3);
    ASSERT_EQ(rq.state->steps[0].log_index, 3);
    ASSERT_EQ(rq.state->steps[0].log_length, 2);
    ASSERT_EQ(rq.state->steps[1].id, 1);
    ASSERT(!rq.state->steps[1].started_at.set);
    ASSERT_EQ(rq.outputs.n, 0);
    rpc_clear(&rpc_update_task_request_type, &rq);

    decode_seed(&rpc_update_task_request_type, "updatetask-req-2", &rq);
    ASSERT_EQ(rq.state->steps[0].result, RPC_RESULT_SUCCESS);
    ASSERT_EQ(rq.state->steps[0].stopped_at.sec, T0 + 5);
    ASSERT_EQ(rq.state->steps[1].log_length, 40);
    rpc_clear(&rpc_update_task_request_type, &rq);

    decode_seed(&rpc_update_task_request_type, "updatetask-req-final", &rq);
    ASSERT_EQ(rq.state->result, RPC_RESULT_SUCCESS);
    ASSERT_EQ(rq.state->stopped_at.sec, T0 + 70);
    ASSERT_EQ(rq.state->stopped_at.nsec, 500000000);
    ASSERT_EQ(rq.state->steps[1].stopped_at.sec, T0 + 69);
    ASSERT_STR_EQ(map_get(&rq.outputs, "artifact"), "app.tar.gz");
    round_trip(&rpc_update_task_request_type, &rq, NULL);
    rpc_clear(&rpc_update_task_request_type, &rq);

    decode_seed(&rpc_update_task_response_type, "updatetask-resp-1", &rs);
    ASSERT_EQ(rs.state->id, 1234);
    ASSERT_EQ(rs.state->result, RPC_RESULT_UNSPECIFIED);
    ASSERT_EQ(rs.sent_outputs.n, 0);
    rpc_clear(&rpc_update_task_response_type, &rs);
    decode_seed(&rpc_update_task_response_type, "updatetask-resp-cancelled", &rs);
    ASSERT_EQ(rs.state->result, RPC_RESULT_CANCELLED);
    rpc_clear(&rpc_update_task_response_type, &rs);
    decode_seed(&rpc_update_task_response_type, "updatetask-resp-final", &rs);
    ASSERT_EQ(rs.state->result, RPC_RESULT_SUCCESS);
    ASSERT_EQ(rs.sent_outputs.n, 1);
    ASSERT_STR_EQ(rs.sent_outputs.v[0], "artifact");
    rpc_clear(&rpc_update_task_response_type, &rs);
}

TEST(spec_errors)
{
    static const struct {
        const char *seed;
        const char *message;
        enum rpc_errclass cls;
    } cases[] = {
        {"register-err",
         "runner registration token has been invalidated, please use the latest one",
         RPC_ERR_OTHER},
        {"declare-err", "rpc error: code = Unauthenticated desc = unregistered runner",
         RPC_ERR_UNAUTHENTICATED},
        {"archived-err", "rpc error: code = AlreadyExists desc = log file has been archived",
         RPC_ERR_OTHER},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = seed(cases[i].seed);
        struct rpc_error er;
        rpc_error_decode(500, s, strlen(s), &er);
        ASSERT(er.connect);
        ASSERT_EQ(er.status, 500);
        ASSERT_STR_EQ(er.code, "unknown");
        ASSERT_STR_EQ(er.message, cases[i].message);
        ASSERT_EQ(rpc_error_class(er.status, er.code, er.message), cases[i].cls);
        rpc_error_clear(&er);
        free(s);
    }
}

/* ================================================================================ int64 */

TEST(int64_values)
{
    static const struct {
        const char *json;
        int64_t v;
    } ok[] = {
        {"\"0\"", 0},
        {"0", 0},
        {"\"9223372036854775807\"", INT64_MAX},
        {"9223372036854775807", INT64_MAX},
        {"\"-9223372036854775808\"", INT64_MIN},
        {"-9223372036854775808", INT64_MIN},
        {"\"-1\"", -1},
        {"-1", -1},
        {"42.0", 42},
        {"1e3", 1000},
        {"\"007\"", 7},
    };
    static const struct {
        int64_t v;
        const char *json;
    } enc[] = {
        {INT64_MAX, "{\"ackIndex\":\"9223372036854775807\"}"},
        {INT64_MIN, "{\"ackIndex\":\"-9223372036854775808\"}"},
        {-1, "{\"ackIndex\":\"-1\"}"},
        {0, "{}"},
    };
    static const char *const bad[] = {
        "\"9223372036854775808\"", "\"-9223372036854775809\"", "\"\"",   "\"-\"",   "\"1.5\"",
        "\"abc\"",                 "1.5",                      "1e300",  "true",    "[]",
        "{}",                      "\" 1\"",                   "\"+1\"", "\"1 \"",  "\"0x10\"",
    };

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char body[128];
        struct rpc_update_log_response r;
        snprintf(body, sizeof body, "{\"ackIndex\":%s}", ok[i].json);
        decode_ok(&rpc_update_log_response_type, body, &r);
        ASSERT_EQ(r.ack_index, ok[i].v);
    }
    for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
        struct rpc_update_log_response r = {.ack_index = enc[i].v};
        round_trip(&rpc_update_log_response_type, &r, enc[i].json);
        char *s = rpc_encode_body(&rpc_update_log_response_type, &r);
        ASSERT_STR_EQ(s, enc[i].json);
        free(s);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"ackIndex\":%s}", bad[i]);
        expect_error(&rpc_update_log_response_type, body,
                     "UpdateLogResponse.ackIndex: expected an int64");
    }
}

/* =========================================================================== timestamps */

TEST(timestamps)
{
    static const struct {
        const char *in;
        int64_t sec;
        int32_t nsec;
        const char *out; /* canonical form */
    } ok[] = {
        {"2025-06-01T12:00:00Z", T0, 0, "2025-06-01T12:00:00Z"},
        {"2025-06-01T12:00:00.120Z", T0, 120000000, "2025-06-01T12:00:00.120Z"},
        {"2025-06-01T12:00:00.1Z", T0, 100000000, "2025-06-01T12:00:00.100Z"},
        {"2025-06-01T12:00:00.123456Z", T0, 123456000, "2025-06-01T12:00:00.123456Z"},
        {"2025-06-01T12:00:00.1234567Z", T0, 123456700, "2025-06-01T12:00:00.123456700Z"},
        {"2025-06-01T12:00:00.123456789Z", T0, 123456789, "2025-06-01T12:00:00.123456789Z"},
        {"2025-06-01T12:00:00.000000000Z", T0, 0, "2025-06-01T12:00:00Z"},
        {"2025-06-01T14:30:00+02:30", T0, 0, "2025-06-01T12:00:00Z"},
        {"2025-06-01T07:00:00.5-05:00", T0, 500000000, "2025-06-01T12:00:00.500Z"},
        {"2025-06-01t12:00:00z", T0, 0, "2025-06-01T12:00:00Z"},
        {"1970-01-01T00:00:00Z", 0, 0, "1970-01-01T00:00:00Z"},
        {"1969-12-31T23:59:59.999999999Z", -1, 999999999, "1969-12-31T23:59:59.999999999Z"},
        {"2024-02-29T00:00:00Z", INT64_C(1709164800), 0, "2024-02-29T00:00:00Z"},
        {"0001-01-01T00:00:00Z", INT64_C(-62135596800), 0, "0001-01-01T00:00:00Z"},
        {"9999-12-31T23:59:59.999999999Z", INT64_C(253402300799), 999999999,
         "9999-12-31T23:59:59.999999999Z"},
    };
    static const char *const bad[] = {
        "",
        "2025-06-01",
        "2025-06-01T12:00:00",
        "2025-06-01 12:00:00Z",
        "2025-13-01T12:00:00Z",
        "2025-02-29T12:00:00Z",
        "2025-06-31T12:00:00Z",
        "2025-06-01T24:00:00Z",
        "2025-06-01T12:60:00Z",
        "2025-06-01T12:00:60Z",
        "2025-06-01T12:00:00.Z",
        "2025-06-01T12:00:00.1234567890Z",
        "2025-06-01T12:00:00+0200",
        "2025-06-01T12:00:00Zjunk",
        "0000-12-31T23:59:59Z",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-00:01",
        "25-06-01T12:00:00Z",
    };

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct rpc_time t = {0};
        char buf[RPC_TIME_MAX];
        if (rpc_time_parse(ok[i].in, &t) < 0)
            test_fail(__FILE__, __LINE__, "parse %s failed", ok[i].in);
        ASSERT(t.set);
        ASSERT_EQ(t.sec, ok[i].sec);
        ASSERT_EQ(t.nsec, ok[i].nsec);
        rpc_time_format(&t, buf);
        ASSERT_STR_EQ(buf, ok[i].out);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rpc_time t = {0};
        char body[128];
        if (rpc_time_parse(bad[i], &t) != ERR_PROTO)
            test_fail(__FILE__, __LINE__, "parse %s succeeded", bad[i]);
        snprintf(body, sizeof body, "{\"rows\":[{},{\"time\":\"%s\"}]}", bad[i]);
        expect_error(&rpc_update_log_request_type, body,
                     "UpdateLogRequest.rows[1].time: expected an RFC 3339 timestamp");
    }
    expect_error(&rpc_update_log_request_type, "{\"rows\":[{\"time\":12}]}",
                 "UpdateLogRequest.rows[0].time: expected an RFC 3339 timestamp");
}

/* =============================================================================== base64 */

TEST(base64)
{
    static const struct {
        const char *in;
        const char *bytes;
        size_t len;
    } ok[] = {
        {"", "", 0},
        {"Zg==", "f", 1},
        {"Zg", "f", 1},
        {"Zm8=", "fo", 2},
        {"Zm8", "fo", 2},
        {"Zm9v", "foo", 3},
        {"+/+/", "\xfb\xff\xbf", 3},
        {"-_-_", "\xfb\xff\xbf", 3},
        {"-_8", "\xfb\xff", 2},
        {"b246AP8K", "on:\0\xff\n", 6},
    };
    static const char *const bad[] = {"Z", "Zg=", "Z===", "Zm9v!", "Zm 9v", "=Zg=", "Zg==Zg=="};

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char body[128];
        struct rpc_task t;
        snprintf(body, sizeof body, "{\"workflowPayload\":\"%s\"}", ok[i].in);
        decode_ok(&rpc_task_type, body, &t);
        ASSERT(t.workflow_payload.set);
        ASSERT_EQ(t.workflow_payload.len, ok[i].len);
        ASSERT(memcmp(t.workflow_payload.p, ok[i].bytes, ok[i].len) == 0);
        round_trip(&rpc_task_type, &t, NULL);
        rpc_clear(&rpc_task_type, &t);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"task\":{\"workflowPayload\":\"%s\"}}", bad[i]);
        expect_error(&rpc_fetch_task_response_type, body,
                     "FetchTaskResponse.task.workflowPayload: expected base64");
    }
    /* Output: standard alphabet with padding. */
    struct rpc_task t = {.workflow_payload = {.p = (uint8_t *)"\xfb\xff", .len = 2, .set = true}};
    char *s = rpc_encode_body(&rpc_task_type, &t);
    ASSERT_STR_EQ(s, "{\"workflowPayload\":\"+/8=\"}");
    free(s);
}

/* ================================================================================ enums */

TEST(enums)
{
    struct rpc_update_task_response r;
    struct rpc_runner rn;

    decode_ok(&rpc_update_task_response_type, "{\"state\":{\"result\":\"RESULT_FAILURE\"}}", &r);
    ASSERT_EQ(r.state->result, RPC_RESULT_FAILURE);
    rpc_clear(&rpc_update_task_response_type, &r);
    decode_ok(&rpc_update_task_response_type, "{\"state\":{\"result\":3}}", &r);
    ASSERT_EQ(r.state->result, RPC_RESULT_CANCELLED);
    rpc_clear(&rpc_update_task_response_type, &r);
    decode_ok(&rpc_update_task_response_type, "{\"state\":{\"result\":0}}", &r);
    ASSERT_EQ(r.state->result, RPC_RESULT_UNSPECIFIED);
    rpc_clear(&rpc_update_task_response_type, &r);
    /* Proto3 enums are open: an unknown number is kept and written back as a number. */
    decode_ok(&rpc_update_task_response_type, "{\"state\":{\"result\":7}}", &r);
    ASSERT_EQ(r.state->result, 7);
    round_trip(&rpc_update_task_response_type, &r, "{\"state\":{\"result\":7}}");
    rpc_clear(&rpc_update_task_response_type, &r);
    decode_ok(&rpc_runner_type, "{\"status\":\"RUNNER_STATUS_OFFLINE\"}", &rn);
    ASSERT_EQ(rn.status, RPC_RUNNER_STATUS_OFFLINE);
    decode_ok(&rpc_runner_type, "{\"status\":2}", &rn);
    ASSERT_EQ(rn.status, RPC_RUNNER_STATUS_ACTIVE);
    ASSERT_STR_EQ(rpc_result_name(RPC_RESULT_SKIPPED), "RESULT_SKIPPED");
    ASSERT_STR_EQ(rpc_runner_status_name(RPC_RUNNER_STATUS_IDLE), "RUNNER_STATUS_IDLE");
    ASSERT(rpc_result_name(9) == NULL);

    expect_error(&rpc_update_task_response_type, "{\"state\":{\"result\":\"SUCCESS\"}}",
                 "UpdateTaskResponse.state.result: expected a Result name or number");
    expect_error(&rpc_update_task_response_type, "{\"state\":{\"result\":true}}",
                 "UpdateTaskResponse.state.result: expected a Result name or number");
    expect_error(&rpc_update_task_response_type, "{\"state\":{\"result\":4294967296}}",
                 "UpdateTaskResponse.state.result: expected a Result name or number");
    expect_error(&rpc_register_response_type, "{\"runner\":{\"status\":\"RESULT_SUCCESS\"}}",
                 "RegisterResponse.runner.status: expected a RunnerStatus name or number");
    expect_error(&rpc_fetch_task_response_type,
                 "{\"task\":{\"needs\":{\"lint\":{\"result\":\"x\"}}}}",
                 "FetchTaskResponse.task.needs[\"lint\"].result: expected a Result name or "
                 "number");
}

/* ======================================================= unknown, missing, null, names */

TEST(unknown_missing_null)
{
    struct rpc_fetch_task_response r;
    struct rpc_update_log_request l;

    decode_ok(&rpc_fetch_task_response_type,
              "{\"future\":{\"x\":[1,2]},\"tasksVersion\":\"5\",\"task\":{\"id\":\"3\","
              "\"capabilities\":[\"a\"],\"secrets\":null,\"context\":null,"
              "\"workflowPayload\":null}}",
              &r);
    ASSERT_EQ(r.tasks_version, 5);
    ASSERT_EQ(r.task->id, 3);
    ASSERT_EQ(r.task->secrets.n, 0);
    ASSERT(r.task->context == NULL);
    ASSERT(!r.task->workflow_payload.set);
    rpc_clear(&rpc_fetch_task_response_type, &r);
    ASSERT(r.task == NULL);

    decode_ok(&rpc_fetch_task_response_type, "{\"task\":null,\"tasksVersion\":null}", &r);
    ASSERT(r.task == NULL);
    ASSERT_EQ(r.tasks_version, 0);
    decode_ok(&rpc_fetch_task_response_type, "{}", &r);
    ASSERT(r.task == NULL);

    /* The original snake_case names are accepted too. */
    decode_ok(&rpc_update_log_request_type,
              "{\"task_id\":9,\"no_more\":true,\"rows\":[{\"content\":\"x\"}]}", &l);
    ASSERT_EQ(l.task_id, 9);
    ASSERT(l.no_more);
    ASSERT_EQ(l.n_rows, 1);
    ASSERT(!l.rows[0].time.set);
    ASSERT_STR_EQ(l.rows[0].content, "x");
    rpc_clear(&rpc_update_log_request_type, &l);
}

/* ============================================================================ malformed */

TEST(malformed)
{
    static const struct {
        const struct rpc_type *t;
        const char *body;
        const char *msg;
    } cases[] = {
        {&rpc_fetch_task_response_type, "{\"task\":{\"id\":\"x\"}}",
         "FetchTaskResponse.task.id: expected an int64"},
        {&rpc_fetch_task_response_type, "{\"task\":[]}",
         "FetchTaskResponse.task: expected an object"},
        {&rpc_fetch_task_response_type, "[]", "FetchTaskResponse: expected an object"},
        {&rpc_fetch_task_response_type, "null", "FetchTaskResponse: expected an object"},
        {&rpc_fetch_task_response_type, "{\"task\":{\"context\":[1]}}",
         "FetchTaskResponse.task.context: expected an object"},
        {&rpc_fetch_task_response_type, "{\"task\":{\"secrets\":{\"A\":\"1\",\"B\":2}}}",
         "FetchTaskResponse.task.secrets[\"B\"]: expected a string"},
        {&rpc_fetch_task_response_type, "{\"task\":{\"vars\":[]}}",
         "FetchTaskResponse.task.vars: expected an object"},
        {&rpc_fetch_task_response_type, "{\"task\":{\"needs\":{\"a\":1}}}",
         "FetchTaskResponse.task.needs[\"a\"]: expected an object"},
        {&rpc_fetch_task_response_type,
         "{\"task\":{\"needs\":{\"a\":{\"outputs\":{\"o\":null}}}}}",
         "FetchTaskResponse.task.needs[\"a\"].outputs[\"o\"]: expected a string"},
        {&rpc_fetch_task_response_type, "{\"task\":{\"machine\":5}}",
         "FetchTaskResponse.task.machine: expected a string"},
        {&rpc_fetch_task_response_type, "{\"tasksVersion\":{}}",
         "FetchTaskResponse.tasksVersion: expected an int64"},
        {&rpc_register_response_type, "{\"runner\":{\"labels\":\"a\"}}",
         "RegisterResponse.runner.labels: expected an array"},
        {&rpc_register_response_type, "{\"runner\":{\"labels\":[\"a\",1]}}",
         "RegisterResponse.runner.labels[1]: expected a string"},
        {&rpc_register_response_type, "{\"runner\":{\"ephemeral\":\"true\"}}",
         "RegisterResponse.runner.ephemeral: expected a bool"},
        {&rpc_declare_response_type, "{\"runner\":{\"id\":true}}",
         "DeclareResponse.runner.id: expected an int64"},
        {&rpc_update_task_response_type, "{\"state\":{\"steps\":[{},{\"logIndex\":\"z\"}]}}",
         "UpdateTaskResponse.state.steps[1].logIndex: expected an int64"},
        {&rpc_update_task_response_type, "{\"state\":{\"steps\":{}}}",
         "UpdateTaskResponse.state.steps: expected an array"},
        {&rpc_update_task_response_type, "{\"sentOutputs\":[null]}",
         "UpdateTaskResponse.sentOutputs[0]: expected a string"},
        {&rpc_update_task_response_type, "{\"state\":\"x\"}",
         "UpdateTaskResponse.state: expected an object"},
        {&rpc_update_log_response_type, "{\"ackIndex\":\"3\",\"ack_index\":1}", NULL},
        {&rpc_update_log_request_type, "{\"rows\":[{\"content\":1}]}",
         "UpdateLogRequest.rows[0].content: expected a string"},
        {&rpc_update_log_request_type, "{\"rows\":[7]}",
         "UpdateLogRequest.rows[0]: expected an object"},
        {&rpc_ping_response_type, "{\"data\":[]}", "PingResponse.data: expected a string"},
        {&rpc_ping_response_type, "", NULL},
        {&rpc_ping_response_type, "{\"data\":", NULL},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].msg) {
            expect_error(cases[i].t, cases[i].body, cases[i].msg);
        } else if (cases[i].body[0] == '{' && strchr(cases[i].body, '}')) {
            /* camelCase wins over snake_case when both are present */
            struct rpc_update_log_response r;
            decode_ok(cases[i].t, cases[i].body, &r);
            ASSERT_EQ(r.ack_index, 3);
        } else {
            /* not JSON at all */
            struct err e = {0};
            struct rpc_ping_response r;
            ASSERT_EQ(rpc_decode_body(cases[i].t, cases[i].body, strlen(cases[i].body), &r, &e),
                      ERR_PROTO);
            ASSERT_STR_CONTAINS(e.msg, "PingResponse: invalid JSON");
        }
    }
    /* jansson's parser refuses \u0000, but a json_t built in memory can hold one. */
    {
        json_t *j = json_pack("{s:{s:o}}", "runner", "uuid", json_stringn("a\0b", 3));
        struct rpc_register_response rr;
        struct err e = {0};
        ASSERT_EQ(rpc_decode(&rpc_register_response_type, j, &rr, &e), ERR_PROTO);
        ASSERT_STR_EQ(e.msg, "RegisterResponse.runner.uuid: string contains a NUL character");
        ASSERT(rr.runner == NULL);
        json_decref(j);
    }
    /* e may be NULL. */
    struct rpc_ping_response r;
    ASSERT_EQ(rpc_decode_body(&rpc_ping_response_type, "[]", 2, &r, NULL), ERR_PROTO);
}

/* ======================================================================== Connect errors */

TEST(error_decode)
{
    struct rpc_error er;

    rpc_error_decode(501, "{\"code\":\"unimplemented\"}", 24, &er);
    ASSERT(er.connect);
    ASSERT_STR_EQ(er.code, "unimplemented");
    ASSERT_STR_EQ(er.message, "");
    ASSERT_EQ(rpc_error_class(er.status, er.code, er.message), RPC_ERR_NOT_FOUND);
    rpc_error_clear(&er);

    rpc_error_decode(404, "404 page not found\n", 19, &er);
    ASSERT(!er.connect);
    ASSERT_STR_EQ(er.code, "unimplemented");
    ASSERT_EQ(rpc_error_class(er.status, er.code, er.message), RPC_ERR_NOT_FOUND);
    rpc_error_clear(&er);

    rpc_error_decode(502, "<html>Bad Gateway</html>", 24, &er);
    ASSERT_STR_EQ(er.code, "unavailable");
    ASSERT_EQ(rpc_error_class(er.status, er.code, er.message), RPC_ERR_UNAVAILABLE);
    rpc_error_clear(&er);

    rpc_error_decode(503, NULL, 0, &er);
    ASSERT_STR_EQ(er.code, "unavailable");
    rpc_error_clear(&er);

    rpc_error_decode(500, "{\"code\":5,\"message\":\"x\"}", 24, &er);
    ASSERT(!er.connect);
    ASSERT_STR_EQ(er.code, "unknown");
    rpc_error_clear(&er);
    rpc_error_clear(NULL);

    static const struct {
        int status;
        const char *code;
    } derive[] = {{400, "internal"},  {401, "unauthenticated"}, {403, "permission_denied"},
                  {404, "unimplemented"}, {429, "unavailable"}, {502, "unavailable"},
                  {503, "unavailable"}, {504, "unavailable"},   {415, "unknown"},
                  {500, "unknown"},     {418, "unknown"}};
    for (size_t i = 0; i < sizeof derive / sizeof derive[0]; i++)
        ASSERT_STR_EQ(rpc_code_from_status(derive[i].status), derive[i].code);
}

TEST(error_class_table)
{
    static const struct {
        int status;
        const char *code;
        const char *message;
        enum rpc_errclass cls;
    } cases[] = {
        /* Gitea's auth failure is HTTP 500 "unknown", recognised by its message. */
        {500, "unknown", "rpc error: code = Unauthenticated desc = unregistered runner",
         RPC_ERR_UNAUTHENTICATED},
        {401, "unauthenticated", "", RPC_ERR_UNAUTHENTICATED},
        {401, NULL, NULL, RPC_ERR_UNAUTHENTICATED},
        {500, "unknown", "rpc error: code = Internal desc = pick task: runner has been removed",
         RPC_ERR_UNAUTHENTICATED},
        /* Declare on Gitea < 1.21, unknown procedure paths. */
        {501, "unimplemented", "runner.v1.RunnerService.Declare is not implemented",
         RPC_ERR_NOT_FOUND},
        {404, NULL, NULL, RPC_ERR_NOT_FOUND},
        {404, "not_found", "x", RPC_ERR_NOT_FOUND},
        {500, "unknown", "rpc error: code = Internal desc = update task: resource does not exist",
         RPC_ERR_NOT_FOUND},
        {500, "unknown", "rpc error: code = NotFound desc = task", RPC_ERR_NOT_FOUND},
        /* Transient. */
        {0, NULL, "connection refused", RPC_ERR_UNAVAILABLE},
        {503, "unavailable", "", RPC_ERR_UNAVAILABLE},
        {502, NULL, NULL, RPC_ERR_UNAVAILABLE},
        {504, NULL, NULL, RPC_ERR_UNAVAILABLE},
        {429, NULL, NULL, RPC_ERR_UNAVAILABLE},
        {504, "deadline_exceeded", "", RPC_ERR_UNAVAILABLE},
        {429, "resource_exhausted", "", RPC_ERR_UNAVAILABLE},
        {500, "unknown", "rpc error: code = Internal desc = query tasks version failed: db",
         RPC_ERR_UNAVAILABLE},
        {500, "unknown", "rpc error: code = Internal desc = update task: load job: x",
         RPC_ERR_UNAVAILABLE},
        {500, "unknown", "rpc error: code = Unavailable desc = x", RPC_ERR_UNAVAILABLE},
        /* Permanent. */
        {500, "unknown", "rpc error: code = Internal desc = update task: invalid runner for task",
         RPC_ERR_OTHER},
        {500, "unknown", "rpc error: code = AlreadyExists desc = log file has been archived",
         RPC_ERR_OTHER},
        {500, "unknown", "runner registration token not found", RPC_ERR_OTHER},
        {500, "unknown", "missing runner token, name", RPC_ERR_OTHER},
        {400, "invalid_argument", "bad json", RPC_ERR_OTHER},
        {415, NULL, NULL, RPC_ERR_OTHER},
        {403, "permission_denied", "", RPC_ERR_OTHER},
        {500, NULL, NULL, RPC_ERR_OTHER},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum rpc_errclass c = rpc_error_class(cases[i].status, cases[i].code, cases[i].message);
        if (c != cases[i].cls)
            test_fail(__FILE__, __LINE__, "case %zu (%d %s \"%s\"): %s, expected %s", i,
                      cases[i].status, cases[i].code ? cases[i].code : "(null)",
                      cases[i].message ? cases[i].message : "", rpc_errclass_name(c),
                      rpc_errclass_name(cases[i].cls));
    }
    ASSERT_STR_EQ(rpc_errclass_name(RPC_ERR_OTHER), "other");
}

/* A field path too long for the message (a huge map key) is cut in the middle, and the
 * message still ends with what went wrong (found by fuzz-rpc). */
TEST(long_path_keeps_the_reason)
{
    char key[400];
    struct rpc_task t;
    struct err e = {0};

    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    json_t *j = json_pack("{s:{s:i}}", "needs", key, 7);
    ASSERT(j != NULL);
    ASSERT(rpc_decode(&rpc_task_type, j, &t, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "...");
    ASSERT_STR_CONTAINS(e.msg, ": expected");
    ASSERT(strncmp(e.msg, "Task.needs[\"kkk", 15) == 0);
    json_decref(j);
}
