// textfix.c - open_clip's text cleaning (ftfy.fix_text, html.unescape,
// whitespace collapse, str.lower) on code point arrays.
//
// Reference: open_clip 4.2.0.dev0 tokenizer.py `_clean_lower`, ftfy 6.3.1
// (__init__.py fix_text / fix_and_explain / fix_encoding, fixes.py,
// chardata.py, badness.py, bad_codecs/), CPython 3.11 html/__init__.py and
// Objects/unicodeobject.c (lower, final sigma).  Each step below names the
// function it reproduces.  Regular expressions of the reference are
// evaluated by hand-written matchers that follow Python re's leftmost,
// first-alternative-wins rules; where that matters a comment says so.
//
// ftfy coverage (details in mobileclip/TOKENIZER.md): everything that
// fix_text does with default settings on text that arrives as valid UTF-8,
// i.e. HTML unescaping (only when the line has no '<'), mojibake repair
// (the ten single-byte codecs, restore_byte_a0, lossy sequences, CESU-8 and
// Java-null UTF-8 variants, inconsistent UTF-8, Latin-1 vs Windows-1252,
// C1 controls), ligatures, character width, curly quotes, line breaks,
// terminal escapes, control characters and NFC.  Not reproduced: the
// surrogate repair (UTF-8 input cannot carry surrogates; ill-formed bytes
// become U+FFFD on decoding, as Python's errors="replace" would).
#include "textfix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"

#define REPLACEMENT 0xFFFDu
#define NO_CHAR 0xFFFFFFFFu   // "past the end" in matchers

// ---- buffers ----

static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > ((size_t)-1) / 2 / elem) { fprintf(stderr, "textfix: size overflow\n"); abort(); }
        c *= 2;
    }
    void *q = realloc(p, c * elem);
    if (!q) { fprintf(stderr, "textfix: out of memory (%zu bytes)\n", c * elem); abort(); }
    *cap = c;
    return q;
}

void cp_push(CpBuf *b, uint32_t c) {
    b->v = grow(b->v, &b->cap, b->n + 1, sizeof *b->v);
    b->v[b->n++] = c;
}

void cp_append(CpBuf *b, const uint32_t *src, size_t n) {
    if (!n) return;
    b->v = grow(b->v, &b->cap, b->n + n, sizeof *b->v);
    memcpy(b->v + b->n, src, n * sizeof *src);
    b->n += n;
}

void cp_free(CpBuf *b) { free(b->v); b->v = NULL; b->n = b->cap = 0; }

void bb_push(ByteBuf *b, uint8_t c) {
    b->v = grow(b->v, &b->cap, b->n + 1, 1);
    b->v[b->n++] = c;
}

void bb_free(ByteBuf *b) { free(b->v); b->v = NULL; b->n = b->cap = 0; }

static void cp_swap(CpBuf *a, CpBuf *b) { CpBuf t = *a; *a = *b; *b = t; }

static int cp_equal(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

// ---- UTF-8 ----

// Valid range of the second byte of a sequence led by b (Unicode table 3-7).
static void utf8_second_range(uint8_t b, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80, *hi = 0xBF;
    if (b == 0xE0) *lo = 0xA0;
    else if (b == 0xED) *hi = 0x9F;
    else if (b == 0xF0) *lo = 0x90;
    else if (b == 0xF4) *hi = 0x8F;
}

// Decode one scalar at s[0..n): returns the bytes consumed and sets *cp;
// for an ill-formed sequence *cp = NO_CHAR and the return value is the
// length of its maximal subpart (at least 1).
static size_t utf8_step(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    int len = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3
            : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    *cp = NO_CHAR;
    if (!len) return 1;
    uint8_t lo, hi;
    utf8_second_range(b, &lo, &hi);
    uint32_t v = b & (0xFF >> (len + 1));
    for (int k = 1; k < len; k++) {
        // Every byte after the lead must be a continuation in range.
        if ((size_t)k >= n || s[k] < (k == 1 ? lo : 0x80) || s[k] > (k == 1 ? hi : 0xBF))
            return (size_t)k;
        v = v << 6 | (s[k] & 0x3F);
    }
    *cp = v;
    return (size_t)len;
}

size_t tf_utf8_decode(const uint8_t *s, size_t n, CpBuf *out) {
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_step(s + i, n - i, &cp);
        if (cp == NO_CHAR) { cp = REPLACEMENT; bad++; }
        cp_push(out, cp);
    }
    return bad;
}

// Strict decode (Python's "utf-8" codec, errors="strict"): 0 on success,
// -1 on the first ill-formed sequence.
static int utf8_decode_strict(const uint8_t *s, size_t n, CpBuf *out) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_step(s + i, n - i, &cp);
        if (cp == NO_CHAR) return -1;
        cp_push(out, cp);
    }
    return 0;
}

void tf_utf8_encode(const uint32_t *s, size_t n, ByteBuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = REPLACEMENT;
        if (c < 0x80) {
            bb_push(out, (uint8_t)c);
        } else if (c < 0x800) {
            bb_push(out, (uint8_t)(0xC0 | c >> 6));
            bb_push(out, (uint8_t)(0x80 | (c & 0x3F)));
        } else if (c < 0x10000) {
            bb_push(out, (uint8_t)(0xE0 | c >> 12));
            bb_push(out, (uint8_t)(0x80 | (c >> 6 & 0x3F)));
            bb_push(out, (uint8_t)(0x80 | (c & 0x3F)));
        } else {
            bb_push(out, (uint8_t)(0xF0 | c >> 18));
            bb_push(out, (uint8_t)(0x80 | (c >> 12 & 0x3F)));
            bb_push(out, (uint8_t)(0x80 | (c >> 6 & 0x3F)));
            bb_push(out, (uint8_t)(0x80 | (c & 0x3F)));
        }
    }
}

// ---- table lookups ----

static int in_ranges(const UcRange *r, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

// Index of the entry with .cp == cp in a table sorted by cp, or -1.
static int find_pair(const UcPair *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < t[mid].cp) hi = mid - 1;
        else if (cp > t[mid].cp) lo = mid + 1;
        else return mid;
    }
    return -1;
}

static const UcMap3 *find_map3(const UcMap3 *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < t[mid].cp) hi = mid - 1;
        else if (cp > t[mid].cp) lo = mid + 1;
        else return &t[mid];
    }
    return NULL;
}

int uc_split_class(uint32_t cp) {
    // Last run whose start is <= cp.
    int lo = 0, hi = uc_split_runs_n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if ((uc_split_runs[mid] >> 2) <= cp) lo = mid;
        else hi = mid - 1;
    }
    return (int)(uc_split_runs[lo] & 3);
}

