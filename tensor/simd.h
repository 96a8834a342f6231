// simd.h - the per-ISA layer: a small vector macro set and the run-time
// choice of kernel table.
//
// Hot elementwise and row kernels (GELU, LayerNorm rows, softmax rows, the
// small matrix products of attention) are written once, in tensor/isa/vec.c,
// against the macros below.  The Makefile compiles that file once per
// instruction set with -DMC_ISA=<isa> (scalar, avx2, avx512 on x86-64;
// scalar, neon on aarch64) and defines MC_HAVE_ISA_<isa> for each variant it
// built.  Every variant exports one McIsa table; tensor/dispatch.c picks the
// best one the CPU supports when first asked.
//
// Choosing the variant:
//   - default: avx512 (F, BW, DQ, VL) > avx2 (+FMA, F16C) > scalar on x86-64,
//     neon on aarch64 (always present there);
//   - environment MCLIP_ISA=scalar|avx2|avx512|neon overrides (an unknown or
//     unsupported name is reported on stderr and the default is kept);
//   - `make SIMD=scalar` builds only the scalar variant;
//   - tests call mc_isa_set() or mc_isa_lookup() to compare variants.
//
// The scalar variant is the specification: plain C with libm expf/erfcf.
// SIMD variants run vector bodies (with polynomial exp and erfc, see vec.c)
// and finish every loop with the same scalar code for the tail, so they
// agree with the scalar variant within the tolerances of tests/test_simd.c,
// and each variant is deterministic (no dependence on thread count).
//
// Usage sketch (compiled by tests/test_simd.c):
//
//     const McIsa *k = mc_isa();                 // active table
//     float y[3], x[3] = {-1.0f, 0.0f, 2.0f};
//     k->gelu_forward(y, x, 3);
//     printf("ISA %s\n", mc_isa_name());
//     if (mc_isa_set("scalar") != 0) { ... }     // force for a comparison
#ifndef MCLIP_SIMD_H
#define MCLIP_SIMD_H

#include <stdint.h>

// ---- the kernel table of one ISA variant ----
//
// Shapes: n, D = row length; every pointer is a plain float array, no
// alignment required.  Functions named *_backward ADD into their first
// argument; the others overwrite.  out may alias x where noted.
typedef struct McIsa {
    const char *name;  // "scalar", "avx2", "avx512", "neon"

    // sum_i a[i] b[i]
    float (*dot)(const float *a, const float *b, int64_t n);
    // y[i] += a x[i]
    void (*axpy)(float *y, float a, const float *x, int64_t n);

    // out[i] = x[i] Phi(x[i]), Phi the standard normal cdf (exact-erf GELU).
    // out may alias x.
    void (*gelu_forward)(float *out, const float *x, int64_t n);
    // dx[i] += dout[i] (Phi(x[i]) + x[i] phi(x[i])), phi the normal pdf.
    void (*gelu_backward)(float *dx, const float *dout, const float *x, int64_t n);

    // One LayerNorm row x [D]: *mean, *rstd = 1/sqrt(var + eps) (biased var),
    // out [D] = (x - mean) rstd gamma + beta; gamma, beta [D] or NULL.
    void (*layernorm_row_forward)(float *out, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, int64_t D,
                                  float eps);
    // dx [D] += rstd (g - mean(g) - xhat mean(g xhat)), g = dout gamma,
    // xhat = (x - mean) rstd; gamma may be NULL (ones).
    void (*layernorm_row_backward)(float *dx, const float *dout, const float *x,
                                   const float *gamma, float mean, float rstd, int64_t D);

    // Parameter-gradient terms of one LayerNorm row: sg [D] += dout xhat,
    // sb [D] += dout, xhat = (x - mean) rstd.
    void (*layernorm_row_param_grads)(float *sg, float *sb, const float *dout, const float *x,
                                      float mean, float rstd, int64_t D);

    // out [n] = softmax(x [n]) with the max subtracted first; out may alias x.
    void (*softmax_row)(float *out, const float *x, int64_t n);
    // dx [n] += y (dout - sum(dout y)), y = softmax output.
    void (*softmax_row_backward)(float *dx, const float *dout, const float *y, int64_t n);

    // C [M, N] = op(A) [M, K] @ B [K, N] (accumulate = 0) or C += ... (1),
    // op(A) = A (transA = 0, A stored [M, K]) or A^T (1, A stored [K, M]).
    // Row-major with row strides lda, ldb, ldc; for small products (the
    // per-head matrices of attention), single-threaded.
    void (*gemm_small)(int transA, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float *C, int ldc, int accumulate);
} McIsa;

