/* test-profile.c: what a label's settings put into a job container's create body: the exact
 * DeviceRequests for a GPU grant and the NVIDIA_* env consistent with it, resource limits
 * (label over runnerd.limits over defaults, applied after container.options so that nothing
 * lifts them), extra binds, the engine socket with its group, and the engine's GPU refusal;
 * profile_apply_limits() for the job's other containers (services, docker:// steps, the dind
 * sidecar): the same limits over what options said, nothing else, and nothing without a profile. */
#include "harness.h"

#include "config.h"
#include "dockeropts.h"
#include "profile.h"

static void
load(const char *yaml, struct config *c)
{
    FILE *f = fopen("config.yaml", "w");
    struct err e = {0};

    ASSERT(f != NULL);
    fputs(yaml, f);
    fclose(f);
    config_defaults(c);
    if (config_load("config.yaml", c, &e) < 0)
        test_fail(__FILE__, __LINE__, "config: %s", e.msg);
}

static char *
dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

TEST(gpu_request_exact)
{
    struct config c;
    char *gpus[] = {"GPU-aaaa", "GPU-bbbb", NULL};

    load("runnerd:\n  labels:\n    gpu:\n      image: sha256:0000000000000000000000000000000000000000000000000000000000000000\n"
         "      gpus: 2\n", &c);
    const struct config_profile *p = config_profile_find(&c, "gpu");
    ASSERT(p != NULL);
    json_t *job = profile_job(&c, p, 8ll << 30, gpus, NULL, -1);
    json_t *body = json_pack("{s:[s], s:{s:b}}", "Env", "A=1", "HostConfig", "Init", 1);
    json_t *env = json_object();
    profile_apply(body, job, env);
    char *dr = dump(json_object_get(json_object_get(body, "HostConfig"), "DeviceRequests"));
    ASSERT_STR_EQ(dr, "[{\"Capabilities\":[[\"gpu\",\"compute\",\"utility\"]],\"Count\":0,"
                      "\"DeviceIDs\":[\"GPU-aaaa\",\"GPU-bbbb\"],\"Driver\":\"nvidia\",\"Options\":{}}]");
    free(dr);
    ASSERT_STR_EQ(json_string_value(json_object_get(env, "NVIDIA_VISIBLE_DEVICES")), "GPU-aaaa,GPU-bbbb");
    ASSERT_STR_EQ(json_string_value(json_object_get(env, "NVIDIA_DRIVER_CAPABILITIES")), "compute,utility");
    ASSERT(json_object_get(json_object_get(body, "HostConfig"), "Privileged") == NULL);
    /* default limits: 75 % of 8 GiB, no swap on top, 4096 pids, no CPU limit */
    json_t *hc = json_object_get(body, "HostConfig");
    ASSERT_EQ(json_integer_value(json_object_get(hc, "Memory")), 6ll << 30);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "MemorySwap")), 6ll << 30);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "PidsLimit")), 4096);
    ASSERT(json_object_get(hc, "NanoCpus") == NULL);
    ASSERT(json_is_true(json_object_get(hc, "Init"))); /* what was there stays */
    json_decref(body);
    json_decref(env);
    json_decref(job);
    config_free(&c);
}

TEST(gpu_caps_from_settings)
{
    struct config c;
    char *gpus[] = {"GPU-1", NULL};

    load("runnerd:\n  labels:\n    g:\n      gpus: 1\n      gpu_capabilities: [utility, video]\n", &c);
    json_t *job = profile_job(&c, config_profile_find(&c, "g"), 0, gpus, NULL, -1);
    json_t *body = json_object(), *env = json_object();
    profile_apply(body, job, env);
    json_t *req = json_array_get(json_object_get(json_object_get(body, "HostConfig"), "DeviceRequests"), 0);
    char *caps = dump(json_object_get(req, "Capabilities"));
    ASSERT_STR_EQ(caps, "[[\"utility\",\"video\",\"gpu\"]]"); /* gpu added, as the CLI does */
    free(caps);
    ASSERT_STR_EQ(json_string_value(json_object_get(env, "NVIDIA_DRIVER_CAPABILITIES")), "utility,video");
    /* host memory unknown: no memory limit rather than a wrong one */
    ASSERT(json_object_get(json_object_get(body, "HostConfig"), "Memory") == NULL);
    json_decref(body);
    json_decref(env);
    json_decref(job);
    config_free(&c);
}

