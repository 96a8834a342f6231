// fuzz_checkpoint.c - libFuzzer harness for CoOp training checkpoints
// (coop/train.h): arbitrary bytes as the checkpoint that coop_train resumes
// from.  The checkpoint reader is internal to the training loop, so the
// harness sets up a tiny training run once (a random text-only model of
// width 16 and 1 layer, K = 3 classes, 6 training and 3 validation
// features, 2 steps, a checkpoint every step) and calls coop_train with
// resume on for every input, written to a temp file named fuzz.ckpt.
//
// A refused checkpoint must be reported with a message naming the file; an
// accepted one (only reachable from a seed of this exact configuration,
// since the fingerprint and the SHA-256 checksum must match) must resume
// at a step within the run and finish it.
//
// Seeds: with FUZZ_CHECKPOINT_SEEDS=<dir> in the environment the setup
// also writes valid checkpoints of this configuration (after step 1 and at
// the end) and its best/last prompt files into <dir>; that is how
// tests/fuzz/corpus/checkpoint/ and the prompt file seeds were made.
// tests/fuzz/run.sh points it at the working corpus, so every run starts
// from checkpoints of the current format even when the committed seeds
// have gone stale (under libFuzzer the setup runs in LLVMFuzzerInitialize,
// before the corpus is read).
#include "fuzz_common.h"

#include "../../coop/randmodel.h"
#include "../../coop/train.h"
#include "../../mobileclip/model.h"

#define FUZZ_CK_NAME "fuzz.ckpt"
enum { FUZZ_CK_K = 3, FUZZ_CK_NT = 6, FUZZ_CK_NV = 3, FUZZ_CK_W = 16, FUZZ_CK_E = 8 };

static struct {
    McModel *model;
    CoopSeqs cls;
    float    ft[FUZZ_CK_NT * FUZZ_CK_E], fv[FUZZ_CK_NV * FUZZ_CK_E];
    int32_t  lt[FUZZ_CK_NT], lv[FUZZ_CK_NV];
    CoopPromptCfg pc;
} fuzz_ck;

// Deterministic features: class centres plus a small offset, normalised.
static void fuzz_ck_features(float *f, int32_t *lab, int n, uint32_t seed) {
    uint32_t x = seed;
    for (int i = 0; i < n; i++) {
        lab[i] = i % FUZZ_CK_K;
        for (int j = 0; j < FUZZ_CK_E; j++) {
            x = x * 1664525u + 1013904223u;
            float noise = (float)(x >> 8) / (float)(1u << 24) - 0.5f;
            f[i * FUZZ_CK_E + j] = (j % FUZZ_CK_K == lab[i] ? 1.0f : 0.0f) + 0.3f * noise;
        }
    }
    coop_normalize_rows(f, n, FUZZ_CK_E);
}

static CoopTrainCfg fuzz_ck_cfg(const char *ckpt) {
    CoopTrainCfg tc = coop_train_defaults();
    tc.epochs = 2, tc.batch = FUZZ_CK_NT, tc.shuffle = 1, tc.seed = 5, tc.eval_every = 0;
    tc.ckpt_path = ckpt, tc.ckpt_every = 1, tc.resume = 1;
    tc.meta = (CoopPromptMeta){.model_name = "custom"};
    tc.scale = 30;
    return tc;
}

static void fuzz_ck_setup(void) {
    // The model: random weights, text tower only, a 64-token vocabulary.
    McModelConfig c = *mc_config_find("S0");
    c.name = "custom";
    c.text = (McTextConfig){.vocab = 64, .context = 77, .width = FUZZ_CK_W, .heads = 1,
                            .layers = 1, .embed = FUZZ_CK_E, .causal = 0};
    McErr err;
    const char *mp = fuzz_write_file("model.safetensors", (const uint8_t *)"", 0);
    FUZZ_REQUIRE(coop_randmodel_write(mp, &c, 3, 1, &err) == 0, "%s", err.msg);
    fuzz_ck.model = mc_model_load(mp, NULL, &err);
    FUZZ_REQUIRE(fuzz_ck.model != NULL, "%s", err.msg);

    // Class rows of the paper form with synthetic ids (62 plays SOT, 63 EOT).
    fuzz_ck.pc = coop_prompt_paper(0);
    fuzz_ck.pc.n_ctx = 4;
    CoopPrompt p;
    FUZZ_REQUIRE(coop_prompt_init(&p, &fuzz_ck.pc, FUZZ_CK_W, 0, 9, &err) == 0, "%s", err.msg);
    int32_t ids[FUZZ_CK_K * 77] = {0};
    for (int k = 0; k < FUZZ_CK_K; k++) {
        ids[k * 77] = 62;
        for (int j = 0; j <= k; j++) ids[k * 77 + 1 + j] = 1 + (k * 7 + j * 5) % 60;
        ids[k * 77 + 2 + k] = 63;
    }
    FUZZ_REQUIRE(coop_seqs_build(&fuzz_ck.cls, &p, ids, NULL, FUZZ_CK_K, 77, &err) == 0, "%s",
                 err.msg);
    coop_prompt_free(&p);
    fuzz_ck_features(fuzz_ck.ft, fuzz_ck.lt, FUZZ_CK_NT, 7);
    fuzz_ck_features(fuzz_ck.fv, fuzz_ck.lv, FUZZ_CK_NV, 8);
}

