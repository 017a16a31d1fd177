/* rpc.h: the Gitea runner protocol messages (runner.v1, ping.v1) and their Connect JSON form
 * (Gitea's runner protocol: proto/runner.proto, proto/ping.proto).
 *
 * Pure encode/decode, no I/O. Every message is a plain C struct described by a const
 * struct rpc_type; the generic functions below take the type and a pointer to the struct:
 *
 *     struct rpc_fetch_task_response r;
 *     if (rpc_decode_body(&rpc_fetch_task_response_type, body, len, &r, e) < 0) ...
 *     ... r.task ? r.task->id : 0 ...
 *     rpc_clear(&rpc_fetch_task_response_type, &r);
 *
 * JSON rules (ProtoJSON as Gitea's connect-go speaks it): output uses lowerCamelCase names,
 * omits default values, writes int64 as strings, enums by name, timestamps as RFC 3339 UTC
 * with 0, 3, 6 or 9 fractional digits, bytes as padded standard base64. Input accepts camel
 * or snake_case names, int64 as string or number, enums by name or number, any timestamp
 * offset, standard or URL-safe base64 with or without padding; unknown members are ignored,
 * missing members and null take the default. A malformed body fails with ERR_PROTO and a
 * message naming the field: "FetchTaskResponse.task.id: expected an int64". */
#ifndef RPC_H
#define RPC_H

#include "runner/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Connect procedure paths, appended to the base URL (doc/gitea-protocol.md §1.2). */
#define RPC_PATH_PING "/ping.v1.PingService/Ping"
#define RPC_PATH_REGISTER "/runner.v1.RunnerService/Register"
#define RPC_PATH_DECLARE "/runner.v1.RunnerService/Declare"
#define RPC_PATH_FETCH_TASK "/runner.v1.RunnerService/FetchTask"
#define RPC_PATH_UPDATE_TASK "/runner.v1.RunnerService/UpdateTask"
#define RPC_PATH_UPDATE_LOG "/runner.v1.RunnerService/UpdateLog"

/* runner.v1.Result. Decoded numbers outside this list are kept as they are (open enum). */
enum rpc_result {
    RPC_RESULT_UNSPECIFIED = 0,
    RPC_RESULT_SUCCESS = 1,
    RPC_RESULT_FAILURE = 2,
    RPC_RESULT_CANCELLED = 3,
    RPC_RESULT_SKIPPED = 4,
};

/* runner.v1.RunnerStatus (never filled by Gitea). */
enum rpc_runner_status {
    RPC_RUNNER_STATUS_UNSPECIFIED = 0,
    RPC_RUNNER_STATUS_IDLE = 1,
    RPC_RUNNER_STATUS_ACTIVE = 2,
    RPC_RUNNER_STATUS_OFFLINE = 3,
};

/* repeated string */
struct rpc_strv {
    char **v;
    size_t n;
};

/* map<string,string>, in JSON member order */
struct rpc_pair {
    char *key;
    char *value;
};
struct rpc_map {
    struct rpc_pair *v;
    size_t n;
};

/* optional bytes: set distinguishes "absent" from "present and empty" */
struct rpc_bytes {
    uint8_t *p;
    size_t len;
    bool set;
};

/* google.protobuf.Timestamp: seconds since the Unix epoch (UTC) and 0..999999999 nanos;
 * unset when !set. Encoding needs 0001-01-01 <= time <= 9999-12-31 (asserted). */
struct rpc_time {
    int64_t sec;
    int32_t nsec;
    bool set;
};

/* ping.v1 */
struct rpc_ping_request {
    char *data;
};
struct rpc_ping_response {
    char *data;
};

/* runner.v1.Runner */
struct rpc_runner {
    int64_t id;
    char *uuid;
    char *token;
    char *name;
    int status; /* enum rpc_runner_status */
    struct rpc_strv agent_labels; /* deprecated */
    struct rpc_strv custom_labels; /* deprecated */
    char *version;
    struct rpc_strv labels;
    bool ephemeral;
};

struct rpc_register_request {
    char *name;
    char *token;
    struct rpc_strv agent_labels; /* deprecated, read by Gitea 1.19-1.21 */
    struct rpc_strv custom_labels; /* deprecated, read by Gitea 1.19/1.20 */
    char *version;
    struct rpc_strv labels;
    bool ephemeral;
};
struct rpc_register_response {
    struct rpc_runner *runner; /* NULL when absent */
};

struct rpc_declare_request {
    char *version;
    struct rpc_strv labels;
};
struct rpc_declare_response {
    struct rpc_runner *runner;
};

struct rpc_fetch_task_request {
    int64_t tasks_version;
};

/* runner.v1.TaskNeed and one entry of map<string,TaskNeed> */
struct rpc_task_need {
    struct rpc_map outputs;
    int result; /* enum rpc_result */
};
struct rpc_need {
    char *key; /* job id */
    struct rpc_task_need value;
};

/* runner.v1.Task */
struct rpc_task {
    int64_t id;
    struct rpc_bytes workflow_payload; /* optional */
    json_t *context;                   /* optional Struct (a JSON object); NULL when unset */
    struct rpc_map secrets;
    char *machine; /* deprecated, never set */
    struct rpc_need *needs;
    size_t n_needs;
    struct rpc_map vars;
};

struct rpc_fetch_task_response {
    struct rpc_task *task; /* NULL: no task assigned */
    int64_t tasks_version;
};

struct rpc_step_state {
    int64_t id;
    int result; /* enum rpc_result */
    struct rpc_time started_at;
    struct rpc_time stopped_at;
    int64_t log_index;
    int64_t log_length;
};

