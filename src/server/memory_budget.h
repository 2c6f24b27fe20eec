// A process-wide budget for the bytes that clients make the server hold (upload bodies,
// decoded audio, uncommitted realtime audio). A request that would pass it gets 503 (or an
// `error` event) instead of the process running out of memory. Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <utility>

namespace voxtral {

class MemoryBudget {
 public:
  explicit MemoryBudget(std::size_t limit_bytes = 0) : limit_(limit_bytes) {}
  void set_limit(std::size_t limit_bytes) { limit_ = limit_bytes; }
  std::size_t limit() const { return limit_; }  // 0: unlimited
  std::size_t used() const { return used_.load(); }

  // Takes `bytes` from the budget, or returns false (and takes nothing) if that would pass it.
  bool try_take(std::size_t bytes) {
    std::size_t now = used_.load();
    do {
      if (limit_ != 0 && (bytes > limit_ || now > limit_ - bytes)) return false;
    } while (!used_.compare_exchange_weak(now, now + bytes));
    return true;
  }
  void give_back(std::size_t bytes) { used_.fetch_sub(bytes); }

  // Bytes held from a budget, returned when this goes away. grow() takes more.
  class Hold {
   public:
    Hold() = default;
    explicit Hold(MemoryBudget* budget) : budget_(budget) {}
    Hold(Hold&& other) noexcept : budget_(other.budget_), bytes_(std::exchange(other.bytes_, 0)) {}
    Hold& operator=(Hold&& other) noexcept {
      if (this != &other) {
        reset();
        budget_ = other.budget_;
        bytes_ = std::exchange(other.bytes_, 0);
      }
      return *this;
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { reset(); }
    bool grow(std::size_t bytes) {
      if (!budget_ || !budget_->try_take(bytes)) return false;
      bytes_ += bytes;
      return true;
    }
    void reset() {
      if (budget_ && bytes_) budget_->give_back(bytes_);
      bytes_ = 0;
    }
    std::size_t bytes() const { return bytes_; }

   private:
    MemoryBudget* budget_ = nullptr;
    std::size_t bytes_ = 0;
  };

 private:
  std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

}  // namespace voxtral
