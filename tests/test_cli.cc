// End-to-end tests of the voxtral command line on the tiny fixture models: the transcript
// must be the one transformers recorded, and every failure must give a clear message and
// the documented exit code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "core/audio.h"
#include "test_util.h"
#include "word_time_checks.h"

namespace voxtral {
namespace {

using ::testing::HasSubstr;
using voxtral::testing::fixture;
using voxtral::testing::source_path;
using voxtral::testing::TempDir;

struct Result {
  int exit_code = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Runs `voxtral <args>` through the shell (so args may hold redirections and pipes).
Result run_cli(const std::string& args, const std::string& stdin_prefix = "") {
  TempDir dir;
  const auto out = dir.path() / "out", err = dir.path() / "err";
  // The GPU suite runs these tests again with backend options added.
  const char* extra = std::getenv("VOXTRAL_TEST_CLI_ARGS");
  const char* moved_cli = std::getenv("VOXTRAL_CLI");
  const std::string cmd = stdin_prefix + "'" + std::string(moved_cli != nullptr ? moved_cli : VOXTRAL_CLI) + "' " + args + " " + (extra ? extra : "") +
                          " >'" + out.string() + "' 2>'" + err.string() + "'";
  const int status = std::system(cmd.c_str());
  Result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string quoted(const std::filesystem::path& p) {
  std::string q = "'";  // (not "'" + ...: GCC 12 warns wrongly about that form)
  q.append(p.string()).push_back('\'');
  return q;
}

nlohmann::json clip(const std::string& model, int index) {
  std::ifstream in(fixture(model + ".json"));
  return nlohmann::json::parse(in)["clips"][static_cast<std::size_t>(index)];
}

// What the CLI prints for a recorded clip: transformers' text without the space the model
// writes before the first word, and a newline.
std::string printed(const nlohmann::json& clip) {
  const std::string text = clip["text"];
  return text.substr(std::min(text.find_first_not_of(' '), text.size())) + "\n";
}

TEST(Cli, PrintsTheRecordedTranscript) {
  const auto c = clip("tiny-a", 0);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i " + quoted(fixture(c["audio"])));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, printed(c));
  EXPECT_THAT(r.err, HasSubstr("real-time factor"));
  EXPECT_THAT(r.err, HasSubstr("ms/token"));
}

TEST(Cli, HonoursTheDelayOption) {
  for (int i : {0, 1}) {
    const auto c = clip("tiny-b", i);
    const auto r = run_cli("-d " + quoted(fixture("tiny-b")) + " -i " + quoted(fixture(c["audio"])) + " --silent --delay " +
                           std::to_string(c["delay_ms"].get<int>()));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, printed(c));
    EXPECT_EQ(r.err, "");
  }
}

TEST(Cli, ReadsWavFromStdin) {
  const auto c = clip("tiny-a", 1);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " --stdin --silent", "cat " + quoted(fixture(c["audio"])) + " | ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, printed(c));
}

TEST(Cli, ReadsRawPcmFromStdin) {
  // The same clip without its 44-byte header: raw s16le 16 kHz mono.
  const auto c = clip("tiny-a", 1);
  const std::string wav = slurp(fixture(c["audio"]));
  TempDir dir;
  const auto raw = dir.write("clip.raw", wav.substr(44));
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " --stdin --silent", "cat " + quoted(raw) + " | ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, printed(c));
}

TEST(Cli, DebugListsEveryToken) {
  const auto c = clip("tiny-a", 2);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i " + quoted(fixture(c["audio"])) + " --debug");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("position 38 token " + std::to_string(c["greedy_ids"][0].get<int>())));
}

TEST(Cli, HelpDocumentsOptionsAndExitCodes) {
  const auto r = run_cli("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* word : {"--model", "--input", "--stdin", "--delay", "--threads", "--silent", "--debug", "Exit codes"}) {
    EXPECT_THAT(r.out, HasSubstr(word));
  }
}

TEST(Cli, UsageErrorsExitWith2) {
  EXPECT_EQ(run_cli("").exit_code, 2);
  EXPECT_EQ(run_cli("-d " + quoted(fixture("tiny-a"))).exit_code, 2);  // no input
  EXPECT_EQ(run_cli("--bogus").exit_code, 2);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i x.wav --delay 100");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("100 ms is not supported"));
}

TEST(Cli, ModelProblemsExitWith3) {
  TempDir dir;
  auto r = run_cli("-d " + quoted(dir.path() / "missing") + " -i x.wav");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("no such model directory"));
  r = run_cli("-d " + quoted(dir.path()) + " -i x.wav");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("params.json: no such file"));
}

TEST(Cli, AudioProblemsExitWith4) {
  TempDir dir;
  auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i " + quoted(dir.path() / "nope.wav"));
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_THAT(r.err, HasSubstr("nope.wav: no such file"));
  const auto mp3 = dir.write("song.wav", std::string("ID3\x04\x00\x00\x00\x00\x00\x00", 10) + std::string(100, 'x'));
  r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i " + quoted(mp3));
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_THAT(r.err, HasSubstr("MP3"));
  r = run_cli("-d " + quoted(fixture("tiny-a")) + " --stdin", "printf '' | ");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_THAT(r.err, HasSubstr("stdin: no audio samples"));
}

// A WAV file of silence, 16 kHz mono s16 (the fixture's 44-byte header with new sizes).
std::filesystem::path silent_wav(const TempDir& dir, int seconds) {
  std::string wav = slurp(fixture("audio/noise.wav")).substr(0, 44);
  const std::uint32_t data = static_cast<std::uint32_t>(seconds) * 16000 * 2;
  std::memcpy(wav.data() + 40, &data, 4);
  const std::uint32_t riff = data + 36;
  std::memcpy(wav.data() + 4, &riff, 4);
  return dir.write("silence.wav", wav + std::string(data, '\0'));
}

TEST(Cli, TooLongAudioExitsWith5) {
  // tiny-b handles 512 positions (41 s); 60 s of silence is more.
  TempDir dir;
  const auto path = silent_wav(dir, 60);
  const auto r = run_cli("-d " + quoted(fixture("tiny-b")) + " -i " + quoted(path) + " --no-continuous");
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_THAT(r.err, HasSubstr(path.string() + ": audio: is longer than"));
  EXPECT_THAT(r.err, HasSubstr("this model handles in one pass"));
}

TEST(Cli, ContinuousModeTranscribesPastTheLengthLimit) {
  // The same 60 s: in continuous mode (the default) the decoder restarts and goes on.
  TempDir dir;
  const auto path = silent_wav(dir, 60);
  const auto r = run_cli("-d " + quoted(fixture("tiny-b")) + " -i " + quoted(path));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("2 segments"));
}

}  // namespace
}  // namespace voxtral

