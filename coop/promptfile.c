// promptfile.c - mclip prompt files and the paper's .pt prompts (see
// promptfile.h).  References: the paper repository's prompt files
// (paper-protocol section 13); safetensors via mobileclip/safetensors.h.
#include "promptfile.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/dataset.h"
#include "../mobileclip/json.h"
#include "../mobileclip/safetensors.h"
#include "../mobileclip/torch_pt.h"

#define PROMPT_MAX_WIDTH 65536   // text widths are 512 and 768; anything far above is damage

void coop_classnames_sha1(char *const *names, int n, char hex[41]) {
    ds_classnames_sha1(names, n, hex);
}

// ---- small text helpers ----

typedef struct { char *s; size_t len, cap; } Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *ns = mc_malloc(cap);
        if (b->s) memcpy(ns, b->s, b->len);
        mc_free(b->s);
        b->s = ns, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

// JSON array of strings, UTF-8 kept as is, quotes, backslashes and
// control characters escaped.
static char *json_string_array(char *const *v, int n) {
    Buf b = {0};
    buf_put(&b, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) buf_put(&b, ", ", 2);
        buf_put(&b, "\"", 1);
        for (const unsigned char *p = (const unsigned char *)v[i]; *p; p++) {
            char esc[8];
            if (*p == '"' || *p == '\\') {
                esc[0] = '\\', esc[1] = (char)*p;
                buf_put(&b, esc, 2);
            } else if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                buf_put(&b, esc, 6);
            } else {
                buf_put(&b, (const char *)p, 1);
            }
        }
        buf_put(&b, "\"", 1);
    }
    buf_put(&b, "]", 1);
    return b.s;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = mc_malloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

// ---- writing ----

int coop_promptfile_save(const char *path, const CoopPrompt *p, const CoopPromptMeta *meta,
                         McErr *err) {
    StWriter *w = st_writer_new();
    const Tensor *c = p->ctx;
    if (meta->fp16) st_writer_add_f16(w, "ctx", c->ndim, c->shape, c->data);
    else st_writer_add_f32(w, "ctx", c->ndim, c->shape, c->data);

    // Metadata: format, model, prompt layout, class names.
    char v[64], sha1[41];
    st_writer_meta(w, "mclip_prompt", COOP_PROMPT_FORMAT);
    st_writer_meta(w, "prompt_type", "text");
    st_writer_meta(w, "model_name", meta->model_name ? meta->model_name : "custom");
    st_writer_meta(w, "weights_sha256", meta->weights_sha256 ? meta->weights_sha256 : "");
    st_writer_meta(w, "random_weights", meta->random_weights ? "1" : "0");
    snprintf(v, sizeof v, "%d", p->cfg.n_ctx);
    st_writer_meta(w, "n_ctx", v);
    snprintf(v, sizeof v, "%d", p->width);
    st_writer_meta(w, "width", v);
    st_writer_meta(w, "csc", p->cfg.csc ? "1" : "0");
    snprintf(v, sizeof v, "%d", p->n_cls);
    st_writer_meta(w, "n_cls", v);
    st_writer_meta(w, "class_position", coop_pos_name(p->cfg.pos));
    st_writer_meta(w, "pooling", coop_pool_name(p->cfg.pool));
    st_writer_meta(w, "sequence_form", coop_form_name(p->cfg.form));
    st_writer_meta(w, "dtype", meta->fp16 ? "fp16" : "fp32");
    st_writer_meta(w, "source", "mclip");
    if (meta->classnames && meta->n_names > 0) {
        char *js = json_string_array(meta->classnames, meta->n_names);
        st_writer_meta(w, "classnames", js);
        mc_free(js);
        coop_classnames_sha1(meta->classnames, meta->n_names, sha1);
        st_writer_meta(w, "classnames_sha1", sha1);
    }
    for (int i = 0; i < meta->n_extra; i++)
        st_writer_meta(w, meta->extra_keys[i], meta->extra_values[i]);
    int rc = st_writer_save(w, path, err);
    st_writer_free(w);
    return rc;
}

