// test_sweep.c - CoOp sweeps end to end: coop/sweep/Makefile.sweep run with
// make -j2, coop/sweep/slurm_array.sh, coop/sweep/run_one.sh, and
// `mclip sweep summary` (table, CSV, SVG).
//
// Fast part: the sweep machinery around a stand-in for mclip (a shell
// script answering `coop train` / `coop eval` with JSON whose accuracy is a
// known function of dataset, k and seed), so that every step is checked in
// well under a second per run:
//   * make -j2 over 2 datasets x 2 shots (2, all) x 2 seeds writes 8 run
//     JSONs with the stand-in's test accuracy; a second make runs nothing;
//     removing one JSON reruns exactly that run;
//   * a failing run leaves no JSON (and no temp file), make -k finishes the
//     others and reports the failure;
//   * slurm_array.sh lists the same grid as the Makefile, redoes a missing
//     run from SLURM_ARRAY_TASK_ID and skips a done one; k = 0 is refused;
//   * the summary's CSV means and standard deviations equal np.mean /
//     np.std (ddof 0) of the per-run JSONs' accuracies (recomputed here in
//     long double), its table names every group, and the SVG is
//     well-formed (starts with <svg, balanced tags) with one circle per
//     group and one line per (model, dataset).
// MCLIP_LONG=1 also runs a real sweep: the generated dataset (3 classes),
// a RANDOM-WEIGHT MobileCLIP2-S0-shaped model, 2 shots x 2 seeds, 2
// training steps each, through make -j2 and the summary (about a minute).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../coop/randmodel.h"
#include "../datasets/dataset.h"
#include "../datasets/gen_dataset.h"
#include "../datasets/metrics.h"
#include "../mobileclip/json.h"
#include "util/check.h"

static char tmpdir[256];
static const char *bin;

// Run a shell command; its exit status (-1 when it did not exit).
static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
    char *s;
    size_t n;
    McErr err;
    return ds_read_file(path, (size_t)1 << 26, &s, &n, &err) ? NULL : s;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int count_lines(const char *path) {
    char *s = slurp(path);
    int n = 0;
    for (char *p = s; p && *p; p++) n += *p == '\n';
    mc_free(s);
    return n;
}

