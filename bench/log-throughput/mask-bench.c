/* mask-bench.c: the masker alone, for bench/log-throughput/run. Masks MB megabytes of 100-byte
 * log lines (printable pseudo-random text, one line in 1,000 holding one of the secrets) with
 * N random secrets of 20-40 characters, and prints the throughput:
 *
 *   bench-mask MODE MB N     MODE: copy (each line copied into a reused buffer: the
 *                            memcpy-speed baseline), apply (mask_apply() per line into a
 *                            reused buffer, as the job run does), feed (mask_feed() of 64 KiB
 *                            chunks, then mask_flush())
 *
 * Output, one line: "MODE N MB seconds MB/s checksum". */
#include "mask.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE 100
#define TEXT (1000 * 1000) /* the text repeated until MB are masked */

static uint64_t seed = 0x2545f4914f6cdd1dull;

/* xorshift64*: the same text and secrets on every run. */
static uint32_t
rnd(uint32_t below)
{
    seed ^= seed >> 12;
    seed ^= seed << 25;
    seed ^= seed >> 27;
    return (uint32_t)((seed * 0x2545f4914f6cdd1dull) >> 33) % below;
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static const char text_chars[] =
        "abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;=/-_()[]";
    struct mask *m;
    char **secrets;
    char *text;
    size_t mb, n, total, done = 0;
    uint64_t sum = 0;
    struct buf out = BUF_INIT;
    double t0, dt;

    if (argc != 4 || (strcmp(argv[1], "copy") && strcmp(argv[1], "apply") &&
                      strcmp(argv[1], "feed"))) {
        fprintf(stderr, "usage: bench-mask copy|apply|feed MB SECRETS\n");
        return 2;
    }
    mb = strtoul(argv[2], NULL, 10);
    n = strtoul(argv[3], NULL, 10);
    total = mb * 1000 * 1000;
    m = mask_new();
    secrets = calloc(n ? n : 1, sizeof *secrets);
    for (size_t k = 0; k < n; k++) {
        size_t len = 20 + rnd(21);
        secrets[k] = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            secrets[k][i] = alnum[rnd(62)];
        secrets[k][len] = '\0';
        mask_add(m, secrets[k]);
    }
    text = malloc(TEXT);
    for (size_t at = 0, line = 0; at < TEXT; at += LINE, line++) {
        for (size_t i = 0; i < LINE - 1; i++)
            text[at + i] = text_chars[rnd(sizeof text_chars - 1)];
        text[at + LINE - 1] = '\n';
        if (n && line % 1000 == 0) {
            const char *s = secrets[rnd((uint32_t)n)];
            memcpy(text + at + 10, s, strlen(s));
        }
    }
    t0 = now();
    while (done < total) {
        size_t len = total - done < TEXT ? total - done : TEXT;
        if (argv[1][0] == 'f') {
            for (size_t at = 0; at < len; at += 65536) {
                buf_reset(&out);
                mask_feed(m, text + at, len - at < 65536 ? len - at : 65536, &out);
                sum += out.len;
            }
        } else {
            for (size_t at = 0; at < len; at += LINE) {
                size_t l = len - at < LINE ? len - at : LINE;
                buf_reset(&out);
                if (argv[1][0] == 'c')
                    buf_append(&out, text + at, l - 1);
                else
                    mask_apply(m, text + at, l - 1, &out); /* the line without its newline */
                sum += out.len + (unsigned char)out.data[0];
            }
        }
        done += len;
    }
    buf_reset(&out);
    mask_flush(m, &out);
    sum += out.len;
    dt = now() - t0;
    printf("%s %zu %zu %.4f %.1f %llu\n", argv[1], n, mb, dt, (double)total / 1e6 / dt,
           (unsigned long long)sum);
    buf_free(&out);
    for (size_t k = 0; k < n; k++)
        free(secrets[k]);
    free(secrets);
    free(text);
    mask_free(m);
    return 0;
}
