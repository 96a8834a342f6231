// torch_pt.c - torch.save zip files and a restricted pickle machine (see
// torch_pt.h).
//
// References followed: the zip APPNOTE (PKWARE, 6.3.x: local file header,
// central directory, zip64 end record/locator, zip64 extra field 0x0001);
// Python's Lib/pickletools.py for opcode formats; torch/serialization.py
// (_save, _load) and torch/_utils.py (_rebuild_tensor_v2) for how torch
// lays out tensors: persistent id ('storage', StorageType, key, location,
// numel), then _rebuild_tensor_v2(storage, offset, size, stride,
// requires_grad, backward_hooks[, metadata]).
#include "torch_pt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "json.h"

typedef struct {
    char       *name;
    uint64_t    local;        // local header offset
    uint64_t    data_off;     // first byte of the entry's data
    uint64_t    csize, size;  // compressed / uncompressed bytes
    uint32_t    crc;
    int         method;       // 0 stored, 8 deflate
    const unsigned char *data;   // NULL until loaded (map, or owned)
    unsigned char *owned;        // inflated copy
    int         crc_ok;
} ZipEntry;

struct PtFile {
    char       *path;
    const unsigned char *map;
    size_t      size;
    ZipEntry   *ent;          // [n_ent] in central directory order
    int64_t     n_ent;
    ZipEntry  **sorted;       // [n_ent] by name
    char       *prefix;       // "<stem>/"
    PtValue    *root;
    Arena       arena;        // names and the value tree
    uint64_t    tree_bytes;
    uint64_t    inflated;
    int         borrowed;     // 1: map is the caller's memory (pt_open_mem), not mmap'd
};

static inline uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static char *arena_strndup(Arena *a, const char *s, size_t n) {
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

// ---- zip directory ----

#define SIG_LOCAL   0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD    0x06054b50u
#define SIG_EOCD64  0x06064b50u
#define SIG_LOC64   0x07064b50u

static uint32_t crc_of(const unsigned char *p, uint64_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k, n -= k;
    }
    return (uint32_t)c;
}

// The end-of-central-directory record (zip64 record when present): entry
// count and the central directory span, which must end before *limit.
static int zip_find_dir(PtFile *f, uint64_t *n, uint64_t *cd_off, uint64_t *cd_size,
                        uint64_t *limit, McErr *err) {
    const unsigned char *m = f->map;
    size_t size = f->size, lo = size > 22 + 65535 ? size - 22 - 65535 : 0, eocd = SIZE_MAX;

    // Scan back over a possible archive comment for the signature.
    for (size_t i = size - 22 + 1; i-- > lo;)
        if (rd32(m + i) == SIG_EOCD) { eocd = i; break; }
    if (eocd == SIZE_MAX)
        return mc_err(err, "%s: no zip end-of-central-directory record (truncated file, or "
                      "not a torch.save archive)", f->path);
    if (rd16(m + eocd + 4) || rd16(m + eocd + 6))
        return mc_err(err, "%s: multi-disk zip archives are not supported", f->path);
    *n = rd16(m + eocd + 10), *cd_size = rd32(m + eocd + 12), *cd_off = rd32(m + eocd + 16);
    *limit = eocd;

    // zip64: the locator sits just before the end record (torch always writes one).
    if (eocd >= 20 && rd32(m + eocd - 20) == SIG_LOC64) {
        uint64_t z = rd64(m + eocd - 20 + 8);
        if (z > eocd - 20 || eocd - 20 - z < 56 || rd32(m + z) != SIG_EOCD64)
            return mc_err(err, "%s: zip64 end record offset %llu is invalid", f->path,
                          (unsigned long long)z);
        *n = rd64(m + z + 32), *cd_size = rd64(m + z + 40), *cd_off = rd64(m + z + 48);
        *limit = z;
    } else if (*n == 0xffff || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu) {
        return mc_err(err, "%s: zip64 archive without a zip64 locator", f->path);
    }
    if (*cd_off > *limit || *cd_size > *limit - *cd_off)
        return mc_err(err, "%s: zip central directory [%llu, +%llu) lies outside the file "
                      "(%zu bytes); truncated or corrupt", f->path, (unsigned long long)*cd_off,
                      (unsigned long long)*cd_size, size);
    if (*n > PT_MAX_ENTRIES || *n > *cd_size / 46)
        return mc_err(err, "%s: zip claims %llu entries in a %llu-byte directory", f->path,
                      (unsigned long long)*n, (unsigned long long)*cd_size);
    return 0;
}

// Sizes or offset stored as 0xffffffff live in the zip64 extra field (id 1),
// in the order uncompressed size, compressed size, local header offset.
static int zip64_extra(PtFile *f, ZipEntry *e, const unsigned char *x, size_t xlen, int need_u,
                       int need_c, int need_o, McErr *err) {
    for (size_t p = 0; p + 4 <= xlen;) {
        uint16_t id = rd16(x + p), len = rd16(x + p + 2);
        if (p + 4 + len > xlen) break;
        if (id == 1) {
            size_t q = p + 4, end = q + len;
            if (need_u) { if (q + 8 > end) break; e->size = rd64(x + q); q += 8; }
            if (need_c) { if (q + 8 > end) break; e->csize = rd64(x + q); q += 8; }
            if (need_o) { if (q + 8 > end) break; e->local = rd64(x + q); }
            return 0;
        }
        p += 4 + len;
    }
    return mc_err(err, "%s: zip entry %s needs a zip64 extra field and has none (or a short "
                  "one)", f->path, e->name);
}

// One central directory record at m + *p (inside [*p, end)).
static int zip_central(PtFile *f, ZipEntry *e, uint64_t *p, uint64_t end, McErr *err) {
    const unsigned char *c = f->map + *p;
    if (end - *p < 46 || rd32(c) != SIG_CENTRAL)
        return mc_err(err, "%s: bad zip central directory record at byte %llu", f->path,
                      (unsigned long long)*p);
    unsigned flags = rd16(c + 8), nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    if (end - *p - 46 < (uint64_t)nlen + xlen + clen)
        return mc_err(err, "%s: zip central directory record at byte %llu runs past the "
                      "directory", f->path, (unsigned long long)*p);
    if (memchr(c + 46, 0, nlen))
        return mc_err(err, "%s: zip entry name contains NUL", f->path);
    e->name = arena_strndup(&f->arena, (const char *)c + 46, nlen);
    e->method = rd16(c + 10), e->crc = rd32(c + 16);
    e->csize = rd32(c + 20), e->size = rd32(c + 24), e->local = rd32(c + 42);
    int nu = e->size == 0xffffffffu, nc = e->csize == 0xffffffffu, no = e->local == 0xffffffffu;
    if ((nu || nc || no) && zip64_extra(f, e, c + 46 + nlen, xlen, nu, nc, no, err)) return -1;
    if (flags & 1)
        return mc_err(err, "%s: zip entry %s is encrypted", f->path, e->name);
    if (e->method != 0 && e->method != 8)
        return mc_err(err, "%s: zip entry %s uses compression method %d (only stored and "
                      "deflate are supported)", f->path, e->name, e->method);
    if (e->method == 0 && e->csize != e->size)
        return mc_err(err, "%s: stored zip entry %s has compressed size %llu != size %llu",
                      f->path, e->name, (unsigned long long)e->csize,
                      (unsigned long long)e->size);
    *p += 46 + (uint64_t)nlen + xlen + clen;
    return 0;
}

