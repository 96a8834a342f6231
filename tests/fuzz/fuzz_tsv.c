// fuzz_tsv.c - libFuzzer harness for the line-based dataset files
// (datasets/dataset.h, datasets/split.h): the same bytes are read as
//   - a classification TSV manifest (ds_load_tsv), strict and with
//     allow_outside / allow_duplicates,
//   - a caption TSV manifest (cs_load_tsv) and a Flickr30k token file
//     (cs_load_token),
//   - a class-names file (ds_read_classnames),
//   - a few-shot manifest checked against a fixed five-item dataset
//     (ds_fewshot_read).
// The readers take a path, so the input is written to a temp file named
// fuzz.tsv in a private folder (no classnames.txt beside it).
//
// An accepted manifest must give labels inside [0, n_classes), no class
// without items, and a dataset the few-shot samplers and the fingerprint
// accept; an accepted caption set must give every caption an image.
#include "fuzz_common.h"

#include "../../datasets/dataset.h"
#include "../../datasets/split.h"

#define FUZZ_TSV_NAME "fuzz.tsv"

static void fuzz_tsv_dataset(const Dataset *ds) {
    FUZZ_REQUIRE(ds->n_items > 0 && ds->n_classes > 0, "empty dataset accepted");
    for (int64_t i = 0; i < ds->n_items; i++)
        FUZZ_REQUIRE(ds->items[i].label >= 0 && ds->items[i].label < ds->n_classes,
                     "item %lld label %d of %d classes", (long long)i, ds->items[i].label,
                     ds->n_classes);
    char hex[65];
    ds_fingerprint(ds, hex);

    // Samplers on whatever train split the manifest gave.
    McErr err = {{0}};
    for (int s = DS_SAMPLER_COOP; s <= DS_SAMPLER_PAPER; s++) {
        DsFewShot fs;
        if (ds_fewshot(ds, (DsSampler)s, 2, 1, &fs, &err) == 0) {
            for (int64_t i = 0; i < fs.n_train; i++)
                FUZZ_REQUIRE(fs.train[i] >= 0 && fs.train[i] < ds->n_items, "train index");
            ds_fewshot_free(&fs);
        } else {
            FUZZ_REQUIRE(err.msg[0], "few-shot error without a message");
        }
    }
}

static void fuzz_tsv_captions(const CaptionSet *cs) {
    FUZZ_REQUIRE(cs->n_images > 0 && cs->n_captions > 0, "empty caption set accepted");
    for (int i = 0; i < cs->n_captions; i++)
        FUZZ_REQUIRE(cs->caption_image[i] >= 0 && cs->caption_image[i] < cs->n_images,
                     "caption %d has image %d", i, cs->caption_image[i]);
}

// A small dataset for the few-shot manifest reader.
static Dataset *fuzz_tsv_fixed(void) {
    Dataset *ds = ds_new("fixed", "tsv", "root", "fixed.tsv");
    ds_add_class(ds, "cat");
    ds_add_class(ds, "dog");
    ds_add_item(ds, "a.jpg", 0, DS_TRAIN);
    ds_add_item(ds, "b.jpg", 1, DS_TRAIN);
    ds_add_item(ds, "c/d.png", 0, DS_VAL);
    ds_add_item(ds, "e.jpg", 1, DS_VAL);
    ds_add_item(ds, "f.jpg", 1, DS_TEST);
    return ds;
}

static int fuzz_tsv(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file(FUZZ_TSV_NAME, data, size);
    McErr err = {{0}};

    // Classification manifest: strict, then permissive.
    DsOptions loose = {.allow_outside = 1, .allow_duplicates = 1};
    const DsOptions *opts[2] = {NULL, &loose};
    for (int o = 0; o < 2; o++) {
        Dataset *ds = ds_load_tsv(path, NULL, opts[o], &err);
        if (ds) fuzz_tsv_dataset(ds);
        else fuzz_check_err(&err, FUZZ_TSV_NAME);
        ds_free(ds);
    }

    // Caption manifests.
    CaptionSet *cs = cs_load_tsv(path, NULL, &err);
    if (cs) fuzz_tsv_captions(cs);
    else fuzz_check_err(&err, FUZZ_TSV_NAME);
    cs_free(cs);
    cs = cs_load_token(path, NULL, &err);
    if (cs) fuzz_tsv_captions(cs);
    else fuzz_check_err(&err, FUZZ_TSV_NAME);
    cs_free(cs);

    // Class names.
    char **names;
    int n;
    if (ds_read_classnames(path, &names, &n, &err) == 0) ds_names_free(names, n);
    else fuzz_check_err(&err, FUZZ_TSV_NAME);

    // Few-shot manifest against the fixed dataset.
    Dataset *fixed = fuzz_tsv_fixed();
    DsFewShot fs;
    if (ds_fewshot_read(fixed, path, &fs, &err) == 0) {
        for (int64_t i = 0; i < fs.n_train; i++)
            FUZZ_REQUIRE(fs.train[i] >= 0 && fs.train[i] < fixed->n_items, "train index");
        for (int64_t i = 0; i < fs.n_val; i++)
            FUZZ_REQUIRE(fs.val[i] >= 0 && fs.val[i] < fixed->n_items, "val index");
        ds_fewshot_free(&fs);
    } else {
        fuzz_check_err(&err, FUZZ_TSV_NAME);
    }
    ds_free(fixed);
    return 0;
}

FUZZ_ENTRY(fuzz_tsv)
