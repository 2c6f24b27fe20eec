// OpenAI's realtime transcription sessions (server/realtime.h): the server events, in the GA
// names (session.created/updated) or, for a client that speaks the beta (OpenAI-Beta:
// realtime=v1, or transcription_session.update), in the beta's (transcription_session.*).
// A session that names no format reads its appends as OpenAI's default, 24 kHz PCM16.
#include "server/realtime_protocol.h"

#include <unordered_map>
#include <unordered_set>

#include "server/openai_events.h"
#include "server/server.h"

namespace voxtral {

namespace {

using nlohmann::json;

bool server_side(const std::string& code) {
  return code == "server_busy" || code == "processing_error" || code == "server_shutdown" ||
         code == "internal_error" || code == "slow_client";
}

class OpenAiProtocol final : public RealtimeProtocol, private OpenAiEventSink {
 public:
  OpenAiProtocol(RealtimeCore& core, bool beta) : core_(core), beta_(beta), model_(core.options().model_id) {}

  void opened() override { send_session(beta_ ? "transcription_session.created" : "session.created"); }
  void handle(std::string_view message) override { dispatch_openai_event(message, *this); }

  json error_event(const RealtimeError& error, const std::string& client_event_id) override {
    json body = {{"type", server_side(error.code) ? "server_error" : "invalid_request_error"},
                 {"code", error.code},
                 {"message", error.message},
                 {"param", nullptr},
                 {"event_id", nullptr}};
    if (!error.param.empty()) body["param"] = error.param;
    if (!client_event_id.empty()) body["event_id"] = client_event_id;
    return {{"type", "error"}, {"event_id", random_id("event_")}, {"error", body}};
  }

  void speech_started(const std::string& item, std::int64_t audio_start_ms) override {
    send("input_audio_buffer.speech_started", {{"audio_start_ms", audio_start_ms}, {"item_id", item}});
  }
  void speech_stopped(const std::string& item, std::int64_t audio_end_ms) override {
    send("input_audio_buffer.speech_stopped", {{"audio_end_ms", audio_end_ms}, {"item_id", item}});
  }
  void committed(const std::string& item, const std::string& previous) override {
    const json previous_id = previous.empty() ? json(nullptr) : json(previous);
    send("input_audio_buffer.committed", {{"previous_item_id", previous_id}, {"item_id", item}});
    const json content = json::array({{{"type", "input_audio"}, {"transcript", nullptr}}});
    send(beta_ ? "conversation.item.created" : "conversation.item.added",
         {{"previous_item_id", previous_id},
          {"item", {{"id", item}, {"object", "realtime.item"}, {"type", "message"}, {"status", "completed"},
                    {"role", "user"}, {"content", content}}}});
    committed_.insert(item);
    if (const auto held = held_.find(item); held != held_.end()) {
      for (const auto& text : held->second) send_delta(item, text);
      held_.erase(held);
    }
  }
  void cleared(const std::string& item) override {
    held_.erase(item);  // the item is never committed: its words never go out
    send("input_audio_buffer.cleared", json::object());
  }

  // OpenAI's order for an item: committed, added/created, deltas, completed. The engine
  // writes words while the audio arrives, before the commit that names the item: they wait
  // here until it.
  void delta(const std::string& item, const std::string& text, double) override {
    if (committed_.contains(item)) return send_delta(item, text);
    held_[item].push_back(text);
  }
  void done(const std::string& item, const std::string& transcript, const TurnUsage& usage) override {
    committed_.erase(item);
    send("conversation.item.input_audio_transcription.completed",
         {{"item_id", item},
          {"content_index", 0},
          {"transcript", transcript},
          {"usage", {{"type", "duration"}, {"seconds", usage.audio_seconds}}}});
  }

 private:
  void send_delta(const std::string& item, const std::string& text) {
    send("conversation.item.input_audio_transcription.delta", {{"item_id", item}, {"content_index", 0}, {"delta", text}});
  }

  void send(const char* type, json fields) {
    fields["type"] = type;
    fields["event_id"] = random_id("event_");
    core_.send(fields);
  }

  json turn_detection() const {
    const auto& td = core_.audio().turn_detection;
    if (!td) return nullptr;
    return {{"type", "server_vad"}, {"threshold", td->threshold}, {"prefix_padding_ms", td->prefix_padding_ms},
            {"silence_duration_ms", td->silence_duration_ms}};
  }

  // The whole effective session, in the shape of the dialect the client speaks.
  void send_session(const char* type) {
    const InputAudioFormat& format = core_.audio().format;
    const json transcription = {{"model", model_}, {"language", nullptr}, {"prompt", ""}};
    json session = {{"id", core_.session_id()}, {"object", "realtime.transcription_session"}, {"include", nullptr}};
    if (beta_) {
      session["modalities"] = json::array({"text"});
      session["input_audio_format"] = encoding_name(format.encoding);
      // An addition (OpenAI's pcm16 is 24 kHz only): the rate the appends are read at.
      session["input_audio_sample_rate"] = format.rate;
      session["input_audio_transcription"] = transcription;
      session["turn_detection"] = turn_detection();
      session["input_audio_noise_reduction"] = nullptr;
    } else {
      session["type"] = "transcription";
      const json format_object = format.encoding == PcmEncoding::Pcm16
                                     ? json{{"type", "audio/pcm"}, {"rate", format.rate}}
                                     : json{{"type", format.encoding == PcmEncoding::Mulaw ? "audio/pcmu" : "audio/pcma"}};
      session["audio"] = {{"input", {{"format", format_object},
                                     {"transcription", transcription},
                                     {"turn_detection", turn_detection()},
                                     {"noise_reduction", nullptr}}}};
    }
    send(type, {{"session", session}});
  }

  void on_error(const RealtimeError& error, const std::string& event_id) override { core_.refuse(error, event_id); }

  void on_session_update(const OpenAiSessionUpdate& update, const std::string& event_id) override {
    if (update.model && !core_.options().accepts_model(*update.model)) {
      return core_.refuse({"the model `" + shortened(*update.model) + "` is not served here", "model_not_found",
                           update.beta ? "session.input_audio_transcription.model"
                                       : "session.audio.input.transcription.model"},
                          event_id);
    }
    if (update.model) model_ = *update.model;
    SessionAudio audio = core_.audio();
    if (update.format) audio.format = *update.format;
    if (update.turn_detection_given) audio.turn_detection = update.turn_detection;
    core_.set_audio(audio);
    beta_ = update.beta;
    send_session(beta_ ? "transcription_session.updated" : "session.updated");
  }

  void on_append(std::string bytes, const std::string& event_id) override {
    const PcmEncoding encoding = core_.audio().format.encoding;
    auto samples = decode_pcm(bytes, encoding);
    if (!samples) {
      return core_.refuse({"`audio` must be 16-bit PCM: an even number of bytes", "invalid_audio", "audio"}, event_id);
    }
    core_.append(std::move(*samples));
  }

  void on_commit(const std::string& event_id) override { core_.commit(/*allow_empty=*/false, event_id); }
  void on_clear(const std::string&) override { core_.clear(); }

  RealtimeCore& core_;
  bool beta_;
  std::string model_;
  // Items committed and not yet completed: their deltas go out as they come.
  std::unordered_set<std::string> committed_;
  // The deltas of items not committed yet (the open turn's), in order.
  std::unordered_map<std::string, std::vector<std::string>> held_;
};

}  // namespace

std::unique_ptr<RealtimeProtocol> make_openai_protocol(RealtimeCore& core, bool beta) {
  return std::make_unique<OpenAiProtocol>(core, beta);
}

}  // namespace voxtral
