# Thin wrapper over CMake. `make help` lists the targets.
SHELL := /bin/bash
comma := ,
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 30
CMAKE_FLAGS ?=

.PHONY: all cpu blas cuda test test-asan fuzz clean help

all: cpu

define build
	cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=$(2) $(3) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(1) -j $(JOBS)
endef

define link_binaries
	@for b in voxtral voxtral-bench; do \
	  if [ -x $(1)/src/$$b ]; then ln -sf $(1)/src/$$b $$b; fi; done
endef

cpu:  ## CPU engine with the built-in matrix kernels only
	$(call build,build,Release,-DVOXTRAL_BLAS=OFF -DVOXTRAL_CUDA=OFF -DVOXTRAL_TESTS=ON)
	$(call link_binaries,build)

blas:  ## CPU engine with OpenBLAS (faster encoder and prefill)
	$(call build,build,Release,-DVOXTRAL_BLAS=ON -DVOXTRAL_CUDA=OFF -DVOXTRAL_TESTS=ON)
	$(call link_binaries,build)

cuda:  ## CUDA backend (with the OpenBLAS CPU backend beside it)
	@echo "make cuda: the CUDA backend is not yet available (it comes with the CUDA backend issue)." >&2
	@exit 1

test:  ## build with OpenBLAS and run the CPU test suite
	$(call build,build,Release,-DVOXTRAL_BLAS=ON -DVOXTRAL_CUDA=OFF -DVOXTRAL_TESTS=ON -DVOXTRAL_WERROR=ON)
	$(call link_binaries,build)
	cd build && ctest -L cpu --output-on-failure -j $(JOBS)

test-asan:  ## the CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer
	$(call build,build-asan,Debug,-DVOXTRAL_BLAS=ON -DVOXTRAL_TESTS=ON -DVOXTRAL_SANITIZE=address$(comma)undefined -DVOXTRAL_WERROR=ON)
	cd build-asan && ctest -L cpu --output-on-failure -j $(JOBS)

fuzz:  ## build the libFuzzer targets with clang and run each for FUZZ_SECONDS
	CC=clang CXX=clang++ $(call build,build-fuzz,RelWithDebInfo,-DVOXTRAL_FUZZ=ON -DVOXTRAL_TESTS=OFF -DVOXTRAL_SANITIZE=address$(comma)undefined)
	@set -eo pipefail; for f in build-fuzz/fuzz/fuzz_*; do \
	  name=$$(basename $$f); mkdir -p build-fuzz/corpus/$$name; \
	  echo "== $$name for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -max_len=65536 \
	      build-fuzz/corpus/$$name fuzz/seeds/$$name 2>&1 | tail -n 12; \
	done

clean:  ## remove every build directory and the binary links
	rm -rf build build-asan build-fuzz voxtral voxtral-bench

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'
