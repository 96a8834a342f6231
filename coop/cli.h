// cli.h - the mclip subcommands.  Each takes argc/argv starting at the
// command name (argv[0] = "embed", ...) and returns the process exit status:
// 0 success, 1 a runtime error (bad file, ...), 2 a usage error.
#ifndef MCLIP_CLI_H
#define MCLIP_CLI_H

int cli_info(int argc, char **argv);   // coop/cli_info.c
int cli_embed(int argc, char **argv);  // mobileclip/cli_embed.c
int cli_inspect(int argc, char **argv); // mobileclip/cli_inspect.c
int cli_tokenize(int argc, char **argv); // mobileclip/cli_tokenize.c
int cli_data(int argc, char **argv);   // datasets/cli_data.c
int cli_coop(int argc, char **argv);   // coop/cli_coop.c
int cli_zeroshot(int argc, char **argv); // mobileclip/cli_zeroshot.c
int cli_vp(int argc, char **argv);     // coop/cli_vp.c
int cli_retrieval(int argc, char **argv); // coop/cli_retrieval.c
int cli_attnmap(int argc, char **argv); // coop/cli_attnmap.c
int cli_prompt(int argc, char **argv); // coop/cli_prompt.c
int cli_sweep(int argc, char **argv); // coop/cli_sweep.c

#endif
