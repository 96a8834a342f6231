// safetensors.c - safetensors reader (mmap, fully validated) and atomic
// writer.  Format: github.com/huggingface/safetensors, "Format" section of
// its README (u64 LE header length, JSON header, data region).
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

struct StFile {
    char       *path;
    const unsigned char *map;   // whole file
    size_t      size;
    StTensor   *tensors;        // [n] in header order
    int         n;
    const StTensor **by_name;   // [n] sorted by name (for st_find)
    char      **meta_key, **meta_val;
    int         n_meta;
    Arena       strings;        // names and metadata
    int         borrowed;       // 1: map is the caller's memory (st_open_mem), not mmap'd
};

// ---- dtypes ----

static const struct { const char *name; int size; } dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},  [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

const char *st_dtype_name(StDtype d) {
    return (unsigned)d < (unsigned)N_DTYPES ? dtypes[d].name : "?";
}

int st_dtype_size(StDtype d) { return (unsigned)d < (unsigned)N_DTYPES ? dtypes[d].size : 0; }

int st_dtype_is_float(StDtype d) {
    return d == ST_F32 || d == ST_F16 || d == ST_BF16 || d == ST_F64;
}

// Little-endian loads from any address (memcpy keeps UBSan quiet about
// alignment; the host is little-endian, checked in st_open).
#define DEF_LOAD(name, T) \
    static inline T name(const void *p, int64_t i) { \
        T v; memcpy(&v, (const char *)p + (size_t)i * sizeof v, sizeof v); return v; }
DEF_LOAD(ld_u16, uint16_t)
DEF_LOAD(ld_f64, double)
DEF_LOAD(ld_i64, int64_t)
DEF_LOAD(ld_i32, int32_t)
DEF_LOAD(ld_i16, int16_t)
DEF_LOAD(ld_i8, int8_t)
DEF_LOAD(ld_u8, uint8_t)

void st_raw_to_f32(StDtype d, const void *src, float *dst, int64_t n) {
    switch (d) {
    case ST_F32: if (n > 0) memcpy(dst, src, (size_t)n * 4); break;
    case ST_F16: for (int64_t i = 0; i < n; i++) dst[i] = mc_f16_to_f32(ld_u16(src, i));
                 break;
    case ST_BF16: for (int64_t i = 0; i < n; i++) dst[i] = mc_bf16_to_f32(ld_u16(src, i));
                  break;
    case ST_F64: for (int64_t i = 0; i < n; i++) dst[i] = (float)ld_f64(src, i); break;
    case ST_I64: for (int64_t i = 0; i < n; i++) dst[i] = (float)ld_i64(src, i); break;
    case ST_I32: for (int64_t i = 0; i < n; i++) dst[i] = (float)ld_i32(src, i); break;
    case ST_I16: for (int64_t i = 0; i < n; i++) dst[i] = (float)ld_i16(src, i); break;
    case ST_I8: for (int64_t i = 0; i < n; i++) dst[i] = (float)ld_i8(src, i); break;
    case ST_U8: for (int64_t i = 0; i < n; i++) dst[i] = (float)ld_u8(src, i); break;
    case ST_BOOL: for (int64_t i = 0; i < n; i++) dst[i] = ld_u8(src, i) ? 1.0f : 0.0f;
                  break;
    }
}

void st_raw_to_i64(StDtype d, const void *src, int64_t *dst, int64_t n) {
    MC_CHECK(!st_dtype_is_float(d), "st_raw_to_i64: dtype %s is not an integer type",
             st_dtype_name(d));
    for (int64_t i = 0; i < n; i++) {
        switch (d) {
        case ST_I64: dst[i] = ld_i64(src, i); break;
        case ST_I32: dst[i] = ld_i32(src, i); break;
        case ST_I16: dst[i] = ld_i16(src, i); break;
        case ST_I8: dst[i] = ld_i8(src, i); break;
        case ST_U8: dst[i] = ld_u8(src, i); break;
        case ST_BOOL: dst[i] = ld_u8(src, i) != 0; break;
        default: break;
        }
    }
}

// ---- reading: header validation ----

static char *arena_strdup(Arena *a, const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(arena_alloc(a, n), s, n);
}

static int parse_dtype(const char *s, StDtype *d) {
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(s, dtypes[i].name)) { *d = (StDtype)i; return 0; }
    return -1;
}

