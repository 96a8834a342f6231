// conv_dw.c - depthwise convolution plane kernels, compiled once per ISA.
//
// The Makefile builds this file with -DMC_ISA=<isa> and that ISA's flags
// (scalar, avx2, avx512 on x86-64; scalar, neon on aarch64); the code is
// written once against the vector macros of tensor/simd.h (MC_VW lanes per
// mc_vf; the scalar variant has MC_VW = 1 and the same loops on floats).
// See tensor/conv.h for the split-plane layout, the tiles and the formulas.
//
// Numerics: mc_vfma fuses where the ISA has FMA (avx2, avx512, neon) and is
// a separate multiply and add in the scalar variant, so variants differ in
// the last bits.  Within a variant the summation order is fixed and does
// not depend on the thread count: forward taps in the order (row phase,
// column tap, tap row); weight-gradient lanes over blocks in order.
#include <math.h>

#include "../conv.h"
#include "../simd.h"

#define CDW_NV (CONV_DW_TILE_W / MC_VW)   // vectors per forward tile row
#define CDW_BV (CONV_DW_BLOCK / MC_VW)    // vectors per backward block

// Output rows per forward tile: enough independent accumulators to hide
// the FMA latency without spilling (avx512: 8 zmm, avx2: 4 x 2 ymm, neon:
// 4 x 4 q registers).
#if MC_ISA_ID == MC_ISA_ID_avx512
#define CDW_ROWS 8
#elif MC_ISA_ID == MC_ISA_ID_avx2 || MC_ISA_ID == MC_ISA_ID_neon
#define CDW_ROWS 4
#else
#define CDW_ROWS 1
#endif

// acc[t] += sum_{ar < na} w_col[ar*wstep] * src[(t + ar)*Wq + 0..TILE_W)
// for the tile rows t: one column tap b of one row phase.  Phase row u of
// the tile feeds tile row t through tap row ar = u - t, so every input
// segment is loaded once and multiplied into every tile row that reads it
// (one broadcast weight per multiply-add instead of two loads).  Inlined
// with a constant na the u and t loops unroll completely and the range
// test disappears; with a run-time na it stays a branch.
static inline __attribute__((always_inline)) void
cdw_column(mc_vf acc[CDW_ROWS][CDW_NV], const float *src, const float *w_col, int na,
           int Wq, int wstep) {
#pragma GCC unroll 24
    for (int u = 0; u < CDW_ROWS + na - 1; u++) {
        mc_vf v[CDW_NV];
#pragma GCC unroll 16
        for (int q = 0; q < CDW_NV; q++) v[q] = mc_vload(src + (size_t)u * Wq + q * MC_VW);
#pragma GCC unroll 8
        for (int t = 0; t < CDW_ROWS; t++) {
            int ar = u - t;
            if (ar < 0 || ar >= na) continue;
            mc_vf wv = mc_vset1(w_col[ar * wstep]);
#pragma GCC unroll 16
            for (int q = 0; q < CDW_NV; q++) acc[t][q] = mc_vfma(wv, v[q], acc[t][q]);
        }
    }
}

// y_o [Ho, Wo] = bias + sum_{a,b} w[a][b] * x_phase(a%s, b%s)[i + a/s][j + b/s]
// on tiles of CDW_ROWS rows x CONV_DW_TILE_W columns; taps in the order
// (row phase r, column tap b, tap row ar) with a = r + s*ar.
static void cdw_fwd(float *y_o, const float *xs, const float *w, float bias,
                    const ConvDwGeom *g) {
    const int s = g->s, Wq = g->Wq, kW = g->kW;
    for (int i0 = 0; i0 < g->Ho; i0 += CDW_ROWS) {
        for (int j0 = 0; j0 < g->Wo; j0 += CONV_DW_TILE_W) {
            mc_vf acc[CDW_ROWS][CDW_NV];
#pragma GCC unroll 8
            for (int t = 0; t < CDW_ROWS; t++)
#pragma GCC unroll 16
                for (int q = 0; q < CDW_NV; q++) acc[t][q] = mc_vset1(bias);

            for (int r = 0; r < s && r < g->kH; r++) {
                int na = (g->kH - 1 - r) / s + 1;      // tap rows a = r, r+s, ...
                for (int b = 0; b < kW; b++) {
                    const float *src = xs + (size_t)(r * s + b % s) * g->plane +
                                       (size_t)i0 * Wq + j0 + b / s;
                    const float *w_col = w + (size_t)r * kW + b;
                    // Constant tap counts for the kernels in use (k <= 7).
                    switch (na) {
                    case 1: cdw_column(acc, src, w_col, 1, Wq, s * kW); break;
                    case 2: cdw_column(acc, src, w_col, 2, Wq, s * kW); break;
                    case 3: cdw_column(acc, src, w_col, 3, Wq, s * kW); break;
                    case 4: cdw_column(acc, src, w_col, 4, Wq, s * kW); break;
                    case 5: cdw_column(acc, src, w_col, 5, Wq, s * kW); break;
                    case 7: cdw_column(acc, src, w_col, 7, Wq, s * kW); break;
                    default: cdw_column(acc, src, w_col, na, Wq, s * kW); break;
                    }
                }
            }

            // Store the tile rows and columns that lie inside the output.
            int nj = g->Wo - j0 < CONV_DW_TILE_W ? g->Wo - j0 : CONV_DW_TILE_W;
#pragma GCC unroll 8
            for (int t = 0; t < CDW_ROWS; t++) {
                if (i0 + t >= g->Ho) break;
                float *dst = y_o + (size_t)(i0 + t) * g->Wo + j0;
                if (nj == CONV_DW_TILE_W) {
#pragma GCC unroll 16
                    for (int q = 0; q < CDW_NV; q++) mc_vstore(dst + q * MC_VW, acc[t][q]);
                } else {
                    float tmp[CONV_DW_TILE_W];
#pragma GCC unroll 16
                    for (int q = 0; q < CDW_NV; q++) mc_vstore(tmp + q * MC_VW, acc[t][q]);
                    for (int j = 0; j < nj; j++) dst[j] = tmp[j];
                }
            }
        }
    }
}

