// Graceful shutdown shared by every connection. On SIGTERM/SIGINT the server stops accepting
// and begins draining: requests already running go on, new requests on open connections get
// 503, and once the grace period (--shutdown-timeout) ends every registered session is
// aborted (an HTTP request still running answers 503, a realtime session closes with 1001).
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

namespace voxtral {

class Lifecycle {
 public:
  using Id = std::uint64_t;

  // Registers `abort`, called once (on any thread) when the grace period ends; the session
  // must post onto its own strand. Returns an id for forget(). If the abort already
  // happened, `abort` is called at once.
  Id on_abort(std::function<void()> abort) {
    std::unique_lock lock(mutex_);
    if (aborted_) {
      lock.unlock();
      abort();
      return 0;
    }
    const Id id = ++next_;
    sessions_.emplace(id, std::move(abort));
    return id;
  }
  void forget(Id id) {
    std::lock_guard lock(mutex_);
    sessions_.erase(id);
  }
  std::size_t active() const {
    std::lock_guard lock(mutex_);
    return sessions_.size();
  }
  bool draining() const { return draining_.load(); }
  void begin_drain() { draining_ = true; }
  // Calls every registered abort; later registrations abort at once.
  void abort_all() {
    std::map<Id, std::function<void()>> sessions;
    {
      std::lock_guard lock(mutex_);
      draining_ = true;
      aborted_ = true;
      sessions.swap(sessions_);
    }
    for (auto& [id, abort] : sessions) abort();
  }

 private:
  mutable std::mutex mutex_;
  std::map<Id, std::function<void()>> sessions_;
  Id next_ = 0;
  std::atomic<bool> draining_{false};
  bool aborted_ = false;
};

}  // namespace voxtral
