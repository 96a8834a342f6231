// cli_embed.c - `mclip embed`: text and image embeddings with a MobileCLIP2
// model.
//
//   mclip embed --model FILE --out OUT.safetensors
//               [--text TEXT...] [--text-file F]
//               [--image PATH...] [--image-list F] [--skip-bad]
//               [--preprocess openclip|paper] [--no-fuse]
//               [--dump NAME,...] [--model-name NAME] [--batch N] [--threads N]
//
// Writes OUT (safetensors) with, for texts,
//   text_embeds       [N, E]      L2-normalised text embeddings
//   text_embeds_raw   [N, E]      encode_text output (before normalising)
//   text_ids          I64 [N, T]  the token ids
// and for images (dims: M images embedded, E)
//   image_embeds      [M, E]      L2-normalised image embeddings
//   image_embeds_raw  [M, E]      encode_image output
//   image_index       I64 [M]     position of each embedded image among the
//                                 --image / --image-list inputs (0-based)
//   metadata image_paths (JSON list of the M embedded paths, row order),
//   image_skipped (JSON list of the paths left out by --skip-bad),
//   preprocess ("openclip" or "paper"), image_fused ("1" or "0");
// plus each --dump activation, stacked over the texts or the images
// (names: mobileclip/text.h and mobileclip/image_tower.h).
//
// Texts are taken in command-line order: every word after --text up to the
// next option is one text (quote multi-word texts), --text-file adds one
// text per non-empty line.  A text starting with "--" needs --text-file.
// Images likewise: --image takes paths up to the next option, --image-list
// one path per non-empty line.  Each image is preprocessed as the model's
// config says (size, interpolation, mean/std; datasets/preprocess.h), in
// open_clip's order unless --preprocess paper.  A file that cannot be
// decoded stops the run with a message naming it and nothing is written;
// with --skip-bad it is reported, left out, and listed in image_skipped.
//
// Exit status: 0 ok, 1 a file or model problem, 2 a usage error.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../coop/cli.h"
#include "../tensor/gemm.h"
#include "cli_common.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"

// ---- arguments ----

typedef struct {
    const char *model;        // --model
    const char *model_name;   // --model-name or NULL (detect)
    const char *out;          // --out
    const char *dump;         // --dump, comma separated, or NULL
    int batch;                // --batch (texts or images per forward pass)
    int threads;              // --threads (0: default)
    int no_fuse;              // --no-fuse: image tower in the training form
    int skip_bad;             // --skip-bad: leave unreadable images out
    DsPrepOrder order;        // --preprocess
    CliList texts;            // --text words and --text-file markers, in order
    CliList images;           // --image paths and --image-list markers, in order
} EmbedArgs;

static void usage(FILE *f) {
    fprintf(f,
        "usage: mclip embed --model FILE --out OUT.safetensors [--text TEXT...]\n"
        "                   [--text-file F] [--image PATH...] [--image-list F]\n"
        "                   [--skip-bad] [--preprocess openclip|paper] [--no-fuse]\n"
        "                   [--dump NAME,...] [--model-name NAME] [--batch N] [--threads N]\n"
        "\n"
        "  --model FILE       open_clip MobileCLIP2 checkpoint (.safetensors or .pt)\n"
        "  --model-name NAME  MobileCLIP2-S0, -S2, -B, -S3, -S4, -L-14 (default: detect)\n"
        "  --text TEXT...     texts to embed, one per argument\n"
        "  --text-file F      more texts, one per non-empty line\n"
        "  --image PATH...    image files to embed (JPEG, PNG, GIF, BMP)\n"
        "  --image-list F     more image paths, one per non-empty line\n"
        "  --skip-bad         report unreadable images and go on without them\n"
        "                     (default: stop, write nothing)\n"
        "  --preprocess ORDER openclip (default): convert to RGB after resize and crop,\n"
        "                     as open_clip's transform; paper: convert first\n"
        "  --no-fuse          run the image tower unfused (training form)\n"
        "  --out FILE         output safetensors: text_embeds / image_embeds [N, E]\n"
        "                     (L2-normalised), *_raw [N, E], text_ids [N, 77],\n"
        "                     image_index [N], dumps\n"
        "  --dump NAMES       activations to store, stacked over the inputs: text.x0,\n"
        "                     text.block.K, text.ln_final, text.pooled, text.proj,\n"
        "                     image.input, image.stem, image.stage.K (FastViT),\n"
        "                     image.block.K (ViT), image.final_conv, image.pooled, ...\n"
        "  --batch N          texts or images per forward pass (default 32)\n"
        "  --threads N        threads (default: all)\n");
}