// The local header of e: its name must match and its data must end before
// the central directory.
static int zip_local(PtFile *f, ZipEntry *e, uint64_t cd_off, McErr *err) {
    const unsigned char *m = f->map;
    if (e->local > cd_off || cd_off - e->local < 30 || rd32(m + e->local) != SIG_LOCAL)
        return mc_err(err, "%s: zip entry %s: local header offset %llu is invalid", f->path,
                      e->name, (unsigned long long)e->local);
    uint64_t nlen = rd16(m + e->local + 26), xlen = rd16(m + e->local + 28);
    e->data_off = e->local + 30 + nlen + xlen;
    if (nlen != strlen(e->name) || e->data_off > cd_off ||
        memcmp(m + e->local + 30, e->name, nlen))
        return mc_err(err, "%s: zip entry %s: local header does not match the directory",
                      f->path, e->name);
    if (e->csize > cd_off - e->data_off)
        return mc_err(err, "%s: zip entry %s: data [%llu, +%llu) runs past the end of the "
                      "entries (byte %llu); truncated or corrupt", f->path, e->name,
                      (unsigned long long)e->data_off, (unsigned long long)e->csize,
                      (unsigned long long)cd_off);
    return 0;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp((*(ZipEntry *const *)a)->name, (*(ZipEntry *const *)b)->name);
}

static int zip_read_dir(PtFile *f, McErr *err) {
    uint64_t n = 0, cd_off = 0, cd_size = 0, limit = 0;
    if (zip_find_dir(f, &n, &cd_off, &cd_size, &limit, err)) return -1;

    // Central directory records, then each local header.
    f->ent = mc_calloc(n + 1, sizeof *f->ent);
    uint64_t p = cd_off;
    for (uint64_t i = 0; i < n; i++, f->n_ent++)
        if (zip_central(f, &f->ent[i], &p, cd_off + cd_size, err)) return -1;
    for (int64_t i = 0; i < f->n_ent; i++)
        if (zip_local(f, &f->ent[i], cd_off, err)) return -1;

    // Sorted by name for lookups; names must be distinct.
    f->sorted = mc_calloc((size_t)n + 1, sizeof *f->sorted);
    for (int64_t i = 0; i < f->n_ent; i++) f->sorted[i] = &f->ent[i];
    qsort(f->sorted, (size_t)n, sizeof *f->sorted, entry_cmp);
    for (int64_t i = 1; i < f->n_ent; i++)
        if (!strcmp(f->sorted[i]->name, f->sorted[i - 1]->name))
            return mc_err(err, "%s: zip entry %s appears twice", f->path, f->sorted[i]->name);
    return 0;
}

static ZipEntry *zip_find(const PtFile *f, const char *name) {
    int64_t lo = 0, hi = f->n_ent - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->sorted[mid]->name);
        if (!c) return f->sorted[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

// Inflate a DEFLATE entry into an owned buffer of its declared size.
static int zip_inflate(PtFile *f, ZipEntry *e, McErr *err) {
    if (e->size > PT_MAX_INFLATE - f->inflated)
        return mc_err(err, "%s: zip entry %s inflates to %llu bytes, over the %llu-byte limit",
                      f->path, e->name, (unsigned long long)e->size,
                      (unsigned long long)PT_MAX_INFLATE);
    // DEFLATE expands at most 1032:1 (zlib's FAQ): a larger declared size is
    // damage, refused before it is allocated.
    if (e->size / 1032 > e->csize + 1)
        return mc_err(err, "%s: zip entry %s declares %llu bytes from %llu compressed, more "
                      "than DEFLATE can expand (corrupt file)", f->path, e->name,
                      (unsigned long long)e->size, (unsigned long long)e->csize);
    e->owned = malloc(e->size ? (size_t)e->size : 1);
    if (!e->owned)
        return mc_err(err, "%s: out of memory inflating %s", f->path, e->name);
    f->inflated += e->size;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK)
        return mc_err(err, "%s: zlib inflateInit failed", f->path);
    const unsigned char *in = f->map + e->data_off;
    uint64_t in_left = e->csize, out_left = e->size;
    unsigned char *out = e->owned;
    int rc = Z_OK;

    // Feed at most UINT_MAX bytes at a time in each direction.
    while (rc == Z_OK) {
        if (z.avail_in == 0 && in_left) {
            z.avail_in = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
            z.next_in = (unsigned char *)in;
            in += z.avail_in, in_left -= z.avail_in;
        }
        if (z.avail_out == 0 && out_left) {
            z.avail_out = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
            z.next_out = out;
            out += z.avail_out, out_left -= z.avail_out;
        }
        if (z.avail_out == 0) {  // output full but the stream goes on: larger than declared
            unsigned char probe;
            z.next_out = &probe, z.avail_out = 1;
            rc = inflate(&z, Z_NO_FLUSH);
            if (rc != Z_STREAM_END || z.avail_out == 0) rc = Z_DATA_ERROR;
            break;
        }
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_BUF_ERROR && z.avail_in == 0 && !in_left) rc = Z_DATA_ERROR;
    }
    uint64_t total = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || total != e->size)
        return mc_err(err, "%s: zip entry %s: corrupt DEFLATE data (inflated %llu of %llu "
                      "bytes)", f->path, e->name, (unsigned long long)total,
                      (unsigned long long)e->size);
    return 0;
}

static int check_crc(const PtFile *f, ZipEntry *e, McErr *err) {
    if (e->crc_ok) return 0;
    uint32_t c = crc_of(e->data, e->size);
    if (c != e->crc)
        return mc_err(err, "%s: zip entry %s: CRC-32 is %08x, the directory says %08x "
                      "(corrupt file)", f->path, e->name, c, e->crc);
    e->crc_ok = 1;
    return 0;
}

// Make e->data available (inflating when needed).
static int zip_load(PtFile *f, ZipEntry *e, McErr *err) {
    if (e->data) return 0;
    if (e->method == 0) {
        e->data = f->map + e->data_off;
        return 0;
    }
    if (zip_inflate(f, e, err)) return -1;
    e->data = e->owned;
    return check_crc(f, e, err);
}

// ---- pickle machine ----

enum { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE };

static const struct { const char *module, *name; int kind; StDtype dtype; } allowed[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, ST_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, ST_F32},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, ST_F32},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, ST_F32},
    {"torch", "FloatStorage", G_STORAGE, ST_F32},
    {"torch", "HalfStorage", G_STORAGE, ST_F16},
    {"torch", "BFloat16Storage", G_STORAGE, ST_BF16},
    {"torch", "DoubleStorage", G_STORAGE, ST_F64},
    {"torch", "LongStorage", G_STORAGE, ST_I64},
    {"torch", "IntStorage", G_STORAGE, ST_I32},
    {"torch", "ShortStorage", G_STORAGE, ST_I16},
    {"torch", "CharStorage", G_STORAGE, ST_I8},
    {"torch", "ByteStorage", G_STORAGE, ST_U8},
    {"torch", "BoolStorage", G_STORAGE, ST_BOOL},
};
#define N_ALLOWED ((int)(sizeof allowed / sizeof allowed[0]))

