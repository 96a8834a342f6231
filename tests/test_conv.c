// test_conv.c - conv2d and avgpool: every path against a naive double
// convolution (forward and all three gradients), finite-difference
// gradchecks through the tape, frozen weights, thread-count invariance,
// SIMD kernels against the scalar ones, arena steady state, bad shapes.
//
// Dims: N images, Cin/Cout channels, H x W input, k kernel, s stride, p pad,
// G groups (tensor/conv.h).  Shapes include every conv of the MobileCLIP2
// trunks (arch-spec §3, §4) at small spatial size.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../autograd/autograd.h"
#include "../tensor/conv.h"
#include "../tensor/simd.h"
#include "util/check.h"
#include "util/gradcheck.h"

// Tolerance of a float result against the double reference, relative to
// the sum of |terms| that made the element (a rigorous bound for float
// summation of K terms is K * 2^-24 * sum|terms|; observed errors stay below
// 3e-7 of sum|terms| for K up to 1536, so 4e-6 leaves a 10x margin without
// hiding a wrong tap, which would be off by a whole term).
#define CONV_TOL 4e-6

typedef struct Cfg {
    const char *name;
    int N, Cin, H, W, Cout, kH, kW, s, p, G;
    int bias;
} Cfg;

// ---- naive double reference ----

// Visit every (output, input, weight) triple of the convolution, in double:
// y += x*w (and |x*w|), dx += dy*w, dw += dy*x (and their |.|).
typedef struct Ref {
    double *y, *y_abs, *dx, *dx_abs, *dw, *dw_abs, *db, *db_abs;
} Ref;

static void ref_conv(Ref *r, const ConvShape *s, const float *x, const float *w,
                     const float *bias, const float *dy) {
    int Cg = s->Cin / s->groups, Og = s->Cout / s->groups;
    for (int n = 0; n < s->N; n++)
        for (int o = 0; o < s->Cout; o++)
            for (int i = 0; i < s->Ho; i++)
                for (int j = 0; j < s->Wo; j++) {
                    size_t yi = (((size_t)n * s->Cout + o) * s->Ho + i) * s->Wo + j;
                    double acc = bias ? bias[o] : 0.0, acc_abs = bias ? fabs(bias[o]) : 0.0;
                    double g = dy[yi];
                    r->db[o] += g;
                    r->db_abs[o] += fabs(g);
                    for (int c = 0; c < Cg; c++)
                        for (int a = 0; a < s->kH; a++)
                            for (int b = 0; b < s->kW; b++) {
                                int ih = i * s->stride - s->pad + a;
                                int iw = j * s->stride - s->pad + b;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                int ci = (o / Og) * Cg + c;
                                size_t xi = (((size_t)n * s->Cin + ci) * s->H + ih) * s->W + iw;
                                size_t wi = (((size_t)o * Cg + c) * s->kH + a) * s->kW + b;
                                acc += (double)x[xi] * w[wi];
                                acc_abs += fabs((double)x[xi] * w[wi]);
                                r->dx[xi] += g * w[wi];
                                r->dx_abs[xi] += fabs(g * w[wi]);
                                r->dw[wi] += g * x[xi];
                                r->dw_abs[wi] += fabs(g * x[xi]);
                            }
                    r->y[yi] = acc;
                    r->y_abs[yi] = acc_abs;
                }
}

// max over i of |got - want| / (sum|terms| + 1e-30), with start values
// `base` already in got (backward accumulates into it).
static double rel_err(const float *got, const double *want, const double *abs_sum,
                      const float *base, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double w = want[i] + (base ? base[i] : 0.0);
        double d = fabs((double)got[i] - w) / (abs_sum[i] + fabs(base ? base[i] : 0.0) + 1e-30);
        if (isnan(d)) d = INFINITY;
        if (d > worst) worst = d;
    }
    return worst;
}

// ---- one configuration: every pass of the chosen path (and of im2col) ----

static float *new_floats(size_t n, double std) {
    float *p = mc_malloc((n ? n : 1) * sizeof(float));
    test_fill_normal(p, n, std);
    return p;
}

