// kernels.c - forward/backward kernels on raw arrays (see kernels.h).
//
// Dims as in kernels.h.  References: torch.nn.LayerNorm / GELU /
// softmax semantics; open_clip's text attention (nn.MultiheadAttention in
// torch 1.13) and timm's fastvit Attention for the packed q, k, v layout.
//
// Threading: every parallel loop runs over independent outputs with a
// schedule that does not change which code computes an element (fixed
// chunks for elementwise work, whole rows, whole (b, h) pairs, whole
// column blocks for parameter gradients), so results are bit-identical for
// any thread count.
#include "kernels.h"
#include "simd.h"
#include "tensor.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

// Elementwise work is cut into chunks of this many floats (a multiple of
// every vector width), one chunk per task: a fixed cut, so the vector body
// and scalar tail of each element do not depend on the thread count.
#define ELEM_CHUNK 8192
// Columns per task, and rows per float partial sum, when summing
// parameter gradients over rows.
#define COL_BLOCK 64
#define PARAM_ROWS 256
// Pixels per task in LayerNorm2d.
#define PIX_BLOCK 64

// ---- GELU ----

void mc_gelu_forward(float *out, const float *x, int64_t n) {
    const McIsa *k = mc_isa();
    int64_t n_chunks = (n + ELEM_CHUNK - 1) / ELEM_CHUNK;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; c++) {
        int64_t i0 = c * ELEM_CHUNK, len = n - i0 < ELEM_CHUNK ? n - i0 : ELEM_CHUNK;
        k->gelu_forward(out + i0, x + i0, len);
    }
}

void mc_gelu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    const McIsa *k = mc_isa();
    int64_t n_chunks = (n + ELEM_CHUNK - 1) / ELEM_CHUNK;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; c++) {
        int64_t i0 = c * ELEM_CHUNK, len = n - i0 < ELEM_CHUNK ? n - i0 : ELEM_CHUNK;
        k->gelu_backward(dx + i0, dout + i0, x + i0, len);
    }
}

// ---- LayerNorm over the last dim ----

void mc_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int64_t R, int64_t D,
                          float eps) {
    const McIsa *k = mc_isa();
    // One row per task: statistics and output (two passes, see vec.c).
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > ELEM_CHUNK)
    for (int64_t r = 0; r < R; r++) {
        float m, s;
        k->layernorm_row_forward(out + r * D, &m, &s, x + r * D, gamma, beta, D, eps);
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

// dgamma [D] += sum_r dout xhat, dbeta [D] += sum_r dout.  Tasks are
// blocks of COL_BLOCK columns; each sums its rows in fixed chunks of
// PARAM_ROWS rows in float (vector kernel), and the chunk sums in order
// in double, so R ~ 10^4 rows lose no more than a 256-term float sum does.
static void layernorm_param_grads(float *dgamma, float *dbeta, const float *dout,
                                  const float *x, const float *mean, const float *rstd,
                                  int64_t R, int64_t D) {
    const McIsa *k = mc_isa();
    int64_t n_blocks = (D + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > ELEM_CHUNK)
    for (int64_t jb = 0; jb < n_blocks; jb++) {
        int64_t j0 = jb * COL_BLOCK, nj = D - j0 < COL_BLOCK ? D - j0 : COL_BLOCK;
        double sg[COL_BLOCK] = {0}, sb[COL_BLOCK] = {0};
        for (int64_t r0 = 0; r0 < R; r0 += PARAM_ROWS) {
            float fg[COL_BLOCK] = {0}, fb[COL_BLOCK] = {0};
            int64_t r1 = r0 + PARAM_ROWS < R ? r0 + PARAM_ROWS : R;
            for (int64_t r = r0; r < r1; r++)
                k->layernorm_row_param_grads(fg, fb, dout + r * D + j0, x + r * D + j0, mean[r],
                                             rstd[r], nj);
            for (int64_t j = 0; j < nj; j++) sg[j] += fg[j], sb[j] += fb[j];
        }
        for (int64_t j = 0; j < nj; j++) {
            if (dgamma) dgamma[j0 + j] += (float)sg[j];
            if (dbeta) dbeta[j0 + j] += (float)sb[j];
        }
    }
}

void mc_layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, int64_t R, int64_t D) {
    const McIsa *k = mc_isa();
    // d x, one row per task.
    if (dx) {
        #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
            if (R * D > ELEM_CHUNK)
        for (int64_t r = 0; r < R; r++)
            k->layernorm_row_backward(dx + r * D, dout + r * D, x + r * D, gamma, mean[r],
                                      rstd[r], D);
    }
    // d gamma, d beta.
    if (dgamma || dbeta) layernorm_param_grads(dgamma, dbeta, dout, x, mean, rstd, R, D);
}

