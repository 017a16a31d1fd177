/* test-mask.c: secret masking: several values, longest first, multi-line values and their
 * lines, values split across chunks at every possible point, byte-at-a-time feeding, values
 * added mid-stream, and pass-through with no values; overlapping values (leftmost wins, then
 * the longest), a value that is a prefix of another split right after the shorter one, 1,000
 * values, and random texts, values and chunkings against a naive reference (feed, apply,
 * hits, cut). */
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

/* The reference the masker must agree with: at each position from the left, the longest value
 * that matches there is replaced, and the walk goes on after it. */
struct naive {
    char **v;
    size_t n;
};

static size_t
naive_at(const struct naive *r, const char *p, size_t i, size_t n)
{
    size_t best = 0;

    for (size_t k = 0; k < r->n; k++) {
        size_t l = strlen(r->v[k]);
        if (l > best && l <= n - i && memcmp(p + i, r->v[k], l) == 0)
            best = l;
    }
    return best;
}

static char *
naive_mask(const struct naive *r, const char *p, size_t n)
{
    struct buf out = BUF_INIT;

    for (size_t i = 0; i < n;) {
        size_t l = naive_at(r, p, i, n);
        if (l) {
            buf_puts(&out, MASK_TEXT);
            i += l;
        } else {
            buf_putc(&out, p[i++]);
        }
    }
    return buf_steal(&out);
}

static size_t
naive_cut(const struct naive *r, const char *p, size_t n, size_t limit)
{
    size_t i = 0;

    if (n <= limit)
        return n;
    while (i < limit) {
        size_t l = naive_at(r, p, i, n);
        if (l == 0) {
            i++;
            continue;
        }
        if (i + l > limit)
            return i > 0 ? i : l;
        i += l;
    }
    return limit;
}

/* A deterministic PRNG (xorshift64*), so that a failure can be replayed. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t
rng(uint32_t below)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % below;
}

/* Feeds text in chunks cut at the given points and flushes. */
static char *
fed(struct mask *m, const char *text, size_t n, const size_t *cuts, size_t ncuts)
{
    struct buf out = BUF_INIT;
    size_t at = 0;

    for (size_t k = 0; k < ncuts; k++) {
        mask_feed(m, text + at, cuts[k] - at, &out);
        at = cuts[k];
    }
    mask_feed(m, text + at, n - at, &out);
    mask_flush(m, &out);
    return buf_steal(&out);
}

TEST(overlapping_values_leftmost_then_longest)
{
    struct mask *m = mask_new();
    char *s;

    mask_add(m, "abcd");
    mask_add(m, "cdef");
    mask_add(m, "bc");
    /* "bc" is seen first but "abcd" starts further left. */
    s = masked(m, "xabcdefx");
    ASSERT_STR_EQ(s, "x***efx");
    free(s);
    s = masked(m, "xbcdefx");
    ASSERT_STR_EQ(s, "x***defx");
    free(s);
    s = masked(m, "xcdefbcx");
    ASSERT_STR_EQ(s, "x******x");
    free(s);
    mask_free(m);
}

/* A value that is a prefix of a longer one: the longer wins, also when the stream is cut
 * right after the shorter (the shorter must not be taken before the rest is seen). */
TEST(prefix_value_split_after_the_shorter)
{
    const char *text = "ab-ababcdef-abcdeX-abcdef";
    const char *want = "***-******-***cdeX-***";
    size_t n = strlen(text);
    struct mask *m = mask_new();
    char *s;

    mask_add(m, "ab");
    mask_add(m, "abcdef");
    s = masked(m, text);
    ASSERT_STR_EQ(s, want);
    free(s);
    for (size_t cut = 0; cut <= n; cut++) {
        s = fed(m, text, n, &cut, 1);
        ASSERT_STR_EQ(s, want);
        free(s);
    }
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            size_t cuts[2] = {a, b};
            s = fed(m, text, n, cuts, 2);
            ASSERT_STR_EQ(s, want);
            free(s);
        }
    {
        struct buf out = BUF_INIT;
        for (size_t i = 0; i < n; i++)
            mask_feed(m, text + i, 1, &out);
        ASSERT(strstr(buf_str(&out), "cdef") == NULL);
        mask_flush(m, &out);
        ASSERT_STR_EQ(buf_str(&out), want);
        buf_free(&out);
    }
    mask_free(m);
}