namespace voxtral {
namespace {

// Runs voxtral with a pipe on stdin that the test writes slowly, and a pipe on stdout read
// as it comes; records how much output had arrived before the input was complete.
struct SlowRun {
  std::string out;
  std::size_t out_before_input_end = 0;
  int exit_code = -1;
};

SlowRun run_with_slow_stdin(const std::vector<std::string>& args, const std::string& input, std::size_t piece,
                            int pause_ms) {
  int in_pipe[2], out_pipe[2];
  if (::pipe(in_pipe) != 0 || ::pipe(out_pipe) != 0) throw std::runtime_error("pipe");
  ::signal(SIGPIPE, SIG_IGN);  // a child that died early must fail the test, not kill it
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 2);
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    const char* moved = std::getenv("VOXTRAL_CLI");
    std::vector<char*> argv{const_cast<char*>(moved != nullptr ? moved : VOXTRAL_CLI)};
    std::vector<std::string> all = args;
    if (const char* extra = std::getenv("VOXTRAL_TEST_CLI_ARGS")) {  // the GPU suite's backend options
      std::istringstream words(extra);
      for (std::string w; words >> w;) all.push_back(w);
    }
    for (const auto& a : all) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  SlowRun r;
  std::mutex m;
  std::thread reader([&] {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(out_pipe[0], buf, sizeof buf);
      if (n <= 0) break;
      std::lock_guard lock(m);
      r.out.append(buf, static_cast<std::size_t>(n));
    }
  });
  for (std::size_t at = 0; at < input.size(); at += piece) {
    const std::size_t n = std::min(piece, input.size() - at);
    if (::write(in_pipe[1], input.data() + at, n) != static_cast<ssize_t>(n)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
  {
    std::lock_guard lock(m);
    r.out_before_input_end = r.out.size();
  }
  ::close(in_pipe[1]);
  reader.join();
  ::close(out_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(CliStreaming, TranscribesAPipeFedSlowlyAsTheAudioArrives) {
  const auto c = clip("tiny-a", 1);  // 6.2 s of speech
  const std::string wav = slurp(fixture(c["audio"]));
  // About 40 pieces, 60 ms apart: the text must start before the input ends, and equal
  // the recorded transcript at the end.
  const auto r = run_with_slow_stdin({"-d", fixture("tiny-a").string(), "--stdin", "--silent"}, wav, wav.size() / 40 + 1, 60);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, printed(c));
  EXPECT_GT(r.out_before_input_end, 0u) << "no text before the input ended";
}

TEST(CliStreaming, APauseInTheInputBringsOutThePendingText) {
  // The first clip, then a pause longer than --flush-after: everything said so far comes
  // out before the input ends; the second segment continues after it.
  const auto c = clip("tiny-a", 0);
  const std::string wav = slurp(fixture(c["audio"]));
  const auto r = run_with_slow_stdin({"-d", fixture("tiny-a").string(), "--stdin", "--silent", "--flush-after", "0.3"},
                                     wav, wav.size(), 2500);  // ample time under ASan on a busy machine
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out_before_input_end, printed(c).size() - 1);
  EXPECT_EQ(r.out, printed(c));
}

TEST(CliStreaming, IntervalAndRawInputGiveTheSameText) {
  const auto c = clip("tiny-a", 2);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " --stdin --silent -I 0.5",
                         "tail -c +45 " + quoted(fixture(c["audio"])) + " | ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, printed(c));
}

TEST(CliFormats, JsonHasSegmentsAndWordsWithTimes) {
  const auto c = clip("tiny-a", 1);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i " + quoted(fixture(c["audio"])) + " --format json --silent");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  std::string text = c["text"];
  text.erase(0, text.find_first_not_of(' '));
  EXPECT_EQ(doc["text"], text);
  EXPECT_NEAR(doc["duration"].get<double>(), 99785 / 16000.0, 1e-3);
  ASSERT_FALSE(doc["segments"].empty());
  ASSERT_FALSE(doc["words"].empty());
  // (A random-weight model's words need not match its audio; their times must still be in
  // order and within the audio: words it says in the padding after the end have none left.)
  double last = 0;
  for (const auto& w : doc["words"]) {
    EXPECT_GE(w["start"].get<double>(), last - 1e-9);
    EXPECT_GE(w["end"].get<double>(), w["start"].get<double>());
    EXPECT_LE(w["end"].get<double>(), doc["duration"].get<double>());
    last = w["end"];
  }
  EXPECT_EQ(doc["words"][0]["word"], "houseas");  // the transcript starts " houseas house"
  // OpenAI's verbose_json segment fields, with the chosen tokens' probabilities recorded.
  for (const auto& s : doc["segments"]) {
    EXPECT_FALSE(s["tokens"].empty()) << s.dump();
    EXPECT_LT(s["avg_logprob"].get<double>(), 0.0) << s.dump();
    EXPECT_EQ(s["temperature"], 0.0);
    EXPECT_EQ(s["no_speech_prob"], 0.0);
    EXPECT_GT(s["compression_ratio"].get<double>(), 0.0);
  }
}

TEST(CliFormats, SrtVttAndTimestampedText) {
  const auto c = clip("tiny-a", 0);
  const std::string base = "-d " + quoted(fixture("tiny-a")) + " -i " + quoted(fixture(c["audio"])) + " --silent ";
  const auto srt = run_cli(base + "--format srt");
  EXPECT_EQ(srt.exit_code, 0);
  EXPECT_TRUE(srt.out.starts_with("1\n00:00:00,")) << srt.out;
  EXPECT_NE(srt.out.find("\n\n2\n00:00:"), std::string::npos);
  const auto vtt = run_cli(base + "--format vtt");
  EXPECT_TRUE(vtt.out.starts_with("WEBVTT\n\n00:00:00.")) << vtt.out;
  const auto ts = run_cli(base + "--timestamps");
  EXPECT_TRUE(ts.out.starts_with("[00:00:00.")) << ts.out;
  EXPECT_NE(ts.out.find("] house house want"), std::string::npos);
  // The three give the same cues, in order, within the audio.
  const auto cues = testing::parse_cues(srt.out);
  ASSERT_GE(cues.size(), 2u);
  for (const auto& other : {testing::parse_cues(vtt.out), testing::parse_cues(ts.out)}) {
    ASSERT_EQ(other.size(), cues.size());
    for (std::size_t i = 0; i < cues.size(); ++i) {
      EXPECT_EQ(other[i].text, cues[i].text);
      EXPECT_DOUBLE_EQ(other[i].start, cues[i].start);
      EXPECT_DOUBLE_EQ(other[i].end, cues[i].end);
    }
  }
  const double duration = static_cast<double>(load_audio_file(fixture(c["audio"]), 16000).size()) / 16000;
  for (std::size_t i = 0; i < cues.size(); ++i) {
    EXPECT_LE(cues[i].start, cues[i].end);
    EXPECT_LE(cues[i].end, duration + 0.0005);
    if (i + 1 < cues.size()) {
      EXPECT_LE(cues[i].end, cues[i + 1].start);
    }
  }
}

TEST(CliFormats, AlternativesInline) {
  const auto c = clip("tiny-a", 0);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i " + quoted(fixture(c["audio"])) + " --silent --alt 0");
  EXPECT_EQ(r.exit_code, 0);
  // The fixture's greedy ids begin [STREAMING_PAD] x3, then " house": the pads write nothing
  // (no control token is shown, chosen or offered), the first word shows its candidates.
  EXPECT_TRUE(r.out.starts_with("{ house|")) << r.out.substr(0, 80);
  EXPECT_EQ(r.out.find("STREAMING"), std::string::npos) << r.out.substr(0, 200);
}

TEST(CliMicrophone, NoCaptureDeviceIsAClearError) {
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " --from-mic --mic-device voxtral_no_such_device");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_THAT(r.err, HasSubstr("no audio capture device: ALSA cannot open \"voxtral_no_such_device\""));
}

TEST(CliMicrophone, CapturesFromAnAlsaDevice) {
  // ALSA's "null" device captures silence: the whole microphone path without a sound card.
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " --from-mic --mic-device null --mic-seconds 2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("audio 2.00 s"));
}

// The shipped demo model on the shipped samples: real words. Each sample's .json holds the
// text espeak-ng spoke and every word's true start and end (tools/demo_model/make_samples.py).
nlohmann::json demo_sample(const std::string& name) {
  std::ifstream in(source_path("samples/" + name + ".json"));
  return nlohmann::json::parse(in);
}

std::string demo_args() { return "-d " + quoted(source_path("models/demo")) + " --silent "; }

TEST(CliDemo, TranscribesTheShippedSamples) {
  for (const std::string name : {"timer", "lights", "numbers", "commands"}) {
    const auto r = run_cli(demo_args() + "-i " + quoted(source_path("samples/" + name + ".wav")));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, demo_sample(name)["text"].get<std::string>() + "\n") << name;
  }
}

