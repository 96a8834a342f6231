#!/bin/sh
# compare.sh - run bench_gemm, bench_conv and bench/torch_ops.py with the
# same thread count and print side-by-side tables with ratios.
#
# Usage: bench/compare.sh [threads [clock]]  (default 2 wall)
#   clock "cpu" times each case by the CPU time of the calling thread
#   instead of the wall clock: far less disturbed when other jobs share the
#   machine, and only meaningful with threads = 1.
# Environment: BUILD (default build/bench), PYTHON (default /usr/bin/python3),
#              MAKEFLAGS_EXTRA (extra make arguments, e.g. "BLAS=0").
# Raw outputs are kept in $BUILD/compare-<threads>t-<clock>/ (c_gemm.txt,
# c_conv.txt, torch.txt) for bench/RESULTS.md.
#
# Ratios: "op/raw" = raw sgemm median / ag_linear median (target >= 0.90);
# "torch/C" = torch median / C median (> 1 means C is faster).
set -eu

T=${1:-2}
CLOCK=${2:-wall}
BUILD=${BUILD:-build/bench}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=$BUILD/compare-${T}t-$CLOCK
cd "$(dirname "$0")/.."

# Build the two programs in their own configuration directory.
# shellcheck disable=SC2086
make -s BUILD="$BUILD" ${MAKEFLAGS_EXTRA:-} "$BUILD/bench/bench_gemm" "$BUILD/bench/bench_conv" >&2
mkdir -p "$OUT"

# Same thread count everywhere: our OpenMP + OpenBLAS, torch's intra-op pool.
export MCLIP_THREADS="$T" OMP_NUM_THREADS="$T" OPENBLAS_NUM_THREADS="$T"

echo "== running (threads $T, clock $CLOCK); raw outputs in $OUT" >&2
"$BUILD/bench/bench_conv" --list > "$OUT/shapes.txt"
"$BUILD/bench/bench_gemm" --threads "$T" --clock "$CLOCK" > "$OUT/c_gemm.txt"
"$BUILD/bench/bench_conv" --threads "$T" --clock "$CLOCK" > "$OUT/c_conv.txt"
"$PYTHON" bench/torch_ops.py --threads "$T" --clock "$CLOCK" --shapes "$OUT/shapes.txt" \
    > "$OUT/torch.txt"

# Banners of both sides.
grep '^#' "$OUT/c_conv.txt" | grep -E 'cpu|threads|clock|blas|isa|compiler|cflags|commit'
grep '^#' "$OUT/torch.txt" | grep -E 'torch |threads|clock'
echo

# GEMM table: ag_linear vs raw sgemm vs torch, medians in ms.
awk '
    FNR == 1 { side++ }
    $1 == "gemm" { ms[side, $2, $3] = $4; key[$3] = 1 }
    END {
        printf "| K x N | ag_linear fwd ms | raw sgemm ms | op/raw | torch F.linear ms | torch/C |"
        printf " ag bwd-x ms | raw ms | op/raw | torch addmm ms | torch/C |\n"
        printf "|---|---|---|---|---|---|---|---|---|---|---|\n"
        n = split("512x512 512x2048 2048x512", order, " ")
        for (i = 1; i <= n; i++) {
            k = order[i]
            lf = ms[1, "linear_fwd", k]; rf = ms[1, "raw_fwd", k]; tf = ms[2, "linear_fwd", k]
            lb = ms[1, "linear_bwdx", k]; rb = ms[1, "raw_bwdx", k]; tb = ms[2, "linear_bwdx", k]
            printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                   k, lf, rf, rf / lf, tf, tf / lf, lb, rb, rb / lb, tb, tb / lb
        }
    }' "$OUT/c_gemm.txt" "$OUT/torch.txt"
echo

# Conv tables: one row per shape and batch, medians (min) in ms; kind
# "conv" = forward, "convx" = d x with frozen weights.
conv_table() {
    awk -v kind="$1" -v tkind="total${1#conv}" '
        FNR == 1 { side++ }
        $1 == kind {
            k = $2 " " $3
            if (side == 1) { order[++n] = k; path[k] = $4; c[k] = $5; cmin[k] = $6; cg[k] = $7;
                             uses[k] = $8; form[k] = $9 }
            else { t[k] = $5; tmin[k] = $6; tg[k] = $7 }
        }
        $1 == tkind { tot[side, $3] = $5; bs[$3] = 1 }
        END {
            printf "| shape | N | form | uses | C path | C ms (min) | C GFLOP/s | torch ms (min) |"
            printf " torch GFLOP/s | torch/C |\n"
            printf "|---|---|---|---|---|---|---|---|---|---|\n"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, p, " ")
                printf "| %s | %s | %s | %s | %s ", p[1], p[2], form[k], uses[k], path[k]
                printf "| %.3f (%.3f) | %.1f | %.3f (%.3f) | %.1f | %.2f |\n",
                       c[k], cmin[k], cg[k], t[k], tmin[k], tg[k], t[k] / c[k]
            }
            total = "| **fused S0 convs: sum of uses x median** | %s | | | | %.2f | | %.2f |"
            total = total " | %.2f |\n"
            for (nb in bs)
                printf total, nb, tot[1, nb], tot[2, nb], tot[2, nb] / tot[1, nb]
        }' "$OUT/c_conv.txt" "$OUT/torch.txt"
}

echo "### conv forward"
conv_table conv
echo
echo "### conv d-input (weights frozen)"
conv_table convx
