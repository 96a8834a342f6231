// test_preprocess.c - decoding, resampling and the eval transform against
// PIL 9.4 + torchvision 0.14 (fixtures from tests/reference/gen_preprocess.py).
//
//   1. Image.resize, whole outputs: ds_resize_u8 must equal PIL exactly
//      (bilinear and bicubic, both passes, one pass, strong reduction,
//      enlargement); stb_image_resize v1 is measured beside it.
//   2. The transform on procedural images (rebuilt here with the generator's
//      integer formula): geometry, CRC-32 of the whole resized image, of the
//      crop and of the float32 tensor must all match PIL's.
//   3. PIL modes: premultiplied-alpha tables, NEAREST index maps, mode "I"
//      resizes, and procedural images in modes 1, L, LA, P, RGBA, CMYK and
//      I through the transform in both orders (open_clip's: resize and crop
//      in the mode, then convert; the paper's: convert first), CRC-exact.
//   4. Files: PNG/GIF/BMP decode equal PIL's convert("RGB"), open in PIL's
//      mode, and give PIL's tensors in both orders; JPEG decode differences
//      from libjpeg-turbo are printed and bounded; the pipeline on PIL's
//      JPEG pixels is exact.
//   5. The batch helper keeps good files and reports bad ones.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../datasets/image.h"
#include "../datasets/preprocess.h"
#include "../datasets/resize.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"

#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_STATIC
#include <stb/stb_image_resize.h>

#define FIX "tests/fixtures/images"

#if defined(MCLIP_LIBJPEG)
// JPEG decode with libjpeg-turbo, the library PIL uses: identical pixels
// (observed 0 on every fixture, same library version).
#define JPEG_DECODER "libjpeg-turbo"
#define JPEG_MAX_LEVELS 0
#elif !defined(MCLIP_JPEG_STB)
// datasets/jpeg.c, written to libjpeg-turbo's arithmetic: identical pixels
// required (observed 0 on every fixture).
#define JPEG_DECODER "jpeg.c"
#define JPEG_MAX_LEVELS 0
#else
// JPEG decode: stb_image vs libjpeg-turbo (PIL), in pixel levels.  Observed
// on these fixtures: max 1-3 for 4:4:4, 4:2:0, gray and CMYK files (mean
// <= 0.1), and max 10 for 4:2:2 (h2v1) files: stb_image weights the last
// chroma column pair the wrong way round in its h2v1 upsampler and rounds
// even columns with +2 where libjpeg uses +1.  See the printed table.
#define JPEG_DECODER "stb_image"
#define JPEG_MAX_LEVELS 12
#endif

static StFile *fx;

// ---- fixture access ----

static const StTensor *need(const char *name, StDtype dt, int64_t numel) {
    const StTensor *t = st_find(fx, name);
    CHECK(t != NULL, "fixture tensor %s missing", name);
    if (!t) return NULL;
    CHECK(t->dtype == dt && (numel < 0 || t->numel == numel),
          "fixture %s: dtype %s numel %lld, expected %s numel %lld", name,
          st_dtype_name(t->dtype), (long long)t->numel, st_dtype_name(dt), (long long)numel);
    return t->dtype == dt && (numel < 0 || t->numel == numel) ? t : NULL;
}

static int need_i64(const char *name, int64_t *v, int n) {
    const StTensor *t = need(name, ST_I64, n);
    McErr err;
    if (!t) return -1;
    if (st_to_i64(fx, t, v, n, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    return 0;
}

static uint32_t crc_of(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const uint8_t *b = p;
    // zlib takes uInt lengths: feed in 1 GiB pieces.
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k, n -= k;
    }
    return (uint32_t)c;
}

// Max and mean |a - b| over n bytes; the count of differing bytes.
static size_t diff_u8(const uint8_t *a, const uint8_t *b, size_t n, int *max, double *mean) {
    size_t bad = 0;
    double sum = 0;
    *max = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        bad += d != 0;
        sum += d;
        if (d > *max) *max = d;
    }
    *mean = n ? sum / (double)n : 0;
    return bad;
}

// ---- the generator's procedural image (gen_preprocess.py synth) ----

static uint32_t hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

// [h, w, C] bytes, C <= 4 (the generator's synth_c; synth is C = 3).
static uint8_t *synth_c(int w, int h, int C, uint32_t seed) {
    uint8_t *p = malloc((size_t)w * h * C);
    for (uint32_t y = 0; y < (uint32_t)h; y++) {
        for (uint32_t x = 0; x < (uint32_t)w; x++) {
            for (uint32_t c = 0; c < (uint32_t)C; c++) {
                uint32_t key = (y * 65599u + x) * 4u + c + seed * 0x9E3779B9u;
                uint32_t region = ((x >> 4) + (y >> 4)) % 3;
                uint32_t checker = (((x >> 2) + (y >> 2)) & 1) ? 255 : 0;
                uint32_t grad = (x * 255u / (uint32_t)(w > 1 ? w - 1 : 1) + y * 3 + c * 40) & 255;
                uint32_t v = region == 0 ? (hash32(key) & 255) : region == 1 ? checker : grad;
                p[((size_t)y * w + x) * C + c] = (uint8_t)v;
            }
        }
    }
    return p;
}

