// cli_retrieval.c - `mclip retrieval`: image-text retrieval on a caption set.
//
//   mclip retrieval eval  --model FILE --captions FILE --images DIR [--split test]
//                         [--prompt FILE] [--vprompt FILE]       results JSON on stdout
//   mclip retrieval train --model FILE --captions FILE --images DIR --out PROMPT
//                         [--split train] [--data CLS --dataset NAME --shots K]
//
// --captions is a Karpathy dataset_flickr30k.json (the standard Flickr30k
// test split: 1,000 images, 5 captions each), a results_20130124.token file
// or a path<TAB>caption TSV (datasets/dataset.h).  eval reports both
// protocols of coop/retrieval.h: recall@1/5/10 text-to-image and image-to-
// text over all captions, and the paper's first-caption text-to-image R@1
// (unscaled cosine).  With --prompt (a CoOp text prompt) captions are the
// prompt's "names" in groups of --group captions (the legacy pooling rule
// reads R = the group size).
//
// train learns a retrieval prompt with the in-batch symmetric contrastive
// loss; with --data (a classification dataset) it trains the multitask
// objective (1 - lambda) L_ret + lambda L_cls with one shared context.
// Defaults are the paper's (paper-protocol section 11): 3 epochs, batch 16,
// scale 100, lambda 0.3, AdamW lr 3e-4 wd 0.01, paper sequence form.
//
// Exit status: 0 ok, 1 a runtime error, 2 a usage error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/dataset.h"
#include "../datasets/split.h"
#include "../mobileclip/cli_common.h"
#include "../mobileclip/model.h"
#include "cli.h"
#include "cli_shared.h"
#include "promptfile.h"
#include "randmodel.h"
#include "retrieval.h"

// ---- the model ----

static McModel *open_model(const char *path, int *random, McErr *err) {
    *random = coop_randmodel_is_random(path);
    McModel *m = cli_model_load(path, NULL, 1, err);
    if (m && !m->image) {
        mc_err(err, "%s has no image tower (a text-only model)", path);
        mc_model_free(m);
        return NULL;
    }
    if (m) fprintf(stderr, "model %s (%s)%s\n", m->name, path, *random ? " RANDOM WEIGHTS" : "");
    return m;
}

// ---- the caption split ----

typedef struct {
    CaptionSet *cs;
    int    I, T;           // images and captions of the split
    const char **paths;    // [I]
    const char **caps;     // [T]
    int   *cap_img;        // [T] in [0, I)
    const char **first;    // [I] each image's first caption
} Split;

static int load_split(Split *s, const char *captions, const char *images, const char *split,
                      int limit, McErr *err) {
    memset(s, 0, sizeof *s);
    DsOptions opt = {0};
    DsSource src;
    if (ds_detect(captions, &opt, &src, err)) return -1;
    if (!ds_layout_is_captions(src.layout))
        return mc_err(err, "%s: a %s, not a caption set (Karpathy JSON, .token file or "
                      "path<TAB>caption TSV)", captions, ds_layout_name(src.layout));
    if (images) snprintf(src.image_dir, sizeof src.image_dir, "%s", images);
    s->cs = cs_load_source(&src, &opt, err);
    if (!s->cs) return -1;
    int which = ds_split_parse(split);
    if (which < 0 && strcmp(split, "all"))
        return mc_err(err, "--split %s: expected train, val, test or all", split);
    int has = cs_count_split(s->cs, which < 0 ? -1 : which);
    if (which >= 0 && !has)
        return mc_err(err, "%s: no images in split %s (%d images in all; use --split all)",
                      captions, split, s->cs->n_images);
    // Images of the split (file order), at most `limit`, and their captions.
    CaptionSet *c = s->cs;
    s->paths = mc_malloc((size_t)c->n_images * sizeof *s->paths);
    s->first = mc_malloc((size_t)c->n_images * sizeof *s->first);
    s->caps = mc_malloc((size_t)(c->n_captions + 1) * sizeof *s->caps);
    s->cap_img = mc_malloc((size_t)(c->n_captions + 1) * sizeof *s->cap_img);
    for (int i = 0; i < c->n_images; i++) {
        const CsImage *im = &c->images[i];
        if ((which >= 0 && im->split != which) || im->n < 1) continue;
        if (limit > 0 && s->I == limit) break;
        for (int j = 0; j < im->n; j++) {
            s->caps[s->T] = c->captions[im->first + j];
            s->cap_img[s->T++] = s->I;
        }
        s->first[s->I] = c->captions[im->first];
        s->paths[s->I++] = im->path;
    }
    if (s->I < 2) return mc_err(err, "%s: %d images with captions in the split", captions, s->I);
    return 0;
}

