/* tar.c: a small ustar writer. Each entry is a 512-byte header plus its data padded to 512;
 * a name that does not fit the 100-byte name field (or the 155-byte prefix split) is carried
 * in a PAX "x" header first, which Docker's Go archive/tar reader understands. */
#include "tar.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAR_BLOCK 512

void
tar_init(struct tar *t)
{
    memset(t, 0, sizeof *t);
}

void
tar_free(struct tar *t)
{
    buf_free(&t->out);
}

static void
put_octal(char *field, size_t width, unsigned long long v)
{
    /* width includes the terminating NUL; digits are right-aligned, zero-padded */
    field[width - 1] = '\0';
    for (size_t i = width - 1; i > 0; i--) {
        field[i - 1] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static void
pad(struct tar *t)
{
    static const char zeros[TAR_BLOCK];
    size_t rem = t->out.len % TAR_BLOCK;

    if (rem)
        buf_append(&t->out, zeros, TAR_BLOCK - rem);
}

/* Writes one header block; name/prefix must already fit. */
static void
header(struct tar *t, const char *name, const char *prefix, unsigned mode, size_t size,
       char type, const char *link)
{
    char h[TAR_BLOCK];
    unsigned sum = 0;

    memset(h, 0, sizeof h);
    memcpy(h, name, strlen(name));             /* name[100] at 0 */
    put_octal(h + 100, 8, mode & 07777);       /* mode */
    put_octal(h + 108, 8, (unsigned)t->uid);   /* uid */
    put_octal(h + 116, 8, (unsigned)t->gid);   /* gid */
    put_octal(h + 124, 12, size);              /* size */
    put_octal(h + 136, 12, (unsigned long long)t->mtime);
    memset(h + 148, ' ', 8);                   /* checksum placeholder */
    h[156] = type;
    if (link)
        memcpy(h + 157, link, strlen(link) < 100 ? strlen(link) : 100); /* linkname[100] */
    memcpy(h + 257, "ustar", 6);               /* magic "ustar\0" */
    memcpy(h + 263, "00", 2);                  /* version */
    memcpy(h + 265, "root", 4);                /* uname */
    memcpy(h + 297, "root", 4);                /* gname */
    if (prefix)
        memcpy(h + 345, prefix, strlen(prefix)); /* prefix[155] */
    for (size_t i = 0; i < sizeof h; i++)
        sum += (unsigned char)h[i];
    put_octal(h + 148, 7, sum); /* six digits, NUL, then the space already there */
    h[155] = ' ';
    buf_append(&t->out, h, sizeof h);
}

/* A PAX record is "<len> <key>=<value>\n" where len counts the whole record. */
static size_t
pax_len(const char *key, const char *value)
{
    size_t base = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
    size_t len = base + 1;
    char rec[32];

    while ((size_t)snprintf(rec, sizeof rec, "%zu", len) + base != len)
        len = (size_t)snprintf(rec, sizeof rec, "%zu", len) + base;
    return len;
}

/* One PAX "x" header carrying path (when not NULL) and linkpath (when not NULL). */
static void
pax(struct tar *t, const char *path, const char *link)
{
    size_t lp = path ? pax_len("path", path) : 0, ll = link ? pax_len("linkpath", link) : 0;

    header(t, "././@PaxHeader", NULL, 0644, lp + ll, 'x', NULL);
    if (path)
        buf_printf(&t->out, "%zu path=%s\n", lp, path);
    if (link)
        buf_printf(&t->out, "%zu linkpath=%s\n", ll, link);
    pad(t);
}

static int
entry(struct tar *t, const char *path, unsigned mode, const void *data, size_t len, char type,
      const char *link, struct err *e)
{
    bool long_link = link && strlen(link) > 100;

    char name[101], prefix[156];
    size_t n = strlen(path);

    if (t->finished)
        return err_set(e, -EINVAL, "tar: archive already finished");
    if (len >= 077777777777ull)
        return err_set(e, -EFBIG, "tar: entry \"%s\" is too large", path);
    if (n == 0 || path[0] == '/')
        return err_set(e, -EINVAL, "tar: bad entry name \"%s\" (must be relative)", path);
    for (const char *p = path; *p;) {
        const char *s = strchr(p, '/');
        size_t seg = s ? (size_t)(s - p) : strlen(p);

        if (seg == 2 && p[0] == '.' && p[1] == '.')
            return err_set(e, -EINVAL, "tar: entry name \"%s\" contains \"..\"", path);
        p = s ? s + 1 : p + seg;
    }
    name[0] = prefix[0] = '\0';
    if (n <= 100) {
        if (long_link)
            pax(t, NULL, link);
        memcpy(name, path, n + 1);
        header(t, name, NULL, mode, len, type, link);
    } else {
        /* Try the ustar prefix split at a '/', else a PAX header. */
        const char *cut = NULL;

        for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/'))
            if ((size_t)(s - path) <= 155 && n - (size_t)(s - path) - 1 <= 100 &&
                n - (size_t)(s - path) - 1 > 0)
                cut = s;
        if (cut) {
            if (long_link)
                pax(t, NULL, link);
            memcpy(prefix, path, (size_t)(cut - path));
            prefix[cut - path] = '\0';
            snprintf(name, sizeof name, "%s", cut + 1);
            header(t, name, prefix, mode, len, type, link);
        } else {
            pax(t, path, long_link ? link : NULL);
            memcpy(name, path, 100);
            name[100] = '\0';
            header(t, name, NULL, mode, len, type, link);
        }
    }
    if (len) {
        buf_append(&t->out, data, len);
        pad(t);
    }
    return 0;
}

int
tar_add_file(struct tar *t, const char *path, unsigned mode, const void *data, size_t len,
             struct err *e)
{
    return entry(t, path, mode, data, len, '0', NULL, e);
}

int
tar_add_dir(struct tar *t, const char *path, unsigned mode, struct err *e)
{
    char *p;
    size_t n = strlen(path);
    int rc;

    if (n > 0 && path[n - 1] == '/')
        return entry(t, path, mode, NULL, 0, '5', NULL, e);
    p = malloc(n + 2);
    if (p == NULL)
        abort();
    memcpy(p, path, n);
    p[n] = '/';
    p[n + 1] = '\0';
    rc = entry(t, p, mode, NULL, 0, '5', NULL, e);
    free(p);
    return rc;
}

int
tar_add_symlink(struct tar *t, const char *path, const char *target, struct err *e)
{
    if (*target == '\0')
        return err_set(e, -EINVAL, "tar: symlink \"%s\" has an empty target", path);
    return entry(t, path, 0777, NULL, 0, '2', target, e);
}

void
tar_finish(struct tar *t)
{
    static const char zeros[2 * TAR_BLOCK];

    if (t->finished)
        return;
    buf_append(&t->out, zeros, sizeof zeros);
    t->finished = 1;
}
