// cli_common.c - inputs of the embedding commands (see cli_common.h).
//
// Dims: N images, B images of one forward pass, S input side, E embedding
// width.  Reference: open_clip CLIP.encode_image + F.normalize, with the
// eval transform of datasets/preprocess.h.
#include "cli_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "json.h"
#include "safetensors.h"
#include "tokenizer.h"

// ---- image_config metadata of reduced models ----

// Integer field key of o in [lo, hi] into *out; -1 with err otherwise.
static int cfg_int(const JsonValue *o, const char *key, int lo, int hi, int *out,
                   const char *path, McErr *err) {
    const JsonValue *v = json_get(o, key);
    int64_t x;
    if (!v || json_int(v, &x) || x < lo || x > hi)
        return mc_err(err, "%s: metadata image_config: %s: expected an integer in [%d, %d]",
                      path, key, lo, hi);
    *out = (int)x;
    return 0;
}

// Integer array field of n entries, each in [lo, hi].
static int cfg_ints(const JsonValue *o, const char *key, int n, int lo, int hi, int *out,
                    const char *path, McErr *err) {
    const JsonValue *a = json_get(o, key);
    if (!a || a->type != JSON_ARRAY || (int)a->len != n)
        return mc_err(err, "%s: metadata image_config: %s: expected an array of %d integers",
                      path, key, n);
    for (int i = 0; i < n; i++) {
        int64_t x;
        if (json_int(&a->items[i], &x) || x < lo || x > hi)
            return mc_err(err, "%s: metadata image_config: %s[%d]: expected an integer in "
                          "[%d, %d]", path, key, i, lo, hi);
        out[i] = (int)x;
    }
    return 0;
}

// Optional float array of 3 (mean, std): absent leaves out unchanged.
static int cfg_float3(const JsonValue *o, const char *key, float *out, int positive,
                      const char *path, McErr *err) {
    const JsonValue *a = json_get(o, key);
    if (!a) return 0;
    int ok = a->type == JSON_ARRAY && a->len == 3;
    for (int i = 0; ok && i < 3; i++) {
        ok = a->items[i].type == JSON_NUMBER && (!positive || a->items[i].number > 0);
        if (ok) out[i] = (float)a->items[i].number;
    }
    if (!ok)
        return mc_err(err, "%s: metadata image_config: %s: expected 3 numbers%s", path, key,
                      positive ? " > 0" : "");
    return 0;
}

static int cfg_fastvit(const JsonValue *o, McFastVitConfig *v, const char *path, McErr *err) {
    if (cfg_int(o, "n_stages", 1, 5, &v->n_stages, path, err)) return -1;
    int n = v->n_stages;
    if (cfg_ints(o, "widths", n, 1, 8192, v->widths, path, err) ||
        cfg_ints(o, "depths", n, 1, 64, v->depths, path, err) ||
        cfg_ints(o, "attn", n, 0, 1, v->attn, path, err) ||
        cfg_ints(o, "se_downsample", n, 0, 1, v->se_downsample, path, err) ||
        cfg_int(o, "mlp_ratio", 1, 16, &v->mlp_ratio, path, err) ||
        cfg_int(o, "attn_layernorm", 0, 1, &v->attn_layernorm, path, err) ||
        cfg_int(o, "stem_scale_branch", 0, 1, &v->stem_scale_branch, path, err))
        return -1;
    return 0;
}

static int cfg_vit(const JsonValue *o, McVitConfig *v, const char *path, McErr *err) {
    const JsonValue *eps = json_get(o, "ln_eps");
    if (cfg_int(o, "width", 1, 8192, &v->width, path, err) ||
        cfg_int(o, "heads", 1, 256, &v->heads, path, err) ||
        cfg_int(o, "layers", 1, 256, &v->layers, path, err) ||
        cfg_int(o, "mlp", 1, 65536, &v->mlp, path, err) ||
        cfg_int(o, "patch", 1, 64, &v->patch, path, err) ||
        cfg_int(o, "conv_stem", 0, 1, &v->conv_stem, path, err) ||
        cfg_int(o, "norm_pre", 0, 1, &v->norm_pre, path, err) ||
        cfg_int(o, "cls_has_pos", 0, 1, &v->cls_has_pos, path, err))
        return -1;
    if (!eps || eps->type != JSON_NUMBER || !(eps->number > 0 && eps->number < 1))
        return mc_err(err, "%s: metadata image_config: ln_eps: expected a number in (0, 1)",
                      path);
    if (v->width % v->heads)
        return mc_err(err, "%s: metadata image_config: width %d is not a multiple of heads %d",
                      path, v->width, v->heads);
    v->ln_eps = (float)eps->number;
    return 0;
}

