// cli_zeroshot.c - `mclip zeroshot`: zero-shot classification of images
// against class names, as open_clip's CLIP head scores them.
//
//   mclip zeroshot --model FILE --classes FILE (--image PATH... | --image-list F)
//                  [--template "a photo of a {}."] [--top 5] [--out OUT.safetensors]
//                  [--skip-bad] [--preprocess openclip|paper] [--no-fuse]
//                  [--model-name NAME] [--batch N] [--threads N]
//
// Dims: N images, K classes, E embedding width.
//
//   txt[k]   = normalize(encode_text(tokenize(template with {} -> class k)))  [K, E]
//   img[n]   = normalize(encode_image(preprocess(image n)))                    [N, E]
//   logits   = exp(logit_scale) * img @ txt^T                                  [N, K]
//   probs    = softmax over k of logits (max subtracted, in double)            [N, K]
//
// Reference: open_clip CLIP.forward + the zero-shot recipe of its README
// (../shared/arch-spec.md section 6).  One prompt per class (no ensembling).
//
// Classes file: UTF-8 text, one class name per line.  Leading and trailing
// white space (and a CR) are removed, empty lines are skipped, and a line
// whose first non-blank character is '#' is a comment (so a class name
// cannot start with '#').  Invalid UTF-8 and duplicate names are errors
// naming the file and line; a file without any class name is an error.
// The template must contain "{}" exactly once; it is replaced by the name.
//
// Output (stdout), per embedded image: its path, then the top classes, one
// per line, as "<rank> <probability> <class name>":
//
//   tests/fixtures/images/rgb8.png
//     1 0.613104 golden retriever
//     2 0.120447 dog
//
// With --out, a safetensors file holds probs [N, K], logits [N, K],
// image_embeds [N, E], text_embeds [K, E], image_index I64 [N], and the
// metadata classes (JSON list), template, logit_scale, image_paths,
// image_skipped.  Bad images: as `mclip embed` (stop, or --skip-bad).
//
// Exit status: 0 ok, 1 a file or model problem, 2 a usage error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../coop/cli.h"
#include "../tensor/gemm.h"
#include "cli_common.h"
#include "json.h"
#include "safetensors.h"

#define PROG "mclip zeroshot"

typedef struct {
    const char *model, *model_name, *classes, *out;
    const char *tmpl;         // --template
    int top;                  // --top
    int batch, threads, no_fuse, skip_bad;
    DsPrepOrder order;
    CliList images;           // --image paths and --image-list markers
} ZsArgs;

static void usage(FILE *f) {
    fprintf(f,
        "usage: mclip zeroshot --model FILE --classes FILE (--image PATH... | --image-list F)\n"
        "                      [--template T] [--top K] [--out OUT.safetensors] [--skip-bad]\n"
        "                      [--preprocess openclip|paper] [--no-fuse] [--model-name NAME]\n"
        "                      [--batch N] [--threads N]\n"
        "\n"
        "  --model FILE       open_clip MobileCLIP2 checkpoint (.safetensors or .pt)\n"
        "  --classes FILE     class names, one per line (UTF-8; '#' starts a comment line)\n"
        "  --image PATH...    images to classify; --image-list F: one path per line\n"
        "  --template T       prompt with {} for the class (default \"a photo of a {}.\")\n"
        "  --top K            classes printed per image (default 5)\n"
        "  --out FILE         also write probs, logits and embeddings (safetensors)\n"
        "  --skip-bad         report unreadable images and go on without them\n"
        "  --preprocess ORDER openclip (default) or paper (convert to RGB first)\n"
        "  --no-fuse          run the image tower unfused (training form)\n"
        "  --model-name NAME  MobileCLIP2-S0, ... (default: detect)\n"
        "  --batch N          texts or images per forward pass (default 32)\n"
        "  --threads N        threads (default: all)\n");
}

