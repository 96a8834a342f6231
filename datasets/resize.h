// resize.h - image resampling that reproduces PIL's Image.resize bit for
// bit (Pillow 9.4) for BILINEAR and BICUBIC, the two filters open_clip's
// eval transform uses, on 8-bit samples (ImagingResample's 8bpc path) and
// on the 32-bit integers of mode "I"; plus the NEAREST rule PIL applies to
// modes "1" and "P" whatever filter is asked for, and PIL's conversions to
// and from premultiplied alpha, through which it resizes "LA" and "RGBA".
//
// Dims: src is [H, W, C] uint8 with the C channels interleaved (C = 1..4),
// or [H, W] int32; the resized image is [OH, OW, C]; only a window of it
// may be computed.
//
// The algorithm (PIL's behaviour, described in ../shared/arch-spec.md §9):
//   - separable: a horizontal pass (W -> OW) over the rows the vertical pass
//     needs, its result clipped to uint8, then a vertical pass (H -> OH),
//     clipped to uint8 again;  a pass whose size does not change is skipped;
//   - per output index i along an axis of input size n and output size m:
//     scale = n / m, fs = max(scale, 1) (antialiasing when reducing),
//     support = base_support * fs (bilinear 1, bicubic 2), the filter centred
//     at (i + 0.5) * scale over the inputs [int(center - support + 0.5),
//     int(center + support + 0.5)) clamped to [0, n), each weight
//     filter((j - center + 0.5) / fs), normalised to sum 1 in double,
//     then rounded to fixed point with DS_RESIZE_PRECISION_BITS fraction
//     bits (half away from zero);
//   - out = clip8((2^(P-1) + sum_j in[j] * k[j]) >> P), integer arithmetic;
//   - filters: bilinear f(x) = 1 - |x| on |x| < 1; bicubic (Keys, a = -0.5)
//     f(x) = (a+2)|x|^3 - (a+3)|x|^2 + 1 on |x| < 1,
//            a(|x|^3 - 5|x|^2 + 8|x| - 4) on 1 <= |x| < 2.
//
// Mode "I" (32-bit integers): the same windows and double weights, without
// the fixed-point step: each pass sums in double, first tap to last, and
// rounds half away from zero to int32 (no clipping: bicubic can go below 0).
//
// NEAREST (PIL's affine scaler): along an axis of n -> m samples the source
// position starts at scale / 2 and grows by scale = n / m, a running sum in
// double, truncated to the index; this differs from int((i + 0.5) * scale)
// for some sizes, so the running sum is reproduced.
//
// Premultiplied alpha (PIL's "RGBA" -> "RGBa" and "LA" -> "La" and back):
// v' = round(v * a / 255) computed as t = v * a + 128, (t + (t >> 8)) >> 8;
// back: v = min(255, floor(255 * v' / a)), except that alpha 0 and 255 keep
// v' unchanged.  PIL resizes LA and RGBA as premultiply -> resample ->
// unpremultiply (checked on all 65536 (v, a) pairs and on resized images).
//
// NOTE: the coefficient arithmetic must stay in plain double with the
// expressions in this order and no FMA contraction (-std=c11 turns GCC's
// contraction off), or a weight can round to the other fixed-point value
// and an output pixel moves by 1.  Outputs are then independent of the
// machine and of the thread count.
//
// stb_image_resize.h (v1, Debian libstb-dev) is not used: with its
// triangle and Catmull-Rom filters (linear colour space, clamped edges) it
// differs from PIL on tests/test_preprocess.c's images by up to 25/255
// (bilinear) and 21/255 (bicubic) when reducing, mean 0.13-0.27 levels,
// 4-18% of the bytes; when enlarging, bilinear is within 1/255 but bicubic
// still differs by up to 21/255.  Its filter support and sample positions
// follow other conventions than PIL's, most visibly at sharp edges.
//
// Usage sketch (compiled by tests/test_preprocess.c):
//
//     // 400x300 RGB -> 341x256, keep only the centre 256x256 window
//     ds_resize_u8(dst, src, 400, 300, 3, 341, 256, 42, 0, 256, 256,
//                  DS_FILTER_BILINEAR);
#ifndef MCLIP_DS_RESIZE_H
#define MCLIP_DS_RESIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DS_FILTER_BILINEAR, DS_FILTER_BICUBIC } DsFilter;

#define DS_RESIZE_PRECISION_BITS 22   // PIL: 32 - 8 bits of pixel - 2 of headroom

// Resize src [h, w, C] to the virtual size out_w x out_h and write its
// window with top-left (x0, y0) and size cw x ch into dst [ch, cw, C].
// The window must lie inside the resized image.  Equal to PIL's
// im.resize((out_w, out_h), filter) cropped to that window, for every
// pixel.  Allocates its scratch buffers (aborts only on out-of-memory).
void ds_resize_u8(uint8_t *dst, const uint8_t *src, int w, int h, int C,
                  int out_w, int out_h, int x0, int y0, int cw, int ch, DsFilter filter);

// As ds_resize_u8 for one channel of int32 samples (PIL mode "I"):
// dst [ch, cw] from src [h, w].  Sums saturate at the int32 limits.
void ds_resize_i32(int32_t *dst, const int32_t *src, int w, int h, int out_w, int out_h,
                   int x0, int y0, int cw, int ch, DsFilter filter);

// PIL's NEAREST resize of src [h, w, C] to out_w x out_h, window as in
// ds_resize_u8, into dst [ch, cw, C].
void ds_resize_nearest_u8(uint8_t *dst, const uint8_t *src, int w, int h, int C,
                          int out_w, int out_h, int x0, int y0, int cw, int ch);

// n pixels of C = 2 (LA) or 4 (RGBA) channels, alpha last: dst = src with
// the colour premultiplied by alpha (dst may equal src); and the inverse,
// in place.  PIL's rounding, see above.
void ds_alpha_premultiply(uint8_t *dst, const uint8_t *src, size_t n, int C);
void ds_alpha_unpremultiply(uint8_t *px, size_t n, int C);

// The filter's name ("bilinear", "bicubic").
const char *ds_filter_name(DsFilter filter);

#endif
