// test_retrieval.c - retrieval metrics, the in-batch contrastive loss and
// the retrieval / multitask training loop (coop/retrieval.h).
//
//   * both protocols on a generated Flickr30k-layout caption set
//     (datasets/gen_dataset.h, Karpathy JSON, test split) with seeded
//     features: recall@1/5/10 both ways and the paper's first-caption
//     t2i R@1 equal a brute-force computation in double (full sort);
//   * L_ret and d L_ret / d ctx: (1 - lambda) d L_ret + lambda d L_cls
//     equals the reference multitask gradient of the real open_clip text
//     tower (tests/fixtures/coop_ref.safetensors, cases multi_*, from
//     tests/reference/gen_coop.py), and L_ret its l_ret; chunked = plain;
//   * text features through the prompt with legacy pooling depend on the
//     group size (R) as the paper's rule says, and plain features match
//     the text tower;
//   * training on a small full-vocabulary tower: the retrieval and the
//     multitask losses fall;
//   * the command line ($MCLIP_BIN) on the reduced model of
//     tests/fixtures/e2e_model.safetensors and the generated caption set:
//     retrieval eval equals the in-process scores; prompt nearest,
//     similarity and amplitude run and write their files.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../coop/promptfile.h"
#include "../coop/retrieval.h"
#include "../mobileclip/cli_common.h"
#include "../datasets/dataset.h"
#include "../datasets/gen_dataset.h"
#include "../mobileclip/json.h"
#include "../mobileclip/model.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"
#include "util/detweights.h"
#include "util/fixture.h"

static void tmp_name(char *buf, size_t len, const char *tag) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, len, "%s/mclip_%d_%s", dir ? dir : "/tmp", (int)getpid(), tag);
}

// ---- metrics against brute force ----

typedef struct {
    double s;
    int i;
} Scored;

static int by_score_desc(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    return x->s < y->s ? 1 : x->s > y->s ? -1 : x->i - y->i;
}

// Rank (0-based) of `want` among n scores sorted descending.
static int rank_of(Scored *v, int n, int want) {
    qsort(v, (size_t)n, sizeof *v, by_score_desc);
    for (int r = 0; r < n; r++)
        if (v[r].i == want) return r;
    return n;
}

static double dot(const float *a, const float *b, int64_t E) {
    double d = 0;
    for (int64_t j = 0; j < E; j++) d += (double)a[j] * b[j];
    return d;
}

static char gen_dir[512];   // the generated datasets (removed at the end of main)

