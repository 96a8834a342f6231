// bench_text.c - load time and speed of the MobileCLIP2-S0 text tower.
//
// Workload: the 102 Flowers102 class names (datasets/classnames/
// flowers102_coop.txt) as "a photo of a {}." prompts, tokenized to ids
// [102, 77] and embedded by the full-size S0 text tower (12 blocks, width
// 512, 8 heads, MLP 2048, E 512; 63.4M parameters) in inference mode
// (no tape): proj [102, 512].  FLOPs of one pass: 2 x 7854 rows x 37.7M
// block weights + attention (about 0.6 TFLOP).
//
// The checkpoint is a RANDOM-WEIGHT fp16 safetensors file of S0's real
// shape (coop/randmodel.h); speed does not depend on the values.  With no
// --model one is written to $TMPDIR (or /tmp) on first use.
//
// Printed (bench/compare_towers.sh reads the lines that do not start
// with '#'):
//   text load_text  med min     ms: ws_open + text_tower_bind + ws_finish
//                               (fp16 -> f32 conversion included), file in
//                               the page cache
//   text load_model med min     ms: mc_model_load (text + image tower,
//                               FastViT fusion), for information
//   text tokenize   med min     ms: 102 prompts
//   text embed      med min     ms: text_tower_forward, prompts/s
//   text rss_mb     peak        MiB (ru_maxrss) after the embedding runs
//   check text ...              ids equal, max |diff| / max |ref| against
//                               --ref (bench/torch_towers.py output)
// With --profile, each kernel of a block is also timed alone at the
// text shapes (times x 12 = its share of one pass).
//
// Usage: bench_text [--model PATH] [--write-model PATH] [--threads T]
//                   [--reps N] [--loads N] [--ref FILE] [--classnames FILE]
//                   [--profile] [--clock wall|cpu]
// (--clock cpu: the calling thread's CPU time, bench_util.h; one thread.)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/stat.h>

#include "../autograd/autograd.h"
#include "../coop/randmodel.h"
#include "../datasets/dataset.h"
#include "../mobileclip/model.h"
#include "../mobileclip/safetensors.h"
#include "../mobileclip/tokenizer.h"
#include "../tensor/kernels.h"
#include "bench_util.h"

#define PROMPT_FMT "a photo of a %s."
// Validation threshold: max |C - torch| / max |torch| of the embeddings.
// Both sides are float32 with different summation orders; observed
// about 1e-6 on the random S0.
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

static void print_times(const char *what, double *t, int n, const char *extra) {
    double med, min;
    bench_stats(t, n, &med, &min);
    printf("text  %-10s %10.2f %10.2f %s\n", what, med * 1e3, min * 1e3, extra ? extra : "");
    fflush(stdout);
}

// ---- the model file ----

static int ensure_model(const char *path, McErr *err) {
    struct stat st;
    if (stat(path, &st) == 0) return 0;
    fprintf(stderr, "writing a RANDOM-WEIGHT MobileCLIP2-S0-shaped checkpoint to %s\n", path);
    return coop_randmodel_write(path, mc_config_find("S0"), 1, 0, err);
}

// Text tower alone from path: the load the speed claim is about.
static int load_text(const char *path, TextTower *tt, McErr *err) {
    WeightSet *ws = ws_open(path, err);
    if (!ws) return -1;
    const McModelConfig *c = mc_config_find("S0");
    int rc = text_tower_bind(tt, ws, "text.", &c->text, err);
    ws_ignore_prefix(ws, "visual.");
    ws_ignore_prefix(ws, "logit_scale");
    if (!rc) rc = ws_finish(ws, err);
    ws_close(ws);
    if (rc) text_tower_free(tt);
    return rc;
}

// ---- prompts ----

static int32_t *tokenize_prompts(Tokenizer *tok, char **names, int n) {
    int32_t *ids = mc_malloc((size_t)n * TOK_CONTEXT * sizeof *ids);
    char text[512];
    for (int i = 0; i < n; i++) {
        snprintf(text, sizeof text, PROMPT_FMT, names[i]);
        tok_encode(tok, text, ids + (size_t)i * TOK_CONTEXT);
    }
    return ids;
}

// ---- validation against torch_towers.py ----

