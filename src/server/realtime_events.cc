#include "server/realtime_events.h"

#include <cstdint>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "server/base64.h"

namespace voxtral {

namespace {

using nlohmann::json;

// An event is a flat object (vLLM's carry at most one nested object): anything deeper or
// larger is refused while parsing, before it takes memory (a 16 MiB message of `[[[[...` or
// `[0,0,...]` would otherwise become millions of JSON nodes).
constexpr int kMaxDepth = 4;
constexpr int kMaxValues = 1024;

struct FieldError {
  RealtimeError error;
};

template <class T>
constexpr const char* type_phrase() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean (true or false)";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  return "a number";
}

template <class T>
bool has_type(const json& value) {
  if constexpr (std::is_same_v<T, bool>) return value.is_boolean();
  if constexpr (std::is_same_v<T, std::string>) return value.is_string();
  return value.is_number();
}

enum class Null { refused, absent };  // whether `null` counts as an absent field

// The field `name` of `event` when present, nullopt when absent; present with another type
// (null too, unless `null` is Null::absent) throws FieldError naming the field.
template <class T>
std::optional<T> optional_field(const json& event, const char* name, Null null = Null::refused) {
  const auto it = event.find(name);
  if (it == event.end() || (it->is_null() && null == Null::absent)) return std::nullopt;
  if (!has_type<T>(*it)) {
    throw FieldError{{std::string("`") + name + "` must be " + type_phrase<T>() +
                          (null == Null::absent ? " or null" : "") + ", not " + it->type_name(),
                      "invalid_type", name}};
  }
  return it->template get<T>();
}

// A required string field, by reference (an append's audio may be 16 MiB: no copy).
const std::string& required_string(const json& event, const char* name) {
  const auto it = event.find(name);
  if (it == event.end()) throw FieldError{{std::string("`") + name + "` is required", "missing_field", name}};
  if (!it->is_string()) {
    throw FieldError{{std::string("`") + name + "` must be " + type_phrase<std::string>() + ", not " + it->type_name(),
                      "invalid_type", name}};
  }
  return it->get_ref<const std::string&>();
}

std::optional<json> parse_event(std::string_view message, RealtimeError& error) {
  bool too_complex = false;
  int values = 0;
  json::parser_callback_t limit = [&](int depth, json::parse_event_t event, json&) {
    if (event == json::parse_event_t::object_end || event == json::parse_event_t::array_end) return !too_complex;
    if (depth > kMaxDepth || ++values > kMaxValues) too_complex = true;
    return !too_complex;
  };
  json event = json::parse(message.begin(), message.end(), limit, /*allow_exceptions=*/false);
  if (event.is_discarded()) {
    error = {"the message is not valid JSON", "invalid_json", ""};
    return std::nullopt;
  }
  if (too_complex) {
    error = {"an event nests deeper than " + std::to_string(kMaxDepth) + " levels or holds more than " +
                 std::to_string(kMaxValues) + " values",
             "invalid_event", ""};
    return std::nullopt;
  }
  return event;
}

// 16-bit little-endian PCM as samples in [-1, 1).
std::vector<float> pcm16_samples(const std::string& bytes) {
  std::vector<float> samples(bytes.size() / 2);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto lo = static_cast<unsigned char>(bytes[2 * i]), hi = static_cast<unsigned char>(bytes[2 * i + 1]);
    samples[i] = static_cast<float>(static_cast<std::int16_t>(lo | (hi << 8))) / 32768.0f;
  }
  return samples;
}

void dispatch(const json& event, RealtimeEventSink& sink) {
  if (!event.is_object()) {
    return sink.on_error({"an event must be a JSON object, not " + std::string(event.type_name()), "invalid_event", ""});
  }
  const auto type = optional_field<std::string>(event, "type");
  if (!type) return sink.on_error({"an event needs a string `type`", "invalid_event", "type"});
  if (*type == "session.update") {
    // vLLM's fields: model, and (by version) language and prompt, each a string or null.
    // The model takes neither a language nor a prompt: they are checked, not used.
    auto model = optional_field<std::string>(event, "model", Null::absent);
    optional_field<std::string>(event, "language", Null::absent);
    optional_field<std::string>(event, "prompt", Null::absent);
    return sink.on_session_update(model);
  }
  if (*type == "input_audio_buffer.append") {
    const auto bytes = base64_decode(required_string(event, "audio"));
    if (!bytes || bytes->empty() || bytes->size() % 2 != 0) {
      return sink.on_error({"`audio` must be base64 of 16-bit PCM samples (an even, non-zero number of bytes)",
                            "invalid_audio", "audio"});
    }
    return sink.on_append(pcm16_samples(*bytes));
  }
  if (*type == "input_audio_buffer.commit") {
    return sink.on_commit(optional_field<bool>(event, "final").value_or(false));
  }
  sink.on_error({"unknown event type `" + shortened(*type) + "`", "unknown_event", "type"});
}

}  // namespace

std::string shortened(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  return std::string(text.substr(0, max_bytes)) + "...";
}

void dispatch_realtime_event(std::string_view message, RealtimeEventSink& sink) {
  RealtimeError error;
  const auto event = parse_event(message, error);
  if (!event) return sink.on_error(error);
  try {
    dispatch(*event, sink);
  } catch (const FieldError& e) {
    sink.on_error(e.error);
  }
}

}  // namespace voxtral