// dxs[off[t] + i] += w[t] * dyf[i]: the transpose of the forward, tap by
// tap over the flat plane (taps overlap in dxs, so they run in order).
static void cdw_bwd_x(float *dxs, const float *dyf, const float *w, const ConvDwGeom *g) {
    for (int t = 0; t < g->ntap; t++) {
        float *dst = dxs + g->off[t];
        mc_vf wv = mc_vset1(w[t]);
        for (int i = 0; i < g->L; i += MC_VW)
            mc_vstore(dst + i, mc_vfma(wv, mc_vload(dyf + i), mc_vload(dst + i)));
    }
}

// acc[t][j] += sum over blocks k of dyf[k*B + j] * xs[off[t] + k*B + j]
// (B = CONV_DW_BLOCK): per-lane partial sums of the weight gradient, held
// in registers across the plane and reduced by the caller in lane order.
static void cdw_bwd_w(float *acc, const float *dyf, const float *xs, const ConvDwGeom *g) {
    for (int t = 0; t < g->ntap; t++) {
        const float *src = xs + g->off[t];
        float *acc_t = acc + (size_t)t * CONV_DW_BLOCK;
        mc_vf a[CDW_BV];
#pragma GCC unroll 64
        for (int q = 0; q < CDW_BV; q++) a[q] = mc_vload(acc_t + q * MC_VW);
        for (int i0 = 0; i0 < g->L; i0 += CONV_DW_BLOCK)
#pragma GCC unroll 64
            for (int q = 0; q < CDW_BV; q++)
                a[q] = mc_vfma(mc_vload(dyf + i0 + q * MC_VW), mc_vload(src + i0 + q * MC_VW),
                               a[q]);
#pragma GCC unroll 64
        for (int q = 0; q < CDW_BV; q++) mc_vstore(acc_t + q * MC_VW, a[q]);
    }
}

// Output columns per step of the small-plane kernel: CDW_CB_JT x
// CDW_CB_NV accumulators (avx512 8 x 1 zmm, avx2 4 x 2 ymm, neon 4 x 4 q,
// scalar 1 x 16 floats); it divides CONV_DW_CB_W.
#define CDW_CB_NV (CONV_DW_CB / MC_VW)
#if MC_ISA_ID == MC_ISA_ID_avx512
#define CDW_CB_JT 8
#elif MC_ISA_ID == MC_ISA_ID_avx2 || MC_ISA_ID == MC_ISA_ID_neon
#define CDW_CB_JT 4
#else
#define CDW_CB_JT 1
#endif

// acc[t] += sum_b wa[b] * row[t + b] for the CDW_CB_JT columns t of one
// tap row (vectors of CONV_DW_CB channels): one weight vector per tap,
// held for the CDW_CB_JT columns, each input vector coming straight from
// memory (L1) as the FMA's other operand.  Inlined with a constant kW the
// tap loop unrolls completely.
static inline __attribute__((always_inline)) void
cdw_cb_row(mc_vf acc[CDW_CB_JT][CDW_CB_NV], const float *row, const float *wa, int kW) {
#pragma GCC unroll 8
    for (int b = 0; b < kW; b++) {
#pragma GCC unroll 16
        for (int q = 0; q < CDW_CB_NV; q++) {
            mc_vf wv = mc_vload(wa + b * CONV_DW_CB + q * MC_VW);
#pragma GCC unroll 8
            for (int t = 0; t < CDW_CB_JT; t++)
                acc[t][q] = mc_vfma(wv, mc_vload(row + (t + b) * CONV_DW_CB + q * MC_VW),
                                    acc[t][q]);
        }
    }
}

