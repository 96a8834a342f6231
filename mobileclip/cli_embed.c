// cli_embed.c - `mclip embed`: embeddings of texts with a MobileCLIP2 model.
//
//   mclip embed --model FILE --out OUT.safetensors
//               [--text TEXT...] [--text-file F] [--dump NAME,...]
//               [--model-name NAME] [--batch N] [--threads N]
//
// Writes OUT (safetensors) with
//   text_embeds      [N, E]      L2-normalised text embeddings
//   text_embeds_raw  [N, E]      encode_text output (before normalising)
//   text_ids         I64 [N, T]  the token ids
//   <dump name>      [N, ...]    each requested activation, stacked over
//                                the N texts (names: see mobileclip/text.h)
// Texts are taken in command-line order: every word after --text up to the
// next option is one text (quote multi-word texts), --text-file adds one
// text per non-empty line.  A text starting with "--" needs --text-file.
//
// Exit status: 0 ok, 1 a file or model problem, 2 a usage error.
//
// Images: the argument list keeps one ordered input list per modality so
// that an --image option only adds a list, a parse case and an embed pass.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../coop/cli.h"
#include "../tensor/gemm.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"

// ---- arguments ----

typedef struct {
    char **v;
    int n, cap;
} StrList;

static void strlist_add(StrList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
        MC_CHECK(nv != NULL, "out of memory");
        l->v = nv;
    }
    size_t len = strlen(s);
    l->v[l->n] = mc_malloc(len + 1);
    memcpy(l->v[l->n++], s, len + 1);
}

static void strlist_free(StrList *l) {
    for (int i = 0; i < l->n; i++) mc_free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

typedef struct {
    const char *model;        // --model
    const char *model_name;   // --model-name or NULL (detect)
    const char *out;          // --out
    const char *dump;         // --dump, comma separated, or NULL
    int batch;                // --batch (texts per forward pass)
    int threads;              // --threads (0: default)
    StrList texts;            // --text words and --text-file lines, in order
    // IMAGE: StrList images;  --image paths, embedded by an image pass
} EmbedArgs;

static void usage(FILE *f) {
    fprintf(f,
        "usage: mclip embed --model FILE --out OUT.safetensors [--text TEXT...]\n"
        "                   [--text-file F] [--dump NAME,...] [--model-name NAME]\n"
        "                   [--batch N] [--threads N]\n"
        "\n"
        "  --model FILE       open_clip MobileCLIP2 checkpoint (.safetensors or .pt)\n"
        "  --model-name NAME  MobileCLIP2-S0, -S2, -B, -S3, -S4, -L-14 (default: detect)\n"
        "  --text TEXT...     texts to embed, one per argument\n"
        "  --text-file F      more texts, one per non-empty line\n"
        "  --out FILE         output safetensors: text_embeds [N, E] (L2-normalised),\n"
        "                     text_embeds_raw [N, E], text_ids [N, 77], dumps\n"
        "  --dump NAMES       activations to store, stacked over the texts: text.x0,\n"
        "                     text.block.K, text.ln_final, text.pooled, text.proj\n"
        "  --batch N          texts per forward pass (default 32)\n"
        "  --threads N        threads (default: all)\n");
}

// Integer option value in [lo, hi], or -1 after a message.
static int int_arg(const char *flag, const char *v, int lo, int hi) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "mclip embed: %s wants an integer in [%d, %d], got '%s'\n", flag,
                lo, hi, v);
        return -1;
    }
    return (int)x;
}

