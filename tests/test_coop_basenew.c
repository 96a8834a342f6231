// test_coop_basenew.c - CoOp's base-to-new evaluation through the binary:
// `mclip coop train|eval --subsample base|new|all` and `coop eval
// --base-to-new` on a small feature set (the --features fast path).
//
// Checked (datasets/metrics.h: base = the first ceil(K/2) labels, new = the
// rest; H = 2 b n / (b + n)):
//   * with K = 5 classes, base keeps labels 0..2 and new labels 3..4
//     remapped to 0..1: counts, labels, class names and feature rows of the
//     subset (written by --dump-features) match the full set's, in order;
//   * --base-to-new reports base and new accuracy of the same prompt, equal
//     to separate --subsample base / new runs, and their harmonic mean
//     equals 2ab/(a+b); the new half's confusion CSV has the new names;
//   * a class-specific (--csc) prompt is refused on the new classes with a
//     message saying why; a bad --subsample value is a usage error (2).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../coop/randmodel.h"
#include "../coop/train.h"
#include "../datasets/dataset.h"
#include "../datasets/metrics.h"
#include "../mobileclip/json.h"
#include "../mobileclip/model.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"
#include "util/sys.h"

enum { K = 5, E = 16, NT = 30, NV = 15, N = NT + NV };

static char tmpdir[256];
static float feats[N * E];
static int64_t lab_all[N], spls[N];
static const char *names[K] = {"red circle", "green_square", "blue ring", "x", "y"};

