// test_coop_mem.c - memory of the chunked CoOp gradient, and random-weight
// checkpoints of real shapes.
//
// Always:
//   * coop_randmodel_write keys load strictly into the image tower of
//     reduced S0-like and S3-like configs (every key present and shaped as
//     the FastViT loader expects; nothing unexpected) and into a text tower;
//   * the chunked gradient's arena peak does not grow with the number of
//     classes (K 12 vs 48 rows on a W 64, 77-position tower).
// With MCLIP_LONG=1, the full-size MobileCLIP2-S0 text tower (random
// weights): peak RSS and time of one classification step (paper form, 16
// context vectors, 32 images) at K = 102 and 397, each in its own child
// process; the peak must stay under COOP_RSS_LIMIT_MB.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../coop/coop.h"
#include "../coop/randmodel.h"
#include "../mobileclip/model.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"
#include "util/sys.h"

#define COOP_RSS_LIMIT_MB 1536.0

// ---- random checkpoints load strictly ----

static void check_random_keys(const char *base, int depth) {
    McModelConfig c = *mc_config_find(base);
    // Reduced: `depth` blocks per stage, widths halved above 128 (still
    // multiples of the 32-wide attention heads), a 2-layer, 300-token text
    // tower.  The key names do not depend on the sizes.
    for (int s = 0; s < c.image.fastvit.n_stages; s++) {
        c.image.fastvit.depths[s] = depth;
        if (c.image.fastvit.widths[s] > 128) c.image.fastvit.widths[s] /= 2;
    }
    c.text.layers = 2, c.text.vocab = 300;
    char path[512];
    McErr err;
    test_tmp_file(path, sizeof path, "randkeys");
    int rc = coop_randmodel_write(path, &c, 5, 0, &err);
    CHECK(rc == 0, "%s", rc ? err.msg : "");
    WeightSet *ws = rc ? NULL : ws_open(path, &err);
    CHECK(ws != NULL, "%s", ws ? "" : err.msg);
    if (!ws) {
        unlink(path);
        return;
    }
    ImageTower *it = image_tower_load(ws, &c.image, 0, &err);
    TextTower tt;
    CHECK(it && text_tower_bind(&tt, ws, "text.", &c.text, &err) == 0, "%s", err.msg);
    ws_ignore_prefix(ws, "logit_scale");
    int ok = ws_finish(ws, &err) == 0;
    printf("random %s keys (depth %d): %s, %lld image parameters, random label %d\n", base,
           depth, ok ? "load strictly" : ws_report(ws),
           it ? (long long)image_tower_numel(it) : -1LL, coop_randmodel_is_random(path));
    CHECK(ok, "random %s checkpoint does not match the loader: %s", base, ws_report(ws));
    CHECK(coop_randmodel_is_random(path), "random label missing");

    // Features are finite and not all alike.
    if (ok && it) {
        Graph *g = ag_graph_new(1 << 24);
        g->grad_enabled = 0;
        Tensor *x = ag_tensor(g, MC_DIMS(2, 3, 64, 64));
        test_seed(3);
        for (int64_t i = 0; i < x->n; i++) x->data[i] = (float)test_uniform();
        Tensor *f = image_tower_forward(g, it, x, NULL);
        int64_t E = f->shape[1];
        double s0 = 0, s1 = 0, dot = 0;
        int finite = 1;
        for (int64_t j = 0; j < E; j++) {
            float a = f->data[j], b = f->data[E + j];
            finite &= isfinite(a) && isfinite(b);
            s0 += a * a, s1 += b * b, dot += a * b;
        }
        double cosv = dot / sqrt(s0 * s1);
        printf("  two random images: |f| %.3g %.3g, cosine %.4f\n", sqrt(s0), sqrt(s1), cosv);
        CHECK(finite && s0 > 0 && cosv < 0.9999, "random tower features degenerate");
        ag_graph_free(g);
    }
    text_tower_free(&tt);
    image_tower_free(it);
    ws_close(ws);
    unlink(path);
}

// ---- flat memory ----

static McModel *random_text_model(const McTextConfig *tc, char *path, size_t len) {
    McModelConfig c = *mc_config_find("S0");
    c.text = *tc;
    c.name = "custom";
    McErr err;
    test_tmp_file(path, len, "randtext");
    if (coop_randmodel_write(path, &c, 9, 1, &err)) {
        CHECK(0, "%s", err.msg);
        return NULL;
    }
    McModel *m = mc_model_load(path, NULL, &err);
    CHECK(m != NULL, "%s", m ? "" : err.msg);
    return m;
}

// Class rows of the paper form: "class <k>" names with synthetic ids.
static void paper_rows(int32_t *ids0, int64_t K, int T, int V) {
    for (int64_t k = 0; k < K; k++) {
        int32_t *row = ids0 + k * T;
        memset(row, 0, (size_t)T * sizeof *row);
        int n = 1 + (int)(k % 4);
        row[0] = V - 2;
        for (int j = 0; j < n; j++) row[1 + j] = 1 + (int32_t)((k * 7 + j * 13) % (V - 3));
        row[1 + n] = V - 1;
    }
}

typedef struct {
    double loss, ms;
    size_t arena;
    int plain;
} StepStat;

