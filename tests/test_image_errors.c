// test_image_errors.c - damaged, hostile and non-image files: each one is
// refused with a message that starts with the file's path and says what
// was expected and found; nothing crashes (run under SAN=1 too).  Then a
// small mutation fuzz over the valid fixtures (more with MCLIP_LONG=1).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/image.h"
#include "util/check.h"

#define BAD "tests/malformed/images/"
#define FIX "tests/fixtures/images/"

// libjpeg and stb_image word this failure differently.
#ifdef MCLIP_LIBJPEG
#define DQT_REASON "Bogus DQT index 5"
#elif defined(MCLIP_JPEG_STB)
#define DQT_REASON "bad DQT type"
#else
#define DQT_REASON "bad DQT segment: precision 2, table 5 (expected precision 0 or 1, table 0..3)"
#endif

// File, then up to two phrases its message must contain.
static const char *const cases[][3] = {
    {"empty.jpg", "empty file (0 bytes)", "expected a JPEG, PNG, GIF or BMP"},
    {"text.jpg", "not a JPEG, PNG, GIF or BMP image (starts with bytes 74 68 69 73", ": text)"},
    {"document.png", "starts with bytes 25 50 44 46", "PDF document"},
    {"page.jpg", "starts with bytes 3C 21 44 4F", "HTML"},
    {"webp.jpg", "WebP image", "not supported"},
    {"truncated_half.jpg", "truncated JPEG", "without an end-of-image marker"},
    {"truncated_no_eoi.jpg", "truncated JPEG", "without an end-of-image marker"},
    {"truncated_header.jpg", "truncated JPEG", NULL},
    {"soi_only.jpg", "truncated JPEG", "no marker after the start-of-image"},
    {"twelve_bit.jpg", "12-bit JPEG is not supported", NULL},
    {"giant.jpg", "image is 60000x60000 = 3.35 Gpixel", "above the 64 Mpixel limit"},
    {"bad_huffman_table.jpg", "damaged JPEG: bad Huffman table segment at offset", NULL},
    {"huffman_overflow.jpg", "damaged JPEG: bad Huffman table segment at offset", NULL},
    {"bad_quant_table.jpg", "cannot decode this 160x120 JPEG (decoder says: " DQT_REASON ")", NULL},
    {"truncated_idat.png", "truncated PNG", "only"},
    {"truncated_signature.png", "truncated PNG: 20 bytes", NULL},
    {"crlf_signature.png", "damaged PNG signature", "text-mode transfer"},
    {"giant_ihdr.png", "image is 100000x100000 = 9.31 Gpixel", "above the 64 Mpixel limit"},
    {"zero_width.png", "damaged PNG: IHDR gives a 0x10 image", NULL},
    {"bad_color_type.png", "colour type 5 with bit depth 8", NULL},
    {"corrupt_idat.png", "cannot decode this 37x53 PNG (decoder says: corrupt data)", NULL},
    {"no_idat.png", "no image data (IDAT chunk)", NULL},
    {"truncated.gif", "truncated GIF", NULL},
    {"truncated.bmp", "truncated BMP", "pixel data needs"},
    {"header_only.gif", "damaged GIF: trailer before any image", NULL},
};

// The usage sketch of image.h.
static int sketch(const char *path) {
    DsImage im;
    McErr err;
    if (ds_image_load(path, NULL, &im, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    printf("%d x %d\n", im.w, im.h);
    ds_image_free(&im);
    return 0;
}

static void expect_error(const char *path, const DsImageLimits *lim, const char *p1,
                         const char *p2) {
    DsImage im;
    McErr err;
    memset(err.msg, 0, sizeof err.msg);
    memset(&im, 0x55, sizeof im);
    int rc = ds_image_load(path, lim, &im, &err);
    printf("%-48s -> %s\n", path, rc ? err.msg : "(decoded)");
    CHECK(rc == -1, "%s: decoded, expected an error", path);
    if (rc == 0) {
        ds_image_free(&im);
        return;
    }
    CHECK(im.rgb == NULL && im.w == 0 && im.h == 0, "%s: output not left empty", path);
    CHECK(strncmp(err.msg, path, strlen(path)) == 0 && err.msg[strlen(path)] == ':',
          "message does not start with \"%s:\": %s", path, err.msg);
    CHECK(!p1 || strstr(err.msg, p1), "%s: message lacks \"%s\": %s", path, p1, err.msg);
    CHECK(!p2 || strstr(err.msg, p2), "%s: message lacks \"%s\": %s", path, p2, err.msg);
}

static void test_files(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, BAD "%s", cases[i][0]);
        expect_error(path, NULL, cases[i][1], cases[i][2]);
    }
    expect_error(BAD "no_such_file.jpg", NULL, "cannot open", "No such file");

    // Huffman data behind an arithmetic-coding frame marker: PIL's libjpeg
    // decodes it (to noise), so the libjpeg backend does too; stb_image
    // cannot read arithmetic coding and says so.
#ifdef MCLIP_LIBJPEG
    DsImage im;
    McErr err;
    int rc = ds_image_load(BAD "arithmetic.jpg", NULL, &im, &err);
    CHECK(rc == 0 && im.w == 160 && im.h == 120, "arithmetic.jpg: %s", rc ? err.msg : "size");
    if (rc == 0) ds_image_free(&im);
#else
    expect_error(BAD "arithmetic.jpg", NULL,
                 "arithmetic-coded JPEG (marker FF C9) is not supported", NULL);
#endif
    expect_error("tests/malformed/images", NULL, "not a regular file", NULL);
}

