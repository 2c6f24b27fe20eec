// The decode step's chain of kernels without their arithmetic (issue 17: the step's fixed cost).
// A step is P phases; each streams its share of a weight buffer (16-byte loads, several in
// flight) and reads the previous phase's small output (the x that a product normalizes) before
// it writes its own. The phases run
//   kernels:    one kernel each, launched as programmatic dependents in a CUDA graph, the first
//               loads issued before griddepcontrol.wait (what the engine does), or
//   persistent: one kernel, one block per multiprocessor, a grid-wide barrier between phases,
//               the next phase's first loads issued before the barrier.
// Each block is launched with enough (unused) dynamic shared memory that only one fits a
// multiprocessor, as the engine's product kernels fill one. Prints the median step time over the replays of each.
//
//   nvcc -O3 -gencode=arch=compute_90,code=sm_90 -o /tmp/chain_bench tools/gpu/chain_bench.cu
//   /tmp/chain_bench [layer bytes per weight (0.5625 = Q4)] [LM head bytes per weight] [context]
// Bytes per weight 0 leaves only the chain: its fixed cost.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../../src/backend/cuda/cuda_launch.cuh"  // the engine's programmatic launch

#define CHECK(call)                                                                 \
  do {                                                                              \
    cudaError_t e_ = (call);                                                        \
    if (e_ != cudaSuccess) {                                                        \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_));              \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

namespace {

constexpr int kThreads = 768;
constexpr int kLoads = 4;     // 16-byte loads in flight per thread
constexpr int kX = 4096;      // floats of a phase's output
constexpr int kHold = 120 << 10;  // shared memory a block holds: one block per multiprocessor

struct Phase {
  long long offset, bytes;
};

__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float block_sum(float v, float* partial) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
  __syncthreads();
  return total;
}

// One phase: the first loads, then `wait` (for the previous phase's output), x summed, the
// rest of the stream, then this block's slice of the output.
template <typename Wait>
__device__ void phase_body(const char* weights, Phase ph, const float* x_in, float* x_out, unsigned* sink, Wait wait) {
  __shared__ float partial[kThreads / 32];
  const long long chunks = ph.bytes / 16;
  const long long per_block = (chunks + gridDim.x - 1) / gridDim.x;
  const long long begin = blockIdx.x * per_block, end = min(chunks, begin + per_block);
  const uint4* w = reinterpret_cast<const uint4*>(weights + ph.offset);
  uint4 v[kLoads];
  long long i = begin + threadIdx.x;
#pragma unroll
  for (int u = 0; u < kLoads; ++u) {
    const long long c = i + u * kThreads;
    v[u] = c < end ? load_stream(w + c) : make_uint4(0, 0, 0, 0);
  }
  wait();
  float s = 0.0f;
  for (int j = threadIdx.x * 4; j < kX; j += kThreads * 4) {
    const float4 x = *reinterpret_cast<const float4*>(x_in + j);
    s += x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
  }
  const float total = block_sum(s, partial);
  unsigned acc = 0;
  for (;;) {
#pragma unroll
    for (int u = 0; u < kLoads; ++u) acc ^= v[u].x ^ (v[u].y << 1) ^ (v[u].z << 2) ^ (v[u].w << 3);
    i += kLoads * kThreads;
    if (i >= end) break;
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const long long c = i + u * kThreads;
      v[u] = c < end ? load_stream(w + c) : make_uint4(0, 0, 0, 0);
    }
  }
  const int per = (kX + gridDim.x - 1) / gridDim.x;
  for (int j = threadIdx.x; j < per; j += kThreads) {
    const int k = blockIdx.x * per + j;
    if (k < kX) x_out[k] = 1.0f / (1.0f + total) + static_cast<float>(acc & 1u);
  }
  if (acc == 0x9e3779b9u) sink[0] = acc;  // keeps the loads
}

__global__ void __launch_bounds__(kThreads, 1)
    phase_kernel(const char* weights, Phase ph, const float* x_in, float* x_out, unsigned* sink) {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  phase_body(weights, ph, x_in, x_out, sink, [] { asm volatile("griddepcontrol.wait;" ::: "memory"); });
}

__global__ void __launch_bounds__(kThreads, 1)
    persistent_kernel(const char* weights, const Phase* phases, int n, float* xs, unsigned* sink, unsigned* arrived) {
  for (int p = 0; p < n; ++p) {
    const unsigned target = static_cast<unsigned>(p) * gridDim.x;
    phase_body(weights, phases[p], xs + static_cast<long long>(p) * kX, xs + static_cast<long long>(p + 1) * kX, sink,
               [&] {
                 if (threadIdx.x == 0) {
                   unsigned seen;
                   do {
                     asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(arrived) : "memory");
                   } while (seen < target);
                 }
                 __syncthreads();
               });
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();
      atomicAdd(arrived, 1u);
    }
  }
}