// Parse the image_config JSON text into c.  0, or -1 with err.
static int parse_image_config(const char *text, McImageConfig *c, const char *path,
                              McErr *err) {
    McErr jerr;
    JsonDoc *d = json_parse(text, strlen(text), NULL, &jerr);
    if (!d) return mc_err(err, "%s: metadata image_config: %s", path, jerr.msg);
    const JsonValue *o = json_root(d), *kind = json_get(o, "kind"), *in = json_get(o, "interp");
    const char *k = kind && kind->type == JSON_STRING ? kind->str : "";
    int rc = -1;
    memset(c, 0, sizeof *c);
    c->interp = MC_INTERP_BILINEAR;
    c->std[0] = c->std[1] = c->std[2] = 1.0f;

    // Common fields, then the trunk's own.
    if (o->type != JSON_OBJECT) {
        mc_err(err, "%s: metadata image_config: expected a JSON object", path);
        goto done;
    }
    if (cfg_int(o, "image_size", 16, 4096, &c->image_size, path, err) ||
        cfg_int(o, "embed", 1, 65536, &c->embed, path, err) ||
        cfg_float3(o, "mean", c->mean, 0, path, err) || cfg_float3(o, "std", c->std, 1, path, err))
        goto done;
    if (in && !(in->type == JSON_STRING &&
                (!strcmp(in->str, "bilinear") || !strcmp(in->str, "bicubic")))) {
        mc_err(err, "%s: metadata image_config: interp: expected \"bilinear\" or \"bicubic\"",
               path);
        goto done;
    }
    if (in && !strcmp(in->str, "bicubic")) c->interp = MC_INTERP_BICUBIC;
    if (!strcmp(k, "fastvit")) {
        c->kind = MC_TRUNK_FASTVIT;
        rc = cfg_fastvit(o, &c->fastvit, path, err);
    } else if (!strcmp(k, "vit_b_mci") || !strcmp(k, "vit_l14")) {
        c->kind = !strcmp(k, "vit_b_mci") ? MC_TRUNK_VIT_B_MCI : MC_TRUNK_VIT_L14;
        rc = cfg_vit(o, &c->vit, path, err);
    } else {
        mc_err(err, "%s: metadata image_config: kind: expected \"fastvit\", \"vit_b_mci\" or "
               "\"vit_l14\"", path);
    }
done:
    json_free(d);
    return rc;
}

// Bind the image tower described by the file's image_config metadata.
// 0 when there is none (text-only custom model) or it loaded; -1 with err.
static int load_custom_image(McModel *m, const char *path, int fuse, McErr *err) {
    McErr ignored;
    StFile *st = st_open(path, &ignored);   // .pt files carry no metadata
    const char *text = st ? st_meta(st, "image_config") : NULL;
    McImageConfig c;
    int rc = text ? parse_image_config(text, &c, path, err) : 0;
    st_close(st);
    if (!text || rc) return rc;

    // The tower's keys; the text tower and logit_scale are already bound.
    WeightSet *ws = ws_open(path, err);
    if (!ws) return -1;
    ImageTower *t = image_tower_load(ws, &c, fuse, err);
    ws_ignore_prefix(ws, "text.");
    ws_ignore_prefix(ws, "logit_scale");
    if (!t || ws_finish(ws, err)) {
        image_tower_free(t);
        ws_close(ws);
        return -1;
    }
    ws_close(ws);
    m->image = t;
    m->cfg.image = c;
    snprintf(m->how + strlen(m->how), sizeof m->how - strlen(m->how),
             "; image tower from metadata image_config");
    return 0;
}

McModel *cli_model_load(const char *path, const char *name, int fuse, McErr *err) {
    McModel *m = mc_model_load_fuse(path, name, fuse, err);
    if (!m || m->image) return m;
    if (load_custom_image(m, path, fuse, err)) {
        mc_model_free(m);
        return NULL;
    }
    return m;
}

void cli_prep_config(DsPrepConfig *pc, const McModel *m, DsPrepOrder order) {
    const McImageConfig *c = &m->cfg.image;
    ds_prep_config(pc, c->image_size,
                   c->interp == MC_INTERP_BICUBIC ? DS_FILTER_BICUBIC : DS_FILTER_BILINEAR,
                   c->mean, c->std);
    pc->order = order;
}

// ---- string lists ----

void cli_list_add(CliList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
        MC_CHECK(nv != NULL, "out of memory");
        l->v = nv;
    }
    size_t len = strlen(s);
    l->v[l->n] = mc_malloc(len + 1);
    memcpy(l->v[l->n++], s, len + 1);
}

