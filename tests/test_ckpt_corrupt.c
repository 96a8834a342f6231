// test_ckpt_corrupt.c - damaged CoOp checkpoints are detected and resume
// falls back to the previous good one (coop/train.h).
//
// A tiny training run (random text-only model W 32, 2 layers, K 4 classes,
// 16 training and 8 validation features, batch 8, 12 steps, a checkpoint
// every 2 steps) is run once without interruption.  A second run stops
// after 5 steps: FILE holds step 5, FILE.prev step 4.  Then FILE is
// replaced by 100 corruptions of itself (truncations at random lengths,
// 0 included; single and multiple flipped bytes in the header and in the
// payload; appended garbage; zeroed blocks) and for each one:
//   * resume (one step) must warn naming FILE and resume from FILE.prev
//     at step 4 (detection and fallback, all 100);
//   * for every 20th, resume to the end: the final ctx must equal the
//     uninterrupted run's bit for bit.
// Also: the intact pair resumes from FILE at step 5; FILE and FILE.prev
// both damaged is an error naming both files.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../coop/randmodel.h"
#include "../datasets/dataset.h"
#include "../coop/train.h"
#include "../mobileclip/model.h"
#include "util/check.h"

enum { K = 4, NT = 16, NV = 8, E = 16, N_CORRUPT = 100 };

static char tmpdir[256];

