#!/bin/sh
# compare_towers.sh - the S0 text and image towers in C (bench_text,
# bench_image) and in PyTorch (bench/torch_towers.py), same machine, same
# thread count, run back to back and interleaved for ROUNDS rounds, then
# a side-by-side table with ratios.
#
# Usage: bench/compare_towers.sh [threads]          (default 2)
# Environment: BUILD (default build/bench), PYTHON (default /usr/bin/python3),
#   MCLIP_REFENV (default /work/refenv), ROUNDS (default 3), REPS (runs per
#   program and round, default 5; text: TEXT_REPS, default 3),
#   MAKEFLAGS_EXTRA (extra make arguments), and OMP_WAIT_POLICY, passed to
#   both sides as set (see bench/RESULTS.md: on a loaded machine "passive"
#   avoids OpenMP's busy barrier waits in torch and in C alike).
#
# Steps: build; write the random-weight fp16 checkpoint once
# ($BUILD/models/random-S0.safetensors, bench_text --write-model); PyTorch
# writes reference outputs that both C programs check (--ref) before timing;
# then each round runs torch text, C text, torch image, C image.  Raw
# outputs stay in $BUILD/towers-<threads>t/ for bench/RESULTS.md.
#
# Table: per measure, the median over rounds of each round's median, and
# the minimum over all runs; "C/torch" = C median / torch median (< 1 means
# C is faster; the targets are <= 0.6 for the text embedding and <= 0.5
# for the image forward).  CPU ms = median process CPU time per run.
set -eu

T=${1:-2}
BUILD=${BUILD:-build/bench}
PYTHON=${PYTHON:-/usr/bin/python3}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-5}
TEXT_REPS=${TEXT_REPS:-3}
export MCLIP_REFENV="${MCLIP_REFENV:-/work/refenv}"
OUT=$BUILD/towers-${T}t
MODEL=$BUILD/models/random-S0.safetensors
cd "$(dirname "$0")/.."

# shellcheck disable=SC2086
make -s BUILD="$BUILD" ${MAKEFLAGS_EXTRA:-} "$BUILD/bench/bench_text" "$BUILD/bench/bench_image" >&2
mkdir -p "$OUT" "$BUILD/models"
[ -f "$MODEL" ] || "$BUILD/bench/bench_text" --write-model "$MODEL"

# Same thread count everywhere: our OpenMP, OpenBLAS, torch's intra-op pool.
export MCLIP_THREADS="$T" OMP_NUM_THREADS="$T" OPENBLAS_NUM_THREADS="$T"

echo "== reference outputs (PyTorch) -> $OUT/ref.safetensors" >&2
"$PYTHON" bench/torch_towers.py --model "$MODEL" --ref-out "$OUT/ref.safetensors" >&2
rm -f "$OUT"/*.round*
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "== round $r of $ROUNDS (threads $T, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset})" >&2
    "$PYTHON" bench/torch_towers.py --model "$MODEL" --tower text --threads "$T" \
        --reps "$TEXT_REPS" > "$OUT/torch_text.round$r"
    "$BUILD/bench/bench_text" --model "$MODEL" --threads "$T" --reps "$TEXT_REPS" \
        --ref "$OUT/ref.safetensors" > "$OUT/c_text.round$r"
    "$PYTHON" bench/torch_towers.py --model "$MODEL" --tower image --threads "$T" \
        --reps "$REPS" > "$OUT/torch_image.round$r"
    "$BUILD/bench/bench_image" --model "$MODEL" --threads "$T" --reps "$REPS" \
        --ref "$OUT/ref.safetensors" > "$OUT/c_image.round$r"
    r=$((r + 1))
done

# Banners of both sides, the validation lines.
grep '^#' "$OUT/c_image.round1" | grep -E 'cpu|threads|blas|isa|compiler|cflags|commit'
grep '^#' "$OUT/torch_image.round1" | grep -E 'torch |threads|env'
grep -h '^check' "$OUT"/c_*.round*
echo

# One row per measure: key = tower + what (+ batch).  Fields of a result
# line: tower what [N] median min [cpu X] ...; rss lines: tower rss_mb [N] value.
summarise() {
    awk '
        function key(   k) { k = $1 " " $2; if ($2 == "fwd" || ($2 == "rss_mb" && NF == 4)) k = k " " $3; return k }
        function num(i) { return $(i) + 0 }
        FNR == 1 { side = FILENAME ~ /torch_/ ? "t" : "c" }
        /^#/ || /^check/ { next }
        $1 != "text" && $1 != "image" { next }
        {
            k = key(); o = ($2 == "fwd" || ($2 == "rss_mb" && NF == 4)) ? 4 : 3
            if (!(k in seen)) { seen[k] = 1; order[++n] = k }
            if ($2 == "rss_mb") { v = num(o); if (v > rss[side, k]) rss[side, k] = v; next }
            cnt[side, k]++; med[side, k, cnt[side, k]] = num(o)
            if (!((side, k) in mn) || num(o + 1) < mn[side, k]) mn[side, k] = num(o + 1)
            if ($(o + 2) == "cpu") { cc[side, k]++; cpu[side, k, cc[side, k]] = num(o + 3) }
        }
        function median(side, k, arr, c,   i, j, t, a) {
            for (i = 1; i <= c; i++) a[i] = arr[side, k, i]
            for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
        }
        END {
            print "| measure | C median ms (min) | C CPU ms | torch median ms (min) | torch CPU ms | C/torch |"
            print "|---|---|---|---|---|---|"
            for (i = 1; i <= n; i++) {
                k = order[i]
                if (k ~ /rss_mb/) {
                    rr = rss["t", k] ? sprintf("%.2f", rss["c", k] / rss["t", k]) : ""
                    printf "| %s peak RSS MiB | %.0f | | %.0f | | %s |\n", k, rss["c", k], rss["t", k], rr
                    continue
                }
                cm = cnt["c", k] ? median("c", k, med, cnt["c", k]) : -1
                tm = cnt["t", k] ? median("t", k, med, cnt["t", k]) : -1
                ccpu = cc["c", k] ? sprintf("%.1f", median("c", k, cpu, cc["c", k])) : ""
                tcpu = cc["t", k] ? sprintf("%.1f", median("t", k, cpu, cc["t", k])) : ""
                cs = cm >= 0 ? sprintf("%.1f (%.1f)", cm, mn["c", k]) : "-"
                ts = tm >= 0 ? sprintf("%.1f (%.1f)", tm, mn["t", k]) : "-"
                ratio = cm > 0 && tm > 0 ? sprintf("%.2f", cm / tm) : ""
                printf "| %s | %s | %s | %s | %s | %s |\n", k, cs, ccpu, ts, tcpu, ratio
            }
        }' "$@"
}
summarise "$OUT"/c_text.round* "$OUT"/torch_text.round* "$OUT"/c_image.round* \
    "$OUT"/torch_image.round*
echo
echo "rounds $ROUNDS, runs per round: text $TEXT_REPS, image $REPS; raw outputs in $OUT"