void cli_list_free(CliList *l) {
    for (int i = 0; i < l->n; i++) mc_free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int cli_list_read_lines(CliList *l, const char *path, McErr *err) {
    FILE *fp = fopen(path, "r");
    if (!fp) return mc_err(err, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len > 0) cli_list_add(l, line);
    }
    int bad = ferror(fp);
    free(line);
    fclose(fp);
    if (bad) return mc_err(err, "%s: read error", path);
    return 0;
}

int cli_list_take_args(CliList *l, int argc, char **argv, int *i) {
    int n = 0;
    while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) cli_list_add(l, argv[++*i]), n++;
    return n;
}

// A list-file entry is LIST_FILE followed by the path.
#define LIST_FILE '\x01'

void cli_list_add_file(CliList *l, const char *path) {
    char entry[4096];
    snprintf(entry, sizeof entry, "%c%s", LIST_FILE, path);
    cli_list_add(l, entry);
}

int cli_list_expand(CliList *l, const char *prog, const char *what) {
    CliList out = {0};
    for (int i = 0; i < l->n; i++) {
        McErr err;
        const char *s = l->v[i];
        if (s[0] != LIST_FILE) {
            cli_list_add(&out, s);
        } else if (cli_list_read_lines(&out, s + 1, &err)) {
            fprintf(stderr, "%s: %s file: %s\n", prog, what, err.msg);
            cli_list_free(&out);
            return 1;
        }
    }
    cli_list_free(l);
    *l = out;
    return 0;
}

// ---- option values and the tokenizer ----

int cli_int_arg(const char *prog, const char *flag, const char *v, int lo, int hi) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "%s: %s wants an integer in [%d, %d], got '%s'\n", prog, flag, lo, hi,
                v);
        return -1;
    }
    return (int)x;
}

Tokenizer *cli_tokenizer_load(McErr *err) {
    char path[1024];
    if (tok_find_vocab(path, sizeof path, err) < 0) return NULL;
    return tok_load(path, err);
}

// ---- texts ----

int cli_text_ids(const char *prog, char *const *texts, int n, int T, int32_t *ids) {
    McErr err;
    if (T != TOK_CONTEXT) {
        fprintf(stderr, "%s: the model's context is %d tokens; the CLIP tokenizer makes %d\n",
                prog, T, TOK_CONTEXT);
        return 1;
    }
    Tokenizer *tok = cli_tokenizer_load(&err);
    if (!tok) {
        fprintf(stderr, "%s: tokenizer: %s\n", prog, err.msg);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        int len = tok_encode(tok, texts[i], ids + (int64_t)i * T);
        if (len > T) fprintf(stderr, "%s: text %d has %d tokens, cut to %d\n", prog, i, len, T);
    }
    tok_free(tok);
    return 0;
}

int cli_embed_texts(const char *prog, McModel *m, const int32_t *ids, int n, int batch,
                    const McDump *dump, float *raw, float *emb) {
    TextTower *tt = &m->text;
    int64_t T = tt->cfg.context, E = tt->cfg.embed;
    McErr err;
    Graph *g = ag_graph_new((size_t)1 << 24);
    g->grad_enabled = 0;
    for (int b0 = 0; b0 < n; b0 += batch) {
        int B = n - b0 < batch ? n - b0 : batch;
        ag_graph_reset(g);

        // Forward, then F.normalize (x / max(|x|, 1e-12)).
        Tensor *p = text_tower_forward(g, tt, ids + b0 * T, B, dump, &err);
        if (!p) {
            fprintf(stderr, "%s: text %d..%d: %s\n", prog, b0, b0 + B - 1, err.msg);
            ag_graph_free(g);
            return 1;
        }
        Tensor *nrm = ag_l2norm(g, p, 1e-12f);
        memcpy(raw + b0 * E, p->data, (size_t)(B * E) * sizeof(float));
        memcpy(emb + b0 * E, nrm->data, (size_t)(B * E) * sizeof(float));
    }
    ag_graph_free(g);
    return 0;
}

// ---- images ----

// Run one batch of B preprocessed images x [B, 3, S, S] through the tower;
// raw and emb get B rows.
static void embed_batch(McModel *m, Graph *g, const float *x, int B, const CliImageOpts *o,
                        float *raw, float *emb) {
    int64_t S = m->cfg.image.image_size, E = m->cfg.image.embed;
    McImageHooks hooks = {.dump = o->dump, .dump_ctx = o->dump_ctx, .attn_block = -1};
    ag_graph_reset(g);

    // Input tensor, forward, normalise (F.normalize: x / max(|x|, 1e-12)).
    Tensor *t = ag_tensor(g, MC_DIMS(B, 3, S, S));
    memcpy(t->data, x, (size_t)t->n * sizeof(float));
    Tensor *f = image_tower_forward(g, m->image, t, &hooks);
    Tensor *n = ag_l2norm(g, f, 1e-12f);
    memcpy(raw, f->data, (size_t)(B * E) * sizeof(float));
    memcpy(emb, n->data, (size_t)(B * E) * sizeof(float));
}