// --vad: the two phrases of numbers.wav (0.64 s apart, samples/numbers.json) each on a line;
// from stdin too. The options are checked like the others.
TEST(CliDemo, TurnDetectionPutsEachUtteranceOnItsLine) {
  const std::string expected = "four one five two\nnine hundred twelve\n";
  const auto file = run_cli(demo_args() + "--vad -i " + quoted(source_path("samples/numbers.wav")));
  EXPECT_EQ(file.exit_code, 0) << file.err;
  EXPECT_EQ(file.out, expected);
  const auto piped = run_cli(demo_args() + "--vad --stdin < " + quoted(source_path("samples/numbers.wav")));
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, expected);
  // A pause longer than any in the recording: one utterance, as without --vad.
  const auto long_pause = run_cli(demo_args() + "--vad --vad-silence-ms 2000 -i " + quoted(source_path("samples/numbers.wav")));
  EXPECT_EQ(long_pause.out, demo_sample("numbers")["text"].get<std::string>() + "\n");
  for (const std::string bad : {"--vad-threshold 1.5", "--vad-silence-ms 5", "--vad-padding-ms -1", "--vad-threshold nan"}) {
    const auto r = run_cli(demo_args() + "--vad " + bad + " -i " + quoted(source_path("samples/numbers.wav")));
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.err.find(bad.substr(0, bad.find(' '))), std::string::npos) << r.err;
  }
}