int uc_matches_ascii_nocase(uint32_t cp, char x) {
    if (cp == (uint32_t)(unsigned char)x) return 1;
    int k = find_pair(uc_ascii_folds, uc_ascii_folds_n, cp);
    return k >= 0 && uc_ascii_folds[k].value == (uint32_t)(unsigned char)x;
}

int uc_is_space(uint32_t cp) { return in_ranges(uc_space, uc_space_n, cp); }

int uc_lower(uint32_t cp, uint32_t out[3]) {
    // Multi-code-point results first (few), then the one-to-one runs.
    for (int k = 0; k < uc_lower_multi_n; k++) {
        if (uc_lower_multi[k].cp != cp) continue;
        int m = 0;
        while (m < 3 && uc_lower_multi[k].to[m]) { out[m] = uc_lower_multi[k].to[m]; m++; }
        return m;
    }
    int lo = 0, hi = uc_lower_runs_n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (uc_lower_runs[mid].start <= cp) lo = mid;
        else hi = mid - 1;
    }
    const UcLowerRun *r = &uc_lower_runs[lo];
    out[0] = cp;
    if (cp >= r->start) {
        uint32_t off = cp - r->start;
        if (off % r->stride == 0 && off / r->stride < r->count)
            out[0] = (uint32_t)((int64_t)cp + r->delta);
    }
    return 1;
}

static int ccc_of(uint32_t cp) {
    int lo = 0, hi = uc_ccc_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < uc_ccc[mid].lo) hi = mid - 1;
        else if (cp > uc_ccc[mid].hi) lo = mid + 1;
        else return uc_ccc[mid].ccc;
    }
    return 0;
}

static int is_ascii_alpha(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_ascii_lower(uint32_t c) { return c >= 'a' && c <= 'z'; }
static int is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }

static int is_ascii_hex(uint32_t c) {
    return is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

// ---- html.unescape (CPython 3.11 html/__init__.py) ----

// Compare code points s[0..n) with the C string name (ASCII), like strcmp.
static int cmp_name(const uint32_t *s, size_t n, const char *name) {
    for (size_t i = 0;; i++) {
        uint32_t a = i < n ? s[i] : 0;
        uint32_t b = (unsigned char)name[i];
        if (a != b) return a < b ? -1 : 1;
        if (!a) return 0;
    }
}

// Entity whose name (without ';') equals s[0..n), or NULL.
static const HtmlEntity *find_entity(const uint32_t *s, size_t n) {
    int lo = 0, hi = html_entities_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = cmp_name(s, n, html_entities[mid].name);
        if (c < 0) hi = mid - 1;
        else if (c > 0) lo = mid + 1;
        else return &html_entities[mid];
    }
    return NULL;
}

static int is_charref_stop(uint32_t c) {
    return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' ||
           c == '#' || c == ';';
}

static void push_entity_value(CpBuf *out, const HtmlEntity *e) {
    cp_push(out, e->v0);
    if (e->v1) cp_push(out, e->v1);
}

// Numeric reference value num (saturated above 0x10FFFF) -> its text, per
// _replace_charref: the HTML5 table for 0x00, 0x0D, 0x80..0x9F, U+FFFD for
// surrogates and out-of-range values, nothing for the invalid code points.
static void push_charref(CpBuf *out, uint32_t num) {
    if (num == 0) { cp_push(out, REPLACEMENT); return; }
    if (num == 0x0D) { cp_push(out, 0x0D); return; }
    if (num >= 0x80 && num <= 0x9F) {
        // Windows-1252 meaning; the five undefined bytes stay as C1 controls.
        uint32_t c = ftfy_codec_high[1][num - 0x80];
        cp_push(out, c);
        return;
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) { cp_push(out, REPLACEMENT); return; }
    if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
        num == 0x7F || (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        return;
    cp_push(out, num);
}

// Try the reference pattern  &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// at s[i] == '&'.  Appends the replacement and returns the match length, or
// returns 0 (no match, nothing appended).
static size_t unescape_at(const uint32_t *s, size_t n, size_t i, CpBuf *out) {
    size_t j = i + 1;
    if (j < n && s[j] == '#') {
        // Numeric: decimal or hexadecimal digits, then an optional ';'.
        int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
        size_t k = j + 1 + (size_t)hex;
        uint32_t num = 0;
        size_t start = k;
        while (k < n && (hex ? is_ascii_hex(s[k]) : is_ascii_digit(s[k]))) {
            uint32_t d = is_ascii_digit(s[k]) ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10;
            num = num > 0x110000 ? num : num * (hex ? 16 : 10) + d;   // saturate
            k++;
        }
        if (k == start) return 0;
        if (k < n && s[k] == ';') k++;
        push_charref(out, num);
        return k - i;
    }
    // Named: up to 32 characters that are not \t \n \f space < & # ;
    size_t k = j;
    while (k < n && k - j < 32 && !is_charref_stop(s[k])) k++;
    if (k == j) return 0;
    size_t name_n = k - j;
    int semi = k < n && s[k] == ';';
    // The whole name (with its ';' when present) is an entity.
    const HtmlEntity *e = find_entity(s + j, name_n);
    if (e && (e->flags & (semi ? HTML_ENT_SEMI : HTML_ENT_BARE))) {
        push_entity_value(out, e);
        return name_n + 1 + (size_t)semi;
    }
    // Else the longest prefix of length >= 2 that is an entity without ';';
    // the rest of the match is kept as text.
    size_t total = name_n + (size_t)semi;
    for (size_t x = total - 1; x >= 2; x--) {
        e = find_entity(s + j, x);
        if (e && (e->flags & HTML_ENT_BARE)) {
            push_entity_value(out, e);
            cp_append(out, s + j + x, total - x);
            return total + 1;
        }
    }
    cp_push(out, '&');
    cp_append(out, s + j, total);
    return total + 1;
}

void tf_html_unescape(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n;) {
        size_t m = s[i] == '&' ? unescape_at(s, n, i, out) : 0;
        if (m) {
            i += m;
        } else {
            cp_push(out, s[i]);
            i++;
        }
    }
}

// ---- whitespace and lowercase ----

void tf_whitespace_clean(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n;) {
        // Skip a whitespace run, then copy a word, one space between words.
        while (i < n && uc_is_space(s[i])) i++;
        if (i >= n) break;
        if (out->n) cp_push(out, ' ');
        while (i < n && !uc_is_space(s[i])) cp_push(out, s[i++]);
    }
}