// yp [Ho][CONV_DW_CB_W][CB] = bias + sum_{a,b} wp[a*kW + b] * xp[i + a][j + b]
// (conv.h): taps in the order (a, b) for every output.
static void cdw_fwd_cb(float *yp, const float *xp, const float *wp, const float *bias,
                       const ConvDwGeom *g) {
    const int kH = g->kH, kW = g->kW, Wq = g->Wq, CB = CONV_DW_CB;
    for (int i = 0; i < g->Ho; i++) {
        for (int j0 = 0; j0 < CONV_DW_CB_W; j0 += CDW_CB_JT) {
            mc_vf acc[CDW_CB_JT][CDW_CB_NV];
#pragma GCC unroll 8
            for (int t = 0; t < CDW_CB_JT; t++)
#pragma GCC unroll 16
                for (int q = 0; q < CDW_CB_NV; q++) acc[t][q] = mc_vload(bias + q * MC_VW);
            for (int a = 0; a < kH; a++) {
                const float *row = xp + ((size_t)(i + a) * Wq + j0) * CB;
                const float *wa = wp + (size_t)a * kW * CB;
                switch (kW) {   // constant widths for the kernels in use
                case 3: cdw_cb_row(acc, row, wa, 3); break;
                case 5: cdw_cb_row(acc, row, wa, 5); break;
                case 7: cdw_cb_row(acc, row, wa, 7); break;
                default: cdw_cb_row(acc, row, wa, kW); break;
                }
            }
            float *dst = yp + ((size_t)i * CONV_DW_CB_W + j0) * CB;
#pragma GCC unroll 8
            for (int t = 0; t < CDW_CB_JT; t++)
#pragma GCC unroll 16
                for (int q = 0; q < CDW_CB_NV; q++) mc_vstore(dst + t * CB + q * MC_VW, acc[t][q]);
        }
    }
}

// dst[j*ds + i] (+)= src[i*ss + j] for i, j < 8: one 8 x 8 block
// transposed, for moving 8 channels x 8 pixels between the planar layout
// and the channel-blocked one of the small-plane path.
static void cdw_t8(float *dst, size_t ds, const float *src, size_t ss, int add) {
#if MC_ISA_ID == MC_ISA_ID_avx2 || MC_ISA_ID == MC_ISA_ID_avx512
    // Pairs of rows interleaved, then pairs of pairs, then 128-bit halves.
    __m256 r[8], t[8], u[8], o[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * ss);
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);       // r_i0 r_i+1,0 r_i1 r_i+1,1 | +4
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);   // columns 2, 3 | 6, 7
    }
#pragma GCC unroll 2
    for (int h = 0; h < 8; h += 4) {
        u[h + 0] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(1, 0, 1, 0));     // col 0 | 4
        u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(3, 2, 3, 2));     // col 1 | 5
        u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(1, 0, 1, 0)); // col 2 | 6
        u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(3, 2, 3, 2)); // col 3 | 7
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        o[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
        o[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        float *d = dst + (size_t)j * ds;
        _mm256_storeu_ps(d, add ? _mm256_add_ps(_mm256_loadu_ps(d), o[j]) : o[j]);
    }
#elif MC_ISA_ID == MC_ISA_ID_neon
    // Four 4 x 4 blocks, each by two transposing pairs and a recombination.
#pragma GCC unroll 2
    for (int bi = 0; bi < 8; bi += 4)
#pragma GCC unroll 2
        for (int bj = 0; bj < 8; bj += 4) {
            const float *s0 = src + (size_t)bi * ss + bj;
            float32x4x2_t p01 = vtrnq_f32(vld1q_f32(s0), vld1q_f32(s0 + ss));
            float32x4x2_t p23 = vtrnq_f32(vld1q_f32(s0 + 2 * ss), vld1q_f32(s0 + 3 * ss));
            float32x4_t c[4] = {
                vcombine_f32(vget_low_f32(p01.val[0]), vget_low_f32(p23.val[0])),
                vcombine_f32(vget_low_f32(p01.val[1]), vget_low_f32(p23.val[1])),
                vcombine_f32(vget_high_f32(p01.val[0]), vget_high_f32(p23.val[0])),
                vcombine_f32(vget_high_f32(p01.val[1]), vget_high_f32(p23.val[1])),
            };
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                float *d = dst + (size_t)(bj + j) * ds + bi;
                vst1q_f32(d, add ? vaddq_f32(vld1q_f32(d), c[j]) : c[j]);
            }
        }
#else
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 8; i++) {
            float v = src[(size_t)i * ss + j];
            dst[(size_t)j * ds + i] = add ? dst[(size_t)j * ds + i] + v : v;
        }
#endif
}

const ConvDwKernels MC_CAT(conv_dw_kernels_, MC_ISA) = {
    .isa = MC_ISA_NAME,
    .fwd = cdw_fwd,
    .bwd_x = cdw_bwd_x,
    .bwd_w = cdw_bwd_w,
    .fwd_cb = cdw_fwd_cb,
    .t8 = cdw_t8,
};