static uint8_t *synth(int w, int h, uint32_t seed) { return synth_c(w, h, 3, seed); }

// The two configurations the fixtures hold.
typedef struct Cfg {
    const char *name;
    DsPrepConfig pc;
} Cfg;
static Cfg cfgs[2];

static void cfgs_init(void) {
    const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    cfgs[0].name = "bilinear256";
    ds_prep_config(&cfgs[0].pc, 256, DS_FILTER_BILINEAR, zero, one);
    cfgs[1].name = "bicubic224";
    ds_prep_config(&cfgs[1].pc, 224, DS_FILTER_BICUBIC, mean, std);
}

// ---- 1. Image.resize ----

static void test_plain_resizes(void) {
    printf("\n-- Image.resize: ours vs PIL (exact), stb_image_resize v1 vs PIL --\n");
    int stb_max[2] = {0, 0};
    for (int i = 0; i < st_count(fx); i++) {
        const StTensor *t = st_at(fx, i);
        int w, h, ow, oh;
        char fname[16];
        if (sscanf(t->name, "resize.%dx%d.%15[a-z].%dx%d", &w, &h, fname, &ow, &oh) != 5) continue;
        DsFilter f = strcmp(fname, "bicubic") == 0 ? DS_FILTER_BICUBIC : DS_FILTER_BILINEAR;
        size_t n = (size_t)ow * oh * 3;
        if (!need(t->name, ST_U8, (int64_t)n)) continue;
        uint8_t *src = synth(w, h, 1), *got = malloc(n), *sb = malloc(n);

        // Ours: the whole output, then every pixel compared.
        ds_resize_u8(got, src, w, h, 3, ow, oh, 0, 0, ow, oh, f);
        int mx;
        double mean;
        size_t bad = diff_u8(got, t->data, n, &mx, &mean);
        CHECK(bad == 0, "%s: %zu of %zu bytes differ from PIL, max %d", t->name, bad, n, mx);

        // stb_image_resize v1, triangle / Catmull-Rom (the a = -0.5 cubic).
        int sf = f == DS_FILTER_BICUBIC ? STBIR_FILTER_CATMULLROM : STBIR_FILTER_TRIANGLE;
        stbir_resize_uint8_generic(src, w, h, 0, sb, ow, oh, 0, 3, STBIR_ALPHA_CHANNEL_NONE, 0,
                                   STBIR_EDGE_CLAMP, sf, STBIR_COLORSPACE_LINEAR, NULL);
        int smx;
        double smean;
        size_t sbad = diff_u8(sb, t->data, n, &smx, &smean);
        if (smx > stb_max[f]) stb_max[f] = smx;
        printf("%-36s ours: %zu differ  | stbir: max %3d mean %.3f (%.1f%% differ)\n", t->name,
               bad, smx, smean, 100.0 * (double)sbad / (double)n);
        free(src), free(got), free(sb);
    }
    printf("stb_image_resize v1 vs PIL, largest difference: bilinear %d/255, bicubic %d/255\n",
           stb_max[DS_FILTER_BILINEAR], stb_max[DS_FILTER_BICUBIC]);
}

// Windows of a resize equal the same pixels of the whole resize.
static void test_window(void) {
    int w = 123, h = 77, ow = 57, oh = 190;
    uint8_t *src = synth(w, h, 2);
    for (int f = 0; f < 2; f++) {
        uint8_t *full = malloc((size_t)ow * oh * 3), *win = malloc(20 * 30 * 3);
        ds_resize_u8(full, src, w, h, 3, ow, oh, 0, 0, ow, oh, (DsFilter)f);
        ds_resize_u8(win, src, w, h, 3, ow, oh, 17, 101, 20, 30, (DsFilter)f);
        int same = 1;
        for (int y = 0; y < 30; y++)
            same &= memcmp(win + (size_t)y * 60, full + ((size_t)(101 + y) * ow + 17) * 3, 60) == 0;
        CHECK(same, "%s: a 20x30 window differs from the whole resize", ds_filter_name(f));
        free(full), free(win);
    }
    free(src);
}

// ---- 2. the transform on procedural images ----

