// autograd.h - reverse-mode automatic differentiation on a tape.
//
// A Graph owns an Arena and a tape.  Every ag_* op allocates its output in
// the graph's arena and, when at least one input requires a gradient and
// the graph records (g->grad_enabled), appends a node holding its backward
// function.  ag_backward(g, loss) seeds d loss = 1 and walks the tape in
// reverse, each node adding into the grad buffers of the inputs that
// require a gradient.  Inputs that do not (frozen weights, images) get no
// gradient buffer and their gradient code never runs: a frozen linear layer
// costs one GEMM backward (d input), not two.
//
// Gradients accumulate.  Leaf parameters (tensor_require_grad) keep their
// gradient across ag_graph_reset and are zeroed explicitly with
// tensor_zero_grad; intermediate gradients live in the arena.
//
// Usage sketch (compiled by tests/test_autograd.c):
//
//     Graph *g = ag_graph_new(1 << 20);
//     Tensor *w = tensor_new(MC_DIMS(4, 3));      // learnable leaf
//     tensor_require_grad(w);
//     Tensor *x = ag_tensor(g, MC_DIMS(2, 3));    // input, no gradient
//     tensor_fill(x, 1.0f);
//     Tensor *y = ag_linear(g, x, w, NULL);       // [2, 4]
//     Tensor *loss = ag_mean(g, ag_gelu(g, y));   // scalar
//     ag_backward(g, loss);                       // w->grad += d loss / d w
//     ag_graph_reset(g);                          // next step
//     ag_graph_free(g);
//     tensor_free(w);
//
// Dim names: B batch, T tokens, D features, N images, C channels, H, W
// spatial, K classes.
#ifndef MCLIP_AUTOGRAD_H
#define MCLIP_AUTOGRAD_H

#include "../tensor/tensor.h"

#define AG_MAXIN 6

typedef struct AgNode AgNode;
typedef void (*AgBackwardFn)(AgNode *node);

// One recorded op.  The backward reads the inputs' data, the output's grad
// and whatever the forward saved, and adds into the inputs' grad buffers
// (only of inputs with requires_grad set).
struct AgNode {
    const char   *op;            // op name, for error messages and profiles
    AgBackwardFn  backward;
    Tensor       *out;
    Tensor       *in[AG_MAXIN];  // inputs (NULL entries allowed)
    int           n_in;
    void         *saved;         // op-specific data in the graph's arena
    int64_t       ip[8];         // integer parameters (stride, dims, ...)
    float         fp[4];         // float parameters (eps, scale, ...)
    AgNode       *prev;          // previous node on the tape
};

typedef struct Graph {
    Arena   arena;          // outputs, intermediate grads, saved data, nodes
    AgNode *tape;           // last recorded node
    int     n_nodes;
    int     grad_enabled;   // 0: record nothing (inference)
} Graph;

Graph *ag_graph_new(size_t arena_bytes);
void   ag_graph_reset(Graph *g);   // drop tape and activations
void   ag_graph_free(Graph *g);

// A fresh arena tensor (uninitialised / zeroed) that needs no gradient.
Tensor *ag_tensor(Graph *g, int ndim, const int64_t *shape);
Tensor *ag_zeros(Graph *g, int ndim, const int64_t *shape);

// Seed d loss = 1 (loss must have one element) and run the tape backward.
void ag_backward(Graph *g, Tensor *loss);
// Add dout [out->n] into out's gradient and run the tape backward (for a
// vector-Jacobian product of a non-scalar output).
void ag_backward_seed(Graph *g, Tensor *out, const float *dout);

// ---- for op implementations ----

// 1 if any of the n tensors requires a gradient and the graph records.
int ag_needs_grad(Graph *g, Tensor *const *ins, int n);
// Record a node producing out from ins; marks out as requiring a gradient
// and gives it a zeroed grad buffer in the arena.  Returns the node so the
// op can fill saved/ip/fp.
AgNode *ag_record(Graph *g, const char *op, AgBackwardFn bw, Tensor *out,
                  Tensor *const *ins, int n);
// 1 if t exists and wants a gradient (so backward must compute it).
static inline int ag_wants(const Tensor *t) { return t && t->requires_grad && t->grad; }

// ---- ops ----
// Every op takes the graph first and returns a new arena tensor.  Shapes
// are checked always; a mismatch aborts naming file:line, op and shapes.

