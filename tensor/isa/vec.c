// vec.c - hot row kernels written once against the macros of simd.h and
// compiled once per ISA (-DMC_ISA=scalar|avx2|avx512|neon); exports the
// table mc_isa_table_<isa> (see simd.h for what each entry computes).
//
// Every loop has a vector body (compiled when MC_SIMD is 1) and a scalar
// tail that also does all the work in the scalar variant.  The tails use
// libm (expf, erfcf); vector bodies use the approximations below.
//
// Vector exp (v_exp), for x <= 88: x = n ln2 + r with n = round(x log2 e)
// and r in [-ln2/2, ln2/2] (ln2 split into a 15-bit high part, so n ln2_hi
// is exact, and a low part); e^r by its degree-7 Taylor polynomial
// (truncation <= 0.3466^8 / 8! = 5.2e-9 relative); times 2^n built in the
// exponent bits.  Inputs below -88 give exactly 0 (2^-127 flushed), which
// softmax relies on for -inf mask entries; all callers pass x <= 0.
//
// Vector normal cdf (v_phi): with z = |x| / sqrt 2 and t = 1 / (1 + P z),
// erfc(z) = t Q(t) exp(-z^2), Q a degree-10 polynomial fitted (relative
// least squares on Chebyshev nodes, P = 0.4) to erfc(z) exp(z^2) / t over
// all z >= 0: 8.5e-9 relative in exact arithmetic, 3.1e-7 relative
// evaluated in float.  Phi(x) = erfc(z)/2 for x < 0, 1 - erfc(z)/2 else, so
// Phi keeps relative accuracy in the far negative tail (no 1 + erf(x)
// cancellation) and its absolute error is <= 2e-7 everywhere.  The same
// exp(-z^2) = exp(-x^2/2) gives the pdf phi for the GELU backward.  The
// GELU forward (v_gelu) uses a shorter degree-8 fit of the same form over
// the range where exp(-z^2) is not flushed (see there).
#include "../simd.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define SQRT1_2      0.70710678118654752f  // 1 / sqrt(2)
#define INV_SQRT_2PI 0.39894228040143268f  // 1 / sqrt(2 pi)

// ---- scalar reference pieces (tails and the scalar variant) ----

// Phi(x) = erfc(-x / sqrt 2) / 2, accurate in both tails.
static inline float s_phi(float x) { return 0.5f * erfcf(-x * SQRT1_2); }
static inline float s_pdf(float x) { return INV_SQRT_2PI * expf(-0.5f * x * x); }

#if MC_SIMD

// ---- vector math ----

#define EXP_LOG2E  1.44269504088896341f
#define EXP_LN2_HI 0.693145751953125f       // 15 significant bits
#define EXP_LN2_LO 1.42860682030941723e-6f  // ln 2 - EXP_LN2_HI
#define EXP_X_MIN  (-88.0f)                 // below: result 0
#define EXP_X_MAX  88.0f                    // above: clamped (callers stay <= 0)

// e^x for x in [EXP_X_MIN, EXP_X_MAX] (see the file header).
static inline mc_vf v_exp_core(mc_vf x) {
    // Range reduction: x = n ln2 + r.
    mc_vf n = mc_vround(mc_vmul(x, mc_vset1(EXP_LOG2E)));
    mc_vf r = mc_vfma(n, mc_vset1(-EXP_LN2_HI), x);
    r = mc_vfma(n, mc_vset1(-EXP_LN2_LO), r);
    // e^r = sum_k r^k / k!, k = 0..7, by Horner.
    mc_vf p = mc_vset1(1.0f / 5040.0f);
    p = mc_vfma(p, r, mc_vset1(1.0f / 720.0f));
    p = mc_vfma(p, r, mc_vset1(1.0f / 120.0f));
    p = mc_vfma(p, r, mc_vset1(1.0f / 24.0f));
    p = mc_vfma(p, r, mc_vset1(1.0f / 6.0f));
    p = mc_vfma(p, r, mc_vset1(0.5f));
    p = mc_vfma(p, r, mc_vset1(1.0f));
    p = mc_vfma(p, r, mc_vset1(1.0f));
    // Scale by 2^n.
    return mc_vmul(p, mc_vpow2i(n));
}

// e^x (see the file header).
static inline mc_vf v_exp(mc_vf x) {
    return v_exp_core(mc_vmin(mc_vmax(x, mc_vset1(EXP_X_MIN)), mc_vset1(EXP_X_MAX)));
}

