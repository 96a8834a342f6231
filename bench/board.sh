#!/bin/sh
# board.sh - the numbers a board owner reports, in one run, with a block
# ready to paste into bench/RESULTS.md.  Runs natively on aarch64 boards and
# on x86-64 alike (POSIX sh, awk; /usr/bin/time -v for peak RSS if present).
#
#   sh bench/board.sh [-b MCLIP] [-t THREADS] [-m "S0 S2 ..."] [-n IMAGES]
#                     [-k PROMPTS] [-s STEPS] [-c CACHE]
#
#   -b  the mclip binary (default: $MCLIP_BIN, else ./mclip)
#   -t  threads (default: what `mclip info` reports, i.e. all cores)
#   -m  model sizes to try (default: S0 S2 S3 S4 B L-14)
#   -n  images per timed run (default 8), -k class prompts (default 32),
#   -s  CoOp steps (default 3; 0 skips the CoOp step), -c cache folder for
#       generated files (default: build/board-cache)
#
# What is measured (every time is wall clock, after the model is loaded):
#   ms / image    `mclip embed --image` on -n copies of one small PNG of the
#                 demo data, divided by -n (decode, resize to the model's
#                 input, image tower);
#   ms / prompt   `mclip embed --text` on -k prompts "a photo of a <name>."
#                 (tokenizer and text tower), divided by -k;
#   peak RSS      of that whole embed process (model, weights, activations);
#   CoOp step     `mclip coop train --demo --steps -s` (forward and backward
#                 through the text tower for every class prompt, one batch of
#                 cached image features, one AdamW step): ms_per_step of its
#                 results JSON, and that process's peak RSS;
#   threads, ISA path, BLAS as `mclip info` prints them.
# Models: weights/MobileCLIP2-<X>/open_clip_model.safetensors when downloaded
# (weights/download.sh; "trained"), otherwise, for S0 only, the RANDOM-WEIGHT
# S0 of the same shape that `mclip coop train --demo` writes into its cache
# ("random": speed and memory are those of the real model, outputs are
# meaningless).  Sizes with neither are listed as not measured.
set -eu

bin=${MCLIP_BIN:-./mclip}
threads=""
models="S0 S2 S3 S4 B L-14"
n_img=8
n_txt=32
steps=3
cache=build/board-cache
while getopts b:t:m:n:k:s:c: o; do
    case $o in
    b) bin=$OPTARG ;;
    t) threads=$OPTARG ;;
    m) models=$OPTARG ;;
    n) n_img=$OPTARG ;;
    k) n_txt=$OPTARG ;;
    s) steps=$OPTARG ;;
    c) cache=$OPTARG ;;
    *) sed -n '6,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
if [ ! -x "$bin" ]; then
    echo "board.sh: $bin is not an executable mclip binary (make, or -b PATH)" >&2
    exit 1
fi
mkdir -p "$cache"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mclip-board.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
if [ -n "$threads" ]; then
    export MCLIP_THREADS="$threads" OMP_NUM_THREADS="$threads"
    topt="--threads $threads"
else
    topt=""
fi

# ---- the build and the machine ----
info=$("$bin" info 2>&1) || { echo "board.sh: $bin info failed: $info" >&2; exit 1; }
field() { printf '%s\n' "$info" | awk -v k="$1" '$1 == k { $1 = ""; sub(/^ +/, ""); print; exit }'; }
isa=$(field SIMD | awk '{print $1}')
blas=$(field BLAS)
nthr=$(field threads)
compiler=$(field compiler)
board=""
[ -r /proc/device-tree/model ] && board=$(tr -d '\0' < /proc/device-tree/model)
if [ -z "$board" ]; then
    board=$(awk -F': *' '/^(model name|Model name|Hardware)/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
fi
[ -n "$board" ] || board="unknown board"
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo "?")
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || echo "?")
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
arch=$(uname -m)
echo "board     $board ($arch, $cores cores, $mem)"
echo "mclip     $bin (git $rev), compiler $compiler"
echo "path      ISA $isa, BLAS $blas, threads $nthr"

# Peak RSS in MiB of the command that wrote the /usr/bin/time -v log $1.
have_time=0
[ -x /usr/bin/time ] && /usr/bin/time -v true >/dev/null 2>&1 && have_time=1
run_timed() {  # run_timed LOG CMD...: stdout to LOG.out, stderr and rusage to LOG.err
    log=$1; shift
    if [ $have_time = 1 ]; then
        /usr/bin/time -v -o "$log.rss" "$@" > "$log.out" 2> "$log.err"
    else
        "$@" > "$log.out" 2> "$log.err"
    fi
}
peak_mib() {
    if [ -f "$1.rss" ]; then
        awk -F': *' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1.rss"
    else
        printf 'n/a'
    fi
}

# ---- CoOp step (also writes the random-weight S0) ----
coop_ms="n/a"; coop_rss="n/a"; coop_note="no 'coop' command in this binary"
if [ "$steps" = 0 ]; then
    coop_note="skipped (-s 0)"
