// text.c - the MobileCLIP2 text tower (see text.h).
//
// Dims: B sequences, T tokens (context), W width, E embedding, V vocab.
// Reference: open_clip transformer.py TextTransformer (_embeds, forward,
// text_global_pool with pool_type 'argmax').
#include "text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../tensor/gemm.h"
#include "../tensor/kernels.h"
#include "../tensor/simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// ---- binding ----

static int check_config(const McTextConfig *c, McErr *err) {
    if (c->vocab < 2 || c->context < 1 || c->width < 1 || c->heads < 1 || c->layers < 0 ||
        c->embed < 1 || c->width % c->heads != 0 || c->layers > 1000)
        return mc_err(err, "text tower: unusable config (vocab %d, context %d, width %d, "
                      "heads %d, layers %d, embed %d): need width divisible by heads and "
                      "positive sizes", c->vocab, c->context, c->width, c->heads, c->layers,
                      c->embed);
    return 0;
}

static NnBlockSpec block_spec(const McTextConfig *c) {
    NnBlockSpec s = {.width = c->width, .heads = c->heads, .mlp = 4 * c->width,
                     .ln_eps = TEXT_LN_EPS, .names = NN_NAMES_OPENCLIP};
    return s;
}

static Tensor *take2(WeightSet *ws, const char *prefix, const char *name,
                     int ndim, int64_t d0, int64_t d1) {
    char key[512];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    const int64_t shape[2] = {d0, d1};
    return ws_take(ws, key, ndim, shape);
}

int text_tower_bind(TextTower *t, WeightSet *ws, const char *prefix,
                    const McTextConfig *cfg, McErr *err) {
    memset(t, 0, sizeof *t);
    if (check_config(cfg, err)) return -1;
    t->cfg = *cfg;
    int64_t V = cfg->vocab, T = cfg->context, W = cfg->width, E = cfg->embed;

    // Embeddings, then the blocks, then the head.
    t->token_embedding = take2(ws, prefix, "token_embedding.weight", 2, V, W);
    t->positional      = take2(ws, prefix, "positional_embedding", 2, T, W);
    t->blocks = mc_calloc((size_t)cfg->layers + 1, sizeof *t->blocks);
    NnBlockSpec spec = block_spec(cfg);
    for (int k = 0; k < cfg->layers; k++) {
        char p[256];
        snprintf(p, sizeof p, "%stransformer.resblocks.%d.", prefix, k);
        nn_block_bind(&t->blocks[k], ws, p, &spec);
    }
    t->ln_final_w = take2(ws, prefix, "ln_final.weight", 1, W, 1);
    t->ln_final_b = take2(ws, prefix, "ln_final.bias", 1, W, 1);
    t->projection = take2(ws, prefix, "text_projection", 2, W, E);

    // Causal additive mask: -inf strictly above the diagonal (open_clip
    // build_causal_mask), so position i attends to positions 0..i.
    if (cfg->causal) {
        t->mask = tensor_new(MC_DIMS(T, T));
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = i + 1; j < T; j++) t->mask->data[i * T + j] = -INFINITY;
    }
    return 0;
}

void text_tower_free(TextTower *t) {
    if (!t) return;
    tensor_free(t->token_embedding);
    tensor_free(t->positional);
    for (int k = 0; t->blocks && k < t->cfg.layers; k++) nn_block_free(&t->blocks[k]);
    mc_free(t->blocks);
    tensor_free(t->ln_final_w);
    tensor_free(t->ln_final_b);
    tensor_free(t->projection);
    tensor_free(t->mask);
    ag_graph_free(t->scratch);
    memset(t, 0, sizeof *t);
}

int64_t text_tower_params(const McTextConfig *c) {
    NnBlockSpec s = block_spec(c);
    int64_t W = c->width;
    return (int64_t)c->vocab * W + (int64_t)c->context * W +
           c->layers * nn_block_params(&s) + 2 * W + W * c->embed;
}

// ---- inputs ----

void text_pool_index(const int32_t *ids, int64_t B, int T, int32_t *pool) {
    for (int64_t b = 0; b < B; b++) {
        const int32_t *ids_b = ids + b * T;
        int best = 0;
        // Strict '>' keeps the first occurrence of the maximum (torch.argmax).
        for (int i = 1; i < T; i++)
            if (ids_b[i] > ids_b[best]) best = i;
        pool[b] = best;
    }
}

int text_check_ids(const TextTower *t, const int32_t *ids, int64_t B, McErr *err) {
    int64_t n = B * t->cfg.context;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->cfg.vocab)
            return mc_err(err, "text tower: token id %d at sequence %lld position %lld is "
                          "outside the model's vocabulary [0, %d)", ids[i],
                          (long long)(i / t->cfg.context), (long long)(i % t->cfg.context),
                          t->cfg.vocab);
    return 0;
}

Tensor *text_tower_tokens(Graph *g, const TextTower *t, const int32_t *ids, int64_t B) {
    int64_t T = t->cfg.context, W = t->cfg.width;
    Tensor *rows = ag_rows(g, t->token_embedding, ids, B * T);    // [B*T, W]
    return ag_reshape(g, rows, MC_DIMS(B, T, W));
}

