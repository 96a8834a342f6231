// prompt.c - CoOp prompt learner: context vectors, sequence layouts, and
// the tape op that splices ctx into the token embeddings (see prompt.h).
//
// Dims: M context rows, W width, R rows (classes or captions), T positions.
// References: KaiyangZhou/CoOp trainers/coop.py PromptLearner (template
// form, class-token positions, CSC); dlvr-28/MobileCLIP2_CoOp
// CoOpTextPrompt (paper form and its two pooling rules).
#include "prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "textfast.h"

// ---- configuration ----

CoopPromptCfg coop_prompt_defaults(void) {
    CoopPromptCfg c = {.n_ctx = COOP_DEFAULT_NCTX, .csc = 0, .pos = COOP_POS_END,
                       .form = COOP_FORM_TEMPLATE, .pool = COOP_POOL_ARGMAX};
    return c;
}

CoopPromptCfg coop_prompt_paper(int legacy) {
    CoopPromptCfg c = coop_prompt_defaults();
    c.form = COOP_FORM_PAPER;
    c.pool = legacy ? COOP_POOL_LEGACY : COOP_POOL_EOT;
    return c;
}

static const char *const form_names[] = {"template", "paper"};
static const char *const pool_names[] = {"argmax", "eot", "legacy"};
static const char *const pos_names[] = {"end", "middle", "front"};

static int parse_name(const char *s, const char *const *names, int n) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

const char *coop_form_name(CoopForm f) { return (unsigned)f < 2 ? form_names[f] : "?"; }
const char *coop_pool_name(CoopPool p) { return (unsigned)p < 3 ? pool_names[p] : "?"; }
const char *coop_pos_name(CoopClassPos p) { return (unsigned)p < 3 ? pos_names[p] : "?"; }
int coop_form_parse(const char *s) { return parse_name(s, form_names, 2); }
int coop_pool_parse(const char *s) { return parse_name(s, pool_names, 3); }
int coop_pos_parse(const char *s) { return parse_name(s, pos_names, 3); }

int coop_prompt_check(const CoopPromptCfg *c, McErr *err) {
    if (c->n_ctx < 1 || c->n_ctx > TOK_CONTEXT - 2)
        return mc_err(err, "prompt: %d context vectors; expected 1..%d (SOT and EOT need "
                      "their slots)", c->n_ctx, TOK_CONTEXT - 2);
    if ((unsigned)c->form > 1 || (unsigned)c->pool > 2 || (unsigned)c->pos > 2)
        return mc_err(err, "prompt: unknown form, pooling rule or class position");
    if (c->form == COOP_FORM_TEMPLATE && c->pool != COOP_POOL_ARGMAX)
        return mc_err(err, "prompt: the template form pools at the true EOT (argmax); "
                      "pooling rule '%s' belongs to the paper form", coop_pool_name(c->pool));
    if (c->form == COOP_FORM_PAPER && c->pool == COOP_POOL_ARGMAX)
        return mc_err(err, "prompt: the paper form needs pooling rule eot or legacy "
                      "(argmax of the unshifted ids would pool inside the context)");
    return 0;
}

// ---- context ----

int64_t coop_prompt_rows(const CoopPrompt *p) {
    return (int64_t)p->cfg.n_ctx * (p->cfg.csc ? p->n_cls : 1);
}

// Allocate ctx for cfg (zeroed, with a gradient buffer).
static int prompt_alloc(CoopPrompt *p, const CoopPromptCfg *cfg, int W, int n_cls,
                        McErr *err) {
    memset(p, 0, sizeof *p);
    if (coop_prompt_check(cfg, err)) return -1;
    if (W < 1) return mc_err(err, "prompt: width %d; expected >= 1", W);
    if (cfg->csc && n_cls < 1)
        return mc_err(err, "prompt: class-specific contexts need the number of classes "
                      "(got %d)", n_cls);
    p->cfg = *cfg;
    p->width = W;
    p->n_cls = cfg->csc ? n_cls : 0;
    p->ctx = cfg->csc ? tensor_new(MC_DIMS(n_cls, cfg->n_ctx, W))
                      : tensor_new(MC_DIMS(cfg->n_ctx, W));
    tensor_require_grad(p->ctx);
    return 0;
}

