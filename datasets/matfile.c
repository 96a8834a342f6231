// matfile.c - MATLAB level-5 MAT reader and writer (see matfile.h for the
// format and the rules enforced).
//
// Reading keeps the whole file in memory (label files are kilobytes), walks
// the top-level elements, inflates miCOMPRESSED ones into owned buffers and
// records every variable with pointers to its real part.  Conversion to
// numbers happens on request, so a file with a cell array beside the
// variables we need still opens.
#include "matfile.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAT_HEADER 128
#define MAT_TEXT   116

struct MatFile {
    char      *path;          // for messages
    uint8_t   *bytes;         // the whole file
    size_t     len;
    int        big;           // 1: "MI" (big-endian) file
    char       text[MAT_TEXT + 1];
    MatVar    *vars;
    int        n_vars, cap_vars;
    uint8_t  **bufs;          // [cap_vars] inflated buffer of each variable, or NULL
    MatLimits  lim;
};

// ---- byte order ----

static uint32_t rd32(const uint8_t *p, int big) {
    if (big) return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint16_t rd16(const uint8_t *p, int big) {
    return big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

// Copy an element of `size` bytes from p into out in host (little-endian
// assumed) order, swapping when the file is big-endian.
static void rd_elem(void *out, const uint8_t *p, int size, int big) {
    uint8_t *o = out;
    for (int i = 0; i < size; i++) o[i] = big ? p[size - 1 - i] : p[i];
}

static int host_is_little(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

// ---- names ----

const char *mat_class_name(int c) {
    static const char *names[] = {
        "?", "mxCELL", "mxSTRUCT", "mxOBJECT", "mxCHAR", "mxSPARSE", "mxDOUBLE",
        "mxSINGLE", "mxINT8", "mxUINT8", "mxINT16", "mxUINT16", "mxINT32",
        "mxUINT32", "mxINT64", "mxUINT64"
    };
    return c >= 1 && c <= 15 ? names[c] : "unknown class";
}

const char *mat_type_name(int t) {
    switch (t) {
    case MAT_INT8: return "miINT8";     case MAT_UINT8: return "miUINT8";
    case MAT_INT16: return "miINT16";   case MAT_UINT16: return "miUINT16";
    case MAT_INT32: return "miINT32";   case MAT_UINT32: return "miUINT32";
    case MAT_SINGLE: return "miSINGLE"; case MAT_DOUBLE: return "miDOUBLE";
    case MAT_INT64: return "miINT64";   case MAT_UINT64: return "miUINT64";
    case MAT_MATRIX: return "miMATRIX"; case MAT_COMPRESSED: return "miCOMPRESSED";
    case MAT_UTF8: return "miUTF8";     case MAT_UTF16: return "miUTF16";
    case MAT_UTF32: return "miUTF32";
    default: return "unknown type";
    }
}

// Bytes per value of a numeric storage type, 0 for anything else.
static int type_size(int t) {
    switch (t) {
    case MAT_INT8: case MAT_UINT8: return 1;
    case MAT_INT16: case MAT_UINT16: return 2;
    case MAT_INT32: case MAT_UINT32: case MAT_SINGLE: return 4;
    case MAT_DOUBLE: case MAT_INT64: case MAT_UINT64: return 8;
    default: return 0;
    }
}

static int class_is_numeric(int c) { return c >= MX_DOUBLE && c <= MX_UINT64; }

// ---- element tags ----

// One data element inside buf[0..avail): its type, byte count, data pointer
// and the bytes it occupies including padding to 8 (pad = 1) or not.
typedef struct {
    uint32_t       type, nbytes;
    const uint8_t *data;
    size_t         used;
} Elem;

// Read the tag at buf (avail bytes left), small form included.  `where` is
// the offset used in messages.  Returns 0 or -1 with err set.
static int read_elem(const MatFile *m, const uint8_t *buf, size_t avail, size_t where,
                     int pad, const char *ctx, Elem *e, McErr *err) {
    if (avail < 8)
        return mc_err(err, "%s: %s: truncated element tag at offset %zu (%zu bytes left, "
                      "need 8)", m->path, ctx, where, avail);
    uint32_t w0 = rd32(buf, m->big);

    // Small element: count in the upper 16 bits, type in the lower, data
    // in the next four bytes.
    if (w0 >> 16) {
        e->type = w0 & 0xffff;
        e->nbytes = w0 >> 16;
        if (e->nbytes > 4)
            return mc_err(err, "%s: %s: small element at offset %zu claims %u bytes (max 4)",
                          m->path, ctx, where, e->nbytes);
        e->data = buf + 4;
        e->used = 8;
        return 0;
    }
    e->type = w0;
    e->nbytes = rd32(buf + 4, m->big);
    if (e->nbytes > avail - 8)
        return mc_err(err, "%s: %s: element at offset %zu (%s) claims %u bytes but only %zu "
                      "remain", m->path, ctx, where, mat_type_name((int)e->type), e->nbytes,
                      avail - 8);
    e->data = buf + 8;
    e->used = 8 + (size_t)e->nbytes;
    if (pad) {
        size_t padded = (e->used + 7) & ~(size_t)7;
        // The last element of a buffer may end without its padding.
        e->used = padded <= avail ? padded : avail;
    }
    return 0;
}

// ---- miMATRIX ----

// Parse one miMATRIX body (body[0..n)) into v.  base is the offset of body
// in the file (or in the inflated stream, described by ctx).
static int parse_matrix(MatFile *m, const uint8_t *body, size_t n, size_t base,
                        const char *ctx, MatVar *v, McErr *err) {
    Elem e;
    size_t at = 0;

    // Array flags: miUINT32 x 2; class in the low byte of word 0.
    if (read_elem(m, body, n, base, 1, ctx, &e, err)) return -1;
    if (e.type != MAT_UINT32 || e.nbytes != 8)
        return mc_err(err, "%s: %s: array flags at offset %zu: expected miUINT32 x 2, found "
                      "%s with %u bytes", m->path, ctx, base, mat_type_name((int)e.type),
                      e.nbytes);
    uint32_t flags = rd32(e.data, m->big);
    v->mclass = (int)(flags & 0xff);
    v->is_complex = (flags & 0x0800) != 0;
    v->is_global = (flags & 0x0400) != 0;
    v->is_logical = (flags & 0x0200) != 0;
    if (v->mclass < MX_CELL || v->mclass > MX_UINT64)
        return mc_err(err, "%s: %s: array flags at offset %zu: unknown class %d", m->path,
                      ctx, base, v->mclass);
    at += e.used;

    // Dimensions: miINT32 x ndim, ndim >= 2, each >= 0.
    if (read_elem(m, body + at, n - at, base + at, 1, ctx, &e, err)) return -1;
    if (e.type != MAT_INT32 || e.nbytes % 4 || e.nbytes < 8 || e.nbytes / 4 > MAT_MAXDIM)
        return mc_err(err, "%s: %s: dimensions at offset %zu: expected miINT32 x 2..%d, "
                      "found %s with %u bytes", m->path, ctx, base + at, MAT_MAXDIM,
                      mat_type_name((int)e.type), e.nbytes);
    v->ndim = (int)(e.nbytes / 4);
    v->numel = 1;
    for (int d = 0; d < v->ndim; d++) {
        int32_t dim = (int32_t)rd32(e.data + 4 * d, m->big);
        if (dim < 0)
            return mc_err(err, "%s: %s: dimension %d at offset %zu is negative (%d)",
                          m->path, ctx, d, base + at, dim);
        v->dims[d] = dim;
        if (dim && v->numel > INT64_MAX / dim)
            return mc_err(err, "%s: %s: dimensions at offset %zu overflow", m->path, ctx,
                          base + at);
        v->numel *= dim;
    }
    at += e.used;

    // Name: miINT8 (small form when <= 4 characters).
    if (read_elem(m, body + at, n - at, base + at, 1, ctx, &e, err)) return -1;
    if (e.type != MAT_INT8)
        return mc_err(err, "%s: %s: array name at offset %zu: expected miINT8, found %s",
                      m->path, ctx, base + at, mat_type_name((int)e.type));
    v->name = mc_malloc(e.nbytes + 1);
    memcpy(v->name, e.data, e.nbytes);
    v->name[e.nbytes] = 0;
    if (strlen(v->name) != e.nbytes)
        return mc_err(err, "%s: %s: array name at offset %zu contains a NUL byte", m->path,
                      ctx, base + at);
    at += e.used;

    // Non-numeric classes: listed, contents not parsed.
    if (!class_is_numeric(v->mclass)) return 0;

    // Real part: any numeric storage type, numel values.
    if (read_elem(m, body + at, n - at, base + at, 1, ctx, &e, err)) return -1;
    int size = type_size((int)e.type);
    if (!size)
        return mc_err(err, "%s: variable '%s' (%s): real part at offset %zu has storage "
                      "type %u (%s), expected a numeric type", m->path, v->name, ctx,
                      base + at, e.type, mat_type_name((int)e.type));
    if ((uint64_t)e.nbytes != (uint64_t)v->numel * (uint64_t)size)
        return mc_err(err, "%s: variable '%s' (%s): dims give %lld elements but the real "
                      "part at offset %zu holds %u bytes of %s (%u elements)", m->path,
                      v->name, ctx, (long long)v->numel, base + at, e.nbytes,
                      mat_type_name((int)e.type), e.nbytes / (uint32_t)size);
    v->stype = (int)e.type;
    v->data = e.data;
    v->nbytes = e.nbytes;
    return 0;
}

// ---- miCOMPRESSED ----

// Inflate src[0..n) (one zlib stream) into a new buffer, refusing output
// beyond the caps and anything but a stream that ends exactly at src + n.
static int inflate_elem(MatFile *m, const uint8_t *src, size_t n, size_t where,
                        uint8_t **out, size_t *out_len, McErr *err) {
    size_t cap = m->lim.max_inflate;
    double rcap = m->lim.max_ratio * (double)n;
    if (rcap < (double)cap) cap = (size_t)rcap;
    size_t alloc = n * 4 + 64 < cap ? n * 4 + 64 : cap;
    if (alloc < 64) alloc = 64;
    uint8_t *buf = malloc(alloc);
    if (!buf) return mc_err(err, "%s: out of memory inflating the element at offset %zu",
                            m->path, where);

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) {
        free(buf);
        return mc_err(err, "%s: zlib init failed", m->path);
    }
    zs.next_in = (Bytef *)src;
    size_t in_left = n, have = 0;
    int rc = Z_OK;

    // Feed input in chunks (avail_in is a uInt) and grow the output buffer
    // geometrically until the stream ends or a cap is hit.
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            uInt chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            zs.avail_in = chunk;
            in_left -= chunk;
        }
        if (have == alloc) {
            if (alloc >= cap) {
                rc = Z_MEM_ERROR;
                break;
            }
            size_t grow = alloc * 2 < cap ? alloc * 2 : cap;
            uint8_t *nb = realloc(buf, grow);
            if (!nb) { rc = Z_MEM_ERROR; break; }
            buf = nb;
            alloc = grow;
        }
        zs.next_out = buf + have;
        zs.avail_out = (uInt)(alloc - have > (1u << 30) ? (1u << 30) : alloc - have);
        uInt before = zs.avail_out;
        rc = inflate(&zs, Z_NO_FLUSH);
        have += before - zs.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0) break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    }
    size_t trailing = zs.avail_in + in_left;
    const char *zmsg = zs.msg ? zs.msg : "corrupt data";
    char zbuf[128];
    snprintf(zbuf, sizeof zbuf, "%s", zmsg);
    inflateEnd(&zs);

    // Classify the outcome.
    int fail = 0;
    if (rc == Z_MEM_ERROR && have >= cap) {
        fail = mc_err(err, "%s: compressed element at offset %zu inflates beyond the cap "
                      "(%zu bytes from %zu compressed; limits %zu bytes and %.0fx): refusing "
                      "a possible zlib bomb", m->path, where, have, n,
                      m->lim.max_inflate, m->lim.max_ratio);
    } else if (rc == Z_MEM_ERROR) {
        fail = mc_err(err, "%s: out of memory inflating the element at offset %zu", m->path,
                      where);
    } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_STREAM_ERROR) {
        fail = mc_err(err, "%s: compressed element at offset %zu: zlib error (%s) after %zu "
                      "inflated bytes", m->path, where, zbuf, have);
    } else if (rc != Z_STREAM_END) {
        fail = mc_err(err, "%s: compressed element at offset %zu is truncated: the zlib "
                      "stream has no end within its %zu bytes", m->path, where, n);
    } else if (trailing) {
        fail = mc_err(err, "%s: compressed element at offset %zu: the zlib stream ends %zu "
                      "bytes before the element does", m->path, where, trailing);
    }
    if (fail) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = have;
    return 0;
}

