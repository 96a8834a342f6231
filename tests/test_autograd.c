// test_autograd.c - the tape itself: recording, accumulation, frozen inputs,
// and finite-difference checks of the linear-algebra ops.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../autograd/autograd.h"
#include "util/check.h"
#include "util/gradcheck.h"

static Tensor *leaf(int ndim, const int64_t *shape, int grad) {
    Tensor *t = tensor_new(ndim, shape);
    test_fill_normal(t->data, (size_t)t->n, 1.0);
    if (grad) tensor_require_grad(t);
    return t;
}

static Tensor *build_linear(Graph *g, Tensor **in, void *ctx) {
    return ag_linear(g, in[0], in[1], in[2]);
}

static Tensor *build_matmul(Graph *g, Tensor **in, void *ctx) {
    return ag_matmul(g, in[0], in[1]);
}

// Frozen weights: no gradient buffer appears and none is written.
static void test_frozen(void) {
    Graph *g = ag_graph_new(1 << 16);
    Tensor *x = leaf(MC_DIMS(3, 5), 1), *w = leaf(MC_DIMS(4, 5), 0);
    Tensor *y = ag_linear(g, x, w, NULL);
    float seed[12];
    for (int i = 0; i < 12; i++) seed[i] = 1.0f;
    ag_backward_seed(g, y, seed);
    CHECK(w->grad == NULL, "frozen weight got a gradient buffer");
    // d x = ones @ w: column sums of w
    for (int k = 0; k < 5; k++) {
        float s = 0;
        for (int o = 0; o < 4; o++) s += w->data[o * 5 + k];
        CHECK(fabsf(x->grad[k] - s) < 1e-5f, "dx[%d] = %g, want %g", k, x->grad[k], s);
    }
    // A second backward accumulates (gradients add; zeroing is explicit).
    float before = x->grad[0];
    ag_graph_reset(g);
    y = ag_linear(g, x, w, NULL);
    ag_backward_seed(g, y, seed);
    CHECK(fabsf(x->grad[0] - 2 * before) < 1e-5f, "gradients did not accumulate");
    tensor_zero_grad(x);
    CHECK(x->grad[0] == 0.0f, "zero_grad left %g", x->grad[0]);
    // With recording off, nothing is taped.
    ag_graph_reset(g);
    g->grad_enabled = 0;
    y = ag_linear(g, x, w, NULL);
    CHECK(g->n_nodes == 0 && !y->requires_grad, "inference mode recorded a node");
    tensor_free(x), tensor_free(w);
    ag_graph_free(g);
}

// The arena reaches a steady state: a second identical step mallocs nothing.
static void test_arena_steady(void) {
    Graph *g = ag_graph_new(4096);
    Tensor *x = leaf(MC_DIMS(33, 17), 1), *w = leaf(MC_DIMS(19, 17), 1);
    size_t mallocs[3];
    for (int step = 0; step < 3; step++) {
        ag_graph_reset(g);
        Tensor *y = ag_linear(g, x, w, NULL);
        float *seed = arena_alloc(&g->arena, (size_t)y->n * sizeof(float));
        for (int64_t i = 0; i < y->n; i++) seed[i] = 1.0f;
        ag_backward_seed(g, y, seed);
        mallocs[step] = g->arena.n_mallocs;
    }
    CHECK(mallocs[2] == mallocs[1], "arena allocated again in a steady step (%zu -> %zu)",
          mallocs[1], mallocs[2]);
    tensor_free(x), tensor_free(w);
    ag_graph_free(g);
}

int main(void) {
    test_seed(1);
    GcOptions opt = {.h = 1e-2, .atol = 2e-3, .rtol = 2e-3, .max_elems = 0};

    // Odd shapes, not multiples of any SIMD width.
    Tensor *x = leaf(MC_DIMS(2, 3, 7), 1), *w = leaf(MC_DIMS(5, 7), 1), *b = leaf(MC_DIMS(5), 1);
    gradcheck("linear", build_linear, NULL, (Tensor *[]){x, w, b}, 3, opt);
    Tensor *in2[3] = {x, w, NULL};
    (void)in2;
    Tensor *m = leaf(MC_DIMS(7, 9), 1);
    gradcheck("matmul", build_matmul, NULL, (Tensor *[]){x, m}, 2, opt);
    tensor_free(x), tensor_free(w), tensor_free(b), tensor_free(m);

    test_frozen();
    test_arena_steady();
    return test_finish("test_autograd");
}