int coop_prompt_init(CoopPrompt *p, const CoopPromptCfg *cfg, int W, int n_cls,
                     uint64_t seed, McErr *err) {
    if (prompt_alloc(p, cfg, W, n_cls, err)) return -1;
    CoopRng r;
    coop_rng_seed(&r, seed);
    // ctx = COOP_INIT_STD * N(0, 1), row-major
    for (int64_t i = 0; i < p->ctx->n; i++)
        p->ctx->data[i] = (float)(COOP_INIT_STD * coop_rng_normal(&r));
    return 0;
}

int coop_prompt_init_data(CoopPrompt *p, const CoopPromptCfg *cfg, int W, int n_cls,
                          const float *data, McErr *err) {
    if (prompt_alloc(p, cfg, W, n_cls, err)) return -1;
    memcpy(p->ctx->data, data, (size_t)p->ctx->n * sizeof(float));
    return 0;
}

int coop_prompt_init_ids(CoopPrompt *p, const CoopPromptCfg *cfg, const TextTower *tt,
                         const int32_t *ids, int n, int n_cls, McErr *err) {
    CoopPromptCfg c = *cfg;
    c.n_ctx = n;
    if (n < 1) return mc_err(err, "prompt: the initialisation phrase has no tokens");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tt->cfg.vocab)
            return mc_err(err, "prompt: phrase token %d is outside the vocabulary [0, %d)",
                          ids[i], tt->cfg.vocab);
    int W = tt->cfg.width;
    if (prompt_alloc(p, &c, W, n_cls, err)) return -1;
    // ctx[(k,) j] = token_embedding[ids[j]]
    int64_t copies = c.csc ? n_cls : 1;
    for (int64_t k = 0; k < copies; k++)
        for (int j = 0; j < n; j++)
            memcpy(p->ctx->data + (k * n + j) * W,
                   tt->token_embedding->data + (int64_t)ids[j] * W, (size_t)W * sizeof(float));
    return 0;
}

int coop_prompt_init_phrase(CoopPrompt *p, const CoopPromptCfg *cfg, const TextTower *tt,
                            Tokenizer *tok, const char *phrase, int n_cls, McErr *err) {
    int32_t ids[TOK_CONTEXT];
    int n = tok_encode_raw(tok, phrase, ids, TOK_CONTEXT);
    if (n > TOK_CONTEXT - 2)
        return mc_err(err, "prompt: the phrase \"%s\" has %d tokens; at most %d fit", phrase,
                      n, TOK_CONTEXT - 2);
    return coop_prompt_init_ids(p, cfg, tt, ids, n, n_cls, err);
}

void coop_prompt_free(CoopPrompt *p) {
    if (!p) return;
    tensor_free(p->ctx);
    memset(p, 0, sizeof *p);
}

// ---- sequences ----

// First position of the largest id in row[0..T) (torch.argmax).
static int row_argmax(const int32_t *row, int T) {
    int best = 0;
    for (int t = 1; t < T; t++)
        if (row[t] > row[best]) best = t;
    return best;
}

// Lay out one row.  src holds the conceptual sequence after SOT: entries
// >= 0 are token ids, entries < 0 are context rows -(j + 1).
static void layout_row(int32_t *ids, int32_t *crow, const int32_t *ids0, int T,
                       const CoopPromptCfg *c, int name_len, int64_t ctx_base) {
    int M = c->n_ctx, body0 = c->form == COOP_FORM_TEMPLATE ? 1 + M : 1;
    int nb = T - body0;                       // body = ids0[body0 .. T)
    int n = name_len < 0 ? 0 : (name_len > nb ? nb : name_len);
    int h = c->pos == COOP_POS_MIDDLE ? M / 2 : (c->pos == COOP_POS_FRONT ? 0 : M);
    int nfirst = c->pos == COOP_POS_END ? 0 : n;  // body tokens before ctx[h:]

    // Position 0 is SOT; then ctx[:h] (front: none), body[:nfirst],
    // ctx[h:], body[nfirst:], truncated at T.
    int t = 0;
    ids[t] = ids0[0], crow[t] = -1, t++;
    if (c->pos == COOP_POS_FRONT) {
        for (int i = 0; i < n && t < T; i++) ids[t] = ids0[body0 + i], crow[t] = -1, t++;
        for (int j = 0; j < M && t < T; j++) ids[t] = 0, crow[t] = (int32_t)(ctx_base + j), t++;
    } else {
        for (int j = 0; j < h && t < T; j++) ids[t] = 0, crow[t] = (int32_t)(ctx_base + j), t++;
        for (int i = 0; i < nfirst && t < T; i++)
            ids[t] = ids0[body0 + i], crow[t] = -1, t++;
        for (int j = h; j < M && t < T; j++) ids[t] = 0, crow[t] = (int32_t)(ctx_base + j), t++;
    }
    for (int i = nfirst; i < nb && t < T; i++) ids[t] = ids0[body0 + i], crow[t] = -1, t++;
}

