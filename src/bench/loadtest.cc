// voxtral-loadtest: N concurrent realtime streams, paced at real time, against a running
// voxtral-server; reports per-token latency for each N.
//
// Each stream opens /v1/realtime, sends the input audio in 100 ms appends, each at the moment
// a microphone would have finished recording it, and measures for every text delta the time
// from "the audio up to the delta's audio_end was recorded" to "the delta arrived": the
// server's queueing, processing and network time, beyond the model's own transcription delay.
// That includes waiting for the 100 ms append that brings the position's last mel window
// (up to 100 ms a token); "server ms" leaves it out: the time from that append's sending to
// the delta, what the engine bench measures from its feed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "core/error.h"
#include "server/base64.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr double kChunkSeconds = 0.1;
// A position's last mel frame reaches half a window (200 samples at 16 kHz) past its end.
constexpr double kFrameLookaheadSeconds = 0.0125;

struct Results {
  std::vector<double> latencies_ms;
  std::vector<double> server_latencies_ms;  // from the append that completed the audio
  int completed = 0;
  int errors = 0;
  std::vector<std::string> texts;
  std::vector<std::string> error_messages;
};

class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(net::io_context& io, const std::vector<std::string>& chunks, Results& results, std::string host,
         std::string port, std::string target, std::string model)
      : resolver_(io), ws_(io), timer_(io), chunks_(chunks), results_(results), host_(std::move(host)),
        port_(std::move(port)), target_(std::move(target)), model_(std::move(model)) {}

  void start() {
    resolver_.async_resolve(host_, port_, [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
      if (ec) return self->fail("resolve", ec);
      beast::get_lowest_layer(self->ws_).expires_after(std::chrono::seconds(30));
      beast::get_lowest_layer(self->ws_).async_connect(r, [self](beast::error_code ec2, const tcp::endpoint&) {
        if (ec2) return self->fail("connect", ec2);
        beast::get_lowest_layer(self->ws_).expires_never();
        self->ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
        self->ws_.async_handshake(self->host_, self->target_, [self](beast::error_code ec3) {
          if (ec3) return self->fail("handshake", ec3);
          self->read();
        });
      });
    });
  }

 private:
  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        if (!self->done_) self->fail("read", ec);
        return;
      }
      const auto event = json::parse(beast::buffers_to_string(self->buffer_.data()), nullptr, false);
      self->buffer_.consume(self->buffer_.size());
      self->on_event(event);
      if (!self->done_) self->read();
    });
  }

  void on_event(const json& event) {
    const std::string type = event.is_object() ? event.value("type", "") : "";
    if (type == "session.created") {
      send({{"type", "session.update"}, {"model", model_}});
      send({{"type", "input_audio_buffer.commit"}});
      start_ = Clock::now();
      schedule_next();
    } else if (type == "transcription.delta") {
      const std::string delta = event.value("delta", "");
      if (event.contains("audio_end") && delta.find_first_not_of(' ') != std::string::npos) {
        const double recorded = event["audio_end"].get<double>();
        const double now = std::chrono::duration<double>(Clock::now() - start_).count();
        results_.latencies_ms.push_back((now - recorded) * 1000.0);
        const double sent = std::ceil((recorded + kFrameLookaheadSeconds) / kChunkSeconds - 1e-9) * kChunkSeconds;
        results_.server_latencies_ms.push_back((now - std::max(sent, kChunkSeconds)) * 1000.0);
      }
    } else if (type == "transcription.done") {
      done_ = true;
      ++results_.completed;
      results_.texts.push_back(event.value("text", ""));
      ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {});
    } else if (type == "error") {
      ++results_.errors;
      results_.error_messages.push_back(event.dump());
      // A refused session (every slot taken) never gets its `done`: count it and stop.
      const bool busy = event.value("code", "") == "server_busy";
      if (busy && !done_) {
        done_ = true;
        ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {});
      }
    }
  }

  void schedule_next() {
    if (next_ == chunks_.size()) {
      send({{"type", "input_audio_buffer.commit"}, {"final", true}});
      return;
    }
    // Chunk k is complete, as from a microphone, kChunkSeconds * (k + 1) after the start.
    timer_.expires_at(start_ + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(kChunkSeconds * static_cast<double>(next_ + 1))));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->done_) return;
      self->send({{"type", "input_audio_buffer.append"}, {"audio", self->chunks_[self->next_]}});
      ++self->next_;
      self->schedule_next();
    });
  }

  void send(const json& event) {
    out_.push_back(event.dump());
    if (out_.size() == 1) write_next();
  }

  void write_next() {
    ws_.text(true);
    ws_.async_write(net::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->fail("write", ec);
      self->out_.pop_front();
      if (!self->out_.empty()) self->write_next();
    });
  }

  void fail(const char* what, beast::error_code ec) {
    if (done_) return;
    done_ = true;
    ++results_.errors;
    results_.error_messages.push_back(std::string(what) + ": " + ec.message());
    timer_.cancel();
  }

  tcp::resolver resolver_;
  websocket::stream<beast::tcp_stream> ws_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  const std::vector<std::string>& chunks_;
  Results& results_;
  std::string host_, port_, target_, model_;
  std::deque<std::string> out_;
  Clock::time_point start_;
  std::size_t next_ = 0;
  bool done_ = false;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

