// cli_tokenize.c - `mclip tokenize`: token ids as open_clip's MobileCLIP2
// tokenizer gives them.
//
//   mclip tokenize [--vocab PATH] [--raw] TEXT...
//   mclip tokenize [--vocab PATH] [--raw] --file F     (one text per line)
//
// Prints one line per text on stdout: the 77 ids of tokenizer(text)[0]
// (SOT, BPE ids, EOT, 0 padding), space-separated; with --raw only the BPE
// ids (SimpleTokenizer.encode).  Lines of F are taken verbatim except for
// the line end ("\n" or "\r\n").  Texts cut to 77 ids are reported on
// stderr.  The vocabulary is looked up as tok_find_vocab describes unless
// --vocab is given.
//
// Exit status: 0 ok, 1 a file problem, 2 a usage error.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../coop/cli.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mclip tokenize [--vocab PATH] [--raw] TEXT...\n"
               "       mclip tokenize [--vocab PATH] [--raw] --file F\n"
               "prints the %d token ids of each text (one text per line of F), as\n"
               "open_clip.get_tokenizer('MobileCLIP2-*') gives them; --raw prints only\n"
               "the BPE ids (no start/end tokens, no padding)\n", TOK_CONTEXT);
}

// Tokenize one text and print its line.  Returns 0, or 1 out of memory.
static int print_ids(Tokenizer *tok, const char *text, size_t len, int raw, long index) {
    int32_t ids[TOK_CONTEXT];
    if (!raw) {
        int n = len == strlen(text) ? tok_encode(tok, text, ids) : -1;
        if (n < 0) {
            // An embedded NUL: build the row from the raw ids.
            int32_t r[TOK_CONTEXT];
            n = tok_encode_raw_n(tok, text, len, r, TOK_CONTEXT) + 2;
            int keep = n - 2 < TOK_CONTEXT - 2 ? n - 2 : TOK_CONTEXT - 2;
            memset(ids, 0, sizeof ids);
            ids[0] = TOK_SOT;
            memcpy(ids + 1, r, (size_t)keep * sizeof *r);
            ids[keep + 1] = TOK_EOT;
        }
        if (n > TOK_CONTEXT)
            fprintf(stderr, "mclip tokenize: text %ld has %d tokens, cut to %d\n", index, n,
                    TOK_CONTEXT);
        for (int k = 0; k < TOK_CONTEXT; k++) printf(k ? " %d" : "%d", ids[k]);
        putchar('\n');
        return 0;
    }
    // --raw: all BPE ids, however many (count first, then fill).
    int n = tok_encode_raw_n(tok, text, len, NULL, 0);
    int32_t *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
    if (!buf) { fprintf(stderr, "mclip tokenize: out of memory\n"); return 1; }
    tok_encode_raw_n(tok, text, len, buf, n);
    for (int k = 0; k < n; k++) printf(k ? " %d" : "%d", buf[k]);
    putchar('\n');
    free(buf);
    return 0;
}

static int tokenize_file(Tokenizer *tok, const char *path, int raw) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mclip tokenize: %s: cannot open the text file\n", path);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long index = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        // Drop the line end only.
        if (len && line[len - 1] == '\n') line[--len] = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (print_ids(tok, line, (size_t)len, raw, index++)) break;
    }
    int err = ferror(f);
    free(line);
    fclose(f);
    if (err) {
        fprintf(stderr, "mclip tokenize: %s: read error after %ld lines\n", path, index);
        return 1;
    }
    return 0;
}

int cli_tokenize(int argc, char **argv) {
    const char *vocab = NULL, *file = NULL;
    int raw = 0, first_text = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--raw")) { raw = 1; continue; }
        if ((!strcmp(argv[i], "--vocab") || !strcmp(argv[i], "--file")) && i + 1 < argc) {
            *(argv[i][2] == 'v' ? &vocab : &file) = argv[i + 1];
            i++;
            continue;
        }
        if (!strcmp(argv[i], "--")) { first_text = i + 1; break; }
        if (!strncmp(argv[i], "--", 2)) {
            fprintf(stderr, "mclip tokenize: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        first_text = i;
        break;
    }
    if ((file != NULL) == (first_text < argc)) {
        fprintf(stderr, "mclip tokenize: give texts or --file F (exactly one of them)\n");
        usage(stderr);
        return 2;
    }

    // Load the vocabulary.
    McErr err;
    char path[4096];
    if (!vocab && tok_find_vocab(path, sizeof path, &err) < 0) {
        fprintf(stderr, "mclip tokenize: %s\n", err.msg);
        return 1;
    }
    Tokenizer *tok = tok_load(vocab ? vocab : path, &err);
    if (!tok) {
        fprintf(stderr, "mclip tokenize: %s\n", err.msg);
        return 1;
    }

    int rc = 0;
    if (file) {
        rc = tokenize_file(tok, file, raw);
    } else {
        for (int i = first_text; i < argc && !rc; i++)
            rc = print_ids(tok, argv[i], strlen(argv[i]), raw, i - first_text);
    }
    tok_free(tok);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "mclip tokenize: cannot write the output\n");
        rc = 1;
    }
    return rc;
}
