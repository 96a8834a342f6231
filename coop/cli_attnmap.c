// cli_attnmap.c - `mclip attnmap`: the attention map of one head of one
// attention layer, drawn over the input image (coop/attnmap.h).
//
//   mclip attnmap --model FILE --image PATH --layer stage.3.block.1 --head 14
//                 [--vprompt FILE] --out map.png [--alpha 0.7] [--map-csv F]
//
// The image goes through the model's eval preprocessing (resize, center
// crop); the PNG shows that crop (with the visual prompt added when one is
// given, in display range) under the jet-coloured map.  FastViT layers are
// stage.K.block.J (S0/S2: stage 3 holds the attention blocks), ViT layers
// block.J.  Exit status: 0 ok, 1 a runtime error, 2 a usage error.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/preprocess.h"
#include "../mobileclip/cli_common.h"
#include "../mobileclip/model.h"
#include "attnmap.h"
#include "cli.h"
#include "randmodel.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: mclip attnmap --model FILE --image PATH --layer NAME --head H --out MAP.png\n"
        "                     [--vprompt FILE] [--alpha 0.7] [--map-csv FILE] [--no-fuse]\n"
        "  --layer   stage.K.block.J (FastViT, e.g. stage.3.block.1 for S0) or block.J (ViT)\n"
        "  --head    head index (S0 stage 3: 0..15)\n"
        "  --map-csv the S x S map in [0, 1] as CSV (one image row per line)\n"
        "The paper's rule: softmax(q k^T scale) of the head, mean over queries, min-max,\n"
        "bilinear to the input size, jet overlay with alpha 0.7.\n");
}

int cli_attnmap(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *layer = NULL, *out = NULL, *vprompt = NULL;
    const char *csv = NULL;
    int head = -1, no_fuse = 0;
    double alpha = COOP_ATTN_ALPHA;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return usage(stdout), 0;
        if (!strcmp(o, "--no-fuse")) { no_fuse = 1; continue; }
        if (!v) {
            fprintf(stderr, "mclip attnmap: %s needs a value\n", o);
            return usage(stderr), 2;
        }
        i++;
        if (!strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--image")) image = v;
        else if (!strcmp(o, "--layer")) layer = v;
        else if (!strcmp(o, "--out")) out = v;
        else if (!strcmp(o, "--vprompt")) vprompt = v;
        else if (!strcmp(o, "--map-csv")) csv = v;
        else if (!strcmp(o, "--head")) head = atoi(v);
        else if (!strcmp(o, "--alpha")) alpha = atof(v);
        else {
            fprintf(stderr, "mclip attnmap: unknown option %s\n", o);
            return usage(stderr), 2;
        }
    }
    if (!model || !image || !layer || !out || head < 0 || !(alpha >= 0 && alpha <= 1)) {
        fprintf(stderr, "mclip attnmap: need --model, --image, --layer, --head >= 0, --out "
                "(alpha in [0, 1])\n");
        return usage(stderr), 2;
    }
    McErr err;
    int rc = 1, stage, block, G = 0, random = coop_randmodel_is_random(model);
    float *x = NULL, *map = NULL;
    uint8_t *img = NULL, *rgb = NULL;
    CoopVPrompt vp = {0};
    McModel *m = cli_model_load(model, NULL, !no_fuse, &err);
    if (!m) goto fail;
    if (!m->image) {
        mc_err(&err, "%s has no image tower", model);
        goto fail;
    }
    if (coop_attn_parse_layer(m->image, layer, &stage, &block, &err)) goto fail;
    if (vprompt) {
        CoopVPromptFile f;
        if (coop_vp_load(vprompt, &f, &err)) goto fail;
        int bad = coop_vp_file_check(&f, m->name, m->cfg.image.image_size, &err) ||
                  coop_vp_file_prompt(&f, &vp, &err);
        coop_vp_file_free(&f);
        if (bad) goto fail;
    }

    // The preprocessed image and the map.
    const McImageConfig *ic = &m->cfg.image;
    int S = ic->image_size;
    DsPrepConfig pc;
    cli_prep_config(&pc, m, DS_PREP_PAPER);
    x = mc_malloc((size_t)3 * S * S * sizeof *x);
    map = mc_malloc((size_t)S * S * sizeof *map);
    if (ds_prep_file(x, image, &pc, &err)) goto fail;
    if (coop_attnmap(m->image, x, vprompt ? &vp : NULL, stage, block, head, map, &G, &err))
        goto fail;

    // Overlay over the (prompted) crop, in display range.
    if (vprompt) coop_vp_add(S, vp.border, vp.theta->data, x, 1);
    img = mc_malloc((size_t)S * S * 3);
    rgb = mc_malloc((size_t)S * S * 3);
    coop_attn_display(x, S, ic->mean, ic->std, img);
    coop_attn_overlay(map, img, S, alpha, rgb);
    if (coop_write_png(out, S, S, rgb, &err)) goto fail;
    if (csv) {
        FILE *f = fopen(csv, "w");
        if (!f) {
            mc_err(&err, "cannot write %s", csv);
            goto fail;
        }
        for (int y = 0; y < S; y++)
            for (int xx = 0; xx < S; xx++)
                fprintf(f, "%.6f%c", map[y * S + xx], xx + 1 < S ? ',' : '\n');
        if (fclose(f)) {
            mc_err(&err, "error writing %s", csv);
            goto fail;
        }
    }
    printf("{\"command\": \"attnmap\", \"model\": \"%s\", \"random_weights\": %s, "
           "\"layer\": \"%s\", \"stage\": %d, \"block\": %d, \"head\": %d, \"grid\": %d, "
           "\"vprompt\": \"%s\", \"out\": \"%s\"}\n", m->name, random ? "true" : "false", layer,
           stage, block, head, G, vprompt ? vprompt : "", out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip attnmap: %s\n", err.msg);
done:
    mc_free(x), mc_free(map), mc_free(img), mc_free(rgb);
    coop_vp_free(&vp);
    mc_model_free(m);
    return rc;
}
