// ops_softmax.c - softmax, log-softmax (last dim) and cross-entropy:
// forward and backward side by side.
//
// Dims: R rows, D entries per row; B rows of logits, K classes.
// Reference: torch.softmax / log_softmax / F.cross_entropy (mean reduction,
// integer class targets).
#include "autograd.h"
#include "../tensor/kernels.h"

#include <math.h>
#include <string.h>

static int64_t last_dim(const Tensor *x, const char *op) {
    MC_CHECK(x->ndim >= 1, "%s: x must have at least one dim", op);
    return x->shape[x->ndim - 1];
}

// ---- softmax: y = exp(x - max) / sum exp(x - max) per row ----

static void softmax_backward(AgNode *node) {
    Tensor *x = node->in[0], *out = node->out;
    // d x += y (dout - rowsum(dout y))
    if (ag_wants(x))
        mc_softmax_backward(x->grad, out->grad, out->data, node->ip[0], node->ip[1]);
}

Tensor *ag_softmax(Graph *g, Tensor *x) {
    int64_t D = last_dim(x, "softmax"), R = D ? x->n / D : 0;
    Tensor *out = ag_tensor(g, x->ndim, x->shape);
    mc_softmax_forward(out->data, x->data, R, D);
    if (ag_needs_grad(g, &x, 1)) {
        AgNode *node = ag_record(g, "softmax", softmax_backward, out, &x, 1);
        node->ip[0] = R, node->ip[1] = D;
    }
    return out;
}

// ---- log_softmax: y = x - max - log(sum exp(x - max)) per row ----

static void log_softmax_backward(AgNode *node) {
    Tensor *x = node->in[0], *out = node->out;
    // d x += dout - exp(y) rowsum(dout)
    if (ag_wants(x))
        mc_log_softmax_backward(x->grad, out->grad, out->data, node->ip[0], node->ip[1]);
}

Tensor *ag_log_softmax(Graph *g, Tensor *x) {
    int64_t D = last_dim(x, "log_softmax"), R = D ? x->n / D : 0;
    Tensor *out = ag_tensor(g, x->ndim, x->shape);
    mc_log_softmax_forward(out->data, x->data, R, D);
    if (ag_needs_grad(g, &x, 1)) {
        AgNode *node = ag_record(g, "log_softmax", log_softmax_backward, out, &x, 1);
        node->ip[0] = R, node->ip[1] = D;
    }
    return out;
}

// ---- cross_entropy: [] = -(1/B) sum_i log_softmax(logits)[i, labels[i]] ----
//
// saved: the log-probabilities [B, K] and a copy of the labels.
//   d logits[i, j] += dout / B (softmax[i, j] - [j == labels[i]])

typedef struct {
    float   *logp;    // [B, K]
    int32_t *labels;  // [B]
} CeSaved;

static void cross_entropy_backward(AgNode *node) {
    Tensor *x = node->in[0], *out = node->out;
    const CeSaved *sv = node->saved;
    int64_t B = node->ip[0], K = node->ip[1];
    if (!ag_wants(x)) return;
    float d = out->grad[0] / (float)B;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (B * K > 32768)
    for (int64_t i = 0; i < B; i++) {
        const float *lp = sv->logp + i * K;
        float *dx = x->grad + i * K;
        for (int64_t j = 0; j < K; j++) dx[j] += d * expf(lp[j]);
        dx[sv->labels[i]] -= d;
    }
}

Tensor *ag_cross_entropy(Graph *g, Tensor *logits, const int32_t *labels) {
    TENSOR_CHECK_NDIM(logits, 2, "cross_entropy");
    int64_t B = logits->shape[0], K = logits->shape[1];
    MC_CHECK(B > 0 && K > 0, "cross_entropy: empty logits [%lld, %lld]", (long long)B,
             (long long)K);
    for (int64_t i = 0; i < B; i++)
        MC_CHECK(labels[i] >= 0 && labels[i] < K, "cross_entropy: label %d of row %lld is "
                 "outside [0, %lld)", labels[i], (long long)i, (long long)K);

    // Log-probabilities, then the mean negative log-likelihood in double.
    float *logp = arena_alloc(&g->arena, (size_t)(B * K) * sizeof(float));
    mc_log_softmax_forward(logp, logits->data, B, K);
    double nll = 0;
    for (int64_t i = 0; i < B; i++) nll -= logp[i * K + labels[i]];
    int64_t none[1] = {1};
    Tensor *out = ag_tensor(g, 0, none);
    out->data[0] = (float)(nll / (double)B);

    if (ag_needs_grad(g, &logits, 1)) {
        AgNode *node = ag_record(g, "cross_entropy", cross_entropy_backward, out, &logits, 1);
        CeSaved *sv = arena_alloc(&g->arena, sizeof *sv);
        sv->logp = logp;
        sv->labels = arena_alloc(&g->arena, (size_t)B * sizeof(int32_t));
        memcpy(sv->labels, labels, (size_t)B * sizeof(int32_t));
        node->saved = sv;
        node->ip[0] = B, node->ip[1] = K;
    }
    return out;
}
