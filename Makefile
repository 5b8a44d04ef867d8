# sigma: build libsigma, the tools, the tests; CPU-only where nvcc is absent.
#
#   make            libsigma and every tool into bin/
#   make test       -Werror build, all tests, then again under ASan + UBSan
#   make test-gpu   GPU tests (needs nvcc and a GPU)
#   make demo       the demo pipeline (pipelines/demo.mk)
#   make dedup-demo about 2 GB of real text through the dedup stages and
#                   tokenization with make -j2, beside one process
#                   (pipelines/dedup-demo.mk; minutes, gigabytes of disk)
#   make balance-study  the report's load-balance study at toy scale
#                   (pipelines/balance-study.mk; SCALE=, JOBS=)
#   make sft        chat data from WordNet and the man pages, a model pretrained
#                   and fine-tuned on it, both asked held-out questions
#                   (pipelines/sft.mk)
#   make bench      benchmarks beside their peers (bench/)
#   make install    PREFIX=/usr/local: tools and man pages
#   make cuda-check compile a kernel with the project's CUDA flags
#   make fuzz       every libFuzzer target (tests/fuzz) for FUZZ_S seconds each
#
#   make deps       install the Debian packages sigma needs (scripts/deps)
#
# Variables: O (object dir, default build), BINDIR (default bin), SAN=1 for
# AddressSanitizer + UBSan, WERROR=1, NO_OPENMP=1, NO_BLAS=1, NO_MPI=1, CC, NVCC,
# PREFIX, DESTDIR; FUZZ=1 (what `make fuzz` sets: clang, libFuzzer, ASan and
# UBSan, die() returning to the fuzz target), FUZZ_S; LIBKERNELS=0 (the CUDA
# core without cuDNN's attention and CUTLASS's expert products, whose
# headers scripts/gpu-libs fetches from the Python package registry).

O       ?= build
BINDIR  ?= bin
PREFIX  ?= /usr/local
CC      ?= cc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -Ilib -MMD -MP
LDLIBS  += -lzstd -lxxhash -lcjson -lutf8proc -lm -lpthread
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
# The fuzz build (tests/fuzz/README.md): the library compiled by clang with
# the fuzzer's coverage, ASan and UBSan, single-threaded, without CUDA or
# BLAS, and with -DSIGMA_FUZZ (die() returns to the target).
ifeq ($(FUZZ),1)
CC        := clang
CFLAGS    += -DSIGMA_FUZZ -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
NO_OPENMP := 1
NO_BLAS   := 1
NO_MPI    := 1
NVCC      :=
endif

CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
LIBKERNELS ?= 1
LIBK_EXT   ?= build/ext

# ---- dependency detection (printed once, like llm.c) -----------------------
# Plain `make` never installs anything: it names what is missing and how to
# get it. `make deps`, `make test` and `make demo` install it first (apt-get
# as root, through scripts/deps). The '#' comes from a variable: GNU Make
# 4.3 keeps a backslash before '#' inside a function call, older ones drop
# it, and "\#include" reaches the preprocessor as no error at all.
HASH := \#
have_header = $(shell printf '$(HASH)include <$(1)>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo yes)
REQUIRED_HEADERS := zstd.h xxhash.h cjson/cJSON.h utf8proc.h
missing_headers = $(foreach h,$(REQUIRED_HEADERS),$(if $(call have_header,$(h)),,$(h)))
INSTALLING_GOALS := deps check-deps test demo dedup-demo balance-study sft clean have-header fuzz
ifneq ($(MAKECMDGOALS),clean)
  ifeq ($(filter $(INSTALLING_GOALS),$(MAKECMDGOALS)),)
    ifneq ($(strip $(missing_headers)),)
      $(error missing $(strip $(missing_headers)): run 'make deps' (as root it installs them; else it prints the apt-get line))
    endif
  endif
  ifeq ($(NO_OPENMP),1)
    CFLAGS  += -Wno-unknown-pragmas
    $(info ✗ OpenMP off (NO_OPENMP=1): building single-threaded)
  else ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo yes),yes)
    CFLAGS  += -fopenmp
    LDFLAGS += -fopenmp
    $(info ✓ OpenMP found)
  else
    CFLAGS  += -Wno-unknown-pragmas
    $(info ✗ OpenMP not found: building single-threaded)
  endif
  ifeq ($(NO_BLAS),1)
    $(info ✗ OpenBLAS off (NO_BLAS=1): own matrix kernels)
  else ifeq ($(call have_header,cblas.h),yes)
    CFLAGS += -DSIGMA_BLAS
    LDLIBS += -lopenblas
    $(info ✓ OpenBLAS found)
  else
    $(info ✗ OpenBLAS not found: own matrix kernels)
  endif
  # MPI (Open MPI's mpicc names its flags): runs of many processes under
  # mpirun or srun (comm/comm.h); without it, one process a run
  MPI_CFLAGS := $(if $(filter 1,$(NO_MPI)),,$(shell mpicc --showme:compile 2>/dev/null))
  ifeq ($(NO_MPI),1)
    $(info ✗ MPI off (NO_MPI=1): one process a run)
  else ifneq ($(MPI_CFLAGS),)
    CFLAGS += -DSIGMA_MPI $(MPI_CFLAGS)
    LDLIBS += $(shell mpicc --showme:link)
    $(info ✓ MPI found (mpicc): runs of many processes under mpirun or srun)
  else
    $(info ✗ MPI not found (libopenmpi-dev): one process a run)
  endif
  ifneq ($(NVCC),)
    $(info ✓ nvcc found at $(NVCC): CUDA sources compiled for sm_90 + PTX)
    ifeq ($(LIBKERNELS),0)
      $(info ✗ library kernels off (LIBKERNELS=0): no cuDNN attention, no CUTLASS experts)
    else ifeq ($(wildcard $(CUDA_HOME)/include/cudnn.h),)
      $(info ✓ CUTLASS experts (sm_90a; headers by scripts/gpu-libs into $(LIBK_EXT)); ✗ no cuDNN attention: no cudnn.h in $(CUDA_HOME)/include)
    else
      $(info ✓ cuDNN attention and CUTLASS experts (headers by scripts/gpu-libs into $(LIBK_EXT); libcudnn.so.9 loaded at run time))
    endif
  else
    $(info ✗ nvcc not found: CPU-only build)
  endif