// Final-sigma context (CPython handle_capital_sigma): a cased letter before
// U+03A3 (skipping case-ignorables) and none after it.
static int final_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && in_ranges(uc_case_ignorable, uc_case_ignorable_n, s[j - 1])) j--;
    if (j == 0 || !in_ranges(uc_cased, uc_cased_n, s[j - 1])) return 0;
    j = i + 1;
    while (j < n && in_ranges(uc_case_ignorable, uc_case_ignorable_n, s[j])) j++;
    return j == n || !in_ranges(uc_cased, uc_cased_n, s[j]);
}

void tf_lower(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) { cp_push(out, c >= 'A' && c <= 'Z' ? c + 32 : c); continue; }
        if (c == 0x3A3) { cp_push(out, final_sigma(s, n, i) ? 0x3C2 : 0x3C3); continue; }
        uint32_t lo[3];
        int m = uc_lower(c, lo);
        cp_append(out, lo, (size_t)m);
    }
}

// ---- NFC ----

#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_NV 21u
#define HANGUL_NT 28u
#define HANGUL_NS (19u * 21u * 28u)

static const UcDecomp *find_decomp(uint32_t cp) {
    int lo = 0, hi = uc_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < uc_decomp[mid].cp) hi = mid - 1;
        else if (cp > uc_decomp[mid].cp) lo = mid + 1;
        else return &uc_decomp[mid];
    }
    return NULL;
}

// Full canonical decomposition of cp, appended to out.
static void decompose(uint32_t cp, CpBuf *out) {
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_NS) {
        uint32_t k = cp - HANGUL_S;
        cp_push(out, HANGUL_L + k / (HANGUL_NV * HANGUL_NT));
        cp_push(out, HANGUL_V + k % (HANGUL_NV * HANGUL_NT) / HANGUL_NT);
        if (k % HANGUL_NT) cp_push(out, HANGUL_T + k % HANGUL_NT);
        return;
    }
    const UcDecomp *d = cp >= 0xC0 ? find_decomp(cp) : NULL;
    if (!d) { cp_push(out, cp); return; }
    decompose(d->first, out);
    if (d->second) decompose(d->second, out);
}

// Primary composite of (a, b), or 0.
static uint32_t compose(uint32_t a, uint32_t b) {
    // Hangul LV and LVT syllables are algorithmic.
    if (a >= HANGUL_L && a < HANGUL_L + 19 && b >= HANGUL_V && b < HANGUL_V + HANGUL_NV)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_NV + (b - HANGUL_V)) * HANGUL_NT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_NS && (a - HANGUL_S) % HANGUL_NT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_NT)
        return a + (b - HANGUL_T);
    int lo = 0, hi = uc_comp_index_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const UcDecomp *d = &uc_decomp[uc_comp_index[mid]];
        if (a < d->first || (a == d->first && b < d->second)) hi = mid - 1;
        else if (a > d->first || b > d->second) lo = mid + 1;
        else return d->cp;
    }
    return 0;
}

void tf_nfc(const uint32_t *s, size_t n, CpBuf *out) {
    // Quick exit: text below U+0300 is already NFC.
    size_t i = 0;
    while (i < n && s[i] < 0x300) i++;
    out->n = 0;
    if (i == n) { cp_append(out, s, n); return; }

    // 1. Canonical decomposition.
    CpBuf d = {0};
    for (i = 0; i < n; i++) decompose(s[i], &d);

    // 2. Canonical ordering: stable sort of each run of non-starters by ccc.
    for (i = 1; i < d.n; i++) {
        int c = ccc_of(d.v[i]);
        if (!c) continue;
        size_t j = i;
        while (j > 0 && ccc_of(d.v[j - 1]) > c) {
            uint32_t t = d.v[j]; d.v[j] = d.v[j - 1]; d.v[j - 1] = t;
            j--;
        }
    }

    // 3. Canonical composition: each character joins the last starter when
    // nothing between them blocks it (a starter, or an equal or higher ccc).
    long starter = -1;
    int last_ccc = 0;
    for (i = 0; i < d.n; i++) {
        uint32_t c = d.v[i];
        int cc = ccc_of(c);
        if (starter >= 0) {
            int adjacent = (size_t)starter == out->n - 1;
            if (adjacent || (last_ccc != 0 && last_ccc < cc)) {
                uint32_t comp = compose(out->v[starter], c);
                if (comp) { out->v[starter] = comp; continue; }
            }
        }
        if (cc == 0) starter = (long)out->n;
        last_ccc = cc;
        cp_push(out, c);
    }
    cp_free(&d);
}

// ---- ftfy: character categories (badness.py, chardata.py UTF8_CLUES) ----

// Bits of ftfy_cats[].value, in the order gen_unicode_tables.py lists them.
#define CAT_COMMON       (1u << 0)
#define CAT_C1           (1u << 1)
#define CAT_BAD          (1u << 2)
#define CAT_LAW          (1u << 3)
#define CAT_CURRENCY     (1u << 4)
#define CAT_START        (1u << 5)    // start_punctuation
#define CAT_END          (1u << 6)    // end_punctuation
#define CAT_NUMERIC      (1u << 7)
#define CAT_KAOMOJI      (1u << 8)
#define CAT_UPPER_ACC    (1u << 9)    // upper_accented
#define CAT_LOWER_ACC    (1u << 10)   // lower_accented
#define CAT_UPPER_COMMON (1u << 11)
#define CAT_LOWER_COMMON (1u << 12)
#define CAT_BOX          (1u << 13)
#define CLUE_FIRST2      (1u << 16)   // utf8_first_of_2
#define CLUE_FIRST3      (1u << 17)
#define CLUE_FIRST4      (1u << 18)
#define CLUE_CONT        (1u << 19)   // utf8_continuation
#define CLUE_CONT_STRICT (1u << 20)   // utf8_continuation_strict

static uint32_t cat_of(uint32_t cp) {
    int k = find_pair(ftfy_cats, ftfy_cats_n, cp);
    return k < 0 ? 0 : ftfy_cats[k].value;
}

// Category masks of s[0..n) (caller frees).
static uint32_t *cat_masks(const uint32_t *s, size_t n) {
    uint32_t *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) { fprintf(stderr, "textfix: out of memory\n"); abort(); }
    for (size_t i = 0; i < n; i++) m[i] = cat_of(s[i]);
    return m;
}

static int one_of(uint32_t c, const uint32_t *set) {
    for (; *set; set++)
        if (*set == c) return 1;
    return 0;
}

// ---- ftfy: badness.is_bad (BADNESS_RE.search) ----

// A text with its category masks; S() and M() read past the end as "none".
typedef struct { const uint32_t *s, *m; size_t n; } Text;

static uint32_t S(const Text *t, size_t i) { return i < t->n ? t->s[i] : NO_CHAR; }
static uint32_t M(const Text *t, size_t i) { return i < t->n ? t->m[i] : 0; }

