/* test-metrics.c: the metrics registry and its Prometheus text rendering. Covers: exact text for
 * counters and gauges with and without labels (series in first-use order, a label-less family
 * showing 0 from registration, a labelled one without series showing only # HELP/# TYPE),
 * metric_touch(), histograms with custom and default buckets (cumulative buckets, a value on a
 * bound counted in that bucket, +Inf, _sum, _count, NaN), number formatting (integers, shortest
 * round-trip fractions, exponents, +Inf/-Inf/NaN), escaping of label values and help text, a
 * second registration returning the same family, the aborts on misuse (wrong number of label
 * values, a different re-registration, a counter going down, set on a counter, observe on a
 * gauge, bad names, unsorted buckets, a histogram label "le", a NULL label value), and
 * `promtool check metrics` accepting a rich sample (and rejecting a bad one, to show the check
 * can fail). promtool missing: the case fails when $CI is set, else it is skipped. */
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "metrics.h"
#include "runner/buf.h"

/* Renders m into a new string. */
static char *
render(const struct metrics *m)
{
    struct buf out = BUF_INIT;

    metrics_render(m, &out);
    return buf_steal(&out);
}

TEST(counter_and_gauge)
{
    struct metrics *m = metrics_new();
    const char *const jl[] = {"label", "result", NULL};
    const char *const gl[] = {"label", NULL};
    struct metric_family *jobs, *running, *spooled, *free_slots;
    char *text;

    jobs = metrics_family(m, "runnerd_jobs_total", "Jobs finished.", METRIC_COUNTER, jl, NULL, 0);
    running = metrics_family(m, "runnerd_jobs_running", "Jobs running now.", METRIC_GAUGE, gl,
                             NULL, 0);
    spooled = metrics_family(m, "runnerd_log_rows_spooled_total", "Log rows spooled.",
                             METRIC_COUNTER, NULL, NULL, 0);
    free_slots = metrics_family(m, "runnerd_slots_free", "Free slots.", METRIC_GAUGE,
                                (const char *const[]){"class", NULL}, NULL, 0);
    (void)free_slots;

    metric_add(jobs, 1, "ubuntu-latest", "success");
    metric_add(jobs, 2, "gpu", "failure");
    metric_add(jobs, 1, "ubuntu-latest", "success");
    metric_touch(jobs, "gpu", "cancelled");
    metric_touch(jobs, "gpu", "failure"); /* exists: unchanged */
    metric_set(running, 3, "ubuntu-latest");
    metric_add(running, -1, "ubuntu-latest");
    metric_add(running, 1, "gpu");
    metric_add(spooled, 41);
    metric_add(spooled, 1);

    text = render(m);
    ASSERT_STR_EQ(text, "# HELP runnerd_jobs_total Jobs finished.\n"
                        "# TYPE runnerd_jobs_total counter\n"
                        "runnerd_jobs_total{label=\"ubuntu-latest\",result=\"success\"} 2\n"
                        "runnerd_jobs_total{label=\"gpu\",result=\"failure\"} 2\n"
                        "runnerd_jobs_total{label=\"gpu\",result=\"cancelled\"} 0\n"
                        "# HELP runnerd_jobs_running Jobs running now.\n"
                        "# TYPE runnerd_jobs_running gauge\n"
                        "runnerd_jobs_running{label=\"ubuntu-latest\"} 2\n"
                        "runnerd_jobs_running{label=\"gpu\"} 1\n"
                        "# HELP runnerd_log_rows_spooled_total Log rows spooled.\n"
                        "# TYPE runnerd_log_rows_spooled_total counter\n"
                        "runnerd_log_rows_spooled_total 42\n"
                        "# HELP runnerd_slots_free Free slots.\n"
                        "# TYPE runnerd_slots_free gauge\n");
    free(text);
    metrics_free(m);
    metrics_free(NULL);
}

