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
  cudaEvent_t start = nullptr, stop = nullptr;
  VOXTRAL_CUDA_CHECK(cudaEventCreate(&start));
  VOXTRAL_CUDA_CHECK(cudaEventCreate(&stop));
  // The launches are queued while the stream is held, so the GPU then runs them back to back
  // whatever the host's cost of launching them (cuBLASLt's is several microseconds a product).
  constexpr unsigned long long kHoldNs = 2'000'000;
  hold_kernel<<<1, 1, 0, stream>>>(kHoldNs);
  VOXTRAL_CUDA_LAUNCHED("hold");
  VOXTRAL_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < runs; ++i) launch();
  VOXTRAL_CUDA_CHECK(cudaEventRecord(stop, stream));
  VOXTRAL_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  VOXTRAL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / static_cast<float>(runs);
}

}  // namespace voxtral
