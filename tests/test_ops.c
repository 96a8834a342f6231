// test_ops.c - every autograd op outside linalg and conv: forward against
// straightforward double-precision references written here, backward by
// finite differences (tests/util/gradcheck.h) on odd shapes, and
// bit-identical results for 1 and 2 threads.
//
// Gradcheck tolerances: L = sum r_i out_i in double from a float forward,
// central differences with h = 1e-2: float rounding of L contributes about
// 6e-8 sum|r out| / 2h (~1e-4 for these sizes) and the h^2 term about
// f''' h^2 / 6 (~2e-5), so atol = rtol = 2e-3 has a wide margin (observed
// worst errors are printed per input, mostly 1e-5 .. 3e-4).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../autograd/autograd.h"
#include "../tensor/kernels.h"
#include "../tensor/simd.h"
#include "util/check.h"
#include "util/gradcheck.h"

static const GcOptions GC = {.h = 1e-2, .atol = 2e-3, .rtol = 2e-3, .max_elems = 0};

// ---- leaves (freed at the end so the sanitizer sees no leak) ----

#define MAX_LEAVES 256
static Tensor *leaves[MAX_LEAVES];
static int n_leaves;

static Tensor *leaf(int grad, double std, int ndim, const int64_t *shape) {
    Tensor *t = tensor_new(ndim, shape);
    test_fill_normal(t->data, (size_t)t->n, std);
    if (grad) tensor_require_grad(t);
    MC_CHECK(n_leaves < MAX_LEAVES, "test: too many leaves");
    leaves[n_leaves++] = t;
    return t;
}

static void free_leaves(void) {
    for (int i = 0; i < n_leaves; i++) tensor_free(leaves[i]);
    n_leaves = 0;
}

// Keep |x| >= lo (off the kinks of relu, away from 0 for others).
static void push_off_zero(Tensor *t, float lo) {
    for (int64_t i = 0; i < t->n; i++)
        if (fabsf(t->data[i]) < lo) t->data[i] = t->data[i] < 0 ? -lo : lo;
}

static double fsq(double x) { return x * x; }

// ---- build functions for gradcheck ----

typedef struct {
    int64_t i[8];       // integer parameters
    float f[4];         // float parameters
    const int32_t *idx; // rows / labels
    Tensor *mask;       // attention mask
} Ctx;

enum { OP_ADD, OP_SUB, OP_MUL };

static Tensor *b_binary(Graph *g, Tensor **in, void *ctx) {
    int k = (int)((Ctx *)ctx)->i[0];
    return k == OP_ADD ? ag_add(g, in[0], in[1]) : k == OP_SUB ? ag_sub(g, in[0], in[1])
                                                               : ag_mul(g, in[0], in[1]);
}
static Tensor *b_scale(Graph *g, Tensor **in, void *ctx) {
    return ag_scale(g, in[0], ((Ctx *)ctx)->f[0]);
}
static Tensor *b_gelu(Graph *g, Tensor **in, void *ctx) { return ag_gelu(g, in[0]); }
static Tensor *b_sigmoid(Graph *g, Tensor **in, void *ctx) { return ag_sigmoid(g, in[0]); }
static Tensor *b_relu(Graph *g, Tensor **in, void *ctx) { return ag_relu(g, in[0]); }
static Tensor *b_exp(Graph *g, Tensor **in, void *ctx) { return ag_exp(g, in[0]); }
static Tensor *b_sum(Graph *g, Tensor **in, void *ctx) { return ag_sum(g, in[0]); }
static Tensor *b_mean(Graph *g, Tensor **in, void *ctx) { return ag_mean(g, in[0]); }

// reshape [3, 10] -> [5, 6] then times a constant, so the gradient through
// the view is not all ones.
static Tensor *b_reshape(Graph *g, Tensor **in, void *ctx) {
    return ag_mul(g, ag_reshape(g, in[0], MC_DIMS(5, 6)), in[1]);
}
static Tensor *b_permute(Graph *g, Tensor **in, void *ctx) {
    const int64_t *p = ((Ctx *)ctx)->i;
    return ag_permute(g, in[0], (int)p[0], (int)p[1], (int)p[2], (int)p[3]);
}
static Tensor *b_concat(Graph *g, Tensor **in, void *ctx) {
    return ag_concat(g, in[0], in[1], (int)((Ctx *)ctx)->i[0]);
}
static Tensor *b_slice(Graph *g, Tensor **in, void *ctx) {
    const int64_t *p = ((Ctx *)ctx)->i;
    return ag_slice(g, in[0], (int)p[0], p[1], p[2]);
}
static Tensor *b_pad2d(Graph *g, Tensor **in, void *ctx) {
    const int64_t *p = ((Ctx *)ctx)->i;
    return ag_pad2d(g, in[0], (int)p[0], (int)p[1], (int)p[2], (int)p[3]);
}
static Tensor *b_rows(Graph *g, Tensor **in, void *ctx) {
    Ctx *c = ctx;
    return ag_rows(g, in[0], c->idx, c->i[0]);
}
static Tensor *b_layernorm(Graph *g, Tensor **in, void *ctx) {
    return ag_layernorm(g, in[0], in[1], in[2], ((Ctx *)ctx)->f[0]);
}
static Tensor *b_layernorm2d(Graph *g, Tensor **in, void *ctx) {
    return ag_layernorm2d(g, in[0], in[1], in[2], ((Ctx *)ctx)->f[0]);
}
static Tensor *b_batchnorm(Graph *g, Tensor **in, void *ctx) {
    return ag_batchnorm(g, in[0], in[1], in[2], in[3], in[4], ((Ctx *)ctx)->f[0]);
}
static Tensor *b_l2norm(Graph *g, Tensor **in, void *ctx) {
    return ag_l2norm(g, in[0], ((Ctx *)ctx)->f[0]);
}
static Tensor *b_softmax(Graph *g, Tensor **in, void *ctx) { return ag_softmax(g, in[0]); }
static Tensor *b_log_softmax(Graph *g, Tensor **in, void *ctx) { return ag_log_softmax(g, in[0]); }
static Tensor *b_cross_entropy(Graph *g, Tensor **in, void *ctx) {
    return ag_cross_entropy(g, in[0], ((Ctx *)ctx)->idx);
}
static Tensor *b_attention(Graph *g, Tensor **in, void *ctx) {
    Ctx *c = ctx;
    return ag_attention(g, in[0], (int)c->i[0], c->mask, c->f[0]);
}

