#include "server/event_fields.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace voxtral {

using nlohmann::json;

namespace {
constexpr int kMaxValues = 1024;
}  // namespace

std::string shortened(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  return std::string(text.substr(0, max_bytes)) + "...";
}

std::string detail::join(std::string_view path, std::string_view name) {
  return path.empty() ? std::string(name) : std::string(path) + "." + std::string(name);
}

std::optional<json> parse_event(std::string_view message, int max_depth, RealtimeError& error) {
  bool too_complex = false;
  int values = 0;
  json::parser_callback_t limit = [&](int depth, json::parse_event_t event, json&) {
    if (event == json::parse_event_t::object_end || event == json::parse_event_t::array_end) return !too_complex;
    if (depth > max_depth || ++values > kMaxValues) too_complex = true;
    return !too_complex;
  };
  json event = json::parse(message.begin(), message.end(), limit, /*allow_exceptions=*/false);
  if (event.is_discarded()) {
    error = {"the message is not valid JSON", "invalid_json", ""};
    return std::nullopt;
  }
  if (too_complex) {
    error = {"an event nests deeper than " + std::to_string(max_depth) + " levels or holds more than " +
                 std::to_string(kMaxValues) + " values",
             "invalid_event", ""};
    return std::nullopt;
  }
  return event;
}

const std::string& required_string(const json& event, const char* name) {
  const auto it = event.find(name);
  if (it == event.end()) throw FieldError{{std::string("`") + name + "` is required", "missing_field", name}};
  if (!it->is_string()) {
    throw FieldError{{std::string("`") + name + "` must be a string, not " + it->type_name(), "invalid_type", name}};
  }
  return it->get_ref<const std::string&>();
}

TurnDetectionOptions turn_detection_field(const json& value, std::string_view path) {
  const std::string where(path);
  if (!value.is_object()) {
    throw FieldError{{"`" + where + "` must be an object or null, not " + value.type_name(), "invalid_type", where}};
  }
  const auto type = optional_field<std::string>(value, "type", Null::refused, path).value_or("server_vad");
  if (type != "server_vad") {
    throw FieldError{{"`" + where + ".type` `" + shortened(type) + "` is not supported here: use \"server_vad\" or null",
                      "invalid_value", where + ".type"}};
  }
  TurnDetectionOptions o;
  if (auto v = optional_field<double>(value, "threshold", Null::absent, path)) o.threshold = *v;
  if (auto v = optional_field<int>(value, "prefix_padding_ms", Null::absent, path)) o.prefix_padding_ms = *v;
  if (auto v = optional_field<int>(value, "silence_duration_ms", Null::absent, path)) o.silence_duration_ms = *v;
  try {
    validate(o);
  } catch (const Error& e) {
    const std::string message = e.what();
    const std::size_t colon = std::min(message.find(':'), message.size());
    const std::string field = detail::join(path, message.substr(0, colon));
    throw FieldError{{"`" + field + "`" + message.substr(colon), "invalid_value", field}};
  }
  return o;
}

}  // namespace voxtral