static int count_str(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

// ---- the stand-in for mclip ----

// Writes prompt files and JSON like mclip coop train/eval; test accuracy
// = 0.30 + 0.01 k' + 0.002 seed (k' mod 7 + 1) + (0.05 for dtd), k' = 32
// for all; seed 13 fails.  Every call is logged in calls.log.
static void write_stub(const char *path) {
    FILE *f = fopen(path, "w");
    MC_CHECK(f != NULL, "cannot write %s", path);
    fprintf(f,
        "#!/bin/sh\n"
        "log=$(dirname \"$0\")/calls.log\n"
        "what=\"$1 $2\"; shift 2\n"
        "ds= k= seed= out= last= prompt=\n"
        "while [ $# -gt 0 ]; do\n"
        "  case $1 in\n"
        "    --dataset) ds=$2; shift ;; --shots) k=$2; shift ;; --seed) seed=$2; shift ;;\n"
        "    --out) out=$2; shift ;; --out-last) last=$2; shift ;;\n"
        "    --prompt) prompt=$2; shift ;;\n"
        "  esac; shift\n"
        "done\n"
        "echo \"$what $ds $k $seed\" >>\"$log\"\n"
        "case $what in\n"
        "  'coop train')\n"
        "    [ \"$seed\" = 13 ] && { echo 'stand-in: seed 13 fails' >&2; exit 1; }\n"
        "    echo \"$ds $k $seed\" >\"$out\"; echo \"$ds $k $seed\" >\"$last\"\n"
        "    echo '{\"command\": \"coop train\", \"last_val_acc\": 0.5, \"best_val_acc\": 0.6}'"
        " ;;\n"
        "  'coop eval')\n"
        "    read -r ds k seed <\"$prompt\"\n"
        "    [ \"$k\" = all ] && k=32\n"
        "    off=0; [ \"$ds\" = dtd ] && off=0.05\n"
        "    awk -v k=\"$k\" -v s=\"$seed\" -v o=\"$off\" 'BEGIN { printf "
        "\"{\\\"command\\\": \\\"coop eval\\\", \\\"accuracy\\\": %%.17g}\\n\", "
        "0.30 + 0.01 * k + 0.002 * s * (k %% 7 + 1) + o }' ;;\n"
        "  *) echo \"stand-in: $what?\" >&2; exit 2 ;;\n"
        "esac\n");
    fclose(f);
    chmod(path, 0755);
}

static double stub_acc(const char *ds, const char *k, int seed) {
    double kk = !strcmp(k, "all") ? 32 : atof(k);
    return 0.30 + 0.01 * kk + 0.002 * seed * (fmod(kk, 7) + 1) + (!strcmp(ds, "dtd") ? 0.05 : 0);
}

// ---- reading results back ----

// test.accuracy of a run JSON, NaN when unreadable.
static double run_acc(const char *path) {
    char *s = slurp(path);
    if (!s) return NAN;
    McErr err;
    JsonDoc *d = json_parse(s, strlen(s), NULL, &err);
    mc_free(s);
    if (!d) return NAN;
    const JsonValue *fmt = json_get(json_root(d), "format");
    const JsonValue *a = json_get(json_get(json_root(d), "test"), "accuracy");
    double v = fmt && fmt->str && !strcmp(fmt->str, "mclip-sweep-run-1") && a &&
               a->type == JSON_NUMBER ? a->number : NAN;
    json_free(d);
    return v;
}

// Check every CSV row of the summary against the run JSONs under out/:
// mean and std (ddof 0) recomputed in long double.  Returns the row count.
static int check_csv(const char *csv_path, const char *out, const char *const *seeds,
                     int n_seeds) {
    char *csv = slurp(csv_path);
    CHECK(csv && !strncmp(csv, "model,dataset,shots,runs,mean,std,seeds\n", 40),
          "%s: missing or no header", csv_path);
    if (!csv) return 0;
    int rows = 0;
    double worst = 0;
    for (char *line = strchr(csv, '\n') + 1; *line; rows++) {
        char *nl = strchr(line, '\n');
        if (!nl) break;
        *nl = 0;
        char model[64], ds[64], k[16], sd[128];
        int runs;
        double mean, sdev;
        int got = sscanf(line, "%63[^,],%63[^,],%15[^,],%d,%lf,%lf,%127[^\n]", model, ds, k,
                         &runs, &mean, &sdev, sd);
        CHECK(got == 7 && runs == n_seeds, "CSV row '%s'", line);
        // The per-run values, then np.mean / np.std.
        long double sum = 0, ss = 0, v[16];
        for (int i = 0; i < n_seeds; i++) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s/%s/k%s/seed%s.json", out, model, ds, k, seeds[i]);
            v[i] = run_acc(p);
            sum += v[i];
        }
        long double m = sum / n_seeds;
        for (int i = 0; i < n_seeds; i++) ss += (v[i] - m) * (v[i] - m);
        long double s = sqrtl(ss / n_seeds);
        double e = fmax(fabs(mean - (double)m), fabs(sdev - (double)s));
        worst = fmax(worst, e);
        printf("  %s %-10s k=%-3s mean %.6f (runs %.6f)  std %.6f (runs %.6f)\n", model, ds, k,
               mean, (double)m, sdev, (double)s);
        // Both are the same few doubles summed: observed 0 to 1e-16.
        CHECK(e <= 1e-12, "%s %s k=%s: summary mean %.17g std %.17g, runs give %.17g %.17g",
              model, ds, k, mean, sdev, (double)m, (double)s);
        line = nl + 1;
    }
    printf("summary vs per-run JSONs: %d groups, worst |difference| %.2e\n", rows, worst);
    mc_free(csv);
    return rows;
}

