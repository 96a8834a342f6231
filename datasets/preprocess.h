// preprocess.h - the image side of open_clip's eval transform, bit-exact
// with PIL + torchvision 0.14 on the same decoded pixels.
//
// Dims: S output side; an input image is [H, W, 3] uint8 (datasets/image.h);
// the model input is [3, S, S] float32 planes (NCHW without the N), and a
// batch is [N, 3, S, S].
//
// Pipeline (../shared/arch-spec.md §9, ../shared/paper-protocol.md §2):
//   1. decode and convert("RGB") (datasets/image.h);
//   2. torchvision Resize(S): the short side becomes S and the long side
//      int(S * long / short) (truncation); nothing happens when the short
//      side already is S; PIL resampling (datasets/resize.h);
//   3. CenterCrop(S): top = round((H' - S) / 2), left = round((W' - S) / 2)
//      with Python's round half to even (a 341-wide image gives left = 42);
//   4. ToTensor: x / 255 in float32;  Normalize: (x - mean[c]) / std[c] in
//      float32 (mean 0 and std 1 leave x / 255 unchanged).
// Only the S x S window that the crop keeps is resampled; every kept pixel
// is the same as resizing the whole image first.
//
// The paper's protocol converts to RGB before the transform; open_clip's own
// transform converts after Resize and CenterCrop, which for RGB and
// grayscale files is the same thing, but differs for RGBA (PIL resizes it
// premultiplied), palette images (PIL resizes "P" with NEAREST) and 16-bit
// grayscale.  We follow the protocol: convert first.
//
// The values come from the model config (mobileclip/config.h McImageConfig
// image_size, interp, mean, std) and are passed in as plain numbers.
//
// Usage sketch (compiled by tests/test_preprocess.c):
//
//     DsPrepConfig pc;
//     const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
//     ds_prep_config(&pc, 256, DS_FILTER_BILINEAR, mean, std);
//     float *x = malloc(sizeof(float) * 3 * 256 * 256);
//     McErr err;
//     if (ds_prep_file(x, "flower.jpg", &pc, &err)) fprintf(stderr, "%s\n", err.msg);
//
//     // A batch: bad files are reported, the others are kept.
//     int status[2];
//     McErr errs[2];
//     const char *paths[2] = {"a.jpg", "b.png"};
//     float *xb = malloc(sizeof(float) * 2 * 3 * 256 * 256);
//     int bad = ds_prep_batch(xb, status, errs, paths, 2, &pc);
#ifndef MCLIP_DS_PREPROCESS_H
#define MCLIP_DS_PREPROCESS_H

#include <stdint.h>

#include "image.h"
#include "resize.h"

typedef struct DsPrepConfig {
    int           size;      // S: 256 (S0, S2, S3, S4) or 224 (B, L-14)
    DsFilter      filter;    // bilinear, or bicubic for L-14
    float         mean[3];   // per-channel mean (R, G, B)
    float         std[3];    // per-channel std
    DsImageLimits limits;    // decoder limits (defaults from ds_prep_config)
} DsPrepConfig;

// Fill pc; the image limits get their defaults.
void ds_prep_config(DsPrepConfig *pc, int size, DsFilter filter,
                    const float mean[3], const float std[3]);

// Where an image of w x h lands: the resized size and the crop's top-left.
typedef struct DsPrepGeom {
    int resized_w, resized_h;   // W', H' after Resize(S) (w, h when the short side is S)
    int crop_x, crop_y;         // left, top of the S x S crop in the resized image
} DsPrepGeom;

void ds_prep_geometry(DsPrepGeom *g, int w, int h, int S);

// Resize + center crop: dst [S, S, 3] uint8 from rgb [h, w, 3].
void ds_prep_crop_u8(uint8_t *dst, const uint8_t *rgb, int w, int h, int S, DsFilter filter);

// ToTensor + Normalize: out [3, S, S] from crop [S, S, 3].
void ds_prep_normalize(float *out, const uint8_t *crop, int S,
                       const float mean[3], const float std[3]);

// Steps 2-4 on decoded pixels: out [3, S, S] from rgb [h, w, 3].
void ds_prep_rgb(float *out, const uint8_t *rgb, int w, int h, const DsPrepConfig *pc);

// Steps 1-4 on a file: out [3, S, S].  Returns 0, or -1 with err set (out
// untouched).
int ds_prep_file(float *out, const char *path, const DsPrepConfig *pc, McErr *err);

// n files into out [n, 3, S, S], in parallel over files (OpenMP); the
// result does not depend on the thread count.  status[i] is 0 for a good
// file and -1 for a bad one, whose slot is zero-filled and whose message
// goes to errs[i] (errs may be NULL).  Returns the number of bad files; the
// caller decides whether to skip them or stop.
int ds_prep_batch(float *out, int *status, McErr *errs, const char *const *paths, int n,
                  const DsPrepConfig *pc);

#endif
