// ops_shape.c - shape ops: reshape (a view), permute, concat, slice,
// pad2d and row gather; forward and backward side by side.
//
// Every op here moves values without arithmetic, so forward and backward
// are exact; the backward of each adds the output gradient into the
// positions the forward read from.  Dims are described as outer x L x inner
// around the dim an op works on (L = its length).
#include "autograd.h"

#include <string.h>

#define PAR_MIN 32768

// Product of dims [lo, hi) of t.
static int64_t dims_prod(const Tensor *t, int lo, int hi) {
    int64_t p = 1;
    for (int k = lo; k < hi; k++) p *= t->shape[k];
    return p;
}

// ---- reshape: a view ----
//
// The result shares data and grad with a and takes over its tape node, so
// no node is recorded: gradients written through the view land in a's
// buffer directly.  The element count must match.

Tensor *ag_reshape(Graph *g, Tensor *a, int ndim, const int64_t *shape) {
    Tensor *out = arena_alloc(&g->arena, sizeof *out);
    *out = *a;
    tensor_set_shape(out, ndim, shape);  // aborts on a count mismatch
    return out;
}

// ---- permute: out dim k = a dim p[k] ----

typedef struct {
    int64_t od[4];  // out dims (padded with 1s to 4)
    int64_t as[4];  // stride in a of out dim k
} PermPlan;

// Out dims of size 1 are dropped and neighbours that are also neighbours
// in a (as[k] = od[k+1] as[k+1]) merged, then the dims are right-aligned
// with leading 1s: the inner loop runs over the longest run the layout
// allows (a trailing size-1 dim would make every row one element long).
static void permute_plan(const Tensor *a, const int64_t *perm, PermPlan *pp) {
    int64_t st[4], d[4], as[4];
    int64_t s = 1;
    int n = 0;
    for (int k = a->ndim - 1; k >= 0; k--) st[k] = s, s *= a->shape[k];
    for (int k = 0; k < a->ndim; k++) {
        int64_t len = a->shape[perm[k]], stride = st[perm[k]];
        if (len == 1) continue;
        if (n > 0 && as[n - 1] == len * stride) {
            d[n - 1] *= len, as[n - 1] = stride;   // merge with the previous dim
            continue;
        }
        d[n] = len, as[n] = stride, n++;
    }
    for (int k = 0; k < 4; k++) {
        int src = k - (4 - n);
        pp->od[k] = src >= 0 ? d[src] : 1;
        pp->as[k] = src >= 0 ? as[src] : 0;
    }
}

// Gather (dir 0: out[o] = a[map(o)]) or scatter-add (dir 1: a[map(o)] +=
// out[o]); map is one-to-one, so both split over o freely.
static void permute_move(float *out, float *a, const PermPlan *pp, int dir) {
    const int64_t *od = pp->od, *as = pp->as;
    int64_t rows = od[0] * od[1] * od[2];
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (rows * od[3] > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i0 = r / (od[1] * od[2]), i1 = r / od[2] % od[1], i2 = r % od[2];
        float *ar = a + i0 * as[0] + i1 * as[1] + i2 * as[2];
        float *orow = out + r * od[3];
        if (dir == 0)
            for (int64_t j = 0; j < od[3]; j++) orow[j] = ar[j * as[3]];
        else
            for (int64_t j = 0; j < od[3]; j++) ar[j * as[3]] += orow[j];
    }
}

static void permute_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    // d a[map(o)] += d out[o]
    if (!ag_wants(a)) return;
    PermPlan pp;
    permute_plan(a, node->ip, &pp);
    permute_move(out->grad, a->grad, &pp, 1);
}

// p0..p3: out dim k is a's dim p[k].  For a tensor of ndim < 4 the entries
// from ndim on must be -1 or their own index (e.g. (1, 0, 2, 3) on a 2-dim
// tensor); the first ndim entries must be a permutation of 0..ndim-1.
Tensor *ag_permute(Graph *g, Tensor *a, int p0, int p1, int p2, int p3) {
    int p[4] = {p0, p1, p2, p3}, seen[4] = {0};
    char s[96];
    for (int k = 0; k < 4; k++) {
        int ok = k < a->ndim ? p[k] >= 0 && p[k] < a->ndim && !seen[p[k]]++
                             : p[k] == -1 || p[k] == k;
        MC_CHECK(ok, "permute: (%d, %d, %d, %d) is not a permutation of the dims of %s",
                 p0, p1, p2, p3, tensor_shape_str(a, s, sizeof s));
    }
    int64_t perm[4], shape[4];
    for (int k = 0; k < 4; k++) perm[k] = k < a->ndim ? p[k] : k;
    for (int k = 0; k < a->ndim; k++) shape[k] = a->shape[perm[k]];
    Tensor *out = ag_tensor(g, a->ndim, shape);
    PermPlan pp;
    permute_plan(a, perm, &pp);
    permute_move(out->data, a->data, &pp, 0);
    if (ag_needs_grad(g, &a, 1)) {
        AgNode *node = ag_record(g, "permute", permute_backward, out, &a, 1);
        memcpy(node->ip, perm, sizeof perm);
    }
    return out;
}

