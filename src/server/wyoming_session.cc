#include "server/wyoming_session.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <optional>

#include "server/client_text.h"
#include "server/wyoming.h"
#include "server/wyoming_audio.h"
#include "server/wyoming_event.h"

namespace voxtral {

namespace {

using nlohmann::json;

// A client that stops reading may leave at most this much output unsent.
constexpr std::size_t kMaxBacklog = 4u << 20;
constexpr std::size_t kReadPiece = 64u << 10;
// How often a stream held back by its buffered-audio limit looks for room again.
constexpr std::chrono::milliseconds kRetryFeed{20};
// After its last event the server reads (and drops) what the client still sends for this
// long before it closes: closing with unread bytes would reset the connection, and the
// client could lose the error event that explains the close.
constexpr std::chrono::seconds kLinger{2};

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", seconds);
  return text;
}

std::string trim_start(std::string s) {
  s.erase(0, std::min(s.find_first_not_of(" \t\n"), s.size()));
  return s;
}

// A refused event: the error event's text and code.
struct Refusal {
  std::string text, code;
};

// An optional string field: absent or null is nullopt; another type is refused.
std::optional<std::string> optional_string(const json& data, const char* name, const char* event) {
  const auto it = data.find(name);
  if (it == data.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    throw Refusal{std::string(event) + ": `" + name + "` must be a string, not " + it->type_name(), "invalid_type"};
  }
  return it->get<std::string>();
}

WyomingLimits limits(const ServerOptions& options) {
  WyomingLimits limits;
  limits.max_payload_bytes = options.max_message_bytes;
  return limits;
}

class WyomingSession final : public std::enable_shared_from_this<WyomingSession> {
 public:
  WyomingSession(tcp::socket socket, ServerContext& context)
      : socket_(std::move(socket)),
        context_(context),
        reader_(limits(context.options)) {}

  ~WyomingSession() {
    if (job_) job_->cancel();
    deferred_.clear();
    settle_memory(0);
    if (lifecycle_id_ != 0) context_.lifecycle->forget(lifecycle_id_);
  }

  void run() {
    beast::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);  // transcript chunks go out at once
    guarded([&] { read(); });
  }

 private:
  // Every completion handler and posted callback runs its work through here: an exception
  // (bad_alloc, a bug) is logged and counted, the client gets an `error` event and the
  // connection closes; nothing reaches Asio.
  template <class F>
  void guarded(F&& work) noexcept {
    try {
      try {
        work();
        return;
      } catch (const Refusal& refusal) {
        return refuse(refusal.text, refusal.code);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "voxtral-server: wyoming connection: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "voxtral-server: wyoming connection: unknown exception\n");
      }
      context_.metrics.error("internal");
      refuse("internal server error: the event was not processed", "internal_error");
    } catch (...) {
      drop();
    }
  }

  // ---- reading

