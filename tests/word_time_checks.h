// Word times against the truth: the true words of a clip (samples/NAME.json holds each
// word's first and last sample, tools/demo_model/make_samples.py), the words a front end
// reported, and the error statistics the README promises (median and 95th percentile of
// |start error| and |end error|).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
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

}  // namespace voxtral::testing
