// vprompt.h - the padding visual prompt (Bahng et al., "Exploring Visual
// Prompts for Adapting Large-Scale Models", 2022): a learnable border of
// width b added to the normalised image, trained through the frozen image
// tower against fixed class text embeddings.
//
// Dims: N images, S image side, b border width, K classes, E embedding
// width, P = 3 (S^2 - (S - 2b)^2) border parameters.
//
// Forward (arch-spec section 10, paper-protocol section 10):
//   x'  = x + prompt (.) mask        x [N, 3, S, S] already normalised
//                                    (pixels / 255 for S0, S2, B; OpenAI
//                                    mean/std for S3, S4, L-14)
//   f   = image_tower(x')            fused or training form, BN in eval
//   L   = mean_n CE(s * f^_n . t^_k, y_n),  t^ [K, E] fixed, normalised
// mask is 1 on the top b rows, the bottom b rows and the left and right b
// columns.  d L / d x' is dense; the prompt's gradient is its restriction to
// the border, summed over the batch.
//
// Storage: border only, as Bahng's four pieces (the names of his
// PadPrompter's parameters, without the leading batch dim):
//   pad_up     [3, b, S]        rows [0, b), all columns
//   pad_down   [3, b, S]        rows [S - b, S)
//   pad_left   [3, S - 2b, b]   rows [b, S - b), columns [0, b)
//   pad_right  [3, S - 2b, b]   rows [b, S - b), columns [S - b, S)
// The learnable tensor theta [P] is the concatenation of the four pieces in
// that order (each row-major).  b = 32 at S = 256 gives P = 86,016, the
// count of non-zero values in the paper's published visual prompt.
//
// Files:
//   mclip visual prompt  safetensors: the four tensors (F32) and metadata
//                        mclip_prompt "1", prompt_type "vis", model_name,
//                        image_size, border_size, init_std, seed,
//                        weights_sha256, random_weights, source, plus extra
//                        keys of the writer (training settings);
//   paper .pt            torch.save({"ctx": [3, S, S], "meta": {...,
//                        "prompt_type": "vis", "border_size": b}}): the full
//                        tensor (ctx (.) mask is what the paper adds); read
//                        through mobileclip/torch_pt.h and converted to the
//                        border pieces.  border_size comes from meta, or,
//                        when absent, from the mask as the paper recomputes
//                        it (the first zero of channel 0's middle row).
//                        Non-zero values inside the border's hole are never
//                        used by the paper's forward; they are dropped and
//                        counted (CoopVPromptFile.dropped).
//
// Initialisation: theta ~ N(0, std^2) drawn in storage order from
// coop_rng_seed(seed).  Bahng used std 1, the paper 0.02 (its default
// here, COOP_VP_INIT_STD), the reference generator 0.1.
//
// Usage sketch (compiled by tests/test_vprompt.c):
//
//     CoopVPrompt vp;
//     if (coop_vp_init(&vp, 256, 32, COOP_VP_INIT_STD, 42, &err)) ...;
//     Graph *g = ag_graph_new(1 << 26);
//     tensor_zero_grad(vp.theta);
//     double loss = coop_vp_loss(g, model->image, &vp, x, N, txtn, K, labels,
//                                100.0, logits, NULL);    // vp.theta->grad += d L / d theta
//     ... optimizer step on vp.theta ...
//     coop_vp_save("vp.safetensors", &vp, &meta, &err);
//     ag_graph_free(g);
//     coop_vp_free(&vp);
#ifndef MCLIP_COOP_VPROMPT_H
#define MCLIP_COOP_VPROMPT_H

#include "../autograd/autograd.h"
#include "../mobileclip/image_tower.h"

#define COOP_VP_INIT_STD 0.02   // the paper's init (0.02 * N(0, 1))
#define COOP_VP_FORMAT   "1"    // metadata mclip_prompt of a visual prompt file

typedef struct CoopVPrompt {
    int     size;     // S
    int     border;   // b, 1 <= b and 2b <= S
    Tensor *theta;    // [P] heap, requires_grad: pad_up, pad_down, pad_left, pad_right
} CoopVPrompt;

// P = 3 (S^2 - (S - 2b)^2), or -1 when (S, b) is not a border.
int64_t coop_vp_numel(int S, int b);
// 0 when 1 <= b, 2b <= S and S <= 4096; else -1 naming the problem.
int coop_vp_check(int S, int b, McErr *err);

