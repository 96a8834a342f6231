#!/bin/sh
# check.sh - regenerate full-size reference fixtures with PyTorch + open_clip
# and compare the C engine with them (`make check-reference`).
#
# Needs: MCLIP_REFENV pointing at a folder with the open_clip, timm and ftfy
# sources (see tests/reference/refcommon.py), Debian's python3-torch, and
# MCLIP_BIN (set by make) next to the built tests/ programs.  Outputs go to
# tests/reference/out/ (git-ignored).  Each step prints one line; the exit
# status is non-zero when anything is missing or any comparison fails.
#
# Add a step: write a function `step_<name>` below and list it in STEPS.
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=tests/reference/out
PY=${PYTHON:-/usr/bin/python3}
BIN=${MCLIP_BIN:-}
TESTS=$(dirname "${BIN:-build/x/mclip}")/tests

# ---- prerequisites ----
missing=""
[ -n "${MCLIP_REFENV:-}" ] || missing="$missing
  MCLIP_REFENV is not set (point it at the folder holding open_clip/, timm/ and ftfy/,
  e.g. MCLIP_REFENV=/work/refenv make check-reference)"
[ -n "$BIN" ] && [ -x "$BIN" ] || missing="$missing
  MCLIP_BIN is not an executable mclip binary (run through make check-reference)"
if [ -n "${MCLIP_REFENV:-}" ]; then
    err=$(cd tests/reference && "$PY" -c "import refcommon; refcommon.setup()" 2>&1 >/dev/null) ||
        missing="$missing
  $PY cannot import torch + open_clip from MCLIP_REFENV=$MCLIP_REFENV:
  $(echo "$err" | tail -n 1)
  (apt-get install python3-torch python3-regex python3-wcwidth python3-pil)"
fi
if [ -n "$missing" ]; then
    echo "check-reference: cannot run, missing:$missing" >&2
    exit 1
fi
mkdir -p "$OUT"

# ---- steps ----

# Full-size MobileCLIP2-S0 text tower: 12 layers, vocabulary 49408, every
# activation row, compared by tests/test_text.c.
step_text_s0() {
    "$PY" tests/reference/gen_text.py --full-s0 --out "$OUT" >"$OUT/gen_text.log" 2>&1 ||
        { tail -n 20 "$OUT/gen_text.log"; return 1; }
    MCLIP_TEXT_FIXTURE="$OUT/text_s0_full.safetensors" "$TESTS/test_text"
}

# Full-size MobileCLIP2-S0, S2 and B image towers (two images each): every
# stage, timm's fused embedding and the input gradient, in both the training
# and the fused form, compared by tests/test_image_tower.c.
step_image() {
    "$PY" tests/reference/gen_image.py --full --out "$OUT" >"$OUT/gen_image.log" 2>&1 ||
        { tail -n 20 "$OUT/gen_image.log"; return 1; }
    fx="$OUT/image_s0_full.safetensors:$OUT/image_s2_full.safetensors"
    MCLIP_IMAGE_FIXTURES="$fx:$OUT/image_b_full.safetensors" "$TESTS/test_image_tower" \
        >"$OUT/image_all.log" 2>&1
    rc=$?
    # Summary: the full-size embeddings and input gradients (all lines in image_all.log).
    grep -E "^MobileCLIP2.*(embed|d input|fused vs|FAIL)|checks" "$OUT/image_all.log"
    return $rc
}

STEPS="text_s0 image"

fail=0
for s in $STEPS; do
    echo "== check-reference: $s"
    if "step_$s" >"$OUT/$s.log" 2>&1; then
        echo "ok   $s"
        grep -E "max rel|pooled positions" "$OUT/$s.log" | sed 's/^/    /'
    else
        echo "FAIL $s (log $OUT/$s.log)"
        tail -n 30 "$OUT/$s.log" | sed 's/^/    | /'
        fail=1
    fi
done
exit $fail
