// cli_inspect.c - `mclip inspect FILE`: what a checkpoint or prompt file
// holds.
//
//   mclip inspect [--summary] FILE
//
// FILE is a safetensors file or a torch.save zip (.pt / .bin), told apart by
// content.  Printed to stdout: the format, metadata (safetensors
// __metadata__, or every non-tensor value of a .pt file such as a prompt's
// meta dict), every tensor with dtype and shape (not with --summary), the
// parameter count (BatchNorm running statistics and integer counters are
// counted apart, as buffers), and which MobileCLIP2 model the keys and
// shapes describe (mobileclip/config.h: text width and depth, image trunk
// kind, FastViT stage widths and depths, ViT width and depth; "unknown"
// otherwise), with whether the image tower is in the fused (reparam_conv)
// or the training (unfused) form.  For a CoOp prompt file it also checks
// the context width against the model named in meta.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../coop/cli.h"
#include "config.h"
#include "safetensors.h"
#include "torch_pt.h"

// One tensor: its printed path, the key used for model detection (the path
// without a state_dict./model./module. wrapper), dtype and shape.
typedef struct {
    char    *path;
    const char *key;
    StDtype  dtype;
    int      ndim;
    int64_t  shape[ST_MAXDIM];
    int64_t  numel;
} Item;

typedef struct {
    Item *v;
    int   n, cap;
} Items;

static void items_add(Items *it, const char *path, StDtype dt, int ndim, const int64_t *shape,
                      int64_t numel) {
    if (it->n == it->cap) {
        it->cap = it->cap ? it->cap * 2 : 256;
        it->v = realloc(it->v, (size_t)it->cap * sizeof *it->v);
        MC_CHECK(it->v != NULL, "inspect: out of memory");
    }
    Item *x = &it->v[it->n++];
    size_t n = strlen(path) + 1;
    x->path = memcpy(mc_malloc(n), path, n);
    x->key = x->path;
    x->dtype = dt, x->ndim = ndim, x->numel = numel;
    memcpy(x->shape, shape, (size_t)ndim * sizeof *shape);
}

static const Item *lookup(const Items *it, const char *key) {
    for (int i = 0; i < it->n; i++)
        if (!strcmp(it->v[i].key, key)) return &it->v[i];
    return NULL;
}

// Dim d of key (d < 0 counts from the end), or -1 when absent.
static int64_t dim_of(const Items *it, int d, const char *key) {
    const Item *x = lookup(it, key);
    if (!x || x->ndim == 0) return -1;
    if (d < 0) d += x->ndim;
    return d >= 0 && d < x->ndim ? x->shape[d] : -1;
}

// Number of blocks: n such that <prefix>0<suffix> .. <prefix>n-1<suffix> exist.
static int count_blocks(const Items *it, const char *prefix, const char *suffix) {
    char key[256];
    int n = 0;
    for (; n < 1000; n++) {
        snprintf(key, sizeof key, "%s%d%s", prefix, n, suffix);
        if (!lookup(it, key)) break;
    }
    return n;
}

static char *shape_str(const int64_t *shape, int ndim, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
    return buf;
}

// 74835073 -> "74,835,073"
static char *group(int64_t v, char *buf, size_t len) {
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%lld", (long long)v), k = 0;
    for (int i = 0; i < n && (size_t)k + 2 < len; i++) {
        if (i && raw[i - 1] != '-' && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = raw[i];
    }
    buf[k] = 0;
    return buf;
}

// ---- torch trees ----

// A string as a quoted literal; control bytes escaped.
static void print_str(const char *s) {
    putchar('\'');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else if (c == '\'' || c == '\\') printf("\\%c", c);
        else putchar(c);
    }
    putchar('\'');
}

static int scalar_kind(PtKind k) {
    return k == PT_NONE || k == PT_BOOL || k == PT_INT || k == PT_FLOAT || k == PT_STR;
}

static void print_scalar(const PtValue *v) {
    switch (v->kind) {
    case PT_NONE: printf("None"); break;
    case PT_BOOL: printf(v->i ? "True" : "False"); break;
    case PT_INT: printf("%lld", (long long)v->i); break;
    case PT_FLOAT: printf("%.9g", v->f); break;
    case PT_STR: print_str(v->s); break;
    default: printf("<%s>", pt_kind_name(v->kind)); break;
    }
}

#define LIST_SHOWN 5    // items of a list of scalars printed in full

