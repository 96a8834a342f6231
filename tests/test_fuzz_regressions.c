// test_fuzz_regressions.c - replay the fuzz seeds and crash regressions
// through every libFuzzer harness's entry function, without libFuzzer.
//
// For each harness tests/fuzz/fuzz_<name>.c (included below with
// FUZZ_NO_MAIN, so LLVMFuzzerTestOneInput is not defined), every file in
// tests/fuzz/regressions/<name>/ (inputs that once crashed or broke a
// harness contract, kept after the fix) and tests/fuzz/corpus/<name>/ (the
// seeds) is read and passed to the entry function.  A harness contract
// violation aborts with a message, so the program fails loudly; under
// `make sanitize` the sanitizers check every replay too.
//
// Adding a harness: include its .c below and add a row to harnesses[].
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NO_MAIN
#include "fuzz/fuzz_checkpoint.c"
#include "fuzz/fuzz_coop_split.c"
#include "fuzz/fuzz_image.c"
#include "fuzz/fuzz_json.c"
#include "fuzz/fuzz_karpathy.c"
#include "fuzz/fuzz_matfile.c"
#include "fuzz/fuzz_promptfile.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_tokenizer.c"
#include "fuzz/fuzz_torch_pt.c"
#include "fuzz/fuzz_tsv.c"
#include "util/check.h"

static const struct {
    const char *name;
    int (*entry)(const uint8_t *data, size_t size);
} harnesses[] = {
    {"checkpoint", fuzz_checkpoint},
    {"coop_split", fuzz_coop_split},
    {"image", fuzz_image},
    {"json", fuzz_json},
    {"karpathy", fuzz_karpathy},
    {"matfile", fuzz_matfile},
    {"promptfile", fuzz_promptfile},
    {"safetensors", fuzz_safetensors},
    {"tokenizer", fuzz_tokenizer},
    {"torch_pt", fuzz_torch_pt},
    {"tsv", fuzz_tsv},
};

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Replay every regular file of dir (sorted by name) through entry; returns
// the number of files (0 when dir does not exist).
static int replay_dir(const char *dir, int (*entry)(const uint8_t *, size_t)) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char *names[4096];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 4096;)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    int replayed = 0;
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        FILE *fp = fopen(path, "rb");
        if (!fp) continue;
        fseek(fp, 0, SEEK_END);
        long len = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        // An exact-size heap copy, as libFuzzer passes it (over-reads show
        // under AddressSanitizer).
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        size_t got = fread(buf, 1, (size_t)(len > 0 ? len : 0), fp);
        fclose(fp);
        CHECK(got == (size_t)(len > 0 ? len : 0), "%s: short read", path);
        entry(buf, got);
        free(buf);
        replayed++;
    }
    return replayed;
}

int main(void) {
    // The tokenizer harness needs the BPE vocabulary: say so instead of
    // letting the harness exit.
    char vocab[1024];
    McErr err;
    int have_vocab = tok_find_vocab(vocab, sizeof vocab, &err) == 0;
    CHECK(have_vocab, "tokenizer harness cannot run: %s", err.msg);

    int total = 0, regressions = 0;
    for (size_t h = 0; h < sizeof harnesses / sizeof harnesses[0]; h++) {
        if (!strcmp(harnesses[h].name, "tokenizer") && !have_vocab) continue;
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", harnesses[h].name);
        int r = replay_dir(dir, harnesses[h].entry);
        snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", harnesses[h].name);
        int s = replay_dir(dir, harnesses[h].entry);
        printf("fuzz_%-12s %3d regression files, %3d seeds replayed\n", harnesses[h].name, r, s);
        CHECK(s > 0, "no seeds in %s (run from the project root)", dir);
        total += r + s;
        regressions += r;
    }
    tok_free(fuzz_tok);
    printf("%d inputs replayed (%d regressions)\n", total, regressions);
    return test_finish("test_fuzz_regressions");
}