static double *new_doubles(size_t n) { return mc_calloc(n ? n : 1, sizeof(double)); }

// Run forward, backward x/w/bias on path `path` and return the worst
// relative error of the four results against the reference.
static double run_path(const ConvShape *s0, ConvPath path, const float *x, const float *w,
                       const float *bias, const float *dy, const Ref *r, double errs[4]) {
    ConvShape s = *s0;
    s.path = path;
    size_t nx = (size_t)s.N * s.Cin * s.H * s.W, nw = (size_t)s.Cout * (s.Cin / s.groups) *
            s.kH * s.kW, ny = (size_t)s.N * s.Cout * s.Ho * s.Wo;
    size_t nwork = conv2d_work_floats(&s, CONV_PASS_ALL);
    float *work = nwork ? mc_malloc(nwork * sizeof(float)) : NULL;
    float *y = new_floats(ny, 0), *dx = new_floats(nx, 1), *dw = new_floats(nw, 1);
    float *db = new_floats((size_t)s.Cout, 1);
    float *dx0 = mc_malloc(nx * sizeof(float)), *dw0 = mc_malloc(nw * sizeof(float));
    float *db0 = mc_malloc((size_t)s.Cout * sizeof(float));
    memcpy(dx0, dx, nx * sizeof(float));
    memcpy(dw0, dw, nw * sizeof(float));
    memcpy(db0, db, (size_t)s.Cout * sizeof(float));

    // Forward overwrites y; the backward passes add into random start values.
    conv2d_forward(y, x, w, bias, &s, work);
    conv2d_backward_x(dx, dy, w, &s, work);
    conv2d_backward_w(dw, dy, x, &s, work);
    conv2d_backward_bias(db, dy, &s);
    errs[0] = rel_err(y, r->y, r->y_abs, NULL, ny);
    errs[1] = rel_err(dx, r->dx, r->dx_abs, dx0, nx);
    errs[2] = rel_err(dw, r->dw, r->dw_abs, dw0, nw);
    errs[3] = rel_err(db, r->db, r->db_abs, db0, (size_t)s.Cout);
    double worst = 0;
    for (int i = 0; i < 4; i++) worst = fmax(worst, errs[i]);

    mc_free(work), mc_free(y), mc_free(dx), mc_free(dw), mc_free(db);
    mc_free(dx0), mc_free(dw0), mc_free(db0);
    return worst;
}

static void run_cfg(const Cfg *c) {
    ConvShape s;
    McErr err;
    if (conv_shape_init(&s, c->N, c->Cin, c->H, c->W, c->Cout, c->kH, c->kW, c->s, c->p, c->G,
                        &err)) {
        CHECK(0, "%s: conv_shape_init rejected a valid shape: %s", c->name, err.msg);
        return;
    }
    size_t nx = (size_t)s.N * s.Cin * s.H * s.W, nw = (size_t)s.Cout * (s.Cin / s.groups) *
            s.kH * s.kW, ny = (size_t)s.N * s.Cout * s.Ho * s.Wo;
    float *x = new_floats(nx, 1), *w = new_floats(nw, 1), *dy = new_floats(ny, 1);
    float *bias = c->bias ? new_floats((size_t)s.Cout, 1) : NULL;
    Ref r = {new_doubles(ny), new_doubles(ny), new_doubles(nx), new_doubles(nx),
             new_doubles(nw), new_doubles(nw), new_doubles((size_t)s.Cout),
             new_doubles((size_t)s.Cout)};
    ref_conv(&r, &s, x, w, bias, dy);

    // The path conv_shape_init chose, then im2col (valid for every shape).
    double e[4], ei[4];
    double worst = run_path(&s, s.path, x, w, bias, dy, &r, e);
    if (s.path != CONV_PATH_IM2COL) worst = fmax(worst, run_path(&s, CONV_PATH_IM2COL, x, w,
                                                                 bias, dy, &r, ei));
    printf("%-28s %-9s N%d %4dx%-3dx%-3d -> %4dx%-3dx%-3d k%dx%d s%d p%d g%-4d "
           "rel y %.1e dx %.1e dw %.1e db %.1e %s\n", c->name, conv_path_name(s.path), s.N,
           s.Cin, s.H, s.W, s.Cout, s.Ho, s.Wo, s.kH, s.kW, s.stride, s.pad, s.groups,
           e[0], e[1], e[2], e[3], worst <= CONV_TOL ? "ok" : "FAIL");
    CHECK(worst <= CONV_TOL, "%s: error %.3e relative to sum|terms| (tolerance %.1e)",
          c->name, worst, CONV_TOL);

    mc_free(x), mc_free(w), mc_free(dy), mc_free(bias);
    mc_free(r.y), mc_free(r.y_abs), mc_free(r.dx), mc_free(r.dx_abs);
    mc_free(r.dw), mc_free(r.dw_abs), mc_free(r.db), mc_free(r.db_abs);
}

