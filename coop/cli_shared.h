// cli_shared.h - pieces shared by the coop subcommands (`mclip retrieval`,
// `mclip vp`): a table-driven option parser and loading a text prompt file
// for a model.
//
// Usage sketch:
//
//     const char *model = NULL;
//     int batch = 16, no_fuse = 0;
//     CliArgList classes = {0};
//     CliOpt opts[] = {{"--model", CLI_OPT_STR, &model}, {"--batch", CLI_OPT_INT, &batch},
//                      {"--no-fuse", CLI_OPT_FLAG, &no_fuse},
//                      {"--classes", CLI_OPT_LIST, &classes}};
//     int r = cli_parse_opts(opts, 4, argc, argv, "vp grad");
//     if (r == 1) ... usage on stdout, exit 0;
//     if (r == 2) ... usage on stderr, exit 2;
#ifndef MCLIP_COOP_CLI_SHARED_H
#define MCLIP_COOP_CLI_SHARED_H

#include "../mobileclip/model.h"
#include "prompt.h"

typedef enum {
    CLI_OPT_STR,    // const char *: the value, pointing into argv
    CLI_OPT_INT,    // int (decimal)
    CLI_OPT_DBL,    // double
    CLI_OPT_U64,    // uint64_t (decimal)
    CLI_OPT_FLAG,   // int: set to 1, takes no value
    CLI_OPT_LIST,   // CliArgList: every following argument up to the next "--" one
} CliOptKind;

typedef struct {
    char **v;   // pointers into argv
    int    n;
} CliArgList;

typedef struct {
    const char *name;   // "--model"
    CliOptKind  kind;
    void       *dst;    // written when the option is given
} CliOpt;

// Parse argv[1 ..] (argv[0] is the subcommand) against opts[n_opts].
// Returns 0 parsed, 1 for --help / -h, 2 after a usage message on stderr
// ("mclip <cmd>: unknown option X", "X needs a value", "X V is not a
// number").
int cli_parse_opts(const CliOpt *opts, int n_opts, int argc, char **argv, const char *cmd);

// The text prompt file at path (mclip's or the paper's .pt), checked
// against m's name and text width, as a CoopPrompt in p.  0, or -1 with err
// set and p untouched.
int cli_load_text_prompt(const char *path, const McModel *m, CoopPrompt *p, McErr *err);

#endif
