// rng.h - the random numbers of prompt learning: context initialisation,
// batch shuffling, the demo's random model.  One documented generator so
// that a seed means the same numbers on every platform and a training
// checkpoint can store the state exactly.
//
//   seeding   s[i] = splitmix64 outputs of the seed (i = 0..3), where
//             splitmix64: x += 0x9E3779B97F4A7C15;
//                         z = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9;
//                         z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//                         return z ^ (z >> 31)
//   next      xoshiro256** (Blackman & Vigna): result = rotl(s1 * 5, 7) * 9,
//             then the xoshiro256 state update
//   uniform   (next >> 11) * 2^-53, a double in [0, 1)
//   normal    Box-Muller with both uniforms fresh: u1 = 1 - uniform (in
//             (0, 1]), u2 = uniform, sqrt(-2 ln u1) * cos(2 pi u2); the
//             sine half is discarded so the state is just s[4]
//   below(n)  uniform integer in [0, n): rejection on the top bits
//             (no modulo bias)
//   shuffle   Fisher-Yates from the end: for i = n-1..1, j = below(i + 1)
//
// Usage sketch (compiled by tests/test_coop.c):
//
//     CoopRng r;
//     coop_rng_seed(&r, 42);
//     double z = coop_rng_normal(&r);          // N(0, 1)
//     int64_t idx[10];
//     for (int i = 0; i < 10; i++) idx[i] = i;
//     coop_rng_shuffle(&r, idx, 10);
#ifndef MCLIP_COOP_RNG_H
#define MCLIP_COOP_RNG_H

#include <stdint.h>

typedef struct CoopRng {
    uint64_t s[4];   // xoshiro256** state (never all zero)
} CoopRng;

void     coop_rng_seed(CoopRng *r, uint64_t seed);
uint64_t coop_rng_next(CoopRng *r);
double   coop_rng_uniform(CoopRng *r);
double   coop_rng_normal(CoopRng *r);
uint64_t coop_rng_below(CoopRng *r, uint64_t n);   // n >= 1
void     coop_rng_shuffle(CoopRng *r, int64_t *x, int64_t n);

#endif
