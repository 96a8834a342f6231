// test_split.c - CPython-compatible random numbers (the test vectors of
// paper-protocol.md §8 and values printed by CPython 3.11), the paper's
// and CoOp's few-shot samplers, the split rules, and few-shot manifests
// (write, reuse, header mismatch, foreign lists, bad rows).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../datasets/split.h"
#include "util/check.h"
#include "util/sys.h"

// ---- helpers ----

static int same_i64(const int64_t *got, const int64_t *want, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) return 0;
    return 1;
}

static void print_i64(const char *name, const int64_t *v, int64_t n) {
    printf("%-28s", name);
    for (int64_t i = 0; i < n; i++) printf(" %lld", (long long)v[i]);
    printf("\n");
}

// A dataset of n items with the given labels and splits (paths "i<idx>.jpg").
static Dataset *make_ds(int n_classes, int n, const int *labels, const int *splits) {
    Dataset *ds = ds_new("toy", "test", "/toy", "toy");
    char name[32];
    for (int c = 0; c < n_classes; c++) {
        snprintf(name, sizeof name, "class%d", c);
        ds_add_class(ds, name);
    }
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "i%d.jpg", i);
        ds_add_item(ds, name, labels[i], splits ? splits[i] : DS_TRAIN);
    }
    return ds;
}

// ---- random numbers ----

static void test_pyrandom(void) {
    PyRandom r;

    // paper-protocol.md §8: first three u32 of random.Random(42).
    pyr_seed(&r, 42);
    uint32_t u[3] = {pyr_u32(&r), pyr_u32(&r), pyr_u32(&r)};
    printf("Random(42) u32: %u %u %u\n", u[0], u[1], u[2]);
    CHECK(u[0] == 2746317213u && u[1] == 478163327u && u[2] == 107420369u, "MT19937 vector");

    // Shuffling 0..9 with Random(42) gives 7 3 2 8 5 6 9 4 0 1.
    int64_t x[10], want_shuffle[10] = {7, 3, 2, 8, 5, 6, 9, 4, 0, 1};
    for (int i = 0; i < 10; i++) x[i] = i;
    pyr_seed(&r, 42);
    pyr_shuffle(&r, x, 10);
    print_i64("shuffle(0..9)", x, 10);
    CHECK(same_i64(x, want_shuffle, 10), "shuffle vector");

    // random.Random(1).sample(range(30), 5) = [4, 18, 27, 25, 24] (pool branch).
    int64_t pop[100], out[16];
    for (int i = 0; i < 100; i++) pop[i] = i;
    int64_t want1[5] = {4, 18, 27, 25, 24};
    pyr_seed(&r, 1);
    pyr_sample(&r, pop, 30, 5, out);
    CHECK(same_i64(out, want1, 5), "sample(range(30), 5) seed 1");

    // random.Random(2).sample(range(100), 16): the set branch (n > 85).
    int64_t want2[16] = {7, 11, 10, 46, 21, 94, 85, 39, 32, 77, 27, 4, 74, 87, 20, 55};
    pyr_seed(&r, 2);
    pyr_sample(&r, pop, 100, 16, out);
    print_i64("sample(range(100), 16)", out, 16);
    CHECK(same_i64(out, want2, 16), "sample(range(100), 16) seed 2");

    // random.Random(3).sample(range(10), 10) = a permutation.
    int64_t want3[10] = {3, 8, 2, 7, 4, 9, 0, 6, 5, 1};
    pyr_seed(&r, 3);
    pyr_sample(&r, pop, 10, 10, out);
    CHECK(same_i64(out, want3, 10), "sample(range(10), 10) seed 3");

    // A seed wider than 32 bits, randrange(10**12), random(); seed 0.
    pyr_seed(&r, (1ull << 40) + 5);
    uint32_t a = pyr_u32(&r), b = pyr_u32(&r);
    uint64_t big = pyr_randbelow(&r, 1000000000000ull);
    double f = pyr_random(&r);
    printf("Random(2**40+5): %u %u %llu %.16f\n", a, b, (unsigned long long)big, f);
    CHECK(a == 2166296868u && b == 2220160828u, "two-word seed");
    CHECK(big == 727003120297ull, "randbelow(10**12) = %llu", (unsigned long long)big);
    CHECK(f == 0.9257865475671585, "random() = %.17g", f);
    pyr_seed(&r, 0);
    CHECK(pyr_u32(&r) == 3626764237u, "seed 0");
}

