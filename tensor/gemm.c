// gemm.c - C = alpha op(A) op(B) + beta C, row-major (see gemm.h).
//
// With OpenBLAS, one thread pool: OpenBLAS runs single-threaded
// (mc_set_threads sets it to 1 thread) and mc_sgemm cuts C into one block
// of rows or columns per OpenMP thread, one cblas_sgemm each.  Two pools
// (OpenMP for our kernels, OpenBLAS's pthreads for GEMMs) oversubscribe the
// cores: after each call the idle pool spins (sched_yield or a busy
// barrier) while the other works, which on a loaded machine cost up to 10x
// (bench/RESULTS.md).  One block per thread keeps OpenBLAS's packing of the
// shared operand to one copy per thread.
//
// Same results for any thread count: OpenBLAS's large-matrix path gives
// every element of C the same value whatever block of C it is computed in
// (its own threading relies on that; checked for the tower shapes), but
// its small-matrix kernels (M N K <= 1e6) sum in another order, so a
// product is cut only when every block stays above GEMM_CUT_MNK.
//
// The plain-C kernel packs a KC x NC panel of op(B) and an MC x KC block of
// op(A) into contiguous buffers, then runs a register-blocked micro-kernel
// that the compiler vectorises (4 rows x 16 columns of C per call).  Rows
// of C are split between threads; each C element is summed by one thread
// in a fixed k order, so results do not depend on the thread count.
#include "gemm.h"
#include "tensor.h"

#include <string.h>

#ifdef MCLIP_BLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define GEMM_MC 64
#define GEMM_KC 256
#define GEMM_NC 512
#define GEMM_MR 4
#define GEMM_NR 16

int mc_blas_enabled(void) {
#ifdef MCLIP_BLAS
    return 1;
#else
    return 0;
#endif
}

// Element (i, k) of op(A) and (k, j) of op(B).
#define OPA(i, k) (transA ? A[(size_t)(k) * lda + (i)] : A[(size_t)(i) * lda + (k)])
#define OPB(k, j) (transB ? B[(size_t)(j) * ldb + (k)] : B[(size_t)(k) * ldb + (j)])

// Micro-kernel: c[MR][NR] += a_panel[MR][kc] . b_panel[kc][NR].
static void gemm_micro(int kc, const float *ap, const float *bp, float *acc) {
    for (int k = 0; k < kc; k++) {
        const float *b = bp + (size_t)k * GEMM_NR;
        for (int r = 0; r < GEMM_MR; r++) {
            float a = ap[(size_t)r * kc + k];
            float *c = acc + r * GEMM_NR;
            for (int j = 0; j < GEMM_NR; j++) c[j] += a * b[j];
        }
    }
}

