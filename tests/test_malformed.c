// test_malformed.c - every row of tests/malformed/MANIFEST.tsv must fail
// cleanly: the reader returns an error (no crash, no sanitizer report) whose
// message names the file and contains the row's expected substring.  A row
// whose expected text is "OK" must be accepted instead.
//
// Rows: file (under tests/malformed/), kind, expected substring, separated by
// tabs; '#' lines and the "file" header line are skipped.  Each kind maps to
// a runner in kinds[] below: to add a kind, write a `static int
// run_<kind>(const char *path, McErr *err)` that returns 0 when the input is
// accepted and -1 with err set otherwise, and add one line to kinds[].  A row
// of a kind that has no runner fails the test with a message saying so.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../coop/promptfile.h"
#include "../coop/vprompt.h"
#include "../datasets/dataset.h"
#include "../datasets/image.h"
#include "../datasets/matfile.h"
#include "../datasets/split.h"
#include "../mobileclip/json.h"
#include "../mobileclip/safetensors.h"
#include "../mobileclip/tokenizer.h"
#include "../mobileclip/torch_pt.h"
#include "../mobileclip/weights.h"
#include "util/check.h"

#define DIR "tests/malformed/"

// ---- runners ----

// Strict JSON text (duplicate keys refused).
static int run_json(const char *path, McErr *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return mc_err(err, "%s: cannot open", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    McErr jerr;
    JsonOptions opt = {.reject_duplicates = 1};
    JsonDoc *d = json_parse(buf, n, &opt, &jerr);
    if (!d) return mc_err(err, "%s: %s", path, jerr.msg);
    json_free(d);
    return 0;
}

// Open, then convert every tensor.
static int run_safetensors(const char *path, McErr *err) {
    StFile *f = st_open(path, err);
    if (!f) return -1;
    int rc = 0;
    for (int i = 0; i < st_count(f) && !rc; i++) {
        const StTensor *t = st_at(f, i);
        float *buf = malloc((size_t)(t->numel + 1) * sizeof *buf);
        rc = st_to_f32(f, t, buf, t->numel, err);
        free(buf);
    }
    st_close(f);
    return rc;
}

// Convert every tensor reachable from v (the tree is acyclic and shallow;
// *budget bounds the walk when values are shared).
static int convert_all(const PtFile *f, const PtValue *v, int64_t *budget, McErr *err) {
    if (--*budget < 0) return 0;
    if (v->kind == PT_TENSOR) {
        float *buf = malloc((size_t)(v->t->numel + 1) * sizeof *buf);
        int rc = pt_tensor_to_f32(f, v->t, buf, v->t->numel, err);
        free(buf);
        return rc;
    }
    if (v->kind == PT_LIST || v->kind == PT_TUPLE || v->kind == PT_DICT)
        for (int64_t i = 0; i < v->n; i++)
            if (convert_all(f, v->items[i], budget, err)) return -1;
    return 0;
}

static int run_pt(const char *path, McErr *err) {
    PtFile *f = pt_open(path, err);
    if (!f) return -1;
    int64_t budget = 100000;
    int rc = convert_all(f, pt_root(f), &budget, err);
    pt_close(f);
    return rc;
}

// Bind the keys listed in weights_expect.txt ("name d0,d1" or "name -").
static int run_weights(const char *path, McErr *err) {
    WeightSet *ws = ws_open(path, err);
    if (!ws) return -1;
    FILE *fp = fopen(DIR "weights_expect.txt", "r");
    MC_CHECK(fp != NULL, "missing " DIR "weights_expect.txt (run make_corpus.py)");
    char line[256], name[200], dims[56];
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#' || sscanf(line, "%199s %55s", name, dims) != 2) continue;
        int64_t shape[MC_MAXDIM];
        int nd = 0;
        for (char *p = dims; *p && *p != '-' && nd < MC_MAXDIM; nd++) {
            shape[nd] = strtoll(p, &p, 10);
            if (*p == ',') p++;
        }
        tensor_free(ws_take(ws, name, nd, shape));
    }
    fclose(fp);
    int rc = ws_finish(ws, err);
    ws_close(ws);
    return rc;
}