// Alternatives of BADNESS_RE built from category classes, at position i.
static int bad_categories_at(const Text *t, size_t i) {
    const uint32_t accented = CAT_LOWER_ACC | CAT_UPPER_ACC;
    uint32_t m0 = M(t, i), m1 = M(t, i + 1), m2 = M(t, i + 2);
    uint32_t c0 = S(t, i);
    if (m0 & CAT_C1) return 1;
    if ((m0 & (CAT_BAD | accented | CAT_BOX | CAT_START | CAT_END | CAT_CURRENCY |
               CAT_NUMERIC | CAT_LAW)) && (m1 & CAT_BAD)) return 1;
    if (c0 < 0x80 && is_ascii_alpha(c0) && (m1 & (CAT_LOWER_COMMON | CAT_UPPER_COMMON)) &&
        (m2 & CAT_BAD)) return 1;
    if ((m0 & CAT_BAD) && (m1 & (accented | CAT_BOX | CAT_START | CAT_END | CAT_CURRENCY |
                                 CAT_NUMERIC | CAT_LAW))) return 1;
    if ((m0 & (CAT_LOWER_ACC | CAT_LOWER_COMMON | CAT_BOX | CAT_END | CAT_CURRENCY |
               CAT_NUMERIC)) && (m1 & CAT_UPPER_ACC)) return 1;
    if ((m0 & (CAT_BOX | CAT_END | CAT_CURRENCY | CAT_NUMERIC)) && (m1 & CAT_LOWER_ACC)) return 1;
    if ((m0 & (CAT_LOWER_ACC | CAT_BOX | CAT_END)) && (m1 & CAT_CURRENCY)) return 1;
    if (i < t->n && uc_is_space(c0) && (m1 & CAT_UPPER_ACC) && (m2 & CAT_CURRENCY)) return 1;
    if ((m0 & (CAT_UPPER_ACC | CAT_BOX)) && (m1 & (CAT_NUMERIC | CAT_LAW))) return 1;
    if ((m0 & (accented | CAT_BOX | CAT_CURRENCY | CAT_END)) && (m1 & CAT_START) &&
        (m2 & CAT_NUMERIC)) return 1;
    if ((m0 & (accented | CAT_CURRENCY | CAT_NUMERIC | CAT_BOX | CAT_LAW)) && (m1 & CAT_END) &&
        (m2 & CAT_START)) return 1;
    if ((m0 & (CAT_CURRENCY | CAT_NUMERIC | CAT_BOX)) && (m1 & CAT_START)) return 1;
    if (is_ascii_lower(c0) && (m1 & CAT_UPPER_ACC) && (m2 & (CAT_START | CAT_CURRENCY))) return 1;
    if ((m0 & CAT_BOX) && (m1 & CAT_KAOMOJI)) return 1;
    if ((m0 & (accented | CAT_CURRENCY | CAT_NUMERIC | CAT_START | CAT_END | CAT_LAW)) &&
        (m1 & CAT_BOX)) return 1;
    if ((m0 & CAT_BOX) && (m1 & CAT_END)) return 1;
    if ((m0 & accented) && (m1 & (CAT_START | CAT_END)) && i + 2 < t->n &&
        in_ranges(uc_re_word, uc_re_word_n, S(t, i + 2))) return 1;
    return 0;
}

// Alternatives of BADNESS_RE made of specific characters, at position i;
// each check is preceded by the reference pattern it evaluates.
static int bad_sequences_at(const Text *t, size_t i) {
    typedef const uint32_t Set[];
    static Set a_hat = {0xC2, 0xC3, 0xCE, 0xD0, 0};                          // ÂÃÎÐ
    static Set a_hat_next = {0x20AC, 0x153, 0x160, 0x161, 0xA2, 0xA3, 0x178, 0x17E, 0xA0,
                             0xAD, 0xAE, 0xA9, 0xB0, 0xB7, 0xBB, 0x2013, 0x2014, 0xB4, 0};
    static Set arabic_next = {0x178, 0x160, 0xAE, 0xB0, 0xB5, 0xBB, 0};       // ŸŠ®°µ»
    static Set cyr4 = {0x412, 0x413, 0x420, 0x421, 0};                       // ВГРС
    static Set greek4 = {0x392, 0x393, 0x39E, 0x39F, 0};                     // ΒΓΞΟ
    static Set a_grave_next = {0xB2, 0xB5, 0xB9, 0xBC, 0xBD, 0xBE, 0};        // ²µ¹¼½¾
    static Set root_next = {0xB1, 0x2202, 0x2020, 0x2260, 0xAE, 0x2122, 0xB4, 0x2264,
                            0x2265, 0xA5, 0xB5, 0xF8, 0};                    // ±∂†≠®™´≤≥¥µø
    static Set quote_a_next = {0xEC, 0xEE, 0xEF, 0xF2, 0xF4, 0xFA, 0xF9, 0xFB, 0x2020,
                               0xB0, 0xA2, 0x3C0, 0};                        // ìîïòôúùû†°¢π
    static Set quote_x_next = {0xE0, 0xE4, 0xB0, 0xEA, 0};                    // àä°ê
    static Set beta_next = {0x2122, 0xA0, 0x386, 0xAD, 0xAE, 0xB0, 0};        // ™ nbsp Ά shy ®°
    const uint32_t arabic_cats = CAT_COMMON | CAT_CURRENCY | CAT_BAD | CAT_NUMERIC | CAT_START;
    const uint32_t mix_cats = CAT_C1 | CAT_BAD | CAT_START | CAT_END | CAT_CURRENCY;
    uint32_t c0 = S(t, i), c1 = S(t, i + 1), c2 = S(t, i + 2), c3 = S(t, i + 3);
    uint32_t m0 = M(t, i), m1 = M(t, i + 1), m2 = M(t, i + 2), m3 = M(t, i + 3);
    int a_tilde_or_hat1 = c1 == 0xC3 || c1 == 0xC2, a_tilde_or_hat2 = c2 == 0xC3 || c2 == 0xC2;

    // [Œœ][^A-Za-z]   [upper_accented]°   [ÂÃÎÐ][€œŠš¢£Ÿž nbsp shy ®©°·» start end –—´]
    if ((c0 == 0x152 || c0 == 0x153) && i + 1 < t->n && !is_ascii_alpha(c1)) return 1;
    if ((m0 & CAT_UPPER_ACC) && c1 == 0xB0) return 1;
    if (one_of(c0, a_hat) && (one_of(c1, a_hat_next) || (m1 & (CAT_START | CAT_END)))) return 1;
    // ×[²³]   [ØÙ][arabic][ØÙ][arabic]   à[²µ¹¼½¾]   √[...]   ≈[°¢]
    if (c0 == 0xD7 && (c1 == 0xB2 || c1 == 0xB3)) return 1;
    if ((c0 == 0xD8 || c0 == 0xD9) && ((m1 & arabic_cats) || one_of(c1, arabic_next)) &&
        (c2 == 0xD8 || c2 == 0xD9) && ((m3 & arabic_cats) || one_of(c3, arabic_next))) return 1;
    if (c0 == 0xE0 && one_of(c1, a_grave_next)) return 1;
    if (c0 == 0x221A && one_of(c1, root_next)) return 1;
    if (c0 == 0x2248 && (c1 == 0xB0 || c1 == 0xA2)) return 1;
    // ‚Ä[ìîïòôúùû†°¢π]   ‚[âó][àä°ê]   вЂ   [ВГРС][c1 bad start end currency °µ][ВГРС]
    if (c0 == 0x201A && c1 == 0xC4 && one_of(c2, quote_a_next)) return 1;
    if (c0 == 0x201A && (c1 == 0xE2 || c1 == 0xF3) && one_of(c2, quote_x_next)) return 1;
    if (c0 == 0x432 && c1 == 0x402) return 1;
    if (one_of(c0, cyr4) && ((m1 & mix_cats) || c1 == 0xB0 || c1 == 0xB5) && one_of(c2, cyr4))
        return 1;
    // ГўВЂВ.[A-Za-z ]   ('.' is any character but a newline)
    if (c0 == 0x413 && c1 == 0x45E && c2 == 0x412 && c3 == 0x402 && S(t, i + 4) == 0x412 &&
        i + 5 < t->n && S(t, i + 5) != '\n' &&
        (is_ascii_alpha(S(t, i + 6)) || S(t, i + 6) == ' ')) return 1;
    // Ã[nbsp ¡]   [a-z]\s?[ÃÂ][ ]   ^[ÃÂ][ ]
    if (c0 == 0xC3 && (c1 == 0xA0 || c1 == 0xA1)) return 1;
    if (is_ascii_lower(c0) && i + 1 < t->n && uc_is_space(c1) && a_tilde_or_hat2 && c3 == ' ')
        return 1;
    if (is_ascii_lower(c0) && a_tilde_or_hat1 && c2 == ' ') return 1;
    if (i == 0 && (c0 == 0xC3 || c0 == 0xC2) && c1 == ' ') return 1;
    // [a-z.,?! end]Â[ start end]
    if ((is_ascii_lower(c0) || (c0 && c0 < 0x80 && strchr(".,?!", (int)c0)) || (m0 & CAT_END)) &&
        c1 == 0xC2 && (c2 == ' ' || (m2 & (CAT_START | CAT_END)))) return 1;
    // β€[™ nbsp Ά shy ®°]   [ΒΓΞΟ][c1 bad start end currency °][ΒΓΞΟ]   ā€
    if (c0 == 0x3B2 && c1 == 0x20AC && one_of(c2, beta_next)) return 1;
    if (one_of(c0, greek4) && ((m1 & mix_cats) || c1 == 0xB0) && one_of(c2, greek4)) return 1;
    if (c0 == 0x101 && c1 == 0x20AC) return 1;
    return 0;
}

