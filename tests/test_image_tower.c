// test_image_tower.c - the image towers against open_clip + timm.
//
// For each reference fixture (tests/fixtures/image_{s0,s2,s3,s4,b,l14}
// .safetensors from tests/reference/gen_image.py: reduced versions of the
// six MobileCLIP2 image trunks with the same block types; plus the
// full-size towers listed in MCLIP_IMAGE_FIXTURES, colon-separated, which
// tests/reference/check.sh generates):
//   * expand the weight recipes into a weights file and load the tower in
//     the training form and in the fused form;
//   * every dumped activation (stem, stages / blocks, final_conv, pooled,
//     embedding) against the float64 torch reference, both forms;
//   * the fused embedding against timm's reparameterize_model, and against
//     the unfused C embedding;
//   * d sum(r * embed) / d input against torch, both forms;
//   * the attention probe against torch;
//   * no weight ever gets a gradient buffer; parameter counts.
// Then a finite-difference check of the input gradient on small inputs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../mobileclip/image_tower.h"
#include "../mobileclip/json.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"
#include "util/detweights.h"
#include "util/fixture.h"
#include "util/gradcheck.h"

// Tolerances, relative to the reference tensor's absmax.  torch float32 vs
// float64 differ by at most 5e-6 (embedding) and 5e-6 (input gradient) on
// these fixtures (generator output, "fp32_vs_fp64" metadata); the C float
// code sums in other orders.  Observed C vs float64: see the printed lines.
#define TOL_ACT   1e-4   // activations and embeddings
#define TOL_FUSED 1e-5   // fused vs unfused C embedding (exact algebra, float rounding)
#define TOL_GRAD  1e-3   // d embed / d input
#define TOL_ATTN  1e-5   // attention probabilities (absolute; they lie in [0, 1])

static const char *const fixtures[] = {"s0", "s2", "s3", "s4", "b", "l14"};

// ---- fixture reading ----

typedef struct {
    const char *path;
    StFile *st;
    McImageConfig cfg;
    char variant[64];
    char label[64];      // variant, or the fixture's short name ("s0")
    char in_name[64];
    int64_t in_shape[4];
    double in_lo, in_hi;
    uint64_t seed;
    int probe[3];
    char weights[512];   // expanded weights file
} Fixture;

// The reduced configuration as the generator read it back from timm.
static int parse_config(Fixture *f) {
    JsonDoc *d = fx_meta_json(f->st, "image_config");
    if (!d) return -1;
    fx_image_config(&f->cfg, json_root(d));
    json_free(d);
    return 0;
}

static int parse_input(Fixture *f) {
    JsonDoc *d = fx_meta_json(f->st, "image_input");
    if (!d) return -1;
    // ["input.image", [N, 3, S, S], lo, hi]
    const JsonValue *a = json_root(d);
    int ok = a->type == JSON_ARRAY && a->len == 4 && a->items[1].len == 4;
    CHECK(ok, "%s: image_input must be [name, [N,3,S,S], lo, hi]", f->path);
    if (ok) {
        snprintf(f->in_name, sizeof f->in_name, "%s", a->items[0].str);
        for (int i = 0; i < 4; i++) json_int(&a->items[1].items[i], &f->in_shape[i]);
        f->in_lo = a->items[2].number, f->in_hi = a->items[3].number;
    }
    json_free(d);
    const char *s = st_meta(f->st, "detweights_seed");
    f->seed = s ? strtoull(s, NULL, 10) : 0;
    if ((d = fx_meta_json(f->st, "attn_probe"))) {
        for (int i = 0; i < 3; i++) {
            int64_t v = 0;
            json_int(&json_root(d)->items[i], &v);
            f->probe[i] = (int)v;
        }
        json_free(d);
    }
    s = st_meta(f->st, "variant");
    snprintf(f->variant, sizeof f->variant, "%s", s ? s : "");
    // Short label: the variant, else "s0" from ".../image_s0.safetensors".
    const char *base = strrchr(f->path, '/');
    base = base ? base + 1 : f->path;
    if (!strncmp(base, "image_", 6)) base += 6;
    snprintf(f->label, sizeof f->label, "%s", f->variant[0] ? f->variant : base);
    char *dot = strstr(f->label, ".safetensors");
    if (dot) *dot = 0;
    return ok ? 0 : -1;
}

