// image.h - decode JPEG, PNG, GIF and BMP files into 8-bit RGB exactly as
// PIL's `Image.open(path).convert("RGB")` yields them (Pillow 9.4), or into
// the mode PIL opens them in (DsPixels), which open_clip's transform
// resizes before it converts to RGB.
//
// Dims: an image is H rows of W pixels, stored [H, W, C] row-major with the
// C channels interleaved (RGB: R, G, B), one byte each; mode "I" holds one
// int32 per pixel, [H, W].
//
// The format is recognised by its first bytes, never by the file name.  The
// header is read here (dimensions, bit depth, colour type, JPEG coding
// process, chunk and marker structure, Huffman table sizes) so that limits
// are enforced and damaged files are rejected with a clear reason before
// any pixel buffer is allocated; the pixels are then decoded by stb_image
// 2.27 (Debian libstb-dev, compiled in stb_image_impl.c).  With
// `make JPEG=libjpeg` JPEGs are decoded by libjpeg-turbo instead, set up as
// PIL sets it up, which gives PIL's JPEG pixels exactly.
//
// Conversion to RGB, as PIL's convert("RGB") does it:
//   - grayscale (1, 2, 4, 8 bit): the value scaled to 0..255 and replicated;
//   - gray + alpha, RGBA, and tRNS transparency: the alpha is dropped (PIL
//     does not composite onto a background);
//   - palette PNG/GIF/BMP: looked up; indices past the end of a short PNG
//     palette give (i, i, i) like PIL's gray-ramp padding;
//   - 16-bit RGB, RGBA and gray+alpha PNG: the high byte of each sample;
//   - 16-bit grayscale PNG: PIL opens it as mode "I" and convert("RGB")
//     CLIPS the 16-bit value to 0..255 (so most pixels become 255); that is
//     reproduced on purpose, since it is what the reference pipeline feeds
//     the model;
//   - CMYK / YCCK JPEG: PIL inverts the stored values ("CMYK;I") and its
//     cmyk2rgb gives R = (255 - K) - round(C * (255 - K) / 255); stb_image's
//     K' * C' / 255 on the stored values rounds to the same numbers;
//   - EXIF orientation is ignored (PIL's open does not apply it).
//
// Modes (DsPixels, what PIL's open gives before any convert):
//   - PNG: "1" (1-bit gray, bytes 0/255), "L" (2..8-bit gray, scaled), "I"
//     (16-bit gray, the values 0..65535), "LA" (8-bit; 16-bit gray + alpha
//     opens as "RGBA" with R = G = B), "RGB", "RGBA" (16-bit samples
//     reduced to their high byte), "P" (palette); a tRNS chunk does not
//     change the mode;
//   - JPEG: "L", "RGB", "CMYK" (PIL's values: the stored ones inverted);
//   - GIF: "P", or "L" when the frame's colour table is the gray ramp
//     (entry i = (i, i, i)) or there is none;
//   - BMP: "P" (1..8 bits), "L" / "1" when the palette is the gray ramp or
//     black-and-white, "RGBA" for 32-bit bit fields with an alpha mask in
//     a V4/V5 header, "RGB" otherwise.
//   A palette image ("P") is held as the colours its indices select, not
//   as the indices: PIL resizes "P" only with NEAREST, which picks pixels
//   and so commutes with the palette lookup.
//
// Limitations (checked, reported as errors, never guessed around):
//   - JPEG: baseline and progressive Huffman, 8-bit, 1, 3 or 4 components.
//     Lossless, hierarchical and 12-bit JPEGs are rejected (PIL cannot read
//     them either).  A JPEG must end with its end-of-image marker, as PIL
//     requires; more than 1000 scans are refused (PIL has no such limit).
//     Only the libjpeg backend reads arithmetic coding and 4-component
//     JPEGs without an Adobe marker (PIL reads both).
//   - With stb_image, JPEG pixels differ slightly from PIL's libjpeg-turbo
//     (another IDCT, chroma upsampling and colour-conversion rounding): on
//     the test files at most 3 levels for 4:2:0, 4:4:4, gray and CMYK
//     (mean < 0.1) and 10 levels in the last column pair of 4:2:2 files,
//     where stb_image's horizontal chroma upsampler weights the two samples
//     the wrong way round; after resize and crop at most 3 levels.  PNG,
//     GIF and BMP pixels are exact, and so are JPEG pixels with the
//     libjpeg backend (same libjpeg-turbo version as PIL's).
//   - GIF: the first frame only.  Pixels that are transparent or outside the
//     first frame take the palette colour PIL gives them (the transparent
//     index, or index 0 when there is none).
//   - BMP: uncompressed and bit-field BMPs (no RLE).  4-bit gray-ramp and
//     8-bit two-colour black-and-white BMPs, which PIL 9.4 reads with the
//     wrong raw mode (garbage pixels), are decoded as their palette says.
//   - With stb_image, a CMYK JPEG's pixels come out as RGB only: DsPixels
//     then holds mode RGB (info.mode still says "CMYK"), so open_clip's
//     order resizes it after the conversion, like the paper's order.
//   - Limits (DsImageLimits): file size, width and height, pixel count.
//
// Usage sketch (compiled by tests/test_image_errors.c):
//
//     DsImage im;
//     McErr err;
//     if (ds_image_load("cat.jpg", NULL, &im, &err)) {
//         fprintf(stderr, "%s\n", err.msg);   // "cat.jpg: truncated JPEG ..."
//     } else {
//         printf("%d x %d\n", im.w, im.h);     // im.rgb is [H, W, 3]
//         ds_image_free(&im);
//     }
//
//     DsPixels px;                             // the mode PIL opens it in
//     if (ds_pixels_load("logo.png", NULL, &px, &err) == 0) {
//         printf("%s\n", ds_mode_name(px.mode));   // "RGBA"
//         ds_pixels_free(&px);
//     }
#ifndef MCLIP_DS_IMAGE_H
#define MCLIP_DS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/tensor.h"

