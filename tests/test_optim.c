// test_optim.c - AdamW, SGD with momentum and the learning-rate schedules
// against PyTorch (tests/fixtures/coop_optim.safetensors, written by
// tests/reference/gen_coop.py) and against hand-computed first steps.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../coop/optim.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"

// First AdamW step by hand: m^ = g, v^ = g^2, so
//   p1 = p0 (1 - lr wd) - lr g / (|g| + eps).
static void check_hand(void) {
    CoopOptCfg c = coop_opt_paper();
    CoopOptim o;
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.3f, -1e-9f, 0.0f};
    coop_optim_init(&o, &c, 3);
    coop_optim_step(&o, p, g, c.lr);
    double want[3];
    const double p0[3] = {1.0, -2.0, 0.5}, g0[3] = {0.3, -1e-9, 0.0};
    for (int i = 0; i < 3; i++)
        want[i] = p0[i] * (1 - c.lr * c.weight_decay) - c.lr * g0[i] / (fabs(g0[i]) + c.eps);
    for (int i = 0; i < 3; i++) {
        printf("adamw step 1 by hand [%d]: %.9g (want %.9g)\n", i, p[i], want[i]);
        CHECK(fabs(p[i] - want[i]) <= 1e-7 * fabs(want[i]) + 1e-9, "adamw hand step %d", i);
    }
    coop_optim_free(&o);

    // SGD first step: buf = g + wd p;  p1 = p0 - lr buf.
    c = coop_opt_coop(10);
    float q[2] = {1.0f, -1.0f}, h[2] = {0.5f, 0.25f};
    coop_optim_init(&o, &c, 2);
    coop_optim_step(&o, q, h, 0.1);
    double w0 = 1.0 - 0.1 * (0.5 + 5e-4 * 1.0), w1 = -1.0 - 0.1 * (0.25 - 5e-4);
    printf("sgd step 1 by hand: %.9g %.9g (want %.9g %.9g)\n", q[0], q[1], w0, w1);
    CHECK(fabs(q[0] - w0) < 1e-7 && fabs(q[1] - w1) < 1e-7, "sgd hand step");
    coop_optim_free(&o);

    // The schedule's fixed points: warm-up, then the base lr, then cosine.
    CHECK(coop_lr_at(&c, 0) == 1e-5 && coop_lr_at(&c, 1) == 2e-3, "warm-up / first epoch lr");
    CHECK(fabs(coop_lr_at(&c, 6) - 1e-3) < 1e-15, "cosine midpoint (epoch 6 of 10): %g",
          coop_lr_at(&c, 6));
}

static float *read(const StFile *f, const char *name, int64_t *n) {
    McErr err;
    const StTensor *t = st_find(f, name);
    CHECK(t != NULL, "missing %s", name);
    if (!t) return NULL;
    float *v = malloc((size_t)t->numel * sizeof *v);
    CHECK(st_to_f32(f, t, v, t->numel, &err) == 0, "%s", err.msg);
    *n = t->numel;
    return v;
}

static void check_torch(void) {
    const char *path = "tests/fixtures/coop_optim.safetensors";
    McErr err;
    StFile *f = st_open(path, &err);
    CHECK(f != NULL, "%s (regenerate: tests/reference/gen_coop.py --only optim)",
          f ? "" : err.msg);
    if (!f) return;
    int64_t P, SP, nl;
    float *p0 = read(f, "input.p0", &P), *grads = read(f, "input.grads", &SP);
    int64_t S = SP / P;
    const char *names[2] = {"adamw", "sgd"};
    for (int k = 0; k < 2; k++) {
        int64_t n;
        float *want = read(f, k ? "ref.sgd" : "ref.adamw", &n);
        CoopOptCfg c = k ? coop_opt_coop(10) : coop_opt_paper();
        c.lr = k ? 0.1 : 1e-2;
        CoopOptim o;
        coop_optim_init(&o, &c, P);
        float *p = malloc((size_t)P * sizeof *p);
        memcpy(p, p0, (size_t)P * sizeof *p);
        for (int64_t s = 0; s < S; s++) {
            // The generator halves the lr from the fourth step on.
            coop_optim_step(&o, p, grads + s * P, s >= 3 ? c.lr * 0.5 : c.lr);
            char nm[64];
            snprintf(nm, sizeof nm, "%s step %lld vs torch", names[k], (long long)s + 1);
            // Same float32 operations in the same order; observed: AdamW
            // bit-exact, SGD within 1 ulp (PyTorch's vectorised add with
            // alpha fuses the multiply-add).
            test_close(nm, p, want + s * P, (size_t)P, 1e-7, 1e-6);
        }
        coop_optim_free(&o);
        free(p), free(want);
    }

    // Dassl's warm-up + cosine, one value per epoch.
    double *lr = malloc(64 * sizeof *lr);
    const StTensor *t = st_find(f, "ref.lr");
    CHECK(t && t->numel <= 64, "ref.lr");
    nl = t ? t->numel : 0;
    if (t) {
        const double *d = t->data;   // F64, little-endian like this machine
        memcpy(lr, d, (size_t)nl * sizeof *lr);
    }
    CoopOptCfg c = coop_opt_coop((int)nl);
    double max_rel = 0;
    for (int64_t e = 0; e < nl; e++)
        max_rel = fmax(max_rel, fabs(coop_lr_at(&c, e) - lr[e]) / lr[e]);
    printf("cosine + warm-up over %lld epochs vs torch: max rel %.3g\n", (long long)nl, max_rel);
    // torch's recursive cosine formula drifts from the closed form by a few ulp.
    CHECK(nl == 10 && max_rel < 1e-12, "schedule differs: max rel %g", max_rel);
    free(lr), free(p0), free(grads);
    st_close(f);
}

int main(void) {
    check_hand();
    check_torch();
    return test_finish("test_optim");
}