int tf_ftfy_is_bad(const uint32_t *s, size_t n) {
    uint32_t *m = cat_masks(s, n);
    Text t = {s, m, n};
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++)
        bad = bad_categories_at(&t, i) || bad_sequences_at(&t, i);
    free(m);
    return bad;
}

// ---- ftfy: single-byte codecs (chardata.CHARMAP_ENCODINGS, bad_codecs/sloppy.py) ----

static int codec_is(int k, const char *name) { return strcmp(ftfy_codec_names[k], name) == 0; }
static int codec_is_sloppy(int k) { return strncmp(ftfy_codec_names[k], "sloppy", 6) == 0; }

// Byte that codec k encodes c to, or -1.
static int codec_byte(int k, uint32_t c) {
    if (c < 0x80 && c != 0x1A) return (int)c;
    for (int j = 0; j < 129; j++)
        if (ftfy_codec_high[k][j] == c) return j == 128 ? 0x1A : 0x80 + j;
    return -1;
}

// chardata.possible_encoding: every character encodable by codec k.
static int codec_possible(int k, const uint32_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (codec_byte(k, s[i]) < 0) return 0;
    return 1;
}

static void codec_encode(int k, const uint32_t *s, size_t n, ByteBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) bb_push(out, (uint8_t)codec_byte(k, s[i]));
}

static int codec_index(const char *name) {
    for (int k = 0; k < FTFY_NCODECS; k++)
        if (codec_is(k, name)) return k;
    return -1;
}

// sloppy-windows-1252 decoding of a C1 control (fixes.fix_c1_controls).
static uint32_t c1_to_cp1252(uint32_t c) {
    return ftfy_codec_high[codec_index("sloppy-windows-1252")][c - 0x80];
}

// text.encode('latin-1').decode('windows-1252') (strict): -1 when a byte is
// undefined in Windows-1252 (0x81 0x8D 0x8F 0x90 0x9D).
static int latin1_as_cp1252(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c >= 0x80 && c <= 0x9F) {
            c = c1_to_cp1252(c);
            if (c == s[i]) return -1;
        }
        cp_push(out, c);
    }
    return 0;
}

// ---- ftfy: byte-level repairs (fixes.restore_byte_a0, replace_lossy_sequences) ----

static int b_at(const ByteBuf *b, size_t i) { return i < b->n ? b->v[i] : -1; }
static int b_cont(int c) { return c >= 0x80 && c <= 0xBF; }
// [\x80-\x84\x86-\x9f\xa1-\xbf]: a continuation byte other than 0x85 and 0xA0.
static int b_cont_x(int c) { return b_cont(c) && c != 0x85 && c != 0xA0; }

// ALTERED_UTF8_RE at i: match length or 0 (alternatives in the reference order).
static size_t altered_at(const ByteBuf *b, size_t i) {
    int c0 = b_at(b, i), c1 = b_at(b, i + 1), c2 = b_at(b, i + 2), c3 = b_at(b, i + 3);
    if ((c0 == 0xC2 || c0 == 0xC3 || c0 == 0xC5 || c0 == 0xCE || c0 == 0xD0 || c0 == 0xD9) &&
        c1 == ' ') return 2;
    if ((c0 == 0xE2 || c0 == 0xE3) && c1 == ' ' && b_cont_x(c2)) return 3;
    if (c0 >= 0xE0 && c0 <= 0xE3 && b_cont_x(c1) && c2 == ' ') return 3;
    if (c0 == 0xF0 && c1 == ' ' && b_cont(c2) && b_cont(c3)) return 4;
    if (c0 == 0xF0 && b_cont(c1) && c2 == ' ' && b_cont(c3)) return 4;
    if (c0 == 0xF0 && b_cont(c1) && b_cont(c2) && c3 == ' ') return 4;
    return 0;
}

