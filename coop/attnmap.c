// attnmap.c - attention maps of the image tower (see attnmap.h).
// References: paper-protocol section 10; PyTorch F.interpolate (bilinear,
// align_corners = False); matplotlib's jet segment data (_cm.py).
//
// Dims: S side, T tokens, G grid side.
#include "attnmap.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/gen_dataset.h"

#define FASTVIT_HEAD_DIM 32   // every FastViT attention head (arch-spec section 13 item 8)

// ---- layers ----

// The integer after the first occurrence of word in s (e.g. "stage" in
// "trunk.stages.3.blocks.1"), or -1.
static int number_after(const char *s, const char *word) {
    const char *p = strstr(s, word);
    if (!p) return -1;
    p += strlen(word);
    while (*p && !isdigit((unsigned char)*p)) {
        if (*p != '.' && *p != 's' && *p != '_') return -1;
        p++;
    }
    if (!isdigit((unsigned char)*p)) return -1;
    return (int)strtol(p, NULL, 10);
}

int coop_attn_parse_layer(const ImageTower *tw, const char *name, int *stage, int *block,
                          McErr *err) {
    const McImageConfig *c = image_tower_config(tw);
    int blk = number_after(name, "block");
    if (c->kind != MC_TRUNK_FASTVIT) {
        if (blk < 0 || blk >= c->vit.layers)
            return mc_err(err, "attention layer '%s': the ViT has blocks 0..%d (name one as "
                          "block.J)", name, c->vit.layers - 1);
        *stage = 0, *block = blk;
        return 0;
    }
    const McFastVitConfig *f = &c->fastvit;
    int st = number_after(name, "stage");
    // The attention layers, for the message.
    char have[256] = "";
    size_t o = 0;
    for (int k = 0; k < f->n_stages && o < sizeof have - 32; k++)
        if (f->attn[k])
            o += (size_t)snprintf(have + o, sizeof have - o, "%sstage.%d.block.0..%d",
                                  o ? ", " : "", k, f->depths[k] - 1);
    if (st < 0 || blk < 0 || st >= f->n_stages || blk >= f->depths[st] || !f->attn[st])
        return mc_err(err, "attention layer '%s': not an attention block of this FastViT "
                      "(attention layers: %s)", name, have[0] ? have : "none");
    *stage = st, *block = blk;
    return 0;
}

int coop_attn_heads(const ImageTower *tw, int stage, int block) {
    const McImageConfig *c = image_tower_config(tw);
    (void)block;
    if (c->kind != MC_TRUNK_FASTVIT) return c->vit.heads;
    return c->fastvit.widths[stage] / FASTVIT_HEAD_DIM;
}

// ---- steps ----

void coop_attn_reduce(const float *probs, int T, int skip, float *m) {
    int n = T - skip;
    // Mean over the queries of each key column, in double.
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int i = 0; i < T; i++) s += probs[(int64_t)i * T + skip + j];
        m[j] = (float)(s / T);
    }
    // Min-max normalisation (a flat map stays 0).
    float lo = m[0], hi = m[0];
    for (int j = 1; j < n; j++) lo = fminf(lo, m[j]), hi = fmaxf(hi, m[j]);
    for (int j = 0; j < n; j++) m[j] = hi > lo ? (m[j] - lo) / (hi - lo) : 0.0f;
}

// Source index pair and weight of destination d (align_corners = False).
static void bilinear_tap(int d, int in, int out, int *i0, int *i1, float *w1) {
    double src = (d + 0.5) * ((double)in / out) - 0.5;
    if (src < 0) src = 0;
    int i = (int)src;
    if (i > in - 1) i = in - 1;
    *i0 = i;
    *i1 = i + 1 < in ? i + 1 : in - 1;
    *w1 = (float)(src - i);
}

void coop_bilinear(const float *src, int h, int w, float *dst, int H, int W) {
    for (int y = 0; y < H; y++) {
        int y0, y1;
        float wy;
        bilinear_tap(y, h, H, &y0, &y1, &wy);
        for (int x = 0; x < W; x++) {
            int x0, x1;
            float wx;
            bilinear_tap(x, w, W, &x0, &x1, &wx);
            // Interpolate along x on both rows, then along y.
            float top = (1 - wx) * src[y0 * w + x0] + wx * src[y0 * w + x1];
            float bot = (1 - wx) * src[y1 * w + x0] + wx * src[y1 * w + x1];
            dst[y * W + x] = (1 - wy) * top + wy * bot;
        }
    }
}

