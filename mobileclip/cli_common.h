// cli_common.h - the image side shared by `mclip embed` and `mclip zeroshot`:
// loading a model with its image tower, the tower's preprocessing, image
// lists, and batched image embedding with per-file error handling; also the
// small pieces of argument handling and the tokenizer the commands share.
//
// Dims: N images, S input side, E embedding width.
//
// Reduced test models.  A checkpoint whose image tower is not one of the
// six variants (model.h calls it "custom" and loads only its text tower)
// gets its image tower from the safetensors metadata key "image_config",
// the JSON object the reference generators write (tests/reference/
// gen_image.py fastvit_config / vit_config): kind ("fastvit", "vit_b_mci"
// or "vit_l14"), image_size, embed and the trunk fields of McFastVitConfig
// or McVitConfig under the same names, plus optional preprocessing fields
// interp ("bilinear" or "bicubic"), mean [3] and std [3] (default:
// bilinear, mean 0, std 1, as MobileCLIP2-S0).
//
// Usage sketch (compiled by tests/test_e2e.c):
//
//     McErr err;
//     McModel *m = cli_model_load("model.safetensors", NULL, 1, &err);
//     if (!m || !m->image) ...;
//     DsPrepConfig pc;
//     cli_prep_config(&pc, m, DS_PREP_OPENCLIP);
//     const char *paths[2] = {"a.png", "b.jpg"};
//     float raw[2 * 512], emb[2 * 512];
//     int kept[2], n_kept;
//     CliImageOpts o = {.prog = "mclip embed", .batch = 8, .skip_bad = 1};
//     if (cli_embed_images(m, &pc, paths, 2, &o, raw, emb, kept, &n_kept)) ...;
#ifndef MCLIP_CLI_COMMON_H
#define MCLIP_CLI_COMMON_H

#include "../datasets/preprocess.h"
#include "model.h"
#include "tokenizer.h"

// mc_model_load_fuse, plus the "image_config" tower of a reduced custom
// model (see above).  NULL with err set on any problem.
McModel *cli_model_load(const char *path, const char *name, int fuse, McErr *err);

// Preprocessing of m's image tower: size, filter, mean and std from
// m->cfg.image, the given conversion order, default decoder limits.
void cli_prep_config(DsPrepConfig *pc, const McModel *m, DsPrepOrder order);

// A growable list of owned strings.
typedef struct CliList {
    char **v;    // [n] NUL-terminated, owned
    int n, cap;
} CliList;

void cli_list_add(CliList *l, const char *s);
void cli_list_free(CliList *l);

// Append the non-empty lines of a list file (one path per line, a trailing
// CR removed; paths are taken as written, relative to the current
// directory).  0, or -1 with err naming the file.
int cli_list_read_lines(CliList *l, const char *path, McErr *err);

// Append argv[*i + 1 ..] up to the next argument starting with "--" to l,
// advancing *i past them; returns how many were taken.
int cli_list_take_args(CliList *l, int argc, char **argv, int *i);

// Append an entry that stands for the lines of the list file at path, read
// later by cli_list_expand (so that single items and list files keep their
// command-line order, and no file is read before the arguments parse).
void cli_list_add_file(CliList *l, const char *path);

// Replace the list-file entries of l by their files' lines
// (cli_list_read_lines).  0, or 1 after "<prog>: <what> file: <reason>" on
// stderr, l unchanged.
int cli_list_expand(CliList *l, const char *prog, const char *what);

// Integer value v of option flag in [lo, hi], or -1 after "<prog>: <flag>
// wants an integer in [lo, hi], got 'v'" on stderr.
int cli_int_arg(const char *prog, const char *flag, const char *v, int lo, int hi);

// The tokenizer of the vocabulary tok_find_vocab finds; NULL with err set.
Tokenizer *cli_tokenizer_load(McErr *err);

typedef struct CliImageOpts {
    const char *prog;   // message prefix, "mclip embed"
    int batch;          // images per forward pass (>= 1)
    int skip_bad;       // 1: report bad files and go on; 0: stop at the first
    McDumpFn dump;      // activation hook (image_tower.h names), or NULL
    void *dump_ctx;
} CliImageOpts;

// Tokenize n texts into ids [n, T] with open_clip's tokenizer (T must be
// TOK_CONTEXT; longer texts are cut, with a note).  0, or 1 after a message
// prefixed by prog.
int cli_text_ids(const char *prog, char *const *texts, int n, int T, int32_t *ids);

// Text tower over ids [n, T] in batches: raw [n, E] (encode_text) and emb
// [n, E] (L2-normalised).  dump may be NULL.  0, or 1 after a message.
int cli_embed_texts(const char *prog, McModel *m, const int32_t *ids, int n, int batch,
                    const McDump *dump, float *raw, float *emb);

// Embed n image files with m's image tower: rows r = 0 .. *n_kept - 1 of
// raw [n, E] (encode_image) and emb [n, E] (L2-normalised, eps 1e-12) hold
// the images kept[r] (input order).  A bad file is reported on stderr with
// the reason naming it; without skip_bad it ends the run (return 1, the
// outputs unusable), with skip_bad it is left out.  Also returns 1 when no
// image could be embedded.  Dumps see only the kept images, in row order.
int cli_embed_images(McModel *m, const DsPrepConfig *pc, const char *const *paths, int n,
                     const CliImageOpts *o, float *raw, float *emb, int *kept, int *n_kept);

// Valid image dump name for m's tower (image_tower.h lists them).
int  cli_image_dump_ok(const McModel *m, const char *name);
// The names, for a usage message: "image.input, image.stem, ...".
void cli_image_dump_names(const McModel *m, char *buf, size_t len);

#endif
