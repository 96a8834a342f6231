// conv.c - 2-D convolution and average pooling kernels (see conv.h).
//
// Dims as in conv.h: N, Cin, H, W in; Cout, Ho, Wo out; kH, kW kernel;
// G groups, Cg = Cin/G, Og = Cout/G; P = Ho*Wo output pixels; K = Cg*kH*kW
// the GEMM depth.  Reference: PyTorch 1.13 nn.Conv2d / F.conv2d semantics.
#include "conv.h"
#include "gemm.h"
#include "simd.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define CONV_THREAD_ID() omp_get_thread_num()
#else
#define CONV_THREAD_ID() 0
#endif

// Largest spatial size / kernel / stride / padding accepted, so that every
// int index below stays far from overflow.
#define CONV_MAX_DIM (1 << 16)

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

// ---- shapes ----

const char *conv_path_name(ConvPath p) {
    switch (p) {
    case CONV_PATH_GEMM: return "gemm";
    case CONV_PATH_DEPTHWISE: return "depthwise";
    case CONV_PATH_IM2COL: return "im2col";
    }
    return "?";
}

int conv_shape_init(ConvShape *s, int N, int Cin, int H, int W, int Cout, int kH, int kW,
                    int stride, int pad, int groups, McErr *e) {
    // Every size positive, padding non-negative, all below CONV_MAX_DIM.
    if (N < 1 || Cin < 1 || H < 1 || W < 1 || Cout < 1 || kH < 1 || kW < 1 || stride < 1 ||
        pad < 0 || groups < 1)
        return mc_err(e, "conv2d: expected positive sizes and pad >= 0, found N %d Cin %d "
                      "H %d W %d Cout %d kernel %dx%d stride %d pad %d groups %d",
                      N, Cin, H, W, Cout, kH, kW, stride, pad, groups);
    if (H > CONV_MAX_DIM || W > CONV_MAX_DIM || kH > CONV_MAX_DIM || kW > CONV_MAX_DIM ||
        stride > CONV_MAX_DIM || pad > CONV_MAX_DIM ||
        (int64_t)(H + 2 * pad) * (W + 2 * pad) > (1 << 30))
        return mc_err(e, "conv2d: spatial sizes above %d (H %d W %d kernel %dx%d stride %d "
                      "pad %d)", CONV_MAX_DIM, H, W, kH, kW, stride, pad);

    // Channels split evenly into groups.
    if (Cin % groups || Cout % groups)
        return mc_err(e, "conv2d: Cin %d and Cout %d must both be multiples of groups %d",
                      Cin, Cout, groups);

    // The kernel must fit in the padded input at least once.
    if (H + 2 * pad < kH || W + 2 * pad < kW)
        return mc_err(e, "conv2d: kernel %dx%d larger than the padded input %dx%d",
                      kH, kW, H + 2 * pad, W + 2 * pad);

    memset(s, 0, sizeof *s);
    s->N = N, s->Cin = Cin, s->H = H, s->W = W;
    s->Cout = Cout, s->kH = kH, s->kW = kW;
    s->stride = stride, s->pad = pad, s->groups = groups;
    s->Ho = (H + 2 * pad - kH) / stride + 1;
    s->Wo = (W + 2 * pad - kW) / stride + 1;

    // Path: depthwise (any multiplier) > plain 1x1 GEMM > im2col.
    if (groups == Cin && Cin > 1)
        s->path = CONV_PATH_DEPTHWISE;
    else if (kH == 1 && kW == 1 && stride == 1 && pad == 0)
        s->path = CONV_PATH_GEMM;
    else
        s->path = CONV_PATH_IM2COL;
    return 0;
}

double conv2d_macs(const ConvShape *s) {
    return (double)s->N * s->Cout * s->Ho * s->Wo * (s->Cin / s->groups) * s->kH * s->kW;
}

