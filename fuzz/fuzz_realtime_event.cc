// Feeds arbitrary bytes to the realtime protocol's event handler as one WebSocket message.
// Nothing may escape it (an exception there would end the server), it must call the sink
// exactly once, and every error it reports must serialize (json_text) to JSON that parses
// back, however the client's bytes are quoted in it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/json_text.h"
#include "server/pcm.h"
#include "server/realtime_events.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

// The error event as the server writes it.
void check_serializable(const std::string& message, const std::string& code, const std::string& param) {
  const std::string text = voxtral::json_text({{"type", "error"}, {"error", message}, {"code", code}, {"param", param}});
  const auto back = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  check(back.is_object() && back["code"] == code);
}

struct Sink : voxtral::RealtimeEventSink {
  int calls = 0;
  void on_session_update(const voxtral::VllmSessionUpdate& update) override {
    ++calls;
    // The session quotes a refused model name back.
    if (update.model) {
      check_serializable("the model `" + voxtral::shortened(*update.model) + "` is not served here", "model_not_found",
                         "model");
    }
    if (update.sample_rate) check(*update.sample_rate >= voxtral::kMinSessionRate && *update.sample_rate <= voxtral::kMaxSessionRate);
    if (update.turn_detection) voxtral::validate(*update.turn_detection);  // throws (and the fuzzer stops) if out of range
  }
  void on_append(std::vector<float> samples) override {
    ++calls;
    check(!samples.empty());
    for (const float s : samples) check(s >= -1.0f && s < 1.0f);
  }
  void on_commit(bool) override { ++calls; }
  void on_error(const voxtral::RealtimeError& error) override {
    ++calls;
    static const std::set<std::string> kCodes = {"invalid_json", "invalid_event", "unknown_event",
                                                 "invalid_type", "missing_field", "invalid_audio",
                                                 "invalid_value"};
    check(kCodes.contains(error.code));
    check(!error.message.empty() && error.message.size() < 256);
    check_serializable(error.message, error.code, error.param);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Sink sink;
  voxtral::dispatch_realtime_event(std::string_view(reinterpret_cast<const char*>(data), size), sink);
  check(sink.calls == 1);
  return 0;
}