static void check_metrics(void) {
    // A generated caption set in the Flickr30k layout; its test split.
    char *dir = gen_dir, json[600];
    McErr err;
    tmp_name(dir, sizeof gen_dir, "retgen");
    GenOptions go = gen_defaults();
    go.classes = 6, go.per_class = 10, go.size = 12;
    CHECK(gen_dataset(dir, &go, &err) == 0, "gen_dataset: %s", err.msg);
    snprintf(json, sizeof json, "%s/flickr30k/dataset_flickr30k.json", dir);
    CaptionSet *cs = cs_load_karpathy(json, NULL, &err);
    CHECK(cs != NULL, "%s: %s", json, cs ? "" : err.msg);
    if (!cs) return;
    int I = 0, T = 0;
    int *img_of = malloc(sizeof(int) * (size_t)cs->n_captions);
    for (int i = 0; i < cs->n_images; i++) {
        if (cs->images[i].split != DS_TEST) continue;
        for (int c = 0; c < cs->images[i].n; c++) img_of[T++] = I;
        I++;
    }
    CHECK(I >= 10 && T == 5 * I, "generated test split: %d images, %d captions", I, T);

    // Seeded features: caption = its image + noise (some retrievals fail).
    enum { E = 24 };
    float *img = malloc(sizeof(float) * (size_t)(I * E));
    float *txt = malloc(sizeof(float) * (size_t)(T * E));
    test_seed(77);
    test_fill_normal(img, (size_t)(I * E), 1.0);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < E; j++)
            txt[t * E + j] = img[img_of[t] * E + j] + (float)(1.6 * test_normal());
    coop_normalize_rows(img, I, E);
    coop_normalize_rows(txt, T, E);
    CoopRetScores sc;
    coop_ret_scores(img, I, txt, T, E, img_of, NULL, &sc);

    // Brute force: sort every caption's images (and every image's captions).
    double t2i[3] = {0}, i2t[3] = {0};
    Scored *v = malloc(sizeof(Scored) * (size_t)(T > I ? T : I));
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < I; i++) v[i] = (Scored){dot(txt + t * E, img + i * E, E), i};
        int r = rank_of(v, I, img_of[t]);
        for (int k = 0; k < 3; k++) t2i[k] += r < coop_ret_ks[k];
    }
    for (int i = 0; i < I; i++) {
        for (int t = 0; t < T; t++) v[t] = (Scored){dot(txt + t * E, img + i * E, E), t};
        qsort(v, (size_t)T, sizeof *v, by_score_desc);
        int r = 0;
        while (img_of[v[r].i] != i) r++;   // best own caption's rank
        for (int k = 0; k < 3; k++) i2t[k] += r < coop_ret_ks[k];
    }
    int bad = 0, hits = 0;
    for (int k = 0; k < 3; k++) {
        bad += fabs(sc.t2i[k] - t2i[k] / T) > 1e-12 || fabs(sc.i2t[k] - i2t[k] / I) > 1e-12;
        printf("R@%-2d  t2i %.4f (brute %.4f)  i2t %.4f (brute %.4f)\n", coop_ret_ks[k],
               sc.t2i[k], t2i[k] / T, sc.i2t[k], i2t[k] / I);
    }
    // Paper protocol: first caption of each image, argmax image.
    for (int i = 0, t = 0; i < I; i++, t += 5) {
        int best = 0;
        double bs = -INFINITY;
        for (int j = 0; j < I; j++) {
            double s = dot(txt + t * E, img + j * E, E);
            if (s > bs) bs = s, best = j;
        }
        hits += best == i;
    }
    printf("paper t2i R@1 %d/%d (brute %d)\n", sc.paper_hits, I, hits);
    CHECK(bad == 0 && sc.paper_hits == hits && sc.n_images == I && sc.n_captions == T,
          "retrieval scores differ from brute force");
    CHECK(sc.t2i[0] > 0.05 && sc.t2i[0] < 0.95, "test features too easy or too hard (R@1 %.2f)",
          sc.t2i[0]);
    free(v), free(img), free(txt), free(img_of);
    cs_free(cs);
}

// ---- the loss against the reference multitask gradient ----

// Tolerance relative to the reference gradient's absmax: the reference is
// float32 torch (within 2.6e-6 of float64); observed C errors ~5e-6.
#define TOL_GRAD 1e-3

