// vprompt.c - the padding visual prompt: layout, the tape op, the
// classification loss through the frozen image tower, files (see
// vprompt.h).  References: Bahng et al. 2022 (PadPrompter), the paper's
// CoOpVisPrompt (../shared/paper-protocol.md section 10).
//
// Dims: N images, S side, b border, P border parameters, K classes, E
// embedding width.
#include "vprompt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mobileclip/safetensors.h"
#include "../mobileclip/torch_pt.h"
#include "coop.h"
#include "rng.h"

#define VP_MAX_SIDE 4096

// ---- layout ----

int64_t coop_vp_numel(int S, int b) {
    if (S < 1 || b < 1 || 2 * b > S || S > VP_MAX_SIDE) return -1;
    int64_t in = (int64_t)(S - 2 * b) * (S - 2 * b);
    return 3 * ((int64_t)S * S - in);
}

int coop_vp_check(int S, int b, McErr *err) {
    if (S < 1 || S > VP_MAX_SIDE)
        return mc_err(err, "visual prompt: image size %d, expected 1..%d", S, VP_MAX_SIDE);
    if (b < 1 || 2 * b > S)
        return mc_err(err, "visual prompt: border %d does not fit an image of side %d "
                      "(expected 1 <= border <= %d)", b, S, S / 2);
    return 0;
}

// Offsets of the four pieces in theta: up, down, left, right.
static void piece_offsets(int S, int b, int64_t off[4]) {
    int64_t ud = 3 * (int64_t)b * S, lr = 3 * (int64_t)(S - 2 * b) * b;
    off[0] = 0, off[1] = ud, off[2] = 2 * ud, off[3] = 2 * ud + lr;
}

int64_t coop_vp_index(int S, int b, int c, int i, int j) {
    int64_t off[4];
    piece_offsets(S, b, off);
    int64_t H = S - 2 * b;   // rows of the side pieces
    if (i < b) return off[0] + ((int64_t)c * b + i) * S + j;
    if (i >= S - b) return off[1] + ((int64_t)c * b + (i - (S - b))) * S + j;
    if (j < b) return off[2] + ((int64_t)c * H + (i - b)) * b + j;
    if (j >= S - b) return off[3] + ((int64_t)c * H + (i - b)) * b + (j - (S - b));
    return -1;
}

// Walk every border pixel in storage order: fn(ctx, full index, theta index).
// The pieces are contiguous runs of a full row, so the walk goes run by run.
typedef struct {
    int64_t full;   // index in [3, S, S] of the run's first pixel
    int64_t th;     // index in theta
    int     len;    // pixels in the run
} VpRun;

// Runs of channel c, row i (at most two: the row itself, or its left and
// right parts).  Returns the number of runs.
static int row_runs(int S, int b, int c, int i, VpRun run[2]) {
    int64_t base = ((int64_t)c * S + i) * S;
    if (i < b || i >= S - b) {
        run[0] = (VpRun){base, coop_vp_index(S, b, c, i, 0), S};
        return 1;
    }
    run[0] = (VpRun){base, coop_vp_index(S, b, c, i, 0), b};
    run[1] = (VpRun){base + S - b, coop_vp_index(S, b, c, i, S - b), b};
    return 2;
}

void coop_vp_to_full(int S, int b, const float *theta, float *full) {
    memset(full, 0, (size_t)3 * S * S * sizeof *full);
    VpRun run[2];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S; i++)
            for (int r = 0, nr = row_runs(S, b, c, i, run); r < nr; r++)
                memcpy(full + run[r].full, theta + run[r].th, (size_t)run[r].len * sizeof *full);
}

int64_t coop_vp_from_full(int S, int b, const float *full, float *border) {
    VpRun run[2];
    int64_t dropped = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S; i++) {
            for (int r = 0, nr = row_runs(S, b, c, i, run); r < nr; r++)
                memcpy(border + run[r].th, full + run[r].full, (size_t)run[r].len * sizeof *full);
            // Count the hole's non-zero values (never used by the forward).
            if (i < b || i >= S - b) continue;
            const float *hole = full + ((int64_t)c * S + i) * S + b;
            for (int j = 0; j < S - 2 * b; j++) dropped += hole[j] != 0.0f;
        }
    return dropped;
}

