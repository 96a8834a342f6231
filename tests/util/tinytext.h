// tinytext.h - a tiny random open_clip text checkpoint for the test programs.
//
// tiny_text_write() writes a safetensors file with the keys of open_clip's
// text tower (text.token_embedding.weight [V, W], text.positional_embedding
// [T, W], L resblocks of width W with 4W MLPs, text.ln_final, and
// text.text_projection [W, E]), logit_scale = log(100), and metadata
// text_heads "2" and text_causal.  Values are test_fill_normal draws in key
// order (LayerNorm gammas around 1, so that every block matters; matrices
// with std 1/sqrt(fan_in), the rest 0.1, embeddings 0.5 and 0.3, the
// projection 0.25): the file depends on the test_seed() before the call.
#ifndef MCLIP_TEST_TINYTEXT_H
#define MCLIP_TEST_TINYTEXT_H

typedef struct {
    int vocab, context, width, layers, embed;   // V, T, W, L, E
} TinyTextDims;

// extra: TINY_VISUAL adds an S0-like image stem key, TINY_BOGUS an
// unexpected text key, TINY_NO_LNF_BIAS drops text.ln_final.bias.
enum { TINY_VISUAL = 1, TINY_BOGUS = 2, TINY_NO_LNF_BIAS = 4 };

// Aborts when the file cannot be written.
void tiny_text_write(const char *path, TinyTextDims d, int causal, int extra);

#endif
