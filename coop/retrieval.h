// retrieval.h - image-text retrieval with MobileCLIP2 and a learned prompt:
// features of caption sets, recall@K under two protocols, the in-batch
// contrastive loss with its context gradient, and a retrieval / multitask
// training loop.
//
// Dims: I images, T captions (texts), E embedding width, B caption pairs of
// a batch, N classification images of a batch, K classes.
//
// Protocols (../shared/datasets.md section 5, paper-protocol section 11):
//   standard  every caption of the split's images (Flickr30k Karpathy test:
//             1,000 images x 5 captions); sim = txt^ . img^T;
//             t2i R@K: a caption is a hit when fewer than K images score
//             strictly higher than its own image; i2t R@K: an image is a
//             hit when fewer than K captions score strictly higher than its
//             best own caption (datasets/metrics.h; ties count as hits);
//             K = 1, 5, 10.
//   paper     the first caption of each image only (alt_text[0]); unscaled
//             cosine; a caption is a hit when its argmax image (the first
//             maximum, as torch.argmax) is its own; "accuracy" = t2i R@1.
// With legacy pooling the caption features depend on how many captions
// share a text pass (R = rows of the call, paper-protocol section 4), so
// captions are encoded in groups of `group` rows in file order (the
// paper's loader batch; COOP_RET_GROUP by default) and the first captions
// of the paper protocol are encoded as their own sequence of groups.
//
// Loss (arch-spec section 10): S = s * img^ cap^T over B in-batch pairs,
//   L_ret = (CE_rows(S, diag) + CE_rows(S^T, diag)) / 2,
// captions carrying the CoOp context as the "class names" of the prompt
// (coop/prompt.h; the paper form with captions as bare names).  Multitask:
// L = (1 - lambda) L_ret + lambda L_cls with one shared ctx
// (coop_loss_multitask in coop/coop.h); the paper: lambda 0.3, s 100.
//
// Usage sketch (compiled by tests/test_retrieval.c):
//
//     float *img = malloc(I * E * sizeof(float)), *txt = malloc(T * E * sizeof(float));
//     if (coop_ret_image_features(model->image, &pc, NULL, paths, I, 16, img, &err)) ...;
//     if (coop_ret_text_features(&model->text, tok, NULL, NULL, caps, T, 16, txt, &err)) ...;
//     CoopRetScores sc;
//     coop_ret_scores(img, I, txt, T, E, caption_image, &sc);
//     printf("t2i R@1 %.2f\n", 100 * sc.t2i[0]);
#ifndef MCLIP_COOP_RETRIEVAL_H
#define MCLIP_COOP_RETRIEVAL_H

#include "../datasets/preprocess.h"
#include "coop.h"
#include "optim.h"
#include "vprompt.h"

#define COOP_RET_GROUP 16   // captions per prompted text pass (the paper drafts' batch)

extern const int coop_ret_ks[3];   // 1, 5, 10

typedef struct CoopRetScores {
    int    n_images, n_captions;
    double t2i[3], i2t[3];      // standard protocol, R@1, R@5, R@10 in [0, 1]
    int    paper_hits;          // paper protocol: first captions retrieving their image
    double paper_t2i_r1;        // paper_hits / n_images
} CoopRetScores;

// ---- features ----

// Normalised image features imgn [I, E] of image files: the model's eval
// preprocessing (pc), an optional visual prompt (vp may be NULL), batches
// of `batch` images.  A file that cannot be read is an error naming it
// (-1; a retrieval split must not lose images silently).
int coop_ret_image_features(ImageTower *tw, const DsPrepConfig *pc, const CoopVPrompt *vp,
                            const char *const *paths, int64_t I, int batch, float *imgn,
                            McErr *err);

// Normalised text features txtn [T, E].  p == NULL: open_clip's plain
// tokenization (SOT text EOT, pooled at EOT).  Otherwise every text is a
// "name" of the prompt p (coop_seqs_from_names), encoded in groups of
// `group` rows through e (an engine on tt; created here when NULL).
int coop_ret_text_features(TextTower *tt, Tokenizer *tok, CoopPrompt *p, CoopEngine *e,
                           const char *const *texts, int64_t T, int group, float *txtn,
                           McErr *err);

// ---- metrics ----

// Both protocols from normalised features.  caption_image [T] in [0, I);
// first [I] (may be NULL: taken from txtn) are the first captions' features
// for the paper protocol, encoded as the paper did (see the header).
void coop_ret_scores(const float *imgn, int I, const float *txtn, int T, int64_t E,
                     const int *caption_image, const float *first, CoopRetScores *out);
// The paper protocol alone: hits of first [I, E] against imgn [I, E].
int  coop_ret_paper_hits(const float *imgn, const float *first, int I, int64_t E);

// ---- loss ----

// L_ret of B pairs: caps (B rows of p, built with R = B), imgn [B, E]
// normalised image features of the pairs.  Adds d L_ret / d ctx into
// p->ctx->grad (the caller zeroes it).  S [B, B] may be NULL.
double coop_ret_loss(CoopEngine *e, CoopPrompt *p, const CoopSeqs *caps, const float *imgn,
                     double scale, float *S);

// ---- training ----

typedef struct CoopRetTrainCfg {
    int      epochs;      // passes over the caption pairs
    int      batch;       // B pairs per step (the last batch of an epoch may be smaller)
    int      cls_batch;   // N classification images per step (multitask)
    double   scale;       // s (the paper: COOP_PAPER_SCALE)
    double   lambda;      // weight of L_cls (multitask only; the paper 0.3)
    uint64_t seed;        // shuffling (coop/rng.h)
    CoopOptCfg opt;
} CoopRetTrainCfg;

// What to train on.  cls == NULL: retrieval only.
typedef struct CoopRetData {
    const float *cap_img;          // [n_pairs, E] normalised image features of the pairs
    const char *const *captions;   // [n_pairs]
    int64_t      n_pairs;
    const CoopSeqs *cls;           // K class rows of the prompt, or NULL
    const float *cls_img;          // [n_cls, E] normalised
    const int32_t *cls_labels;     // [n_cls]
    int64_t      n_cls;
} CoopRetData;

typedef struct CoopRetStep {
    int    epoch, step, steps;     // step counts from 1 within the run
    double loss, l_ret, l_cls, lr, seconds;
} CoopRetStep;

typedef void (*CoopRetProgressFn)(void *ctx, const CoopRetStep *s);

// The paper's defaults: 3 epochs, batch 16, scale 100, lambda 0.3, AdamW
// lr 3e-4 wd 0.01 (paper-protocol sections 5 and 11).
CoopRetTrainCfg coop_ret_train_defaults(void);

// Train p->ctx: each step takes the next B pairs of a per-epoch shuffle
// and, for multitask, the next cls_batch items of an endlessly cycled,
// reshuffled classification list; one optimizer step on the shared ctx.
// fn (may be NULL) is called after every step.  Returns 0 or -1.
int coop_ret_train(CoopEngine *e, CoopPrompt *p, Tokenizer *tok, const CoopRetData *d,
                   const CoopRetTrainCfg *cfg, CoopRetProgressFn fn, void *fn_ctx, McErr *err);

#endif
