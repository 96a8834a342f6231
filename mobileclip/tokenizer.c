// tokenizer.c - open_clip SimpleTokenizer: vocabulary loading, pre-split,
// byte-level BPE, encode and decode.
//
// Reference: open_clip 4.2.0.dev0 src/open_clip/tokenizer.py
// (bytes_to_unicode, SimpleTokenizer.__init__/bpe/encode/decode/__call__),
// ../shared/arch-spec.md section 8.  Text cleaning is textfix.c.
//
// Symbols are handled as vocabulary ids throughout: a word starts as the
// ids of its byte symbols (the last one with "</w>"), and merging the pair
// (a, b) of rank r yields the id of the string a+b.  This is the reference
// algorithm with strings replaced by their ids, which is exact because the
// encoder maps each string to one id.
#include "tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "textfix.h"

#define VOCAB_HASH_BITS 17          // 131,072 slots for 49,408 strings
#define MERGE_HASH_BITS 17          // 131,072 slots for 48,894 pairs
#define CACHE_SLOTS     8192        // per-word BPE cache, cleared when half full
#define CACHE_POOL      (1u << 20)  // bytes of cached words and ids before a clear
#define MAX_BPE_FILE    (64u << 20) // refuse decompressed vocabularies above 64 MB

struct Tokenizer {
    // Vocabulary strings (UTF-8 of the byte-symbol characters) in one blob.
    char *blob;                     // [sum of lengths + TOK_VOCAB NULs]
    uint32_t str_off[TOK_VOCAB];    // start of id's string in blob
    uint32_t str_len[TOK_VOCAB];
    // The raw bytes each id stands for (byte_decoder applied), for decode.
    uint8_t *raw;
    uint32_t raw_off[TOK_VOCAB], raw_len[TOK_VOCAB];
    // Encoder: string -> id (open addressing, -1 empty).
    int32_t vocab_slot[1u << VOCAB_HASH_BITS];
    // Merge ranks: (left id, right id) -> rank; merged id of each rank.
    uint64_t merge_key[1u << MERGE_HASH_BITS];
    int32_t merge_rank[1u << MERGE_HASH_BITS];
    int32_t merged_id[TOK_NMERGES];
    // Ids of the single-byte symbols, without and with "</w>".
    int32_t byte_id[256], byte_end_id[256];
    // Per-word cache: piece bytes -> ids, bounded (cleared when full).
    struct { uint64_t hash; uint32_t key_off, key_len, ids_off, ids_len; } cache[CACHE_SLOTS];
    int cache_used;
    uint8_t *cache_pool;
    uint32_t cache_pool_used;
    // Scratch reused across calls.
    CpBuf text, clean;
    ByteBuf piece;
    int32_t *word, *ids;
    size_t word_cap, ids_cap, ids_n;
};

// ---- hashing ----

static uint64_t hash_bytes(const void *p, size_t n) {
    // FNV-1a, 64 bit.
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    // splitmix64 finaliser.
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Slot of string s[0..n) in the encoder: its slot, or the empty slot where
// it would go.
static uint32_t vocab_find_slot(const Tokenizer *t, const char *s, size_t n) {
    uint32_t mask = (1u << VOCAB_HASH_BITS) - 1;
    uint32_t i = (uint32_t)hash_bytes(s, n) & mask;
    for (;; i = (i + 1) & mask) {
        int32_t id = t->vocab_slot[i];
        if (id < 0) return i;
        if (t->str_len[id] == n && memcmp(t->blob + t->str_off[id], s, n) == 0) return i;
    }
}

static int32_t vocab_lookup(const Tokenizer *t, const char *s, size_t n) {
    return t->vocab_slot[vocab_find_slot(t, s, n)];
}

static uint32_t merge_find_slot(const Tokenizer *t, uint64_t key) {
    uint32_t mask = (1u << MERGE_HASH_BITS) - 1;
    uint32_t i = (uint32_t)hash_u64(key) & mask;
    while (t->merge_rank[i] >= 0 && t->merge_key[i] != key) i = (i + 1) & mask;
    return i;
}

// Rank of the adjacent pair (a, b), or -1 when it is not a merge.
static int32_t merge_rank(const Tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    return t->merge_rank[merge_find_slot(t, key)];
}

// ---- loading ----

// bytes_to_unicode(): the printable bytes 33-126, 161-172, 174-255 map to
// the same code point and come first in the vocabulary; the other 68 bytes
// map to U+0100, U+0101, ... in byte order and follow.
static void byte_symbols(uint32_t cp_of_byte[256], int order[256]) {
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        if (printable) { cp_of_byte[b] = (uint32_t)b; order[n++] = b; }
    }
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        if (!printable) { cp_of_byte[b] = 256u + (uint32_t)extra++; order[n++] = b; }
    }
}

