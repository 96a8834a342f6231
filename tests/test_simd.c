// test_simd.c - every SIMD kernel table against the scalar one, on odd
// lengths (1, 3, 7, 17, 31, 33, 515, ...) so vector bodies and scalar tails
// both run; the vector exp/erfc approximations against double references;
// and the ISA selection (MCLIP_ISA, mc_isa_set).
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tensor/simd.h"
#include "../tensor/tensor.h"
#include "util/check.h"

static const int64_t lengths[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 77, 515, 2049};
#define N_LENGTHS (int)(sizeof lengths / sizeof lengths[0])
#define MAXLEN 2049

static float buf_x[MAXLEN], buf_y[MAXLEN], buf_g[MAXLEN], buf_b[MAXLEN];
static float out_s[MAXLEN], out_v[MAXLEN];

// MCLIP_ISA is read on first use: a child process sets it before any call.
static void test_env_override(void) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("MCLIP_ISA", "scalar", 1);
        _exit(strcmp(mc_isa_name(), "scalar") == 0 ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "MCLIP_ISA=scalar did not select scalar");
    printf("MCLIP_ISA=scalar selects the scalar table: %s\n",
           WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "ok" : "FAIL");
}

// What this build and CPU must offer.
static void test_selection(void) {
    printf("active ISA: %s\n", mc_isa_name());
    CHECK(mc_isa_lookup("scalar") != NULL, "the scalar table is always available");
#if defined(MC_HAVE_ISA_avx2) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(mc_isa_lookup("avx2") != NULL, "avx2 compiled and supported but not offered");
#endif
#if defined(MC_HAVE_ISA_avx512) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        CHECK(strcmp(mc_isa_name(), "avx512") == 0 || getenv("MCLIP_ISA"),
              "default should be avx512 on this CPU, is %s", mc_isa_name());
#endif
    const char *before = mc_isa_name();
    CHECK(mc_isa_set("no-such-isa") == -1, "unknown ISA accepted");
    CHECK(strcmp(mc_isa_name(), before) == 0, "failed mc_isa_set changed the active ISA");
    CHECK(mc_isa_set("scalar") == 0 && strcmp(mc_isa_name(), "scalar") == 0,
          "mc_isa_set(scalar) failed");
    CHECK(mc_isa_set(before) == 0, "could not restore %s", before);
}

// Inputs: normal values, with a spread of magnitudes in x.
static void fill_inputs(int64_t n) {
    test_fill_normal(buf_x, (size_t)n, 2.0);
    test_fill_normal(buf_y, (size_t)n, 1.0);
    test_fill_normal(buf_g, (size_t)n, 1.0);
    test_fill_normal(buf_b, (size_t)n, 1.0);
}

