// resize.c - see resize.h.  Behaviour of Pillow 9.4 ImagingResample
// (precompute_coeffs, normalize_coeffs_8bpc, the 8bpc and 32bpc horizontal
// and vertical passes), of its NEAREST resize (the affine scaler) and of
// the RGBA <-> RGBa conversions, written from their description and
// checked by experiment (tests/reference/gen_preprocess.py).
#include "resize.h"

#include <math.h>
#include <string.h>

#include "../tensor/tensor.h"

// ---- filters ----

// Triangle: f(x) = 1 - |x| on |x| < 1.
static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

// Keys cubic with a = -0.5 (PIL's BICUBIC); the expressions are evaluated
// in the same order as PIL's so the doubles round identically.
#define BICUBIC_A (-0.5)
static double filter_bicubic(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * BICUBIC_A;
    return 0.0;
}

const char *ds_filter_name(DsFilter filter) {
    return filter == DS_FILTER_BICUBIC ? "bicubic" : "bilinear";
}

// ---- coefficients ----

// Fixed-point weights for n consecutive outputs o0..o0+n-1 of an axis that
// goes from in_size to out_size samples.
typedef struct Coeffs {
    int      ksize;   // taps reserved per output
    int     *first;   // [n] first input sample used by each output
    int     *count;   // [n] number of input samples used (<= ksize)
    int32_t *k;       // [n, ksize] weights, DS_RESIZE_PRECISION_BITS fraction bits
    double  *kd;      // [n, ksize] the same weights in double (32-bit samples)
} Coeffs;

