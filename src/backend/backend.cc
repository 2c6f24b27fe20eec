#include "backend/backend.h"

#include <cassert>
#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"

namespace voxtral {

WeightFormat WeightPart::format() const {
  if (scales == nullptr) return WeightFormat::BF16;
  return values->dtype == DType::I8 ? WeightFormat::Q8 : WeightFormat::Q4;
}

std::int64_t WeightPart::rows() const { return values->shape.empty() ? 1 : values->shape[0]; }

std::int64_t WeightPart::cols() const {
  if (scales != nullptr) return scales->shape[1] * kQuantBlock;
  std::int64_t n = 1;
  for (std::size_t i = 1; i < values->shape.size(); ++i) n *= values->shape[i];
  return n;
}

Weight Backend::load_weight(std::span<const TensorView* const> parts, WeightUse use) {
  std::vector<WeightPart> plain;
  plain.reserve(parts.size());
  for (const TensorView* p : parts) plain.push_back(WeightPart{p, nullptr});
  return load_weight(std::span<const WeightPart>(plain), use);
}

std::size_t elem_size(ElemType type) {
  switch (type) {
    case ElemType::F32: return 4;
    case ElemType::BF16: return 2;
    case ElemType::F16: return 2;
    case ElemType::I32: return 4;
  }
  return 0;
}

void check_kv_rows(const char* backend, const char* op, const KvRows& rows, std::int64_t n, const KvCacheLayout& cache) {
  const int page = cache.rows_per_page();
  if (cache.capacity <= 0 || page <= 0 || cache.capacity % page != 0) {
    fail(backend, cat(op, ": cache capacity ", cache.capacity, " is not a whole number of ", page, "-row pages"));
  }
  auto column = [](const Tensor& t, std::int64_t count) {
    return t.type == ElemType::I32 && t.rows == count && t.cols == 1 && t.stride == 1 && t.data != nullptr;
  };
  if (!column(rows.positions, n) || !column(rows.sequences, n)) {
    fail(backend, cat(op, ": want one I32 position and sequence for each of the ", n, " rows"));
  }
  if (rows.page_table.type != ElemType::I32 || rows.page_table.cols != cache.pages_per_sequence() ||
      rows.page_table.rows < 1 || !rows.page_table.contiguous() || rows.page_table.data == nullptr) {
    fail(backend, cat(op, ": page table must be I32 [sequences, ", cache.pages_per_sequence(), "]"));
  }
}

void check_rope_kv_shapes(const char* backend, const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                          const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                          const Tensor& k_cache, const Tensor& v_cache) {
  const std::int64_t kv_width = static_cast<std::int64_t>(cache.n_kv_heads) * cache.head_dim;
  if (k.cols != kv_width || v.cols != kv_width || q.cols != static_cast<std::int64_t>(q_rope.n_heads) * q_rope.head_dim ||
      k.rows != q.rows || v.rows != q.rows || k_cache.cols != kv_width || v_cache.cols != kv_width ||
      k_cache.rows % cache.rows_per_page() != 0 || v_cache.rows != k_cache.rows || k_cache.rows == 0 ||
      q_rope.head_dim != k_rope.head_dim || k_cache.type != cache.type || v_cache.type != cache.type) {
    fail(backend, "rope_kv_append: shape mismatch");
  }
  check_kv_rows(backend, "rope_kv_append", rows, q.rows, cache);
}

std::int64_t kv_cache_row(const KvCacheLayout& cache, const std::int32_t* page_table, std::int32_t sequence,
                          std::int64_t position) {
  const int page = cache.rows_per_page();
  const std::int64_t ring = position % cache.capacity;
  const std::int32_t physical = page_table[static_cast<std::int64_t>(sequence) * cache.pages_per_sequence() + ring / page];
  return static_cast<std::int64_t>(physical) * page + ring % page;
}

float rope_inverse_frequency(double theta, int head_dim, int pair) {
  return static_cast<float>(1.0 / std::pow(theta, (2.0 * pair) / head_dim));
}

Tensor Tensor::row_range(std::int64_t first, std::int64_t count) const {
  assert(first >= 0 && count >= 0 && first + count <= rows);
  Tensor t = *this;
  t.data = static_cast<char*>(data) + static_cast<std::size_t>(first * stride) * elem_size(type);
  t.rows = count;
  return t;
}

Tensor Tensor::col_range(std::int64_t first, std::int64_t count) const {
  assert(first >= 0 && count >= 0 && first + count <= cols);
  Tensor t = *this;
  t.data = static_cast<char*>(data) + static_cast<std::size_t>(first) * elem_size(type);
  t.cols = count;
  return t;
}

Tensor Tensor::reshaped(std::int64_t new_rows, std::int64_t new_cols) const {
  assert(contiguous() && new_rows * new_cols == rows * cols);
  Tensor t = *this;
  t.rows = new_rows;
  t.cols = new_cols;
  t.stride = new_cols;
  return t;
}

DeviceBuffer::DeviceBuffer(Backend& backend, ElemType type, std::int64_t rows, std::int64_t cols)
    : backend_(&backend) {
  const auto bytes = static_cast<std::size_t>(rows * cols) * elem_size(type);
  view_ = Tensor{backend.allocate(bytes == 0 ? 1 : bytes), type, rows, cols, cols};
}

DeviceBuffer::~DeviceBuffer() {
  if (backend_ != nullptr && view_.data != nullptr) backend_->deallocate(view_.data);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : backend_(std::exchange(other.backend_, nullptr)), view_(std::exchange(other.view_, Tensor{})) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (backend_ != nullptr && view_.data != nullptr) backend_->deallocate(view_.data);
    backend_ = std::exchange(other.backend_, nullptr);
    view_ = std::exchange(other.view_, Tensor{});
  }
  return *this;
}

}  // namespace voxtral