/* Secrets split across feeds at every offset, each secret at every offset of the text. */
TEST(values_split_at_every_offset)
{
    const char *vals[] = {"s3cr3t", "s3cr3t-value-long", "t-val", "alue", "a"};
    struct naive r = {(char **)(uintptr_t)vals, 5};
    struct mask *m = mask_new();

    for (size_t k = 0; k < r.n; k++)
        mask_add(m, vals[k]);
    for (size_t k = 0; k < r.n; k++) {
        for (size_t at = 0; at < 8; at++) {
            char text[64];
            size_t n;
            memset(text, '.', at);
            strcpy(text + at, vals[k]);
            strcat(text, "..s3cr3t-value-lon");
            n = strlen(text);
            char *want = naive_mask(&r, text, n);
            for (size_t cut = 0; cut <= n; cut++) {
                char *s = fed(m, text, n, &cut, 1);
                ASSERT_STR_EQ(s, want);
                free(s);
            }
            free(want);
        }
    }
    mask_free(m);
}

static char *
random_value(size_t len, const char *alphabet, size_t na)
{
    char *v = malloc(len + 1);

    for (size_t i = 0; i < len; i++)
        v[i] = alphabet[rng((uint32_t)na)];
    v[len] = '\0';
    return v;
}

TEST(thousand_values)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct naive r = {calloc(1000, sizeof(char *)), 1000};
    struct mask *m = mask_new();
    struct buf text = BUF_INIT;

    for (size_t k = 0; k < r.n; k++) {
        r.v[k] = random_value(8 + rng(33), alnum, 62);
        mask_add(m, r.v[k]);
    }
    ASSERT_EQ(mask_count(m), 1000);
    ASSERT(mask_maxlen(m) <= 40);
    /* Every value once, between random text. */
    for (size_t k = 0; k < r.n; k++) {
        char *filler = random_value(rng(20), alnum, 62);
        buf_puts(&text, filler);
        buf_puts(&text, " ");
        buf_puts(&text, r.v[k]);
        buf_puts(&text, " ");
        free(filler);
    }
    char *want = naive_mask(&r, text.data, text.len);
    char *s = masked(m, buf_str(&text));
    ASSERT_STR_EQ(s, want);
    free(s);
    for (size_t k = 0; k < r.n; k++)
        ASSERT(strstr(want, r.v[k]) == NULL);
    size_t cuts[64];
    for (size_t k = 0; k < 64; k++)
        cuts[k] = text.len * k / 64 + rng(7);
    s = fed(m, text.data, text.len, cuts, 64);
    ASSERT_STR_EQ(s, want);
    free(s);
    free(want);
    buf_free(&text);
    for (size_t k = 0; k < r.n; k++)
        free(r.v[k]);
    free(r.v);
    mask_free(m);
}

/* Random values over a small alphabet (so they overlap, nest and repeat), random texts made
 * partly of those values, random chunkings: feeding, applying, hits and cuts agree with the
 * reference. */
