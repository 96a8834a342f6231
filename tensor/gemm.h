// gemm.h - single-precision matrix multiply, OpenBLAS or plain C.
//
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]
//
// Row-major throughout.  op(A) = A when transA == 0 (A is [M,K], row stride
// lda), A^T when transA == 1 (A is stored [K,M], row stride lda); same for B.
// With beta == 0, C is overwritten and may hold garbage (NaN) on entry.
//
// mc_sgemm calls cblas_sgemm when built with BLAS=1 (the default) and the
// plain-C blocked kernel mc_sgemm_ref otherwise; mc_sgemm_ref is always
// compiled so tests can compare the two paths in one binary.
#ifndef MCLIP_GEMM_H
#define MCLIP_GEMM_H

void mc_sgemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc);

void mc_sgemm_ref(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc);

// 1 when mc_sgemm uses OpenBLAS.
int mc_blas_enabled(void);

#endif
