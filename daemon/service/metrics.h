/* metrics.h: runnerd's metrics, rendered in the Prometheus text exposition format (0.0.4) for
 * the loopback /metrics endpoint (issue 5). A registry of families; each family has a fixed
 * list of label names and one series per distinct tuple of label values. Everything runs on
 * the loop thread: no locking. Values are doubles; counters only go up.
 *
 * Families runnerd registers (names are part of the operator's contract):
 *   runnerd_jobs_total{label,result}            counter  jobs finished
 *   runnerd_jobs_running{label}                 gauge    jobs running now
 *   runnerd_poll_errors_total{class,kind}       counter  failed Declare/FetchTask calls
 *   runnerd_log_rows_spooled_total              counter  log rows written to the spool
 *   runnerd_log_rows_sent_total                 counter  log rows acknowledged by Gitea
 *   runnerd_step_duration_seconds{label}        histogram step durations
 *   runnerd_gpu_allocated{gpu}                  gauge    1 while a job holds the GPU
 *   runnerd_gpu_allocations_total{gpu}          counter  grants of the GPU to jobs
 *   runnerd_slots_free{class}                   gauge
 */
#ifndef METRICS_H
#define METRICS_H

#include "runner/buf.h"

#include <stddef.h>

enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
};

struct metrics;
struct metric_family;

/* Returns a new, empty registry; free with metrics_free() (NULL: nothing). */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Registers a family (or returns the one already registered under name, which must have the
 * same help, type, labels and buckets). labels: NULL-terminated label names (NULL: none).
 * buckets: histogram upper bounds, ascending, n_buckets of them (+Inf is implied); NULL for the
 * default 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600 seconds. name/help/labels/buckets are copied.
 * The family is borrowed from m, valid until metrics_free(m). Bugs abort with a message: a
 * second registration that differs, an invalid metric or label name, a label name starting
 * with "__", more than METRICS_MAX_LABELS labels, a histogram label "le", buckets that are not
 * finite and strictly ascending. */
struct metric_family *metrics_family(struct metrics *m, const char *name, const char *help,
                                     enum metric_type type, const char *const *labels,
                                     const double *buckets, size_t n_buckets);

/* Label values: exactly as many as the family has label names, in that order, each a non-NULL
 * const char * (any bytes; they are escaped when rendered). A series appears at first use.
 * These are macros that count their arguments (at most METRICS_MAX_LABELS label values), so a
 * wrong number of label values aborts with a message naming the family instead of reading
 * past the arguments. Misuse is a bug and also aborts: metric_add() on a histogram, a negative
 * or NaN metric_add() on a counter, metric_set() on anything but a gauge, metric_observe() on
 * anything but a histogram. */
/* metric_add(f, v, values...): counter or gauge. metric_set(f, v, values...): gauge.
 * metric_observe(f, v, values...): histogram. */
#define metric_add(...) metric_add_n(METRICS_NARGS(__VA_ARGS__) - 2, __VA_ARGS__)
#define metric_set(...) metric_set_n(METRICS_NARGS(__VA_ARGS__) - 2, __VA_ARGS__)
#define metric_observe(...) metric_observe_n(METRICS_NARGS(__VA_ARGS__) - 2, __VA_ARGS__)
/* metric_touch(f, values...): creates the series with value 0 if missing (so that it shows
 * before the first event). A family without labels has its one series from registration on. */
#define metric_touch(...) metric_touch_n(METRICS_NARGS(__VA_ARGS__) - 1, __VA_ARGS__)

/* The functions behind the macros: n is the number of label values that follow. */
void metric_add_n(int n, struct metric_family *f, double v, ...);
void metric_set_n(int n, struct metric_family *f, double v, ...);
void metric_observe_n(int n, struct metric_family *f, double v, ...);
void metric_touch_n(int n, struct metric_family *f, ...);

#define METRICS_MAX_LABELS 8
/* Counts 1 to 12 arguments (the trailing 0 keeps the variadic part non-empty, as C11 wants). */
#define METRICS_NARGS(...) METRICS_NARGS_(__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define METRICS_NARGS_(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, n, ...) n

/* Appends the whole exposition: families in registration order, series in first-use order,
 * # HELP and # TYPE lines, histogram _bucket{le=...}/_sum/_count. A labelled family without
 * series yet shows only its # HELP and # TYPE lines. Integral values print without a fraction
 * or exponent up to 2^53, others in the shortest form that reads back exactly; +Inf, -Inf, NaN. */
void metrics_render(const struct metrics *m, struct buf *out);

#endif
