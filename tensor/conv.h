// conv.h - 2-D convolution and global average pooling on raw NCHW arrays.
//
// Dims: N images, Cin / Cout channels, H x W input, Ho x Wo output, kH x kW
// kernel, s stride, p symmetric zero padding, G groups, Cg = Cin / G input
// channels per group, Og = Cout / G output channels per group.
//
//   y[n,o,i,j] = bias[o] + sum_{c < Cg, a < kH, b < kW}
//                w[o,c,a,b] * x[n, g(o)*Cg + c, i*s - p + a, j*s - p + b]
//
// with g(o) = o / Og and x = 0 outside the image (PyTorch nn.Conv2d with
// padding_mode 'zeros'), Ho = floor((H + 2p - kH) / s) + 1, same for Wo.
//
// The kernels take one ConvShape and pick a path:
//   CONV_PATH_GEMM       1x1, stride 1, pad 0: y_n,g = W_g @ x_n,g, one GEMM
//                        per image and group, no copy;
//   CONV_PATH_DEPTHWISE  G == Cin > 1 (Cout = m * Cin, "channel multiplier
//                        m"): a direct kernel on a padded, stride-phase-split
//                        copy of each input plane, vectorised over output
//                        columns (tensor/isa/conv_dw.c, one variant per ISA);
//                        d x of a stride-1 one is the same kernel run on d y
//                        with the kernel rotated by 180 degrees;
//   CONV_PATH_IM2COL     anything else (full convs, strided 1x1 = GEMM on
//                        the subsampled input, general groups): im2col per
//                        image and group, then one GEMM.
// Every path computes the same function; shape->path may be overwritten
// with CONV_PATH_IM2COL (always valid) to compare paths in tests.
//
// Scratch: a caller passes `work`, at least conv2d_work_floats() floats
// (the autograd op takes it from the graph arena), so a steady-state step
// allocates nothing.  The size depends on mc_threads(): size and call with
// the same thread count.
//
// Threads and determinism: OpenMP loops run over independent outputs only
// (images x channels, or im2col rows); every weight gradient is summed by
// one thread over images in a fixed order, so results are bit-identical
// for any thread count (mc_sgemm cuts C by shape only, tensor/gemm.c).
//
// Usage sketch (compiled by tests/test_conv.c):
//
//     ConvShape s;
//     if (conv_shape_init(&s, N, Cin, H, W, Cout, 3, 3, 2, 1, Cin, &err))
//         return -1;                         // err.msg says why
//     float *work = mc_malloc(conv2d_work_floats(&s, CONV_PASS_ALL) * 4 + 64);
//     conv2d_forward(y, x, w, bias, &s, work);    // y [N,Cout,Ho,Wo]
//     conv2d_backward_x(dx, dy, w, &s, work);     // dx += d y / d x . dy
//     mc_free(work);
#ifndef MCLIP_CONV_H
#define MCLIP_CONV_H

#include <stddef.h>

#include "tensor.h"

typedef enum ConvPath {
    CONV_PATH_GEMM = 0,
    CONV_PATH_DEPTHWISE,
    CONV_PATH_IM2COL,
} ConvPath;

typedef struct ConvShape {
    int N, Cin, H, W;         // input x [N, Cin, H, W]
    int Cout, kH, kW;         // weight w [Cout, Cin / groups, kH, kW]
    int stride, pad, groups;  // pad applies to all four sides
    int Ho, Wo;               // output y [N, Cout, Ho, Wo]
    ConvPath path;            // chosen by conv_shape_init
} ConvShape;

// Fill s, compute Ho, Wo and pick the path.  Returns 0, or -1 with a
// message in e (which may be NULL) when the configuration is impossible:
// non-positive sizes, channels not divisible by groups, output empty.
int conv_shape_init(ConvShape *s, int N, int Cin, int H, int W, int Cout, int kH, int kW,
                    int stride, int pad, int groups, McErr *e);

// Short name of a path ("gemm", "depthwise", "im2col").
const char *conv_path_name(ConvPath p);

// Multiply-accumulates of one forward pass: N * Cout * Ho * Wo * Cg * kH * kW.
double conv2d_macs(const ConvShape *s);

// Passes a work buffer is sized for (bit flags).
enum { CONV_PASS_FWD = 1, CONV_PASS_BWD_X = 2, CONV_PASS_BWD_W = 4, CONV_PASS_ALL = 7 };

// Floats of scratch the given passes need with mc_threads() threads.
size_t conv2d_work_floats(const ConvShape *s, int passes);

// y [N,Cout,Ho,Wo] = conv(x [N,Cin,H,W], w [Cout,Cg,kH,kW]) + bias [Cout].
// bias may be NULL.  y is overwritten.
void conv2d_forward(float *y, const float *x, const float *w, const float *bias,
                    const ConvShape *s, float *work);

// dx [N,Cin,H,W] += sum over outputs of dy * w  (transposed convolution).
void conv2d_backward_x(float *dx, const float *dy, const float *w, const ConvShape *s,
                       float *work);

