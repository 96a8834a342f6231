// cli_shared.c - see cli_shared.h.
#include "cli_shared.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promptfile.h"

int cli_parse_opts(const CliOpt *opts, int n_opts, int argc, char **argv, const char *cmd) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
        const CliOpt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (!strcmp(argv[i], opts[k].name)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "mclip %s: unknown option %s\n", cmd, argv[i]);
            return 2;
        }
        if (o->kind == CLI_OPT_FLAG) {
            *(int *)o->dst = 1;
            continue;
        }
        if (o->kind == CLI_OPT_LIST) {
            CliArgList *l = o->dst;
            l->v = argv + i + 1, l->n = 0;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) i++, l->n++;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mclip %s: %s needs a value\n", cmd, argv[i]);
            return 2;
        }

        // The value; a number must be whole (end at its NUL) and non-empty.
        const char *v = argv[++i];
        char *end = NULL;
        switch (o->kind) {
        case CLI_OPT_STR: *(const char **)o->dst = v; end = ""; break;
        case CLI_OPT_INT: *(int *)o->dst = (int)strtol(v, &end, 10); break;
        case CLI_OPT_DBL: *(double *)o->dst = strtod(v, &end); break;
        case CLI_OPT_U64: *(uint64_t *)o->dst = strtoull(v, &end, 10); break;
        default: break;
        }
        if (!end || *end || !*v) {
            fprintf(stderr, "mclip %s: %s %s is not a number\n", cmd, o->name, v);
            return 2;
        }
    }
    return 0;
}

int cli_load_text_prompt(const char *path, const McModel *m, CoopPrompt *p, McErr *err) {
    CoopPromptFile pf;
    if (coop_promptfile_load(path, &pf, err)) return -1;
    int rc = coop_promptfile_check(&pf, m->name, m->text.cfg.width, err) ||
             coop_promptfile_prompt(&pf, p, err) ? -1 : 0;
    coop_promptfile_free(&pf);
    return rc;
}
