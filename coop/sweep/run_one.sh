#!/bin/sh
# run_one.sh - one run of a CoOp sweep: train a prompt on (model, dataset,
# k shots, seed), evaluate it on the test split, and write one results JSON.
#
#   coop/sweep/run_one.sh MODEL DATASET K SEED OUT.json
#
# Used by coop/sweep/Makefile.sweep (one make target per run) and
# coop/sweep/slurm_array.sh (one array task per run); both pass settings in
# the environment:
#   MCLIP        the mclip binary (default: the plain `make` build,
#                build/<arch>-blas1-omp1-auto/mclip)
#   ROOT         folder holding one folder per dataset: ROOT/DATASET is
#                given to --root (the layout is detected, as `mclip data`)
#   MODEL_FILE   checkpoint to use instead of the model name (a name such as
#                S0 resolves to weights/MobileCLIP2-S0/open_clip_model.safetensors)
#   CACHE        feature / few-shot cache folder (default: mclip's own)
#   THREADS      --threads for each mclip call (empty: all cores)
#   TRAIN_FLAGS  extra `mclip coop train` options (e.g. --epochs 50 --batch 16)
#   EVAL_FLAGS   extra `mclip coop eval` options
#   PROMPT       which prompt is tested: last (default; the paper keeps the
#                last prompt) or best (best val accuracy)
#
# Files next to OUT.json (OUT = OUT.json without .json): OUT.prompt (best on
# val), OUT.last.prompt, OUT.train.json, OUT.test.json, OUT.log (stderr).
# OUT.json is written last, atomically, so its presence means the run is
# complete:
#   {"format": "mclip-sweep-run-1", "model": "S0", "dataset": "dtd",
#    "shots": "4", "seed": 1, "prompt": "last",
#    "train": {...mclip coop train JSON...}, "test": {...mclip coop eval JSON...}}
# k = 0 (zero-shot) has no prompt to learn and is refused.  Training runs
# with --resume: a run killed part way (a preempted Slurm task) continues
# from its checkpoint OUT.prompt.ckpt; after changing TRAIN_FLAGS remove
# the old checkpoints (the trainer refuses another configuration's).
set -eu

if [ $# -ne 5 ]; then
    echo "usage: $0 MODEL DATASET K SEED OUT.json" >&2
    exit 2
fi
model=$1 dataset=$2 k=$3 seed=$4 out=$5
MCLIP=${MCLIP:-build/$(uname -m)-blas1-omp1-auto/mclip}
ROOT=${ROOT:-data}
PROMPT=${PROMPT:-last}

# Names go into JSON unquoted-safe: letters, digits, '.', '_', '-' only.
for v in "$model" "$dataset" "$k" "$seed"; do
    case $v in
        ''|*[!A-Za-z0-9._-]*) echo "$0: '$v': use letters, digits, '.', '_' and '-'" >&2
                              exit 2 ;;
    esac
done
case $seed in *[!0-9]*) echo "$0: seed '$seed' is not a number" >&2; exit 2 ;; esac
case $k in
    0) echo "$0: k = 0 is zero-shot (no prompt to learn): use mclip zeroshot" >&2; exit 2 ;;
    all) ;;
    *[!0-9]*) echo "$0: k '$k': expected a number of shots or 'all'" >&2; exit 2 ;;
esac
case $PROMPT in
    last|best) ;;
    *) echo "$0: PROMPT=$PROMPT: expected last or best" >&2; exit 2 ;;
esac

base=${out%.json}
mkdir -p "$(dirname "$out")"
m=${MODEL_FILE:-$model}
set --
[ -n "${CACHE:-}" ] && set -- "$@" --cache "$CACHE"
[ -n "${THREADS:-}" ] && set -- "$@" --threads "$THREADS"
test_prompt=$base.prompt
[ "$PROMPT" = last ] && test_prompt=$base.last.prompt

# Train on the k-shot split (the train JSON reports val accuracy).
# shellcheck disable=SC2086
"$MCLIP" coop train --model "$m" --dataset "$dataset" --root "$ROOT/$dataset" \
    --shots "$k" --seed "$seed" --out "$base.prompt" --out-last "$base.last.prompt" --resume \
    "$@" ${TRAIN_FLAGS:-} >"$base.train.json" 2>"$base.log" || {
    echo "$0: training $model $dataset k=$k seed=$seed failed; see $base.log" >&2
    tail -n 3 "$base.log" >&2
    exit 1
}
# Test accuracy of the chosen prompt.
# shellcheck disable=SC2086
"$MCLIP" coop eval --model "$m" --dataset "$dataset" --root "$ROOT/$dataset" \
    --shots "$k" --prompt "$test_prompt" --split test "$@" ${EVAL_FLAGS:-} \
    >"$base.test.json" 2>>"$base.log" || {
    echo "$0: testing $model $dataset k=$k seed=$seed failed; see $base.log" >&2
    tail -n 3 "$base.log" >&2
    exit 1
}
for f in "$base.train.json" "$base.test.json"; do
    [ -s "$f" ] || { echo "$0: $f is empty; see $base.log" >&2; exit 1; }
done
# One results JSON, written atomically.
tmp=$out.tmp.$$
printf '{"format": "mclip-sweep-run-1", "model": "%s", "dataset": "%s", "shots": "%s", ' \
    "$model" "$dataset" "$k" >"$tmp"
printf '"seed": %s, "prompt": "%s", "train": %s, "test": %s}\n' "$seed" "$PROMPT" \
    "$(cat "$base.train.json")" "$(cat "$base.test.json")" >>"$tmp"
mv "$tmp" "$out"
echo "$out: test accuracy $(sed -n 's/.*"accuracy": \([^,}]*\).*/\1/p' "$base.test.json")" >&2
