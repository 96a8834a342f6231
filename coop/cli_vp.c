// cli_vp.c - `mclip vp`: the padding visual prompt from the command line.
//
//   mclip vp init    --model FILE --out VP.safetensors [--border B] [--std X] [--seed N]
//   mclip vp convert --in PAPER.pt --out VP.safetensors
//   mclip vp grad    --model FILE --prompt VP --classes NAME... --image PATH...
//                    --labels N... --out OUT.safetensors
//   mclip vp train   --model FILE --data PATH [--dataset NAME] [--shots K]
//                    --out VP.safetensors [options]        results JSON on stdout
//   mclip vp eval    --model FILE --prompt VP --data PATH [--split test]
//
// Classes are scored against fixed text embeddings: a template ("a photo of
// a {}." by default; "{}" is replaced by the class name) through the text
// tower, or a learned text prompt (--text-prompt FILE, a CoOp prompt file);
// vp train --train-text also trains that text prompt (its gradient with
// the image features fixed, the visual prompt's with the text features
// fixed: together the gradient of the joint loss).  Logits use the paper's
// fixed scale 100 unless --scale model (exp(logit_scale)) or --scale X.
//
// vp train is a compact loop (the CoOp loop trains on cached features,
// which a visual prompt cannot use): each epoch a fresh shuffle of the
// training images (coop/rng.h, --seed), batches decoded and preprocessed
// as the model's eval transform (no augmentation, as the paper), one
// AdamW step (coop/optim.h; the paper: lr 3e-4, weight decay 0.01) per
// batch, then accuracy on the evaluation split with and without the prompt.
//
// Exit status: 0 ok, 1 a runtime error (file, model, data), 2 a usage error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/dataset.h"
#include "../datasets/preprocess.h"
#include "../datasets/split.h"
#include "../mobileclip/cli_common.h"
#include "../mobileclip/model.h"
#include "../mobileclip/safetensors.h"
#include "cli.h"
#include "cli_shared.h"
#include "optim.h"
#include "promptfile.h"
#include "randmodel.h"
#include "retrieval.h"
#include "rng.h"
#include "vprompt.h"

// ---- shared pieces ----

static McModel *open_model(const char *path, int fuse, int *random, McErr *err) {
    *random = coop_randmodel_is_random(path);
    McModel *m = cli_model_load(path, NULL, fuse, err);
    if (m && !m->image) {
        mc_err(err, "%s has no image tower (a text-only model)", path);
        mc_model_free(m);
        return NULL;
    }
    if (m)
        fprintf(stderr, "model %s (%s)%s, image %dx%d, %s form\n", m->name, path,
                *random ? " RANDOM WEIGHTS" : "", m->cfg.image.image_size,
                m->cfg.image.image_size, fuse ? "fused" : "training");
    return m;
}

// The eval transform in the paper's order (RGB conversion first, as its
// data loaders do; the same pixels as open_clip's for RGB and gray files).
static void prep_of(const McModel *m, DsPrepConfig *pc) {
    cli_prep_config(pc, m, DS_PREP_PAPER);
}

// The logit scale: "model" = exp(logit_scale), a number, or the paper's 100.
static int parse_scale(const char *s, const McModel *m, double *scale, McErr *err) {
    if (!s) {
        *scale = COOP_PAPER_SCALE;
        return 0;
    }
    if (!strcmp(s, "model")) {
        if (!m->logit_scale) return mc_err(err, "--scale model: the checkpoint has no logit_scale");
        *scale = exp((double)m->logit_scale->data[0]);
        return 0;
    }
    char *end;
    *scale = strtod(s, &end);
    if (*end || !(*scale > 0))
        return mc_err(err, "--scale %s: expected 'model' or a number > 0", s);
    return 0;
}

// Class names as a text prompt's rows want them (CoOp: '_' -> ' ' in the
// template form; the paper form keeps names verbatim).
static char **prompt_names(char *const *names, int K, const CoopPrompt *p) {
    char **use = mc_calloc((size_t)K + 1, sizeof *use);
    for (int k = 0; k < K; k++) {
        size_t n = strlen(names[k]);
        use[k] = mc_malloc(n + 1);
        memcpy(use[k], names[k], n + 1);
        if (p->cfg.form == COOP_FORM_TEMPLATE)
            for (char *c = use[k]; *c; c++)
                if (*c == '_') *c = ' ';
    }
    return use;
}

static void names_free(char **v, int n) {
    for (int i = 0; v && i < n; i++) mc_free(v[i]);
    mc_free(v);
}

