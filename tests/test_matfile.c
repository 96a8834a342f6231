// test_matfile.c - the level-5 MAT reader and writer: round trips in both
// byte orders, compressed and uncompressed elements, miUINT8 / miUINT16 /
// miDOUBLE storage, small-form names, the unpadded top-level compressed
// element, the inflated sizes of the genuine Flowers102 files, and every
// malformed case of datasets.md §1.1 (each must fail with a message naming
// the file and an offset).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../datasets/matfile.h"
#include "util/check.h"

// ---- helpers ----

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// Expect mat_open_mem to fail with a message containing every needle.
static void expect_fail(const char *what, const uint8_t *bytes, size_t len,
                        const MatLimits *lim, const char *n1, const char *n2) {
    McErr err = {{0}};
    MatFile *m = mat_open_mem(bytes, len, "bad.mat", lim, &err);
    CHECK(m == NULL, "%s: opened without error", what);
    if (m) {
        mat_close(m);
        return;
    }
    printf("%-22s -> %s\n", what, err.msg);
    CHECK(strstr(err.msg, "bad.mat") != NULL, "%s: message lacks the file name", what);
    CHECK(!n1 || strstr(err.msg, n1), "%s: message lacks '%s'", what, n1);
    CHECK(!n2 || strstr(err.msg, n2), "%s: message lacks '%s'", what, n2);
}

// Flowers-like variables: labels 1x8189 (1..102), trnid/valid/tstid.
static double *seq(int64_t n, int mod, int base) {
    double *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = base + (double)((i * 7919) % mod);
    return v;
}

// ---- round trips ----

// Compressed variables with the genuine files' shapes: the inflated sizes
// must equal those of imagelabels.mat and setid.mat (datasets.md §1.1).
static void test_flowers_shapes(void) {
    double *labels = seq(8189, 102, 1), *trn = seq(1020, 8189, 1), *tst = seq(6149, 8189, 1);
    MatWriteVar lv = {.name = "labels", .rows = 1, .cols = 8189, .values = labels,
                      .compress = 1};
    MatWriteVar sv[3] = {
        {.name = "trnid", .rows = 1, .cols = 1020, .values = trn, .compress = 1},
        {.name = "valid", .rows = 1, .cols = 1020, .values = trn, .compress = 1},
        {.name = "tstid", .rows = 1, .cols = 6149, .values = tst, .compress = 1},
    };
    McErr err = {{0}};
    uint8_t *bytes;
    size_t len;
    CHECK(mat_write_mem(&lv, 1, 0, &bytes, &len, &err) == 0, "write labels: %s", err.msg);
    MatFile *m = mat_open_mem(bytes, len, "imagelabels.mat", NULL, &err);
    CHECK(m != NULL, "open labels: %s", err.msg);
    if (m) {
        const MatVar *v = mat_find(m, "labels");
        CHECK(v && v->stype == MAT_UINT8 && v->mclass == MX_DOUBLE, "labels storage/class");
        CHECK(v && v->inflated == 8256, "labels inflated to %zu, genuine file 8256",
              v ? v->inflated : 0);
        CHECK(v && v->ndim == 2 && v->dims[0] == 1 && v->dims[1] == 8189, "labels dims");
        int64_t *iv, n;
        CHECK(mat_get_i64(m, "labels", &iv, &n, &err) == 0, "get labels: %s", err.msg);
        int same = n == 8189;
        for (int64_t i = 0; same && i < n; i++) same = iv[i] == (int64_t)labels[i];
        CHECK(same, "labels values differ after the round trip");
        free(iv);
        printf("imagelabels-like: %zu bytes, inflated %zu, storage %s\n", len,
               v ? v->inflated : 0, v ? mat_type_name(v->stype) : "?");
        mat_close(m);
    }
    free(bytes);

    // setid-like: three compressed elements back to back, not padded.
    CHECK(mat_write_mem(sv, 3, 0, &bytes, &len, &err) == 0, "write setid: %s", err.msg);
    m = mat_open_mem(bytes, len, "setid.mat", NULL, &err);
    CHECK(m != NULL, "open setid: %s", err.msg);
    if (m) {
        size_t want_inflated[3] = {2104, 2104, 12368};
        size_t off = 128;
        for (int i = 0; i < 3; i++) {
            const MatVar *v = mat_at(m, i);
            CHECK(v->stype == MAT_UINT16, "%s stored as %s, want miUINT16", v->name,
                  mat_type_name(v->stype));
            CHECK(v->inflated == want_inflated[i], "%s inflated %zu want %zu", v->name,
                  v->inflated, want_inflated[i]);
            CHECK(v->offset == off, "%s at offset %zu, want %zu (unpadded)", v->name,
                  v->offset, off);
            off += 8 + le32(bytes + off + 4);
            printf("%s at %zu, inflated %zu\n", v->name, v->offset, v->inflated);
        }
        CHECK(off == len, "elements end at %zu, file at %zu", off, len);
        double *dv;
        int64_t n;
        CHECK(mat_get_f64(m, "tstid", &dv, &n, &err) == 0, "get tstid: %s", err.msg);
        CHECK(n == 6149 && dv[5] == tst[5] && dv[6148] == tst[6148], "tstid values");
        free(dv);
        mat_close(m);
    }
    free(bytes);
    free(labels);
    free(trn);
    free(tst);
}

