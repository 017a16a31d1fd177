/* dockerexec-upload.c: what goes into the created job container before it starts, through the
 * archive API: runner-agent, the workflow directory and the workspace (a copy of the source,
 * unless it is bound), built off the loop from the setup's start on. */
#include "dockerexec-int.h"

#include "fstree.h"
#include "runner/buf.h"
#include "runner/log.h"
#include "runner/xalloc.h"
#include "tar.h"
#include "wswalk.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void
on_uploaded(const struct docker_res *res, void *arg)
{
    struct docker_exec *dx = arg;

    tar_free(&dx->tar);
    if (!dockerexec_proceed(dx, res))
        return;
    if (dx->late_upload) {
        dockerexec_ready(dx);
        return;
    }
    dx->uploaded = true;
    dockerexec_start(dx);
}

/* What is copied in: without the agent's entries when it is bound. */
static const char *
upload_data(const struct docker_exec *dx)
{
    return dx->tar.out.data + (dx->agent_bind ? dx->tar_agent_end : 0);
}

static size_t
upload_len(const struct docker_exec *dx)
{
    return dx->tar.out.len - (dx->agent_bind ? dx->tar_agent_end : 0);
}

/* Reads a file into memory (worker thread). */
static int
slurp(const char *path, char **data, size_t *len, struct err *e)
{
    struct buf b = BUF_INIT;
    int rc = buf_read_file(&b, path, MAX_UPLOAD, "file to copy into the workspace (use --bind)", e);

    *len = b.len;
    *data = buf_steal(&b);
    return rc;
}

/* Adds one workspace entry to the upload (worker thread, through wswalk). Symlinks go in as
 * symlinks, whatever they point at (relative, absolute, dangling, out of the workspace): a link
 * is data in the container, and the host never follows one while copying. A regular file is
 * read through its directory without following a link that replaced it since the walk. */
static int
add_entry(const char *rel, const char *abs, const struct stat *st, void *arg, struct err *e)
{
    struct docker_exec *dx = arg;
    char *path = xasprintf("." WORKSPACE "/%s", rel);
    int rc = 0;

    /* Each entry keeps its file's mtime: zip and wheel builds refuse the 1970 of a 0. */
    dx->tar.mtime = st->st_mtime > 0 ? (long long)st->st_mtime : (long long)time(NULL);
    if (S_ISDIR(st->st_mode)) {
        rc = tar_add_dir(&dx->tar, path, st->st_mode & 07777, e);
    } else if (S_ISREG(st->st_mode)) {
        struct buf b = BUF_INIT;
        rc = fstree_read_beneath(dx->source, rel, &b, MAX_UPLOAD,
                                 "file to copy into the workspace (use --bind)", e);
        if (rc == 0)
            rc = tar_add_file(&dx->tar, path, st->st_mode & 07777, b.data, b.len, e);
        buf_free(&b);
    } else if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(abs, target, sizeof target - 1);
        if (n < 0) {
            rc = err_set(e, -errno, "%s: %s", abs, strerror(errno));
        } else {
            target[n] = '\0';
            rc = tar_add_symlink(&dx->tar, path, target, e);
        }
    }
    /* Sockets, fifos and devices are not copied: they have no content to carry. */
    dx->ws_entries++;
    if (rc == 0 && dx->tar.out.len > MAX_UPLOAD)
        rc = err_set(e, -EFBIG, "the repository is over %llu MiB: use --bind", MAX_UPLOAD >> 20);
    free(path);
    return rc;
}

