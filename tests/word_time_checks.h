// Word times against the truth: the true words of a clip (samples/NAME.json holds each
// word's first and last sample, tools/demo_model/make_samples.py), the words a front end
// reported, and the error statistics the README promises (median and 95th percentile of
// |start error| and |end error|).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace voxtral::testing {

struct TimedWord {
  std::string text;
  double start = 0, end = 0;
};

// Targets (issue 14, README "Timestamps").
inline constexpr double kMedianTarget = 0.080;
inline constexpr double kP95Target = 0.200;

// samples/NAME.json's words: [[word, start, end], ...].
inline std::vector<TimedWord> true_words(const nlohmann::json& doc) {
  std::vector<TimedWord> words;
  for (const auto& w : doc["words"]) words.push_back({w[0].get<std::string>(), w[1].get<double>(), w[2].get<double>()});
  return words;
}

// verbose_json / --format json words: [{"word", "start", "end"}, ...].
inline std::vector<TimedWord> json_words(const nlohmann::json& words) {
  std::vector<TimedWord> out;
  for (const auto& w : words) out.push_back({w["word"].get<std::string>(), w["start"].get<double>(), w["end"].get<double>()});
  return out;
}

struct TimeErrors {
  std::vector<double> start, end;  // |error| in seconds, one per word matched
  std::size_t truth = 0;            // words in the truth

  void add(const TimeErrors& other) {
    start.insert(start.end(), other.start.begin(), other.start.end());
    end.insert(end.end(), other.end.begin(), other.end.end());
    truth += other.truth;
  }
};

// Matches reported words to true words by their text (longest common subsequence, so that
// a misheard word costs only itself) and collects the time errors of the matches.
inline TimeErrors time_errors(const std::vector<TimedWord>& truth, const std::vector<TimedWord>& got) {
  const std::size_t n = truth.size(), m = got.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (std::size_t i = n; i-- > 0;) {
    for (std::size_t j = m; j-- > 0;) {
      lcs[i][j] = truth[i].text == got[j].text ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  TimeErrors e;
  e.truth = n;
  for (std::size_t i = 0, j = 0; i < n && j < m;) {
    if (truth[i].text == got[j].text) {
      e.start.push_back(std::fabs(got[j].start - truth[i].start));
      e.end.push_back(std::fabs(got[j].end - truth[i].end));
      ++i, ++j;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      ++i;
    } else {
      ++j;
    }
  }
  return e;
}

// Nearest-rank quantile (q in (0, 1]) of a non-empty list.
inline double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

// Prints the statistics (the numbers BENCHMARKS.md records) and checks them against the
// targets; at least 90% of the true words must have been recognised and matched.
inline void expect_on_target(const TimeErrors& e, const std::string& label) {
  ASSERT_FALSE(e.start.empty()) << label << ": no word matched";
  const double ms = 1000.0;
  std::printf("word times, %s: %zu of %zu words; |start error| median %.0f ms, p95 %.0f ms; "
              "|end error| median %.0f ms, p95 %.0f ms\n",
              label.c_str(), e.start.size(), e.truth, quantile(e.start, 0.5) * ms, quantile(e.start, 0.95) * ms,
              quantile(e.end, 0.5) * ms, quantile(e.end, 0.95) * ms);
  EXPECT_GE(static_cast<double>(e.start.size()), 0.9 * static_cast<double>(e.truth)) << label;
  EXPECT_LE(quantile(e.start, 0.5), kMedianTarget) << label << ": median |start error|";
  EXPECT_LE(quantile(e.end, 0.5), kMedianTarget) << label << ": median |end error|";
  EXPECT_LE(quantile(e.start, 0.95), kP95Target) << label << ": p95 |start error|";
  EXPECT_LE(quantile(e.end, 0.95), kP95Target) << label << ": p95 |end error|";
}

// A subtitle cue: from SRT ("1\n00:00:01,230 --> 00:00:02,500\ntext"), WebVTT (the same
// with '.') or the CLI's --timestamps lines ("[00:00:01.230 --> 00:00:02.500] text").
struct Cue {
  double start = 0, end = 0;
  std::string text;
};

inline double cue_seconds(const std::string& t) {  // "HH:MM:SS,mmm" or "HH:MM:SS.mmm"
  return std::stoi(t.substr(0, 2)) * 3600.0 + std::stoi(t.substr(3, 2)) * 60.0 + std::stoi(t.substr(6, 2)) +
         std::stoi(t.substr(9, 3)) / 1000.0;
}

inline std::vector<Cue> parse_cues(const std::string& body) {
  std::vector<std::string> lines;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::vector<Cue> cues;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    const std::size_t arrow = l.find(" --> ");
    if (arrow == std::string::npos) continue;
    const std::size_t from = l.starts_with("[") ? 1 : 0;
    Cue c;
    c.start = cue_seconds(l.substr(from, 12));
    c.end = cue_seconds(l.substr(arrow + 5, 12));
    if (from == 1) {
      c.text = l.substr(l.find("] ") + 2);
    } else if (i + 1 < lines.size()) {
      c.text = lines[i + 1];
    }
    cues.push_back(c);
  }
  return cues;
}

// samples/commands.wav: five commands, 0.5-0.75 s apart (tools/demo_model/make_samples.py).
inline const std::vector<std::string>& commands_sentences() {
  static const std::vector<std::string> s = {"set the temperature to twenty one degrees", "close the garage door",
                                             "play the music", "add coffee to the shopping list", "volume down ten percent"};
  return s;
}

// Each cue is one spoken sentence: it starts within 200 ms of the sentence's first word (the
// p95 target for a word's start), ends no earlier than 100 ms before its last word ends, lasts at least 1 s unless the next
// cue starts sooner, never overlaps the next, and never passes the audio's end.
inline void expect_cues_span_sentences(const std::vector<Cue>& cues, const std::vector<std::string>& sentences,
                                       const std::vector<TimedWord>& truth, double duration, const std::string& label) {
  ASSERT_EQ(cues.size(), sentences.size()) << label;
  std::size_t first_word = 0;
  for (std::size_t i = 0; i < cues.size(); ++i) {
    SCOPED_TRACE(label + ", cue " + std::to_string(i + 1) + ": " + cues[i].text);
    EXPECT_EQ(cues[i].text, sentences[i]);
    std::istringstream words(sentences[i]);
    std::size_t n = 0;
    for (std::string w; words >> w;) ++n;
    ASSERT_LE(first_word + n, truth.size());
    EXPECT_NEAR(cues[i].start, truth[first_word].start, kP95Target);
    EXPECT_GE(cues[i].end, truth[first_word + n - 1].end - 0.1);
    EXPECT_LE(cues[i].end, duration);
    if (i + 1 < cues.size()) {
      EXPECT_LE(cues[i].end, cues[i + 1].start);
      EXPECT_TRUE(cues[i].end - cues[i].start >= 1.0 - 1e-9 || cues[i].end == cues[i + 1].start);
    } else {
      EXPECT_TRUE(cues[i].end - cues[i].start >= 1.0 - 1e-9 || cues[i].end >= duration - 0.001);
    }
    first_word += n;
  }
}

}  // namespace voxtral::testing
