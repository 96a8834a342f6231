// test_torch_pt.c - torch.save zip files through the restricted pickle
// machine: every dtype, strided views, 0-d tensors, pickle protocol 4,
// DEFLATE entries, a nested checkpoint, and a CoOp prompt file laid out like
// the paper's.  Fixtures come from tests/reference/gen_pt_files.py (torch);
// expected values from expected.safetensors written there with numpy.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../mobileclip/safetensors.h"
#include "../mobileclip/torch_pt.h"
#include "../mobileclip/weights.h"
#include "util/check.h"

#define FIX "tests/fixtures/pt/"

// Tensors of the state_dict fixtures, with their stored dtype.
static const struct { const char *name; StDtype dtype; int contiguous; } sd_keys[] = {
    {"fc.weight", ST_F32, 1}, {"fc.bias", ST_F32, 1}, {"bn.weight", ST_F32, 1},
    {"bn.bias", ST_F32, 1}, {"bn.running_mean", ST_F32, 1}, {"bn.running_var", ST_F32, 1},
    {"bn.num_batches_tracked", ST_I64, 1}, {"logit_scale", ST_F32, 1},
    {"half", ST_F16, 1}, {"bf16", ST_BF16, 1}, {"f64", ST_F64, 1}, {"i64", ST_I64, 1},
    {"i32", ST_I32, 1}, {"i8", ST_I8, 1}, {"u8", ST_U8, 1}, {"flag", ST_BOOL, 1},
    {"transposed", ST_F32, 0}, {"offset_view", ST_F32, 0}, {"expanded", ST_F32, 0},
    {"param", ST_F32, 1}, {"empty", ST_F32, 1},
};
#define N_SD ((int)(sizeof sd_keys / sizeof sd_keys[0]))

// One tensor of a .pt dict against the F32 copy in expected.safetensors:
// conversions to f32 are exact (fp16/bf16 widen, f64 and ints round the
// same way numpy does), so the tolerance is zero.
static void compare_tensor(const PtFile *f, const PtValue *dict, const StFile *exp,
                           const char *name, const char *exp_name, StDtype dtype, int contig) {
    McErr err;
    const PtTensor *t = pt_get_tensor(f, dict, name, &err);
    const StTensor *e = st_find(exp, exp_name);
    CHECK(t && e, "%s: %s missing (%s)", pt_path(f), name, t ? "expected" : err.msg);
    if (!t || !e) return;
    CHECK(t->dtype == dtype, "%s: dtype %s, want %s", name, st_dtype_name(t->dtype),
          st_dtype_name(dtype));
    CHECK(t->contiguous == contig, "%s: contiguous %d, want %d", name, t->contiguous, contig);
    int same = t->ndim == e->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == e->shape[d];
    CHECK(same, "%s: shape differs from expected (%d dims vs %d)", name, t->ndim, e->ndim);
    if (!same) return;
    float *got = malloc((size_t)(t->numel + 1) * sizeof *got);
    float *want = malloc((size_t)(e->numel + 1) * sizeof *want);
    int rc = pt_tensor_to_f32(f, t, got, t->numel, &err);
    CHECK(rc == 0, "%s: %s", name, err.msg);
    CHECK(st_to_f32(exp, e, want, e->numel, &err) == 0, "%s: %s", exp_name, err.msg);
    char label[128];
    snprintf(label, sizeof label, "%s:%s", strrchr(pt_path(f), '/') + 1, name);
    if (rc == 0) test_close(label, got, want, (size_t)t->numel, 0, 0);
    free(got);
    free(want);
}