static void test_geometry(void) {
    // (w, h, S) -> resized w, h, left, top; Python round half to even.
    static const int cases[][7] = {
        {400, 300, 256, 341, 256, 42, 0},  // 85 / 2 = 42.5 -> 42 (arch-spec §9)
        {257, 256, 256, 257, 256, 0, 0},   // 0.5 -> 0
        {259, 256, 256, 259, 256, 2, 0},   // 1.5 -> 2
        {261, 256, 256, 261, 256, 2, 0},   // 2.5 -> 2
        {300, 400, 224, 224, 298, 0, 37},  // int(224 * 400 / 300) = 298
        {3000, 17, 256, 45176, 256, 22460, 0},
        {1, 1, 224, 224, 224, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *c = cases[i];
        DsPrepGeom g;
        ds_prep_geometry(&g, c[0], c[1], c[2]);
        CHECK(g.resized_w == c[3] && g.resized_h == c[4] && g.crop_x == c[5] && g.crop_y == c[6],
              "%dx%d S=%d: got %dx%d at (%d, %d), want %dx%d at (%d, %d)", c[0], c[1], c[2],
              g.resized_w, g.resized_h, g.crop_x, g.crop_y, c[3], c[4], c[5], c[6]);
    }
}

static void test_synth(void) {
    printf("\n-- open_clip eval transform on procedural images (CRC-32, exact) --\n");
    for (int i = 0; i < st_count(fx); i++) {
        const StTensor *t = st_at(fx, i);
        int w, h;
        char cname[32];
        int end = 0;
        if (sscanf(t->name, "synth.%dx%d.%31[a-z0-9].crc%n", &w, &h, cname, &end) != 3 ||
            end == 0 || t->name[end] != 0)
            continue;
        const Cfg *cfg = strcmp(cname, cfgs[0].name) == 0 ? &cfgs[0] : &cfgs[1];
        int S = cfg->pc.size;
        char key[96];
        int64_t want[3], geom[4];
        if (need_i64(t->name, want, 3)) continue;
        snprintf(key, sizeof key, "synth.%dx%d.%s.geom", w, h, cname);
        if (need_i64(key, geom, 4)) continue;
        snprintf(key, sizeof key, "synth.%dx%d.%s.rows", w, h, cname);
        const StTensor *rows = need(key, ST_U8, (int64_t)3 * S * 3);
        if (!rows) continue;

        // Geometry.
        DsPrepGeom g;
        ds_prep_geometry(&g, w, h, S);
        CHECK(g.resized_w == geom[0] && g.resized_h == geom[1] && g.crop_x == geom[2] &&
              g.crop_y == geom[3], "%s: geometry %dx%d at (%d, %d), PIL %lldx%lld at (%lld, %lld)",
              t->name, g.resized_w, g.resized_h, g.crop_x, g.crop_y, (long long)geom[0],
              (long long)geom[1], (long long)geom[2], (long long)geom[3]);

        // The whole resized image, as PIL makes it before the crop.
        uint8_t *src = synth(w, h, 1);
        size_t nfull = (size_t)g.resized_w * g.resized_h * 3;
        uint8_t *full = malloc(nfull);
        ds_resize_u8(full, src, w, h, 3, g.resized_w, g.resized_h, 0, 0, g.resized_w,
                     g.resized_h, cfg->pc.filter);
        uint32_t c_full = crc_of(full, nfull);

        // The crop (computed as a window) and the tensor.
        uint8_t *crop = malloc((size_t)S * S * 3);
        float *x = malloc(sizeof(float) * 3 * S * S);
        ds_prep_crop_u8(crop, src, w, h, S, cfg->pc.filter);
        ds_prep_rgb(x, src, w, h, &cfg->pc);
        uint32_t c_crop = crc_of(crop, (size_t)S * S * 3);
        uint32_t c_x = crc_of(x, sizeof(float) * 3 * S * S);   // little-endian hosts
        int ok = c_full == (uint32_t)want[0] && c_crop == (uint32_t)want[1] &&
                 c_x == (uint32_t)want[2];

        // Diagnostics on the stored rows when a CRC differs.
        int mx = 0;
        double mean = 0;
        for (int r = 0; r < 3; r++) {
            int row = r == 0 ? 0 : r == 1 ? S / 2 : S - 1, m;
            double me;
            diff_u8(crop + (size_t)row * S * 3, (const uint8_t *)rows->data + (size_t)r * S * 3,
                    (size_t)S * 3, &m, &me);
            if (m > mx) mx = m;
            mean += me / 3;
        }
        printf("%-32s %5dx%-5d crop@(%d,%d) resized %s crop %s tensor %s  rows max|d| %d\n",
               t->name, g.resized_w, g.resized_h, g.crop_x, g.crop_y,
               c_full == (uint32_t)want[0] ? "=" : "X", c_crop == (uint32_t)want[1] ? "=" : "X",
               c_x == (uint32_t)want[2] ? "=" : "X", mx);
        CHECK(ok, "%s: CRC resized %08x/%08llx crop %08x/%08llx tensor %08x/%08llx "
              "(ours/PIL); sampled crop rows max |d| = %d, mean %.3f", t->name, c_full,
              (long long)want[0], c_crop, (long long)want[1], c_x, (long long)want[2], mx, mean);
        free(src), free(full), free(crop), free(x);
    }
}

// ---- 3. PIL modes: resampling rules and both orders ----

// PIL's premultiply table and its inverse over all (v, a) pairs.
static void test_alpha_tables(void) {
    int64_t want[2];
    if (need_i64("alpha.crc", want, 2)) return;
    size_t n = 256 * 256;
    uint8_t *la = malloc(n * 2), *rgba = malloc(n * 4), *tab = malloc(n);
    uint8_t *la_pm = malloc(n * 2), *rgba_pm = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        uint8_t v = (uint8_t)(i / 256), a = (uint8_t)(i % 256);   // [v, a]
        la[2 * i] = v, la[2 * i + 1] = a;
        rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = v, rgba[4 * i + 3] = a;
    }

    // Premultiply (LA and RGBA give the same colour values).
    ds_alpha_premultiply(la_pm, la, n, 2);
    ds_alpha_premultiply(rgba_pm, rgba, n, 4);
    int same = 1;
    for (size_t i = 0; i < n; i++) {
        tab[i] = la_pm[2 * i];
        for (int c = 0; c < 3; c++) same &= rgba_pm[4 * i + c] == tab[i];
        same &= la_pm[2 * i + 1] == la[2 * i + 1] && rgba_pm[4 * i + 3] == la[2 * i + 1];
    }
    uint32_t c_pm = crc_of(tab, n);

    // Unpremultiply the same (v, a) grid read as premultiplied values.
    ds_alpha_unpremultiply(la, n, 2);
    ds_alpha_unpremultiply(rgba, n, 4);
    for (size_t i = 0; i < n; i++) {
        tab[i] = la[2 * i];
        for (int c = 0; c < 3; c++) same &= rgba[4 * i + c] == tab[i];
    }
    uint32_t c_um = crc_of(tab, n);
    printf("\nalpha: premultiply table %s PIL's, unpremultiply table %s PIL's (65536 pairs)\n",
           c_pm == (uint32_t)want[0] ? "=" : "!=", c_um == (uint32_t)want[1] ? "=" : "!=");
    CHECK(c_pm == (uint32_t)want[0], "premultiply table crc %08x, PIL %08llx", c_pm,
          (long long)want[0]);
    CHECK(c_um == (uint32_t)want[1], "unpremultiply table crc %08x, PIL %08llx", c_um,
          (long long)want[1]);
    CHECK(same, "LA and RGBA premultiplication disagree");
    free(la), free(rgba), free(tab), free(la_pm), free(rgba_pm);
}

