/* shell.c: shells, script files and argv for run steps (see shell.h). */
#include "shell.h"

#include "runner/buf.h"
#include "runner/xalloc.h"

#include <stdlib.h>
#include <string.h>

static const char *
first_set(const char *a, const char *b, const char *c)
{
    if (a && *a)
        return a;
    if (b && *b)
        return b;
    if (c && *c)
        return c;
    return NULL;
}

void
shell_resolve(const char *step_shell, const char *job_default, const char *wf_default,
              bool job_container, bool bash_available, struct shell_cmd *out)
{
    const char *sh = first_set(step_shell, job_default, wf_default);

    memset(out, 0, sizeof *out);
    out->ext = "";
    out->before = "";
    out->after = "";
    if (sh == NULL) {
        if (job_container || !bash_available) {
            sh = "sh";
        } else {
            out->tmpl = xstrdup("bash -e {0}");
            return;
        }
    }
    if (strcmp(sh, "bash") == 0) {
        out->tmpl = xstrdup("bash --noprofile --norc -e -o pipefail {0}");
        out->ext = "sh";
    } else if (strcmp(sh, "sh") == 0) {
        out->tmpl = xstrdup("sh -e {0}");
        out->ext = "sh";
    } else if (strcmp(sh, "pwsh") == 0 || strcmp(sh, "powershell") == 0) {
        out->tmpl = xasprintf("%s -command . '{0}'", sh);
        out->ext = "ps1";
        out->before = "$ErrorActionPreference = 'stop'";
        out->after = "if ((Test-Path -LiteralPath variable:/LASTEXITCODE)) { exit $LASTEXITCODE }";
    } else if (strcmp(sh, "python") == 0) {
        out->tmpl = xstrdup("python {0}");
        out->ext = "py";
    } else if (strcmp(sh, "cmd") == 0) {
        out->tmpl = xstrdup("cmd /D /E:ON /V:OFF /S /C \"CALL \"{0}\"\"");
        out->ext = "cmd";
        out->before = "@echo off";
    } else {
        out->tmpl = xstrdup(sh);
    }
}

void
shell_cmd_free(struct shell_cmd *c)
{
    free(c->tmpl);
    c->tmpl = NULL;
}

char *
shell_script(const struct shell_cmd *c, const char *run)
{
    return xasprintf("%s\n%s\n%s", c->before, run ? run : "", c->after);
}

int
shell_argv(const char *tmpl, const char *script_path, char ***argv, struct err *e)
{
    char **av = NULL;
    size_t n = 0;
    struct buf word = BUF_INIT;
    bool in_word = false, replaced = false;
    const char *p = tmpl;

    *argv = NULL;
    for (;;) {
        char c = *p;

        if (c == '\0' || c == ' ' || c == '\t' || c == '\n') {
            if (in_word) {
                av = xreallocarray(av, n + 2, sizeof *av);
                av[n++] = buf_steal(&word);
                in_word = false;
            }
            if (c == '\0')
                break;
            p++;
            continue;
        }
        in_word = true;
        if (!replaced && c == '{' && p[1] == '0' && p[2] == '}') {
            buf_puts(&word, script_path);
            replaced = true;
            p += 3;
        } else if (c == '\'') {
            const char *end = strchr(p + 1, '\'');
            if (end == NULL)
                goto unterminated;
            /* {0} inside quotes is replaced too (pwsh's template quotes it). */
            for (const char *q = p + 1; q < end; q++) {
                if (!replaced && q[0] == '{' && q[1] == '0' && q[2] == '}' && q + 2 < end) {
                    buf_puts(&word, script_path);
                    replaced = true;
                    q += 2;
                } else {
                    buf_putc(&word, *q);
                }
            }
            p = end + 1;
        } else if (c == '"') {
            p++;
            for (;;) {
                if (*p == '\0')
                    goto unterminated;
                if (*p == '"') {
                    p++;
                    break;
                }
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`')) {
                    buf_putc(&word, p[1]);
                    p += 2;
                } else if (!replaced && p[0] == '{' && p[1] == '0' && p[2] == '}') {
                    buf_puts(&word, script_path);
                    replaced = true;
                    p += 3;
                } else {
                    buf_putc(&word, *p++);
                }
            }
        } else if (c == '\\' && p[1] != '\0') {
            buf_putc(&word, p[1]);
            p += 2;
        } else {
            buf_putc(&word, c);
            p++;
        }
    }
    buf_free(&word);
    if (n == 0 || !replaced) {
        for (size_t i = 0; i < n; i++)
            free(av[i]);
        free(av);
        return err_set(e, ERR_INVALID, n == 0 ? "shell '%s': empty command"
                                              : "shell '%s': the command must contain {0}",
                       tmpl);
    }
    av[n] = NULL;
    *argv = av;
    return 0;
unterminated:
    buf_free(&word);
    for (size_t i = 0; i < n; i++)
        free(av[i]);
    free(av);
    return err_set(e, ERR_INVALID, "shell '%s': unterminated quote", tmpl);
}

void
shell_argv_free(char **argv)
{
    xstrv_free(argv);
}
