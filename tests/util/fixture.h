// fixture.h - reading the reference fixtures (safetensors files written by
// tests/reference/gen_*.py) in the test programs.
//
// Every reader records a failed CHECK naming the file and the tensor or key
// when something is missing or malformed, and then returns NULL (or leaves
// the output alone), so that a test skips the comparison that needed it and
// still fails.  Arrays are heap memory from mc_malloc: mc_free (or free)
// releases them.
//
//     StFile *f = st_open("tests/fixtures/coop_ref.safetensors", &err);
//     int64_t n;
//     float *want = fx_f32(f, "ref.loss", &n);
//     if (want) ... compare ...;
//     mc_free(want);
#ifndef MCLIP_TEST_FIXTURE_H
#define MCLIP_TEST_FIXTURE_H

#include <stdint.h>

#include "../../mobileclip/image_tower.h"
#include "../../mobileclip/json.h"
#include "../../mobileclip/model.h"
#include "../../mobileclip/safetensors.h"

// ---- tensors and metadata ----

// Tensor name as float [*n], int64 [*n] or int32 [*n] (n may be NULL).
float   *fx_f32(const StFile *f, const char *name, int64_t *n);
int64_t *fx_i64(const StFile *f, const char *name, int64_t *n);
int32_t *fx_i32(const StFile *f, const char *name, int64_t *n);

// Metadata key parsed as JSON (json_free it), or NULL.
JsonDoc *fx_meta_json(const StFile *f, const char *key);

// Integer member key of object o (0 when absent); up to max integers of the
// array member key into out.
int  fx_json_int(const JsonValue *o, const char *key);
void fx_json_ints(const JsonValue *o, const char *key, int *out, int max);

// ---- image towers ----

// The image tower configuration the generators read back from timm (the
// "image_config" object: kind, image_size, embed and the trunk's fields).
void fx_image_config(McImageConfig *cfg, const JsonValue *o);

// Load the tower of cfg from the expanded weights file; every visual.* key
// must be used.  label names the fixture in messages.  NULL after a failed
// CHECK.
ImageTower *fx_image_tower(const char *weights, const char *label, const McImageConfig *cfg,
                           int fuse);

// ---- visual prompt fixtures ----

// The four pieces <prefix>pad_up, pad_down, pad_left, pad_right,
// concatenated: the prompt's P values (coop/vprompt.h order).
float *fx_vp_pieces(const StFile *f, const char *prefix, int64_t P);

// tests/fixtures/vp_ref_<name>.safetensors (tests/reference/gen_vp.py): the
// reduced tower's config, its images, the prompt and an expanded weights
// file.
typedef struct {
    char path[256], weights[512];   // the fixture; its expanded weights file
    StFile *st;
    JsonDoc *info;                  // metadata "case" (json_root: the object)
    McImageConfig cfg;
    int border;                     // the prompt's border (case.border)
    int64_t N;                      // images in the recipe
    float *x;                       // [N, 3, S, S] the images (recipe input.image)
    float *theta;                   // [P] the prompt (input.pad_*)
} FxVpCase;

// Open the case; tag goes into the weights file's name.  0, or -1 after a
// failed CHECK; fx_vp_close in both cases.
int  fx_vp_open(FxVpCase *c, const char *name, const char *tag);
void fx_vp_close(FxVpCase *c);

// ---- the CoOp reference (tests/fixtures/coop_ref.safetensors) ----

// gen_coop.py's real open_clip text tower, loaded from the expanded
// recipes, with the fixture's image features and labels.
typedef struct {
    const char *path;
    StFile *f;
    McModel *m;                 // the text tower (E = m->text.cfg.embed)
    JsonDoc *cases;             // metadata "cases" (json_root: an array)
    double scale, lambda;       // logit scale, multitask weight
    int64_t N, B;               // images, caption pairs
    float *img, *imgc;          // [N, E], [B, E] L2-normalised image features
    int32_t *labels;            // [N]
} FxCoopRef;

// 0, or -1 after a failed CHECK; fx_coop_ref_close in both cases.
int  fx_coop_ref_open(FxCoopRef *r);
void fx_coop_ref_close(FxCoopRef *r);

#endif