// Walk the tree: tensors go to items, other leaves are printed as
// "path = value".  The tree is acyclic and shallow (torch_pt.h); *budget
// bounds the walk when values are shared many times.
static void walk(const PtValue *v, char *path, size_t len, Items *it, int64_t *budget) {
    if (--*budget < 0) return;
    size_t at = strlen(path);
    if (v->kind == PT_TENSOR) {
        items_add(it, path, v->t->dtype, v->t->ndim, v->t->shape, v->t->numel);
        return;
    }
    if (v->kind == PT_DICT) {
        if (v->n == 0) printf("  %s = {}\n", path);
        for (int64_t i = 0; i < v->n; i++) {
            const PtValue *k = v->keys[i];
            if (k->kind == PT_STR) snprintf(path + at, len - at, "%s%s", at ? "." : "", k->s);
            else snprintf(path + at, len - at, "%s%lld", at ? "." : "", (long long)k->i);
            walk(v->items[i], path, len, it, budget);
        }
        path[at] = 0;
        return;
    }
    if (v->kind == PT_LIST || v->kind == PT_TUPLE) {
        int scalars = 1;
        for (int64_t i = 0; i < v->n && scalars; i++) scalars = scalar_kind(v->items[i]->kind);
        if (scalars) {
            // A list of scalars on one line (class names: the first few).
            printf("  %s = %s of %lld: ", path, pt_kind_name(v->kind), (long long)v->n);
            for (int64_t i = 0; i < v->n && i < LIST_SHOWN; i++) {
                if (i) printf(", ");
                print_scalar(v->items[i]);
            }
            printf("%s\n", v->n > LIST_SHOWN ? ", ..." : "");
            return;
        }
        for (int64_t i = 0; i < v->n; i++) {
            snprintf(path + at, len - at, "[%lld]", (long long)i);
            walk(v->items[i], path, len, it, budget);
        }
        path[at] = 0;
        return;
    }
    printf("  %s = ", path);
    print_scalar(v);
    printf("\n");
}

// Detection keys: drop a state_dict./model. wrapper and a module. prefix.
static void strip_wrappers(Items *it) {
    const char *wrap[] = {"state_dict.", "model."};
    for (int w = 0; w < 2; w++) {
        size_t k = strlen(wrap[w]);
        int all = it->n > 0;
        for (int i = 0; i < it->n && all; i++) all = !strncmp(it->v[i].key, wrap[w], k);
        if (all)
            for (int i = 0; i < it->n; i++) it->v[i].key += k;
    }
    int all = it->n > 0;
    for (int i = 0; i < it->n && all; i++) all = !strncmp(it->v[i].key, "module.", 7);
    if (all)
        for (int i = 0; i < it->n; i++) it->v[i].key += 7;
}

// ---- model detection ----

typedef struct {
    int text_width, text_layers, embed;
    McTrunkKind kind;
    int known_kind;                    // 0: no image trunk recognised
    int n_stages, widths[8], depths[8];  // FastViT
    int vit_width, vit_layers;         // ViT
} Seen;

static void detect(const Items *it, Seen *s) {
    memset(s, 0, sizeof *s);

    // Text tower: token embedding [V, W], blocks, projection [W, E].
    s->text_width = (int)dim_of(it, 1, "text.token_embedding.weight");
    if (s->text_width < 0) s->text_width = (int)dim_of(it, 0, "text.ln_final.weight");
    s->text_layers = count_blocks(it, "text.transformer.resblocks.", ".ln_1.weight");
    s->embed = (int)dim_of(it, 1, "text.text_projection");

    // FastViT: visual.trunk.stages.*; stage widths from mlp.fc2.bias [C].
    int stages = 0;
    for (int i = 0; i < it->n && !stages; i++)
        stages = !strncmp(it->v[i].key, "visual.trunk.stages.", 20);
    if (stages) {
        s->kind = MC_TRUNK_FASTVIT, s->known_kind = 1;
        for (; s->n_stages < 8; s->n_stages++) {
            char prefix[64], key[128];
            snprintf(prefix, sizeof prefix, "visual.trunk.stages.%d.blocks.", s->n_stages);
            snprintf(key, sizeof key, "%s0.mlp.fc2.bias", prefix);
            int64_t w = dim_of(it, 0, key);
            if (w < 0) break;
            s->widths[s->n_stages] = (int)w;
            s->depths[s->n_stages] = count_blocks(it, prefix, ".mlp.fc2.bias");
        }
        return;
    }

    // ViT: width from the first block's norm1 [D]; B has the conv stem
    // (patch_embed.backbone.*), L-14 a patch conv and norm_pre.
    int64_t d = dim_of(it, 0, "visual.trunk.blocks.0.norm1.weight");
    if (d > 0) {
        s->vit_width = (int)d;
        s->vit_layers = count_blocks(it, "visual.trunk.blocks.", ".norm1.weight");
        s->known_kind = 1, s->kind = MC_TRUNK_VIT_L14;
        for (int i = 0; i < it->n; i++)
            if (!strncmp(it->v[i].key, "visual.trunk.patch_embed.backbone.", 34))
                s->kind = MC_TRUNK_VIT_B_MCI;
    }
}