// ---- forward ----

static void dump_call(const McDump *d, const char *name, const Tensor *x) {
    if (d && d->fn) d->fn(d->ctx, name, x);
}

// x [B, T, W] through blocks 0 .. n-1.  With gradients the whole chain
// stays in g; without, each block runs in the tower's scratch graph and its
// output is copied back over x (x is a fresh tensor owned by this forward).
static Tensor *run_blocks(Graph *g, TextTower *t, Tensor *x, const McDump *dump, int n) {
    char name[64];
    int inference = !g->grad_enabled;
    if (inference && !t->scratch) t->scratch = ag_graph_new((size_t)1 << 20);
    for (int k = 0; k < n; k++) {
        snprintf(name, sizeof name, "text.block.%d", k);
        if (!inference) {
            x = nn_block_forward(g, &t->blocks[k], x, t->mask);
            dump_call(dump, name, x);
            continue;
        }
        ag_graph_reset(t->scratch);
        t->scratch->grad_enabled = 0;
        Tensor *y = nn_block_forward(t->scratch, &t->blocks[k], x, t->mask);
        dump_call(dump, name, y);
        tensor_copy(x, y);
    }
    if (inference) ag_graph_reset(t->scratch);
    return x;
}

// The last block when only the pooled rows are wanted (inference): its
// attention needs k and v of every position but q of the pooled row only,
// and everything after the attention is per row.  x [B, T, W] (block
// input), rows [B] = b T + pool[b]; returns the block's output at those
// rows, [B, W] in g.  The same arithmetic kernels as the full block, so the
// result equals the full block's rows up to float rounding.
static Tensor *last_block_pooled(Graph *g, const NnBlock *b, Tensor *x, const Tensor *mask,
                                 const int32_t *rows) {
    const McIsa *k = mc_isa();
    int64_t B = x->shape[0], T = x->shape[1], W = x->shape[2];
    int NH = b->spec.heads, HS = (int)(W / NH);
    float scale = 1.0f / sqrtf((float)HS);

    // qkv of every position (k, v needed everywhere).
    Tensor *h = ag_layernorm(g, x, b->ln1_w, b->ln1_b, b->spec.ln_eps);
    Tensor *qkv = ag_linear(g, h, b->qkv_w, b->qkv_b);                 // [B, T, 3W]

    // One query row per sequence: s_j = (q scale) . k_j + mask, softmax, sum
    // p_j v_j.  To give the very values of mc_attention_forward, the row is
    // computed inside the same row group its small GEMMs use (4 rows, or the
    // single leftover rows past the last multiple of 4), with k transposed
    // and rows padded to Tp = T rounded up to 16 as there.
    int64_t Tp = (T + 15) / 16 * 16, T4 = T / 4 * 4;
    Tensor *att = ag_tensor(g, MC_DIMS(B, W));
    size_t per = (size_t)(4 * HS + HS * Tp + 8 * Tp + 4 * HS);
    float *buf = arena_alloc(&g->arena, (size_t)mc_threads() * per * 4);
    #pragma omp parallel for schedule(static) num_threads(mc_threads()) if (B * NH > 64)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t bi = bh / NH, hh = bh % NH, i = rows[bi] - bi * T;
        int64_t i0 = i < T4 ? i / 4 * 4 : i, m = i < T4 ? 4 : 1;
#ifdef _OPENMP
        float *qs = buf + (size_t)omp_get_thread_num() * per;
#else
        float *qs = buf;
#endif
        float *kt = qs + 4 * HS, *sc = kt + HS * Tp, *p = sc + 4 * Tp, *o = p + 4 * Tp;
        const float *base = qkv->data + (size_t)bi * T * 3 * W + (size_t)hh * HS;
        // q of the group's rows, scaled; k^T zero-padded to Tp columns.
        for (int64_t r = 0; r < m; r++)
            for (int d = 0; d < HS; d++)
                qs[r * HS + d] = base[(size_t)(i0 + r) * 3 * W + d] * scale;
        for (int d = 0; d < HS; d++) {
            for (int64_t j = 0; j < T; j++) kt[d * Tp + j] = base[(size_t)j * 3 * W + W + d];
            for (int64_t j = T; j < Tp; j++) kt[d * Tp + j] = 0.0f;
        }
        // Scores, mask, softmax over the padded rows, then p v.
        k->gemm_small(0, (int)m, (int)Tp, HS, qs, HS, kt, (int)Tp, sc, (int)Tp, 0);
        for (int64_t r = 0; r < m; r++) {
            float *sr = sc + r * Tp;
            if (mask)
                for (int64_t j = 0; j < T; j++) sr[j] += mask->data[(i0 + r) * T + j];
            for (int64_t j = T; j < Tp; j++) sr[j] = -INFINITY;
            k->softmax_row(p + r * Tp, sr, Tp);
        }
        k->gemm_small(0, (int)m, HS, (int)T, p, (int)Tp, base + 2 * W, (int)(3 * W), o, HS, 0);
        memcpy(att->data + (size_t)bi * W + (size_t)hh * HS, o + (i - i0) * HS,
               (size_t)HS * sizeof(float));
    }

    // The rest of the block on the B pooled rows, in the order of
    // nn_block_forward's fused branches: y = (x + b_proj) + att Wp^T, then
    // out = (y + b2) + GELU(b1 + LN2(y) W1^T) W2^T.
    int M = b->spec.mlp;
    Tensor *y = ag_tensor(g, MC_DIMS(B, W)), *out = ag_tensor(g, MC_DIMS(B, W));
    float *hn = arena_alloc(&g->arena, (size_t)B * W * 4);
    float *hid = arena_alloc(&g->arena, (size_t)B * M * 4);
    for (int64_t r = 0; r < B; r++)
        for (int64_t j = 0; j < W; j++)
            y->data[r * W + j] = x->data[(size_t)rows[r] * W + j] + b->proj_b->data[j];
    mc_sgemm(0, 1, (int)B, (int)W, (int)W, 1.0f, att->data, (int)W, b->proj_w->data, (int)W,
             1.0f, y->data, (int)W);
    mc_layernorm_forward(hn, NULL, NULL, y->data, b->ln2_w->data, b->ln2_b->data, B, W,
                         b->spec.ln_eps);
    for (int64_t r = 0; r < B; r++) memcpy(hid + r * M, b->fc1_b->data, (size_t)M * 4);
    mc_sgemm(0, 1, (int)B, M, (int)W, 1.0f, hn, (int)W, b->fc1_w->data, (int)W, 1.0f, hid, M);
    mc_gelu_forward(hid, hid, B * M);
    for (int64_t r = 0; r < B; r++)
        for (int64_t j = 0; j < W; j++)
            out->data[r * W + j] = y->data[r * W + j] + b->fc2_b->data[j];
    mc_sgemm(0, 1, (int)B, (int)W, M, 1.0f, hid, M, b->fc2_w->data, M, 1.0f, out->data, (int)W);
    return out;
}