// Number of model parameters the fixture describes (stored floats + recipes).
static int64_t fixture_params(const Fixture *f) {
    int64_t n = 0;
    for (int i = 0; i < st_count(f->st); i++) {
        const StTensor *t = st_at(f->st, i);
        if (strncmp(t->name, "visual.", 7) || t->dtype == ST_I64) continue;
        n += t->numel;
    }
    JsonDoc *d = fx_meta_json(f->st, "detweights");
    if (!d) return n;
    const JsonValue *a = json_root(d);
    for (size_t i = 0; i < a->len; i++) {
        if (strncmp(a->items[i].items[0].str, "visual.", 7)) continue;
        const JsonValue *shape = &a->items[i].items[1];
        int64_t m = 1, v;
        for (size_t j = 0; j < shape->len; j++) m *= json_int(&shape->items[j], &v) ? 0 : v;
        n += m;
    }
    json_free(d);
    return n;
}

// ---- running a tower ----

typedef struct {
    const Fixture *f;
    const char *form;
    const float *input;
    int seen;
} DumpCtx;

// Compare each dumped activation with ref.<name>.
static void on_dump(void *vctx, const char *name, const Tensor *t) {
    DumpCtx *c = vctx;
    char key[96], label[128];
    snprintf(label, sizeof label, "%s/%s %s", c->f->label,
             c->form, name);
    if (!strcmp(name, "image.input")) {
        CHECK(memcmp(t->data, c->input, (size_t)t->n * sizeof(float)) == 0,
              "%s differs from the input", label);
        return;
    }
    snprintf(key, sizeof key, "ref.%s", name);
    int64_t n = 0;
    float *want = fx_f32(c->f->st, key, &n);
    if (!want) return;
    CHECK(n == t->n, "%s: %lld values, reference has %lld", label, (long long)t->n, (long long)n);
    if (n == t->n) test_close_absmax(label, t->data, want, (size_t)n, TOL_ACT);
    mc_free(want);
    c->seen++;
}

// No weight has a gradient buffer or asks for one.
static void check_frozen(const ImageTower *tw, const char *label) {
    int bad = 0;
    for (int i = 0; i < image_tower_param_count(tw); i++) {
        const Tensor *p = image_tower_param(tw, i);
        if (p->grad || p->requires_grad) bad++;
    }
    CHECK(bad == 0, "%s: %d weight tensors have gradient buffers", label, bad);
    printf("%-48s %d weight tensors, none with a gradient buffer\n", label,
           image_tower_param_count(tw));
}

// Forward with dumps and probe; then a backward of sum(r * embed) to the
// input.  Returns the embedding (heap copy) for the fused/unfused check.
static float *run_form(const Fixture *f, int fuse, const float *input, int64_t n_in) {
    const char *form = fuse ? "fused" : "train";
    char label[128];
    snprintf(label, sizeof label, "%s/%s", f->label, form);
    ImageTower *tw = fx_image_tower(f->weights, f->path, &f->cfg, fuse);
    if (!tw) return NULL;
    CHECK(image_tower_fused(tw) == fuse, "%s: fused flag %d", label, image_tower_fused(tw));

    // Forward without a tape: every activation and the attention probe.
    Graph *g = ag_graph_new(1 << 20);
    g->grad_enabled = 0;
    Tensor *x = ag_tensor(g, 4, f->in_shape);
    memcpy(x->data, input, (size_t)n_in * sizeof(float));
    DumpCtx dc = {f, form, input, 0};
    McImageHooks hooks = {.dump = on_dump, .dump_ctx = &dc, .attn_stage = f->probe[0],
                          .attn_block = f->probe[1], .attn_head = f->probe[2]};
    Tensor *e = image_tower_forward(g, tw, x, &hooks);
    CHECK(dc.seen >= 5, "%s: only %d activations compared", label, dc.seen);
    int64_t n = 0;
    float *want = fx_f32(f->st, "ref.image.attn", &n);
    CHECK(hooks.attn && want && hooks.attn->n == n, "%s: attention probe missing or mis-sized",
          label);
    if (hooks.attn && want && hooks.attn->n == n) {
        snprintf(label + strlen(label), 32, " attn");
        test_close(label, hooks.attn->data, want, (size_t)n, TOL_ATTN, 0);
        label[strlen(label) - 5] = 0;
    }
    mc_free(want);
    float *embed = mc_malloc((size_t)e->n * sizeof(float));
    memcpy(embed, e->data, (size_t)e->n * sizeof(float));
    if (fuse && (want = fx_f32(f->st, "ref.image.embed_fused", &n))) {
        char l2[160];
        snprintf(l2, sizeof l2, "%s vs timm reparam", label);
        test_close_absmax(l2, embed, want, (size_t)n, TOL_ACT);
        mc_free(want);
    }

    // Backward: d sum(r * embed) / d input with the weights frozen.
    ag_graph_reset(g);
    g->grad_enabled = 1;
    Tensor *xg = tensor_new(4, f->in_shape);
    memcpy(xg->data, input, (size_t)n_in * sizeof(float));
    tensor_require_grad(xg);
    e = image_tower_forward(g, tw, xg, NULL);
    // The taped pass runs the same ops as the scratch-graph inference pass.
    CHECK(e->n == f->in_shape[0] * f->cfg.embed &&
          memcmp(e->data, embed, (size_t)e->n * sizeof(float)) == 0,
          "%s: the taped forward differs from the inference forward", label);
    float *r = fx_f32(f->st, "ref.r", &n);
    float *gwant = fx_f32(f->st, "ref.image.grad_input", &n);
    if (r && gwant) {
        ag_backward_seed(g, e, r);
        char l2[160];
        snprintf(l2, sizeof l2, "%s d embed/d input", label);
        test_close_absmax(l2, xg->grad, gwant, (size_t)n, TOL_GRAD);
    }
    check_frozen(tw, label);
    mc_free(r), mc_free(gwant);
    tensor_free(xg);

    // Parameter count: the training form holds exactly the checkpoint's floats.
    int64_t have = image_tower_numel(tw), want_n = fixture_params(f);
    printf("%-48s %lld parameters (checkpoint %lld)\n", label, (long long)have,
           (long long)want_n);
    if (!fuse) CHECK(have == want_n, "%s: %lld parameters, checkpoint has %lld", label,
                     (long long)have, (long long)want_n);
    else CHECK(have <= want_n, "%s: fusing added parameters", label);
    ag_graph_free(g);
    image_tower_free(tw);
    return embed;
}

