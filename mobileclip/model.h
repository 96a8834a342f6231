// model.h - a MobileCLIP2 model loaded from an open_clip checkpoint.
//
// The checkpoint is an open_clip CustomTextCLIP state dict (safetensors, or
// a torch .pt/.bin zip, both through weights.h): `logit_scale` (0-d),
// `visual.*` (image tower) and `text.*`:
//
//   text.token_embedding.weight              [V, W]
//   text.positional_embedding                [T, W]
//   text.transformer.resblocks.K.*           open_clip block names (nn/transformer.h)
//   text.ln_final.{weight,bias}              [W]
//   text.text_projection                     [W, E]
//
// The configuration comes from a model name ("MobileCLIP2-S0" or "S0"; then
// every shape must match it), or is detected from the file:
//   * text sizes from the shapes above, layers by counting resblocks, heads
//     = W / 64 (head size 64 in every MobileCLIP2 text tower);
//   * the variant from the image tower's keys: the FastViT stem width
//     (64 S0, 80 S2, 96 S3, 128 S4) or the ViT class token width (768 B,
//     1024 L-14); only MobileCLIP2-B has a causal text mask;
//   * a file without visual.* keys (a reduced test model) is "custom": its
//     safetensors metadata may set text_causal and text_heads, otherwise the
//     text attention is taken as bidirectional (said in `how`).
// Missing, mis-shaped and unexpected keys are reported together, in one
// error naming the file.
//
// Usage sketch (compiled by tests/test_text.c):
//
//     McErr err;
//     McModel *m = mc_model_load("s0.safetensors", NULL, &err);
//     if (!m) { fprintf(stderr, "%s\n", err.msg); return 1; }
//     fprintf(stderr, "%s: %s\n", m->name, m->how);
//     ... text_tower_forward(g, &m->text, ids, B, NULL, &err) ...
//     mc_model_free(m);
#ifndef MCLIP_MODEL_H
#define MCLIP_MODEL_H

#include "config.h"
#include "image_tower.h"
#include "text.h"

typedef struct McModel {
    McModelConfig cfg;      // cfg.name points into name
    char   name[64];        // "MobileCLIP2-S0", ..., or "custom"
    char   how[256];        // how the config was chosen (for the banner)
    int    has_image_cfg;   // 1 when cfg.image is a known variant's
    TextTower text;
    Tensor *logit_scale;    // [] (a [1] tensor is accepted too): ln of the logit scale
    ImageTower *image;      // visual.trunk.*, or NULL for a text-only custom model
} McModel;

// Load path; name may be NULL (detect).  NULL with err set on any problem.
// The image tower of a known variant is bound too (custom text-only models
// ignore visual.* keys); a FastViT tower is fused at load time.
McModel *mc_model_load(const char *path, const char *name, McErr *err);
// Same, choosing the image tower's form: fuse = 0 keeps the checkpoint's
// training form (every branch, BN and layer scale; `--no-fuse`).
McModel *mc_model_load_fuse(const char *path, const char *name, int fuse, McErr *err);
void     mc_model_free(McModel *m);

// Detect the configuration of an opened checkpoint (see above).  Fills
// cfg, name [64] and how [256]; -1 with err set when the file is not an
// open_clip MobileCLIP2-style checkpoint.
int mc_model_detect(WeightSet *ws, McModelConfig *cfg, char *name, char *how, McErr *err);

#endif
