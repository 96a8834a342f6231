// optim.c - AdamW and SGD with momentum, constant and cosine schedules
// (see optim.h).  References: PyTorch 1.13 torch/optim/adamw.py
// _single_tensor_adamw, sgd.py _single_tensor_sgd; Dassl
// dassl/optim/lr_scheduler.py ConstantWarmupScheduler.
#include "optim.h"

#include <math.h>
#include <string.h>

#include "../tensor/tensor.h"

#define COOP_PI 3.14159265358979323846

CoopOptCfg coop_opt_paper(void) {
    CoopOptCfg c = {.kind = COOP_OPT_ADAMW, .lr = 3e-4, .weight_decay = 0.01, .beta1 = 0.9,
                    .beta2 = 0.999, .eps = 1e-8, .sched = COOP_SCHED_CONSTANT};
    return c;
}

CoopOptCfg coop_opt_coop(int max_epochs) {
    CoopOptCfg c = {.kind = COOP_OPT_SGD, .lr = 2e-3, .weight_decay = 5e-4, .momentum = 0.9,
                    .sched = COOP_SCHED_COSINE, .max_epochs = max_epochs, .warmup_epochs = 1,
                    .warmup_lr = 1e-5};
    return c;
}

const char *coop_opt_name(CoopOptKind k) { return k == COOP_OPT_SGD ? "sgd" : "adamw"; }
const char *coop_sched_name(CoopSchedKind k) {
    return k == COOP_SCHED_COSINE ? "cosine" : "constant";
}

void coop_optim_init(CoopOptim *o, const CoopOptCfg *cfg, int64_t n) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = n;
    o->m = mc_calloc((size_t)n, sizeof *o->m);
    if (cfg->kind == COOP_OPT_ADAMW) o->v = mc_calloc((size_t)n, sizeof *o->v);
}

void coop_optim_free(CoopOptim *o) {
    if (!o) return;
    mc_free(o->m);
    mc_free(o->v);
    memset(o, 0, sizeof *o);
}

double coop_lr_at(const CoopOptCfg *c, int64_t epoch) {
    if (c->sched == COOP_SCHED_CONSTANT) return c->lr;
    if (epoch < c->warmup_epochs) return c->warmup_lr;
    // Cosine annealing of the successor scheduler, at its own epoch e - w.
    double t = (double)(epoch - c->warmup_epochs), T = c->max_epochs > 0 ? c->max_epochs : 1;
    return c->lr * (1.0 + cos(COOP_PI * t / T)) / 2.0;
}

static void adamw_step(CoopOptim *o, float *p, const float *g, double lr) {
    const CoopOptCfg *c = &o->cfg;
    double t = (double)o->step;
    // Bias corrections in double, as PyTorch computes them in Python.
    double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    float decay = (float)(1.0 - lr * c->weight_decay);
    float b1 = (float)c->beta1, b2 = (float)c->beta2;
    float a1 = (float)(1.0 - c->beta1), a2 = (float)(1.0 - c->beta2);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)c->eps;
    for (int64_t i = 0; i < o->n; i++) {
        // p *= 1 - lr wd (decoupled decay, before the moment update)
        p[i] *= decay;
        // m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        o->m[i] = o->m[i] * b1 + a1 * g[i];
        o->v[i] = o->v[i] * b2 + a2 * (g[i] * g[i]);
        // p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        float denom = sqrtf(o->v[i]) / bc2_sqrt + eps;
        p[i] += -step_size * (o->m[i] / denom);
    }
}

static void sgd_step(CoopOptim *o, float *p, const float *g, double lr) {
    const CoopOptCfg *c = &o->cfg;
    float wd = (float)c->weight_decay, mom = (float)c->momentum;
    float damp = (float)(1.0 - c->dampening), flr = (float)lr;
    int first = o->step == 1;
    for (int64_t i = 0; i < o->n; i++) {
        // d = g + wd p
        float d = wd != 0 ? g[i] + wd * p[i] : g[i];
        if (mom != 0) {
            // buf = d on the first step, else mom buf + (1 - dampening) d
            o->m[i] = first ? d : o->m[i] * mom + damp * d;
            d = c->nesterov ? d + mom * o->m[i] : o->m[i];
        }
        p[i] += -flr * d;
    }
}

void coop_optim_step(CoopOptim *o, float *param, const float *grad, double lr) {
    o->step++;
    if (o->cfg.kind == COOP_OPT_ADAMW) adamw_step(o, param, grad, lr);
    else sgd_step(o, param, grad, lr);
}
