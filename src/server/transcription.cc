#include "server/transcription.h"

#include <set>

#include "core/error.h"
#include "model/formats.h"
#include "model/segments.h"
#include "server/multipart.h"
#include "server/upload_audio.h"

namespace voxtral {

namespace {

// A slow reader of an event stream may hold at most this much unsent output.
constexpr std::size_t kMaxEventBacklog = 4u << 20;
constexpr int kOfflineEncoderChunk = 128;
// verbose_json's `language`: the model transcribes the language spoken without naming it.
constexpr const char* kUnreportedLanguage = "auto";

struct Request {
  std::string body;  // owns the bytes the parts view
  std::string filename;
  std::string_view audio;
  std::string format = "json";
  std::string language;
  std::set<std::string> granularities;
  bool stream = false;
};

// Validates the form; returns an error message (and the offending field) or "".
std::pair<std::string, std::string> parse_form(Request& r, const std::string& content_type, const ServerOptions& options) {
  std::vector<FormPart> parts;
  try {
    parts = parse_multipart(r.body, multipart_boundary(content_type));
  } catch (const Error& e) {
    return {e.what(), ""};
  }
  bool have_file = false;
  for (const auto& part : parts) {
    const std::string value(part.data);
    if (part.name == "file") {
      have_file = true;
      r.audio = part.data;
      r.filename = part.filename.empty() ? "file" : part.filename;
    } else if (part.name == "model") {
      if (!options.accepts_model(value)) {
        std::string served;
        for (const auto& name : options.listed_models()) served += (served.empty() ? "`" : ", `") + name + "`";
        return {"The model `" + value + "` does not exist; this server serves " + served, "model"};
      }
    } else if (part.name == "response_format") {
      if (value != "json" && value != "text" && value != "srt" && value != "vtt" && value != "verbose_json") {
        return {"response_format must be json, text, srt, vtt or verbose_json, not `" + value + "`", "response_format"};
      }
      r.format = value;
    } else if (part.name == "timestamp_granularities[]" || part.name == "timestamp_granularities") {
      if (value != "word" && value != "segment") {
        return {"timestamp_granularities[] must be word or segment, not `" + value + "`", "timestamp_granularities"};
      }
      r.granularities.insert(value);
    } else if (part.name == "stream") {
      if (value != "true" && value != "false") return {"stream must be true or false, not `" + value + "`", "stream"};
      r.stream = value == "true";
    } else if (part.name == "language") {
      r.language = value;
    }
    // prompt, temperature, chunking_strategy, include[]: accepted; decoding is greedy.
  }
  if (!have_file) return {"the form has no `file` part", "file"};
  if (r.granularities.empty()) r.granularities.insert("segment");
  return {"", ""};
}

std::string trim_start(std::string s) {
  s.erase(0, std::min(s.find_first_not_of(" \t\n"), s.size()));
  return s;
}

// Everything a transcription collects on the engine thread, rendered at the end.
struct Collected {
  Segmenter segmenter;
  std::vector<Segment> segments;
  std::string text;
  bool started_text = false;
};

std::pair<std::string, std::string> render(const Request& r, Collected& c, double duration) {
  for (auto& s : c.segmenter.finish()) c.segments.push_back(std::move(s));
  const std::string text = trim_start(c.text);
  if (r.format == "text") return {"text/plain; charset=utf-8", text + "\n"};
  if (r.format == "srt") {
    std::string out;
    for (std::size_t i = 0; i < c.segments.size(); ++i) out += srt_cue(static_cast<int>(i + 1), c.segments[i]);
    return {"text/plain; charset=utf-8", out};
  }
  if (r.format == "vtt") {
    std::string out = vtt_header();
    for (const auto& s : c.segments) out += vtt_cue(s);
    return {"text/vtt; charset=utf-8", out};
  }
  nlohmann::json usage = {{"type", "duration"}, {"seconds", std::ceil(duration)}};
  if (r.format == "json") return {"application/json", nlohmann::json{{"text", text}, {"usage", usage}}.dump()};
  auto doc = segments_json(c.segments, c.segmenter.all_words(), text, duration);
  // The model takes no language input and reports none: it writes whatever language is
  // spoken. The request's `language` is not used, so it is not echoed as if it were.
  doc["language"] = kUnreportedLanguage;
  doc["usage"] = usage;
  if (!r.granularities.contains("word")) doc.erase("words");
  if (!r.granularities.contains("segment")) doc.erase("segments");
  return {"application/json", doc.dump()};
}

void run(const std::shared_ptr<HttpSession>& session, std::shared_ptr<Request> r, std::vector<float> samples) {
  ServerContext& context = session->context();
  const double duration = static_cast<double>(samples.size()) / context.sample_rate;
  StreamOptions options;
  options.delay_ms = context.options.delay_ms;
  options.continuous = true;
  options.expected_samples = static_cast<std::int64_t>(samples.size());
  options.encoder_chunk = kOfflineEncoderChunk;
  if (r->format == "verbose_json") {  // the chosen tokens' probabilities, for avg_logprob
    options.alternatives = 1;
    options.alternative_cutoff = 1;  // no other candidate reaches certainty: only the token is kept
  }
  auto collected = std::make_shared<Collected>();
  // The callbacks hold the connection weakly and no executor of it: a job may outlive both.
  std::weak_ptr<HttpSession> weak = session;
  // The job outlives this function through the callbacks; they hold the session weakly.
  auto job_holder = std::make_shared<std::weak_ptr<Job>>();  // weak: the job owns these callbacks
  JobCallbacks callbacks;
  callbacks.on_pieces = [weak, r, collected, job_holder](std::vector<TextPiece> pieces) {
    auto target = weak.lock();
    if (!target) return;
    target->post([weak, r, collected, job_holder, pieces = std::move(pieces)] {
      std::string delta;
      for (const auto& piece : pieces) {
        for (auto& s : collected->segmenter.add(piece)) collected->segments.push_back(std::move(s));
        collected->text += piece.text;
        delta += piece.text;
      }
      if (!r->stream) return;
      auto client = weak.lock();
      if (!client) return;
      if (!collected->started_text) {
        delta = trim_start(delta);
        collected->started_text = !delta.empty();
      }
      if (delta.empty()) return;
      if (client->backlog() > kMaxEventBacklog) {  // the client is not reading: give up on it
        client->context().metrics.error("slow_client");
        if (auto job = job_holder->lock()) job->cancel();
        client->end_events();
        return;
      }
      client->send_event({{"type", "transcript.text.delta"}, {"delta", delta}});
    });
  };
  callbacks.on_done = [weak, r, collected, duration](const StreamStats&) {
    auto target = weak.lock();
    if (!target) return;
    target->post([weak, r, collected, duration] {
      auto client = weak.lock();
      if (!client) return;
      if (r->stream) {
        client->send_event({{"type", "transcript.text.done"},
                             {"text", trim_start(collected->text)},
                             {"usage", {{"type", "duration"}, {"seconds", std::ceil(duration)}}}});
        client->end_events();
        return;
      }
      auto [type, body] = render(*r, *collected, duration);
      client->respond(http::status::ok, type, std::move(body));
    });
  };
  callbacks.on_error = [weak, r](const std::string& message) {
    auto target = weak.lock();
    if (!target) return;
    target->post([weak, r, message] {
      auto client = weak.lock();
      if (!client) return;
      client->context().metrics.error("transcription_failed");
      if (r->stream) {
        client->send_event({{"type", "error"}, {"error", {{"message", message}, {"type", "server_error"}}}});
        client->end_events();
      } else {
        client->respond_error(http::status::internal_server_error, message, "server_error");
      }
    });
  };
  auto job = context.engine.start(JobKind::Batch, options, std::move(callbacks));
  if (!job) {
    context.metrics.error("busy");
    session->respond_error(http::status::service_unavailable,
                           "the server is busy: " + std::to_string(context.engine.options().max_jobs) +
                               " transcriptions are running; try again shortly",
                           "server_error");
    return;
  }
  *job_holder = job;
  session->watch_for_disconnect([job, &context] {
    context.metrics.error("client_disconnected");
    job->cancel();
  });
  if (r->stream) session->begin_events();
  job->append(std::move(samples));
  job->finish();
}

}  // namespace

void handle_transcription(std::shared_ptr<HttpSession> session, http::request<http::string_body>&& request) {
  auto r = std::make_shared<Request>();
  r->body = std::move(request.body());
  const std::string content_type(request[http::field::content_type]);
  ServerContext& context = session->context();
  if (auto [message, param] = parse_form(*r, content_type, context.options); !message.empty()) {
    context.metrics.error("bad_request");
    const bool unknown_model = param == "model";
    session->respond_error(unknown_model ? http::status::not_found : http::status::bad_request, message,
                           "invalid_request_error", param, unknown_model ? "model_not_found" : "");
    return;
  }
  // Decoding (libav, resampling) runs off the I/O threads.
  net::post(*context.blocking_pool, [session, r] {
    const ServerContext& shared = session->context();
    std::vector<float> samples;
    std::string error;
    try {
      samples = decode_upload(r->audio, r->filename, shared.sample_rate, shared.options.max_audio_seconds);
    } catch (const Error& e) {
      error = e.what();
    }
    session->post([session, r, error, samples = std::move(samples)]() mutable {
      if (!error.empty()) {
        session->context().metrics.error("bad_audio");
        session->respond_error(http::status::bad_request, error, "invalid_request_error", "file");
        return;
      }
      run(session, r, std::move(samples));
    });
  });
}

}  // namespace voxtral