// ---- samplers ----

static void test_paper_sampler(void) {
    // Buckets {0,3,6,9} {1,4,7,10} {2,5,8,11}, k = 2 -> 3 10 11 6 7 5.
    int labels[12];
    for (int i = 0; i < 12; i++) labels[i] = i % 3;
    Dataset *ds = make_ds(3, 12, labels, NULL);
    DsFewShot fs;
    McErr err = {{0}};
    CHECK(ds_fewshot(ds, DS_SAMPLER_PAPER, 2, 42, &fs, &err) == 0, "paper: %s", err.msg);
    int64_t want[6] = {3, 10, 11, 6, 7, 5};
    print_i64("paper sampler k=2", fs.train, fs.n_train);
    CHECK(fs.n_train == 6 && same_i64(fs.train, want, 6), "paper sampler vector");
    ds_fewshot_free(&fs);

    // k = 0: nothing; k = all: the train split in order; k > size: all of it.
    CHECK(ds_fewshot(ds, DS_SAMPLER_PAPER, 0, 42, &fs, &err) == 0 && fs.n_train == 0, "k=0");
    ds_fewshot_free(&fs);
    CHECK(ds_fewshot(ds, DS_SAMPLER_PAPER, DS_K_ALL, 42, &fs, &err) == 0 && fs.n_train == 12 &&
          fs.train[0] == 0 && fs.train[11] == 11, "k=all");
    ds_fewshot_free(&fs);
    CHECK(ds_fewshot(ds, DS_SAMPLER_PAPER, 16, 42, &fs, &err) == 0 && fs.n_train == 12,
          "k=16 with 4 per class keeps all 12");
    ds_fewshot_free(&fs);
    ds_free(ds);
}

static void test_coop_sampler(void) {
    // Dassl's generate_fewshot_dataset with random.seed(1), as CPython 3.11
    // computes it: train k, then val min(k, 4).
    int labels[21] = {2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0, 0, 2, 1, 1, 0, 0, 1, 0};
    int splits[21];
    for (int i = 0; i < 21; i++) splits[i] = i < 15 ? DS_TRAIN : DS_VAL;
    Dataset *ds = make_ds(3, 21, labels, splits);
    DsFewShot fs;
    McErr err = {{0}};
    int64_t t3[9] = {3, 0, 14, 1, 10, 12, 11, 8, 5}, v3[6] = {15, 19, 16, 17, 18, 20};
    CHECK(ds_fewshot(ds, DS_SAMPLER_COOP, 3, 1, &fs, &err) == 0, "coop: %s", err.msg);
    print_i64("coop k=3 train", fs.train, fs.n_train);
    print_i64("coop k=3 val", fs.val, fs.n_val);
    CHECK(fs.n_train == 9 && same_i64(fs.train, t3, 9), "coop k=3 train");
    CHECK(fs.n_val == 6 && same_i64(fs.val, v3, 6), "coop k=3 val");
    ds_fewshot_free(&fs);
    int64_t t5[14] = {3, 0, 14, 9, 6, 10, 13, 12, 1, 7, 2, 5, 8, 11};
    int64_t v5[6] = {15, 16, 19, 17, 18, 20};
    CHECK(ds_fewshot(ds, DS_SAMPLER_COOP, 5, 1, &fs, &err) == 0, "coop: %s", err.msg);
    CHECK(fs.n_train == 14 && same_i64(fs.train, t5, 14), "coop k=5 train");
    CHECK(fs.n_val == 6 && same_i64(fs.val, v5, 6), "coop k=5 val");
    ds_fewshot_free(&fs);
    ds_free(ds);
}

// ---- splits ----