int coop_vp_detect_border(int S, const float *full) {
    const float *mid = full + (int64_t)(S / 2) * S;   // channel 0, row S / 2
    for (int j = 0; j < S; j++)
        if (mid[j] == 0.0f) return j;
    return -1;
}

// ---- init / free ----

static int vp_alloc(CoopVPrompt *vp, int S, int b, McErr *err) {
    if (coop_vp_check(S, b, err)) return -1;
    memset(vp, 0, sizeof *vp);
    vp->size = S, vp->border = b;
    vp->theta = tensor_new(MC_DIMS(coop_vp_numel(S, b)));
    tensor_require_grad(vp->theta);
    return 0;
}

int coop_vp_init(CoopVPrompt *vp, int S, int b, double std, uint64_t seed, McErr *err) {
    if (!(std >= 0) || !isfinite(std))
        return mc_err(err, "visual prompt: init std %g, expected a finite value >= 0", std);
    if (vp_alloc(vp, S, b, err)) return -1;
    CoopRng r;
    coop_rng_seed(&r, seed);
    for (int64_t i = 0; i < vp->theta->n; i++)
        vp->theta->data[i] = (float)(std * coop_rng_normal(&r));
    return 0;
}

int coop_vp_init_data(CoopVPrompt *vp, int S, int b, const float *border, McErr *err) {
    if (vp_alloc(vp, S, b, err)) return -1;
    memcpy(vp->theta->data, border, (size_t)vp->theta->n * sizeof(float));
    return 0;
}

void coop_vp_free(CoopVPrompt *vp) {
    if (!vp) return;
    tensor_free(vp->theta);
    memset(vp, 0, sizeof *vp);
}

// ---- forward: out = x + prompt (.) mask ----

void coop_vp_add(int S, int b, const float *theta, float *x, int64_t N) {
    VpRun run[2];
    int64_t img = (int64_t)3 * S * S;
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < S; i++)
                for (int r = 0, nr = row_runs(S, b, c, i, run); r < nr; r++) {
                    float *x_n = x + n * img + run[r].full;
                    const float *t = theta + run[r].th;
                    for (int j = 0; j < run[r].len; j++) x_n[j] += t[j];
                }
}

// d theta [P] += sum_n d out[n] at border pixels;  d x += d out.
static void vp_apply_backward(AgNode *node) {
    Tensor *x = node->in[0], *theta = node->in[1], *out = node->out;
    int S = (int)node->ip[0], b = (int)node->ip[1];
    int64_t N = node->ip[2], img = (int64_t)3 * S * S;
    if (ag_wants(x))
        for (int64_t i = 0; i < out->n; i++) x->grad[i] += out->grad[i];
    if (!ag_wants(theta)) return;
    // Parallel over (channel, row): each theta element has one writer; the
    // sum over images runs in a fixed order.
    #pragma omp parallel for schedule(static) if (N * img > (1 << 16))
    for (int ci = 0; ci < 3 * S; ci++) {
        VpRun run[2];
        int c = ci / S, i = ci % S;
        for (int r = 0, nr = row_runs(S, b, c, i, run); r < nr; r++) {
            float *dt = theta->grad + run[r].th;
            for (int64_t n = 0; n < N; n++) {
                const float *d_n = out->grad + n * img + run[r].full;
                for (int j = 0; j < run[r].len; j++) dt[j] += d_n[j];
            }
        }
    }
}

Tensor *coop_vp_apply(Graph *g, Tensor *x, CoopVPrompt *vp) {
    int S = vp->size, b = vp->border;
    TENSOR_CHECK_NDIM(x, 4, "coop_vp_apply");
    MC_CHECK(x->shape[1] == 3 && x->shape[2] == S && x->shape[3] == S,
             "coop_vp_apply: x [%lld, %lld, %lld, %lld], the prompt is for [N, 3, %d, %d]",
             (long long)x->shape[0], (long long)x->shape[1], (long long)x->shape[2],
             (long long)x->shape[3], S, S);
    Tensor *out = ag_tensor(g, x->ndim, x->shape);
    memcpy(out->data, x->data, (size_t)x->n * sizeof(float));
    coop_vp_add(S, b, vp->theta->data, out->data, x->shape[0]);
    Tensor *ins[2] = {x, vp->theta};
    if (ag_needs_grad(g, ins, 2)) {
        AgNode *node = ag_record(g, "vp_apply", vp_apply_backward, out, ins, 2);
        node->ip[0] = S, node->ip[1] = b, node->ip[2] = x->shape[0];
    }
    return out;
}

