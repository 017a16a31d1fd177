/* test-sha256.c: lib/sha256.c (the agent's libc-only SHA-256) against the FIPS 180-2/NIST
 * example vectors ("", "abc", the 448-bit and 896-bit messages, one million 'a'), updates split
 * at every offset, and OpenSSL for every length across the padding boundaries. */
#include "harness.h"

#include "sha256.h"

#include <openssl/evp.h>

static void
hex(const uint8_t md[SHA256_DIGEST_LEN], char out[2 * SHA256_DIGEST_LEN + 1])
{
    for (size_t i = 0; i < SHA256_DIGEST_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
check(const char *msg, const char *want)
{
    struct sha256 c;
    uint8_t md[SHA256_DIGEST_LEN];
    char got[2 * SHA256_DIGEST_LEN + 1];

    sha256_init(&c);
    sha256_update(&c, msg, strlen(msg));
    sha256_final(&c, md);
    hex(md, got);
    ASSERT_STR_EQ(got, want);
}

#define ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define M448 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define M448_MD "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define M896                                                                                       \
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno" \
    "pqrsmnopqrstnopqrstu"
#define M896_MD "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"

TEST(empty)
{
    check("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(abc)
{
    check("abc", ABC);
}

TEST(message_448_bits)
{
    check(M448, M448_MD);
}

TEST(message_896_bits)
{
    check(M896, M896_MD);
}

TEST(one_million_a)
{
    struct sha256 c;
    uint8_t md[SHA256_DIGEST_LEN];
    char got[2 * SHA256_DIGEST_LEN + 1], chunk[1000];

    memset(chunk, 'a', sizeof chunk);
    sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        sha256_update(&c, chunk, sizeof chunk);
    sha256_final(&c, md);
    hex(md, got);
    ASSERT_STR_EQ(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(split_updates)
{
    const char *msg = M896;
    size_t len = strlen(msg);

    /* Every split point, plus byte-at-a-time and empty updates in between. */
    for (size_t cut = 0; cut <= len; cut++) {
        struct sha256 c;
        uint8_t md[SHA256_DIGEST_LEN];
        char got[2 * SHA256_DIGEST_LEN + 1];

        sha256_init(&c);
        sha256_update(&c, msg, cut);
        sha256_update(&c, "", 0);
        sha256_update(&c, msg + cut, len - cut);
        sha256_final(&c, md);
        hex(md, got);
        ASSERT_STR_EQ(got, M896_MD);
    }
    struct sha256 c;
    uint8_t md[SHA256_DIGEST_LEN];
    char got[2 * SHA256_DIGEST_LEN + 1];

    sha256_init(&c);
    for (size_t i = 0; i < len; i++)
        sha256_update(&c, msg + i, 1);
    sha256_final(&c, md);
    hex(md, got);
    ASSERT_STR_EQ(got, M896_MD);
    /* The context is reusable after sha256_init(). */
    sha256_init(&c);
    sha256_update(&c, "abc", 3);
    sha256_final(&c, md);
    hex(md, got);
    ASSERT_STR_EQ(got, ABC);
}

TEST(matches_openssl_for_every_length)
{
    uint8_t data[300];

    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 0; len <= sizeof data; len++) {
        struct sha256 c;
        uint8_t md[SHA256_DIGEST_LEN], ref[SHA256_DIGEST_LEN];
        char got[2 * SHA256_DIGEST_LEN + 1], want[2 * SHA256_DIGEST_LEN + 1];
        unsigned int rl = 0;

        sha256_init(&c);
        sha256_update(&c, data, len / 3);
        sha256_update(&c, data + len / 3, len - len / 3);
        sha256_final(&c, md);
        ASSERT(EVP_Digest(data, len, ref, &rl, EVP_sha256(), NULL) == 1);
        ASSERT_EQ(rl, SHA256_DIGEST_LEN);
        hex(md, got);
        hex(ref, want);
        ASSERT_STR_EQ(got, want);
    }
}
