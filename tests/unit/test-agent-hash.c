/* test-agent-hash.c: `runner-agent --hash-files` (the real static binary) against the host's
 * hashfiles_compute() on the same trees: identical digests for the pattern sets of
 * test-hashfiles.c and more (comments, negation, directory patterns, "./", blanks and CRs,
 * brackets and escapes, hidden files, symlinks inside and outside the root, dangling links,
 * FIFOs, the depth limit); identical error messages with exit 2 (unknown `--` option, option
 * not first, missing root); the journal left alone. */
#include "harness.h"

#include "hashfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RUNNER_AGENT_PATH
#error "RUNNER_AGENT_PATH must name the built runner-agent"
#endif

struct res {
    int status; /* exit code, or -1 when not exited normally */
    char *out, *err;
};

static void
res_free(struct res *r)
{
    free(r->out);
    free(r->err);
}

/* Runs `runner-agent --hash-files root pats...` with stdout and stderr into files beside the
 * trees (the working directory may be inside one). */
static void
run_agent(const char *root, const char *const *pats, size_t n, struct res *r)
{
    const char *argv[64];
    char out[4096], err[4096], journal[4096];
    size_t k = 0;
    pid_t pid;
    int st;

    snprintf(out, sizeof out, "%s/agent.out", test_tmpdir());
    snprintf(err, sizeof err, "%s/agent.err", test_tmpdir());
    snprintf(journal, sizeof journal, "%s/journal-must-not-exist", test_tmpdir());

    ASSERT(n + 4 <= sizeof argv / sizeof argv[0]);
    argv[k++] = RUNNER_AGENT_PATH;
    argv[k++] = "--hash-files";
    if (root != NULL)
        argv[k++] = root;
    for (size_t i = 0; i < n; i++)
        argv[k++] = pats[i];
    argv[k] = NULL;
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(99);
        setenv("RUNNER_AGENT_JOURNAL", journal, 1);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(98);
    }
    while (waitpid(pid, &st, 0) < 0)
        ASSERT(errno == EINTR);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r->out = test_read_file(out, NULL);
    r->err = test_read_file(err, NULL);
    ASSERT(r->out != NULL && r->err != NULL);
    ASSERT(access(journal, F_OK) < 0);
}

/* The agent's answer must be the host's, byte for byte (plus the newline). */
static void
same(const char *root, const char *const *pats, size_t n)
{
    char *host = NULL, *want;
    struct err e = {0};
    struct res r;
    size_t wl;

    ASSERT_OK(hashfiles_compute(root, pats, n, &host, &e));
    wl = strlen(host) + 2;
    want = malloc(wl);
    ASSERT(want != NULL);
    snprintf(want, wl, "%s\n", host);
    run_agent(root, pats, n, &r);
    if (r.status != 0 || strcmp(r.out, want) != 0 || r.err[0] != '\0')
        test_fail(__FILE__, __LINE__, "patterns[0] '%s' (n=%zu): agent exit %d out '%s' err '%s', "
                  "host '%s'", n ? pats[0] : "", n, r.status, r.out, r.err, host);
    free(want);
    free(host);
    res_free(&r);
}

/* Both must fail, with the same message; the agent exits 2 and prints nothing on stdout. */
static void
same_error(const char *root, const char *const *pats, size_t n)
{
    char *host = NULL, want[sizeof ((struct err *)0)->msg + 2];
    struct err e = {0};
    struct res r;

    ASSERT(hashfiles_compute(root, pats, n, &host, &e) < 0);
    ASSERT(host == NULL);
    snprintf(want, sizeof want, "%s\n", e.msg);
    run_agent(root, pats, n, &r);
    ASSERT_EQ(r.status, 2);
    ASSERT_STR_EQ(r.out, "");
    ASSERT_STR_EQ(r.err, want);
    res_free(&r);
}

static void
put(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");

    ASSERT(f != NULL);
    fputs(content, f);
    fclose(f);
}