// ---- loss through the tower ----

double coop_vp_loss(Graph *g, ImageTower *tw, CoopVPrompt *vp, const float *x, int64_t N,
                    const float *txtn, int64_t K, const int32_t *labels, double scale,
                    float *logits, float *imgn, float *x_grad) {
    int S = vp->size;
    int64_t E = image_tower_config(tw)->embed;
    MC_CHECK(vp->theta->requires_grad && vp->theta->grad, "coop_vp_loss: theta has no gradient");
    for (int64_t n = 0; n < N; n++)
        MC_CHECK(labels[n] >= 0 && labels[n] < K, "coop_vp_loss: label %d of image %lld "
                 "outside [0, %lld)", labels[n], (long long)n, (long long)K);
    ag_graph_reset(g);
    g->grad_enabled = 1;

    // Prompted images x' = x + prompt (.) mask, then the tower.
    Tensor *xt = ag_tensor(g, MC_DIMS(N, 3, S, S));
    memcpy(xt->data, x, (size_t)xt->n * sizeof(float));
    Tensor *xp = coop_vp_apply(g, xt, vp);
    Tensor *f = image_tower_forward(g, tw, xp, NULL);                  // [N, E]

    // logits = s * f^ t^T;  L = mean CE.
    Tensor *fn = ag_l2norm(g, f, (float)COOP_NORM_EPS);
    Tensor *tt = ag_tensor(g, MC_DIMS(E, K));                         // t^T
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < E; j++) tt->data[j * K + k] = txtn[k * E + j];
    Tensor *z = ag_scale(g, ag_matmul(g, fn, tt), (float)scale);      // [N, K]
    Tensor *loss = ag_cross_entropy(g, z, labels);
    double L = loss->data[0];
    if (logits) memcpy(logits, z->data, (size_t)z->n * sizeof(float));
    if (imgn) memcpy(imgn, fn->data, (size_t)fn->n * sizeof(float));

    // Backward: d L / d theta (the tower's weights get nothing).
    ag_backward(g, loss);
    if (x_grad) memcpy(x_grad, xp->grad, (size_t)xp->n * sizeof(float));
    ag_graph_reset(g);
    return L;
}

void coop_vp_features(Graph *g, ImageTower *tw, const CoopVPrompt *vp, const float *x,
                      int64_t N, int batch, float *imgn) {
    int S = image_tower_config(tw)->image_size;
    int64_t E = image_tower_config(tw)->embed, img = (int64_t)3 * S * S;
    if (batch < 1) batch = 1;
    for (int64_t n0 = 0; n0 < N; n0 += batch) {
        int64_t n = N - n0 < batch ? N - n0 : batch;
        ag_graph_reset(g);
        g->grad_enabled = 0;
        Tensor *xt = ag_tensor(g, MC_DIMS(n, 3, S, S));
        memcpy(xt->data, x + n0 * img, (size_t)xt->n * sizeof(float));
        if (vp) coop_vp_add(vp->size, vp->border, vp->theta->data, xt->data, n);
        Tensor *f = image_tower_forward(g, tw, xt, NULL);
        memcpy(imgn + n0 * E, f->data, (size_t)(n * E) * sizeof(float));
    }
    ag_graph_reset(g);
    g->grad_enabled = 1;
    coop_normalize_rows(imgn, N, E);
}

// ---- files ----

static const char *const piece_names[4] = {"pad_up", "pad_down", "pad_left", "pad_right"};

static void piece_shape(int S, int b, int p, int64_t shape[3]) {
    shape[0] = 3;
    shape[1] = p < 2 ? b : S - 2 * b;
    shape[2] = p < 2 ? S : b;
}