// e^x for x <= 0 (one clamp fewer).
static inline mc_vf v_exp_nonpos(mc_vf x) { return v_exp_core(mc_vmax(x, mc_vset1(EXP_X_MIN))); }

// erfc(z) exp(z^2) = t Q(t), t = 1 / (1 + ERFC_P z): coefficients of Q in
// increasing powers of t (fit described in the file header).
#define ERFC_P 0.4f
static const float erfc_q[11] = {
    0.225675907f, 0.225670075f, 0.207750019f, 0.170280676f, 0.127515934f, 0.0543108717f,
    0.0172591413f, 0.0502722325f, -0.163064215f, 0.10692155f, -0.0225921821f,
};

// Phi(x) and, through *pdf, phi(x) = exp(-x^2/2) / sqrt(2 pi).
static inline mc_vf v_phi(mc_vf x, mc_vf *pdf) {
    // z = |x| / sqrt 2
    mc_vf ax = mc_vmax(x, mc_vsub(mc_vzero(), x));
    mc_vf z = mc_vmul(ax, mc_vset1(SQRT1_2));
    // t Q(t)
    mc_vf t = mc_vdiv(mc_vset1(1.0f), mc_vfma(z, mc_vset1(ERFC_P), mc_vset1(1.0f)));
    mc_vf q = mc_vset1(erfc_q[10]);
    for (int k = 9; k >= 0; k--) q = mc_vfma(q, t, mc_vset1(erfc_q[k]));
    // e = exp(-z^2); h = erfc(z) / 2 = Phi(-|x|)
    mc_vf e = v_exp(mc_vsub(mc_vzero(), mc_vmul(z, z)));
    mc_vf h = mc_vmul(mc_vmul(mc_vset1(0.5f), mc_vmul(t, q)), e);
    *pdf = mc_vmul(e, mc_vset1(INV_SQRT_2PI));
    return mc_vsel_neg(x, h, mc_vsub(mc_vset1(1.0f), h));
}

// GELU forward, x Phi(x), with fewer operations than x v_phi(x): erfc by
// a degree-8 Q8 (t = 1 / (1 + 0.37 z), fitted like erfc_q but over z <=
// 9.4 only, where exp(-z^2) is still above the 2^-127 flush: 1.6e-8
// relative in exact arithmetic, 3.9e-7 evaluated in float), the 1/2 of
// Phi folded into the coefficients (exact), and
//   x Phi(x) = max(x, 0) - |x| Phi(-|x|)
// as one FMA instead of a select, a subtraction and a product.
#define GELU_P 0.37f
static const float gelu_q_half[9] = {
    0.5f * 0.20881483f, 0.5f * 0.207411885f, 0.5f * 0.206379175f, 0.5f * 0.106039889f,
    0.5f * 0.311914921f, 0.5f * -0.286907703f, 0.5f * 0.488227755f, 0.5f * -0.303940952f,
    0.5f * 0.0620601363f,
};

static inline mc_vf v_gelu(mc_vf x) {
    mc_vf nx = mc_vsub(mc_vzero(), x);
    mc_vf ax = mc_vmax(x, nx), nax = mc_vmin(x, nx);
    mc_vf z = mc_vmul(ax, mc_vset1(SQRT1_2));
    // h = Phi(-|x|) = erfc(z) / 2 = t Q8(t) / 2 exp(-z^2)
    mc_vf t = mc_vdiv(mc_vset1(1.0f), mc_vfma(z, mc_vset1(GELU_P), mc_vset1(1.0f)));
    mc_vf q = mc_vset1(gelu_q_half[8]);
    for (int k = 7; k >= 0; k--) q = mc_vfma(q, t, mc_vset1(gelu_q_half[k]));
    mc_vf e = v_exp_nonpos(mc_vmul(mc_vmul(nax, ax), mc_vset1(0.5f)));   // exp(-x^2 / 2)
    mc_vf h = mc_vmul(mc_vmul(t, q), e);
    return mc_vfma(nax, h, mc_vmax(x, mc_vzero()));
}

#endif  // MC_SIMD

// ---- dot, axpy ----