// The "__metadata__" object: string keys to string values.
static int read_metadata(StFile *f, const JsonValue *m, McErr *err) {
    if (m->type != JSON_OBJECT)
        return mc_err(err, "%s: __metadata__ is a %s, expected an object of strings", f->path,
                      json_type_name(m->type));
    f->n_meta = (int)m->len;
    f->meta_key = arena_alloc(&f->strings, (m->len + 1) * sizeof(char *));
    f->meta_val = arena_alloc(&f->strings, (m->len + 1) * sizeof(char *));
    for (size_t i = 0; i < m->len; i++) {
        if (m->items[i].type != JSON_STRING)
            return mc_err(err, "%s: __metadata__ value of \"%.100s\" is a %s, expected a string",
                          f->path, m->keys[i].str, json_type_name(m->items[i].type));
        f->meta_key[i] = arena_strdup(&f->strings, m->keys[i].str);
        f->meta_val[i] = arena_strdup(&f->strings, m->items[i].str);
    }
    return 0;
}

// One tensor entry {"dtype", "shape", "data_offsets"}: fill t (data pointer
// set later) and its span [*begin, *end) in the data region.
static int read_entry(StFile *f, const char *name, const JsonValue *e, StTensor *t,
                      uint64_t data_len, uint64_t *begin, uint64_t *end, McErr *err) {
    const char *p = f->path;
    if (e->type != JSON_OBJECT)
        return mc_err(err, "%s: tensor \"%s\": entry is a %s, expected an object", p, name,
                      json_type_name(e->type));
    for (size_t i = 0; i < e->len; i++) {
        const char *k = e->keys[i].str;
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return mc_err(err, "%s: tensor \"%s\": unknown field \"%.60s\" (expected dtype, "
                          "shape, data_offsets)", p, name, k);
    }
    const JsonValue *dt = json_get(e, "dtype"), *sh = json_get(e, "shape"),
                    *off = json_get(e, "data_offsets");
    if (!dt || !sh || !off)
        return mc_err(err, "%s: tensor \"%s\": missing field \"%s\"", p, name,
                      !dt ? "dtype" : !sh ? "shape" : "data_offsets");

    // dtype
    if (dt->type != JSON_STRING || parse_dtype(dt->str, &t->dtype))
        return mc_err(err, "%s: tensor \"%s\": unknown dtype %s%.20s%s (expected F32, F16, "
                      "BF16, F64, I64, I32, I16, I8, U8 or BOOL)", p, name,
                      dt->type == JSON_STRING ? "\"" : "",
                      dt->type == JSON_STRING ? dt->str : json_type_name(dt->type),
                      dt->type == JSON_STRING ? "\"" : "");

    // shape: up to ST_MAXDIM non-negative integers, product overflow-checked
    if (sh->type != JSON_ARRAY || sh->len > ST_MAXDIM)
        return mc_err(err, "%s: tensor \"%s\": shape must be an array of at most %d integers",
                      p, name, ST_MAXDIM);
    t->ndim = (int)sh->len;
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d;
        if (json_int(&sh->items[i], &d) || d < 0)
            return mc_err(err, "%s: tensor \"%s\": shape[%d] is not a non-negative integer",
                          p, name, i);
        t->shape[i] = d;
        if (d && t->numel > INT64_MAX / d)
            return mc_err(err, "%s: tensor \"%s\": shape overflows (element count too large)",
                          p, name);
        t->numel *= d;
    }
    size_t nbytes;
    if (!mc_mul_ok((size_t)t->numel, (size_t)dtypes[t->dtype].size, &nbytes))
        return mc_err(err, "%s: tensor \"%s\": shape overflows (byte size too large)", p, name);
    t->nbytes = nbytes;

    // data_offsets: [begin, end] inside the data region, end - begin = bytes
    int64_t b, e2;
    if (off->type != JSON_ARRAY || off->len != 2 || json_int(&off->items[0], &b) ||
        json_int(&off->items[1], &e2) || b < 0 || e2 < b)
        return mc_err(err, "%s: tensor \"%s\": data_offsets must be [begin, end] with "
                      "0 <= begin <= end", p, name);
    if ((uint64_t)e2 > data_len)
        return mc_err(err, "%s: tensor \"%s\": data_offsets [%lld, %lld] out of bounds (data "
                      "region is %llu bytes)", p, name, (long long)b, (long long)e2,
                      (unsigned long long)data_len);
    if ((uint64_t)(e2 - b) != nbytes)
        return mc_err(err, "%s: tensor \"%s\": %s shape with %lld elements needs %zu bytes, "
                      "data_offsets span %lld", p, name, dtypes[t->dtype].name,
                      (long long)t->numel, nbytes, (long long)(e2 - b));
    *begin = (uint64_t)b, *end = (uint64_t)e2;
    return 0;
}

