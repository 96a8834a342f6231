// vit.c - ViT trunks (MobileCLIP2-B conv-stem ViT, L-14): load, forward.
//
// See vit.h.  Dims: N images, D width, G token grid side, T = G*G patch
// tokens, T1 = T + 1 with the class token, E embedding.  Blocks are
// nn/transformer.h blocks with timm names; every step is an ag_* op, so a
// backward pass gives d loss / d x with frozen weights.
#include "vit.h"

#include "../nn/transformer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define STEM_BN_EPS 1e-5f   // BatchNorm2d in B's conv stem
#define STEM_CONVS  3
static const int stem_kernel[STEM_CONVS] = {4, 2, 2};   // = strides, padding 0

struct Vit {
    McVitConfig cfg;
    int embed, grid, fused;
    // B conv stem (cfg.conv_stem): convs, their BNs (training form) and biases
    Tensor *stem_w[STEM_CONVS];     // [D/4, 3, 4, 4], [D/4, D/4, 2, 2], [D, D/4, 2, 2]
    Tensor *stem_b[STEM_CONVS];     // [C] conv bias: [2] always, [0], [1] once BN is folded
    Tensor *bn_g[2], *bn_b[2], *bn_m[2], *bn_v[2];  // [D/4] each; NULL once folded
    // L-14 patch conv
    Tensor *patch_w;                // [D, 3, P, P]
    Tensor *cls;                    // [1, 1, D]
    Tensor *pos;                    // [1, T, D] (B) or [1, T1, D] (L-14)
    Tensor *pre_w, *pre_b;          // norm_pre [D] (L-14) or NULL
    NnBlock *blocks;                // [layers]
    Tensor *norm_w, *norm_b;        // [D]
    Tensor *head_w, *head_b;        // [E, D], [E]
    McParamList params;             // everything above except the blocks
    Graph *scratch[2];              // inference passes (McPass), created on first use
};

static Tensor *take(WeightSet *ws, McParamList *pl, const char *prefix, const char *suffix,
                    int ndim, const int64_t *shape) {
    char key[320];
    snprintf(key, sizeof key, "%s.%s", prefix, suffix);
    Tensor *t = ws_take(ws, key, ndim, shape);
    mc_params_add(pl, t);
    return t;
}

// Output side of a valid (padding 0) conv with kernel = stride = k.
static int valid_out(int s, int k) { return s >= k ? (s - k) / k + 1 : 0; }

static int grid_of(const McVitConfig *c, int image_size) {
    int s = image_size;
    if (c->conv_stem) {
        for (int i = 0; i < STEM_CONVS; i++) s = valid_out(s, stem_kernel[i]);
        return s;
    }
    return valid_out(s, c->patch);
}

// Fold BN i of the stem into conv i: K' = K t, b' = beta - mean t, t = gamma / sqrt(var + eps).
static void fold_stem_bn(Vit *m, int i) {
    Tensor *w = m->stem_w[i];
    int64_t co = w->shape[0], per = w->n / co;
    Tensor *b = tensor_new(MC_DIMS(co));
    for (int64_t o = 0; o < co; o++) {
        double t = (double)m->bn_g[i]->data[o] / sqrt((double)m->bn_v[i]->data[o] + STEM_BN_EPS);
        for (int64_t j = 0; j < per; j++) w->data[o * per + j] = (float)(w->data[o * per + j] * t);
        b->data[o] = (float)((double)m->bn_b[i]->data[o] - (double)m->bn_m[i]->data[o] * t);
    }
    mc_params_add(&m->params, b);
    m->stem_b[i] = b;
    mc_params_drop(&m->params, m->bn_g[i]), mc_params_drop(&m->params, m->bn_b[i]);
    mc_params_drop(&m->params, m->bn_m[i]), mc_params_drop(&m->params, m->bn_v[i]);
    m->bn_g[i] = m->bn_b[i] = m->bn_m[i] = m->bn_v[i] = NULL;
}

