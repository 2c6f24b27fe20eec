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
      << "# HELP voxtral_decoded_positions_total Stream positions decoded; over the steps, the mean batch.\n"
         "# TYPE voxtral_decoded_positions_total counter\n"
      << "voxtral_decoded_positions_total " << engine.decoded_rows << "\n"
      << "# HELP voxtral_batch_rows Streams in the latest decoder step.\n"
         "# TYPE voxtral_batch_rows gauge\n"
      << "voxtral_batch_rows " << engine.last_batch << "\n"
      << "# HELP voxtral_tick_milliseconds Scheduler ticks with work: input, encoders and one batched step.\n"
         "# TYPE voxtral_tick_milliseconds summary\n"
      << "voxtral_tick_milliseconds_sum " << engine.tick_ms << "\n"
      << "voxtral_tick_milliseconds_count " << engine.ticks << "\n"
      << "# HELP voxtral_queue_delay_milliseconds Time a stream's ready position waited for its step.\n"
         "# TYPE voxtral_queue_delay_milliseconds summary\n"
      << "voxtral_queue_delay_milliseconds_sum " << engine.queue_ms << "\n"
      << "voxtral_queue_delay_milliseconds_count " << engine.decoded_rows << "\n"
      << "# HELP voxtral_queue_delay_max_milliseconds The longest such wait since the start.\n"
         "# TYPE voxtral_queue_delay_max_milliseconds gauge\n"
      << "voxtral_queue_delay_max_milliseconds " << engine.max_queue_ms << "\n"
      << "# HELP voxtral_max_streams Transcriptions the server runs at once.\n"
         "# TYPE voxtral_max_streams gauge\n"
      << "voxtral_max_streams " << engine.max_jobs << "\n"
      << "# HELP voxtral_kv_cache_pages K/V cache pages of the decoder, in use and in all.\n"
         "# TYPE voxtral_kv_cache_pages gauge\n"
      << "voxtral_kv_cache_pages{state=\"used\"} " << engine.kv_pages_in_use << "\n"
      << "voxtral_kv_cache_pages{state=\"total\"} " << engine.kv_pages << "\n"
      << "# HELP voxtral_engine_failures_total Transcriptions the engine could not complete.\n"
         "# TYPE voxtral_engine_failures_total counter\n"
      << "voxtral_engine_failures_total " << engine.failures << "\n";
  return out.str();
}

}  // namespace voxtral
