// ops_norm.c - normalisation ops: LayerNorm (last dim), LayerNorm2d (over
// C per pixel of NCHW), BatchNorm in eval form, L2 normalisation; forward
// and backward side by side.
//
// Dims: R rows, D features; N images, C channels, HW = H W pixels.
// References: torch.nn.LayerNorm (biased variance, eps inside the sqrt),
// timm LayerNorm2d (the same over C), torch BatchNorm2d in eval mode,
// torch.nn.functional.normalize (x / max(||x||, eps)).
#include "autograd.h"
#include "../tensor/kernels.h"

#include <math.h>

#define PAR_MIN 32768

// ---- layernorm: x [..., D] -> (x - mean) rstd gamma + beta ----
//
// saved: mean, rstd [R] (rstd = 1 / sqrt(var + eps)).  Backward (see
// mc_layernorm_backward): dx = rstd (g - mean(g) - xhat mean(g xhat)),
// g = dout gamma; dgamma = sum_rows dout xhat; dbeta = sum_rows dout.

static void layernorm_backward(AgNode *node) {
    Tensor *x = node->in[0], *gamma = node->in[1], *beta = node->in[2], *out = node->out;
    const float *mean = node->saved, *rstd = mean + node->ip[0];
    mc_layernorm_backward(ag_wants(x) ? x->grad : NULL,
                          ag_wants(gamma) ? gamma->grad : NULL,
                          ag_wants(beta) ? beta->grad : NULL, out->grad, x->data, mean, rstd,
                          gamma ? gamma->data : NULL, node->ip[0], node->ip[1]);
}

Tensor *ag_layernorm(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps) {
    MC_CHECK(x->ndim >= 1, "layernorm: x must have at least one dim");
    int64_t D = x->shape[x->ndim - 1], R = x->n / (D > 0 ? D : 1);
    if (gamma)
        TENSOR_CHECK_PAIR(gamma->n == D, "layernorm", "gamma must be [D], D = x's last dim",
                          gamma, x);
    if (beta)
        TENSOR_CHECK_PAIR(beta->n == D, "layernorm", "beta must be [D], D = x's last dim",
                          beta, x);
    Tensor *out = ag_tensor(g, x->ndim, x->shape);
    Tensor *ins[3] = {x, gamma, beta};
    int rec = ag_needs_grad(g, ins, 3);
    // Statistics are kept only when a backward will need them.
    float *stats = rec ? arena_alloc(&g->arena, 2 * (size_t)R * sizeof(float)) : NULL;
    mc_layernorm_forward(out->data, stats, stats ? stats + R : NULL, x->data,
                         gamma ? gamma->data : NULL, beta ? beta->data : NULL, R, D, eps);
    if (rec) {
        AgNode *node = ag_record(g, "layernorm", layernorm_backward, out, ins, 3);
        node->saved = stats;
        node->ip[0] = R, node->ip[1] = D;
        node->fp[0] = eps;
    }
    return out;
}

// ---- layernorm2d: x [N, C, H, W], normalised over C at each pixel ----
//
// saved: mean, rstd [N, H W].  Same formulas as layernorm with the C
// channels of one pixel as the row.

static void layernorm2d_backward(AgNode *node) {
    Tensor *x = node->in[0], *gamma = node->in[1], *beta = node->in[2], *out = node->out;
    int64_t N = node->ip[0], C = node->ip[1], HW = node->ip[2];
    const float *mean = node->saved, *rstd = mean + N * HW;
    mc_layernorm2d_backward(ag_wants(x) ? x->grad : NULL,
                            ag_wants(gamma) ? gamma->grad : NULL,
                            ag_wants(beta) ? beta->grad : NULL, out->grad, x->data, mean,
                            rstd, gamma ? gamma->data : NULL, N, C, HW);
}

Tensor *ag_layernorm2d(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps) {
    TENSOR_CHECK_NDIM(x, 4, "layernorm2d");
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    if (gamma)
        TENSOR_CHECK_PAIR(gamma->n == C, "layernorm2d", "gamma must be [C]", gamma, x);
    if (beta)
        TENSOR_CHECK_PAIR(beta->n == C, "layernorm2d", "beta must be [C]", beta, x);
    Tensor *out = ag_tensor(g, 4, x->shape);
    Tensor *ins[3] = {x, gamma, beta};
    int rec = ag_needs_grad(g, ins, 3);
    float *stats = rec ? arena_alloc(&g->arena, 2 * (size_t)(N * HW) * sizeof(float)) : NULL;
    mc_layernorm2d_forward(out->data, stats, stats ? stats + N * HW : NULL, x->data,
                           gamma ? gamma->data : NULL, beta ? beta->data : NULL, N, C, HW, eps);
    if (rec) {
        AgNode *node = ag_record(g, "layernorm2d", layernorm2d_backward, out, ins, 3);
        node->saved = stats;
        node->ip[0] = N, node->ip[1] = C, node->ip[2] = HW;
    }
    return out;
}

// ---- batchnorm (eval): y = (x - mean) / sqrt(var + eps) gamma + beta ----
//
// x [N, C, H, W]; mean, var, gamma, beta [C] (gamma, beta may be NULL).
// Per channel y = x a + b with a = gamma / sqrt(var + eps) (computed in
// float as 1 / sqrt(var + eps) first, as in the reference) and b = beta -
// mean a.  The statistics are constants (eval mode):
//   dx = dout a,  dgamma = sum dout (x - mean) / sqrt(var + eps),
//   dbeta = sum dout  (sums over N, H, W in double, one channel per task).