  void read() {
    if (reading_ || closing_) return;
    reading_ = true;
    const auto generation = ++reads_;
    read_buffer_.resize(kReadPiece);
    idle_.expires_after(clock_seconds(context_.options.idle_timeout_seconds));
    idle_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
      self->guarded([&] {
        // A timer that fired as its read completed may run after the next read began.
        if (!ec && self->reading_ && self->reads_ == generation && !self->closing_) {
          self->refuse("the connection was idle for " + seconds_text(self->context_.options.idle_timeout_seconds) +
                           " s (--idle-timeout)",
                       "idle_timeout");
        }
      });
    });
    socket_.async_read_some(net::buffer(read_buffer_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->guarded([&] { self->on_read(ec, n); });
    });
  }

  void on_read(beast::error_code ec, std::size_t n) {
    reading_ = false;
    idle_.cancel();
    if (closing_) {
      if (lingering_) ec ? drop() : drain();
      return;
    }
    if (ec) {  // the client left (or reset): its transcription, if any, is dropped
      drop();
      return;
    }
    pending_.append(read_buffer_.data(), n);
    process();
  }

  // Handles the events buffered so far, in order, until one waits for the engine (the rest
  // stay buffered: the client is held back by TCP); then reads more.
  void process() {
    while (!closing_ && !paused()) {
      if (reader_.has_event()) {
        WyomingEvent event = reader_.take_event();
        handle(event);
        continue;
      }
      if (const auto& error = reader_.error()) return refuse(error->message, error->code);
      if (offset_ == pending_.size()) break;
      offset_ += reader_.consume(std::string_view(pending_).substr(offset_));
    }
    if (offset_ == pending_.size()) {
      pending_.clear();
      offset_ = 0;
      if (pending_.capacity() > 2 * kReadPiece) pending_.shrink_to_fit();
    }
    if (!closing_ && !paused()) read();
  }

  bool paused() const { return !deferred_.empty() || stopping_; }

  void handle(WyomingEvent& event) {
    if (event.type == "describe") {
      context_.metrics.request("wyoming:describe", 200);
      send("info", wyoming_info(context_));
    } else if (event.type == "ping") {
      json pong = json::object();
      if (auto text = optional_string(event.data, "text", "ping")) pong["text"] = *text;
      send("pong", pong);
    } else if (event.type == "transcribe") {
      on_transcribe(event.data);
    } else if (event.type == "audio-start") {
      on_audio_start(event.data);
    } else if (event.type == "audio-chunk") {
      on_audio_chunk(event);
    } else if (event.type == "audio-stop") {
      on_audio_stop();
    }
  }

  void on_transcribe(const json& data) {
    const auto name = optional_string(data, "name", "transcribe");
    optional_string(data, "language", "transcribe");  // the model hears the language itself
    if (name && !context_.options.accepts_model(*name)) {
      throw Refusal{"transcribe: the model `" + client_text(*name) + "` is not served here (" +
                        context_.options.model_id + " is)",
                    "model_not_found"};
    }
  }

  void on_audio_start(const json& data) {
    if (audio_) throw Refusal{"audio-start: the previous audio stream has not stopped (audio-stop)", "audio_already_started"};
    if (context_.lifecycle && context_.lifecycle->draining()) {
      throw Refusal{"the server is shutting down; try another server or later", "server_shutdown"};
    }
    std::string why;
    const auto format = wyoming_audio_format(data, why);
    if (!format) throw Refusal{"audio-start: " + why, "invalid_audio_format"};
    audio_.emplace(*format, context_.sample_rate);
    if (!start_job()) return;
    last_audio_ = std::chrono::steady_clock::now();
    watch_slot();
    text_.clear();
    started_text_ = false;
    sent_start_ = false;
  }

  void on_audio_chunk(WyomingEvent& event) {
    if (!audio_) throw Refusal{"audio-chunk before audio-start: a stream begins with audio-start", "audio_not_started"};
    std::string why;
    const auto format = wyoming_audio_format(event.data, why);
    if (!format) throw Refusal{"audio-chunk: " + why, "invalid_audio_format"};
    if (!(*format == audio_->format())) {
      throw Refusal{"audio-chunk: its format (" + format->text() + ") differs from its audio-start's (" +
                        audio_->format().text() + "); a stream keeps one format",
                    "audio_format_mismatch"};
    }
    if (const std::string error = WyomingAudio::chunk_error(*format, event.payload.size()); !error.empty()) {
      throw Refusal{"audio-chunk: " + error, "invalid_audio"};
    }
    const double seconds = static_cast<double>(event.payload.size() / static_cast<std::size_t>(format->frame_bytes())) /
                           format->rate;
    if (audio_->seconds() + seconds > context_.options.max_audio_seconds) {
      throw Refusal{"the audio stream passed the server's limit of " + seconds_text(context_.options.max_audio_seconds) +
                        " s (--max-audio-seconds)",
                    "audio_too_long"};
    }
    last_audio_ = std::chrono::steady_clock::now();
    std::vector<float> samples;
    audio_->push(event.payload, samples);
    event.payload = {};
    hold(std::move(samples));
    feed_deferred(false);
  }

  void on_audio_stop() {
    if (!audio_) throw Refusal{"audio-stop without audio-start", "audio_not_started"};
    std::vector<float> tail;
    audio_->finish(tail);
    hold(std::move(tail));
    stopping_ = true;  // events after this one wait for the transcript
    feed_deferred(false);
  }

  // A stream holds an engine slot: --idle-timeout without audio from the client while the
  // engine has nothing of it to do ends it (other events, pings included, do not count), so
  // a client that keeps the connection alive and sends no audio cannot keep the slot.
  void watch_slot() {
    slot_idle_.expires_at(last_audio_ + clock_seconds(context_.options.idle_timeout_seconds));
    slot_idle_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->guarded([&] {
        if (!ec) self->on_slot_check();
      });
    });
  }

  void on_slot_check() {
    if (!job_ || closing_) return;
    const auto now = std::chrono::steady_clock::now();
    if (stopping_ || !deferred_.empty() || job_->queued_samples() > 0) last_audio_ = now;
    if (now - last_audio_ < clock_seconds(context_.options.idle_timeout_seconds)) return watch_slot();
    refuse("no audio for " + seconds_text(context_.options.idle_timeout_seconds) +
               " s (--idle-timeout) in a stream holding a transcription slot; the connection was closed to free it",
           "idle_timeout");
  }

  // ---- the engine

  // The stream's slot on the engine, from audio-start until its transcript.
  bool start_job() {
    StreamOptions options;
    options.delay_ms = context_.options.delay_ms;
    options.continuous = true;
    // The callbacks run on the engine thread and hold the session weakly: a job may outlive it.
    std::weak_ptr<WyomingSession> weak = shared_from_this();
    auto on_strand = [weak](auto work) {
      auto target = weak.lock();
      if (!target) return;
      net::post(target->socket_.get_executor(), [weak, work = std::move(work)]() mutable {
        if (auto self = weak.lock()) self->guarded([&] { work(*self); });
      });
    };
    JobCallbacks callbacks;
    callbacks.on_pieces = [on_strand](std::vector<TextPiece> pieces) {
      on_strand([pieces = std::move(pieces)](WyomingSession& self) { self.on_pieces(pieces); });
    };
    callbacks.on_done = [on_strand](const StreamStats&) { on_strand([](WyomingSession& self) { self.on_done(); }); };
    callbacks.on_error = [on_strand](const std::string& message) {
      on_strand([message](WyomingSession& self) { self.on_job_failed("transcription failed: " + message, "processing_error"); });
    };
    callbacks.on_busy = [on_strand](const std::string& message) {
      on_strand([message](WyomingSession& self) { self.on_job_failed("the server is busy: " + message, "server_busy"); });
    };
    job_ = context_.engine.start(JobKind::Live, options, std::move(callbacks));
    if (!job_) {
      refuse("the server is busy: " + std::to_string(context_.engine.max_jobs()) +
                 " transcriptions are running (--max-sessions); try again shortly",
             "server_busy");
      return false;
    }
    if (context_.lifecycle) {
      std::weak_ptr<WyomingSession> weak_self = shared_from_this();
      lifecycle_id_ = context_.lifecycle->on_abort([weak_self, executor = socket_.get_executor()] {
        net::post(executor, [weak_self] {
          if (auto self = weak_self.lock()) {
            self->guarded([&] { self->refuse("the server is shutting down", "server_shutdown"); });
          }
        });
      });
    }
    return true;
  }

  // Takes `samples` from the memory budget and queues them for the job.
  void hold(std::vector<float> samples) {
    if (samples.empty()) return;
    if (job_) settle_memory(job_->queued_samples());
    const std::size_t bytes = samples.size() * sizeof(float);
    if (context_.memory && !context_.memory->try_take(bytes)) {
      throw Refusal{"the server's memory for client audio is spent; try again shortly", "server_busy"};
    }
    held_bytes_ += context_.memory ? bytes : 0;
    deferred_.insert(deferred_.end(), samples.begin(), samples.end());
  }

  // Hands the queued audio to the job once the audio it holds leaves room for it
  // (max_buffered_audio_seconds; a larger piece goes when the job has served everything),
  // then the end of the stream after audio-stop. Until then no event is read; `resume`:
  // called from the retry timer, so reading resumes here (not inside process()).
  void feed_deferred(bool resume) {
    if (!job_) return;
    if (!deferred_.empty()) {
      const std::int64_t queued = job_->queued_samples();
      settle_memory(queued);
      const auto held = static_cast<double>(queued + static_cast<std::int64_t>(deferred_.size()));
      if (queued > 0 && held / context_.sample_rate > context_.options.max_buffered_audio_seconds) {
        retry_.expires_after(kRetryFeed);
        retry_.async_wait([self = shared_from_this()](beast::error_code ec) {
          self->guarded([&] {
            if (!ec && !self->closing_) self->feed_deferred(true);
          });
        });
        return;
      }
      job_->append(std::move(deferred_));
      deferred_ = {};
    }
    if (stopping_) {
      if (!finished_) {
        job_->finish();
        finished_ = true;
        await_transcript();
      }
      return;  // reading resumes after the transcript
    }
    if (resume) process();
  }

  // Nothing is read or written while the engine finishes the stream: this timer holds the
  // session meanwhile (the engine's callbacks hold it only weakly), and lets it go with the
  // I/O context when the server stops.
  void await_transcript() {
    awaiting_.expires_after(std::chrono::seconds(1));
    awaiting_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->guarded([&] {
        if (!ec && self->finished_ && !self->closing_) self->await_transcript();
      });
    });
  }

  void on_pieces(const std::vector<TextPiece>& pieces) {
    if (!job_) return;
    settle_memory(job_->queued_samples());
    std::string delta;
    for (const auto& piece : pieces) delta += piece.text;
    if (!started_text_) {  // as an upload's text: no leading space
      delta = trim_start(std::move(delta));
      started_text_ = !delta.empty();
    }
    if (delta.empty()) return;
    last_audio_ = std::chrono::steady_clock::now();  // the engine was busy with the stream's audio
    text_ += delta;
    start_transcript();
    send("transcript-chunk", {{"text", delta}});
  }

  void on_done() {
    if (!job_) return;
    start_transcript();
    send("transcript", {{"text", text_}});
    send("transcript-stop");
    context_.metrics.request("wyoming:transcribe", 200);
    end_stream();
    process();  // the events that came after audio-stop
  }

  void start_transcript() {
    if (sent_start_) return;
    sent_start_ = true;
    send("transcript-start");
  }

  void on_job_failed(const std::string& text, const std::string& code) {
    job_.reset();  // the engine has dropped it, and the audio it held
    refuse(text, code);
  }

  void end_stream() {
    if (job_) job_->cancel();
    job_.reset();
    audio_.reset();
    deferred_ = {};
    settle_memory(0);
    stopping_ = finished_ = false;
    awaiting_.cancel();
    slot_idle_.cancel();
    if (lifecycle_id_ != 0) context_.lifecycle->forget(lifecycle_id_);
    lifecycle_id_ = 0;
  }

  // Keeps the memory budget's hold at the audio held: `queued` samples in the job, and
  // those waiting for room.
  void settle_memory(std::int64_t queued) {
    if (!context_.memory) return;
    const auto keep = (static_cast<std::size_t>(std::max<std::int64_t>(queued, 0)) + deferred_.size()) * sizeof(float);
    if (held_bytes_ > keep) {
      context_.memory->give_back(held_bytes_ - keep);
      held_bytes_ = keep;
    }
  }

  // ---- writing and closing

  void send(const std::string& type, const json& data = json::object()) {
    if (closing_ && !sending_last_) return;
    std::string bytes = wyoming_event_bytes(type, data);
    backlog_ += bytes.size();
    if (backlog_ > kMaxBacklog) {  // the client stopped reading: drop it
      context_.metrics.error("slow_client");
      drop();
      return;
    }
    out_.push_back(std::move(bytes));
    if (!writing_) write_next();
  }

  void write_next() {
    if (out_.empty()) {
      writing_ = false;
      if (closing_) linger();
      return;
    }
    writing_ = true;
    net::async_write(socket_, net::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->guarded([&] {
        self->backlog_ -= self->out_.front().size();
        self->out_.pop_front();
        if (ec) return self->drop();
        self->write_next();
      });
    });
  }

  // An `error` event, then the close: the stream (if any) is dropped.
  void refuse(const std::string& text, const std::string& code) {
    if (closing_) return;
    context_.metrics.error(code);
    end_stream();
    closing_ = true;
    sending_last_ = true;
    send("error", {{"text", text}, {"code", code}});
    sending_last_ = false;
  }

  // Everything is written: the server's side ends, what the client still sends is read and
  // dropped for a moment, then the connection closes.
  void linger() {
    if (lingering_) return;
    lingering_ = true;
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    retry_.cancel();
    idle_.expires_after(kLinger);
    idle_.async_wait([self = shared_from_this()](beast::error_code) { self->drop(); });
    drain();
  }

  void drain() {
    if (reading_) return;  // the pending read's handler comes back here
    reading_ = true;
    read_buffer_.resize(kReadPiece);
    socket_.async_read_some(net::buffer(read_buffer_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->reading_ = false;
      if (ec) return self->drop();
      self->guarded([&] { self->drain(); });
    });
  }

  void drop() noexcept {
    closing_ = true;
    if (job_) job_->cancel();
    beast::error_code ignored;
    idle_.cancel();
    retry_.cancel();
    awaiting_.cancel();
    slot_idle_.cancel();
    socket_.close(ignored);
  }

  tcp::socket socket_;
  ServerContext& context_;
  WyomingEventReader reader_;
  std::vector<char> read_buffer_;
  std::string pending_;     // bytes read and not yet framed
  std::size_t offset_ = 0;  // ... of which the reader has taken this many
  bool reading_ = false;
  std::uint64_t reads_ = 0;  // reads started: which one an idle timer belongs to
  net::steady_timer idle_{socket_.get_executor()};
  net::steady_timer retry_{socket_.get_executor()};
  net::steady_timer awaiting_{socket_.get_executor()};
  net::steady_timer slot_idle_{socket_.get_executor()};  // while a stream holds an engine slot
  std::chrono::steady_clock::time_point last_audio_;       // its last audio event (or engine words)
  std::deque<std::string> out_;
  std::size_t backlog_ = 0;
  bool writing_ = false;
  bool closing_ = false;       // an error was sent (or the client left): nothing more is read
  bool sending_last_ = false;  // the error event that precedes the close
  bool lingering_ = false;
  Lifecycle::Id lifecycle_id_ = 0;
  // The audio stream, from audio-start to its transcript.
  std::optional<WyomingAudio> audio_;
  std::shared_ptr<Job> job_;
  std::vector<float> deferred_;  // samples waiting for room in the job
  std::size_t held_bytes_ = 0;   // taken from the memory budget for audio the engine has not taken
  bool stopping_ = false;        // audio-stop came: the transcript is awaited
  bool finished_ = false;        // ... and the job was told
  std::string text_;
  bool started_text_ = false;
  bool sent_start_ = false;
};

}  // namespace

void start_wyoming_session(tcp::socket socket, ServerContext& context) {
  std::make_shared<WyomingSession>(std::move(socket), context)->run();
}

}  // namespace voxtral