static int starts_with(const ByteBuf *b, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i + k <= b->n && memcmp(b->v + i, lit, k) == 0;
}

// fixes.restore_byte_a0: "\xc3 " -> "\xc3\xa0 " unless followed by one of the
// Portuguese exceptions, then spaces inside ALTERED_UTF8_RE matches -> 0xA0.
static void restore_byte_a0(ByteBuf *b) {
    ByteBuf t = {0};
    for (size_t i = 0; i < b->n;) {
        if (b->v[i] == 0xC3 && b_at(b, i + 1) == ' ' && !starts_with(b, i + 2, " ") &&
            !starts_with(b, i + 2, "quele") && !starts_with(b, i + 2, "quela") &&
            !starts_with(b, i + 2, "quilo") && !starts_with(b, i + 2, "s ")) {
            bb_push(&t, 0xC3), bb_push(&t, 0xA0), bb_push(&t, ' ');
            i += 2;
        } else {
            bb_push(&t, b->v[i++]);
        }
    }
    b->n = 0;
    for (size_t i = 0; i < t.n;) {
        size_t m = altered_at(&t, i);
        if (!m) { bb_push(b, t.v[i++]); continue; }
        for (size_t k = 0; k < m; k++) bb_push(b, t.v[i + k] == ' ' ? 0xA0 : t.v[i + k]);
        i += m;
    }
    bb_free(&t);
}

// LOSSY_UTF8_RE at i: match length or 0.  'L' marks byte 0x1A ("lost"),
// q is L or '?', and ranges follow the reference alternatives in order.
static size_t lossy_at(const ByteBuf *b, size_t i) {
    int c0 = b_at(b, i), c1 = b_at(b, i + 1), c2 = b_at(b, i + 2), c3 = b_at(b, i + 3);
    int c4 = b_at(b, i + 4), c5 = b_at(b, i + 5);
#define LOST(c) ((c) == 0x1A)
#define LQ(c) ((c) == 0x1A || (c) == '?')
#define LC(c) ((c) == 0x1A || b_cont(c))
    if (c0 >= 0xC2 && c0 <= 0xDF && LOST(c1)) return 2;
    if (c0 >= 0xC2 && c0 <= 0xC3 && c1 == '?') return 2;
    if (c0 == 0xED && c1 >= 0xA0 && c1 <= 0xAF && LQ(c2) && c3 == 0xED && c4 >= 0xB0 &&
        c4 <= 0xBF && (LQ(c5) || b_cont(c5))) return 6;
    if (c0 == 0xED && c1 >= 0xA0 && c1 <= 0xAF && (LQ(c2) || b_cont(c2)) && c3 == 0xED &&
        c4 >= 0xB0 && c4 <= 0xBF && LQ(c5)) return 6;
    if (c0 >= 0xE0 && c0 <= 0xEF && LQ(c1) && LC(c2)) return 3;
    if (c0 >= 0xE0 && c0 <= 0xEF && LC(c1) && LQ(c2)) return 3;
    if (c0 >= 0xF0 && c0 <= 0xF4 && LQ(c1) && LC(c2) && LC(c3)) return 4;
    if (c0 >= 0xF0 && c0 <= 0xF4 && LC(c1) && LQ(c2) && LC(c3)) return 4;
    if (c0 >= 0xF0 && c0 <= 0xF4 && LC(c1) && LC(c2) && LQ(c3)) return 4;
    if (LOST(c0)) return 1;
#undef LOST
#undef LQ
#undef LC
    return 0;
}

// fixes.replace_lossy_sequences: each LOSSY_UTF8_RE match -> UTF-8 of U+FFFD.
static void replace_lossy(ByteBuf *b) {
    ByteBuf t = {0};
    for (size_t i = 0; i < b->n;) {
        size_t m = lossy_at(b, i);
        if (!m) { bb_push(&t, b->v[i++]); continue; }
        bb_push(&t, 0xEF), bb_push(&t, 0xBF), bb_push(&t, 0xBD);
        i += m;
    }
    bb_free(b);
    *b = t;
}

// ---- ftfy: the "utf-8-variants" codec (bad_codecs/utf8_variants.py) ----

// Python bytes-regex '$': the end, or just before a final '\n'.
static int at_dollar(const uint8_t *s, size_t n, size_t q) {
    return q == n || (q + 1 == n && s[q] == '\n');
}

// Groups of the form ([lo-hi]|$) in sequence from position q; ranges given
// as pairs.  Returns 1 when the whole sequence can match.
static int groups_match(const uint8_t *s, size_t n, size_t q, const uint8_t *rng, int ng) {
    for (int g = 0; g < ng; g++) {
        if (at_dollar(s, n, q + (size_t)g)) return 1;   // the rest match '$' here
        if (q + (size_t)g >= n || s[q + g] < rng[2 * g] || s[q + g] > rng[2 * g + 1]) return 0;
    }
    return 1;
}

static const uint8_t CESU8_GROUPS[] = {0xA0, 0xAF, 0x80, 0xBF, 0xED, 0xED, 0xB0, 0xBF, 0x80, 0xBF};
static const uint8_t SURROGATE_GROUPS[] = {0xA0, 0xBF, 0x80, 0xBF};

// SPECIAL_BYTES_RE (Java null, CESU-8, lone surrogate) matches at p.
static int special_at(const uint8_t *s, size_t n, size_t p) {
    if (s[p] == 0xC0) return (p + 1 < n && s[p + 1] == 0x80) || at_dollar(s, n, p + 1);
    if (s[p] != 0xED) return 0;
    return groups_match(s, n, p + 1, CESU8_GROUPS, 5) ||
           groups_match(s, n, p + 1, SURROGATE_GROUPS, 2);
}

// bytes.decode("utf-8-variants") with errors="strict": 0 or -1.
static int utf8_variants_decode(const uint8_t *s, size_t n, CpBuf *out) {
    size_t pos = 0;
    while (pos < n) {
        // Plain UTF-8 up to the next special sequence.
        size_t p = pos;
        while (p < n && !special_at(s, n, p)) p++;
        if (p > pos) {
            if (utf8_decode_strict(s + pos, p - pos, out) < 0) return -1;
            pos = p;
            continue;
        }
        if (s[pos] == 0xC0) {
            // Java's two-byte null.
            if (n - pos < 2) return utf8_decode_strict(s + pos, n - pos, out);
            cp_push(out, 0);
            pos += 2;
        } else if (n - pos < 6) {
            return utf8_decode_strict(s + pos, n - pos, out);
        } else if (groups_match(s, n, pos + 1, CESU8_GROUPS, 5)) {
            // A CESU-8 surrogate pair: 1010abcd 10efghij .. 1011klmn 10opqrst.
            const uint8_t *c = s + pos;
            cp_push(out, ((uint32_t)(c[1] & 0x0F) << 16) + ((uint32_t)(c[2] & 0x3F) << 10) +
                         ((uint32_t)(c[4] & 0x0F) << 6) + (c[5] & 0x3F) + 0x10000);
            pos += 6;
        } else {
            return -1;   // an encoded lone surrogate: not UTF-8
        }
    }
    return 0;
}

