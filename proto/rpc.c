/* rpc.c: runner.v1/ping.v1 messages <-> Connect JSON (see rpc.h). Table-driven: each message
 * is a list of field descriptors, and one encoder, decoder, destructor and comparison walk it. */
#include "rpc.h"

#include "runner/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================================ tables */

enum kind {
    K_STRING, /* char * */
    K_INT64,  /* int64_t */
    K_BOOL,   /* bool */
    K_ENUM,   /* int */
    K_BYTES,  /* struct rpc_bytes (optional bytes) */
    K_TIME,   /* struct rpc_time */
    K_STRUCT, /* json_t * (google.protobuf.Struct) */
    K_STRV,   /* struct rpc_strv */
    K_MAP,    /* struct rpc_map */
    K_MSG,    /* pointer to sub message, NULL = unset */
    K_MSGV,   /* pointer to array of sub messages at off, size_t count at off2 */
    K_MSGMAP, /* array of {char *key; sub value at voff} of esize bytes at off, count at off2 */
};

struct enum_val {
    const char *name;
    int num;
};

struct enum_desc {
    const char *name;
    const struct enum_val *v;
    size_t n;
};

struct field {
    const char *name; /* proto (snake_case) name */
    const char *json; /* lowerCamelCase JSON name */
    enum kind kind;
    size_t off;
    size_t off2;
    const struct rpc_type *sub;
    const struct enum_desc *en;
    size_t esize, voff;
};

struct rpc_type {
    const char *name;
    size_t size;
    const struct field *f;
    size_t nf;
};

static const struct enum_val result_vals[] = {
    {"RESULT_UNSPECIFIED", 0}, {"RESULT_SUCCESS", 1}, {"RESULT_FAILURE", 2},
    {"RESULT_CANCELLED", 3},   {"RESULT_SKIPPED", 4},
};
static const struct enum_desc result_enum = {"Result", result_vals, 5};

static const struct enum_val status_vals[] = {
    {"RUNNER_STATUS_UNSPECIFIED", 0},
    {"RUNNER_STATUS_IDLE", 1},
    {"RUNNER_STATUS_ACTIVE", 2},
    {"RUNNER_STATUS_OFFLINE", 3},
};
static const struct enum_desc status_enum = {"RunnerStatus", status_vals, 4};

#define NF(a) (sizeof(a) / sizeof((a)[0]))
#define FLD(S, k, n, j, m) {.name = n, .json = j, .kind = k, .off = offsetof(S, m)}
#define FENUM(S, n, j, m, e) {.name = n, .json = j, .kind = K_ENUM, .off = offsetof(S, m), .en = e}
#define FMSG(S, n, j, m, t) {.name = n, .json = j, .kind = K_MSG, .off = offsetof(S, m), .sub = t}
#define FMSGV(S, n, j, m, cnt, t)                                                                  \
    {.name = n, .json = j, .kind = K_MSGV, .off = offsetof(S, m), .off2 = offsetof(S, cnt),        \
     .sub = t}
#define TYPE(var, pname, S, fields)                                                                \
    const struct rpc_type var = {.name = pname, .size = sizeof(S), .f = fields, .nf = NF(fields)}

static const struct field ping_request_f[] = {
    FLD(struct rpc_ping_request, K_STRING, "data", "data", data),
};
TYPE(rpc_ping_request_type, "PingRequest", struct rpc_ping_request, ping_request_f);

static const struct field ping_response_f[] = {
    FLD(struct rpc_ping_response, K_STRING, "data", "data", data),
};
TYPE(rpc_ping_response_type, "PingResponse", struct rpc_ping_response, ping_response_f);

static const struct field runner_f[] = {
    FLD(struct rpc_runner, K_INT64, "id", "id", id),
    FLD(struct rpc_runner, K_STRING, "uuid", "uuid", uuid),
    FLD(struct rpc_runner, K_STRING, "token", "token", token),
    FLD(struct rpc_runner, K_STRING, "name", "name", name),
    FENUM(struct rpc_runner, "status", "status", status, &status_enum),
    FLD(struct rpc_runner, K_STRV, "agent_labels", "agentLabels", agent_labels),
    FLD(struct rpc_runner, K_STRV, "custom_labels", "customLabels", custom_labels),
    FLD(struct rpc_runner, K_STRING, "version", "version", version),
    FLD(struct rpc_runner, K_STRV, "labels", "labels", labels),
    FLD(struct rpc_runner, K_BOOL, "ephemeral", "ephemeral", ephemeral),
};
TYPE(rpc_runner_type, "Runner", struct rpc_runner, runner_f);

static const struct field register_request_f[] = {
    FLD(struct rpc_register_request, K_STRING, "name", "name", name),
    FLD(struct rpc_register_request, K_STRING, "token", "token", token),
    FLD(struct rpc_register_request, K_STRV, "agent_labels", "agentLabels", agent_labels),
    FLD(struct rpc_register_request, K_STRV, "custom_labels", "customLabels", custom_labels),
    FLD(struct rpc_register_request, K_STRING, "version", "version", version),
    FLD(struct rpc_register_request, K_STRV, "labels", "labels", labels),
    FLD(struct rpc_register_request, K_BOOL, "ephemeral", "ephemeral", ephemeral),
};
TYPE(rpc_register_request_type, "RegisterRequest", struct rpc_register_request,
     register_request_f);

