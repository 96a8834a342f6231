// coop.c - CoOp loss heads and the chunked gradient through the frozen text
// tower (see coop.h).
//
// Dims: N images, K classes, B caption pairs, E embedding width, R prompt
// rows of a text group (K class prompts, or B captions).
#include "coop.h"

#include <math.h>
#include <string.h>

// ---- engine ----

CoopEngine *coop_engine_new(TextTower *tt, int chunk) {
    CoopEngine *e = mc_calloc(1, sizeof *e);
    e->tt = tt;
    e->chunk = chunk > 0 ? chunk : COOP_DEFAULT_CHUNK;
    e->chunk_infer = COOP_INFER_CHUNK;
    e->g = ag_graph_new((size_t)1 << 24);
    return e;
}

void coop_engine_free(CoopEngine *e) {
    if (!e) return;
    ag_graph_free(e->g);
    mc_free(e->feat);
    mc_free(e->dfeat);
    mc_free(e);
}

// Make room for R rows of features and gradients.
static void engine_reserve(CoopEngine *e, int64_t R) {
    if (R <= e->cap) return;
    int64_t E = e->tt->cfg.embed;
    mc_free(e->feat);
    mc_free(e->dfeat);
    e->feat = mc_malloc((size_t)(R * E) * sizeof(float));
    e->dfeat = mc_malloc((size_t)(R * E) * sizeof(float));
    e->cap = R;
}

static void note_peak(CoopEngine *e) {
    size_t p = e->g->arena.peak;
    if (e->tt->scratch) p += e->tt->scratch->arena.peak;
    if (p > e->arena_peak) e->arena_peak = p;
}

// ---- normalisation ----

void coop_normalize_rows(float *x, int64_t n, int64_t E) {
    for (int64_t i = 0; i < n; i++) {
        float *x_i = x + i * E;
        double ss = 0;
        for (int64_t j = 0; j < E; j++) ss += (double)x_i[j] * x_i[j];
        double nrm = sqrt(ss);
        double inv = 1.0 / (nrm > COOP_NORM_EPS ? nrm : COOP_NORM_EPS);
        for (int64_t j = 0; j < E; j++) x_i[j] = (float)(x_i[j] * inv);
    }
}

// tn [E] = t / max(||t||, eps); returns the norm ||t||.
static double normalize_d(const float *t, int64_t E, double *tn) {
    double ss = 0;
    for (int64_t j = 0; j < E; j++) ss += (double)t[j] * t[j];
    double nrm = sqrt(ss), inv = 1.0 / (nrm > COOP_NORM_EPS ? nrm : COOP_NORM_EPS);
    for (int64_t j = 0; j < E; j++) tn[j] = t[j] * inv;
    return nrm;
}

// Backward of tn = t / max(||t||, eps):
//   ||t|| > eps:  d t = (d tn - tn (tn . d tn)) / ||t||
//   else:         d t = d tn / eps            (the max picks the constant)
static void normalize_backward(const double *tn, const double *dtn, double nrm, int64_t E,
                               float *dt) {
    if (nrm <= COOP_NORM_EPS) {
        for (int64_t j = 0; j < E; j++) dt[j] = (float)(dtn[j] / COOP_NORM_EPS);
        return;
    }
    double dot = 0;
    for (int64_t j = 0; j < E; j++) dot += tn[j] * dtn[j];
    for (int64_t j = 0; j < E; j++) dt[j] = (float)((dtn[j] - tn[j] * dot) / nrm);
}

// ---- loss heads ----

