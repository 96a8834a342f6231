// resize.c - see resize.h.  Behaviour of Pillow 9.4 ImagingResample
// (precompute_coeffs, normalize_coeffs_8bpc, the 8bpc horizontal and
// vertical passes), written from its description.
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
    MC_CHECK(mc_mul_ok((size_t)n, (size_t)ksize, &nk) && mc_mul_ok(nk, 4, &nk),
             "resize: %d outputs x %d taps overflows", n, ksize);
    c->k = mc_malloc(nk);
    double *w = mc_malloc(sizeof(double) * (size_t)ksize);

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

        // Weights normalised to sum 1.
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
            double v = x < xmax ? w[x] : 0.0;
            k[x] = v < 0 ? (int32_t)(-0.5 + v * one) : (int32_t)(0.5 + v * one);
        }
        c->first[i] = xmin;
        c->count[i] = xmax;
    }
    mc_free(w);
}

static void coeffs_free(Coeffs *c) {
    mc_free(c->first);
    mc_free(c->count);
    mc_free(c->k);
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
