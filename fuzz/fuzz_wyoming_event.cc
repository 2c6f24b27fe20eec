// Feeds arbitrary bytes to the Wyoming protocol's event reader as a TCP stream would bring
// them (in pieces whose size the first byte picks), and each event it frames to the audio
// format checks and the PCM conversion. Nothing may escape (an exception there would end
// the server), the reader must respect its bounds and take nothing after an error, every
// error must serialize, and every event written back must frame to the same event.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/wyoming_audio.h"
#include "server/wyoming_event.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

voxtral::WyomingLimits small_limits() {
  voxtral::WyomingLimits limits;
  limits.max_header_bytes = 4096;
  limits.max_data_bytes = 4096;
  limits.max_payload_bytes = 16384;
  return limits;
}

void check_event(const voxtral::WyomingEvent& event, const voxtral::WyomingLimits& limits) {
  check(!event.type.empty() && event.data.is_object() && event.payload.size() <= limits.max_payload_bytes);
  // What the server writes frames back to the same event.
  const std::string bytes = voxtral::wyoming_event_bytes(event.type, event.data, event.payload);
  voxtral::WyomingEventReader again;
  check(again.consume(bytes) == bytes.size() && again.has_event());
  const voxtral::WyomingEvent back = again.take_event();
  check(back.type == event.type && back.data == event.data && back.payload == event.payload);
  // The audio checks of audio-start and audio-chunk, and the conversion of a valid chunk.
  std::string why;
  const auto format = voxtral::wyoming_audio_format(event.data, why);
  check(format.has_value() == why.empty());
  if (format && voxtral::WyomingAudio::chunk_error(*format, event.payload.size()).empty()) {
    voxtral::WyomingAudio audio(*format, 16000);
    std::vector<float> out;
    audio.push(event.payload, out);
    audio.finish(out);
    for (const float s : out) check(s > -2.0f && s < 2.0f);  // the resampler may ring past full scale
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t piece = 1 + data[0] % 64;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const voxtral::WyomingLimits limits = small_limits();
  voxtral::WyomingEventReader reader(limits);
  for (std::size_t at = 0; at < stream.size();) {
    const std::string_view bytes = stream.substr(at, piece);
    const std::size_t taken = reader.consume(bytes);
    check(taken <= bytes.size());
    at += taken;
    if (reader.has_event()) {
      check_event(reader.take_event(), limits);
    } else if (reader.error()) {
      static const std::set<std::string> kCodes = {"header_too_long", "invalid_header", "data_too_long",
                                                   "invalid_data", "payload_too_long"};
      check(kCodes.contains(reader.error()->code) && !reader.error()->message.empty());
      const std::string text = voxtral::wyoming_event_bytes("error", {{"text", reader.error()->message}});
      check(!text.empty());
      check(reader.consume("{\"type\":\"describe\"}\n") == 0);
      break;
    } else {
      check(taken == bytes.size());  // without an event or an error, everything is taken
    }
  }
  return 0;
}
