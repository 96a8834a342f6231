// torch_pt.h - read torch.save files (.pt, pytorch_model.bin) without
// Python: a zip reader plus a restricted pickle machine.
//
// torch.save (torch >= 1.6) writes a zip archive whose entries live under
// one folder `<stem>/`: `data.pkl` (the pickled object), `data/<key>` (one
// raw little-endian storage per key), `byteorder` (newer torch: "little"),
// `version` and a few bookkeeping files.  Entries are normally STORED; the
// reader also inflates DEFLATE entries (zlib) and reads zip64 records.
//
// The pickle is run by a machine that knows only the opcodes torch.save
// emits (protocols 2..5: PROTO FRAME STOP MARK EMPTY_{DICT,LIST,TUPLE}
// TUPLE TUPLE1..3 SETITEM(S) APPEND(S) (SHORT_)BINUNICODE(8) BININT(1,2)
// LONG1 BINFLOAT NONE NEWTRUE NEWFALSE (LONG_)BINPUT MEMOIZE (LONG_)BINGET
// GLOBAL STACK_GLOBAL REDUCE BINPERSID, and BUILD on an OrderedDict) and
// only these globals:
//     collections.OrderedDict                 (REDUCE with no arguments)
//     torch._utils._rebuild_tensor_v2         (REDUCE)
//     torch._utils._rebuild_parameter         (REDUCE)
//     torch._utils._rebuild_parameter_with_state (REDUCE)
//     torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage
//                                             (only inside a persistent id)
// Anything else (INST, OBJ, NEWOBJ, os.system, numpy scalars, ...) is
// refused with an error naming the file, the opcode or global and its byte
// offset in data.pkl; nothing from the file is ever executed.
//
// The result is a tree of PtValue (dict / list / tuple / str / int / float /
// bool / None / tensor), acyclic and at most PT_MAX_DEPTH deep (a value may
// be shared, as pickle memo references allow).  Tensors point at their storage bytes in the
// mapped file; pt_tensor_to_f32 converts them (copying through the strides
// when a tensor is not contiguous).  Every size is overflow-checked and the
// tree, memo, stack and inflated data are bounded (PT_MAX_* below).
//
// Usage sketch (compiled by tests/test_torch_pt.c):
//
//     McErr err;
//     PtFile *f = pt_open("prompt.pt", &err);
//     if (!f) { fprintf(stderr, "%s\n", err.msg); return 1; }
//     const PtValue *meta = pt_get(pt_root(f), "meta");
//     const char *model = pt_get_str(f, meta, "model_name", &err);
//     const PtTensor *ctx = pt_get_tensor(f, pt_root(f), "ctx", &err);
//     if (!model || !ctx) ...;
//     float *buf = malloc(ctx->numel * sizeof(float));
//     if (pt_tensor_to_f32(f, ctx, buf, ctx->numel, &err)) ...;
//     pt_close(f);
//
// Limitations: little-endian files only (byteorder "big" is refused); the
// legacy pre-1.6 tar/pickle format is refused with a hint; tensor
// subclasses, sparse and quantized tensors and complex dtypes are refused.
#ifndef MCLIP_TORCH_PT_H
#define MCLIP_TORCH_PT_H

#include <stdint.h>

#include "../tensor/tensor.h"
#include "safetensors.h"

#define PT_MAX_PICKLE   ((uint64_t)64 << 20)   // bytes of data.pkl
#define PT_MAX_MEMO     ((uint64_t)1 << 22)    // memo slots
#define PT_MAX_STACK    ((uint64_t)1 << 22)    // stack depth
#define PT_MAX_ENTRIES  ((uint64_t)1 << 20)    // zip entries
#define PT_MAX_TREE     ((uint64_t)512 << 20)  // bytes of the value tree
#define PT_MAX_INFLATE  ((uint64_t)16 << 30)   // bytes inflated from DEFLATE entries
#define PT_MAX_DEPTH    64                     // nesting of the unpickled tree (no cycles)

typedef enum {
    PT_NONE, PT_BOOL, PT_INT, PT_FLOAT, PT_STR, PT_TUPLE, PT_LIST, PT_DICT, PT_TENSOR,
    PT_GLOBAL,   // a class or function reference (may remain inside tuples)
    PT_STORAGE   // a persistent-id storage (may remain inside tuples)
} PtKind;