// One training call from the fresh prompt; returns coop_train's status.
static int fuzz_ck_train(const CoopTrainCfg *tc, CoopTrainResult *res, McErr *err) {
    CoopPrompt p;
    FUZZ_REQUIRE(coop_prompt_init(&p, &fuzz_ck.pc, FUZZ_CK_W, 0, 9, err) == 0, "%s", err->msg);
    CoopTrainSet tr = {fuzz_ck.ft, fuzz_ck.lt, FUZZ_CK_NT}, va = {fuzz_ck.fv, fuzz_ck.lv,
                                                                  FUZZ_CK_NV};
    int rc = coop_train(tc, &fuzz_ck.model->text, &p, &fuzz_ck.cls, &tr, &va, res, err);
    coop_prompt_free(&p);
    return rc;
}

// Remove what an earlier run left beside a checkpoint (coop_train keeps the
// previous good checkpoint as FILE.prev and falls back to it, and writes
// FILE.new first), so each input is judged alone.
static void fuzz_ck_unlink_side(const char *path) {
    char side[512];
    snprintf(side, sizeof side, "%s.prev", path);
    unlink(side);
    snprintf(side, sizeof side, "%s.new", path);
    unlink(side);
}

// Copy file src to dir/name.
static void fuzz_ck_copy(const char *src, const char *dir, const char *name) {
    char dst[512];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    FUZZ_REQUIRE(in && out, "copy %s to %s", src, dst);
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, in)) > 0;) fwrite(buf, 1, n, out);
    fclose(in);
    FUZZ_REQUIRE(fclose(out) == 0, "write %s", dst);
}

static void fuzz_ck_write_seeds(const char *dir) {
    const char *ck = fuzz_write_file("seed.ckpt", (const uint8_t *)"", 0);
    char best[400], last[400];
    snprintf(best, sizeof best, "%s.best.prompt", ck);
    snprintf(last, sizeof last, "%s.last.prompt", ck);
    unlink(ck);
    fuzz_ck_unlink_side(ck);
    CoopTrainCfg tc = fuzz_ck_cfg(ck);
    tc.best_path = best, tc.last_path = last;
    CoopTrainResult res;
    McErr err;
    tc.stop_after = 1;
    FUZZ_REQUIRE(fuzz_ck_train(&tc, &res, &err) == -2, "seed run: %s", err.msg);
    coop_train_result_free(&res);
    fuzz_ck_copy(ck, dir, "step1.ckpt");
    tc.stop_after = 0;
    FUZZ_REQUIRE(fuzz_ck_train(&tc, &res, &err) == 0, "seed run: %s", err.msg);
    coop_train_result_free(&res);
    fuzz_ck_copy(ck, dir, "final.ckpt");
    fuzz_ck_copy(best, dir, "best.prompt");
    fuzz_ck_copy(last, dir, "last.prompt");
    unlink(best);
    unlink(last);
    unlink(ck);
    fuzz_ck_unlink_side(ck);
}

static void fuzz_ck_init(void) {
    fuzz_ck_setup();
    const char *dir = getenv("FUZZ_CHECKPOINT_SEEDS");
    if (dir && *dir) fuzz_ck_write_seeds(dir);
}

static int fuzz_checkpoint(const uint8_t *data, size_t size) {
    if (!fuzz_ck.model) fuzz_ck_init();
    const char *path = fuzz_write_file(FUZZ_CK_NAME, data, size);
    fuzz_ck_unlink_side(path);
    CoopTrainCfg tc = fuzz_ck_cfg(path);
    CoopTrainResult res;
    McErr err = {{0}};
    int rc = fuzz_ck_train(&tc, &res, &err);
    if (rc) {
        FUZZ_REQUIRE(rc == -1, "coop_train returned %d", rc);
        fuzz_check_err(&err, FUZZ_CK_NAME);
    } else {
        FUZZ_REQUIRE(res.resumed && res.resumed_at >= 0 && res.resumed_at <= res.steps,
                     "resumed %d at %lld of %lld", res.resumed, (long long)res.resumed_at,
                     (long long)res.steps);
    }
    coop_train_result_free(&res);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_ck_init();
    return 0;
}
#endif

FUZZ_ENTRY(fuzz_checkpoint)
