// check.h - small helpers shared by the test programs.
//
// Each test program calls the CHECK* macros; failures are counted and
// printed with file:line, and test_finish() returns the exit status
// (non-zero on any failure), so `make test` can never pass a failing test.
#ifndef MCLIP_TEST_CHECK_H
#define MCLIP_TEST_CHECK_H

#include <stddef.h>
#include <stdint.h>

extern int test_failures;
extern int test_checks;

void test_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond, ...) \
    do { test_checks++; if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)

// Compare got against want elementwise: |got - want| <= atol + rtol * |want|.
// Prints name, max abs error, max rel error, the worst index; returns 1 if ok.
int test_close(const char *name, const float *got, const float *want, size_t n,
               double atol, double rtol);
// Same, but the tolerance is relative to max |want| (the tensor's absmax):
// |got - want| <= tol * absmax(want).
int test_close_absmax(const char *name, const float *got, const float *want, size_t n,
                      double tol);

// Print the summary line and return the process exit status.
int test_finish(const char *program);

// Path of the shared folder (../shared unless MCLIP_SHARED is set), or NULL
// with a clear message on stderr when the file below it is missing.
const char *test_shared_path(const char *rel, char *buf, size_t len);

// Deterministic random numbers for tests (xorshift64*).
void   test_seed(uint64_t s);
double test_uniform(void);             // [0, 1)
double test_normal(void);              // N(0, 1)
void   test_fill_normal(float *x, size_t n, double std);

#endif