static void coeffs_build(Coeffs *c, int in_size, int out_size, int o0, int n, DsFilter filter) {
    double (*f)(double) = filter == DS_FILTER_BICUBIC ? filter_bicubic : filter_bilinear;
    double base_support = filter == DS_FILTER_BICUBIC ? 2.0 : 1.0;

    // Support widens by the reduction factor (antialiasing).
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = base_support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->first = mc_malloc(sizeof(int) * (size_t)n);
    c->count = mc_malloc(sizeof(int) * (size_t)n);
    size_t nk;
    MC_CHECK(mc_mul_ok((size_t)n, (size_t)ksize, &nk) && mc_mul_ok(nk, sizeof(double), &nk),
             "resize: %d outputs x %d taps overflows", n, ksize);
    c->k = mc_malloc(nk / 2);
    c->kd = mc_malloc(nk);

    for (int i = 0; i < n; i++) {
        // Filter centre and the input range it covers, clamped to the image.
        int xx = o0 + i;
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        MC_CHECK(xmax >= 0 && xmax <= ksize, "resize: %d taps for %d reserved", xmax, ksize);

        // Weights normalised to sum 1 (kept in double for 32-bit samples).
        double *w = c->kd + (size_t)i * ksize;
        for (int x = xmax; x < ksize; x++) w[x] = 0.0;
        for (int x = 0; x < xmax; x++) {
            w[x] = f((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; x++) {
            if (ww != 0.0) w[x] /= ww;
        }

        // Round to fixed point, half away from zero.
        int32_t *k = c->k + (size_t)i * ksize;
        const double one = (double)(1 << DS_RESIZE_PRECISION_BITS);
        for (int x = 0; x < ksize; x++) {
            double v = w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * one) : (int32_t)(0.5 + v * one);
        }
        c->first[i] = xmin;
        c->count[i] = xmax;
    }
}

static void coeffs_free(Coeffs *c) {
    mc_free(c->first);
    mc_free(c->count);
    mc_free(c->k);
    mc_free(c->kd);
}

// Fixed-point sum back to a byte: floor(v / 2^P) clamped to 0..255.
static inline uint8_t clip8(int32_t v) {
    if (v < 0) return 0;
    v >>= DS_RESIZE_PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

// NOTE: sums stay in int32: |partial sum| <= 2^21 + 255 * 2^22 * (sum of
// positive weights, < 1.2 for the bicubic kernel) < 2^31, as in PIL.

// ---- passes ----

// Horizontal pass over rows r0..r1-1 of src [h, w, C] into tmp [r1-r0, cw, C].
static void pass_horizontal(uint8_t *tmp, const uint8_t *src, int w, int C, int r0, int r1,
                            const Coeffs *hc, int cw) {
    const int32_t half = 1 << (DS_RESIZE_PRECISION_BITS - 1);
    for (int r = r0; r < r1; r++) {
        const uint8_t *s = src + (size_t)r * w * C;
        uint8_t *d = tmp + (size_t)(r - r0) * cw * C;
        for (int i = 0; i < cw; i++) {
            const int32_t *k = hc->k + (size_t)i * hc->ksize;
            const uint8_t *s_i = s + (size_t)hc->first[i] * C;
            int cnt = hc->count[i];
            for (int c = 0; c < C; c++) {
                int32_t acc = half;
                for (int t = 0; t < cnt; t++) acc += (int32_t)s_i[t * C + c] * k[t];
                d[i * C + c] = clip8(acc);
            }
        }
    }
}

// Vertical pass: output row j of dst [ch, row_len] mixes rows first[j].. of
// rows (row r at rows + (r - r0) * stride, row_len bytes used).
static void pass_vertical(uint8_t *dst, const uint8_t *rows, size_t stride, int r0,
                          size_t row_len, const Coeffs *vc, int ch) {
    const int32_t half = 1 << (DS_RESIZE_PRECISION_BITS - 1);
    int32_t *acc = mc_malloc(sizeof(int32_t) * (row_len ? row_len : 1));
    for (int j = 0; j < ch; j++) {
        const int32_t *k = vc->k + (size_t)j * vc->ksize;
        for (size_t i = 0; i < row_len; i++) acc[i] = half;
        // Accumulate tap by tap so the inner loop runs along the row.
        for (int t = 0; t < vc->count[j]; t++) {
            const uint8_t *s = rows + (size_t)(vc->first[j] + t - r0) * stride;
            int32_t kt = k[t];
            for (size_t i = 0; i < row_len; i++) acc[i] += (int32_t)s[i] * kt;
        }
        uint8_t *d = dst + (size_t)j * row_len;
        for (size_t i = 0; i < row_len; i++) d[i] = clip8(acc[i]);
    }
    mc_free(acc);
}

// ---- driver ----

void ds_resize_u8(uint8_t *dst, const uint8_t *src, int w, int h, int C,
                  int out_w, int out_h, int x0, int y0, int cw, int ch, DsFilter filter) {
    MC_CHECK(w > 0 && h > 0 && out_w > 0 && out_h > 0 && C >= 1 && C <= 4,
             "resize: %dx%d (C=%d) -> %dx%d", w, h, C, out_w, out_h);
    MC_CHECK(x0 >= 0 && y0 >= 0 && cw > 0 && ch > 0 && x0 + cw <= out_w && y0 + ch <= out_h,
             "resize: window %dx%d at (%d, %d) outside %dx%d", cw, ch, x0, y0, out_w, out_h);
    size_t row_len = (size_t)cw * C;

    // PIL skips a pass whose axis keeps its size (the pass would be the
    // identity for both filters anyway).
    int need_h = out_w != w, need_v = out_h != h;

    // Rows of src the vertical pass reads.
    Coeffs vc = {0};
    int r0 = y0, r1 = y0 + ch;
    if (need_v) {
        coeffs_build(&vc, h, out_h, y0, ch, filter);
        r0 = vc.first[0];
        r1 = vc.first[ch - 1] + vc.count[ch - 1];
    }

    // Horizontal pass into a buffer of those rows, or read src in place.
    uint8_t *tmp = NULL;
    const uint8_t *rows;
    size_t stride;
    if (need_h) {
        Coeffs hc;
        coeffs_build(&hc, w, out_w, x0, cw, filter);
        size_t bytes;
        MC_CHECK(mc_mul_ok((size_t)(r1 - r0), row_len, &bytes), "resize: buffer overflows");
        tmp = mc_malloc(bytes ? bytes : 1);
        pass_horizontal(tmp, src, w, C, r0, r1, &hc, cw);
        coeffs_free(&hc);
        rows = tmp, stride = row_len;
    } else {
        rows = src + (size_t)r0 * w * C + (size_t)x0 * C;
        stride = (size_t)w * C;
    }

    // Vertical pass, or copy the rows when the height is kept.
    if (need_v) {
        pass_vertical(dst, rows, stride, r0, row_len, &vc, ch);
        coeffs_free(&vc);
    } else {
        for (int j = 0; j < ch; j++) memcpy(dst + (size_t)j * row_len, rows + (size_t)j * stride,
                                            row_len);
    }
    mc_free(tmp);
}

// ---- 32-bit samples (PIL mode "I") ----

// Double sum back to an integer, half away from zero, saturated to int32
// (PIL casts without the saturation; it only matters beyond +-2^31).
static inline int32_t round_i32(double v) {
    double r = v >= 0.0 ? floor(v + 0.5) : -floor(-v + 0.5);
    if (r >= 2147483647.0) return INT32_MAX;
    if (r <= -2147483648.0) return INT32_MIN;
    return (int32_t)r;
}

// Horizontal pass over rows r0..r1-1 of src [h, w] into tmp [r1-r0, cw].
static void pass_horizontal_i32(int32_t *tmp, const int32_t *src, int w, int r0, int r1,
                                const Coeffs *hc, int cw) {
    for (int r = r0; r < r1; r++) {
        const int32_t *s = src + (size_t)r * w;
        int32_t *d = tmp + (size_t)(r - r0) * cw;
        for (int i = 0; i < cw; i++) {
            const double *k = hc->kd + (size_t)i * hc->ksize;
            const int32_t *s_i = s + hc->first[i];
            // Taps summed first to last in double, as PIL does.
            double ss = 0.0;
            for (int t = 0; t < hc->count[i]; t++) ss += (double)s_i[t] * k[t];
            d[i] = round_i32(ss);
        }
    }
}

// Vertical pass, as pass_vertical on int32 rows with double sums.
static void pass_vertical_i32(int32_t *dst, const int32_t *rows, size_t stride, int r0,
                              size_t row_len, const Coeffs *vc, int ch) {
    double *acc = mc_malloc(sizeof(double) * (row_len ? row_len : 1));
    for (int j = 0; j < ch; j++) {
        const double *k = vc->kd + (size_t)j * vc->ksize;
        for (size_t i = 0; i < row_len; i++) acc[i] = 0.0;
        // Tap by tap along the row: each pixel still sums its taps in order.
        for (int t = 0; t < vc->count[j]; t++) {
            const int32_t *s = rows + (size_t)(vc->first[j] + t - r0) * stride;
            double kt = k[t];
            for (size_t i = 0; i < row_len; i++) acc[i] += (double)s[i] * kt;
        }
        int32_t *d = dst + (size_t)j * row_len;
        for (size_t i = 0; i < row_len; i++) d[i] = round_i32(acc[i]);
    }
    mc_free(acc);
}

void ds_resize_i32(int32_t *dst, const int32_t *src, int w, int h, int out_w, int out_h,
                   int x0, int y0, int cw, int ch, DsFilter filter) {
    MC_CHECK(w > 0 && h > 0 && out_w > 0 && out_h > 0, "resize_i32: %dx%d -> %dx%d", w, h,
             out_w, out_h);
    MC_CHECK(x0 >= 0 && y0 >= 0 && cw > 0 && ch > 0 && x0 + cw <= out_w && y0 + ch <= out_h,
             "resize_i32: window %dx%d at (%d, %d) outside %dx%d", cw, ch, x0, y0, out_w, out_h);
    size_t row_len = (size_t)cw;
    int need_h = out_w != w, need_v = out_h != h;

    // Rows of src the vertical pass reads.
    Coeffs vc = {0};
    int r0 = y0, r1 = y0 + ch;
    if (need_v) {
        coeffs_build(&vc, h, out_h, y0, ch, filter);
        r0 = vc.first[0];
        r1 = vc.first[ch - 1] + vc.count[ch - 1];
    }

    // Horizontal pass into a buffer of those rows, or read src in place.
    int32_t *tmp = NULL;
    const int32_t *rows;
    size_t stride;
    if (need_h) {
        Coeffs hc;
        coeffs_build(&hc, w, out_w, x0, cw, filter);
        size_t bytes;
        MC_CHECK(mc_mul_ok((size_t)(r1 - r0), row_len * sizeof(int32_t), &bytes),
                 "resize_i32: buffer overflows");
        tmp = mc_malloc(bytes ? bytes : 1);
        pass_horizontal_i32(tmp, src, w, r0, r1, &hc, cw);
        coeffs_free(&hc);
        rows = tmp, stride = row_len;
    } else {
        rows = src + (size_t)r0 * w + x0;
        stride = (size_t)w;
    }

    // Vertical pass, or copy the rows when the height is kept.
    if (need_v) {
        pass_vertical_i32(dst, rows, stride, r0, row_len, &vc, ch);
        coeffs_free(&vc);
    } else {
        for (int j = 0; j < ch; j++)
            memcpy(dst + (size_t)j * row_len, rows + (size_t)j * stride, row_len * 4);
    }
    mc_free(tmp);
}

// ---- nearest neighbour (PIL modes "1" and "P") ----

// Source index of outputs 0..n-1 along an axis of in_size -> out_size:
// the position starts at scale / 2 and grows by scale = in / out, summed
// step by step in double (PIL's affine scaler does this, and the running
// sum can truncate to another index than (i + 0.5) * scale would); -1 when
// it falls outside the input.
static void nearest_map(int *idx, int in_size, int out_size, int n) {
    double scale = (double)in_size / out_size;
    double pos = 0.0 + scale * 0.5;
    for (int i = 0; i < n; i++) {
        int v = pos < 0.0 ? -1 : (int)pos;
        idx[i] = v < in_size ? v : -1;
        pos += scale;
    }
}

void ds_resize_nearest_u8(uint8_t *dst, const uint8_t *src, int w, int h, int C,
                          int out_w, int out_h, int x0, int y0, int cw, int ch) {
    MC_CHECK(w > 0 && h > 0 && out_w > 0 && out_h > 0 && C >= 1 && C <= 4,
             "resize_nearest: %dx%d (C=%d) -> %dx%d", w, h, C, out_w, out_h);
    MC_CHECK(x0 >= 0 && y0 >= 0 && cw > 0 && ch > 0 && x0 + cw <= out_w && y0 + ch <= out_h,
             "resize_nearest: window %dx%d at (%d, %d) outside %dx%d", cw, ch, x0, y0, out_w,
             out_h);

    // Index maps from the first output, so the running sums are PIL's.
    int *xi = mc_malloc(sizeof(int) * (size_t)(x0 + cw));
    int *yi = mc_malloc(sizeof(int) * (size_t)(y0 + ch));
    nearest_map(xi, w, out_w, x0 + cw);
    nearest_map(yi, h, out_h, y0 + ch);

    // Gather; a position outside the input gives 0, as PIL's cleared output.
    for (int j = 0; j < ch; j++) {
        uint8_t *d = dst + (size_t)j * cw * C;
        int sy = yi[y0 + j];
        for (int i = 0; i < cw; i++) {
            int sx = xi[x0 + i];
            for (int c = 0; c < C; c++) {
                d[(size_t)i * C + c] = sy < 0 || sx < 0 ? 0
                                       : src[((size_t)sy * w + sx) * C + c];
            }
        }
    }
    mc_free(xi);
    mc_free(yi);
}

// ---- premultiplied alpha (PIL modes "RGBa" and "La") ----

void ds_alpha_premultiply(uint8_t *dst, const uint8_t *src, size_t n, int C) {
    MC_CHECK(C == 2 || C == 4, "premultiply: %d channels, expected 2 (LA) or 4 (RGBA)", C);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = src + i * C;
        uint8_t *d = dst + i * C;
        int a = s[C - 1];
        // round(v * a / 255) in integers: t = v * a + 128, (t + t / 256) / 256.
        for (int c = 0; c < C - 1; c++) {
            int t = s[c] * a + 128;
            d[c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
        d[C - 1] = (uint8_t)a;
    }
}

void ds_alpha_unpremultiply(uint8_t *px, size_t n, int C) {
    MC_CHECK(C == 2 || C == 4, "unpremultiply: %d channels, expected 2 (LA) or 4 (RGBA)", C);
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = px + i * C;
        int a = p[C - 1];
        // Alpha 0 and 255 keep the values; otherwise floor(255 v / a), at most 255.
        if (a == 0 || a == 255) continue;
        for (int c = 0; c < C - 1; c++) {
            int v = 255 * p[c] / a;
            p[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}