// Well-formedness basics of the SVG: starts with <svg, ends with </svg>,
// every tag closed in order.  Returns the text (caller frees) or NULL.
static char *check_svg(const char *path) {
    char *s = slurp(path);
    CHECK(s != NULL, "no SVG written at %s", path);
    if (!s) return NULL;
    CHECK(!strncmp(s, "<svg ", 5) && strstr(s, "xmlns=\"http://www.w3.org/2000/svg\""),
          "SVG does not start with <svg xmlns=...>: %.40s", s);
    size_t n = strlen(s);
    CHECK(n > 7 && !strcmp(s + n - 7, "</svg>\n"), "SVG does not end with </svg>");
    char stack[64][32];
    int depth = 0, ok = 1, tags = 0;
    for (const char *p = s; ok && (p = strchr(p, '<')); p++) {
        const char *e = strchr(p, '>');
        if (!e) { ok = 0; break; }
        int closing = p[1] == '/', self = e[-1] == '/';
        char name[32];
        int len = 0;
        for (const char *q = p + 1 + closing; len < 31 && *q && !strchr(" />\n", *q); q++)
            name[len++] = *q;
        name[len] = 0;
        tags++;
        if (closing) {
            ok = depth > 0 && !strcmp(stack[depth - 1], name);
            depth--;
        } else if (!self) {
            ok = depth < 64;
            if (ok) snprintf(stack[depth++], 32, "%s", name);
        }
        p = e;
    }
    printf("SVG %s: %zu bytes, %d tags, %s\n", path, n, tags,
           ok && depth == 0 ? "balanced" : "NOT balanced");
    CHECK(ok && depth == 0, "SVG tags not balanced (depth %d)", depth);
    CHECK(strstr(s, "shots per class") && strstr(s, "accuracy (%)"), "SVG lacks axis labels");
    return s;
}

// ---- fast: the stand-in sweep ----

