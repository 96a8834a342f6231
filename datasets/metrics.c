// metrics.c - classification and retrieval metrics and their output files
// (see metrics.h for the definitions followed).
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#include "../mobileclip/json.h"
#include "dataset.h"

// ---- classification ----

double mt_accuracy(const int *pred, const int *truth, int64_t n) {
    if (n <= 0) return NAN;
    int64_t hit = 0;
    for (int64_t i = 0; i < n; i++) hit += pred[i] == truth[i];
    return (double)hit / (double)n;
}

static void check_labels(const int *pred, const int *truth, int64_t n, int K) {
    for (int64_t i = 0; i < n; i++)
        MC_CHECK(pred[i] >= 0 && pred[i] < K && truth[i] >= 0 && truth[i] < K,
                 "metrics: item %lld has pred %d / truth %d outside 0..%d", (long long)i,
                 pred[i], truth[i], K - 1);
}

double mt_macro_f1(const int *pred, const int *truth, int64_t n, int K) {
    check_labels(pred, truth, n, K);
    int64_t *tp = calloc((size_t)K, sizeof *tp), *fp = calloc((size_t)K, sizeof *fp);
    int64_t *fn = calloc((size_t)K, sizeof *fn);
    MC_CHECK(tp && fp && fn, "out of memory");

    // Per-class TP, FP, FN.
    for (int64_t i = 0; i < n; i++) {
        if (pred[i] == truth[i]) {
            tp[truth[i]]++;
        } else {
            fp[pred[i]]++;
            fn[truth[i]]++;
        }
    }

    // Mean F1 over the labels present in truth or pred.
    double sum = 0;
    int present = 0;
    for (int c = 0; c < K; c++) {
        if (tp[c] + fp[c] + fn[c] == 0) continue;
        present++;
        sum += 2.0 * (double)tp[c] / (double)(2 * tp[c] + fp[c] + fn[c]);
    }
    free(tp);
    free(fp);
    free(fn);
    return present ? sum / present : NAN;
}

void mt_per_class_accuracy(const int *pred, const int *truth, int64_t n, int K, double *acc) {
    check_labels(pred, truth, n, K);
    int64_t *hit = calloc((size_t)K, sizeof *hit), *count = calloc((size_t)K, sizeof *count);
    MC_CHECK(hit && count, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        count[truth[i]]++;
        hit[truth[i]] += pred[i] == truth[i];
    }
    for (int c = 0; c < K; c++) acc[c] = count[c] ? (double)hit[c] / (double)count[c] : NAN;
    free(hit);
    free(count);
}

void mt_confusion(const int *pred, const int *truth, int64_t n, int K, int64_t *cm) {
    check_labels(pred, truth, n, K);
    memset(cm, 0, (size_t)K * (size_t)K * sizeof *cm);
    for (int64_t i = 0; i < n; i++) cm[(int64_t)truth[i] * K + pred[i]]++;
}