// matplotlib's jet: (x, value) breakpoints per channel, linear in between.
typedef struct {
    int n;
    double x[6], v[6];
} Segments;

static const Segments jet_seg[3] = {
    {5, {0.00, 0.35, 0.66, 0.89, 1.00}, {0.0, 0.0, 1.0, 1.0, 0.5}},                   // red
    {6, {0.000, 0.125, 0.375, 0.640, 0.910, 1.000}, {0.0, 0.0, 1.0, 1.0, 0.0, 0.0}},  // green
    {5, {0.00, 0.11, 0.34, 0.65, 1.00}, {0.5, 1.0, 1.0, 0.0, 0.0}},                   // blue
};

static double seg_eval(const Segments *s, double x) {
    for (int k = 1; k < s->n; k++)
        if (x <= s->x[k])
            return s->v[k - 1] + (s->v[k] - s->v[k - 1]) * (x - s->x[k - 1]) /
                                 (s->x[k] - s->x[k - 1]);
    return s->v[s->n - 1];
}

void coop_jet(double v, uint8_t rgb[3]) {
    // 256-entry table: entry i holds the segments at x = i / 255.
    if (!(v > 0)) v = 0;
    if (v > 1) v = 1;
    int i = (int)(v * 256);
    if (i > 255) i = 255;
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)(seg_eval(&jet_seg[c], i / 255.0) * 255.0);
}

void coop_attn_overlay(const float *map, const uint8_t *img, int S, double alpha,
                       uint8_t *out) {
    for (int64_t p = 0; p < (int64_t)S * S; p++) {
        uint8_t jet[3];
        coop_jet(map[p], jet);
        for (int c = 0; c < 3; c++) {
            double v = (1 - alpha) * img[p * 3 + c] + alpha * jet[c];
            out[p * 3 + c] = (uint8_t)lround(v);
        }
    }
}

void coop_attn_display(const float *x, int S, const float mean[3], const float stdv[3],
                       uint8_t *out) {
    int64_t P = (int64_t)S * S;
    for (int c = 0; c < 3; c++)
        for (int64_t p = 0; p < P; p++) {
            double v = (double)x[c * P + p] * stdv[c] + mean[c];
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            out[p * 3 + c] = (uint8_t)lround(v * 255.0);
        }
}

int coop_write_png(const char *path, int w, int h, const uint8_t *rgb, McErr *err) {
    return gen_write_image(path, w, h, 3, rgb, 0, 0, err);
}

// ---- the map ----

int coop_attnmap(ImageTower *tw, const float *x, const CoopVPrompt *vp, int stage, int block,
                 int head, float *map, int *grid, McErr *err) {
    const McImageConfig *c = image_tower_config(tw);
    int S = c->image_size, heads = coop_attn_heads(tw, stage, block);
    if (head < 0 || head >= heads)
        return mc_err(err, "attention head %d: this layer has heads 0..%d", head, heads - 1);
    if (vp && vp->size != S)
        return mc_err(err, "attention map: the visual prompt is for %dx%d images, the tower "
                      "takes %dx%d", vp->size, vp->size, S, S);

    // One forward pass with the probe; the prompt added to the input first.
    Graph *g = ag_graph_new((size_t)1 << 24);
    g->grad_enabled = 0;
    Tensor *xt = ag_tensor(g, MC_DIMS(1, 3, S, S));
    memcpy(xt->data, x, (size_t)xt->n * sizeof(float));
    if (vp) coop_vp_add(vp->size, vp->border, vp->theta->data, xt->data, 1);
    McImageHooks hk = {.attn_stage = stage, .attn_block = block, .attn_head = head};
    image_tower_forward(g, tw, xt, &hk);
    int rc = 0;
    if (!hk.attn) {
        rc = mc_err(err, "attention map: stage %d block %d produced no attention "
                    "probabilities (not an attention block)", stage, block);
        goto done;
    }

    // Query mean, min-max, bilinear to S x S.
    int T = (int)hk.attn->shape[1], skip = c->kind == MC_TRUNK_FASTVIT ? 0 : 1;
    int G = (int)lround(sqrt((double)(T - skip)));
    if (G * G != T - skip) {
        rc = mc_err(err, "attention map: %d tokens do not form a square grid", T - skip);
        goto done;
    }
    float *m = mc_malloc((size_t)(T - skip) * sizeof *m);
    coop_attn_reduce(hk.attn->data, T, skip, m);
    coop_bilinear(m, G, G, map, S, S);
    mc_free(m);
    if (grid) *grid = G;
done:
    ag_graph_free(g);
    return rc;
}