// Uncompressed, miDOUBLE storage, small and long names, big-endian twin.
static void test_uncompressed_and_mi(void) {
    double a[6] = {1.5, -2.25, 3, 4, 5, 6}, b[4] = {1, 2, 300, 4};
    MatWriteVar vars[3] = {
        {.name = "ab", .rows = 2, .cols = 3, .values = a},
        {.name = "a_longer_name", .rows = 1, .cols = 4, .values = b},
        {.name = "c", .rows = 2, .cols = 2, .values = b, .compress = 1, .mclass = MX_INT32},
    };
    for (int big = 0; big <= 1; big++) {
        McErr err = {{0}};
        uint8_t *bytes;
        size_t len;
        CHECK(mat_write_mem(vars, 3, big, &bytes, &len, &err) == 0, "write: %s", err.msg);
        CHECK(!memcmp(bytes + 126, big ? "MI" : "IM", 2), "endian indicator");
        MatFile *m = mat_open_mem(bytes, len, big ? "mi.mat" : "im.mat", NULL, &err);
        CHECK(m != NULL, "open %s: %s", big ? "MI" : "IM", err.msg);
        if (!m) {
            free(bytes);
            continue;
        }
        CHECK(mat_big_endian(m) == big, "byte order detected");
        CHECK(mat_count(m) == 3, "3 variables, found %d", mat_count(m));
        const MatVar *v = mat_find(m, "ab");
        CHECK(v && v->stype == MAT_DOUBLE && !v->compressed, "ab is uncompressed miDOUBLE");
        double *dv;
        int64_t n;
        CHECK(mat_get_f64(m, "ab", &dv, &n, &err) == 0, "get ab: %s", err.msg);
        CHECK(n == 6 && v && v->ndim == 2 && v->dims[0] == 2 && v->dims[1] == 3, "ab dims");
        CHECK(n == 6 && dv[0] == 1.5 && dv[1] == -2.25 && dv[5] == 6, "ab values");
        free(dv);
        int64_t *iv;
        CHECK(mat_get_i64(m, "ab", &iv, &n, &err) != 0, "1.5 read as an integer");
        CHECK(strstr(err.msg, "not an integer") && strstr(err.msg, "'ab'"),
              "non-integer message: %s", err.msg);
        CHECK(mat_get_i64(m, "a_longer_name", &iv, &n, &err) == 0, "long name: %s",
              err.msg);
        CHECK(n == 4 && iv[2] == 300, "uint16 storage of 300");
        free(iv);
        v = mat_find(m, "c");
        CHECK(v && v->mclass == MX_INT32 && v->stype == MAT_UINT16, "c class/storage");
        CHECK(mat_get_i64(m, "c", &iv, &n, &err) == 0 && iv[2] == 300, "c values");
        free(iv);
        CHECK(mat_get_f64(m, "nope", &dv, &n, &err) != 0 &&
              strstr(err.msg, "'nope'"), "missing variable message: %s", err.msg);
        mat_close(m);
        free(bytes);
    }
}

// Declared class narrower than the stored value: an error, not a wrap.
static void test_class_range(void) {
    double v[2] = {7, 300};
    MatWriteVar w = {.name = "x", .rows = 1, .cols = 2, .values = v, .mclass = MX_UINT8,
                     .stype = MAT_UINT16};
    McErr err = {{0}};
    uint8_t *bytes;
    size_t len;
    CHECK(mat_write_mem(&w, 1, 0, &bytes, &len, &err) == 0, "write: %s", err.msg);
    MatFile *m = mat_open_mem(bytes, len, "range.mat", NULL, &err);
    CHECK(m != NULL, "open: %s", err.msg);
    if (m) {
        double *dv;
        int64_t n;
        CHECK(mat_get_f64(m, "x", &dv, &n, &err) != 0, "300 accepted as mxUINT8");
        CHECK(strstr(err.msg, "mxUINT8") != NULL, "range message: %s", err.msg);
        mat_close(m);
    }
    free(bytes);
}

// ---- malformed files ----

// Build a file holding one compressed element whose zlib stream inflates
// to `inner` (inner_len bytes); returns the file bytes.
static uint8_t *file_with_stream(const uint8_t *inner, size_t inner_len, size_t *len) {
    uLongf clen = compressBound((uLong)inner_len);
    uint8_t *out = malloc(128 + 8 + clen);
    memset(out, ' ', 128);
    memcpy(out, "MATLAB 5.0 MAT-file, test", 25);
    out[124] = 0;
    out[125] = 1;
    memcpy(out + 126, "IM", 2);
    compress2(out + 136, &clen, inner, (uLong)inner_len, 9);
    put_le32(out + 128, MAT_COMPRESSED);
    put_le32(out + 132, (uint32_t)clen);
    *len = 136 + clen;
    return out;
}

