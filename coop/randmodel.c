// randmodel.c - random-weight open_clip checkpoints of a real MobileCLIP2
// shape (see randmodel.h).  The key list follows open_clip's state dict of
// CustomTextCLIP with a timm FastViT MCi trunk (arch-spec sections 3, 5);
// a wrong or missing key makes mc_model_load fail (tests/test_coop_train.c
// loads what this writes).
#include "randmodel.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../mobileclip/fastvit.h"
#include "../mobileclip/safetensors.h"
#include "rng.h"

// ---- drawing ----

typedef enum { D_NORMAL, D_UNIFORM } Dist;

typedef struct {
    StWriter *w;
    uint64_t seed;
    float *buf;
    int64_t cap;
    int64_t params;
} Gen;

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

// Add tensor `name` [shape] with values a + b * N(0,1) (D_NORMAL) or
// U(a, b) (D_UNIFORM), rounded to fp16.
static void add(Gen *g, const char *name, int ndim, const int64_t *shape, Dist d, double a,
                double b) {
    int64_t n = tensor_numel(ndim, shape);
    if (n > g->cap) {
        mc_free(g->buf);
        g->buf = mc_malloc((size_t)n * sizeof(float));
        g->cap = n;
    }
    CoopRng r;
    coop_rng_seed(&r, fnv1a64(name) ^ g->seed);
    for (int64_t i = 0; i < n; i++) {
        double v = d == D_NORMAL ? a + b * coop_rng_normal(&r)
                                 : a + (b - a) * coop_rng_uniform(&r);
        g->buf[i] = (float)v;
    }
    st_writer_add_f16(g->w, name, ndim, shape, g->buf);
    g->params += n;
}

// printf-style key from a prefix.
__attribute__((format(printf, 2, 3)))
static const char *key(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, 320, fmt, ap);
    va_end(ap);
    return buf;
}

// A weight with fan_in inputs: N(0, (scale / sqrt(fan_in))^2).
static void weight(Gen *g, const char *name, int ndim, const int64_t *shape, double scale) {
    int64_t fan_in = 1;
    for (int i = 1; i < ndim; i++) fan_in *= shape[i];
    add(g, name, ndim, shape, D_NORMAL, 0.0, scale / sqrt((double)fan_in));
}

static void bias(Gen *g, const char *name, int64_t c) {
    add(g, name, MC_DIMS(c), D_NORMAL, 0.0, 0.05);
}

static void norm_affine(Gen *g, const char *p, int64_t c) {
    char k[320];
    add(g, key(k, "%s.weight", p), MC_DIMS(c), D_UNIFORM, 0.5, 1.5);
    add(g, key(k, "%s.bias", p), MC_DIMS(c), D_NORMAL, 0.0, 0.2);
}

static void bn(Gen *g, const char *p, int64_t c) {
    char k[320];
    norm_affine(g, p, c);
    add(g, key(k, "%s.running_mean", p), MC_DIMS(c), D_NORMAL, 0.0, 0.2);
    add(g, key(k, "%s.running_var", p), MC_DIMS(c), D_UNIFORM, 0.5, 1.5);
}

static void gamma_ls(Gen *g, const char *name, int64_t c) {
    add(g, name, MC_DIMS(c, 1, 1), D_UNIFORM, 0.1, 0.6);
}

// ---- FastViT MCi trunk (timm fastvit.py names) ----

static void convbn(Gen *g, const char *p, int64_t co, int64_t cpg, int64_t k) {
    char kk[320], sub[320];
    weight(g, key(kk, "%s.conv.weight", p), MC_DIMS(co, cpg, k, k), 1.0);
    bn(g, key(sub, "%s.bn", p), co);
}

static void se(Gen *g, const char *p, int64_t c, int64_t r) {
    char k[320];
    weight(g, key(k, "%s.se.fc1.weight", p), MC_DIMS(r, c, 1, 1), 1.0);
    bias(g, key(k, "%s.se.fc1.bias", p), r);
    weight(g, key(k, "%s.se.fc2.weight", p), MC_DIMS(c, r, 1, 1), 1.0);
    bias(g, key(k, "%s.se.fc2.bias", p), c);
}