// ---- reading an mclip prompt file ----

static int meta_int(const StFile *f, const char *key, int *out, McErr *err) {
    const char *v = st_meta(f, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || x < 0 || x > 1000000)
        return mc_err(err, "%s: prompt metadata '%s' is %s%s%s, expected a non-negative integer",
                      st_path(f), key, v ? "'" : "missing", v ? v : "", v ? "'" : "");
    *out = (int)x;
    return 0;
}

// coop_prompt_check, with the file named in the message.
static int check_cfg(const char *path, const CoopPromptCfg *cfg, McErr *err) {
    McErr e;
    if (coop_prompt_check(cfg, &e) == 0) return 0;
    return mc_err(err, "%s: %s", path, e.msg);
}

static int meta_enum(const StFile *f, const char *key, int (*parse)(const char *), int *out,
                     const char *choices, McErr *err) {
    const char *v = st_meta(f, key);
    int x = v ? parse(v) : -1;
    if (x < 0)
        return mc_err(err, "%s: prompt metadata '%s' is %s%s%s, expected one of %s",
                      st_path(f), key, v ? "'" : "missing", v ? v : "", v ? "'" : "", choices);
    *out = x;
    return 0;
}

// Class names from a JSON array string.
static int parse_names(const char *path, const char *js, CoopPromptFile *pf, McErr *err) {
    McErr jerr;
    JsonDoc *doc = json_parse(js, strlen(js), NULL, &jerr);
    const JsonValue *r = doc ? json_root(doc) : NULL;
    if (!r || r->type != JSON_ARRAY) {
        json_free(doc);
        return mc_err(err, "%s: prompt metadata 'classnames' is not a JSON array of strings%s%s",
                      path, doc ? "" : ": ", doc ? "" : jerr.msg);
    }
    pf->classnames = mc_calloc(r->len + 1, sizeof *pf->classnames);
    for (size_t i = 0; i < r->len; i++) {
        if (r->items[i].type != JSON_STRING) {
            mc_err(err, "%s: classnames[%zu] is a %s, expected a string", path, i,
                   json_type_name(r->items[i].type));
            json_free(doc);  // after the message: it reads the document
            return -1;
        }
        pf->classnames[i] = xstrdup(r->items[i].str);
        pf->n_names = (int)i + 1;
    }
    json_free(doc);
    return 0;
}