// Little-endian int32 at p (the fixtures are little-endian).
static int32_t rd_i32(const void *p) {
    const uint8_t *b = p;
    return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24);
}

// NEAREST: each pixel holds its own index in 4 bytes, so the output says
// which source pixel PIL's rule picked.
static void test_nearest_maps(void) {
    printf("\n-- NEAREST (modes 1, P): source index of each output vs PIL --\n");
    for (int i = 0; i < st_count(fx); i++) {
        const StTensor *t = st_at(fx, i);
        int n, m;
        if (sscanf(t->name, "nearest.%d.%d", &n, &m) != 2) continue;
        if (!need(t->name, ST_I32, m)) continue;
        uint8_t *src = malloc((size_t)n * 4), *dst = malloc((size_t)m * 4);
        for (int k = 0; k < n; k++)
            for (int b = 0; b < 4; b++) src[4 * k + b] = (uint8_t)(k >> (8 * b));
        ds_resize_nearest_u8(dst, src, n, 1, 4, m, 1, 0, 0, m, 1);
        int bad = 0, direct = 0;
        for (int k = 0; k < m; k++) {
            int32_t pil = rd_i32((const uint8_t *)t->data + 4 * k);
            bad += rd_i32(dst + 4 * k) != pil;
            direct += (int)((k + 0.5) * ((double)n / m)) != pil;
        }
        printf("%-18s ours: %d of %d differ | int((i + 0.5) * n / m) would differ at %d\n",
               t->name, bad, m, direct);
        CHECK(bad == 0, "%s: %d indices differ from PIL", t->name, bad);
        free(src), free(dst);
    }
}

