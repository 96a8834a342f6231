// jpeg.c - JPEG decoder, bit-exact with libjpeg-turbo's default decode (see
// jpeg.h for what is read, what is refused, and the behaviour followed).
//
// Pipeline: markers -> every scan's entropy data into one int16 coefficient
// array per component (sequential and progressive alike, in the component's
// MCU-padded block grid) -> islow IDCT of each block into a component plane
// -> per output row: upsample each component to full width, convert the
// colour space, store [H, W, C].
#include "jpeg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JPEG_MAX_COMPS 4     // components in a frame we accept (1, 3 or 4)
#define JPEG_MAX_MCU_BLOCKS 10  // blocks in one MCU (T.81 B.2.3)

// Zigzag position k -> natural (row-major) index.  Positions 64..79 map to
// 63, so a run that overshoots the block lands on the last coefficient the
// way libjpeg's guarded table makes it.
static const uint8_t zigzag[80] = {
    0,  1,  8, 16,  9,  2,  3, 10, 17, 24, 32, 25, 18, 11,  4,  5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13,  6,  7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

// ---- Huffman tables ----

#define LUT_BITS 9

typedef struct HuffTable {
    int defined;
    uint8_t vals[256];       // symbols in code order
    int32_t maxcode[18];     // largest code of each length (-1: none); [17] sentinel
    int32_t valoff[17];      // vals index = code + valoff[len]
    uint16_t lut[1 << LUT_BITS];  // len << 8 | symbol for codes <= LUT_BITS bits, 0: longer
} HuffTable;

typedef struct Component {
    int id, h, v, tq;        // component id, sampling factors, quant table slot
    int dw, dh;              // downsampled size in samples: ceil(W h / hmax), ceil(H v / vmax)
    int bw, bh;              // block grid (MCU-padded) width and height
    int latched;             // quant table copied at the first scan
    uint16_t q[64];          // quant table in natural order
    int16_t *coef;           // [bh, bw, 64] coefficients in natural order
    uint8_t *plane;          // [bh * 8, bw * 8] samples after the IDCT
    int dc_pred;             // DC predictor
} Component;

// Entropy-coded data reader: bits MSB first, 0xFF00 unstuffed, fill bytes
// skipped, zero bits supplied after a marker or the end of the data.
typedef struct Bits {
    const uint8_t *p;
    size_t n, pos;           // data and the next byte to read
    uint64_t buf;            // unread bits, left-aligned
    int nbits;               // bits in buf
    int pad;                 // how many of those (the last ones) are padding zeros
    int marker;              // marker code that stopped the data, 0: none yet
    size_t marker_pos;       // offset of that marker's code byte
    int short_data;          // 1: padding was consumed in this restart interval
} Bits;

typedef struct Decoder {
    const uint8_t *p;
    size_t n;
    int w, h, nc, progressive;
    int hmax, vmax, mcux, mcuy;  // largest factors; MCUs per row and column
    Component comp[JPEG_MAX_COMPS];
    uint16_t qt[4][64];
    int qt_defined[4];
    HuffTable dc[4], ac[4];
    int restart;             // restart interval in MCUs (0: none)
    int jfif, adobe, adobe_transform;
    int eobrun;
    char *why;
    size_t why_len;
} Decoder;

static int fail(Decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Decoder *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, d->why_len, fmt, ap);
    va_end(ap);
    return -1;
}

static unsigned be16(const uint8_t *s) { return (unsigned)s[0] << 8 | s[1]; }

// Build a table from the 16 code-length counts and the symbols (T.81 C.2):
// canonical codes; a length whose codes overflow its bit count is damage.
static int huff_build(HuffTable *t, const uint8_t counts[16], const uint8_t *syms, int nsym,
                      int is_dc) {
    memset(t, 0, sizeof *t);
    memcpy(t->vals, syms, (size_t)nsym);
    int32_t code = 0, k = 0;
    for (int len = 1; len <= 16; len++) {
        t->valoff[len] = k - code;
        int cnt = counts[len - 1];
        // Codes of this length: code .. code + cnt - 1, into the lookup table.
        for (int i = 0; i < cnt; i++, code++, k++) {
            if (code >= (1 << len)) return -1;   // more codes than len bits can hold
            if (len <= LUT_BITS) {
                int lo = code << (LUT_BITS - len), span = 1 << (LUT_BITS - len);
                for (int j = 0; j < span; j++)
                    t->lut[lo + j] = (uint16_t)(len << 8 | syms[k]);
            }
        }
        t->maxcode[len] = cnt ? code - 1 : -1;
        code <<= 1;
    }
    t->maxcode[17] = 0x7FFFFFFF;
    // DC symbols are bit counts of a difference: at most 15.
    for (int i = 0; is_dc && i < nsym; i++)
        if (syms[i] > 15) return -1;
    t->defined = 1;
    return 0;
}