static void check_stub_sweep(void) {
    char stub[512], out[512], cmd[4096], log[512];
    snprintf(stub, sizeof stub, "%s/mclip-stub.sh", tmpdir);
    snprintf(out, sizeof out, "%s/results", tmpdir);
    snprintf(log, sizeof log, "%s/calls.log", tmpdir);
    write_stub(stub);
    const char *grid = "MODELS=tiny DATASETS='flowers102 dtd' SHOTS='2 all' SEEDS='1 2'";
    const char *seeds[2] = {"1", "2"};

    // The sweep, two runs at a time.
    snprintf(cmd, sizeof cmd, "make -s -j2 -f coop/sweep/Makefile.sweep %s ROOT=/nonexistent "
             "MCLIP='%s' OUT='%s/' >'%s/make1.log' 2>&1", grid, stub, out, tmpdir);
    double t0 = mc_time();
    int rc = sh(cmd);
    printf("make -j2 (stand-in, 8 runs): rc %d, %.2f s, %d mclip calls\n", rc, mc_time() - t0,
           count_lines(log));
    CHECK(rc == 0 && count_lines(log) == 16, "sweep: rc %d, %d calls (want 8 train + 8 eval)",
          rc, count_lines(log));
    const char *dss[2] = {"flowers102", "dtd"}, *ks[2] = {"2", "all"};
    int good = 0;
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++)
            for (int s = 1; s <= 2; s++) {
                char p[1024];
                snprintf(p, sizeof p, "%s/tiny/%s/k%s/seed%d.json", out, dss[d], ks[k], s);
                double a = run_acc(p), want = stub_acc(dss[d], ks[k], s);
                good += fabs(a - want) < 1e-12;
                CHECK(fabs(a - want) < 1e-12, "%s: accuracy %.17g, want %.17g", p, a, want);
            }
    printf("run JSONs with the stand-in's test accuracy: %d of 8\n", good);

    // Nothing to do the second time; a removed result is redone alone.
    snprintf(cmd, sizeof cmd, "make -s -j2 -f coop/sweep/Makefile.sweep %s MCLIP='%s' "
             "OUT='%s' >'%s/make2.log' 2>&1", grid, stub, out, tmpdir);
    rc = sh(cmd);
    CHECK(rc == 0 && count_lines(log) == 16, "rerun did work: rc %d, %d calls", rc,
          count_lines(log));
    char gone[1024];
    snprintf(gone, sizeof gone, "%s/tiny/dtd/kall/seed1.json", out);
    unlink(gone);
    rc = sh(cmd);
    CHECK(rc == 0 && count_lines(log) == 18 && exists(gone),
          "removed run not redone alone: rc %d, %d calls", rc, count_lines(log));
    printf("second make: 0 runs; after removing one JSON: %d run\n",
           (count_lines(log) - 16) / 2);

    // A failing run (seed 13): no JSON, no temp file, the other run done.
    snprintf(cmd, sizeof cmd, "make -s -k -j2 -f coop/sweep/Makefile.sweep MODELS=tiny "
             "DATASETS=dtd SHOTS=1 SEEDS='1 13' MCLIP='%s' OUT='%s/fail' >'%s/make3.log' 2>&1",
             stub, tmpdir, tmpdir);
    rc = sh(cmd);
    char p1[600], p13[600], mlog[600];
    snprintf(p1, sizeof p1, "%s/fail/tiny/dtd/k1/seed1.json", tmpdir);
    snprintf(p13, sizeof p13, "%s/fail/tiny/dtd/k1/seed13.json", tmpdir);
    snprintf(mlog, sizeof mlog, "%s/make3.log", tmpdir);
    char *ml = slurp(mlog);
    snprintf(cmd, sizeof cmd, "ls '%s/fail/tiny/dtd/k1' | grep -q tmp", tmpdir);
    CHECK(rc != 0 && exists(p1) && !exists(p13) && sh(cmd) != 0 && ml &&
          strstr(ml, "seed=13 failed") && strstr(ml, "seed 13 fails"),
          "failed run: rc %d, seed1 %d, seed13 %d, log: %s", rc, exists(p1), exists(p13),
          ml ? ml : "");
    printf("failing run: make rc %d, reported, no JSON; the other run done\n", rc);
    mc_free(ml);

    // Slurm: same grid order as the Makefile; a missing run is redone by
    // its array index, a done one skipped.
    char mk[600], sl[600];
    snprintf(mk, sizeof mk, "%s/make_list.txt", tmpdir);
    snprintf(sl, sizeof sl, "%s/slurm_list.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "make -s -f coop/sweep/Makefile.sweep list %s OUT='%s' >'%s' && "
             "%s OUT='%s' bash coop/sweep/slurm_array.sh --list | awk '{print $6}' >'%s' && "
             "cmp -s '%s' '%s'", grid, out, mk, grid, out, sl, mk, sl);
    CHECK(sh(cmd) == 0, "slurm_array.sh --list differs from the Makefile's runs");
    unlink(gone);   // tiny/dtd/kall/seed1 is index 6 (flowers 0..3, dtd k2 4..5)
    int calls = count_lines(log);
    snprintf(cmd, sizeof cmd, "%s OUT='%s' MCLIP='%s' SLURM_ARRAY_TASK_ID=6 "
             "bash coop/sweep/slurm_array.sh >'%s/slurm6.log' 2>&1 && "
             "%s OUT='%s' MCLIP='%s' SLURM_ARRAY_TASK_ID=0 "
             "bash coop/sweep/slurm_array.sh >'%s/slurm0.log' 2>&1 && "
             "grep -q 'already done' '%s/slurm0.log'", grid, out, stub, tmpdir, grid, out, stub,
             tmpdir, tmpdir);
    rc = sh(cmd);
    CHECK(rc == 0 && exists(gone) && count_lines(log) == calls + 2 &&
          fabs(run_acc(gone) - stub_acc("dtd", "all", 1)) < 1e-12,
          "slurm task 6 / 0: rc %d, json %d, calls %d", rc, exists(gone),
          count_lines(log) - calls);
    snprintf(cmd, sizeof cmd, "%s OUT='%s' SLURM_ARRAY_TASK_ID=99 bash coop/sweep/slurm_array.sh"
             " >/dev/null 2>&1", grid, out);
    CHECK(sh(cmd) == 2, "slurm task outside the grid accepted");
    printf("slurm_array.sh: grid as the Makefile's; task 6 redone, task 0 skipped, task 99 "
           "refused\n");
    snprintf(cmd, sizeof cmd, "MCLIP='%s' sh coop/sweep/run_one.sh tiny dtd 0 1 '%s/z.json' "
             ">'%s/zero.log' 2>&1", stub, tmpdir, tmpdir);
    CHECK(sh(cmd) == 2, "k = 0 accepted by run_one.sh");

    // The summary against the per-run JSONs, and its chart.
    char csv[600], svg[600], table[600];
    snprintf(csv, sizeof csv, "%s/summary.csv", tmpdir);
    snprintf(svg, sizeof svg, "%s/chart.svg", tmpdir);
    snprintf(table, sizeof table, "%s/table.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' sweep summary '%s' --csv '%s' --svg '%s' >'%s' 2>&1", bin,
             out, csv, svg, table);
    rc = sh(cmd);
    char *t = slurp(table);
    printf("mclip sweep summary (rc %d):\n%s", rc, t ? t : "");
    CHECK(rc == 0 && t && strstr(t, "8 runs in 4 groups") && strstr(t, "16 other JSON"),
          "summary failed or miscounted: %s", t ? t : "");
    CHECK(t && count_str(t, "tiny ") == 4 && strstr(t, " all "), "table rows");
    mc_free(t);
    int rows = check_csv(csv, out, seeds, 2);
    CHECK(rows == 4, "CSV has %d groups, want 4", rows);
    char *s = check_svg(svg);
    if (s) {
        int circles = count_str(s, "<circle"), lines = count_str(s, "<polyline");
        printf("SVG: %d points (want 4), %d lines (want 2)\n", circles, lines);
        CHECK(circles == 4 && lines == 2, "SVG has %d points and %d lines", circles, lines);
        CHECK(strstr(s, ">all</text>") && strstr(s, ">2</text>"), "SVG lacks the k ticks");
    }
    mc_free(s);
    // Usage and empty folders.
    snprintf(cmd, sizeof cmd, "'%s' sweep summary >/dev/null 2>&1", bin);
    CHECK(sh(cmd) == 2, "summary without a folder did not exit 2");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/empty' && '%s' sweep summary '%s/empty' "
             ">/dev/null 2>&1", tmpdir, bin, tmpdir);
    CHECK(sh(cmd) == 1, "summary of an empty folder did not exit 1");
}

