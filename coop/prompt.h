// prompt.h - the CoOp prompt learner: learnable context vectors spliced
// into the token embeddings of class names (or captions) before the frozen
// text tower.
//
// Dims: M context vectors, W text width, K classes (rows of a call; R in
// general, captions too), T = 77 positions, E embedding width.
//
// Context: ctx [M, W] (unified, one context for every class) or [K, M, W]
// (class-specific, "CSC"), initialised N(0, 0.02^2) from a seed (coop/rng.h)
// or from a phrase ("a photo of a": its M token embeddings become ctx).
// ctx is the only tensor with a gradient; the tower stays frozen.
//
// Two sequence forms, both built from the open_clip tokenization ids0 of a
// text (SOT, tokens, EOT, zero padding; truncated to T with EOT last):
//
//   template  CoOp and the reference generator (arch-spec section 10):
//             text = "X X ... X <name>." (M X's), tokenized as a whole; the
//             embeddings of positions 1..M are replaced by ctx, everything
//             else (name, ".", EOT, the id-0 pads) keeps its embedding.
//             Pooled at argmax(ids0), the true EOT.
//   paper     the paper's CoOpTextPrompt (paper-protocol sections 3, 4):
//             text = the bare name (no template, no period); the sequence
//             is [emb(SOT), ctx, emb(ids0[1:])] truncated to T.  Pooled by
//             a named rule, eot0 = argmax(ids0):
//               eot     min(eot0 + M, T - 1)   (paper v0.1.1: the true EOT)
//               legacy  min(eot0 + R, T - 1)   (paper v0.1.0: R = rows of
//                       the call, i.e. the number of classes, or the batch
//                       size for captions; mostly a pad slot)
//
// Class-token position (CoOp's CLASS_TOKEN_POSITION), with "body" = the
// tokens after SOT that are not context (template: ids0[1+M:], paper:
// ids0[1:]), n = the name's BPE length (clamped to the body):
//   end     [SOT, ctx, body]
//   front   [SOT, body[:n], ctx, body[n:]]
//   middle  [SOT, ctx[:M/2], body[:n], ctx[M/2:], body[n:]]
// then truncated to T.  The paper used end only; front/middle with the
// paper form are the same splice applied to the bare-name body.
//
// Usage sketch (compiled by tests/test_coop.c):
//
//     CoopPromptCfg pc = coop_prompt_defaults();          // M 16, end, template
//     CoopPrompt p;
//     if (coop_prompt_init(&p, &pc, 512, 0, 42, &err)) ...;
//     CoopSeqs s;
//     const char *names[2] = {"dog", "cat"};
//     if (coop_seqs_from_names(&s, &p, tok, names, 2, &err)) ...;
//     Tensor *tok_emb = coop_assemble(g, tt->token_embedding, &p, &s, 0, 2); // [2, 77, W]
//     Tensor *feat = coop_encode(g, tt, &p, &s, 0, 2);    // [2, E], raw projection
//     coop_seqs_free(&s);
//     coop_prompt_free(&p);
#ifndef MCLIP_COOP_PROMPT_H
#define MCLIP_COOP_PROMPT_H

#include "../autograd/autograd.h"
#include "../mobileclip/text.h"
#include "../mobileclip/tokenizer.h"

#define COOP_DEFAULT_NCTX 16
#define COOP_INIT_STD     0.02    // std of the random context initialisation
#define COOP_X_WORD       "X"     // placeholder word of the template form

typedef enum { COOP_FORM_TEMPLATE, COOP_FORM_PAPER } CoopForm;
typedef enum { COOP_POOL_ARGMAX, COOP_POOL_EOT, COOP_POOL_LEGACY } CoopPool;
typedef enum { COOP_POS_END, COOP_POS_MIDDLE, COOP_POS_FRONT } CoopClassPos;

typedef struct CoopPromptCfg {
    int          n_ctx;   // M >= 1 (set from the phrase by coop_prompt_init_phrase)
    int          csc;     // 1: class-specific contexts [K, M, W]
    CoopClassPos pos;
    CoopForm     form;
    CoopPool     pool;    // template: COOP_POOL_ARGMAX; paper: EOT or LEGACY
} CoopPromptCfg;

typedef struct CoopPrompt {
    CoopPromptCfg cfg;
    int     width;   // W
    int     n_cls;   // K of the class-specific contexts (0 when unified)
    Tensor *ctx;     // [M, W] or [K, M, W], heap, requires_grad
} CoopPrompt;

