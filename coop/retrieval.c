// retrieval.c - caption-set features, recall under the standard and the
// paper protocol, the in-batch contrastive loss through the CoOp prompt
// and the retrieval / multitask training loop (see retrieval.h).
//
// Dims: I images, T captions, E embedding width, B pairs, N classification
// images, R prompt rows.
#include "retrieval.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../datasets/metrics.h"
#include "../tensor/gemm.h"
#include "rng.h"

const int coop_ret_ks[3] = {1, 5, 10};

// ---- features ----

int coop_ret_image_features(ImageTower *tw, const DsPrepConfig *pc, const CoopVPrompt *vp,
                            const char *const *paths, int64_t I, int batch, float *imgn,
                            McErr *err) {
    const McImageConfig *ic = image_tower_config(tw);
    int S = ic->image_size;
    int64_t E = ic->embed, img = (int64_t)3 * S * S;
    if (pc->size != S)
        return mc_err(err, "retrieval: preprocessing makes %dx%d images, the tower takes %dx%d",
                      pc->size, pc->size, S, S);
    if (vp && vp->size != S)
        return mc_err(err, "retrieval: the visual prompt is for %dx%d images, the tower takes "
                      "%dx%d", vp->size, vp->size, S, S);
    if (batch < 1) batch = 1;
    float *x = mc_malloc((size_t)(batch * img) * sizeof *x);
    int *status = mc_malloc((size_t)batch * sizeof *status);
    McErr *errs = mc_malloc((size_t)batch * sizeof *errs);
    Graph *g = ag_graph_new((size_t)1 << 24);
    int rc = 0;
    for (int64_t i0 = 0; i0 < I && rc == 0; i0 += batch) {
        int n = (int)(I - i0 < batch ? I - i0 : batch);
        // Decode and preprocess; any bad file stops the run with its reason.
        if (ds_prep_batch(x, status, errs, paths + i0, n, pc) > 0) {
            for (int j = 0; j < n; j++)
                if (status[j]) {
                    rc = mc_err(err, "retrieval: image %lld: %s", (long long)(i0 + j),
                                errs[j].msg);
                    break;
                }
            break;
        }
        coop_vp_features(g, tw, vp, x, n, n, imgn + i0 * E);
    }
    ag_graph_free(g);
    mc_free(x), mc_free(status), mc_free(errs);
    return rc;
}

// Plain open_clip text features of texts [T] (no prompt), normalised.
static int plain_text_features(TextTower *tt, Tokenizer *tok, const char *const *texts,
                               int64_t T, int group, float *txtn, McErr *err) {
    int64_t E = tt->cfg.embed, C = tt->cfg.context;
    int32_t *ids = mc_malloc((size_t)(group * C) * sizeof *ids);
    Graph *g = ag_graph_new((size_t)1 << 22);
    g->grad_enabled = 0;
    int rc = 0;
    for (int64_t t0 = 0; t0 < T && rc == 0; t0 += group) {
        int64_t n = T - t0 < group ? T - t0 : group;
        for (int64_t r = 0; r < n; r++) tok_encode(tok, texts[t0 + r], ids + r * C);
        ag_graph_reset(g);
        Tensor *f = text_tower_forward(g, tt, ids, n, NULL, err);
        if (!f) rc = -1;
        else memcpy(txtn + t0 * E, f->data, (size_t)(n * E) * sizeof(float));
    }
    ag_graph_free(g);
    mc_free(ids);
    if (rc == 0) coop_normalize_rows(txtn, T, E);
    return rc;
}

int coop_ret_text_features(TextTower *tt, Tokenizer *tok, CoopPrompt *p, CoopEngine *e,
                           const char *const *texts, int64_t T, int group, float *txtn,
                           McErr *err) {
    if (group < 1) group = COOP_RET_GROUP;
    if (!p) return plain_text_features(tt, tok, texts, T, group, txtn, err);
    int64_t E = tt->cfg.embed;
    CoopEngine *own = e ? NULL : coop_engine_new(tt, 0);
    if (!e) e = own;
    int rc = 0;
    // Groups of `group` captions in order: with legacy pooling R = group.
    for (int64_t t0 = 0; t0 < T && rc == 0; t0 += group) {
        int64_t n = T - t0 < group ? T - t0 : group;
        CoopSeqs s;
        if (coop_seqs_from_names(&s, p, tok, texts + t0, n, err)) {
            rc = -1;
            break;
        }
        if (text_check_ids(tt, s.ids, s.R, err)) {   // a reduced vocabulary
            coop_seqs_free(&s);
            rc = -1;
            break;
        }
        coop_text_features(e, p, &s, txtn + t0 * E);
        coop_seqs_free(&s);
    }
    coop_engine_free(own);
    if (rc == 0) coop_normalize_rows(txtn, T, E);
    return rc;
}

