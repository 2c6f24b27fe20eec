// Matrices quantized while a BF16 model loads (--weights q8 or q4 on a published model): the
// codes and scales live here, in the layout of a quantized file (core/quant.h), and the
// backend may use them in place, so the model keeps this store as long as its backend.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/quant.h"
#include "core/safetensors.h"

namespace voxtral {

class QuantizedStore {
 public:
  // Quantizes the 2-D float tensor `source` to `format` (Q8 or Q4) on `threads` threads and
  // returns views of the result (valid as long as the store).
  WeightPart quantize(const TensorView& source, WeightFormat format, int threads);
  std::size_t bytes() const { return bytes_; }

 private:
  struct Planes {
    std::vector<std::uint8_t> codes;
    std::vector<std::uint16_t> scales;
    TensorView codes_view, scales_view;
  };
  std::vector<std::unique_ptr<Planes>> planes_;
  std::size_t bytes_ = 0;
};

}  // namespace voxtral
