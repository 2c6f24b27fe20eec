// The voxtral command line (and voxtral-server's start) on inputs users meet in the first
// hour: stereo files whose channels cancel, WAV writers that skip a pad byte, a FIFO given
// to -i, a full disk on stdout, model directories that are symlink loops, devices or FIFOs
// in place of model files, and a params.json whose values leave the model unusable. Each
// transcript is compared with the one transformers recorded for the fixture clip.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/audio.h"
#include "wav_builder.h"

namespace voxtral::testing {
namespace {

using ::testing::HasSubstr;

nlohmann::json tiny_a_clip(int index) {
  std::ifstream in(fixture("tiny-a.json"));
  return nlohmann::json::parse(in)["clips"][static_cast<std::size_t>(index)];
}

// What the CLI prints for a recorded clip: transformers' text without the model's leading
// space, and a newline.
std::string printed(const nlohmann::json& clip) {
  const std::string text = clip["text"];
  return text.substr(std::min(text.find_first_not_of(' '), text.size())) + "\n";
}

// The clip's 16 kHz mono samples as 16-bit PCM (the fixtures are 16-bit: exact).
std::vector<std::int16_t> clip_pcm(const nlohmann::json& clip) {
  std::vector<std::int16_t> out;
  for (float v : load_audio_file(fixture(clip["audio"]), 16000)) {
    out.push_back(static_cast<std::int16_t>(std::lround(std::clamp(v * 32768.0f, -32767.0f, 32767.0f))));
  }
  return out;
}

std::string tiny_a() { return "-d " + shell_quoted(fixture("tiny-a")) + " "; }

CliResult run_cli(const std::string& args, const std::string& prefix = "", const std::string& stdout_to = "") {
  return run_binary(cli_binary(), args, prefix, stdout_to);
}

// A model directory in `dir` whose files link to tiny-a's, except one written with `content`.
std::filesystem::path model_copy(const TempDir& dir, const std::string& replaced = "", const std::string& content = "") {
  const auto model = dir.path() / "model";
  std::filesystem::create_directories(model);
  for (const std::string name : {"tekken.json", "consolidated.safetensors", "params.json"}) {
    if (name != replaced) std::filesystem::create_symlink(fixture("tiny-a/" + name), model / name);
  }
  if (!replaced.empty()) dir.write("model/" + replaced, content);
  return model;
}

nlohmann::json tiny_a_json(const std::string& name) {
  std::ifstream in(fixture("tiny-a/" + name));
  return nlohmann::json::parse(in);
}

TEST(CliInputs, StereoWhoseChannelsCancelIsTranscribedFromOneChannel) {
  // The right channel is the left one inverted: averaged, the file is silence and the
  // transcript would be empty with exit 0.
  const auto c = tiny_a_clip(0);
  std::vector<std::int16_t> frames;
  for (std::int16_t v : clip_pcm(c)) {
    frames.push_back(v);
    frames.push_back(static_cast<std::int16_t>(-v));
  }
  TempDir dir;
  const auto wav = dir.write("flipped.wav", simple_wav(fmt_body(kPcm, 2, 16000, 16), s16_bytes(frames)));
  const auto r = run_cli(tiny_a() + "-i " + shell_quoted(wav));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, printed(c));
  EXPECT_THAT(r.err, HasSubstr("flipped.wav: the 2 channels cancel when averaged to mono"));
  EXPECT_THAT(r.err, HasSubstr("using channel 1 alone"));
}

TEST(CliInputs, WavWhoseOddChunkLacksItsPadByteIsRead) {
  // Some writers leave out the pad byte after an odd-sized chunk; the "data" id one byte
  // early shows it. (It was reported as "truncated ... before the data chunk".)
  const auto c = tiny_a_clip(0);
  const std::string list = std::string("LIST") + le32(13) + "INFOISFT" + le32(1) + "x";  // 13 bytes, no pad
  TempDir dir;
  const auto wav = dir.write("nopad.wav", riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + list +
                                               chunk("data", s16_bytes(clip_pcm(c)))));
  const auto r = run_cli(tiny_a() + "--silent -i " + shell_quoted(wav));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, printed(c));
}

TEST(CliInputs, InputFromAFifo) {
  const auto c = tiny_a_clip(0);
  TempDir dir;
  const auto fifo = dir.path() / "audio.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto r = run_cli(tiny_a() + "--silent -i " + shell_quoted(fifo),
                         // (the writer gives up if voxtral never opens the FIFO)
                         "timeout 60 sh -c \"cat " + shell_quoted(fixture(c["audio"])) + " > " + shell_quoted(fifo) +
                             "\" & ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, printed(c));
}

