// test_safetensors.c - the strict JSON parser and the safetensors reader and
// writer: round trips (F32, F16, I64, 0-d, empty, metadata with escapes),
// every dtype read back from a hand-built file, atomic overwrite.
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../mobileclip/config.h"
#include "../mobileclip/json.h"
#include "../mobileclip/safetensors.h"
#include "../mobileclip/weights.h"
#include "util/check.h"
#include "util/sys.h"

static char tmpdir[] = "/tmp/mclip_st_XXXXXX";

// ---- JSON ----

static void json_ok(const char *text, const char *what) {
    McErr err;
    JsonOptions opt = {.reject_duplicates = 1};
    JsonDoc *d = json_parse(text, strlen(text), &opt, &err);
    CHECK(d != NULL, "%s: '%s' refused: %s", what, text, err.msg);
    json_free(d);
}

static void json_bad(const char *text, size_t len, const char *want, const char *what) {
    McErr err = {{0}};
    JsonOptions opt = {.reject_duplicates = 1, .max_depth = 8};
    JsonDoc *d = json_parse(text, len, &opt, &err);
    CHECK(d == NULL && strstr(err.msg, want), "%s: want error containing '%s', got '%s'", what,
          want, d ? "(accepted)" : err.msg);
    json_free(d);
    if (!d) printf("json %-26s -> %s\n", what, err.msg);
}

static void test_json(void) {
    McErr err;

    // Values, escapes and surrogate pairs decoded to UTF-8.
    const char *doc = " {\"a\": [1, -0, 2.5e2, 9223372036854775807, 9223372036854775808,"
                      " -9223372036854775808], \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"
                      "\\ud83d\\ude00\", \"t\": true, \"f\": false, \"n\": null, \"o\": {}} ";
    JsonDoc *d = json_parse(doc, strlen(doc), NULL, &err);
    CHECK(d != NULL, "valid document refused: %s", err.msg);
    if (d) {
        const JsonValue *r = json_root(d), *a = json_get(r, "a"), *s = json_get(r, "s");
        int64_t v;
        CHECK(a && a->type == JSON_ARRAY && a->len == 6, "array length");
        CHECK(a && json_int(&a->items[0], &v) == 0 && v == 1, "a[0]");
        CHECK(a && a->items[2].number == 250.0 && !a->items[2].is_int, "a[2] = 2.5e2");
        CHECK(a && json_int(&a->items[3], &v) == 0 && v == INT64_MAX, "INT64_MAX");
        CHECK(a && !a->items[4].is_int && a->items[4].number == 9223372036854775808.0,
              "2^63 must not be an int64");
        CHECK(a && json_int(&a->items[5], &v) == 0 && v == INT64_MIN, "INT64_MIN");
        const char *want = "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80";
        CHECK(s && s->type == JSON_STRING && s->len == strlen(want) && !strcmp(s->str, want),
              "escapes decoded to '%s'", s ? s->str : "(missing)");
        CHECK(json_get(r, "t")->boolean == 1 && json_get(r, "f")->type == JSON_BOOL &&
              json_get(r, "n")->type == JSON_NULL && json_get(r, "o")->len == 0, "literals");
        CHECK(json_get(r, "zz") == NULL, "absent key found");
        json_free(d);
    }
    json_ok("[]", "empty array");
    json_ok("\"\\u0000x\"", "escaped NUL");
    json_ok("{\"a\":{\"a\":1}}", "same key at two levels");

    // Errors name the byte offset and what was expected.
    json_bad("[1,]", 4, "byte 3: expected a value", "trailing comma");
    json_bad("{\"a\" 1}", 7, "byte 5: expected ':'", "missing colon");
    json_bad("01", 2, "byte 1: expected end of text", "leading zero");
    json_bad("1.", 2, "digit after '.'", "bare fraction");
    json_bad("-", 1, "expected a digit", "bare minus");
    json_bad("\"abc", 4, "string not terminated", "open string");
    json_bad("\"a\tb\"", 5, "control character 0x09", "raw tab");
    json_bad("\"\\x\"", 4, "unknown escape", "bad escape");
    json_bad("\"\\ud800\"", 8, "not followed by a low surrogate", "lone high surrogate");
    json_bad("\"\\udc00\"", 8, "lone low surrogate", "lone low surrogate");
    json_bad("\"\\u12g4\"", 8, "4 hex digits", "bad hex");
    json_bad("\"\xc3\x28\"", 4, "invalid UTF-8", "bad UTF-8");
    json_bad("\"\xed\xa0\x80\"", 5, "invalid UTF-8", "UTF-8 surrogate");
    json_bad("\"\xc0\xaf\"", 4, "invalid UTF-8", "overlong UTF-8");
    json_bad("[[[[[[[[[1]]]]]]]]]", 19, "nesting deeper than 8", "depth");
    json_bad("{\"k\":1,\"j\":2,\"k\":3}", 19, "byte 13: duplicate key \"k\"", "duplicate key");
    json_bad("tru", 3, "expected a value", "truncated literal");
    json_bad("{} x", 4, "byte 3: expected end of text", "trailing garbage");
    json_bad("[1 2]", 5, "',' or ']'", "missing comma");
    json_bad("", 0, "byte 0: expected a value", "empty text");
    json_bad("[1]", 2, "byte 2: expected ',' or ']' in array, found end of text",
             "length excludes the bracket");

    // Value limit.
    JsonOptions few = {.max_values = 3};
    d = json_parse("[1,2,3]", 7, &few, &err);
    CHECK(!d && strstr(err.msg, "more than 3 values"), "value limit: %s", d ? "none" : err.msg);
    json_free(d);

    // json_quote escapes what JSON requires and round-trips.
    const char *raw = "a\"b\\c\nd\x01\xc3\xa9";
    char q[64];
    size_t n = json_quote(q, sizeof q, raw);
    CHECK(n == strlen(q) && !strcmp(q, "\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\""), "quote: %s", q);
    d = json_parse(q, n, NULL, &err);
    CHECK(d && !strcmp(json_root(d)->str, raw), "quoted string does not round-trip");
    json_free(d);
    CHECK(json_quote(q, 4, raw) == n && strlen(q) == 3, "json_quote truncation");
}