static void multitask_case(const StFile *f, McModel *m, const JsonValue *c, const float *img,
                           const int32_t *labels, int64_t N, const float *imgc, int64_t B,
                           double scale, double lambda) {
    McErr err;
    char key[160], nm[160];
    const char *name = json_get(c, "name")->str;
    int64_t M = 0;
    json_int(json_get(c, "M"), &M);
    CoopPromptCfg pc = {.n_ctx = (int)M, .form = coop_form_parse(json_get(c, "form")->str),
                        .pool = coop_pool_parse(json_get(c, "pool")->str),
                        .pos = coop_pos_parse(json_get(c, "pos")->str)};
    int W = m->text.cfg.width, T = m->text.cfg.context;
    snprintf(key, sizeof key, "input.%s.ctx", name);
    if (!st_find(f, key)) snprintf(key, sizeof key, "input.ctx%lld", (long long)M);
    float *ctx = fx_f32(f, key, NULL);
    int64_t nk = 0;
    snprintf(key, sizeof key, "input.%s.ids", name);
    int32_t *ids = fx_i32(f, key, &nk);
    snprintf(key, sizeof key, "input.%s.name_len", name);
    int32_t *nl32 = fx_i32(f, key, NULL);
    snprintf(key, sizeof key, "input.%s.cap_ids", name);
    int32_t *cids = fx_i32(f, key, NULL);
    snprintf(key, sizeof key, "input.%s.cap_len", name);
    int32_t *cl32 = fx_i32(f, key, NULL);
    snprintf(key, sizeof key, "ref.%s.grad", name);
    float *want = fx_f32(f, key, NULL);
    snprintf(key, sizeof key, "ref.%s.l_ret", name);
    float *l_ret = fx_f32(f, key, NULL);
    if (!ctx || !ids || !nl32 || !cids || !cl32 || !want || !l_ret) goto done;
    int64_t K = nk / T;
    int nl[64], cl[64];
    for (int64_t k = 0; k < K && k < 64; k++) nl[k] = nl32[k];
    for (int64_t b = 0; b < B && b < 64; b++) cl[b] = cl32[b];

    CoopPrompt p;
    CoopSeqs cls, caps;
    CHECK(coop_prompt_init_data(&p, &pc, W, 0, ctx, &err) == 0, "%s: %s", name, err.msg);
    CHECK(coop_seqs_build(&cls, &p, ids, nl, K, T, &err) == 0, "%s: %s", name, err.msg);
    CHECK(coop_seqs_build(&caps, &p, cids, cl, B, T, &err) == 0, "%s: %s", name, err.msg);
    int64_t P = p.ctx->n;
    float *g_ret = malloc(sizeof(float) * (size_t)P), *mix = malloc(sizeof(float) * (size_t)P);

    // d L_ret / d ctx: plain (all rows on one tape), then chunked.
    for (int chunk = 64; chunk >= 3; chunk -= 61) {
        CoopEngine *e = coop_engine_new(&m->text, chunk);
        tensor_zero_grad(p.ctx);
        double lr = coop_ret_loss(e, &p, &caps, imgc, scale, NULL);
        memcpy(g_ret, p.ctx->grad, sizeof(float) * (size_t)P);
        tensor_zero_grad(p.ctx);
        coop_loss_cls(e, &p, &cls, img, labels, N, scale, NULL);
        for (int64_t i = 0; i < P; i++)
            mix[i] = (float)((1 - lambda) * g_ret[i] + lambda * p.ctx->grad[i]);
        snprintf(nm, sizeof nm, "%s (%s) L_ret", name, e->plain ? "plain" : "chunked");
        printf("%-44s %.7f (ref %.7f)\n", nm, lr, l_ret[0]);
        CHECK(fabs(lr - l_ret[0]) <= 1e-5 * fabs(l_ret[0]), "%s: %.7f vs %.7f", nm, lr,
              l_ret[0]);
        snprintf(nm, sizeof nm, "%s (%s) mix of d L / d ctx", name, e->plain ? "plain" : "chunked");
        test_close_absmax(nm, mix, want, (size_t)P, TOL_GRAD);
        coop_engine_free(e);
    }
    free(g_ret), free(mix);
    coop_seqs_free(&cls), coop_seqs_free(&caps);
    coop_prompt_free(&p);
done:
    free(ctx), free(ids), free(nl32), free(cids), free(cl32), free(want), free(l_ret);
}

static void check_reference(void) {
    FxCoopRef r;
    if (fx_coop_ref_open(&r) == 0) {
        int n = 0;
        const JsonValue *root = json_root(r.cases);
        for (size_t i = 0; i < root->len; i++) {
            int64_t multi = 0;
            json_int(json_get(&root->items[i], "multitask"), &multi);
            if (!multi) continue;
            multitask_case(r.f, r.m, &root->items[i], r.img, r.labels, r.N, r.imgc, r.B,
                           r.scale, r.lambda);
            n++;
        }
        CHECK(n >= 2, "%s: %d multitask cases, expected the template and paper-legacy ones",
              r.path, n);
    }
    fx_coop_ref_close(&r);
}

// ---- a small full-vocabulary tower for tokenized text ----

// W 16, 2 layers, every id of the real tokenizer.  Attention and MLP
// weights are large enough (std 0.8 / 0.5) that captions get distinct
// features: with 1/sqrt(fan_in) weights every pooled EOT row is about its
// own embedding (pairwise cosines above 0.99).

enum { VV = 49408, VT = 77, VW = 16, VE = 12 };

