// transformer.c - pre-LN residual attention block (see transformer.h).
//
// Reference: open_clip transformer.py ResidualAttentionBlock (ls_1/ls_2 =
// Identity, no qk-norm) and timm vision_transformer.py Block; both compute
// the same function, only the parameter names differ.
#include "transformer.h"

#include <math.h>
#include <stdio.h>

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
    x = ag_add(g, x, ag_linear(g, att, b->proj_w, b->proj_b));

    // x = x + c_proj(GELU(c_fc(LN2(x))))
    h = ag_layernorm(g, x, b->ln2_w, b->ln2_b, s->ln_eps);
    h = ag_gelu(g, ag_linear(g, h, b->fc1_w, b->fc1_b));         // [B, T, M]
    return ag_add(g, x, ag_linear(g, h, b->fc2_w, b->fc2_b));
}