TEST(unlabelled_family_shows_zero_at_once)
{
    struct metrics *m = metrics_new();
    char *text;

    metrics_family(m, "runnerd_log_rows_sent_total", "Log rows acknowledged by Gitea.",
                   METRIC_COUNTER, NULL, NULL, 0);
    metrics_family(m, "runnerd_step_seconds", "Steps.", METRIC_HISTOGRAM, NULL,
                   (const double[]){1}, 1);
    text = render(m);
    ASSERT_STR_EQ(text, "# HELP runnerd_log_rows_sent_total Log rows acknowledged by Gitea.\n"
                        "# TYPE runnerd_log_rows_sent_total counter\n"
                        "runnerd_log_rows_sent_total 0\n"
                        "# HELP runnerd_step_seconds Steps.\n"
                        "# TYPE runnerd_step_seconds histogram\n"
                        "runnerd_step_seconds_bucket{le=\"1\"} 0\n"
                        "runnerd_step_seconds_bucket{le=\"+Inf\"} 0\n"
                        "runnerd_step_seconds_sum 0\n"
                        "runnerd_step_seconds_count 0\n");
    free(text);
    metrics_free(m);
}

TEST(histogram)
{
    struct metrics *m = metrics_new();
    const double b[] = {0.25, 1, 2.5};
    struct metric_family *h;
    char *text;

    h = metrics_family(m, "runnerd_step_duration_seconds", "Step durations.", METRIC_HISTOGRAM,
                       (const char *const[]){"label", NULL}, b, 3);
    metric_observe(h, 0.25, "x"); /* on a bound: counted in that bucket */
    metric_observe(h, 0.5, "x");
    metric_observe(h, 2, "x");
    metric_observe(h, 100, "x"); /* above every bound: +Inf only */
    metric_observe(h, 0.1, "y");
    text = render(m);
    ASSERT_STR_EQ(text,
                  "# HELP runnerd_step_duration_seconds Step durations.\n"
                  "# TYPE runnerd_step_duration_seconds histogram\n"
                  "runnerd_step_duration_seconds_bucket{label=\"x\",le=\"0.25\"} 1\n"
                  "runnerd_step_duration_seconds_bucket{label=\"x\",le=\"1\"} 2\n"
                  "runnerd_step_duration_seconds_bucket{label=\"x\",le=\"2.5\"} 3\n"
                  "runnerd_step_duration_seconds_bucket{label=\"x\",le=\"+Inf\"} 4\n"
                  "runnerd_step_duration_seconds_sum{label=\"x\"} 102.75\n"
                  "runnerd_step_duration_seconds_count{label=\"x\"} 4\n"
                  "runnerd_step_duration_seconds_bucket{label=\"y\",le=\"0.25\"} 1\n"
                  "runnerd_step_duration_seconds_bucket{label=\"y\",le=\"1\"} 1\n"
                  "runnerd_step_duration_seconds_bucket{label=\"y\",le=\"2.5\"} 1\n"
                  "runnerd_step_duration_seconds_bucket{label=\"y\",le=\"+Inf\"} 1\n"
                  "runnerd_step_duration_seconds_sum{label=\"y\"} 0.1\n"
                  "runnerd_step_duration_seconds_count{label=\"y\"} 1\n");
    free(text);
    metrics_free(m);
}

TEST(histogram_default_buckets_and_nan)
{
    struct metrics *m = metrics_new();
    struct metric_family *h;
    char *text;

    h = metrics_family(m, "d_seconds", "D.", METRIC_HISTOGRAM, NULL, NULL, 0);
    metric_observe(h, 7);
    metric_observe(h, NAN); /* +Inf bucket only; the sum becomes NaN */
    text = render(m);
    ASSERT_STR_EQ(text, "# HELP d_seconds D.\n"
                        "# TYPE d_seconds histogram\n"
                        "d_seconds_bucket{le=\"0.1\"} 0\n"
                        "d_seconds_bucket{le=\"0.5\"} 0\n"
                        "d_seconds_bucket{le=\"1\"} 0\n"
                        "d_seconds_bucket{le=\"5\"} 0\n"
                        "d_seconds_bucket{le=\"15\"} 1\n"
                        "d_seconds_bucket{le=\"60\"} 1\n"
                        "d_seconds_bucket{le=\"300\"} 1\n"
                        "d_seconds_bucket{le=\"900\"} 1\n"
                        "d_seconds_bucket{le=\"3600\"} 1\n"
                        "d_seconds_bucket{le=\"+Inf\"} 2\n"
                        "d_seconds_sum NaN\n"
                        "d_seconds_count 2\n");
    free(text);
    metrics_free(m);
}

