// The fast Q8/Q4 products' layout sizes, and their portable kernel set: the activation
// quantization and the integer sums written out one input at a time.
#include "backend/cpu/simd_quant_int8.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "core/bf16.h"

namespace voxtral::simd {

std::int64_t int8_row_values(std::int64_t n) { return groups(n) * kGroupInputs; }

std::int64_t int8_row_scales(std::int64_t n) { return groups(n) * kGroupBlocks * kScaleLanes; }

namespace {

void quantize_generic(const float* x, std::int64_t n, std::uint8_t* values, float* scales) {
  const std::int64_t blocks = n / kQuantBlock;
  for (std::int64_t b = 0; b < groups(n) * kGroupBlocks; ++b) {
    float s = 0.0f;
    int a[kQuantBlock] = {};
    if (b < blocks) {
      const float* xb = x + b * kQuantBlock;
      // The largest magnitude from the bit patterns: a NaN outranks infinity, which
      // outranks every number, so a non-finite input always reaches s.
      std::uint32_t m_bits = 0;
      for (int i = 0; i < kQuantBlock; ++i) m_bits = std::max(m_bits, std::bit_cast<std::uint32_t>(xb[i]) & 0x7fffffffu);
      const float m = std::bit_cast<float>(m_bits);
      const float inv = m >= kTinyBlock ? kInt8Max / m : 0.0f;
      s = m / kInt8Max;
      if (inv != 0.0f) {
        for (int i = 0; i < kQuantBlock; ++i) a[i] = static_cast<int>(std::nearbyint(xb[i] * inv));
      }
    }
    const auto k = static_cast<int>(b % kGroupBlocks);
    std::uint8_t* group = values + (b / kGroupBlocks) * kGroupInputs;
    for (int i = 0; i < kQuantBlock; ++i) group[value_position(k, i)] = static_cast<std::uint8_t>(a[i] + 128);
    std::fill_n(scales + b * kScaleLanes, kScaleLanes, s);
  }
}

template <WeightFormat Format>
void dot_int8_generic(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, int rows,
                      std::int64_t n, float* out) {
  float acc[kQuantRows] = {};
  for (std::int64_t b = 0; b < n / kQuantBlock; ++b) {
    int q[kQuantBlock];
    for (int i = 0; i < kQuantBlock; ++i) {
      if constexpr (Format == WeightFormat::Q8) {
        q[i] = static_cast<std::int8_t>(codes[b * kQuantBlock + i]);
      } else {
        const std::uint8_t byte = codes[b * 16 + i % 16];
        q[i] = (i < 16 ? byte & 0x0f : byte >> 4) - 8;
      }
    }
    const float d = f16_to_float(scales[b]);
    const auto k = static_cast<int>(b % kGroupBlocks);
    for (int r = 0; r < rows; ++r) {
      const std::uint8_t* group = x[r].values + (b / kGroupBlocks) * kGroupInputs;
      std::int32_t sum = 0;
      for (int i = 0; i < kQuantBlock; ++i) sum += q[i] * (group[value_position(k, i)] - 128);
      acc[r] += d * x[r].scales[b * kScaleLanes] * static_cast<float>(sum);
    }
  }
  std::copy_n(acc, rows, out);
}

}  // namespace

Int8Kernels int8_kernels_generic() {
  return {quantize_generic, dot_int8_generic<WeightFormat::Q8>, dot_int8_generic<WeightFormat::Q4>};
}

}  // namespace voxtral::simd