Tensor *text_tower_forward_tokens(Graph *g, TextTower *t, Tensor *tok, const int32_t *pool,
                                  const McDump *dump) {
    const McTextConfig *c = &t->cfg;
    TENSOR_CHECK_NDIM(tok, 3, "text_tower_forward_tokens");
    MC_CHECK(tok->shape[1] == c->context && tok->shape[2] == c->width,
             "text_tower_forward_tokens: tok is [%lld, %lld, %lld], tower wants [B, %d, %d]",
             (long long)tok->shape[0], (long long)tok->shape[1], (long long)tok->shape[2],
             c->context, c->width);
    int64_t B = tok->shape[0], T = c->context, W = c->width;

    // x0 = tok + positional (broadcast over B)
    Tensor *x = ag_add(g, tok, t->positional);
    dump_call(dump, "text.x0", x);

    // pooled rows b*T + pool[b] of the flattened [B*T, W]
    int32_t *rows = arena_alloc(&g->arena, (size_t)B * sizeof *rows);
    for (int64_t b = 0; b < B; b++) {
        MC_CHECK(pool[b] >= 0 && pool[b] < T, "text tower: pool[%lld] = %d outside [0, %lld)",
                 (long long)b, pool[b], (long long)T);
        rows[b] = (int32_t)(b * T + pool[b]);
    }

    // Residual attention blocks; inference without dumps computes the last
    // block at the pooled rows only (ln_final is per row, so it commutes
    // with the pooling).
    Tensor *pooled;
    if (!g->grad_enabled && !(dump && dump->fn) && c->layers > 0) {
        x = run_blocks(g, t, x, dump, c->layers - 1);
        pooled = last_block_pooled(g, &t->blocks[c->layers - 1], x, t->mask, rows);
        pooled = ag_layernorm(g, pooled, t->ln_final_w, t->ln_final_b, TEXT_LN_EPS);
    } else {
        x = run_blocks(g, t, x, dump, c->layers);
        // ln_final on every position, then the pooled rows [B, W]
        x = ag_layernorm(g, x, t->ln_final_w, t->ln_final_b, TEXT_LN_EPS);
        dump_call(dump, "text.ln_final", x);
        pooled = ag_rows(g, ag_reshape(g, x, MC_DIMS(B * T, W)), rows, B);
    }
    dump_call(dump, "text.pooled", pooled);

    // proj [B, E] = pooled @ text_projection
    Tensor *proj = ag_matmul(g, pooled, t->projection);
    dump_call(dump, "text.proj", proj);
    return proj;
}

Tensor *text_tower_forward(Graph *g, TextTower *t, const int32_t *ids, int64_t B,
                           const McDump *dump, McErr *err) {
    if (text_check_ids(t, ids, B, err)) return NULL;
    int32_t *pool = arena_alloc(&g->arena, (size_t)B * sizeof *pool);
    text_pool_index(ids, B, t->cfg.context, pool);
    Tensor *tok = text_tower_tokens(g, t, ids, B);
    return text_tower_forward_tokens(g, t, tok, pool, dump);
}
