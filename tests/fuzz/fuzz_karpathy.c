// fuzz_karpathy.c - libFuzzer harness for Karpathy's caption JSON
// (cs_load_karpathy in datasets/dataset.h, dataset_flickr30k.json form).
// The reader takes a path, so the input is written to a temp file named
// dataset_flickr30k.json; images are never opened.
//
// An accepted file must give at least one image, every caption attached
// to an existing image, the images' caption ranges covering the captions
// in order, and splits train / val / test.
#include "fuzz_common.h"

#include "../../datasets/dataset.h"

#define FUZZ_KARPATHY_NAME "dataset_flickr30k.json"

static int fuzz_karpathy(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file(FUZZ_KARPATHY_NAME, data, size);
    McErr err = {{0}};
    CaptionSet *cs = cs_load_karpathy(path, NULL, &err);
    if (!cs) {
        fuzz_check_err(&err, FUZZ_KARPATHY_NAME);
        return 0;
    }
    FUZZ_REQUIRE(cs->n_images > 0, "no images accepted");
    int next = 0;
    for (int i = 0; i < cs->n_images; i++) {
        const CsImage *im = &cs->images[i];
        FUZZ_REQUIRE(im->split >= DS_TRAIN && im->split <= DS_TEST, "split %d", im->split);
        FUZZ_REQUIRE(im->first == next && im->n >= 0, "image %d captions [%d, +%d) after %d",
                     i, im->first, im->n, next);
        next += im->n;
        for (int k = 0; k < im->n; k++)
            FUZZ_REQUIRE(cs->caption_image[im->first + k] == i, "caption image");
    }
    FUZZ_REQUIRE(next == cs->n_captions, "captions %d, ranges cover %d", cs->n_captions, next);
    (void)cs_count_split(cs, -1);
    cs_free(cs);
    return 0;
}

FUZZ_ENTRY(fuzz_karpathy)