// M 16, unified, class at the end, template form, argmax pooling.
CoopPromptCfg coop_prompt_defaults(void);
// The paper's settings: M 16, unified, end, paper form, pool = eot
// (legacy = 0) or legacy (legacy = 1).
CoopPromptCfg coop_prompt_paper(int legacy);

// Names for files and flags ("template"/"paper", "argmax"/"eot"/"legacy",
// "end"/"middle"/"front"); the parsers return -1 for an unknown name.
const char *coop_form_name(CoopForm f);
const char *coop_pool_name(CoopPool p);
const char *coop_pos_name(CoopClassPos p);
int coop_form_parse(const char *s);
int coop_pool_parse(const char *s);
int coop_pos_parse(const char *s);

// 0 if cfg is usable (M in 1..T-2, the pooling rule fits the form), else -1
// naming the problem.
int coop_prompt_check(const CoopPromptCfg *cfg, McErr *err);

// ctx ~ N(0, COOP_INIT_STD^2) drawn in row-major order from coop_rng_seed(seed).
// n_cls: K for class-specific contexts (ignored when unified).
int  coop_prompt_init(CoopPrompt *p, const CoopPromptCfg *cfg, int W, int n_cls,
                      uint64_t seed, McErr *err);
// ctx rows = token_embedding[ids[0..n)] (every class gets a copy when CSC);
// cfg->n_ctx is replaced by n.
int  coop_prompt_init_ids(CoopPrompt *p, const CoopPromptCfg *cfg, const TextTower *tt,
                          const int32_t *ids, int n, int n_cls, McErr *err);
// Same from a phrase: its BPE ids (no SOT/EOT) are the context.
int  coop_prompt_init_phrase(CoopPrompt *p, const CoopPromptCfg *cfg, const TextTower *tt,
                             Tokenizer *tok, const char *phrase, int n_cls, McErr *err);
// A prompt with given values: data [M*W] or [K*M*W] (copied).
int  coop_prompt_init_data(CoopPrompt *p, const CoopPromptCfg *cfg, int W, int n_cls,
                           const float *data, McErr *err);
void coop_prompt_free(CoopPrompt *p);
// Number of context rows (M, or K*M when class-specific).
int64_t coop_prompt_rows(const CoopPrompt *p);

// ---- sequences ----

typedef struct CoopSeqs {
    int64_t  R;         // rows (classes or captions)
    int      T;         // positions (77)
    int32_t *ids;       // [R, T] token id embedded at each non-context position
                        //        (context positions hold 0; unused)
    int32_t *ctx_row;   // [R, T] row of ctx viewed as [rows, W], or -1
    int32_t *pool;      // [R] pooled position
} CoopSeqs;

// Build from tokenized rows ids0 [R, T] (see the header for what each form
// tokenizes) and name_len [R] (BPE tokens of the bare name or caption;
// only read for front/middle, may then be NULL for end).  -1 with err set
// when a row has no EOT-like maximum after position 0 or, for the template
// form, when the placeholders do not fit.  s is untouched on failure.
int  coop_seqs_build(CoopSeqs *s, const CoopPrompt *p, const int32_t *ids0,
                     const int *name_len, int64_t R, int T, McErr *err);
// Tokenize names (or captions) as the prompt's form wants, then build.
int  coop_seqs_from_names(CoopSeqs *s, const CoopPrompt *p, Tokenizer *tok,
                          const char *const *names, int64_t R, McErr *err);
void coop_seqs_free(CoopSeqs *s);

// ---- on the tape ----

// tok [n, T, W] for rows r0..r0+n-1 of s: token_embedding rows at frozen
// positions, ctx rows at context positions.  When ctx requires a gradient
// and g records, the backward adds d tok at context positions into
// ctx->grad (scatter-add; the embedding table gets nothing).
Tensor *coop_assemble(Graph *g, const Tensor *token_embedding, CoopPrompt *p,
                      const CoopSeqs *s, int64_t r0, int64_t n);
// Raw text features [n, E] of rows r0..r0+n-1 (not normalised).  Without a
// dump (NULL) the tower's last block runs only at the pooled rows
// (coop/textfast.h); with one, the whole tower runs so that every
// activation can be dumped.  The prompt's width must be the tower's.
Tensor *coop_encode(Graph *g, TextTower *tt, CoopPrompt *p, const CoopSeqs *s,
                    int64_t r0, int64_t n, const McDump *dump);

#endif
