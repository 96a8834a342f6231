// transformer.c - pre-LN residual attention block (see transformer.h).
//
// Reference: open_clip transformer.py ResidualAttentionBlock (ls_1/ls_2 =
// Identity, no qk-norm) and timm vision_transformer.py Block; both compute
// the same function, only the parameter names differ.
#include "transformer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../tensor/gemm.h"
#include "../tensor/kernels.h"
#include "../tensor/simd.h"

// ---- binding ----

// Parameter suffixes per naming scheme, in NnBlock field order.
enum { P_LN1_W, P_LN1_B, P_QKV_W, P_QKV_B, P_PROJ_W, P_PROJ_B,
       P_LN2_W, P_LN2_B, P_FC1_W, P_FC1_B, P_FC2_W, P_FC2_B, P_COUNT };

static const char *const names_openclip[P_COUNT] = {
    "ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
    "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
    "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
};

static const char *const names_timm[P_COUNT] = {
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
    "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
};

static Tensor *take(WeightSet *ws, const char *prefix, const char *suffix,
                    int ndim, int64_t d0, int64_t d1) {
    char key[512];
    snprintf(key, sizeof key, "%s%s", prefix, suffix);
    const int64_t shape[2] = {d0, d1};
    return ws_take(ws, key, ndim, shape);
}

void nn_block_bind(NnBlock *b, WeightSet *ws, const char *prefix, const NnBlockSpec *spec) {
    MC_CHECK(spec->width > 0 && spec->heads > 0 && spec->width % spec->heads == 0 &&
             spec->mlp > 0, "nn_block_bind: bad spec W=%d NH=%d M=%d", spec->width,
             spec->heads, spec->mlp);
    const char *const *nm = spec->names == NN_NAMES_TIMM ? names_timm : names_openclip;
    int64_t W = spec->width, M = spec->mlp;
    b->spec = *spec;

    // Attention half: LN1, packed q/k/v projection, output projection.
    b->ln1_w  = take(ws, prefix, nm[P_LN1_W], 1, W, 1);
    b->ln1_b  = take(ws, prefix, nm[P_LN1_B], 1, W, 1);
    b->qkv_w  = take(ws, prefix, nm[P_QKV_W], 2, 3 * W, W);
    b->qkv_b  = take(ws, prefix, nm[P_QKV_B], 1, 3 * W, 1);
    b->proj_w = take(ws, prefix, nm[P_PROJ_W], 2, W, W);
    b->proj_b = take(ws, prefix, nm[P_PROJ_B], 1, W, 1);

    // MLP half: LN2, W -> M, GELU, M -> W.
    b->ln2_w  = take(ws, prefix, nm[P_LN2_W], 1, W, 1);
    b->ln2_b  = take(ws, prefix, nm[P_LN2_B], 1, W, 1);
    b->fc1_w  = take(ws, prefix, nm[P_FC1_W], 2, M, W);
    b->fc1_b  = take(ws, prefix, nm[P_FC1_B], 1, M, 1);
    b->fc2_w  = take(ws, prefix, nm[P_FC2_W], 2, W, M);
    b->fc2_b  = take(ws, prefix, nm[P_FC2_B], 1, W, 1);
}

void nn_block_free(NnBlock *b) {
    Tensor **all[P_COUNT] = {&b->ln1_w, &b->ln1_b, &b->qkv_w, &b->qkv_b, &b->proj_w,
                             &b->proj_b, &b->ln2_w, &b->ln2_b, &b->fc1_w, &b->fc1_b,
                             &b->fc2_w, &b->fc2_b};
    for (int i = 0; i < P_COUNT; i++) {
        tensor_free(*all[i]);
        *all[i] = NULL;
    }
}

int64_t nn_block_params(const NnBlockSpec *spec) {
    int64_t W = spec->width, M = spec->mlp;
    return 4 * W                    // two LayerNorms
         + 3 * W * W + 3 * W        // qkv
         + W * W + W                // out projection
         + M * W + M + W * M + W;   // MLP
}

// ---- fused residual branches (tape ops; the weights are frozen) ----
//
// Both branches end in "x + something": the output starts as x + bias and
// the last GEMM accumulates onto it, so no separate add pass or product
// tensor is made.  The recorded and the plain (inference) pass run the same
// arithmetic, so they give identical outputs, and task cuts and GEMM shapes
// depend only on the tensor shapes (identical for any thread count).

