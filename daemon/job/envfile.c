/* envfile.c: parse GITHUB_ENV / GITHUB_OUTPUT / GITHUB_STATE contents. */
#include "envfile.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Returns the next line of data (without "\n" or "\r\n") and advances *pos. */
static bool
next_line(const char *data, size_t len, size_t *pos, const char **line, size_t *llen)
{
    size_t start = *pos, end;

    if (start >= len)
        return false;
    const char *nl = memchr(data + start, '\n', len - start);
    end = nl ? (size_t)(nl - data) : len;
    *pos = nl ? end + 1 : len;
    *line = data + start;
    *llen = end - start;
    if (*llen > 0 && (*line)[*llen - 1] == '\r')
        (*llen)--;
    return true;
}

static void
set_value(json_t *obj, const char *name, size_t nlen, const char *v, size_t vlen)
{
    char *k = xstrndup(name, nlen);
    json_t *js = json_stringn(v, vlen);

    /* Values that are not valid UTF-8 keep their bytes as far as JSON allows. */
    if (js == NULL) {
        char *copy = xstrndup(v, vlen);
        for (char *p = copy; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        js = json_string(copy);
        free(copy);
    }
    json_object_set_new(obj, k, js ? js : json_string(""));
    free(k);
}

int
envfile_parse(const char *what, const char *data, size_t len, json_t **out, struct err *e)
{
    json_t *obj = json_object();
    size_t pos = 0, lineno = 0, llen;
    const char *line;
    int rc = 0;

    *out = NULL;
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        pos = 3;
    while (next_line(data, len, &pos, &line, &llen)) {
        const char *eq, *heredoc = NULL;

        lineno++;
        if (llen == 0)
            continue;
        eq = memchr(line, '=', llen);
        for (size_t i = 0; i + 1 < llen; i++)
            if (line[i] == '<' && line[i + 1] == '<') {
                heredoc = line + i;
                break;
            }
        if (eq && (heredoc == NULL || eq < heredoc)) {
            if (eq == line) {
                rc = err_set(e, ERR_INVALID, "%s:%zu: a name is needed before '='", what, lineno);
                goto out;
            }
            set_value(obj, line, (size_t)(eq - line), eq + 1, llen - (size_t)(eq - line) - 1);
        } else if (heredoc) {
            const char *delim = heredoc + 2;
            size_t dlen = llen - (size_t)(delim - line), nlen = (size_t)(heredoc - line);
            size_t start_line = lineno;
            struct buf v = BUF_INIT;
            bool closed = false, first = true;

            if (nlen == 0 || dlen == 0) {
                rc = err_set(e, ERR_INVALID, "%s:%zu: expected NAME<<DELIMITER", what, lineno);
                goto out;
            }
            while (next_line(data, len, &pos, &line, &llen)) {
                lineno++;
                if (llen == dlen && memcmp(line, delim, dlen) == 0) {
                    closed = true;
                    break;
                }
                if (!first)
                    buf_putc(&v, '\n');
                buf_append(&v, line, llen);
                first = false;
            }
            if (!closed) {
                rc = err_set(e, ERR_INVALID,
                             "%s:%zu: invalid format delimiter '%.*s' not found before end of file",
                             what, start_line, (int)(dlen > 64 ? 64 : dlen), delim);
                buf_free(&v);
                goto out;
            }
            set_value(obj, heredoc - nlen, nlen, buf_str(&v), v.len);
            buf_free(&v);
        } else {
            rc = err_set(e, ERR_INVALID,
                         "%s:%zu: invalid format '%.*s', expected a line with '=' or '<<'", what,
                         lineno, (int)(llen > 64 ? 64 : llen), line);
            goto out;
        }
    }
    *out = obj;
    obj = NULL;
out:
    json_decref(obj);
    return rc;
}
