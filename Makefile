# Thin wrapper over CMake. `make help` lists the targets.
SHELL := /bin/bash
comma := ,
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 30
# Ampere, Ada, Hopper machine code plus PTX for newer GPUs; e.g. CUDA_ARCHS=90-real for a quick H100-only build.
CUDA_ARCHS ?= 80-real;86-real;89-real;90-real;90-virtual
CMAKE_FLAGS ?=

.PHONY: all cpu cuda test test-gpu test-asan test-browser test-container fuzz clean help

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
	$(call build,build,Release,-DVOXTRAL_CUDA=OFF -DVOXTRAL_TESTS=ON)
	$(call link_binaries,build)

cuda:  ## CUDA backend for sm_80/86/89/90 (+PTX), with the CPU backend beside it
	$(call build,build-cuda,Release,-DVOXTRAL_CUDA=ON -DVOXTRAL_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHS)")
	$(call link_binaries,build-cuda)

test-gpu: cuda  ## on a machine with an NVIDIA GPU: CUDA op tests, parity on CUDA, compute-sanitizer
	cd build-cuda && ctest -L gpu --output-on-failure

test:  ## build with warnings as errors and run the CPU test suite
	$(call build,build,Release,-DVOXTRAL_CUDA=OFF -DVOXTRAL_TESTS=ON -DVOXTRAL_WERROR=ON)
	$(call link_binaries,build)
	cd build && ctest -L cpu --output-on-failure -j $(JOBS)

test-browser: cpu  ## the web page in headless Chromium (Playwright) with a fake microphone; screenshots in build/browser
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	node tests/browser/live_page.test.mjs build/src/voxtral-server . build/browser

test-container:  ## build the CPU image (Dockerfile) with podman and run it on the demo model (root; podman, runc)
	tests/deploy/container_test.sh .

test-asan:  ## the CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer
	$(call build,build-asan,Debug,-DVOXTRAL_TESTS=ON -DVOXTRAL_SANITIZE=address$(comma)undefined -DVOXTRAL_WERROR=ON)
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
	rm -rf build build-cuda build-asan build-fuzz build-device voxtral voxtral-bench voxtral-server

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'
