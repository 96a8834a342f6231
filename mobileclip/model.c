// model.c - load a MobileCLIP2 checkpoint (see model.h).
//
// Reference: open_clip model.py CustomTextCLIP state dict layout and the
// MobileCLIP2-*.json model configs (../shared/arch-spec.md sections 1, 5, 6).
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define TEXT_HEAD_SIZE 64   // every MobileCLIP2 text tower: W / heads

// ---- configuration detection ----

// Variant from the image tower keys, or NULL when none matches.
static const char *visual_variant(const WeightSet *ws) {
    int64_t s[8];
    // FastViT: width of the first stem conv (training or reparameterised form).
    int nd = ws_shape(ws, "visual.trunk.stem.0.conv_kxk.0.conv.weight", s);
    if (nd < 1) nd = ws_shape(ws, "visual.trunk.stem.0.reparam_conv.weight", s);
    if (nd >= 1) {
        switch (s[0]) {
        case 64: return "MobileCLIP2-S0";
        case 80: return "MobileCLIP2-S2";
        case 96: return "MobileCLIP2-S3";
        case 128: return "MobileCLIP2-S4";
        default: return NULL;
        }
    }
    // ViT: class token [1, 1, D].
    if (ws_shape(ws, "visual.trunk.cls_token", s) == 3) {
        if (s[2] == 768) return "MobileCLIP2-B";
        if (s[2] == 1024) return "MobileCLIP2-L-14";
    }
    return NULL;
}

// Integer metadata of a safetensors checkpoint (-1 when absent or not one).
static int meta_int(const char *path, const char *key) {
    McErr ignored;
    StFile *f = st_open(path, &ignored);
    if (!f) return -1;
    const char *v = st_meta(f, key);
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : -1;
    if (v && (end == v || *end)) x = -1;
    st_close(f);
    return (int)x;
}

// 1 if the file has one of the image tower keys the variants use.
static int has_visual(const WeightSet *ws) {
    int64_t s[8];
    return visual_variant(ws) || ws_shape(ws, "visual.trunk.head.fc.weight", s) >= 0 ||
           ws_shape(ws, "visual.trunk.head.weight", s) >= 0;
}

static int same_text(const McTextConfig *a, const McTextConfig *b) {
    return a->vocab == b->vocab && a->context == b->context && a->width == b->width &&
           a->heads == b->heads && a->layers == b->layers && a->embed == b->embed;
}

int mc_model_detect(WeightSet *ws, McModelConfig *cfg, char *name, char *how, McErr *err) {
    const char *path = ws_path(ws);
    int64_t emb[8], pos[8], prj[8];
    memset(cfg, 0, sizeof *cfg);

    // Text sizes from the embedding, positional and projection shapes.
    if (ws_shape(ws, "text.token_embedding.weight", emb) != 2 ||
        ws_shape(ws, "text.positional_embedding", pos) != 2 ||
        ws_shape(ws, "text.text_projection", prj) != 2)
        return mc_err(err, "%s: not an open_clip MobileCLIP2 checkpoint: expected "
                      "text.token_embedding.weight [V, W], text.positional_embedding [T, W] "
                      "and text.text_projection [W, E] (a checkpoint of another layout needs "
                      "converting to open_clip names first)", path);
    McTextConfig t = {.vocab = (int)emb[0], .context = (int)pos[0], .width = (int)emb[1],
                      .embed = (int)prj[1]};
    char key[128];
    for (t.layers = 0; t.layers < 1000; t.layers++) {
        snprintf(key, sizeof key, "text.transformer.resblocks.%d.ln_1.weight", t.layers);
        if (!ws_has(ws, key)) break;
    }

    // Heads: metadata of a reduced model, else the MobileCLIP2 head size.
    int heads = meta_int(path, "text_heads");
    if (heads <= 0 && t.width % TEXT_HEAD_SIZE)
        return mc_err(err, "%s: text width %d is not a multiple of the head size %d: "
                      "cannot infer the number of heads (pass the model name)", path,
                      t.width, TEXT_HEAD_SIZE);
    t.heads = heads > 0 ? heads : t.width / TEXT_HEAD_SIZE;

    // Variant (and the causal mask) from the image tower keys.
    const char *variant = visual_variant(ws);
    const McModelConfig *known = mc_config_find(variant);
    if (known && same_text(&known->text, &t)) {
        *cfg = *known;
        snprintf(name, 64, "%s", known->name);
        snprintf(how, 256, "detected from the image tower keys");
        return 0;
    }
    int causal = meta_int(path, "text_causal");
    t.causal = causal > 0;
    cfg->text = t;
    snprintf(name, 64, "custom");
    if (known)
        snprintf(how, 256, "image keys look like %s but the text tower differs; text sizes "
                 "from the key shapes, %s attention", known->name,
                 t.causal ? "causal" : "bidirectional");
    else if (causal >= 0)
        snprintf(how, 256, "text sizes from the key shapes, %s attention (metadata)",
                 t.causal ? "causal" : "bidirectional");
    else
        snprintf(how, 256, "text sizes from the key shapes; %s: bidirectional attention "
                 "assumed (pass the model name to choose)",
                 has_visual(ws) ? "unknown image tower" : "no image tower keys");
    return 0;
}

