// vit.h - ViT image trunks of MobileCLIP2-B and MobileCLIP2-L-14.
//
// Follows timm 1.0.29 VisionTransformer as open_clip's TimmModel builds it
// (global_pool 'token', num_classes = E so timm's head Linear is the image
// projection); ../shared/arch-spec.md section 4.  Dims: N images, D width,
// h x w token grid, T = h*w patch tokens (+1 class token), E embedding.
//
//   B (vit_base_mci_224, cfg.conv_stem):
//     stem   conv 4x4 s4 (3 -> D/4) + BN + GELU, conv 2x2 s2 (D/4 -> D/4)
//            + BN + GELU, conv 2x2 s2 (D/4 -> D) with bias; padding 0
//     tokens x + pos_embed [1, T, D] on the patch tokens, then the class
//            token prepended (it gets no position term)
//   L-14 (vit_large_patch14_clip_224):
//     stem   conv PxP sP (3 -> D) without bias
//     tokens class token prepended, then pos_embed [1, T+1, D] added;
//            norm_pre LayerNorm (cfg.norm_pre)
//   both: cfg.layers pre-LN blocks (nn/transformer.h, timm names, LN eps
//   cfg.ln_eps), final LayerNorm `norm`, token 0, head Linear(D -> E, bias).
//
// Fused form (fuse = 1): the B stem BatchNorms are folded into their convs
// (K' = K gamma / sqrt(var + eps), b' = beta - mean gamma / sqrt(var + eps));
// nothing else changes.  The token grid follows from cfg->image_size.
#ifndef MCLIP_VIT_H
#define MCLIP_VIT_H

#include "image_tower.h"

typedef struct Vit Vit;

// Build from ws, keys under prefix ("visual.trunk").  image_size S gives
// the grid: B h = ((S - 4)/4 + 1 - 2)/2 + 1 ... (three valid convs), L-14
// h = (S - P)/P + 1.  Returns NULL with err set on a config it cannot build.
Vit *vit_load(WeightSet *ws, const char *prefix, const McVitConfig *cfg, int image_size,
              int embed, int fuse, McErr *err);
void vit_free(Vit *m);

// x [N, 3, S, S] -> [N, E]; hooks may be NULL (attn_block = layer index).
// Not reentrant: inference passes use the trunk's scratch graphs.
Tensor *vit_forward(Graph *g, Vit *m, Tensor *x, McImageHooks *hooks);

// Parameter tensors (the blocks' included): i in [0, vit_param_count).
int     vit_param_count(const Vit *m);
Tensor *vit_param(const Vit *m, int i);
int     vit_fused(const Vit *m);

#endif
