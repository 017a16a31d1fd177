/* envfile.h: the file commands GITHUB_ENV, GITHUB_OUTPUT and GITHUB_STATE
 * (doc/workflow-semantics.md §10): `NAME=value` lines and `NAME<<DELIM` heredocs. */
#ifndef ENVFILE_H
#define ENVFILE_H

#include "runner/err.h"

#include <jansson.h>
#include <stddef.h>

/* Parses data[0..len) written to the file named what (for messages, e.g. "GITHUB_ENV").
 * Returns 0 and a new object name -> value (later lines win; insertion order kept), or
 * ERR_INVALID with "what:LINE: ..." in e. A leading UTF-8 BOM and blank lines are ignored
 * (as GitHub's runner does; act rejects blank lines). Names must be non-empty. */
int envfile_parse(const char *what, const char *data, size_t len, json_t **out, struct err *e);

#endif