// ---- bit reader ----

static void bits_init(Bits *b, const uint8_t *p, size_t n, size_t pos) {
    memset(b, 0, sizeof *b);
    b->p = p, b->n = n, b->pos = pos;
}

// Top up the buffer to at least 57 bits.
static void bits_fill(Bits *b) {
    while (b->nbits <= 56) {
        unsigned c = 0;
        if (!b->marker) {
            if (b->pos >= b->n) {
                b->marker = 0xD9, b->marker_pos = b->n;  // end of data reads as EOI
            } else if ((c = b->p[b->pos++]) == 0xFF) {
                while (b->pos < b->n && b->p[b->pos] == 0xFF) b->pos++;  // fill bytes
                if (b->pos >= b->n) {
                    b->marker = 0xD9, b->marker_pos = b->n, c = 0;
                } else if (b->p[b->pos] == 0) {
                    b->pos++;                          // stuffed zero: a data 0xFF
                } else {
                    b->marker = b->p[b->pos], b->marker_pos = b->pos, c = 0;
                }
            }
        }
        if (b->marker) b->pad += 8;
        b->buf |= (uint64_t)c << (56 - b->nbits);
        b->nbits += 8;
    }
}

// Drop k <= 32 bits; note when padding was reached.
static void bits_drop(Bits *b, int k) {
    b->buf <<= k;
    b->nbits -= k;
    if (b->nbits < b->pad) b->short_data = 1, b->pad = b->nbits;
}

static unsigned bits_get(Bits *b, int k) {
    if (k == 0) return 0;
    if (b->nbits < k) bits_fill(b);
    unsigned v = (unsigned)(b->buf >> (64 - k));
    bits_drop(b, k);
    return v;
}

// One Huffman symbol (T.81 F.2.2.3).  A bit string that is no code decodes
// as symbol 0 after 17 bits, as libjpeg does.
static int huff_decode(Bits *b, const HuffTable *t) {
    if (b->nbits < 17) bits_fill(b);
    unsigned e = t->lut[b->buf >> (64 - LUT_BITS)];
    if (e) {
        bits_drop(b, (int)(e >> 8));
        return (int)(e & 255);
    }
    uint32_t top = (uint32_t)(b->buf >> 47);   // the next 17 bits
    for (int len = 1; len <= 16; len++) {
        int32_t code = (int32_t)(top >> (17 - len));
        if (code <= t->maxcode[len]) {
            bits_drop(b, len);
            return t->vals[(code + t->valoff[len]) & 255];
        }
    }
    bits_drop(b, 17);
    return 0;
}

// T.81 F.12 EXTEND: k bits v as a signed difference.
static int extend(unsigned v, int k) {
    return k == 0 ? 0 : v < (1u << (k - 1)) ? (int)v - (1 << k) + 1 : (int)v;
}

static int receive_extend(Bits *b, int k) { return extend(bits_get(b, k), k); }

// ---- block decoding (sequential and the four progressive scan kinds) ----

typedef struct Scan {
    int ncomp;
    int ci[JPEG_MAX_COMPS];  // frame component index of each scan component
    int td[JPEG_MAX_COMPS], ta[JPEG_MAX_COMPS];  // DC and AC table slots
    int ss, se, ah, al;
} Scan;

static int16_t wrap16(int v) { return (int16_t)(uint16_t)(unsigned)v; }

// Sequential: DC difference, then AC run/size pairs over zigzag 1..63.
static void block_seq(Decoder *d, Bits *b, Component *c, const HuffTable *dc,
                      const HuffTable *ac, int16_t *blk) {
    int s = huff_decode(b, dc);
    c->dc_pred = (int)((unsigned)c->dc_pred + (unsigned)receive_extend(b, s));
    blk[0] = wrap16(c->dc_pred);
    for (int k = 1; k < 64; k++) {
        int rs = huff_decode(b, ac), r = rs >> 4;
        s = rs & 15;
        if (s) {
            k += r;
            blk[zigzag[k]] = wrap16(receive_extend(b, s));
        } else {
            if (r != 15) break;                // end of block
            k += 15;                           // run of 16 zeros
        }
    }
}

// Progressive DC scans: first (difference << al) or refinement (one bit).
static void block_dc_prog(Decoder *d, Bits *b, Component *c, const HuffTable *dc,
                          const Scan *sc, int16_t *blk) {
    if (sc->ah == 0) {
        int s = huff_decode(b, dc);
        c->dc_pred = (int)((unsigned)c->dc_pred + (unsigned)receive_extend(b, s));
        blk[0] = wrap16((int)((unsigned)c->dc_pred << sc->al));
    } else if (bits_get(b, 1)) {
        blk[0] = wrap16(blk[0] | (1 << sc->al));
    }
}

