// featcache.h - image features of the frozen image tower, computed once
// and cached on disk.
//
// CoOp trains only text prompts, so every training image's feature is the
// same at every step: they are computed once (batches of preprocessed
// images through image_tower_forward, no tape) and kept in a cache file
//   <cache_dir>/feat-<key[0:16]>.safetensors
//     features  F32 [N, E]  raw encode_image outputs (not normalised)
//     metadata  key (64 hex digits), n, dim, model_name, weights_sha256
// The key is the SHA-256 of a text listing everything that decides the
// features:
//   "mclip-featcache-1", model name, weights SHA-256, fused or not, the
//   preprocessing (size, filter, mean, std), and per image in order:
//   path, file size and modification time (ns)
// so replacing the weights, changing the preprocessing, or editing,
// adding, removing or reordering an image gives another key (a stale file
// is simply not found).  A cache file whose stored key or shape does not
// match is ignored and rewritten.  Writes are atomic (temp file + rename).
//
// A bad image (unreadable, corrupt) fails the whole call with its path and
// the number of bad files: features are computed before training starts,
// so nothing is lost.  With skip_bad the call goes on instead: each bad
// file (corrupt, unreadable or missing; a missing one enters the key as
// "missing") is reported in one line naming it and the reason (on
// `progress`, else stderr), its row of features is zero, bad[i] (when
// given) is set, and no cache file is written (the next call reports the
// bad files again).
//
// stats (optional) counts what the calls did: cache hits, misses (features
// computed), images run through the tower and bad images.
//
// Usage sketch (compiled by tests/test_coop_train.c):
//
//     CoopFeatSpec fs = {.cache_dir = "cache", .model_name = m->name,
//                        .weights_sha256 = sha, .tower = m->image, .batch = 8};
//     ds_prep_config(&fs.prep, 256, DS_FILTER_BILINEAR, mean, std);
//     float *feat;   // [n, E]
//     int hit;
//     if (coop_featcache_get(&fs, paths, n, &feat, &hit, &err)) ...;
//     mc_free(feat);
#ifndef MCLIP_COOP_FEATCACHE_H
#define MCLIP_COOP_FEATCACHE_H

#include <stdint.h>
#include <stdio.h>

#include "../datasets/preprocess.h"
#include "../mobileclip/image_tower.h"

#define COOP_FEATCACHE_VERSION "mclip-featcache-1"

// Counters added to by coop_featcache_get (see above).
typedef struct CoopFeatStats {
    int64_t hits;      // calls answered from a cache file
    int64_t misses;    // calls that computed the features
    int64_t images;    // images decoded and run through the tower
    int64_t bad;       // images that could not be read (skip_bad)
} CoopFeatStats;

typedef struct CoopFeatSpec {
    const char  *cache_dir;        // NULL: compute, never cache
    const char  *model_name;
    const char  *weights_sha256;   // of the checkpoint file
    ImageTower  *tower;
    DsPrepConfig prep;
    int          batch;            // images per forward pass (<= 0: 8)
    FILE        *progress;         // progress lines, or NULL
    int          skip_bad;         // 1: report bad images, zero rows, go on
    uint8_t     *bad;              // [n] set to 1 for bad images (skip_bad), or NULL
    CoopFeatStats *stats;          // counters, or NULL
} CoopFeatSpec;

// The cache key of this spec and image list (64 hex digits + NUL).
// Returns -1 with err set when an image cannot be stat()ed.
int coop_featcache_key(const CoopFeatSpec *s, const char *const *paths, int64_t n,
                       char key[65], McErr *err);

// feat [n, E] (mc_malloc'd; the caller frees) for the n images; *hit = 1
// when read from the cache.
int coop_featcache_get(const CoopFeatSpec *s, const char *const *paths, int64_t n,
                       float **feat, int *hit, McErr *err);

// SHA-256 of a whole file, as lowercase hex.
int coop_file_sha256(const char *path, char hex[65], McErr *err);

#endif
