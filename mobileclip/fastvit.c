// fastvit.c - FastViT MCi trunks: loading, load-time fusion, forward.
//
// See fastvit.h for the architecture and the two forms.  Dims: N images,
// C channels (Co out, Ci in, G groups, CPG = Ci / G in-channels per group),
// H, W spatial, k kernel size, T tokens, E embedding.  Every forward step
// is an ag_* op, so the same code gives the backward to the input image;
// all weights are heap tensors without requires_grad (frozen).
#include "fastvit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../tensor/gemm.h"
#include "../tensor/simd.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

#define BN_EPS        1e-5f   // every BatchNorm2d in the trunk
#define LN2D_EPS      1e-5f   // S3/S4 attention LayerNorm2d
#define ATTN_HEAD_DIM 32      // timm fastvit Attention: head_dim fixed at 32
#define LK_SIZE       7       // ReparamLargeKernelConv large kernel
#define LK_SMALL      3       // ... and its small kernel
#define CPE_SIZE      7       // RepCPE depthwise kernel
#define MLP_DW_SIZE   7       // ConvMlp depthwise kernel
#define MIXER_SIZE    3       // RepMixer kernel
#define SE_LK_RATIO   0.25    // SE after the large-kernel conv: ratio, divisor 8
#define SE_LK_DIV     8
#define SE_FC_RATIO   (1.0 / 16)  // SE in final_conv: ratio, divisor 1
#define SE_FC_DIV     1
#define KEY_MAX       320     // longest weight key built here

// ---- module structs ----

// Eval-mode BatchNorm2d: y = (x - mean) / sqrt(var + eps) * gamma + beta.
typedef struct {
    Tensor *gamma, *beta, *mean, *var;   // each [C]
} Bn;

// timm ConvNormAct without act: BN(conv(x)), conv without bias.
typedef struct {
    Tensor *w;   // [Co, CPG, k, k]
    Bn bn;       // over Co
} ConvBn;

// SE: x * sigmoid(fc2(relu(fc1(mean_HW(x))))); 1x1 convs held as matrices.
typedef struct {
    Tensor *w1, *b1;   // [R, C], [R]
    Tensor *w2, *b2;   // [C, R], [C]
} Se;

// MobileOneBlock: act(SE(BN_id(x) + BN_s(conv1x1(x)) + BN_k(convkxk(x)))).
typedef struct {
    int ci, co, k, stride, pad, groups;
    int act, has_id, has_scale, has_kxk, has_se;
    Bn id;              // [Ci]
    ConvBn scale;       // w [Co, CPG, 1, 1]
    ConvBn kxk;         // w [Co, CPG, k, k]
    Se se;
    Tensor *rw, *rb;    // fused: [Co, CPG, k, k], [Co]; NULL in the training form
} MobileOne;

// ReparamLargeKernelConv: GELU(SE(BN_L(conv7x7(x)) + BN_S(conv3x3(x)))).
typedef struct {
    int ci, co, stride, groups, has_se;
    ConvBn large, small;  // w [Co, CPG, 7, 7], [Co, CPG, 3, 3]
    Se se;
    Tensor *rw, *rb;      // fused [Co, CPG, 7, 7], [Co]
} LkConv;

// RepMixer: x + gamma (mixer(x) - norm(x)); fused: dwconv3x3(x) + b.
typedef struct {
    MobileOne norm, mixer;  // both depthwise 3x3 over C, no act
    Tensor *gamma;          // [C, 1, 1]
    Tensor *rw, *rb;        // fused [C, 1, 3, 3], [C]
} RepMixer;

// ConvMlp: fc2(GELU(fc1(BN(dwconv7x7(x))))).
typedef struct {
    ConvBn conv;            // w [C, 1, 7, 7]
    Tensor *cw, *cb;        // fused conv [C, 1, 7, 7], [C]
    Tensor *w1, *b1;        // [Hd, C, 1, 1], [Hd]
    Tensor *w2, *b2;        // [C, Hd, 1, 1], [C] (rows scaled by gamma2 when fused)
} ConvMlp;

// RepMixerBlock or AttentionBlock.
typedef struct {
    int attn;
    RepMixer mixer;         // RepMixerBlock token mixer
    int norm_ln;            // attention norm: 1 LayerNorm2d, 0 BatchNorm2d
    Bn norm;                // BN (NULL tensors once folded into qkv) or LN (gamma, beta)
    Tensor *qkv_w, *qkv_b;  // [3C, C], [3C] or NULL (no bias in the checkpoint)
    Tensor *proj_w, *proj_b;// [C, C], [C]
    Tensor *gamma1;         // [C, 1, 1] or NULL once folded into proj
    ConvMlp mlp;
    Tensor *gamma2;         // [C, 1, 1] or NULL once folded into mlp.fc2
} Block;

typedef struct {
    int dim, depth, has_down, has_cpe, heads;
    LkConv down_lk;         // downsample.proj.0
    MobileOne down_pw;      // downsample.proj.1
    Tensor *cpe_w, *cpe_b;  // pos_emb.pos_enc [C, 1, 7, 7], [C]
    Tensor *cpe_rw, *cpe_rb;// fused [C, 1, 7, 7], [C]
    Block *blocks;          // [depth]
} Stage;

struct FastVit {
    McFastVitConfig cfg;
    int embed, fused;
    MobileOne stem[3];
    Stage stages[5];
    MobileOne final_conv;
    Tensor *head_w, *head_b;   // [E, 2 C_last], [E]
    McParamList params;
    Graph *scratch[2];         // inference passes (McPass), created on first use
};

// ---- loading ----

typedef struct {
    WeightSet *ws;
    McParamList *params;
    char key[KEY_MAX];
} Ld;

// dst = p + suffix; keys are built from a fixed prefix and short names, so a
// key longer than KEY_MAX is a programming error.
static void join(char *dst, const char *p, const char *suffix) {
    int n = snprintf(dst, KEY_MAX, "%s%s", p, suffix);
    MC_CHECK(n >= 0 && n < KEY_MAX, "fastvit: key %s%s too long", p, suffix);
}

