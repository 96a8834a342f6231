// test_resume.c - `mclip coop train --resume` after kill -9.
//
// A training run (random-weight text-only model, separable features from a
// feature-set file, a checkpoint after every step) is first run without
// interruption.  Then the same command with --resume is started again and
// again, each time killed with SIGKILL after a random delay, until it is
// allowed to finish; its final prompt must equal the uninterrupted run's
// bit for bit (ctx bytes), and so must the loss history in the JSON.
// The normal suite kills twice; MCLIP_LONG=1 kills at least 12 times on a
// longer run with MCLIP_CKPT_PAUSE_MS set (the trainer pauses inside each
// checkpoint save: after writing FILE.new, after linking FILE.prev), so
// most kills land in the middle of a save; the kills that left FILE.new
// behind are counted.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../coop/prompt.h"
#include "../coop/promptfile.h"
#include "../coop/randmodel.h"
#include "../datasets/dataset.h"
#include "../mobileclip/safetensors.h"
#include "util/check.h"

static char tmpdir[256];

// Separable features: K class centres + noise, train and val.
static void write_featset(const char *path, int K, int E, int NT, int NV) {
    int N = NT + NV;
    float *f = malloc((size_t)N * E * sizeof *f), *c = malloc((size_t)K * E * sizeof *c);
    int64_t *lab = malloc((size_t)N * sizeof *lab), *spl = malloc((size_t)N * sizeof *spl);
    test_seed(77);
    test_fill_normal(c, (size_t)K * E, 1.0);
    for (int i = 0; i < N; i++) {
        lab[i] = i % K, spl[i] = i < NT ? DS_TRAIN : DS_VAL;
        test_fill_normal(f + (size_t)i * E, (size_t)E, 0.7);
        for (int j = 0; j < E; j++) f[(size_t)i * E + j] += c[lab[i] * E + j];
    }
    StWriter *w = st_writer_new();
    st_writer_add_f32(w, "features", MC_DIMS(N, E), f);
    st_writer_add_i64(w, "labels", MC_DIMS(N), lab);
    st_writer_add_i64(w, "split", MC_DIMS(N), spl);
    char names[4096] = "[";
    for (int k = 0; k < K; k++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s\"class %d\"",
                 k ? ", " : "", k);
    strcat(names, "]");
    st_writer_meta(w, "classnames", names);
    McErr err;
    MC_CHECK(st_writer_save(w, path, &err) == 0, "%s", err.msg);
    st_writer_free(w);
    free(f), free(c), free(lab), free(spl);
}

// Start the training command; returns the child's pid.  Output goes to
// files in tmpdir (stdout: the JSON).
static pid_t start(const char *const *argv, const char *out_json) {
    fflush(stdout);   // the child must not inherit unwritten output
    pid_t pid = fork();
    MC_CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        FILE *o = freopen(out_json, "w", stdout);
        char log[512];
        snprintf(log, sizeof log, "%s/train.log", tmpdir);
        FILE *e = freopen(log, "a", stderr);
        if (!o || !e) _exit(120);
        execv(argv[0], (char *const *)argv);
        _exit(121);
    }
    return pid;
}

static int wait_exit(pid_t pid) {
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : (WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1);
}

static float *read_ctx(const char *path, int64_t *n) {
    McErr err;
    CoopPromptFile pf;
    if (coop_promptfile_load(path, &pf, &err)) {
        CHECK(0, "%s", err.msg);
        return NULL;
    }
    *n = (int64_t)(pf.n_cls ? pf.n_cls : 1) * pf.cfg.n_ctx * pf.width;
    float *c = malloc((size_t)*n * sizeof *c);
    memcpy(c, pf.ctx, (size_t)*n * sizeof *c);
    coop_promptfile_free(&pf);
    return c;
}

// The "eval_val_acc" ... tail of the JSON (the loss and accuracies; the
// timing fields before it differ between runs).
static char *json_part(const char *path, const char *key) {
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strstr(buf, key);
    if (!p) return NULL;
    char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    char *r = malloc(len + 1);
    memcpy(r, p, len);
    r[len] = 0;
    return r;
}