// Level-5 MAT: open, then convert every numeric variable.
static int run_mat(const char *path, McErr *err) {
    MatFile *m = mat_open(path, err);
    if (!m) return -1;
    int rc = 0;
    for (int i = 0; i < mat_count(m) && !rc; i++) {
        const MatVar *v = mat_at(m, i);
        double *vals;
        int64_t n;
        if (v->mclass < MX_DOUBLE) continue;
        rc = mat_get_f64(m, v->name, &vals, &n, err);
        if (!rc) free(vals);
    }
    mat_close(m);
    return rc;
}

// CoOp split_zhou_*.json (images are not opened).
static int run_split_json(const char *path, McErr *err) {
    Dataset *ds = ds_load_coop_json(path, DIR, err);
    ds_free(ds);
    return ds ? 0 : -1;
}

// Classification TSV manifest.
static int run_tsv(const char *path, McErr *err) {
    Dataset *ds = ds_load_tsv(path, NULL, NULL, err);
    ds_free(ds);
    return ds ? 0 : -1;
}

// Decode an image (JPEG, PNG, GIF, BMP) under the default limits.
static int run_image(const char *path, McErr *err) {
    DsImage im;
    if (ds_image_load(path, NULL, &im, err)) return -1;
    ds_image_free(&im);
    return 0;
}

// Load a BPE vocabulary file.
static int run_bpe(const char *path, McErr *err) {
    Tokenizer *t = tok_load(path, err);
    tok_free(t);
    return t ? 0 : -1;
}

// Tokenizer input: any bytes must tokenize.  Accepted when every id is in
// the vocabulary, tok_encode puts SOT first and EOT last, and the decode of
// the ids is valid UTF-8 (ill-formed input bytes come back as U+FFFD).
static Tokenizer *text_tok;

static int run_text(const char *path, McErr *err) {
    char vocab[1024], *text;
    size_t len;
    if (!text_tok && (tok_find_vocab(vocab, sizeof vocab, err) ||
                      !(text_tok = tok_load(vocab, err))))
        return -1;
    if (ds_read_file(path, (size_t)1 << 20, &text, &len, err)) return -1;
    enum { MAX_IDS = 1 << 15 };
    int32_t *raw = malloc(MAX_IDS * sizeof *raw), ids[TOK_CONTEXT];
    int n = tok_encode_raw_n(text_tok, text, len, raw, MAX_IDS), rc = 0;
    int kept = n < MAX_IDS ? n : MAX_IDS;
    for (int k = 0; k < kept && !rc; k++)
        if (raw[k] < 0 || raw[k] >= TOK_VOCAB)
            rc = mc_err(err, "%s: id %d at %d is outside the vocabulary", path, raw[k], k);
    int m = tok_encode(text_tok, text, ids), last = (m < TOK_CONTEXT ? m : TOK_CONTEXT) - 1;
    if (!rc && (ids[0] != TOK_SOT || ids[last] != TOK_EOT))
        rc = mc_err(err, "%s: SOT/EOT misplaced (%d ... %d at %d)", path, ids[0], ids[last],
                    last);
    size_t dl = 0;
    char *dec = tok_decode(text_tok, raw, kept, &dl);
    if (!rc && (!dec || json_utf8_prefix(dec, dl) != dl))
        rc = mc_err(err, "%s: decoded text is %s", path, dec ? "not valid UTF-8" : "missing");
    free(dec);
    free(raw);
    mc_free(text);
    return rc;
}

// Caption files: Karpathy JSON, Flickr30k token file, caption TSV.
static int run_karpathy(const char *path, McErr *err) {
    CaptionSet *cs = cs_load_karpathy(path, DIR, err);
    cs_free(cs);
    return cs ? 0 : -1;
}

static int run_token(const char *path, McErr *err) {
    CaptionSet *cs = cs_load_token(path, DIR, err);
    cs_free(cs);
    return cs ? 0 : -1;
}

static int run_caption_tsv(const char *path, McErr *err) {
    CaptionSet *cs = cs_load_tsv(path, NULL, err);
    cs_free(cs);
    return cs ? 0 : -1;
}

// A visual prompt: an mclip visual prompt file or a paper .pt one.
static int run_vprompt(const char *path, McErr *err) {
    CoopVPromptFile vf;
    if (coop_vp_load(path, &vf, err)) return -1;
    coop_vp_file_free(&vf);
    return 0;
}

