// bench_gemm.c - GFLOP/s of ag_linear at the text-tower shapes, beside a
// raw sgemm of the same shape.
//
// Dims: R = 7854 rows (102 prompts x 77 tokens, one CoOp text batch), K in
// features, N out features; (K, N) in {(512, 512), (512, 2048), (2048, 512)}
// = attention projection, MLP c_fc, MLP c_proj of the 512-wide text tower.
//   linear_fwd   y [R,N] = x [R,K] W [N,K]^T + b   (ag_linear, tape off)
//   raw_fwd      the same product by one sgemm call (NoTrans, Trans, beta 0)
//   linear_bwdx  dx [R,K] += dy [R,N] W [N,K]      (the recorded backward of
//                ag_linear with W and b frozen: exactly one GEMM)
//   raw_bwdx     the same product by one sgemm call (beta 1)
// "raw" is one cblas_sgemm call with OpenBLAS's own pool at the same thread
// count when built with BLAS (the library itself keeps OpenBLAS at one
// thread and splits C over its OpenMP threads, tensor/gemm.c), else
// mc_sgemm (plain C).
// FLOPs = 2 R K N.  Each case is validated against the raw result first,
// then run once to warm up and `reps` times; median and min are printed.
//
// Usage: bench_gemm [--threads T] [--clock wall|cpu] [--reps N] [--rows R]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MCLIP_BLAS
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
#endif

#include "../autograd/autograd.h"
#include "bench_util.h"

// One sgemm straight into the BLAS (or the plain-C kernel without BLAS).
static void raw_sgemm(int transB, int M, int N, int K, const float *A, const float *B,
                      int ldb, float beta, float *C) {
#ifdef MCLIP_BLAS
    openblas_set_num_threads(mc_threads());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                1.0f, A, K, B, ldb, beta, C, N);
    openblas_set_num_threads(1);   // back to the library's setting
#else
    mc_sgemm(0, transB, M, N, K, 1.0f, A, K, B, ldb, beta, C, N);
#endif
}

static void fill(float *p, size_t n, unsigned seed) {
    // Uniform in [-1, 1) from a small LCG: values only need to be finite.
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

// Largest |a - b| relative to max |b|.
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m > 0 ? m : 1);
}

// Print one result line; returns the median time.
static double report(const char *name, int K, int N, double *t, int reps, double flops) {
    double med, min;
    bench_stats(t, reps, &med, &min);
    printf("gemm  %-12s %4dx%-5d %9.3f %9.3f %8.1f\n", name, K, N, med * 1e3, min * 1e3,
           flops / med * 1e-9);
    fflush(stdout);
    return med;
}

