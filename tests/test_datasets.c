// test_datasets.c - every loader on the generated dataset in its exact
// on-disk layout (written to a temp folder, compressed level-5 .mat files
// included): detection, class names and order, split sizes, label counts;
// the shipped class-name lists and their SHA-1 fingerprints (datasets.md
// §8.1); SHA test vectors; and the error cases (missing files, a bad .mat,
// wrong JSON, a label out of range, an empty class), each naming the file
// and the line where there is one.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../datasets/gen_dataset.h"
#include "../datasets/matfile.h"
#include "../datasets/split.h"
#include "util/check.h"
#include "util/sys.h"

enum { C = 4, M = 10 };   // generated classes, images per class

static char root[64];     // the temp folder
static char path[8192];

static const char *at(const char *rel) {
    snprintf(path, sizeof path, "%s/%s", root, rel);
    return path;
}

static void write_text(const char *p, const char *text) {
    FILE *f = fopen(p, "w");
    if (!f) {
        CHECK(0, "cannot write %s", p);
        return;
    }
    fputs(text, f);
    fclose(f);
}

// Split sizes and per-class counts of a loaded dataset.
static void expect_sizes(const char *what, const Dataset *ds, int classes, int64_t train,
                         int64_t val, int64_t test, int64_t none) {
    int64_t t = ds_count_split(ds, DS_TRAIN), v = ds_count_split(ds, DS_VAL);
    int64_t s = ds_count_split(ds, DS_TEST), n = ds_count_split(ds, DS_NONE);
    printf("%-22s %-22s classes %d  train %lld val %lld test %lld none %lld\n", what, ds->layout,
           ds->n_classes, (long long)t, (long long)v, (long long)s, (long long)n);
    CHECK(ds->n_classes == classes, "%s: %d classes, want %d", what, ds->n_classes, classes);
    CHECK(t == train && v == val && s == test && n == none, "%s: split sizes", what);
    int64_t counts[16] = {0};
    if (ds->n_classes <= 16) {
        ds_class_counts(ds, -1, counts);
        for (int c = 0; c < ds->n_classes; c++)
            CHECK(counts[c] == M, "%s: class %d has %lld items, want %d", what, c,
                  (long long)counts[c], M);
    }
    // Every listed file exists.
    int missing = 0;
    for (int64_t i = 0; i < ds->n_items; i++) missing += !ds_is_file(ds->items[i].path);
    CHECK(missing == 0, "%s: %d listed files missing", what, missing);
}

static Dataset *open_ok(const char *rel, const char *dataset, const char *names_form) {
    McErr err = {{0}};
    DsOptions opt = {.dataset = dataset, .names_form = names_form};
    Dataset *ds = ds_open(at(rel), &opt, &err);
    CHECK(ds != NULL, "open %s: %s", rel, err.msg);
    return ds;
}

// Expect ds_open to fail with a message containing both needles.
static void open_fail(const char *what, const char *p, const DsOptions *opt, const char *n1,
                      const char *n2) {
    McErr err = {{0}};
    Dataset *ds = ds_open(p, opt, &err);
    CHECK(ds == NULL, "%s: loaded without error", what);
    if (ds) {
        ds_free(ds);
        return;
    }
    printf("%-24s -> %s\n", what, err.msg);
    CHECK(!n1 || strstr(err.msg, n1), "%s: message lacks '%s'", what, n1);
    CHECK(!n2 || strstr(err.msg, n2), "%s: message lacks '%s'", what, n2);
}

// ---- loaders on the generated layouts ----

