/* dockeropts.h: `container.options` / `services.<id>.options` (docker run flags as one string,
 * shell-word split) turned into additions to a container create body (spec
 * doc/workflow-semantics.md §14.4, doc/docker-engine.md §2.4).
 *
 * Supported: --health-cmd, --health-interval, --health-timeout, --health-retries,
 * --health-start-period, --no-healthcheck, -e/--env K=V, --entrypoint, -u/--user, -w/--workdir,
 * --hostname, --cpus, -m/--memory, --memory-swap, --pids-limit, --tmpfs PATH[:opts],
 * --shm-size, --add-host, --cap-add (a capability name; whether the label allows it is
 * dockeropts_check_caps()), --cap-drop, --label, --init, --privileged (only when allowed),
 * -v/--volume (returned in volumes, not applied). --network/--net and --security-opt are
 * refused (the runner owns networking and confinement), --entrypoint and --workdir too for a job
 * container (DOCKEROPTS_JOB: the agent is its entrypoint; steps run in the workspace, and
 * Docker would silently create a missing working directory), and limits cannot be switched off
 * (--pids-limit 0 or -1); anything else is an error naming the flag. Both "--flag value" and
 * "--flag=value" (short flags also "-eK=V" and "-e=K=V"). */
#ifndef RUNNER_DOCKEROPTS_H
#define RUNNER_DOCKEROPTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "runner/err.h"

/* flags for dockeropts_parse() */
#define DOCKEROPTS_ALLOW_PRIVILEGED 0x1
#define DOCKEROPTS_JOB 0x2 /* a job container: the agent is the entrypoint (no --entrypoint) and
                            * steps run in the workspace (no -w/--workdir) */
#define DOCKEROPTS_SKIP_UNKNOWN 0x4 /* only the flags the runner's policy is about are read
                                     * (privileged, security-opt, network, entrypoint, pids-limit,
                                     * cap-add, volume); others, known or not, are skipped: the
                                     * workflow loader's check of what is refused outright */

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

/* Checks that every capability o adds (--cap-add, kept as upper-case names without CAP_) is
 * in allowed (a NULL-terminated list of such names, from the label's cap_add; NULL: none is
 * allowed; "ALL" in allowed allows every one, and --cap-add ALL needs it). Returns 0, or
 * ERR_INVALID with e naming the capability ("WHAT: --cap-add SYS_ADMIN is not allowed ..."). */
int dockeropts_check_caps(const struct dockeropts *o, char *const *allowed, const char *what,
                          struct err *e);

/* Normalises a capability name ("cap_sys_admin", "SYS_ADMIN" -> "SYS_ADMIN"; "all" -> "ALL")
 * into a new string, or NULL when s is not one of the kernel's capability names. */
char *dockeropts_cap_name(const char *s);

/* Why volume v (as written in `volumes:` or -v) is refused, or NULL when it is allowed: host
 * paths (a SOURCE starting with '/', '.' or '~') are refused; named volumes (NAME:/path) and
 * anonymous ones (/path) are not. */
const char *dockeropts_volume_problem(const char *v);

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