// Output indices v < n_out whose input position v*s + shift lies in
// [0, n_in): the half-open range [*lo, *hi) (empty when lo == hi).
static void valid_range(int n_out, int s, int shift, int n_in, int *lo, int *hi) {
    int l = shift >= 0 ? 0 : (-shift + s - 1) / s;
    int h = n_in - shift > 0 ? (n_in - shift + s - 1) / s : 0;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

// ---- depthwise kernels: selection by ISA ----

extern const ConvDwKernels conv_dw_kernels_scalar;
#ifdef MC_HAVE_ISA_avx2
extern const ConvDwKernels conv_dw_kernels_avx2;
#endif
#ifdef MC_HAVE_ISA_avx512
extern const ConvDwKernels conv_dw_kernels_avx512;
#endif
#ifdef MC_HAVE_ISA_neon
extern const ConvDwKernels conv_dw_kernels_neon;
#endif

// Built variants, least to most preferred.
static const ConvDwKernels *const conv_dw_built[] = {
    &conv_dw_kernels_scalar,
#ifdef MC_HAVE_ISA_avx2
    &conv_dw_kernels_avx2,
#endif
#ifdef MC_HAVE_ISA_avx512
    &conv_dw_kernels_avx512,
#endif
#ifdef MC_HAVE_ISA_neon
    &conv_dw_kernels_neon,
#endif
};
#define CONV_DW_NBUILT (int)(sizeof conv_dw_built / sizeof conv_dw_built[0])

// Forced by conv_dw_use_isa, else NULL: follow mc_isa() (tensor/simd.h),
// which picks the best variant for this CPU or the one MCLIP_ISA names.
static const ConvDwKernels *g_dw_forced;

static const ConvDwKernels *conv_dw_built_named(const char *isa) {
    for (int i = 0; i < CONV_DW_NBUILT; i++)
        if (!strcmp(conv_dw_built[i]->isa, isa)) return conv_dw_built[i];
    return NULL;
}

int conv_dw_use_isa(const char *isa) {
    if (!isa) {
        g_dw_forced = NULL;
        return 0;
    }
    const ConvDwKernels *k = conv_dw_built_named(isa);
    if (!k || !mc_isa_lookup(isa)) return -1;
    g_dw_forced = k;
    return 0;
}

static const ConvDwKernels *conv_dw(void) {
    if (g_dw_forced) return g_dw_forced;
    const ConvDwKernels *k = conv_dw_built_named(mc_isa_name());
    return k ? k : &conv_dw_kernels_scalar;
}

const char *conv_dw_isa(void) { return conv_dw()->isa; }

// ---- depthwise path ----

#define DW_MAX_PHASES 16

// Geometry of the split planes (conv.h) and the per-thread scratch.
typedef struct DwPlan {
    int s, Hq, Wq;     // stride, phase-plane rows and row length
    int L;             // flat outputs per plane, multiple of CONV_DW_BLOCK
    int plane;         // floats per phase plane, with slack for the last block
    int ntap, m;       // kH*kW taps, channel multiplier Cout/Cin
    size_t split;      // s*s*plane floats: one split plane
    size_t per_thread; // floats of scratch per thread
    size_t head;       // floats reserved for the tap offsets
    // Phase-row columns v in [lo[q], hi[q]) come from the image (stride <=
    // DW_MAX_PHASES; larger strides compute them per row).
    int lo[DW_MAX_PHASES], hi[DW_MAX_PHASES];
} DwPlan;

// A stride-1 depthwise conv with a square kernel and pad <= k-1 has as its
// input gradient another one: d x_c = sum over the channel's outputs o of
// conv(d y_o, w_o flipped) with pad k-1-p, because
//   dx[i][j] = sum_{a,b} w[a][b] dy[i+p-a][j+p-b]
//            = sum_{a,b} w[k-1-a][k-1-b] dy[i-(k-1-p)+a][j-(k-1-p)+b].
// So it runs on the fast forward tiles instead of the scatter kernel.
static int dw_transposable(const ConvShape *s) {
    return s->stride == 1 && s->kH == s->kW && s->pad <= s->kH - 1;
}

// The shape of that transposed conv: d y [Ho, Wo] in, d x [H, W] out.
static void dw_transposed(ConvShape *t, const ConvShape *s) {
    *t = *s;
    t->H = s->Ho, t->W = s->Wo;
    t->Ho = s->H, t->Wo = s->W;
    t->pad = s->kH - 1 - s->pad;
    t->Cout = t->Cin;
}

// ---- depthwise, small planes: the channel-blocked path (conv.h) ----

static int dw_cb_eligible(const ConvShape *s) {
    return s->stride == 1 && s->Cout == s->Cin && s->Wo <= CONV_DW_CB_W;
}

// Phase-free padded row length and rows of the blocked input.
static int dw_cb_wq(const ConvShape *s) { return CONV_DW_CB_W + s->kW - 1; }
static int dw_cb_hq(const ConvShape *s) { return s->Ho + s->kH - 1; }

// Per-thread floats: xp, yp, wp and the bias block.
static size_t dw_cb_floats(const ConvShape *s) {
    size_t xp = (size_t)dw_cb_hq(s) * dw_cb_wq(s) * CONV_DW_CB;
    size_t yp = (size_t)s->Ho * CONV_DW_CB_W * CONV_DW_CB;
    size_t wp = (size_t)s->kH * s->kW * CONV_DW_CB;
    return round16(xp) + round16(yp) + round16(wp) + CONV_DW_CB;
}

static void dw_plan(DwPlan *d, const ConvShape *s, int passes) {
    d->s = s->stride;
    d->Hq = s->Ho + (s->kH - 1) / s->stride;
    d->Wq = s->Wo + (s->kW - 1) / s->stride;
    d->L = (s->Ho * d->Wq + CONV_DW_BLOCK - 1) / CONV_DW_BLOCK * CONV_DW_BLOCK;
    // Backward sweeps read at most (a/s)*Wq + b/s + L - 1 < Hq*Wq + Wq +
    // BLOCK; forward tiles at most (Hq + TILE_ROWS - 1)*Wq + TILE_W.
    size_t need_bwd = (size_t)d->Hq * d->Wq + d->Wq + CONV_DW_BLOCK;
    size_t need_fwd = (size_t)(d->Hq + CONV_DW_TILE_ROWS) * d->Wq + CONV_DW_TILE_W;
    d->plane = (int)round16(need_bwd > need_fwd ? need_bwd : need_fwd);
    d->ntap = s->kH * s->kW;
    d->m = s->Cout / s->Cin;
    d->split = (size_t)d->s * d->s * d->plane;
    d->head = round16(2 * (size_t)d->ntap);   // tap offsets of two geometries
    // Split plane + flat output/gradient plane (+ lane sums for d w).
    d->per_thread = d->split + (size_t)d->L;
    if (passes & CONV_PASS_BWD_W)
        d->per_thread += (size_t)d->m * d->ntap * CONV_DW_BLOCK;
    d->per_thread = round16(d->per_thread);
    // d x by the transposed forward: split d y plane, d x plane, flipped w.
    if ((passes & CONV_PASS_BWD_X) && dw_transposable(s)) {
        ConvShape t;
        DwPlan dt;
        dw_transposed(&t, s);
        dw_plan(&dt, &t, CONV_PASS_FWD);
        size_t need = round16(dt.split) + round16((size_t)s->H * s->W) + round16(dt.ntap);
        if (need > d->per_thread) d->per_thread = need;
        if (d->m == 1 && dw_cb_eligible(&t) && dw_cb_floats(&t) > d->per_thread)
            d->per_thread = dw_cb_floats(&t);
    }
    if ((passes & CONV_PASS_FWD) && dw_cb_eligible(s) && dw_cb_floats(s) > d->per_thread)
        d->per_thread = dw_cb_floats(s);
    for (int q = 0; q < d->s && q < DW_MAX_PHASES; q++)
        valid_range(d->Wq, d->s, q - s->pad, s->W, &d->lo[q], &d->hi[q]);
}

// Tap offsets off[a*kW + b] = phase(a%s, b%s)*plane + (a/s)*Wq + b/s.
static void dw_offsets(int *off, const DwPlan *d, const ConvShape *s) {
    for (int a = 0; a < s->kH; a++)
        for (int b = 0; b < s->kW; b++) {
            int phase = (a % d->s) * d->s + b % d->s;
            off[a * s->kW + b] = phase * d->plane + (a / d->s) * d->Wq + b / d->s;
        }
}

static void dw_geom(ConvDwGeom *g, const DwPlan *d, const ConvShape *s, const int *off) {
    g->Ho = s->Ho, g->Wo = s->Wo;
    g->s = d->s, g->kH = s->kH, g->kW = s->kW;
    g->Wq = d->Wq, g->plane = d->plane;
    g->L = d->L, g->ntap = d->ntap, g->off = off;
}

// d0[v] = src[2v], d1[v] = src[2v + 1] for v < n, in whole blocks of 16
// so that the compiler turns them into vector shuffles.
__attribute__((noinline)) static void deinterleave2(float *restrict d0, float *restrict d1,
                                                    const float *restrict src, int n) {
    int v = 0;
    for (; v + 16 <= n; v += 16)
        for (int j = 0; j < 16; j++) {
            d0[v + j] = src[2 * (size_t)(v + j)];
            d1[v + j] = src[2 * (size_t)(v + j) + 1];
        }
    for (; v < n; v++) d0[v] = src[2 * (size_t)v], d1[v] = src[2 * (size_t)v + 1];
}

// dst[0..n) = src[0..n); short rows of the common widths become single
// vector moves instead of a library call (small planes copy many rows).
static inline void copy_row(float *dst, const float *src, int n) {
    switch (n) {
    case 4: memcpy(dst, src, 4 * sizeof(float)); break;
    case 8: memcpy(dst, src, 8 * sizeof(float)); break;
    case 16: memcpy(dst, src, 16 * sizeof(float)); break;
    default: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    }
}

// One phase row: row[v] = x_row[v*st + q - pad] for the v where that lies
// in [0, W); [skip_lo, skip_hi) is left alone (already filled).
static void dw_split_row(float *row, const float *x_row, int q, const DwPlan *d,
                         const ConvShape *s, int skip_lo, int skip_hi) {
    int st = d->s, lo, hi;
    if (q < DW_MAX_PHASES) lo = d->lo[q], hi = d->hi[q];
    else valid_range(d->Wq, st, q - s->pad, s->W, &lo, &hi);
    const float *src = x_row + (q - s->pad);
    if (st == 1) {
        copy_row(row + lo, src + lo, hi - lo);
    } else {
        // Left of the skipped range, then right of it.
        int a = hi < skip_lo ? hi : skip_lo, b = lo > skip_hi ? lo : skip_hi;
        for (int v = lo; v < a; v++) row[v] = src[(size_t)v * st];
        for (int v = b; v < hi; v++) row[v] = src[(size_t)v * st];
    }
}

// xs = the split planes of one input plane x_c [H, W] (see conv.h).  Only
// the cells that hold image pixels are written: they are the same for
// every plane of one shape, so a buffer zeroed once (dw_split_zero) keeps
// its zero padding and slack across planes.
static void dw_split(float *xs, const float *x_c, const DwPlan *d, const ConvShape *s) {
    int st = d->s;
    // Input rows in memory order (a sequential stream for the prefetchers);
    // row ih lands in row phase r, phase row u.
    for (int ih = 0; ih < s->H; ih++) {
        int r = (ih + s->pad) % st, u = (ih + s->pad) / st;
        if (u >= d->Hq) continue;   // read by no output
        float *row_r = xs + (size_t)r * st * d->plane + (size_t)u * d->Wq;
        const float *x_row = x_c + (size_t)ih * s->W;
        int vl = 0, vh = 0;
        if (st == 2) {
            // Columns where both phases are inside: one shuffle pass.
            vl = d->lo[0] > d->lo[1] ? d->lo[0] : d->lo[1];
            vh = d->hi[0] < d->hi[1] ? d->hi[0] : d->hi[1];
            if (vh > vl)
                deinterleave2(row_r + vl, row_r + d->plane + vl,
                              x_row + 2 * (size_t)vl - s->pad, vh - vl);
            else
                vl = vh = 0;
        }
        for (int q = 0; q < st; q++)
            dw_split_row(row_r + (size_t)q * d->plane, x_row, q, d, s, vl, vh);
    }
}

// Zero a split buffer before its first dw_split.
static void dw_split_zero(float *xs, const DwPlan *d) {
    memset(xs, 0, d->split * sizeof(float));
}

// dyf [L] = dy_o [Ho, Wo] laid out with row length Wq, zeros elsewhere.
static void dw_flatten(float *dyf, const float *dy_o, const DwPlan *d, const ConvShape *s) {
    for (int i = 0; i < s->Ho; i++) {
        float *row = dyf + (size_t)i * d->Wq;
        memcpy(row, dy_o + (size_t)i * s->Wo, (size_t)s->Wo * sizeof(float));
        for (int j = s->Wo; j < d->Wq; j++) row[j] = 0.0f;
    }
    for (int i = s->Ho * d->Wq; i < d->L; i++) dyf[i] = 0.0f;
}

// Run a small-plane shape (dw_cb_eligible) through the blocked kernel:
//   y [N, C, Ho, Wo] (+)= bias + conv(x [N, C, H, W], w)
// with w rotated by 180 degrees when `flip` (the transposed backward) and
// the result added to y when `add`.  scratch: per_thread floats a thread
// from `work`.
static void dw_cb_run(float *y, const float *x, const float *w, const float *bias,
                      const ConvShape *s, float *work, size_t per_thread, int flip, int add) {
    const int CB = CONV_DW_CB, C = s->Cin, ntap = s->kH * s->kW;
    const int Wq = dw_cb_wq(s), Hq = dw_cb_hq(s);
    const size_t HW = (size_t)s->H * s->W, P = (size_t)s->Ho * s->Wo;
    const size_t nxp = (size_t)Hq * Wq * CB, nyp = (size_t)s->Ho * CONV_DW_CB_W * CB;
    const int nblk = (C + CB - 1) / CB;
    const int64_t items = (int64_t)s->N * nblk;
    ConvDwGeom g = {0};
    g.Ho = s->Ho, g.Wo = s->Wo, g.s = 1, g.kH = s->kH, g.kW = s->kW, g.Wq = Wq;
    g.ntap = ntap;
    const ConvDwKernels *k = conv_dw();

    #pragma omp parallel num_threads(mc_threads())
    {
        float *xp = work + (size_t)CONV_THREAD_ID() * per_thread;
        float *yp = xp + round16(nxp), *wp = yp + round16(nyp);
        float *bp = wp + round16((size_t)ntap * CB);
        memset(xp, 0, nxp * sizeof(float));   // padding stays zero from here on
        int packed = -1;                      // channel block whose weights are in wp
        // Items run block-major, so a thread packs each block's weights once.
        #pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            int64_t n = it % s->N;
            int blk = (int)(it / s->N);
            int c0 = blk * CB, nc = C - c0 < CB ? C - c0 : CB;
            const float *x_n = x + ((size_t)n * C + c0) * HW;
            if (nc < CB) memset(xp, 0, nxp * sizeof(float));   // idle lanes read zeros
            if (nc == CB && s->W == 8) {   // whole blocks of 8 pixels x 8 channels
                for (int i = 0; i < s->H; i++)
                    for (int c8 = 0; c8 < CB; c8 += 8)
                        k->t8(xp + ((size_t)(i + s->pad) * Wq + s->pad) * CB + c8, CB,
                              x_n + (size_t)c8 * HW + (size_t)i * 8, HW, 0);
            } else for (int c = 0; c < nc; c++) {
                const float *xc = x_n + (size_t)c * HW;
                for (int i = 0; i < s->H; i++) {
                    float *dst = xp + ((size_t)(i + s->pad) * Wq + s->pad) * CB + c;
                    for (int j = 0; j < s->W; j++) dst[(size_t)j * CB] = xc[(size_t)i * s->W + j];
                }
            }
            for (int c = 0; c < CB && packed != blk; c++) {
                const float *wc = w + (size_t)(c0 + c) * ntap;
                for (int t = 0; t < ntap; t++)
                    wp[(size_t)t * CB + c] = c < nc ? wc[flip ? ntap - 1 - t : t] : 0.0f;
                bp[c] = c < nc && bias ? bias[c0 + c] : 0.0f;
            }
            packed = blk;
            k->fwd_cb(yp, xp, wp, bp, &g);
            float *y_n = y + ((size_t)n * C + c0) * P;
            if (nc == CB && s->Wo == 8) {
                for (int i = 0; i < s->Ho; i++)
                    for (int c8 = 0; c8 < CB; c8 += 8)
                        k->t8(y_n + (size_t)c8 * P + (size_t)i * 8, P,
                              yp + (size_t)i * CONV_DW_CB_W * CB + c8, CB, add);
            } else for (int c = 0; c < nc; c++) {
                float *yc = y_n + (size_t)c * P;
                for (int i = 0; i < s->Ho; i++) {
                    const float *src = yp + (size_t)i * CONV_DW_CB_W * CB + c;
                    float *dst = yc + (size_t)i * s->Wo;
                    if (add)
                        for (int j = 0; j < s->Wo; j++) dst[j] += src[(size_t)j * CB];
                    else
                        for (int j = 0; j < s->Wo; j++) dst[j] = src[(size_t)j * CB];
                }
            }
        }
    }
}