int coop_vp_save(const char *path, const CoopVPrompt *vp, const CoopVPromptMeta *meta,
                 McErr *err) {
    int S = vp->size, b = vp->border;
    int64_t off[4], shape[3];
    piece_offsets(S, b, off);
    StWriter *w = st_writer_new();
    for (int p = 0; p < 4; p++) {
        piece_shape(S, b, p, shape);
        st_writer_add_f32(w, piece_names[p], 3, shape, vp->theta->data + off[p]);
    }
    // Metadata: format, model, geometry, provenance.
    char v[64];
    st_writer_meta(w, "mclip_prompt", COOP_VP_FORMAT);
    st_writer_meta(w, "prompt_type", "vis");
    st_writer_meta(w, "model_name", meta && meta->model_name ? meta->model_name : "custom");
    st_writer_meta(w, "weights_sha256", meta && meta->weights_sha256 ? meta->weights_sha256 : "");
    st_writer_meta(w, "random_weights", meta && meta->random_weights ? "1" : "0");
    snprintf(v, sizeof v, "%d", S);
    st_writer_meta(w, "image_size", v);
    snprintf(v, sizeof v, "%d", b);
    st_writer_meta(w, "border_size", v);
    if (meta && isfinite(meta->init_std)) {
        snprintf(v, sizeof v, "%.17g", meta->init_std);
        st_writer_meta(w, "init_std", v);
        snprintf(v, sizeof v, "%llu", (unsigned long long)meta->seed);
        st_writer_meta(w, "seed", v);
    }
    st_writer_meta(w, "source", meta && meta->source ? meta->source : "mclip");
    for (int i = 0; meta && i < meta->n_extra; i++)
        st_writer_meta(w, meta->extra_keys[i], meta->extra_values[i]);
    int rc = st_writer_save(w, path, err);
    st_writer_free(w);
    return rc;
}

