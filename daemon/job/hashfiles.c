/* hashfiles.c: hashFiles() on a directory tree (see hashfiles.h). */
#include "hashfiles.h"

#include "globmatch.h" /* the matcher and the limits, shared with runner-agent */
#include "hashwalk.h"  /* the walk and digests, shared with runner-agent */

#include "runner/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool
hashfiles_match(const char *pattern, const char *path)
{
    int r = globmatch_match(pattern, path);

    if (r < 0)
        abort(); /* out of memory, as xmalloc() */
    return r > 0;
}

int
hashfiles_compute(const char *workspace, const char *const *patterns, size_t n, char **out,
                  struct err *e)
{
    char hex[HASHWALK_HEX_SIZE], msg[sizeof e->msg];
    int rc = hashwalk_compute(workspace, patterns, n, hex, msg, sizeof msg);

    *out = NULL;
    if (rc < 0)
        return err_set(e, rc == -EINVAL ? ERR_INVALID : rc, "%s", msg);
    *out = xstrdup(hex);
    return 0;
}