// Whole file through zlib (gzip or plain), NUL-terminated.  NULL on error.
static char *read_gz(const char *path, size_t *len, McErr *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        mc_err(err, "%s: cannot open the BPE vocabulary (weights/download.sh vocab fetches it)",
               path);
        return NULL;
    }
    size_t cap = 4u << 20, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            char *b2 = cap < MAX_BPE_FILE ? realloc(buf, cap * 2 + 1) : NULL;
            if (!b2) {
                mc_err(err, "%s: decompressed vocabulary larger than %u bytes; expected about "
                       "1.6 MB", path, MAX_BPE_FILE);
                free(buf), gzclose(f);
                return NULL;
            }
            buf = b2, cap *= 2;
        }
        // zlib may report a cut-off stream as the end (0) with an error set.
        int got = gzread(f, buf + n, (unsigned)(cap - n)), zerr = Z_OK;
        const char *why = gzerror(f, &zerr);
        if (got < 0 || zerr != Z_OK) {
            mc_err(err, "%s: gzip read error: %s (truncated or damaged file?)", path, why);
            free(buf), gzclose(f);
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    gzclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

// Append string s[0..n) as vocabulary entry id (the blob has room).
static void add_string(Tokenizer *t, int32_t id, const char *s, size_t n, size_t *used) {
    t->str_off[id] = (uint32_t)*used;
    t->str_len[id] = (uint32_t)n;
    memcpy(t->blob + *used, s, n);
    t->blob[*used + n] = 0;
    *used += n + 1;
}

// Split merge line `line` (no newline) into its two fields.  0 or -1.
static int split_merge(const char *line, size_t n, const char **a, size_t *na,
                       const char **b, size_t *nb) {
    // Fields are separated by spaces, tabs or '\r' (Python str.split()).
    const char *f[3];
    size_t fl[3];
    int k = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
        if (i >= n) break;
        size_t s = i;
        while (i < n && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') i++;
        if (k == 3) return -1;
        f[k] = line + s, fl[k] = i - s, k++;
    }
    if (k != 2) return -1;
    *a = f[0], *na = fl[0], *b = f[1], *nb = fl[1];
    return 0;
}

// Build the 49,408 vocabulary strings from the merge lines.  0 or -1.
static int build_strings(Tokenizer *t, const char *path, char *text, size_t len,
                         const char **la, size_t *lna, const char **lb, size_t *lnb, McErr *err) {
    // Lines 2..48895 hold the merges used (line 1 is a version header).
    char *p = text, *end = text + len;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return mc_err(err, "%s: no newline; expected a BPE merges file", path);
    p = nl + 1;
    for (int r = 0; r < TOK_NMERGES; r++) {
        if (p >= end)
            return mc_err(err, "%s: %d merge lines, expected at least %d (is it "
                          TOK_BPE_FILE "?)", path, r, TOK_NMERGES);
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (split_merge(p, n, &la[r], &lna[r], &lb[r], &lnb[r]) < 0)
            return mc_err(err, "%s: line %d: expected two space-separated symbols, found '%.*s'",
                          path, r + 2, (int)(n < 60 ? n : 60), p);
        p = nl ? nl + 1 : end;
    }
    // Blob: byte symbols (<= 2 UTF-8 bytes each, + "</w>"), merges, specials.
    size_t need = 256 * 3 + 256 * 7 + 64, used = 0;
    for (int r = 0; r < TOK_NMERGES; r++) need += lna[r] + lnb[r] + 1;
    t->blob = malloc(need);
    if (!t->blob) return mc_err(err, "%s: out of memory for the vocabulary", path);
    uint32_t cp_of_byte[256];
    int order[256];
    byte_symbols(cp_of_byte, order);
    for (int i = 0; i < 512; i++) {
        // Byte symbol i (then with "</w>" for i >= 256).
        char s[8];
        CpBuf one = {0};
        ByteBuf u = {0};
        cp_push(&one, cp_of_byte[order[i % 256]]);
        tf_utf8_encode(one.v, 1, &u);
        memcpy(s, u.v, u.n);
        size_t n = u.n;
        if (i >= 256) memcpy(s + n, "</w>", 4), n += 4;
        add_string(t, i, s, n, &used);
        cp_free(&one), bb_free(&u);
    }
    for (int r = 0; r < TOK_NMERGES; r++) {
        // Merge r: the concatenation of its two symbols.
        int32_t id = 512 + r;
        t->str_off[id] = (uint32_t)used;
        t->str_len[id] = (uint32_t)(lna[r] + lnb[r]);
        memcpy(t->blob + used, la[r], lna[r]);
        memcpy(t->blob + used + lna[r], lb[r], lnb[r]);
        t->blob[used + lna[r] + lnb[r]] = 0;
        used += lna[r] + lnb[r] + 1;
    }
    add_string(t, TOK_SOT, "<start_of_text>", 15, &used);
    add_string(t, TOK_EOT, "<end_of_text>", 13, &used);
    return 0;
}

// Encoder and merge tables; later duplicates win, as in the reference's
// dict(zip(...)).  0 or -1.
static int build_maps(Tokenizer *t, const char *path, const char **la, const size_t *lna,
                      const char **lb, const size_t *lnb, McErr *err) {
    memset(t->vocab_slot, 0xFF, sizeof t->vocab_slot);
    for (int32_t id = 0; id < TOK_VOCAB; id++)
        t->vocab_slot[vocab_find_slot(t, t->blob + t->str_off[id], t->str_len[id])] = id;
    memset(t->merge_rank, 0xFF, sizeof t->merge_rank);
    for (int r = 0; r < TOK_NMERGES; r++) {
        int32_t a = vocab_lookup(t, la[r], lna[r]), b = vocab_lookup(t, lb[r], lnb[r]);
        if (a < 0 || b < 0)
            return mc_err(err, "%s: line %d: symbol '%.*s' is neither a byte symbol nor made by "
                          "an earlier merge", path, r + 2, (int)(a < 0 ? lna[r] : lnb[r]),
                          a < 0 ? la[r] : lb[r]);
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        uint32_t slot = merge_find_slot(t, key);
        t->merge_key[slot] = key;
        t->merge_rank[slot] = r;
        t->merged_id[r] = vocab_lookup(t, t->blob + t->str_off[512 + r], t->str_len[512 + r]);
    }
    uint32_t cp_of_byte[256];
    int order[256];
    byte_symbols(cp_of_byte, order);
    for (int i = 0; i < 256; i++) {
        int b = order[i];
        t->byte_id[b] = vocab_lookup(t, t->blob + t->str_off[i], t->str_len[i]);
        t->byte_end_id[b] = vocab_lookup(t, t->blob + t->str_off[256 + i], t->str_len[256 + i]);
    }
    return 0;
}

// Raw bytes of every id: each character of its string mapped back through
// bytes_to_unicode.  0 or -1.
static int build_raw(Tokenizer *t, const char *path, McErr *err) {
    uint32_t cp_of_byte[256];
    int order[256], byte_of_cp[512];
    byte_symbols(cp_of_byte, order);
    for (int i = 0; i < 512; i++) byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) byte_of_cp[cp_of_byte[b]] = b;
    size_t total = 0;
    for (int id = 0; id < TOK_VOCAB; id++) total += t->str_len[id];
    t->raw = malloc(total ? total : 1);
    if (!t->raw) return mc_err(err, "%s: out of memory for the vocabulary", path);
    CpBuf cps = {0};
    size_t used = 0;
    for (int id = 0; id < TOK_VOCAB; id++) {
        cps.n = 0;
        tf_utf8_decode((const uint8_t *)t->blob + t->str_off[id], t->str_len[id], &cps);
        t->raw_off[id] = (uint32_t)used;
        for (size_t k = 0; k < cps.n; k++) {
            int b = cps.v[k] < 512 ? byte_of_cp[cps.v[k]] : -1;
            if (b < 0) {
                uint32_t cp = cps.v[k];   // read before the buffer is freed
                cp_free(&cps);
                return mc_err(err, "%s: vocabulary entry %d ('%s') holds U+%04X, which is not a "
                              "byte symbol", path, id, t->blob + t->str_off[id], cp);
            }
            t->raw[used++] = (uint8_t)b;
        }
        t->raw_len[id] = (uint32_t)(used - t->raw_off[id]);
    }
    cp_free(&cps);
    return 0;
}

