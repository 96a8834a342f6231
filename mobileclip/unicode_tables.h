// unicode_tables.h - layouts of the generated character tables used by the
// tokenizer's text cleaning (mobileclip/textfix.c, mobileclip/tokenizer.c).
//
// The data lives in unicode_tables.c and html_entities.c, both written by
// tests/reference/gen_unicode_tables.py from the Python that runs open_clip
// (its str methods, re, the `regex` module, unicodedata, html.entities and
// ftfy 6.3.1), so the C side agrees with that Python code point for code
// point.  Rerun the script when the reference Python changes; the header of
// each generated file records the versions it was measured from.
//
// All tables are sorted by code point (binary search); "cp" is a Unicode
// scalar value.
#ifndef MCLIP_UNICODE_TABLES_H
#define MCLIP_UNICODE_TABLES_H

#include <stdint.h>

typedef struct { uint32_t lo, hi; } UcRange;          // inclusive range
typedef struct { uint32_t cp, value; } UcPair;
typedef struct { uint32_t start; uint16_t count; uint8_t stride; int32_t delta; } UcLowerRun;
typedef struct { uint32_t cp; uint32_t to[3]; } UcLowerMulti;   // to[] 0-terminated
typedef struct { uint32_t lo, hi; uint8_t ccc; } UcCccRange;
typedef struct { uint32_t cp, first, second; } UcDecomp;        // second 0: singleton
typedef struct { uint32_t cp; uint32_t to[3]; } UcMap3;          // to[] 0-terminated

// Pre-split classes of open_clip's pattern as the `regex` module (IGNORECASE)
// evaluates them: entry = start << 2 | class; see UC_SPLIT_* in textfix.h.
extern const uint32_t uc_split_runs[];
extern const int uc_split_runs_n;
// Code points that IGNORECASE matches to a lowercase ASCII letter other than
// the letter itself ({cp, letter}), for the special tokens and contractions.
extern const UcPair uc_ascii_folds[];
extern const int uc_ascii_folds_n;

// Python whitespace (str.isspace, str.split, re \s), re \w, re \d.
extern const UcRange uc_space[], uc_re_word[], uc_re_digit[];
extern const int uc_space_n, uc_re_word_n, uc_re_digit_n;

// str.lower(): one-to-one runs and the few longer results (U+0130).
extern const UcLowerRun uc_lower_runs[];
extern const int uc_lower_runs_n;
extern const UcLowerMulti uc_lower_multi[];
extern const int uc_lower_multi_n;
// Final-sigma context of str.lower(): cased (and not case-ignorable), and
// case-ignorable.
extern const UcRange uc_cased[], uc_case_ignorable[];
extern const int uc_cased_n, uc_case_ignorable_n;

// NFC data (unicodedata): combining classes, one-level canonical
// decompositions, and the primary composites as indices into uc_decomp
// sorted by (first, second).
extern const UcCccRange uc_ccc[];
extern const int uc_ccc_n;
extern const UcDecomp uc_decomp[];
extern const int uc_decomp_n;
extern const uint16_t uc_comp_index[];
extern const int uc_comp_index_n;

// ftfy 6.3.1 data.
extern const UcMap3 ftfy_width[], ftfy_ligatures[];
extern const int ftfy_width_n, ftfy_ligatures_n;
extern const UcRange ftfy_control[];
extern const int ftfy_control_n;
#define FTFY_NCODECS 10
extern const char *const ftfy_codec_names[FTFY_NCODECS];
// Decoded code point of bytes 0x80..0xFF (index byte - 0x80), then byte 0x1A
// (index 128).  Bytes 0x00..0x7F other than 0x1A decode to themselves.
extern const uint16_t ftfy_codec_high[FTFY_NCODECS][129];
// Mojibake categories: {cp, mask} with the FTFY_CAT_* bits of textfix.c.
extern const UcPair ftfy_cats[];
extern const int ftfy_cats_n;

// HTML5 named character references (html.entities.html5), names without
// the ';' sorted by strcmp.  flags: HTML_ENT_SEMI '&name;' is an entity,
// HTML_ENT_BARE '&name' is one too, HTML_ENT_FTFY_UPPER ftfy decodes
// '&NAME;' to the upper-cased value.
typedef struct { const char *name; uint32_t v0, v1; uint8_t flags; } HtmlEntity;
typedef struct { uint16_t index; uint32_t to[3]; } HtmlEntityUpper;
#define HTML_ENT_SEMI 1
#define HTML_ENT_BARE 2
#define HTML_ENT_FTFY_UPPER 4
extern const HtmlEntity html_entities[];
extern const int html_entities_n;
extern const HtmlEntityUpper html_entity_upper[];
extern const int html_entity_upper_n;

#endif
