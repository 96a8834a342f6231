// interpret.h - reading a learned text prompt: nearest vocabulary tokens of
// its context vectors, cosine similarity with hand-written prompts through
// the text tower, and the per-dimension amplitude of each context row.
//
// Dims: R context rows (M, or K*M class-specific), W text width, V
// vocabulary rows, E embedding width, n texts of a similarity matrix.
//
// Methods (../shared/paper-protocol.md section 12):
//   nearest     per row c: d(e) = sqrt(max(0, ||c||^2 + ||e||^2 - 2 c.e)) over
//               all V rows e of token_embedding (the paper's L2, as CoOp's
//               interpret_prompt.py), or the cosine c.e / (||c|| ||e||);
//               the k best (smallest distance / largest cosine; ties to
//               the lower id).  Norms in double, dots by one GEMM in float.
//   similarity  cosine of normalised text features.  A hand-written prompt
//               is encoded by open_clip's tokenizer as it is (no class name)
//               and pooled at its EOT.  The paper does not say how it
//               encoded a prefix without a class name, or the learned
//               prompt; mclip's rule for the learned prompt is the same
//               "prompt text alone, pooled at EOT": the sequence
//               [SOT, ctx_1 .. ctx_M, EOT, 0, 0, ...] with the embeddings
//               of SOT, EOT and id 0, positional embeddings added, pooled
//               at position M + 1 (the EOT), whatever the prompt's own
//               sequence form or pooling rule.  (The paper reports 0.14
//               between its Flowers prompt and "A photo of a".)
//   amplitude   a[r, d] = x[r, d]^2 / sum_d x[r, d]^2 (the paper's Fig. 4,
//               a histogram per row with a log count axis).
//
// Usage sketch (compiled by tests/test_attnmap.c):
//
//     int32_t ids[16 * 5];
//     float score[16 * 5];
//     coop_nearest_tokens(ctx, 16, tt->token_embedding->data, V, W, 5,
//                         COOP_METRIC_L2, ids, score);
//     float f[E];
//     coop_prefix_feature(tt, ctx, 16, f);            // normalised
#ifndef MCLIP_COOP_INTERPRET_H
#define MCLIP_COOP_INTERPRET_H

#include <stdint.h>

#include "../mobileclip/text.h"
#include "../mobileclip/tokenizer.h"

typedef enum { COOP_METRIC_L2, COOP_METRIC_COSINE } CoopMetric;

const char *coop_metric_name(CoopMetric m);   // "l2", "cosine"
int         coop_metric_parse(const char *s); // -1 if unknown

// ids [R, k] and score [R, k] (distance for L2, cosine for cosine), best
// first.  k <= V.
void coop_nearest_tokens(const float *ctx, int64_t R, const float *emb, int64_t V, int64_t W,
                         int k, CoopMetric metric, int32_t *ids, float *score);

// Normalised text feature f [E] of the context rows ctx [M, W] alone
// (the rule above).  M <= context - 2.
void coop_prefix_feature(TextTower *tt, const float *ctx, int M, float *f);

// out [n, n] = f_i . f_j of normalised features f [n, E].
void coop_cosine_matrix(const float *f, int n, int64_t E, float *out);
// CSV: header ",label_0,...", then "label_i,v,v,..." (labels quoted when
// they hold a comma or quote).
int  coop_matrix_write_csv(const float *m, int n, char *const *labels, const char *path,
                           McErr *err);
// PNG heatmap, cell x cell pixels per entry, values mapped linearly from
// [lo, hi] onto the Blues colormap of datasets/metrics.h.
int  coop_matrix_write_png(const float *m, int n, int cell, double lo, double hi,
                           const char *path, McErr *err);

// a [R, W] = per-row share of each dimension's energy (a row of zeros gives 0).
void coop_amplitude(const float *ctx, int64_t R, int64_t W, float *a);
// SVG chart: one panel per row, a histogram of a[r, :] over `bins` equal
// bins of [0, max a], counts on a log axis; a marker at 1 / W (an even
// spread).  title goes on top.
int  coop_amplitude_svg(const float *a, int64_t R, int64_t W, int bins, const char *title,
                        const char *path, McErr *err);

#endif
