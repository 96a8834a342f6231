// optim.h - optimizers and learning-rate schedules for prompt learning.
//
// Two recipes (../shared/paper-protocol.md sections 5 and 16):
//   paper  AdamW (PyTorch torch.optim.AdamW): lr 3e-4, betas (0.9, 0.999),
//          eps 1e-8, decoupled weight decay 0.01; constant lr.
//   coop   SGD with momentum 0.9 (dampening 0, no Nesterov), weight decay
//          5e-4 added to the gradient (PyTorch torch.optim.SGD), lr 2e-3,
//          cosine annealing over the epochs after one constant warm-up
//          epoch at 1e-5 (Dassl ConstantWarmupScheduler + CosineAnnealingLR,
//          stepped once per epoch).
//
// Update rules, per element, in PyTorch 1.13's order (float32 tensors,
// bias corrections in double):
//   AdamW  p = p * (1 - lr wd);  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//          p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   SGD    d = g + wd p;  buf = d (first step) or mom buf + (1 - damp) d
//          p = p - lr * (nesterov ? d + mom buf : buf)
// Schedule (epoch e counted from 0; E = max_epochs, w = warmup_epochs):
//   constant  lr(e) = lr
//   cosine    lr(e) = warmup_lr for e < w, else
//             lr * (1 + cos(pi * (e - w) / E)) / 2
// (Dassl's successor scheduler starts at its own epoch 0 after the warm-up
// and anneals over T_max = E, so the last epoch does not reach 0.)
//
// Usage sketch (compiled by tests/test_optim.c):
//
//     CoopOptCfg oc = coop_opt_paper();
//     CoopOptim opt;
//     coop_optim_init(&opt, &oc, ctx->n);
//     double lr = coop_lr_at(&oc, epoch);
//     coop_optim_step(&opt, ctx->data, ctx->grad, lr);
//     coop_optim_free(&opt);
#ifndef MCLIP_COOP_OPTIM_H
#define MCLIP_COOP_OPTIM_H

#include <stdint.h>

typedef enum { COOP_OPT_ADAMW, COOP_OPT_SGD } CoopOptKind;
typedef enum { COOP_SCHED_CONSTANT, COOP_SCHED_COSINE } CoopSchedKind;

typedef struct CoopOptCfg {
    CoopOptKind kind;
    double lr, weight_decay;
    double beta1, beta2, eps;        // AdamW
    double momentum, dampening;      // SGD
    int    nesterov;                 // SGD
    CoopSchedKind sched;
    int    max_epochs;               // E of the cosine
    int    warmup_epochs;            // constant warm-up epochs
    double warmup_lr;
} CoopOptCfg;

CoopOptCfg coop_opt_paper(void);
CoopOptCfg coop_opt_coop(int max_epochs);

const char *coop_opt_name(CoopOptKind k);     // "adamw", "sgd"
const char *coop_sched_name(CoopSchedKind k); // "constant", "cosine"

typedef struct CoopOptim {
    CoopOptCfg cfg;
    int64_t n;        // parameters
    float  *m;        // [n] AdamW first moment / SGD momentum buffer
    float  *v;        // [n] AdamW second moment (NULL for SGD)
    int64_t step;     // steps taken (AdamW's t after the next step is step + 1)
} CoopOptim;

void   coop_optim_init(CoopOptim *o, const CoopOptCfg *cfg, int64_t n);
void   coop_optim_free(CoopOptim *o);
// The learning rate of epoch e (see the schedule above).
double coop_lr_at(const CoopOptCfg *cfg, int64_t epoch);
// One update of param [n] from grad [n] with learning rate lr.
void   coop_optim_step(CoopOptim *o, float *param, const float *grad, double lr);

#endif