// The active table (chosen on first use, see the header comment).
const McIsa *mc_isa(void);
// Name of the active variant ("avx2", ...), for `mclip info` and banners.
const char *mc_isa_name(void);
// The table of a variant compiled in and supported by this CPU, else NULL.
const McIsa *mc_isa_lookup(const char *name);
// Make a variant active (tests, benchmarks); 0 on success, -1 when it is
// not compiled in or not supported (the active one is then unchanged).
int mc_isa_set(const char *name);

// ---- the vector macro set, for tensor/isa/*.c only ----
//
//   mc_vf            vector of MC_VW floats
//   mc_vload(p)      load MC_VW floats from p (unaligned)
//   mc_vstore(p, v)  store (unaligned)
//   mc_vset1(x)      all lanes x;  mc_vzero()  all lanes 0
//   mc_vadd mc_vsub mc_vmul mc_vdiv mc_vmax mc_vmin   lane-wise
//   mc_vfma(a, b, c) a * b + c (fused where the ISA has it)
//   mc_vhsum(v)      sum of lanes (float);  mc_vhmax(v) max of lanes
//   mc_vround(v)     round to nearest integer (ties to even), as float
//   mc_vpow2i(n)     2^n for integer-valued n in [-127, 127] (2^-127 -> 0)
//   mc_vsel_neg(x, a, b)  a where x < 0, else b
//
// MC_SIMD is 1 for the vector variants and 0 for scalar; kernels compile
// their vector loops only when it is 1 and always keep a scalar tail loop.
#ifdef MC_ISA

#define MC_ISA_ID_scalar 1
#define MC_ISA_ID_avx2   2
#define MC_ISA_ID_avx512 3
#define MC_ISA_ID_neon   4
#define MC_CAT_(a, b) a##b
#define MC_CAT(a, b) MC_CAT_(a, b)
#define MC_STR_(x) #x
#define MC_STR(x) MC_STR_(x)
#define MC_ISA_ID   MC_CAT(MC_ISA_ID_, MC_ISA)
#define MC_ISA_NAME MC_STR(MC_ISA)
// The table a variant exports: mc_isa_table_<isa>.
#define MC_ISA_TABLE MC_CAT(mc_isa_table_, MC_ISA)

#if MC_ISA_ID == MC_ISA_ID_avx512

#include <immintrin.h>
#define MC_SIMD 1
#define MC_VW 16
typedef __m512 mc_vf;
#define mc_vload(p)       _mm512_loadu_ps(p)
#define mc_vstore(p, v)   _mm512_storeu_ps(p, v)
#define mc_vset1(x)       _mm512_set1_ps(x)
#define mc_vzero()        _mm512_setzero_ps()
#define mc_vadd(a, b)     _mm512_add_ps(a, b)
#define mc_vsub(a, b)     _mm512_sub_ps(a, b)
#define mc_vmul(a, b)     _mm512_mul_ps(a, b)
#define mc_vdiv(a, b)     _mm512_div_ps(a, b)
#define mc_vmax(a, b)     _mm512_max_ps(a, b)
#define mc_vmin(a, b)     _mm512_min_ps(a, b)
#define mc_vfma(a, b, c)  _mm512_fmadd_ps(a, b, c)
#define mc_vhsum(v)       _mm512_reduce_add_ps(v)
#define mc_vhmax(v)       _mm512_reduce_max_ps(v)
#define mc_vround(v)      _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define mc_vpow2i(n)      _mm512_castsi512_ps(_mm512_slli_epi32( \
                              _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#define mc_vsel_neg(x, a, b) _mm512_mask_blend_ps( \
                              _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), b, a)

