/* actbuild.h: the image of a docker action whose runs.image is a Dockerfile (spec
 * doc/workflow-semantics.md §12.5): the action's files are packed into a build context (off the
 * loop, on libuv's pool) and built by the engine (docker_image_build). As in act and GitHub's
 * runner, the context is the Dockerfile's own directory: runs.image "docker/Dockerfile" builds
 * DIR/docker, so the Dockerfile's COPY lines name files beside it. */
#ifndef RUNNER_ACTBUILD_H
#define RUNNER_ACTBUILD_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "docker.h"
#include "runner/err.h"

#define ACTBUILD_CAP_DEFAULT (256u << 20)

struct actbuild;

/* Everything is borrowed and only read during actbuild_start(). */
struct actbuild_req {
    const char *dir;        /* the action's directory on the host; with tar set, only named in
                               messages (e.g. the directory in the job container) */
    const char *root;       /* or NULL: dir; the directory dir lies in (dir itself or below),
                               e.g. the fetched repository of an action in a sub-path: the
                               Dockerfile and the context are found beneath it, and no symlink
                               leads out of it (refused: "DIR: a symbolic link in REL leads out
                               of ROOT"). Unused with tar */
    const void *tar;        /* or NULL: the action's files as a tar (copied), e.g. what
                               docker_archive_get() returns for a directory, whose entries are
                               prefixed by its basename ("act/Dockerfile") */
    size_t tar_len;
    const char *dockerfile; /* relative to dir, or to the tar's root: as runs.image says
                               ("Dockerfile", "docker/Dockerfile"; "act/Dockerfile" in the tar
                               above); NULL: "Dockerfile". Refused when absolute or containing
                               ".." components ("." components and doubled '/' are dropped) */
    const char *tag;        /* e.g. action_docker_tag(name) from action.h; may be NULL */
    json_t *labels;         /* image labels (object string->string), may be NULL */
    size_t cap;             /* largest context in bytes (0: ACTBUILD_CAP_DEFAULT) */
};

/* Called exactly once per successful actbuild_start(), from the loop and never from inside
 * actbuild_start() or actbuild_cancel(): rc 0 and image_id ("sha256:<64 hex>", borrowed for
 * the call), or rc<0 with e ("DIR: no Dockerfile at docker/Dockerfile", "DIR: build context
 * over 256 MiB", "DIR: build image TAG: The command '/bin/sh -c exit 3' returned a non-zero
 * code: 3", ERR_CANCELED "DIR: image build canceled") and image_id NULL. The actbuild is
 * freed right after done returns. */
typedef void (*actbuild_done_fn)(void *arg, int rc, const struct err *e, const char *image_id);

/* Starts building. progress (may be NULL) gets each line of the build's output ("Step 1/3 :
 * FROM ..."). Returns 0 and *out (may be NULL; valid until done returns), or <0 with e set and
 * no callback: a refused dockerfile path (ERR_INVALID), a tar over the cap (-EFBIG). loop must
 * be the loop d runs on; d must outlive the build (until done). */
int actbuild_start(uv_loop_t *loop, struct docker *d, const struct actbuild_req *req,
                   void (*progress)(void *arg, const char *line), actbuild_done_fn done,
                   void *arg, struct actbuild **out, struct err *e);

/* Stops the build: packing not begun yet never runs, a build in the engine is aborted (the
 * engine stops it and removes its container when the connection closes). done follows, later
 * and from the loop, with ERR_CANCELED, once nothing is in flight (a packing already running
 * on the pool is waited for). Safe to call more than once and from progress; not after done. */
void actbuild_cancel(struct actbuild *b);

#endif
