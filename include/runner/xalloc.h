/* xalloc.h: allocation that never returns NULL; out of memory ends the process. */
#ifndef RUNNER_XALLOC_H
#define RUNNER_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Reallocates p to hold nmemb elements of size, checking the multiplication. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a new formatted string; free with free(). */
/* Frees a NULL-terminated array of strings and the array (NULL is fine). */
void xstrv_free(char **v);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
