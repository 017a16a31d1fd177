/* hashwalk.h: hashFiles() over a directory tree, libc only, shared by the host (daemon/
 * hashfiles.c) and runner-agent's --hash-files mode, so both give the same digest: glob
 * patterns (globmatch.h) relative to root, SHA-256 of each matching regular file in path byte
 * order, then SHA-256 over the concatenated raw digests, as lower-case hex; "" when nothing
 * matched. A first pattern --follow-symbolic-links follows symlinked directories; symlinks
 * leading outside root are ignored. Blocking: not for an event loop. */
#ifndef HASHWALK_H
#define HASHWALK_H

#include <stddef.h>

#define HASHWALK_HEX_SIZE 65

/* Returns 0 with the digest in hex, or a negative errno-style code with a one-line message
 * in msg (-EINVAL for bad options, else the failing call's errno, -ENOMEM, -E2BIG, -ELOOP). */
int hashwalk_compute(const char *root, const char *const *patterns, size_t n,
                     char hex[HASHWALK_HEX_SIZE], char *msg, size_t msglen);

#endif
