// test_gradcheck_selftest.c - the finite-difference check can fail.
//
// Two local ops are built in correct and deliberately broken forms:
//   square:    y = x^2, whose broken backward drops the factor 2;
//   layernorm: y = (x - mean) rstd, whose broken backward drops the
//              - xhat mean(dy xhat) term (a subtle, plausible slip).
// gradcheck must report each broken form as a failure (its failure count
// is saved and restored around the call, so the expected failure does not
// fail this program) and pass each correct form.
#include <math.h>
#include <stdio.h>

#include "../autograd/autograd.h"
#include "util/check.h"
#include "util/gradcheck.h"

static const GcOptions GC = {.h = 1e-2, .atol = 2e-3, .rtol = 2e-3, .max_elems = 0};

// ---- square: y = x^2, dx = 2 x dy ----

static void square_backward_ok(AgNode *node) {
    Tensor *x = node->in[0], *y = node->out;
    for (int64_t i = 0; i < x->n; i++) x->grad[i] += 2.0f * x->data[i] * y->grad[i];
}

static void square_backward_broken(AgNode *node) {
    Tensor *x = node->in[0], *y = node->out;
    for (int64_t i = 0; i < x->n; i++) x->grad[i] += x->data[i] * y->grad[i];  // factor 2 lost
}

static Tensor *square(Graph *g, Tensor *x, AgBackwardFn bw) {
    Tensor *y = ag_tensor(g, x->ndim, x->shape);
    for (int64_t i = 0; i < x->n; i++) y->data[i] = x->data[i] * x->data[i];
    if (ag_needs_grad(g, &x, 1)) ag_record(g, "square", bw, y, &x, 1);
    return y;
}

static Tensor *build_square_ok(Graph *g, Tensor **in, void *ctx) {
    return square(g, in[0], square_backward_ok);
}
static Tensor *build_square_broken(Graph *g, Tensor **in, void *ctx) {
    return square(g, in[0], square_backward_broken);
}

// ---- layernorm rows without affine: y = (x - mean) rstd ----
//
// Correct: dx = rstd (dy - mean(dy) - xhat mean(dy xhat)).

static void ln_backward(AgNode *node, int broken) {
    Tensor *x = node->in[0], *y = node->out;
    int64_t D = x->shape[x->ndim - 1], R = x->n / D;
    const float *rstd = node->saved;
    for (int64_t r = 0; r < R; r++) {
        const float *dy = y->grad + r * D, *xh = y->data + r * D;
        double a = 0, b = 0;
        for (int64_t j = 0; j < D; j++) a += dy[j], b += (double)dy[j] * xh[j];
        a /= (double)D, b /= (double)D;
        if (broken) b = 0;  // the slip: forget that rstd depends on x
        for (int64_t j = 0; j < D; j++)
            x->grad[r * D + j] += rstd[r] * (float)(dy[j] - a - xh[j] * b);
    }
}

static void ln_backward_ok(AgNode *node) { ln_backward(node, 0); }
static void ln_backward_broken(AgNode *node) { ln_backward(node, 1); }

static Tensor *local_layernorm(Graph *g, Tensor *x, AgBackwardFn bw) {
    int64_t D = x->shape[x->ndim - 1], R = x->n / D;
    Tensor *y = ag_tensor(g, x->ndim, x->shape);
    float *rstd = arena_alloc(&g->arena, (size_t)R * sizeof(float));
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * D;
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += xr[j];
        m /= (double)D;
        for (int64_t j = 0; j < D; j++) v += (xr[j] - m) * (xr[j] - m);
        rstd[r] = (float)(1.0 / sqrt(v / (double)D + 1e-5));
        for (int64_t j = 0; j < D; j++) y->data[r * D + j] = (float)((xr[j] - m) * rstd[r]);
    }
    if (ag_needs_grad(g, &x, 1)) ag_record(g, "local_layernorm", bw, y, &x, 1)->saved = rstd;
    return y;
}

static Tensor *build_ln_ok(Graph *g, Tensor **in, void *ctx) {
    return local_layernorm(g, in[0], ln_backward_ok);
}
static Tensor *build_ln_broken(Graph *g, Tensor **in, void *ctx) {
    return local_layernorm(g, in[0], ln_backward_broken);
}

// gradcheck on a known-broken op: returns its verdict without letting the
// expected failure count against this program.
static int gradcheck_expect_fail(const char *name, GcBuild f, Tensor *x) {
    int saved = test_failures;
    int ok = gradcheck(name, f, NULL, &x, 1, GC);
    int reported = test_failures - saved;
    test_failures = saved;
    CHECK(!ok && reported > 0, "gradcheck did not report the broken backward of %s", name);
    printf("%s: gradcheck %s the deliberate error (as it must)\n", name,
           ok ? "MISSED" : "caught");
    return ok;
}

int main(void) {
    test_seed(5);
    Tensor *x = tensor_new(MC_DIMS(3, 7));
    test_fill_normal(x->data, (size_t)x->n, 1.0);
    for (int64_t i = 0; i < x->n; i++) x->data[i] += 0.5f;  // keep d(x^2) visibly non-zero
    tensor_require_grad(x);

    CHECK(gradcheck("square (correct)", build_square_ok, NULL, &x, 1, GC),
          "correct square backward failed gradcheck");
    gradcheck_expect_fail("square (broken: factor 2 dropped)", build_square_broken, x);

    CHECK(gradcheck("layernorm (correct)", build_ln_ok, NULL, &x, 1, GC),
          "correct layernorm backward failed gradcheck");
    gradcheck_expect_fail("layernorm (broken: xhat term dropped)", build_ln_broken, x);

    tensor_free(x);
    return test_finish("test_gradcheck_selftest");
}