// Run the op once with recording off and return its output (in g's arena).
static Tensor *forward(Graph *g, GcBuild f, void *ctx, Tensor **in) {
    ag_graph_reset(g);
    g->grad_enabled = 0;
    Tensor *out = f(g, in, ctx);
    g->grad_enabled = 1;
    return out;
}

// ---- elementwise with broadcasting ----

// Double reference of a (op) b with numpy broadcasting; returns n out.
static int64_t ref_binary(int kind, const Tensor *a, const Tensor *b, float *want) {
    int64_t da[4], db[4], o[4], sa[4], sb[4];
    for (int k = 0; k < 4; k++) {
        da[k] = k < 4 - a->ndim ? 1 : a->shape[k - (4 - a->ndim)];
        db[k] = k < 4 - b->ndim ? 1 : b->shape[k - (4 - b->ndim)];
        o[k] = da[k] > db[k] ? da[k] : db[k];
    }
    sa[3] = sb[3] = 1;
    for (int k = 2; k >= 0; k--) sa[k] = sa[k + 1] * da[k + 1], sb[k] = sb[k + 1] * db[k + 1];
    int64_t n = 0;
    for (int64_t i0 = 0; i0 < o[0]; i0++)
        for (int64_t i1 = 0; i1 < o[1]; i1++)
            for (int64_t i2 = 0; i2 < o[2]; i2++)
                for (int64_t i3 = 0; i3 < o[3]; i3++) {
                    int64_t ii[4] = {i0, i1, i2, i3}, ia = 0, ib = 0;
                    for (int k = 0; k < 4; k++) {
                        ia += (da[k] == 1 ? 0 : ii[k]) * sa[k];
                        ib += (db[k] == 1 ? 0 : ii[k]) * sb[k];
                    }
                    double x = a->data[ia], y = b->data[ib];
                    want[n++] = (float)(kind == OP_ADD ? x + y : kind == OP_SUB ? x - y : x * y);
                }
    return n;
}

static void test_binary(Graph *g, int kind, const char *name, int nda, const int64_t *sa,
                        int ndb, const int64_t *sb) {
    static float want[4096];
    Tensor *a = leaf(1, 1.0, nda, sa), *b = leaf(1, 1.0, ndb, sb);
    Ctx c = {.i = {kind}};
    Tensor *in[2] = {a, b};
    Tensor *out = forward(g, b_binary, &c, in);
    int64_t n = ref_binary(kind, a, b, want);
    char s[96], label[160];
    snprintf(label, sizeof label, "%s %s fwd", name, tensor_shape_str(out, s, sizeof s));
    CHECK(n == out->n, "%s: %lld outputs, reference has %lld", label, (long long)out->n,
          (long long)n);
    // One float rounding of a double result: rtol 1e-7 (observed 0).
    test_close(label, out->data, want, (size_t)n, 0, 1e-7);
    gradcheck(name, b_binary, &c, in, 2, GC);
}

