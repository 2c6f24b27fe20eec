// Weight formats of a matrix on a backend, and the block quantization of Q8 and Q4 (the
// reference, scalar code: quantization at load, voxtral-quantize, and the kernels' tests).
//
// Q8 and Q4 cut each row of a [rows, cols] matrix into blocks of kQuantBlock consecutive
// inputs (cols must be a multiple of it). A block keeps small integers and one F16 scale d:
//   Q8: q[i] in [-127, 127],  w[i] ~ d * q[i],        d = max|w| / 127
//   Q4: c[i] in [0, 15],      w[i] ~ d * (c[i] - 8),  d = m / -8, m the block's value of
//       largest magnitude (so m itself is exact, and the other side reaches 7 d)
// q (or c) = round(w / d), ties to even, with the F16-rounded d, so a dequantized weight is exactly
// f16(d) * q in float. A block of zeros has d = 0. Error per weight: at most d / 2 (Q4: at
// most d on the side opposite m, where the code stops at 7).
//
// Storage: two planes per matrix, row-major, so that a kernel loads whole vectors of codes:
//   values  Q8: int8 [rows, cols]          Q4: uint8 [rows, cols / 2]
//   scales  F16 [rows, cols / kQuantBlock]
// Q4 packs each block of 32 codes into 16 bytes: byte j holds c[j] in its low nibble and
// c[j + 16] in its high one, so one AND and one shift give codes 0..15 and 16..31 of a block
// as two runs of consecutive inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace voxtral {

// BF16 and F16: the model file's values (F16 rounded from BF16); Q8, Q4: block-quantized as
// above; FP8: E4M3 with an F32 scale per output row (GPUs with FP8 tensor cores only).
enum class WeightFormat { BF16, F16, Q8, Q4, FP8 };

inline constexpr int kQuantBlock = 32;

// "bf16", "fp16", "q8", "q4", "fp8" (the --weights spelling).
std::string_view weight_format_name(WeightFormat format);
// Throws Error("weights: unknown format \"x\" (use bf16, fp16, q8, q4 or fp8)").
WeightFormat parse_weight_format(std::string_view name);
bool is_block_quantized(WeightFormat format);  // Q8, Q4

// Bytes of the values plane of one row of `cols` inputs (Q8: cols, Q4: cols / 2).
std::size_t quantized_row_bytes(WeightFormat format, std::int64_t cols);
// Throws Error("<what>: <cols> inputs is not a multiple of the 32-input block") when it is not.
void check_quantizable(std::string_view what, std::int64_t cols);

// One row: w has cols values (cols a multiple of kQuantBlock); values gets
// quantized_row_bytes(format, cols) bytes, scales cols / kQuantBlock F16 bits. Throws
// Error("quantize: input i is NaN") for a non-finite weight, and for a scale past F16.
void quantize_row(WeightFormat format, std::span<const float> w, std::span<std::uint8_t> values,
                  std::span<std::uint16_t> scales);
// The inverse: out[i] = f16(d) * q[i] (Q4: * (c[i] - 8)), exactly in float.
void dequantize_row(WeightFormat format, std::span<const std::uint8_t> values, std::span<const std::uint16_t> scales,
                    std::span<float> out);
// Throws Error("<what>: block scale i is NaN or infinite") unless every scale is finite.
void check_scales(std::string_view what, std::span<const std::uint16_t> scales);

}  // namespace voxtral