// The plain loops carry `omp simd`: at -O2 GCC vectorises a loop of unknown
// length only when told to.
static int frozen(const Tensor *t) { return !t || !t->requires_grad; }

// out [R, N] = (x + bias) + a [R, K] w^T, w [N, K]: the attention output
// projection with its residual.  Backward: dx += dout, da += dout w.
static void proj_res_backward(AgNode *node) {
    Tensor *x = node->in[0], *a = node->in[1], *out = node->out;
    const Tensor *w = node->saved;
    int R = (int)node->ip[0], K = (int)node->ip[1], N = (int)node->ip[2];
    if (ag_wants(x)) {
        #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
            if ((int64_t)R * N > 32768)
        for (int r = 0; r < R; r++)
            mc_isa()->axpy(x->grad + (size_t)r * N, 1.0f, out->grad + (size_t)r * N, N);
    }
    if (ag_wants(a)) mc_sgemm(0, 0, R, K, N, 1.0f, out->grad, N, w->data, K, 1.0f, a->grad, K);
}

static Tensor *proj_residual(Graph *g, Tensor *x, Tensor *a, Tensor *w, Tensor *bias) {
    if (!frozen(w) || !frozen(bias)) return ag_add(g, x, ag_linear(g, a, w, bias));
    int N = (int)w->shape[0], K = (int)w->shape[1];
    int R = (int)(a->n / K);
    Tensor *out = ag_tensor(g, x->ndim, x->shape);
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if ((int64_t)R * N > 32768)
    for (int r = 0; r < R; r++) {
        const float *xr = x->data + (size_t)r * N;
        float *o = out->data + (size_t)r * N;
        const float *bv = bias->data;
        #pragma omp simd
        for (int j = 0; j < N; j++) o[j] = xr[j] + bv[j];
    }
    mc_sgemm(0, 1, R, N, K, 1.0f, a->data, K, w->data, K, 1.0f, out->data, N);
    Tensor *ins[2] = {x, a};
    if (ag_needs_grad(g, ins, 2)) {
        AgNode *node = ag_record(g, "block_proj_residual", proj_res_backward, out, ins, 2);
        node->saved = w;
        node->ip[0] = R, node->ip[1] = K, node->ip[2] = N;
    }
    return out;
}

// out = x + fc2(GELU(fc1(LN2(x)))) over x [R, W] rows: hn = LN2(x);
// hid [R, M] = b1 + hn W1^T, GELU in place (recording keeps the
// pre-activations and the LN statistics instead); out = (x + b2) + hid W2^T.
// Whole-matrix GEMMs, cut once per thread (mc_sgemm): smaller row blocks
// would keep hid in cache but make OpenBLAS pack W1 and W2 once per block,
// which costs more than it saves at these widths.  Backward (weights
// frozen): dhid = dout W2, dpre = dhid GELU'(pre), dhn = dpre W1,
// dx += dout + LN2 backward of dhn.

typedef struct {
    const NnBlock *b;
    int R, W, M;
    float *pre;     // [R, M] pre-activations
    float *stats;   // [2 R] LN2 mean, rstd
    float *dhid, *dpre, *dhn;   // backward scratch [R, M], [R, M], [R, W]
} MlpRes;

static void mlp_res_backward(AgNode *node) {
    Tensor *x = node->in[0], *out = node->out;
    const MlpRes *t = node->saved;
    const NnBlock *b = t->b;
    int R = t->R, W = t->W, M = t->M;
    if (!ag_wants(x)) return;
    // dhid = dout W2, dpre = dhid GELU'(pre), dhn = dpre W1
    mc_sgemm(0, 0, R, M, W, 1.0f, out->grad, W, b->fc2_w->data, M, 0.0f, t->dhid, M);
    memset(t->dpre, 0, (size_t)R * M * sizeof(float));
    mc_gelu_backward(t->dpre, t->dhid, t->pre, (int64_t)R * M);
    mc_sgemm(0, 0, R, W, M, 1.0f, t->dpre, M, b->fc1_w->data, W, 0.0f, t->dhn, W);
    // dx += dout (residual) + LN2 backward of dhn
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if ((int64_t)R * W > 32768)
    for (int r = 0; r < R; r++)
        mc_isa()->axpy(x->grad + (size_t)r * W, 1.0f, out->grad + (size_t)r * W, W);
    mc_layernorm_backward(x->grad, NULL, NULL, t->dhn, x->data, t->stats, t->stats + R,
                          b->ln2_w->data, R, W);
}