// Mode "I" resizes, whole, against PIL.
static void test_resize_i32(void) {
    printf("\n-- Image.resize in mode I (32-bit): ours vs PIL (exact) --\n");
    for (int i = 0; i < st_count(fx); i++) {
        const StTensor *t = st_at(fx, i);
        int w, h, ow, oh;
        char fname[16];
        if (sscanf(t->name, "resize_i.%dx%d.%15[a-z].%dx%d", &w, &h, fname, &ow, &oh) != 5)
            continue;
        DsFilter f = strcmp(fname, "bicubic") == 0 ? DS_FILTER_BICUBIC : DS_FILTER_BILINEAR;
        size_t n = (size_t)ow * oh;
        if (!need(t->name, ST_I32, (int64_t)n)) continue;

        // The generator's input: s0 * 256 + s1 of synth_c(w, h, 4, 3).
        uint8_t *s4 = synth_c(w, h, 4, 3);
        int32_t *src = malloc(sizeof(int32_t) * (size_t)w * h), *got = malloc(sizeof(int32_t) * n);
        for (size_t k = 0; k < (size_t)w * h; k++) src[k] = s4[4 * k] * 256 + s4[4 * k + 1];
        ds_resize_i32(got, src, w, h, ow, oh, 0, 0, ow, oh, f);
        size_t bad = 0;
        int32_t lo = INT32_MAX, hi = INT32_MIN;
        for (size_t k = 0; k < n; k++) {
            int32_t pil = rd_i32((const uint8_t *)t->data + 4 * k);
            bad += got[k] != pil;
            lo = pil < lo ? pil : lo, hi = pil > hi ? pil : hi;
        }
        printf("%-34s %zu of %zu differ  (PIL range %d..%d)\n", t->name, bad, n, lo, hi);
        CHECK(bad == 0, "%s: %zu values differ from PIL", t->name, bad);
        free(s4), free(src), free(got);
    }
}

// The generator's synth_mode: an image of mode from s = synth_c(w, h, 4, 1).
static void synth_mode(DsPixels *px, int w, int h, DsMode mode) {
    uint8_t *s = synth_c(w, h, 4, 1);
    size_t n = (size_t)w * h;
    int C = ds_mode_channels(mode);
    memset(px, 0, sizeof *px);
    px->w = w, px->h = h, px->mode = mode, px->channels = C;
    if (mode == DS_MODE_I) {
        // s0 + s1 / 4: 0..318, around the clip to 255.
        px->pix_i = malloc(sizeof(int32_t) * n);
        for (size_t i = 0; i < n; i++) px->pix_i[i] = s[4 * i] + (s[4 * i + 1] >> 2);
        free(s);
        return;
    }
    px->pix = malloc(n * C);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *si = s + 4 * i;
        uint8_t *d = px->pix + i * C;
        switch (mode) {
        case DS_MODE_1:  d[0] = si[0] >= 128 ? 255 : 0; break;
        case DS_MODE_L:  d[0] = si[0]; break;
        case DS_MODE_LA: d[0] = si[0], d[1] = si[3]; break;
        case DS_MODE_P:
            // Palette entry k, channel c: (k * (37 + 54 c) + 11 c) mod 256.
            for (int c = 0; c < 3; c++) d[c] = (uint8_t)((si[0] * (37 + 54 * c) + 11 * c) & 255);
            break;
        default:         memcpy(d, si, 4); break;   // RGBA, CMYK
        }
    }
    free(s);
}

static DsMode mode_named(const char *name) {
    for (int m = DS_MODE_1; m <= DS_MODE_I; m++)
        if (strcmp(ds_mode_name((DsMode)m), name) == 0) return (DsMode)m;
    return DS_MODE_RGB;
}

