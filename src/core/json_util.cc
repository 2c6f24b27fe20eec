#include "core/json_util.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace voxtral {

Json parse_json(std::string_view text, std::string_view source) {
  if (text.empty()) fail(source, "empty file, expected JSON");
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // Not only parse_error: a number like 1e999 throws out_of_range.406.
    // nlohmann's message starts with "[json.exception.parse_error.101] "; keep the rest.
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    fail(source, cat("invalid JSON: ", what));
  }
}

std::string json_type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return cat("the string \"", value.get<std::string>().substr(0, 40), "\"");
    case Json::value_t::boolean: return value.get<bool>() ? "true" : "false";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float: return cat("the number ", value.dump());
    default: return "an unsupported value";
  }
}

JsonObject::JsonObject(const Json& value, std::string source, std::string path)
    : value_(&value), source_(std::move(source)), path_(std::move(path)) {
  if (!value.is_object()) {
    fail(source_, cat(path_.empty() ? "top level" : path_, ": expected an object, found ",
                      json_type_name(value)));
  }
}

std::string JsonObject::key_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : cat(path_, ".", key);
}

void JsonObject::fail_at(std::string_view key, std::string_view problem) const {
  fail(source_, cat(key_path(key), ": ", problem));
}

bool JsonObject::has(std::string_view key) const {
  auto it = value_->find(key);
  return it != value_->end() && !it->is_null();
}

const Json& JsonObject::value(std::string_view key) const {
  auto it = value_->find(key);
  if (it == value_->end()) fail_at(key, "missing");
  return *it;
}

JsonObject JsonObject::object(std::string_view key) const {
  return JsonObject(value(key), source_, key_path(key));
}

std::int64_t JsonObject::integer(std::string_view key) const {
  const Json& v = value(key);
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() >
                                      static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail_at(key, cat("integer out of range: ", v.dump()));
    }
    return v.get<std::int64_t>();
  }
  // Some writers emit integral values as floats ("sliding_window": 750.0).
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<std::int64_t>(d);
  }
  fail_at(key, cat("expected an integer, found ", json_type_name(v)));
}

std::int64_t JsonObject::integer_or(std::string_view key, std::int64_t fallback) const {
  return has(key) ? integer(key) : fallback;
}

std::int64_t JsonObject::integer_in(std::string_view key, std::int64_t lo, std::int64_t hi) const {
  const std::int64_t v = integer(key);
  if (v < lo || v > hi) fail_at(key, cat("value ", v, " is outside the valid range ", lo, "..", hi));
  return v;
}

double JsonObject::number(std::string_view key) const {
  const Json& v = value(key);
  if (!v.is_number()) fail_at(key, cat("expected a number, found ", json_type_name(v)));
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail_at(key, "expected a finite number");
  return d;
}

double JsonObject::number_or(std::string_view key, double fallback) const {
  return has(key) ? number(key) : fallback;
}

bool JsonObject::boolean(std::string_view key) const {
  const Json& v = value(key);
  if (!v.is_boolean()) fail_at(key, cat("expected true or false, found ", json_type_name(v)));
  return v.get<bool>();
}

bool JsonObject::boolean_or(std::string_view key, bool fallback) const {
  return has(key) ? boolean(key) : fallback;
}

std::string JsonObject::string(std::string_view key) const {
  const Json& v = value(key);
  if (!v.is_string()) fail_at(key, cat("expected a string, found ", json_type_name(v)));
  return v.get<std::string>();
}

}  // namespace voxtral
