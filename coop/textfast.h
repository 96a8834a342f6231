// textfast.h - the text tower's forward for prompt learning, with the last
// block computed only where it matters: at the pooled rows.
//
// Dims: B sequences, T positions, W width, NH heads, HS = W / NH, E embed.
//
// After block L-2 every position is needed as a key and a value of the
// last block's attention, but only the pooled position p_b of each
// sequence reaches the output (ln_final and the projection act per row).
// So the last block computes
//   h     = LN1(x)                              [B, T, W]   every row
//   k, v  = h Wk^T + bk,  h Wv^T + bv           [B, T, 2W]  every row
//   q     = h[p] Wq^T + bq                      [B, W]      pooled rows
//   a     = softmax(q k^T / sqrt(HS) + mask[p]) v   per head  [B, W]
//   y     = x[p] + a Wo^T + bo;  y += MLP(LN2(y))            [B, W]
//   out   = LN_final(y) @ text_projection                    [B, E]
// which is text_tower_forward_tokens' result (the same formulas at the
// pooled rows; the causal mask's row p for MobileCLIP2-B) at about 2/12
// of the last block's cost for the other rows: ~6.9 % of a 12-layer
// tower, forward and backward.  Blocks 0..L-2 are nn_block_forward, taped
// when g records, else run one at a time in the tower's scratch graph as
// text.c does.  Gradients flow to tok only (the weights are frozen).
//
// Usage sketch (compiled by tests/test_coop.c):
//
//     Tensor *f = coop_text_forward(g, tt, tok, pool);   // tok [B, T, W] -> [B, E]
#ifndef MCLIP_COOP_TEXTFAST_H
#define MCLIP_COOP_TEXTFAST_H

#include "../mobileclip/text.h"

// proj [B, E] from token embeddings tok [B, T, W] (before the positional
// term) and pooled positions pool [B].
Tensor *coop_text_forward(Graph *g, TextTower *tt, Tensor *tok, const int32_t *pool);

// One-query multi-head attention (the op above, on the tape): q [B, W],
// kv [B, T, 2W] (keys then values, heads split along channels h*HS + d),
// mask [T, T] additive or NULL (row pool[b] is used for sequence b).
// Returns [B, W].
Tensor *coop_attend_pooled(Graph *g, Tensor *q, Tensor *kv, int n_head, const Tensor *mask,
                           const int32_t *pool, float scale);

#endif
