// image.c - see image.h.  Header parsing, limits and error text are ours;
// pixel decoding is stb_image's (stb_image_impl.c), or libjpeg-turbo's.
// The modes follow Pillow 9.4's PngImagePlugin / JpegImagePlugin /
// GifImagePlugin / BmpImagePlugin and the conversions to RGB its
// convert("RGB"), checked against PIL by tests/test_preprocess.c.
#include "image.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <stb/stb_image.h>

void ds_stbi_clear_failure(void);   // stb_image_impl.c

// JPEG backend: stb_image by default; with MCLIP_LIBJPEG (make JPEG=libjpeg)
// libjpeg-turbo, the library PIL decodes with, so JPEG pixels are PIL's.
#ifdef MCLIP_LIBJPEG
#include <setjmp.h>
#include <jpeglib.h>
#define JPEG_LIBJPEG 1
#else
#define JPEG_LIBJPEG 0
#endif
// JPEG=stb (MCLIP_JPEG_STB): stb_image for JPEG too; otherwise jpeg.c.
#ifdef MCLIP_JPEG_STB
#define JPEG_STB 1
#else
#define JPEG_STB 0
#include "jpeg.h"
#endif

// Room for a decoder's failure reason (libjpeg's JMSG_LENGTH_MAX is 200).
#define DECODE_WHY_LEN 200
#ifdef MCLIP_LIBJPEG
_Static_assert(JMSG_LENGTH_MAX <= DECODE_WHY_LEN, "libjpeg messages must fit");
#endif

// More scans than this is a decoding-time attack, not a photograph (real
// progressive files have about 10); PIL has no such limit.
#define JPEG_MAX_SCANS 1000

// ---- small helpers ----

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

// A pixel count in binary units: "64 Mpixel", "9.31 Gpixel".
static const char *pixels_str(double v, char *buf, size_t len) {
    if (v >= 1024.0 * 1024 * 1024) snprintf(buf, len, "%.3g Gpixel", v / (1024.0 * 1024 * 1024));
    else if (v >= 1024.0 * 1024) snprintf(buf, len, "%.3g Mpixel", v / (1024.0 * 1024));
    else snprintf(buf, len, "%.0f pixels", v);
    return buf;
}

// A PNG chunk type as printable text ("IDAT", or "\x00..." escaped).
static const char *chunk_name(const uint8_t *p, char buf[20]) {
    int k = 0;
    for (int i = 0; i < 4; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f) buf[k++] = (char)p[i];
        else k += snprintf(buf + k, 5, "\\x%02x", p[i]);
    }
    buf[k] = 0;
    return buf;
}

void ds_image_limits_default(DsImageLimits *lim) {
    lim->max_pixels = DS_IMAGE_MAX_PIXELS;
    lim->max_side = DS_IMAGE_MAX_SIDE;
    lim->max_file_bytes = DS_IMAGE_MAX_FILE_BYTES;
}

const char *ds_image_format_name(DsImageFormat f) {
    switch (f) {
    case DS_IMAGE_JPEG: return "JPEG";
    case DS_IMAGE_PNG:  return "PNG";
    case DS_IMAGE_GIF:  return "GIF";
    case DS_IMAGE_BMP:  return "BMP";
    default:            return "unknown";
    }
}

// ---- recognising the format ----

DsImageFormat ds_image_sniff(const void *data, size_t n) {
    const uint8_t *p = data;
    if (n >= 2 && p[0] == 0xFF && p[1] == 0xD8) return DS_IMAGE_JPEG;
    if (n >= 4 && memcmp(p, "\x89PNG", 4) == 0) return DS_IMAGE_PNG;
    if (n >= 4 && memcmp(p, "GIF8", 4) == 0) return DS_IMAGE_GIF;
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return DS_IMAGE_BMP;
    return DS_IMAGE_UNKNOWN;
}