// Full-size fixtures name their variant: the config read from timm must
// equal mobileclip/config.c.
static void check_variant_config(const Fixture *f) {
    if (!f->variant[0]) return;
    const McModelConfig *mc = mc_config_find(f->variant);
    CHECK(mc != NULL, "%s: unknown variant %s", f->path, f->variant);
    if (!mc) return;
    const McImageConfig *a = &mc->image, *b = &f->cfg;
    int same = a->kind == b->kind && a->image_size == b->image_size && a->embed == b->embed;
    if (a->kind == MC_TRUNK_FASTVIT) {
        const McFastVitConfig *x = &a->fastvit, *y = &b->fastvit;
        same = same && x->n_stages == y->n_stages && x->mlp_ratio == y->mlp_ratio &&
               x->attn_layernorm == y->attn_layernorm &&
               x->stem_scale_branch == y->stem_scale_branch;
        for (int k = 0; k < x->n_stages; k++)
            same = same && x->widths[k] == y->widths[k] && x->depths[k] == y->depths[k] &&
                   x->attn[k] == y->attn[k] && x->se_downsample[k] == y->se_downsample[k];
    } else {
        const McVitConfig *x = &a->vit, *y = &b->vit;
        same = same && x->width == y->width && x->heads == y->heads && x->layers == y->layers &&
               x->mlp == y->mlp && x->patch == y->patch && x->ln_eps == y->ln_eps &&
               x->conv_stem == y->conv_stem && x->norm_pre == y->norm_pre &&
               x->cls_has_pos == y->cls_has_pos;
    }
    CHECK(same, "%s: config.c's %s differs from the timm model", f->path, f->variant);
    printf("%-48s config.c matches the timm model\n", f->variant);
}

static int open_fixture(Fixture *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    McErr err;
    f->st = st_open(path, &err);
    CHECK(f->st != NULL, "%s: %s (regenerate with tests/reference/gen_image.py)", path,
          f->st ? "" : err.msg);
    if (!f->st) return -1;
    if (parse_config(f) || parse_input(f)) return -1;
    const char *tmp = getenv("TMPDIR");
    const char *base = strrchr(path, '/');
    snprintf(f->weights, sizeof f->weights, "%s/mclip_%d_%s", tmp ? tmp : "/tmp", (int)getpid(),
             base ? base + 1 : path);
    const char *skip[] = {"ref.", NULL};
    int rc = detweights_expand(path, f->weights, skip);
    CHECK(rc == 0, "%s: expanding the weight recipes failed", path);
    return rc;
}

static void close_fixture(Fixture *f) {
    if (f->weights[0]) unlink(f->weights);
    st_close(f->st);
}