Vit *vit_load(WeightSet *ws, const char *prefix, const McVitConfig *cfg, int image_size,
              int embed, int fuse, McErr *err) {
    int D = cfg->width;
    if (D < 1 || cfg->heads < 1 || D % cfg->heads || cfg->layers < 0 || cfg->mlp < 1 || embed < 1)
        return mc_err(err, "vit: bad config width %d heads %d layers %d mlp %d embed %d", D,
                      cfg->heads, cfg->layers, cfg->mlp, embed), NULL;
    if (cfg->conv_stem && D % 4)
        return mc_err(err, "vit: conv stem needs width divisible by 4, found %d", D), NULL;
    if (!cfg->conv_stem && cfg->patch < 1)
        return mc_err(err, "vit: patch size must be positive, found %d", cfg->patch), NULL;
    int G = grid_of(cfg, image_size);
    if (G < 1) return mc_err(err, "vit: image size %d gives no tokens", image_size), NULL;

    Vit *m = mc_calloc(1, sizeof *m);
    McParamList *pl = &m->params;
    m->cfg = *cfg, m->embed = embed, m->grid = G;
    int64_t T = (int64_t)G * G;
    char p[300];
    ws_ignore_suffix(ws, ".num_batches_tracked");

    // Patch embedding: B's conv stem or a single PxP conv.
    if (cfg->conv_stem) {
        int64_t ch[STEM_CONVS + 1] = {3, D / 4, D / 4, D};
        for (int i = 0; i < STEM_CONVS; i++) {
            int k = stem_kernel[i];
            snprintf(p, sizeof p, "%s.patch_embed.backbone.%d", prefix, i);
            m->stem_w[i] = take(ws, pl, p, "conv.weight", MC_DIMS(ch[i + 1], ch[i], k, k));
            if (i == STEM_CONVS - 1) {
                m->stem_b[i] = take(ws, pl, p, "conv.bias", MC_DIMS(ch[i + 1]));
                continue;
            }
            m->bn_g[i] = take(ws, pl, p, "bn.weight", MC_DIMS(ch[i + 1]));
            m->bn_b[i] = take(ws, pl, p, "bn.bias", MC_DIMS(ch[i + 1]));
            m->bn_m[i] = take(ws, pl, p, "bn.running_mean", MC_DIMS(ch[i + 1]));
            m->bn_v[i] = take(ws, pl, p, "bn.running_var", MC_DIMS(ch[i + 1]));
        }
    } else {
        m->patch_w = take(ws, pl, prefix, "patch_embed.proj.weight",
                          MC_DIMS(D, 3, cfg->patch, cfg->patch));
    }

    // Class token, position embedding, optional norm_pre.
    m->cls = take(ws, pl, prefix, "cls_token", MC_DIMS(1, 1, D));
    m->pos = take(ws, pl, prefix, "pos_embed", MC_DIMS(1, cfg->cls_has_pos ? T + 1 : T, D));
    if (cfg->norm_pre) {
        m->pre_w = take(ws, pl, prefix, "norm_pre.weight", MC_DIMS(D));
        m->pre_b = take(ws, pl, prefix, "norm_pre.bias", MC_DIMS(D));
    }

    // Transformer blocks (timm names), final norm, head.
    NnBlockSpec spec = {.width = D, .heads = cfg->heads, .mlp = cfg->mlp,
                        .ln_eps = cfg->ln_eps, .names = NN_NAMES_TIMM};
    m->blocks = mc_calloc((size_t)(cfg->layers ? cfg->layers : 1), sizeof(NnBlock));
    for (int l = 0; l < cfg->layers; l++) {
        snprintf(p, sizeof p, "%s.blocks.%d.", prefix, l);
        nn_block_bind(&m->blocks[l], ws, p, &spec);
    }
    m->norm_w = take(ws, pl, prefix, "norm.weight", MC_DIMS(D));
    m->norm_b = take(ws, pl, prefix, "norm.bias", MC_DIMS(D));
    m->head_w = take(ws, pl, prefix, "head.weight", MC_DIMS(embed, D));
    m->head_b = take(ws, pl, prefix, "head.bias", MC_DIMS(embed));

    if (fuse && cfg->conv_stem) {
        fold_stem_bn(m, 0);
        fold_stem_bn(m, 1);
    }
    m->fused = fuse;
    return m;
}

void vit_free(Vit *m) {
    if (!m) return;
    for (int l = 0; l < m->cfg.layers; l++) nn_block_free(&m->blocks[l]);
    mc_free(m->blocks);
    mc_params_free(&m->params);
    mc_pass_free(m->scratch);
    mc_free(m);
}

int vit_fused(const Vit *m) { return m->fused; }

#define BLOCK_TENSORS 12

int vit_param_count(const Vit *m) { return m->params.n + BLOCK_TENSORS * m->cfg.layers; }

Tensor *vit_param(const Vit *m, int i) {
    if (i < m->params.n) return m->params.t[i];
    i -= m->params.n;
    const NnBlock *b = &m->blocks[i / BLOCK_TENSORS];
    Tensor *all[BLOCK_TENSORS] = {b->ln1_w, b->ln1_b, b->qkv_w, b->qkv_b, b->proj_w, b->proj_b,
                                  b->ln2_w, b->ln2_b, b->fc1_w, b->fc1_b, b->fc2_w, b->fc2_b};
    return all[i % BLOCK_TENSORS];
}

// ---- forward ----

static void dump(McImageHooks *hooks, const char *name, const Tensor *t) {
    if (hooks && hooks->dump) hooks->dump(hooks->dump_ctx, name, t);
}