// MobileOneBlock: identity BN iff ci == co and stride 1; 1x1 scale branch
// iff k > 1 and use_scale; n_kxk kxk branches; SE with se_r channels.
static void mobileone(Gen *g, const char *p, int ci, int co, int k, int stride, int groups,
                      int use_scale, int n_kxk, int se_r) {
    char sub[320];
    int cpg = ci / groups;
    if (ci == co && stride == 1) bn(g, key(sub, "%s.identity", p), ci);
    if (k > 1 && use_scale) convbn(g, key(sub, "%s.conv_scale", p), co, cpg, 1);
    if (n_kxk) convbn(g, key(sub, "%s.conv_kxk.0", p), co, cpg, k);
    if (se_r) se(g, p, co, se_r);
}

static void convmlp(Gen *g, const char *p, int c, int hd) {
    char k[320];
    convbn(g, key(k, "%s.conv", p), c, 1, 7);
    weight(g, key(k, "%s.fc1.weight", p), MC_DIMS(hd, c, 1, 1), 1.0);
    bias(g, key(k, "%s.fc1.bias", p), hd);
    weight(g, key(k, "%s.fc2.weight", p), MC_DIMS(c, hd, 1, 1), 0.5);
    bias(g, key(k, "%s.fc2.bias", p), c);
}

static void fastvit(Gen *g, const McFastVitConfig *f, int embed) {
    char p[320], k[320];
    const char *T = "visual.trunk";
    int c0 = f->widths[0], sc = f->stem_scale_branch;

    // Stem: 3x3 s2, depthwise 3x3 s2, 1x1.
    mobileone(g, key(p, "%s.stem.0", T), 3, c0, 3, 2, 1, sc, 1, 0);
    mobileone(g, key(p, "%s.stem.1", T), c0, c0, 3, 2, c0, sc, 1, 0);
    mobileone(g, key(p, "%s.stem.2", T), c0, c0, 1, 1, 1, sc, 1, 0);

    for (int s = 0; s < f->n_stages; s++) {
        int c = f->widths[s];
        // Downsample: large-kernel conv (groups C_in, 2x channels) + SE?, then 1x1.
        if (s > 0) {
            key(p, "%s.stages.%d.downsample.proj.0", T, s);
            convbn(g, key(k, "%s.large_conv", p), c, 1, 7);    // groups = C_in
            convbn(g, key(k, "%s.small_conv", p), c, 1, 3);
            if (f->se_downsample[s]) se(g, p, c, fastvit_make_divisible(c * 0.25, 8));
            mobileone(g, key(p, "%s.stages.%d.downsample.proj.1", T, s), c, c, 1, 1, 1, 1, 1, 0);
        }
        // RepCPE of attention stages.
        if (f->attn[s]) {
            weight(g, key(k, "%s.stages.%d.pos_emb.pos_enc.weight", T, s), MC_DIMS(c, 1, 7, 7),
                   1.0);
            bias(g, key(k, "%s.stages.%d.pos_emb.pos_enc.bias", T, s), c);
        }
        for (int j = 0; j < f->depths[s]; j++) {
            char b[320];
            key(b, "%s.stages.%d.blocks.%d", T, s, j);
            if (!f->attn[s]) {
                // RepMixer: norm (identity BN only), mixer (identity + 1x1 + 3x3).
                mobileone(g, key(p, "%s.token_mixer.norm", b), c, c, 3, 1, c, 0, 0, 0);
                mobileone(g, key(p, "%s.token_mixer.mixer", b), c, c, 3, 1, c, 1, 1, 0);
                gamma_ls(g, key(k, "%s.token_mixer.layer_scale.gamma", b), c);
                gamma_ls(g, key(k, "%s.layer_scale.gamma", b), c);
            } else {
                if (f->attn_layernorm) norm_affine(g, key(p, "%s.norm", b), c);
                else bn(g, key(p, "%s.norm", b), c);
                weight(g, key(k, "%s.token_mixer.qkv.weight", b), MC_DIMS(3 * c, c), 1.0);
                weight(g, key(k, "%s.token_mixer.proj.weight", b), MC_DIMS(c, c), 0.5);
                bias(g, key(k, "%s.token_mixer.proj.bias", b), c);
                gamma_ls(g, key(k, "%s.layer_scale_1.gamma", b), c);
                gamma_ls(g, key(k, "%s.layer_scale_2.gamma", b), c);
            }
            convmlp(g, key(p, "%s.mlp", b), c, c * f->mlp_ratio);
        }
    }

    // final_conv (3x3, groups C, 2C out, scale branch, SE) and the head fc.
    int cl = f->widths[f->n_stages - 1];
    mobileone(g, key(p, "%s.final_conv", T), cl, 2 * cl, 3, 1, cl, 1, 1,
              fastvit_make_divisible(2 * cl / 16.0, 1));
    weight(g, key(k, "%s.head.fc.weight", T), MC_DIMS(embed, 2 * cl), 1.0);
    bias(g, key(k, "%s.head.fc.bias", T), embed);
}