typedef struct { uint64_t begin, end; int idx; } Span;

static int span_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

// Spans sorted by start must tile [0, data_len) exactly: no overlap, no gap,
// nothing after the last one.
static int check_spans(StFile *f, Span *s, int n, uint64_t data_len, McErr *err) {
    qsort(s, (size_t)n, sizeof *s, span_cmp);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *name = f->tensors[s[i].idx].name;
        if (s[i].begin < at)
            return mc_err(err, "%s: tensor \"%s\" bytes [%llu, %llu) overlap tensor \"%s\" "
                          "(ends at %llu)", f->path, name, (unsigned long long)s[i].begin,
                          (unsigned long long)s[i].end, f->tensors[s[i - 1].idx].name,
                          (unsigned long long)at);
        if (s[i].begin > at)
            return mc_err(err, "%s: gap in the data region: bytes [%llu, %llu) before tensor "
                          "\"%s\" belong to no tensor", f->path, (unsigned long long)at,
                          (unsigned long long)s[i].begin, name);
        at = s[i].end;
    }
    if (at != data_len)
        return mc_err(err, "%s: data region is %llu bytes but the tensors cover %llu (trailing "
                      "bytes belong to no tensor)", f->path, (unsigned long long)data_len,
                      (unsigned long long)at);
    return 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

// Parse and validate the header; fill f->tensors and metadata.
static int read_header(StFile *f, McErr *err) {
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > ST_MAX_HEADER)
        return mc_err(err, "%s: header length %llu exceeds the %llu-byte limit (not a "
                      "safetensors file?)", f->path, (unsigned long long)hlen,
                      (unsigned long long)ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return mc_err(err, "%s: header length %llu is longer than the file (%zu bytes after "
                      "the length field); truncated file?", f->path, (unsigned long long)hlen,
                      f->size - 8);
    uint64_t data_len = f->size - 8 - hlen;
    const unsigned char *data = f->map + 8 + hlen;

    // JSON object, keys distinct
    McErr jerr;
    JsonOptions opt = {.reject_duplicates = 1};
    JsonDoc *doc = json_parse((const char *)f->map + 8, (size_t)hlen, &opt, &jerr);
    if (!doc) return mc_err(err, "%s: header JSON: %s", f->path, jerr.msg);
    const JsonValue *root = json_root(doc);
    if (root->type != JSON_OBJECT) {
        mc_err(err, "%s: header is a JSON %s, expected an object", f->path,
               json_type_name(root->type));
        json_free(doc);
        return -1;
    }

    // Tensors (every key but __metadata__) and their spans.
    int rc = 0;
    f->tensors = mc_calloc(root->len + 1, sizeof *f->tensors);
    Span *spans = mc_calloc(root->len + 1, sizeof *spans);
    for (size_t i = 0; i < root->len && !rc; i++) {
        const char *key = root->keys[i].str;
        if (!strcmp(key, "__metadata__")) {
            rc = read_metadata(f, &root->items[i], err);
            continue;
        }
        if (!*key || strlen(key) != root->keys[i].len) {
            rc = mc_err(err, "%s: tensor name at header byte %zu is empty or contains NUL",
                        f->path, root->keys[i].offset);
            break;
        }
        StTensor *t = &f->tensors[f->n];
        t->name = arena_strdup(&f->strings, key);
        rc = read_entry(f, key, &root->items[i], t, data_len, &spans[f->n].begin,
                        &spans[f->n].end, err);
        t->data = data + spans[f->n].begin;
        spans[f->n].idx = f->n;
        f->n++;
    }
    if (!rc) rc = check_spans(f, spans, f->n, data_len, err);
    mc_free(spans);

    // Name index for st_find.
    if (!rc) {
        f->by_name = mc_calloc((size_t)f->n + 1, sizeof *f->by_name);
        for (int i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
        qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, name_cmp);
    }
    json_free(doc);
    return rc;
}

// ---- reading: public API ----

