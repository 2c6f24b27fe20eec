#include "server/transcription.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "core/error.h"
#include "server/client_text.h"
#include "server/json_text.h"
#include "server/multipart.h"
#include "server/upload_audio.h"
#include "transcript/formats.h"
#include "transcript/segments.h"

namespace voxtral {

namespace {

// A slow reader of an event stream may hold at most this much unsent output.
constexpr std::size_t kMaxEventBacklog = 4u << 20;
constexpr int kOfflineEncoderChunk = 128;
// verbose_json's `language`: the model transcribes the language spoken without naming it.
constexpr const char* kUnreportedLanguage = "auto";

struct Request {
  std::string body;  // owns the bytes the parts view
  MemoryBudget::Hold body_hold;   // what `body` holds from the server's memory budget
  MemoryBudget::Hold audio_hold;  // what the decoded samples hold
  std::uint64_t number = 0;       // the connection's request number
  std::atomic<bool> gone{false};  // the client left (or the server shut down) before decoding ended
  std::string filename;
  std::string_view audio;
  std::string format = "json";
  std::string language;
  std::set<std::string> granularities;
  bool stream = false;
};

// A form value, quoted for a message if it is short printable text (else left out).
std::string shown(std::string_view value) {
  const std::string text = client_text(value, 40);
  return text == value ? " `" + text + "`" : "";
}

// Why a form was refused: the message ("" when it was not), the field it names, and whether
// it names a model this server does not serve (404 model_not_found rather than 400).
struct FormError {
  std::string message;
  std::string param;
  bool unknown_model = false;
};

// Validates the form. Every field is checked for its type (text fields must be UTF-8);
// messages name the field and quote client text only when it is short, printable and valid.
FormError parse_form(Request& r, const std::string& content_type, const ServerOptions& options) {
  std::vector<FormPart> parts;
  try {
    parts = parse_multipart(r.body, multipart_boundary(content_type));
  } catch (const Error& e) {
    return {e.what(), ""};
  }
  bool have_file = false;
  for (const auto& part : parts) {
    const std::string value(part.name == "file" ? std::string_view() : part.data);
    const std::string param = part.name == "timestamp_granularities[]" ? "timestamp_granularities" : part.name;
    const bool known = part.name == "model" || part.name == "response_format" || part.name == "stream" ||
                       param == "timestamp_granularities" || part.name == "language" || part.name == "prompt" ||
                       part.name == "temperature";
    if (known && !is_valid_utf8(value)) return {"`" + part.name + "` is not valid UTF-8 text", param};
    if (part.name == "file") {
      if (have_file) return {"the form has more than one `file` part: send one file per request", "file"};
      have_file = true;
      r.audio = part.data;
      // The name appears in error messages about the audio: valid UTF-8, no control characters.
      r.filename = part.filename.empty() ? "file" : client_text(part.filename, 128);
    } else if (part.name == "model") {
      if (!options.accepts_model(value)) {
        std::string served;
        for (const auto& name : options.listed_models()) served += (served.empty() ? "`" : ", `") + name + "`";
        return {"The model" + shown(value) + " does not exist; this server serves " + served, "model", true};
      }
    } else if (part.name == "response_format") {
      if (value != "json" && value != "text" && value != "srt" && value != "vtt" && value != "verbose_json") {
        return {"response_format must be json, text, srt, vtt or verbose_json, not" + shown(value), "response_format"};
      }
      r.format = value;
    } else if (param == "timestamp_granularities") {
      if (value != "word" && value != "segment") {
        return {"timestamp_granularities[] must be word or segment, not" + shown(value), "timestamp_granularities"};
      }
      r.granularities.insert(value);
    } else if (part.name == "stream") {
      if (value != "true" && value != "false") return {"stream must be true or false, not" + shown(value), "stream"};
      r.stream = value == "true";
    } else if (part.name == "language") {
      if (value.size() > 32) return {"language must be a language code such as `en`", "language"};
      r.language = value;
    } else if (part.name == "temperature") {
      char* end = nullptr;
      const double t = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size() || !(t >= 0 && t <= 1)) {
        return {"temperature must be a number from 0 to 1", "temperature"};
      }
    }
    // prompt, temperature, chunking_strategy, include[]: accepted, unused: decoding is greedy.
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
  if (r.format == "json") return {"application/json", json_text(nlohmann::json{{"text", text}, {"usage", usage}})};
  auto doc = segments_json(c.segments, c.segmenter.all_words(), text, duration);
  // The model takes no language input and reports none: it writes whatever language is
  // spoken. The request's `language` is not used, so it is not echoed as if it were.
  doc["language"] = kUnreportedLanguage;
  doc["usage"] = usage;
  if (!r.granularities.contains("word")) doc.erase("words");
  if (!r.granularities.contains("segment")) doc.erase("segments");
  return {"application/json", json_text(doc)};
}

void run(const std::shared_ptr<HttpSession>& session, std::shared_ptr<Request> r, std::vector<float> samples) {
  ServerContext& context = session->context();
  const double duration = static_cast<double>(samples.size()) / context.sample_rate;
  StreamOptions options;
  options.delay_ms = context.options.delay_ms;
  options.continuous = true;
  options.expected_samples = static_cast<std::int64_t>(samples.size());
  options.encoder_chunk = kOfflineEncoderChunk;
  if (r->format == "verbose_json") options.report_chosen_probabilities();  // for avg_logprob
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
      if (!client || client->request_number() != r->number) return;
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
      if (!client || client->request_number() != r->number) return;
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
  // A failure the engine reported, for the client if it still waits for this request: an
  // error event that ends the stream, or an HTTP error.
  auto report_failure = [weak, r](std::string metric, std::string text, http::status status, std::string code) {
    auto target = weak.lock();
    if (!target) return;
    target->post([weak, r, metric = std::move(metric), text = std::move(text), status, code = std::move(code)] {
      auto client = weak.lock();
      if (!client || client->request_number() != r->number) return;
      client->context().metrics.error(metric);
      if (r->stream) {
        nlohmann::json error = {{"message", text}, {"type", "server_error"}};
        if (!code.empty()) error["code"] = code;
        client->send_event({{"type", "error"}, {"error", std::move(error)}});
        client->end_events();
      } else {
        client->respond_error(status, text, "server_error", "", code);
      }
    });
  };
  callbacks.on_busy = [report_failure](const std::string& message) {
    report_failure("busy", "the server is busy: " + message + "; try again shortly", http::status::service_unavailable,
                   "server_busy");
  };
  callbacks.on_error = [report_failure](const std::string& message) {
    report_failure("transcription_failed", message, http::status::internal_server_error, "");
  };
  auto job = context.engine.start(JobKind::Batch, options, std::move(callbacks));
  if (!job) {
    context.metrics.error("busy");
    session->respond_error(http::status::service_unavailable,
                           "the server is busy: " + std::to_string(context.engine.max_jobs()) +
                               " transcriptions are running; try again shortly",
                           "server_error", "", "server_busy");
    return;
  }
  *job_holder = job;
  session->watch_for_disconnect([job] { job->cancel(); });
  if (r->stream) session->begin_events();
  job->append(std::move(samples));
  job->finish();
}

}  // namespace

void handle_transcription(std::shared_ptr<HttpSession> session, http::request<http::string_body>&& request) {
  auto r = std::make_shared<Request>();
  r->body = std::move(request.body());
  r->body_hold = session->take_upload_hold();
  r->number = session->request_number();
  const std::string content_type(request[http::field::content_type]);
  ServerContext& context = session->context();
  if (const FormError refused = parse_form(*r, content_type, context.options); !refused.message.empty()) {
    context.metrics.error("bad_request");
    session->respond_error(refused.unknown_model ? http::status::not_found : http::status::bad_request,
                           refused.message, "invalid_request_error", refused.param,
                           refused.unknown_model ? "model_not_found" : "");
    return;
  }
  // From here the client's leaving (or the shutdown abort) ends the work.
  session->watch_for_disconnect([r] { r->gone = true; });
  r->audio_hold = MemoryBudget::Hold(context.memory);
  // Decoding (libav, resampling) runs off the I/O threads, inside its own exception boundary.
  net::post(*context.blocking_pool, [session, r] {
    ServerContext& shared = session->context();
    std::vector<float> samples;
    http::status status = http::status::ok;
    std::string error;
    try {
      if (!r->gone) {
        samples = decode_upload(r->audio, r->filename, shared.sample_rate, shared.options.max_audio_seconds,
                                &r->audio_hold);
      }
    } catch (const UploadOverBudget& e) {
      status = http::status::service_unavailable;
      error = e.what();
    } catch (const Error& e) {
      status = http::status::bad_request;
      error = e.what();
    } catch (const std::bad_alloc&) {
      status = http::status::service_unavailable;
      error = r->filename + ": the server is out of memory for this audio now; try again shortly";
    } catch (const std::exception& e) {
      std::fprintf(stderr, "voxtral-server: internal error decoding an upload: %s\n", e.what());
      status = http::status::internal_server_error;
      error = "internal server error while decoding the audio (the server logged it)";
    } catch (...) {
      std::fprintf(stderr, "voxtral-server: internal error decoding an upload: an unknown exception\n");
      status = http::status::internal_server_error;
      error = "internal server error while decoding the audio (the server logged it)";
    }
    // The encoded bytes are not needed any more.
    r->audio = {};
    r->body = std::string();
    r->body_hold.reset();
    session->post([session, r, status, error, samples = std::move(samples)]() mutable {
      if (r->gone || session->request_number() != r->number) return;
      if (status != http::status::ok) {
        session->context().metrics.error(status == http::status::bad_request            ? "bad_audio"
                                         : status == http::status::service_unavailable ? "memory_budget"
                                                                                        : "internal");
        session->respond_error(status, error, status == http::status::bad_request ? "invalid_request_error" : "server_error",
                               status == http::status::bad_request ? "file" : "");
        return;
      }
      run(session, r, std::move(samples));
    });
  });
}

std::pair<std::string, std::string> check_transcription_form(std::string body, const std::string& content_type,
                                                             const ServerOptions& options) {
  Request r;
  r.body = std::move(body);
  FormError refused = parse_form(r, content_type, options);
  return {std::move(refused.message), std::move(refused.param)};
}

}  // namespace voxtral