static void test_malformed(void) {
    double v[5] = {1, 2, 3, 4, 5};
    MatWriteVar w = {.name = "labels", .rows = 1, .cols = 5, .values = v, .compress = 1};
    McErr err = {{0}};
    uint8_t *good;
    size_t len;
    CHECK(mat_write_mem(&w, 1, 0, &good, &len, &err) == 0, "write: %s", err.msg);
    uint8_t *b = malloc(len + 64);

    // Truncated zlib: the element claims (and has) fewer bytes than the stream.
    memcpy(b, good, len);
    put_le32(b + 132, le32(good + 132) - 6);
    expect_fail("truncated zlib", b, len - 6, NULL, "truncated", "offset 128");

    // Element longer than the file.
    expect_fail("cut file", good, len - 3, NULL, "remain", "offset 128");

    // Trailing bytes inside the element after the stream ends.
    memcpy(b, good, len);
    memset(b + len, 0, 5);
    put_le32(b + 132, le32(good + 132) + 5);
    expect_fail("bytes after stream", b, len + 5, NULL, "ends 5 bytes before", NULL);

    // Corrupt deflate data.
    memcpy(b, good, len);
    b[140] ^= 0xff;
    b[141] ^= 0x5a;
    expect_fail("corrupt zlib", b, len, NULL, "offset 128", NULL);

    // v7.3 (HDF5) header.
    memcpy(b, good, len);
    memcpy(b, "MATLAB 7.3 MAT-file", 19);
    expect_fail("v7.3 header", b, len, NULL, "v7.3", "HDF5");

    // Not a MAT file; short file; bad endian indicator; bad version.
    expect_fail("not a mat", (const uint8_t *)"hello world, not a mat file", 27, NULL,
                "shorter than the 128-byte", NULL);
    memcpy(b, good, len);
    memcpy(b + 126, "XX", 2);
    expect_fail("endian indicator", b, len, NULL, "'IM' or 'MI'", NULL);
    memcpy(b, good, len);
    b[125] = 2;
    expect_fail("version", b, len, NULL, "0x0100", NULL);
    memcpy(b, good, len);
    memcpy(b, "MATLAB 4.0", 10);
    expect_fail("level 4 text", b, len, NULL, "MATLAB 5.0", NULL);
    free(b);

    // Inner size > outer: the inner miMATRIX tag claims more than inflated.
    uint8_t inner[64] = {0};
    put_le32(inner, MAT_MATRIX);
    put_le32(inner + 4, 4096);
    size_t flen;
    uint8_t *f = file_with_stream(inner, sizeof inner, &flen);
    expect_fail("inner size > outer", f, flen, NULL, "inflated to 64", "file offset 128");
    free(f);

    // Inner element of the wrong type.
    put_le32(inner, MAT_DOUBLE);
    put_le32(inner + 4, 56);
    f = file_with_stream(inner, sizeof inner, &flen);
    expect_fail("inner not miMATRIX", f, flen, NULL, "expected miMATRIX", NULL);
    free(f);

    // Zlib bomb: 8 MiB of zeros behind a valid tag (ratio ~1000:1).
    size_t big = (size_t)8 << 20;
    uint8_t *zeros = calloc(1, big);
    put_le32(zeros, MAT_MATRIX);
    put_le32(zeros + 4, (uint32_t)(big - 8));
    f = file_with_stream(zeros, big, &flen);
    printf("bomb: %zu compressed bytes for %zu\n", flen, big);
    MatLimits ratio_only = {.max_inflate = (size_t)1 << 30, .max_ratio = 100};
    expect_fail("zlib bomb (ratio)", f, flen, &ratio_only, "zlib bomb", "offset 128");
    MatLimits size_only = {.max_inflate = (size_t)1 << 20, .max_ratio = 1e9};
    expect_fail("zlib bomb (size)", f, flen, &size_only, "zlib bomb", NULL);
    expect_fail("zlib bomb (default)", f, flen, NULL, "zlib bomb", NULL);
    free(f);
    free(zeros);

    // Dims != data: uncompressed file, cols patched from 5 to 6.
    w.compress = 0;
    CHECK(mat_write_mem(&w, 1, 0, &b, &len, &err) == 0, "write: %s", err.msg);
    CHECK(le32(b + 164) == 5, "cols at offset 164");
    put_le32(b + 164, 6);
    expect_fail("dims != data", b, len, NULL, "6 elements", "'labels'");

    // Negative dimension, then a sub-element overrunning the matrix.
    put_le32(b + 164, 0xffffffffu);
    expect_fail("negative dim", b, len, NULL, "negative", NULL);
    put_le32(b + 164, 5);
    put_le32(b + 132, 24);
    expect_fail("matrix overrun", b, len, NULL, "claims", NULL);
    free(b);
    free(good);
}

static void test_missing_file(void) {
    McErr err = {{0}};
    MatFile *m = mat_open("/nonexistent/dir/setid.mat", &err);
    CHECK(m == NULL && strstr(err.msg, "/nonexistent/dir/setid.mat"), "missing: %s", err.msg);
}

int main(void) {
    test_flowers_shapes();
    test_uncompressed_and_mi();
    test_class_range();
    test_malformed();
    test_missing_file();
    return test_finish("test_matfile");
}
