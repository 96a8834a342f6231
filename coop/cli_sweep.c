// cli_sweep.c - `mclip sweep summary`: the results of a CoOp sweep
// (coop/sweep/Makefile.sweep, coop/sweep/slurm_array.sh) as a table, a CSV
// file and an accuracy-vs-shots SVG chart.
//
//   mclip sweep summary RESULTS_DIR [--csv table.csv] [--svg chart.svg]
//                       [--metric test|val] [--title TEXT]
//
// Every *.json file under RESULTS_DIR (recursively) whose "format" is
// "mclip-sweep-run-1" (coop/sweep/run_one.sh) is one run: model, dataset,
// shots ("1".."16", "all"; "0" for a zero-shot entry), seed, and the
// accuracy taken from test.accuracy (--metric test, the default) or from
// the train JSON's val accuracy of the tested prompt (last_val_acc, or
// best_val_acc when the run tested the best prompt).  Other JSON files (the
// per-step train/test outputs beside each run) are skipped.
//
// Runs are grouped by (model, dataset, shots); each group's mean and
// standard deviation over its seeds are numpy's np.mean / np.std (ddof 0,
// datasets/metrics.h mt_mean_std), as CoOp's parse_test_res.py reports
// seeds.  Groups are ordered by model, dataset, then shots (numbers
// ascending, "all" last).
//
// Chart: one line per (model, dataset), one circle per group at its mean
// (in %) with an error bar of +- one std; x positions log2-spaced: k = 0 at
// 0, k >= 1 at 1 + log2(k) (1, 2, 4, 8, 16 -> 1..5), "all" 1.5 past the
// largest number; tick labels are the k values present.
//
// Exit status: 0 ok, 1 a runtime error (no runs, unreadable file), 2 usage.
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../datasets/dataset.h"
#include "../datasets/metrics.h"
#include "../mobileclip/json.h"
#include "cli.h"

#define SWEEP_FORMAT "mclip-sweep-run-1"
#define SWEEP_MAX_FILE ((size_t)64 << 20)   // largest run JSON read
#define SHOTS_ALL 1000000                    // sort key of "all"

typedef struct {
    char model[64], dataset[64], shots[16];
    int  k;          // shots as a number; SHOTS_ALL for "all"
    long seed;
    double acc;      // in [0, 1]
    char *path;
} Run;

typedef struct {
    Run   *v;
    int    n, cap;
    char **files;    // every *.json under the folder, sorted
    int    n_files, cap_files;
} Runs;

// A group: runs [first, first + n) of the sorted list share model, dataset, shots.
typedef struct {
    int first, n;
    double mean, std;   // fractions
} Group;

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = mc_malloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

// ---- reading ----

static void add_file(Runs *r, const char *path) {
    if (r->n_files == r->cap_files) {
        r->cap_files = r->cap_files ? 2 * r->cap_files : 64;
        char **nv = mc_malloc((size_t)r->cap_files * sizeof *nv);
        if (r->n_files) memcpy(nv, r->files, (size_t)r->n_files * sizeof *nv);
        mc_free(r->files);
        r->files = nv;
    }
    r->files[r->n_files++] = dup_str(path);
}

// Every regular *.json file below dir (symbolic links followed; depth bounded).
static int walk(Runs *r, const char *dir, int depth, McErr *err) {
    if (depth > 32) return mc_err(err, "%s: folders nested more than 32 deep", dir);
    DIR *d = opendir(dir);
    if (!d) return mc_err(err, "%s: cannot open the folder", dir);
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = ds_join(dir, e->d_name);
        struct stat st;
        size_t n = strlen(p);
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) rc = walk(r, p, depth + 1, err);
            else if (S_ISREG(st.st_mode) && n > 5 && !strcmp(p + n - 5, ".json")) add_file(r, p);
        }
        mc_free(p);
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *get_str(const JsonValue *o, const char *key) {
    const JsonValue *v = json_get(o, key);
    return v && v->type == JSON_STRING ? v->str : NULL;
}

static int get_num(const JsonValue *o, const char *key, double *out) {
    const JsonValue *v = json_get(o, key);
    if (!v || v->type != JSON_NUMBER) return -1;
    *out = v->number;
    return 0;
}