// 0 ok, 2 usage error (message printed).
static int parse_args(int argc, char **argv, ZsArgs *a) {
    a->tmpl = "a photo of a {}.";
    a->top = 5;
    a->batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(f, "--image")) {
            if (!cli_list_take_args(&a->images, argc, argv, &i)) {
                fprintf(stderr, PROG ": --image needs at least one path\n");
                return 2;
            }
        } else if (!strcmp(f, "--no-fuse")) {
            a->no_fuse = 1;
        } else if (!strcmp(f, "--skip-bad")) {
            a->skip_bad = 1;
        } else if (i + 1 >= argc) {
            fprintf(stderr, PROG ": %s: unknown option or missing value\n", f);
            usage(stderr);
            return 2;
        } else if (!strcmp(f, "--model")) {
            a->model = argv[++i];
        } else if (!strcmp(f, "--model-name")) {
            a->model_name = argv[++i];
        } else if (!strcmp(f, "--classes")) {
            a->classes = argv[++i];
        } else if (!strcmp(f, "--out")) {
            a->out = argv[++i];
        } else if (!strcmp(f, "--template")) {
            a->tmpl = argv[++i];
        } else if (!strcmp(f, "--image-list")) {
            cli_list_add_file(&a->images, argv[++i]);
        } else if (!strcmp(f, "--preprocess")) {
            if (ds_prep_order_parse(argv[++i], &a->order)) {
                fprintf(stderr, PROG ": --preprocess wants openclip or paper, got '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (!strcmp(f, "--top")) {
            if ((a->top = cli_int_arg(PROG, f, argv[++i], 1, 1000000)) < 0) return 2;
        } else if (!strcmp(f, "--batch")) {
            if ((a->batch = cli_int_arg(PROG, f, argv[++i], 1, 4096)) < 0) return 2;
        } else if (!strcmp(f, "--threads")) {
            if ((a->threads = cli_int_arg(PROG, f, argv[++i], 1, 1024)) < 0) return 2;
        } else {
            fprintf(stderr, PROG ": unknown option '%s'\n", f);
            usage(stderr);
            return 2;
        }
    }
    const char *missing = !a->model ? "--model" : !a->classes ? "--classes"
                        : !a->images.n ? "--image or --image-list" : NULL;
    if (missing) {
        fprintf(stderr, PROG ": %s is required\n", missing);
        usage(stderr);
        return 2;
    }
    // The template: exactly one "{}".
    const char *p = strstr(a->tmpl, "{}");
    if (!p || strstr(p + 2, "{}")) {
        fprintf(stderr, PROG ": --template must contain {} exactly once, got \"%s\"\n", a->tmpl);
        return 2;
    }
    return 0;
}

// ---- inputs ----

// Read the class names (rules in the header).  0, or 1 with a message.
static int read_classes(const char *path, CliList *names) {
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, PROG ": cannot open classes file %s: ", path);
        perror(NULL);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    int *where = NULL;   // line number of each name, for duplicate messages
    while (!rc && (len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        // Trim white space at both ends; skip empty and comment lines.
        char *s = line, *e = line + len;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
        *e = 0;
        if (s == e || *s == '#') continue;
        if (json_utf8_prefix(s, (size_t)(e - s)) != (size_t)(e - s) || memchr(s, 0, e - s)) {
            fprintf(stderr, PROG ": %s line %d: not valid UTF-8 text\n", path, lineno);
            rc = 1;
            break;
        }
        for (int k = 0; k < names->n; k++)
            if (!strcmp(names->v[k], s)) {
                fprintf(stderr, PROG ": %s line %d: class \"%s\" already given on line %d\n",
                        path, lineno, s, where[k]);
                rc = 1;
            }
        if (rc) break;
        cli_list_add(names, s);
        where = realloc(where, (size_t)names->n * sizeof *where);
        MC_CHECK(where != NULL, "out of memory");
        where[names->n - 1] = lineno;
    }
    if (!rc && ferror(fp)) {
        fprintf(stderr, PROG ": %s: read error\n", path);
        rc = 1;
    }
    if (!rc && names->n == 0) {
        fprintf(stderr, PROG ": %s has no class names (one per line; '#' lines are comments)\n",
                path);
        rc = 1;
    }
    free(where);
    free(line);
    fclose(fp);
    return rc;
}

// Replace --image-list entries by the files' lines.  0, or 1.
static int expand_images(CliList *l) {
    if (cli_list_expand(l, PROG, "image list")) return 1;
    if (!l->n) {
        fprintf(stderr, PROG ": the image lists are empty\n");
        return 1;
    }
    return 0;
}

// prompts[k] = template with {} replaced by class k.
static void make_prompts(const char *tmpl, const CliList *classes, CliList *prompts) {
    const char *p = strstr(tmpl, "{}");
    for (int k = 0; k < classes->n; k++) {
        size_t n = strlen(tmpl) + strlen(classes->v[k]) + 1;
        char *s = mc_malloc(n);
        snprintf(s, n, "%.*s%s%s", (int)(p - tmpl), tmpl, classes->v[k], p + 2);
        cli_list_add(prompts, s);
        mc_free(s);
    }
}

