// cli_coop.c - `mclip coop`: CoOp prompt learning from the command line.
//
//   mclip coop train --demo
//   mclip coop train --model FILE|NAME (--dataset NAME --root DIR | --data PATH |
//                    --features FILE) [options]           results JSON on stdout
//   mclip coop eval  --model FILE|NAME --prompt FILE (data options) [--split val|test]
//                    [--confusion OUT.csv] [--subsample base|new|all | --base-to-new]
//                                                         results JSON on stdout
//   mclip coop grad  --model FILE --prompt FILE --classes NAME... --image PATH...
//                    --labels N... --out OUT.safetensors
//
// A model NAME (S0, MobileCLIP2-S0, ...) is looked up as
// weights/MobileCLIP2-<X>/open_clip_model.safetensors (weights/download.sh).
// --demo uses a generated dataset (datasets/gen_dataset.h) and a RANDOM-
// WEIGHT model of MobileCLIP2-S0's real shape (coop/randmodel.h), both
// written under the cache folder ($MCLIP_CACHE, else $XDG_CACHE_HOME/mclip,
// else ~/.cache/mclip); every output says "random weights".
//
// Exit status: 0 ok, 1 a runtime error (file, model, data), 2 a usage error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../datasets/dataset.h"
#include "../datasets/gen_dataset.h"
#include "../datasets/metrics.h"
#include "../datasets/preprocess.h"
#include "../datasets/split.h"
#include "../mobileclip/cli_common.h"
#include "../mobileclip/json.h"
#include "../mobileclip/model.h"
#include "../mobileclip/safetensors.h"
#include "../tensor/gemm.h"
#include "../tensor/simd.h"
#include "cli.h"
#include "featcache.h"
#include "randmodel.h"
#include "train.h"

// ---- arguments ----

typedef struct {
    char **v;
    int n, cap;
} StrList;

static void sl_add(StrList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        char **nv = mc_malloc((size_t)l->cap * sizeof *nv);
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
        mc_free(l->v);
        l->v = nv;
    }
    size_t n = strlen(s);
    l->v[l->n] = mc_malloc(n + 1);
    memcpy(l->v[l->n++], s, n + 1);
}

static void sl_free(StrList *l) {
    for (int i = 0; i < l->n; i++) mc_free(l->v[i]);
    mc_free(l->v);
    memset(l, 0, sizeof *l);
}

typedef struct {
    // model and data
    const char *model, *model_name, *dataset, *root, *data, *features, *classnames;
    const char *names_form, *cache, *fewshot_dir, *prompt, *split, *confusion, *out;
    const char *out_last, *ckpt, *init, *logit_scale, *recipe, *optim, *schedule, *form;
    const char *pool, *class_pos, *shots, *sampler, *dump_features;
    const char *subsample;   // base | new | all (base-to-new, CoOp)
    int base_to_new;         // eval: both halves and their harmonic mean
    int demo, csc, n_ctx, epochs, batch, eval_every, ckpt_every, resume, threads, chunk;
    int fp16, shuffle, warmup_epochs, demo_classes, skip_bad;
    int64_t steps, stop_after;
    uint64_t seed, split_seed;
    double lr, wd, warmup_lr;
    StrList classes, images, labels;
} Args;

static void args_init(Args *a) {
    memset(a, 0, sizeof *a);
    a->n_ctx = -1, a->epochs = -1, a->batch = -1, a->eval_every = -1, a->ckpt_every = 50;
    a->chunk = 0, a->shuffle = -1, a->warmup_epochs = -1, a->demo_classes = 4;
    a->seed = 1, a->split_seed = 42;
    a->lr = -1, a->wd = -1, a->warmup_lr = -1;
}

static void args_free(Args *a) {
    sl_free(&a->classes), sl_free(&a->images), sl_free(&a->labels);
}

// Options taking one value, and flags.  Returns 1 if argv[*i] was consumed.
static int parse_common(Args *a, int argc, char **argv, int *i, const char *cmd) {
    const char *o = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
// VAL: an option with a value, stored in a->field as the expression conv
// of v makes it.
#define VAL(flag, field, conv) \
    if (!strcmp(o, flag)) { \
        if (!v) goto missing; \
        a->field = conv; \
        (*i)++; \
        return 1; \
    }
#define STR(flag, field) VAL(flag, field, v)
#define INT(flag, field) VAL(flag, field, atoi(v))
#define I64(flag, field) VAL(flag, field, atoll(v))
#define U64(flag, field) VAL(flag, field, strtoull(v, NULL, 10))
#define DBL(flag, field) VAL(flag, field, atof(v))
#define FLAG(flag, field, val) if (!strcmp(o, flag)) { a->field = val; return 1; }
    STR("--model", model) STR("--model-name", model_name) STR("--dataset", dataset)
    STR("--root", root) STR("--data", data) STR("--features", features)
    STR("--classnames", classnames) STR("--names-form", names_form) STR("--cache", cache)
    STR("--fewshot-dir", fewshot_dir) STR("--prompt", prompt) STR("--split", split)
    STR("--confusion", confusion) STR("--out", out) STR("--out-last", out_last)
    STR("--ckpt", ckpt) STR("--init", init) STR("--logit-scale", logit_scale)
    STR("--recipe", recipe) STR("--optim", optim) STR("--schedule", schedule)
    STR("--form", form) STR("--pool", pool) STR("--class-pos", class_pos) STR("--shots", shots)
    STR("--sampler", sampler) STR("--dump-features", dump_features)
    STR("--subsample", subsample) FLAG("--base-to-new", base_to_new, 1)
    INT("--n-ctx", n_ctx) INT("--epochs", epochs) INT("--batch", batch)
    INT("--eval-every", eval_every) INT("--ckpt-every", ckpt_every) INT("--threads", threads)
    INT("--chunk", chunk) INT("--warmup-epochs", warmup_epochs)
    INT("--demo-classes", demo_classes)
    I64("--steps", steps) I64("--stop-after", stop_after)
    DBL("--lr", lr) DBL("--wd", wd) DBL("--warmup-lr", warmup_lr)
    FLAG("--demo", demo, 1) FLAG("--csc", csc, 1) FLAG("--resume", resume, 1)
    FLAG("--fp16", fp16, 1) FLAG("--skip-bad", skip_bad, 1)
    FLAG("--shuffle", shuffle, 1) FLAG("--no-shuffle", shuffle, 0)
    U64("--seed", seed) U64("--split-seed", split_seed)
    // Lists: every following word up to the next option.
    StrList *l = !strcmp(o, "--classes") ? &a->classes : !strcmp(o, "--image") ? &a->images
               : !strcmp(o, "--labels") ? &a->labels : NULL;
    if (l) {
        while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) sl_add(l, argv[++(*i)]);
        return 1;
    }
#undef VAL
#undef STR
#undef INT
#undef I64
#undef U64
#undef DBL
#undef FLAG
    return 0;
missing:
    fprintf(stderr, "mclip coop %s: option %s needs a value\n", cmd, o);
    return -1;
}

// ---- model, tokenizer, cache ----