// Cross-entropy of one row z[K] against label y, in double with the max
// subtracted before exp.  p[K] gets softmax(z).  Returns -log p[y].
static double ce_row(const double *z, int64_t K, int64_t y, double *p) {
    double mx = z[0];
    for (int64_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    double sum = 0;
    for (int64_t k = 0; k < K; k++) sum += (p[k] = exp(z[k] - mx));
    for (int64_t k = 0; k < K; k++) p[k] /= sum;
    return -(z[y] - mx - log(sum));
}

double coop_head_cls(const float *imgn, int64_t N, const float *txt, int64_t K, int64_t E,
                     const int32_t *labels, double scale, double weight, float *logits,
                     float *d_txt) {
    // Normalised text features tn [K, E] (double) and their norms.
    double *tn = mc_malloc((size_t)(K * E) * sizeof *tn);
    double *nrm = mc_malloc((size_t)K * sizeof *nrm);
    double *dtn = mc_calloc((size_t)(K * E), sizeof *dtn);
    double *z = mc_malloc((size_t)K * sizeof *z), *pr = mc_malloc((size_t)K * sizeof *pr);
    for (int64_t k = 0; k < K; k++) nrm[k] = normalize_d(txt + k * E, E, tn + k * E);

    double loss = 0;
    for (int64_t n = 0; n < N; n++) {
        const float *i_n = imgn + n * E;
        MC_CHECK(labels[n] >= 0 && labels[n] < K, "coop_head_cls: label %d of image %lld "
                 "outside [0, %lld)", labels[n], (long long)n, (long long)K);
        // z[k] = s * img^_n . txt^_k
        for (int64_t k = 0; k < K; k++) {
            const double *t_k = tn + k * E;
            double d = 0;
            for (int64_t j = 0; j < E; j++) d += i_n[j] * t_k[j];
            z[k] = scale * d;
            if (logits) logits[n * K + k] = (float)z[k];
        }
        loss += ce_row(z, K, labels[n], pr);
        if (!d_txt) continue;

        // d z[k] = weight * (p[k] - [k == y]) / N;  d txt^_k += s * d z[k] * img^_n
        for (int64_t k = 0; k < K; k++) {
            double dz = weight * (pr[k] - (k == labels[n])) / (double)N;
            double *d_k = dtn + k * E;
            for (int64_t j = 0; j < E; j++) d_k[j] += scale * dz * i_n[j];
        }
    }
    if (d_txt)
        for (int64_t k = 0; k < K; k++)
            normalize_backward(tn + k * E, dtn + k * E, nrm[k], E, d_txt + k * E);
    mc_free(tn), mc_free(nrm), mc_free(dtn), mc_free(z), mc_free(pr);
    return weight * loss / (double)N;
}

double coop_head_ret(const float *imgn, const float *cap, int64_t B, int64_t E, double scale,
                     double weight, float *S, float *d_cap) {
    double *cn = mc_malloc((size_t)(B * E) * sizeof *cn);
    double *nrm = mc_malloc((size_t)B * sizeof *nrm);
    double *s = mc_malloc((size_t)(B * B) * sizeof *s);
    double *ds = mc_calloc((size_t)(B * B), sizeof *ds);
    double *row = mc_malloc((size_t)B * sizeof *row), *pr = mc_malloc((size_t)B * sizeof *pr);
    for (int64_t b = 0; b < B; b++) nrm[b] = normalize_d(cap + b * E, E, cn + b * E);

    // S[n, b] = s * img^_n . cap^_b
    for (int64_t n = 0; n < B; n++)
        for (int64_t b = 0; b < B; b++) {
            double d = 0;
            for (int64_t j = 0; j < E; j++) d += imgn[n * E + j] * cn[b * E + j];
            s[n * B + b] = scale * d;
            if (S) S[n * B + b] = (float)s[n * B + b];
        }

    // Rows of S (image -> caption) and rows of S^T (caption -> image), both
    // with targets on the diagonal; each CE is a batch mean, halved.
    double loss = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t i = 0; i < B; i++) {
            for (int64_t j = 0; j < B; j++) row[j] = pass ? s[j * B + i] : s[i * B + j];
            loss += 0.5 * ce_row(row, B, i, pr) / (double)B;
            for (int64_t j = 0; j < B; j++) {
                double g = weight * 0.5 * (pr[j] - (i == j)) / (double)B;
                ds[pass ? j * B + i : i * B + j] += g;
            }
        }

    // d cap^_b = s * sum_n dS[n, b] img^_n, then through the normalisation.
    if (d_cap) {
        double *dcn = mc_calloc((size_t)E, sizeof *dcn);
        for (int64_t b = 0; b < B; b++) {
            memset(dcn, 0, (size_t)E * sizeof *dcn);
            for (int64_t n = 0; n < B; n++) {
                double g = scale * ds[n * B + b];
                for (int64_t j = 0; j < E; j++) dcn[j] += g * imgn[n * E + j];
            }
            normalize_backward(cn + b * E, dcn, nrm[b], E, d_cap + b * E);
        }
        mc_free(dcn);
    }
    mc_free(cn), mc_free(nrm), mc_free(s), mc_free(ds), mc_free(row), mc_free(pr);
    return weight * loss;
}

// ---- text features and the two gradient paths ----

void coop_text_features(CoopEngine *e, CoopPrompt *p, const CoopSeqs *s, float *feat) {
    int64_t E = e->tt->cfg.embed;
    Graph *g = e->g;
    for (int64_t r0 = 0; r0 < s->R; r0 += e->chunk_infer) {
        int64_t n = s->R - r0 < e->chunk_infer ? s->R - r0 : e->chunk_infer;
        ag_graph_reset(g);
        g->grad_enabled = 0;   // blocks run in the tower's scratch graph
        Tensor *f = coop_encode(g, e->tt, p, s, r0, n, NULL);
        memcpy(feat + r0 * E, f->data, (size_t)(n * E) * sizeof(float));
        note_peak(e);
    }
    ag_graph_reset(g);
    g->grad_enabled = 1;
}

// A text group: rows s, their features feat [R, E] and d L / d feat.
typedef struct {
    const CoopSeqs *s;
    float *feat, *dfeat;
} Group;

// The loss head of an objective: reads every group's feat, writes dfeat,
// returns L.
typedef double (*HeadFn)(void *ctx, Group *gr);

