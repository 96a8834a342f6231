// ops_linalg.c - matmul and linear layers: forward and backward side by side.
//
// Dims: R = product of the leading dims of x (rows), K = in features,
// N = out features.
#include "autograd.h"
#include "../tensor/gemm.h"

#include <string.h>

static int64_t leading_rows(const Tensor *x) { return x->n / x->shape[x->ndim - 1]; }

// ---- matmul: out [R, N] = a [R, K] @ b [K, N] ----

static void matmul_backward(AgNode *node) {
    Tensor *a = node->in[0], *b = node->in[1], *out = node->out;
    int R = (int)node->ip[0], K = (int)node->ip[1], N = (int)node->ip[2];
    // d a [R, K] += d out [R, N] @ b^T
    if (ag_wants(a)) mc_sgemm(0, 1, R, K, N, 1.0f, out->grad, N, b->data, N, 1.0f, a->grad, K);
    // d b [K, N] += a^T @ d out
    if (ag_wants(b)) mc_sgemm(1, 0, K, N, R, 1.0f, a->data, K, out->grad, N, 1.0f, b->grad, N);
}

Tensor *ag_matmul(Graph *g, Tensor *a, Tensor *b) {
    TENSOR_CHECK_NDIM(b, 2, "matmul");
    TENSOR_CHECK_PAIR(a->ndim >= 1 && a->shape[a->ndim - 1] == b->shape[0], "matmul",
                      "a's last dim must equal b's first dim", a, b);
    int64_t R = leading_rows(a), K = b->shape[0], N = b->shape[1];
    int64_t shape[MC_MAXDIM];
    for (int i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    shape[a->ndim - 1] = N;
    Tensor *out = ag_tensor(g, a->ndim, shape);
    mc_sgemm(0, 0, (int)R, (int)N, (int)K, 1.0f, a->data, (int)K, b->data, (int)N, 0.0f,
             out->data, (int)N);
    Tensor *ins[2] = {a, b};
    if (ag_needs_grad(g, ins, 2)) {
        AgNode *node = ag_record(g, "matmul", matmul_backward, out, ins, 2);
        node->ip[0] = R, node->ip[1] = K, node->ip[2] = N;
    }
    return out;
}

// ---- linear: out [R, N] = x [R, K] @ w[N, K]^T + bias [N] ----

static void linear_backward(AgNode *node) {
    Tensor *x = node->in[0], *w = node->in[1], *bias = node->in[2], *out = node->out;
    int R = (int)node->ip[0], K = (int)node->ip[1], N = (int)node->ip[2];
    // d x [R, K] += d out [R, N] @ w [N, K]
    if (ag_wants(x)) mc_sgemm(0, 0, R, K, N, 1.0f, out->grad, N, w->data, K, 1.0f, x->grad, K);
    // d w [N, K] += d out^T @ x   (skipped for frozen weights)
    if (ag_wants(w)) mc_sgemm(1, 0, N, K, R, 1.0f, out->grad, N, x->data, K, 1.0f, w->grad, K);
    // d bias [N] += sum over rows of d out
    if (ag_wants(bias)) {
        for (int r = 0; r < R; r++) {
            const float *dy = out->grad + (size_t)r * N;
            for (int j = 0; j < N; j++) bias->grad[j] += dy[j];
        }
    }
}

Tensor *ag_linear(Graph *g, Tensor *x, Tensor *w, Tensor *bias) {
    TENSOR_CHECK_NDIM(w, 2, "linear");
    TENSOR_CHECK_PAIR(x->ndim >= 1 && x->shape[x->ndim - 1] == w->shape[1], "linear",
                      "x's last dim must equal w's in-features (w is [out, in])", x, w);
    if (bias)
        TENSOR_CHECK_PAIR(bias->n == w->shape[0], "linear", "bias must be [out]", bias, w);
    int64_t R = leading_rows(x), K = w->shape[1], N = w->shape[0];
    int64_t shape[MC_MAXDIM];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = N;
    Tensor *out = ag_tensor(g, x->ndim, shape);

    // Start from the bias row (beta 1), or overwrite (beta 0), then the product.
    if (bias) {
        #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
            if (R * N > 32768)
        for (int64_t r = 0; r < R; r++)
            memcpy(out->data + r * N, bias->data, (size_t)N * sizeof(float));
    }
    mc_sgemm(0, 1, (int)R, (int)N, (int)K, 1.0f, x->data, (int)K, w->data, (int)K,
             bias ? 1.0f : 0.0f, out->data, (int)N);

    Tensor *ins[3] = {x, w, bias};
    if (ag_needs_grad(g, ins, 3)) {
        AgNode *node = ag_record(g, "linear", linear_backward, out, ins, 3);
        node->ip[0] = R, node->ip[1] = K, node->ip[2] = N;
    }
    return out;
}