TEST(numbers)
{
    struct metrics *m = metrics_new();
    struct metric_family *g;
    const char *const l[] = {"v", NULL};
    char *text;

    g = metrics_family(m, "n", "Numbers.", METRIC_GAUGE, l, NULL, 0);
    metric_set(g, 3, "int");
    metric_set(g, -2.5, "neg");
    metric_set(g, 0.1, "tenth");
    metric_set(g, 1.0 / 3, "third");
    metric_set(g, 1e-9, "small");
    metric_set(g, 1e20, "big");
    metric_set(g, 9007199254740991.0, "max_exact");
    metric_set(g, 9007199254740992.0, "two_53");
    metric_set(g, 1e16 + 2, "above_2_53");
    metric_set(g, -0.0, "negzero");
    metric_set(g, INFINITY, "inf");
    metric_set(g, -INFINITY, "-inf");
    metric_set(g, NAN, "nan");
    text = render(m);
    ASSERT_STR_EQ(text, "# HELP n Numbers.\n"
                        "# TYPE n gauge\n"
                        "n{v=\"int\"} 3\n"
                        "n{v=\"neg\"} -2.5\n"
                        "n{v=\"tenth\"} 0.1\n"
                        "n{v=\"third\"} 0.3333333333333333\n"
                        "n{v=\"small\"} 1e-09\n"
                        "n{v=\"big\"} 1e+20\n"
                        "n{v=\"max_exact\"} 9007199254740991\n"
                        "n{v=\"two_53\"} 9007199254740992\n"
                        "n{v=\"above_2_53\"} 10000000000000002\n"
                        "n{v=\"negzero\"} 0\n"
                        "n{v=\"inf\"} +Inf\n"
                        "n{v=\"-inf\"} -Inf\n"
                        "n{v=\"nan\"} NaN\n");
    free(text);
    metrics_free(m);
}

TEST(escaping)
{
    struct metrics *m = metrics_new();
    struct metric_family *c;
    char *text;

    c = metrics_family(m, "esc_total", "Help with a \\ backslash,\na newline and \"quotes\".",
                       METRIC_COUNTER, (const char *const[]){"branch", "path", NULL}, NULL, 0);
    metric_add(c, 1, "feat/\"quoted\"\nline2", "C:\\dir\\");
    metric_add(c, 1, "", "{,}=");
    text = render(m);
    ASSERT_STR_EQ(text,
                  "# HELP esc_total Help with a \\\\ backslash,\\na newline and \"quotes\".\n"
                  "# TYPE esc_total counter\n"
                  "esc_total{branch=\"feat/\\\"quoted\\\"\\nline2\",path=\"C:\\\\dir\\\\\"} 1\n"
                  "esc_total{branch=\"\",path=\"{,}=\"} 1\n");
    free(text);
    metrics_free(m);
}