// Procedural images in each mode, both orders, all sizes: crop and tensor
// CRCs equal to the transform's.
static void test_modes(void) {
    static const char *const modes[] = {"1", "L", "LA", "P", "RGBA", "CMYK", "I"};
    printf("\n-- procedural images in PIL modes: crop and tensor vs open_clip's transform "
           "(CRC, exact) --\n");
    const StTensor *st = need("modes.sizes", ST_I64, -1);
    int64_t sizes[64][2];
    McErr err;
    if (!st || st->numel > 128 || st_to_i64(fx, st, &sizes[0][0], (int)st->numel, &err)) {
        CHECK(0, "modes.sizes unreadable");
        return;
    }
    int ns = (int)st->numel / 2;
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        for (int k = 0; k < 2; k++) {
            const Cfg *cfg = &cfgs[k];
            int S = cfg->pc.size;
            uint8_t *crop = malloc((size_t)S * S * 3);
            float *x = malloc(sizeof(float) * 3 * S * S);
            // Sizes where PIL's two orders give different crops.
            char key[96];
            int64_t want_oc[128], want_paper[128];
            int n_diff = 0;
            snprintf(key, sizeof key, "modes.%s.%s.openclip", modes[m], cfg->name);
            int have = !need_i64(key, want_oc, 2 * ns);
            snprintf(key, sizeof key, "modes.%s.%s.paper", modes[m], cfg->name);
            have = have && !need_i64(key, want_paper, 2 * ns);
            for (int j = 0; have && j < ns; j++) n_diff += want_oc[2 * j] != want_paper[2 * j];
            for (int o = 0; have && o < 2; o++) {
                DsPrepConfig pc = cfg->pc;
                pc.order = o ? DS_PREP_PAPER : DS_PREP_OPENCLIP;
                const int64_t *want = o ? want_paper : want_oc;
                snprintf(key, sizeof key, "modes.%s.%s.%s", modes[m], cfg->name,
                         ds_prep_order_name(pc.order));
                int exact = 0;
                for (int j = 0; j < ns; j++) {
                    DsPixels px;
                    int w = (int)sizes[j][0], h = (int)sizes[j][1];
                    synth_mode(&px, w, h, mode_named(modes[m]));
                    ds_prep_crop_pixels(crop, &px, S, pc.filter, pc.order);
                    ds_prep_pixels(x, &px, &pc);
                    uint32_t cc = crc_of(crop, (size_t)S * S * 3);
                    uint32_t cx = crc_of(x, sizeof(float) * 3 * S * S);
                    int ok = cc == (uint32_t)want[2 * j] && cx == (uint32_t)want[2 * j + 1];
                    exact += ok;
                    CHECK(ok, "%s %dx%d: crop %s, tensor %s", key, w, h,
                          cc == (uint32_t)want[2 * j] ? "equal" : "differs",
                          cx == (uint32_t)want[2 * j + 1] ? "equal" : "differs");
                    ds_pixels_free(&px);
                }
                printf("%-36s %2d of %2d sizes exact (PIL's orders differ at %d)\n", key,
                       exact, ns, n_diff);
            }
            free(crop), free(x);
        }
    }
}

// ---- 4. files ----

static int is_jpeg(const char *name) { return strstr(name, ".jpg") != NULL; }

// Compare our pipeline's crop/tensor CRCs on pixels rgb with PIL's.
static int tensor_crcs_match(const char *name, const uint8_t *rgb, int w, int h, const Cfg *cfg,
                             uint8_t *crop_out) {
    char key[128];
    int64_t want[2];
    snprintf(key, sizeof key, "file.%s.%s.crc", name, cfg->name);
    if (need_i64(key, want, 2)) return 0;
    int S = cfg->pc.size;
    float *x = malloc(sizeof(float) * 3 * S * S);
    ds_prep_crop_u8(crop_out, rgb, w, h, S, cfg->pc.filter);
    ds_prep_rgb(x, rgb, w, h, &cfg->pc);
    int ok = crc_of(crop_out, (size_t)S * S * 3) == (uint32_t)want[0] &&
             crc_of(x, sizeof(float) * 3 * S * S) == (uint32_t)want[1];
    free(x);
    return ok;
}

// Both orders end to end on a file against PIL: ds_prep_file with the
// default config (open_clip's order) and with the paper's order, and the
// crops of ds_prep_crop_pixels.  crop_pil [S, S, 3] is the paper order's
// crop of PIL's pixels, the reference rows where the orders agree.
static void check_file_orders(const char *name, const char *path, const DsPixels *px,
                              const Cfg *cfg, const uint8_t *crop_pil) {
    int S = cfg->pc.size;
    char key[128];
    int64_t want_oc[2], want_paper[2];
    snprintf(key, sizeof key, "file.%s.%s.oc", name, cfg->name);
    if (need_i64(key, want_oc, 2)) return;
    snprintf(key, sizeof key, "file.%s.%s.crc", name, cfg->name);
    if (need_i64(key, want_paper, 2)) return;
    uint8_t *crop = malloc((size_t)S * S * 3);
    float *x = malloc(sizeof(float) * 3 * S * S);
    McErr e;

    // open_clip's order: the default.
    ds_prep_crop_pixels(crop, px, S, cfg->pc.filter, DS_PREP_OPENCLIP);
    CHECK(ds_prep_file(x, path, &cfg->pc, &e) == 0, "%s", e.msg);
    int oc_exact = crc_of(crop, (size_t)S * S * 3) == (uint32_t)want_oc[0] &&
                   crc_of(x, sizeof(float) * 3 * S * S) == (uint32_t)want_oc[1];

    // Sampled rows against PIL's: stored where the orders differ.
    snprintf(key, sizeof key, "file.%s.%s.ocrows", name, cfg->name);
    const StTensor *rows = st_find(fx, key);
    int mx = 0;
    for (int r = 0; r < 3; r++) {
        int row = r == 0 ? 0 : r == 1 ? S / 2 : S - 1, m;
        double me;
        const uint8_t *ref = rows ? (const uint8_t *)rows->data + (size_t)r * S * 3
                                  : crop_pil + (size_t)row * S * 3;
        diff_u8(crop + (size_t)row * S * 3, ref, (size_t)S * 3, &m, &me);
        if (m > mx) mx = m;
    }

    // The paper's order.
    DsPrepConfig pp = cfg->pc;
    pp.order = DS_PREP_PAPER;
    ds_prep_crop_pixels(crop, px, S, pp.filter, pp.order);
    CHECK(ds_prep_file(x, path, &pp, &e) == 0, "%s", e.msg);
    int paper_exact = crc_of(crop, (size_t)S * S * 3) == (uint32_t)want_paper[0] &&
                      crc_of(x, sizeof(float) * 3 * S * S) == (uint32_t)want_paper[1];
    printf("    %-11s open_clip order %-7s (rows max |d| %d)  paper order %s%s\n", cfg->name,
           oc_exact ? "exact" : "differs", mx, paper_exact ? "exact" : "differs",
           rows ? "  [orders differ in PIL]" : "");

    // Exact, except for JPEGs decoded by stb_image (bounded in levels).
    if (!is_jpeg(name) || JPEG_MAX_LEVELS == 0) {
        CHECK(oc_exact && mx == 0, "%s %s: open_clip order differs from PIL (rows max %d)",
              path, cfg->name, mx);
        CHECK(paper_exact, "%s %s: paper order differs from PIL", path, cfg->name);
    } else {
        CHECK(mx <= JPEG_MAX_LEVELS, "%s %s: open_clip order differs by %d levels", path,
              cfg->name, mx);
    }
    free(crop), free(x);
}

