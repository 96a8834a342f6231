// fuzz_tokenizer.c - libFuzzer harness for the CLIP tokenizer
// (mobileclip/tokenizer.h, with the ftfy-style cleaning of textfix.h):
// arbitrary bytes as text, including invalid UTF-8, NULs and huge words.
//
// The vocabulary bpe_simple_vocab_16e6.txt.gz is found as tok_find_vocab
// does ($MCLIP_BPE, ./weights/, ../shared/clip/); without it the harness
// stops with a message saying where it looked (run from the project root).
//
// Checked: tok_encode_raw_n on the bytes as given (not NUL-terminated, so
// AddressSanitizer sees over-reads) gives ids in [0, TOK_VOCAB) and the
// same ids as tok_encode_raw on a NUL-terminated copy up to the first NUL;
// tok_encode gives SOT first, EOT at min(n, 77) - 1 and zero padding after;
// tok_decode of the ids succeeds and returns a NUL-terminated string of the
// length it reports.
#include "fuzz_common.h"

#include "../../mobileclip/tokenizer.h"

static Tokenizer *fuzz_tok;

static Tokenizer *fuzz_tok_get(void) {
    if (fuzz_tok) return fuzz_tok;
    McErr err;
    char path[1024];
    if (tok_find_vocab(path, sizeof path, &err) < 0) {
        fprintf(stderr, "fuzz_tokenizer: the BPE vocabulary is required: %s\n", err.msg);
        exit(2);
    }
    fuzz_tok = tok_load(path, &err);
    if (!fuzz_tok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        exit(2);
    }
    return fuzz_tok;
}

static int fuzz_tokenizer(const uint8_t *data, size_t size) {
    Tokenizer *tok = fuzz_tok_get();
    enum { MAX_IDS = 4096 };
    static int32_t raw[MAX_IDS], raw2[MAX_IDS];

    // The bytes as given.
    int n = tok_encode_raw_n(tok, (const char *)data, size, raw, MAX_IDS);
    FUZZ_REQUIRE(n >= 0, "negative count %d", n);
    int kept = n < MAX_IDS ? n : MAX_IDS;
    for (int k = 0; k < kept; k++)
        FUZZ_REQUIRE(raw[k] >= 0 && raw[k] < TOK_VOCAB, "id %d at %d", raw[k], k);

    // A NUL-terminated copy: tok_encode_raw stops at the first NUL.
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    int n2 = tok_encode_raw(tok, text, raw2, MAX_IDS);
    if (strlen(text) == size) {
        FUZZ_REQUIRE(n2 == n, "tok_encode_raw %d ids, tok_encode_raw_n %d", n2, n);
        FUZZ_REQUIRE(!memcmp(raw, raw2, (size_t)kept * sizeof *raw), "ids differ");
    }

    // Context form.
    int32_t ids[TOK_CONTEXT];
    int m = tok_encode(tok, text, ids);
    int len = m < TOK_CONTEXT ? m : TOK_CONTEXT;
    FUZZ_REQUIRE(m == n2 + 2, "tok_encode length %d, raw %d", m, n2);
    FUZZ_REQUIRE(ids[0] == TOK_SOT && ids[len - 1] == TOK_EOT, "SOT/EOT misplaced");
    for (int k = len; k < TOK_CONTEXT; k++) FUZZ_REQUIRE(ids[k] == 0, "padding");

    // Decode.
    size_t out_len = 0;
    char *dec = tok_decode(tok, raw, kept, &out_len);
    FUZZ_REQUIRE(dec != NULL && strlen(dec) <= out_len, "tok_decode failed");
    free(dec);
    free(text);
    return 0;
}

#ifndef FUZZ_NO_MAIN
// Load the vocabulary before fuzzing starts, so a missing one stops the run
// with its message instead of being recorded as a crashing input.
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_tok_get();
    return 0;
}
#endif

FUZZ_ENTRY(fuzz_tokenizer)
