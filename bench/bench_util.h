// bench_util.h - shared pieces of the bench/ programs: the banner (CPU,
// threads, BLAS, ISA, compiler and flags, commit) and median/min timing.
//
// Header-only (static functions) because each bench program is one .c file
// linked with libmclip.a.  Results go to stdout: banner lines start with
// '#', result lines are whitespace-separated columns that
// bench/compare.sh reads.
#ifndef MCLIP_BENCH_UTIL_H
#define MCLIP_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tensor/conv.h"
#include "../tensor/gemm.h"
#include "../tensor/simd.h"
#include "../tensor/tensor.h"

// The Makefile passes the CFLAGS the program was built with.
#ifndef MC_CFLAGS
#define MC_CFLAGS "(unknown: not built by the Makefile)"
#endif

// Clock of the measurements: wall time (default), or with --clock cpu the
// CPU time of the calling thread, which a machine shared with other jobs
// disturbs much less (meaningful with one thread only).
static int bench_cpu_clock;

static double bench_now(void) {
    if (!bench_cpu_clock) return mc_time();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Parse "--clock wall|cpu" at argv[*i]; returns 1 when consumed.  The CPU
// clock needs one thread (the other threads' time would be missing).
static int bench_clock_arg(int argc, char **argv, int *i) {
    if (strcmp(argv[*i], "--clock") || *i + 1 >= argc) return 0;
    bench_cpu_clock = !strcmp(argv[++*i], "cpu");
    return 1;
}

// First line of `cmd`'s output into buf (newline stripped), or "?".
static void bench_cmd_line(const char *cmd, char *buf, size_t len) {
    snprintf(buf, len, "?");
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (fgets(buf, (int)len, p)) buf[strcspn(buf, "\n")] = 0;
    else snprintf(buf, len, "?");
    pclose(p);
}

// CPU model: x86 "model name", else aarch64 implementer/part lines.
static void bench_cpu_model(char *buf, size_t len) {
    bench_cmd_line("grep -m1 -E '^(model name|Model|Hardware)' /proc/cpuinfo "
                   "| sed 's/^[^:]*: *//'", buf, len);
    if (strcmp(buf, "?") == 0 || buf[0] == 0)
        bench_cmd_line("lscpu 2>/dev/null | grep -m1 'Model name' | sed 's/^[^:]*: *//'",
                       buf, len);
}

static void bench_banner(const char *program) {
    char cpu[256], commit[128], dirty[16];
    bench_cpu_model(cpu, sizeof cpu);
    bench_cmd_line("git rev-parse --short HEAD 2>/dev/null", commit, sizeof commit);
    bench_cmd_line("git status --porcelain --untracked-files=no 2>/dev/null | wc -l",
                   dirty, sizeof dirty);
    printf("# %s\n", program);
    printf("# cpu       %s (%ld online)\n", cpu, sysconf(_SC_NPROCESSORS_ONLN));
    printf("# threads   %d\n", mc_threads());
    printf("# clock     %s\n", bench_cpu_clock ? "thread CPU time" : "wall (monotonic)");
    if (bench_cpu_clock && mc_threads() != 1)
        printf("# WARNING   the CPU clock with %d threads misses the other threads' time\n",
               mc_threads());
    printf("# blas      %s\n", mc_blas_enabled() ? "OpenBLAS" : "off (plain-C GEMM)");
    printf("# isa       %s (depthwise conv kernels: %s)\n", mc_isa_name(), conv_dw_isa());
#ifdef __VERSION__
    printf("# compiler  %s\n", __VERSION__);
#endif
    printf("# cflags    %s\n", MC_CFLAGS);
    printf("# commit    %s%s\n", commit, atoi(dirty) > 0 ? " (+ uncommitted changes)" : "");
    fflush(stdout);
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median and minimum of n times (sorts t in place).
static void bench_stats(double *t, int n, double *median, double *min) {
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    *min = t[0];
    *median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

#endif
