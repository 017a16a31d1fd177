/* metrics.c: a registry of metric families rendered in the Prometheus text exposition format
 * 0.0.4 (see metrics.h). Families and series are kept in arrays in registration and first-use
 * order; a series is found by a linear scan, which suits the handful of label tuples runnerd
 * has. Misuse is a bug in the caller and aborts with a message naming the family. */
#include "metrics.h"

#include "runner/xalloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric_series {
    char **values;    /* one per label name */
    double value;     /* counter, gauge */
    uint64_t *counts; /* histogram: per bucket, not cumulative; [n_buckets] is +Inf */
    uint64_t count;
    double sum;
};

struct metric_family {
    char *name, *help;
    enum metric_type type;
    char **labels;
    size_t n_labels;
    double *buckets;
    size_t n_buckets;
    struct metric_series **series;
    size_t n_series, cap_series;
};

struct metrics {
    struct metric_family **fams;
    size_t n_fams, cap_fams;
};

static const double default_buckets[] = {0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600};

static const char *const type_names[] = {
    [METRIC_COUNTER] = "counter",
    [METRIC_GAUGE] = "gauge",
    [METRIC_HISTOGRAM] = "histogram",
};

/* Reports a bug in the caller and aborts. */
static void __attribute__((format(printf, 1, 2), noreturn))
misuse(const char *fmt, ...)
{
    va_list ap;

    fputs("metrics: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

/* ------------------------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------------------------ */

struct metrics *
metrics_new(void)
{
    return xcalloc(1, sizeof(struct metrics));
}

static void
series_free(struct metric_series *s, size_t n_labels)
{
    for (size_t i = 0; i < n_labels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s);
}

static void
family_free(struct metric_family *f)
{
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i], f->n_labels);
    free(f->series);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    free(f->labels);
    free(f->buckets);
    free(f->name);
    free(f->help);
    free(f);
}

void
metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_fams; i++)
        family_free(m->fams[i]);
    free(m->fams);
    free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metric names (colon allowed), the same without ':' for labels. */
static bool
valid_name(const char *s, bool colon)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (colon && c == ':')))
            return false;
    }
    return true;
}

/* Aborts unless a second registration of f matches the first one exactly. */
static void
family_check_same(const struct metric_family *f, const char *help, enum metric_type type,
                  const char *const *labels, const double *buckets, size_t n_buckets)
{
    size_t n = 0;

    if (strcmp(f->help, help) != 0 || f->type != type)
        misuse("%s registered twice with a different help text or type", f->name);
    for (; labels != NULL && labels[n] != NULL; n++)
        if (n >= f->n_labels || strcmp(f->labels[n], labels[n]) != 0)
            break;
    if ((labels != NULL && labels[n] != NULL) || n != f->n_labels)
        misuse("%s registered twice with different labels", f->name);
    if (type != METRIC_HISTOGRAM)
        return;
    if (buckets == NULL) {
        buckets = default_buckets;
        n_buckets = sizeof default_buckets / sizeof default_buckets[0];
    }
    if (n_buckets != f->n_buckets || memcmp(buckets, f->buckets, n_buckets * sizeof *buckets) != 0)
        misuse("%s registered twice with different buckets", f->name);
}