void mc_sgemm_ref(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc) {
    if (M <= 0 || N <= 0) return;

    // Scale C by beta first (beta == 0 overwrites, ignoring NaN in C).
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f) for (int j = 0; j < N; j++) c[j] *= beta;
    }
    if (K <= 0 || alpha == 0.0f) return;

    int n_mblocks = (M + GEMM_MC - 1) / GEMM_MC;
    #pragma omp parallel
    {
        float *bpack = mc_malloc((size_t)GEMM_KC * GEMM_NC * sizeof(float));
        float *apack = mc_malloc((size_t)GEMM_MC * GEMM_KC * sizeof(float));
        float acc[GEMM_MR * GEMM_NR];
        for (int jc = 0; jc < N; jc += GEMM_NC) {
            int nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
            int n_panels = (nc + GEMM_NR - 1) / GEMM_NR;
            for (int pc = 0; pc < K; pc += GEMM_KC) {
                int kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
                // Each thread packs its own copy of the B panel: simple, and
                // cheap next to the MC x NC x KC multiply that reuses it.
                for (int p = 0; p < n_panels; p++)
                    for (int k = 0; k < kc; k++)
                        for (int j = 0; j < GEMM_NR; j++) {
                            int jj = jc + p * GEMM_NR + j;
                            bpack[((size_t)p * kc + k) * GEMM_NR + j] =
                                jj < N ? OPB(pc + k, jj) : 0.0f;
                        }
                #pragma omp for schedule(static)
                for (int ib = 0; ib < n_mblocks; ib++) {
                    int ic = ib * GEMM_MC;
                    int mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
                    int n_rpanels = (mc + GEMM_MR - 1) / GEMM_MR;
                    // Pack A as MR-row panels, each [MR][kc], times alpha.
                    for (int rp = 0; rp < n_rpanels; rp++)
                        for (int r = 0; r < GEMM_MR; r++) {
                            int ii = ic + rp * GEMM_MR + r;
                            float *dst = apack + ((size_t)rp * GEMM_MR + r) * kc;
                            for (int k = 0; k < kc; k++)
                                dst[k] = ii < M ? alpha * OPA(ii, pc + k) : 0.0f;
                        }
                    for (int rp = 0; rp < n_rpanels; rp++)
                        for (int p = 0; p < n_panels; p++) {
                            memset(acc, 0, sizeof acc);
                            gemm_micro(kc, apack + (size_t)rp * GEMM_MR * kc,
                                       bpack + (size_t)p * kc * GEMM_NR, acc);
                            // Add the block into C, clipped at the edges.
                            for (int r = 0; r < GEMM_MR; r++) {
                                int ii = ic + rp * GEMM_MR + r;
                                if (ii >= M) break;
                                float *c = C + (size_t)ii * ldc + jc + p * GEMM_NR;
                                int nj = nc - p * GEMM_NR < GEMM_NR ? nc - p * GEMM_NR : GEMM_NR;
                                for (int j = 0; j < nj; j++) c[j] += acc[r * GEMM_NR + j];
                            }
                        }
                }
            }
        }
        mc_free(apack);
        mc_free(bpack);
    }
}

#ifdef MCLIP_BLAS
// Smallest block of a cut, in M N K (4x OpenBLAS's small-matrix bound), and
// smallest block length along the cut dimension.
#define GEMM_CUT_MNK 4e6
#define GEMM_CUT_MIN 16

static void blas_call(int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta,
                      float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
}
#endif

void mc_sgemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef MCLIP_BLAS
    if (K <= 0) {  // OpenBLAS needs K >= 1 for valid lda; do the beta part
        mc_sgemm_ref(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int nt = mc_threads();   // first use also makes OpenBLAS single-threaded
    int par = nt > 1;
#ifdef _OPENMP
    par = par && !omp_in_parallel();   // callers that split their own work
#endif

    // The cut: the longer of M and N in nb near-equal blocks, nb <= threads.
    double mnk = (double)M * N * K;
    int by_rows = M >= N, len = by_rows ? M : N;
    int nb = par ? nt : 1;
    if (nb > len / GEMM_CUT_MIN) nb = len / GEMM_CUT_MIN;
    if (nb > (int)(mnk / GEMM_CUT_MNK)) nb = (int)(mnk / GEMM_CUT_MNK);
    if (nb <= 1) {
        blas_call(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }

    // Block b: rows (or columns) [b len / nb, (b + 1) len / nb) of C, the
    // same rows of op(A) (or columns of op(B)).
    #pragma omp parallel for schedule(static) num_threads(nb)
    for (int b = 0; b < nb; b++) {
        int i0 = (int)((int64_t)b * len / nb), n = (int)((int64_t)(b + 1) * len / nb) - i0;
        if (by_rows)
            blas_call(transA, transB, n, N, K, alpha,
                      transA ? A + i0 : A + (size_t)i0 * lda, lda, B, ldb, beta,
                      C + (size_t)i0 * ldc, ldc);
        else
            blas_call(transA, transB, M, n, K, alpha, A, lda,
                      transB ? B + (size_t)i0 * ldb : B + i0, ldb, beta, C + i0, ldc);
    }
#else
    mc_sgemm_ref(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}