TEST(random_against_reference)
{
    static const char ab[] = "abc\n";

    for (int round = 0; round < 3000; round++) {
        struct naive r = {calloc(8, sizeof(char *)), 1 + rng(8)};
        struct mask *m = mask_new();
        struct buf text = BUF_INIT;
        size_t n, maxlen = 0;

        for (size_t k = 0; k < r.n; k++) {
            r.v[k] = random_value(1 + rng(round % 4 == 0 ? 12 : 5), ab, 3);
            mask_add(m, r.v[k]);
            if (strlen(r.v[k]) > maxlen)
                maxlen = strlen(r.v[k]);
        }
        ASSERT_EQ(mask_maxlen(m), maxlen);
        n = rng(120);
        while (text.len < n) {
            if (rng(3) == 0) {
                buf_puts(&text, r.v[rng((uint32_t)r.n)]);
            } else {
                char c = ab[rng(4)];
                buf_append(&text, &c, 1);
            }
        }
        n = text.len;
        const char *t = buf_str(&text);
        char *want = naive_mask(&r, t, n);
        struct buf out = BUF_INIT;
        mask_apply(m, t, n, &out);
        ASSERT_STR_EQ(buf_str(&out), want);
        buf_free(&out);
        char *s = mask_str(m, t);
        ASSERT_STR_EQ(s, want);
        free(s);
        size_t cuts[6], nc = rng(7);
        for (size_t k = 0; k < nc; k++)
            cuts[k] = n ? rng((uint32_t)n + 1) : 0;
        for (size_t k = 1; k < nc; k++) /* insertion sort */
            for (size_t j = k; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t x = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = x;
            }
        s = fed(m, t, n, cuts, nc);
        ASSERT_STR_EQ(s, want);
        free(s);
        /* Byte at a time. */
        for (size_t i = 0; i < n; i++)
            mask_feed(m, t + i, 1, &out);
        mask_flush(m, &out);
        ASSERT_STR_EQ(buf_str(&out), want);
        buf_free(&out);
        bool hit = false;
        for (size_t i = 0; i < n && !hit; i++)
            hit = naive_at(&r, t, i, n) > 0;
        ASSERT_EQ(mask_hits(m, t, n), hit);
        for (size_t limit = 1; limit < 12 && limit < n; limit++)
            ASSERT_EQ(mask_cut(m, t, n, limit), naive_cut(&r, t, n, limit));
        free(want);
        buf_free(&text);
        for (size_t k = 0; k < r.n; k++)
            free(r.v[k]);
        free(r.v);
        mask_free(m);
    }
}

/* Values added while a stream holds bytes back: the held bytes are read again with them. */
TEST(added_while_holding_after_a_build)
{
    struct mask *m = mask_new();
    struct buf out = BUF_INIT;
    char *s;

    mask_add(m, "xyz-long");
    mask_feed(m, "abc xyz", 7, &out); /* "xyz" held */
    s = mask_str(m, "xyz-long"); /* builds the automaton */
    ASSERT_STR_EQ(s, "***");
    free(s);
    mask_add(m, "xyz");
    mask_add(m, "z!");
    s = mask_str(m, "a xyz"); /* rebuilds it, away from the stream */
    ASSERT_STR_EQ(s, "a ***");
    free(s);
    mask_feed(m, "-lonG", 5, &out);
    mask_flush(m, &out);
    ASSERT_STR_EQ(buf_str(&out), "abc ***-lonG");
    buf_free(&out);
    mask_free(m);
}

/* More two-byte prefixes than there are rows for (the rest walk by children and links), and
 * values holding every byte but NUL, high bytes included (a class per byte, none left over). */
TEST(many_prefixes_and_every_byte)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct naive r = {calloc(5001, sizeof(char *)), 5001};
    struct mask *m = mask_new();
    struct buf text = BUF_INIT;

    for (size_t k = 0; k < 5000; k++) {
        r.v[k] = random_value(3 + rng(4), alnum, 62);
        mask_add(m, r.v[k]);
    }
    r.v[5000] = malloc(256);
    for (int c = 1; c < 256; c++)
        r.v[5000][c - 1] = (char)(256 - c);
    r.v[5000][255] = '\0';
    mask_add(m, r.v[5000]);
    for (size_t k = 0; k < 2000; k++) {
        char c = (char)(1 + rng(255));
        if (rng(50) == 0)
            buf_puts(&text, r.v[rng(5001)]);
        else if (rng(2))
            buf_append(&text, &alnum[rng(62)], 1);
        else
            buf_append(&text, &c, 1);
    }
    char *want = naive_mask(&r, text.data, text.len);
    char *s = masked(m, buf_str(&text));
    ASSERT_STR_EQ(s, want);
    free(s);
    size_t cuts[3] = {text.len / 4, text.len / 2, text.len / 2 + 1};
    s = fed(m, text.data, text.len, cuts, 3);
    ASSERT_STR_EQ(s, want);
    free(s);
    free(want);
    buf_free(&text);
    for (size_t k = 0; k < r.n; k++)
        free(r.v[k]);
    free(r.v);
    mask_free(m);
}

/* The attack of issue 16: a step printing 100,000 ::add-mask:: lines, each followed by a line
 * of output (so the matcher is used, and rebuilt, after every value). The values within the
 * caps are masked; the first one past a cap makes the mask hide all text, so that it is not
 * shown in clear either; the mask's memory stays bounded (uncapped, 100,000 values of 30
 * bytes would take over 100 MB of matcher). The job's starting secrets do not count. */
