// test_attnmap.c - the interpretation tools: attention maps
// (coop/attnmap.h) and learned-prompt reading (coop/interpret.h).
//
//   * the steps on hand-computed values: PyTorch's bilinear upsampling
//     (align_corners = False) of a 2x2 grid to 4x4, matplotlib's jet at
//     table entries whose bytes are exact, the query mean and min-max;
//   * the whole map against PyTorch (tests/fixtures/vp_ref_*.safetensors
//     from tests/reference/gen_vp.py: the real open_clip / timm towers of
//     reduced S0 and B, image 0 with the visual prompt, the paper's rule
//     with F.interpolate): FastViT and ViT;
//   * layer names and heads are validated; the prompt changes the map; the
//     overlay is written as a PNG that decodes to the right size;
//   * nearest tokens (L2 and cosine) against a full sort in double; the
//     prefix feature of a context equal to a phrase's token embeddings is
//     the plain text feature of that phrase (the real open_clip tower of
//     tests/fixtures/coop_ref.safetensors); cosine matrix, CSV, PNG;
//     amplitudes sum to 1 per row; the SVG chart has a panel per row.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../coop/attnmap.h"
#include "../coop/interpret.h"
#include "../mobileclip/model.h"
#include "../datasets/dataset.h"
#include "../datasets/image.h"
#include "../mobileclip/json.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"
#include "util/detweights.h"
#include "util/fixture.h"

// ---- steps ----

static void test_steps(void) {
    // F.interpolate([[0, 1], [2, 3]], size=4, mode="bilinear",
    // align_corners=False) as PyTorch prints it.
    const float src[4] = {0, 1, 2, 3};
    const float want[16] = {0.00f, 0.25f, 0.75f, 1.00f, 0.50f, 0.75f, 1.25f, 1.50f,
                            1.50f, 1.75f, 2.25f, 2.50f, 2.00f, 2.25f, 2.75f, 3.00f};
    float got[16];
    coop_bilinear(src, 2, 2, got, 4, 4);
    test_close("bilinear 2x2 -> 4x4", got, want, 16, 1e-7, 0);
    float same[4];
    coop_bilinear(src, 2, 2, same, 2, 2);
    test_close("bilinear identity size", same, src, 4, 0, 0);

    // jet: entry 0 (0, 0, 0.5), entry 255 (0.5, 0, 0), entry 64 at x = 64/255:
    // green (x - 0.125) / 0.25 = 0.50392 -> 128.5 -> 128, blue 1.
    uint8_t c[3];
    coop_jet(0.0, c);
    CHECK(c[0] == 0 && c[1] == 0 && c[2] == 127, "jet(0) = %d %d %d", c[0], c[1], c[2]);
    coop_jet(1.0, c);
    CHECK(c[0] == 127 && c[1] == 0 && c[2] == 0, "jet(1) = %d %d %d", c[0], c[1], c[2]);
    coop_jet(0.25, c);
    CHECK(c[0] == 0 && c[1] == 128 && c[2] == 255, "jet(0.25) = %d %d %d", c[0], c[1], c[2]);
    coop_jet(-3.0, c);
    CHECK(c[2] == 127, "jet clamps below 0");

    // Query mean and min-max: T = 3 with a class token skipped.
    const float p[9] = {0.2f, 0.5f, 0.3f, 0.1f, 0.1f, 0.8f, 0.4f, 0.4f, 0.2f};
    float m[3];
    coop_attn_reduce(p, 3, 0, m);
    const float wm[3] = {0.0f, 0.5f, 1.0f};   // means 0.2333, 0.3333, 0.4333
    test_close("query mean, min-max", m, wm, 3, 1e-6, 0);
    coop_attn_reduce(p, 3, 1, m);
    const float wk[2] = {0.0f, 1.0f};             // keys 1, 2 only
    test_close("query mean, class key skipped", m, wk, 2, 1e-6, 0);

    // Overlay: alpha 0.7 of jet over the image.
    float map1[1] = {0.0f};
    uint8_t img[3] = {100, 200, 50}, out[3];
    coop_attn_overlay(map1, img, 1, COOP_ATTN_ALPHA, out);
    CHECK(out[0] == 30 && out[1] == 60 && out[2] == 104, "overlay %d %d %d (want 30 60 104)",
          out[0], out[1], out[2]);
}

// ---- against PyTorch ----

// A vp_ref case (tests/util/fixture.h) with the probe gen_vp.py mapped.
typedef struct {
    FxVpCase vc;
    int probe[3], grid;   // stage, block, head; the map's token grid side
} Case;