static void test_layouts(void) {
    char name[64];
    Dataset *ds;

    // ImageFolder: classes sorted bytewise.
    if ((ds = open_ok("imagefolder", NULL, NULL))) {
        expect_sizes("imagefolder", ds, C, 0, 0, 0, C * M);
        CHECK(!strcmp(ds->classes[0], "blue_triangle") && !strcmp(ds->classes[3], "yellow_ring"),
              "imagefolder order: %s .. %s", ds->classes[0], ds->classes[3]);
        ds_free(ds);
    }

    // TSV: names from classnames.txt (generation order), splits 5/2/3.
    if ((ds = open_ok("tsv/manifest.tsv", NULL, NULL))) {
        expect_sizes("tsv", ds, C, C * 5, C * 2, C * 3, 0);
        CHECK(!strcmp(ds->classes[0], gen_class_name(0, name, sizeof name)), "tsv names");
        CHECK(!strcmp(ds->items[0].rel, "images/red_circle_000.png") && ds->items[0].label == 0,
              "tsv first row %s", ds->items[0].rel);
        ds_free(ds);
    }

    // CoOp JSON under the CoOp Flowers layout.
    if ((ds = open_ok("coop/oxford_flowers", "flowers102", NULL))) {
        expect_sizes("coop json", ds, C, C * 5, C * 2, C * 3, 0);
        CHECK(!strcmp(ds->layout, "coop-json") && !strcmp(ds->classes[1], "green square"),
              "coop names: %s", ds->classes[1]);
        ds_free(ds);
    }

    // Flowers102 native: setid.mat splits, labels from imagelabels.mat.
    if ((ds = open_ok("flowers102", "flowers102", NULL))) {
        expect_sizes("flowers102", ds, C, C * 5, C * 2, C * 3, 0);
        // Same images as the CoOp copy: the image of each id has the same label.
        Dataset *coop = open_ok("coop/oxford_flowers", NULL, NULL);
        int agree = 0;
        for (int64_t i = 0; coop && i < ds->n_items; i++)
            for (int64_t j = 0; j < coop->n_items; j++)
                if (!strcmp(ds->items[i].rel, coop->items[j].rel))
                    agree += ds->items[i].label == coop->items[j].label &&
                             ds->items[i].split == coop->items[j].split;
        CHECK(agree == C * M, "native and CoOp flowers agree on %d of %d items", agree, C * M);
        // trnid is not sorted (ids are shuffled like the real ones).
        int sorted = 1;
        for (int64_t i = 1; i < C * 5; i++)
            sorted &= strcmp(ds->items[i - 1].rel, ds->items[i].rel) < 0;
        CHECK(!sorted, "trnid order should not be sorted");
        ds_free(coop);
        ds_free(ds);
    }

    // The generated .mat files: compressed, miUINT8 labels, miUINT16 ids.
    McErr err = {{0}};
    MatFile *m = mat_open(at("flowers102/setid.mat"), &err);
    CHECK(m != NULL, "setid.mat: %s", err.msg);
    if (m) {
        const MatVar *v = mat_find(m, "trnid");
        CHECK(v && v->compressed && v->stype == MAT_UINT16 && v->mclass == MX_DOUBLE,
              "trnid storage");
        CHECK(mat_count(m) == 3 && !strcmp(mat_at(m, 2)->name, "tstid"), "three variables");
        mat_close(m);
    }
    m = mat_open(at("flowers102/imagelabels.mat"), &err);
    CHECK(m && mat_find(m, "labels")->stype == MAT_UINT8 && mat_find(m, "labels")->compressed,
          "imagelabels.mat storage: %s", err.msg);
    mat_close(m);

    // DTD: partitions 1 and 2, nested dtd/dtd.
    if ((ds = open_ok("dtd", "dtd", NULL))) {
        expect_sizes("dtd p1", ds, C, C * 5, C * 2, C * 3, 0);
        CHECK(!strcmp(ds->items[0].rel, "red_circle/red_circle_0001.jpg") &&
              ds->items[0].label == 2, "dtd first item %s", ds->items[0].rel);
        ds_free(ds);
    }
    DsOptions p2 = {.dataset = "dtd", .partition = 2};
    ds = ds_open(at("dtd"), &p2, &err);
    CHECK(ds != NULL, "dtd partition 2: %s", err.msg);
    if (ds) {
        expect_sizes("dtd p2", ds, C, C * 5, C * 2, C * 3, 0);
        ds_free(ds);
    }

    // Caltech101: CoOp drops BACKGROUND_Google and Faces_easy and renames;
    // the paper's form keeps faces_easy and lowercases.
    if ((ds = open_ok("caltech101", "caltech101", NULL))) {
        expect_sizes("caltech101 coop", ds, C, 0, 0, 0, C * M);
        CHECK(!strcmp(ds->classes[0], "face") && !strcmp(ds->classes[1], "leopard") &&
              !strcmp(ds->classes[2], "motorbike") && !strcmp(ds->classes[3], "airplane"),
              "caltech CoOp names");
        // CoOp's 50/20/30 with Python rounding: 10 -> 5/2/3.
        CHECK(ds_split_coop(ds, 1, 1, 0.5, 0.2, &err) == 0, "caltech split: %s", err.msg);
        CHECK(ds_count_split(ds, DS_TRAIN) == C * 5 && ds_count_split(ds, DS_VAL) == C * 2,
              "caltech 50/20/30");
        ds_free(ds);
    }
    if ((ds = open_ok("caltech101", "caltech101", "paper"))) {
        CHECK(ds->n_classes == C + 1 && !strcmp(ds->classes[0], "airplanes") &&
              !strcmp(ds->classes[2], "faces_easy"), "caltech paper names (%d)", ds->n_classes);
        ds_free(ds);
    }

    // SUN397: Training_01 / Testing_01; CoOp reverses sub-folder names.
    if ((ds = open_ok("sun397", "sun397", NULL))) {
        expect_sizes("sun397", ds, C, C * 5, 0, C * 5, 0);
        CHECK(!strcmp(ds->classes[0], "outdoor blue_triangle"), "sun CoOp name '%s'",
              ds->classes[0]);
        CHECK(ds_split_trainval(ds, 1, 0.2, &err) == 0 && ds_count_split(ds, DS_VAL) == C,
              "sun 80/20: %s", err.msg);
        ds_free(ds);
    }
    if ((ds = open_ok("sun397", "sun397", "paper"))) {
        CHECK(!strcmp(ds->classes[0], "blue triangle outdoor"), "sun paper name '%s'",
              ds->classes[0]);
        ds_free(ds);
    }

    // Paper protocol on ImageFolder (no split): 90/5/5 of 40 = 36/2/2.
    if ((ds = open_ok("imagefolder", NULL, NULL))) {
        const char *rule;
        CHECK(ds_split_paper(ds, 3, &rule, &err) == 0 && !strcmp(rule, "90/5/5"), "rule");
        CHECK(ds_count_split(ds, DS_TRAIN) == 36 && ds_count_split(ds, DS_VAL) == 2, "90/5/5");
        ds_free(ds);
    }
}