// ---- ftfy: fix_encoding (__init__.py) and decode_inconsistent_utf8 ----

static int all_ascii(const uint32_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0x80) return 0;
    return 1;
}

// UTF8_DETECTOR_RE: one match starting at i, without the lookbehind: the
// group (first_of_2 cont | first_of_3 cont{2} | first_of_4 cont{3}) repeated
// greedily, first alternative wins.  Returns its length (0: no match).
static size_t detector_at(const uint32_t *m, size_t n, size_t i) {
    size_t p = i;
    for (;;) {
        size_t len = 0;
        for (int k = 1; k <= 3 && !len; k++) {
            uint32_t first = k == 1 ? CLUE_FIRST2 : k == 2 ? CLUE_FIRST3 : CLUE_FIRST4;
            if (p + (size_t)k >= n || !(m[p] & first)) continue;
            int ok = 1;
            for (int j = 1; j <= k; j++) ok &= (m[p + j] & CLUE_CONT) != 0;
            if (ok) len = (size_t)k + 1;
        }
        if (!len) return p - i;
        p += len;
    }
}

static int detector_lookbehind_ok(const uint32_t *m, size_t i) {
    return i == 0 || !(m[i - 1] & CLUE_CONT_STRICT);
}

static int detector_search(const uint32_t *s, size_t n) {
    uint32_t *m = cat_masks(s, n);
    int found = 0;
    for (size_t i = 0; i < n && !found; i++)
        found = detector_lookbehind_ok(m, i) && detector_at(m, n, i) > 0;
    free(m);
    return found;
}

// fixes.decode_inconsistent_utf8: fix each detected run on its own when it is
// shorter than the text and looks bad.
static void decode_inconsistent_utf8(const uint32_t *s, size_t n, CpBuf *out) {
    uint32_t *m = cat_masks(s, n);
    CpBuf fixed = {0};
    out->n = 0;
    for (size_t i = 0; i < n;) {
        size_t len = detector_lookbehind_ok(m, i) ? detector_at(m, n, i) : 0;
        if (!len) { cp_push(out, s[i++]); continue; }
        if (len < n && tf_ftfy_is_bad(s + i, len)) {
            tf_ftfy_fix_encoding(s + i, len, &fixed);
            cp_append(out, fixed.v, fixed.n);
        } else {
            cp_append(out, s + i, len);
        }
        i += len;
    }
    cp_free(&fixed);
    free(m);
}

// Re-decode the bytes of s under codec k as UTF-8 (with the byte repairs).
// 0 and the text in out, or -1 when the bytes are not UTF-8.
static int try_codec(int k, const uint32_t *s, size_t n, CpBuf *out) {
    ByteBuf b = {0};
    codec_encode(k, s, n, &b);
    // restore_byte_a0, except for MacRoman (en dash + space false positives).
    if (!codec_is(k, "macroman")) {
        int altered = 0;
        for (size_t i = 0; i < b.n && !altered; i++) altered = altered_at(&b, i) > 0;
        if (altered) restore_byte_a0(&b);
    }
    if (codec_is_sloppy(k)) replace_lossy(&b);
    int variants = b.n && (memchr(b.v, 0xED, b.n) || memchr(b.v, 0xC0, b.n));
    out->n = 0;
    int rc = variants ? utf8_variants_decode(b.v, b.n, out) : utf8_decode_strict(b.v, b.n, out);
    bb_free(&b);
    return rc;
}

// _fix_encoding_one_step_and_explain.
static void fix_encoding_step(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    if (n == 0 || all_ascii(s, n) || !tf_ftfy_is_bad(s, n)) { cp_append(out, s, n); return; }

    // 1. UTF-8 that was decoded with one of the single-byte codecs.
    int latin1_possible = 0;
    for (int k = 0; k < FTFY_NCODECS; k++) {
        if (!codec_possible(k, s, n)) continue;
        if (codec_is(k, "latin-1")) latin1_possible = 1;
        if (try_codec(k, s, n, out) == 0) return;
    }
    // 2. Mojibake embedded in otherwise correct text.
    if (detector_search(s, n)) {
        decode_inconsistent_utf8(s, n, out);
        if (!cp_equal(out->v, out->n, s, n)) return;
    }
    // 3. Latin-1 meant as Windows-1252.  (The reference's "text is both
    // Latin-1 and Windows-1252" exit tests for "windows-1252", a name the
    // candidate list never holds, so it never fires.)
    if (latin1_possible && latin1_as_cp1252(s, n, out) == 0 && !cp_equal(out->v, out->n, s, n))
        return;
    // 4. Remaining C1 controls as Windows-1252.
    out->n = 0;
    for (size_t i = 0; i < n; i++)
        cp_push(out, s[i] >= 0x80 && s[i] <= 0x9F ? c1_to_cp1252(s[i]) : s[i]);
}

void tf_ftfy_fix_encoding(const uint32_t *s, size_t n, CpBuf *out) {
    CpBuf cur = {0}, next = {0};
    cp_append(&cur, s, n);
    // Repeat single steps until nothing changes.
    for (;;) {
        fix_encoding_step(cur.v, cur.n, &next);
        if (cp_equal(next.v, next.n, cur.v, cur.n)) break;
        cp_swap(&cur, &next);
    }
    out->n = 0;
    cp_append(out, cur.v, cur.n);
    cp_free(&cur);
    cp_free(&next);
}

// ---- ftfy: the character-level fixers (fixes.py) ----