static void dw_forward(float *y, const float *x, const float *w, const float *bias,
                       const ConvShape *s, float *work) {
    DwPlan d;
    dw_plan(&d, s, CONV_PASS_FWD);
    if (dw_cb_eligible(s)) {
        dw_cb_run(y, x, w, bias, s, work + d.head, d.per_thread, 0, 0);
        return;
    }
    int *off = (int *)work;
    dw_offsets(off, &d, s);
    ConvDwGeom g;
    dw_geom(&g, &d, s, off);
    const ConvDwKernels *k = conv_dw();
    int64_t NC = (int64_t)s->N * s->Cin;
    size_t HW = (size_t)s->H * s->W, P = (size_t)s->Ho * s->Wo;

    // One (image, input channel) per iteration: split it once, then run
    // its m output channels o = c*m + k.
    #pragma omp parallel num_threads(mc_threads())
    {
        float *xs = work + d.head + (size_t)CONV_THREAD_ID() * d.per_thread;
        dw_split_zero(xs, &d);
        #pragma omp for schedule(static)
        for (int64_t nc = 0; nc < NC; nc++) {
            int64_t n = nc / s->Cin, c = nc % s->Cin;
            dw_split(xs, x + (size_t)nc * HW, &d, s);
            for (int mi = 0; mi < d.m; mi++) {
                int64_t o = c * d.m + mi;
                float *y_no = y + ((size_t)n * s->Cout + (size_t)o) * P;
                k->fwd(y_no, xs, w + o * d.ntap, bias ? bias[o] : 0.0f, &g);
            }
        }
    }
}