static void test_state_dict(const char *path, const StFile *exp) {
    McErr err;
    PtFile *f = pt_open(path, &err);
    CHECK(f != NULL, "%s", err.msg);
    if (!f) return;
    const PtValue *sd = pt_state_dict(f);
    CHECK(sd && sd->kind == PT_DICT && sd->n == N_SD, "%s: state dict has %lld entries, want %d",
          path, sd ? (long long)sd->n : -1LL, N_SD);
    for (int i = 0; i < N_SD; i++)
        compare_tensor(f, sd, exp, sd_keys[i].name, sd_keys[i].name, sd_keys[i].dtype,
                       sd_keys[i].contiguous);

    // Strided views keep torch's layout.
    const PtTensor *t = pt_as_tensor(pt_get(sd, "offset_view"));
    CHECK(t && t->offset == 8 && t->stride[0] == 6 && t->stride[1] == 1,
          "offset_view: offset %lld strides (%lld, %lld), want 8 (6, 1)",
          t ? (long long)t->offset : -1LL, t ? (long long)t->stride[0] : -1LL,
          t ? (long long)t->stride[1] : -1LL);
    t = pt_as_tensor(pt_get(sd, "expanded"));
    CHECK(t && t->stride[0] == 0 && t->storage_numel == 3, "expanded: want stride 0 over 3");

    // 0-d tensors and exact integers.
    t = pt_as_tensor(pt_get(sd, "logit_scale"));
    CHECK(t && t->ndim == 0 && t->numel == 1, "logit_scale is not 0-d");
    t = pt_as_tensor(pt_get(sd, "bn.num_batches_tracked"));
    int64_t nbt = -1;
    CHECK(t && t->ndim == 0 && pt_tensor_to_i64(f, t, &nbt, 1, &err) == 0 && nbt == 7,
          "num_batches_tracked = %lld, want 7", (long long)nbt);
    int64_t i64[6] = {0}, want_i64[6] = {-5, 0, 7, 1LL << 40, -(1LL << 33), 3};
    t = pt_as_tensor(pt_get(sd, "i64"));
    CHECK(t && pt_tensor_to_i64(f, t, i64, 6, &err) == 0 && !memcmp(i64, want_i64, sizeof i64),
          "i64 values differ (%lld, %lld)", (long long)i64[3], (long long)i64[4]);

    // Wrong use is reported, not crashed on.
    float one;
    t = pt_as_tensor(pt_get(sd, "fc.weight"));
    CHECK(t && pt_tensor_to_f32(f, t, &one, 1, &err) == -1 && strstr(err.msg, "12 elements"),
          "count mismatch not reported: %s", err.msg);
    CHECK(t && pt_tensor_to_i64(f, t, i64, t->numel, &err) == -1 && strstr(err.msg, "F32"),
          "float as int64 not refused: %s", err.msg);
    pt_close(f);
}

static void test_nested(void) {
    McErr err;
    PtFile *f = pt_open(FIX "nested.pt", &err);
    CHECK(f != NULL, "%s", err.msg);
    if (!f) return;
    int64_t epoch = 0;
    CHECK(pt_get_int(f, pt_root(f), "epoch", &epoch, &err) == 0 && epoch == 3,
          "epoch %lld (%s)", (long long)epoch, err.msg);
    const PtValue *sd = pt_state_dict(f);
    CHECK(sd && sd != pt_root(f) && sd->n == 3 && pt_as_tensor(pt_get(sd, "fc.weight")),
          "state_dict not found under 'state_dict'");
    CHECK(pt_get_str(f, pt_root(f), "epoch", &err) == NULL &&
          strstr(err.msg, "'epoch' is a int, expected str"), "kind error: %s", err.msg);
    CHECK(pt_get_tensor(f, pt_root(f), "nope", &err) == NULL &&
          strstr(err.msg, "'nope' is missing"), "missing key error: %s", err.msg);
    pt_close(f);
}