static void split_free(Split *s) {
    mc_free(s->paths), mc_free(s->caps), mc_free(s->cap_img), mc_free(s->first);
    cs_free(s->cs);
}

// The eval transform in the paper's order (RGB conversion first, as its
// data loaders do; the same pixels as open_clip's for RGB and gray files).
static void prep_of(const McModel *m, DsPrepConfig *pc) {
    cli_prep_config(pc, m, DS_PREP_PAPER);
}

static int load_vprompt(const char *path, const McModel *m, CoopVPrompt *vp, McErr *err) {
    CoopVPromptFile f;
    if (coop_vp_load(path, &f, err)) return -1;
    int rc = coop_vp_file_check(&f, m->name, m->cfg.image.image_size, err) ||
             coop_vp_file_prompt(&f, vp, err) ? -1 : 0;
    coop_vp_file_free(&f);
    return rc;
}

// Scores of a split: image features, all captions, first captions.
static int evaluate(McModel *m, Tokenizer *tok, CoopPrompt *p, const CoopVPrompt *vp,
                    const Split *s, int batch, int group, CoopRetScores *sc, McErr *err) {
    int64_t E = m->cfg.image.embed;
    DsPrepConfig pc;
    prep_of(m, &pc);
    float *img = mc_malloc((size_t)s->I * E * sizeof *img);
    float *txt = mc_malloc((size_t)s->T * E * sizeof *txt);
    float *first = NULL;
    double t0 = mc_time();
    int rc = coop_ret_image_features(m->image, &pc, vp, s->paths, s->I, batch, img, err);
    if (!rc) fprintf(stderr, "%d images encoded in %.1f s\n", s->I, mc_time() - t0);
    t0 = mc_time();
    if (!rc) rc = coop_ret_text_features(&m->text, tok, p, NULL, s->caps, s->T, group, txt, err);
    // Legacy pooling: the first captions as their own sequence of groups.
    if (!rc && p && p->cfg.pool == COOP_POOL_LEGACY) {
        first = mc_malloc((size_t)s->I * E * sizeof *first);
        rc = coop_ret_text_features(&m->text, tok, p, NULL, s->first, s->I, group, first, err);
    }
    if (!rc) {
        fprintf(stderr, "%d captions encoded in %.1f s\n", s->T, mc_time() - t0);
        coop_ret_scores(img, s->I, txt, s->T, E, s->cap_img, first, sc);
    }
    mc_free(img), mc_free(txt), mc_free(first);
    return rc;
}

static void print_scores(const char *cmd, const McModel *m, int random, const char *split,
                         const char *prompt, const CoopRetScores *sc) {
    fprintf(stderr, "standard (all %d captions of %d images): t2i R@1 %.2f R@5 %.2f R@10 %.2f"
            " | i2t R@1 %.2f R@5 %.2f R@10 %.2f\n", sc->n_captions, sc->n_images,
            100 * sc->t2i[0], 100 * sc->t2i[1], 100 * sc->t2i[2], 100 * sc->i2t[0],
            100 * sc->i2t[1], 100 * sc->i2t[2]);
    fprintf(stderr, "paper (first caption, t2i R@1, unscaled cosine): %.2f %% (%d/%d)\n",
            100 * sc->paper_t2i_r1, sc->paper_hits, sc->n_images);
    printf("{\"command\": \"%s\", \"model\": \"%s\", \"random_weights\": %s, \"split\": \"%s\", "
           "\"prompt\": \"%s\", \"images\": %d, \"captions\": %d, "
           "\"t2i\": {\"R@1\": %.6f, \"R@5\": %.6f, \"R@10\": %.6f}, "
           "\"i2t\": {\"R@1\": %.6f, \"R@5\": %.6f, \"R@10\": %.6f}, "
           "\"paper_t2i_R@1\": %.6f, \"paper_hits\": %d}\n", cmd, m->name,
           random ? "true" : "false", split, prompt ? prompt : "", sc->n_images, sc->n_captions,
           sc->t2i[0], sc->t2i[1], sc->t2i[2], sc->i2t[0], sc->i2t[1], sc->i2t[2],
           sc->paper_t2i_r1, sc->paper_hits);
}

// ---- retrieval eval ----