typedef enum {
    DS_IMAGE_UNKNOWN = 0,
    DS_IMAGE_JPEG,
    DS_IMAGE_PNG,
    DS_IMAGE_GIF,
    DS_IMAGE_BMP
} DsImageFormat;

// Defaults of DsImageLimits.
#define DS_IMAGE_MAX_PIXELS     (64ll * 1024 * 1024)   // 64 Mpixel
#define DS_IMAGE_MAX_SIDE       16384                  // pixels, width or height
#define DS_IMAGE_MAX_FILE_BYTES (256ll * 1024 * 1024)  // 256 MiB
// Largest side any setting can allow (stb_image is built with this limit).
#define DS_IMAGE_HARD_MAX_SIDE  (1 << 17)

typedef struct DsImageLimits {
    int64_t max_pixels;      // W * H above this is refused
    int     max_side;        // W or H above this is refused (<= DS_IMAGE_HARD_MAX_SIDE)
    int64_t max_file_bytes;  // larger files are refused before reading (< 2 GiB)
} DsImageLimits;

// What the header says about the stored image.
typedef struct DsImageInfo {
    DsImageFormat format;
    int w, h;                // width W, height H in pixels
    int channels;            // stored channels: 1 gray, 2 gray+alpha, 3, 4 (RGBA or CMYK)
    int bits;                // bits per sample (PNG 1..16, others 8)
    int palette;             // 1: palette (indexed) image
    int progressive;         // JPEG: 1 when progressive, PNG: 1 when interlaced
    char mode[8];            // the mode PIL opens it in: "RGB", "L", "LA", "RGBA",
                             // "P", "I", "CMYK", "1"
} DsImageInfo;

typedef struct DsImage {
    int w, h;                // width W, height H
    uint8_t *rgb;            // [H, W, 3] interleaved RGB; owned, free with ds_image_free
    DsImageInfo info;        // what the file held before conversion
} DsImage;

// Fill lim with the defaults above.
void ds_image_limits_default(DsImageLimits *lim);

// Decode the file at path into out.  lim may be NULL (defaults).  Returns 0,
// or -1 with err naming the file, what was expected and what was found; out
// is then left empty (rgb NULL).
int ds_image_load(const char *path, const DsImageLimits *lim, DsImage *out, McErr *err);

// Decode n bytes held in memory; name is used in messages (a path, or
// "row 17 of train.parquet").
int ds_image_decode(const void *data, size_t n, const char *name,
                    const DsImageLimits *lim, DsImage *out, McErr *err);

// Read only the header: format, size, channels, bit depth, and the same
// structural checks and limits as decoding (the pixels are not decoded).
int ds_image_probe(const void *data, size_t n, const char *name,
                   const DsImageLimits *lim, DsImageInfo *info, McErr *err);

void ds_image_free(DsImage *im);

// ---- pixels in PIL's mode ----

// PIL image modes.
typedef enum {
    DS_MODE_1,      // bilevel: [H, W, 1], bytes 0 or 255
    DS_MODE_L,      // gray: [H, W, 1]
    DS_MODE_LA,     // gray + alpha: [H, W, 2], not premultiplied
    DS_MODE_P,      // palette: [H, W, 3], the colours of the indices
    DS_MODE_RGB,    // [H, W, 3]
    DS_MODE_RGBA,   // [H, W, 4], not premultiplied
    DS_MODE_CMYK,   // [H, W, 4], PIL's CMYK values
    DS_MODE_I       // 32-bit integers: [H, W] int32
} DsMode;

typedef struct DsPixels {
    int w, h;                // width W, height H
    DsMode mode;             // the mode the samples are in
    int channels;            // samples per pixel: ds_mode_channels(mode)
    uint8_t *pix;            // [H, W, channels] for every mode but I, else NULL; owned
    int32_t *pix_i;          // [H, W] for mode I, else NULL; owned
    DsImageInfo info;        // what the file held
} DsPixels;

// As ds_image_load / ds_image_decode, keeping PIL's mode (see above).
int ds_pixels_load(const char *path, const DsImageLimits *lim, DsPixels *out, McErr *err);
int ds_pixels_decode(const void *data, size_t n, const char *name,
                     const DsImageLimits *lim, DsPixels *out, McErr *err);
void ds_pixels_free(DsPixels *px);

// PIL's convert("RGB") on n pixels of a mode: rgb [n, 3] from src, which
// is int32_t [n] for mode I and uint8_t [n, ds_mode_channels(mode)]
// otherwise.  1, L: replicated; LA, RGBA: alpha dropped (no compositing);
// P: already colours; CMYK: with nk = 255 - K, R = max(0, nk - round(C nk
// / 255)) in PIL's integer rounding; I: clipped to 0..255.
void ds_mode_to_rgb(uint8_t *rgb, const void *src, DsMode mode, size_t n);

// The whole image: rgb [H, W, 3].
void ds_pixels_to_rgb(uint8_t *rgb, const DsPixels *px);

int         ds_mode_channels(DsMode mode);   // 1, 1, 2, 3, 3, 4, 4, 1
const char *ds_mode_name(DsMode mode);       // "1", "L", "LA", "P", ...

// The format named by the first bytes (DS_IMAGE_UNKNOWN when none of ours).
DsImageFormat ds_image_sniff(const void *data, size_t n);
const char   *ds_image_format_name(DsImageFormat f);  // "JPEG", "PNG", ...

#endif
