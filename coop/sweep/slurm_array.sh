#!/bin/bash
# slurm_array.sh - the CoOp sweep of Makefile.sweep as a Slurm job array:
# array task i runs the i-th (model, dataset, k, seed) of the grid with
# coop/sweep/run_one.sh (the same command as the Makefile), and skips it
# when its results JSON already exists.
#
#   MODELS="S0" DATASETS="flowers102 dtd" SHOTS="1 2 4 8 16" SEEDS="1 2 3" \
#   ROOT=/data OUT=results \
#   sbatch --array=0-$(($(coop/sweep/slurm_array.sh --count) - 1)) coop/sweep/slurm_array.sh
#
#   coop/sweep/slurm_array.sh --count   number of runs in the grid
#   coop/sweep/slurm_array.sh --list    "index model dataset k seed json", one a line
#
# Submit from the project root (sbatch keeps the working directory, and
# exports the environment).  Grid order: model, dataset, k, seed (seed
# fastest), as Makefile.sweep lists its runs.  Settings as in
# Makefile.sweep, from the environment: MODELS DATASETS SHOTS SEEDS ROOT OUT
# MCLIP CACHE THREADS (default: the task's CPUs) TRAIN_FLAGS EVAL_FLAGS
# PROMPT, and MODEL_<name> for a model given as a checkpoint file (as in
# Makefile.sweep; "." and "-" in the name become "_": MODEL_L_14).
# The #SBATCH --array below fits the default grid (1 x 2 x 5 x 3 = 30 runs);
# the command line's --array replaces it.  Afterwards:
#   mclip sweep summary results --csv results/summary.csv --svg results/chart.svg
#SBATCH --job-name=mclip-coop-sweep
#SBATCH --array=0-29
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%A_%a.out
set -eu

MODELS=${MODELS:-S0}
DATASETS=${DATASETS:-flowers102 dtd}
SHOTS=${SHOTS:-1 2 4 8 16}
SEEDS=${SEEDS:-1 2 3}
OUT=${OUT:-results}
OUT=${OUT%/}

# The grid, one run per line: index model dataset k seed json.
grid() {
    local i=0 m d k s
    for m in $MODELS; do
        for d in $DATASETS; do
            for k in $SHOTS; do
                for s in $SEEDS; do
                    echo "$i $m $d $k $s $OUT/$m/$d/k$k/seed$s.json"
                    i=$((i + 1))
                done
            done
        done
    done
}

case ${1:-} in
    --count) grid | wc -l; exit 0 ;;
    --list) grid; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--count | --list]  (under sbatch: no arguments)" >&2; exit 2 ;;
esac

id=${SLURM_ARRAY_TASK_ID:?"not an array task: submit with sbatch --array=0-N (see the top of $0)"}
line=$(grid | awk -v id="$id" '$1 == id')
if [ -z "$line" ]; then
    echo "$0: task $id is outside the grid of $(grid | wc -l) runs" >&2
    exit 2
fi
read -r _ model dataset k seed json <<<"$line"
if [ -e "$json" ]; then
    echo "$json exists: run $model $dataset k=$k seed=$seed already done"
    exit 0
fi
mf=MODEL_$model
mf=${mf//[.-]/_}
export MODEL_FILE=${!mf:-}
export THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-}}
echo "task $id: $model $dataset k=$k seed=$seed -> $json (host $(hostname))"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Under sbatch the script runs from a spool copy: find run_one.sh from the
# submission folder then.
runner=$here/run_one.sh
[ -f "$runner" ] || runner=${SLURM_SUBMIT_DIR:-.}/coop/sweep/run_one.sh
sh "$runner" "$model" "$dataset" "$k" "$seed" "$json"