TEST(limits_win_over_options)
{
    struct config c;
    struct dockeropts o = {0};
    struct err e = {0};

    load("runnerd:\n  limits:\n    memory: 2g\n    cpus: 3\n  labels:\n    b:\n      memory: 50%\n"
         "      pids: 500\n      volumes: [/srv/cache:/cache:ro, cargo:/usr/local/cargo]\n"
         "    d:\n      cpus: 0\n", &c);
    json_t *body = json_object(), *env = json_object();
    /* a workflow's container.options try to lift the limits */
    ASSERT_OK(dockeropts_parse("--memory 100g --pids-limit 100000 --cpus 64", "options", 0, &o, &e));
    dockeropts_merge(body, &o);
    dockeropts_free(&o);
    json_t *job = profile_job(&c, config_profile_find(&c, "b"), 10ll << 30, NULL, "/run/docker.sock", 999);
    profile_apply(body, job, env);
    json_t *hc = json_object_get(body, "HostConfig");
    ASSERT_EQ(json_integer_value(json_object_get(hc, "Memory")), 5ll << 30);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "PidsLimit")), 500);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "NanoCpus")), 3000000000ll);
    char *binds = dump(json_object_get(hc, "Binds"));
    ASSERT_STR_EQ(binds, "[\"/srv/cache:/cache:ro\",\"cargo:/usr/local/cargo\"]");
    free(binds);
    /* no GPU: none, even where nvidia is the default runtime; no socket without docker: socket */
    ASSERT_STR_EQ(json_string_value(json_object_get(env, "NVIDIA_VISIBLE_DEVICES")), "void");
    ASSERT(json_object_get(hc, "DeviceRequests") == NULL);
    ASSERT(json_object_get(env, "DOCKER_HOST") == NULL);
    json_decref(job);
    json_decref(body);
    json_decref(env);

    /* label d: cpus 0 = no CPU limit even though runnerd.limits says 3 */
    body = json_object();
    env = json_object();
    job = profile_job(&c, config_profile_find(&c, "d"), 10ll << 30, NULL, NULL, -1);
    profile_apply(body, job, env);
    hc = json_object_get(body, "HostConfig");
    ASSERT(json_object_get(hc, "NanoCpus") == NULL);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "Memory")), 2ll << 30);
    json_decref(job);
    json_decref(body);
    json_decref(env);
    config_free(&c);
}

TEST(limits_for_other_containers)
{
    struct config c;
    struct dockeropts o = {0};
    struct err e = {0};

    load("runnerd:\n  labels:\n    b:\n      memory: 96m\n      pids: 300\n      cpus: 0.5\n"
         "      docker: socket\n      volumes: [/srv/cache:/cache]\n", &c);
    json_t *job = profile_job(&c, config_profile_find(&c, "b"), 8ll << 30, NULL, "/run/d.sock", 7);
    json_t *body = json_object();
    /* a service's options try to lift the limits and to swap */
    ASSERT_OK(dockeropts_parse("--memory 2g --memory-swap 4g --pids-limit 5000 --cpus 8 "
                               "--cap-add NET_ADMIN", "options", 0, &o, &e));
    dockeropts_merge(body, &o);
    dockeropts_free(&o);
    json_t *hc = json_object_get(body, "HostConfig");
    profile_apply_limits(job, hc);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "Memory")), 96ll << 20);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "MemorySwap")), 96ll << 20);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "PidsLimit")), 300);
    ASSERT_EQ(json_integer_value(json_object_get(hc, "NanoCpus")), 500000000ll);
    /* only the limits: no binds, socket, group or GPU env for a service or step container */
    ASSERT(json_object_get(hc, "Binds") == NULL);
    ASSERT(json_object_get(hc, "GroupAdd") == NULL);
    ASSERT(json_object_get(hc, "DeviceRequests") == NULL);
    char *caps = dump(json_object_get(hc, "CapAdd"));
    ASSERT_STR_EQ(caps, "[\"NET_ADMIN\"]"); /* what else was there stays */
    free(caps);
    json_decref(body);

    /* no profile: nothing changes */
    body = json_pack("{s:I}", "Memory", (json_int_t)(1ll << 30));
    profile_apply_limits(NULL, body);
    char *s = dump(body);
    ASSERT_STR_EQ(s, "{\"Memory\":1073741824}");
    free(s);
    json_decref(body);
    json_decref(job);
    config_free(&c);
}