// A CSV field: quoted when it holds a comma, quote or newline.
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int mt_confusion_write_csv(const int64_t *cm, int K, char *const *names, const char *path,
                           McErr *err) {
    char tmp[DS_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return mc_err(err, "%s: cannot create", tmp);
    char num[32];
    fputs("true\\pred", f);
    for (int p = 0; p < K; p++) {
        fputc(',', f);
        snprintf(num, sizeof num, "%d", p);
        csv_field(f, names ? names[p] : num);
    }
    fputc('\n', f);
    for (int t = 0; t < K; t++) {
        snprintf(num, sizeof num, "%d", t);
        csv_field(f, names ? names[t] : num);
        for (int p = 0; p < K; p++) fprintf(f, ",%lld", (long long)cm[(int64_t)t * K + p]);
        fputc('\n', f);
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return mc_err(err, "%s: write failed", path);
    }
    return 0;
}

// ColorBrewer "Blues" (9 classes), the anchors matplotlib's Blues map
// interpolates between; v in [0, 1] is interpolated linearly.
void mt_blues(double v, uint8_t rgb[3]) {
    static const uint8_t anchors[9][3] = {
        {247, 251, 255}, {222, 235, 247}, {198, 219, 239}, {158, 202, 225}, {107, 174, 214},
        {66, 146, 198},  {33, 113, 181},  {8, 81, 156},    {8, 48, 107}};
    if (!(v > 0)) v = 0;   // also maps NaN to white
    if (v > 1) v = 1;
    double x = v * 8;
    int i = (int)x;
    if (i >= 8) i = 7;
    double f = x - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (uint8_t)lrint(anchors[i][c] + f * (anchors[i + 1][c] - anchors[i][c]));
}

// stbi write callback: append to a growing buffer.
typedef struct {
    uint8_t *p;
    size_t   len, cap;
    int      failed;
} MemOut;

static void mem_write(void *ctx, void *data, int size) {
    MemOut *m = ctx;
    if (m->failed || size <= 0) return;
    if (m->len + (size_t)size > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 65536;
        while (nc < m->len + (size_t)size) nc *= 2;
        uint8_t *np = realloc(m->p, nc);
        if (!np) {
            m->failed = 1;
            return;
        }
        m->p = np;
        m->cap = nc;
    }
    memcpy(m->p + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

int mt_confusion_write_png(const int64_t *cm, int K, int cell, int normalize,
                           const char *path, McErr *err) {
    if (K <= 0 || cell <= 0 || (int64_t)K * cell > 16384)
        return mc_err(err, "%s: heatmap of %d classes x %d px is out of range", path, K, cell);
    int side = K * cell;
    uint8_t *img = malloc((size_t)side * (size_t)side * 3);
    if (!img) return mc_err(err, "%s: out of memory", path);

    // Scale: the largest cell, or each row's total when normalising.
    int64_t maxv = 1;
    for (int64_t i = 0; i < (int64_t)K * K; i++) maxv = cm[i] > maxv ? cm[i] : maxv;
    for (int t = 0; t < K; t++) {
        int64_t row = 0;
        for (int p = 0; p < K; p++) row += cm[(int64_t)t * K + p];
        for (int p = 0; p < K; p++) {
            double v = normalize ? (row ? (double)cm[(int64_t)t * K + p] / (double)row : 0)
                                 : (double)cm[(int64_t)t * K + p] / (double)maxv;
            uint8_t rgb[3];
            mt_blues(v, rgb);
            for (int y = 0; y < cell; y++)
                for (int x = 0; x < cell; x++)
                    memcpy(img + (((size_t)(t * cell + y) * side) + (size_t)(p * cell + x)) * 3,
                           rgb, 3);
        }
    }
    MemOut out = {0};
    int ok = stbi_write_png_to_func(mem_write, &out, side, side, 3, img, side * 3);
    free(img);
    int rc = ok && !out.failed ? ds_write_file(path, out.p, out.len, err)
                               : mc_err(err, "%s: PNG encoding failed", path);
    free(out.p);
    return rc;
}

// ---- over seeds, base-to-new ----

void mt_mean_std(const double *x, int n, double *mean, double *std) {
    if (n <= 0) {
        *mean = *std = NAN;
        return;
    }
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double m = s / n, v = 0;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *std = sqrt(v / n);   // ddof = 0 (np.std)
}

int mt_base_count(int K) { return (K + 1) / 2; }

double mt_harmonic_mean(double base, double novel) {
    return base + novel > 0 ? 2 * base * novel / (base + novel) : 0;
}

// ---- retrieval ----

double mt_recall_t2i(const float *sim, int T, int I, const int *caption_image, int k) {
    if (T <= 0) return NAN;
    int64_t hits = 0;

    // Caption t: images scoring strictly above its own image.
    for (int t = 0; t < T; t++) {
        const float *row = sim + (int64_t)t * I;
        float own = row[caption_image[t]];
        int above = 0;
        for (int i = 0; i < I && above < k; i++) above += row[i] > own;
        hits += above < k;
    }
    return (double)hits / T;
}

double mt_recall_i2t(const float *sim, int T, int I, const int *caption_image, int k) {
    if (I <= 0) return NAN;
    float *best = malloc((size_t)I * sizeof *best);
    MC_CHECK(best != NULL, "out of memory");
    for (int i = 0; i < I; i++) best[i] = -INFINITY;

    // Best score of each image's own captions.
    for (int t = 0; t < T; t++) {
        float s = sim[(int64_t)t * I + caption_image[t]];
        if (s > best[caption_image[t]]) best[caption_image[t]] = s;
    }

    // Image i: captions scoring strictly above its best own caption.
    int64_t hits = 0;
    for (int i = 0; i < I; i++) {
        int above = 0;
        for (int t = 0; t < T && above < k; t++) above += sim[(int64_t)t * I + i] > best[i];
        hits += best[i] > -INFINITY && above < k;
    }
    free(best);
    return (double)hits / I;
}

// ---- results JSON ----

struct MtJson {
    char  *p;        // the members written so far
    size_t len, cap;
    int    n_keys;
    char  *full;     // the whole object, built by mt_json_text
};

static void js_add(MtJson *j, const char *s, size_t n) {
    if (j->len + n + 3 > j->cap) {
        size_t nc = j->cap ? j->cap * 2 : 1024;
        while (nc < j->len + n + 3) nc *= 2;
        char *np = realloc(j->p, nc);
        MC_CHECK(np != NULL, "out of memory");
        j->p = np;
        j->cap = nc;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
    j->p[j->len] = 0;
}

static void js_cat(MtJson *j, const char *s) { js_add(j, s, strlen(s)); }

static void js_quoted(MtJson *j, const char *s) {
    size_t need = json_quote(NULL, 0, s);
    char *q = malloc(need + 1);
    MC_CHECK(q != NULL, "out of memory");
    json_quote(q, need + 1, s);
    js_cat(j, q);
    free(q);
}

static void js_key(MtJson *j, const char *key) {
    js_cat(j, j->n_keys++ ? ",\n  " : "  ");
    js_quoted(j, key);
    js_cat(j, ": ");
}

static void js_number(MtJson *j, double v) {
    char b[40];
    if (!isfinite(v)) snprintf(b, sizeof b, "null");
    else snprintf(b, sizeof b, "%.17g", v);
    js_cat(j, b);
}

MtJson *mt_json_new(void) {
    MtJson *j = calloc(1, sizeof *j);
    MC_CHECK(j != NULL, "out of memory");
    return j;
}

void mt_json_free(MtJson *j) {
    if (!j) return;
    free(j->p);
    free(j->full);
    free(j);
}

void mt_json_str(MtJson *j, const char *key, const char *value) {
    js_key(j, key);
    js_quoted(j, value);
}

void mt_json_num(MtJson *j, const char *key, double value) {
    js_key(j, key);
    js_number(j, value);
}

void mt_json_int(MtJson *j, const char *key, int64_t value) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)value);
    js_key(j, key);
    js_cat(j, b);
}

void mt_json_nums(MtJson *j, const char *key, const double *v, int n) {
    js_key(j, key);
    js_cat(j, "[");
    for (int i = 0; i < n; i++) {
        if (i) js_cat(j, ", ");
        js_number(j, v[i]);
    }
    js_cat(j, "]");
}

const char *mt_json_text(MtJson *j) {
    // "{\n" + the members + "\n}\n", rebuilt on each call.
    free(j->full);
    j->full = malloc(j->len + 8);
    MC_CHECK(j->full != NULL, "out of memory");
    snprintf(j->full, j->len + 8, "{\n%s\n}\n", j->p ? j->p : "");
    return j->full;
}

int mt_json_write(MtJson *j, const char *path, McErr *err) {
    const char *text = mt_json_text(j);
    return ds_write_file(path, text, strlen(text), err);
}
