#include "core/quant.h"

#include <algorithm>
#include <cmath>

#include "core/bf16.h"
#include "core/error.h"

namespace voxtral {

namespace {

// Throws unless the planes fit a row of `cols` inputs of a block-quantized format.
void check_sizes(WeightFormat format, std::size_t cols, std::size_t values, std::size_t scales) {
  check_quantizable("quantize", static_cast<std::int64_t>(cols));
  if (!is_block_quantized(format)) fail("quantize", cat("format ", weight_format_name(format), " is not block-quantized"));
  if (values != quantized_row_bytes(format, static_cast<std::int64_t>(cols)) || scales != cols / kQuantBlock) {
    fail("quantize", cat("planes of ", values, " bytes and ", scales, " scales do not fit a row of ", cols, " inputs"));
  }
}

// d rounded to F16, and 1 / d (0 for a block of zeros). A scale past F16's range means
// weights near 1e6, which no trained model has: refused rather than stored as infinity.
float f16_scale(float d, std::uint16_t& bits) {
  bits = float_to_f16(d);
  const float rounded = f16_to_float(bits);
  if (!std::isfinite(rounded)) fail("quantize", cat("block scale ", d, " is outside F16's range"));
  return rounded;
}

void quantize_block_q8(const float* w, std::int8_t* q, std::uint16_t& scale) {
  float amax = 0;
  for (int i = 0; i < kQuantBlock; ++i) amax = std::max(amax, std::fabs(w[i]));
  const float d = f16_scale(amax / 127.0f, scale);
  for (int i = 0; i < kQuantBlock; ++i) {
    const float v = d == 0 ? 0.0f : std::nearbyint(w[i] / d);
    q[i] = static_cast<std::int8_t>(std::clamp(v, -127.0f, 127.0f));
  }
}

void quantize_block_q4(const float* w, std::uint8_t* packed, std::uint16_t& scale) {
  float m = 0;
  for (int i = 0; i < kQuantBlock; ++i) {
    if (std::fabs(w[i]) > std::fabs(m)) m = w[i];
  }
  const float d = f16_scale(m / -8.0f, scale);
  std::uint8_t codes[kQuantBlock];
  for (int i = 0; i < kQuantBlock; ++i) {
    const float v = d == 0 ? 0.0f : std::nearbyint(w[i] / d);
    codes[i] = static_cast<std::uint8_t>(std::clamp(v, -8.0f, 7.0f) + 8.0f);
  }
  for (int j = 0; j < kQuantBlock / 2; ++j) {
    packed[j] = static_cast<std::uint8_t>(codes[j] | (codes[j + kQuantBlock / 2] << 4));
  }
}

}  // namespace

std::string_view weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::BF16: return "bf16";
    case WeightFormat::F16: return "fp16";
    case WeightFormat::Q8: return "q8";
    case WeightFormat::Q4: return "q4";
    case WeightFormat::FP8: return "fp8";
  }
  return "?";
}

WeightFormat parse_weight_format(std::string_view name) {
  for (const auto f : {WeightFormat::BF16, WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4, WeightFormat::FP8}) {
    if (name == weight_format_name(f)) return f;
  }
  fail("weights", cat("unknown format \"", name, "\" (use bf16, fp16, q8, q4 or fp8)"));
}

bool is_block_quantized(WeightFormat format) { return format == WeightFormat::Q8 || format == WeightFormat::Q4; }

std::size_t quantized_row_bytes(WeightFormat format, std::int64_t cols) {
  return static_cast<std::size_t>(format == WeightFormat::Q4 ? cols / 2 : cols);
}

void check_quantizable(std::string_view what, std::int64_t cols) {
  if (cols <= 0 || cols % kQuantBlock != 0) {
    fail(what, cat(cols, " inputs is not a multiple of the ", kQuantBlock, "-input block"));
  }
}

void quantize_row(WeightFormat format, std::span<const float> w, std::span<std::uint8_t> values,
                  std::span<std::uint16_t> scales) {
  check_sizes(format, w.size(), values.size(), scales.size());
  const auto bad = std::find_if(w.begin(), w.end(), [](float v) { return !std::isfinite(v); });
  if (bad != w.end()) fail("quantize", cat("input ", bad - w.begin(), " is ", std::isnan(*bad) ? "NaN" : "infinite"));
  const std::size_t blocks = w.size() / kQuantBlock;
  for (std::size_t b = 0; b < blocks; ++b) {
    const float* block = w.data() + b * kQuantBlock;
    if (format == WeightFormat::Q8) {
      quantize_block_q8(block, reinterpret_cast<std::int8_t*>(values.data()) + b * kQuantBlock, scales[b]);
    } else {
      quantize_block_q4(block, values.data() + b * (kQuantBlock / 2), scales[b]);
    }
  }
}

void dequantize_row(WeightFormat format, std::span<const std::uint8_t> values, std::span<const std::uint16_t> scales,
                    std::span<float> out) {
  check_sizes(format, out.size(), values.size(), scales.size());
  const std::size_t blocks = out.size() / kQuantBlock;
  for (std::size_t b = 0; b < blocks; ++b) {
    const float d = f16_to_float(scales[b]);
    float* o = out.data() + b * kQuantBlock;
    if (format == WeightFormat::Q8) {
      const auto* q = reinterpret_cast<const std::int8_t*>(values.data()) + b * kQuantBlock;
      for (int i = 0; i < kQuantBlock; ++i) o[i] = d * static_cast<float>(q[i]);
    } else {
      const std::uint8_t* packed = values.data() + b * (kQuantBlock / 2);
      for (int j = 0; j < kQuantBlock / 2; ++j) {
        o[j] = d * static_cast<float>((packed[j] & 0x0f) - 8);
        o[j + kQuantBlock / 2] = d * static_cast<float>((packed[j] >> 4) - 8);
      }
    }
  }
}

void check_scales(std::string_view what, std::span<const std::uint16_t> scales) {
  for (std::size_t i = 0; i < scales.size(); ++i) {
    if ((scales[i] & 0x7c00u) == 0x7c00u) fail(what, cat("block scale ", i, " is NaN or infinite"));
  }
}

}  // namespace voxtral
