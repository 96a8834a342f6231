// ops_attention.c - multi-head attention on packed projections: forward
// and backward side by side (the kernels are mc_attention_* in
// tensor/kernels.c).
//
// Dims: B sequences (or images), T tokens, C width, NH heads, HS = C / NH.
// Layout (open_clip text attention = torch nn.MultiheadAttention with
// in_proj stacked q, k, v; timm fastvit Attention with qkv split as
// [3][heads][head_dim]): qkv [B, T, 3C], q = channels [0, C), k = [C, 2C),
// v = [2C, 3C); head h uses channels h HS .. h HS + HS - 1 of each.
//
//   S_h = (q_h scale) k_h^T + mask      [T, T]
//   P_h = softmax(S_h) per row          saved [B, NH, T, Tp] for backward
//   out[b, t, h HS + d] = (P_h v_h)[t, d]
//
// Backward (per (b, h)): dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dP
// P)), dQ = dS K scale, dK = dS^T Q scale.  The mask is a constant.
#include "autograd.h"
#include "../tensor/kernels.h"

typedef struct {
    float *att;      // [B, NH, T, Tp] softmax probabilities (see kernels.h)
    float *scratch;  // backward tiles for nthreads threads
} AttSaved;

static void attention_backward(AgNode *node) {
    Tensor *qkv = node->in[0], *out = node->out;
    const AttSaved *sv = node->saved;
    int B = (int)node->ip[0], T = (int)node->ip[1], C = (int)node->ip[2];
    int NH = (int)node->ip[3], nthreads = (int)node->ip[4];
    if (!ag_wants(qkv)) return;
    mc_attention_backward(qkv->grad, out->grad, qkv->data, sv->att, B, T, C, NH,
                          node->fp[0], sv->scratch, nthreads);
}

Tensor *ag_attention(Graph *g, Tensor *qkv, int n_head, Tensor *mask, float scale) {
    TENSOR_CHECK_NDIM(qkv, 3, "attention");
    int64_t B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2];
    char s[96];
    MC_CHECK(n_head > 0 && C3 % (3 * (int64_t)n_head) == 0,
             "attention: qkv %s: last dim must be 3 C with C divisible by n_head = %d",
             tensor_shape_str(qkv, s, sizeof s), n_head);
    if (mask)
        TENSOR_CHECK_PAIR(mask->ndim == 2 && mask->shape[0] == T && mask->shape[1] == T,
                          "attention", "mask must be [T, T] for qkv [B, T, 3C]", mask, qkv);
    int64_t C = C3 / 3, HS = C / n_head;
    int64_t shape[3] = {B, T, C};
    Tensor *out = ag_tensor(g, 3, shape);
    int nt = mc_threads();
    int rec = ag_needs_grad(g, &qkv, 1);

    // Forward; probabilities go to the arena only when a backward follows.
    float *att = rec ? arena_alloc(&g->arena, mc_attention_att_floats((int)B, n_head, (int)T) *
                                                  sizeof(float))
                     : NULL;
    float *fscratch = arena_alloc(&g->arena, mc_attention_scratch_floats((int)T, (int)HS, nt, 0)
                                                 * sizeof(float));
    mc_attention_forward(out->data, att, qkv->data, mask ? mask->data : NULL, (int)B, (int)T,
                         (int)C, n_head, scale, fscratch, nt);

    if (rec) {
        // The mask is a constant: it is not an input of the node.
        AgNode *node = ag_record(g, "attention", attention_backward, out, &qkv, 1);
        AttSaved *sv = arena_alloc(&g->arena, sizeof *sv);
        sv->att = att;
        // Backward scratch is taken now (the backward has no arena) for
        // the thread count of this call, which the backward then uses.
        sv->scratch = arena_alloc(&g->arena,
                                  mc_attention_scratch_floats((int)T, (int)HS, nt, 1) *
                                      sizeof(float));
        node->saved = sv;
        node->ip[0] = B, node->ip[1] = T, node->ip[2] = C, node->ip[3] = n_head;
        node->ip[4] = nt;
        node->fp[0] = scale;
    }
    return out;
}