static int matches(const McModelConfig *c, const Seen *s) {
    if (c->text.width != s->text_width || c->text.layers != s->text_layers ||
        c->text.embed != s->embed || !s->known_kind || c->image.kind != s->kind)
        return 0;
    if (s->kind != MC_TRUNK_FASTVIT)
        return c->image.vit.width == s->vit_width && c->image.vit.layers == s->vit_layers;
    const McFastVitConfig *f = &c->image.fastvit;
    if (f->n_stages != s->n_stages) return 0;
    for (int i = 0; i < f->n_stages; i++)
        if (f->widths[i] != s->widths[i] || f->depths[i] != s->depths[i]) return 0;
    return 1;
}

static void print_model(const Items *it) {
    Seen s;
    detect(it, &s);
    const char *name = "unknown";
    for (int i = 0; i < mc_config_count; i++) {
        const McModelConfig *c = mc_config_find(mc_config_names[i]);
        if (c && matches(c, &s)) name = c->name;
    }

    // What was seen, so an "unknown" says why.
    printf("model       %s\n", name);
    if (s.text_width > 0)
        printf("  text      width %d, %d layers, embed %d\n", s.text_width, s.text_layers,
               s.embed);
    else
        printf("  text      no text tower keys (text.token_embedding / ln_final)\n");
    if (s.known_kind && s.kind == MC_TRUNK_FASTVIT) {
        printf("  image     FastViT, %d stages, widths", s.n_stages);
        for (int i = 0; i < s.n_stages; i++) printf("%s%d", i ? "," : " ", s.widths[i]);
        printf(", depths");
        for (int i = 0; i < s.n_stages; i++) printf("%s%d", i ? "," : " ", s.depths[i]);
        printf("\n");
    } else if (s.known_kind) {
        printf("  image     ViT (%s), width %d, %d layers\n",
               s.kind == MC_TRUNK_VIT_B_MCI ? "conv stem" : "patch 14", s.vit_width,
               s.vit_layers);
    } else {
        printf("  image     no image trunk recognised (visual.trunk.stages / blocks)\n");
    }

    // Fused (reparam_conv) or training form (branch keys) image tower.
    int fused = 0, branches = 0;
    for (int i = 0; i < it->n; i++) {
        const char *k = it->v[i].key;
        if (strncmp(k, "visual.", 7)) continue;
        if (strstr(k, "reparam_conv.")) fused++;
        if (strstr(k, ".conv_kxk.") || strstr(k, ".conv_scale.") || strstr(k, ".large_conv.") ||
            strstr(k, ".small_conv.") || strstr(k, ".pos_enc.") || strstr(k, ".identity."))
            branches++;
    }
    if (fused && !branches)
        printf("  form      fused image tower (%d reparam_conv tensors)\n", fused);
    else if (branches && !fused)
        printf("  form      unfused image tower (training form, %d branch tensors)\n", branches);
    else if (fused && branches)
        printf("  form      partly fused image tower (%d reparam_conv, %d branch tensors)\n",
               fused, branches);
    else if (s.known_kind && s.kind != MC_TRUNK_FASTVIT)
        printf("  form      ViT image tower (nothing to fuse)\n");
}