// 0 when the ids match and the embeddings agree within CHECK_TOL.
static int check_ref(const char *ref, const int32_t *ids, int B, const Tensor *emb) {
    McErr err;
    StFile *f = st_open(ref, &err);
    if (!f) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    const StTensor *ti = st_find(f, "text.ids"), *te = st_find(f, "text.embed");
    if (!ti || !te || ti->numel != (int64_t)B * TOK_CONTEXT || te->numel != emb->n) {
        fprintf(stderr, "%s: expected text.ids [%d, %d] and text.embed [%d, %lld]\n", ref, B,
                TOK_CONTEXT, B, (long long)emb->shape[1]);
        st_close(f);
        return -1;
    }
    int64_t *rid = mc_malloc((size_t)ti->numel * sizeof *rid);
    float *re = mc_malloc((size_t)te->numel * sizeof *re);
    int rc = st_to_i64(f, ti, rid, ti->numel, &err) || st_to_f32(f, te, re, te->numel, &err);
    int id_diff = 0;
    double d = 0, m = 0;
    if (!rc) {
        for (int64_t i = 0; i < ti->numel; i++) id_diff += rid[i] != ids[i];
        for (int64_t i = 0; i < emb->n; i++) {
            d = fmax(d, fabs((double)emb->data[i] - re[i]));
            m = fmax(m, fabs((double)re[i]));
        }
    }
    double rel = d / (m > 0 ? m : 1);
    printf("check text ids_differing %d max_abs_diff %.3g rel %.3g (tolerance %.0e) %s\n",
           id_diff, d, rel, CHECK_TOL, !rc && !id_diff && rel <= CHECK_TOL ? "ok" : "FAIL");
    mc_free(rid), mc_free(re);
    st_close(f);
    return rc || id_diff || rel > CHECK_TOL ? -1 : 0;
}

// ---- per-kernel profile at the text shapes ----

