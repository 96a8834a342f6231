// transformer.h - the pre-LN residual attention block of CLIP-style
// transformers (open_clip ResidualAttentionBlock, timm VisionTransformer
// Block without layer scale).
//
//   x = x + proj(MHA(LN1(x), mask))             MHA: qkv = LN1(x) Wqkv^T + bqkv,
//   x = x + fc2(GELU(fc1(LN2(x))))                   softmax(q k^T / sqrt(HS) + mask) v
//
// Dims: B sequences, T tokens, W width, NH heads, HS = W / NH head size,
// M MLP hidden width (4W in every MobileCLIP2 tower).  The qkv projection
// is one [3W, W] matrix with rows 0..W-1 = q, W..2W-1 = k, 2W..3W-1 = v,
// heads split along channels (h * HS + d); GELU is the exact erf form.
//
// Weight names (prefix + suffix), bound through a WeightSet:
//
//   field    NN_NAMES_OPENCLIP          NN_NAMES_TIMM     shape
//   ln1      ln_1.{weight,bias}         norm1.*           [W]
//   qkv      attn.in_proj_{weight,bias} attn.qkv.*        [3W, W], [3W]
//   proj     attn.out_proj.*            attn.proj.*       [W, W], [W]
//   ln2      ln_2.*                     norm2.*           [W]
//   fc1      mlp.c_fc.*                 mlp.fc1.*         [M, W], [M]
//   fc2      mlp.c_proj.*               mlp.fc2.*         [W, M], [W]
//
// Weights are heap tensors that never require a gradient: a backward pass
// through a block computes d x only (the frozen-tower case of CoOp and
// visual prompting) and allocates no weight gradient buffers.
//
// Usage sketch (compiled by tests/test_text.c):
//
//     NnBlockSpec spec = {.width = 512, .heads = 8, .mlp = 2048,
//                         .ln_eps = 1e-5f, .names = NN_NAMES_OPENCLIP};
//     NnBlock blk;
//     nn_block_bind(&blk, ws, "text.transformer.resblocks.0.", &spec);
//     Tensor *y = nn_block_forward(g, &blk, x, NULL);   // x [B, T, W]
//     nn_block_free(&blk);
#ifndef MCLIP_NN_TRANSFORMER_H
#define MCLIP_NN_TRANSFORMER_H

#include "../autograd/autograd.h"
#include "../mobileclip/weights.h"

typedef enum { NN_NAMES_OPENCLIP, NN_NAMES_TIMM } NnNaming;

typedef struct NnBlockSpec {
    int      width;   // W
    int      heads;   // NH (W % NH == 0)
    int      mlp;     // M hidden width of the MLP
    float    ln_eps;  // 1e-5 (open_clip text, L-14) or 1e-6 (MobileCLIP2-B ViT)
    NnNaming names;
} NnBlockSpec;

typedef struct NnBlock {
    NnBlockSpec spec;
    Tensor *ln1_w, *ln1_b;    // [W], [W]
    Tensor *qkv_w, *qkv_b;    // [3W, W], [3W]
    Tensor *proj_w, *proj_b;  // [W, W], [W]
    Tensor *ln2_w, *ln2_b;    // [W], [W]
    Tensor *fc1_w, *fc1_b;    // [M, W], [M]
    Tensor *fc2_w, *fc2_b;    // [W, M], [W]
} NnBlock;

// Take the block's twelve tensors from ws under prefix (which ends with
// '.').  Missing or mis-shaped keys are recorded in ws (reported by
// ws_finish) and leave zero tensors, so nn_block_free is always valid.
void nn_block_bind(NnBlock *b, WeightSet *ws, const char *prefix, const NnBlockSpec *spec);
void nn_block_free(NnBlock *b);

// y [B, T, W] = block(x [B, T, W]); mask [T, T] additive (-inf allowed) or
// NULL for bidirectional attention.  All tensors are in g's arena.
Tensor *nn_block_forward(Graph *g, const NnBlock *b, Tensor *x, Tensor *mask);

// Number of parameters of one block (for the configuration banner).
int64_t nn_block_params(const NnBlockSpec *spec);

#endif