TEST(CliInputs, ATranscriptThatCannotBeWrittenIsAnError) {
  const auto c = tiny_a_clip(0);
  for (const std::string format : {"text", "json", "srt"}) {
    const auto r = run_cli(tiny_a() + "--silent --format " + format + " -i " + shell_quoted(fixture(c["audio"])), "",
                           "/dev/full");
    EXPECT_EQ(r.exit_code, 6) << format;
    EXPECT_THAT(r.err, HasSubstr("stdout: cannot write the transcript: No space left on device")) << format;
  }
}

TEST(CliModel, SymlinkLoopModelDirectoryExitsWith3) {
  TempDir dir;
  std::filesystem::create_symlink("loop", dir.path() / "loop");
  auto r = run_cli("-d " + shell_quoted(dir.path() / "loop") + " -i x.wav");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("loop: cannot read the model directory: Too many levels of symbolic links"));
  // A model file that is a loop.
  const auto model = dir.path() / "model";
  std::filesystem::create_directories(model);
  std::filesystem::create_symlink("params.json", model / "params.json");
  r = run_cli("-d " + shell_quoted(model) + " -i x.wav");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("params.json: cannot open: Too many levels of symbolic links"));
}

TEST(ServerStart, SymlinkLoopModelDirectoryExitsWith3) {
  TempDir dir;
  std::filesystem::create_symlink("loop", dir.path() / "loop");
  const auto r = run_binary(VOXTRAL_SERVER, "-d " + shell_quoted(dir.path() / "loop") + " --port 0");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("voxtral-server: "));
  EXPECT_THAT(r.err, HasSubstr("Too many levels of symbolic links"));
}

TEST(ServerStart, MaxSessionsAboveTheStreamsIsLoweredWithAWarningNamingBoth) {
  // The server serves until its SIGINT (then stops at once: no work is running).
  const auto r = run_binary(VOXTRAL_SERVER,
                            "-d " + shell_quoted(source_path("models/demo")) + " --port 0 --max-streams 2 --max-sessions 20",
                            "timeout -k 30 -s INT 8 ");
  EXPECT_THAT(r.err, HasSubstr("warning: --max-sessions 20 is more than the model's streams (--max-streams 2): "
                               "at most 2 transcriptions run at once"));
}

// Options that make no sense together, or numbers of the wrong kind, are refused saying why.
TEST(CliOptions, MisusedOptionsAreRefusedWithClearMessages) {
  const std::string demo = "-d " + shell_quoted(source_path("models/demo")) + " --silent ";
  const std::string lights = "-i " + shell_quoted(source_path("samples/lights.wav")) + " ";
  const std::string timer = shell_quoted(source_path("samples/timer.wav")) + " ";
  auto r = run_cli(demo + lights + timer + "--batch 1.5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("1.5 is not a whole number"));
  r = run_cli(demo + lights + "--max-streams 2.5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("2.5 is not a whole number"));
  r = run_cli(demo + "--stdin --batch 2 </dev/null");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--batch: is for several files (-i a.wav b.wav, or a directory); --stdin is one stream"));
  r = run_cli(demo + lights + "--format srt --timestamps");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--timestamps: is for --format text"));
  // With a text output among several, the text file gets the times.
  TempDir dir;
  r = run_cli(demo + lights + "--format text,srt --timestamps --output-dir " + shell_quoted(dir.path()));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(slurp_file(dir.path() / "lights.txt"), ::testing::StartsWith("[00:00:00.")) << "a timestamped line";
  // The engine's messages name the command line's flags.
  r = run_cli(demo + lights + "--max-streams 64 --kv-cache-mb 1");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("--kv-cache-mb: 64 streams need"));
  EXPECT_THAT(r.err, HasSubstr("lower --max-streams or raise --kv-cache-mb"));
}

TEST(CliModel, ModelFilesThatAreDevicesOrFifosAreRefusedBeforeReading) {
  // A FIFO with no writer would block the open (hence the timeout); /dev/zero never ends.
  // (A text file on /dev/zero would fill the memory if it were read: /dev/null stands in
  // for it, the safetensors file, which is mapped, is /dev/zero itself.)
  const std::string guard = "timeout 60 ";
  TempDir dir;
  const auto model = dir.path() / "model";
  std::filesystem::create_directories(model);
  ASSERT_EQ(::mkfifo((model / "params.json").c_str(), 0600), 0);
  for (const char* name : {"tekken.json", "consolidated.safetensors"}) {
    std::filesystem::create_symlink(fixture(std::string("tiny-a/") + name), model / name);
  }
  auto r = run_cli("-d " + shell_quoted(model) + " -i x.wav", guard);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("params.json: is a FIFO (named pipe), expected a regular file"));

  std::filesystem::remove(model / "params.json");
  std::filesystem::create_symlink(fixture("tiny-a/params.json"), model / "params.json");
  std::filesystem::remove(model / "tekken.json");
  std::filesystem::create_symlink("/dev/null", model / "tekken.json");
  r = run_cli("-d " + shell_quoted(model) + " -i x.wav", guard);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("tekken.json: is a character device, expected a regular file"));

  std::filesystem::remove(model / "tekken.json");
  std::filesystem::create_symlink(fixture("tiny-a/tekken.json"), model / "tekken.json");
  std::filesystem::remove(model / "consolidated.safetensors");
  std::filesystem::create_symlink("/dev/zero", model / "consolidated.safetensors");
  r = run_cli("-d " + shell_quoted(model) + " -i x.wav", guard);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("consolidated.safetensors: is a character device, expected a regular file"));
}