// Every conv of the MobileCLIP2 trunks at small spatial size, plus odd
// corners (kernel larger than the input, pad > k-1, non-square kernels).
static const Cfg cfgs[] = {
    // name                      N Cin  H  W Cout kH kW s p G    bias
    {"stem.0 3x3s2 3->64",       2,   3, 17, 15,  64, 3, 3, 2, 1, 1,   1},
    {"stem.0 scale 1x1s2",       1,   3, 17, 15,  64, 1, 1, 2, 0, 1,   0},
    {"stem.1 dw3x3s2",           2,  64, 12, 11,  64, 3, 3, 2, 1, 64,  1},
    {"stem.1 scale dw1x1s2",     1,  64, 12, 11,  64, 1, 1, 2, 0, 64,  0},
    {"stem.2 1x1 64->64",        2,  64,  9,  7,  64, 1, 1, 1, 0, 1,   1},
    {"repmixer dw3x3",           2, 128,  8,  8, 128, 3, 3, 1, 1, 128, 1},
    {"repmixer scale dw1x1",     1, 128,  8,  8, 128, 1, 1, 1, 0, 128, 0},
    {"convmlp dw7x7",            2, 128,  9,  9, 128, 7, 7, 1, 3, 128, 0},
    {"convmlp fc1 1x1",          2, 128,  6,  5, 384, 1, 1, 1, 0, 1,   1},
    {"convmlp fc2 1x1",          1, 384,  6,  5, 128, 1, 1, 1, 0, 1,   1},
    {"downsample 7x7s2 m2",      2,  64, 10, 10, 128, 7, 7, 2, 3, 64,  1},
    {"downsample 3x3s2 m2",      1,  64, 10, 10, 128, 3, 3, 2, 1, 64,  0},
    {"downsample 1x1s2 m2",      1,  64, 10, 10, 128, 1, 1, 2, 0, 64,  0},
    {"downsample proj 1x1",      1, 128,  5,  5, 128, 1, 1, 1, 0, 1,   1},
    {"repcpe dw7x7 8x8->4x4",    1, 512,  4,  4, 512, 7, 7, 1, 3, 512, 1},
    {"final_conv 3x3 m2",        2, 512,  3,  3, 1024, 3, 3, 1, 1, 512, 1},
    {"final_conv scale 1x1 m2",  1, 512,  3,  3, 1024, 1, 1, 1, 0, 512, 0},
    {"se fc1 1x1 on 1x1",        2, 1024, 1,  1,  64, 1, 1, 1, 0, 1,   1},
    {"se fc2 1x1 on 1x1",        2,  64,  1,  1, 1024, 1, 1, 1, 0, 1,  1},
    {"attn 1x1 512->1536",       1, 512,  3,  2, 1536, 1, 1, 1, 0, 1,  0},
    {"S3 stem 3x3s2 3->96",      1,   3,  9, 10,  96, 3, 3, 2, 1, 1,   1},
    {"B stem 4x4s4 3->192",      2,   3, 16, 16, 192, 4, 4, 4, 0, 1,   0},
    {"B stem 2x2s2 192->192",    1, 192,  4,  6, 192, 2, 2, 2, 0, 1,   0},
    {"B stem 2x2s2 192->768",    1, 192,  2,  4, 768, 2, 2, 2, 0, 1,   1},
    {"L14 patch 14x14s14",       1,   3, 28, 42, 128, 14, 14, 14, 0, 1, 0},
    {"groups 2 3x3",             2,   6,  7,  5,   4, 3, 3, 1, 1, 2,   1},
    {"groups 3 k5 s2 p2",        1,   6, 11,  9,   9, 5, 5, 2, 2, 3,   1},
    {"groups 4 1x1",             2,   8,  5,  3,   4, 1, 1, 1, 0, 4,   1},
    {"groups 2 1x1 s2",          1,   4,  5,  6,   6, 1, 1, 2, 0, 2,   0},
    {"dw m3 k5 s4 p2",           2,   5, 13, 11,  15, 5, 5, 4, 2, 5,   1},
    {"dw k2 even s1",            1,   7,  6,  9,   7, 2, 2, 1, 0, 7,   1},
    {"dw k3x5 non-square",       1,   6,  7, 10,  12, 3, 5, 1, 2, 6,   1},
    {"dw k1 pad 3",              1,   4,  3,  5,   4, 1, 1, 1, 3, 4,   1},
    {"dw k7 s14 p0",             1,   3, 30, 29,   3, 7, 7, 14, 0, 3,  1},
    {"dw input 1x1 k3 p1",       2,   9,  1,  1,  18, 3, 3, 1, 1, 9,   1},
    {"dw k6 s3 p1 wide",         1,   3,  8, 77,   6, 6, 6, 3, 1, 3,   1},
    {"full k7 s2 p3 odd",        2,   5, 13, 11,   7, 7, 7, 2, 3, 1,   1},
    {"full k2 s1 p3",            1,   3,  4,  5,   2, 2, 2, 1, 3, 1,   1},
    {"full k3 s4 p1",            1,   2, 13, 17,   3, 3, 3, 4, 1, 1,   0},
    {"full 1x1 pad 2",           1,   3,  4,  2,   5, 1, 1, 1, 2, 1,   1},
    {"single channel dw",        2,   1,  9,  8,   2, 3, 3, 1, 1, 1,   1},
};

