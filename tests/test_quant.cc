// Block quantization (src/core/quant.h) against values worked out by hand and in Python's
// struct module (IEEE half precision, round half to even), and F16 rounding.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/quant.h"

namespace voxtral {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

TEST(F16, EveryHalfRoundTripsAndKnownValuesRoundToNearestEven) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_f16(f), h) << std::hex << h;
  }
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);      // below the midpoint to 65536
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);      // the midpoint rounds to even: infinity
  EXPECT_EQ(float_to_f16(-1e9f), 0xfc00);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -24)), 0x0001);      // smallest subnormal
  EXPECT_EQ(float_to_f16(std::ldexp(1.5f, -24)), 0x0002);      // tie between 1 and 2: even
  EXPECT_EQ(float_to_f16(std::ldexp(2.5f, -24)), 0x0002);      // tie between 2 and 3: even
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25)), 0x0000);      // tie between 0 and 1: even
  EXPECT_EQ(float_to_f16(std::ldexp(1.01f, -25)), 0x0001);
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00); // tie: to even 1.0
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3c02); // tie: to even
  EXPECT_EQ(float_to_f16(0.00787401574f), 0x2008);
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::nanf("")))));
}

TEST(Quant, Q8BlockMatchesTheWorkedExample) {
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[static_cast<std::size_t>(i)] = static_cast<float>(i - 16) / 16.0f;
  std::vector<std::uint8_t> values(32);
  std::vector<std::uint16_t> scales(1);
  quantize_row(WeightFormat::Q8, w, values, scales);
  EXPECT_EQ(scales[0], 0x2008);  // f16(1 / 127) = 0.00787353515625
  const std::vector<int> expected = {-127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48, -40, -32, -24, -16, -8,
                                     0,    8,    16,   24,   32,  40,  48,  56,  64,  71,  79,  87,  95,  103, 111, 119};
  std::vector<int> got;
  for (const auto v : values) got.push_back(static_cast<std::int8_t>(v));
  EXPECT_THAT(got, ElementsAreArray(expected));
  std::vector<float> back(32);
  dequantize_row(WeightFormat::Q8, values, scales, back);
  EXPECT_EQ(back[0], -127.0f * 0.00787353515625f);
  EXPECT_EQ(back[31], 119.0f * 0.00787353515625f);
}

TEST(Quant, Q4BlockMatchesTheWorkedExampleAndPacksHalvesIntoNibbles) {
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[static_cast<std::size_t>(i)] = static_cast<float>((i * 7) % 19 - 9) / 10.0f;
  std::vector<std::uint8_t> values(16);
  std::vector<std::uint16_t> scales(1);
  quantize_row(WeightFormat::Q4, w, values, scales);
  EXPECT_EQ(scales[0], 0x2f33);  // f16(-0.9 / -8) = 0.11248779296875
  // Codes 0, 6, 12, 2, ... (0..15) and 15, 4, 11, 0, ... (16..31), byte j = c[j] | c[j+16] << 4.
  EXPECT_THAT(values, ElementsAreArray(std::vector<std::uint8_t>{240, 70, 188, 2, 104, 206, 36, 138, 239, 69, 172, 241,
                                                                 87, 205, 19, 121}));
  std::vector<float> back(32);
  dequantize_row(WeightFormat::Q4, values, scales, back);
  EXPECT_EQ(back[0], -8.0f * 0.11248779296875f);   // the largest magnitude comes back almost exact
  EXPECT_EQ(back[16], 7.0f * 0.11248779296875f);   // code 15
}

// Every weight of random rows (with blocks of zeros and of tiny values) within the stated
// bound of its dequantized value.
TEST(Quant, DequantizedWeightsAreWithinTheStatedErrorOfTheOriginals) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const std::int64_t cols = 4096;
  std::vector<float> w(static_cast<std::size_t>(cols));
  for (auto& v : w) v = normal(rng);
  for (int i = 0; i < 32; ++i) w[static_cast<std::size_t>(64 + i)] = 0;                       // zeros
  for (int i = 0; i < 32; ++i) w[static_cast<std::size_t>(128 + i)] = normal(rng) * 1e-4f;    // subnormal scales
  for (const auto format : {WeightFormat::Q8, WeightFormat::Q4}) {
    std::vector<std::uint8_t> values(quantized_row_bytes(format, cols));
    std::vector<std::uint16_t> scales(static_cast<std::size_t>(cols / kQuantBlock));
    std::vector<float> back(static_cast<std::size_t>(cols));
    quantize_row(format, w, values, scales);
    dequantize_row(format, values, scales, back);
    for (std::int64_t i = 0; i < cols; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const float d = std::fabs(f16_to_float(scales[k / kQuantBlock]));
      // Half a step of the stored scale, plus the scale's own F16 rounding times the code
      // (half a unit in F16's last place, relative 2^-11, or 2^-25 absolute when subnormal).
      const float code_bound = format == WeightFormat::Q8 ? 127.0f : 8.0f;
      const float scale_error = std::max(d * std::ldexp(1.0f, -11), std::ldexp(1.0f, -25)) * code_bound;
      const float bound = (format == WeightFormat::Q8 ? d / 2 : d) + scale_error;
      ASSERT_LE(std::fabs(back[k] - w[k]), bound) << weight_format_name(format) << " input " << i;
    }
    for (int i = 0; i < 32; ++i) EXPECT_EQ(back[static_cast<std::size_t>(64 + i)], 0.0f);
  }
}

TEST(Quant, BadInputsAreRefusedNamingTheProblem) {
  std::vector<float> w(48, 0.1f);
  std::vector<std::uint8_t> values(48);
  std::vector<std::uint16_t> scales(1);
  try {
    quantize_row(WeightFormat::Q8, w, values, scales);
    FAIL() << "48 inputs were accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("48 inputs is not a multiple of the 32-input block"));
  }
  w.assign(32, 1e7f);
  values.resize(32);
  EXPECT_THROW(quantize_row(WeightFormat::Q8, w, values, scales), Error);  // scale past F16
  w.assign(32, 0.1f);
  EXPECT_THROW(quantize_row(WeightFormat::Q4, w, values, scales), Error);  // Q4 wants 16 bytes
  EXPECT_THROW(quantize_row(WeightFormat::BF16, w, values, scales), Error);
  EXPECT_EQ(parse_weight_format("q4"), WeightFormat::Q4);
  EXPECT_EQ(parse_weight_format("fp16"), WeightFormat::F16);
  try {
    parse_weight_format("int4");
    FAIL() << "int4 was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("weights: unknown format \"int4\" (use bf16, fp16, q8, q4 or fp8)"));
  }
}

}  // namespace
}  // namespace voxtral
