/* cmd-restart.c: `runnerctl restart`: restarts runnerd without stopping its running jobs.
 *
 * runnerd is found through its pid file, "<state database>.pid", which it holds locked for its
 * whole life (store.h, "the daemon lock"): the lock's holder is the live runnerd, so a stale
 * file from a crashed one is never trusted, and asking never takes the lock (a runnerd
 * starting meanwhile is not disturbed). Then:
 *
 *   default   SIGUSR2: runnerd persists everything and exits with status 75 leaving its jobs
 *             running in their containers. Under systemd (the unit's RestartForceExitStatus=75)
 *             a new runnerd starts and reattaches them; we wait for it to hold the pid file and
 *             report "runnerd restarted: pid OLD -> NEW, N job(s) left running for reattach".
 *             Not under systemd, nothing starts it again: we say so, and who must.
 *   --drain   SIGTERM: runnerd stops the way runnerd.shutdown says (drain by default: running
 *             jobs finish first). systemd does not start again a runnerd that stopped cleanly
 *             (Restart=on-failure), so under systemd this is refused in favour of `systemctl
 *             restart UNIT`, which drains the same way and then starts it.
 *
 * "Under systemd" means the daemon's environment has $INVOCATION_ID, which systemd sets for
 * the processes of a unit (systemd.exec(5)); when we may not read it, we wait for a new
 * runnerd as if it were. --wait bounds the whole command (default 30 s; the unit restarts
 * after RestartSec=5s). The state database is found as runnerd finds it: --state, else
 * $RUNNERD_STATE, else runnerd.state_file of -c CONFIG, else /var/lib/runnerd/runnerd.db. */
#include "cmd.h"
#include "config.h"
#include "store.h"

#include "runner/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAIT_DEFAULT_S 30.0
#define POLL_MS 100

static const char restart_usage[] = "[-c CONFIG] [--state FILE] [--drain] [--wait SECONDS]";

enum managed { MANAGED_NO, MANAGED_YES, MANAGED_UNKNOWN };

static int
help(void)
{
    printf("usage: runnerctl restart %s\n"
           "  Restarts runnerd without stopping its running jobs: it detaches (SIGUSR2, exit\n"
           "  status 75), and systemd starts it again, reattaching the jobs. --drain stops it\n"
           "  with SIGTERM instead (running jobs finish first); under systemd use `systemctl\n"
           "  restart runnerd` for that. --wait bounds the wait (default 30 s).\n"
           "  FILE defaults to $RUNNERD_STATE, else runnerd.state_file of CONFIG, else\n"
           "  " CONFIG_STATE_FILE_DEFAULT ".\n",
           restart_usage);
    return CLI_EXIT_OK;
}