// One ISA against scalar on every length.
static void compare_tables(const McIsa *v, const McIsa *s) {
    char name[96];
    double worst_dot = 0;
    for (int li = 0; li < N_LENGTHS; li++) {
        int64_t n = lengths[li];
        fill_inputs(n);

        // dot: reordered float sums; bound relative to sum |a b|, observed
        // <= 8e-8 of it.
        double mag = 0;
        for (int64_t i = 0; i < n; i++) mag += fabs((double)buf_x[i] * buf_y[i]);
        double dd = fabs((double)v->dot(buf_x, buf_y, n) - s->dot(buf_x, buf_y, n));
        worst_dot = fmax(worst_dot, dd / mag);
        CHECK(dd <= 2e-6 * mag, "%s dot n=%lld: diff %.3g of sum|ab| %.3g", v->name,
              (long long)n, dd, mag);

        // axpy: one rounding (fused) against two; observed max|d| 4.8e-7
        // on values ~|5|.
        memcpy(out_s, buf_b, (size_t)n * 4), memcpy(out_v, buf_b, (size_t)n * 4);
        s->axpy(out_s, 0.37f, buf_x, n), v->axpy(out_v, 0.37f, buf_x, n);
        snprintf(name, sizeof name, "%s axpy n=%lld", v->name, (long long)n);
        test_close(name, out_v, out_s, (size_t)n, 1e-6, 1e-6);

        // GELU: polynomial erfc vs erfcf; observed max|d| 2.4e-7 (forward,
        // |x| up to ~8) and 4.8e-7 (backward, on values ~|5|).
        s->gelu_forward(out_s, buf_x, n), v->gelu_forward(out_v, buf_x, n);
        snprintf(name, sizeof name, "%s gelu_forward n=%lld", v->name, (long long)n);
        test_close(name, out_v, out_s, (size_t)n, 3e-7, 1e-6);
        memcpy(out_s, buf_b, (size_t)n * 4), memcpy(out_v, buf_b, (size_t)n * 4);
        s->gelu_backward(out_s, buf_y, buf_x, n), v->gelu_backward(out_v, buf_y, buf_x, n);
        snprintf(name, sizeof name, "%s gelu_backward n=%lld", v->name, (long long)n);
        test_close(name, out_v, out_s, (size_t)n, 1e-6, 1e-6);

        // LayerNorm row: reordered sums for mean/var; relative to the row's
        // max |value|, observed <= 3.8e-7.
        float ms, rs, mv, rv;
        for (int aff = 0; aff < 2; aff++) {
            const float *gm = aff ? buf_g : NULL, *bt = aff ? buf_b : NULL;
            s->layernorm_row_forward(out_s, &ms, &rs, buf_x, gm, bt, n, 1e-5f);
            v->layernorm_row_forward(out_v, &mv, &rv, buf_x, gm, bt, n, 1e-5f);
            snprintf(name, sizeof name, "%s layernorm_row%s n=%lld", v->name,
                     aff ? "" : " (no affine)", (long long)n);
            test_close_absmax(name, out_v, out_s, (size_t)n, 2e-6);
            CHECK(fabsf(ms - mv) <= 1e-6f * (1 + fabsf(ms)) && fabsf(rs - rv) <= 1e-5f * rs,
                  "%s layernorm stats n=%lld: mean %g/%g rstd %g/%g", v->name, (long long)n,
                  ms, mv, rs, rv);
            memcpy(out_s, buf_b, (size_t)n * 4), memcpy(out_v, buf_b, (size_t)n * 4);
            s->layernorm_row_backward(out_s, buf_y, buf_x, gm, ms, rs, n);
            v->layernorm_row_backward(out_v, buf_y, buf_x, gm, ms, rs, n);
            snprintf(name, sizeof name, "%s layernorm_row_backward%s n=%lld", v->name,
                     aff ? "" : " (no affine)", (long long)n);
            test_close_absmax(name, out_v, out_s, (size_t)n, 2e-6);
        }

        // LayerNorm parameter-gradient terms: one rounding (fused) against
        // two per element; observed max|d| ~5e-7 on values ~|5|.
        {
            float sgs[MAXLEN], sbs[MAXLEN], sgv[MAXLEN], sbv[MAXLEN];
            memcpy(sgs, buf_b, (size_t)n * 4), memcpy(sgv, buf_b, (size_t)n * 4);
            memcpy(sbs, buf_g, (size_t)n * 4), memcpy(sbv, buf_g, (size_t)n * 4);
            s->layernorm_row_param_grads(sgs, sbs, buf_y, buf_x, 0.3f, 1.7f, n);
            v->layernorm_row_param_grads(sgv, sbv, buf_y, buf_x, 0.3f, 1.7f, n);
            snprintf(name, sizeof name, "%s layernorm_param_grads g n=%lld", v->name,
                     (long long)n);
            test_close(name, sgv, sgs, (size_t)n, 1e-6, 1e-6);
            snprintf(name, sizeof name, "%s layernorm_param_grads b n=%lld", v->name,
                     (long long)n);
            test_close(name, sbv, sbs, (size_t)n, 0, 0);
        }

        // Softmax row, with some -inf entries (masked) that must give 0;
        // observed rel <= 1.1e-6 (on probabilities ~1e-6), max|d| 1.2e-7.
        float xs[MAXLEN];
        memcpy(xs, buf_x, (size_t)n * 4);
        for (int64_t i = 1; i < n; i += 3) xs[i] = -INFINITY;
        s->softmax_row(out_s, xs, n), v->softmax_row(out_v, xs, n);
        snprintf(name, sizeof name, "%s softmax_row n=%lld", v->name, (long long)n);
        test_close(name, out_v, out_s, (size_t)n, 1e-8, 2e-6);
        int zeros_ok = 1;
        for (int64_t i = 1; i < n; i += 3) zeros_ok &= out_v[i] == 0.0f && out_s[i] == 0.0f;
        CHECK(zeros_ok, "%s softmax: -inf entries must give exactly 0", v->name);
        float ys[MAXLEN];
        memcpy(ys, out_s, (size_t)n * 4);
        memcpy(out_s, buf_b, (size_t)n * 4), memcpy(out_v, buf_b, (size_t)n * 4);
        s->softmax_row_backward(out_s, buf_y, ys, n), v->softmax_row_backward(out_v, buf_y, ys, n);
        snprintf(name, sizeof name, "%s softmax_row_backward n=%lld", v->name, (long long)n);
        test_close(name, out_v, out_s, (size_t)n, 1e-6, 1e-6);
    }
    printf("%s dot: worst diff / sum|ab| = %.2e\n", v->name, worst_dot);

    // Small matrix products on odd sizes with row strides wider than the
    // rows, plain and transposed A, both modes.  K-term float sums in
    // another order: relative to sum_k |a b|, observed <= 2.3e-7.
    static const int dims[][3] = {{1, 1, 1}, {3, 7, 5}, {5, 17, 3}, {7, 33, 9},
                                  {13, 80, 64}, {77, 77, 31}, {4, 16, 1}, {6, 31, 77}};
    static float A[96 * 100], B[96 * 100], Cs[96 * 100], Cv[96 * 100], Mag[96 * 100];
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int M = dims[d][0], N = dims[d][1], K = dims[d][2];
        int ldb = N + 5, ldc = N + 2;
        test_fill_normal(B, (size_t)K * ldb, 1.0);
        for (int mode = 0; mode < 4; mode++) {
            int ta = mode >> 1, acc = mode & 1;
            // A is [M, K] (lda = K + 3) or, transposed, [K, M] (lda = M + 3).
            int lda = ta ? M + 3 : K + 3;
            test_fill_normal(A, (size_t)(ta ? K : M) * lda, 1.0);
            test_fill_normal(Cs, (size_t)M * ldc, 1.0);
            memcpy(Cv, Cs, sizeof(float) * (size_t)M * ldc);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double m = acc ? fabs(Cs[i * ldc + j]) : 0;
                    for (int k = 0; k < K; k++) {
                        float a = ta ? A[k * lda + i] : A[i * lda + k];
                        m += fabs((double)a * B[k * ldb + j]);
                    }
                    Mag[i * N + j] = (float)m;
                }
            s->gemm_small(ta, M, N, K, A, lda, B, ldb, Cs, ldc, acc);
            v->gemm_small(ta, M, N, K, A, lda, B, ldb, Cv, ldc, acc);
            int bad = 0;
            double worst = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double e = fabs((double)Cv[i * ldc + j] - Cs[i * ldc + j]) / Mag[i * N + j];
                    worst = fmax(worst, e);
                    bad += !(e <= 1e-6);
                }
            // Padding columns between N and ldc must be left alone.
            for (int i = 0; i < M; i++)
                for (int j = N; j < ldc; j++) bad += Cv[i * ldc + j] != Cs[i * ldc + j];
            CHECK(bad == 0, "%s gemm_small %dx%dx%d transA=%d acc=%d: %d bad, worst %.2e",
                  v->name, M, N, K, ta, acc, bad, worst);
            printf("%s gemm_small %2dx%2dx%2d transA=%d acc=%d worst rel %.2e %s\n", v->name,
                   M, N, K, ta, acc, worst, bad ? "FAIL" : "ok");
        }
    }
}

