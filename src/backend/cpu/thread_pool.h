// A fixed pool of worker threads for the CPU kernels. The calling thread works too, so a
// pool of size 1 runs everything inline.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace voxtral {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls body(begin, end) on disjoint chunks covering [0, n), chunks of `grain` items
  // taken dynamically by all threads. Returns when every chunk is done. Not reentrant.
  void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& body);

 private:
  void worker_loop();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
  int busy_ = 0;

  const std::function<void(std::int64_t, std::int64_t)>* body_ = nullptr;
  std::int64_t total_ = 0;
  std::int64_t grain_ = 1;
  std::atomic<std::int64_t> next_{0};
};

}  // namespace voxtral