// 0 ok, 2 usage error (message printed).  Inputs are collected in order;
// --text-file and --image-list paths are kept as markers and read later.
static int parse_args(int argc, char **argv, EmbedArgs *a) {
    a->batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(f, "--text") || !strcmp(f, "--image")) {
            // Every following argument up to the next option is one input.
            int is_text = f[2] == 't';
            if (!cli_list_take_args(is_text ? &a->texts : &a->images, argc, argv, &i)) {
                fprintf(stderr, "mclip embed: %s needs at least one %s\n", f,
                        is_text ? "text" : "path");
                return 2;
            }
        } else if (!strcmp(f, "--no-fuse")) {
            a->no_fuse = 1;
        } else if (!strcmp(f, "--skip-bad")) {
            a->skip_bad = 1;
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
            cli_list_add_file(&a->texts, argv[++i]);
        } else if (!strcmp(f, "--image-list")) {
            cli_list_add_file(&a->images, argv[++i]);
        } else if (!strcmp(f, "--preprocess")) {
            if (ds_prep_order_parse(argv[++i], &a->order)) {
                fprintf(stderr, "mclip embed: --preprocess wants openclip or paper, got '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (!strcmp(f, "--batch")) {
            if ((a->batch = cli_int_arg("mclip embed", f, argv[++i], 1, 4096)) < 0) return 2;
        } else if (!strcmp(f, "--threads")) {
            if ((a->threads = cli_int_arg("mclip embed", f, argv[++i], 1, 1024)) < 0) return 2;
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
    int n_text, n_image;       // how many of them are text.* / image.*
} Dumps;

// Known text dump names for a tower with `layers` blocks.
static int text_dump_ok(const char *s, int layers) {
    if (!strcmp(s, "text.x0") || !strcmp(s, "text.ln_final") || !strcmp(s, "text.pooled") ||
        !strcmp(s, "text.proj"))
        return 1;
    if (strncmp(s, "text.block.", 11)) return 0;
    char *end;
    long k = strtol(s + 11, &end, 10);
    return end != s + 11 && !*end && k >= 0 && k < layers;
}

// Parse the comma-separated list; 0, or 2 with a message.
static int dumps_parse(Dumps *ds, const char *list, const McModel *m) {
    if (!list) return 0;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int is_text = text_dump_ok(tok, m->text.cfg.layers);
        if (!is_text && !cli_image_dump_ok(m, tok)) {
            char names[256];
            cli_image_dump_names(m, names, sizeof names);
            fprintf(stderr, "mclip embed: --dump: unknown activation '%s' (this model has: "
                    "text.x0, text.block.0 .. text.block.%d, text.ln_final, text.pooled, "
                    "text.proj; %s)\n", tok, m->text.cfg.layers - 1, names);
            return 2;
        }
        ds->d = realloc(ds->d, (size_t)(ds->n + 1) * sizeof *ds->d);
        MC_CHECK(ds->d != NULL, "out of memory");
        memset(&ds->d[ds->n], 0, sizeof ds->d[ds->n]);
        snprintf(ds->d[ds->n++].name, 64, "%s", tok);
        is_text ? ds->n_text++ : ds->n_image++;
    }
    return 0;
}

// Dump hook (text and image towers): append the batch's rows of each
// requested activation.
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

// ---- output ----

// What one run produced (NULL / 0 for a modality without inputs).
typedef struct {
    int n_text;
    const int32_t *ids;             // [n_text, T]
    const float *text_raw, *text_emb;   // [n_text, E]
    int n_image;                    // embedded images
    const float *image_raw, *image_emb; // [n_image, E]
    const int *kept;                // [n_image] input positions
    const CliList *images;          // all image inputs
} EmbedResult;

// JSON list of paths (heap string): the kept ones (want = 1) or the others.
static char *json_paths(const CliList *paths, const int *kept, int n_kept, int want) {
    size_t cap = 16, len = 1;
    for (int i = 0; i < paths->n; i++) cap += 8 + 6 * strlen(paths->v[i]);
    char *s = mc_malloc(cap);
    strcpy(s, "[");
    int k = 0, first = 1;
    for (int i = 0; i < paths->n; i++) {
        int is_kept = k < n_kept && kept[k] == i;
        k += is_kept;
        if (is_kept != want) continue;
        if (!first) s[len++] = ',';
        first = 0;
        len += json_quote(s + len, cap - len, paths->v[i]);
    }
    snprintf(s + len, cap - len, "]");
    return s;
}

static int write_out(const EmbedArgs *a, const McModel *m, const EmbedResult *r,
                     const Dumps *ds) {
    int64_t T = m->text.cfg.context, E = m->text.cfg.embed;
    StWriter *w = st_writer_new();
    int64_t *ids64 = NULL, *index = NULL;
    char *kept_json = NULL, *skipped_json = NULL;

    // Texts.
    if (r->n_text) {
        int64_t N = r->n_text;
        ids64 = mc_malloc((size_t)(N * T) * sizeof *ids64);
        for (int64_t i = 0; i < N * T; i++) ids64[i] = r->ids[i];
        st_writer_add_f32(w, "text_embeds", MC_DIMS(N, E), r->text_emb);
        st_writer_add_f32(w, "text_embeds_raw", MC_DIMS(N, E), r->text_raw);
        st_writer_add_i64(w, "text_ids", MC_DIMS(N, T), ids64);
    }

    // Images and which inputs they are.
    if (r->n_image) {
        int64_t M = r->n_image, EI = m->cfg.image.embed;
        index = mc_malloc((size_t)M * sizeof *index);
        for (int64_t i = 0; i < M; i++) index[i] = r->kept[i];
        st_writer_add_f32(w, "image_embeds", MC_DIMS(M, EI), r->image_emb);
        st_writer_add_f32(w, "image_embeds_raw", MC_DIMS(M, EI), r->image_raw);
        st_writer_add_i64(w, "image_index", MC_DIMS(M), index);
        kept_json = json_paths(r->images, r->kept, r->n_image, 1);
        skipped_json = json_paths(r->images, r->kept, r->n_image, 0);
        st_writer_meta(w, "image_paths", kept_json);
        st_writer_meta(w, "image_skipped", skipped_json);
        st_writer_meta(w, "preprocess", ds_prep_order_name(a->order));
        st_writer_meta(w, "image_fused", a->no_fuse ? "0" : "1");
    }

    // Dumps, stacked over their inputs.
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
    mc_free(index);
    mc_free(kept_json);
    mc_free(skipped_json);
    return rc ? 1 : 0;
}

// ---- the command ----

static void banner(const EmbedArgs *a, const McModel *m, double load_s) {
    const McTextConfig *c = &m->text.cfg;
    fprintf(stderr, "mclip embed: %s (%s) from %s, loaded in %.2f s\n"
            "  text: vocab %d, context %d, width %d, heads %d, layers %d, embed %d, %s, "
            "%.1f M params\n",
            m->name, m->how, a->model, load_s, c->vocab, c->context, c->width, c->heads,
            c->layers, c->embed, c->causal ? "causal" : "bidirectional",
            text_tower_params(c) / 1e6);
    if (m->image) {
        const McImageConfig *ic = &m->cfg.image;
        fprintf(stderr, "  image: %s, %dx%d, embed %d, %s, %.1f M params; preprocess %s, "
                "%s, mean (%g, %g, %g), std (%g, %g, %g)\n",
                ic->kind == MC_TRUNK_FASTVIT ? "FastViT" : "ViT", ic->image_size,
                ic->image_size, ic->embed, image_tower_fused(m->image) ? "fused" : "unfused",
                image_tower_numel(m->image) / 1e6, ds_prep_order_name(a->order),
                ic->interp == MC_INTERP_BICUBIC ? "bicubic" : "bilinear", ic->mean[0],
                ic->mean[1], ic->mean[2], ic->std[0], ic->std[1], ic->std[2]);
    }
    fprintf(stderr, "  threads %d, BLAS %s, %d texts, %d images, batch %d\n", mc_threads(),
            mc_blas_enabled() ? "on" : "off", a->texts.n, a->images.n, a->batch);
}

// Check that the model and the dumps fit the inputs.  0, or an exit status.
static int check_fit(const EmbedArgs *a, const McModel *m, const Dumps *ds) {
    if (a->images.n && !m->image) {
        fprintf(stderr, "mclip embed: %s has no image tower (%s): cannot embed images\n",
                a->model, m->how);
        return 1;
    }
    if ((ds->n_text && !a->texts.n) || (ds->n_image && !a->images.n)) {
        fprintf(stderr, "mclip embed: --dump asks for %s activations but no %s given\n",
                ds->n_text && !a->texts.n ? "text" : "image",
                ds->n_text && !a->texts.n ? "texts are" : "images are");
        return 2;
    }
    return 0;
}

int cli_embed(int argc, char **argv) {
    EmbedArgs a = {0};
    Dumps ds = {0};
    McModel *m = NULL;
    int32_t *ids = NULL;
    float *traw = NULL, *temb = NULL, *iraw = NULL, *iemb = NULL;
    int *kept = NULL;
    int rc = parse_args(argc, argv, &a);
    if (rc) goto done;

    // Inputs first: a missing list file fails before the model loads.
    if ((rc = cli_list_expand(&a.texts, "mclip embed", "text")) ||
        (rc = cli_list_expand(&a.images, "mclip embed", "image list")))
        goto done;
    if (a.texts.n == 0 && a.images.n == 0) {
        fprintf(stderr, "mclip embed: nothing to embed (give --text, --text-file, --image "
                "or --image-list)\n");
        rc = 2;
        goto done;
    }
    if (a.threads) mc_set_threads(a.threads);

    // Model, then the dump list it makes valid.
    McErr err;
    double t0 = mc_time();
    m = cli_model_load(a.model, a.model_name, !a.no_fuse, &err);
    if (!m) {
        fprintf(stderr, "mclip embed: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if ((rc = dumps_parse(&ds, a.dump, m)) || (rc = check_fit(&a, m, &ds))) goto done;
    banner(&a, m, mc_time() - t0);
    EmbedResult r = {.n_text = a.texts.n, .images = &a.images};

    // Texts: tokenize, embed.
    const McTextConfig *c = &m->text.cfg;
    double dt_text = 0, dt_image = 0;
    if (a.texts.n) {
        int N = a.texts.n;
        ids = mc_malloc((size_t)N * (size_t)c->context * sizeof *ids);
        traw = mc_malloc((size_t)N * (size_t)c->embed * sizeof *traw);
        temb = mc_malloc((size_t)N * (size_t)c->embed * sizeof *temb);
        McDump dump = {dumps_take, &ds};
        if ((rc = cli_text_ids("mclip embed", a.texts.v, N, c->context, ids))) goto done;
        t0 = mc_time();
        if ((rc = cli_embed_texts("mclip embed", m, ids, N, a.batch, ds.n_text ? &dump : NULL,
                                  traw, temb)))
            goto done;
        dt_text = mc_time() - t0;
        r.ids = ids, r.text_raw = traw, r.text_emb = temb;
    }

    // Images: preprocess and embed in batches.
    if (a.images.n) {
        size_t n = (size_t)a.images.n, E = (size_t)m->cfg.image.embed;
        DsPrepConfig pc;
        cli_prep_config(&pc, m, a.order);
        iraw = mc_malloc(n * E * sizeof *iraw);
        iemb = mc_malloc(n * E * sizeof *iemb);
        kept = mc_malloc(n * sizeof *kept);
        CliImageOpts o = {.prog = "mclip embed", .batch = a.batch, .skip_bad = a.skip_bad,
                          .dump = ds.n_image ? dumps_take : NULL, .dump_ctx = &ds};
        t0 = mc_time();
        if ((rc = cli_embed_images(m, &pc, (const char *const *)a.images.v, a.images.n, &o,
                                   iraw, iemb, kept, &r.n_image)))
            goto done;
        dt_image = mc_time() - t0;
        r.image_raw = iraw, r.image_emb = iemb, r.kept = kept;
    }

    // One output file with everything.
    if ((rc = write_out(&a, m, &r, &ds))) goto done;
    printf("wrote %s:", a.out);
    if (r.n_text)
        printf(" %d texts, text_embeds [%d, %d], %.1f ms (%.1f texts/s);", r.n_text, r.n_text,
               c->embed, dt_text * 1e3, r.n_text / (dt_text > 0 ? dt_text : 1e-9));
    if (a.images.n)
        printf(" %d images (%d skipped), image_embeds [%d, %d], %.1f ms (%.1f img/s)",
               r.n_image, a.images.n - r.n_image, r.n_image, m->cfg.image.embed,
               dt_image * 1e3, r.n_image / (dt_image > 0 ? dt_image : 1e-9));
    printf("\n");

done:
    mc_free(ids);
    mc_free(traw);
    mc_free(temb);
    mc_free(iraw);
    mc_free(iemb);
    mc_free(kept);
    dumps_free(&ds);
    mc_model_free(m);
    cli_list_free(&a.texts);
    cli_list_free(&a.images);
    return rc;
}
