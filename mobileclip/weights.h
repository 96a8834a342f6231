// weights.h - bind checkpoint tensors to model parameters by name.
//
// A model loader asks for each parameter by its open_clip key name and
// expected shape.  Problems are collected instead of stopping at the first:
// ws_finish reports, in one message, every missing key, every key whose
// shape differs (expected and found), and every key of the file that no
// module took (unexpected), naming the file.  Keys may be declared optional
// (ws_take_opt) or ignorable by prefix/suffix (e.g. num_batches_tracked).
//
// Checkpoints are safetensors files, or torch .pt / .bin zip files read by
// torch_pt.h (Apple ships its checkpoints that way).
//
// Usage sketch:
//
//     McErr err;
//     WeightSet *ws = ws_open("open_clip_model.safetensors", &err);
//     Tensor *pos = ws_take(ws, "text.positional_embedding", MC_DIMS(77, 512));
//     ...                       // pos is a zero tensor if missing/mis-shaped
//     ws_ignore_suffix(ws, ".num_batches_tracked");
//     if (ws_finish(ws, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
//     ws_close(ws);             // tensors taken stay valid (heap, f32)
#ifndef MCLIP_WEIGHTS_H
#define MCLIP_WEIGHTS_H

#include "../tensor/tensor.h"

typedef struct WeightSet WeightSet;

// Open a safetensors or torch zip checkpoint (detected by content).
WeightSet *ws_open(const char *path, McErr *err);
void       ws_close(WeightSet *ws);
const char *ws_path(const WeightSet *ws);

// 1 if the file has this key.
int ws_has(const WeightSet *ws, const char *name);
// Shape of a key (ndim returned, -1 if absent); shape gets up to 8 dims.
int ws_shape(const WeightSet *ws, const char *name, int64_t *shape);

// A new heap tensor (f32, converted from the stored dtype) holding the key,
// marked as taken.  On a missing key or wrong shape the problem is recorded
// and a zero tensor of the expected shape is returned, so loading can go on
// and report everything at once.
Tensor *ws_take(WeightSet *ws, const char *name, int ndim, const int64_t *shape);
// Same, but a missing key returns NULL and is not an error.
Tensor *ws_take_opt(WeightSet *ws, const char *name, int ndim, const int64_t *shape);
// Mark keys as expected-but-unused so they are not reported as unexpected.
void ws_ignore_suffix(WeightSet *ws, const char *suffix);
void ws_ignore_prefix(WeightSet *ws, const char *prefix);

// 0 if everything was found with the right shape and nothing unexpected is
// left; else -1 with one message listing all problems.
int ws_finish(WeightSet *ws, McErr *err);
// The complete problem list of the last failing ws_finish (err holds a
// shortened one when the lists are long); "" when there was none.
const char *ws_report(const WeightSet *ws);

#endif
