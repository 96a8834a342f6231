// randmodel.h - RANDOM-WEIGHT MobileCLIP2 checkpoints of a real shape, for
// the demo, memory and speed measurements, and tests.  Nothing about them
// is trained: every output made with one must say "random weights".
//
// The file is an open_clip-layout safetensors checkpoint (logit_scale,
// visual.trunk.* in the FastViT training form, text.*) that loads through
// mc_model_load like a released one; its metadata carries
//   mclip_random_weights = "1", mclip_random_seed, mclip_random_recipe
// so tools can label results.  Only FastViT image towers (S0, S2, S3, S4)
// are generated; text_only writes a text tower without image keys (a
// "custom" model for mc_model_load, with text_heads in the metadata).
//
// Recipe (after ../shared/arch-spec.md section 12, values rounded to fp16
// and stored as F16; each tensor drawn from its own stream, seeded by
// fnv1a64(name) ^ seed, through coop/rng.h):
//   conv / linear weights   N(0, 1/fan_in), half the std on residual output
//                           projections (attn out_proj, mlp c_proj, FastViT
//                           token_mixer.proj, mlp.fc2); the text projection
//                           N(0, 1/W)
//   biases                  N(0, 0.05^2)
//   BN / LN weight          U(0.5, 1.5);  BN / LN bias  N(0, 0.2^2)
//   BN running_mean         N(0, 0.2^2);  running_var   U(0.5, 1.5)
//   layer-scale gamma       U(0.1, 0.6)
//   token embedding         N(0, 0.02^2); positional    N(0, 0.01^2)
//   logit_scale             ln 100
// The BN statistics are drawn, not measured on data as section 12 does, so
// activations of deep FastViT stages are less well scaled than the
// reference generator's; image features are still distinct per image.
//
// Usage sketch (compiled by tests/test_coop_train.c):
//
//     if (coop_randmodel_write("/tmp/s0.safetensors", mc_config_find("S0"), 1, 0, &err)) ...;
//     McModel *m = mc_model_load("/tmp/s0.safetensors", "MobileCLIP2-S0", &err);
#ifndef MCLIP_COOP_RANDMODEL_H
#define MCLIP_COOP_RANDMODEL_H

#include <stdint.h>

#include "../mobileclip/config.h"
#include "../tensor/tensor.h"

#define COOP_RANDMODEL_RECIPE "mclip-random-v1"

// Write the checkpoint atomically.  -1 with err set (a ViT config, or an
// I/O problem).
int coop_randmodel_write(const char *path, const McModelConfig *cfg, uint64_t seed,
                         int text_only, McErr *err);

// 1 if the safetensors metadata of path marks it as random weights.
int coop_randmodel_is_random(const char *path);

#endif
