#!/bin/sh
# mclip.sh - stands in for the mclip binary (MCLIP_BIN) when the suite runs
# under emulation: test programs spawn it as they would spawn mclip, and it
# runs the cross-built binary MCLIP_TARGET_BIN under MCLIP_RUNNER (for
# example "qemu-aarch64 -L build/aarch64-sysroot").  `make test-aarch64`
# sets both variables.
if [ -z "${MCLIP_TARGET_BIN:-}" ]; then
    echo "tests/aarch64/mclip.sh: MCLIP_TARGET_BIN is not set (run through make test-aarch64)" >&2
    exit 127
fi
exec ${MCLIP_RUNNER:-} "$MCLIP_TARGET_BIN" "$@"
