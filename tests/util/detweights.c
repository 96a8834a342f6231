// detweights.c - see detweights.h and tests/reference/detweights.py.
#include "detweights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../mobileclip/json.h"
#include "../../mobileclip/safetensors.h"

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001B3ull;
    }
    return h;
}

static uint64_t splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void detweights_fill(float *out, size_t n, const char *name, double lo, double hi,
                     uint64_t seed) {
    uint64_t key = fnv1a64(name) ^ (seed * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(key + i) >> 11) * (1.0 / 9007199254740992.0);
        double v = lo + (hi - lo) * u;
        out[i] = mc_f16_to_f32(mc_f32_to_f16((float)v));
    }
}

// ---- expanding a fixture into a weights file ----

static int has_prefix(const char *s, const char *const *prefixes) {
    for (int i = 0; prefixes && prefixes[i]; i++)
        if (!strncmp(s, prefixes[i], strlen(prefixes[i]))) return 1;
    return 0;
}

// Copy one stored tensor into the writer, keeping F16/I64 as they are.
static int copy_tensor(StWriter *w, const StFile *f, const StTensor *t) {
    McErr err;
    int ndim = t->ndim;
    if (t->dtype == ST_I64 || t->dtype == ST_I32) {
        int64_t *v = malloc(((size_t)t->numel + 1) * sizeof *v);
        if (!v || st_to_i64(f, t, v, t->numel, &err)) {
            fprintf(stderr, "detweights: %s: %s\n", t->name, v ? err.msg : "out of memory");
            free(v);
            return -1;
        }
        st_writer_add_i64(w, t->name, ndim, t->shape, v);
        free(v);
        return 0;
    }
    float *v = malloc(((size_t)t->numel + 1) * sizeof *v);
    if (!v || st_to_f32(f, t, v, t->numel, &err)) {
        fprintf(stderr, "detweights: %s: %s\n", t->name, v ? err.msg : "out of memory");
        free(v);
        return -1;
    }
    if (t->dtype == ST_F16) st_writer_add_f16(w, t->name, ndim, t->shape, v);
    else st_writer_add_f32(w, t->name, ndim, t->shape, v);
    free(v);
    return 0;
}

// Expand one recipe [name, [shape], lo, hi] into the writer (as F16: the
// values are fp16-exact by construction).
static int add_recipe(StWriter *w, const JsonValue *r, uint64_t seed, const char *path) {
    const JsonValue *shp = r->type == JSON_ARRAY && r->len == 4 ? &r->items[1] : NULL;
    if (!shp || r->items[0].type != JSON_STRING || shp->type != JSON_ARRAY ||
        shp->len > ST_MAXDIM || r->items[2].type != JSON_NUMBER ||
        r->items[3].type != JSON_NUMBER) {
        fprintf(stderr, "detweights: %s: a recipe at byte %zu is not [name, [shape], lo, hi]\n",
                path, r->offset);
        return -1;
    }
    int64_t shape[ST_MAXDIM];
    size_t n = 1;
    for (size_t d = 0; d < shp->len; d++) {
        if (json_int(&shp->items[d], &shape[d]) || shape[d] < 0 ||
            !mc_mul_ok(n, (size_t)shape[d], &n) || n > ((size_t)1 << 34)) {
            fprintf(stderr, "detweights: %s: recipe %s has a bad shape\n", path,
                    r->items[0].str);
            return -1;
        }
    }
    float *v = malloc((n + 1) * sizeof *v);
    if (!v) {
        fprintf(stderr, "detweights: out of memory for recipe %s\n", r->items[0].str);
        return -1;
    }
    detweights_fill(v, n, r->items[0].str, r->items[2].number, r->items[3].number, seed);
    st_writer_add_f16(w, r->items[0].str, (int)shp->len, shape, v);
    free(v);
    return 0;
}

int detweights_expand(const char *fixture_path, const char *weights_path,
                      const char *const *skip_prefixes) {
    McErr err;
    StFile *f = st_open(fixture_path, &err);
    if (!f) {
        fprintf(stderr, "detweights: %s\n", err.msg);
        return -1;
    }
    const char *recipes = st_meta(f, "detweights");
    const char *seed_s = st_meta(f, "detweights_seed");
    if (!recipes || !seed_s) {
        fprintf(stderr, "detweights: %s has no \"detweights\"/\"detweights_seed\" metadata "
                "(regenerate it with tests/reference/gen_*.py)\n", fixture_path);
        st_close(f);
        return -1;
    }
    uint64_t seed = strtoull(seed_s, NULL, 10);
    JsonDoc *doc = json_parse(recipes, strlen(recipes), NULL, &err);
    const JsonValue *list = doc ? json_root(doc) : NULL;
    if (!list || list->type != JSON_ARRAY) {
        fprintf(stderr, "detweights: %s: recipes are not a JSON array: %s\n", fixture_path,
                doc ? "wrong type" : err.msg);
        json_free(doc);
        st_close(f);
        return -1;
    }

    // Stored tensors first (file order), then the recipes, then metadata.
    StWriter *w = st_writer_new();
    int rc = 0;
    for (int i = 0; i < st_count(f) && rc == 0; i++) {
        const StTensor *t = st_at(f, i);
        if (!has_prefix(t->name, skip_prefixes)) rc = copy_tensor(w, f, t);
    }
    for (size_t i = 0; i < list->len && rc == 0; i++)
        rc = add_recipe(w, &list->items[i], seed, fixture_path);
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *k = st_meta_key(f, i);
        if (strcmp(k, "detweights") && strcmp(k, "detweights_seed"))
            st_writer_meta(w, k, st_meta(f, k));
    }
    if (rc == 0 && st_writer_save(w, weights_path, &err)) {
        fprintf(stderr, "detweights: %s\n", err.msg);
        rc = -1;
    }
    st_writer_free(w);
    json_free(doc);
    st_close(f);
    return rc;
}
