/* test-log.c: log output formats. JSON (runnerd.log_format: json): every record is one line
 * that jansson parses, with exactly ts (RFC 3339, milliseconds, UTC), level and msg; quotes,
 * backslashes, control characters, invalid UTF-8 (stray, truncated, overlong, surrogate) and
 * truncated long messages all stay valid JSON; the level filter still applies; journald's
 * "<N>" prefix only when stderr is the $JOURNAL_STREAM stream. Text: "<N>" lines under
 * journald, "time level message" otherwise, and switching JSON off returns to it. */
#include "harness.h"

#include "runner/log.h"

#include <ctype.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAPTURE "stderr.txt"

static int saved_stderr = -1;

/* Sends fd 2 to CAPTURE (in the case's temporary directory) until capture_end(). */
static void
capture_start(void)
{
    int fd;

    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    ASSERT(saved_stderr >= 0);
    fd = open(CAPTURE, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    ASSERT(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
}

/* Restores stderr (so failures are visible again); returns what was captured (free it). */
static char *
capture_end(void)
{
    char *s;

    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    s = test_read_file(CAPTURE, NULL);
    ASSERT(s != NULL);
    return s;
}

/* Splits s into lines (each must end in '\n'); returns how many, pointers in lines[]. */
static size_t
split_lines(char *s, char **lines, size_t max)
{
    size_t n = 0;

    while (*s) {
        char *nl = strchr(s, '\n');

        if (nl == NULL)
            test_fail(__FILE__, __LINE__, "last line has no newline: \"%s\"", s);
        ASSERT(n < max);
        *nl = '\0';
        lines[n++] = s;
        s = nl + 1;
    }
    return n;
}

/* "2024-05-01T12:00:00.123Z" */
static void
assert_rfc3339_ms(const char *ts)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";

    if (strlen(ts) != sizeof pat - 1)
        test_fail(__FILE__, __LINE__, "ts \"%s\" is not YYYY-MM-DDTHH:MM:SS.mmmZ", ts);
    for (size_t i = 0; pat[i]; i++)
        if (pat[i] == 'd' ? !isdigit((unsigned char)ts[i]) : ts[i] != pat[i])
            test_fail(__FILE__, __LINE__, "ts \"%s\" is not YYYY-MM-DDTHH:MM:SS.mmmZ", ts);
}

/* Parses one JSON record line; checks its fields and returns msg (a new string). */
static char *
check_record(const char *line, const char *level)
{
    json_error_t jerr;
    json_t *o = json_loads(line, 0, &jerr);
    char *msg;

    if (o == NULL)
        test_fail(__FILE__, __LINE__, "not JSON (%s at column %d): %s", jerr.text, jerr.column,
                  line);
    ASSERT(json_is_object(o));
    ASSERT_EQ(json_object_size(o), 3);
    ASSERT(json_is_string(json_object_get(o, "ts")));
    assert_rfc3339_ms(json_string_value(json_object_get(o, "ts")));
    ASSERT_STR_EQ(json_string_value(json_object_get(o, "level")), level);
    ASSERT(json_is_string(json_object_get(o, "msg")));
    msg = strdup(json_string_value(json_object_get(o, "msg")));
    json_decref(o);
    return msg;
}

TEST(json_one_parsable_object_per_line)
{
    /* What goes in, and what a JSON reader must get back. */
    static const struct {
        const char *in, *out, *level;
    } cases[] = {
        {"runnerd 0.1.0 starting", "runnerd 0.1.0 starting", "notice"},
        {"branch \"main\" path C:\\x {}", "branch \"main\" path C:\\x {}", "info"},
        {"ctl\n\r\t\x01\x1b[31m\x7f end", "ctl\n\r\t\x01\x1b[31m\x7f end", "warning"},
        {"utf8 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
         "utf8 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "error"},
        /* stray byte, truncated 2-byte, overlong '/', surrogate, above U+10FFFF, lone lead */
        {"bad \xff|\xc3|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82",
         "bad \xef\xbf\xbd|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
         "\xef\xbf\xbd\xef\xbf\xbd",
         "info"},
    };
    char *out, *lines[16];
    size_t n;

    unsetenv("JOURNAL_STREAM");
    log_init(LOG_PRIO_INFO, true); /* the text prefix must not leak into JSON */
    capture_start();
    log_set_json(true);
    log_notice("%s", cases[0].in);
    log_info("%s", cases[1].in);
    log_debug("dropped: below the level");
    log_warn("%s", cases[2].in);
    log_err("%s", cases[3].in);
    log_info("%s", cases[4].in);
    out = capture_end();
    n = split_lines(out, lines, 16);
    ASSERT_EQ(n, sizeof cases / sizeof cases[0]);
    for (size_t i = 0; i < n; i++) {
        char *msg;

        ASSERT(lines[i][0] == '{'); /* no "<N>": stderr is not the journal */
        msg = check_record(lines[i], cases[i].level);
        ASSERT_STR_EQ(msg, cases[i].out);
        free(msg);
    }
    free(out);
}

TEST(json_long_message_truncated_stays_valid)
{
    char *big = malloc(3 * 2000 + 1), *out, *lines[4], *msg;
    size_t n;

    /* 2000 "€" (3 bytes each): the record is cut inside a sequence. */
    for (size_t i = 0; i < 2000; i++)
        memcpy(big + 3 * i, "\xe2\x82\xac", 3);
    big[3 * 2000] = '\0';
    unsetenv("JOURNAL_STREAM");
    log_init(LOG_PRIO_INFO, false);
    capture_start();
    log_set_json(true);
    log_info("%s", big);
    out = capture_end();
    n = split_lines(out, lines, 4);
    ASSERT_EQ(n, 1);
    msg = check_record(lines[0], "info");
    /* 2047 bytes are kept: 682 whole "€", then a lone lead byte that becomes U+FFFD. */
    ASSERT_EQ(strlen(msg), 682 * 3 + 3);
    ASSERT(strncmp(msg, big, 682 * 3) == 0);
    ASSERT_STR_EQ(msg + 682 * 3, "\xef\xbf\xbd");
    free(msg);
    free(out);
    free(big);
}

TEST(json_journald_prefix_only_on_journal_stream)
{
    struct stat st;
    char js[64], *out, *lines[4], *msg;
    size_t n;

    log_init(LOG_PRIO_INFO, false);
    capture_start();
    /* Pretend systemd connected this very file: $JOURNAL_STREAM names stderr. */
    ASSERT(fstat(STDERR_FILENO, &st) == 0);
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    log_set_json(true);
    log_warn("on the journal");
    /* A stream that is not stderr (stderr was redirected): plain JSON. */
    setenv("JOURNAL_STREAM", "1:2", 1);
    log_set_json(true);
    log_warn("redirected");
    out = capture_end();
    n = split_lines(out, lines, 4);
    ASSERT_EQ(n, 2);
    ASSERT(strncmp(lines[0], "<4>{", 4) == 0);
    msg = check_record(lines[0] + 3, "warning");
    ASSERT_STR_EQ(msg, "on the journal");
    free(msg);
    msg = check_record(lines[1], "warning");
    ASSERT_STR_EQ(msg, "redirected");
    free(msg);
    free(out);
}

TEST(text_format_prefix_and_timestamp)
{
    char *out, *lines[8];
    size_t n;

    unsetenv("JOURNAL_STREAM");
    capture_start();
    log_init(LOG_PRIO_INFO, true);
    log_set_json(true);
    log_set_json(false); /* back to text */
    log_notice("job=42 accepted");
    log_err("docker gone");
    log_debug("dropped");
    log_init(LOG_PRIO_INFO, false);
    log_warn("retrying in 5s");
    out = capture_end();
    n = split_lines(out, lines, 8);
    ASSERT_EQ(n, 3);
    ASSERT_STR_EQ(lines[0], "<5>job=42 accepted");
    ASSERT_STR_EQ(lines[1], "<3>docker gone");
    /* "2024-05-01T12:00:00.123Z warning retrying in 5s" */
    ASSERT(strlen(lines[2]) > 25);
    lines[2][24] = '\0';
    assert_rfc3339_ms(lines[2]);
    ASSERT_STR_EQ(lines[2] + 25, "warning retrying in 5s");
    free(out);
}
