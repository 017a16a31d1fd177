/* fuzz-wf.c: libFuzzer target for the YAML layer and the workflow validator. Runs wf_parse()
 * on the input, converts the tree to JSON when it parses, then every document of the stream,
 * and frees everything, so ASan/LSan and UBSan see every path.
 * Seed corpus: tests/fuzz/seed-wf/ (conformance workflows, tests/data/wf*). */
#include "wf.h"
#include "yamldoc.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One run: every allocation is released before returning. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wf_workflow *w = NULL;
    struct wf_diag d = {0};
    struct err e = {0};

    if (wf_parse("fuzz.yml", (const char *)data, size, &w, &d, &e) == 0) {
        json_t *j = ynode_to_json(w->root);
        json_decref(j);
        struct ynode *copy = ynode_copy(w->root);
        ynode_free(copy);
    }
    wf_free(w);
    wf_diag_free(&d);

    /* Every document of the stream through the core schema, not only the first. */
    struct ynode **docs = NULL;
    size_t n = 0;
    if (ydoc_parse_all("fuzz.yml", (const char *)data, size, &docs, &n, &e) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_decref(ynode_to_json(docs[i]));
            ynode_free(docs[i]);
        }
        free(docs);
    }
    return 0;
}
