// test_metrics.c - accuracy, sklearn-equivalent macro-F1 (hand-computed
// cases, including a class predicted but never true and a class absent from
// both), per-class accuracy, the confusion matrix and its CSV / PNG files,
// mean/std, base-to-new, recall@K against a brute-force ranking, results JSON.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../datasets/image.h"
#include "../datasets/metrics.h"
#include "../mobileclip/json.h"
#include "util/check.h"

static int near(double a, double b) { return fabs(a - b) < 1e-12; }

static void test_classification(void) {
    // Case A: truth 0 0 1 1 2, pred 0 1 1 1 0, K = 4 (class 3 in neither):
    // F1 = 0.5, 0.8, 0 over classes 0..2 -> 1.3 / 3.
    int ta[5] = {0, 0, 1, 1, 2}, pa[5] = {0, 1, 1, 1, 0};
    double f1 = mt_macro_f1(pa, ta, 5, 4);
    printf("macro-F1 A: %.12f want %.12f\n", f1, 1.3 / 3);
    CHECK(near(f1, 1.3 / 3), "macro-F1 case A");
    CHECK(near(mt_accuracy(pa, ta, 5), 0.6), "accuracy A");

    // Case B: class 2 predicted but never true scores 0 and counts:
    // (2/3 + 1 + 0) / 3.
    int tb[3] = {0, 0, 1}, pb[3] = {0, 2, 1};
    f1 = mt_macro_f1(pb, tb, 3, 3);
    printf("macro-F1 B: %.12f want %.12f\n", f1, (2.0 / 3 + 1) / 3);
    CHECK(near(f1, (2.0 / 3 + 1) / 3), "macro-F1 case B (predicted, never true)");

    // Perfect predictions: 1; per-class accuracy with an empty class: NaN.
    CHECK(near(mt_macro_f1(ta, ta, 5, 4), 1.0), "perfect macro-F1");
    double acc[4];
    mt_per_class_accuracy(pa, ta, 5, 4, acc);
    CHECK(near(acc[0], 0.5) && near(acc[1], 1.0) && near(acc[2], 0.0) && isnan(acc[3]),
          "per-class accuracy %g %g %g %g", acc[0], acc[1], acc[2], acc[3]);

    // Confusion: rows true, columns predicted.
    int64_t cm[16];
    mt_confusion(pa, ta, 5, 4, cm);
    CHECK(cm[0 * 4 + 0] == 1 && cm[0 * 4 + 1] == 1 && cm[1 * 4 + 1] == 2 && cm[2 * 4 + 0] == 1,
          "confusion cells");
    int64_t total = 0;
    for (int i = 0; i < 16; i++) total += cm[i];
    CHECK(total == 5, "confusion total %lld", (long long)total);
}

static void test_files(void) {
    char dir[] = "/tmp/mclip_metrics_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char csv[256], png[256], js[256];
    snprintf(csv, sizeof csv, "%s/cm.csv", dir);
    snprintf(png, sizeof png, "%s/cm.png", dir);
    snprintf(js, sizeof js, "%s/results.json", dir);
    McErr err = {{0}};
    int64_t cm[9] = {5, 0, 1, 0, 3, 0, 2, 0, 0};
    char *names[3] = {"pink primrose", "a,b", "c"};

    // CSV: header with quoted names, one row per true class.
    CHECK(mt_confusion_write_csv(cm, 3, names, csv, &err) == 0, "csv: %s", err.msg);
    char *text;
    size_t len;
    CHECK(ds_read_file(csv, 1 << 20, &text, &len, &err) == 0, "read csv");
    printf("%s", text);
    CHECK(!strcmp(text, "true\\pred,pink primrose,\"a,b\",c\npink primrose,5,0,1\n"
                        "\"a,b\",0,3,0\nc,2,0,0\n"), "csv text");
    free(text);

    // PNG: 3 classes x 4 px; the largest count is the darkest blue.
    CHECK(mt_confusion_write_png(cm, 3, 4, 0, png, &err) == 0, "png: %s", err.msg);
    DsImage im;
    CHECK(ds_image_load(png, NULL, &im, &err) == 0, "decode png: %s", err.msg);
    if (im.rgb) {
        uint8_t dark[3], white[3];
        mt_blues(1.0, dark);
        mt_blues(0.0, white);
        CHECK(im.w == 12 && im.h == 12, "png %dx%d", im.w, im.h);
        CHECK(!memcmp(im.rgb, dark, 3), "cell (0,0) is the darkest");
        CHECK(!memcmp(im.rgb + (0 * 12 + 4) * 3, white, 3), "cell (0,1) is white");
        printf("png %dx%d, (0,0) = %d %d %d\n", im.w, im.h, im.rgb[0], im.rgb[1], im.rgb[2]);
        ds_image_free(&im);
    }
    CHECK(mt_confusion_write_png(cm, 0, 4, 0, png, &err) != 0, "K=0 heatmap refused");

    // Results JSON parses back, NaN written as null.
    MtJson *j = mt_json_new();
    mt_json_str(j, "dataset", "flowers \"102\"");
    mt_json_num(j, "accuracy", 0.75);
    mt_json_num(j, "nan", NAN);
    mt_json_int(j, "k", 16);
    double seeds[3] = {0.7, 0.8, 0.9};
    mt_json_nums(j, "per_seed", seeds, 3);
    CHECK(mt_json_write(j, js, &err) == 0, "json write: %s", err.msg);
    const char *t = mt_json_text(j);
    JsonDoc *doc = json_parse(t, strlen(t), NULL, &err);
    CHECK(doc != NULL, "results JSON does not parse: %s\n%s", err.msg, t);
    if (doc) {
        const JsonValue *root = json_root(doc);
        const JsonValue *a = json_get(root, "accuracy"), *n = json_get(root, "nan");
        const JsonValue *ps = json_get(root, "per_seed"), *d = json_get(root, "dataset");
        CHECK(a && a->number == 0.75 && n && n->type == JSON_NULL, "json values");
        CHECK(ps && ps->len == 3 && ps->items[2].number == 0.9, "json array");
        CHECK(d && !strcmp(d->str, "flowers \"102\""), "json string escape");
        json_free(doc);
    }
    mt_json_free(j);
    unlink(csv);
    unlink(png);
    unlink(js);
    rmdir(dir);
}