static Tensor *mlp_residual(Graph *g, Tensor *x, const NnBlock *b) {
    const Tensor *wts[] = {b->ln2_w, b->ln2_b, b->fc1_w, b->fc1_b, b->fc2_w, b->fc2_b};
    int all_frozen = 1;
    for (int i = 0; i < 6; i++) all_frozen &= frozen(wts[i]);
    if (!all_frozen) {
        Tensor *h = ag_layernorm(g, x, b->ln2_w, b->ln2_b, b->spec.ln_eps);
        h = ag_gelu(g, ag_linear(g, h, b->fc1_w, b->fc1_b));
        return ag_add(g, x, ag_linear(g, h, b->fc2_w, b->fc2_b));
    }
    int W = b->spec.width, M = b->spec.mlp, R = (int)(x->n / W);
    int rec = ag_needs_grad(g, &x, 1);
    MlpRes *t = rec ? arena_calloc(&g->arena, sizeof *t) : NULL;
    float *hn = arena_alloc(&g->arena, (size_t)R * W * sizeof(float));
    float *hid = arena_alloc(&g->arena, (size_t)R * M * sizeof(float));
    float *stats = rec ? arena_alloc(&g->arena, 2 * (size_t)R * sizeof(float)) : NULL;

    // hn = LN2(x)
    mc_layernorm_forward(hn, stats, stats ? stats + R : NULL, x->data, b->ln2_w->data,
                         b->ln2_b->data, R, W, b->spec.ln_eps);
    // pre = b1 + hn W1^T (into hid, or a kept buffer when recording); GELU
    float *pre = rec ? arena_alloc(&g->arena, (size_t)R * M * sizeof(float)) : hid;
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if ((int64_t)R * M > 32768)
    for (int r = 0; r < R; r++) memcpy(pre + (size_t)r * M, b->fc1_b->data, (size_t)M * 4);
    mc_sgemm(0, 1, R, M, W, 1.0f, hn, W, b->fc1_w->data, W, 1.0f, pre, M);
    mc_gelu_forward(hid, pre, (int64_t)R * M);
    // out = (x + b2) + hid W2^T
    Tensor *out = ag_tensor(g, x->ndim, x->shape);
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) \
        if ((int64_t)R * W > 32768)
    for (int r = 0; r < R; r++) {
        const float *xr = x->data + (size_t)r * W;
        float *o = out->data + (size_t)r * W;
        const float *bv = b->fc2_b->data;
        #pragma omp simd
        for (int j = 0; j < W; j++) o[j] = xr[j] + bv[j];
    }
    mc_sgemm(0, 1, R, W, M, 1.0f, hid, M, b->fc2_w->data, M, 1.0f, out->data, W);

    if (rec) {
        t->b = b, t->R = R, t->W = W, t->M = M, t->pre = pre, t->stats = stats;
        // Backward scratch from the arena now (the backward has none): the
        // LN output and hidden buffers are free by then and are reused.
        t->dhid = hid, t->dhn = hn;
        t->dpre = arena_alloc(&g->arena, (size_t)R * M * sizeof(float));
        ag_record(g, "block_mlp_residual", mlp_res_backward, out, &x, 1)->saved = t;
    }
    return out;
}

// ---- forward ----

Tensor *nn_block_forward(Graph *g, const NnBlock *b, Tensor *x, Tensor *mask) {
    const NnBlockSpec *s = &b->spec;
    TENSOR_CHECK_NDIM(x, 3, "nn_block_forward");
    MC_CHECK(x->shape[2] == s->width, "nn_block_forward: x has width %lld, block wants %d",
             (long long)x->shape[2], s->width);
    // scale = 1/sqrt(HS), as open_clip's Attention (head_dim ** -0.5).
    float scale = 1.0f / sqrtf((float)(s->width / s->heads));

    // x = x + out_proj(MHA(LN1(x)))
    Tensor *h = ag_layernorm(g, x, b->ln1_w, b->ln1_b, s->ln_eps);
    Tensor *qkv = ag_linear(g, h, b->qkv_w, b->qkv_b);           // [B, T, 3W]
    Tensor *att = ag_attention(g, qkv, s->heads, mask, scale);    // [B, T, W]
    x = proj_residual(g, x, att, b->proj_w, b->proj_b);

    // x = x + c_proj(GELU(c_fc(LN2(x))))
    return mlp_residual(g, x, b);
}