static int open_case(Case *c, const char *name) {
    memset(c, 0, sizeof *c);
    if (fx_vp_open(&c->vc, name, "am")) return -1;
    const JsonValue *info = json_root(c->vc.info);
    c->grid = fx_json_int(info, "attn_grid");
    fx_json_ints(info, "attn_probe", c->probe, 3);
    return 0;
}

static void run_case(const char *name) {
    Case cs;
    FxVpCase *c = &cs.vc;
    if (open_case(&cs, name) != 0) {
        fx_vp_close(c);
        return;
    }
    ImageTower *tw = fx_image_tower(c->weights, c->path, &c->cfg, 1);
    float *want = fx_f32(c->st, "ref.attnmap", NULL);
    int S = c->cfg.image_size;
    McErr err;
    CoopVPrompt vp;
    if (tw && want && coop_vp_init_data(&vp, S, c->border, c->theta, &err) == 0) {
        // The layer as the CLI names it.
        char layer[64];
        int stage, block, G = 0;
        if (c->cfg.kind == MC_TRUNK_FASTVIT)
            snprintf(layer, sizeof layer, "stage.%d.block.%d", cs.probe[0], cs.probe[1]);
        else
            snprintf(layer, sizeof layer, "block.%d", cs.probe[1]);
        int rc = coop_attn_parse_layer(tw, layer, &stage, &block, &err);
        CHECK(rc == 0 && stage == (c->cfg.kind == MC_TRUNK_FASTVIT ? cs.probe[0] : 0) &&
              block == cs.probe[1], "%s: parse %s: %s", name, layer, rc ? err.msg : "");

        // The map with the prompt against PyTorch.  Probabilities agree to
        // ~1e-6; min-max divides by the map's range (observed errors
        // ~1e-5 of the [0, 1] map).
        float *map = malloc(sizeof(float) * (size_t)S * S);
        rc = coop_attnmap(tw, c->x, &vp, stage, block, cs.probe[2], map, &G, &err);
        CHECK(rc == 0 && G == cs.grid, "%s: map: %s (grid %d, want %d)", name,
              rc ? err.msg : "", G, cs.grid);
        char label[96];
        snprintf(label, sizeof label, "%s map %s head %d (%dx%d grid)", name, layer, cs.probe[2],
                 G, G);
        test_close(label, map, want, (size_t)S * S, 1e-3, 0);

        // Without the prompt the map differs.
        float *plain = malloc(sizeof(float) * (size_t)S * S);
        coop_attnmap(tw, c->x, NULL, stage, block, cs.probe[2], plain, &G, &err);
        double d = 0;
        for (int i = 0; i < S * S; i++) d = fmax(d, fabs(plain[i] - map[i]));
        CHECK(d > 1e-3, "%s: the prompt does not change the map", name);
        printf("%-48s max |map(prompt) - map(none)| %.3f\n", name, d);

        // Bad heads and layers are refused with a message.
        int heads = coop_attn_heads(tw, stage, block);
        CHECK(coop_attnmap(tw, c->x, NULL, stage, block, heads, map, &G, &err) == -1 &&
              strstr(err.msg, "head"), "%s: head %d accepted", name, heads);
        if (c->cfg.kind == MC_TRUNK_FASTVIT) {
            CHECK(coop_attn_parse_layer(tw, "stage.1.block.0", &stage, &block, &err) == -1 &&
                  strstr(err.msg, "stage.3.block.0..1"), "RepMixer layer accepted: %s",
                  err.msg);
            CHECK(coop_attn_parse_layer(tw, "trunk.stages.3.blocks.1.token_mixer", &stage,
                                        &block, &err) == 0 && stage == 3 && block == 1,
                  "timm layer name not understood");
        } else {
            CHECK(coop_attn_parse_layer(tw, "blocks.9", &stage, &block, &err) == -1,
                  "ViT block 9 of 2 accepted");
        }

        // Overlay over the prompted image, as a PNG that decodes back.
        const float mean[3] = {0, 0, 0}, stdv[3] = {1, 1, 1};
        float *xp = malloc(sizeof(float) * 3 * (size_t)S * S);
        memcpy(xp, c->x, sizeof(float) * 3 * (size_t)S * S);
        coop_vp_add(S, c->border, vp.theta->data, xp, 1);
        uint8_t *img = malloc((size_t)S * S * 3), *out = malloc((size_t)S * S * 3);
        coop_attn_display(xp, S, mean, stdv, img);
        coop_attn_overlay(map, img, S, COOP_ATTN_ALPHA, out);
        char png[512];
        const char *tmp = getenv("TMPDIR");
        snprintf(png, sizeof png, "%s/mclip_%d_attn_%s.png", tmp ? tmp : "/tmp", (int)getpid(),
                 name);
        CHECK(coop_write_png(png, S, S, out, &err) == 0, "png: %s", err.msg);
        DsImage im;
        rc = ds_image_load(png, NULL, &im, &err);
        CHECK(rc == 0 && im.w == S && im.h == S && !memcmp(im.rgb, out, (size_t)S * S * 3),
              "%s: the PNG does not decode to the overlay", png);
        if (rc == 0) ds_image_free(&im);
        unlink(png);
        free(xp), free(img), free(out), free(map), free(plain);
        coop_vp_free(&vp);
    }
    free(want);
    image_tower_free(tw);
    fx_vp_close(c);
}