/* test-hashfiles.c's tree under ws/, and more. */
static void
tree(void)
{
    char target[4096];

    ASSERT_OK(mkdir("ws", 0755));
    ASSERT_OK(mkdir("ws/sub", 0755));
    ASSERT_OK(mkdir("ws/sub/deep", 0755));
    put("ws/a.txt", "hello\n");
    put("ws/sub/b.txt", "world\n");
    put("ws/sub/deep/c.lock", "");
    /* more */
    ASSERT_OK(mkdir("ws/empty", 0755));
    ASSERT_OK(mkdir("ws/.git", 0755));
    put("ws/.git/config", "[core]\n");
    put("ws/.hidden", "h\n");
    put("ws/b.txt", "b at the top\n");
    put("ws/A.TXT", "upper\n");
    put("ws/with space.c", "int x;\n");
    put("ws/br[a].h", "bracket\n");
    put("ws/star*.c", "star\n");
    put("ws/\xc3\xa9t\xc3\xa9.txt", "utf-8 name\n");
    put("ws/sub/deep/x.c", "int main(void) { return 0; }\n");
    put("ws/sub/deep/package-lock.json", "{}\n");
    put("ws/package-lock.json", "{\"lockfileVersion\": 3}\n");
    ASSERT_OK(mkfifo("ws/fifo.txt", 0644));
    ASSERT_OK(symlink("a.txt", "ws/inside-link.txt"));
    ASSERT_OK(symlink("sub/deep", "ws/dirlink"));
    ASSERT_OK(symlink("nowhere", "ws/dangling.txt"));
    ASSERT_OK(mkdir("elsewhere", 0755));
    put("elsewhere/secret.txt", "nope\n");
    snprintf(target, sizeof target, "%s/elsewhere/secret.txt", test_tmpdir());
    ASSERT_OK(symlink(target, "ws/leak.txt"));
    snprintf(target, sizeof target, "%s/elsewhere", test_tmpdir());
    ASSERT_OK(symlink(target, "ws/outdir"));
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SAME(root, ...)                                                                            \
    do {                                                                                           \
        const char *p_[] = {__VA_ARGS__};                                                          \
        same(root, p_, N(p_));                                                                     \
    } while (0)

TEST(hashfiles_pattern_sets_match_host)
{
    tree();
    /* test-hashfiles.c */
    SAME("ws", "**/*.txt");
    SAME("ws", "**");
    SAME("ws", "*.txt");
    SAME("ws", "./sub/*.txt");
    SAME("ws", "**/*.txt", "!a.txt");
    SAME("ws", "# comment\n**\n!**/*.lock\n");
    SAME("ws", "sub", "!sub/deep");
    SAME("ws", "**/*.rs");
    SAME("ws", "--follow-symbolic-links", "**");
    /* more */
    SAME("ws", "--follow-symbolic-links", "**/*.txt", "!sub/deep/**");
    SAME("ws", "--follow-symbolic-links", "dirlink");
    SAME("ws", "dirlink/**");
    SAME("ws", "**/package-lock.json");
    SAME("ws", "*");
    SAME("ws", "./");
    SAME("ws", "**", "!");
    SAME("ws", "!!a.txt", "!!!a.txt\nsub/b.txt");
    SAME("ws", "  **/*.c \t\r\n\n\t# nothing\n!**/deep/*\r\n");
    SAME("ws", "br[a].h", "br\\[a].h", "star\\*.c", "[ab].txt", "[!a].txt", "[[:upper:]]*");
    SAME("ws", "?.txt", "??t??.txt", "*.TXT");
    SAME("ws", ".*", "**/.git/*");
    SAME("ws", "sub//deep/", "/a.txt", "././b.txt");
    SAME("ws", "**/**/*.lock", "sub/**/deep/**");
    SAME("ws", "fifo.txt", "dangling.txt", "leak.txt", "outdir/*", "empty");
    SAME("ws", "--follow-symbolic-links", "outdir/**", "leak.txt");
    SAME("ws", "with space.c", "\xc3\xa9t\xc3\xa9.txt");
    SAME("ws", "#", "", "   ");
    SAME("ws");
    /* The root given absolutely, through "..", and as "."; the trees must agree as well. */
    char abs[4096];
    snprintf(abs, sizeof abs, "%s/ws", test_tmpdir());
    SAME(abs, "**");
    SAME("ws/sub/..", "**/*.txt");
    ASSERT_OK(chdir("ws/sub"));
    SAME(".", "**");
    SAME("..", "sub");
}

TEST(files_bigger_than_a_read)
{
    ASSERT_OK(mkdir("ws", 0755));
    FILE *f = fopen("ws/big.bin", "w");
    ASSERT(f != NULL);
    for (int i = 0; i < 300000; i++)
        fputc((i * 7 + i / 251) & 0xff, f);
    fclose(f);
    put("ws/small", "x");
    SAME("ws", "**");
    SAME("ws", "big.bin");
}

TEST(depth_limit_same_error)
{
    char path[4096] = "ws";
    size_t len = 2;

    ASSERT_OK(mkdir("ws", 0755));
    for (int i = 0; i <= HASHFILES_MAX_DEPTH + 1; i++) {
        len += (size_t)snprintf(path + len, sizeof path - len, "/d");
        ASSERT_OK(mkdir(path, 0755));
    }
    const char *p[] = {"**"};
    same_error("ws", p, 1);
}

TEST(errors_exit_2_with_the_host_message)
{
    struct res r;

    ASSERT_OK(mkdir("ws", 0755));
    put("ws/a.txt", "hello\n");
    const char *bad[] = {"--nope", "**"};
    same_error("ws", bad, 2);
    run_agent("ws", bad, 2, &r);
    ASSERT_STR_EQ(r.err, "hashFiles: unknown option '--nope'\n");
    res_free(&r);
    const char *late[] = {"**", "--follow-symbolic-links"};
    same_error("ws", late, 2);
    const char *any[] = {"**"};
    same_error("does-not-exist", any, 1);
    /* A message stays on one line whatever the option holds. */
    const char *nl[] = {"--x\ny"};
    run_agent("ws", nl, 1, &r);
    ASSERT_EQ(r.status, 2);
    ASSERT_STR_EQ(r.err, "hashFiles: unknown option '--x?y'\n");
    res_free(&r);
    /* No root at all. */
    run_agent(NULL, NULL, 0, &r);
    ASSERT_EQ(r.status, 2);
    ASSERT_STR_EQ(r.out, "");
    ASSERT_STR_CONTAINS(r.err, "usage: runner-agent --hash-files ROOT");
    res_free(&r);
}