#elif MC_ISA_ID == MC_ISA_ID_avx2

#include <immintrin.h>
#define MC_SIMD 1
#define MC_VW 8
typedef __m256 mc_vf;
#define mc_vload(p)       _mm256_loadu_ps(p)
#define mc_vstore(p, v)   _mm256_storeu_ps(p, v)
#define mc_vset1(x)       _mm256_set1_ps(x)
#define mc_vzero()        _mm256_setzero_ps()
#define mc_vadd(a, b)     _mm256_add_ps(a, b)
#define mc_vsub(a, b)     _mm256_sub_ps(a, b)
#define mc_vmul(a, b)     _mm256_mul_ps(a, b)
#define mc_vdiv(a, b)     _mm256_div_ps(a, b)
#define mc_vmax(a, b)     _mm256_max_ps(a, b)
#define mc_vmin(a, b)     _mm256_min_ps(a, b)
#define mc_vfma(a, b, c)  _mm256_fmadd_ps(a, b, c)
#define mc_vround(v)      _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define mc_vpow2i(n)      _mm256_castsi256_ps(_mm256_slli_epi32( \
                              _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define mc_vsel_neg(x, a, b) _mm256_blendv_ps(b, a, \
                              _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ))

// Lane sum: fold 256 -> 128 -> 64 -> 32 bits.
static inline float mc_vhsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float mc_vhmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#elif MC_ISA_ID == MC_ISA_ID_neon

#include <arm_neon.h>
#define MC_SIMD 1
#define MC_VW 4
typedef float32x4_t mc_vf;
#define mc_vload(p)       vld1q_f32(p)
#define mc_vstore(p, v)   vst1q_f32(p, v)
#define mc_vset1(x)       vdupq_n_f32(x)
#define mc_vzero()        vdupq_n_f32(0.0f)
#define mc_vadd(a, b)     vaddq_f32(a, b)
#define mc_vsub(a, b)     vsubq_f32(a, b)
#define mc_vmul(a, b)     vmulq_f32(a, b)
#define mc_vdiv(a, b)     vdivq_f32(a, b)
#define mc_vmax(a, b)     vmaxq_f32(a, b)
#define mc_vmin(a, b)     vminq_f32(a, b)
#define mc_vfma(a, b, c)  vfmaq_f32(c, a, b)
#define mc_vhsum(v)       vaddvq_f32(v)
#define mc_vhmax(v)       vmaxvq_f32(v)
#define mc_vround(v)      vrndnq_f32(v)
#define mc_vpow2i(n)      vreinterpretq_f32_s32(vshlq_n_s32( \
                              vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23))
#define mc_vsel_neg(x, a, b) vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), a, b)

#elif MC_ISA_ID == MC_ISA_ID_scalar

// One lane: the same macros on plain floats.  Kernels do not use them when
// MC_SIMD is 0 (their scalar loops are the specification), but code that
// wants a width-generic form may.
#define MC_SIMD 0
#define MC_VW 1
typedef float mc_vf;
#define mc_vload(p)       (*(p))
#define mc_vstore(p, v)   (*(p) = (v))
#define mc_vset1(x)       ((float)(x))
#define mc_vzero()        0.0f
#define mc_vadd(a, b)     ((a) + (b))
#define mc_vsub(a, b)     ((a) - (b))
#define mc_vmul(a, b)     ((a) * (b))
#define mc_vdiv(a, b)     ((a) / (b))
#define mc_vmax(a, b)     ((a) > (b) ? (a) : (b))
#define mc_vmin(a, b)     ((a) < (b) ? (a) : (b))
#define mc_vfma(a, b, c)  ((a) * (b) + (c))
#define mc_vhsum(v)       (v)
#define mc_vhmax(v)       (v)
#define mc_vround(v)      nearbyintf(v)
#define mc_vpow2i(n)      ldexpf(1.0f, (int)(n))
#define mc_vsel_neg(x, a, b) ((x) < 0.0f ? (a) : (b))

#else
#error "MC_ISA must be scalar, avx2, avx512 or neon"
#endif

#endif  // MC_ISA

#endif
