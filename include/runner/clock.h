/* clock.h: the wall clock as one number. */
#ifndef RUNNER_CLOCK_H
#define RUNNER_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Now, CLOCK_REALTIME, in nanoseconds since the Unix epoch. */
static inline int64_t
clock_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
