#include "model/quantized_store.h"

#include <algorithm>
#include <thread>

#include "core/error.h"
#include "core/quantized_model.h"

namespace voxtral {

WeightPart QuantizedStore::quantize(const TensorView& source, WeightFormat format, int threads) {
  if (source.shape.size() != 2) fail(source.name, "only matrices can be quantized");
  const std::int64_t rows = source.shape[0], cols = source.shape[1];
  check_quantizable(source.name, cols);
  auto p = std::make_unique<Planes>();
  const std::size_t row_bytes = quantized_row_bytes(format, cols);
  const auto blocks = static_cast<std::size_t>(cols / kQuantBlock);
  p->codes.resize(static_cast<std::size_t>(rows) * row_bytes);
  p->scales.resize(static_cast<std::size_t>(rows) * blocks);

  const std::int64_t workers = std::clamp<std::int64_t>(threads, 1, std::max<std::int64_t>(1, rows / 64));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(workers));
  for (std::int64_t t = 0; t < workers; ++t) {
    pool.emplace_back([&, t] {
      try {
        std::vector<float> row(static_cast<std::size_t>(cols));
        for (std::int64_t r = t; r < rows; r += workers) {
          const auto at = static_cast<std::size_t>(r);
          quantize_tensor_row(source, format, r, row, {p->codes.data() + at * row_bytes, row_bytes},
                              {p->scales.data() + at * blocks, blocks});
        }
      } catch (...) {
        errors[static_cast<std::size_t>(t)] = std::current_exception();
      }
    });
  }
  for (auto& w : pool) w.join();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }

  p->codes_view = {source.name, format == WeightFormat::Q8 ? DType::I8 : DType::U8,
                   {rows, static_cast<std::int64_t>(row_bytes)}, reinterpret_cast<const std::byte*>(p->codes.data()),
                   p->codes.size()};
  p->scales_view = {scale_tensor_name(source.name), DType::F16, {rows, static_cast<std::int64_t>(blocks)},
                    reinterpret_cast<const std::byte*>(p->scales.data()), p->scales.size() * sizeof(std::uint16_t)};
  bytes_ += p->codes.size() + p->scales.size() * sizeof(std::uint16_t);
  planes_.push_back(std::move(p));
  return {&planes_.back()->codes_view, &planes_.back()->scales_view};
}

}  // namespace voxtral
