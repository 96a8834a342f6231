// cli_data.c - `mclip data`: inspect a dataset folder or file, or generate
// the procedural test dataset.
//
//   mclip data PATH [--dataset NAME] [--layout native|coop|imagefolder|tsv]
//                   [--names coop|paper] [--classnames FILE] [--partition N]
//                   [--check]
//       prints the detected layout, the classes, the split sizes and any
//       missing or (with --check) undecodable image files
//   mclip data gen OUT_DIR [--classes N] [--per-class M] [--size S] [--seed X]
//       writes datasets/gen_dataset.h's layouts under OUT_DIR
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../coop/cli.h"
#include "dataset.h"
#include "gen_dataset.h"
#include "image.h"

#define MAX_BAD_SHOWN 20

static void usage(FILE *f) {
    fprintf(f,
            "usage: mclip data PATH [--dataset NAME] [--layout native|coop|imagefolder|tsv]\n"
            "                       [--names coop|paper] [--classnames FILE] [--partition N]\n"
            "                       [--check]\n"
            "       mclip data gen OUT_DIR [--classes N] [--per-class M] [--size S] [--seed X]\n"
            "\n"
            "  PATH is a dataset folder (layout detected; --dataset flowers102, dtd,\n"
            "  caltech101, sun397, flickr30k or eurosat names the preset), a TSV\n"
            "  manifest, a CoOp split_zhou_*.json, a Karpathy JSON or a .token file.\n"
            "  --check decodes every image header (format by magic bytes).\n");
}