TEST(same_family_twice)
{
    struct metrics *m = metrics_new();
    const char *const l[] = {"gpu", NULL};
    const char *const l2[] = {"gpu", NULL}; /* equal, not the same pointers */
    const double b[] = {1, 2};
    const double b2[] = {1, 2};
    struct metric_family *a, *a2, *h, *h2, *d, *d2;
    char *text;

    a = metrics_family(m, "runnerd_gpu_allocations_total", "Grants.", METRIC_COUNTER, l, NULL, 0);
    a2 = metrics_family(m, "runnerd_gpu_allocations_total", "Grants.", METRIC_COUNTER, l2, NULL,
                        0);
    ASSERT(a == a2);
    h = metrics_family(m, "h_seconds", "H.", METRIC_HISTOGRAM, NULL, b, 2);
    h2 = metrics_family(m, "h_seconds", "H.", METRIC_HISTOGRAM, NULL, b2, 2);
    ASSERT(h == h2);
    d = metrics_family(m, "d_seconds", "D.", METRIC_HISTOGRAM, NULL, NULL, 0);
    d2 = metrics_family(m, "d_seconds", "D.", METRIC_HISTOGRAM, NULL, NULL, 0);
    ASSERT(d == d2);
    ASSERT(a != h && h != d);
    metric_add(a, 1, "GPU-0");
    metric_add(a2, 1, "GPU-0");
    text = render(m);
    /* One # HELP per family, and both adds landed on the same series. */
    ASSERT_STR_CONTAINS(text, "# TYPE runnerd_gpu_allocations_total counter\n"
                              "runnerd_gpu_allocations_total{gpu=\"GPU-0\"} 2\n"
                              "# HELP h_seconds H.\n");
    ASSERT(strstr(strstr(text, "# HELP h_seconds") + 1, "# HELP h_seconds") == NULL);
    free(text);
    metrics_free(m);
}

/* ---- misuse aborts --------------------------------------------------------------------------- */

typedef void (*misuse_fn)(struct metrics *m);

/* Runs fn in a child with stderr in a file; asserts it aborted saying expect. */
static void
expect_abort(misuse_fn fn, const char *expect)
{
    pid_t pid;
    int status = 0;
    char *err;

    fflush(NULL);
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        struct metrics *m = metrics_new();

        ASSERT(freopen("stderr.txt", "w", stderr) != NULL);
        signal(SIGABRT, SIG_DFL);
        fn(m);
        _exit(0); /* not reached when fn aborts */
    }
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    err = test_read_file("stderr.txt", NULL);
    ASSERT_STR_CONTAINS(err, expect);
    free(err);
    unlink("stderr.txt");
}

static const char *const two_labels[] = {"label", "result", NULL};

static void
too_few_values(struct metrics *m)
{
    struct metric_family *f =
        metrics_family(m, "runnerd_jobs_total", "Jobs.", METRIC_COUNTER, two_labels, NULL, 0);

    metric_add(f, 1, "only-one");
}

static void
too_many_values(struct metrics *m)
{
    struct metric_family *f =
        metrics_family(m, "runnerd_jobs_total", "Jobs.", METRIC_COUNTER, two_labels, NULL, 0);

    metric_touch(f, "a", "b", "c");
}

static void
values_on_unlabelled(struct metrics *m)
{
    struct metric_family *f = metrics_family(m, "x_total", "X.", METRIC_COUNTER, NULL, NULL, 0);

    metric_add(f, 1, "surprise");
}

static void
null_value(struct metrics *m)
{
    struct metric_family *f =
        metrics_family(m, "runnerd_jobs_total", "Jobs.", METRIC_COUNTER, two_labels, NULL, 0);

    metric_add(f, 1, "a", (const char *)NULL);
}

static void
different_labels(struct metrics *m)
{
    metrics_family(m, "runnerd_jobs_total", "Jobs.", METRIC_COUNTER, two_labels, NULL, 0);
    metrics_family(m, "runnerd_jobs_total", "Jobs.", METRIC_COUNTER,
                   (const char *const[]){"label", NULL}, NULL, 0);
}

static void
different_type(struct metrics *m)
{
    metrics_family(m, "x", "X.", METRIC_COUNTER, NULL, NULL, 0);
    metrics_family(m, "x", "X.", METRIC_GAUGE, NULL, NULL, 0);
}

