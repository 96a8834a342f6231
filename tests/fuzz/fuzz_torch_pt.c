// fuzz_torch_pt.c - libFuzzer harness for the torch.save reader
// (mobileclip/torch_pt.h): arbitrary bytes as a whole .pt file, i.e. the
// zip reader (stored, DEFLATE, zip64) and the restricted pickle machine.
//
// An accepted file is walked completely: every value's height respects
// PT_MAX_DEPTH, every tensor is converted to f32 (integer ones to int64
// too; a CRC or storage problem may still be reported, with a message
// naming the file), and the typed lookups used by the loaders are called
// on the root and on pt_state_dict.  The walk is bounded because values may
// be shared.
#include "fuzz_common.h"

#include "../../mobileclip/torch_pt.h"

#define FUZZ_PT_NAME "fuzz.pt"

static void fuzz_pt_tensor(const PtFile *f, const PtTensor *t) {
    McErr err = {{0}};
    FUZZ_REQUIRE(t->numel >= 0 && t->ndim >= 0 && t->ndim <= ST_MAXDIM, "bad tensor header");
    // Views may repeat storage elements, so numel is not bounded by the
    // input; skip huge ones (the reader checked their extent already).
    if (t->numel > (1 << 22)) return;
    float *x = malloc((size_t)(t->numel + 1) * sizeof *x);
    if (pt_tensor_to_f32(f, t, x, t->numel, &err)) fuzz_check_err(&err, FUZZ_PT_NAME);
    free(x);
    if (!st_dtype_is_float(t->dtype)) {
        int64_t *v = malloc((size_t)(t->numel + 1) * sizeof *v);
        if (pt_tensor_to_i64(f, t, v, t->numel, &err)) fuzz_check_err(&err, FUZZ_PT_NAME);
        free(v);
    }
}

static void fuzz_pt_walk(const PtFile *f, const PtValue *v, int64_t *budget) {
    if (--*budget < 0) return;
    FUZZ_REQUIRE(v->height >= 0 && v->height <= PT_MAX_DEPTH, "height %d", v->height);
    if (v->kind == PT_TENSOR) fuzz_pt_tensor(f, v->t);
    if (v->kind == PT_STR) FUZZ_REQUIRE(v->s != NULL, "string without text");
    if (v->kind == PT_LIST || v->kind == PT_TUPLE || v->kind == PT_DICT)
        for (int64_t i = 0; i < v->n; i++) fuzz_pt_walk(f, v->items[i], budget);
    if (v->kind == PT_DICT)
        for (int64_t i = 0; i < v->n; i++) (void)pt_key_str(v, i);
}

// The lookups a prompt or checkpoint loader makes on a dict.
static void fuzz_pt_lookups(const PtFile *f, const PtValue *d) {
    McErr err;
    int64_t iv;
    double fv;
    const char **list = NULL;
    int64_t n = 0;
    if (pt_get_int(f, d, "n_ctx", &iv, &err)) fuzz_check_err(&err, FUZZ_PT_NAME);
    if (pt_get_float(f, d, "epoch", &fv, &err)) fuzz_check_err(&err, FUZZ_PT_NAME);
    if (!pt_get_str(f, d, "model_name", &err)) fuzz_check_err(&err, FUZZ_PT_NAME);
    if (!pt_get_tensor(f, d, "ctx", &err)) fuzz_check_err(&err, FUZZ_PT_NAME);
    if (pt_get_str_list(f, d, "classnames", &list, &n, &err)) fuzz_check_err(&err,
                                                                              FUZZ_PT_NAME);
    else free(list);
    (void)pt_get(d, "meta");
    (void)pt_as_tensor(d);
    (void)pt_as_str(d);
}

static int fuzz_torch_pt(const uint8_t *data, size_t size) {
    McErr err = {{0}};
    PtFile *f = pt_open_mem(data, size, FUZZ_PT_NAME, &err);
    if (!f) {
        fuzz_check_err(&err, FUZZ_PT_NAME);
        return 0;
    }
    int64_t budget = 100000;
    fuzz_pt_walk(f, pt_root(f), &budget);
    fuzz_pt_lookups(f, pt_root(f));
    const PtValue *sd = pt_state_dict(f);
    if (sd) fuzz_pt_lookups(f, sd);
    const PtValue *meta = pt_get(pt_root(f), "meta");
    if (meta) fuzz_pt_lookups(f, meta);
    pt_close(f);
    return 0;
}

FUZZ_ENTRY(fuzz_torch_pt)
