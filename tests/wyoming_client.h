// A Wyoming client for the server tests, written from the protocol's description (a JSON
// header line, `data_length` bytes of JSON merged over the header's data, `payload_length`
// bytes of payload) and independent of the server's own reader. Every read gives up after
// 30 s: a broken server fails the test instead of hanging it.
#pragma once

#include <optional>
#include <string>

#include "server_test_client.h"

namespace voxtral::testing::loopback {

struct ClientEvent {
  std::string type;
  json data = json::object();
  std::string payload;
};

class WyomingClient {
 public:
  explicit WyomingClient(unsigned short port) : socket_(io_) {
    socket_.connect({net::ip::make_address("127.0.0.1"), port});
    set_timeouts(socket_, 30);
  }

  // Writes raw bytes; a failed write is not an error (the server may have closed already).
  void send_bytes(const std::string& bytes) {
    beast::error_code ignored;
    net::write(socket_, net::buffer(bytes), ignored);
  }
  // One event, the data in its own section as the protocol's reference client writes it.
  void send(const std::string& type, const json& data = json::object(), const std::string& payload = "") {
    json header = {{"type", type}};
    const std::string data_text = data.empty() ? "" : data.dump();
    if (!data_text.empty()) header["data_length"] = data_text.size();
    if (!payload.empty()) header["payload_length"] = payload.size();
    send_bytes(header.dump() + "\n" + data_text + payload);
  }
  void audio_start(int rate = 16000, int width = 2, int channels = 1) {
    send("audio-start", {{"rate", rate}, {"width", width}, {"channels", channels}});
  }
  void audio_chunk(const std::string& pcm, int rate = 16000, int width = 2, int channels = 1) {
    send("audio-chunk", {{"rate", rate}, {"width", width}, {"channels", channels}}, pcm);
  }
  // PCM in chunks of `bytes` (Home Assistant sends about 1024 samples at a time).
  void audio_chunks(const std::string& pcm, std::size_t bytes = 2048, int rate = 16000, int width = 2,
                    int channels = 1) {
    for (std::size_t at = 0; at < pcm.size(); at += bytes) audio_chunk(pcm.substr(at, bytes), rate, width, channels);
  }

  // The next event, or nullopt when the connection ended (or 30 s passed) first.
  std::optional<ClientEvent> read() {
    std::string line;
    for (;;) {
      const auto newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        break;
      }
      if (!fill()) return std::nullopt;
    }
    const json header = json::parse(line);
    ClientEvent event;
    event.type = header.at("type").get<std::string>();
    if (header.contains("data") && header["data"].is_object()) event.data = header["data"];
    const std::size_t data_length = header.value("data_length", std::size_t{0});
    const std::size_t payload_length = header.value("payload_length", std::size_t{0});
    while (buffer_.size() < data_length + payload_length) {
      if (!fill()) return std::nullopt;
    }
    if (data_length > 0) event.data.update(json::parse(buffer_.substr(0, data_length)));
    event.payload = buffer_.substr(data_length, payload_length);
    buffer_.erase(0, data_length + payload_length);
    return event;
  }
  ClientEvent expect() {
    auto event = read();
    if (!event) throw std::runtime_error("the connection ended before the next event");
    return *event;
  }
  // True when the server closes the connection with no further event.
  bool closed() { return !read().has_value() && ended_by_ != net::error::timed_out && ended_by_ != net::error::would_block; }

  // Reads a whole transcription's answer: transcript-start, transcript-chunk..., transcript,
  // transcript-stop. Returns (the chunks joined, the transcript's text, the event types).
  struct Answer {
    std::string chunks, text;
    std::vector<std::string> types;
  };
  Answer transcript() {
    Answer answer;
    for (;;) {
      const ClientEvent event = expect();
      answer.types.push_back(event.type);
      if (event.type == "transcript-chunk") answer.chunks += event.data.at("text").get<std::string>();
      if (event.type == "transcript") answer.text = event.data.at("text").get<std::string>();
      if (event.type == "transcript-stop" || event.type == "error") return answer;
    }
  }
  tcp::socket& socket() { return socket_; }

 private:
  bool fill() {
    std::array<char, 65536> chunk{};
    const std::size_t n = socket_.read_some(net::buffer(chunk), ended_by_);
    buffer_.append(chunk.data(), n);
    return !ended_by_ || n > 0;
  }

  net::io_context io_;
  tcp::socket socket_;
  std::string buffer_;
  beast::error_code ended_by_;
};

}  // namespace voxtral::testing::loopback
