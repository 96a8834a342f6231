"""detweights.py - large weights that C and Python draw identically.

A full-width weights file does not fit in a small committed fixture, so the
generators store only small tensors (norm parameters, BN statistics, inputs,
activations) and describe every large tensor by a recipe: its name, shape
and a uniform range [lo, hi).  Both sides expand a recipe with the same
integer arithmetic and the same IEEE double operations, so the values are
bit-identical:

    key  = fnv1a64(name) XOR (seed * 0x9E3779B97F4A7C15)
    z_i  = splitmix64(key + i)                 (uint64, wrapping)
    u_i  = (z_i >> 11) * 2^-53                 (exact double in [0, 1))
    v_i  = lo + (hi - lo) * u_i                (double)
    w_i  = float16(float32(v_i))               (round to nearest even twice)

A uniform draw with std s uses lo = -s*sqrt(3), hi = +s*sqrt(3).  The C side
is tests/util/detweights.c.  The recipes go into the fixture's metadata
under the key "detweights" as JSON: [[name, [shape], lo, hi], ...] plus
"detweights_seed".
"""
import json
import math

import numpy as np

_M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & _M64
    return h


def expand(name, shape, lo, hi, seed):
    n = int(np.prod(shape)) if len(shape) else 1
    key = fnv1a64(name) ^ ((seed * 0x9E3779B97F4A7C15) & _M64)
    with np.errstate(over="ignore"):
        x = np.uint64(key) + np.arange(n, dtype=np.uint64)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    v = lo + (hi - lo) * u
    return v.astype(np.float32).astype(np.float16).astype(np.float32).reshape(shape)


def uniform_std(std):
    a = std * math.sqrt(3.0)
    return -a, a


class Recipes:
    """Collects recipes while a generator replaces a model's large weights."""

    def __init__(self, seed):
        self.seed = seed
        self.items = []

    def draw(self, name, shape, lo, hi):
        self.items.append([name, [int(s) for s in shape], float(lo), float(hi)])
        return expand(name, tuple(shape), lo, hi, self.seed)

    def metadata(self):
        return {"detweights": json.dumps(self.items), "detweights_seed": str(self.seed)}
