// dispatch.c - run-time choice of the per-ISA kernel table (see simd.h).
//
// The Makefile defines MC_HAVE_ISA_<isa> for every variant of tensor/isa/
// it compiled; this file lists those tables, asks the CPU which it can run
// (__builtin_cpu_supports on x86-64; NEON is part of aarch64), and picks
// the best one once, or the one named by MCLIP_ISA.
#include "simd.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MC_HAVE_ISA_scalar
extern const McIsa mc_isa_table_scalar;
#endif
#ifdef MC_HAVE_ISA_avx2
extern const McIsa mc_isa_table_avx2;
#endif
#ifdef MC_HAVE_ISA_avx512
extern const McIsa mc_isa_table_avx512;
#endif
#ifdef MC_HAVE_ISA_neon
extern const McIsa mc_isa_table_neon;
#endif

// Compiled variants, best first; NULL-terminated.
static const McIsa *const isa_compiled[] = {
#ifdef MC_HAVE_ISA_avx512
    &mc_isa_table_avx512,
#endif
#ifdef MC_HAVE_ISA_avx2
    &mc_isa_table_avx2,
#endif
#ifdef MC_HAVE_ISA_neon
    &mc_isa_table_neon,
#endif
#ifdef MC_HAVE_ISA_scalar
    &mc_isa_table_scalar,
#endif
    NULL,
};

// 1 when this CPU can run the variant called name.
static int isa_cpu_has(const char *name) {
    if (strcmp(name, "scalar") == 0) return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(__aarch64__)
    if (strcmp(name, "neon") == 0) return 1;
#endif
    return 0;
}

const McIsa *mc_isa_lookup(const char *name) {
    for (int i = 0; isa_compiled[i]; i++)
        if (strcmp(isa_compiled[i]->name, name) == 0)
            return isa_cpu_has(name) ? isa_compiled[i] : NULL;
    return NULL;
}

static const McIsa *isa_active;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

// First use: the best supported variant, unless MCLIP_ISA names another.
static void isa_choose(void) {
    for (int i = 0; isa_compiled[i] && !isa_active; i++)
        if (isa_cpu_has(isa_compiled[i]->name)) isa_active = isa_compiled[i];
    const char *env = getenv("MCLIP_ISA");
    if (env && *env) {
        const McIsa *t = mc_isa_lookup(env);
        if (t) {
            isa_active = t;
        } else {
            fprintf(stderr, "mclip: MCLIP_ISA=%s is not compiled in or not supported by this "
                    "CPU (available:", env);
            for (int i = 0; isa_compiled[i]; i++)
                if (isa_cpu_has(isa_compiled[i]->name))
                    fprintf(stderr, " %s", isa_compiled[i]->name);
            fprintf(stderr, "); using %s\n", isa_active->name);
        }
    }
}

const McIsa *mc_isa(void) {
    pthread_once(&isa_once, isa_choose);
    return isa_active;
}

const char *mc_isa_name(void) { return mc_isa()->name; }

int mc_isa_set(const char *name) {
    const McIsa *t = mc_isa_lookup(name);
    mc_isa();  // settle the default first so a later first use cannot undo this
    if (!t) return -1;
    isa_active = t;
    return 0;
}
