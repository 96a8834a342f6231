# mclip - MobileCLIP2 and prompt learning in plain C.
#
#   make                 libmclip.a and the mclip binary
#   make test            build and run every program in tests/
#   make BLAS=0 test     same, with the plain-C GEMM instead of OpenBLAS
#   make sanitize        the whole suite under ASan + UBSan
#   make check-long      slower tests (long runs, kill -9 loops)
#   make check-reference regenerate full-size fixtures with PyTorch and check them
#   make bench           build bench/ programs and print numbers
#   make fuzz            libFuzzer harnesses (clang), FUZZ_SECONDS each
#   make fuzz-smoke      the same for FUZZ_SMOKE_SECONDS each (CI)
#   make valgrind        the whole suite under valgrind (slow)
#   make info            what was detected
#
# Knobs: CC, CFLAGS, BLAS=0|1, OMP=0|1, SIMD=auto|scalar, NATIVE=0|1,
#        SAN=0|1, JPEG=own|stb|libjpeg, BUILD=dir.  Objects go to build/<config>/ so that
#        configurations never mix.

CC     ?= cc
BLAS   ?= 1
OMP    ?= 1
SIMD   ?= auto
NATIVE ?= 0
SAN    ?= 0
JPEG   ?= own
ARCH   ?= $(shell $(CC) -dumpmachine | cut -d- -f1)

# ---- aarch64 cross build ----
# `make ARCH=aarch64` (or CC=aarch64-linux-gnu-gcc) on a host that is not
# aarch64 cross-compiles with Debian's gcc-aarch64-linux-gnu against the
# arm64 sysroot that tests/aarch64/sysroot.sh unpacks into SYSROOT (made on
# first use); `make test-aarch64` runs the suite under qemu-aarch64 (see the
# end of this file).  On an aarch64 board nothing here applies: plain `make`.
ifeq ($(ARCH),aarch64)
ifneq ($(shell uname -m),aarch64)
  CROSS       := 1
  SYSROOT     ?= build/aarch64-sysroot
  SYSROOT_ABS := $(abspath $(SYSROOT))
  SYSROOT_LIB := $(SYSROOT_ABS)/usr/lib/aarch64-linux-gnu
  ifeq ($(origin CC),default)
    CC := aarch64-linux-gnu-gcc
  endif
  ifeq ($(origin AR),default)
    AR := aarch64-linux-gnu-ar
  endif
  # --sysroot in CC itself, so that every compile, link and `make info`
  # probe sees the arm64 headers and libraries.
  override CC := $(CC) --sysroot=$(SYSROOT_ABS)
  ARCHFLAGS := -I$(SYSROOT_ABS)/usr/include/aarch64-linux-gnu/openblas-pthread
  LDFLAGS  += -L$(SYSROOT_LIB) -L$(SYSROOT_LIB)/openblas-pthread \
              -Wl,-rpath-link=$(SYSROOT_LIB):$(SYSROOT_ABS)/lib/aarch64-linux-gnu
endif
# GCC 12.2 for aarch64 (Debian bookworm, native and cross) stops with an
# internal compiler error (vect_transform_reduction) when it vectorises a
# max/min reduction of widened floats, d = fmax(d, fabs(a[i] - b[i])) with
# double d and float a, b, as tests do; fmax and fmin as library calls avoid
# it.  (ARCHFLAGS joins CPPFLAGS, which every compile line has.)
ifeq ($(shell $(CC) -dumpversion 2>/dev/null),12)
  ARCHFLAGS += -fno-builtin-fmax -fno-builtin-fmin
endif
endif

CONFIG := $(ARCH)-blas$(BLAS)-omp$(OMP)-$(SIMD)$(if $(filter 1,$(NATIVE)),-native)$(if $(filter 1,$(SAN)),-san)$(if $(filter libjpeg,$(JPEG)),-libjpeg)$(if $(filter stb,$(JPEG)),-stbjpeg)
BUILD  ?= build/$(CONFIG)

OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -Wall -Wextra -Wno-unused-parameter
CPPFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -I. -Ithird_party $(ARCHFLAGS)
LDLIBS   := -lz -lm -lpthread