// ---- file ----

static MatVar *new_var(MatFile *m) {
    if (m->n_vars == m->cap_vars) {
        m->cap_vars = m->cap_vars ? 2 * m->cap_vars : 8;
        MatVar *nv = mc_malloc((size_t)m->cap_vars * sizeof *nv);
        uint8_t **nb = mc_calloc((size_t)m->cap_vars, sizeof *nb);
        if (m->n_vars) {
            memcpy(nv, m->vars, (size_t)m->n_vars * sizeof *nv);
            memcpy(nb, m->bufs, (size_t)m->n_vars * sizeof *nb);
        }
        mc_free(m->vars);
        mc_free(m->bufs);
        m->vars = nv;
        m->bufs = nb;
    }
    MatVar *v = &m->vars[m->n_vars++];
    memset(v, 0, sizeof *v);
    return v;
}

// Check the 128-byte header: level-5 text, version, endian indicator.
static int parse_header(MatFile *m, McErr *err) {
    if (m->len >= 10 && !memcmp(m->bytes, "MATLAB 7.3", 10))
        return mc_err(err, "%s: MATLAB v7.3 MAT file (HDF5 container): not supported; "
                      "re-save it in MATLAB with save(..., '-v7') or with scipy.io.savemat",
                      m->path);
    if (m->len >= 8 && !memcmp(m->bytes, "\x89HDF\r\n\x1a\n", 8))
        return mc_err(err, "%s: an HDF5 file, not a level-5 MAT file (v7.3 MAT files are "
                      "not supported)", m->path);
    if (m->len < MAT_HEADER)
        return mc_err(err, "%s: %zu bytes, shorter than the 128-byte MAT header", m->path,
                      m->len);
    if (memcmp(m->bytes, "MATLAB 5.0", 10))
        return mc_err(err, "%s: not a level-5 MAT file: header text starts with '%.10s', "
                      "expected 'MATLAB 5.0'", m->path, (const char *)m->bytes);

    // Header text without trailing spaces/NULs (for information only).
    memcpy(m->text, m->bytes, MAT_TEXT);
    m->text[MAT_TEXT] = 0;
    for (int i = MAT_TEXT - 1; i >= 0 && (m->text[i] == ' ' || !m->text[i]); i--)
        m->text[i] = 0;

    const uint8_t *ind = m->bytes + 126;
    if (ind[0] == 'I' && ind[1] == 'M') m->big = 0;
    else if (ind[0] == 'M' && ind[1] == 'I') m->big = 1;
    else
        return mc_err(err, "%s: endian indicator at offset 126 is 0x%02x%02x, expected 'IM' "
                      "or 'MI'", m->path, ind[0], ind[1]);
    uint16_t version = rd16(m->bytes + 124, m->big);
    if (version != 0x0100)
        return mc_err(err, "%s: version at offset 124 is 0x%04x, expected 0x0100", m->path,
                      version);
    return 0;
}

