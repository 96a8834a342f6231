// gradcheck.h - finite-difference gradient checks for autograd ops.
//
// gradcheck() builds a graph with f(g, in, ctx), takes the scalar
//   L = sum_i r_i * out_i          (r fixed random, summed in double)
// and compares the autograd gradient dL/d in[j] of every input that
// requires a gradient with central differences
//   (L(x + h) - L(x - h)) / 2h      (forward in float, L in double)
// element by element: |analytic - numeric| <= atol + rtol * |numeric|.
// Inputs are perturbed one element at a time (all elements when the input
// has at most max_elems elements, else an evenly spaced subset).
#ifndef MCLIP_TEST_GRADCHECK_H
#define MCLIP_TEST_GRADCHECK_H

#include "../../autograd/autograd.h"

typedef Tensor *(*GcBuild)(Graph *g, Tensor **in, void *ctx);

typedef struct {
    double h;          // finite-difference step
    double atol, rtol; // tolerance
    int max_elems;     // per input; 0 = all
} GcOptions;

// Returns 1 when every checked element is within tolerance.  Prints one
// line per input with the max errors.  in[j] with requires_grad unset are
// treated as constants.
int gradcheck(const char *name, GcBuild f, void *ctx, Tensor **in, int n_in,
              GcOptions opt);

#endif
