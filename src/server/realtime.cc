#include "server/realtime.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <random>

#include <boost/beast/websocket.hpp>

#include "model/schedule.h"
#include "server/json_text.h"
#include "server/auth.h"
#include "server/openai_events.h"
#include "server/realtime_audio.h"
#include "server/realtime_protocol.h"

namespace voxtral {

namespace websocket = beast::websocket;

std::string random_id(std::string_view prefix) {
  static std::mt19937_64 random{std::random_device{}()};
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  char text[24];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(random()));
  return std::string(prefix) + text;
}

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

constexpr int kModelRate = 16000;
// OpenAI refuses a commit of less audio than this (input_audio_buffer_commit_empty).
constexpr std::int64_t kMinCommitSamples = kModelRate / 10;

std::string trim_start(std::string s) {
  s.erase(0, std::min(s.find_first_not_of(" \t\n"), s.size()));
  return s;
}

std::int64_t to_ms(std::int64_t samples) { return samples * 1000 / kModelRate; }

enum class Protocol { Vllm, OpenAi, OpenAiBeta };

using Clock = std::chrono::steady_clock;

class RealtimeSession final : public std::enable_shared_from_this<RealtimeSession>,
                              private RealtimeCore,
                              private RealtimeAudioPath::Sink {
 public:
  RealtimeSession(beast::tcp_stream stream, ServerContext& context, Protocol protocol)
      : ws_(std::move(stream)),
        context_(context),
        id_(random_id(protocol == Protocol::Vllm ? "sess-" : "sess_")),
        created_(std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch()).count()),
        protocol_(protocol == Protocol::Vllm ? make_vllm_protocol(*this)
                                             : make_openai_protocol(*this, protocol == Protocol::OpenAiBeta)) {
    SessionAudio audio;
    if (protocol != Protocol::Vllm) audio.format = kOpenAiDefaultFormat;
    audio.turn_detection = context.options.turn_detection;
    set_audio(audio);
  }

  ~RealtimeSession() override {
    if (job_) job_->cancel();
    pending_.clear();
    deferred_samples_ = 0;
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
  // One turn: the audio between two commits (or a detected start and end of speech).
  struct Turn {
    std::string item;
    std::int64_t offset = 0;   // its first sample in the session's audio (16 kHz samples)
    std::int64_t samples = 0;  // fed to the engine
    bool discarded = false;    // cleared: its text is not reported
    std::string text;
    bool started_text = false;
    long long completion_tokens = 0;
  };
  // What waits for room in the engine's job, in order.
  struct Pending {
    enum class Kind { Audio, Flush, EndTurn } kind = Kind::Audio;
    std::vector<float> samples;
  };

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
      refuse({"internal server error: the event was not processed", "internal_error", ""});
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
    protocol_->opened();
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
      refuse({"a message is larger than this server's limit of " +
                  std::to_string(context_.options.max_message_bytes >> 10) +
                  " KiB (--max-message-kb); send audio in several appends",
              "message_too_big", ""});
      buffer_ = {};
      close(websocket::close_code::too_big);
      return;
    }
    heard_from_client(ws_.is_message_done());
    if (!ws_.is_message_done()) return read();
    const std::string_view message(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    if (ws_.got_binary()) {
      refuse({"binary frames are not accepted: send each event as a text frame of JSON (audio goes base64 in "
              "input_audio_buffer.append)",
              "invalid_event", ""});
    } else {
      guarded(false, [&] { protocol_->handle(message); });
    }
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > kKeptReadBuffer) buffer_.shrink_to_fit();
    if (!closing_ && !closed_ && !paused_) read();
  }

  // A whole message is the client's activity; so are the pieces of one still arriving, while
  // they come at --min-upload-rate on average after a grace of one idle timeout (as an HTTP
  // body does), so a trickle cannot hold an engine slot. Pings and pongs are not: Beast
  // answers them inside the read, which goes on waiting for a message.
  void heard_from_client(bool message_done) {
    const auto now = Clock::now();
    if (message_done) {
      message_start_ = {};
      last_activity_ = now;
      return;
    }
    if (message_start_ == Clock::time_point{}) message_start_ = now;
    const auto& o = context_.options;
    const double allowed = o.idle_timeout_seconds + (o.min_upload_bytes_per_second > 0
                                                         ? static_cast<double>(buffer_.size()) / o.min_upload_bytes_per_second
                                                         : 1e9);
    if (now - message_start_ <= clock_seconds(allowed)) last_activity_ = now;
  }

  // A session holding an engine slot is ended after --idle-timeout with no message from its
  // client while the engine has nothing of it to do: the slot goes to another client. The
  // close is 1008 (policy violation: the server's idle limit), after an `error` event.
  void watch_idle() {
    idle_.expires_at(last_activity_ + clock_seconds(context_.options.idle_timeout_seconds));
    idle_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->guarded(true, [&] {
        if (!ec) self->on_idle_check();
      });
    });
  }

  void on_idle_check() {
    if (!job_ || closing_ || closed_) return;
    const auto now = Clock::now();
    if (engine_has_work()) last_activity_ = now;
    if (now < last_activity_ + clock_seconds(context_.options.idle_timeout_seconds)) return watch_idle();
    refuse({"no audio or event for " + seconds_text(context_.options.idle_timeout_seconds) +
                " s (--idle-timeout); the session was closed to free its transcription slot",
            "idle_timeout", ""});
    close(websocket::close_code::policy_error);
  }

  // Audio waiting for the engine or in it, or a committed turn whose transcript is not done:
  // the client may well wait in silence.
  bool engine_has_work() const {
    return paused_ || !pending_.empty() || job_->queued_samples() > 0 || turns_.size() > (open_ ? 1u : 0u);
  }

  // ---- RealtimeCore: what the protocol asks.
  void refuse(const RealtimeError& error, const std::string& client_event_id = "") override {
    context_.metrics.error(error.code);
    send(protocol_->error_event(error, client_event_id));
  }
  const ServerOptions& options() const override { return context_.options; }
  const std::string& session_id() const override { return id_; }
  std::int64_t created_at() const override { return created_; }
  const SessionAudio& audio() const override { return audio_path_.settings(); }
  void set_audio(const SessionAudio& audio) override { audio_path_.configure(audio, *this); }

  void append(std::vector<float> samples) override {
    const double rate = audio_path_.settings().format.rate;
    const double seconds = static_cast<double>(samples.size()) / rate;
    if (audio_seconds_ + seconds > context_.options.max_audio_seconds) {
      return refuse({"this session passed the server's limit of " + seconds_text(context_.options.max_audio_seconds) +
                         " s of audio (--max-audio-seconds)",
                     "audio_too_long", "audio"});
    }
    if (!ensure_job()) return;
    const double limit = context_.options.max_buffered_audio_seconds;
    if (seconds > limit) {
      return refuse({"one append of " + seconds_text(seconds) + " s is more audio than this server holds for a "
                         "session (" + seconds_text(limit) + " s, --max-buffered-audio-seconds); it was dropped: "
                         "send audio in smaller appends",
                     "audio_buffer_full", "audio"});
    }
    settle_memory(job_->queued_samples());
    const auto bytes = static_cast<std::size_t>(seconds * kModelRate + 64) * sizeof(float);
    if (context_.memory && !context_.memory->try_take(bytes)) {
      return refuse({"the server's memory for client audio is spent; this append was dropped, try again shortly",
                     "server_busy", "audio"});
    }
    held_bytes_ += context_.memory ? bytes : 0;
    audio_seconds_ += seconds;
    audio_path_.push(samples, *this);
    settle_memory(job_ ? job_->queued_samples() : 0);
    feed_deferred();
  }

  void flush() override {
    if (!ensure_job()) return;
    pending_.push_back({Pending::Kind::Flush, {}});
    feed_deferred();
  }

  bool commit(bool allow_empty, const std::string& client_event_id) override {
    if (!ensure_job()) return false;
    audio_path_.drain(*this);  // the samples the resampler still holds belong to this turn
    if (!open_ && !allow_empty) {
      refuse({"the input audio buffer is empty: nothing was appended since the last commit",
              "input_audio_buffer_commit_empty", ""},
             client_event_id);
      return false;
    }
    if (open_ && !allow_empty && turns_.back().samples < kMinCommitSamples) {
      refuse({"the input audio buffer holds " + seconds_text(static_cast<double>(turns_.back().samples) / 16.0) +
                  " ms of audio; a commit needs at least 100 ms",
              "input_audio_buffer_commit_empty", ""},
             client_event_id);
      return false;
    }
    audio_path_.end_turn(/*drop=*/false);
    if (!open_) open_turn(last_position_);
    end_turn();
    feed_deferred();
    return true;
  }

  void clear() override {
    audio_path_.end_turn(/*drop=*/true);  // what the resampler holds goes with the rest
    std::string item;
    if (open_) {
      turns_.back().discarded = true;
      item = turns_.back().item;
      open_ = false;
      pending_.push_back({Pending::Kind::EndTurn, {}});
    }
    protocol_->cleared(item);
    feed_deferred();
  }

  // ---- RealtimeAudioPath::Sink: 16 kHz samples and turn edges, in session positions.
  void speech_started(std::int64_t audio_start) override {
    if (!open_) open_turn(audio_start);
    protocol_->speech_started(turns_.back().item, to_ms(turns_.back().offset));
  }
  void audio(std::vector<float> samples, std::int64_t position) override {
    if (!open_) open_turn(position);
    last_position_ = position + static_cast<std::int64_t>(samples.size());
    feed(std::move(samples));
  }
  void speech_stopped(std::int64_t audio_end) override {
    if (!open_) return;
    protocol_->speech_stopped(turns_.back().item, to_ms(audio_end));
    end_turn();
  }

  void open_turn(std::int64_t offset) {
    Turn turn;
    turn.item = random_id("item_");
    turn.offset = offset;
    turns_.push_back(std::move(turn));
    open_ = true;
  }

  void feed(std::vector<float> samples) {
    turns_.back().samples += static_cast<std::int64_t>(samples.size());
    deferred_samples_ += samples.size();
    // The turn detector hands audio on in 10 ms frames: one piece for the job per append.
    if (!pending_.empty() && pending_.back().kind == Pending::Kind::Audio) {
      auto& back = pending_.back().samples;
      back.insert(back.end(), samples.begin(), samples.end());
    } else {
      pending_.push_back({Pending::Kind::Audio, std::move(samples)});
    }
  }

  void end_turn() {
    open_ = false;
    pending_.push_back({Pending::Kind::EndTurn, {}});
    protocol_->committed(turns_.back().item, last_committed_);
    last_committed_ = turns_.back().item;
  }

  // Hands what waits to the job while the audio it holds leaves room
  // (max_buffered_audio_seconds). Until then no further message is read: a client that
  // sends faster than the engine transcribes is held back by TCP, and its events keep their
  // order.
  void feed_deferred() {
    if (!job_) {  // the job failed or the session is closing: nothing to feed
      pending_.clear();
      deferred_samples_ = 0;
      settle_memory(0);
      return;
    }
    while (!pending_.empty()) {
      Pending& next = pending_.front();
      if (next.kind == Pending::Kind::Audio) {
        const std::int64_t queued = job_->queued_samples();
        settle_memory(queued);
        const auto held = static_cast<double>(queued + static_cast<std::int64_t>(next.samples.size()));
        if (queued > 0 && held / kModelRate > context_.options.max_buffered_audio_seconds) {
          paused_ = true;
          retry_.expires_after(kRetryFeed);
          retry_.async_wait([self = shared_from_this()](beast::error_code ec) {
            self->guarded(true, [&] {
              if (!ec && !self->closing_ && !self->closed_) self->feed_deferred();
            });
          });
          return;
        }
        deferred_samples_ -= next.samples.size();
        job_->append(std::move(next.samples));
      } else if (next.kind == Pending::Kind::Flush) {
        job_->flush();
      } else {
        job_->end_utterance();
      }
      pending_.pop_front();
    }
    if (paused_) {
      paused_ = false;
      if (!closing_ && !closed_) read();
    }
  }

  // The session's slot on the engine, from its first append or commit until it closes.
  bool ensure_job() {
    if (job_) return true;
    if (closing_ || closed_) return false;
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
    callbacks.on_done = [on_strand](const StreamStats& stats) {
      on_strand([stats](RealtimeSession& self) { self.on_done(stats); });
    };
    callbacks.on_error = [on_strand](const std::string& message) {
      on_strand([message](RealtimeSession& self) { self.on_job_error(message, "processing_error"); });
    };
    callbacks.on_busy = [on_strand](const std::string& message) {
      on_strand([message](RealtimeSession& self) { self.on_job_error(message, "server_busy"); });
    };
    job_ = context_.engine.start(JobKind::Live, options, std::move(callbacks));
    if (job_) {
      last_activity_ = Clock::now();
      watch_idle();
    } else {
      end_session("the server is busy: " + std::to_string(context_.engine.max_jobs()) +
                      " transcriptions are running (--max-sessions); start a new session shortly",
                  "server_busy");
      return false;
    }
    return true;
  }

  // The engine's pieces and done belong to the oldest turn not yet done.
  void on_pieces(const std::vector<TextPiece>& pieces) {
    if (!job_ || turns_.empty()) return;
    last_activity_ = Clock::now();
    settle_memory(job_->queued_samples());
    Turn& turn = turns_.front();
    std::string delta;
    for (const auto& piece : pieces) {
      if (piece.id >= 0) ++turn.completion_tokens;
      delta += piece.text;
    }
    if (!turn.started_text) {  // as an upload's text: no leading space
      delta = trim_start(std::move(delta));
      turn.started_text = !delta.empty();
    }
    if (delta.empty() || turn.discarded) return;
    turn.text += delta;
    const double audio_end = static_cast<double>(turn.offset) / kModelRate + pieces.back().audio_end;
    protocol_->delta(turn.item, delta, audio_end);
  }

  void on_done(const StreamStats& stats) {
    if (!job_ || turns_.empty()) return;
    last_activity_ = Clock::now();
    settle_memory(job_->queued_samples());
    const Turn turn = std::move(turns_.front());
    turns_.pop_front();
    if (turn.discarded) return;
    const auto& model = context_.engine.model();
    const int n_delay = delay_positions(
        context_.options.delay_ms > 0 ? context_.options.delay_ms : model.tokenizer().audio().transcription_delay_ms,
        model.config());
    TurnUsage usage;
    usage.audio_seconds = stats.audio_seconds;
    usage.prompt_tokens = static_cast<long long>(prompt_ids(model.tokenizer(), n_delay).size());
    usage.completion_tokens = turn.completion_tokens;
    protocol_->done(turn.item, turn.text, usage);
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
    refuse({message, code, ""});
    close(code == "server_busy" ? websocket::close_code::try_again_later : websocket::close_code::internal_error);
  }

  // Keeps the memory budget's hold at the audio held: `queued` samples in the job, and the
  // audio waiting for room.
  void settle_memory(std::int64_t queued) {
    if (!context_.memory) return;
    const auto keep = (static_cast<std::size_t>(std::max<std::int64_t>(queued, 0)) + deferred_samples_) * sizeof(float);
    if (held_bytes_ > keep) {
      context_.memory->give_back(held_bytes_ - keep);
      held_bytes_ = keep;
    }
  }

  void drop_job() {
    idle_.cancel();
    if (job_) job_->cancel();
    job_.reset();
    pending_.clear();
    deferred_samples_ = 0;
    settle_memory(0);
  }

  static std::string seconds_text(double seconds) {
    char text[32];
    std::snprintf(text, sizeof text, "%.4g", seconds);
    return text;
  }

  void send(const nlohmann::json& event) override {
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
    refuse({"the server is shutting down", "server_shutdown", ""});
    close(websocket::close_code::going_away);
  }

  websocket::stream<beast::tcp_stream> ws_;
  ServerContext& context_;
  const std::string id_;
  const std::int64_t created_;
  std::unique_ptr<RealtimeProtocol> protocol_;
  beast::flat_buffer buffer_;
  std::deque<Pending> pending_;       // what waits for room in the job
  std::size_t deferred_samples_ = 0;  // the audio in pending_
  bool paused_ = false;               // reading waits for pending_ to go
  net::steady_timer retry_{ws_.get_executor()};
  net::steady_timer idle_{ws_.get_executor()};  // while the session holds an engine slot
  Clock::time_point last_activity_;  // the client's last message, or the engine's last words
  Clock::time_point message_start_;  // the first piece of a message still arriving
  std::deque<std::string> out_;
  std::size_t backlog_ = 0;
  bool writing_ = false;
  bool closing_ = false;  // a close is queued after the pending events
  bool closed_ = false;   // the connection is over
  websocket::close_code close_code_ = websocket::close_code::normal;
  bool opened_ = false;
  Lifecycle::Id lifecycle_id_ = 0;
  std::shared_ptr<Job> job_;
  std::size_t held_bytes_ = 0;  // taken from context_.memory for audio the engine has not taken
  double audio_seconds_ = 0;    // accepted in this session
  RealtimeAudioPath audio_path_;
  std::int64_t last_position_ = 0;  // the session position after the last audio fed
  // The turns whose transcript is not done yet, oldest first; the last is open when open_.
  std::deque<Turn> turns_;
  bool open_ = false;
  std::string last_committed_;
};

Protocol protocol_of(const http::request<http::string_body>& request) {
  const std::string_view target(request.target().data(), request.target().size());
  const auto beta = request.find("OpenAI-Beta");
  if (beta != request.end() && beta->value().find("realtime") != beast::string_view::npos) return Protocol::OpenAiBeta;
  if (!query_parameter(target, "intent").empty() || !query_parameter(target, "model").empty()) return Protocol::OpenAi;
  return Protocol::Vllm;
}

}  // namespace

void start_realtime(beast::tcp_stream stream, ServerContext& context, http::request<http::string_body> request) {
  std::make_shared<RealtimeSession>(std::move(stream), context, protocol_of(request))->run(request);
}

}  // namespace voxtral