// Walk the top-level elements after the header.
static int parse_elements(MatFile *m, McErr *err) {
    size_t off = MAT_HEADER;
    while (off < m->len) {
        Elem e;
        if (read_elem(m, m->bytes + off, m->len - off, off, 0, "top level", &e, err))
            return -1;
        if (e.type == MAT_COMPRESSED) {
            // Inflate, then the stream must hold exactly one miMATRIX tag + body.
            MatVar *v = new_var(m);
            v->offset = off;
            v->compressed = 1;
            uint8_t *in = NULL;
            size_t in_len = 0;
            if (inflate_elem(m, e.data, e.nbytes, off, &in, &in_len, err)) return -1;
            m->bufs[m->n_vars - 1] = in;
            v->inflated = in_len;
            char ctx[96];
            snprintf(ctx, sizeof ctx, "inside the compressed element at file offset %zu",
                     off);
            if (in_len < 8)
                return mc_err(err, "%s: %s: inflated to %zu bytes, less than one tag",
                              m->path, ctx, in_len);
            uint32_t in_type = rd32(in, m->big), in_bytes = rd32(in + 4, m->big);
            if (in_type != MAT_MATRIX)
                return mc_err(err, "%s: %s: expected miMATRIX, found %s (%u)", m->path, ctx,
                              mat_type_name((int)in_type), in_type);
            if ((size_t)in_bytes + 8 != in_len)
                return mc_err(err, "%s: %s: inner miMATRIX claims %u + 8 bytes but the "
                              "stream inflated to %zu", m->path, ctx, in_bytes, in_len);
            Elem inner;
            if (read_elem(m, in, in_len, 0, 0, ctx, &inner, err)) return -1;
            if (parse_matrix(m, inner.data, inner.nbytes, 8, ctx, v, err)) return -1;
            // NOTE: top-level compressed elements are not padded.
            off += 8 + (size_t)e.nbytes;
        } else if (e.type == MAT_MATRIX) {
            MatVar *v = new_var(m);
            v->offset = off;
            if (parse_matrix(m, e.data, e.nbytes, off + 8, "uncompressed element", v, err))
                return -1;
            size_t next = off + 8 + (size_t)e.nbytes;
            next = (next + 7) & ~(size_t)7;
            off = next < m->len ? next : m->len;
        } else {
            return mc_err(err, "%s: top-level element at offset %zu has type %u (%s), "
                          "expected miMATRIX or miCOMPRESSED", m->path, off, e.type,
                          mat_type_name((int)e.type));
        }
    }
    return 0;
}