// Parse a bounded integer flag value; -1 on error (message printed).
static int int_arg(const char *flag, const char *v, long lo, long hi, long *out) {
    char *e;
    long x = v ? strtol(v, &e, 10) : 0;
    if (!v || !*v || *e || x < lo || x > hi) {
        fprintf(stderr, "mclip data: %s expects an integer in %ld..%ld, got '%s'\n", flag, lo,
                hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static int cmd_gen(int argc, char **argv) {
    GenOptions g = gen_defaults();
    const char *out = NULL;
    for (int i = 2; i < argc; i++) {
        long v;
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--classes")) {
            if (int_arg(a, next, 2, GEN_MAX_CLASSES, &v)) return 2;
            g.classes = (int)v, i++;
        } else if (!strcmp(a, "--per-class")) {
            if (int_arg(a, next, 5, 1000, &v)) return 2;
            g.per_class = (int)v, i++;
        } else if (!strcmp(a, "--size")) {
            if (int_arg(a, next, 8, 1024, &v)) return 2;
            g.size = (int)v, i++;
        } else if (!strcmp(a, "--seed")) {
            if (int_arg(a, next, 0, 2147483647L, &v)) return 2;
            g.seed = (uint64_t)v, i++;
        } else if (a[0] == '-' || out) {
            fprintf(stderr, "mclip data gen: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            out = a;
        }
    }
    if (!out) {
        usage(stderr);
        return 2;
    }
    fprintf(stderr, "mclip data gen: %d classes x %d images, %d px, seed %llu -> %s\n",
            g.classes, g.per_class, g.size, (unsigned long long)g.seed, out);
    McErr err;
    if (gen_dataset(out, &g, &err)) {
        fprintf(stderr, "mclip data gen: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", out);
    return 0;
}

// Check one image file: present, and (check) its header decodes.
static int check_file(const char *path, int check, char *why, size_t len) {
    if (!check) {
        if (ds_is_file(path)) return 0;
        snprintf(why, len, "%s: missing", path);
        return -1;
    }
    char *bytes;
    size_t n;
    McErr err;
    if (ds_read_file(path, (size_t)DS_IMAGE_MAX_FILE_BYTES, &bytes, &n, &err)) {
        snprintf(why, len, "%s", err.msg);
        return -1;
    }
    DsImageInfo info;
    int rc = ds_image_probe(bytes, n, path, NULL, &info, &err);
    free(bytes);
    if (rc) snprintf(why, len, "%s", err.msg);
    return rc;
}

static int report_bad(int64_t *bad, const char *path, int check) {
    char why[MC_ERRLEN + 64];
    if (!check_file(path, check, why, sizeof why)) return 0;
    if (*bad < MAX_BAD_SHOWN) printf("bad        %s\n", why);
    (*bad)++;
    return 1;
}

static int show_dataset(const Dataset *ds, int check) {
    printf("layout     %s\n", ds->layout);
    printf("dataset    %s\n", ds->name);
    printf("source     %s\n", ds->source);
    printf("root       %s\n", ds->root);
    printf("classes    %d (names: %s)\n", ds->n_classes, ds->names_source);
    printf("items      %lld: train %lld, val %lld, test %lld, unsplit %lld\n",
           (long long)ds->n_items, (long long)ds_count_split(ds, DS_TRAIN),
           (long long)ds_count_split(ds, DS_VAL), (long long)ds_count_split(ds, DS_TEST),
           (long long)ds_count_split(ds, DS_NONE));

    // Per-class counts: range over classes, then the first few classes.
    int64_t *counts = calloc((size_t)ds->n_classes, sizeof *counts);
    ds_class_counts(ds, -1, counts);
    int64_t lo = INT64_MAX, hi = 0;
    for (int c = 0; c < ds->n_classes; c++) {
        lo = counts[c] < lo ? counts[c] : lo;
        hi = counts[c] > hi ? counts[c] : hi;
    }
    printf("per class  %lld..%lld images\n", (long long)lo, (long long)hi);
    for (int c = 0; c < ds->n_classes && c < 10; c++)
        printf("  %4d  %-6lld '%s'\n", c, (long long)counts[c], ds->classes[c]);
    if (ds->n_classes > 10) printf("  ... (%d more)\n", ds->n_classes - 10);
    free(counts);

    // Files: present (and decodable with --check).
    int64_t bad = 0;
    for (int64_t i = 0; i < ds->n_items; i++) report_bad(&bad, ds->items[i].path, check);
    printf("bad files  %lld%s\n", (long long)bad, check ? " (headers decoded)" : " (missing)");
    return bad ? 1 : 0;
}

static int show_captions(const CaptionSet *cs, int check) {
    printf("layout     %s\n", cs->layout);
    printf("source     %s\n", cs->source);
    printf("root       %s\n", cs->root);
    printf("images     %d: train %d, val %d, test %d, unsplit %d\n", cs->n_images,
           cs_count_split(cs, DS_TRAIN), cs_count_split(cs, DS_VAL), cs_count_split(cs, DS_TEST),
           cs_count_split(cs, DS_NONE));
    printf("captions   %d\n", cs->n_captions);
    for (int i = 0; i < cs->n_images && i < 2; i++)
        for (int k = 0; k < cs->images[i].n && k < 2; k++)
            printf("  %s: %s\n", cs->images[i].rel, cs->captions[cs->images[i].first + k]);
    int64_t bad = 0;
    for (int i = 0; i < cs->n_images; i++) report_bad(&bad, cs->images[i].path, check);
    printf("bad files  %lld%s\n", (long long)bad, check ? " (headers decoded)" : " (missing)");
    return bad ? 1 : 0;
}

int cli_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "gen")) return cmd_gen(argc, argv);

    // Options for inspection.
    DsOptions opt = {0};
    const char *path = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        if (!strcmp(a, "--check")) {
            check = 1;
        } else if (next && !strcmp(a, "--dataset")) {
            opt.dataset = next, i++;
        } else if (next && !strcmp(a, "--layout")) {
            opt.layout = next, i++;
        } else if (next && !strcmp(a, "--names")) {
            opt.names_form = next, i++;
        } else if (next && !strcmp(a, "--classnames")) {
            opt.classnames = next, i++;
        } else if (!strcmp(a, "--partition")) {
            if (int_arg(a, next, 1, 10, &v)) return 2;
            opt.partition = (int)v, i++;
        } else if (a[0] == '-' || path) {
            fprintf(stderr, "mclip data: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    if (opt.names_form && strcmp(opt.names_form, "coop") && strcmp(opt.names_form, "paper")) {
        fprintf(stderr, "mclip data: --names expects coop or paper, got '%s'\n", opt.names_form);
        return 2;
    }

    // Detect, load, show.
    McErr err;
    DsSource src;
    if (ds_detect(path, &opt, &src, &err)) {
        fprintf(stderr, "mclip data: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "mclip data: %s detected at %s\n", ds_layout_name(src.layout),
            src.file[0] ? src.file : src.root);
    if (ds_layout_is_captions(src.layout)) {
        CaptionSet *cs = cs_load_source(&src, &opt, &err);
        if (!cs) {
            fprintf(stderr, "mclip data: %s\n", err.msg);
            return 1;
        }
        int rc = show_captions(cs, check);
        cs_free(cs);
        return rc;
    }
    Dataset *ds = ds_load_source(&src, &opt, &err);
    if (!ds) {
        fprintf(stderr, "mclip data: %s\n", err.msg);
        return 1;
    }
    int rc = show_dataset(ds, check);
    ds_free(ds);
    return rc;
}
