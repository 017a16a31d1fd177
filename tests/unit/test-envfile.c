/* test-envfile.c: GITHUB_ENV/OUTPUT/STATE parsing: NAME=value (values with '=' and '<<'),
 * heredocs (multi-line, CRLF, empty), BOM, blank lines, later wins, and every error. */
#include "harness.h"

#include "envfile.h"

static json_t *
parse(const char *s)
{
    json_t *o = NULL;
    struct err e = {0};

    if (envfile_parse("GITHUB_ENV", s, strlen(s), &o, &e) < 0)
        test_fail(__FILE__, __LINE__, "envfile_parse: %s", e.msg);
    return o;
}

#define GET(o, k) json_string_value(json_object_get((o), (k)))

TEST(pairs_and_heredocs)
{
    json_t *o = parse("\xef\xbb\xbf" "A=1\n\nB=x=y<<z\nC<<EOF\nline1\r\nline2\nEOF\nD<<E\nE\nA=2\n");
    ASSERT_STR_EQ(GET(o, "A"), "2");
    ASSERT_STR_EQ(GET(o, "B"), "x=y<<z");
    ASSERT_STR_EQ(GET(o, "C"), "line1\nline2");
    ASSERT_STR_EQ(GET(o, "D"), "");
    ASSERT_EQ(json_object_size(o), 4);
    json_decref(o);
}

TEST(heredoc_name_before_equals)
{
    /* '<<' before '=' makes a heredoc whose delimiter contains '='. */
    json_t *o = parse("X<<A=B\nv\nA=B\n");
    ASSERT_STR_EQ(GET(o, "X"), "v");
    json_decref(o);
}

TEST(errors_name_the_line)
{
    static const char *const bad[][2] = {
        {"A=1\nnot a pair\n", "GITHUB_ENV:2: invalid format 'not a pair', expected a line with '=' or '<<'"},
        {"X<<EOF\nno end\n", "GITHUB_ENV:1: invalid format delimiter 'EOF' not found before end of file"},
        {"=v\n", "GITHUB_ENV:1: a name is needed before '='"},
        {"<<EOF\nEOF\n", "GITHUB_ENV:1: expected NAME<<DELIMITER"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *o = NULL;
        struct err e = {0};
        ASSERT_EQ(envfile_parse("GITHUB_ENV", bad[i][0], strlen(bad[i][0]), &o, &e), ERR_INVALID);
        ASSERT(o == NULL);
        ASSERT_STR_EQ(e.msg, bad[i][1]);
    }
}

TEST(empty_file_and_no_trailing_newline)
{
    json_t *o = parse("");
    ASSERT_EQ(json_object_size(o), 0);
    json_decref(o);
    o = parse("K=v");
    ASSERT_STR_EQ(GET(o, "K"), "v");
    json_decref(o);
}