// Random configurations: k 1..7, stride 1/2/4, pad 0..3, the three kinds
// of grouping, odd spatial sizes.
static void run_random(int count) {
    char names[64][32];
    for (int t = 0; t < count && t < 64; t++) {
        Cfg c = {.name = names[t]};
        snprintf(names[t], sizeof names[t], "random %d", t);
        int strides[3] = {1, 2, 4};
        c.N = 1 + (int)(test_uniform() * 2);
        c.kH = 1 + (int)(test_uniform() * 7);
        c.kW = test_uniform() < 0.7 ? c.kH : 1 + (int)(test_uniform() * 7);
        c.s = strides[(int)(test_uniform() * 3)];
        c.p = (int)(test_uniform() * 4);
        c.H = 1 + (int)(test_uniform() * 14);
        c.W = 1 + (int)(test_uniform() * 14);
        if (c.H + 2 * c.p < c.kH) c.H = c.kH;
        if (c.W + 2 * c.p < c.kW) c.W = c.kW;
        int kind = (int)(test_uniform() * 3), Cg = 1 + (int)(test_uniform() * 4);
        c.G = 1 + (int)(test_uniform() * 4);
        if (kind == 0) c.G = 1, c.Cin = Cg, c.Cout = 1 + (int)(test_uniform() * 9);
        if (kind == 1) c.Cin = 2 + (int)(test_uniform() * 9), c.G = c.Cin,
                       c.Cout = c.Cin * (1 + (int)(test_uniform() * 3));
        if (kind == 2) c.Cin = c.G * Cg, c.Cout = c.G * (1 + (int)(test_uniform() * 3));
        c.bias = test_uniform() < 0.5;
        run_cfg(&c);
    }
}

// ---- finite-difference checks through the tape ----