static void test_files(void) {
    printf("\n-- files: our decode vs PIL open().convert(\"RGB\") --\n");
    int jpeg_max = 0;
    for (int i = 0; i < st_count(fx); i++) {
        const StTensor *t = st_at(fx, i);
        char name[64];
        if (sscanf(t->name, "file.%63[^ ]", name) != 1) continue;
        size_t L = strlen(name);
        if (L < 5 || strcmp(name + L - 4, ".rgb") != 0) continue;
        name[L - 4] = 0;

        // Decode, and check the size and the mode PIL reports.
        char path[256], key[96];
        snprintf(path, sizeof path, FIX "/%s", name);
        DsImage im;
        McErr err;
        if (ds_image_load(path, NULL, &im, &err)) {
            // Files only the libjpeg backend reads must say so.
            int stb_only_gap = !JPEG_MAX_LEVELS ? 0 : strcmp(name, "cmyk_no_adobe.jpg") == 0;
            CHECK(stb_only_gap && strstr(err.msg, "build with JPEG=libjpeg"), "%s", err.msg);
            printf("%-22s refused: %s\n", name, err.msg);
            continue;
        }
        if (t->ndim != 3 || t->shape[0] != im.h || t->shape[1] != im.w || t->shape[2] != 3) {
            CHECK(0, "%s: decoded %dx%d, PIL gives [%lld, %lld, %lld]", path, im.w, im.h,
                  (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2]);
            ds_image_free(&im);
            continue;
        }
        snprintf(key, sizeof key, "mode.%s", name);
        const char *mode = st_meta(fx, key);
        CHECK(mode && strcmp(mode, im.info.mode) == 0, "%s: mode %s, PIL opens it as %s", path,
              im.info.mode, mode ? mode : "(missing)");

        // The same file in its own mode (stb_image gives CMYK only as RGB).
        DsPixels px;
        if (ds_pixels_load(path, NULL, &px, &err)) {
            CHECK(0, "%s", err.msg);
            ds_image_free(&im);
            continue;
        }
        int cmyk_as_rgb = JPEG_MAX_LEVELS && mode && strcmp(mode, "CMYK") == 0 &&
                          px.mode == DS_MODE_RGB;
        CHECK(mode && (strcmp(mode, ds_mode_name(px.mode)) == 0 || cmyk_as_rgb),
              "%s: pixels held as mode %s, PIL opens it as %s", path, ds_mode_name(px.mode),
              mode ? mode : "(missing)");

        // Pixels.
        size_t n = (size_t)im.w * im.h * 3;
        int mx;
        double mean;
        size_t bad = diff_u8(im.rgb, t->data, n, &mx, &mean);
        printf("%-22s %-4s %-5s %3dx%-3d differ %5zu of %6zu  max %2d  mean %.3f\n", name,
               ds_image_format_name(im.info.format), im.info.mode, im.w, im.h, bad, n, mx, mean);
        if (is_jpeg(name)) {
            if (mx > jpeg_max) jpeg_max = mx;
            CHECK(mx <= JPEG_MAX_LEVELS, "%s: JPEG decode differs from PIL by %d levels (bound %d)",
                  path, mx, JPEG_MAX_LEVELS);
        } else {
            CHECK(bad == 0, "%s: %zu bytes differ from PIL, max %d", path, bad, mx);
        }

        // The transform: exact from our pixels (non-JPEG) and from PIL's.
        for (int k = 0; k < 2; k++) {
            const Cfg *cfg = &cfgs[k];
            int S = cfg->pc.size;
            uint8_t *crop_pil = malloc((size_t)S * S * 3), *crop_ours = malloc((size_t)S * S * 3);
            CHECK(tensor_crcs_match(name, t->data, im.w, im.h, cfg, crop_pil),
                  "%s %s: transform on PIL's pixels differs from PIL's tensor", path, cfg->name);
            int ours_exact = tensor_crcs_match(name, im.rgb, im.w, im.h, cfg, crop_ours);
            if (is_jpeg(name)) {
                // End to end: our tensor vs PIL's, in pixel levels of the crop.
                int cm;
                double cmean;
                diff_u8(crop_ours, crop_pil, (size_t)S * S * 3, &cm, &cmean);
                printf("    %-11s end to end: crop max %d mean %.3f levels\n", cfg->name, cm,
                       cmean);
                CHECK(cm <= JPEG_MAX_LEVELS, "%s %s: end-to-end crop differs by %d levels", path,
                      cfg->name, cm);
            } else {
                CHECK(ours_exact, "%s %s: end-to-end tensor differs from PIL's", path, cfg->name);
            }
            check_file_orders(name, path, &px, cfg, crop_pil);
            free(crop_pil), free(crop_ours);
        }
        ds_pixels_free(&px);
        ds_image_free(&im);
    }
    printf("JPEG decode, %s vs PIL (libjpeg-turbo 2.1): largest difference %d/255\n",
           JPEG_DECODER, jpeg_max);
}