// Normalised class embeddings txtn [K, E]: the template through the text
// tower, or the text prompt (one group of K rows).
static int class_text(McModel *m, Tokenizer *tok, char *const *names, int K, const char *tmpl,
                      CoopPrompt *tp, float *txtn, McErr *err) {
    char **texts;
    if (tp) {
        texts = prompt_names(names, K, tp);
    } else {
        // Replace the first "{}" of the template by the name.
        const char *hole = strstr(tmpl, "{}");
        if (!hole) return mc_err(err, "--template '%s' has no {} for the class name", tmpl);
        texts = mc_calloc((size_t)K + 1, sizeof *texts);
        for (int k = 0; k < K; k++) {
            size_t a = (size_t)(hole - tmpl), n = strlen(names[k]), b = strlen(hole + 2);
            texts[k] = mc_malloc(a + n + b + 1);
            memcpy(texts[k], tmpl, a);
            memcpy(texts[k] + a, names[k], n);
            memcpy(texts[k] + a + n, hole + 2, b + 1);
        }
    }
    int rc = coop_ret_text_features(&m->text, tok, tp, NULL, (const char *const *)texts, K, K,
                                    txtn, err);
    names_free(texts, K);
    return rc;
}

// ---- vp init / convert ----

static int cmd_init(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    int border = -1, no_fuse = 0;
    double std = COOP_VP_INIT_STD;
    uint64_t seed = 1;
    CliOpt opts[] = {{"--model", CLI_OPT_STR, &model}, {"--out", CLI_OPT_STR, &out},
                     {"--border", CLI_OPT_INT, &border}, {"--std", CLI_OPT_DBL, &std},
                     {"--seed", CLI_OPT_U64, &seed}, {"--no-fuse", CLI_OPT_FLAG, &no_fuse}};
    int r = cli_parse_opts(opts, 6, argc, argv, "vp init");
    if (r == 1 || r == 2 || !model || !out) {
        fprintf(r == 1 ? stdout : stderr,
                "usage: mclip vp init --model FILE --out VP.safetensors [--border B] [--std X]\n"
                "                     [--seed N]\n"
                "A visual prompt N(0, std^2) on a border of width B (default: 30 at 224 px,\n"
                "32 at 256 px; std 0.02 as the paper).\n");
        return r == 1 ? 0 : 2;
    }
    McErr err;
    int random;
    McModel *m = open_model(model, 1, &random, &err);
    if (!m) return fprintf(stderr, "mclip vp init: %s\n", err.msg), 1;
    int S = m->cfg.image.image_size;
    if (border < 0) border = S == 224 ? 30 : 32;
    CoopVPrompt vp;
    CoopVPromptMeta meta = {.model_name = m->name, .random_weights = random, .init_std = std,
                            .seed = seed};
    int rc = coop_vp_init(&vp, S, border, std, seed, &err) || coop_vp_save(out, &vp, &meta, &err);
    if (rc) fprintf(stderr, "mclip vp init: %s\n", err.msg);
    else printf("{\"command\": \"vp init\", \"image_size\": %d, \"border\": %d, \"params\": %lld, "
                "\"out\": \"%s\"}\n", S, border, (long long)vp.theta->n, out);
    coop_vp_free(&vp);
    mc_model_free(m);
    return rc ? 1 : 0;
}

static int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    CliOpt opts[] = {{"--in", CLI_OPT_STR, &in}, {"--out", CLI_OPT_STR, &out}};
    int r = cli_parse_opts(opts, 2, argc, argv, "vp convert");
    if (r == 1 || r == 2 || !in || !out) {
        fprintf(r == 1 ? stdout : stderr,
                "usage: mclip vp convert --in PAPER.pt --out VP.safetensors\n"
                "Converts the paper's full [3, S, S] visual prompt to the border-only file.\n");
        return r == 1 ? 0 : 2;
    }
    McErr err;
    CoopVPromptFile f;
    CoopVPrompt vp = {0};
    if (coop_vp_load(in, &f, &err)) return fprintf(stderr, "mclip vp convert: %s\n", err.msg), 1;
    const char *k[1] = {"coop_version"}, *v[1] = {f.coop_version};
    CoopVPromptMeta meta = {.model_name = f.model_name, .init_std = NAN, .source = in,
                            .extra_keys = k, .extra_values = v, .n_extra = f.coop_version[0] != 0};
    int rc = coop_vp_file_prompt(&f, &vp, &err) || coop_vp_save(out, &vp, &meta, &err);
    if (rc) fprintf(stderr, "mclip vp convert: %s\n", err.msg);
    else {
        if (f.dropped)
            fprintf(stderr, "note: %lld non-zero values inside the border's hole were dropped "
                    "(the paper's forward multiplies them by 0)\n", (long long)f.dropped);
        printf("{\"command\": \"vp convert\", \"model\": \"%s\", \"image_size\": %d, "
               "\"border\": %d, \"params\": %lld, \"dropped\": %lld, \"out\": \"%s\"}\n",
               f.model_name, f.size, f.border, (long long)vp.theta->n, (long long)f.dropped, out);
    }
    coop_vp_free(&vp);
    coop_vp_file_free(&f);
    return rc ? 1 : 0;
}

