// coop.h - CoOp objectives and their gradient with respect to the context
// vectors, through the frozen text tower, in chunks so that memory stays
// flat as the number of classes grows.
//
// Dims: N images of a batch, K classes, B caption pairs, E embedding width,
// W text width, M context vectors.
//
// Objectives (arch-spec section 10, paper-protocol section 6), with
// x^ = x / max(||x||, 1e-12) and s the logit scale (the paper: fixed 100;
// CoOp / the reference generator: exp(logit_scale) of the checkpoint):
//   classification  logits = s * img^ txt^T            [N, K]
//                   L_cls  = mean_n CE(logits[n], y[n])
//   retrieval       S = s * img^ cap^T                  [B, B] (in-batch pairs)
//                   L_ret  = (CE_rows(S, diag) + CE_rows(S^T, diag)) / 2
//   multitask       L = (1 - lambda) L_ret + lambda L_cls, one shared ctx
// Image features are fixed (the image tower is frozen; coop/featcache.h)
// and passed in already L2-normalised.
//
// Gradient (ctx->grad += d L / d ctx; ctx is the only tensor with one):
//   plain    (rows of all text groups <= chunk) one taped forward of every
//            prompt row, the loss head, one backward;
//   chunked  pass 1 runs every row without the tape (inference memory),
//            the head gives d L / d features [R, E]; pass 2 re-runs each
//            chunk of rows with the tape and seeds its backward with that
//            chunk's rows of d L / d features (ag_backward_seed), so the
//            tape never holds more than `chunk` rows.  Costs one extra
//            forward (about 4/3 of the plain compute); peak memory is the
//            weights plus one chunk's tape, independent of K.
// Both give the same gradient up to summation order (tests/test_coop.c).
// Measured (tests/test_coop_mem.c, MCLIP_LONG=1; full-size random-weight
// S0 text tower, 32 images, chunk 8, 2 threads of a 2-core machine shared
// with other jobs): peak RSS 827 MB at K = 102 and 829 MB at K = 397
// (weights 254 MB, arena 553 MB); 52 s and 165 s a step.  A step is about
// 3 forwards of K sequences (2 forwards + a backward that, with frozen
// weights, costs one more): 3 * 2.98 GMAC * K.
//
// Savings (exact, per step; L blocks, T positions, M ctx):
//   * taken: the last block at the pooled row only (coop/textfast.h):
//     keys and values need every row, the rest of the block only the
//     pooled one: ~6.9 % of the text MACs; measured on the S0 text tower
//     (4 rows, 1 thread, CPU time) 592 -> 552 ms forward + backward;
//   * not taken: the first block's backward only at context rows (the
//     other inputs are frozen and k_j, v_j, q_j depend only on x0_j, so
//     d q, d k, d v and the qkv input-gradient GEMM are needed only at the
//     M context rows): 3 W^2 (T - M) of the backward's ~12 L W^2 T MACs
//     (frozen weights: input gradients only), ~1.6 % of the backward;
//   * not taken: causal towers (MobileCLIP2-B) never let positions after
//     the pooled one reach it, so T' = pool + 1 positions would suffice.
// The plain path already avoids the second forward when all rows fit one
// chunk (the demo's 4 classes do).
//
// Usage sketch (compiled by tests/test_coop.c):
//
//     CoopEngine *e = coop_engine_new(&model->text, 8);
//     tensor_zero_grad(p.ctx);
//     double loss = coop_loss_cls(e, &p, &seqs, imgn, labels, N, 100.0, logits);
//     ... optimizer step on p.ctx with p.ctx->grad ...
//     coop_engine_free(e);
#ifndef MCLIP_COOP_COOP_H
#define MCLIP_COOP_COOP_H

#include "prompt.h"

#define COOP_PAPER_SCALE   100.0   // the paper's fixed logit scale
#define COOP_DEFAULT_CHUNK 8       // prompt rows per taped pass
#define COOP_INFER_CHUNK   16      // prompt rows per untaped pass
#define COOP_NORM_EPS      1e-12   // F.normalize's eps

typedef struct CoopEngine {
    TextTower *tt;
    int     chunk;         // rows per taped pass (>= 1)
    int     chunk_infer;   // rows per untaped pass (>= 1)
    Graph  *g;             // arena reused by every pass
    float  *feat, *dfeat;  // [cap, E] scratch: raw features and their gradient
    int64_t cap;
    // statistics of the last call
    int     plain;         // 1: the last gradient took the plain path
    size_t  arena_peak;    // bytes (largest arena use so far)
} CoopEngine;

// chunk <= 0 picks COOP_DEFAULT_CHUNK.
CoopEngine *coop_engine_new(TextTower *tt, int chunk);
void        coop_engine_free(CoopEngine *e);

// L2-normalise rows in place: x [n, E] -> x / max(||x||, COOP_NORM_EPS).
void coop_normalize_rows(float *x, int64_t n, int64_t E);

// ---- loss heads (no tape; double accumulation) ----

// Classification: imgn [N, E] normalised, txt [K, E] raw, labels [N] in
// [0, K).  Returns L_cls; logits [N, K] and d_txt [K, E] (d L / d txt,
// overwritten) may be NULL.  weight multiplies the loss and d_txt.
double coop_head_cls(const float *imgn, int64_t N, const float *txt, int64_t K, int64_t E,
                     const int32_t *labels, double scale, double weight, float *logits,
                     float *d_txt);
// Retrieval over in-batch pairs: imgn [B, E] normalised, cap [B, E] raw.
// Returns L_ret; S [B, B] and d_cap [B, E] (overwritten) may be NULL.
double coop_head_ret(const float *imgn, const float *cap, int64_t B, int64_t E, double scale,
                     double weight, float *S, float *d_cap);

// ---- text features ----

// Raw text features feat [R, E] of every row of s (no tape, chunked).
void coop_text_features(CoopEngine *e, CoopPrompt *p, const CoopSeqs *s, float *feat);

// ---- objectives with gradient ----

// L_cls of one batch; adds d L_cls / d ctx into p->ctx->grad (the caller
// zeroes it).  logits [N, K] may be NULL.
double coop_loss_cls(CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls, const float *imgn,
                     const int32_t *labels, int64_t N, double scale, float *logits);

// Multitask L = (1 - lambda) L_ret + lambda L_cls; adds d L / d ctx.
// caps has B rows paired with img_cap [B, E] (normalised).  logits [N, K]
// and S [B, B] may be NULL.  *l_cls, *l_ret (may be NULL) get the parts.
double coop_loss_multitask(CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls,
                           const float *img_cls, const int32_t *labels, int64_t N,
                           const CoopSeqs *caps, const float *img_cap, double scale,
                           double lambda, float *logits, float *S, double *l_cls,
                           double *l_ret);

#endif