// ---- LayerNorm2d ----
//
// Element (n, c, p) sits at (n C + c) HW + p.  Tasks are (n, block of
// PIX_BLOCK pixels); the loops run over c outside and pixels inside, so
// the inner loops are contiguous.

void mc_layernorm2d_forward(float *out, float *mean, float *rstd, const float *x,
                            const float *gamma, const float *beta, int64_t N, int64_t C,
                            int64_t HW, float eps) {
    int64_t n_pb = (HW + PIX_BLOCK - 1) / PIX_BLOCK;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (N * C * HW > ELEM_CHUNK)
    for (int64_t task = 0; task < N * n_pb; task++) {
        int64_t n = task / n_pb, p0 = (task % n_pb) * PIX_BLOCK;
        int64_t np = HW - p0 < PIX_BLOCK ? HW - p0 : PIX_BLOCK;
        const float *x_n = x + n * C * HW + p0;
        float *out_n = out + n * C * HW + p0;
        float m[PIX_BLOCK] = {0}, v[PIX_BLOCK] = {0}, rs[PIX_BLOCK];

        // Mean over channels, then centred variance (two passes).
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < np; p++) m[p] += x_n[c * HW + p];
        for (int64_t p = 0; p < np; p++) m[p] /= (float)C;
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < np; p++) {
                float d = x_n[c * HW + p] - m[p];
                v[p] += d * d;
            }
        for (int64_t p = 0; p < np; p++) rs[p] = 1.0f / sqrtf(v[p] / (float)C + eps);

        // out = (x - mean) rstd gamma[c] + beta[c]
        for (int64_t c = 0; c < C; c++) {
            float gc = gamma ? gamma[c] : 1.0f, bc = beta ? beta[c] : 0.0f;
            for (int64_t p = 0; p < np; p++)
                out_n[c * HW + p] = (x_n[c * HW + p] - m[p]) * rs[p] * gc + bc;
        }
        for (int64_t p = 0; p < np; p++) {
            if (mean) mean[n * HW + p0 + p] = m[p];
            if (rstd) rstd[n * HW + p0 + p] = rs[p];
        }
    }
}