// Parse "1".."100000", "all" (and "0").  -1 when neither.
static int parse_shots(const char *s) {
    if (!strcmp(s, "all")) return SHOTS_ALL;
    char *end;
    long k = strtol(s, &end, 10);
    if (!*s || *end || k < 0 || k >= SHOTS_ALL) return -1;
    return (int)k;
}

// One file: 1 when it is a run (appended), 0 when another JSON, -1 on error.
static int read_run(Runs *r, const char *path, int metric_val, McErr *err) {
    char *text;
    size_t len;
    if (ds_read_file(path, SWEEP_MAX_FILE, &text, &len, err)) return -1;
    McErr jerr;
    JsonDoc *doc = json_parse(text, len, NULL, &jerr);
    mc_free(text);
    if (!doc) return 0;   // not JSON (a partial file of another tool): not a run
    const JsonValue *root = json_root(doc);
    const char *fmt = get_str(root, "format");
    if (!fmt || strcmp(fmt, SWEEP_FORMAT)) {
        json_free(doc);
        return 0;
    }
    // The run's identity and its accuracy.
    Run x = {0};
    const char *model = get_str(root, "model"), *ds = get_str(root, "dataset");
    const char *shots = get_str(root, "shots"), *prompt = get_str(root, "prompt");
    const JsonValue *seed = json_get(root, "seed");
    const JsonValue *part = json_get(root, metric_val ? "train" : "test");
    int64_t sv = 0;
    int ok = model && ds && shots && seed && json_int(seed, &sv) == 0 && part &&
             part->type == JSON_OBJECT && strlen(model) < sizeof x.model &&
             strlen(ds) < sizeof x.dataset && strlen(shots) < sizeof x.shots &&
             (x.k = parse_shots(shots)) >= 0;
    const char *key = !metric_val ? "accuracy"
                    : prompt && !strcmp(prompt, "best") ? "best_val_acc" : "last_val_acc";
    if (ok && get_num(part, key, &x.acc)) ok = 0;
    if (!ok) {
        json_free(doc);
        return mc_err(err, "%s: a %s file without model, dataset, shots (a number or all), "
                      "seed (an integer) and %s.%s", path, SWEEP_FORMAT,
                      metric_val ? "train" : "test", key);
    }
    snprintf(x.model, sizeof x.model, "%s", model);
    snprintf(x.dataset, sizeof x.dataset, "%s", ds);
    snprintf(x.shots, sizeof x.shots, "%s", shots);
    x.seed = (long)sv;
    x.path = dup_str(path);
    json_free(doc);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        Run *nv = mc_malloc((size_t)r->cap * sizeof *nv);
        if (r->n) memcpy(nv, r->v, (size_t)r->n * sizeof *nv);
        mc_free(r->v);
        r->v = nv;
    }
    r->v[r->n++] = x;
    return 1;
}

static void runs_free(Runs *r) {
    for (int i = 0; i < r->n; i++) mc_free(r->v[i].path);
    for (int i = 0; i < r->n_files; i++) mc_free(r->files[i]);
    mc_free(r->v), mc_free(r->files);
}

// ---- grouping ----

static int cmp_run(const void *pa, const void *pb) {
    const Run *a = pa, *b = pb;
    int c = strcmp(a->model, b->model);
    if (!c) c = strcmp(a->dataset, b->dataset);
    if (!c) c = (a->k > b->k) - (a->k < b->k);
    if (!c) c = (a->seed > b->seed) - (a->seed < b->seed);
    return c;
}

static int same_group(const Run *a, const Run *b) {
    return !strcmp(a->model, b->model) && !strcmp(a->dataset, b->dataset) && a->k == b->k;
}

static int same_series(const Run *a, const Run *b) {
    return !strcmp(a->model, b->model) && !strcmp(a->dataset, b->dataset);
}

