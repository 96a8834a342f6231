// featcache.c - cached image features (see featcache.h).
#include "featcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../mobileclip/safetensors.h"

int coop_file_sha256(const char *path, char hex[65], McErr *err) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return mc_err(err, "%s: cannot open to hash it (%s)", path, strerror(errno));
    }
    if (st.st_size == 0) {
        close(fd);
        ds_sha256_hex("", 0, hex);
        return 0;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return mc_err(err, "%s: cannot map to hash it (%s)", path, strerror(errno));
    ds_sha256_hex(m, (size_t)st.st_size, hex);
    munmap(m, (size_t)st.st_size);
    return 0;
}

// ---- key ----

typedef struct { char *s; size_t len, cap; } Text;

static void text_add(Text *t, const char *s) {
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2 + 256;
        char *ns = mc_malloc(cap);
        if (t->s) memcpy(ns, t->s, t->len);
        mc_free(t->s);
        t->s = ns, t->cap = cap;
    }
    memcpy(t->s + t->len, s, n + 1);
    t->len += n;
}

int coop_featcache_key(const CoopFeatSpec *s, const char *const *paths, int64_t n,
                       char key[65], McErr *err) {
    Text t = {0};
    char line[512];
    const DsPrepConfig *p = &s->prep;

    // Model, weights and preprocessing.
    snprintf(line, sizeof line, "%s\nmodel %s\nweights %s\nfused %d\n", COOP_FEATCACHE_VERSION,
             s->model_name ? s->model_name : "", s->weights_sha256 ? s->weights_sha256 : "",
             s->tower ? image_tower_fused(s->tower) : -1);
    text_add(&t, line);
    snprintf(line, sizeof line, "size %d filter %d mean %.9g %.9g %.9g std %.9g %.9g %.9g\n",
             p->size, (int)p->filter, p->mean[0], p->mean[1], p->mean[2], p->std[0], p->std[1],
             p->std[2]);
    text_add(&t, line);

    // Every image: path, size, modification time.
    for (int64_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0 && s->skip_bad) {
            // Missing: reported as a bad image when the features are computed.
            text_add(&t, paths[i]);
            text_add(&t, "\tmissing\n");
            continue;
        }
        if (stat(paths[i], &st) != 0) {
            mc_free(t.s);
            return mc_err(err, "%s: cannot stat image (%s)", paths[i], strerror(errno));
        }
        text_add(&t, paths[i]);
        snprintf(line, sizeof line, "\t%lld\t%lld.%09ld\n", (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
        text_add(&t, line);
    }
    ds_sha256_hex(t.s, t.len, key);
    mc_free(t.s);
    return 0;
}

// ---- cache file ----

static void cache_path(const CoopFeatSpec *s, const char *key, char *buf, size_t len) {
    snprintf(buf, len, "%s/feat-%.16s.safetensors", s->cache_dir, key);
}

// Read the cached features when the file's key and shape match; NULL otherwise.
static float *cache_read(const char *path, const char *key, int64_t n, int64_t E) {
    McErr err;
    StFile *f = st_open(path, &err);
    if (!f) return NULL;
    const char *k = st_meta(f, "key");
    const StTensor *t = st_find(f, "features");
    float *feat = NULL;
    if (k && !strcmp(k, key) && t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == n &&
        t->shape[1] == E) {
        feat = mc_malloc((size_t)(n * E) * sizeof *feat);
        if (st_to_f32(f, t, feat, n * E, &err)) {
            mc_free(feat);
            feat = NULL;
        }
    }
    st_close(f);
    return feat;
}

static int cache_write(const CoopFeatSpec *s, const char *path, const char *key,
                       const float *feat, int64_t n, int64_t E, McErr *err) {
    if (ds_mkdirs(s->cache_dir, err)) return -1;
    StWriter *w = st_writer_new();
    char v[32];
    st_writer_add_f32(w, "features", MC_DIMS(n, E), feat);
    st_writer_meta(w, "key", key);
    snprintf(v, sizeof v, "%lld", (long long)n);
    st_writer_meta(w, "n", v);
    snprintf(v, sizeof v, "%lld", (long long)E);
    st_writer_meta(w, "dim", v);
    st_writer_meta(w, "model_name", s->model_name ? s->model_name : "");
    st_writer_meta(w, "weights_sha256", s->weights_sha256 ? s->weights_sha256 : "");
    int rc = st_writer_save(w, path, err);
    st_writer_free(w);
    return rc;
}

// ---- computing ----

// Features of every image; *n_bad receives the number of bad files (with
// skip_bad each is reported and left as a zero row, else the call fails).
static int compute(const CoopFeatSpec *s, const char *const *paths, int64_t n, float *feat,
                   int64_t *n_bad, McErr *err) {
    int B = s->batch > 0 ? s->batch : 8, S = s->prep.size;
    int64_t E = image_tower_config(s->tower)->embed;
    float *x = mc_malloc((size_t)B * 3 * S * S * sizeof *x);
    int *status = mc_malloc((size_t)B * sizeof *status);
    McErr *errs = mc_malloc((size_t)B * sizeof *errs);
    Graph *g = ag_graph_new((size_t)1 << 26);
    g->grad_enabled = 0;
    int64_t bad = 0;
    char first_bad[MC_ERRLEN] = "";
    double t0 = mc_time();
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        int nb = (int)(n - i0 < B ? n - i0 : B);
        // Decode and preprocess the batch (bad files are zero-filled and counted).
        int nbad = ds_prep_batch(x, status, errs, paths + i0, nb, &s->prep);
        for (int j = 0; nbad && j < nb; j++)
            if (status[j]) {
                if (!bad) snprintf(first_bad, sizeof first_bad, "%s", errs[j].msg);
                bad++;
                if (s->skip_bad) {
                    // Report the file (the message names it) and keep going.
                    fprintf(s->progress ? s->progress : stderr,
                            "bad image %lld of %lld, skipped (zero features): %s\n",
                            (long long)(i0 + j), (long long)n, errs[j].msg);
                    if (s->bad) s->bad[i0 + j] = 1;
                }
            }
        // Features of the batch.
        ag_graph_reset(g);
        Tensor *xt = ag_tensor(g, MC_DIMS(nb, 3, S, S));
        memcpy(xt->data, x, (size_t)xt->n * sizeof(float));
        Tensor *f = image_tower_forward(g, s->tower, xt, NULL);
        memcpy(feat + i0 * E, f->data, (size_t)(nb * E) * sizeof(float));
        for (int j = 0; nbad && j < nb; j++)
            if (status[j]) memset(feat + (i0 + j) * E, 0, (size_t)E * sizeof(float));
        if (s->progress) {
            double dt = mc_time() - t0;
            fprintf(s->progress, "features %lld/%lld images | %.1f img/s\r",
                    (long long)(i0 + nb), (long long)n, (double)(i0 + nb) / (dt > 0 ? dt : 1));
            fflush(s->progress);
        }
    }
    if (s->progress) fprintf(s->progress, "\n");
    ag_graph_free(g);
    mc_free(x), mc_free(status), mc_free(errs);
    *n_bad = bad;
    if (s->stats) s->stats->images += n, s->stats->bad += bad;
    if (bad && s->skip_bad && s->progress)
        fprintf(s->progress, "%lld of %lld images could not be read and were skipped\n",
                (long long)bad, (long long)n);
    if (bad && !s->skip_bad)
        return mc_err(err, "%lld of %lld images could not be read; the first: %s",
                      (long long)bad, (long long)n, first_bad);
    return 0;
}

int coop_featcache_get(const CoopFeatSpec *s, const char *const *paths, int64_t n,
                       float **feat, int *hit, McErr *err) {
    int64_t E = image_tower_config(s->tower)->embed;
    char key[65], path[4096];
    *hit = 0;
    if (s->bad) memset(s->bad, 0, (size_t)n);   // a cache file holds no bad rows
    if (s->cache_dir) {
        if (coop_featcache_key(s, paths, n, key, err)) return -1;
        cache_path(s, key, path, sizeof path);
        float *f = cache_read(path, key, n, E);
        if (f) {
            *feat = f;
            *hit = 1;
            if (s->stats) s->stats->hits++;
            return 0;
        }
    }
    if (s->stats) s->stats->misses++;
    float *f = mc_malloc((size_t)(n * E) * sizeof *f);
    int64_t n_bad = 0;
    if (compute(s, paths, n, f, &n_bad, err)) {
        mc_free(f);
        return -1;
    }
    // Features with bad rows are not cached: the files may be fixed later.
    if (s->cache_dir && !n_bad && cache_write(s, path, key, f, n, E, err)) {
        mc_free(f);
        return -1;
    }
    *feat = f;
    return 0;
}