// ---- concat along dim: out [outer, La + Lb, inner] ----

// Copy (dir 0) or add back (dir 1) rows of len floats between the source
// x [outer, len] and columns [off, off + len) of y [outer, ld].
static void block_move(float *y, int64_t ld, int64_t off, float *x, int64_t len,
                       int64_t outer, int dir) {
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (outer * len > PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        float *yr = y + o * ld + off, *xr = x + o * len;
        if (dir == 0)
            memcpy(yr, xr, (size_t)len * sizeof(float));
        else
            for (int64_t j = 0; j < len; j++) xr[j] += yr[j];
    }
}

static void concat_backward(AgNode *node) {
    Tensor *a = node->in[0], *b = node->in[1], *out = node->out;
    int64_t outer = node->ip[0], la = node->ip[1], lb = node->ip[2];
    // d a, d b = the two column ranges of d out
    if (ag_wants(a)) block_move(out->grad, la + lb, 0, a->grad, la, outer, 1);
    if (ag_wants(b)) block_move(out->grad, la + lb, la, b->grad, lb, outer, 1);
}

Tensor *ag_concat(Graph *g, Tensor *a, Tensor *b, int dim) {
    int nd = a->ndim;
    if (dim < 0) dim += nd;
    int ok = a->ndim == b->ndim && dim >= 0 && dim < nd;
    for (int k = 0; ok && k < nd; k++) ok = k == dim || a->shape[k] == b->shape[k];
    TENSOR_CHECK_PAIR(ok, "concat", "shapes must match except along the concat dim", a, b);
    int64_t shape[MC_MAXDIM];
    for (int k = 0; k < nd; k++) shape[k] = a->shape[k];
    shape[dim] = a->shape[dim] + b->shape[dim];
    Tensor *out = ag_tensor(g, nd, shape);

    // Rows of (dim .. last) blocks: a's block then b's block.
    int64_t outer = dims_prod(a, 0, dim), inner = dims_prod(a, dim + 1, nd);
    int64_t la = a->shape[dim] * inner, lb = b->shape[dim] * inner;
    block_move(out->data, la + lb, 0, a->data, la, outer, 0);
    block_move(out->data, la + lb, la, b->data, lb, outer, 0);

    Tensor *ins[2] = {a, b};
    if (ag_needs_grad(g, ins, 2)) {
        AgNode *node = ag_record(g, "concat", concat_backward, out, ins, 2);
        node->ip[0] = outer, node->ip[1] = la, node->ip[2] = lb;
    }
    return out;
}

// ---- slice: out = a[..., start : start + len, ...] along dim ----

static void slice_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    int64_t outer = node->ip[0], ld = node->ip[1], off = node->ip[2], len = node->ip[3];
    // d a[slice] += d out
    if (!ag_wants(a)) return;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (outer * len > PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        float *d = a->grad + o * ld + off;
        const float *gr = out->grad + o * len;
        for (int64_t j = 0; j < len; j++) d[j] += gr[j];
    }
}

Tensor *ag_slice(Graph *g, Tensor *a, int dim, int64_t start, int64_t len) {
    int nd = a->ndim;
    char s[96];
    if (dim < 0) dim += nd;
    MC_CHECK(dim >= 0 && dim < nd && start >= 0 && len >= 0 && start + len <= a->shape[dim],
             "slice: [%lld, %lld) along dim %d is outside %s", (long long)start,
             (long long)(start + len), dim, tensor_shape_str(a, s, sizeof s));
    int64_t shape[MC_MAXDIM];
    for (int k = 0; k < nd; k++) shape[k] = a->shape[k];
    shape[dim] = len;
    Tensor *out = ag_tensor(g, nd, shape);

    // out rows are the [start, start + len) parts of a's (dim .. last) rows.
    int64_t outer = dims_prod(a, 0, dim), inner = dims_prod(a, dim + 1, nd);
    int64_t ld = a->shape[dim] * inner, off = start * inner, l = len * inner;
    for (int64_t o = 0; o < outer; o++)
        memcpy(out->data + o * l, a->data + o * ld + off, (size_t)l * sizeof(float));

    if (ag_needs_grad(g, &a, 1)) {
        AgNode *node = ag_record(g, "slice", slice_backward, out, &a, 1);
        node->ip[0] = outer, node->ip[1] = ld, node->ip[2] = off, node->ip[3] = l;
    }
    return out;
}