static int meta_int(const StFile *f, const char *key, int *out, McErr *err) {
    const char *v = st_meta(f, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || x < 1 || x > VP_MAX_SIDE)
        return mc_err(err, "%s: visual prompt metadata '%s' is %s%s%s, expected an integer "
                      "in 1..%d", st_path(f), key, v ? "'" : "missing", v ? v : "",
                      v ? "'" : "", VP_MAX_SIDE);
    *out = (int)x;
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

static int load_mclip(const char *path, CoopVPromptFile *vf, McErr *err) {
    StFile *f = st_open(path, err);
    if (!f) return -1;
    int rc = -1, S = 0, b = 0;
    const char *fmt = st_meta(f, "mclip_prompt"), *ty = st_meta(f, "prompt_type");
    if (!fmt || strcmp(fmt, COOP_VP_FORMAT) || !ty || strcmp(ty, "vis")) {
        mc_err(err, "%s: not an mclip visual prompt (metadata mclip_prompt %s, prompt_type %s; "
               "expected '%s' and 'vis')", path, fmt ? fmt : "missing", ty ? ty : "missing",
               COOP_VP_FORMAT);
        goto done;
    }
    if (meta_int(f, "image_size", &S, err) || meta_int(f, "border_size", &b, err) ||
        coop_vp_check(S, b, err))
        goto done;
    vf->size = S, vf->border = b;
    vf->theta = mc_malloc((size_t)coop_vp_numel(S, b) * sizeof(float));

    // The four pieces, each with the shape the geometry promises.
    int64_t off[4], shape[3];
    piece_offsets(S, b, off);
    for (int p = 0; p < 4; p++) {
        const StTensor *t = st_find(f, piece_names[p]);
        piece_shape(S, b, p, shape);
        int ok = t && t->ndim == 3 && st_dtype_is_float(t->dtype);
        for (int d = 0; ok && d < 3; d++) ok = t->shape[d] == shape[d];
        if (!ok) {
            mc_err(err, "%s: tensor '%s' %s; expected a float tensor [3, %lld, %lld] for "
                   "image size %d, border %d", path, piece_names[p],
                   t ? "has another shape or dtype" : "is missing", (long long)shape[1],
                   (long long)shape[2], S, b);
            goto done;
        }
        if (st_to_f32(f, t, vf->theta + off[p], t->numel, err)) goto done;
    }
    copy_str(vf->model_name, sizeof vf->model_name, st_meta(f, "model_name"));
    copy_str(vf->weights_sha256, sizeof vf->weights_sha256, st_meta(f, "weights_sha256"));
    const char *rw = st_meta(f, "random_weights"), *sd = st_meta(f, "init_std");
    vf->random_weights = rw && !strcmp(rw, "1");
    vf->init_std = sd ? strtod(sd, NULL) : NAN;
    copy_str(vf->source, sizeof vf->source, st_meta(f, "source"));
    rc = 0;
done:
    st_close(f);
    return rc;
}

static int load_pt(const char *path, CoopVPromptFile *vf, McErr *err) {
    PtFile *f = pt_open(path, err);
    if (!f) return -1;
    int rc = -1;
    float *full = NULL;
    const PtValue *root = pt_root(f), *meta = pt_get(root, "meta");
    const PtTensor *t = pt_get_tensor(f, root, "ctx", err);
    if (!t) goto done;
    if (!meta || meta->kind != PT_DICT) {
        mc_err(err, "%s: no 'meta' dict beside 'ctx' (expected the paper's {'ctx', 'meta'} "
               "prompt file)", path);
        goto done;
    }
    const char *ptype = pt_as_str(pt_get(meta, "prompt_type"));
    if (!ptype || strcmp(ptype, "vis")) {
        mc_err(err, "%s: meta.prompt_type is %s%s%s; a visual prompt has 'vis' (a text prompt "
               "goes to --prompt)", path, ptype ? "'" : "missing", ptype ? ptype : "",
               ptype ? "'" : "");
        goto done;
    }
    const char *model = pt_get_str(f, meta, "model_name", err);
    if (!model) goto done;

    // ctx [3, S, S] (or [1, 3, S, S]); sizes compared as int64 (a stride-0
    // view may claim 2^32 + 1 leading rows, which an int cast made 1).
    int nd = t->ndim;
    int64_t lead = nd == 4 ? t->shape[0] : 1, S64 = nd >= 3 ? t->shape[nd - 1] : 0;
    if (nd < 3 || nd > 4 || lead != 1 || t->shape[nd - 3] != 3 || t->shape[nd - 2] != S64 ||
        S64 < 2 || S64 > VP_MAX_SIDE) {
        mc_err(err, "%s: ctx is not a [3, S, S] image-sized tensor (%d dims)", path, nd);
        goto done;
    }
    int S = (int)S64;
    full = mc_malloc((size_t)t->numel * sizeof *full);
    if (pt_tensor_to_f32(f, t, full, t->numel, err)) goto done;

    // Border: meta.border_size, else the paper's rule on the mask.
    int64_t b64 = -1;
    if (pt_get(meta, "border_size")) {
        if (pt_get_int(f, meta, "border_size", &b64, err)) goto done;
    } else {
        b64 = coop_vp_detect_border(S, full);
    }
    if (b64 < 1 || 2 * b64 > S) {
        mc_err(err, "%s: border size %lld does not fit ctx [3, %d, %d]", path, (long long)b64,
               S, S);
        goto done;
    }
    vf->size = S, vf->border = (int)b64;
    vf->theta = mc_malloc((size_t)coop_vp_numel(S, vf->border) * sizeof(float));
    vf->dropped = coop_vp_from_full(S, vf->border, full, vf->theta);
    copy_str(vf->model_name, sizeof vf->model_name, model);
    copy_str(vf->coop_version, sizeof vf->coop_version,
             pt_as_str(pt_get(meta, "coop_version")));
    copy_str(vf->source, sizeof vf->source, path);
    vf->init_std = NAN;
    rc = 0;
done:
    mc_free(full);
    pt_close(f);
    return rc;
}

int coop_vp_load(const char *path, CoopVPromptFile *f, McErr *err) {
    memset(f, 0, sizeof *f);
    int rc = pt_sniff(path) ? load_pt(path, f, err) : load_mclip(path, f, err);
    if (rc) coop_vp_file_free(f);
    return rc;
}

void coop_vp_file_free(CoopVPromptFile *f) {
    if (!f) return;
    mc_free(f->theta);
    memset(f, 0, sizeof *f);
}

int coop_vp_file_check(const CoopVPromptFile *f, const char *model_name, int image_size,
                       McErr *err) {
    if (f->size != image_size)
        return mc_err(err, "visual prompt %s is for %dx%d images, the model takes %dx%d",
                      f->source, f->size, f->size, image_size, image_size);
    if (strcmp(f->model_name, model_name))
        return mc_err(err, "visual prompt %s was made for %s, the loaded model is %s (load the "
                      "matching checkpoint, or retrain the prompt)", f->source, f->model_name,
                      model_name);
    return 0;
}

int coop_vp_file_prompt(const CoopVPromptFile *f, CoopVPrompt *vp, McErr *err) {
    return coop_vp_init_data(vp, f->size, f->border, f->theta, err);
}
