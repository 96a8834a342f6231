// cli_prompt.c - `mclip prompt`: reading a learned text prompt
// (coop/interpret.h).
//
//   mclip prompt nearest    --model FILE --prompt FILE [--k 5] [--metric l2|cosine]
//   mclip prompt similarity --model FILE --prompt FILE [--text T...] [--csv F] [--png F]
//   mclip prompt amplitude  --prompt FILE --out chart.svg [--bins 40] [--csv F]
//
// nearest prints, per context vector, its norm and the k nearest vocabulary
// tokens (decoded as open_clip's tokenizer.decode does: "</w>" becomes a
// space) with their distances (L2, the paper's) or cosines.
// similarity prints the cosine matrix of the learned prompt and hand-written
// prompts (default: the paper's Flowers prefixes "A", "A photo of a",
// "A flower of type", "A picture of the flower"), encoded by the rule in
// coop/interpret.h: each text alone, pooled at its EOT; the learned prompt
// as [SOT, ctx, EOT].  A class-specific prompt uses class 0's context.
// amplitude draws x_d^2 / sum x^2 of each context row (the paper's Fig. 4).
// Prompt files: mclip prompt files or the paper's .pt (coop/promptfile.h).
// Exit status: 0 ok, 1 a runtime error, 2 a usage error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mobileclip/cli_common.h"
#include "../mobileclip/model.h"
#include "cli.h"
#include "interpret.h"
#include "promptfile.h"
#include "retrieval.h"

static const char *const paper_texts[] = {"A", "A photo of a", "A flower of type",
                                          "A picture of the flower"};

typedef struct {
    const char *model, *prompt, *metric, *csv, *png, *out;
    int k, bins;
    char **texts;
    int n_texts;
} Args;

// 0 parsed, 1 help, 2 usage error.
static int parse(Args *a, int argc, char **argv, const char *cmd) {
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return 1;
        if (!strcmp(o, "--text")) {
            a->texts = argv + i + 1, a->n_texts = 0;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) i++, a->n_texts++;
            continue;
        }
        if (!v) return fprintf(stderr, "mclip prompt %s: %s needs a value\n", cmd, o), 2;
        i++;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--prompt")) a->prompt = v;
        else if (!strcmp(o, "--metric")) a->metric = v;
        else if (!strcmp(o, "--csv")) a->csv = v;
        else if (!strcmp(o, "--png")) a->png = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--k")) a->k = atoi(v);
        else if (!strcmp(o, "--bins")) a->bins = atoi(v);
        else return fprintf(stderr, "mclip prompt %s: unknown option %s\n", cmd, o), 2;
    }
    return 0;
}

static int load_prompt(const char *path, const McModel *m, CoopPromptFile *pf, McErr *err) {
    if (coop_promptfile_load(path, pf, err)) return -1;
    if (m && coop_promptfile_check(pf, m->name, m->text.cfg.width, err)) {
        coop_promptfile_free(pf);
        return -1;
    }
    return 0;
}

static int64_t prompt_rows(const CoopPromptFile *pf) {
    return (int64_t)(pf->n_cls > 0 ? pf->n_cls : 1) * pf->cfg.n_ctx;
}

