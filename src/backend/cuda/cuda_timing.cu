// Timing a sequence of launches by the GPU's clock alone (gpu_time_ms, cuda_common.cuh).
#include "backend/cuda/cuda_common.cuh"

namespace voxtral {

namespace {

// Returns once `ns` nanoseconds of the GPU's global timer have passed.
__global__ void hold_kernel(unsigned long long ns) {
  unsigned long long start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

}  // namespace

float gpu_time_ms(cudaStream_t stream, int runs, const std::function<void()>& launch) {
  struct Events {
    cudaEvent_t start = nullptr, stop = nullptr;
    ~Events() {
      if (start != nullptr) cudaEventDestroy(start);
      if (stop != nullptr) cudaEventDestroy(stop);
    }
  } e;
  VOXTRAL_CUDA_CHECK(cudaEventCreate(&e.start));
  VOXTRAL_CUDA_CHECK(cudaEventCreate(&e.stop));
  // The launches are queued while the stream is held, so the GPU then runs them back to back
  // whatever the host's cost of launching them (cuBLASLt's is several microseconds a product).
  // Where the hold ended before they were all queued (a slow or busy host), the time would
  // count the host's gaps: held longer, once and again.
  unsigned long long hold_ns = 2'000'000;
  for (int attempt = 0;; ++attempt, hold_ns *= 4) {
    hold_kernel<<<1, 1, 0, stream>>>(hold_ns);
    VOXTRAL_CUDA_LAUNCHED("hold");
    VOXTRAL_CUDA_CHECK(cudaEventRecord(e.start, stream));
    for (int i = 0; i < runs; ++i) launch();
    const bool held = cudaEventQuery(e.start) == cudaErrorNotReady;
    VOXTRAL_CUDA_CHECK(cudaEventRecord(e.stop, stream));
    VOXTRAL_CUDA_CHECK(cudaEventSynchronize(e.stop));
    if (held || attempt == 2) break;
  }
  float ms = 0;
  VOXTRAL_CUDA_CHECK(cudaEventElapsedTime(&ms, e.start, e.stop));
  return ms / static_cast<float>(runs);
}

}  // namespace voxtral
