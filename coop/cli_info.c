// cli_info.c - `mclip info`: the build and run-time configuration.
#include <stdio.h>

#include "cli.h"
#include "../tensor/gemm.h"
#include "../tensor/simd.h"
#include "../tensor/tensor.h"

int cli_info(int argc, char **argv) {
    (void)argc, (void)argv;
    printf("mclip\n");
    printf("  threads  %d\n", mc_threads());
    printf("  BLAS     %s\n", mc_blas_enabled() ? "OpenBLAS" : "plain C");
    printf("  SIMD     %s (MCLIP_ISA=scalar|avx2|avx512|neon overrides)\n", mc_isa_name());
#ifdef __VERSION__
    printf("  compiler %s\n", __VERSION__);
#endif
    return 0;
}
