// image_tower.c - dispatch to the FastViT or ViT trunk (see image_tower.h),
// the parameter list shared by both, and the attention-probability probe.
#include "image_tower.h"

#include <math.h>
#include <string.h>

#include "fastvit.h"
#include "vit.h"

#define TRUNK_PREFIX "visual.trunk"

struct ImageTower {
    McImageConfig cfg;
    FastVit *fastvit;   // exactly one of the two is set
    Vit     *vit;
};

// ---- parameter lists ----

void mc_params_add(McParamList *p, Tensor *t) {
    if (!t) return;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        Tensor **nt = mc_malloc((size_t)cap * sizeof *nt);
        if (p->n) memcpy(nt, p->t, (size_t)p->n * sizeof *nt);
        mc_free(p->t);
        p->t = nt, p->cap = cap;
    }
    p->t[p->n++] = t;
}

void mc_params_drop(McParamList *p, Tensor *t) {
    if (!t) return;
    for (int i = 0; i < p->n; i++) {
        if (p->t[i] != t) continue;
        memmove(p->t + i, p->t + i + 1, (size_t)(p->n - i - 1) * sizeof *p->t);
        p->n--;
        break;
    }
    tensor_free(t);
}

void mc_params_free(McParamList *p) {
    for (int i = 0; i < p->n; i++) tensor_free(p->t[i]);
    mc_free(p->t);
    memset(p, 0, sizeof *p);
}

int64_t mc_params_numel(const McParamList *p) {
    int64_t n = 0;
    for (int i = 0; i < p->n; i++) n += p->t[i]->n;
    return n;
}

// ---- attention probe ----

Tensor *mc_attn_probs(Graph *g, const Tensor *qkv, int heads, int head, float scale) {
    TENSOR_CHECK_NDIM(qkv, 3, "mc_attn_probs");
    int64_t N = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3;
    int64_t hs = C / heads;
    MC_CHECK(C3 == 3 * C && C == hs * heads && head < heads,
             "mc_attn_probs: qkv width %lld, %d heads, head %d", (long long)C3, heads, head);
    Tensor *p = ag_zeros(g, MC_DIMS(N, T, T));
    double *row = mc_malloc((size_t)T * sizeof(double));
    int h0 = head < 0 ? 0 : head, h1 = head < 0 ? heads : head + 1;
    for (int64_t n = 0; n < N; n++)
        for (int h = h0; h < h1; h++)
            for (int64_t i = 0; i < T; i++) {
                // Scores q_i . k_j * scale for all j, then a max-subtracted softmax.
                const float *q = qkv->data + (n * T + i) * C3 + h * hs;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < T; j++) {
                    const float *k = qkv->data + (n * T + j) * C3 + C + h * hs;
                    double dot = 0;
                    for (int64_t d = 0; d < hs; d++) dot += (double)q[d] * k[d];
                    row[j] = dot * scale;
                    if (row[j] > mx) mx = row[j];
                }
                for (int64_t j = 0; j < T; j++) sum += (row[j] = exp(row[j] - mx));
                float *out = p->data + (n * T + i) * T;
                for (int64_t j = 0; j < T; j++) out[j] += (float)(row[j] / sum / (h1 - h0));
            }
    mc_free(row);
    return p;
}

// ---- inference passes ----

#define SCRATCH_BYTES ((size_t)1 << 20)   // first block; arenas grow to the peak

void mc_pass_begin(McPass *p, Graph *out, Graph **scratch, const Tensor *x) {
    int record = out->grad_enabled && x->requires_grad;
    p->out = out, p->run = out, p->scratch = NULL, p->cur = 0;
    if (record) return;
    for (int i = 0; i < 2; i++) {
        if (!scratch[i]) scratch[i] = ag_graph_new(SCRATCH_BYTES);
        scratch[i]->grad_enabled = 0;
        ag_graph_reset(scratch[i]);
    }
    p->scratch = scratch;
    p->run = scratch[0];
}

void mc_pass_next(McPass *p) {
    if (!p->scratch) return;
    // The unit's input lives in the other graph (or is the caller's x).
    ag_graph_reset(p->scratch[p->cur ^ 1]);
    p->cur ^= 1;
    p->run = p->scratch[p->cur];
}

Tensor *mc_pass_end(McPass *p, Tensor *x) {
    if (!p->scratch) return x;
    Tensor *y = ag_tensor(p->out, x->ndim, x->shape);
    memcpy(y->data, x->data, (size_t)x->n * sizeof(float));
    ag_graph_reset(p->scratch[0]);
    ag_graph_reset(p->scratch[1]);
    return y;
}

void mc_pass_free(Graph **scratch) {
    for (int i = 0; i < 2; i++) {
        ag_graph_free(scratch[i]);
        scratch[i] = NULL;
    }
}

// ---- tower ----

ImageTower *image_tower_load(WeightSet *ws, const McImageConfig *cfg, int fuse, McErr *err) {
    ImageTower *t = mc_calloc(1, sizeof *t);
    t->cfg = *cfg;
    if (cfg->kind == MC_TRUNK_FASTVIT)
        t->fastvit = fastvit_load(ws, TRUNK_PREFIX, &cfg->fastvit, cfg->embed, fuse, err);
    else
        t->vit = vit_load(ws, TRUNK_PREFIX, &cfg->vit, cfg->image_size, cfg->embed, fuse, err);
    if (!t->fastvit && !t->vit) {
        mc_free(t);
        return NULL;
    }
    return t;
}

void image_tower_free(ImageTower *t) {
    if (!t) return;
    fastvit_free(t->fastvit);
    vit_free(t->vit);
    mc_free(t);
}

Tensor *image_tower_forward(Graph *g, ImageTower *t, Tensor *x, McImageHooks *hooks) {
    if (hooks) hooks->attn = NULL;
    if (t->fastvit) return fastvit_forward(g, t->fastvit, x, hooks);
    return vit_forward(g, t->vit, x, hooks);
}

const McImageConfig *image_tower_config(const ImageTower *t) { return &t->cfg; }

int image_tower_fused(const ImageTower *t) {
    return t->fastvit ? fastvit_fused(t->fastvit) : vit_fused(t->vit);
}

int image_tower_param_count(const ImageTower *t) {
    return t->fastvit ? fastvit_params(t->fastvit)->n : vit_param_count(t->vit);
}

Tensor *image_tower_param(const ImageTower *t, int i) {
    MC_CHECK(i >= 0 && i < image_tower_param_count(t), "image_tower_param: index %d of %d", i,
             image_tower_param_count(t));
    return t->fastvit ? fastvit_params(t->fastvit)->t[i] : vit_param(t->vit, i);
}

int64_t image_tower_numel(const ImageTower *t) {
    int64_t n = 0;
    for (int i = 0; i < image_tower_param_count(t); i++) n += image_tower_param(t, i)->n;
    return n;
}
