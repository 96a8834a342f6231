// bench_vp.c - one visual-prompt training step at MobileCLIP2-S0 size:
// x + prompt (.) mask -> fused image tower -> normalised features ->
// logits against fixed class embeddings -> cross-entropy -> backward to the
// prompt -> AdamW step (coop/vprompt.h, coop/optim.h).
//
// Inputs are deterministic so that bench/torch_vp.py computes the same
// step in PyTorch and the first loss can be compared (validate, then time):
//   x       [N, 3, 256, 256] = sin(0.0137 i)            (as bench_image)
//   prompt  full [3, 256, 256] = 0.02 sin(0.031 i), kept on the border b
//   txt     [K, E] = cos(0.017 i), rows L2-normalised;  labels n % K
//   scale   100 (the paper's)
// The model is a random-weight checkpoint of S0's real shape (--model F,
// or written with --write-model F by coop/randmodel.h).
//
// Usage: bench_vp --model F [--batch 32] [--reps 3] [--border 32] [--classes 102]
//        bench_vp --write-model F
// Output: the banner, the first loss, then "vp step N median_ms min_ms cpu C img/s".
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../coop/optim.h"
#include "../coop/randmodel.h"
#include "../coop/vprompt.h"
#include "../mobileclip/model.h"
#include "bench_util.h"

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int main(int argc, char **argv) {
    const char *model = NULL, *write = NULL;
    int N = 32, reps = 3, border = 32, K = 102;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(argv[i], "--model")) model = v, i++;
        else if (!strcmp(argv[i], "--write-model")) write = v, i++;
        else if (!strcmp(argv[i], "--batch")) N = atoi(v), i++;
        else if (!strcmp(argv[i], "--reps")) reps = atoi(v), i++;
        else if (!strcmp(argv[i], "--border")) border = atoi(v), i++;
        else if (!strcmp(argv[i], "--classes")) K = atoi(v), i++;
        else {
            fprintf(stderr, "usage: bench_vp --model F [--batch 32] [--reps 3] [--border 32] "
                    "[--classes 102] | --write-model F\n");
            return 2;
        }
    }
    McErr err;
    if (write) {
        if (coop_randmodel_write(write, mc_config_find("S0"), 1, 0, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        printf("# wrote a RANDOM-WEIGHT MobileCLIP2-S0 checkpoint to %s\n", write);
        return 0;
    }
    if (!model || N < 1 || reps < 1 || K < 2) return fprintf(stderr, "bench_vp: --model F\n"), 2;
    bench_banner("bench_vp: visual-prompt training step, MobileCLIP2-S0 fused, random weights");
    McModel *m = mc_model_load(model, NULL, &err);
    if (!m || !m->image) return fprintf(stderr, "%s\n", m ? "no image tower" : err.msg), 1;
    int S = m->cfg.image.image_size;
    int64_t E = m->cfg.image.embed, img = (int64_t)3 * S * S;

    // Deterministic inputs (the same in torch_vp.py).
    float *x = mc_malloc((size_t)(N * img) * sizeof *x);
    for (int64_t i = 0; i < N * img; i++) x[i] = sinf(0.0137f * (float)i);
    float *full = mc_malloc((size_t)img * sizeof *full);
    for (int64_t i = 0; i < img; i++) full[i] = 0.02f * sinf(0.031f * (float)i);
    float *th = mc_malloc((size_t)coop_vp_numel(S, border) * sizeof *th);
    coop_vp_from_full(S, border, full, th);
    CoopVPrompt vp;
    if (coop_vp_init_data(&vp, S, border, th, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    float *txt = mc_malloc((size_t)(K * E) * sizeof *txt);
    for (int64_t i = 0; i < K * E; i++) txt[i] = cosf(0.017f * (float)i);
    for (int64_t k = 0; k < K; k++) {
        double s = 0;
        for (int64_t j = 0; j < E; j++) s += (double)txt[k * E + j] * txt[k * E + j];
        for (int64_t j = 0; j < E; j++) txt[k * E + j] = (float)(txt[k * E + j] / sqrt(s));
    }
    int32_t *labels = mc_malloc((size_t)N * sizeof *labels);
    for (int n = 0; n < N; n++) labels[n] = n % K;
    printf("# step      N %d, %dx%d, border %d (%lld prompt values), K %d, scale 100, AdamW\n",
           N, S, S, border, (long long)vp.theta->n, K);

    // Warm-up step (also the validation value), then timed steps.
    CoopOptCfg oc = coop_opt_paper();
    CoopOptim opt;
    coop_optim_init(&opt, &oc, vp.theta->n);
    Graph *g = ag_graph_new((size_t)1 << 28);
    double *wall = mc_malloc((size_t)reps * sizeof *wall), cpu = 0, gmax = 0;
    for (int r = -1; r < reps; r++) {
        double t0 = mc_time(), c0 = cpu_seconds();
        tensor_zero_grad(vp.theta);
        double loss = coop_vp_loss(g, m->image, &vp, x, N, txt, K, labels, 100.0, NULL, NULL,
                                   NULL);
        coop_optim_step(&opt, vp.theta->data, vp.theta->grad, oc.lr);
        if (r < 0) {
            for (int64_t i = 0; i < vp.theta->n; i++) gmax = fmax(gmax, fabs(vp.theta->grad[i]));
            printf("# first     loss %.6f, max |d loss / d prompt| %.6e, arena peak %.0f MB\n",
                   loss, gmax, g->arena.peak / 1e6);
            fflush(stdout);
            continue;
        }
        wall[r] = mc_time() - t0;
        cpu += cpu_seconds() - c0;
    }
    double med, mn;
    bench_stats(wall, reps, &med, &mn);
    printf("vp step %-4d %10.1f %10.1f cpu %.1f %8.2f img/s\n", N, 1e3 * med, 1e3 * mn,
           1e3 * cpu / reps, N / med);
    coop_optim_free(&opt);
    ag_graph_free(g);
    coop_vp_free(&vp);
    mc_model_free(m);
    mc_free(x), mc_free(full), mc_free(th), mc_free(txt), mc_free(labels), mc_free(wall);
    return 0;
}
