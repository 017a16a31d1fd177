/* logline.h: one formatted progress line handed to a caller's log callback (services,
 * dockerstep). */
#ifndef LOGLINE_H
#define LOGLINE_H

typedef void (*logline_fn)(const char *line, void *arg);

/* Formats a line (cut at 511 bytes) and calls fn(line, arg); nothing when fn is NULL. */
void logline(logline_fn fn, void *arg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