endif

NVCCFLAGS ?= -O3 -std=c++17 -lineinfo -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
             -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -Ilib
ifeq ($(WERROR),1)
NVCCFLAGS += -Werror all-warnings -Xcompiler -Werror
endif

# ---- sources -----------------------------------------------------------------
LIB_SRC   := $(sort $(wildcard lib/*/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(O)/%.o)
CUDA_SRC  := $(sort $(wildcard lib/cuda/*.cu))
# The CUDA core goes into the tools when nvcc is here, except in the
# sanitizer build (ASan and the CUDA runtime do not mix): there, and without
# nvcc, --device cuda says the build has no CUDA. The runtime is linked
# statically and cuBLAS found through the run path, so the tools start on a
# machine without a GPU driver and fall back to the CPU.
ifneq ($(NVCC),)
ifneq ($(CUDA_SRC),)
ifneq ($(SAN),1)
LIB_OBJ   += $(CUDA_SRC:%.cu=$(O)/%.o)
CFLAGS    += -DSIGMA_CUDA
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lnccl -lcudart_static -ldl -lrt -lstdc++
endif
endif
endif
TOOL_SRC  := $(sort $(wildcard bin/sigma*.c))
TOOLS     := $(TOOL_SRC:bin/%.c=$(BINDIR)/%)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNITS     := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
TEST_HELP := $(sort $(wildcard tests/helpers/*.c))
HELPERS   := $(TEST_HELP:tests/helpers/%.c=$(O)/tests/%)
LIBSIGMA  := $(O)/libsigma.a

.PHONY: fuzz fuzz-targets all test test-suite test-gpu gpu-progs test-interop demo dedup-demo balance-study sft bench install uninstall clean cuda-check check-deps deps have-header build-variants
.DEFAULT_GOAL := all

all: $(TOOLS)

$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(O)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# The library kernels (lib/cuda/cudnn_attention.cu, cutlass_experts.cu)
# compile against headers that scripts/gpu-libs fetches, pinned, from the
# Python package registry into LIBK_EXT (build/ext, never the repository);
# with LIBKERNELS=0 or without the headers they compile as stubs that say
# so, and the model takes the other paths. CUTLASS's kernels use sm_90a's
# TMA and warpgroup MMA: compiled for sm_90a alone (no PTX: 90a code runs
# on sm_90 only), with NDEBUG (a device assert's call would serialise the
# warpgroup MMA). cuDNN's side has no device code: the host compiler takes
# it, at -O1 (it builds graphs, a few times a run), about half nvcc's time.
ifeq ($(LIBKERNELS),1)
ifneq ($(NVCC),)
$(LIBK_EXT)/stamp: scripts/gpu-libs
	scripts/gpu-libs $(LIBK_EXT)
CUTLASS_NVCCFLAGS = $(filter-out -gencode arch=%,$(NVCCFLAGS)) -gencode arch=compute_90a,code=sm_90a -DNDEBUG -DSIGMA_CUTLASS \
                    -isystem $(LIBK_EXT)/cutlass/include
$(O)/lib/cuda/cutlass_experts.o: lib/cuda/cutlass_experts.cu lib/cuda/cutlass_experts.h lib/cuda/route_plan.h $(LIBK_EXT)/stamp
	@mkdir -p $(@D)
	$(NVCC) $(CUTLASS_NVCCFLAGS) -c $< -o $@
ifneq ($(wildcard $(CUDA_HOME)/include/cudnn.h),)
CUDNN_CXXFLAGS = -std=c++17 -O1 -DNDEBUG -Wall -Wextra -Wno-unused-parameter $(if $(filter 1,$(WERROR)),-Werror) -Ilib \
                 -I$(CUDA_HOME)/include -isystem $(LIBK_EXT)/cudnn-frontend/include -DSIGMA_CUDNN
$(O)/lib/cuda/cudnn_attention.o: lib/cuda/cudnn_attention.cu lib/cuda/cudnn_attention.h lib/cuda/sdpa_plan.h $(LIBK_EXT)/stamp
	@mkdir -p $(@D)
	$(CXX) $(CUDNN_CXXFLAGS) -x c++ -c $< -o $@
endif
endif
endif

$(LIBSIGMA): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# the tools that reach a model through the device table (model/device.h)
# hold the CUDA core and link CUDA's libraries
DEVICE_TOOLS := sigma-pretrain sigma-sft sigma-eval sigma-generate
$(BINDIR)/%: $(O)/bin/%.o $(LIBSIGMA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $< $(LIBSIGMA) $(LDLIBS) $(if $(filter $(DEVICE_TOOLS),$(@F)),$(CUDA_LDLIBS)) -o $@

$(O)/tests/%: $(O)/tests/unit/%.o $(LIBSIGMA)
	$(CC) $(LDFLAGS) $< $(LIBSIGMA) $(LDLIBS) -o $@

# test_model_fd beside the model compiled a second time with float as double
# (tests/unit/fd_double.c): objcopy keeps only its fd_* functions global, so
# its copies of the model's functions never meet libsigma's.
$(O)/tests/unit/fd_double.o: tests/unit/fd_double.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MT $@ -c $< -o $@.all
	objcopy -w --keep-global-symbol='fd_*' $@.all $@
	@rm -f $@.all
$(O)/tests/test_model_fd: $(O)/tests/unit/test_model_fd.o $(O)/tests/unit/fd_double.o $(LIBSIGMA)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/tests/%: $(O)/tests/helpers/%.o $(LIBSIGMA)
	$(CC) $(LDFLAGS) $< $(LIBSIGMA) $(LDLIBS) -o $@
# ep_check opens the processes' collectives (comm.h), which bring NCCL in a CUDA build
$(O)/tests/ep_check: $(O)/tests/helpers/ep_check.o $(LIBSIGMA)
	$(CC) $(LDFLAGS) $< $(LIBSIGMA) $(LDLIBS) $(CUDA_LDLIBS) -o $@

# GPU programs (tests/gpu/*.c, *.cu): the GPU-against-CPU tests and the benchmark.
GPU_SRC   := $(sort $(wildcard tests/gpu/*.c tests/gpu/*.cu))
GPU_PROGS := $(patsubst tests/gpu/%.cu,$(O)/tests/%,$(GPU_SRC:tests/gpu/%.c=$(O)/tests/%))
$(O)/tests/%: $(O)/tests/gpu/%.o $(LIBSIGMA)
	$(CC) $(LDFLAGS) $< $(LIBSIGMA) $(LDLIBS) $(CUDA_LDLIBS) -o $@

# The GPU tests built for the host against a CPU emulation of the CUDA and
# cuBLAS they use (tests/emu/cuda_emu.h), so that `make test` checks the
# CUDA core's logic on machines without a GPU: the hand-written kernels
# against their references, and the whole CUDA model against the CPU's.
ifneq ($(CUDA_LDLIBS),)
EMU_TESTS := $(O)/tests/grouped_emu $(O)/tests/attention_emu $(O)/tests/gpu_check_emu $(O)/tests/kv_check_emu
EMU_PROGS := $(O)/tests/sigma-pretrain-emu $(O)/tests/sigma-sft-emu $(O)/tests/sigma-eval-emu $(O)/tests/sigma-generate-emu \
             $(O)/tests/ep_check_emu   # for tests/pretrain_emu.t, sft.t, eval.t, generate_emu.t, parallel.t
EMU_OBJ   := $(CUDA_SRC:%.cu=$(O)/emu/%.o)
EMU_FLAGS := -std=c++17 -O2 -g -U_FORTIFY_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas \
             $(if $(filter 1,$(WERROR)),-Werror) -include tests/emu/cuda_emu.h -include tests/emu/nccl_emu.h -Ilib \
             -I$(CUDA_HOME)/include $(if $(MPI_CFLAGS),-DSIGMA_MPI -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX $(MPI_CFLAGS))
$(O)/emu/%.o: %.cu tests/emu/cuda_emu.h tests/emu/nccl_emu.h $(wildcard lib/cuda/*.cuh lib/cuda/*.h)
	@mkdir -p $(@D)
	$(CXX) $(EMU_FLAGS) -x c++ -c $< -o $@
$(O)/emu/tests/gpu_check.o: tests/gpu/gpu_check.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DSIGMA_EMU -c $< -o $@
$(O)/tests/grouped_emu: tests/gpu/grouped_check.cu tests/gpu/bank_check.h $(O)/emu/lib/cuda/grouped.o
$(O)/tests/attention_emu: tests/gpu/attention_check.cu tests/gpu/bank_check.h $(O)/emu/lib/cuda/flash.o
$(O)/emu/tests/kv_check.o: tests/gpu/kv_check.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DSIGMA_EMU -c $< -o $@
$(O)/emu/tests/ep_check.o: tests/helpers/ep_check.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DSIGMA_EMU -c $< -o $@
$(O)/tests/gpu_check_emu: $(O)/emu/tests/gpu_check.o $(EMU_OBJ)
$(O)/tests/ep_check_emu: $(O)/emu/tests/ep_check.o $(EMU_OBJ)
$(O)/tests/kv_check_emu: $(O)/emu/tests/kv_check.o $(EMU_OBJ)
$(O)/tests/sigma-pretrain-emu: $(O)/bin/sigma-pretrain.o $(EMU_OBJ)
$(O)/tests/sigma-sft-emu: $(O)/bin/sigma-sft.o $(EMU_OBJ)
$(O)/tests/sigma-eval-emu: $(O)/bin/sigma-eval.o $(EMU_OBJ)
$(O)/tests/sigma-generate-emu: $(O)/bin/sigma-generate.o $(EMU_OBJ)
$(EMU_TESTS) $(EMU_PROGS): tests/emu/cuda_emu.h $(wildcard lib/cuda/*.cuh lib/cuda/*.h) $(LIBSIGMA)
	@mkdir -p $(@D)
	$(CXX) $(EMU_FLAGS) $(if $(filter %.cu,$^),-x c++ $(filter %.cu,$^) -x none) $(filter %.o,$^) $(LDFLAGS) $(LIBSIGMA) \
	    $(LDLIBS) -o $@
endif

# ---- tests -------------------------------------------------------------------
# One runner (prove, TAP) over the C unit tests and the tool tests; the same
# suite runs twice: a -Werror build, then an ASan + UBSan build.
TALLY := build/test-tally
test: check-deps
	@mkdir -p build && rm -f $(TALLY)
	@if [ -n "$(NVCC)" ]; then $(MAKE) --no-print-directory WERROR=1 cuda-check; fi
	$(MAKE) --no-print-directory build-variants
	$(MAKE) WERROR=1 SIGMA_TEST_TALLY=$(abspath $(TALLY)) test-suite
	$(MAKE) WERROR=1 SAN=1 O=build/san BINDIR=build/san/bin SIGMA_TEST_TALLY=$(abspath $(TALLY)) test-suite
	@awk '{p+=$$1; f+=$$2; s+=$$3} END {print "all tests, plain and under ASan+UBSan:"; print p " passed, " f " failed, " s " skipped"; exit f > 0}' $(TALLY)

test-suite: $(TOOLS) $(UNITS) $(HELPERS) $(EMU_TESTS) $(EMU_PROGS)
	SIGMA_SAN=$(SAN) SIGMA_TEST_TALLY=$(SIGMA_TEST_TALLY) SIGMA_BIN=$(abspath $(BINDIR)) SIGMA_TESTBIN=$(abspath $(O)/tests) tests/run $(UNITS) $(EMU_TESTS)

# ---- fuzzing -------------------------------------------------------------------
# Each target for FUZZ_S seconds, one at a time, from its seed corpus
# (tests/fuzz/corpus/TARGET, kept small and committed) into a working corpus
# under build/fuzz/corpus; a crash is saved as build/fuzz/crash-TARGET-*.
FUZZ_S       ?= 30
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_TARGETS := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
fuzz: check-deps
	@command -v clang >/dev/null || { echo "make fuzz: clang is missing (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	$(MAKE) --no-print-directory FUZZ=1 O=build/fuzz BINDIR=build/fuzz/bin fuzz-targets
	tests/fuzz/run $(FUZZ_S) $(FUZZ_TARGETS)

fuzz-targets: $(FUZZ_TARGETS)
build/fuzz/fuzz_%: build/fuzz/tests/fuzz/fuzz_%.o build/fuzz/tests/fuzz/common.o $(LIBSIGMA)
	$(CC) -fsanitize=fuzzer,address,undefined $^ $(LDLIBS) -o $@

check-deps deps:
	@scripts/deps

# `make -s have-header H=x.h` prints yes or no: the detection above, for tests/build.t
have-header:
	@echo $(if $(call have_header,$(H)),yes,no)

# The build without OpenMP (single-threaded) and without BLAS still compiles
# and links: the options the Makefile offers are kept working.
build-variants:
	$(MAKE) --no-print-directory O=build/variant BINDIR=build/variant/bin NO_OPENMP=1 NO_BLAS=1 NO_MPI=1 NVCC= WERROR=1 all

# sigma-export's directories in transformers, torch and safetensors (from pip,
# which make test does not need): pip install torch transformers safetensors
# It also recomputes sigma-eval's reference (tests/fixtures/eval) with
# transformers, in place, and checks sigma-eval against it (tests/eval.t).
test-interop: $(TOOLS) $(HELPERS)
	SIGMA_BIN=$(abspath $(BINDIR)) SIGMA_TESTBIN=$(abspath $(O)/tests) tests/run -- tests/interop/run.py
	SIGMA_BIN=$(abspath $(BINDIR)) SIGMA_TESTBIN=$(abspath $(O)/tests) python3 tests/make_eval_fixtures.py --reuse-model
	SIGMA_BIN=$(abspath $(BINDIR)) SIGMA_TESTBIN=$(abspath $(O)/tests) tests/run -- tests/eval.t

# The CUDA core against the CPU (gpu_check) and sigma-pretrain --device cuda
# (tests/gpu/*.t); needs nvcc and a GPU. `make gpu-progs` only builds them.
gpu-progs: all $(GPU_PROGS) $(HELPERS) cuda-check

test-gpu: gpu-progs
	@if ! nvidia-smi >/dev/null 2>&1; then echo "test-gpu: no GPU visible (nvidia-smi failed)"; exit 1; fi
	SIGMA_BIN=$(abspath $(BINDIR)) SIGMA_TESTBIN=$(abspath $(O)/tests) tests/run $(O)/tests/grouped_check $(O)/tests/attention_check $(O)/tests/gpu_check \
	    $(O)/tests/kv_check \
	    -- tests/gpu/*.t

# Proves the CUDA path: a small kernel compiled with the project's flags, run
# only when a GPU is visible.
cuda-check:
	@if [ -z "$(NVCC)" ]; then echo "cuda-check: nvcc not found"; exit 1; fi
	@mkdir -p $(O)/tests
	$(NVCC) $(NVCCFLAGS) tests/cuda/check.cu -o $(O)/tests/cuda-check
	@if nvidia-smi >/dev/null 2>&1; then $(O)/tests/cuda-check; else echo "cuda-check: compiled (no GPU here to run it)"; fi

demo: check-deps
	$(MAKE) --no-print-directory all
	$(MAKE) -f pipelines/demo.mk SIGMA_BIN=$(abspath $(BINDIR))

dedup-demo: check-deps
	$(MAKE) --no-print-directory all
	$(MAKE) -f pipelines/dedup-demo.mk SIGMA_BIN=$(abspath $(BINDIR))

# the runs two at a time, a thread each (JOBS=1 THREADS=2 for one at a time)
JOBS ?= 2
balance-study: check-deps
	$(MAKE) --no-print-directory all
	$(MAKE) -j$(JOBS) -f pipelines/balance-study.mk SIGMA_BIN=$(abspath $(BINDIR))

sft: check-deps
	$(MAKE) --no-print-directory all
	$(MAKE) -f pipelines/sft.mk SIGMA_BIN=$(abspath $(BINDIR))

bench: all $(HELPERS) $(if $(CUDA_LDLIBS),$(GPU_PROGS))
	SIGMA_BIN=$(abspath $(BINDIR)) SIGMA_TESTBIN=$(abspath $(O)/tests) bench/run

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(notdir $(TOOLS)))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man1/,$(notdir $(wildcard man/*.1)))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man5/,$(notdir $(wildcard man/*.5)))

clean:
	rm -rf build $(TOOLS)

.SECONDARY:
-include $(shell find $(O) -name '*.d' 2>/dev/null)
