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

TEST(label_settings)
{
    struct config c;
    struct err e = {0};
    const char *id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char yaml[2048];

    snprintf(yaml, sizeof yaml,
             "runnerd:\n  http: 127.0.0.1:9464\n  min_free_disk: 5g\n  gpus: [GPU-a, GPU-b]\n"
             "  limits:\n    memory: 50%%\n    pids: 2048\n"
             "  labels:\n    matric-builder:\n      image: reg.local/builder@%s\n      docker: socket\n"
             "      memory: 8g\n      cpus: 1.5\n      volumes: [/srv/c:/c:ro]\n"
             "    matric-builder-gpu:\n      image: %s\n      gpus: all\n", id, id);
    ASSERT_OK(load(yaml, &c, &e));
    ASSERT_STR_EQ(c.runnerd.http, "127.0.0.1:9464");
    ASSERT_EQ(c.runnerd.min_free_disk, 5ll << 30);
    ASSERT(!c.runnerd.gpus_auto);
    ASSERT_STR_EQ(c.runnerd.gpus[1], "GPU-b");
    ASSERT(c.runnerd.gpus[2] == NULL);
    ASSERT_EQ(c.runnerd.n_profiles, 2);
    const struct config_profile *p = config_profile_find(&c, "matric-builder");
    ASSERT(p != NULL);
    ASSERT_EQ(p->docker, CONFIG_DOCKER_SOCKET);
    ASSERT_EQ(p->limits.memory, 8ll << 30);
    ASSERT(p->limits.cpus > 1.49 && p->limits.cpus < 1.51);
    ASSERT_STR_EQ(p->volumes[0], "/srv/c:/c:ro");
    ASSERT_EQ(p->line, 9);
    ASSERT_EQ(p->col, 5);
    long long mem, nano, pids;
    config_limits_resolve(&c, p, 100ll << 30, &mem, &nano, &pids);
    ASSERT_EQ(mem, 8ll << 30);
    ASSERT_EQ(nano, 1500000000ll);
    ASSERT_EQ(pids, 2048); /* from runnerd.limits */
    p = config_profile_find(&c, "matric-builder-gpu");
    ASSERT_EQ(p->gpus, -1);
    ASSERT_STR_EQ(p->gpu_caps[1], "compute");
    config_limits_resolve(&c, p, 100ll << 30, &mem, &nano, &pids);
    ASSERT_EQ(mem, 50ll << 30);
    ASSERT_EQ(nano, 0);
    ASSERT(config_profile_find(&c, "nope") == NULL);
    config_free(&c);

    config_defaults(&c);
    ASSERT(c.runnerd.gpus_auto);
    ASSERT(c.runnerd.http == NULL);
    config_limits_resolve(&c, NULL, 8ll << 30, &mem, &nano, &pids);
    ASSERT_EQ(mem, 6ll << 30);
    ASSERT_EQ(pids, 4096);
    config_free(&c);
}