// A visual prompt file made for this model.
static int load_vprompt(const char *path, const McModel *m, CoopVPrompt *vp, McErr *err) {
    CoopVPromptFile f;
    if (coop_vp_load(path, &f, err)) return -1;
    if (f.dropped)
        fprintf(stderr, "note: %s: %lld non-zero values inside the border's hole dropped\n",
                path, (long long)f.dropped);
    int rc = coop_vp_file_check(&f, m->name, m->cfg.image.image_size, err) ||
             coop_vp_file_prompt(&f, vp, err) ? -1 : 0;
    coop_vp_file_free(&f);
    return rc;
}

// ---- vp grad ----

static void grad_usage(FILE *f) {
    fprintf(f,
        "usage: mclip vp grad --model FILE --prompt VP --classes NAME... --image PATH...\n"
        "                     --labels N... --out OUT.safetensors [--template T]\n"
        "                     [--text-prompt FILE] [--scale model|X] [--no-fuse]\n"
        "Writes loss [], logits [N, K], grad_prompt [3, S, S] (d loss / d prompt, zero in\n"
        "the hole), grad.pad_up/pad_down/pad_left/pad_right (the stored pieces),\n"
        "image_features [N, E] and text_features [K, E] (normalised) for one batch.\n");
}

static int cmd_grad(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *out = NULL, *tmpl = "a photo of a {}.";
    const char *text_prompt = NULL, *scale_s = NULL;
    int no_fuse = 0;
    CliArgList classes = {0}, images = {0}, labels_s = {0};
    CliOpt opts[] = {{"--model", CLI_OPT_STR, &model}, {"--prompt", CLI_OPT_STR, &prompt},
                     {"--out", CLI_OPT_STR, &out}, {"--template", CLI_OPT_STR, &tmpl},
                     {"--text-prompt", CLI_OPT_STR, &text_prompt},
                     {"--scale", CLI_OPT_STR, &scale_s}, {"--no-fuse", CLI_OPT_FLAG, &no_fuse},
                     {"--classes", CLI_OPT_LIST, &classes}, {"--image", CLI_OPT_LIST, &images},
                     {"--labels", CLI_OPT_LIST, &labels_s}};
    int r = cli_parse_opts(opts, 10, argc, argv, "vp grad");
    if (r == 1) return grad_usage(stdout), 0;
    if (r || !model || !prompt || !out || !classes.n || !images.n || images.n != labels_s.n) {
        if (!r) fprintf(stderr, "mclip vp grad: need --model, --prompt, --out, --classes and "
                        "as many --labels as --image paths\n");
        grad_usage(stderr);
        return 2;
    }
    int N = images.n, K = classes.n;
    int32_t *labels = mc_malloc((size_t)N * sizeof *labels);
    for (int i = 0; i < N; i++) {
        char *end;
        long v = strtol(labels_s.v[i], &end, 10);
        if (*end || v < 0 || v >= K) {
            fprintf(stderr, "mclip vp grad: label '%s' is not in 0..%d\n", labels_s.v[i], K - 1);
            mc_free(labels);
            return 2;
        }
        labels[i] = (int32_t)v;
    }
    McErr err;
    int rc = 1, random = 0;
    Tokenizer *tok = NULL;
    CoopVPrompt vp = {0};
    CoopPrompt tp = {0};
    float *x = NULL, *txtn = NULL, *logits = NULL, *imgn = NULL, *full = NULL;
    Graph *g = NULL;
    McModel *m = open_model(model, !no_fuse, &random, &err);
    if (!m || load_vprompt(prompt, m, &vp, &err)) goto fail;
    if (text_prompt && cli_load_text_prompt(text_prompt, m, &tp, &err)) goto fail;
    double scale;
    if (parse_scale(scale_s, m, &scale, &err)) goto fail;
    tok = cli_tokenizer_load(&err);
    int64_t E = m->cfg.image.embed, S = m->cfg.image.image_size;
    txtn = mc_malloc((size_t)(K * E) * sizeof *txtn);
    if (!tok || class_text(m, tok, classes.v, K, tmpl, text_prompt ? &tp : NULL, txtn, &err))
        goto fail;

    // The batch, preprocessed as the model's eval transform.
    DsPrepConfig pc;
    prep_of(m, &pc);
    x = mc_malloc((size_t)(N * 3 * S * S) * sizeof *x);
    for (int i = 0; i < N; i++)
        if (ds_prep_file(x + (int64_t)i * 3 * S * S, images.v[i], &pc, &err)) goto fail;

    // Loss, logits and d loss / d prompt.
    g = ag_graph_new((size_t)1 << 26);
    logits = mc_malloc((size_t)(N * K) * sizeof *logits);
    imgn = mc_malloc((size_t)(N * E) * sizeof *imgn);
    tensor_zero_grad(vp.theta);
    double loss = coop_vp_loss(g, m->image, &vp, x, N, txtn, K, labels, scale, logits, imgn,
                               NULL);
    full = mc_malloc((size_t)(3 * S * S) * sizeof *full);
    coop_vp_to_full((int)S, vp.border, vp.theta->grad, full);
    StWriter *w = st_writer_new();
    float lf = (float)loss;
    st_writer_add_f32(w, "loss", 0, NULL, &lf);
    st_writer_add_f32(w, "logits", MC_DIMS(N, K), logits);
    st_writer_add_f32(w, "grad_prompt", MC_DIMS(3, S, S), full);
    const char *pieces[4] = {"grad.pad_up", "grad.pad_down", "grad.pad_left", "grad.pad_right"};
    int b = vp.border;
    int64_t off = 0;
    for (int p = 0; p < 4; p++) {
        int64_t h = p < 2 ? b : S - 2 * b, wd = p < 2 ? S : b;
        st_writer_add_f32(w, pieces[p], MC_DIMS(3, h, wd), vp.theta->grad + off);
        off += 3 * h * wd;
    }
    st_writer_add_f32(w, "image_features", MC_DIMS(N, E), imgn);
    st_writer_add_f32(w, "text_features", MC_DIMS(K, E), txtn);
    char v[64];
    snprintf(v, sizeof v, "%.17g", scale);
    st_writer_meta(w, "logit_scale", v);
    st_writer_meta(w, "model_name", m->name);
    st_writer_meta(w, "random_weights", random ? "1" : "0");
    snprintf(v, sizeof v, "%d", b);
    st_writer_meta(w, "border_size", v);
    st_writer_meta(w, "text", text_prompt ? text_prompt : tmpl);
    int wr = st_writer_save(w, out, &err);
    st_writer_free(w);
    if (wr) goto fail;
    printf("{\"command\": \"vp grad\", \"loss\": %.9g, \"n\": %d, \"classes\": %d, "
           "\"border\": %d, \"out\": \"%s\"}\n", loss, N, K, b, out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip vp grad: %s\n", err.msg);
done:
    ag_graph_free(g);
    mc_free(labels), mc_free(x), mc_free(txtn), mc_free(logits), mc_free(imgn), mc_free(full);
    coop_vp_free(&vp);
    coop_prompt_free(&tp);
    tok_free(tok);
    mc_model_free(m);
    return rc;
}

// ---- data for train / eval ----

typedef struct {
    Dataset *ds;
    int64_t *train, n_train;   // item indices
    int64_t *eval, n_eval;
} VpData;

static int load_data(VpData *d, const char *path, const char *dataset, const char *shots,
                     const char *eval_split, uint64_t seed, McErr *err) {
    memset(d, 0, sizeof *d);
    DsOptions opt = {.dataset = dataset};
    d->ds = ds_open(path, &opt, err);
    if (!d->ds) return -1;
    const char *rule = NULL;
    if (!ds_count_split(d->ds, DS_VAL) && ds_split_paper(d->ds, seed, &rule, err)) return -1;
    if (rule) fprintf(stderr, "splits: %s (paper rule)\n", rule);
    int k = DS_K_ALL, which = ds_split_parse(eval_split);
    if (shots && ds_parse_k(shots, &k, err)) return -1;
    if (which < 0) return mc_err(err, "--split %s: expected train, val or test", eval_split);
    DsFewShot fs;
    if (ds_fewshot(d->ds, DS_SAMPLER_PAPER, k, seed, &fs, err)) return -1;
    d->train = fs.train, d->n_train = fs.n_train;
    mc_free(fs.val);
    d->eval = mc_malloc((size_t)(d->ds->n_items + 1) * sizeof *d->eval);
    for (int64_t i = 0; i < d->ds->n_items; i++)
        if (d->ds->items[i].split == which) d->eval[d->n_eval++] = i;
    return 0;
}

static void data_free(VpData *d) {
    mc_free(d->train), mc_free(d->eval);
    ds_free(d->ds);
}

// Preprocess items idx[0..n) into x; -1 naming the first bad file.
static int load_batch(const VpData *d, const int64_t *idx, int n, const DsPrepConfig *pc,
                      float *x, int32_t *labels, McErr *err) {
    const char **paths = mc_malloc((size_t)n * sizeof *paths);
    int *status = mc_malloc((size_t)n * sizeof *status);
    McErr *errs = mc_malloc((size_t)n * sizeof *errs);
    for (int i = 0; i < n; i++) {
        paths[i] = d->ds->items[idx[i]].path;
        labels[i] = d->ds->items[idx[i]].label;
    }
    int rc = 0;
    if (ds_prep_batch(x, status, errs, paths, n, pc) > 0)
        for (int i = 0; i < n && !rc; i++)
            if (status[i]) rc = mc_err(err, "%s", errs[i].msg);
    mc_free(paths), mc_free(status), mc_free(errs);
    return rc;
}

// Accuracy over idx with the prompt (vp may be NULL).
static int accuracy(const VpData *d, const int64_t *idx, int64_t n, McModel *m,
                    const CoopVPrompt *vp, const float *txtn, int K, int batch, double *acc,
                    McErr *err) {
    int S = m->cfg.image.image_size;
    int64_t E = m->cfg.image.embed;
    DsPrepConfig pc;
    prep_of(m, &pc);
    float *x = mc_malloc((size_t)batch * 3 * S * S * sizeof *x);
    float *f = mc_malloc((size_t)(batch * E) * sizeof *f);
    int32_t *lab = mc_malloc((size_t)batch * sizeof *lab);
    Graph *g = ag_graph_new((size_t)1 << 24);
    int64_t hits = 0;
    int rc = 0;
    for (int64_t i0 = 0; i0 < n && !rc; i0 += batch) {
        int nb = (int)(n - i0 < batch ? n - i0 : batch);
        if ((rc = load_batch(d, idx + i0, nb, &pc, x, lab, err))) break;
        coop_vp_features(g, m->image, vp, x, nb, nb, f);
        for (int i = 0; i < nb; i++) {
            int best = 0;
            double bs = -INFINITY;
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int64_t j = 0; j < E; j++) s += (double)f[i * E + j] * txtn[k * E + j];
                if (s > bs) bs = s, best = k;
            }
            hits += best == lab[i];
        }
    }
    *acc = n ? (double)hits / n : 0;
    ag_graph_free(g);
    mc_free(x), mc_free(f), mc_free(lab);
    return rc;
}