// ---- writer -> reader ----

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static void test_round_trip(void) {
    McErr err;
    char path[256];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    float x[6] = {1.5f, -2.25f, 3.0f, 0.1f, 1e-8f, 65504.0f};
    float h[5] = {0.1f, -1.0f / 3.0f, 60001.0f, 6e-8f, 2.0f};
    float ls = 4.6051702f;
    int64_t steps = 1234567890123LL, ids[4] = {-1, 0, 49407, INT64_MIN};

    // Save twice: the second save replaces the first atomically.
    for (int round = 0; round < 2; round++) {
        StWriter *w = st_writer_new();
        st_writer_add_f32(w, "logit_scale", 0, NULL, &ls);
        st_writer_add_f32(w, "x", MC_DIMS(2, 3), x);
        st_writer_add_f16(w, "h", MC_DIMS(5), h);
        st_writer_add_i64(w, "steps", 0, NULL, &steps);
        st_writer_add_i64(w, "ids", MC_DIMS(2, 2), ids);
        st_writer_add_f32(w, "empty", MC_DIMS(0, 4), x);
        st_writer_meta(w, "model", round ? "MobileCLIP2-S0" : "old");
        st_writer_meta(w, "note", "quote \" backslash \\ newline \n caf\xc3\xa9");
        CHECK(st_writer_save(w, path, &err) == 0, "save: %s", err.msg);
        st_writer_free(w);
    }
    CHECK(count_files(tmpdir) == 1, "temporary files left behind: %d files", count_files(tmpdir));

    StFile *f = st_open(path, &err);
    CHECK(f != NULL, "reopen: %s", err.msg);
    if (!f) return;
    CHECK(st_count(f) == 6, "count %d", st_count(f));
    CHECK(!strcmp(st_at(f, 0)->name, "logit_scale") && !strcmp(st_at(f, 5)->name, "empty"),
          "file order lost");
    CHECK(st_meta_count(f) == 2 && !strcmp(st_meta(f, "model"), "MobileCLIP2-S0") &&
          !strcmp(st_meta(f, "note"), "quote \" backslash \\ newline \n caf\xc3\xa9"),
          "metadata differs");

    // Header length is a multiple of 8 so the data region is aligned.
    FILE *fp = fopen(path, "rb");
    uint64_t hlen = 1;
    CHECK(fp && fread(&hlen, 8, 1, fp) == 1 && hlen % 8 == 0, "header length %llu",
          (unsigned long long)hlen);
    if (fp) fclose(fp);

    const StTensor *t = st_find(f, "logit_scale");
    float v[8];
    CHECK(t && t->ndim == 0 && t->numel == 1 && t->dtype == ST_F32, "logit_scale not 0-d F32");
    CHECK(t && st_to_f32(f, t, v, 1, &err) == 0 && v[0] == ls, "logit_scale %g", v[0]);
    t = st_find(f, "x");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "x shape");
    if (t && st_to_f32(f, t, v, 6, &err) == 0) test_close("round trip x (F32)", v, x, 6, 0, 0);

    // F16 stores values rounded to half precision (65504 is the largest).
    t = st_find(f, "h");
    float hr[5];
    for (int i = 0; i < 5; i++) hr[i] = mc_f16_to_f32(mc_f32_to_f16(h[i]));
    CHECK(t && t->dtype == ST_F16 && t->nbytes == 10, "h not F16");
    if (t && st_to_f32(f, t, v, 5, &err) == 0) test_close("round trip h (F16)", v, hr, 5, 0, 0);
    CHECK(hr[2] == 60000.0f && fabsf(hr[0] - 0.1f) < 1e-4f && hr[3] > 0 &&
          isinf(mc_f16_to_f32(mc_f32_to_f16(70000.0f))), "f16 rounding: %g %g", hr[2], hr[0]);

    int64_t iv[4] = {0};
    t = st_find(f, "steps");
    CHECK(t && t->ndim == 0 && st_to_i64(f, t, iv, 1, &err) == 0 && iv[0] == steps,
          "0-d I64 %lld", (long long)iv[0]);
    t = st_find(f, "ids");
    CHECK(t && st_to_i64(f, t, iv, 4, &err) == 0 && !memcmp(iv, ids, sizeof ids), "I64 values");
    t = st_find(f, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0 && st_to_f32(f, t, v, 0, &err) == 0, "empty");

    // Misuse is an error, not a crash.
    t = st_find(f, "x");
    CHECK(st_to_f32(f, t, v, 5, &err) == -1 && strstr(err.msg, "6 elements"), "%s", err.msg);
    CHECK(st_to_i64(f, t, iv, 6, &err) == -1 && strstr(err.msg, "is F32"), "%s", err.msg);
    CHECK(st_find(f, "nope") == NULL && st_meta(f, "nope") == NULL, "absent key found");
    st_close(f);
    unlink(path);

    // Duplicate names are refused and leave no file.
    StWriter *w = st_writer_new();
    st_writer_add_f32(w, "a", MC_DIMS(1), x);
    st_writer_add_f32(w, "a", MC_DIMS(1), x);
    CHECK(st_writer_save(w, path, &err) == -1 && strstr(err.msg, "added twice") &&
          access(path, F_OK) != 0, "duplicate name: %s", err.msg);
    st_writer_free(w);

    // A folder that does not exist is reported with the path.
    w = st_writer_new();
    CHECK(st_writer_save(w, "/nonexistent-dir/x.safetensors", &err) == -1 &&
          strstr(err.msg, "/nonexistent-dir/x.safetensors"), "bad folder: %s", err.msg);
    st_writer_free(w);
}