// ---- MCLIP_LONG: a real sweep on a random-weight S0 ----

static void check_real_sweep(void) {
    char gen[512], model[512], out[512], cmd[4096];
    McErr err;
    snprintf(gen, sizeof gen, "%s/gen", tmpdir);
    snprintf(model, sizeof model, "%s/rs0.safetensors", tmpdir);
    snprintf(out, sizeof out, "%s/real", tmpdir);
    GenOptions g = gen_defaults();
    g.classes = 3, g.per_class = 10, g.size = 24;
    CHECK(gen_dataset(gen, &g, &err) == 0, "%s", err.msg);
    CHECK(coop_randmodel_write(model, mc_config_find("S0"), 1, 0, &err) == 0, "%s", err.msg);
    snprintf(cmd, sizeof cmd, "make -s -j2 -f coop/sweep/Makefile.sweep MODELS=rs0 "
             "MODEL_rs0='%s' DATASETS=flowers102 SHOTS='1 2' SEEDS='1 2' ROOT='%s' OUT='%s' "
             "MCLIP='%s' CACHE='%s/cache' THREADS=1 TRAIN_FLAGS='--steps 2 --batch 8 "
             "--eval-every 0' >'%s/real.log' 2>&1", model, gen, out, bin, tmpdir, tmpdir);
    double t0 = mc_time();
    int rc = sh(cmd);
    printf("real sweep (random-weight S0, 4 runs, make -j2): rc %d, %.1f s\n", rc,
           mc_time() - t0);
    CHECK(rc == 0, "real sweep failed (see %s/real.log)", tmpdir);
    char csv[600], svg[600];
    snprintf(csv, sizeof csv, "%s/real.csv", tmpdir);
    snprintf(svg, sizeof svg, "%s/real.svg", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' sweep summary '%s' --csv '%s' --svg '%s'", bin, out, csv,
             svg);
    CHECK(sh(cmd) == 0, "summary of the real sweep failed");
    const char *seeds[2] = {"1", "2"};
    CHECK(check_csv(csv, out, seeds, 2) == 2, "real sweep: want 2 groups");
    char *s = check_svg(svg);
    CHECK(s && count_str(s, "<circle") == 2, "real sweep SVG points");
    mc_free(s);
}

int main(void) {
    // The sweeps run make themselves: when this test runs under make (as in
    // `make sanitize`, a recursive make), the inherited flags would add
    // "Entering directory" lines and jobserver warnings to their output.
    unsetenv("MAKEFLAGS");
    unsetenv("MFLAGS");
    unsetenv("MAKELEVEL");
    bin = getenv("MCLIP_BIN");
    CHECK(bin != NULL, "MCLIP_BIN is not set: run through `make test`");
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mclip_sweep_XXXXXX", t ? t : "/tmp");
    CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
    if (bin) {
        check_stub_sweep();
        const char *lng = getenv("MCLIP_LONG");
        if (lng && *lng == '1') check_real_sweep();
        else printf("real sweep on a random-weight S0 skipped (MCLIP_LONG=1 runs it)\n");
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (test_failures == 0 && system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    if (test_failures) printf("files kept in %s\n", tmpdir);
    return test_finish("test_sweep");
}