static void test_elementwise(Graph *g) {
    test_binary(g, OP_ADD, "add [3,5]+[5]", MC_DIMS(3, 5), MC_DIMS(5));
    test_binary(g, OP_ADD, "add [2,3,5]+[2,1,5]", MC_DIMS(2, 3, 5), MC_DIMS(2, 1, 5));
    test_binary(g, OP_ADD, "add [3,1]+[1,7]", MC_DIMS(3, 1), MC_DIMS(1, 7));
    test_binary(g, OP_ADD, "add [2,3,1,5]+[3,7,1]", MC_DIMS(2, 3, 1, 5), MC_DIMS(3, 7, 1));
    test_binary(g, OP_ADD, "add [1]+[3,5]", MC_DIMS(1), MC_DIMS(3, 5));
    test_binary(g, OP_ADD, "add [3,5,7]+[3,5,7]", MC_DIMS(3, 5, 7), MC_DIMS(3, 5, 7));
    test_binary(g, OP_SUB, "sub [3,5]-[3,1]", MC_DIMS(3, 5), MC_DIMS(3, 1));
    test_binary(g, OP_SUB, "sub [5]-[2,3,5]", MC_DIMS(5), MC_DIMS(2, 3, 5));
    test_binary(g, OP_MUL, "mul [2,3,5]*[3,1]", MC_DIMS(2, 3, 5), MC_DIMS(3, 1));
    test_binary(g, OP_MUL, "mul [3,2,5,7]*[3,2,1,1]", MC_DIMS(3, 2, 5, 7), MC_DIMS(3, 2, 1, 1));
    test_binary(g, OP_MUL, "mul [3,5]*[3,5]", MC_DIMS(3, 5), MC_DIMS(3, 5));

    // Unary ops against double formulas.
    static float want[1024];
    Tensor *x = leaf(1, 2.0, MC_DIMS(3, 37));  // 37: vector body + tail
    Ctx c = {.f = {-1.7f}};
    Tensor *out = forward(g, b_scale, &c, &x);
    for (int64_t i = 0; i < x->n; i++) want[i] = (float)((double)c.f[0] * x->data[i]);
    test_close("scale fwd", out->data, want, (size_t)x->n, 0, 1e-7);
    gradcheck("scale", b_scale, &c, &x, 1, GC);

    out = forward(g, b_gelu, NULL, &x);
    for (int64_t i = 0; i < x->n; i++) {
        double v = x->data[i];
        want[i] = (float)(v * 0.5 * erfc(-v / sqrt(2.0)));
    }
    // Vector erfc approximation: observed 1.2e-7 abs (see test_simd).
    test_close("gelu fwd", out->data, want, (size_t)x->n, 3e-7, 1e-6);
    gradcheck("gelu", b_gelu, NULL, &x, 1, GC);

    Tensor *xs = leaf(1, 3.0, MC_DIMS(4, 9));
    out = forward(g, b_sigmoid, NULL, &xs);
    for (int64_t i = 0; i < xs->n; i++) want[i] = (float)(1.0 / (1.0 + exp(-(double)xs->data[i])));
    test_close("sigmoid fwd", out->data, want, (size_t)xs->n, 0, 1e-6);
    gradcheck("sigmoid", b_sigmoid, NULL, &xs, 1, GC);

    Tensor *xr = leaf(1, 1.0, MC_DIMS(5, 7));
    push_off_zero(xr, 0.1f);  // |x| >= 0.1 > h: differences never cross the kink
    out = forward(g, b_relu, NULL, &xr);
    for (int64_t i = 0; i < xr->n; i++) want[i] = xr->data[i] > 0 ? xr->data[i] : 0.0f;
    test_close("relu fwd", out->data, want, (size_t)xr->n, 0, 0);
    gradcheck("relu", b_relu, NULL, &xr, 1, GC);

    Tensor *xe = leaf(1, 1.0, MC_DIMS(3, 7));
    out = forward(g, b_exp, NULL, &xe);
    for (int64_t i = 0; i < xe->n; i++) want[i] = (float)exp((double)xe->data[i]);
    test_close("exp fwd", out->data, want, (size_t)xe->n, 0, 1e-6);
    gradcheck("exp", b_exp, NULL, &xe, 1, GC);

    // Reductions.
    Tensor *xm = leaf(1, 1.0, MC_DIMS(3, 5, 7));
    double s = 0;
    for (int64_t i = 0; i < xm->n; i++) s += xm->data[i];
    out = forward(g, b_sum, NULL, &xm);
    CHECK(out->ndim == 0 && out->n == 1, "sum must give a scalar []");
    float ws = (float)s, wm = (float)(s / (double)xm->n);
    test_close("sum fwd", out->data, &ws, 1, 0, 1e-7);
    out = forward(g, b_mean, NULL, &xm);
    test_close("mean fwd", out->data, &wm, 1, 0, 1e-7);
    gradcheck("sum", b_sum, NULL, &xm, 1, GC);
    gradcheck("mean", b_mean, NULL, &xm, 1, GC);
}

// ---- shapes ----

