/* fuzz-rpc.c: libFuzzer target for the Connect JSON codec (proto/rpc.c). The input is parsed
 * once with jansson and decoded as every message type; whatever decodes must encode, decode
 * again to an equal message, and encode to the same JSON. The bytes also go through the error
 * body decoder and classifier. Everything is freed, so LeakSanitizer catches leaks. */
#include "rpc.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct rpc_type *const types[] = {
    &rpc_ping_request_type,        &rpc_ping_response_type,
    &rpc_register_request_type,    &rpc_register_response_type,
    &rpc_declare_request_type,     &rpc_declare_response_type,
    &rpc_fetch_task_request_type,  &rpc_fetch_task_response_type,
    &rpc_update_task_request_type, &rpc_update_task_response_type,
    &rpc_update_log_request_type,  &rpc_update_log_response_type,
    &rpc_task_type,                &rpc_runner_type,
};

/* Large enough for any message struct. */
union any_msg {
    struct rpc_fetch_task_response a;
    struct rpc_task b;
    struct rpc_runner c;
    struct rpc_update_log_request d;
    struct rpc_update_task_request e;
    struct rpc_register_request f;
    struct rpc_task_state g;
};

static void
check(const struct rpc_type *t, const json_t *j)
{
    union any_msg m1, m2;
    struct err e;
    json_t *j1, *j2;

    if (rpc_decode(t, j, &m1, &e) < 0) {
        if (strchr(e.msg, ':') == NULL) {
            fprintf(stderr, "decode error without a field path: %s\n", e.msg);
            abort(); /* every decode error names where it happened */
        }
        return;
    }
    j1 = rpc_encode(t, &m1);
    if (rpc_decode(t, j1, &m2, &e) < 0 || !rpc_equal(t, &m1, &m2))
        abort();
    j2 = rpc_encode(t, &m2);
    if (!json_equal(j1, j2))
        abort();
    json_decref(j1);
    json_decref(j2);
    rpc_clear(t, &m1);
    rpc_clear(t, &m2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    struct rpc_error er;

    if (j) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            check(types[i], j);
        json_decref(j);
    }
    rpc_error_decode(size ? 500 : 503, (const char *)data, size, &er);
    (void)rpc_errclass_name(rpc_error_class(er.status, er.code, er.message));
    rpc_error_clear(&er);
    return 0;
}
