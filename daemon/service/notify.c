/* notify.c: systemd's notify protocol, spoken directly (doc/style.md §9): one datagram per
 * message to $NOTIFY_SOCKET (a path, or an abstract name when it starts with '@'), and
 * WATCHDOG=1 every half of $WATCHDOG_USEC when systemd asks for a watchdog. Without
 * $NOTIFY_SOCKET every call does nothing. */
#include "notify.h"

#include "runner/log.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fd = -1;
static struct sockaddr_un addr;
static socklen_t addr_len;
static uv_timer_t watchdog;
static bool watchdog_on;

static void
on_watchdog(uv_timer_t *t)
{
    (void)t;
    notify_send("WATCHDOG=1");
}

void
notify_init(uv_loop_t *loop)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n;

    if (path == NULL || (path[0] != '/' && path[0] != '@') ||
        (n = strlen(path)) >= sizeof addr.sun_path)
        return;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("notify: socket: %s", strerror(errno));
        return;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, n);
    if (path[0] == '@')
        addr.sun_path[0] = '\0';
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (us && (pid == NULL || strtol(pid, NULL, 10) == (long)getpid())) {
        unsigned long long usec = strtoull(us, NULL, 10);
        if (usec >= 2000) {
            uv_timer_init(loop, &watchdog);
            uv_timer_start(&watchdog, on_watchdog, usec / 2000, usec / 2000);
            uv_unref((uv_handle_t *)&watchdog);
            watchdog_on = true;
        }
    }
}

void
notify_send(const char *state)
{
    if (fd < 0)
        return;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len) < 0)
        log_debug("notify: %s", strerror(errno));
}

void
notify_status(const char *fmt, ...)
{
    char msg[256] = "STATUS=";
    va_list ap;

    if (fd < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg + 7, sizeof msg - 7, fmt, ap);
    va_end(ap);
    notify_send(msg);
}

void
notify_close(void)
{
    if (watchdog_on) {
        uv_timer_stop(&watchdog);
        uv_close((uv_handle_t *)&watchdog, NULL);
        watchdog_on = false;
    }
    if (fd >= 0)
        close(fd);
    fd = -1;
}