static void run_fixture(const char *path) {
    Fixture f;
    if (open_fixture(&f, path) == 0) {
        check_variant_config(&f);
        int64_t n_in = tensor_numel(4, f.in_shape);
        float *input = mc_malloc((size_t)n_in * sizeof(float));
        detweights_fill(input, (size_t)n_in, f.in_name, f.in_lo, f.in_hi, f.seed);
        float *e0 = run_form(&f, 0, input, n_in);
        float *e1 = run_form(&f, 1, input, n_in);
        if (e0 && e1) {
            char label[128];
            snprintf(label, sizeof label, "%s fused vs training form",
                     f.label);
            test_close_absmax(label, e1, e0, (size_t)(f.in_shape[0] * f.cfg.embed), TOL_FUSED);
        }
        mc_free(e0), mc_free(e1), mc_free(input);
    }
    close_fixture(&f);
}

// The usage sketch of image_tower.h, on a reduced tower.
static void usage_sketch(void) {
    Fixture f;
    if (open_fixture(&f, "tests/fixtures/image_s0.safetensors") == 0) {
        McErr err;
        WeightSet *ws = ws_open(f.weights, &err);
        ImageTower *tw = ws ? image_tower_load(ws, &f.cfg, 1, &err) : NULL;
        int ok = tw != NULL;
        if (ok) {
            ws_ignore_prefix(ws, "text.");           // the text tower loads elsewhere
            ws_ignore_prefix(ws, "logit_scale");
            ok = ws_finish(ws, &err) == 0;
        }
        CHECK(ok, "usage sketch: %s", err.msg);
        if (ok) {
            int S = f.cfg.image_size;
            Graph *g = ag_graph_new(1 << 20);
            Tensor *x = ag_tensor(g, MC_DIMS(1, 3, S, S));
            tensor_fill(x, 0.5f);
            Tensor *feat = image_tower_forward(g, tw, x, NULL);
            CHECK(feat->ndim == 2 && feat->shape[0] == 1 && feat->shape[1] == f.cfg.embed,
                  "usage sketch: features are not [1, E]");
            ag_graph_free(g);
        }
        image_tower_free(tw);
        ws_close(ws);
    }
    close_fixture(&f);
}

// ---- finite differences ----

typedef struct {
    ImageTower *tw;
} FdCtx;

static Tensor *fd_build(Graph *g, Tensor **in, void *ctx) {
    return image_tower_forward(g, ((FdCtx *)ctx)->tw, in[0], NULL);
}

// Central differences of sum(r * embed) w.r.t. a few input pixels of one
// small image (the fused tower; all its ops are smooth except the SE ReLU,
// whose kink a random input does not hit).
static void fd_check(const char *name, int size, double h) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/image_%s.safetensors", name);
    Fixture f;
    if (open_fixture(&f, path) == 0) {
        // FastViT takes any size; a ViT's token grid is fixed by its config.
        MC_CHECK(f.cfg.kind == MC_TRUNK_FASTVIT || size == f.cfg.image_size,
                 "fd_check: %s takes %d pixels", name, f.cfg.image_size);
        ImageTower *tw = fx_image_tower(f.weights, f.path, &f.cfg, 1);
        if (tw) {
            Tensor *x = tensor_new(MC_DIMS(1, 3, size, size));
            detweights_fill(x->data, (size_t)x->n, "fd.image", f.in_lo, f.in_hi, 7);
            tensor_require_grad(x);
            FdCtx ctx = {tw};
            // Gradients here are up to ~0.6.  The step trades truncation
            // error against the float noise of the loss (divided by 2h):
            // observed max |analytic - numeric| 1.3e-4 (s0, h 3e-3) and
            // 5e-5 (b, h 3e-2); a wrong backward is off by ~ the gradient.
            GcOptions opt = {.h = h, .atol = 5e-4, .rtol = 1e-2, .max_elems = 60};
            char label[64];
            snprintf(label, sizeof label, "image %s %dx%d", name, size, size);
            gradcheck(label, fd_build, &ctx, &x, 1, opt);
            tensor_free(x);
            image_tower_free(tw);
        }
    }
    close_fixture(&f);
}

int main(void) {
    char path[256];
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        snprintf(path, sizeof path, "tests/fixtures/image_%s.safetensors", fixtures[i]);
        run_fixture(path);
    }

    // Full-size fixtures made by tests/reference/check.sh.
    const char *extra = getenv("MCLIP_IMAGE_FIXTURES");
    if (extra && *extra) {
        char *list = strdup(extra);
        for (char *p = strtok(list, ":"); p; p = strtok(NULL, ":")) run_fixture(p);
        free(list);
    }

    usage_sketch();
    test_seed(11);
    fd_check("s0", 32, 3e-3);
    fd_check("b", 64, 3e-2);
    return test_finish("test_image_tower");
}