// The prompt file: {'ctx': [16, 512] f32, 'meta': {...}} as the paper saved it.
static void test_prompt(const StFile *exp) {
    McErr err;
    PtFile *f = pt_open(FIX "prompt_s0.pt", &err);
    CHECK(f != NULL, "%s", err.msg);
    if (!f) return;
    const PtValue *root = pt_root(f), *meta = pt_get(root, "meta");
    compare_tensor(f, root, exp, "ctx", "prompt.ctx", ST_F32, 1);
    const PtTensor *ctx = pt_get_tensor(f, root, "ctx", &err);
    CHECK(ctx && ctx->ndim == 2 && ctx->shape[0] == 16 && ctx->shape[1] == 512,
          "ctx shape wrong");

    const char *model = pt_get_str(f, meta, "model_name", &err);
    CHECK(model && !strcmp(model, "MobileCLIP2-S0"), "model_name %s", model ? model : err.msg);
    const char *tag = pt_get_str(f, meta, "pretrained", &err);
    CHECK(tag && !strcmp(tag, "dfndr2b"), "pretrained %s", tag ? tag : err.msg);
    const char *ver = pt_get_str(f, meta, "coop_version", &err);
    CHECK(ver && !strcmp(ver, "v0.1.1"), "coop_version %s", ver ? ver : err.msg);
    const char *type = pt_get_str(f, meta, "prompt_type", &err);
    CHECK(type && !strcmp(type, "text"), "prompt_type %s", type ? type : err.msg);
    int64_t n_ctx = 0;
    CHECK(pt_get_int(f, meta, "n_ctx", &n_ctx, &err) == 0 && n_ctx == 16, "n_ctx %lld",
          (long long)n_ctx);
    const char *sha = pt_get_str(f, meta, "classnames_sha1", &err);
    const char *sha_want = st_meta(exp, "classnames_sha1");
    CHECK(sha && sha_want && !strcmp(sha, sha_want), "classnames_sha1 %s vs %s",
          sha ? sha : err.msg, sha_want ? sha_want : "(none)");

    // Class names verbatim: trailing space, comma, a non-ASCII apostrophe.
    const char **names = NULL;
    int64_t n = 0;
    CHECK(pt_get_str_list(f, meta, "classnames", &names, &n, &err) == 0 && n == 8,
          "classnames: %lld (%s)", (long long)n, err.msg);
    if (n == 8) {
        CHECK(!strcmp(names[0], "pink primrose"), "names[0] '%s'", names[0]);
        CHECK(!strcmp(names[5], "cyclamen "), "names[5] '%s'", names[5]);
        CHECK(!strcmp(names[6], "blackberry lily,"), "names[6] '%s'", names[6]);
        CHECK(!strcmp(names[7], "bird\xe2\x80\x99s-foot"), "names[7] '%s'", names[7]);
    }
    free(names);
    CHECK(pt_get_str_list(f, meta, "model_name", &names, &n, &err) == -1 &&
          strstr(err.msg, "expected list"), "str as list not refused: %s", err.msg);
    pt_close(f);
}

// A flipped byte inside a storage is caught by the CRC on first use.
static void test_crc(void) {
    McErr err;
    FILE *in = fopen(FIX "state_dict.pt", "rb");
    CHECK(in != NULL, "cannot read state_dict.pt");
    if (!in) return;
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);

    // Corrupt the first byte of fc.weight's storage.
    PtFile *f = pt_open(FIX "state_dict.pt", &err);
    CHECK(f != NULL, "%s", err.msg);
    if (!f) return;
    const PtTensor *w = pt_as_tensor(pt_get(pt_state_dict(f), "fc.weight"));
    CHECK(w != NULL, "fc.weight missing");
    if (!w) { pt_close(f); return; }
    // Locate it in the file by content: the first 8 bytes of its storage.
    unsigned char head[8];
    memcpy(head, w->storage, 8);
    pt_close(f);
    unsigned char *hit = NULL;
    for (size_t i = 0; i + 8 <= n && !hit; i++)
        if (!memcmp(buf + i, head, 8)) hit = buf + i;
    CHECK(hit != NULL, "storage bytes not found in the file");
    if (!hit) return;
    hit[0] ^= 0x40;

    char path[] = "/tmp/mclip_crc_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, buf, n) == (ssize_t)n, "cannot write temp file");
    close(fd);
    f = pt_open(path, &err);
    CHECK(f != NULL, "corrupt storage should still open (CRC checked on use): %s", err.msg);
    if (f) {
        float tmp[12];
        w = pt_as_tensor(pt_get(pt_state_dict(f), "fc.weight"));
        CHECK(w && pt_tensor_to_f32(f, w, tmp, 12, &err) == -1 && strstr(err.msg, "CRC-32"),
              "corruption not detected: %s", err.msg);
        pt_close(f);
    }
    unlink(path);
}

