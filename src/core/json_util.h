// Typed, path-aware access to JSON documents (params.json, tekken.json, safetensors
// headers). Every error names the source file and the key path, e.g.
// "params.json: multimodal.whisper_model_args.encoder_args.dim: expected an integer".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace voxtral {

using Json = nlohmann::json;

// Parses text; throws Error("<source>: invalid JSON: ...") on malformed input.
Json parse_json(std::string_view text, std::string_view source);

class JsonObject {
 public:
  // Throws unless `value` is an object.
  JsonObject(const Json& value, std::string source, std::string path = "");

  bool has(std::string_view key) const;
  JsonObject object(std::string_view key) const;
  const Json& value(std::string_view key) const;  // required, any type

  std::int64_t integer(std::string_view key) const;
  std::int64_t integer_or(std::string_view key, std::int64_t fallback) const;
  double number(std::string_view key) const;
  double number_or(std::string_view key, double fallback) const;
  bool boolean(std::string_view key) const;
  bool boolean_or(std::string_view key, bool fallback) const;
  std::string string(std::string_view key) const;

  // Like integer() but also requires lo <= value <= hi.
  std::int64_t integer_in(std::string_view key, std::int64_t lo, std::int64_t hi) const;

  [[noreturn]] void fail_at(std::string_view key, std::string_view problem) const;
  const std::string& source() const { return source_; }
  std::string key_path(std::string_view key) const;
  const Json& json() const { return *value_; }

 private:
  const Json* value_;
  std::string source_;
  std::string path_;
};

// "an integer", "a string", ... for messages.
std::string json_type_name(const Json& value);

}  // namespace voxtral
