// ops_elem.c - elementwise ops (with numpy broadcasting) and full
// reductions: forward and backward side by side.
//
// Broadcasting: shapes are aligned at the last dim and padded on the left
// with 1s to 4 dims; each dim must be equal or 1 in one of the two inputs;
// the output takes the larger.  An input's gradient sums the output
// gradient over the dims it was broadcast along (its 1-sized dims).
//
// Threading: forward loops split independent output elements; backward
// reductions give each thread whole elements of the input gradient, summed
// in a fixed order, so results do not depend on the thread count.
#include "autograd.h"
#include "../tensor/kernels.h"

#include <math.h>

// Loops shorter than this run on one thread (the fork costs more).
#define PAR_MIN 32768
// Columns per task in broadcast reductions.
#define BC_COLS 256

// ---- broadcasting ----

// Padded 4-dim view of an elementwise pair.
typedef struct {
    int64_t o[4];   // output dims
    int64_t sa[4];  // strides of a in output index space (0 = broadcast)
    int64_t sb[4];  // same for b
} Bcast;

// Dims of t padded on the left to 4.
static void pad4(const Tensor *t, int64_t d[4]) {
    int off = 4 - t->ndim;
    for (int k = 0; k < 4; k++) d[k] = k < off ? 1 : t->shape[k - off];
}

// Contiguous strides of padded dims d, 0 where d[k] == 1 (broadcast).
static void bcast_strides(const int64_t d[4], int64_t s[4]) {
    int64_t st = 1;
    for (int k = 3; k >= 0; k--) {
        s[k] = d[k] == 1 ? 0 : st;
        st *= d[k];
    }
}

// Check compatibility (aborting with both shapes) and fill bc.
static int bcast_plan(const char *op, const Tensor *a, const Tensor *b, Bcast *bc) {
    int64_t da[4], db[4];
    pad4(a, da), pad4(b, db);
    int ok = 1;
    for (int k = 0; k < 4; k++) {
        ok &= da[k] == db[k] || da[k] == 1 || db[k] == 1;
        bc->o[k] = da[k] > db[k] ? da[k] : db[k];
    }
    TENSOR_CHECK_PAIR(ok, op, "shapes cannot be broadcast together (numpy rules)", a, b);
    bcast_strides(da, bc->sa), bcast_strides(db, bc->sb);
    return a->ndim > b->ndim ? a->ndim : b->ndim;
}

enum { EW_ADD, EW_SUB, EW_MUL };

static inline float ew_apply(int kind, float x, float y) {
    return kind == EW_ADD ? x + y : kind == EW_SUB ? x - y : x * y;
}

// out = a (op) b over the broadcast index space.
static void ew_forward(int kind, float *out, const float *a, const float *b, const Bcast *bc) {
    const int64_t *o = bc->o, *sa = bc->sa, *sb = bc->sb;
    int64_t rows = o[0] * o[1] * o[2], n = rows * o[3];
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (n > PAR_MIN)
    for (int64_t row = 0; row < rows; row++) {
        int64_t i0 = row / (o[1] * o[2]), i1 = row / o[2] % o[1], i2 = row % o[2];
        const float *ar = a + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        const float *br = b + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        float *y = out + row * o[3];
        // Inner dim: contiguous or broadcast in each input.
        if (sa[3] && sb[3]) {
            for (int64_t j = 0; j < o[3]; j++) y[j] = ew_apply(kind, ar[j], br[j]);
        } else if (sa[3]) {
            for (int64_t j = 0; j < o[3]; j++) y[j] = ew_apply(kind, ar[j], br[0]);
        } else if (sb[3]) {
            for (int64_t j = 0; j < o[3]; j++) y[j] = ew_apply(kind, ar[0], br[j]);
        } else {
            for (int64_t j = 0; j < o[3]; j++) y[j] = ew_apply(kind, ar[0], br[0]);
        }
    }
}

