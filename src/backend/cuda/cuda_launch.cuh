// Kernel launches as programmatic dependents (sm_90 griddepcontrol), in one place: the backend's
// launchers and tools/gpu/chain_bench.cu use it. Depends on the CUDA runtime alone.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace voxtral {

// kernel<<<grid, block, shared_bytes, stream>>>(args...), as a programmatic dependent of the
// kernel before it when `programmatic`: its blocks may start while that kernel drains, and it
// must call griddepcontrol.wait before it reads that kernel's results. Returns the launch's error.
template <typename... Params, typename... Args>
cudaError_t launch_programmatic(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes,
                                cudaStream_t stream, bool programmatic, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  cudaLaunchAttribute early[1] = {};
  early[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  early[0].val.programmaticStreamSerializationAllowed = 1;
  if (programmatic) config.attrs = early, config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace voxtral
