// The voxtral command on many files at once (-i with several files, a directory, --batch,
// --output-dir): every file's transcript must be the one recorded for it alone (the demo
// model's samples: the text espeak-ng spoke; the tiny fixtures: transformers' transcripts),
// in input order, and a file that fails must not stop the others.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "test_util.h"
#include "wide_window_model.h"

namespace voxtral {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CliResult;
using testing::fixture;
using testing::run_binary;
using testing::shell_quoted;
using testing::slurp_file;
using testing::source_path;
using testing::TempDir;

CliResult run_cli(const std::string& args) { return run_binary(testing::cli_binary(), args); }

std::string sample(const std::string& name) { return source_path("samples/" + name + ".wav").string(); }

// The text spoken in a shipped sample, as the CLI prints it (one line).
std::string spoken(const std::string& name) {
  std::ifstream in(source_path("samples/" + name + ".json"));
  return nlohmann::json::parse(in)["text"].get<std::string>() + "\n";
}

std::string demo_args() { return "-d " + shell_quoted(source_path("models/demo")) + " --silent "; }

std::string inputs(const std::vector<std::string>& paths) {
  std::string args = "-i";  // (appended piecewise: GCC 12 warns wrongly about " " + ...)
  for (const auto& p : paths) args.append(" ").append(shell_quoted(p));
  return args.append(" ");
}

// What stdout holds for files transcribed in this order: a header, the text, a blank line.
std::string listing(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  for (const auto& [path, text] : files) out.append(out.empty() ? "" : "\n").append("==> ").append(path).append(" <==\n").append(text);
  return out;
}

TEST(CliBatch, SeveralFilesGiveEachRecordedTextInInputOrder) {
  const std::vector<std::string> names = {"commands", "timer", "lights", "numbers"};
  std::vector<std::string> paths;
  std::vector<std::pair<std::string, std::string>> expected;
  for (const auto& n : names) {
    paths.push_back(sample(n));
    expected.emplace_back(sample(n), spoken(n));
  }
  // One at a time, some at once (files join as others end), and all at once.
  for (const char* batch : {"1", "3", "4"}) {
    const auto r = run_cli(demo_args() + inputs(paths) + "--batch " + batch);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, listing(expected)) << "--batch " << batch;
  }
}

TEST(CliBatch, TinyModelClipsGiveTheTranscriptsTransformersRecorded) {
  std::ifstream in(fixture("tiny-a.json"));
  const auto clips = nlohmann::json::parse(in)["clips"];
  std::vector<std::string> paths;
  std::vector<std::pair<std::string, std::string>> expected;
  for (const auto& c : clips) {
    const std::string text = c["text"];
    paths.push_back(fixture(c["audio"].get<std::string>()).string());
    expected.emplace_back(paths.back(), text.substr(std::min(text.find_first_not_of(' '), text.size())) + "\n");
  }
  ASSERT_GE(paths.size(), 3u);
  const auto r = run_cli("-d " + shell_quoted(fixture("tiny-a")) + " --silent " + inputs(paths));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, listing(expected));
}

TEST(CliBatch, ADirectoryGivesItsWavFilesSortedByName) {
  TempDir dir;
  dir.write("b.wav", slurp_file(sample("lights")));
  dir.write("a.WAV", slurp_file(sample("timer")));
  dir.write("c.wav", slurp_file(sample("numbers")));
  dir.write("notes.txt", "not audio");
  std::filesystem::create_directory(dir.path() / "nested.wav");  // a directory: not read, not recursed into
  dir.write("nested.wav/d.wav", slurp_file(sample("commands")));
  const auto r = run_cli(demo_args() + "-i " + shell_quoted(dir.path()));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, listing({{(dir.path() / "a.WAV").string(), spoken("timer")},
                            {(dir.path() / "b.wav").string(), spoken("lights")},
                            {(dir.path() / "c.wav").string(), spoken("numbers")}}));

  // Hidden files are left out (as shell globs do); a broken link named *.wav is reported by name.
  dir.write(".hidden.wav", slurp_file(sample("lights")));
  std::filesystem::create_symlink(dir.path() / "gone" / "x.wav", dir.path() / "d.wav");
  const auto with_link = run_cli(demo_args() + "-i " + shell_quoted(dir.path()));
  EXPECT_EQ(with_link.exit_code, 4);
  EXPECT_THAT(with_link.err, HasSubstr((dir.path() / "d.wav").string() + ": no such file"));
  EXPECT_THAT(with_link.out, ::testing::Not(HasSubstr(".hidden.wav")));
  EXPECT_EQ(with_link.out, listing({{(dir.path() / "a.WAV").string(), spoken("timer")},
                                    {(dir.path() / "b.wav").string(), spoken("lights")},
                                    {(dir.path() / "c.wav").string(), spoken("numbers")}}));

  TempDir empty;
  const auto none = run_cli(demo_args() + "-i " + shell_quoted(empty.path()));
  EXPECT_EQ(none.exit_code, 4);
  EXPECT_THAT(none.err, HasSubstr(empty.path().string() + ": no .wav files in this directory"));
}