StFile *st_open(const char *path, McErr *err) {
    const uint16_t one = 1;
    MC_CHECK(*(const char *)&one == 1, "safetensors: big-endian hosts are not supported");

    StFile *f = mc_calloc(1, sizeof *f);
    arena_init(&f->strings, 1 << 14);
    f->path = arena_strdup(&f->strings, path);

    // Map the whole file read-only.
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0) {
        mc_err(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        mc_err(err, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        mc_err(err, "%s: file is %zu bytes, too short for the 8-byte header length "
               "(truncated?)", path, f->size);
        close(fd);
        goto fail;
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        mc_err(err, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    f->map = m;
    if (read_header(f, err)) goto fail;
    return f;
fail:
    st_close(f);
    return NULL;
}

StFile *st_open_mem(const void *data, size_t size, const char *name, McErr *err) {
    StFile *f = mc_calloc(1, sizeof *f);
    arena_init(&f->strings, 1 << 14);
    f->path = arena_strdup(&f->strings, name);
    f->borrowed = 1;
    if (size < 8) {
        mc_err(err, "%s: file is %zu bytes, too short for the 8-byte header length "
               "(truncated?)", name, size);
        st_close(f);
        return NULL;
    }
    f->map = data;
    f->size = size;
    if (read_header(f, err)) {
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(StFile *f) {
    if (!f) return;
    if (f->map && !f->borrowed) munmap((void *)f->map, f->size);
    mc_free(f->tensors);
    mc_free((void *)f->by_name);
    arena_free(&f->strings);
    mc_free(f);
}

const char *st_path(const StFile *f) { return f->path; }
int st_count(const StFile *f) { return f->n; }

const StTensor *st_at(const StFile *f, int i) {
    return i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const StTensor *st_find(const StFile *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (!c) return f->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
    return NULL;
}

int st_meta_count(const StFile *f) { return f->n_meta; }

const char *st_meta_key(const StFile *f, int i) {
    return i >= 0 && i < f->n_meta ? f->meta_key[i] : NULL;
}

int st_to_f32(const StFile *f, const StTensor *t, float *dst, int64_t n, McErr *err) {
    if (n != t->numel)
        return mc_err(err, "%s: tensor \"%s\" has %lld elements, caller expected %lld",
                      f->path, t->name, (long long)t->numel, (long long)n);
    st_raw_to_f32(t->dtype, t->data, dst, n);
    return 0;
}

int st_to_i64(const StFile *f, const StTensor *t, int64_t *dst, int64_t n, McErr *err) {
    if (st_dtype_is_float(t->dtype))
        return mc_err(err, "%s: tensor \"%s\" is %s, expected an integer dtype", f->path,
                      t->name, st_dtype_name(t->dtype));
    if (n != t->numel)
        return mc_err(err, "%s: tensor \"%s\" has %lld elements, caller expected %lld",
                      f->path, t->name, (long long)t->numel, (long long)n);
    st_raw_to_i64(t->dtype, t->data, dst, n);
    return 0;
}

// ---- writer ----

typedef struct {
    char    *name;
    StDtype  dtype;
    int      ndim;
    int64_t  shape[ST_MAXDIM];
    void    *bytes;
    size_t   nbytes;
} WEntry;

struct StWriter {
    WEntry *e;
    int     n, cap;
    char  **meta_key, **meta_val;
    int     n_meta, cap_meta;
};

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(mc_malloc(n), s, n);
}

StWriter *st_writer_new(void) { return mc_calloc(1, sizeof(StWriter)); }

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) mc_free(w->e[i].name), mc_free(w->e[i].bytes);
    for (int i = 0; i < w->n_meta; i++) mc_free(w->meta_key[i]), mc_free(w->meta_val[i]);
    free(w->e);
    free(w->meta_key);
    free(w->meta_val);
    mc_free(w);
}

static void *grow(void *p, int *cap, size_t elem) {
    int nc = *cap ? *cap * 2 : 16;
    p = realloc(p, (size_t)nc * elem);
    MC_CHECK(p != NULL, "st_writer: out of memory");
    *cap = nc;
    return p;
}

// Append an entry of n elements; returns its byte buffer to fill.
static void *add_entry(StWriter *w, const char *name, StDtype d, int ndim, const int64_t *shape) {
    MC_CHECK(name && *name && ndim >= 0 && ndim <= ST_MAXDIM, "st_writer: bad name or %d dims",
             ndim);
    if (w->n == w->cap) w->e = grow(w->e, &w->cap, sizeof *w->e);
    WEntry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = d, e->ndim = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        MC_CHECK(shape[i] >= 0 && mc_mul_ok(n, (size_t)shape[i], &n),
                 "st_writer: tensor %s: bad shape", name);
        e->shape[i] = shape[i];
    }
    MC_CHECK(mc_mul_ok(n, (size_t)dtypes[d].size, &e->nbytes), "st_writer: %s too large", name);
    e->bytes = mc_malloc(e->nbytes);
    return e->bytes;
}

void st_writer_add_f32(StWriter *w, const char *name, int ndim, const int64_t *shape,
                       const float *data) {
    void *b = add_entry(w, name, ST_F32, ndim, shape);
    if (w->e[w->n - 1].nbytes) memcpy(b, data, w->e[w->n - 1].nbytes);
}

void st_writer_add_f16(StWriter *w, const char *name, int ndim, const int64_t *shape,
                       const float *data) {
    uint16_t *b = add_entry(w, name, ST_F16, ndim, shape);
    size_t n = w->e[w->n - 1].nbytes / 2;
    for (size_t i = 0; i < n; i++) b[i] = mc_f32_to_f16(data[i]);
}

void st_writer_add_i64(StWriter *w, const char *name, int ndim, const int64_t *shape,
                       const int64_t *data) {
    void *b = add_entry(w, name, ST_I64, ndim, shape);
    if (w->e[w->n - 1].nbytes) memcpy(b, data, w->e[w->n - 1].nbytes);
}

void st_writer_meta(StWriter *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_key[i], key)) {
            mc_free(w->meta_val[i]);
            w->meta_val[i] = xstrdup(value);
            return;
        }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta;
        w->meta_key = grow(w->meta_key, &cap, sizeof(char *));
        w->meta_val = grow(w->meta_val, &w->cap_meta, sizeof(char *));
    }
    w->meta_key[w->n_meta] = xstrdup(key);
    w->meta_val[w->n_meta++] = xstrdup(value);
}

