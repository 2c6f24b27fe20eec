// How fast this GPU reads its memory: the floor a decode step is compared with.
#include <vector>

#include "backend/cuda/cuda_common.cuh"

namespace voxtral {

namespace {

__global__ void read_kernel(const uint4* __restrict__ data, long long n, unsigned* __restrict__ sink) {
  unsigned acc = 0;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldg(data + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *sink = acc;  // keeps the loads alive
}

}  // namespace

double measure_device_read_bandwidth(std::size_t bytes) {
  void* data = nullptr;
  unsigned* sink = nullptr;
  VOXTRAL_CUDA_CHECK(cudaMalloc(&data, bytes));
  VOXTRAL_CUDA_CHECK(cudaMalloc(&sink, sizeof(unsigned)));
  VOXTRAL_CUDA_CHECK(cudaMemset(data, 1, bytes));
  cudaDeviceProp props{};
  VOXTRAL_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  const long long n = static_cast<long long>(bytes / sizeof(uint4));
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  float best_ms = 1e30f;
  for (int run = 0; run < 10; ++run) {
    cudaEventRecord(start);
    read_kernel<<<props.multiProcessorCount * 8, 512>>>(static_cast<const uint4*>(data), n, sink);
    cudaEventRecord(stop);
    VOXTRAL_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (run > 0) best_ms = std::min(best_ms, ms);  // the first run warms up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(data);
  cudaFree(sink);
  return static_cast<double>(bytes) / (best_ms / 1000.0);
}

std::size_t device_memory_in_use() {
  size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) return 0;
  return total - free_bytes;
}

}  // namespace voxtral
