/* scm-git.c: libgit2 loaded on first use (scm-git.h says why). One dlopen() of the soname the
 * build found (SCM_GIT_SONAME), one dlsym() per function of SCM_GIT_FNS; a failure of either
 * is kept and returned to every caller as the same one-line error. */
#define SCM_GIT_IMPL
#include "scm-git.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifndef SCM_GIT_SONAME
#error "SCM_GIT_SONAME (libgit2's soname) is set by daemon/CMakeLists.txt"
#endif

struct scm_git_fns scm_git;

/* Where each function's pointer goes in the table. */
static const struct {
    const char *name;
    size_t off;
} git_syms[] = {
#define SCM_GIT_SYM(fn) {.name = #fn, .off = offsetof(struct scm_git_fns, fn)},
    SCM_GIT_FNS(SCM_GIT_SYM)
#undef SCM_GIT_SYM
};

/* POSIX: a function pointer round-trips through void * (dlsym() depends on it). */
_Static_assert(sizeof(void *) == sizeof scm_git.git_libgit2_init, "function pointer size");

static pthread_once_t git_once = PTHREAD_ONCE_INIT;
static const char *git_name = SCM_GIT_SONAME;
static int git_rc;
static char git_why[512];

/* Opens the library and fills the table; on failure leaves the table unused and says why.
 * The handle is never closed: libgit2's global state lives until exit. */
static void
on_git_once(void)
{
    void *h = dlopen(git_name, RTLD_NOW | RTLD_LOCAL);
    const char *why;

    if (h == NULL) {
        why = dlerror();
        snprintf(git_why, sizeof git_why, "%s", why ? why : "dlopen failed");
        git_rc = -ELIBACC;
        return;
    }
    for (size_t i = 0; i < sizeof git_syms / sizeof git_syms[0]; i++) {
        void *sym = dlsym(h, git_syms[i].name);

        if (sym == NULL) {
            snprintf(git_why, sizeof git_why, "%s has no %s (built against libgit2 %s)",
                     git_name, git_syms[i].name, LIBGIT2_VERSION);
            memset(&scm_git, 0, sizeof scm_git);
            git_rc = -ELIBACC;
            return;
        }
        memcpy((char *)&scm_git + git_syms[i].off, &sym, sizeof sym);
    }
}

int
scm_git_load(struct err *e)
{
    pthread_once(&git_once, on_git_once);
    if (git_rc < 0)
        return err_set(e, git_rc, "git is unavailable: libgit2 (%s) could not be loaded: %s",
                       git_name, git_why);
    return 0;
}

void
scm_git_use(const char *name)
{
    git_name = name;
}
