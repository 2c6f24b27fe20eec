#!/usr/bin/env bash
# Builds the CUDA binaries for the GPU test machine and packs what they need into
# .device-carry/ (bin/, lib/, audio/), the folder tools/gpu/device_check.sh reads there.
# That machine has CUDA, torch and transformers but none of our Debian packages, and a call
# carries at most 64 MiB: so the build is for Hopper only, without libav, and
# lib/ holds the shared libraries the binaries load that are neither glibc's nor CUDA's.
#   tools/gpu/pack_carry.sh            (then: run with carry [".device-carry"]; ESPEAK=1 adds espeak-ng)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${BUILD_DIR:-build-device}"
carry=.device-carry
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
                                           -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DVOXTRAL_CUDA=ON -DVOXTRAL_LIBAV=OFF \
  -DVOXTRAL_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-90-real}" "${launcher[@]}" > /dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target voxtral voxtral-bench voxtral-server voxtral-loadtest \
  voxtral_tests voxtral_gpu_tests c_api_test

rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/lib" "$carry/audio"
bins=()
for b in voxtral voxtral-bench voxtral-server voxtral-loadtest; do bins+=("$build/src/$b"); done
for t in voxtral_tests voxtral_gpu_tests c_api_test; do
  found="$(find "$build/tests" -name "$t" -type f -perm -u+x | head -1)"
  [ -n "$found" ] && bins+=("$found")
done
for b in "${bins[@]}"; do
  cp "$b" "$carry/bin/"
  strip --strip-unneeded "$carry/bin/$(basename "$b")"
done
# Libraries outside glibc and CUDA (the machine has both): Debian's, e.g. libsoxr, kissfft.
for b in "$carry"/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
    libcuda.so*|libcudart.so*|libcublas*.so*|libnvidia*) ;;
    *) cp -L "$lib" "$carry/lib/" ;;
  esac
done
# libstdc++ of this build's compiler, in case the machine's is older.
cp -L "$(g++ -print-file-name=libstdc++.so.6)" "$carry/lib/"
samples="${SAMPLES_DIR:-$root/../shared/samples}"
cp "$samples/jfk.wav" "$carry/audio/"
cp "$samples"/night1968/60s_*.wav "$carry/audio/speech60.wav"
cp "$samples"/night1968/45s_*.wav "$carry/audio/speech45.wav"
# espeak-ng for the demo stages (tools/demo_model/carry_espeak.sh) when ESPEAK=1.
[ "${ESPEAK:-0}" = 1 ] && tools/demo_model/carry_espeak.sh > /dev/null
du -sh "$carry" "$carry"/*
# A call carries at most 64 MiB: the folder travels as one xz archive, which device_env.sh
# unpacks on the GPU machine.
(cd "$carry" && tar cJf pack.tar.xz --remove-files -- *)
du -sh "$carry/pack.tar.xz"