// dx += sign * sum over broadcast dims of dout * m, where x has padded dims
// xd (each equal to o[k] or 1), m (or NULL for ones) has strides sm in the
// output index space.  Tasks: (row of x, block of BC_COLS columns).
static void ew_reduce(float *dx, const int64_t xd[4], const float *dout, const int64_t o[4],
                      const float *m, const int64_t sm[4], float sign) {
    int64_t xrows = xd[0] * xd[1] * xd[2];
    int64_t n_cb = (xd[3] + BC_COLS - 1) / BC_COLS;
    int64_t os[4] = {o[1] * o[2] * o[3], o[2] * o[3], o[3], 1};
    // Ranges of the output index for one x index: the whole dim where x is
    // broadcast, else the single matching index.
    int64_t r0 = xd[0] == o[0] ? 1 : o[0], r1 = xd[1] == o[1] ? 1 : o[1];
    int64_t r2 = xd[2] == o[2] ? 1 : o[2];
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (o[0] * o[1] * o[2] * o[3] > PAR_MIN)
    for (int64_t task = 0; task < xrows * n_cb; task++) {
        int64_t xr = task / n_cb, j0 = task % n_cb * BC_COLS;
        int64_t i0 = xr / (xd[1] * xd[2]), i1 = xr / xd[2] % xd[1], i2 = xr % xd[2];
        int64_t nj = xd[3] - j0 < BC_COLS ? xd[3] - j0 : BC_COLS;
        float *d = dx + xr * xd[3] + j0;
        for (int64_t a0 = 0; a0 < r0; a0++)
            for (int64_t a1 = 0; a1 < r1; a1++)
                for (int64_t a2 = 0; a2 < r2; a2++) {
                    int64_t o0 = r0 > 1 ? a0 : i0, o1 = r1 > 1 ? a1 : i1, o2 = r2 > 1 ? a2 : i2;
                    const float *g = dout + o0 * os[0] + o1 * os[1] + o2 * os[2];
                    const float *mr = m ? m + o0 * sm[0] + o1 * sm[1] + o2 * sm[2] : NULL;
                    if (xd[3] == o[3]) {
                        // Same inner dim: elementwise.
                        for (int64_t j = 0; j < nj; j++)
                            d[j] += sign * g[j0 + j] * (mr ? mr[(j0 + j) * sm[3]] : 1.0f);
                    } else {
                        // x broadcast along the inner dim: sum the row.
                        float s = 0.0f;
                        for (int64_t j = 0; j < o[3]; j++) s += g[j] * (mr ? mr[j * sm[3]] : 1.0f);
                        d[0] += sign * s;
                    }
                }
    }
}

// ---- add, sub, mul: out = a (op) b, broadcast ----

static void ew_backward(AgNode *node, int kind) {
    Tensor *a = node->in[0], *b = node->in[1], *out = node->out;
    Bcast bc;
    bcast_plan(node->op, a, b, &bc);
    int64_t da[4], db[4];
    pad4(a, da), pad4(b, db);
    // d a = dout * (1 | 1 | b),  d b = dout * (1 | -1 | a), reduced.
    if (ag_wants(a))
        ew_reduce(a->grad, da, out->grad, bc.o, kind == EW_MUL ? b->data : NULL, bc.sb, 1.0f);
    if (ag_wants(b))
        ew_reduce(b->grad, db, out->grad, bc.o, kind == EW_MUL ? a->data : NULL, bc.sa,
                  kind == EW_SUB ? -1.0f : 1.0f);
}

static void add_backward(AgNode *node) { ew_backward(node, EW_ADD); }
static void sub_backward(AgNode *node) { ew_backward(node, EW_SUB); }
static void mul_backward(AgNode *node) { ew_backward(node, EW_MUL); }

static Tensor *ew_op(Graph *g, const char *op, int kind, AgBackwardFn bw, Tensor *a,
                     Tensor *b) {
    MC_CHECK(a && b, "%s: NULL input", op);
    Bcast bc;
    int nd = bcast_plan(op, a, b, &bc);
    Tensor *out = ag_tensor(g, nd, bc.o + 4 - nd);
    ew_forward(kind, out->data, a->data, b->data, &bc);
    Tensor *ins[2] = {a, b};
    if (ag_needs_grad(g, ins, 2)) ag_record(g, op, bw, out, ins, 2);
    return out;
}

Tensor *ag_add(Graph *g, Tensor *a, Tensor *b) {
    return ew_op(g, "add", EW_ADD, add_backward, a, b);
}

Tensor *ag_sub(Graph *g, Tensor *a, Tensor *b) {
    return ew_op(g, "sub", EW_SUB, sub_backward, a, b);
}

Tensor *ag_mul(Graph *g, Tensor *a, Tensor *b) {
    return ew_op(g, "mul", EW_MUL, mul_backward, a, b);
}