TEST(socket_mode)
{
    struct config c;

    load("runnerd:\n  labels:\n    s:\n      docker: socket\n", &c);
    json_t *job = profile_job(&c, config_profile_find(&c, "s"), 0, NULL, "/run/docker.sock", 998);
    json_t *body = json_object(), *env = json_object();
    profile_apply(body, job, env);
    json_t *hc = json_object_get(body, "HostConfig");
    char *s = dump(json_object_get(hc, "Binds"));
    ASSERT_STR_EQ(s, "[\"/run/docker.sock:/var/run/docker.sock\"]");
    free(s);
    s = dump(json_object_get(hc, "GroupAdd"));
    ASSERT_STR_EQ(s, "[\"998\"]");
    free(s);
    ASSERT_STR_EQ(json_string_value(json_object_get(env, "DOCKER_HOST")), "unix:///var/run/docker.sock");
    json_decref(job);
    json_decref(body);
    json_decref(env);
    config_free(&c);
}

TEST(dind_settings_travel)
{
    struct config c;

    load("runnerd:\n  labels:\n    x:\n      docker: dind\n      dind_image: docker:dind\n"
         "      dind_privileges: caps\n      dind_args: [--storage-driver=vfs]\n", &c);
    json_t *job = profile_job(&c, config_profile_find(&c, "x"), 0, NULL, "/run/docker.sock", 1);
    char *s = dump(json_object_get(job, "dind"));
    ASSERT_STR_EQ(s, "{\"args\":[\"--storage-driver=vfs\"],\"caps\":true,\"image\":\"docker:dind\"}");
    free(s);
    ASSERT(json_object_get(job, "socket") == NULL); /* dind is not the host's socket */
    json_decref(job);
    config_free(&c);
}

/* Capabilities: a workflow adds only what the label's cap_add lists; every workflow container
 * drops the floor, less what the label lets it add back. */
