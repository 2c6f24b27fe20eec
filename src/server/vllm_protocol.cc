// vLLM's realtime protocol (server/realtime.h): its events, and two additions of ours that a
// vLLM client never sends: session.update's sample_rate and turn_detection (realtime_events.h).
#include "server/realtime_protocol.h"

#include "server/realtime_events.h"
#include "server/server.h"

namespace voxtral {

namespace {

class VllmProtocol final : public RealtimeProtocol, private RealtimeEventSink {
 public:
  explicit VllmProtocol(RealtimeCore& core) : core_(core) {}

  void opened() override {
    core_.send({{"type", "session.created"}, {"id", core_.session_id()}, {"created", core_.created_at()}});
  }
  void handle(std::string_view message) override { dispatch_realtime_event(message, *this); }

  nlohmann::json error_event(const RealtimeError& error, const std::string&) override {
    // `param`, as in OpenAI's error objects: the offending field, null when none.
    nlohmann::json event = {{"type", "error"}, {"error", error.message}, {"code", error.code}, {"param", nullptr}};
    if (!error.param.empty()) event["param"] = error.param;
    return event;
  }

  // With turn_detection (ours), the turn events under OpenAI's names: vLLM's have none.
  void speech_started(const std::string&, std::int64_t audio_start_ms) override {
    core_.send({{"type", "input_audio_buffer.speech_started"}, {"audio_start_ms", audio_start_ms}});
  }
  void speech_stopped(const std::string&, std::int64_t audio_end_ms) override {
    core_.send({{"type", "input_audio_buffer.speech_stopped"}, {"audio_end_ms", audio_end_ms}});
  }
  void committed(const std::string&, const std::string&) override {}
  void cleared(const std::string&) override {}

  void delta(const std::string&, const std::string& text, double audio_end) override {
    // audio_end (an addition to the protocol; clients ignore unknown fields): seconds of the
    // session's audio the server had when it produced this text, for latency figures.
    core_.send({{"type", "transcription.delta"}, {"delta", text}, {"audio_end", audio_end}});
  }
  void done(const std::string&, const std::string& transcript, const TurnUsage& usage) override {
    core_.send({{"type", "transcription.done"},
                {"text", transcript},
                {"usage", {{"prompt_tokens", usage.prompt_tokens}, {"completion_tokens", usage.completion_tokens},
                           {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}});
  }

 private:
  void on_error(const RealtimeError& error) override { core_.refuse(error); }

  void on_session_update(const VllmSessionUpdate& update) override {
    if (update.model && !core_.options().accepts_model(*update.model)) {
      return core_.refuse({"the model `" + shortened(*update.model) + "` is not served here", "model_not_found", "model"});
    }
    validated_ = true;
    SessionAudio audio = core_.audio();
    if (update.sample_rate) audio.format = {PcmEncoding::Pcm16, *update.sample_rate};
    if (update.turn_detection_given) audio.turn_detection = update.turn_detection;
    core_.set_audio(audio);
  }

  void on_append(std::vector<float> samples) override { core_.append(std::move(samples)); }

  void on_commit(bool final) override {
    if (!validated_) {
      return core_.refuse({"Model not validated. Make sure to validate the model by sending a session.update event.",
                           "model_not_validated", ""});
    }
    if (final) {
      core_.commit(/*allow_empty=*/true, "");
    } else {
      core_.flush();
    }
  }

  RealtimeCore& core_;
  bool validated_ = false;
};

}  // namespace

std::unique_ptr<RealtimeProtocol> make_vllm_protocol(RealtimeCore& core) { return std::make_unique<VllmProtocol>(core); }

}  // namespace voxtral
