// A paged K/V cache (backend.h, KvCacheLayout) for every layer of a model: the pages' K and V
// storage, which physical page each logical page of each sequence uses, the free pages, and
// the page table in backend memory that the attention ops read. Pages are taken as a
// sequence's positions grow and given back when it restarts or ends, so a pool serves many
// streams of different lengths. The decoder and the encoder pools each own one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"

namespace voxtral {

// No room for another stream: every sequence of a pool is taken, or a cache has no free page.
// A front end answers it as "busy, try again" (the server: 503 server_busy).
class BusyError : public Error {
 public:
  using Error::Error;
};

class KvPages {
 public:
  // `pages` physical pages, each holding layout.rows_per_page() positions of K and of V
  // (layout.type, n_kv_heads * head_dim values each) in every one of `layers` layers, for
  // `sequences` sequences of `layout`'s ring. `what` names the cache in errors ("decoder",
  // "encoder"). Error on a bad size; the backend's error when the storage does not fit.
  KvPages(Backend& backend, const KvCacheLayout& layout, int layers, int sequences, std::int64_t pages,
          std::string what);

  // Gives the sequence pages for positions [first, last] (a ring: positions a capacity apart
  // share a page) and uploads its page-table row when it changed. Error when none is free.
  void reserve(int sequence, std::int64_t first, std::int64_t last);
  // Gives every page of the sequence back.
  void release(int sequence);
  // Maps every logical page of the sequence to one page, taken out of the free list, and
  // zeroes that page's K and V in every layer (a padding sequence whose writes all land there
  // and whose attention must read finite values). Error when no page is free.
  void pin_to_one_page(int sequence);

  // The K and V of the sequence's positions [0, count) in every layer, copied out into a new
  // buffer ([2 * layers * count, n_kv_heads * head_dim]: layer l's K rows, then its V rows),
  // and back into a sequence's pages (taken as reserve() does: BusyError when none is free).
  // For states every sequence starts with (model/left_pad.h). Error unless 0 < count <=
  // capacity and the saved sequence holds those positions.
  DeviceBuffer save(int sequence, std::int64_t count) const;
  void load(int sequence, std::int64_t count, const DeviceBuffer& from);

  // A layer's caches, [pages() * layout.rows_per_page(), n_kv_heads * head_dim] in backend
  // memory: physical page p holds rows [p * rows_per_page, (p + 1) * rows_per_page).
  Tensor k_cache(int layer) const;
  Tensor v_cache(int layer) const;
  // Bytes of backend memory the K and V storage holds (the page table not counted).
  std::size_t bytes() const;

  std::int64_t pages() const { return pages_; }  // all physical pages, pinned ones included
  std::int64_t in_use() const;
  const Tensor& table() const { return table_.view(); }

 private:
  void release_locked(int sequence);
  // Copies positions [0, count) of the sequence between its pages and `buffer` (save: out).
  void copy_positions(int sequence, std::int64_t count, const Tensor& buffer, bool save) const;
  std::int64_t layer_rows() const { return pages_ * layout_.rows_per_page(); }

  Backend& backend_;
  KvCacheLayout layout_;
  int layers_;
  std::int64_t pages_;
  std::int64_t pinned_ = 0;  // pages held by padding sequences (not the streams')
  std::string what_;
  mutable std::mutex mutex_;
  std::vector<std::int32_t> free_;
  std::vector<std::int32_t> host_;  // [sequences, pages_per_sequence], -1 = none
  DeviceBuffer table_;              // I32 [sequences, pages_per_sequence]
  DeviceBuffer caches_;             // [2 * layers * pages_ * rows_per_page, kv width]: layer l's K, then its V
};

}  // namespace voxtral
