// rng.c - xoshiro256** seeded by splitmix64 (see rng.h for the exact
// definitions).
#include "rng.h"

#include <math.h>

#define COOP_TWO_PI 6.283185307179586476925286766559

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void coop_rng_seed(CoopRng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    // splitmix64 never yields four zeros in a row, but keep the invariant explicit.
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

uint64_t coop_rng_next(CoopRng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double coop_rng_uniform(CoopRng *r) {
    return (double)(coop_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double coop_rng_normal(CoopRng *r) {
    // u1 in (0, 1] keeps log finite.
    double u1 = 1.0 - coop_rng_uniform(r);
    double u2 = coop_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(COOP_TWO_PI * u2);
}

uint64_t coop_rng_below(CoopRng *r, uint64_t n) {
    if (n <= 1) return 0;
    // Smallest mask covering n - 1, then reject draws >= n.
    uint64_t m = n - 1;
    m |= m >> 1, m |= m >> 2, m |= m >> 4, m |= m >> 8, m |= m >> 16, m |= m >> 32;
    int shift = 0;
    while ((m << shift) >> 63 == 0 && shift < 63) shift++;
    for (;;) {
        uint64_t v = coop_rng_next(r) >> shift;   // top bits are the best ones
        if (v < n) return v;
    }
}

void coop_rng_shuffle(CoopRng *r, int64_t *x, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)coop_rng_below(r, (uint64_t)i + 1);
        int64_t t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}