// Print s as a JSON string (quotes, backslashes, control bytes escaped).
static void print_quoted(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

// ---- nearest ----

static int cmd_nearest(Args *a) {
    McErr err;
    int metric = coop_metric_parse(a->metric ? a->metric : "l2");
    if (metric < 0 || a->k < 1) {
        fprintf(stderr, "mclip prompt nearest: --metric l2|cosine, --k >= 1\n");
        return 2;
    }
    CoopPromptFile pf = {0};
    Tokenizer *tok = NULL;
    int rc = 1;
    int32_t *ids = NULL;
    float *sc = NULL;
    McModel *m = mc_model_load(a->model, NULL, &err);
    if (!m || load_prompt(a->prompt, m, &pf, &err)) goto fail;
    if (!(tok = cli_tokenizer_load(&err))) goto fail;
    int64_t R = prompt_rows(&pf), W = pf.width, V = m->text.cfg.vocab;
    int k = a->k < V ? a->k : (int)V;
    ids = mc_malloc((size_t)(R * k) * sizeof *ids);
    sc = mc_malloc((size_t)(R * k) * sizeof *sc);
    coop_nearest_tokens(pf.ctx, R, m->text.token_embedding->data, V, W, k, metric, ids, sc);
    printf("prompt %s (%s, %lld x %lld), nearest of %lld tokens by %s:\n", a->prompt,
           pf.model_name, (long long)R, (long long)W, (long long)V, coop_metric_name(metric));
    for (int64_t r = 0; r < R; r++) {
        double nrm = 0;
        for (int64_t j = 0; j < W; j++) nrm += (double)pf.ctx[r * W + j] * pf.ctx[r * W + j];
        printf("ctx[%2lld] |c| %.3f ", (long long)r, sqrt(nrm));
        for (int j = 0; j < k; j++) {
            int32_t id = ids[r * k + j];
            char *s = V == TOK_VOCAB ? tok_decode(tok, &id, 1, NULL) : NULL;
            printf(" ");
            if (s) print_quoted(s);
            else printf("#%d", id);
            printf(" %.4f", sc[r * k + j]);
            free(s);
        }
        printf("\n");
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip prompt nearest: %s\n", err.msg);
done:
    mc_free(ids), mc_free(sc);
    tok_free(tok);
    coop_promptfile_free(&pf);
    mc_model_free(m);
    return rc;
}

// ---- similarity ----

static int cmd_similarity(Args *a) {
    McErr err;
    CoopPromptFile pf = {0};
    Tokenizer *tok = NULL;
    int rc = 1;
    int nt = a->n_texts ? a->n_texts : 4, n = nt + 1;
    const char *const *texts = a->n_texts ? (const char *const *)a->texts : paper_texts;
    float *f = NULL, *cm = NULL;
    char **labels = mc_calloc((size_t)n, sizeof *labels);
    McModel *m = mc_model_load(a->model, NULL, &err);
    if (!m || load_prompt(a->prompt, m, &pf, &err)) goto fail;
    if (!(tok = cli_tokenizer_load(&err))) goto fail;
    int64_t E = m->text.cfg.embed;
    f = mc_malloc((size_t)(n * E) * sizeof *f);
    cm = mc_malloc((size_t)(n * n) * sizeof *cm);

    // Row 0: the learned prompt alone; then each text alone (pooled at EOT).
    coop_prefix_feature(&m->text, pf.ctx, pf.cfg.n_ctx, f);
    if (coop_ret_text_features(&m->text, tok, NULL, NULL, texts, nt, 16, f + E, &err)) goto fail;
    coop_cosine_matrix(f, n, E, cm);
    labels[0] = "learned";
    for (int i = 0; i < nt; i++) labels[i + 1] = (char *)texts[i];
    printf("cosine similarity (prompt %s%s; each text alone, pooled at its EOT):\n",
           a->prompt, pf.n_cls ? ", class 0's context" : "");
    for (int i = 0; i < n; i++) {
        printf("%-28.28s", labels[i]);
        for (int j = 0; j < n; j++) printf(" %7.4f", cm[i * n + j]);
        printf("\n");
    }
    if (a->csv && coop_matrix_write_csv(cm, n, labels, a->csv, &err)) goto fail;
    if (a->png && coop_matrix_write_png(cm, n, 40, 0.0, 1.0, a->png, &err)) goto fail;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip prompt similarity: %s\n", err.msg);
done:
    mc_free(f), mc_free(cm), mc_free(labels);
    tok_free(tok);
    coop_promptfile_free(&pf);
    mc_model_free(m);
    return rc;
}

// ---- amplitude ----

static int cmd_amplitude(Args *a) {
    McErr err;
    CoopPromptFile pf;
    if (!a->out) {
        fprintf(stderr, "mclip prompt amplitude: --out chart.svg is required\n");
        return 2;
    }
    if (load_prompt(a->prompt, NULL, &pf, &err)) {
        fprintf(stderr, "mclip prompt amplitude: %s\n", err.msg);
        return 1;
    }
    int64_t R = prompt_rows(&pf), W = pf.width;
    float *amp = mc_malloc((size_t)(R * W) * sizeof *amp);
    coop_amplitude(pf.ctx, R, W, amp);
    char title[600];
    snprintf(title, sizeof title, "%s (%s)", a->prompt, pf.model_name);
    int rc = coop_amplitude_svg(amp, R, W, a->bins > 0 ? a->bins : 40, title, a->out, &err);
    if (!rc && a->csv) {
        FILE *f = fopen(a->csv, "w");
        rc = f ? 0 : mc_err(&err, "cannot write %s", a->csv);
        for (int64_t r = 0; f && r < R; r++)
            for (int64_t d = 0; d < W; d++)
                fprintf(f, "%.8g%c", amp[r * W + d], d + 1 < W ? ',' : '\n');
        if (f && fclose(f)) rc = mc_err(&err, "error writing %s", a->csv);
    }
    // Summary: the largest share of each row.
    for (int64_t r = 0; !rc && r < R; r++) {
        float mx = 0;
        for (int64_t d = 0; d < W; d++) mx = fmaxf(mx, amp[r * W + d]);
        printf("ctx[%2lld] max share %.4f (even spread %.4f)\n", (long long)r, mx, 1.0 / W);
    }
    if (rc) fprintf(stderr, "mclip prompt amplitude: %s\n", err.msg);
    mc_free(amp);
    coop_promptfile_free(&pf);
    return rc ? 1 : 0;
}

int cli_prompt(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    Args a = {.k = 5, .bins = 40};
    int which = !sub ? -1 : !strcmp(sub, "nearest") ? 0 : !strcmp(sub, "similarity") ? 1
              : !strcmp(sub, "amplitude") ? 2 : -1;
    int r = which >= 0 ? parse(&a, argc - 1, argv + 1, sub) : 2;
    int need_model = which == 0 || which == 1;
    if (which < 0 || r == 1 || r == 2 || !a.prompt || (need_model && !a.model)) {
        FILE *f = r == 1 || (sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h"))) ? stdout
                                                                                   : stderr;
        fprintf(f,
            "usage: mclip prompt nearest    --model FILE --prompt FILE [--k 5]\n"
            "                               [--metric l2|cosine]\n"
            "       mclip prompt similarity --model FILE --prompt FILE [--text T...] [--csv F]\n"
            "                               [--png F]\n"
            "       mclip prompt amplitude  --prompt FILE --out chart.svg [--bins 40] [--csv F]\n");
        return f == stdout ? 0 : 2;
    }
    if (which == 0) return cmd_nearest(&a);
    if (which == 1) return cmd_similarity(&a);
    return cmd_amplitude(&a);
}
