// fuzz_image.c - libFuzzer harness for image decoding and preprocessing
// (datasets/image.h, datasets/preprocess.h): arbitrary bytes as an image
// file (JPEG, PNG, GIF, BMP recognised by content), decoded under small
// limits (FUZZ_IMG_MAX_PIXELS) so each run stays fast, then resized,
// center-cropped and normalised to a small square with both filters.
//
// Checked: ds_image_probe and ds_image_decode agree (a file the decoder
// accepts passes the probe with the same format and size); a decoded image
// is within the limits; a refused one has a message naming the input and
// leaves out.rgb NULL; preprocessing gives finite values.
#include <math.h>

#include "fuzz_common.h"

#include "../../datasets/image.h"
#include "../../datasets/preprocess.h"

#define FUZZ_IMG_NAME       "fuzz.img"
#define FUZZ_IMG_MAX_PIXELS (256 * 256)
#define FUZZ_IMG_MAX_SIDE   2048
#define FUZZ_IMG_S          16          // output side of the preprocessing

static void fuzz_img_prep(const DsImage *im) {
    static float out[3 * FUZZ_IMG_S * FUZZ_IMG_S];
    const float mean[3] = {0.5f, 0.25f, 0}, std[3] = {0.5f, 2, 1};
    for (int f = DS_FILTER_BILINEAR; f <= DS_FILTER_BICUBIC; f++) {
        DsPrepConfig pc;
        ds_prep_config(&pc, FUZZ_IMG_S, (DsFilter)f, mean, std);
        ds_prep_rgb(out, im->rgb, im->w, im->h, &pc);
        for (int i = 0; i < 3 * FUZZ_IMG_S * FUZZ_IMG_S; i++)
            FUZZ_REQUIRE(isfinite(out[i]) && out[i] >= -1.5f && out[i] <= 2.5f,
                         "pixel %d = %g", i, out[i]);
    }
}

static int fuzz_image(const uint8_t *data, size_t size) {
    DsImageLimits lim;
    ds_image_limits_default(&lim);
    lim.max_pixels = FUZZ_IMG_MAX_PIXELS;
    lim.max_side = FUZZ_IMG_MAX_SIDE;

    McErr perr = {{0}}, err = {{0}};
    DsImageInfo info;
    int probed = ds_image_probe(data, size, FUZZ_IMG_NAME, &lim, &info, &perr);
    if (probed) fuzz_check_err(&perr, FUZZ_IMG_NAME);
    (void)ds_image_format_name(ds_image_sniff(data, size));

    DsImage im;
    memset(&im, 0xa5, sizeof im);
    if (ds_image_decode(data, size, FUZZ_IMG_NAME, &lim, &im, &err)) {
        fuzz_check_err(&err, FUZZ_IMG_NAME);
        FUZZ_REQUIRE(im.rgb == NULL, "failed decode left rgb set");
        return 0;
    }
    FUZZ_REQUIRE(probed == 0, "decoded what the probe refused: %s", perr.msg);
    FUZZ_REQUIRE(info.w == im.w && info.h == im.h && info.format == im.info.format,
                 "probe %dx%d, decode %dx%d", info.w, info.h, im.w, im.h);
    FUZZ_REQUIRE(im.w > 0 && im.h > 0 && (int64_t)im.w * im.h <= FUZZ_IMG_MAX_PIXELS,
                 "decoded %dx%d", im.w, im.h);
    // Touch every pixel so reads of uninitialised or short buffers show.
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++) sum += im.rgb[i];
    (void)sum;
    fuzz_img_prep(&im);
    ds_image_free(&im);
    return 0;
}

FUZZ_ENTRY(fuzz_image)