int coop_seqs_build(CoopSeqs *s, const CoopPrompt *p, const int32_t *ids0,
                    const int *name_len, int64_t R, int T, McErr *err) {
    const CoopPromptCfg *c = &p->cfg;
    int M = c->n_ctx;
    if (R < 1) return mc_err(err, "prompt: no rows to build");
    if (c->csc && R != p->n_cls)
        return mc_err(err, "prompt: class-specific contexts were made for %d classes, "
                      "the call has %lld rows", p->n_cls, (long long)R);
    if (M + 2 > T) return mc_err(err, "prompt: %d context vectors do not fit %d positions", M, T);
    for (int64_t r = 0; r < R; r++) {
        int e = row_argmax(ids0 + r * T, T);
        if (e == 0)
            return mc_err(err, "prompt: row %lld has no end-of-text maximum after position 0",
                          (long long)r);
        if (c->form == COOP_FORM_TEMPLATE && e <= M)
            return mc_err(err, "prompt: row %lld ends at position %d, inside the %d context "
                          "slots (the text must start with %d placeholder words)",
                          (long long)r, e, M, M);
    }
    CoopSeqs o = {.R = R, .T = T};
    o.ids = mc_malloc((size_t)(R * T) * sizeof *o.ids);
    o.ctx_row = mc_malloc((size_t)(R * T) * sizeof *o.ctx_row);
    o.pool = mc_malloc((size_t)R * sizeof *o.pool);
    for (int64_t r = 0; r < R; r++) {
        const int32_t *in = ids0 + r * T;
        int nl = name_len ? name_len[r] : 0;
        layout_row(o.ids + r * T, o.ctx_row + r * T, in, T, c, nl, c->csc ? r * M : 0);

        // Pooled position (header: template argmax; paper eot / legacy).
        int64_t e = row_argmax(in, T), shift = c->pool == COOP_POOL_EOT ? M
                                             : c->pool == COOP_POOL_LEGACY ? R : 0;
        o.pool[r] = (int32_t)(e + shift < T - 1 ? e + shift : T - 1);
    }
    *s = o;
    return 0;
}

int coop_seqs_from_names(CoopSeqs *s, const CoopPrompt *p, Tokenizer *tok,
                         const char *const *names, int64_t R, McErr *err) {
    int T = TOK_CONTEXT, M = p->cfg.n_ctx;
    int32_t *ids0 = mc_malloc((size_t)(R * T) * sizeof *ids0);
    int *len = mc_malloc((size_t)R * sizeof *len);
    size_t cap = 256;
    char *text = mc_malloc(cap);
    for (int64_t r = 0; r < R; r++) {
        const char *name = names[r];
        len[r] = tok_encode_raw(tok, name, NULL, 0);
        if (p->cfg.form == COOP_FORM_PAPER) {
            tok_encode(tok, name, ids0 + r * T);   // the bare name
            continue;
        }
        // "X X ... X <name>." tokenized as one text, like CoOp.
        size_t need = (size_t)M * 2 + strlen(name) + 2;
        if (need > cap) {
            mc_free(text);
            cap = need;
            text = mc_malloc(cap);
        }
        size_t o = 0;
        for (int j = 0; j < M; j++) text[o++] = COOP_X_WORD[0], text[o++] = ' ';
        memcpy(text + o, name, strlen(name));
        o += strlen(name);
        text[o++] = '.';
        text[o] = 0;
        tok_encode(tok, text, ids0 + r * T);
    }
    int rc = coop_seqs_build(s, p, ids0, len, R, T, err);
    mc_free(text);
    mc_free(len);
    mc_free(ids0);
    return rc;
}

