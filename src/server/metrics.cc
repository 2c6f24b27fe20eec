#include "server/metrics.h"

#include <sstream>

namespace voxtral {

std::string prometheus_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::error(const std::string& kind) {
  std::lock_guard lock(mutex_);
  ++errors_[kind];
}

std::string Metrics::prometheus(const SchedulerCounters& engine) const {
  std::ostringstream out;
  std::lock_guard lock(mutex_);
  out << "# HELP voxtral_requests_total HTTP requests and WebSocket sessions, by endpoint and status.\n"
         "# TYPE voxtral_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    out << "voxtral_requests_total{endpoint=\"" << prometheus_label_value(key.first) << "\",status=\"" << key.second << "\"} " << n << "\n";
  }
  out << "# HELP voxtral_errors_total Failed requests and protocol errors, by kind.\n"
         "# TYPE voxtral_errors_total counter\n";
  for (const auto& [kind, n] : errors_) out << "voxtral_errors_total{kind=\"" << prometheus_label_value(kind) << "\"} " << n << "\n";
  out << "# HELP voxtral_active_streams Transcriptions running on the engine (uploads and live sessions).\n"
         "# TYPE voxtral_active_streams gauge\n"
      << "voxtral_active_streams " << engine.active_jobs << "\n"
      << "# HELP voxtral_realtime_sessions Open realtime WebSocket sessions.\n"
         "# TYPE voxtral_realtime_sessions gauge\n"
      << "voxtral_realtime_sessions " << realtime_sessions_.load() << "\n"
      << "# HELP voxtral_audio_seconds_total Seconds of audio transcribed.\n"
         "# TYPE voxtral_audio_seconds_total counter\n"
      << "voxtral_audio_seconds_total " << engine.audio_seconds << "\n"
      << "# HELP voxtral_decode_step_milliseconds Decoder step time.\n"
         "# TYPE voxtral_decode_step_milliseconds summary\n"
      << "voxtral_decode_step_milliseconds_sum " << engine.decode_ms << "\n"
      << "voxtral_decode_step_milliseconds_count " << engine.decode_steps << "\n"
      << "# HELP voxtral_engine_failures_total Transcriptions the engine could not complete.\n"
         "# TYPE voxtral_engine_failures_total counter\n"
      << "voxtral_engine_failures_total " << engine.failures << "\n";
  return out.str();
}

}  // namespace voxtral
