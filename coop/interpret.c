// interpret.c - nearest tokens, prompt similarity, amplitude charts (see
// interpret.h).  References: paper-protocol section 12; CoOp's
// interpret_prompt.py (Euclidean distances to the token embeddings).
//
// Dims: R rows, W width, V vocabulary, E embedding, n texts.
#include "interpret.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/dataset.h"
#include "../datasets/gen_dataset.h"
#include "../datasets/metrics.h"
#include "../tensor/gemm.h"

static const char *const metric_names[] = {"l2", "cosine"};

const char *coop_metric_name(CoopMetric m) { return metric_names[m]; }

int coop_metric_parse(const char *s) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(s, metric_names[i])) return i;
    return -1;
}

// ---- nearest tokens ----

// Insert (id, s) into the k-best list (ids, sc, *n): better = smaller when
// lower_better, ties to the lower id (ids arrive in increasing order, so a
// tie never displaces an earlier entry).
static void topk_push(int32_t *ids, float *sc, int *n, int k, int32_t id, float s,
                      int lower_better) {
    int pos = *n;
    while (pos > 0 && (lower_better ? s < sc[pos - 1] : s > sc[pos - 1])) pos--;
    if (pos >= k) return;
    int last = *n < k ? *n : k - 1;
    for (int j = last; j > pos; j--) ids[j] = ids[j - 1], sc[j] = sc[j - 1];
    ids[pos] = id, sc[pos] = s;
    if (*n < k) (*n)++;
}

void coop_nearest_tokens(const float *ctx, int64_t R, const float *emb, int64_t V, int64_t W,
                         int k, CoopMetric metric, int32_t *ids, float *score) {
    MC_CHECK(k >= 1 && k <= V, "coop_nearest_tokens: k %d for %lld tokens", k, (long long)V);
    // Squared norms in double: ||e||^2 of every token, ||c||^2 of every row.
    double *en = mc_malloc((size_t)V * sizeof *en), *cn = mc_malloc((size_t)R * sizeof *cn);
    #pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < V; v++) {
        double s = 0;
        for (int64_t j = 0; j < W; j++) s += (double)emb[v * W + j] * emb[v * W + j];
        en[v] = s;
    }
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t j = 0; j < W; j++) s += (double)ctx[r * W + j] * ctx[r * W + j];
        cn[r] = s;
    }
    // dots [R, V] = ctx emb^T, one GEMM.
    float *dots = mc_malloc((size_t)(R * V) * sizeof *dots);
    mc_sgemm(0, 1, (int)R, (int)V, (int)W, 1.0f, ctx, (int)W, emb, (int)W, 0.0f, dots, (int)V);

    for (int64_t r = 0; r < R; r++) {
        int n = 0;
        int32_t *id_r = ids + r * k;
        float *sc_r = score + r * k;
        for (int64_t v = 0; v < V; v++) {
            double d = dots[r * V + v], s;
            if (metric == COOP_METRIC_L2) {
                // ||c - e|| = sqrt(||c||^2 + ||e||^2 - 2 c.e), clamped at 0.
                double q = cn[r] + en[v] - 2 * d;
                s = sqrt(q > 0 ? q : 0);
            } else {
                double den = sqrt(cn[r]) * sqrt(en[v]);
                s = den > 0 ? d / den : 0;
            }
            topk_push(id_r, sc_r, &n, k, (int32_t)v, (float)s, metric == COOP_METRIC_L2);
        }
    }
    mc_free(en), mc_free(cn), mc_free(dots);
}

// ---- prompt similarity ----

void coop_prefix_feature(TextTower *tt, const float *ctx, int M, float *f) {
    int T = tt->cfg.context, W = tt->cfg.width;
    int64_t E = tt->cfg.embed, V = tt->cfg.vocab;
    MC_CHECK(M >= 1 && M <= T - 2, "coop_prefix_feature: %d context rows for %d positions", M, T);
    // open_clip's vocabulary ends with <start_of_text>, <end_of_text>.
    const float *te = tt->token_embedding->data;
    const float *sot = te + (V - 2) * W, *eot = te + (V - 1) * W, *pad = te;
    Graph *g = ag_graph_new((size_t)1 << 22);
    g->grad_enabled = 0;
    Tensor *tok = ag_tensor(g, MC_DIMS(1, T, W));
    // [SOT, ctx_1 .. ctx_M, EOT, pad ...]
    for (int t = 0; t < T; t++) {
        const float *row = t == 0 ? sot : t <= M ? ctx + (int64_t)(t - 1) * W
                         : t == M + 1 ? eot : pad;
        memcpy(tok->data + (int64_t)t * W, row, (size_t)W * sizeof(float));
    }
    int32_t pool = M + 1;
    Tensor *out = text_tower_forward_tokens(g, tt, tok, &pool, NULL);
    double s = 0;
    for (int64_t j = 0; j < E; j++) s += (double)out->data[j] * out->data[j];
    double inv = 1.0 / fmax(sqrt(s), 1e-12);
    for (int64_t j = 0; j < E; j++) f[j] = (float)(out->data[j] * inv);
    ag_graph_free(g);
}

void coop_cosine_matrix(const float *f, int n, int64_t E, float *out) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double d = 0;
            for (int64_t k = 0; k < E; k++) d += (double)f[i * E + k] * f[j * E + k];
            out[i * n + j] = (float)d;
        }
}

// ---- text buffers ----

typedef struct {
    char  *s;
    size_t len, cap;
} Buf;

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(Buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        MC_CHECK(n >= 0, "buf_printf: format error");
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->len + (size_t)n + 1) * 2;
        char *ns = mc_malloc(cap);
        if (b->s) memcpy(ns, b->s, b->len);
        mc_free(b->s);
        b->s = ns, b->cap = cap;
    }
}

