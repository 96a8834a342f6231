// text.h - the MobileCLIP2 text tower (open_clip TextTransformer).
//
//   x0     = token_embedding[ids] + positional_embedding        [B, T, W]
//   x      = block_L-1( ... block_0(x0, mask) ... )              [B, T, W]
//   y      = ln_final(x)                      (all T positions)  [B, T, W]
//   pooled = y[b, argmax_t ids[b, t]]         (first maximum)    [B, W]
//   proj   = pooled @ text_projection                             [B, E]
//
// Dims: B sequences, T = context (77) tokens, W width, E embedding width,
// V vocabulary.  The attention is bidirectional over all T positions,
// padding included, unless cfg.causal (MobileCLIP2-B): then the additive
// mask is -inf strictly above the diagonal.  Pooling takes the position of
// the largest id, which is the end-of-text token for real tokenizer output
// (the id itself is never assumed: reduced test vocabularies work).  LN eps
// is 1e-5.  Reference: open_clip transformer.py TextTransformer.forward with
// the MobileCLIP2-* model configs; see ../shared/arch-spec.md section 5.
//
// Two entry points: from ids, and from token embeddings (before the
// positional term) plus pooled positions, for prompt learning (CoOp
// replaces context rows of the embeddings; gradients flow back into that
// tensor while the tower's weights, which never require a gradient, get no
// gradient buffers).  The result is the raw projection; callers normalise.
//
// Activation dumps: when dump is not NULL its function is called with
//   text.x0           [B, T, W]   input of block 0 (embeddings + positional)
//   text.block.K      [B, T, W]   output of block K (0-based)
//   text.ln_final     [B, T, W]
//   text.pooled       [B, W]
//   text.proj         [B, E]
// The tensor is valid only during the call.
//
// Memory: with g->grad_enabled every activation stays in g's arena (about
// 18 [B, T, W]-sized tensors per block) for the backward pass.  Without it
// the blocks run in a scratch graph owned by the tower that is reset after
// each block, so inference holds one block's intermediates at a time.  A
// TextTower is therefore not safe to run from two threads at once.
//
// Usage sketch (compiled by tests/test_text.c):
//
//     TextTower tt;
//     if (text_tower_bind(&tt, ws, "text.", &cfg, &err)) ...;
//     if (ws_finish(ws, &err)) ...;               // reports all key problems
//     Graph *g = ag_graph_new(1 << 24);
//     g->grad_enabled = 0;                         // inference
//     Tensor *e = text_tower_forward(g, &tt, ids, B, NULL, &err);  // [B, E]
//     Tensor *n = ag_l2norm(g, e, 1e-12f);
//     ag_graph_free(g);
//     text_tower_free(&tt);
#ifndef MCLIP_TEXT_H
#define MCLIP_TEXT_H

#include "../autograd/autograd.h"
#include "../nn/transformer.h"
#include "config.h"
#include "weights.h"

#define TEXT_LN_EPS 1e-5f

// Activation dump hook: fn is called with each name listed above (the same
// function type as the image tower's, image_tower.h; C11 allows the repeated
// identical typedef).
typedef void (*McDumpFn)(void *ctx, const char *name, const Tensor *t);
typedef struct McDump {
    McDumpFn fn;
    void    *ctx;
} McDump;

typedef struct TextTower {
    McTextConfig cfg;
    Tensor  *token_embedding;   // [V, W]
    Tensor  *positional;        // [T, W]
    NnBlock *blocks;            // [cfg.layers]
    Tensor  *ln_final_w;        // [W]
    Tensor  *ln_final_b;        // [W]
    Tensor  *projection;        // [W, E], used as pooled @ projection
    Tensor  *mask;              // [T, T] causal additive mask, or NULL
    Graph   *scratch;           // per-block arena for inference (lazily made)
} TextTower;

// Validate cfg and take every text tensor from ws under prefix ("text.",
// open_clip names).  Returns -1 with err set on a bad config; key problems
// are recorded in ws and reported by ws_finish.  On -1 nothing is held.
int  text_tower_bind(TextTower *t, WeightSet *ws, const char *prefix,
                     const McTextConfig *cfg, McErr *err);
void text_tower_free(TextTower *t);
int64_t text_tower_params(const McTextConfig *cfg);

// pool[b] = first t with ids[b, t] == max_t ids[b, :], ids [B, T].
void text_pool_index(const int32_t *ids, int64_t B, int T, int32_t *pool);

// 0 if every id is in [0, V), else -1 naming the first bad one.
int text_check_ids(const TextTower *t, const int32_t *ids, int64_t B, McErr *err);

// Token embeddings [B, T, W] = token_embedding[ids] (no positional term);
// ids must be valid (text_check_ids).
Tensor *text_tower_tokens(Graph *g, const TextTower *t, const int32_t *ids, int64_t B);

// proj [B, E] from token embeddings tok [B, T, W] (may require a gradient)
// and pooled positions pool [B] in [0, T).  dump may be NULL.
Tensor *text_tower_forward_tokens(Graph *g, TextTower *t, Tensor *tok, const int32_t *pool,
                                  const McDump *dump);

// proj [B, E] from ids [B, T]; NULL with err set when an id is out of
// range.  Pools at text_pool_index(ids).
Tensor *text_tower_forward(Graph *g, TextTower *t, const int32_t *ids, int64_t B,
                           const McDump *dump, McErr *err);

#endif
