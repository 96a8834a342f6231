// textfix.h - the text cleaning that open_clip's SimpleTokenizer applies
// before byte-level BPE (clean='lower'), on arrays of Unicode code points.
//
//   text -> ftfy.fix_text -> html.unescape twice -> strip -> collapse
//   whitespace (str.split) -> str.lower()
//
// Reference: open_clip 4.2.0.dev0 src/open_clip/tokenizer.py (basic_clean,
// whitespace_clean, _clean_lower) with ftfy 6.3.1 and Python 3.11's html
// and str; see mobileclip/TOKENIZER.md for which ftfy repairs are
// reproduced.  The character data comes from unicode_tables.c.
//
// Usage:
//     CpBuf text = {0}, clean = {0};
//     tf_utf8_decode((const uint8_t *)s, strlen(s), &text);
//     tf_clean(text.v, text.n, &clean);       // clean.v[0..clean.n)
//     cp_free(&text); cp_free(&clean);
//
// Every function that writes a CpBuf clears it first unless it says it
// appends.  Input and output must not alias.  Nothing here keeps state, so
// the functions are safe to call from several threads.
#ifndef MCLIP_TEXTFIX_H
#define MCLIP_TEXTFIX_H

#include <stddef.h>
#include <stdint.h>

// Growable arrays of code points and of bytes (v may be NULL when cap = 0).
typedef struct { uint32_t *v; size_t n, cap; } CpBuf;
typedef struct { uint8_t *v; size_t n, cap; } ByteBuf;

void cp_push(CpBuf *b, uint32_t c);
void cp_append(CpBuf *b, const uint32_t *src, size_t n);
void cp_free(CpBuf *b);
void bb_push(ByteBuf *b, uint8_t c);
void bb_free(ByteBuf *b);

// UTF-8 -> code points, appended to out.  Ill-formed input is replaced by
// U+FFFD per maximal subpart (Python's errors="replace"); returns the
// number of replacements made.
size_t tf_utf8_decode(const uint8_t *s, size_t n, CpBuf *out);
// Code points -> UTF-8, appended to out.  Surrogates and values above
// U+10FFFF (never produced here) are written as U+FFFD.
void tf_utf8_encode(const uint32_t *s, size_t n, ByteBuf *out);

// ---- character classes (unicode_tables.c) ----

// open_clip's pre-split classes as the `regex` module with IGNORECASE sees
// them: [\p{L}], [\p{N}], [^\s\p{L}\p{N}], or none (whitespace, U+0345).
enum { UC_SPLIT_NONE = 0, UC_SPLIT_LETTER = 1, UC_SPLIT_NUMBER = 2, UC_SPLIT_OTHER = 3 };
int uc_split_class(uint32_t cp);
// IGNORECASE equality with a lowercase ASCII letter x.
int uc_matches_ascii_nocase(uint32_t cp, char x);
int uc_is_space(uint32_t cp);            // Python str.isspace()
// Python str.lower() of one code point without context (a capital sigma
// gives small sigma); writes 1..3 code points to out, returns the count.
int uc_lower(uint32_t cp, uint32_t out[3]);

// ---- the cleaning steps ----

// Python html.unescape (3.11): named references from html.entities.html5
// (with and without ';' as Python accepts them, longest prefix for the
// legacy ones), &#NNN; and &#xHH; with the HTML5 replacements for invalid
// numbers.
void tf_html_unescape(const uint32_t *s, size_t n, CpBuf *out);
// Python " ".join(s.split()): whitespace runs to one space, ends stripped.
void tf_whitespace_clean(const uint32_t *s, size_t n, CpBuf *out);
// Python str.lower(), including multi-code-point results (U+0130) and the
// final-sigma rule for U+03A3.
void tf_lower(const uint32_t *s, size_t n, CpBuf *out);
// Unicode NFC (canonical decomposition, ordering, composition), as
// unicodedata.normalize('NFC') of the reference Python.
void tf_nfc(const uint32_t *s, size_t n, CpBuf *out);
// ftfy.fix_text with default settings, as far as reproduced (TOKENIZER.md).
// Returns 1 when the text changed.
int tf_ftfy(const uint32_t *s, size_t n, CpBuf *out);
// ftfy.badness.is_bad: does the text look like mojibake?
int tf_ftfy_is_bad(const uint32_t *s, size_t n);
// ftfy.fix_encoding: undo mojibake (single-byte decodings of UTF-8).
void tf_ftfy_fix_encoding(const uint32_t *s, size_t n, CpBuf *out);

// The whole open_clip 'lower' cleaning: ftfy, html.unescape twice, strip and
// collapse whitespace, lowercase.  *ftfy_changed (may be NULL) reports
// whether the ftfy step changed the text.
void tf_clean(const uint32_t *s, size_t n, CpBuf *out, int *ftfy_changed);

#endif
