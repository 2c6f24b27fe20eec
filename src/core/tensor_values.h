// Host-side access to the values of a tensor of any floating dtype.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/safetensors.h"

namespace voxtral {

// The tensor's values widened to float (F32, F16, BF16 or F64); throws for other dtypes.
std::vector<float> read_floats(const TensorView& tensor);
// Elements [first, first + out.size()) of the tensor (flat, row-major) widened to float.
void read_floats(const TensorView& tensor, std::int64_t first, std::span<float> out);

}  // namespace voxtral