ifeq ($(BLAS),1)
  CPPFLAGS += -DMCLIP_BLAS $(if $(CROSS),,$(shell pkg-config --cflags openblas 2>/dev/null))
  LDLIBS   += -lopenblas
endif
# JPEG=own (default): datasets/jpeg.c, bit-exact with PIL's libjpeg-turbo;
# JPEG=libjpeg links libjpeg-turbo itself (also reads arithmetic coding);
# JPEG=stb decodes JPEG with stb_image (within a few levels of PIL).
ifeq ($(JPEG),libjpeg)
  CPPFLAGS += -DMCLIP_LIBJPEG
  LDLIBS   += -ljpeg
endif
ifeq ($(JPEG),stb)
  CPPFLAGS += -DMCLIP_JPEG_STB
endif
ifeq ($(OMP),1)
  CFLAGS += -fopenmp
  LDFLAGS += -fopenmp
endif
ifeq ($(SIMD),scalar)
  CPPFLAGS += -DMC_SIMD_SCALAR
endif
ifeq ($(NATIVE),1)
  CFLAGS += -march=native
endif
ifeq ($(SAN),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

# stb_image_write's JPEG bit writer shifts a signed int past its range
# (harmless in practice, undefined in C), so its one translation unit is
# built without UBSan's shift check.
$(BUILD)/datasets/stb_image_write_impl.o: CFLAGS += -fno-sanitize=shift

# Library sources: every .c under the layer folders except program mains
# (files named main.c) and per-ISA kernel sources (tensor/isa/).
LIBDIRS  := tensor autograd nn mobileclip coop datasets
LIBSRC   := $(filter-out %/main.c, $(wildcard $(addsuffix /*.c,$(LIBDIRS))))
LIBOBJ   := $(LIBSRC:%.c=$(BUILD)/%.o)

# Per-ISA kernels: each tensor/isa/*.c is compiled once per instruction set
# the target has, with MC_ISA naming the variant; tensor/ dispatches at run
# time (x86-64: scalar, avx2, avx512; aarch64: scalar, neon).
ISASRC   := $(wildcard tensor/isa/*.c)
ifeq ($(ARCH),x86_64)
  ISAS := scalar avx2 avx512
else ifeq ($(ARCH),aarch64)
  ISAS := scalar neon
else
  ISAS := scalar
endif
ifeq ($(SIMD),scalar)
  ISAS := scalar
endif
ISAFLAGS_scalar :=
ISAFLAGS_avx2   := -mavx2 -mfma -mf16c
ISAFLAGS_avx512 := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c
ISAFLAGS_neon   :=
ISAOBJ   := $(foreach isa,$(ISAS),$(ISASRC:%.c=$(BUILD)/%.$(isa).o))
CPPFLAGS += $(foreach isa,$(ISAS),-DMC_HAVE_ISA_$(isa))

LIB      := $(BUILD)/libmclip.a
BIN      := $(BUILD)/mclip
MAINSRC  := coop/main.c

TESTSRC  := $(wildcard tests/test_*.c)
TESTBIN  := $(TESTSRC:tests/%.c=$(BUILD)/tests/%)
TESTHELP := $(wildcard tests/util/*.c)
TESTHOBJ := $(TESTHELP:%.c=$(BUILD)/%.o)
BENCHSRC := $(wildcard bench/bench_*.c)
BENCHBIN := $(BENCHSRC:bench/%.c=$(BUILD)/bench/%)

.SECONDARY:
.PHONY: all test sanitize check-long check-reference bench info clean help debug fixtures

all: $(LIB) $(BIN) mclip

# A stable path for the binary of the default configuration.
mclip: $(BIN)
	@$(if $(CROSS),:,ln -sf $(BIN) mclip)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c $< -o $@

$(foreach isa,$(ISAS),$(eval $(BUILD)/%.$(isa).o: %.c ; @mkdir -p $$(dir $$@) && $(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(ISAFLAGS_$(isa)) -DMC_ISA=$(isa) -MMD -MP -c $$< -o $$@))

$(LIB): $(LIBOBJ) $(ISAOBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BIN): $(BUILD)/coop/main.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c $(TESTHOBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) $< $(TESTHOBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -DMC_CFLAGS='"$(strip $(CFLAGS))"' $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Run every test program; tests/run.sh prints one line per program and a
# closing "N passed, N failed" line, and fails if any failed.
test: $(TESTBIN) $(BIN)
	@MCLIP_BIN=$(BIN) sh tests/run.sh $(TESTBIN)

sanitize:
	$(MAKE) SAN=1 BLAS=$(BLAS) test

check-long: $(TESTBIN) $(BIN)
	@MCLIP_BIN=$(BIN) MCLIP_LONG=1 sh tests/run.sh $(TESTBIN)

check-reference: $(TESTBIN) $(BIN)
	@MCLIP_BIN=$(BIN) sh tests/reference/check.sh

bench: $(BENCHBIN) $(BIN)
	@for b in $(BENCHBIN); do echo "== $$b"; $$b || exit 1; done

debug:
	$(MAKE) SAN=1 OPT=-O0 all

info:
	@echo "mclip build configuration"
	@echo "  CC       $(CC) ($(shell $(CC) -dumpversion))"
	@echo "  ARCH     $(ARCH)"
	@echo "  CFLAGS   $(CFLAGS)"
	@echo "  BUILD    $(BUILD)"
	@echo "  ISAs     $(ISAS)"
	@if [ "$(BLAS)" = 1 ]; then \
	  if echo 'int main(void){return 0;}' | $(CC) -x c - -lopenblas -o /dev/null 2>/dev/null; \
	  then echo "  BLAS     ✓ OpenBLAS"; else echo "  BLAS     ✗ OpenBLAS not found (apt-get install libopenblas-dev, or BLAS=0)"; fi; \
	else echo "  BLAS     ✗ off (plain-C GEMM)"; fi
	@if [ "$(OMP)" = 1 ] && echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null; \
	  then echo "  OpenMP   ✓"; else echo "  OpenMP   ✗"; fi
	@if echo '#include <stb/stb_image.h>' | $(CC) -E -x c - >/dev/null 2>&1; \
	  then echo "  stb      ✓ /usr/include/stb"; else echo "  stb      ✗ (apt-get install libstb-dev)"; fi
	@if echo '#include <zlib.h>' | $(CC) -E -x c - >/dev/null 2>&1; \
	  then echo "  zlib     ✓"; else echo "  zlib     ✗ (apt-get install zlib1g-dev)"; fi
	@if [ -f ../shared/clip/bpe_simple_vocab_16e6.txt.gz ]; \
	  then echo "  BPE      ✓ ../shared/clip/bpe_simple_vocab_16e6.txt.gz"; \
	  else echo "  BPE      ✗ ../shared/clip/ missing (weights/download.sh fetches the vocabulary)"; fi

help:
	@sed -n '3,19p' Makefile | sed 's/^# \{0,1\}//'

clean:
	rm -rf build mclip

# ---- aarch64: the suite under qemu ----
# make test-aarch64 [BLAS=0]   every test program, cross-built, under
#                              qemu-aarch64 -L SYSROOT (the mclip binary that
#                              tests spawn goes through tests/aarch64/mclip.sh)
# make test-aarch64-ci         the subset CI runs (AARCH64_CI below)
# make check-long              also runs test-aarch64 on a non-aarch64 host
#                              when the cross compiler and qemu are installed
#                              (and says so when they are not)
# On an aarch64 host these run natively.  QEMU="qemu-aarch64 -cpu cortex-a72"
# emulates a given core; AARCH64_ENV="VAR=value" adds to the environment.
QEMU       ?= qemu-aarch64
# Programs for CI: all but the four slowest under emulation (test_text,
# test_resume, test_retrieval, test_coop: about 100x their native time
# each), which test-aarch64 and check-long run.  New programs join the CI
# subset; one that takes minutes under qemu belongs in this list.
AARCH64_CI ?= $(filter-out test_text test_resume test_retrieval test_coop, \
                $(TESTSRC:tests/%.c=%))
.PHONY: test-aarch64 test-aarch64-ci aarch64-run aarch64-long
test-aarch64:
	@$(MAKE) --no-print-directory ARCH=aarch64 aarch64-run
test-aarch64-ci:
	@$(MAKE) --no-print-directory ARCH=aarch64 aarch64-run \
	  AARCH64_RUN='$(AARCH64_CI:%=$$(BUILD)/tests/%)'
ifneq ($(shell uname -m),aarch64)
check-long: aarch64-long
endif
aarch64-long:
	@if command -v aarch64-linux-gnu-gcc >/dev/null && command -v $(firstword $(QEMU)) >/dev/null; \
	then $(MAKE) --no-print-directory test-aarch64 BUILD=$(BUILD)-aarch64; \
	else echo "check-long: the aarch64 suite under qemu NOT run: apt-get install" \
	  "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"; fi
AARCH64_RUN ?= $(TESTBIN)
ifdef CROSS
  AARCH64_VARS = MCLIP_RUNNER="$(QEMU) -L $(SYSROOT_ABS)" MCLIP_TARGET_BIN=$(abspath $(BIN)) \
                 MCLIP_BIN=$(abspath tests/aarch64/mclip.sh)
else
  AARCH64_VARS = MCLIP_BIN=$(BIN)
endif
aarch64-run: $(AARCH64_RUN) $(BIN)
	@echo "aarch64 suite: $(if $(CROSS),$(QEMU) -L $(SYSROOT),native), BLAS=$(BLAS), ISAs $(ISAS)"
	@$(AARCH64_VARS) $(AARCH64_ENV) sh tests/run.sh $(AARCH64_RUN)
ifdef CROSS
# The sysroot comes before anything is compiled.
$(LIBOBJ) $(ISAOBJ) $(TESTHOBJ) $(BUILD)/coop/main.o $(TESTBIN) $(BENCHBIN): \
  | $(SYSROOT)/lib/ld-linux-aarch64.so.1
$(SYSROOT)/lib/ld-linux-aarch64.so.1:
	sh tests/aarch64/sysroot.sh $(SYSROOT)
endif

# ---- fuzzing and valgrind (tests/fuzz/README.md) ----
# Harnesses tests/fuzz/fuzz_*.c are built with clang (FUZZ_CC) into
# build/fuzz/ against a library compiled with ASan + UBSan and coverage
# (no BLAS, no OpenMP); tests/fuzz/run.sh runs them one after another.
FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_BUILD         := build/fuzz
FUZZ_BIN           := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))
VALGRIND           ?= valgrind --error-exitcode=1 --leak-check=full --track-origins=yes \
                      --suppressions=tests/valgrind.supp
.PHONY: fuzz fuzz-smoke fuzz-build valgrind

fuzz-build:
	@$(MAKE) --no-print-directory CC=$(FUZZ_CC) BUILD=$(FUZZ_BUILD) BLAS=0 OMP=0 SAN=1 \
	  JPEG=own OPT="-O1 -fsanitize=fuzzer-no-link -DMC_EXACT_ALLOC" $(FUZZ_BIN)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_BUILD)/libmclip.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) -fsanitize=fuzzer $< $(LIB) $(LDLIBS) -o $@

fuzz: fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

# VALGRIND_TESTS: program names (test_malformed ...), default every test.
# valgrind runs one thread at a time, so OpenMP's spinning barrier waits
# would burn whole time slices: the suite runs with passive waits.
VALGRIND_TESTS     ?= $(TESTSRC:tests/%.c=%)
valgrind: $(VALGRIND_TESTS:%=$(BUILD)/tests/%) $(BIN)
	@OMP_WAIT_POLICY=passive MCLIP_BIN=$(BIN) MCLIP_RUNNER="$(VALGRIND)" \
	  sh tests/run.sh $(VALGRIND_TESTS:%=$(BUILD)/tests/%)

-include $(LIBOBJ:.o=.d) $(ISAOBJ:.o=.d) $(TESTHOBJ:.o=.d)
