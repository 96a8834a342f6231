// main.c - the mclip command line: one subcommand per job.
//
//   mclip <command> [options]      (mclip help lists the commands)
//
// Each command lives beside the code it drives (mobileclip/cli_*.c,
// coop/cli_*.c, datasets/cli_*.c) and is declared in coop/cli.h; this file
// only dispatches.  Results go to stdout, progress and errors to stderr.
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} Command;

static const Command commands[] = {
    {"info", cli_info, "print the build configuration (threads, ISA, BLAS)"},
    {"embed", cli_embed, "text and image embeddings (and dumps) with a MobileCLIP2 checkpoint"},
    {"inspect", cli_inspect, "list the tensors, metadata and model of a checkpoint or prompt file"},
    {"data", cli_data, "inspect a dataset folder or manifest; data gen writes a test dataset"},
    {"tokenize", cli_tokenize,
     "token ids of texts, as open_clip's MobileCLIP2 tokenizer gives them"},
    {"coop", cli_coop, "CoOp prompt learning: train (--demo), eval, grad"},
    {"zeroshot", cli_zeroshot, "zero-shot classification of images against class names"},
    {"vp", cli_vp, "visual prompt (padding): init, convert (paper .pt), grad, train, eval"},
    {"retrieval", cli_retrieval, "image-text retrieval: recall@1/5/10, paper protocol; train"},
    {"attnmap", cli_attnmap, "attention map of one head over the input image (PNG)"},
    {"prompt", cli_prompt, "read a learned prompt: nearest tokens, similarity, amplitude"},
    {"sweep", cli_sweep, "CoOp sweep summary: mean/std over seeds, CSV, accuracy-vs-shots SVG"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: mclip <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'mclip <command> --help' describes a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mclip: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