// 0 ok, 2 usage error (message printed).  Texts are collected in order;
// --text-file paths are kept as "\x01path" markers in texts and read later.
static int parse_args(int argc, char **argv, EmbedArgs *a) {
    a->batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(f, "--text")) {
            // Every following argument up to the next option is one text.
            int n = 0;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) strlist_add(&a->texts, argv[++i]), n++;
            if (!n) {
                fprintf(stderr, "mclip embed: --text needs at least one text\n");
                return 2;
            }
            continue;
        } else if (!has_val) {
            fprintf(stderr, "mclip embed: %s: unknown option or missing value\n", f);
            usage(stderr);
            return 2;
        } else if (!strcmp(f, "--model")) {
            a->model = argv[++i];
        } else if (!strcmp(f, "--model-name")) {
            a->model_name = argv[++i];
        } else if (!strcmp(f, "--out")) {
            a->out = argv[++i];
        } else if (!strcmp(f, "--dump")) {
            a->dump = argv[++i];
        } else if (!strcmp(f, "--text-file")) {
            char marker[4096];
            snprintf(marker, sizeof marker, "\x01%s", argv[++i]);
            strlist_add(&a->texts, marker);
        } else if (!strcmp(f, "--batch")) {
            if ((a->batch = int_arg(f, argv[++i], 1, 4096)) < 0) return 2;
        } else if (!strcmp(f, "--threads")) {
            if ((a->threads = int_arg(f, argv[++i], 1, 1024)) < 0) return 2;
        // IMAGE: "--image" collects paths like --text (into a->images).
        } else {
            fprintf(stderr, "mclip embed: unknown option '%s'\n", f);
            usage(stderr);
            return 2;
        }
    }
    if (!a->model || !a->out) {
        fprintf(stderr, "mclip embed: %s is required\n", a->model ? "--out" : "--model");
        usage(stderr);
        return 2;
    }
    return 0;
}

// Replace the --text-file markers by the lines of the files.  0, or 1 with
// a message naming the file.
static int expand_text_files(StrList *texts) {
    StrList out = {0};
    for (int i = 0; i < texts->n; i++) {
        const char *s = texts->v[i];
        if (s[0] != '\x01') {
            strlist_add(&out, s);
            continue;
        }
        FILE *fp = fopen(s + 1, "r");
        if (!fp) {
            fprintf(stderr, "mclip embed: cannot open text file %s: ", s + 1);
            perror(NULL);
            strlist_free(&out);
            return 1;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, fp)) >= 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len > 0) strlist_add(&out, line);
        }
        free(line);
        fclose(fp);
    }
    strlist_free(texts);
    *texts = out;
    return 0;
}

// ---- activation dumps ----

typedef struct {
    char name[64];
    float *v;                  // [rows * inner] so far
    int64_t rows, inner, cap;  // cap in floats
    int ndim;
    int64_t shape[MC_MAXDIM];  // shape[1..] of the first batch
} DumpBuf;

typedef struct {
    DumpBuf *d;
    int n;
} Dumps;

// Known text dump names for a tower with `layers` blocks.
static int dump_name_ok(const char *s, int layers) {
    if (!strcmp(s, "text.x0") || !strcmp(s, "text.ln_final") || !strcmp(s, "text.pooled") ||
        !strcmp(s, "text.proj"))
        return 1;
    if (strncmp(s, "text.block.", 11)) return 0;
    char *end;
    long k = strtol(s + 11, &end, 10);
    return end != s + 11 && !*end && k >= 0 && k < layers;
}

// Parse the comma-separated list; 0, or 2 with a message.
static int dumps_parse(Dumps *ds, const char *list, int layers) {
    if (!list) return 0;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!dump_name_ok(tok, layers)) {
            fprintf(stderr, "mclip embed: --dump: unknown activation '%s' (this model has: "
                    "text.x0, text.block.0 .. text.block.%d, text.ln_final, text.pooled, "
                    "text.proj)\n", tok, layers - 1);
            return 2;
        }
        ds->d = realloc(ds->d, (size_t)(ds->n + 1) * sizeof *ds->d);
        MC_CHECK(ds->d != NULL, "out of memory");
        memset(&ds->d[ds->n], 0, sizeof ds->d[ds->n]);
        snprintf(ds->d[ds->n++].name, 64, "%s", tok);
    }
    return 0;
}