// ---- scoring ----

// logits [N, K] = scale * img [N, E] @ txt [K, E]^T and probs [N, K] =
// softmax over K (max subtracted, summed in double).
static void score(const float *img, const float *txt, int N, int K, int E, double scale,
                  float *logits, float *probs) {
    for (int n = 0; n < N; n++) {
        const float *img_n = img + (size_t)n * E;
        float *l_n = logits + (size_t)n * K, *p_n = probs + (size_t)n * K;
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < K; k++) {
            const float *txt_k = txt + (size_t)k * E;
            double dot = 0;
            for (int e = 0; e < E; e++) dot += (double)img_n[e] * txt_k[e];
            l_n[k] = (float)(scale * dot);
            if (l_n[k] > mx) mx = l_n[k];
        }
        for (int k = 0; k < K; k++) sum += exp(l_n[k] - mx);
        for (int k = 0; k < K; k++) p_n[k] = (float)(exp(l_n[k] - mx) / sum);
    }
}

// Print the top classes of each image (ties: the earlier class first).
static void print_top(const ZsArgs *a, const CliList *classes, const int *kept, int N,
                      const float *probs) {
    int K = classes->n, top = a->top < K ? a->top : K;
    int *order = mc_malloc((size_t)K * sizeof *order);
    for (int n = 0; n < N; n++) {
        const float *p_n = probs + (size_t)n * K;
        // Partial selection sort: top entries by probability.
        for (int k = 0; k < K; k++) order[k] = k;
        for (int r = 0; r < top; r++) {
            int best = r;
            for (int k = r + 1; k < K; k++)
                if (p_n[order[k]] > p_n[order[best]]) best = k;
            int t = order[r];
            order[r] = order[best];
            order[best] = t;
        }
        printf("%s\n", a->images.v[kept[n]]);
        for (int r = 0; r < top; r++)
            printf("  %d %.6f %s\n", r + 1, p_n[order[r]], classes->v[order[r]]);
    }
    mc_free(order);
}

// JSON list of strings (heap).
static char *json_list(char *const *v, int n) {
    size_t cap = 16, len = 1;
    for (int i = 0; i < n; i++) cap += 8 + 6 * strlen(v[i]);
    char *s = mc_malloc(cap);
    strcpy(s, "[");
    for (int i = 0; i < n; i++) {
        if (i) s[len++] = ',';
        len += json_quote(s + len, cap - len, v[i]);
    }
    snprintf(s + len, cap - len, "]");
    return s;
}

static int write_out(const ZsArgs *a, const McModel *m, const CliList *classes, int N,
                     const int *kept, const float *img, const float *txt, const float *logits,
                     const float *probs, double ls) {
    int64_t K = classes->n, E = m->cfg.image.embed;
    StWriter *w = st_writer_new();
    int64_t *index = mc_malloc((size_t)N * sizeof *index);
    for (int i = 0; i < N; i++) index[i] = kept[i];

    // Kept and skipped paths.
    CliList used = {0}, skipped = {0};
    for (int i = 0, k = 0; i < a->images.n; i++) {
        int is_kept = k < N && kept[k] == i;
        k += is_kept;
        cli_list_add(is_kept ? &used : &skipped, a->images.v[i]);
    }
    char *jc = json_list(classes->v, classes->n), *ju = json_list(used.v, used.n);
    char *js = json_list(skipped.v, skipped.n), lsbuf[64];
    snprintf(lsbuf, sizeof lsbuf, "%.9g", ls);

    st_writer_add_f32(w, "probs", MC_DIMS(N, K), probs);
    st_writer_add_f32(w, "logits", MC_DIMS(N, K), logits);
    st_writer_add_f32(w, "image_embeds", MC_DIMS(N, E), img);
    st_writer_add_f32(w, "text_embeds", MC_DIMS(K, E), txt);
    st_writer_add_i64(w, "image_index", MC_DIMS(N), index);
    st_writer_meta(w, "classes", jc);
    st_writer_meta(w, "template", a->tmpl);
    st_writer_meta(w, "logit_scale", lsbuf);
    st_writer_meta(w, "image_paths", ju);
    st_writer_meta(w, "image_skipped", js);
    st_writer_meta(w, "preprocess", ds_prep_order_name(a->order));
    st_writer_meta(w, "model", m->name);
    st_writer_meta(w, "model_file", a->model);
    McErr err;
    int rc = st_writer_save(w, a->out, &err);
    if (rc) fprintf(stderr, PROG ": %s\n", err.msg);
    st_writer_free(w);
    mc_free(index);
    mc_free(jc);
    mc_free(ju);
    mc_free(js);
    cli_list_free(&used);
    cli_list_free(&skipped);
    return rc ? 1 : 0;
}

