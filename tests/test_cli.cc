// End-to-end tests of the voxtral command line on the tiny fixture models: the transcript
// must be the one transformers recorded, and every failure must give a clear message and
// the documented exit code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

namespace voxtral {
namespace {

using ::testing::HasSubstr;
using voxtral::testing::fixture;
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

TEST(Cli, PrintsTheRecordedTranscript) {
  const auto c = clip("tiny-a", 0);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " -i " + quoted(fixture(c["audio"])));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, c["text"].get<std::string>() + "\n");
  EXPECT_THAT(r.err, HasSubstr("real-time factor"));
  EXPECT_THAT(r.err, HasSubstr("ms/step"));
}

TEST(Cli, HonoursTheDelayOption) {
  for (int i : {0, 1}) {
    const auto c = clip("tiny-b", i);
    const auto r = run_cli("-d " + quoted(fixture("tiny-b")) + " -i " + quoted(fixture(c["audio"])) + " --silent --delay " +
                           std::to_string(c["delay_ms"].get<int>()));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, c["text"].get<std::string>() + "\n");
    EXPECT_EQ(r.err, "");
  }
}

TEST(Cli, ReadsWavFromStdin) {
  const auto c = clip("tiny-a", 1);
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " --stdin --silent", "cat " + quoted(fixture(c["audio"])) + " | ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, c["text"].get<std::string>() + "\n");
}

TEST(Cli, ReadsRawPcmFromStdin) {
  // The same clip without its 44-byte header: raw s16le 16 kHz mono.
  const auto c = clip("tiny-a", 1);
  const std::string wav = slurp(fixture(c["audio"]));
  TempDir dir;
  const auto raw = dir.write("clip.raw", wav.substr(44));
  const auto r = run_cli("-d " + quoted(fixture("tiny-a")) + " --stdin --silent", "cat " + quoted(raw) + " | ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, c["text"].get<std::string>() + "\n");
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

TEST(Cli, TooLongAudioExitsWith5) {
  // tiny-b handles 512 positions (41 s); 60 s of silence is more.
  TempDir dir;
  std::string wav = slurp(fixture("audio/noise.wav")).substr(0, 44);
  const std::uint32_t data = 60 * 16000 * 2;
  std::memcpy(wav.data() + 40, &data, 4);
  const std::uint32_t riff = data + 36;
  std::memcpy(wav.data() + 4, &riff, 4);
  const auto path = dir.write("long.wav", wav + std::string(data, '\0'));
  const auto r = run_cli("-d " + quoted(fixture("tiny-b")) + " -i " + quoted(path));
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_THAT(r.err, HasSubstr("this model handles in one pass"));
}

}  // namespace
}  // namespace voxtral