// Separable features: class centres plus noise, normalised.
static void make_set(float *f, int32_t *lab, int64_t n, uint64_t seed) {
    float centre[K * E];
    test_seed(99);
    test_fill_normal(centre, K * E, 1.0);
    test_seed(seed);
    for (int64_t i = 0; i < n; i++) {
        lab[i] = (int32_t)(i % K);
        test_fill_normal(f + i * E, E, 0.6);
        for (int j = 0; j < E; j++) f[i * E + j] += centre[lab[i] * E + j];
    }
    coop_normalize_rows(f, n, E);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    MC_CHECK(f != NULL, "open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    MC_CHECK(fread(b, 1, *n, f) == *n, "read %s", path);
    fclose(f);
    return b;
}

static void write_all(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    MC_CHECK(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "write %s", path);
}

static size_t rnd(size_t n) { return n ? (size_t)(test_uniform() * (double)n) % n : 0; }

// Corruption number i of the image good [n] into out (cap n + 64); returns
// its length and describes it in what.
static size_t corrupt(int i, const unsigned char *good, size_t n, unsigned char *out,
                      char *what, size_t wl) {
    uint64_t hl = 0;
    memcpy(&hl, good, 8);   // little-endian hosts
    size_t hend = 8 + (size_t)hl;
    memcpy(out, good, n);
    switch (i % 6) {
    case 0: {   // truncation (the first one to 0 bytes)
        size_t len = i == 0 ? 0 : rnd(n);
        snprintf(what, wl, "truncated to %zu of %zu bytes", len, n);
        return len;
    }
    case 1: {   // one flipped byte in the header (length or JSON)
        size_t at = rnd(hend);
        out[at] ^= (unsigned char)(1 + rnd(255));
        snprintf(what, wl, "header byte %zu flipped", at);
        return n;
    }
    case 2: {   // one flipped byte in the payload
        size_t at = hend + rnd(n - hend);
        out[at] ^= (unsigned char)(1 + rnd(255));
        snprintf(what, wl, "payload byte %zu flipped", at);
        return n;
    }
    case 3: {   // 2..9 flipped bytes anywhere
        int k = 2 + (int)rnd(8);
        for (int j = 0; j < k; j++) out[rnd(n)] ^= (unsigned char)(1 + rnd(255));
        snprintf(what, wl, "%d bytes flipped", k);
        return n;
    }
    case 4: {   // appended garbage
        size_t k = 1 + rnd(64);
        for (size_t j = 0; j < k; j++) out[n + j] = (unsigned char)rnd(256);
        snprintf(what, wl, "%zu garbage bytes appended", k);
        return n + k;
    }
    default: {  // a zeroed block that held something non-zero
        for (;;) {
            size_t len = 1 + rnd(256), at = rnd(n);
            if (at + len > n) len = n - at;
            int nz = 0;
            for (size_t j = 0; j < len; j++) nz |= good[at + j];
            if (!nz) continue;
            memset(out + at, 0, len);
            snprintf(what, wl, "%zu bytes zeroed at %zu", len, at);
            return n;
        }
    }
    }
}

int main(void) {
    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%.200s/mclip_ckptc_XXXXXX", td ? td : "/tmp");
    MC_CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");
    double t0 = mc_time();

    // Model: W 32, 2 layers, E 16.
    McModelConfig mc = *mc_config_find("S0");
    mc.name = "custom";
    mc.text = (McTextConfig){.vocab = 49408, .context = 77, .width = 32, .heads = 1,
                             .layers = 2, .embed = E, .causal = 0};
    McErr err;
    char mpath[512], ck[400], prev[512], pnew[512];
    snprintf(mpath, sizeof mpath, "%s/m.safetensors", tmpdir);
    snprintf(ck, sizeof ck, "%.300s/t.ckpt", tmpdir);
    snprintf(prev, sizeof prev, "%s.prev", ck);
    snprintf(pnew, sizeof pnew, "%s.new", ck);
    MC_CHECK(coop_randmodel_write(mpath, &mc, 3, 1, &err) == 0, "%s", err.msg);
    McModel *m = mc_model_load(mpath, NULL, &err);
    MC_CHECK(m != NULL, "%s", err.msg);

    float ft[NT * E], fv[NV * E];
    int32_t lt[NT], lv[NV];
    make_set(ft, lt, NT, 7);
    make_set(fv, lv, NV, 8);
    CoopTrainSet tr = {ft, lt, NT}, va = {fv, lv, NV};
    CoopPromptCfg pc = coop_prompt_paper(0);
    pc.n_ctx = 4;
    CoopPrompt p;
    MC_CHECK(coop_prompt_init(&p, &pc, 32, 0, 9, &err) == 0, "%s", err.msg);
    CoopSeqs cls;
    int32_t ids[K * 77] = {0};
    for (int k = 0; k < K; k++) {
        ids[k * 77] = 62, ids[k * 77 + 1] = 1 + 7 * k, ids[k * 77 + 2] = 63;
    }
    MC_CHECK(coop_seqs_build(&cls, &p, ids, NULL, K, 77, &err) == 0, "%s", err.msg);

    CoopTrainCfg tc = coop_train_defaults();
    tc.opt.lr = 2e-2;
    tc.epochs = 6, tc.batch = 8, tc.shuffle = 1, tc.seed = 5, tc.eval_every = 4;
    tc.ckpt_path = ck, tc.ckpt_every = 2, tc.scale = 30;
    tc.meta = (CoopPromptMeta){.model_name = "custom"};

    // The uninterrupted run.
    CoopTrainResult r;
    int rc = coop_train(&tc, &m->text, &p, &cls, &tr, &va, &r, &err);
    MC_CHECK(rc == 0, "%s", err.msg);
    int64_t nctx = p.ctx->n;
    float *ref = malloc((size_t)nctx * sizeof *ref);
    memcpy(ref, p.ctx->data, (size_t)nctx * sizeof *ref);
    printf("uninterrupted: %lld steps, loss %.4f -> %.4f\n", (long long)r.steps, r.first_loss,
           r.final_loss);
    coop_train_result_free(&r);

    // Stopped after 5 steps: FILE at step 5, FILE.prev at step 4.
    unlink(ck), unlink(prev), unlink(pnew);
    coop_prompt_free(&p);
    coop_prompt_init(&p, &pc, 32, 0, 9, &err);
    tc.resume = 1, tc.stop_after = 5;
    rc = coop_train(&tc, &m->text, &p, &cls, &tr, &va, &r, &err);
    MC_CHECK(rc == -2, "partial run: rc %d", rc);
    coop_train_result_free(&r);
    struct stat sb;
    CHECK(stat(pnew, &sb) != 0, "%s left behind after a completed save", pnew);
    size_t n_good, n_prev;
    unsigned char *good = read_all(ck, &n_good), *gprev = read_all(prev, &n_prev);
    printf("checkpoint pair: %s %zu bytes (step 5), .prev %zu bytes (step 4)\n", ck, n_good,
           n_prev);

    // The intact pair resumes from FILE.
    char log[600];
    snprintf(log, sizeof log, "%s/progress.txt", tmpdir);
    tc.stop_after = 1;
    FILE *pf = fopen(log, "w+");
    tc.progress = pf;
    rc = coop_train(&tc, &m->text, &p, &cls, &tr, &va, &r, &err);
    CHECK(rc == -2 && r.resumed && r.resumed_at == 5 && !r.resumed_from_prev,
          "intact checkpoint: rc %d, resumed at %lld, from prev %d", rc, (long long)r.resumed_at,
          r.resumed_from_prev);
    coop_train_result_free(&r);
    fclose(pf);

    // 100 corruptions of FILE.
    unsigned char *bad = malloc(n_good + 64);
    char what[128], *text = malloc(1 << 16);
    int detected = 0, fell_back = 0, full = 0, full_same = 0;
    test_seed(2024);
    for (int i = 0; i < N_CORRUPT; i++) {
        size_t nb = corrupt(i, good, n_good, bad, what, sizeof what);
        write_all(ck, bad, nb);
        write_all(prev, gprev, n_prev);
        unlink(pnew);
        int to_end = i % 20 == 19;
        coop_prompt_free(&p);
        coop_prompt_init(&p, &pc, 32, 0, 9, &err);
        tc.stop_after = to_end ? 0 : 1;
        pf = fopen(log, "w+");
        tc.progress = pf;
        rc = coop_train(&tc, &m->text, &p, &cls, &tr, &va, &r, &err);
        fflush(pf);
        rewind(pf);
        size_t tl = fread(text, 1, (1 << 16) - 1, pf);
        text[tl] = 0;
        fclose(pf);
        // The warning names the file; the run continues from .prev (step 4).
        char *w = strstr(text, "warning: checkpoint not usable: ");
        int det = w && strstr(w, ck) != NULL;
        int fb = r.resumed && r.resumed_from_prev && r.resumed_at == 4 &&
                 rc == (to_end ? 0 : -2);
        detected += det, fell_back += fb;
        CHECK(det && fb, "corruption %d (%s): rc %d, detected %d, resumed %d at %lld, from "
              "prev %d; log: %.300s", i, what, rc, det, r.resumed, (long long)r.resumed_at,
              r.resumed_from_prev, text);
        if (i < 6 || to_end) {
            char *nl = w ? strchr(w, '\n') : NULL;
            printf("  %3d %-34s -> %.*s\n", i, what, w ? (int)((nl ? nl : w + 200) - w - 32) : 4,
                   w ? w + 32 : "MISSED");
        }
        if (to_end) {
            full++;
            int same = rc == 0 && !memcmp(p.ctx->data, ref, (size_t)nctx * sizeof *ref);
            full_same += same;
            CHECK(same, "corruption %d (%s): resumed run to the end differs", i, what);
        }
        coop_train_result_free(&r);
    }
    printf("corruptions detected %d/%d, fell back to .prev %d/%d, resumed to the end %d: "
           "final ctx bit-identical %d/%d\n", detected, N_CORRUPT, fell_back, N_CORRUPT, full,
           full_same, full);

    // Both damaged: an error naming both files.
    bad[0] = 0;
    write_all(ck, bad, 3);
    write_all(prev, good, n_good / 2);
    tc.stop_after = 1, tc.progress = NULL;
    rc = coop_train(&tc, &m->text, &p, &cls, &tr, &va, &r, &err);
    printf("both damaged: rc %d: %.200s\n", rc, rc ? err.msg : "accepted");
    CHECK(rc == -1 && strstr(err.msg, ck) && strstr(err.msg, prev),
          "both checkpoints damaged: not refused with both names");
    coop_train_result_free(&r);

    // Both forged: a value changed and the whole-file checksum recomputed
    // (SHA-256 of the file with its 64 digits as '0'), so only the inner
    // checksum over the restored values catches it -- after they were read
    // into place.  The caller's prompt must come back unchanged.
    unsigned char *forged = malloc(n_good);
    memcpy(forged, good, n_good);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | forged[i];
    const char key[] = "\"file_sha256\":\"";
    long off = -1;
    for (size_t i = 8; off < 0 && i + sizeof key + 64 < 8 + hl; i++)
        if (!memcmp(forged + i, key, sizeof key - 1)) off = (long)(i + sizeof key - 1);
    MC_CHECK(off > 0, "no file_sha256 in the checkpoint header");
    forged[8 + hl + (n_good - 8 - hl) / 2] ^= 0x40;
    memset(forged + off, '0', 64);
    char hex[65];
    ds_sha256_hex(forged, n_good, hex);
    memcpy(forged + off, hex, 64);
    write_all(ck, forged, n_good);
    write_all(prev, forged, n_good);
    float *before = malloc((size_t)nctx * sizeof *before);
    memcpy(before, p.ctx->data, (size_t)nctx * sizeof *before);
    rc = coop_train(&tc, &m->text, &p, &cls, &tr, &va, &r, &err);
    printf("both forged: rc %d: %.200s\n", rc, rc ? err.msg : "accepted");
    CHECK(rc == -1 && strstr(err.msg, "checksum mismatch"),
          "forged checkpoints (inner checksum wrong): not refused");
    CHECK(!memcmp(before, p.ctx->data, (size_t)nctx * sizeof *before),
          "a refused checkpoint changed the caller's prompt");
    coop_train_result_free(&r);
    free(forged), free(before);
    printf("time %.2f s\n", mc_time() - t0);

    free(good), free(gprev), free(bad), free(text), free(ref);
    coop_seqs_free(&cls);
    coop_prompt_free(&p);
    mc_model_free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return test_finish("test_ckpt_corrupt");
}
