// attnmap.h - attention maps of one head of one attention layer of the
// image tower, drawn over the input image (the paper's Fig. 6).
//
// Dims: S image side, T tokens of the probed layer, G token grid side
// (T = G*G for FastViT; T = 1 + G*G for ViT, the class token first).
//
// The paper's rule (paper-protocol section 10; its hooks on timm FastViT
// Attention modules):
//   P      = softmax(q . scale . k^T) of head h          [T, T] (row = query)
//   m[j]   = mean over queries i of P[i, j]               [T]
//   m      = (m - min m) / (max m - min m)                (all 0 when flat)
//   map    = bilinear upsampling of m as a G x G grid to S x S
//            (PyTorch F.interpolate, align_corners = False: source
//            coordinate (d + 0.5) G / S - 0.5, clamped at 0)
//   image  = (1 - alpha) . input + alpha . jet(map),  alpha = 0.7
// jet is matplotlib's colormap: its segment data sampled into a 256-entry
// table (value v -> entry min(floor(256 v), 255), channels truncated to
// bytes as matplotlib's bytes=True does).  For ViT layers the class token's
// key column is left out (the map covers the G x G patches); the mean still
// runs over every query, class token included.  The paper only drew
// FastViT maps.
//
// Layers are named "stage.K.block.J" (FastViT; also timm's
// "trunk.stages.K.blocks.J.token_mixer") or "block.J" (ViT; also
// "blocks.J").  Only attention blocks have maps: in MobileCLIP2-S0 and S2
// the last stage (3) is the attention stage, 16 heads of 32 dims at S0's
// width 512 (the paper: stage 3, block 1, head 14, an 8 x 8 grid at 256 px).
//
// Usage sketch (compiled by tests/test_attnmap.c):
//
//     int stage, block, G;
//     if (coop_attn_parse_layer(tw, "stage.3.block.1", &stage, &block, &err)) ...;
//     float *map = malloc(S * S * sizeof(float));
//     if (coop_attnmap(tw, x, NULL, stage, block, 14, map, &G, &err)) ...;
//     uint8_t *rgb = malloc(S * S * 3);
//     coop_attn_overlay(map, crop, S, COOP_ATTN_ALPHA, rgb);
//     coop_write_png("map.png", S, S, rgb, &err);
#ifndef MCLIP_COOP_ATTNMAP_H
#define MCLIP_COOP_ATTNMAP_H

#include <stdint.h>

#include "vprompt.h"

#define COOP_ATTN_ALPHA 0.7   // weight of the heat map in the overlay (the paper's)

// Parse a layer name for this tower and check that it is an attention
// layer.  stage is 0 for ViT.  -1 with err naming the valid layers.
int coop_attn_parse_layer(const ImageTower *tw, const char *name, int *stage, int *block,
                          McErr *err);
// Heads of that layer (FastViT: width / 32; ViT: the config's heads).
int coop_attn_heads(const ImageTower *tw, int stage, int block);

// The map [S, S] in [0, 1] of one image x [3, S, S] (normalised, as the
// tower takes it; vp may be NULL, else it is added first).  *grid gets G.
// -1 with err set for a bad layer or head.
int coop_attnmap(ImageTower *tw, const float *x, const CoopVPrompt *vp, int stage, int block,
                 int head, float *map, int *grid, McErr *err);

// ---- the steps, exposed for tests ----

// m [G*G] = mean over the T queries of probs [T, T], keys from `skip` on
// (skip = 1 drops a leading class token), then min-max normalised.
void coop_attn_reduce(const float *probs, int T, int skip, float *m);
// dst [H, W] = bilinear resize of src [h, w] (align_corners = False).
void coop_bilinear(const float *src, int h, int w, float *dst, int H, int W);
// matplotlib's jet as bytes: v in [0, 1] (clamped) -> rgb.
void coop_jet(double v, uint8_t rgb[3]);
// out [S, S, 3] = (1 - alpha) img + alpha jet(map), rounded; img [S, S, 3].
void coop_attn_overlay(const float *map, const uint8_t *img, int S, double alpha,
                       uint8_t *out);
// Bytes of a normalised image x [3, S, S] for display: (x * std + mean)
// clamped to [0, 1], times 255, rounded -> out [S, S, 3].
void coop_attn_display(const float *x, int S, const float mean[3], const float stdv[3],
                       uint8_t *out);
// Write rgb [h, w, 3] as a PNG (atomically).
int  coop_write_png(const char *path, int w, int h, const uint8_t *rgb, McErr *err);

#endif
