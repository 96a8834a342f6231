// split.c - splits, few-shot samplers and their manifests (see split.h).
//
// PyRandom follows CPython's Modules/_randommodule.c (MT19937 by Matsumoto
// and Nishimura, init_by_array seeding) and Lib/random.py (_randbelow,
// shuffle, sample) - behaviour reproduced, written from the algorithm.
#include "split.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- MT19937 ----

#define MT_N 624
#define MT_M 397

static void mt_init(PyRandom *r, uint32_t s) {
    r->mt[0] = s;
    for (int i = 1; i < MT_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->mti = MT_N;
}

// init_by_array(key, n): the seeding random.seed(int) uses.
static void mt_init_by_array(PyRandom *r, const uint32_t *key, int n) {
    mt_init(r, 19650218u);
    int i = 1, j = 0;
    for (int k = MT_N > n ? MT_N : n; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] +
                   (uint32_t)j;
        i++;
        j++;
        if (i >= MT_N) { r->mt[0] = r->mt[MT_N - 1]; i = 1; }
        if (j >= n) j = 0;
    }
    for (int k = MT_N - 1; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) -
                   (uint32_t)i;
        i++;
        if (i >= MT_N) { r->mt[0] = r->mt[MT_N - 1]; i = 1; }
    }
    r->mt[0] = 0x80000000u;
}

void pyr_seed(PyRandom *r, uint64_t seed) {
    // The int's 32-bit words, least significant first; 0 -> {0}.
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    mt_init_by_array(r, key, key[1] ? 2 : 1);
}

