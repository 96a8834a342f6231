// matfile.h - read (and write) MATLAB level-5 MAT files: the numeric
// variables of small label files such as Flowers102's imagelabels.mat and
// setid.mat.
//
// Format followed: MathWorks "MAT-File Format" (level 5), as described in
// ../shared/datasets.md §1.1.  A file is a 128-byte header (116 bytes of
// text, 8 bytes subsystem offset, u16 version 0x0100, 2 bytes endian
// indicator "IM" = little-endian, "MI" = big-endian) followed by data
// elements.  Each element has an 8-byte tag (u32 type, u32 byte count) or,
// when the upper 16 bits of the first word are non-zero, the 4-byte "small
// element" form (count <= 4 in the upper half, type in the lower half, data
// in the next 4 bytes).  Top-level elements are miMATRIX (14) or
// miCOMPRESSED (15, one zlib stream that inflates to one miMATRIX element).
//
// What the reader does:
//   - both byte orders ("MI" files are byte-swapped while reading);
//   - miCOMPRESSED is stream-inflated with two caps (MatLimits: total size
//     and ratio to the compressed size), the zlib stream must end exactly
//     at the end of the element, and the inner tag's size + 8 must equal
//     the inflated length;
//   - a top-level miCOMPRESSED element is NOT padded to 8 bytes (the next
//     tag starts at offset + 8 + nbytes, as in the genuine setid.mat);
//     miMATRIX sub-elements are padded to 8;
//   - miMATRIX sub-elements: array flags, dimensions (int32 x ndim), name,
//     real part, optional imaginary part.  Numeric variables keep their
//     storage (miINT8..miUINT64, miSINGLE, miDOUBLE), converted to the
//     declared class on request; element count == product of dims is
//     checked; cell/struct/object/sparse/char variables are listed but
//     cannot be read as numbers;
//   - v7.3 files (HDF5) are rejected with a message saying so.
// Errors name the file, the variable (when known) and the byte offset.
//
// Limitations: no cell/struct/sparse/char contents, no complex values (a
// complex variable is refused), at most MAT_MAXDIM dims.
//
// Usage sketch (compiled by tests/test_matfile.c):
//
//     McErr err;
//     MatFile *m = mat_open("imagelabels.mat", &err);
//     if (!m) { fprintf(stderr, "%s\n", err.msg); return 1; }
//     int64_t *labels, n;
//     if (mat_get_i64(m, "labels", &labels, &n, &err)) ...;
//     free(labels);
//     mat_close(m);
//
//     MatWriteVar v = {.name = "labels", .rows = 1, .cols = n,
//                      .values = dvals, .compress = 1};
//     mat_write("out.mat", &v, 1, 0, &err);
#ifndef MCLIP_MATFILE_H
#define MCLIP_MATFILE_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/tensor.h"

#define MAT_MAXDIM 8

// Data element types (storage) of the level-5 format.
enum {
    MAT_INT8 = 1, MAT_UINT8 = 2, MAT_INT16 = 3, MAT_UINT16 = 4, MAT_INT32 = 5,
    MAT_UINT32 = 6, MAT_SINGLE = 7, MAT_DOUBLE = 9, MAT_INT64 = 12, MAT_UINT64 = 13,
    MAT_MATRIX = 14, MAT_COMPRESSED = 15, MAT_UTF8 = 16, MAT_UTF16 = 17, MAT_UTF32 = 18
};

// Array classes (the declared type of a variable).
enum {
    MX_CELL = 1, MX_STRUCT = 2, MX_OBJECT = 3, MX_CHAR = 4, MX_SPARSE = 5,
    MX_DOUBLE = 6, MX_SINGLE = 7, MX_INT8 = 8, MX_UINT8 = 9, MX_INT16 = 10,
    MX_UINT16 = 11, MX_INT32 = 12, MX_UINT32 = 13, MX_INT64 = 14, MX_UINT64 = 15
};

typedef struct MatVar {
    char          *name;
    int            mclass;            // MX_* declared class
    int            is_complex, is_logical, is_global;
    int            ndim;              // >= 2
    int64_t        dims[MAT_MAXDIM];
    int64_t        numel;             // product of dims
    int            stype;             // MAT_* storage type of the real part (numeric only)
    const uint8_t *data;              // real part bytes, file byte order (numeric only)
    size_t         nbytes;
    size_t         offset;            // file offset of the top-level element
    int            compressed;        // 1 when it came from a miCOMPRESSED element
    size_t         inflated;          // bytes that element inflated to (0 if uncompressed)
} MatVar;

typedef struct MatLimits {
    size_t max_inflate;   // bytes one miCOMPRESSED element may inflate to
    double max_ratio;     // inflated / compressed size limit
} MatLimits;

#define MAT_DEFAULT_MAX_INFLATE ((size_t)64 << 20)
#define MAT_DEFAULT_MAX_RATIO   1000.0
#define MAT_MAX_FILE            ((size_t)1 << 30)

typedef struct MatFile MatFile;

// Open and parse a whole file.  Returns NULL with err set on any error.
MatFile *mat_open(const char *path, McErr *err);
// Parse a file already in memory (copied); name is used in messages.
// lim may be NULL (defaults above).
MatFile *mat_open_mem(const void *bytes, size_t len, const char *name,
                      const MatLimits *lim, McErr *err);
void     mat_close(MatFile *m);

int           mat_count(const MatFile *m);
const MatVar *mat_at(const MatFile *m, int i);                  // file order
const MatVar *mat_find(const MatFile *m, const char *name);     // NULL if absent
int           mat_big_endian(const MatFile *m);                 // 1 for "MI" files
const char   *mat_header_text(const MatFile *m);                // the 116 text bytes, trimmed
const char   *mat_class_name(int mclass);                       // "mxDOUBLE", ...
const char   *mat_type_name(int stype);                         // "miUINT8", ...

// Read numeric variable `name` converted to its declared class, as double
// (*out malloc'd, *numel values in MATLAB's column-major order; the dims
// are in mat_find(m, name)->dims).  Returns 0, or -1 with err naming the
// file, the variable and the offset.
int mat_get_f64(const MatFile *m, const char *name, double **out, int64_t *numel,
                McErr *err);
// Same, as int64; every value must be integral and fit int64.
int mat_get_i64(const MatFile *m, const char *name, int64_t **out, int64_t *numel,
                McErr *err);

// ---- writer (used by the dataset generator and the tests) ----

// One 2-D numeric variable of class mclass (0 = MX_DOUBLE).  stype 0 picks
// the smallest storage MATLAB would (miUINT8 / miUINT16 / ... for integral
// values, miDOUBLE otherwise); every value must be exactly representable
// in the chosen storage and class.
typedef struct MatWriteVar {
    const char   *name;
    int64_t       rows, cols;
    const double *values;   // [rows * cols], column-major
    int           mclass;   // MX_* or 0
    int           stype;    // MAT_* or 0
    int           compress; // 1: wrap the element in miCOMPRESSED (zlib)
} MatWriteVar;

// Build the file in memory (*out malloc'd).  big_endian 1 writes an "MI"
// file.  Returns 0, or -1 with err set.
int mat_write_mem(const MatWriteVar *vars, int n, int big_endian, uint8_t **out,
                  size_t *len, McErr *err);
// Same, written to path (temp file + rename).
int mat_write(const char *path, const MatWriteVar *vars, int n, int big_endian, McErr *err);

#endif