static int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *captions = NULL, *images = NULL, *split = "test";
    const char *prompt = NULL, *vprompt = NULL;
    int batch = 16, group = COOP_RET_GROUP, limit = 0;
    CliOpt opts[] = {{"--model", CLI_OPT_STR, &model}, {"--captions", CLI_OPT_STR, &captions},
                     {"--images", CLI_OPT_STR, &images}, {"--split", CLI_OPT_STR, &split},
                     {"--prompt", CLI_OPT_STR, &prompt}, {"--vprompt", CLI_OPT_STR, &vprompt},
                     {"--batch", CLI_OPT_INT, &batch}, {"--group", CLI_OPT_INT, &group},
                     {"--limit", CLI_OPT_INT, &limit}};
    int r = cli_parse_opts(opts, 9, argc, argv, "retrieval eval");
    if (r == 1 || r == 2 || !model || !captions || batch < 1 || group < 1) {
        fprintf(r == 1 ? stdout : stderr,
                "usage: mclip retrieval eval --model FILE --captions FILE [--images DIR]\n"
                "          [--split test|val|train|all] [--prompt FILE] [--vprompt FILE]\n"
                "          [--batch 16] [--group 16] [--limit N]\n"
                "Recall@1/5/10 both ways over all captions, and the paper's first-caption\n"
                "t2i R@1 (JSON on stdout).  --group: captions per prompted text pass.\n");
        return r == 1 ? 0 : 2;
    }
    McErr err;
    int rc = 1, random = 0;
    Split s = {0};
    Tokenizer *tok = NULL;
    CoopPrompt p = {0};
    CoopVPrompt vp = {0};
    McModel *m = open_model(model, &random, &err);
    if (!m || load_split(&s, captions, images, split, limit, &err)) goto fail;
    if (prompt && cli_load_text_prompt(prompt, m, &p, &err)) goto fail;
    if (vprompt && load_vprompt(vprompt, m, &vp, &err)) goto fail;
    if (!(tok = cli_tokenizer_load(&err))) goto fail;
    CoopRetScores sc;
    if (evaluate(m, tok, prompt ? &p : NULL, vprompt ? &vp : NULL, &s, batch, group, &sc, &err))
        goto fail;
    print_scores("retrieval eval", m, random, split, prompt, &sc);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip retrieval eval: %s\n", err.msg);
done:
    coop_prompt_free(&p);
    coop_vp_free(&vp);
    tok_free(tok);
    split_free(&s);
    mc_model_free(m);
    return rc;
}

// ---- retrieval train ----

typedef struct {
    const char *model, *captions, *images, *split, *eval_split, *out, *data, *dataset, *shots;
    const char *form, *pool, *init;
    int epochs, batch, n_ctx, limit, group, chunk;
    double lr, wd, lambda, scale;
    uint64_t seed;
} TrainArgs;

static void on_step(void *ctx, const CoopRetStep *s) {
    (void)ctx;
    fprintf(stderr, "step %5d/%d | loss %.4f | l_ret %.4f | l_cls %.4f | lr %.2e | %.1f ms\n",
            s->step, s->steps, s->loss, s->l_ret, s->l_cls, s->lr, 1e3 * s->seconds);
}

// Classification features for multitask: train items (few-shot) of a dataset.
static int cls_data(const TrainArgs *a, McModel *m, Tokenizer *tok, CoopPrompt *p,
                    Dataset **ds_out, CoopSeqs *cls, float **feat, int32_t **labels, int64_t *n,
                    McErr *err) {
    DsOptions opt = {.dataset = a->dataset};
    Dataset *ds = *ds_out = ds_open(a->data, &opt, err);
    if (!ds) return -1;
    const char *rule = NULL;
    if (!ds_count_split(ds, DS_VAL) && ds_split_paper(ds, a->seed, &rule, err)) return -1;
    int k = DS_K_ALL;
    if (a->shots && ds_parse_k(a->shots, &k, err)) return -1;
    DsFewShot fs;
    if (ds_fewshot(ds, DS_SAMPLER_PAPER, k, a->seed, &fs, err)) return -1;
    *n = fs.n_train;
    const char **paths = mc_malloc((size_t)(fs.n_train + 1) * sizeof *paths);
    *labels = mc_malloc((size_t)(fs.n_train + 1) * sizeof **labels);
    for (int64_t i = 0; i < fs.n_train; i++) {
        paths[i] = ds->items[fs.train[i]].path;
        (*labels)[i] = ds->items[fs.train[i]].label;
    }
    DsPrepConfig pc;
    prep_of(m, &pc);
    *feat = mc_malloc((size_t)(fs.n_train + 1) * m->cfg.image.embed * sizeof **feat);
    int rc = coop_ret_image_features(m->image, &pc, NULL, paths, fs.n_train, 16, *feat, err);
    ds_fewshot_free(&fs);
    mc_free(paths);
    if (!rc) rc = coop_seqs_from_names(cls, p, tok, (const char *const *)ds->classes,
                                       ds->n_classes, err);
    return rc;
}

