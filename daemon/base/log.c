/* log.c: one-line log records to stderr: journald-prefixed or timestamped text, or one JSON
 * object a line (log_set_json()). */
#include "runner/log.h"
#include "runner/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int log_level = LOG_PRIO_NOTICE;
static bool log_prefix;
static bool log_json;
static bool log_json_prefix; /* stderr is journald's stream: "<N>" before the object */
bool log_trace_on;
static int64_t trace_origin; /* CLOCK_MONOTONIC, ns */

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
log_trace_init(void)
{
    const char *v = getenv("RUNNERD_TRACE");
    char *end = NULL;
    long long t;

    if (v == NULL || *v == '\0' || strcmp(v, "0") == 0)
        return;
    log_trace_on = true;
    trace_origin = mono_ns();
    t = strtoll(v, &end, 10);
    if (end != v && *end == '\0' && t > 1 && t <= trace_origin)
        trace_origin = t;
    log_trace_msg("process start (main)");
}

void
log_trace_msg(const char *fmt, ...)
{
    char msg[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "trace %8.1f ms %s\n", (double)(mono_ns() - trace_origin) / 1e6, msg);
}

void
log_init(int level, bool syslog_prefix)
{
    log_level = level;
    log_prefix = syslog_prefix;
}

/* True when stderr is the stream systemd connected to journald: $JOURNAL_STREAM holds its
 * "DEVICE:INODE" (systemd.exec(5)); a redirected stderr has another one. */
static bool
stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_set_json(bool on)
{
    log_json = on;
    log_json_prefix = on && stderr_is_journal();
}

static const char *
prio_word(int prio)
{
    switch (prio) {
    case LOG_PRIO_ERR:
        return "error";
    case LOG_PRIO_WARNING:
        return "warning";
    case LOG_PRIO_NOTICE:
        return "notice";
    case LOG_PRIO_INFO:
        return "info";
    default:
        return "debug";
    }
}

/* Writes the current UTC time as RFC 3339 with milliseconds: 2024-05-01T12:00:00.123Z. */
static void
format_now(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    char when[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03ldZ", when, ts.tv_nsec / 1000000);
}

/* The length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 when it is not one
 * (stray continuation byte, truncated sequence, overlong form, surrogate, above U+10FFFF). */
static size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Appends s as the inside of a JSON string: quotes, backslashes and control characters are
 * escaped, and each byte that is not part of well-formed UTF-8 becomes U+FFFD, so the output
 * is valid JSON whatever s holds. */
static void
json_escape_into(struct buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        size_t len;

        switch (c) {
        case '"':
            buf_puts(b, "\\\"");
            break;
        case '\\':
            buf_puts(b, "\\\\");
            break;
        case '\n':
            buf_puts(b, "\\n");
            break;
        case '\r':
            buf_puts(b, "\\r");
            break;
        case '\t':
            buf_puts(b, "\\t");
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                buf_printf(b, "\\u%04x", c);
            } else if ((len = utf8_seq_len(p + i, n - i)) == 0) {
                buf_puts(b, "\\ufffd");
            } else {
                buf_append(b, p + i, len);
                i += len;
                continue;
            }
        }
        i++;
    }
}

static void
log_json_line(int prio, const char *msg, size_t n)
{
    struct buf b = BUF_INIT;
    char when[48];

    format_now(when, sizeof when);
    if (log_json_prefix)
        buf_printf(&b, "<%d>", prio);
    buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", when, prio_word(prio));
    json_escape_into(&b, msg, n);
    buf_puts(&b, "\"}\n");
    fwrite(b.data, 1, b.len, stderr); /* one write: stderr is unbuffered */
    buf_free(&b);
}

void
log_msg(int prio, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if (log_json) {
        log_json_line(prio, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    } else if (log_prefix) {
        fprintf(stderr, "<%d>%s\n", prio, line);
    } else {
        char when[48];

        format_now(when, sizeof when);
        fprintf(stderr, "%s %s %s\n", when, prio_word(prio), line);
    }
}

char *
log_escape(const char *s, size_t n)
{
    struct buf b = BUF_INIT;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f || c == '\\')
            buf_printf(&b, "\\x%02x", c);
        else
            buf_putc(&b, (char)c);
    }
    return buf_steal(&b);
}