// dx_c [H, W] += the split-plane gradient dxs (inverse of dw_split; padded
// positions and pixels no output reads are dropped).
static void dw_unsplit_add(float *dx_c, const float *dxs, const DwPlan *d,
                           const ConvShape *s) {
    int st = d->s;
    for (int ih = 0; ih < s->H; ih++) {
        int ph = ih + s->pad, u = ph / st, r = ph % st;
        if (u >= d->Hq) continue;
        float *dxrow = dx_c + (size_t)ih * s->W;
        for (int q = 0; q < st; q++) {
            const float *src = dxs + (size_t)(r * st + q) * d->plane + (size_t)u * d->Wq;
            // Input columns iw = v*s + q - pad for v in [lo, hi).
            int lo, hi;
            valid_range(d->Wq, st, q - s->pad, s->W, &lo, &hi);
            float *dst = dxrow + (q - s->pad);
            for (int v = lo; v < hi; v++) dst[(size_t)v * st] += src[v];
        }
    }
}

// d x via the transposed forward (see dw_transposable).
static void dw_backward_x_transposed(float *dx, const float *dy, const float *w,
                                     const ConvShape *s, float *work) {
    DwPlan d, dt;
    ConvShape t;
    dw_plan(&d, s, CONV_PASS_BWD_X);
    dw_transposed(&t, s);
    if (d.m == 1 && dw_cb_eligible(&t)) {   // dx += conv(dy, w rotated)
        dw_cb_run(dx, dy, w, NULL, &t, work + d.head, d.per_thread, 1, 1);
        return;
    }
    dw_plan(&dt, &t, CONV_PASS_FWD);
    int *off = (int *)work + d.ntap;
    dw_offsets(off, &dt, &t);
    ConvDwGeom g;
    dw_geom(&g, &dt, &t, off);
    const ConvDwKernels *k = conv_dw();
    int64_t NC = (int64_t)s->N * s->Cin;
    size_t HW = (size_t)s->H * s->W, P = (size_t)s->Ho * s->Wo;
    int kk = d.ntap;

    // Each (image, input channel) adds its m output channels in order.
    #pragma omp parallel num_threads(mc_threads())
    {
        float *dys = work + d.head + (size_t)CONV_THREAD_ID() * d.per_thread;
        float *dx_t = dys + round16(dt.split);
        float *wf = dx_t + round16(HW);
        dw_split_zero(dys, &dt);
        #pragma omp for schedule(static)
        for (int64_t nc = 0; nc < NC; nc++) {
            int64_t n = nc / s->Cin, c = nc % s->Cin;
            float *dx_c = dx + (size_t)nc * HW;
            for (int mi = 0; mi < d.m; mi++) {
                int64_t o = c * d.m + mi;
                // wf = w_o rotated by 180 degrees; dx_t = conv(dy_o, wf).
                for (int i = 0; i < kk; i++) wf[i] = w[o * kk + (kk - 1 - i)];
                dw_split(dys, dy + ((size_t)n * s->Cout + (size_t)o) * P, &dt, &t);
                k->fwd(dx_t, dys, wf, 0.0f, &g);
                for (size_t i = 0; i < HW; i++) dx_c[i] += dx_t[i];
            }
        }
    }
}