static const struct field register_response_f[] = {
    FMSG(struct rpc_register_response, "runner", "runner", runner, &rpc_runner_type),
};
TYPE(rpc_register_response_type, "RegisterResponse", struct rpc_register_response,
     register_response_f);

static const struct field declare_request_f[] = {
    FLD(struct rpc_declare_request, K_STRING, "version", "version", version),
    FLD(struct rpc_declare_request, K_STRV, "labels", "labels", labels),
};
TYPE(rpc_declare_request_type, "DeclareRequest", struct rpc_declare_request, declare_request_f);

static const struct field declare_response_f[] = {
    FMSG(struct rpc_declare_response, "runner", "runner", runner, &rpc_runner_type),
};
TYPE(rpc_declare_response_type, "DeclareResponse", struct rpc_declare_response,
     declare_response_f);

static const struct field fetch_task_request_f[] = {
    FLD(struct rpc_fetch_task_request, K_INT64, "tasks_version", "tasksVersion", tasks_version),
};
TYPE(rpc_fetch_task_request_type, "FetchTaskRequest", struct rpc_fetch_task_request,
     fetch_task_request_f);

static const struct field task_need_f[] = {
    FLD(struct rpc_task_need, K_MAP, "outputs", "outputs", outputs),
    FENUM(struct rpc_task_need, "result", "result", result, &result_enum),
};
TYPE(rpc_task_need_type, "TaskNeed", struct rpc_task_need, task_need_f);

static const struct field task_f[] = {
    FLD(struct rpc_task, K_INT64, "id", "id", id),
    FLD(struct rpc_task, K_BYTES, "workflow_payload", "workflowPayload", workflow_payload),
    FLD(struct rpc_task, K_STRUCT, "context", "context", context),
    FLD(struct rpc_task, K_MAP, "secrets", "secrets", secrets),
    FLD(struct rpc_task, K_STRING, "machine", "machine", machine),
    {.name = "needs", .json = "needs", .kind = K_MSGMAP, .off = offsetof(struct rpc_task, needs),
     .off2 = offsetof(struct rpc_task, n_needs), .sub = &rpc_task_need_type,
     .esize = sizeof(struct rpc_need), .voff = offsetof(struct rpc_need, value)},
    FLD(struct rpc_task, K_MAP, "vars", "vars", vars),
};
TYPE(rpc_task_type, "Task", struct rpc_task, task_f);

static const struct field fetch_task_response_f[] = {
    FMSG(struct rpc_fetch_task_response, "task", "task", task, &rpc_task_type),
    FLD(struct rpc_fetch_task_response, K_INT64, "tasks_version", "tasksVersion", tasks_version),
};
TYPE(rpc_fetch_task_response_type, "FetchTaskResponse", struct rpc_fetch_task_response,
     fetch_task_response_f);

static const struct field step_state_f[] = {
    FLD(struct rpc_step_state, K_INT64, "id", "id", id),
    FENUM(struct rpc_step_state, "result", "result", result, &result_enum),
    FLD(struct rpc_step_state, K_TIME, "started_at", "startedAt", started_at),
    FLD(struct rpc_step_state, K_TIME, "stopped_at", "stoppedAt", stopped_at),
    FLD(struct rpc_step_state, K_INT64, "log_index", "logIndex", log_index),
    FLD(struct rpc_step_state, K_INT64, "log_length", "logLength", log_length),
};
TYPE(rpc_step_state_type, "StepState", struct rpc_step_state, step_state_f);

static const struct field task_state_f[] = {
    FLD(struct rpc_task_state, K_INT64, "id", "id", id),
    FENUM(struct rpc_task_state, "result", "result", result, &result_enum),
    FLD(struct rpc_task_state, K_TIME, "started_at", "startedAt", started_at),
    FLD(struct rpc_task_state, K_TIME, "stopped_at", "stoppedAt", stopped_at),
    FMSGV(struct rpc_task_state, "steps", "steps", steps, n_steps, &rpc_step_state_type),
};
TYPE(rpc_task_state_type, "TaskState", struct rpc_task_state, task_state_f);

static const struct field update_task_request_f[] = {
    FMSG(struct rpc_update_task_request, "state", "state", state, &rpc_task_state_type),
    FLD(struct rpc_update_task_request, K_MAP, "outputs", "outputs", outputs),
};
TYPE(rpc_update_task_request_type, "UpdateTaskRequest", struct rpc_update_task_request,
     update_task_request_f);

static const struct field update_task_response_f[] = {
    FMSG(struct rpc_update_task_response, "state", "state", state, &rpc_task_state_type),
    FLD(struct rpc_update_task_response, K_STRV, "sent_outputs", "sentOutputs", sent_outputs),
};
TYPE(rpc_update_task_response_type, "UpdateTaskResponse", struct rpc_update_task_response,
     update_task_response_f);

static const struct field log_row_f[] = {
    FLD(struct rpc_log_row, K_TIME, "time", "time", time),
    FLD(struct rpc_log_row, K_STRING, "content", "content", content),
};
TYPE(rpc_log_row_type, "LogRow", struct rpc_log_row, log_row_f);

