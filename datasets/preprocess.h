// preprocess.h - the image side of open_clip's eval transform, bit-exact
// with PIL + torchvision 0.14 on the same decoded pixels.
//
// Dims: S output side; an input image is [H, W, C] uint8 or [H, W] int32 in
// its PIL mode, or [H, W, 3] uint8 RGB (datasets/image.h);
// the model input is [3, S, S] float32 planes (NCHW without the N), and a
// batch is [N, 3, S, S].
//
// Pipeline (../shared/arch-spec.md §9, ../shared/paper-protocol.md §2), in
// open_clip's order (DS_PREP_OPENCLIP, the default):
//   1. decode in the mode PIL opens the file in (datasets/image.h DsPixels);
//   2. torchvision Resize(S): the short side becomes S and the long side
//      int(S * long / short) (truncation); nothing happens when the short
//      side already is S; otherwise PIL's Image.resize in that mode
//      (datasets/resize.h): "1" and "P" with NEAREST whatever the filter,
//      "LA" and "RGBA" premultiplied by alpha, resampled, un-premultiplied,
//      "I" on 32-bit integers, "L", "RGB" and "CMYK" per channel;
//   3. CenterCrop(S): top = round((H' - S) / 2), left = round((W' - S) / 2)
//      with Python's round half to even (a 341-wide image gives left = 42);
//   4. convert("RGB") (alpha dropped, palette looked up, "I" clipped);
//   5. ToTensor: x / 255 in float32;  Normalize: (x - mean[c]) / std[c] in
//      float32 (mean 0 and std 1 leave x / 255 unchanged).
// Only the S x S window that the crop keeps is resampled; every kept pixel
// is the same as resizing the whole image first.
//
// The paper's protocol (DS_PREP_PAPER) converts to RGB first, as its data
// loaders do (Image.open(path).convert("RGB")), then runs steps 2, 3 and 5
// on RGB.  Both orders agree on RGB and grayscale ("L") files.  They differ
// on "LA" / "RGBA" (premultiplied resampling), "P" and "1" (NEAREST instead
// of the filter), "I" (16-bit gray: resampled before, not after, the clip
// to 0..255) and CMYK (resampled before the conversion; with the
// stb_image JPEG decoder CMYK is only available as RGB, see image.h).
// Command-line programs expose the choice as `--preprocess openclip|paper`
// (ds_prep_order_parse).
//
// The values come from the model config (mobileclip/config.h McImageConfig
// image_size, interp, mean, std) and are passed in as plain numbers.
//
// Usage sketch (compiled by tests/test_preprocess.c):
//
//     DsPrepConfig pc;
//     const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
//     ds_prep_config(&pc, 256, DS_FILTER_BILINEAR, mean, std);  // open_clip's order
//     if (ds_prep_order_parse("paper", &pc.order))               // --preprocess paper
//         fprintf(stderr, "expected openclip or paper\n");
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

// When the conversion to RGB happens.
typedef enum {
    DS_PREP_OPENCLIP = 0,   // after Resize and CenterCrop (open_clip's transform); default
    DS_PREP_PAPER           // before them (the paper's data loading)
} DsPrepOrder;

typedef struct DsPrepConfig {
    int           size;      // S: 256 (S0, S2, S3, S4) or 224 (B, L-14)
    DsFilter      filter;    // bilinear, or bicubic for L-14
    float         mean[3];   // per-channel mean (R, G, B)
    float         std[3];    // per-channel std
    DsImageLimits limits;    // decoder limits (defaults from ds_prep_config)
    DsPrepOrder   order;     // DS_PREP_OPENCLIP from ds_prep_config
} DsPrepConfig;

// Fill pc; the image limits get their defaults, the order is
// DS_PREP_OPENCLIP.
void ds_prep_config(DsPrepConfig *pc, int size, DsFilter filter,
                    const float mean[3], const float std[3]);

// "openclip" or "paper"; and back (returns 0, or -1 for another word).
const char *ds_prep_order_name(DsPrepOrder order);
int ds_prep_order_parse(const char *s, DsPrepOrder *order);

// Where an image of w x h lands: the resized size and the crop's top-left.
typedef struct DsPrepGeom {
    int resized_w, resized_h;   // W', H' after Resize(S) (w, h when the short side is S)
    int crop_x, crop_y;         // left, top of the S x S crop in the resized image
} DsPrepGeom;

void ds_prep_geometry(DsPrepGeom *g, int w, int h, int S);

// Resize + center crop: dst [S, S, 3] uint8 from rgb [h, w, 3].
void ds_prep_crop_u8(uint8_t *dst, const uint8_t *rgb, int w, int h, int S, DsFilter filter);

// Resize + center crop + convert("RGB") of decoded pixels in either order:
// dst [S, S, 3] from px (any mode).  Allocates its scratch buffers.
void ds_prep_crop_pixels(uint8_t *dst, const DsPixels *px, int S, DsFilter filter,
                         DsPrepOrder order);

// ToTensor + Normalize: out [3, S, S] from crop [S, S, 3].
void ds_prep_normalize(float *out, const uint8_t *crop, int S,
                       const float mean[3], const float std[3]);

// Steps 2, 3 and 5 on RGB pixels (the same in both orders): out [3, S, S]
// from rgb [h, w, 3].
void ds_prep_rgb(float *out, const uint8_t *rgb, int w, int h, const DsPrepConfig *pc);

// Steps 2-5 on decoded pixels in pc->order: out [3, S, S] from px.
void ds_prep_pixels(float *out, const DsPixels *px, const DsPrepConfig *pc);

// Steps 1-5 on a file, in pc->order: out [3, S, S].  Returns 0, or -1 with err set (out
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
