/* store-lock.c: the daemon lock, one runnerd per state database (store.h): a record lock on
 * the pid file beside the database. */
#include "store-int.h"

#include "runner/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The daemon lock is held (store_lock()). A record lock belongs to the process, and closing any
 * descriptor of its file drops it: the holder must never open the pid file again. */
static bool lock_held;

char *
store_pidfile(const char *path)
{
    char *abs = realpath(path, NULL);
    char *p = xasprintf("%s.pid", abs ? abs : path);

    free(abs);
    return p;
}

/* The pid of the process holding a lock on fd's file, or 0. The lock asked about is a read
 * lock, so that a file open read-only can be asked; runnerd's write lock conflicts with it. */
static int
pidfile_holder(int fd, const char *file, pid_t *pid, struct err *e)
{
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};

    *pid = 0;
    if (fcntl(fd, F_GETLK, &fl) < 0)
        return err_set(e, -errno, "%s: %s", file, strerror(errno));
    if (fl.l_type == F_UNLCK)
        return 0;
    /* 0: the holder lives in a pid namespace we cannot see into; the pid in the file is the
     * holder's own view, which would name another process here. */
    *pid = fl.l_pid > 0 ? fl.l_pid : -1;
    return 0;
}

int
store_lock(struct store *s, pid_t *holder, struct err *e)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    char *file = store_pidfile(s->path), buf[32];
    int fd, rc = 0, len;
    pid_t other = 0;

    assert(!lock_held && "store_lock: once per process");
    if (holder)
        *holder = 0;
    fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        rc = err_set(e, -errno, "%s: %s", file, strerror(errno));
        goto out;
    }
    if (fcntl(fd, F_SETLK, &fl) < 0) {
        if (errno != EACCES && errno != EAGAIN) {
            rc = err_set(e, -errno, "%s: lock: %s", file, strerror(errno));
            goto out;
        }
        rc = pidfile_holder(fd, file, &other, e);
        if (rc < 0)
            goto out;
        if (holder)
            *holder = other;
        if (other > 0)
            rc = err_set(e, -EBUSY, "%s: another runnerd (pid %ld) uses this state database; "
                         "stop it, or restart it with `runnerctl restart`", s->path, (long)other);
        else
            rc = err_set(e, -EBUSY, "%s: another runnerd uses this state database (it holds "
                         "%s); stop it first", s->path, file);
        goto out;
    }
    len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        rc = err_set(e, -errno, "%s: write: %s", file, strerror(errno));
        goto out;
    }
    s->lock_fd = fd;
    lock_held = true;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    free(file);
    return rc;
}

int
store_lock_holder(const char *path, pid_t *pid, struct err *e)
{
    char *file = NULL;
    int fd, rc = 0;

    assert(!lock_held && "store_lock_holder: would drop this process's own daemon lock");
    *pid = 0;
    file = store_pidfile(path);
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            rc = err_set(e, -errno, "%s: %s", file, strerror(errno));
    } else {
        rc = pidfile_holder(fd, file, pid, e);
        close(fd);
    }
    free(file);
    return rc;
}

void
db_unlock(struct store *s)
{
    if (s->lock_fd < 0)
        return;
    close(s->lock_fd); /* drops the daemon lock */
    s->lock_fd = -1;
    lock_held = false;
}