// Fast precision on the CPU (activations rounded to BF16 in the decode step's products)
// keeps every shipped sample's recorded text.
TEST(CliDemoCpuFast, TranscribesTheShippedSamples) {
  for (const std::string name : {"timer", "lights", "numbers", "commands"}) {
    const auto r = run_cli(demo_args() + "--backend cpu --precision fast -i " +
                           quoted(source_path("samples/" + name + ".wav")));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, demo_sample(name)["text"].get<std::string>() + "\n") << name;
  }
}

TEST(CliDemo, AlternativesNeverShowAControlToken) {
  // Issue 14 review: `--alt 0.01` printed "the{[STREAMING_PAD]| music} music". A control
  // token writes no text: it is neither shown chosen nor offered as an alternative.
  const std::string text = demo_sample("commands")["text"].get<std::string>();
  for (const std::string cutoff : {"0.01", "0.001", "0"}) {
    SCOPED_TRACE(cutoff);
    const auto r = run_cli(demo_args() + "--alt " + cutoff + " -i " + quoted(source_path("samples/commands.wav")));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(std::regex_search(r.out, std::regex(R"(\[[A-Z_]+\])"))) << r.out;
    // Each {chosen|other|...} read as its chosen text gives the transcript.
    std::string chosen = std::regex_replace(r.out, std::regex(R"(\{([^|}]*)[^}]*\})"), "$1");
    if (chosen.starts_with(" ")) chosen.erase(0, 1);
    EXPECT_EQ(chosen, text + "\n");
  }
}