static int load_mclip(const char *path, CoopPromptFile *pf, McErr *err) {
    StFile *f = st_open(path, err);
    if (!f) return -1;
    int rc = -1, form = 0, pool = 0, pos = 0, csc = 0, M = 0, W = 0, K = 0;
    const char *fmt = st_meta(f, "mclip_prompt"), *ty = st_meta(f, "prompt_type");
    if (!fmt || strcmp(fmt, COOP_PROMPT_FORMAT)) {
        mc_err(err, "%s: not an mclip prompt file (metadata mclip_prompt is %s%s%s, expected "
               "'%s'); a paper .pt prompt is read directly, a checkpoint is not a prompt",
               path, fmt ? "'" : "missing", fmt ? fmt : "", fmt ? "'" : "", COOP_PROMPT_FORMAT);
        goto done;
    }
    if (ty && strcmp(ty, "text")) {
        mc_err(err, "%s: prompt_type '%s' is not a text prompt", path, ty);
        goto done;
    }
    if (meta_int(f, "n_ctx", &M, err) || meta_int(f, "width", &W, err) ||
        meta_int(f, "csc", &csc, err) || meta_int(f, "n_cls", &K, err) ||
        meta_enum(f, "sequence_form", coop_form_parse, &form, "template, paper", err) ||
        meta_enum(f, "pooling", coop_pool_parse, &pool, "argmax, eot, legacy", err) ||
        meta_enum(f, "class_position", coop_pos_parse, &pos, "end, middle, front", err))
        goto done;
    if (W < 1 || (csc && K < 1)) {
        mc_err(err, "%s: prompt metadata width %d, csc %d, n_cls %d: expected width >= 1 and, "
               "for class-specific contexts, n_cls >= 1", path, W, csc, K);
        goto done;
    }
    pf->cfg = (CoopPromptCfg){.n_ctx = M, .csc = csc != 0, .pos = pos, .form = form,
                              .pool = pool};
    pf->width = W;
    pf->n_cls = csc ? K : 0;
    if (check_cfg(path, &pf->cfg, err)) goto done;

    // ctx: the shape the metadata promises.
    const StTensor *t = st_find(f, "ctx");
    int64_t want = (int64_t)(csc ? K : 1) * M * W;
    int shape_ok = t && t->ndim == (csc ? 3 : 2) && t->numel == want &&
                   t->shape[t->ndim - 1] == W && t->shape[t->ndim - 2] == M;
    if (!shape_ok || !st_dtype_is_float(t->dtype)) {
        mc_err(err, "%s: tensor 'ctx' %s; expected a float tensor [%s%d, %d]", path,
               t ? "has another shape or dtype" : "is missing", csc ? "K, " : "", M, W);
        goto done;
    }
    pf->fp16 = t->dtype == ST_F16;
    pf->ctx = mc_malloc((size_t)want * sizeof *pf->ctx);
    if (st_to_f32(f, t, pf->ctx, want, err)) goto done;

    // Identity of the model and the classes.
    copy_str(pf->model_name, sizeof pf->model_name, st_meta(f, "model_name"));
    copy_str(pf->weights_sha256, sizeof pf->weights_sha256, st_meta(f, "weights_sha256"));
    const char *rw = st_meta(f, "random_weights");
    pf->random_weights = rw && !strcmp(rw, "1");
    copy_str(pf->classnames_sha1, sizeof pf->classnames_sha1, st_meta(f, "classnames_sha1"));
    copy_str(pf->source, sizeof pf->source, path);
    const char *names = st_meta(f, "classnames");
    if (names && parse_names(path, names, pf, err)) goto done;
    if (pf->n_names && pf->classnames_sha1[0]) {
        char sha1[41];
        coop_classnames_sha1(pf->classnames, pf->n_names, sha1);
        if (strcmp(sha1, pf->classnames_sha1)) {
            mc_err(err, "%s: classnames_sha1 %s does not match the stored class names (%s)",
                   path, pf->classnames_sha1, sha1);
            goto done;
        }
    }
    rc = 0;
done:
    st_close(f);
    return rc;
}

// ---- reading a paper .pt prompt ----