// Time fwd and bwdx of one (K, N) shape; returns 0 when validation passed.
static int bench_shape(int R, int K, int N, int reps, double ratio[2]) {
    Graph *g = ag_graph_new((size_t)R * N * sizeof(float) * 2 + (1 << 20));
    Tensor *x = tensor_new(MC_DIMS(R, K)), *w = tensor_new(MC_DIMS(N, K));
    Tensor *b = tensor_new(MC_DIMS(N));
    float *dy = mc_malloc((size_t)R * N * sizeof(float));
    float *ref = mc_malloc((size_t)R * (N > K ? N : K) * sizeof(float));
    fill(x->data, (size_t)x->n, 1), fill(w->data, (size_t)w->n, 2);
    fill(b->data, (size_t)b->n, 3), fill(dy, (size_t)R * N, 4);
    double flops = 2.0 * R * K * N, *t = mc_malloc((size_t)reps * sizeof(double));
    double *t2s = mc_malloc((size_t)reps * sizeof(double));
    double med[4];
    int ok = 1;

    // Validate the forward: ag_linear == raw product + bias.
    g->grad_enabled = 0;
    Tensor *y = ag_linear(g, x, w, b);
    raw_sgemm(1, R, N, K, x->data, w->data, K, 0.0f, ref);
    for (int r = 0; r < R; r++)
        for (int j = 0; j < N; j++) ref[(size_t)r * N + j] += b->data[j];
    double e = max_rel_diff(y->data, ref, (size_t)R * N);
    if (e > 1e-5) ok = 0, fprintf(stderr, "linear_fwd %dx%d differs from sgemm: %.2e\n", K, N, e);

    // linear_fwd (the op as the text tower calls it, fresh arena output)
    // and raw_fwd (one sgemm) alternate, first one then the other, so a
    // change in machine load or cache state hits both alike.
    for (int i = -1; i < reps; i++) {
        double ta = 0, tb = 0;
        for (int k = 0; k < 2; k++) {
            double t0 = bench_now();
            if ((i + k) % 2 == 0) {
                ag_graph_reset(g);
                ag_linear(g, x, w, b);
                ta = bench_now() - t0;
            } else {
                raw_sgemm(1, R, N, K, x->data, w->data, K, 0.0f, ref);
                tb = bench_now() - t0;
            }
        }
        if (i >= 0) t[i] = ta, t2s[i] = tb;
    }
    med[0] = report("linear_fwd", K, N, t, reps, flops);
    med[1] = report("raw_fwd", K, N, t2s, reps, flops);

    // linear_bwdx: record with x trainable, W and b frozen, then time the
    // node's backward (d x += d y W, one GEMM; d W is never computed).
    ag_graph_reset(g);
    g->grad_enabled = 1;
    tensor_require_grad(x);
    y = ag_linear(g, x, w, b);
    memcpy(y->grad, dy, (size_t)R * N * sizeof(float));
    AgNode *node = g->tape;
    float *acc = mc_malloc((size_t)R * K * sizeof(float));
    memset(acc, 0, (size_t)R * K * sizeof(float));
    // linear_bwdx and raw_bwdx (one accumulating sgemm) alternate likewise.
    for (int i = -1; i < reps; i++) {
        double ta = 0, tb = 0;
        for (int k = 0; k < 2; k++) {
            double t0 = bench_now();
            if ((i + k) % 2 == 0) {
                node->backward(node);
                ta = bench_now() - t0;
            } else {
                raw_sgemm(0, R, K, N, dy, w->data, K, 1.0f, acc);
                tb = bench_now() - t0;
            }
        }
        if (i >= 0) t[i] = ta, t2s[i] = tb;
    }
    med[2] = report("linear_bwdx", K, N, t, reps, flops);
    med[3] = report("raw_bwdx", K, N, t2s, reps, flops);
    // Validate: after reps+1 accumulations dx = (reps+1) dy W.
    raw_sgemm(0, R, K, N, dy, w->data, K, 0.0f, ref);
    for (size_t i = 0; i < (size_t)R * K; i++) ref[i] *= (float)(reps + 1);
    e = max_rel_diff(x->grad, ref, (size_t)R * K);
    if (e > 1e-5) ok = 0, fprintf(stderr, "linear_bwdx %dx%d differs from sgemm: %.2e\n", K, N, e);
    mc_free(acc);

    ratio[0] = med[1] / med[0];
    ratio[1] = med[3] / med[2];
    mc_free(t), mc_free(t2s), mc_free(dy), mc_free(ref);
    tensor_free(x), tensor_free(w), tensor_free(b);
    ag_graph_free(g);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    int reps = 9, R = 7854;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) mc_set_threads(atoi(argv[++i]));
        else if (bench_clock_arg(argc, argv, &i)) continue;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) R = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T] [--clock wall|cpu] [--reps N] [--rows R]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    bench_banner("bench_gemm: ag_linear vs raw sgemm, text-tower shapes");
    printf("# rows R = %d, reps %d after 1 warm-up; raw = %s\n", R, reps,
           mc_blas_enabled() ? "one cblas_sgemm, OpenBLAS threads = threads"
                             : "mc_sgemm (plain C)");
    printf("# kind  name         KxN         median_ms    min_ms  GFLOP/s(median)\n");

    const int shapes[3][2] = {{512, 512}, {512, 2048}, {2048, 512}};
    double ratio[3][2];
    int fail = 0;
    for (int s = 0; s < 3; s++)
        fail |= bench_shape(R, shapes[s][0], shapes[s][1], reps, ratio[s]);

    // Target: the op reaches >= 90% of the raw sgemm (median times).
    for (int s = 0; s < 3; s++)
        printf("# %4dx%-5d linear_fwd at %5.1f%% of raw, linear_bwdx at %5.1f%% of raw\n",
               shapes[s][0], shapes[s][1], 100 * ratio[s][0], 100 * ratio[s][1]);
    if (fail) fprintf(stderr, "bench_gemm: validation failed\n");
    return fail ? 1 : 0;
}