// Patch embedding: images [N, 3, S, S] -> feature map [N, D, G, G].
static Tensor *stem_fwd(Graph *g, const Vit *m, Tensor *x) {
    if (!m->cfg.conv_stem) return ag_conv2d(g, x, m->patch_w, NULL, m->cfg.patch, 0, 1);
    for (int i = 0; i < STEM_CONVS; i++) {
        int k = stem_kernel[i];
        x = ag_conv2d(g, x, m->stem_w[i], m->stem_b[i], k, 0, 1);
        if (i == STEM_CONVS - 1) break;
        if (m->bn_g[i])
            x = ag_batchnorm(g, x, m->bn_m[i], m->bn_v[i], m->bn_g[i], m->bn_b[i], STEM_BN_EPS);
        x = ag_gelu(g, x);
    }
    return x;
}

// The class token repeated for each image: [N, 1, D] (a constant: weights are frozen).
static Tensor *cls_rows(Graph *g, const Vit *m, int64_t N) {
    int64_t D = m->cfg.width;
    Tensor *c = ag_tensor(g, MC_DIMS(N, 1, D));
    for (int64_t n = 0; n < N; n++)
        memcpy(c->data + n * D, m->cls->data, (size_t)D * sizeof(float));
    return c;
}

// Attention probabilities of a block for the hook: qkv of LN1(x) computed
// off the tape in g, probabilities kept in out.
static void probe_block(Graph *g, Graph *out, const NnBlock *b, Tensor *x, McImageHooks *hooks) {
    int rec = g->grad_enabled;
    g->grad_enabled = 0;
    Tensor *h = ag_layernorm(g, x, b->ln1_w, b->ln1_b, b->spec.ln_eps);
    Tensor *qkv = ag_linear(g, h, b->qkv_w, b->qkv_b);
    float scale = 1.0f / sqrtf((float)(b->spec.width / b->spec.heads));
    hooks->attn = mc_attn_probs(out, qkv, b->spec.heads, hooks->attn_head, scale);
    g->grad_enabled = rec;
}

Tensor *vit_forward(Graph *g, Vit *m, Tensor *x, McImageHooks *hooks) {
    TENSOR_CHECK_NDIM(x, 4, "vit_forward");
    MC_CHECK(x->shape[1] == 3, "vit_forward: expected [N, 3, H, W] images, found %lld channels",
             (long long)x->shape[1]);
    int64_t N = x->shape[0], D = m->cfg.width, G = m->grid, T = G * G;
    char name[32];
    McPass p;
    mc_pass_begin(&p, g, m->scratch, x);
    Graph *r = p.run;
    dump(hooks, "image.input", x);

    // Patch embedding, checked against the grid the position table was built for.
    Tensor *f = stem_fwd(r, m, x);
    MC_CHECK(f->shape[2] == G && f->shape[3] == G,
             "vit_forward: images give a %lldx%lld token grid, the model has %lldx%lld",
             (long long)f->shape[2], (long long)f->shape[3], (long long)G, (long long)G);
    dump(hooks, "image.stem", f);

    // [N, D, G, G] -> tokens [N, T, D] in row-major grid order.
    Tensor *t = ag_permute(r, ag_reshape(r, f, MC_DIMS(N, D, T, 1)), 0, 2, 1, 3);
    t = ag_reshape(r, t, MC_DIMS(N, T, D));

    // Class token and position embedding (B: pos on patches only, then cls).
    if (m->cfg.cls_has_pos) {
        t = ag_concat(r, cls_rows(r, m, N), t, 1);
        t = ag_add(r, t, m->pos);
    } else {
        t = ag_add(r, t, m->pos);
        t = ag_concat(r, cls_rows(r, m, N), t, 1);
    }
    if (m->pre_w) t = ag_layernorm(r, t, m->pre_w, m->pre_b, m->cfg.ln_eps);
    dump(hooks, "image.tokens", t);
    mc_pass_next(&p);

    // Transformer blocks, one pass unit each.
    for (int l = 0; l < m->cfg.layers; l++) {
        if (hooks && hooks->attn_block == l) probe_block(p.run, p.out, &m->blocks[l], t, hooks);
        t = nn_block_forward(p.run, &m->blocks[l], t, NULL);
        snprintf(name, sizeof name, "image.block.%d", l);
        dump(hooks, name, t);
        mc_pass_next(&p);
    }

    // Final norm, class token, projection.
    r = p.run;
    t = ag_layernorm(r, t, m->norm_w, m->norm_b, m->cfg.ln_eps);
    dump(hooks, "image.norm", t);
    Tensor *pooled = ag_reshape(r, ag_slice(r, t, 1, 0, 1), MC_DIMS(N, D));
    dump(hooks, "image.pooled", pooled);
    Tensor *e = mc_pass_end(&p, ag_linear(r, pooled, m->head_w, m->head_b));
    dump(hooks, "image.embed", e);
    return e;
}
