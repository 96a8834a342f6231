// bench_conv.c - time every distinct conv shape of the MobileCLIP2-S0 image
// trunk (fastvit_mci0) at 256x256 input, batch 1 and batch 32.
//
// Shapes come from arch-spec §3 (S0: widths 64,128,256,512, depths
// 2,6,10,2, mlp ratio 3, attention in stage 3, SE in downsamples 2 and 3).
// Form "F" = the fused (inference) form: one conv with bias per MobileOne
// block / ReparamLargeKernelConv / RepMixer / RepCPE (arch-spec §7), the
// ConvMlp depthwise conv with its BN folded in, and the attention-stage
// 1x1 products (qkv, proj are linears on the 64 tokens: the same GEMM as a
// 1x1 conv).  Form "T" = branches that only exist in the train-time form
// (the 1x1 scale branch of stem.0, the 3x3 small conv of the downsamples).
// "uses" = how often the shape runs in one fused S0 forward; the sum of
// uses x time estimates the conv part of the trunk.
//
// "conv" lines time ag_conv2d with the tape off (as inference does);
// "convx" lines time the recorded backward with x trainable and w, bias
// frozen, i.e. d x only (what visual-prompt training needs through the
// frozen trunk).  Each case is validated at N = 1 on sampled elements
// against a direct double sum, then warmed up and repeated (at least 5
// times and about 0.3 s); median and min are printed with GFLOP/s = 2 MACs
// / median (the d x pass has the same MAC count as the forward).
//
// Usage: bench_conv [--threads T] [--clock wall|cpu] [--batch N]
//                   [--pass fwd|bwdx|both] [--list]
//   --list   print the shape table (read by bench/torch_ops.py) and exit
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd/autograd.h"
#include "bench_util.h"

typedef struct BenchConv {
    const char *name;
    int Cin, H, Cout, k, s, p, G;  // square input H x H, kernel k x k
    int bias, uses;
    char form;                     // 'F' fused form, 'T' train-time only
} BenchConv;

