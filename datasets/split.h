// split.h - train/val/test splits and few-shot samplers.
//
// Two protocols (../shared/paper-protocol.md §7, §8; ../shared/datasets.md §7):
//
//   paper   Given splits are kept.  Train + test without val: the test
//           split is halved into val and test; only train (or no split at
//           all): 90/5/5.  Both are shuffles with a seeded PyRandom, so
//           the result is deterministic.  Few-shot: the notebook's
//           get_fewshot_dataloader - train rows bucketed by label in
//           first-appearance order, random.Random(42), shuffle each
//           bucket and take the first k, then shuffle the selection once.
//           Val is the whole val split.
//   coop    Per class 50/20/30 (round half to even, as Python's round)
//           after a shuffle, classes taken in first-appearance order as
//           Dassl's defaultdict yields them; SUN397's Training file 80/20
//           into train/val.
//           Few-shot: Dassl's generate_fewshot_dataset - items grouped by
//           label in first-appearance order, random.sample(group, k) per
//           group (all of a group with fewer than k items), train then
//           val with min(k, 4), one random state seeded with the seed.
//
// Random numbers: PyRandom reproduces CPython's `random` module (MT19937,
// seed() of a non-negative int = init_by_array of its 32-bit words,
// getrandbits, _randbelow, shuffle, sample).  The paper's sampler is
// exact; CoOp's equals Dassl's only when nothing else drew from Python's
// random between seeding and sampling (not verified against CoOp's pickles).
//
// A few-shot selection is written as a manifest and reused when it exists
// (datasets.md §9.2): fewshot-<dataset>-k<k>-seed<s>-<sampler>.tsv with '#'
// header lines (format version, dataset, sampler, k, seed, the SHA-256
// fingerprint of the source dataset, class count), then
// path<TAB>label<TAB>split rows in the exact training order.
//
// Usage sketch (compiled by tests/test_split.c):
//
//     DsFewShot fs;
//     int created;
//     if (ds_fewshot_load_or_create(ds, "runs/splits", DS_SAMPLER_PAPER, 8, 42,
//                                   &fs, &created, &err)) ...;
//     for (int64_t i = 0; i < fs.n_train; i++) use(ds->items[fs.train[i]]);
//     ds_fewshot_free(&fs);
#ifndef MCLIP_SPLIT_H
#define MCLIP_SPLIT_H

#include <stdint.h>

#include "dataset.h"

// ---- CPython-compatible random numbers ----

typedef struct PyRandom {
    uint32_t mt[624];
    int      mti;
} PyRandom;

void     pyr_seed(PyRandom *r, uint64_t seed);        // random.Random(seed)
uint32_t pyr_u32(PyRandom *r);                        // getrandbits(32)
uint64_t pyr_getrandbits(PyRandom *r, int k);         // 1 <= k <= 64
uint64_t pyr_randbelow(PyRandom *r, uint64_t n);      // _randbelow(n), n >= 1
double   pyr_random(PyRandom *r);                     // random()
void     pyr_shuffle(PyRandom *r, int64_t *x, int64_t n);
// random.sample(pop[0..n), k) into out[k]; k <= n.
void     pyr_sample(PyRandom *r, const int64_t *pop, int64_t n, int64_t k, int64_t *out);

// ---- whole-dataset splits ----

// Paper protocol (see top).  rule (may be NULL) receives what was done:
// "given", "halved test", "90/5/5".  Returns 0 or -1 (no items).
int ds_split_paper(Dataset *ds, uint64_t seed, const char **rule, McErr *err);
// CoOp's per-class split of every item (all = 1) or of the items without a
// split (all = 0): round(n*p_train) train, round(n*p_val) val, rest test.
int ds_split_coop(Dataset *ds, uint64_t seed, int all, double p_train, double p_val,
                  McErr *err);
// CoOp's split_trainval: per class, round(n*p_val) of the train items
// (after a shuffle) become val.
int ds_split_trainval(Dataset *ds, uint64_t seed, double p_val, McErr *err);

// ---- few-shot ----

typedef enum { DS_SAMPLER_COOP, DS_SAMPLER_PAPER } DsSampler;

#define DS_K_ALL (-1)

typedef struct DsFewShot {
    int64_t *train;     // [n_train] item indices in training order
    int64_t  n_train;
    int64_t *val;       // [n_val] item indices
    int64_t  n_val;
} DsFewShot;

const char *ds_sampler_name(DsSampler s);            // "coop", "paper"
int         ds_sampler_parse(const char *s);         // -1 if unknown
// "all" -> DS_K_ALL, "0".."100000" -> k; -1 with err otherwise.
int         ds_parse_k(const char *s, int *k, McErr *err);

// Draw a selection from the train / val splits.  k = 0: no training items;
// k = DS_K_ALL: every train item in dataset order.
int  ds_fewshot(const Dataset *ds, DsSampler s, int k, uint64_t seed, DsFewShot *out,
                McErr *err);
void ds_fewshot_free(DsFewShot *fs);
// Manifest file name for (dataset, k, seed, sampler) in buf.
const char *ds_fewshot_name(const Dataset *ds, DsSampler s, int k, uint64_t seed, char *buf,
                            size_t len);
int  ds_fewshot_write(const Dataset *ds, const DsFewShot *fs, DsSampler s, int k,
                      uint64_t seed, const char *path, McErr *err);
// Read any few-shot manifest (ours or an exported path<TAB>label list):
// every path must be an item of ds with the same label.
int  ds_fewshot_read(const Dataset *ds, const char *path, DsFewShot *out, McErr *err);
// Reuse dir/<name> when it exists (its header must match: dataset, sampler,
// k, seed, source fingerprint), else draw and write it.  *created = 1 when
// written now.
int  ds_fewshot_load_or_create(const Dataset *ds, const char *dir, DsSampler s, int k,
                               uint64_t seed, DsFewShot *out, int *created, McErr *err);

#endif
