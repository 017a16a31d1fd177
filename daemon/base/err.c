/* err.c: struct err helpers. */
#include "runner/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
err_set(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return code;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    /* Keep the message one line. */
    for (char *p = e->msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return code;
}

int
err_prefix(struct err *e, const char *fmt, ...)
{
    char old[sizeof e->msg];
    va_list ap;
    int n;

    if (e == NULL)
        return 0;
    memcpy(old, e->msg, sizeof old);
    va_start(ap, fmt);
    n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof e->msg) {
        size_t room = sizeof e->msg - (size_t)n;
        size_t olen = strnlen(old, sizeof old - 1);

        if (olen >= room)
            olen = room - 1;
        memcpy(e->msg + n, old, olen);
        e->msg[(size_t)n + olen] = '\0';
    }
    return e->code;
}

void
err_clear(struct err *e)
{
    if (e == NULL)
        return;
    e->code = 0;
    e->msg[0] = '\0';
}