struct rpc_task_state {
    int64_t id;
    int result; /* enum rpc_result */
    struct rpc_time started_at;
    struct rpc_time stopped_at;
    struct rpc_step_state *steps;
    size_t n_steps;
};

struct rpc_update_task_request {
    struct rpc_task_state *state;
    struct rpc_map outputs;
};
struct rpc_update_task_response {
    struct rpc_task_state *state; /* only id and result filled by Gitea */
    struct rpc_strv sent_outputs;
};

struct rpc_log_row {
    struct rpc_time time;
    char *content; /* encoded as UTF-8; invalid sequences become U+FFFD */
};

struct rpc_update_log_request {
    int64_t task_id;
    int64_t index;
    struct rpc_log_row *rows;
    size_t n_rows;
    bool no_more;
};
struct rpc_update_log_response {
    int64_t ack_index;
};

/* Message descriptors (opaque). */
struct rpc_type;
extern const struct rpc_type rpc_ping_request_type, rpc_ping_response_type;
extern const struct rpc_type rpc_runner_type;
extern const struct rpc_type rpc_register_request_type, rpc_register_response_type;
extern const struct rpc_type rpc_declare_request_type, rpc_declare_response_type;
extern const struct rpc_type rpc_fetch_task_request_type, rpc_fetch_task_response_type;
extern const struct rpc_type rpc_task_type, rpc_task_need_type;
extern const struct rpc_type rpc_task_state_type, rpc_step_state_type;
extern const struct rpc_type rpc_update_task_request_type, rpc_update_task_response_type;
extern const struct rpc_type rpc_log_row_type;
extern const struct rpc_type rpc_update_log_request_type, rpc_update_log_response_type;

/* The message's protobuf name, e.g. "FetchTaskResponse". */
const char *rpc_type_name(const struct rpc_type *t);
/* The size of the C struct of type t (to allocate a message of a type known at run time). */
size_t rpc_type_size(const struct rpc_type *t);

/* Encodes msg (a struct of type t; only read). Returns a new JSON object; json_decref() it. */
json_t *rpc_encode(const struct rpc_type *t, const void *msg);

/* rpc_encode() as a compact JSON text. Returns a new string; free() it. */
char *rpc_encode_body(const struct rpc_type *t, const void *msg);

/* Decodes j into *msg (overwritten; zeroed first). On success the caller owns the contents
 * and frees them with rpc_clear(); on failure *msg is left cleared and e names the field.
 * Returns 0 or ERR_PROTO. j is only read. */
int rpc_decode(const struct rpc_type *t, const json_t *j, void *msg, struct err *e);

/* Parses a response body (len bytes, need not be NUL-terminated) and decodes it as t.
 * A body that is not a JSON object is ERR_PROTO too. Same ownership as rpc_decode(). */
int rpc_decode_body(const struct rpc_type *t, const char *body, size_t len, void *msg,
                    struct err *e);

/* Frees what a decoded message owns and zeroes it; the struct itself is the caller's.
 * Also usable on a message built by hand from heap memory (xstrdup etc.). NULL does nothing. */
void rpc_clear(const struct rpc_type *t, void *msg);

/* Field-by-field equality of two messages of type t (maps compared as sets, Struct with
 * json_equal()). */
bool rpc_equal(const struct rpc_type *t, const void *a, const void *b);

/* Enum names: "RESULT_SUCCESS" etc.; NULL for a number outside the enum. */
const char *rpc_result_name(int result);
const char *rpc_runner_status_name(int status);

/* RFC 3339 timestamps as ProtoJSON writes and reads them. rpc_time_format() writes at most
 * RPC_TIME_MAX bytes including the NUL; rpc_time_parse() returns 0 or ERR_PROTO. */
#define RPC_TIME_MAX 40
void rpc_time_format(const struct rpc_time *t, char buf[RPC_TIME_MAX]);
int rpc_time_parse(const char *s, struct rpc_time *out);

/* ---- Errors (doc/gitea-protocol.md §1.5) --------------------------------------------- */

/* A failed call: the Connect error body, or the code derived from the HTTP status when the
 * body is not one (connect-go's httpToCode). */
struct rpc_error {
    int status;      /* HTTP status; 0 when the request never got a response */
    char *code;      /* Connect code name, e.g. "unknown", "unimplemented" */
    char *message;   /* "" when absent */
    bool connect;    /* the body was a Connect JSON error */
};

/* Fills *out from an HTTP status and body (len bytes; may be NULL/0). Never fails. The
 * caller frees with rpc_error_clear(). */
void rpc_error_decode(int status, const char *body, size_t len, struct rpc_error *out);
void rpc_error_clear(struct rpc_error *er);

/* The Connect code a client derives from a bare HTTP status (400 -> "internal", ...). */
const char *rpc_code_from_status(int status);

enum rpc_errclass {
    RPC_ERR_OTHER = 0,
    RPC_ERR_UNAUTHENTICATED, /* unregistered runner (or a removed one): stop, re-register */
    RPC_ERR_NOT_FOUND,       /* procedure not implemented here (old Gitea) or object gone */
    RPC_ERR_UNAVAILABLE,     /* transient: retry with backoff */
};

/* Classifies a failed call from its HTTP status (0 = transport failure), Connect code
 * (NULL: derived from status) and message (NULL = ""). Gitea sends most errors as HTTP 500
 * code "unknown" with a gRPC-style message, so the message is inspected too. */
enum rpc_errclass rpc_error_class(int status, const char *code, const char *message);

/* "unauthenticated", "not found", "unavailable", "other". */
const char *rpc_errclass_name(enum rpc_errclass c);

#endif
