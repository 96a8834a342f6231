// kernels.h - forward and backward kernels on raw float arrays, usable
// without the autograd tape (inference code calls them directly; the ag_*
// ops in autograd/ wrap them).
//
// Dims: R rows, D features (the last, contiguous dim), N images, C
// channels, HW pixels per channel map, B sequences, T tokens, NH heads,
// HS head size (C = NH HS).
//
// Conventions: outputs first, sizes last.  *_forward overwrite their
// outputs; *_backward ADD into every gradient buffer they are given, and a
// NULL gradient buffer is skipped (frozen input).  Work is split over
// independent rows (or channels, or (sequence, head) pairs) with OpenMP;
// every output element is computed by one thread in a fixed order, so the
// results are the same bit for bit for any thread count.  The hot loops run
// through the per-ISA table of simd.h.
//
// Usage sketch (compiled by tests/test_ops.c):
//
//     float x[2 * 5], y[2 * 5], mean[2], rstd[2];
//     ...
//     mc_layernorm_forward(y, mean, rstd, x, NULL, NULL, 2, 5, 1e-5f);
//     mc_gelu_forward(y, y, 10);
#ifndef MCLIP_KERNELS_H
#define MCLIP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// ---- GELU (exact erf form), elementwise ----

// out [n] = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); out may alias x.
void mc_gelu_forward(float *out, const float *x, int64_t n);
// dx [n] += dout (Phi(x) + x phi(x)).
void mc_gelu_backward(float *dx, const float *dout, const float *x, int64_t n);

// ---- LayerNorm over the last dim ----

// x [R, D] -> out [R, D] = (x - mean) rstd gamma + beta, rstd =
// 1 / sqrt(var + eps), biased var; mean, rstd [R] saved for the backward
// (either may be NULL when not needed); gamma, beta [D] or NULL.
void mc_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int64_t R, int64_t D,
                          float eps);
// dx [R, D], dgamma [D], dbeta [D] += gradients (each may be NULL) given
// dout [R, D], x, the saved mean and rstd [R] and gamma [D] (or NULL).
void mc_layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, int64_t R, int64_t D);

// ---- LayerNorm2d: NCHW, normalised over C at each pixel ----

// x [N, C, HW] -> out; mean, rstd [N, HW]; gamma, beta [C] or NULL.
void mc_layernorm2d_forward(float *out, float *mean, float *rstd, const float *x,
                            const float *gamma, const float *beta, int64_t N, int64_t C,
                            int64_t HW, float eps);
void mc_layernorm2d_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                             const float *x, const float *mean, const float *rstd,
                             const float *gamma, int64_t N, int64_t C, int64_t HW);

// ---- softmax family over the last dim ----

// out [R, D] = softmax(x [R, D]) per row (max subtracted first).
void mc_softmax_forward(float *out, const float *x, int64_t R, int64_t D);
// dx [R, D] += y (dout - rowsum(dout y)), y the forward output.
void mc_softmax_backward(float *dx, const float *dout, const float *y, int64_t R, int64_t D);
// out [R, D] = x - max - log(sum exp(x - max)) per row.
void mc_log_softmax_forward(float *out, const float *x, int64_t R, int64_t D);
// dx [R, D] += dout - exp(y) rowsum(dout), y the forward output.
void mc_log_softmax_backward(float *dx, const float *dout, const float *y, int64_t R,
                             int64_t D);

// ---- multi-head attention on packed q, k, v ----
//
// qkv [B, T, 3C]: q = channels [0, C), k = [C, 2C), v = [2C, 3C); head h
// uses channels h HS .. h HS + HS - 1 of each.  For every (b, h):
//   S = (q_h scale) k_h^T + mask     [T, T]   mask [T, T] or NULL, may be -inf
//   P = softmax(S) per row           [T, T]   saved in att [B, NH, T, Tp]
//   out_h = P v_h                    [T, HS]  written to out [B, T, C]
// A row of mask that is all -inf gives NaN (as in PyTorch).  att rows have
// stride Tp = T rounded up to 16 (entries T..Tp-1 are 0), so that every
// row is whole vectors.

// Floats of the saved probabilities att.
size_t mc_attention_att_floats(int B, int NH, int T);
// Floats of scratch the kernels need for nthreads threads (forward: q, k
// and score tiles; backward: also the transposed and gradient tiles).
size_t mc_attention_scratch_floats(int T, int HS, int nthreads, int backward);

// att may be NULL (inference): the probabilities then live in the scratch.
void mc_attention_forward(float *out, float *att, const float *qkv, const float *mask,
                          int B, int T, int C, int NH, float scale, float *scratch,
                          int nthreads);
// dqkv [B, T, 3C] += gradient given dout [B, T, C], qkv and the saved att.
//   dV = P^T dO,  dP = dO V^T,  dS = P (dP - rowsum(dP P)),
//   dQ = dS K scale,  dK = dS^T Q scale.
void mc_attention_backward(float *dqkv, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH, float scale,
                           float *scratch, int nthreads);

// ---- reductions ----

// Sum of x [n] in double: fixed blocks summed in parallel, then the block
// sums in order (same result for any thread count).
double mc_sum_f64(const float *x, int64_t n);

#endif