TEST(label_settings_errors)
{
    static const char *const bad[][2] = {
        {"runnerd:\n  labels:\n    b:\n      gpus: -1\n",
         "config.yaml:4:13: runnerd.labels.b.gpus: expected a number of GPUs from 0 to 64, or all"},
        {"runnerd:\n  labels:\n    b:\n      docker: yes-please\n",
         "config.yaml:4:15: runnerd.labels.b.docker: expected none, socket or dind"},
        {"runnerd:\n  labels:\n    b:\n      memory: 120%\n",
         "config.yaml:4:15: runnerd.labels.b.memory: expected a size such as 512m or 8g, or a percentage"},
        {"runnerd:\n  labels:\n    b:\n      cpus: many\n",
         "config.yaml:4:13: runnerd.labels.b.cpus: expected a number of CPUs"},
        {"runnerd:\n  labels:\n    b:\n      pids: 3\n",
         "config.yaml:4:13: runnerd.labels.b.pids: expected a whole number from 16 to 4194304"},
        {"runnerd:\n  labels:\n    b:\n      volumes: [relative]\n",
         "config.yaml:4:17: runnerd.labels.b.volumes: expected SOURCE:TARGET[:ro] with an absolute TARGET"},
        {"runnerd:\n  labels:\n    b:\n      volumes: ['/a:/b:rx']\n",
         "config.yaml:4:17: runnerd.labels.b.volumes: expected SOURCE:TARGET[:ro|:rw]"},
        {"runnerd:\n  labels:\n    b:\n      image: 'sha256:abc'\n",
         "config.yaml:4:14: runnerd.labels.b.image: an id pin is sha256: followed by 64"},
        {"runnerd:\n  labels:\n    b:\n      gpu_capabilities: [gpu, warp]\n",
         "config.yaml:4:31: runnerd.labels.b.gpu_capabilities: expected gpu, nvidia, compute"},
        {"runnerd:\n  labels:\n    b:\n      dind_image: x\n",
         "config.yaml:4:7: runnerd.labels.b: dind_ settings need docker: dind"},
        {"runnerd:\n  labels:\n    b:\n      docker: dind\n",
         "config.yaml:3:5: runnerd.labels.b: docker: dind needs dind_image"},
        {"runnerd:\n  labels:\n    b:\n      colour: blue\n",
         "config.yaml:4:7: runnerd.labels.b: unknown key 'colour' (expected image, allow_job_image, docker"},
        {"runnerd:\n  labels:\n    'a b':\n      gpus: 1\n",
         "config.yaml:3:5: runnerd.labels: expected a label name"},
        {"runnerd:\n  labels:\n    b: docker\n",
         "config.yaml:3:8: runnerd.labels.b: expected a mapping of settings"},
        {"runnerd:\n  labels:\n    b: {gpus: 1}\n    b: {gpus: 2}\n",
         "config.yaml:4:5: duplicate key 'b'"},
        {"runnerd:\n  gpus: [GPU-a, GPU-a]\n",
         "config.yaml:2:17: runnerd.gpus: this GPU is listed twice"},
        {"runnerd:\n  gpus: sometimes\n",
         "config.yaml:2:9: runnerd.gpus: expected auto or a list of GPU UUIDs"},
        {"runnerd:\n  limits:\n    memory: 0\n",
         "config.yaml:3:13: runnerd.limits.memory: expected a size"},
        {"runnerd:\n  limits:\n    disk: 1g\n",
         "config.yaml:3:5: runnerd.limits: unknown key 'disk'"},
        {"runnerd:\n  labels:\n    b:\n      cap_add: [SYS_ADMIN, WARP_DRIVE]\n",
         "config.yaml:4:28: runnerd.labels.b.cap_add: expected capability names such as"},
        {"runnerd:\n  labels:\n    b:\n      cap_add: SYS_ADMIN\n",
         "config.yaml:4:16: runnerd.labels.b.cap_add: expected a list of strings"},
        {"runnerd:\n  labels:\n    b:\n      cap_drop: [net-raw]\n",
         "config.yaml:4:18: runnerd.labels.b.cap_drop: expected capability names"},
        {"runnerd:\n  limits:\n    cap_drop: [{a: b}]\n",
         "config.yaml:3:16: runnerd.limits.cap_drop: expected a string"},
        {"runnerd:\n  labels:\n    b:\n      persistent_volumes: [ok, /srv/x]\n",
         "config.yaml:4:32: runnerd.labels.b.persistent_volumes: expected volume names"},
        {"runnerd:\n  labels:\n    b:\n      allow_job_image: yes\n",
         "config.yaml:4:24: runnerd.labels.b.allow_job_image: expected true or false"},
        {"runnerd:\n  http: 9464\n",
         "config.yaml:2:9: runnerd.http: expected HOST:PORT on loopback"},
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config c;
        struct err e = {0};
        int rc = load(bad[i][0], &c, &e);
        if (rc != ERR_INVALID || strncmp(e.msg, bad[i][1], strlen(bad[i][1])) != 0)
            test_fail(__FILE__, __LINE__, "case %zu: rc %d\n  got:      %s\n  expected: %s...", i, rc,
                      e.msg, bad[i][1]);
        config_free(&c);
    }
}