TEST(CliBatch, AFailingFileIsReportedAndTheOthersComplete) {
  TempDir dir;
  const auto missing = (dir.path() / "missing.wav").string();
  const auto garbage = dir.write("garbage.wav", "this is not a WAV file").string();
  const auto r = run_cli(demo_args() + inputs({sample("lights"), missing, garbage, sample("timer")}));
  EXPECT_EQ(r.exit_code, 4);  // the audio could not be read
  EXPECT_THAT(r.err, HasSubstr(missing + ": no such file"));
  EXPECT_THAT(r.err, HasSubstr(garbage + ": not a WAV file"));
  EXPECT_EQ(r.out, listing({{sample("lights"), spoken("lights")}, {sample("timer"), spoken("timer")}}));

  // A file the model cannot transcribe (60 s of silence for tiny-b's 41 s without continuous
  // mode) is a transcription failure, 5; the first failure in input order gives the code.
  std::string wav = slurp_file(fixture("audio/noise.wav")).substr(0, 44);
  const std::uint32_t data = 60 * 16000 * 2, riff = data + 36;
  std::memcpy(wav.data() + 40, &data, 4);
  std::memcpy(wav.data() + 4, &riff, 4);
  const auto too_long = dir.write("silence.wav", wav + std::string(data, '\0')).string();
  const std::string tiny_b = "-d " + shell_quoted(fixture("tiny-b")) + " --silent --no-continuous ";
  const std::string noise = fixture("audio/noise.wav").string();
  auto t = run_cli(tiny_b + inputs({too_long, noise}));
  EXPECT_EQ(t.exit_code, 5);
  EXPECT_THAT(t.err, HasSubstr(too_long + ": audio: is longer than"));
  EXPECT_THAT(t.out, HasSubstr("==> " + noise + " <==\n"));
  EXPECT_THAT(t.out, Not(HasSubstr(too_long)));
  t = run_cli(tiny_b + inputs({missing, too_long, noise}));
  EXPECT_EQ(t.exit_code, 4);
}

// Each long file takes the K/V pages of its whole length at its start; the cache holds one
// file's, not two: the second waits for the first to end instead of failing mid-way.
TEST(CliBatch, AFileTheCacheHasNoRoomForWaitsForAnotherToEnd) {
  testing::WideWindowDemo wide;
  const std::string args = "-d " + shell_quoted(wide.model()) + " --silent --max-streams 2 --batch 2 --kv-cache-mb " +
                           std::to_string(wide.kv_cache_mb()) + " ";
  const std::string path = wide.long_wav().string();
  const auto r = run_cli(args + inputs({path, path}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::string header = "==> " + path + " <==\n";
  const auto first = r.out.find(header);
  ASSERT_NE(first, std::string::npos) << r.out;
  EXPECT_NE(r.out.find(header, first + 1), std::string::npos) << r.out;
}

TEST(CliBatch, JsonIsOneArrayOfObjectsNamingTheirFile) {
  TempDir dir;
  const auto missing = (dir.path() / "missing.wav").string();
  const auto r = run_cli(demo_args() + "--format json " + inputs({sample("numbers"), missing, sample("lights")}));
  EXPECT_EQ(r.exit_code, 4);
  const auto all = nlohmann::json::parse(r.out);
  ASSERT_TRUE(all.is_array());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0]["file"], sample("numbers"));
  EXPECT_EQ(all[0]["text"].get<std::string>() + "\n", spoken("numbers"));
  EXPECT_FALSE(all[0]["segments"].empty());
  EXPECT_EQ(all[1]["file"], missing);
  EXPECT_THAT(all[1]["error"].get<std::string>(), HasSubstr("no such file"));
  EXPECT_EQ(all[2]["file"], sample("lights"));
  EXPECT_EQ(all[2]["text"].get<std::string>() + "\n", spoken("lights"));
}

TEST(CliBatch, OutputDirWritesOneFilePerInputAndFormat) {
  TempDir dir;
  const auto out = dir.path() / "transcripts";  // created when missing
  const auto r = run_cli(demo_args() + "--output-dir " + shell_quoted(out) + " --format text,srt,json " +
                         inputs({sample("lights"), sample("timer")}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  for (const std::string name : {"lights", "timer"}) {
    EXPECT_EQ(slurp_file(out / (name + ".txt")), spoken(name));
    const std::string srt = slurp_file(out / (name + ".srt"));
    EXPECT_THAT(srt, ::testing::StartsWith("1\n00:00:00,"));
    EXPECT_THAT(srt, HasSubstr(spoken(name)));
    const auto json = nlohmann::json::parse(slurp_file(out / (name + ".json")));
    EXPECT_EQ(json["text"].get<std::string>() + "\n", spoken(name));
  }
  // One input: its file alone, the same as stdout would have had.
  const auto one = run_cli(demo_args() + "--output-dir " + shell_quoted(out) + " --format vtt -i " +
                           shell_quoted(sample("numbers")));
  const auto stdout_vtt = run_cli(demo_args() + "--format vtt -i " + shell_quoted(sample("numbers")));
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(slurp_file(out / "numbers.vtt"), stdout_vtt.out);
  EXPECT_THAT(stdout_vtt.out, ::testing::StartsWith("WEBVTT\n"));
  EXPECT_THAT(stdout_vtt.out, HasSubstr("nine hundred twelve\n"));  // the recording's second phrase
}

TEST(CliBatch, UsageErrorsExitWith2) {
  TempDir dir;
  const std::string two = inputs({sample("lights"), sample("timer")});
  auto r = run_cli(demo_args() + two + "--format text,srt");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("several formats need --output-dir"));
  EXPECT_EQ(run_cli(demo_args() + two + "--batch 0").exit_code, 2);
  // --batch counts at most the files given: 8 for two files is 2, which --max-streams 1 cannot hold.
  r = run_cli(demo_args() + two + "--batch 8 --max-streams 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-streams 2 or more"));
  EXPECT_EQ(run_cli(demo_args() + two + "--batch 8 --max-streams 4").exit_code, 0);
  const auto copy = dir.write("lights.wav", slurp_file(sample("lights")));
  r = run_cli(demo_args() + "--output-dir " + shell_quoted(dir.path() / "out") + " " +
              inputs({sample("lights"), copy.string()}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("would both write lights.*"));
}

}  // namespace
}  // namespace voxtral