static float k_dot(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if MC_SIMD
    // Two accumulators hide the FMA latency.
    mc_vf s0 = mc_vzero(), s1 = mc_vzero();
    for (; i + 2 * MC_VW <= n; i += 2 * MC_VW) {
        s0 = mc_vfma(mc_vload(a + i), mc_vload(b + i), s0);
        s1 = mc_vfma(mc_vload(a + i + MC_VW), mc_vload(b + i + MC_VW), s1);
    }
    for (; i + MC_VW <= n; i += MC_VW) s0 = mc_vfma(mc_vload(a + i), mc_vload(b + i), s0);
    s = mc_vhsum(mc_vadd(s0, s1));
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void k_axpy(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
#if MC_SIMD
    mc_vf va = mc_vset1(a);
    for (; i + MC_VW <= n; i += MC_VW)
        mc_vstore(y + i, mc_vfma(va, mc_vload(x + i), mc_vload(y + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

// ---- GELU ----

// out = x Phi(x)
static void k_gelu_forward(float *out, const float *x, int64_t n) {
    int64_t i = 0;
#if MC_SIMD
    for (; i + MC_VW <= n; i += MC_VW) mc_vstore(out + i, v_gelu(mc_vload(x + i)));
#endif
    for (; i < n; i++) out[i] = x[i] * s_phi(x[i]);
}

// d/dx [x Phi(x)] = Phi(x) + x phi(x);  dx += dout * that
static void k_gelu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    int64_t i = 0;
#if MC_SIMD
    for (; i + MC_VW <= n; i += MC_VW) {
        mc_vf v = mc_vload(x + i), pdf;
        mc_vf cdf = v_phi(v, &pdf);
        mc_vf d = mc_vfma(v, pdf, cdf);
        mc_vstore(dx + i, mc_vfma(mc_vload(dout + i), d, mc_vload(dx + i)));
    }
#endif
    for (; i < n; i++) dx[i] += dout[i] * (s_phi(x[i]) + x[i] * s_pdf(x[i]));
}

// ---- LayerNorm rows ----

// Sum of x [n].
static float k_sum(const float *x, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if MC_SIMD
    mc_vf s0 = mc_vzero(), s1 = mc_vzero();
    for (; i + 2 * MC_VW <= n; i += 2 * MC_VW) {
        s0 = mc_vadd(s0, mc_vload(x + i));
        s1 = mc_vadd(s1, mc_vload(x + i + MC_VW));
    }
    for (; i + MC_VW <= n; i += MC_VW) s0 = mc_vadd(s0, mc_vload(x + i));
    s = mc_vhsum(mc_vadd(s0, s1));
#endif
    for (; i < n; i++) s += x[i];
    return s;
}

// Sum of (x - m)^2.
static float k_sumsq_centered(const float *x, float m, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if MC_SIMD
    mc_vf vm = mc_vset1(m), s0 = mc_vzero();
    for (; i + MC_VW <= n; i += MC_VW) {
        mc_vf d = mc_vsub(mc_vload(x + i), vm);
        s0 = mc_vfma(d, d, s0);
    }
    s = mc_vhsum(s0);
#endif
    for (; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return s;
}

// Two passes (mean, then centred squares): no E[x^2] - E[x]^2 cancellation
// when |mean| >> std.  Lanes split the float sums, so a row of D <= 4096
// loses at most ~D/MC_VW ulp-sized terms per lane; eps goes inside the sqrt
// as in torch.nn.LayerNorm.
static void k_layernorm_row_forward(float *out, float *mean, float *rstd, const float *x,
                                    const float *gamma, const float *beta, int64_t D,
                                    float eps) {
    // Statistics.
    float m = k_sum(x, D) / (float)D;
    float var = k_sumsq_centered(x, m, D) / (float)D;
    float r = 1.0f / sqrtf(var + eps);
    *mean = m, *rstd = r;

    // out = (x - m) r gamma + beta
    int64_t i = 0;
#if MC_SIMD
    mc_vf vm = mc_vset1(m), vr = mc_vset1(r);
    for (; i + MC_VW <= D; i += MC_VW) {
        mc_vf y = mc_vmul(mc_vsub(mc_vload(x + i), vm), vr);
        if (gamma) y = mc_vmul(y, mc_vload(gamma + i));
        if (beta) y = mc_vadd(y, mc_vload(beta + i));
        mc_vstore(out + i, y);
    }
#endif
    for (; i < D; i++) {
        float y = (x[i] - m) * r;
        if (gamma) y *= gamma[i];
        if (beta) y += beta[i];
        out[i] = y;
    }
}

// y = xhat gamma + beta, xhat = (x - mean) rstd.  With g = dout gamma:
//   dxhat = g;  dx = rstd (g - mean(g) - xhat mean(g xhat))
// (mean and rstd depend on x; their terms give the two means).
static void k_layernorm_row_backward(float *dx, const float *dout, const float *x,
                                     const float *gamma, float mean, float rstd, int64_t D) {
    // a = mean(g), b = mean(g xhat)
    float sa = 0.0f, sb = 0.0f;
    int64_t i = 0;
#if MC_SIMD
    mc_vf vm = mc_vset1(mean), vr = mc_vset1(rstd);
    mc_vf va = mc_vzero(), vb = mc_vzero();
    for (; i + MC_VW <= D; i += MC_VW) {
        mc_vf g = mc_vload(dout + i);
        if (gamma) g = mc_vmul(g, mc_vload(gamma + i));
        mc_vf xh = mc_vmul(mc_vsub(mc_vload(x + i), vm), vr);
        va = mc_vadd(va, g);
        vb = mc_vfma(g, xh, vb);
    }
    sa = mc_vhsum(va), sb = mc_vhsum(vb);
#endif
    for (; i < D; i++) {
        float g = gamma ? dout[i] * gamma[i] : dout[i];
        sa += g;
        sb += g * ((x[i] - mean) * rstd);
    }
    float a = sa / (float)D, b = sb / (float)D;

    // dx += rstd (g - a - xhat b)
    i = 0;
#if MC_SIMD
    mc_vf vna = mc_vset1(-a), vnb = mc_vset1(-b);
    for (; i + MC_VW <= D; i += MC_VW) {
        mc_vf g = mc_vload(dout + i);
        if (gamma) g = mc_vmul(g, mc_vload(gamma + i));
        mc_vf xh = mc_vmul(mc_vsub(mc_vload(x + i), vm), vr);
        mc_vf t = mc_vfma(xh, vnb, mc_vadd(g, vna));
        mc_vstore(dx + i, mc_vfma(t, vr, mc_vload(dx + i)));
    }
#endif
    for (; i < D; i++) {
        float g = gamma ? dout[i] * gamma[i] : dout[i];
        float xh = (x[i] - mean) * rstd;
        dx[i] += rstd * (g - a - xh * b);
    }
}

// sg += dout xhat, sb += dout  (summed over rows by the caller)
static void k_layernorm_row_param_grads(float *sg, float *sb, const float *dout,
                                        const float *x, float mean, float rstd, int64_t D) {
    int64_t i = 0;
#if MC_SIMD
    mc_vf vm = mc_vset1(mean), vr = mc_vset1(rstd);
    for (; i + MC_VW <= D; i += MC_VW) {
        mc_vf dy = mc_vload(dout + i);
        mc_vf xh = mc_vmul(mc_vsub(mc_vload(x + i), vm), vr);
        mc_vstore(sg + i, mc_vfma(dy, xh, mc_vload(sg + i)));
        mc_vstore(sb + i, mc_vadd(dy, mc_vload(sb + i)));
    }
#endif
    for (; i < D; i++) {
        sg[i] += dout[i] * ((x[i] - mean) * rstd);
        sb[i] += dout[i];
    }
}

// ---- softmax rows ----

// out = exp(x - max) / sum exp(x - max).  Subtracting the max keeps every
// exponent <= 0 (no overflow; the largest term is exactly 1, so the sum is
// >= 1).  Entries of -inf (masked) give exactly 0.
static void k_softmax_row(float *out, const float *x, int64_t n) {
    // Row max.
    float m = -INFINITY;
    int64_t i = 0;
#if MC_SIMD
    if (n >= MC_VW) {
        mc_vf vmax = mc_vload(x);
        for (i = MC_VW; i + MC_VW <= n; i += MC_VW) vmax = mc_vmax(vmax, mc_vload(x + i));
        m = mc_vhmax(vmax);
    }
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;

    // Exponentials and their sum.
    float s = 0.0f;
    i = 0;
#if MC_SIMD
    mc_vf vm = mc_vset1(m), vs = mc_vzero();
    for (; i + MC_VW <= n; i += MC_VW) {
        mc_vf e = v_exp(mc_vsub(mc_vload(x + i), vm));
        mc_vstore(out + i, e);
        vs = mc_vadd(vs, e);
    }
    s = mc_vhsum(vs);
#endif
    for (; i < n; i++) {
        out[i] = expf(x[i] - m);
        s += out[i];
    }

    // Normalise.
    float inv = 1.0f / s;
    i = 0;
#if MC_SIMD
    mc_vf vinv = mc_vset1(inv);
    for (; i + MC_VW <= n; i += MC_VW) mc_vstore(out + i, mc_vmul(mc_vload(out + i), vinv));
#endif
    for (; i < n; i++) out[i] *= inv;
}

// y = softmax(x): dx_i += y_i (dy_i - sum_j dy_j y_j)
static void k_softmax_row_backward(float *dx, const float *dout, const float *y, int64_t n) {
    float c = k_dot(dout, y, n);
    int64_t i = 0;
#if MC_SIMD
    mc_vf vc = mc_vset1(c);
    for (; i + MC_VW <= n; i += MC_VW) {
        mc_vf t = mc_vmul(mc_vload(y + i), mc_vsub(mc_vload(dout + i), vc));
        mc_vstore(dx + i, mc_vadd(mc_vload(dx + i), t));
    }
#endif
    for (; i < n; i++) dx[i] += y[i] * (dout[i] - c);
}

// ---- small matrix product ----

// C [M, N] (+)= op(A) [M, K] @ B [K, N], op(A) = A or A^T.  Element (i, k)
// of op(A) is A[i sr + k sk]: (sr, sk) = (lda, 1), or (1, lda) transposed.
// Vector variants: blocks of 4 rows by 2 vectors of columns held in 8
// named accumulators over the whole K loop (2 loads of B and 4 broadcasts
// of A per 8 FMAs), then 1-vector column blocks, scalar dots for leftover
// columns, and single rows for leftover rows.  The accumulators are
// spelled out because compilers keep a c[4][2] array in memory.  Scalar
// variant: rows of C accumulated as sums of scaled rows of B.
#if MC_SIMD
// C[i, j] = s, or C[i, j] += s when accumulating.
#define GEMM_PUT(ptr, v)                                                        \
    mc_vstore(ptr, accumulate ? mc_vadd(v, mc_vload(ptr)) : (v))

// Leftover columns j0.. of rows 0..mr-1: one scalar dot per element.
static void gemm_tail_cols(int mr, int j0, int N, int K, const float *A, size_t sr, size_t sk,
                           const float *B, int ldb, float *C, int ldc, int accumulate) {
    for (int j = j0; j < N; j++)
        for (int r = 0; r < mr; r++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += A[r * sr + k * sk] * B[(size_t)k * ldb + j];
            float *c = C + (size_t)r * ldc + j;
            *c = accumulate ? *c + s : s;
        }
}

// Rows 0..3 of op(A) and C (pointers already offset).
static void gemm_rows4(int N, int K, const float *A, size_t sr, size_t sk, const float *B,
                       int ldb, float *C, int ldc, int accumulate) {
    float *c0 = C, *c1 = C + ldc, *c2 = C + 2 * (size_t)ldc, *c3 = C + 3 * (size_t)ldc;
    int j = 0;
    for (; j + 2 * MC_VW <= N; j += 2 * MC_VW) {
        mc_vf x00 = mc_vzero(), x01 = mc_vzero(), x10 = mc_vzero(), x11 = mc_vzero();
        mc_vf x20 = mc_vzero(), x21 = mc_vzero(), x30 = mc_vzero(), x31 = mc_vzero();
        const float *b = B + j, *ak = A;
        for (int k = 0; k < K; k++, b += ldb, ak += sk) {
            mc_vf b0 = mc_vload(b), b1 = mc_vload(b + MC_VW), a;
            a = mc_vset1(ak[0]), x00 = mc_vfma(a, b0, x00), x01 = mc_vfma(a, b1, x01);
            a = mc_vset1(ak[sr]), x10 = mc_vfma(a, b0, x10), x11 = mc_vfma(a, b1, x11);
            a = mc_vset1(ak[2 * sr]), x20 = mc_vfma(a, b0, x20), x21 = mc_vfma(a, b1, x21);
            a = mc_vset1(ak[3 * sr]), x30 = mc_vfma(a, b0, x30), x31 = mc_vfma(a, b1, x31);
        }
        GEMM_PUT(c0 + j, x00), GEMM_PUT(c0 + j + MC_VW, x01);
        GEMM_PUT(c1 + j, x10), GEMM_PUT(c1 + j + MC_VW, x11);
        GEMM_PUT(c2 + j, x20), GEMM_PUT(c2 + j + MC_VW, x21);
        GEMM_PUT(c3 + j, x30), GEMM_PUT(c3 + j + MC_VW, x31);
    }
    for (; j + MC_VW <= N; j += MC_VW) {
        mc_vf x0 = mc_vzero(), x1 = mc_vzero(), x2 = mc_vzero(), x3 = mc_vzero();
        const float *b = B + j, *ak = A;
        for (int k = 0; k < K; k++, b += ldb, ak += sk) {
            mc_vf b0 = mc_vload(b);
            x0 = mc_vfma(mc_vset1(ak[0]), b0, x0);
            x1 = mc_vfma(mc_vset1(ak[sr]), b0, x1);
            x2 = mc_vfma(mc_vset1(ak[2 * sr]), b0, x2);
            x3 = mc_vfma(mc_vset1(ak[3 * sr]), b0, x3);
        }
        GEMM_PUT(c0 + j, x0), GEMM_PUT(c1 + j, x1), GEMM_PUT(c2 + j, x2), GEMM_PUT(c3 + j, x3);
    }
    gemm_tail_cols(4, j, N, K, A, sr, sk, B, ldb, C, ldc, accumulate);
}

// One row of op(A) (elements sk apart) and of C.
static void gemm_rows1(int N, int K, const float *A, size_t sk, const float *B, int ldb,
                       float *C, int accumulate) {
    int j = 0;
    for (; j + 2 * MC_VW <= N; j += 2 * MC_VW) {
        // Two partial sums per column vector (even and odd k) hide latency.
        mc_vf x0 = mc_vzero(), x1 = mc_vzero(), y0 = mc_vzero(), y1 = mc_vzero();
        const float *b = B + j;
        int k = 0;
        for (; k + 2 <= K; k += 2, b += 2 * (size_t)ldb) {
            mc_vf a = mc_vset1(A[k * sk]), e = mc_vset1(A[(k + 1) * sk]);
            x0 = mc_vfma(a, mc_vload(b), x0), x1 = mc_vfma(a, mc_vload(b + MC_VW), x1);
            y0 = mc_vfma(e, mc_vload(b + ldb), y0), y1 = mc_vfma(e, mc_vload(b + ldb + MC_VW), y1);
        }
        if (k < K) {
            mc_vf a = mc_vset1(A[k * sk]);
            x0 = mc_vfma(a, mc_vload(b), x0), x1 = mc_vfma(a, mc_vload(b + MC_VW), x1);
        }
        GEMM_PUT(C + j, mc_vadd(x0, y0)), GEMM_PUT(C + j + MC_VW, mc_vadd(x1, y1));
    }
    for (; j + MC_VW <= N; j += MC_VW) {
        mc_vf x0 = mc_vzero();
        const float *b = B + j;
        for (int k = 0; k < K; k++, b += ldb) x0 = mc_vfma(mc_vset1(A[k * sk]), mc_vload(b), x0);
        GEMM_PUT(C + j, x0);
    }
    gemm_tail_cols(1, j, N, K, A, 0, sk, B, ldb, C, 0, accumulate);
}
#endif

static void k_gemm_small(int transA, int M, int N, int K, const float *A, int lda,
                         const float *B, int ldb, float *C, int ldc, int accumulate) {
    size_t sr = transA ? 1 : (size_t)lda, sk = transA ? (size_t)lda : 1;
#if MC_SIMD
    int i = 0;
    for (; i + 4 <= M; i += 4)
        gemm_rows4(N, K, A + i * sr, sr, sk, B, ldb, C + (size_t)i * ldc, ldc, accumulate);
    for (; i < M; i++) gemm_rows1(N, K, A + i * sr, sk, B, ldb, C + (size_t)i * ldc, accumulate);
#else
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (!accumulate) memset(c, 0, (size_t)N * sizeof(float));
        for (int k = 0; k < K; k++) {
            float a = A[i * sr + k * sk];
            const float *b = B + (size_t)k * ldb;
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
#endif
}

// ---- the table ----

const McIsa MC_ISA_TABLE = {
    .name                   = MC_ISA_NAME,
    .dot                    = k_dot,
    .axpy                   = k_axpy,
    .gelu_forward           = k_gelu_forward,
    .gelu_backward          = k_gelu_backward,
    .layernorm_row_forward  = k_layernorm_row_forward,
    .layernorm_row_backward = k_layernorm_row_backward,
    .layernorm_row_param_grads = k_layernorm_row_param_grads,
    .softmax_row            = k_softmax_row,
    .softmax_row_backward   = k_softmax_row_backward,
    .gemm_small             = k_gemm_small,
};
