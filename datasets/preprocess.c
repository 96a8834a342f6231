// preprocess.c - see preprocess.h.  torchvision 0.14 Resize / CenterCrop /
// ToTensor / Normalize on PIL images, as open_clip's image_transform builds
// them for evaluation.
#include "preprocess.h"

#include <stdlib.h>
#include <string.h>

#include "../tensor/tensor.h"

void ds_prep_config(DsPrepConfig *pc, int size, DsFilter filter,
                    const float mean[3], const float std[3]) {
    MC_CHECK(size > 0, "preprocess: image size %d", size);
    pc->size = size;
    pc->filter = filter;
    for (int c = 0; c < 3; c++) pc->mean[c] = mean[c], pc->std[c] = std[c];
    ds_image_limits_default(&pc->limits);
}

// Python's round(d / 2) for an integer d >= 0: half to even.
static int half_round_even(int d) {
    int q = d / 2;
    if (d % 2 == 0) return q;
    return q % 2 == 0 ? q : q + 1;   // q + 0.5 goes to the even neighbour
}

void ds_prep_geometry(DsPrepGeom *g, int w, int h, int S) {
    MC_CHECK(w > 0 && h > 0 && S > 0, "preprocess: %dx%d image, S = %d", w, h, S);

    // Short side -> S, long side int(S * long / short): the float quotient
    // Python truncates never crosses an integer, so int64 division is exact.
    // (When the short side is S this gives back the input size, and
    // torchvision returns the image untouched.)
    int short_side = w <= h ? w : h, long_side = w <= h ? h : w;
    int new_long = (int)((int64_t)S * long_side / short_side);
    g->resized_w = w <= h ? S : new_long;
    g->resized_h = w <= h ? new_long : S;

    // Center crop offsets.
    g->crop_x = half_round_even(g->resized_w - S);
    g->crop_y = half_round_even(g->resized_h - S);
}

void ds_prep_crop_u8(uint8_t *dst, const uint8_t *rgb, int w, int h, int S, DsFilter filter) {
    DsPrepGeom g;
    ds_prep_geometry(&g, w, h, S);
    // The resized size equals (w, h) exactly when the short side is S; the
    // resampler then skips both passes and copies the window.
    ds_resize_u8(dst, rgb, w, h, 3, g.resized_w, g.resized_h, g.crop_x, g.crop_y, S, S, filter);
}

void ds_prep_normalize(float *out, const uint8_t *crop, int S,
                       const float mean[3], const float std[3]) {
    size_t np = (size_t)S * S;
    for (int c = 0; c < 3; c++) {
        float *o = out + (size_t)c * np;
        // float32 (x / 255 - mean) / std, the order torchvision computes it.
        for (size_t i = 0; i < np; i++) {
            float v = (float)crop[3 * i + c] / 255.0f;
            o[i] = (v - mean[c]) / std[c];
        }
    }
}

void ds_prep_rgb(float *out, const uint8_t *rgb, int w, int h, const DsPrepConfig *pc) {
    int S = pc->size;
    uint8_t *crop = mc_malloc((size_t)S * S * 3);
    ds_prep_crop_u8(crop, rgb, w, h, S, pc->filter);
    ds_prep_normalize(out, crop, S, pc->mean, pc->std);
    mc_free(crop);
}

int ds_prep_file(float *out, const char *path, const DsPrepConfig *pc, McErr *err) {
    DsImage im;
    if (ds_image_load(path, &pc->limits, &im, err)) return -1;
    ds_prep_rgb(out, im.rgb, im.w, im.h, pc);
    ds_image_free(&im);
    return 0;
}

int ds_prep_batch(float *out, int *status, McErr *errs, const char *const *paths, int n,
                  const DsPrepConfig *pc) {
    size_t per = (size_t)3 * pc->size * pc->size;
    int bad = 0;
    // One file per iteration; each writes only its own slot and message.
    #pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
    for (int i = 0; i < n; i++) {
        McErr e;
        float *o = out + (size_t)i * per;
        status[i] = ds_prep_file(o, paths[i], pc, &e);
        if (status[i]) {
            memset(o, 0, per * sizeof(float));
            if (errs) errs[i] = e;
            bad++;
        } else if (errs) {
            errs[i].msg[0] = 0;
        }
    }
    return bad;
}
