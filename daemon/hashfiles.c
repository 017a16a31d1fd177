/* hashfiles.c: hashFiles() on a directory tree (see hashfiles.h). */
#include "hashfiles.h"

#include "globmatch.h" /* the matcher and the limits, shared with runner-agent */

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool
hashfiles_match(const char *pattern, const char *path)
{
    int r = globmatch_match(pattern, path);

    if (r < 0)
        abort(); /* out of memory, as xmalloc() */
    return r > 0;
}

struct walk {
    const char *root;      /* resolved workspace path */
    bool follow;
    char **files;          /* relative paths */
    size_t n, cap;
    struct err *e;
};

static int
walk_dir(struct walk *w, const char *rel, int depth)
{
    char *abs = *rel ? xasprintf("%s/%s", w->root, rel) : xstrdup(w->root);
    DIR *d = opendir(abs);
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        free(abs);
        return 0; /* unreadable directories are skipped, as a glob walk does */
    }
    if (depth > HASHFILES_MAX_DEPTH) {
        closedir(d);
        free(abs);
        return err_set(w->e, -ELOOP, "hashFiles: directories nested deeper than %d",
                       HASHFILES_MAX_DEPTH);
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat st, lst;
        char *crel, *cabs;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        crel = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        cabs = xasprintf("%s/%s", abs, de->d_name);
        if (lstat(cabs, &lst) == 0 && stat(cabs, &st) == 0) {
            bool link = S_ISLNK(lst.st_mode), inside = true;

            if (link) {
                char *real = realpath(cabs, NULL);
                size_t rl = strlen(w->root);
                inside = real && strncmp(real, w->root, rl) == 0 &&
                         (real[rl] == '/' || real[rl] == '\0');
                free(real);
            }
            if (!inside) {
                /* outside the workspace: ignored */
            } else if (S_ISDIR(st.st_mode)) {
                if (!link || w->follow)
                    rc = walk_dir(w, crel, depth + 1);
            } else if (S_ISREG(st.st_mode)) {
                if (w->n == HASHFILES_MAX_FILES) {
                    rc = err_set(w->e, -E2BIG, "hashFiles: more than %d files match",
                                 HASHFILES_MAX_FILES);
                } else {
                    if (w->n == w->cap) {
                        w->cap = w->cap ? w->cap * 2 : 64;
                        w->files = xreallocarray(w->files, w->cap, sizeof *w->files);
                    }
                    w->files[w->n++] = crel;
                    crel = NULL;
                }
            }
        }
        free(crel);
        free(cabs);
    }
    closedir(d);
    free(abs);
    return rc;
}

static int
cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 of a file into md. */
static int
hash_file(const char *path, unsigned char md[32], struct err *e)
{
    unsigned char buf[65536];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    ssize_t r;

    if (ctx == NULL)
        abort();
    if (fd < 0) {
        rc = err_set(e, -errno, "hashFiles: %s: %s", path, strerror(errno));
        goto out;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((r = read(fd, buf, sizeof buf)) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)r);
    if (r < 0) {
        rc = err_set(e, -errno, "hashFiles: %s: %s", path, strerror(errno));
        goto out;
    }
    EVP_DigestFinal_ex(ctx, md, NULL);
out:
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(ctx);
    return rc;
}

int
hashfiles_compute(const char *workspace, const char *const *patterns, size_t n, char **out,
                  struct err *e)
{
    struct walk w = {.e = e};
    size_t first = 0;
    char *root = NULL;
    EVP_MD_CTX *all = NULL;
    bool any = false;
    int rc = 0;

    *out = NULL;
    if (n > 0 && strncmp(patterns[0], "--", 2) == 0) {
        if (strcmp(patterns[0], "--follow-symbolic-links") != 0)
            return err_set(e, ERR_INVALID, "hashFiles: unknown option '%s'", patterns[0]);
        w.follow = true;
        first = 1;
    }
    for (size_t i = first; i < n; i++)
        if (strncmp(patterns[i], "--", 2) == 0)
            return err_set(e, ERR_INVALID, "hashFiles: '%s': options go first", patterns[i]);
    root = realpath(workspace, NULL);
    if (root == NULL)
        return err_set(e, -errno, "hashFiles: workspace %s: %s", workspace, strerror(errno));
    w.root = root;
    rc = walk_dir(&w, "", 0);
    if (rc < 0)
        goto out;
    qsort(w.files, w.n, sizeof *w.files, cmp_path);
    all = EVP_MD_CTX_new();
    if (all == NULL)
        abort();
    EVP_DigestInit_ex(all, EVP_sha256(), NULL);
    for (size_t f = 0; f < w.n; f++) {
        /* Patterns may be several lines each (act joins them with newlines). */
        int inc = globmatch_select(patterns + first, n - first, w.files[f]);

        if (inc < 0)
            abort(); /* out of memory, as xmalloc() */
        if (!inc)
            continue;
        unsigned char md[32];
        char *abs = xasprintf("%s/%s", root, w.files[f]);
        rc = hash_file(abs, md, e);
        free(abs);
        if (rc < 0)
            goto out;
        EVP_DigestUpdate(all, md, sizeof md);
        any = true;
    }
    if (any) {
        unsigned char md[32];
        char hex[65];
        EVP_DigestFinal_ex(all, md, NULL);
        for (size_t i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        *out = xstrdup(hex);
    } else {
        *out = xstrdup("");
    }
out:
    EVP_MD_CTX_free(all);
    for (size_t f = 0; f < w.n; f++)
        free(w.files[f]);
    free(w.files);
    free(root);
    return rc;
}
