#include "server/realtime_events.h"

#include <nlohmann/json.hpp>

#include "server/base64.h"
#include "server/pcm.h"

namespace voxtral {

namespace {

using nlohmann::json;

// vLLM's events are flat (ours carry one nested object, turn_detection).
constexpr int kMaxDepth = 4;

void dispatch(const json& event, RealtimeEventSink& sink) {
  if (!event.is_object()) {
    return sink.on_error({"an event must be a JSON object, not " + std::string(event.type_name()), "invalid_event", ""});
  }
  const auto type = optional_field<std::string>(event, "type");
  if (!type) return sink.on_error({"an event needs a string `type`", "invalid_event", "type"});
  if (*type == "session.update") {
    VllmSessionUpdate update;
    update.model = optional_field<std::string>(event, "model", Null::absent);
    optional_field<std::string>(event, "language", Null::absent);
    optional_field<std::string>(event, "prompt", Null::absent);
    update.sample_rate = optional_field<int>(event, "sample_rate", Null::absent);
    if (update.sample_rate && (*update.sample_rate < kMinSessionRate || *update.sample_rate > kMaxSessionRate)) {
      throw FieldError{{"`sample_rate` " + std::to_string(*update.sample_rate) + " Hz cannot be honoured: from " +
                            std::to_string(kMinSessionRate) + " to " + std::to_string(kMaxSessionRate) + " Hz",
                        "invalid_value", "sample_rate"}};
    }
    if (const auto it = event.find("turn_detection"); it != event.end()) {
      update.turn_detection_given = true;
      if (!it->is_null()) update.turn_detection = turn_detection_field(*it, "turn_detection");
    }
    return sink.on_session_update(update);
  }
  if (*type == "input_audio_buffer.append") {
    const auto bytes = base64_decode(required_string(event, "audio"));
    auto samples = bytes ? decode_pcm(*bytes, PcmEncoding::Pcm16) : std::nullopt;
    if (!samples) {
      return sink.on_error({"`audio` must be base64 of 16-bit PCM samples (an even, non-zero number of bytes)",
                            "invalid_audio", "audio"});
    }
    return sink.on_append(std::move(*samples));
  }
  if (*type == "input_audio_buffer.commit") {
    return sink.on_commit(optional_field<bool>(event, "final").value_or(false));
  }
  sink.on_error({"unknown event type `" + shortened(*type) + "`", "unknown_event", "type"});
}

}  // namespace

void dispatch_realtime_event(std::string_view message, RealtimeEventSink& sink) {
  RealtimeError error;
  const auto event = parse_event(message, kMaxDepth, error);
  if (!event) return sink.on_error(error);
  try {
    dispatch(*event, sink);
  } catch (const FieldError& e) {
    sink.on_error(e.error);
  }
}

}  // namespace voxtral