// theta ~ N(0, std^2) from coop_rng_seed(seed), in storage order.
int  coop_vp_init(CoopVPrompt *vp, int S, int b, double std, uint64_t seed, McErr *err);
// theta = border [P] (copied).
int  coop_vp_init_data(CoopVPrompt *vp, int S, int b, const float *border, McErr *err);
void coop_vp_free(CoopVPrompt *vp);

// ---- layout ----

// The storage index of pixel (c, i, j) in theta, or -1 inside the hole.
int64_t coop_vp_index(int S, int b, int c, int i, int j);
// full [3, S, S] = prompt (.) mask (zeros in the hole).
void    coop_vp_to_full(int S, int b, const float *theta, float *full);
// border [P] = the border pixels of full [3, S, S]; returns the number of
// non-zero values of full inside the hole (which are not kept).
int64_t coop_vp_from_full(int S, int b, const float *full, float *border);
// The paper's border rule on a full prompt: the index of the first zero of
// channel 0's middle row (S / 2), or -1 when that row has no zero.
int     coop_vp_detect_border(int S, const float *full);

// ---- forward ----

// On the tape: x [N, 3, S, S] -> x + prompt (.) mask.  When theta requires
// a gradient and g records, the backward adds sum_n d out[n] at border
// pixels into theta->grad (and d out into x->grad when x wants one).
Tensor *coop_vp_apply(Graph *g, Tensor *x, CoopVPrompt *vp);
// Without the tape, in place: x [N, 3, S, S] += prompt (.) mask.
void    coop_vp_add(int S, int b, const float *theta, float *x, int64_t N);

// Classification loss of one batch through the frozen tower:
//   x [N, 3, S, S] normalised images (not modified), txtn [K, E] normalised
//   class text embeddings, labels [N] in [0, K), scale s (the paper: 100).
// Adds d L / d theta into vp->theta->grad (the caller zeroes it).  logits
// [N, K] and imgn [N, E] (the normalised image features) may be NULL.  g is
// reset before and after; when x_grad is not NULL it receives the dense
// d L / d x' [N, 3, S, S].  Returns L.
double coop_vp_loss(Graph *g, ImageTower *tw, CoopVPrompt *vp, const float *x, int64_t N,
                    const float *txtn, int64_t K, const int32_t *labels, double scale,
                    float *logits, float *imgn, float *x_grad);

// Normalised image features imgn [N, E] of prompted images (no tape; vp may
// be NULL for none).  Runs in batches of at most `batch` images through g.
void coop_vp_features(Graph *g, ImageTower *tw, const CoopVPrompt *vp, const float *x,
                      int64_t N, int batch, float *imgn);

// ---- files ----

typedef struct CoopVPromptFile {
    int     size, border;
    float  *theta;            // [P]
    char    model_name[64];
    char    weights_sha256[65];
    int     random_weights;
    double  init_std;         // NaN when unknown
    char    source[512];      // "mclip", or the .pt path it came from
    char    coop_version[16]; // paper files
    int64_t dropped;          // non-zero values of a full tensor inside the hole
} CoopVPromptFile;

typedef struct CoopVPromptMeta {
    const char *model_name;          // "custom" when NULL
    const char *weights_sha256;      // may be NULL
    int         random_weights;
    double      init_std;            // NaN: not written
    uint64_t    seed;
    const char *source;              // NULL: "mclip"
    const char *const *extra_keys;   // n_extra key/value pairs, may be NULL
    const char *const *extra_values;
    int         n_extra;
} CoopVPromptMeta;

// Write vp atomically (st_writer_save).
int  coop_vp_save(const char *path, const CoopVPrompt *vp, const CoopVPromptMeta *meta,
                  McErr *err);
// Read an mclip visual prompt file or a paper .pt one (detected by content).
int  coop_vp_load(const char *path, CoopVPromptFile *f, McErr *err);
void coop_vp_file_free(CoopVPromptFile *f);
// 0 if the prompt fits a model of this name and image size; else -1.
int  coop_vp_file_check(const CoopVPromptFile *f, const char *model_name, int image_size,
                        McErr *err);
// A CoopVPrompt holding the file's border.
int  coop_vp_file_prompt(const CoopVPromptFile *f, CoopVPrompt *vp, McErr *err);

#endif