/* Capabilities: cap_add per label (normalised names), the cap_drop floor per label over
 * runnerd.limits over the default, allow_job_image. */
TEST(capability_settings)
{
    struct config c;
    struct err e = {0};

    ASSERT_OK(load("runnerd:\n  limits:\n    cap_drop: [NET_RAW, cap_sys_chroot]\n  labels:\n"
                   "    a:\n      cap_add: [cap_net_admin, SYS_PTRACE]\n      allow_job_image: true\n"
                   "    b:\n      cap_drop: []\n    c:\n      cap_add: [all]\n"
                   "      persistent_volumes: [cargo-cache, npm.v2]\n", &c, &e));
    ASSERT_STR_EQ(config_profile_find(&c, "c")->persistent_volumes[1], "npm.v2");
    ASSERT(config_profile_find(&c, "a")->persistent_volumes == NULL);
    const struct config_profile *a = config_profile_find(&c, "a");
    ASSERT_STR_EQ(a->cap_add[0], "NET_ADMIN");
    ASSERT_STR_EQ(a->cap_add[1], "SYS_PTRACE");
    ASSERT(a->cap_add[2] == NULL);
    ASSERT(a->allow_job_image);
    const char *const *drop = config_cap_drop_resolve(&c, a);
    ASSERT_STR_EQ(drop[0], "NET_RAW");
    ASSERT_STR_EQ(drop[1], "SYS_CHROOT");
    ASSERT(drop[2] == NULL);
    drop = config_cap_drop_resolve(&c, config_profile_find(&c, "b"));
    ASSERT(drop[0] == NULL);
    ASSERT(!config_profile_find(&c, "b")->allow_job_image);
    ASSERT(config_profile_find(&c, "b")->cap_add == NULL);
    ASSERT_STR_EQ(config_profile_find(&c, "c")->cap_add[0], "ALL");
    config_free(&c);
    drop = config_cap_drop_resolve(NULL, NULL);
    ASSERT_STR_EQ(drop[0], "NET_RAW");
    ASSERT_STR_EQ(drop[1], "MKNOD");
    ASSERT_STR_EQ(drop[2], "AUDIT_WRITE");
    ASSERT(drop[3] == NULL);
}

TEST(example_config_loads)
{
    struct config c;
    struct err e = {0};

    config_defaults(&c);
    if (config_load(RUNNERD_SOURCE_DIR "/etc/runnerd.yaml", &c, &e) < 0)
        test_fail(__FILE__, __LINE__, "etc/runnerd.yaml: %s", e.msg);
    ASSERT(config_profile_find(&c, "matric-builder") != NULL);
    ASSERT(config_profile_find(&c, "matric-builder-gpu") != NULL);
    ASSERT(config_profile_find(&c, "matric-builder-gpu")->gpus != 0);
    config_free(&c);
}

TEST(runnerd_action_settings)
{
    struct config c;
    struct err e = {0};

    ASSERT_OK(load("runnerd:\n  cache_dir: /var/cache/x\n  git_ca_file: /etc/ca.pem\n"
                   "  actions_url: https://gitea.example.com\n"
                   "  node_image: registry.local/node@sha256:abc\n", &c, &e));
    ASSERT_STR_EQ(c.runnerd.cache_dir, "/var/cache/x");
    ASSERT_STR_EQ(c.runnerd.git_ca_file, "/etc/ca.pem");
    ASSERT_STR_EQ(c.runnerd.actions_url, "https://gitea.example.com");
    ASSERT_STR_EQ(c.runnerd.node_image, "registry.local/node@sha256:abc");
    config_free(&c);
    ASSERT(load("runnerd:\n  node_image: [a]\n", &c, &e) < 0);
    ASSERT(strstr(e.msg, "config.yaml:2:") != NULL && strstr(e.msg, "node_image") != NULL);
    config_free(&c);
}

