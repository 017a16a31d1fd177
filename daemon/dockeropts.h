/* dockeropts.h: `container.options` / `services.<id>.options` (docker run flags as one string,
 * shell-word split) turned into additions to a container create body (spec
 * workflow-semantics.md §14.4, docker-engine.md §2.4).
 *
 * Supported: --health-cmd, --health-interval, --health-timeout, --health-retries,
 * --health-start-period, --no-healthcheck, -e/--env K=V, --entrypoint, -u/--user, -w/--workdir,
 * --hostname, --cpus, -m/--memory, --memory-swap, --pids-limit, --tmpfs PATH[:opts],
 * --shm-size, --add-host, --cap-add, --cap-drop, --label, --init, --privileged (only when
 * allowed), -v/--volume (returned in volumes, not applied). --network/--net are refused (the
 * runner owns networking); anything else is an error naming the flag. Both "--flag value" and
 * "--flag=value" (short flags also "-eK=V" and "-e=K=V"). */
#ifndef RUNNER_DOCKEROPTS_H
#define RUNNER_DOCKEROPTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "runner/err.h"

/* flags for dockeropts_parse() */
#define DOCKEROPTS_ALLOW_PRIVILEGED 0x1

struct dockeropts {
    /* Additions in create-body form: Env, Entrypoint, User, WorkingDir, Hostname, Labels,
     * Healthcheck, HostConfig{NanoCpus, Memory, MemorySwap, PidsLimit, Tmpfs, ShmSize,
     * ExtraHosts, CapAdd, CapDrop, Privileged, Init}. Owned; always an object after success. */
    json_t *body;
    char **volumes; /* -v values as written, NULL-terminated (never NULL after success) */
    size_t nvolumes;
    bool privileged; /* --privileged was given (and allowed) */
};

/* Splits a string into words like a POSIX shell does (no expansion): blanks separate, '...'
 * literal, "..." with \\ \" \$ \` escapes, \x outside quotes. Returns 0 and *out (a new
 * NULL-terminated array; free with dockeropts_words_free()) and *n, or ERR_INVALID for an
 * unterminated quote or trailing backslash (message prefixed with what). */
int dockeropts_split(const char *s, const char *what, char ***out, size_t *n, struct err *e);
void dockeropts_words_free(char **w);

/* Parses s (may be NULL or empty: nothing) into *o. what prefixes messages, e.g.
 * "container.options" or "services.db.options". Returns 0, or ERR_INVALID with e set
 * ("container.options: unsupported option '--foo'"); *o is then empty. Free with
 * dockeropts_free() in both cases. */
int dockeropts_parse(const char *s, const char *what, unsigned flags, struct dockeropts *o,
                     struct err *e);
void dockeropts_free(struct dockeropts *o);

/* Merges o->body into a create body: Env, CapAdd, CapDrop, ExtraHosts appended; Labels, Tmpfs,
 * Healthcheck fields set (labels already in body win, so runner labels cannot be replaced);
 * other fields replace. HostConfig is created when missing. body is modified in place. */
void dockeropts_merge(json_t *body, const struct dockeropts *o);

/* Go-style duration ("10s", "1m30s", "500ms", "1.5h", "0") to nanoseconds. Returns 0 or
 * ERR_INVALID (no message). */
int dockeropts_duration(const char *s, long long *ns);
/* Docker's RAMInBytes: "512", "64k", "1.5g", "2GiB", "100mb" (binary units). Returns 0 or
 * ERR_INVALID (no message). */
int dockeropts_size(const char *s, long long *bytes);

#endif