// ---- prompt interpretation ----

typedef struct {
    double s;
    int id;
} Cand;

static int cand_cmp_asc(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    return x->s < y->s ? -1 : x->s > y->s ? 1 : x->id - y->id;
}

static int cand_cmp_desc(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    return x->s > y->s ? -1 : x->s < y->s ? 1 : x->id - y->id;
}

static void test_nearest(void) {
    enum { V = 300, W = 24, R = 4, K = 5 };
    float *emb = malloc(sizeof(float) * V * W), ctx[R * W];
    test_seed(21);
    test_fill_normal(emb, V * W, 0.5);
    test_fill_normal(ctx, R * W, 0.5);
    memcpy(ctx + 2 * W, emb + 123 * W, sizeof(float) * W);   // row 2 is token 123
    int32_t ids[R * K];
    float sc[R * K];
    Cand *c = malloc(sizeof(Cand) * V);
    for (int metric = 0; metric < 2; metric++) {
        coop_nearest_tokens(ctx, R, emb, V, W, K, metric, ids, sc);
        int bad = 0;
        double worst = 0;
        for (int r = 0; r < R; r++) {
            for (int v = 0; v < V; v++) {
                double d2 = 0, dot = 0, cn = 0, en = 0;
                for (int j = 0; j < W; j++) {
                    double a = ctx[r * W + j], e = emb[v * W + j];
                    d2 += (a - e) * (a - e), dot += a * e, cn += a * a, en += e * e;
                }
                c[v] = (Cand){metric == COOP_METRIC_L2 ? sqrt(d2) : dot / sqrt(cn * en), v};
            }
            qsort(c, V, sizeof *c, metric == COOP_METRIC_L2 ? cand_cmp_asc : cand_cmp_desc);
            for (int k = 0; k < K; k++) {
                bad += ids[r * K + k] != c[k].id;
                worst = fmax(worst, fabs(sc[r * K + k] - c[k].s));
            }
        }
        printf("nearest %-6s top-%d of %d rows vs full sort: %d ids differ, max |score| err "
               "%.1e\n", coop_metric_name(metric), K, R, bad, worst);
        // The GEMM form ||c||^2 + ||e||^2 - 2 c.e loses digits near 0
        // (row 2: distance 0 computed as ~1e-3); elsewhere ~1e-6.
        CHECK(bad == 0 && worst < 2e-3, "nearest %s: %d ids differ, score err %.2e",
              coop_metric_name(metric), bad, worst);
        CHECK(ids[2 * K] == 123, "row 2 (token 123's embedding) found %d first", ids[2 * K]);
    }
    CHECK(coop_metric_parse("cosine") == COOP_METRIC_COSINE && coop_metric_parse("l1") == -1,
          "metric names");
    free(emb), free(c);
}

