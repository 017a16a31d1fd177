/* harness.c: the test runner. Usage: test-foo [-v] [NAME...]; TEST_TIMEOUT (seconds, default 120)
 * bounds each case. Every case runs in a forked child with its own temporary directory. */
#include "harness.h"

#include "runner/xalloc.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct test_case {
    const char *name;
    test_fn fn;
};

static struct test_case *cases;
static size_t ncases, capcases;
static char tmpdir[4096];

void
test_register(const char *name, test_fn fn)
{
    if (ncases == capcases) {
        capcases = capcases ? capcases * 2 : 64;
        cases = xreallocarray(cases, capcases, sizeof *cases);
    }
    cases[ncases].name = name;
    cases[ncases].fn = fn;
    ncases++;
}

void
test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

const char *
test_tmpdir(void)
{
    return tmpdir;
}

char *
test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            data = xrealloc(data, cap);
        }
        size_t r = fread(data + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    data[n] = '\0';
    if (len)
        *len = n;
    return data;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static bool
selected(const char *name, int argc, char **argv)
{
    bool any = false;

    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        any = true;
        if (strcmp(argv[i], name) == 0)
            return true;
    }
    return !any;
}

/* Runs one case in a child; returns true when it passed. */
static bool
run_case(const struct test_case *tc, int timeout)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    pid_t pid;
    int status = 0;
    bool passed = false, timed_out = false;

    snprintf(tmpdir, sizeof tmpdir, "%s/runnerd-test-XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return false;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return false;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (chdir(tmpdir) != 0)
            _exit(2);
        tc->fn();
        exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
    }
    setpgid(pid, pid);
    time_t deadline = time(NULL) + timeout;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            break;
        if (time(NULL) >= deadline) {
            timed_out = true;
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL); /* anything the case left running */
    if (timed_out)
        fprintf(stderr, "timed out after %d s\n", timeout);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "killed by signal %d\n", WTERMSIG(status));
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        passed = true;
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return passed;
}

int
main(int argc, char **argv)
{
    int timeout = getenv("TEST_TIMEOUT") ? atoi(getenv("TEST_TIMEOUT")) : 120;
    int passed = 0, failed = 0;

    if (timeout <= 0)
        timeout = 120;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-l") == 0) {
            for (size_t j = 0; j < ncases; j++)
                printf("%s\n", cases[j].name);
            return 0;
        }
    for (size_t i = 0; i < ncases; i++) {
        if (!selected(cases[i].name, argc, argv))
            continue;
        if (run_case(&cases[i], timeout)) {
            printf("ok   %s\n", cases[i].name);
            passed++;
        } else {
            printf("FAIL %s\n", cases[i].name);
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    free(cases);
    return failed ? 1 : (passed ? 0 : 1);
}
