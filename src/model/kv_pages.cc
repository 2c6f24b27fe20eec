#include "model/kv_pages.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace voxtral {

KvPages::KvPages(Backend& backend, const KvCacheLayout& layout, int layers, int sequences, std::int64_t pages,
                 std::string what)
    : backend_(backend), layout_(layout), layers_(layers), pages_(pages), what_(std::move(what)) {
  if (pages < 1 || pages > std::numeric_limits<std::int32_t>::max() || sequences < 1 || layers < 1) {
    fail(what_, cat("bad K/V page pool (", pages, " pages, ", sequences, " sequences, ", layers, " layers)"));
  }
  caches_ = DeviceBuffer(backend, layout_.type, 2 * layers * layer_rows(),
                         static_cast<std::int64_t>(layout_.n_kv_heads) * layout_.head_dim);
  free_.reserve(static_cast<std::size_t>(pages));
  for (std::int64_t p = pages - 1; p >= 0; --p) free_.push_back(static_cast<std::int32_t>(p));
  const int per_sequence = layout_.pages_per_sequence();
  host_.assign(static_cast<std::size_t>(sequences) * static_cast<std::size_t>(per_sequence), -1);
  table_ = DeviceBuffer(backend, ElemType::I32, sequences, per_sequence);
  // Unmapped entries are never read (attention reads positions already appended), but keep
  // them in range anyway.
  std::vector<std::int32_t> zeros(host_.size(), 0);
  backend.copy_to_device(table_.view(), zeros.data());
}

Tensor KvPages::k_cache(int layer) const { return caches_.view().row_range(2 * layer * layer_rows(), layer_rows()); }

Tensor KvPages::v_cache(int layer) const {
  return caches_.view().row_range((2 * layer + 1) * layer_rows(), layer_rows());
}

std::size_t KvPages::bytes() const {
  return static_cast<std::size_t>(caches_.view().numel()) * elem_size(caches_.view().type);
}

std::int64_t KvPages::in_use() const {
  std::lock_guard lock(mutex_);
  return pages_ - static_cast<std::int64_t>(free_.size());
}

void KvPages::reserve(int sequence, std::int64_t first, std::int64_t last) {
  const int per_sequence = layout_.pages_per_sequence();
  const int page = layout_.rows_per_page();
  std::lock_guard lock(mutex_);
  auto* row = host_.data() + static_cast<std::ptrdiff_t>(sequence) * per_sequence;
  bool changed = false;
  // Positions past the ring reuse its pages: one ring's worth covers any span.
  const std::int64_t count = std::min<std::int64_t>(last - first + 1, layout_.capacity);
  for (std::int64_t p = first; p < first + count; p += page - (p % page)) {
    const auto logical = static_cast<std::size_t>((p % layout_.capacity) / page);
    if (row[logical] >= 0) continue;
    if (free_.empty()) {
      // (No option named: front ends name theirs, the CLI's flags or the C API's fields.)
      throw BusyError(cat(what_, ": the K/V cache is full: all ", pages_ - pinned_, " pages of ", page,
                          " positions are in use"));
    }
    row[logical] = free_.back();
    free_.pop_back();
    changed = true;
  }
  if (changed) backend_.copy_to_device(table_.view().row_range(sequence, 1), row);
}

void KvPages::release_locked(int sequence) {
  const int per_sequence = layout_.pages_per_sequence();
  auto* row = host_.data() + static_cast<std::ptrdiff_t>(sequence) * per_sequence;
  for (int i = 0; i < per_sequence; ++i) {
    if (row[i] >= 0 && std::find(row, row + i, row[i]) == row + i) free_.push_back(row[i]);  // a pinned page once
    row[i] = -1;
  }
}

void KvPages::release(int sequence) {
  std::lock_guard lock(mutex_);
  release_locked(sequence);
}

void KvPages::pin_to_one_page(int sequence) {
  const int per_sequence = layout_.pages_per_sequence();
  std::lock_guard lock(mutex_);
  release_locked(sequence);
  if (free_.empty()) fail(what_, "no K/V page for the padding sequence");
  const std::int32_t page = free_.back();
  free_.pop_back();
  ++pinned_;
  auto* row = host_.data() + static_cast<std::ptrdiff_t>(sequence) * per_sequence;
  std::fill_n(row, per_sequence, page);
  backend_.copy_to_device(table_.view().row_range(sequence, 1), row);
  const std::int64_t rows = layout_.rows_per_page();
  for (int l = 0; l < layers_; ++l) {
    backend_.fill_zero(k_cache(l).row_range(page * rows, rows));
    backend_.fill_zero(v_cache(l).row_range(page * rows, rows));
  }
}

void KvPages::copy_positions(int sequence, std::int64_t count, const Tensor& buffer, bool save) const {
  if (count <= 0 || count > layout_.capacity) fail(what_, cat("K/V copy of ", count, " positions"));
  const int per_sequence = layout_.pages_per_sequence();
  const int page = layout_.rows_per_page();
  std::vector<std::int32_t> physical(static_cast<std::size_t>(per_sequence));
  {
    std::lock_guard lock(mutex_);
    std::copy_n(host_.begin() + static_cast<std::ptrdiff_t>(sequence) * per_sequence, per_sequence, physical.begin());
  }
  for (std::int64_t p = 0; p < count; p += page - p % page) {
    const std::int32_t at = physical[static_cast<std::size_t>(p / page)];
    if (at < 0) fail(what_, cat("K/V copy: position ", p, " of sequence ", sequence, " has no page"));
    const std::int64_t rows = std::min<std::int64_t>(page - p % page, count - p);
    const std::int64_t cache_row = static_cast<std::int64_t>(at) * page + p % page;
    for (int l = 0; l < layers_; ++l) {
      const Tensor k = k_cache(l).row_range(cache_row, rows), v = v_cache(l).row_range(cache_row, rows);
      const Tensor saved_k = buffer.row_range(2 * l * count + p, rows);
      const Tensor saved_v = buffer.row_range((2 * l + 1) * count + p, rows);
      if (save) {
        backend_.copy(k, saved_k);
        backend_.copy(v, saved_v);
      } else {
        backend_.copy(saved_k, k);
        backend_.copy(saved_v, v);
      }
    }
  }
}

DeviceBuffer KvPages::save(int sequence, std::int64_t count) const {
  DeviceBuffer buffer(backend_, layout_.type, 2 * layers_ * count, static_cast<std::int64_t>(layout_.n_kv_heads) * layout_.head_dim);
  copy_positions(sequence, count, buffer.view(), true);
  return buffer;
}

void KvPages::load(int sequence, std::int64_t count, const DeviceBuffer& from) {
  if (from.view().rows != 2 * layers_ * count) fail(what_, "K/V load: the saved positions do not match");
  reserve(sequence, 0, count - 1);
  copy_positions(sequence, count, from.view(), false);
}

}  // namespace voxtral