static void path_in(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

// A random text-only model (W 32, 2 layers, the full vocabulary).
static int small_model(char *path, size_t len) {
    McModelConfig c = *mc_config_find("S0");
    c.name = "custom";
    c.text = (McTextConfig){.vocab = 49408, .context = 77, .width = 32, .heads = 1, .layers = 2,
                            .embed = E, .causal = 0};
    McErr err;
    path_in(path, len, "small.safetensors");
    int rc = coop_randmodel_write(path, &c, 3, 1, &err);
    CHECK(rc == 0, "%s", rc ? err.msg : "");
    return rc;
}

// Separable features: class centres plus noise, normalised; labels cycle
// through the classes, the first NT items are train, the rest val.
static void write_featset(const char *path) {
    float centre[K * E];
    test_seed(77);
    test_fill_normal(centre, K * E, 1.0);
    for (int i = 0; i < N; i++) {
        lab_all[i] = (i * 3 + i / K) % K;
        spls[i] = i < NT ? DS_TRAIN : DS_VAL;
        test_fill_normal(feats + i * E, E, 0.6);
        for (int j = 0; j < E; j++) feats[i * E + j] += centre[lab_all[i] * E + j];
    }
    coop_normalize_rows(feats, N, E);
    StWriter *w = st_writer_new();
    st_writer_add_f32(w, "features", MC_DIMS(N, E), feats);
    st_writer_add_i64(w, "labels", MC_DIMS(N), lab_all);
    st_writer_add_i64(w, "split", MC_DIMS(N), spls);
    st_writer_meta(w, "classnames", "[\"red circle\", \"green_square\", \"blue ring\", \"x\", "
                   "\"y\"]");
    McErr err;
    MC_CHECK(st_writer_save(w, path, &err) == 0, "%s", err.msg);
    st_writer_free(w);
}

// A number field of a results JSON (NAN when absent).
static double jnum(const char *text, const char *key) {
    McErr err;
    JsonDoc *doc = json_parse(text, strlen(text), NULL, &err);
    if (!doc) return NAN;
    const JsonValue *v = json_get(json_root(doc), key);
    double r = v && v->type == JSON_NUMBER ? v->number : NAN;
    json_free(doc);
    return r;
}

// The dumped subset of one half: train rows then val rows, each the full
// set's rows of the half's classes in order, labels shifted by lo.
static void check_dump(const char *path, int lo, int hi) {
    McErr err;
    StFile *f = st_open(path, &err);
    CHECK(f != NULL, "%s", f ? "" : err.msg);
    if (!f) return;
    const StTensor *tf = st_find(f, "features"), *tl = st_find(f, "labels");
    const StTensor *ts = st_find(f, "split");
    int64_t want = 0;
    for (int i = 0; i < N; i++) want += lab_all[i] >= lo && lab_all[i] < hi;
    CHECK(tf && tl && ts && tf->shape[0] == want && tl->numel == want,
          "%s: %lld rows, expected %lld", path, tf ? (long long)tf->shape[0] : -1LL,
          (long long)want);
    if (!tf || !tl || !ts || tf->shape[0] != want) {
        st_close(f);
        return;
    }
    float *x = mc_malloc((size_t)(want * E + 1) * sizeof *x);
    int64_t *l = mc_malloc((size_t)(want + 1) * sizeof *l);
    int64_t *s = mc_malloc((size_t)(want + 1) * sizeof *s);
    MC_CHECK(!st_to_f32(f, tf, x, want * E, &err) && !st_to_i64(f, tl, l, want, &err) &&
             !st_to_i64(f, ts, s, want, &err), "%s", err.msg);
    // Expected order: the train items of the half, then its val items.
    int64_t o = 0, bad_label = 0, bad_split = 0;
    double maxerr = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N; i++) {
            if (lab_all[i] < lo || lab_all[i] >= hi || (pass == 0) != (spls[i] == DS_TRAIN))
                continue;
            bad_label += l[o] != lab_all[i] - lo;
            bad_split += s[o] != spls[i];
            for (int j = 0; j < E; j++) {
                double d = fabs((double)x[o * E + j] - feats[i * E + j]);
                if (d > maxerr) maxerr = d;
            }
            o++;
        }
    printf("%s: %lld rows, labels %d..%d -> 0..%d, max feature error %.3g\n", path,
           (long long)want, lo, hi - 1, hi - lo - 1, maxerr);
    CHECK(bad_label == 0, "%s: %lld labels not remapped to label - %d", path,
          (long long)bad_label, lo);
    CHECK(bad_split == 0, "%s: %lld rows in the wrong split", path, (long long)bad_split);
    // Rows renormalised once more by the loader: observed error ~1e-8.
    CHECK(maxerr < 1e-6, "%s: feature rows differ by %.3g", path, maxerr);
    // Class names: the half's, in order.
    const char *cn = st_meta(f, "classnames");
    char want_names[256] = "[";
    for (int k = lo; k < hi; k++)
        snprintf(want_names + strlen(want_names), sizeof want_names - strlen(want_names),
                 "%s\"%s\"", k > lo ? ", " : "", names[k]);
    strcat(want_names, "]");
    CHECK(cn && !strcmp(cn, want_names), "%s: classnames %s, expected %s", path,
          cn ? cn : "(none)", want_names);
    mc_free(x), mc_free(l), mc_free(s);
    st_close(f);
}

