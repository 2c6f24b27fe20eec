#include <cstdlib>
#include <string_view>

#include "backend/cpu/simd_sets.h"

namespace voxtral::simd {

namespace {

Kernels choose() {
  __builtin_cpu_init();
  // VOXTRAL_CPU_KERNELS names the widest set allowed (the tests run each one).
  const char* forced = std::getenv("VOXTRAL_CPU_KERNELS");
  const std::string_view limit = forced != nullptr ? forced : "";
  const bool allow_amx = limit.empty() || limit == "amx";
  const bool allow_bf16 = allow_amx || limit == "avx512bf16";
  const bool allow512 = allow_bf16 || limit == "avx512";
  const bool allow2 = allow512 || limit == "avx2";
  if (allow512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    const bool bf16 = allow_bf16 && __builtin_cpu_supports("avx512bf16");
    Kernels k = avx512_kernels(bf16);
    k.vnni = allow_bf16 && __builtin_cpu_supports("avx512vnni");
    k.amx = allow_amx && bf16 && amx_bf16_usable();
    return k;
  }
  if (allow2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2_kernels();
  return generic_kernels();
}

}  // namespace

const Kernels& kernels() {
  static const Kernels chosen = choose();
  return chosen;
}

}  // namespace voxtral::simd