/* Where runnerd and every runnerctl command find the state database: --state, else
 * $RUNNERD_STATE (unless empty), else runnerd.state_file, else the default. */
TEST(state_path_precedence)
{
    struct config c;
    struct err e = {0};
    char *p;

    unsetenv("RUNNERD_STATE");
    ASSERT_OK(load("runnerd:\n  state_file: /srv/r/state.db\n", &c, &e));
    p = config_state_path(&c, NULL);
    ASSERT_STR_EQ(p, "/srv/r/state.db");
    free(p);
    p = config_state_path(&c, "/tmp/flag.db");
    ASSERT_STR_EQ(p, "/tmp/flag.db");
    free(p);
    setenv("RUNNERD_STATE", "/tmp/env.db", 1);
    p = config_state_path(&c, NULL);
    ASSERT_STR_EQ(p, "/tmp/env.db");
    free(p);
    p = config_state_path(&c, "/tmp/flag.db");
    ASSERT_STR_EQ(p, "/tmp/flag.db");
    free(p);
    setenv("RUNNERD_STATE", "", 1);
    p = config_state_path(&c, NULL);
    ASSERT_STR_EQ(p, "/srv/r/state.db");
    free(p);
    config_free(&c);
    p = config_state_path(NULL, NULL);
    ASSERT_STR_EQ(p, CONFIG_STATE_FILE_DEFAULT);
    free(p);
    config_defaults(&c);
    p = config_state_path(&c, NULL);
    ASSERT_STR_EQ(p, "/var/lib/runnerd/runnerd.db");
    free(p);
    config_free(&c);
    unsetenv("RUNNERD_STATE");
}

TEST(runnerd_cache_settings)
{
    struct config c;
    struct err e = {0};

    config_defaults(&c);
    ASSERT(c.runnerd.cache.enabled);
    ASSERT(c.runnerd.cache.dir == NULL && c.runnerd.cache.max_size == 0);
    config_free(&c);
    ASSERT_OK(load("runnerd:\n  cache:\n    enabled: false\n    dir: /srv/blobs\n"
                   "    max_size: 2g\n    max_age: 168h\n"
                   "    external_url: http://cache.lan:8088\n    key_file: /etc/k\n"
                   "  labels:\n    a: {cache: false}\n    b: {cache: true}\n", &c, &e));
    ASSERT(!c.runnerd.cache.enabled);
    ASSERT_STR_EQ(c.runnerd.cache.dir, "/srv/blobs");
    ASSERT(c.runnerd.cache.max_size == 2ll << 30);
    ASSERT(c.runnerd.cache.max_age_s == 168 * 3600);
    ASSERT_STR_EQ(c.runnerd.cache.external_url, "http://cache.lan:8088/"); /* the "/" added */
    ASSERT_STR_EQ(c.runnerd.cache.key_file, "/etc/k");
    ASSERT(config_profile_find(&c, "a")->no_cache);
    ASSERT(!config_profile_find(&c, "b")->no_cache);
    config_free(&c);
    /* {file, what its error says} */
    static const char *const bad[][2] = {
        {"runnerd:\n  cache:\n    max_size: -1\n", "config.yaml:3:15: runnerd.cache.max_size"},
        {"runnerd:\n  cache:\n    external_url: http://x/\n", "external_url needs key_file"},
        {"runnerd:\n  cache:\n    external_url: 'http://'\n    key_file: k\n",
         "config.yaml:3:19: runnerd.cache.external_url"},
        {"runnerd:\n  cache: yes\n", "config.yaml:2:10: runnerd.cache: expected a mapping"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT(load(bad[i][0], &c, &e) < 0);
        ASSERT_STR_CONTAINS(e.msg, bad[i][1]);
        config_free(&c);
    }
}