TEST(capabilities_allow_list_and_floor)
{
    struct config c;
    struct err e = {0};
    struct dockeropts o;

    load("runnerd:\n  labels:\n    net:\n      cap_add: [NET_ADMIN, NET_RAW]\n"
         "    any:\n      cap_add: [ALL]\n    none: {}\n", &c);
    json_t *net = profile_job(&c, config_profile_find(&c, "net"), 1ll << 30, NULL, NULL, -1);
    json_t *any = profile_job(&c, config_profile_find(&c, "any"), 1ll << 30, NULL, NULL, -1);
    json_t *none = profile_job(&c, config_profile_find(&c, "none"), 1ll << 30, NULL, NULL, -1);
    json_t *bare = profile_job(NULL, NULL, 1ll << 30, NULL, NULL, -1); /* runnerctl without -c */
    char *s = dump(json_object_get(net, "cap_drop"));
    ASSERT_STR_EQ(s, "[\"MKNOD\",\"AUDIT_WRITE\"]"); /* NET_RAW added back by the label */
    free(s);
    s = dump(json_object_get(bare, "cap_drop"));
    ASSERT_STR_EQ(s, "[\"NET_RAW\",\"MKNOD\",\"AUDIT_WRITE\"]");
    free(s);
    ASSERT_EQ(json_integer_value(json_object_get(bare, "pids")), 4096);

    ASSERT_OK(profile_check_options(net, "--cap-add net_admin --cap-drop ALL", "container.options",
                                    DOCKEROPTS_JOB, &e));
    ASSERT_EQ(profile_check_options(net, "--cap-add SYS_ADMIN", "container.options",
                                    DOCKEROPTS_JOB, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "container.options: --cap-add SYS_ADMIN is not allowed: the runner's "
                  "label does not list it in cap_add");
    ASSERT_EQ(profile_check_options(net, "--cap-add ALL", "x", 0, &e), ERR_INVALID);
    ASSERT_OK(profile_check_options(any, "--cap-add ALL --cap-add DAC_READ_SEARCH", "x", 0, &e));
    ASSERT_EQ(profile_check_options(none, "--cap-add CAP_DAC_READ_SEARCH", "x", 0, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "--cap-add DAC_READ_SEARCH is not allowed");
    ASSERT_EQ(profile_check_options(NULL, "--cap-add CHOWN", "x", 0, &e), ERR_INVALID);
    ASSERT_EQ(profile_check_options(none, "-v /:/host", "x", 0, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "x: -v /:/host: host paths are not allowed for jobs (named volumes are)");
    ASSERT_EQ(profile_check_options(none, "--entrypoint /bin/sh", "x", DOCKEROPTS_JOB, &e),
              ERR_INVALID);
    ASSERT_OK(profile_check_options(none, "--entrypoint /bin/sh", "x", 0, &e)); /* a service */

    /* the floor joins what options drop, in the job container and the others */
    json_t *body = json_object(), *env = json_object();
    ASSERT_OK(dockeropts_parse("--cap-drop CHOWN --cap-drop NET_RAW", "o", 0, &o, &e));
    dockeropts_merge(body, &o);
    dockeropts_free(&o);
    profile_apply(body, none, env);
    s = dump(json_object_get(json_object_get(body, "HostConfig"), "CapDrop"));
    ASSERT_STR_EQ(s, "[\"CHOWN\",\"NET_RAW\",\"MKNOD\",\"AUDIT_WRITE\"]");
    free(s);
    json_t *hc = json_object();
    profile_apply_caps(net, hc);
    s = dump(json_object_get(hc, "CapDrop"));
    ASSERT_STR_EQ(s, "[\"MKNOD\",\"AUDIT_WRITE\"]");
    free(s);
    profile_apply_caps(NULL, hc); /* nothing without a profile */
    json_decref(hc);
    json_decref(body);
    json_decref(env);
    json_decref(net);
    json_decref(any);
    json_decref(none);
    json_decref(bare);
    config_free(&c);
}

/* A label that pins an image refuses a different container.image, naming where it was written,
 * unless allow_job_image. */
TEST(pinned_image_is_a_policy)
{
    struct config c;
    struct err e = {0};
    const char *id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char yaml[512];
    struct ynode img = {.kind = YNODE_SCALAR, .str = (char *)"evil", .len = 4,
                        .pos = {.line = 6, .col = 14}};
    struct wf_job wj = {.container = &img};

    snprintf(yaml, sizeof yaml, "runnerd:\n  labels:\n    pinned:\n      image: %s\n"
             "    open:\n      image: %s\n      allow_job_image: true\n    free: {}\n", id, id);
    load(yaml, &c);
    const struct config_profile *pinned = config_profile_find(&c, "pinned");
    ASSERT_EQ(profile_check_image(pinned, "evil", "w.yml", &wj, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "w.yml:6:14: container.image: label pinned runs only its pinned image "
                  "(allow_job_image: false): evil is not "
                  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    ASSERT_OK(profile_check_image(pinned, id, "w.yml", &wj, &e));
    ASSERT_OK(profile_check_image(pinned, NULL, "w.yml", &wj, &e));
    ASSERT_OK(profile_check_image(config_profile_find(&c, "open"), "evil", "w.yml", &wj, &e));
    ASSERT_OK(profile_check_image(config_profile_find(&c, "free"), "evil", "w.yml", &wj, &e));
    ASSERT_OK(profile_check_image(NULL, "evil", "w.yml", &wj, &e));
    config_free(&c);
}

TEST(gpu_refusal_recognised)
{
    ASSERT(profile_gpu_refused("start container: could not select device driver \"\" with capabilities: [[gpu]]"));
    ASSERT(profile_gpu_refused("could not select device driver \"nvidia\" with capabilities: [[gpu compute]]"));
    ASSERT(!profile_gpu_refused("no such image"));
    ASSERT(!profile_gpu_refused(NULL));
}