// ws_take of the key printf(fmt, ...) with the expected shape; registers it.
__attribute__((format(printf, 4, 5)))
static Tensor *take(Ld *ld, int ndim, const int64_t *shape, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->key, sizeof ld->key, fmt, ap);
    va_end(ap);
    Tensor *t = ws_take(ld->ws, ld->key, ndim, shape);
    mc_params_add(ld->params, t);
    return t;
}

static void load_bn(Ld *ld, Bn *bn, int c, const char *p) {
    bn->gamma = take(ld, MC_DIMS(c), "%s.weight", p);
    bn->beta  = take(ld, MC_DIMS(c), "%s.bias", p);
    bn->mean  = take(ld, MC_DIMS(c), "%s.running_mean", p);
    bn->var   = take(ld, MC_DIMS(c), "%s.running_var", p);
}

static void load_convbn(Ld *ld, ConvBn *cb, int co, int cpg, int k, const char *p) {
    char sub[KEY_MAX];
    cb->w = take(ld, MC_DIMS(co, cpg, k, k), "%s.conv.weight", p);
    join(sub, p, ".bn");
    load_bn(ld, &cb->bn, co, sub);
}

// SE over c channels with r reduced channels; 1x1 kernels viewed as [out, in].
static void load_se(Ld *ld, Se *se, int c, int r, const char *p) {
    se->w1 = take(ld, MC_DIMS(r, c, 1, 1), "%s.se.fc1.weight", p);
    se->b1 = take(ld, MC_DIMS(r), "%s.se.fc1.bias", p);
    se->w2 = take(ld, MC_DIMS(c, r, 1, 1), "%s.se.fc2.weight", p);
    se->b2 = take(ld, MC_DIMS(c), "%s.se.fc2.bias", p);
    tensor_set_shape(se->w1, MC_DIMS(r, c));
    tensor_set_shape(se->w2, MC_DIMS(c, r));
}

int fastvit_make_divisible(double v, int divisor) {
    int n = (int)(v + divisor / 2.0) / divisor * divisor;
    return n < divisor ? divisor : n;
}

// MobileOneBlock(ci -> co, k, stride, groups): which branches exist follows
// timm: identity iff ci == co and stride 1; scale iff k > 1 and use_scale;
// n_kxk conv branches (0 or 1).
static void load_mobileone(Ld *ld, MobileOne *b, const char *p, int ci, int co, int k,
                           int stride, int groups, int act, int use_scale, int n_kxk,
                           int se_r) {
    memset(b, 0, sizeof *b);
    b->ci = ci, b->co = co, b->k = k, b->stride = stride, b->groups = groups;
    b->pad = ((stride - 1) + (k - 1)) / 2;   // timm static 'same'-style padding
    b->act = act;
    b->has_id = ci == co && stride == 1;
    b->has_scale = k > 1 && use_scale;
    b->has_kxk = n_kxk > 0;
    b->has_se = se_r > 0;
    int cpg = ci / groups;
    char sub[KEY_MAX];
    if (b->has_id) {
        join(sub, p, ".identity");
        load_bn(ld, &b->id, ci, sub);
    }
    if (b->has_scale) {
        join(sub, p, ".conv_scale");
        load_convbn(ld, &b->scale, co, cpg, 1, sub);
    }
    if (b->has_kxk) {
        join(sub, p, ".conv_kxk.0");
        load_convbn(ld, &b->kxk, co, cpg, k, sub);
    }
    if (b->has_se) load_se(ld, &b->se, co, se_r, p);
}

static void load_lkconv(Ld *ld, LkConv *b, const char *p, int ci, int co, int has_se) {
    char sub[KEY_MAX];
    memset(b, 0, sizeof *b);
    b->ci = ci, b->co = co, b->stride = 2, b->groups = ci, b->has_se = has_se;
    join(sub, p, ".large_conv");
    load_convbn(ld, &b->large, co, 1, LK_SIZE, sub);
    join(sub, p, ".small_conv");
    load_convbn(ld, &b->small, co, 1, LK_SMALL, sub);
    if (has_se) load_se(ld, &b->se, co, fastvit_make_divisible(co * SE_LK_RATIO, SE_LK_DIV), p);
}

static void load_convmlp(Ld *ld, ConvMlp *m, const char *p, int c, int hd) {
    char sub[KEY_MAX];
    memset(m, 0, sizeof *m);
    join(sub, p, ".conv");
    load_convbn(ld, &m->conv, c, 1, MLP_DW_SIZE, sub);
    m->w1 = take(ld, MC_DIMS(hd, c, 1, 1), "%s.fc1.weight", p);
    m->b1 = take(ld, MC_DIMS(hd), "%s.fc1.bias", p);
    m->w2 = take(ld, MC_DIMS(c, hd, 1, 1), "%s.fc2.weight", p);
    m->b2 = take(ld, MC_DIMS(c), "%s.fc2.bias", p);
}