// Dump hook: append the batch's rows of each requested activation.
static void dumps_take(void *ctx, const char *name, const Tensor *t) {
    Dumps *ds = ctx;
    for (int i = 0; i < ds->n; i++) {
        DumpBuf *d = &ds->d[i];
        if (strcmp(d->name, name)) continue;
        if (!d->rows) {
            d->ndim = t->ndim;
            for (int k = 0; k < t->ndim; k++) d->shape[k] = t->shape[k];
            d->inner = t->n / t->shape[0];
        }
        size_t need;
        MC_CHECK(mc_add_ok((size_t)(d->rows * d->inner), (size_t)t->n, &need), "dump size");
        if ((int64_t)need > d->cap) {
            d->cap = (int64_t)need * 2;
            d->v = realloc(d->v, (size_t)d->cap * sizeof(float));
            MC_CHECK(d->v != NULL, "out of memory for dump %s", name);
        }
        memcpy(d->v + d->rows * d->inner, t->data, (size_t)t->n * sizeof(float));
        d->rows += t->shape[0];
    }
}

static void dumps_free(Dumps *ds) {
    for (int i = 0; i < ds->n; i++) free(ds->d[i].v);
    free(ds->d);
}

// ---- embedding ----

// Tokenize every text into ids [N, T] (T must be TOK_CONTEXT).  0, or 1
// with a message.
static int tokenize_all(const StrList *texts, int T, int32_t *ids) {
    McErr err;
    char path[1024];
    if (T != TOK_CONTEXT) {
        fprintf(stderr, "mclip embed: the model's context is %d tokens; the CLIP tokenizer "
                "makes %d\n", T, TOK_CONTEXT);
        return 1;
    }
    Tokenizer *tok = tok_find_vocab(path, sizeof path, &err) ? NULL : tok_load(path, &err);
    if (!tok) {
        fprintf(stderr, "mclip embed: tokenizer: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < texts->n; i++) {
        int n = tok_encode(tok, texts->v[i], ids + (int64_t)i * T);
        if (n > T)
            fprintf(stderr, "mclip embed: text %d has %d tokens, cut to %d\n", i, n, T);
    }
    tok_free(tok);
    return 0;
}

// Run the text tower over all texts in batches; fills raw and normalised
// embeddings [N, E].  0, or 1 with a message.
static int embed_texts(McModel *m, const int32_t *ids, int N, int batch, Dumps *ds,
                       float *raw, float *emb) {
    TextTower *tt = &m->text;
    int64_t T = tt->cfg.context, E = tt->cfg.embed;
    McDump dump = {dumps_take, ds};
    McErr err;
    Graph *g = ag_graph_new((size_t)1 << 24);
    g->grad_enabled = 0;
    for (int b0 = 0; b0 < N; b0 += batch) {
        int B = N - b0 < batch ? N - b0 : batch;
        ag_graph_reset(g);
        Tensor *p = text_tower_forward(g, tt, ids + b0 * T, B, ds->n ? &dump : NULL, &err);
        if (!p) {
            fprintf(stderr, "mclip embed: text %d..%d: %s\n", b0, b0 + B - 1, err.msg);
            ag_graph_free(g);
            return 1;
        }
        Tensor *n = ag_l2norm(g, p, 1e-12f);
        memcpy(raw + b0 * E, p->data, (size_t)(B * E) * sizeof(float));
        memcpy(emb + b0 * E, n->data, (size_t)(B * E) * sizeof(float));
    }
    ag_graph_free(g);
    return 0;
}

static int write_out(const EmbedArgs *a, const McModel *m, int N, const int32_t *ids,
                     const float *raw, const float *emb, const Dumps *ds) {
    int64_t T = m->text.cfg.context, E = m->text.cfg.embed;
    StWriter *w = st_writer_new();
    int64_t *ids64 = mc_malloc((size_t)(N * T) * sizeof *ids64);
    for (int64_t i = 0; i < N * T; i++) ids64[i] = ids[i];
    st_writer_add_f32(w, "text_embeds", MC_DIMS(N, E), emb);
    st_writer_add_f32(w, "text_embeds_raw", MC_DIMS(N, E), raw);
    st_writer_add_i64(w, "text_ids", MC_DIMS(N, T), ids64);
    for (int i = 0; i < ds->n; i++) {
        const DumpBuf *d = &ds->d[i];
        int64_t shape[MC_MAXDIM];
        shape[0] = d->rows;
        for (int k = 1; k < d->ndim; k++) shape[k] = d->shape[k];
        st_writer_add_f32(w, d->name, d->ndim, shape, d->v);
    }
    st_writer_meta(w, "model", m->name);
    st_writer_meta(w, "model_file", a->model);
    McErr err;
    int rc = st_writer_save(w, a->out, &err);
    if (rc) fprintf(stderr, "mclip embed: %s\n", err.msg);
    st_writer_free(w);
    mc_free(ids64);
    return rc ? 1 : 0;
}

int cli_embed(int argc, char **argv) {
    EmbedArgs a = {0};
    Dumps ds = {0};
    McModel *m = NULL;
    int32_t *ids = NULL;
    float *raw = NULL, *emb = NULL;
    int rc = parse_args(argc, argv, &a);
    if (rc) goto done;

    // Inputs first: a missing text file fails before the model loads.
    if ((rc = expand_text_files(&a.texts))) goto done;
    if (a.texts.n == 0) {
        fprintf(stderr, "mclip embed: nothing to embed (give --text or --text-file)\n");
        rc = 2;
        goto done;
    }
    if (a.threads) mc_set_threads(a.threads);

    // Model, then the dump list it makes valid.
    McErr err;
    double t0 = mc_time();
    m = mc_model_load(a.model, a.model_name, &err);
    if (!m) {
        fprintf(stderr, "mclip embed: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    const McTextConfig *c = &m->text.cfg;
    if ((rc = dumps_parse(&ds, a.dump, c->layers))) goto done;
    fprintf(stderr, "mclip embed: %s (%s) from %s, loaded in %.2f s\n"
            "  text: vocab %d, context %d, width %d, heads %d, layers %d, embed %d, %s, "
            "%.1f M params\n  threads %d, BLAS %s, %d texts, batch %d\n",
            m->name, m->how, a.model, mc_time() - t0, c->vocab, c->context, c->width,
            c->heads, c->layers, c->embed, c->causal ? "causal" : "bidirectional",
            text_tower_params(c) / 1e6, mc_threads(), mc_blas_enabled() ? "on" : "off",
            a.texts.n, a.batch);

    // Tokenize, embed, write.
    int N = a.texts.n;
    ids = mc_malloc((size_t)N * (size_t)c->context * sizeof *ids);
    raw = mc_malloc((size_t)N * (size_t)c->embed * sizeof *raw);
    emb = mc_malloc((size_t)N * (size_t)c->embed * sizeof *emb);
    if ((rc = tokenize_all(&a.texts, c->context, ids))) goto done;
    t0 = mc_time();
    if ((rc = embed_texts(m, ids, N, a.batch, &ds, raw, emb))) goto done;
    double dt = mc_time() - t0;
    if ((rc = write_out(&a, m, N, ids, raw, emb, &ds))) goto done;
    printf("wrote %s: %d texts, text_embeds [%d, %d], %.1f ms (%.1f texts/s)\n", a.out, N, N,
           c->embed, dt * 1e3, N / (dt > 0 ? dt : 1e-9));

done:
    mc_free(ids);
    mc_free(raw);
    mc_free(emb);
    dumps_free(&ds);
    mc_model_free(m);
    strlist_free(&a.texts);
    return rc;
}