static void test_detection(void) {
    struct {
        const char *rel;
        DsLayout want;
    } cases[] = {
        {"imagefolder", DS_LAYOUT_IMAGEFOLDER},  {"tsv/manifest.tsv", DS_LAYOUT_TSV},
        {"tsv", DS_LAYOUT_TSV},                  {"coop/oxford_flowers", DS_LAYOUT_COOP_JSON},
        {"flowers102", DS_LAYOUT_FLOWERS102},    {"dtd", DS_LAYOUT_DTD},
        {"caltech101", DS_LAYOUT_CALTECH101},    {"sun397", DS_LAYOUT_SUN397},
        {"flickr30k", DS_LAYOUT_KARPATHY},       {"tsv/captions.tsv", DS_LAYOUT_CAPTION_TSV},
        {"flickr30k/results_20130124.token", DS_LAYOUT_FLICKR_TOKEN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        DsSource src;
        McErr err = {{0}};
        int rc = ds_detect(at(cases[i].rel), NULL, &src, &err);
        CHECK(rc == 0 && src.layout == cases[i].want, "detect %s: %s (%s)", cases[i].rel,
              ds_layout_name(rc ? DS_LAYOUT_NONE : src.layout), err.msg);
    }
    // Forcing the CoOp layout where only native files exist fails clearly.
    DsOptions coop = {.dataset = "flowers102", .layout = "coop"};
    open_fail("coop layout missing", at("flowers102"), &coop, "no flowers102 layout", NULL);
    DsOptions unknown = {.dataset = "imagenet"};
    open_fail("unknown preset", at("flowers102"), &unknown, "imagenet", "unknown");
}

static void test_captions(void) {
    McErr err = {{0}};
    CaptionSet *cs = cs_open(at("flickr30k"), NULL, &err);
    CHECK(cs != NULL, "karpathy: %s", err.msg);
    if (cs) {
        printf("karpathy: %d images, %d captions, train %d val %d test %d\n", cs->n_images,
               cs->n_captions, cs_count_split(cs, DS_TRAIN), cs_count_split(cs, DS_VAL),
               cs_count_split(cs, DS_TEST));
        CHECK(cs->n_images == C * M && cs->n_captions == 5 * C * M, "karpathy counts");
        CHECK(cs_count_split(cs, DS_TRAIN) == C * 5 && cs_count_split(cs, DS_TEST) == C * 3,
              "karpathy splits");
        CHECK(cs->images[1].first == 5 && cs->images[1].n == 5 && cs->caption_image[7] == 1,
              "captions grouped per image");
        CHECK(!strcmp(cs->captions[0], "A red circle on a grey background."), "caption 0: %s",
              cs->captions[0]);
        CHECK(ds_is_file(cs->images[3].path), "image file %s", cs->images[3].path);
        cs_free(cs);
    }
    cs = cs_load_token(at("flickr30k/results_20130124.token"), NULL, &err);
    CHECK(cs && cs->n_images == C * M && cs->n_captions == 5 * C * M &&
          !strcmp(cs->captions[6], "A picture of a red circle."), "token form: %s", err.msg);
    cs_free(cs);
    cs = cs_open(at("tsv/captions.tsv"), NULL, &err);
    CHECK(cs && cs->n_images == C * M && cs->n_captions == 2 * C * M, "caption tsv: %s",
          err.msg);
    cs_free(cs);
}

// The same seed gives the same bytes.
static void test_determinism(void) {
    char other[128];
    snprintf(other, sizeof other, "%s/again", root);
    GenOptions g = gen_defaults();
    g.classes = C, g.per_class = M, g.size = 16, g.seed = 5;
    McErr err = {{0}};
    CHECK(gen_dataset(other, &g, &err) == 0, "gen again: %s", err.msg);
    const char *files[] = {"flowers102/setid.mat", "dtd/dtd/labels/train1.txt",
                           "imagefolder/red_circle/img_003.jpg", "flickr30k/dataset_flickr30k.json",
                           "coop/oxford_flowers/split_zhou_OxfordFlowers.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[8192], b[8192], ha[65], hb[65];
        snprintf(a, sizeof a, "%s/%s", root, files[i]);
        snprintf(b, sizeof b, "%s/%s", other, files[i]);
        char *ta, *tb;
        size_t la, lb;
        if (ds_read_file(a, 1 << 24, &ta, &la, &err) || ds_read_file(b, 1 << 24, &tb, &lb, &err)) {
            CHECK(0, "read %s: %s", files[i], err.msg);
            continue;
        }
        ds_sha256_hex(ta, la, ha);
        ds_sha256_hex(tb, lb, hb);
        CHECK(!strcmp(ha, hb), "%s differs between two runs with one seed", files[i]);
        free(ta);
        free(tb);
    }
    test_rm_rf(other);
}

// ---- class-name lists and hashes ----

static void test_hashes(void) {
    char h1[41], h2[65];
    const char *abc = "abc", *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ds_sha1_hex(abc, 3, h1);
    CHECK(!strcmp(h1, "a9993e364706816aba3e25717850c26c9cd0d89d"), "sha1(abc) %s", h1);
    ds_sha1_hex(two, strlen(two), h1);
    CHECK(!strcmp(h1, "84983e441c3bd26ebaae4aa1f95129e5e54670f1"), "sha1 two blocks %s", h1);
    ds_sha256_hex(abc, 3, h2);
    CHECK(!strcmp(h2, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
          "sha256(abc) %s", h2);
    ds_sha256_hex(two, strlen(two), h2);
    CHECK(!strcmp(h2, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
          "sha256 two blocks %s", h2);
    ds_sha256_hex("", 0, h2);
    CHECK(!strcmp(h2, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
          "sha256('') %s", h2);
}

static void test_classnames(void) {
    // Fingerprints from datasets.md §8.1 (SHA-1 of json.dumps(names)).
    struct {
        const char *file, *sha1;
        int n;
    } lists[] = {
        {"flowers102_paper.txt", "cc236f26ab85bd78071f5990c6e3debe7d158fed", 102},
        {"dtd_paper.txt", "c38ce6e575320351521f4b3b76407c71c38d724d", 47},
        {"eurosat_paper.txt", "f1429e27543b97466e80955812b6d321a326ee23", 10},
        {"flowers102_coop.txt", NULL, 102}, {"dtd_coop.txt", NULL, 47},
        {"caltech101_coop.txt", NULL, 100}, {"caltech101_paper.txt", NULL, 101},
        {"sun397_coop.txt", NULL, 397},     {"sun397_paper.txt", NULL, 397},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        char p[256], hex[41];
        snprintf(p, sizeof p, "datasets/classnames/%s", lists[i].file);
        char **names;
        int n;
        McErr err = {{0}};
        if (ds_read_classnames(p, &names, &n, &err)) {
            CHECK(0, "%s (run the tests from the project root): %s", p, err.msg);
            continue;
        }
        ds_classnames_sha1(names, n, hex);
        printf("%-22s %3d names  sha1 %s%s\n", lists[i].file, n, hex,
               lists[i].sha1 ? (strcmp(hex, lists[i].sha1) ? "  MISMATCH" : "  = datasets.md")
                             : "");
        CHECK(n == lists[i].n, "%s: %d names, want %d", lists[i].file, n, lists[i].n);
        CHECK(!lists[i].sha1 || !strcmp(hex, lists[i].sha1), "%s fingerprint", lists[i].file);
        if (!strcmp(lists[i].file, "flowers102_paper.txt") && n == 102)
            CHECK(!strcmp(names[0], " pink primrose") && !strcmp(names[87], "cyclamen ") &&
                  !strcmp(names[101], "blackberry lily,"), "verbatim spaces kept");
        if (!strcmp(lists[i].file, "caltech101_coop.txt") && n == 100)
            CHECK(!strcmp(names[0], "face") && !strcmp(names[4], "airplane"), "caltech order");
        ds_names_free(names, n);
    }
}

// ---- errors ----

static void test_errors(void) {
    McErr err = {{0}};
    char p[8192];
    DsOptions none = {0};

    // Missing folder / files.
    open_fail("missing folder", "/nonexistent/mclip/data", NULL, "/nonexistent/mclip/data",
              "no such");
    DsOptions fl = {.dataset = "flowers102"};
    snprintf(p, sizeof p, "%s/flowers102/setid.mat", root);
    char moved[8200];
    snprintf(moved, sizeof moved, "%s.away", p);
    rename(p, moved);
    open_fail("flowers without setid", at("flowers102"), &fl, "no flowers102 layout", NULL);
    CHECK(ds_load_flowers102(at("flowers102"), NULL, &err) == NULL && strstr(err.msg, "setid.mat"),
          "direct load names setid.mat: %s", err.msg);

    // A bad .mat in place of setid.mat: truncated.
    char *bytes;
    size_t len;
    CHECK(ds_read_file(moved, 1 << 20, &bytes, &len, &err) == 0, "read setid");
    FILE *f = fopen(p, "wb");
    fwrite(bytes, 1, len / 2, f);
    fclose(f);
    free(bytes);
    open_fail("truncated setid.mat", at("flowers102"), &fl, "setid.mat", "offset");
    rename(moved, p);

    // TSV: label out of range, bad split, '..', duplicate, caption manifest.
    snprintf(p, sizeof p, "%s/tsv/bad.tsv", root);
    write_text(p, "path\tlabel\tsplit\nimages/red_circle_000.png\t0\ttrain\n"
                  "images/red_circle_001.jpg\t9\ttrain\n");
    open_fail("tsv label out of range", p, &none, "bad.tsv:3", "out of range");
    write_text(p, "path\tlabel\tsplit\nimages/red_circle_000.png\t0\ttrian\n");
    open_fail("tsv bad split", p, &none, "bad.tsv:2", "trian");
    write_text(p, "# c\npath\tlabel\n../x.jpg\t0\n");
    open_fail("tsv dot-dot", p, &none, "bad.tsv:3", "..");
    write_text(p, "a.jpg\t0\nb.jpg\t1\nc.jpg\t2\nd.jpg\t3\na.jpg\t1\n");
    open_fail("tsv duplicate", p, &none, "bad.tsv:5", "line 1");
    write_text(p, "path\tcaption\na.jpg\ta cat\n");
    CHECK(ds_load_tsv(p, NULL, NULL, &err) == NULL && strstr(err.msg, "caption manifest"),
          "caption manifest as classification: %s", err.msg);
    write_text(p, "a.jpg\tcat\nb.jpg\tdog\n");
    CHECK(ds_load_tsv(p, at("tsv/classnames.txt"), NULL, &err) == NULL &&
          strstr(err.msg, "bad.tsv:1") && strstr(err.msg, "'cat'"), "unknown name: %s",
          err.msg);

    // Empty class: a names file with a class that has no rows.
    snprintf(p, sizeof p, "%s/tsv/names5.txt", root);
    write_text(p, "red_circle\ngreen_square\nblue_triangle\nyellow_ring\nunused_class\n");
    Dataset *ds = ds_load_tsv(at("tsv/manifest.tsv"), p, NULL, &err);
    CHECK(ds == NULL && strstr(err.msg, "manifest.tsv") && strstr(err.msg, "unused_class") &&
          strstr(err.msg, "empty class"), "empty class: %s", err.msg);
    ds_free(ds);

    // Empty class folder in an ImageFolder.
    snprintf(p, sizeof p, "%s/imagefolder/zz_empty", root);
    mkdir(p, 0755);
    open_fail("imagefolder empty class", at("imagefolder"), &none, "zz_empty", "empty class");
    rmdir(p);

    // CoOp JSON: syntax error, duplicate key, two names, label not in train,
    // absolute path, non-integer label, unknown key.
    snprintf(p, sizeof p, "%s/coop/split_zhou_Bad.json", root);
    struct {
        const char *what, *text, *n1, *n2;
    } js[] = {
        {"json syntax", "{\n  \"train\": [\n    [\"a.jpg\", 0, \"x\"]\n  ],\n  \"val\": [] ,\n"
                        "  \"test\": [,]\n}", "split_zhou_Bad.json:6", "invalid JSON"},
        {"json duplicate key", "{\"train\": [[\"a.jpg\", 0, \"x\"]], \"train\": [], \"val\": [], "
                               "\"test\": []}", "split_zhou_Bad.json:1", "invalid JSON"},
        {"json two names", "{\"train\": [[\"a.jpg\", 0, \"x\"],\n[\"b.jpg\", 0, \"y\"]], "
                           "\"val\": [], \"test\": []}", ":2", "named 'y'"},
        {"json label not in train", "{\"train\": [[\"a.jpg\", 1, \"x\"]], \"val\": [], "
                                    "\"test\": []}", "label 0", "never occurs"},
        {"json absolute path", "{\"train\": [[\"/etc/a.jpg\", 0, \"x\"]], \"val\": [], "
                               "\"test\": []}", "absolute path", "train[0]"},
        {"json label type", "{\"train\": [[\"a.jpg\", 0.5, \"x\"]], \"val\": [], \"test\": []}",
         "not an integer", NULL},
        {"json unknown key", "{\"train\": [[\"a.jpg\", 0, \"x\"]], \"val\": [], \"test\": [], "
                             "\"extra\": 1}", "unexpected key", "extra"},
        {"json label range", "{\"train\": [[\"a.jpg\", -3, \"x\"]], \"val\": [], \"test\": []}",
         "out of range", NULL},
    };
    for (size_t i = 0; i < sizeof js / sizeof js[0]; i++) {
        write_text(p, js[i].text);
        open_fail(js[i].what, p, &none, js[i].n1, js[i].n2);
    }

    // DTD list naming an unknown class; SUN list with an unknown class.
    snprintf(p, sizeof p, "%s/dtd/dtd/labels/val1.txt", root);
    char *saved;
    CHECK(ds_read_file(p, 1 << 20, &saved, &len, &err) == 0, "read val1");
    write_text(p, "red_circle/red_circle_0006.jpg\nplaid/plaid_0001.jpg\n");
    DsOptions dtd = {.dataset = "dtd"};
    open_fail("dtd unknown class", at("dtd"), &dtd, "val1.txt:2", "plaid");
    write_text(p, saved);
    free(saved);
    snprintf(p, sizeof p, "%s/sun397/Testing_01.txt", root);
    CHECK(ds_read_file(p, 1 << 20, &saved, &len, &err) == 0, "read testing");
    write_text(p, "/z/zoo/sun_aaaaaaaaaaaaaaaa.jpg\n");
    DsOptions sun = {.dataset = "sun397"};
    open_fail("sun unknown class", at("sun397"), &sun, "Testing_01.txt:1", "/z/zoo");
    write_text(p, saved);
    free(saved);

    // Karpathy JSON without sentences.
    snprintf(p, sizeof p, "%s/flickr30k/bad_karpathy.json", root);
    write_text(p, "{\"images\": [\n{\"filename\": \"1.jpg\", \"split\": \"train\"}]}");
    CaptionSet *cs = cs_load_karpathy(p, NULL, &err);
    CHECK(cs == NULL && strstr(err.msg, "bad_karpathy.json:2") && strstr(err.msg, "sentences"),
          "karpathy: %s", err.msg);

    // Class-name file with an empty line in the middle.
    snprintf(p, sizeof p, "%s/tsv/names_bad.txt", root);
    write_text(p, "# header\na\n\nb\n");
    char **names;
    int n;
    CHECK(ds_read_classnames(p, &names, &n, &err) != 0 && strstr(err.msg, "names_bad.txt:3"),
          "empty name line: %s", err.msg);
}

// A root/{train,test}/<class>/ ImageFolder.
static void test_split_folders(void) {
    char p[8192];
    uint8_t px[4 * 4 * 3] = {0};
    McErr err = {{0}};
    const char *files[] = {"sf/train/cat/a.png", "sf/train/dog/b.png", "sf/test/cat/c.png",
                           "sf/test/dog/d.png", "sf/test/dog/e.png", "sf/train/dog/notes.txt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i]);
        char *slash = strrchr(p, '/');
        *slash = 0;
        ds_mkdirs(p, &err);
        *slash = '/';
        gen_write_image(p, 4, 4, 3, px, 0, 90, &err);
    }
    Dataset *ds = open_ok("sf", NULL, NULL);
    if (ds) {
        CHECK(!strcmp(ds->layout, "imagefolder-splits") && ds->n_classes == 2 &&
              ds_count_split(ds, DS_TRAIN) == 2 && ds_count_split(ds, DS_TEST) == 3,
              "split folders: %s %lld/%lld", ds->layout, (long long)ds_count_split(ds, DS_TRAIN),
              (long long)ds_count_split(ds, DS_TEST));
        ds_free(ds);
    }
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/mclip_datasets_XXXXXX");
    if (!mkdtemp(root)) {
        CHECK(0, "mkdtemp failed");
        return test_finish("test_datasets");
    }
    GenOptions g = gen_defaults();
    g.classes = C, g.per_class = M, g.size = 16, g.seed = 5;
    McErr err = {{0}};
    double t0 = mc_time();
    int rc = gen_dataset(root, &g, &err);
    printf("generated %d classes x %d images in every layout in %.2f s\n", C, M, mc_time() - t0);
    CHECK(rc == 0, "gen_dataset: %s", err.msg);
    if (rc == 0) {
        test_layouts();
        test_detection();
        test_captions();
        test_determinism();
        test_errors();
        test_split_folders();
    }
    test_hashes();
    test_classnames();
    test_rm_rf(root);
    return test_finish("test_datasets");
}