// ---- every dtype, from a hand-built file ----

static void test_all_dtypes(void) {
    McErr err;
    unsigned char data[256];
    size_t off = 0;
    char hdr[2048];
    int hn = snprintf(hdr, sizeof hdr, "{");

    // Append a tensor of n elements of size isz taken from src.
#define ADD(name, dt, isz, n, src) do { \
        hn += snprintf(hdr + hn, sizeof hdr - (size_t)hn, \
                       "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}", \
                       hn > 1 ? "," : "", name, dt, n, off, off + (size_t)(isz) * (n)); \
        memcpy(data + off, src, (size_t)(isz) * (n)); off += (size_t)(isz) * (n); } while (0)

    float f32[2] = {1.5f, -3.25f};
    uint16_t f16[2] = {0x3c00, 0xc500};          // 1, -5
    uint16_t bf16[2] = {0x3fc0, 0xc0a0};         // 1.5, -5
    double f64[2] = {0.1, -1e10};
    int64_t i64[2] = {-7, 1LL << 50};
    int32_t i32[2] = {-70000, 2147483647};
    int16_t i16[2] = {-32768, 123};
    int8_t i8[2] = {-128, 5};
    uint8_t u8[2] = {255, 0}, b[2] = {1, 0};
    ADD("f32", "F32", 4, 2, f32);
    ADD("f16", "F16", 2, 2, f16);
    ADD("bf16", "BF16", 2, 2, bf16);
    ADD("f64", "F64", 8, 2, f64);
    ADD("i64", "I64", 8, 2, i64);
    ADD("i32", "I32", 4, 2, i32);
    ADD("i16", "I16", 2, 2, i16);
    ADD("i8", "I8", 1, 2, i8);
    ADD("u8", "U8", 1, 2, u8);
    ADD("bool", "BOOL", 1, 2, b);