TEST(CliDemo, WordsComeOutWhileTheAudioArrives) {
  const std::string wav = slurp(source_path("samples/commands.wav"));  // 16 s, five commands
  const auto r = run_with_slow_stdin({"-d", source_path("models/demo").string(), "--stdin", "--silent"}, wav,
                                     wav.size() / 50 + 1, 40);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, demo_sample("commands")["text"].get<std::string>() + "\n");
  EXPECT_THAT(r.out.substr(0, r.out_before_input_end), HasSubstr("set the temperature to twenty one degrees"));
}

// Word times match the speech (README "Timestamps"): against each sample's true word times,
// median |error| <= 80 ms and p95 <= 200 ms for starts and ends.
TEST(CliDemo, WordTimesMatchTheSpeech) {
  testing::TimeErrors all;
  for (const std::string name : {"timer", "lights", "numbers", "commands"}) {
    const auto r = run_cli(demo_args() + "--format json -i " + quoted(source_path("samples/" + name + ".wav")));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto doc = nlohmann::json::parse(r.out);
    const auto got = testing::json_words(doc["words"]);
    all.add(testing::time_errors(testing::true_words(demo_sample(name)), got));
    for (const auto& w : got) EXPECT_LE(w.end, doc["duration"].get<double>()) << name << ": " << w.text;
  }
  testing::expect_on_target(all, "CLI --format json, samples/*.wav");
}

TEST(CliDemo, StdinGivesTheFileTimes) {
  const std::string wav = quoted(source_path("samples/commands.wav"));
  const auto file = run_cli(demo_args() + "--format json -i " + wav);
  const auto piped = run_cli(demo_args() + "--format json --stdin", "cat " + wav + " | ");
  ASSERT_EQ(file.exit_code, 0) << file.err;
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(nlohmann::json::parse(piped.out)["words"], nlohmann::json::parse(file.out)["words"]);
}

// SRT, WebVTT and --timestamps: one cue per spoken command (the pauses between them break
// segments, a long word does not), each spanning its command, at least 1 s long where the
// next cue leaves room, never past the audio; the same times as the JSON segments.
TEST(CliDemo, CuesSpanTheSpokenSentences) {
  const auto wav = quoted(source_path("samples/commands.wav"));
  const auto truth = testing::true_words(demo_sample("commands"));
  const double duration = 522070.0 / 2 / 16000;  // (16-bit mono, less the 44-byte header: close enough)
  const auto json = run_cli(demo_args() + "--format json -i " + wav);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  std::vector<testing::Cue> from_json;
  const auto doc = nlohmann::json::parse(json.out);
  for (const auto& s : doc["segments"]) {
    from_json.push_back({s["start"].get<double>(), s["end"].get<double>(), s["text"].get<std::string>()});
  }
  for (const std::string args : {"--format srt", "--format vtt", "--timestamps"}) {
    const auto r = run_cli(demo_args() + args + " -i " + wav);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto cues = testing::parse_cues(r.out);
    testing::expect_cues_span_sentences(cues, testing::commands_sentences(), truth, duration, args);
    ASSERT_EQ(cues.size(), from_json.size());
    for (std::size_t i = 0; i < cues.size(); ++i) {
      EXPECT_NEAR(cues[i].start, from_json[i].start, 0.0011) << args;
      EXPECT_NEAR(cues[i].end, from_json[i].end, 0.0011) << args;
    }
  }
}

}  // namespace
}  // namespace voxtral