// The model id the server lists first (GET /v1/models).
std::string server_model(const std::string& host, const std::string& port, const std::string& api_key) {
  net::io_context io;
  beast::tcp_stream stream(io);
  tcp::resolver resolver(io);
  stream.connect(resolver.resolve(host, port));
  http::request<http::empty_body> req{http::verb::get, "/v1/models", 11};
  req.set(http::field::host, host);
  if (!api_key.empty()) req.set(http::field::authorization, "Bearer " + api_key);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  if (res.result() != http::status::ok) throw voxtral::Error("GET /v1/models: HTTP " + std::to_string(res.result_int()));
  return json::parse(res.body())["data"][0]["id"];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"voxtral-loadtest: concurrent realtime streams paced at real time against voxtral-server"};
  std::string host = "127.0.0.1", port = "8000", input, api_key, expect;
  std::vector<int> counts{1, 2, 4, 8};
  double seconds = 0;
  double stagger = 1.0;
  bool as_json = false;
  app.add_option("--host", host, "Server address (default 127.0.0.1)");
  app.add_option("--port", port, "Server port (default 8000)");
  app.add_option("-i,--input", input, "Audio each stream sends (WAV), repeated to fill --seconds")->required();
  app.add_option("--seconds", seconds, "Audio per stream in seconds, the input repeated (default: the input once)")
      ->check(CLI::PositiveNumber);
  app.add_option("-n,--streams", counts, "Concurrent stream counts to run, one after the other (default 1 2 4 8)");
  app.add_option("--stagger", stagger, "Streams start spread over this many seconds (default 1)");
  app.add_option("--api-key", api_key, "Bearer key, if the server needs one");
  app.add_option("--expect", expect, "Fail unless every stream's final text equals this");
  app.add_flag("--json", as_json, "One JSON object per stream count on stdout");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto audio = voxtral::load_audio_file(input, 16000);
    if (audio.empty()) throw voxtral::Error(input + ": no audio");
    const auto total = seconds > 0 ? static_cast<std::size_t>(seconds * 16000) : audio.size();
    const auto per_chunk = static_cast<std::size_t>(kChunkSeconds * 16000);
    std::vector<std::string> chunks;
    for (std::size_t at = 0; at < total; at += per_chunk) {
      std::string pcm;
      for (std::size_t i = at; i < std::min(at + per_chunk, total); ++i) {
        const float x = std::clamp(audio[i % audio.size()], -1.0f, 32767.0f / 32768.0f);
        const auto v = static_cast<std::int16_t>(std::lround(x * 32768.0f));
        pcm.push_back(static_cast<char>(v & 0xFF));
        pcm.push_back(static_cast<char>((v >> 8) & 0xFF));
      }
      chunks.push_back(voxtral::base64_encode(pcm));
    }
    const std::string model = server_model(host, port, api_key);
    const std::string target = api_key.empty() ? "/v1/realtime" : "/v1/realtime?api_key=" + api_key;
    bool all_ok = true;
    if (!as_json) {
      std::printf("%-8s %-10s %-10s %-10s %-14s %-14s %-10s %-8s %s\n", "streams", "p50 ms", "p95 ms", "max ms",
                  "server p50 ms", "server p95 ms", "tokens", "errors", "completed");
    }
    for (const int n : counts) {
      net::io_context io;
      Results results;
      std::vector<std::shared_ptr<net::steady_timer>> starts;
      for (int i = 0; i < n; ++i) {
        auto stream = std::make_shared<Stream>(io, chunks, results, host, port, target, model);
        auto timer = std::make_shared<net::steady_timer>(io);
        timer->expires_after(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(stagger * i / std::max(1, n))));
        timer->async_wait([stream](beast::error_code) { stream->start(); });
        starts.push_back(timer);
      }
      io.run();
      bool texts_ok = true;
      if (!expect.empty()) {
        for (const auto& t : results.texts) {
          const std::string trimmed = t.substr(std::min(t.find_first_not_of(' '), t.size()));
          if (trimmed != expect) texts_ok = false;
        }
      }
      const bool ok = results.errors == 0 && results.completed == n && texts_ok;
      all_ok = all_ok && ok;
      const double p50 = quantile(results.latencies_ms, 0.5), p95 = quantile(results.latencies_ms, 0.95);
      const double worst = results.latencies_ms.empty() ? 0 : *std::max_element(results.latencies_ms.begin(), results.latencies_ms.end());
      const double server_p50 = quantile(results.server_latencies_ms, 0.5);
      const double server_p95 = quantile(results.server_latencies_ms, 0.95);
      if (as_json) {
        std::printf("%s\n", json{{"streams", n}, {"seconds_per_stream", seconds}, {"p50_ms", p50}, {"p95_ms", p95},
                                 {"max_ms", worst}, {"server_p50_ms", server_p50}, {"server_p95_ms", server_p95}, {"tokens", results.latencies_ms.size()}, {"errors", results.errors},
                                 {"completed", results.completed}, {"texts_match", texts_ok}}
                                .dump()
                                .c_str());
      } else {
        std::printf("%-8d %-10.1f %-10.1f %-10.1f %-14.1f %-14.1f %-10zu %-8d %d/%d%s\n", n, p50, p95, worst, server_p50,
                    server_p95,
                    results.latencies_ms.size(), results.errors, results.completed, n,
                    texts_ok ? "" : " (text differs from --expect)");
      }
      for (const auto& m : results.error_messages) std::fprintf(stderr, "voxtral-loadtest: %s\n", m.c_str());
      std::fflush(stdout);
    }
    return all_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "voxtral-loadtest: %s\n", e.what());
    return 2;
  }
}