MatFile *mat_open_mem(const void *bytes, size_t len, const char *name,
                      const MatLimits *lim, McErr *err) {
    if (len > MAT_MAX_FILE) {
        mc_err(err, "%s: %zu bytes, larger than the %zu-byte limit for MAT files", name, len,
               MAT_MAX_FILE);
        return NULL;
    }
    MatFile *m = mc_calloc(1, sizeof *m);
    m->path = mc_malloc(strlen(name) + 1);
    strcpy(m->path, name);
    m->bytes = mc_malloc(len ? len : 1);
    memcpy(m->bytes, bytes, len);
    m->len = len;
    m->lim.max_inflate = lim && lim->max_inflate ? lim->max_inflate : MAT_DEFAULT_MAX_INFLATE;
    m->lim.max_ratio = lim && lim->max_ratio > 0 ? lim->max_ratio : MAT_DEFAULT_MAX_RATIO;
    if (parse_header(m, err) || parse_elements(m, err)) {
        mat_close(m);
        return NULL;
    }
    return m;
}

MatFile *mat_open(const char *path, McErr *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        mc_err(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;

    // Read the whole file, refusing anything over the size limit.
    for (;;) {
        if (len == cap) {
            if (cap > MAT_MAX_FILE) break;
            cap = cap ? 2 * cap : 1 << 16;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad || len > MAT_MAX_FILE) {
        free(buf);
        mc_err(err, "%s: %s", path, bad ? "read error" : "file larger than 1 GiB");
        return NULL;
    }
    MatFile *m = mat_open_mem(buf, len, path, NULL, err);
    free(buf);
    return m;
}

void mat_close(MatFile *m) {
    if (!m) return;
    for (int i = 0; i < m->n_vars; i++) mc_free(m->vars[i].name);
    mc_free(m->vars);
    for (int i = 0; i < m->n_vars; i++) free(m->bufs[i]);
    mc_free(m->bufs);
    mc_free(m->bytes);
    mc_free(m->path);
    mc_free(m);
}

int mat_count(const MatFile *m) { return m->n_vars; }
const MatVar *mat_at(const MatFile *m, int i) {
    return i >= 0 && i < m->n_vars ? &m->vars[i] : NULL;
}
int mat_big_endian(const MatFile *m) { return m->big; }
const char *mat_header_text(const MatFile *m) { return m->text; }

const MatVar *mat_find(const MatFile *m, const char *name) {
    for (int i = 0; i < m->n_vars; i++)
        if (m->vars[i].name && !strcmp(m->vars[i].name, name)) return &m->vars[i];
    return NULL;
}

// ---- conversion ----

// Value i of the real part as double (exact for every storage type except
// 64-bit integers beyond 2^53, which are range-checked by the caller).
static double stored_value(const MatFile *m, const MatVar *v, int64_t i, int64_t *ival,
                           int *is_int) {
    const uint8_t *p = v->data + (size_t)i * (size_t)type_size(v->stype);
    *is_int = 1;
    switch (v->stype) {
    case MAT_INT8:   { int8_t x;   rd_elem(&x, p, 1, m->big); *ival = x; return x; }
    case MAT_UINT8:  { uint8_t x;  rd_elem(&x, p, 1, m->big); *ival = x; return x; }
    case MAT_INT16:  { int16_t x;  rd_elem(&x, p, 2, m->big); *ival = x; return x; }
    case MAT_UINT16: { uint16_t x; rd_elem(&x, p, 2, m->big); *ival = x; return x; }
    case MAT_INT32:  { int32_t x;  rd_elem(&x, p, 4, m->big); *ival = x; return x; }
    case MAT_UINT32: { uint32_t x; rd_elem(&x, p, 4, m->big); *ival = x; return x; }
    case MAT_INT64:  { int64_t x;  rd_elem(&x, p, 8, m->big); *ival = x; return (double)x; }
    case MAT_UINT64: {
        uint64_t x;
        rd_elem(&x, p, 8, m->big);
        if (x > (uint64_t)INT64_MAX) { *is_int = 0; return (double)x; }
        *ival = (int64_t)x;
        return (double)x;
    }
    case MAT_SINGLE: { float x;  rd_elem(&x, p, 4, m->big); *is_int = 0; return x; }
    default:         { double x; rd_elem(&x, p, 8, m->big); *is_int = 0; return x; }
    }
}

// Range of an integer class, as doubles (for validation).
static void class_range(int c, double *lo, double *hi) {
    switch (c) {
    case MX_INT8:   *lo = -128.0; *hi = 127.0; break;
    case MX_UINT8:  *lo = 0.0; *hi = 255.0; break;
    case MX_INT16:  *lo = -32768.0; *hi = 32767.0; break;
    case MX_UINT16: *lo = 0.0; *hi = 65535.0; break;
    case MX_INT32:  *lo = -2147483648.0; *hi = 2147483647.0; break;
    case MX_UINT32: *lo = 0.0; *hi = 4294967295.0; break;
    case MX_INT64:  *lo = -9223372036854775808.0; *hi = 9223372036854775807.0; break;
    default:        *lo = 0.0; *hi = 18446744073709551615.0; break;
    }
}

// Look up a numeric variable; on failure err names what was found.
static const MatVar *numeric_var(const MatFile *m, const char *name, McErr *err) {
    const MatVar *v = mat_find(m, name);
    if (!v) {
        mc_err(err, "%s: no variable named '%s' (%d variables in the file)", m->path, name,
               m->n_vars);
        return NULL;
    }
    if (!class_is_numeric(v->mclass)) {
        mc_err(err, "%s: variable '%s' at offset %zu is %s, expected a numeric array",
               m->path, name, v->offset, mat_class_name(v->mclass));
        return NULL;
    }
    if (v->is_complex) {
        mc_err(err, "%s: variable '%s' at offset %zu is complex, expected real values",
               m->path, name, v->offset);
        return NULL;
    }
    return v;
}

// Convert every value to the declared class: double, single (rounded to
// float), or an integer class (must be integral and in the class range).
static int convert(const MatFile *m, const MatVar *v, double *dv, int64_t *iv, McErr *err) {
    for (int64_t i = 0; i < v->numel; i++) {
        int64_t ival = 0;
        int is_int;
        double x = stored_value(m, v, i, &ival, &is_int);
        if (v->mclass == MX_SINGLE) {
            x = (double)(float)x;
        } else if (v->mclass != MX_DOUBLE) {
            double lo, hi;
            class_range(v->mclass, &lo, &hi);
            if (!(x == floor(x)) || x < lo || x > hi)
                return mc_err(err, "%s: variable '%s' at offset %zu: element %lld = %.17g "
                              "is not a valid %s value", m->path, v->name, v->offset,
                              (long long)i, x, mat_class_name(v->mclass));
        }
        if (dv) dv[i] = x;
        if (iv) {
            if (is_int && v->mclass != MX_SINGLE) {
                iv[i] = ival;
            } else if (x == floor(x) && x >= -9223372036854775808.0 &&
                       x < 9223372036854775808.0) {
                iv[i] = (int64_t)x;
            } else {
                return mc_err(err, "%s: variable '%s' at offset %zu: element %lld = %.17g "
                              "is not an integer", m->path, v->name, v->offset,
                              (long long)i, x);
            }
        }
    }
    return 0;
}

int mat_get_f64(const MatFile *m, const char *name, double **out, int64_t *numel,
                McErr *err) {
    const MatVar *v = numeric_var(m, name, err);
    if (!v) return -1;
    double *dv = mc_malloc((size_t)(v->numel ? v->numel : 1) * sizeof *dv);
    if (convert(m, v, dv, NULL, err)) {
        mc_free(dv);
        return -1;
    }
    *out = dv;
    *numel = v->numel;
    return 0;
}

int mat_get_i64(const MatFile *m, const char *name, int64_t **out, int64_t *numel,
                McErr *err) {
    const MatVar *v = numeric_var(m, name, err);
    if (!v) return -1;
    int64_t *iv = mc_malloc((size_t)(v->numel ? v->numel : 1) * sizeof *iv);
    if (convert(m, v, NULL, iv, err)) {
        mc_free(iv);
        return -1;
    }
    *out = iv;
    *numel = v->numel;
    return 0;
}

// ---- writer ----

typedef struct {
    uint8_t *p;
    size_t   len, cap;
    int      big;
} Buf;

static void buf_put(Buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n) nc *= 2;
        uint8_t *np = mc_malloc(nc);
        if (b->len) memcpy(np, b->p, b->len);
        mc_free(b->p);
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

// Append a value of `size` bytes (host order) in the file's byte order.
static void buf_val(Buf *b, const void *v, int size) {
    uint8_t tmp[8];
    const uint8_t *s = v;
    for (int i = 0; i < size; i++) tmp[i] = b->big ? s[size - 1 - i] : s[i];
    buf_put(b, tmp, (size_t)size);
}

static void buf_u32(Buf *b, uint32_t v) { buf_val(b, &v, 4); }

static void buf_pad8(Buf *b) {
    static const uint8_t zeros[8];
    buf_put(b, zeros, (8 - b->len % 8) % 8);
}

// Smallest storage MATLAB would choose for these values.
static int pick_storage(const double *v, int64_t n) {
    double lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] != floor(v[i]) || !isfinite(v[i])) return MAT_DOUBLE;
        if (i == 0 || v[i] < lo) lo = v[i];
        if (i == 0 || v[i] > hi) hi = v[i];
    }
    if (lo >= 0 && hi <= 255) return MAT_UINT8;
    if (lo >= -128 && hi <= 127) return MAT_INT8;
    if (lo >= 0 && hi <= 65535) return MAT_UINT16;
    if (lo >= -32768 && hi <= 32767) return MAT_INT16;
    if (lo >= 0 && hi <= 4294967295.0) return MAT_UINT32;
    if (lo >= -2147483648.0 && hi <= 2147483647.0) return MAT_INT32;
    return MAT_DOUBLE;
}