struct metric_family *
metrics_family(struct metrics *m, const char *name, const char *help, enum metric_type type,
               const char *const *labels, const double *buckets, size_t n_buckets)
{
    struct metric_family *f;
    size_t n_labels = 0;

    if (!valid_name(name, true))
        misuse("invalid metric name \"%s\"", name ? name : "(null)");
    if (help == NULL)
        misuse("%s: help is NULL", name);
    if (type != METRIC_COUNTER && type != METRIC_GAUGE && type != METRIC_HISTOGRAM)
        misuse("%s: unknown type %d", name, (int)type);
    for (size_t i = 0; i < m->n_fams; i++) {
        if (strcmp(m->fams[i]->name, name) == 0) {
            family_check_same(m->fams[i], help, type, labels, buckets, n_buckets);
            return m->fams[i];
        }
    }
    for (; labels != NULL && labels[n_labels] != NULL; n_labels++) {
        const char *l = labels[n_labels];

        if (!valid_name(l, false) || strncmp(l, "__", 2) == 0)
            misuse("%s: invalid label name \"%s\"", name, l);
        if (type == METRIC_HISTOGRAM && strcmp(l, "le") == 0)
            misuse("%s: a histogram cannot have a label \"le\"", name);
        for (size_t j = 0; j < n_labels; j++)
            if (strcmp(labels[j], l) == 0)
                misuse("%s: label \"%s\" given twice", name, l);
    }
    if (n_labels > METRICS_MAX_LABELS)
        misuse("%s: %zu labels, at most %d", name, n_labels, METRICS_MAX_LABELS);

    f = xcalloc(1, sizeof *f);
    f->name = xstrdup(name);
    f->help = xstrdup(help);
    f->type = type;
    f->n_labels = n_labels;
    f->labels = xcalloc(n_labels + 1, sizeof *f->labels);
    for (size_t i = 0; i < n_labels; i++)
        f->labels[i] = xstrdup(labels[i]);
    if (type == METRIC_HISTOGRAM) {
        if (buckets == NULL) {
            buckets = default_buckets;
            n_buckets = sizeof default_buckets / sizeof default_buckets[0];
        }
        for (size_t i = 0; i < n_buckets; i++) {
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                misuse("%s: buckets must be finite and strictly ascending", name);
        }
        f->n_buckets = n_buckets;
        f->buckets = xcalloc(n_buckets + 1, sizeof *f->buckets);
        if (n_buckets > 0)
            memcpy(f->buckets, buckets, n_buckets * sizeof *buckets);
    }
    if (m->n_fams == m->cap_fams) {
        m->cap_fams = m->cap_fams ? m->cap_fams * 2 : 16;
        m->fams = xreallocarray(m->fams, m->cap_fams, sizeof *m->fams);
    }
    m->fams[m->n_fams++] = f;
    if (n_labels == 0)
        metric_touch_n(0, f); /* the one series shows a 0 from the start */
    return f;
}

/* ------------------------------------------------------------------------------------------
 * Series
 * ------------------------------------------------------------------------------------------ */

/* Returns the series for the n label values in ap, creating it at first use. */
static struct metric_series *
series_get(struct metric_family *f, int n, va_list ap)
{
    const char *vals[METRICS_MAX_LABELS];
    struct metric_series *s;

    if (n < 0 || (size_t)n != f->n_labels)
        misuse("%s takes %zu label value%s, got %d", f->name, f->n_labels,
               f->n_labels == 1 ? "" : "s", n);
    for (size_t i = 0; i < f->n_labels; i++) {
        vals[i] = va_arg(ap, const char *);
        if (vals[i] == NULL)
            misuse("%s: value of label \"%s\" is NULL", f->name, f->labels[i]);
    }
    for (size_t i = 0; i < f->n_series; i++) {
        size_t j = 0;

        s = f->series[i];
        while (j < f->n_labels && strcmp(s->values[j], vals[j]) == 0)
            j++;
        if (j == f->n_labels)
            return s;
    }
    s = xcalloc(1, sizeof *s);
    s->values = xcalloc(f->n_labels + 1, sizeof *s->values);
    for (size_t i = 0; i < f->n_labels; i++)
        s->values[i] = xstrdup(vals[i]);
    if (f->type == METRIC_HISTOGRAM)
        s->counts = xcalloc(f->n_buckets + 1, sizeof *s->counts);
    if (f->n_series == f->cap_series) {
        f->cap_series = f->cap_series ? f->cap_series * 2 : 8;
        f->series = xreallocarray(f->series, f->cap_series, sizeof *f->series);
    }
    f->series[f->n_series++] = s;
    return s;
}

void
metric_add_n(int n, struct metric_family *f, double v, ...)
{
    struct metric_series *s;
    va_list ap;

    if (f->type == METRIC_HISTOGRAM)
        misuse("%s: metric_add() on a histogram (use metric_observe())", f->name);
    if (f->type == METRIC_COUNTER && !(v >= 0))
        misuse("%s: counters only go up (metric_add() of %g)", f->name, v);
    va_start(ap, v);
    s = series_get(f, n, ap);
    va_end(ap);
    s->value += v;
}