static StepStat one_step(McModel *m, int64_t K, int64_t N, int chunk) {
    McErr err;
    const McTextConfig *tc = &m->text.cfg;
    int T = tc->context, E = tc->embed;
    CoopPromptCfg pc = coop_prompt_paper(0);
    CoopPrompt p;
    CoopSeqs s;
    MC_CHECK(coop_prompt_init(&p, &pc, tc->width, 0, 1, &err) == 0, "%s", err.msg);
    int32_t *ids0 = mc_malloc((size_t)(K * T) * sizeof *ids0);
    paper_rows(ids0, K, T, tc->vocab);
    MC_CHECK(coop_seqs_build(&s, &p, ids0, NULL, K, T, &err) == 0, "%s", err.msg);
    float *img = mc_malloc((size_t)(N * E) * sizeof *img);
    int32_t *lab = mc_malloc((size_t)N * sizeof *lab);
    test_seed(4);
    test_fill_normal(img, (size_t)(N * E), 1.0);
    coop_normalize_rows(img, N, E);
    for (int64_t n = 0; n < N; n++) lab[n] = (int32_t)(n % K);

    CoopEngine *e = coop_engine_new(&m->text, chunk);
    double t0 = mc_time();
    StepStat st;
    st.loss = coop_loss_cls(e, &p, &s, img, lab, N, COOP_PAPER_SCALE, NULL);
    st.ms = (mc_time() - t0) * 1e3;
    st.arena = e->arena_peak;
    st.plain = e->plain;
    coop_engine_free(e);
    mc_free(img), mc_free(lab), mc_free(ids0);
    coop_seqs_free(&s);
    coop_prompt_free(&p);
    return st;
}

static void check_flat_memory(void) {
    McTextConfig tc = {.vocab = 200, .context = 77, .width = 64, .heads = 1, .layers = 2,
                       .embed = 32, .causal = 0};
    char path[512];
    McModel *m = random_text_model(&tc, path, sizeof path);
    unlink(path);
    if (!m) return;
    // Both K at least COOP_INFER_CHUNK, so the untaped passes are full too.
    StepStat a = one_step(m, 16, 8, 4), b = one_step(m, 48, 8, 4);
    printf("chunk 4: K 16 arena peak %.2f MB (%.0f ms), K 48 arena peak %.2f MB (%.0f ms)\n",
           a.arena / 1048576.0, a.ms, b.arena / 1048576.0, b.ms);
    // The arena holds one chunk's tape (or one untaped chunk): the same for any K.
    CHECK(!a.plain && !b.plain && b.arena <= a.arena + 65536,
          "arena peak grows with K: %zu -> %zu bytes", a.arena, b.arena);
    StepStat c = one_step(m, 48, 8, 64);
    printf("plain (chunk 64): K 48 arena peak %.2f MB (%.0f ms)\n", c.arena / 1048576.0, c.ms);
    CHECK(c.plain && c.arena > 4 * b.arena, "plain path should hold all rows' tape");
    CHECK(fabs(c.loss - b.loss) < 1e-5 * fabs(c.loss), "loss plain %.8g chunked %.8g", c.loss,
          b.loss);
    mc_model_free(m);
}

// ---- full-size S0 text tower (MCLIP_LONG) ----

static void measure_full(void) {
    McModelConfig c = *mc_config_find("S0");
    char path[512];
    McErr err;
    test_tmp_file(path, sizeof path, "rands0text");
    double t0 = mc_time();
    if (coop_randmodel_write(path, &c, 1, 1, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    printf("random S0 text tower written in %.1f s\n", mc_time() - t0);
    const int64_t Ks[2] = {102, 397};
    for (int i = 0; i < 2; i++) {
        int fd[2];
        MC_CHECK(pipe(fd) == 0, "pipe");
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            McModel *m = mc_model_load(path, NULL, &err);
            if (!m) _exit(3);
            StepStat st = one_step(m, Ks[i], 32, COOP_DEFAULT_CHUNK);
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            double out[4] = {st.loss, st.ms, (double)ru.ru_maxrss / 1024.0,
                             st.arena / 1048576.0};
            if (write(fd[1], out, sizeof out) != sizeof out) _exit(4);
            _exit(0);
        }
        close(fd[1]);
        double r[4] = {0};
        ssize_t got = read(fd[0], r, sizeof r);
        close(fd[0]);
        int status;
        waitpid(pid, &status, 0);
        CHECK(got == sizeof r && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "K %lld child failed", (long long)Ks[i]);
        printf("S0 text (random weights), K %3lld, 32 images, chunk %d: loss %.4f, "
               "%.1f s/step, peak RSS %.0f MB (arena %.0f MB, threads %d)\n",
               (long long)Ks[i], COOP_DEFAULT_CHUNK, r[0], r[1] / 1e3, r[2], r[3],
               mc_threads());
        CHECK(r[2] <= COOP_RSS_LIMIT_MB, "K %lld: peak RSS %.0f MB over %.0f MB",
              (long long)Ks[i], r[2], COOP_RSS_LIMIT_MB);
    }
    unlink(path);
}

int main(void) {
    // One thread: these checks are about memory, and spinning thread pools
    // on a busy machine only make them slow.
    mc_set_threads(1);
    check_random_keys("S0", 1);
    check_random_keys("S3", 1);
    check_flat_memory();
    const char *lng = getenv("MCLIP_LONG");
    if (lng && *lng == '1') {
        const char *th = getenv("MCLIP_THREADS");
        mc_set_threads(th ? atoi(th) : 2);
        measure_full();
    }
    else printf("full-size S0 memory measurement skipped (MCLIP_LONG=1 runs it)\n");
    return test_finish("test_coop_mem");
}