// ---- text tower (open_clip TextTransformer names) ----

static void text(Gen *g, const McTextConfig *c) {
    char k[320], p[320];
    int64_t V = c->vocab, T = c->context, W = c->width, E = c->embed;
    add(g, "text.token_embedding.weight", MC_DIMS(V, W), D_NORMAL, 0.0, 0.02);
    add(g, "text.positional_embedding", MC_DIMS(T, W), D_NORMAL, 0.0, 0.01);
    for (int l = 0; l < c->layers; l++) {
        key(p, "text.transformer.resblocks.%d", l);
        norm_affine(g, key(k, "%s.ln_1", p), W);
        weight(g, key(k, "%s.attn.in_proj_weight", p), MC_DIMS(3 * W, W), 1.0);
        bias(g, key(k, "%s.attn.in_proj_bias", p), 3 * W);
        weight(g, key(k, "%s.attn.out_proj.weight", p), MC_DIMS(W, W), 0.5);
        bias(g, key(k, "%s.attn.out_proj.bias", p), W);
        norm_affine(g, key(k, "%s.ln_2", p), W);
        weight(g, key(k, "%s.mlp.c_fc.weight", p), MC_DIMS(4 * W, W), 1.0);
        bias(g, key(k, "%s.mlp.c_fc.bias", p), 4 * W);
        weight(g, key(k, "%s.mlp.c_proj.weight", p), MC_DIMS(W, 4 * W), 0.5);
        bias(g, key(k, "%s.mlp.c_proj.bias", p), W);
    }
    norm_affine(g, "text.ln_final", W);
    // text_projection [W, E] is used as x @ P: fan_in is W (dim 0).
    add(g, "text.text_projection", MC_DIMS(W, E), D_NORMAL, 0.0, 1.0 / sqrt((double)W));
}

int coop_randmodel_write(const char *path, const McModelConfig *cfg, uint64_t seed,
                         int text_only, McErr *err) {
    if (!text_only && cfg->image.kind != MC_TRUNK_FASTVIT)
        return mc_err(err, "random model: only FastViT image towers (S0, S2, S3, S4) are "
                      "generated, not %s", cfg->name ? cfg->name : "this config");
    Gen g = {.w = st_writer_new(), .seed = seed};
    float ls = logf(100.0f);
    st_writer_add_f32(g.w, "logit_scale", 0, NULL, &ls);
    if (!text_only) fastvit(&g, &cfg->image.fastvit, cfg->image.embed);
    text(&g, &cfg->text);

    // Metadata: the random-weights label, the recipe, what it is shaped like.
    char v[64];
    st_writer_meta(g.w, "mclip_random_weights", "1");
    snprintf(v, sizeof v, "%llu", (unsigned long long)seed);
    st_writer_meta(g.w, "mclip_random_seed", v);
    st_writer_meta(g.w, "mclip_random_recipe", COOP_RANDMODEL_RECIPE);
    st_writer_meta(g.w, "mclip_random_shape", cfg->name ? cfg->name : "custom");
    snprintf(v, sizeof v, "%d", cfg->text.heads);
    st_writer_meta(g.w, "text_heads", v);
    st_writer_meta(g.w, "text_causal", cfg->text.causal ? "1" : "0");
    int rc = st_writer_save(g.w, path, err);
    st_writer_free(g.w);
    mc_free(g.buf);
    return rc;
}

int coop_randmodel_is_random(const char *path) {
    McErr err;
    StFile *f = st_open(path, &err);
    if (!f) return 0;
    const char *v = st_meta(f, "mclip_random_weights");
    int r = v && !strcmp(v, "1");
    st_close(f);
    return r;
}