// ---- loading ----

static void bind_logit_scale(McModel *m, WeightSet *ws) {
    int64_t s[8];
    int nd = ws_shape(ws, "logit_scale", s);
    // open_clip stores a 0-d tensor; a [1] tensor holds the same value.
    if (nd == 1 && s[0] == 1) m->logit_scale = ws_take(ws, "logit_scale", 1, s);
    else m->logit_scale = ws_take(ws, "logit_scale", 0, s);
}

McModel *mc_model_load(const char *path, const char *name, McErr *err) {
    return mc_model_load_fuse(path, name, 1, err);
}

McModel *mc_model_load_fuse(const char *path, const char *name, int fuse, McErr *err) {
    WeightSet *ws = ws_open(path, err);
    if (!ws) return NULL;
    McModel *m = mc_calloc(1, sizeof *m);

    // Configuration: by name (strict) or detected from the keys.
    if (name) {
        const McModelConfig *c = mc_config_find(name);
        if (!c) {
            char list[256] = "";
            for (int i = 0; i < mc_config_count; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         i ? ", " : "", mc_config_names[i]);
            mc_err(err, "unknown model name '%s' (known: %s)", name, list);
            goto fail;
        }
        m->cfg = *c;
        snprintf(m->name, sizeof m->name, "%s", c->name);
        snprintf(m->how, sizeof m->how, "given by name");
        m->has_image_cfg = 1;
    } else {
        if (mc_model_detect(ws, &m->cfg, m->name, m->how, err)) goto fail;
        m->has_image_cfg = strcmp(m->name, "custom") != 0;
    }
    m->cfg.name = m->name;

    // Text tower and logit scale.
    if (text_tower_bind(&m->text, ws, "text.", &m->cfg.text, err)) goto fail;
    bind_logit_scale(m, ws);

    // Image tower (visual.trunk.*) of a known variant; a custom text-only
    // model leaves any visual.* keys unused.
    if (m->has_image_cfg) {
        m->image = image_tower_load(ws, &m->cfg.image, fuse, err);
        if (!m->image) goto fail;
    } else {
        ws_ignore_prefix(ws, "visual.");
    }

    // One report of every missing, mis-shaped or unexpected key.
    if (ws_finish(ws, err)) goto fail;
    ws_close(ws);
    return m;

fail:
    ws_close(ws);
    mc_model_free(m);
    return NULL;
}

void mc_model_free(McModel *m) {
    if (!m) return;
    text_tower_free(&m->text);
    image_tower_free(m->image);
    tensor_free(m->logit_scale);
    mc_free(m);
}