void mc_layernorm2d_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                             const float *x, const float *mean, const float *rstd,
                             const float *gamma, int64_t N, int64_t C, int64_t HW) {
    // d x: per pixel, the LayerNorm row formula over the C channels
    //   dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)),  g = dout gamma[c].
    int64_t n_pb = (HW + PIX_BLOCK - 1) / PIX_BLOCK;
    if (dx) {
        #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
            if (N * C * HW > ELEM_CHUNK)
        for (int64_t task = 0; task < N * n_pb; task++) {
            int64_t n = task / n_pb, p0 = (task % n_pb) * PIX_BLOCK;
            int64_t np = HW - p0 < PIX_BLOCK ? HW - p0 : PIX_BLOCK;
            int64_t off = n * C * HW + p0;
            const float *m = mean + n * HW + p0, *rs = rstd + n * HW + p0;
            float a[PIX_BLOCK] = {0}, b[PIX_BLOCK] = {0};

            // a = mean_c(g), b = mean_c(g xhat)
            for (int64_t c = 0; c < C; c++) {
                float gc = gamma ? gamma[c] : 1.0f;
                for (int64_t p = 0; p < np; p++) {
                    float g = dout[off + c * HW + p] * gc;
                    a[p] += g;
                    b[p] += g * ((x[off + c * HW + p] - m[p]) * rs[p]);
                }
            }
            for (int64_t p = 0; p < np; p++) a[p] /= (float)C, b[p] /= (float)C;

            // dx += rstd (g - a - xhat b)
            for (int64_t c = 0; c < C; c++) {
                float gc = gamma ? gamma[c] : 1.0f;
                for (int64_t p = 0; p < np; p++) {
                    int64_t i = off + c * HW + p;
                    float xh = (x[i] - m[p]) * rs[p];
                    dx[i] += rs[p] * (dout[i] * gc - a[p] - xh * b[p]);
                }
            }
        }
    }

    // d gamma[c] = sum_{n,p} dout xhat, d beta[c] = sum dout: one channel
    // per task, double sums.
    if (dgamma || dbeta) {
        #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
            if (N * C * HW > ELEM_CHUNK)
        for (int64_t c = 0; c < C; c++) {
            double sg = 0, sb = 0;
            for (int64_t n = 0; n < N; n++) {
                const float *dy = dout + (n * C + c) * HW, *xr = x + (n * C + c) * HW;
                const float *m = mean + n * HW, *rs = rstd + n * HW;
                for (int64_t p = 0; p < HW; p++) {
                    sg += (double)(dy[p] * ((xr[p] - m[p]) * rs[p]));
                    sb += (double)dy[p];
                }
            }
            if (dgamma) dgamma[c] += (float)sg;
            if (dbeta) dbeta[c] += (float)sb;
        }
    }
}

// ---- softmax family ----

void mc_softmax_forward(float *out, const float *x, int64_t R, int64_t D) {
    const McIsa *k = mc_isa();
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > ELEM_CHUNK)
    for (int64_t r = 0; r < R; r++) k->softmax_row(out + r * D, x + r * D, D);
}

void mc_softmax_backward(float *dx, const float *dout, const float *y, int64_t R, int64_t D) {
    const McIsa *k = mc_isa();
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > ELEM_CHUNK)
    for (int64_t r = 0; r < R; r++)
        k->softmax_row_backward(dx + r * D, dout + r * D, y + r * D, D);
}

// log softmax = x - max - log(sum exp(x - max)): the max keeps exp <= 1 and
// the sum >= 1, so the log is finite; the sum runs in double (rows of
// class logits are short, this is not a hot loop).
void mc_log_softmax_forward(float *out, const float *x, int64_t R, int64_t D) {
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > ELEM_CHUNK)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * D;
        float *yr = out + r * D;
        float m = -INFINITY;
        for (int64_t j = 0; j < D; j++) m = xr[j] > m ? xr[j] : m;
        double s = 0;
        for (int64_t j = 0; j < D; j++) s += exp((double)xr[j] - m);
        float lse = m + (float)log(s);
        for (int64_t j = 0; j < D; j++) yr[j] = xr[j] - lse;
    }
}

// y = x - lse(x): dx_j += dout_j - softmax_j sum_k dout_k, softmax = exp(y).
void mc_log_softmax_backward(float *dx, const float *dout, const float *y, int64_t R,
                             int64_t D) {
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > ELEM_CHUNK)
    for (int64_t r = 0; r < R; r++) {
        const float *dy = dout + r * D, *yr = y + r * D;
        float s = 0.0f;
        for (int64_t j = 0; j < D; j++) s += dy[j];
        for (int64_t j = 0; j < D; j++) dx[r * D + j] += dy[j] - expf(yr[j]) * s;
    }
}

