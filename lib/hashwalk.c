/* hashwalk.c: hashFiles() over a directory tree (see hashwalk.h). */
#include "hashwalk.h"

#include "globmatch.h"
#include "sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct hwalk {
    char *root;         /* resolved ROOT */
    bool follow;
    char **files;       /* relative paths of the regular files seen */
    size_t n, cap;
    char *msg;          /* the error, when a call returned < 0 */
    size_t msglen;
};

static int hw_fail(struct hwalk *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
hw_fail(struct hwalk *w, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(w->msg, w->msglen, fmt, ap);
    va_end(ap);
    return code;
}

static int
hw_oom(struct hwalk *w)
{
    return hw_fail(w, -ENOMEM, "hashFiles: out of memory");
}

/* a + "/" + b in new memory, or NULL. */
static char *
hw_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);

    if (s != NULL) {
        memcpy(s, a, la);
        s[la] = '/';
        memcpy(s + la + 1, b, lb + 1);
    }
    return s;
}

static int
hw_dir(struct hwalk *w, const char *rel, int depth)
{
    char *abs = *rel ? hw_join(w->root, rel) : strdup(w->root);
    DIR *d;
    struct dirent *de;
    int rc = 0;

    if (abs == NULL)
        return hw_oom(w);
    d = opendir(abs);
    if (d == NULL) {
        free(abs);
        return 0; /* unreadable directories are skipped, as a glob walk does */
    }
    if (depth > HASHFILES_MAX_DEPTH) {
        closedir(d);
        free(abs);
        return hw_fail(w, -ELOOP, "hashFiles: directories nested deeper than %d", HASHFILES_MAX_DEPTH);
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat st, lst;
        char *crel, *cabs;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        crel = *rel ? hw_join(rel, de->d_name) : strdup(de->d_name);
        cabs = hw_join(abs, de->d_name);
        if (crel == NULL || cabs == NULL) {
            rc = hw_oom(w);
        } else if (lstat(cabs, &lst) == 0 && stat(cabs, &st) == 0) {
            bool link = S_ISLNK(lst.st_mode), inside = true;

            if (link) {
                char *real = realpath(cabs, NULL);
                size_t rl = strlen(w->root);

                inside = real && strncmp(real, w->root, rl) == 0 &&
                         (real[rl] == '/' || real[rl] == '\0');
                free(real);
            }
            if (!inside) {
                /* outside ROOT: ignored */
            } else if (S_ISDIR(st.st_mode)) {
                if (!link || w->follow)
                    rc = hw_dir(w, crel, depth + 1);
            } else if (S_ISREG(st.st_mode)) {
                if (w->n == HASHFILES_MAX_FILES) {
                    rc = hw_fail(w, -E2BIG, "hashFiles: more than %d files match", HASHFILES_MAX_FILES);
                } else {
                    if (w->n == w->cap) {
                        size_t cap = w->cap ? w->cap * 2 : 64;
                        char **files = realloc(w->files, cap * sizeof(*files));

                        if (files == NULL) {
                            rc = hw_oom(w);
                            goto next;
                        }
                        w->files = files;
                        w->cap = cap;
                    }
                    w->files[w->n++] = crel;
                    crel = NULL;
                }
            }
        }
next:
        free(crel);
        free(cabs);
    }
    closedir(d);
    free(abs);
    return rc;
}

static int
hw_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 of one file into md. */
static int
hw_file(struct hwalk *w, const char *path, uint8_t md[SHA256_DIGEST_LEN])
{
    static uint8_t buf[65536];
    struct sha256 c;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0)
        return hw_fail(w, -errno, "hashFiles: %s: %s", path, strerror(errno));
    sha256_init(&c);
    for (;;) {
        r = read(fd, buf, sizeof(buf));
        if (r > 0)
            sha256_update(&c, buf, (size_t)r);
        else if (r == 0 || errno != EINTR)
            break;
    }
    if (r < 0) {
        int en = errno;

        close(fd);
        return hw_fail(w, -en, "hashFiles: %s: %s", path, strerror(en));
    }
    close(fd);
    sha256_final(&c, md);
    return 0;
}

/* The digest as lower-case hex into hex (65 bytes), or "" when nothing matched. */
static int
hw_compute(struct hwalk *w, const char *root_arg, const char *const *pats, size_t n, char *hex)
{
    size_t first = 0;
    struct sha256 all;
    bool any = false;
    char *root;

    hex[0] = '\0';
    if (n > 0 && strncmp(pats[0], "--", 2) == 0) {
        if (strcmp(pats[0], "--follow-symbolic-links") != 0)
            return hw_fail(w, -EINVAL, "hashFiles: unknown option '%s'", pats[0]);
        w->follow = true;
        first = 1;
    }
    for (size_t i = first; i < n; i++)
        if (strncmp(pats[i], "--", 2) == 0)
            return hw_fail(w, -EINVAL, "hashFiles: '%s': options go first", pats[i]);
    root = realpath(root_arg, NULL);
    if (root == NULL)
        return hw_fail(w, -errno, "hashFiles: workspace %s: %s", root_arg, strerror(errno));
    w->root = root;
    int wrc = hw_dir(w, "", 0);
    if (wrc < 0)
        return wrc;
    qsort(w->files, w->n, sizeof(*w->files), hw_cmp);
    sha256_init(&all);
    for (size_t f = 0; f < w->n; f++) {
        int inc = globmatch_select(pats + first, n - first, w->files[f]);
        uint8_t md[SHA256_DIGEST_LEN];
        char *abs;
        int rc;

        if (inc < 0)
            return hw_oom(w);
        if (inc == 0)
            continue;
        abs = hw_join(root, w->files[f]);
        if (abs == NULL)
            return hw_oom(w);
        rc = hw_file(w, abs, md);
        free(abs);
        if (rc < 0)
            return rc;
        sha256_update(&all, md, sizeof(md));
        any = true;
    }
    if (any) {
        static const char digits[] = "0123456789abcdef";
        uint8_t md[SHA256_DIGEST_LEN];

        sha256_final(&all, md);
        for (size_t i = 0; i < SHA256_DIGEST_LEN; i++) {
            hex[2 * i] = digits[md[i] >> 4];
            hex[2 * i + 1] = digits[md[i] & 15];
        }
        hex[2 * SHA256_DIGEST_LEN] = '\0';
    }
    return 0;
}

int
hashwalk_compute(const char *root, const char *const *patterns, size_t n,
                 char hex[HASHWALK_HEX_SIZE], char *msg, size_t msglen)
{
    struct hwalk w;
    int rc;

    memset(&w, 0, sizeof(w));
    w.msg = msg;
    w.msglen = msglen;
    if (msglen)
        msg[0] = '\0';
    rc = hw_compute(&w, root, patterns, n, hex);
    for (size_t i = 0; i < w.n; i++)
        free(w.files[i]);
    free(w.files);
    free(w.root);
    return rc;
}
