// config.c - the six MobileCLIP2 configurations (see config.h).
#include "config.h"

#include <ctype.h>
#include <string.h>

#define OPENAI_MEAN {0.48145466f, 0.4578275f, 0.40821073f}
#define OPENAI_STD  {0.26862954f, 0.26130258f, 0.27577711f}
#define TEXT512(causal) {49408, 77, 512, 8, 12, 512, causal}
#define TEXT768 {49408, 77, 768, 12, 12, 768, 0}

static const McModelConfig configs[] = {
    {"MobileCLIP2-S0", TEXT512(0),
     {MC_TRUNK_FASTVIT, 256, MC_INTERP_BILINEAR, {0, 0, 0}, {1, 1, 1}, 512,
      {4, {64, 128, 256, 512}, {2, 6, 10, 2}, {0, 0, 0, 1}, {0, 0, 1, 1}, 3, 0, 1}, {0}}},
    {"MobileCLIP2-S2", TEXT512(0),
     {MC_TRUNK_FASTVIT, 256, MC_INTERP_BILINEAR, {0, 0, 0}, {1, 1, 1}, 512,
      {4, {80, 160, 320, 640}, {4, 12, 24, 4}, {0, 0, 0, 1}, {0, 0, 1, 1}, 3, 0, 1}, {0}}},
    {"MobileCLIP2-B", TEXT512(1),
     {MC_TRUNK_VIT_B_MCI, 224, MC_INTERP_BILINEAR, {0, 0, 0}, {1, 1, 1}, 512, {0},
      {768, 12, 12, 3072, 16, 1e-6f, 1, 0, 0}}},
    {"MobileCLIP2-S3", TEXT768,
     {MC_TRUNK_FASTVIT, 256, MC_INTERP_BILINEAR, OPENAI_MEAN, OPENAI_STD, 768,
      {5, {96, 192, 384, 768, 1536}, {2, 12, 24, 4, 2}, {0, 0, 0, 1, 1}, {0}, 4, 1, 0}, {0}}},
    {"MobileCLIP2-S4", TEXT768,
     {MC_TRUNK_FASTVIT, 256, MC_INTERP_BILINEAR, OPENAI_MEAN, OPENAI_STD, 768,
      {5, {128, 256, 512, 1024, 2048}, {2, 12, 24, 4, 4}, {0, 0, 0, 1, 1}, {0}, 4, 1, 0}, {0}}},
    {"MobileCLIP2-L-14", TEXT768,
     {MC_TRUNK_VIT_L14, 224, MC_INTERP_BICUBIC, OPENAI_MEAN, OPENAI_STD, 768, {0},
      {1024, 16, 24, 4096, 14, 1e-5f, 0, 1, 1}}},
};

const char *const mc_config_names[] = {"MobileCLIP2-S0", "MobileCLIP2-S2", "MobileCLIP2-B",
                                       "MobileCLIP2-S3", "MobileCLIP2-S4", "MobileCLIP2-L-14"};
const int mc_config_count = (int)(sizeof configs / sizeof configs[0]);

static int same_ci(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

const McModelConfig *mc_config_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < mc_config_count; i++) {
        const char *full = configs[i].name;
        const char *tail = full + strlen("MobileCLIP2-");
        if (same_ci(name, full) || same_ci(name, tail)) return &configs[i];
    }
    return NULL;
}
