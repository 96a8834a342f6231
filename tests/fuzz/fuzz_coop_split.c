// fuzz_coop_split.c - libFuzzer harness for CoOp's split_zhou_*.json reader
// (ds_load_coop_json in datasets/dataset.h).  The reader takes a path, so
// the input is written to a temp file named split_zhou_OxfordFlowers.json
// (the name selects the image sub-folder; images are never opened).
//
// An accepted split must give classes 0..C-1 that all occur in train, item
// labels in range, and splits train / val / test only; the coop few-shot
// sampler must accept it.
#include "fuzz_common.h"

#include "../../datasets/dataset.h"
#include "../../datasets/split.h"

#define FUZZ_COOP_NAME "split_zhou_OxfordFlowers.json"

static int fuzz_coop_split(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file(FUZZ_COOP_NAME, data, size);
    McErr err = {{0}};
    Dataset *ds = ds_load_coop_json(path, NULL, &err);
    if (!ds) {
        fuzz_check_err(&err, FUZZ_COOP_NAME);
        return 0;
    }
    FUZZ_REQUIRE(ds->n_classes > 0, "no classes");
    int64_t *counts = calloc((size_t)ds->n_classes, sizeof *counts);
    for (int64_t i = 0; i < ds->n_items; i++) {
        const DsItem *it = &ds->items[i];
        FUZZ_REQUIRE(it->label >= 0 && it->label < ds->n_classes, "label %d", it->label);
        FUZZ_REQUIRE(it->split >= DS_TRAIN && it->split <= DS_TEST, "split %d", it->split);
        if (it->split == DS_TRAIN) counts[it->label]++;
    }
    for (int c = 0; c < ds->n_classes; c++)
        FUZZ_REQUIRE(counts[c] > 0 && ds->classes[c], "class %d missing from train", c);
    free(counts);
    DsFewShot fs;
    FUZZ_REQUIRE(ds_fewshot(ds, DS_SAMPLER_COOP, 1, 1, &fs, &err) == 0, "few-shot: %s",
                 err.msg);
    FUZZ_REQUIRE(fs.n_train == ds->n_classes, "1-shot gave %lld of %d classes",
                 (long long)fs.n_train, ds->n_classes);
    ds_fewshot_free(&fs);
    ds_free(ds);
    return 0;
}

FUZZ_ENTRY(fuzz_coop_split)