static void test_splits(void) {
    McErr err = {{0}};

    // CoOp 50/20/30 with Python rounding: n=5 -> 2/1/2, n=7 -> 4/1/2, n=120 -> 60/24/36.
    int sizes[3] = {5, 7, 120}, labels[132], k = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < sizes[c]; i++) labels[k++] = c;
    Dataset *ds = make_ds(3, 132, labels, NULL);
    CHECK(ds_split_coop(ds, 1, 1, 0.5, 0.2, &err) == 0, "coop split: %s", err.msg);
    int64_t want[3][3] = {{2, 1, 2}, {4, 1, 2}, {60, 24, 36}};
    for (int s = DS_TRAIN; s <= DS_TEST; s++) {
        int64_t counts[3];
        ds_class_counts(ds, s, counts);
        for (int c = 0; c < 3; c++)
            CHECK(counts[c] == want[c][s - 1], "coop split class %d %s: %lld want %lld", c,
                  ds_split_name(s), (long long)counts[c], (long long)want[c][s - 1]);
    }
    int first_split = ds->items[10].split;
    ds_free(ds);

    // Same seed, same assignment.
    ds = make_ds(3, 132, labels, NULL);
    ds_split_coop(ds, 1, 1, 0.5, 0.2, &err);
    CHECK(ds->items[10].split == first_split, "coop split is deterministic");
    ds_free(ds);

    // The exact assignment CPython gives (random.seed(1), Dassl's loop over
    // labels in first-appearance order): 2 1 3 2 1 1 3 1 3 3 1.
    int l11[11] = {1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1}, want11[11] = {2, 1, 3, 2, 1, 1, 3, 1, 3, 3, 1};
    ds = make_ds(2, 11, l11, NULL);
    CHECK(ds_split_coop(ds, 1, 1, 0.5, 0.2, &err) == 0, "coop split 11: %s", err.msg);
    int same = 1;
    for (int i = 0; i < 11; i++) same &= ds->items[i].split == want11[i];
    CHECK(same, "coop split equals CPython's assignment");
    ds_free(ds);

    // A class too small for a non-empty test part is an error.
    int two[2] = {0, 0};
    ds = make_ds(1, 2, two, NULL);
    CHECK(ds_split_coop(ds, 1, 1, 0.5, 0.5, &err) != 0 && strstr(err.msg, "class0"),
          "tiny class: %s", err.msg);
    ds_free(ds);

    // Paper: given val kept; train+test -> halve test; train only -> 90/5/5.
    int lab[100] = {0}, spl[100];
    for (int i = 0; i < 100; i++) spl[i] = i < 60 ? DS_TRAIN : DS_TEST;
    const char *rule;
    ds = make_ds(1, 100, lab, spl);
    CHECK(ds_split_paper(ds, 7, &rule, &err) == 0 && !strcmp(rule, "halved test"), "halve");
    CHECK(ds_count_split(ds, DS_VAL) == 20 && ds_count_split(ds, DS_TEST) == 20 &&
          ds_count_split(ds, DS_TRAIN) == 60, "halved test 60/20/20");
    CHECK(ds_split_paper(ds, 7, &rule, &err) == 0 && !strcmp(rule, "given"), "given");
    ds_free(ds);
    ds = make_ds(1, 100, lab, NULL);
    CHECK(ds_split_paper(ds, 7, &rule, &err) == 0 && !strcmp(rule, "90/5/5"), "90/5/5");
    printf("paper split of 100 train-only items: %lld/%lld/%lld\n",
           (long long)ds_count_split(ds, DS_TRAIN), (long long)ds_count_split(ds, DS_VAL),
           (long long)ds_count_split(ds, DS_TEST));
    CHECK(ds_count_split(ds, DS_TRAIN) == 90 && ds_count_split(ds, DS_VAL) == 5 &&
          ds_count_split(ds, DS_TEST) == 5, "90/5/5 counts");
    ds_free(ds);

    // SUN397-style trainval: 50 train per class -> 40/10.
    int l2[100];
    for (int i = 0; i < 100; i++) l2[i] = i % 2;
    ds = make_ds(2, 100, l2, NULL);
    CHECK(ds_split_trainval(ds, 1, 0.2, &err) == 0, "trainval: %s", err.msg);
    int64_t vc[2];
    ds_class_counts(ds, DS_VAL, vc);
    CHECK(vc[0] == 10 && vc[1] == 10, "trainval 10 val per class, got %lld %lld",
          (long long)vc[0], (long long)vc[1]);
    ds_free(ds);

    // k parsing.
    int kk;
    CHECK(ds_parse_k("all", &kk, &err) == 0 && kk == DS_K_ALL, "k=all");
    CHECK(ds_parse_k("16", &kk, &err) == 0 && kk == 16, "k=16");
    CHECK(ds_parse_k("-1", &kk, &err) != 0 && ds_parse_k("4x", &kk, &err) != 0, "bad k");
}