static void test_shapes(Graph *g) {
    static float want[4096];
    char s[96];

    // reshape: a view (same buffers, no node), gradient through it.
    Tensor *x = leaf(1, 1.0, MC_DIMS(3, 10)), *w = leaf(0, 1.0, MC_DIMS(5, 6));
    ag_graph_reset(g);
    int nodes = g->n_nodes;
    Tensor *v = ag_reshape(g, x, MC_DIMS(5, 6));
    CHECK(v->data == x->data && v->grad == x->grad && g->n_nodes == nodes && v->ndim == 2 &&
          v->shape[0] == 5 && v->shape[1] == 6, "reshape must be a view with no node");
    gradcheck("reshape", b_reshape, NULL, (Tensor *[]){x, w}, 2, GC);

    // permute: exact gather, against an index formula.
    static const int perms[][4] = {{2, 0, 3, 1}, {3, 2, 1, 0}, {0, 1, 2, 3}};
    Tensor *p4 = leaf(1, 1.0, MC_DIMS(2, 3, 5, 7));
    for (int pi = 0; pi < 3; pi++) {
        const int *p = perms[pi];
        Ctx c = {.i = {p[0], p[1], p[2], p[3]}};
        Tensor *out = forward(g, b_permute, &c, &p4);
        int64_t st[4] = {105, 35, 7, 1}, n = 0;
        for (int64_t a = 0; a < out->shape[0]; a++)
            for (int64_t b = 0; b < out->shape[1]; b++)
                for (int64_t cc = 0; cc < out->shape[2]; cc++)
                    for (int64_t d = 0; d < out->shape[3]; d++)
                        want[n++] = p4->data[a * st[p[0]] + b * st[p[1]] + cc * st[p[2]] +
                                             d * st[p[3]]];
        char label[96];
        snprintf(label, sizeof label, "permute (%d,%d,%d,%d) -> %s", p[0], p[1], p[2], p[3],
                 tensor_shape_str(out, s, sizeof s));
        test_close(label, out->data, want, (size_t)n, 0, 0);
        gradcheck(label, b_permute, &c, &p4, 1, GC);
    }
    Tensor *p3 = leaf(1, 1.0, MC_DIMS(3, 5, 7)), *p2 = leaf(1, 1.0, MC_DIMS(5, 7));
    {
        Ctx c3 = {.i = {2, 0, 1, 3}}, c2 = {.i = {1, 0, -1, -1}};
        Tensor *o3 = forward(g, b_permute, &c3, &p3);
        CHECK(o3->ndim == 3 && o3->shape[0] == 7 && o3->shape[1] == 3 && o3->shape[2] == 5 &&
              o3->data[1 * 15 + 2 * 5 + 4] == p3->data[2 * 35 + 4 * 7 + 1],
              "permute of a 3-dim tensor");
        gradcheck("permute 3-dim (2,0,1)", b_permute, &c3, &p3, 1, GC);
        Tensor *o2 = forward(g, b_permute, &c2, &p2);
        CHECK(o2->shape[0] == 7 && o2->shape[1] == 5 && o2->data[3 * 5 + 2] == p2->data[2 * 7 + 3],
              "permute (transpose) of a 2-dim tensor");
        gradcheck("permute 2-dim (1,0)", b_permute, &c2, &p2, 1, GC);
    }

    // concat along each dim of 3-dim tensors.
    static const int64_t cat_shapes[3][2][3] = {{{2, 3, 5}, {3, 3, 5}},
                                                {{2, 3, 5}, {2, 4, 5}},
                                                {{2, 3, 5}, {2, 3, 2}}};
    for (int d = 0; d < 3; d++) {
        Tensor *a = leaf(1, 1.0, 3, cat_shapes[d][0]), *b = leaf(1, 1.0, 3, cat_shapes[d][1]);
        Ctx c = {.i = {d == 2 ? -1 : d}};
        Tensor *in[2] = {a, b};
        Tensor *out = forward(g, b_concat, &c, in);
        int64_t n = 0;
        for (int64_t i = 0; i < out->shape[0]; i++)
            for (int64_t j = 0; j < out->shape[1]; j++)
                for (int64_t k = 0; k < out->shape[2]; k++) {
                    int64_t ii[3] = {i, j, k};
                    const Tensor *src = ii[d] < a->shape[d] ? a : b;
                    if (src == b) ii[d] -= a->shape[d];
                    want[n++] = src->data[(ii[0] * src->shape[1] + ii[1]) * src->shape[2] + ii[2]];
                }
        char label[64];
        snprintf(label, sizeof label, "concat dim %d", d);
        test_close(label, out->data, want, (size_t)n, 0, 0);
        gradcheck(label, b_concat, &c, in, 2, GC);
    }

    // slice along dims 1 and -1.
    Tensor *xs = leaf(1, 1.0, MC_DIMS(3, 9, 5));
    {
        Ctx c = {.i = {1, 2, 4}};
        Tensor *out = forward(g, b_slice, &c, &xs);
        int64_t n = 0;
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 2; j < 6; j++)
                for (int64_t k = 0; k < 5; k++) want[n++] = xs->data[(i * 9 + j) * 5 + k];
        test_close("slice dim 1 [2, 6)", out->data, want, (size_t)n, 0, 0);
        gradcheck("slice dim 1", b_slice, &c, &xs, 1, GC);
        Ctx c2 = {.i = {-1, 3, 2}};
        out = forward(g, b_slice, &c2, &xs);
        CHECK(out->shape[2] == 2 && out->data[1] == xs->data[4] && out->data[2] == xs->data[8],
              "slice dim -1");
        gradcheck("slice dim -1", b_slice, &c2, &xs, 1, GC);
    }

    // pad2d
    Tensor *xp = leaf(1, 1.0, MC_DIMS(2, 3, 5, 4));
    {
        Ctx c = {.i = {1, 2, 0, 3}};
        Tensor *out = forward(g, b_pad2d, &c, &xp);
        int64_t Ho = 8, Wo = 7, n = 0;
        CHECK(out->shape[2] == Ho && out->shape[3] == Wo, "pad2d shape");
        for (int64_t p = 0; p < 6; p++)
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++) {
                    int64_t si = i - 1, sj = j;
                    want[n++] = si >= 0 && si < 5 && sj < 4 ? xp->data[(p * 5 + si) * 4 + sj] : 0;
                }
        test_close("pad2d (1,2,0,3)", out->data, want, (size_t)n, 0, 0);
        gradcheck("pad2d", b_pad2d, &c, &xp, 1, GC);
    }

    // rows, with repeated indices (scatter-add backward).
    Tensor *xe = leaf(1, 1.0, MC_DIMS(7, 5));
    static const int32_t idx[6] = {3, 0, 3, 6, 2, 3};
    {
        Ctx c = {.i = {6}, .idx = idx};
        Tensor *out = forward(g, b_rows, &c, &xe);
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 5; j++) want[i * 5 + j] = xe->data[idx[i] * 5 + j];
        test_close("rows fwd", out->data, want, 30, 0, 0);
        gradcheck("rows (repeats)", b_rows, &c, &xe, 1, GC);
    }
}