elif "$bin" help 2>&1 | grep -q '^ *coop '; then
    echo "coop      mclip coop train --demo --steps $steps ..."
    # shellcheck disable=SC2086
    if run_timed "$tmp/coop" "$bin" coop train --demo --cache "$cache" --steps "$steps" \
                 --eval-every 1000000 $topt; then
        coop_ms=$(awk -F': *' '/"ms_per_step"/ { sub(/,$/, "", $2); printf "%.1f", $2 }' \
                  "$tmp/coop.out")
        coop_rss=$(peak_mib "$tmp/coop")
        ncls=$(awk -F': *' '/"classes"/ { sub(/,$/, "", $2); print $2 }' "$tmp/coop.out")
        coop_note="demo: random-weight S0, $ncls classes, batch 32, M 16"
    else
        coop_note="coop train --demo failed (see below)"
        tail -n 5 "$tmp/coop.err" | sed 's/^/    | /'
    fi
fi

# ---- a test picture (any decodable image works; one from the demo data) ----
img=$(find "$cache" -name '*.png' 2>/dev/null | head -n 1 || true)
[ -n "$img" ] || img=$(ls tests/fixtures/images/*.png 2>/dev/null | head -n 1 || true)

# Class prompts.
i=0
: > "$tmp/prompts.txt"
for c in dog cat car bird truck ship horse deer frog airplane tree flower house boat \
         chair table lamp cup bottle phone clock book shoe hat guitar piano bicycle bus \
         train apple banana orange; do
    [ $i -lt "$n_txt" ] || break
    echo "a photo of a $c." >> "$tmp/prompts.txt"
    i=$((i + 1))
done
while [ $i -lt "$n_txt" ]; do echo "a photo of class $i." >> "$tmp/prompts.txt"; i=$((i + 1)); done

# ---- per model: ms / image, ms / prompt, peak RSS ----
rows=""
for m in $models; do
    f="weights/MobileCLIP2-$m/open_clip_model.safetensors"
    kind=trained
    if [ ! -f "$f" ]; then
        f=$(ls "$cache"/random-MobileCLIP2-"$m"-*.safetensors 2>/dev/null | head -n 1 || true)
        kind=random
    fi
    if [ -z "$f" ] || [ ! -f "$f" ]; then
        echo "model     $m: not measured (no weights/MobileCLIP2-$m; random weights only for S0)"
        rows="$rows| $m | - | not measured | | |
"
        continue
    fi
    imgs=""
    if [ -n "$img" ]; then
        j=0
        while [ $j -lt "$n_img" ]; do imgs="$imgs $img"; j=$((j + 1)); done
    fi
    echo "model     $m ($kind weights): embed $n_img images, $n_txt prompts ..."
    # shellcheck disable=SC2086
    if run_timed "$tmp/emb-$m" "$bin" embed --model "$f" --out "$tmp/emb-$m.safetensors" \
                 --text-file "$tmp/prompts.txt" ${imgs:+--image $imgs} $topt; then
        # "... N texts, ..., X ms (...); M images (...), ..., Y ms (...)"
        ms_txt=$(awk -v n="$n_txt" 'match($0, /texts, [^;]*, [0-9.]+ ms/) {
                     s = substr($0, RSTART, RLENGTH); sub(/ ms$/, "", s); sub(/.*, /, "", s);
                     printf "%.2f", s / n }' "$tmp/emb-$m.out")
        ms_img=$(awk -v n="$n_img" 'match($0, /images[^;]*, [0-9.]+ ms/) {
                     s = substr($0, RSTART, RLENGTH); sub(/ ms$/, "", s); sub(/.*, /, "", s);
                     printf "%.1f", s / n }' "$tmp/emb-$m.out")
        rss=$(peak_mib "$tmp/emb-$m")
        [ -n "$ms_img" ] || ms_img="n/a"
        [ -n "$ms_txt" ] || ms_txt="n/a"
        echo "          $ms_img ms/image, $ms_txt ms/prompt, peak RSS $rss MiB"
        rows="$rows| $m | $kind | $ms_img | $ms_txt | $rss |
"
    else
        echo "          embed failed:"
        tail -n 5 "$tmp/emb-$m.err" | sed 's/^/    | /'
        rows="$rows| $m | $kind | failed | | |
"
    fi
done

# ---- the block for bench/RESULTS.md ----
echo
echo "---- paste into bench/RESULTS.md ----"
echo "### $board, $(date +%Y-%m-%d)"
echo
echo "$arch, $cores cores, $mem; mclip git $rev, compiler $compiler; ISA $isa, BLAS $blas," \
     "$nthr threads; $n_img images (small PNG resized to the model input)," \
     "$n_txt prompts per run; wall-clock times after the model is loaded."
echo
echo "| model | weights | ms / image | ms / prompt | peak RSS MiB |"
echo "|---|---|---|---|---|"
printf '%s' "$rows"
echo
if [ "$coop_ms" = n/a ]; then
    echo "CoOp step: not measured ($coop_note)."
else
    echo "CoOp step ($coop_note): $coop_ms ms / step, peak RSS $coop_rss MiB."
fi
