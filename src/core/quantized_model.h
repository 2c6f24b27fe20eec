// Quantized model directories (voxtral-quantize): which tensors a format quantizes, how they
// are named and stored in the safetensors file, and the writer.
//
// A quantized directory holds the source's tekken.json, its params.json with
//   "quantization": {"format": "q8" | "q4", "block_size": 32}
// and a consolidated.safetensors whose __metadata__ has "quantization" set the same way. A
// tensor stored block-quantized (src/core/quant.h) keeps its name for the values plane
// (Q8: I8 [rows, cols]; Q4: U8 [rows, cols / 2]) and adds `<name>_scale`, F16
// [rows, cols / 32]. Every other tensor is copied unchanged.
//
// Quantized: the matrices of linear products (encoder, adapter and decoder wq, wk, wv, wo,
// w1, w2, w3) and the token embedding, which is also the LM head. The LM head decides every
// token, so it stays Q8 when the rest is Q4 (+0.23 GB on the real model). Kept as they are:
// convolutions, norms, biases, the ada-norm projections (small, combined on the host), and
// any matrix whose inputs are not a multiple of the 32-input block (tiny test models).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "core/quant.h"

namespace voxtral {

// The format tensor `name` of shape `shape` is stored in when a model is quantized to
// `requested` (Q8 or Q4); BF16 means "copied unchanged". FP8 (quantized at load by the CUDA
// backend, never written to a file) picks the same matrices, and keeps the token embedding /
// LM head in Q8 as Q4 does: E4M3's 3 mantissa bits are coarser than Q8's 7.
WeightFormat stored_format(std::string_view name, std::span<const std::int64_t> shape, WeightFormat requested);

std::string scale_tensor_name(std::string_view name);  // name + "_scale"

struct TensorView;  // core/safetensors.h
// Row r of the 2-D float tensor `source`, quantized to `format` (quantize_row; `scratch`
// holds its cols floats). Errors name the tensor and the row.
void quantize_tensor_row(const TensorView& source, WeightFormat format, std::int64_t r, std::span<float> scratch,
                         std::span<std::uint8_t> codes, std::span<std::uint16_t> scales);

struct QuantizeSummary {
  std::uint64_t bytes_in = 0;   // the source's consolidated.safetensors
  std::uint64_t bytes_out = 0;  // the written one
  int quantized = 0;            // tensors stored block-quantized
  int copied = 0;               // tensors copied unchanged
};

// Reads the model directory `in` (params.json, tekken.json, consolidated.safetensors) and
// writes its `format` (Q8 or Q4) version to `out`, created if needed. Throws Error naming the
// path when `in` is incomplete or already quantized, when `out` already holds a model or is
// `in`, or on a write failure (the partial file is removed).
QuantizeSummary write_quantized_model(const std::filesystem::path& in, const std::filesystem::path& out,
                                      WeightFormat format);

}  // namespace voxtral
