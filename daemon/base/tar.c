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

/* ---- reading ---------------------------------------------------------------------------- */

void
tar_reader_init(struct tar_reader *r, const void *p, size_t len)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    r->len = len;
}

void
tar_reader_free(struct tar_reader *r)
{
    buf_free(&r->path);
    buf_free(&r->link);
}

/* An octal field (leading spaces, NUL or space terminated), or GNU base-256 when the first
 * byte has its high bit set (sizes of 8 GiB and more). */
static unsigned long long
get_num(const char *f, size_t width)
{
    unsigned long long v = 0;
    size_t i = 0;

    if ((unsigned char)f[0] & 0x80) {
        v = (unsigned char)f[0] & 0x7f;
        for (i = 1; i < width; i++)
            v = v << 8 | (unsigned char)f[i];
        return v;
    }
    while (i < width && f[i] == ' ')
        i++;
    for (; i < width && f[i] >= '0' && f[i] <= '7'; i++)
        v = v << 3 | (unsigned)(f[i] - '0');
    return v;
}

/* Old writers summed the header as signed chars; accept either sum. */
static bool
checksum_ok(const char *h)
{
    unsigned long long want = get_num(h + 148, 8);
    unsigned long long u = 0;
    long long s = 0;

    for (size_t i = 0; i < TAR_BLOCK; i++) {
        bool field = i >= 148 && i < 156;

        u += field ? ' ' : (unsigned char)h[i];
        s += field ? ' ' : (signed char)h[i];
    }
    return want == u || (long long)want == s;
}

static bool
zero_block(const char *h)
{
    for (size_t i = 0; i < TAR_BLOCK; i++)
        if (h[i])
            return false;
    return true;
}

/* A fixed-width name field as a string. */
static void
put_field(struct buf *b, const char *f, size_t width)
{
    size_t n = strnlen(f, width);

    buf_append(b, f, n);
}

/* Applies the records of a PAX "x" header ("<len> key=value\n") to the next entry. */
static int
pax_records(struct tar_reader *r, const char *p, size_t n, unsigned long long *size,
            bool *has_size, struct err *e)
{
    size_t off = 0;

    while (off < n) {
        const char *rec = p + off, *sp, *eq;
        unsigned long long len = 0;

        for (sp = rec; sp < p + n && *sp >= '0' && *sp <= '9'; sp++)
            len = len * 10 + (unsigned)(*sp - '0');
        if (sp == rec || sp >= p + n || *sp != ' ' || len > n - off || len < 2 ||
            rec[len - 1] != '\n')
            return err_set(e, ERR_PROTO, "tar: malformed PAX header");
        eq = memchr(sp + 1, '=', (size_t)(rec + len - 1 - (sp + 1)));
        if (eq != NULL) {
            size_t klen = (size_t)(eq - sp - 1), vlen = (size_t)(rec + len - 1 - eq - 1);

            if (klen == 4 && memcmp(sp + 1, "path", 4) == 0) {
                buf_reset(&r->path);
                buf_append(&r->path, eq + 1, vlen);
            } else if (klen == 8 && memcmp(sp + 1, "linkpath", 8) == 0) {
                buf_reset(&r->link);
                buf_append(&r->link, eq + 1, vlen);
            } else if (klen == 4 && memcmp(sp + 1, "size", 4) == 0) {
                *size = strtoull(eq + 1, NULL, 10);
                *has_size = true;
            }
        }
        off += (size_t)len;
    }
    return 0;
}

/* Drops a leading "./" (repeated) and trailing '/' from a name; "." becomes "". */
static void
clean_path(struct buf *b)
{
    size_t skip = 0;

    while (b->len - skip >= 2 && b->data[skip] == '.' && b->data[skip + 1] == '/')
        for (skip += 2; skip < b->len && b->data[skip] == '/'; skip++)
            ;
    if (b->len - skip == 1 && b->data[skip] == '.')
        skip++;
    if (skip) {
        memmove(b->data, b->data + skip, b->len - skip);
        b->len -= skip;
        b->data[b->len] = '\0';
    }
    while (b->len > 0 && b->data[b->len - 1] == '/')
        b->data[--b->len] = '\0';
}

int
tar_next(struct tar_reader *r, struct tar_entry *ent, struct err *e)
{
    bool long_path = false, long_link = false, has_size = false;
    unsigned long long pax_size = 0;

    buf_reset(&r->path);
    buf_reset(&r->link);
    for (;;) {
        const char *h = r->p + r->off;
        unsigned long long size;
        size_t padded;
        char type;

        if (r->len - r->off < TAR_BLOCK || zero_block(h))
            return r->len == r->off || r->len - r->off >= TAR_BLOCK
                       ? 0
                       : err_set(e, ERR_PROTO, "tar: truncated header at byte %zu", r->off);
        if (!checksum_ok(h))
            return err_set(e, ERR_PROTO, "tar: bad header checksum at byte %zu", r->off);
        type = h[156];
        size = has_size && type != 'x' && type != 'g' && type != 'L' && type != 'K'
                   ? pax_size
                   : get_num(h + 124, 12);
        if (size > r->len - r->off - TAR_BLOCK)
            return err_set(e, ERR_PROTO, "tar: entry at byte %zu runs past the end", r->off);
        padded = (size_t)(size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
        if (padded > r->len - r->off - TAR_BLOCK)
            padded = r->len - r->off - TAR_BLOCK; /* a last entry without its padding */
        r->off += TAR_BLOCK;
        const char *data = r->p + r->off;
        int rc;

        r->off += padded;
        switch (type) {
        case 'x': /* PAX: for the next entry */
            rc = pax_records(r, data, (size_t)size, &pax_size, &has_size, e);
            if (rc < 0)
                return rc;
            long_path = long_path || r->path.len > 0;
            long_link = long_link || r->link.len > 0;
            continue;
        case 'g': /* PAX global: nothing we use */
            continue;
        case 'L': /* GNU long name / link name: NUL-terminated data */
        case 'K': {
            struct buf *b = type == 'L' ? &r->path : &r->link;

            buf_reset(b);
            buf_append(b, data, strnlen(data, (size_t)size));
            if (type == 'L')
                long_path = true;
            else
                long_link = true;
            continue;
        }
        default:
            break;
        }
        if (!long_path) {
            /* the ustar prefix field is only that in POSIX archives ("ustar\0") */
            if (memcmp(h + 257, "ustar", 6) == 0 && h[345] != '\0') {
                put_field(&r->path, h + 345, 155);
                buf_putc(&r->path, '/');
            }
            put_field(&r->path, h, 100);
        }
        if (!long_link)
            put_field(&r->link, h + 157, 100);
        clean_path(&r->path);
        memset(ent, 0, sizeof *ent);
        ent->path = buf_str(&r->path);
        ent->type = type == '\0' || type == '7' ? '0' : type;
        ent->link = ent->type == '1' || ent->type == '2' ? buf_str(&r->link) : "";
        ent->mode = (unsigned)get_num(h + 100, 8) & 07777;
        if (ent->type == '0') {
            ent->data = data;
            ent->len = (size_t)size;
        }
        return 1;
    }
}
