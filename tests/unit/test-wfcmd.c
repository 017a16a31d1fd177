/* test-wfcmd.c: workflow command recognition: both syntaxes, properties (kept only with one
 * '='), %-unescaping of data and properties, case-insensitive names, non-commands, and the
 * stop-commands state. */
#include "harness.h"

#include "wfcmd.h"

static bool
parse(const char *line, struct wfcmd *c)
{
    return wfcmd_parse(line, strlen(line), c);
}

TEST(modern_syntax_with_properties)
{
    struct wfcmd c;

    ASSERT(parse("::set-output name=x::a%25b%0Ac", &c));
    ASSERT_STR_EQ(c.name, "set-output");
    ASSERT_STR_EQ(wfcmd_prop(&c, "name"), "x");
    ASSERT_STR_EQ(c.data, "a%b\nc");
    wfcmd_free(&c);

    ASSERT(parse("::ERROR file=a%3Ab.c,line=3,bad=x=y,title=t%2Cu::boom", &c));
    ASSERT_STR_EQ(c.name, "error");
    ASSERT_STR_EQ(wfcmd_prop(&c, "file"), "a:b.c");
    ASSERT_STR_EQ(wfcmd_prop(&c, "line"), "3");
    ASSERT(wfcmd_prop(&c, "bad") == NULL);
    ASSERT_STR_EQ(wfcmd_prop(&c, "title"), "t,u");
    ASSERT_STR_EQ(c.data, "boom");
    wfcmd_free(&c);

    ASSERT(parse("::group::Build", &c));
    ASSERT_STR_EQ(c.name, "group");
    ASSERT_STR_EQ(c.data, "Build");
    ASSERT_EQ(c.n_props, 0);
    wfcmd_free(&c);
}

TEST(legacy_syntax)
{
    struct wfcmd c;

    ASSERT(parse("##[set-output name=y;other=z]val", &c));
    ASSERT_STR_EQ(c.name, "set-output");
    ASSERT_STR_EQ(wfcmd_prop(&c, "name"), "y");
    ASSERT_STR_EQ(wfcmd_prop(&c, "other"), "z");
    ASSERT_STR_EQ(c.data, "val");
    wfcmd_free(&c);
}

TEST(not_commands)
{
    struct wfcmd c;
    const char *lines[] = {"hello", "::", "::::x", ":: x::y", "##[]x", "##[x", "a::b::c", ""};

    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ASSERT(!parse(lines[i], &c));
}

TEST(stop_commands)
{
    struct wfcmd_state st = {0};
    struct wfcmd c;
    const char *l;

    l = "::stop-commands::tok123";
    ASSERT_EQ(wfcmd_process(&st, l, strlen(l), &c), WFCMD_RUN);
    ASSERT_STR_EQ(c.name, "stop-commands");
    wfcmd_free(&c);
    l = "::add-mask::secret";
    ASSERT_EQ(wfcmd_process(&st, l, strlen(l), &c), WFCMD_IGNORED);
    l = "plain";
    ASSERT_EQ(wfcmd_process(&st, l, strlen(l), &c), WFCMD_NONE);
    l = "::TOK123::";
    ASSERT_EQ(wfcmd_process(&st, l, strlen(l), &c), WFCMD_IGNORED); /* token is case-sensitive */
    l = "::tok123::";
    ASSERT_EQ(wfcmd_process(&st, l, strlen(l), &c), WFCMD_RESUMED);
    l = "::add-mask::secret";
    ASSERT_EQ(wfcmd_process(&st, l, strlen(l), &c), WFCMD_RUN);
    wfcmd_free(&c);
    wfcmd_state_free(&st);
}
