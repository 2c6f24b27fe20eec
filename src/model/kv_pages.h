// The page bookkeeping of a paged K/V cache (backend.h, KvCacheLayout): which physical page
// each logical page of each sequence uses, the free pages, and the page table in backend
// memory that the attention ops read. Pages are taken as a sequence's positions grow and
// given back when it restarts or ends, so a pool serves many streams of different lengths.
#pragma once

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
  // `pages` physical pages for `sequences` sequences of `layout`'s ring; `what` names the
  // cache in errors ("decoder", "encoder").
  KvPages(Backend& backend, const KvCacheLayout& layout, int sequences, std::int64_t pages, std::string what);

  // Gives the sequence pages for positions [first, last] (a ring: positions a capacity apart
  // share a page) and uploads its page-table row when it changed. Error when none is free.
  void reserve(int sequence, std::int64_t first, std::int64_t last);
  // Gives every page of the sequence back.
  void release(int sequence);
  // Maps every logical page of the sequence to one page, taken out of the free list (a
  // padding sequence whose writes all land there).
  void pin_to_one_page(int sequence);

  std::int64_t pages() const { return pages_; }  // all physical pages, pinned ones included
  std::int64_t in_use() const;
  const Tensor& table() const { return table_.view(); }

 private:
  void release_locked(int sequence);

  Backend& backend_;
  KvCacheLayout layout_;
  std::int64_t pages_;
  std::int64_t pinned_ = 0;  // pages held by padding sequences (not the streams')
  std::string what_;
  mutable std::mutex mutex_;
  std::vector<std::int32_t> free_;
  std::vector<std::int32_t> host_;  // [sequences, pages_per_sequence], -1 = none
  DeviceBuffer table_;              // I32 [sequences, pages_per_sequence]
};

}  // namespace voxtral