#undef ADD
    hn += snprintf(hdr + hn, sizeof hdr - (size_t)hn, "}");

    char path[256];
    snprintf(path, sizeof path, "%s/dtypes.safetensors", tmpdir);
    FILE *fp = fopen(path, "wb");
    uint64_t hl = (uint64_t)hn;
    CHECK(fp && fwrite(&hl, 8, 1, fp) == 1 && fwrite(hdr, 1, (size_t)hn, fp) == (size_t)hn &&
          fwrite(data, 1, off, fp) == off, "cannot write %s", path);
    if (fp) fclose(fp);

    StFile *f = st_open(path, &err);
    CHECK(f != NULL, "%s", err.msg);
    if (!f) return;
    static const struct { const char *name; StDtype dt; float want[2]; } cases[] = {
        {"f32", ST_F32, {1.5f, -3.25f}}, {"f16", ST_F16, {1.0f, -5.0f}},
        {"bf16", ST_BF16, {1.5f, -5.0f}}, {"f64", ST_F64, {0.1f, -1e10f}},
        {"i64", ST_I64, {-7.0f, 1125899906842624.0f}}, {"i32", ST_I32, {-70000.0f, 2147483648.0f}},
        {"i16", ST_I16, {-32768.0f, 123.0f}}, {"i8", ST_I8, {-128.0f, 5.0f}},
        {"u8", ST_U8, {255.0f, 0.0f}}, {"bool", ST_BOOL, {1.0f, 0.0f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const StTensor *t = st_find(f, cases[i].name);
        float v[2] = {0};
        CHECK(t && t->dtype == cases[i].dt && !strcmp(st_dtype_name(t->dtype),
              i == 9 ? "BOOL" : st_dtype_name(cases[i].dt)), "%s: dtype", cases[i].name);
        CHECK(t && st_to_f32(f, t, v, 2, &err) == 0, "%s: %s", cases[i].name, err.msg);
        char label[64];
        snprintf(label, sizeof label, "dtype %s -> f32", cases[i].name);
        test_close(label, v, cases[i].want, 2, 0, 0);
    }
    int64_t iv[2];
    const StTensor *t = st_find(f, "i32");
    CHECK(st_to_i64(f, t, iv, 2, &err) == 0 && iv[0] == -70000 && iv[1] == 2147483647, "i32");
    t = st_find(f, "u8");
    CHECK(st_to_i64(f, t, iv, 2, &err) == 0 && iv[0] == 255, "u8 as int64 %lld", (long long)iv[0]);
    t = st_find(f, "bf16");
    CHECK(st_to_i64(f, t, iv, 2, &err) == -1 && strstr(err.msg, "BF16"), "%s", err.msg);
    st_close(f);
    unlink(path);
}

// ws_open on safetensors; a long problem list is shortened in the message
// and complete in ws_report.
static void test_weights_long_report(void) {
    McErr err;
    char path[256], name[32];
    snprintf(path, sizeof path, "%s/many.safetensors", tmpdir);
    StWriter *w = st_writer_new();
    float v[2] = {1, 2};
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "block.%03d.weight", i);
        st_writer_add_f32(w, name, MC_DIMS(2), v);
    }
    CHECK(st_writer_save(w, path, &err) == 0, "%s", err.msg);
    st_writer_free(w);

    WeightSet *ws = ws_open(path, &err);
    CHECK(ws != NULL, "%s", err.msg);
    if (!ws) return;
    Tensor *t = ws_take(ws, "block.000.weight", MC_DIMS(2));
    CHECK(t->data[0] == 1.0f && t->data[1] == 2.0f, "values %g %g", t->data[0], t->data[1]);
    tensor_free(t);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "other.%03d", i);
        tensor_free(ws_take(ws, name, MC_DIMS(2)));
    }
    CHECK(ws_finish(ws, &err) == -1, "problems not reported");
    CHECK(strstr(err.msg, "100 missing, 0 mis-shaped, 299 unexpected") &&
          strstr(err.msg, "missing (100): other.000, other.001") &&
          strstr(err.msg, "unexpected (299): block.001.weight") && strstr(err.msg, "more") &&
          strlen(err.msg) < MC_ERRLEN - 1, "shortened report:\n%s", err.msg);
    CHECK(strstr(ws_report(ws), "other.099") && strstr(ws_report(ws), "block.299.weight"),
          "full report incomplete");
    printf("shortened report (%zu bytes):\n%s\n", strlen(err.msg), err.msg);
    ws_close(ws);
    unlink(path);
}