static void test_aggregates(void) {
    double x[3] = {1, 2, 3}, m, s;
    mt_mean_std(x, 3, &m, &s);
    CHECK(near(m, 2) && near(s, sqrt(2.0 / 3)), "mean/std (ddof 0): %g %g", m, s);
    CHECK(mt_base_count(5) == 3 && mt_base_count(102) == 51 && mt_base_count(47) == 24,
          "base count");
    CHECK(near(mt_harmonic_mean(0.8, 0.6), 0.96 / 1.4), "harmonic mean");
    CHECK(mt_harmonic_mean(0, 0) == 0, "harmonic of zeros");
}

// Brute-force rank: position of `own` after a stable descending sort with
// ties broken in favour of the own entry.
static int rank_of(const float *scores, int n, int stride, int own) {
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int a = 1; a < n; a++) {
        int v = order[a], b = a - 1;
        while (b >= 0) {
            float sb = scores[(size_t)order[b] * stride], sv = scores[(size_t)v * stride];
            int before = sv > sb || (sv == sb && v == own);
            if (!before) break;
            order[b + 1] = order[b];
            b--;
        }
        order[b + 1] = v;
    }
    int r = 0;
    while (order[r] != own) r++;
    free(order);
    return r;
}

static void test_recall(void) {
    enum { I = 12, PER = 5, T = I * PER };
    float sim[T * I];
    int cap_img[T];
    test_seed(7);
    for (int round = 0; round < 2; round++) {
        // Round 0: continuous scores; round 1: scores on a coarse grid (ties).
        for (int t = 0; t < T; t++) {
            cap_img[t] = t / PER;
            for (int i = 0; i < I; i++) {
                double v = test_normal() + (i == cap_img[t] ? 1.0 : 0.0);
                sim[t * I + i] = round ? (float)floor(v * 2) : (float)v;
            }
        }
        int ks[3] = {1, 5, 10};
        for (int q = 0; q < 3; q++) {
            int k = ks[q], hit_t = 0, hit_i = 0;
            for (int t = 0; t < T; t++) hit_t += rank_of(sim + t * I, I, 1, cap_img[t]) < k;
            for (int i = 0; i < I; i++) {
                int best = T;
                for (int t = 0; t < T; t++) {
                    if (cap_img[t] != i) continue;
                    int r = rank_of(sim + i, T, I, t);
                    best = r < best ? r : best;
                }
                hit_i += best < k;
            }
            double t2i = mt_recall_t2i(sim, T, I, cap_img, k);
            double i2t = mt_recall_i2t(sim, T, I, cap_img, k);
            printf("round %d R@%-2d t2i %.4f (brute %.4f)  i2t %.4f (brute %.4f)\n", round, k,
                   t2i, (double)hit_t / T, i2t, (double)hit_i / I);
            CHECK(near(t2i, (double)hit_t / T), "t2i R@%d", k);
            CHECK(near(i2t, (double)hit_i / I), "i2t R@%d", k);
        }
    }
}

int main(void) {
    test_classification();
    test_files();
    test_aggregates();
    test_recall();
    return test_finish("test_metrics");
}
