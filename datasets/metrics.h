// metrics.h - evaluation metrics and their files: accuracy, macro-F1,
// per-class accuracy, confusion matrix (CSV and PNG heatmap), results JSON,
// mean/std over seeds, base-to-new harmonic mean, retrieval recall@K.
//
// Dims: n predictions, K classes; retrieval T texts (captions) and I images,
// similarities sim[T, I] row-major (text t, image i).
//
// Semantics followed (../shared/paper-protocol.md §9):
//   accuracy     mean of pred == truth
//   macro-F1     sklearn.metrics.f1_score(average="macro"): the unweighted
//                mean of per-class F1 = 2TP / (2TP + FP + FN) over the
//                labels present in truth OR pred (a class predicted but
//                never true scores 0 and counts; a class in neither is
//                left out)
//   confusion    sklearn confusion_matrix: rows true, columns predicted
//   mean/std     numpy's np.mean / np.std (ddof = 0), as CoOp's
//                parse_test_res.py reports seeds
//   base-to-new  CoOp's subsample_classes: the first ceil(K/2) labels are
//                base, the rest new; H = 2 b n / (b + n)
//   recall@K     t2i: a caption is a hit when fewer than K images score
//                strictly higher than its own image; i2t: an image is a
//                hit when fewer than K captions score strictly higher than
//                its best-scoring own caption (ties count as hits)
//
// Usage sketch (compiled by tests/test_metrics.c):
//
//     double acc = mt_accuracy(pred, truth, n);
//     double f1 = mt_macro_f1(pred, truth, n, K);
//     int64_t *cm = calloc(K * K, sizeof *cm);
//     mt_confusion(pred, truth, n, K, cm);
//     mt_confusion_write_png(cm, K, 4, 1, "cm.png", &err);
//     MtJson *j = mt_json_new();
//     mt_json_num(j, "accuracy", acc);
//     mt_json_write(j, "results.json", &err);
//     mt_json_free(j);
#ifndef MCLIP_METRICS_H
#define MCLIP_METRICS_H

#include <stdint.h>

#include "../tensor/tensor.h"

// ---- classification ----

double mt_accuracy(const int *pred, const int *truth, int64_t n);
// Labels outside 0..K-1 are a programmer error (MC_CHECK).
double mt_macro_f1(const int *pred, const int *truth, int64_t n, int K);
// acc[K]: share of class c's items predicted c; NaN when class c has none.
void   mt_per_class_accuracy(const int *pred, const int *truth, int64_t n, int K, double *acc);
// cm[K * K] = counts, cm[t * K + p] (overwritten).
void   mt_confusion(const int *pred, const int *truth, int64_t n, int K, int64_t *cm);
// CSV: header "true\\pred,<names...>", one row per true class.  names may
// be NULL (class indices are written).
int    mt_confusion_write_csv(const int64_t *cm, int K, char *const *names, const char *path,
                              McErr *err);
// PNG heatmap, K*cell pixels square, a 'Blues'-like colormap (white = 0,
// dark blue = max).  normalize 1: each row divided by its total (recall
// view), 0: counts scaled by the largest cell.  No numbers are drawn.
int    mt_confusion_write_png(const int64_t *cm, int K, int cell, int normalize,
                              const char *path, McErr *err);
// The colormap itself: v in [0, 1] -> rgb[3].
void   mt_blues(double v, uint8_t rgb[3]);

// ---- over seeds, base-to-new ----

void   mt_mean_std(const double *x, int n, double *mean, double *std);
int    mt_base_count(int K);                      // ceil(K / 2)
double mt_harmonic_mean(double base, double novel);

// ---- retrieval ----

// Recall@k in [0, 1].  caption_image[T] is the image of each caption.
double mt_recall_t2i(const float *sim, int T, int I, const int *caption_image, int k);
double mt_recall_i2t(const float *sim, int T, int I, const int *caption_image, int k);

// ---- results JSON ----

// A flat JSON object built key by key (insertion order kept) and written
// atomically; arrays of numbers and nested objects of numbers allowed.
typedef struct MtJson MtJson;
MtJson *mt_json_new(void);
void    mt_json_free(MtJson *j);
void    mt_json_str(MtJson *j, const char *key, const char *value);
void    mt_json_num(MtJson *j, const char *key, double value);   // NaN/inf -> null
void    mt_json_int(MtJson *j, const char *key, int64_t value);
void    mt_json_nums(MtJson *j, const char *key, const double *v, int n);
// The text so far (valid JSON), owned by j.
const char *mt_json_text(MtJson *j);
int     mt_json_write(MtJson *j, const char *path, McErr *err);

#endif