// Progressive AC first scan over zigzag ss..se (T.81 G.1.2.2).
static void block_ac_first(Decoder *d, Bits *b, const HuffTable *ac, const Scan *sc,
                           int16_t *blk) {
    if (d->eobrun > 0) {
        d->eobrun--;
        return;
    }
    for (int k = sc->ss; k <= sc->se; k++) {
        int rs = huff_decode(b, ac), r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            blk[zigzag[k]] = wrap16((int)((unsigned)receive_extend(b, s) << sc->al));
        } else if (r == 15) {
            k += 15;
        } else {
            d->eobrun = (1 << r) - 1 + (int)bits_get(b, r);   // this block ends the band
            break;
        }
    }
}

// A correction bit for an already nonzero coefficient: raise its magnitude.
static void refine_coef(Bits *b, int16_t *x, int p1) {
    if (bits_get(b, 1) && (*x & p1) == 0)
        *x = wrap16(*x >= 0 ? *x + p1 : *x - p1);
}

// Progressive AC refinement over zigzag ss..se (T.81 G.1.2.3).
static void block_ac_refine(Decoder *d, Bits *b, const HuffTable *ac, const Scan *sc,
                            int16_t *blk) {
    int p1 = 1 << sc->al, k = sc->ss;
    if (d->eobrun == 0) {
        for (; k <= sc->se; k++) {
            int rs = huff_decode(b, ac), r = rs >> 4, s = rs & 15, val = 0;
            if (s) {
                val = bits_get(b, 1) ? p1 : -p1;   // size must be 1 (else damage)
            } else if (r != 15) {
                d->eobrun = (1 << r) + (int)bits_get(b, r);
                break;
            }
            // Skip r zero coefficients, refining the nonzero ones passed.
            do {
                int16_t *x = &blk[zigzag[k]];
                if (*x) refine_coef(b, x, p1);
                else if (--r < 0) break;
                k++;
            } while (k <= sc->se);
            if (val) blk[zigzag[k]] = wrap16(val);
        }
    }
    if (d->eobrun > 0) {
        // Inside an end-of-band run: refine the nonzero coefficients left.
        for (; k <= sc->se; k++) {
            int16_t *x = &blk[zigzag[k]];
            if (*x) refine_coef(b, x, p1);
        }
        d->eobrun--;
    }
}

static void decode_block(Decoder *d, Bits *b, const Scan *sc, int j, int16_t *blk) {
    Component *c = &d->comp[sc->ci[j]];
    const HuffTable *dc = &d->dc[sc->td[j]], *ac = &d->ac[sc->ta[j]];
    if (!d->progressive) block_seq(d, b, c, dc, ac, blk);
    else if (sc->ss == 0) block_dc_prog(d, b, c, dc, sc, blk);
    else if (sc->ah == 0) block_ac_first(d, b, ac, sc, blk);
    else block_ac_refine(d, b, ac, sc, blk);
}

// ---- restart markers ----

// At the end of a restart interval: drop the buffered bits, find the
// expected RSTn and resynchronise on a wrong one as libjpeg's default
// resync does (a marker ahead is left for later, one behind is skipped).
static void restart(Decoder *d, Bits *b, int *expect) {
    size_t pos = b->marker ? b->marker_pos : b->pos;
    int m = b->marker;
    for (;;) {
        if (!m) {
            // Skip bytes up to the next marker.
            while (pos < d->n && !(d->p[pos] == 0xFF && pos + 1 < d->n && d->p[pos + 1] != 0 &&
                                   d->p[pos + 1] != 0xFF))
                pos++;
            if (pos >= d->n || pos + 1 >= d->n) {
                m = 0xD9, pos = d->n;
                break;
            }
            m = d->p[++pos];
        }
        int want = 0xD0 + *expect;
        if (m == want) {
            pos++, m = 0;                      // consume the expected marker
            break;
        }
        if (m < 0xC0) {
            pos++, m = 0;                      // not a valid marker: skip, search on
            continue;
        }
        if (m < 0xD0 || m > 0xD7) break;       // another marker: leave it
        int ahead = (m - 0xD0 - *expect + 8) & 7;
        if (ahead == 1 || ahead == 2) break;   // a later restart: leave it
        pos++, m = 0;                          // an earlier one: skip, search on
        if (ahead == 7 || ahead == 6) continue;
        break;                                 // far off: take it as the expected one
    }
    *expect = (*expect + 1) & 7;
    bits_init(b, d->p, d->n, pos);
    if (m) b->marker = m, b->marker_pos = pos, b->pos = pos;
    for (int i = 0; i < d->nc; i++) d->comp[i].dc_pred = 0;
    d->eobrun = 0;
}

