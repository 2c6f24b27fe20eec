#include "server/realtime.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <random>

#include <boost/beast/websocket.hpp>

#include "model/schedule.h"
#include "server/json_text.h"
#include "server/realtime_events.h"

namespace voxtral {

namespace websocket = beast::websocket;

namespace {

// A client that stops reading may leave at most this much output unsent.
constexpr std::size_t kMaxBacklog = 4u << 20;
// Messages are read in pieces of this size, so one over the limit is refused having taken
// at most the limit plus one piece (Beast's own limit would close without our error event).
constexpr std::size_t kReadPiece = 64u << 10;
// After a larger message the read buffer gives its memory back.
constexpr std::size_t kKeptReadBuffer = 1u << 20;
// How often a session held back by its buffered-audio limit looks for room again.
constexpr std::chrono::milliseconds kRetryFeed{20};

std::string session_id() {
  static std::mt19937_64 random{std::random_device{}()};
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  char text[40];
  std::snprintf(text, sizeof text, "sess-%016llx", static_cast<unsigned long long>(random()));
  return text;
}

std::string trim_start(std::string s) {
  s.erase(0, std::min(s.find_first_not_of(" \t\n"), s.size()));
  return s;
}

class RealtimeSession final : public std::enable_shared_from_this<RealtimeSession>, private RealtimeEventSink {
 public:
  RealtimeSession(beast::tcp_stream stream, ServerContext& context) : ws_(std::move(stream)), context_(context) {}

  ~RealtimeSession() override {
    if (job_) job_->cancel();
    deferred_.clear();
    settle_memory(0);
    if (lifecycle_id_ != 0) context_.lifecycle->forget(lifecycle_id_);
    if (opened_) context_.metrics.realtime_closed();
  }