// Run head over ng groups and add d L / d ctx into p->ctx->grad.
static double groups_grad(CoopEngine *e, CoopPrompt *p, Group *gr, int ng, HeadFn head,
                          void *ctx) {
    int64_t E = e->tt->cfg.embed, total = 0;
    for (int i = 0; i < ng; i++) total += gr[i].s->R;
    engine_reserve(e, total);
    for (int i = 0, off = 0; i < ng; off += (int)gr[i].s->R, i++) {
        gr[i].feat = e->feat + (int64_t)off * E;
        gr[i].dfeat = e->dfeat + (int64_t)off * E;
    }
    MC_CHECK(p->ctx->requires_grad && p->ctx->grad, "coop: ctx has no gradient buffer");
    Graph *g = e->g;
    double loss;

    e->plain = total <= e->chunk;
    if (e->plain) {
        // Plain: every row taped at once, one backward.
        ag_graph_reset(g);
        g->grad_enabled = 1;
        Tensor *out[2];
        MC_CHECK(ng <= 2, "coop: at most two text groups");
        for (int i = 0; i < ng; i++) {
            out[i] = coop_encode(g, e->tt, p, gr[i].s, 0, gr[i].s->R, NULL);
            memcpy(gr[i].feat, out[i]->data, (size_t)out[i]->n * sizeof(float));
        }
        loss = head(ctx, gr);
        // Seed every output; the tape walk then covers all of them.
        for (int i = 1; i < ng; i++)
            for (int64_t j = 0; j < out[i]->n; j++) out[i]->grad[j] += gr[i].dfeat[j];
        ag_backward_seed(g, out[0], gr[0].dfeat);
        note_peak(e);
        ag_graph_reset(g);
        return loss;
    }

    // Chunked pass 1: features without the tape; the head.
    for (int i = 0; i < ng; i++) coop_text_features(e, p, gr[i].s, gr[i].feat);
    loss = head(ctx, gr);

    // Pass 2: each chunk taped again, backward seeded with its rows of dfeat.
    for (int i = 0; i < ng; i++) {
        const CoopSeqs *s = gr[i].s;
        for (int64_t r0 = 0; r0 < s->R; r0 += e->chunk) {
            int64_t n = s->R - r0 < e->chunk ? s->R - r0 : e->chunk;
            ag_graph_reset(g);
            g->grad_enabled = 1;
            Tensor *f = coop_encode(g, e->tt, p, s, r0, n, NULL);
            ag_backward_seed(g, f, gr[i].dfeat + r0 * E);
            note_peak(e);
        }
    }
    ag_graph_reset(g);
    return loss;
}

// ---- objectives ----

typedef struct {
    const float *img_cls;
    const int32_t *labels;
    int64_t N;
    const float *img_cap;
    double scale, lambda;
    float *logits, *S;
    double l_cls, l_ret;
    int64_t E;
} HeadArgs;

static double head_cls(void *ctx, Group *gr) {
    HeadArgs *a = ctx;
    a->l_cls = coop_head_cls(a->img_cls, a->N, gr[0].feat, gr[0].s->R, a->E, a->labels,
                             a->scale, 1.0, a->logits, gr[0].dfeat);
    return a->l_cls;
}

double coop_loss_cls(CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls, const float *imgn,
                     const int32_t *labels, int64_t N, double scale, float *logits) {
    HeadArgs a = {.img_cls = imgn, .labels = labels, .N = N, .scale = scale,
                  .logits = logits, .E = e->tt->cfg.embed};
    Group gr[1] = {{.s = cls}};
    return groups_grad(e, p, gr, 1, head_cls, &a);
}

// L = (1 - lambda) L_ret + lambda L_cls: each head is weighted, so the
// reported parts are divided back by their weights.
static double head_multi(void *ctx, Group *gr) {
    HeadArgs *a = ctx;
    double wc = a->lambda, wr = 1.0 - a->lambda;
    double lc = coop_head_cls(a->img_cls, a->N, gr[0].feat, gr[0].s->R, a->E, a->labels,
                              a->scale, wc, a->logits, gr[0].dfeat);
    double lr = coop_head_ret(a->img_cap, gr[1].feat, gr[1].s->R, a->E, a->scale, wr, a->S,
                              gr[1].dfeat);
    a->l_cls = wc != 0 ? lc / wc : coop_head_cls(a->img_cls, a->N, gr[0].feat, gr[0].s->R,
                                                 a->E, a->labels, a->scale, 1.0, NULL, NULL);
    a->l_ret = wr != 0 ? lr / wr : coop_head_ret(a->img_cap, gr[1].feat, gr[1].s->R, a->E,
                                                 a->scale, 1.0, NULL, NULL);
    return lc + lr;
}

double coop_loss_multitask(CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls,
                           const float *img_cls, const int32_t *labels, int64_t N,
                           const CoopSeqs *caps, const float *img_cap, double scale,
                           double lambda, float *logits, float *S, double *l_cls,
                           double *l_ret) {
    HeadArgs a = {.img_cls = img_cls, .labels = labels, .N = N, .img_cap = img_cap,
                  .scale = scale, .lambda = lambda, .logits = logits, .S = S,
                  .E = e->tt->cfg.embed};
    Group gr[2] = {{.s = cls}, {.s = caps}};
    double loss = groups_grad(e, p, gr, 2, head_multi, &a);
    if (l_cls) *l_cls = a.l_cls;
    if (l_ret) *l_ret = a.l_ret;
    return loss;
}