static const struct field update_log_request_f[] = {
    FLD(struct rpc_update_log_request, K_INT64, "task_id", "taskId", task_id),
    FLD(struct rpc_update_log_request, K_INT64, "index", "index", index),
    FMSGV(struct rpc_update_log_request, "rows", "rows", rows, n_rows, &rpc_log_row_type),
    FLD(struct rpc_update_log_request, K_BOOL, "no_more", "noMore", no_more),
};
TYPE(rpc_update_log_request_type, "UpdateLogRequest", struct rpc_update_log_request,
     update_log_request_f);

static const struct field update_log_response_f[] = {
    FLD(struct rpc_update_log_response, K_INT64, "ack_index", "ackIndex", ack_index),
};
TYPE(rpc_update_log_response_type, "UpdateLogResponse", struct rpc_update_log_response,
     update_log_response_f);

const char *
rpc_type_name(const struct rpc_type *t)
{
    return t->name;
}

size_t
rpc_type_size(const struct rpc_type *t)
{
    return t->size;
}

static const char *
enum_name(const struct enum_desc *en, int v)
{
    for (size_t i = 0; i < en->n; i++)
        if (en->v[i].num == v)
            return en->v[i].name;
    return NULL;
}

const char *
rpc_result_name(int result)
{
    return enum_name(&result_enum, result);
}

const char *
rpc_runner_status_name(int status)
{
    return enum_name(&status_enum, status);
}

/* Pointers stored in messages are read and written through memcpy, so one walker serves
 * every pointer type without type-punned lvalues. */
static void *
get_ptr(const void *p)
{
    void *v;

    memcpy(&v, p, sizeof v);
    return v;
}

static void
put_ptr(void *p, void *v)
{
    memcpy(p, &v, sizeof v);
}

#define AT(msg, off) ((char *)(msg) + (off))
#define CAT(msg, off) ((const char *)(msg) + (off))

/* ============================================================================ timestamps */

/* Days since 1970-01-01 of a proleptic Gregorian date (era-based civil calendar arithmetic). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;

    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range ProtoJSON allows. */
#define TIME_MIN_SEC (-62135596800LL)
#define TIME_MAX_SEC (253402300799LL)