TEST(job_values_capped_then_all_hidden)
{
    struct mask *m = mask_new();
    char v[64], line[128];
    size_t added = 0, first_refused = 0;
    char *s;

    for (int k = 0; k < 3000; k++) { /* secrets the job starts with: not capped */
        snprintf(v, sizeof v, "start-secret-%05d", k);
        mask_add(m, v);
    }
    for (size_t k = 0; k < 100000; k++) {
        snprintf(v, sizeof v, "flood-%06zu-abcdefghijklmnopq", k);
        if (mask_add_job(m, v)) {
            ASSERT(first_refused == 0);
            added++;
        } else if (first_refused == 0) {
            first_refused = k;
        }
        snprintf(line, sizeof line, "out %s end", v);
        s = masked(m, line);
        ASSERT_STR_EQ(s, first_refused ? "***" : "out *** end");
        free(s);
    }
    ASSERT_EQ(added, MASK_JOB_MAX_VALUES);
    ASSERT_EQ(first_refused, MASK_JOB_MAX_VALUES);
    ASSERT(mask_hides_all(m));
    ASSERT(mask_size(m) <= 16u * 1024 * 1024);
    /* Everything is hidden now, by every function; an empty text stays empty. */
    s = masked(m, "start-secret-00001 and plain text");
    ASSERT_STR_EQ(s, "***");
    free(s);
    s = masked(m, "");
    ASSERT_STR_EQ(s, "");
    free(s);
    ASSERT(mask_hits(m, "x", 1));
    ASSERT(!mask_hits(m, "", 0));
    s = mask_str(m, "flood-099999-abcdefghijklmnopq");
    ASSERT_STR_EQ(s, "***");
    free(s);
    ASSERT_EQ(mask_cut(m, "abcdef", 6, 3), 3);
    {
        struct buf out = BUF_INIT;
        mask_feed(m, "flood-0999", 10, &out);
        mask_feed(m, "99-abc", 6, &out);
        mask_flush(m, &out);
        mask_flush(m, &out);
        ASSERT_STR_EQ(buf_str(&out), "***");
        buf_free(&out);
    }
    mask_free(m);
}

/* The byte cap, with multi-line values weighed with their lines; a value added again costs
 * nothing; a stream's held-back text is hidden when the cap is passed in its middle;
 * mask_hide_all() (a resumed job) hides at once. */
TEST(job_bytes_cap_and_repeats)
{
    struct mask *m = mask_new();
    size_t big = MASK_JOB_MAX_BYTES / 4;
    char *v = malloc(big + 1);
    struct buf out = BUF_INIT;
    char *s;

    for (size_t k = 0; k < 100000; k++)
        ASSERT(mask_add_job(m, "the-same-value"));
    ASSERT(!mask_hides_all(m));
    memset(v, 'x', big);
    v[big / 2] = '\n'; /* two lines: weighs 2 * big bytes */
    v[big] = '\0';
    ASSERT(mask_add_job(m, v));
    v[0] = 'y';
    ASSERT(!mask_hides_all(m));
    s = masked(m, "a the-same-value b");
    ASSERT_STR_EQ(s, "a *** b");
    free(s);
    mask_feed(m, "pre the-same-va", 15, &out); /* "the-same-va" is held back */
    ASSERT(mask_add_job(m, "small") && !mask_hides_all(m));
    ASSERT(!mask_add_job(m, v)); /* 2 * big more passes the cap */
    ASSERT(mask_hides_all(m));
    mask_feed(m, "lue post", 8, &out);
    mask_flush(m, &out);
    ASSERT(strstr(buf_str(&out), "the-same") == NULL && strstr(buf_str(&out), "lue") == NULL);
    ASSERT(strstr(buf_str(&out), "***") != NULL);
    buf_free(&out);
    free(v);
    mask_free(m);

    m = mask_new();
    mask_add(m, "k");
    mask_hide_all(m);
    s = mask_str(m, "plain");
    ASSERT_STR_EQ(s, "***");
    free(s);
    mask_free(m);
}