// fixes.unescape_html: &#?[0-9A-Za-z]{1,24}; -> HTML5 entity (';' form), an
// upper-cased lowercase entity, or a numeric reference when html.unescape
// consumes it entirely.
static size_t ftfy_unescape_at(const uint32_t *s, size_t n, size_t i, CpBuf *out) {
    size_t j = i + 1;
    int numeric = j < n && s[j] == '#';
    j += (size_t)numeric;
    size_t k = j;
    while (k < n && k - j < 25 && s[k] < 0x80 && (is_ascii_alpha(s[k]) || is_ascii_digit(s[k])))
        k++;
    if (k == j || k - j > 24 || k >= n || s[k] != ';') return 0;
    size_t len = k + 1 - i;
    if (numeric) {
        // html.unescape of the match; keep the match when ';' survives.
        CpBuf u = {0};
        tf_html_unescape(s + i, len, &u);
        int keep = 0;
        for (size_t q = 0; q < u.n; q++) keep |= u.v[q] == ';';
        cp_append(out, keep ? s + i : u.v, keep ? len : u.n);
        cp_free(&u);
        return len;
    }
    const HtmlEntity *e = find_entity(s + j, k - j);
    if (e && (e->flags & HTML_ENT_SEMI)) { push_entity_value(out, e); return len; }
    // All-caps form of a lowercase entity name.
    uint32_t low[24];
    int has_lower = 0;
    for (size_t q = j; q < k; q++) {
        has_lower |= is_ascii_lower(s[q]);
        low[q - j] = s[q] >= 'A' && s[q] <= 'Z' ? s[q] + 32 : s[q];
    }
    e = has_lower ? NULL : find_entity(low, k - j);
    if (!e || !(e->flags & HTML_ENT_FTFY_UPPER)) { cp_append(out, s + i, len); return len; }
    int idx = (int)(e - html_entities);
    for (int q = 0; q < html_entity_upper_n; q++) {
        if (html_entity_upper[q].index != idx) continue;
        const uint32_t *up = html_entity_upper[q].to;
        for (int r = 0; r < 3 && up[r]; r++) cp_push(out, up[r]);
        return len;
    }
    push_entity_value(out, e);
    return len;
}

static void ftfy_unescape_html(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n;) {
        size_t m = s[i] == '&' ? ftfy_unescape_at(s, n, i, out) : 0;
        if (m) i += m;
        else cp_push(out, s[i++]);
    }
}

// Per-character replacement fixers, applied in the reference order.
enum { FIX_C1, FIX_LIGATURES, FIX_WIDTH, FIX_QUOTES, FIX_CONTROL };

static void map_chars(int which, const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        const UcMap3 *r = NULL;
        switch (which) {
        case FIX_C1:                       // fix_c1_controls
            if (c >= 0x80 && c <= 0x9F) c = c1_to_cp1252(c);
            break;
        case FIX_LIGATURES:                // fix_latin_ligatures
            r = find_map3(ftfy_ligatures, ftfy_ligatures_n, c);
            break;
        case FIX_WIDTH:                    // fix_character_width
            r = find_map3(ftfy_width, ftfy_width_n, c);
            break;
        case FIX_QUOTES:                   // uncurl_quotes
            if (c >= 0x201C && c <= 0x201F) c = '"';
            else if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
            break;
        case FIX_CONTROL:                  // remove_control_chars
            if (in_ranges(ftfy_control, ftfy_control_n, c)) continue;
            break;
        }
        if (r) {
            for (int k = 0; k < 3 && r->to[k]; k++) cp_push(out, r->to[k]);
        } else {
            cp_push(out, c);
        }
    }
}

// fixes.fix_line_breaks: CRLF, CR, U+2028, U+2029, U+0085 -> LF.
static void fix_line_breaks(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') continue;
        cp_push(out, c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85 ? '\n' : c);
    }
}

// fixes.remove_terminal_escapes: ESC [ (\d|;)* [a-zA-Z] removed.
static void remove_terminal_escapes(const uint32_t *s, size_t n, CpBuf *out) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0x1B && i + 1 < n && s[i + 1] == '[') {
            size_t k = i + 2;
            while (k < n && (s[k] == ';' || in_ranges(uc_re_digit, uc_re_digit_n, s[k]))) k++;
            if (k < n && s[k] < 0x80 && is_ascii_alpha(s[k])) { i = k; continue; }
        }
        cp_push(out, s[i]);
    }
}

// fix_and_explain on one segment: all fixers in order until a fixed point.
static void fix_segment(const uint32_t *s, size_t n, int unescape, CpBuf *out) {
    CpBuf cur = {0}, tmp = {0}, orig = {0};
    cp_append(&cur, s, n);
    for (;;) {
        orig.n = 0;
        cp_append(&orig, cur.v, cur.n);
        if (unescape) { ftfy_unescape_html(cur.v, cur.n, &tmp); cp_swap(&cur, &tmp); }
        tf_ftfy_fix_encoding(cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        map_chars(FIX_C1, cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        map_chars(FIX_LIGATURES, cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        map_chars(FIX_WIDTH, cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        map_chars(FIX_QUOTES, cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        fix_line_breaks(cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        // fix_surrogates: nothing to do, decoded UTF-8 holds no surrogates.
        remove_terminal_escapes(cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        map_chars(FIX_CONTROL, cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        tf_nfc(cur.v, cur.n, &tmp); cp_swap(&cur, &tmp);
        if (cp_equal(cur.v, cur.n, orig.v, orig.n)) break;
    }
    out->n = 0;
    cp_append(out, cur.v, cur.n);
    cp_free(&cur), cp_free(&tmp), cp_free(&orig);
}

// ftfy's TextFixerConfig.max_decode_length: longest segment fixed at once.
#define FTFY_MAX_SEGMENT 1000000

int tf_ftfy(const uint32_t *s, size_t n, CpBuf *out) {
    CpBuf seg = {0};
    int unescape = 1;
    out->n = 0;
    for (size_t pos = 0; pos < n;) {
        // Segments end after each '\n'.
        size_t end = pos;
        while (end < n && s[end] != '\n') end++;
        if (end < n) end++;
        if (end - pos > FTFY_MAX_SEGMENT) end = pos + FTFY_MAX_SEGMENT;
        // unescape_html="auto" turns off for good at the first segment with '<'.
        for (size_t i = pos; i < end && unescape; i++) unescape = s[i] != '<';
        fix_segment(s + pos, end - pos, unescape, &seg);
        cp_append(out, seg.v, seg.n);
        pos = end;
    }
    cp_free(&seg);
    return !cp_equal(out->v, out->n, s, n);
}

// ---- the whole cleaning ----

void tf_clean(const uint32_t *s, size_t n, CpBuf *out, int *ftfy_changed) {
    CpBuf a = {0}, b = {0};
    // basic_clean: ftfy.fix_text, html.unescape twice, strip.
    int changed = tf_ftfy(s, n, &a);
    tf_html_unescape(a.v, a.n, &b);
    tf_html_unescape(b.v, b.n, &a);
    // whitespace_clean (which also strips), then str.lower().
    tf_whitespace_clean(a.v, a.n, &b);
    tf_lower(b.v, b.n, out);
    if (ftfy_changed) *ftfy_changed = changed;
    cp_free(&a), cp_free(&b);
}