// A few-shot manifest checked against a fixed five-item dataset (listed in
// tests/malformed/make_text_corpus.py).
static int run_fewshot(const char *path, McErr *err) {
    Dataset *ds = ds_new("fixed", "tsv", "root", "fixed.tsv");
    ds_add_class(ds, "cat");
    ds_add_class(ds, "dog");
    ds_add_item(ds, "a.jpg", 0, DS_TRAIN);
    ds_add_item(ds, "b.jpg", 1, DS_TRAIN);
    ds_add_item(ds, "c/d.png", 0, DS_VAL);
    ds_add_item(ds, "e.jpg", 1, DS_VAL);
    ds_add_item(ds, "f.jpg", 1, DS_TEST);
    DsFewShot fs;
    int rc = ds_fewshot_read(ds, path, &fs, err);
    if (!rc) ds_fewshot_free(&fs);
    ds_free(ds);
    return rc;
}

// A learned prompt: an mclip prompt file or a paper .pt prompt.
static int run_prompt(const char *path, McErr *err) {
    CoopPromptFile pf;
    if (coop_promptfile_load(path, &pf, err)) return -1;
    coop_promptfile_free(&pf);
    return 0;
}

static const struct {
    const char *kind;
    int (*run)(const char *path, McErr *err);
} kinds[] = {
    {"json", run_json},
    {"safetensors", run_safetensors},
    {"pt", run_pt},
    {"weights", run_weights},
    {"mat", run_mat},
    {"split_json", run_split_json},
    {"tsv", run_tsv},
    {"image", run_image},
    {"bpe", run_bpe},
    {"text", run_text},
    {"prompt", run_prompt},
    {"fewshot", run_fewshot},
    {"vprompt", run_vprompt},
    {"karpathy", run_karpathy},
    {"token", run_token},
    {"caption_tsv", run_caption_tsv},
};

// ---- manifest ----

static void run_row(int lineno, const char *file, const char *kind, const char *want) {
    char path[2100];
    snprintf(path, sizeof path, DIR "%s", file);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (strcmp(kinds[k].kind, kind)) continue;
        McErr err = {{0}};
        int rc = kinds[k].run(path, &err);
        if (!strcmp(want, "OK")) {
            CHECK(rc == 0, "MANIFEST.tsv:%d %s: must be accepted, got: %s", lineno, file,
                  err.msg);
            printf("%-12s %-34s accepted\n", kind, file);
            return;
        }
        CHECK(rc == -1, "MANIFEST.tsv:%d %s (%s): accepted, want an error containing '%s'",
              lineno, file, kind, want);
        CHECK(rc != -1 || strstr(err.msg, want), "MANIFEST.tsv:%d %s: error '%s' lacks '%s'",
              lineno, file, err.msg, want);
        CHECK(rc != -1 || strstr(err.msg, file), "MANIFEST.tsv:%d: error does not name the "
              "file %s: '%s'", lineno, file, err.msg);
        printf("%-12s %-34s %.160s\n", kind, file, err.msg);
        return;
    }
    CHECK(0, "MANIFEST.tsv:%d: unknown kind '%s' for %s (add a runner to kinds[] in "
          "tests/test_malformed.c)", lineno, kind, file);
}

int main(void) {
    FILE *fp = fopen(DIR "MANIFEST.tsv", "r");
    CHECK(fp != NULL, "cannot open " DIR "MANIFEST.tsv (run from the project root)");
    if (!fp) return test_finish("test_malformed");
    char line[2048];
    int lineno = 0, rows = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#' || !strncmp(line, "file\t", 5)) continue;
        char *file = line, *kind = strchr(file, '\t'), *want = kind ? strchr(kind + 1, '\t') : 0;
        CHECK(want != NULL, "MANIFEST.tsv:%d: want 3 tab-separated columns", lineno);
        if (!want) continue;
        *kind++ = 0, *want++ = 0;
        char *extra = strchr(want, '\t');
        if (extra) *extra = 0;
        run_row(lineno, file, kind, want);
        rows++;
    }
    fclose(fp);
    tok_free(text_tok);
    printf("%d manifest rows\n", rows);
    CHECK(rows >= 20, "only %d rows in MANIFEST.tsv", rows);
    return test_finish("test_malformed");
}