void
rpc_time_format(const struct rpc_time *t, char buf[RPC_TIME_MAX])
{
    int64_t days, secs, y;
    int m, d;

    assert(t->nsec >= 0 && t->nsec < 1000000000);
    assert(t->sec >= TIME_MIN_SEC && t->sec <= TIME_MAX_SEC);
    days = t->sec / 86400;
    secs = t->sec % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    int n = snprintf(buf, RPC_TIME_MAX, "%04d-%02d-%02dT%02d:%02d:%02d", (int)y, m, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    if (t->nsec == 0)
        snprintf(buf + n, (size_t)(RPC_TIME_MAX - n), "Z");
    else if (t->nsec % 1000000 == 0)
        snprintf(buf + n, (size_t)(RPC_TIME_MAX - n), ".%03dZ", (int)(t->nsec / 1000000));
    else if (t->nsec % 1000 == 0)
        snprintf(buf + n, (size_t)(RPC_TIME_MAX - n), ".%06dZ", (int)(t->nsec / 1000));
    else
        snprintf(buf + n, (size_t)(RPC_TIME_MAX - n), ".%09dZ", (int)t->nsec);
}

/* Reads exactly n decimal digits. */
static int
digits(const char **s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

int
rpc_time_parse(const char *s, struct rpc_time *out)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, nsec = 0, oh = 0, om = 0, sign = 0;

    if (digits(&s, 4, &y) < 0 || *s++ != '-' || digits(&s, 2, &mo) < 0 || *s++ != '-' ||
        digits(&s, 2, &d) < 0 || (*s != 'T' && *s != 't'))
        return ERR_PROTO;
    s++;
    if (digits(&s, 2, &h) < 0 || *s++ != ':' || digits(&s, 2, &mi) < 0 || *s++ != ':' ||
        digits(&s, 2, &sec) < 0)
        return ERR_PROTO;
    if (*s == '.') {
        int n = 0;
        s++;
        while (*s >= '0' && *s <= '9') {
            if (++n > 9)
                return ERR_PROTO;
            nsec = nsec * 10 + (*s++ - '0');
        }
        if (n == 0)
            return ERR_PROTO;
        for (; n < 9; n++)
            nsec *= 10;
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '+' ? 1 : -1;
        if (digits(&s, 2, &oh) < 0 || *s++ != ':' || digits(&s, 2, &om) < 0 || oh > 23 ||
            om > 59)
            return ERR_PROTO;
    } else {
        return ERR_PROTO;
    }
    if (*s != '\0')
        return ERR_PROTO;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return ERR_PROTO;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return ERR_PROTO;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= (int64_t)sign * (oh * 3600 + om * 60);
    if (t < TIME_MIN_SEC || t > TIME_MAX_SEC)
        return ERR_PROTO;
    out->sec = t;
    out->nsec = nsec;
    out->set = true;
    return 0;
}

/* ================================================================================ base64 */

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *
b64_encode(const uint8_t *p, size_t len)
{
    char *out = xmalloc((len + 2) / 3 * 4 + 1), *o = out;
    size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64std[v >> 18];
        *o++ = b64std[v >> 12 & 63];
        *o++ = b64std[v >> 6 & 63];
        *o++ = b64std[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = b64std[v >> 18];
        *o++ = b64std[v >> 12 & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = b64std[v >> 18];
        *o++ = b64std[v >> 12 & 63];
        *o++ = b64std[v >> 6 & 63];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int
b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe alphabet, padded or not. */
static int
b64_decode(const char *s, size_t len, struct rpc_bytes *out)
{
    size_t pad = 0;
    uint8_t *buf, *o;
    uint32_t acc = 0;
    int nacc = 0;

    if (len % 4 == 0 && len >= 1 && s[len - 1] == '=')
        pad = len >= 2 && s[len - 2] == '=' ? 2 : 1;
    len -= pad;
    if (len % 4 == 1)
        return ERR_PROTO;
    if (pad && (len % 4) + pad != 4)
        return ERR_PROTO;
    o = buf = xmalloc(len / 4 * 3 + 3);
    for (size_t i = 0; i < len; i++) {
        int v = b64_val(s[i]);
        if (v < 0) {
            free(buf);
            return ERR_PROTO;
        }
        acc = acc << 6 | (uint32_t)v;
        if (++nacc == 4) {
            *o++ = (uint8_t)(acc >> 16);
            *o++ = (uint8_t)(acc >> 8);
            *o++ = (uint8_t)acc;
            acc = 0;
            nacc = 0;
        }
    }
    if (nacc == 2) {
        *o++ = (uint8_t)(acc >> 4);
    } else if (nacc == 3) {
        *o++ = (uint8_t)(acc >> 10);
        *o++ = (uint8_t)(acc >> 2);
    }
    out->p = buf;
    out->len = (size_t)(o - buf);
    out->set = true;
    return 0;
}

/* ================================================================================ encode */

/* A JSON string for s; invalid UTF-8 becomes U+FFFD (proto3 strings must be valid UTF-8). */
static json_t *
str_json(const char *s)
{
    json_t *j = json_string(s);
    size_t n = strlen(s), o = 0;
    char *fixed;

    if (j)
        return j;
    fixed = xmalloc(n * 3 + 1);
    for (size_t i = 0; i < n;) {
        const unsigned char *u = (const unsigned char *)s + i;
        size_t len = 0;
        uint32_t cp = 0;
        if (u[0] < 0x80) {
            len = 1;
            cp = u[0];
        } else if (u[0] >= 0xC2 && u[0] <= 0xDF) {
            len = 2;
            cp = u[0] & 0x1F;
        } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
            len = 3;
            cp = u[0] & 0x0F;
        } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
            len = 4;
            cp = u[0] & 0x07;
        }
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) {
            if ((u[k] & 0xC0) != 0x80)
                ok = false;
            else
                cp = cp << 6 | (u[k] & 0x3F);
        }
        if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
                   (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
            ok = false;
        if (ok) {
            memcpy(fixed + o, u, len);
            o += len;
            i += len;
        } else {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    fixed[o] = '\0';
    j = json_string(fixed);
    free(fixed);
    if (!j)
        abort(); /* only out of memory is left */
    return j;
}

static json_t *
int64_json(int64_t v)
{
    char buf[24];

    snprintf(buf, sizeof buf, "%" PRId64, v);
    return json_string(buf);
}

static json_t *
map_json(const struct rpc_map *m)
{
    json_t *o = json_object();

    for (size_t i = 0; i < m->n; i++)
        json_object_set_new(o, m->v[i].key ? m->v[i].key : "",
                            str_json(m->v[i].value ? m->v[i].value : ""));
    return o;
}

/* The JSON value of one field, or NULL when it holds the default (and is omitted). */
static json_t *
field_json(const struct field *f, const void *msg)
{
    const char *p = CAT(msg, f->off);

    switch (f->kind) {
    case K_STRING: {
        const char *s = get_ptr(p);
        return s && *s ? str_json(s) : NULL;
    }
    case K_INT64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return v ? int64_json(v) : NULL;
    }
    case K_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        return v ? json_true() : NULL;
    }
    case K_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        if (v == 0)
            return NULL;
        const char *name = enum_name(f->en, v);
        return name ? json_string(name) : json_integer(v);
    }
    case K_BYTES: {
        const struct rpc_bytes *b = (const struct rpc_bytes *)(const void *)p;
        if (!b->set)
            return NULL;
        char *s = b64_encode(b->p, b->len);
        json_t *j = json_string(s);
        free(s);
        return j;
    }
    case K_TIME: {
        const struct rpc_time *t = (const struct rpc_time *)(const void *)p;
        char buf[RPC_TIME_MAX];
        if (!t->set)
            return NULL;
        rpc_time_format(t, buf);
        return json_string(buf);
    }
    case K_STRUCT: {
        json_t *j = get_ptr(p);
        return j ? json_incref(j) : NULL;
    }
    case K_STRV: {
        const struct rpc_strv *v = (const struct rpc_strv *)(const void *)p;
        if (v->n == 0)
            return NULL;
        json_t *a = json_array();
        for (size_t i = 0; i < v->n; i++)
            json_array_append_new(a, str_json(v->v[i] ? v->v[i] : ""));
        return a;
    }
    case K_MAP: {
        const struct rpc_map *m = (const struct rpc_map *)(const void *)p;
        return m->n ? map_json(m) : NULL;
    }
    case K_MSG: {
        const void *sub = get_ptr(p);
        return sub ? rpc_encode(f->sub, sub) : NULL;
    }
    case K_MSGV: {
        const char *arr = get_ptr(p);
        size_t n;
        memcpy(&n, CAT(msg, f->off2), sizeof n);
        if (n == 0)
            return NULL;
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, rpc_encode(f->sub, arr + i * f->sub->size));
        return a;
    }
    case K_MSGMAP: {
        const char *arr = get_ptr(p);
        size_t n;
        memcpy(&n, CAT(msg, f->off2), sizeof n);
        if (n == 0)
            return NULL;
        json_t *o = json_object();
        for (size_t i = 0; i < n; i++) {
            const char *e = arr + i * f->esize;
            const char *key = get_ptr(e);
            json_object_set_new(o, key ? key : "", rpc_encode(f->sub, e + f->voff));
        }
        return o;
    }
    }
    abort();
}