// Decode one scan's entropy data starting at offset pos; returns the offset
// where marker parsing continues.
static size_t decode_scan(Decoder *d, const Scan *sc, size_t pos) {
    Bits b;
    bits_init(&b, d->p, d->n, pos);
    for (int i = 0; i < d->nc; i++) d->comp[i].dc_pred = 0;
    d->eobrun = 0;
    int expect = 0;
    long done = 0;

    // MCU grid: interleaved (several components) or one block per MCU.
    const Component *c0 = &d->comp[sc->ci[0]];
    int single = sc->ncomp == 1;
    int mx = single ? (c0->dw + 7) / 8 : d->mcux, my = single ? (c0->dh + 7) / 8 : d->mcuy;
    for (int y = 0; y < my; y++) {
        for (int x = 0; x < mx; x++) {
            if (d->restart && done > 0 && done % d->restart == 0) restart(d, &b, &expect);
            done++;
            if (b.short_data) continue;        // past the data: coefficients stay zero
            for (int j = 0; j < sc->ncomp; j++) {
                Component *c = &d->comp[sc->ci[j]];
                int nh = single ? 1 : c->h, nv = single ? 1 : c->v;
                for (int v = 0; v < nv; v++) {
                    for (int u = 0; u < nh; u++) {
                        size_t by = (size_t)y * nv + v, bx = (size_t)x * nh + u;
                        decode_block(d, &b, sc, j, c->coef + (by * c->bw + bx) * 64);
                    }
                }
            }
        }
    }
    return b.marker ? b.marker_pos - 1 : b.pos;
}

// ---- markers ----

static int read_dqt(Decoder *d, const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        int pq = s[i] >> 4, tq = s[i] & 15;
        size_t need = 1 + 64 * (size_t)(pq + 1);
        if (pq > 1 || tq > 3)
            return fail(d, "bad DQT segment: precision %d, table %d (expected precision 0 "
                        "or 1, table 0..3)", pq, tq);
        if (len - i < need)
            return fail(d, "bad DQT segment: %zu bytes left for a %zu-byte table", len - i,
                        need);
        for (int k = 0; k < 64; k++)
            d->qt[tq][zigzag[k]] = pq ? (uint16_t)be16(s + i + 1 + 2 * k) : s[i + 1 + k];
        d->qt_defined[tq] = 1;
        i += need;
    }
    return 0;
}

static int read_dht(Decoder *d, const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        int tc = s[i] >> 4, th = s[i] & 15, nsym = 0;
        if (len - i < 17 || tc > 1 || th > 3)
            return fail(d, "bad DHT segment (class %d, slot %d; expected class 0..1, "
                        "slot 0..3)", tc, th);
        for (int k = 0; k < 16; k++) nsym += s[i + 1 + k];
        if (nsym > 256 || len - i - 17 < (size_t)nsym)
            return fail(d, "bad DHT segment: %d codes, %zu bytes of symbols (at most 256 "
                        "codes, all present)", nsym, len - i - 17);
        if (huff_build(tc ? &d->ac[th] : &d->dc[th], s + i + 1, s + i + 17, nsym, tc == 0))
            return fail(d, "bad DHT segment: %s table %d: code lengths overflow or a DC "
                        "symbol above 15", tc ? "AC" : "DC", th);
        i += 17 + (size_t)nsym;
    }
    return 0;
}

static int read_sof(Decoder *d, int m, const uint8_t *s, size_t len, int64_t max_pixels,
                    int max_side) {
    if (d->nc) return fail(d, "a second frame header (expected one)");
    if (m != 0xC0 && m != 0xC1 && m != 0xC2)
        return fail(d, "coding process of marker FF %02X (expected baseline, extended "
                    "sequential or progressive Huffman: FF C0, C1, C2)", m);
    if (len < 6 || s[0] != 8)
        return fail(d, "frame header of %zu bytes, precision %d (expected 8-bit)", len,
                    len ? s[0] : 0);
    d->h = (int)be16(s + 1), d->w = (int)be16(s + 3), d->nc = s[5];
    d->progressive = m == 0xC2;
    if (d->nc != 1 && d->nc != 3 && d->nc != 4)
        return fail(d, "%d components (expected 1, 3 or 4)", d->nc);
    if (len != 6 + 3 * (size_t)d->nc)
        return fail(d, "frame header of %zu bytes for %d components (expected %d)", len,
                    d->nc, 6 + 3 * d->nc);
    if (d->w == 0 || d->h == 0)
        return fail(d, "frame of %dx%d pixels (expected both sides >= 1)", d->w, d->h);
    if (d->w > max_side || d->h > max_side || (int64_t)d->w * d->h > max_pixels)
        return fail(d, "frame of %dx%d pixels (limits: side %d, %lld pixels)", d->w, d->h,
                    max_side, (long long)max_pixels);

    // Components: id, sampling factors 1..4, quant table slot 0..3.
    d->hmax = d->vmax = 1;
    for (int i = 0; i < d->nc; i++) {
        Component *c = &d->comp[i];
        c->id = s[6 + 3 * i], c->h = s[7 + 3 * i] >> 4, c->v = s[7 + 3 * i] & 15;
        c->tq = s[8 + 3 * i];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4 || c->tq > 3)
            return fail(d, "component %d: sampling %dx%d, quant table %d (expected 1..4, "
                        "0..3)", i, c->h, c->v, c->tq);
        if (c->h > d->hmax) d->hmax = c->h;
        if (c->v > d->vmax) d->vmax = c->v;
    }
    d->mcux = (d->w + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (d->h + 8 * d->vmax - 1) / (8 * d->vmax);
    for (int i = 0; i < d->nc; i++) {
        Component *c = &d->comp[i];
        if (d->hmax % c->h || d->vmax % c->v)
            return fail(d, "component %d: sampling %dx%d against %dx%d (expected an integer "
                        "ratio)", i, c->h, c->v, d->hmax, d->vmax);
        c->dw = (int)(((int64_t)d->w * c->h + d->hmax - 1) / d->hmax);
        c->dh = (int)(((int64_t)d->h * c->v + d->vmax - 1) / d->vmax);
        c->bw = d->mcux * c->h, c->bh = d->mcuy * c->v;
        c->coef = calloc((size_t)c->bw * c->bh, 64 * sizeof(int16_t));
        if (!c->coef) return fail(d, "out of memory for %dx%d blocks", c->bw, c->bh);
    }
    return 0;
}