static const char *cache_dir(const Args *a, char *buf, size_t len) {
    if (a->cache) return a->cache;
    const char *e = getenv("MCLIP_CACHE"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (e && *e) snprintf(buf, len, "%s", e);
    else if (x && *x) snprintf(buf, len, "%s/mclip", x);
    else if (h && *h) snprintf(buf, len, "%s/.cache/mclip", h);
    else snprintf(buf, len, "/tmp/mclip-cache");
    return buf;
}

// A file path, or a model name under weights/.
static int resolve_model(const char *arg, char *buf, size_t len, McErr *err) {
    struct stat st;
    if (stat(arg, &st) == 0) {
        snprintf(buf, len, "%s", arg);
        return 0;
    }
    const McModelConfig *c = mc_config_find(arg);
    if (!c) return mc_err(err, "--model %s: no such file and not a model name (S0, S2, B, S3, "
                          "S4, L-14)", arg);
    snprintf(buf, len, "weights/%s/open_clip_model.safetensors", c->name);
    if (stat(buf, &st) != 0)
        return mc_err(err, "--model %s: %s not found; fetch it with weights/download.sh %s",
                      arg, buf, c->name + strlen("MobileCLIP2-"));
    return 0;
}

// The demo's random-weight S0 (written once into the cache folder).
static int demo_model(const char *cache, char *buf, size_t len, McErr *err) {
    if (snprintf(buf, len, "%s/random-MobileCLIP2-S0-seed1-%s.safetensors", cache,
                 COOP_RANDMODEL_RECIPE) >= (int)len)
        return mc_err(err, "cache folder name too long: %s", cache);
    struct stat st;
    if (stat(buf, &st) == 0) return 0;
    if (ds_mkdirs(cache, err)) return -1;
    fprintf(stderr, "writing a RANDOM-WEIGHT MobileCLIP2-S0-shaped model to %s\n", buf);
    return coop_randmodel_write(buf, mc_config_find("S0"), 1, 0, err);
}

static double logit_scale(const Args *a, const McModel *m, const CoopPromptCfg *pc) {
    const char *s = a->logit_scale;
    if (s && strcmp(s, "model") && strcmp(s, "auto")) return atof(s);
    int model = (s && !strcmp(s, "model")) || (!s && pc->form == COOP_FORM_TEMPLATE);
    if (model && m->logit_scale) return exp((double)m->logit_scale->data[0]);
    return COOP_PAPER_SCALE;
}

// ---- data ----

typedef struct {
    Dataset *ds;          // or NULL with features
    char   **classes;     // [K] (owned copies)
    int      K;
    float   *feat[2];     // train, val: [n, E] normalised
    int32_t *labels[2];
    int64_t  n[2];
    char     source[4096];
    int      shots;
} Data;

static void data_free(Data *d) {
    if (d->classes)
        for (int k = 0; k < d->K; k++) mc_free(d->classes[k]);
    mc_free(d->classes);
    for (int s = 0; s < 2; s++) mc_free(d->feat[s]), mc_free(d->labels[s]);
    ds_free(d->ds);
    memset(d, 0, sizeof *d);
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = mc_malloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

// A feature set written by --dump-features: features [N, E], labels, split.
static int load_features(Data *d, const char *path, int which_eval, McErr *err) {
    StFile *f = st_open(path, err);
    if (!f) return -1;
    const StTensor *tf = st_find(f, "features"), *tl = st_find(f, "labels");
    const StTensor *ts = st_find(f, "split");
    const char *names = st_meta(f, "classnames");
    int rc = -1;
    if (!tf || tf->ndim != 2 || !tl || !ts || tl->numel != tf->shape[0] ||
        ts->numel != tf->shape[0] || !names) {
        mc_err(err, "%s: not a feature set (want features [N, E], labels [N], split [N] and "
               "classnames metadata)", path);
        goto done;
    }
    JsonDoc *doc = json_parse(names, strlen(names), NULL, err);
    if (!doc) goto done;
    const JsonValue *r = json_root(doc);
    d->K = (int)r->len;
    d->classes = mc_calloc((size_t)d->K + 1, sizeof *d->classes);
    for (int k = 0; k < d->K; k++) d->classes[k] = xstrdup(r->items[k].str ? r->items[k].str : "");
    json_free(doc);
    int64_t N = tf->shape[0], E = tf->shape[1];
    float *all = mc_malloc((size_t)(N * E) * sizeof *all);
    int64_t *lab = mc_malloc((size_t)N * sizeof *lab), *spl = mc_malloc((size_t)N * sizeof *spl);
    if (st_to_f32(f, tf, all, N * E, err) || st_to_i64(f, tl, lab, N, err) ||
        st_to_i64(f, ts, spl, N, err)) {
        mc_free(all), mc_free(lab), mc_free(spl);
        goto done;
    }
    // Split 1 = train, the other slot = val (or the split asked for by eval).
    int want[2] = {DS_TRAIN, which_eval};
    for (int s = 0; s < 2; s++) {
        d->feat[s] = mc_malloc((size_t)(N * E + 1) * sizeof(float));
        d->labels[s] = mc_malloc((size_t)(N + 1) * sizeof(int32_t));
        for (int64_t i = 0; i < N; i++)
            if (spl[i] == want[s]) {
                if (lab[i] < 0 || lab[i] >= d->K) {
                    mc_err(err, "%s: label %lld outside %d classes", path, (long long)lab[i],
                           d->K);
                    mc_free(all), mc_free(lab), mc_free(spl);
                    goto done;
                }
                memcpy(d->feat[s] + d->n[s] * E, all + i * E, (size_t)E * sizeof(float));
                d->labels[s][d->n[s]++] = (int32_t)lab[i];
            }
        coop_normalize_rows(d->feat[s], d->n[s], E);
    }
    mc_free(all), mc_free(lab), mc_free(spl);
    snprintf(d->source, sizeof d->source, "%s", path);
    rc = 0;
done:
    st_close(f);
    return rc;
}

// Image features of the items idx[0..*n) (cached), normalised, with labels.
// With fs->skip_bad, images that cannot be read are reported by the cache
// and their rows dropped here: *n becomes the number kept.
static int split_features(const Dataset *ds, const int64_t *idx, int64_t *n, CoopFeatSpec *fs,
                          float **feat, int32_t **labels, McErr *err) {
    int64_t N = *n, E = image_tower_config(fs->tower)->embed;
    const char **paths = mc_malloc((size_t)(N + 1) * sizeof *paths);
    uint8_t *bad = fs->skip_bad ? mc_calloc((size_t)N + 1, 1) : NULL;
    *labels = mc_malloc((size_t)(N + 1) * sizeof **labels);
    for (int64_t i = 0; i < N; i++) {
        paths[i] = ds->items[idx[i]].path;
        (*labels)[i] = ds->items[idx[i]].label;
    }
    int hit = 0;
    *feat = NULL;
    fs->bad = bad;
    int rc = N ? coop_featcache_get(fs, paths, N, feat, &hit, err) : 0;
    fs->bad = NULL;
    if (!N) *feat = mc_malloc(sizeof(float));
    mc_free(paths);
    if (rc) {
        mc_free(bad);
        return -1;
    }

    // Drop the rows of bad images (already reported by path).
    int64_t kept = 0;
    for (int64_t i = 0; i < N; i++) {
        if (bad && bad[i]) continue;
        if (kept != i) {
            memmove(*feat + kept * E, *feat + i * E, (size_t)E * sizeof(float));
            (*labels)[kept] = (*labels)[i];
        }
        kept++;
    }
    mc_free(bad);
    if (N && fs->progress)
        fprintf(fs->progress, "image features: %lld images %s%s\n", (long long)kept,
                hit ? "from the cache" : "computed", kept < N ? ", unreadable ones skipped"
                : hit ? "" : " and cached");
    if (kept < N && fs->progress)
        fprintf(fs->progress, "skipped %lld unreadable images (--skip-bad)\n",
                (long long)(N - kept));
    *n = kept;
    coop_normalize_rows(*feat, kept, E);
    return 0;
}

// Load the dataset (or generate the demo's), draw the few-shot split and
// compute the features of train and the evaluation split.
static int load_data(Data *d, const Args *a, const McModel *m, const char *weights_sha,
                     const char *cache, int which_eval, int need_train, McErr *err) {
    memset(d, 0, sizeof *d);
    d->shots = DS_K_ALL;
    if (a->features) return load_features(d, a->features, which_eval, err);
    char path[4096], gen_dir[4096];
    DsOptions opt = {.dataset = a->dataset, .classnames = a->classnames,
                     .names_form = a->names_form};
    const char *src = a->data ? a->data : a->root;
    if (a->demo) {
        // The generated dataset, written once per configuration.
        GenOptions g = gen_defaults();
        g.classes = a->demo_classes, g.per_class = 16, g.size = 64, g.seed = 1;
        if (snprintf(gen_dir, sizeof gen_dir - 32, "%s/demo-data-c%d-m%d-s%d", cache,
                     g.classes, g.per_class, g.size) >= (int)sizeof gen_dir - 32 ||
            snprintf(path, sizeof path, "%s/tsv/manifest.tsv", gen_dir) >= (int)sizeof path)
            return mc_err(err, "cache folder name too long: %s", cache);
        struct stat st;
        if (stat(path, &st) != 0) {
            fprintf(stderr, "generating the demo dataset in %s\n", gen_dir);
            if (gen_dataset(gen_dir, &g, err)) return -1;
        }
        src = path;
        opt.dataset = NULL;
    }
    if (!src) return mc_err(err, "no data: give --dataset NAME --root DIR, --data PATH, "
                            "--features FILE or --demo");
    d->ds = ds_open(src, &opt, err);
    if (!d->ds) return -1;
    snprintf(d->source, sizeof d->source, "%s", src);
    d->K = d->ds->n_classes;
    d->classes = mc_calloc((size_t)d->K + 1, sizeof *d->classes);
    for (int k = 0; k < d->K; k++) d->classes[k] = xstrdup(d->ds->classes[k]);

    // Splits: keep given ones; without val apply the paper's rule.
    const char *rule = NULL;
    if (!ds_count_split(d->ds, DS_VAL) && ds_split_paper(d->ds, a->split_seed, &rule, err))
        return -1;
    if (rule) fprintf(stderr, "splits: %s (paper rule)\n", rule);

    // Few-shot selection (manifest reused when present) and features.
    int k = DS_K_ALL;
    if (a->shots && ds_parse_k(a->shots, &k, err)) return -1;
    d->shots = k;
    int sampler = a->sampler ? ds_sampler_parse(a->sampler) : DS_SAMPLER_PAPER;
    if (sampler < 0) return mc_err(err, "--sampler %s: expected paper or coop", a->sampler);
    char fsdir[4096];
    snprintf(fsdir, sizeof fsdir, "%s", a->fewshot_dir ? a->fewshot_dir : cache);
    if (!a->fewshot_dir) snprintf(fsdir, sizeof fsdir, "%s/splits", cache);
    DsFewShot fs;
    int created;
    if (ds_fewshot_load_or_create(d->ds, fsdir, sampler, k, a->split_seed, &fs, &created, err))
        return -1;
    int64_t *ev = fs.val, nev = fs.n_val;
    int64_t *tmp = NULL;
    if (which_eval != DS_VAL) {
        tmp = mc_malloc((size_t)(d->ds->n_items + 1) * sizeof *tmp);
        nev = 0;
        for (int64_t i = 0; i < d->ds->n_items; i++)
            if (d->ds->items[i].split == which_eval) tmp[nev++] = i;
        ev = tmp;
    }
    CoopFeatSpec spec = {.cache_dir = cache, .model_name = m->name,
                         .weights_sha256 = weights_sha, .tower = m->image, .batch = 8,
                         .progress = stderr, .skip_bad = a->skip_bad};
    const McImageConfig *ic = &m->cfg.image;
    ds_prep_config(&spec.prep, ic->image_size,
                   ic->interp == MC_INTERP_BICUBIC ? DS_FILTER_BICUBIC : DS_FILTER_BILINEAR,
                   ic->mean, ic->std);
    int64_t ntr = need_train ? fs.n_train : 0;
    int rc = split_features(d->ds, fs.train, &ntr, &spec, &d->feat[0], &d->labels[0], err);
    d->n[0] = ntr;
    if (!rc) rc = split_features(d->ds, ev, &nev, &spec, &d->feat[1], &d->labels[1], err);
    d->n[1] = nev;
    mc_free(tmp);
    ds_fewshot_free(&fs);
    return rc;
}

// Write train and eval features as a feature set (--dump-features).
static int dump_features(const Data *d, int64_t E, const char *path, McErr *err) {
    int64_t N = d->n[0] + d->n[1];
    float *f = mc_malloc((size_t)(N * E + 1) * sizeof *f);
    int64_t *lab = mc_malloc((size_t)(N + 1) * sizeof *lab);
    int64_t *spl = mc_malloc((size_t)(N + 1) * sizeof *spl);
    int64_t o = 0;
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < d->n[s]; i++, o++) {
            memcpy(f + o * E, d->feat[s] + i * E, (size_t)E * sizeof *f);
            lab[o] = d->labels[s][i];
            spl[o] = s ? DS_VAL : DS_TRAIN;
        }
    StWriter *w = st_writer_new();
    st_writer_add_f32(w, "features", MC_DIMS(N, E), f);
    st_writer_add_i64(w, "labels", MC_DIMS(N), lab);
    st_writer_add_i64(w, "split", MC_DIMS(N), spl);
    size_t cap = 16;
    for (int k = 0; k < d->K; k++) cap += 2 * strlen(d->classes[k]) + 8;
    char *js = mc_malloc(cap), *p = js;
    *p++ = '[';
    for (int k = 0; k < d->K; k++) {
        if (k) *p++ = ',', *p++ = ' ';
        *p++ = '"';
        for (const char *c = d->classes[k]; *c; c++) {
            if (*c == '"' || *c == '\\') *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = ']', *p = 0;
    st_writer_meta(w, "classnames", js);
    int rc = st_writer_save(w, path, err);
    st_writer_free(w);
    mc_free(js), mc_free(f), mc_free(lab), mc_free(spl);
    return rc;
}

// ---- base-to-new class subsets ----
//
// CoOp's subsample_classes (paper-protocol.md, datasets/metrics.h): of K
// classes the first ceil(K/2) labels are "base", the rest "new".  A subset
// keeps the items of its classes, in their order, with labels remapped to
// 0.. and the subset's class names; a prompt trained on base is evaluated
// on new with the new names (a unified context does not depend on them).

enum { SUB_ALL = 0, SUB_BASE = 1, SUB_NEW = 2 };

static int subsample_parse(const char *s) {
    if (!s || !strcmp(s, "all")) return SUB_ALL;
    if (!strcmp(s, "base")) return SUB_BASE;
    if (!strcmp(s, "new")) return SUB_NEW;
    return -1;
}

static const char *subsample_name(int mode) {
    return mode == SUB_BASE ? "base" : mode == SUB_NEW ? "new" : "all";
}

// dst = the items of src whose label is in the subset's range, remapped;
// rows are E floats.  dst owns fresh copies (dst->ds is NULL).
static void data_subset(const Data *src, int mode, int64_t E, Data *dst) {
    memset(dst, 0, sizeof *dst);
    int nb = mt_base_count(src->K);
    int lo = mode == SUB_NEW ? nb : 0, hi = mode == SUB_BASE ? nb : src->K;
    dst->K = hi - lo;
    dst->classes = mc_calloc((size_t)dst->K + 1, sizeof *dst->classes);
    for (int k = 0; k < dst->K; k++) dst->classes[k] = xstrdup(src->classes[lo + k]);
    for (int s = 0; s < 2; s++) {
        dst->feat[s] = mc_malloc((size_t)(src->n[s] * E + 1) * sizeof(float));
        dst->labels[s] = mc_malloc((size_t)(src->n[s] + 1) * sizeof(int32_t));
        for (int64_t i = 0; i < src->n[s]; i++) {
            int32_t l = src->labels[s][i];
            if (l < lo || l >= hi) continue;
            memcpy(dst->feat[s] + dst->n[s] * E, src->feat[s] + i * E,
                   (size_t)E * sizeof(float));
            dst->labels[s][dst->n[s]++] = l - lo;
        }
    }
    snprintf(dst->source, sizeof dst->source, "%s", src->source);
    dst->shots = src->shots;
}

// Replace d by its subset (no-op for all).
static void data_restrict(Data *d, int mode, int64_t E) {
    if (mode == SUB_ALL) return;
    Data t;
    data_subset(d, mode, E, &t);
    t.ds = d->ds;
    d->ds = NULL;
    data_free(d);
    *d = t;
}

// A class-specific context belongs to its training classes: refuse it on
// the new classes.
static int subsample_check_csc(int csc, int mode, McErr *err) {
    if (csc && mode == SUB_NEW)
        return mc_err(err, "a class-specific prompt (--csc) has one context per training "
                      "class and cannot be evaluated on new classes; base-to-new needs a "
                      "unified context");
    return 0;
}

// ---- prompts ----

// Prompt configuration from the flags; defaults follow the recipe.
static int prompt_cfg(const Args *a, int coop_recipe, CoopPromptCfg *pc, McErr *err) {
    *pc = coop_recipe ? coop_prompt_defaults() : coop_prompt_paper(0);
    if (a->form) {
        int f = coop_form_parse(a->form);
        if (f < 0) return mc_err(err, "--form %s: expected template or paper", a->form);
        pc->form = f;
        pc->pool = f == COOP_FORM_TEMPLATE ? COOP_POOL_ARGMAX : COOP_POOL_EOT;
    }
    if (a->pool) {
        int p = coop_pool_parse(a->pool);
        if (p < 0) return mc_err(err, "--pool %s: expected argmax, eot or legacy", a->pool);
        pc->pool = p;
    }
    if (a->class_pos) {
        int p = coop_pos_parse(a->class_pos);
        if (p < 0)
            return mc_err(err, "--class-pos %s: expected end, middle or front", a->class_pos);
        pc->pos = p;
    }
    if (a->n_ctx > 0) pc->n_ctx = a->n_ctx;
    pc->csc = a->csc;
    return coop_prompt_check(pc, err);
}

// Class rows of the prompt's form; the template form replaces '_' by ' '
// in the names (CoOp), the paper form keeps them verbatim.
static int class_rows(CoopSeqs *s, const CoopPrompt *p, const TextTower *tt, Tokenizer *tok,
                      char **names, int K, McErr *err) {
    char **use = mc_malloc((size_t)K * sizeof *use);
    for (int k = 0; k < K; k++) {
        use[k] = xstrdup(names[k]);
        if (p->cfg.form == COOP_FORM_TEMPLATE)
            for (char *c = use[k]; *c; c++)
                if (*c == '_') *c = ' ';
    }
    int rc = coop_seqs_from_names(s, p, tok, (const char *const *)use, K, err);
    for (int k = 0; k < K; k++) mc_free(use[k]);
    mc_free(use);
    if (rc == 0 && text_check_ids(tt, s->ids, s->R, err)) {
        coop_seqs_free(s);
        return -1;
    }
    return rc;
}

static void banner(const McModel *m, const char *path, int random) {
    fprintf(stderr, "model %s (%s)%s | %s\n", m->name, path,
            random ? " | RANDOM WEIGHTS (not a trained model)" : "", m->how);
    fprintf(stderr, "threads %d | ISA %s | BLAS %s\n", mc_threads(), mc_isa_name(),
            mc_blas_enabled() ? "on" : "off");
}

// ---- train ----

static void train_usage(FILE *f) {
    fprintf(f,
        "usage: mclip coop train --demo [options]\n"
        "       mclip coop train --model FILE|NAME (--dataset NAME --root DIR | --data PATH |\n"
        "                        --features FILE) [options]\n"
        "\n"
        "data:    --shots K|all (all)  --sampler paper|coop (paper)  --split-seed N (42)\n"
        "         --classnames FILE  --names-form coop|paper  --fewshot-dir DIR\n"
        "         --cache DIR (features, splits, demo files)  --dump-features FILE\n"
        "         --skip-bad (report unreadable images and train without them)\n"
        "         --subsample base|new|all (all; CoOp's base-to-new: base = the first\n"
        "         ceil(K/2) classes, new = the rest, labels remapped to 0..)\n"
        "prompt:  --recipe paper|coop (paper: AdamW 3e-4 wd 0.01, bare names, eot pooling,\n"
        "         logit scale 100; coop: SGD 2e-3 cosine + 1 warm-up epoch, \"X .. X name.\",\n"
        "         the model's logit scale)  --form template|paper  --pool eot|legacy\n"
        "         --n-ctx M (16)  --csc  --class-pos end|middle|front  --init PHRASE\n"
        "         --seed N (1)  --logit-scale model|X\n"
        "optim:   --optim adamw|sgd  --lr X  --wd X  --schedule constant|cosine\n"
        "         --warmup-epochs N  --warmup-lr X  --epochs N  --batch N\n"
        "         --steps N (stop after N steps; without --epochs, as many as needed)\n"
        "         --shuffle | --no-shuffle  --chunk N (prompt rows per taped pass)\n"
        "output:  --out FILE (best prompt on val)  --out-last FILE  --fp16\n"
        "         --eval-every N (100)  --ckpt FILE  --ckpt-every N (50)  --resume\n"
        "         --threads N\n"
        "Progress goes to stderr, the results JSON to stdout.\n");
}

// Optimizer configuration from the recipe and flags.
static int opt_cfg(const Args *a, int coop_recipe, int epochs, CoopOptCfg *oc, McErr *err) {
    *oc = coop_recipe ? coop_opt_coop(epochs) : coop_opt_paper();
    oc->max_epochs = epochs;
    if (a->optim) {
        if (!strcmp(a->optim, "adamw")) {
            CoopOptCfg p = coop_opt_paper();
            oc->kind = p.kind, oc->beta1 = p.beta1, oc->beta2 = p.beta2, oc->eps = p.eps;
        } else if (!strcmp(a->optim, "sgd")) {
            oc->kind = COOP_OPT_SGD, oc->momentum = 0.9;
        } else {
            return mc_err(err, "--optim %s: expected adamw or sgd", a->optim);
        }
    }
    if (a->schedule) {
        if (!strcmp(a->schedule, "constant")) oc->sched = COOP_SCHED_CONSTANT;
        else if (!strcmp(a->schedule, "cosine")) oc->sched = COOP_SCHED_COSINE;
        else return mc_err(err, "--schedule %s: expected constant or cosine", a->schedule);
    }
    if (a->lr > 0) oc->lr = a->lr;
    if (a->wd >= 0) oc->weight_decay = a->wd;
    if (a->warmup_epochs >= 0) oc->warmup_epochs = a->warmup_epochs;
    if (a->warmup_lr > 0) oc->warmup_lr = a->warmup_lr;
    return 0;
}

static void json_results(const Args *a, const McModel *m, int random, const Data *d,
                         const CoopPrompt *p, const CoopTrainCfg *tc, const CoopTrainResult *r,
                         const char *best, const char *last) {
    MtJson *j = mt_json_new();
    mt_json_str(j, "command", "coop train");
    mt_json_str(j, "model", m->name);
    mt_json_int(j, "random_weights", random);
    mt_json_str(j, "data", d->source);
    mt_json_int(j, "classes", d->K);
    mt_json_str(j, "subsample", subsample_name(subsample_parse(a->subsample)));
    mt_json_int(j, "shots", d->shots);
    mt_json_int(j, "n_train", d->n[0]);
    mt_json_int(j, "n_val", d->n[1]);
    mt_json_str(j, "sequence_form", coop_form_name(p->cfg.form));
    mt_json_str(j, "pooling", coop_pool_name(p->cfg.pool));
    mt_json_str(j, "class_position", coop_pos_name(p->cfg.pos));
    mt_json_int(j, "n_ctx", p->cfg.n_ctx);
    mt_json_int(j, "csc", p->cfg.csc);
    mt_json_str(j, "optimizer", coop_opt_name(tc->opt.kind));
    mt_json_num(j, "lr", tc->opt.lr);
    mt_json_num(j, "weight_decay", tc->opt.weight_decay);
    mt_json_str(j, "schedule", coop_sched_name(tc->opt.sched));
    mt_json_num(j, "logit_scale", tc->scale);
    mt_json_int(j, "batch", tc->batch);
    mt_json_int(j, "epochs", tc->epochs);
    mt_json_int(j, "steps", r->steps);
    mt_json_int(j, "resumed_at", r->resumed ? r->resumed_at : -1);
    mt_json_num(j, "first_loss", r->first_loss);
    mt_json_num(j, "final_loss", r->final_loss);
    mt_json_num(j, "best_val_acc", r->best_val_acc);
    mt_json_int(j, "best_step", r->best_step);
    mt_json_num(j, "last_val_acc", r->last_val_acc);
    mt_json_num(j, "last_train_acc", r->last_train_acc);
    mt_json_num(j, "seconds", r->seconds);
    mt_json_num(j, "ms_per_step", r->ms_per_step);
    double *steps = mc_malloc((size_t)(r->n_evals + 1) * sizeof *steps);
    for (int i = 0; i < r->n_evals; i++) steps[i] = (double)r->eval_step[i];
    mt_json_nums(j, "eval_steps", steps, r->n_evals);
    mt_json_nums(j, "eval_train_acc", r->eval_train_acc, r->n_evals);
    mt_json_nums(j, "eval_val_acc", r->eval_val_acc, r->n_evals);
    mc_free(steps);
    if (best) mt_json_str(j, "best_prompt", best);
    if (last) mt_json_str(j, "last_prompt", last);
    printf("%s\n", mt_json_text(j));
    fflush(stdout);
    mt_json_free(j);
}

// Shared setup of train/eval: model path, model, hash.
typedef struct {
    char path[4096], sha[65], cache[4096];
    McModel *m;
    int random;
} ModelCtx;

static int open_model(ModelCtx *mc, const Args *a, McErr *err) {
    memset(mc, 0, sizeof *mc);
    char cb[4096];
    snprintf(mc->cache, sizeof mc->cache, "%s", cache_dir(a, cb, sizeof cb));
    if (a->demo && !a->model) {
        if (demo_model(mc->cache, mc->path, sizeof mc->path, err)) return -1;
    } else if (!a->model) {
        return mc_err(err, "--model FILE|NAME is required (or --demo)");
    } else if (resolve_model(a->model, mc->path, sizeof mc->path, err)) {
        return -1;
    }
    mc->random = coop_randmodel_is_random(mc->path);
    double t0 = mc_time();
    mc->m = mc_model_load(mc->path, a->model_name, err);
    if (!mc->m) return -1;
    if (coop_file_sha256(mc->path, mc->sha, err)) return -1;
    banner(mc->m, mc->path, mc->random);
    fprintf(stderr, "loaded and hashed in %.1f s\n", mc_time() - t0);
    if (!mc->m->image && !a->features)
        return mc_err(err, "%s has no image tower (a text-only model): use --features",
                      mc->path);
    return 0;
}

static int cmd_train(int argc, char **argv) {
    Args a;
    args_init(&a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            train_usage(stdout);
            args_free(&a);
            return 0;
        }
        int r = parse_common(&a, argc, argv, &i, "train");
        if (r <= 0) {
            if (!r) fprintf(stderr, "mclip coop train: unknown option %s\n", argv[i]);
            train_usage(stderr);
            args_free(&a);
            return 2;
        }
    }
    if (a.threads > 0) mc_set_threads(a.threads);
    McErr err;
    int rc = 1, coop_recipe = a.recipe && !strcmp(a.recipe, "coop");
    if (a.recipe && !coop_recipe && strcmp(a.recipe, "paper")) {
        fprintf(stderr, "mclip coop train: --recipe %s: expected paper or coop\n", a.recipe);
        args_free(&a);
        return 2;
    }
    int sub = subsample_parse(a.subsample);
    if (sub < 0 || a.base_to_new) {
        fprintf(stderr, "mclip coop train: %s\n", sub < 0
                ? "--subsample: expected base, new or all" : "--base-to-new is an eval option");
        args_free(&a);
        return 2;
    }
    // Demo defaults: 4 generated classes, the paper's recipe but AdamW at lr
    // 2e-3 (the random-weight features separate within tens of steps), all
    // 32 training images per step, 60 steps, an evaluation every 10.
    if (a.demo) {
        if (a.lr < 0) a.lr = 2e-3;
        if (a.batch < 0) a.batch = 32;
        if (a.steps <= 0) a.steps = 60;
        if (a.eval_every < 0) a.eval_every = 10;
        if (a.shuffle < 0) a.shuffle = 1;
    }
    ModelCtx mc;
    Data d = {0};
    Tokenizer *tok = NULL;
    CoopPrompt p = {0};
    CoopSeqs cls = {0};
    CoopTrainResult res = {0};
    char best[4096] = "", last[4096] = "", ckpt[4096] = "";
    if (open_model(&mc, &a, &err)) goto fail;
    if (load_data(&d, &a, mc.m, mc.sha, mc.cache, DS_VAL, 1, &err)) goto fail;
    int64_t E = mc.m->text.cfg.embed;
    // Base-to-new: keep the subset's classes (--dump-features writes it).
    if (subsample_check_csc(a.csc, sub, &err)) goto fail;
    data_restrict(&d, sub, E);
    if (a.dump_features && dump_features(&d, E, a.dump_features, &err)) goto fail;
    fprintf(stderr, "data %s: %d classes, %lld train, %lld val images\n", d.source, d.K,
            (long long)d.n[0], (long long)d.n[1]);

    // Prompt: configuration, initialisation, class rows.
    CoopPromptCfg pc;
    if (prompt_cfg(&a, coop_recipe, &pc, &err)) goto fail;
    tok = cli_tokenizer_load(&err);
    if (!tok) goto fail;
    int W = mc.m->text.cfg.width;
    if (a.init ? coop_prompt_init_phrase(&p, &pc, &mc.m->text, tok, a.init, d.K, &err)
               : coop_prompt_init(&p, &pc, W, d.K, a.seed, &err))
        goto fail;
    if (class_rows(&cls, &p, &mc.m->text, tok, d.classes, d.K, &err)) goto fail;

    // Training configuration.
    CoopTrainCfg tc = coop_train_defaults();
    tc.batch = a.batch > 0 ? a.batch : (coop_recipe ? 32 : 16);
    tc.epochs = a.epochs > 0 ? a.epochs : (coop_recipe ? 50 : 10);
    // --steps without --epochs: as many epochs as the steps need.
    if (a.steps > 0 && a.epochs <= 0 && d.n[0] > 0) {
        int64_t spe0 = (d.n[0] + tc.batch - 1) / tc.batch;
        tc.epochs = (int)((a.steps + spe0 - 1) / spe0);
    }
    if (opt_cfg(&a, coop_recipe, tc.epochs, &tc.opt, &err)) goto fail;
    tc.max_steps = a.steps;
    tc.shuffle = a.shuffle >= 0 ? a.shuffle : (coop_recipe || d.shots == DS_K_ALL);
    tc.seed = a.seed;
    tc.scale = logit_scale(&a, mc.m, &p.cfg);
    if (a.eval_every >= 0) tc.eval_every = a.eval_every;
    tc.chunk = a.chunk;
    tc.ckpt_every = a.ckpt_every;
    tc.resume = a.resume;
    tc.stop_after = a.stop_after;
    tc.progress = stderr;
    int n_out = 0;
    if (a.out) n_out = snprintf(best, sizeof best - 8, "%s", a.out);
    else if (a.demo) n_out = snprintf(best, sizeof best - 8, "%s/demo.prompt", mc.cache);
    if (n_out >= (int)sizeof best - 8) {
        mc_err(&err, "output path too long");
        goto fail;
    }
    if (a.out_last) snprintf(last, sizeof last, "%s", a.out_last);
    else if (best[0]) snprintf(last, sizeof last, "%s.last", best);
    if (a.ckpt) snprintf(ckpt, sizeof ckpt, "%s", a.ckpt);
    else if (best[0]) snprintf(ckpt, sizeof ckpt, "%s.ckpt", best);
    tc.best_path = best[0] ? best : NULL;
    tc.last_path = last[0] ? last : NULL;
    tc.ckpt_path = ckpt[0] ? ckpt : NULL;
    char steps_s[32], lr_s[32];
    snprintf(lr_s, sizeof lr_s, "%.6g", tc.opt.lr);
    const char *ek[] = {"optimizer", "lr", "dataset", "train_steps"};
    const char *ev[] = {coop_opt_name(tc.opt.kind), lr_s, d.source, steps_s};
    tc.meta = (CoopPromptMeta){.model_name = mc.m->name, .weights_sha256 = mc.sha,
                               .random_weights = mc.random, .classnames = d.classes,
                               .n_names = d.K, .fp16 = a.fp16, .extra_keys = ek,
                               .extra_values = ev, .n_extra = 4};
    int64_t spe = (d.n[0] + tc.batch - 1) / tc.batch, total = spe * tc.epochs;
    if (tc.max_steps > 0 && tc.max_steps < total) total = tc.max_steps;
    snprintf(steps_s, sizeof steps_s, "%lld", (long long)total);
    fprintf(stderr, "prompt: %s form, %s pooling, class %s, M %d%s, W %d, init %s | "
            "%s lr %.2e wd %g %s | batch %d, %lld steps (%lld per epoch) | logit scale %g\n",
            coop_form_name(p.cfg.form), coop_pool_name(p.cfg.pool), coop_pos_name(p.cfg.pos),
            p.cfg.n_ctx, p.cfg.csc ? " class-specific" : "", W, a.init ? a.init : "N(0, 0.02)",
            coop_opt_name(tc.opt.kind), tc.opt.lr, tc.opt.weight_decay,
            coop_sched_name(tc.opt.sched), tc.batch, (long long)total, (long long)spe,
            tc.scale);

    CoopTrainSet tr = {d.feat[0], d.labels[0], d.n[0]}, va = {d.feat[1], d.labels[1], d.n[1]};
    int trc = coop_train(&tc, &mc.m->text, &p, &cls, &tr, &va, &res, &err);
    if (trc == -1) goto fail;
    if (trc == -2) {
        fprintf(stderr, "stopped after %lld steps (--stop-after); checkpoint %s\n",
                (long long)a.stop_after, ckpt);
        rc = 0;
        goto done;
    }
    if (mc.random)
        fprintf(stderr, "NOTE: the model has RANDOM WEIGHTS; these numbers show the machinery "
                "works, not what MobileCLIP2 achieves\n");
    json_results(&a, mc.m, mc.random, &d, &p, &tc, &res, tc.best_path, tc.last_path);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip coop train: %s\n", err.msg);
done:
    coop_train_result_free(&res);
    coop_seqs_free(&cls);
    coop_prompt_free(&p);
    tok_free(tok);
    data_free(&d);
    mc_model_free(mc.m);
    args_free(&a);
    return rc;
}

// ---- eval ----

static void eval_usage(FILE *f) {
    fprintf(f,
        "usage: mclip coop eval --model FILE|NAME --prompt FILE (--dataset NAME --root DIR |\n"
        "                       --data PATH | --features FILE | --demo) [--split val|test]\n"
        "                       [--confusion OUT.csv] [--logit-scale model|X] [--threads N]\n"
        "                       [--subsample base|new|all | --base-to-new]\n"
        "Accuracy, macro-F1 and per-class accuracy as JSON on stdout; the prompt file is an\n"
        "mclip prompt or a paper .pt prompt (its pooling rule is kept).\n"
        "--subsample: CoOp's base (first ceil(K/2) classes) or new (the rest) half only;\n"
        "--base-to-new: base and new accuracy with the same prompt and their harmonic mean\n"
        "(the other fields then describe the base half).\n");
}

static int cmd_eval(int argc, char **argv) {
    Args a;
    args_init(&a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            eval_usage(stdout);
            args_free(&a);
            return 0;
        }
        int r = parse_common(&a, argc, argv, &i, "eval");
        if (r <= 0) {
            if (!r) fprintf(stderr, "mclip coop eval: unknown option %s\n", argv[i]);
            eval_usage(stderr);
            args_free(&a);
            return 2;
        }
    }
    if (!a.prompt) {
        fprintf(stderr, "mclip coop eval: --prompt FILE is required\n");
        eval_usage(stderr);
        args_free(&a);
        return 2;
    }
    if (a.threads > 0) mc_set_threads(a.threads);
    McErr err;
    int rc = 1, split = a.split ? ds_split_parse(a.split) : DS_VAL;
    ModelCtx mc;
    Data d = {0};
    Tokenizer *tok = NULL;
    CoopPromptFile pf = {0};
    CoopPrompt p = {0};
    CoopSeqs cls = {0};
    CoopEngine *e = NULL;
    int *pred = NULL;
    if (split < DS_TRAIN) {
        fprintf(stderr, "mclip coop eval: --split %s: expected train, val or test\n", a.split);
        args_free(&a);
        return 2;
    }
    // Base-to-new: the half evaluated (--base-to-new: base, then new).
    int sub = subsample_parse(a.subsample);
    if (sub < 0 || (a.base_to_new && a.subsample)) {
        fprintf(stderr, "mclip coop eval: %s\n", sub < 0
                ? "--subsample: expected base, new or all"
                : "--base-to-new evaluates both halves; drop --subsample");
        args_free(&a);
        return 2;
    }
    if (a.base_to_new) sub = SUB_BASE;
    Data dn = {0};
    CoopSeqs cls_n = {0};
    if (open_model(&mc, &a, &err)) goto fail;
    if (coop_promptfile_load(a.prompt, &pf, &err) ||
        coop_promptfile_check(&pf, mc.m->name, mc.m->text.cfg.width, &err) ||
        coop_promptfile_prompt(&pf, &p, &err))
        goto fail;
    if (load_data(&d, &a, mc.m, mc.sha, mc.cache, split, 0, &err)) goto fail;
    if (subsample_check_csc(p.cfg.csc, a.base_to_new ? SUB_NEW : sub, &err)) goto fail;
    if (a.base_to_new) data_subset(&d, SUB_NEW, mc.m->text.cfg.embed, &dn);
    data_restrict(&d, sub, mc.m->text.cfg.embed);
    if (pf.n_names && pf.n_names == d.K) {
        char s1[41], s2[41];
        coop_classnames_sha1(pf.classnames, pf.n_names, s1);
        coop_classnames_sha1(d.classes, d.K, s2);
        if (strcmp(s1, s2))
            fprintf(stderr, "warning: the prompt's class names (sha1 %s) differ from the "
                    "data's (sha1 %s)\n", s1, s2);
    }
    tok = cli_tokenizer_load(&err);
    if (!tok || class_rows(&cls, &p, &mc.m->text, tok, d.classes, d.K, &err)) goto fail;
    if (a.base_to_new && class_rows(&cls_n, &p, &mc.m->text, tok, dn.classes, dn.K, &err))
        goto fail;

    // Predictions on the split, then the metrics.
    e = coop_engine_new(&mc.m->text, a.chunk);
    double scale = logit_scale(&a, mc.m, &p.cfg), loss;
    CoopTrainSet s = {d.feat[1], d.labels[1], d.n[1]};
    pred = mc_malloc((size_t)(s.n + 1) * sizeof *pred);
    int *truth = mc_malloc((size_t)(s.n + 1) * sizeof *truth);
    for (int64_t i = 0; i < s.n; i++) truth[i] = s.labels[i];
    double acc = coop_evaluate(e, &p, &cls, &s, scale, pred, NULL, &loss);
    double f1 = s.n ? mt_macro_f1(pred, truth, s.n, d.K) : 0;
    double *pca = mc_malloc((size_t)(d.K + 1) * sizeof *pca);
    mt_per_class_accuracy(pred, truth, s.n, d.K, pca);
    if (a.confusion) {
        int64_t *cm = mc_calloc((size_t)d.K * d.K, sizeof *cm);
        mt_confusion(pred, truth, s.n, d.K, cm);
        int wr = mt_confusion_write_csv(cm, d.K, d.classes, a.confusion, &err);
        mc_free(cm);
        if (wr) {
            mc_free(truth), mc_free(pca);
            goto fail;
        }
    }
    MtJson *j = mt_json_new();
    mt_json_str(j, "command", "coop eval");
    mt_json_str(j, "model", mc.m->name);
    mt_json_int(j, "random_weights", mc.random);
    mt_json_str(j, "prompt", a.prompt);
    mt_json_str(j, "pooling", coop_pool_name(p.cfg.pool));
    mt_json_str(j, "sequence_form", coop_form_name(p.cfg.form));
    mt_json_str(j, "data", d.source);
    mt_json_str(j, "split", ds_split_name(split));
    mt_json_int(j, "n", s.n);
    mt_json_int(j, "classes", d.K);
    mt_json_num(j, "logit_scale", scale);
    mt_json_num(j, "accuracy", acc);
    mt_json_num(j, "macro_f1", f1);
    mt_json_num(j, "loss", loss);
    mt_json_nums(j, "per_class_accuracy", pca, d.K);
    if (a.confusion) mt_json_str(j, "confusion_csv", a.confusion);
    mt_json_str(j, "subsample", a.base_to_new ? "base-to-new" : subsample_name(sub));
    if (a.base_to_new) {
        // The new half with the same prompt, then H = 2 b n / (b + n).
        CoopTrainSet sn = {dn.feat[1], dn.labels[1], dn.n[1]};
        int *pred_n = mc_malloc((size_t)(sn.n + 1) * sizeof *pred_n);
        double loss_n, acc_n = coop_evaluate(e, &p, &cls_n, &sn, scale, pred_n, NULL, &loss_n);
        mc_free(pred_n);
        fprintf(stderr, "base-to-new: base %.4f (%lld images, %d classes), new %.4f (%lld "
                "images, %d classes), H %.4f\n", acc, (long long)s.n, d.K, acc_n,
                (long long)sn.n, dn.K, mt_harmonic_mean(acc, acc_n));
        mt_json_num(j, "base_accuracy", acc);
        mt_json_num(j, "new_accuracy", acc_n);
        mt_json_num(j, "harmonic_mean", mt_harmonic_mean(acc, acc_n));
        mt_json_int(j, "n_base", s.n);
        mt_json_int(j, "n_new", sn.n);
        mt_json_int(j, "base_classes", d.K);
        mt_json_int(j, "new_classes", dn.K);
    }
    printf("%s\n", mt_json_text(j));
    mt_json_free(j);
    mc_free(truth), mc_free(pca);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip coop eval: %s\n", err.msg);
done:
    mc_free(pred);
    coop_engine_free(e);
    coop_seqs_free(&cls);
    coop_seqs_free(&cls_n);
    data_free(&dn);
    coop_prompt_free(&p);
    coop_promptfile_free(&pf);
    tok_free(tok);
    data_free(&d);
    mc_model_free(mc.m);
    args_free(&a);
    return rc;
}

// ---- grad ----

static void grad_usage(FILE *f) {
    fprintf(f,
        "usage: mclip coop grad --model FILE|NAME --prompt FILE --classes NAME...\n"
        "                       --image PATH... --labels N... --out OUT.safetensors\n"
        "                       [--logit-scale model|X] [--chunk N] [--threads N]\n"
        "Writes loss [], logits [N, K], grad_ctx (d loss / d ctx, the prompt's shape),\n"
        "image_features [N, E] and text_features [K, E] (raw) for one batch.\n");
}

static int cmd_grad(int argc, char **argv) {
    Args a;
    args_init(&a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            grad_usage(stdout);
            args_free(&a);
            return 0;
        }
        int r = parse_common(&a, argc, argv, &i, "grad");
        if (r <= 0) {
            if (!r) fprintf(stderr, "mclip coop grad: unknown option %s\n", argv[i]);
            grad_usage(stderr);
            args_free(&a);
            return 2;
        }
    }
    if (!a.model || !a.prompt || !a.out || !a.classes.n || !a.images.n ||
        a.images.n != a.labels.n) {
        fprintf(stderr, "mclip coop grad: need --model, --prompt, --out, --classes and as many "
                "--labels as --image paths\n");
        grad_usage(stderr);
        args_free(&a);
        return 2;
    }
    if (a.threads > 0) mc_set_threads(a.threads);
    McErr err;
    int rc = 1, N = a.images.n, K = a.classes.n;
    ModelCtx mc;
    Tokenizer *tok = NULL;
    CoopPromptFile pf = {0};
    CoopPrompt p = {0};
    CoopSeqs cls = {0};
    CoopEngine *e = NULL;
    float *x = NULL, *img = NULL, *raw = NULL, *logits = NULL, *tfeat = NULL;
    int32_t *labels = mc_malloc((size_t)N * sizeof *labels);
    for (int i = 0; i < N; i++) {
        char *end;
        long v = strtol(a.labels.v[i], &end, 10);
        if (*end || v < 0 || v >= K) {
            fprintf(stderr, "mclip coop grad: label '%s' is not in 0..%d\n", a.labels.v[i], K - 1);
            mc_free(labels);
            args_free(&a);
            return 2;
        }
        labels[i] = (int32_t)v;
    }
    if (open_model(&mc, &a, &err)) goto fail;
    if (!mc.m->image) {
        mc_err(&err, "%s has no image tower", mc.path);
        goto fail;
    }
    if (coop_promptfile_load(a.prompt, &pf, &err) ||
        coop_promptfile_check(&pf, mc.m->name, mc.m->text.cfg.width, &err) ||
        coop_promptfile_prompt(&pf, &p, &err))
        goto fail;
    tok = cli_tokenizer_load(&err);
    if (!tok || class_rows(&cls, &p, &mc.m->text, tok, a.classes.v, K, &err)) goto fail;

    // Image features of the batch (preprocessed as the model's tag says).
    const McImageConfig *ic = &mc.m->cfg.image;
    DsPrepConfig prep;
    ds_prep_config(&prep, ic->image_size,
                   ic->interp == MC_INTERP_BICUBIC ? DS_FILTER_BICUBIC : DS_FILTER_BILINEAR,
                   ic->mean, ic->std);
    int S = ic->image_size, E = mc.m->text.cfg.embed;
    Graph *g = ag_graph_new((size_t)1 << 26);
    g->grad_enabled = 0;
    Tensor *xt = ag_tensor(g, MC_DIMS(N, 3, S, S));
    for (int i = 0; i < N; i++)
        if (ds_prep_file(xt->data + (int64_t)i * 3 * S * S, a.images.v[i], &prep, &err)) {
            ag_graph_free(g);
            goto fail;
        }
    Tensor *f = image_tower_forward(g, mc.m->image, xt, NULL);
    raw = mc_malloc((size_t)N * E * sizeof *raw);
    img = mc_malloc((size_t)N * E * sizeof *img);
    memcpy(raw, f->data, (size_t)N * E * sizeof *raw);
    memcpy(img, raw, (size_t)N * E * sizeof *img);
    ag_graph_free(g);
    coop_normalize_rows(img, N, E);

    // Loss, logits and d loss / d ctx.
    e = coop_engine_new(&mc.m->text, a.chunk);
    double scale = logit_scale(&a, mc.m, &p.cfg);
    logits = mc_malloc((size_t)N * K * sizeof *logits);
    tensor_zero_grad(p.ctx);
    double loss = coop_loss_cls(e, &p, &cls, img, labels, N, scale, logits);
    tfeat = mc_malloc((size_t)K * E * sizeof *tfeat);
    coop_text_features(e, &p, &cls, tfeat);
    StWriter *w = st_writer_new();
    float lf = (float)loss;
    st_writer_add_f32(w, "loss", 0, NULL, &lf);
    st_writer_add_f32(w, "logits", MC_DIMS(N, K), logits);
    st_writer_add_f32(w, "grad_ctx", p.ctx->ndim, p.ctx->shape, p.ctx->grad);
    st_writer_add_f32(w, "image_features", MC_DIMS(N, E), raw);
    st_writer_add_f32(w, "text_features", MC_DIMS(K, E), tfeat);
    char sc[32];
    snprintf(sc, sizeof sc, "%.17g", scale);
    st_writer_meta(w, "logit_scale", sc);
    st_writer_meta(w, "model_name", mc.m->name);
    st_writer_meta(w, "random_weights", mc.random ? "1" : "0");
    st_writer_meta(w, "pooling", coop_pool_name(p.cfg.pool));
    int wr = st_writer_save(w, a.out, &err);
    st_writer_free(w);
    if (wr) goto fail;
    printf("{\"command\": \"coop grad\", \"loss\": %.9g, \"n\": %d, \"classes\": %d, "
           "\"out\": \"%s\"}\n", loss, N, K, a.out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip coop grad: %s\n", err.msg);
done:
    mc_free(labels), mc_free(x), mc_free(img), mc_free(raw), mc_free(logits), mc_free(tfeat);
    coop_engine_free(e);
    coop_seqs_free(&cls);
    coop_prompt_free(&p);
    coop_promptfile_free(&pf);
    tok_free(tok);
    mc_model_free(mc.m);
    args_free(&a);
    return rc;
}

// ---- dispatch ----

int cli_coop(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && !strcmp(sub, "train")) return cmd_train(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "grad")) return cmd_grad(argc - 1, argv + 1);
    FILE *f = sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h")) ? stdout : stderr;
    fprintf(f, "usage: mclip coop train|eval|grad [options]   ('mclip coop train --help')\n"
               "  train   learn a CoOp prompt (--demo: generated data, random-weight S0)\n"
               "  eval    accuracy, macro-F1, per-class accuracy, confusion CSV of a prompt\n"
               "  grad    loss, logits and d loss / d ctx of one batch\n");
    return f == stdout ? 0 : 2;
}
