// gradcheck.c - see gradcheck.h.
#include "gradcheck.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// L = sum r_i out_i, in double.
static double eval_loss(GcBuild f, void *ctx, Tensor **in, const float *r, Graph *g) {
    ag_graph_reset(g);
    g->grad_enabled = 0;
    Tensor *out = f(g, in, ctx);
    double L = 0;
    for (int64_t i = 0; i < out->n; i++) L += (double)r[i] * (double)out->data[i];
    return L;
}

int gradcheck(const char *name, GcBuild f, void *ctx, Tensor **in, int n_in,
              GcOptions opt) {
    Graph *g = ag_graph_new(1 << 16);
    int ok = 1;

    // Analytic gradients.
    for (int j = 0; j < n_in; j++) tensor_zero_grad(in[j]);
    Tensor *out = f(g, in, ctx);
    int64_t n_out = out->n;
    float *r = mc_malloc((size_t)n_out * sizeof(float));
    for (int64_t i = 0; i < n_out; i++) r[i] = (float)(2.0 * test_uniform() - 1.0);
    ag_backward_seed(g, out, r);

    for (int j = 0; j < n_in; j++) {
        Tensor *x = in[j];
        if (!x->requires_grad) continue;
        int64_t step = 1;
        if (opt.max_elems > 0 && x->n > opt.max_elems)
            step = (x->n + opt.max_elems - 1) / opt.max_elems;
        double max_abs = 0, max_rel = 0;
        int64_t bad = 0, checked = 0;
        for (int64_t i = 0; i < x->n; i += step) {
            float x0 = x->data[i];
            x->data[i] = (float)(x0 + opt.h);
            double lp = eval_loss(f, ctx, in, r, g);
            x->data[i] = (float)(x0 - opt.h);
            double lm = eval_loss(f, ctx, in, r, g);
            x->data[i] = x0;
            // The actual step is what float rounding made of x0 +- h.
            double hp = (double)(float)(x0 + opt.h) - x0, hm = x0 - (double)(float)(x0 - opt.h);
            double num = (lp - lm) / (hp + hm);
            double ana = x->grad[i];
            double d = fabs(ana - num);
            double rel = d / fmax(fabs(num), 1e-12);
            if (d > max_abs) max_abs = d;
            if (rel > max_rel && d > opt.atol) max_rel = rel;
            if (!(d <= opt.atol + opt.rtol * fabs(num))) {
                if (bad < 3)
                    fprintf(stderr, "  %s in[%d][%lld]: analytic %.6g numeric %.6g\n", name, j,
                            (long long)i, ana, num);
                bad++;
            }
            checked++;
        }
        test_checks++;
        printf("gradcheck %-22s in[%d] n=%-6lld checked=%-6lld max|d|=%.2e max rel=%.2e %s\n",
               name, j, (long long)x->n, (long long)checked, max_abs, max_rel, bad ? "FAIL" : "ok");
        if (bad) {
            test_failures++;
            ok = 0;
        }
    }
    mc_free(r);
    ag_graph_free(g);
    return ok;
}