static int read_sos(Decoder *d, const uint8_t *s, size_t len, Scan *sc) {
    if (!d->nc) return fail(d, "a scan before the frame header");
    int ns = len ? s[0] : 0;
    if (ns < 1 || ns > JPEG_MAX_COMPS || len != 4 + 2 * (size_t)ns)
        return fail(d, "scan header of %zu bytes with %d components (expected 1..4 "
                    "components, 4 + 2 per component bytes)", len, ns);
    memset(sc, 0, sizeof *sc);
    sc->ncomp = ns;
    int blocks = 0;
    for (int j = 0; j < ns; j++) {
        int id = s[1 + 2 * j], ci = 0;
        while (ci < d->nc && d->comp[ci].id != id) ci++;
        if (ci == d->nc) return fail(d, "scan names component id %d, not in the frame", id);
        for (int k = 0; k < j; k++)
            if (sc->ci[k] == ci) return fail(d, "scan names component id %d twice", id);
        sc->ci[j] = ci, sc->td[j] = s[2 + 2 * j] >> 4, sc->ta[j] = s[2 + 2 * j] & 15;
        if (sc->td[j] > 3 || sc->ta[j] > 3)
            return fail(d, "scan Huffman table slots %d/%d (expected 0..3)", sc->td[j],
                        sc->ta[j]);
        blocks += d->comp[ci].h * d->comp[ci].v;
    }
    if (ns > 1 && blocks > JPEG_MAX_MCU_BLOCKS)
        return fail(d, "an MCU of %d blocks (expected at most %d)", blocks, JPEG_MAX_MCU_BLOCKS);
    sc->ss = s[1 + 2 * ns], sc->se = s[2 + 2 * ns];
    sc->ah = s[3 + 2 * ns] >> 4, sc->al = s[3 + 2 * ns] & 15;

    // Progressive scans: spectral band and successive approximation.
    if (!d->progressive) {
        sc->ss = 0, sc->se = 63, sc->ah = sc->al = 0;   // sequential: libjpeg ignores them
    } else {
        int bad = sc->ss == 0 ? sc->se != 0 : sc->se < sc->ss || sc->se > 63 || ns != 1;
        if (bad || (sc->ah && sc->al != sc->ah - 1) || sc->al > 13)
            return fail(d, "progressive scan Ss=%d Se=%d Ah=%d Al=%d with %d components "
                        "(expected a DC scan 0..0 or one component's band within 1..63, "
                        "Al = Ah - 1 or Ah = 0, Al <= 13)", sc->ss, sc->se, sc->ah, sc->al, ns);
    }

    // Tables the scan uses must exist; quant tables latch at first use.
    for (int j = 0; j < ns; j++) {
        int need_dc = !d->progressive || (sc->ss == 0 && sc->ah == 0);
        int need_ac = !d->progressive || sc->ss > 0;
        if ((need_dc && !d->dc[sc->td[j]].defined) || (need_ac && !d->ac[sc->ta[j]].defined))
            return fail(d, "scan uses Huffman table DC %d / AC %d, not defined (expected a "
                        "DHT segment before the scan)", sc->td[j], sc->ta[j]);
        Component *c = &d->comp[sc->ci[j]];
        if (!c->latched) {
            if (!d->qt_defined[c->tq])
                return fail(d, "component %d uses quantization table %d, not defined",
                            sc->ci[j], c->tq);
            memcpy(c->q, d->qt[c->tq], sizeof c->q);
            c->latched = 1;
        }
    }
    return 0;
}