// What a file that is none of our formats probably is, from its first bytes.
static const char *guess_kind(const uint8_t *p, size_t n) {
    if (n >= 4 && memcmp(p, "%PDF", 4) == 0) return "a PDF document";
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return "a WebP image, which is not supported (convert it to PNG or JPEG)";
    if (n >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
        return "a TIFF image, which is not supported (convert it to PNG or JPEG)";
    if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
        if (memcmp(p + 8, "hei", 3) == 0 || memcmp(p + 8, "mif1", 4) == 0 ||
            memcmp(p + 8, "avif", 4) == 0)
            return "a HEIF/AVIF image, which is not supported (convert it to PNG or JPEG)";
        return "an MP4/QuickTime container";
    }
    if (n >= 8 && memcmp(p, "\0\0\0\x0cjP  ", 8) == 0) return "a JPEG 2000 image (not supported)";
    if (n >= 4 && memcmp(p, "8BPS", 4) == 0) return "a Photoshop document (not supported)";
    if (n >= 4 && memcmp(p, "\0\0\1\0", 4) == 0) return "a Windows icon (not supported)";
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) return "gzip-compressed data";
    if (n >= 4 && memcmp(p, "PK\3\4", 4) == 0) return "a zip archive";
    if (n >= 3 && memcmp(p, "BZh", 3) == 0) return "bzip2-compressed data";
    if (n >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7' && (p[2] == '\n' || p[2] == ' '))
        return "a PNM image (not supported)";
    if (n >= 1 && p[0] == '<') return "HTML, XML or SVG text (an error page saved as an image?)";
    size_t text = 0, m = n < 64 ? n : 64;
    for (size_t i = 0; i < m; i++)
        text += (p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\n' || p[i] == '\r' || p[i] == '\t';
    if (m > 0 && text == m) return "text";
    return "unrecognised data";
}

static int err_not_image(McErr *err, const char *name, const uint8_t *p, size_t n) {
    char hex[3 * 8 + 1] = "";
    size_t m = n < 8 ? n : 8, k = 0;
    for (size_t i = 0; i < m; i++) k += (size_t)snprintf(hex + k, sizeof hex - k, "%s%02X",
                                                        i ? " " : "", p[i]);
    return mc_err(err, "%s: not a JPEG, PNG, GIF or BMP image (starts with bytes %s: %s)",
                  name, hex, guess_kind(p, n));
}

// ---- PNG header and chunk structure ----

// Facts gathered while walking the chunks, used to prepare stb_image's input.
typedef struct PngScan {
    size_t plte_at;      // offset of the PLTE chunk (0: none)
    int    plte_entries; // palette entries in PLTE
    int    has_iend;     // 1 when the file has its IEND chunk
} PngScan;

static int png_check_depth(int ct, int bits) {
    switch (ct) {
    case 0: return bits == 1 || bits == 2 || bits == 4 || bits == 8 || bits == 16;
    case 3: return bits == 1 || bits == 2 || bits == 4 || bits == 8;
    case 2: case 4: case 6: return bits == 8 || bits == 16;
    default: return 0;
    }
}

static int png_probe(const uint8_t *p, size_t n, const char *name, DsImageInfo *info,
                     PngScan *scan, McErr *err) {
    // Signature (8 bytes) then IHDR (4 length + 4 type + 13 data + 4 CRC).
    if (n < 8 || memcmp(p, "\x89PNG\r\n\x1a\n", 8) != 0)
        return mc_err(err, "%s: damaged PNG signature (the 8 bytes 89 50 4E 47 0D 0A 1A 0A are "
                      "altered; a text-mode transfer rewrites line ends)", name);
    if (n < 33) return mc_err(err, "%s: truncated PNG: %zu bytes, fewer than the 33 that the "
                              "signature and IHDR chunk need", name, n);
    char tn[20];
    if (memcmp(p + 12, "CgBI", 4) == 0)
        return mc_err(err, "%s: Apple CgBI PNG (iPhone-optimised variant) is not supported", name);
    if (memcmp(p + 12, "IHDR", 4) != 0 || be32(p + 8) != 13)
        return mc_err(err, "%s: damaged PNG: expected the 13-byte IHDR chunk first, found '%s' "
                      "of length %u", name, chunk_name(p + 12, tn), be32(p + 8));
    uint32_t w = be32(p + 16), h = be32(p + 20);
    int bits = p[24], ct = p[25];
    if (w == 0 || h == 0 || w > INT32_MAX || h > INT32_MAX)
        return mc_err(err, "%s: damaged PNG: IHDR gives a %ux%u image", name, w, h);
    if (!png_check_depth(ct, bits))
        return mc_err(err, "%s: damaged PNG: colour type %d with bit depth %d is not a valid "
                      "combination", name, ct, bits);
    if (p[26] != 0 || p[27] != 0 || p[28] > 1)
        return mc_err(err, "%s: damaged PNG: IHDR compression %d, filter %d, interlace %d "
                      "(expected 0, 0, 0 or 1)", name, p[26], p[27], p[28]);

    // What PIL opens it as, and how many samples a pixel stores.
    static const int chans[7] = {1, 0, 3, 1, 2, 0, 4};
    static const char *const modes[7] = {"L", "", "RGB", "P", "LA", "", "RGBA"};
    info->format = DS_IMAGE_PNG;
    info->w = (int)w, info->h = (int)h;
    info->channels = chans[ct];
    info->bits = bits;
    info->palette = ct == 3;
    info->progressive = p[28];
    snprintf(info->mode, sizeof info->mode, "%s", modes[ct]);
    if (ct == 0 && bits == 1) snprintf(info->mode, sizeof info->mode, "1");
    if (ct == 0 && bits == 16) snprintf(info->mode, sizeof info->mode, "I");
    if (ct == 4 && bits == 16) snprintf(info->mode, sizeof info->mode, "RGBA");

    // Walk the chunks: each must fit in the file; stop at IEND.
    memset(scan, 0, sizeof *scan);
    size_t off = 8;
    int n_idat = 0;
    while (off < n) {
        if (n - off < 12)
            return mc_err(err, "%s: truncated PNG: %zu bytes left at offset %zu, a chunk needs "
                          "at least 12", name, n - off, off);
        uint32_t len = be32(p + off);
        if (len > INT32_MAX)
            return mc_err(err, "%s: damaged PNG: chunk '%s' at offset %zu claims %u bytes",
                          name, chunk_name(p + off + 4, tn), off, len);
        if ((size_t)len + 12 > n - off)
            return mc_err(err, "%s: truncated PNG: chunk '%s' at offset %zu needs %u bytes, "
                          "only %zu are left", name, chunk_name(p + off + 4, tn), off,
                          len + 12, n - off);
        const uint8_t *type = p + off + 4;
        if (memcmp(type, "IDAT", 4) == 0) n_idat++;
        if (memcmp(type, "PLTE", 4) == 0) {
            if (len % 3 || len == 0 || len > 768)
                return mc_err(err, "%s: damaged PNG: PLTE chunk of %u bytes (expected 3 to 768, "
                              "a multiple of 3)", name, len);
            scan->plte_at = off;
            scan->plte_entries = (int)(len / 3);
        }
        off += (size_t)len + 12;
        if (memcmp(type, "IEND", 4) == 0) {
            scan->has_iend = 1;
            break;
        }
    }
    if (n_idat == 0)
        return mc_err(err, "%s: truncated PNG: no image data (IDAT chunk) in %zu bytes", name, n);
    if (ct == 3 && !scan->plte_at)
        return mc_err(err, "%s: damaged PNG: palette image without a PLTE chunk", name);
    return 0;
}

// stb_image reads a short palette's missing entries from uninitialised
// memory and refuses a file without IEND; PIL pads the palette with the
// gray ramp (index i -> (i, i, i)) and accepts a missing IEND.  Sets *out
// to a patched copy of the file (malloc) when either applies, else NULL;
// returns -1 only when that copy cannot be allocated.
static int png_patch(const uint8_t *p, size_t n, const DsImageInfo *info,
                     const PngScan *scan, uint8_t **out, size_t *n_out) {
    int want = info->palette ? (1 << info->bits) : 0;
    int pad = scan->plte_at && scan->plte_entries < want ? want - scan->plte_entries : 0;
    *out = NULL;
    if (!pad && scan->has_iend) return 0;

    size_t cut = scan->plte_at ? scan->plte_at + 12 + (size_t)scan->plte_entries * 3 : n;
    size_t total = n + (size_t)pad * 3 + (scan->has_iend ? 0 : 12);
    uint8_t *q = malloc(total);
    if (!q) return -1;
    size_t k = 0;

    // Everything before the PLTE chunk, then PLTE with the padded entries.
    if (pad) {
        memcpy(q, p, scan->plte_at);
        k = scan->plte_at;
        uint32_t len = (uint32_t)(scan->plte_entries + pad) * 3;
        uint8_t *c = q + k;
        c[0] = (uint8_t)(len >> 24), c[1] = (uint8_t)(len >> 16);
        c[2] = (uint8_t)(len >> 8), c[3] = (uint8_t)len;
        memcpy(c + 4, p + scan->plte_at + 4, 4 + (size_t)scan->plte_entries * 3);
        for (int i = scan->plte_entries; i < scan->plte_entries + pad; i++)
            memset(c + 8 + 3 * (size_t)i, i, 3);
        uint32_t crc = (uint32_t)crc32(0, c + 4, 4 + len);
        c[8 + len] = (uint8_t)(crc >> 24), c[9 + len] = (uint8_t)(crc >> 16);
        c[10 + len] = (uint8_t)(crc >> 8), c[11 + len] = (uint8_t)crc;
        k += 12 + len;
    } else {
        cut = 0;
    }

    // The rest of the file, then an IEND chunk if it had none.
    memcpy(q + k, p + cut, n - cut);
    k += n - cut;
    if (!scan->has_iend) {
        memcpy(q + k, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
        k += 12;
    }
    *out = q, *n_out = k;
    return 0;
}

// ---- JPEG marker structure ----

typedef struct JpegScan {
    int adobe;           // 1: Adobe APP14 marker present
    int adobe_transform; // its colour transform (0 none/CMYK, 1 YCbCr, 2 YCCK)
} JpegScan;

// The coding processes we cannot decode (NULL: supported).  libjpeg-turbo
// also reads sequential and progressive arithmetic coding, as PIL does.
static const char *jpeg_sof_kind(int m) {
    switch (m) {
    case 0xC3: return "lossless";
    case 0xC5: case 0xC6: case 0xC7: return "hierarchical (differential)";
    case 0xC9: case 0xCA: return JPEG_LIBJPEG ? NULL : "arithmetic-coded";
    case 0xCB: return "lossless arithmetic-coded";
    case 0xCD: case 0xCE: case 0xCF: return "arithmetic-coded hierarchical";
    default: return NULL;
    }
}

// Skip the entropy-coded data after an SOS segment: returns the offset of
// the next marker, or n when the data runs to the end of the file.
static size_t jpeg_skip_scan(const uint8_t *p, size_t n, size_t i) {
    while (i + 1 < n) {
        if (p[i] != 0xFF) { i++; continue; }
        uint8_t b = p[i + 1];
        if (b == 0x00 || (b >= 0xD0 && b <= 0xD7)) i += 2;  // stuffed byte or restart
        else if (b == 0xFF) i++;                             // fill byte
        else return i;
    }
    return n;
}

// A DHT segment body of len bytes: tables of (class/id byte, 16 counts,
// values); class <= 1, id <= 3, at most 256 codes, lengths consistent.
// Returns 0 when valid; bit class * 4 + id of *defined is set for each table.
static int jpeg_check_dht(const uint8_t *s, size_t len, unsigned *defined) {
    size_t i = 0;
    while (i < len) {
        if (len - i < 17 || (s[i] >> 4) > 1 || (s[i] & 15) > 3) return -1;
        size_t n = 0;
        for (int k = 1; k <= 16; k++) n += s[i + k];
        if (n > 256 || len - i - 17 < n) return -1;
        *defined |= 1u << ((s[i] >> 4) * 4 + (s[i] & 15));
        i += 17 + n;
    }
    return 0;
}

// A scan (SOS body of len bytes) must use only Huffman tables defined
// before it: stb_image 2.27 decodes with whatever its never-filled table
// holds (an assertion failure, or garbage).  DC tables serve first DC
// scans (Ss = 0, Ah = 0), AC tables every scan with Se > 0.  Returns 0, or
// the missing table as 0x100 | class << 4 | id; malformed scan headers are
// left to the decoder.
static unsigned jpeg_scan_tables(const uint8_t *s, size_t len, unsigned defined) {
    size_t ns = len ? s[0] : 0;
    if (len < 1 + 2 * ns + 3) return 0;
    int ss = s[1 + 2 * ns], se = s[2 + 2 * ns], ah = s[3 + 2 * ns] >> 4;
    for (size_t c = 0; c < ns; c++) {
        int td = s[2 + 2 * c] >> 4, ta = s[2 + 2 * c] & 15;
        if (ss == 0 && ah == 0 && td <= 3 && !(defined >> td & 1)) return 0x100u | td;
        if (se > 0 && ta <= 3 && !(defined >> (4 + ta) & 1)) return 0x110u | ta;
    }
    return 0;
}

static int jpeg_probe(const uint8_t *p, size_t n, const char *name, DsImageInfo *info,
                      JpegScan *js, McErr *err) {
    memset(js, 0, sizeof *js);
    if (n < 4 || p[2] != 0xFF)
        return mc_err(err, "%s: truncated JPEG: %zu bytes, no marker after the start-of-image",
                      name, n);
    int sof = 0, scans = 0;
    unsigned huff_defined = 0;   // DHT tables seen so far (jpeg_check_dht)
    size_t off = 2;
    for (;;) {
        // Find the next marker; libjpeg skips stray bytes between segments.
        while (off < n && p[off] != 0xFF) off++;
        while (off + 1 < n && p[off + 1] == 0xFF) off++;
        if (off + 1 >= n)
            return mc_err(err, "%s: truncated JPEG: the file ends at byte %zu without an "
                          "end-of-image marker%s", name, n, sof ? "" : " or a frame header");
        int m = p[off + 1];
        if (m == 0xD9) break;                                        // EOI
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {    // no length field
            off += 2;
            continue;
        }

        // A segment with a length that must fit in the file.
        if (off + 4 > n)
            return mc_err(err, "%s: truncated JPEG: marker FF %02X at offset %zu is cut short",
                          name, m, off);
        size_t len = be16(p + off + 2);
        if (len < 2)
            return mc_err(err, "%s: damaged JPEG: marker FF %02X at offset %zu has length %zu",
                          name, m, off, len);
        if (off + 2 + len > n)
            return mc_err(err, "%s: truncated JPEG: marker FF %02X at offset %zu needs %zu "
                          "bytes, only %zu are left", name, m, off, len + 2, n - off);
        const uint8_t *s = p + off + 4;

        // Frame header: coding process, precision, size, components.
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            const char *kind = jpeg_sof_kind(m);
            if (kind)
                return mc_err(err, "%s: %s JPEG (marker FF %02X) is not supported; re-save it as "
                              "a baseline or progressive JPEG", name, kind, m);
            if (len < 8)
                return mc_err(err, "%s: damaged JPEG: frame header of %zu bytes", name, len);
            if (s[0] != 8)
                return mc_err(err, "%s: %d-bit JPEG is not supported (8-bit only)", name, s[0]);
            info->h = (int)be16(s + 1), info->w = (int)be16(s + 3);
            info->channels = s[5];
            info->progressive = m == 0xC2 || m == 0xCA;
            sof = 1;
        }

        // Huffman tables: stb_image 2.27 does not check that a table has at
        // most 256 codes and would write past its arrays, so check here.
        if (m == 0xC4 && jpeg_check_dht(s, len - 2, &huff_defined)) {
            return mc_err(err, "%s: damaged JPEG: bad Huffman table segment at offset %zu",
                          name, off);
        }

        // Adobe APP14: "Adobe", version, flags0, flags1, transform.
        if (m == 0xEE && len >= 14 && memcmp(s, "Adobe", 5) == 0) {
            js->adobe = 1;
            js->adobe_transform = s[11];
        }

        // Start of scan: skip its entropy-coded data up to the next marker.
        off += 2 + len;
        if (m == 0xDA) {
            if (!sof)
                return mc_err(err, "%s: damaged JPEG: scan before any frame header", name);
            if (++scans > JPEG_MAX_SCANS)
                return mc_err(err, "%s: JPEG with more than %d scans refused (a decoding-time "
                              "attack; photographs have about 10)", name, JPEG_MAX_SCANS);
            unsigned missing = jpeg_scan_tables(s, len - 2, huff_defined);
            if (missing && !JPEG_LIBJPEG)   // libjpeg reports it itself
                return mc_err(err, "%s: damaged JPEG: scan %d uses %s Huffman table %u, which "
                              "no DHT segment before it defines", name, scans,
                              missing & 0x10 ? "AC" : "DC", missing & 15);
            off = jpeg_skip_scan(p, n, off);
            if (off >= n)
                return mc_err(err, "%s: truncated JPEG: scan %d runs to the end of the file "
                              "(%zu bytes) without an end-of-image marker", name, scans, n);
        }
    }
    if (!sof || !scans)
        return mc_err(err, "%s: damaged JPEG: end-of-image marker before any %s", name,
                      sof ? "scan" : "frame header");
    if (info->w == 0 || info->h == 0)
        return mc_err(err, "%s: JPEG with a %dx%d frame header (height given by a DNL "
                      "marker) is not supported", name, info->w, info->h);

    // Components: gray, YCbCr/RGB, or CMYK/YCCK (stb_image needs the Adobe
    // marker to read 4 components as CMYK; libjpeg assumes CMYK without it).
    int c = info->channels;
    if (c == 4 && JPEG_STB &&
        !(js->adobe && (js->adobe_transform == 0 || js->adobe_transform == 2)))
        return mc_err(err, "%s: 4-component JPEG without an Adobe CMYK/YCCK marker is not "
                      "supported by the stb_image JPEG decoder (build with JPEG=libjpeg)", name);
    if (c != 1 && c != 3 && c != 4)
        return mc_err(err, "%s: JPEG with %d components is not supported (expected 1, 3 or 4)",
                      name, c);
    info->format = DS_IMAGE_JPEG;
    info->bits = 8;
    info->palette = 0;
    snprintf(info->mode, sizeof info->mode, "%s", c == 1 ? "L" : c == 3 ? "RGB" : "CMYK");
    return 0;
}

// ---- GIF block structure ----

typedef struct GifScan {
    int fx, fy, fw, fh;      // first frame's rectangle on the logical screen
    int transparent;         // transparent index of the first frame, or -1
    int n_colors;            // entries in the frame's colour table (0: none)
    uint8_t colors[256 * 3]; // that table (local, else global)
} GifScan;

// 1 when the k-entry colour table t [k, 3] is the gray ramp: entry i is
// (i, i, i).  PIL drops such a table and opens the frame as mode "L".
static int gray_ramp(const uint8_t *t, int k, int stride) {
    for (int i = 0; i < k; i++) {
        const uint8_t *e = t + (size_t)i * stride;
        if (e[0] != i || e[1] != i || e[2] != i) return 0;
    }
    return 1;
}

// Skip a chain of data sub-blocks (length byte, data) ending with a 0.
static size_t gif_skip_blocks(const uint8_t *p, size_t n, size_t off) {
    while (off < n && p[off] != 0) off += 1 + (size_t)p[off];
    return off < n ? off + 1 : (size_t)-1;
}

static int gif_probe(const uint8_t *p, size_t n, const char *name, DsImageInfo *info,
                     GifScan *gs, McErr *err) {
    if (n < 13 || (memcmp(p, "GIF87a", 6) != 0 && memcmp(p, "GIF89a", 6) != 0))
        return mc_err(err, "%s: damaged GIF: expected a 13-byte GIF87a/GIF89a header", name);
    info->w = (int)le16(p + 6), info->h = (int)le16(p + 8);
    if (info->w == 0 || info->h == 0)
        return mc_err(err, "%s: damaged GIF: logical screen of %dx%d", name, info->w, info->h);

    // Global colour table, then blocks up to the first image.
    memset(gs, 0, sizeof *gs);
    gs->transparent = -1;
    size_t off = 13;
    int global_colors = 0, local_colors = -1;   // -1: no local table; 0: a gray ramp
    if (p[10] & 0x80) {
        int k = 2 << (p[10] & 7);
        if (off + 3 * (size_t)k > n)
            return mc_err(err, "%s: truncated GIF: global colour table cut short", name);
        memcpy(gs->colors, p + off, 3 * (size_t)k);
        gs->n_colors = k;
        global_colors = !gray_ramp(p + off, k, 3);
        off += 3 * (size_t)k;
    }
    for (;;) {
        if (off >= n)
            return mc_err(err, "%s: truncated GIF: the file ends at byte %zu before the first "
                          "image", name, n);
        if (p[off] == 0x3B)
            return mc_err(err, "%s: damaged GIF: trailer before any image", name);
        if (p[off] == 0x21) {                     // extension
            if (off + 2 >= n) return mc_err(err, "%s: truncated GIF: extension cut short", name);
            if (p[off + 1] == 0xF9 && off + 7 < n && p[off + 2] == 4)
                gs->transparent = (p[off + 3] & 1) ? p[off + 6] : -1;
            off = gif_skip_blocks(p, n, off + 2);
            if (off == (size_t)-1)
                return mc_err(err, "%s: truncated GIF: extension block cut short", name);
            continue;
        }
        if (p[off] != 0x2C)
            return mc_err(err, "%s: damaged GIF: unexpected block type 0x%02X at offset %zu",
                          name, p[off], off);
        break;
    }

    // Image descriptor, local colour table, LZW data.
    if (off + 10 > n) return mc_err(err, "%s: truncated GIF: image descriptor cut short", name);
    gs->fx = (int)le16(p + off + 1), gs->fy = (int)le16(p + off + 3);
    gs->fw = (int)le16(p + off + 5), gs->fh = (int)le16(p + off + 7);
    int flags = p[off + 9];
    off += 10;
    if (flags & 0x80) {
        int k = 2 << (flags & 7);
        if (off + 3 * (size_t)k > n)
            return mc_err(err, "%s: truncated GIF: local colour table cut short", name);
        memcpy(gs->colors, p + off, 3 * (size_t)k);
        gs->n_colors = k;
        local_colors = !gray_ramp(p + off, k, 3);
        off += 3 * (size_t)k;
    }
    if (off >= n || gif_skip_blocks(p, n, off + 1) == (size_t)-1)
        return mc_err(err, "%s: truncated GIF: image data of the first frame cut short", name);
    if (gs->fx + gs->fw > info->w || gs->fy + gs->fh > info->h)
        return mc_err(err, "%s: GIF whose first frame (%dx%d at %d,%d) exceeds the %dx%d "
                      "screen is not supported", name, gs->fw, gs->fh, gs->fx, gs->fy,
                      info->w, info->h);
    info->format = DS_IMAGE_GIF;
    info->channels = 1, info->bits = 8, info->palette = 1, info->progressive = 0;

    // PIL's mode: "P" when the frame's table (local, else global) is a real
    // palette; "L" when it is the gray ramp or there is none.
    int colored = local_colors >= 0 ? local_colors : global_colors;
    snprintf(info->mode, sizeof info->mode, "%s", colored ? "P" : "L");
    return 0;
}

// ---- BMP header ----

typedef struct BmpScan {
    size_t data_off;         // offset of the pixel rows
    int top_down;            // 1: rows stored top row first
    int rgba_byte[4];        // mode RGBA: byte of R, G, B, A in a 32-bit pixel
} BmpScan;

// 32-bit bit-field layouts (R, G, B, A masks) that PIL opens as "RGBA";
// all-zero masks it reads as B, G, R, A bytes.
static const uint32_t bmp_alpha_layouts[4][4] = {
    {0xFF0000u, 0xFF00u, 0xFFu, 0xFF000000u},
    {0xFFu, 0xFF00u, 0xFF0000u, 0xFF000000u},
    {0xFF000000u, 0xFF0000u, 0xFF00u, 0xFFu},
    {0, 0, 0, 0},
};

// PIL's mode for a BMP whose header is valid: "P", or "L" / "1" for a gray
// ramp / black-and-white palette; "RGBA" for alpha bit fields; else "RGB".
static const char *bmp_mode(const uint8_t *p, size_t n, uint32_t dib, int bpp, int comp,
                            BmpScan *bs) {
    size_t after = 14 + (size_t)dib;   // palette (or BITMAPINFOHEADER masks)
    if (bpp <= 8) {
        // Palette entries: biClrUsed, or 2^bpp; 3 bytes each in OS/2 files.
        int stride = dib == 12 ? 3 : 4;
        int64_t colors = dib >= 40 ? (int64_t)le32(p + 46) : 0;
        if (colors == 0) colors = (int64_t)1 << bpp;
        if (colors > 256 || after + (size_t)colors * stride > n) return "P";
        if (colors == 2) {
            const uint8_t *e0 = p + after, *e1 = e0 + stride;
            int bw = e0[0] == 0 && e0[1] == 0 && e0[2] == 0 &&
                     e1[0] == 255 && e1[1] == 255 && e1[2] == 255;
            return bw ? "1" : "P";
        }
        return gray_ramp(p + after, (int)colors, stride) ? "L" : "P";
    }
    if (bpp == 32 && comp == 3 && dib >= 56) {
        // Masks in a V4/V5 header: R, G, B, A at 54, 58, 62, 66.
        uint32_t m[4];
        for (int k = 0; k < 4; k++) m[k] = le32(p + 54 + 4 * k);
        for (int l = 0; l < 4; l++) {
            if (memcmp(m, bmp_alpha_layouts[l], sizeof m) != 0) continue;
            const uint32_t *lay = bmp_alpha_layouts[l == 3 ? 0 : l];
            for (int k = 0; k < 4; k++)
                bs->rgba_byte[k] = lay[k] == 0xFFu ? 0 : lay[k] == 0xFF00u ? 1
                                 : lay[k] == 0xFF0000u ? 2 : 3;
            return "RGBA";
        }
    }
    return "RGB";
}

static int bmp_probe(const uint8_t *p, size_t n, const char *name, DsImageInfo *info,
                     BmpScan *bs, McErr *err) {
    if (n < 26) return mc_err(err, "%s: truncated BMP: %zu bytes, the header needs 26", name, n);
    uint32_t data_off = le32(p + 10), dib = le32(p + 14);
    int64_t w, h;
    int bpp, comp = 0;
    if (dib == 12) {                                  // OS/2 BITMAPCOREHEADER
        w = le16(p + 18), h = le16(p + 20), bpp = (int)le16(p + 24);
    } else if (dib >= 40 && dib <= 124 && n >= 34) {  // BITMAPINFOHEADER and later
        w = (int32_t)le32(p + 18), h = (int32_t)le32(p + 22);
        bpp = (int)le16(p + 28), comp = (int)le32(p + 30);
    } else {
        return mc_err(err, "%s: damaged or unsupported BMP: DIB header size %u", name, dib);
    }
    memset(bs, 0, sizeof *bs);
    bs->top_down = h < 0;
    if (h < 0) h = -h;                                // top-down rows
    if ((size_t)14 + dib > n)
        return mc_err(err, "%s: truncated BMP: the %u-byte DIB header is cut short at %zu "
                      "bytes", name, dib, n);
    if (w <= 0 || h <= 0 || w > INT32_MAX || h > INT32_MAX)
        return mc_err(err, "%s: damaged BMP: header gives a %lldx%lld image", name,
                      (long long)w, (long long)h);
    if (comp == 1 || comp == 2)
        return mc_err(err, "%s: run-length-encoded BMP is not supported", name);
    if (comp != 0 && comp != 3)
        return mc_err(err, "%s: BMP with compression %d is not supported", name, comp);
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        return mc_err(err, "%s: damaged BMP: %d bits per pixel", name, bpp);

    // The pixel rows (each padded to 4 bytes) must fit in the file.
    double need = (double)data_off + (double)((w * bpp + 31) / 32 * 4) * (double)h;
    if (need > (double)n)
        return mc_err(err, "%s: truncated BMP: pixel data needs %.0f bytes, the file has %zu",
                      name, need, n);
    info->format = DS_IMAGE_BMP;
    info->w = (int)w, info->h = (int)h;
    info->channels = bpp == 32 ? 4 : bpp <= 8 ? 1 : 3;
    info->bits = 8, info->palette = bpp <= 8, info->progressive = 0;
    bs->data_off = data_off;
    snprintf(info->mode, sizeof info->mode, "%s", bmp_mode(p, n, dib, bpp, comp, bs));
    return 0;
}

// ---- probe: format, structure, limits ----

typedef struct Scan {
    PngScan png;
    JpegScan jpeg;
    GifScan gif;
    BmpScan bmp;
} Scan;

static int probe(const uint8_t *p, size_t n, const char *name, const DsImageLimits *lim,
                 DsImageInfo *info, Scan *sc, McErr *err) {
    memset(info, 0, sizeof *info);
    if (n == 0)
        return mc_err(err, "%s: empty file (0 bytes), expected a JPEG, PNG, GIF or BMP image",
                      name);
    if ((int64_t)n > lim->max_file_bytes || n > INT_MAX)
        return mc_err(err, "%s: file is %zu bytes, above the %lld-byte limit "
                      "(DsImageLimits.max_file_bytes)", name, n, (long long)lim->max_file_bytes);

    // Structure of the recognised format.
    int rc;
    switch (ds_image_sniff(p, n)) {
    case DS_IMAGE_JPEG: rc = jpeg_probe(p, n, name, info, &sc->jpeg, err); break;
    case DS_IMAGE_PNG:  rc = png_probe(p, n, name, info, &sc->png, err); break;
    case DS_IMAGE_GIF:  rc = gif_probe(p, n, name, info, &sc->gif, err); break;
    case DS_IMAGE_BMP:  rc = bmp_probe(p, n, name, info, &sc->bmp, err); break;
    default:            return err_not_image(err, name, p, n);
    }
    if (rc) return rc;

    // Size limits, before anything is allocated.
    double px = (double)info->w * (double)info->h;
    int max_side = lim->max_side < DS_IMAGE_HARD_MAX_SIDE ? lim->max_side : DS_IMAGE_HARD_MAX_SIDE;
    char a[32], b[32];
    if (px > (double)lim->max_pixels)
        return mc_err(err, "%s: image is %dx%d = %s, above the %s limit "
                      "(DsImageLimits.max_pixels)", name, info->w, info->h,
                      pixels_str(px, a, sizeof a),
                      pixels_str((double)lim->max_pixels, b, sizeof b));
    if (info->w > max_side || info->h > max_side)
        return mc_err(err, "%s: image is %dx%d, a side above the %d-pixel limit "
                      "(DsImageLimits.max_side)", name, info->w, info->h, max_side);
    return 0;
}

int ds_image_probe(const void *data, size_t n, const char *name, const DsImageLimits *lim,
                   DsImageInfo *info, McErr *err) {
    DsImageLimits def;
    Scan *sc = malloc(sizeof *sc);
    if (!sc) return mc_err(err, "%s: out of memory", name);
    if (!lim) ds_image_limits_default(&def), lim = &def;
    int rc = probe(data, n, name, lim, info, sc, err);
    free(sc);
    return rc;
}

// ---- modes and their conversion to RGB ----

int ds_mode_channels(DsMode mode) {
    static const int channels[] = {1, 1, 2, 3, 3, 4, 4, 1};
    return channels[mode];
}

const char *ds_mode_name(DsMode mode) {
    static const char *const names[] = {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I"};
    return names[mode];
}

// The DsMode of a PIL mode name set by the probes.
static DsMode mode_from_name(const char *name) {
    for (int m = DS_MODE_1; m <= DS_MODE_I; m++)
        if (strcmp(name, ds_mode_name((DsMode)m)) == 0) return (DsMode)m;
    return DS_MODE_RGB;
}

void ds_mode_to_rgb(uint8_t *rgb, const void *src, DsMode mode, size_t n) {
    const uint8_t *s = src;
    const int32_t *si = src;
    int C = ds_mode_channels(mode);
    for (size_t i = 0; i < n; i++, rgb += 3) {
        const uint8_t *px = s + i * C;
        switch (mode) {
        case DS_MODE_1: case DS_MODE_L: case DS_MODE_LA:
            // Gray replicated; alpha dropped.
            rgb[0] = rgb[1] = rgb[2] = px[0];
            break;
        case DS_MODE_I:
            // Clipped to 0..255.
            rgb[0] = rgb[1] = rgb[2] = (uint8_t)(si[i] < 0 ? 0 : si[i] > 255 ? 255 : si[i]);
            break;
        case DS_MODE_CMYK:
            // nk = 255 - K; R = nk - round(C * nk / 255) with PIL's MULDIV255
            // rounding (t = C nk + 128, (t + t / 256) / 256), never below 0.
            for (int k = 0; k < 3; k++) {
                int nk = 255 - px[3];
                int t = px[k] * nk + 128;
                int v = nk - (((t >> 8) + t) >> 8);
                rgb[k] = (uint8_t)(v < 0 ? 0 : v);
            }
            break;
        default:
            // P (already colours), RGB, RGBA (alpha dropped).
            rgb[0] = px[0], rgb[1] = px[1], rgb[2] = px[2];
            break;
        }
    }
}

void ds_pixels_to_rgb(uint8_t *rgb, const DsPixels *px) {
    const void *src = px->mode == DS_MODE_I ? (const void *)px->pix_i : (const void *)px->pix;
    ds_mode_to_rgb(rgb, src, px->mode, (size_t)px->w * (size_t)px->h);
}

void ds_pixels_free(DsPixels *px) {
    if (!px) return;
    free(px->pix);     // stb_image allocates with malloc too (STBI_MALLOC)
    free(px->pix_i);
    px->pix = NULL, px->pix_i = NULL;
    px->w = px->h = 0;
}

// ---- decoding ----

// 16-bit grayscale PNG: PIL's mode "I", the values 0..65535 as int32.
static int32_t *decode_png_gray16(const uint8_t *p, int len, int *w, int *h, const char **why) {
    int c;
    uint16_t *g = stbi_load_16_from_memory(p, len, w, h, &c, 1);
    if (!g) return NULL;
    size_t np = (size_t)*w * (size_t)*h;
    int32_t *v = malloc(np * sizeof(int32_t));
    if (v) {
        for (size_t i = 0; i < np; i++) v[i] = g[i];
    } else {
        *why = "out of memory";
    }
    stbi_image_free(g);
    return v;
}

// GIF first frame: stb_image leaves transparent pixels (alpha 0) black and
// paints pixels outside the frame with the background colour; PIL gives
// both the colour of the transparent index (index 0 when there is none
// outside the frame), since it fills its canvas with that index.
static uint8_t *decode_gif(const uint8_t *p, int len, const GifScan *gs, int *w, int *h,
                           const char **why) {
    int c;
    uint8_t *rgba = stbi_load_from_memory(p, len, w, h, &c, 4);
    if (!rgba) return NULL;
    uint8_t *rgb = malloc((size_t)*w * (size_t)*h * 3);
    if (!rgb) {
        stbi_image_free(rgba);
        *why = "out of memory";
        return NULL;
    }

    // The colour PIL shows for an index: the table entry, or gray i.
    uint8_t fill_trans[3], fill_out[3];
    int t = gs->transparent, o = t >= 0 ? t : 0;
    for (int k = 0; k < 3; k++) {
        fill_trans[k] = t >= 0 && t < gs->n_colors ? gs->colors[3 * t + k] : (uint8_t)(t & 255);
        fill_out[k] = o < gs->n_colors ? gs->colors[3 * o + k] : (uint8_t)o;
    }
    for (int y = 0; y < *h; y++) {
        for (int x = 0; x < *w; x++) {
            const uint8_t *s = rgba + 4 * ((size_t)y * *w + x);
            uint8_t *d = rgb + 3 * ((size_t)y * *w + x);
            int inside = x >= gs->fx && x < gs->fx + gs->fw && y >= gs->fy && y < gs->fy + gs->fh;
            const uint8_t *src = !inside ? fill_out : s[3] == 0 ? fill_trans : s;
            d[0] = src[0], d[1] = src[1], d[2] = src[2];
        }
    }
    stbi_image_free(rgba);
    return rgb;
}

// 32-bit BMP with alpha bit fields (mode RGBA), read here: stb_image turns
// an alpha channel that is 0 everywhere into 255, PIL keeps it.  The probe
// checked that the rows fit in the file.
static uint8_t *decode_bmp_rgba(const uint8_t *p, const BmpScan *bs, int w, int h) {
    uint8_t *rgba = malloc((size_t)w * (size_t)h * 4);
    if (!rgba) return NULL;
    for (int y = 0; y < h; y++) {
        // Rows are stored bottom-up unless the height was negative.
        const uint8_t *s = p + bs->data_off + (size_t)(bs->top_down ? y : h - 1 - y) * w * 4;
        uint8_t *d = rgba + (size_t)y * w * 4;
        for (int x = 0; x < w; x++, s += 4, d += 4)
            for (int k = 0; k < 4; k++) d[k] = s[bs->rgba_byte[k]];
    }
    return rgba;
}

// Keep the first of three interleaved channels, in place: [n, 3] -> [n, 1]
// (gray modes whose decoder gives colours).
static void keep_first_channel(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i++) px[i] = px[3 * i];
}

#ifdef MCLIP_LIBJPEG
// libjpeg reports errors through error_exit, which must not return: jump
// back to the decoder with the message.  Warnings (corrupt-data notes that
// libjpeg recovers from) are ignored, as PIL ignores them.
typedef struct JpegErr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *msg;               // [JMSG_LENGTH_MAX] the caller's message buffer
} JpegErr;

