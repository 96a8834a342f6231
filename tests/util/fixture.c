// fixture.c - see fixture.h.
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../coop/coop.h"
#include "../../coop/vprompt.h"
#include "check.h"
#include "detweights.h"
#include "sys.h"

// ---- tensors and metadata ----

// The tensor, or NULL after a failed CHECK.
static const StTensor *find(const StFile *f, const char *name) {
    const StTensor *t = st_find(f, name);
    CHECK(t != NULL, "%s: missing tensor %s", st_path(f), name);
    return t;
}

float *fx_f32(const StFile *f, const char *name, int64_t *n) {
    const StTensor *t = find(f, name);
    if (!t) return NULL;
    McErr err;
    float *v = mc_malloc((size_t)(t->numel + 1) * sizeof *v);
    if (st_to_f32(f, t, v, t->numel, &err)) {
        CHECK(0, "%s", err.msg);
        mc_free(v);
        return NULL;
    }
    if (n) *n = t->numel;
    return v;
}

int64_t *fx_i64(const StFile *f, const char *name, int64_t *n) {
    const StTensor *t = find(f, name);
    if (!t) return NULL;
    McErr err;
    int64_t *v = mc_malloc((size_t)(t->numel + 1) * sizeof *v);
    if (st_to_i64(f, t, v, t->numel, &err)) {
        CHECK(0, "%s", err.msg);
        mc_free(v);
        return NULL;
    }
    if (n) *n = t->numel;
    return v;
}

int32_t *fx_i32(const StFile *f, const char *name, int64_t *n) {
    int64_t numel = 0;
    int64_t *v = fx_i64(f, name, &numel);
    if (!v) return NULL;
    int32_t *o = mc_malloc((size_t)(numel + 1) * sizeof *o);
    for (int64_t i = 0; i < numel; i++) o[i] = (int32_t)v[i];
    mc_free(v);
    if (n) *n = numel;
    return o;
}

JsonDoc *fx_meta_json(const StFile *f, const char *key) {
    const char *s = st_meta(f, key);
    if (!s) {
        CHECK(0, "%s: metadata %s missing", st_path(f), key);
        return NULL;
    }
    McErr err;
    JsonDoc *d = json_parse(s, strlen(s), NULL, &err);
    CHECK(d != NULL, "%s: metadata %s: %s", st_path(f), key, d ? "" : err.msg);
    return d;
}

int fx_json_int(const JsonValue *o, const char *key) {
    int64_t v = 0;
    const JsonValue *x = json_get(o, key);
    CHECK(x && json_int(x, &v) == 0, "json: integer %s missing", key);
    return (int)v;
}

void fx_json_ints(const JsonValue *o, const char *key, int *out, int max) {
    const JsonValue *a = json_get(o, key);
    CHECK(a && a->type == JSON_ARRAY && (int)a->len <= max, "json: array %s", key);
    if (!a || a->type != JSON_ARRAY) return;
    for (size_t i = 0; i < a->len && (int)i < max; i++) {
        int64_t v = 0;
        json_int(&a->items[i], &v);
        out[i] = (int)v;
    }
}

// ---- image towers ----

void fx_image_config(McImageConfig *cfg, const JsonValue *o) {
    memset(cfg, 0, sizeof *cfg);
    const JsonValue *kind = json_get(o, "kind");
    const char *k = kind && kind->type == JSON_STRING ? kind->str : "";
    cfg->image_size = fx_json_int(o, "image_size");
    cfg->embed = fx_json_int(o, "embed");
    if (!strcmp(k, "fastvit")) {
        McFastVitConfig *v = &cfg->fastvit;
        cfg->kind = MC_TRUNK_FASTVIT;
        v->n_stages = fx_json_int(o, "n_stages");
        fx_json_ints(o, "widths", v->widths, 5);
        fx_json_ints(o, "depths", v->depths, 5);
        fx_json_ints(o, "attn", v->attn, 5);
        fx_json_ints(o, "se_downsample", v->se_downsample, 5);
        v->mlp_ratio = fx_json_int(o, "mlp_ratio");
        v->attn_layernorm = fx_json_int(o, "attn_layernorm");
        v->stem_scale_branch = fx_json_int(o, "stem_scale_branch");
    } else {
        McVitConfig *v = &cfg->vit;
        cfg->kind = !strcmp(k, "vit_b_mci") ? MC_TRUNK_VIT_B_MCI : MC_TRUNK_VIT_L14;
        v->width = fx_json_int(o, "width");
        v->heads = fx_json_int(o, "heads");
        v->layers = fx_json_int(o, "layers");
        v->mlp = fx_json_int(o, "mlp");
        v->patch = fx_json_int(o, "patch");
        const JsonValue *e = json_get(o, "ln_eps");
        v->ln_eps = e ? (float)e->number : 0;
        v->conv_stem = fx_json_int(o, "conv_stem");
        v->norm_pre = fx_json_int(o, "norm_pre");
        v->cls_has_pos = fx_json_int(o, "cls_has_pos");
    }
}

ImageTower *fx_image_tower(const char *weights, const char *label, const McImageConfig *cfg,
                           int fuse) {
    McErr err;
    WeightSet *ws = ws_open(weights, &err);
    CHECK(ws != NULL, "%s: %s", weights, ws ? "" : err.msg);
    if (!ws) return NULL;
    ImageTower *tw = image_tower_load(ws, cfg, fuse, &err);
    int fin = tw ? ws_finish(ws, &err) : -1;
    CHECK(tw && fin == 0, "%s: %s", label, err.msg);
    ws_close(ws);
    if (tw && fin) image_tower_free(tw), tw = NULL;
    return tw;
}

