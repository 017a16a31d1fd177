/* test-hashfiles.c: hashFiles() over a real directory: digests against values computed
 * independently (Python hashlib), `**` and `*` globbing, `!` exclusion, directory patterns,
 * no match, symlinks leaving the workspace, options, comments, and the matcher itself. */
#include "harness.h"

#include "hashfiles.h"

#include <sys/stat.h>
#include <unistd.h>

static void
put(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");

    ASSERT(f != NULL);
    fputs(content, f);
    fclose(f);
}

static char *
hash(const char *const *pats, size_t n)
{
    char *out = NULL;
    struct err e = {0};

    if (hashfiles_compute(".", pats, n, &out, &e) < 0)
        test_fail(__FILE__, __LINE__, "hashfiles_compute: %s", e.msg);
    return out;
}

static void
tree(void)
{
    ASSERT_OK(mkdir("sub", 0755));
    ASSERT_OK(mkdir("sub/deep", 0755));
    put("a.txt", "hello\n");
    put("sub/b.txt", "world\n");
    put("sub/deep/c.lock", "");
}

#define AB "96cb8058ed58b58f8fc0ad459bacf81108599b403e91674460ccb089f8ebb9db"
#define A "ecb65bb98f9d905b70458986c39fcbad7715e5f2fcc3b1f07767d7c83e2438cc"
#define B "dc0a7d4047ef3bfc9f2a86dc270e6e67cb7a3a7c071acedf5899382f6040d106"
#define ABC "3eb231bcc8d1e064f424b3f32906dfa6eda2cb08e4aad25c0dcc95387e449b82"

TEST(globstar_hashes_in_path_order)
{
    tree();
    const char *p[] = {"**/*.txt"};
    char *h = hash(p, 1);
    ASSERT_STR_EQ(h, AB);
    free(h);
    const char *all[] = {"**"};
    h = hash(all, 1);
    ASSERT_STR_EQ(h, ABC);
    free(h);
}

TEST(single_star_stays_in_segment)
{
    tree();
    const char *p[] = {"*.txt"};
    char *h = hash(p, 1);
    ASSERT_STR_EQ(h, A);
    free(h);
    const char *q[] = {"./sub/*.txt"};
    h = hash(q, 1);
    ASSERT_STR_EQ(h, B);
    free(h);
}

TEST(negation_comments_and_multiline)
{
    tree();
    const char *p[] = {"**/*.txt", "!a.txt"};
    char *h = hash(p, 1 + 1);
    ASSERT_STR_EQ(h, B);
    free(h);
    const char *q[] = {"# comment\n**\n!**/*.lock\n"};
    h = hash(q, 1);
    ASSERT_STR_EQ(h, AB);
    free(h);
}

TEST(directory_pattern_matches_below)
{
    tree();
    const char *p[] = {"sub", "!sub/deep"};
    char *h = hash(p, 2);
    ASSERT_STR_EQ(h, B);
    free(h);
}

TEST(no_match_is_empty)
{
    tree();
    const char *p[] = {"**/*.rs"};
    char *h = hash(p, 1);
    ASSERT_STR_EQ(h, "");
    free(h);
}

TEST(symlinks_outside_workspace_ignored)
{
    char outside[4096];

    ASSERT_OK(mkdir("ws", 0755));
    ASSERT_OK(mkdir("elsewhere", 0755));
    put("elsewhere/secret.txt", "nope\n");
    put("ws/a.txt", "hello\n");
    snprintf(outside, sizeof outside, "%s/elsewhere/secret.txt", test_tmpdir());
    ASSERT_OK(symlink(outside, "ws/leak.txt"));
    snprintf(outside, sizeof outside, "%s/elsewhere", test_tmpdir());
    ASSERT_OK(symlink(outside, "ws/dirlink"));
    ASSERT_OK(chdir("ws"));
    const char *p[] = {"--follow-symbolic-links", "**"};
    char *h = hash(p, 2);
    ASSERT_STR_EQ(h, A);
    free(h);
}

TEST(bad_option_and_missing_workspace)
{
    char *out = NULL;
    struct err e = {0};
    const char *p[] = {"--nope", "x"};

    ASSERT_EQ(hashfiles_compute(".", p, 2, &out, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "hashFiles: unknown option '--nope'");
    const char *q[] = {"x"};
    ASSERT(hashfiles_compute("does-not-exist", q, 1, &out, &e) < 0);
    ASSERT_STR_CONTAINS(e.msg, "workspace does-not-exist");
    ASSERT(out == NULL);
}

TEST(matcher)
{
    ASSERT(hashfiles_match("**/package-lock.json", "package-lock.json"));
    ASSERT(hashfiles_match("**/package-lock.json", "a/b/package-lock.json"));
    ASSERT(!hashfiles_match("**/package-lock.json", "a/package-lock.json.bak"));
    ASSERT(hashfiles_match("src/**/*.c", "src/x.c"));
    ASSERT(hashfiles_match("src/**/*.c", "src/a/b/x.c"));
    ASSERT(!hashfiles_match("src/*.c", "src/a/x.c"));
    ASSERT(hashfiles_match("*.[ch]", "x.h"));
    ASSERT(hashfiles_match("?.txt", "a.txt"));
    ASSERT(!hashfiles_match("?.txt", "ab.txt"));
    ASSERT(hashfiles_match("*", ".hidden"));
}
