#!/bin/sh
# Run test programs one by one from the project root; print a line per
# program with its time, then a closing "N passed, N failed" line.
# Exit status is non-zero when any program failed.
# MCLIP_RUNNER, when set, prefixes each program (e.g. "qemu-aarch64 -L DIR"
# for a cross-built suite; see make test-aarch64).
pass=0; fail=0; failed=""
for t in "$@"; do
    start=$(date +%s.%N)
    if ${MCLIP_RUNNER:-} "$t" > "$t.log" 2>&1; then
        status=ok; pass=$((pass + 1))
    else
        status=FAIL; fail=$((fail + 1)); failed="$failed $t"
    fi
    end=$(date +%s.%N)
    printf '%-4s %-40s %6.2fs\n' "$status" "$(basename "$t")" "$(awk "BEGIN{print $end - $start}")"
    if [ "$status" = FAIL ]; then tail -n 30 "$t.log" | sed 's/^/    | /'; fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