// ---- 5. batch ----

static void test_batch(void) {
    const char *paths[4] = {FIX "/rgb8.png", "tests/malformed/images/truncated_half.jpg",
                            FIX "/gray8.png", FIX "/no_such_file.png"};
    const DsPrepConfig *pc = &cfgs[1].pc;
    size_t per = (size_t)3 * pc->size * pc->size;
    float *x = malloc(sizeof(float) * 4 * per), *one = malloc(sizeof(float) * per);
    int status[4];
    McErr errs[4];
    for (size_t i = 0; i < 4 * per; i++) x[i] = NAN;
    int bad = ds_prep_batch(x, status, errs, paths, 4, pc);
    CHECK(bad == 2 && status[0] == 0 && status[1] == -1 && status[2] == 0 && status[3] == -1,
          "batch: %d bad, status %d %d %d %d; expected 2 bad, 0 -1 0 -1", bad, status[0],
          status[1], status[2], status[3]);

    // Good slots equal the single-file result; bad slots are zero.
    for (int i = 0; i < 4; i++) {
        McErr e;
        if (status[i] == 0) {
            CHECK(ds_prep_file(one, paths[i], pc, &e) == 0, "%s", e.msg);
            CHECK(memcmp(one, x + i * per, per * sizeof(float)) == 0,
                  "batch slot %d differs from ds_prep_file", i);
            CHECK(errs[i].msg[0] == 0, "batch slot %d: message on success: %s", i, errs[i].msg);
        } else {
            int zero = 1;
            for (size_t k = 0; k < per; k++) zero &= x[i * per + k] == 0.0f;
            CHECK(zero, "batch slot %d of a bad file is not zero-filled", i);
            CHECK(strncmp(errs[i].msg, paths[i], strlen(paths[i])) == 0,
                  "batch message does not start with the path: %s", errs[i].msg);
            printf("batch: slot %d reported: %s\n", i, errs[i].msg);
        }
    }
    free(x), free(one);
}

// Time the transform of one 500x375 image (informative).
static void bench_one(void) {
    uint8_t *src = synth(500, 375, 3);
    float *x = malloc(sizeof(float) * 3 * 256 * 256);
    double t0 = mc_time();
    int reps = 20;
    for (int r = 0; r < reps; r++) ds_prep_rgb(x, src, 500, 375, &cfgs[0].pc);
    double t1 = mc_time();
    printf("\nresize + crop + normalize 500x375 -> 256: %.2f ms per image\n",
           1e3 * (t1 - t0) / reps);
    free(src), free(x);
}

int main(void) {
    McErr err;
    fx = st_open(FIX "/expected.safetensors", &err);
    if (!fx) {
        fprintf(stderr, "%s\n(regenerate with tests/reference/gen_preprocess.py)\n", err.msg);
        return 1;
    }
    cfgs_init();
    test_geometry();
    test_plain_resizes();
    test_window();
    test_synth();
    test_alpha_tables();
    test_nearest_maps();
    test_resize_i32();
    test_modes();
    test_files();
    test_batch();
    bench_one();
    st_close(fx);
    return test_finish("test_preprocess");
}