static void
build_work(uv_work_t *w)
{
    struct docker_exec *dx = w->data;
    char *agent = NULL;
    size_t alen = 0;

    tar_init(&dx->tar);
    dx->tar_rc = slurp(dx->agent_path, &agent, &alen, &dx->tar_err);
    if (dx->tar_rc == 0)
        dx->tar_rc = tar_add_dir(&dx->tar, "." AGENT_DIR, 0755, &dx->tar_err);
    if (dx->tar_rc == 0)
        dx->tar_rc = tar_add_file(&dx->tar, "." AGENT_DIR "/agent", 0755, agent, alen,
                                  &dx->tar_err);
    free(agent);
    /* A bound agent (dockerexec_agent_bind()) skips these entries; they stay for the
     * container created again without the bind. */
    dx->tar_agent_end = dx->tar.out.len;
    /* The volume's top directory, where the agent makes its journal (JOURNAL): root's 0755 as
     * the engine makes it, so a container running as another user needs it writable; sticky,
     * so that no user removes or replaces another's file there. */
    if (dx->tar_rc == 0)
        dx->tar_rc = tar_add_dir(&dx->tar, "./var/run/act", 01777, &dx->tar_err);
    if (dx->tar_rc == 0)
        dx->tar_rc = tar_add_dir(&dx->tar, "./var/run/act/workflow", 0777, &dx->tar_err);
    /* A bound workspace is the user's own directory: an entry for it would be unpacked over
     * the bind (its mode, owner and times). Only the volume gets one. */
    if (dx->tar_rc == 0 && !(dx->bind && dx->source))
        dx->tar_rc = tar_add_dir(&dx->tar, "." WORKSPACE, 0777, &dx->tar_err);
    if (dx->tar_rc == 0 && dx->source && !dx->bind)
        dx->tar_rc = wswalk(dx->source, add_entry, dx, &dx->tar_err);
    tar_finish(&dx->tar);
}

static void
build_after(uv_work_t *w, int status)
{
    struct docker_exec *dx = w->data;

    dx->pending--;
    if (dx->closing || status == UV_ECANCELED) {
        tar_free(&dx->tar);
        if (dx->closing)
            dockerexec_close(&dx->x); /* finish the close that waited for the worker */
        return;
    }
    if (dx->tar_rc < 0) {
        tar_free(&dx->tar);
        dockerexec_fail(dx, &dx->tar_err);
        return;
    }
    dx->tar_built = true;
    log_trace("upload built (%zu bytes)", dx->tar.out.len);
    if (dx->ctr_id && !dx->failed)
        dockerexec_upload_put(dx);
}

/* Starts building the upload (the agent, the workspace's directories and, unless bound, its
 * files) off the loop, while the engine resolves the image and creates the container. Returns
 * 0, or <0 with e set. */
int
dockerexec_upload_build(struct docker_exec *dx, struct err *e)
{
    dx->work.data = dx;
    if (uv_queue_work(dx->x.loop, &dx->work, build_work, build_after) != 0)
        return err_set(e, -EIO, "cannot queue the upload");
    dx->pending++;
    return 0;
}

/* Copies the upload into the created container, once both are there (the second of the two
 * calls it); dockerexec_start() follows. */
void
dockerexec_upload_put(struct docker_exec *dx)
{
    struct err e = {0};

    if (!dx->tar_built || dx->ctr_id == NULL)
        return;
    dx->tar_built = false; /* once */
    if (dx->agent_bind && dx->ws_entries == 0 && dx->as_root) {
        /* Only the workflow and workspace directories: the engine's archive call costs about
         * 50 ms before the start whatever its size, and the setup probe makes them as well
         * (dockerexec.c); the archive is kept in case it cannot. Only as root: another user's
         * agent could not make its journal in the volume's root-owned top directory. */
        dx->dirs_by_probe = true;
        dx->uploaded = true;
        dockerexec_start(dx);
        return;
    }
    if (dockerexec_flying(dx, docker_archive_put(dx->d, dx->ctr_id, "/", upload_data(dx),
                                                 upload_len(dx), on_uploaded, dx, &e)) < 0) {
        tar_free(&dx->tar);
        dockerexec_fail(dx, &e);
    }
}

/* dockerexec-int.h */
void
dockerexec_upload_late(struct docker_exec *dx)
{
    struct err e = {0};

    dx->late_upload = true;
    if (dockerexec_flying(dx, docker_archive_put(dx->d, dx->ctr_id, "/", upload_data(dx),
                                                 upload_len(dx), on_uploaded, dx, &e)) < 0) {
        tar_free(&dx->tar);
        dockerexec_fail(dx, &e);
    }
}