// ---- mclip inspect ----

typedef struct { char *s; size_t len, cap; } Text;

static void text_add(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(Text *t, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->s = realloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, tmp, (size_t)n + 1);
    t->len += (size_t)n;
}

// A safetensors file holding the keys model detection reads, with the
// shapes of config c (one stage depth changed by depth_delta).  The data
// region is a hole (sparse file): only the header is written.
static void write_skeleton(const char *path, const McModelConfig *c, int depth_delta) {
    Text h = {0};
    uint64_t off = 0;
#define KEY(name, shape_fmt, numel, ...) do { \
        text_add(&h, "%s\"" name "\":{\"dtype\":\"F32\",\"shape\":[" shape_fmt "]," \
                 "\"data_offsets\":[%llu,%llu]}", h.len > 1 ? "," : "", __VA_ARGS__, \
                 (unsigned long long)off, (unsigned long long)(off + 4 * (uint64_t)(numel))); \
        off += 4 * (uint64_t)(numel); } while (0)
    int W = c->text.width, E = c->text.embed;
    const McFastVitConfig *fv = &c->image.fastvit;
    text_add(&h, "{");
    KEY("logit_scale", "%s", 1, "");
    KEY("text.token_embedding.weight", "%d,%d", (uint64_t)c->text.vocab * W, c->text.vocab, W);
    KEY("text.text_projection", "%d,%d", W * E, W, E);
    for (int k = 0; k < c->text.layers; k++)
        KEY("text.transformer.resblocks.%d.ln_1.weight", "%d", W, k, W);
    const McVitConfig *vit = &c->image.vit;
    if (c->image.kind == MC_TRUNK_VIT_B_MCI)
        KEY("visual.trunk.patch_embed.backbone.0.conv.weight", "%d,3,4,4", 48 * vit->width / 4,
            vit->width / 4);
    for (int l = 0; l < (c->image.kind == MC_TRUNK_FASTVIT ? 0 : vit->layers); l++)
        KEY("visual.trunk.blocks.%d.norm1.weight", "%d", vit->width, l, vit->width);
    if (c->image.kind == MC_TRUNK_FASTVIT)
        KEY("visual.trunk.stem.0.reparam_conv.weight", "%d,3,3,3", fv->widths[0] * 27,
            fv->widths[0]);
    for (int i = 0; i < (c->image.kind == MC_TRUNK_FASTVIT ? fv->n_stages : 0); i++) {
        int depth = fv->depths[i] + (i == 2 ? depth_delta : 0);
        for (int j = 0; j < depth; j++)
            KEY("visual.trunk.stages.%d.blocks.%d.mlp.fc2.bias", "%d", fv->widths[i], i, j,
                fv->widths[i]);
    }
#undef KEY
    text_add(&h, "}");
    while (h.len % 8) text_add(&h, " ");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint64_t hl = h.len;
    CHECK(fd >= 0 && write(fd, &hl, 8) == 8 && write(fd, h.s, h.len) == (ssize_t)h.len &&
          ftruncate(fd, (off_t)(8 + h.len + off)) == 0, "cannot write %s", path);
    if (fd >= 0) close(fd);
    free(h.s);
}

// Run `mclip inspect --summary path`; returns its exit status, output in out.
static int run_inspect(const char *bin, const char *path, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' inspect --summary '%s' 2>&1", bin, path);
    return test_run_capture(cmd, out, cap);
}