static void fill(float *p, size_t n, unsigned seed) {
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

// Times one block's work kernel by kernel: R = B T rows, W, M = 4 W.
static void profile(const NnBlock *blk, int B, int T, int reps) {
    int W = blk->spec.width, M = blk->spec.mlp, NH = blk->spec.heads, R = B * T;
    Graph *g = ag_graph_new((size_t)1 << 26);
    g->grad_enabled = 0;
    Tensor *x = tensor_new(MC_DIMS(B, T, W)), *h = tensor_new(MC_DIMS(B, T, M));
    fill(x->data, (size_t)x->n, 1);
    fill(h->data, (size_t)h->n, 2);
    Tensor *qkv = tensor_new(MC_DIMS(B, T, 3 * W));
    fill(qkv->data, (size_t)qkv->n, 3);
    float *y = mc_malloc((size_t)R * M * sizeof(float));
    int nt = mc_threads();
    float *scratch = mc_malloc(mc_attention_scratch_floats(T, W / NH, nt, 0) * sizeof(float));
    const char *names[] = {"layernorm", "linear_qkv", "attention", "linear_proj", "add",
                           "linear_fc1", "gelu", "linear_fc2"};
    enum { N_OPS = 8 };
    double *t = mc_malloc((size_t)reps * sizeof(double)), med[N_OPS], min[N_OPS], tot = 0;
    for (int op = 0; op < N_OPS; op++) {
        for (int r = -1; r < reps; r++) {
            ag_graph_reset(g);
            double t0 = bench_now();
            switch (op) {
            case 0: mc_layernorm_forward(y, NULL, NULL, x->data, blk->ln1_w->data,
                                         blk->ln1_b->data, R, W, 1e-5f); break;
            case 1: ag_linear(g, x, blk->qkv_w, blk->qkv_b); break;
            case 2: mc_attention_forward(y, NULL, qkv->data, NULL, B, T, W, NH, 0.125f,
                                         scratch, nt); break;
            case 3: ag_linear(g, x, blk->proj_w, blk->proj_b); break;
            case 4: ag_add(g, x, x); break;
            case 5: ag_linear(g, x, blk->fc1_w, blk->fc1_b); break;
            case 6: mc_gelu_forward(y, h->data, (int64_t)R * M); break;
            case 7: ag_linear(g, h, blk->fc2_w, blk->fc2_b); break;
            }
            if (r >= 0) t[r] = bench_now() - t0;
        }
        bench_stats(t, reps, &med[op], &min[op]);
        tot += med[op];
    }
    printf("# profile: one block's kernels alone, R = %d rows, W %d, M %d (x %s)\n", R, W, M,
           "12 blocks per pass");
    for (int op = 0; op < N_OPS; op++)
        printf("prof  %-12s %9.2f %9.2f  %5.1f%%\n", names[op], med[op] * 1e3, min[op] * 1e3,
               100 * med[op] / tot);
    printf("prof  %-12s %9.2f  (x 12 = %.0f ms; LN2 and the second add as LN1 and add)\n",
           "sum", tot * 1e3, (tot + med[0] + med[4]) * 12e3);
    fflush(stdout);
    mc_free(t), mc_free(y), mc_free(scratch);
    tensor_free(x), tensor_free(h), tensor_free(qkv);
    ag_graph_free(g);
}

// ---- main ----

int main(int argc, char **argv) {
    const char *model = NULL, *write = NULL, *ref = NULL, *cn = NULL;
    int reps = 5, loads = 3, prof = 0;
    char defpath[512], cnbuf[512];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--write-model") && i + 1 < argc) write = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) mc_set_threads(atoi(argv[++i]));
        else if (bench_clock_arg(argc, argv, &i)) continue;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--loads") && i + 1 < argc) loads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc) ref = argv[++i];
        else if (!strcmp(argv[i], "--classnames") && i + 1 < argc) cn = argv[++i];
        else if (!strcmp(argv[i], "--profile")) prof = 1;
        else {
            fprintf(stderr, "usage: %s [--model PATH] [--write-model PATH] [--threads T] "
                    "[--reps N] [--loads N] [--ref FILE] [--classnames FILE] [--profile] "
                    "[--clock wall|cpu]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (loads < 1) loads = 1;
    McErr err;
    if (write) {
        if (ensure_model(write, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        return 0;
    }
    if (!model) {
        const char *dir = getenv("TMPDIR");
        snprintf(defpath, sizeof defpath, "%s/mclip-bench-random-S0-%s.safetensors",
                 dir && *dir ? dir : "/tmp", COOP_RANDMODEL_RECIPE);
        model = defpath;
        if (ensure_model(model, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    bench_banner("bench_text: MobileCLIP2-S0 text tower, 102 Flowers102 prompts");
    printf("# model     %s%s\n", model,
           coop_randmodel_is_random(model) ? " (RANDOM WEIGHTS)" : "");

    // Prompts and ids.
    if (!cn) cn = ds_classnames_file("flowers102", "coop", cnbuf, sizeof cnbuf);
    char **names = NULL;
    int n_names = 0;
    char vocab[1024];
    Tokenizer *tok = NULL;
    if (!cn || ds_read_classnames(cn, &names, &n_names, &err) ||
        tok_find_vocab(vocab, sizeof vocab, &err) || !(tok = tok_load(vocab, &err))) {
        fprintf(stderr, "%s\n", cn ? err.msg : "flowers102_coop.txt class names not found");
        return 1;
    }
    int B = n_names;
    double *t = mc_malloc((size_t)(reps > loads ? reps : loads) * sizeof(double));
    int32_t *ids = NULL;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        mc_free(ids);
        ids = tokenize_prompts(tok, names, B);
        t[r] = bench_now() - t0;
    }
    printf("# prompts   %d x %d tokens (\"" PROMPT_FMT "\")\n", B, TOK_CONTEXT, names[0]);

    // Text tower alone: load, then embed.
    TextTower tt;
    double t0 = bench_now();
    if (load_text(model, &tt, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("# first text load %.1f ms (page cache state unknown)\n", (bench_now() - t0) * 1e3);
    Graph *g = ag_graph_new((size_t)1 << 24);
    g->grad_enabled = 0;
    Tensor *emb = text_tower_forward(g, &tt, ids, B, NULL, &err);   // warm-up
    if (!emb) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int bad = ref ? check_ref(ref, ids, B, emb) : 0;
    print_times("tokenize", t, reps, "");
    double *cpu = mc_malloc((size_t)reps * sizeof(double));
    for (int r = 0; r < reps; r++) {
        ag_graph_reset(g);
        double c0 = cpu_now();
        t0 = bench_now();
        emb = text_tower_forward(g, &tt, ids, B, NULL, &err);
        t[r] = bench_now() - t0;
        cpu[r] = cpu_now() - c0;
    }
    char extra[96];
    double med, min, cmed, cmin;
    bench_stats(t, reps, &med, &min);
    bench_stats(cpu, reps, &cmed, &cmin);
    mc_free(cpu);
    snprintf(extra, sizeof extra, "cpu %.1f %.1f prompts/s", cmed * 1e3, B / med);
    print_times("embed", t, reps, extra);
    printf("text  rss_mb     %10.1f\n", peak_rss_mb());
    if (prof) profile(&tt.blocks[0], B, TOK_CONTEXT, reps);
    ag_graph_free(g);
    text_tower_free(&tt);

    // Load times (the file is now in the page cache).
    for (int r = 0; r < loads; r++) {
        t0 = bench_now();
        if (load_text(model, &tt, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        t[r] = bench_now() - t0;
        text_tower_free(&tt);
    }
    print_times("load_text", t, loads, "");
    for (int r = 0; r < loads; r++) {
        t0 = bench_now();
        McModel *m = mc_model_load(model, "MobileCLIP2-S0", &err);
        t[r] = bench_now() - t0;
        if (!m) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        mc_model_free(m);
    }
    print_times("load_model", t, loads, "");

    mc_free(t), mc_free(ids);
    ds_names_free(names, n_names);
    tok_free(tok);
    return bad ? 1 : 0;
}