// The active table's GELU and softmax against double references over a
// dense grid, to state the accuracy of the approximations.
static void test_accuracy(const McIsa *t) {
    enum { NG = 4001 };
    static float x[NG], y[NG], d[NG], ones[NG];
    double worst_rel = 0, worst_phi = 0, worst_d = 0;
    for (int i = 0; i < NG; i++) x[i] = -10.0f + 20.0f * (float)i / (NG - 1), ones[i] = 1.0f;
    t->gelu_forward(y, x, NG);
    memset(d, 0, sizeof d);
    t->gelu_backward(d, ones, x, NG);
    for (int i = 0; i < NG; i++) {
        double xd = x[i], phi = 0.5 * erfc(-xd / sqrt(2.0));
        double pdf = exp(-0.5 * xd * xd) / sqrt(2 * 3.14159265358979323846);
        double ref = xd * phi, dref = phi + xd * pdf;
        double e = fabs(y[i] - ref);
        // Absolute error of Phi = gelu / x, and relative error of gelu
        // where Phi >= 1e-3 (further out the float rounding of x / sqrt 2
        // alone gives ~x^2 6e-8 relative error in any erfc).
        if (xd != 0) worst_phi = fmax(worst_phi, e / fabs(xd));
        if (phi >= 1e-3 && ref != 0) worst_rel = fmax(worst_rel, e / fabs(ref));
        worst_d = fmax(worst_d, fabs(d[i] - dref));
    }
    // Observed: Phi abs 1.2e-7 (vector), 8e-8 (scalar erfcf); gelu rel
    // 1.0e-6 (vector), 6.8e-7 (scalar), both near x = -3; derivative abs
    // 1.5e-7.
    printf("%s gelu vs double on [-10, 10]: Phi max|d| %.2e, gelu max rel %.2e, "
           "gelu' max|d| %.2e\n", t->name, worst_phi, worst_rel, worst_d);
    CHECK(worst_phi <= 5e-7 && worst_rel <= 2.5e-6 && worst_d <= 1e-6,
          "%s gelu accuracy: Phi %.2e rel %.2e d %.2e", t->name, worst_phi, worst_rel, worst_d);

    // Softmax exponentials over a wide range (down to exp(-87)).
    enum { NS = 64 };
    float xs[NS], ps[NS];
    double z = 0, worst = 0;
    for (int i = 0; i < NS; i++) xs[i] = -87.0f * (float)i / (NS - 1);
    t->softmax_row(ps, xs, NS);
    for (int i = 0; i < NS; i++) z += exp((double)xs[i]);
    for (int i = 0; i < NS; i++) {
        double ref = exp((double)xs[i]) / z;
        worst = fmax(worst, fabs(ps[i] - ref) / ref);
    }
    // exp reduction + degree-7 polynomial: observed 1.1e-7 relative
    // (scalar expf 1.4e-7).
    printf("%s softmax exp over [-87, 0]: max rel %.2e\n", t->name, worst);
    CHECK(worst <= 1e-6, "%s softmax relative error %.2e", t->name, worst);
}

