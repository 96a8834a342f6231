// textfast.c - text tower forward with the last block at the pooled rows
// only (see textfast.h).  Reference: open_clip TextTransformer and
// ResidualAttentionBlock, the same formulas as mobileclip/text.c and
// nn/transformer.c restricted to the rows that reach the output.
#include "textfast.h"

#include <math.h>
#include <string.h>

#define COOP_ATT_MAX_T 1024   // longest sequence of the one-query attention (stack buffer)

// ---- the one-query attention op ----

// A frozen view of n = rows * cols floats at data (no copy, no gradient).
static Tensor *view2(Graph *g, float *data, int64_t rows, int64_t cols) {
    Tensor *t = arena_calloc(&g->arena, sizeof *t);
    t->data = data;
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 1;
    t->shape[2] = t->shape[3] = 1;
    t->n = rows * (cols > 0 ? cols : 1);
    return t;
}

// Backward of out_bh = sum_j p_j v_bhj, p = softmax_j(scale q_bh . k_bhj + m_j):
//   d v_bhj += p_j d out_bh
//   d p_j    = d out_bh . v_bhj
//   d s_j    = p_j (d p_j - sum_l p_l d p_l)
//   d q_bh  += scale sum_j d s_j k_bhj;   d k_bhj += scale d s_j q_bh
static void attend_backward(AgNode *node) {
    Tensor *q = node->in[0], *kv = node->in[1], *out = node->out;
    int wq = ag_wants(q), wkv = ag_wants(kv);
    if (!wq && !wkv) return;
    const float *P = node->saved;
    int64_t B = node->ip[0], T = node->ip[1], W = node->ip[2], NH = node->ip[3], HS = W / NH;
    float scale = node->fp[0];
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        const float *p_bh = P + bh * T, *dout = out->grad + b * W + h * HS;
        const float *q_bh = q->data + b * W + h * HS;
        double dot = 0;
        double ds[COOP_ATT_MAX_T];
        for (int64_t j = 0; j < T; j++) {
            const float *v_j = kv->data + (b * T + j) * 2 * W + W + h * HS;
            double dp = 0;
            for (int64_t d = 0; d < HS; d++) dp += (double)dout[d] * v_j[d];
            ds[j] = dp;
            dot += p_bh[j] * dp;
        }
        for (int64_t j = 0; j < T; j++) {
            ds[j] = p_bh[j] * (ds[j] - dot);
            const float *k_j = kv->data + (b * T + j) * 2 * W + h * HS;
            if (wkv) {
                float *dk = kv->grad + (b * T + j) * 2 * W + h * HS, *dv = dk + W;
                for (int64_t d = 0; d < HS; d++) {
                    dk[d] += (float)(scale * ds[j] * q_bh[d]);
                    dv[d] += p_bh[j] * dout[d];
                }
            }
            if (wq) {
                float *dq = q->grad + b * W + h * HS;
                for (int64_t d = 0; d < HS; d++) dq[d] += (float)(scale * ds[j] * k_j[d]);
            }
        }
    }
}

Tensor *coop_attend_pooled(Graph *g, Tensor *q, Tensor *kv, int n_head, const Tensor *mask,
                           const int32_t *pool, float scale) {
    TENSOR_CHECK_NDIM(q, 2, "coop_attend_pooled");
    TENSOR_CHECK_NDIM(kv, 3, "coop_attend_pooled");
    int64_t B = q->shape[0], W = q->shape[1], T = kv->shape[1], NH = n_head, HS = W / NH;
    TENSOR_CHECK_PAIR(kv->shape[0] == B && kv->shape[2] == 2 * W && W % NH == 0 &&
                      T <= COOP_ATT_MAX_T, "coop_attend_pooled", "q [B, W], kv [B, T, 2W]",
                      q, kv);
    Tensor *out = ag_tensor(g, MC_DIMS(B, W));
    float *P = arena_alloc(&g->arena, (size_t)(B * NH * T) * sizeof *P);

    // out_bh = softmax_j(scale q_bh . k_bhj + mask[pool_b, j]) v_bhj
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        const float *q_bh = q->data + b * W + h * HS;
        const float *m_b = mask ? mask->data + (int64_t)pool[b] * T : NULL;
        float *p_bh = P + bh * T;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < T; j++) {
            const float *k_j = kv->data + (b * T + j) * 2 * W + h * HS;
            float s = 0;
            for (int64_t d = 0; d < HS; d++) s += q_bh[d] * k_j[d];
            s = s * scale + (m_b ? m_b[j] : 0.0f);
            p_bh[j] = s;
            mx = s > mx ? s : mx;
        }
        // Max subtracted before exp; the sum in double.
        for (int64_t j = 0; j < T; j++) sum += (p_bh[j] = (float)exp(p_bh[j] - mx));
        for (int64_t j = 0; j < T; j++) p_bh[j] = (float)(p_bh[j] / sum);
        float *o = out->data + b * W + h * HS;
        for (int64_t d = 0; d < HS; d++) o[d] = 0;
        for (int64_t j = 0; j < T; j++) {
            const float *v_j = kv->data + (b * T + j) * 2 * W + W + h * HS;
            for (int64_t d = 0; d < HS; d++) o[d] += p_bh[j] * v_j[d];
        }
    }

    Tensor *ins[2] = {q, kv};
    if (ag_needs_grad(g, ins, 2)) {
        AgNode *node = ag_record(g, "coop_attend_pooled", attend_backward, out, ins, 2);
        node->saved = P;
        node->ip[0] = B, node->ip[1] = T, node->ip[2] = W, node->ip[3] = NH;
        node->fp[0] = scale;
    }
    return out;
}

