// Feeds arbitrary bytes to the OpenAI realtime parser (server/openai_events.h) as one
// WebSocket message. Nothing may escape it, it must call the sink exactly once, every value
// it hands on must be within its documented range, and every error must serialize to JSON
// that parses back, however the client's bytes are quoted in it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/json_text.h"
#include "server/openai_events.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

void check_serializable(const std::string& message, const std::string& code, const std::string& param,
                        const std::string& event_id) {
  const std::string text = voxtral::json_text(
      {{"type", "error"}, {"error", {{"message", message}, {"code", code}, {"param", param}, {"event_id", event_id}}}});
  const auto back = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  check(back.is_object() && back["error"]["code"] == code);
}

struct Sink : voxtral::OpenAiEventSink {
  int calls = 0;
  void on_session_update(const voxtral::OpenAiSessionUpdate& update, const std::string& event_id) override {
    ++calls;
    check(event_id.size() <= 131);
    if (update.format) {
      check(update.format->rate >= voxtral::kMinSessionRate && update.format->rate <= voxtral::kMaxSessionRate);
    }
    if (update.turn_detection) voxtral::validate(*update.turn_detection);  // throws (the fuzzer stops) when out of range
    if (update.model) check_serializable("the model `" + voxtral::shortened(*update.model) + "`", "model_not_found", "", event_id);
  }
  void on_append(std::string bytes, const std::string&) override {
    ++calls;
    check(!bytes.empty());
    for (const auto encoding : {voxtral::PcmEncoding::Pcm16, voxtral::PcmEncoding::Mulaw, voxtral::PcmEncoding::Alaw}) {
      if (const auto samples = voxtral::decode_pcm(bytes, encoding)) {
        for (const float s : *samples) check(s >= -1.0f && s < 1.0f);
      }
    }
  }
  void on_commit(const std::string&) override { ++calls; }
  void on_clear(const std::string&) override { ++calls; }
  void on_error(const voxtral::RealtimeError& error, const std::string& event_id) override {
    ++calls;
    static const std::set<std::string> kCodes = {"invalid_json",  "invalid_event",  "unknown_event",    "invalid_type",
                                                 "missing_field", "invalid_audio",  "invalid_value", "unsupported_event"};
    check(kCodes.contains(error.code));
    check(!error.message.empty() && error.message.size() < 512);
    check_serializable(error.message, error.code, error.param, event_id);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Sink sink;
  voxtral::dispatch_openai_event(std::string_view(reinterpret_cast<const char*>(data), size), sink);
  check(sink.calls == 1);
  return 0;
}
