#include "server/wyoming_event.h"

#include <string>

#include "server/client_text.h"
#include "server/json_text.h"

namespace voxtral {

namespace {

using nlohmann::json;

// Events carry a few flat fields and a small context object: anything deeper or larger is
// refused while parsing, before it takes memory (a megabyte of `[[[[...` or `[0,0,...]`
// would otherwise become a million JSON nodes).
constexpr int kMaxDepth = 16;
constexpr int kMaxValues = 16384;

// `text` parsed as JSON within the bounds above; discarded when it is not JSON, or deeper
// or larger than them (`too_complex` then says which).
json parse_bounded(std::string_view text, bool& too_complex) {
  too_complex = false;
  int values = 0;
  json::parser_callback_t limit = [&](int depth, json::parse_event_t event, json&) {
    if (event == json::parse_event_t::object_end || event == json::parse_event_t::array_end) return !too_complex;
    if (depth > kMaxDepth || ++values > kMaxValues) too_complex = true;
    return !too_complex;
  };
  json value = json::parse(text.begin(), text.end(), limit, /*allow_exceptions=*/false);
  if (too_complex) return json(json::value_t::discarded);
  return value;
}

// A length field: absent or null is 0; otherwise a whole number >= 0, or nullopt.
std::optional<std::size_t> length_field(const json& header, const char* name) {
  const auto it = header.find(name);
  if (it == header.end() || it->is_null()) return 0;
  if (it->is_number_unsigned()) return it->get<std::size_t>();
  if (it->is_number_integer() && it->get<std::int64_t>() >= 0) return static_cast<std::size_t>(it->get<std::int64_t>());
  return std::nullopt;
}

std::string kib(std::size_t bytes) { return std::to_string((bytes + 1023) / 1024) + " KiB"; }

}  // namespace

std::size_t WyomingEventReader::consume(std::string_view bytes) {
  std::size_t taken = 0;
  while (taken < bytes.size() && (part_ == Part::Header || part_ == Part::Data || part_ == Part::Payload)) {
    const std::string_view rest = bytes.substr(taken);
    if (part_ == Part::Header) {
      const std::size_t newline = rest.find('\n');
      const std::size_t n = newline == std::string_view::npos ? rest.size() : newline + 1;
      if (line_.size() + n > limits_.max_header_bytes) {
        fail("an event header (the JSON line before its data and payload) is longer than this server's limit of " +
                 kib(limits_.max_header_bytes),
             "header_too_long");
        return taken;
      }
      line_.append(rest.substr(0, n));
      taken += n;
      if (newline != std::string_view::npos) {
        line_.pop_back();
        parse_header();
      }
    } else if (part_ == Part::Data) {
      const std::size_t n = std::min(rest.size(), data_length_ - line_.size());
      line_.append(rest.substr(0, n));
      taken += n;
      if (line_.size() == data_length_) merge_data();
    } else {
      const std::size_t n = std::min(rest.size(), payload_length_ - event_.payload.size());
      event_.payload.append(rest.substr(0, n));
      taken += n;
      if (event_.payload.size() == payload_length_) part_ = Part::Done;
    }
  }
  return taken;
}

WyomingEvent WyomingEventReader::take_event() {
  WyomingEvent event = std::move(event_);
  event_ = WyomingEvent{};
  line_.clear();
  data_length_ = payload_length_ = 0;
  part_ = Part::Header;
  return event;
}

void WyomingEventReader::fail(std::string message, std::string code) {
  part_ = Part::Failed;
  error_ = WyomingFramingError{std::move(message), std::move(code)};
  line_.clear();
  line_.shrink_to_fit();
  event_ = WyomingEvent{};
}

void WyomingEventReader::parse_header() {
  bool too_complex = false;
  json header = parse_bounded(line_, too_complex);
  if (header.is_discarded()) {
    return fail(too_complex ? "an event header is nested deeper or holds more values than any event needs"
                            : "an event header is not a line of valid JSON: " + client_text(line_),
                "invalid_header");
  }
  if (!header.is_object()) {
    return fail(std::string("an event header must be a JSON object, not ") + header.type_name(), "invalid_header");
  }
  const auto type = header.find("type");
  if (type == header.end() || !type->is_string() || type->get_ref<const std::string&>().empty()) {
    return fail("an event header needs `type`, a non-empty string: " + client_text(line_), "invalid_header");
  }
  const auto data = header.find("data");
  if (data != header.end() && !data->is_null() && !data->is_object()) {
    return fail(std::string("an event's `data` must be a JSON object, not ") + data->type_name(), "invalid_header");
  }
  const auto data_length = length_field(header, "data_length");
  const auto payload_length = length_field(header, "payload_length");
  if (!data_length || !payload_length) {
    return fail(std::string("an event's `") + (data_length ? "payload_length" : "data_length") +
                    "` must be a whole number of bytes >= 0",
                "invalid_header");
  }
  if (*data_length > limits_.max_data_bytes) {
    return fail("an event's data_length of " + std::to_string(*data_length) + " bytes is over this server's limit of " +
                    kib(limits_.max_data_bytes),
                "data_too_long");
  }
  if (*payload_length > limits_.max_payload_bytes) {
    return fail("an event's payload_length of " + std::to_string(*payload_length) +
                    " bytes is over this server's limit of " + kib(limits_.max_payload_bytes) +
                    " (--max-message-kb); send audio in smaller chunks",
                "payload_too_long");
  }
  event_.type = type->get<std::string>();
  if (data != header.end() && data->is_object()) event_.data = std::move(*data);
  data_length_ = *data_length;
  payload_length_ = *payload_length;
  line_.clear();
  if (data_length_ == 0) {
    after_data();
  } else {
    part_ = Part::Data;
  }
}

void WyomingEventReader::merge_data() {
  bool too_complex = false;
  json data = parse_bounded(line_, too_complex);
  if (!data.is_object()) {
    return fail(too_complex ? "an event's data is nested deeper or holds more values than any event needs"
                : data.is_discarded()
                    ? "an event's data (data_length bytes after its header) is not valid JSON: " + client_text(line_)
                    : std::string("an event's data must be a JSON object, not ") + data.type_name(),
                "invalid_data");
  }
  for (auto it = data.begin(); it != data.end(); ++it) event_.data[it.key()] = std::move(it.value());
  line_.clear();
  after_data();
}

void WyomingEventReader::after_data() {
  if (line_.capacity() > 4096) line_.shrink_to_fit();  // after a large data section
  part_ = payload_length_ == 0 ? Part::Done : Part::Payload;
}

std::string wyoming_event_bytes(std::string_view type, const nlohmann::json& data, std::string_view payload) {
  json header = {{"type", type}, {"version", kWyomingVersion}};
  std::string data_text;
  if (data.is_object() && !data.empty()) {
    data_text = json_text(data);
    header["data_length"] = data_text.size();
  }
  if (!payload.empty()) header["payload_length"] = payload.size();
  std::string bytes = json_text(header);
  bytes += '\n';
  bytes += data_text;
  bytes += payload;
  return bytes;
}

}  // namespace voxtral
