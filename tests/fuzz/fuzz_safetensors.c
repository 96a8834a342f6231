// fuzz_safetensors.c - libFuzzer harness for the safetensors reader
// (mobileclip/safetensors.h): arbitrary bytes as a whole file.
//
// An accepted file must give consistent tensors: each one's byte span lies
// inside the input and matches numel x dtype size, st_find finds it by name,
// and every tensor converts to f32 (and integer ones to int64) without
// reading outside the input (the input buffer is exactly `size` bytes, so
// AddressSanitizer sees any over-read).  Metadata keys and values are read
// back through st_meta.
#include "fuzz_common.h"

#include "../../mobileclip/safetensors.h"

#define FUZZ_ST_NAME "fuzz.safetensors"

static void fuzz_st_check_tensor(const StFile *f, const StTensor *t, const uint8_t *data,
                                 size_t size) {
    const uint8_t *p = t->data;
    FUZZ_REQUIRE(p >= data && t->nbytes <= size && (size_t)(p - data) <= size - t->nbytes,
                 "tensor %s lies outside the input", t->name);
    FUZZ_REQUIRE((size_t)t->numel * (size_t)st_dtype_size(t->dtype) == t->nbytes,
                 "tensor %s: numel %lld x itemsize != %zu bytes", t->name,
                 (long long)t->numel, t->nbytes);
    FUZZ_REQUIRE(st_find(f, t->name) != NULL, "st_find misses %s", t->name);

    // Convert (the element count is bounded by the input size).
    McErr err;
    float *x = malloc((size_t)(t->numel + 1) * sizeof *x);
    FUZZ_REQUIRE(st_to_f32(f, t, x, t->numel, &err) == 0, "st_to_f32: %s", err.msg);
    free(x);
    if (!st_dtype_is_float(t->dtype)) {
        int64_t *v = malloc((size_t)(t->numel + 1) * sizeof *v);
        FUZZ_REQUIRE(st_to_i64(f, t, v, t->numel, &err) == 0, "st_to_i64: %s", err.msg);
        free(v);
    }
    // A wrong element count is refused.
    FUZZ_REQUIRE(st_to_f32(f, t, NULL, t->numel + 1, &err) == -1, "bad count accepted");
}

static int fuzz_safetensors(const uint8_t *data, size_t size) {
    McErr err = {{0}};
    StFile *f = st_open_mem(data, size, FUZZ_ST_NAME, &err);
    if (!f) {
        fuzz_check_err(&err, FUZZ_ST_NAME);
        return 0;
    }
    for (int i = 0; i < st_count(f); i++) fuzz_st_check_tensor(f, st_at(f, i), data, size);
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *k = st_meta_key(f, i);
        FUZZ_REQUIRE(k && st_meta(f, k), "metadata key %d unreadable", i);
    }
    FUZZ_REQUIRE(st_at(f, st_count(f)) == NULL && st_at(f, -1) == NULL, "st_at out of range");
    st_close(f);
    return 0;
}

FUZZ_ENTRY(fuzz_safetensors)