// A CoOp prompt file: {'ctx': tensor, 'meta': {...}}.
static void print_prompt(const PtFile *f) {
    const PtValue *root = pt_root(f), *meta = pt_get(root, "meta");
    const PtTensor *ctx = pt_as_tensor(pt_get(root, "ctx"));
    if (!ctx || !meta || meta->kind != PT_DICT) return;
    const char *type = pt_as_str(pt_get(meta, "prompt_type"));
    const char *ver = pt_as_str(pt_get(meta, "coop_version"));
    const char *model = pt_as_str(pt_get(meta, "model_name"));
    char sh[128];
    printf("prompt      %s prompt, ctx %s, coop_version %s%s\n", type ? type : "text",
           shape_str(ctx->shape, ctx->ndim, sh, sizeof sh), ver ? ver : "v0.1.0",
           ver ? "" : " (absent: legacy pooling)");
    const McModelConfig *c = mc_config_find(model);
    if (!model) {
        printf("  model     meta.model_name missing\n");
    } else if (!c) {
        printf("  model     %s (unknown model)\n", model);
    } else if ((!type || !strcmp(type, "text")) && ctx->ndim == 2) {
        int ok = ctx->shape[1] == c->text.width;
        printf("  model     %s: context width %lld %s text width %d\n", c->name,
               (long long)ctx->shape[1], ok ? "matches" : "DOES NOT match", c->text.width);
    } else {
        printf("  model     %s\n", c->name);
    }
}

// ---- the command ----

static void print_tensors(const Items *it, int summary) {
    int64_t params = 0, buffers = 0;
    char sh[160], num[32];
    printf("tensors     %d\n", it->n);
    for (int i = 0; i < it->n; i++) {
        const Item *x = &it->v[i];
        size_t n = strlen(x->path);
        int stat = (n >= 12 && !strcmp(x->path + n - 12, "running_mean")) ||
                   (n >= 11 && !strcmp(x->path + n - 11, "running_var"));
        if (st_dtype_is_float(x->dtype) && !stat) params += x->numel;
        else buffers += x->numel;
        if (!summary)
            printf("  %-60s %-4s %s\n", x->path, st_dtype_name(x->dtype),
                   shape_str(x->shape, x->ndim, sh, sizeof sh));
    }
    printf("parameters  %s", group(params, num, sizeof num));
    printf(" (+ %s buffer elements: BN running statistics, integer tensors)\n",
           group(buffers, num, sizeof num));
}

static int inspect_safetensors(const char *path, int summary) {
    McErr err;
    StFile *f = st_open(path, &err);
    if (!f) {
        fprintf(stderr, "mclip inspect: %s\n", err.msg);
        return 1;
    }
    Items it = {0};
    printf("file        %s\nformat      safetensors\n", path);
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *v = st_meta(f, st_meta_key(f, i));
        printf("  %s = %.*s%s\n", st_meta_key(f, i), 200, v, strlen(v) > 200 ? " ..." : "");
    }
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        items_add(&it, t->name, t->dtype, t->ndim, t->shape, t->numel);
    }
    print_tensors(&it, summary);
    print_model(&it);
    for (int i = 0; i < it.n; i++) mc_free(it.v[i].path);
    free(it.v);
    st_close(f);
    return 0;
}

static int inspect_torch(const char *path, int summary) {
    McErr err;
    PtFile *f = pt_open(path, &err);
    if (!f) {
        fprintf(stderr, "mclip inspect: %s\n", err.msg);
        return 1;
    }
    Items it = {0};
    char buf[4096] = "";
    int64_t budget = 1 << 22;
    printf("file        %s\nformat      torch.save zip (%s at the root)\n", path,
           pt_kind_name(pt_root(f)->kind));
    walk(pt_root(f), buf, sizeof buf, &it, &budget);
    strip_wrappers(&it);
    print_tensors(&it, summary);
    if (pt_get(pt_root(f), "ctx") && pt_get(pt_root(f), "meta")) print_prompt(f);
    else print_model(&it);
    for (int i = 0; i < it.n; i++) mc_free(it.v[i].path);
    free(it.v);
    pt_close(f);
    return 0;
}

int cli_inspect(int argc, char **argv) {
    int summary = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--summary") || !strcmp(argv[i], "-s")) {
            summary = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: mclip inspect [--summary] FILE\n\n"
                   "List the tensors (dtype, shape) and metadata of a safetensors or torch.save\n"
                   "file, count parameters and name the MobileCLIP2 model the keys describe.\n"
                   "  --summary, -s   skip the per-tensor lines\n");
            return 0;
        } else if (!path && argv[i][0] != '-') {
            path = argv[i];
        } else {
            fprintf(stderr, "mclip inspect: unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: mclip inspect [--summary] FILE\n");
        return 2;
    }
    return pt_sniff(path) ? inspect_torch(path, summary) : inspect_safetensors(path, summary);
}