static int load_pt(const char *path, CoopPromptFile *pf, McErr *err) {
    PtFile *f = pt_open(path, err);
    if (!f) return -1;
    int rc = -1;
    const PtValue *root = pt_root(f), *meta = pt_get(root, "meta");
    const PtTensor *t = pt_get_tensor(f, root, "ctx", err);
    if (!t) goto done;
    if (!meta || meta->kind != PT_DICT) {
        mc_err(err, "%s: no 'meta' dict beside 'ctx' (expected the paper's {'ctx', 'meta'} "
               "prompt file)", path);
        goto done;
    }
    const char *ptype = pt_as_str(pt_get(meta, "prompt_type"));
    if (ptype && strcmp(ptype, "text")) {
        mc_err(err, "%s: meta.prompt_type is '%s'; only text prompts are read here", path,
               ptype);
        goto done;
    }
    const char *model = pt_get_str(f, meta, "model_name", err);
    if (!model) goto done;
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1) {
        mc_err(err, "%s: ctx has %d dims, expected [n_ctx, width]", path, t->ndim);
        goto done;
    }
    // Bounded before the sizes become ints (a stride-0 view may claim any
    // number of rows); the row count itself is checked with the config.
    if (t->shape[0] > INT_MAX || t->shape[1] > PROMPT_MAX_WIDTH) {
        mc_err(err, "%s: ctx is [%lld, %lld], too large for a prompt (at most %d rows of %d "
               "values)", path, (long long)t->shape[0], (long long)t->shape[1],
               TOK_CONTEXT - 2, PROMPT_MAX_WIDTH);
        goto done;
    }
    int M = (int)t->shape[0], W = (int)t->shape[1];
    int64_t n_ctx = M;
    if (pt_get(meta, "n_ctx") && (pt_get_int(f, meta, "n_ctx", &n_ctx, err) || n_ctx != M)) {
        if (n_ctx != M)
            mc_err(err, "%s: meta.n_ctx %lld but ctx has %d rows", path, (long long)n_ctx, M);
        goto done;
    }

    // coop_version: missing = v0.1.0 (legacy pooling), "v0.1.1" = eot.
    const char *ver = pt_as_str(pt_get(meta, "coop_version"));
    copy_str(pf->coop_version, sizeof pf->coop_version, ver);
    pf->cfg = coop_prompt_paper(!ver);
    pf->cfg.n_ctx = M;
    if (ver && strcmp(ver, "v0.1.1") && strcmp(ver, "v0.1.0")) {
        mc_err(err, "%s: meta.coop_version '%s' is unknown (expected v0.1.0 or v0.1.1)", path,
               ver);
        goto done;
    }
    if (ver && !strcmp(ver, "v0.1.0")) pf->cfg.pool = COOP_POOL_LEGACY;
    if (check_cfg(path, &pf->cfg, err)) goto done;
    pf->width = W;
    pf->fp16 = t->dtype == ST_F16;
    pf->ctx = mc_malloc((size_t)t->numel * sizeof *pf->ctx);
    if (pt_tensor_to_f32(f, t, pf->ctx, t->numel, err)) goto done;
    copy_str(pf->model_name, sizeof pf->model_name, model);
    copy_str(pf->source, sizeof pf->source, path);

    // Class names and their fingerprint (the list is absent in some files).
    if (pt_get(meta, "classnames")) {
        const char **names;
        int64_t n;
        if (pt_get_str_list(f, meta, "classnames", &names, &n, err)) goto done;
        pf->classnames = mc_calloc((size_t)n + 1, sizeof *pf->classnames);
        for (int64_t i = 0; i < n; i++) pf->classnames[i] = xstrdup(names[i]);
        pf->n_names = (int)n;
        free(names);
    }
    const char *sha1 = pt_as_str(pt_get(meta, "classnames_sha1"));
    copy_str(pf->classnames_sha1, sizeof pf->classnames_sha1, sha1);
    if (sha1 && pf->n_names) {
        char got[41];
        coop_classnames_sha1(pf->classnames, pf->n_names, got);
        if (strcmp(got, sha1)) {
            mc_err(err, "%s: meta.classnames_sha1 %s does not match meta.classnames (%s)", path,
                   sha1, got);
            goto done;
        }
    }
    rc = 0;
done:
    pt_close(f);
    return rc;
}

int coop_promptfile_load(const char *path, CoopPromptFile *pf, McErr *err) {
    memset(pf, 0, sizeof *pf);
    int rc = pt_sniff(path) ? load_pt(path, pf, err) : load_mclip(path, pf, err);
    if (rc) coop_promptfile_free(pf);
    return rc;
}

void coop_promptfile_free(CoopPromptFile *pf) {
    if (!pf) return;
    mc_free(pf->ctx);
    for (int i = 0; i < pf->n_names; i++) mc_free(pf->classnames[i]);
    mc_free(pf->classnames);
    memset(pf, 0, sizeof *pf);
}

int coop_promptfile_check(const CoopPromptFile *pf, const char *model_name, int width,
                          McErr *err) {
    if (pf->width != width)
        return mc_err(err, "prompt %s: width %d, the model's text width is %d", pf->source,
                      pf->width, width);
    if (strcmp(pf->model_name, model_name))
        return mc_err(err, "prompt %s was made for %s, the loaded model is %s (load the "
                      "matching checkpoint, or retrain the prompt)",
                      pf->source[0] ? pf->source : "file", pf->model_name, model_name);
    return 0;
}

int coop_promptfile_prompt(const CoopPromptFile *pf, CoopPrompt *p, McErr *err) {
    return coop_prompt_init_data(p, &pf->cfg, pf->width, pf->n_cls, pf->ctx, err);
}
