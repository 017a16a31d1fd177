/* notify.h: systemd's notify protocol (notify.c). */
#ifndef RUNNERD_NOTIFY_H
#define RUNNERD_NOTIFY_H

#include <uv.h>

void notify_init(uv_loop_t *loop);
void notify_send(const char *state);   /* "READY=1", "STOPPING=1", ... */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_close(void);

#endif