// Limits refuse good files before decoding them.
static void test_limits(void) {
    DsImageLimits lim;
    ds_image_limits_default(&lim);
    lim.max_file_bytes = 1000;
    expect_error(FIX "photo420.jpg", &lim, "bytes, above the 1000-byte limit", "max_file_bytes");
    ds_image_limits_default(&lim);
    lim.max_side = 100;
    expect_error(FIX "photo420.jpg", &lim, "image is 160x120, a side above the 100-pixel limit",
                 NULL);
    ds_image_limits_default(&lim);
    lim.max_pixels = 1000;
    expect_error(FIX "rgb8.png", &lim, "image is 37x53 = 1961 pixels, above the 1000 pixels", NULL);

    // The same file decodes with the defaults, and probe agrees on its size.
    CHECK(sketch(FIX "photo420.jpg") == 0, "photo420.jpg did not decode");
    DsImageInfo info;
    McErr err;
    // A 1x1 RGB PNG holding (255, 128, 0).
    static const uint8_t png1x1[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
        0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00,
        0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78,
        0xda, 0x63, 0xf8, 0xdf, 0xc0, 0x00, 0x00, 0x04, 0x01, 0x01, 0x80, 0xfb, 0xd7, 0xcb,
        0xf1, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    int rc = ds_image_probe(png1x1, sizeof png1x1, "1x1.png", NULL, &info, &err);
    CHECK(rc == 0 && info.w == 1 && info.h == 1 && info.format == DS_IMAGE_PNG &&
          strcmp(info.mode, "RGB") == 0, "probe of a 1x1 PNG: rc %d %dx%d %s (%s)", rc, info.w,
          info.h, info.mode, rc ? err.msg : "");
    DsImage im;
    rc = ds_image_decode(png1x1, sizeof png1x1, "1x1.png", NULL, &im, &err);
    CHECK(rc == 0 && im.w == 1 && im.rgb && im.rgb[0] == 255 && im.rgb[1] == 128 &&
          im.rgb[2] == 0, "decode of a 1x1 PNG: %s", rc ? err.msg : "wrong pixel");
    if (rc == 0) ds_image_free(&im);
}

// ---- mutation fuzz ----

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

// Flip bytes, cut the tail, or overwrite a run with 0xFF/0x00; every
// outcome is fine except a crash, a leak or an error without the name.
static void test_fuzz(int iters) {
    static const char *const files[] = {
        "rgb8.png", "rgb8_interlaced.png", "palette8_short.png", "gray16.png", "rgba16.png",
        "photo420.jpg", "progressive.jpg", "q75_422.jpg", "gray.jpg", "cmyk.jpg",
        "palette_trns.gif", "rgb24.bmp", "palette8.bmp",
    };
    const int nf = (int)(sizeof files / sizeof files[0]);
    int ok = 0, refused = 0;
    test_seed(12345);
    for (int f = 0; f < nf; f++) {
        char path[256];
        size_t n;
        snprintf(path, sizeof path, FIX "%s", files[f]);
        uint8_t *orig = slurp(path, &n);
        CHECK(orig != NULL, "cannot read %s", path);
        if (!orig) continue;
        uint8_t *buf = malloc(n);
        for (int it = 0; it < iters; it++) {
            // One mutation of a fresh copy.
            memcpy(buf, orig, n);
            size_t len = n;
            int kind = (int)(test_uniform() * 3);
            size_t at = (size_t)(test_uniform() * (double)n);
            if (kind == 0) {
                int flips = 1 + (int)(test_uniform() * 8);
                for (int k = 0; k < flips; k++) {
                    size_t i = (size_t)(test_uniform() * (double)n);
                    buf[i] ^= (uint8_t)(1 + test_uniform() * 255);
                }
            } else if (kind == 1) {
                len = at;
            } else {
                size_t run = 1 + (size_t)(test_uniform() * 16);
                memset(buf + at, test_uniform() < 0.5 ? 0xFF : 0x00, at + run <= n ? run : n - at);
            }

            // Decode from a heap copy of exactly len bytes (ASan sees overreads).
            uint8_t *exact = malloc(len ? len : 1);
            memcpy(exact, buf, len);
            DsImage im;
            McErr err;
            if (ds_image_decode(exact, len, path, NULL, &im, &err) == 0) {
                ok++;
                ds_image_free(&im);
            } else {
                refused++;
                CHECK(strncmp(err.msg, path, strlen(path)) == 0, "fuzz message lacks the name: %s",
                      err.msg);
            }
            free(exact);
        }
        free(buf);
        free(orig);
    }
    printf("fuzz: %d mutated files, %d decoded, %d refused, no crash\n", ok + refused, ok,
           refused);
}

int main(void) {
    test_files();
    test_limits();
    test_fuzz(getenv("MCLIP_LONG") ? 2000 : 60);
    return test_finish("test_image_errors");
}