static void test_inspect_cli(void) {
    const char *bin = getenv("MCLIP_BIN");
    CHECK(bin != NULL, "MCLIP_BIN is not set: run through `make test` or set it to the "
          "mclip binary");
    if (!bin) return;
    static char out[1 << 16];
    char path[256];
    snprintf(path, sizeof path, "%s/s0.safetensors", tmpdir);

    // Every configured model is recognised from its key shapes (the S4
    // skeleton goes last and its output is checked in detail).
    const char *models[] = {"MobileCLIP2-B", "MobileCLIP2-L-14", "MobileCLIP2-S0",
                            "MobileCLIP2-S2", "MobileCLIP2-S3", "MobileCLIP2-S4"};
    for (int m = 0; m < 6; m++) {
        const McModelConfig *c = mc_config_find(models[m]);
        write_skeleton(path, c, 0);
        int rc = run_inspect(bin, path, out, sizeof out);
        char want[64];
        snprintf(want, sizeof want, "model       %s\n", models[m]);
        const char *form = c->image.kind == MC_TRUNK_FASTVIT ? "fused image tower"
                                                             : "ViT image tower";
        CHECK(rc == 0 && strstr(out, want) && strstr(out, form),
              "inspect of a %s skeleton (rc %d):\n%s", models[m], rc, out);
    }
    CHECK(strstr(out, "widths 128,256,512,1024,2048, depths 2,12,24,4,4"),
          "S4 stages not reported:\n%s", out);
    printf("inspect S4 skeleton:\n%s", out);

    // One block short of S0 is no known model.
    write_skeleton(path, mc_config_find("S0"), -1);
    int rc = run_inspect(bin, path, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "model       unknown") && strstr(out, "depths 2,6,9,2"),
          "altered S0 skeleton (rc %d):\n%s", rc, out);
    unlink(path);

    // A prompt file: meta values and the width check.
    rc = run_inspect(bin, "tests/fixtures/pt/prompt_s0.pt", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "meta.model_name = 'MobileCLIP2-S0'") &&
          strstr(out, "meta.classnames = list of 8: 'pink primrose'") &&
          strstr(out, "context width 512 matches text width 512") &&
          strstr(out, "parameters  8,192"), "prompt inspect (rc %d):\n%s", rc, out);

    // A bad file: exit status 1 and the reason.
    rc = run_inspect(bin, "tests/malformed/pt_global_os_system.pt", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "global os.system is not allowed"), "bad file (rc %d): %s",
          rc, out);
}

// A header length whose low byte is 0x80 (the pickle PROTO opcode) must
// still open as safetensors: metadata grows until the file starts with 0x80.
static void test_weights_header_0x80(void) {
    McErr err;
    char path[256], pad[600];
    snprintf(path, sizeof path, "%s/h80.safetensors", tmpdir);
    float v[3] = {1, 2, 3};
    int found = 0;
    for (int n = 0; n < 512 && !found; n++) {
        memset(pad, 'x', (size_t)n);
        pad[n] = 0;
        StWriter *w = st_writer_new();
        st_writer_add_f32(w, "w", MC_DIMS(3), v);
        st_writer_meta(w, "pad", pad);
        CHECK(st_writer_save(w, path, &err) == 0, "%s", err.msg);
        st_writer_free(w);
        unsigned char b = 0;
        FILE *fp = fopen(path, "rb");
        if (fp) {
            if (fread(&b, 1, 1, fp) != 1) b = 0;
            fclose(fp);
        }
        found = b == 0x80;
    }
    CHECK(found, "could not make a header length with low byte 0x80");
    WeightSet *ws = ws_open(path, &err);
    CHECK(ws != NULL, "header length 0x..80 taken for a pickle: %s", ws ? "" : err.msg);
    if (ws) {
        Tensor *t = ws_take(ws, "w", MC_DIMS(3));
        CHECK(t->data[2] == 3.0f, "value %g", t->data[2]);
        tensor_free(t);
        ws_close(ws);
    }
    remove(path);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_json();
    test_round_trip();
    test_all_dtypes();
    test_weights_long_report();
    test_weights_header_0x80();
    test_inspect_cli();
    rmdir(tmpdir);
    return test_finish("test_safetensors");
}