static int cmd_train(int argc, char **argv) {
    TrainArgs a = {.split = "train", .form = "paper", .pool = "eot", .epochs = -1, .batch = -1,
                   .n_ctx = 16, .group = COOP_RET_GROUP, .lr = -1, .wd = -1, .lambda = -1,
                   .scale = -1, .seed = 1};
    CliOpt opts[] = {
        {"--model", CLI_OPT_STR, &a.model}, {"--captions", CLI_OPT_STR, &a.captions},
        {"--images", CLI_OPT_STR, &a.images}, {"--split", CLI_OPT_STR, &a.split},
        {"--eval-split", CLI_OPT_STR, &a.eval_split}, {"--out", CLI_OPT_STR, &a.out},
        {"--data", CLI_OPT_STR, &a.data}, {"--dataset", CLI_OPT_STR, &a.dataset},
        {"--shots", CLI_OPT_STR, &a.shots}, {"--form", CLI_OPT_STR, &a.form},
        {"--pool", CLI_OPT_STR, &a.pool}, {"--init", CLI_OPT_STR, &a.init},
        {"--epochs", CLI_OPT_INT, &a.epochs}, {"--batch", CLI_OPT_INT, &a.batch},
        {"--n-ctx", CLI_OPT_INT, &a.n_ctx}, {"--limit", CLI_OPT_INT, &a.limit},
        {"--group", CLI_OPT_INT, &a.group}, {"--chunk", CLI_OPT_INT, &a.chunk},
        {"--lr", CLI_OPT_DBL, &a.lr}, {"--wd", CLI_OPT_DBL, &a.wd},
        {"--lambda", CLI_OPT_DBL, &a.lambda}, {"--scale", CLI_OPT_DBL, &a.scale},
        {"--seed", CLI_OPT_U64, &a.seed}};
    int r = cli_parse_opts(opts, (int)(sizeof opts / sizeof *opts), argc, argv, "retrieval train");
    if (r == 1 || r == 2 || !a.model || !a.captions || !a.out) {
        fprintf(r == 1 ? stdout : stderr,
                "usage: mclip retrieval train --model FILE --captions FILE [--images DIR]\n"
                "          --out PROMPT.safetensors [--split train] [--eval-split val]\n"
                "          [--data CLS_DATA [--dataset NAME] [--shots K] [--lambda 0.3]]\n"
                "          [--epochs 3] [--batch 16] [--lr 3e-4] [--wd 0.01] [--scale 100]\n"
                "          [--n-ctx 16] [--form paper|template] [--pool eot|legacy|argmax]\n"
                "          [--init PROMPT] [--seed 1] [--limit N]\n"
                "Retrieval prompt (in-batch contrastive loss), or multitask with --data.\n");
        return r == 1 ? 0 : 2;
    }
    McErr err;
    int rc = 1, random = 0;
    Split s = {0}, ev = {0};
    Tokenizer *tok = NULL;
    CoopPrompt p = {0};
    CoopSeqs cls = {0};
    CoopEngine *e = NULL;
    Dataset *ds = NULL;
    float *img = NULL, *cfeat = NULL;
    int32_t *clab = NULL;
    int64_t ncls = 0;
    McModel *m = open_model(a.model, &random, &err);
    if (!m || load_split(&s, a.captions, a.images, a.split, a.limit, &err)) goto fail;
    if (!(tok = cli_tokenizer_load(&err))) goto fail;

    // The prompt: --init, or a fresh one of the requested form.
    if (a.init) {
        if (cli_load_text_prompt(a.init, m, &p, &err)) goto fail;
    } else {
        CoopPromptCfg pc = coop_prompt_paper(0);
        int f = coop_form_parse(a.form), pl = coop_pool_parse(a.pool);
        if (f < 0 || pl < 0) {
            mc_err(&err, "--form %s / --pool %s: expected paper|template, eot|legacy|argmax",
                   a.form, a.pool);
            goto fail;
        }
        pc.form = f, pc.pool = f == COOP_FORM_TEMPLATE ? COOP_POOL_ARGMAX : pl;
        pc.n_ctx = a.n_ctx;
        if (coop_prompt_init(&p, &pc, m->text.cfg.width, 0, a.seed, &err)) goto fail;
    }

    // Image features of the training pairs: the first caption of each image
    // (the paper's alt_text[0]).
    int64_t E = m->cfg.image.embed;
    DsPrepConfig pc;
    prep_of(m, &pc);
    img = mc_malloc((size_t)s.I * E * sizeof *img);
    if (coop_ret_image_features(m->image, &pc, NULL, s.paths, s.I, 16, img, &err)) goto fail;
    CoopRetTrainCfg tc = coop_ret_train_defaults();
    if (a.epochs > 0) tc.epochs = a.epochs;
    if (a.batch > 0) tc.batch = tc.cls_batch = a.batch;
    if (a.lr > 0) tc.opt.lr = a.lr;
    if (a.wd >= 0) tc.opt.weight_decay = a.wd;
    if (a.lambda >= 0) tc.lambda = a.lambda;
    if (a.scale > 0) tc.scale = a.scale;
    tc.seed = a.seed;
    CoopRetData data = {.cap_img = img, .captions = s.first, .n_pairs = s.I};
    if (a.data) {
        if (cls_data(&a, m, tok, &p, &ds, &cls, &cfeat, &clab, &ncls, &err)) goto fail;
        data.cls = &cls, data.cls_img = cfeat, data.cls_labels = clab, data.n_cls = ncls;
    }
    fprintf(stderr, "retrieval train: %d pairs%s, %s form, %s pooling, M %d, %d epochs, batch "
            "%d, scale %g, lambda %g, AdamW lr %.2e wd %.2e\n", s.I,
            a.data ? " + classification (multitask)" : "", coop_form_name(p.cfg.form),
            coop_pool_name(p.cfg.pool), p.cfg.n_ctx, tc.epochs, tc.batch, tc.scale,
            a.data ? tc.lambda : 0.0, tc.opt.lr, tc.opt.weight_decay);
    e = coop_engine_new(&m->text, a.chunk);
    if (coop_ret_train(e, &p, tok, &data, &tc, on_step, NULL, &err)) goto fail;
    const char *keys[3] = {"objective", "epochs", "captions"};
    char ep[16];
    snprintf(ep, sizeof ep, "%d", tc.epochs);
    const char *vals[3] = {a.data ? "multitask" : "retrieval", ep, a.captions};
    CoopPromptMeta meta = {.model_name = m->name, .random_weights = random,
                           .extra_keys = keys, .extra_values = vals, .n_extra = 3};
    if (coop_promptfile_save(a.out, &p, &meta, &err)) goto fail;
    fprintf(stderr, "wrote %s\n", a.out);

    // Optional evaluation on another split.
    if (a.eval_split) {
        CoopRetScores sc;
        if (load_split(&ev, a.captions, a.images, a.eval_split, a.limit, &err) ||
            evaluate(m, tok, &p, NULL, &ev, 16, a.group, &sc, &err))
            goto fail;
        print_scores("retrieval train", m, random, a.eval_split, a.out, &sc);
    } else {
        printf("{\"command\": \"retrieval train\", \"model\": \"%s\", \"random_weights\": %s, "
               "\"pairs\": %d, \"out\": \"%s\"}\n", m->name, random ? "true" : "false", s.I,
               a.out);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip retrieval train: %s\n", err.msg);
done:
    coop_engine_free(e);
    coop_seqs_free(&cls);
    mc_free(img), mc_free(cfeat), mc_free(clab);
    ds_free(ds);
    coop_prompt_free(&p);
    tok_free(tok);
    split_free(&s), split_free(&ev);
    mc_model_free(m);
    return rc;
}

int cli_retrieval(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && !strcmp(sub, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "train")) return cmd_train(argc - 1, argv + 1);
    FILE *f = sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h")) ? stdout : stderr;
    fprintf(f, "usage: mclip retrieval eval|train [options]   ('mclip retrieval eval --help')\n"
               "  eval    recall@1/5/10 both ways and the paper's first-caption R@1\n"
               "  train   a retrieval prompt; multitask with --data\n");
    return f == stdout ? 0 : 2;
}