// ---- the forward ----

// Blocks 0..L-2 over x (taped, or one block at a time in the tower's
// scratch graph when g does not record; x is then overwritten).
static Tensor *run_blocks(Graph *g, TextTower *tt, Tensor *x, int n) {
    if (g->grad_enabled) {
        for (int k = 0; k < n; k++) x = nn_block_forward(g, &tt->blocks[k], x, tt->mask);
        return x;
    }
    if (!tt->scratch) tt->scratch = ag_graph_new((size_t)1 << 20);
    for (int k = 0; k < n; k++) {
        ag_graph_reset(tt->scratch);
        tt->scratch->grad_enabled = 0;
        tensor_copy(x, nn_block_forward(tt->scratch, &tt->blocks[k], x, tt->mask));
    }
    ag_graph_reset(tt->scratch);
    return x;
}

Tensor *coop_text_forward(Graph *g, TextTower *tt, Tensor *tok, const int32_t *pool) {
    const McTextConfig *c = &tt->cfg;
    TENSOR_CHECK_NDIM(tok, 3, "coop_text_forward");
    MC_CHECK(tok->shape[1] == c->context && tok->shape[2] == c->width && c->layers >= 1,
             "coop_text_forward: tok [%lld, %lld, %lld], tower T %d W %d, %d layers",
             (long long)tok->shape[0], (long long)tok->shape[1], (long long)tok->shape[2],
             c->context, c->width, c->layers);
    int64_t B = tok->shape[0], T = c->context, W = c->width;
    const NnBlock *lb = &tt->blocks[c->layers - 1];
    float scale = 1.0f / sqrtf((float)(W / c->heads));

    // x0 = tok + positional; blocks 0..L-2 on every row.
    Tensor *x = ag_add(g, tok, tt->positional);
    x = run_blocks(g, tt, x, c->layers - 1);

    // Pooled rows b*T + pool[b] of the flattened [B*T, W].
    int32_t *rows = arena_alloc(&g->arena, (size_t)B * sizeof *rows);
    for (int64_t b = 0; b < B; b++) {
        MC_CHECK(pool[b] >= 0 && pool[b] < T, "coop_text_forward: pool[%lld] = %d",
                 (long long)b, pool[b]);
        rows[b] = (int32_t)(b * T + pool[b]);
    }

    // Last block: LN1 and keys/values on every row, the query at the pooled row.
    Tensor *h = ag_layernorm(g, x, lb->ln1_w, lb->ln1_b, lb->spec.ln_eps);
    Tensor *wq = view2(g, lb->qkv_w->data, W, W), *bq = view2(g, lb->qkv_b->data, W, 0);
    Tensor *wkv = view2(g, lb->qkv_w->data + W * W, 2 * W, W);
    Tensor *bkv = view2(g, lb->qkv_b->data + W, 2 * W, 0);
    Tensor *kv = ag_linear(g, h, wkv, bkv);                               // [B, T, 2W]
    Tensor *h_p = ag_rows(g, ag_reshape(g, h, MC_DIMS(B * T, W)), rows, B);
    Tensor *q = ag_linear(g, h_p, wq, bq);                                // [B, W]
    Tensor *a = coop_attend_pooled(g, q, kv, c->heads, tt->mask, pool, scale);

    // y = x[p] + out_proj(a);  y += c_proj(GELU(c_fc(LN2(y))))
    Tensor *y = ag_rows(g, ag_reshape(g, x, MC_DIMS(B * T, W)), rows, B);
    y = ag_add(g, y, ag_linear(g, a, lb->proj_w, lb->proj_b));
    Tensor *m = ag_layernorm(g, y, lb->ln2_w, lb->ln2_b, lb->spec.ln_eps);
    m = ag_gelu(g, ag_linear(g, m, lb->fc1_w, lb->fc1_b));
    y = ag_add(g, y, ag_linear(g, m, lb->fc2_w, lb->fc2_b));

    // ln_final and the projection at the pooled rows.
    y = ag_layernorm(g, y, tt->ln_final_w, tt->ln_final_b, TEXT_LN_EPS);
    return ag_matmul(g, y, tt->projection);
}
