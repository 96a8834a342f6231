// test_checks.c - programmer errors in op calls abort with a message that
// names file:line, the op and both shapes.
//
// Each case runs in a forked child with stderr on a pipe; the parent
// asserts the child died by SIGABRT and that the message holds the op
// name, the shapes in "[2, 3]" form and a ".c:<line>" location.  (Tensors
// are float32 only, so there is no dtype to mismatch; shape, rank, index
// and argument errors are checked.)
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../autograd/autograd.h"
#include "util/check.h"

typedef void (*BadCall)(Graph *g);

static Tensor *t2(Graph *g, int64_t a, int64_t b) { return ag_zeros(g, MC_DIMS(a, b)); }

static void bad_add(Graph *g) { ag_add(g, t2(g, 2, 3), t2(g, 4, 5)); }
static void bad_mul(Graph *g) { ag_mul(g, ag_zeros(g, MC_DIMS(2, 3, 5)), t2(g, 3, 4)); }
static void bad_layernorm(Graph *g) {
    ag_layernorm(g, t2(g, 2, 3), ag_zeros(g, MC_DIMS(4)), NULL, 1e-5f);
}
static void bad_concat(Graph *g) { ag_concat(g, t2(g, 2, 3), t2(g, 4, 5), 0); }
static void bad_attention(Graph *g) {
    ag_attention(g, ag_zeros(g, MC_DIMS(2, 3, 12)), 2, t2(g, 4, 4), 0.5f);
}
static void bad_batchnorm(Graph *g) {
    Tensor *x = ag_zeros(g, MC_DIMS(2, 3, 4, 5));
    ag_batchnorm(g, x, ag_zeros(g, MC_DIMS(7)), ag_zeros(g, MC_DIMS(3)), NULL, NULL, 1e-5f);
}
static void bad_layernorm2d(Graph *g) { ag_layernorm2d(g, t2(g, 2, 3), NULL, NULL, 1e-5f); }
static void bad_rows(Graph *g) {
    int32_t rows[2] = {1, 7};
    ag_rows(g, t2(g, 5, 3), rows, 2);
}
static void bad_permute(Graph *g) { ag_permute(g, t2(g, 2, 3), 0, 0, -1, -1); }
static void bad_slice(Graph *g) { ag_slice(g, t2(g, 2, 3), 1, 2, 2); }
static void bad_reshape(Graph *g) { ag_reshape(g, t2(g, 2, 3), MC_DIMS(4, 2)); }
static void bad_cross_entropy(Graph *g) {
    int32_t labels[2] = {0, 3};
    ag_cross_entropy(g, t2(g, 2, 3), labels);
}

// Run call in a child; return its stderr in buf and the wait status.
static int run_child(BadCall call, char *buf, size_t len) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        Graph *g = ag_graph_new(1 << 16);
        call(g);
        _exit(0);  // reached only if the check did not fire
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < len && (r = read(fd[0], buf + n, len - 1 - n)) > 0) n += (size_t)r;
    buf[n] = '\0';
    // Drain anything beyond the buffer so the child never blocks.
    char sink[256];
    while (read(fd[0], sink, sizeof sink) > 0) {}
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

// The child must die by SIGABRT with every needle in its message.
static void expect_abort(const char *name, BadCall call, const char *const *needles) {
    char msg[4096];
    int st = run_child(call, msg, sizeof msg);
    int aborted = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
    CHECK(aborted, "%s: child did not abort (status %d)", name, st);
    int found = 1;
    for (int i = 0; needles[i]; i++) {
        int has = strstr(msg, needles[i]) != NULL;
        CHECK(has, "%s: message lacks \"%s\": %s", name, needles[i], msg);
        found &= has;
    }
    char *nl = strchr(msg, '\n');
    if (nl) *nl = '\0';
    printf("%-14s %s | %s\n", name, aborted && found ? "ok  " : "FAIL", msg);
}

int main(void) {
    expect_abort("add", bad_add, (const char *[]){"add", "[2, 3]", "[4, 5]", "ops_elem.c:", NULL});
    expect_abort("mul", bad_mul, (const char *[]){"mul", "[2, 3, 5]", "[3, 4]", ".c:", NULL});
    expect_abort("layernorm", bad_layernorm,
                 (const char *[]){"layernorm", "[4]", "[2, 3]", ".c:", NULL});
    expect_abort("concat", bad_concat, (const char *[]){"concat", "[2, 3]", "[4, 5]", ".c:", NULL});
    expect_abort("attention", bad_attention,
                 (const char *[]){"attention", "[4, 4]", "[2, 3, 12]", ".c:", NULL});
    expect_abort("batchnorm", bad_batchnorm,
                 (const char *[]){"batchnorm", "[7]", "[2, 3, 4, 5]", ".c:", NULL});
    expect_abort("layernorm2d", bad_layernorm2d,
                 (const char *[]){"layernorm2d", "[2, 3]", ".c:", NULL});
    expect_abort("rows", bad_rows, (const char *[]){"rows", "7", ".c:", NULL});
    expect_abort("permute", bad_permute, (const char *[]){"permute", "[2, 3]", ".c:", NULL});
    expect_abort("slice", bad_slice, (const char *[]){"slice", "[2, 3]", ".c:", NULL});
    expect_abort("reshape", bad_reshape, (const char *[]){"reshape", "[2, 3]", ".c:", NULL});
    expect_abort("cross_entropy", bad_cross_entropy,
                 (const char *[]){"cross_entropy", "label 3", ".c:", NULL});
    return test_finish("test_checks");
}
