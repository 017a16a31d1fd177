/* test-config.c: act_runner's config.yaml read as it is: every section and key, defaults,
 * label syntax (host, docker://, bare names), durations, and file:line:col errors for unknown
 * keys, wrong types, bad labels and bad values. */
#include "harness.h"

#include "config.h"

static void
write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");

    ASSERT(f != NULL);
    fputs(s, f);
    fclose(f);
}

static int
load(const char *yaml, struct config *c, struct err *e)
{
    write_file("config.yaml", yaml);
    config_defaults(c);
    return config_load("config.yaml", c, e);
}

TEST(full_file_and_defaults)
{
    struct config c;
    struct err e = {0};

    ASSERT_OK(load("log:\n  level: debug\n"
                   "runner:\n  file: .runner\n  capacity: 4\n"
                   "  envs:\n    A: b\n    N: 1\n  env_file: .env\n  timeout: 1h30m\n"
                   "  shutdown_timeout: 30s\n  insecure: false\n  fetch_timeout: 5s\n"
                   "  fetch_interval: 500ms\n"
                   "  labels:\n    - matric-builder:docker://registry.local/builder@sha256:abc\n"
                   "    - gpu:docker://img:1\n    - macos:host\n    - plain\n"
                   "cache:\n  enabled: false\n  dir: ''\n  host: ''\n  port: 0\n"
                   "container:\n  network: ''\n  privileged: false\n  options: --cpus 2\n"
                   "  workdir_parent: w\n  valid_volumes:\n    - data\n  docker_host: '-'\n"
                   "  force_pull: true\n"
                   "host:\n  workdir_parent: /tmp/h\n", &c, &e));
    ASSERT_STR_EQ(c.log_level, "debug");
    ASSERT_EQ(c.runner.capacity, 4);
    ASSERT_STR_EQ(json_string_value(json_object_get(c.runner.envs, "N")), "1");
    ASSERT_EQ((int)c.runner.timeout_s, 5400);
    ASSERT_EQ((int)(c.runner.fetch_interval_s * 1000), 500);
    ASSERT_EQ(c.runner.n_labels, 4);
    ASSERT_STR_EQ(c.runner.labels[0].name, "matric-builder");
    ASSERT_EQ(c.runner.labels[0].exec, CONFIG_EXEC_DOCKER);
    ASSERT_STR_EQ(c.runner.labels[0].image, "registry.local/builder@sha256:abc");
    ASSERT_STR_EQ(c.runner.labels[1].image, "img:1");
    ASSERT_EQ(c.runner.labels[2].exec, CONFIG_EXEC_HOST);
    ASSERT_STR_EQ(c.runner.labels[3].name, "plain");
    ASSERT_EQ(c.runner.labels[3].exec, CONFIG_EXEC_HOST);
    ASSERT(!c.cache.enabled);
    ASSERT_STR_EQ(c.container.options, "--cpus 2");
    ASSERT_EQ(c.container.n_valid_volumes, 1);
    ASSERT(c.container.force_pull);
    ASSERT_STR_EQ(c.host.workdir_parent, "/tmp/h");
    config_free(&c);

    config_defaults(&c);
    ASSERT_EQ(c.runner.capacity, 1);
    ASSERT_EQ((int)c.runner.timeout_s, 3 * 3600);
    ASSERT_EQ((int)c.runner.fetch_interval_s, 2);
    ASSERT(c.cache.enabled);
    config_free(&c);
}

TEST(errors_name_file_line_col)
{
    static const char *const bad[][2] = {
        {"runner:\n  capcity: 2\n", "config.yaml:2:3: runner: unknown key 'capcity'"},
        {"runner:\n  capacity: lots\n",
         "config.yaml:2:13: runner.capacity: expected a whole number from 1 to 1024"},
        {"runner:\n  timeout: forever\n",
         "config.yaml:2:12: runner.timeout: expected a duration such as 30s, 5m or 3h"},
        {"runner:\n  labels:\n    - x:podman://y\n",
         "config.yaml:3:7: label 'x:podman://y': unknown schema 'podman' (expected host or docker)"},
        {"runner:\n  labels:\n    - x:docker://\n",
         "config.yaml:3:7: label 'x:docker://': docker needs an image (name:docker://IMAGE)"},
        {"container:\n  privileged: maybe\n",
         "config.yaml:2:15: container.privileged: expected true or false"},
        {"log:\n  level: loud\n",
         "config.yaml:2:10: log.level: expected trace, debug, info, warn, error or fatal"},
        {"bogus: 1\n", "config.yaml:1:1: the configuration: unknown key 'bogus'"},
        {"runner: [1]\n", "config.yaml:1:9: runner: expected a mapping"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config c;
        struct err e = {0};

        ASSERT_EQ(load(bad[i][0], &c, &e), ERR_INVALID);
        ASSERT_STR_EQ(e.msg, bad[i][1]);
        config_free(&c);
    }
}

TEST(durations_and_missing_file)
{
    double s;
    struct config c;
    struct err e = {0};

    ASSERT_OK(config_duration("1h2m3s", &s));
    ASSERT_EQ((int)s, 3723);
    ASSERT_OK(config_duration("0", &s));
    ASSERT_EQ((int)s, 0);
    ASSERT(config_duration("5", &s) < 0);
    ASSERT(config_duration("-1s", &s) < 0);
    config_defaults(&c);
    ASSERT(config_load("nope.yaml", &c, &e) < 0);
    ASSERT_STR_EQ(e.msg, "nope.yaml: No such file or directory");
    config_free(&c);
}
