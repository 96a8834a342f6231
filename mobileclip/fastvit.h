// fastvit.h - FastViT "MCi" image trunks (MobileCLIP2-S0, S2, S3, S4).
//
// Follows timm 1.0.29 models/fastvit.py (FastVit with the fastvit_mci0/2/3/4
// arguments) as open_clip's TimmModel builds it (num_classes = E, avg pool,
// the trunk's head.fc is the image projection); ../shared/arch-spec.md
// sections 2, 3 and 7.  Dims: N images, C channels, H, W spatial,
// T = H*W tokens of an attention stage, E embedding width.
//
//   stem      3 MobileOneBlocks (3x3 s2, depthwise 3x3 s2, 1x1), GELU each
//   stage k   [k > 0: PatchEmbed = ReparamLargeKernelConv 7x7|3x3 s2
//              (groups C_in, C_out = 2 C_in) -> SE? -> GELU -> MobileOne 1x1]
//             [attention stages: RepCPE x + dw7x7(x)]
//             blocks: RepMixerBlock or AttentionBlock, each followed by a
//             ConvMlp branch with layer scale
//   final_conv MobileOne 3x3 (groups C, 2C out) -> SE -> GELU
//   head      global average pool -> Linear(2C -> E) with bias
//
// Two forms:
//   * training form (fuse = 0): every branch, BN and layer scale exactly as
//     the checkpoint stores them, computed branch by branch;
//   * fused form (fuse = 1), computed at load time in double precision:
//     - MobileOneBlock: identity BN, 1x1 scale and kxk branches -> one conv
//       with bias (timm reparameterize);
//     - ReparamLargeKernelConv: 7x7 + zero-padded 3x3 -> one 7x7 conv;
//     - RepMixer: K_id + gamma (K_mixer - K_norm), residual absorbed;
//     - RepCPE: K_id + K_pos_enc, residual absorbed;
//     and, beyond what timm fuses (all exact algebra):
//     - ConvMlp depthwise 7x7 conv + BN -> conv with bias;
//     - the block layer scales gamma folded into the rows of the
//       following output projection (mlp.fc2, attention proj);
//     - the AttentionBlock BatchNorm (S0/S2) folded into qkv:
//       W' = W diag(a), b' = W d for BN(x) = a x + d (qkv gains a bias).
//     The S3/S4 LayerNorm2d and the SE modules stay as they are.
//
// Limitations: only the train-time checkpoint layout is read (open_clip
// saves that layout); a checkpoint already holding timm's reparam_conv keys
// is reported as unexpected keys.
#ifndef MCLIP_FASTVIT_H
#define MCLIP_FASTVIT_H

#include "image_tower.h"

typedef struct FastVit FastVit;

// Build the trunk from ws, keys under prefix (open_clip: "visual.trunk").
// embed is E.  Returns NULL with err set when cfg cannot be built (for
// example an attention stage whose width is not a multiple of 32); missing
// keys are left to ws_finish.
FastVit *fastvit_load(WeightSet *ws, const char *prefix, const McFastVitConfig *cfg, int embed,
                      int fuse, McErr *err);
void     fastvit_free(FastVit *m);

// x [N, 3, S, S] -> [N, E]; hooks may be NULL (see image_tower.h).  Not
// reentrant: inference passes use the trunk's scratch graphs.
Tensor *fastvit_forward(Graph *g, FastVit *m, Tensor *x, McImageHooks *hooks);

const McParamList *fastvit_params(const FastVit *m);
int fastvit_fused(const FastVit *m);

// timm's make_divisible(v, divisor, round_limit=0): channel counts of SE.
int fastvit_make_divisible(double v, int divisor);

#endif