static void batchnorm_backward(AgNode *node) {
    Tensor *x = node->in[0], *mean = node->in[1], *var = node->in[2];
    Tensor *gamma = node->in[3], *beta = node->in[4], *out = node->out;
    int64_t N = node->ip[0], C = node->ip[1], HW = node->ip[2];
    float eps = node->fp[0];
    int wx = ag_wants(x), wg = ag_wants(gamma), wb = ag_wants(beta);
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (N * C * HW > PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        float inv = 1.0f / sqrtf(var->data[c] + eps);
        float a = gamma ? gamma->data[c] * inv : inv, m = mean->data[c];
        double sg = 0, sb = 0;
        for (int64_t n = 0; n < N; n++) {
            int64_t off = (n * C + c) * HW;
            const float *dy = out->grad + off, *xr = x->data + off;
            // d x = dout a
            if (wx)
                for (int64_t p = 0; p < HW; p++) x->grad[off + p] += dy[p] * a;
            // Parameter sums.
            if (wg)
                for (int64_t p = 0; p < HW; p++) sg += (double)(dy[p] * ((xr[p] - m) * inv));
            if (wb)
                for (int64_t p = 0; p < HW; p++) sb += (double)dy[p];
        }
        if (wg) gamma->grad[c] += (float)sg;
        if (wb) beta->grad[c] += (float)sb;
    }
}

Tensor *ag_batchnorm(Graph *g, Tensor *x, Tensor *mean, Tensor *var, Tensor *gamma,
                     Tensor *beta, float eps) {
    TENSOR_CHECK_NDIM(x, 4, "batchnorm");
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    TENSOR_CHECK_PAIR(mean && mean->n == C, "batchnorm", "running mean must be [C]", mean, x);
    TENSOR_CHECK_PAIR(var && var->n == C, "batchnorm", "running var must be [C]", var, x);
    if (gamma) TENSOR_CHECK_PAIR(gamma->n == C, "batchnorm", "gamma must be [C]", gamma, x);
    if (beta) TENSOR_CHECK_PAIR(beta->n == C, "batchnorm", "beta must be [C]", beta, x);
    Tensor *out = ag_tensor(g, 4, x->shape);

    // y = x a + b per channel plane.
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if (N * C * HW > PAR_MIN)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t c = nc % C;
        float inv = 1.0f / sqrtf(var->data[c] + eps);
        float a = gamma ? gamma->data[c] * inv : inv;
        float b = (beta ? beta->data[c] : 0.0f) - mean->data[c] * a;
        const float *xr = x->data + nc * HW;
        float *y = out->data + nc * HW;
        for (int64_t p = 0; p < HW; p++) y[p] = xr[p] * a + b;
    }

    // Running statistics never get gradients, whatever their flags say.
    Tensor *ins[5] = {x, NULL, NULL, gamma, beta};
    if (ag_needs_grad(g, ins, 5)) {
        ins[1] = mean, ins[2] = var;
        AgNode *node = ag_record(g, "batchnorm", batchnorm_backward, out, ins, 5);
        node->ip[0] = N, node->ip[1] = C, node->ip[2] = HW;
        node->fp[0] = eps;
    }
    return out;
}

// ---- l2norm: y = x / max(||x||, eps) along the last dim ----
//
// saved: the row norms [R].  With n = ||x||:
//   n > eps:  y = x / n,  dx = (dout - y (y . dout)) / n
//   n <= eps: y = x / eps (a constant divisor), dx = dout / eps.
// The squared norm is summed in double (rows are embeddings, D <= 1024).

static void l2norm_backward(AgNode *node) {
    Tensor *x = node->in[0], *out = node->out;
    int64_t R = node->ip[0], D = node->ip[1];
    const float *norms = node->saved;
    float eps = node->fp[0];
    if (!ag_wants(x)) return;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *y = out->data + r * D, *dy = out->grad + r * D;
        float *dx = x->grad + r * D;
        float nr = norms[r];
        if (nr > eps) {
            double yd = 0;
            for (int64_t j = 0; j < D; j++) yd += (double)y[j] * dy[j];
            for (int64_t j = 0; j < D; j++) dx[j] += (dy[j] - y[j] * (float)yd) / nr;
        } else {
            for (int64_t j = 0; j < D; j++) dx[j] += dy[j] / eps;
        }
    }
}

Tensor *ag_l2norm(Graph *g, Tensor *x, float eps) {
    MC_CHECK(x->ndim >= 1, "l2norm: x must have at least one dim");
    int64_t D = x->shape[x->ndim - 1], R = x->n / (D > 0 ? D : 1);
    Tensor *out = ag_tensor(g, x->ndim, x->shape);
    float *norms = arena_alloc(&g->arena, (size_t)(R > 0 ? R : 1) * sizeof(float));
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (R * D > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * D;
        double ss = 0;
        for (int64_t j = 0; j < D; j++) ss += (double)xr[j] * xr[j];
        float nr = (float)sqrt(ss), div = nr > eps ? nr : eps;
        norms[r] = nr;
        for (int64_t j = 0; j < D; j++) out->data[r * D + j] = xr[j] / div;
    }
    if (ag_needs_grad(g, &x, 1)) {
        AgNode *node = ag_record(g, "l2norm", l2norm_backward, out, &x, 1);
        node->saved = norms;
        node->ip[0] = R, node->ip[1] = D;
        node->fp[0] = eps;
    }
    return out;
}