TEST(CliModel, ParamsThatLeaveTheModelUnusableFailAtLoad) {
  // model_max_length 1: nothing fits after the prompt's padding. It loaded, and failed at
  // the first transcription (exit 5); it is a model problem (exit 3), named at load.
  auto params = tiny_a_json("params.json");
  for (int length : {1, 49, 60}) {
    params["model_max_length"] = length;
    TempDir dir;
    const auto model = model_copy(dir, "params.json", params.dump());
    const auto r = run_cli("-d " + shell_quoted(model) + " -i " + shell_quoted(fixture("audio/speech_short.wav")));
    EXPECT_EQ(r.exit_code, 3) << length;
    EXPECT_THAT(r.err, HasSubstr("params.json: model_max_length: " + std::to_string(length) +
                                 " positions leave no room for audio"))
        << length;
  }
  // The smallest usable length (padding 49 + one second, 13 positions) loads and transcribes.
  params["model_max_length"] = 62;
  TempDir dir;
  const auto model = model_copy(dir, "params.json", params.dump());
  const auto c = tiny_a_clip(0);
  const auto r = run_cli("-d " + shell_quoted(model) + " --silent -i " + shell_quoted(fixture(c["audio"])));
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliModel, AnUnusableDefaultDelayFailsAtLoad) {
  // tekken.json's own delay must be one the model supports (a multiple of 80 ms).
  auto tekken = tiny_a_json("tekken.json");
  tekken["audio"]["transcription_delay_ms"] = 100;
  TempDir dir;
  const auto model = model_copy(dir, "tekken.json", tekken.dump());
  const auto r = run_cli("-d " + shell_quoted(model) + " -i " + shell_quoted(fixture("audio/speech_short.wav")));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("tekken.json: audio.transcription_delay_ms: the model's own delay is unusable: "
                               "delay: 100 ms is not supported"));
}

TEST(CliOptions, NonFiniteNumbersAreRefusedInAFewWords) {
  // NaN passed every range check (comparisons with NaN are false); "inf" was reported as a
  // 309-digit number.
  const auto c = tiny_a_clip(0);
  const std::string input = "--silent -i " + shell_quoted(fixture(c["audio"])) + " ";
  for (const std::string option : {"-I nan", "-I inf", "--alt nan", "--alt -inf", "--flush-after nan",
                                   "--flush-after inf", "--mic-seconds nan", "--mic-seconds inf"}) {
    const auto r = run_cli(tiny_a() + input + option);
    EXPECT_EQ(r.exit_code, 2) << option << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr("is not a finite number")) << option;
    EXPECT_LT(r.err.size(), 200u) << option << "\n" << r.err;
    EXPECT_EQ(r.out, "") << option;
  }
}

TEST(CliOptions, HugeFlushAfterIsOutOfRange) {
  // (1e300 s of pause, in ms, does not fit poll()'s int timeout)
  const auto r = run_cli(tiny_a() + "--stdin --flush-after 1e300 </dev/null");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--flush-after"));
  EXPECT_LT(r.err.size(), 200u) << r.err;
}

TEST(CliOptions, AnEmptyInputNameSaysItIsEmpty) {
  const auto r = run_cli(tiny_a() + "-i ''");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--input: the file name is empty"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("is required")));
}

TEST(CliOutput, AClosedPipeOnStdoutIsExit6WithAMessage) {
  // README: exit 6 when stdout cannot be written. A reader that has gone away made the CLI
  // die of SIGPIPE (exit 141, no message). The test process may ignore SIGPIPE (children
  // would inherit that): the CLI runs with the default action, as from a shell.
  const auto c = tiny_a_clip(0);
  TempDir dir;
  const auto code = dir.path() / "code", err = dir.path() / "err";
  const std::string cmd = "{ sleep 0.3; " + shell_quoted(cli_binary()) + " " + tiny_a() + "--silent -i " +
                          shell_quoted(fixture(c["audio"])) + " 2>" + shell_quoted(err) + "; echo $? >" +
                          shell_quoted(code) + "; } | (exec 0<&-; sleep 2)";
  struct sigaction dfl {}, old {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &dfl, &old), 0);
  const int status = std::system(cmd.c_str());
  ::sigaction(SIGPIPE, &old, nullptr);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(slurp_file(code), "6\n");
  EXPECT_THAT(slurp_file(err), HasSubstr("stdout: cannot write the transcript: Broken pipe"));
}

}  // namespace
}  // namespace voxtral::testing