static void test_prompt_tools(void) {
    // The real text tower of the CoOp reference fixture (W 512, vocab 1000).
    const char *path = "tests/fixtures/coop_ref.safetensors";
    const char *skip[] = {"ref.", "input.", NULL};
    char wpath[512];
    McErr err;
    const char *tmp = getenv("TMPDIR");
    snprintf(wpath, sizeof wpath, "%s/mclip_%d_interp.safetensors", tmp ? tmp : "/tmp",
             (int)getpid());
    CHECK(detweights_expand(path, wpath, skip) == 0, "expanding %s (regenerate: "
          "tests/reference/gen_coop.py)", path);
    McModel *m = mc_model_load(wpath, NULL, &err);
    unlink(wpath);
    CHECK(m != NULL, "%s: %s", path, m ? "" : err.msg);
    if (!m) return;
    TextTower *tt = &m->text;
    int W = tt->cfg.width, V = tt->cfg.vocab, T = tt->cfg.context;
    int64_t E = tt->cfg.embed;

    // A context equal to the embeddings of ids 5, 17, 300 encodes like the
    // text [SOT, 5, 17, 300, EOT] itself.
    const int32_t phrase[3] = {5, 17, 300};
    float ctx[3 * 1024], f[3][1024];
    MC_CHECK(W <= 1024 && E <= 1024, "fixture tower too wide for the test buffers");
    for (int i = 0; i < 3; i++)
        memcpy(ctx + i * W, tt->token_embedding->data + (int64_t)phrase[i] * W,
               sizeof(float) * W);
    coop_prefix_feature(tt, ctx, 3, f[0]);
    int32_t ids[77] = {0};
    ids[0] = V - 2, ids[1] = 5, ids[2] = 17, ids[3] = 300, ids[4] = V - 1;
    Graph *g = ag_graph_new(1 << 22);
    g->grad_enabled = 0;
    Tensor *o = text_tower_forward(g, tt, ids, 1, NULL, &err);
    double s = 0;
    for (int64_t j = 0; j < E; j++) s += (double)o->data[j] * o->data[j];
    for (int64_t j = 0; j < E; j++) f[1][j] = (float)(o->data[j] / sqrt(s));
    ag_graph_free(g);
    MC_CHECK(T == 77, "context %d", T);
    test_close("prefix feature = plain text feature", f[0], f[1], (size_t)E, 1e-6, 1e-5);

    // A random prompt: the cosine matrix of three features.
    float rnd[4 * 1024];
    test_fill_normal(rnd, (size_t)4 * W, 0.02);
    coop_prefix_feature(tt, rnd, 4, f[2]);
    float feats[3 * 1024], cm[9];
    for (int i = 0; i < 3; i++) memcpy(feats + i * E, f[i], sizeof(float) * E);
    coop_cosine_matrix(feats, 3, E, cm);
    CHECK(fabs(cm[0] - 1) < 1e-5 && fabs(cm[4] - 1) < 1e-5 && cm[1] == cm[3] &&
          fabs(cm[1] - 1) < 1e-5 && cm[2] < 0.999, "cosine matrix %g %g %g", cm[0], cm[1],
          cm[2]);
    printf("similarity: learned-as-phrase vs phrase %.6f, random prompt vs phrase %.4f\n",
           cm[1], cm[2]);
    char csv[512], png[512], svg[512];
    snprintf(csv, sizeof csv, "%s/mclip_%d_sim.csv", tmp ? tmp : "/tmp", (int)getpid());
    snprintf(png, sizeof png, "%s/mclip_%d_sim.png", tmp ? tmp : "/tmp", (int)getpid());
    snprintf(svg, sizeof svg, "%s/mclip_%d_amp.svg", tmp ? tmp : "/tmp", (int)getpid());
    char *labels[3] = {"learned", "a, \"quoted\" text", "random"};
    CHECK(coop_matrix_write_csv(cm, 3, labels, csv, &err) == 0, "csv: %s", err.msg);
    char buf[512] = "";
    FILE *fp = fopen(csv, "r");
    size_t nr = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    if (fp) fclose(fp);
    buf[nr] = 0;
    CHECK(!strncmp(buf, ",learned,\"a, \"\"quoted\"\" text\",random\nlearned,", 43),
          "csv header / first row: %.60s", buf);
    CHECK(coop_matrix_write_png(cm, 3, 10, 0, 1, png, &err) == 0, "png: %s", err.msg);
    DsImage im;
    CHECK(ds_image_load(png, NULL, &im, &err) == 0 && im.w == 30 && im.h == 30,
          "heatmap png: %s", err.msg);
    ds_image_free(&im);

    // Amplitudes: rows sum to 1; the chart has one panel per row.
    float amp[4 * 1024];
    coop_amplitude(rnd, 4, W, amp);
    double worst = 0;
    for (int r = 0; r < 4; r++) {
        double t = 0;
        for (int d = 0; d < W; d++) t += amp[r * W + d];
        worst = fmax(worst, fabs(t - 1));
    }
    CHECK(worst < 1e-5, "amplitude rows sum to 1 within %.1e", worst);
    CHECK(coop_amplitude_svg(amp, 4, W, 30, "test <prompt>", svg, &err) == 0, "svg: %s",
          err.msg);
    char *text = NULL;
    size_t len = 0;
    CHECK(ds_read_file(svg, 1 << 20, &text, &len, &err) == 0, "svg read: %s", err.msg);
    int panels = 0;
    for (const char *q = text; q && (q = strstr(q, ">ctx[")); q++) panels++;
    CHECK(panels == 4 && strstr(text, "test &lt;prompt&gt;") && strstr(text, "</svg>"),
          "svg: %d panels", panels);
    printf("amplitude: rows sum to 1 (%.1e), svg %zu bytes, %d panels\n", worst, len, panels);
    free(text);
    unlink(csv), unlink(png), unlink(svg);
    mc_model_free(m);
}

int main(void) {
    test_steps();
    test_nearest();
    test_prompt_tools();
    run_case("s0_b10");
    run_case("b_b13");
    return test_finish("test_attnmap");
}