// ---- pad2d: zero padding of the last two dims ----
//
// a [..., H, W] -> out [..., H + top + bottom, W + left + right];
// out[..., i + top, j + left] = a[..., i, j], zeros elsewhere.

static void pad2d_backward(AgNode *node) {
    Tensor *a = node->in[0], *out = node->out;
    int64_t planes = node->ip[0], H = node->ip[1], W = node->ip[2];
    int64_t top = node->ip[3], left = node->ip[4], Ho = node->ip[5], Wo = node->ip[6];
    // d a = the interior of d out
    if (!ag_wants(a)) return;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (planes * H * W > PAR_MIN)
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < H; i++) {
            float *d = a->grad + (p * H + i) * W;
            const float *gr = out->grad + (p * Ho + i + top) * Wo + left;
            for (int64_t j = 0; j < W; j++) d[j] += gr[j];
        }
}

Tensor *ag_pad2d(Graph *g, Tensor *a, int top, int bottom, int left, int right) {
    char s[96];
    MC_CHECK(a->ndim >= 2 && top >= 0 && bottom >= 0 && left >= 0 && right >= 0,
             "pad2d: pads (%d, %d, %d, %d) on %s (need >= 2 dims, pads >= 0)", top, bottom,
             left, right, tensor_shape_str(a, s, sizeof s));
    int nd = a->ndim;
    int64_t H = a->shape[nd - 2], W = a->shape[nd - 1];
    int64_t Ho = H + top + bottom, Wo = W + left + right, planes = a->n / (H * W > 0 ? H * W : 1);
    int64_t shape[MC_MAXDIM];
    for (int k = 0; k < nd; k++) shape[k] = a->shape[k];
    shape[nd - 2] = Ho, shape[nd - 1] = Wo;
    Tensor *out = ag_zeros(g, nd, shape);

    // Copy each row of each plane into the interior.
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (planes * H * W > PAR_MIN)
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < H; i++)
            memcpy(out->data + (p * Ho + i + top) * Wo + left, a->data + (p * H + i) * W,
                   (size_t)W * sizeof(float));

    if (ag_needs_grad(g, &a, 1)) {
        AgNode *node = ag_record(g, "pad2d", pad2d_backward, out, &a, 1);
        node->ip[0] = planes, node->ip[1] = H, node->ip[2] = W;
        node->ip[3] = top, node->ip[4] = left, node->ip[5] = Ho, node->ip[6] = Wo;
    }
    return out;
}

// ---- rows: out [n, D] = x [R, D] rows[i] ----
//
// Backward scatter-adds d out rows into d x; rows may repeat (the padding
// token of every sequence), so tasks are blocks of columns and each adds
// the rows in order i = 0..n-1 (same result for any thread count).

#define ROWS_COLS 64

static void rows_backward(AgNode *node) {
    Tensor *x = node->in[0], *out = node->out;
    const int32_t *rows = node->saved;
    int64_t n = node->ip[0], D = node->ip[1];
    // d x[rows[i]] += d out[i]
    if (!ag_wants(x)) return;
    int64_t n_cb = (D + ROWS_COLS - 1) / ROWS_COLS;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (n * D > PAR_MIN)
    for (int64_t cb = 0; cb < n_cb; cb++) {
        int64_t j0 = cb * ROWS_COLS, nj = D - j0 < ROWS_COLS ? D - j0 : ROWS_COLS;
        for (int64_t i = 0; i < n; i++) {
            float *d = x->grad + (int64_t)rows[i] * D + j0;
            const float *gr = out->grad + i * D + j0;
            for (int64_t j = 0; j < nj; j++) d[j] += gr[j];
        }
    }
}

Tensor *ag_rows(Graph *g, Tensor *x, const int32_t *rows, int64_t n) {
    TENSOR_CHECK_NDIM(x, 2, "rows");
    int64_t R = x->shape[0], D = x->shape[1];
    for (int64_t i = 0; i < n; i++)
        MC_CHECK(rows[i] >= 0 && rows[i] < R, "rows: index %d at position %lld is outside "
                 "[0, %lld)", rows[i], (long long)i, (long long)R);
    int64_t shape[2] = {n, D};
    Tensor *out = ag_tensor(g, 2, shape);

    // Gather.
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (n * D > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        memcpy(out->data + i * D, x->data + (int64_t)rows[i] * D, (size_t)D * sizeof(float));

    if (ag_needs_grad(g, &x, 1)) {
        AgNode *node = ag_record(g, "rows", rows_backward, out, &x, 1);
        // The caller's index array need not outlive this call: keep a copy.
        int32_t *saved = arena_alloc(&g->arena, (size_t)(n > 0 ? n : 1) * sizeof(int32_t));
        memcpy(saved, rows, (size_t)n * sizeof(int32_t));
        node->saved = saved;
        node->ip[0] = n, node->ip[1] = D;
    }
    return out;
}
