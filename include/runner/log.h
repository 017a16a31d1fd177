/* log.h: leveled logging with syslog priorities (doc/style.md §7). */
#ifndef RUNNER_LOG_H
#define RUNNER_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_prio {
    LOG_PRIO_ERR = 3,
    LOG_PRIO_WARNING = 4,
    LOG_PRIO_NOTICE = 5,
    LOG_PRIO_INFO = 6,
    LOG_PRIO_DEBUG = 7,
};

/* Messages with a priority above this (numerically) are dropped before formatting. */
extern int log_level;

/* Sets the level and the output style: with prefix, "<N>" lines for journald; else time + word. */
void log_init(int level, bool syslog_prefix);
/* With on, every record is one JSON object a line, {"ts":"2024-05-01T12:00:00.123Z","level":
 * "info","msg":"..."}, whatever bytes the message holds (runnerd.log_format: json). The line
 * gets journald's "<N>" prefix only when stderr is the stream $JOURNAL_STREAM names (journald
 * strips it), so a file or pipe receives plain JSON. Off (the default): log_init()'s style. */
void log_set_json(bool on);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns a new string with control characters and non-UTF-8 bytes escaped as \xNN. */
char *log_escape(const char *s, size_t n);

#define LOG_AT(prio, ...)                                                                          \
    do {                                                                                           \
        if ((prio) <= log_level)                                                                   \
            log_msg((prio), __VA_ARGS__);                                                          \
    } while (0)
#define log_err(...) LOG_AT(LOG_PRIO_ERR, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_PRIO_WARNING, __VA_ARGS__)
#define log_notice(...) LOG_AT(LOG_PRIO_NOTICE, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_PRIO_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_PRIO_DEBUG, __VA_ARGS__)

/* Phase timestamps for finding where a job's start and end go (bench/job-start --trace): off
 * unless $RUNNERD_TRACE is set, then one "trace <ms> <what>" line to stderr per call. The
 * origin is $RUNNERD_TRACE's value when it is a CLOCK_MONOTONIC time in nanoseconds (the
 * caller's spawn, so the process's own start is counted), else log_trace_init()'s call. Off,
 * a trace costs one branch. */
extern bool log_trace_on;
void log_trace_init(void);
void log_trace_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define log_trace(...)                                                                             \
    do {                                                                                           \
        if (log_trace_on)                                                                          \
            log_trace_msg(__VA_ARGS__);                                                            \
    } while (0)

#endif