static McModel *full_vocab_model(void) {
    char path[512];
    McErr err;
    tmp_name(path, sizeof path, "retvocab.safetensors");
    StWriter *w = st_writer_new();
    float *buf = malloc(sizeof(float) * (size_t)VV * VW);
    test_seed(31);
#define ADD(name, std, one, ...) do { \
        int64_t shp[] = {__VA_ARGS__}; int nd = (int)(sizeof shp / sizeof shp[0]); \
        int64_t n = 1; for (int d = 0; d < nd; d++) n *= shp[d]; \
        test_fill_normal(buf, (size_t)n, std); \
        for (int64_t i = 0; i < n; i++) buf[i] += (float)(one); \
        st_writer_add_f32(w, name, nd, shp, buf); } while (0)
    ADD("text.token_embedding.weight", 0.5, 0, VV, VW);
    ADD("text.positional_embedding", 0.1, 0, VT, VW);
    char key[128];
    for (int k = 0; k < 2; k++) {
#define BLK(suffix, std, one, ...) do { \
            snprintf(key, sizeof key, "text.transformer.resblocks.%d.%s", k, suffix); \
            ADD(key, std, one, __VA_ARGS__); } while (0)
        BLK("ln_1.weight", 0.1, 1, VW);
        BLK("ln_1.bias", 0.1, 0, VW);
        BLK("attn.in_proj_weight", 0.8, 0, 3 * VW, VW);
        BLK("attn.in_proj_bias", 0.05, 0, 3 * VW);
        BLK("attn.out_proj.weight", 0.5, 0, VW, VW);
        BLK("attn.out_proj.bias", 0.05, 0, VW);
        BLK("ln_2.weight", 0.1, 1, VW);
        BLK("ln_2.bias", 0.1, 0, VW);
        BLK("mlp.c_fc.weight", 0.5, 0, 4 * VW, VW);
        BLK("mlp.c_fc.bias", 0.05, 0, 4 * VW);
        BLK("mlp.c_proj.weight", 0.25, 0, VW, 4 * VW);
        BLK("mlp.c_proj.bias", 0.05, 0, VW);
#undef BLK
    }
    ADD("text.ln_final.weight", 0.1, 1, VW);
    ADD("text.ln_final.bias", 0.1, 0, VW);
    ADD("text.text_projection", 0.25, 0, VW, VE);
#undef ADD
    float ls = logf(100.0f);
    st_writer_add_f32(w, "logit_scale", 0, NULL, &ls);
    st_writer_meta(w, "text_heads", "2");
    st_writer_meta(w, "text_causal", "0");
    // NOTE: mobileclip/weights.c takes a file whose first byte is 0x80 for
    // a legacy pickle; this header's length happened to end in 0x80, so a
    // note pads it (a safetensors header length is arbitrary).
    st_writer_meta(w, "note", "test_retrieval full-vocabulary text tower");
    MC_CHECK(st_writer_save(w, path, &err) == 0, "%s", err.msg);
    st_writer_free(w);
    free(buf);
    McModel *m = mc_model_load(path, NULL, &err);
    CHECK(m != NULL, "full-vocabulary model: %s", m ? "" : err.msg);
    unlink(path);
    return m;
}

static const char *const words[] = {
    "dog", "cat", "bird", "horse", "child", "woman", "man", "bike", "boat", "car",
    "runs", "jumps", "sits", "plays", "swims", "rides", "on", "near", "in", "under",
    "grass", "water", "snow", "street", "beach", "park", "red", "blue", "green", "small"};

// Caption i: four words chosen from i (distinct captions).
static void make_caption(int i, char *buf, size_t len) {
    int n = (int)(sizeof words / sizeof *words);
    snprintf(buf, len, "a %s %s %s the %s", words[(i * 7) % n], words[(i * 3 + 10) % n],
             words[16 + i % 4], words[(i * 5 + 20) % n]);
}

typedef struct {
    double first, last;   // mean loss of the first and the last epoch
    int steps_per_epoch, n_first, n_last, epochs;
} LossLog;

static void on_step(void *ctx, const CoopRetStep *s) {
    LossLog *l = ctx;
    int ep = (s->step - 1) / l->steps_per_epoch;
    if (ep == 0) l->first += s->loss, l->n_first++;
    if (ep == l->epochs - 1) l->last += s->loss, l->n_last++;
}