// Elementwise with broadcasting (numpy rules, up to 4 dims): a op b.
Tensor *ag_add(Graph *g, Tensor *a, Tensor *b);
Tensor *ag_sub(Graph *g, Tensor *a, Tensor *b);
Tensor *ag_mul(Graph *g, Tensor *a, Tensor *b);
Tensor *ag_scale(Graph *g, Tensor *a, float s);          // s * a
Tensor *ag_gelu(Graph *g, Tensor *a);                    // exact erf GELU
Tensor *ag_sigmoid(Graph *g, Tensor *a);
Tensor *ag_relu(Graph *g, Tensor *a);
Tensor *ag_exp(Graph *g, Tensor *a);

// Reductions to a scalar [] and along the last dim.
Tensor *ag_sum(Graph *g, Tensor *a);                     // [] = sum of all
Tensor *ag_mean(Graph *g, Tensor *a);                    // [] = mean of all

// Shapes.  reshape is a view: the result shares data and grad with a.
Tensor *ag_reshape(Graph *g, Tensor *a, int ndim, const int64_t *shape);
Tensor *ag_permute(Graph *g, Tensor *a, int p0, int p1, int p2, int p3);
Tensor *ag_concat(Graph *g, Tensor *a, Tensor *b, int dim);
Tensor *ag_slice(Graph *g, Tensor *a, int dim, int64_t start, int64_t len);
// Zero padding of the last two dims (H, W): top, bottom, left, right.
Tensor *ag_pad2d(Graph *g, Tensor *a, int top, int bottom, int left, int right);

// Linear algebra.
// a [..., K] @ b [K, N] -> [..., N]
Tensor *ag_matmul(Graph *g, Tensor *a, Tensor *b);
// x [..., in] W^T + bias: w [out, in], bias [out] or NULL -> [..., out]
Tensor *ag_linear(Graph *g, Tensor *x, Tensor *w, Tensor *bias);

// Rows: out[i] = x[rows[i]] for x [R, D] (embedding lookup, EOT pooling).
// rows has n entries in [0, R); backward scatter-adds.
Tensor *ag_rows(Graph *g, Tensor *x, const int32_t *rows, int64_t n);

// Normalisation.
// LayerNorm over the last dim D: gamma, beta [D] (either may be NULL).
Tensor *ag_layernorm(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps);
// LayerNorm2d: x [N,C,H,W] normalised over C at each pixel; gamma, beta [C].
Tensor *ag_layernorm2d(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps);
// BatchNorm in eval form on x [N,C,H,W]: (x - mean)/sqrt(var + eps)*gamma + beta;
// mean, var, gamma, beta [C] (gamma/beta may be NULL).  Gradients flow to x,
// gamma and beta; the statistics are constants.
Tensor *ag_batchnorm(Graph *g, Tensor *x, Tensor *mean, Tensor *var,
                     Tensor *gamma, Tensor *beta, float eps);
// x / max(||x||_2, eps) along the last dim (F.normalize, eps 1e-12).
Tensor *ag_l2norm(Graph *g, Tensor *x, float eps);

// Softmax family along the last dim.
Tensor *ag_softmax(Graph *g, Tensor *x);
Tensor *ag_log_softmax(Graph *g, Tensor *x);
// Mean over rows of -log_softmax(logits)[i, labels[i]]; logits [B, K] -> [].
Tensor *ag_cross_entropy(Graph *g, Tensor *logits, const int32_t *labels);

// Convolution and pooling (NCHW).
// x [N,Cin,H,W], w [Cout,Cin/groups,kH,kW], bias [Cout] or NULL.
Tensor *ag_conv2d(Graph *g, Tensor *x, Tensor *w, Tensor *bias,
                  int stride, int pad, int groups);
// Mean over H, W: [N,C,H,W] -> [N,C].
Tensor *ag_avgpool(Graph *g, Tensor *x);

// Multi-head attention on packed projections:
// qkv [B, T, 3*C] holding q, k, v in that order, heads split along C as
// channel h*HS + d (HS = C / n_head); out [B, T, C] where
//   out_h = softmax(q_h k_h^T * scale + mask) v_h
// mask [T, T] additive (may contain -inf) or NULL.
Tensor *ag_attention(Graph *g, Tensor *qkv, int n_head, Tensor *mask, float scale);

#endif