// ---- metrics ----

int coop_ret_paper_hits(const float *imgn, const float *first, int I, int64_t E) {
    // sim [I, I] = first . img^T (unscaled cosine of normalised features).
    float *sim = mc_malloc((size_t)I * (size_t)I * sizeof *sim);
    mc_sgemm(0, 1, I, I, (int)E, 1.0f, first, (int)E, imgn, (int)E, 0.0f, sim, I);
    int hits = 0;
    for (int i = 0; i < I; i++) {
        // argmax with the first maximum, as torch.argmax.
        const float *s_i = sim + (size_t)i * I;
        int best = 0;
        for (int j = 1; j < I; j++)
            if (s_i[j] > s_i[best]) best = j;
        hits += best == i;
    }
    mc_free(sim);
    return hits;
}

void coop_ret_scores(const float *imgn, int I, const float *txtn, int T, int64_t E,
                     const int *caption_image, const float *first, CoopRetScores *out) {
    memset(out, 0, sizeof *out);
    out->n_images = I, out->n_captions = T;
    // Standard protocol on sim [T, I].
    float *sim = mc_malloc((size_t)T * (size_t)I * sizeof *sim);
    mc_sgemm(0, 1, T, I, (int)E, 1.0f, txtn, (int)E, imgn, (int)E, 0.0f, sim, I);
    for (int k = 0; k < 3; k++) {
        out->t2i[k] = mt_recall_t2i(sim, T, I, caption_image, coop_ret_ks[k]);
        out->i2t[k] = mt_recall_i2t(sim, T, I, caption_image, coop_ret_ks[k]);
    }
    mc_free(sim);

    // Paper protocol: the first caption of each image.
    float *own = NULL;
    if (!first) {
        own = mc_calloc((size_t)I * (size_t)E, sizeof *own);
        char *seen = mc_calloc((size_t)I, 1);
        for (int t = 0; t < T; t++) {
            int i = caption_image[t];
            if (seen[i]) continue;
            seen[i] = 1;
            memcpy(own + (size_t)i * E, txtn + (size_t)t * E, (size_t)E * sizeof *own);
        }
        mc_free(seen);
        first = own;
    }
    out->paper_hits = coop_ret_paper_hits(imgn, first, I, E);
    out->paper_t2i_r1 = I ? (double)out->paper_hits / I : 0;
    mc_free(own);
}

// ---- loss ----

double coop_ret_loss(CoopEngine *e, CoopPrompt *p, const CoopSeqs *caps, const float *imgn,
                     double scale, float *S) {
    int64_t B = caps->R, E = e->tt->cfg.embed;
    MC_CHECK(p->ctx->requires_grad && p->ctx->grad, "coop_ret_loss: ctx has no gradient");
    float *feat = mc_malloc((size_t)(B * E) * sizeof *feat);
    float *dfeat = mc_malloc((size_t)(B * E) * sizeof *dfeat);
    Graph *g = e->g;
    double loss;

    e->plain = B <= e->chunk;
    if (e->plain) {
        // Every caption on one tape: forward, head, one seeded backward.
        ag_graph_reset(g);
        g->grad_enabled = 1;
        Tensor *f = coop_encode(g, e->tt, p, caps, 0, B, NULL);
        memcpy(feat, f->data, (size_t)f->n * sizeof *feat);
        loss = coop_head_ret(imgn, feat, B, E, scale, 1.0, S, dfeat);
        ag_backward_seed(g, f, dfeat);
    } else {
        // Chunked: features without the tape, the head, then each chunk
        // re-run on the tape and seeded with its rows of d L / d feat.
        coop_text_features(e, p, caps, feat);
        loss = coop_head_ret(imgn, feat, B, E, scale, 1.0, S, dfeat);
        for (int64_t r0 = 0; r0 < B; r0 += e->chunk) {
            int64_t n = B - r0 < e->chunk ? B - r0 : e->chunk;
            ag_graph_reset(g);
            g->grad_enabled = 1;
            Tensor *f = coop_encode(g, e->tt, p, caps, r0, n, NULL);
            ag_backward_seed(g, f, dfeat + r0 * E);
        }
    }
    ag_graph_reset(g);
    mc_free(feat), mc_free(dfeat);
    return loss;
}

// ---- training ----

CoopRetTrainCfg coop_ret_train_defaults(void) {
    CoopRetTrainCfg c = {.epochs = 3, .batch = 16, .cls_batch = 16,
                         .scale = COOP_PAPER_SCALE, .lambda = 0.3, .seed = 42,
                         .opt = coop_opt_paper()};
    return c;
}

// The next n items of an endlessly cycled list, reshuffled at each wrap.
typedef struct {
    int64_t *order, n, pos;
    CoopRng *rng;
} Cycle;

