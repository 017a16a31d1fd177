/* wfcmd.c: workflow command recognition (see wfcmd.h). */
#include "wfcmd.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Returns a new string: s[0..n) with %25 %0D %0A (and for properties %3A %2C) decoded. */
static char *
unescape(const char *s, size_t n, bool prop)
{
    struct buf b = BUF_INIT;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            const char *t = s + i + 1;
            size_t left = n - i - 1;
            if (left >= 2) {
                char c = 0;
                if (strncasecmp(t, "25", 2) == 0)
                    c = '%';
                else if (strncasecmp(t, "0D", 2) == 0)
                    c = '\r';
                else if (strncasecmp(t, "0A", 2) == 0)
                    c = '\n';
                else if (prop && strncasecmp(t, "3A", 2) == 0)
                    c = ':';
                else if (prop && strncasecmp(t, "2C", 2) == 0)
                    c = ',';
                if (c) {
                    buf_putc(&b, c);
                    i += 2;
                    continue;
                }
            }
        }
        buf_putc(&b, s[i]);
    }
    return buf_steal(&b);
}

static void
parse_props(const char *s, size_t n, char sep, struct wfcmd *cmd)
{
    size_t start = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != sep)
            continue;
        const char *p = s + start;
        size_t plen = i - start;
        const char *eq = memchr(p, '=', plen);
        /* Kept only with exactly one '=' and a name. */
        if (eq && eq != p && memchr(eq + 1, '=', plen - (size_t)(eq - p) - 1) == NULL &&
            cmd->n_props < WFCMD_MAX_PROPS) {
            size_t klen = (size_t)(eq - p);
            while (klen && isspace((unsigned char)p[0])) {
                p++;
                klen--;
            }
            cmd->keys[cmd->n_props] = xstrndup(p, klen);
            cmd->values[cmd->n_props] = unescape(eq + 1, plen - (size_t)(eq - p) - 1, true);
            cmd->n_props++;
        }
        start = i + 1;
    }
}

static char *
lower_dup(const char *s, size_t n)
{
    char *r = xstrndup(s, n);

    for (char *p = r; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return r;
}

/* Fills cmd from a command's parts, either form: its name (up to a space) and properties
 * (separated by sep) in [name, name_end), its data in [data, end). False when the name is
 * empty. */
static bool
fill_cmd(struct wfcmd *cmd, const char *name, const char *name_end, char sep, const char *data,
         const char *end)
{
    const char *sp = memchr(name, ' ', (size_t)(name_end - name));
    size_t nlen = sp ? (size_t)(sp - name) : (size_t)(name_end - name);

    if (nlen == 0)
        return false;
    memset(cmd, 0, sizeof *cmd);
    cmd->name = lower_dup(name, nlen);
    if (sp)
        parse_props(sp + 1, (size_t)(name_end - sp - 1), sep, cmd);
    cmd->data = unescape(data, (size_t)(end - data), false);
    return true;
}

bool
wfcmd_parse(const char *line, size_t len, struct wfcmd *cmd)
{
    const char *p = line, *end = line + len;

    /* Leading whitespace is allowed before the command, as on GitHub. */
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (end - p >= 2 && p[0] == ':' && p[1] == ':') {
        const char *name = p + 2, *sep = NULL;
        for (const char *q = name; q + 1 < end; q++)
            if (q[0] == ':' && q[1] == ':') {
                sep = q;
                break;
            }
        if (sep == NULL || sep == name)
            return false;
        return fill_cmd(cmd, name, sep, ',', sep + 2, end);
    }
    if (end - p >= 3 && p[0] == '#' && p[1] == '#' && p[2] == '[') {
        const char *name = p + 3, *close = memchr(name, ']', (size_t)(end - name));
        if (close == NULL || close == name)
            return false;
        return fill_cmd(cmd, name, close, ';', close + 1, end);
    }
    return false;
}

void
wfcmd_free(struct wfcmd *cmd)
{
    if (cmd == NULL)
        return;
    free(cmd->name);
    for (size_t i = 0; i < cmd->n_props; i++) {
        free(cmd->keys[i]);
        free(cmd->values[i]);
    }
    free(cmd->data);
    memset(cmd, 0, sizeof *cmd);
}

const char *
wfcmd_prop(const struct wfcmd *cmd, const char *key)
{
    for (size_t i = 0; i < cmd->n_props; i++)
        if (strcmp(cmd->keys[i], key) == 0)
            return cmd->values[i];
    return NULL;
}

enum wfcmd_verdict
wfcmd_process(struct wfcmd_state *st, const char *line, size_t len, struct wfcmd *cmd)
{
    struct wfcmd c;

    if (!wfcmd_parse(line, len, &c))
        return WFCMD_NONE;
    if (st->stop_token) {
        /* Only `::TOKEN::` (the token as the command name, case-sensitive) resumes. */
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t tl = strlen(st->stop_token);
        bool resume = strncmp(p, "::", 2) == 0 && strncmp(p + 2, st->stop_token, tl) == 0 &&
                      strncmp(p + 2 + tl, "::", 2) == 0;
        wfcmd_free(&c);
        if (!resume)
            return WFCMD_IGNORED;
        free(st->stop_token);
        st->stop_token = NULL;
        return WFCMD_RESUMED;
    }
    if (strcmp(c.name, "stop-commands") == 0 && c.data[0] != '\0')
        st->stop_token = xstrdup(c.data);
    *cmd = c;
    return WFCMD_RUN;
}

void
wfcmd_state_free(struct wfcmd_state *st)
{
    free(st->stop_token);
    st->stop_token = NULL;
}
