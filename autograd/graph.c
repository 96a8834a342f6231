// graph.c - the tape: recording nodes and running them backward.
#include "autograd.h"

#include <string.h>

Graph *ag_graph_new(size_t arena_bytes) {
    Graph *g = mc_calloc(1, sizeof *g);
    arena_init(&g->arena, arena_bytes);
    g->grad_enabled = 1;
    return g;
}

void ag_graph_reset(Graph *g) {
    arena_reset(&g->arena);
    g->tape = NULL;
    g->n_nodes = 0;
}

void ag_graph_free(Graph *g) {
    if (!g) return;
    arena_free(&g->arena);
    mc_free(g);
}

Tensor *ag_tensor(Graph *g, int ndim, const int64_t *shape) {
    return tensor_arena(&g->arena, ndim, shape);
}

Tensor *ag_zeros(Graph *g, int ndim, const int64_t *shape) {
    return tensor_arena_zeros(&g->arena, ndim, shape);
}

int ag_needs_grad(Graph *g, Tensor *const *ins, int n) {
    if (!g->grad_enabled) return 0;
    for (int i = 0; i < n; i++)
        if (ins[i] && ins[i]->requires_grad) return 1;
    return 0;
}

AgNode *ag_record(Graph *g, const char *op, AgBackwardFn bw, Tensor *out,
                  Tensor *const *ins, int n) {
    MC_CHECK(n <= AG_MAXIN, "%s: %d inputs (at most %d)", op, n, AG_MAXIN);
    AgNode *node = arena_calloc(&g->arena, sizeof *node);
    node->op = op;
    node->backward = bw;
    node->out = out;
    node->n_in = n;
    for (int i = 0; i < n; i++) node->in[i] = ins[i];
    node->prev = g->tape;
    g->tape = node;
    g->n_nodes++;
    out->requires_grad = 1;
    out->node = node;
    out->grad = arena_calloc(&g->arena, (size_t)out->n * sizeof(float));
    return node;
}

void ag_backward(Graph *g, Tensor *loss) {
    MC_CHECK(loss->n == 1, "ag_backward: loss must have one element, has %lld",
             (long long)loss->n);
    MC_CHECK(loss->requires_grad && loss->grad,
             "ag_backward: loss does not depend on any tensor that requires a gradient");
    loss->grad[0] += 1.0f;
    for (AgNode *node = g->tape; node; node = node->prev) node->backward(node);
}

void ag_backward_seed(Graph *g, Tensor *out, const float *dout) {
    MC_CHECK(out->requires_grad && out->grad,
             "ag_backward_seed: output does not depend on any tensor that requires a gradient");
    for (int64_t i = 0; i < out->n; i++) out->grad[i] += dout[i];
    for (AgNode *node = g->tape; node; node = node->prev) node->backward(node);
}
