# Thin wrapper over CMake. `make help` lists the targets.
SHELL := /bin/bash
comma := ,
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 30
# Ampere, Ada, Hopper machine code plus PTX for newer GPUs; e.g. CUDA_ARCHS=90-real for a quick H100-only build.
CUDA_ARCHS ?= 80-real;86-real;89-real;90-real;90-virtual
CMAKE_FLAGS ?=
# `make` and `make test` configure build/ alike, so the tests after the main job rebuild nothing.
CPU_CONFIG := -DVOXTRAL_CUDA=OFF -DVOXTRAL_TESTS=ON -DVOXTRAL_WERROR=ON
# `make test-asan` and `make fuzz` share one clang build with ASan + UBSan and libFuzzer's
# coverage instrumentation: the test suite and the fuzz targets from one compile.
SANITIZE_CONFIG := -DVOXTRAL_TESTS=ON -DVOXTRAL_FUZZ=ON -DVOXTRAL_SANITIZE=address$(comma)undefined -DVOXTRAL_WERROR=ON
# The build whose voxtral-server `make test-browser` drives (build-cuda after `make cuda`).
BUILD ?= build

.PHONY: all cpu cuda sanitize test test-gpu test-asan test-browser test-container fuzz clean help

all: cpu

define build
	cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=$(2) $(3) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(1) -j $(JOBS)
endef

define link_binaries
	@for b in voxtral voxtral-bench voxtral-server voxtral-quantize; do \
	  if [ -x $(1)/src/$$b ]; then ln -sf $(1)/src/$$b $$b; fi; done
endef

cpu:  ## CPU engine (its own matrix kernels, dispatched to AVX2/AVX-512 at run time)
	$(call build,build,Release,$(CPU_CONFIG))
	$(call link_binaries,build)

cuda:  ## CUDA backend for sm_80/86/89/90 (+PTX), with the CPU backend beside it
	$(call build,build-cuda,Release,-DVOXTRAL_CUDA=ON -DVOXTRAL_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHS)")
	$(call link_binaries,build-cuda)

test-gpu: cuda  ## on a machine with an NVIDIA GPU: CUDA op tests, parity on CUDA, compute-sanitizer
	cd build-cuda && ctest -L gpu --output-on-failure

test:  ## build with warnings as errors and run the CPU test suite
	$(call build,build,Release,$(CPU_CONFIG))
	$(call link_binaries,build)
	cd build && ctest -L cpu --output-on-failure -j $(JOBS)

test-browser: $(if $(filter build,$(BUILD)),cpu)  ## the web page in headless Chromium (Playwright) with a fake microphone; screenshots in $(BUILD)/browser
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	node tests/browser/live_page.test.mjs $(BUILD)/src/voxtral-server . $(BUILD)/browser

test-container:  ## build the CPU image (Dockerfile) with podman and run it on the demo model (root; podman, runc)
	tests/deploy/container_test.sh .

sanitize:  ## the clang build with ASan + UBSan that test-asan and fuzz use (build-sanitize)
	CC=clang CXX=clang++ $(call build,build-sanitize,RelWithDebInfo,$(SANITIZE_CONFIG))

test-asan: sanitize  ## the CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer
	cd build-sanitize && ctest -L cpu --output-on-failure -j $(JOBS)

fuzz: sanitize  ## the libFuzzer targets (same build as test-asan), each for FUZZ_SECONDS
	@set -eo pipefail; for f in build-sanitize/fuzz/fuzz_*; do \
	  name=$$(basename $$f); mkdir -p build-sanitize/corpus/$$name; \
	  echo "== $$name for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -max_len=65536 \
	      build-sanitize/corpus/$$name fuzz/seeds/$$name 2>&1 | tail -n 12; \
	done

clean:  ## remove every build directory and the binary links
	rm -rf build build-cuda build-sanitize build-asan build-fuzz build-device voxtral voxtral-bench voxtral-server

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'