// ---- attention ----
//
// One (b, h) pair per task.  Per-thread scratch tiles (floats):
//   qs [T, HS]   q scaled          ks [T, HS]   k scaled (backward)
//   kt [HS, Tp]  k^T, zero-padded  vt [HS, Tp]  v^T, zero-padded (backward)
//   s  [T, Tp]   scores / dP       p  [T, Tp]   probabilities (forward
//   without att) / dS (backward)
// Products with P^T and dS^T read P and dS transposed in place.
// Tp = T rounded up to 16 floats, so score and probability rows are whole
// vectors for every ISA: the padded scores are set to -inf, their
// probabilities come out 0, and no row needs the scalar tail (whose libm
// expf costs more than the vector exp).  att rows use the same stride Tp.

#define ATT_PAD 16

static int64_t att_round(int64_t n) { return (n + ATT_PAD - 1) / ATT_PAD * ATT_PAD; }

// Floats of one thread's scratch (rounded to 16 floats = 64 bytes so
// threads never share a cache line).
static size_t att_per_thread(int T, int HS, int backward) {
    int64_t Tp = att_round(T);
    int64_t f = backward ? 2 * (int64_t)T * HS + HS * Tp + 2 * T * Tp
                         : (int64_t)T * HS + HS * Tp + 2 * T * Tp;
    return (size_t)att_round(f);
}

size_t mc_attention_att_floats(int B, int NH, int T) {
    return (size_t)B * NH * T * att_round(T);
}

size_t mc_attention_scratch_floats(int T, int HS, int nthreads, int backward) {
    return att_per_thread(T, HS, backward) * (size_t)(nthreads > 0 ? nthreads : 1);
}

// Worth starting threads: more than one (b, h) pair and more than ~64K
// multiply-adds in all (below that the fork costs more than the work).
static int att_parallel(int64_t pairs, int64_t T, int64_t HS) {
    return pairs > 1 && pairs * T * T * HS > 65536;
}

// dst [cols, ld] = src^T for src [rows, cols] with row stride lds; entries
// rows .. ld-1 of each dst row are zeroed.
static void att_transpose(float *dst, int64_t ld, const float *src, int64_t lds, int rows,
                          int cols) {
    for (int c = 0; c < cols; c++) {
        float *d = dst + c * ld;
        for (int r = 0; r < rows; r++) d[r] = src[(int64_t)r * lds + c];
        for (int64_t r = rows; r < ld; r++) d[r] = 0.0f;
    }
}

// dst [rows, cols] (contiguous) = src [rows, cols] (row stride lds) * scale.
static void att_copy_scaled(float *dst, const float *src, int64_t lds, int rows, int cols,
                            float scale) {
    for (int r = 0; r < rows; r++) {
        float *d = dst + (int64_t)r * cols;
        const float *sr = src + (int64_t)r * lds;
        #pragma omp simd
        for (int c = 0; c < cols; c++) d[c] = sr[c] * scale;
    }
}

void mc_attention_forward(float *out, float *att, const float *qkv, const float *mask,
                          int B, int T, int C, int NH, float scale, float *scratch,
                          int nthreads) {
    const McIsa *k = mc_isa();
    int HS = C / NH;
    int64_t Tp = att_round(T), C3 = 3 * (int64_t)C;
    size_t per = att_per_thread(T, HS, 0);
    if (nthreads < 1) nthreads = 1;

    #pragma omp parallel num_threads(nthreads) if (att_parallel(B * NH, T, HS))
    {
        float *qs = scratch + per * (size_t)THREAD_ID();
        float *kt = qs + (int64_t)T * HS, *s = kt + HS * Tp, *p_own = s + T * Tp;

        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            int b = bh / NH, h = bh % NH;
            const float *q = qkv + (int64_t)b * T * C3 + (int64_t)h * HS;
            const float *kk = q + C, *v = q + 2 * (int64_t)C;
            float *p = att ? att + (int64_t)bh * T * Tp : p_own;

            // S = (q scale) k^T  [T, Tp]; q is scaled before the product as
            // in the references.
            att_copy_scaled(qs, q, C3, T, HS, scale);
            att_transpose(kt, Tp, kk, C3, T, HS);
            k->gemm_small(0, T, (int)Tp, HS, qs, HS, kt, (int)Tp, s, (int)Tp, 0);

            // P = softmax(S + mask) per row, padding at -inf.
            for (int i = 0; i < T; i++) {
                float *s_i = s + i * Tp;
                if (mask)
                    for (int j = 0; j < T; j++) s_i[j] += mask[(int64_t)i * T + j];
                for (int64_t j = T; j < Tp; j++) s_i[j] = -INFINITY;
                k->softmax_row(p + i * Tp, s_i, Tp);
            }

            // out_h = P v_h  [T, HS] into channels h HS.. of out.
            k->gemm_small(0, T, HS, T, p, (int)Tp, v, (int)C3,
                          out + (int64_t)b * T * C + (int64_t)h * HS, C, 0);
        }
    }
}

