// ops_conv.c - 2-D convolution and global average pooling on the tape.
//
// Dims: x [N, Cin, H, W], w [Cout, Cin/groups, kH, kW], bias [Cout],
// y [N, Cout, Ho, Wo]; pooling [N, C, H, W] -> [N, C].  The kernels live in
// tensor/conv.c (usable without the tape); this file checks shapes, takes
// scratch from the graph arena and records the backward.  PyTorch 1.13
// F.conv2d semantics (zero padding, groups as in nn.Conv2d).
#include "autograd.h"
#include "../tensor/conv.h"

// ---- conv2d: y = conv(x, w) + bias ----

// What the backward needs besides the inputs: the shape and the scratch
// buffer the forward took from the arena (sized for every pass it will run).
typedef struct ConvSaved {
    ConvShape shape;
    float *work;      // conv2d_work_floats(shape, passes) floats, or NULL
    int threads;      // mc_threads() the work buffer was sized for
} ConvSaved;

static void conv2d_backward(AgNode *node) {
    Tensor *x = node->in[0], *w = node->in[1], *bias = node->in[2], *y = node->out;
    ConvSaved *sv = node->saved;
    // NOTE: per-thread scratch was sized in the forward; more threads now
    // would overrun it.
    MC_CHECK(mc_threads() <= sv->threads, "conv2d backward: %d threads, but the forward "
             "sized its scratch for %d (change mc_set_threads between steps only)",
             mc_threads(), sv->threads);
    // d x [N,Cin,H,W] += transposed conv of d y with w
    if (ag_wants(x)) conv2d_backward_x(x->grad, y->grad, w->data, &sv->shape, sv->work);
    // d w [Cout,Cg,kH,kW] += correlation of d y with x (never for frozen w)
    if (ag_wants(w)) conv2d_backward_w(w->grad, y->grad, x->data, &sv->shape, sv->work);
    // d bias [Cout] += sum over n, i, j of d y
    if (ag_wants(bias)) conv2d_backward_bias(bias->grad, y->grad, &sv->shape);
}

Tensor *ag_conv2d(Graph *g, Tensor *x, Tensor *w, Tensor *bias,
                  int stride, int pad, int groups) {
    // Shapes: x 4-d, w 4-d with Cin/groups input channels, bias [Cout].
    TENSOR_CHECK_NDIM(x, 4, "conv2d");
    TENSOR_CHECK_NDIM(w, 4, "conv2d");
    MC_CHECK(groups >= 1, "conv2d: groups must be >= 1, got %d", groups);
    TENSOR_CHECK_PAIR(x->shape[1] % groups == 0 && w->shape[0] % groups == 0 &&
                      w->shape[1] == x->shape[1] / groups, "conv2d",
                      "x is [N,Cin,H,W] and w [Cout,Cin/groups,kH,kW] with Cin, Cout "
                      "multiples of groups", x, w);
    if (bias)
        TENSOR_CHECK_PAIR(bias->n == w->shape[0], "conv2d", "bias must be [Cout]", bias, w);
    ConvShape s;
    McErr err;
    if (conv_shape_init(&s, (int)x->shape[0], (int)x->shape[1], (int)x->shape[2],
                        (int)x->shape[3], (int)w->shape[0], (int)w->shape[2], (int)w->shape[3],
                        stride, pad, groups, &err))
        mc_fail(__FILE__, __LINE__, "%s", err.msg);

    // Scratch for the forward and for the backward passes it may need.
    Tensor *ins[3] = {x, w, bias};
    int record = ag_needs_grad(g, ins, 3);
    int passes = CONV_PASS_FWD;
    if (record && x->requires_grad) passes |= CONV_PASS_BWD_X;
    if (record && w->requires_grad) passes |= CONV_PASS_BWD_W;
    size_t nwork = conv2d_work_floats(&s, passes);
    float *work = nwork ? arena_alloc(&g->arena, nwork * sizeof(float)) : NULL;

    // y [N, Cout, Ho, Wo]
    Tensor *y = ag_tensor(g, MC_DIMS(s.N, s.Cout, s.Ho, s.Wo));
    conv2d_forward(y->data, x->data, w->data, bias ? bias->data : NULL, &s, work);

    if (record) {
        AgNode *node = ag_record(g, "conv2d", conv2d_backward, y, ins, 3);
        ConvSaved *sv = arena_alloc(&g->arena, sizeof *sv);
        sv->shape = s;
        sv->work = work;
        sv->threads = mc_threads();
        node->saved = sv;
    }
    return y;
}

// ---- avgpool: y [N, C] = mean over H, W of x [N, C, H, W] ----

static void avgpool_backward_node(AgNode *node) {
    Tensor *x = node->in[0], *y = node->out;
    // d x [n,c,i,j] += d y [n,c] / (H*W)
    if (ag_wants(x)) avgpool_backward(x->grad, y->grad, y->n, x->n / y->n);
}

Tensor *ag_avgpool(Graph *g, Tensor *x) {
    TENSOR_CHECK_NDIM(x, 4, "avgpool");
    Tensor *y = ag_tensor(g, MC_DIMS(x->shape[0], x->shape[1]));
    avgpool_forward(y->data, x->data, y->n, x->shape[2] * x->shape[3]);
    if (ag_needs_grad(g, &x, 1)) ag_record(g, "avgpool", avgpool_backward_node, y, &x, 1);
    return y;
}
