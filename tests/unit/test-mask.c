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

/* Rows cut from one long line: wherever the cut would fall, mask_cut() moves it so that no
 * value is split, and masking the rows one by one gives what masking the line gives. */
TEST(cut_never_splits_a_value)
{
    const char *secret = "hunter2secretXYZ";
    size_t sl = strlen(secret);
    struct mask *m = mask_new();

    mask_add(m, secret);
    mask_add(m, "XYZ");
    ASSERT_EQ(mask_maxlen(m), sl);
    for (size_t at = 0; at < 40; at++) {
        /* The secret at offset at of a 60-byte line, rows of at most 24 bytes. */
        char line[61];
        struct buf rows = BUF_INIT;
        size_t n = 60, off = 0;

        memset(line, '.', n);
        line[n] = '\0';
        memcpy(line + at, secret, sl);
        while (off < n) {
            size_t cut = mask_cut(m, line + off, n - off, 24);
            ASSERT(cut > 0 && cut <= 24);
            mask_apply(m, line + off, cut, &rows);
            off += cut;
        }
        ASSERT(strstr(buf_str(&rows), "hunter") == NULL);
        ASSERT(strstr(buf_str(&rows), "secret") == NULL);
        ASSERT(strstr(buf_str(&rows), "***") != NULL);
        buf_free(&rows);
    }
    /* Short text: no cut; no values: the limit. */
    ASSERT_EQ(mask_cut(m, "abc", 3, 24), 3);
    /* A value longer than the limit that starts the text stays whole. */
    ASSERT_EQ(mask_cut(m, "hunter2secretXYZ...", 19, 4), sl);
    mask_free(m);
    m = mask_new();
    ASSERT_EQ(mask_cut(m, "0123456789", 10, 4), 4);
    ASSERT_EQ(mask_maxlen(m), 0);
    mask_free(m);
}

/* The stateless helpers: they see values, never the tail a stream holds back. */
TEST(hits_str_shown_json)
{
    struct mask *m = mask_new();
    struct buf out = BUF_INIT;
    char *s;

    mask_add(m, "hunter2");
    mask_feed(m, "abc hun", 7, &out); /* "hun" is held back */
    ASSERT(mask_hits(m, "x hunter2 y", 11));
    ASSERT(!mask_hits(m, "x hunter y", 10));
    s = mask_str(m, "name hunter2");
    ASSERT_STR_EQ(s, "name ***");
    free(s);
    ASSERT(mask_str(m, NULL) == NULL);
    s = mask_shown(m, "\033]0;hunter2\007\033[2J\rx\\");
    ASSERT_STR_EQ(s, "\\x1b]0;***\\x07\\x1b[2J\\x0dx\\x5c");
    free(s);
    s = mask_shown(m, NULL);
    ASSERT_STR_EQ(s, "");
    free(s);
    json_t *in = json_pack("{s:s, s:[s, i], s:{s:s}}", "name", "a hunter2", "list", "hunter2", 1,
                           "hunter2-key", "v", "hunter2"), *o = mask_json(m, in);
    char *dump = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    ASSERT_STR_EQ(dump, "{\"***-key\":{\"v\":\"***\"},\"list\":[\"***\",1],\"name\":\"a ***\"}");
    free(dump);
    json_decref(o);
    json_decref(in);
    /* The stream goes on as if nothing happened. */
    mask_feed(m, "ter2!", 5, &out);
    mask_flush(m, &out);
    ASSERT_STR_EQ(buf_str(&out), "abc ***!");
    buf_free(&out);
    /* Values of an object, such as the secrets context. */
    json_t *secrets = json_pack("{s:s, s:i, s:s}", "A", "alpha-secret", "B", 3, "C", "");
    mask_add_values(m, secrets);
    ASSERT_EQ(mask_count(m), 2);
    json_decref(secrets);
    mask_free(m);
}
