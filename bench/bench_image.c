// bench_image.c - speed and peak memory of the MobileCLIP2-S0 image tower.
//
// Workload: x [N, 3, 256, 256] -> features [N, 512] through the FastViT
// MCi0 trunk in its fused (reparameterised) form, as mc_model_load builds
// it, in inference mode (no tape: scratch graphs per unit, fastvit.c), for
// N = 1 and N = 32.  The checkpoint is a RANDOM-WEIGHT fp16 safetensors file
// of S0's real shape (coop/randmodel.h, written with bench_text
// --write-model); only the image tower is loaded.
//
// Pixels: x[i] = sin(0.0137 i) (deterministic, in [-1, 1]); with --ref the
// batch-1 input is taken from the reference file instead (image.x) and the
// output compared with image.embed (bench/torch_towers.py).
//
// Printed (bench/compare_towers.sh reads the lines without '#'):
//   image load      med min      ms: ws_open + image_tower_load (fusion)
//   image fwd N     med min      ms per forward of a batch of N, images/s
//   image rss_mb N  peak         MiB (ru_maxrss) after the batch-N runs
//   check image ...              max |diff| / max |ref|
//
// Usage: bench_image --model PATH [--threads T] [--reps N] [--batch N]...
//                    [--ref FILE] [--unfused] [--clock wall|cpu]
// (--clock cpu: the calling thread's CPU time, bench_util.h; one thread.)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../autograd/autograd.h"
#include "../mobileclip/model.h"
#include "../mobileclip/safetensors.h"
#include "bench_util.h"

// Validation threshold: max |C - torch| / max |torch| of the features;
// float32 on both sides, different orders (observed about 1e-6).
#define CHECK_TOL 1e-4

// Process CPU time (all threads), seconds.
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;   // Linux: KiB
}

static ImageTower *load_image(const char *path, int fuse, McErr *err) {
    WeightSet *ws = ws_open(path, err);
    if (!ws) return NULL;
    ImageTower *tw = image_tower_load(ws, &mc_config_find("S0")->image, fuse, err);
    ws_ignore_prefix(ws, "text.");
    ws_ignore_prefix(ws, "logit_scale");
    if (tw && ws_finish(ws, err)) {
        image_tower_free(tw);
        tw = NULL;
    }
    ws_close(ws);
    return tw;
}

// 0 when the features of the reference input agree within CHECK_TOL.
static int check_ref(const char *ref, ImageTower *tw) {
    McErr err;
    StFile *f = st_open(ref, &err);
    if (!f) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    const StTensor *tx = st_find(f, "image.x"), *te = st_find(f, "image.embed");
    if (!tx || !te || tx->ndim != 4 || te->ndim != 2 || tx->shape[0] != te->shape[0]) {
        fprintf(stderr, "%s: expected image.x [N, 3, S, S] and image.embed [N, E]\n", ref);
        st_close(f);
        return -1;
    }
    Graph *g = ag_graph_new((size_t)1 << 24);
    g->grad_enabled = 0;
    Tensor *x = ag_tensor(g, MC_DIMS(tx->shape[0], tx->shape[1], tx->shape[2], tx->shape[3]));
    float *re = mc_malloc((size_t)te->numel * sizeof *re);
    int rc = st_to_f32(f, tx, x->data, x->n, &err) || st_to_f32(f, te, re, te->numel, &err);
    double d = 0, m = 0;
    if (!rc) {
        Tensor *y = image_tower_forward(g, tw, x, NULL);
        rc = y->n != te->numel;
        for (int64_t i = 0; !rc && i < y->n; i++) {
            d = fmax(d, fabs((double)y->data[i] - re[i]));
            m = fmax(m, fabs((double)re[i]));
        }
    }
    double rel = d / (m > 0 ? m : 1);
    printf("check image max_abs_diff %.3g rel %.3g (tolerance %.0e) %s\n", d, rel, CHECK_TOL,
           !rc && rel <= CHECK_TOL ? "ok" : "FAIL");
    mc_free(re);
    ag_graph_free(g);
    st_close(f);
    return rc || rel > CHECK_TOL ? -1 : 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *ref = NULL;
    int reps = 5, fuse = 1, batches[8], nb = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) mc_set_threads(atoi(argv[++i]));
        else if (bench_clock_arg(argc, argv, &i)) continue;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc && nb < 8)
            batches[nb++] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc) ref = argv[++i];
        else if (!strcmp(argv[i], "--unfused")) fuse = 0;
        else {
            fprintf(stderr, "usage: %s --model PATH [--threads T] [--reps N] [--batch N]... "
                    "[--ref FILE] [--unfused] [--clock wall|cpu]\n", argv[0]);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "%s: --model PATH is required (bench_text --write-model PATH writes "
                "a random-weight S0)\n", argv[0]);
        return 2;
    }
    if (!nb) batches[nb++] = 1, batches[nb++] = 32;
    if (reps < 1) reps = 1;
    bench_banner("bench_image: MobileCLIP2-S0 image tower (FastViT MCi0)");
    printf("# model     %s, %s form\n", model, fuse ? "fused" : "training (unfused)");

    // Load (timed once; the file is in the page cache after bench_text).
    McErr err;
    double t0 = bench_now();
    ImageTower *tw = load_image(model, fuse, &err);
    if (!tw) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double tl = (bench_now() - t0) * 1e3;
    printf("image load       %10.2f %10.2f\n", tl, tl);
    int bad = ref ? check_ref(ref, tw) : 0;

    int S = mc_config_find("S0")->image.image_size;
    double *t = mc_malloc((size_t)reps * sizeof(double));
    double *cpu = mc_malloc((size_t)reps * sizeof(double));
    for (int k = 0; k < nb; k++) {
        int N = batches[k];
        Graph *g = ag_graph_new((size_t)1 << 20);
        g->grad_enabled = 0;
        Tensor *x = tensor_new(MC_DIMS(N, 3, S, S));
        for (int64_t i = 0; i < x->n; i++) x->data[i] = sinf(0.0137f * (float)i);
        image_tower_forward(g, tw, x, NULL);   // warm-up (scratch arenas grow here)
        for (int r = 0; r < reps; r++) {
            ag_graph_reset(g);
            double c0 = cpu_now();
            t0 = bench_now();
            image_tower_forward(g, tw, x, NULL);
            t[r] = bench_now() - t0;
            cpu[r] = cpu_now() - c0;
        }
        double med, min, cmed, cmin;
        bench_stats(t, reps, &med, &min);
        bench_stats(cpu, reps, &cmed, &cmin);
        printf("image fwd %-4d  %10.2f %10.2f cpu %.1f %.2f images/s\n", N, med * 1e3,
               min * 1e3, cmed * 1e3, N / med);
        printf("image rss_mb %-4d %10.1f\n", N, peak_rss_mb());
        fflush(stdout);
        tensor_free(x);
        ag_graph_free(g);
    }
    mc_free(t), mc_free(cpu);
    image_tower_free(tw);
    return bad ? 1 : 0;
}
