#include "core/tensor_values.h"

#include <cstring>

#include "core/bf16.h"
#include "core/error.h"

namespace voxtral {

std::vector<float> read_floats(const TensorView& t) {
  std::vector<float> out(static_cast<std::size_t>(t.numel()));
  read_floats(t, 0, out);
  return out;
}

void read_floats(const TensorView& t, std::int64_t first, std::span<float> out) {
  const auto count = static_cast<std::int64_t>(out.size());
  if (first < 0 || first + count > t.numel()) {
    fail(t.name, cat("elements ", first, "..", first + count, " are outside its ", t.numel()));
  }
  const auto at = static_cast<std::size_t>(first);
  switch (t.dtype) {
    case DType::F32: std::memcpy(out.data(), t.data + at * sizeof(float), out.size() * sizeof(float)); break;
    case DType::BF16: {
      auto v = t.as<std::uint16_t>(DType::BF16).subspan(at, out.size());
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(v[i]);
      break;
    }
    case DType::F16: {
      auto v = t.as<std::uint16_t>(DType::F16).subspan(at, out.size());
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = f16_to_float(v[i]);
      break;
    }
    case DType::F64: {
      auto v = t.as<double>(DType::F64).subspan(at, out.size());
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(v[i]);
      break;
    }
    default: fail(t.name, cat("expected a floating-point tensor, found ", dtype_name(t.dtype)));
  }
}

}  // namespace voxtral