typedef struct GcConv {
    int stride, pad, groups;
} GcConv;

static Tensor *build_conv(Graph *g, Tensor **in, void *ctx) {
    GcConv *c = ctx;
    return ag_conv2d(g, in[0], in[1], in[2], c->stride, c->pad, c->groups);
}

static Tensor *build_avgpool(Graph *g, Tensor **in, void *ctx) { return ag_avgpool(g, in[0]); }

static Tensor *leaf(int ndim, const int64_t *shape, int grad) {
    Tensor *t = tensor_new(ndim, shape);
    test_fill_normal(t->data, (size_t)t->n, 1.0);
    if (grad) tensor_require_grad(t);
    return t;
}

static void gc_conv(const char *name, int N, int Cin, int H, int W, int Cout, int k,
                    int stride, int pad, int groups) {
    // The conv is linear in x, w and bias, so central differences are exact
    // up to float rounding of the forward: observed max |d| ~ 5e-4 with
    // h = 1e-2; atol/rtol 2e-3 as in test_autograd.
    GcOptions opt = {.h = 1e-2, .atol = 2e-3, .rtol = 2e-3, .max_elems = 200};
    Tensor *x = leaf(MC_DIMS(N, Cin, H, W), 1);
    Tensor *w = leaf(MC_DIMS(Cout, Cin / groups, k, k), 1);
    Tensor *b = leaf(MC_DIMS(Cout), 1);
    GcConv c = {stride, pad, groups};
    gradcheck(name, build_conv, &c, (Tensor *[]){x, w, b}, 3, opt);
    tensor_free(x), tensor_free(w), tensor_free(b);
}

static void test_gradchecks(void) {
    gc_conv("conv full 3x3 s2 p1", 2, 3, 7, 6, 4, 3, 2, 1, 1);
    gc_conv("conv 1x1 gemm", 2, 5, 3, 4, 3, 1, 1, 0, 1);
    gc_conv("conv 1x1 s2 subsample", 1, 4, 5, 5, 3, 1, 2, 0, 1);
    gc_conv("conv dw 3x3 s1 p1", 2, 3, 6, 5, 3, 3, 1, 1, 3);
    gc_conv("conv dw m2 7x7 s2 p3", 1, 3, 9, 8, 6, 7, 2, 3, 3);
    gc_conv("conv groups 2 3x3 s1", 1, 4, 5, 5, 6, 3, 1, 1, 2);
    gc_conv("conv 4x4 s4 p0", 1, 2, 8, 9, 3, 4, 4, 0, 1);

    GcOptions opt = {.h = 1e-2, .atol = 1e-3, .rtol = 1e-3, .max_elems = 0};
    Tensor *x = leaf(MC_DIMS(2, 3, 5, 7), 1);
    gradcheck("avgpool", build_avgpool, NULL, (Tensor *[]){x}, 1, opt);
    tensor_free(x);
}

// ---- frozen weights ----