// ---- normalisation ----

// Double reference LayerNorm of rows of x [R, D].
static void ref_layernorm(float *out, const float *x, const float *gm, const float *bt,
                          int64_t R, int64_t D, double eps) {
    for (int64_t r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += x[r * D + j];
        m /= (double)D;
        for (int64_t j = 0; j < D; j++) v += fsq(x[r * D + j] - m);
        v /= (double)D;
        for (int64_t j = 0; j < D; j++) {
            double y = (x[r * D + j] - m) / sqrt(v + eps);
            out[r * D + j] = (float)(y * (gm ? gm[j] : 1) + (bt ? bt[j] : 0));
        }
    }
}

static void test_norms(Graph *g) {
    static float want[8192];
    Tensor *x = leaf(1, 1.0, MC_DIMS(3, 7, 19));
    for (int64_t i = 0; i < x->n; i++) x->data[i] += 3.0f;  // non-zero mean
    Tensor *gm = leaf(1, 1.0, MC_DIMS(19)), *bt = leaf(1, 1.0, MC_DIMS(19));
    Ctx c = {.f = {1e-5f}};

    // layernorm with and without the affine part, and a D with a vector
    // body (37).  Versus double: observed <= 1.7e-7 of the max |value|.
    Tensor *in[3] = {x, gm, bt};
    Tensor *out = forward(g, b_layernorm, &c, in);
    ref_layernorm(want, x->data, gm->data, bt->data, 21, 19, 1e-5);
    test_close_absmax("layernorm fwd [3,7,19]", out->data, want, (size_t)x->n, 2e-6);
    gradcheck("layernorm", b_layernorm, &c, in, 3, GC);
    Tensor *in0[3] = {x, NULL, NULL};
    out = forward(g, b_layernorm, &c, in0);
    ref_layernorm(want, x->data, NULL, NULL, 21, 19, 1e-5);
    test_close_absmax("layernorm fwd (no affine)", out->data, want, (size_t)x->n, 2e-6);
    gradcheck("layernorm (no affine)", b_layernorm, &c, in0, 1, GC);
    Tensor *x2 = leaf(1, 1.0, MC_DIMS(5, 37)), *g2 = leaf(1, 1.0, MC_DIMS(37));
    Tensor *b2 = leaf(0, 1.0, MC_DIMS(37));  // frozen beta
    Tensor *in2[3] = {x2, g2, b2};
    out = forward(g, b_layernorm, &c, in2);
    ref_layernorm(want, x2->data, g2->data, b2->data, 5, 37, 1e-5);
    test_close_absmax("layernorm fwd [5,37]", out->data, want, (size_t)x2->n, 2e-6);
    gradcheck("layernorm D=37 frozen beta", b_layernorm, &c, in2, 3, GC);
    CHECK(b2->grad == NULL, "frozen beta got a gradient buffer");

    // layernorm2d: each pixel's channels form the row.
    Tensor *x4 = leaf(1, 1.0, MC_DIMS(2, 5, 3, 7)), *g4 = leaf(1, 1.0, MC_DIMS(5));
    Tensor *b4 = leaf(1, 1.0, MC_DIMS(5));
    Tensor *in4[3] = {x4, g4, b4};
    out = forward(g, b_layernorm2d, &c, in4);
    {
        int64_t HW = 21;
        for (int64_t n = 0; n < 2; n++)
            for (int64_t p = 0; p < HW; p++) {
                float row[5], y[5];
                for (int ch = 0; ch < 5; ch++) row[ch] = x4->data[(n * 5 + ch) * HW + p];
                ref_layernorm(y, row, g4->data, b4->data, 1, 5, 1e-5);
                for (int ch = 0; ch < 5; ch++) want[(n * 5 + ch) * HW + p] = y[ch];
            }
    }
    test_close_absmax("layernorm2d fwd [2,5,3,7]", out->data, want, (size_t)x4->n, 2e-6);
    gradcheck("layernorm2d", b_layernorm2d, &c, in4, 3, GC);

    // batchnorm (eval): statistics are constants.
    Tensor *mean = leaf(0, 1.0, MC_DIMS(5)), *var = leaf(0, 1.0, MC_DIMS(5));
    for (int i = 0; i < 5; i++) var->data[i] = 0.2f + fabsf(var->data[i]);
    Tensor *inb[5] = {x4, mean, var, g4, b4};
    out = forward(g, b_batchnorm, &c, inb);
    for (int64_t i = 0; i < x4->n; i++) {
        int64_t ch = i / 21 % 5;
        want[i] = (float)((x4->data[i] - (double)mean->data[ch]) / sqrt(var->data[ch] + 1e-5) *
                              g4->data[ch] + b4->data[ch]);
    }
    // a = gamma / sqrt(var + eps) rounded in float, then x a + b: observed
    // 6.4e-8 relative to max |value|.
    test_close_absmax("batchnorm fwd [2,5,3,7]", out->data, want, (size_t)x4->n, 1e-6);
    gradcheck("batchnorm", b_batchnorm, &c, inb, 5, GC);
    Tensor *inb0[5] = {x4, mean, var, NULL, NULL};
    gradcheck("batchnorm (no affine)", b_batchnorm, &c, inb0, 3, GC);

    // l2norm: eps 1e-12 on ordinary rows; then eps 0.5 with one row whose
    // norm is below eps (the x / eps branch).
    Tensor *xl = leaf(1, 1.0, MC_DIMS(5, 11));
    Ctx cl = {.f = {1e-12f}};
    out = forward(g, b_l2norm, &cl, &xl);
    for (int64_t r = 0; r < 5; r++) {
        double ss = 0;
        for (int j = 0; j < 11; j++) ss += fsq(xl->data[r * 11 + j]);
        for (int j = 0; j < 11; j++) want[r * 11 + j] = (float)(xl->data[r * 11 + j] / sqrt(ss));
    }
    test_close("l2norm fwd", out->data, want, 55, 0, 1e-6);
    gradcheck("l2norm", b_l2norm, &cl, &xl, 1, GC);
    Ctx ce = {.f = {0.5f}};
    for (int j = 0; j < 11; j++) xl->data[2 * 11 + j] *= 0.02f;  // ||row 2|| ~0.07 < 0.5
    out = forward(g, b_l2norm, &ce, &xl);
    CHECK(fabsf(out->data[2 * 11 + 3] - xl->data[2 * 11 + 3] / 0.5f) < 1e-7f,
          "l2norm below eps must divide by eps");
    gradcheck("l2norm eps branch", b_l2norm, &ce, &xl, 1, GC);
}

