// preprocess.c - see preprocess.h.  torchvision 0.14 Resize / CenterCrop /
// convert("RGB") / ToTensor / Normalize on PIL images, as open_clip's
// image_transform builds them for evaluation, or with the conversion first.
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
    pc->order = DS_PREP_OPENCLIP;
}

const char *ds_prep_order_name(DsPrepOrder order) {
    return order == DS_PREP_PAPER ? "paper" : "openclip";
}

int ds_prep_order_parse(const char *s, DsPrepOrder *order) {
    if (strcmp(s, "openclip") == 0) *order = DS_PREP_OPENCLIP;
    else if (strcmp(s, "paper") == 0) *order = DS_PREP_PAPER;
    else return -1;
    return 0;
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

// open_clip's order: Image.resize in px's own mode, as PIL does it, then
// the crop window converted to RGB.  dst [S, S, 3].
static void crop_native(uint8_t *dst, const DsPixels *px, int S, DsFilter filter) {
    DsPrepGeom g;
    ds_prep_geometry(&g, px->w, px->h, S);
    int w = px->w, h = px->h, C = px->channels;
    size_t np = (size_t)S * S;

    // Mode I: 32-bit samples, then the clip to 0..255.
    if (px->mode == DS_MODE_I) {
        int32_t *win = mc_malloc(np * sizeof(int32_t));
        ds_resize_i32(win, px->pix_i, w, h, g.resized_w, g.resized_h, g.crop_x, g.crop_y,
                      S, S, filter);
        ds_mode_to_rgb(dst, win, px->mode, np);
        mc_free(win);
        return;
    }

    // torchvision skips Resize when the short side already is S: only the
    // crop (ds_resize_u8 copies the window when both sizes are kept).
    uint8_t *win = mc_malloc(np * (size_t)C);
    int same = g.resized_w == w && g.resized_h == h;
    if (!same && (px->mode == DS_MODE_1 || px->mode == DS_MODE_P)) {
        // PIL resizes "1" and "P" with NEAREST whatever filter is asked for.
        ds_resize_nearest_u8(win, px->pix, w, h, C, g.resized_w, g.resized_h, g.crop_x,
                             g.crop_y, S, S);
    } else if (!same && (px->mode == DS_MODE_LA || px->mode == DS_MODE_RGBA)) {
        // "LA" / "RGBA": premultiplied by alpha ("La" / "RGBa") for the
        // resampling, then back.
        size_t n = (size_t)w * h;
        uint8_t *pm = mc_malloc(n * (size_t)C);
        ds_alpha_premultiply(pm, px->pix, n, C);
        ds_resize_u8(win, pm, w, h, C, g.resized_w, g.resized_h, g.crop_x, g.crop_y, S, S,
                     filter);
        ds_alpha_unpremultiply(win, np, C);
        mc_free(pm);
    } else {
        // L, RGB, CMYK per channel (and any mode when the size is kept).
        ds_resize_u8(win, px->pix, w, h, C, g.resized_w, g.resized_h, g.crop_x, g.crop_y,
                     S, S, filter);
    }
    ds_mode_to_rgb(dst, win, px->mode, np);
    mc_free(win);
}

void ds_prep_crop_pixels(uint8_t *dst, const DsPixels *px, int S, DsFilter filter,
                         DsPrepOrder order) {
    MC_CHECK(px->mode == DS_MODE_I ? px->pix_i != NULL : px->pix != NULL,
             "preprocess: %s image without pixels", ds_mode_name(px->mode));
    MC_CHECK(px->channels == ds_mode_channels(px->mode), "preprocess: mode %s with %d channels",
             ds_mode_name(px->mode), px->channels);

    // RGB pixels: the orders agree.
    if (px->mode == DS_MODE_RGB) {
        ds_prep_crop_u8(dst, px->pix, px->w, px->h, S, filter);
        return;
    }
    if (order == DS_PREP_OPENCLIP) {
        crop_native(dst, px, S, filter);
        return;
    }

    // The paper's order: convert("RGB") of the whole image first.
    uint8_t *rgb = mc_malloc((size_t)px->w * px->h * 3);
    ds_pixels_to_rgb(rgb, px);
    ds_prep_crop_u8(dst, rgb, px->w, px->h, S, filter);
    mc_free(rgb);
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

void ds_prep_pixels(float *out, const DsPixels *px, const DsPrepConfig *pc) {
    int S = pc->size;
    uint8_t *crop = mc_malloc((size_t)S * S * 3);
    ds_prep_crop_pixels(crop, px, S, pc->filter, pc->order);
    ds_prep_normalize(out, crop, S, pc->mean, pc->std);
    mc_free(crop);
}

int ds_prep_file(float *out, const char *path, const DsPrepConfig *pc, McErr *err) {
    DsPixels px;
    if (ds_pixels_load(path, &pc->limits, &px, err)) return -1;
    ds_prep_pixels(out, &px, pc);
    ds_pixels_free(&px);
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
