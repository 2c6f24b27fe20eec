// libFuzzer target for the safetensors header parser. Any input must either be rejected
// with voxtral::Error or yield views that lie inside the input: reading a few bytes of
// every view lets ASan catch one that does not.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/error.h"
#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto st = voxtral::SafeTensors::from_buffer(bytes, "fuzz");
    unsigned checksum = 0;
    for (const voxtral::TensorView& tensor : st.tensors()) {
      // First, middle and last byte: enough to trip ASan on a view past the buffer.
      if (tensor.nbytes > 0) {
        checksum += std::to_integer<unsigned>(tensor.data[0]);
        checksum += std::to_integer<unsigned>(tensor.data[tensor.nbytes / 2]);
        checksum += std::to_integer<unsigned>(tensor.data[tensor.nbytes - 1]);
      }
      if (static_cast<std::size_t>(tensor.numel()) * voxtral::dtype_size(tensor.dtype) != tensor.nbytes) {
        __builtin_trap();
      }
      if (st.find(tensor.name) != &tensor) __builtin_trap();
    }
    // Keeps the reads from being optimised away.
    volatile unsigned sink = checksum;
    (void)sink;
  } catch (const voxtral::Error&) {
  }
  return 0;
}