// ---- softmax family ----

static void test_softmax(Graph *g) {
    static float want[4096];
    static const int64_t shapes[2][2] = {{4, 7}, {3, 37}};
    for (int si = 0; si < 2; si++) {
        int64_t R = shapes[si][0], D = shapes[si][1];
        Tensor *x = leaf(1, 2.0, 2, shapes[si]);
        Tensor *out = forward(g, b_softmax, NULL, &x);
        Tensor *lout;
        static float lwant[4096];
        for (int64_t r = 0; r < R; r++) {
            double m = -INFINITY, z = 0;
            for (int64_t j = 0; j < D; j++) m = fmax(m, x->data[r * D + j]);
            for (int64_t j = 0; j < D; j++) z += exp(x->data[r * D + j] - m);
            for (int64_t j = 0; j < D; j++) {
                want[r * D + j] = (float)(exp(x->data[r * D + j] - m) / z);
                lwant[r * D + j] = (float)(x->data[r * D + j] - m - log(z));
            }
        }
        char label[64];
        snprintf(label, sizeof label, "softmax fwd [%lld,%lld]", (long long)R, (long long)D);
        // Observed <= 4.9e-7 relative (vector exp); log_softmax max|d|
        // 4.8e-7 (on values ~|5|).
        test_close(label, out->data, want, (size_t)(R * D), 1e-9, 2e-6);
        snprintf(label, sizeof label, "softmax [%lld,%lld]", (long long)R, (long long)D);
        gradcheck(label, b_softmax, NULL, &x, 1, GC);
        lout = forward(g, b_log_softmax, NULL, &x);
        snprintf(label, sizeof label, "log_softmax fwd [%lld,%lld]", (long long)R, (long long)D);
        test_close(label, lout->data, lwant, (size_t)(R * D), 1e-6, 1e-6);
        snprintf(label, sizeof label, "log_softmax [%lld,%lld]", (long long)R, (long long)D);
        gradcheck(label, b_log_softmax, NULL, &x, 1, GC);
    }

    // cross entropy, mean over rows.
    Tensor *lg = leaf(1, 2.0, MC_DIMS(5, 7));
    static const int32_t labels[5] = {3, 0, 6, 3, 1};
    Ctx c = {.idx = labels};
    Tensor *out = forward(g, b_cross_entropy, &c, &lg);
    double loss = 0;
    for (int r = 0; r < 5; r++) {
        double m = -INFINITY, z = 0;
        for (int j = 0; j < 7; j++) m = fmax(m, lg->data[r * 7 + j]);
        for (int j = 0; j < 7; j++) z += exp(lg->data[r * 7 + j] - m);
        loss += m + log(z) - lg->data[r * 7 + labels[r]];
    }
    float wl = (float)(loss / 5);
    CHECK(out->ndim == 0, "cross_entropy must give a scalar");
    test_close("cross_entropy fwd", out->data, &wl, 1, 0, 1e-6);
    gradcheck("cross_entropy", b_cross_entropy, &c, &lg, 1, GC);
}