int main(void) {
    const char *bin = getenv("MCLIP_BIN");
    CHECK(bin != NULL, "MCLIP_BIN is not set: run through `make test` (or set it to mclip)");
    if (!bin) return test_finish("test_resume");
    const char *lng = getenv("MCLIP_LONG");
    int longrun = lng && *lng == '1';
    int kills_wanted = longrun ? 12 : 2;
    // Testing hook of coop/train.c: a pause inside every save (long run).
    if (longrun) setenv("MCLIP_CKPT_PAUSE_MS", "4", 1);
    const char *steps = longrun ? "600" : "60";

    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mclip_resume_XXXXXX", td ? td : "/tmp");
    MC_CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");

    // Model (W 64, 2 layers, full vocabulary) and features.
    char model[512], fs[512], ref[512], out[512], ckpt[512], j_ref[512], j_out[512];
    snprintf(model, sizeof model, "%s/m.safetensors", tmpdir);
    snprintf(fs, sizeof fs, "%s/fs.safetensors", tmpdir);
    McModelConfig c = *mc_config_find("S0");
    c.name = "custom";
    c.text = (McTextConfig){.vocab = 49408, .context = 77, .width = 64, .heads = 1,
                            .layers = 2, .embed = 32, .causal = 0};
    McErr err;
    CHECK(coop_randmodel_write(model, &c, 2, 1, &err) == 0, "%s", err.msg);
    write_featset(fs, 10, 32, 60, 20);

    // The uninterrupted reference run.
    snprintf(ref, sizeof ref, "%s/ref.prompt", tmpdir);
    snprintf(j_ref, sizeof j_ref, "%s/ref.json", tmpdir);
    const char *argv_ref[] = {bin, "coop", "train", "--model", model, "--features", fs,
                              "--steps", steps, "--batch", "16", "--shuffle", "--lr", "1e-2",
                              "--eval-every", "10", "--logit-scale", "30", "--threads", "1",
                              "--ckpt-every", "1", "--out", ref, NULL};
    // Time to the first checkpoint (start-up: load, hash, first step) and
    // to the end, so that kills land while training runs.
    char ref_ckpt[600];
    snprintf(ref_ckpt, sizeof ref_ckpt, "%s.ckpt", ref);
    double t0 = mc_time(), t_first = -1;
    pid_t rp = start(argv_ref, j_ref);
    int st = 0;
    while (waitpid(rp, &st, WNOHANG) == 0) {
        struct stat sb;
        if (t_first < 0 && stat(ref_ckpt, &sb) == 0) t_first = mc_time() - t0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    double t_ref = mc_time() - t0;
    if (t_first < 0) t_first = 0.5 * t_ref;
    printf("uninterrupted run: %s steps in %.2f s, first checkpoint after %.2f s (rc %d)\n",
           steps, t_ref, t_first, rc);
    CHECK(rc == 0, "reference run failed (see %s/train.log)", tmpdir);

    // Killed and resumed until done.
    snprintf(out, sizeof out, "%s/run.prompt", tmpdir);
    snprintf(ckpt, sizeof ckpt, "%s/run.prompt.ckpt", tmpdir);
    snprintf(j_out, sizeof j_out, "%s/run.json", tmpdir);
    const char *argv_run[] = {bin, "coop", "train", "--model", model, "--features", fs,
                              "--steps", steps, "--batch", "16", "--shuffle", "--lr", "1e-2",
                              "--eval-every", "10", "--logit-scale", "30", "--threads", "1",
                              "--ckpt-every", "1", "--out", out, "--resume", NULL};
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kills = 0, finished = 0, in_save = 0;
    char ckpt_new[600];
    snprintf(ckpt_new, sizeof ckpt_new, "%s.new", ckpt);
    // A round ends when the run finishes; if it finished before enough
    // kills (the machine sped up), start over from scratch (at most 3 rounds).
    for (int round = 0; round < 3 && !(finished && kills >= kills_wanted); round++) {
        unlink(ckpt), unlink(out), unlink(j_out);
        kills = 0, finished = 0, in_save = 0;
        for (int attempt = 0; attempt < 100 && !finished; attempt++) {
            pid_t pid = start(argv_run, j_out);
            if (kills < kills_wanted) {
                // A random moment after start-up, within a slice of the
                // training time small enough that the kills fit before the end.
                double frac = 0.2 + 0.8 * (double)rand() / RAND_MAX;
                double delay = t_first + frac * (t_ref - t_first) / (double)(kills_wanted + 2);
                struct timespec ts = {(time_t)delay, (long)((delay - floor(delay)) * 1e9)};
                nanosleep(&ts, NULL);
                if (kill(pid, SIGKILL) == 0) {
                    int ks = wait_exit(pid);
                    if (ks == 128 + SIGKILL) {
                        // Only kills after the first checkpoint count: earlier
                        // ones just restart from scratch.
                        struct stat sb;
                        int had = stat(ckpt, &sb) == 0, mid = stat(ckpt_new, &sb) == 0;
                        kills += had;
                        in_save += had && mid;
                        printf("  SIGKILL after %.0f ms (%s%s)\n", delay * 1e3,
                               had ? "checkpoint present: counted" : "before the first checkpoint",
                               mid ? ", during a save" : "");
                        continue;
                    }
                    finished = ks == 0;
                    CHECK(ks == 0, "resumed run exited with %d", ks);
                    continue;
                }
            }
            rc = wait_exit(pid);
            CHECK(rc == 0, "final resumed run failed (rc %d, see %s/train.log)", rc, tmpdir);
            finished = 1;
        }
        if (finished && kills < kills_wanted)
            printf("  finished after %d kills (wanted %d): another round\n", kills, kills_wanted);
    }
    printf("killed %d times with SIGKILL (%d during a save), then finished: %s\n", kills,
           in_save, finished ? "yes" : "no");
    CHECK(finished && kills >= kills_wanted, "only %d kills (wanted %d)", kills, kills_wanted);

    // Same final prompt, bit for bit; same loss and accuracy history.
    int64_t n1 = 0, n2 = 0;
    float *a = read_ctx(ref, &n1), *b = read_ctx(out, &n2);
    int same = a && b && n1 == n2 && !memcmp(a, b, (size_t)n1 * sizeof *a);
    char *h1 = json_part(j_ref, "\"final_loss\""), *h2 = json_part(j_out, "\"final_loss\"");
    char *e1 = json_part(j_ref, "\"eval_val_acc\""), *e2 = json_part(j_out, "\"eval_val_acc\"");
    printf("final ctx (%lld values): %s; %s vs %s; eval history %s\n", (long long)n1,
           same ? "bit-identical" : "DIFFERENT", h1 ? h1 : "?", h2 ? h2 : "?",
           e1 && e2 && !strcmp(e1, e2) ? "identical" : "DIFFERENT");
    CHECK(same, "resumed final prompt differs from the uninterrupted run");
    CHECK(h1 && h2 && !strcmp(h1, h2) && e1 && e2 && !strcmp(e1, e2),
          "resumed loss / eval history differs");
    free(a), free(b), free(h1), free(h2), free(e1), free(e2);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return test_finish("test_resume");
}
