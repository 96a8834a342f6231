// train.h - the CoOp training loop: mini-batches of cached image features,
// the prompt's loss and gradient (coop.h), an optimizer step (optim.h),
// periodic evaluation with the best prompt kept, atomic checkpoints and
// bit-identical resume.
//
// Dims: K classes, E embedding width, n images of a split.
//
// One step: the batch (rows order[pos*B .. pos*B + B) of the epoch's
// training order; the last batch of an epoch may be shorter), lr of the
// epoch (optim.h schedule), zero ctx->grad, L and d L / d ctx, one update.
// The order is the given order every epoch (the paper's few-shot loader,
// shuffle off) or a fresh coop_rng shuffle at each epoch start (shuffle).
//
// Evaluation every eval_every steps and after the last step: class text
// features once (no tape), logits of the train and val features, accuracy;
// the prompt with the best val accuracy (the earliest on ties) is kept and
// written to best_path; the last prompt to last_path.
//
// Checkpoints (ckpt_path, every ckpt_every steps and at the end): one
// safetensors file written to a temp file, fsynced, renamed over the old
// one, folder fsynced; it holds ctx, the optimizer moments and step count,
// the step, the RNG state, the epoch's training order (the sampler
// position), the best prompt and its accuracy, the loss and evaluation
// history, a fingerprint of the configuration and a SHA-256 checksum over
// all of it.  With resume the loop continues from the checkpoint (or starts
// fresh when there is none); since every computation is deterministic for a
// fixed thread count, the result is bit-identical to an uninterrupted run.
// A checkpoint of another configuration, or a damaged one, is refused.
// The previous good checkpoint is kept as ckpt_path.prev (renamed aside
// before the new one, written as ckpt_path.new, is renamed into place; the
// folder fsynced after each rename), and a whole-file SHA-256 in the header
// catches any changed, missing or extra byte.  On resume a damaged or
// missing checkpoint falls back to .prev with a warning naming the file
// and its fault; when neither is usable the call fails (it never starts
// over silently).
//
// Progress (stderr, one line per step):
//   step  120/2000 | loss 1.8342 | lr 2.00e-03 | 38.2 ms | ETA 1m12s
//   eval  step 100 | train acc 0.9500 | val acc 0.8123 | val loss 0.6021 | best 0.8123 @ 100
//
// Usage sketch (compiled by tests/test_coop_train.c):
//
//     CoopTrainCfg tc = coop_train_defaults();
//     tc.epochs = 10, tc.batch = 16;
//     CoopTrainResult res;
//     if (coop_train(&tc, &model->text, &prompt, &cls, &train, &val, &res, &err)) ...;
//     coop_train_result_free(&res);
#ifndef MCLIP_COOP_TRAIN_H
#define MCLIP_COOP_TRAIN_H

#include <stdio.h>

#include "coop.h"
#include "optim.h"
#include "promptfile.h"

typedef struct CoopTrainCfg {
    CoopOptCfg  opt;
    int         epochs;          // >= 1
    int64_t     max_steps;       // > 0: stop after this many steps (may end mid-epoch)
    int         batch;           // images per step
    int         shuffle;         // 1: reshuffle the training order every epoch
    uint64_t    seed;            // shuffling (the prompt is initialised by the caller)
    double      scale;           // logit scale
    int         eval_every;      // steps; 0: only after the last step
    int         chunk;           // prompt rows per taped pass (coop.h)
    const char *ckpt_path;       // NULL: no checkpoints
    int         ckpt_every;      // steps between checkpoints (>= 1)
    int         resume;          // continue from ckpt_path when it exists
    const char *best_path;       // prompt files, or NULL
    const char *last_path;
    CoopPromptMeta meta;         // model identity written into prompt files
    FILE       *progress;        // step and eval lines (NULL: silent)
    int64_t     stop_after;      // testing: return -2 after this many steps of this call
} CoopTrainCfg;

// AdamW as the paper (optim.h), 10 epochs, batch 16, no shuffle, seed 1,
// scale 100, eval every 100 steps, chunk COOP_DEFAULT_CHUNK, checkpoints
// every 50 steps when a path is given.
CoopTrainCfg coop_train_defaults(void);

// A split: L2-normalised features and labels.
typedef struct CoopTrainSet {
    const float   *feat;     // [n, E]
    const int32_t *labels;   // [n] in [0, K)
    int64_t        n;
} CoopTrainSet;

typedef struct CoopTrainResult {
    int64_t steps;            // steps taken in total
    int64_t steps_per_epoch;
    double  first_loss, final_loss;
    double  best_val_acc;     // -1 without a val set
    int64_t best_step;
    double  last_val_acc, last_train_acc;
    double  seconds;          // wall time of this call
    double  ms_per_step;      // mean over this call's steps (the first excluded when > 1)
    int     resumed;          // 1: continued from a checkpoint
    int64_t resumed_at;       // its step
    int     resumed_from_prev; // 1: the checkpoint was damaged or missing; its .prev was used
    float  *loss;             // [steps] training loss per step
    int     n_evals;
    int64_t *eval_step;       // [n_evals]
    double *eval_train_acc;   // [n_evals]
    double *eval_val_acc;     // [n_evals] (-1 without val)
} CoopTrainResult;

// Train p (its ctx is the start, or replaced by the checkpoint on resume)
// on the class rows cls.  val may be NULL or empty.  Returns 0, -1 with err
// set, or -2 when stop_after ended the call early (a checkpoint was written).
int  coop_train(const CoopTrainCfg *cfg, TextTower *tt, CoopPrompt *p, const CoopSeqs *cls,
                const CoopTrainSet *train, const CoopTrainSet *val, CoopTrainResult *res,
                McErr *err);
void coop_train_result_free(CoopTrainResult *res);

// Class text features once, then logits [n, K] (may be NULL) of a split;
// returns the accuracy; pred [n] (may be NULL) gets the argmax (first
// maximum) and *loss (may be NULL) the mean cross-entropy.
double coop_evaluate(CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls, const CoopTrainSet *s,
                     double scale, int *pred, float *logits, double *loss);

#endif
