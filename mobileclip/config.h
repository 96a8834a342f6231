// config.h - the six MobileCLIP2 variants as open_clip configures them.
//
// Values from ../shared/arch-spec.md sections 1, 3.9, 4, 5 and 9 (open_clip
// model configs plus the `dfndr2b` pretrained-tag preprocessing).  Tests may
// also build reduced configs (fewer layers, narrower stages, smaller
// vocabulary) of the same block types.
#ifndef MCLIP_CONFIG_H
#define MCLIP_CONFIG_H

#include <stdint.h>

typedef enum { MC_TRUNK_FASTVIT, MC_TRUNK_VIT_B_MCI, MC_TRUNK_VIT_L14 } McTrunkKind;
typedef enum { MC_INTERP_BILINEAR, MC_INTERP_BICUBIC } McInterp;

typedef struct McTextConfig {
    int vocab;        // 49408
    int context;      // 77
    int width;        // W: 512 or 768
    int heads;        // W / 64
    int layers;       // 12
    int embed;        // E: projection output
    int causal;       // 1 only for MobileCLIP2-B
} McTextConfig;

typedef struct McFastVitConfig {
    int n_stages;             // 4 (S0, S2) or 5 (S3, S4)
    int widths[5];
    int depths[5];
    int attn[5];              // 1: attention mixer (with RepCPE), 0: RepMixer
    int se_downsample[5];     // 1: SE after the stage's large-kernel conv
    int mlp_ratio;            // 3 or 4
    int attn_layernorm;       // 1: LayerNorm2d in attention blocks (S3/S4), 0: BN
    int stem_scale_branch;    // 1: stem convs have the 1x1 scale branch
} McFastVitConfig;

typedef struct McVitConfig {
    int width, heads, layers, mlp;
    int patch;          // 14 for L-14; 16 (conv stem) for B
    float ln_eps;       // 1e-6 (B) or 1e-5 (L-14)
    int conv_stem;      // 1: B's 3-conv stem with BN + GELU
    int norm_pre;       // 1: L-14 LayerNorm before the blocks
    int cls_has_pos;    // 1: pos_embed covers the class token (L-14)
} McVitConfig;

typedef struct McImageConfig {
    McTrunkKind kind;
    int image_size;     // 256 or 224
    McInterp interp;
    float mean[3], std[3];
    int embed;          // E
    McFastVitConfig fastvit;
    McVitConfig vit;
} McImageConfig;

typedef struct McModelConfig {
    const char *name;   // "MobileCLIP2-S0", ...
    McTextConfig text;
    McImageConfig image;
} McModelConfig;

// The config of a model name ("MobileCLIP2-S0", "S0", case-insensitive), or
// NULL.  mc_config_names lists the known names.
const McModelConfig *mc_config_find(const char *name);
extern const char *const mc_config_names[];
extern const int mc_config_count;

#endif