  void run(const http::request<http::string_body>& request) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "voxtral-server"); }));
    ws_.read_message_max(0);  // bounded in on_read
    ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
      self->guarded(true, [&] { self->on_accept(ec); });
    });
  }

 private:
  // Every completion handler and posted callback runs its work through here: an exception
  // (bad_alloc, a bug) becomes an `error` event, is logged and counted, and never reaches
  // Asio. `fatal`: the session's state may be broken, so it closes (1011).
  template <class F>
  void guarded(bool fatal, F&& work) noexcept {
    try {
      work();
      return;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "voxtral-server: realtime session: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "voxtral-server: realtime session: unknown exception\n");
    }
    try {
      send_error("internal server error: the event was not processed", "internal_error");
      if (fatal) close(websocket::close_code::internal_error);
    } catch (...) {
      drop_connection();
    }
  }

  void on_accept(beast::error_code ec) {
    if (ec) return;
    opened_ = true;
    context_.metrics.realtime_opened();
    context_.metrics.request("/v1/realtime", 101);
    if (context_.lifecycle) {
      std::weak_ptr<RealtimeSession> weak = shared_from_this();
      lifecycle_id_ = context_.lifecycle->on_abort([weak, executor = ws_.get_executor()] {
        net::post(executor, [weak] {
          if (auto self = weak.lock()) self->guarded(true, [&] { self->shut_down(); });
        });
      });
    }
    send({{"type", "session.created"}, {"id", session_id()},
          {"created", std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count()}});
    read();
  }

  void read() {
    ws_.async_read_some(buffer_, kReadPiece, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->guarded(true, [&] { self->on_read(ec); });
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) {  // closed, reset, timed out, or a broken frame (Beast has sent its close)
      closed_ = true;
      drop_job();
      return;
    }
    if (closing_ || closed_) return;
    if (buffer_.size() > context_.options.max_message_bytes) {
      send_error("a message is larger than this server's limit of " +
                     std::to_string(context_.options.max_message_bytes >> 10) +
                     " KiB (--max-message-kb); send audio in several appends",
                 "message_too_big");
      buffer_ = {};
      close(websocket::close_code::too_big);
      return;
    }
    if (!ws_.is_message_done()) return read();
    const std::string_view message(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    guarded(false, [&] { dispatch_realtime_event(message, *this); });
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > kKeptReadBuffer) buffer_.shrink_to_fit();
    if (!closing_ && !closed_ && !paused_) read();
  }

  // RealtimeEventSink: one client event each.
  void on_error(const RealtimeError& error) override { send_error(error.message, error.code, error.param); }

  void on_session_update(const std::optional<std::string>& model) override {
    if (model && !context_.options.accepts_model(*model)) {
      return send_error("the model `" + shortened(*model) + "` is not served here", "model_not_found", "model");
    }
    validated_ = true;
  }

  void on_append(std::vector<float> samples) override {
    const auto count = static_cast<std::int64_t>(samples.size());
    const double rate = context_.sample_rate;
    const double seconds = static_cast<double>(count) / rate;
    if (audio_seconds_ + seconds > context_.options.max_audio_seconds) {
      return send_error("this session passed the server's limit of " + seconds_text(context_.options.max_audio_seconds) +
                            " s of audio (--max-audio-seconds)",
                        "audio_too_long", "audio");
    }
    if (!ensure_job()) return;
    const double limit = context_.options.max_buffered_audio_seconds;
    if (seconds > limit) {
      return send_error("one append of " + seconds_text(seconds) + " s is more audio than this server holds for a "
                            "session (" + seconds_text(limit) + " s, --max-buffered-audio-seconds); it was dropped: "
                            "send audio in smaller appends",
                        "audio_buffer_full", "audio");
    }
    settle_memory(job_->queued_samples());
    const auto bytes = samples.size() * sizeof(float);
    if (context_.memory && !context_.memory->try_take(bytes)) {
      return send_error("the server's memory for client audio is spent; this append was dropped, try again shortly",
                        "server_busy", "audio");
    }
    held_bytes_ += context_.memory ? bytes : 0;
    audio_seconds_ += seconds;
    deferred_ = std::move(samples);
    feed_deferred();
  }

  // Hands the append read last to the job once the audio the session holds leaves room for
  // it (max_buffered_audio_seconds). Until then no further message is read: a client that
  // sends faster than the engine transcribes is held back by TCP, and its events keep their
  // order.
  void feed_deferred() {
    if (!job_) {  // the job failed or the session is closing: nothing to feed
      deferred_.clear();
      settle_memory(0);
    } else if (!deferred_.empty()) {
      const std::int64_t queued = job_->queued_samples();
      settle_memory(queued);
      const auto held = static_cast<double>(queued + static_cast<std::int64_t>(deferred_.size()));
      if (held / context_.sample_rate > context_.options.max_buffered_audio_seconds) {
        paused_ = true;
        retry_.expires_after(kRetryFeed);
        retry_.async_wait([self = shared_from_this()](beast::error_code ec) {
          self->guarded(true, [&] {
            if (!ec && !self->closing_ && !self->closed_) self->feed_deferred();
          });
        });
        return;
      }
      job_->append(std::move(deferred_));
      deferred_.clear();
    }
    if (paused_) {
      paused_ = false;
      if (!closing_ && !closed_) read();
    }
  }

  void on_commit(bool final) override {
    if (!validated_) {
      return send_error("Model not validated. Make sure to validate the model by sending a session.update event.",
                        "model_not_validated");
    }
    if (!ensure_job()) return;
    if (final) {
      job_->end_utterance();
    } else {
      job_->flush();
    }
  }

  // The session's slot on the engine, from its first append or commit until it closes.
  bool ensure_job() {
    if (job_) return true;
    StreamOptions options;
    options.delay_ms = context_.options.delay_ms;
    options.continuous = true;
    // The callbacks run on the engine thread and hold the session weakly: a job may outlive it.
    std::weak_ptr<RealtimeSession> weak = shared_from_this();
    auto on_strand = [weak](auto work) {
      auto target = weak.lock();
      if (!target) return;
      net::post(target->ws_.get_executor(), [weak, work = std::move(work)]() mutable {
        if (auto self = weak.lock()) self->guarded(true, [&] { work(*self); });
      });
    };
    JobCallbacks callbacks;
    callbacks.on_pieces = [on_strand](std::vector<TextPiece> pieces) {
      on_strand([pieces = std::move(pieces)](RealtimeSession& self) { self.on_pieces(pieces); });
    };
    callbacks.on_done = [on_strand](const StreamStats&) { on_strand([](RealtimeSession& self) { self.on_done(); }); };
    callbacks.on_error = [on_strand](const std::string& message) {
      on_strand([message](RealtimeSession& self) { self.on_job_error(message, "processing_error"); });
    };
    callbacks.on_busy = [on_strand](const std::string& message) {
      on_strand([message](RealtimeSession& self) { self.on_job_error(message, "server_busy"); });
    };
    job_ = context_.engine.start(JobKind::Live, options, std::move(callbacks));
    if (!job_) {
      end_session("the server is busy: " + std::to_string(context_.engine.max_jobs()) +
                      " transcriptions are running (--max-sessions); start a new session shortly",
                  "server_busy");
      return false;
    }
    start_utterance();
    return true;
  }

  void start_utterance() {
    text_.clear();
    started_text_ = false;
    completion_tokens_ = 0;
  }

  void on_pieces(const std::vector<TextPiece>& pieces) {
    if (!job_) return;
    settle_memory(job_->queued_samples());
    std::string delta;
    for (const auto& piece : pieces) {
      if (piece.id >= 0) ++completion_tokens_;
      delta += piece.text;
    }
    if (!started_text_) {  // as an upload's text: no leading space
      delta = trim_start(std::move(delta));
      started_text_ = !delta.empty();
    }
    if (delta.empty()) return;
    text_ += delta;
    // audio_end (an addition to the protocol; clients ignore unknown fields): seconds of the
    // session's audio the server had when it produced this text, for latency figures.
    send({{"type", "transcription.delta"}, {"delta", delta}, {"audio_end", pieces.back().audio_end}});
  }

  void on_done() {
    if (!job_) return;
    settle_memory(job_->queued_samples());
    const auto& model = context_.engine.model();
    const int n_delay = delay_positions(
        context_.options.delay_ms > 0 ? context_.options.delay_ms : model.tokenizer().audio().transcription_delay_ms,
        model.config());
    const auto prompt = static_cast<long long>(prompt_ids(model.tokenizer(), n_delay).size());
    send({{"type", "transcription.done"},
          {"text", text_},
          {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion_tokens_},
                     {"total_tokens", prompt + completion_tokens_}}}});
    start_utterance();
  }

  void on_job_error(const std::string& message, const std::string& code) {
    job_.reset();  // the engine has dropped it, and the audio it held
    end_session(code == "server_busy" ? "the server is busy: " + message + "; start a new session shortly"
                                      : "transcription failed: " + message,
                code);
  }

  // The session cannot go on (no room on the engine, or its transcription failed): its audio
  // is lost, so resuming with later appends would give text with a hole in it. An `error`
  // event, then the close: 1013 (try again later) when busy, 1011 (internal error) else.
  void end_session(const std::string& message, const std::string& code) {
    send_error(message, code);
    close(code == "server_busy" ? websocket::close_code::try_again_later : websocket::close_code::internal_error);
  }

  // Keeps the memory budget's hold at the audio held: `queued` samples in the job, and the
  // append waiting for room.
  void settle_memory(std::int64_t queued) {
    if (!context_.memory) return;
    const auto keep = (static_cast<std::size_t>(std::max<std::int64_t>(queued, 0)) + deferred_.size()) * sizeof(float);
    if (held_bytes_ > keep) {
      context_.memory->give_back(held_bytes_ - keep);
      held_bytes_ = keep;
    }
  }

  void drop_job() {
    if (job_) job_->cancel();
    job_.reset();
    deferred_.clear();
    settle_memory(0);
  }

  static std::string seconds_text(double seconds) {
    char text[32];
    std::snprintf(text, sizeof text, "%.4g", seconds);
    return text;
  }

  void send_error(const std::string& message, const std::string& code, const std::string& param = "") {
    context_.metrics.error(code);
    // `param`, as in OpenAI's error objects: the offending field, null when none.
    nlohmann::json event = {{"type", "error"}, {"error", message}, {"code", code}, {"param", nullptr}};
    if (!param.empty()) event["param"] = param;
    send(event);
  }

  void send(const nlohmann::json& event) {
    if (closing_ || closed_) return;
    std::string text = json_text(event);
    backlog_ += text.size();
    if (backlog_ > kMaxBacklog) {  // the client stopped reading: drop it
      context_.metrics.error("slow_client");
      drop_connection();
      return;
    }
    out_.push_back(std::move(text));
    if (!writing_) write_next();
  }

  void write_next() {
    if (closed_) {
      writing_ = false;
      return;
    }
    if (out_.empty()) {
      writing_ = false;
      if (closing_) start_close();
      return;
    }
    writing_ = true;
    ws_.text(true);
    ws_.async_write(net::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->guarded(true, [&] { self->on_write(ec); });
    });
  }

  void on_write(beast::error_code ec) {
    backlog_ -= out_.front().size();
    out_.pop_front();
    if (ec) {
      closed_ = true;
      drop_job();
      return;
    }
    write_next();
  }

  // Closes with `code` once the events already queued are written; nothing is sent after.
  void close(websocket::close_code code) {
    if (closing_ || closed_) return;
    closing_ = true;
    close_code_ = code;
    drop_job();
    if (!writing_) start_close();
  }

  void start_close() {
    writing_ = true;  // nothing is written after the close frame
    ws_.async_close(close_code_, [self = shared_from_this()](beast::error_code) {
      self->guarded(true, [&] {
        self->closed_ = true;
        self->writing_ = false;
      });
    });
  }

  // Without a close handshake: the client is not reading, or the session cannot go on.
  void drop_connection() noexcept {
    closed_ = true;
    if (job_) job_->cancel();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  void shut_down() {
    send_error("the server is shutting down", "server_shutdown");
    close(websocket::close_code::going_away);
  }

  websocket::stream<beast::tcp_stream> ws_;
  ServerContext& context_;
  beast::flat_buffer buffer_;
  std::vector<float> deferred_;  // an append waiting for room in the job
  bool paused_ = false;          // reading waits for deferred_ to go
  net::steady_timer retry_{ws_.get_executor()};
  std::deque<std::string> out_;
  std::size_t backlog_ = 0;
  bool writing_ = false;
  bool closing_ = false;  // a close is queued after the pending events
  bool closed_ = false;   // the connection is over
  websocket::close_code close_code_ = websocket::close_code::normal;
  bool opened_ = false;
  bool validated_ = false;
  Lifecycle::Id lifecycle_id_ = 0;
  std::shared_ptr<Job> job_;
  std::size_t held_bytes_ = 0;  // taken from context_.memory for audio the engine has not taken
  double audio_seconds_ = 0;    // accepted in this session
  // The current utterance.
  std::string text_;
  bool started_text_ = false;
  long long completion_tokens_ = 0;
};

}  // namespace

void start_realtime(beast::tcp_stream stream, ServerContext& context, http::request<http::string_body> request) {
  std::make_shared<RealtimeSession>(std::move(stream), context)->run(request);
}

}  // namespace voxtral