int main(void) {
    test_seed(3);
    test_env_override();
    test_selection();

    // Usage sketch from simd.h.
    {
        const McIsa *k = mc_isa();
        float y[3], x[3] = {-1.0f, 0.0f, 2.0f};
        k->gelu_forward(y, x, 3);
        CHECK(fabsf(y[2] - 1.9544997f) < 1e-6f && y[1] == 0.0f, "gelu sketch: %g %g", y[1], y[2]);
    }

    const McIsa *scalar = mc_isa_lookup("scalar");
    const char *vec_names[] = {"avx2", "avx512", "neon"};
    int n_vec = 0;
    test_accuracy(scalar);
    for (int i = 0; i < 3; i++) {
        const McIsa *v = mc_isa_lookup(vec_names[i]);
        if (!v) {
            printf("%s: not compiled in or not supported by this CPU, not compared\n",
                   vec_names[i]);
            continue;
        }
        n_vec++;
        compare_tables(v, scalar);
        test_accuracy(v);
    }
    printf("compared %d vector table(s) with scalar\n", n_vec);
#ifndef MC_SIMD_SCALAR
#if defined(__x86_64__) || defined(__aarch64__)
    // A vector build on these targets must have compared something.
    CHECK(n_vec > 0, "no vector ISA table available on this x86-64/aarch64 build");
#endif
#endif
    return test_finish("test_simd");
}