/* The series of f for the n label values in ap, when f is of type want (fn: the call, for the
 * message when it is not). */
static struct metric_series *
series_of_type(struct metric_family *f, enum metric_type want, const char *fn, int n, va_list ap)
{
    if (f->type != want)
        misuse("%s: %s() on a %s", f->name, fn, type_names[f->type]);
    return series_get(f, n, ap);
}

void
metric_set_n(int n, struct metric_family *f, double v, ...)
{
    struct metric_series *s;
    va_list ap;

    va_start(ap, v);
    s = series_of_type(f, METRIC_GAUGE, "metric_set", n, ap);
    va_end(ap);
    s->value = v;
}

void
metric_observe_n(int n, struct metric_family *f, double v, ...)
{
    struct metric_series *s;
    size_t i = 0;
    va_list ap;

    va_start(ap, v);
    s = series_of_type(f, METRIC_HISTOGRAM, "metric_observe", n, ap);
    va_end(ap);
    /* NaN compares false everywhere and lands in +Inf only, as in the Go client. */
    while (i < f->n_buckets && !(v <= f->buckets[i]))
        i++;
    s->counts[i]++;
    s->count++;
    s->sum += v;
}

void
metric_touch_n(int n, struct metric_family *f, ...)
{
    va_list ap;

    va_start(ap, f);
    (void)series_get(f, n, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------
 * Rendering
 * ------------------------------------------------------------------------------------------ */

/* Appends v as Prometheus (Go's ParseFloat) reads it: integers below 2^53 without a fraction
 * or exponent, others in the shortest %g form that reads back as the same double. */
static void
put_number(struct buf *out, double v)
{
    char tmp[64];

    if (isnan(v)) {
        buf_puts(out, "NaN");
        return;
    }
    if (isinf(v)) {
        buf_puts(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        buf_putc(out, '0'); /* also -0 */
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        buf_printf(out, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    buf_puts(out, tmp);
}

/* Appends s with backslash and newline escaped, and double quote too in a label value. */
static void
put_escaped(struct buf *out, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_puts(out, "\\\\");
        else if (*s == '\n')
            buf_puts(out, "\\n");
        else if (quote && *s == '"')
            buf_puts(out, "\\\"");
        else
            buf_putc(out, *s);
    }
}

/* Appends "name{l1="v1",...,le="x"} value\n"; braces only when there are labels. */
static void
put_sample(struct buf *out, const struct metric_family *f, const char *suffix,
           const struct metric_series *s, const double *le, double value)
{
    bool any = f->n_labels > 0 || le != NULL;

    buf_puts(out, f->name);
    buf_puts(out, suffix);
    if (any)
        buf_putc(out, '{');
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i > 0)
            buf_putc(out, ',');
        buf_printf(out, "%s=\"", f->labels[i]);
        put_escaped(out, s->values[i], true);
        buf_putc(out, '"');
    }
    if (le != NULL) {
        buf_puts(out, f->n_labels > 0 ? ",le=\"" : "le=\"");
        put_number(out, *le);
        buf_putc(out, '"');
    }
    if (any)
        buf_putc(out, '}');
    buf_putc(out, ' ');
    put_number(out, value);
    buf_putc(out, '\n');
}

void
metrics_render(const struct metrics *m, struct buf *out)
{
    static const double inf = INFINITY;

    for (size_t i = 0; i < m->n_fams; i++) {
        const struct metric_family *f = m->fams[i];

        buf_printf(out, "# HELP %s ", f->name);
        put_escaped(out, f->help, false);
        buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (size_t j = 0; j < f->n_series; j++) {
            const struct metric_series *s = f->series[j];
            uint64_t cum = 0;

            if (f->type != METRIC_HISTOGRAM) {
                put_sample(out, f, "", s, NULL, s->value);
                continue;
            }
            for (size_t b = 0; b < f->n_buckets; b++) {
                cum += s->counts[b];
                put_sample(out, f, "_bucket", s, &f->buckets[b], (double)cum);
            }
            put_sample(out, f, "_bucket", s, &inf, (double)s->count);
            put_sample(out, f, "_sum", s, NULL, s->sum);
            put_sample(out, f, "_count", s, NULL, (double)s->count);
        }
    }
}
