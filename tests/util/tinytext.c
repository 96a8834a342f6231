// tinytext.c - see tinytext.h.
#include "tinytext.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../mobileclip/safetensors.h"
#include "check.h"

// Fill buf with normal draws of the given std (gammas + 1) and add the
// tensor name [shape] to w.
static void add(StWriter *w, float *buf, const char *name, double std, int nd,
                const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= shape[d];
    test_fill_normal(buf, (size_t)n, std);
    if (strstr(name, "ln_") && strstr(name, "weight"))
        for (int64_t i = 0; i < n; i++) buf[i] += 1.0f;
    st_writer_add_f32(w, name, nd, shape, buf);
}

void tiny_text_write(const char *path, TinyTextDims d, int causal, int extra) {
    const int64_t V = d.vocab, T = d.context, W = d.width, E = d.embed;
    enum { STEM = 64 * 3 * 3 * 3 };   // the TINY_VISUAL tensor
    int64_t most = (V > 4 * W ? V : 4 * W) * W;
    if (T * W > most) most = T * W;
    if (W * E > most) most = W * E;
    if (STEM > most) most = STEM;
    float *buf = mc_malloc((size_t)most * sizeof *buf);
    StWriter *w = st_writer_new();
#define ADD(name, std, ...) do { \
        const int64_t shp[] = {__VA_ARGS__}; \
        add(w, buf, name, std, (int)(sizeof shp / sizeof shp[0]), shp); } while (0)

    // Embeddings, the blocks, the final LayerNorm and the projection.
    ADD("text.token_embedding.weight", 0.5, V, W);
    ADD("text.positional_embedding", 0.3, T, W);
    const char *suf[] = {"ln_1.weight", "ln_1.bias", "attn.in_proj_weight",
                         "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
                         "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                         "mlp.c_proj.weight", "mlp.c_proj.bias"};
    const int64_t d0[] = {W, W, 3 * W, 3 * W, W, W, W, W, 4 * W, 4 * W, W, W};
    const int64_t d1[] = {0, 0, W, 0, W, 0, 0, 0, W, 0, 4 * W, 0};
    char key[128];
    for (int k = 0; k < d.layers; k++) {
        for (int i = 0; i < 12; i++) {
            snprintf(key, sizeof key, "text.transformer.resblocks.%d.%s", k, suf[i]);
            double std = d1[i] ? 1.0 / sqrt((double)d1[i]) : 0.1;
            if (d1[i]) ADD(key, std, d0[i], d1[i]);
            else ADD(key, std, d0[i]);
        }
    }
    ADD("text.ln_final.weight", 0.1, W);
    if (!(extra & TINY_NO_LNF_BIAS)) ADD("text.ln_final.bias", 0.1, W);
    ADD("text.text_projection", 0.25, W, E);
    if (extra & TINY_VISUAL) ADD("visual.trunk.stem.0.conv_kxk.0.conv.weight", 0.1, 64, 3, 3, 3);
    if (extra & TINY_BOGUS) ADD("text.bogus", 0.1, 3);
#undef ADD

    // The scale and the metadata.
    float ls = logf(100.0f);
    st_writer_add_f32(w, "logit_scale", 0, NULL, &ls);
    st_writer_meta(w, "text_heads", "2");
    st_writer_meta(w, "text_causal", causal ? "1" : "0");
    McErr err;
    MC_CHECK(st_writer_save(w, path, &err) == 0, "%s", err.msg);
    st_writer_free(w);
    mc_free(buf);
}