// ---- the command ----

int cli_zeroshot(int argc, char **argv) {
    ZsArgs a = {0};
    CliList classes = {0}, prompts = {0};
    McModel *m = NULL;
    int32_t *ids = NULL;
    float *traw = NULL, *txt = NULL, *iraw = NULL, *img = NULL, *logits = NULL, *probs = NULL;
    int *kept = NULL;
    int rc = parse_args(argc, argv, &a);
    if (rc) goto done;

    // Inputs before the model: classes, image lists.
    if ((rc = read_classes(a.classes, &classes)) || (rc = expand_images(&a.images))) goto done;
    make_prompts(a.tmpl, &classes, &prompts);
    if (a.threads) mc_set_threads(a.threads);

    // Model with an image tower and a logit scale.
    McErr err;
    double t0 = mc_time();
    m = cli_model_load(a.model, a.model_name, !a.no_fuse, &err);
    if (!m) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (!m->image || m->cfg.image.embed != m->text.cfg.embed) {
        fprintf(stderr, PROG ": %s: %s\n", a.model, !m->image ? "no image tower"
                : "image and text embedding widths differ");
        rc = 1;
        goto done;
    }
    double ls = m->logit_scale->data[0], scale = exp(ls);
    int K = classes.n, N = a.images.n, T = m->text.cfg.context, E = m->cfg.image.embed;
    fprintf(stderr, PROG ": %s (%s) from %s, loaded in %.2f s; %d classes, %d images, "
            "template \"%s\", logit scale exp(%.4f) = %.3f, preprocess %s, %s, threads %d, "
            "BLAS %s\n", m->name, m->how, a.model, mc_time() - t0, K, N, a.tmpl, ls, scale,
            ds_prep_order_name(a.order), image_tower_fused(m->image) ? "fused" : "unfused",
            mc_threads(), mc_blas_enabled() ? "on" : "off");

    // Class prompts -> normalised text embeddings [K, E].
    ids = mc_malloc((size_t)K * T * sizeof *ids);
    traw = mc_malloc((size_t)K * E * sizeof *traw);
    txt = mc_malloc((size_t)K * E * sizeof *txt);
    if ((rc = cli_text_ids(PROG, prompts.v, K, T, ids)) ||
        (rc = cli_embed_texts(PROG, m, ids, K, a.batch, NULL, traw, txt)))
        goto done;

    // Images -> normalised image embeddings [N', E].
    DsPrepConfig pc;
    cli_prep_config(&pc, m, a.order);
    iraw = mc_malloc((size_t)N * E * sizeof *iraw);
    img = mc_malloc((size_t)N * E * sizeof *img);
    kept = mc_malloc((size_t)N * sizeof *kept);
    CliImageOpts o = {.prog = PROG, .batch = a.batch, .skip_bad = a.skip_bad};
    int nk;
    if ((rc = cli_embed_images(m, &pc, (const char *const *)a.images.v, N, &o, iraw, img, kept,
                               &nk)))
        goto done;

    // Scores, the table, the optional file.
    logits = mc_malloc((size_t)nk * K * sizeof *logits);
    probs = mc_malloc((size_t)nk * K * sizeof *probs);
    score(img, txt, nk, K, E, scale, logits, probs);
    if (a.out && (rc = write_out(&a, m, &classes, nk, kept, img, txt, logits, probs, ls)))
        goto done;
    print_top(&a, &classes, kept, nk, probs);

done:
    mc_free(ids);
    mc_free(traw);
    mc_free(txt);
    mc_free(iraw);
    mc_free(img);
    mc_free(kept);
    mc_free(logits);
    mc_free(probs);
    mc_model_free(m);
    cli_list_free(&classes);
    cli_list_free(&prompts);
    cli_list_free(&a.images);
    return rc;
}