// ---- attention ----

// Double reference: out [B, T, C] from qkv [B, T, 3C].
static void ref_attention(float *out, const float *qkv, const float *mask, int B, int T,
                          int C, int NH, double scale) {
    int HS = C / NH;
    double s[128];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * 3 * C + h * HS;
                double m = -INFINITY, z = 0;
                for (int j = 0; j < T; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * HS;
                    double d = 0;
                    for (int e = 0; e < HS; e++) d += (double)q[e] * k[e];
                    s[j] = d * scale + (mask ? mask[i * T + j] : 0);
                    m = fmax(m, s[j]);
                }
                for (int j = 0; j < T; j++) z += s[j] = exp(s[j] - m);
                for (int e = 0; e < HS; e++) {
                    double o = 0;
                    for (int j = 0; j < T; j++)
                        o += s[j] / z * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * HS + e];
                    out[((size_t)b * T + i) * C + h * HS + e] = (float)o;
                }
            }
}

static Tensor *causal_mask(int T) {
    Tensor *m = leaf(0, 0.0, MC_DIMS(T, T));
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) m->data[i * T + j] = j > i ? -INFINITY : 0.0f;
    return m;
}

static void test_attention(Graph *g) {
    static float want[3 * 77 * 128];
    // (B, T, C, NH, mask kind): HS = 4, 5, 16, 32, 64; mask 0 none,
    // 1 causal -inf, 2 finite random additive.
    static const int cases[][5] = {{2, 5, 12, 3, 0}, {2, 5, 12, 3, 1}, {1, 7, 10, 2, 2},
                                   {2, 19, 32, 2, 1}, {1, 9, 64, 2, 0}, {1, 77, 64, 1, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int B = cases[ci][0], T = cases[ci][1], C = cases[ci][2], NH = cases[ci][3];
        int mk = cases[ci][4];
        Tensor *qkv = leaf(1, 1.0, MC_DIMS(B, T, 3 * C));
        Tensor *mask = mk == 1 ? causal_mask(T) : mk == 2 ? leaf(0, 1.0, MC_DIMS(T, T)) : NULL;
        Ctx c = {.i = {NH}, .f = {1.0f / sqrtf((float)(C / NH))}, .mask = mask};
        Tensor *out = forward(g, b_attention, &c, &qkv);
        ref_attention(want, qkv->data, mask ? mask->data : NULL, B, T, C, NH, c.f[0]);
        char label[128];
        const char *mname = mk == 1 ? "causal" : mk == 2 ? "additive" : "no mask";
        snprintf(label, sizeof label, "attention fwd B%d T%d C%d NH%d %s", B, T, C, NH, mname);
        // Float dots and softmax vs double: observed <= 2.2e-7 of max |out|.
        test_close_absmax(label, out->data, want, (size_t)out->n, 3e-6);
        snprintf(label, sizeof label, "attention B%d T%d C%d NH%d %s", B, T, C, NH, mname);
        GcOptions o = GC;
        if (T > 20) o.max_elems = 600;  // the 77-token case: an even subset
        gradcheck(label, b_attention, &c, &qkv, 1, o);
    }
}

// ---- thread-count independence ----

// Forward and backward of a chain touching every op with sizes large
// enough for the parallel paths; returns the concatenated outputs and
// gradients in buf (n floats).
static size_t run_chain(float *buf, Tensor **p) {
    Graph *g = ag_graph_new(1 << 20);
    Tensor *x = p[0], *gm = p[1], *bt = p[2], *qkv = p[3], *img = p[4], *emb = p[5];
    for (int i = 0; i < 6; i++) tensor_zero_grad(p[i]);
    size_t n = 0;

    // Text-like path: layernorm -> gelu -> add bias -> softmax -> log_softmax -> CE
    Tensor *h = ag_layernorm(g, x, gm, bt, 1e-5f);
    h = ag_gelu(g, h);
    h = ag_add(g, h, gm);
    h = ag_mul(g, ag_softmax(g, h), ag_scale(g, h, 3.0f));
    static int32_t labels[300];
    for (int i = 0; i < 300; i++) labels[i] = (i * 7) % 129;
    Tensor *l1 = ag_cross_entropy(g, h, labels);
    Tensor *l2 = ag_mean(g, ag_exp(g, ag_scale(g, ag_log_softmax(g, h), 0.1f)));

    // Attention, then rows (with repeats) and l2norm.
    Tensor *a = ag_attention(g, qkv, 3, NULL, 0.125f);
    static int32_t rows[50];
    for (int i = 0; i < 50; i++) rows[i] = (i * 5) % 33;
    Tensor *r = ag_rows(g, ag_reshape(g, a, MC_DIMS(4 * 33, 96)), rows, 50);
    Tensor *l3 = ag_sum(g, ag_l2norm(g, ag_sigmoid(g, r), 1e-12f));

    // Image-like path: layernorm2d, batchnorm, relu, pad, permute, slice, concat.
    Tensor *y = ag_layernorm2d(g, img, emb, NULL, 1e-5f);
    y = ag_batchnorm(g, y, gm, bt, emb, emb, 1e-5f);
    y = ag_relu(g, ag_pad2d(g, y, 1, 0, 2, 1));
    y = ag_permute(g, y, 0, 2, 3, 1);
    y = ag_concat(g, ag_slice(g, y, 1, 3, 5), y, 1);
    Tensor *l4 = ag_mean(g, ag_mul(g, y, y));

    Tensor *loss = ag_add(g, ag_add(g, l1, l2), ag_add(g, l3, l4));
    ag_backward(g, loss);

    Tensor *outs[] = {h, a, r, y, loss};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        memcpy(buf + n, outs[i]->data, (size_t)outs[i]->n * sizeof(float));
        n += (size_t)outs[i]->n;
    }
    for (int i = 0; i < 6; i++) {
        memcpy(buf + n, p[i]->grad, (size_t)p[i]->n * sizeof(float));
        n += (size_t)p[i]->n;
    }
    ag_graph_free(g);
    return n;
}