// Append value x stored as type t; returns 0 when x is exactly representable.
static int put_stored(Buf *b, int t, double x) {
// PUT(T): x as the C type T, sizeof(T) bytes; the round trip decides.
#define PUT(T) { T v = (T)x; buf_val(b, &v, (int)sizeof v); return (double)v == x ? 0 : -1; }
    switch (t) {
    case MAT_INT8:   PUT(int8_t)
    case MAT_UINT8:  PUT(uint8_t)
    case MAT_INT16:  PUT(int16_t)
    case MAT_UINT16: PUT(uint16_t)
    case MAT_INT32:  PUT(int32_t)
    case MAT_UINT32: PUT(uint32_t)
    case MAT_INT64:  PUT(int64_t)
    case MAT_UINT64: PUT(uint64_t)
    case MAT_SINGLE: PUT(float)
    default:         { buf_val(b, &x, 8); return 0; }
    }
#undef PUT
}

// Serialise one variable as a complete miMATRIX element (tag + body).
static int write_matrix(Buf *b, const MatWriteVar *w, McErr *err) {
    int mclass = w->mclass ? w->mclass : MX_DOUBLE;
    int64_t n = w->rows * w->cols;
    if (w->rows < 0 || w->cols < 0 || w->rows > INT32_MAX || w->cols > INT32_MAX)
        return mc_err(err, "mat writer: '%s': bad dims %lldx%lld", w->name,
                      (long long)w->rows, (long long)w->cols);
    if (!class_is_numeric(mclass))
        return mc_err(err, "mat writer: '%s': class %d is not numeric", w->name, mclass);
    int st = w->stype ? w->stype : pick_storage(w->values, n);
    int size = type_size(st);
    if (!size) return mc_err(err, "mat writer: '%s': storage %d is not numeric", w->name, st);
    size_t name_len = strlen(w->name);

    // Body first (into its own buffer) so the tag can carry its size.
    Buf body = {.big = b->big};
    buf_u32(&body, MAT_UINT32);                       // array flags
    buf_u32(&body, 8);
    buf_u32(&body, (uint32_t)mclass);
    buf_u32(&body, 0);
    buf_u32(&body, MAT_INT32);                        // dimensions
    buf_u32(&body, 8);
    buf_u32(&body, (uint32_t)w->rows);
    buf_u32(&body, (uint32_t)w->cols);
    if (name_len <= 4) {                              // name, small form
        buf_u32(&body, (uint32_t)name_len << 16 | MAT_INT8);
        uint8_t nm[4] = {0};
        memcpy(nm, w->name, name_len);
        buf_put(&body, nm, 4);
    } else {
        buf_u32(&body, MAT_INT8);
        buf_u32(&body, (uint32_t)name_len);
        buf_put(&body, w->name, name_len);
        buf_pad8(&body);
    }
    if ((uint64_t)n * (uint64_t)size > UINT32_MAX) {
        mc_free(body.p);
        return mc_err(err, "mat writer: '%s' is too large", w->name);
    }
    buf_u32(&body, (uint32_t)st);                     // real part
    buf_u32(&body, (uint32_t)(n * size));
    for (int64_t i = 0; i < n; i++) {
        if (put_stored(&body, st, w->values[i])) {
            mc_free(body.p);
            return mc_err(err, "mat writer: '%s': value %.17g at %lld does not fit %s",
                          w->name, w->values[i], (long long)i, mat_type_name(st));
        }
    }
    buf_pad8(&body);

    buf_u32(b, MAT_MATRIX);
    buf_u32(b, (uint32_t)body.len);
    buf_put(b, body.p, body.len);
    mc_free(body.p);
    return 0;
}