Tokenizer *tok_load(const char *path, McErr *err) {
    size_t len = 0;
    char *text = read_gz(path, &len, err);
    if (!text) return NULL;
    Tokenizer *t = calloc(1, sizeof *t);
    const char **la = malloc(TOK_NMERGES * sizeof *la), **lb = malloc(TOK_NMERGES * sizeof *lb);
    size_t *lna = malloc(TOK_NMERGES * sizeof *lna), *lnb = malloc(TOK_NMERGES * sizeof *lnb);
    if (t) t->cache_pool = malloc(CACHE_POOL);
    int ok = t && la && lb && lna && lnb && t->cache_pool;
    if (!ok) mc_err(err, "%s: out of memory loading the vocabulary", path);
    ok = ok && build_strings(t, path, text, len, la, lna, lb, lnb, err) == 0;
    ok = ok && build_maps(t, path, la, lna, lb, lnb, err) == 0;
    ok = ok && build_raw(t, path, err) == 0;
    free(la), free(lb), free(lna), free(lnb), free(text);
    if (!ok) { tok_free(t); return NULL; }
    return t;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    free(t->blob), free(t->raw), free(t->cache_pool);
    cp_free(&t->text), cp_free(&t->clean), bb_free(&t->piece);
    free(t->word), free(t->ids);
    free(t);
}