static void load_block(Ld *ld, Block *b, const char *p, int c, int attn, int mlp_ratio,
                       int norm_ln) {
    char sub[KEY_MAX];
    memset(b, 0, sizeof *b);
    b->attn = attn;
    if (!attn) {
        // RepMixer: norm = identity BN only; mixer = identity + 1x1 + 3x3, depthwise.
        join(sub, p, ".token_mixer.norm");
        load_mobileone(ld, &b->mixer.norm, sub, c, c, MIXER_SIZE, 1, c, 0, 0, 0, 0);
        join(sub, p, ".token_mixer.mixer");
        load_mobileone(ld, &b->mixer.mixer, sub, c, c, MIXER_SIZE, 1, c, 0, 1, 1, 0);
        b->mixer.gamma = take(ld, MC_DIMS(c, 1, 1), "%s.token_mixer.layer_scale.gamma", p);
        b->gamma2 = take(ld, MC_DIMS(c, 1, 1), "%s.layer_scale.gamma", p);
    } else {
        b->norm_ln = norm_ln;
        join(sub, p, ".norm");
        if (norm_ln) {
            b->norm.gamma = take(ld, MC_DIMS(c), "%s.weight", sub);
            b->norm.beta = take(ld, MC_DIMS(c), "%s.bias", sub);
        } else {
            load_bn(ld, &b->norm, c, sub);
        }
        b->qkv_w = take(ld, MC_DIMS(3 * c, c), "%s.token_mixer.qkv.weight", p);
        b->proj_w = take(ld, MC_DIMS(c, c), "%s.token_mixer.proj.weight", p);
        b->proj_b = take(ld, MC_DIMS(c), "%s.token_mixer.proj.bias", p);
        b->gamma1 = take(ld, MC_DIMS(c, 1, 1), "%s.layer_scale_1.gamma", p);
        b->gamma2 = take(ld, MC_DIMS(c, 1, 1), "%s.layer_scale_2.gamma", p);
    }
    join(sub, p, ".mlp");
    load_convmlp(ld, &b->mlp, sub, c, c * mlp_ratio);
}

// ---- fusion (double precision, exact algebra) ----

// BN as y = t x + s per channel: t = gamma / sqrt(var + eps), s = beta - mean t.
static void bn_affine(const Bn *bn, int c, double *t, double *s) {
    double sd = sqrt((double)bn->var->data[c] + (double)BN_EPS);
    *t = (double)bn->gamma->data[c] / sd;
    *s = (double)bn->beta->data[c] - (double)bn->mean->data[c] * *t;
}

// K [co, cpg, k, k] += t * w (w [co, cpg, ks, ks] centred in k), b += s.
static void add_convbn(double *K, double *b, const ConvBn *cb, int co, int cpg, int k, int ks) {
    int off = (k - ks) / 2;
    for (int o = 0; o < co; o++) {
        double t, s;
        bn_affine(&cb->bn, o, &t, &s);
        b[o] += s;
        for (int c = 0; c < cpg; c++)
            for (int i = 0; i < ks; i++)
                for (int j = 0; j < ks; j++) {
                    size_t src = (((size_t)o * cpg + c) * ks + i) * ks + j;
                    size_t dst = (((size_t)o * cpg + c) * k + i + off) * k + j + off;
                    K[dst] += t * cb->w->data[src];
                }
    }
}

// The identity as a kernel: K[o, o mod cpg, k/2, k/2] += scale[o] (1 if NULL).
static void add_identity(double *K, int co, int cpg, int k, const double *scale) {
    for (int o = 0; o < co; o++) {
        size_t at = (((size_t)o * cpg + o % cpg) * k + k / 2) * k + k / 2;
        K[at] += scale ? scale[o] : 1.0;
    }
}

// BN applied to the identity: K[o, o mod cpg, centre] += t, b += s.
static void add_identity_bn(double *K, double *b, const Bn *bn, int co, int cpg, int k) {
    for (int o = 0; o < co; o++) {
        double t, s;
        bn_affine(bn, o, &t, &s);
        size_t at = (((size_t)o * cpg + o % cpg) * k + k / 2) * k + k / 2;
        K[at] += t;
        b[o] += s;
    }
}

// New heap tensors for a fused conv from double buffers; registered.
static void make_fused(McParamList *pl, Tensor **w, Tensor **b, const double *K, const double *B,
                       int co, int cpg, int k) {
    *w = tensor_new(MC_DIMS(co, cpg, k, k));
    *b = tensor_new(MC_DIMS(co));
    for (int64_t i = 0; i < (*w)->n; i++) (*w)->data[i] = (float)K[i];
    for (int o = 0; o < co; o++) (*b)->data[o] = (float)B[o];
    mc_params_add(pl, *w);
    mc_params_add(pl, *b);
}

static void drop_bn(McParamList *pl, Bn *bn) {
    mc_params_drop(pl, bn->gamma), mc_params_drop(pl, bn->beta);
    mc_params_drop(pl, bn->mean), mc_params_drop(pl, bn->var);
    memset(bn, 0, sizeof *bn);
}

static void drop_convbn(McParamList *pl, ConvBn *cb) {
    mc_params_drop(pl, cb->w);
    drop_bn(pl, &cb->bn);
    cb->w = NULL;
}

// MobileOne branches -> (K [co, cpg, k, k], b [co]) in double; caller frees.
static void mobileone_kernel(const MobileOne *m, double **K, double **b) {
    int cpg = m->ci / m->groups;
    *K = mc_calloc((size_t)m->co * cpg * m->k * m->k, sizeof(double));
    *b = mc_calloc((size_t)m->co, sizeof(double));
    if (m->has_kxk) add_convbn(*K, *b, &m->kxk, m->co, cpg, m->k, m->k);
    if (m->has_scale) add_convbn(*K, *b, &m->scale, m->co, cpg, m->k, 1);
    if (m->has_id) add_identity_bn(*K, *b, &m->id, m->co, cpg, m->k);
}

static void mobileone_drop_branches(McParamList *pl, MobileOne *m) {
    if (m->has_kxk) drop_convbn(pl, &m->kxk);
    if (m->has_scale) drop_convbn(pl, &m->scale);
    if (m->has_id) drop_bn(pl, &m->id);
}

static void fuse_mobileone(McParamList *pl, MobileOne *m) {
    double *K, *b;
    mobileone_kernel(m, &K, &b);
    make_fused(pl, &m->rw, &m->rb, K, b, m->co, m->ci / m->groups, m->k);
    mc_free(K), mc_free(b);
    mobileone_drop_branches(pl, m);
}