static void dw_backward_x(float *dx, const float *dy, const float *w, const ConvShape *s,
                          float *work) {
    if (dw_transposable(s)) {
        dw_backward_x_transposed(dx, dy, w, s, work);
        return;
    }
    DwPlan d;
    dw_plan(&d, s, CONV_PASS_BWD_X);
    int *off = (int *)work;
    dw_offsets(off, &d, s);
    ConvDwGeom g;
    dw_geom(&g, &d, s, off);
    const ConvDwKernels *k = conv_dw();
    int64_t NC = (int64_t)s->N * s->Cin;
    size_t HW = (size_t)s->H * s->W, P = (size_t)s->Ho * s->Wo;

    // Each (image, input channel) gathers its m output channels in order.
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int64_t nc = 0; nc < NC; nc++) {
        float *dxs = work + d.head + (size_t)CONV_THREAD_ID() * d.per_thread;
        float *dyf = dxs + d.split;
        int64_t n = nc / s->Cin, c = nc % s->Cin;
        memset(dxs, 0, d.split * sizeof(float));
        for (int mi = 0; mi < d.m; mi++) {
            int64_t o = c * d.m + mi;
            dw_flatten(dyf, dy + ((size_t)n * s->Cout + (size_t)o) * P, &d, s);
            k->bwd_x(dxs, dyf, w + o * d.ntap, &g);
        }
        dw_unsplit_add(dx + (size_t)nc * HW, dxs, &d, s);
    }
}