// d x through a frozen w equals d x through a trainable w, bit for bit, and
// the frozen w never gets a gradient buffer.
static void test_frozen(void) {
    const int cases[3][4] = {{8, 8, 3, 1}, {8, 16, 7, 8}, {6, 6, 1, 1}};  // Cin Cout k G
    for (int t = 0; t < 3; t++) {
        int Cin = cases[t][0], Cout = cases[t][1], k = cases[t][2], G = cases[t][3];
        Tensor *x = leaf(MC_DIMS(2, Cin, 9, 9), 1);
        Tensor *w = leaf(MC_DIMS(Cout, Cin / G, k, k), 0);
        Tensor *b = leaf(MC_DIMS(Cout), 0);
        Graph *g = ag_graph_new(1 << 16);
        float *seed = mc_malloc((size_t)2 * Cout * 81 * sizeof(float));
        test_fill_normal(seed, (size_t)2 * Cout * 81, 1.0);

        // Frozen pass.
        Tensor *y = ag_conv2d(g, x, w, b, 1, k / 2, G);
        ag_backward_seed(g, y, seed);
        CHECK(w->grad == NULL && b->grad == NULL, "frozen conv weight got a gradient buffer");
        float *dx_frozen = mc_malloc((size_t)x->n * sizeof(float));
        memcpy(dx_frozen, x->grad, (size_t)x->n * sizeof(float));
        float y0 = y->data[0];

        // Same with w trainable: identical output and d x.
        ag_graph_reset(g);
        tensor_zero_grad(x);
        tensor_require_grad(w);
        y = ag_conv2d(g, x, w, b, 1, k / 2, G);
        ag_backward_seed(g, y, seed);
        CHECK(y->data[0] == y0, "output changed when w became trainable");
        CHECK(!memcmp(dx_frozen, x->grad, (size_t)x->n * sizeof(float)),
              "d x differs between frozen and trainable w (case %d)", t);

        // Nothing needs a gradient: nothing is recorded.
        ag_graph_reset(g);
        x->requires_grad = 0, w->requires_grad = 0;
        y = ag_conv2d(g, x, w, b, 1, k / 2, G);
        CHECK(g->n_nodes == 0 && !y->requires_grad, "conv with frozen inputs recorded a node");
        x->requires_grad = 1;

        mc_free(seed), mc_free(dx_frozen);
        ag_graph_free(g);
        tensor_free(x), tensor_free(w), tensor_free(b);
    }
}

// ---- thread-count invariance ----

// Forward and all gradients of one shape with the given thread count.
static void run_threads(int threads, const Cfg *c, float *out[4], const float *x,
                        const float *w, const float *b, const float *dy) {
    mc_set_threads(threads);
    ConvShape s;
    conv_shape_init(&s, c->N, c->Cin, c->H, c->W, c->Cout, c->kH, c->kW, c->s, c->p, c->G, NULL);
    size_t nwork = conv2d_work_floats(&s, CONV_PASS_ALL);
    float *work = nwork ? mc_malloc(nwork * sizeof(float)) : NULL;
    size_t nx = (size_t)s.N * s.Cin * s.H * s.W, nw = (size_t)s.Cout * (s.Cin / s.groups) *
            s.kH * s.kW, ny = (size_t)s.N * s.Cout * s.Ho * s.Wo;
    out[0] = mc_calloc(ny, sizeof(float)), out[1] = mc_calloc(nx, sizeof(float));
    out[2] = mc_calloc(nw, sizeof(float)), out[3] = mc_calloc((size_t)s.Cout, sizeof(float));
    conv2d_forward(out[0], x, w, b, &s, work);
    conv2d_backward_x(out[1], dy, w, &s, work);
    conv2d_backward_w(out[2], dy, x, &s, work);
    conv2d_backward_bias(out[3], dy, &s);
    mc_free(work);
}

static void test_threads(void) {
    const Cfg tc[] = {
        {"threads stem full 3x3 s2", 3, 3, 40, 36, 16, 3, 3, 2, 1, 1, 1},
        {"threads 1x1 gemm", 3, 32, 16, 16, 48, 1, 1, 1, 0, 1, 1},
        {"threads dw 7x7 s1", 3, 32, 20, 19, 32, 7, 7, 1, 3, 32, 1},
        {"threads dw m2 7x7 s2", 3, 32, 20, 19, 64, 7, 7, 2, 3, 32, 1},
        {"threads dw 7x7 small plane", 3, 40, 8, 8, 40, 7, 7, 1, 3, 40, 1},
        {"threads groups 4 3x3", 2, 16, 12, 12, 8, 3, 3, 1, 1, 4, 1},
    };
    int saved = mc_threads();
    for (size_t t = 0; t < sizeof tc / sizeof tc[0]; t++) {
        const Cfg *c = &tc[t];
        ConvShape s;
        conv_shape_init(&s, c->N, c->Cin, c->H, c->W, c->Cout, c->kH, c->kW, c->s, c->p, c->G,
                        NULL);
        size_t n[4] = {(size_t)s.N * s.Cout * s.Ho * s.Wo, (size_t)s.N * s.Cin * s.H * s.W,
                       (size_t)s.Cout * (s.Cin / s.groups) * s.kH * s.kW, (size_t)s.Cout};
        float *x = new_floats(n[1], 1), *w = new_floats(n[2], 1), *b = new_floats(n[3], 1);
        float *dy = new_floats(n[0], 1);
        float *one[4], *two[4];
        run_threads(1, c, one, x, w, b, dy);
        run_threads(2, c, two, x, w, b, dy);
        const char *what[4] = {"y", "dx", "dw", "db"};
        int same = 1;
        for (int i = 0; i < 4; i++) {
            int eq = !memcmp(one[i], two[i], n[i] * sizeof(float));
            CHECK(eq, "%s: %s differs between 1 and 2 threads", c->name, what[i]);
            same &= eq;
            mc_free(one[i]), mc_free(two[i]);
        }
        printf("%-28s %-9s 1 vs 2 threads: %s\n", c->name, conv_path_name(s.path),
               same ? "bit-identical" : "DIFFERENT");
        mc_free(x), mc_free(w), mc_free(b), mc_free(dy);
    }
    mc_set_threads(saved);
}