static void fuse_lkconv(McParamList *pl, LkConv *m) {
    size_t nk = (size_t)m->co * LK_SIZE * LK_SIZE;
    double *K = mc_calloc(nk, sizeof(double)), *b = mc_calloc((size_t)m->co, sizeof(double));
    add_convbn(K, b, &m->large, m->co, 1, LK_SIZE, LK_SIZE);
    add_convbn(K, b, &m->small, m->co, 1, LK_SIZE, LK_SMALL);
    make_fused(pl, &m->rw, &m->rb, K, b, m->co, 1, LK_SIZE);
    mc_free(K), mc_free(b);
    drop_convbn(pl, &m->large), drop_convbn(pl, &m->small);
}

// RepMixer: K = K_id + gamma (K_mixer - K_norm), b = gamma (b_mixer - b_norm).
static void fuse_repmixer(McParamList *pl, RepMixer *r, int c) {
    double *Km, *bm, *Kn, *bn;
    mobileone_kernel(&r->mixer, &Km, &bm);
    mobileone_kernel(&r->norm, &Kn, &bn);
    int kk = MIXER_SIZE * MIXER_SIZE;
    for (int o = 0; o < c; o++) {
        double gam = r->gamma->data[o];
        for (int i = 0; i < kk; i++) {
            size_t at = (size_t)o * kk + i;
            Km[at] = gam * (Km[at] - Kn[at]);
        }
        bm[o] = gam * (bm[o] - bn[o]);
    }
    add_identity(Km, c, 1, MIXER_SIZE, NULL);
    make_fused(pl, &r->rw, &r->rb, Km, bm, c, 1, MIXER_SIZE);
    mc_free(Km), mc_free(bm), mc_free(Kn), mc_free(bn);
    mobileone_drop_branches(pl, &r->mixer);
    mobileone_drop_branches(pl, &r->norm);
    mc_params_drop(pl, r->gamma);
    r->gamma = NULL;
}

// RepCPE: K = K_id + K_pos_enc, b = b_pos_enc.
static void fuse_cpe(McParamList *pl, Stage *s) {
    int c = s->dim;
    size_t nk = (size_t)c * CPE_SIZE * CPE_SIZE;
    double *K = mc_calloc(nk, sizeof(double)), *b = mc_calloc((size_t)c, sizeof(double));
    for (size_t i = 0; i < nk; i++) K[i] = s->cpe_w->data[i];
    for (int o = 0; o < c; o++) b[o] = s->cpe_b->data[o];
    add_identity(K, c, 1, CPE_SIZE, NULL);
    make_fused(pl, &s->cpe_rw, &s->cpe_rb, K, b, c, 1, CPE_SIZE);
    mc_free(K), mc_free(b);
    mc_params_drop(pl, s->cpe_w), mc_params_drop(pl, s->cpe_b);
    s->cpe_w = s->cpe_b = NULL;
}

// Layer scale folded into the output projection: W[o, :] *= gamma[o], b[o] *= gamma[o].
static void fold_gamma_rows(Tensor *w, Tensor *b, const Tensor *gamma) {
    int64_t rows = w->shape[0], cols = w->n / rows;
    for (int64_t o = 0; o < rows; o++) {
        float gam = gamma->data[o];
        for (int64_t i = 0; i < cols; i++) w->data[o * cols + i] *= gam;
        b->data[o] *= gam;
    }
}

// qkv(BN(x)) with BN(x) = a x + d: W' = W diag(a), b' = W d.
static void fold_bn_into_qkv(McParamList *pl, Block *b, int c) {
    double *a = mc_malloc((size_t)c * sizeof(double)), *d = mc_malloc((size_t)c * sizeof(double));
    for (int i = 0; i < c; i++) bn_affine(&b->norm, i, &a[i], &d[i]);
    b->qkv_b = tensor_new(MC_DIMS(3 * c));
    mc_params_add(pl, b->qkv_b);
    for (int j = 0; j < 3 * c; j++) {
        float *w = b->qkv_w->data + (size_t)j * c;
        double acc = 0;
        for (int i = 0; i < c; i++) {
            acc += (double)w[i] * d[i];
            w[i] = (float)((double)w[i] * a[i]);
        }
        b->qkv_b->data[j] = (float)acc;
    }
    mc_free(a), mc_free(d);
    drop_bn(pl, &b->norm);
}

static void fuse_convmlp(McParamList *pl, ConvMlp *m, int c, Tensor *gamma2) {
    size_t nk = (size_t)c * MLP_DW_SIZE * MLP_DW_SIZE;
    double *K = mc_calloc(nk, sizeof(double)), *b = mc_calloc((size_t)c, sizeof(double));
    add_convbn(K, b, &m->conv, c, 1, MLP_DW_SIZE, MLP_DW_SIZE);
    make_fused(pl, &m->cw, &m->cb, K, b, c, 1, MLP_DW_SIZE);
    mc_free(K), mc_free(b);
    drop_convbn(pl, &m->conv);
    if (gamma2) fold_gamma_rows(m->w2, m->b2, gamma2);
}

static void fuse_block(McParamList *pl, Block *b, int c) {
    if (!b->attn) {
        fuse_repmixer(pl, &b->mixer, c);
    } else {
        if (!b->norm_ln) fold_bn_into_qkv(pl, b, c);
        fold_gamma_rows(b->proj_w, b->proj_b, b->gamma1);
        mc_params_drop(pl, b->gamma1);
        b->gamma1 = NULL;
    }
    fuse_convmlp(pl, &b->mlp, c, b->gamma2);
    mc_params_drop(pl, b->gamma2);
    b->gamma2 = NULL;
}

static void fuse_all(FastVit *m) {
    McParamList *pl = &m->params;
    for (int i = 0; i < 3; i++) fuse_mobileone(pl, &m->stem[i]);
    for (int k = 0; k < m->cfg.n_stages; k++) {
        Stage *s = &m->stages[k];
        if (s->has_down) {
            fuse_lkconv(pl, &s->down_lk);
            fuse_mobileone(pl, &s->down_pw);
        }
        if (s->has_cpe) fuse_cpe(pl, s);
        for (int j = 0; j < s->depth; j++) fuse_block(pl, &s->blocks[j], s->dim);
    }
    fuse_mobileone(pl, &m->final_conv);
    m->fused = 1;
}