// A growing string for the header.
typedef struct { char *s; size_t len, cap; } Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->s = realloc(b->s, cap);
        MC_CHECK(b->s != NULL, "st_writer: out of memory");
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_quote(Buf *b, const char *s) {
    size_t n = json_quote(NULL, 0, s);
    char *q = mc_malloc(n + 1);
    json_quote(q, n + 1, s);
    buf_put(b, q, n);
    mc_free(q);
}

// JSON header padded with spaces so the data region starts 8-byte aligned.
static void build_header(const StWriter *w, Buf *b) {
    char num[64];
    buf_str(b, "{");
    if (w->n_meta) {
        buf_str(b, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) buf_str(b, ",");
            buf_quote(b, w->meta_key[i]);
            buf_str(b, ":");
            buf_quote(b, w->meta_val[i]);
        }
        buf_str(b, "}");
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const WEntry *e = &w->e[i];
        if (i || w->n_meta) buf_str(b, ",");
        buf_quote(b, e->name);
        buf_str(b, ":{\"dtype\":\"");
        buf_str(b, dtypes[e->dtype].name);
        buf_str(b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            buf_str(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + e->nbytes);
        buf_str(b, num);
        off += e->nbytes;
    }
    buf_str(b, "}");
    while (b->len % 8) buf_str(b, " ");
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k, n -= (size_t)k;
    }
    return 0;
}

// fsync the folder holding path so the rename itself is durable.
static int sync_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int st_writer_save(StWriter *w, const char *path, McErr *err) {
    // Names must be distinct and not the metadata key.
    for (int i = 0; i < w->n; i++) {
        if (!strcmp(w->e[i].name, "__metadata__"))
            return mc_err(err, "%s: tensor name __metadata__ is reserved", path);
        for (int j = 0; j < i; j++)
            if (!strcmp(w->e[i].name, w->e[j].name))
                return mc_err(err, "%s: tensor \"%s\" added twice", path, w->e[i].name);
    }

    Buf h = {0};
    build_header(w, &h);
    uint64_t hlen = h.len;

    // Temp file in the same folder, written, fsynced, renamed over path.
    size_t plen = strlen(path);
    char *tmp = mc_malloc(plen + 16);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp), rc = 0;
    if (fd < 0) {
        rc = mc_err(err, "%s: cannot create a temporary file beside it: %s", path,
                    strerror(errno));
        goto out;
    }
    int ok = fchmod(fd, 0644) == 0 && write_all(fd, &hlen, 8) == 0 &&
             write_all(fd, h.s, h.len) == 0;
    for (int i = 0; i < w->n && ok; i++) ok = write_all(fd, w->e[i].bytes, w->e[i].nbytes) == 0;
    if (ok) ok = fsync(fd) == 0;
    if (close(fd) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        rc = mc_err(err, "%s: writing failed (%s); the previous file, if any, is unchanged",
                    path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (sync_dir(path) != 0)
        rc = mc_err(err, "%s: written, but syncing its folder failed: %s", path, strerror(errno));
out:
    mc_free(tmp);
    free(h.s);
    return rc;
}