float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Record>
float time_graph(cudaStream_t stream, Record record, int replays) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  record();
  CHECK(cudaStreamEndCapture(stream, &graph));
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int r = 0; r < replays + 3; ++r) {
    CHECK(cudaEventRecord(a, stream));
    CHECK(cudaGraphLaunch(exec, stream));
    CHECK(cudaEventRecord(b, stream));
    CHECK(cudaEventSynchronize(b));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, a, b));
    if (r >= 3) ms.push_back(t);
  }
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  return median(ms);
}

}  // namespace

int main(int argc, char** argv) {
  const double layer_bpw = argc > 1 ? std::atof(argv[1]) : 0.5625;
  const double head_bpw = argc > 2 ? std::atof(argv[2]) : 1.0625;
  const int context = argc > 3 ? std::atoi(argv[3]) : 64;
  // The real decoder's products per layer (weights), the attention's K/V bytes, the LM head.
  const double dim = 3072, hidden = 9216, q = 4096, kv = 1024, vocab = 131072;
  const double kv_bytes = context * kv * 2 * 2;
  std::vector<double> sizes;
  for (int layer = 0; layer < 26; ++layer) {
    for (double s : {(q + 2 * kv) * dim * layer_bpw, kv_bytes, dim * q * layer_bpw, 2 * hidden * dim * layer_bpw,
                     dim * hidden * layer_bpw}) {
      sizes.push_back(s);
    }
  }
  sizes.push_back(vocab * dim * head_bpw);
  sizes.push_back(0);  // argmax
  std::vector<Phase> phases;
  long long total = 0;
  for (double s : sizes) {
    const long long bytes = static_cast<long long>(s) / 16 * 16;
    phases.push_back({total, bytes});
    total += (bytes + 4095) / 4096 * 4096;
  }
  const int n = static_cast<int>(phases.size());
  int device = 0, sms = 0;
  CHECK(cudaGetDevice(&device));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  char* weights;
  float* xs;
  unsigned *sink, *arrived;
  Phase* phases_d;
  CHECK(cudaMalloc(&weights, std::max<long long>(total, 16)));
  CHECK(cudaMemset(weights, 1, std::max<long long>(total, 16)));
  CHECK(cudaMalloc(&xs, sizeof(float) * kX * (n + 1)));
  CHECK(cudaMemset(xs, 0, sizeof(float) * kX * (n + 1)));
  CHECK(cudaMalloc(&sink, 4));
  CHECK(cudaMalloc(&arrived, 4));
  CHECK(cudaMalloc(&phases_d, sizeof(Phase) * n));
  CHECK(cudaMemcpy(phases_d, phases.data(), sizeof(Phase) * n, cudaMemcpyHostToDevice));
  CHECK(cudaFuncSetAttribute(phase_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kHold));
  CHECK(cudaFuncSetAttribute(persistent_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kHold));
  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream));
  const int replays = 30;

  for (int programmatic = 1; programmatic >= 0; --programmatic) {
    const float ms = time_graph(stream, [&] {
      for (int p = 0; p < n; ++p) {
        CHECK(voxtral::launch_programmatic(phase_kernel, dim3(sms), dim3(kThreads), kHold, stream, programmatic != 0,
                                           static_cast<const char*>(weights), phases[p],
                                           static_cast<const float*>(xs + static_cast<long long>(p) * kX),
                                           xs + static_cast<long long>(p + 1) * kX, sink));
      }
    }, replays);
    std::printf("kernels%s: %d phases, %.3f GB, %.3f ms a step, %.2f TB/s\n", programmatic ? " (programmatic)" : "", n,
                total / 1e9, ms, total / (ms * 1e-3) / 1e12);
  }
  const float ms = time_graph(stream, [&] {
    CHECK(cudaMemsetAsync(arrived, 0, 4, stream));
    persistent_kernel<<<sms, kThreads, kHold, stream>>>(weights, phases_d, n, xs, sink, arrived);
    CHECK(cudaGetLastError());
  }, replays);
  std::printf("persistent: %d phases, %.3f GB, %.3f ms a step, %.2f TB/s\n", n, total / 1e9, ms,
              total / (ms * 1e-3) / 1e12);
  CHECK(cudaDeviceSynchronize());
  return 0;
}