// Walk the markers from SOI to EOI, decoding every scan.
static int read_file(Decoder *d, int64_t max_pixels, int max_side) {
    size_t off = 2;
    int scans = 0;
    for (;;) {
        // Next marker: skip stray bytes, then fill bytes.
        while (off < d->n && d->p[off] != 0xFF) off++;
        while (off + 1 < d->n && d->p[off + 1] == 0xFF) off++;
        if (off + 1 >= d->n) {
            if (scans) return 0;               // libjpeg supplies the missing EOI
            return fail(d, "the data ends at byte %zu before any scan", d->n);
        }
        int m = d->p[off + 1];
        if (m == 0xD9) break;
        if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) {
            off += 2;
            continue;
        }
        if (off + 4 > d->n) return fail(d, "marker FF %02X at offset %zu is cut short", m, off);
        size_t len = be16(d->p + off + 2);
        if (len < 2 || off + 2 + len > d->n)
            return fail(d, "marker FF %02X at offset %zu has length %zu, %zu bytes left", m,
                        off, len, d->n - off - 2);
        const uint8_t *s = d->p + off + 4;
        size_t body = len - 2;
        off += 2 + len;
        int rc = 0;
        if (m == 0xDB) rc = read_dqt(d, s, body);
        else if (m == 0xC4) rc = read_dht(d, s, body);
        else if (m == 0xDD) d->restart = body >= 2 ? (int)be16(s) : 0;
        else if (m == 0xE0 && body >= 14 && memcmp(s, "JFIF", 5) == 0) d->jfif = 1;
        else if (m == 0xEE && body >= 12 && memcmp(s, "Adobe", 5) == 0)
            d->adobe = 1, d->adobe_transform = s[11];
        else if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)
            rc = read_sof(d, m, s, body, max_pixels, max_side);
        else if (m == 0xDC) rc = fail(d, "a DNL marker (frame height after the scan)");
        else if (m == 0xDA) {
            Scan sc;
            rc = read_sos(d, s, body, &sc);
            if (!rc) off = decode_scan(d, &sc, off), scans++;
        }
        if (rc) return rc;
    }
    if (!scans) return fail(d, "the end-of-image marker comes before any scan");
    return 0;
}

// ---- IDCT (islow: T.81 A.3.3 in 13-bit fixed point, two passes) ----

#define CONST_BITS 13
#define PASS1_BITS 2
#define F0_298 2446
#define F0_390 3196
#define F0_541 4433
#define F0_765 6270
#define F0_899 7373
#define F1_175 9633
#define F1_501 12299
#define F1_847 15137
#define F1_961 16069
#define F2_053 16819
#define F2_562 20995
#define F3_072 25172

// One 8-point inverse DCT on x[0..7] (stride st), the even part from
// x0, x2, x4, x6 and the odd part from x1, x3, x5, x7 (Loeffler-style
// rotations); out[i] = sum before descaling.  t[8] receives the sums.
static void idct_1d(const int64_t x[8], int64_t t[8]) {
    // Even part.
    int64_t z1 = (x[2] + x[6]) * F0_541;
    int64_t e2 = z1 - x[6] * F1_847, e3 = z1 + x[2] * F0_765;
    int64_t e0 = (x[0] + x[4]) * (1 << CONST_BITS), e1 = (x[0] - x[4]) * (1 << CONST_BITS);
    int64_t t10 = e0 + e3, t13 = e0 - e3, t11 = e1 + e2, t12 = e1 - e2;
    // Odd part.
    int64_t o0 = x[7], o1 = x[5], o2 = x[3], o3 = x[1];
    int64_t a1 = o0 + o3, a2 = o1 + o2, a3 = o0 + o2, a4 = o1 + o3;
    int64_t a5 = (a3 + a4) * F1_175;
    o0 *= F0_298, o1 *= F2_053, o2 *= F3_072, o3 *= F1_501;
    a1 *= -F0_899, a2 *= -F2_562, a3 = a3 * -F1_961 + a5, a4 = a4 * -F0_390 + a5;
    o0 += a1 + a3, o1 += a2 + a4, o2 += a2 + a3, o3 += a1 + a4;
    t[0] = t10 + o3, t[7] = t10 - o3, t[1] = t11 + o2, t[6] = t11 - o2;
    t[2] = t12 + o1, t[5] = t12 - o1, t[3] = t13 + o0, t[4] = t13 - o0;
}

// Round-half-up shift right (x + 2^(k-1)) >> k, arithmetic.
static int64_t descale(int64_t x, int k) { return (x + ((int64_t)1 << (k - 1))) >> k; }