// ---- SIMD kernels against the scalar ones ----

// One shape per depthwise kernel: the split-plane tiles and the
// channel-blocked small-plane path (with a partial block of channels).
static void test_isa_shape(const Cfg c) {
    const char *isas[] = {"avx2", "avx512", "neon"};
    ConvShape s;
    conv_shape_init(&s, c.N, c.Cin, c.H, c.W, c.Cout, c.kH, c.kW, c.s, c.p, c.G, NULL);
    size_t n[4] = {(size_t)s.N * s.Cout * s.Ho * s.Wo, (size_t)s.N * s.Cin * s.H * s.W,
                   (size_t)s.Cout * s.kH * s.kW, (size_t)s.Cout};
    float *x = new_floats(n[1], 1), *w = new_floats(n[2], 1), *b = new_floats(n[3], 1);
    float *dy = new_floats(n[0], 1);
    float *ref[4];
    CHECK(conv_dw_use_isa("scalar") == 0, "the scalar depthwise kernels are not available");
    run_threads(mc_threads(), &c, ref, x, w, b, dy);
    for (int i = 0; i < 3; i++) {
        if (conv_dw_use_isa(isas[i]) != 0) {
            printf("depthwise %-7s not built or not supported here (skipped)\n", isas[i]);
            continue;
        }
        float *got[4];
        run_threads(mc_threads(), &c, got, x, w, b, dy);
        // FMA against separate multiply and add: last-bit differences only
        // (observed ~1e-7 of absmax).
        char name[64];
        const char *what[4] = {"y", "dx", "dw", "db"};
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "%s: %s vs scalar %s", c.name, isas[i], what[k]);
            test_close_absmax(name, got[k], ref[k], n[k], 1e-5);
            mc_free(got[k]);
        }
    }
    for (int k = 0; k < 4; k++) mc_free(ref[k]);
    mc_free(x), mc_free(w), mc_free(b), mc_free(dy);
}

static void test_isas(void) {
    test_isa_shape((Cfg){"isa dw m2 7x7 s2", 2, 6, 19, 23, 12, 7, 7, 2, 3, 6, 1});
    test_isa_shape((Cfg){"isa dw 7x7 small plane", 2, 21, 8, 8, 21, 7, 7, 1, 3, 21, 1});
    CHECK(conv_dw_use_isa(NULL) == 0, "could not return to the default kernels");
    CHECK(!strcmp(conv_dw_isa(), mc_isa_name()), "depthwise kernels %s do not follow mc_isa %s",
          conv_dw_isa(), mc_isa_name());
    printf("depthwise kernels in use: %s\n", conv_dw_isa());
}

// ---- arena steady state, usage sketch, bad shapes ----

