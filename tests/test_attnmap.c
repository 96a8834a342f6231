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

typedef struct {
    char path[256], weights[512];
    StFile *st;
    McImageConfig cfg;
    int border, probe[3], grid;
    float *x, *theta;
} Case;

static int jint(const JsonValue *o, const char *key) {
    int64_t v = 0;
    const JsonValue *x = json_get(o, key);
    CHECK(x && json_int(x, &v) == 0, "json: integer %s missing", key);
    return (int)v;
}

static void jints(const JsonValue *o, const char *key, int *out, int max) {
    const JsonValue *a = json_get(o, key);
    CHECK(a && a->type == JSON_ARRAY && (int)a->len <= max, "json: array %s", key);
    for (size_t i = 0; a && i < a->len && (int)i < max; i++) out[i] = (int)a->items[i].integer;
}

static void parse_config(McImageConfig *m, const JsonValue *o) {
    memset(m, 0, sizeof *m);
    const JsonValue *kind = json_get(o, "kind");
    const char *k = kind && kind->type == JSON_STRING ? kind->str : "";
    m->image_size = jint(o, "image_size");
    m->embed = jint(o, "embed");
    if (!strcmp(k, "fastvit")) {
        McFastVitConfig *v = &m->fastvit;
        m->kind = MC_TRUNK_FASTVIT;
        v->n_stages = jint(o, "n_stages");
        jints(o, "widths", v->widths, 5);
        jints(o, "depths", v->depths, 5);
        jints(o, "attn", v->attn, 5);
        jints(o, "se_downsample", v->se_downsample, 5);
        v->mlp_ratio = jint(o, "mlp_ratio");
        v->attn_layernorm = jint(o, "attn_layernorm");
        v->stem_scale_branch = jint(o, "stem_scale_branch");
    } else {
        McVitConfig *v = &m->vit;
        m->kind = !strcmp(k, "vit_b_mci") ? MC_TRUNK_VIT_B_MCI : MC_TRUNK_VIT_L14;
        v->width = jint(o, "width");
        v->heads = jint(o, "heads");
        v->layers = jint(o, "layers");
        v->mlp = jint(o, "mlp");
        v->patch = jint(o, "patch");
        const JsonValue *e = json_get(o, "ln_eps");
        v->ln_eps = e ? (float)e->number : 0;
        v->conv_stem = jint(o, "conv_stem");
        v->norm_pre = jint(o, "norm_pre");
        v->cls_has_pos = jint(o, "cls_has_pos");
    }
}

static JsonDoc *meta_json(StFile *st, const char *key) {
    const char *s = st_meta(st, key);
    McErr err;
    JsonDoc *d = s ? json_parse(s, strlen(s), NULL, &err) : NULL;
    CHECK(d != NULL, "%s: metadata %s missing or bad", st_path(st), key);
    return d;
}

static float *read_f32(StFile *st, const char *name, int64_t *n) {
    const StTensor *t = st_find(st, name);
    CHECK(t != NULL, "%s: %s missing", st_path(st), name);
    if (!t) return NULL;
    float *v = malloc(sizeof(float) * (size_t)t->numel);
    McErr err;
    CHECK(st_to_f32(st, t, v, t->numel, &err) == 0, "%s: %s", name, err.msg);
    if (n) *n = t->numel;
    return v;
}

static int open_case(Case *c, const char *name) {
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "tests/fixtures/vp_ref_%s.safetensors", name);
    McErr err;
    c->st = st_open(c->path, &err);
    CHECK(c->st != NULL, "%s: %s (regenerate with tests/reference/gen_vp.py)", c->path,
          c->st ? "" : err.msg);
    if (!c->st) return -1;
    JsonDoc *dc = meta_json(c->st, "case"), *di = meta_json(c->st, "image_config");
    JsonDoc *dx = meta_json(c->st, "image_input");
    if (!dc || !di || !dx) return json_free(dc), json_free(di), json_free(dx), -1;
    c->border = jint(json_root(dc), "border");
    c->grid = jint(json_root(dc), "attn_grid");
    jints(json_root(dc), "attn_probe", c->probe, 3);
    parse_config(&c->cfg, json_root(di));
    // Image 0 of the recipe ["input.image", [N, 3, S, S], lo, hi].
    const JsonValue *a = json_root(dx);
    const char *seed = st_meta(c->st, "detweights_seed");
    int S = c->cfg.image_size;
    int64_t N = a->items[1].items[0].integer, n = N * 3 * S * S;
    c->x = malloc(sizeof(float) * (size_t)n);
    detweights_fill(c->x, (size_t)n, a->items[0].str, a->items[2].number, a->items[3].number,
                    seed ? strtoull(seed, NULL, 10) : 0);
    json_free(dc), json_free(di), json_free(dx);
    // The prompt's pieces, concatenated.
    int64_t P = coop_vp_numel(S, c->border), off = 0;
    c->theta = malloc(sizeof(float) * (size_t)P);
    const char *names[4] = {"input.pad_up", "input.pad_down", "input.pad_left",
                            "input.pad_right"};
    for (int p = 0; p < 4; p++) {
        int64_t k = 0;
        float *v = read_f32(c->st, names[p], &k);
        if (v && off + k <= P) memcpy(c->theta + off, v, sizeof(float) * (size_t)k);
        off += k;
        free(v);
    }
    CHECK(off == P, "%s: prompt pieces hold %lld values, expected %lld", c->path,
          (long long)off, (long long)P);
    const char *tmp = getenv("TMPDIR");
    snprintf(c->weights, sizeof c->weights, "%s/mclip_%d_am_%s.safetensors",
             tmp ? tmp : "/tmp", (int)getpid(), name);
    const char *skip[] = {"ref.", "input.", NULL};
    int rc = detweights_expand(c->path, c->weights, skip);
    CHECK(rc == 0, "%s: expanding the weight recipes failed", c->path);
    return rc;
}

