/* test-mask.c: secret masking: several values, longest first, multi-line values and their
 * lines, values split across chunks at every possible point, byte-at-a-time feeding, values
 * added mid-stream, and pass-through with no values. */
#include "harness.h"

#include "mask.h"

static char *
masked(struct mask *m, const char *s)
{
    struct buf out = BUF_INIT;

    mask_apply(m, s, strlen(s), &out);
    return buf_steal(&out);
}

TEST(replaces_values)
{
    struct mask *m = mask_new();
    char *s;

    mask_add(m, "hunter2");
    mask_add(m, "");
    mask_add(m, "hunter2-long");
    ASSERT_EQ(mask_count(m), 2);
    s = masked(m, "pw=hunter2 and hunter2-long, hunter");
    ASSERT_STR_EQ(s, "pw=*** and ***, hunter");
    free(s);
    mask_free(m);
}

TEST(multiline_values_mask_each_line)
{
    struct mask *m = mask_new();
    char *s;

    mask_add(m, "-----BEGIN KEY-----\r\nabcdef\n-----END KEY-----");
    s = masked(m, "key line: abcdef\n");
    ASSERT_STR_EQ(s, "key line: ***\n");
    free(s);
    s = masked(m, "-----BEGIN KEY-----\r\nabcdef\n-----END KEY-----");
    ASSERT_STR_EQ(s, "***");
    free(s);
    mask_free(m);
}

TEST(split_at_every_point)
{
    const char *text = "before s3cr3t-value middle s3cr3t-value after";
    size_t n = strlen(text);

    for (size_t cut = 0; cut <= n; cut++) {
        struct mask *m = mask_new();
        struct buf out = BUF_INIT;

        mask_add(m, "s3cr3t-value");
        mask_feed(m, text, cut, &out);
        mask_feed(m, text + cut, n - cut, &out);
        mask_flush(m, &out);
        ASSERT_STR_EQ(buf_str(&out), "before *** middle *** after");
        buf_free(&out);
        mask_free(m);
    }
}

TEST(byte_at_a_time)
{
    const char *text = "xxTOKENxTOKTOKENTOKEN";
    struct mask *m = mask_new();
    struct buf out = BUF_INIT;

    mask_add(m, "TOKEN");
    for (size_t i = 0; text[i]; i++)
        mask_feed(m, text + i, 1, &out);
    /* Nothing that could still become a secret has been emitted. */
    ASSERT(strstr(buf_str(&out), "TOKE") == NULL);
    mask_flush(m, &out);
    ASSERT_STR_EQ(buf_str(&out), "xx***xTOK******");
    buf_free(&out);
    mask_free(m);
}

TEST(added_mid_stream_and_no_values)
{
    struct mask *m = mask_new();
    struct buf out = BUF_INIT;
    char *s;

    s = masked(m, "nothing to hide");
    ASSERT_STR_EQ(s, "nothing to hide");
    free(s);
    mask_feed(m, "abc ", 4, &out);
    mask_add(m, "abc");
    mask_feed(m, "abc", 3, &out);
    mask_flush(m, &out);
    ASSERT_STR_EQ(buf_str(&out), "abc ***");
    buf_free(&out);
    mask_free(m);
}