// ---- vp train ----

static void train_usage(FILE *f) {
    fprintf(f,
        "usage: mclip vp train --model FILE --data PATH --out VP.safetensors\n"
        "          [--dataset NAME] [--shots K|all] [--split val|test] [--epochs 30]\n"
        "          [--batch 64] [--lr 3e-4] [--wd 0.01] [--border B] [--std 0.02]\n"
        "          [--init VP] [--seed 1] [--template T] [--text-prompt FILE]\n"
        "          [--train-text --text-out FILE] [--scale model|X] [--steps N] [--no-fuse]\n"
        "Trains a padding visual prompt through the frozen image tower; prints the\n"
        "evaluation accuracy with and without it (JSON on stdout).\n");
}

typedef struct {
    const char *model, *data, *dataset, *shots, *split, *out, *init, *tmpl, *text_prompt;
    const char *text_out, *scale;
    int epochs, batch, border, train_text, no_fuse, eval_batch;
    int64_t steps;
    double lr, wd, std;
    uint64_t seed;
} TrainArgs;

static int cmd_train(int argc, char **argv) {
    TrainArgs a = {.split = "val", .tmpl = "a photo of a {}.", .epochs = 30, .batch = 64,
                   .border = -1, .eval_batch = 32, .lr = -1, .wd = -1, .std = COOP_VP_INIT_STD,
                   .seed = 1};
    int steps = 0;
    CliOpt opts[] = {
        {"--model", CLI_OPT_STR, &a.model}, {"--data", CLI_OPT_STR, &a.data},
        {"--dataset", CLI_OPT_STR, &a.dataset}, {"--shots", CLI_OPT_STR, &a.shots},
        {"--split", CLI_OPT_STR, &a.split}, {"--out", CLI_OPT_STR, &a.out},
        {"--init", CLI_OPT_STR, &a.init}, {"--template", CLI_OPT_STR, &a.tmpl},
        {"--text-prompt", CLI_OPT_STR, &a.text_prompt}, {"--text-out", CLI_OPT_STR, &a.text_out},
        {"--scale", CLI_OPT_STR, &a.scale}, {"--epochs", CLI_OPT_INT, &a.epochs},
        {"--batch", CLI_OPT_INT, &a.batch}, {"--border", CLI_OPT_INT, &a.border},
        {"--train-text", CLI_OPT_FLAG, &a.train_text}, {"--no-fuse", CLI_OPT_FLAG, &a.no_fuse},
        {"--steps", CLI_OPT_INT, &steps}, {"--lr", CLI_OPT_DBL, &a.lr},
        {"--wd", CLI_OPT_DBL, &a.wd}, {"--std", CLI_OPT_DBL, &a.std},
        {"--seed", CLI_OPT_U64, &a.seed}};
    int r = cli_parse_opts(opts, (int)(sizeof opts / sizeof *opts), argc, argv, "vp train");
    if (r == 1) return train_usage(stdout), 0;
    if (r || !a.model || !a.data || !a.out || a.epochs < 1 || a.batch < 1 ||
        (a.train_text && (!a.text_prompt || !a.text_out))) {
        if (!r) fprintf(stderr, "mclip vp train: need --model, --data, --out (and --text-prompt "
                        "with --text-out for --train-text); epochs and batch >= 1\n");
        train_usage(stderr);
        return 2;
    }
    McErr err;
    int rc = 1, random = 0;
    VpData d = {0};
    Tokenizer *tok = NULL;
    CoopVPrompt vp = {0};
    CoopPrompt tp = {0};
    CoopSeqs cls = {0};
    CoopEngine *e = NULL;
    CoopOptim opt = {0}, topt = {0};
    char **tnames = NULL;
    float *x = NULL, *txtn = NULL, *imgn = NULL;
    int32_t *lab = NULL;
    int64_t *order = NULL;
    Graph *g = NULL;
    McModel *m = open_model(a.model, !a.no_fuse, &random, &err);
    if (!m || load_data(&d, a.data, a.dataset, a.shots, a.split, a.seed, &err)) goto fail;
    int K = d.ds->n_classes, S = m->cfg.image.image_size;
    int64_t E = m->cfg.image.embed;
    if (d.n_train < 1) {
        mc_err(&err, "%s: no training images", a.data);
        goto fail;
    }

    // Prompts: the visual one (new or --init), the optional text one.
    int b = a.border >= 0 ? a.border : S == 224 ? 30 : 32;
    if (a.init ? load_vprompt(a.init, m, &vp, &err) : coop_vp_init(&vp, S, b, a.std, a.seed, &err))
        goto fail;
    if (a.text_prompt && cli_load_text_prompt(a.text_prompt, m, &tp, &err)) goto fail;
    double scale;
    if (parse_scale(a.scale, m, &scale, &err)) goto fail;
    tok = cli_tokenizer_load(&err);
    txtn = mc_malloc((size_t)(K * E) * sizeof *txtn);
    if (!tok || class_text(m, tok, d.ds->classes, K, a.tmpl, a.text_prompt ? &tp : NULL, txtn,
                           &err))
        goto fail;
    if (a.train_text) {
        tnames = prompt_names(d.ds->classes, K, &tp);
        if (coop_seqs_from_names(&cls, &tp, tok, (const char *const *)tnames, K, &err))
            goto fail;
        e = coop_engine_new(&m->text, 0);
    }

    // Optimizers: AdamW as the paper unless told otherwise.
    CoopOptCfg oc = coop_opt_paper();
    if (a.lr > 0) oc.lr = a.lr;
    if (a.wd >= 0) oc.weight_decay = a.wd;
    coop_optim_init(&opt, &oc, vp.theta->n);
    if (a.train_text) coop_optim_init(&topt, &oc, tp.ctx->n);
    fprintf(stderr, "vp train: %d classes, %lld train / %lld %s images, border %d (%lld "
            "params), batch %d, %d epochs, AdamW lr %.2e wd %.2e, scale %g, threads %d%s\n",
            K, (long long)d.n_train, (long long)d.n_eval, a.split, vp.border,
            (long long)vp.theta->n, a.batch, a.epochs, oc.lr, oc.weight_decay, scale,
            mc_threads(), a.train_text ? ", text prompt trained too" : "");

    // The loop: shuffle, batch, loss and gradient, step.
    DsPrepConfig pc;
    prep_of(m, &pc);
    int B = a.batch;
    x = mc_malloc((size_t)B * 3 * S * S * sizeof *x);
    lab = mc_malloc((size_t)B * sizeof *lab);
    imgn = mc_malloc((size_t)(B * E) * sizeof *imgn);
    order = mc_malloc((size_t)d.n_train * sizeof *order);
    memcpy(order, d.train, (size_t)d.n_train * sizeof *order);
    g = ag_graph_new((size_t)1 << 26);
    CoopRng rng;
    coop_rng_seed(&rng, a.seed);
    int64_t per_epoch = (d.n_train + B - 1) / B, total = per_epoch * a.epochs, step = 0;
    if (steps > 0 && steps < total) total = steps;
    double t_start = mc_time(), last_loss = 0;
    for (int ep = 0; ep < a.epochs && step < total; ep++) {
        coop_rng_shuffle(&rng, order, d.n_train);
        for (int64_t i0 = 0; i0 < d.n_train && step < total; i0 += B) {
            double t0 = mc_time();
            int nb = (int)(d.n_train - i0 < B ? d.n_train - i0 : B);
            if (load_batch(&d, order + i0, nb, &pc, x, lab, &err)) goto fail;
            tensor_zero_grad(vp.theta);
            last_loss = coop_vp_loss(g, m->image, &vp, x, nb, txtn, K, lab, scale, NULL, imgn,
                                     NULL);
            if (a.train_text) {
                // The text prompt's gradient with these image features fixed.
                tensor_zero_grad(tp.ctx);
                coop_loss_cls(e, &tp, &cls, imgn, lab, nb, scale, NULL);
                coop_optim_step(&topt, tp.ctx->data, tp.ctx->grad, oc.lr);
            }
            coop_optim_step(&opt, vp.theta->data, vp.theta->grad, oc.lr);
            if (a.train_text) {
                coop_text_features(e, &tp, &cls, txtn);
                coop_normalize_rows(txtn, K, E);
            }
            step++;
            double dt = mc_time() - t0;
            fprintf(stderr, "step %5lld/%lld | loss %.4f | lr %.2e | %.1f ms | %.1f img/s\n",
                    (long long)step, (long long)total, last_loss, oc.lr, 1e3 * dt, nb / dt);
        }
    }
    double train_s = mc_time() - t_start;

    // Save, then evaluate with and without the prompt.
    char v[4][64];
    snprintf(v[0], sizeof v[0], "%lld", (long long)step);
    snprintf(v[1], sizeof v[1], "%d", a.batch);
    snprintf(v[2], sizeof v[2], "%.6g", oc.lr);
    snprintf(v[3], sizeof v[3], "%.6g", oc.weight_decay);
    const char *keys[5] = {"steps", "batch", "lr", "weight_decay", "dataset"};
    const char *vals[5] = {v[0], v[1], v[2], v[3], a.data};
    CoopVPromptMeta meta = {.model_name = m->name, .random_weights = random,
                            .init_std = a.init ? NAN : a.std, .seed = a.seed,
                            .extra_keys = keys, .extra_values = vals, .n_extra = 5};
    if (coop_vp_save(a.out, &vp, &meta, &err)) goto fail;
    if (a.train_text) {
        CoopPromptMeta tm = {.model_name = m->name, .random_weights = random,
                             .classnames = tnames, .n_names = K};
        if (coop_promptfile_save(a.text_out, &tp, &tm, &err)) goto fail;
    }
    double acc0 = 0, acc1 = 0;
    if (accuracy(&d, d.eval, d.n_eval, m, NULL, txtn, K, a.eval_batch, &acc0, &err) ||
        accuracy(&d, d.eval, d.n_eval, m, &vp, txtn, K, a.eval_batch, &acc1, &err))
        goto fail;
    printf("{\"command\": \"vp train\", \"model\": \"%s\", \"random_weights\": %s, "
           "\"classes\": %d, \"train_images\": %lld, \"eval_split\": \"%s\", "
           "\"eval_images\": %lld, \"border\": %d, \"steps\": %lld, \"last_loss\": %.6f, "
           "\"accuracy_without_prompt\": %.6f, \"accuracy_with_prompt\": %.6f, "
           "\"train_seconds\": %.1f, \"out\": \"%s\"}\n", m->name, random ? "true" : "false",
           K, (long long)d.n_train, a.split, (long long)d.n_eval, vp.border, (long long)step,
           last_loss, acc0, acc1, train_s, a.out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip vp train: %s\n", err.msg);
done:
    ag_graph_free(g);
    mc_free(x), mc_free(txtn), mc_free(imgn), mc_free(lab), mc_free(order);
    coop_optim_free(&opt);
    if (a.train_text) coop_optim_free(&topt);
    coop_engine_free(e);
    coop_seqs_free(&cls);
    names_free(tnames, d.ds ? d.ds->n_classes : 0);
    coop_vp_free(&vp);
    coop_prompt_free(&tp);
    tok_free(tok);
    data_free(&d);
    mc_model_free(m);
    return rc;
}

// ---- vp eval ----

static int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *data = NULL, *dataset = NULL, *split = "test";
    const char *tmpl = "a photo of a {}.", *text_prompt = NULL;
    int batch = 32, no_fuse = 0;
    uint64_t seed = 1;
    CliOpt opts[] = {{"--model", CLI_OPT_STR, &model}, {"--prompt", CLI_OPT_STR, &prompt},
                     {"--data", CLI_OPT_STR, &data}, {"--dataset", CLI_OPT_STR, &dataset},
                     {"--split", CLI_OPT_STR, &split}, {"--template", CLI_OPT_STR, &tmpl},
                     {"--text-prompt", CLI_OPT_STR, &text_prompt}, {"--batch", CLI_OPT_INT, &batch},
                     {"--no-fuse", CLI_OPT_FLAG, &no_fuse}, {"--seed", CLI_OPT_U64, &seed}};
    int r = cli_parse_opts(opts, 10, argc, argv, "vp eval");
    if (r == 1 || r == 2 || !model || !prompt || !data || batch < 1) {
        fprintf(r == 1 ? stdout : stderr,
                "usage: mclip vp eval --model FILE --prompt VP --data PATH [--dataset NAME]\n"
                "                     [--split test] [--template T] [--text-prompt FILE]\n"
                "Accuracy on a split with and without the visual prompt (JSON on stdout).\n");
        return r == 1 ? 0 : 2;
    }
    McErr err;
    int rc = 1, random = 0;
    VpData d = {0};
    Tokenizer *tok = NULL;
    CoopVPrompt vp = {0};
    CoopPrompt tp = {0};
    float *txtn = NULL;
    McModel *m = open_model(model, !no_fuse, &random, &err);
    if (!m || load_vprompt(prompt, m, &vp, &err) ||
        load_data(&d, data, dataset, "0", split, seed, &err))
        goto fail;
    if (text_prompt && cli_load_text_prompt(text_prompt, m, &tp, &err)) goto fail;
    int K = d.ds->n_classes;
    tok = cli_tokenizer_load(&err);
    txtn = mc_malloc((size_t)K * m->cfg.image.embed * sizeof *txtn);
    if (!tok || class_text(m, tok, d.ds->classes, K, tmpl, text_prompt ? &tp : NULL, txtn, &err))
        goto fail;
    double acc0, acc1;
    if (accuracy(&d, d.eval, d.n_eval, m, NULL, txtn, K, batch, &acc0, &err) ||
        accuracy(&d, d.eval, d.n_eval, m, &vp, txtn, K, batch, &acc1, &err))
        goto fail;
    printf("{\"command\": \"vp eval\", \"model\": \"%s\", \"random_weights\": %s, \"split\": "
           "\"%s\", \"images\": %lld, \"accuracy_without_prompt\": %.6f, "
           "\"accuracy_with_prompt\": %.6f}\n", m->name, random ? "true" : "false", split,
           (long long)d.n_eval, acc0, acc1);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip vp eval: %s\n", err.msg);
done:
    mc_free(txtn);
    coop_vp_free(&vp);
    coop_prompt_free(&tp);
    tok_free(tok);
    data_free(&d);
    mc_model_free(m);
    return rc;
}

// ---- dispatch ----

int cli_vp(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && !strcmp(sub, "init")) return cmd_init(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "grad")) return cmd_grad(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "train")) return cmd_train(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "eval")) return cmd_eval(argc - 1, argv + 1);
    FILE *f = sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h")) ? stdout : stderr;
    fprintf(f, "usage: mclip vp init|convert|grad|train|eval [options]   ('mclip vp grad --help')\n"
               "  init     a new visual prompt for a model\n"
               "  convert  the paper's .pt visual prompt to the border-only file\n"
               "  grad     loss, logits and d loss / d prompt of one batch\n"
               "  train    learn a visual prompt (optionally with a text prompt)\n"
               "  eval     accuracy with and without a visual prompt\n");
    return f == stdout ? 0 : 2;
}