// ---- load ----

static int check_config(const McFastVitConfig *c, int embed, McErr *err) {
    if (c->n_stages < 1 || c->n_stages > 5)
        return mc_err(err, "fastvit: n_stages must be 1..5, found %d", c->n_stages);
    if (embed < 1) return mc_err(err, "fastvit: embedding width must be positive, found %d", embed);
    if (c->mlp_ratio < 1)
        return mc_err(err, "fastvit: mlp_ratio must be >= 1, found %d", c->mlp_ratio);
    for (int k = 0; k < c->n_stages; k++) {
        int w = c->widths[k];
        if (w < 1 || c->depths[k] < 0)
            return mc_err(err, "fastvit: stage %d has width %d, depth %d (expected >= 1, >= 0)",
                          k, w, c->depths[k]);
        if (c->attn[k] && w % ATTN_HEAD_DIM)
            return mc_err(err, "fastvit: attention stage %d width %d is not a multiple of the "
                          "head size %d", k, w, ATTN_HEAD_DIM);
        if (k > 0 && w % c->widths[k - 1])
            return mc_err(err, "fastvit: stage %d width %d is not a multiple of stage %d width %d "
                          "(the downsample conv has groups = C_in)", k, w, k - 1, c->widths[k - 1]);
    }
    return 0;
}

FastVit *fastvit_load(WeightSet *ws, const char *prefix, const McFastVitConfig *cfg, int embed,
                      int fuse, McErr *err) {
    if (check_config(cfg, embed, err)) return NULL;
    FastVit *m = mc_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->embed = embed;
    Ld ld = {.ws = ws, .params = &m->params};
    char p[KEY_MAX];
    ws_ignore_suffix(ws, ".num_batches_tracked");

    // Stem: 3x3 s2 (3 -> C0), depthwise 3x3 s2, 1x1; GELU after each.
    int c0 = cfg->widths[0];
    snprintf(p, sizeof p, "%s.stem.0", prefix);
    load_mobileone(&ld, &m->stem[0], p, 3, c0, 3, 2, 1, 1, cfg->stem_scale_branch, 1, 0);
    snprintf(p, sizeof p, "%s.stem.1", prefix);
    load_mobileone(&ld, &m->stem[1], p, c0, c0, 3, 2, c0, 1, cfg->stem_scale_branch, 1, 0);
    snprintf(p, sizeof p, "%s.stem.2", prefix);
    load_mobileone(&ld, &m->stem[2], p, c0, c0, 1, 1, 1, 1, cfg->stem_scale_branch, 1, 0);

    // Stages: downsample (k > 0), RepCPE (attention stages), blocks.
    for (int k = 0; k < cfg->n_stages; k++) {
        Stage *s = &m->stages[k];
        int c = cfg->widths[k];
        s->dim = c, s->depth = cfg->depths[k], s->has_down = k > 0, s->has_cpe = cfg->attn[k];
        s->heads = c / ATTN_HEAD_DIM;
        if (s->has_down) {
            int ci = cfg->widths[k - 1];
            snprintf(p, sizeof p, "%s.stages.%d.downsample.proj.0", prefix, k);
            load_lkconv(&ld, &s->down_lk, p, ci, c, cfg->se_downsample[k]);
            snprintf(p, sizeof p, "%s.stages.%d.downsample.proj.1", prefix, k);
            load_mobileone(&ld, &s->down_pw, p, c, c, 1, 1, 1, 1, 1, 1, 0);
        }
        if (s->has_cpe) {
            s->cpe_w = take(&ld, MC_DIMS(c, 1, CPE_SIZE, CPE_SIZE),
                            "%s.stages.%d.pos_emb.pos_enc.weight", prefix, k);
            s->cpe_b = take(&ld, MC_DIMS(c), "%s.stages.%d.pos_emb.pos_enc.bias", prefix, k);
        }
        s->blocks = mc_calloc((size_t)(s->depth ? s->depth : 1), sizeof(Block));
        for (int j = 0; j < s->depth; j++) {
            snprintf(p, sizeof p, "%s.stages.%d.blocks.%d", prefix, k, j);
            load_block(&ld, &s->blocks[j], p, c, cfg->attn[k], cfg->mlp_ratio,
                       cfg->attn_layernorm);
        }
    }

    // final_conv: 3x3, groups C, C -> 2C, scale branch, SE, GELU; head fc.
    int cl = cfg->widths[cfg->n_stages - 1];
    snprintf(p, sizeof p, "%s.final_conv", prefix);
    load_mobileone(&ld, &m->final_conv, p, cl, 2 * cl, 3, 1, cl, 1, 1, 1,
                   fastvit_make_divisible(2 * cl * SE_FC_RATIO, SE_FC_DIV));
    m->head_w = take(&ld, MC_DIMS(embed, 2 * cl), "%s.head.fc.weight", prefix);
    m->head_b = take(&ld, MC_DIMS(embed), "%s.head.fc.bias", prefix);

    if (fuse) fuse_all(m);
    return m;
}

void fastvit_free(FastVit *m) {
    if (!m) return;
    for (int k = 0; k < m->cfg.n_stages; k++) mc_free(m->stages[k].blocks);
    mc_params_free(&m->params);
    mc_pass_free(m->scratch);
    mc_free(m);
}

const McParamList *fastvit_params(const FastVit *m) { return &m->params; }
int fastvit_fused(const FastVit *m) { return m->fused; }

// ---- forward ----

static Tensor *bn_fwd(Graph *g, Tensor *x, const Bn *bn) {
    return ag_batchnorm(g, x, bn->mean, bn->var, bn->gamma, bn->beta, BN_EPS);
}

