#!/bin/sh
# Run the libFuzzer harnesses one after another (the machine is shared:
# never in parallel).  Usage: sh tests/fuzz/run.sh BUILD_DIR SECONDS [name...]
# (names without fuzz_; default every harness built in BUILD_DIR).
#
# Each harness starts from its seeds, tests/fuzz/corpus/<name>/ and
# tests/fuzz/regressions/<name>/ (read only), and grows a working corpus in
# BUILD_DIR/corpus/<name>/ that later runs reuse.  Crashing inputs go to
# BUILD_DIR/artifacts/.  One line per harness: executions, coverage (cov:
# edges, ft: features, libFuzzer's final numbers) and corpus size; the
# exit status is non-zero when any harness failed.
set -u
dir=$1; secs=$2; shift 2
names="$*"
if [ -z "$names" ]; then
    for b in "$dir"/fuzz_*; do
        [ -x "$b" ] && names="$names ${b##*/fuzz_}"
    done
fi
mkdir -p "$dir/artifacts"
fail=0
for n in $names; do
    mkdir -p "$dir/corpus/$n"
    seeds=""
    for s in tests/fuzz/corpus/$n tests/fuzz/regressions/$n; do
        [ -d "$s" ] && seeds="$seeds $s"
    done
    log="$dir/fuzz_$n.log"
    # The checkpoint harness adds checkpoints of the current format to its
    # working corpus; -timeout: one input taking 25 s is a hang;
    # -rss_limit_mb: 2 GiB.
    FUZZ_CHECKPOINT_SEEDS="$dir/corpus/$n" "$dir/fuzz_$n" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/$n-" \
        "$dir/corpus/$n" $seeds > "$log" 2>&1
    rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    execs=$(grep '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$done_line" | sed -n 's/.*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p')
    if [ $rc -eq 0 ]; then
        printf 'ok   fuzz_%-14s %4ss  execs %-9s cov %-6s ft %-7s corpus %s\n' "$n" "$secs" \
            "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
    else
        fail=$((fail + 1))
        printf 'FAIL fuzz_%-14s rc %s (log %s)\n' "$n" "$rc" "$log"
        { grep -E '^fuzz_|ERROR|SUMMARY|contract broken|Test unit written' "$log" ||
          tail -n 5 "$log"; } | head -n 8 | sed 's/^/    | /'
    fi
done
[ "$fail" -eq 0 ]