static void check_text_and_training(void) {
    McModel *m = full_vocab_model();
    char vocab[1024];
    McErr err;
    if (!m) return;
    if (tok_find_vocab(vocab, sizeof vocab, &err) < 0) {
        CHECK(0, "BPE vocabulary not found: %s", err.msg);
        mc_model_free(m);
        return;
    }
    Tokenizer *tok = tok_load(vocab, &err);
    CHECK(tok != NULL, "%s", tok ? "" : err.msg);
    enum { NP = 24, E = VE };
    char capbuf[NP][96];
    const char *caps[NP];
    for (int i = 0; i < NP; i++) make_caption(i, capbuf[i], sizeof capbuf[i]), caps[i] = capbuf[i];

    // Plain features equal the text tower on tokenized ids.
    float *txt = malloc(sizeof(float) * NP * E);
    CHECK(coop_ret_text_features(&m->text, tok, NULL, NULL, caps, NP, 5, txt, &err) == 0,
          "plain text features: %s", err.msg);
    int32_t ids[TOK_CONTEXT];
    tok_encode(tok, caps[7], ids);
    Graph *g = ag_graph_new(1 << 20);
    g->grad_enabled = 0;
    Tensor *f = text_tower_forward(g, &m->text, ids, 1, NULL, &err);
    coop_normalize_rows(f->data, 1, E);
    test_close("plain caption 7 vs text tower", txt + 7 * E, f->data, E, 1e-6, 1e-5);
    ag_graph_free(g);

    // With a legacy-pooled paper prompt the group size is R: groups of 4
    // and 6 pool at other positions and give other features.
    CoopPrompt p;
    CoopPromptCfg pc = coop_prompt_paper(1);
    pc.n_ctx = 4;
    CHECK(coop_prompt_init(&p, &pc, VW, 0, 3, &err) == 0, "%s", err.msg);
    float *t4 = malloc(sizeof(float) * NP * E), *t6 = malloc(sizeof(float) * NP * E);
    coop_ret_text_features(&m->text, tok, &p, NULL, caps, NP, 4, t4, &err);
    coop_ret_text_features(&m->text, tok, &p, NULL, caps, NP, 6, t6, &err);
    double d = 0;
    for (int i = 0; i < NP * E; i++) d = fmax(d, fabs(t4[i] - t6[i]));
    CHECK(d > 1e-3, "legacy pooling: groups of 4 and 6 give the same features");
    p.cfg.pool = COOP_POOL_EOT;
    coop_ret_text_features(&m->text, tok, &p, NULL, caps, NP, 4, t4, &err);
    coop_ret_text_features(&m->text, tok, &p, NULL, caps, NP, 6, t6, &err);
    test_close("eot pooling: groups of 4 vs 6", t4, t6, NP * E, 1e-6, 1e-5);
    coop_prompt_free(&p);

    // Training data: each image's feature is its caption's feature under a
    // target prompt (other seed, larger context) plus noise, so training
    // from a fresh prompt has something to find.
    CoopPrompt target;
    pc = coop_prompt_paper(0);
    pc.n_ctx = 4;
    CHECK(coop_prompt_init(&target, &pc, VW, 0, 99, &err) == 0, "%s", err.msg);
    for (int64_t i = 0; i < target.ctx->n; i++) target.ctx->data[i] *= 25.0f;   // std 0.5
    float *imgs = malloc(sizeof(float) * NP * E);
    coop_ret_text_features(&m->text, tok, &target, NULL, caps, NP, 6, imgs, &err);
    coop_prompt_free(&target);
    test_seed(5);
    for (int i = 0; i < NP * E; i++) imgs[i] += (float)(0.1 * test_normal());
    coop_normalize_rows(imgs, NP, E);
    const char *names[3] = {"dog", "cat", "bird"};
    int32_t labels[NP];
    for (int i = 0; i < NP; i++) labels[i] = i % 3;

    for (int multi = 0; multi <= 1; multi++) {
        pc = coop_prompt_paper(0);
        pc.n_ctx = 4;
        CHECK(coop_prompt_init(&p, &pc, VW, 0, 11, &err) == 0, "%s", err.msg);
        CoopSeqs cls;
        CHECK(coop_seqs_from_names(&cls, &p, tok, names, 3, &err) == 0, "%s", err.msg);
        CoopRetData data = {.cap_img = imgs, .captions = caps, .n_pairs = NP,
                            .cls = multi ? &cls : NULL, .cls_img = imgs, .cls_labels = labels,
                            .n_cls = NP};
        CoopRetTrainCfg cfg = coop_ret_train_defaults();
        cfg.epochs = 8, cfg.batch = 6, cfg.cls_batch = 6, cfg.scale = 20;
        cfg.opt.lr = 5e-2, cfg.opt.weight_decay = 0;
        float *before = malloc(sizeof(float) * NP * E);
        coop_ret_text_features(&m->text, tok, &p, NULL, caps, NP, 6, before, &err);
        int hits0 = coop_ret_paper_hits(imgs, before, NP, E);
        CoopEngine *e = coop_engine_new(&m->text, 4);
        LossLog log = {.steps_per_epoch = NP / 6, .epochs = cfg.epochs};
        double t0 = mc_time();
        int rc = coop_ret_train(e, &p, tok, &data, &cfg, on_step, &log, &err);
        CHECK(rc == 0, "training: %s", rc ? err.msg : "");
        coop_ret_text_features(&m->text, tok, &p, e, caps, NP, 6, before, &err);
        int hits1 = coop_ret_paper_hits(imgs, before, NP, E);
        double l0 = log.first / log.n_first, l1 = log.last / log.n_last;
        printf("%-30s loss %.4f -> %.4f, R@1 on the pairs %d -> %d of %d (%.1f s)\n",
               multi ? "multitask training" : "retrieval training", l0, l1, hits0, hits1, NP,
               mc_time() - t0);
        // Observed: 1.98 -> 1.66 (retrieval) and 1.69 -> 1.33 (multitask)
        // over 8 epochs; require a 10 % fall.  R@1 over all 24 pairs is
        // printed only: the loss sees batches of 6.
        CHECK(l1 < 0.9 * l0, "%s: loss %.4f -> %.4f did not fall", multi ? "multitask" :
              "retrieval", l0, l1);
        coop_engine_free(e);
        free(before);
        coop_seqs_free(&cls);
        coop_prompt_free(&p);
    }
    free(txt), free(t4), free(t6), free(imgs);
    tok_free(tok);
    mc_model_free(m);
}