// x * sigmoid(fc2(relu(fc1(mean_HW(x))))): x [N, C, H, W].
static Tensor *se_fwd(Graph *g, Tensor *x, const Se *se) {
    int64_t N = x->shape[0], C = x->shape[1];
    Tensor *s = ag_avgpool(g, x);                                    // [N, C]
    s = ag_relu(g, ag_linear(g, s, se->w1, se->b1));                 // [N, R]
    s = ag_sigmoid(g, ag_linear(g, s, se->w2, se->b2));              // [N, C]
    s = ag_reshape(g, s, MC_DIMS(N, C, 1, 1));
    return ag_mul(g, x, s);
}

static Tensor *mobileone_fwd(Graph *g, Tensor *x, const MobileOne *m) {
    Tensor *out;
    if (m->rw) {
        // Fused: one conv with bias.
        out = ag_conv2d(g, x, m->rw, m->rb, m->stride, m->pad, m->groups);
    } else {
        // Training form: sum of the branches that exist.
        out = NULL;
        if (m->has_kxk)
            out = bn_fwd(g, ag_conv2d(g, x, m->kxk.w, NULL, m->stride, m->pad, m->groups),
                         &m->kxk.bn);
        if (m->has_scale) {
            Tensor *s = bn_fwd(g, ag_conv2d(g, x, m->scale.w, NULL, m->stride, 0, m->groups),
                               &m->scale.bn);
            out = out ? ag_add(g, out, s) : s;
        }
        if (m->has_id) {
            Tensor *s = bn_fwd(g, x, &m->id);
            out = out ? ag_add(g, out, s) : s;
        }
        MC_CHECK(out, "mobileone: block without any branch");
    }
    if (m->has_se) out = se_fwd(g, out, &m->se);
    if (m->act) out = ag_gelu(g, out);
    return out;
}

static Tensor *lkconv_fwd(Graph *g, Tensor *x, const LkConv *m) {
    Tensor *out;
    if (m->rw) {
        out = ag_conv2d(g, x, m->rw, m->rb, m->stride, LK_SIZE / 2, m->groups);
    } else {
        Tensor *l = ag_conv2d(g, x, m->large.w, NULL, m->stride, LK_SIZE / 2, m->groups);
        Tensor *s = ag_conv2d(g, x, m->small.w, NULL, m->stride, LK_SMALL / 2, m->groups);
        out = ag_add(g, bn_fwd(g, l, &m->large.bn), bn_fwd(g, s, &m->small.bn));
    }
    if (m->has_se) out = se_fwd(g, out, &m->se);
    return ag_gelu(g, out);     // lkc_use_act: GELU after every MCi downsample conv
}

static Tensor *repmixer_fwd(Graph *g, Tensor *x, const RepMixer *r) {
    int64_t C = x->shape[1];
    if (r->rw) return ag_conv2d(g, x, r->rw, r->rb, 1, MIXER_SIZE / 2, (int)C);
    // x + gamma * (mixer(x) - norm(x))
    Tensor *d = ag_sub(g, mobileone_fwd(g, x, &r->mixer), mobileone_fwd(g, x, &r->norm));
    return ag_add(g, x, ag_mul(g, d, r->gamma));
}

// The ConvMlp branch (layer scale applied by the caller when not folded).
static Tensor *convmlp_fwd(Graph *g, Tensor *x, const ConvMlp *m) {
    int64_t C = x->shape[1];
    Tensor *h;
    if (m->cw)
        h = ag_conv2d(g, x, m->cw, m->cb, 1, MLP_DW_SIZE / 2, (int)C);
    else
        h = bn_fwd(g, ag_conv2d(g, x, m->conv.w, NULL, 1, MLP_DW_SIZE / 2, (int)C), &m->conv.bn);
    h = ag_gelu(g, ag_conv2d(g, h, m->w1, m->b1, 1, 0, 1));
    return ag_conv2d(g, h, m->w2, m->b2, 1, 0, 1);
}

// ---- the ConvMlp tail as one tape op (fused form) ----
//
//   out = x + W2 GELU(W1 h + b1) + b2     x, h [N, C, HW]; W1 [Hd, C], W2 [C, Hd]
//
// (the 1x1 convs fc1, fc2 as matrices; h = the ConvMlp's depthwise conv
// output).  Work is cut into tasks of one image and one block of PB
// pixels: hid [Hd, PB] = b1 + W1 h_blk, GELU in place, then out_blk =
// (x_blk + b2) + W2 hid.  The hidden block stays in cache and no
// [N, Hd, HW] tensor is made when nothing is recorded; the bias and
// residual adds are the GEMMs' starting values.  Recording keeps the
// pre-activations for the backward (weights frozen):
//   dx += dout;  dhid = W2^T dout_blk;  dpre = dhid GELU'(pre);  dh += W1^T dpre.
// The recorded and the plain pass run the same arithmetic per element, and
// tasks and GEMM shapes depend only on the tensor shapes, so outputs are
// identical between them and for any thread count.  Tasks run in parallel
// when there are at least as many as threads, else one after another with
// each GEMM split over the threads (mc_sgemm).

// The plain loops carry `omp simd`: at -O2 GCC vectorises a loop of unknown
// length only when told to.
#define MLP_BLOCK_FLOATS (1 << 18)   // hidden block: at most 1 MiB, fits in L2

typedef struct {
    const ConvMlp *m;   // weights (frozen, owned by the trunk)
    int N, C, Hd, HW, pb, nblk, nthreads;
    float *pre;         // [N, Hd, HW] pre-activations (recording), else NULL
    float *work;        // per thread: Hd * pb (forward), 2 Hd pb (backward)
} MlpTail;

// Pixels per task: HW in the fewest near-equal blocks (multiples of 16)
// with Hd * pb <= MLP_BLOCK_FLOATS.  Every block packs W1 and W2 again in
// OpenBLAS, so blocks are as large as the cache allows.
static void mlp_tail_plan(MlpTail *t, int N, int C, int Hd, int HW) {
    t->N = N, t->C = C, t->Hd = Hd, t->HW = HW;
    int most = MLP_BLOCK_FLOATS / Hd / 16 * 16;
    if (most < 16) most = 16;
    int nblk = (HW + most - 1) / most;
    int pb = ((HW + nblk - 1) / nblk + 15) / 16 * 16;
    t->pb = pb < HW ? pb : HW;
    t->nblk = (HW + t->pb - 1) / t->pb;
    t->nthreads = mc_threads();
}

