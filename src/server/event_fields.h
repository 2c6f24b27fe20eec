// Reading a client's JSON event, shared by the realtime protocols (realtime_events.h for
// vLLM's, openai_events.h for OpenAI's): parsing with bounds, and fields read with their
// types checked. A field of another type is an error naming the field by its path.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "runtime/voice_activity.h"

namespace voxtral {

// What the server answers a refused client event with: an `error` event.
struct RealtimeError {
  std::string message;  // for people; quotes client text only where it helps, shortened
  std::string code;     // for programs: invalid_json, invalid_event, unknown_event, invalid_type, invalid_value, ...
  std::string param;    // the offending field (its path: "session.audio.input.format.rate"), when there is one
};

// Thrown by the field readers; the dispatchers turn it into the sink's on_error.
struct FieldError {
  RealtimeError error;
};

// Client text for an error message: at most `max_bytes` bytes, "..." when cut (may split a
// UTF-8 sequence: serialize with json_text()).
std::string shortened(std::string_view text, std::size_t max_bytes = 64);

// The event of one message, or nullopt with `error` set: not JSON, or nested deeper than
// `max_depth` levels, or more than 1024 values (refused while parsing, before it takes
// memory: a 16 MiB message of `[[[[...` or `[0,0,...]` would otherwise be millions of nodes).
std::optional<nlohmann::json> parse_event(std::string_view message, int max_depth, RealtimeError& error);

enum class Null { refused, absent };  // whether `null` counts as an absent field

namespace detail {
template <class T>
constexpr const char* type_phrase() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean (true or false)";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  if constexpr (std::is_same_v<T, nlohmann::json>) return "an object";
  if constexpr (std::is_integral_v<T>) return "an integer";
  return "a number";
}
template <class T>
bool has_type(const nlohmann::json& value) {
  if constexpr (std::is_same_v<T, bool>) return value.is_boolean();
  if constexpr (std::is_same_v<T, std::string>) return value.is_string();
  if constexpr (std::is_same_v<T, nlohmann::json>) return value.is_object();
  if constexpr (std::is_integral_v<T>) {
    if (value.is_number_integer()) return true;
    if (!value.is_number_float()) return false;
    const double v = value.get<double>();
    return std::isfinite(v) && std::floor(v) == v;
  }
  return value.is_number();
}
std::string join(std::string_view path, std::string_view name);
}  // namespace detail

// The field `name` of object `event` when present, nullopt when absent; present with another
// type (null too, unless `null` is Null::absent) throws FieldError naming `path`.`name`. An
// integer field takes 500 and 500.0, and refuses 500.5; its value must fit a 32-bit int.
template <class T>
std::optional<T> optional_field(const nlohmann::json& event, const char* name, Null null = Null::refused,
                                std::string_view path = "") {
  const auto it = event.find(name);
  if (it == event.end() || (it->is_null() && null == Null::absent)) return std::nullopt;
  const std::string where = detail::join(path, name);
  if (!detail::has_type<T>(*it)) {
    throw FieldError{{"`" + where + "` must be " + detail::type_phrase<T>() + (null == Null::absent ? " or null" : "") +
                          ", not " + (std::is_integral_v<T> && !std::is_same_v<T, bool> && it->is_number_float() ? "a fraction" : it->type_name()),
                      "invalid_type", where}};
  }
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    const double value = it->template get<double>();
    if (value < -2147483648.0 || value > 2147483647.0) {
      throw FieldError{{"`" + where + "` is out of range", "invalid_value", where}};
    }
    return static_cast<T>(value);
  } else {
    return it->template get<T>();
  }
}

// A required string field, by reference (an append's audio may be 16 MiB: no copy).
const std::string& required_string(const nlohmann::json& event, const char* name);

// OpenAI's turn_detection object, read at `path`: {type: "server_vad", threshold,
// prefix_padding_ms, silence_duration_ms} (other fields of OpenAI's, e.g. create_response,
// are accepted and have no effect here); values missing take TurnDetectionOptions' defaults.
// Another type ("semantic_vad"), or a value out of range, throws FieldError.
TurnDetectionOptions turn_detection_field(const nlohmann::json& value, std::string_view path);

}  // namespace voxtral
