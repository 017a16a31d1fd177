/* logline.c: see logline.h. */
#include "logline.h"

#include <stdarg.h>
#include <stdio.h>

void
logline(logline_fn fn, void *arg, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (fn == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(line, arg);
}