int tok_find_vocab(char *buf, size_t len, McErr *err) {
    const char *env = getenv("MCLIP_BPE");
    const char *paths[3] = {env && *env ? env : NULL, "./weights/" TOK_BPE_FILE,
                            "../shared/clip/" TOK_BPE_FILE};
    for (int i = 0; i < 3; i++) {
        FILE *f = paths[i] ? fopen(paths[i], "rb") : NULL;
        if (!f) continue;
        fclose(f);
        if (strlen(paths[i]) >= len) return mc_err(err, "%s: path too long", paths[i]);
        memcpy(buf, paths[i], strlen(paths[i]) + 1);
        return 0;
    }
    return mc_err(err, "BPE vocabulary " TOK_BPE_FILE " not found; tried %s%s, %s, %s. "
                  "Run weights/download.sh vocab to fetch it (or set MCLIP_BPE to its path)",
                  env && *env ? "$MCLIP_BPE=" : "$MCLIP_BPE (unset)", env && *env ? env : "",
                  paths[1], paths[2]);
}

// ---- BPE ----

static void ensure_i32(int32_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    int32_t *q = realloc(*p, c * sizeof *q);
    if (!q) { fprintf(stderr, "tokenizer: out of memory\n"); abort(); }
    *p = q, *cap = c;
}

static void push_id(Tokenizer *t, int32_t id) {
    ensure_i32(&t->ids, &t->ids_cap, t->ids_n + 1);
    t->ids[t->ids_n++] = id;
}