// Binding by name: values, and one report listing every problem.
static void test_weights(const StFile *exp) {
    McErr err;
    WeightSet *ws = ws_open(FIX "nested.pt", &err);
    CHECK(ws != NULL, "%s", err.msg);
    if (!ws) return;
    int64_t shape[8];
    CHECK(ws_has(ws, "fc.bias") && ws_shape(ws, "logit_scale", shape) == 0 &&
          ws_shape(ws, "fc.weight", shape) == 2 && shape[0] == 4 && shape[1] == 3,
          "ws_shape of the nested checkpoint");
    Tensor *w = ws_take(ws, "fc.weight", MC_DIMS(4, 3));
    Tensor *b = ws_take(ws, "fc.bias", MC_DIMS(4));
    Tensor *ls = ws_take(ws, "logit_scale", 0, NULL);
    float want[12];
    CHECK(st_to_f32(exp, st_find(exp, "fc.weight"), want, 12, &err) == 0, "%s", err.msg);
    test_close("ws_take fc.weight", w->data, want, 12, 0, 0);
    CHECK(ls->ndim == 0 && ls->n == 1 && fabsf(ls->data[0] - 4.6051702f) < 1e-6f,
          "logit_scale %g", ls->data[0]);
    CHECK(ws_take_opt(ws, "absent", MC_DIMS(3)) == NULL, "optional key invented");
    CHECK(ws_finish(ws, &err) == 0, "complete binding refused: %s", err.msg);
    tensor_free(w), tensor_free(b), tensor_free(ls);
    ws_close(ws);

    // Missing, mis-shaped and unexpected keys all appear in one message.
    ws = ws_open(FIX "state_dict.pt", &err);
    CHECK(ws != NULL, "%s", err.msg);
    if (!ws) return;
    Tensor *t[4];
    t[0] = ws_take(ws, "fc.weight", MC_DIMS(3, 4));
    t[1] = ws_take(ws, "nope.weight", MC_DIMS(2));
    t[2] = ws_take(ws, "fc.bias", MC_DIMS(4));
    t[3] = ws_take(ws, "logit_scale", MC_DIMS(1));
    CHECK(t[1]->n == 2 && t[1]->data[0] == 0.0f, "missing key must give zeros");
    ws_ignore_suffix(ws, ".num_batches_tracked");
    ws_ignore_prefix(ws, "bn.");
    CHECK(ws_finish(ws, &err) == -1, "problems not reported");
    const char *want_parts[] = {
        "state_dict.pt: checkpoint does not match the model: 1 missing, 2 mis-shaped, "
        "13 unexpected", "missing (1): nope.weight",
        "fc.weight expected [3, 4] found [4, 3]", "logit_scale expected [1] found []",
        "unexpected (13): half, bf16"};
    for (int i = 0; i < 5; i++)
        CHECK(strstr(err.msg, want_parts[i]), "report lacks '%s':\n%s", want_parts[i], err.msg);
    CHECK(!strstr(err.msg, "bn.running_mean") && strstr(ws_report(ws), "empty"),
          "ignored keys listed or full report short:\n%s", ws_report(ws));
    printf("report:\n%s\n", err.msg);
    for (int i = 0; i < 4; i++) tensor_free(t[i]);
    ws_close(ws);

    // A non-checkpoint is refused with a reason.
    CHECK(ws_open("tests/test_torch_pt.c", &err) == NULL && strstr(err.msg, "test_torch_pt.c"),
          "a C file opened as weights: %s", err.msg);
}

int main(void) {
    McErr err;
    StFile *exp = st_open(FIX "expected.safetensors", &err);
    CHECK(exp != NULL, "%s (run tests/reference/gen_pt_files.py)", err.msg);
    if (!exp) return test_finish("test_torch_pt");
    test_state_dict(FIX "state_dict.pt", exp);
    test_state_dict(FIX "state_dict_proto4.pt", exp);
    test_state_dict(FIX "state_dict_deflate.zip", exp);
    test_nested();
    test_prompt(exp);
    test_crc();
    test_weights(exp);
    st_close(exp);
    return test_finish("test_torch_pt");
}
