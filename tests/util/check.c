// check.c - see check.h.
#include "check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int test_failures = 0;
int test_checks = 0;

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    test_failures++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int close_report(const char *name, const float *got, const float *want, size_t n,
                        double atol, double rtol, double scale) {
    double max_abs = 0, max_rel = 0;
    size_t worst = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double tol = atol + rtol * (scale > 0 ? scale : fabs((double)want[i]));
        double rel = d / (scale > 0 ? scale : fmax(fabs((double)want[i]), 1e-30));
        if (isnan(d)) d = rel = INFINITY;
        if (!(d <= tol)) {
            if (!bad) worst = i;  // report the first element out of tolerance
            bad++;
        }
        if (d > max_abs) {
            max_abs = d;
            if (!bad) worst = i;  // until one fails, report the largest error
        }
        if (rel > max_rel) max_rel = rel;
    }
    test_checks++;
    printf("%-36s n=%-8zu max|d|=%.3e max rel=%.3e %s\n", name, n, max_abs, max_rel,
           bad ? "FAIL" : "ok");
    if (bad) {
        test_failures++;
        fprintf(stderr, "FAIL %s: %zu of %zu elements out of tolerance; first at %zu: "
                "got %.8g want %.8g\n", name, bad, n, worst, got[worst], want[worst]);
    }
    return bad == 0;
}

int test_close(const char *name, const float *got, const float *want, size_t n,
               double atol, double rtol) {
    return close_report(name, got, want, n, atol, rtol, 0);
}

int test_close_absmax(const char *name, const float *got, const float *want, size_t n,
                      double tol) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)want[i]));
    if (m == 0) m = 1;
    return close_report(name, got, want, n, 0, tol, m);
}

int test_finish(const char *program) {
    printf("%s: %d checks, %d failed\n", program, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

const char *test_shared_path(const char *rel, char *buf, size_t len) {
    const char *root = getenv("MCLIP_SHARED");
    snprintf(buf, len, "%s/%s", root ? root : "../shared", rel);
    if (access(buf, R_OK) != 0) {
        fprintf(stderr, "missing shared file %s: this test needs the project's shared/ folder "
                "beside the checkout (or MCLIP_SHARED=/path/to/shared)\n", buf);
        return NULL;
    }
    return buf;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

void test_seed(uint64_t s) { rng_state = s ? s : 0x9e3779b97f4a7c15ull; }

double test_uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}

double test_normal(void) {
    double u1 = test_uniform(), u2 = test_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void test_fill_normal(float *x, size_t n, double std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(std * test_normal());
}
