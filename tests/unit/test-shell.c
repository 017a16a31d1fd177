/* test-shell.c: shell resolution order and defaults, every built-in template, script content,
 * and argv splitting (quotes, escapes, {0} inside quotes, errors). */
#include "harness.h"

#include "shell.h"

static void
assert_argv(const char *tmpl, const char *const *want)
{
    char **av = NULL;
    struct err e = {0};
    size_t i;

    if (shell_argv(tmpl, "/w/1.sh", &av, &e) < 0)
        test_fail(__FILE__, __LINE__, "shell_argv(%s): %s", tmpl, e.msg);
    for (i = 0; want[i]; i++)
        ASSERT_STR_EQ(av[i], want[i]);
    ASSERT(av[i] == NULL);
    shell_argv_free(av);
}

TEST(resolution)
{
    struct shell_cmd c;

    shell_resolve(NULL, NULL, NULL, false, true, &c);
    ASSERT_STR_EQ(c.tmpl, "bash -e {0}");
    ASSERT_STR_EQ(c.ext, "");
    shell_cmd_free(&c);
    shell_resolve(NULL, NULL, NULL, true, true, &c);
    ASSERT_STR_EQ(c.tmpl, "sh -e {0}");
    shell_cmd_free(&c);
    shell_resolve(NULL, NULL, NULL, false, false, &c);
    ASSERT_STR_EQ(c.tmpl, "sh -e {0}");
    shell_cmd_free(&c);
    shell_resolve("", "bash", "python", false, true, &c);
    ASSERT_STR_EQ(c.tmpl, "bash --noprofile --norc -e -o pipefail {0}");
    ASSERT_STR_EQ(c.ext, "sh");
    shell_cmd_free(&c);
    shell_resolve(NULL, NULL, "python", false, true, &c);
    ASSERT_STR_EQ(c.tmpl, "python {0}");
    ASSERT_STR_EQ(c.ext, "py");
    shell_cmd_free(&c);
    shell_resolve("pwsh", NULL, NULL, false, true, &c);
    char *script = shell_script(&c, "Write-Host hi");
    ASSERT_STR_EQ(script, "$ErrorActionPreference = 'stop'\nWrite-Host hi\n"
                          "if ((Test-Path -LiteralPath variable:/LASTEXITCODE)) { exit $LASTEXITCODE }");
    free(script);
    shell_cmd_free(&c);
    shell_resolve("perl {0}", NULL, NULL, false, true, &c);
    script = shell_script(&c, "print 1");
    ASSERT_STR_EQ(script, "\nprint 1\n");
    free(script);
    shell_cmd_free(&c);
}

TEST(argv_splitting)
{
    const char *a1[] = {"bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "/w/1.sh", NULL};
    assert_argv("bash --noprofile --norc -e -o pipefail {0}", a1);
    const char *a2[] = {"pwsh", "-command", ".", "/w/1.sh", NULL};
    assert_argv("pwsh -command . '{0}'", a2);
    const char *a3[] = {"cmd", "/D", "/S", "/C", "CALL /w/1.sh", NULL};
    assert_argv("cmd /D /S /C \"CALL {0}\"", a3);
    const char *a4[] = {"cp", "/w/1.sh", "action.yml", NULL};
    assert_argv("  cp   {0} action.yml ", a4);
    const char *a5[] = {"sh", "-c", "echo \"$0\" it's", "/w/1.sh", NULL};
    assert_argv("sh -c 'echo \"$0\" it'\\''s' {0}", a5);
    const char *a6[] = {"x", "a b", "{0}", "/w/1.sh", NULL};
    assert_argv("x a\\ b \\{0} {0}", a6);
}

TEST(argv_errors)
{
    char **av = NULL;
    struct err e = {0};

    ASSERT_EQ(shell_argv("sh 'oops {0}", "/s", &av, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "shell 'sh 'oops {0}': unterminated quote");
    ASSERT_EQ(shell_argv("   ", "/s", &av, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "shell '   ': empty command");
    ASSERT_EQ(shell_argv("perl -w", "/s", &av, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "shell 'perl -w': the command must contain {0}");
    ASSERT(av == NULL);
}