// Sort the runs and group them; mean/std over each group's seeds.  Returns
// the number of groups (g has room for r->n).
static int make_groups(Runs *r, Group *g) {
    qsort(r->v, (size_t)r->n, sizeof *r->v, cmp_run);
    int ng = 0;
    double *acc = mc_malloc((size_t)(r->n + 1) * sizeof *acc);
    for (int i = 0; i < r->n;) {
        int j = i;
        while (j < r->n && same_group(&r->v[i], &r->v[j])) acc[j - i] = r->v[j].acc, j++;
        g[ng].first = i, g[ng].n = j - i;
        mt_mean_std(acc, j - i, &g[ng].mean, &g[ng].std);
        // The same seed twice (two copies of a run) is reported, both kept.
        for (int a = i + 1; a < j; a++)
            if (r->v[a].seed == r->v[a - 1].seed)
                fprintf(stderr, "mclip sweep summary: warning: seed %ld of %s %s k=%s twice "
                        "(%s, %s)\n", r->v[a].seed, r->v[a].model, r->v[a].dataset,
                        r->v[a].shots, r->v[a - 1].path, r->v[a].path);
        ng++, i = j;
    }
    mc_free(acc);
    return ng;
}

// ---- text output ----

typedef struct { char *s; size_t len, cap; } Buf;

static void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(Buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->s && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->len + (size_t)n + 1) * 2 + 1024;
        char *ns = mc_malloc(cap);
        if (b->s) memcpy(ns, b->s, b->len + 1);
        mc_free(b->s);
        b->s = ns, b->cap = cap;
    }
}

// Text with &, <, >, " escaped for XML.
static void bxml(Buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '&') bprintf(b, "&amp;");
        else if (*s == '<') bprintf(b, "&lt;");
        else if (*s == '>') bprintf(b, "&gt;");
        else if (*s == '"') bprintf(b, "&quot;");
        else bprintf(b, "%c", *s);
    }
}


static void seeds_text(const Runs *r, const Group *g, char *buf, size_t len) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < g->n && o + 24 < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%ld", i ? " " : "", r->v[g->first + i].seed);
}

static void print_table(const Runs *r, const Group *g, int ng, int metric_val) {
    char seeds[256];
    printf("%-16s %-14s %5s %5s %8s %8s  %s\n", "model", "dataset", "k", "runs",
           metric_val ? "val %" : "test %", "std %", "seeds");
    for (int i = 0; i < ng; i++) {
        const Run *x = &r->v[g[i].first];
        seeds_text(r, &g[i], seeds, sizeof seeds);
        printf("%-16s %-14s %5s %5d %8.2f %8.2f  %s\n", x->model, x->dataset, x->shots, g[i].n,
               100 * g[i].mean, 100 * g[i].std, seeds);
    }
}

// A CSV field, quoted when it holds a comma, quote or line break.
static void bcsv(Buf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        bprintf(b, "%s", s);
        return;
    }
    bprintf(b, "\"");
    for (; *s; s++) bprintf(b, "%s%c", *s == '"' ? "\"" : "", *s);
    bprintf(b, "\"");
}

// model,dataset,shots,runs,mean,std,seeds (fractions, 17 significant digits).
static int write_csv(const char *path, const Runs *r, const Group *g, int ng, McErr *err) {
    Buf b = {0};
    char seeds[256];
    bprintf(&b, "model,dataset,shots,runs,mean,std,seeds\n");
    for (int i = 0; i < ng; i++) {
        const Run *x = &r->v[g[i].first];
        seeds_text(r, &g[i], seeds, sizeof seeds);
        bcsv(&b, x->model);
        bprintf(&b, ",");
        bcsv(&b, x->dataset);
        bprintf(&b, ",%s,%d,%.17g,%.17g,%s\n", x->shots, g[i].n, g[i].mean, g[i].std, seeds);
    }
    int rc = ds_write_file(path, b.s, b.len, err);
    mc_free(b.s);
    return rc;
}

// ---- SVG ----

// x position of a shots value: 0 -> 0, k -> 1 + log2 k, all -> past the largest.
static double shot_pos(int k, double all_pos) {
    if (k == SHOTS_ALL) return all_pos;
    return k == 0 ? 0 : 1 + log2((double)k);
}