int mat_write_mem(const MatWriteVar *vars, int n, int big_endian, uint8_t **out,
                  size_t *len, McErr *err) {
    MC_CHECK(host_is_little(), "mat writer assumes a little-endian host");
    Buf b = {.big = big_endian};

    // Header: 116 text bytes, 8 subsystem bytes (spaces), version, indicator.
    char text[MAT_TEXT + 8];
    memset(text, ' ', sizeof text);
    const char *t = "MATLAB 5.0 MAT-file, Platform: GLNX86, Created on: Thu Jan  1 00:00:00 1970";
    memcpy(text, t, strlen(t));
    buf_put(&b, text, sizeof text);
    uint16_t version = 0x0100;
    buf_val(&b, &version, 2);
    buf_put(&b, big_endian ? "MI" : "IM", 2);

    for (int i = 0; i < n; i++) {
        Buf elem = {.big = big_endian};
        if (write_matrix(&elem, &vars[i], err)) {
            mc_free(b.p);
            return -1;
        }
        if (!vars[i].compress) {
            buf_put(&b, elem.p, elem.len);
            mc_free(elem.p);
            continue;
        }
        // miCOMPRESSED: zlib stream of the whole element, not padded.
        uLongf clen = compressBound((uLong)elem.len);
        uint8_t *z = mc_malloc(clen);
        int zrc = compress2(z, &clen, elem.p, (uLong)elem.len, Z_DEFAULT_COMPRESSION);
        mc_free(elem.p);
        if (zrc != Z_OK) {
            mc_free(z);
            mc_free(b.p);
            return mc_err(err, "mat writer: zlib compress failed (%d)", zrc);
        }
        buf_u32(&b, MAT_COMPRESSED);
        buf_u32(&b, (uint32_t)clen);
        buf_put(&b, z, clen);
        mc_free(z);
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

int mat_write(const char *path, const MatWriteVar *vars, int n, int big_endian, McErr *err) {
    uint8_t *bytes;
    size_t len;
    if (mat_write_mem(vars, n, big_endian, &bytes, &len, err)) return -1;

    // Temp file + rename so a reader never sees half a file.
    size_t plen = strlen(path) + 8;
    char *tmp = mc_malloc(plen);
    snprintf(tmp, plen, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) {
        rc = mc_err(err, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        size_t put = fwrite(bytes, 1, len, f);
        if (fclose(f) != 0 || put != len) rc = mc_err(err, "%s: write failed", tmp);
        else if (rename(tmp, path) != 0)
            rc = mc_err(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (rc) remove(tmp);
    }
    mc_free(tmp);
    mc_free(bytes);
    return rc;
}