static const BenchConv shapes[] = {
    // name                 Cin    H  Cout  k  s  p    G  bias uses form
    {"stem0_3x3s2",           3, 256,   64, 3, 2, 1,   1, 1, 1, 'F'},
    {"stem0_scale_1x1s2",     3, 256,   64, 1, 2, 0,   1, 0, 0, 'T'},
    {"stem1_dw3x3s2",        64, 128,   64, 3, 2, 1,  64, 1, 1, 'F'},
    {"stem2_1x1",            64,  64,   64, 1, 1, 0,   1, 1, 1, 'F'},
    {"s0_mixer_dw3x3",       64,  64,   64, 3, 1, 1,  64, 1, 2, 'F'},
    {"s0_mlp_dw7x7",         64,  64,   64, 7, 1, 3,  64, 1, 2, 'F'},
    {"s0_fc1_1x1",           64,  64,  192, 1, 1, 0,   1, 1, 2, 'F'},
    {"s0_fc2_1x1",          192,  64,   64, 1, 1, 0,   1, 1, 2, 'F'},
    {"ds1_7x7s2_m2",         64,  64,  128, 7, 2, 3,  64, 1, 1, 'F'},
    {"ds1_3x3s2_m2",         64,  64,  128, 3, 2, 1,  64, 0, 0, 'T'},
    {"ds1_proj_1x1",        128,  32,  128, 1, 1, 0,   1, 1, 1, 'F'},
    {"s1_mixer_dw3x3",      128,  32,  128, 3, 1, 1, 128, 1, 6, 'F'},
    {"s1_mlp_dw7x7",        128,  32,  128, 7, 1, 3, 128, 1, 6, 'F'},
    {"s1_fc1_1x1",          128,  32,  384, 1, 1, 0,   1, 1, 6, 'F'},
    {"s1_fc2_1x1",          384,  32,  128, 1, 1, 0,   1, 1, 6, 'F'},
    {"ds2_7x7s2_m2",        128,  32,  256, 7, 2, 3, 128, 1, 1, 'F'},
    {"ds2_3x3s2_m2",        128,  32,  256, 3, 2, 1, 128, 0, 0, 'T'},
    {"ds2_se_fc1",          256,   1,   64, 1, 1, 0,   1, 1, 1, 'F'},
    {"ds2_se_fc2",           64,   1,  256, 1, 1, 0,   1, 1, 1, 'F'},
    {"ds2_proj_1x1",        256,  16,  256, 1, 1, 0,   1, 1, 1, 'F'},
    {"s2_mixer_dw3x3",      256,  16,  256, 3, 1, 1, 256, 1, 10, 'F'},
    {"s2_mlp_dw7x7",        256,  16,  256, 7, 1, 3, 256, 1, 10, 'F'},
    {"s2_fc1_1x1",          256,  16,  768, 1, 1, 0,   1, 1, 10, 'F'},
    {"s2_fc2_1x1",          768,  16,  256, 1, 1, 0,   1, 1, 10, 'F'},
    {"ds3_7x7s2_m2",        256,  16,  512, 7, 2, 3, 256, 1, 1, 'F'},
    {"ds3_3x3s2_m2",        256,  16,  512, 3, 2, 1, 256, 0, 0, 'T'},
    {"ds3_se_fc1",          512,   1,  128, 1, 1, 0,   1, 1, 1, 'F'},
    {"ds3_se_fc2",          128,   1,  512, 1, 1, 0,   1, 1, 1, 'F'},
    // ds3 proj.1 + 2 attention proj (linear 512->512 on 64 tokens)
    {"s3_1x1_512-512",      512,   8,  512, 1, 1, 0,   1, 1, 3, 'F'},
    // RepCPE + 2 ConvMlp depthwise convs of the attention blocks
    {"s3_dw7x7",            512,   8,  512, 7, 1, 3, 512, 1, 3, 'F'},
    // 2 ConvMlp fc1 + 2 attention qkv (linear 512->1536 on 64 tokens)
    {"s3_1x1_512-1536",     512,   8, 1536, 1, 1, 0,   1, 1, 4, 'F'},
    {"s3_fc2_1x1",         1536,   8,  512, 1, 1, 0,   1, 1, 2, 'F'},
    {"final_3x3_m2",        512,   8, 1024, 3, 1, 1, 512, 1, 1, 'F'},
    {"final_se_fc1",       1024,   1,   64, 1, 1, 0,   1, 1, 1, 'F'},
    {"final_se_fc2",         64,   1, 1024, 1, 1, 0,   1, 1, 1, 'F'},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

static void fill(float *p, size_t n, unsigned seed) {
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

// Compare 200 sampled outputs of y with a direct double sum; returns the
// worst error relative to the sum of |terms| of that output.
static double validate(const Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b,
                       const BenchConv *c) {
    int Ho = (int)y->shape[2], Cg = c->Cin / c->G, Og = c->Cout / c->G;
    double worst = 0;
    unsigned s = 12345;
    for (int t = 0; t < 200; t++) {
        s = s * 1664525u + 1013904223u;
        int64_t idx = (int64_t)(s >> 4) % y->n;
        int o = (int)(idx / ((int64_t)Ho * Ho)), i = (int)(idx / Ho % Ho), j = (int)(idx % Ho);
        double acc = b ? b->data[o] : 0.0, mag = fabs(acc);
        for (int ci = 0; ci < Cg; ci++)
            for (int a = 0; a < c->k; a++)
                for (int bb = 0; bb < c->k; bb++) {
                    int ih = i * c->s - c->p + a, iw = j * c->s - c->p + bb;
                    if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->H) continue;
                    double v = (double)x->data[((size_t)((o / Og) * Cg + ci) * c->H + ih) *
                                               c->H + iw] *
                               w->data[(((size_t)o * Cg + ci) * c->k + a) * c->k + bb];
                    acc += v, mag += fabs(v);
                }
        worst = fmax(worst, fabs(y->data[idx] - acc) / (mag + 1e-30));
    }
    return worst;
}

// d x at 200 sampled input elements against a direct double sum:
//   dx[c,ih,iw] = sum_{o in group(c), a, b} w[o, c', a, b] dy[o, (ih+p-a)/s, (iw+p-b)/s]
// over the (a, b) for which the division is exact and inside the output.
static double validate_dx(const float *dx, const float *dy, const Tensor *w,
                          const BenchConv *c, int Ho) {
    int Cg = c->Cin / c->G, Og = c->Cout / c->G;
    double worst = 0;
    unsigned s = 777;
    for (int t = 0; t < 200; t++) {
        s = s * 1664525u + 1013904223u;
        int64_t idx = (int64_t)(s >> 4) % ((int64_t)c->Cin * c->H * c->H);
        int ci = (int)(idx / ((int64_t)c->H * c->H)), ih = (int)(idx / c->H % c->H);
        int iw = (int)(idx % c->H), g = ci / Cg;
        double acc = 0, mag = 0;
        for (int o = g * Og; o < (g + 1) * Og; o++)
            for (int a = 0; a < c->k; a++)
                for (int b = 0; b < c->k; b++) {
                    int ph = ih + c->p - a, pw = iw + c->p - b;
                    if (ph < 0 || pw < 0 || ph % c->s || pw % c->s) continue;
                    int oh = ph / c->s, ow = pw / c->s;
                    if (oh >= Ho || ow >= Ho) continue;
                    double v = (double)w->data[(((size_t)o * Cg + ci % Cg) * c->k + a) * c->k + b] *
                               dy[((size_t)o * Ho + oh) * Ho + ow];
                    acc += v, mag += fabs(v);
                }
        worst = fmax(worst, fabs(dx[idx] - acc) / (mag + 1e-30));
    }
    return worst;
}

// Warm-up, then at least 5 runs and about 0.3 s of fn(ctx); median, min.
typedef void (*BenchFn)(void *ctx);
static void bench_time(BenchFn fn, void *ctx, double *med, double *min) {
    double t0 = bench_now();
    fn(ctx);
    double once = bench_now() - t0;
    int reps = once > 0 ? (int)(0.3 / once) : 200;
    reps = reps < 5 ? 5 : reps > 200 ? 200 : reps;
    double *t = mc_malloc((size_t)reps * sizeof(double));
    for (int i = 0; i < reps; i++) {
        t0 = bench_now();
        fn(ctx);
        t[i] = bench_now() - t0;
    }
    bench_stats(t, reps, med, min);
    mc_free(t);
}

typedef struct Case {
    Graph *g;
    Tensor *x, *w, *b;
    const BenchConv *c;
    AgNode *node;      // recorded conv (d x pass)
} Case;

// One inference forward: fresh arena, tape off.
static void run_fwd(void *ctx) {
    Case *k = ctx;
    ag_graph_reset(k->g);
    ag_conv2d(k->g, k->x, k->w, k->b, k->c->s, k->c->p, k->c->G);
}

// One recorded backward: d x += transposed conv of d y (w, b frozen).
static void run_bwdx(void *ctx) {
    Case *k = ctx;
    k->node->backward(k->node);
}

static void print_line(const char *kind, const BenchConv *c, int N, const ConvShape *s,
                       double med, double min) {
    printf("%-5s %-20s %3d %-9s %9.3f %9.3f %8.1f %3d %c\n", kind, c->name, N,
           conv_path_name(s->path), med * 1e3, min * 1e3, 2 * conv2d_macs(s) / med * 1e-9,
           c->uses, c->form);
    fflush(stdout);
}

// Time one shape at batch N (forward and/or d x); prints the result lines
// and adds uses x median to tot[0] (forward) and tot[1] (d x).  Returns 0,
// or -1 when validation failed.
static int bench_one(const BenchConv *c, int N, int passes, double tot[2]) {
    Case k = {.c = c};
    k.x = tensor_new(MC_DIMS(N, c->Cin, c->H, c->H));
    k.w = tensor_new(MC_DIMS(c->Cout, c->Cin / c->G, c->k, c->k));
    k.b = c->bias ? tensor_new(MC_DIMS(c->Cout)) : NULL;
    fill(k.x->data, (size_t)k.x->n, 1), fill(k.w->data, (size_t)k.w->n, 2);
    if (k.b) fill(k.b->data, (size_t)k.b->n, 3);
    ConvShape s;
    conv_shape_init(&s, N, c->Cin, c->H, c->H, c->Cout, c->k, c->k, c->s, c->p, c->G, NULL);
    size_t ny = (size_t)N * c->Cout * s.Ho * s.Wo;
    k.g = ag_graph_new(2 * ny * sizeof(float) +
                       conv2d_work_floats(&s, CONV_PASS_ALL) * sizeof(float) + 65536);
    int ok = 1;
    double med, min;

    if (passes & 1) {
        // Validate (batch 1 only: the batch loop is the same code per
        // image); float sums of up to 1536 terms: ~1e-7 of sum|terms|.
        k.g->grad_enabled = 0;
        Tensor *y = ag_conv2d(k.g, k.x, k.w, k.b, c->s, c->p, c->G);
        double err = N == 1 ? validate(y, k.x, k.w, k.b, c) : 0.0;
        if (err > 1e-5) ok = 0, fprintf(stderr, "%s: y differs from the direct sum (%.2e)\n",
                                        c->name, err);
        bench_time(run_fwd, &k, &med, &min);
        print_line("conv", c, N, &s, med, min);
        tot[0] += c->uses * med;
    }
    if (passes & 2) {
        // Record with x trainable, then run the node's backward repeatedly
        // (d x accumulates; the values only matter for the first check).
        ag_graph_reset(k.g);
        k.g->grad_enabled = 1;
        tensor_require_grad(k.x);
        Tensor *y = ag_conv2d(k.g, k.x, k.w, k.b, c->s, c->p, c->G);
        fill(y->grad, ny, 4);
        k.node = k.g->tape;
        run_bwdx(&k);
        double err = N == 1 ? validate_dx(k.x->grad, y->grad, k.w, c, s.Ho) : 0.0;
        if (err > 1e-5) ok = 0, fprintf(stderr, "%s: dx differs from the direct sum (%.2e)\n",
                                        c->name, err);
        bench_time(run_bwdx, &k, &med, &min);
        print_line("convx", c, N, &s, med, min);
        tot[1] += c->uses * med;
    }

    ag_graph_free(k.g);
    tensor_free(k.x), tensor_free(k.w), tensor_free(k.b);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    int batches[2] = {1, 32}, nb = 2, passes = 3;
    const char *only = NULL;   // --only NAME: one shape
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) mc_set_threads(atoi(argv[++i]));
        else if (bench_clock_arg(argc, argv, &i)) continue;
        else if (!strcmp(argv[i], "--pass") && i + 1 < argc) {
            i++;
            passes = !strcmp(argv[i], "fwd") ? 1 : !strcmp(argv[i], "bwdx") ? 2 : 3;
        }
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batches[0] = atoi(argv[++i]), nb = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--list")) {
            // name Cin H Cout k stride pad groups bias uses form
            for (int k = 0; k < N_SHAPES; k++) {
                const BenchConv *c = &shapes[k];
                printf("shape %s %d %d %d %d %d %d %d %d %d %c\n", c->name, c->Cin, c->H,
                       c->Cout, c->k, c->s, c->p, c->G, c->bias, c->uses, c->form);
            }
            return 0;
        } else {
            fprintf(stderr, "usage: %s [--threads T] [--clock wall|cpu] [--batch N] "
                    "[--pass fwd|bwdx|both] [--only NAME] [--list]\n", argv[0]);
            return 2;
        }
    }
    bench_banner("bench_conv: MobileCLIP2-S0 trunk conv shapes at 256x256, ag_conv2d "
                 "forward (conv) and d x (convx)");

    // MACs of one fused S0 forward over the listed convs (arch-spec §1:
    // 2.385 G for the whole image tower incl. attention matmuls and head).
    double macs = 0;
    for (int k = 0; k < N_SHAPES; k++) {
        ConvShape s;
        const BenchConv *c = &shapes[k];
        conv_shape_init(&s, 1, c->Cin, c->H, c->H, c->Cout, c->k, c->k, c->s, c->p, c->G, NULL);
        macs += c->uses * conv2d_macs(&s);
    }
    printf("# fused S0 conv MACs per image (sum of uses x shape): %.4f G\n", macs * 1e-9);
    printf("# kind  name                   N path      median_ms    min_ms  GFLOP/s uses form\n");

    int fail = 0;
    for (int bi = 0; bi < nb; bi++) {
        double tot[2] = {0, 0};
        for (int k = 0; k < N_SHAPES; k++)
            if ((!only || !strcmp(only, shapes[k].name)) &&
                bench_one(&shapes[k], batches[bi], passes, tot))
                fail = 1;
        if (passes & 1)
            printf("total %-20s %3d %-9s %9.3f\n", "fused_S0_convs", batches[bi], "-",
                   tot[0] * 1e3);
        if (passes & 2)
            printf("totalx %-19s %3d %-9s %9.3f\n", "fused_S0_convs", batches[bi], "-",
                   tot[1] * 1e3);
    }
    if (fail) fprintf(stderr, "bench_conv: validation failed\n");
    return fail;
}