// ---- manifests ----

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_manifests(void) {
    char dir[] = "/tmp/mclip_split_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    int labels[40], splits[40];
    for (int i = 0; i < 40; i++) {
        labels[i] = i % 4;
        splits[i] = i < 32 ? DS_TRAIN : DS_VAL;
    }
    Dataset *ds = make_ds(4, 40, labels, splits);
    McErr err = {{0}};
    DsFewShot a, b;
    int created;

    // First call draws and writes; the second reads the same selection back.
    CHECK(ds_fewshot_load_or_create(ds, dir, DS_SAMPLER_COOP, 2, 3, &a, &created, &err) == 0,
          "create: %s", err.msg);
    CHECK(created == 1 && a.n_train == 8 && a.n_val == 8, "created 8 train + 8 val");
    CHECK(ds_fewshot_load_or_create(ds, dir, DS_SAMPLER_COOP, 2, 3, &b, &created, &err) == 0,
          "reuse: %s", err.msg);
    CHECK(created == 0 && b.n_train == a.n_train && same_i64(a.train, b.train, a.n_train) &&
          b.n_val == a.n_val && same_i64(a.val, b.val, a.n_val), "reused selection equal");
    ds_fewshot_free(&b);
    char name[256], path[512];
    ds_fewshot_name(ds, DS_SAMPLER_COOP, 2, 3, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    printf("manifest: %s\n", name);
    CHECK(!strcmp(name, "fewshot-toy-k2-seed3-coop.tsv"), "manifest name");

    // A changed source dataset (different labels) no longer matches the header.
    ds->items[0].label = 1;
    CHECK(ds_fewshot_load_or_create(ds, dir, DS_SAMPLER_COOP, 2, 3, &b, &created, &err) != 0,
          "changed source accepted");
    printf("changed source -> %s\n", err.msg);
    CHECK(strstr(err.msg, "source_sha256") && strstr(err.msg, name), "header message");
    ds->items[0].label = 0;

    // A foreign two-column list is read; unknown paths and wrong labels fail.
    snprintf(path, sizeof path, "%s/foreign.tsv", dir);
    write_text(path, "# exported elsewhere\ni5.jpg\t1\ni2.jpg\t2\n");
    CHECK(ds_fewshot_read(ds, path, &b, &err) == 0 && b.n_train == 2 && b.train[0] == 5 &&
          b.train[1] == 2, "foreign list: %s", err.msg);
    ds_fewshot_free(&b);
    write_text(path, "path\tlabel\tsplit\ni5.jpg\t1\ttrain\nnope.jpg\t1\ttrain\n");
    CHECK(ds_fewshot_read(ds, path, &b, &err) != 0 && strstr(err.msg, "foreign.tsv:3"),
          "unknown path: %s", err.msg);
    write_text(path, "i5.jpg\t3\n");
    CHECK(ds_fewshot_read(ds, path, &b, &err) != 0 && strstr(err.msg, "foreign.tsv:1") &&
          strstr(err.msg, "label 3"), "wrong label: %s", err.msg);
    write_text(path, "i5.jpg\t1\ttest\n");
    CHECK(ds_fewshot_read(ds, path, &b, &err) != 0, "test rows refused");

    ds_fewshot_free(&a);
    ds_free(ds);
    test_rm_rf(dir);
}

int main(void) {
    test_pyrandom();
    test_paper_sampler();
    test_coop_sampler();
    test_splits();
    test_manifests();
    return test_finish("test_split");
}