// ---- visual prompt fixtures ----

float *fx_vp_pieces(const StFile *f, const char *prefix, int64_t P) {
    const char *names[4] = {"pad_up", "pad_down", "pad_left", "pad_right"};
    float *out = mc_malloc((size_t)P * sizeof *out);
    int64_t off = 0;
    for (int p = 0; p < 4; p++) {
        char key[64];
        int64_t n = 0;
        snprintf(key, sizeof key, "%s%s", prefix, names[p]);
        float *v = fx_f32(f, key, &n);
        if (v && off + n <= P) memcpy(out + off, v, (size_t)n * sizeof *out);
        off += n;
        mc_free(v);
    }
    CHECK(off == P, "%s: %spad_* hold %lld values, expected %lld", st_path(f), prefix,
          (long long)off, (long long)P);
    return out;
}

int fx_vp_open(FxVpCase *c, const char *name, const char *tag) {
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "tests/fixtures/vp_ref_%s.safetensors", name);
    McErr err;
    c->st = st_open(c->path, &err);
    CHECK(c->st != NULL, "%s: %s (regenerate with tests/reference/gen_vp.py)", c->path,
          c->st ? "" : err.msg);
    if (!c->st) return -1;
    c->info = fx_meta_json(c->st, "case");
    JsonDoc *di = fx_meta_json(c->st, "image_config"), *dx = fx_meta_json(c->st, "image_input");
    if (!c->info || !di || !dx) return json_free(di), json_free(dx), -1;
    c->border = fx_json_int(json_root(c->info), "border");
    fx_image_config(&c->cfg, json_root(di));

    // The images: a recipe ["input.image", [N, 3, S, S], lo, hi].
    const JsonValue *a = json_root(dx);
    const char *seed = st_meta(c->st, "detweights_seed");
    int S = c->cfg.image_size;
    c->N = a->items[1].items[0].integer;
    int64_t n = c->N * 3 * S * S;
    c->x = mc_malloc((size_t)n * sizeof *c->x);
    detweights_fill(c->x, (size_t)n, a->items[0].str, a->items[2].number, a->items[3].number,
                    seed ? strtoull(seed, NULL, 10) : 0);
    json_free(di), json_free(dx);

    // The prompt, then the weights file from the recipes and the stored
    // small tensors.
    c->theta = fx_vp_pieces(c->st, "input.", coop_vp_numel(S, c->border));
    const char *tmp = getenv("TMPDIR");
    snprintf(c->weights, sizeof c->weights, "%s/mclip_%d_%s_%s.safetensors",
             tmp ? tmp : "/tmp", (int)getpid(), tag, name);
    const char *skip[] = {"ref.", "input.", NULL};
    int rc = detweights_expand(c->path, c->weights, skip);
    CHECK(rc == 0, "%s: expanding the weight recipes failed", c->path);
    return rc;
}

void fx_vp_close(FxVpCase *c) {
    if (c->weights[0]) unlink(c->weights);
    st_close(c->st);
    json_free(c->info);
    mc_free(c->x), mc_free(c->theta);
    memset(c, 0, sizeof *c);
}

// ---- the CoOp reference ----

int fx_coop_ref_open(FxCoopRef *r) {
    static const char *const skip[] = {"ref.", "input.", NULL};
    memset(r, 0, sizeof *r);
    r->path = "tests/fixtures/coop_ref.safetensors";
    McErr err;
    r->f = st_open(r->path, &err);
    CHECK(r->f != NULL, "%s (regenerate: tests/reference/gen_coop.py)", r->f ? "" : err.msg);
    if (!r->f) return -1;

    // The model from the expanded recipes.
    char wpath[512];
    test_tmp_file(wpath, sizeof wpath, "coopw");
    CHECK(detweights_expand(r->path, wpath, skip) == 0, "expanding %s", r->path);
    r->m = mc_model_load(wpath, NULL, &err);
    unlink(wpath);
    CHECK(r->m != NULL, "loading the expanded %s: %s", r->path, r->m ? "" : err.msg);
    const char *cases = st_meta(r->f, "cases");
    r->cases = cases ? json_parse(cases, strlen(cases), NULL, &err) : NULL;
    CHECK(r->cases != NULL, "%s: metadata 'cases' missing or malformed", r->path);
    if (!r->m || !r->cases) return -1;

    // Image features (normalised here) and labels.
    r->scale = atof(st_meta(r->f, "scale"));
    r->lambda = atof(st_meta(r->f, "lambda"));
    r->img = fx_f32(r->f, "input.img", &r->N);
    r->imgc = fx_f32(r->f, "input.img_cap", &r->B);
    r->labels = fx_i32(r->f, "input.labels", NULL);
    if (!r->img || !r->imgc || !r->labels) return -1;
    int64_t E = r->m->text.cfg.embed;
    r->N /= E, r->B /= E;
    coop_normalize_rows(r->img, r->N, E);
    coop_normalize_rows(r->imgc, r->B, E);
    return 0;
}

void fx_coop_ref_close(FxCoopRef *r) {
    mc_free(r->img), mc_free(r->imgc), mc_free(r->labels);
    json_free(r->cases);
    mc_model_free(r->m);
    st_close(r->f);
    memset(r, 0, sizeof *r);
}
