// The server tests' side of server_harness.h: the demo model's server, the samples as
// uploads and PCM, and a WebSocket client for /v1/realtime whose reads give up after 30 s
// (a broken server fails the test instead of hanging it).
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "server/base64.h"
#include "server/server.h"
#include "server_harness.h"
#include "test_util.h"

namespace voxtral::testing::loopback {

namespace websocket = beast::websocket;
using nlohmann::json;

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The sample's script (samples/<name>.json): what the speech says.
inline std::string sample_text(const std::string& name) {
  std::ifstream in(source_path("samples/" + name + ".json"));
  return json::parse(in)["text"];
}

// samples/<name>.wav as the form's file.
inline ClientPart sample_part(const std::string& name) {
  return {"file", name + ".wav", slurp(source_path("samples/" + name + ".wav")), "audio/wav"};
}

// 16-bit little-endian PCM of a sample at `rate` (resampled from its 16 kHz WAV), plus
// `silence` seconds of zeros after it.
inline std::string pcm16_at(const std::string& name, int rate, double silence = 0) {
  auto samples = load_audio_file(source_path("samples/" + name + ".wav"), rate);
  samples.resize(samples.size() + static_cast<std::size_t>(silence * rate));
  std::string bytes(samples.size() * 2, '\0');
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto v = static_cast<std::int16_t>(std::lround(std::clamp(samples[i], -1.0f, 32767.0f / 32768) * 32768));
    bytes[2 * i] = static_cast<char>(v & 0xFF);
    bytes[2 * i + 1] = static_cast<char>((v >> 8) & 0xFF);
  }
  return bytes;
}

// The same at 16 kHz, the vLLM realtime protocol's rate.
inline std::string pcm16(const std::string& name) { return pcm16_at(name, 16000); }

// POST /v1/audio/transcriptions with one sample as the file (response_format json).
inline Reply upload(unsigned short port, const std::string& name) {
  const std::string boundary = "voxtral-loopback-7f3a";
  return request(port, http::verb::post, "/v1/audio/transcriptions", multipart_form({sample_part(name)}, boundary),
                 "multipart/form-data; boundary=" + boundary);
}

class WsClient {
 public:
  // `headers`: sent with the upgrade request (OpenAI-Beta: realtime=v1, ...).
  explicit WsClient(unsigned short port, const std::string& target = "/v1/realtime",
                    const std::vector<std::pair<std::string, std::string>>& headers = {})
      : ws_(io_) {
    ws_.next_layer().connect({net::ip::make_address("127.0.0.1"), port});
    set_timeouts(ws_.next_layer(), 30);
    ws_.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
      for (const auto& [name, value] : headers) req.set(name, value);
    }));
    ws_.handshake("localhost", target);
  }
  // The next message; an error (or a 30 s wait) is returned, not thrown.
  beast::error_code read_into(beast::flat_buffer& buffer) {
    beast::error_code result = net::error::timed_out;
    bool done = false;
    ws_.async_read(buffer, [&](beast::error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
    io_.restart();
    io_.run_for(std::chrono::seconds(30));
    if (!done) {
      beast::error_code ignored;
      ws_.next_layer().close(ignored);
      io_.restart();
      io_.run();
    }
    return result;
  }
  json read() {
    beast::flat_buffer buffer;
    if (const auto ec = read_into(buffer)) throw beast::system_error(ec);
    return json::parse(beast::buffers_to_string(buffer.data()));
  }
  // The next event that is not a transcription.delta.
  json read_skipping_deltas() {
    for (;;) {
      auto event = read();
      if (event["type"] != "transcription.delta") return event;
    }
  }
  void send(const json& event) { send_text(event.dump()); }
  void send_text(const std::string& text) {
    ws_.text(true);
    ws_.write(net::buffer(text));
  }
  void send_binary(const std::string& bytes) {
    ws_.binary(true);
    ws_.write(net::buffer(bytes));
  }
  void append(const std::string& pcm) {
    send({{"type", "input_audio_buffer.append"}, {"audio", base64_encode(pcm)}});
  }
  // Sends 16-bit PCM at `rate` in 100 ms appends.
  void append_in_pieces(const std::string& pcm, int rate = 16000) {
    const std::size_t piece = static_cast<std::size_t>(rate) / 10 * 2;
    for (std::size_t at = 0; at < pcm.size(); at += piece) append(pcm.substr(at, piece));
  }
  void validate(const std::string& model = "demo") { send({{"type", "session.update"}, {"model", model}}); }
  void commit(bool final) { send({{"type", "input_audio_buffer.commit"}, {"final", final}}); }
  // Reads deltas until transcription.done; returns (the deltas joined, the done event).
  std::pair<std::string, json> collect() {
    std::string deltas;
    for (;;) {
      auto event = read();
      if (event["type"] == "transcription.delta") {
        deltas += event["delta"].get<std::string>();
      } else {
        EXPECT_EQ(event["type"], "transcription.done") << event.dump();
        return {deltas, event};
      }
    }
  }
  websocket::stream<tcp::socket>& ws() { return ws_; }

 private:
  net::io_context io_;
  websocket::stream<tcp::socket> ws_;
};

// The demo model, loaded once for every test.
inline Model& demo_model() {
  static std::unique_ptr<Model> model = Model::load(source_path("models/demo"), test_model_options());
  return *model;
}

// A server of the demo model, served as "demo" unless the options name it otherwise.
struct RunningServer : LoopbackServer {
  explicit RunningServer(ServerOptions options, SchedulerOptions scheduler_options = {})
      : LoopbackServer(demo_model(), named(std::move(options)), scheduler_options) {}
  static ServerOptions named(ServerOptions o) {
    if (o.model_id.empty()) o.model_id = "demo";
    return o;
  }
};

}  // namespace voxtral::testing::loopback
