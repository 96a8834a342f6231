// safetensors.h - read and write the safetensors format.
//
// File layout: u64 little-endian header length N, N bytes of JSON
//   {"__metadata__": {"k": "v", ...},
//    "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// then the data region; offsets are relative to its start.
//
// Reading maps the file (mmap) and validates everything the format requires
// before any tensor is used: header length within the file and below a
// bound, well-formed JSON, known dtypes, shape x itemsize equal to the byte
// span, spans in bounds, not overlapping and together covering the data
// region, every size computed with overflow checks.  Errors name the file,
// the tensor and what was expected and found.
//
// Usage sketch (compiled by tests/test_safetensors.c):
//
//     McErr err;
//     StFile *f = st_open("model.safetensors", &err);
//     if (!f) { fprintf(stderr, "%s\n", err.msg); return 1; }
//     const StTensor *t = st_find(f, "logit_scale");
//     float v;
//     if (t && st_to_f32(f, t, &v, 1, &err) == 0) printf("%g\n", v);
//     st_close(f);
//
//     StWriter *w = st_writer_new();
//     st_writer_add_f32(w, "x", MC_DIMS(2, 3), data);
//     st_writer_meta(w, "model", "MobileCLIP2-S0");
//     if (st_writer_save(w, "out.safetensors", &err)) ...;   // atomic
//     st_writer_free(w);
#ifndef MCLIP_SAFETENSORS_H
#define MCLIP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/tensor.h"

#define ST_MAXDIM 8

typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL
} StDtype;

typedef struct StTensor {
    char       *name;
    StDtype     dtype;
    int         ndim;             // 0 for a scalar such as logit_scale
    int64_t     shape[ST_MAXDIM];
    int64_t     numel;
    const void *data;             // inside the mapped file
    size_t      nbytes;
} StTensor;

typedef struct StFile StFile;

StFile         *st_open(const char *path, McErr *err);
// Same checks on a file already in memory; name is used in messages.  The
// tensors point into data, which must stay valid until st_close.
StFile         *st_open_mem(const void *data, size_t size, const char *name, McErr *err);
void            st_close(StFile *f);
const char     *st_path(const StFile *f);
int             st_count(const StFile *f);
const StTensor *st_at(const StFile *f, int i);            // file order
const StTensor *st_find(const StFile *f, const char *name); // NULL if absent
const char     *st_meta(const StFile *f, const char *key); // NULL if absent
int             st_meta_count(const StFile *f);
const char     *st_meta_key(const StFile *f, int i);
const char     *st_dtype_name(StDtype d);                  // "F32", ...

// Convert a float tensor (F32/F16/BF16/F64) or integer tensor to f32 into
// dst (n must equal t->numel).  Returns 0, or -1 with err set.
int st_to_f32(const StFile *f, const StTensor *t, float *dst, int64_t n, McErr *err);
// Read an integer tensor (I64/I32/...) as int64.
int st_to_i64(const StFile *f, const StTensor *t, int64_t *dst, int64_t n, McErr *err);

// Bytes per element of a dtype (BOOL, U8, I8: 1).
int st_dtype_size(StDtype d);
// 1 for F32/F16/BF16/F64.
int st_dtype_is_float(StDtype d);
// Convert n little-endian elements of dtype d at src (any alignment) to
// f32; integers are rounded to the nearest float, BOOL gives 0 or 1.
void st_raw_to_f32(StDtype d, const void *src, float *dst, int64_t n);
// Same to int64 for integer and BOOL dtypes (MC_CHECK on float dtypes).
void st_raw_to_i64(StDtype d, const void *src, int64_t *dst, int64_t n);

// Largest header accepted by st_open (bytes of JSON).
#define ST_MAX_HEADER ((uint64_t)100 << 20)

// Writer: tensors are kept in insertion order; save writes a temp file,
// fsyncs it, renames it over path and fsyncs the folder.
typedef struct StWriter StWriter;
StWriter *st_writer_new(void);
void      st_writer_free(StWriter *w);
// Data is copied.  F16 stores the values rounded to half precision.
void      st_writer_add_f32(StWriter *w, const char *name, int ndim, const int64_t *shape,
                            const float *data);
void      st_writer_add_f16(StWriter *w, const char *name, int ndim, const int64_t *shape,
                            const float *data);
void      st_writer_add_i64(StWriter *w, const char *name, int ndim, const int64_t *shape,
                            const int64_t *data);
void      st_writer_meta(StWriter *w, const char *key, const char *value);
int       st_writer_save(StWriter *w, const char *path, McErr *err);

#endif
