// tensor.c - tensor headers, arena, checks, fp16/bf16 conversion, threads.
#define _POSIX_C_SOURCE 200809L
#include "tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef MCLIP_BLAS
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
#endif

#define MC_ALIGN 64

// ---- checks ----

void mc_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "mclip: check failed at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

char *tensor_shape_str(const Tensor *t, char *buf, size_t len) {
    size_t k = 0;
    if (!t) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    k += (size_t)snprintf(buf + k, len - k, "[");
    for (int i = 0; i < t->ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ", %lld" : "%lld",
                              (long long)t->shape[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
    return buf;
}

void tensor_check_pair_at(const char *file, int line, int cond, const char *op,
                          const char *what, const Tensor *a, const Tensor *b) {
    char sa[96], sb[96];
    if (cond) return;
    mc_fail(file, line, "%s: %s: got %s and %s", op, what,
            tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
}

void tensor_check_same_at(const char *file, int line, const char *op,
                          const Tensor *a, const Tensor *b) {
    int same = a && b && a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    tensor_check_pair_at(file, line, same, op, "shapes must match", a, b);
}

void tensor_check_ndim_at(const char *file, int line, const char *op,
                          const Tensor *t, int ndim) {
    char s[96];
    if (t && t->ndim == ndim) return;
    mc_fail(file, line, "%s: expected a %d-dim tensor, got %s", op, ndim,
            tensor_shape_str(t, s, sizeof s));
}

// ---- errors ----

int mc_err(McErr *e, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// ---- memory ----

int mc_mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int mc_add_ok(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

void *mc_malloc(size_t bytes) {
    void *p = NULL;
    size_t rounded;
    MC_CHECK(mc_add_ok(bytes, MC_ALIGN - 1, &rounded), "allocation size overflow");
    rounded &= ~(size_t)(MC_ALIGN - 1);
    if (rounded == 0) rounded = MC_ALIGN;
#ifdef MC_EXACT_ALLOC
    // Fuzzing builds: the exact size, so AddressSanitizer flags every byte
    // read or written past the request (the rounding would hide up to 63).
    rounded = bytes ? bytes : 1;
#endif
    if (posix_memalign(&p, MC_ALIGN, rounded) != 0 || !p)
        mc_fail(__FILE__, __LINE__, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *mc_calloc(size_t count, size_t size) {
    size_t bytes;
    MC_CHECK(mc_mul_ok(count, size, &bytes), "allocation size overflow");
    void *p = mc_malloc(bytes);
    memset(p, 0, bytes);
    return p;
}

void mc_free(void *p) { free(p); }

struct ArenaBlock {
    ArenaBlock *next;  // older block
    size_t cap, used;
    char *mem;
};

static ArenaBlock *arena_block_new(size_t cap) {
    ArenaBlock *b = mc_malloc(sizeof *b);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    b->mem = mc_malloc(cap);
    return b;
}

void arena_init(Arena *a, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    if (initial_bytes < 4096) initial_bytes = 4096;
    a->head = arena_block_new(initial_bytes);
    a->n_mallocs = 1;
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t need;
    MC_CHECK(mc_add_ok(bytes, MC_ALIGN - 1, &need), "arena: size overflow");
    need &= ~(size_t)(MC_ALIGN - 1);
    if (need == 0) need = MC_ALIGN;
    ArenaBlock *b = a->head;
    if (!b || b->cap - b->used < need) {
        // Grow: a new block at least twice the last one and large enough.
        size_t cap = b ? b->cap * 2 : 4096;
        if (cap < need) cap = need;
        ArenaBlock *nb = arena_block_new(cap);
        nb->next = b;
        a->head = b = nb;
        a->n_mallocs++;
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->used_total += need;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

void *arena_calloc(Arena *a, size_t bytes) {
    void *p = arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void arena_reset(Arena *a) {
    ArenaBlock *b = a->head;
    if (b && b->next) {
        // Several blocks were needed: replace them by one of the peak size.
        size_t cap = a->peak;
        while (b) {
            ArenaBlock *next = b->next;
            mc_free(b->mem);
            mc_free(b);
            b = next;
        }
        a->head = arena_block_new(cap);
        a->n_mallocs++;
    } else if (b) {
        b->used = 0;
    }
    a->used_total = 0;
}

void arena_free(Arena *a) {
    ArenaBlock *b = a->head;
    while (b) {
        ArenaBlock *next = b->next;
        mc_free(b->mem);
        mc_free(b);
        b = next;
    }
    memset(a, 0, sizeof *a);
}

// ---- tensors ----

int64_t tensor_numel(int ndim, const int64_t *shape) {
    MC_CHECK(ndim >= 0 && ndim <= MC_MAXDIM, "tensor: %d dims (at most %d)", ndim, MC_MAXDIM);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        MC_CHECK(shape[i] >= 0, "tensor: negative dim %lld", (long long)shape[i]);
        MC_CHECK(shape[i] == 0 || n <= INT64_MAX / 4 / shape[i], "tensor: size overflow");
        n *= shape[i];
    }
    return n;
}

static void tensor_header(Tensor *t, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    t->n = tensor_numel(ndim, shape);
    t->ndim = ndim;
    for (int i = 0; i < MC_MAXDIM; i++) t->shape[i] = i < ndim ? shape[i] : 1;
}

Tensor *tensor_arena(Arena *a, int ndim, const int64_t *shape) {
    Tensor *t = arena_alloc(a, sizeof *t);
    tensor_header(t, ndim, shape);
    t->data = arena_alloc(a, (size_t)t->n * sizeof(float));
    return t;
}

Tensor *tensor_arena_zeros(Arena *a, int ndim, const int64_t *shape) {
    Tensor *t = tensor_arena(a, ndim, shape);
    memset(t->data, 0, (size_t)t->n * sizeof(float));
    return t;
}

Tensor *tensor_new(int ndim, const int64_t *shape) {
    Tensor *t = mc_malloc(sizeof *t);
    tensor_header(t, ndim, shape);
    t->data = mc_calloc((size_t)t->n, sizeof(float));
    return t;
}

void tensor_free(Tensor *t) {
    if (!t) return;
    mc_free(t->data);
    mc_free(t->grad);
    mc_free(t);
}

void tensor_require_grad(Tensor *t) {
    if (!t->grad) t->grad = mc_calloc((size_t)t->n, sizeof(float));
    t->requires_grad = 1;
}

void tensor_zero_grad(Tensor *t) {
    if (t->grad) memset(t->grad, 0, (size_t)t->n * sizeof(float));
}

void tensor_fill(Tensor *t, float v) {
    for (int64_t i = 0; i < t->n; i++) t->data[i] = v;
}

void tensor_copy(Tensor *dst, const Tensor *src) {
    TENSOR_CHECK_PAIR(dst->n == src->n, "tensor_copy", "element counts must match", dst, src);
    memcpy(dst->data, src->data, (size_t)src->n * sizeof(float));
}

void tensor_set_shape(Tensor *t, int ndim, const int64_t *shape) {
    int64_t n = tensor_numel(ndim, shape);
    char s[96];
    MC_CHECK(n == t->n, "reshape: %s has %lld elements, new shape has %lld",
             tensor_shape_str(t, s, sizeof s), (long long)t->n, (long long)n);
    t->ndim = ndim;
    for (int i = 0; i < MC_MAXDIM; i++) t->shape[i] = i < ndim ? shape[i] : 1;
}

int64_t tensor_dim(const Tensor *t, int d) {
    if (d < 0) d += t->ndim;
    MC_CHECK(d >= 0 && d < t->ndim, "tensor_dim: dim %d of a %d-dim tensor", d, t->ndim);
    return t->shape[d];
}

// ---- half precision ----

float mc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            // Subnormal half: value = man * 2^-24; normalise it.
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mc_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u)  // inf or nan (keep a quiet nan)
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u)  // rounds to >= 65520: overflow to inf
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) {
        // Result is subnormal or zero: add the value to 0.5 (2^-1) so the
        // FPU does the round-to-nearest-even at the 2^-24 position.
        float a, magic = 0.5f;
        memcpy(&a, &absx, 4);
        a += magic;
        uint32_t r;
        memcpy(&r, &a, 4);
        return (uint16_t)(sign | (r - 0x3f000000u));
    }
    // Normal: rebias exponent, round mantissa to 10 bits, nearest even.
    uint32_t mant_odd = (absx >> 13) & 1;
    absx += 0xc8000fffu + mant_odd;  // (15-127)<<23 rebias plus rounding bias
    return (uint16_t)(sign | (absx >> 13));
}

float mc_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mc_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void mc_f16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = mc_f16_to_f32(src[i]);
}

void mc_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = mc_bf16_to_f32(src[i]);
}

// ---- threads ----

static int g_threads = 0;

int mc_threads(void) {
    if (g_threads <= 0) {
        const char *s = getenv("MCLIP_THREADS");
        int n = s ? atoi(s) : 0;
#ifdef _OPENMP
        if (n <= 0) n = omp_get_max_threads();
#endif
        mc_set_threads(n > 0 ? n : 1);
    }
    return g_threads;
}

void mc_set_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
#ifdef MCLIP_BLAS
    // One pool: mc_sgemm spreads single-threaded OpenBLAS calls over the
    // OpenMP threads (see gemm.c).
    openblas_set_num_threads(1);
#endif
}

double mc_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