// Post-IDCT range limit: the value + 128 read as 10-bit two's complement,
// clamped to 0..255 (libjpeg's table wraps the same way).
static uint8_t range_limit(int64_t x) {
    int v = (int)(x & 1023);
    if (v >= 512) v -= 1024;
    v += 128;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// blk [64] coefficients, q [64] quant table (natural order) -> out [8, 8]
// with row stride `stride`: columns first (dequantised, kept with
// PASS1_BITS extra bits), then rows.
static void idct_block(const int16_t *blk, const uint16_t *q, uint8_t *out, size_t stride) {
    int32_t ws[64];
    int64_t x[8], t[8];
    for (int col = 0; col < 8; col++) {
        for (int r = 0; r < 8; r++) x[r] = (int64_t)blk[r * 8 + col] * q[r * 8 + col];
        idct_1d(x, t);
        for (int r = 0; r < 8; r++)
            ws[r * 8 + col] = (int32_t)(uint32_t)descale(t[r], CONST_BITS - PASS1_BITS);
    }
    for (int row = 0; row < 8; row++) {
        for (int i = 0; i < 8; i++) x[i] = ws[row * 8 + i];
        idct_1d(x, t);
        for (int i = 0; i < 8; i++)
            out[row * stride + i] = range_limit(descale(t[i], CONST_BITS + PASS1_BITS + 3));
    }
}

static int idct_planes(Decoder *d) {
    for (int i = 0; i < d->nc; i++) {
        Component *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8;
        c->plane = malloc(stride * (size_t)c->bh * 8);
        if (!c->plane) return fail(d, "out of memory for a %zux%d plane", stride, c->bh * 8);
        if (!c->latched) memcpy(c->q, d->qt[c->tq], sizeof c->q);   // never scanned
        for (int by = 0; by < c->bh; by++)
            for (int bx = 0; bx < c->bw; bx++)
                idct_block(c->coef + ((size_t)by * c->bw + bx) * 64, c->q,
                           c->plane + (size_t)by * 8 * stride + (size_t)bx * 8, stride);
        free(c->coef);
        c->coef = NULL;
    }
    return 0;
}

// ---- upsampling (libjpeg's fancy filters) ----

// Row y of component c at full resolution into out [>= W]: its samples
// dw x dh, edges replicated.  2:1 horizontally: 3/4 nearer + 1/4 farther,
// bias +1 then +2; 2:1 vertically likewise; 2:1 both: the vertical 3:1
// column sums, then horizontally 3:1 with bias +8 then +7 over 16.
static void upsample_row(const Decoder *d, const Component *c, int y, uint8_t *out) {
    int hr = d->hmax / c->h, vr = d->vmax / c->v, dw = c->dw;
    size_t stride = (size_t)c->bw * 8;
    int r = y / vr;
    const uint8_t *s = c->plane + (size_t)r * stride;
    if (vr == 2 && (hr == 1 || (hr == 2 && dw > 2))) {
        // Vertical triangle: the nearer row 3x, the farther (edge-clamped) 1x.
        int far = y % 2 ? (r + 1 < c->dh ? r + 1 : r) : (r > 0 ? r - 1 : 0);
        const uint8_t *f = c->plane + (size_t)far * stride;
        if (hr == 1) {
            int bias = y % 2 ? 2 : 1;
            for (int x = 0; x < dw; x++) out[x] = (uint8_t)((3 * s[x] + f[x] + bias) >> 2);
            return;
        }
        int prev = 3 * s[0] + f[0], cur = prev;
        for (int x = 0; x < dw; x++) {
            int next = x + 1 < dw ? 3 * s[x + 1] + f[x + 1] : cur;
            out[2 * x] = (uint8_t)(x == 0 ? (4 * cur + 8) >> 4 : (3 * cur + prev + 8) >> 4);
            out[2 * x + 1] =
                (uint8_t)(x + 1 == dw ? (4 * cur + 7) >> 4 : (3 * cur + next + 7) >> 4);
            prev = cur, cur = next;
        }
        return;
    }
    if (hr == 2 && vr == 1 && dw > 2) {
        out[0] = s[0];
        out[1] = (uint8_t)((3 * s[0] + s[1] + 2) >> 2);
        for (int x = 1; x < dw - 1; x++) {
            out[2 * x] = (uint8_t)((3 * s[x] + s[x - 1] + 1) >> 2);
            out[2 * x + 1] = (uint8_t)((3 * s[x] + s[x + 1] + 2) >> 2);
        }
        out[2 * dw - 2] = (uint8_t)((3 * s[dw - 1] + s[dw - 2] + 1) >> 2);
        out[2 * dw - 1] = s[dw - 1];
        return;
    }
    // Full size, or any other integer factor: replicate.
    for (int x = 0; x < d->w; x++) out[x] = s[x / hr];
}

// ---- colour conversion ----

#define SCALEBITS 16
#define ONE_HALF (1 << (SCALEBITS - 1))
#define FIX(x) ((int32_t)((x) * (1 << SCALEBITS) + 0.5))

typedef struct ColorTabs {
    int cr_r[256], cb_b[256];
    int32_t cr_g[256], cb_g[256];
} ColorTabs;

// R = Y + 1.402 (Cr - 128), G = Y - 0.34414 (Cb - 128) - 0.71414 (Cr - 128),
// B = Y + 1.772 (Cb - 128), each term rounded in 16-bit fixed point.
static void color_tabs(ColorTabs *t) {
    for (int i = 0; i < 256; i++) {
        int32_t x = i - 128;
        t->cr_r[i] = (FIX(1.40200) * x + ONE_HALF) >> SCALEBITS;
        t->cb_b[i] = (FIX(1.77200) * x + ONE_HALF) >> SCALEBITS;
        t->cr_g[i] = -FIX(0.71414) * x;
        t->cb_g[i] = -FIX(0.34414) * x + ONE_HALF;
    }
}

static uint8_t clamp255(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

static void ycc_to_rgb(const ColorTabs *t, int y, int cb, int cr, uint8_t *o) {
    o[0] = clamp255(y + t->cr_r[cr]);
    o[1] = clamp255(y + ((t->cb_g[cb] + t->cr_g[cr]) >> SCALEBITS));
    o[2] = clamp255(y + t->cb_b[cb]);
}

// Colour space as libjpeg picks it: 3 components are YCbCr unless an Adobe
// marker says transform 0 (or, without JFIF and Adobe, ids 'R','G','B');
// 4 are YCCK when an Adobe marker says transform 2 (or anything but 0).
static int is_ycc(const Decoder *d) {
    if (d->nc == 3) {
        if (d->jfif) return 1;
        if (d->adobe) return d->adobe_transform != 0;
        return !(d->comp[0].id == 'R' && d->comp[1].id == 'G' && d->comp[2].id == 'B');
    }
    if (d->nc == 4) return d->adobe && d->adobe_transform != 0;
    return 0;
}

static int convert(Decoder *d, uint8_t *pix) {
    ColorTabs t;
    color_tabs(&t);
    int ycc = is_ycc(d), nc = d->nc;
    size_t rowlen = (size_t)d->w + 64;
    uint8_t *rows = malloc(rowlen * (size_t)nc);
    if (!rows) return fail(d, "out of memory for rows of %d pixels", d->w);
    for (int y = 0; y < d->h; y++) {
        for (int i = 0; i < nc; i++) upsample_row(d, &d->comp[i], y, rows + i * rowlen);
        const uint8_t *a = rows, *b = rows + rowlen, *c = rows + 2 * rowlen,
                      *k = rows + 3 * rowlen;
        uint8_t *o = pix + (size_t)y * d->w * nc;
        if (nc == 1) {
            memcpy(o, a, (size_t)d->w);
        } else if (nc == 3) {
            for (int x = 0; x < d->w; x++, o += 3) {
                if (ycc) ycc_to_rgb(&t, a[x], b[x], c[x], o);
                else o[0] = a[x], o[1] = b[x], o[2] = c[x];
            }
        } else {
            // CMYK (or YCCK -> CMYK: C = 255 - R, ...), then PIL's inversion.
            for (int x = 0; x < d->w; x++, o += 4) {
                if (ycc) ycc_to_rgb(&t, a[x], b[x], c[x], o);
                else o[0] = (uint8_t)(255 - a[x]), o[1] = (uint8_t)(255 - b[x]),
                     o[2] = (uint8_t)(255 - c[x]);
                o[3] = (uint8_t)(255 - k[x]);
            }
        }
    }
    free(rows);
    return 0;
}

int ds_jpeg_decode(const uint8_t *p, size_t n, int64_t max_pixels, int max_side,
                   uint8_t **pix, int *w, int *h, int *c, char *why, size_t why_len) {
    Decoder *d = calloc(1, sizeof *d);
    *pix = NULL;
    if (!d) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    d->p = p, d->n = n, d->why = why, d->why_len = why_len;
    int rc = 0;
    if (n < 2 || p[0] != 0xFF || p[1] != 0xD8) rc = fail(d, "no start-of-image marker FF D8");
    if (!rc) rc = read_file(d, max_pixels, max_side);
    if (!rc) rc = idct_planes(d);
    uint8_t *out = NULL;
    if (!rc) {
        out = malloc((size_t)d->w * d->h * d->nc);
        if (!out) rc = fail(d, "out of memory for %dx%d pixels", d->w, d->h);
    }
    if (!rc) rc = convert(d, out);
    if (!rc) *pix = out, *w = d->w, *h = d->h, *c = d->nc;
    else free(out);
    for (int i = 0; i < JPEG_MAX_COMPS; i++) free(d->comp[i].coef), free(d->comp[i].plane);
    free(d);
    return rc;
}