// Greedy BPE of one piece (its UTF-8 bytes): repeatedly merge every
// non-overlapping occurrence, left to right, of the adjacent pair with the
// lowest rank until no pair is a merge.  Appends the ids to t->ids.
static void bpe_piece(Tokenizer *t, const uint8_t *b, size_t n) {
    ensure_i32(&t->word, &t->word_cap, n);
    int32_t *w = t->word;
    size_t m = n;
    for (size_t i = 0; i < n; i++) w[i] = i + 1 < n ? t->byte_id[b[i]] : t->byte_end_id[b[i]];
    while (m > 1) {
        // The lowest-ranked pair present.
        int32_t best = INT32_MAX, first = -1, second = -1;
        for (size_t i = 0; i + 1 < m; i++) {
            int32_t r = merge_rank(t, w[i], w[i + 1]);
            if (r >= 0 && r < best) best = r, first = w[i], second = w[i + 1];
        }
        if (best == INT32_MAX) break;
        // Merge all its occurrences, scanning left to right.
        size_t j = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && w[i] == first && w[i + 1] == second) {
                w[j++] = t->merged_id[best];
                i += 2;
            } else {
                w[j++] = w[i++];
            }
        }
        m = j;
    }
    for (size_t i = 0; i < m; i++) push_id(t, w[i]);
}

// BPE through the bounded cache.
static void bpe_cached(Tokenizer *t, const uint8_t *b, size_t n) {
    uint64_t h = hash_bytes(b, n);
    uint32_t mask = CACHE_SLOTS - 1, i = (uint32_t)h & mask;
    for (; t->cache[i].key_len; i = (i + 1) & mask) {
        if (t->cache[i].hash != h || t->cache[i].key_len != n ||
            memcmp(t->cache_pool + t->cache[i].key_off, b, n) != 0) continue;
        const int32_t *ids = (const int32_t *)(t->cache_pool + t->cache[i].ids_off);
        for (uint32_t k = 0; k < t->cache[i].ids_len; k++) push_id(t, ids[k]);
        return;
    }
    size_t first = t->ids_n;
    bpe_piece(t, b, n);
    size_t nids = t->ids_n - first;
    // Store key and ids (ids 4-byte aligned); clear the cache when full.
    size_t key_off = t->cache_pool_used, ids_off = (key_off + n + 3) & ~(size_t)3;
    size_t end = ids_off + nids * sizeof(int32_t);
    if (end > CACHE_POOL || t->cache_used >= CACHE_SLOTS / 2) {
        if (n + 4 + nids * sizeof(int32_t) > CACHE_POOL / 4) return;   // too big to cache
        memset(t->cache, 0, sizeof t->cache);
        t->cache_used = 0, t->cache_pool_used = 0;
        key_off = 0, ids_off = (n + 3) & ~(size_t)3, end = ids_off + nids * sizeof(int32_t);
        for (i = (uint32_t)h & mask; t->cache[i].key_len; i = (i + 1) & mask) {}
    }
    memcpy(t->cache_pool + key_off, b, n);
    memcpy(t->cache_pool + ids_off, t->ids + first, nids * sizeof(int32_t));
    t->cache[i].hash = h;
    t->cache[i].key_off = (uint32_t)key_off, t->cache[i].key_len = (uint32_t)n;
    t->cache[i].ids_off = (uint32_t)ids_off, t->cache[i].ids_len = (uint32_t)nids;
    t->cache_used++;
    t->cache_pool_used = (uint32_t)end;
}

// ---- pre-split (the reference's regex, IGNORECASE) ----

// Does the literal lit (lowercase ASCII letters match case-insensitively)
// occur at s[i..]?  Returns its length or 0.
static size_t literal_at(const uint32_t *s, size_t n, size_t i, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++) {
        if (i + k >= n) return 0;
        char c = lit[k];
        int ok = c >= 'a' && c <= 'z' ? uc_matches_ascii_nocase(s[i + k], c)
                                      : s[i + k] == (uint32_t)(unsigned char)c;
        if (!ok) return 0;
    }
    return k;
}

// Length of the piece starting at s[i], or 0 when s[i] starts none (it is
// skipped).  Alternatives in the reference order: special tokens,
// contractions, \p{L}+, one \p{N}, [^\s\p{L}\p{N}]+.
static size_t piece_at(const uint32_t *s, size_t n, size_t i) {
    static const char *const literals[] = {"<start_of_text>", "<end_of_text>", "'s", "'t",
                                           "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t k = 0; k < sizeof literals / sizeof literals[0]; k++) {
        size_t m = literal_at(s, n, i, literals[k]);
        if (m) return m;
    }
    int cls = uc_split_class(s[i]);
    if (cls == UC_SPLIT_NUMBER) return 1;
    if (cls == UC_SPLIT_NONE) return 0;
    size_t j = i + 1;
    while (j < n && uc_split_class(s[j]) == cls) j++;
    return j - i;
}