static void cycle_take(Cycle *c, int64_t n, int64_t *out) {
    for (int64_t i = 0; i < n; i++) {
        if (c->pos == c->n) {
            coop_rng_shuffle(c->rng, c->order, c->n);
            c->pos = 0;
        }
        out[i] = c->order[c->pos++];
    }
}

int coop_ret_train(CoopEngine *e, CoopPrompt *p, Tokenizer *tok, const CoopRetData *d,
                   const CoopRetTrainCfg *cfg, CoopRetProgressFn fn, void *fn_ctx, McErr *err) {
    int64_t E = e->tt->cfg.embed, P = d->n_pairs, B = cfg->batch;
    int multi = d->cls != NULL;
    if (P < 2 || B < 2)
        return mc_err(err, "retrieval training: %lld pairs, batch %lld; the in-batch loss "
                      "needs at least 2 of each", (long long)P, (long long)B);
    if (multi && (d->n_cls < 1 || cfg->cls_batch < 1))
        return mc_err(err, "multitask training: %lld classification images, batch %d",
                      (long long)d->n_cls, cfg->cls_batch);
    CoopRng rng;
    coop_rng_seed(&rng, cfg->seed);
    CoopOptim opt;
    coop_optim_init(&opt, &cfg->opt, p->ctx->n);
    int64_t *order = mc_malloc((size_t)P * sizeof *order);
    for (int64_t i = 0; i < P; i++) order[i] = i;
    int64_t *corder = multi ? mc_malloc((size_t)d->n_cls * sizeof *corder) : NULL;
    for (int64_t i = 0; multi && i < d->n_cls; i++) corder[i] = i;
    Cycle cyc = {corder, d->n_cls, d->n_cls, &rng};   // pos = n: shuffle on first use
    int64_t NC = multi ? cfg->cls_batch : 0;
    float *img_b = mc_malloc((size_t)(B * E) * sizeof *img_b);
    float *img_c = mc_malloc((size_t)((NC ? NC : 1) * E) * sizeof *img_c);
    int32_t *lab_c = mc_malloc((size_t)(NC ? NC : 1) * sizeof *lab_c);
    int64_t *pick = mc_malloc((size_t)(NC ? NC : 1) * sizeof *pick);
    const char **caps = mc_malloc((size_t)B * sizeof *caps);
    int steps = cfg->epochs * (int)((P + B - 1) / B), step = 0, rc = 0;

    for (int ep = 0; ep < cfg->epochs && rc == 0; ep++) {
        coop_rng_shuffle(&rng, order, P);
        double lr = coop_lr_at(&cfg->opt, ep);
        for (int64_t b0 = 0; b0 < P && rc == 0; b0 += B) {
            double t0 = mc_time();
            int64_t nb = P - b0 < B ? P - b0 : B;
            // The batch's captions (R = nb for legacy pooling) and images.
            for (int64_t j = 0; j < nb; j++) {
                caps[j] = d->captions[order[b0 + j]];
                memcpy(img_b + j * E, d->cap_img + order[b0 + j] * E, (size_t)E * sizeof *img_b);
            }
            CoopSeqs cs;
            if (coop_seqs_from_names(&cs, p, tok, caps, nb, err)) {
                rc = -1;
                break;
            }
            if (text_check_ids(e->tt, cs.ids, cs.R, err)) {
                coop_seqs_free(&cs);
                rc = -1;
                break;
            }
            CoopRetStep st = {.epoch = ep, .step = ++step, .steps = steps, .lr = lr};
            tensor_zero_grad(p->ctx);
            if (multi) {
                // The next classification batch of the cycled list.
                cycle_take(&cyc, NC, pick);
                for (int64_t j = 0; j < NC; j++) {
                    memcpy(img_c + j * E, d->cls_img + pick[j] * E, (size_t)E * sizeof *img_c);
                    lab_c[j] = d->cls_labels[pick[j]];
                }
                st.loss = coop_loss_multitask(e, p, d->cls, img_c, lab_c, NC, &cs, img_b,
                                              cfg->scale, cfg->lambda, NULL, NULL, &st.l_cls,
                                              &st.l_ret);
            } else {
                st.loss = st.l_ret = coop_ret_loss(e, p, &cs, img_b, cfg->scale, NULL);
            }
            coop_seqs_free(&cs);
            coop_optim_step(&opt, p->ctx->data, p->ctx->grad, lr);
            st.seconds = mc_time() - t0;
            if (fn) fn(fn_ctx, &st);
        }
    }
    coop_optim_free(&opt);
    mc_free(order), mc_free(corder), mc_free(img_b), mc_free(img_c), mc_free(lab_c);
    mc_free(pick), mc_free(caps);
    return rc;
}