// One task of the forward: image n, pixels p0 .. p0 + len - 1.
static void mlp_tail_task(const MlpTail *t, float *out, const float *x, const float *h, int n,
                          int p0, int len, float *hid) {
    const McIsa *k = mc_isa();
    const ConvMlp *m = t->m;
    int C = t->C, Hd = t->Hd, HW = t->HW;
    size_t xo = (size_t)n * C * HW + (size_t)p0;
    // Pre-activations: into the saved tensor (recording) or the hidden block.
    float *pre = t->pre ? t->pre + (size_t)n * Hd * HW + (size_t)p0 : hid;
    int ldp = t->pre ? HW : len;
    const float *b1 = m->b1->data, *b2 = m->b2->data;
    for (int o = 0; o < Hd; o++) {
        float v = b1[o], *row = pre + (size_t)o * ldp;
        #pragma omp simd
        for (int j = 0; j < len; j++) row[j] = v;
    }
    mc_sgemm(0, 0, Hd, len, C, 1.0f, m->w1->data, C, h + xo, HW, 1.0f, pre, ldp);
    // GELU row by row (the same calls in both passes).
    for (int o = 0; o < Hd; o++)
        k->gelu_forward(hid + (size_t)o * len, pre + (size_t)o * ldp, len);
    // out = (x + b2) + W2 hid
    for (int c = 0; c < C; c++) {
        float b = b2[c];
        const float *xr = x + xo + (size_t)c * HW;
        float *orow = out + xo + (size_t)c * HW;
        #pragma omp simd
        for (int j = 0; j < len; j++) orow[j] = xr[j] + b;
    }
    mc_sgemm(0, 0, C, len, Hd, 1.0f, m->w2->data, Hd, hid, len, 1.0f, out + xo, HW);
}

// One task of the backward (see above); dhid, dpre [Hd, len] scratch.
static void mlp_tail_task_bwd(const MlpTail *t, float *dx, float *dh, const float *dout, int n,
                              int p0, int len, float *dhid, float *dpre) {
    const McIsa *k = mc_isa();
    int C = t->C, Hd = t->Hd, HW = t->HW;
    size_t xo = (size_t)n * C * HW + (size_t)p0;
    if (dx)
        for (int c = 0; c < C; c++) {
            float *d = dx + xo + (size_t)c * HW;
            const float *g = dout + xo + (size_t)c * HW;
            #pragma omp simd
            for (int j = 0; j < len; j++) d[j] += g[j];
        }
    if (!dh) return;
    // dhid [Hd, len] = W2^T dout_blk
    mc_sgemm(1, 0, Hd, len, C, 1.0f, t->m->w2->data, Hd, dout + xo, HW, 0.0f, dhid, len);
    // dpre = dhid GELU'(pre)
    const float *pre = t->pre + (size_t)n * Hd * HW + (size_t)p0;
    memset(dpre, 0, (size_t)Hd * len * sizeof(float));
    for (int o = 0; o < Hd; o++)
        k->gelu_backward(dpre + (size_t)o * len, dhid + (size_t)o * len, pre + (size_t)o * HW,
                         len);
    // dh_blk += W1^T dpre
    mc_sgemm(1, 0, C, len, Hd, 1.0f, t->m->w1->data, C, dpre, len, 1.0f, dh + xo, HW);
}

static void mlp_tail_backward(AgNode *node) {
    Tensor *x = node->in[0], *h = node->in[1], *out = node->out;
    const MlpTail *t = node->saved;
    float *dx = ag_wants(x) ? x->grad : NULL, *dh = ag_wants(h) ? h->grad : NULL;
    if (!dx && !dh) return;
    int tasks = t->N * t->nblk, per = 2 * t->Hd * t->pb;
    #pragma omp parallel for schedule(static) num_threads(t->nthreads) \
        if (tasks >= t->nthreads && t->nthreads > 1)
    for (int i = 0; i < tasks; i++) {
        int n = i / t->nblk, p0 = i % t->nblk * t->pb;
        int len = t->HW - p0 < t->pb ? t->HW - p0 : t->pb;
        float *w = t->work + (size_t)THREAD_ID() * per;
        mlp_tail_task_bwd(t, dx, dh, out->grad, n, p0, len, w, w + (size_t)t->Hd * t->pb);
    }
}

static Tensor *mlp_tail(Graph *g, Tensor *x, Tensor *h, const ConvMlp *m) {
    int N = (int)x->shape[0], C = (int)x->shape[1], HW = (int)(x->shape[2] * x->shape[3]);
    int Hd = (int)m->w1->shape[0];
    MC_CHECK(!m->w1->requires_grad && !m->w2->requires_grad && !m->b1->requires_grad &&
             !m->b2->requires_grad, "fastvit mlp_tail: weights must be frozen");
    MlpTail *t = arena_alloc(&g->arena, sizeof *t);
    t->m = m;
    mlp_tail_plan(t, N, C, Hd, HW);
    Tensor *ins[2] = {x, h};
    int rec = ag_needs_grad(g, ins, 2);
    size_t per = (size_t)Hd * t->pb * (rec ? 2 : 1);
    t->work = arena_alloc(&g->arena, per * (size_t)t->nthreads * sizeof(float));
    t->pre = rec ? arena_alloc(&g->arena, (size_t)N * Hd * HW * sizeof(float)) : NULL;
    Tensor *out = ag_tensor(g, 4, x->shape);

    int tasks = N * t->nblk;
    #pragma omp parallel for schedule(static) num_threads(t->nthreads) \
        if (tasks >= t->nthreads && t->nthreads > 1)
    for (int i = 0; i < tasks; i++) {
        int n = i / t->nblk, p0 = i % t->nblk * t->pb;
        int len = HW - p0 < t->pb ? HW - p0 : t->pb;
        mlp_tail_task(t, out->data, x->data, h->data, n, p0, len,
                      t->work + (size_t)THREAD_ID() * per);
    }
    if (rec) ag_record(g, "fastvit_mlp_tail", mlp_tail_backward, out, ins, 2)->saved = t;
    return out;
}

