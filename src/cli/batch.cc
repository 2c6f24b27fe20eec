#include "cli/batch.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "core/error.h"
#include "runtime/scheduler.h"
#include "runtime/transcriber.h"

namespace voxtral {

namespace fs = std::filesystem;

namespace {

// A directory's audio files: names ending in .wav (any case), not hidden (a leading dot, as
// shell globs and `ls` leave them out).
bool wav_name(const fs::path& path) {
  const std::string name = path.filename().string();
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".wav" && !name.empty() && name.front() != '.';
}

struct FileState {
  std::vector<TextPiece> pieces;
  StreamStats stats;
  std::string error;  // names the file
  ExitCode code = kOk;
  bool done = false;
};

void write_all(std::FILE* f, const std::string& s, const std::string& name) {
  errno = 0;
  if (std::fwrite(s.data(), 1, s.size(), f) != s.size() || std::fflush(f) != 0) {
    const int error = errno;
    std::clearerr(f);
    throw OutputError(cat(name, ": cannot write the transcript: ", error != 0 ? std::strerror(error) : "write error"));
  }
}

void write_file(const fs::path& path, const std::string& s) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
  if (!f) throw OutputError(cat(path.string(), ": cannot create: ", std::strerror(errno)));
  write_all(f.get(), s, path.string());
  if (std::fclose(f.release()) != 0) throw OutputError(cat(path.string(), ": cannot write: ", std::strerror(errno)));
}

std::string render(const Model& model, const FileState& file, OutputFormat format, const BatchOptions& o, bool debug) {
  std::string s;
  TranscriptPrinter printer(format, o.timestamps, o.alternatives, debug, model.tokenizer(), &s);
  for (const auto& piece : file.pieces) printer.add(piece);
  printer.finish(file.stats.audio_seconds);
  return s;
}

}  // namespace

const char* output_extension(OutputFormat format) {
  switch (format) {
    case OutputFormat::Json: return "json";
    case OutputFormat::Srt: return "srt";
    case OutputFormat::Vtt: return "vtt";
    case OutputFormat::Text: break;
  }
  return "txt";
}

std::vector<BatchInput> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<BatchInput> files;
  for (const auto& input : inputs) {
    std::error_code ec;
    if (!fs::is_directory(input, ec)) {
      files.push_back({input, ""});  // a file: reading it reports any problem
      continue;
    }
    std::vector<std::string> found;
    for (fs::directory_iterator it(input, ec), end; !ec && it != end; it.increment(ec)) {
      if (!wav_name(it->path())) continue;
      std::error_code entry_ec;
      if (it->is_directory(entry_ec)) continue;
      // Anything else named *.wav is read, so a broken link or a device is reported by name.
      found.push_back((fs::path(input) / it->path().filename()).string());
    }
    if (ec) {
      files.push_back({input, cat(input, ": cannot list the directory: ", ec.message())});
    } else if (found.empty()) {
      files.push_back({input, cat(input, ": no .wav files in this directory")});
    }
    std::sort(found.begin(), found.end());
    for (auto& f : found) files.push_back({std::move(f), ""});
  }
  return files;
}