// A "nice" grid step (1, 2, 5 x 10^n) giving at most about 8 lines over span.
static double nice_step(double span) {
    double raw = span / 8, p = pow(10, floor(log10(raw)));
    return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

static int write_svg(const char *path, const Runs *r, const Group *g, int ng, int metric_val,
                     const char *title, McErr *err) {
    const double W = 760, H = 460, L = 70, R = 210, T = 44, B = 64;
    const double pw = W - L - R, ph = H - T - B;
    // Ranges: x over the shots present, y over mean +- std in percent.
    double max_num = 0, lo = 100, hi = 0;
    int has_all = 0;
    for (int i = 0; i < ng; i++) {
        int k = r->v[g[i].first].k;
        if (k == SHOTS_ALL) has_all = 1;
        else max_num = fmax(max_num, shot_pos(k, 0));
        lo = fmin(lo, 100 * (g[i].mean - g[i].std));
        hi = fmax(hi, 100 * (g[i].mean + g[i].std));
    }
    double all_pos = max_num + 1.5, x0 = 1e9, x1 = -1e9;
    for (int i = 0; i < ng; i++) {
        double p = shot_pos(r->v[g[i].first].k, all_pos);
        x0 = fmin(x0, p), x1 = fmax(x1, p);
    }
    x0 -= 0.5, x1 += 0.5;
    double step = nice_step(fmax(hi - lo, 10));
    double y0 = fmax(0, floor(lo / step) * step), y1 = fmin(100, ceil(hi / step) * step);
    if (y1 - y0 < step) y1 = fmin(100, y0 + step), y0 = y1 - step;
#define SX(p) (L + ((p) - x0) / (x1 - x0) * pw)
#define SY(v) (T + ph - ((v) - y0) / (y1 - y0) * ph)

    Buf b = {0};
    bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    bprintf(&b, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    bprintf(&b, "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", L + pw / 2);
    bxml(&b, title);
    bprintf(&b, "</text>\n");
    // Grid and y ticks.
    for (double v = y0; v <= y1 + 1e-9; v += step) {
        bprintf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n",
                L, SY(v), L + pw, SY(v));
        bprintf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 6,
                SY(v) + 4, v);
    }
    // x ticks: every shots value present, once.
    for (int i = 0; i < ng; i++) {
        int k = r->v[g[i].first].k, seen = 0;
        for (int j = 0; j < i; j++) seen |= r->v[g[j].first].k == k;
        if (seen) continue;
        double x = SX(shot_pos(k, all_pos));
        bprintf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                x, T + ph, x, T + ph + 5);
        bprintf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x, T + ph + 18);
        bxml(&b, r->v[g[i].first].shots);
        bprintf(&b, "</text>\n");
    }
    // Axes and their labels.
    bprintf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
            L, T + ph, L + pw, T + ph);
    bprintf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
            L, T, L, T + ph);
    bprintf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">shots per class (k)%s"
            "</text>\n", L + pw / 2, H - 18, has_all ? "; all = every training image" : "");
    bprintf(&b, "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
            "%.1f)\">%s accuracy (%%), mean &#177; std over seeds</text>\n", T + ph / 2,
            T + ph / 2, metric_val ? "val" : "test");
    // One series per (model, dataset): line, error bars, points, legend entry.
    int series = 0;
    for (int i = 0; i < ng;) {
        int j = i;
        while (j < ng && same_series(&r->v[g[i].first], &r->v[g[j].first])) j++;
        const char *col = PALETTE[series % (int)(sizeof PALETTE / sizeof *PALETTE)];
        const Run *x = &r->v[g[i].first];
        bprintf(&b, "<g class=\"series\">\n");
        if (j - i > 1) {
            bprintf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
            for (int a = i; a < j; a++)
                bprintf(&b, "%s%.1f,%.1f", a > i ? " " : "",
                        SX(shot_pos(r->v[g[a].first].k, all_pos)), SY(100 * g[a].mean));
            bprintf(&b, "\"/>\n");
        }
        for (int a = i; a < j; a++) {
            double px = SX(shot_pos(r->v[g[a].first].k, all_pos)), m = 100 * g[a].mean;
            double s = 100 * g[a].std, ya = SY(fmin(y1, m + s)), yb = SY(fmax(y0, m - s));
            bprintf(&b, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" "
                    "stroke=\"%s\" fill=\"none\"/>\n", px, ya, yb, px - 4, ya, px + 4,
                    px - 4, yb, px + 4, col);
            bprintf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>", px,
                    SY(m), col);
            bxml(&b, x->model);
            bprintf(&b, " ");
            bxml(&b, x->dataset);
            bprintf(&b, " k=");
            bxml(&b, r->v[g[a].first].shots);
            bprintf(&b, ": %.2f &#177; %.2f (%d runs)</title></circle>\n", m, s, g[a].n);
        }
        double ly = T + 10 + 20 * series;
        bprintf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\"/>\n", L + pw + 16, ly, L + pw + 40, ly, col);
        bprintf(&b, "<text x=\"%.1f\" y=\"%.1f\">", L + pw + 46, ly + 4);
        bxml(&b, x->model);
        bprintf(&b, " / ");
        bxml(&b, x->dataset);
        bprintf(&b, "</text>\n</g>\n");
        series++, i = j;
    }
    bprintf(&b, "</svg>\n");