// dw [Cout,Cg,kH,kW] += sum_{n,i,j} dy[n,o,i,j] * x[n, ., i*s-p+a, j*s-p+b].
void conv2d_backward_w(float *dw, const float *dy, const float *x, const ConvShape *s,
                       float *work);

// db [Cout] += sum_{n,i,j} dy[n,o,i,j]  (summed in double per channel).
void conv2d_backward_bias(float *db, const float *dy, const ConvShape *s);

// ---- global average pooling ----

// y [N*C] = mean over HW of x [N*C, HW]  (summed in double).
void avgpool_forward(float *y, const float *x, int64_t NC, int64_t HW);
// dx [N*C, HW] += dy [N*C] / HW.
void avgpool_backward(float *dx, const float *dy, int64_t NC, int64_t HW);

// ---- depthwise plane kernels (per ISA, tensor/isa/conv_dw.c) ----
//
// A depthwise conv of one input plane is computed on a copy of the plane
// split into s*s stride phases: phase (r, q) holds the padded input pixels
// (u*s + r, v*s + q), u < Hq, v < Wq, as a Hq x Wq row-major plane of
// `plane` floats (zeros outside the image and in the slack after it).  Tap
// (a, b) of the kernel then reads phase (a % s, b % s) at the offset
// off[a*kW + b] = phase*plane + (a/s)*Wq + b/s from the output position
// i*Wq + j, so every tap is a contiguous sweep over the "flattened" output
// plane of Ho rows of Wq (the last Wq - Wo columns of each row are junk).
//
// The forward kernel works on tiles of CONV_DW_TILE_W output columns by R
// output rows (R <= CONV_DW_TILE_ROWS, chosen per ISA to fill the vector
// registers): one load of an input row segment feeds every tap row that
// reads it, for all R output rows, so each multiply-add costs about one
// load of a broadcast weight instead of two loads.  Tiles may read up to
// CONV_DW_TILE_ROWS rows and CONV_DW_TILE_W columns past the plane: the
// slack.  The backward kernels sweep the flat plane, L = Ho*Wq rounded up
// to CONV_DW_BLOCK.

#define CONV_DW_BLOCK 64      // flat outputs per step of the backward kernels
#define CONV_DW_TILE_W 16     // output columns per forward tile
#define CONV_DW_TILE_ROWS 8   // most output rows per forward tile (any ISA)

// Small planes (stride 1, one output per input channel, Wo <= CONV_DW_CB_W)
// waste most of a CONV_DW_TILE_W-wide tile, so they take a channel-blocked
// layout instead: CONV_DW_CB channels of one image are interleaved,
// pixel-major, into xp [Hq][Wq][CB] (Hq = Ho + kH - 1, Wq = CONV_DW_CB_W +
// kW - 1, zero padding) and every vector lane is one channel:
//   yp [Ho][CONV_DW_CB_W][CB] = bias[CB]
//        + sum_{a,b} wp[a*kW + b][CB] * xp[i + a][j + b][CB]
// Columns j >= Wo of yp are computed from padding and ignored.
#define CONV_DW_CB 16         // channels per block of the small-plane path
#define CONV_DW_CB_W 8        // most output columns of the small-plane path

typedef struct ConvDwGeom {
    int Ho, Wo;       // output plane
    int s, kH, kW;    // stride, kernel
    int Wq, plane;    // phase-plane row length, floats per phase plane
    int L;            // flat outputs per plane (multiple of CONV_DW_BLOCK)
    int ntap;         // kH * kW
    const int *off;   // [ntap] tap offsets into the split plane (see above)
} ConvDwGeom;

typedef struct ConvDwKernels {
    const char *isa;
    // y_o [Ho, Wo] = bias + sum_{a,b} w[a*kW + b] * xs[off[a*kW + b] + i*Wq + j]
    void (*fwd)(float *y_o, const float *xs, const float *w, float bias, const ConvDwGeom *g);
    // dxs[off[t] + i] += w[t] * dyf[i]   for every tap t, i < L
    void (*bwd_x)(float *dxs, const float *dyf, const float *w, const ConvDwGeom *g);
    // acc [ntap, CONV_DW_BLOCK]: acc[t][j] += sum_k dyf[k*BLOCK + j] * xs[off[t] + k*BLOCK + j]
    void (*bwd_w)(float *acc, const float *dyf, const float *xs, const ConvDwGeom *g);
    // The small-plane forward (above): uses g->Ho, g->kH, g->kW, g->Wq.
    void (*fwd_cb)(float *yp, const float *xp, const float *wp, const float *bias,
                   const ConvDwGeom *g);
    // dst[j*ds + i] (+ dst[j*ds + i] when add) = src[i*ss + j], i, j < 8.
    void (*t8)(float *dst, size_t ds, const float *src, size_t ss, int add);
} ConvDwKernels;

// Force the depthwise kernels of one ISA ("scalar", "avx2", "avx512",
// "neon"), for tests and benchmarks; returns 0, or -1 when that ISA is not
// built or not supported by this CPU.  NULL returns to the default: the
// variant mc_isa() chose (tensor/simd.h; MCLIP_ISA overrides it).
int conv_dw_use_isa(const char *isa);
// Name of the ISA in use.
const char *conv_dw_isa(void);

#endif