ExitCode transcribe_files(Model& model, const std::vector<BatchInput>& files, const BatchOptions& o) {
  const bool to_stdout = o.output_dir.empty();
  if (!to_stdout) {
    // Two inputs with one stem would overwrite each other's transcripts.
    std::map<std::string, std::string> stems;
    for (const auto& f : files) {
      if (!f.error.empty()) continue;
      const auto [at, fresh] = stems.emplace(fs::path(f.path).stem().string(), f.path);
      if (!fresh) {
        std::fprintf(stderr, "voxtral: --output-dir: %s and %s would both write %s.*\n", at->second.c_str(),
                     f.path.c_str(), at->first.c_str());
        return kUsage;
      }
    }
    std::error_code ec;
    fs::create_directories(o.output_dir, ec);
    if (ec) {
      std::fprintf(stderr, "voxtral: %s: cannot create the output directory: %s\n", o.output_dir.c_str(),
                   ec.message().c_str());
      return kOutputError;
    }
  }
  const int rate = model.config().audio.sampling_rate;
  WarningHandler warnings;
  if (!o.silent) warnings = [](const std::string& m) { std::fprintf(stderr, "voxtral: %s\n", m.c_str()); };
  const OutputFormat shown_format = o.formats.empty() ? OutputFormat::Text : o.formats.front();
  const bool json = to_stdout && shown_format == OutputFormat::Json;

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<FileState> state(files.size());
  int running = 0;
  // Files the scheduler refused for lack of room in the K/V cache (a file takes the pages of
  // its whole length at its start), each with the count of files ended then: one is tried
  // again once another has ended and given its pages back; meanwhile no new file starts.
  int ended = 0;
  std::deque<std::pair<std::size_t, int>> refused;
  SchedulerOptions so;
  so.max_jobs = o.max_files;
  Scheduler scheduler(model, so);  // after the state its callbacks fill: it stops first

  auto finished = [&](std::size_t i, ExitCode code, std::string error) {  // mutex held
    ++ended;
    state[i].code = code;
    state[i].error = std::move(error);
    state[i].done = true;
  };
  // Reads file i and hands it to the scheduler.
  auto start = [&](std::size_t i) {
    std::vector<float> samples;
    std::string error = files[i].error;
    if (error.empty()) {
      try {
        samples = load_audio_file(files[i].path, rate, AudioFormat::Wav, warnings);
      } catch (const std::exception& e) {  // Error, and anything else (e.g. out of memory)
        error = e.what();
      }
    }
    if (!error.empty()) {
      std::lock_guard lock(mutex);
      finished(i, kAudioError, error);
      return;
    }
    StreamOptions stream = o.stream;
    stream.expected_samples = static_cast<std::int64_t>(samples.size());
    stream.encoder_chunk = kOfflineEncoderChunk;
    JobCallbacks callbacks;  // run on the scheduler thread
    callbacks.on_pieces = [&, i](std::vector<TextPiece> pieces) {
      std::lock_guard lock(mutex);
      auto& all = state[i].pieces;
      all.insert(all.end(), std::make_move_iterator(pieces.begin()), std::make_move_iterator(pieces.end()));
    };
    callbacks.on_done = [&, i](const StreamStats& stats) {
      {
        std::lock_guard lock(mutex);
        state[i].stats = stats;
        finished(i, kOk, "");
        --running;
      }
      changed.notify_all();
    };
    callbacks.on_error = [&, i](const std::string& message) {
      {
        std::lock_guard lock(mutex);
        finished(i, kTranscriptionError, cat(files[i].path, ": ", message));
        --running;
      }
      changed.notify_all();
    };
    callbacks.on_busy = [&, i](const std::string& message) {
      {
        std::lock_guard lock(mutex);
        --running;
        state[i].pieces.clear();
        if (running == 0) {  // the whole cache is free and still too small for this file
          finished(i, kTranscriptionError, cat(files[i].path, ": ", message, " (raise --kv-cache-mb)"));
        } else {
          refused.emplace_back(i, ended);
        }
      }
      changed.notify_all();
    };
    std::unique_lock lock(mutex);
    std::shared_ptr<Job> job;
    // A job that just finished leaves the scheduler at the end of its tick: its place
    // frees within one step.
    while (!(job = scheduler.start(JobKind::Batch, stream, callbacks))) {
      changed.wait_for(lock, std::chrono::milliseconds(2));
    }
    ++running;
    lock.unlock();
    job->append(std::move(samples));
    job->finish();
  };

  const auto t0 = std::chrono::steady_clock::now();
  ExitCode result = kOk;
  int failed = 0;
  bool printed_any = false;  // a file's text went to stdout (the next is set apart by a blank line)
  try {
    if (json) write_all(stdout, "[\n", "stdout");
    std::size_t next = 0;
    std::unique_lock lock(mutex);
    for (std::size_t shown = 0; shown < files.size();) {
      if (state[shown].done) {
        const FileState file = std::move(state[shown]);
        lock.unlock();
        const std::string& path = files[shown].path;
        if (file.code != kOk) {
          std::fprintf(stderr, "voxtral: %s\n", file.error.c_str());
          if (result == kOk) result = file.code;
          ++failed;
          if (json) {
            write_all(stdout, nlohmann::json{{"file", path}, {"error", file.error}}.dump(2), "stdout");
          }
        } else if (to_stdout) {
          std::string out = render(model, file, shown_format, o, o.debug);
          if (json) {
            auto object = nlohmann::json::parse(out);
            object["file"] = path;
            out = object.dump(2);
          } else {
            out = cat(printed_any ? "\n" : "", "==> ", path, " <==\n", out);
            printed_any = true;
          }
          write_all(stdout, out, "stdout");
        } else {
          for (std::size_t k = 0; k < o.formats.size(); ++k) {
            const auto target = fs::path(o.output_dir) / cat(fs::path(path).stem().string(), ".", output_extension(o.formats[k]));
            write_file(target, render(model, file, o.formats[k], o, o.debug && k == 0));
            if (!o.silent) std::fprintf(stderr, "voxtral: wrote %s\n", target.c_str());
          }
        }
        if (json) write_all(stdout, shown + 1 < files.size() ? ",\n" : "\n]\n", "stdout");
        lock.lock();
        ++shown;
      } else if (!refused.empty() && ended > refused.front().second && running < o.max_files) {
        const std::size_t again = refused.front().first;
        refused.pop_front();
        lock.unlock();
        start(again);
        lock.lock();
      } else if (refused.empty() && next < files.size() && running < o.max_files) {
        lock.unlock();
        start(next++);
        lock.lock();
      } else {
        changed.wait(lock);
      }
    }
  } catch (const OutputError& e) {
    scheduler.cancel_all();
    std::fprintf(stderr, "voxtral: %s\n", e.what());
    return kOutputError;
  }
  if (!o.silent) {
    const auto c = scheduler.counters();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr,
                 "voxtral: %zu files (%d failed), %.2f s of audio in %.2f s after loading (%.1fx real time); "
                 "%lld decoder steps, on average %.2f streams and %.2f rows (speculative ones included) a step\n",
                 files.size(), failed, c.audio_seconds, wall, wall > 0 ? c.audio_seconds / wall : 0.0,
                 static_cast<long long>(c.decode_steps),
                 c.decode_steps > 0 ? static_cast<double>(c.stepped_streams) / static_cast<double>(c.decode_steps) : 0.0,
                 c.decode_steps > 0 ? static_cast<double>(c.decoded_rows) / static_cast<double>(c.decode_steps) : 0.0);
  }
  return result;
}

}  // namespace voxtral
