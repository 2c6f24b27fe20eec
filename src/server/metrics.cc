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
  // One unlabelled series: its HELP and TYPE lines, then its value.
  auto series = [&](const char* name, const char* type, const char* help, auto value) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
  };
  // A summary: HELP and TYPE, then its _sum and _count.
  auto summary = [&](const char* name, const char* help, double sum, std::int64_t count) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " summary\n"
        << name << "_sum " << sum << "\n" << name << "_count " << count << "\n";
  };
  series("voxtral_active_streams", "gauge", "Transcriptions running on the engine (uploads and live sessions).",
         engine.active_jobs);
  series("voxtral_realtime_sessions", "gauge", "Open realtime WebSocket sessions.", realtime_sessions_.load());
  series("voxtral_audio_seconds_total", "counter", "Seconds of audio transcribed.", engine.audio_seconds);
  summary("voxtral_decode_step_milliseconds", "Decoder step time.", engine.decode_ms, engine.decode_steps);
  series("voxtral_decoded_positions_total", "counter",
         "Stream positions decoded (tokens; speculative rows that held included).", engine.decoded_positions);
  series("voxtral_decoder_step_rows_total", "counter",
         "Rows the decoder steps computed, speculative ones included; over the steps, the mean batch.",
         engine.decoded_rows);
  series("voxtral_batch_rows", "gauge", "Streams in the latest decoder step.", engine.last_batch);
  summary("voxtral_tick_milliseconds", "Scheduler ticks with work: input, encoders and one batched step.", engine.tick_ms,
          engine.ticks);
  summary("voxtral_queue_delay_milliseconds", "Time a stream's ready position waited for its step.", engine.queue_ms,
          engine.stepped_streams);
  series("voxtral_queue_delay_max_milliseconds", "gauge", "The longest such wait since the start.", engine.max_queue_ms);
  series("voxtral_max_streams", "gauge", "Transcriptions the server runs at once.", engine.max_jobs);
  out << "# HELP voxtral_kv_cache_pages K/V cache pages of the decoder, in use and in all.\n"
         "# TYPE voxtral_kv_cache_pages gauge\n"
      << "voxtral_kv_cache_pages{state=\"used\"} " << engine.kv_pages_in_use << "\n"
      << "voxtral_kv_cache_pages{state=\"total\"} " << engine.kv_pages << "\n";
  series("voxtral_engine_failures_total", "counter", "Transcriptions the engine could not complete.", engine.failures);
  return out.str();
}

}  // namespace voxtral
