// Counters for GET /metrics, in Prometheus' text format.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "runtime/scheduler.h"

namespace voxtral {

// A label value in Prometheus' text format: backslash, double quote and line feed escaped.
std::string prometheus_label_value(std::string_view value);

// Label values come from fixed sets (the route table's labels, the server's error kinds):
// series never multiply with what clients send.
class Metrics {
 public:
  void request(const std::string& endpoint, int status);
  void error(const std::string& kind);
  void realtime_opened() { ++realtime_sessions_; }
  void realtime_closed() { --realtime_sessions_; }
  int realtime_sessions() const { return realtime_sessions_; }
  std::string prometheus(const SchedulerCounters& engine) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, long long> requests_;
  std::map<std::string, long long> errors_;
  std::atomic<int> realtime_sessions_{0};
};

}  // namespace voxtral