// x + gamma1 * proj(attention(norm(x))) with tokens = pixels in row-major order.
// probe_g: where to put the attention probabilities of this block, or NULL.
static Tensor *attention_fwd(Graph *g, Tensor *x, const Block *b, int heads, Graph *probe_g,
                             McImageHooks *hooks) {
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], T = H * W;
    float scale = 1.0f / sqrtf((float)ATTN_HEAD_DIM);

    // Norm: LayerNorm2d, BatchNorm, or nothing when the BN is folded into qkv.
    Tensor *xn = x;
    if (b->norm_ln)
        xn = ag_layernorm2d(g, x, b->norm.gamma, b->norm.beta, LN2D_EPS);
    else if (b->norm.mean)
        xn = bn_fwd(g, x, &b->norm);

    // [N, C, H, W] -> tokens [N, T, C].
    Tensor *t = ag_permute(g, ag_reshape(g, xn, MC_DIMS(N, C, T, 1)), 0, 2, 1, 3);
    t = ag_reshape(g, t, MC_DIMS(N, T, C));

    // qkv, attention, output projection.
    Tensor *qkv = ag_linear(g, t, b->qkv_w, b->qkv_b);                 // [N, T, 3C]
    if (probe_g) hooks->attn = mc_attn_probs(probe_g, qkv, heads, hooks->attn_head, scale);
    Tensor *a = ag_attention(g, qkv, heads, NULL, scale);              // [N, T, C]
    Tensor *o = ag_linear(g, a, b->proj_w, b->proj_b);

    // Tokens back to [N, C, H, W]; layer scale unless folded; residual.
    o = ag_permute(g, ag_reshape(g, o, MC_DIMS(N, T, C, 1)), 0, 2, 1, 3);
    o = ag_reshape(g, o, MC_DIMS(N, C, H, W));
    if (b->gamma1) o = ag_mul(g, o, b->gamma1);
    return ag_add(g, x, o);
}

static Tensor *block_fwd(Graph *g, Tensor *x, const Block *b, int heads, Graph *probe_g,
                         McImageHooks *hooks) {
    // Token mixer.
    if (b->attn)
        x = attention_fwd(g, x, b, heads, probe_g, hooks);
    else
        x = repmixer_fwd(g, x, &b->mixer);

    // ConvMlp branch with layer scale (folded into fc2 in the fused form).
    const ConvMlp *m = &b->mlp;
    if (m->cw && !b->gamma2) {
        Tensor *h0 = ag_conv2d(g, x, m->cw, m->cb, 1, MLP_DW_SIZE / 2, (int)x->shape[1]);
        return mlp_tail(g, x, h0, m);
    }
    Tensor *h = convmlp_fwd(g, x, &b->mlp);
    if (b->gamma2) h = ag_mul(g, h, b->gamma2);
    return ag_add(g, x, h);
}

static void dump(McImageHooks *hooks, const char *name, const Tensor *t) {
    if (hooks && hooks->dump) hooks->dump(hooks->dump_ctx, name, t);
}

Tensor *fastvit_forward(Graph *g, FastVit *m, Tensor *x, McImageHooks *hooks) {
    TENSOR_CHECK_NDIM(x, 4, "fastvit_forward");
    MC_CHECK(x->shape[1] == 3, "fastvit_forward: expected [N, 3, H, W] images, found %lld channels",
             (long long)x->shape[1]);
    char name[32];
    McPass p;
    mc_pass_begin(&p, g, m->scratch, x);
    dump(hooks, "image.input", x);

    // Stem: stride 4.
    for (int i = 0; i < 3; i++) x = mobileone_fwd(p.run, x, &m->stem[i]);
    dump(hooks, "image.stem", x);
    mc_pass_next(&p);

    // Stages: downsample and RepCPE as one unit, then one unit per block.
    for (int k = 0; k < m->cfg.n_stages; k++) {
        const Stage *s = &m->stages[k];
        if (s->has_down) {
            x = lkconv_fwd(p.run, x, &s->down_lk);
            x = mobileone_fwd(p.run, x, &s->down_pw);
        }
        if (s->has_cpe) {
            // RepCPE: x + dwconv7x7(x) + b, or the fused conv with the identity inside.
            if (s->cpe_rw)
                x = ag_conv2d(p.run, x, s->cpe_rw, s->cpe_rb, 1, CPE_SIZE / 2, s->dim);
            else
                x = ag_add(p.run, x,
                           ag_conv2d(p.run, x, s->cpe_w, s->cpe_b, 1, CPE_SIZE / 2, s->dim));
        }
        if (s->has_down || s->has_cpe) mc_pass_next(&p);
        for (int j = 0; j < s->depth; j++) {
            int probe = hooks && hooks->attn_block == j && hooks->attn_stage == k;
            x = block_fwd(p.run, x, &s->blocks[j], s->heads, probe ? p.out : NULL, hooks);
            if (j == s->depth - 1) {
                snprintf(name, sizeof name, "image.stage.%d", k);
                dump(hooks, name, x);
            }
            mc_pass_next(&p);
        }
        if (s->depth == 0) {
            snprintf(name, sizeof name, "image.stage.%d", k);
            dump(hooks, name, x);
        }
    }

    // final_conv, global average pool, projection.
    x = mobileone_fwd(p.run, x, &m->final_conv);
    dump(hooks, "image.final_conv", x);
    x = ag_avgpool(p.run, x);
    dump(hooks, "image.pooled", x);
    x = mc_pass_end(&p, ag_linear(p.run, x, m->head_w, m->head_b));
    dump(hooks, "image.embed", x);
    return x;
}
