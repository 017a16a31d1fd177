/* harness.h: a small unit-test harness. Each TEST() registers itself; the runner forks every
 * case under a timeout, in its own temporary directory, and prints "N passed, N failed". */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);

void test_register(const char *name, test_fn fn);
/* Fails the current test with a message (never returns). */
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
/* The case's own temporary directory (also the working directory while it runs). */
const char *test_tmpdir(void);
/* Reads a whole file; returns a new NUL-terminated string or NULL. */
char *test_read_file(const char *path, size_t *len);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_reg_##name(void)                                 \
    {                                                                                              \
        test_register(#name, test_##name);                                                         \
    }                                                                                              \
    static void test_##name(void)

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);                          \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                           \
        if (a_ != b_)                                                                              \
            test_fail(__FILE__, __LINE__, "%s == %s: %jd != %jd", #a, #b, a_, b_);                 \
    } while (0)

#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        intmax_t r_ = (intmax_t)(expr);                                                            \
        if (r_ < 0)                                                                                \
            test_fail(__FILE__, __LINE__, "%s failed: %jd", #expr, r_);                            \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            test_fail(__FILE__, __LINE__, "%s == %s:\n  got:      \"%s\"\n  expected: \"%s\"",    \
                      #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                             \
    } while (0)

#define ASSERT_STR_CONTAINS(hay, needle)                                                           \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                  \
            test_fail(__FILE__, __LINE__, "%s does not contain \"%s\": \"%s\"", #hay, n_,          \
                      h_ ? h_ : "(null)");                                                         \
    } while (0)

#endif
