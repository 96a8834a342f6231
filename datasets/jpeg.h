// jpeg.h - a JPEG decoder whose pixels are bit-exact with libjpeg-turbo's
// default decode as PIL (Pillow 9.4) sets it up, so that JPEG embeddings
// match open_clip's without linking libjpeg.
//
// Reference followed: ITU-T T.81 (the JPEG standard) for the syntax and the
// entropy coding; the documented libjpeg(-turbo) behaviour for everything
// the standard leaves open:
//   - the "islow" integer IDCT (13-bit fixed-point constants, 2 extra bits
//     between the passes, round-half-up descaling, the post-IDCT range
//     limit that wraps at 10 bits and clamps to 0..255);
//   - "fancy" chroma upsampling: triangle filters for 2:1 horizontal (h2v1),
//     2:1 vertical (h1v2) and 2:1 both ways (h2v2), with their alternating
//     rounding biases and edge replication; other integer factors replicate;
//   - YCbCr -> RGB through 16-bit fixed-point tables (rounded at ONE_HALF);
//     YCCK -> CMYK likewise; the colour space chosen from the JFIF / Adobe
//     markers and the component ids as libjpeg chooses it;
//   - damaged entropy data: a Huffman code that matches nothing decodes as
//     symbol 0; data that ends early (a marker or the end of the file) is
//     padded with zero bits, and the rest of the restart interval is left
//     at zero coefficients; restart markers resynchronise as libjpeg does.
//
// Coding processes: baseline and extended sequential Huffman (SOF0, SOF1)
// and progressive Huffman (SOF2) with spectral selection and successive
// approximation, 8-bit samples, 1, 3 or 4 components, any sampling factors
// 1..4 whose ratios to the largest are integers, restart intervals.
// Arithmetic coding, lossless, hierarchical and 12-bit JPEGs are refused, as
// are frames whose height is given by a DNL marker and scans that use a
// Huffman table never defined (libjpeg would substitute the standard tables).
//
// Output: [H, W, C] interleaved bytes, C = 1 (PIL mode "L"), 3 ("RGB") or 4
// ("CMYK" in PIL's convention: the stored values inverted, as PIL's raw mode
// "CMYK;I" reads them).
#ifndef MCLIP_DS_JPEG_H
#define MCLIP_DS_JPEG_H

#include <stddef.h>
#include <stdint.h>

// Decode the n-byte JPEG p.  Frames wider or taller than max_side, or with
// more than max_pixels pixels, are refused before any pixel memory is
// allocated.  Returns 0 with *pix (malloc'd, [H, W, C]), *w, *h, *c set, or
// -1 with the reason (what was expected, what was found) in why[why_len].
int ds_jpeg_decode(const uint8_t *p, size_t n, int64_t max_pixels, int max_side,
                   uint8_t **pix, int *w, int *h, int *c, char *why, size_t why_len);

#endif