static int buf_save(Buf *b, const char *path, McErr *err) {
    int rc = ds_write_file(path, b->s ? b->s : "", b->len, err);
    mc_free(b->s);
    memset(b, 0, sizeof *b);
    return rc;
}

// A CSV field: quoted (quotes doubled) when it holds a comma, quote or newline.
static void csv_field(Buf *b, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        buf_printf(b, "%s", s);
        return;
    }
    buf_printf(b, "\"");
    for (const char *p = s; *p; p++) buf_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    buf_printf(b, "\"");
}

int coop_matrix_write_csv(const float *m, int n, char *const *labels, const char *path,
                          McErr *err) {
    Buf b = {0};
    for (int j = 0; j < n; j++) buf_printf(&b, ","), csv_field(&b, labels[j]);
    buf_printf(&b, "\n");
    for (int i = 0; i < n; i++) {
        csv_field(&b, labels[i]);
        for (int j = 0; j < n; j++) buf_printf(&b, ",%.6f", m[i * n + j]);
        buf_printf(&b, "\n");
    }
    return buf_save(&b, path, err);
}

int coop_matrix_write_png(const float *m, int n, int cell, double lo, double hi,
                          const char *path, McErr *err) {
    int side = n * cell;
    uint8_t *px = mc_malloc((size_t)side * side * 3);
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            double v = (m[(y / cell) * n + x / cell] - lo) / (hi > lo ? hi - lo : 1);
            mt_blues(v < 0 ? 0 : v > 1 ? 1 : v, px + ((size_t)y * side + x) * 3);
        }
    int rc = gen_write_image(path, side, side, 3, px, 0, 0, err);
    mc_free(px);
    return rc;
}

// ---- amplitude ----

void coop_amplitude(const float *ctx, int64_t R, int64_t W, float *a) {
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t d = 0; d < W; d++) s += (double)ctx[r * W + d] * ctx[r * W + d];
        for (int64_t d = 0; d < W; d++)
            a[r * W + d] = s > 0 ? (float)((double)ctx[r * W + d] * ctx[r * W + d] / s) : 0.0f;
    }
}

// Geometry of the chart (pixels).
enum { SVG_COLS = 4, PANEL_W = 220, PANEL_H = 130, PAD_L = 36, PAD_T = 34, PAD_B = 22,
       TITLE_H = 28 };

int coop_amplitude_svg(const float *a, int64_t R, int64_t W, int bins, const char *title,
                       const char *path, McErr *err) {
    if (bins < 1) bins = 1;
    float amax = 0;
    for (int64_t i = 0; i < R * W; i++) amax = fmaxf(amax, a[i]);
    if (!(amax > 0)) amax = 1;
    int cols = R < SVG_COLS ? (int)R : SVG_COLS, rows = (int)((R + SVG_COLS - 1) / SVG_COLS);
    int width = cols * PANEL_W + 10, height = TITLE_H + rows * PANEL_H + 10;
    int64_t *hist = mc_malloc((size_t)bins * sizeof *hist);
    // Log axis: log10(count + 1) up to log10(W + 1).
    double ytop = log10((double)W + 1);
    Buf b = {0};
    buf_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"10\">\n", width, height);
    buf_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    buf_printf(&b, "<text x=\"8\" y=\"18\" font-size=\"13\">");
    for (const char *p = title; *p; p++)   // XML-escape the title
        buf_printf(&b, *p == '<' ? "&lt;" : *p == '&' ? "&amp;" : *p == '>' ? "&gt;" : "%c", *p);
    buf_printf(&b, " (x_d^2 / sum x^2 per row, %d bins of [0, %.3g], log counts; red: 1/W)"
               "</text>\n", bins, amax);
    for (int64_t r = 0; r < R; r++) {
        // Histogram of row r.
        memset(hist, 0, (size_t)bins * sizeof *hist);
        for (int64_t d = 0; d < W; d++) {
            int k = (int)(a[r * W + d] / amax * bins);
            hist[k < bins ? k : bins - 1]++;
        }
        int x0 = (int)(r % SVG_COLS) * PANEL_W + PAD_L;
        int y0 = TITLE_H + (int)(r / SVG_COLS) * PANEL_H + PAD_T - 20;
        int pw = PANEL_W - PAD_L - 8, ph = PANEL_H - PAD_T - PAD_B + 20;
        buf_printf(&b, "<g><text x=\"%d\" y=\"%d\">ctx[%lld]</text>\n", x0, y0 - 4,
                   (long long)r);
        buf_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                   "stroke=\"#888\"/>\n", x0, y0, pw, ph);
        for (int k = 0; k < bins; k++) {
            if (!hist[k]) continue;
            double h = log10((double)hist[k] + 1) / ytop * ph;
            buf_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"#3b75af\"/>\n", x0 + (double)k * pw / bins, y0 + ph - h,
                       (double)pw / bins, h);
        }
        // The even-spread marker at 1 / W, and axis labels.
        double xm = x0 + (1.0 / (double)W) / amax * pw;
        buf_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"red\"/>\n",
                   xm, y0, xm, y0 + ph);
        buf_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%lld</text>"
                   "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>\n", x0 - 3, y0 + 8,
                   (long long)W, x0 - 3, y0 + ph);
        buf_printf(&b, "<text x=\"%d\" y=\"%d\">0</text><text x=\"%d\" y=\"%d\" "
                   "text-anchor=\"end\">%.3g</text></g>\n", x0, y0 + ph + 12, x0 + pw,
                   y0 + ph + 12, amax);
    }
    buf_printf(&b, "</svg>\n");
    mc_free(hist);
    return buf_save(&b, path, err);
}