typedef struct PtTensor {
    StDtype  dtype;
    int      ndim;                  // 0 for a scalar
    int64_t  shape[ST_MAXDIM];
    int64_t  stride[ST_MAXDIM];     // in elements
    int64_t  offset;                // storage offset, in elements
    int64_t  numel;
    int      contiguous;            // 1: row-major without gaps from offset
    const char *key;                // storage key: the entry is <stem>/data/<key>
    const unsigned char *storage;   // storage bytes (any alignment)
    int64_t  storage_numel;
    int      entry;                 // zip entry index (internal)
} PtTensor;

typedef struct PtValue PtValue;
struct PtValue {
    PtKind    kind;
    int64_t   i;          // BOOL (0/1), INT
    double    f;          // FLOAT
    const char *s;        // STR: UTF-8 without NUL; GLOBAL: "module.name"
    int64_t   n;          // TUPLE, LIST: items; DICT: entries
    PtValue **items;      // TUPLE, LIST: [n] items; DICT: [n] values
    PtValue **keys;       // DICT: [n] keys (STR or INT), insertion order
    PtTensor *t;          // TENSOR
    int       height;     // levels below this value (0 for a leaf); at most PT_MAX_DEPTH
    int64_t   cap;        // (internal) allocated slots
    int       flags;      // (internal)
};

typedef struct PtFile PtFile;

// Open and fully unpickle a torch.save zip file.  NULL with err set on any
// problem (the message names the file, and for pickle problems the byte
// offset in data.pkl).
PtFile *pt_open(const char *path, McErr *err);
// Same on a file already in memory; name is used in messages.  Tensors
// point into data, which must stay valid until pt_close.
PtFile *pt_open_mem(const void *data, size_t size, const char *name, McErr *err);
void    pt_close(PtFile *f);
const char    *pt_path(const PtFile *f);
const PtValue *pt_root(const PtFile *f);
const char    *pt_kind_name(PtKind k);   // "dict", "tensor", ...

// 1 if the first bytes of the file at path look like a zip archive (the
// torch.save format), 0 otherwise (also when unreadable).
int pt_sniff(const char *path);

// The dict holding a checkpoint's tensors: root["state_dict"] or
// root["model"] when that is a dict, else the root if it is a dict, else NULL.
const PtValue *pt_state_dict(const PtFile *f);

// ---- walking the tree (NULL / -1 when absent or of another kind) ----

const PtValue  *pt_get(const PtValue *dict, const char *key);
const PtTensor *pt_as_tensor(const PtValue *v);
const char     *pt_as_str(const PtValue *v);
// Key i of a dict as a string (NULL for a non-string key).
const char     *pt_key_str(const PtValue *dict, int64_t i);

// Typed lookups in a dict that report problems: "prompt.pt: meta.n_ctx is a
// str, expected an int".  dict may be NULL (reported as missing).
int             pt_get_int(const PtFile *f, const PtValue *dict, const char *key, int64_t *out,
                           McErr *err);
int             pt_get_float(const PtFile *f, const PtValue *dict, const char *key, double *out,
                             McErr *err);
const char     *pt_get_str(const PtFile *f, const PtValue *dict, const char *key, McErr *err);
const PtTensor *pt_get_tensor(const PtFile *f, const PtValue *dict, const char *key,
                              McErr *err);
// A list (or tuple) of strings: *out gets a malloc'd array of *n pointers
// (free it with free(); the strings themselves belong to f).
int             pt_get_str_list(const PtFile *f, const PtValue *dict, const char *key,
                                const char ***out, int64_t *n, McErr *err);

// Convert a tensor to f32 / int64 (n must equal t->numel).  The storage's
// CRC-32 is checked on first use.  Returns 0, or -1 with err set.
int pt_tensor_to_f32(const PtFile *f, const PtTensor *t, float *dst, int64_t n, McErr *err);
int pt_tensor_to_i64(const PtFile *f, const PtTensor *t, int64_t *dst, int64_t n, McErr *err);

#endif
