#include "server/realtime.h"

#include <chrono>
#include <deque>
#include <random>

#include <boost/beast/websocket.hpp>

#include "model/schedule.h"
#include "server/base64.h"

namespace voxtral {

namespace websocket = beast::websocket;

namespace {

// A client that stops reading may leave at most this much output unsent.
constexpr std::size_t kMaxBacklog = 4u << 20;

std::string session_id() {
  static std::mt19937_64 random{std::random_device{}()};
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  char text[40];
  std::snprintf(text, sizeof text, "sess-%016llx", static_cast<unsigned long long>(random()));
  return text;
}

class RealtimeSession : public std::enable_shared_from_this<RealtimeSession> {
 public:
  RealtimeSession(beast::tcp_stream stream, ServerContext& context) : ws_(std::move(stream)), context_(context) {}

  ~RealtimeSession() {
    if (job_) job_->cancel();
    if (opened_) context_.metrics.realtime_closed();
  }

  void run(http::request<http::string_body> request) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "voxtral-server"); }));
    ws_.read_message_max(context_.options.max_message_bytes);
    ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->opened_ = true;
      self->context_.metrics.realtime_opened();
      self->context_.metrics.request("/v1/realtime", 101);
      self->send({{"type", "session.created"}, {"id", session_id()},
                  {"created", std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count()}});
      self->read();
    });
  }

 private:
  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) {  // closed, reset, or a message over the limit (Beast closes with 1009)
      if (ec == websocket::error::message_too_big) context_.metrics.error("message_too_big");
      closed_ = true;
      if (job_) job_->cancel();
      job_.reset();
      return;
    }
    const std::string text = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    handle(text);
    if (!closed_) read();
  }

  void handle(const std::string& text) {
    nlohmann::json event;
    try {
      event = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception&) {
      return error("Invalid JSON", "invalid_json");
    }
    if (!event.is_object() || !event.contains("type") || !event["type"].is_string()) {
      return error("an event must be a JSON object with a string `type`", "invalid_event");
    }
    const std::string type = event["type"];
    if (type == "session.update") {
      const auto model = event.value("model", nlohmann::json());
      if (model.is_string() && !context_.options.accepts_model(model.get<std::string>())) {
        return error("The model `" + model.get<std::string>() + "` does not exist.", "model_not_found");
      }
      validated_ = true;
    } else if (type == "input_audio_buffer.append") {
      append(event);
    } else if (type == "input_audio_buffer.commit") {
      if (!validated_) {
        return error("Model not validated. Make sure to validate the model by sending a session.update event.",
                     "model_not_validated");
      }
      const bool final = event.value("final", false);
      if (!job_ && !start_job()) return;
      if (final) job_->finish();
    } else {
      error("Unknown event type: " + type, "unknown_event");
    }
  }

  void append(const nlohmann::json& event) {
    if (!event.contains("audio") || !event["audio"].is_string()) return error("`audio` must be a base64 string", "invalid_audio");
    const auto bytes = base64_decode(event["audio"].get<std::string>());
    if (!bytes || bytes->empty() || bytes->size() % 2 != 0) {
      return error("Invalid audio data: expected base64 of 16-bit PCM samples", "invalid_audio");
    }
    std::vector<float> samples(bytes->size() / 2);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const auto lo = static_cast<unsigned char>((*bytes)[2 * i]), hi = static_cast<unsigned char>((*bytes)[2 * i + 1]);
      samples[i] = static_cast<float>(static_cast<std::int16_t>(lo | (hi << 8))) / 32768.0f;
    }
    audio_seconds_ += static_cast<double>(samples.size()) / context_.sample_rate;
    if (audio_seconds_ > context_.options.max_audio_seconds) {
      context_.metrics.error("audio_too_long");
      return error("this session passed the server's limit of " + std::to_string(context_.options.max_audio_seconds) +
                       " s of audio",
                   "audio_too_long");
    }
    if (job_) {
      job_->append(std::move(samples));
    } else {
      pending_.insert(pending_.end(), samples.begin(), samples.end());
    }
  }

  bool start_job() {
    StreamOptions options;
    options.delay_ms = context_.options.delay_ms;
    options.continuous = true;
    // The callbacks hold the session weakly and no executor of it: a job may outlive both.
    std::weak_ptr<RealtimeSession> weak = shared_from_this();
    JobCallbacks callbacks;
    callbacks.on_pieces = [weak](std::vector<TextPiece> pieces) {
      auto target = weak.lock();
      if (!target) return;
      net::post(target->ws_.get_executor(), [weak, pieces = std::move(pieces)] {
        if (auto self = weak.lock()) self->on_pieces(pieces);
      });
    };
    callbacks.on_done = [weak](const StreamStats&) {
      auto target = weak.lock();
      if (!target) return;
      net::post(target->ws_.get_executor(), [weak] {
        if (auto self = weak.lock()) self->on_done();
      });
    };
    callbacks.on_error = [weak](const std::string& message) {
      auto target = weak.lock();
      if (!target) return;
      net::post(target->ws_.get_executor(), [weak, message] {
        if (auto self = weak.lock()) {
          self->job_.reset();
          self->error(message, "processing_error");
        }
      });
    };
    job_ = context_.engine.start(JobKind::Live, options, std::move(callbacks));
    if (!job_) {
      context_.metrics.error("busy");
      error("the server is busy: " + std::to_string(context_.engine.options().max_jobs) +
                " transcriptions are running; try again shortly",
            "server_busy");
      return false;
    }
    text_.clear();
    completion_tokens_ = 0;
    job_->append(std::move(pending_));
    pending_.clear();
    return true;
  }

  void on_pieces(const std::vector<TextPiece>& pieces) {
    std::string delta;
    for (const auto& piece : pieces) {
      if (piece.id >= 0) ++completion_tokens_;
      delta += piece.text;
    }
    if (delta.empty()) return;
    text_ += delta;
    // audio_end (an addition to the protocol; clients ignore unknown fields): seconds of the
    // session's audio the server had when it produced this text, for latency figures.
    send({{"type", "transcription.delta"}, {"delta", delta}, {"audio_end", pieces.back().audio_end}});
  }

  void on_done() {
    job_.reset();
    const auto& config = context_.engine.model().config();
    const int n_delay = delay_positions(context_.options.delay_ms > 0 ? context_.options.delay_ms
                                                                       : context_.engine.model().tokenizer().audio().transcription_delay_ms,
                                        config);
    const auto prompt = static_cast<long long>(prompt_ids(context_.engine.model().tokenizer(), n_delay).size());
    send({{"type", "transcription.done"},
          {"text", text_},
          {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion_tokens_},
                     {"total_tokens", prompt + completion_tokens_}}}});
  }

  void error(const std::string& message, const std::string& code) {
    context_.metrics.error(code);
    send({{"type", "error"}, {"error", message}, {"code", code}});
  }

  void send(const nlohmann::json& event) {
    if (closed_) return;
    std::string text = event.dump();
    backlog_ += text.size();
    if (backlog_ > kMaxBacklog) {  // the client stopped reading: drop it
      context_.metrics.error("slow_client");
      closed_ = true;
      if (job_) job_->cancel();
      beast::get_lowest_layer(ws_).close();
      return;
    }
    out_.push_back(std::move(text));
    if (!writing_) write_next();
  }

  void write_next() {
    if (out_.empty() || closed_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    ws_.text(true);
    ws_.async_write(net::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->backlog_ -= self->out_.front().size();
      self->out_.pop_front();
      if (ec) {
        self->closed_ = true;
        if (self->job_) self->job_->cancel();
        return;
      }
      self->write_next();
    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  ServerContext& context_;
  beast::flat_buffer buffer_;
  std::deque<std::string> out_;
  std::size_t backlog_ = 0;
  bool writing_ = false;
  bool closed_ = false;
  bool opened_ = false;
  bool validated_ = false;
  std::shared_ptr<Job> job_;
  std::vector<float> pending_;
  double audio_seconds_ = 0;
  std::string text_;
  long long completion_tokens_ = 0;
};

}  // namespace

void start_realtime(beast::tcp_stream stream, ServerContext& context, http::request<http::string_body> request) {
  std::make_shared<RealtimeSession>(std::move(stream), context)->run(std::move(request));
}

}  // namespace voxtral