#define DICT_ORDERED 1   // PtValue.flags: made by collections.OrderedDict()

// Names of every pickle opcode, for error messages (pickletools).
static const char *opcode_name(int op) {
    static const struct { unsigned char op; const char *name; } names[] = {
        {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"},
        {'F', "FLOAT"}, {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"},
        {'M', "BININT2"}, {'N', "NONE"}, {'P', "PERSID"}, {'Q', "BINPERSID"}, {'R', "REDUCE"},
        {'S', "STRING"}, {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"},
        {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"}, {'c', "GLOBAL"}, {'d', "DICT"},
        {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"}, {'i', "INST"},
        {'j', "LONG_BINGET"}, {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"},
        {'q', "BINPUT"}, {'r', "LONG_BINPUT"}, {'s', "SETITEM"}, {'t', "TUPLE"},
        {')', "EMPTY_TUPLE"}, {'u', "SETITEMS"}, {'G', "BINFLOAT"}, {0x80, "PROTO"},
        {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"},
        {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"},
        {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"},
        {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},
        {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"},
        {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
        {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].op == op) return names[i].name;
    return "unknown";
}

typedef struct {
    PtFile   *f;
    const unsigned char *p;   // data.pkl
    size_t    len, pos;
    size_t    op_pos;         // offset of the opcode being run
    PtValue **stack;
    size_t    top, cap;
    size_t   *marks;
    size_t    n_marks, cap_marks;
    PtValue **memo;
    size_t    memo_cap, memo_count;
    PtValue **dicts;          // every dict made (checked for repeated keys at the end)
    size_t    n_dicts, cap_dicts;
    McErr    *err;
} Vm;

__attribute__((format(printf, 2, 3)))
static int vm_fail(Vm *vm, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mc_err(vm->err, "%s: %sdata.pkl byte %zu: %s", vm->f->path, vm->f->prefix,
                  vm->op_pos, msg);
}

// Grow *arr (elements of size elem) to hold at least need; limit in elements.
static int vm_grow(Vm *vm, void **arr, size_t *cap, size_t need, size_t elem, uint64_t limit,
                   const char *what) {
    if (need <= *cap) return 0;
    if (need > limit) return vm_fail(vm, "%s exceeds %llu entries (limit)", what,
                                     (unsigned long long)limit);
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    if (nc > limit) nc = (size_t)limit;
    void *p = realloc(*arr, nc * elem);
    if (!p) return vm_fail(vm, "out of memory growing the %s", what);
    *arr = p, *cap = nc;
    return 0;
}

static void *tree_alloc(Vm *vm, size_t bytes) {
    if (bytes > PT_MAX_TREE - vm->f->tree_bytes) {
        vm_fail(vm, "the unpickled objects exceed %llu bytes (limit)",
                (unsigned long long)PT_MAX_TREE);
        return NULL;
    }
    vm->f->tree_bytes += bytes + 64;
    return arena_calloc(&vm->f->arena, bytes);
}

static PtValue *new_value(Vm *vm, PtKind kind) {
    PtValue *v = tree_alloc(vm, sizeof *v);
    if (v) v->kind = kind;
    return v;
}

static int push(Vm *vm, PtValue *v) {
    if (!v) return -1;
    if (vm_grow(vm, (void **)&vm->stack, &vm->cap, vm->top + 1, sizeof *vm->stack,
                PT_MAX_STACK, "pickle stack"))
        return -1;
    vm->stack[vm->top++] = v;
    return 0;
}

// Pop one value; the items below the latest MARK are out of reach.
static PtValue *pop(Vm *vm) {
    size_t floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    if (vm->top <= floor) {
        vm_fail(vm, "stack underflow (opcode %s needs a value)", opcode_name(vm->p[vm->op_pos]));
        return NULL;
    }
    return vm->stack[--vm->top];
}

static PtValue *peek(Vm *vm) {
    size_t floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    if (vm->top <= floor) {
        vm_fail(vm, "stack underflow (opcode %s needs a value)", opcode_name(vm->p[vm->op_pos]));
        return NULL;
    }
    return vm->stack[vm->top - 1];
}

// Start of the values pushed since the latest MARK (which is removed).
static int pop_mark(Vm *vm, size_t *start) {
    if (!vm->n_marks)
        return vm_fail(vm, "opcode %s without a MARK", opcode_name(vm->p[vm->op_pos]));
    *start = vm->marks[--vm->n_marks];
    return 0;
}

// Bytes of the current opcode's argument.
static const unsigned char *take(Vm *vm, size_t n) {
    if (n > vm->len - vm->pos) {
        vm_fail(vm, "truncated: opcode %s needs %zu more bytes, %zu left",
                opcode_name(vm->p[vm->op_pos]), n, vm->len - vm->pos);
        return NULL;
    }
    const unsigned char *a = vm->p + vm->pos;
    vm->pos += n;
    return a;
}

static PtValue *make_str(Vm *vm, const unsigned char *s, uint64_t n) {
    if (memchr(s, 0, n)) { vm_fail(vm, "string contains a NUL byte"); return NULL; }
    if (json_utf8_prefix((const char *)s, n) != n) {
        vm_fail(vm, "string is not valid UTF-8");
        return NULL;
    }
    PtValue *v = new_value(vm, PT_STR);
    char *d = v ? tree_alloc(vm, n + 1) : NULL;
    if (!d) return NULL;
    memcpy(d, s, n);
    v->s = d;
    return v;
}

static PtValue *make_int(Vm *vm, PtKind kind, int64_t i) {
    PtValue *v = new_value(vm, kind);
    if (v) v->i = i;
    return v;
}

// Tuple of the n values stack[start .. start + n).
static PtValue *make_tuple(Vm *vm, size_t start, size_t n) {
    PtValue *t = new_value(vm, PT_TUPLE);
    if (!t) return NULL;
    t->items = tree_alloc(vm, (n ? n : 1) * sizeof *t->items);
    if (!t->items) return NULL;
    if (n) memcpy(t->items, vm->stack + start, n * sizeof *t->items);
    t->n = (int64_t)n;
    vm->top = start;
    return t;
}

static int check_item(Vm *vm, const PtValue *v, const char *where) {
    if (v->kind == PT_GLOBAL || v->kind == PT_STORAGE)
        return vm_fail(vm, "a %s object stored in a %s is not supported",
                       v->kind == PT_GLOBAL ? "class/function" : "storage", where);
    return 0;
}

// Append v to a list or a dict's keys/values arrays, growing them.
static int seq_append(Vm *vm, PtValue *seq, PtValue *key, PtValue *v) {
    if ((uint64_t)seq->n >= PT_MAX_STACK * 4)
        return vm_fail(vm, "container exceeds %llu entries (limit)",
                       (unsigned long long)PT_MAX_STACK * 4);
    if (seq->n == seq->cap) {
        int64_t nc = seq->cap ? seq->cap * 2 : 8;
        PtValue **items = tree_alloc(vm, (size_t)nc * sizeof *items);
        PtValue **keys = seq->kind == PT_DICT ? tree_alloc(vm, (size_t)nc * sizeof *keys) : NULL;
        if (!items || (seq->kind == PT_DICT && !keys)) return -1;
        if (seq->n) memcpy(items, seq->items, (size_t)seq->n * sizeof *items);
        if (keys && seq->n) memcpy(keys, seq->keys, (size_t)seq->n * sizeof *keys);
        seq->items = items, seq->keys = keys, seq->cap = nc;
    }
    if (key) seq->keys[seq->n] = key;
    seq->items[seq->n++] = v;
    return 0;
}

static int dict_set(Vm *vm, PtValue *d, PtValue *k, PtValue *v) {
    if (d->kind != PT_DICT)
        return vm_fail(vm, "SETITEM on a %s, expected a dict", pt_kind_name(d->kind));
    if (k->kind != PT_STR && k->kind != PT_INT)
        return vm_fail(vm, "dict key of kind %s is not supported (str or int only)",
                       pt_kind_name(k->kind));
    if (check_item(vm, v, "dict")) return -1;
    return seq_append(vm, d, k, v);
}

static int list_append(Vm *vm, PtValue *l, PtValue *v) {
    if (l->kind != PT_LIST)
        return vm_fail(vm, "APPEND on a %s, expected a list", pt_kind_name(l->kind));
    if (check_item(vm, v, "list")) return -1;
    return seq_append(vm, l, NULL, v);
}

static int memo_put(Vm *vm, uint64_t idx) {
    PtValue *v = peek(vm);
    if (!v) return -1;
    if (idx >= PT_MAX_MEMO)
        return vm_fail(vm, "memo index %llu exceeds the limit %llu", (unsigned long long)idx,
                       (unsigned long long)PT_MAX_MEMO);
    size_t old = vm->memo_cap;
    if (vm_grow(vm, (void **)&vm->memo, &vm->memo_cap, (size_t)idx + 1, sizeof *vm->memo,
                PT_MAX_MEMO, "memo"))
        return -1;
    if (vm->memo_cap > old) memset(vm->memo + old, 0, (vm->memo_cap - old) * sizeof *vm->memo);
    if (!vm->memo[idx]) vm->memo_count++;
    vm->memo[idx] = v;
    return 0;
}

static int memo_get(Vm *vm, uint64_t idx) {
    if (idx >= vm->memo_cap || !vm->memo[idx])
        return vm_fail(vm, "memo entry %llu was never stored", (unsigned long long)idx);
    return push(vm, vm->memo[idx]);
}

// GLOBAL / STACK_GLOBAL: only the allowlist resolves.
static int push_global(Vm *vm, const char *module, size_t ml, const char *name, size_t nl) {
    for (size_t i = 0; i < ml; i++)
        if (module[i] < 0x20 || module[i] > 0x7e)
            return vm_fail(vm, "global with a non-printable module name");
    for (size_t i = 0; i < nl; i++)
        if (name[i] < 0x20 || name[i] > 0x7e)
            return vm_fail(vm, "global with a non-printable name");
    for (int i = 0; i < N_ALLOWED; i++) {
        if (strlen(allowed[i].module) != ml || strncmp(allowed[i].module, module, ml) ||
            strlen(allowed[i].name) != nl || strncmp(allowed[i].name, name, nl))
            continue;
        PtValue *g = new_value(vm, PT_GLOBAL);
        char *s = g ? tree_alloc(vm, ml + nl + 2) : NULL;
        if (!s) return -1;
        snprintf(s, ml + nl + 2, "%.*s.%.*s", (int)ml, module, (int)nl, name);
        g->s = s, g->i = i;
        return push(vm, g);
    }
    return vm_fail(vm, "global %.*s.%.*s is not allowed (a torch checkpoint needs only "
                   "collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
                   "torch._utils._rebuild_parameter and torch.*Storage)",
                   (int)(ml > 100 ? 100 : ml), module, (int)(nl > 100 ? 100 : nl), name);
}

static int op_global(Vm *vm) {
    // "module\nname\n", each line at most 256 bytes
    const char *s = (const char *)vm->p + vm->pos;
    size_t left = vm->len - vm->pos, lim = left < 514 ? left : 514;
    const char *nl1 = memchr(s, '\n', lim);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', lim - (size_t)(nl1 + 1 - s)) : NULL;
    if (!nl2) return vm_fail(vm, "GLOBAL: module and name lines not found (truncated?)");
    vm->pos += (size_t)(nl2 + 1 - s);
    return push_global(vm, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1));
}

static int op_stack_global(Vm *vm) {
    PtValue *name = pop(vm), *module = name ? pop(vm) : NULL;
    if (!module) return -1;
    if (name->kind != PT_STR || module->kind != PT_STR)
        return vm_fail(vm, "STACK_GLOBAL needs two strings, found %s and %s",
                       pt_kind_name(module->kind), pt_kind_name(name->kind));
    return push_global(vm, module->s, strlen(module->s), name->s, strlen(name->s));
}

// BINPERSID: ('storage', torch.<T>Storage, key, location, numel) becomes a
// storage value pointing at the entry <stem>/data/<key>.
static int op_persid(Vm *vm) {
    PtValue *pid = pop(vm);
    if (!pid) return -1;
    PtValue **it = pid->items;
    if (pid->kind != PT_TUPLE || pid->n != 5 || it[0]->kind != PT_STR ||
        strcmp(it[0]->s, "storage") || it[1]->kind != PT_GLOBAL ||
        allowed[it[1]->i].kind != G_STORAGE || it[2]->kind != PT_STR ||
        it[3]->kind != PT_STR || it[4]->kind != PT_INT || it[4]->i < 0)
        return vm_fail(vm, "persistent id is not ('storage', torch.<T>Storage, key, location, "
                       "numel)");
    StDtype dt = allowed[it[1]->i].dtype;
    const char *key = it[2]->s;
    int64_t numel = it[4]->i;

    // The storage entry must hold exactly numel elements.
    size_t nlen = strlen(vm->f->prefix) + strlen(key) + 8;
    char *name = malloc(nlen);
    if (!name) return vm_fail(vm, "out of memory");
    snprintf(name, nlen, "%sdata/%s", vm->f->prefix, key);
    ZipEntry *e = zip_find(vm->f, name);
    free(name);
    if (!e) return vm_fail(vm, "storage '%.100s' has no entry %sdata/%.100s in the archive", key,
                           vm->f->prefix, key);
    size_t need;
    if (!mc_mul_ok((size_t)numel, (size_t)st_dtype_size(dt), &need) || need != e->size)
        return vm_fail(vm, "storage '%.100s': %lld %s elements need %lld bytes, the entry has "
                       "%llu", key, (long long)numel, st_dtype_name(dt),
                       (long long)numel * st_dtype_size(dt), (unsigned long long)e->size);
    if (zip_load(vm->f, e, vm->err)) return -1;

    PtValue *v = new_value(vm, PT_STORAGE);
    PtTensor *t = v ? tree_alloc(vm, sizeof *t) : NULL;
    if (!t) return -1;
    t->dtype = dt, t->key = key, t->storage = e->data, t->storage_numel = numel;
    t->entry = (int)(e - vm->f->ent);
    v->t = t;
    return push(vm, v);
}

// An int tuple (size or stride) into out[ndim].
static int int_tuple(Vm *vm, const PtValue *tup, int64_t *out, int *ndim, const char *what) {
    if (tup->kind != PT_TUPLE || tup->n > ST_MAXDIM)
        return vm_fail(vm, "tensor %s must be a tuple of at most %d ints", what, ST_MAXDIM);
    for (int64_t i = 0; i < tup->n; i++) {
        if (tup->items[i]->kind != PT_INT || tup->items[i]->i < 0)
            return vm_fail(vm, "tensor %s[%lld] is not a non-negative int", what, (long long)i);
        out[i] = tup->items[i]->i;
    }
    *ndim = (int)tup->n;
    return 0;
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
static PtValue *rebuild_tensor(Vm *vm, const PtValue *args) {
    PtValue **a = args->items;
    if (args->n != 6 && args->n != 7) {
        vm_fail(vm, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %lld", (long long)args->n);
        return NULL;
    }
    if (a[0]->kind != PT_STORAGE || a[1]->kind != PT_INT || a[1]->i < 0 ||
        a[4]->kind != PT_BOOL || (a[5]->kind != PT_DICT && a[5]->kind != PT_NONE) ||
        (args->n == 7 && a[6]->kind != PT_DICT && a[6]->kind != PT_NONE)) {
        vm_fail(vm, "_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, "
                "bool, dict[, dict])");
        return NULL;
    }
    PtTensor *t = tree_alloc(vm, sizeof *t);
    if (!t) return NULL;
    *t = *a[0]->t;
    t->offset = a[1]->i;
    int nd_stride;
    if (int_tuple(vm, a[2], t->shape, &t->ndim, "size") ||
        int_tuple(vm, a[3], t->stride, &nd_stride, "stride"))
        return NULL;
    if (nd_stride != t->ndim) {
        vm_fail(vm, "tensor size has %d dims but stride has %d", t->ndim, nd_stride);
        return NULL;
    }

    // numel, the last element reached, and contiguity, all overflow-checked.
    int64_t numel = 1, last = t->offset, expect = 1;
    int overflow = 0;
    t->contiguous = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t s = t->shape[d];
        if (s && numel > INT64_MAX / s) overflow = 1;
        else numel *= s;
        if (s > 1) {
            if (t->stride[d] && s - 1 > (INT64_MAX - last) / t->stride[d]) overflow = 1;
            else last += (s - 1) * t->stride[d];
            if (t->stride[d] != expect) t->contiguous = 0;
        }
        if (s && expect <= INT64_MAX / s) expect *= s;
    }
    if (overflow) {
        vm_fail(vm, "tensor size/stride overflow");
        return NULL;
    }
    t->numel = numel;
    if ((numel > 0 && last >= t->storage_numel) || t->offset > t->storage_numel) {
        vm_fail(vm, "tensor (offset %lld, %d dims) reaches element %lld of storage '%.100s' "
                "which has %lld", (long long)t->offset, t->ndim, (long long)last, t->key,
                (long long)t->storage_numel);
        return NULL;
    }
    PtValue *v = new_value(vm, PT_TENSOR);
    if (v) v->t = t;
    return v;
}

// REDUCE: call an allowlisted function on an argument tuple.
static int op_reduce(Vm *vm) {
    PtValue *args = pop(vm), *fn = args ? pop(vm) : NULL, *out = NULL;
    if (!fn) return -1;
    if (fn->kind != PT_GLOBAL)
        return vm_fail(vm, "REDUCE on a %s, expected an allowed global", pt_kind_name(fn->kind));
    if (args->kind != PT_TUPLE)
        return vm_fail(vm, "REDUCE arguments are a %s, expected a tuple",
                       pt_kind_name(args->kind));
    switch (allowed[fn->i].kind) {
    case G_ORDERED_DICT:
        if (args->n != 0)
            return vm_fail(vm, "collections.OrderedDict called with arguments");
        if (!(out = new_value(vm, PT_DICT))) return -1;
        out->flags = DICT_ORDERED;
        if (vm_grow(vm, (void **)&vm->dicts, &vm->cap_dicts, vm->n_dicts + 1,
                    sizeof *vm->dicts, UINT64_MAX / 16, "dict list"))
            return -1;
        vm->dicts[vm->n_dicts++] = out;
        break;
    case G_REBUILD_TENSOR:
        if (!(out = rebuild_tensor(vm, args))) return -1;
        break;
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
        if (args->n != (allowed[fn->i].kind == G_REBUILD_PARAM ? 3 : 4) ||
            args->items[0]->kind != PT_TENSOR || args->items[1]->kind != PT_BOOL)
            return vm_fail(vm, "%s arguments are not (tensor, bool, hooks...)", fn->s);
        out = args->items[0];
        break;
    default:
        return vm_fail(vm, "REDUCE on %s is not allowed (storage classes appear only inside "
                       "persistent ids)", fn->s);
    }
    return push(vm, out);
}

// BUILD: only the OrderedDict state torch attaches to state_dicts
// (_metadata), which is dropped.
static int op_build(Vm *vm) {
    PtValue *state = pop(vm), *target = state ? peek(vm) : NULL;
    if (!target) return -1;
    if (target->kind != PT_DICT || !(target->flags & DICT_ORDERED) ||
        (state->kind != PT_DICT && state->kind != PT_NONE))
        return vm_fail(vm, "BUILD on a %s with a %s state is not allowed (only an OrderedDict's "
                       "attribute dict)", pt_kind_name(target->kind), pt_kind_name(state->kind));
    return 0;
}

static int new_container(Vm *vm, PtKind kind) {
    PtValue *v = new_value(vm, kind);
    if (!v) return -1;
    if (kind == PT_DICT) {
        if (vm_grow(vm, (void **)&vm->dicts, &vm->cap_dicts, vm->n_dicts + 1,
                    sizeof *vm->dicts, UINT64_MAX / 16, "dict list"))
            return -1;
        vm->dicts[vm->n_dicts++] = v;
    }
    return push(vm, v);
}

// Opcodes with a fixed-size integer or float argument, and strings.
static int op_scalar(Vm *vm, int op) {
    const unsigned char *a;
    switch (op) {
    case 'K': return (a = take(vm, 1)) ? push(vm, make_int(vm, PT_INT, a[0])) : -1;
    case 'M': return (a = take(vm, 2)) ? push(vm, make_int(vm, PT_INT, rd16(a))) : -1;
    case 'J': return (a = take(vm, 4)) ? push(vm, make_int(vm, PT_INT, (int32_t)rd32(a))) : -1;
    case 0x8a: {  // LONG1: n-byte little-endian two's complement
        if (!(a = take(vm, 1))) return -1;
        unsigned n = a[0];
        if (n > 8) return vm_fail(vm, "LONG1 of %u bytes does not fit in 64 bits", n);
        if (!(a = take(vm, n))) return -1;
        uint64_t u = 0;
        for (unsigned k = 0; k < n; k++) u |= (uint64_t)a[k] << (8 * k);
        if (n && n < 8 && (a[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
        int64_t i;
        memcpy(&i, &u, sizeof i);
        return push(vm, make_int(vm, PT_INT, i));
    }
    case 'G': {  // BINFLOAT: big-endian IEEE double
        if (!(a = take(vm, 8))) return -1;
        uint64_t u = 0;
        for (int k = 0; k < 8; k++) u = u << 8 | a[k];
        PtValue *v = new_value(vm, PT_FLOAT);
        if (v) memcpy(&v->f, &u, sizeof v->f);
        return push(vm, v);
    }
    default: {  // BINUNICODE (u32 length), SHORT_BINUNICODE (u8), BINUNICODE8 (u64)
        size_t w = op == 'X' ? 4 : op == 0x8c ? 1 : 8;
        if (!(a = take(vm, w))) return -1;
        uint64_t n = w == 4 ? rd32(a) : w == 1 ? a[0] : rd64(a);
        if (n > vm->len - vm->pos)
            return vm_fail(vm, "truncated: string of %llu bytes, %zu left",
                           (unsigned long long)n, vm->len - vm->pos);
        a = take(vm, (size_t)n);
        return push(vm, make_str(vm, a, n));
    }
    }
}

// Opcodes that gather the values above the latest MARK.
static int op_marked(Vm *vm, int op) {
    size_t start = 0;
    if (pop_mark(vm, &start)) return -1;
    size_t n = vm->top - start;
    if (op == 't') return push(vm, make_tuple(vm, start, n));

    // The list or dict sits just below the mark.
    size_t floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    if (start <= floor)
        return vm_fail(vm, "stack underflow (%s has no target below its MARK)", opcode_name(op));
    PtValue *target = vm->stack[start - 1];
    if (op == 'e') {
        for (size_t i = 0; i < n; i++)
            if (list_append(vm, target, vm->stack[start + i])) return -1;
    } else {  // 'u' SETITEMS
        if (n % 2) return vm_fail(vm, "SETITEMS with an odd number (%zu) of values", n);
        for (size_t i = 0; i < n; i += 2)
            if (dict_set(vm, target, vm->stack[start + i], vm->stack[start + i + 1])) return -1;
    }
    vm->top = start;
    return 0;
}

// Run one opcode; *stop is set by STOP.
static int vm_step(Vm *vm, int *stop) {
    vm->op_pos = vm->pos;
    int op = vm->p[vm->pos++];
    const unsigned char *a;
    PtValue *x, *y, *z;
    switch (op) {
    case 0x80:  // PROTO
        if (!(a = take(vm, 1))) return -1;
        if (a[0] < 2 || a[0] > 5)
            return vm_fail(vm, "pickle protocol %d is not supported (2..5)", a[0]);
        return 0;
    case 0x95:  // FRAME: a length hint only
        if (!(a = take(vm, 8))) return -1;
        if (rd64(a) > vm->len - vm->pos) return vm_fail(vm, "FRAME runs past the end");
        return 0;
    case '.': *stop = 1; return 0;
    case '(':
        if (vm_grow(vm, (void **)&vm->marks, &vm->cap_marks, vm->n_marks + 1,
                    sizeof *vm->marks, PT_MAX_STACK, "mark stack"))
            return -1;
        vm->marks[vm->n_marks++] = vm->top;
        return 0;
    case '}': return new_container(vm, PT_DICT);
    case ']': return new_container(vm, PT_LIST);
    case ')': return push(vm, make_tuple(vm, vm->top, 0));
    case 'N': return push(vm, new_value(vm, PT_NONE));
    case 0x88: return push(vm, make_int(vm, PT_BOOL, 1));
    case 0x89: return push(vm, make_int(vm, PT_BOOL, 0));
    case 'K': case 'M': case 'J': case 0x8a: case 'G': case 'X': case 0x8c: case 0x8d:
        return op_scalar(vm, op);
    case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        size_t n = (size_t)(op - 0x84), floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
        if (vm->top - floor < n) return vm_fail(vm, "stack underflow (TUPLE%zu)", n);
        return push(vm, make_tuple(vm, vm->top - n, n));
    }
    case 't': case 'e': case 'u': return op_marked(vm, op);
    case 's':
        if (!(x = pop(vm)) || !(y = pop(vm)) || !(z = peek(vm))) return -1;
        return dict_set(vm, z, y, x);
    case 'a':
        if (!(x = pop(vm)) || !(y = peek(vm))) return -1;
        return list_append(vm, y, x);
    case 'q': return (a = take(vm, 1)) ? memo_put(vm, a[0]) : -1;
    case 'r': return (a = take(vm, 4)) ? memo_put(vm, rd32(a)) : -1;
    case 0x94: return memo_put(vm, vm->memo_count);
    case 'h': return (a = take(vm, 1)) ? memo_get(vm, a[0]) : -1;
    case 'j': return (a = take(vm, 4)) ? memo_get(vm, rd32(a)) : -1;
    case 'c': return op_global(vm);
    case 0x93: return op_stack_global(vm);
    case 'R': return op_reduce(vm);
    case 'Q': return op_persid(vm);
    case 'b': return op_build(vm);
    default:
        return vm_fail(vm, "opcode 0x%02x (%s) is not allowed in a torch checkpoint", op,
                       opcode_name(op));
    }
}

static int key_cmp(const void *a, const void *b) {
    const PtValue *x = *(PtValue *const *)a, *y = *(PtValue *const *)b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->kind == PT_INT) return x->i < y->i ? -1 : x->i > y->i;
    return strcmp(x->s, y->s);
}

// Every dict must have distinct keys (torch never writes repeats).
static int check_dict_keys(Vm *vm) {
    for (size_t d = 0; d < vm->n_dicts; d++) {
        PtValue *dict = vm->dicts[d];
        if (dict->n < 2) continue;
        PtValue **k = malloc((size_t)dict->n * sizeof *k);
        if (!k) return vm_fail(vm, "out of memory");
        memcpy(k, dict->keys, (size_t)dict->n * sizeof *k);
        qsort(k, (size_t)dict->n, sizeof *k, key_cmp);
        const PtValue *dup = NULL;
        for (int64_t i = 1; i < dict->n && !dup; i++)
            if (!key_cmp(&k[i], &k[i - 1])) dup = k[i];
        free(k);
        if (dup && dup->kind == PT_STR)
            return mc_err(vm->err, "%s: a dict in %sdata.pkl has the key '%.200s' twice",
                          vm->f->path, vm->f->prefix, dup->s);
        if (dup)
            return mc_err(vm->err, "%s: a dict in %sdata.pkl has the key %lld twice",
                          vm->f->path, vm->f->prefix, (long long)dup->i);
    }
    return 0;
}

// Children of a container: tuple/list items, then dict keys and values.
static int64_t n_children(const PtValue *v) {
    if (v->kind == PT_TUPLE || v->kind == PT_LIST) return v->n;
    return v->kind == PT_DICT ? 2 * v->n : 0;
}

static PtValue *child(const PtValue *v, int64_t i) {
    return v->kind == PT_DICT ? (i < v->n ? v->keys[i] : v->items[i - v->n]) : v->items[i];
}

#define VISITING 2
#define VISITED  4

// The tree must be acyclic and at most PT_MAX_DEPTH deep, so that code
// walking it recursively terminates.  Iterative depth-first search: a child
// still being visited closes a cycle; each node's height is computed once.
static int check_shape(Vm *vm, PtValue *root) {
    size_t cap = 64, top = 0;
    struct Frame { PtValue *v; int64_t next; } *st = malloc(cap * sizeof *st);
    if (!st) return vm_fail(vm, "out of memory");
    int rc = 0;
    st[top++] = (struct Frame){root, 0};
    root->flags |= VISITING;
    while (top && !rc) {
        struct Frame *fr = &st[top - 1];
        if (fr->next == n_children(fr->v)) {  // all children done: height known
            fr->v->flags = (fr->v->flags & ~VISITING) | VISITED;
            int h = fr->v->height + 1;
            if (--top && st[top - 1].v->height < h) st[top - 1].v->height = h;
            continue;
        }
        PtValue *c = child(fr->v, fr->next++);
        if (c->flags & VISITING) {
            rc = vm_fail(vm, "the pickled object contains a reference cycle");
        } else if (c->flags & VISITED) {
            if (fr->v->height < c->height + 1) fr->v->height = c->height + 1;
        } else if (top >= PT_MAX_DEPTH) {
            rc = vm_fail(vm, "the pickled object is nested deeper than %d levels", PT_MAX_DEPTH);
        } else {
            if (top == cap) {
                struct Frame *n2 = realloc(st, 2 * cap * sizeof *st);
                if (!n2) { rc = vm_fail(vm, "out of memory"); break; }
                st = n2, cap *= 2;
            }
            c->flags |= VISITING;
            st[top++] = (struct Frame){c, 0};
        }
    }
    free(st);
    return rc;
}

static int vm_run(PtFile *f, const unsigned char *p, size_t len, McErr *err) {
    Vm vm = {.f = f, .p = p, .len = len, .err = err};
    int stop = 0, rc = 0;
    while (!rc && !stop) {
        if (vm.pos >= vm.len) {
            vm.op_pos = vm.pos;
            rc = vm_fail(&vm, "pickle ends without STOP (truncated?)");
            break;
        }
        rc = vm_step(&vm, &stop);
    }
    if (!rc) {
        vm.op_pos = vm.pos ? vm.pos - 1 : 0;
        PtValue *root = pop(&vm);
        if (!root) rc = -1;
        else if (root->kind == PT_GLOBAL || root->kind == PT_STORAGE)
            rc = vm_fail(&vm, "the pickled object is a bare %s", pt_kind_name(root->kind));
        else f->root = root;
    }
    if (!rc) rc = check_shape(&vm, f->root);
    if (!rc) rc = check_dict_keys(&vm);
    free(vm.stack);
    free(vm.marks);
    free(vm.memo);
    free(vm.dicts);
    return rc;
}

// ---- open / close ----

int pt_sniff(const char *path) {
    unsigned char m[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t n = fread(m, 1, 4, fp);
    fclose(fp);
    return n == 4 && m[0] == 'P' && m[1] == 'K' &&
           ((m[2] == 3 && m[3] == 4) || (m[2] == 5 && m[3] == 6));
}

static int check_magic(PtFile *f, McErr *err);

static int map_file(PtFile *f, McErr *err) {
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return mc_err(err, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return mc_err(err, "%s: not a regular file", f->path);
    }
    f->size = (size_t)st.st_size;
    if (f->size < 4) {
        close(fd);
        return mc_err(err, "%s: file is %zu bytes, too short for a torch.save zip archive "
                      "(truncated?)", f->path, f->size);
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return mc_err(err, "%s: mmap failed: %s", f->path, strerror(errno));
    f->map = m;
    return check_magic(f, err);
}

// The first bytes: a zip archive, or say what it is instead.
static int check_magic(PtFile *f, McErr *err) {
    if (f->size < 4)
        return mc_err(err, "%s: file is %zu bytes, too short for a torch.save zip archive "
                      "(truncated?)", f->path, f->size);
    if (f->map[0] == 0x80 && f->map[1] <= 5)
        return mc_err(err, "%s: legacy (pre-1.6) torch.save format; re-save it with torch >= "
                      "1.6 (torch.save(obj, path) with the default zip serialization)", f->path);
    if (rd32(f->map) != SIG_LOCAL && rd32(f->map) != SIG_EOCD)
        return mc_err(err, "%s: not a zip archive (first bytes %02x %02x %02x %02x); expected "
                      "a torch.save file", f->path, f->map[0], f->map[1], f->map[2], f->map[3]);
    if (f->size < 22)
        return mc_err(err, "%s: file is %zu bytes, too short for a torch.save zip archive "
                      "(truncated?)", f->path, f->size);
    return 0;
}

// The archive folder, data.pkl and the byte order.
static int find_pickle(PtFile *f, ZipEntry **pkl, McErr *err) {
    if (f->n_ent == 0) return mc_err(err, "%s: the zip archive is empty", f->path);
    const char *first = f->ent[0].name, *slash = strchr(first, '/');
    if (!slash)
        return mc_err(err, "%s: zip entry %s is not inside a folder (not a torch.save "
                      "archive)", f->path, first);
    f->prefix = arena_strndup(&f->arena, first, (size_t)(slash - first + 1));

    char name[4200];
    snprintf(name, sizeof name, "%.4000sdata.pkl", f->prefix);
    *pkl = zip_find(f, name);
    if (!*pkl)
        return mc_err(err, "%s: missing %s (not a torch.save archive?)", f->path, name);
    if ((*pkl)->size > PT_MAX_PICKLE)
        return mc_err(err, "%s: %s is %llu bytes, over the %llu-byte limit", f->path, name,
                      (unsigned long long)(*pkl)->size, (unsigned long long)PT_MAX_PICKLE);
    if (zip_load(f, *pkl, err) || check_crc(f, *pkl, err)) return -1;

    snprintf(name, sizeof name, "%.4000sbyteorder", f->prefix);
    ZipEntry *bo = zip_find(f, name);
    if (bo) {
        if (zip_load(f, bo, err)) return -1;
        if (bo->size != 6 || memcmp(bo->data, "little", 6))
            return mc_err(err, "%s: byteorder is '%.*s'; only little-endian files are "
                          "supported", f->path, (int)(bo->size < 16 ? bo->size : 16), bo->data);
    }
    return 0;
}

PtFile *pt_open(const char *path, McErr *err) {
    PtFile *f = mc_calloc(1, sizeof *f);
    arena_init(&f->arena, 1 << 16);
    f->path = arena_strndup(&f->arena, path, strlen(path));
    f->prefix = "";
    ZipEntry *pkl;
    if (map_file(f, err) || zip_read_dir(f, err) || find_pickle(f, &pkl, err) ||
        vm_run(f, pkl->data, (size_t)pkl->size, err)) {
        pt_close(f);
        return NULL;
    }
    return f;
}

PtFile *pt_open_mem(const void *data, size_t size, const char *name, McErr *err) {
    PtFile *f = mc_calloc(1, sizeof *f);
    arena_init(&f->arena, 1 << 16);
    f->path = arena_strndup(&f->arena, name, strlen(name));
    f->prefix = "";
    f->borrowed = 1;
    f->map = data;
    f->size = size;
    ZipEntry *pkl;
    if (check_magic(f, err) || zip_read_dir(f, err) || find_pickle(f, &pkl, err) ||
        vm_run(f, pkl->data, (size_t)pkl->size, err)) {
        pt_close(f);
        return NULL;
    }
    return f;
}

void pt_close(PtFile *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_ent; i++) free(f->ent[i].owned);
    mc_free(f->ent);
    mc_free(f->sorted);
    if (f->map && !f->borrowed) munmap((void *)f->map, f->size);
    arena_free(&f->arena);
    mc_free(f);
}

const char *pt_path(const PtFile *f) { return f->path; }
const PtValue *pt_root(const PtFile *f) { return f->root; }

const char *pt_kind_name(PtKind k) {
    static const char *names[] = {"None", "bool", "int", "float", "str", "tuple",
                                  "list", "dict", "tensor", "global", "storage"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

// ---- walking ----

const PtValue *pt_get(const PtValue *d, const char *key) {
    if (!d || d->kind != PT_DICT) return NULL;
    for (int64_t i = 0; i < d->n; i++)
        if (d->keys[i]->kind == PT_STR && !strcmp(d->keys[i]->s, key)) return d->items[i];
    return NULL;
}

const PtValue *pt_state_dict(const PtFile *f) {
    const PtValue *r = f->root, *s;
    if (!r || r->kind != PT_DICT) return NULL;
    if ((s = pt_get(r, "state_dict")) && s->kind == PT_DICT) return s;
    if ((s = pt_get(r, "model")) && s->kind == PT_DICT) return s;
    return r;
}

const PtTensor *pt_as_tensor(const PtValue *v) {
    return v && v->kind == PT_TENSOR ? v->t : NULL;
}

const char *pt_as_str(const PtValue *v) { return v && v->kind == PT_STR ? v->s : NULL; }

const char *pt_key_str(const PtValue *d, int64_t i) {
    if (!d || d->kind != PT_DICT || i < 0 || i >= d->n || d->keys[i]->kind != PT_STR)
        return NULL;
    return d->keys[i]->s;
}

// The value of key, or NULL with "missing" / wrong-kind errors.
static const PtValue *get_kind(const PtFile *f, const PtValue *d, const char *key,
                               PtKind want, PtKind alt, McErr *err) {
    const PtValue *v = pt_get(d, key);
    if (!v) {
        mc_err(err, "%s: key '%s' is missing", f->path, key);
        return NULL;
    }
    if (v->kind != want && v->kind != alt) {
        mc_err(err, "%s: '%s' is a %s, expected %s", f->path, key, pt_kind_name(v->kind),
               pt_kind_name(want));
        return NULL;
    }
    return v;
}

int pt_get_int(const PtFile *f, const PtValue *d, const char *key, int64_t *out, McErr *err) {
    const PtValue *v = get_kind(f, d, key, PT_INT, PT_INT, err);
    if (!v) return -1;
    *out = v->i;
    return 0;
}

int pt_get_float(const PtFile *f, const PtValue *d, const char *key, double *out, McErr *err) {
    const PtValue *v = get_kind(f, d, key, PT_FLOAT, PT_INT, err);
    if (!v) return -1;
    *out = v->kind == PT_INT ? (double)v->i : v->f;
    return 0;
}

const char *pt_get_str(const PtFile *f, const PtValue *d, const char *key, McErr *err) {
    const PtValue *v = get_kind(f, d, key, PT_STR, PT_STR, err);
    return v ? v->s : NULL;
}

const PtTensor *pt_get_tensor(const PtFile *f, const PtValue *d, const char *key, McErr *err) {
    const PtValue *v = get_kind(f, d, key, PT_TENSOR, PT_TENSOR, err);
    return v ? v->t : NULL;
}

int pt_get_str_list(const PtFile *f, const PtValue *d, const char *key, const char ***out,
                    int64_t *n, McErr *err) {
    const PtValue *v = get_kind(f, d, key, PT_LIST, PT_TUPLE, err);
    if (!v) return -1;
    for (int64_t i = 0; i < v->n; i++)
        if (v->items[i]->kind != PT_STR)
            return mc_err(err, "%s: '%s'[%lld] is a %s, expected a str", f->path, key,
                          (long long)i, pt_kind_name(v->items[i]->kind));
    const char **s = malloc((size_t)(v->n ? v->n : 1) * sizeof *s);
    if (!s) return mc_err(err, "%s: out of memory", f->path);
    for (int64_t i = 0; i < v->n; i++) s[i] = v->items[i]->s;
    *out = s, *n = v->n;
    return 0;
}

// ---- tensor data ----

// The tensor's elements in row-major order as raw bytes: a pointer into the
// storage when contiguous, else a gathered copy in *tmp (caller frees).
static const void *tensor_bytes(const PtFile *f, const PtTensor *t, void **tmp, McErr *err) {
    ZipEntry *e = &f->ent[t->entry];
    if (check_crc(f, e, err)) return NULL;
    size_t isz = (size_t)st_dtype_size(t->dtype);
    *tmp = NULL;
    if (t->contiguous) return t->storage + (size_t)t->offset * isz;

    // Walk the index odometer, moving the storage position by the strides.
    size_t bytes;
    unsigned char *buf = mc_mul_ok((size_t)(t->numel ? t->numel : 1), isz, &bytes)
                             ? malloc(bytes) : NULL;
    if (!buf) {
        mc_err(err, "%s: out of memory copying a strided tensor", f->path);
        return NULL;
    }
    int64_t idx[ST_MAXDIM] = {0}, pos = t->offset;
    for (int64_t e2 = 0; e2 < t->numel; e2++) {
        memcpy(buf + (size_t)e2 * isz, t->storage + (size_t)pos * isz, isz);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) { pos += t->stride[d]; break; }
            pos -= (idx[d] - 1) * t->stride[d];
            idx[d] = 0;
        }
    }
    *tmp = buf;
    return buf;
}

int pt_tensor_to_f32(const PtFile *f, const PtTensor *t, float *dst, int64_t n, McErr *err) {
    if (n != t->numel)
        return mc_err(err, "%s: tensor (storage '%s') has %lld elements, caller expected %lld",
                      f->path, t->key, (long long)t->numel, (long long)n);
    void *tmp;
    const void *src = tensor_bytes(f, t, &tmp, err);
    if (!src) return -1;
    st_raw_to_f32(t->dtype, src, dst, n);
    free(tmp);
    return 0;
}

int pt_tensor_to_i64(const PtFile *f, const PtTensor *t, int64_t *dst, int64_t n, McErr *err) {
    if (st_dtype_is_float(t->dtype))
        return mc_err(err, "%s: tensor (storage '%s') is %s, expected an integer dtype",
                      f->path, t->key, st_dtype_name(t->dtype));
    if (n != t->numel)
        return mc_err(err, "%s: tensor (storage '%s') has %lld elements, caller expected %lld",
                      f->path, t->key, (long long)t->numel, (long long)n);
    void *tmp;
    const void *src = tensor_bytes(f, t, &tmp, err);
    if (!src) return -1;
    st_raw_to_i64(t->dtype, src, dst, n);
    free(tmp);
    return 0;
}