static void test_arena_steady(void) {
    Graph *g = ag_graph_new(4096);
    Tensor *x = leaf(MC_DIMS(2, 8, 12, 12), 1), *w = leaf(MC_DIMS(16, 1, 7, 7), 1);
    Tensor *w2 = leaf(MC_DIMS(4, 16, 3, 3), 1);
    size_t mallocs[3];
    for (int step = 0; step < 3; step++) {
        ag_graph_reset(g);
        Tensor *h = ag_conv2d(g, x, w, NULL, 2, 3, 8);     // depthwise m=2
        Tensor *y = ag_conv2d(g, h, w2, NULL, 1, 1, 1);    // im2col
        Tensor *pooled = ag_avgpool(g, y);
        float *seed = arena_alloc(&g->arena, (size_t)pooled->n * sizeof(float));
        for (int64_t i = 0; i < pooled->n; i++) seed[i] = 1.0f;
        ag_backward_seed(g, pooled, seed);
        mallocs[step] = g->arena.n_mallocs;
    }
    CHECK(mallocs[2] == mallocs[1], "conv allocated again in a steady step (%zu -> %zu)",
          mallocs[1], mallocs[2]);
    tensor_free(x), tensor_free(w), tensor_free(w2);
    ag_graph_free(g);
}

// The usage sketch of tensor/conv.h.
static int usage_sketch(float *y, const float *x, const float *w, const float *bias,
                        float *dx, const float *dy, int N, int Cin, int H, int W, int Cout) {
    McErr err;
    ConvShape s;
    if (conv_shape_init(&s, N, Cin, H, W, Cout, 3, 3, 2, 1, Cin, &err))
        return -1;
    float *work = mc_malloc(conv2d_work_floats(&s, CONV_PASS_ALL) * 4 + 64);
    conv2d_forward(y, x, w, bias, &s, work);
    conv2d_backward_x(dx, dy, w, &s, work);
    mc_free(work);
    return 0;
}

static void test_api(void) {
    // x [1,2,4,4], w [4,1,3,3] (m = 2), y [1,4,2,2]
    float x[32], w[36], y[16], dx[32] = {0}, dy[16];
    test_fill_normal(x, 32, 1), test_fill_normal(w, 36, 1), test_fill_normal(dy, 16, 1);
    CHECK(usage_sketch(y, x, w, NULL, dx, dy, 1, 2, 4, 4, 4) == 0, "usage sketch failed");

    // Bad shapes are reported, not aborted on.
    ConvShape s;
    McErr e;
    CHECK(conv_shape_init(&s, 1, 6, 8, 8, 4, 3, 3, 1, 1, 4, &e) == -1 &&
          strstr(e.msg, "multiples of groups"), "Cin not divisible by groups accepted");
    CHECK(conv_shape_init(&s, 1, 3, 2, 2, 4, 7, 7, 1, 1, 1, &e) == -1 &&
          strstr(e.msg, "larger than the padded input"), "kernel larger than input accepted");
    CHECK(conv_shape_init(&s, 1, 3, 8, 8, 4, 3, 3, 0, 1, 1, &e) == -1,
          "stride 0 accepted");
    printf("bad shape message: %s\n", e.msg);

    // Output size floor((H + 2p - k)/s) + 1 and the path choice.
    conv_shape_init(&s, 1, 3, 224, 224, 1024, 14, 14, 14, 0, 1, NULL);
    CHECK(s.Ho == 16 && s.Wo == 16 && s.path == CONV_PATH_IM2COL, "L-14 patch conv shape");
    conv_shape_init(&s, 1, 64, 64, 64, 128, 7, 7, 2, 3, 64, NULL);
    CHECK(s.Ho == 32 && s.path == CONV_PATH_DEPTHWISE, "downsample conv shape");
    conv_shape_init(&s, 1, 64, 64, 64, 192, 1, 1, 1, 0, 1, NULL);
    CHECK(s.path == CONV_PATH_GEMM, "1x1 conv path");
}

int main(void) {
    test_seed(7);
    printf("depthwise kernels: %s, threads %d\n", conv_dw_isa(), mc_threads());
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) run_cfg(&cfgs[i]);
    run_random(40);
    test_gradchecks();
    test_frozen();
    test_threads();
    test_isas();
    test_arena_steady();
    test_api();
    return test_finish("test_conv");
}
