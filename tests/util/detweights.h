// detweights.h - expand the weight recipes of a reference fixture.
//
// Reference fixtures keep full-width models small by storing each large
// weight as a recipe (name, shape, uniform range) instead of its values;
// tests/reference/detweights.py documents the exact arithmetic, which this
// file repeats bit for bit.  detweights_expand() writes a complete weights
// file (the fixture's stored tensors whose names do not start with one of
// the fixture-only prefixes, plus every expanded recipe, stored as F16 since
// the values are fp16-exact) so that the model loads through the normal
// checkpoint path.  The fixture's metadata is copied, except the recipes.
#ifndef MCLIP_TEST_DETWEIGHTS_H
#define MCLIP_TEST_DETWEIGHTS_H

#include <stdint.h>
#include <stddef.h>

// Fill out[n] with the values of one recipe.
void detweights_fill(float *out, size_t n, const char *name, double lo, double hi,
                     uint64_t seed);

// Read fixture_path (safetensors with "detweights" metadata) and write
// weights_path: every stored tensor whose name does not start with any of
// the skip prefixes (NULL-terminated list, e.g. {"ref.", "input.", NULL}),
// plus every recipe expanded.  Returns 0, or -1 with a message on stderr.
int detweights_expand(const char *fixture_path, const char *weights_path,
                      const char *const *skip_prefixes);

#endif