static void dw_backward_w(float *dw, const float *dy, const float *x, const ConvShape *s,
                          float *work) {
    DwPlan d;
    dw_plan(&d, s, CONV_PASS_BWD_W);
    int *off = (int *)work;
    dw_offsets(off, &d, s);
    ConvDwGeom g;
    dw_geom(&g, &d, s, off);
    const ConvDwKernels *k = conv_dw();
    size_t HW = (size_t)s->H * s->W, P = (size_t)s->Ho * s->Wo;
    size_t lanes = (size_t)d.ntap * CONV_DW_BLOCK;

    // One input channel per iteration, images in order, so every weight
    // gradient is summed in the same order for any thread count.
    #pragma omp parallel num_threads(mc_threads())
    {
        float *xs = work + d.head + (size_t)CONV_THREAD_ID() * d.per_thread;
        float *dyf = xs + d.split;
        float *acc = dyf + d.L;
        dw_split_zero(xs, &d);
        #pragma omp for schedule(static)
        for (int c = 0; c < s->Cin; c++) {
            memset(acc, 0, (size_t)d.m * lanes * sizeof(float));
            for (int n = 0; n < s->N; n++) {
                dw_split(xs, x + ((size_t)n * s->Cin + (size_t)c) * HW, &d, s);
                for (int mi = 0; mi < d.m; mi++) {
                    size_t o = (size_t)c * d.m + (size_t)mi;
                    dw_flatten(dyf, dy + ((size_t)n * s->Cout + o) * P, &d, s);
                    k->bwd_w(acc + (size_t)mi * lanes, dyf, xs, &g);
                }
            }
            // Reduce the lanes of each tap, in lane order.
            for (int mi = 0; mi < d.m; mi++)
                for (int t = 0; t < d.ntap; t++) {
                    const float *a = acc + (size_t)mi * lanes + (size_t)t * CONV_DW_BLOCK;
                    float sum = 0.0f;
                    for (int j = 0; j < CONV_DW_BLOCK; j++) sum += a[j];
                    dw[((size_t)c * d.m + (size_t)mi) * d.ntap + (size_t)t] += sum;
                }
        }
    }
}