void mc_attention_backward(float *dqkv, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH, float scale,
                           float *scratch, int nthreads) {
    const McIsa *k = mc_isa();
    int HS = C / NH;
    int64_t Tp = att_round(T), C3 = 3 * (int64_t)C;
    size_t per = att_per_thread(T, HS, 1);
    if (nthreads < 1) nthreads = 1;

    #pragma omp parallel num_threads(nthreads) if (att_parallel(B * NH, T, HS))
    {
        float *qs = scratch + per * (size_t)THREAD_ID();
        float *ks = qs + (int64_t)T * HS, *vt = ks + (int64_t)T * HS, *dp = vt + HS * Tp;
        float *ds = dp + T * Tp;

        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            int b = bh / NH, h = bh % NH;
            const float *q = qkv + (int64_t)b * T * C3 + (int64_t)h * HS;
            const float *kk = q + C, *v = q + 2 * (int64_t)C;
            float *dq = dqkv + (int64_t)b * T * C3 + (int64_t)h * HS;
            float *dk = dq + C, *dv = dq + 2 * (int64_t)C;
            const float *dO = dout + (int64_t)b * T * C + (int64_t)h * HS;
            const float *P = att + (int64_t)bh * T * Tp;

            // dV += P^T dO
            k->gemm_small(1, T, HS, T, P, (int)Tp, dO, C, dv, (int)C3, 1);

            // dP = dO V^T  [T, Tp]
            att_transpose(vt, Tp, v, C3, T, HS);
            k->gemm_small(0, T, (int)Tp, HS, dO, C, vt, (int)Tp, dp, (int)Tp, 0);

            // dS = P (dP - rowsum(dP P))  (softmax backward over whole
            // padded rows: there P = 0 and dP = 0; masked P = 0 -> dS = 0)
            memset(ds, 0, (size_t)(T * Tp) * sizeof(float));
            for (int i = 0; i < T; i++)
                k->softmax_row_backward(ds + i * Tp, dp + i * Tp, P + i * Tp, Tp);

            // S = (q scale) k^T:  dQ += dS (k scale),  dK += dS^T (q scale)
            att_copy_scaled(ks, kk, C3, T, HS, scale);
            k->gemm_small(0, T, HS, T, ds, (int)Tp, ks, HS, dq, (int)C3, 1);
            att_copy_scaled(qs, q, C3, T, HS, scale);
            k->gemm_small(1, T, HS, T, ds, (int)Tp, qs, HS, dk, (int)C3, 1);
        }
    }
}

// ---- reductions ----

#define SUM_MAX_BLOCKS 1024
#define SUM_MIN_BLOCK  8192

double mc_sum_f64(const float *x, int64_t n) {
    // Block size depends on n only (at most SUM_MAX_BLOCKS blocks).
    int64_t bs = (n + SUM_MAX_BLOCKS - 1) / SUM_MAX_BLOCKS;
    if (bs < SUM_MIN_BLOCK) bs = SUM_MIN_BLOCK;
    int64_t nb = (n + bs - 1) / bs;
    double part[SUM_MAX_BLOCKS];
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (nb > 1)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * bs, i1 = i0 + bs < n ? i0 + bs : n;
        double s = 0;
        for (int64_t i = i0; i < i1; i++) s += x[i];
        part[b] = s;
    }
    double s = 0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    return s;
}