static void
nap(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = POLL_MS * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Whether pid runs as part of a systemd unit: $INVOCATION_ID in its environment. */
static enum managed
managed_by_systemd(pid_t pid)
{
    char path[64], *buf = NULL;
    size_t len = 0, cap = 0;
    enum managed m = MANAGED_NO;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%ld/environ", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MANAGED_UNKNOWN;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 20)) /* the kernel caps an environment far below this */
                break;
            buf = xrealloc(buf, cap);
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            m = MANAGED_UNKNOWN;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    for (size_t i = 0; m == MANAGED_NO && i < len; i += strnlen(buf + i, len - i) + 1)
        if (len - i > 14 && memcmp(buf + i, "INVOCATION_ID=", 14) == 0)
            m = MANAGED_YES;
    free(buf);
    return m;
}

/* The systemd unit pid runs in (the last part of its cgroup path, "runnerd.service"), or a
 * new "runnerd" when it cannot be told. */
static char *
unit_of(pid_t pid)
{
    char path[64], line[1024], *unit = NULL;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/cgroup", (long)pid);
    f = fopen(path, "re");
    while (f && unit == NULL && fgets(line, sizeof line, f)) {
        char *last;
        size_t n;

        line[strcspn(line, "\n")] = '\0';
        last = strrchr(line, '/');
        if (last == NULL)
            continue;
        last++;
        n = strlen(last);
        if (n > 8 && strcmp(last + n - 8, ".service") == 0)
            unit = xstrdup(last);
    }
    if (f)
        fclose(f);
    return unit ? unit : xstrdup("runnerd");
}

/* Waits until the runnerd holding state's lock is not old any more (0: none holds it, or
 * another one does, in *now), or until deadline (ERR_TIMEOUT). */
static int
wait_holder(const char *state, pid_t old, bool want_new, double deadline, pid_t *now,
            struct err *e)
{
    for (;;) {
        int rc = store_lock_holder(state, now, e);

        if (rc < 0)
            return rc;
        if (*now != old && (!want_new || *now != 0))
            return 0;
        if (cli_mono_s() >= deadline)
            return ERR_TIMEOUT;
        nap();
    }
}

/* Tasks the state database says are running: jobs left behind for a reattach (-1: unknown). */
static long
jobs_running(const char *state)
{
    struct store *s = NULL;
    struct store_task *v = NULL;
    size_t n = 0;
    long count = -1;

    if (store_open(state, &s, NULL) == 0 && store_task_list(s, "running", 0, &v, &n, NULL) == 0)
        count = (long)n;
    store_task_free(v, n);
    store_close(s);
    return count;
}

static const char *
jobs_text(long n, char *buf, size_t size)
{
    if (n < 0)
        snprintf(buf, size, "its running jobs");
    else
        snprintf(buf, size, "%ld job(s)", n);
    return buf;
}

static int
restart_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 'S'},
        {"drain", no_argument, NULL, 'D'},
        {"wait", required_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *state_opt = NULL;
    bool drain = false;
    double wait_s = WAIT_DEFAULT_S, deadline;
    struct err e = {0};
    char *state = NULL, *unit = NULL, *pidfile = NULL, jobs[64] = "";
    enum managed managed;
    pid_t pid = 0, now = 0;
    int c, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'S':
            state_opt = optarg;
            break;
        case 'D':
            drain = true;
            break;
        case 'W': {
            char *end;
            errno = 0;
            wait_s = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(wait_s) || wait_s < 0)
                return cli_usage_error("restart", restart_usage,
                                       "--wait: expected a number of seconds, got '%s'", optarg);
            break;
        }
        case 'h':
            return help();
        case ':':
            return cli_usage_error("restart", restart_usage, "option %s needs a value",
                                   argv[optind - 1]);
        default:
            return cli_usage_error("restart", restart_usage, "unknown option %s",
                                   argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("restart", restart_usage, "unexpected argument '%s'",
                               argv[optind]);
    deadline = cli_mono_s() + wait_s;

    /* The state database, as runnerd picks it. */
    state = cli_state_path("restart", config_path, state_opt);
    if (state == NULL)
        return CLI_EXIT_USAGE;
    pidfile = store_pidfile(state);

    if ((rc = store_lock_holder(state, &pid, &e)) < 0) {
        fprintf(stderr, "runnerctl restart: %s\n", e.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (pid == 0) {
        fprintf(stderr, "runnerctl restart: no runnerd is running on %s (nothing holds %s); "
                        "start it (systemctl start runnerd)\n", state, pidfile);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (pid < 0) {
        fprintf(stderr, "runnerctl restart: the runnerd using %s runs in another pid namespace "
                        "(a container?); restart it from there\n", state);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    managed = managed_by_systemd(pid);
    unit = unit_of(pid);
    if (drain && managed == MANAGED_YES) {
        fprintf(stderr, "runnerctl restart --drain: runnerd (pid %ld) runs under systemd, which "
                        "does not start again a runnerd that stopped cleanly; run `systemctl "
                        "restart %s` instead: it drains the same way, then starts it\n",
                (long)pid, unit);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (kill(pid, drain ? SIGTERM : SIGUSR2) < 0 && errno != ESRCH) {
        fprintf(stderr, "runnerctl restart: cannot signal runnerd (pid %ld): %s%s\n", (long)pid,
                strerror(errno), errno == EPERM ? "; run this as runnerd's user or as root" : "");
        rc = CLI_EXIT_FAIL;
        goto out;
    }

    /* The old runnerd is gone once it no longer holds the lock (a zombie holds none). */
    rc = wait_holder(state, pid, false, deadline, &now, &e);
    if (rc == ERR_TIMEOUT) {
        if (drain)
            fprintf(stderr, "runnerctl restart: runnerd (pid %ld) is still draining after %gs: "
                            "it stops once its jobs end (runner.shutdown_timeout); start it "
                            "again after that\n", (long)pid, wait_s);
        else
            fprintf(stderr, "runnerctl restart: runnerd (pid %ld) has not exited after %gs\n",
                    (long)pid, wait_s);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (rc < 0) {
        fprintf(stderr, "runnerctl restart: %s\n", e.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (!drain)
        jobs_text(jobs_running(state), jobs, sizeof jobs);

    if (now == 0 && !drain && managed != MANAGED_NO)
        rc = wait_holder(state, pid, true, deadline, &now, &e);
    else
        rc = 0;
    if (rc < 0 && rc != ERR_TIMEOUT) {
        fprintf(stderr, "runnerctl restart: %s\n", e.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (now > 0) {
        if (drain)
            printf("runnerd restarted: pid %ld -> %ld (stopped with SIGTERM first)\n",
                   (long)pid, (long)now);
        else
            printf("runnerd restarted: pid %ld -> %ld, %s left running for reattach\n",
                   (long)pid, (long)now, jobs);
        rc = CLI_EXIT_OK;
    } else if (drain) {
        printf("runnerd (pid %ld) stopped (as runnerd.shutdown says: its jobs drained by "
               "default); nothing starts it again on its own: start runnerd (with the same -c "
               "and --state)\n", (long)pid);
        rc = CLI_EXIT_OK;
    } else if (managed == MANAGED_NO) {
        printf("runnerd (pid %ld) detached and exited for a restart, %s left running for "
               "reattach; it does not run under systemd, so nothing starts it again: start "
               "runnerd (with the same -c and --state) to reattach them\n", (long)pid, jobs);
        rc = CLI_EXIT_OK;
    } else {
        fprintf(stderr, "runnerctl restart: runnerd (pid %ld) detached, %s left running for "
                        "reattach, but no new runnerd holds %s after %gs; see `systemctl status "
                        "%s` and `journalctl -u %s`\n",
                (long)pid, jobs, pidfile, wait_s, unit, unit);
        rc = CLI_EXIT_FAIL;
    }
out:
    free(state);
    free(pidfile);
    free(unit);
    return rc;
}

const struct cli_cmd cli_cmd_restart = {
    .name = "restart",
    .usage = restart_usage,
    .summary = "restart runnerd without stopping running jobs",
    .exec = restart_main,
};