json_t *
rpc_encode(const struct rpc_type *t, const void *msg)
{
    json_t *o = json_object();

    for (size_t i = 0; i < t->nf; i++) {
        json_t *v = field_json(&t->f[i], msg);
        if (v)
            json_object_set_new(o, t->f[i].json, v);
    }
    return o;
}

char *
rpc_encode_body(const struct rpc_type *t, const void *msg)
{
    json_t *j = rpc_encode(t, msg);
    char *s = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    if (!s)
        abort();
    return s;
}

/* ================================================================================ decode */

/* The field path for messages, "FetchTaskResponse.task.id"; grows and shrinks as the
 * decoder descends. */
struct path {
    char buf[512];
    size_t len;
};

/* Appends the strings a, b, c (c may be NULL) to the path; returns the old length. */
static size_t
path_push(struct path *p, const char *a, const char *b, const char *c)
{
    size_t old = p->len;
    int n = snprintf(p->buf + p->len, sizeof p->buf - p->len, "%s%s%s", a, b, c ? c : "");

    if (n > 0)
        p->len += (size_t)n < sizeof p->buf - p->len ? (size_t)n : sizeof p->buf - p->len - 1;
    return old;
}

static size_t
path_index(struct path *p, size_t i)
{
    size_t old = p->len;
    int n = snprintf(p->buf + p->len, sizeof p->buf - p->len, "[%zu]", i);

    if (n > 0)
        p->len += (size_t)n < sizeof p->buf - p->len ? (size_t)n : sizeof p->buf - p->len - 1;
    return old;
}

static void
path_pop(struct path *p, size_t old)
{
    p->len = old;
    p->buf[old] = '\0';
}

/* "path: what". A path too long for the message (a huge map key, say) is cut in the middle
 * with "...", so the message always ends with what went wrong. */
static int
fail(struct err *e, const struct path *p, const char *what)
{
    size_t room = sizeof e->msg - 1, wl = strlen(what);

    if (p->len + 2 + wl <= room)
        return err_set(e, ERR_PROTO, "%s: %s", p->buf, what);
    size_t keep = room > wl + 2 + 3 ? room - wl - 2 - 3 : 0; /* path bytes that fit */
    size_t head = keep / 2, tail = keep - head;
    return err_set(e, ERR_PROTO, "%.*s...%s: %s", (int)head, p->buf, p->buf + p->len - tail, what);
}

static int decode_msg(const struct rpc_type *t, const json_t *j, void *msg, struct path *p,
                      struct err *e);

static int
dec_string(const json_t *j, char **out, struct path *p, struct err *e)
{
    if (!json_is_string(j))
        return fail(e, p, "expected a string");
    const char *s = json_string_value(j);
    if (strlen(s) != json_string_length(j))
        return fail(e, p, "string contains a NUL character");
    *out = xstrdup(s);
    return 0;
}

/* int64: a JSON string of decimal digits, or a JSON number with an integral value. */
static int
dec_int64(const json_t *j, int64_t *out, struct path *p, struct err *e)
{
    if (json_is_integer(j)) {
        *out = (int64_t)json_integer_value(j);
        return 0;
    }
    if (json_is_real(j)) {
        double d = json_real_value(j);
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return 0;
        }
        return fail(e, p, "expected an int64");
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        bool neg = *s == '-';
        uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (neg)
            s++;
        if (*s == '\0' || json_string_length(j) != strlen(json_string_value(j)))
            return fail(e, p, "expected an int64");
        for (; *s; s++) {
            if (*s < '0' || *s > '9')
                return fail(e, p, "expected an int64");
            unsigned dgt = (unsigned)(*s - '0');
            if (v > (lim - dgt) / 10)
                return fail(e, p, "expected an int64");
            v = v * 10 + dgt;
        }
        *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
        return 0;
    }
    return fail(e, p, "expected an int64");
}

static int
dec_enum(const struct enum_desc *en, const json_t *j, int *out, struct path *p, struct err *e)
{
    char what[96];

    if (json_is_string(j)) {
        for (size_t i = 0; i < en->n; i++) {
            if (strcmp(json_string_value(j), en->v[i].name) == 0) {
                *out = en->v[i].num;
                return 0;
            }
        }
    } else if (json_is_integer(j)) {
        json_int_t v = json_integer_value(j);
        if (v >= INT32_MIN && v <= INT32_MAX) {
            *out = (int)v;
            return 0;
        }
    }
    snprintf(what, sizeof what, "expected a %s name or number", en->name);
    return fail(e, p, what);
}