// ---- command line ----

static int run(const char *bin, const char *args, const char *out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>/dev/null", bin, args, out);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static double json_num(const JsonValue *o, const char *a, const char *b) {
    const JsonValue *v = json_get(o, a);
    if (v && b) v = json_get(v, b);
    return v && v->type == JSON_NUMBER ? v->number : NAN;
}

static void check_cli(void) {
    const char *bin = getenv("MCLIP_BIN");
    CHECK(bin != NULL, "MCLIP_BIN is not set: run through `make test`");
    if (!bin || !gen_dir[0]) return;
    char w[600], out[600], pr[600], svg[600], csv[600], png[600], json[600], args[4096];
    snprintf(w, sizeof w, "%s/model.safetensors", gen_dir);
    snprintf(out, sizeof out, "%s/out.txt", gen_dir);
    snprintf(pr, sizeof pr, "%s/prompt.safetensors", gen_dir);
    snprintf(svg, sizeof svg, "%s/amp.svg", gen_dir);
    snprintf(csv, sizeof csv, "%s/sim.csv", gen_dir);
    snprintf(png, sizeof png, "%s/sim.png", gen_dir);
    snprintf(json, sizeof json, "%s/flickr30k/dataset_flickr30k.json", gen_dir);
    const char *skip[] = {"ref.", NULL};
    int rc = detweights_expand("tests/fixtures/e2e_model.safetensors", w, skip);
    CHECK(rc == 0, "expanding tests/fixtures/e2e_model.safetensors (tests/reference/gen_e2e.py)");
    McErr err;
    McModel *m = rc ? NULL : cli_model_load(w, NULL, 1, &err);
    CHECK(m && m->image, "%s: %s", w, m ? "no image tower" : err.msg);
    char vocab[1024];
    Tokenizer *tok = tok_find_vocab(vocab, sizeof vocab, &err) ? NULL : tok_load(vocab, &err);
    if (!m || !m->image || !tok) goto done;

    // A prompt for this model: retrieval eval with it, on the test split.
    CoopPrompt p;
    CoopPromptCfg pc = coop_prompt_paper(1);
    pc.n_ctx = 4;
    CHECK(coop_prompt_init(&p, &pc, m->text.cfg.width, 0, 8, &err) == 0, "%s", err.msg);
    for (int64_t i = 0; i < p.ctx->n; i++) p.ctx->data[i] *= 10.0f;
    CoopPromptMeta meta = {.model_name = m->name};
    CHECK(coop_promptfile_save(pr, &p, &meta, &err) == 0, "%s", err.msg);
    snprintf(args, sizeof args, "retrieval eval --model %s --captions %s --split test --prompt "
             "%s --group 4", w, json, pr);
    CHECK(run(bin, args, out) == 0, "mclip %s failed", args);
    char *text = NULL;
    size_t len = 0;
    JsonDoc *doc = NULL;
    if (ds_read_file(out, 1 << 16, &text, &len, &err) == 0)
        doc = json_parse(text, len, NULL, &err);
    CHECK(doc != NULL, "retrieval eval output is not JSON: %s", text ? text : err.msg);

    // In process: the same split, features and scores.
    CaptionSet *cs = cs_load_karpathy(json, NULL, &err);
    if (doc && cs) {
        const char *paths[64], *caps[320], *first[64];
        int cap_img[320], I = 0, T = 0;
        for (int i = 0; i < cs->n_images && I < 64; i++) {
            if (cs->images[i].split != DS_TEST) continue;
            first[I] = cs->captions[cs->images[i].first];
            for (int c = 0; c < cs->images[i].n && T < 320; c++)
                caps[T] = cs->captions[cs->images[i].first + c], cap_img[T++] = I;
            paths[I++] = cs->images[i].path;
        }
        int64_t E = m->cfg.image.embed;
        float *img = malloc(sizeof(float) * I * E), *txt = malloc(sizeof(float) * T * E);
        float *fst = malloc(sizeof(float) * I * E);
        DsPrepConfig prep;
        cli_prep_config(&prep, m, DS_PREP_PAPER);
        CoopRetScores sc;
        int ok = coop_ret_image_features(m->image, &prep, NULL, paths, I, 16, img, &err) == 0 &&
                 coop_ret_text_features(&m->text, tok, &p, NULL, caps, T, 4, txt, &err) == 0 &&
                 coop_ret_text_features(&m->text, tok, &p, NULL, first, I, 4, fst, &err) == 0;
        CHECK(ok, "in-process features: %s", err.msg);
        if (ok) {
            coop_ret_scores(img, I, txt, T, E, cap_img, fst, &sc);
            const JsonValue *r = json_root(doc);
            double d = fabs(json_num(r, "t2i", "R@1") - sc.t2i[0]) +
                       fabs(json_num(r, "t2i", "R@10") - sc.t2i[2]) +
                       fabs(json_num(r, "i2t", "R@5") - sc.i2t[1]) +
                       fabs(json_num(r, "paper_hits", NULL) - sc.paper_hits);
            printf("mclip retrieval eval: %d images, %d captions, t2i R@1 %.4f, paper %d/%d "
                   "(in process %.4f, %d)\n", I, T, json_num(r, "t2i", "R@1"), 
                   (int)json_num(r, "paper_hits", NULL), I, sc.t2i[0], sc.paper_hits);
            CHECK(d < 1e-5 && json_num(r, "images", NULL) == I &&
                  json_num(r, "captions", NULL) == T, "retrieval eval differs from in-process");
        }
        free(img), free(txt), free(fst);
    }
    cs_free(cs);
    json_free(doc);
    free(text);

    // prompt nearest / similarity / amplitude.
    snprintf(args, sizeof args, "prompt nearest --model %s --prompt %s --k 3", w, pr);
    CHECK(run(bin, args, out) == 0, "mclip %s failed", args);
    text = NULL;
    ds_read_file(out, 1 << 16, &text, &len, &err);
    CHECK(text && strstr(text, "ctx[ 3]") && strstr(text, "by l2"), "nearest output: %s",
          text ? text : "");
    free(text);
    snprintf(args, sizeof args, "prompt similarity --model %s --prompt %s --text 'a dog' "
             "'a photo of a' --csv %s --png %s", w, pr, csv, png);
    CHECK(run(bin, args, out) == 0, "mclip %s failed", args);
    snprintf(args, sizeof args, "prompt amplitude --prompt %s --out %s", pr, svg);
    CHECK(run(bin, args, out) == 0, "mclip %s failed", args);
    CHECK(ds_is_file(csv) && ds_is_file(png) && ds_is_file(svg), "prompt files not written");
    snprintf(args, sizeof args, "prompt amplitude --prompt %s", pr);
    CHECK(run(bin, args, out) == 2, "amplitude without --out: not a usage error");
    coop_prompt_free(&p);
done:
    tok_free(tok);
    mc_model_free(m);
}

int main(void) {
    check_metrics();
    check_reference();
    check_text_and_training();
    check_cli();
    if (gen_dir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", gen_dir);
        CHECK(system(cmd) == 0, "cleanup of %s", gen_dir);
    }
    return test_finish("test_retrieval");
}
