// dataset.c - dataset loaders, class names, layout detection, manifests
// (see dataset.h).  Facts about each dataset's files: ../shared/datasets.md.
#include "dataset.h"

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../mobileclip/json.h"
#include "matfile.h"

// ---- small utilities ----

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = mc_malloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

static char *dup_n(const char *s, size_t n) {
    char *d = mc_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *ds_join(const char *a, const char *b) {
    if (b[0] == '/' || !a || !a[0]) return dup_str(b);
    size_t na = strlen(a), nb = strlen(b);
    int slash = a[na - 1] != '/';
    char *d = mc_malloc(na + nb + 2);
    memcpy(d, a, na);
    if (slash) d[na] = '/';
    memcpy(d + na + slash, b, nb + 1);
    return d;
}

int ds_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ds_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Join a and b into buf (DS_PATH_MAX); returns buf.
static char *join_buf(char *buf, const char *a, const char *b) {
    if (!a[0]) snprintf(buf, DS_PATH_MAX, "%s", b);
    else snprintf(buf, DS_PATH_MAX, "%s%s%s", a, a[strlen(a) - 1] == '/' ? "" : "/", b);
    return buf;
}

static int file_in(const char *dir, const char *name) {
    char b[DS_PATH_MAX];
    return ds_is_file(join_buf(b, dir, name));
}

static int dir_in(const char *dir, const char *name) {
    char b[DS_PATH_MAX];
    return ds_is_dir(join_buf(b, dir, name));
}

int ds_mkdirs(const char *path, McErr *err) {
    char buf[DS_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return mc_err(err, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return mc_err(err, "%s: cannot create folder: %s", buf, strerror(errno));
        if (!c) break;
        *p = c;
    }
    if (!ds_is_dir(path)) return mc_err(err, "%s: exists and is not a folder", path);
    return 0;
}

int ds_read_file(const char *path, size_t max, char **out, size_t *len, McErr *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return mc_err(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mc_err(err, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max) {
        fclose(f);
        return mc_err(err, "%s: %lld bytes, more than the %zu-byte limit", path,
                      (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    char *buf = mc_malloc(n + 1);
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f) || got != n;
    fclose(f);
    if (bad) {
        mc_free(buf);
        return mc_err(err, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

int ds_write_file(const char *path, const void *bytes, size_t len, McErr *err) {
    char tmp[DS_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return mc_err(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return mc_err(err, "%s: cannot create: %s", tmp, strerror(errno));
    size_t put = fwrite(bytes, 1, len, f);
    if (fclose(f) != 0 || put != len) {
        remove(tmp);
        return mc_err(err, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return mc_err(err, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return 0;
}

// Growable byte buffer for building files.
typedef struct {
    char  *p;
    size_t len, cap;
} Str;

static void str_add(Str *s, const char *src, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 1024;
        while (nc < s->len + n + 1) nc *= 2;
        char *np = mc_malloc(nc);
        if (s->len) memcpy(np, s->p, s->len);
        mc_free(s->p);
        s->p = np;
        s->cap = nc;
    }
    memcpy(s->p + s->len, src, n);
    s->len += n;
    s->p[s->len] = 0;
}

static void str_cat(Str *s, const char *src) { str_add(s, src, strlen(src)); }

static void str_printf(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_printf(Str *s, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < (int)sizeof buf) {
        str_add(s, buf, (size_t)n);
        return;
    }
    char *big = mc_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    str_add(s, big, (size_t)n);
    mc_free(big);
}

// ---- string -> int map (FNV-1a, open addressing; keys are not copied) ----

typedef struct {
    const char **keys;
    int         *vals;
    size_t       cap, n;
} StrMap;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void map_init(StrMap *m, size_t expected) {
    m->cap = 16;
    while (m->cap < 2 * expected + 16) m->cap *= 2;
    m->keys = mc_calloc(m->cap, sizeof *m->keys);
    m->vals = mc_calloc(m->cap, sizeof *m->vals);
    m->n = 0;
}

static void map_free(StrMap *m) {
    mc_free(m->keys);
    mc_free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t map_slot(const StrMap *m, const char *k) {
    size_t i = (size_t)fnv1a(k) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], k)) i = (i + 1) & (m->cap - 1);
    return i;
}

static int map_get(const StrMap *m, const char *k) {
    size_t i = map_slot(m, k);
    return m->keys[i] ? m->vals[i] : -1;
}

// Insert k -> v unless present; returns the previous value or -1.
static int map_put(StrMap *m, const char *k, int v) {
    if (2 * (m->n + 1) > m->cap) {
        StrMap big;
        map_init(&big, m->n + 1);
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) map_put(&big, m->keys[i], m->vals[i]);
        map_free(m);
        *m = big;
    }
    size_t i = map_slot(m, k);
    if (m->keys[i]) return m->vals[i];
    m->keys[i] = k;
    m->vals[i] = v;
    m->n++;
    return -1;
}

// ---- hashes (FIPS 180-4) ----

typedef struct {
    uint32_t h[8];
    uint64_t total;
    uint8_t  buf[64];
    size_t   n;
    int      sha256;   // 0: SHA-1
} Hash;

static uint32_t rol32(uint32_t x, int k) { return x << k | x >> (32 - k); }
static uint32_t ror32(uint32_t x, int k) { return x >> k | x << (32 - k); }

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// SHA-1 compression: 80 rounds over the message schedule w.
static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)      { f = (b & c) | (~b & d);           k = 0x5a827999; }
        else if (i < 40) { f = b ^ c ^ d;                    k = 0x6ed9eba1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
        else             { f = b ^ c ^ d;                    k = 0xca62c1d6; }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol32(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

// SHA-256 compression: 64 rounds.
static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + SHA256_K[i] + w[i];
        uint32_t S0 = ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void hash_init(Hash *s, int sha256) {
    static const uint32_t h1[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    static const uint32_t h256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memset(s, 0, sizeof *s);
    s->sha256 = sha256;
    memcpy(s->h, sha256 ? h256 : h1, sha256 ? sizeof h256 : sizeof h1);
}

static void hash_block(Hash *s, const uint8_t *p) {
    if (s->sha256) sha256_block(s->h, p);
    else sha1_block(s->h, p);
}

static void hash_update(Hash *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->total += n;
    while (n) {
        size_t take = 64 - s->n < n ? 64 - s->n : n;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        n -= take;
        if (s->n == 64) {
            hash_block(s, s->buf);
            s->n = 0;
        }
    }
}

// Pad (0x80, zeros, 64-bit big-endian bit length) and write the hex digest.
static void hash_final_hex(Hash *s, char *hex) {
    uint64_t bits = s->total * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    hash_update(s, &pad, 1);
    while (s->n != 56) hash_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    hash_update(s, len, 8);
    int words = s->sha256 ? 8 : 5;
    for (int i = 0; i < words; i++) sprintf(hex + 8 * i, "%08x", s->h[i]);
}

void ds_sha1_hex(const void *data, size_t n, char hex[41]) {
    Hash s;
    hash_init(&s, 0);
    hash_update(&s, data, n);
    hash_final_hex(&s, hex);
}

void ds_sha256_hex(const void *data, size_t n, char hex[65]) {
    Hash s;
    hash_init(&s, 1);
    hash_update(&s, data, n);
    hash_final_hex(&s, hex);
}

// ---- Dataset basics ----

Dataset *ds_new(const char *name, const char *layout, const char *root, const char *source) {
    Dataset *ds = mc_calloc(1, sizeof *ds);
    ds->name = dup_str(name ? name : layout);
    ds->layout = dup_str(layout);
    ds->root = dup_str(root ? root : "");
    ds->source = dup_str(source ? source : ds->root);
    ds->names_source = dup_str("");
    return ds;
}

void ds_free(Dataset *ds) {
    if (!ds) return;
    for (int64_t i = 0; i < ds->n_items; i++) {
        mc_free(ds->items[i].path);
        mc_free(ds->items[i].rel);
    }
    for (int c = 0; c < ds->n_classes; c++) mc_free(ds->classes[c]);
    mc_free(ds->items);
    mc_free(ds->classes);
    mc_free(ds->name);
    mc_free(ds->layout);
    mc_free(ds->root);
    mc_free(ds->source);
    mc_free(ds->names_source);
    mc_free(ds);
}

int64_t ds_add_item(Dataset *ds, const char *rel, int label, int split) {
    if (ds->n_items == ds->cap_items) {
        ds->cap_items = ds->cap_items ? 2 * ds->cap_items : 256;
        DsItem *ni = mc_malloc((size_t)ds->cap_items * sizeof *ni);
        if (ds->n_items) memcpy(ni, ds->items, (size_t)ds->n_items * sizeof *ni);
        mc_free(ds->items);
        ds->items = ni;
    }
    DsItem *it = &ds->items[ds->n_items];
    it->rel = dup_str(rel);
    it->path = ds_join(ds->root, rel);
    it->label = label;
    it->split = split;
    return ds->n_items++;
}

int ds_add_class(Dataset *ds, const char *name) {
    if (ds->n_classes == ds->cap_classes) {
        ds->cap_classes = ds->cap_classes ? 2 * ds->cap_classes : 64;
        char **nc = mc_malloc((size_t)ds->cap_classes * sizeof *nc);
        if (ds->n_classes) memcpy(nc, ds->classes, (size_t)ds->n_classes * sizeof *nc);
        mc_free(ds->classes);
        ds->classes = nc;
    }
    ds->classes[ds->n_classes] = dup_str(name);
    return ds->n_classes++;
}

void ds_set_names_source(Dataset *ds, const char *what) {
    mc_free(ds->names_source);
    ds->names_source = dup_str(what);
}

int64_t ds_count_split(const Dataset *ds, int split) {
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n_items; i++) n += split < 0 || ds->items[i].split == split;
    return n;
}

void ds_class_counts(const Dataset *ds, int split, int64_t *counts) {
    memset(counts, 0, (size_t)ds->n_classes * sizeof *counts);
    for (int64_t i = 0; i < ds->n_items; i++)
        if (split < 0 || ds->items[i].split == split) counts[ds->items[i].label]++;
}

const char *ds_split_name(int split) {
    switch (split) {
    case DS_TRAIN: return "train";
    case DS_VAL: return "val";
    case DS_TEST: return "test";
    default: return "none";
    }
}

int ds_split_parse(const char *s) {
    if (!strcmp(s, "train")) return DS_TRAIN;
    if (!strcmp(s, "val") || !strcmp(s, "valid") || !strcmp(s, "validation")) return DS_VAL;
    if (!strcmp(s, "test")) return DS_TEST;
    if (!strcmp(s, "none") || !s[0]) return DS_NONE;
    return -1;
}

// Every class must have at least one item: an empty class is a broken
// dataset (wrong folder, truncated list).
static int check_no_empty_class(const Dataset *ds, const char *where, McErr *err) {
    int64_t *counts = mc_calloc((size_t)ds->n_classes + 1, sizeof *counts);
    ds_class_counts(ds, -1, counts);
    int bad = -1;
    for (int c = 0; c < ds->n_classes && bad < 0; c++)
        if (!counts[c]) bad = c;
    mc_free(counts);
    if (bad >= 0)
        return mc_err(err, "%s: class %d '%s' has no images (an empty class)", where, bad,
                      ds->classes[bad]);
    if (!ds->n_classes) return mc_err(err, "%s: no classes found", where);
    return 0;
}

// ---- text lines ----

typedef struct {
    const char *p, *end;
    const char *file;
    int         line;    // number of the line last returned (1-based)
} Lines;

static void lines_init(Lines *it, const char *text, size_t len, const char *file) {
    it->p = text;
    it->end = text + len;
    it->file = file;
    it->line = 0;
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) it->p += 3;   // UTF-8 BOM
}

// Next line without its "\n" / "\r\n" in (*s, *n); 1, 0 at the end, -1 on
// a line longer than DS_MAX_LINE.
static int lines_next(Lines *it, const char **s, size_t *n, McErr *err) {
    if (it->p >= it->end) return 0;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    const char *e = nl ? nl : it->end;
    it->line++;
    *s = it->p;
    *n = (size_t)(e - it->p);
    if (*n && (*s)[*n - 1] == '\r') (*n)--;
    it->p = nl ? nl + 1 : it->end;
    if (*n > DS_MAX_LINE)
        return mc_err(err, "%s:%d: line of %zu bytes, longer than the %d-byte limit", it->file,
                      it->line, *n, DS_MAX_LINE);
    if (memchr(*s, 0, *n))
        return mc_err(err, "%s:%d: NUL byte in a text line", it->file, it->line);
    return 1;
}

// Split line[0..n) at tabs into at most max fields (copied into one
// buffer); returns the number of fields.
static int split_tabs(const char *line, size_t n, char *buf, char **fields, int max) {
    memcpy(buf, line, n);
    buf[n] = 0;
    int k = 0;
    fields[k++] = buf;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\t') continue;
        buf[i] = 0;
        if (k == max) return max + 1;
        fields[k++] = buf + i + 1;
    }
    return k;
}

static int parse_int(const char *s, long long *out) {
    if (!*s) return -1;
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (*e || errno || !(isdigit((unsigned char)s[0]) || s[0] == '-')) return -1;
    *out = v;
    return 0;
}

// A relative path without '..' components (unless allowed).
static const char *path_problem(const char *p, int allow_outside) {
    if (!p[0]) return "empty path";
    if (allow_outside) return NULL;
    if (p[0] == '/') return "absolute path";
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') return "path with a '..' component";
        s += n + (e != NULL);
        if (!e) break;
    }
    return NULL;
}

// ---- class names ----

int ds_read_classnames(const char *path, char ***names_out, int *n_out, McErr *err) {
    char *text;
    size_t len;
    if (ds_read_file(path, DS_MAX_TEXT, &text, &len, err)) return -1;
    Lines it;
    lines_init(&it, text, len, path);
    char **names = NULL;
    int n = 0, cap = 0, header = 1, rc = 0;
    const char *s;
    size_t sl;
    int r;

    // Leading '#' lines are comments; every other line is one name, verbatim.
    while ((r = lines_next(&it, &s, &sl, err)) == 1) {
        if (header && sl && s[0] == '#') continue;
        header = 0;
        if (!sl) {
            // A final newline is not an empty name; any other empty line is.
            if (it.p >= it.end) break;
            rc = mc_err(err, "%s:%d: empty class name", path, it.line);
            break;
        }
        if (n == DS_MAX_CLASSES) {
            rc = mc_err(err, "%s: more than %d class names", path, DS_MAX_CLASSES);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 128;
            char **nn = mc_malloc((size_t)cap * sizeof *nn);
            if (n) memcpy(nn, names, (size_t)n * sizeof *nn);
            mc_free(names);
            names = nn;
        }
        names[n++] = dup_n(s, sl);
    }
    if (r < 0) rc = -1;
    mc_free(text);
    if (!rc && n == 0) rc = mc_err(err, "%s: no class names", path);
    if (rc) {
        ds_names_free(names, n);
        return -1;
    }
    *names_out = names;
    *n_out = n;
    return 0;
}

void ds_names_free(char **names, int n) {
    for (int i = 0; i < n; i++) mc_free(names[i]);
    mc_free(names);
}

// Append s as Python's json.dumps(s, ensure_ascii=False) writes it.
static void py_json_string(Str *out, const char *s) {
    str_cat(out, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': str_cat(out, "\\\""); break;
        case '\\': str_cat(out, "\\\\"); break;
        case '\n': str_cat(out, "\\n"); break;
        case '\r': str_cat(out, "\\r"); break;
        case '\t': str_cat(out, "\\t"); break;
        case '\b': str_cat(out, "\\b"); break;
        case '\f': str_cat(out, "\\f"); break;
        default:
            if (c < 0x20) str_printf(out, "\\u%04x", c);
            else str_add(out, (const char *)&c, 1);
        }
    }
    str_cat(out, "\"");
}

void ds_classnames_sha1(char *const *names, int n, char hex[41]) {
    Str js = {0};
    str_cat(&js, "[");
    for (int i = 0; i < n; i++) {
        if (i) str_cat(&js, ", ");
        py_json_string(&js, names[i]);
    }
    str_cat(&js, "]");
    ds_sha1_hex(js.p, js.len, hex);
    mc_free(js.p);
}

const char *ds_classnames_file(const char *dataset, const char *form, char *buf, size_t len) {
    const char *dir = getenv("MCLIP_CLASSNAMES_DIR");
    if (!form || !form[0]) form = "coop";
    snprintf(buf, len, "%s/%s_%s.txt", dir && dir[0] ? dir : "datasets/classnames", dataset,
             form);
    return ds_is_file(buf) ? buf : NULL;
}

// Set ds's class names from a names file; the count must match.
static int names_from_file(Dataset *ds, const char *path, int want, McErr *err) {
    char **names;
    int n;
    if (ds_read_classnames(path, &names, &n, err)) return -1;
    if (want >= 0 && n != want) {
        ds_names_free(names, n);
        return mc_err(err, "%s: %d class names, but the dataset has %d classes", path, n,
                      want);
    }
    for (int i = 0; i < n; i++) ds_add_class(ds, names[i]);
    ds_names_free(names, n);
    ds_set_names_source(ds, path);
    return 0;
}

// Replace ds's class names by those of a names file (same count).
static int override_names(Dataset *ds, const char *path, McErr *err) {
    char **names;
    int n;
    if (ds_read_classnames(path, &names, &n, err)) return -1;
    if (n != ds->n_classes) {
        ds_names_free(names, n);
        return mc_err(err, "%s: %d class names, but the dataset has %d classes", path, n,
                      ds->n_classes);
    }
    for (int c = 0; c < n; c++) {
        mc_free(ds->classes[c]);
        ds->classes[c] = names[c];
    }
    mc_free(names);
    ds_set_names_source(ds, path);
    return 0;
}

// ---- directory listing ----

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Entries of dir (no dotfiles), sorted bytewise; want_dirs 1: folders only,
// 0: regular files only.  Returns the count, or -1 with err set.
static int list_dir(const char *dir, int want_dirs, char ***out, McErr *err) {
    DIR *d = opendir(dir);
    if (!d) return mc_err(err, "%s: cannot open folder: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    char path[DS_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        join_buf(path, dir, e->d_name);
        if (want_dirs ? !ds_is_dir(path) : !ds_is_file(path)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = mc_malloc((size_t)cap * sizeof *nn);
            if (n) memcpy(nn, names, (size_t)n * sizeof *nn);
            mc_free(names);
            names = nn;
        }
        names[n++] = dup_str(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

// Image file extensions ImageFolder accepts (torchvision IMG_EXTENSIONS).
static int has_image_ext(const char *name) {
    static const char *exts[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif",
                                 ".tiff", ".webp", ".gif"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t k = strlen(exts[i]);
        if (n > k && !strcasecmp(name + n - k, exts[i])) return 1;
    }
    return 0;
}

// Add every image under dir (files sorted, then sub-folders sorted,
// recursively) with label and split; rel paths are prefix + name.
static int add_images_rec(Dataset *ds, const char *dir, const char *prefix, int label,
                          int split, int depth, McErr *err) {
    if (depth > 16) return mc_err(err, "%s: folders nested deeper than 16", dir);
    char **files, **dirs;
    int nf = list_dir(dir, 0, &files, err);
    if (nf < 0) return -1;
    char rel[DS_PATH_MAX], sub[DS_PATH_MAX];
    for (int i = 0; i < nf; i++) {
        if (has_image_ext(files[i])) ds_add_item(ds, join_buf(rel, prefix, files[i]), label, split);
        mc_free(files[i]);
    }
    mc_free(files);
    int nd = list_dir(dir, 1, &dirs, err);
    if (nd < 0) return -1;
    int rc = 0;
    for (int i = 0; i < nd; i++) {
        if (!rc) {
            join_buf(rel, prefix, dirs[i]);
            rc = add_images_rec(ds, join_buf(sub, dir, dirs[i]), rel, label, split,
                                depth + 1, err);
        }
        mc_free(dirs[i]);
    }
    mc_free(dirs);
    return rc;
}

// ---- ImageFolder ----

// root/{train,val,test}/<class>/... when every sub-folder is a split name.
static int split_folders(char **dirs, int nd) {
    if (nd == 0) return 0;
    for (int i = 0; i < nd; i++)
        if (ds_split_parse(dirs[i]) <= 0) return 0;
    return 1;
}

Dataset *ds_load_imagefolder(const char *root, McErr *err) {
    char **dirs;
    int nd = list_dir(root, 1, &dirs, err);
    if (nd < 0) return NULL;
    Dataset *ds = ds_new("imagefolder", "imagefolder", root, root);
    ds_set_names_source(ds, "folder names");
    int rc = 0;
    if (nd == 0) rc = mc_err(err, "%s: no class folders (expected root/<class>/<image>)", root);

    if (!rc && split_folders(dirs, nd)) {
        // Classes: union of the class folders of every split, sorted.
        StrMap seen;
        map_init(&seen, 256);
        char **all = NULL;
        int na = 0, cap = 0;
        char sub[DS_PATH_MAX];
        for (int s = 0; s < nd && !rc; s++) {
            char **cls;
            int nc = list_dir(join_buf(sub, root, dirs[s]), 1, &cls, err);
            if (nc < 0) { rc = -1; break; }
            for (int c = 0; c < nc; c++) {
                if (na == cap) {
                    cap = cap ? 2 * cap : 64;
                    char **nn = mc_malloc((size_t)cap * sizeof *nn);
                    if (na) memcpy(nn, all, (size_t)na * sizeof *nn);
                    mc_free(all);
                    all = nn;
                }
                all[na] = cls[c];
                if (map_put(&seen, all[na], na) < 0) na++;
                else mc_free(cls[c]);
            }
            mc_free(cls);
        }
        map_free(&seen);
        if (na) qsort(all, (size_t)na, sizeof *all, cmp_str);
        for (int c = 0; c < na; c++) ds_add_class(ds, all[c]);
        ds_names_free(all, na);
        // Items: per split folder, per class.
        char dir[DS_PATH_MAX], rel[DS_PATH_MAX];
        for (int s = 0; s < nd && !rc; s++) {
            for (int c = 0; c < ds->n_classes && !rc; c++) {
                snprintf(rel, sizeof rel, "%s/%s", dirs[s], ds->classes[c]);
                join_buf(dir, root, rel);
                if (!ds_is_dir(dir)) continue;
                rc = add_images_rec(ds, dir, rel, c, ds_split_parse(dirs[s]), 0, err);
            }
        }
        mc_free(ds->layout);
        ds->layout = dup_str("imagefolder-splits");
    } else if (!rc) {
        // Plain: each sub-folder is a class.
        char dir[DS_PATH_MAX];
        for (int c = 0; c < nd; c++) ds_add_class(ds, dirs[c]);
        for (int c = 0; c < nd && !rc; c++)
            rc = add_images_rec(ds, join_buf(dir, root, dirs[c]), dirs[c], c, DS_NONE, 0, err);
    }
    ds_names_free(dirs, nd);
    if (!rc) rc = check_no_empty_class(ds, root, err);
    if (rc) {
        ds_free(ds);
        return NULL;
    }
    return ds;
}

// ---- TSV manifest (datasets.md §9.1) ----

// Directory part of a path ("." when there is none), in buf.
static char *dir_of(const char *path, char *buf) {
    snprintf(buf, DS_PATH_MAX, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash) snprintf(buf, DS_PATH_MAX, ".");
    else if (slash == buf) buf[1] = 0;
    else *slash = 0;
    return buf;
}

static const char *base_of(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

typedef struct {
    int   line;
    char *path, *label, *cname;
    int   split;
} TsvRow;

// Column positions from a header line; -1 when absent.
typedef struct {
    int path, label, split, cname, caption;
} TsvCols;

static void tsv_header(char **f, int nf, TsvCols *c) {
    c->path = c->label = c->split = c->cname = c->caption = -1;
    for (int i = 0; i < nf; i++) {
        if (!strcmp(f[i], "path")) c->path = i;
        else if (!strcmp(f[i], "label")) c->label = i;
        else if (!strcmp(f[i], "split")) c->split = i;
        else if (!strcmp(f[i], "classname") || !strcmp(f[i], "class")) c->cname = i;
        else if (!strcmp(f[i], "caption")) c->caption = i;
    }
}

static void rows_free(TsvRow *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        mc_free(rows[i].path);
        mc_free(rows[i].label);
        mc_free(rows[i].cname);
    }
    mc_free(rows);
}

// Read the rows of a classification manifest (comments, header, limits).
static int tsv_rows(const char *file, const char *text, size_t len, const DsOptions *opt,
                    TsvRow **out, int64_t *n_out, McErr *err) {
    Lines it;
    lines_init(&it, text, len, file);
    TsvRow *rows = NULL;
    int64_t n = 0, cap = 0;
    TsvCols col = {0, 1, -1, -1, -1};
    int first = 1, have_header = 0, r, rc = 0;
    const char *s;
    size_t sl;
    char *buf = mc_malloc(DS_MAX_LINE + 1);
    char *f[16];
    while (!rc && (r = lines_next(&it, &s, &sl, err)) == 1) {
        if (!sl || s[0] == '#') continue;
        int nf = split_tabs(s, sl, buf, f, 15);
        if (nf > 15) {
            rc = mc_err(err, "%s:%d: more than 15 tab-separated fields", file, it.line);
            break;
        }
        // Header: the first non-comment line when it starts with "path".
        if (first) {
            first = 0;
            if (!strcmp(f[0], "path")) {
                have_header = 1;
                tsv_header(f, nf, &col);
                if (col.caption >= 0 && col.label < 0)
                    rc = mc_err(err, "%s:%d: a caption manifest (path, caption), expected "
                                "path<TAB>label", file, it.line);
                else if (col.path < 0 || col.label < 0)
                    rc = mc_err(err, "%s:%d: header lacks a 'label' column (found '%.*s')",
                                file, it.line, (int)sl, s);
                continue;
            }
        }
        int need = col.path > col.label ? col.path : col.label;
        if (nf <= need) {
            rc = mc_err(err, "%s:%d: expected path<TAB>label, found %d field%s", file,
                        it.line, nf, nf == 1 ? "" : "s");
            break;
        }
        TsvRow row = {.line = it.line, .split = DS_NONE};
        const char *why = path_problem(f[col.path], opt->allow_outside);
        if (why) {
            rc = mc_err(err, "%s:%d: %s '%s' (paths must be relative to the manifest's folder)",
                        file, it.line, why, f[col.path]);
            break;
        }
        const char *split_s = col.split >= 0 && col.split < nf ? f[col.split] : NULL;
        const char *cname_s = col.cname >= 0 && col.cname < nf ? f[col.cname] : NULL;
        if (!have_header && nf >= 3) {
            // Headerless third column: a split name, else a class name.
            if (ds_split_parse(f[2]) > 0) split_s = f[2];
            else cname_s = f[2];
        }
        if (split_s) {
            row.split = ds_split_parse(split_s);
            if (row.split < 0) {
                rc = mc_err(err, "%s:%d: split '%s' is not train, val or test", file, it.line,
                            split_s);
                break;
            }
        }
        row.path = dup_str(f[col.path]);
        row.label = dup_str(f[col.label]);
        row.cname = cname_s ? dup_str(cname_s) : NULL;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            TsvRow *nr = mc_malloc((size_t)cap * sizeof *nr);
            if (n) memcpy(nr, rows, (size_t)n * sizeof *nr);
            mc_free(rows);
            rows = nr;
        }
        rows[n++] = row;
    }
    if (r < 0) rc = -1;
    mc_free(buf);
    if (rc) {
        rows_free(rows, n);
        return -1;
    }
    *out = rows;
    *n_out = n;
    return 0;
}

// Resolve every row's label to a class index; fills ds's class list.
static int tsv_labels(Dataset *ds, const char *file, TsvRow *rows, int64_t n, char **names,
                      int n_names, int *labels, McErr *err) {
    StrMap byname;
    map_init(&byname, (size_t)(n_names > 0 ? n_names : 64));
    for (int i = 0; i < n_names; i++) map_put(&byname, names[i], i);
    int all_int = 1, rc = 0;
    for (int64_t i = 0; i < n; i++) {
        long long v;
        if (parse_int(rows[i].label, &v)) all_int = 0;
    }

    // Without a names file and with name-valued labels: classes are the
    // distinct names sorted bytewise (as ImageFolder orders folders).
    if (n_names == 0 && !all_int) {
        char **distinct = mc_malloc((size_t)(n ? n : 1) * sizeof *distinct);
        int nd = 0;
        for (int64_t i = 0; i < n; i++)
            if (map_put(&byname, rows[i].label, nd) < 0) distinct[nd++] = rows[i].label;
        qsort(distinct, (size_t)nd, sizeof *distinct, cmp_str);
        map_free(&byname);
        map_init(&byname, (size_t)nd);
        for (int c = 0; c < nd; c++) {
            map_put(&byname, distinct[c], c);
            ds_add_class(ds, distinct[c]);
        }
        mc_free(distinct);
        n_names = -nd;   // names known, from the labels themselves
        ds_set_names_source(ds, "label names in the manifest");
    }
    // Labels are indices unless they are names (then every label is a name).
    int n_classes = n_names >= 0 ? n_names : -n_names, names_only = n_names < 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        long long v;
        if (!names_only && !parse_int(rows[i].label, &v)) {
            if (v < 0 || v >= DS_MAX_CLASSES || (n_classes && v >= n_classes))
                rc = mc_err(err, "%s:%d: label %lld out of range (0..%d)", file, rows[i].line,
                            v, (n_classes ? n_classes : DS_MAX_CLASSES) - 1);
            labels[i] = (int)v;
        } else {
            int c = map_get(&byname, rows[i].label);
            if (c < 0)
                rc = mc_err(err, "%s:%d: label '%s' is neither an integer nor a class name",
                            file, rows[i].line, rows[i].label);
            labels[i] = c;
        }
    }
    map_free(&byname);
    if (rc) return -1;
    if (n_names > 0) {
        for (int c = 0; c < n_names; c++) ds_add_class(ds, names[c]);
    } else if (n_names == 0) {
        // Integer labels only: classes 0..max, names from the classname
        // column when given, else the label number.
        int maxl = -1;
        for (int64_t i = 0; i < n; i++) maxl = labels[i] > maxl ? labels[i] : maxl;
        const char **cn = mc_calloc((size_t)maxl + 2, sizeof *cn);
        for (int64_t i = 0; i < n; i++)
            if (rows[i].cname && !cn[labels[i]]) cn[labels[i]] = rows[i].cname;
        char num[32];
        for (int c = 0; c <= maxl; c++) {
            snprintf(num, sizeof num, "%d", c);
            ds_add_class(ds, cn[c] ? cn[c] : num);
        }
        mc_free(cn);
        ds_set_names_source(ds, "classname column or label numbers");
    }
    return 0;
}

Dataset *ds_load_tsv(const char *manifest, const char *classnames, const DsOptions *opt,
                     McErr *err) {
    DsOptions none = {0};
    if (!opt) opt = &none;
    char dir[DS_PATH_MAX], cn_path[DS_PATH_MAX];
    dir_of(manifest, dir);
    if (!classnames && file_in(dir, "classnames.txt")) classnames = join_buf(cn_path, dir,
                                                                             "classnames.txt");
    char *text;
    size_t len;
    if (ds_read_file(manifest, DS_MAX_TEXT, &text, &len, err)) return NULL;
    TsvRow *rows = NULL;
    int64_t n = 0;
    int rc = tsv_rows(manifest, text, len, opt, &rows, &n, err);
    mc_free(text);
    if (rc) return NULL;

    // Class names from a names file when there is one.
    char **names = NULL;
    int n_names = 0;
    if (classnames && ds_read_classnames(classnames, &names, &n_names, err)) {
        rows_free(rows, n);
        return NULL;
    }
    Dataset *ds = ds_new(opt->dataset ? opt->dataset : "tsv", "tsv", dir, manifest);
    if (classnames) ds_set_names_source(ds, classnames);
    int *labels = mc_malloc((size_t)(n ? n : 1) * sizeof *labels);
    rc = tsv_labels(ds, manifest, rows, n, names, n_names, labels, err);

    // A classname column must agree with the names; paths must be unique.
    StrMap paths;
    map_init(&paths, (size_t)n);
    for (int64_t i = 0; i < n && !rc; i++) {
        int c = labels[i];
        if (rows[i].cname && strcmp(rows[i].cname, ds->classes[c]))
            rc = mc_err(err, "%s:%d: label %d is named '%s' here but '%s' %s", manifest,
                        rows[i].line, c, rows[i].cname, ds->classes[c],
                        classnames ? "in the names file" : "on an earlier line");
        int prev = map_put(&paths, rows[i].path, (int)i);
        if (!rc && prev >= 0 && !opt->allow_duplicates)
            rc = mc_err(err, "%s:%d: path '%s' already listed on line %d", manifest,
                        rows[i].line, rows[i].path, rows[prev].line);
        if (!rc) ds_add_item(ds, rows[i].path, c, rows[i].split);
    }
    map_free(&paths);
    if (!rc && n == 0) rc = mc_err(err, "%s: no rows", manifest);
    if (!rc) rc = check_no_empty_class(ds, manifest, err);
    mc_free(labels);
    rows_free(rows, n);
    ds_names_free(names, n_names);
    if (rc) {
        ds_free(ds);
        return NULL;
    }
    return ds;
}

// ---- JSON helpers ----

// 1-based line of a byte offset.
static int line_of(const char *text, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off && text[i]; i++) line += text[i] == '\n';
    return line;
}

// Parse a JSON file strictly (duplicate keys refused); errors carry file:line.
static JsonDoc *parse_json_file(const char *path, char **text_out, McErr *err) {
    char *text;
    size_t len;
    if (ds_read_file(path, DS_MAX_TEXT, &text, &len, err)) return NULL;
    JsonOptions o = {.reject_duplicates = 1, .max_values = (size_t)1 << 27};
    McErr jerr;
    JsonDoc *doc = json_parse(text, len, &o, &jerr);
    if (!doc) {
        size_t off = 0;
        int line = sscanf(jerr.msg, "byte %zu", &off) == 1 ? line_of(text, off) : 0;
        mc_err(err, "%s:%d: invalid JSON: %s", path, line, jerr.msg);
        mc_free(text);
        return NULL;
    }
    *text_out = text;
    return doc;
}

// ---- CoOp split JSON (datasets.md §7) ----

// Image folder of each CoOp split file (CoOp's datasets/*.py).
static const char *coop_image_subdir(const char *json_name) {
    static const char *table[][2] = {
        {"split_zhou_OxfordFlowers.json", "jpg"},
        {"split_zhou_DescribableTextures.json", "images"},
        {"split_zhou_Caltech101.json", "101_ObjectCategories"},
        {"split_zhou_SUN397.json", "SUN397"},
        {"split_zhou_OxfordPets.json", "images"},
        {"split_zhou_Food101.json", "images"},
        {"split_zhou_EuroSAT.json", "2750"},
        {"split_zhou_UCF101.json", "UCF-101-midframes"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(json_name, table[i][0])) return table[i][1];
    return NULL;
}

// Validate one split array; names[label] records the name of each label.
static int coop_check_split(const char *path, const char *text, const JsonValue *arr,
                            const char *split, const char **names, int *max_label,
                            int allow_outside, McErr *err) {
    if (!arr || arr->type != JSON_ARRAY)
        return mc_err(err, "%s:%d: \"%s\" must be an array of [path, label, classname]",
                      path, arr ? line_of(text, arr->offset) : 1, split);
    for (size_t i = 0; i < arr->len; i++) {
        const JsonValue *e = &arr->items[i];
        int line = line_of(text, e->offset);
        int64_t label;
        if (e->type != JSON_ARRAY || e->len != 3 || e->items[0].type != JSON_STRING ||
            e->items[2].type != JSON_STRING)
            return mc_err(err, "%s:%d: %s[%zu]: expected [\"relpath\", label, \"classname\"]",
                          path, line, split, i);
        if (json_int(&e->items[1], &label))
            return mc_err(err, "%s:%d: %s[%zu]: label is not an integer", path, line, split, i);
        if (label < 0 || label >= DS_MAX_CLASSES)
            return mc_err(err, "%s:%d: %s[%zu]: label %lld out of range (0..%d)", path, line,
                          split, i, (long long)label, DS_MAX_CLASSES - 1);
        const char *why = path_problem(e->items[0].str, allow_outside);
        if (why)
            return mc_err(err, "%s:%d: %s[%zu]: %s '%s'", path, line, split, i, why,
                          e->items[0].str);
        const char *nm = e->items[2].str;
        if (names[label] && strcmp(names[label], nm))
            return mc_err(err, "%s:%d: %s[%zu]: label %lld is named '%s' here and '%s' "
                          "elsewhere", path, line, split, i, (long long)label, nm,
                          names[label]);
        names[label] = nm;
        if (label > *max_label) *max_label = (int)label;
    }
    return 0;
}

Dataset *ds_load_coop_json(const char *json_path, const char *image_dir, McErr *err) {
    char *text;
    JsonDoc *doc = parse_json_file(json_path, &text, err);
    if (!doc) return NULL;
    const JsonValue *root = json_root(doc);
    static const char *splits[3] = {"train", "val", "test"};
    const char **names = mc_calloc(DS_MAX_CLASSES, sizeof *names);
    int max_label = -1, rc = 0;
    Dataset *ds = NULL;

    // Shape: {"train": [...], "val": [...], "test": [...]} and nothing else.
    if (root->type != JSON_OBJECT)
        rc = mc_err(err, "%s:1: expected an object with \"train\", \"val\", \"test\", found %s",
                    json_path, json_type_name(root->type));
    for (size_t k = 0; !rc && k < root->len; k++) {
        const char *key = root->keys[k].str;
        if (strcmp(key, "train") && strcmp(key, "val") && strcmp(key, "test"))
            rc = mc_err(err, "%s:%d: unexpected key \"%s\" (a CoOp split has train, val, test)",
                        json_path, line_of(text, root->keys[k].offset), key);
    }
    for (int s = 0; s < 3 && !rc; s++) {
        const JsonValue *arr = json_get(root, splits[s]);
        if (!arr) rc = mc_err(err, "%s: missing key \"%s\"", json_path, splits[s]);
        else rc = coop_check_split(json_path, text, arr, splits[s], names, &max_label, 0, err);
    }

    // Every label 0..C-1 must occur in train.
    if (!rc) {
        const JsonValue *train = json_get(root, "train");
        char *seen = mc_calloc((size_t)max_label + 2, 1);
        for (size_t i = 0; i < train->len; i++) {
            int64_t l;
            json_int(&train->items[i].items[1], &l);
            seen[l] = 1;
        }
        for (int c = 0; c <= max_label && !rc; c++)
            if (!seen[c])
                rc = mc_err(err, "%s: label %d%s%s%s never occurs in \"train\" (classes are 0..%d)",
                            json_path, c, names[c] ? " ('" : "", names[c] ? names[c] : "",
                            names[c] ? "')" : "", max_label);
        mc_free(seen);
        if (!rc && max_label < 0) rc = mc_err(err, "%s: \"train\" is empty", json_path);
    }

    // Items, train then val then test, relative to the image folder.
    if (!rc) {
        char dir[DS_PATH_MAX], img[DS_PATH_MAX];
        const char *sub = coop_image_subdir(base_of(json_path));
        dir_of(json_path, dir);
        if (!image_dir) image_dir = sub ? join_buf(img, dir, sub) : dir;
        ds = ds_new("coop", "coop-json", image_dir, json_path);
        ds_set_names_source(ds, json_path);
        for (int c = 0; c <= max_label; c++) ds_add_class(ds, names[c]);
        for (int s = 0; s < 3; s++) {
            const JsonValue *arr = json_get(root, splits[s]);
            for (size_t i = 0; i < arr->len; i++) {
                int64_t l;
                json_int(&arr->items[i].items[1], &l);
                ds_add_item(ds, arr->items[i].items[0].str, (int)l, s + 1);
            }
        }
    }
    mc_free(names);
    json_free(doc);
    mc_free(text);
    return ds;
}

// ---- Flowers102 native (datasets.md §1) ----

// {"1": "pink primrose", ...}: keys 1..k exactly.
static int names_from_cat_to_name(Dataset *ds, const char *path, int k, McErr *err) {
    char *text;
    JsonDoc *doc = parse_json_file(path, &text, err);
    if (!doc) return -1;
    const JsonValue *root = json_root(doc);
    int rc = 0;
    if (root->type != JSON_OBJECT || (int)root->len != k)
        rc = mc_err(err, "%s: expected an object with keys \"1\"..\"%d\", found %s with %zu "
                    "entries", path, k, json_type_name(root->type), root->len);
    char key[16];
    for (int c = 1; c <= k && !rc; c++) {
        snprintf(key, sizeof key, "%d", c);
        const JsonValue *v = json_get(root, key);
        if (!v || v->type != JSON_STRING)
            rc = mc_err(err, "%s: no string for key \"%s\"", path, key);
        else
            ds_add_class(ds, v->str);
    }
    if (!rc) ds_set_names_source(ds, path);
    json_free(doc);
    mc_free(text);
    return rc;
}

static int find_root(const char *root, const char *const *nests, int (*ok)(const char *),
                     char *out) {
    for (int i = 0; nests[i]; i++) {
        join_buf(out, root, nests[i]);
        if (!nests[i][0]) snprintf(out, DS_PATH_MAX, "%s", root);
        if (ok(out)) return 1;
    }
    return 0;
}

static int flowers_native_ok(const char *r) {
    return dir_in(r, "jpg") && file_in(r, "imagelabels.mat") && file_in(r, "setid.mat");
}

static const char *const FLOWERS_NESTS[] = {"", "flowers-102", "oxford_flowers", "flowers102",
                                            NULL};

// Read a 1-based index vector from a MAT file.
static int read_ids(const char *path, const MatFile *m, const char *var, int64_t **ids,
                    int64_t *n, McErr *err) {
    if (mat_get_i64(m, var, ids, n, err)) return -1;
    const MatVar *v = mat_find(m, var);
    if (v->ndim != 2 || (v->dims[0] != 1 && v->dims[1] != 1)) {
        mc_free(*ids);
        return mc_err(err, "%s: variable '%s' is %lldx%lld, expected a vector", path, var,
                      (long long)v->dims[0], (long long)v->dims[1]);
    }
    return 0;
}

// Flowers102's two MAT files: labels[n] in 1..k (k = the largest label),
// and the three id vectors, ids in 1..n and disjoint.
typedef struct {
    int64_t *labels, n;
    int      k;
    int64_t *ids[3], nid[3];
} FlowersMats;

static const char *FLOWER_SETS[3] = {"trnid", "valid", "tstid"};

static void flowers_mats_free(FlowersMats *f) {
    mc_free(f->labels);
    for (int s = 0; s < 3; s++) mc_free(f->ids[s]);
}

static int flowers_read_mats(const char *lp, const char *sp, FlowersMats *f, McErr *err) {
    memset(f, 0, sizeof *f);
    int rc = 0;

    // labels 1..K for images 1..n.
    MatFile *m = mat_open(lp, err);
    if (!m) return -1;
    rc = read_ids(lp, m, "labels", &f->labels, &f->n, err);
    mat_close(m);
    for (int64_t i = 0; i < f->n && !rc; i++) {
        if (f->labels[i] < 1 || f->labels[i] > DS_MAX_CLASSES)
            rc = mc_err(err, "%s: labels[%lld] = %lld, expected 1..102", lp, (long long)i,
                        (long long)f->labels[i]);
        else if (f->labels[i] > f->k) f->k = (int)f->labels[i];
    }

    // trnid / valid / tstid: ids 1..n, disjoint.
    m = rc ? NULL : mat_open(sp, err);
    if (!rc && !m) rc = -1;
    for (int s = 0; s < 3 && !rc; s++)
        rc = read_ids(sp, m, FLOWER_SETS[s], &f->ids[s], &f->nid[s], err);
    mat_close(m);
    char *used = mc_calloc((size_t)f->n + 1, 1);
    for (int s = 0; s < 3 && !rc; s++) {
        for (int64_t i = 0; i < f->nid[s] && !rc; i++) {
            int64_t id = f->ids[s][i];
            if (id < 1 || id > f->n)
                rc = mc_err(err, "%s: %s[%lld] = %lld, expected an image id in 1..%lld", sp,
                            FLOWER_SETS[s], (long long)i, (long long)id, (long long)f->n);
            else if (used[id])
                rc = mc_err(err, "%s: image id %lld appears twice (in %s and %s)", sp,
                            (long long)id, FLOWER_SETS[used[id] - 1], FLOWER_SETS[s]);
            else used[id] = (char)(s + 1);
        }
    }
    mc_free(used);
    if (rc) flowers_mats_free(f);
    return rc;
}

Dataset *ds_load_flowers102(const char *root, const DsOptions *opt, McErr *err) {
    DsOptions none = {0};
    if (!opt) opt = &none;
    char r[DS_PATH_MAX], lp[DS_PATH_MAX], sp[DS_PATH_MAX], jp[DS_PATH_MAX], tmp[DS_PATH_MAX];
    if (!find_root(root, FLOWERS_NESTS, flowers_native_ok, r)) {
        mc_err(err, "%s: not a Flowers102 folder (expected jpg/, imagelabels.mat and setid.mat "
               "here or under flowers-102/)", root);
        return NULL;
    }
    join_buf(lp, r, "imagelabels.mat");
    join_buf(sp, r, "setid.mat");
    FlowersMats fm;
    if (flowers_read_mats(lp, sp, &fm, err)) return NULL;
    int k = fm.k, rc = 0;

    // Items in trnid, valid, tstid order; names from the options,
    // cat_to_name.json, or the shipped list.
    Dataset *ds = ds_new("flowers102", "flowers102-native", join_buf(tmp, r, "jpg"), r);
    const char *form = opt->names_form ? opt->names_form : "coop";
    const char *shipped = ds_classnames_file("flowers102", form, jp, sizeof jp);
    char cat[DS_PATH_MAX];
    join_buf(cat, r, "cat_to_name.json");
    if (opt->classnames) rc = names_from_file(ds, opt->classnames, k, err);
    else if (!strcmp(form, "paper") && (!shipped || k != 102))
        rc = mc_err(err, "%s: the paper's Flowers102 names need 102 classes and "
                    "datasets/classnames/flowers102_paper.txt (found %d classes%s)", r, k,
                    shipped ? "" : ", no names file");
    else if (strcmp(form, "paper") && ds_is_file(cat))
        rc = names_from_cat_to_name(ds, cat, k, err);
    else if (shipped && k == 102) rc = names_from_file(ds, shipped, k, err);
    else {
        for (int c = 1; c <= k; c++) {
            snprintf(tmp, sizeof tmp, "%d", c);
            ds_add_class(ds, tmp);
        }
        ds_set_names_source(ds, "label numbers (no class-name list found)");
    }
    for (int s = 0; s < 3 && !rc; s++)
        for (int64_t i = 0; i < fm.nid[s]; i++) {
            snprintf(tmp, sizeof tmp, "image_%05lld.jpg", (long long)fm.ids[s][i]);
            ds_add_item(ds, tmp, (int)fm.labels[fm.ids[s][i] - 1] - 1, s + 1);
        }
    if (!rc) rc = check_no_empty_class(ds, lp, err);
    flowers_mats_free(&fm);
    if (rc) {
        ds_free(ds);
        return NULL;
    }
    return ds;
}

// ---- DTD native (datasets.md §2) ----

static int dtd_native_ok(const char *r) {
    return dir_in(r, "images") && file_in(r, "labels/train1.txt");
}

static const char *const DTD_NESTS[] = {"", "dtd", "dtd/dtd", NULL};

// Add the items listed in a text file of "class/file" lines.
static int add_listed(Dataset *ds, const char *file, int split, StrMap *classes,
                      int strip_slash, int class_from_dir, McErr *err) {
    char *text;
    size_t len;
    if (ds_read_file(file, DS_MAX_TEXT, &text, &len, err)) return -1;
    Lines it;
    lines_init(&it, text, len, file);
    const char *s;
    size_t sl;
    int r, rc = 0;
    char line[DS_MAX_LINE + 1], cls[DS_MAX_LINE + 1];
    while (!rc && (r = lines_next(&it, &s, &sl, err)) == 1) {
        while (sl && (s[sl - 1] == ' ' || s[sl - 1] == '\t')) sl--;
        if (!sl) continue;
        memcpy(line, s, sl);
        line[sl] = 0;
        const char *rel = strip_slash && line[0] == '/' ? line + 1 : line;
        const char *why = path_problem(rel, 0);
        if (why) {
            rc = mc_err(err, "%s:%d: %s '%s'", file, it.line, why, line);
            break;
        }
        // The class is the first component (DTD) or the folder (SUN397).
        const char *cut = class_from_dir ? strrchr(line, '/') : strchr(rel, '/');
        if (!cut || cut == line) {
            rc = mc_err(err, "%s:%d: expected <class>/<file>, found '%s'", file, it.line, line);
            break;
        }
        size_t cl = (size_t)(cut - (class_from_dir ? line : rel));
        memcpy(cls, class_from_dir ? line : rel, cl);
        cls[cl] = 0;
        int c = map_get(classes, cls);
        if (c < 0) {
            rc = mc_err(err, "%s:%d: class '%s' of '%s' is not a known class", file, it.line,
                        cls, line);
            break;
        }
        ds_add_item(ds, rel, c, split);
    }
    if (r < 0) rc = -1;
    mc_free(text);
    return rc;
}

Dataset *ds_load_dtd(const char *root, const DsOptions *opt, McErr *err) {
    DsOptions none = {0};
    if (!opt) opt = &none;
    char r[DS_PATH_MAX], img[DS_PATH_MAX], file[DS_PATH_MAX], name[64];
    if (!find_root(root, DTD_NESTS, dtd_native_ok, r)) {
        mc_err(err, "%s: not a DTD folder (expected images/ and labels/train1.txt here or under "
               "dtd/)", root);
        return NULL;
    }
    int p = opt->partition ? opt->partition : 1;
    if (p < 1 || p > 10) {
        mc_err(err, "DTD partition %d: expected 1..10", p);
        return NULL;
    }
    join_buf(img, r, "images");
    char **cls;
    int nc = list_dir(img, 1, &cls, err);
    if (nc < 0) return NULL;
    Dataset *ds = ds_new("dtd", "dtd-native", img, r);
    ds_set_names_source(ds, "images/ folder names");
    StrMap map;
    map_init(&map, (size_t)nc);
    for (int c = 0; c < nc; c++) ds_add_class(ds, cls[c]);
    for (int c = 0; c < nc; c++) map_put(&map, ds->classes[c], c);
    int rc = nc ? 0 : mc_err(err, "%s: no class folders", img);
    static const char *parts[3] = {"train", "val", "test"};
    for (int s = 0; s < 3 && !rc; s++) {
        snprintf(name, sizeof name, "labels/%s%d.txt", parts[s], p);
        rc = add_listed(ds, join_buf(file, r, name), s + 1, &map, 0, 0, err);
    }
    map_free(&map);
    ds_names_free(cls, nc);
    if (!rc && opt->classnames) rc = override_names(ds, opt->classnames, err);
    if (!rc) rc = check_no_empty_class(ds, file, err);
    if (rc) {
        ds_free(ds);
        return NULL;
    }
    return ds;
}

// ---- Caltech101 (datasets.md §3) ----

static int caltech_ok(const char *r) { return dir_in(r, "101_ObjectCategories"); }

static const char *const CALTECH_NESTS[] = {"", "caltech-101", "caltech101", "Caltech101", NULL};

typedef struct {
    char *folder, *name;
} Folder;

static int cmp_folder_name(const void *a, const void *b) {
    return strcmp(((const Folder *)a)->name, ((const Folder *)b)->name);
}

Dataset *ds_load_caltech101(const char *root, const DsOptions *opt, McErr *err) {
    DsOptions none = {0};
    if (!opt) opt = &none;
    char r[DS_PATH_MAX], img[DS_PATH_MAX], dir[DS_PATH_MAX];
    if (!find_root(root, CALTECH_NESTS, caltech_ok, r)) {
        mc_err(err, "%s: not a Caltech101 folder (expected 101_ObjectCategories/ here or under "
               "caltech-101/)", root);
        return NULL;
    }
    join_buf(img, r, "101_ObjectCategories");
    char **dirs;
    int nd = list_dir(img, 1, &dirs, err);
    if (nd < 0) return NULL;
    int paper = opt->names_form && !strcmp(opt->names_form, "paper");

    // CoOp: drop BACKGROUND_Google and Faces_easy, rename four, keep the
    // codepoint order of the folder names.  Paper (flwrlabs): drop only
    // BACKGROUND_Google, lowercase, order by the lowercased name.
    static const char *renames[4][2] = {
        {"airplanes", "airplane"}, {"Faces", "face"}, {"Leopards", "leopard"},
        {"Motorbikes", "motorbike"}};
    Folder *f = mc_malloc((size_t)(nd ? nd : 1) * sizeof *f);
    int nf = 0;
    for (int i = 0; i < nd; i++) {
        if (!strcmp(dirs[i], "BACKGROUND_Google")) continue;
        if (!paper && !strcmp(dirs[i], "Faces_easy")) continue;
        f[nf].folder = dirs[i];
        f[nf].name = dup_str(dirs[i]);
        if (paper) {
            for (char *c = f[nf].name; *c; c++) *c = (char)tolower((unsigned char)*c);
        } else {
            for (int k = 0; k < 4; k++)
                if (!strcmp(dirs[i], renames[k][0])) {
                    mc_free(f[nf].name);
                    f[nf].name = dup_str(renames[k][1]);
                }
        }
        nf++;
    }
    if (paper) qsort(f, (size_t)nf, sizeof *f, cmp_folder_name);
    Dataset *ds = ds_new("caltech101", paper ? "caltech101-native-101" : "caltech101-native",
                         img, r);
    ds_set_names_source(ds, paper ? "folder names lowercased (flwrlabs form)"
                                   : "folder names with CoOp's renames");
    int rc = nf ? 0 : mc_err(err, "%s: no class folders", img);
    for (int c = 0; c < nf; c++) ds_add_class(ds, f[c].name);
    for (int c = 0; c < nf && !rc; c++)
        rc = add_images_rec(ds, join_buf(dir, img, f[c].folder), f[c].folder, c, DS_NONE, 0, err);
    for (int c = 0; c < nf; c++) mc_free(f[c].name);
    mc_free(f);
    ds_names_free(dirs, nd);
    if (!rc && opt->classnames) rc = override_names(ds, opt->classnames, err);
    if (!rc) rc = check_no_empty_class(ds, img, err);
    if (rc) {
        ds_free(ds);
        return NULL;
    }
    return ds;
}

// ---- SUN397 (datasets.md §4) ----

static int sun_ok(const char *r) { return dir_in(r, "SUN397"); }

static const char *const SUN_NESTS[] = {"", "sun397", NULL};

// First of dir/name, dir/SUN397/name, dir/Partitions/name that exists.
static const char *sun_file(const char *r, const char *name, char *buf) {
    static const char *subs[] = {"", "Partitions", "SUN397", "SUN397/Partitions"};
    char rel[256];
    for (int i = 0; i < 4; i++) {
        snprintf(rel, sizeof rel, "%s%s%s", subs[i], subs[i][0] ? "/" : "", name);
        if (file_in(r, rel)) return join_buf(buf, r, rel);
    }
    return NULL;
}

// Class name from a ClassName.txt path: CoOp reverses the components after
// the letter and joins them with spaces ("/a/apartment_building/outdoor" ->
// "outdoor apartment_building"); the paper's (tanganke) form joins them in
// order and turns '_' into ' ' ("apartment building outdoor").
static void sun_class_name(const char *path, int paper, char *out, size_t cap) {
    const char *p = path + 3;   // after "/a/"
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", p);
    char *parts[16];
    int np = 0;
    char *save = NULL;
    for (char *t = strtok_r(tmp, "/", &save); t && np < 16; t = strtok_r(NULL, "/", &save))
        parts[np++] = t;
    out[0] = 0;
    size_t len = 0;
    for (int i = 0; i < np; i++) {
        const char *part = paper ? parts[i] : parts[np - 1 - i];
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", part);
        if (len >= cap) break;
    }
    if (paper)
        for (char *c = out; *c; c++) if (*c == '_') *c = ' ';
}

// ClassName.txt: one "/a/abbey" path per line; label = line order.
static int sun_read_classes(const char *cn, char ***out, int *n_out, McErr *err) {
    char *text;
    size_t len;
    if (ds_read_file(cn, DS_MAX_TEXT, &text, &len, err)) return -1;
    Lines it;
    lines_init(&it, text, len, cn);
    const char *s;
    size_t sl;
    int r, rc = 0, np = 0, cap = 0;
    char **paths = NULL;
    while (!rc && (r = lines_next(&it, &s, &sl, err)) == 1) {
        while (sl && (s[sl - 1] == ' ' || s[sl - 1] == '\t')) sl--;
        if (!sl) continue;
        if (sl < 4 || s[0] != '/' || s[2] != '/' || !islower((unsigned char)s[1])) {
            rc = mc_err(err, "%s:%d: expected a class path like /a/abbey, found '%.*s'", cn,
                        it.line, (int)sl, s);
            break;
        }
        if (np == cap) {
            cap = cap ? 2 * cap : 512;
            char **npaths = mc_malloc((size_t)cap * sizeof *npaths);
            if (np) memcpy(npaths, paths, (size_t)np * sizeof *npaths);
            mc_free(paths);
            paths = npaths;
        }
        paths[np++] = dup_n(s, sl);
    }
    if (r < 0) rc = -1;
    mc_free(text);
    if (!rc && !np) rc = mc_err(err, "%s: no classes", cn);
    if (rc) {
        ds_names_free(paths, np);
        return -1;
    }
    *out = paths;
    *n_out = np;
    return 0;
}

Dataset *ds_load_sun397(const char *root, const DsOptions *opt, McErr *err) {
    DsOptions none = {0};
    if (!opt) opt = &none;
    char r[DS_PATH_MAX], img[DS_PATH_MAX], cn[DS_PATH_MAX], name[64], fb[DS_PATH_MAX];
    if (!find_root(root, SUN_NESTS, sun_ok, r) || !sun_file(r, "ClassName.txt", cn)) {
        mc_err(err, "%s: not a SUN397 folder (expected SUN397/ and ClassName.txt here or under "
               "sun397/)", root);
        return NULL;
    }
    int p = opt->partition ? opt->partition : 1;
    if (p < 1 || p > 10) {
        mc_err(err, "SUN397 partition %d: expected 1..10", p);
        return NULL;
    }
    int paper = opt->names_form && !strcmp(opt->names_form, "paper");
    join_buf(img, r, "SUN397");
    char **paths = NULL;
    int np = 0, rc = 0;
    if (sun_read_classes(cn, &paths, &np, err)) return NULL;
    Dataset *ds = ds_new("sun397", "sun397-native", img, r);
    ds_set_names_source(ds, paper ? "ClassName.txt (tanganke form)" : "ClassName.txt (CoOp form)");
    char nm[1024];
    StrMap map;
    map_init(&map, (size_t)np);
    for (int c = 0; c < np && !rc; c++) {
        sun_class_name(paths[c], paper, nm, sizeof nm);
        ds_add_class(ds, nm);
        if (map_put(&map, paths[c], c) >= 0)
            rc = mc_err(err, "%s: class '%s' listed twice", cn, paths[c]);
    }

    // Training_NN -> train, Testing_NN -> test; without partition files,
    // every image of every class folder (split none).
    snprintf(name, sizeof name, "Training_%02d.txt", p);
    const char *train = rc ? NULL : sun_file(r, name, fb);
    if (!rc && train) {
        rc = add_listed(ds, train, DS_TRAIN, &map, 1, 1, err);
        snprintf(name, sizeof name, "Testing_%02d.txt", p);
        const char *test = rc ? NULL : sun_file(r, name, fb);
        if (!rc && !test) rc = mc_err(err, "%s: %s found but not %s", r, "Training file", name);
        if (!rc) rc = add_listed(ds, test, DS_TEST, &map, 1, 1, err);
    } else if (!rc) {
        mc_free(ds->layout);
        ds->layout = dup_str("sun397-all");
        char dir[DS_PATH_MAX];
        for (int c = 0; c < np && !rc; c++)
            rc = add_images_rec(ds, join_buf(dir, img, paths[c] + 1), paths[c] + 1, c, DS_NONE,
                                0, err);
    }
    map_free(&map);
    ds_names_free(paths, np);
    if (!rc && opt->classnames) rc = override_names(ds, opt->classnames, err);
    if (!rc) rc = check_no_empty_class(ds, cn, err);
    if (rc) {
        ds_free(ds);
        return NULL;
    }
    return ds;
}

// ---- caption sets (datasets.md §5, §9.1) ----

static CaptionSet *cs_new(const char *layout, const char *root, const char *source) {
    CaptionSet *cs = mc_calloc(1, sizeof *cs);
    cs->layout = dup_str(layout);
    cs->root = dup_str(root);
    cs->source = dup_str(source);
    return cs;
}

void cs_free(CaptionSet *cs) {
    if (!cs) return;
    for (int i = 0; i < cs->n_images; i++) {
        mc_free(cs->images[i].path);
        mc_free(cs->images[i].rel);
    }
    for (int i = 0; i < cs->n_captions; i++) mc_free(cs->captions[i]);
    mc_free(cs->images);
    mc_free(cs->captions);
    mc_free(cs->caption_image);
    mc_free(cs->layout);
    mc_free(cs->root);
    mc_free(cs->source);
    mc_free(cs);
}

static int cs_add_image(CaptionSet *cs, const char *rel, int split) {
    if (cs->n_images == cs->cap_images) {
        cs->cap_images = cs->cap_images ? 2 * cs->cap_images : 256;
        CsImage *ni = mc_malloc((size_t)cs->cap_images * sizeof *ni);
        if (cs->n_images) memcpy(ni, cs->images, (size_t)cs->n_images * sizeof *ni);
        mc_free(cs->images);
        cs->images = ni;
    }
    CsImage *im = &cs->images[cs->n_images];
    im->rel = dup_str(rel);
    im->path = ds_join(cs->root, rel);
    im->split = split;
    im->first = 0;
    im->n = 0;
    return cs->n_images++;
}

// Captions may arrive interleaved; they are grouped per image (file order
// kept within an image) by cs_group.
static void cs_add_caption(CaptionSet *cs, int image, const char *text, size_t n) {
    if (cs->n_captions == cs->cap_captions) {
        cs->cap_captions = cs->cap_captions ? 2 * cs->cap_captions : 1024;
        char **nc = mc_malloc((size_t)cs->cap_captions * sizeof *nc);
        int *ni = mc_malloc((size_t)cs->cap_captions * sizeof *ni);
        if (cs->n_captions) {
            memcpy(nc, cs->captions, (size_t)cs->n_captions * sizeof *nc);
            memcpy(ni, cs->caption_image, (size_t)cs->n_captions * sizeof *ni);
        }
        mc_free(cs->captions);
        mc_free(cs->caption_image);
        cs->captions = nc;
        cs->caption_image = ni;
    }
    cs->captions[cs->n_captions] = dup_n(text, n);
    cs->caption_image[cs->n_captions++] = image;
    cs->images[image].n++;
}

// Stable counting sort of the captions by image; sets first/n.
static void cs_group(CaptionSet *cs) {
    int pos = 0;
    for (int i = 0; i < cs->n_images; i++) {
        cs->images[i].first = pos;
        pos += cs->images[i].n;
    }
    char **nc = mc_malloc((size_t)(cs->n_captions ? cs->n_captions : 1) * sizeof *nc);
    int *fill = mc_calloc((size_t)cs->n_images + 1, sizeof *fill);
    for (int c = 0; c < cs->n_captions; c++) {
        int im = cs->caption_image[c];
        nc[cs->images[im].first + fill[im]++] = cs->captions[c];
    }
    for (int i = 0; i < cs->n_images; i++)
        for (int k = 0; k < cs->images[i].n; k++) cs->caption_image[cs->images[i].first + k] = i;
    mc_free(cs->captions);
    mc_free(fill);
    cs->captions = nc;
}

int cs_count_split(const CaptionSet *cs, int split) {
    int n = 0;
    for (int i = 0; i < cs->n_images; i++) n += split < 0 || cs->images[i].split == split;
    return n;
}

// Default image folder beside a caption file.
static const char *caption_image_dir(const char *file, char *buf) {
    char dir[DS_PATH_MAX];
    dir_of(file, dir);
    static const char *subs[] = {"flickr30k-images", "flickr30k_images", "images"};
    for (int i = 0; i < 3; i++)
        if (dir_in(dir, subs[i])) return join_buf(buf, dir, subs[i]);
    snprintf(buf, DS_PATH_MAX, "%s", dir);
    return buf;
}

CaptionSet *cs_load_karpathy(const char *json_path, const char *image_dir, McErr *err) {
    char *text, buf[DS_PATH_MAX], rel[DS_PATH_MAX];
    JsonDoc *doc = parse_json_file(json_path, &text, err);
    if (!doc) return NULL;
    if (!image_dir) image_dir = caption_image_dir(json_path, buf);
    const JsonValue *root = json_root(doc), *images = json_get(root, "images");
    CaptionSet *cs = cs_new("karpathy-json", image_dir, json_path);
    int rc = 0;
    if (!images || images->type != JSON_ARRAY)
        rc = mc_err(err, "%s:1: expected an object with an \"images\" array (Karpathy split)",
                    json_path);

    // Each image: filename, split, sentences[].raw (filepath prefix if any).
    for (size_t i = 0; !rc && i < images->len; i++) {
        const JsonValue *im = &images->items[i];
        int line = line_of(text, im->offset);
        const JsonValue *fn = json_get(im, "filename"), *sp = json_get(im, "split");
        const JsonValue *fp = json_get(im, "filepath"), *sents = json_get(im, "sentences");
        if (!fn || fn->type != JSON_STRING || !sp || sp->type != JSON_STRING || !sents ||
            sents->type != JSON_ARRAY) {
            rc = mc_err(err, "%s:%d: images[%zu]: expected \"filename\", \"split\" and "
                        "\"sentences\"", json_path, line, i);
            break;
        }
        int split = !strcmp(sp->str, "restval") ? DS_TRAIN : ds_split_parse(sp->str);
        if (split <= 0) {
            rc = mc_err(err, "%s:%d: images[%zu]: split '%s' is not train, val, test or "
                        "restval", json_path, line, i, sp->str);
            break;
        }
        if (fp && fp->type == JSON_STRING) snprintf(rel, sizeof rel, "%s/%s", fp->str, fn->str);
        else snprintf(rel, sizeof rel, "%s", fn->str);
        const char *why = path_problem(rel, 0);
        if (why) {
            rc = mc_err(err, "%s:%d: images[%zu]: %s '%s'", json_path, line, i, why, rel);
            break;
        }
        int idx = cs_add_image(cs, rel, split);
        for (size_t k = 0; k < sents->len; k++) {
            const JsonValue *raw = json_get(&sents->items[k], "raw");
            if (!raw || raw->type != JSON_STRING) {
                rc = mc_err(err, "%s:%d: images[%zu].sentences[%zu]: no \"raw\" string",
                            json_path, line_of(text, sents->items[k].offset), i, k);
                break;
            }
            cs_add_caption(cs, idx, raw->str, strlen(raw->str));
        }
    }
    json_free(doc);
    mc_free(text);
    if (!rc && cs->n_images == 0) rc = mc_err(err, "%s: no images", json_path);
    if (rc) {
        cs_free(cs);
        return NULL;
    }
    cs_group(cs);
    return cs;
}

// Shared by the token and TSV caption readers: rows of (path, caption).
static CaptionSet *captions_from_rows(const char *file, const char *layout, const char *root,
                                      int token_form, int allow_outside, McErr *err) {
    char *text;
    size_t len;
    if (ds_read_file(file, DS_MAX_TEXT, &text, &len, err)) return NULL;
    CaptionSet *cs = cs_new(layout, root, file);
    StrMap byimage;
    map_init(&byimage, 1024);
    Lines it;
    lines_init(&it, text, len, file);
    const char *s;
    size_t sl;
    int r, rc = 0, first = 1;
    char path[DS_MAX_LINE + 1];
    while (!rc && (r = lines_next(&it, &s, &sl, err)) == 1) {
        if (!sl || (!token_form && s[0] == '#')) continue;
        const char *tab = memchr(s, '\t', sl);
        if (!tab) {
            rc = mc_err(err, "%s:%d: expected %s<TAB>caption", file, it.line,
                        token_form ? "<image>#<n>" : "path");
            break;
        }
        size_t pl = (size_t)(tab - s);
        const char *cap = tab + 1;
        size_t cl = sl - pl - 1;
        if (first) {
            first = 0;
            if (!token_form && pl == 4 && !memcmp(s, "path", 4)) continue;   // header
        }
        if (!token_form && memchr(cap, '\t', cl)) {
            rc = mc_err(err, "%s:%d: more than two fields (captions cannot contain tabs)",
                        file, it.line);
            break;
        }
        if (token_form) {
            const char *hash = memchr(s, '#', pl);
            if (!hash) {
                rc = mc_err(err, "%s:%d: expected <image>#<n> before the tab", file, it.line);
                break;
            }
            pl = (size_t)(hash - s);
        }
        memcpy(path, s, pl);
        path[pl] = 0;
        const char *why = path_problem(path, allow_outside);
        if (why) {
            rc = mc_err(err, "%s:%d: %s '%s'", file, it.line, why, path);
            break;
        }
        int idx = -1;
        size_t slot = map_slot(&byimage, path);
        if (byimage.keys[slot]) {
            idx = byimage.vals[slot];
        } else {
            idx = cs_add_image(cs, path, DS_NONE);
            map_put(&byimage, cs->images[idx].rel, idx);
        }
        cs_add_caption(cs, idx, cap, cl);
    }
    if (r < 0) rc = -1;
    map_free(&byimage);
    mc_free(text);
    if (!rc && cs->n_images == 0) rc = mc_err(err, "%s: no captions", file);
    if (rc) {
        cs_free(cs);
        return NULL;
    }
    cs_group(cs);
    return cs;
}

CaptionSet *cs_load_token(const char *token_path, const char *image_dir, McErr *err) {
    char buf[DS_PATH_MAX];
    if (!image_dir) image_dir = caption_image_dir(token_path, buf);
    return captions_from_rows(token_path, "flickr-token", image_dir, 1, 0, err);
}

CaptionSet *cs_load_tsv(const char *manifest, const DsOptions *opt, McErr *err) {
    char dir[DS_PATH_MAX];
    return captions_from_rows(manifest, "caption-tsv", dir_of(manifest, dir), 0,
                              opt ? opt->allow_outside : 0, err);
}

// ---- layout detection ----

const char *ds_layout_name(DsLayout l) {
    switch (l) {
    case DS_LAYOUT_TSV: return "tsv";
    case DS_LAYOUT_IMAGEFOLDER: return "imagefolder";
    case DS_LAYOUT_COOP_JSON: return "coop-json";
    case DS_LAYOUT_FLOWERS102: return "flowers102-native";
    case DS_LAYOUT_DTD: return "dtd-native";
    case DS_LAYOUT_CALTECH101: return "caltech101-native";
    case DS_LAYOUT_SUN397: return "sun397-native";
    case DS_LAYOUT_KARPATHY: return "karpathy-json";
    case DS_LAYOUT_FLICKR_TOKEN: return "flickr-token";
    case DS_LAYOUT_CAPTION_TSV: return "caption-tsv";
    default: return "none";
    }
}

int ds_layout_is_captions(DsLayout l) {
    return l == DS_LAYOUT_KARPATHY || l == DS_LAYOUT_FLICKR_TOKEN || l == DS_LAYOUT_CAPTION_TSV;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static void set_src(DsSource *src, DsLayout l, const char *dataset, const char *root,
                    const char *file, const char *image_dir) {
    src->layout = l;
    snprintf(src->dataset, sizeof src->dataset, "%s", dataset ? dataset : "");
    snprintf(src->root, sizeof src->root, "%s", root ? root : "");
    snprintf(src->file, sizeof src->file, "%s", file ? file : "");
    snprintf(src->image_dir, sizeof src->image_dir, "%s", image_dir ? image_dir : "");
}

// A file: the layout from its name and first bytes.
static int detect_file(const char *path, const DsOptions *opt, DsSource *src, McErr *err) {
    char dir[DS_PATH_MAX], head[4097];
    dir_of(path, dir);
    const char *dataset = opt->dataset;
    FILE *f = fopen(path, "rb");
    if (!f) return mc_err(err, "%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = 0;
    if (ends_with(path, ".json")) {
        // Karpathy files start with {"images": ...; CoOp splits with "train".
        const char *im = strstr(head, "\"images\""), *tr = strstr(head, "\"train\"");
        if (im && (!tr || im < tr)) set_src(src, DS_LAYOUT_KARPATHY, dataset, dir, path, NULL);
        else set_src(src, DS_LAYOUT_COOP_JSON, dataset, dir, path, NULL);
        return 0;
    }
    if (ends_with(path, ".token")) {
        set_src(src, DS_LAYOUT_FLICKR_TOKEN, dataset ? dataset : "flickr30k", dir, path, NULL);
        return 0;
    }
    if (ends_with(path, ".mat"))
        return mc_err(err, "%s: a MAT file; give the folder holding jpg/, imagelabels.mat and "
                      "setid.mat", path);
    // A manifest: a caption manifest when its header names a caption column.
    const char *line = head;
    while (*line == '#' || (line[0] == '\xef' && line[1] == '\xbb')) {
        const char *nl = strchr(line, '\n');
        if (!nl) break;
        line = nl + 1;
    }
    int caption = !strncmp(line, "path\tcaption", 12);
    set_src(src, caption ? DS_LAYOUT_CAPTION_TSV : DS_LAYOUT_TSV, dataset, dir, path, NULL);
    return 0;
}

// Checks for one preset at folder r; fills src and returns 1 when found.
static int detect_preset(const char *name, const char *r, int native, int coop,
                         DsSource *src) {
    char b[DS_PATH_MAX], img[DS_PATH_MAX];
    if (!strcmp(name, "flowers102")) {
        if (native && flowers_native_ok(r)) {
            set_src(src, DS_LAYOUT_FLOWERS102, name, r, "", NULL);
            return 1;
        }
        if (coop && dir_in(r, "jpg") && file_in(r, "split_zhou_OxfordFlowers.json")) {
            set_src(src, DS_LAYOUT_COOP_JSON, name, r,
                    join_buf(b, r, "split_zhou_OxfordFlowers.json"), join_buf(img, r, "jpg"));
            return 1;
        }
    } else if (!strcmp(name, "dtd")) {
        if (native && dtd_native_ok(r)) {
            set_src(src, DS_LAYOUT_DTD, name, r, "", NULL);
            return 1;
        }
        if (coop && dir_in(r, "images") && file_in(r, "split_zhou_DescribableTextures.json")) {
            set_src(src, DS_LAYOUT_COOP_JSON, name, r,
                    join_buf(b, r, "split_zhou_DescribableTextures.json"),
                    join_buf(img, r, "images"));
            return 1;
        }
    } else if (!strcmp(name, "caltech101")) {
        // CoOp's split first: the native folder has no split of its own.
        if (coop && caltech_ok(r) && file_in(r, "split_zhou_Caltech101.json")) {
            set_src(src, DS_LAYOUT_COOP_JSON, name, r, join_buf(b, r, "split_zhou_Caltech101.json"),
                    join_buf(img, r, "101_ObjectCategories"));
            return 1;
        }
        if (native && caltech_ok(r)) {
            set_src(src, DS_LAYOUT_CALTECH101, name, r, "", NULL);
            return 1;
        }
    } else if (!strcmp(name, "sun397")) {
        if (native && sun_ok(r) && sun_file(r, "ClassName.txt", b)) {
            set_src(src, DS_LAYOUT_SUN397, name, r, "", NULL);
            return 1;
        }
        if (coop && sun_ok(r) && file_in(r, "split_zhou_SUN397.json")) {
            set_src(src, DS_LAYOUT_COOP_JSON, name, r, join_buf(b, r, "split_zhou_SUN397.json"),
                    join_buf(img, r, "SUN397"));
            return 1;
        }
    } else if (!strcmp(name, "flickr30k")) {
        if (file_in(r, "dataset_flickr30k.json")) {
            set_src(src, DS_LAYOUT_KARPATHY, name, r, join_buf(b, r, "dataset_flickr30k.json"),
                    NULL);
            return 1;
        }
        if (file_in(r, "results_20130124.token")) {
            set_src(src, DS_LAYOUT_FLICKR_TOKEN, name, r,
                    join_buf(b, r, "results_20130124.token"), NULL);
            return 1;
        }
    } else if (!strcmp(name, "eurosat")) {
        static const char *subs[] = {"2750", "EuroSAT_RGB", "EuroSAT"};
        if (coop && dir_in(r, "2750") && file_in(r, "split_zhou_EuroSAT.json")) {
            set_src(src, DS_LAYOUT_COOP_JSON, name, r, join_buf(b, r, "split_zhou_EuroSAT.json"),
                    join_buf(img, r, "2750"));
            return 1;
        }
        for (int i = 0; native && i < 3; i++)
            if (dir_in(r, subs[i])) {
                set_src(src, DS_LAYOUT_IMAGEFOLDER, name, join_buf(img, r, subs[i]), "", NULL);
                return 1;
            }
    }
    return 0;
}

static const char *PRESETS[] = {"flowers102", "dtd", "caltech101", "sun397", "flickr30k",
                                "eurosat"};
static const char *const NESTS[][5] = {
    {"", "flowers-102", "oxford_flowers", "flowers102", NULL},
    {"", "dtd", "dtd/dtd", NULL},
    {"", "caltech-101", "caltech101", "Caltech101", NULL},
    {"", "sun397", NULL},
    {"", "flickr30k", NULL},
    {"", "eurosat", "EuroSAT", NULL},
};

int ds_detect(const char *path, const DsOptions *opt, DsSource *src, McErr *err) {
    DsOptions none = {0};
    if (!opt) opt = &none;
    memset(src, 0, sizeof *src);
    if (ds_is_file(path)) return detect_file(path, opt, src, err);
    if (!ds_is_dir(path)) return mc_err(err, "%s: no such file or folder", path);
    const char *lay = opt->layout;
    int native = !lay || !strcmp(lay, "native"), coop = !lay || !strcmp(lay, "coop");
    char b[DS_PATH_MAX];

    // Forced generic layouts.
    if (lay && !strcmp(lay, "imagefolder")) {
        set_src(src, DS_LAYOUT_IMAGEFOLDER, opt->dataset, path, "", NULL);
        return 0;
    }
    if (lay && !strcmp(lay, "tsv")) {
        if (!file_in(path, "manifest.tsv"))
            return mc_err(err, "%s: no manifest.tsv here (give the manifest file)", path);
        return detect_file(join_buf(b, path, "manifest.tsv"), opt, src, err);
    }
    if (lay && !native && !coop)
        return mc_err(err, "layout '%s': expected native, coop, imagefolder or tsv", lay);

    // Presets (one when named, else all), each at its usual nesting.
    int found_preset = 0;
    for (size_t p = 0; p < sizeof PRESETS / sizeof PRESETS[0]; p++) {
        if (opt->dataset && strcmp(opt->dataset, PRESETS[p])) continue;
        found_preset = 1;
        for (int k = 0; NESTS[p][k]; k++) {
            char r[DS_PATH_MAX];
            if (NESTS[p][k][0]) join_buf(r, path, NESTS[p][k]);
            else snprintf(r, sizeof r, "%s", path);
            if (ds_is_dir(r) && detect_preset(PRESETS[p], r, native, coop, src)) return 0;
        }
    }
    if (opt->dataset && !found_preset)
        return mc_err(err, "--dataset %s: unknown (known: flowers102 dtd caltech101 sun397 "
                      "flickr30k eurosat)", opt->dataset);
    if (opt->dataset && strcmp(opt->dataset, "eurosat"))
        return mc_err(err, "%s: no %s layout found (looked for the native files and CoOp's "
                      "split_zhou_*.json, also one folder down); see datasets.md", path,
                      opt->dataset);

    // Generic: a lone CoOp split file, a manifest, else an ImageFolder.
    char **files;
    int nf = list_dir(path, 0, &files, err), coop_file = -1;
    if (nf < 0) return -1;
    for (int i = 0; i < nf; i++)
        if (!strncmp(files[i], "split_zhou_", 11) && ends_with(files[i], ".json")) coop_file = i;
    int rc = 0;
    if (coop && coop_file >= 0) {
        set_src(src, DS_LAYOUT_COOP_JSON, opt->dataset, path, join_buf(b, path, files[coop_file]),
                NULL);
    } else if (file_in(path, "manifest.tsv")) {
        rc = detect_file(join_buf(b, path, "manifest.tsv"), opt, src, err);
    } else {
        set_src(src, DS_LAYOUT_IMAGEFOLDER, opt->dataset, path, "", NULL);
    }
    ds_names_free(files, nf);
    return rc;
}

// Names requested by form for a known preset, applied after loading a
// generic layout (CoOp JSON, ImageFolder, TSV).
static int apply_names_options(Dataset *ds, const char *dataset, const DsOptions *opt,
                               McErr *err) {
    char b[DS_PATH_MAX];
    if (opt->classnames) return override_names(ds, opt->classnames, err);
    if (!opt->names_form || !strcmp(opt->names_form, "coop") || !dataset || !dataset[0])
        return 0;
    const char *f = ds_classnames_file(dataset, opt->names_form, b, sizeof b);
    if (!f) return mc_err(err, "no %s names list for %s (looked for %s_%s.txt in "
                          "$MCLIP_CLASSNAMES_DIR or datasets/classnames)", opt->names_form,
                          dataset, dataset, opt->names_form);
    return override_names(ds, f, err);
}

Dataset *ds_load_source(const DsSource *src, const DsOptions *opt, McErr *err) {
    DsOptions none = {0};
    if (!opt) opt = &none;
    Dataset *ds = NULL;
    const char *dataset = src->dataset[0] ? src->dataset : opt->dataset;
    int generic = 0;
    switch (src->layout) {
    case DS_LAYOUT_TSV:
        ds = ds_load_tsv(src->file, opt->classnames, opt, err);
        break;
    case DS_LAYOUT_IMAGEFOLDER:
        ds = ds_load_imagefolder(src->root, err);
        generic = 1;
        break;
    case DS_LAYOUT_COOP_JSON:
        ds = ds_load_coop_json(src->file, src->image_dir[0] ? src->image_dir : NULL, err);
        generic = 1;
        break;
    case DS_LAYOUT_FLOWERS102: ds = ds_load_flowers102(src->root, opt, err); break;
    case DS_LAYOUT_DTD: ds = ds_load_dtd(src->root, opt, err); break;
    case DS_LAYOUT_CALTECH101: ds = ds_load_caltech101(src->root, opt, err); break;
    case DS_LAYOUT_SUN397: ds = ds_load_sun397(src->root, opt, err); break;
    default:
        mc_err(err, "%s: a %s caption set, not a classification dataset",
               src->file[0] ? src->file : src->root, ds_layout_name(src->layout));
        return NULL;
    }
    if (!ds) return NULL;
    if (dataset && dataset[0]) {
        mc_free(ds->name);
        ds->name = dup_str(dataset);
    }
    if (generic && apply_names_options(ds, dataset, opt, err)) {
        ds_free(ds);
        return NULL;
    }
    return ds;
}

CaptionSet *cs_load_source(const DsSource *src, const DsOptions *opt, McErr *err) {
    switch (src->layout) {
    case DS_LAYOUT_KARPATHY: return cs_load_karpathy(src->file, NULL, err);
    case DS_LAYOUT_FLICKR_TOKEN: return cs_load_token(src->file, NULL, err);
    case DS_LAYOUT_CAPTION_TSV: return cs_load_tsv(src->file, opt, err);
    default:
        mc_err(err, "%s: a %s classification dataset, not a caption set",
               src->file[0] ? src->file : src->root, ds_layout_name(src->layout));
        return NULL;
    }
}

Dataset *ds_open(const char *path, const DsOptions *opt, McErr *err) {
    DsSource src;
    if (ds_detect(path, opt, &src, err)) return NULL;
    return ds_load_source(&src, opt, err);
}

CaptionSet *cs_open(const char *path, const DsOptions *opt, McErr *err) {
    DsSource src;
    if (ds_detect(path, opt, &src, err)) return NULL;
    return cs_load_source(&src, opt, err);
}

// ---- manifests ----

int ds_write_tsv(const Dataset *ds, const char *path, int split, const char *const *comments,
                 int n_comments, McErr *err) {
    Str out = {0};
    for (int i = 0; i < n_comments; i++) str_printf(&out, "# %s\n", comments[i]);
    str_cat(&out, "path\tlabel\tsplit\n");
    for (int64_t i = 0; i < ds->n_items; i++) {
        const DsItem *it = &ds->items[i];
        if (split >= 0 && it->split != split) continue;
        if (strchr(it->rel, '\t') || strchr(it->rel, '\n')) {
            mc_free(out.p);
            return mc_err(err, "%s: path '%s' contains a tab or newline", path, it->rel);
        }
        str_printf(&out, "%s\t%d\t%s\n", it->rel, it->label, ds_split_name(it->split));
    }
    int rc = ds_write_file(path, out.p, out.len, err);
    mc_free(out.p);
    return rc;
}

int ds_write_classnames(const Dataset *ds, const char *path, McErr *err) {
    Str out = {0};
    for (int c = 0; c < ds->n_classes; c++) {
        if (strchr(ds->classes[c], '\n') || (c == 0 && ds->classes[c][0] == '#')) {
            mc_free(out.p);
            return mc_err(err, "%s: class name '%s' cannot be written one per line", path,
                          ds->classes[c]);
        }
        str_printf(&out, "%s\n", ds->classes[c]);
    }
    int rc = ds_write_file(path, out.p ? out.p : "", out.len, err);
    mc_free(out.p);
    return rc;
}

void ds_fingerprint(const Dataset *ds, char hex[65]) {
    Hash h;
    hash_init(&h, 1);
    char num[48];
    for (int c = 0; c < ds->n_classes; c++) {
        hash_update(&h, "class\t", 6);
        hash_update(&h, ds->classes[c], strlen(ds->classes[c]));
        hash_update(&h, "\n", 1);
    }
    for (int64_t i = 0; i < ds->n_items; i++) {
        const DsItem *it = &ds->items[i];
        hash_update(&h, it->rel, strlen(it->rel));
        int n = snprintf(num, sizeof num, "\t%d\t%s\n", it->label, ds_split_name(it->split));
        hash_update(&h, num, (size_t)n);
    }
    hash_final_hex(&h, hex);
}
