#include "backend/factory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/profiling_backend.h"
#ifdef VOXTRAL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "core/error.h"
#include "model/model.h"

namespace voxtral {

std::string resolve_backend(const ModelOptions& options) {
  if (options.backend != "auto") return options.backend;
#ifdef VOXTRAL_HAVE_CUDA
  std::string reason;
  if (cuda_usable(&reason)) return "cuda";
  if (!options.quiet) std::fprintf(stderr, "voxtral: %s; falling back to the CPU backend\n", reason.c_str());
#endif
  return "cpu";  // a build without CUDA is a CPU build by choice: no notice
}

std::unique_ptr<Backend> make_backend(const ModelOptions& options) {
  std::unique_ptr<Backend> backend;
  const std::string kind = resolve_backend(options);
  if (options.precision != "auto" && options.precision != "exact" && options.precision != "fast") {
    fail("precision", cat("unknown mode \"", options.precision, "\" (use exact, fast or auto)"));
  }
  const bool fast = options.precision == "fast";
  if (kind == "cpu") {
    if (!options.kernel_variants.empty()) fail("variant", "kernel variants are the CUDA backend's");
    if (options.weights == "fp16" || options.weights == "fp8") {
      fail(option_name(options.naming, "weights"), cat(options.weights, " is a storage of the CUDA backend; the CPU backend "
                                                       "keeps BF16 weights or quantizes them (use auto, bf16, q8 or q4)"));
    }
    int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
    backend = std::make_unique<CpuBackend>(std::max(threads, 1), fast ? CpuPrecision::Fast : CpuPrecision::Exact);
  } else if (kind == "cuda") {
#ifdef VOXTRAL_HAVE_CUDA
    CudaOptions co;
    co.exact_matmul = !fast;
    // q8, q4 and fp8 are the matrices' own formats (WeightPart): the 16-bit type below is the
    // rest's (convolutions, matrices off the 32-input block).
    if (options.weights != "auto" && options.weights != "bf16" && options.weights != "fp16" && options.weights != "q8" &&
        options.weights != "q4" && options.weights != "fp8") {
      fail(option_name(options.naming, "weights"),
           cat("unknown storage \"", options.weights, "\" (use auto, bf16, fp16, q8, q4 or fp8)"));
    }
    co.weight_type = options.weights == "fp16" ? ElemType::F16 : ElemType::BF16;
    co.kv_cache_type = options.kv_cache == "f32" ? ElemType::F32 : ElemType::BF16;
    co.kernels = parse_cuda_variants(options.kernel_variants);
    backend = std::make_unique<CudaBackend>(co);
#else
    fail("backend", "this build has no CUDA backend: rebuild with `make cuda`");
#endif
  } else {
    fail("backend", cat("unknown backend \"", options.backend, "\" (use cpu, cuda or auto)"));
  }
  const char* profile = std::getenv("VOXTRAL_PROFILE");
  if (profile != nullptr && std::string_view(profile) == "1") {
    backend = std::make_unique<ProfilingBackend>(std::move(backend));
  }
  return backend;
}

}  // namespace voxtral
