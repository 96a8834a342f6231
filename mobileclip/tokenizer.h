// tokenizer.h - open_clip's SimpleTokenizer (CLIP byte-level BPE) as used by
// every MobileCLIP2 model: get_tokenizer('MobileCLIP2-*'), context 77,
// clean='lower'.
//
// Reference: open_clip 4.2.0.dev0 src/open_clip/tokenizer.py with ftfy 6.3.1
// (../shared/arch-spec.md section 8).  Text is cleaned by textfix.h
// (ftfy.fix_text, html.unescape twice, whitespace collapse, str.lower), split
// like the reference's `regex` pattern (literal <start_of_text> and
// <end_of_text>, the contractions 's 't 're 've 'm 'll 'd, runs of letters,
// single digits, runs of other non-space characters; case-insensitive),
// and each piece is byte-level BPE encoded with the 48,894 merges of
// bpe_simple_vocab_16e6.txt.gz.  Known limits: see mobileclip/TOKENIZER.md
// (text must be UTF-8; ill-formed bytes become U+FFFD).
//
// Usage:
//     McErr err;
//     char path[1024];
//     if (tok_find_vocab(path, sizeof path, &err) < 0) { puts(err.msg); ... }
//     Tokenizer *tok = tok_load(path, &err);
//     int32_t ids[TOK_CONTEXT];
//     int n = tok_encode(tok, "a photo of a cat.", ids);   // n = 8, ids[0] = TOK_SOT
//     char *text = tok_decode(tok, ids + 1, n - 2);         // "a photo of a cat . "
//     free(text);
//     tok_free(tok);
//
// A Tokenizer keeps a cache of per-word BPE results and scratch buffers, so
// one instance must not be used by two threads at once.
#ifndef MCLIP_TOKENIZER_H
#define MCLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/tensor.h"

#define TOK_CONTEXT 77        // context length of every MobileCLIP2 text tower
#define TOK_VOCAB   49408     // 256 bytes + 256 bytes</w> + 48,894 merges + 2 specials
#define TOK_NMERGES 48894
#define TOK_SOT     49406     // <start_of_text>
#define TOK_EOT     49407     // <end_of_text>
#define TOK_BPE_FILE "bpe_simple_vocab_16e6.txt.gz"

typedef struct Tokenizer Tokenizer;

// Where the vocabulary is, in this order: $MCLIP_BPE,
// ./weights/bpe_simple_vocab_16e6.txt.gz, ../shared/clip/bpe_simple_vocab_16e6.txt.gz.
// Writes the first existing path to buf and returns 0; otherwise -1 with a
// message naming every path tried and weights/download.sh.
int tok_find_vocab(char *buf, size_t len, McErr *err);

// Load the gzipped (or plain) BPE vocabulary.  NULL and err filled on a
// missing, short or malformed file.
Tokenizer *tok_load(const char *path, McErr *err);
void tok_free(Tokenizer *tok);

// Tokenize UTF-8 text like open_clip's tokenizer(text)[0]: ids = SOT, BPE
// ids, EOT, then 0 padding to TOK_CONTEXT; when longer, the first 77 are
// kept and the last becomes EOT.  Returns the untruncated length (BPE ids
// + 2), so a return value > TOK_CONTEXT means the text was cut.
int tok_encode(Tokenizer *tok, const char *text, int32_t ids[TOK_CONTEXT]);

// BPE ids of the cleaned text without SOT, EOT or padding (open_clip's
// SimpleTokenizer.encode), as used to splice class names into prompts.
// Writes at most max ids (ids may be NULL when max is 0); returns the total
// count.
int tok_encode_raw(Tokenizer *tok, const char *text, int32_t *ids, int max);

// Same for a text of len bytes that need not be NUL-terminated.
int tok_encode_raw_n(Tokenizer *tok, const char *text, size_t len, int32_t *ids, int max);

// open_clip's SimpleTokenizer.decode: the byte strings of the ids joined,
// decoded as UTF-8 with U+FFFD for ill-formed bytes, every "</w>" replaced
// by a space.  Ids outside [0, TOK_VOCAB) are an error: NULL.  Returns a
// malloc'd NUL-terminated string; *out_len (may be NULL) gets its length.
char *tok_decode(const Tokenizer *tok, const int32_t *ids, int n, size_t *out_len);

// The vocabulary entry of id as the reference's encoder key (UTF-8 of the
// byte-symbol characters, e.g. "cat</w>"), or NULL for a bad id.
const char *tok_token_str(const Tokenizer *tok, int32_t id);

#endif
