/* test-stepenv.c: step environment precedence (job < container < runner variables < step env
 * < INPUT_*), INPUT_ naming, inherited INPUT_ dropped for uses steps, GITHUB_* from the github
 * context, file-command paths, PATH with GITHUB_PATH entries, ImageOS, envp form. */
#include "harness.h"

#include "stepenv.h"

#define GET(o, k) json_string_value(json_object_get((o), (k)))

TEST(precedence_and_runner_variables)
{
    json_t *job = json_pack("{s:s, s:s, s:s, s:s}", "A", "job", "B", "job", "CI", "false",
                            "INPUT_OLD", "x");
    json_t *cont = json_pack("{s:s, s:s}", "B", "container", "C", "container");
    json_t *gh = json_pack("{s:s, s:s, s:s}", "sha", "abc", "ref", "refs/heads/main", "job", "j");
    json_t *step = json_pack("{s:s, s:i}", "C", "step", "N", 7);
    json_t *with = json_pack("{s:s, s:b}", "who-to-greet", "Mona", "flag.x", 1);
    json_t *extra = json_pack("[s, s]", "/new", "/old");
    struct stepenv_in in = {
        .job_env = job, .container_env = cont, .github = gh, .step_id = "build",
        .workspace = "/ws", .label = "ubuntu-22.04", .step_env = step, .with = with,
        .uses = true, .extra_path = extra, .file_dir = "/f",
    };
    json_t *env = stepenv_build(&in);

    ASSERT_STR_EQ(GET(env, "A"), "job");
    ASSERT_STR_EQ(GET(env, "B"), "container");
    ASSERT_STR_EQ(GET(env, "C"), "step");
    ASSERT_STR_EQ(GET(env, "N"), "7");
    ASSERT_STR_EQ(GET(env, "CI"), "true"); /* runner values override user values */
    ASSERT_STR_EQ(GET(env, "ACT"), "true");
    ASSERT(json_object_get(env, "INPUT_OLD") == NULL);
    ASSERT_STR_EQ(GET(env, "INPUT_WHO-TO-GREET"), "Mona");
    ASSERT_STR_EQ(GET(env, "INPUT_FLAG_X"), "true");
    ASSERT_STR_EQ(GET(env, "GITHUB_SHA"), "abc");
    ASSERT_STR_EQ(GET(env, "GITHUB_REF"), "refs/heads/main");
    ASSERT_STR_EQ(GET(env, "GITHUB_JOB"), "j");
    ASSERT_STR_EQ(GET(env, "GITHUB_ACTION"), "build");
    ASSERT_STR_EQ(GET(env, "GITHUB_WORKSPACE"), "/ws");
    ASSERT_STR_EQ(GET(env, "GITHUB_OUTPUT"), "/f/outputcmd.txt");
    ASSERT_STR_EQ(GET(env, "GITHUB_ENV"), "/f/envs.txt");
    ASSERT_STR_EQ(GET(env, "GITHUB_STEP_SUMMARY"), "/f/SUMMARY.md");
    ASSERT_STR_EQ(GET(env, "ImageOS"), "ubuntu22");
    ASSERT_STR_EQ(GET(env, "PATH"),
                  "/new:/old:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    json_decref(env);

    /* A run step keeps inherited INPUT_ values and ignores `with`. */
    in.uses = false;
    json_object_set_new(job, "PATH", json_string("/custom"));
    env = stepenv_build(&in);
    ASSERT_STR_EQ(GET(env, "INPUT_OLD"), "x");
    ASSERT(json_object_get(env, "INPUT_WHO-TO-GREET") == NULL);
    ASSERT_STR_EQ(GET(env, "PATH"), "/new:/old:/custom");
    char **envp = stepenv_to_envp(env);
    bool found = false;
    for (char **p = envp; *p; p++) {
        found |= strcmp(*p, "C=step") == 0;
        free(*p);
    }
    free(envp);
    ASSERT(found);
    json_decref(env);
    json_decref(job);
    json_decref(cont);
    json_decref(gh);
    json_decref(step);
    json_decref(with);
    json_decref(extra);
}

TEST(names)
{
    char *s = stepenv_input_name("who-to-greet");
    ASSERT_STR_EQ(s, "INPUT_WHO-TO-GREET");
    free(s);
    s = stepenv_input_name("a b.c_d");
    ASSERT_STR_EQ(s, "INPUT_A_B_C_D");
    free(s);
    s = stepenv_image_os("ubuntu-latest");
    ASSERT_STR_EQ(s, "ubuntu20");
    free(s);
    s = stepenv_image_os("matric-builder");
    ASSERT_STR_EQ(s, "matricbuilder");
    free(s);
}
