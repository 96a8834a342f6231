// fuzz_matfile.c - libFuzzer harness for the MATLAB level-5 reader
// (datasets/matfile.h): arbitrary bytes as a whole .mat file, both byte
// orders, miCOMPRESSED elements inflated under a 1 MiB cap (the default
// 64 MiB cap only makes each run slower).
//
// An accepted file is listed and every numeric variable is read as double
// and as int64 (either may refuse values, with a message naming the file);
// each variable's numel must equal the product of its dims and its bytes
// must hold numel elements.
#include "fuzz_common.h"

#include "../../datasets/matfile.h"

#define FUZZ_MAT_NAME "fuzz.mat"

static void fuzz_mat_var(const MatFile *m, const MatVar *v) {
    McErr err = {{0}};
    int64_t prod = 1;
    for (int d = 0; d < v->ndim; d++) prod *= v->dims[d];
    FUZZ_REQUIRE(v->ndim >= 2 && v->ndim <= MAT_MAXDIM, "ndim %d", v->ndim);
    FUZZ_REQUIRE(prod == v->numel, "variable %s: numel %lld, dims give %lld", v->name,
                 (long long)v->numel, (long long)prod);
    FUZZ_REQUIRE(mat_find(m, v->name) != NULL, "mat_find misses %s", v->name);
    double *dv;
    int64_t *iv, n;
    if (mat_get_f64(m, v->name, &dv, &n, &err) == 0) {
        FUZZ_REQUIRE(n == mat_find(m, v->name)->numel, "f64 count");
        free(dv);
    } else {
        fuzz_check_err(&err, FUZZ_MAT_NAME);
    }
    if (mat_get_i64(m, v->name, &iv, &n, &err) == 0) free(iv);
    else fuzz_check_err(&err, FUZZ_MAT_NAME);
}

static int fuzz_matfile(const uint8_t *data, size_t size) {
    McErr err = {{0}};
    MatLimits lim = {.max_inflate = (size_t)1 << 20, .max_ratio = 1000.0};
    MatFile *m = mat_open_mem(data, size, FUZZ_MAT_NAME, &lim, &err);
    if (!m) {
        fuzz_check_err(&err, FUZZ_MAT_NAME);
        return 0;
    }
    (void)mat_header_text(m);
    for (int i = 0; i < mat_count(m); i++) fuzz_mat_var(m, mat_at(m, i));
    McErr e2 = {{0}};
    double *dv;
    int64_t n;
    FUZZ_REQUIRE(mat_get_f64(m, "no such variable name", &dv, &n, &e2) == -1,
                 "missing variable found");
    mat_close(m);
    return 0;
}

FUZZ_ENTRY(fuzz_matfile)