// ---- GEMM and im2col paths ----

// col [K, P] with row (c, a, b) = x_g[c, i*s - p + a, j*s - p + b] (0 outside).
static void im2col(float *col, const float *x_g, const ConvShape *s) {
    int Cg = s->Cin / s->groups, kk = s->kH * s->kW, R = Cg * kk;
    size_t P = (size_t)s->Ho * s->Wo, HW = (size_t)s->H * s->W;
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int r = 0; r < R; r++) {
        int c = r / kk, a = (r / s->kW) % s->kH, b = r % s->kW;
        int lo, hi;
        valid_range(s->Wo, s->stride, b - s->pad, s->W, &lo, &hi);
        const float *x_c = x_g + (size_t)c * HW;
        float *dst = col + (size_t)r * P;
        for (int i = 0; i < s->Ho; i++, dst += s->Wo) {
            int ih = i * s->stride - s->pad + a;
            if (ih < 0 || ih >= s->H) {
                memset(dst, 0, (size_t)s->Wo * sizeof(float));
                continue;
            }
            const float *xrow = x_c + (size_t)ih * s->W + (b - s->pad);
            for (int j = 0; j < lo; j++) dst[j] = 0.0f;
            for (int j = lo; j < hi; j++) dst[j] = xrow[(size_t)j * s->stride];
            for (int j = hi; j < s->Wo; j++) dst[j] = 0.0f;
        }
    }
}

// dx_g [Cg, H, W] += col2im(col): the transpose of im2col.  One thread per
// input channel, its kH*kW rows added in order.
static void col2im_add(float *dx_g, const float *col, const ConvShape *s) {
    int Cg = s->Cin / s->groups, kk = s->kH * s->kW;
    size_t P = (size_t)s->Ho * s->Wo, HW = (size_t)s->H * s->W;
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int c = 0; c < Cg; c++) {
        float *dx_c = dx_g + (size_t)c * HW;
        for (int a = 0; a < s->kH; a++)
            for (int b = 0; b < s->kW; b++) {
                const float *src = col + (size_t)(c * kk + a * s->kW + b) * P;
                int lo, hi;
                valid_range(s->Wo, s->stride, b - s->pad, s->W, &lo, &hi);
                for (int i = 0; i < s->Ho; i++, src += s->Wo) {
                    int ih = i * s->stride - s->pad + a;
                    if (ih < 0 || ih >= s->H) continue;
                    float *dxrow = dx_c + (size_t)ih * s->W + (b - s->pad);
                    for (int j = lo; j < hi; j++) dxrow[(size_t)j * s->stride] += src[j];
                }
            }
    }
}

static void gemm_forward(float *y, const float *x, const float *w, const float *bias,
                         const ConvShape *s, float *work) {
    int G = s->groups, Cg = s->Cin / G, Og = s->Cout / G;
    int K = Cg * s->kH * s->kW, P = s->Ho * s->Wo;
    size_t HW = (size_t)s->H * s->W;
    for (int n = 0; n < s->N; n++)
        for (int gi = 0; gi < G; gi++) {
            const float *x_ng = x + ((size_t)n * s->Cin + (size_t)gi * Cg) * HW;
            float *y_ng = y + ((size_t)n * s->Cout + (size_t)gi * Og) * P;

            // The GEMM's right operand: x itself for a plain 1x1, else im2col.
            const float *rhs = x_ng;
            if (s->path != CONV_PATH_GEMM) {
                im2col(work, x_ng, s);
                rhs = work;
            }

            // y_ng [Og, P] = bias (broadcast over P) + W_g [Og, K] @ rhs [K, P]
            if (bias)
                for (int o = 0; o < Og; o++)
                    for (int p = 0; p < P; p++) y_ng[(size_t)o * P + p] = bias[gi * Og + o];
            mc_sgemm(0, 0, Og, P, K, 1.0f, w + (size_t)gi * Og * K, K, rhs, P,
                     bias ? 1.0f : 0.0f, y_ng, P);
        }
}