static void test_threads(void) {
    // x [300, 129]; gamma/beta [129] double as batchnorm stats for 129
    // channels; qkv [4, 33, 288]; img [2, 129, 10, 9]; emb [129].
    Tensor *p[6] = {leaf(1, 1.0, MC_DIMS(300, 129)), leaf(1, 1.0, MC_DIMS(129)),
                    leaf(1, 1.0, MC_DIMS(129)), leaf(1, 1.0, MC_DIMS(4, 33, 288)),
                    leaf(1, 1.0, MC_DIMS(2, 129, 10, 9)), leaf(1, 1.0, MC_DIMS(129))};
    for (int i = 0; i < 129; i++) p[2]->data[i] = 0.5f + fabsf(p[2]->data[i]);  // var > 0
    size_t cap = 1 << 22;
    float *b1 = mc_malloc(cap * sizeof(float)), *b2 = mc_malloc(cap * sizeof(float));
    int saved = mc_threads();
    mc_set_threads(1);
    size_t n1 = run_chain(b1, p);
    mc_set_threads(2);
    size_t n2 = run_chain(b2, p);
    mc_set_threads(saved);
    MC_CHECK(n1 <= cap, "test buffer too small");
    size_t diff = 0;
    for (size_t i = 0; i < n1; i++) diff += memcmp(&b1[i], &b2[i], sizeof(float)) != 0;
    printf("threads 1 vs 2: %zu floats (outputs and gradients), %zu differ\n", n1, diff);
    CHECK(n1 == n2 && diff == 0, "results depend on the thread count (%zu differ)", diff);
    mc_free(b1), mc_free(b2);
}

// The steady state of a training step allocates nothing new.
static void test_arena_steady(void) {
    Tensor *x = leaf(1, 1.0, MC_DIMS(9, 3, 48)), *gm = leaf(1, 1.0, MC_DIMS(48));
    Graph *g = ag_graph_new(4096);
    size_t m[3];
    for (int step = 0; step < 3; step++) {
        ag_graph_reset(g);
        Tensor *h = ag_attention(g, ag_layernorm(g, ag_gelu(g, x), gm, NULL, 1e-5f), 4, NULL, 0.5f);
        ag_backward(g, ag_mean(g, h));
        m[step] = g->arena.n_mallocs;
    }
    CHECK(m[2] == m[1], "arena grew in a steady step (%zu -> %zu)", m[1], m[2]);
    ag_graph_free(g);
}

// The kernels.h usage sketch.
static void test_kernel_sketch(void) {
    float x[2 * 5], y[2 * 5], mean[2], rstd[2];
    for (int i = 0; i < 10; i++) x[i] = (float)i;
    mc_layernorm_forward(y, mean, rstd, x, NULL, NULL, 2, 5, 1e-5f);
    mc_gelu_forward(y, y, 10);
    CHECK(mean[1] == 7.0f && fabsf(y[2]) < 1e-7f && y[4] > 1.2f,
          "kernels sketch: mean %g y[2] %g y[4] %g", mean[1], y[2], y[4]);
}

int main(void) {
    test_seed(11);
    printf("ISA %s, %d threads\n", mc_isa_name(), mc_threads());
    Graph *g = ag_graph_new(1 << 16);
    test_kernel_sketch();
    test_elementwise(g);
    test_shapes(g);
    test_norms(g);
    test_softmax(g);
    test_attention(g);
    ag_graph_free(g);
    test_threads();
    test_arena_steady();
    free_leaves();
    return test_finish("test_ops");
}
