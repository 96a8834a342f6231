// image_tower.h - the MobileCLIP2 image tower: FastViT MCi or ViT trunk
// chosen by McImageConfig, loaded from open_clip keys (visual.trunk.*).
//
// The tower maps N preprocessed images x [N, 3, S, S] (already resized and
// normalized with the variant's mean/std) to image features [N, E] (not
// L2-normalized; open_clip's encode_image).  Weights are frozen: they never
// get gradient buffers, so a backward pass through the tower computes only
// d loss / d x (visual prompting, attribution maps).
//
// FastViT towers load from the train-time (unfused) checkpoint layout and,
// with fuse != 0, are reparameterized at load time (../shared/arch-spec.md
// section 7 plus the exact extra folds listed in fastvit.h); fuse == 0
// keeps every branch, BN and layer scale as the checkpoint stores them.
// ViT towers have nothing timm would fuse; with fuse != 0 the B conv stem's
// BatchNorms are folded into their convs.
//
// Usage sketch (compiled by tests/test_image_tower.c):
//
//     McErr err;
//     const McModelConfig *mc = mc_config_find("S0");
//     WeightSet *ws = ws_open("mobileclip2_s0.safetensors", &err);
//     ImageTower *tw = image_tower_load(ws, &mc->image, 1, &err);
//     ws_ignore_prefix(ws, "text.");           // the text tower loads elsewhere
//     ws_ignore_prefix(ws, "logit_scale");
//     if (!tw || ws_finish(ws, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
//     Graph *g = ag_graph_new(1 << 26);
//     Tensor *x = ag_tensor(g, MC_DIMS(1, 3, 256, 256));   // fill with pixels
//     Tensor *feat = image_tower_forward(g, tw, x, NULL); // [1, 512]
//     ag_graph_free(g);
//     image_tower_free(tw);
//     ws_close(ws);
#ifndef MCLIP_IMAGE_TOWER_H
#define MCLIP_IMAGE_TOWER_H

#include "../autograd/autograd.h"
#include "config.h"
#include "weights.h"

// Called with each named activation during a forward pass (the tensor lives
// in the graph's arena; copy what you keep).  FastViT names: image.input,
// image.stem, image.stage.K, image.final_conv, image.pooled, image.embed.
// ViT names: image.input, image.stem (conv stem / patch conv output,
// [N, D, h, w]), image.tokens (after class token, position embedding and
// norm_pre), image.block.K, image.norm, image.pooled, image.embed.
typedef void (*McDumpFn)(void *ctx, const char *name, const Tensor *t);

// Optional observers of one forward pass.  Zero-initialise, then set what
// is wanted (attn_block = -1 for no attention probe).
typedef struct McImageHooks {
    McDumpFn dump;        // or NULL
    void    *dump_ctx;
    int attn_stage;       // FastViT stage of the probed attention block (ViT: unused)
    int attn_block;       // block index within the stage (ViT: layer); < 0: off
    int attn_head;        // head to keep; -1: mean over heads
    Tensor *attn;         // out: [N, T, T] softmax probabilities (graph arena), T tokens
} McImageHooks;

// The heap tensors a trunk owns (weights and fused weights), for freeing,
// counting and enumerating.  Entries set to NULL were dropped (branches
// freed after fusion).
typedef struct McParamList {
    Tensor **t;     // [n] owned tensors (NULL entries skipped)
    int n, cap;
} McParamList;

void mc_params_add(McParamList *p, Tensor *t);   // takes ownership
void mc_params_drop(McParamList *p, Tensor *t);  // frees t and forgets it
void mc_params_free(McParamList *p);             // frees every tensor
int64_t mc_params_numel(const McParamList *p);

// Softmax attention probabilities of one head (head >= 0) or the mean over
// heads (head < 0) from a packed qkv [N, T, 3C] (q, k, v; heads split along
// C as h * HS + d): p[n, i, j] = softmax_j(q_i . k_j * scale), computed in
// double outside the tape (an observer, no gradient).  Returns [N, T, T] in
// g's arena.  Used by the trunks for McImageHooks.attn.
Tensor *mc_attn_probs(Graph *g, const Tensor *qkv, int heads, int head, float scale);

// Inference memory: when a forward pass records no tape, a trunk runs each
// unit (stem, downsample, block, head) in one of two scratch graphs and
// frees the previous unit's intermediates, so a pass holds one unit's
// activations instead of all of them; the result is copied into the
// caller's graph.  When the pass records (x requires a gradient and
// g->grad_enabled), everything stays in the caller's graph for backward.
typedef struct McPass {
    Graph  *out;        // the caller's graph: outputs, attention probes
    Graph  *run;        // where the current unit's ops go
    Graph **scratch;    // [2] owned by the trunk, or NULL while recording
    int     cur;
} McPass;

// scratch points at the trunk's two graph pointers (created on first use).
void    mc_pass_begin(McPass *p, Graph *out, Graph **scratch, const Tensor *x);
// The unit that just ran produced the only tensor still needed: drop the
// previous unit's graph and run the next unit in it.
void    mc_pass_next(McPass *p);
// The final tensor, in the caller's graph.
Tensor *mc_pass_end(McPass *p, Tensor *x);
void    mc_pass_free(Graph **scratch);

typedef struct ImageTower ImageTower;

// Build the tower of cfg from ws (keys visual.trunk.*); num_batches_tracked
// entries are marked ignorable.  Missing or mis-shaped keys are recorded in
// ws and reported by ws_finish; a config the code cannot build returns NULL
// with err set.
ImageTower *image_tower_load(WeightSet *ws, const McImageConfig *cfg, int fuse, McErr *err);
void        image_tower_free(ImageTower *t);

// x [N, 3, S, S] -> features [N, E] in g's arena.  When x requires a
// gradient the ops are recorded, so ag_backward_seed(g, out, d_out) fills
// x->grad.  hooks may be NULL.  Inference passes use scratch graphs owned
// by the tower (see McPass): one tower must not run two passes at once.
Tensor *image_tower_forward(Graph *g, ImageTower *t, Tensor *x, McImageHooks *hooks);

// The config the tower was built from, whether it is fused, its embedding
// width E, and its parameter tensors (for counting and for checks that the
// weights stay frozen): i in [0, image_tower_param_count).
const McImageConfig *image_tower_config(const ImageTower *t);
int     image_tower_fused(const ImageTower *t);
int     image_tower_param_count(const ImageTower *t);
Tensor *image_tower_param(const ImageTower *t, int i);
int64_t image_tower_numel(const ImageTower *t);   // total parameter elements

#endif