static void gemm_backward_x(float *dx, const float *dy, const float *w, const ConvShape *s,
                            float *work) {
    int G = s->groups, Cg = s->Cin / G, Og = s->Cout / G;
    int K = Cg * s->kH * s->kW, P = s->Ho * s->Wo;
    size_t HW = (size_t)s->H * s->W;
    for (int n = 0; n < s->N; n++)
        for (int gi = 0; gi < G; gi++) {
            float *dx_ng = dx + ((size_t)n * s->Cin + (size_t)gi * Cg) * HW;
            const float *dy_ng = dy + ((size_t)n * s->Cout + (size_t)gi * Og) * P;
            const float *w_g = w + (size_t)gi * Og * K;
            if (s->path == CONV_PATH_GEMM) {
                // dx_ng [Cg, HW] += W_g^T [Cg, Og] @ dy_ng [Og, HW]
                mc_sgemm(1, 0, Cg, P, Og, 1.0f, w_g, K, dy_ng, P, 1.0f, dx_ng, P);
            } else {
                // col [K, P] = W_g^T @ dy_ng, then scattered back onto dx.
                mc_sgemm(1, 0, K, P, Og, 1.0f, w_g, K, dy_ng, P, 0.0f, work, P);
                col2im_add(dx_ng, work, s);
            }
        }
}

static void gemm_backward_w(float *dw, const float *dy, const float *x, const ConvShape *s,
                            float *work) {
    int G = s->groups, Cg = s->Cin / G, Og = s->Cout / G;
    int K = Cg * s->kH * s->kW, P = s->Ho * s->Wo;
    size_t HW = (size_t)s->H * s->W;
    // Images in order: dW_g [Og, K] += dy_ng [Og, P] @ rhs^T [P, K].
    for (int n = 0; n < s->N; n++)
        for (int gi = 0; gi < G; gi++) {
            const float *x_ng = x + ((size_t)n * s->Cin + (size_t)gi * Cg) * HW;
            const float *dy_ng = dy + ((size_t)n * s->Cout + (size_t)gi * Og) * P;
            const float *rhs = x_ng;
            if (s->path != CONV_PATH_GEMM) {
                im2col(work, x_ng, s);
                rhs = work;
            }
            mc_sgemm(0, 1, Og, K, P, 1.0f, dy_ng, P, rhs, P, 1.0f,
                     dw + (size_t)gi * Og * K, K);
        }
}

// ---- public entry points ----

size_t conv2d_work_floats(const ConvShape *s, int passes) {
    if (s->path == CONV_PATH_GEMM) return 0;
    if (s->path == CONV_PATH_IM2COL)
        return (size_t)(s->Cin / s->groups) * s->kH * s->kW * s->Ho * s->Wo;
    DwPlan d;
    dw_plan(&d, s, passes);
    return d.head + (size_t)mc_threads() * d.per_thread;
}

static void conv_check_work(const ConvShape *s, const float *work) {
    MC_CHECK(work || conv2d_work_floats(s, CONV_PASS_ALL) == 0,
             "conv2d: path %s needs a work buffer of conv2d_work_floats() floats, got NULL",
             conv_path_name(s->path));
}

void conv2d_forward(float *y, const float *x, const float *w, const float *bias,
                    const ConvShape *s, float *work) {
    conv_check_work(s, work);
    if (s->path == CONV_PATH_DEPTHWISE) dw_forward(y, x, w, bias, s, work);
    else gemm_forward(y, x, w, bias, s, work);
}

void conv2d_backward_x(float *dx, const float *dy, const float *w, const ConvShape *s,
                       float *work) {
    conv_check_work(s, work);
    if (s->path == CONV_PATH_DEPTHWISE) dw_backward_x(dx, dy, w, s, work);
    else gemm_backward_x(dx, dy, w, s, work);
}

void conv2d_backward_w(float *dw, const float *dy, const float *x, const ConvShape *s,
                       float *work) {
    conv_check_work(s, work);
    if (s->path == CONV_PATH_DEPTHWISE) dw_backward_w(dw, dy, x, s, work);
    else gemm_backward_w(dw, dy, x, s, work);
}

void conv2d_backward_bias(float *db, const float *dy, const ConvShape *s) {
    size_t P = (size_t)s->Ho * s->Wo;
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int o = 0; o < s->Cout; o++) {
        double sum = 0.0;
        for (int n = 0; n < s->N; n++) {
            const float *dy_no = dy + ((size_t)n * s->Cout + (size_t)o) * P;
            for (size_t p = 0; p < P; p++) sum += dy_no[p];
        }
        db[o] += (float)sum;
    }
}

// ---- global average pooling ----

void avgpool_forward(float *y, const float *x, int64_t NC, int64_t HW) {
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *x_nc = x + nc * HW;
        double sum = 0.0;
        for (int64_t p = 0; p < HW; p++) sum += x_nc[p];
        y[nc] = (float)(sum / (double)HW);
    }
}

void avgpool_backward(float *dx, const float *dy, int64_t NC, int64_t HW) {
    #pragma omp parallel for schedule(static) num_threads(mc_threads())
    for (int64_t nc = 0; nc < NC; nc++) {
        float g = dy[nc] / (float)HW;
        float *dx_nc = dx + nc * HW;
        for (int64_t p = 0; p < HW; p++) dx_nc[p] += g;
    }
}