uint32_t pyr_u32(PyRandom *r) {
    static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
    uint32_t y;

    // Regenerate the whole state every MT_N draws.
    if (r->mti >= MT_N) {
        int k;
        for (k = 0; k < MT_N - MT_M; k++) {
            y = (r->mt[k] & 0x80000000u) | (r->mt[k + 1] & 0x7fffffffu);
            r->mt[k] = r->mt[k + MT_M] ^ (y >> 1) ^ mag01[y & 1u];
        }
        for (; k < MT_N - 1; k++) {
            y = (r->mt[k] & 0x80000000u) | (r->mt[k + 1] & 0x7fffffffu);
            r->mt[k] = r->mt[k + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
        }
        y = (r->mt[MT_N - 1] & 0x80000000u) | (r->mt[0] & 0x7fffffffu);
        r->mt[MT_N - 1] = r->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
        r->mti = 0;
    }

    // Tempering.
    y = r->mt[r->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t pyr_getrandbits(PyRandom *r, int k) {
    MC_CHECK(k >= 1 && k <= 64, "getrandbits(%d): k must be 1..64", k);
    if (k <= 32) return pyr_u32(r) >> (32 - k);
    // Words fill from the least significant end; the last one is shifted.
    uint64_t lo = pyr_u32(r);
    uint64_t hi = pyr_u32(r) >> (64 - k);
    return hi << 32 | lo;
}

uint64_t pyr_randbelow(PyRandom *r, uint64_t n) {
    MC_CHECK(n >= 1, "randbelow(0)");
    int bits = 0;
    for (uint64_t t = n; t; t >>= 1) bits++;   // n.bit_length()
    uint64_t v = pyr_getrandbits(r, bits);
    while (v >= n) v = pyr_getrandbits(r, bits);
    return v;
}

double pyr_random(PyRandom *r) {
    uint32_t a = pyr_u32(r) >> 5, b = pyr_u32(r) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

void pyr_shuffle(PyRandom *r, int64_t *x, int64_t n) {
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = (int64_t)pyr_randbelow(r, (uint64_t)i + 1);
        int64_t t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

void pyr_sample(PyRandom *r, const int64_t *pop, int64_t n, int64_t k, int64_t *out) {
    MC_CHECK(k >= 0 && k <= n, "sample: k=%lld larger than the population %lld",
             (long long)k, (long long)n);

    // Small populations: partial Fisher-Yates on a copy (random.py's pool);
    // large ones: rejection of repeated indices (its set-based branch).
    int64_t setsize = 21;
    if (k > 5) setsize += (int64_t)pow(4.0, ceil(log((double)(k * 3)) / log(4.0)));
    if (n <= setsize) {
        int64_t *pool = mc_malloc((size_t)(n ? n : 1) * sizeof *pool);
        memcpy(pool, pop, (size_t)n * sizeof *pool);
        for (int64_t i = 0; i < k; i++) {
            int64_t j = (int64_t)pyr_randbelow(r, (uint64_t)(n - i));
            out[i] = pool[j];
            pool[j] = pool[n - i - 1];
        }
        mc_free(pool);
    } else {
        char *taken = mc_calloc((size_t)n, 1);
        for (int64_t i = 0; i < k; i++) {
            int64_t j = (int64_t)pyr_randbelow(r, (uint64_t)n);
            while (taken[j]) j = (int64_t)pyr_randbelow(r, (uint64_t)n);
            taken[j] = 1;
            out[i] = pop[j];
        }
        mc_free(taken);
    }
}

// ---- grouping ----

// Item indices of `split` grouped by label, groups in first-appearance
// order: idx[start[g] .. start[g+1]) are group g's items in dataset order;
// glabel[g] is its label.  Returns the number of groups.
typedef struct {
    int64_t *idx, *start;
    int     *glabel;
    int      n_groups;
} Groups;

static void groups_build(const Dataset *ds, int split, Groups *g) {
    int *order = mc_malloc(((size_t)ds->n_classes + 1) * sizeof *order);
    int64_t *count = mc_calloc((size_t)ds->n_classes + 1, sizeof *count);
    for (int c = 0; c < ds->n_classes; c++) order[c] = -1;
    g->glabel = mc_malloc(((size_t)ds->n_classes + 1) * sizeof *g->glabel);
    g->n_groups = 0;

    // Group number of each label by first appearance; sizes.
    for (int64_t i = 0; i < ds->n_items; i++) {
        const DsItem *it = &ds->items[i];
        if (split >= 0 && it->split != split) continue;
        if (order[it->label] < 0) {
            order[it->label] = g->n_groups;
            g->glabel[g->n_groups++] = it->label;
        }
        count[order[it->label]]++;
    }
    g->start = mc_calloc((size_t)g->n_groups + 1, sizeof *g->start);
    for (int k = 0; k < g->n_groups; k++) g->start[k + 1] = g->start[k] + count[k];

    // Fill, keeping dataset order inside each group.
    g->idx = mc_malloc((size_t)(g->start[g->n_groups] ? g->start[g->n_groups] : 1) *
                       sizeof *g->idx);
    memset(count, 0, ((size_t)ds->n_classes + 1) * sizeof *count);
    for (int64_t i = 0; i < ds->n_items; i++) {
        const DsItem *it = &ds->items[i];
        if (split >= 0 && it->split != split) continue;
        int k = order[it->label];
        g->idx[g->start[k] + count[k]++] = i;
    }
    mc_free(order);
    mc_free(count);
}

static void groups_free(Groups *g) {
    mc_free(g->idx);
    mc_free(g->start);
    mc_free(g->glabel);
}

// ---- whole-dataset splits ----

int ds_split_paper(Dataset *ds, uint64_t seed, const char **rule, McErr *err) {
    int64_t n_train = ds_count_split(ds, DS_TRAIN), n_val = ds_count_split(ds, DS_VAL);
    int64_t n_test = ds_count_split(ds, DS_TEST), n_none = ds_count_split(ds, DS_NONE);
    if (!ds->n_items) return mc_err(err, "%s: no items to split", ds->source);
    PyRandom r;
    pyr_seed(&r, seed);
    const char *what;

    if (n_val > 0) {
        // Given splits are used as they are.
        what = "given";
    } else if (n_train > 0 && n_test > 0) {
        // No val: the first half of the shuffled test split becomes val.
        int64_t *t = mc_malloc((size_t)n_test * sizeof *t), k = 0;
        for (int64_t i = 0; i < ds->n_items; i++)
            if (ds->items[i].split == DS_TEST) t[k++] = i;
        pyr_shuffle(&r, t, n_test);
        for (int64_t i = 0; i < n_test / 2; i++) ds->items[t[i]].split = DS_VAL;
        mc_free(t);
        what = "halved test";
    } else {
        // Only train (or nothing marked): 90/5/5 of everything.
        int64_t n = n_train + n_none + n_test, k = 0;
        int64_t *t = mc_malloc((size_t)n * sizeof *t);
        for (int64_t i = 0; i < ds->n_items; i++)
            if (ds->items[i].split != DS_VAL) t[k++] = i;
        pyr_shuffle(&r, t, n);
        int64_t nv = n / 20, nt = n / 20;   // 5 % each, rounded down
        for (int64_t i = 0; i < n; i++)
            ds->items[t[i]].split = i < nv ? DS_VAL : i < nv + nt ? DS_TEST : DS_TRAIN;
        mc_free(t);
        what = "90/5/5";
    }
    if (rule) *rule = what;
    return 0;
}

int ds_split_coop(Dataset *ds, uint64_t seed, int all, double p_train, double p_val,
                  McErr *err) {
    PyRandom r;
    pyr_seed(&r, seed);
    Groups g;
    if (!all && ds_count_split(ds, DS_NONE) == 0)
        return mc_err(err, "%s: every item already has a split", ds->source);
    groups_build(ds, all ? -1 : DS_NONE, &g);
    int rc = 0;

    // Per class, groups in first-appearance order (Dassl's defaultdict):
    // shuffle, round(n*p_train) train, round(n*p_val) val (rint = Python's
    // round half to even), rest test.
    for (int k = 0; k < g.n_groups && !rc; k++) {
        int c = g.glabel[k];
        int64_t n = g.start[k + 1] - g.start[k], *idx = g.idx + g.start[k];
        int64_t n_train = (int64_t)rint((double)n * p_train);
        int64_t n_val = (int64_t)rint((double)n * p_val);
        if (n_train + n_val >= n)
            rc = mc_err(err, "%s: class %d '%s' has %lld images, too few for a %g/%g/rest split "
                        "with a non-empty test part", ds->source, c, ds->classes[c],
                        (long long)n, p_train, p_val);
        pyr_shuffle(&r, idx, n);
        for (int64_t i = 0; i < n && !rc; i++)
            ds->items[idx[i]].split = i < n_train ? DS_TRAIN : i < n_train + n_val ? DS_VAL
                                                                                 : DS_TEST;
    }
    groups_free(&g);
    return rc;
}

int ds_split_trainval(Dataset *ds, uint64_t seed, double p_val, McErr *err) {
    PyRandom r;
    pyr_seed(&r, seed);
    Groups g;
    groups_build(ds, DS_TRAIN, &g);
    int rc = g.n_groups ? 0 : mc_err(err, "%s: no train items to split", ds->source);

    // Groups in first-appearance order, as Dassl's defaultdict.
    for (int k = 0; k < g.n_groups && !rc; k++) {
        int64_t n = g.start[k + 1] - g.start[k], *idx = g.idx + g.start[k];
        int64_t n_val = (int64_t)rint((double)n * p_val);
        if (n_val < 1)
            rc = mc_err(err, "%s: class '%s' has %lld train images, too few to hold out %g",
                        ds->source, ds->classes[g.glabel[k]], (long long)n, p_val);
        pyr_shuffle(&r, idx, n);
        for (int64_t i = 0; i < n_val && !rc; i++) ds->items[idx[i]].split = DS_VAL;
    }
    groups_free(&g);
    return rc;
}

// ---- few-shot ----

const char *ds_sampler_name(DsSampler s) { return s == DS_SAMPLER_PAPER ? "paper" : "coop"; }

int ds_sampler_parse(const char *s) {
    if (!strcmp(s, "paper")) return DS_SAMPLER_PAPER;
    if (!strcmp(s, "coop")) return DS_SAMPLER_COOP;
    return -1;
}

int ds_parse_k(const char *s, int *k, McErr *err) {
    if (!strcmp(s, "all")) {
        *k = DS_K_ALL;
        return 0;
    }
    char *e;
    long v = strtol(s, &e, 10);
    if (!*s || *e || v < 0 || v > DS_MAX_LINE)
        return mc_err(err, "k '%s': expected a shot count (0, 1, 2, 4, 8, 16) or 'all'", s);
    *k = (int)v;
    return 0;
}

void ds_fewshot_free(DsFewShot *fs) {
    mc_free(fs->train);
    mc_free(fs->val);
    memset(fs, 0, sizeof *fs);
}

// Dassl's generate_fewshot_dataset over one split: per group
// random.sample(items, k), or the whole group when it has fewer.
static int64_t coop_draw(const Dataset *ds, int split, int k, PyRandom *r, int64_t **out) {
    Groups g;
    groups_build(ds, split, &g);
    int64_t total = g.start[g.n_groups], n = 0;
    *out = mc_malloc((size_t)(total ? total : 1) * sizeof **out);
    for (int q = 0; q < g.n_groups; q++) {
        int64_t size = g.start[q + 1] - g.start[q], *items = g.idx + g.start[q];
        if (size >= k) {
            pyr_sample(r, items, size, k, *out + n);
            n += k;
        } else {
            memcpy(*out + n, items, (size_t)size * sizeof *items);
            n += size;
        }
    }
    groups_free(&g);
    return n;
}

// The notebook's sampler: shuffle each bucket, take k, shuffle the union.
static int64_t paper_draw(const Dataset *ds, int k, PyRandom *r, int64_t **out) {
    Groups g;
    groups_build(ds, DS_TRAIN, &g);
    int64_t total = g.start[g.n_groups], n = 0;
    *out = mc_malloc((size_t)(total ? total : 1) * sizeof **out);
    for (int q = 0; q < g.n_groups; q++) {
        int64_t size = g.start[q + 1] - g.start[q], *bucket = g.idx + g.start[q];
        pyr_shuffle(r, bucket, size);
        int64_t take = size < k ? size : k;
        memcpy(*out + n, bucket, (size_t)take * sizeof *bucket);
        n += take;
    }
    pyr_shuffle(r, *out, n);
    groups_free(&g);
    return n;
}

// Indices of every item of a split, in dataset order.
static int64_t all_of(const Dataset *ds, int split, int64_t **out) {
    int64_t n = 0;
    *out = mc_malloc((size_t)(ds->n_items ? ds->n_items : 1) * sizeof **out);
    for (int64_t i = 0; i < ds->n_items; i++)
        if (ds->items[i].split == split) (*out)[n++] = i;
    return n;
}

int ds_fewshot(const Dataset *ds, DsSampler s, int k, uint64_t seed, DsFewShot *out,
               McErr *err) {
    memset(out, 0, sizeof *out);
    if (k < 0 && k != DS_K_ALL) return mc_err(err, "few-shot k=%d: expected >= 0 or all", k);
    if (ds_count_split(ds, DS_TRAIN) == 0)
        return mc_err(err, "%s: no train split to sample from (split the dataset first)",
                      ds->source);
    PyRandom r;
    pyr_seed(&r, seed);
    if (k == DS_K_ALL) {
        out->n_train = all_of(ds, DS_TRAIN, &out->train);
    } else if (k == 0) {
        out->train = mc_malloc(sizeof *out->train);
    } else if (s == DS_SAMPLER_PAPER) {
        out->n_train = paper_draw(ds, k, &r, &out->train);
    } else {
        out->n_train = coop_draw(ds, DS_TRAIN, k, &r, &out->train);
    }

    // Val: CoOp min(k, 4) per class from the same random state; the paper
    // evaluates on the whole val split.
    if (s == DS_SAMPLER_COOP && k != DS_K_ALL && k > 0)
        out->n_val = coop_draw(ds, DS_VAL, k < 4 ? k : 4, &r, &out->val);
    else
        out->n_val = all_of(ds, DS_VAL, &out->val);
    return 0;
}

// ---- manifests ----

#define FS_MAGIC "mclip few-shot manifest v1"

const char *ds_fewshot_name(const Dataset *ds, DsSampler s, int k, uint64_t seed, char *buf,
                            size_t len) {
    char kk[16];
    if (k == DS_K_ALL) snprintf(kk, sizeof kk, "all");
    else snprintf(kk, sizeof kk, "%d", k);
    snprintf(buf, len, "fewshot-%s-k%s-seed%llu-%s.tsv", ds->name, kk,
             (unsigned long long)seed, ds_sampler_name(s));
    return buf;
}

// The header lines identifying a draw (also compared on reuse).
static void fs_header(const Dataset *ds, DsSampler s, int k, uint64_t seed,
                      char lines[7][160]) {
    char fp[65];
    ds_fingerprint(ds, fp);
    snprintf(lines[0], 160, "%s", FS_MAGIC);
    snprintf(lines[1], 160, "dataset: %s", ds->name);
    snprintf(lines[2], 160, "sampler: %s v1", ds_sampler_name(s));
    if (k == DS_K_ALL) snprintf(lines[3], 160, "k: all");
    else snprintf(lines[3], 160, "k: %d", k);
    snprintf(lines[4], 160, "seed: %llu", (unsigned long long)seed);
    snprintf(lines[5], 160, "source_sha256: %s", fp);
    snprintf(lines[6], 160, "classes: %d", ds->n_classes);
}

int ds_fewshot_write(const Dataset *ds, const DsFewShot *fs, DsSampler s, int k,
                     uint64_t seed, const char *path, McErr *err) {
    char hdr[7][160];
    const char *lines[7];
    fs_header(ds, s, k, seed, hdr);
    for (int i = 0; i < 7; i++) lines[i] = hdr[i];

    // A view of the chosen items, train rows first, in order.
    Dataset view = *ds;
    view.n_items = fs->n_train + fs->n_val;
    view.items = mc_malloc((size_t)(view.n_items ? view.n_items : 1) * sizeof *view.items);
    for (int64_t i = 0; i < fs->n_train; i++) {
        view.items[i] = ds->items[fs->train[i]];
        view.items[i].split = DS_TRAIN;
    }
    for (int64_t i = 0; i < fs->n_val; i++) {
        view.items[fs->n_train + i] = ds->items[fs->val[i]];
        view.items[fs->n_train + i].split = DS_VAL;
    }
    int rc = ds_write_tsv(&view, path, -1, lines, 7, err);
    mc_free(view.items);
    return rc;
}

typedef struct {
    const char *rel;
    int64_t     idx;
} RelIdx;

static int cmp_rel(const void *a, const void *b) {
    return strcmp(((const RelIdx *)a)->rel, ((const RelIdx *)b)->rel);
}

int ds_fewshot_read(const Dataset *ds, const char *path, DsFewShot *out, McErr *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    if (ds_read_file(path, DS_MAX_TEXT, &text, &len, err)) return -1;

    // The dataset's items sorted by relative path, for lookups.
    int64_t n = ds->n_items;
    RelIdx *index = mc_malloc((size_t)(n ? n : 1) * sizeof *index);
    for (int64_t i = 0; i < n; i++) index[i] = (RelIdx){ds->items[i].rel, i};
    qsort(index, (size_t)n, sizeof *index, cmp_rel);
    out->train = mc_malloc((size_t)(n ? n : 1) * sizeof *out->train);
    out->val = mc_malloc((size_t)(n ? n : 1) * sizeof *out->val);
    // Line of each item's row: an item listed twice is refused (it would
    // also overrun train/val, which hold each item at most once).
    int *seen = mc_calloc((size_t)(n ? n : 1), sizeof *seen);

    // Rows: path<TAB>label[<TAB>split]; '#' comments; optional header.
    int rc = 0, line = 0, first = 1;
    char *p = text, *end = text + len;
    while (p < end && !rc) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        line++;
        if (e > p && e[-1] == '\r') e[-1] = 0;
        *e = 0;
        char *s = p;
        p = nl ? nl + 1 : end;
        if (!*s || *s == '#') continue;
        if (first && !strncmp(s, "path\t", 5)) {
            first = 0;
            continue;
        }
        first = 0;
        char *t1 = strchr(s, '\t');
        if (!t1) {
            rc = mc_err(err, "%s:%d: expected path<TAB>label[<TAB>split]", path, line);
            break;
        }
        *t1 = 0;
        char *t2 = strchr(t1 + 1, '\t');
        if (t2) *t2 = 0;
        int split = t2 ? ds_split_parse(t2 + 1) : DS_TRAIN;
        char *le;
        long label = strtol(t1 + 1, &le, 10);
        if (*le || le == t1 + 1 || (split != DS_TRAIN && split != DS_VAL)) {
            rc = mc_err(err, "%s:%d: expected an integer label and split train or val", path,
                        line);
            break;
        }
        RelIdx key = {s, 0};
        const RelIdx *hit = n ? bsearch(&key, index, (size_t)n, sizeof *index, cmp_rel) : NULL;
        if (!hit) {
            rc = mc_err(err, "%s:%d: '%s' is not an item of the dataset (%s)", path, line, s,
                        ds->source);
        } else if (ds->items[hit->idx].label != label) {
            rc = mc_err(err, "%s:%d: '%s' has label %ld here but %d in the dataset", path, line,
                        s, label, ds->items[hit->idx].label);
        } else if (seen[hit->idx]) {
            rc = mc_err(err, "%s:%d: '%s' is already listed on line %d", path, line, s,
                        seen[hit->idx]);
        } else {
            seen[hit->idx] = line;
            if (split == DS_TRAIN) out->train[out->n_train++] = hit->idx;
            else out->val[out->n_val++] = hit->idx;
        }
    }
    mc_free(seen);
    mc_free(index);
    mc_free(text);
    if (rc) ds_fewshot_free(out);
    return rc;
}

// Compare the '#' header of an existing manifest with the expected one.
static int fs_check_header(const char *path, const char *want[7], McErr *err) {
    char *text;
    size_t len;
    if (ds_read_file(path, DS_MAX_TEXT, &text, &len, err)) return -1;
    int rc = 0;
    char *p = text;
    for (int i = 0; i < 7 && !rc; i++) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (strncmp(p, "# ", 2) || strcmp(p + 2, want[i]))
            rc = mc_err(err, "%s:%d: header '%s' does not match this run ('%s'); delete the file "
                        "or choose another split folder", path, i + 1, p, want[i]);
        p = nl ? nl + 1 : p + strlen(p);
    }
    mc_free(text);
    return rc;
}

int ds_fewshot_load_or_create(const Dataset *ds, const char *dir, DsSampler s, int k,
                              uint64_t seed, DsFewShot *out, int *created, McErr *err) {
    char name[512], hdr[7][160];
    const char *want[7];
    ds_fewshot_name(ds, s, k, seed, name, sizeof name);
    char *path = ds_join(dir, name);
    fs_header(ds, s, k, seed, hdr);
    for (int i = 0; i < 7; i++) want[i] = hdr[i];
    int rc;
    *created = 0;
    if (ds_is_file(path)) {
        // Reuse: same draw parameters and same source, then the rows.
        rc = fs_check_header(path, want, err);
        if (!rc) rc = ds_fewshot_read(ds, path, out, err);
    } else {
        rc = ds_mkdirs(dir, err);
        if (!rc) rc = ds_fewshot(ds, s, k, seed, out, err);
        if (!rc) {
            rc = ds_fewshot_write(ds, out, s, k, seed, path, err);
            if (rc) ds_fewshot_free(out);
            else *created = 1;
        }
    }
    mc_free(path);
    return rc;
}
