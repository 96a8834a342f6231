// tensor.h - the float32 tensor type, arena allocation, checks, threads.
//
// A Tensor is a contiguous row-major float32 array of up to 4 dims in
// PyTorch order (outermost first: images N,C,H,W; tokens B,T,D).  It may
// carry a gradient buffer of the same size (grad != NULL exactly when
// requires_grad is set and the gradient has been allocated).  Tensors made
// during a forward pass live in an Arena that is reset between steps, so a
// steady-state training step calls malloc only when a step grows.
//
// Usage sketch (compiled by tests/test_tensor.c):
//
//     Arena a;
//     arena_init(&a, 1 << 20);
//     Tensor *x = tensor_arena(&a, MC_DIMS(3, 5));
//     tensor_fill(x, 1.0f);
//     TENSOR_CHECK_SAME(x, x, "demo");
//     arena_free(&a);
//
// Programmer errors (shape mismatch, forbidden NULL) abort through
// MC_CHECK, which is on in every build and prints file:line, the op and the
// shapes involved.  Bad input (files, flags) never reaches these checks: the
// readers validate it and return an error.
#ifndef MCLIP_TENSOR_H
#define MCLIP_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define MC_MAXDIM 4

struct AgNode;

typedef struct Tensor {
    float   *data;             // [n] values, 64-byte aligned when arena/heap made
    float   *grad;             // [n] d loss / d data, or NULL
    int      ndim;             // 0..MC_MAXDIM (0 = scalar with n == 1)
    int64_t  shape[MC_MAXDIM]; // unused trailing entries are 1
    int64_t  n;                // number of elements
    int      requires_grad;    // 1: gradients flow into this tensor
    struct AgNode *node;       // op that produced it on the tape, or NULL (leaf)
} Tensor;

// ---- always-on checks ----

// Abort with file:line and a printf-style message.  Not tied to NDEBUG.
void mc_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define MC_CHECK(cond, ...) \
    do { if (!(cond)) mc_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)

// Format a shape as "[2, 3, 5]" into buf (at least 64 bytes); returns buf.
char *tensor_shape_str(const Tensor *t, char *buf, size_t len);

// Abort unless a and b have the same shape; names op and both shapes.
void tensor_check_same_at(const char *file, int line, const char *op,
                          const Tensor *a, const Tensor *b);
#define TENSOR_CHECK_SAME(a, b, op) tensor_check_same_at(__FILE__, __LINE__, op, a, b)

// Abort unless t has exactly ndim dims; names op and the shape found.
void tensor_check_ndim_at(const char *file, int line, const char *op,
                          const Tensor *t, int ndim);
#define TENSOR_CHECK_NDIM(t, nd, op) tensor_check_ndim_at(__FILE__, __LINE__, op, t, nd)

// Abort with both shapes when cond is false (for op-specific rules).
void tensor_check_pair_at(const char *file, int line, int cond, const char *op,
                          const char *what, const Tensor *a, const Tensor *b);
#define TENSOR_CHECK_PAIR(cond, op, what, a, b) \
    tensor_check_pair_at(__FILE__, __LINE__, (cond), op, what, a, b)

// ---- errors from bad input ----

// Readers of files and flags report bad input through an McErr: a message
// naming the file, what was expected and what was found.  They return -1
// (or NULL) after filling it, 0 on success, and never abort.
#define MC_ERRLEN 1024
typedef struct McErr {
    char msg[MC_ERRLEN];
} McErr;

// Format the message into e (when e is not NULL); always returns -1.
int mc_err(McErr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- memory ----

// Heap allocation, 64-byte aligned, aborts with a message on failure.
void *mc_malloc(size_t bytes);
void *mc_calloc(size_t count, size_t size); // overflow-checked, zeroed
void  mc_free(void *p);

// size_t arithmetic with overflow detection: return 0 on overflow.
int mc_mul_ok(size_t a, size_t b, size_t *out);
int mc_add_ok(size_t a, size_t b, size_t *out);

// Bump allocator.  Allocations are 64-byte aligned and live until reset.
// When a block fills up a new one is chained; on reset the chain is merged
// into one block of the peak size, so the next step of the same shape
// allocates nothing.
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
    ArenaBlock *head;    // current block (newest first)
    size_t used_total;   // bytes handed out since the last reset
    size_t peak;         // largest used_total seen
    size_t n_mallocs;    // blocks obtained from malloc so far (for tests)
} Arena;

void   arena_init(Arena *a, size_t initial_bytes);
void  *arena_alloc(Arena *a, size_t bytes);      // never NULL (aborts on OOM)
void  *arena_calloc(Arena *a, size_t bytes);     // zeroed
void   arena_reset(Arena *a);
void   arena_free(Arena *a);

// ---- tensors ----

// Shape helpers: numel of a shape, overflow-checked (aborts on overflow).
int64_t tensor_numel(int ndim, const int64_t *shape);

// A tensor header + data in the arena.  Data is not initialised.
Tensor *tensor_arena(Arena *a, int ndim, const int64_t *shape);
// Same, zero-filled.
Tensor *tensor_arena_zeros(Arena *a, int ndim, const int64_t *shape);
// A tensor on the heap (for weights and learnable parameters); zeroed.
// Free with tensor_free.
Tensor *tensor_new(int ndim, const int64_t *shape);
void    tensor_free(Tensor *t);
// Allocate (zeroed) the gradient buffer of a heap tensor and set
// requires_grad; gradients accumulate there until tensor_zero_grad.
void    tensor_require_grad(Tensor *t);
void    tensor_zero_grad(Tensor *t);

// Literal dims as the (ndim, shape) argument pair:
//     tensor_arena(&a, MC_DIMS(3, 5))
#define MC_DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                     ((const int64_t[]){__VA_ARGS__})

void tensor_fill(Tensor *t, float v);
void tensor_copy(Tensor *dst, const Tensor *src);       // same numel required
// Set shape in place (same numel required); used for reshape views.
void tensor_set_shape(Tensor *t, int ndim, const int64_t *shape);

// Dim d counted from the end when negative (-1 = last).
int64_t tensor_dim(const Tensor *t, int d);

// ---- half precision ----

float    mc_f16_to_f32(uint16_t h);
uint16_t mc_f32_to_f16(float f);   // round to nearest even, inf/nan kept
float    mc_bf16_to_f32(uint16_t h);
uint16_t mc_f32_to_bf16(float f);  // round to nearest even, nan kept
void mc_f16_to_f32_array(float *dst, const uint16_t *src, size_t n);
void mc_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n);

// ---- threads ----

// Number of threads the non-BLAS kernels use (OpenMP), and BLAS too.
int  mc_threads(void);
void mc_set_threads(int n);

// Monotonic clock in seconds.
double mc_time(void);

#endif