// ---- scale: out = s a ----

static void scale_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    float s = node->fp[0];
    // d a += s dout
    if (!ag_wants(a)) return;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) a->grad[i] += s * out->grad[i];
}

Tensor *ag_scale(Graph *g, Tensor *a, float s) {
    Tensor *out = ag_tensor(g, a->ndim, a->shape);
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) out->data[i] = s * a->data[i];
    if (ag_needs_grad(g, &a, 1)) ag_record(g, "scale", scale_backward, out, &a, 1)->fp[0] = s;
    return out;
}

// ---- gelu: out = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) ----

static void gelu_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    // d a += dout (Phi(x) + x phi(x))
    if (ag_wants(a)) mc_gelu_backward(a->grad, out->grad, a->data, a->n);
}

Tensor *ag_gelu(Graph *g, Tensor *a) {
    Tensor *out = ag_tensor(g, a->ndim, a->shape);
    mc_gelu_forward(out->data, a->data, a->n);
    if (ag_needs_grad(g, &a, 1)) ag_record(g, "gelu", gelu_backward, out, &a, 1);
    return out;
}

// ---- sigmoid: y = 1 / (1 + exp(-x)) ----

static void sigmoid_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    // d a += dout y (1 - y)
    if (!ag_wants(a)) return;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) {
        float y = out->data[i];
        a->grad[i] += out->grad[i] * y * (1.0f - y);
    }
}

Tensor *ag_sigmoid(Graph *g, Tensor *a) {
    Tensor *out = ag_tensor(g, a->ndim, a->shape);
    // exp of a non-positive argument only: no overflow for large |x|.
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) {
        float x = a->data[i], e = expf(-fabsf(x));
        out->data[i] = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
    if (ag_needs_grad(g, &a, 1)) ag_record(g, "sigmoid", sigmoid_backward, out, &a, 1);
    return out;
}

// ---- relu: y = max(x, 0) ----

static void relu_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    // d a += dout where x > 0 (the subgradient at 0 is taken as 0)
    if (!ag_wants(a)) return;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++)
        if (a->data[i] > 0.0f) a->grad[i] += out->grad[i];
}

Tensor *ag_relu(Graph *g, Tensor *a) {
    Tensor *out = ag_tensor(g, a->ndim, a->shape);
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) out->data[i] = a->data[i] > 0.0f ? a->data[i] : 0.0f;
    if (ag_needs_grad(g, &a, 1)) ag_record(g, "relu", relu_backward, out, &a, 1);
    return out;
}

// ---- exp: y = e^x ----

static void exp_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    // d a += dout y
    if (!ag_wants(a)) return;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) a->grad[i] += out->grad[i] * out->data[i];
}

Tensor *ag_exp(Graph *g, Tensor *a) {
    Tensor *out = ag_tensor(g, a->ndim, a->shape);
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) out->data[i] = expf(a->data[i]);
    if (ag_needs_grad(g, &a, 1)) ag_record(g, "exp", exp_backward, out, &a, 1);
    return out;
}

// ---- sum, mean: [] = sum (or mean) of all elements ----
//
// Summed in double in fixed blocks (mc_sum_f64): a loss over ~10^6 terms
// keeps ~1e-16 relative error instead of ~1e-4 in float.

static void sum_backward(AgNode *node) {
    Tensor *a = node->in[0];
    // d a_i += dout (times 1/n for the mean)
    if (!ag_wants(a)) return;
    float d = node->out->grad[0] * node->fp[0];
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (a->n > PAR_MIN)
    for (int64_t i = 0; i < a->n; i++) a->grad[i] += d;
}

static Tensor *reduce_all(Graph *g, Tensor *a, const char *op, double factor) {
    int64_t none[1] = {1};
    Tensor *out = ag_tensor(g, 0, none);
    out->data[0] = (float)(mc_sum_f64(a->data, a->n) * factor);
    if (ag_needs_grad(g, &a, 1)) ag_record(g, op, sum_backward, out, &a, 1)->fp[0] = (float)factor;
    return out;
}

Tensor *ag_sum(Graph *g, Tensor *a) { return reduce_all(g, a, "sum", 1.0); }

Tensor *ag_mean(Graph *g, Tensor *a) {
    MC_CHECK(a->n > 0, "mean: empty tensor");
    return reduce_all(g, a, "mean", 1.0 / (double)a->n);
}