static void close_case(Case *c) {
    if (c->weights[0]) unlink(c->weights);
    st_close(c->st);
    free(c->x), free(c->theta);
}

static ImageTower *load_tower(const Case *c) {
    McErr err;
    WeightSet *ws = ws_open(c->weights, &err);
    CHECK(ws != NULL, "%s: %s", c->weights, ws ? "" : err.msg);
    if (!ws) return NULL;
    ImageTower *tw = image_tower_load(ws, &c->cfg, 1, &err);
    int fin = tw ? ws_finish(ws, &err) : -1;
    CHECK(tw && fin == 0, "%s: %s", c->path, err.msg);
    ws_close(ws);
    if (tw && fin) image_tower_free(tw), tw = NULL;
    return tw;
}

static void run_case(const char *name) {
    Case c;
    if (open_case(&c, name) != 0) {
        close_case(&c);
        return;
    }
    ImageTower *tw = load_tower(&c);
    float *want = read_f32(c.st, "ref.attnmap", NULL);
    int S = c.cfg.image_size;
    McErr err;
    CoopVPrompt vp;
    if (tw && want && coop_vp_init_data(&vp, S, c.border, c.theta, &err) == 0) {
        // The layer as the CLI names it.
        char layer[64];
        int stage, block, G = 0;
        if (c.cfg.kind == MC_TRUNK_FASTVIT)
            snprintf(layer, sizeof layer, "stage.%d.block.%d", c.probe[0], c.probe[1]);
        else
            snprintf(layer, sizeof layer, "block.%d", c.probe[1]);
        int rc = coop_attn_parse_layer(tw, layer, &stage, &block, &err);
        CHECK(rc == 0 && stage == (c.cfg.kind == MC_TRUNK_FASTVIT ? c.probe[0] : 0) &&
              block == c.probe[1], "%s: parse %s: %s", name, layer, rc ? err.msg : "");

        // The map with the prompt against PyTorch.  Probabilities agree to
        // ~1e-6; min-max divides by the map's range (observed errors
        // ~1e-5 of the [0, 1] map).
        float *map = malloc(sizeof(float) * (size_t)S * S);
        rc = coop_attnmap(tw, c.x, &vp, stage, block, c.probe[2], map, &G, &err);
        CHECK(rc == 0 && G == c.grid, "%s: map: %s (grid %d, want %d)", name,
              rc ? err.msg : "", G, c.grid);
        char label[96];
        snprintf(label, sizeof label, "%s map %s head %d (%dx%d grid)", name, layer, c.probe[2],
                 G, G);
        test_close(label, map, want, (size_t)S * S, 1e-3, 0);

        // Without the prompt the map differs.
        float *plain = malloc(sizeof(float) * (size_t)S * S);
        coop_attnmap(tw, c.x, NULL, stage, block, c.probe[2], plain, &G, &err);
        double d = 0;
        for (int i = 0; i < S * S; i++) d = fmax(d, fabs(plain[i] - map[i]));
        CHECK(d > 1e-3, "%s: the prompt does not change the map", name);
        printf("%-48s max |map(prompt) - map(none)| %.3f\n", name, d);

        // Bad heads and layers are refused with a message.
        int heads = coop_attn_heads(tw, stage, block);
        CHECK(coop_attnmap(tw, c.x, NULL, stage, block, heads, map, &G, &err) == -1 &&
              strstr(err.msg, "head"), "%s: head %d accepted", name, heads);
        if (c.cfg.kind == MC_TRUNK_FASTVIT) {
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
        memcpy(xp, c.x, sizeof(float) * 3 * (size_t)S * S);
        coop_vp_add(S, c.border, vp.theta->data, xp, 1);
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
    close_case(&c);
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