#undef SX
#undef SY
    int rc = ds_write_file(path, b.s, b.len, err);
    mc_free(b.s);
    return rc;
}

// ---- command ----

static void usage(FILE *f) {
    fprintf(f,
        "usage: mclip sweep summary RESULTS_DIR [--csv table.csv] [--svg chart.svg]\n"
        "                           [--metric test|val] [--title TEXT]\n"
        "\n"
        "  Reads every run JSON under RESULTS_DIR (coop/sweep/run_one.sh writes them;\n"
        "  coop/sweep/Makefile.sweep and slurm_array.sh run sweeps), and prints the mean\n"
        "  and standard deviation (numpy's, ddof 0) of the accuracy over seeds per\n"
        "  (model, dataset, k).  --csv writes that table (fractions), --svg an\n"
        "  accuracy-vs-shots chart with +-std error bars.  --metric val uses the\n"
        "  training run's val accuracy of the tested prompt instead of test accuracy.\n");
}

static int cmd_summary(int argc, char **argv) {
    const char *dir = NULL, *csv = NULL, *svg = NULL, *title = NULL;
    int metric_val = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--csv") || !strcmp(a, "--svg") || !strcmp(a, "--metric") ||
            !strcmp(a, "--title")) {
            if (!v) {
                fprintf(stderr, "mclip sweep summary: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--csv")) csv = v;
            else if (!strcmp(a, "--svg")) svg = v;
            else if (!strcmp(a, "--title")) title = v;
            else if (!strcmp(v, "test") || !strcmp(v, "val")) metric_val = !strcmp(v, "val");
            else {
                fprintf(stderr, "mclip sweep summary: --metric %s: expected test or val\n", v);
                return 2;
            }
            i++;
        } else if (a[0] == '-' || dir) {
            fprintf(stderr, "mclip sweep summary: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    McErr err;
    Runs r = {0};
    Group *g = NULL;
    int rc = 1, others = 0;
    if (walk(&r, dir, 0, &err)) goto fail;
    qsort(r.files, (size_t)r.n_files, sizeof *r.files, cmp_str);
    for (int i = 0; i < r.n_files; i++) {
        int got = read_run(&r, r.files[i], metric_val, &err);
        if (got < 0) goto fail;
        others += !got;
    }
    if (!r.n) {
        mc_err(&err, "%s: no run JSONs (format %s) among its %d .json files", dir, SWEEP_FORMAT,
               r.n_files);
        goto fail;
    }
    g = mc_malloc((size_t)r.n * sizeof *g);
    int ng = make_groups(&r, g);
    fprintf(stderr, "%s: %d runs in %d groups (%d other JSON files skipped)\n", dir, r.n, ng,
            others);
    print_table(&r, g, ng, metric_val);
    if (csv && write_csv(csv, &r, g, ng, &err)) goto fail;
    if (svg && write_svg(svg, &r, g, ng, metric_val,
                         title ? title : "CoOp accuracy vs shots per class", &err))
        goto fail;
    if (csv) fprintf(stderr, "wrote %s\n", csv);
    if (svg) fprintf(stderr, "wrote %s\n", svg);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mclip sweep summary: %s\n", err.msg);
done:
    mc_free(g);
    runs_free(&r);
    return rc;
}

int cli_sweep(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && !strcmp(sub, "summary")) return cmd_summary(argc - 1, argv + 1);
    FILE *f = sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h")) ? stdout : stderr;
    fprintf(f, "usage: mclip sweep summary RESULTS_DIR [--csv F] [--svg F] [--metric test|val]\n"
               "  Sweeps themselves run with make -f coop/sweep/Makefile.sweep or\n"
               "  sbatch coop/sweep/slurm_array.sh (README.md, Datasets and sweeps).\n");
    return f == stdout ? 0 : 2;
}
