// conv_dw.c - depthwise convolution plane kernels, compiled once per ISA.
//
// The Makefile builds this file with -DMC_ISA=<isa> and that ISA's flags
// (scalar, avx2, avx512 on x86-64; scalar, neon on aarch64).  The code is
// plain C: every inner loop runs over CONV_DW_BLOCK contiguous floats, fully
// unrolled, so the compiler keeps the block in vector registers (4 zmm, 8
// ymm or 16 NEON q registers) and streams the input with unaligned loads.
// See tensor/conv.h for the split-plane layout and the formulas.
//
// Numerics: the scalar build multiplies and adds separately (the project
// compiles with ISO C contraction rules, so nothing is fused); builds whose
// ISA has FMA (avx2, avx512, aarch64) fuse with fmaf, which changes the last
// bit.  Summation order is fixed in every build: taps in order t = 0..ntap-1,
// weight-gradient lanes summed over blocks in order.
#include <math.h>

#include "../conv.h"

#ifndef MC_ISA
#define MC_ISA scalar
#endif

#define CDW_CAT2(a, b) a##_##b
#define CDW_CAT(a, b) CDW_CAT2(a, b)
#define CDW_NAME(f) CDW_CAT(f, MC_ISA)

// Numeric id of MC_ISA, so the preprocessor can test it.
#define CDW_ID_scalar 0
#define CDW_ID_avx2   1
#define CDW_ID_avx512 2
#define CDW_ID_neon   3
#define CDW_ISA_ID CDW_CAT(CDW_ID, MC_ISA)

// acc + a * b, fused where the ISA has FMA.
#if CDW_ISA_ID != 0 && (defined(__FMA__) || defined(__aarch64__))
#define CDW_MAC(acc, a, b) fmaf((a), (b), (acc))
#else
#define CDW_MAC(acc, a, b) ((acc) + (a) * (b))
#endif

#define B CONV_DW_BLOCK

// yf [L] = bias + sum_t w[t] * xs[off[t] + i]: one block of B outputs at a
// time, taps innermost so the block stays in registers.
static void cdw_fwd(float *yf, const float *xs, const float *w, float bias,
                    const ConvDwGeom *g) {
    const int *off = g->off;
    for (int i0 = 0; i0 < g->L; i0 += B) {
        float acc[B];
        for (int j = 0; j < B; j++) acc[j] = bias;
        for (int t = 0; t < g->ntap; t++) {
            const float *src = xs + off[t] + i0;
            float wt = w[t];
#pragma GCC unroll 64
            for (int j = 0; j < B; j++) acc[j] = CDW_MAC(acc[j], wt, src[j]);
        }
        for (int j = 0; j < B; j++) yf[i0 + j] = acc[j];
    }
}

// dxs[off[t] + i] += w[t] * dyf[i]: the transpose of cdw_fwd, tap by tap
// (taps overlap in dxs, so the tap loop stays outside and in order).
static void cdw_bwd_x(float *dxs, const float *dyf, const float *w, const ConvDwGeom *g) {
    const int *off = g->off;
    for (int t = 0; t < g->ntap; t++) {
        float *dst = dxs + off[t];
        float wt = w[t];
        for (int i0 = 0; i0 < g->L; i0 += B) {
#pragma GCC unroll 64
            for (int j = 0; j < B; j++) dst[i0 + j] = CDW_MAC(dst[i0 + j], wt, dyf[i0 + j]);
        }
    }
}

// acc[t][j] += sum over blocks k of dyf[k*B + j] * xs[off[t] + k*B + j]:
// per-lane partial sums of the weight gradient, reduced by the caller.
static void cdw_bwd_w(float *acc, const float *dyf, const float *xs, const ConvDwGeom *g) {
    const int *off = g->off;
    for (int t = 0; t < g->ntap; t++) {
        const float *src = xs + off[t];
        float a[B];
        for (int j = 0; j < B; j++) a[j] = acc[t * B + j];
        for (int i0 = 0; i0 < g->L; i0 += B) {
#pragma GCC unroll 64
            for (int j = 0; j < B; j++) a[j] = CDW_MAC(a[j], dyf[i0 + j], src[i0 + j]);
        }
        for (int j = 0; j < B; j++) acc[t * B + j] = a[j];
    }
}

#define CDW_STR2(x) #x
#define CDW_STR(x) CDW_STR2(x)

const ConvDwKernels CDW_NAME(conv_dw_kernels) = {
    .isa = CDW_STR(MC_ISA),
    .fwd = cdw_fwd,
    .bwd_x = cdw_bwd_x,
    .bwd_w = cdw_bwd_w,
};