int main(void) {
    mc_set_threads(1);
    const char *bin = getenv("MCLIP_BIN");
    CHECK(bin != NULL, "MCLIP_BIN is not set: run through `make test`");
    if (!bin) return test_finish("test_coop_basenew");
    const char *dir = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mclip_basenew_XXXXXX", dir ? dir : "/tmp");
    MC_CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
    char model[512], fs[512], cmd[4096];
    static char res[1 << 16];
    path_in(fs, sizeof fs, "set.safetensors");
    write_featset(fs);
    if (small_model(model, sizeof model)) return test_finish("test_coop_basenew");
    int nb = mt_base_count(K);
    CHECK(nb == 3, "mt_base_count(5) = %d, expected 3", nb);
    int base_tr = 0, base_va = 0, new_tr = 0, new_va = 0;
    for (int i = 0; i < N; i++) {
        int b = lab_all[i] < nb, t = spls[i] == DS_TRAIN;
        base_tr += b && t, base_va += b && !t, new_tr += !b && t, new_va += !b && !t;
    }
    char pre[1024];
    snprintf(pre, sizeof pre, "MCLIP_CACHE='%s' '%s' coop", tmpdir, bin);
    const char *opts = "--logit-scale 30 --threads 1";

    // Train on base (and dump the base half), then train briefly on new.
    snprintf(cmd, sizeof cmd, "%s train --model '%s' --features '%s' --subsample base "
             "--steps 20 --batch 9 --lr 1e-2 --eval-every 10 %s --out '%s/base.prompt' "
             "--dump-features '%s/base.st' 2>'%s/train.log'", pre, model, fs, opts, tmpdir,
             tmpdir, tmpdir);
    int rc = test_run_capture(cmd, res, sizeof res);
    printf("train --subsample base (rc %d): %.300s\n", rc, res);
    CHECK(rc == 0 && jnum(res, "classes") == nb && jnum(res, "n_train") == base_tr &&
          jnum(res, "n_val") == base_va && strstr(res, "\"subsample\": \"base\""),
          "train base: rc %d, expected %d classes, %d train, %d val: %s", rc, nb, base_tr,
          base_va, res);
    char p[512];
    path_in(p, sizeof p, "base.st");
    check_dump(p, 0, nb);
    snprintf(cmd, sizeof cmd, "%s train --model '%s' --features '%s' --subsample new "
             "--steps 1 %s --out '%s/new.prompt' --dump-features '%s/new.st' "
             "2>'%s/train2.log'", pre, model, fs, opts, tmpdir, tmpdir, tmpdir);
    rc = test_run_capture(cmd, res, sizeof res);
    CHECK(rc == 0 && jnum(res, "classes") == K - nb && jnum(res, "n_train") == new_tr &&
          jnum(res, "n_val") == new_va, "train new: rc %d, expected %d classes, %d train, "
          "%d val: %s", rc, K - nb, new_tr, new_va, res);
    path_in(p, sizeof p, "new.st");
    check_dump(p, nb, K);

    // Base-to-new with the base prompt, and each half on its own.
    snprintf(cmd, sizeof cmd, "%s eval --model '%s' --prompt '%s/base.prompt' --features '%s' "
             "--base-to-new %s 2>/dev/null", pre, model, tmpdir, fs, opts);
    rc = test_run_capture(cmd, res, sizeof res);
    printf("eval --base-to-new (rc %d): %.400s\n", rc, strstr(res, "\"accuracy\"") ?
           strstr(res, "\"accuracy\"") : res);
    double a = jnum(res, "base_accuracy"), b = jnum(res, "new_accuracy");
    double h = jnum(res, "harmonic_mean");
    CHECK(rc == 0 && isfinite(a) && isfinite(b) && isfinite(h), "base-to-new: rc %d: %s", rc,
          res);
    CHECK(jnum(res, "n_base") == base_va && jnum(res, "n_new") == new_va &&
          jnum(res, "base_classes") == nb && jnum(res, "new_classes") == K - nb,
          "base-to-new counts: %s", res);
    double h2 = a + b > 0 ? 2 * a * b / (a + b) : 0;
    printf("base %.6f new %.6f H %.17g, 2ab/(a+b) %.17g\n", a, b, h, h2);
    // Both from the same doubles printed with 17 digits: equal to rounding.
    CHECK(fabs(h - h2) <= 1e-15, "harmonic mean %.17g != 2ab/(a+b) %.17g", h, h2);
    CHECK(a > 0.5, "the base prompt should fit its own classes (base accuracy %.3f)", a);
    snprintf(cmd, sizeof cmd, "%s eval --model '%s' --prompt '%s/base.prompt' --features '%s' "
             "--subsample base %s 2>/dev/null", pre, model, tmpdir, fs, opts);
    rc = test_run_capture(cmd, res, sizeof res);
    CHECK(rc == 0 && jnum(res, "accuracy") == a && jnum(res, "n") == base_va &&
          jnum(res, "classes") == nb, "eval base (rc %d) != base half %.17g: %s", rc, a, res);
    snprintf(cmd, sizeof cmd, "%s eval --model '%s' --prompt '%s/base.prompt' --features '%s' "
             "--subsample new --confusion '%s/cm.csv' %s 2>/dev/null", pre, model, tmpdir, fs,
             tmpdir, opts);
    rc = test_run_capture(cmd, res, sizeof res);
    CHECK(rc == 0 && jnum(res, "accuracy") == b && jnum(res, "n") == new_va &&
          jnum(res, "classes") == K - nb, "eval new (rc %d) != new half %.17g: %s", rc, b, res);
    // The new half's confusion matrix: names x, y; one row per class with
    // all of that class's val items.
    path_in(p, sizeof p, "cm.csv");
    FILE *f = fopen(p, "r");
    CHECK(f != NULL, "no confusion CSV %s", p);
    if (f) {
        char line[256];
        int ok = fgets(line, sizeof line, f) && !strcmp(line, "true\\pred,x,y\n");
        CHECK(ok, "confusion header: %s", line);
        for (int k = nb; k < K && ok; k++) {
            long c0 = -1, c1 = -1;
            int want = 0;
            for (int i = 0; i < N; i++) want += lab_all[i] == k && spls[i] == DS_VAL;
            char nm[32];
            ok = fgets(line, sizeof line, f) && sscanf(line, "%31[^,],%ld,%ld", nm, &c0, &c1) == 3;
            CHECK(ok && !strcmp(nm, names[k]) && c0 + c1 == want, "confusion row %s: %s "
                  "(expected %d items)", names[k], line, want);
        }
        fclose(f);
    }

    // Class-specific contexts: fine on base, refused on new.
    snprintf(cmd, sizeof cmd, "%s train --model '%s' --features '%s' --subsample base --csc "
             "--steps 2 %s --out '%s/csc.prompt' 2>'%s/train3.log'", pre, model, fs, opts,
             tmpdir, tmpdir);
    rc = test_run_capture(cmd, res, sizeof res);
    CHECK(rc == 0, "csc train on base: rc %d: %s", rc, res);
    const char *how[2] = {"--subsample new", "--base-to-new"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "%s eval --model '%s' --prompt '%s/csc.prompt' --features "
                 "'%s' %s %s 2>&1", pre, model, tmpdir, fs, how[i], opts);
        rc = test_run_capture(cmd, res, sizeof res);
        printf("csc prompt %s (rc %d): %.200s\n", how[i], rc, res);
        CHECK(rc == 1 && strstr(res, "class-specific") && strstr(res, "new classes") &&
              !strstr(res, "\"accuracy\""), "csc prompt %s not refused: rc %d: %s", how[i],
              rc, res);
    }
    snprintf(cmd, sizeof cmd, "%s eval --model '%s' --prompt '%s/csc.prompt' --features '%s' "
             "--subsample base %s 2>&1", pre, model, tmpdir, fs, opts);
    rc = test_run_capture(cmd, res, sizeof res);
    CHECK(rc == 0, "csc prompt on base: rc %d: %s", rc, res);

    // Usage errors.
    snprintf(cmd, sizeof cmd, "%s eval --model '%s' --prompt '%s/base.prompt' --features '%s' "
             "--subsample half 2>&1", pre, model, tmpdir, fs);
    rc = test_run_capture(cmd, res, sizeof res);
    CHECK(rc == 2 && strstr(res, "base, new or all"), "--subsample half: rc %d: %s", rc, res);
    snprintf(cmd, sizeof cmd, "%s train --model '%s' --features '%s' --base-to-new 2>&1", pre,
             model, fs);
    rc = test_run_capture(cmd, res, sizeof res);
    CHECK(rc == 2, "train --base-to-new: rc %d: %s", rc, res);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return test_finish("test_coop_basenew");
}