static int
dec_strv(const json_t *j, struct rpc_strv *out, struct path *p, struct err *e)
{
    size_t n, i;

    if (!json_is_array(j))
        return fail(e, p, "expected an array");
    n = json_array_size(j);
    out->v = xcalloc(n ? n : 1, sizeof *out->v);
    for (i = 0; i < n; i++) {
        size_t old = path_index(p, i);
        int rc = dec_string(json_array_get(j, i), &out->v[i], p, e);
        path_pop(p, old);
        if (rc < 0)
            return rc;
        out->n = i + 1;
    }
    return 0;
}

static int
dec_map(const json_t *j, struct rpc_map *out, struct path *p, struct err *e)
{
    const char *key;
    json_t *v;
    size_t i = 0;

    if (!json_is_object(j))
        return fail(e, p, "expected an object");
    out->v = xcalloc(json_object_size(j) + 1, sizeof *out->v);
    json_object_foreach((json_t *)(uintptr_t)j, key, v) {
        size_t old = path_push(p, "[\"", key, "\"]");
        out->v[i].key = xstrdup(key);
        out->n = ++i;
        int rc = dec_string(v, &out->v[i - 1].value, p, e);
        path_pop(p, old);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Decodes one present, non-null member into the field. */
static int
dec_field(const struct field *f, const json_t *j, void *msg, struct path *p, struct err *e)
{
    char *fp = AT(msg, f->off);

    switch (f->kind) {
    case K_STRING: {
        char *s = NULL;
        int rc = dec_string(j, &s, p, e);
        put_ptr(fp, s);
        return rc;
    }
    case K_INT64: {
        int64_t v = 0;
        int rc = dec_int64(j, &v, p, e);
        memcpy(fp, &v, sizeof v);
        return rc;
    }
    case K_BOOL: {
        if (!json_is_boolean(j))
            return fail(e, p, "expected a bool");
        bool v = json_is_true(j);
        memcpy(fp, &v, sizeof v);
        return 0;
    }
    case K_ENUM: {
        int v = 0;
        int rc = dec_enum(f->en, j, &v, p, e);
        memcpy(fp, &v, sizeof v);
        return rc;
    }
    case K_BYTES:
        if (!json_is_string(j) ||
            b64_decode(json_string_value(j), json_string_length(j), (struct rpc_bytes *)(void *)fp) <
                0)
            return fail(e, p, "expected base64");
        return 0;
    case K_TIME:
        if (!json_is_string(j) ||
            strlen(json_string_value(j)) != json_string_length(j) ||
            rpc_time_parse(json_string_value(j), (struct rpc_time *)(void *)fp) < 0)
            return fail(e, p, "expected an RFC 3339 timestamp");
        return 0;
    case K_STRUCT:
        if (!json_is_object(j))
            return fail(e, p, "expected an object");
        put_ptr(fp, json_deep_copy(j));
        return 0;
    case K_STRV:
        return dec_strv(j, (struct rpc_strv *)(void *)fp, p, e);
    case K_MAP:
        return dec_map(j, (struct rpc_map *)(void *)fp, p, e);
    case K_MSG: {
        void *sub = xcalloc(1, f->sub->size);
        put_ptr(fp, sub);
        return decode_msg(f->sub, j, sub, p, e);
    }
    case K_MSGV: {
        if (!json_is_array(j))
            return fail(e, p, "expected an array");
        size_t n = json_array_size(j);
        char *arr = xcalloc(n ? n : 1, f->sub->size);
        put_ptr(fp, arr);
        for (size_t i = 0; i < n; i++) {
            size_t old = path_index(p, i);
            memcpy(AT(msg, f->off2), &(size_t){i + 1}, sizeof(size_t));
            int rc = decode_msg(f->sub, json_array_get(j, i), arr + i * f->sub->size, p, e);
            path_pop(p, old);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    case K_MSGMAP: {
        const char *key;
        json_t *v;
        size_t i = 0;
        if (!json_is_object(j))
            return fail(e, p, "expected an object");
        char *arr = xcalloc(json_object_size(j) + 1, f->esize);
        put_ptr(fp, arr);
        json_object_foreach((json_t *)(uintptr_t)j, key, v) {
            char *ent = arr + i * f->esize;
            size_t old = path_push(p, "[\"", key, "\"]");
            put_ptr(ent, xstrdup(key));
            memcpy(AT(msg, f->off2), &(size_t){++i}, sizeof(size_t));
            int rc = decode_msg(f->sub, v, ent + f->voff, p, e);
            path_pop(p, old);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    }
    abort();
}

static int
decode_msg(const struct rpc_type *t, const json_t *j, void *msg, struct path *p, struct err *e)
{
    if (json_is_null(j))
        return 0;
    if (!json_is_object(j))
        return fail(e, p, "expected an object");
    for (size_t i = 0; i < t->nf; i++) {
        const struct field *f = &t->f[i];
        const json_t *v = json_object_get(j, f->json);
        if (!v)
            v = json_object_get(j, f->name);
        if (!v || json_is_null(v))
            continue;
        size_t old = path_push(p, ".", f->json, NULL);
        int rc = dec_field(f, v, msg, p, e);
        path_pop(p, old);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int
rpc_decode(const struct rpc_type *t, const json_t *j, void *msg, struct err *e)
{
    struct path p = {.len = 0};
    int rc;

    memset(msg, 0, t->size);
    path_push(&p, "", t->name, NULL);
    if (!json_is_object(j))
        return fail(e, &p, "expected an object");
    rc = decode_msg(t, j, msg, &p, e);
    if (rc < 0)
        rpc_clear(t, msg);
    return rc;
}

int
rpc_decode_body(const struct rpc_type *t, const char *body, size_t len, void *msg,
                struct err *e)
{
    json_error_t je;
    json_t *j;
    int rc;

    memset(msg, 0, t->size);
    j = json_loadb(body ? body : "", len, JSON_DECODE_ANY, &je);
    if (!j)
        return err_set(e, ERR_PROTO, "%s: invalid JSON at line %d column %d: %s", t->name,
                       je.line, je.column, je.text);
    rc = rpc_decode(t, j, msg, e);
    json_decref(j);
    return rc;
}

/* ================================================================================= clear */

static void
map_clear(struct rpc_map *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].key);
        free(m->v[i].value);
    }
    free(m->v);
}

void
rpc_clear(const struct rpc_type *t, void *msg)
{
    if (!msg)
        return;
    for (size_t i = 0; i < t->nf; i++) {
        const struct field *f = &t->f[i];
        char *p = AT(msg, f->off);
        switch (f->kind) {
        case K_STRING:
            free(get_ptr(p));
            break;
        case K_INT64:
        case K_BOOL:
        case K_ENUM:
        case K_TIME:
            break;
        case K_BYTES:
            free(((struct rpc_bytes *)(void *)p)->p);
            break;
        case K_STRUCT:
            json_decref(get_ptr(p));
            break;
        case K_STRV: {
            struct rpc_strv *v = (struct rpc_strv *)(void *)p;
            for (size_t k = 0; k < v->n; k++)
                free(v->v[k]);
            free(v->v);
            break;
        }
        case K_MAP:
            map_clear((struct rpc_map *)(void *)p);
            break;
        case K_MSG: {
            void *sub = get_ptr(p);
            rpc_clear(f->sub, sub);
            free(sub);
            break;
        }
        case K_MSGV: {
            char *arr = get_ptr(p);
            size_t n;
            memcpy(&n, AT(msg, f->off2), sizeof n);
            for (size_t k = 0; k < n; k++)
                rpc_clear(f->sub, arr + k * f->sub->size);
            free(arr);
            break;
        }
        case K_MSGMAP: {
            char *arr = get_ptr(p);
            size_t n;
            memcpy(&n, AT(msg, f->off2), sizeof n);
            for (size_t k = 0; k < n; k++) {
                char *ent = arr + k * f->esize;
                free(get_ptr(ent));
                rpc_clear(f->sub, ent + f->voff);
            }
            free(arr);
            break;
        }
        }
    }
    memset(msg, 0, t->size);
}

/* ================================================================================= equal */

static bool
str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static const char *
map_find(const struct rpc_map *m, const char *key)
{
    for (size_t i = m->n; i-- > 0;)
        if (str_eq(m->v[i].key, key))
            return m->v[i].value ? m->v[i].value : "";
    return NULL;
}

static bool
map_eq(const struct rpc_map *a, const struct rpc_map *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const char *v = map_find(b, a->v[i].key);
        if (!v || !str_eq(v, a->v[i].value))
            return false;
    }
    return true;
}

bool
rpc_equal(const struct rpc_type *t, const void *a, const void *b)
{
    for (size_t i = 0; i < t->nf; i++) {
        const struct field *f = &t->f[i];
        const char *pa = CAT(a, f->off), *pb = CAT(b, f->off);
        switch (f->kind) {
        case K_STRING:
            if (!str_eq(get_ptr(pa), get_ptr(pb)))
                return false;
            break;
        case K_INT64:
            if (memcmp(pa, pb, sizeof(int64_t)) != 0)
                return false;
            break;
        case K_BOOL: {
            bool x, y;
            memcpy(&x, pa, sizeof x);
            memcpy(&y, pb, sizeof y);
            if (x != y)
                return false;
            break;
        }
        case K_ENUM:
            if (memcmp(pa, pb, sizeof(int)) != 0)
                return false;
            break;
        case K_BYTES: {
            const struct rpc_bytes *x = (const void *)pa, *y = (const void *)pb;
            if (x->set != y->set || x->len != y->len || (x->len && memcmp(x->p, y->p, x->len)))
                return false;
            break;
        }
        case K_TIME: {
            const struct rpc_time *x = (const void *)pa, *y = (const void *)pb;
            if (x->set != y->set || (x->set && (x->sec != y->sec || x->nsec != y->nsec)))
                return false;
            break;
        }
        case K_STRUCT: {
            json_t *x = get_ptr(pa), *y = get_ptr(pb);
            if (!x != !y || (x && !json_equal(x, y)))
                return false;
            break;
        }
        case K_STRV: {
            const struct rpc_strv *x = (const void *)pa, *y = (const void *)pb;
            if (x->n != y->n)
                return false;
            for (size_t k = 0; k < x->n; k++)
                if (!str_eq(x->v[k], y->v[k]))
                    return false;
            break;
        }
        case K_MAP:
            if (!map_eq((const void *)pa, (const void *)pb))
                return false;
            break;
        case K_MSG: {
            const void *x = get_ptr(pa), *y = get_ptr(pb);
            if (!x != !y || (x && !rpc_equal(f->sub, x, y)))
                return false;
            break;
        }
        case K_MSGV: {
            const char *x = get_ptr(pa), *y = get_ptr(pb);
            size_t nx, ny;
            memcpy(&nx, CAT(a, f->off2), sizeof nx);
            memcpy(&ny, CAT(b, f->off2), sizeof ny);
            if (nx != ny)
                return false;
            for (size_t k = 0; k < nx; k++)
                if (!rpc_equal(f->sub, x + k * f->sub->size, y + k * f->sub->size))
                    return false;
            break;
        }
        case K_MSGMAP: {
            const char *x = get_ptr(pa), *y = get_ptr(pb);
            size_t nx, ny;
            memcpy(&nx, CAT(a, f->off2), sizeof nx);
            memcpy(&ny, CAT(b, f->off2), sizeof ny);
            if (nx != ny)
                return false;
            for (size_t k = 0; k < nx; k++) {
                const char *ex = x + k * f->esize, *ey = NULL;
                for (size_t m = ny; m-- > 0;) {
                    if (str_eq(get_ptr(y + m * f->esize), get_ptr(ex))) {
                        ey = y + m * f->esize;
                        break;
                    }
                }
                if (!ey || !rpc_equal(f->sub, ex + f->voff, ey + f->voff))
                    return false;
            }
            break;
        }
        }
    }
    return true;
}

/* ================================================================================ errors */

const char *
rpc_code_from_status(int status)
{
    switch (status) {
    case 400:
        return "internal";
    case 401:
        return "unauthenticated";
    case 403:
        return "permission_denied";
    case 404:
        return "unimplemented";
    case 429:
    case 502:
    case 503:
    case 504:
        return "unavailable";
    default:
        return "unknown";
    }
}

void
rpc_error_decode(int status, const char *body, size_t len, struct rpc_error *out)
{
    json_t *j = NULL, *code, *msg;

    memset(out, 0, sizeof *out);
    out->status = status;
    if (body && len)
        j = json_loadb(body, len, 0, NULL);
    code = json_object_get(j, "code");
    msg = json_object_get(j, "message");
    if (json_is_string(code) && *json_string_value(code)) {
        out->connect = true;
        out->code = xstrdup(json_string_value(code));
        out->message = xstrdup(json_is_string(msg) ? json_string_value(msg) : "");
    } else {
        out->code = xstrdup(rpc_code_from_status(status));
        out->message = xstrdup("");
    }
    json_decref(j);
}

void
rpc_error_clear(struct rpc_error *er)
{
    if (!er)
        return;
    free(er->code);
    free(er->message);
    memset(er, 0, sizeof *er);
}

/* Classification (doc/gitea-protocol.md §1.5): Gitea wraps gRPC status errors as Connect "unknown"
 * with the gRPC text in the message, so both the code and the message count. */
enum rpc_errclass
rpc_error_class(int status, const char *code, const char *message)
{
    const char *m = message ? message : "";

    if (status == 0)
        return RPC_ERR_UNAVAILABLE; /* no response at all: connection refused, timeout, ... */
    if (!code || !*code)
        code = rpc_code_from_status(status);
    if (strcmp(code, "unauthenticated") == 0 || strstr(m, "unregistered runner") ||
        strstr(m, "code = Unauthenticated") || strstr(m, "runner has been removed"))
        return RPC_ERR_UNAUTHENTICATED;
    if (strcmp(code, "unimplemented") == 0 || strcmp(code, "not_found") == 0 ||
        strstr(m, "code = NotFound") || strstr(m, "code = Unimplemented") ||
        strstr(m, "resource does not exist"))
        return RPC_ERR_NOT_FOUND;
    if (strcmp(code, "unavailable") == 0 || strcmp(code, "deadline_exceeded") == 0 ||
        strcmp(code, "resource_exhausted") == 0 || strstr(m, "code = Unavailable") ||
        strstr(m, "code = DeadlineExceeded") || strstr(m, "code = ResourceExhausted"))
        return RPC_ERR_UNAVAILABLE;
    /* A server-side database or storage hiccup; the same call may well succeed later. */
    if (strstr(m, "code = Internal desc") && !strstr(m, "invalid runner for task"))
        return RPC_ERR_UNAVAILABLE;
    return RPC_ERR_OTHER;
}

const char *
rpc_errclass_name(enum rpc_errclass c)
{
    switch (c) {
    case RPC_ERR_UNAUTHENTICATED:
        return "unauthenticated";
    case RPC_ERR_NOT_FOUND:
        return "not found";
    case RPC_ERR_UNAVAILABLE:
        return "unavailable";
    case RPC_ERR_OTHER:
        break;
    }
    return "other";
}
