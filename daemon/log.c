/* log.c: one-line log records to stderr, journald-prefixed or timestamped. */
#include "runner/log.h"
#include "runner/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

int log_level = LOG_PRIO_NOTICE;
static bool log_prefix;

void
log_init(int level, bool syslog_prefix)
{
    log_level = level;
    log_prefix = syslog_prefix;
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

void
log_msg(int prio, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log_prefix) {
        fprintf(stderr, "<%d>%s\n", prio, line);
    } else {
        struct timespec ts;
        struct tm tm;
        char when[32];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000, prio_word(prio), line);
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