void coop_seqs_free(CoopSeqs *s) {
    if (!s) return;
    mc_free(s->ids);
    mc_free(s->ctx_row);
    mc_free(s->pool);
    memset(s, 0, sizeof *s);
}

// ---- the splice op ----

// Backward of tok = assemble(emb, ctx): d ctx[row] += d tok[r, t] at every
// context position (rows may repeat across sequences: scatter-add).
static void assemble_backward(AgNode *node) {
    Tensor *ctx = node->in[0], *out = node->out;
    if (!ag_wants(ctx)) return;
    const int32_t *crow = node->saved;
    int64_t npos = node->ip[0], W = node->ip[1];
    for (int64_t i = 0; i < npos; i++) {
        if (crow[i] < 0) continue;
        float *d = ctx->grad + (int64_t)crow[i] * W;
        const float *g = out->grad + i * W;
        for (int64_t w = 0; w < W; w++) d[w] += g[w];
    }
}

Tensor *coop_assemble(Graph *g, const Tensor *token_embedding, CoopPrompt *p,
                      const CoopSeqs *s, int64_t r0, int64_t n) {
    int64_t T = s->T, W = p->width, V = token_embedding->shape[0];
    MC_CHECK(token_embedding->shape[1] == W, "coop_assemble: embedding width %lld, prompt "
             "width %lld", (long long)token_embedding->shape[1], (long long)W);
    MC_CHECK(r0 >= 0 && n >= 1 && r0 + n <= s->R, "coop_assemble: rows %lld..%lld of %lld",
             (long long)r0, (long long)(r0 + n), (long long)s->R);
    Tensor *out = ag_tensor(g, MC_DIMS(n, T, W));
    const int32_t *ids = s->ids + r0 * T, *crow = s->ctx_row + r0 * T;
    int64_t rows = coop_prompt_rows(p);

    // out[i] = ctx[crow[i]] at context positions, else token_embedding[ids[i]]
    for (int64_t i = 0; i < n * T; i++) {
        const float *src;
        if (crow[i] >= 0) {
            MC_CHECK(crow[i] < rows, "coop_assemble: context row %d of %lld", crow[i],
                     (long long)rows);
            src = p->ctx->data + (int64_t)crow[i] * W;
        } else {
            MC_CHECK(ids[i] >= 0 && ids[i] < V, "coop_assemble: token id %d outside [0, %lld)",
                     ids[i], (long long)V);
            src = token_embedding->data + (int64_t)ids[i] * W;
        }
        memcpy(out->data + i * W, src, (size_t)W * sizeof(float));
    }

    // Only ctx can receive a gradient (the embedding table is frozen).
    Tensor *ins[1] = {p->ctx};
    if (ag_needs_grad(g, ins, 1)) {
        AgNode *node = ag_record(g, "coop_assemble", assemble_backward, out, ins, 1);
        int32_t *saved = arena_alloc(&g->arena, (size_t)(n * T) * sizeof *saved);
        memcpy(saved, crow, (size_t)(n * T) * sizeof *saved);
        node->saved = saved;
        node->ip[0] = n * T;
        node->ip[1] = W;
    }
    return out;
}

Tensor *coop_encode(Graph *g, TextTower *tt, CoopPrompt *p, const CoopSeqs *s,
                    int64_t r0, int64_t n, const McDump *dump) {
    MC_CHECK(p->width == tt->cfg.width && s->T == tt->cfg.context,
             "coop_encode: prompt width %d / %d positions, tower %d / %d", p->width, s->T,
             tt->cfg.width, tt->cfg.context);
    Tensor *tok = coop_assemble(g, tt->token_embedding, p, s, r0, n);
    // Dumps need every row of every block: the full tower; otherwise the
    // last block only at the pooled rows (textfast.h).
    if (dump) return text_tower_forward_tokens(g, tt, tok, s->pool + r0, dump);
    return coop_text_forward(g, tt, tok, s->pool + r0);
}
