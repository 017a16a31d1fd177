/* test-dockeropts.c: docker run flags from container.options. Covers: shell-word splitting
 * (quotes, escapes, unterminated quotes), every supported flag in both the "--flag value" and
 * "--flag=value" spellings (short flags attached too), durations (10s, 1m30s, 500ms, 1.5h)
 * and sizes (k/m/g, kb/gib), the merge into a create body (appending, runner labels kept),
 * and refused or unknown flags with their exact messages. */
#include <string.h>

#include "dockeropts.h"
#include "harness.h"

#define W "container.options"

/* Parses s and returns the body as compact sorted JSON (static buffer). */
static const char *
body_of(const char *s, unsigned flags)
{
    static char out[4096];
    struct dockeropts o;
    struct err e = {0};
    char *js;

    if (dockeropts_parse(s, W, flags, &o, &e) < 0)
        test_fail(__FILE__, __LINE__, "parse '%s': %s", s, e.msg);
    js = json_dumps(o.body, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(out, sizeof out, "%s", js);
    free(js);
    dockeropts_free(&o);
    return out;
}

/* Parses s expecting failure; returns the message (static buffer). */
static const char *
fail_of(const char *s, unsigned flags)
{
    static char msg[256];
    struct dockeropts o;
    struct err e = {0};

    ASSERT_EQ(dockeropts_parse(s, W, flags, &o, &e), ERR_INVALID);
    ASSERT_EQ(e.code, ERR_INVALID);
    ASSERT(o.body != NULL);
    ASSERT_EQ(json_object_size(o.body), 0);
    snprintf(msg, sizeof msg, "%s", e.msg);
    dockeropts_free(&o);
    return msg;
}

TEST(split_words)
{
    char **w;
    size_t n;
    struct err e = {0};

    ASSERT_OK(dockeropts_split("  a 'b c' \"d \\\"e\\\" $f\" g\\ h 'i'\"j\" ''  ", W, &w, &n, &e));
    ASSERT_EQ(n, 6);
    ASSERT_STR_EQ(w[0], "a");
    ASSERT_STR_EQ(w[1], "b c");
    ASSERT_STR_EQ(w[2], "d \"e\" $f");
    ASSERT_STR_EQ(w[3], "g h");
    ASSERT_STR_EQ(w[4], "ij");
    ASSERT_STR_EQ(w[5], "");
    ASSERT(w[6] == NULL);
    dockeropts_words_free(w);
    ASSERT_OK(dockeropts_split("", W, &w, &n, &e));
    ASSERT_EQ(n, 0);
    ASSERT(w[0] == NULL);
    dockeropts_words_free(w);
    ASSERT_OK(dockeropts_split(NULL, W, &w, &n, &e));
    ASSERT_EQ(n, 0);
    dockeropts_words_free(w);
    ASSERT_EQ(dockeropts_split("a 'b", W, &w, &n, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "container.options: unterminated single quote");
    ASSERT(w == NULL);
    ASSERT_EQ(dockeropts_split("a \"b\\\"", W, &w, &n, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "container.options: unterminated double quote");
    ASSERT_EQ(dockeropts_split("a \\", W, &w, &n, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "container.options: trailing backslash");
}

TEST(durations_and_sizes)
{
    long long v;

    ASSERT_OK(dockeropts_duration("10s", &v));
    ASSERT_EQ(v, 10000000000LL);
    ASSERT_OK(dockeropts_duration("1m30s", &v));
    ASSERT_EQ(v, 90000000000LL);
    ASSERT_OK(dockeropts_duration("500ms", &v));
    ASSERT_EQ(v, 500000000LL);
    ASSERT_OK(dockeropts_duration("1.5h", &v));
    ASSERT_EQ(v, 5400000000000LL);
    ASSERT_OK(dockeropts_duration("2us", &v));
    ASSERT_EQ(v, 2000);
    ASSERT_OK(dockeropts_duration("7ns", &v));
    ASSERT_EQ(v, 7);
    ASSERT_OK(dockeropts_duration("0", &v));
    ASSERT_EQ(v, 0);
    ASSERT_EQ(dockeropts_duration("10", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_duration("", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_duration("s", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_duration("-1s", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_duration("1x", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_duration("1s2", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_duration("99999999999h", &v), ERR_INVALID);

    ASSERT_OK(dockeropts_size("512", &v));
    ASSERT_EQ(v, 512);
    ASSERT_OK(dockeropts_size("64k", &v));
    ASSERT_EQ(v, 65536);
    ASSERT_OK(dockeropts_size("100m", &v));
    ASSERT_EQ(v, 104857600);
    ASSERT_OK(dockeropts_size("2g", &v));
    ASSERT_EQ(v, 2147483648LL);
    ASSERT_OK(dockeropts_size("1.5G", &v));
    ASSERT_EQ(v, 1610612736LL);
    ASSERT_OK(dockeropts_size("100mb", &v));
    ASSERT_EQ(v, 104857600);
    ASSERT_OK(dockeropts_size("2GiB", &v));
    ASSERT_EQ(v, 2147483648LL);
    ASSERT_OK(dockeropts_size("10b", &v));
    ASSERT_EQ(v, 10);
    ASSERT_EQ(dockeropts_size("m", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_size("-1m", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_size("1x", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_size("1mm", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_size("", &v), ERR_INVALID);
    ASSERT_EQ(dockeropts_size("99999999p", &v), ERR_INVALID);
}

TEST(health_flags)
{
    const char *want = "{\"Healthcheck\":{\"Interval\":1000000000,\"Retries\":3,"
                       "\"StartPeriod\":90000000000,\"Test\":[\"CMD-SHELL\",\"pg_isready -U "
                       "postgres\"],\"Timeout\":500000000}}";

    ASSERT_STR_EQ(body_of("--health-cmd \"pg_isready -U postgres\" --health-interval 1s "
                          "--health-timeout 500ms --health-retries 3 --health-start-period 1m30s",
                          0),
                  want);
    ASSERT_STR_EQ(body_of("--health-cmd='pg_isready -U postgres' --health-interval=1s "
                          "--health-timeout=500ms --health-retries=3 "
                          "--health-start-period=1m30s",
                          0),
                  want);
    ASSERT_STR_EQ(body_of("--no-healthcheck", 0), "{\"Healthcheck\":{\"Test\":[\"NONE\"]}}");
    ASSERT_STR_EQ(fail_of("--health-interval 10", 0),
                  "container.options: --health-interval: invalid duration '10'");
    ASSERT_STR_EQ(fail_of("--health-timeout=abc", 0),
                  "container.options: --health-timeout: invalid duration 'abc'");
    ASSERT_STR_EQ(fail_of("--health-start-period 1y", 0),
                  "container.options: --health-start-period: invalid duration '1y'");
    ASSERT_STR_EQ(fail_of("--health-retries x", 0),
                  "container.options: --health-retries: invalid number 'x'");
    ASSERT_STR_EQ(fail_of("--health-retries=-1", 0),
                  "container.options: --health-retries: invalid number '-1'");
}

TEST(config_flags)
{
    const char *want = "{\"Entrypoint\":[\"/bin/sh\"],\"Env\":[\"A=1\",\"B=two words\",\"C=\"],"
                       "\"Hostname\":\"db\",\"Labels\":{\"x\":\"1\",\"y\":\"\"},"
                       "\"User\":\"1000:1000\",\"WorkingDir\":\"/srv\"}";

    ASSERT_STR_EQ(body_of("-e A=1 --env 'B=two words' -e C= --entrypoint /bin/sh "
                          "-u 1000:1000 -w /srv --hostname db --label x=1 --label y",
                          0),
                  want);
    ASSERT_STR_EQ(body_of("--env=A=1 -e'B=two words' -e=C= --entrypoint=/bin/sh "
                          "--user=1000:1000 --workdir=/srv --hostname=db -l x=1 --label=y",
                          0),
                  want);
    ASSERT_STR_EQ(body_of("-uroot -w=/x", 0), "{\"User\":\"root\",\"WorkingDir\":\"/x\"}");
    ASSERT_STR_EQ(body_of("--entrypoint ''", 0), "{\"Entrypoint\":[\"\"]}");
    ASSERT_STR_EQ(fail_of("-e FOO", 0), "container.options: -e: expected NAME=VALUE, got 'FOO'");
    ASSERT_STR_EQ(fail_of("--env==x", 0),
                  "container.options: --env: expected NAME=VALUE, got '=x'");
    ASSERT_STR_EQ(fail_of("-w rel", 0),
                  "container.options: -w: the working directory 'rel' is not absolute");
    ASSERT_STR_EQ(fail_of("--label io.runnerd.job=1", 0),
                  "container.options: --label: label 'io.runnerd.job' is reserved for the runner");
    ASSERT_STR_EQ(fail_of("--label =1", 0), "container.options: --label: empty label name");
}

TEST(host_flags)
{
    const char *want =
        "{\"HostConfig\":{\"CapAdd\":[\"SYS_PTRACE\",\"NET_ADMIN\"],\"CapDrop\":[\"ALL\"],"
        "\"ExtraHosts\":[\"gitea.local:10.0.0.1\"],\"Init\":true,\"Memory\":536870912,"
        "\"MemorySwap\":-1,\"NanoCpus\":1500000000,\"PidsLimit\":100,\"ShmSize\":268435456,"
        "\"Tmpfs\":{\"/run\":\"\",\"/tmp\":\"rw,size=64m\"}}}";

    ASSERT_STR_EQ(body_of("--cpus 1.5 -m 512m --memory-swap -1 --pids-limit 100 "
                          "--tmpfs /tmp:rw,size=64m --tmpfs /run --shm-size 256m "
                          "--add-host gitea.local:10.0.0.1 --cap-add SYS_PTRACE "
                          "--cap-add NET_ADMIN --cap-drop ALL --init",
                          0),
                  want);
    ASSERT_STR_EQ(body_of("--cpus=1.5 --memory=512M --memory-swap=-1 --pids-limit=100 "
                          "--tmpfs=/tmp:rw,size=64m --tmpfs=/run --shm-size=256MB "
                          "--add-host=gitea.local:10.0.0.1 --cap-add=SYS_PTRACE "
                          "--cap-add=NET_ADMIN --cap-drop=ALL --init=true",
                          0),
                  want);
    ASSERT_STR_EQ(body_of("-m1g --init=false", 0), "{\"HostConfig\":{\"Memory\":1073741824}}");
    ASSERT_STR_EQ(fail_of("--cpus 0", 0), "container.options: --cpus: invalid number of CPUs '0'");
    ASSERT_STR_EQ(fail_of("--cpus=x", 0), "container.options: --cpus: invalid number of CPUs 'x'");
    ASSERT_STR_EQ(fail_of("-m 5q", 0), "container.options: -m: invalid size '5q'");
    ASSERT_STR_EQ(fail_of("--shm-size=", 0), "container.options: --shm-size: invalid size ''");
    ASSERT_STR_EQ(fail_of("--pids-limit 1.5", 0),
                  "container.options: --pids-limit: invalid number '1.5'");
    ASSERT_STR_EQ(fail_of("--tmpfs tmp", 0),
                  "container.options: --tmpfs: the path 'tmp' is not absolute");
    ASSERT_STR_EQ(fail_of("--add-host nohost", 0),
                  "container.options: --add-host: expected HOST:IP, got 'nohost'");
    ASSERT_STR_EQ(fail_of("--init=maybe", 0),
                  "container.options: --init: expected true or false, got 'maybe'");
}

TEST(volumes_returned_separately)
{
    struct dockeropts o;
    struct err e = {0};

    ASSERT_OK(dockeropts_parse("-v /data:/data:ro --volume=cache:/cache -v/x", W, 0, &o, &e));
    ASSERT_EQ(o.nvolumes, 3);
    ASSERT_STR_EQ(o.volumes[0], "/data:/data:ro");
    ASSERT_STR_EQ(o.volumes[1], "cache:/cache");
    ASSERT_STR_EQ(o.volumes[2], "/x");
    ASSERT(o.volumes[3] == NULL);
    ASSERT_EQ(json_object_size(o.body), 0);
    dockeropts_free(&o);
    ASSERT_OK(dockeropts_parse(NULL, W, 0, &o, &e));
    ASSERT_EQ(o.nvolumes, 0);
    ASSERT(o.volumes[0] == NULL);
    dockeropts_free(&o);
    dockeropts_free(NULL);
}

TEST(privileged_refused_unless_allowed)
{
    struct dockeropts o;
    struct err e = {0};

    ASSERT_STR_EQ(fail_of("--cpus 1 --privileged", 0),
                  "container.options: option '--privileged' is not allowed by the runner "
                  "configuration");
    ASSERT_OK(dockeropts_parse("--privileged", W, DOCKEROPTS_ALLOW_PRIVILEGED, &o, &e));
    ASSERT(o.privileged);
    dockeropts_free(&o);
    ASSERT_STR_EQ(body_of("--privileged", DOCKEROPTS_ALLOW_PRIVILEGED),
                  "{\"HostConfig\":{\"Privileged\":true}}");
}

TEST(refused_and_unknown)
{
    struct dockeropts o;
    struct err e = {0};

    ASSERT_STR_EQ(fail_of("--network host", 0),
                  "container.options: option '--network' is not allowed: the runner manages "
                  "the job network");
    ASSERT_STR_EQ(fail_of("--net=host", 0),
                  "container.options: option '--net' is not allowed: the runner manages the "
                  "job network");
    ASSERT_STR_EQ(fail_of("--foo", 0), "container.options: unsupported option '--foo'");
    ASSERT_STR_EQ(fail_of("--foo=bar", 0), "container.options: unsupported option '--foo'");
    ASSERT_STR_EQ(fail_of("-e A=1 -X", 0), "container.options: unsupported option '-X'");
    ASSERT_STR_EQ(fail_of("--rm", 0), "container.options: unsupported option '--rm'");
    ASSERT_STR_EQ(fail_of("--", 0), "container.options: unsupported option '--'");
    ASSERT_STR_EQ(fail_of("image", 0),
                  "container.options: unexpected argument 'image' (only options are allowed)");
    ASSERT_STR_EQ(fail_of("-", 0),
                  "container.options: unexpected argument '-' (only options are allowed)");
    ASSERT_STR_EQ(fail_of("--cpus", 0), "container.options: option '--cpus' needs a value");
    ASSERT_STR_EQ(fail_of("-e", 0), "container.options: option '-e' needs a value");
    ASSERT_STR_EQ(fail_of("--health-cmd 'x", 0), "container.options: unterminated single quote");
    /* the caller's prefix is used as given */
    ASSERT_EQ(dockeropts_parse("--bogus", "services.db.options", 0, &o, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "services.db.options: unsupported option '--bogus'");
    dockeropts_free(&o);
}

/* The policy flags: capabilities by name, no security-opt, no entrypoint in a job container, no
 * switching the pids limit off; volume problems; the loader's mode that reads only those. */
TEST(policy_flags)
{
    struct dockeropts o;
    struct err e = {0};
    char *allowed[] = {"NET_ADMIN", NULL}, *all[] = {"ALL", NULL};

    ASSERT_STR_EQ(body_of("--cap-add cap_net_admin --cap-drop=all", 0),
                  "{\"HostConfig\":{\"CapAdd\":[\"NET_ADMIN\"],\"CapDrop\":[\"ALL\"]}}");
    ASSERT_STR_EQ(fail_of("--cap-add FLY", 0),
                  "container.options: --cap-add: 'FLY' is not a capability name (such as NET_ADMIN "
                  "or ALL)");
    ASSERT_STR_EQ(fail_of("--security-opt seccomp=unconfined", 0),
                  "container.options: option '--security-opt' is not allowed: the runner sets the "
                  "container's confinement (seccomp, AppArmor, no-new-privileges)");
    ASSERT_STR_EQ(fail_of("--entrypoint=/bin/sh", DOCKEROPTS_JOB),
                  "container.options: option '--entrypoint' is not allowed in a job container: the "
                  "runner's agent is its entrypoint (use a step's run: instead)");
    ASSERT_STR_EQ(body_of("--entrypoint /x", 0), "{\"Entrypoint\":[\"/x\"]}");
    ASSERT_STR_EQ(fail_of("-w /nonexistent", DOCKEROPTS_JOB),
                  "container.options: option '-w' is not allowed in a job container: steps run in "
                  "the workspace or their working-directory (use defaults.run.working-directory)");
    ASSERT_STR_EQ(body_of("--workdir /srv", 0), "{\"WorkingDir\":\"/srv\"}"); /* a service */
    ASSERT_STR_EQ(fail_of("--pids-limit -1", 0),
                  "container.options: --pids-limit: expected a positive number of processes, got "
                  "'-1' (a job cannot switch the runner's limit off)");
    ASSERT_STR_EQ(fail_of("--pids-limit=0", 0),
                  "container.options: --pids-limit: expected a positive number of processes, got "
                  "'0' (a job cannot switch the runner's limit off)");

    ASSERT_OK(dockeropts_parse("--cap-add NET_ADMIN --cap-add SYS_ADMIN", W, 0, &o, &e));
    ASSERT_EQ(dockeropts_check_caps(&o, allowed, W, &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "container.options: --cap-add SYS_ADMIN is not allowed: the runner's "
                  "label does not list it in cap_add");
    ASSERT_EQ(dockeropts_check_caps(&o, NULL, W, &e), ERR_INVALID);
    ASSERT_OK(dockeropts_check_caps(&o, all, W, &e));
    dockeropts_free(&o);
    ASSERT_OK(dockeropts_parse("--cap-add ALL", W, 0, &o, &e));
    ASSERT_EQ(dockeropts_check_caps(&o, allowed, W, &e), ERR_INVALID);
    ASSERT_STR_CONTAINS(e.msg, "--cap-add ALL is not allowed");
    dockeropts_free(&o);

    ASSERT(dockeropts_volume_problem("data:/d") == NULL);
    ASSERT(dockeropts_volume_problem("/anon") == NULL);
    ASSERT(dockeropts_volume_problem("/etc:/x") != NULL);
    ASSERT(dockeropts_volume_problem("./x:/x") != NULL);
    ASSERT(dockeropts_volume_problem("~/x:/x:ro") != NULL);
    ASSERT(dockeropts_volume_problem("rel") != NULL);
    ASSERT(dockeropts_volume_problem("") != NULL);

    /* the loader's mode: unknown and harmless flags skipped, policy flags read */
    ASSERT_OK(dockeropts_parse("--blkio-weight 10 --add-host bad --cap-add SYS_ADMIN --rm -v x:/x",
                               W, DOCKEROPTS_SKIP_UNKNOWN, &o, &e));
    char *js = json_dumps(o.body, JSON_COMPACT | JSON_SORT_KEYS);
    ASSERT_STR_EQ(js, "{\"HostConfig\":{\"CapAdd\":[\"SYS_ADMIN\"]}}");
    free(js);
    ASSERT_EQ(o.nvolumes, 1);
    dockeropts_free(&o);
    ASSERT_EQ(dockeropts_parse("--foo --privileged", W, DOCKEROPTS_SKIP_UNKNOWN, &o, &e),
              ERR_INVALID);
    dockeropts_free(&o);
}

TEST(merge_into_body)
{
    struct dockeropts o;
    struct err e = {0};
    json_t *body = json_pack("{s:s,s:[s],s:{s:s},s:{s:s,s:[s]}}", "Image", "busybox", "Env",
                             "CI=true", "Labels", "io.runnerd.job", "42", "HostConfig",
                             "NetworkMode", "net1", "CapAdd", "CHOWN");
    char *js;

    ASSERT_OK(dockeropts_parse("-e A=1 --label x=y --cap-add SYS_PTRACE --cpus 2 "
                               "--health-cmd true -u nobody",
                               W, 0, &o, &e));
    dockeropts_merge(body, &o);
    dockeropts_merge(body, NULL);
    dockeropts_free(&o);
    js = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    ASSERT_STR_EQ(js, "{\"Env\":[\"CI=true\",\"A=1\"],\"Healthcheck\":{\"Test\":[\"CMD-SHELL\","
                      "\"true\"]},\"HostConfig\":{\"CapAdd\":[\"CHOWN\",\"SYS_PTRACE\"],"
                      "\"NanoCpus\":2000000000,\"NetworkMode\":\"net1\"},\"Image\":\"busybox\","
                      "\"Labels\":{\"io.runnerd.job\":\"42\",\"x\":\"y\"},\"User\":\"nobody\"}");
    free(js);
    json_decref(body);
}