int cli_embed_images(McModel *m, const DsPrepConfig *pc, const char *const *paths, int n,
                     const CliImageOpts *o, float *raw, float *emb, int *kept, int *n_kept) {
    MC_CHECK(m->image != NULL && o->batch >= 1 && n >= 1,
             "cli_embed_images: no image tower, batch %d, %d images", o->batch, n);
    int64_t E = m->cfg.image.embed;
    size_t per = (size_t)3 * pc->size * pc->size;
    int batch = o->batch < n ? o->batch : n, rc = 0, nk = 0, bad_total = 0;
    float *x = mc_malloc((size_t)batch * per * sizeof(float));
    int *status = mc_malloc((size_t)batch * sizeof *status);
    McErr *errs = mc_malloc((size_t)batch * sizeof *errs);
    Graph *g = ag_graph_new((size_t)1 << 24);
    g->grad_enabled = 0;
    double t0 = mc_time();

    for (int b0 = 0; b0 < n; b0 += batch) {
        int B = n - b0 < batch ? n - b0 : batch, good = 0;

        // Decode and preprocess the batch (parallel over files).
        ds_prep_batch(x, status, errs, paths + b0, B, pc);

        // Report bad files; keep the good ones, packed to the front.
        for (int i = 0; i < B; i++) {
            if (status[i]) {
                fprintf(stderr, "%s: %s%s\n", o->prog, o->skip_bad ? "skipped: " : "",
                        errs[i].msg);
                bad_total++;
                if (!o->skip_bad) {
                    fprintf(stderr, "%s: stopped at a bad image (nothing written; "
                            "--skip-bad leaves bad files out)\n", o->prog);
                    rc = 1;
                    goto done;
                }
                continue;
            }
            if (good != i) memcpy(x + good * per, x + i * per, per * sizeof(float));
            kept[nk + good++] = b0 + i;
        }
        if (!good) continue;

        // Forward pass of the good images.
        embed_batch(m, g, x, good, o, raw + nk * E, emb + nk * E);
        nk += good;
        if (n > batch) {
            double dt = mc_time() - t0;
            fprintf(stderr, "%s: images %d/%d, %.1f img/s\n", o->prog, b0 + B, n,
                    nk / (dt > 0 ? dt : 1e-9));
        }
    }
    if (nk == 0) {
        fprintf(stderr, "%s: none of the %d images could be read\n", o->prog, n);
        rc = 1;
    } else if (bad_total) {
        fprintf(stderr, "%s: %d of %d images skipped\n", o->prog, bad_total, n);
    }
done:
    *n_kept = nk;
    ag_graph_free(g);
    mc_free(x);
    mc_free(status);
    mc_free(errs);
    return rc;
}

// ---- dump names ----

int cli_image_dump_ok(const McModel *m, const char *s) {
    if (!m->image) return 0;
    const McImageConfig *c = &m->cfg.image;
    int fv = c->kind == MC_TRUNK_FASTVIT;
    static const char *const common[] = {"image.input", "image.stem", "image.pooled",
                                         "image.embed"};
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
        if (!strcmp(s, common[i])) return 1;
    if (fv && !strcmp(s, "image.final_conv")) return 1;
    if (!fv && (!strcmp(s, "image.tokens") || !strcmp(s, "image.norm"))) return 1;

    // image.stage.K (FastViT) or image.block.K (ViT).
    const char *pre = fv ? "image.stage." : "image.block.";
    size_t lp = strlen(pre);
    if (strncmp(s, pre, lp)) return 0;
    char *end;
    long k = strtol(s + lp, &end, 10);
    int count = fv ? c->fastvit.n_stages : c->vit.layers;
    return end != s + lp && !*end && s[lp] != '-' && s[lp] != '+' && k >= 0 && k < count;
}

void cli_image_dump_names(const McModel *m, char *buf, size_t len) {
    if (!m->image) {
        snprintf(buf, len, "(no image tower)");
        return;
    }
    const McImageConfig *c = &m->cfg.image;
    if (c->kind == MC_TRUNK_FASTVIT)
        snprintf(buf, len, "image.input, image.stem, image.stage.0 .. image.stage.%d, "
                 "image.final_conv, image.pooled, image.embed", c->fastvit.n_stages - 1);
    else
        snprintf(buf, len, "image.input, image.stem, image.tokens, image.block.0 .. "
                 "image.block.%d, image.norm, image.pooled, image.embed", c->vit.layers - 1);
}