static void
different_buckets(struct metrics *m)
{
    metrics_family(m, "h", "H.", METRIC_HISTOGRAM, NULL, (const double[]){1, 2}, 2);
    metrics_family(m, "h", "H.", METRIC_HISTOGRAM, NULL, (const double[]){1, 3}, 2);
}

static void
counter_down(struct metrics *m)
{
    metric_add(metrics_family(m, "x_total", "X.", METRIC_COUNTER, NULL, NULL, 0), -1);
}

static void
set_counter(struct metrics *m)
{
    metric_set(metrics_family(m, "x_total", "X.", METRIC_COUNTER, NULL, NULL, 0), 5);
}

static void
observe_gauge(struct metrics *m)
{
    metric_observe(metrics_family(m, "g", "G.", METRIC_GAUGE, NULL, NULL, 0), 5);
}

static void
add_histogram(struct metrics *m)
{
    metric_add(metrics_family(m, "h", "H.", METRIC_HISTOGRAM, NULL, NULL, 0), 5);
}

static void
bad_metric_name(struct metrics *m)
{
    metrics_family(m, "runnerd-jobs", "X.", METRIC_COUNTER, NULL, NULL, 0);
}

static void
bad_label_name(struct metrics *m)
{
    metrics_family(m, "x", "X.", METRIC_COUNTER, (const char *const[]){"a:b", NULL}, NULL, 0);
}

static void
le_label(struct metrics *m)
{
    metrics_family(m, "h", "H.", METRIC_HISTOGRAM, (const char *const[]){"le", NULL}, NULL, 0);
}

static void
unsorted_buckets(struct metrics *m)
{
    metrics_family(m, "h", "H.", METRIC_HISTOGRAM, NULL, (const double[]){1, 1}, 2);
}

TEST(misuse_aborts)
{
    expect_abort(too_few_values, "metrics: runnerd_jobs_total takes 2 label values, got 1");
    expect_abort(too_many_values, "metrics: runnerd_jobs_total takes 2 label values, got 3");
    expect_abort(values_on_unlabelled, "metrics: x_total takes 0 label values, got 1");
    expect_abort(null_value, "value of label \"result\" is NULL");
    expect_abort(different_labels, "runnerd_jobs_total registered twice with different labels");
    expect_abort(different_type, "x registered twice with a different help text or type");
    expect_abort(different_buckets, "h registered twice with different buckets");
    expect_abort(counter_down, "x_total: counters only go up");
    expect_abort(set_counter, "x_total: metric_set() on a counter");
    expect_abort(observe_gauge, "g: metric_observe() on a gauge");
    expect_abort(add_histogram, "h: metric_add() on a histogram");
    expect_abort(bad_metric_name, "invalid metric name \"runnerd-jobs\"");
    expect_abort(bad_label_name, "x: invalid label name \"a:b\"");
    expect_abort(le_label, "h: a histogram cannot have a label \"le\"");
    expect_abort(unsorted_buckets, "h: buckets must be finite and strictly ascending");
}

/* ---- promtool -------------------------------------------------------------------------------- */

/* Returns true when promtool is on PATH; when it is not, fails under $CI, else says so. */
static bool
have_promtool(void)
{
    if (system("command -v promtool >/dev/null 2>&1") == 0)
        return true;
    if (getenv("CI") != NULL)
        test_fail(__FILE__, __LINE__, "promtool not found on PATH (required when CI is set)");
    fprintf(stderr, "SKIP: promtool not found on PATH\n");
    return false;
}

/* Feeds text to `promtool check metrics`; returns its exit status, output in *out. */
static int
promtool_check(const char *text, char **out)
{
    FILE *f = fopen("sample.prom", "w");
    int st;

    ASSERT(f != NULL);
    ASSERT_EQ(fputs(text, f) >= 0, 1);
    ASSERT_EQ(fclose(f), 0);
    st = system("promtool check metrics < sample.prom > promtool.out 2>&1");
    ASSERT(st != -1 && WIFEXITED(st));
    *out = test_read_file("promtool.out", NULL);
    ASSERT(*out != NULL);
    return WEXITSTATUS(st);
}