// Clean, split and BPE text[0..len) into t->ids (t->ids_n of them).
static void encode_all(Tokenizer *t, const char *text, size_t len) {
    t->text.n = 0;
    t->ids_n = 0;
    tf_utf8_decode((const uint8_t *)text, len, &t->text);
    tf_clean(t->text.v, t->text.n, &t->clean, NULL);
    const uint32_t *s = t->clean.v;
    size_t n = t->clean.n;
    for (size_t i = 0; i < n;) {
        size_t m = piece_at(s, n, i);
        if (!m) { i++; continue; }
        // Piece bytes; the exact special strings are ids of their own.
        t->piece.n = 0;
        tf_utf8_encode(s + i, m, &t->piece);
        const char *p = (const char *)t->piece.v;
        if (t->piece.n == 15 && memcmp(p, "<start_of_text>", 15) == 0) push_id(t, TOK_SOT);
        else if (t->piece.n == 13 && memcmp(p, "<end_of_text>", 13) == 0) push_id(t, TOK_EOT);
        else bpe_cached(t, t->piece.v, t->piece.n);
        i += m;
    }
}

int tok_encode_raw_n(Tokenizer *t, const char *text, size_t len, int32_t *ids, int max) {
    encode_all(t, text, len);
    for (size_t k = 0; k < t->ids_n && (int)k < max; k++) ids[k] = t->ids[k];
    return t->ids_n > INT_MAX ? INT_MAX : (int)t->ids_n;
}

int tok_encode_raw(Tokenizer *t, const char *text, int32_t *ids, int max) {
    return tok_encode_raw_n(t, text, strlen(text), ids, max);
}

int tok_encode(Tokenizer *t, const char *text, int32_t ids[TOK_CONTEXT]) {
    encode_all(t, text, strlen(text));
    // [SOT] + ids + [EOT], cut to 77 with EOT last, zero padded.
    size_t n = t->ids_n;
    ids[0] = TOK_SOT;
    size_t keep = n < TOK_CONTEXT - 2 ? n : TOK_CONTEXT - 2;
    for (size_t k = 0; k < keep; k++) ids[1 + k] = t->ids[k];
    ids[1 + keep] = TOK_EOT;
    for (size_t k = keep + 2; k < TOK_CONTEXT; k++) ids[k] = 0;
    return n + 2 > INT_MAX ? INT_MAX : (int)(n + 2);
}

// ---- decode ----

char *tok_decode(const Tokenizer *t, const int32_t *ids, int n, size_t *out_len) {
    // Raw bytes of all ids.
    ByteBuf raw = {0}, out = {0};
    for (int k = 0; k < n; k++) {
        if (ids[k] < 0 || ids[k] >= TOK_VOCAB) { bb_free(&raw); return NULL; }
        const uint8_t *r = t->raw + t->raw_off[ids[k]];
        for (uint32_t j = 0; j < t->raw_len[ids[k]]; j++) bb_push(&raw, r[j]);
    }
    // UTF-8 with replacement, then "</w>" -> " ".
    CpBuf cps = {0};
    tf_utf8_decode(raw.v, raw.n, &cps);
    size_t j = 0;
    for (size_t i = 0; i < cps.n; i++) {
        const uint32_t *c = cps.v + i;
        if (i + 3 < cps.n && c[0] == '<' && c[1] == '/' && c[2] == 'w' && c[3] == '>') {
            cps.v[j++] = ' ';
            i += 3;
        } else {
            cps.v[j++] = c[0];
        }
    }
    cps.n = j;
    tf_utf8_encode(cps.v, cps.n, &out);
    bb_push(&out, 0);
    if (out_len) *out_len = out.n - 1;
    cp_free(&cps), bb_free(&raw);
    return (char *)out.v;
}

const char *tok_token_str(const Tokenizer *t, int32_t id) {
    return id < 0 || id >= TOK_VOCAB ? NULL : t->blob + t->str_off[id];
}
