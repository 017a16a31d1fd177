/* sha256.h: SHA-256 (FIPS 180-4 §6.2), libc only. Used by the static agent's --hash-files;
 * the host uses OpenSSL. */
#ifndef SHA256_H
#define SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_BLOCK_LEN 64

struct sha256 {
    uint32_t h[8];                     /* intermediate hash value H(i) */
    uint64_t nbytes;                   /* message length so far, in bytes */
    uint8_t block[SHA256_BLOCK_LEN];   /* partial message block */
    size_t fill;                       /* bytes used in block */
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
/* Pads, writes the digest (big-endian words) and leaves c to be re-initialised. */
void sha256_final(struct sha256 *c, uint8_t out[SHA256_DIGEST_LEN]);

#endif