static void jpeg_on_error(j_common_ptr cinfo) {
    JpegErr *e = (JpegErr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo) { (void)cinfo; }

// Decode as PIL's JpegDecode sets libjpeg up: default (islow) IDCT, fancy
// upsampling, output RGB, gray or CMYK by component count, into [H, W, C]
// (*C = 1, 3 or 4).  CMYK samples are inverted, as PIL's "CMYK;I" raw mode
// stores them.  On failure returns NULL with the reason in msg
// [JMSG_LENGTH_MAX <= DECODE_WHY_LEN].
static uint8_t *decode_libjpeg(const uint8_t *p, size_t n, int *w, int *h, int *C, char *msg) {
    struct jpeg_decompress_struct cinfo;
    JpegErr jerr;
    uint8_t *volatile pix = NULL;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_on_error;
    jerr.pub.output_message = jpeg_on_message;
    jerr.msg = msg;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        return NULL;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, p, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    int nc = cinfo.num_components;
    cinfo.out_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_start_decompress(&cinfo);

    // Scanlines straight into the image.
    int W = (int)cinfo.output_width, H = (int)cinfo.output_height, K = cinfo.output_components;
    size_t row_len = (size_t)W * K;
    pix = malloc(row_len * H);
    if (!pix) {
        jpeg_destroy_decompress(&cinfo);
        snprintf(msg, JMSG_LENGTH_MAX, "out of memory");
        return NULL;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW r = pix + (size_t)cinfo.output_scanline * row_len;
        jpeg_read_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);

    // CMYK: PIL's values are the stored ones inverted.
    if (K == 4)
        for (size_t i = 0; i < row_len * H; i++) pix[i] = (uint8_t)(255 - pix[i]);
    *w = W, *h = H, *C = K;
    return pix;
}
#endif

// The pixels of a probed file in its PIL mode (see DsPixels): sets px's
// pix or pix_i, w, h, mode and channels, and returns 0; or -1 with the
// decoder's reason in why [DECODE_WHY_LEN].
static int decode_native(const uint8_t *p, size_t n, const DsImageInfo *info, const Scan *sc,
                         DsPixels *px, char *why) {
    const char *reason = NULL;
    DsMode mode = mode_from_name(info->mode);
    int w = 0, h = 0, c;
    uint8_t *pix = NULL;
    int32_t *pix_i = NULL;
    ds_stbi_clear_failure();
    switch (info->format) {
    case DS_IMAGE_JPEG: {
#ifdef MCLIP_LIBJPEG
        pix = decode_libjpeg(p, n, &w, &h, &c, why);
        if (!pix) return -1;
        mode = c == 1 ? DS_MODE_L : c == 3 ? DS_MODE_RGB : DS_MODE_CMYK;
#elif JPEG_STB
        // stb_image gives CMYK JPEGs only as RGB (see image.h).
        if (mode == DS_MODE_CMYK) mode = DS_MODE_RGB;
        pix = stbi_load_from_memory(p, (int)n, &w, &h, &c, ds_mode_channels(mode));
#else
        // jpeg.c, held to the probed frame size (already within the limits).
        int side = info->w > info->h ? info->w : info->h;
        if (ds_jpeg_decode(p, n, (int64_t)info->w * info->h, side, &pix, &w, &h, &c, why,
                           DECODE_WHY_LEN))
            return -1;
        mode = c == 1 ? DS_MODE_L : c == 3 ? DS_MODE_RGB : DS_MODE_CMYK;
#endif
        break;
    }
    case DS_IMAGE_PNG:
        // stb_image scales 1..4-bit gray to 0..255 and keeps the high byte
        // of 16-bit samples, as PIL's raw modes do; "I" is read whole.
        if (mode == DS_MODE_I)
            pix_i = decode_png_gray16(p, (int)n, &w, &h, &reason);
        else
            pix = stbi_load_from_memory(p, (int)n, &w, &h, &c, ds_mode_channels(mode));
        break;
    case DS_IMAGE_GIF:
        pix = decode_gif(p, (int)n, &sc->gif, &w, &h, &reason);
        if (pix && mode == DS_MODE_L) keep_first_channel(pix, (size_t)w * h);
        break;
    default:
        // BMP: palette colours (gray ramps give gray), RGB, or RGBA read here.
        if (mode == DS_MODE_RGBA) {
            w = info->w, h = info->h;
            pix = decode_bmp_rgba(p, &sc->bmp, w, h);
            if (!pix) reason = "out of memory";
        } else {
            pix = stbi_load_from_memory(p, (int)n, &w, &h, &c, 3);
            if (pix && (mode == DS_MODE_L || mode == DS_MODE_1))
                keep_first_channel(pix, (size_t)w * h);
        }
        break;
    }
    if (!pix && !pix_i) {
        if (!reason) reason = stbi_failure_reason();
        snprintf(why, DECODE_WHY_LEN, "%s", reason ? reason : "corrupt data");
        return -1;
    }
    px->w = w, px->h = h, px->mode = mode, px->channels = ds_mode_channels(mode);
    px->pix = pix, px->pix_i = pix_i;
    return 0;
}

int ds_pixels_decode(const void *data, size_t n, const char *name, const DsImageLimits *lim,
                     DsPixels *out, McErr *err) {
    DsImageLimits def;
    if (!lim) ds_image_limits_default(&def), lim = &def;
    memset(out, 0, sizeof *out);
    Scan *sc = malloc(sizeof *sc);
    if (!sc) return mc_err(err, "%s: out of memory", name);
    DsImageInfo info;
    if (probe(data, n, name, lim, &info, sc, err)) {
        free(sc);
        return -1;
    }

    // PNG: pad a short palette, add a missing IEND (see png_patch).
    const uint8_t *p = data;
    uint8_t *patched = NULL;
    size_t np = n;
    if (info.format == DS_IMAGE_PNG) {
        if (png_patch(p, n, &info, &sc->png, &patched, &np)) {
            free(sc);
            return mc_err(err, "%s: out of memory preparing a %zu-byte PNG", name, n);
        }
        if (patched) p = patched;
    }

    // Decode in PIL's mode.
    DsPixels px;
    memset(&px, 0, sizeof px);
    char why[DECODE_WHY_LEN];
    int rc = decode_native(p, np, &info, sc, &px, why);
    free(patched);
    free(sc);
    if (rc) {
        return mc_err(err, "%s: cannot decode this %dx%d %s (decoder says: %s)", name, info.w,
                      info.h, ds_image_format_name(info.format), why);
    }
    if (px.w != info.w || px.h != info.h) {
        int w = px.w, h = px.h;
        ds_pixels_free(&px);
        return mc_err(err, "%s: decoded %s is %dx%d but its header says %dx%d", name,
                      ds_image_format_name(info.format), w, h, info.w, info.h);
    }
    px.info = info;
    *out = px;
    return 0;
}

int ds_image_decode(const void *data, size_t n, const char *name, const DsImageLimits *lim,
                    DsImage *out, McErr *err) {
    memset(out, 0, sizeof *out);
    DsPixels px;
    if (ds_pixels_decode(data, n, name, lim, &px, err)) return -1;

    // convert("RGB"): nothing to do for RGB, else a converted copy.
    uint8_t *rgb = px.pix;
    if (px.mode != DS_MODE_RGB) {
        rgb = malloc((size_t)px.w * (size_t)px.h * 3);
        if (!rgb) {
            ds_pixels_free(&px);
            return mc_err(err, "%s: out of memory converting a %dx%d image to RGB", name,
                          px.w, px.h);
        }
        ds_pixels_to_rgb(rgb, &px);
        ds_pixels_free(&px);
    }
    out->w = px.info.w, out->h = px.info.h, out->rgb = rgb, out->info = px.info;
    return 0;
}

// ---- files ----

// Read a whole regular file of at most max_bytes into a malloc'd buffer.
static int read_file(const char *path, int64_t max_bytes, uint8_t **buf, size_t *n, McErr *err) {
    *buf = NULL, *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mc_err(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mc_err(err, "%s: not a regular file, expected an image file", path);
    }
    if ((int64_t)st.st_size > max_bytes || (uint64_t)st.st_size > INT_MAX) {
        fclose(f);
        return mc_err(err, "%s: file is %lld bytes, above the %lld-byte limit "
                      "(DsImageLimits.max_file_bytes)", path, (long long)st.st_size,
                      (long long)max_bytes);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) {
        fclose(f);
        return mc_err(err, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = size ? fread(b, 1, size, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (bad || got != size) {
        free(b);
        return mc_err(err, "%s: read error after %zu of %zu bytes", path, got, size);
    }
    *buf = b, *n = size;
    return 0;
}

int ds_image_load(const char *path, const DsImageLimits *lim, DsImage *out, McErr *err) {
    DsImageLimits def;
    if (!lim) ds_image_limits_default(&def), lim = &def;
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t n;
    if (read_file(path, lim->max_file_bytes, &buf, &n, err)) return -1;
    int rc = ds_image_decode(buf, n, path, lim, out, err);
    free(buf);
    return rc;
}

int ds_pixels_load(const char *path, const DsImageLimits *lim, DsPixels *out, McErr *err) {
    DsImageLimits def;
    if (!lim) ds_image_limits_default(&def), lim = &def;
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t n;
    if (read_file(path, lim->max_file_bytes, &buf, &n, err)) return -1;
    int rc = ds_pixels_decode(buf, n, path, lim, out, err);
    free(buf);
    return rc;
}

void ds_image_free(DsImage *im) {
    if (!im) return;
    free(im->rgb);   // stb_image allocates with malloc too (STBI_MALLOC)
    im->rgb = NULL;
    im->w = im->h = 0;
}