TEST(promtool_accepts_rich_sample)
{
    struct metrics *m;
    struct metric_family *jobs, *running, *errors, *steps, *gpu, *grants, *slots;
    char *text, *out;

    if (!have_promtool())
        return;
    m = metrics_new();
    jobs = metrics_family(m, "runnerd_jobs_total", "Jobs finished, by label and result.",
                          METRIC_COUNTER, (const char *const[]){"label", "result", NULL}, NULL,
                          0);
    running = metrics_family(m, "runnerd_jobs_running", "Jobs running now.", METRIC_GAUGE,
                             (const char *const[]){"label", NULL}, NULL, 0);
    errors = metrics_family(m, "runnerd_poll_errors_total",
                            "Failed Declare/FetchTask calls.\nSecond line with a \\ too.",
                            METRIC_COUNTER, (const char *const[]){"class", "kind", NULL}, NULL,
                            0);
    metrics_family(m, "runnerd_log_rows_spooled_total", "Log rows written to the spool.",
                   METRIC_COUNTER, NULL, NULL, 0);
    metrics_family(m, "runnerd_log_rows_sent_total", "Log rows acknowledged by Gitea.",
                   METRIC_COUNTER, NULL, NULL, 0);
    steps = metrics_family(m, "runnerd_step_duration_seconds", "Step durations.",
                           METRIC_HISTOGRAM, (const char *const[]){"label", NULL}, NULL, 0);
    gpu = metrics_family(m, "runnerd_gpu_allocated", "1 while a job holds the GPU.",
                         METRIC_GAUGE, (const char *const[]){"gpu", NULL}, NULL, 0);
    grants = metrics_family(m, "runnerd_gpu_allocations_total", "Grants of the GPU to jobs.",
                            METRIC_COUNTER, (const char *const[]){"gpu", NULL}, NULL, 0);
    slots = metrics_family(m, "runnerd_slots_free", "Free job slots.", METRIC_GAUGE,
                           (const char *const[]){"class", NULL}, NULL, 0);
    metrics_family(m, "runnerd_unused", "A labelled family without series yet.", METRIC_GAUGE,
                   (const char *const[]){"x", NULL}, NULL, 0);

    metric_add(jobs, 3, "ubuntu-latest", "success");
    metric_add(jobs, 1, "weird \"label\"\\\nwith newline", "failure");
    metric_set(running, 2, "ubuntu-latest");
    metric_add(errors, 1, "default", "unavailable");
    metric_observe(steps, 0.05, "ubuntu-latest");
    metric_observe(steps, 12.5, "ubuntu-latest");
    metric_observe(steps, 1e6, "gpu");
    metric_observe(steps, 1.0 / 3, "gpu");
    metric_set(gpu, 1, "GPU-8a6c");
    metric_add(grants, 1, "GPU-8a6c");
    metric_set(slots, INFINITY, "unlimited");
    metric_set(slots, NAN, "unknown");
    metric_set(slots, 1e-7, "tiny");

    text = render(m);
    ASSERT_EQ(promtool_check(text, &out), 0);
    ASSERT_STR_EQ(out, "");
    free(out);
    free(text);
    metrics_free(m);
}

TEST(promtool_rejects_bad_sample)
{
    struct metrics *m;
    char *text, *out;

    if (!have_promtool())
        return;
    /* A counter without _total: the lint complains, proving the check above can fail. */
    m = metrics_new();
    metric_add(metrics_family(m, "runnerd_jobs", "Jobs.", METRIC_COUNTER, NULL, NULL, 0), 1);
    text = render(m);
    ASSERT(promtool_check(text, &out) != 0);
    ASSERT_STR_CONTAINS(out, "_total");
    free(out);
    free(text);
    metrics_free(m);
}
