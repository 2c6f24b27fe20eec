#include "server/openai_events.h"

#include <nlohmann/json.hpp>

#include "server/base64.h"

namespace voxtral {

namespace {

using nlohmann::json;

// session.audio.input.format.rate is a value at depth 5.
constexpr int kMaxDepth = 8;

[[noreturn]] void refuse(std::string message, const std::string& param, const char* code = "invalid_value") {
  throw FieldError{{std::move(message), code, param}};
}

InputAudioFormat format_field(const json& value, const std::string& path) {
  if (value.is_string()) {
    const auto& name = value.get_ref<const std::string&>();
    if (name == "pcm16") return kOpenAiDefaultFormat;
    if (name == "g711_ulaw") return {PcmEncoding::Mulaw, 8000};
    if (name == "g711_alaw") return {PcmEncoding::Alaw, 8000};
    refuse("`" + path + "` `" + shortened(name) + "` is not a format served here: pcm16, g711_ulaw or g711_alaw", path);
  }
  if (!value.is_object()) refuse("`" + path + "` must be a string or an object, not " + value.type_name(), path, "invalid_type");
  const auto type = optional_field<std::string>(value, "type", Null::absent, path).value_or("audio/pcm");
  const auto rate = optional_field<int>(value, "rate", Null::absent, path);
  const std::string rate_path = path + ".rate";
  if (type == "audio/pcmu" || type == "audio/pcma") {
    if (rate && *rate != 8000) refuse("`" + rate_path + "`: G.711 audio is 8000 Hz", rate_path);
    return {type == "audio/pcmu" ? PcmEncoding::Mulaw : PcmEncoding::Alaw, 8000};
  }
  if (type != "audio/pcm") {
    refuse("`" + path + ".type` `" + shortened(type) + "` is not a format served here: audio/pcm, audio/pcmu or audio/pcma",
           path + ".type");
  }
  const int hz = rate.value_or(kOpenAiDefaultFormat.rate);
  if (hz < kMinSessionRate || hz > kMaxSessionRate) {
    refuse("`" + rate_path + "` " + std::to_string(hz) + " Hz cannot be honoured: from " +
               std::to_string(kMinSessionRate) + " to " + std::to_string(kMaxSessionRate) + " Hz",
           rate_path);
  }
  return {PcmEncoding::Pcm16, hz};
}

// {model, language, prompt}: strings or null.
std::optional<std::string> transcription_field(const json& value, const std::string& path) {
  if (value.is_null()) return std::nullopt;
  if (!value.is_object()) refuse("`" + path + "` must be an object or null, not " + value.type_name(), path, "invalid_type");
  optional_field<std::string>(value, "language", Null::absent, path);
  optional_field<std::string>(value, "prompt", Null::absent, path);
  return optional_field<std::string>(value, "model", Null::absent, path);
}

// Reads the fields of `object` (at `path`) named format/transcription/turn_detection in
// this shape into `update`.
void read_input(const json& object, const std::string& path, const char* format, const char* transcription,
                const char* noise_reduction, OpenAiSessionUpdate& update) {
  const auto join = [&](const char* name) { return path + "." + name; };
  if (const auto it = object.find(format); it != object.end() && !it->is_null()) {
    update.format = format_field(*it, join(format));
  }
  if (const auto it = object.find(transcription); it != object.end()) {
    if (auto model = transcription_field(*it, join(transcription))) update.model = std::move(model);
  }
  if (const auto it = object.find("turn_detection"); it != object.end()) {
    update.turn_detection_given = true;
    update.turn_detection.reset();
    if (!it->is_null()) update.turn_detection = turn_detection_field(*it, join("turn_detection"));
  }
  // Noise reduction: none is applied here (the model wants the signal as spoken); an object
  // or null is accepted and session.updated reports null.
  if (const auto it = object.find(noise_reduction); it != object.end() && !it->is_null() && !it->is_object()) {
    refuse("`" + join(noise_reduction) + "` must be an object or null, not " + it->type_name(), join(noise_reduction),
           "invalid_type");
  }
}

OpenAiSessionUpdate session_update(const json& event, bool beta) {
  OpenAiSessionUpdate update;
  update.beta = beta;
  const auto session = optional_field<json>(event, "session", Null::absent);
  if (!session) return update;
  if (const auto type = optional_field<std::string>(*session, "type", Null::absent, "session");
      type && *type != "transcription") {
    refuse("`session.type` `" + shortened(*type) + "` is not served: this server holds transcription sessions only "
               "(\"transcription\")",
           "session.type");
  }
  optional_field<std::string>(*session, "model", Null::absent, "session");
  read_input(*session, "session", "input_audio_format", "input_audio_transcription", "input_audio_noise_reduction",
             update);
  if (const auto audio = optional_field<json>(*session, "audio", Null::absent, "session")) {
    if (const auto input = optional_field<json>(*audio, "input", Null::absent, "session.audio")) {
      read_input(*input, "session.audio.input", "format", "transcription", "noise_reduction", update);
    }
  }
  return update;
}

bool conversation_event(std::string_view type) {
  return type.starts_with("response.") || type.starts_with("conversation.") || type.starts_with("output_audio_buffer.");
}

void dispatch(const json& event, const std::string& event_id, OpenAiEventSink& sink) {
  const auto type = optional_field<std::string>(event, "type");
  if (!type) return sink.on_error({"an event needs a string `type`", "invalid_event", "type"}, event_id);
  if (*type == "session.update" || *type == "transcription_session.update") {
    return sink.on_session_update(session_update(event, *type != "session.update"), event_id);
  }
  if (*type == "input_audio_buffer.append") {
    auto bytes = base64_decode(required_string(event, "audio"));
    if (!bytes) {
      return sink.on_error({"`audio` is not valid base64 (RFC 4648: A-Z a-z 0-9 + /, padded with = to a multiple of "
                            "4 characters)",
                            "invalid_audio", "audio"},
                           event_id);
    }
    if (bytes->empty()) {
      return sink.on_error({"`audio` is empty: an append carries audio bytes", "invalid_audio", "audio"}, event_id);
    }
    return sink.on_append(std::move(*bytes), event_id);
  }
  if (*type == "input_audio_buffer.commit") return sink.on_commit(event_id);
  if (*type == "input_audio_buffer.clear") return sink.on_clear(event_id);
  if (conversation_event(*type)) {
    // (built by appending: GCC 12 warns wrongly about "`" + ...)
    std::string message(1, '`');
    message.append(shortened(*type)).append("` is not served: this server holds transcription sessions (input audio in, "
                                            "its transcript out), not conversations");
    return sink.on_error({message, "unsupported_event", "type"}, event_id);
  }
  sink.on_error({"unknown event type `" + shortened(*type) + "`", "unknown_event", "type"}, event_id);
}

}  // namespace

void dispatch_openai_event(std::string_view message, OpenAiEventSink& sink) {
  RealtimeError error;
  const auto event = parse_event(message, kMaxDepth, error);
  if (!event) return sink.on_error(error, "");
  if (!event->is_object()) {
    return sink.on_error({"an event must be a JSON object, not " + std::string(event->type_name()), "invalid_event", ""},
                         "");
  }
  std::string event_id;
  try {
    event_id = optional_field<std::string>(*event, "event_id", Null::absent).value_or("");
  } catch (const FieldError& e) {
    return sink.on_error(e.error, "");
  }
  event_id = shortened(event_id, 128);
  try {
    dispatch(*event, event_id, sink);
  } catch (const FieldError& e) {
    sink.on_error(e.error, event_id);
  }
}

}  // namespace voxtral
