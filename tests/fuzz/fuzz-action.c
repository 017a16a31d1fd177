/* fuzz-action.c: libFuzzer target for the action model. Runs action_parse() on the input (so
 * the YAML layer, the doc/workflow-semantics.md §12.2 keys and a composite's steps through
 * wf_parse_steps() all see it), touches what a runner reads from a parsed action, then resolves the
 * input's first line as a `uses:` reference and builds a docker tag from it; everything is freed
 * before returning, so ASan/LSan and UBSan see every path. Seed corpus: tests/fuzz/seed-action/. */
#include "action.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* References longer than this are not interesting and only slow the run down. */
#define FUZZ_MAX_USES 4096

/* One run: every allocation is released before returning. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct action *a = NULL;
    struct err e = {0};

    if (action_parse("fuzz/action.yml", (const char *)data, size, "fuzz@v1", &a, &e) == 0) {
        size_t n = 0;
        for (char **p = a->args; *p; p++)
            n += strlen(*p);
        for (size_t i = 0; i < a->n_steps; i++)
            n += strlen(a->steps[i].eff_id);
        for (size_t i = 0; i < a->n_inputs; i++)
            n += strlen(a->inputs[i].id) + (a->inputs[i].def ? strlen(a->inputs[i].def) : 0);
        char *tag = action_docker_tag(a->name);
        free(tag);
        (void)n;
    }
    action_free(a);

    /* The first line as a uses string, against sources that exercise every branch. */
    size_t len = 0;
    while (len < size && len < FUZZ_MAX_USES && data[len] != '\n' && data[len] != '\0')
        len++;
    char *uses = strndup((const char *)data, len);
    if (uses == NULL)
        abort();
    const struct action_sources src = {.default_actions_url = "github.com/",
                                       .instance_url = "https://gitea.example.com:443/",
                                       .github_mirror = "gitea.example.com"};
    struct action_ref r;
    if (action_ref_parse(uses, &src, &r, &e) == 0)
        action_ref_free(&r);
    char *tag = action_docker_tag(uses);
    free(tag);
    free(uses);
    return 0;
}
